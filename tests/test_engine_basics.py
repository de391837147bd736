"""The real-time engine's basic behaviour: real threads, wall clock, short sleeps.

Order and overlap are read from the trace itself (each row's start/end), never compared with
fixed wall-clock thresholds: serial items one after another (R4), parallel siblings together
(R5, R12), blocks of a group one after another, parallel stages together (R11); failures
recorded with their error, the rest of the stage skipped (D5), running siblings finishing
(D9, R14); printed output captured per step, thread by thread.
"""

from __future__ import annotations

import sys
import time

import pandas as pd
import pytest
from conftest import failing, overlap, recording, row, sleeper, worker_threads

import notebook_pipelines as nbp
from notebook_pipelines.engine.executors.threads import default_pool

pytestmark = pytest.mark.usefixtures("no_worker_leak")


def steps_of(trace):
    return trace[trace["kind"] == "step"]


# -- order and concurrency ---------------------------------------------------------------------------


def test_R4_serial_items_run_in_order_one_after_another():
    calls: list[str] = []
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        for name in ("a", "b", "c"):
            s.step(name, run=recording(calls, name, 0.02))
    trace = p.run()
    assert calls == ["a", "b", "c"]
    a, b, c = (row(trace, x) for x in "abc")
    assert a["end_s"] <= b["start_s"] and b["end_s"] <= c["start_s"]
    assert list(steps_of(trace)["status"]) == ["Success"] * 3


def test_R5_R12_parallel_siblings_really_overlap_on_different_threads():
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        s.step("a", run=sleeper(0.1))
        s.step("b", run=sleeper(0.1))
    trace = p.run()
    a, b = row(trace, "a"), row(trace, "b")
    assert overlap(a, b)
    assert a["worker"] != b["worker"]
    assert a["worker"].startswith("nbp-worker") and b["worker"].startswith("nbp-worker")


def test_R5_blocks_of_a_group_run_one_after_another():
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.step_group("g") as g:
        with g.parallel():
            g.step("a", run=sleeper(0.05))
            g.step("b", run=sleeper(0.1))
        with g.parallel():
            g.step("c", run=sleeper(0.02))
            g.step("d", run=sleeper(0.02))
        g.step("e", run=sleeper(0.02))
    trace = p.run()
    a, b, c, d, e = (row(trace, x) for x in "abcde")
    assert overlap(a, b) and overlap(c, d)
    first_block_end = max(a["end_s"], b["end_s"])
    assert c["start_s"] >= first_block_end and d["start_s"] >= first_block_end
    assert e["start_s"] >= max(c["end_s"], d["end_s"])
    group = row(trace, "g")
    assert group["start_s"] <= a["start_s"] and group["end_s"] >= e["end_s"]


def test_R11_parallel_stages_overlap():
    p = nbp.Pipeline("p")
    with p.parallel():
        with p.stage("eu") as eu:
            eu.step("apply_eu", run=sleeper(0.1))
        with p.stage("us") as us:
            us.step("apply_us", run=sleeper(0.1))
    with p.stage("after") as after:
        after.step("verify", run=sleeper(0.01))
    trace = p.run()
    eu, us, after = row(trace, "eu"), row(trace, "us"), row(trace, "after")
    assert overlap(eu, us)
    assert overlap(row(trace, "apply_eu"), row(trace, "apply_us"))
    assert after["start_s"] >= max(eu["end_s"], us["end_s"])


def test_containers_span_their_children():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=sleeper(0.02))
        s.step("b", run=sleeper(0.02))
    trace = p.run()
    root, stage = row(trace, "pipeline"), row(trace, "s")
    assert root["start_s"] <= stage["start_s"] <= row(trace, "a")["start_s"]
    assert row(trace, "b")["end_s"] <= stage["end_s"] <= root["end_s"]


# -- bodies, context, outputs -----------------------------------------------------------------------


def test_a_body_may_take_ctx_or_nothing():
    seen: dict = {}

    def with_ctx(ctx) -> None:
        seen.update(
            fqn=ctx.fqn,
            id=ctx.id,
            stage=ctx.stage,
            group=ctx.step_group,
            attempt=ctx.attempt,
            cancelled=ctx.cancelled,
        )

    def without() -> None:
        seen["without"] = True

    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.step_group("g") as g:
        g.step("a", run=with_ctx)
        g.step("b", run=without)
    trace = p.run()
    assert seen == {
        "fqn": "pipeline.stages.s.spec.execution.steps.g.steps.a",
        "id": "a",
        "stage": "s",
        "group": "g",
        "attempt": 1,
        "cancelled": False,
        "without": True,
    }
    assert list(steps_of(trace)["status"]) == ["Success", "Success"]


