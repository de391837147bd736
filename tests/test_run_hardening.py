"""What a step body (or a callback) can do to a real run, and what the run does about it.

Each misbehaviour must end fast with a complete trace, a clear status and error, no worker left
busy, and nothing printed without bound: an exception that cannot be shown, bytes written to
``sys.stdout``, a body running its own pipeline, a 50 MB message, ``os.fork()``, a body or a
script printing without end, an ``on_intervention`` callback that blocks or raises
``SystemExit``. A run that would hang or grow without bound runs in a guard thread joined with a
timeout, or in a subprocess with a deadline, so a regression fails instead of stopping the suite
(the timeouts are hang guards, not timing checks).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import conftest
import pytest
from conftest import REPO, row, status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import notebook_pipelines as nbp
from notebook_pipelines.engine.executors.base import ERROR_LIMIT
from notebook_pipelines.engine.executors.capture import LOG_HEAD, LOG_TAIL, StepLog
from notebook_pipelines.engine.executors.threads import ThreadExecutor, default_pool
from notebook_pipelines.engine.running import MAX_NESTED_RUNS, MAX_SUMMARY_LINES

GUARD = 30.0  # seconds: a hang guard, never reached when the code is right


def finishes(fn: Callable[[], Any], guard: float = GUARD) -> Any:
    """conftest's hang guard, with this file's longer default."""
    return conftest.finishes(fn, guard)


def in_subprocess(code: str, deadline: float = 60.0) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter using this worktree's package; killed at ``deadline``
    (a ``TimeoutExpired`` fails the test)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=deadline,
        env=env,
        cwd=REPO,
    )


def one_stage(*steps: nbp.Step, pid: str = "p") -> nbp.Pipeline:
    return nbp.Pipeline(pid, stages=[nbp.Stage("s", items=list(steps))])


@contextmanager
def stdout_to_devnull():
    """What bodies print is passed on to a sink, not kept by pytest's capture (tens of MB)."""
    saved = sys.stdout
    with open(os.devnull, "w") as sink:
        sys.stdout = sink
        try:
            yield
        finally:
            sys.stdout = saved


def peak_memory(fn: Callable[[], Any]) -> tuple[Any, int]:
    """``fn()`` and the peak of memory traced while it ran (bytes). A small run first loads
    what any run loads (pandas, the trace builder…), so that only ``fn``'s own memory counts."""
    finishes(lambda: one_stage(nbp.Step("warm", run=lambda: print("warm"))).run(progress=False, report=False))
    tracemalloc.start()
    try:
        value = finishes(fn)
        return value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- issue 24.1: an exception that cannot be shown ------------------------------------------------
class Unshowable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


class UnshowableStepError(nbp.StepError):
    def __str__(self) -> str:
        raise ValueError("no text either")


class NotText(Exception):
    def __str__(self) -> Any:
        return 42  # str() raises TypeError


@pytest.mark.parametrize(
    ("exc", "error_type", "name"),
    [
        (Unshowable(), "Unknown", "Unshowable"),
        (UnshowableStepError("x", error_type="Connectivity"), "Connectivity", "UnshowableStepError"),
        (NotText(), "Unknown", "NotText"),
    ],
)
def test_R16_an_exception_whose_str_raises_fails_the_step_with_a_placeholder(
    exc: BaseException, error_type: str, name: str, no_worker_leak: None
):
    def body() -> None:
        raise exc

    p = one_stage(nbp.Step("a", run=body, timeout="10s"), nbp.Step("b", run=lambda: None, when="All"))
    trace = finishes(lambda: p.run(progress=False, report=False))
    a = row(trace, "a")
    assert (a["status"], a["error_type"]) == ("Failed", error_type)  # not Expired at the timeout
    assert f"the {name} could not be shown" in a["error"]
    assert status(trace, "b") == "Success"  # the worker lived on


