"""Failure strategies on the real-time engine (R15–R24, D3, D9, D12, E1, E4–E6, E9, E15).

Every run is ``p.run()`` (threads, wall clock) with bodies sleeping 10–60 ms; order and
waits are read from the trace's own start/end times, never from the wall clock of the test.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
from conftest import boom, ok, row, rows, run, status

import notebook_pipelines as nbp
from notebook_pipelines.definition.failure import coerce_strategies

# -- helpers ----------------------------------------------------------------------------------


def fails_until(attempt: int, seconds: float = 0.01, error_type: str = "Unknown") -> Callable:
    """Fails on attempts before ``attempt``, succeeds from then on."""

    def body(ctx: nbp.StepContext) -> None:
        ctx.sleep(seconds)
        if ctx.attempt < attempt:
            raise nbp.StepError(f"attempt {ctx.attempt} failed", error_type=error_type)

    return body


def one_step(body: Callable, **settings: Any) -> nbp.Pipeline:
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=body, **settings)
        s.step("after", run=ok())
    return p


# -- error types (R16) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "error_type"),
    [
        (nbp.StepError("no route", error_type="Connectivity"), "Connectivity"),
        (nbp.StepError("bad token", error_type="Authentication"), "Authentication"),
        (RuntimeError("whatever"), "Unknown"),
        (ValueError("whatever"), "Unknown"),
        (TimeoutError("too slow"), "Timeout"),
        (ConnectionError("refused"), "Connectivity"),
    ],
)
def test_R16_error_type_of_a_body_failure(exc: BaseException, error_type: str):
    def body() -> None:
        raise exc

    t = run(one_step(body))
    a = row(t, "a")
    assert (a["status"], a["error_type"]) == ("Failed", error_type)
    assert isinstance(a["error"], str) and a["error"]


def test_R16_a_step_timeout_has_error_type_Timeout():
    t = run(one_step(ok(1.0), timeout="30ms"))
    a = row(t, "a")
    assert (a["status"], a["error_type"]) == ("Expired", "Timeout")


# -- levels and order (R22, R23, R24, E4) ----------------------------------------------------


def test_R22_step_strategy_beats_group_beats_stage():
    p = nbp.Pipeline("p")
    with p.stage("s", failure_strategies=nbp.Abort()) as s:
        with s.step_group("g", failure_strategies=nbp.MarkAsSuccess()) as g:
            g.step("own", run=boom(), failure_strategies=nbp.Ignore())
            g.step("from_group", run=boom())
        s.step("from_stage", run=boom())
    t = run(p)
    assert (status(t, "own"), row(t, "own")["action"]) == ("IgnoreFailed", "Ignore")
    assert (status(t, "from_group"), row(t, "from_group")["action"]) == ("Success", "MarkAsSuccess")
    assert (status(t, "from_stage"), row(t, "from_stage")["action"]) == ("Failed", "Abort")
    assert status(t, "pipeline") == "Aborted"


def test_R22_E4_unmatched_error_type_falls_through_to_the_group_then_the_stage():
    p = nbp.Pipeline("p")
    stage = p.stage("s", failure_strategies={"AllErrors": nbp.Ignore()})
    with stage.step_group("g", failure_strategies={"Authentication": nbp.MarkAsSuccess()}) as g:
        # the step only handles Connectivity: an Authentication error goes to the group,
        g.step(
            "to_group",
            run=boom(error_type="Authentication"),
            failure_strategies={"Connectivity": nbp.Abort()},
        )
        # and an Unknown error passes the step and the group and reaches the stage
        g.step("to_stage", run=boom(), failure_strategies={"Connectivity": nbp.Abort()})
        g.step(
            "own",
            run=fails_until(2, error_type="Connectivity"),
            failure_strategies={"Connectivity": nbp.Retry(1)},
        )
    t = run(p)
    assert (status(t, "to_group"), row(t, "to_group")["action"]) == ("Success", "MarkAsSuccess")
    assert (status(t, "to_stage"), row(t, "to_stage")["action"]) == ("IgnoreFailed", "Ignore")
    assert list(rows(t, "own")["action"].fillna("-")) == ["Retry", "-"]
    assert status(t, "pipeline") == "Success"


def test_R23_first_matching_entry_wins_within_a_level():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step(
            "specific_first",
            run=boom(error_type="Connectivity"),
            failure_strategies=[
                nbp.OnFailure(["Connectivity"], nbp.Ignore()),
                nbp.OnFailure(["AllErrors"], nbp.Abort()),
            ],
        )
        s.step(
            "all_first",
            run=boom(error_type="Connectivity"),
            failure_strategies=[
                nbp.OnFailure(["AllErrors"], nbp.MarkAsSuccess()),
                nbp.OnFailure(["Connectivity"], nbp.Abort()),
            ],
        )
        s.step(
            "second_matches",
            run=boom(error_type="Timeout"),
            failure_strategies=[
                nbp.OnFailure(["Connectivity", "Authentication"], nbp.Abort()),
                nbp.OnFailure(["Timeout", "Unknown"], nbp.Ignore()),
            ],
        )
    t = run(p)
    assert row(t, "specific_first")["action"] == "Ignore"
    assert row(t, "all_first")["action"] == "MarkAsSuccess"
    assert row(t, "second_matches")["action"] == "Ignore"
    assert status(t, "pipeline") == "Success"


def test_R24_stage_default_entry_is_MarkAsFailure_E9():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=boom())
        s.step("b", run=ok())
        s.step("c", run=ok(), when="All")
    with p.stage("s2") as s:
        s.step("d", run=ok())
    t = run(p)
    a = row(t, "a")
    assert (a["status"], a["action"], a["error_type"]) == ("Failed", "MarkAsFailure", "Unknown")
    assert status(t, "b") == "Skipped"
    assert status(t, "c") == "Success"  # E9: the flow goes on; the next nodes' when decides
    assert status(t, "s") == "Failed"
    assert status(t, "s2") == "Skipped"
    assert status(t, "pipeline") == "Failed"


def test_R15_harness_yaml_dicts_are_accepted_at_every_level():
    p = nbp.Pipeline("p")
    with (
        p.stage(
            "s",
            failure_strategies=[{"onFailure": {"errors": ["AllErrors"], "action": {"type": "Abort"}}}],
        ) as s,
        s.step_group(
            "g",
            failure_strategies=[{"onFailure": {"errors": ["Unknown"], "action": {"type": "MarkAsSuccess"}}}],
        ) as g,
    ):
        g.step(
            "a",
            run=fails_until(3, error_type="Connectivity"),
            failure_strategies=[
                {
                    "onFailure": {
                        "errors": ["Connectivity"],
                        "action": {
                            "type": "Retry",
                            "spec": {
                                "retryCount": 2,
                                "retryIntervals": ["10ms"],
                                "onRetryFailure": {"action": {"type": "Ignore"}},
                            },
                        },
                    }
                }
            ],
        )
        g.step("b", run=boom())
    t = run(p)
    assert list(rows(t, "a")["status"]) == ["Failed", "Failed", "Success"]
    assert (status(t, "b"), row(t, "b")["action"]) == ("Success", "MarkAsSuccess")
    assert status(t, "pipeline") == "Success"


# -- Retry (R18, D3, E5) ------------------------------------------------------------------------


def test_R18_D3_retry_count_2_means_up_to_3_attempts_one_row_each_E5():
    t = run(one_step(boom(), failure_strategies=nbp.Retry(2)))
    attempts = rows(t, "a")
    assert list(attempts["attempt"]) == [1, 2, 3]
    assert list(attempts["status"]) == ["Failed"] * 3
    assert list(attempts["action"]) == ["Retry", "Retry", "MarkAsFailure"]
    # no intervals: each retry starts right after the previous attempt, never before
    starts, ends = attempts["start_s"].to_numpy(), attempts["end_s"].to_numpy()
    assert (starts[1:] >= ends[:-1]).all()


def test_R18_retry_stops_at_the_first_success():
    t = run(one_step(fails_until(2), failure_strategies=nbp.Retry(3)))
    assert list(rows(t, "a")["status"]) == ["Failed", "Success"]
    assert status(t, "after") == "Success" and status(t, "s") == "Success"


def test_R18_retry_count_0_applies_on_retry_failure_at_once():
    t = run(one_step(boom(), failure_strategies=nbp.Retry(0, then=nbp.Ignore())))
    assert list(rows(t, "a")["attempt"]) == [1]
    assert (status(t, "a"), row(t, "a")["action"]) == ("IgnoreFailed", "Ignore")


def test_R18_D3_intervals_wait_between_attempts_and_the_last_one_is_reused_E5():
    t = run(one_step(boom(), failure_strategies=nbp.Retry(3, intervals=["10ms", "40ms"])))
    attempts = rows(t, "a")
    gaps = attempts["start_s"].to_numpy()[1:] - attempts["end_s"].to_numpy()[:-1]
    assert len(gaps) == 3
    assert gaps[0] >= 0.010
    assert gaps[1] >= 0.040 and gaps[2] >= 0.040  # D3: "40ms" reused for the third retry
    # E5: the step took at least the attempts plus the intervals
    total = attempts["end_s"].iloc[-1] - attempts["start_s"].iloc[0]
    assert total >= attempts["duration_s"].sum() + 0.010 + 0.040 + 0.040


def test_R18_on_retry_failure_action_applies_to_the_last_attempt():
    t = run(one_step(boom(), failure_strategies=nbp.Retry(1, then=nbp.MarkAsSuccess())))
    attempts = rows(t, "a")
    assert list(attempts["action"]) == ["Retry", "MarkAsSuccess"]
    assert list(attempts["status"]) == ["Failed", "Success"]
    assert status(t, "after") == "Success"


def test_R18_retry_condition_restricts_retrying_to_matching_failures():
    def transient(outcome: Any) -> bool:
        return "transient" in outcome.error

    def body(ctx: nbp.StepContext) -> None:
        raise nbp.StepError("permanent")

    t = run(one_step(body, failure_strategies=nbp.Retry(3, condition=transient, then=nbp.Ignore())))
    assert list(rows(t, "a")["action"]) == ["Ignore"]

    def flaky(ctx: nbp.StepContext) -> None:
        if ctx.attempt == 1:
            raise nbp.StepError("transient glitch")

    t = run(one_step(flaky, failure_strategies=nbp.Retry(3, condition=transient)))
    assert list(rows(t, "a")["status"]) == ["Failed", "Success"]


def test_R18_context_attempt_counts_from_one():
    seen: list[int] = []

    def body(ctx: nbp.StepContext) -> None:
        seen.append(ctx.attempt)
        raise RuntimeError("again")

    run(one_step(body, failure_strategies=nbp.Retry(2)))
    assert seen == [1, 2, 3]


# -- simple actions (R21) --------------------------------------------------------------------


def test_R21_ignore_marks_IgnoreFailed_and_goes_on():
    t = run(one_step(boom(), failure_strategies=nbp.Ignore()))
    a = row(t, "a")
    assert (a["status"], a["action"], a["error_type"]) == ("IgnoreFailed", "Ignore", "Unknown")
    assert status(t, "after") == "Success" and status(t, "pipeline") == "Success"


def test_R21_mark_as_success_marks_Success_and_goes_on():
    t = run(one_step(boom(), failure_strategies=nbp.MarkAsSuccess()))
    a = row(t, "a")
    assert (a["status"], a["action"], a["error"]) == ("Success", "MarkAsSuccess", "boom")
    assert status(t, "after") == "Success" and status(t, "pipeline") == "Success"


def test_R21_proceed_with_default_values_acts_as_mark_as_success_on_a_step_failure():
    t = run(one_step(boom(), failure_strategies=nbp.ProceedWithDefaultValues()))
    assert (status(t, "a"), row(t, "a")["action"]) == ("Success", "ProceedWithDefaultValues")


def test_E9_mark_as_failure_continues_the_flow_unlike_abort():
    p = nbp.Pipeline("p")
    with p.stage("s", failure_strategies=nbp.MarkAsFailure()) as s:
        s.step("a", run=boom())
        s.step("always", run=ok(), when="All")
    with p.stage("s2", when="All") as s:
        s.step("b", run=ok())
    t = run(p)
    assert (status(t, "a"), row(t, "a")["action"]) == ("Failed", "MarkAsFailure")
    assert status(t, "always") == "Success" and status(t, "b") == "Success"
    assert status(t, "pipeline") == "Failed"

    p.find("s").find("a").failure_strategies = nbp.Abort()
    t = run(p)
    assert status(t, "always") == "NotStarted" and status(t, "b") == "NotStarted"
    assert status(t, "pipeline") == "Aborted"


# -- Abort (R21, E15, D9) --------------------------------------------------------------------


def test_E15_abort_aborts_running_siblings_and_starts_nothing_more():
    p = nbp.Pipeline("p")
    with p.stage("s", failure_strategies=nbp.Abort()) as s:
        with s.parallel():
            s.step("a", run=boom(0.01))
            s.step("slow", run=ok(0.3))
            with s.step_group("g") as g:
                g.step("g1", run=ok(0.3))
                g.step("g2", run=ok())
        s.step("next", run=ok(), when="All")
    with p.stage("s2", when="All") as s:
        s.step("x", run=ok())
    t = run(p)
    a = row(t, "a")
    assert (a["status"], a["action"]) == ("Failed", "Abort")
    for key in ("slow", "g1"):
        r = row(t, key)
        assert r["status"] == "Aborted"
        # cut short when a failed, before its 0.3 s body would have ended
        assert a["end_s"] <= r["end_s"] < r["start_s"] + 0.3
    for key in ("g2", "next", "s2", "x"):
        r = row(t, key)
        assert r["status"] == "NotStarted" and pd.isna(r["start_s"]) and r["attempt"] == 0
    assert [status(t, k) for k in ("g", "s", "pipeline")] == ["Aborted"] * 3
    assert (
        "aborted by the failure strategy of pipeline.stages.s.spec.execution.steps.a"
        in row(t, "pipeline")["reason"]
    )


def test_E15_abort_of_the_last_running_step_still_ends_the_pipeline_Aborted():
    t = run(one_step(boom(), failure_strategies=nbp.Abort()))
    assert status(t, "a") == "Failed"
    assert status(t, "after") == "NotStarted"
    assert status(t, "s") == "Aborted" and status(t, "pipeline") == "Aborted"


def test_E15_abort_reaches_parallel_stages():
    p = nbp.Pipeline("p")
    with p.parallel():
        with p.stage("s1") as s:
            s.step("a", run=boom(0.01), failure_strategies=nbp.Abort())
        with p.stage("s2") as s:
            s.step("b", run=ok(0.3))
            s.step("c", run=ok())
    t = run(p)
    assert status(t, "b") == "Aborted" and status(t, "c") == "NotStarted"
    assert status(t, "s1") == "Aborted" and status(t, "s2") == "Aborted"
    assert status(t, "pipeline") == "Aborted"


def test_E1_D9_failing_step_in_parallel_block_does_not_stop_siblings():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        with s.parallel():
            s.step("a", run=boom(0.01))
            s.step("b", run=ok(0.05))
            with s.step_group("g") as g:
                g.step("g1", run=ok(0.05))
        s.step("next", run=ok(), when="All")
    t = run(p)
    assert status(t, "a") == "Failed"
    assert status(t, "b") == "Success" and status(t, "g1") == "Success"
    b = row(t, "b")
    assert b["end_s"] > row(t, "a")["end_s"]
    # the next serial item starts only after the whole block is terminal (R14)
    assert row(t, "next")["start_s"] >= max(b["end_s"], row(t, "g1")["end_s"])
    assert status(t, "s") == "Failed"


# -- RetryStepGroup (R19, E6) ---------------------------------------------------------------


def test_R19_E6_retry_step_group_reruns_the_whole_group_including_steps_that_succeeded():
    runs: list[str] = []

    def step(name: str, fail_first: bool = False) -> Callable:
        def body(ctx: nbp.StepContext) -> None:
            runs.append(f"{name}{ctx.attempt}")
            ctx.sleep(0.01)
            if fail_first and ctx.attempt == 1:
                raise RuntimeError("first time")

        return body

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        with s.step_group("g", failure_strategies=nbp.RetryStepGroup(1, intervals="20ms")) as g:
            g.step("a", run=step("a"))
            g.step("b", run=step("b", fail_first=True))
            g.step("c", run=step("c"))
        s.step("after", run=ok())
    t = run(p)
    assert runs == ["a1", "b1", "a2", "b2", "c1"]
    group = rows(t, "g")
    assert list(group["attempt"]) == [1, 2]
    assert list(group["status"]) == ["Failed", "Success"]
    assert group["action"].iloc[0] == "RetryStepGroup"
    assert list(rows(t, "g.steps.a")["attempt"]) == [1, 2]  # attempts go on across group runs
    b = rows(t, "g.steps.b")
    assert list(zip(b["status"], b["action"].fillna("-"))) == [("Failed", "RetryStepGroup"), ("Success", "-")]
    # c never started in the first run: it has exactly one row, from the second run
    assert list(rows(t, "g.steps.c")["status"]) == ["Success"]
    # the second run starts after the interval, from the group's first step
    assert group["start_s"].iloc[1] >= group["end_s"].iloc[0] + 0.020
    assert rows(t, "g.steps.a")["start_s"].iloc[1] >= group["start_s"].iloc[1]
    assert status(t, "s") == "Success" and status(t, "after") == "Success"


def test_R19_retry_step_group_used_up_fails_the_group_like_mark_as_failure():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        with s.step_group("g", failure_strategies=nbp.RetryStepGroup(2)) as g:
            g.step("a", run=ok())
            g.step("b", run=boom())
            g.step("c", run=ok())
        s.step("after", run=ok())
        s.step("always", run=ok(), when="All")
    t = run(p)
    assert list(rows(t, "g")["status"]) == ["Failed"] * 3
    assert list(rows(t, "g.steps.b")["attempt"]) == [1, 2, 3]
    c = row(t, "g.steps.c")
    assert c["status"] == "Skipped" and "failed so far" in c["reason"]
    assert status(t, "after") == "Skipped" and status(t, "always") == "Success"
    assert status(t, "s") == "Failed"


def test_R19_retry_step_group_waits_for_a_running_parallel_sibling_first():
    p = nbp.Pipeline("p")
    group = p.stage("s").step_group("g", failure_strategies=nbp.RetryStepGroup(1))
    with group.parallel():
        group.step("a", run=fails_until(2, 0.01))
        group.step("b", run=ok(0.04))
    t = run(p)
    b = rows(t, "g.steps.b")
    assert list(b["status"]) == ["Success", "Success"]
    assert rows(t, "g")["start_s"].iloc[1] >= b["end_s"].iloc[0]


# -- ManualIntervention (R20, D12) ----------------------------------------------------------


def test_R20_D12_without_a_front_end_the_run_waits_the_timeout_then_applies_on_timeout():
    t = run(
        one_step(boom(), failure_strategies=nbp.ManualIntervention(timeout="50ms", on_timeout=nbp.Ignore()))
    )
    a = row(t, "a")
    assert (a["status"], a["action"], a["reason"]) == (
        "IgnoreFailed",
        "Ignore",
        "manual intervention timed out",
    )
    assert row(t, "after")["start_s"] >= a["end_s"] + 0.050


def test_R20_harness_yaml_manual_intervention_with_on_timeout():
    strategy = [
        {
            "onFailure": {
                "errors": ["AllErrors"],
                "action": {
                    "type": "ManualIntervention",
                    "spec": {"timeout": "20ms", "onTimeout": {"action": {"type": "MarkAsSuccess"}}},
                },
            }
        }
    ]
    t = run(one_step(boom(), failure_strategies=strategy))
    assert (status(t, "a"), row(t, "a")["action"]) == ("Success", "MarkAsSuccess")


def test_R20_D12_callback_answers_retry_from_another_thread():
    requests: list[Any] = []

    def on_intervention(request: Any) -> None:
        requests.append(request)
        threading.Timer(0.02, request.answer, args=("Retry",)).start()

    p = one_step(fails_until(2), failure_strategies=nbp.ManualIntervention(timeout="1h"))
    t = run(p, on_intervention=on_intervention)
    attempts = rows(t, "a")
    assert list(zip(attempts["status"], attempts["action"].fillna("-"))) == [
        ("Failed", "Retry"),
        ("Success", "-"),
    ]
    assert attempts["reason"].iloc[0] == "manual intervention"
    assert attempts["start_s"].iloc[1] >= attempts["end_s"].iloc[0] + 0.020
    (request,) = requests
    assert request.fqn == "pipeline.stages.s.spec.execution.steps.a"
    assert request.timeout == 3600.0
    assert "Retry" in request.choices and "Abort" in request.choices
    assert request.answered == "Retry"


@pytest.mark.parametrize(
    ("answer", "step_status", "pipeline_status"),
    [
        ("MarkAsSuccess", "Success", "Success"),
        ("Ignore", "IgnoreFailed", "Success"),
        ("Abort", "Failed", "Aborted"),
    ],
)
def test_R20_callback_answer_chooses_the_action(answer: str, step_status: str, pipeline_status: str):
    p = one_step(boom(), failure_strategies=nbp.ManualIntervention(timeout="1h"))
    t = run(p, on_intervention=lambda request: request.answer(answer))
    a = row(t, "a")
    assert (a["status"], a["action"], a["reason"]) == (step_status, answer, f"manual intervention: {answer}")
    assert status(t, "pipeline") == pipeline_status


def test_R20_callback_answer_stage_rollback_runs_the_rollback():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=boom(), failure_strategies=nbp.ManualIntervention(timeout="1h"))
        with s.rollback():
            s.step("undo", run=ok())
    t = run(p, on_intervention=lambda request: request.answer("StageRollback"))
    assert status(t, "undo") == "Success"
    assert (status(t, "s"), row(t, "s")["action"]) == ("Failed", "StageRollback")


def test_R20_answer_outside_the_choices_is_refused_and_the_timeout_still_applies():
    errors: list[Exception] = []

    def on_intervention(request: Any) -> None:
        try:
            request.answer("Dance")
        except ValueError as err:
            errors.append(err)

    p = one_step(boom(), failure_strategies=nbp.ManualIntervention(timeout="20ms", on_timeout=nbp.Ignore()))
    t = run(p, on_intervention=on_intervention)
    assert len(errors) == 1 and "'Dance' is not one of" in str(errors[0])
    assert status(t, "a") == "IgnoreFailed"


def test_R20_listeners_hear_about_the_intervention():
    class Listener:
        def __init__(self) -> None:
            self.requests: list[Any] = []

        def intervention(self, request: Any) -> None:
            self.requests.append(request.fqn)

    listener = Listener()
    run(one_step(boom(), failure_strategies=nbp.ManualIntervention(timeout="10ms")), listeners=[listener])
    assert listener.requests == ["pipeline.stages.s.spec.execution.steps.a"]


def test_R20_retry_on_timeout_after_manual_intervention():
    p = one_step(
        fails_until(2), failure_strategies=nbp.ManualIntervention(timeout="10ms", on_timeout=nbp.Retry(1))
    )
    t = run(p)
    assert list(rows(t, "a")["status"]) == ["Failed", "Success"]


def test_R20_retry_answered_to_an_intervention_whose_first_one_timed_out():
    """``onTimeout`` is a second manual intervention, answered Retry: the step runs again.
    (The row's reason was given twice — the first one's timeout and the answer's — and the
    rules' generator died with a TypeError: the run lost its trace.)"""
    asked: list[str] = []

    def answer_the_second(request: Any) -> None:
        asked.append(request.fqn)
        if len(asked) == 2:  # the first waits its timeout
            request.answer("Retry")

    second = nbp.ManualIntervention(timeout="5s")
    p = one_step(fails_until(2), failure_strategies=nbp.ManualIntervention(timeout="10ms", on_timeout=second))
    t = run(p, on_intervention=answer_the_second)
    a = rows(t, "a")
    assert list(a["status"]) == ["Failed", "Success"] and len(asked) == 2
    assert a["action"].iloc[0] == "Retry" and a["reason"].iloc[0] == "manual intervention"
    assert status(t, "after") == "Success"


# -- bad settings (clear DefinitionError naming the node) ----------------------------------------


def _problems(p: nbp.Pipeline) -> list[nbp.Problem]:
    with pytest.raises(nbp.DefinitionError) as caught:
        p.run(report=False)
    return caught.value.problems


def test_R16_unknown_error_type_is_a_definition_error_naming_the_node():
    p = one_step(ok(), failure_strategies={"Oops": nbp.Ignore()})
    (problem,) = _problems(p)
    assert problem.fqn == "pipeline.stages.s.spec.execution.steps.a"
    assert problem.rule == "R16" and "'Oops'" in problem.message and "Timeout" in problem.fix


def test_R17_unknown_action_type_is_a_definition_error_naming_the_node():
    bad = [{"onFailure": {"errors": ["AllErrors"], "action": {"type": "Explode"}}}]
    p = nbp.Pipeline("p")
    with p.stage("s", failure_strategies=bad) as s:
        s.step("a", run=ok())
    (problem,) = _problems(p)
    assert problem.fqn == "pipeline.stages.s"
    assert "'Explode'" in problem.message and "StageRollback" in problem.message


def test_R37_step_group_rollback_on_a_step_outside_any_group_is_refused():
    p = one_step(ok(), failure_strategies=nbp.StepGroupRollback())
    (problem,) = _problems(p)
    assert problem.fqn == "pipeline.stages.s.spec.execution.steps.a"
    assert problem.rule == "R37" and "outside any step group" in problem.message


def test_R37_step_group_rollback_inside_a_retry_on_a_step_outside_any_group_is_refused():
    p = one_step(ok(), failure_strategies=nbp.Retry(1, then=nbp.StepGroupRollback()))
    assert [x.rule for x in _problems(p)] == ["R37"]


def test_R19_retry_step_group_on_a_step_is_refused():
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.step_group("g") as g:
        g.step("a", run=ok(), failure_strategies=nbp.RetryStepGroup(1))
    (problem,) = _problems(p)
    assert problem.fqn == "pipeline.stages.s.spec.execution.steps.g.steps.a"
    assert problem.rule == "R19" and "set it on the step group" in problem.fix


@pytest.mark.parametrize(
    "strategy",
    [
        nbp.Retry(-1),
        [{"onFailure": {"errors": ["AllErrors"], "action": {"type": "Retry", "spec": {"retryCount": -2}}}}],
    ],
)
def test_R18_negative_retry_count_is_refused(strategy: Any):
    (problem,) = _problems(one_step(ok(), failure_strategies=strategy))
    assert problem.fqn == "pipeline.stages.s.spec.execution.steps.a"
    assert problem.rule == "R18" and "negative" in problem.message


def test_R18_unparsable_retry_interval_and_intervention_timeout_are_refused():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=ok(), failure_strategies=nbp.Retry(1, intervals="soon"))
        s.step("b", run=ok(), failure_strategies=nbp.ManualIntervention(timeout="later"))
    found = _problems(p)
    assert [(x.fqn.rsplit(".", 1)[1], x.rule) for x in found] == [("a", "R59"), ("b", "R59")]
    assert "'soon'" in found[0].message and "'later'" in found[1].message


