"""Conditional execution on the real-time engine (R28–R32, D5, E2, E3).

Every test runs ``p.run()`` (threads, wall clock) with step bodies that sleep 10–60 ms and
checks statuses, reasons and order from the trace's own times. Conditions are Python callables
taking the step context; ``<+…>`` conditions belong to the expression tests.
"""

from __future__ import annotations

from typing import Any

from conftest import boom, ok, row, rows, run, status

import notebook_pipelines as nbp

# -- R28 / R29: the status test ---------------------------------------------------------------


def test_R29_default_success_condition_skips_steps_after_a_failure():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=boom())
        s.step("b", run=ok())
    t = run(p)
    assert status(t, "a") == "Failed"
    b = row(t, "b")
    assert b["status"] == "Skipped"
    assert "failed so far" in b["reason"] and "Success" in b["reason"]
    assert b["attempt"] == 0 and b["duration_s"] == 0


def test_R29_failure_condition_runs_only_after_a_failure():
    p = nbp.Pipeline("p")
    with p.stage("good") as s:
        s.step("a", run=ok())
        s.step("on_fail", run=ok(), when="Failure")
    with p.stage("bad", when="All") as s:
        s.step("b", run=boom())
        s.step("on_fail2", run=ok(), when="Failure")
    t = run(p)
    assert status(t, "on_fail") == "Skipped"
    assert "has not failed" in row(t, "on_fail")["reason"]
    assert status(t, "on_fail2") == "Success"


def test_R29_all_condition_always_runs():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=ok(), when="All")
        s.step("b", run=boom())
        s.step("c", run=ok(), when="All")
    t = run(p)
    assert status(t, "a") == "Success"
    assert status(t, "c") == "Success"
    assert row(t, "c")["start_s"] >= row(t, "b")["end_s"]


def test_R28_harness_yaml_when_dicts_for_step_group_and_stage():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=boom())
        s.step("b", run=ok(), when={"stageStatus": "All"})
        with s.step_group("g", when={"stageStatus": "Failure"}) as g:
            g.step("c", run=ok())
    with p.stage("s2", when={"pipelineStatus": "Failure"}) as s:
        s.step("d", run=ok())
    with p.stage("s3", when={"pipelineStatus": "Success"}) as s:
        s.step("e", run=ok())
    t = run(p)
    assert [status(t, k) for k in ("b", "g", "c", "s2", "d", "s3", "e")] == [
        "Success",
        "Success",
        "Success",
        "Success",
        "Success",
        "Skipped",
        "Skipped",
    ]


def test_R28_when_object_with_status_and_callable_condition():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=ok(), when=nbp.When("Success", lambda ctx: True))
        s.step("b", run=ok(), when=nbp.When("All", lambda ctx: False))
    t = run(p)
    assert status(t, "a") == "Success"
    assert status(t, "b") == "Skipped"


# -- R29: the condition is ANDed with the status test ------------------------------------------


def test_R29_condition_is_anded_with_the_status_test():
    calls: list[str] = []

    def yes(ctx: nbp.StepContext) -> bool:
        calls.append(ctx.id)
        return True

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=boom())
        s.step("success_and_true", run=ok(), when=nbp.When("Success", yes))  # status test fails
        s.step("all_and_true", run=ok(), when=nbp.When("All", yes))
        s.step("all_and_false", run=ok(), when=nbp.When("All", lambda ctx: False))
        s.step("failure_and_true", run=ok(), when=nbp.When("Failure", yes))
    t = run(p)
    assert status(t, "success_and_true") == "Skipped"
    assert status(t, "all_and_true") == "Success"
    assert status(t, "all_and_false") == "Skipped"
    assert status(t, "failure_and_true") == "Success"
    # the condition is not even evaluated when the status test already says no
    assert "success_and_true" not in calls


def test_R29_condition_callable_receives_the_step_context():
    seen: dict[str, Any] = {}

    def condition(ctx: nbp.StepContext) -> bool:
        seen.update(fqn=ctx.fqn, stage=ctx.stage, group=ctx.step_group, env=ctx.variables.get("env"))
        return ctx.variables["env"] == "prod"

    p = nbp.Pipeline("p", variables={"env": "prod"})
    with p.stage("s") as s, s.step_group("g") as g:
        g.step("deploy", run=ok(), when=condition)
    t = run(p)
    assert status(t, "deploy") == "Success"
    assert seen == {
        "fqn": "pipeline.stages.s.spec.execution.steps.g.steps.deploy",
        "stage": "s",
        "group": "g",
        "env": "prod",
    }