def test_R16_a_step_error_with_an_error_type_that_is_not_text_is_unknown():
    class Odd(nbp.StepError):
        @property
        def error_type(self) -> str:
            raise AttributeError("gone")

        @error_type.setter
        def error_type(self, value: str) -> None:
            pass

    def body() -> None:
        raise Odd("odd")

    trace = finishes(lambda: one_stage(nbp.Step("a", run=body)).run(progress=False, report=False))
    assert (row(trace, "a")["status"], row(trace, "a")["error_type"], row(trace, "a")["error"]) == (
        "Failed",
        "Unknown",
        "odd",
    )


# -- issue 24.2: writes that are not text ---------------------------------------------------------
def test_a_body_writing_bytes_and_numbers_to_stdout_and_stderr_keeps_its_log(no_worker_leak: None):
    refused: list[str] = []

    def body() -> None:
        for stream, value in ((sys.stdout, b"bytes"), (sys.stderr, 42), (sys.stdout, None)):
            try:
                stream.write(value)
            except TypeError as err:  # what a stream says without capture, too
                refused.append(type(err).__name__)
        sys.stdout.writelines(["one\n", "two\n"])
        print("after")

    p = one_stage(nbp.Step("a", run=body, timeout="10s"))
    trace = finishes(lambda: p.run(progress=False, report=False))
    assert row(trace, "a")["status"] == "Success"
    assert row(trace, "a")["log"] == "one\ntwo\nafter\n"
    assert refused == ["TypeError"] * 3


def test_a_body_that_wrote_bytes_and_timed_out_keeps_its_trace_and_partial_log(no_worker_leak: None):
    body = conftest.writes_bytes("before", 30)
    p = one_stage(nbp.Step("a", run=body, timeout="1s"))  # long enough to print first, however busy
    trace = finishes(lambda: p.run(progress=False, report=False))
    assert nbp.last_trace() is trace
    assert (row(trace, "a")["status"], row(trace, "a")["log"]) == ("Expired", "before\n")


def test_a_str_subclass_written_by_a_body_is_logged_as_its_text():
    class Sneaky(str):
        def __len__(self) -> int:
            raise RuntimeError("no length")

    log = StepLog.sized(head=4, tail=4)()
    log.append(Sneaky("abcdefghijkl"))  # 12 characters: 4 first, 4 dropped, 4 last
    assert (log.dropped, log.text().startswith("abcd\n["), log.text().endswith("]\nijkl")) == (4, True, True)


# -- issue 24.3: a body running its own pipeline ---------------------------------------------------
NESTED = """
    import json, threading, warnings
    import notebook_pipelines as nbp
    warnings.simplefilter("ignore")
    results = {}

    def self_run():
        return {"n": len(p.run(progress=False, report=False))}

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("again", run=self_run)
    t = p.run(progress=False, report=False)
    results["self"] = [str(t.status.iloc[-1]), str(t.error_type.iloc[-1]), str(t.error.iloc[-1])]

    def start_self():
        p2.start(progress=False)

    p2 = nbp.Pipeline("p2")
    with p2.stage("s") as s:
        s.step("again", run=start_self)
    t = p2.run(progress=False, report=False)
    results["start"] = [str(t.status.iloc[-1]), str(t.error.iloc[-1])]

    # p3 runs q in a step, q runs p3 in a step: refused at q's step (p3 is running above it)
    def run_q():
        inner = q.run(progress=False, report=False)
        return {"inner": [str(x) for x in inner.status], "error": str(inner.error.iloc[-1])}

    def run_p3():
        p3.run(progress=False, report=False)

    p3 = nbp.Pipeline("p3")
    with p3.stage("s") as s:
        s.step("call_q", run=run_q)
    q = nbp.Pipeline("q")
    with q.stage("s") as s:
        s.step("call_p3", run=run_p3)
    t = p3.run(progress=False, report=False)
    results["mutual"] = t.outputs.iloc[-1]

    # a new pipeline at each level: refused at the depth limit
    depth = []

    def make(n):
        def body():
            depth.append(n)
            make(n + 1).run(progress=False, report=False, check=True)
        x = nbp.Pipeline(f"level{n}")
        with x.stage("s") as s:
            s.step("deeper", run=body)
        return x

    t = make(0).run(progress=False, report=False)
    results["deep"] = [max(depth), str(t.status.iloc[0])]
    results["threads"] = threading.active_count()
    print(json.dumps(results))
"""


