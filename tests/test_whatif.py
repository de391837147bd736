"""What-if helpers: ``compare`` designs, ``monte_carlo`` over sampled durations, ``critical_path``.

Every number is checked against the analytic value of a small design (virtual time is exact)
or against ``simulate()`` itself.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import notebook_pipelines as nbp
from notebook_pipelines.analysis.whatif import critical_path, summarize
from notebook_pipelines.engine.simulation import SimulationError, simulate

REPO = Path(__file__).resolve().parents[1]


def release(grouped: bool, with_deploy: bool = True) -> nbp.Pipeline:
    """build: compile 20 s, then unit 30 s and lint 10 s (in parallel when ``grouped``); deploy 5 s."""
    p = nbp.Pipeline("release")
    with p.stage("build") as s:
        s.step("compile", duration="20s")
        if grouped:
            with s.parallel():
                s.step("unit", duration="30s")
                s.step("lint", duration="10s")
        else:
            s.step("unit", duration="30s")
            s.step("lint", duration="10s")
    if with_deploy:
        with p.stage("deploy") as s:
            s.step("ship", duration="5s", failure_strategies=nbp.Retry(2, intervals="10s"))
    return p


# -- compare ------------------------------------------------------------------------------------


def test_compare_two_designs_on_the_same_durations():
    table = nbp.compare({"serial": release(False), "grouped": release(True)})
    assert list(table.index) == ["serial", "grouped"]
    assert table.index.name == "design"
    assert table.loc["serial", "makespan_s"] == 65.0
    assert table.loc["grouped", "makespan_s"] == 55.0
    assert table.loc["serial", "speedup"] == 1.0
    assert table.loc["grouped", "speedup"] == pytest.approx(65 / 55)
    assert table.loc["serial", "critical_path"] == "compile → unit → lint → ship"
    assert table.loc["grouped", "critical_path"] == "compile → unit → ship"
    assert table.loc["grouped", "critical_path_s"] == 55.0
    assert table.loc["grouped", "stage:build"] == 50.0
    assert table.loc["grouped", "stage:deploy"] == 5.0
    assert list(table["status"]) == ["Success", "Success"]
    assert list(table["steps"]) == [4, 4]
    assert list(table.columns[:7]) == [
        "makespan_s",
        "speedup",
        "status",
        "critical_path",
        "critical_path_s",
        "steps",
        "attempts",
    ]


def test_compare_shared_durations_override_the_declared_ones():
    table = nbp.compare({"serial": release(False), "grouped": release(True)}, durations={"lint": "1m"})
    assert table.loc["serial", "makespan_s"] == 20 + 30 + 60 + 5
    assert table.loc["grouped", "makespan_s"] == 20 + 60 + 5
    assert table.loc["grouped", "critical_path"] == "compile → lint → ship"


def test_compare_two_settings_of_one_design():
    p = release(True)
    table = nbp.compare(
        {"now": p, "faster unit": (p, {"durations": {"unit": 12}})}, durations={"compile": 10}
    )
    assert table.loc["now", "makespan_s"] == 10 + 30 + 5
    assert table.loc["faster unit", "makespan_s"] == 10 + 12 + 5  # shared and own durations merged
    assert table.loc["faster unit", "critical_path"] == "compile → unit → ship"


def test_compare_with_failures_shows_retries_as_waits_on_the_critical_path():
    table = nbp.compare({"ok": release(True), "flaky": (release(True), {"failures": {"ship": 2}})})
    flaky = table.loc["flaky"]
    assert flaky["makespan_s"] == 50 + 5 + 10 + 5 + 10 + 5
    assert flaky["critical_path"] == "compile → unit → ship → ship#2 → ship#3"
    assert flaky["critical_path_s"] == 50 + 15  # the 20 s of retry intervals are waiting
    assert flaky["attempts"] == 6
    assert flaky["status"] == "Success"
    failing = nbp.compare({"x": release(True)}, failures={"ship": True}).loc["x"]
    assert failing["status"] == "Failed"


def test_compare_a_stage_missing_from_a_design_is_nan():
    table = nbp.compare({"build only": release(True, with_deploy=False), "full": release(True)})
    assert np.isnan(table.loc["build only", "stage:deploy"])
    assert table.loc["full", "stage:deploy"] == 5.0


def test_compare_a_list_of_designs_is_named_by_pipeline_id():
    a, b = release(True), nbp.Pipeline("other", stages=[nbp.Stage("s", items=[nbp.Step("x", duration=3)])])
    table = nbp.compare([a, b.plan()])
    assert list(table.index) == ["release", "other"]
    with pytest.raises(SimulationError, match="designs share ids"):
        nbp.compare([release(True), release(False)])


def test_compare_keys_must_match_a_step_of_some_design():
    ok = nbp.compare({"a": release(True), "b": release(True, with_deploy=False)}, durations={"ship": 1})
    assert ok.loc["a", "makespan_s"] == 51.0
    with pytest.raises(SimulationError, match="did you mean 'ship'"):
        nbp.compare({"a": release(True)}, durations={"shp": 1})


@pytest.mark.parametrize(
    ("designs", "message"),
    [
        ({}, "at least one design"),
        ("release", "takes {'name': pipeline"),
        ({"a": (release(True), "fast")}, "must be a pipeline or (pipeline, {options})"),
        (
            {"a": (release(True), {"defualt": 3})},
            "compare(): design 'a': no option 'defualt'; the options are durations, default, failures, "
            "interventions, outputs, seed",
        ),
    ],
)
def test_compare_bad_designs_are_clear_errors(designs: Any, message: str):
    with pytest.raises(SimulationError) as err:
        nbp.compare(designs)
    assert message in str(err.value)


def undeclared(with_gate: bool = False) -> nbp.Pipeline:
    """Steps without a declared duration (``default`` decides), and one gated by an output."""
    p = nbp.Pipeline("undeclared")
    with p.stage("s") as s:
        s.step("a", outputs=["go"])
        s.step("b", duration="5s")
        with s.parallel():
            s.step("c")
            s.step("d", duration="2s")
        if with_gate:
            s.step("gated", when='<+execution.steps.a.output.outputVariables.go> == "yes"')
    return p


def makespan(trace: pd.DataFrame) -> float:
    return float(trace.loc[trace["kind"] == "pipeline", "duration_s"].iloc[0])


SIMULATE_OPTIONS = [
    {},
    {"default": "10s"},
    {"default": lambda rng: rng.uniform(5, 15), "seed": 7},
    {"durations": {"c": "1m"}, "default": 3},
    {"failures": {"b": [1]}, "default": "2s"},
    {"outputs": {"a": {"go": "yes"}}, "default": "10s"},
]


@pytest.mark.parametrize("options", SIMULATE_OPTIONS, ids=lambda o: ",".join(o) or "none")
def test_compare_runs_each_design_as_simulate_runs_it_with_the_same_options(options: dict):
    """compare(designs, **options) row == simulate(design, **options), default= included."""
    p = undeclared(with_gate=True)
    expected = makespan(simulate(p, **options))
    assert nbp.compare({"p": p}, **options).loc["p", "makespan_s"] == expected
    shared = {k: v for k, v in options.items() if k != "seed"}
    own = {"seed": options["seed"]} if "seed" in options else {}
    assert nbp.compare({"p": (p, own)}, **shared).loc["p", "makespan_s"] == expected
    assert nbp.compare({"p": (p, options)}).loc["p", "makespan_s"] == expected  # all per design


def test_compare_a_designs_own_default_replaces_the_shared_one():
    p = undeclared()
    table = nbp.compare({"1s": p, "10s": (p, {"default": "10s"})}, default="1s")
    assert table.loc["1s", "makespan_s"] == makespan(simulate(p, default="1s"))
    assert table.loc["10s", "makespan_s"] == makespan(simulate(p, default="10s"))
    assert list(table["makespan_s"]) == [1 + 5 + 2, 10 + 5 + 10]  # a, b, then c ∥ d (2 s)


@pytest.mark.parametrize("options", SIMULATE_OPTIONS, ids=lambda o: ",".join(o) or "none")
def test_monte_carlo_runs_replay_with_simulate_and_the_same_options(options: dict):
    p = undeclared(with_gate=True)
    options = {k: v for k, v in options.items() if k != "seed"}
    mc = nbp.monte_carlo(p, runs=4, seed=5, **options, engine="scheduler")
    for row in mc.itertuples():
        assert row.makespan_s == makespan(simulate(p, seed=int(row.seed), **options))


def test_compare_and_monte_carlo_take_every_simulate_option_with_its_default():
    import inspect

    from notebook_pipelines.analysis.options import RUN_OPTIONS

    simulate_parameters = inspect.signature(simulate).parameters
    for helper in (nbp.compare, nbp.monte_carlo):
        parameters = inspect.signature(helper).parameters
        for name in RUN_OPTIONS:
            assert parameters[name].default == simulate_parameters[name].default, (helper, name)
    assert set(RUN_OPTIONS) == {"durations", "default", "failures", "interventions", "outputs"}


# -- critical path --------------------------------------------------------------------------------


def test_critical_path_follows_the_slowest_parallel_sibling():
    path = critical_path(simulate(release(True)))
    assert list(path["step"]) == ["compile", "unit", "ship"]
    assert (path["start_s"].to_numpy()[1:] == path["end_s"].to_numpy()[:-1]).all()


def test_critical_path_of_parallel_stages_with_a_shared_resource_D8():
    p = nbp.Pipeline("d8")
    with p.parallel():
        p.add(nbp.Stage("us", resource="prod", items=[nbp.Step("u", duration=4)]))
        p.add(nbp.Stage("eu", resource="prod", items=[nbp.Step("e", duration=3)]))
        p.add(nbp.Stage("ap", items=[nbp.Step("a", duration=6)]))
    path = critical_path(simulate(p))
    assert list(path["step"]) == ["u", "e"]  # eu waits for us: 7 s beats ap's 6 s


def test_critical_path_through_a_stage_rollback_R36():
    p = nbp.Pipeline("rb")
    with p.stage("deploy", failure_strategies=nbp.StageRollback()) as s:
        s.step("prepare", duration=2)
        with s.parallel():
            s.step("fail", duration=1)
            s.step("slow", duration=5)
        with s.rollback():
            s.step("undo", duration=3)
    path = critical_path(simulate(p, failures={"fail": True}))
    assert list(path["step"]) == ["prepare", "slow", "undo"]  # E1: the rollback waits for the slow sibling


def test_critical_path_of_a_real_run_matches_the_simulation():
    def sleeper(seconds: float):
        def body() -> None:
            time.sleep(seconds)

        return body

    p = nbp.Pipeline("real")
    with p.stage("s") as s:
        s.step("a", run=sleeper(0.03), duration=0.03)
        with s.parallel():
            s.step("b", run=sleeper(0.09), duration=0.09)
            s.step("c", run=sleeper(0.03), duration=0.03)
        s.step("d", run=sleeper(0.03), duration=0.03)
    assert (
        list(critical_path(p.run())["step"]) == list(critical_path(p.simulate())["step"]) == ["a", "b", "d"]
    )


def test_critical_path_leaves_out_steps_that_took_no_time():
    instant = [nbp.Step(f"z{i}", duration=0) for i in range(2_000)]  # no ties to search through
    steps = [*instant, nbp.Step("work", duration=2), nbp.Step("last", duration=0)]
    p = nbp.Pipeline("zero", stages=[nbp.Stage("s", items=steps)])
    assert list(critical_path(simulate(p))["step"]) == ["work"]


def test_critical_path_of_a_trace_where_nothing_ran_is_empty():
    p = nbp.Pipeline("skip")
    with p.stage("s", when={"pipelineStatus": "Success", "condition": "false"}) as s:
        s.step("a", duration=1)
    assert critical_path(simulate(p)).empty


# -- Monte Carlo ----------------------------------------------------------------------------------


def two_parallel() -> nbp.Pipeline:
    p = nbp.Pipeline("mc")
    with p.stage("work") as s, s.parallel():
        s.step("a")
        s.step("b")
    with p.stage("ship") as s:
        s.step("c", duration=1)
    return p


UNIFORM = {"a": lambda rng: rng.uniform(0, 1), "b": lambda rng: rng.uniform(0, 1)}


def test_monte_carlo_rows_and_columns():
    mc = nbp.monte_carlo(two_parallel(), UNIFORM, runs=50, engine="scheduler")
    assert list(mc.columns) == ["run", "seed", "makespan_s", "status", "stage:work", "stage:ship"]
    assert list(mc["run"]) == list(range(50))
    assert mc["seed"].is_unique
    assert (mc["status"] == "Success").all()
    assert np.allclose(mc["makespan_s"], mc["stage:work"] + mc["stage:ship"])
    assert np.allclose(mc["stage:ship"], 1.0)


def test_monte_carlo_the_makespan_of_two_parallel_uniforms_is_their_maximum():
    mc = nbp.monte_carlo(two_parallel(), UNIFORM, runs=600, engine="scheduler")
    work = mc["stage:work"]
    assert work.mean() == pytest.approx(2 / 3, abs=0.04)  # E[max(U1, U2)] = 2/3
    assert work.quantile(0.5) == pytest.approx(np.sqrt(0.5), abs=0.05)  # median of the max: √½


def test_monte_carlo_is_reproducible_and_each_run_replays_with_simulate():
    p = two_parallel()
    one = nbp.monte_carlo(p, UNIFORM, runs=30, seed=11, engine="scheduler")
    two = nbp.monte_carlo(p.plan(), UNIFORM, runs=30, seed=11, engine="scheduler")
    pd.testing.assert_frame_equal(one, two)
    other = nbp.monte_carlo(p, UNIFORM, runs=30, seed=12, engine="scheduler")
    assert not np.allclose(one["makespan_s"], other["makespan_s"])
    for row in one.iloc[[0, 17, 29]].itertuples():
        trace = simulate(p, durations=UNIFORM, seed=int(row.seed))
        root = trace[trace["kind"] == "pipeline"].iloc[0]
        assert root["duration_s"] == row.makespan_s
        stage = trace.set_index("fqn").loc["pipeline.stages.work"]
        assert stage["duration_s"] == one.loc[row.Index, "stage:work"]


def test_monte_carlo_with_failure_probabilities_mixes_statuses():
    p = nbp.Pipeline("flaky")
    with p.stage("s") as s:
        s.step("deploy", duration=10, failure_strategies=nbp.Retry(1, intervals="30s"))
    mc = nbp.monte_carlo(p, failures={"deploy": 0.5}, runs=200, engine="scheduler")
    counts = mc["status"].value_counts()
    assert 20 < counts.get("Failed", 0) < 80  # both attempts fail: 1/4 of the runs
    assert set(mc["makespan_s"]) == {10.0, 50.0}


def test_monte_carlo_summary_percentiles():
    mc = nbp.monte_carlo(two_parallel(), UNIFORM, runs=100, percentiles=(50, 90), engine="scheduler")
    summary = nbp.summarize(mc)  # the percentiles asked of monte_carlo
    assert list(summary.index) == ["makespan_s", "stage:work", "stage:ship"]
    assert list(summary.columns) == ["runs", "mean", "std", "min", "p50", "p90", "max"]
    values = mc["makespan_s"].to_numpy()
    assert summary.loc["makespan_s", "p90"] == pytest.approx(np.percentile(values, 90))
    assert summary.loc["makespan_s", "mean"] == pytest.approx(values.mean())
    assert summary.loc["makespan_s", "runs"] == 100
    assert summarize(mc, (95,)).loc["makespan_s", "p95"] == pytest.approx(np.percentile(values, 95))


def test_monte_carlo_results_merge_and_concat_like_any_frame():
    mc = nbp.monte_carlo(two_parallel(), UNIFORM, runs=10, seed=3, engine="scheduler")
    plain = {"pipeline": "mc", "seed": 3, "runs": 10, "percentiles": (50, 90, 95, 99), "engine": "scheduler"}
    assert plain.items() <= mc.attrs.items()  # plain values only (issue 28 adds engine, criticality, …)
    assert all(isinstance(v, str | int | float | tuple | dict | type(None)) for v in mc.attrs.values())
    merged = mc.merge(nbp.monte_carlo(two_parallel(), UNIFORM, runs=10, seed=4, engine="scheduler"), on="run")
    assert len(merged) == 10
    assert len(pd.concat([mc, mc.copy()])) == 20


def test_summarize_skips_runs_where_a_stage_never_started():
    results = pd.DataFrame({"makespan_s": [3.0, 4.0, 5.0], "stage:late": [1.0, np.nan, 3.0]})
    summary = summarize(results, percentiles=(50,))
    assert summary.loc["stage:late", "runs"] == 2
    assert summary.loc["stage:late", "p50"] == 2.0


def test_monte_carlo_progress_counter(capsys: pytest.CaptureFixture[str]):
    nbp.monte_carlo(two_parallel(), UNIFORM, runs=20, progress=True, engine="scheduler")
    assert "monte_carlo: 20/20 runs" in capsys.readouterr().err
    nbp.monte_carlo(two_parallel(), UNIFORM, runs=20, engine="scheduler")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"runs": 0}, "runs=0"),
        ({"percentiles": (50, 101)}, "percentiles [101]"),
        ({"durations": {"z": 1}}, "no step of pipeline 'mc' matches 'z'"),
    ],
)
def test_monte_carlo_bad_options_are_clear_errors(options: dict, message: str):
    with pytest.raises(SimulationError) as err:
        nbp.monte_carlo(two_parallel(), **options, engine="scheduler")
    assert message in str(err.value)


# -- a baseline that cannot be simulated is refused (issue 23 item 6) ------------------------------
def unreadable() -> nbp.Pipeline:
    """b reads a's output v; a has a body that declares no outputs, so virtual time has no v."""
    p = nbp.Pipeline("unreadable")
    with p.stage("s") as s:
        s.step("a", run=lambda: None, duration=10)
        s.step("b", duration=30, inputs={"x": "<+execution.steps.a.output.outputVariables.v>"})
    return p


