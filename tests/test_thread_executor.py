"""ThreadExecutor across runs and at its edges: one executor used for several runs, and stop
signals (``StepCancelled``) that land in a worker after the body has already ended.

A run that would hang runs in a guard thread joined with a timeout, so a hang fails the test
instead of stopping the suite (the timeout is a hang guard, not a timing check).
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

from conftest import finishes, row, sleeper

import notebook_pipelines as nbp
from notebook_pipelines.definition.model import Pipeline, Stage, Step
from notebook_pipelines.engine.executors.threads import ThreadExecutor, default_pool


def pipeline(*items: Any) -> Pipeline:
    return Pipeline("p", stages=[Stage("s", items=list(items))])


def test_one_thread_executor_runs_two_runs_one_after_the_other():
    p = pipeline(Step("a", run=sleeper(0.01, "hi")))
    executor = ThreadExecutor()

    def twice() -> list:
        return [p.run(executor=executor, report=False) for _ in range(2)]

    first, second = finishes(twice)
    assert first["status"].tolist() == second["status"].tolist() == ["Success"] * 3
    assert row(second, "a")["log"] == "hi\n"
    assert executor.busy == 0


def test_a_body_stuck_since_the_last_run_is_left_behind_and_takes_no_job_of_the_next_one():
    release = threading.Event()
    stuck: dict[str, threading.Thread] = {}

    def hang() -> None:
        stuck["thread"] = threading.current_thread()
        release.wait()  # blocked in C code: the timeout's stop signal lands only when it returns

    def free() -> dict:
        release.set()
        stuck["thread"].join(10)  # it must end on its own, not wait for a job of this run
        return {"ended": not stuck["thread"].is_alive()}

    barrier = threading.Barrier(2, timeout=10)  # the two parallel bodies must really overlap
    first = pipeline(Step("hang", run=hang, timeout="50ms"))
    second = Pipeline("p")
    with second.stage("s") as s:
        s.step("free", run=free)
        with s.parallel():
            s.step("left", run=lambda: {"met": barrier.wait() >= 0})
            s.step("right", run=lambda: {"met": barrier.wait() >= 0})
    executor = ThreadExecutor(stop_grace=0.05)

    def both() -> tuple:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            one = first.run(executor=executor, report=False)
            left = [str(w.message) for w in caught]
            stuck_name = stuck["thread"].name
            two = second.run(executor=executor, report=False)
        return one, left, stuck_name, two, [str(w.message) for w in caught[len(left) :]]

    one, warned, stuck_name, two, later = finishes(both)
    assert row(one, "hang")["status"] == "Expired"
    assert len(warned) == 1 and "left behind" in warned[0] and "steps.hang" in warned[0]
    assert stuck_name.startswith("nbp-left-behind")  # out of the pool while it runs
    assert later == []
    assert row(two, "free")["outputs"] == {"ended": True}
    assert row(two, "left")["outputs"] == row(two, "right")["outputs"] == {"met": True}
    assert two["status"].iloc[0] == "Success" and executor.busy == 0


def test_a_stop_signal_landing_after_the_body_is_dropped_and_the_thread_ends_cleanly():
    """The timeout's stop signal reaches the worker while it turns the body's exception into an
    outcome (``str(exc)`` waits in ``ctx.sleep`` until it comes): the thread must still end
    without an uncaught exception, and no pool worker stays busy."""
    errors: list[Any] = []
    previous = threading.excepthook
    threading.excepthook = errors.append

    class Late(Exception):
        def __init__(self, ctx: nbp.StepContext):
            super().__init__()
            self.ctx = ctx

        def __str__(self) -> str:
            self.ctx.sleep(30)  # raises StepCancelled when the step times out
            return "never"

    def late(ctx: nbp.StepContext) -> None:
        stuck.append(threading.current_thread())
        raise Late(ctx)

    stuck: list[threading.Thread] = []
    p = pipeline(
        Step("late", run=late, timeout="50ms", failure_strategies=nbp.Ignore()),
        Step("after", run=lambda: None),
    )
    executor = ThreadExecutor()
    try:
        trace = finishes(lambda: p.run(executor=executor, report=False))
        stuck[0].join(10)
    finally:
        threading.excepthook = previous
    assert (row(trace, "late")["status"], row(trace, "late")["error_type"]) == ("IgnoreFailed", "Timeout")
    assert row(trace, "after")["status"] == "Success"
    assert not stuck[0].is_alive() and errors == []
    assert executor.busy == 0 and default_pool().busy == 0
