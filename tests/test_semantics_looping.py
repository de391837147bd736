"""Looping strategies (SEMANTICS R46–R54, D11, E10, E13, E14): matrix, repeat, parallelism.

Makespans are computed by hand in each test and checked from the trace.
"""

from __future__ import annotations

import warnings

import pytest

import notebook_pipelines as nbp
from notebook_pipelines.definition.looping import Matrix, Parallelism, Repeat

STEPS = "pipeline.stages.s.spec.execution.steps"


def one_stage(*items, **stage_settings) -> nbp.Pipeline:
    p = nbp.Pipeline("p", rules="current")
    p.add(nbp.Stage("s", items=list(items), **stage_settings))
    return p


def rows(trace, prefix: str):
    return trace[trace["fqn"].str.startswith(prefix)]


def row(trace, fqn: str):
    (found,) = trace.index[trace["fqn"] == fqn]
    return trace.loc[found]


def makespan(trace) -> float:
    root = trace[trace["kind"] == "pipeline"].iloc[0]
    return float(root["end_s"] - root["start_s"])


# -- matrix, maxConcurrency as a sliding window (R49, R54, E13, D11) -----------------------------
def test_R49_R54_E13_matrix_3x2_minus_one_with_max_concurrency_2_is_a_sliding_window():
    matrix = Matrix(
        os=["linux", "mac", "win"],
        arch=["x64", "arm"],
        exclude=[{"os": "win", "arch": "arm"}],
        max_concurrency=2,
    )
    p = one_stage(nbp.Step("build", strategy=matrix, inputs={"target": "<+matrix.os>-<+matrix.arch>"}))
    durations = {"build_0_0": 10, "build_0_1": 30, "build_1_0": 5, "build_1_1": 20, "build_2_0": 10}
    trace = p.simulate(durations=durations)
    its = trace[trace["parent"] == f"{STEPS}.build"]
    # D11: index postfixes in axis order; the excluded (win, arm) = _2_1 is not there
    assert list(its["step"]) == ["build_0_0", "build_0_1", "build_1_0", "build_1_1", "build_2_0"]
    assert list(its["iteration"]) == [0, 1, 2, 3, 4]
    assert [i["target"] for i in its["inputs"]] == ["linux-x64", "linux-arm", "mac-x64", "mac-arm", "win-x64"]
    # by hand: lane A 0_0 [0,10] → 1_0 [10,15] → 1_1 [15,35]; lane B 0_1 [0,30] → 2_0 [30,40]
    starts = dict(zip(its["step"], its["start_s"]))
    assert starts == {"build_0_0": 0, "build_0_1": 0, "build_1_0": 10, "build_1_1": 15, "build_2_0": 30}
    assert makespan(trace) == 40  # waves of 2 would take max(10,30) + max(5,20) + 10 = 60
    looped = row(trace, f"{STEPS}.build")  # the looped node's own row spans its iterations
    assert looped["status"] == "Success" and (looped["start_s"], looped["end_s"]) == (0, 40)
    assert pd_na(looped["iteration"]) and looped["reason"] == "5 iterations, at most 2 at a time"
    # never more than two at once
    assert max(((its["start_s"] <= t) & (its["end_s"] > t)).sum() for t in its["start_s"]) == 2


def pd_na(value) -> bool:
    import pandas as pd

    return value is pd.NA


def test_D11_R53_matrix_postfix_is_pluggable_and_node_name_sets_the_display_name():
    matrix = Matrix(
        os=["linux", "mac"], postfix=nbp.definition.looping.labels_by_name, node_name="on <+matrix.os>"
    )
    p = one_stage(nbp.Step("build", strategy=matrix))
    trace = p.simulate()
    assert list(trace[trace["parent"] == f"{STEPS}.build"]["step"]) == ["build_linux", "build_mac"]