def test_compare_refuses_a_design_that_fails_before_a_step_runs_naming_the_step_and_reason():
    with pytest.raises(nbp.SimulationError) as err:
        nbp.compare({"ok": release(True), "broken": unreadable()})
    message = str(err.value)
    assert "design 'broken'" in message and "pipeline.stages.s.spec.execution.steps.b" in message
    assert "has no output variable 'v'" in message and "outputs=['name']" in message
    # an injected failure is the user's question, not a broken design: still reported
    assert nbp.compare({"x": release(True)}, failures={"ship": True}).loc["x", "status"] == "Failed"


def test_monte_carlo_refuses_a_pipeline_that_fails_before_a_step_runs():
    message = r"monte_carlo\(\): 'unreadable'.*steps\.b failed before it ran"
    with pytest.raises(nbp.SimulationError, match=message):
        nbp.monte_carlo(unreadable(), runs=3, engine="scheduler")
    fixed = unreadable()
    fixed.stages[0].items[0].outputs = ["v"]  # declared: virtual time publishes it (None)
    assert list(nbp.monte_carlo(fixed, runs=3, engine="scheduler")["makespan_s"]) == [10 + 30] * 3


def test_compare_and_monte_carlo_time_a_sketch_whose_steps_have_no_bodies():
    p = nbp.Pipeline("sketch")
    with p.stage("s") as s:
        s.step("a", duration=10)
        s.step("b", duration=30, inputs={"x": "<+execution.steps.a.output.outputVariables.v>"})
    assert nbp.compare({"sketch": p}).loc["sketch", ["makespan_s", "status"]].tolist() == [40.0, "Success"]
    assert set(nbp.monte_carlo(p, runs=2, engine="scheduler")["status"]) == {"Success"}


