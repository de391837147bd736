"""``needs`` inside a parallel block (D14): the wait, what a need's outcome does to its waiter,
timeouts, the trace's ``after`` column, and the checks before a run."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import row, status

import notebook_pipelines as nbp
from notebook_pipelines.views.rendering import outline

S = "pipeline.stages.s.spec.execution.steps"


def diamond(**settings) -> nbp.Pipeline:
    """a (1 s) and b (5 s) start with the block; c (2 s) needs a and b; d (2 s) needs a; then e (1 s).
    ``settings`` by step id: extra settings of that step."""
    durations = {"a": 1, "b": 5, "c": 2, "d": 2}
    needs = {"c": ["a", "b"], "d": ["a"]}
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        with s.parallel():
            for ident in "abcd":
                s.step(ident, duration=durations[ident], needs=needs.get(ident), **settings.get(ident, {}))
        s.step("e", duration=1)
    return p


def times(trace, key):
    r = row(trace, key)
    return (r["start_s"], r["end_s"])


# -- the wait ------------------------------------------------------------------------------------
def test_D14_a_member_with_needs_starts_when_they_have_all_ended_not_with_the_block():
    t = diamond().simulate()
    # a: 0 → 1; b: 0 → 5; c waits for max(1, 5) = 5 → 5 + 2 = 7; d waits for a: 1 → 1 + 2 = 3;
    # the block ends at max(1, 5, 7, 3) = 7; e: 7 → 8
    assert times(t, "a") == (0.0, 1.0) and times(t, "b") == (0.0, 5.0)
    assert times(t, "c") == (5.0, 7.0)
    assert times(t, "d") == (1.0, 3.0)
    assert times(t, "e") == (7.0, 8.0) and t["end_s"].max() == 8.0


def test_D14_the_after_column_of_a_member_with_needs_is_its_needs_and_critical_path_follows_them():
    t = diamond().simulate()
    assert row(t, "c")["after"] == (f"{S}.a", f"{S}.b")
    assert row(t, "d")["after"] == (f"{S}.a",)
    assert row(t, "a")["after"] == ()  # the block opens the list
    path = t.pipeline.critical_path()
    steps = [f.rsplit(".", 1)[-1] for f in path["fqn"] if ".steps." in f]
    # the longest path: b (0 → 5) → c (5 → 7) → e (7 → 8); a and d have slack
    assert steps == ["b", "c", "e"]
    slack = t.pipeline.slack().set_index("fqn")["slack_s"]
    # d ends at 3, and nothing waits for it before the block ends at 7: 4 s of slack;
    # a ends at 1, c needs it but starts at 5 (b binds): 4 s too
    assert slack[f"{S}.d"] == 4.0 and slack[f"{S}.a"] == 4.0 and slack[f"{S}.b"] == 0.0


def test_D14_a_real_run_starts_the_waiter_only_after_its_needs_ended():
    seen: list[tuple[str, float]] = []
    lock = threading.Lock()

    def body(name, seconds):
        def run():
            with lock:
                seen.append((f"{name}+", time.monotonic()))
            time.sleep(seconds)
            with lock:
                seen.append((f"{name}-", time.monotonic()))

        return run

    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        s.step("a", body("a", 0.05))
        s.step("b", body("b", 0.15))
        s.step("c", body("c", 0.01), needs=["a", "b"])
        s.step("d", body("d", 0.01), needs="a")
    trace = p.run(report=False)
    at = dict(seen)
    assert (trace["status"] == "Success").all()
    assert at["c+"] >= at["a-"] and at["c+"] >= at["b-"]
    assert at["d+"] >= at["a-"] and at["d+"] < at["b-"]  # d does not wait for b
    assert row(trace, "c")["start_s"] >= row(trace, "b")["end_s"]


def test_D14_needs_work_between_stages_of_a_pipeline_parallel_block():
    p = nbp.Pipeline("p")
    with p.parallel():
        with p.stage("lint") as s:
            s.step("l", duration=2)
        with p.stage("build") as s:
            s.step("b", duration=10)
        with p.stage("docs", needs=["lint"]) as s:
            s.step("d", duration=3)
    t = p.simulate().set_index("fqn")
    # docs waits for lint only: 2 → 2 + 3 = 5 (by levels it would start at 10)
    assert (t.loc["pipeline.stages.docs", "start_s"], t.loc["pipeline.stages.docs", "end_s"]) == (2.0, 5.0)
    assert t.loc["pipeline", "end_s"] == 10.0


def test_D14_a_step_group_member_and_a_looped_member_wait_for_their_needs():
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        s.step("a", duration=3, strategy=nbp.Matrix(i=[1, 2]))
        with s.step_group("g", needs=["a"]) as g:
            g.step("x", duration=1)
        s.step("z", duration=1, needs=["g"])
    t = p.simulate()
    # a's two iterations run side by side 0 → 3; g: 3 → 4; z: 4 → 5
    assert times(t, "g") == (3.0, 4.0) and times(t, "x") == (3.0, 4.0) and times(t, "z") == (4.0, 5.0)


def test_D14_the_members_of_each_iteration_of_a_looped_group_wait_for_their_own_needs():
    p = nbp.Pipeline("p", rules="current")
    with p.stage("s") as s, s.step_group("g", strategy=nbp.Matrix(os=["linux", "mac"])) as g, g.parallel():
        g.step("a", duration=1)
        g.step("b", duration=3)
        g.step("c", duration=2, needs=["b"])
    t = p.simulate()
    # in each iteration: b 0 → 3, then c 3 → 5 (a, 0 → 1, is not waited for)
    c = t[t["fqn"].str.endswith(".c") & t["iteration"].notna()]
    assert len(c) == 2 and c["start_s"].tolist() == [3.0, 3.0] and c["end_s"].tolist() == [5.0, 5.0]
    assert all(after[0].endswith(f"{row}.steps.b") for after, row in zip(c["after"], ("g_0", "g_1")))


def test_D14_a_cycle_in_a_plan_compiled_unchecked_never_hangs_the_engine():
    from notebook_pipelines.definition.plan import compile_plan

    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        s.step("a", duration=1, needs=["b"])
        s.step("b", duration=2, needs=["a"])
    plan = compile_plan(p, check=False)  # validation would refuse it (the cycle test below)
    t = nbp.simulate(plan)
    # the cycle is broken at the first member: a starts with the block (0 → 1), b needs a (1 → 3)
    assert times(t, "a") == (0.0, 1.0) and times(t, "b") == (1.0, 3.0)


# -- what a need's outcome does to its waiter ----------------------------------------------------
def test_D14_a_waiter_whose_need_failed_is_skipped_naming_the_need():
    t = diamond().simulate(failures={"a": True})
    assert status(t, "a") == "Failed"
    assert status(t, "d") == "Skipped" and status(t, "c") == "Skipped"
    assert row(t, "d")["reason"] == f"its need {S}.a ended Failed (needs, D14)"
    # skipped when the last need ended: c when b did (5 s), d when a did (1 s)
    assert times(t, "c") == (5.0, 5.0) and times(t, "d") == (1.0, 1.0)
    assert status(t, "b") == "Success"  # a failure lets the siblings finish (D9)
    assert status(t, "s") == "Failed" and status(t, "e") == "Skipped"  # R28: the stage failed so far


def test_D14_a_waiter_whose_needs_succeeded_runs_though_an_unrelated_sibling_failed():
    # GitHub's and GitLab's default: a job runs when the jobs it needs succeeded, whatever others did.
    # b (timeout 0.5) expires at 0.5, so the stage has failed before a ends at 1; d needs only a.
    t = diamond(b={"timeout": 0.5}).simulate()
    assert status(t, "b") == "Expired" and status(t, "a") == "Success"
    assert status(t, "d") == "Success" and times(t, "d") == (1.0, 3.0)  # needs a only: 1 + 2
    assert status(t, "c") == "Skipped"  # needs b, which expired (D14)
    assert status(t, "s") == "Expired" and status(t, "e") == "Skipped"  # after the block: R28 as ever


def test_D14_R28_inside_a_waiting_step_group_the_steps_follow_their_stage_a_waiting_stage_is_its_own():
    """The waiter is what its needs decide for; inside it the usual rules hold. x fails at 0.5,
    before a ends at 1: the group g (needs a) starts at 1, but its step, with the default
    condition, sees a stage that has failed (R28); the same layout as stages runs w's step."""
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        s.step("a", duration=1)
        s.step("x", duration=0.5)
        with s.step_group("g", needs=["a"]) as g:
            g.step("g1", duration=2)
            g.step("g2", duration=2, when="All")
    t = p.simulate(failures={"x": True})
    assert status(t, "g") == "Success" and times(t, "g") == (1.0, 3.0)  # started when a ended
    assert status(t, "g1") == "Skipped"  # the stage failed at 0.5 (R28)
    assert status(t, "g2") == "Success" and times(t, "g2") == (1.0, 3.0)  # when="All" runs it

    q = nbp.Pipeline("q")
    with q.parallel():
        with q.stage("a") as s:
            s.step("a1", duration=1)
        with q.stage("x") as s:
            s.step("x1", duration=0.5)
        with q.stage("w", needs=["a"]) as s:
            s.step("w1", duration=2)
    t = q.simulate(failures={"x1": True})
    assert status(t, "x") == "Failed"
    assert status(t, "w1") == "Success" and times(t, "w1") == (1.0, 3.0)  # its own stage did not fail