# -- repeat with partitions, nested loops (R50, R52) --------------------------------------------
def test_R50_repeat_over_5_items_in_partitions_of_2_one_at_a_time_with_a_group_per_partition():
    inner = nbp.StepGroup(
        "hosts",
        strategy=Repeat(items="<+repeat.partition>"),
        items=[nbp.Step("deploy", inputs={"host": "<+repeat.item>"})],
    )
    phase = nbp.StepGroup(
        "Phase",
        strategy=Repeat(items=["a", "b", "c", "d", "e"], partition_size=2, max_concurrency=1),
        items=[inner],
    )
    slow = f"{STEPS}.Phase_1.steps.hosts_0.steps.deploy"
    trace = one_stage(phase).simulate(default=10, durations={slow: 25})
    phases = trace[trace["parent"] == f"{STEPS}.Phase"]
    assert list(phases["step_group"]) == ["Phase_0", "Phase_1", "Phase_2"]  # partitions [a,b] [c,d] [e]
    # by hand: Phase_0 = max(10, 10), Phase_1 = max(25, 10), Phase_2 = 10, one after the other
    assert list(zip(phases["start_s"], phases["end_s"])) == [(0, 10), (10, 35), (35, 45)]
    assert makespan(trace) == 45
    deploys = trace[(trace["kind"] == "step") & trace["step"].eq("deploy")]
    assert [i["host"] for i in deploys["inputs"]] == ["a", "b", "c", "d", "e"]
    assert row(trace, slow)["iteration"] == 0 and row(trace, f"{STEPS}.Phase_1")["iteration"] == 1


def test_R50_repeat_percentage_partitions_and_start_end_cut_the_items():
    def starts(strategy):
        trace = one_stage(nbp.Step("x", strategy=strategy)).simulate(default=1)
        return [i["v"] for i in trace[trace["parent"] == f"{STEPS}.x"]["inputs"]]

    items = list(range(10))
    half = Repeat(items=items, partition_size=50, unit="Percentage")
    trace = one_stage(nbp.Step("x", strategy=half, inputs={"v": "<+repeat.partition>"})).simulate()
    assert [i["v"] for i in trace[trace["parent"] == f"{STEPS}.x"]["inputs"]] == [items[:5], items[5:]]
    cut = Repeat(items=items, start=2, end=4)
    trace = one_stage(nbp.Step("x", strategy=cut, inputs={"v": "<+repeat.item>"})).simulate()
    assert [i["v"] for i in trace[trace["parent"] == f"{STEPS}.x"]["inputs"]] == [2, 3]


def test_R51_parallelism_makes_n_copies_and_R52_iteration_values_are_readable():
    step = nbp.Step(
        "copy",
        strategy=Parallelism(3, max_concurrency=2),
        inputs={
            "i": "<+strategy.iteration>",
            "n": "<+strategy.iterations>",
            "post": "<+strategy.identifierPostFix>",
            "own": "<+step.identifierPostFix>",
        },
    )
    trace = one_stage(step).simulate(default=5)
    its = trace[trace["parent"] == f"{STEPS}.copy"]
    assert list(its["step"]) == ["copy_0", "copy_1", "copy_2"]
    assert [tuple(i.values()) for i in its["inputs"]] == [
        (0, 3, "_0", "_0"),
        (1, 3, "_1", "_1"),
        (2, 3, "_2", "_2"),
    ]
    assert makespan(trace) == 10  # two lanes: 0 and 1 together, then 2


def test_R49_R52_stage_matrix_values_reach_its_steps_and_R46_later_stages_read_postfixed_ids():
    p = nbp.Pipeline("p")
    with p.stage("build", strategy={"matrix": {"py": ["3.11", "3.12"]}}) as s:
        s.step(
            "compile",
            outputs=["wheel"],
            inputs={"py": "<+stage.matrix.py>", "post": "<+stage.identifierPostFix>"},
        )
    with p.stage("publish") as s:
        s.step(
            "upload",
            inputs={
                "wheel": "<+pipeline.stages.build_1.spec.execution.steps.compile"
                ".output.outputVariables.wheel>"
            },
        )
    trace = p.simulate(outputs={"compile": {"wheel": "w.whl"}})
    compiles = trace[trace["step"] == "compile"]
    assert list(compiles["fqn"]) == [
        "pipeline.stages.build_0.spec.execution.steps.compile",
        "pipeline.stages.build_1.spec.execution.steps.compile",
    ]
    assert [i["py"] for i in compiles["inputs"]] == ["3.11", "3.12"]
    assert [i["post"] for i in compiles["inputs"]] == ["_0", "_1"]
    assert list(compiles["stage"]) == ["build_0", "build_1"]
    assert row(trace, "pipeline.stages.publish.spec.execution.steps.upload")["inputs"] == {"wheel": "w.whl"}