def test_what_if_of_a_real_run_replays_the_outputs_its_bodies_published():
    p = nbp.Pipeline("real")
    with p.stage("s") as s:
        s.step("a", run=lambda: {"v": "eu"})
        s.step("b", inputs={"x": "<+execution.steps.a.output.outputVariables.v>"}, run=lambda x: None)
    trace = p.run(progress=False)
    table = trace.pipeline.what_if()
    assert table["status"].tolist() == ["Success", "Success"]  # b reads a's v as it did in the run


# -- a large `runs` (issue 24 item 9) ----------------------------------------------------------------
_MANY_RUNS = """
import os, resource, signal, time
resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))  # 10**7 seed sequences: ~3.7 GB
import notebook_pipelines as nbp
p = nbp.Pipeline("mc")
with p.stage("s") as s:
    s.step("a")
nbp.monte_carlo(p, {"a": 1.0}, runs=2, engine="scheduler")  # imports and warms up
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
def first(rng):
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024
    print(f"first sample|{time.perf_counter() - started < 5}|{grown < 50}", flush=True)
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the first run
    return 1.0
try:
    nbp.monte_carlo(p, {"a": first}, runs=1_000_000, engine="scheduler")
except BaseException as err:
    print(f"{type(err).__name__}|{err}|{len(err.trace)}", flush=True)
try:
    nbp.monte_carlo(p, runs=10**7, engine="scheduler")
except BaseException as err:
    print(f"{type(err).__name__}|{err}", flush=True)
"""


