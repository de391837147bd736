"""The warm worker pool, ``max_workers``, and stopping that never waits (engine v2).

Workers outlive a run and serve the next one; the pool shrinks when idle; ``max_workers`` caps
how many bodies run at once. A body that ignores being told to stop (blocked in C code) is left
behind: the run ends without it — also with a trace function installed (a debugger, coverage),
which must not make a timeout, an abort or an interrupt wait for the body.

Runs that could hang run under a guard (a hang fails the test; the guard is not a timing check).
"""

from __future__ import annotations

import _thread
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import row, sleeper

import notebook_pipelines as nbp
from notebook_pipelines.engine.executors.threads import ThreadExecutor, WorkerPool

pytestmark = pytest.mark.usefixtures("no_worker_leak")


def block(width: int, body: Callable, **settings: Any) -> nbp.Pipeline:
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        for i in range(width):
            s.step(f"w{i}", run=body, **settings)
    return p


def steps(trace):
    return trace[trace["kind"] == "step"]


def most_at_once(trace) -> int:
    """The largest number of step bodies that ran at the same moment (from the trace)."""
    events = sorted(
        [(t, 1) for t in steps(trace)["start_s"]] + [(t, -1) for t in steps(trace)["end_s"]],
        key=lambda e: (e[0], e[1]),  # an end before a start at the same instant
    )
    now = most = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def test_workers_outlive_a_run_and_serve_the_next_one():
    pool = WorkerPool()
    executor = ThreadExecutor(pool=pool)
    p = block(3, sleeper(0.05))
    first = p.run(executor=executor)
    workers_after_first = {t.name for t in pool._workers}
    second = p.run(executor=executor)
    assert pool.size == 3 and pool.busy == 0
    assert set(steps(first)["worker"]) == set(steps(second)["worker"]) == workers_after_first
    pool.shutdown()


def test_the_pool_grows_to_the_widest_moment_only():
    pool = WorkerPool()
    executor = ThreadExecutor(pool=pool)
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("one", run=sleeper(0.02))
        with s.parallel():
            for i in range(4):
                s.step(f"w{i}", run=sleeper(0.05))
        s.step("two", run=sleeper(0.02))
    trace = p.run(executor=executor)
    assert most_at_once(trace) == 4
    assert pool.size == 4  # the serial steps reused workers of the block
    pool.shutdown()


def test_the_pool_shrinks_after_an_idle_period():
    pool = WorkerPool(idle_timeout=0.05)
    block(3, sleeper(0.02)).run(executor=ThreadExecutor(pool=pool))
    assert pool.wait(lambda pool: pool.size == 0, timeout=20)  # the workers left by themselves


def test_idle_workers_leave_when_the_pool_shuts_down():
    pool = WorkerPool()
    block(2, sleeper(0.01)).run(executor=ThreadExecutor(pool=pool))
    threads = list(pool._workers)
    pool.shutdown(timeout=10)
    assert pool.size == 0 and not any(t.is_alive() for t in threads)


def test_max_workers_caps_the_bodies_running_at_once_and_start_is_when_the_body_started():
    trace = block(6, sleeper(0.05)).run(max_workers=2)
    assert set(steps(trace)["status"]) == {"Success"}
    assert most_at_once(trace) == 2
    starts = sorted(steps(trace)["start_s"])
    ends = sorted(steps(trace)["end_s"])
    assert starts[2] >= ends[0]  # the third body started when a worker came free, not before


def test_with_max_workers_the_worker_whose_body_ends_starts_the_next_and_the_pool_stays_small():
    """The worker that gives back a slot takes the next waiting job itself: it does not wait in
    its own job for another worker, and the pool does not grow past the cap (it grew to 5
    threads for ``max_workers=2`` and 300 no-ops, and to 20–36 in the benchmarks' runs)."""
    pool = WorkerPool(idle_timeout=5)
    try:
        for _ in range(3):
            trace = block(300, lambda: None).run(
                executor=ThreadExecutor(max_workers=2, pool=pool), report=False, progress=False
            )
            assert set(steps(trace)["status"]) == {"Success"}
            assert pool.size <= 2
        timed = block(6, sleeper(0.05)).run(executor=ThreadExecutor(max_workers=2, pool=pool), report=False)
        assert most_at_once(timed) == 2  # the cap still runs two at a time: 3 rounds of 0.05 s
        assert pool.size <= 2
    finally:
        pool.shutdown()