def test_E14_R46_an_unpostfixed_reference_into_a_looped_node_is_refused_naming_the_rule():
    p = nbp.Pipeline("p")
    with p.stage("build", strategy=Parallelism(2)) as s:
        s.step("compile", outputs=["wheel"])
    with p.stage("publish") as s:
        s.step(
            "upload",
            inputs={
                "w": "<+pipeline.stages.build.spec.execution.steps.compile.output.outputVariables.wheel>"
            },
        )
    with pytest.raises(nbp.DefinitionError) as caught:
        p.validate()
    (problem,) = caught.value.problems
    assert problem.rule == "R46" and "build_0" in problem.message and "postfixed" in problem.fix


@pytest.mark.parametrize(
    ("reference", "rule", "words"),
    [
        ("<+matrix.os>", "R52", "not inside a node with a matrix"),
        ("<+repeat.item>", "R52", "not inside a node with a repeat"),
        ("<+strategy.iteration>", "R52", "not inside a node with a looping strategy"),
    ],
)
def test_R52_iteration_values_outside_a_loop_are_refused(reference, rule, words):
    with pytest.raises(nbp.DefinitionError) as caught:
        one_stage(nbp.Step("a", inputs={"v": reference})).validate()
    (problem,) = caught.value.problems
    assert problem.rule == rule and words in problem.message


def test_R49_a_matrix_axis_the_matrix_does_not_have_is_refused():
    step = nbp.Step("a", strategy=Matrix(os=["l"]), inputs={"v": "<+matrix.arch>"})
    with pytest.raises(nbp.DefinitionError) as caught:
        one_stage(step).validate()
    (problem,) = caught.value.problems
    assert problem.rule == "R49" and "no axis 'arch'" in problem.message and "os" in problem.message


# -- items known only at run time (R50) -----------------------------------------------------------
HOSTS = {"repeat": {"items": "<+stage.output.hosts>", "maxConcurrency": 1}}