def test_monte_carlo_makes_seeds_as_it_goes_and_refuses_more_than_max_runs():
    # a million runs: the first starts at once, with no memory spent on seeds (spawn(10**6) took
    # ~90 s and ~370 MB first); a Ctrl-C there is RunInterrupted; 10**7 runs are refused at once
    done = subprocess.run(
        [sys.executable, "-c", _MANY_RUNS], capture_output=True, text=True, cwd=REPO, timeout=60
    )  # a hard timeout: the old code spent minutes and GBs on seeds
    assert done.stdout.splitlines() == [
        "first sample|True|True",
        "RunInterrupted|monte_carlo interrupted after 0 of 1,000,000 runs; the finished runs are in .trace|0",
        "SimulationError|monte_carlo(runs=10,000,000): at most 1,000,000 runs in one call; a percentile "
        "needs far fewer (p99 is stable within a few thousand): call it in batches with seed=0, 1, 2, … "
        "and pd.concat the results if you really need more",
    ], done.stderr[-2000:]


def test_monte_carlo_lazy_seeds_are_the_children_of_the_seed_sequence():
    # the seeds made one by one are those of SeedSequence(seed).spawn(runs): old results replay
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a")
    mc = nbp.monte_carlo(p, {"a": lambda rng: rng.uniform(1, 2)}, runs=5, seed=7, engine="scheduler")
    spawned = [int(c.generate_state(1, np.uint64)[0]) for c in np.random.SeedSequence(7).spawn(5)]
    assert mc["seed"].tolist() == spawned and mc["seed"].dtype == "uint64"