def test_R15_bad_settings_are_all_reported_at_once_and_nothing_runs():
    ran: list[str] = []
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=lambda: ran.append("a"), failure_strategies={"Nope": nbp.Ignore()})
        s.step("b", run=lambda: ran.append("b"), failure_strategies=nbp.RetryStepGroup(1))
    assert len(_problems(p)) == 2
    assert ran == []


# -- wrong value types: a DefinitionError line each, never a TypeError from inside ---------------

A = "pipeline.stages.s.spec.execution.steps.a"


@pytest.mark.parametrize("count", ["two", 2.5, True, None])
def test_R18_retry_count_must_be_a_whole_number(count: Any):
    (problem,) = _problems(one_step(ok(), failure_strategies=nbp.Retry(count)))
    assert (problem.fqn, problem.rule) == (A, "R18")
    assert repr(count) in problem.message and "whole number" in problem.message
    assert "Retry(2)" in problem.fix


@pytest.mark.parametrize("count", ["two", 1.5, False])
def test_R18_R19_retry_step_group_count_must_be_a_whole_number(count: Any):
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.step_group("g", failure_strategies=nbp.RetryStepGroup(count)) as g:
        g.step("a", run=ok())
    (problem,) = _problems(p)
    assert (problem.fqn, problem.rule) == ("pipeline.stages.s.spec.execution.steps.g", "R18")
    assert "RetryStepGroup" in problem.message and "RetryStepGroup(2)" in problem.fix


