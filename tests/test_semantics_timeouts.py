"""Timeouts on the real-time engine (R59, R60, D10, E17).

A timed-out Python thread cannot be killed: the step is told to stop through its context,
recorded ``Expired`` at the deadline, and the run goes on without waiting for it.

No wall-clock thresholds: the tests compare a trace's times with each other and with the
definition's own numbers (an expiry is never recorded before its timeout). That a node was cut
at its deadline, not when its body ended, is shown by causality: a ``Stubborn`` body blocks in C
code until the test lets it go *after* the run returned, so a complete trace proves the run did
not wait for it. Waits with no body (retry intervals, manual interventions) are compared with
the moment the wait would have ended.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import ok, row, rows, run, status

import notebook_pipelines as nbp


class Stubborn:
    """A step body that ignores being told to stop: it blocks until the test releases it.

    ``Event.wait`` blocks in C code, where the engine's ``StepCancelled`` cannot reach it, so
    the body returns only after :meth:`release`. While ``returned`` is unset the body is still
    running: a trace finished by then was not waited for it.
    """

    def __init__(self) -> None:
        self._go, self.returned = threading.Event(), threading.Event()

    def __call__(self) -> None:
        try:
            self._go.wait(10.0)
        finally:
            self.returned.set()

    def release(self) -> None:
        self._go.set()
        assert self.returned.wait(5.0), "the stubborn body did not return after its release"


@pytest.fixture
def stubborn() -> Iterator[Stubborn]:
    """A :class:`Stubborn` body, released (its thread let go) when the test ends. The run it is
    in must have warned that it left the body behind (a warning names it)."""
    body = Stubborn()
    with pytest.warns(RuntimeWarning, match="left behind: .*steps"):
        yield body
    body.release()


# -- R59: step timeouts -----------------------------------------------------------------------


@pytest.mark.parametrize(("timeout", "seconds"), [("250ms", 0.25), ("1m 30s", 90.0), (0.5, 0.5), ("2", 2.0)])
def test_R59_timeouts_are_harness_durations_or_seconds(timeout: Any, seconds: float):
    p = nbp.Pipeline("p", timeout=timeout)
    with p.stage("s", timeout=timeout) as s:
        s.step("a", run=ok(), timeout=timeout)
    plan = p.plan()
    assert [n.timeout for n in plan.nodes] == [seconds, seconds, seconds]


def test_R59_step_timeout_expires_the_step_with_error_type_Timeout(stubborn: Stubborn):
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=stubborn, timeout="40ms")
        s.step("b", run=ok())
        s.step("c", run=ok(), when="All")
    t = run(p)
    a = row(t, "a")
    assert (a["status"], a["error_type"], a["action"]) == ("Expired", "Timeout", "MarkAsFailure")
    assert "timed out after 0.04s" in a["error"]
    # recorded Expired at the deadline: not before its timeout, and not when the body returned
    # (the run is over and the body is still blocked)
    assert a["duration_s"] >= 0.040
    assert not stubborn.returned.is_set()
    assert row(t, "c")["start_s"] >= a["end_s"]
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
    # a timer shared with the first attempt would have expired it at once; its own started afresh
    assert second["start_s"] >= first["end_s"] >= first["start_s"] + 0.080
    assert second["end_s"] > first["start_s"] + 0.080
    assert status(t, "pipeline") == "Success"


def test_E17_every_retry_gets_the_full_timeout():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=ok(0.5), timeout="30ms", failure_strategies={"Timeout": nbp.Retry(2)})
    t = run(p)
    attempts = rows(t, "a")
    assert list(attempts["status"]) == ["Expired"] * 3
    assert (attempts["duration_s"] >= 0.030).all()


def test_R59_the_run_does_not_wait_for_a_body_that_ignores_cancellation(stubborn: Stubborn):
    """A body blocked in C code cannot be interrupted; the step is Expired at its deadline and
    the run goes on and ends while the body is still blocked."""
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("stubborn", run=stubborn, timeout="100ms")
        s.step("next", run=ok(), when="All")
    t = run(p)
    expired = row(t, "stubborn")
    assert expired["status"] == "Expired"
    assert expired["end_s"] >= expired["start_s"] + 0.100
    assert status(t, "next") == "Success"
    assert row(t, "next")["start_s"] >= expired["end_s"]
    assert row(t, "pipeline")["end_s"] >= row(t, "next")["end_s"]
    # the whole run, to its end, happened while the body had not returned
    assert not stubborn.returned.is_set()


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


def test_R59_stage_timeout_expires_the_running_step_and_starts_nothing_more(stubborn: Stubborn):
    p = nbp.Pipeline("p")
    with p.stage("s", timeout="60ms") as s:
        s.step("a", run=ok(0.02))
        s.step("b", run=stubborn, failure_strategies={"Timeout": nbp.Retry(2)})
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
    # cut at the stage's deadline, not when b's body returned: the run ended while it had not
    assert stage["duration_s"] >= 0.060
    assert stage["start_s"] + 0.060 <= b["end_s"].iloc[0] <= stage["end_s"] <= row(t, "s2")["start_s"]
    assert not stubborn.returned.is_set()
    assert status(t, "s2") == "Success"
    assert status(t, "pipeline") == "Expired"


def test_R59_pipeline_timeout_expires_the_running_stage(stubborn: Stubborn):
    p = nbp.Pipeline("p", timeout="80ms")
    with p.stage("s1") as s:
        s.step("a", run=ok(0.02))
    with p.stage("s2") as s:
        s.step("b", run=stubborn)
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
    # cut at the pipeline's deadline, not when b's body returned: the run ended while it had not
    assert root["duration_s"] >= 0.080
    assert root["start_s"] + 0.080 <= b["end_s"] <= row(t, "s2")["end_s"] <= root["end_s"]
    assert not stubborn.returned.is_set()


def test_R59_R61_stage_timeout_expires_a_retry_interval_and_a_manual_intervention_wait():
    interval, wait = 1.0, 2.0  # each much longer than the stages' 50 ms
    p = nbp.Pipeline("p")
    with p.stage("s1", timeout="50ms") as s:

        def fail(ctx: nbp.StepContext) -> None:
            raise RuntimeError("x")

        s.step("retrying", run=fail, failure_strategies=nbp.Retry(1, intervals=interval))
    with p.stage("s2", timeout="50ms", when="All") as s:
        s.step(
            "waiting",
            run=fail,
            failure_strategies=nbp.ManualIntervention(timeout=wait, on_timeout=nbp.MarkAsSuccess()),
        )
    t = run(p)
    retrying = rows(t, "retrying")
    assert list(zip(retrying["status"], retrying["reason"].fillna("-"))) == [
        ("Failed", "-"),
        ("NotStarted", "stage timed out"),
    ]
    # each stage ended at its own deadline, before the wait it cut would have been over
    s1, s2 = row(t, "s1"), row(t, "s2")
    assert s1["status"] == "Expired" and s1["duration_s"] >= 0.050
    assert s1["end_s"] < retrying["end_s"].iloc[0] + interval
    assert s2["status"] == "Expired" and s2["duration_s"] >= 0.050
    assert s2["end_s"] < row(t, "waiting")["start_s"] + wait
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


def test_D10_step_group_timeout_expires_the_group_under_current_rules(stubborn: Stubborn):
    p = nbp.Pipeline("p", rules="current")
    with p.stage("s") as s:
        with s.step_group("g", timeout="50ms") as g:
            g.step("a", run=ok(0.01))
            g.step("b", run=stubborn)
            g.step("c", run=ok())
        s.step("after", run=ok(), when="All")
    t = run(p)
    assert status(t, "a") == "Success"
    assert (status(t, "b"), row(t, "b")["reason"]) == ("Expired", "step group timed out")
    assert status(t, "c") == "NotStarted"
    # cut at the group's deadline, not when b's body returned: the run ended while it had not
    group = row(t, "g")
    assert group["status"] == "Expired" and group["duration_s"] >= 0.050
    assert group["end_s"] <= row(t, "after")["start_s"]
    assert not stubborn.returned.is_set()
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
