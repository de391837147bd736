"""Parent statuses and the trace of every outcome on the real-time engine (R14, R26, R27, D4,
D6, D8, E2, E10, E15).

A container (step group, stage, pipeline) is ``Success`` when every child is in
{Success, Skipped, IgnoreFailed}; otherwise it takes the most severe child status, in the
order Aborted > Errored > Failed > Expired (D4). ``run()`` returns a trace that lists every
node of the plan, whatever the outcome (D6).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from conftest import boom, ok, row, rows, run, status

import notebook_pipelines as nbp

# -- helpers ----------------------------------------------------------------------------------


#: a child ending in each status, in a parallel block so siblings do not skip each other
CHILD: dict[str, dict[str, Any]] = {
    "Success": {"run": ok()},
    "Skipped": {"run": ok(), "when": lambda ctx: False},
    "IgnoreFailed": {"run": boom(), "failure_strategies": nbp.Ignore()},
    "MarkedSuccess": {"run": boom(), "failure_strategies": nbp.MarkAsSuccess()},
    "Failed": {"run": boom()},
    "Expired": {"run": ok(0.5), "timeout": "20ms"},
}


def group_of(*children: str) -> nbp.Pipeline:
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.step_group("g") as g, g.parallel():
        for i, kind in enumerate(children):
            g.step(f"c{i}", **CHILD[kind])
    return p


# -- R26 / R27 / D4 --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "children",
    [
        ("Success", "Success"),
        ("Success", "Skipped"),
        ("Success", "IgnoreFailed"),  # E2
        ("Skipped", "IgnoreFailed", "MarkedSuccess"),
    ],
)
def test_R27_D4_container_is_Success_when_every_child_is_positive(children: tuple):
    t = run(group_of(*children))
    assert status(t, "g") == "Success"
    assert status(t, "s") == "Success"
    assert status(t, "pipeline") == "Success"


@pytest.mark.parametrize(
    ("children", "expected"),
    [
        (("Success", "Failed"), "Failed"),
        (("Success", "Expired"), "Expired"),
        (("Expired", "Failed"), "Failed"),  # D4: Failed is more severe than Expired
        (("Failed", "Expired", "IgnoreFailed"), "Failed"),
        (("Skipped", "Expired"), "Expired"),
    ],
)
def test_R27_D4_container_takes_the_most_severe_child_status(children: tuple, expected: str):
    t = run(group_of(*children))
    assert [status(t, f"c{i}") for i in range(len(children))] == [
        {"MarkedSuccess": "Success"}.get(k, k) for k in children
    ]
    assert status(t, "g") == expected
    assert status(t, "s") == expected
    assert status(t, "pipeline") == expected


def test_D4_aborted_is_the_most_severe_and_finished_nodes_keep_their_status():
    p = nbp.Pipeline("p")
    with p.parallel():
        with p.stage("fails_first") as s:
            s.step("a", run=boom(0.01))
        with p.stage("times_out") as s:
            s.step("b", run=ok(0.5), timeout="20ms")
        with p.stage("aborts") as s:
            s.step("c", run=boom(0.08), failure_strategies=nbp.Abort())
        with p.stage("running") as s:
            s.step("d", run=ok(0.5))
    t = run(p)
    # stages that ended before the abort keep their own status
    assert status(t, "fails_first") == "Failed" and status(t, "times_out") == "Expired"
    assert row(t, "fails_first")["end_s"] <= row(t, "c")["end_s"]
    assert status(t, "d") == "Aborted" and status(t, "running") == "Aborted"
    assert status(t, "aborts") == "Aborted"
    assert status(t, "pipeline") == "Aborted"


def test_R27_parallel_stages_pipeline_takes_the_most_severe_stage_status():
    p = nbp.Pipeline("p")
    with p.parallel():
        with p.stage("ok") as s:
            s.step("a", run=ok())
        with p.stage("expired") as s:
            s.step("b", run=ok(0.5), timeout="20ms")
        with p.stage("failed") as s:
            s.step("c", run=boom(0.04))
    t = run(p)
    assert [status(t, k) for k in ("ok", "expired", "failed")] == ["Success", "Expired", "Failed"]
    assert status(t, "pipeline") == "Failed"


def test_E2_ignore_failed_step_leaves_group_stage_and_pipeline_green():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        with s.step_group("g") as g:
            g.step("a", run=boom(), failure_strategies=nbp.Ignore())
        s.step("b", run=ok())
    t = run(p)
    assert [status(t, k) for k in ("a", "g", "b", "s", "pipeline")] == [
        "IgnoreFailed",
        "Success",
        "Success",
        "Success",
        "Success",
    ]


def test_R27_retry_that_succeeds_leaves_the_parents_green():
    def flaky(ctx: nbp.StepContext) -> None:
        if ctx.attempt == 1:
            raise RuntimeError("once")

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=flaky, failure_strategies=nbp.Retry(1))
    t = run(p)
    assert list(rows(t, "a")["status"]) == ["Failed", "Success"]
    assert status(t, "s") == "Success" and status(t, "pipeline") == "Success"


# -- containers span their children (R5, R14) -------------------------------------------------


def test_R14_parallel_block_completes_when_its_last_child_does():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        with s.step_group("g") as g:
            with g.parallel():
                g.step("a", run=ok(0.01))
                g.step("b", run=ok(0.05))
            g.step("c", run=ok())
        s.step("d", run=ok())
    t = run(p)
    a, b, c = row(t, "a"), row(t, "b"), row(t, "c")
    assert a["start_s"] < b["end_s"] and b["start_s"] < a["end_s"]  # overlap
    assert c["start_s"] >= b["end_s"]
    group, stage, root = row(t, "g"), row(t, "s"), row(t, "pipeline")
    assert group["start_s"] <= a["start_s"] and group["end_s"] >= c["end_s"]
    assert row(t, "d")["start_s"] >= group["end_s"]
    assert stage["start_s"] <= group["start_s"] and stage["end_s"] >= row(t, "d")["end_s"]
    assert root["start_s"] <= stage["start_s"] and root["end_s"] >= stage["end_s"]


# -- D8 / E10: resource keys -------------------------------------------------------------------


def test_D8_E10_parallel_stages_sharing_a_resource_run_in_list_order():
    p = nbp.Pipeline("p")
    with p.parallel():
        with p.stage("deploy_a", type="Deployment", resource="prod-cluster") as s:
            s.step("a", run=ok(0.03))
        with p.stage("deploy_b", type="Deployment", resource="prod-cluster") as s:
            s.step("b", run=ok(0.03))
        with p.stage("custom", type="Custom") as s:
            s.step("c", run=ok(0.03))
    t = run(p)
    a, b, c = row(t, "deploy_a"), row(t, "deploy_b"), row(t, "custom")
    assert b["start_s"] >= a["end_s"]  # same key: one after the other, in list order
    assert c["start_s"] < a["end_s"] and a["start_s"] < c["end_s"]  # no key: overlaps
    assert all(status(t, k) == "Success" for k in ("deploy_a", "deploy_b", "custom", "pipeline"))


def test_D8_the_resource_is_released_when_its_stage_fails():
    p = nbp.Pipeline("p")
    with p.parallel():
        with p.stage("first", resource="infra", failure_strategies=nbp.Ignore()) as s:
            s.step("a", run=boom(0.01))
        with p.stage("second", resource="infra") as s:
            s.step("b", run=ok())
    t = run(p)
    assert status(t, "a") == "IgnoreFailed"
    assert status(t, "second") == "Success"
    assert row(t, "second")["start_s"] >= row(t, "first")["end_s"]


def test_D8_a_stage_waiting_for_a_resource_is_NotStarted_after_an_abort():
    p = nbp.Pipeline("p")
    with p.parallel():
        with p.stage("first", resource="infra") as s:
            s.step("a", run=boom(0.02), failure_strategies=nbp.Abort())
        with p.stage("second", resource="infra") as s:
            s.step("b", run=ok())
    t = run(p)
    assert status(t, "second") == "NotStarted" and status(t, "b") == "NotStarted"
    assert status(t, "pipeline") == "Aborted"


# -- D6: the trace of every outcome lists every node ---------------------------------------------


def _pipeline_ending(outcome: str) -> nbp.Pipeline:
    body = {
        "Success": ok(),
        "Failed": boom(),
        "Aborted": boom(),
        "Expired": ok(0.5),
    }[outcome]
    settings: dict[str, Any] = {
        "Aborted": {"failure_strategies": nbp.Abort()},
        "Expired": {"timeout": "20ms"},
    }.get(outcome, {})
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        with s.step_group("g") as g:
            g.step("a", run=body, **settings)
            g.step("b", run=ok())
            with g.rollback():
                g.step("undo", run=ok())
        s.step("c", run=ok())
    with p.stage("s2") as s:
        s.step("d", run=ok())
    return p


@pytest.mark.parametrize("outcome", ["Success", "Failed", "Aborted", "Expired"])
def test_D6_run_returns_a_trace_with_every_node_for_every_outcome(outcome: str):
    p = _pipeline_ending(outcome)
    t = run(p)
    assert isinstance(t, pd.DataFrame)
    assert list(t.columns) == list(nbp.COLUMNS)
    assert set(t["fqn"]) == {node.fqn for node in p.plan().nodes}
    assert status(t, "pipeline") == outcome
    assert t.attrs["pipeline"] == "p"
    assert nbp.last_trace() is t


def test_D6_never_started_nodes_are_NotStarted_with_no_times():
    t = run(_pipeline_ending("Aborted"))
    never = t[t["status"] == "NotStarted"]
    assert set(never["step"].dropna()) == {"b", "undo", "c", "d"}
    assert (never["attempt"] == 0).all()
    assert never["start_s"].isna().all() and never["end_s"].isna().all() and never["start"].isna().all()
    assert set(never[never["phase"] == "execution"]["reason"]) == {
        "aborted by the failure strategy of pipeline.stages.s.spec.execution.steps.g.steps.a"
    }


def test_D6_rows_are_ordered_by_plan_position_then_attempt():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=boom(), failure_strategies=nbp.Retry(1))
        s.step("b", run=ok(), when="All")
    t = run(p)
    order = [node.fqn for node in p.plan().nodes]
    positions = [order.index(f) for f in t["fqn"]]
    assert positions == sorted(positions)
    assert list(rows(t, "a")["attempt"]) == [1, 2]


def test_R26_check_raises_RunFailed_carrying_the_trace():
    p = _pipeline_ending("Failed")
    with pytest.raises(nbp.RunFailed) as caught:
        p.run(check=True)
    trace = caught.value.trace
    assert status(trace, "pipeline") == "Failed"
    assert "pipeline.stages.s.spec.execution.steps.g.steps.a" in str(caught.value)
    # a green run does not raise
    assert status(_pipeline_ending("Success").run(check=True), "pipeline") == "Success"


def test_R26_report_prints_a_summary_only_when_the_run_is_not_green(capsys: pytest.CaptureFixture):
    _pipeline_ending("Success").run(progress=False)
    assert capsys.readouterr().err == ""
    _pipeline_ending("Expired").run(progress=False)
    err = capsys.readouterr().err
    assert "ended Expired" in err and "steps.g.steps.a — Expired (Timeout)" in err


def test_R26_listeners_see_every_finished_node_and_the_final_trace():
    class Listener:
        def __init__(self) -> None:
            self.started: list[tuple[str, int]] = []
            self.finished: list[str] = []
            self.trace: Any = None

        def node_started(self, node: Any, attempt: int, t: float) -> None:
            self.started.append((node.id, attempt))

        def node_finished(self, node: Any, row: tuple) -> None:
            self.finished.append(node.fqn)

        def run_finished(self, trace: Any) -> None:
            self.trace = trace

    listener = Listener()
    t = run(_pipeline_ending("Failed"), listeners=[listener])
    assert listener.trace is t
    assert sorted(listener.finished) == sorted(t["fqn"])  # one call per row
    assert ("a", 1) in listener.started and ("g", 1) in listener.started
