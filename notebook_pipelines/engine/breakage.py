"""What the scheduler's loop does when code it runs raises: the run keeps its trace.

The loop runs the user's listeners, the rules' generators (one per node, :mod:`.semantics`) and
callbacks (timers, completions posted by executors). Two kinds of failure:

- a listener raises (:meth:`~.scheduler.Scheduler._notify`): :func:`dropped` warns, and the
  listener gets no more events of the run; the run goes on;
- anything else escapes the loop — a node's generator, a timer or a posted callback:
  :func:`recover`. The rules turn every odd value the user's code gives them into a node's
  ``Failed`` row (a condition that is neither true nor false, a value whose ``__str__`` raises…),
  so such an exception is an internal error of notebook-pipelines — or a warning that the
  warnings filter (``-W error``) turned into an exception on the loop's thread. The run is
  aborted as an abort does (running bodies are told to stop, nothing new starts, what is
  waiting ends ``Aborted``); the node whose generator raised gets an ``Errored`` row naming
  the exception, the containers around it that had started an ``Aborted`` row; the rest of the
  run drains as after any abort, without waiting for anything. ``Scheduler.broken`` keeps the
  exception: :func:`~.running.execute` builds the trace as for any aborted run, makes it
  ``last_trace()``, and raises :func:`broken_error` (a ``RunFailed`` carrying the trace) from it.

A simulation's own errors (a ``PipelineError`` such as ``SimulationError``: an option found
unusable while simulating) are raised as they are: they are the caller's input, not a run to keep.
Nothing here runs unless something raised: the loop's hot path is a ``try`` around it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from ..definition.plan import PlanNode
from ..definition.statuses import ABORTED, NOT_STARTED
from ..errors import MESSAGE_LIMIT, PipelineError, RunFailed, excerpt
from .clocks import RealClock
from .executors.base import Job, message_of
from .interventions import callable_name
from .semantics import Rules

if TYPE_CHECKING:  # pragma: no cover
    from collections import deque

    import pandas as pd

    from ..definition.plan import Plan
    from .executors.base import Clock, Executor
    from .trace import Recorder

#: a :class:`~.scheduler.Task` (a generator and where its result goes); opaque here
Task = Any


class BrokenRun(Protocol):
    """What :func:`recover` uses of the run (the scheduler)."""

    plan: Plan
    clock: Clock
    executor: Executor
    recorder: Recorder
    ready: deque[tuple[Task, Any]]
    waits: dict[Task, Any]
    extra: list[PlanNode]
    status: str | None
    done: bool
    broken: Exception | None

    def abort(self, reason: str) -> None: ...

    def record(
        self, node: PlanNode, attempt: int, status: str, start: float | None, end: float | None, *,
        reason: str | None = None, error_type: str | None = None, error: str | None = None,
    ) -> None: ...  # fmt: skip

    def _advance(self, task: Task, value: Any) -> None: ...


__all__ = ["ERRORED", "INTERNAL", "BrokenRun", "broken_error", "dropped", "recover"]

ERRORED = "Errored"
#: what an exception escaping the loop is called in rows and messages
INTERNAL = "internal error of notebook-pipelines (please report it, with the traceback)"

#: the rules' node generators, and the local that holds their node
_NODE_FRAMES = {
    Rules.pipeline.__code__: "root",
    Rules.stage.__code__: "node",
    Rules.group.__code__: "node",
    Rules.looped.__code__: "node",
    Rules.step.__code__: "node",
}


def dropped(listeners: list[Callable[..., Any]], fn: Any, exc: BaseException) -> bool:
    """A listener raised: warn (bounded) and give it no more events of this run; False."""
    listeners.remove(fn)
    warnings.warn(
        f"listener {callable_name(fn)} raised {type(exc).__name__}: "
        f"{excerpt(message_of(exc), MESSAGE_LIMIT)}; it gets no more events of this run",
        RuntimeWarning,
        stacklevel=3,
    )
    return False


def what(exc: BaseException) -> str:
    """The exception as rows and messages name it, bounded; never raises."""
    text = f"{type(exc).__name__}: {excerpt(message_of(exc), MESSAGE_LIMIT)}"
    if isinstance(exc, Warning):
        return f"a {text} warning, which the warnings filter turned into an exception on the run's loop"
    return f"{INTERNAL}: {text}"


def recover(run: BrokenRun, exc: Exception) -> None:
    """``exc`` escaped the loop of ``run`` (called in its ``except``): abort the run, record the
    broken node ``Errored``, drain what is left; ``run.broken`` keeps ``exc``. A simulation's own
    ``PipelineError`` is raised again as it is."""
    if isinstance(exc, PipelineError) and not isinstance(run.clock, RealClock):
        raise exc  # a simulation's option found unusable while simulating: the caller's error
    run.broken = exc
    reason = f"aborted: {what(exc)}"
    for step in (_broke, _aborted):  # each on its own: the abort happens even if recording broke
        try:
            step(run, exc, reason)
        except Exception:  # it broke too: the trace is made of what was recorded
            pass
    if not run.done:
        run.status, run.done = run.status or ABORTED, True


def _aborted(run: BrokenRun, exc: Exception, reason: str) -> None:
    """Abort (running bodies are told to stop, every wait ends Aborted), then drain."""
    run.abort(reason)
    _drain(run, reason)


def _drain(run: BrokenRun, reason: str) -> None:
    """Resume what the abort made ready until the root ends (never waits: after an abort no
    rule waits for anything); a generator that raises again is broken too."""
    budget = 1_000 + 100 * (len(run.plan.nodes) + len(run.extra))
    while run.ready and not run.done and budget > 0:
        budget -= 1
        task, value = run.ready.popleft()
        try:
            run._advance(task, value)
        except Exception as exc:
            _broke(run, exc, reason)


def _broke(run: BrokenRun, exc: Exception, reason: str) -> None:
    """The task whose generator (or its request) raised ``exc``: closed; the innermost node of
    its generator chain without a row gets an ``Errored`` one, the started containers around it
    ``Aborted`` ones; its parent gets that status as the task's result. A callback that raised
    (no task) leaves the rows to the abort."""
    found = _task_of(run, exc)
    if found is None:
        return
    task, frames = found
    now = run.clock.now()
    recorded = {(r.node, r.attempt) for r in run.recorder.rows}
    nodes = [(f.f_locals.get(_NODE_FRAMES[f.f_code]), f) for f in frames if f.f_code in _NODE_FRAMES]
    status, errored = None, False
    for node, frame in reversed(nodes):  # the innermost first
        if not isinstance(node, PlanNode):
            continue
        attempt = frame.f_locals.get("attempt") or 1
        start = frame.f_locals.get("start")
        if (node.index, attempt) in recorded:
            continue  # it ended before the error: its row stays
        if not errored:
            status, errored = ERRORED, True
            run.record(node, attempt, ERRORED, start if start is not None else now, now,
                       error_type="Unknown", error=what(exc), reason=reason)  # fmt: skip
        else:
            status = ABORTED if start is not None else NOT_STARTED
            run.record(node, attempt, status, start, now if start is not None else None, reason=reason)
    _settled(run, task, status or ABORTED)


def _settled(run: BrokenRun, task: Task, status: str) -> None:
    """``task`` ends with ``status``: closed if it still waits, its result to its parent."""
    wait = run.waits.pop(task, None)
    if isinstance(wait, Job):  # its request broke while the body was handed over: a late result
        wait.done = True  # is dropped; a body that runs is told to stop when the run ends (close)
    try:
        task.gen.close()
    except Exception:
        pass
    parent = task.parent
    if parent is None:
        run.status, run.done = status, True
        return
    parent.results[task.index] = status
    parent.pending -= 1
    if parent.pending == 0:
        run.ready.append((parent, parent.results))


def _task_of(run: BrokenRun, exc: BaseException) -> tuple[Task, list[FrameType]] | None:
    """The task ``run._advance`` was resuming when ``exc`` was raised, and the frames of its
    generator chain (from the traceback; from the generators when it raised serving a request)."""
    tb, task, frames = exc.__traceback__, None, []
    while tb is not None:
        frame = tb.tb_frame
        if task is not None:
            frames.append(frame)
        elif frame.f_code.co_name == "_advance" and frame.f_locals.get("self") is run:
            task = frame.f_locals.get("task")
        tb = tb.tb_next
    if task is None:
        return None
    gen: Any = task.gen
    if getattr(gen, "gi_frame", None) is not None:  # suspended: its request could not be served
        frames = []
        while gen is not None and getattr(gen, "gi_frame", None) is not None:
            frames.append(gen.gi_frame)
            gen = gen.gi_yieldfrom
    return task, frames


def broken_error(run: BrokenRun, trace: pd.DataFrame | None) -> RunFailed:
    """The error ``run()``/``simulate()`` raise (from ``run.broken``) after a run :func:`recover`
    ended: what broke, where, and that the trace was kept."""
    exc = run.broken
    assert exc is not None
    errored = [r for r in run.recorder.rows if r.status == ERRORED]
    where = f" at {_fqn(run, errored[0].node)}" if errored else ""
    kind = "simulation" if not isinstance(run.clock, RealClock) else "run"
    kept = "its trace is in .trace (also nbp.last_trace())" if trace is not None else "no trace was made"
    return RunFailed(
        f"{kind} of {excerpt(run.plan.pipeline.id, 80)!r} aborted{where}: {what(exc)}; running steps "
        f"were told to stop, {kept}; the original exception is chained below",
        trace,
    )


def _fqn(run: BrokenRun, index: int) -> str:
    base = len(run.plan.nodes)
    return run.plan.nodes[index].fqn if index < base else run.extra[index - base].fqn