def test_ctx_attempt_counts_retries():
    attempts: list[int] = []

    def flaky(ctx) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise ConnectionError("first try fails")

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("x", run=flaky, failure_strategies=nbp.Retry(1))
    trace = p.run()
    assert attempts == [1, 2]
    assert list(trace["attempt"][trace["kind"] == "step"]) == [1, 2]
    assert row(trace, "x")["status"] == "Success"


def test_R44_returned_dict_and_ctx_outputs_go_to_the_outputs_column():
    def returns() -> dict:
        return {"version": "1.2.3"}

    def sets(ctx) -> None:
        ctx.outputs["count"] = 3

    def both(ctx) -> dict:
        ctx.outputs["a"] = 1
        return {"b": 2}

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("returns", run=returns)
        s.step("sets", run=sets)
        s.step("both", run=both)
        s.step("nothing", run=sleeper(0.001))
    trace = p.run()
    assert row(trace, "returns")["outputs"] == {"version": "1.2.3"}
    assert row(trace, "sets")["outputs"] == {"count": 3}
    assert row(trace, "both")["outputs"] == {"a": 1, "b": 2}
    assert row(trace, "nothing")["outputs"] is None


def test_a_step_without_a_body_succeeds_at_once():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("placeholder")
    trace = p.run()
    placeholder = row(trace, "placeholder")
    assert placeholder["status"] == "Success" and placeholder["duration_s"] == 0.0


# -- output capture -----------------------------------------------------------------------------------


def chatty(word: str):
    def body() -> None:
        for i in range(3):
            print(f"{word} {i}")
            time.sleep(0.02)
        print(f"{word} warning", file=sys.stderr)

    return body


def test_printed_output_is_captured_per_step_thread_by_thread_and_still_shown(capsys):
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        with s.parallel():
            s.step("left", run=chatty("left"))
            s.step("right", run=chatty("right"))
        s.step("quiet", run=sleeper(0.001))
    trace = p.run()
    left, right = row(trace, "left"), row(trace, "right")
    assert overlap(left, right)  # they printed at the same time, on two threads
    assert left["log"] == "left 0\nleft 1\nleft 2\nleft warning\n"
    assert right["log"] == "right 0\nright 1\nright 2\nright warning\n"
    assert pd.isna(row(trace, "quiet")["log"])  # printed nothing
    shown = capsys.readouterr()
    for word in ("left", "right"):
        assert all(f"{word} {i}\n" in shown.out for i in range(3))
        assert f"{word} warning\n" in shown.err


def test_printed_output_reaches_the_file_descriptor_too(capfd):
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("hello", run=lambda: print("hello from a step"))
    trace = p.run()
    assert row(trace, "hello")["log"] == "hello from a step\n"
    assert "hello from a step" in capfd.readouterr().out


def test_output_printed_by_the_main_thread_during_a_run_is_not_in_any_log(capsys):
    class Printer:
        def node_started(self, node, attempt, t) -> None:
            print(f"listener saw {node.id}")

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=lambda: print("from a"))
    trace = p.run(listeners=[Printer()])
    assert row(trace, "a")["log"] == "from a\n"
    assert "listener saw a" in capsys.readouterr().out


def test_R59_output_printed_before_a_timeout_is_kept():
    def slow(ctx) -> None:
        print("about to wait")
        ctx.sleep(2.0)

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("slow", run=slow, timeout=0.1)
    trace = p.run(report=False)
    slow_row = row(trace, "slow")
    assert (slow_row["status"], slow_row["error_type"]) == ("Expired", "Timeout")
    assert slow_row["log"] == "about to wait\n"
    assert slow_row["worker"].startswith("nbp-worker")


# -- failures -------------------------------------------------------------------------------------------