def test_without_max_workers_every_step_of_a_block_starts_at_once_R5():
    trace = block(8, sleeper(0.1)).run()
    assert most_at_once(trace) == 8


class CountingPool(WorkerPool):
    """A real pool that notes how jobs reach it: one entry per call, the number of jobs."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int]] = []

    def submit(self, fn: Callable[[], Any]) -> None:
        self.calls.append(("one", 1))
        super().submit(fn)

    def submit_many(self, fns: list) -> None:
        self.calls.append(("batch", len(fns)))
        super().submit_many(fns)


def test_R5_a_parallel_block_reaches_warm_workers_in_one_batch():
    pool = CountingPool()
    executor = ThreadExecutor(pool=pool)
    p = block(6, sleeper(0.05))
    p.run(executor=executor)  # makes 6 workers
    pool.calls.clear()
    trace = p.run(executor=executor)
    assert set(steps(trace)["status"]) == {"Success"} and most_at_once(trace) == 6
    # the six jobs, made while the loop drained its ready queue, were handed over together,
    # to the six free workers (no job went one by one)
    assert pool.calls == [("batch", 6)]
    assert pool.size == 6
    pool.shutdown()


def test_submit_many_gives_each_job_a_worker_and_grows_for_the_rest():
    pool = WorkerPool()
    release = threading.Event()
    started = threading.Semaphore(0)

    def job() -> None:
        started.release()
        release.wait(10)

    pool.submit_many([job, job])
    assert all(started.acquire(timeout=10) for _ in range(2))
    release.set()
    assert pool.wait(lambda pool: pool.idle == 2, timeout=10)
    release.clear()
    pool.submit_many([job, job, job])  # two free workers take two; a third is made
    assert all(started.acquire(timeout=10) for _ in range(3))  # all three run at once (R5)
    assert pool.size == 3
    release.set()
    pool.shutdown(timeout=10)


def test_a_burst_of_short_jobs_runs_each_once_in_order_and_leaves_every_worker_free():
    # more jobs than free workers: the rest wait in the queue for a worker that finishes (or a
    # new one); each runs once, the first ones first, and none counts as busy once all ran
    pool = WorkerPool()
    pool.submit(lambda: None)
    assert pool.wait(lambda pool: pool.idle == 1, timeout=10)
    ran: list[int] = []
    pool.submit_many([lambda i=i: ran.append(i) for i in range(500)])
    assert pool.wait(lambda pool: len(ran) == 500 and pool.idle == pool.size, timeout=10)
    assert sorted(ran) == list(range(500)) and pool.busy == 0 and pool._waiting == 0
    if pool.size == 1:  # one worker took them all: in the order they were handed over
        assert ran == list(range(500))
    pool.shutdown(timeout=10)


def test_E15_jobs_aborted_before_their_batch_is_handed_over_never_reach_the_pool():
    ran: list[str] = []

    def body(ctx) -> None:
        ran.append(ctx.id)

    class AbortAtTheThirdStep:
        def run_started(self, s) -> None:
            self.scheduler = s

        def node_started(self, node, attempt, t) -> None:
            if node.id == "w2":  # w0 and w1 wait in the batch, not handed over yet
                self.scheduler.abort("stopped before the block was handed over")

    pool = CountingPool()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trace = block(3, body).run(executor=ThreadExecutor(pool=pool), listeners=[AbortAtTheThirdStep()])
    assert ran == []
    assert set(steps(trace)["status"]) == {"Aborted"}
    # w0 and w1 were taken out of the batch; only w2 (aborted as it was made) reached the pool
    # (a fresh one: its worker is made for it), which saw it was told to stop and did not run it
    assert pool.calls == [("batch", 1)]
    assert not [w for w in caught if "left behind" in str(w.message)]  # none was waited for
    pool.shutdown()


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, False])
def test_max_workers_must_be_a_whole_number_of_at_least_one(bad):
    with pytest.raises(ValueError, match="max_workers"):
        block(1, sleeper(0.01)).run(max_workers=bad)


# -- stopping never waits, with or without a trace function ------------------------------------
def _tracer(frame: Any, event: str, arg: Any) -> Any:
    return _tracer


@pytest.fixture(params=["no trace function", "with a trace function"])
def traced(request) -> Iterator[WorkerPool]:
    """A fresh pool (new threads), with ``sys.settrace``/``threading.settrace`` installed or not."""
    on = request.param == "with a trace function"
    previous = sys.gettrace()
    if on:
        threading.settrace(_tracer)
        sys.settrace(_tracer)
    pool = WorkerPool()
    try:
        yield pool
    finally:
        if on:
            sys.settrace(previous)
            threading.settrace(None)  # type: ignore[arg-type]
        pool.shutdown()


class Stuck:
    """A body blocked in C code (``Event.wait``) until released: no stop signal reaches it."""

    def __init__(self) -> None:
        self.release, self.returned = threading.Event(), threading.Event()

    def __call__(self) -> None:
        self.release.wait(30)
        self.returned.set()


def guarded(fn: Callable[[], Any], guard: float = 20.0) -> Any:
    """``fn()`` in a thread; fail (instead of hanging) when it has not returned after ``guard`` s."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=target, name="test-guard", daemon=True)
    thread.start()
    thread.join(guard)
    assert not thread.is_alive(), "the run waits for a body that ignores being told to stop"
    if "error" in result:
        raise result["error"]
    return result["value"]