# -- what_if of a history: shapes a user brings ----------------------------------------------------
def _unit_scan(*scans: str, parallel: bool) -> nbp.Pipeline:
    p = nbp.Pipeline("ci")
    with p.stage("s") as s:
        if parallel:
            with s.parallel():
                for step in ("unit", *scans):
                    s.step(step)
        else:
            for step in ("unit", *scans):
                s.step(step)
    return p


def _measured(p: nbp.Pipeline, runs: list[dict[str, float]]) -> pd.DataFrame:
    """A history of ``p``: one simulation per run with the given durations, run ids 0, 1, …"""
    frames = [simulate(p, durations=d).assign(run_id=str(i)) for i, d in enumerate(runs)]
    return pd.concat(frames, ignore_index=True)


def test_what_if_of_a_history_of_one_run_takes_the_history_options():
    """A history that holds one run (a first fetch, one trace) refused design=/scale=/runs= with
    "no option 'scale'", though the same call on two runs answers."""
    from notebook_pipelines.analysis.whatif import what_if

    serial, parallel = _unit_scan("scan", parallel=False), _unit_scan("scan", parallel=True)
    h = _measured(serial, [{"unit": 12.0, "scan": 10.0}])
    table = what_if(h, pipeline=serial, design=parallel, scale={"scan": 0.5}, runs=50)
    # as measured: 12 + 10 = 22; what if: side by side, scan 50 % faster: max(12, 5) = 12
    assert table["p50_s"].tolist() == [22.0, 12.0] and table["runs"].tolist() == [50, 50]
    # a trace this session made knows its pipeline: pipeline= is not needed
    table = what_if(simulate(serial, durations={"unit": 12.0, "scan": 10.0}), design=parallel, runs=5)
    assert table["p50_s"].tolist() == [22.0, 12.0]


