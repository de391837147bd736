"""Rollback on the real-time engine (R34–R40, D7, E1, E7, E8).

Order is read from the trace's start/end times; rollback rows carry ``phase == "rollback"``.
"""

from __future__ import annotations

import itertools

import pandas as pd
from conftest import boom, ok, row, rows, run, status

import notebook_pipelines as nbp

# -- helpers ----------------------------------------------------------------------------------


def ran_in_order(trace: pd.DataFrame, *keys: str) -> bool:
    """Each node ended before the next one started (from the trace's own times)."""
    found = [row(trace, k) for k in keys]
    return all(b["start_s"] >= a["end_s"] for a, b in itertools.pairwise(found))


def rollback_order(trace: pd.DataFrame) -> list[str]:
    """Identifiers of the rollback steps that ran, by start time."""
    done = trace[(trace["phase"] == "rollback") & (trace["kind"] == "step") & (trace["attempt"] > 0)]
    return list(done.sort_values("start_s")["step"])


# -- R35: the stage rollback list ---------------------------------------------------------------


def test_R35_stage_rollback_runs_the_rollback_list_in_order_after_the_failure():
    p = nbp.Pipeline("p")
    with p.stage("s", failure_strategies=nbp.StageRollback()) as s:
        s.step("a", run=ok())
        s.step("b", run=boom())
        s.step("c", run=ok())
        with s.rollback():
            s.step("undo1", run=ok())
            s.step("undo2", run=ok())
    t = run(p)
    assert rollback_order(t) == ["undo1", "undo2"]
    assert ran_in_order(t, "b", "undo1", "undo2")
    undo = rows(t, "undo1")
    assert (undo["phase"] == "rollback").all()
    assert undo["fqn"].iloc[0] == "pipeline.stages.s.spec.execution.rollbackSteps.undo1"
    c = row(t, "c")
    assert (c["status"], c["reason"]) == ("NotStarted", "stage rolled back")
    assert (status(t, "b"), row(t, "b")["action"]) == ("Failed", "StageRollback")
    # D7: the stage ends Failed and notes the rollback; it ends after its rollback
    stage = row(t, "s")
    assert (stage["status"], stage["action"], stage["reason"]) == ("Failed", "StageRollback", "rolled back")
    assert stage["end_s"] >= row(t, "undo2")["end_s"]


def test_R35_parallel_block_in_a_rollback_list_runs_together():
    p = nbp.Pipeline("p")
    with p.stage("s", failure_strategies=nbp.StageRollback()) as s:
        s.step("a", run=boom())
        with s.rollback():
            with s.parallel():
                s.step("r1", run=ok(0.04))
                s.step("r2", run=ok(0.04))
            s.step("r3", run=ok())
    t = run(p)
    r1, r2 = row(t, "r1"), row(t, "r2")
    assert r1["start_s"] < r2["end_s"] and r2["start_s"] < r1["end_s"]
    assert row(t, "r3")["start_s"] >= max(r1["end_s"], r2["end_s"])


def test_R35_rollback_lists_do_not_run_when_nothing_asks_for_them():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        with s.step_group("g") as g:
            g.step("a", run=ok())
            with g.rollback():
                g.step("grb", run=ok())
        s.step("b", run=boom())  # default MarkAsFailure: no rollback
        with s.rollback():
            s.step("srb", run=ok())
    t = run(p)
    for key in ("grb", "srb"):
        r = row(t, key)
        assert r["status"] == "NotStarted" and pd.isna(r["start_s"]) and r["phase"] == "rollback"
    assert status(t, "s") == "Failed" and pd.isna(row(t, "s")["action"])


# -- R36 / E7: order inside a stage rollback ------------------------------------------------------