def test_R18_a_yaml_retry_count_that_is_not_a_whole_number_is_refused():
    strategy = [
        {"onFailure": {"errors": ["AllErrors"], "action": {"type": "Retry", "spec": {"retryCount": 2.5}}}}
    ]
    (problem,) = _problems(one_step(ok(), failure_strategies=strategy))
    assert problem.fqn == A and "retryCount" in problem.message and "2.5" in problem.message and problem.fix


def test_R18_retry_count_zero_is_still_accepted():
    t = run(one_step(boom(), failure_strategies=nbp.Retry(0)))
    assert list(rows(t, "a")["attempt"]) == [1]


@pytest.mark.parametrize("timeout", [None, float("nan")])
def test_R20_manual_intervention_needs_a_timeout(timeout: Any):
    (problem,) = _problems(one_step(ok(), failure_strategies=nbp.ManualIntervention(timeout=timeout)))
    assert problem.fqn == A
    if timeout is None:
        assert problem.rule == "R20" and "needs a timeout" in problem.message
        assert "timeout='30m'" in problem.fix
    else:
        assert problem.rule == "R59" and "nan" in problem.message


def test_R20_a_yaml_manual_intervention_without_timeout_is_refused():
    action = {"type": "ManualIntervention", "spec": {"onTimeout": {"action": {"type": "Abort"}}}}
    (problem,) = _problems(
        one_step(ok(), failure_strategies=[{"onFailure": {"errors": ["AllErrors"], "action": action}}])
    )
    assert (problem.fqn, problem.rule) == (A, "R20")