def test_R50_simulation_takes_run_time_item_counts_from_iterations_else_one_with_a_warning():
    p = one_stage(nbp.StepGroup("Phase", strategy=HOSTS, items=[nbp.Step("deploy")]))
    with pytest.warns(nbp.LoopingWarning, match=r"steps\.Phase: .*simulate\(iterations=\{'Phase': N\}\)"):
        trace = p.simulate(default=10)
    assert list(trace[trace["parent"] == f"{STEPS}.Phase"]["step_group"]) == ["Phase_0"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", nbp.LoopingWarning)
        trace = p.simulate(default=10, iterations={"Phase": 4})
    assert len(trace[trace["parent"] == f"{STEPS}.Phase"]) == 4 and makespan(trace) == 40
    with pytest.raises(nbp.SimulationError, match=r"'Phaze' is not a node with a looping strategy.*'Phase'"):
        p.simulate(iterations={"Phaze": 4})


def test_R50_a_real_run_resolves_items_when_the_node_starts_and_fails_it_when_they_are_no_list():
    seen = []
    p = nbp.Pipeline("p", variables={"hosts": "h1,h2,h3", "one": "h1"}, rules="current")
    with p.stage("s") as s:
        s.step(
            "each",
            run=lambda host: seen.append(host),
            inputs={"host": "<+repeat.item>"},
            strategy={"repeat": {"items": "<+<+pipeline.variables.hosts>.split(',')>"}},
        )
        s.step(
            "bad", strategy={"repeat": {"items": "<+pipeline.variables.one>"}}, when={"stageStatus": "All"}
        )
    trace = p.run(report=False)
    assert sorted(seen) == ["h1", "h2", "h3"]
    bad = row(trace, f"{STEPS}.bad")
    assert bad["status"] == "Failed" and "not a list" in bad["error"] and "'h1'" in bad["error"]


# -- failures of iterations (R54, R48 onFailure) -------------------------------------------------
def test_R54_a_failed_iteration_lets_the_others_run_and_fails_the_looped_node():
    p = one_stage(nbp.Step("x", strategy=Parallelism(3, max_concurrency=1)), nbp.Step("after"))
    trace = p.simulate(default=1, failures={"x_1": True})
    its = trace[trace["parent"] == f"{STEPS}.x"]
    assert list(its["status"]) == ["Success", "Failed", "Success"]
    assert row(trace, f"{STEPS}.x")["status"] == "Failed"
    assert row(trace, f"{STEPS}.after")["status"] == "Skipped"  # the stage failed so far (R29)


def test_R48_on_failure_skip_queued_leaves_the_queued_iterations_not_started():
    p = one_stage(nbp.Step("x", strategy={"parallelism": 3, "maxConcurrency": 1, "onFailure": "SkipQueued"}))
    trace = p.simulate(default=1, failures={"x_0": True})
    assert list(trace[trace["parent"] == f"{STEPS}.x"]["status"]) == ["Failed", "NotStarted", "NotStarted"]


# -- resource keys on looped Deployment stages (R13, D8, E10) -------------------------------------
def test_E10_iterations_of_a_looped_deployment_stage_on_one_infrastructure_queue():
    p = nbp.Pipeline("p")
    stage = p.stage(
        "deploy", type="Deployment", resource="infra:prod", strategy=Matrix(region=["eu", "us", "ap"])
    )
    stage.step("apply", duration=10)
    trace = p.simulate()
    its = trace[trace["parent"] == "pipeline.stages.deploy"]
    # all three start at once but wait for the infrastructure: one after the other
    assert list(zip(its["start_s"], its["end_s"])) == [(0, 10), (10, 20), (20, 30)]
    looped = row(trace, "pipeline.stages.deploy")
    assert looped["start_s"] == 0 and looped["end_s"] == 30  # the wait shows: start 0, iterations later


def test_R13_without_a_resource_key_looped_stage_iterations_overlap():
    p = nbp.Pipeline("p")
    p.stage("deploy", strategy=Matrix(region=["eu", "us"])).step("apply", duration=10)
    assert makespan(p.simulate()) == 10


# -- what the real pipelines need: secrets, Wait (issue 12 part 4) --------------------------------
def test_secrets_functor_resolves_to_a_mask_never_a_secret():
    p = one_stage(nbp.Step("a", inputs={"token": 'Bearer <+secrets.getValue("api_token")>'}))
    p.validate()
    trace = p.simulate()
    assert row(trace, f"{STEPS}.a")["inputs"] == {"token": "Bearer **************"}


def test_a_wait_steps_spec_duration_is_its_simulated_duration_and_a_real_wait():
    p = one_stage(nbp.Step("pause", type="Wait", spec={"duration": "2s"}), nbp.Step("next"))
    trace = p.simulate(default=1)
    assert row(trace, f"{STEPS}.pause")["duration_s"] == 2 and makespan(trace) == 3
    fast = one_stage(nbp.Step("pause", type="Wait", spec={"duration": "200ms"}))
    real = fast.run()
    assert row(real, f"{STEPS}.pause")["duration_s"] >= 0.2


def test_looping_strategies_round_trip_through_yaml():
    p = one_stage(
        nbp.Step(
            "x", type="ShellScript", spec={"shell": "Bash"}, strategy=Matrix(a=[1, 2], max_concurrency=1)
        )
    )
    text = p.to_yaml()
    assert "matrix:" in text and "maxConcurrency: 1" in text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = nbp.load_yaml(text, rules="current")
    assert nbp.definition.looping.coerce_strategy(again.stages[0].items[0].strategy) == Matrix(
        a=[1, 2], max_concurrency=1
    )


def test_R46_monte_carlo_and_compare_time_a_looped_stage_by_its_own_row():
    p = nbp.Pipeline("p")
    p.stage("deploy", strategy=Matrix(r=["eu", "us"], max_concurrency=1)).step("apply", duration=10)
    sampled = nbp.monte_carlo(p, runs=2)
    compared = nbp.compare({"a": p})
    assert list(sampled["stage:deploy"]) == [20, 20] and list(sampled["makespan_s"]) == [20, 20]
    assert compared.loc["a", "stage:deploy"] == 20 and "stage:deploy_0" not in compared.columns