def test_a_body_running_its_own_pipeline_is_refused_with_a_clear_error():
    done = in_subprocess(NESTED, deadline=90)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.splitlines()[-1])
    status_, error_type, error = results["self"]
    assert (status_, error_type) == ("Failed", "Unknown")
    assert error.startswith("NestedRunError: pipeline 'p' is already running in this call chain: 'p' (step ")
    assert "a step cannot run the pipeline it belongs to" in error
    assert results["start"][0] == "Failed" and "pipeline 'p2' is already running" in results["start"][1]
    mutual = results["mutual"]
    assert mutual["inner"][-1] == "Failed"
    assert "'p3' (step pipeline.stages.s.spec.execution.steps.call_q) → 'q' (step " in mutual["error"]
    assert results["deep"] == [MAX_NESTED_RUNS - 1, "Failed"]  # the bodies of levels 0 … MAX - 1 ran
    assert results["threads"] < 4 * MAX_NESTED_RUNS


def test_a_listener_running_the_pipeline_it_listens_to_is_refused_and_dropped():
    class Rerun:
        def node_started(self, node: Any, attempt: int, t: float) -> None:
            p.run(progress=False, report=False)  # on the run's own thread

    p = one_stage(nbp.Step("a", run=lambda: None))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trace = finishes(lambda: p.run(progress=False, report=False, listeners=[Rerun()]))
    assert status(trace, "a") == "Success" and nbp.last_trace() is trace
    (warned,) = [str(w.message) for w in caught]
    assert "raised NestedRunError: pipeline 'p' is already running in this call chain" in warned


# -- issue 24.4: every message printed is bounded -------------------------------------------------
def test_a_50_mb_exception_message_is_not_printed_whole(capsys: pytest.CaptureFixture, no_worker_leak: None):
    def body() -> None:
        raise ValueError("x" * 50_000_000)

    trace = finishes(lambda: one_stage(nbp.Step("a", run=body)).run(progress=False))
    err = capsys.readouterr().err
    assert "— Failed (Unknown): ValueError: xxx" in err
    assert len(err) < 2_000  # the summary: two lines of at most ~400 characters each
    error, log = row(trace, "a")["error"], row(trace, "a")["log"]
    # the trace keeps the head and tail of the message: ERROR_LIMIT characters and the marker
    assert len(error) < ERROR_LIMIT + 100 and "characters of this message dropped" in error
    assert len(log) < LOG_HEAD + LOG_TAIL + 300 and "of this step's output dropped here" in log
    with pytest.raises(nbp.RunFailed) as failed:
        finishes(lambda: one_stage(nbp.Step("a", run=body)).run(progress=False, check=True))
    assert len(str(failed.value)) < 2_000


def test_an_exception_class_with_a_huge_name_gives_a_bounded_error(no_worker_leak: None):
    huge = type("E" * 100_000, (Exception,), {})

    def body() -> None:
        raise huge("short")

    trace = finishes(lambda: one_stage(nbp.Step("a", run=body)).run(progress=False, report=False))
    error = row(trace, "a")["error"]
    assert len(error) < 200 and error.startswith("EEE") and error.endswith(": short")