def test_D14_a_waiter_whose_need_expired_is_skipped_naming_the_need():
    t = diamond(a={"timeout": 0.5}).simulate()
    # a expires at 0 + 0.5; d is skipped then; c when b ends (5 s), still naming a
    assert status(t, "a") == "Expired" and times(t, "a") == (0.0, 0.5)
    assert status(t, "d") == "Skipped" and times(t, "d") == (0.5, 0.5)
    assert row(t, "d")["reason"] == f"its need {S}.a ended Expired (needs, D14)"
    assert status(t, "c") == "Skipped" and times(t, "c") == (5.0, 5.0)


def test_D14_a_waiter_whose_need_was_skipped_is_skipped_and_so_are_its_own_waiters():
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        s.step("a", duration=1, when="Failure")  # nothing failed: skipped (R28)
        s.step("b", duration=2, needs=["a"])
        s.step("c", duration=2, needs=["b"])
        s.step("d", duration=4)
    t = p.simulate()
    assert [status(t, k) for k in "abcd"] == ["Skipped", "Skipped", "Skipped", "Success"]
    assert row(t, "b")["reason"] == f"its need {S}.a ended Skipped (needs, D14)"
    assert row(t, "c")["reason"] == f"its need {S}.b ended Skipped (needs, D14)"
    assert status(t, "s") == "Success"