def test_R20_manual_intervention_choices_must_be_action_type_names():
    (problem,) = _problems(one_step(ok(), failure_strategies=nbp.ManualIntervention("1s", choices=["Nope"])))
    assert (
        (problem.fqn, problem.rule) == (A, "R20") and "'Nope'" in problem.message and "Abort" in problem.fix
    )


@pytest.mark.parametrize(
    ("text", "action", "step_status"),
    [("Ignore", "Ignore", "IgnoreFailed"), ("MarkAsSuccess", "MarkAsSuccess", "Success")],
)
def test_R17_an_action_type_name_means_all_errors_to_that_action(text: str, action: str, step_status: str):
    t = run(one_step(boom(), failure_strategies=text))
    assert (status(t, "a"), row(t, "a")["action"]) == (step_status, action)
    assert status(t, "after") == "Success"


def test_R17_R18_the_name_Retry_means_retry_with_its_defaults():
    assert coerce_strategies("Retry") == (nbp.OnFailure(["AllErrors"], nbp.Retry()),)
    t = run(one_step(fails_until(2), failure_strategies="Retry"))
    assert list(rows(t, "a")["status"]) == ["Failed", "Success"]


def test_R17_action_type_names_work_where_an_action_is_expected():
    strategy = nbp.OnFailure("AllErrors", "Retry")
    assert strategy.action == nbp.Retry()
    assert nbp.Retry(1, then="Ignore").then == nbp.Ignore()
    assert nbp.ManualIntervention("1s", on_timeout="Abort").on_timeout == nbp.Abort()
    t = run(one_step(boom(), failure_strategies=nbp.Retry(1, then="Ignore")))
    assert list(rows(t, "a")["action"]) == ["Retry", "Ignore"]