def failing_pipeline() -> nbp.Pipeline:
    p = nbp.Pipeline("p")
    with p.stage("build") as s:
        s.step("first", run=sleeper(0.01))
        with s.parallel():
            s.step("boom", run=failing("bad value"))
            s.step("sibling", run=sleeper(0.1))
        s.step("after", run=sleeper(0.01))
        with s.step_group("g") as g:
            g.step("in_group", run=sleeper(0.01))
    with p.stage("deploy") as d:
        d.step("apply", run=sleeper(0.01))
    return p


def test_a_failing_step_records_status_error_type_error_and_traceback():
    trace = failing_pipeline().run(report=False)
    boom = row(trace, "boom")
    assert boom["status"] == "Failed"
    assert boom["error_type"] == "Unknown"
    assert boom["error"] == "ValueError: bad value"
    assert boom["log"].startswith("Traceback (most recent call last):")
    assert "ValueError: bad value" in boom["log"] and "in body" in boom["log"]
    assert boom["action"] == "MarkAsFailure"


def test_D5_steps_after_a_failure_are_skipped_with_a_reason_and_later_stages_too():
    trace = failing_pipeline().run(report=False)
    for ident in ("after", "g", "in_group", "deploy", "apply"):
        skipped = row(trace, ident)
        assert skipped["status"] == "Skipped", ident
        assert skipped["attempt"] == 0 and skipped["duration_s"] == 0.0
        assert isinstance(skipped["reason"], str) and skipped["reason"], ident
    assert "failed" in row(trace, "after")["reason"]
    assert "failed" in row(trace, "deploy")["reason"]
    assert row(trace, "in_group")["reason"] == "parent skipped"
    assert row(trace, "apply")["reason"] == "parent skipped"
    assert row(trace, "first")["status"] == "Success"
    assert row(trace, "build")["status"] == "Failed"
    assert row(trace, "pipeline")["status"] == "Failed"


def test_D9_R14_a_running_parallel_sibling_finishes_successfully():
    trace = failing_pipeline().run(report=False)
    boom, sibling = row(trace, "boom"), row(trace, "sibling")
    assert sibling["status"] == "Success"
    assert overlap(boom, sibling) and sibling["end_s"] > boom["end_s"]
    assert row(trace, "after")["start_s"] >= sibling["end_s"]  # the next item waits for the block


@pytest.mark.parametrize(
    ("exc", "error_type", "error"),
    [
        (nbp.StepError("x", error_type="Connectivity"), "Connectivity", "x"),
        (ConnectionError("refused"), "Connectivity", "ConnectionError: refused"),
        (TimeoutError("slow"), "Timeout", "TimeoutError: slow"),
        (KeyError("k"), "Unknown", "KeyError: 'k'"),
    ],
)
def test_R16_the_exception_chooses_the_error_type(exc, error_type, error):
    def body() -> None:
        raise exc

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("x", run=body)
    trace = p.run(report=False)
    x = row(trace, "x")
    assert (x["status"], x["error_type"], x["error"]) == ("Failed", error_type, error)
    # an unexpected exception leaves its traceback in the log; a chosen StepError does not
    has_traceback = isinstance(x["log"], str) and "Traceback" in x["log"]
    assert has_traceback == (not isinstance(exc, nbp.StepError))


def test_a_failed_run_returns_its_trace_and_prints_a_summary_to_stderr(capsys):
    trace = failing_pipeline().run(run_id="failing", progress=False)  # the summary alone
    assert row(trace, "pipeline")["status"] == "Failed"
    assert nbp.last_trace() is trace
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines[0].startswith("pipeline 'p' ended Failed after ")
    assert lines[1:] == [
        "  ✗ pipeline.stages.build.spec.execution.steps.boom — Failed (Unknown): ValueError: bad value"
    ]
    assert "Traceback" not in err  # the body's exception never escapes as a bare traceback


def test_report_false_prints_nothing(capsys):
    failing_pipeline().run(report=False, progress=False)
    assert capsys.readouterr().err == ""


def test_a_successful_run_prints_no_summary(capsys):
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("x", run=sleeper(0.001))
    p.run(progress=False)  # the text progress is a view of its own (tests/test_widgets.py)
    assert capsys.readouterr().err == ""


def test_check_true_raises_run_failed_carrying_the_trace():
    with pytest.raises(nbp.RunFailed) as info:
        failing_pipeline().run(check=True)
    err = info.value
    assert isinstance(err, nbp.RunError) and isinstance(err, nbp.PipelineError)
    assert row(err.trace, "boom")["status"] == "Failed"
    assert nbp.last_trace() is err.trace
    assert "ended Failed" in str(err) and "boom" in str(err)


