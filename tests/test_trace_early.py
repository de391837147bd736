"""A real run makes its trace's known columns while it waits for bodies (``start_trace``), and
the frame through pandas' own constructors: the trace must be the same DataFrame as the one
made the old way, after the run, through the public constructors — for a run that succeeds,
fails, retries, loops, is aborted or interrupted (those keep their trace).

The old way is ``build_trace`` on the same records without ``ready`` and with the module's
``_FAST`` switch off (``pd.DataFrame(dict)``, ``tz_localize``), as before the change.
"""

from __future__ import annotations

import _thread
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
import pytest
from conftest import boom, ok

import notebook_pipelines as nbp
from notebook_pipelines.engine import trace as trace_module
from notebook_pipelines.engine.trace import build_trace, start_trace

pytestmark = pytest.mark.usefixtures("no_worker_leak")


class Keep:
    """A listener that keeps the run's scheduler (its records, run id, clock and copies)."""

    scheduler: Any = None

    def run_started(self, scheduler: Any) -> None:
        self.scheduler = scheduler


@contextmanager
def public_constructors() -> Iterator[None]:
    """Inside: the trace's frame and stamps made by pandas' public constructors, as before."""
    trace_module._FAST[0] = False
    try:
        yield
    finally:
        trace_module._FAST[0] = True


def old_way(scheduler: Any) -> pd.DataFrame:
    """The trace of ``scheduler``'s records made as before: after the run, public constructors."""
    with public_constructors():
        return build_trace(
            scheduler.plan, scheduler.recorder.rows, scheduler.run_id, scheduler.clock.epoch_ns,
            scheduler.extra,
        )  # fmt: skip


def one_step() -> Any:
    """The plan of a pipeline of one stage of one step (3 nodes: pipeline, stage, step)."""
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", duration=1)
    return p.plan()


def row(node: int, attempt: int, status: str, start: float, end: float, failed: bool = False) -> Any:
    """A trace record; a failed one with an error and the Retry action."""
    error = ("Unknown", "x", "Retry") if failed else (None, None, None)
    return trace_module.Record(node, None, attempt, status, None, start, end, None, *error, None, None, None)


def layout(frame: pd.DataFrame) -> list[tuple[str, list[int]]]:
    """How pandas holds the frame: each block's dtype and columns (one block per column)."""
    return [(str(block.dtype), list(block.mgr_locs)) for block in frame._mgr.blocks]