def test_what_if_of_a_history_warns_for_the_designs_steps_it_does_not_measure():
    """The design's own steps (scan split into scan1 and scan2) have no measurement: they took
    default= (1 s) silently. They are named now, unless durations= gives them."""
    from notebook_pipelines.analysis.whatif import what_if

    serial, split = _unit_scan("scan", parallel=False), _unit_scan("scan1", "scan2", parallel=True)
    h = _measured(serial, [{"unit": 12.0, "scan": 10.0}, {"unit": 12.0, "scan": 20.0}])
    with pytest.warns(nbp.HistoryDurationsWarning, match=r"steps\.scan1, .*steps\.scan2; they take"):
        table = what_if(h, pipeline=serial, design=split, runs=20)
    assert table.loc["what if", "p50_s"] == 12.0  # max(12, 1, 1)
    with pytest.warns(nbp.HistoryDurationsWarning) as caught:
        what_if(h, {"scan1": 3.0}, pipeline=serial, design=split, runs=20)
    assert len(caught) == 1 and "scan1" not in str(caught[0].message) and "scan2" in str(caught[0].message)


def test_what_if_of_a_history_refuses_an_infinite_scale_as_a_scale():
    """scale={"scan": inf} passed the factor check and failed later as "the duration of … scan
    (durations) is inf": it is the factor that is wrong."""
    from notebook_pipelines.analysis.whatif import what_if

    serial = _unit_scan("scan", parallel=False)
    h = _measured(serial, [{"unit": 12.0, "scan": 10.0}, {"unit": 12.0, "scan": 20.0}])
    with pytest.raises(SimulationError, match=r"scale\['scan'\]: give a finite factor ≥ 0"):
        what_if(h, pipeline=serial, scale={"scan": float("inf")}, runs=20)