def test_D14_a_need_that_ends_IgnoreFailed_lets_its_waiter_run():
    t = diamond(a={"failure_strategies": nbp.Ignore()}).simulate(failures={"a": True})
    assert status(t, "a") == "IgnoreFailed" and status(t, "d") == "Success"
    assert times(t, "d") == (1.0, 3.0)


def test_D14_a_waiter_whose_condition_is_All_runs_after_a_failed_need_Failure_runs_only_then():
    p = diamond(d={"when": "All"}, c={"when": "Failure"})
    t = p.simulate(failures={"a": True})
    # d (All) runs once a has ended, failed: 1 → 3; c (Failure): the stage has failed so far: 5 → 7
    assert status(t, "d") == "Success" and times(t, "d") == (1.0, 3.0)
    assert status(t, "c") == "Success" and times(t, "c") == (5.0, 7.0)
    ok = p.simulate()
    assert status(ok, "c") == "Skipped" and "has not failed" in row(ok, "c")["reason"]  # R28, not D14


def test_D14_an_abort_while_a_member_waits_leaves_it_NotStarted():
    p = diamond(a={"failure_strategies": nbp.Abort()})
    t = p.simulate(failures={"a": True})
    # a fails at 1 and aborts the run: b ends Aborted; c (needs b) and d (needs a) never start (E15)
    assert status(t, "a") == "Failed" and status(t, "b") == "Aborted"
    for key in "cd":
        assert status(t, key) == "NotStarted" and row(t, key)["start_s"] != row(t, key)["start_s"]  # NaN