def test_the_warning_about_bodies_left_behind_names_at_most_ten():
    release = threading.Event()
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        for i in range(15):
            # blocked in C: the stop signal lands only when it returns; 500 ms: every body has
            # started by then, however busy the machine (one not started is not left behind)
            s.step(f"stuck{i}", run=lambda: release.wait(10), timeout="500ms")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            finishes(lambda: p.run(progress=False, report=False, executor=ThreadExecutor(stop_grace=0.01)))
    finally:
        release.set()
    (warned,) = [str(w.message) for w in caught if "left behind" in str(w.message)]
    assert warned.startswith("15 step(s) still running") and "steps.stuck" in warned
    assert warned.count("steps.stuck") == 10 and " and 5 more;" in warned


def test_the_summary_lists_a_bounded_number_of_failures(capsys: pytest.CaptureFixture):
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        for i in range(50):
            s.step(f"f{i}", run=lambda: 1 / 0)
    finishes(lambda: p.run(progress=False))
    lines = capsys.readouterr().err.splitlines()
    # 50 steps failed: the headline, MAX_SUMMARY_LINES of them, a line for the other 50 - 30 = 20
    assert lines[0].startswith("pipeline 'p' ended Failed")
    assert len(lines) == 1 + MAX_SUMMARY_LINES + 1
    assert lines[-1] == f"  … and {50 - MAX_SUMMARY_LINES} more (the trace has them all)"


def test_a_listener_raising_a_huge_or_unshowable_error_is_reported_in_a_bounded_warning():
    class Loud:
        def node_started(self, node: Any, attempt: int, t: float) -> None:
            raise ValueError("y" * 1_000_000)

    class Mute:
        def node_started(self, node: Any, attempt: int, t: float) -> None:
            raise Unshowable()

    p = one_stage(nbp.Step("a", run=lambda: None))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trace = finishes(lambda: p.run(progress=False, listeners=[Loud(), Mute()]))
    assert status(trace, "a") == "Success"
    texts = [str(w.message) for w in caught]
    assert len(texts) == 2 and all(len(t) < 1_000 for t in texts)
    assert "could not be shown" in texts[1]


# -- issue 24.5: os.fork() in a body ---------------------------------------------------------------
FORK = """
    import json, os, time, multiprocessing
    import notebook_pipelines as nbp

    def forks():
        pid = os.fork()
        if pid == 0:
            return {"in": "child"}  # returns into the library in the child
        return {"child": pid}

    def exits():
        pid = os.fork()
        if pid == 0:
            raise SystemExit(7)  # ends the child with 7, quietly
        return {"child": pid}

    def pool():
        with multiprocessing.get_context("fork").Pool(2) as workers:
            return {"squares": workers.map(abs, [-1, -2, -3])}

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("forks", run=forks)
        s.step("exits", run=exits)
        s.step("pool", run=pool)
    t = p.run(progress=False, report=False)

    def exit_code(child):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pid, status = os.waitpid(child, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.01)

    codes = [exit_code(t.outputs.iloc[i]["child"]) for i in (2, 3)]
    print(json.dumps({"statuses": [str(s) for s in t.status], "children": codes,
                      "squares": t.outputs.iloc[-1]["squares"], "pid": os.getpid()}))
"""


def test_a_forked_child_of_a_body_exits_when_the_body_returns_and_the_parent_goes_on():
    begin = time.monotonic()
    done = in_subprocess(FORK, deadline=40)  # the child held the pipes 60 s (its idle worker)
    took = time.monotonic() - begin
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("{")]  # the child printed nothing
    result = json.loads(line)
    assert result["statuses"] == ["Success"] * 5
    # both children exited promptly: 0, the body succeeded in the child; 7, its sys.exit(7)
    assert result["children"] == [0, 7]
    assert result["squares"] == [1, 2, 3]  # multiprocessing's own forks are untouched
    assert "the step pipeline.stages.s.spec.execution.steps.forks forked this process" in done.stderr
    assert "steps.exits" not in done.stderr
    assert "End a forked child with os._exit()" in done.stderr
    assert took < 30