def assert_same(new: pd.DataFrame, old: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(new, old, check_exact=True)
    assert list(new.columns) == list(old.columns) == list(trace_module.COLUMNS)
    assert new.columns.dtype == old.columns.dtype
    assert dict(new.dtypes) == dict(old.dtypes)
    assert layout(new) == layout(old)
    assert {k: new.attrs[k] for k in old.attrs} == old.attrs  # run() and simulate() add their own
    assert new.equals(old)


def run_kept(p: nbp.Pipeline, **options: Any) -> tuple[pd.DataFrame, Any]:
    keep = Keep()
    trace = p.run(report=False, progress=False, listeners=[keep], **options)
    return trace, keep.scheduler


def wide(width: int = 8) -> nbp.Pipeline:
    p = nbp.Pipeline("wide")
    with p.stage("s") as s, s.parallel():
        for i in range(width):
            s.step(f"x{i}", run=ok(0.02))
    return p


def test_a_run_that_succeeds_has_the_trace_made_the_old_way():
    trace, scheduler = run_kept(wide())
    assert (trace["status"] == "Success").all()
    assert_same(trace, old_way(scheduler))


def test_the_columns_made_while_the_run_waits_are_those_the_end_would_make():
    # the run's loop waited for its 8 bodies: it made them then, and the trace took them
    p = wide()
    keep = Keep()
    made: list[dict[str, Any]] = []

    def spy(plan: Any, run_id: str) -> dict[str, Any]:  # the real function, its result kept
        made.append(start_trace(plan, run_id))
        return made[-1]

    from notebook_pipelines.engine import running

    running_start, running.start_trace = running.start_trace, spy
    try:
        trace = p.run(report=False, progress=False, listeners=[keep])
    finally:
        running.start_trace = running_start
    assert len(made) == 1  # made once, and taken by the trace as they were made
    assert all(trace[name].array is made[0][name] for name in ("run_id", "fqn", "block", "reason"))
    assert_same(trace, old_way(keep.scheduler))


def test_a_failed_run_with_retries_and_skips_has_the_trace_made_the_old_way():
    p = nbp.Pipeline("failing")
    with p.stage("s") as s:
        s.step("flaky", run=boom(0.01), failure_strategies=nbp.Retry(2))
        s.step("after", run=ok())
    with p.stage("never", when="false") as s:
        s.step("x", run=ok())
    trace, scheduler = run_kept(p)
    assert set(trace["status"].astype(str)) >= {"Failed", "Skipped"}
    assert (trace["attempt"] == 3).any()  # two retries: more rows than nodes
    assert_same(trace, old_way(scheduler))


def test_a_looped_run_has_the_trace_made_the_old_way():
    p = nbp.Pipeline("looped")
    with p.stage("s") as s:
        s.step("build", run=ok(), strategy=nbp.Matrix(os=["linux", "win"]))
        s.step("after", run=ok())
    trace, scheduler = run_kept(p)
    assert scheduler.extra  # the copies of the looped node: their own static columns
    assert_same(trace, old_way(scheduler))


def test_an_aborted_run_keeps_the_trace_made_the_old_way():
    keep = Keep()

    def abort_soon(ctx: nbp.StepContext) -> None:
        keep.scheduler.cancel("stop here")
        ctx.sleep(5)

    p = nbp.Pipeline("aborted")
    with p.stage("s") as s:
        with s.parallel():
            s.step("a", run=abort_soon)
            s.step("b", run=ok(5))
        s.step("c", run=ok())
    trace = p.run(report=False, progress=False, listeners=[keep])
    assert set(trace["status"].astype(str)) >= {"Aborted", "NotStarted"}
    assert_same(trace, old_way(keep.scheduler))


def test_an_interrupted_run_keeps_the_trace_made_the_old_way():
    keep = Keep()

    def interrupt(ctx: nbp.StepContext) -> None:
        time.sleep(0.02)
        _thread.interrupt_main()  # as the kernel's Interrupt: the run drains, then raises
        ctx.sleep(5)

    p = nbp.Pipeline("interrupted")
    with p.stage("s") as s:
        s.step("a", run=interrupt)
        s.step("b", run=ok())
    with pytest.raises(nbp.RunInterrupted) as raised:
        p.run(report=False, progress=False, listeners=[keep])
    trace = raised.value.trace
    assert list(trace["status"].astype(str))[-2:] == ["Aborted", "NotStarted"]
    assert_same(trace, old_way(keep.scheduler))


def test_a_simulation_and_an_empty_trace_are_made_as_before():
    p = wide()
    plan = p.plan()
    keep = Keep()
    assert_same(nbp.simulate(plan, listeners=[keep]), old_way(keep.scheduler))
    with public_constructors():
        old_empty = trace_module.empty_trace()
    assert_same(trace_module.empty_trace(), old_empty)


def test_columns_made_beforehand_are_not_used_for_rows_that_do_not_fit():
    # a retry adds a row: the trace is taken row by row from the plan's columns instead
    plan = one_step()
    rows = [row(2, 1, "Failed", 0, 1, failed=True), row(2, 2, "Success", 1, 2)]
    rows += [row(1, 1, "Success", 0, 2), row(0, 1, "Success", 0, 2)]
    ready = start_trace(plan, "r")
    with_ready = build_trace(plan, rows, "r", 0, ready=ready)
    assert len(ready["fqn"]) == 3  # not taken: the trace has 4 rows for 3 nodes
    with public_constructors():
        assert_same(with_ready, build_trace(plan, rows, "r", 0))
    assert list(with_ready["attempt"]) == [1, 1, 1, 2]


def test_editing_a_trace_leaves_the_next_run_alone():
    # the columns made during the run are that run's own: editing its trace changes no other
    p = wide(3)
    first = p.run(report=False, progress=False)
    first.loc[0, "fqn"] = "edited"
    first.loc[1, "reason"] = "edited"
    second = p.run(report=False, progress=False)
    assert "edited" not in set(second["fqn"]) and second["reason"].isna().all()


def test_as_many_rows_as_nodes_but_not_one_per_node_are_sorted_as_before():
    # a partial trace (the live view's) may hold a retried node twice and another not at all:
    # as many rows as nodes, yet not one each; sorted by node and attempt, as the old way did
    plan = one_step()
    rows = [row(2, 2, "Success", 1, 2), row(0, 1, "Success", 0, 2), row(2, 1, "Failed", 0, 1, failed=True)]
    new = build_trace(plan, rows, "r", 0, ready=start_trace(plan, "r"))
    with public_constructors():
        assert_same(new, build_trace(plan, rows, "r", 0))
    assert list(new["fqn"]) == [plan.nodes[0].fqn, plan.nodes[2].fqn, plan.nodes[2].fqn]
    assert list(new["attempt"]) == [1, 1, 2]


FIRST_RUN = """
import sys, time
import notebook_pipelines as nbp
assert "pandas" not in sys.modules  # the package imports it on the first run
seen = []
p = nbp.Pipeline("first")
with p.stage("s") as s:
    s.step("a", run=lambda: time.sleep(0.05))
    s.step("b", run=lambda: seen.append("pandas" in sys.modules))
trace = p.run(progress=False)
print(seen, len(trace))
"""


def test_a_process_s_first_run_imports_pandas_after_its_last_body_not_on_the_loop_between_steps():
    # The early columns need pandas and pyarrow; importing them on the loop while `a` sleeps
    # (~0.3 s) held a's completion and b's start that long in a fresh kernel's first run.
    import subprocess
    import sys
    from pathlib import Path

    root = Path(nbp.__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", FIRST_RUN], capture_output=True, text=True, timeout=120, cwd=root
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[False]", "4"]


def test_the_loop_leaves_its_idle_work_until_every_body_of_a_wide_block_has_started():
    """The idle work (the trace's early columns) holds the interpreter: done while the workers
    of a wide block still start, it would hold back the starts after it. Each body here holds
    the interpreter ~1 ms before it sleeps, so 48 starts take ≥ 48 ms, far more than the
    loop's quiet moment (``IDLE_AFTER``, 1 ms) — the idle work waits for all of them."""
    width = 48
    started: list[float] = []

    def body() -> None:
        until = time.perf_counter() + 0.001
        while time.perf_counter() < until:  # Python work: holds the interpreter
            pass
        started.append(time.perf_counter())
        time.sleep(0.1)

    seen: list[int] = []

    class Probe:
        def run_started(self, scheduler: Any) -> None:
            scheduler.idle.insert(0, lambda: seen.append(len(started)))  # the first piece

    p = nbp.Pipeline("wide")
    with p.stage("s") as s, s.parallel():
        for k in range(width):
            s.step(f"x{k}", run=body)
    p.run(report=False, progress=False)  # the pool now has a free worker for every body
    started.clear()
    trace = p.run(listeners=[Probe()], report=False, progress=False)
    assert (trace["status"] == "Success").all()
    assert seen == [width]  # done once, after the last start (not at the first quiet moment)