def test_distribution_says_how_many_runs_did_not_succeed():
    """Runs that failed end early (at a's 3 s): their makespan is in the percentiles printed,
    with nothing to say so."""
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", duration=3)
        s.step("b", duration=2)
    mc = nbp.monte_carlo(p, runs=10, failures={"a": 0.5}, seed=1)
    failed = int((mc["status"] == "Failed").sum())
    assert 0 < failed < 10  # some runs fail (at 3 s), the others succeed (5 s)
    d = nbp.distribution(mc)
    assert d.unsuccessful == {"Failed": failed}
    assert f"{failed} of 10 runs did not succeed (Failed {failed}): their makespan" in repr(d)
    assert nbp.distribution(nbp.monte_carlo(p, runs=3)).unsuccessful == {}


def test_distribution_of_what_is_not_monte_carlo_results_is_a_clear_error():
    trace = simulate(release(False))
    with pytest.raises(SimulationError, match=r"distribution\(\) reads monte_carlo results .* not a trace"):
        nbp.distribution(trace)
    with pytest.raises(SimulationError, match=r"distribution\(ci=1.5\): give the confidence as a share"):
        nbp.distribution(nbp.monte_carlo(release(False), runs=3), ci=1.5)


def test_compare_takes_mode_with_a_history():
    """compare(durations=h, mode=…) was a TypeError, though simulate, monte_carlo and what_if
    take mode. Runs (a=1, b=1) and (a=10, b=10): joint, a and b come from one run (2 or 20 s);
    independent, each from its own, so some seeds mix them (1 + 10 = 11 s)."""
    p = _unit_scan("scan", parallel=False)
    h = _measured(p, [{"unit": 1.0, "scan": 1.0}, {"unit": 10.0, "scan": 10.0}])
    joint = {nbp.compare([p], durations=h, seed=s)["makespan_s"].iloc[0] for s in range(12)}
    independent = {
        nbp.compare([p], durations=h, seed=s, mode="independent")["makespan_s"].iloc[0] for s in range(12)
    }
    assert joint <= {2.0, 20.0} and 11.0 in independent and independent <= {2.0, 11.0, 20.0}