def test_check_true_on_success_returns_the_trace():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("x", run=sleeper(0.001))
    trace = p.run(check=True)
    assert row(trace, "pipeline")["status"] == "Success"


def test_last_trace_is_the_trace_of_the_last_run():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("x", run=sleeper(0.001))
    first = p.run()
    assert nbp.last_trace() is first
    second = nbp.run(p)
    assert nbp.last_trace() is second and second is not first


def test_no_worker_is_busy_after_run_returns_and_the_workers_stay_warm():
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        for i in range(4):
            s.step(f"w{i}", run=sleeper(0.03))
    trace = p.run()
    assert default_pool().busy == 0
    assert steps_of(trace)["worker"].nunique() == 4
    assert set(steps_of(trace)["worker"]) <= {t.name for t in worker_threads()}  # kept for the next run


def test_no_worker_is_busy_after_a_failed_run_returns():
    failing_pipeline().run(report=False)
    assert default_pool().busy == 0


def test_stdout_and_stderr_are_restored_after_a_run():
    before = sys.stdout, sys.stderr
    failing_pipeline().run(report=False)
    assert sys.stdout is before[0] and sys.stderr is before[1]


def test_parallel_code_text_bodies_each_see_their_own_ctx_in_a_shared_namespace():
    """Code-text bodies (cell code) share the user namespace; ``ctx`` there is per thread."""
    namespace: dict = {"time": time}
    code = "me = ctx.id\ntime.sleep(0.05)\nseen = ctx.id\nprint(seen)\n"
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        s.step("a", run=code)
        s.step("b", run=code)
    trace = p.run(namespace=namespace)
    logs = dict(zip(trace["step"].dropna(), trace.loc[trace.kind == "step", "log"]))
    assert logs == {"a": "a\n", "b": "b\n"}
    assert "ctx" in namespace and "no step running" in repr(namespace["ctx"])


def test_the_failure_summary_names_a_group_whose_condition_failed():
    """Not only steps: a container that failed on its own (its condition raised) is listed."""

    def broken(ctx: nbp.StepContext) -> bool:
        raise ZeroDivisionError("division by zero")

    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.step_group("g", when=broken) as g:
        g.step("a")
    with pytest.raises(nbp.RunFailed) as info:
        p.run(check=True)
    lines = str(info.value).splitlines()
    assert lines[0].startswith("pipeline 'p' ended Failed after ") and "e-" not in lines[0]
    assert lines[1:] == [
        "  ✗ pipeline.stages.s.spec.execution.steps.g — Failed (Unknown): "
        "the condition raised ZeroDivisionError: division by zero"
    ]


def test_a_listener_that_raises_is_dropped_with_a_warning_and_the_run_keeps_its_trace():
    class Broken:
        def node_finished(self, node, row):
            raise ValueError("listener bug")

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=sleeper(0.01))
        s.step("b", run=sleeper(0.01))
    with pytest.warns(RuntimeWarning, match="listener bug"):
        trace = p.run(listeners=[Broken()])
    assert set(trace["status"].astype(str)) == {"Success"} and len(trace) == 4
    assert nbp.last_trace() is trace


def test_run_takes_a_compiled_plan_and_variables_stay_per_body():
    """A Plan runs as its pipeline does; a body changing ctx.variables does not leak into another."""
    seen = []

    def writer(ctx: nbp.StepContext) -> None:
        ctx.variables["env"] = "changed"

    def reader(ctx: nbp.StepContext) -> None:
        seen.append(dict(ctx.variables))

    p = nbp.Pipeline("p", variables={"env": "prod"})
    with p.stage("s", variables={"region": "eu"}) as s:
        s.step("w", run=writer)
        s.step("r", run=reader, variables={"mine": 1})
    trace = nbp.run(p.plan())
    assert set(trace["status"].astype(str)) == {"Success"}
    assert seen == [{"env": "prod", "region": "eu", "mine": 1}]