def test_R32_false_condition_records_skipped_with_the_condition_as_reason():
    def only_prod(ctx: nbp.StepContext) -> bool:
        return False

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=ok(), when=only_prod)
        s.step("b", run=ok())
    t = run(p)
    a = row(t, "a")
    assert a["status"] == "Skipped"
    assert a["reason"] == "condition only_prod is false"
    assert a["attempt"] == 0 and a["start_s"] == a["end_s"]
    # a skip is positive: the next default-condition step runs and everything is green (R32)
    assert status(t, "b") == "Success"
    assert status(t, "s") == "Success" and status(t, "pipeline") == "Success"


def test_R29_a_condition_that_raises_fails_the_node_and_the_run_goes_on():
    def broken(ctx: nbp.StepContext) -> bool:
        raise KeyError("missing")

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=ok(), when=broken)
        s.step("b", run=ok(), when="All")
    t = run(p)
    a = row(t, "a")
    assert a["status"] == "Failed"
    assert "KeyError" in a["error"]
    assert status(t, "b") == "Success"
    assert status(t, "s") == "Failed"


# -- R30: "successful so far" -------------------------------------------------------------------


def test_R30_ignore_failed_counts_as_success_E2():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        with s.step_group("g") as g:
            g.step("a", run=boom(), failure_strategies=nbp.Ignore())
            g.step("b", run=ok())
        s.step("c", run=ok())
    t = run(p)
    assert status(t, "a") == "IgnoreFailed"
    assert status(t, "b") == "Success"
    assert status(t, "g") == "Success"
    assert status(t, "c") == "Success"
    assert status(t, "s") == "Success" and status(t, "pipeline") == "Success"


def test_R30_skipped_counts_as_success():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=ok(), when=lambda ctx: False)
        s.step("b", run=ok())
    with p.stage("s2") as s:
        s.step("c", run=ok())
    t = run(p)
    assert [status(t, k) for k in ("a", "b", "s", "c")] == ["Skipped", "Success", "Success", "Success"]


def test_R30_only_finished_nodes_count_a_running_parallel_sibling_does_not():
    """The slow sibling fails at ~80 ms; steps that start before that still run, and the
    next serial item (which starts after the whole block) sees the failure."""
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        with s.parallel():
            s.step("slow_fail", run=boom(0.08))
            with s.step_group("g") as g:
                g.step("a", run=ok(0.01))
                g.step("b", run=ok(0.01))
        s.step("after", run=ok())
    t = run(p)
    assert row(t, "b")["start_s"] < row(t, "slow_fail")["end_s"]
    assert status(t, "b") == "Success"
    assert status(t, "g") == "Success"
    after = row(t, "after")
    assert after["status"] == "Skipped"
    assert after["start_s"] >= row(t, "slow_fail")["end_s"]


def test_R30_a_step_starting_after_a_sibling_failed_sees_the_failure():
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        s.step("fast_fail", run=boom(0.01))
        with s.step_group("g") as g:
            g.step("a", run=ok(0.06))
            g.step("b", run=ok(0.01))
    t = run(p)
    assert row(t, "g.steps.b")["start_s"] >= row(t, "fast_fail")["end_s"]
    assert status(t, "g.steps.b") == "Skipped"


def test_R30_stage_condition_looks_at_the_pipeline_so_far():
    p = nbp.Pipeline("p")
    with p.stage("s1") as s:
        s.step("a", run=boom())
    with p.stage("s2") as s:
        s.step("b", run=ok())
    with p.stage("s3", when="Failure") as s:
        s.step("c", run=ok())
    with p.stage("s4", when="All") as s:
        s.step("d", run=ok())
    t = run(p)
    s2 = row(t, "s2")
    assert s2["status"] == "Skipped" and "pipeline has failed so far" in s2["reason"]
    assert status(t, "s3") == "Success" and status(t, "s4") == "Success"
    assert status(t, "pipeline") == "Failed"


def test_R30_the_stage_so_far_does_not_leak_into_the_next_stage():
    """A failure in stage 1 makes the pipeline unsuccessful, not stage 2's steps: inside a
    stage that runs (here with pipelineStatus All) 'successful so far' starts afresh."""
    p = nbp.Pipeline("p")
    with p.stage("s1") as s:
        s.step("a", run=boom())
    with p.stage("s2", when="All") as s:
        s.step("b", run=ok())
        s.step("c", run=ok(), when="Failure")
    t = run(p)
    assert status(t, "b") == "Success"
    assert status(t, "c") == "Skipped"