def test_R36_rollback_order_groups_reverse_then_stage_E7():
    p = nbp.Pipeline("p")
    with p.stage("s", failure_strategies=nbp.StageRollback()) as s:
        for name in ("g1", "g2", "g3"):
            with s.step_group(name) as g:
                g.step(f"{name}_do", run=ok())
                with g.rollback():
                    g.step(f"{name}_undo_a", run=ok())
                    g.step(f"{name}_undo_b", run=ok())
        s.step("fail", run=boom())
        with s.rollback():
            s.step("stage_undo", run=ok())
    t = run(p)
    assert rollback_order(t) == [
        "g3_undo_a",
        "g3_undo_b",
        "g2_undo_a",
        "g2_undo_b",
        "g1_undo_a",
        "g1_undo_b",
        "stage_undo",
    ]
    assert ran_in_order(t, "fail", "g3_undo_a", "g3_undo_b", "g2_undo_a", "g1_undo_b", "stage_undo")


def test_R36_only_groups_that_ran_are_rolled_back():
    p = nbp.Pipeline("p")
    with p.stage("s", failure_strategies=nbp.StageRollback()) as s:
        with s.step_group("ran") as g:
            g.step("a", run=ok())
            with g.rollback():
                g.step("ran_undo", run=ok())
        with s.step_group("skipped", when=lambda ctx: False) as g:
            g.step("b", run=ok())
            with g.rollback():
                g.step("skipped_undo", run=ok())
        s.step("fail", run=boom())
        with s.step_group("later") as g:
            g.step("c", run=ok())
            with g.rollback():
                g.step("later_undo", run=ok())
    t = run(p)
    assert rollback_order(t) == ["ran_undo"]
    assert status(t, "skipped_undo") == "Skipped"  # D5: below a skipped group
    later = row(t, "later_undo")
    assert later["status"] == "NotStarted" and pd.isna(later["start_s"])


def test_R36_the_failing_group_is_rolled_back_first():
    p = nbp.Pipeline("p")
    with p.stage("s", failure_strategies=nbp.StageRollback()) as s:
        with s.step_group("g1") as g:
            g.step("a", run=ok())
            with g.rollback():
                g.step("g1_undo", run=ok())
        with s.step_group("g2") as g:
            g.step("b", run=boom())
            g.step("b2", run=ok())
            with g.rollback():
                g.step("g2_undo", run=ok())
        with s.rollback():
            s.step("stage_undo", run=ok())
    t = run(p)
    assert rollback_order(t) == ["g2_undo", "g1_undo", "stage_undo"]
    assert status(t, "b2") == "NotStarted"
    assert status(t, "g2") == "Failed"


def test_E1_stage_rollback_starts_after_the_slowest_parallel_sibling():
    p = nbp.Pipeline("p")
    with p.stage("s", failure_strategies=nbp.StageRollback()) as s:
        with s.parallel():
            s.step("fast_fail", run=boom(0.01))
            s.step("slow", run=ok(0.06))
        with s.rollback():
            s.step("undo", run=ok())
    t = run(p)
    slow = row(t, "slow")
    assert slow["status"] == "Success"  # D9: not stopped by the failure
    assert slow["end_s"] > row(t, "fast_fail")["end_s"]
    assert row(t, "undo")["start_s"] >= slow["end_s"]


# -- R37 / E8 / D7: step group rollback ----------------------------------------------------------


def test_R37_step_group_rollback_runs_only_that_groups_list():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        with s.step_group("g1") as g:
            g.step("a", run=ok())
            with g.rollback():
                g.step("g1_undo", run=ok())
        with s.step_group("g2", failure_strategies=nbp.StepGroupRollback()) as g:
            g.step("b", run=ok())
            g.step("c", run=boom())
            g.step("d", run=ok())
            with g.rollback():
                g.step("g2_undo1", run=ok())
                g.step("g2_undo2", run=ok())
        with s.rollback():
            s.step("stage_undo", run=ok())
    t = run(p)
    assert rollback_order(t) == ["g2_undo1", "g2_undo2"]
    assert ran_in_order(t, "c", "g2_undo1", "g2_undo2")
    assert status(t, "g1_undo") == "NotStarted" and status(t, "stage_undo") == "NotStarted"
    d = row(t, "d")
    assert (d["status"], d["reason"]) == ("NotStarted", "step group rolled back")
    assert (status(t, "c"), row(t, "c")["action"]) == ("Failed", "StepGroupRollback")
    # D7: the group ends Failed, noting the rollback, after its rollback list
    group = row(t, "g2")
    assert (group["status"], group["action"], group["reason"]) == (
        "Failed",
        "StepGroupRollback",
        "rolled back",
    )
    assert group["end_s"] >= row(t, "g2_undo2")["end_s"]


