"""Timeouts on the real-time engine (R59, R60, D10, E17).

A timed-out Python thread cannot be killed: the step is told to stop through its context,
recorded ``Expired`` at the deadline, and the run goes on without waiting for it. The tests
compare the trace's own times (the run's end against the moment a stubborn body would have
finished), never the wall clock of the test.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from conftest import ok, row, rows, run, status

import notebook_pipelines as nbp

# -- R59: step timeouts -----------------------------------------------------------------------


@pytest.mark.parametrize(("timeout", "seconds"), [("250ms", 0.25), ("1m 30s", 90.0), (0.5, 0.5), ("2", 2.0)])
def test_R59_timeouts_are_harness_durations_or_seconds(timeout: Any, seconds: float):
    p = nbp.Pipeline("p", timeout=timeout)
    with p.stage("s", timeout=timeout) as s:
        s.step("a", run=ok(), timeout=timeout)
    plan = p.plan()
    assert [n.timeout for n in plan.nodes] == [seconds, seconds, seconds]


def test_R59_step_timeout_expires_the_step_with_error_type_Timeout():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=ok(0.5), timeout="40ms")
        s.step("b", run=ok())
        s.step("c", run=ok(), when="All")
    t = run(p)
    a = row(t, "a")
    assert (a["status"], a["error_type"], a["action"]) == ("Expired", "Timeout", "MarkAsFailure")
    assert "timed out after 0.04s" in a["error"]
    assert 0.040 <= a["duration_s"] < 0.5
    # Expired is not positive: the stage is no longer successful so far
    assert status(t, "b") == "Skipped" and status(t, "c") == "Success"
    assert status(t, "s") == "Expired" and status(t, "pipeline") == "Expired"


def test_R59_a_step_that_finishes_in_time_is_not_affected():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=ok(0.01), timeout="1s")
    t = run(p)
    assert status(t, "a") == "Success"


def test_R59_timeout_is_caught_by_failure_strategies_like_any_error():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step(
            "a",
            run=ok(0.5),
            timeout="30ms",
            failure_strategies=[
                nbp.OnFailure(["Unknown"], nbp.Abort()),
                nbp.OnFailure(["Timeout"], nbp.Ignore()),
            ],
        )
        s.step("b", run=ok())
    t = run(p)
    a = row(t, "a")
    assert (a["status"], a["error_type"], a["action"]) == ("IgnoreFailed", "Timeout", "Ignore")
    assert status(t, "b") == "Success" and status(t, "pipeline") == "Success"


def test_E17_retry_on_timeout_restarts_with_a_fresh_timer():
    def slow_first(ctx: nbp.StepContext) -> None:
        ctx.sleep(0.5 if ctx.attempt == 1 else 0.03)

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=slow_first, timeout="80ms", failure_strategies={"Timeout": nbp.Retry(1)})
    t = run(p)
    attempts = rows(t, "a")
    assert list(zip(attempts["status"], attempts["action"].fillna("-"))) == [
        ("Expired", "Retry"),
        ("Success", "-"),
    ]
    assert list(attempts["error_type"].fillna("-")) == ["Timeout", "-"]
    first, second = attempts.iloc[0], attempts.iloc[1]
    # the second attempt ran entirely after the first attempt's deadline and still succeeded:
    # its timer started afresh with it
    assert second["start_s"] >= first["start_s"] + 0.080
    assert second["duration_s"] < 0.080
    assert status(t, "pipeline") == "Success"


def test_E17_every_retry_gets_the_full_timeout():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=ok(0.5), timeout="30ms", failure_strategies={"Timeout": nbp.Retry(2)})
    t = run(p)
    attempts = rows(t, "a")
    assert list(attempts["status"]) == ["Expired"] * 3
    assert (attempts["duration_s"] >= 0.030).all()


def test_R59_the_run_does_not_wait_for_a_body_that_ignores_cancellation():
    """``time.sleep(1.0)`` cannot be interrupted; the step is Expired at 0.1 s and the run ends
    long before the body would have returned."""
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("stubborn", run=lambda: time.sleep(1.0), timeout="100ms")
        s.step("next", run=ok(), when="All")
    t = run(p)
    stubborn = row(t, "stubborn")
    assert stubborn["status"] == "Expired"
    assert stubborn["end_s"] < stubborn["start_s"] + 0.5
    assert status(t, "next") == "Success"
    assert row(t, "next")["start_s"] >= stubborn["end_s"]
    would_have_returned = stubborn["start_s"] + 1.0
    assert row(t, "pipeline")["end_s"] < would_have_returned - 0.5


def test_R59_a_timed_out_step_is_told_to_stop_through_its_context():
    noticed = threading.Event()
    woke = threading.Event()

    def polite(ctx: nbp.StepContext) -> None:
        try:
            ctx.sleep(5.0)  # wakes up when the step is told to stop
        except nbp.StepCancelled:
            woke.set()
            raise

    def polling(ctx: nbp.StepContext) -> None:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if ctx.cancelled:
                noticed.set()
                return
            try:
                time.sleep(0.002)
            except nbp.StepCancelled:  # the engine also raises in the thread; keep polling
                continue

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("polite", run=polite, timeout="30ms")
        s.step("polling", run=polling, timeout="30ms", when="All")
    t = run(p)
    assert status(t, "polite") == "Expired" and status(t, "polling") == "Expired"
    assert woke.wait(2.0) and noticed.wait(2.0)


# -- stage and pipeline timeouts (R59) -----------------------------------------------------------


def test_R59_stage_timeout_expires_the_running_step_and_starts_nothing_more():
    p = nbp.Pipeline("p")
    with p.stage("s", timeout="60ms") as s:
        s.step("a", run=ok(0.02))
        s.step("b", run=ok(0.5), failure_strategies={"Timeout": nbp.Retry(2)})
        s.step("c", run=ok(), when="All")
    with p.stage("s2", when="All") as s:
        s.step("d", run=ok())
    t = run(p)
    assert status(t, "a") == "Success"
    b = rows(t, "b")
    # the stage ran out of time: no retry inside it, the step ends Expired with its reason
    assert list(b["status"]) == ["Expired"]
    assert (b["error_type"].iloc[0], b["reason"].iloc[0]) == ("Timeout", "stage timed out")
    assert "pipeline.stages.s timed out after 0.06s" in b["error"].iloc[0]
    c = row(t, "c")
    assert (c["status"], c["reason"]) == ("NotStarted", "stage timed out")
    stage = row(t, "s")
    assert stage["status"] == "Expired"
    assert 0.060 <= stage["duration_s"] < 0.5
    assert status(t, "s2") == "Success"
    assert status(t, "pipeline") == "Expired"


def test_R59_pipeline_timeout_expires_the_running_stage():
    p = nbp.Pipeline("p", timeout="80ms")
    with p.stage("s1") as s:
        s.step("a", run=ok(0.02))
    with p.stage("s2") as s:
        s.step("b", run=ok(0.5))
    with p.stage("s3", when="All") as s:
        s.step("c", run=ok())
    t = run(p)
    assert status(t, "a") == "Success"
    b = row(t, "b")
    assert (b["status"], b["error_type"], b["reason"]) == ("Expired", "Timeout", "pipeline timed out")
    assert status(t, "s2") == "Expired"
    assert status(t, "s3") == "NotStarted"
    root = row(t, "pipeline")
    assert (root["status"], root["reason"]) == ("Expired", "pipeline timed out")
    assert 0.080 <= root["duration_s"] < 0.5


def test_R59_R61_stage_timeout_expires_a_retry_interval_and_a_manual_intervention_wait():
    p = nbp.Pipeline("p")
    with p.stage("s1", timeout="50ms") as s:

        def fail(ctx: nbp.StepContext) -> None:
            raise RuntimeError("x")

        s.step("retrying", run=fail, failure_strategies=nbp.Retry(1, intervals="1s"))
    with p.stage("s2", timeout="50ms", when="All") as s:
        s.step(
            "waiting",
            run=fail,
            failure_strategies=nbp.ManualIntervention(timeout="1h", on_timeout=nbp.MarkAsSuccess()),
        )
    t = run(p)
    assert status(t, "s1") == "Expired" and row(t, "s1")["duration_s"] < 0.5
    retrying = rows(t, "retrying")
    assert list(zip(retrying["status"], retrying["reason"].fillna("-"))) == [
        ("Failed", "-"),
        ("NotStarted", "stage timed out"),
    ]
    assert status(t, "s2") == "Expired" and row(t, "s2")["duration_s"] < 0.5
    # the wait was cut by the stage's timeout, not the intervention's: on_timeout does not apply
    waiting = row(t, "waiting")
    assert (waiting["status"], waiting["reason"], waiting["action"]) == (
        "Expired",
        "stage timed out",
        "ManualIntervention",
    )


# -- R60 / D10: step groups take no timeout under the classic rules -----------------------------


def test_D10_step_group_timeout_is_refused_under_classic_rules():
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.step_group("g", timeout="1s") as g:
        g.step("a", run=ok())
    with pytest.raises(nbp.DefinitionError) as caught:
        p.run(report=False)
    (problem,) = caught.value.problems
    assert problem.fqn == "pipeline.stages.s.spec.execution.steps.g"
    assert problem.rule == "R60/D10" and "set timeouts on the steps" in problem.fix


def test_D10_step_group_timeout_expires_the_group_under_current_rules():
    p = nbp.Pipeline("p", rules="current")
    with p.stage("s") as s:
        with s.step_group("g", timeout="50ms") as g:
            g.step("a", run=ok(0.01))
            g.step("b", run=ok(0.5))
            g.step("c", run=ok())
        s.step("after", run=ok(), when="All")
    t = run(p)
    assert status(t, "a") == "Success"
    assert (status(t, "b"), row(t, "b")["reason"]) == ("Expired", "step group timed out")
    assert status(t, "c") == "NotStarted"
    assert status(t, "g") == "Expired" and row(t, "g")["duration_s"] < 0.5
    assert status(t, "after") == "Success"


# -- bad durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["pipeline", "stage", "step"])
def test_R59_unparsable_timeout_is_a_definition_error_naming_the_node(where: str):
    bad = "ten seconds"
    p = nbp.Pipeline("p", timeout=bad if where == "pipeline" else None)
    with p.stage("s", timeout=bad if where == "stage" else None) as s:
        s.step("a", run=ok(), timeout=bad if where == "step" else None)
    with pytest.raises(nbp.DefinitionError) as caught:
        p.run(report=False)
    (problem,) = caught.value.problems
    expected = {
        "pipeline": "pipeline",
        "stage": "pipeline.stages.s",
        "step": "pipeline.stages.s.spec.execution.steps.a",
    }[where]
    assert problem.fqn == expected
    assert problem.rule == "R59" and "'ten seconds'" in problem.message and "1m 30s" in problem.fix
    assert expected in str(caught.value)


def test_R59_negative_timeout_is_refused():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=ok(), timeout=-1)
    with pytest.raises(nbp.DefinitionError, match=r"steps\.a: \[R59\]"):
        p.run(report=False)