def test_R15_R17_an_unknown_strategy_string_lists_the_action_types():
    (problem,) = _problems(one_step(ok(), failure_strategies="Explode"))
    assert problem.fqn == A and "R17" in problem.rule
    assert "'Explode'" in problem.message
    for name in ("Ignore", "Retry", "StageRollback", "ManualIntervention"):
        assert name in problem.message
    assert problem.fix


@pytest.mark.parametrize(
    "bad", [nbp.Retry(1, then=5), nbp.OnFailure("Timeout", 7), nbp.ManualIntervention("1s", on_timeout="x")]
)
def test_R17_a_value_that_is_not_an_action_is_refused(bad: Any):
    (problem,) = _problems(
        one_step(ok(), failure_strategies=[bad] if isinstance(bad, nbp.OnFailure) else bad)
    )
    assert (problem.fqn, problem.rule) == (A, "R17") and "not a failure-strategy action" in problem.message


@pytest.mark.parametrize("bad", [42, [42], {"onFailure": 5}])
def test_R15_unreadable_failure_strategies_are_a_problem_line_not_a_type_error(bad: Any):
    (problem,) = _problems(one_step(ok(), failure_strategies=bad))
    assert problem.fqn == A and problem.rule == "R15/R17" and problem.fix


def test_R18_retry_condition_must_be_an_expression_or_callable():
    (problem,) = _problems(one_step(ok(), failure_strategies=nbp.Retry(1, condition=5)))
    assert (problem.fqn, problem.rule) == (A, "R18") and "condition 5" in problem.message


def test_R20_a_person_answering_Retry_for_ever_is_bounded_like_a_retry_count():
    """An ``on_intervention`` callback that answers Retry every time must not loop for ever:
    after MAX_RETRIES retries answered for one step, the step fails, with the reason."""
    from notebook_pipelines.definition.limits import MAX_RETRIES

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("flaky", run=_always_fails, failure_strategies=nbp.ManualIntervention(timeout="1h"))
    trace = p.run(on_intervention=lambda request: request.answer("Retry"), report=False)
    attempts = trace[trace["step"] == "flaky"]
    assert len(attempts) == MAX_RETRIES + 1
    last = attempts.iloc[-1]
    assert (last["status"], last["action"]) == ("Failed", "MarkAsFailure")
    assert f"answered Retry {MAX_RETRIES} times" in last["reason"]


def _always_fails() -> None:
    raise RuntimeError("still broken")