def test_E8_D7_after_step_group_rollback_default_steps_skip_all_and_failure_steps_run():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        with s.step_group("g", failure_strategies=nbp.StepGroupRollback()) as g:
            g.step("a", run=boom())
            with g.rollback():
                g.step("undo", run=ok())
        s.step("default", run=ok())
        s.step("always", run=ok(), when="All")
        s.step("on_failure", run=ok(), when="Failure")
    with p.stage("next") as s:
        s.step("x", run=ok())
    with p.stage("next_on_failure", when="Failure") as s:
        s.step("y", run=ok())
    t = run(p)
    default = row(t, "default")
    assert default["status"] == "Skipped" and "failed so far" in default["reason"]
    assert status(t, "always") == "Success" and status(t, "on_failure") == "Success"
    assert ran_in_order(t, "undo", "always")
    assert status(t, "s") == "Failed"
    assert status(t, "next") == "Skipped" and status(t, "next_on_failure") == "Success"


def test_R37_step_group_rollback_chosen_by_a_step_inside_the_group():
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.step_group("g") as g:
        g.step("a", run=boom(), failure_strategies=nbp.StepGroupRollback())
        with g.rollback():
            g.step("undo", run=ok())
    t = run(p)
    assert status(t, "undo") == "Success"
    assert row(t, "g")["action"] == "StepGroupRollback"


def test_R36_stage_rollback_after_a_group_rollback_does_not_roll_that_group_back_twice():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        with s.step_group("g", failure_strategies=nbp.StepGroupRollback()) as g:
            g.step("a", run=boom())
            with g.rollback():
                g.step("g_undo", run=ok())
        s.step("b", run=boom(), when="All", failure_strategies=nbp.StageRollback())
        with s.rollback():
            s.step("stage_undo", run=ok())
    t = run(p)
    assert rollback_order(t) == ["g_undo", "stage_undo"]
    assert len(rows(t, "g_undo")) == 1


# -- D7 / R40: after a stage rollback -----------------------------------------------------------


def test_D7_R40_after_stage_rollback_default_stages_skip_failure_and_all_stages_run():
    p = nbp.Pipeline("p")
    with p.stage("s", failure_strategies=nbp.StageRollback()) as s:
        s.step("a", run=boom())
        with s.rollback():
            s.step("undo", run=ok())
    with p.stage("default") as s:
        s.step("x", run=ok())
    with p.stage("on_failure", when="Failure") as s:
        s.step("y", run=ok())
    with p.stage("always", when="All") as s:
        s.step("z", run=ok())
    t = run(p)
    assert status(t, "default") == "Skipped"
    assert status(t, "on_failure") == "Success" and status(t, "always") == "Success"
    assert ran_in_order(t, "undo", "y", "z")
    assert status(t, "pipeline") == "Failed"


def test_R40_a_parallel_sibling_stage_keeps_running_during_a_stage_rollback():
    p = nbp.Pipeline("p")
    with p.parallel():
        with p.stage("s1", failure_strategies=nbp.StageRollback()) as s:
            s.step("a", run=boom(0.01))
            with s.rollback():
                s.step("undo", run=ok())
        with p.stage("s2") as s:
            s.step("b", run=ok(0.08))
            s.step("c", run=ok())
    t = run(p)
    assert status(t, "undo") == "Success"
    assert row(t, "undo")["end_s"] < row(t, "b")["end_s"]  # s1 rolled back while s2 ran
    assert status(t, "b") == "Success" and status(t, "c") == "Success"
    assert status(t, "s2") == "Success"
    assert status(t, "s1") == "Failed" and status(t, "pipeline") == "Failed"


# -- R34: conditions inside a rollback list --------------------------------------------------------


