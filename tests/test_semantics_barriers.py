"""Barriers (SEMANTICS R55–R58, E11, E12), with the makespans they imply checked from the trace."""

from __future__ import annotations

import pytest

import notebook_pipelines as nbp
from notebook_pipelines.formats.yaml_io import YamlWarning

A = "pipeline.stages.a.spec.execution.steps"
B = "pipeline.stages.b.spec.execution.steps"


def row(trace, fqn: str):
    (found,) = trace.index[trace["fqn"] == fqn]
    return trace.loc[found]


def two_stages(prep_a=10, prep_b=30, barrier_b="ready", timeout="1h", declared=("ready",)) -> nbp.Pipeline:
    p = nbp.Pipeline("p", barriers=list(declared))
    with p.parallel():
        with p.stage("a") as a:
            a.step("prep", duration=prep_a)
            a.step("meet", type="Barrier", spec={"barrierRef": "ready"}, timeout=timeout)
            a.step("go", duration=5)
        with p.stage("b") as b:
            b.step("prep", duration=prep_b)
            b.step("meet", type="Barrier", spec={"barrierRef": barrier_b}, timeout=timeout)
            b.step("go", duration=5)
    return p


def test_R56_participants_with_unequal_arrival_wait_for_each_other_then_go_on_together():
    trace = two_stages().simulate()
    # by hand: a arrives at 10, b at 30; both leave at 30; both `go` end at 35
    assert (row(trace, f"{A}.meet")["start_s"], row(trace, f"{A}.meet")["end_s"]) == (10, 30)
    assert (row(trace, f"{B}.meet")["start_s"], row(trace, f"{B}.meet")["end_s"]) == (30, 30)
    assert row(trace, f"{A}.go")["start_s"] == row(trace, f"{B}.go")["start_s"] == 30
    assert (
        trace[trace["kind"] == "pipeline"]["end_s"].iloc[0] == 35
    )  # without the barrier: 35 too, a ends at 15
    assert set(trace["status"]) == {"Success"}


def test_R57_E11_a_participant_failing_before_the_barrier_fails_the_others_at_it():
    trace = two_stages().simulate(failures={f"{B}.prep": "Timeout"})
    meet = row(trace, f"{A}.meet")
    # a waits from 10 until b fails at 30, then fails at the barrier — not by its 1h timeout
    assert meet["status"] == "Failed" and (meet["start_s"], meet["end_s"]) == (10, 30)
    assert f"{B}.meet ended Skipped before reaching barrier 'ready'" in meet["error"]
    assert row(trace, f"{A}.go")["status"] == "Skipped"
    assert row(trace, "pipeline.stages.a")["status"] == "Failed"


def test_R57_a_barrier_timeout_is_a_failure_and_fails_the_other_participant():
    trace = two_stages(prep_b=600, timeout="1m").simulate()
    meet = row(trace, f"{A}.meet")
    assert meet["status"] == "Expired" and meet["error_type"] == "Timeout" and meet["end_s"] == 70
    late = row(trace, f"{B}.meet")  # b arrives at 600: the barrier is broken, it fails at once
    assert late["status"] == "Failed" and late["start_s"] == late["end_s"] == 600
    assert "timed out" in late["error"]


def test_R55_an_undeclared_barrier_is_refused_naming_it():
    with pytest.raises(nbp.DefinitionError) as caught:
        two_stages(barrier_b="elsewhere").validate()
    (problem,) = caught.value.problems
    assert problem.rule == "R55" and "'elsewhere' is not declared (declared: ready)" in problem.message
    assert problem.fqn == f"{B}.meet" and "barriers=" in problem.fix


def test_R58_E12_the_same_barrier_in_sequential_stages_is_refused_as_a_deadlock():
    p = nbp.Pipeline("p", barriers=["ready"])
    for sid in ("a", "b"):
        with p.stage(sid) as s:
            s.step("meet", type="Barrier", spec={"barrierRef": "ready"})
    with pytest.raises(nbp.DefinitionError) as caught:
        p.validate()
    (problem,) = caught.value.problems
    assert (
        problem.rule == "R58"
        and "do not run in parallel" in problem.message
        and "deadlock" in problem.message
    )


def test_R58_E12_a_barrier_in_a_looped_node_with_max_concurrency_is_refused():
    p = nbp.Pipeline("p", barriers=["ready"], rules="current")
    with p.stage("s") as s, s.step_group("g", strategy=nbp.Parallelism(3, max_concurrency=1)) as g:
        g.step("meet", type="Barrier", spec={"barrierRef": "ready"})
    with pytest.raises(nbp.DefinitionError) as caught:
        p.validate()
    (problem,) = caught.value.problems
    assert problem.rule == "R58" and "maxConcurrency" in problem.message


def test_R58_every_iteration_of_a_looped_group_meets_at_the_barrier():
    p = nbp.Pipeline("p", barriers=["ready"], rules="current")
    with p.stage("s") as s, s.step_group("g", strategy=nbp.Repeat(items=[10, 20, 40])) as g:
        g.step("work", inputs={"t": "<+repeat.item>"})
        g.step("meet", type="Barrier", spec={"barrierRef": "ready"})
        g.step("after", duration=1)
    trace = p.simulate(
        durations={
            "pipeline.stages.s.spec.execution.steps.g_0.steps.work": 10,
            "pipeline.stages.s.spec.execution.steps.g_1.steps.work": 20,
            "pipeline.stages.s.spec.execution.steps.g_2.steps.work": 40,
        },
        default=1,
    )
    meets = trace[trace["step"] == "meet"]
    assert list(meets["end_s"]) == [40, 40, 40] and list(meets["start_s"]) == [10, 20, 40]


def test_R55_barriers_round_trip_through_yaml_and_the_corpus_shape_loads():
    p = two_stages()
    with pytest.warns(YamlWarning, match="a simulated duration"):  # durations have no Harness form
        text = p.to_yaml()
    assert "flowControl" in text and "barrierRef: ready" in text
    again = nbp.load_yaml(text)  # nothing kept as data: barriers are modelled (R55)
    again.validate()
    durations = {f"{A}.prep": 10, f"{B}.prep": 30, "go": 5}
    assert again.simulate(durations=durations)["end_s"].max() == 35