def test_steps_without_variables_of_their_own_share_their_parents_merged_variables():
    """Merged once per node, copied once per body: a step with no variables of its own adds no
    merged dict of its own (its parent's serves), and each body still gets a fresh copy."""
    from notebook_pipelines.engine.clocks import RealClock
    from notebook_pipelines.engine.executors.threads import ThreadExecutor
    from notebook_pipelines.engine.scheduler import Scheduler

    copies = []

    def writer(ctx: nbp.StepContext) -> None:
        copies.append(ctx.variables)
        ctx.variables["env"] = "changed"

    p = nbp.Pipeline("p", variables={"env": "prod"})
    with p.stage("s", variables={"region": "eu"}) as s:
        for i in range(3):
            s.step(f"a{i}", run=writer)
        s.step("own", run=writer, variables={"mine": 1})
    plan = p.plan()
    scheduler = Scheduler(plan, ThreadExecutor(), RealClock())
    assert scheduler.execute() == "Success"
    merged = {n.id: scheduler._merged_variables[n.index] for n in plan.nodes if n.kind == "step"}
    stage = next(n for n in plan.nodes if n.kind == "stage")
    assert merged["a0"] is merged["a1"] is merged["a2"] is scheduler._merged_variables[stage.index]
    assert merged["a0"] == {"env": "prod", "region": "eu"}  # no body's change reached it
    assert merged["own"] == {"env": "prod", "region": "eu", "mine": 1}
    assert len({id(c) for c in copies}) == 4  # a fresh copy for each body


def test_a_body_returning_something_other_than_a_dict_is_warned_about_and_ignored():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("answer", run=lambda: 42)
        s.step("outputs", run=lambda: {"x": 1})
    with pytest.warns(RuntimeWarning, match=r"steps\.answer: the body returned a int, which is ignored"):
        trace = p.run()
    assert row(trace, "answer")["status"] == "Success" and row(trace, "answer")["outputs"] is None
    assert row(trace, "outputs")["outputs"] == {"x": 1}


def test_a_wide_block_of_bodies_returning_values_warns_five_times_not_once_per_step():
    import warnings

    from notebook_pipelines.engine.executors.base import MAX_IGNORED_RETURN_WARNINGS

    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        for i in range(40):
            s.step(f"x{i}", run=lambda: 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trace = p.run()
    shown = [str(w.message) for w in caught if "which is ignored" in str(w.message)]
    assert len(shown) == MAX_IGNORED_RETURN_WARNINGS == 5  # 40 steps, 5 warnings
    assert "the last such warning of this run" in shown[-1]
    assert (trace["status"] == "Success").all()
    with warnings.catch_warnings(record=True) as again:  # the count is per run
        warnings.simplefilter("always")
        p.run()
    assert len([w for w in again if "which is ignored" in str(w.message)]) == 5


def test_a_body_that_returns_an_unrun_coroutine_or_generator_fails_instead_of_succeeding():
    async def deploy() -> None:
        ran.append("deploy")

    def produce():
        ran.append("produce")
        yield 1

    ran: list[str] = []
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        s.step("coroutine", run=lambda: deploy())  # a plain function: validation cannot see it
        s.step("generator", run=lambda: produce())
    trace = p.run(report=False)
    for step in ("coroutine", "generator"):
        assert row(trace, step)["status"] == "Failed"
        assert (
            "without running it" in row(trace, step)["error"] and "asyncio.run" in row(trace, step)["error"]
        )
    assert ran == []


def test_an_object_that_is_not_an_executor_is_refused_before_anything_runs():
    ran: list[str] = []
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=lambda: ran.append("a"))

    class Half:
        name = "half"

        def submit(self, job) -> None: ...

    with pytest.raises(
        TypeError, match="Half is not an executor: it lacks clock, runs_handlers, open, cancel, close"
    ):
        p.run(executor=Half())
    assert ran == []


def test_the_summary_of_an_aborted_step_names_no_error_type_it_does_not_have():
    from notebook_pipelines.engine.running import failure_lines

    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        s.step("long", run=lambda ctx: ctx.sleep(5))
        s.step("boom", run=failing(after=0.05), failure_strategies=nbp.Abort())
    lines = failure_lines(p.run(report=False))
    aborted = [line for line in lines if "steps.long" in line]
    assert aborted == [
        "  ✗ pipeline.stages.s.spec.execution.steps.long — Aborted: aborted by the failure "
        "strategy of pipeline.stages.s.spec.execution.steps.boom"
    ]