# -- issue 31.2: bounded step logs ------------------------------------------------------------------
def test_step_log_keeps_its_head_and_tail_and_says_what_was_dropped():
    log = StepLog.sized(head=6, tail=6)()
    for i in range(10):
        log.append(f"{i}\n")  # 20 characters, 10 line breaks
    # kept: "0\n1\n2\n" (6) … "7\n8\n9\n" (6); dropped: "3\n4\n5\n6\n" (8 characters, 4 lines)
    assert (log.dropped, log.dropped_lines, len(log)) == (8, 4, 12)
    text = log.text()
    assert text.startswith("0\n1\n2\n[notebook-pipelines: 8 characters (4 lines) of this step's output")
    assert text.endswith("the first 6 and the last 6 characters]\n7\n8\n9\n")
    big = StepLog.sized(head=3, tail=3)()
    big.append("a" * 10 + "b" * 10)  # one write larger than both
    assert (big.dropped, big.text()[:3], big.text()[-3:]) == (14, "aaa", "bbb")


def test_a_printing_body_keeps_a_bounded_log_and_bounded_memory_while_it_runs(no_worker_leak: None):
    seen: list[Any] = []

    class Watch:
        def node_finished(self, node: Any, row: Any) -> None:
            if node.id == "chatty":
                seen.append(row.log)

    def chatty(ctx: nbp.StepContext) -> None:
        n = 0
        while not ctx.cancelled:
            # a new text each time, as real output is; one write per line (print() writes the
            # line break apart, and the timeout's snapshot of the log could fall between the two)
            sys.stdout.write(f"{n:09d}" + "y" * 90 + "\n")
            n += 1

    executor = ThreadExecutor(log_limit=20_000)
    p = one_stage(nbp.Step("chatty", run=chatty, timeout="1s"))
    with stdout_to_devnull():
        trace, peak = peak_memory(
            lambda: p.run(progress=False, report=False, executor=executor, listeners=[Watch()])
        )
    log = row(trace, "chatty")["log"]
    assert row(trace, "chatty")["status"] == "Expired"
    assert log.startswith("000000000" + "y" * 90 + "\n") and log.endswith("y" * 90 + "\n")
    assert len(log) < 20_000 + 300 and "lines) of this step's output dropped here" in log
    assert seen == [log]  # what a view is given (RunState, the live view) is the same bounded log
    assert peak < 20_000_000  # the old list of every line printed reached hundreds of MB


def test_R59_the_timeout_of_a_body_printing_without_a_break_fires_on_time(no_worker_leak: None):
    """Each write lets the interpreter go for a moment and the writer takes it straight back,
    so the run's loop (whose timer is due) never got it but by luck: a 1 s timeout on such a
    body fired after 2–36 s. A body printing without a break now pauses 0.2 ms every 10 ms."""

    def chatty(ctx: nbp.StepContext) -> None:
        n = 0
        while not ctx.cancelled:
            sys.stdout.write(f"{n:09d}" + "y" * 90 + "\n")
            n += 1

    p = one_stage(nbp.Step("chatty", run=chatty, timeout="0.5s"))
    with stdout_to_devnull():
        for _ in range(3):
            started = time.perf_counter()
            trace = finishes(lambda: p.run(progress=False, report=False))
            took = time.perf_counter() - started
            assert row(trace, "chatty")["status"] == "Expired"
            assert took < 0.5 + 0.5, took  # the timeout, and at most half a second more


def test_a_shell_script_running_yes_under_a_timeout_keeps_a_bounded_log(no_worker_leak: None):
    step = nbp.Step(
        "yes",
        type="ShellScript",
        spec={"shell": "Bash", "source": {"type": "Inline", "spec": {"script": "yes"}}},
        timeout="2s",
    )
    with stdout_to_devnull():
        trace, peak = peak_memory(lambda: one_stage(step).run(progress=False, report=False))
    log = row(trace, "yes")["log"]
    assert row(trace, "yes")["status"] == "Expired"
    assert log.startswith("y\ny\n") and log.endswith("y\ny\n")
    assert len(log) < LOG_HEAD + LOG_TAIL + 300 and "of this step's output dropped here" in log
    assert peak < 10_000_000  # the list of every line read: tens of MB in 2 s