def test_R34_failing_rollback_step_skips_default_rollback_steps_but_not_all_ones():
    p = nbp.Pipeline("p")
    with p.stage("s", failure_strategies=nbp.StageRollback()) as s:
        s.step("a", run=boom())
        with s.rollback():
            s.step("r1", run=boom(), failure_strategies=nbp.MarkAsFailure())
            s.step("r2", run=ok())
            s.step("r3", run=ok(), when="All")
    t = run(p)
    assert status(t, "r1") == "Failed"
    assert status(t, "r2") == "Skipped"
    assert status(t, "r3") == "Success"
    assert status(t, "s") == "Failed"


def test_R34_rollback_actions_inside_a_rollback_list_do_not_roll_back_again():
    p = nbp.Pipeline("p")
    with p.stage("s", failure_strategies=nbp.StageRollback()) as s:
        s.step("a", run=boom())
        with s.rollback():
            s.step("r1", run=boom())  # inherits StageRollback from the stage
            s.step("r2", run=ok(), when="All")
    t = run(p)
    assert len(rows(t, "r1")) == 1 and status(t, "r1") == "Failed"
    assert status(t, "r2") == "Success"


# -- R38: pipeline rollback ----------------------------------------------------------------------


def test_R38_pipeline_rollback_rolls_back_every_stage_that_ran_in_reverse_order():
    p = nbp.Pipeline("p")
    with p.stage("s1") as s:
        with s.step_group("g") as g:
            g.step("a", run=ok())
            with g.rollback():
                g.step("s1_group_undo", run=ok())
        with s.rollback():
            s.step("s1_undo", run=ok())
    with p.stage("s2") as s:
        s.step("b", run=ok())
        with s.rollback():
            s.step("s2_undo", run=ok())
    with p.stage("s3", failure_strategies=nbp.PipelineRollback()) as s:
        s.step("c", run=boom())
        s.step("c2", run=ok())
        with s.rollback():
            s.step("s3_undo", run=ok())
    with p.stage("s4", when="All") as s:
        s.step("d", run=ok())
        with s.rollback():
            s.step("s4_undo", run=ok())
    t = run(p)
    assert rollback_order(t) == ["s3_undo", "s2_undo", "s1_group_undo", "s1_undo"]
    assert ran_in_order(t, "c", "s3_undo", "s2_undo", "s1_group_undo", "s1_undo")
    assert (status(t, "c"), row(t, "c")["action"]) == ("Failed", "PipelineRollback")
    assert status(t, "c2") == "NotStarted"
    assert status(t, "s4") == "NotStarted" and status(t, "s4_undo") == "NotStarted"
    root = row(t, "pipeline")
    assert (root["status"], root["action"], root["reason"]) == (
        "Failed",
        "PipelineRollback",
        "pipeline rolled back",
    )
    assert root["end_s"] >= row(t, "s1_undo")["end_s"]


def test_R38_pipeline_rollback_in_harness_yaml_from_a_step():
    strategy = [{"onFailure": {"errors": ["AllErrors"], "action": {"type": "PipelineRollback"}}}]
    p = nbp.Pipeline("p")
    with p.stage("s1") as s:
        s.step("a", run=ok())
        with s.rollback():
            s.step("s1_undo", run=ok())
    with p.stage("s2") as s:
        s.step("b", run=boom(), failure_strategies=strategy)
        with s.rollback():
            s.step("s2_undo", run=ok())
    t = run(p)
    assert rollback_order(t) == ["s2_undo", "s1_undo"]


def test_R38_pipeline_rollback_skips_stages_already_rolled_back():
    p = nbp.Pipeline("p")
    with p.stage("s1", failure_strategies=nbp.StageRollback()) as s:
        s.step("a", run=boom())
        with s.rollback():
            s.step("s1_undo", run=ok())
    with p.stage("s2", when="All", failure_strategies=nbp.PipelineRollback()) as s:
        s.step("b", run=boom())
        with s.rollback():
            s.step("s2_undo", run=ok())
    t = run(p)
    assert rollback_order(t) == ["s1_undo", "s2_undo"]
    assert len(rows(t, "s1_undo")) == 1