def test_what_if_of_a_history_scales_a_step_it_does_not_measure():
    """scale= of a step the history lacks (it takes default=) was silently not applied."""
    from notebook_pipelines.analysis.whatif import what_if

    measured, grown = _unit_scan("scan", parallel=False), _unit_scan("scan", "new", parallel=False)
    h = _measured(measured, [{"unit": 10.0, "scan": 5.0}, {"unit": 10.0, "scan": 5.0}])
    with pytest.warns(nbp.HistoryDurationsWarning, match=r"steps\.new"):
        table = what_if(h, pipeline=grown, scale={"new": 0.5}, default=8.0, runs=20)
    # before: 10 + 5 + 8 (new takes the default) = 23; new twice as fast: 10 + 5 + 4 = 19
    assert table["p50_s"].tolist() == [23.0, 19.0]


def test_summarize_of_what_is_not_monte_carlo_results_is_a_clear_error():
    """summarize(h) of a history returned an empty table, summarize(dict) an AttributeError."""
    trace = simulate(release(False))
    with pytest.raises(SimulationError, match=r"summarize\(\) reads monte_carlo results .* not a trace"):
        nbp.summarize(trace)
    with pytest.raises(SimulationError, match=r"not a dict"):
        nbp.summarize({"makespan_s": [1.0, 2.0]})


def test_monte_carlo_progress_counter_on_the_vectorised_path(capsys: pytest.CaptureFixture[str], monkeypatch):
    """progress=True showed nothing on the vectorised path: now its chunks are counted."""
    from notebook_pipelines.analysis import montecarlo

    monkeypatch.setattr(montecarlo, "CHUNK_CELLS", 60, raising=False)  # 6 nodes: chunks of 10 runs
    mc = nbp.monte_carlo(two_parallel(), UNIFORM, runs=25, progress=True)
    assert mc.attrs["engine"] == "vectorised"
    err = capsys.readouterr().err
    assert "monte_carlo: 10/25 runs" in err and "monte_carlo: 25/25 runs" in err