# -- R31: hierarchy; a step's own condition replaces its group's -------------------------------


def test_R31_stage_condition_false_skips_the_stage_and_everything_in_it_D5():
    p = nbp.Pipeline("p")
    with p.stage("s", when=lambda ctx: False) as s:
        s.step("a", run=ok())
        with s.step_group("g") as g:
            g.step("b", run=ok())
            with g.rollback():
                g.step("rb", run=ok())
        with s.rollback():
            s.step("srb", run=ok())
    with p.stage("s2") as s:
        s.step("c", run=ok())
    t = run(p)
    stage = row(t, "s")
    assert stage["status"] == "Skipped" and stage["reason"] == "condition <lambda> is false"
    below = t[t["stage"] == "s"].iloc[1:]
    assert len(below) == 5  # a, g, b, rb, srb: one row each
    assert set(below["status"]) == {"Skipped"}
    assert set(below["reason"]) == {"parent skipped"}
    assert (below["duration_s"] == 0).all() and (below["attempt"] == 0).all()
    assert status(t, "c") == "Success"
    assert status(t, "pipeline") == "Success"


def test_R31_group_condition_false_skips_its_steps_E3():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        with s.step_group("g", when=lambda ctx: False) as g:
            with g.parallel():
                g.step("a", run=ok())
                g.step("b", run=ok())
            g.step("c", run=ok())
        s.step("d", run=ok())
    t = run(p)
    assert status(t, "g") == "Skipped"
    for key in ("a", "b", "c"):
        r = row(t, "g.steps." + key)
        assert (r["status"], r["reason"], r["duration_s"], r["attempt"]) == (
            "Skipped",
            "parent skipped",
            0.0,
            0,
        )
    # E3: the stage stays successful and the following step runs
    assert status(t, "d") == "Success"
    assert status(t, "s") == "Success"


def test_R31_group_status_condition_applies_to_its_steps_R7():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=boom())
        with s.step_group("cleanup", when="All") as g:
            g.step("b", run=ok())
            g.step("c", run=ok())
    t = run(p)
    assert status(t, "cleanup") == "Success"
    assert status(t, "cleanup.steps.b") == "Success"
    assert status(t, "cleanup.steps.c") == "Success"


def test_R31_step_condition_replaces_the_groups():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=boom())
        with s.step_group("g", when="All") as g:
            g.step("inherits", run=ok())
            g.step("own_success", run=ok(), when="Success")
            g.step("own_true", run=ok(), when=nbp.When("All", lambda ctx: True))
    t = run(p)
    assert status(t, "inherits") == "Success"
    assert status(t, "own_success") == "Skipped"
    assert status(t, "own_true") == "Success"


def test_R31_group_that_runs_can_still_have_a_step_skipped_by_its_own_condition():
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.step_group("g", when=lambda ctx: True) as g:
        g.step("a", run=ok())
        g.step("b", run=ok(), when=lambda ctx: False)
        g.step("c", run=ok())
    t = run(p)
    assert [status(t, k) for k in ("g", "a", "b", "c")] == ["Success", "Success", "Skipped", "Success"]


def test_R32_skipped_stage_records_zero_duration_rows_at_the_moment_it_was_skipped():
    p = nbp.Pipeline("p")
    with p.stage("s1") as s:
        s.step("a", run=ok(0.02))
    with p.stage("s2", when=lambda ctx: False) as s:
        s.step("b", run=ok())
    t = run(p)
    skipped = rows(t, "s2")
    b = row(t, "b")
    assert skipped["start_s"].iloc[0] >= row(t, "s1")["end_s"]
    assert b["start_s"] == skipped["start_s"].iloc[0] and b["end_s"] == b["start_s"]


def test_R29_parallel_stages_evaluate_their_conditions_when_the_block_starts():
    p = nbp.Pipeline("p")
    with p.parallel():
        with p.stage("fails") as s:
            s.step("a", run=boom(0.01))
        with p.stage("slow") as s:
            s.step("b", run=ok(0.03))
    with p.stage("next") as s:
        s.step("c", run=ok())
    t = run(p)
    assert status(t, "slow") == "Success"  # started with the block: the failure came later
    assert status(t, "next") == "Skipped"
    assert status(t, "pipeline") == "Failed"