def test_R38_abort_prevents_any_rollback():
    p = nbp.Pipeline("p")
    with p.stage("s", failure_strategies=nbp.Abort()) as s:
        s.step("a", run=boom())
        with s.rollback():
            s.step("undo", run=ok())
    t = run(p)
    assert status(t, "undo") == "NotStarted"
    assert status(t, "pipeline") == "Aborted"


def test_R6_R37_group_rollback_on_an_outer_group_rolls_back_that_group_not_the_inner_one():
    """With nested groups (rules="current"), StepGroupRollback acts on the group that declared it."""
    p = nbp.Pipeline("p", rules="current")
    with p.stage("s") as s, s.step_group("outer", failure_strategies=nbp.StepGroupRollback()) as outer:
        outer.step("first", run=ok())
        with outer.step_group("inner") as inner:
            inner.step("bad", run=boom())
        with outer.rollback():
            outer.step("undo_outer", run=ok())
    trace = run(p)
    assert status(trace, "bad") == "Failed"
    assert status(trace, "undo_outer") == "Success"
    assert row(trace, "outer")["action"] == "StepGroupRollback"
    assert row(trace, "inner")["action"] != "StepGroupRollback"


def test_R6_E6_retry_step_group_on_an_outer_group_reruns_the_outer_group_from_its_first_step():
    p = nbp.Pipeline("p", rules="current")
    with p.stage("s") as s, s.step_group("outer", failure_strategies=nbp.RetryStepGroup(1)) as outer:
        outer.step("first", run=ok())
        with outer.step_group("inner") as inner:
            inner.step("bad", run=boom())
    trace = run(p)
    assert list(rows(trace, "first")["attempt"]) == [1, 2]  # the outer group ran again from its start
    assert list(rows(trace, "bad")["attempt"]) == [1, 2]


def test_D13_R37_loop_items_unresolvable_at_start_fail_the_step_before_it_starts_no_group_rollback():
    # Settled reading (D13 with R21, R22, R37): items known only at run time that turn out not
    # to be a list fail the looped step with an expression error before any iteration starts,
    # exactly like inputs or a spec that do not resolve (test_shellscript.py's D13 test): no
    # attempt ran, so no failure strategy is consulted, and StepGroupRollback — an action a
    # strategy chooses (R37) — is never chosen: the group's rollback list is not reached. The
    # step is Failed (R26), so the group and the stage are not successful so far (R30).
    # The same group with a body that fails does roll back: the two differ only in that.
    def group(p: nbp.Pipeline, name: str, items_ok: bool) -> None:
        with p.stage(name) as s:
            s.step("hosts", run=lambda: {"hosts": "h1"}, outputs=["hosts"])  # not a list
            with s.step_group(f"{name}_g", failure_strategies=nbp.StepGroupRollback()) as g:
                g.step(f"{name}_before", run=ok())
                items = (
                    ["h1"]
                    if items_ok
                    else f"<+pipeline.stages.{name}.spec.execution.steps.hosts.output.outputVariables.hosts>"
                )
                g.step(
                    f"{name}_each",
                    run=boom() if items_ok else ok(),
                    strategy=nbp.Repeat(items=items),
                )
                with g.rollback():
                    g.step(f"{name}_undo", run=ok())

    p = nbp.Pipeline("p")
    group(p, "late", items_ok=False)
    group(p, "body", items_ok=True)
    for stage in p.stages:
        stage.when = nbp.When("All")
    t = run(p)
    each = row(t, "late_each")
    assert (each["status"], each["error_type"], each["reason"]) == (
        "Failed",
        "Unknown",
        "its looping strategy could not be expanded",
    )
    assert "list" in each["error"] and pd.isna(each["action"])  # no strategy was consulted
    assert status(t, "late_before") == "Success"
    assert status(t, "late_undo") == "NotStarted" and status(t, "late_g") == "Failed"
    assert pd.isna(row(t, "late_g")["action"])
    # the body's failure is a step failure: the group's StepGroupRollback runs its undo
    assert row(t, "body_g")["action"] == "StepGroupRollback" and status(t, "body_undo") == "Success"