def test_D14_the_waiters_timeout_counts_from_its_own_start_not_while_it_waits():
    t = diamond(c={"timeout": 3}).simulate()
    # c waits 5 s for b, then runs 2 s: under its 3 s timeout
    assert status(t, "c") == "Success" and times(t, "c") == (5.0, 7.0)
    t = diamond(c={"timeout": 1.5}).simulate()
    assert status(t, "c") == "Expired" and times(t, "c") == (5.0, 6.5)  # 5 + 1.5


def test_D14_a_stage_timeout_while_a_member_waits_leaves_it_NotStarted():
    p = diamond()
    p.stages[0].timeout = 4  # b (0 → 5) expires at 4; c still waits for it then
    t = p.simulate()
    assert status(t, "b") == "Expired" and status(t, "c") == "NotStarted"
    assert row(t, "c")["reason"] == "stage timed out"
    assert status(t, "d") == "Success"  # 1 → 3: in time


def test_D14_a_retried_step_group_runs_its_dag_again():
    p = nbp.Pipeline("p", rules="current")
    retried = nbp.RetryStepGroup(1)
    with p.stage("s") as s, s.step_group("g", failure_strategies=retried) as g, g.parallel():
        g.step("a", duration=1)
        g.step("b", duration=2, needs=["a"])
    t = p.simulate(failures={"b": [1]})
    # attempt 1: a 0 → 1, b 1 → 3 fails; attempt 2: a 3 → 4, b 4 → 6
    b = t[t["fqn"].str.endswith(".b")].sort_values("attempt")
    assert b["start_s"].tolist() == [1.0, 4.0] and b["status"].astype(str).tolist() == ["Failed", "Success"]


# -- the checks ----------------------------------------------------------------------------------
def problems(p) -> list[str]:
    with pytest.raises(nbp.DefinitionError) as info:
        p.validate()
    return [str(x) for x in info.value.problems]


def test_D14_needs_outside_a_parallel_block_are_refused_naming_the_node_and_the_fix():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a")
        s.step("b", needs=["a"])
    (text,) = problems(p)
    assert text.startswith(f"{S}.b: [D14] needs=['a'], but the step is not in a parallel block")
    assert "with x.parallel():" in text


def test_D14_each_need_must_be_a_sibling_other_than_itself_named_once():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("x")
        with s.parallel():
            s.step("a")
            s.step("b", needs=["x", "b", "a", "a"])
    texts = problems(p)
    assert texts == [
        f"{S}.b: [D14] needs 'x', which is not a member of its parallel block (members: 'a') — fix: name a "
        "member of the same `with x.parallel():` block, or move the node into the block of the one it needs",
        f"{S}.b: [D14] it needs itself ('b') — fix: remove 'b' from needs",
        f"{S}.b: [D14] needs names 'a' twice — fix: name each member once",
    ]


def test_D14_a_cycle_is_refused_once_naming_it_as_fqns():
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        s.step("a", needs=["c"])
        s.step("b", needs=["a"])
        s.step("c", needs=["b"])
        s.step("d")
    (text,) = problems(p)
    # a needs c, c needs b, b needs a
    assert text.startswith(f"{S}.a: [D14] its needs form a cycle: {S}.a → {S}.c → {S}.b → {S}.a")