def test_R59_a_timeout_expires_the_step_and_the_run_goes_on_without_the_body(traced):
    stuck = Stuck()
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("stuck", run=stuck, timeout="50ms", failure_strategies=nbp.Ignore())
        s.step("after", run=sleeper(0.01))
    with pytest.warns(RuntimeWarning, match=r"left behind: .*steps\.stuck"):
        trace = guarded(lambda: p.run(executor=ThreadExecutor(pool=traced, stop_grace=0.05)))
    ended_before_the_body = not stuck.returned.is_set()
    stuck.release.set()
    assert ended_before_the_body
    assert (row(trace, "stuck")["status"], row(trace, "stuck")["error_type"]) == ("IgnoreFailed", "Timeout")
    assert row(trace, "after")["status"] == "Success"
    assert traced.busy == 0 and traced.size == 1  # the stuck worker was replaced, not waited for


def test_E15_an_abort_ends_a_body_blocked_in_C_without_waiting_for_it(traced):
    stuck = Stuck()
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        s.step("stuck", run=stuck)
        s.step("abort", run=_fails_after(0.05), failure_strategies=nbp.Abort())
    with pytest.warns(RuntimeWarning, match="left behind"):
        trace = guarded(lambda: p.run(executor=ThreadExecutor(pool=traced, stop_grace=0.05), report=False))
    ended_before_the_body = not stuck.returned.is_set()
    stuck.release.set()
    assert ended_before_the_body
    assert row(trace, "stuck")["status"] == "Aborted"
    assert row(trace, "pipeline")["status"] == "Aborted"
    assert traced.busy == 0


def _fails_after(seconds: float) -> Callable[[], None]:
    def body() -> None:
        time.sleep(seconds)
        raise RuntimeError("boom")

    return body


@pytest.mark.parametrize("how", ["SIGINT", "interrupt_main"])
def test_D6_an_interrupt_ends_the_run_without_waiting_for_a_body_blocked_in_C(traced, how):
    """A real SIGINT and ``_thread.interrupt_main()`` (which sends no signal: the main thread must
    not sit in an endless lock wait) both end the run with the partial trace."""
    import os
    import signal

    assert threading.current_thread() is threading.main_thread()
    stuck = Stuck()
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("stuck", run=stuck)
        s.step("never", run=sleeper(0.01))

    def interrupt() -> None:
        if how == "SIGINT":
            os.kill(os.getpid(), signal.SIGINT)
        else:
            _thread.interrupt_main()

    timer = threading.Timer(0.2, interrupt)
    watchdog = threading.Timer(10.0, stuck.release.set)  # a hang ends (and fails below) instead
    timer.start()
    watchdog.start()
    try:
        with pytest.warns(RuntimeWarning, match="left behind"), pytest.raises(nbp.RunInterrupted) as err:
            p.run(executor=ThreadExecutor(pool=traced, stop_grace=0.05))
        ended_before_the_body = not stuck.returned.is_set()
    finally:
        timer.cancel()
        watchdog.cancel()
        stuck.release.set()
    assert ended_before_the_body
    trace = err.value.trace
    assert row(trace, "stuck")["status"] == "Aborted" and row(trace, "never")["status"] == "NotStarted"
    assert traced.busy == 0