def test_a_shell_script_printing_one_endless_line_is_read_in_bounded_pieces(no_worker_leak: None):
    script = "head -c 30000000 /dev/zero | tr '\\0' x; echo; echo done"  # 30 MB on one line
    step = nbp.Step(
        "wide",
        type="ShellScript",
        spec={"shell": "Bash", "source": {"type": "Inline", "spec": {"script": script}}},
    )
    with stdout_to_devnull():
        trace, peak = peak_memory(lambda: one_stage(step).run(progress=False, report=False))
    log = row(trace, "wide")["log"]
    assert row(trace, "wide")["status"] == "Success"
    assert log.startswith("xxx") and log.endswith("x\ndone\n")
    # printed: 30,000,000 x, "\n", "done\n" (30,000,006); kept: the head and the tail, whose
    # last 50,000 characters hold both line breaks, so no line break is among those dropped
    assert f"{30_000_006 - LOG_HEAD - LOG_TAIL:,} characters (0 lines)" in log
    assert peak < 10_000_000  # the line was read whole before (30 MB, then copies)


# -- issue 31.4: on_intervention runs off the loop ------------------------------------------------
def test_R20_D12_a_blocking_on_intervention_callback_does_not_delay_other_timeouts(no_worker_leak: None):
    release = threading.Event()

    def on_intervention(request: Any) -> None:
        release.wait(20)  # blocks; another step's timeout must still fire on time

    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        s.step(
            "ask",
            run=lambda: 1 / 0,
            failure_strategies=nbp.ManualIntervention(timeout="2s", on_timeout=nbp.Ignore()),
        )
        s.step("slow", run=lambda ctx: ctx.sleep(30), timeout="300ms")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trace = finishes(lambda: p.run(progress=False, report=False, on_intervention=on_intervention))
    finally:
        release.set()
    slow, ask = row(trace, "slow"), row(trace, "ask")
    assert slow["status"] == "Expired" and ask["status"] == "IgnoreFailed"
    # the slow step expired at its own timeout, before the intervention's 2 s ran out (while
    # the callback blocked the loop, it expired only when the callback returned: 20 s)
    assert slow["end_s"] - slow["start_s"] < 2.0
    assert any("on_intervention is still running" in str(w.message) for w in caught)