def test_D14_needs_that_are_not_identifiers_or_too_many_are_refused():
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        s.step("a", needs=[1])
        s.step("b", needs=["a"] * (nbp.definition.needs.MAX_NEEDS + 1))
    texts = problems(p)
    assert texts[0].startswith(f"{S}.a: [D14] needs=[1] is not a list of identifiers")
    assert texts[1].startswith(f"{S}.b: [D14] needs names 1001 nodes, more than 1000")


def test_D14_a_stage_group_and_step_with_valid_needs_validate():
    p = nbp.Pipeline("p", rules="current")
    with p.parallel():
        with p.stage("a") as s, s.parallel():
            with s.step_group("g") as g:
                g.step("x")
            s.step("y", needs="g")
        with p.stage("b", needs=["a"]) as s:
            s.step("z")
    p.validate()


# -- what Harness YAML cannot say -----------------------------------------------------------------
def test_D14_to_yaml_leaves_needs_out_with_a_warning_naming_the_node():
    p = diamond()
    with pytest.warns(nbp.YamlWarning) as caught:
        text = p.to_yaml()
    (warning,) = [str(w.message) for w in caught]
    assert f"{S}.c: needs=['a', 'b'] (Harness has no needs" in warning
    assert f"{S}.d: needs=['a'] (Harness has no needs" in warning
    assert "needs" not in text
    back = nbp.load_yaml(text)
    assert back.stages[0].items[0].items[2].needs is None  # the block, as Harness runs it


# -- the picture ---------------------------------------------------------------------------------
def test_D14_the_picture_draws_the_needs_edges_between_members_of_the_block():
    source = diamond().render().source
    edges = {line.strip() for line in source.splitlines() if "->" in line}
    # nodes: s = n1, a = n2, b = n3, c = n4, d = n5, e = n6; the block's join n1_p0.
    # a and b start with the block; c needs both (a dot they lead to, n1_p0_n2); d needs a;
    # nothing needs c or d: they lead to the join; a and b do not (c and d wait for them)
    assert edges == {
        "start -> n2", "start -> n3",
        "n2 -> n1_p0_n2", "n3 -> n1_p0_n2", "n1_p0_n2 -> n4",
        "n2 -> n5",
        "n4 -> n1_p0", "n5 -> n1_p0",
        "n1_p0 -> n6", "n6 -> end",
    }  # fmt: skip
    assert "drawn by levels" not in source
    assert outline(diamond()).splitlines()[2:7] == [
        "    parallel",
        "      step a",
        "      step b",
        "      step c (needs a, b)",
        "      step d (needs a)",
    ]


# -- references: a waiter may read what it needs -----------------------------------------------------
def test_D14_a_member_may_read_the_outputs_of_what_it_needs_not_of_other_siblings():
    p = nbp.Pipeline("p", rules="current")
    with p.stage("s") as s, s.parallel():
        s.step("a", run=lambda: {"x": 41}, outputs=["x"])
        with s.step_group("b") as g:
            g.step("inner", run=lambda: {"y": 1}, outputs=["y"])
        s.step(
            "c",
            run=lambda x: None,
            needs=["d"],
            inputs={"x": "<+execution.steps.a.output.outputVariables.x>"},
        )
        s.step("d", run=lambda: None, needs=["a"])  # c needs d, d needs a: c waits for a too
        s.step(
            "e",
            run=lambda y: None,
            needs=["b"],
            inputs={"y": "<+execution.steps.b.steps.inner.output.outputVariables.y>"},
        )
    p.validate()  # R45 allows it: a has ended whenever c starts
    trace = p.run(report=False)
    assert (trace["status"] == "Success").all()
    assert row(trace, "c")["inputs"] == {"x": 41} and row(trace, "e")["inputs"] == {"y": 1}
    p.stages[0].items[0].items[2].needs = None  # c no longer waits for a: they run side by side
    with pytest.raises(nbp.DefinitionError, match=r"steps\.a runs in parallel with the reader"):
        p.validate()