@pytest.mark.parametrize(
    "exc", [SystemExit(3), KeyboardInterrupt(), ValueError("bad"), nbp.PipelineError("ours")]
)
def test_R20_D12_an_on_intervention_callback_raising_does_not_escape_the_run(exc: BaseException):
    def on_intervention(request: Any) -> None:
        raise exc

    p = one_stage(
        nbp.Step(
            "a",
            run=lambda: 1 / 0,
            failure_strategies=nbp.ManualIntervention(timeout="200ms", on_timeout=nbp.Ignore()),
        ),
        nbp.Step("b", run=lambda: None),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trace = finishes(lambda: p.run(progress=False, report=False, on_intervention=on_intervention))
    assert nbp.last_trace() is trace
    assert (status(trace, "a"), status(trace, "b")) == ("IgnoreFailed", "Success")
    (warned,) = [str(w.message) for w in caught]
    assert f"raised {type(exc).__name__} for pipeline.stages.s.spec.execution.steps.a" in warned
    assert "the intervention waits its timeout (0.2s)" in warned


def test_a_listener_raising_system_exit_is_dropped_and_the_run_goes_on():
    class Quits:
        def node_finished(self, node: Any, row: Any) -> None:
            raise SystemExit(1)

    p = one_stage(nbp.Step("a", run=lambda: None), nbp.Step("b", run=lambda: None))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trace = finishes(lambda: p.run(progress=False, report=False, listeners=[Quits()]))
    assert status(trace, "b") == "Success"
    assert ["raised SystemExit" in str(w.message) for w in caught] == [True]


# -- issue 24, "done when": random misbehaving bodies (hypothesis) ---------------------------------
class BadLength(str):
    def __len__(self) -> int:
        raise RuntimeError("len")


def _raise(exc: BaseException) -> Callable[[], None]:
    def act() -> None:
        raise exc

    return act


def _write(stream: str, value: Any, catch: bool) -> Callable[[], None]:
    def act() -> None:
        try:
            getattr(sys, stream).write(value)
        except TypeError:
            if not catch:
                raise

    return act


class WeirdStepError(nbp.StepError):
    def __str__(self) -> str:
        raise KeyError("str")


odd_exceptions = st.sampled_from(
    [
        Unshowable(),
        UnshowableStepError("x", "Timeout"),
        NotText(),
        WeirdStepError("y", error_type=None),  # type: ignore[arg-type]
        nbp.StepError("z", error_type=""),
        SystemExit(2),
        KeyboardInterrupt(),
        GeneratorExit(),
        BaseException("base"),
        ValueError("v" * 30_000),
        TimeoutError(),
        RecursionError("deep"),
    ]
)
odd_writes = st.builds(
    _write,
    st.sampled_from(["stdout", "stderr"]),
    st.sampled_from(
        [b"bytes", bytearray(b"ba"), 42, None, object(), BadLength("x"), "text\n", "é" * 3000, "z" * 120_000]
    ),
    st.booleans(),
)


class BrokenDict(dict):
    def keys(self) -> Any:
        raise RuntimeError("keys")

    def __iter__(self) -> Any:
        raise RuntimeError("iter")


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("repr")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq")

    __hash__ = object.__hash__


odd_returns = st.sampled_from(
    [
        None,
        42,
        "text",
        [1, 2],
        {1: "non-text key"},
        {"ok": object()},
        (x for x in ()),
        {"big": "b" * 10_000},
        BrokenDict(a=1),
        {"u": Unprintable()},
        Unprintable(),
    ]
)
actions = st.lists(st.one_of(odd_writes, st.builds(_raise, odd_exceptions)), max_size=3)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=actions, result=odd_returns)
def test_random_misbehaving_bodies_end_with_a_complete_trace_and_no_busy_worker(actions: list, result: Any):
    def body() -> Any:
        for act in actions:
            act()
        return result

    p = one_stage(
        nbp.Step("odd", run=body, failure_strategies=nbp.Ignore()), nbp.Step("after", run=lambda: None)
    )
    plan_nodes = 4  # pipeline, stage, odd, after
    saved_err, saved_hook, uncaught = sys.stderr, threading.excepthook, []
    sys.stderr = io.StringIO()  # what bodies write to stderr is kept out of the test's output
    threading.excepthook = uncaught.append  # "Exception in thread nbp-worker-…"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with stdout_to_devnull():
                trace = finishes(lambda: p.run(progress=False, report=False), guard=20)
    finally:
        sys.stderr, threading.excepthook = saved_err, saved_hook
    assert uncaught == []
    assert nbp.last_trace() is trace
    assert len(trace) == plan_nodes and trace["fqn"].is_unique
    assert status(trace, "odd") in {"Success", "IgnoreFailed"}
    assert status(trace, "after") == "Success"
    assert default_pool().busy == 0


def test_the_log_limit_of_a_thread_executor_is_checked():
    with pytest.raises(ValueError, match="log_limit=-1: give a whole number of characters"):
        ThreadExecutor(log_limit=-1)
    assert Path(nbp.__file__).is_relative_to(REPO)  # the package under test is this worktree's
