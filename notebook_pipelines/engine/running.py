"""Running a plan: :func:`run` (a real run in the kernel), :func:`prepare` (its pre-run checks,
made once), :func:`execute` (one plan, one clock,
one executor: what ``run()`` and ``simulate()`` call), the nesting of runs inside step bodies,
:func:`last_trace`, and the summary printed when a run does not succeed.

The loop itself is :class:`~.scheduler.Scheduler`; this module makes one per run, keeps the
plan in the :mod:`.registry` while it runs, and builds the trace when it ends.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from ..definition.plan import Plan, as_plan
from ..definition.statuses import SUCCESS
from ..errors import MESSAGE_LIMIT, NestedRunError, RunFailed, RunInterrupted, excerpt, printable
from . import registry
from .breakage import broken_error
from .clocks import RealClock
from .executors.base import Clock, Executor, Job, check_executor
from .scheduler import Scheduler
from .trace import build_trace, start_trace

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .interventions import InterventionRequest

__all__ = [
    "EARLY_TRACE_LIMIT",
    "MAX_NESTED_RUNS",
    "MAX_SUMMARY_LINES",
    "Prepared",
    "RunResult",
    "calling_run",
    "execute",
    "failure_lines",
    "last_trace",
    "nesting",
    "prepare",
    "run",
    "summary",
]

_LAST: list[pd.DataFrame | None] = [None]

#: At most this many runs nested inside step bodies (a body's ``run()`` of another pipeline):
#: each level holds a worker thread while the one below runs.
MAX_NESTED_RUNS = 8
#: The real runs going on in this process, to find the run that a ``run()`` is called inside.
_RUNNING: set[Scheduler] = set()
#: The most failure lines a run's summary lists (the trace has them all).
MAX_SUMMARY_LINES = 30
#: A real run of at most this many nodes makes its trace's static columns while its loop waits
#: for bodies (≈1 µs a node), not after the last body; a larger one keeps its loop free for
#: timeouts and completions and makes them at the end.
EARLY_TRACE_LIMIT = 5_000
#: what making the trace's columns imports: early only once a run (or the user) has imported them
_TABLES_IMPORTED = ("pandas", "pyarrow")


def last_trace() -> pd.DataFrame | None:
    """The trace of the last run or simulation in this process (also after an interrupt)."""
    return _LAST[0]


class RunResult:
    """What :func:`execute` returns: the pipeline's status, the trace, and whether the run
    was interrupted (Ctrl-C)."""

    __slots__ = ("interrupted", "status", "trace")

    def __init__(self, status: str, trace: pd.DataFrame, interrupted: bool):
        self.status, self.trace, self.interrupted = status, trace, interrupted

    def __iter__(self) -> Iterator[Any]:  # (status, trace, interrupted), as a tuple
        return iter((self.status, self.trace, self.interrupted))


def _bounded(text: str, lines: int = 6) -> str:
    """``text`` as printed in a summary: its first ``lines`` lines, each cut to ``MESSAGE_LIMIT``
    characters (:func:`~notebook_pipelines.errors.excerpt`), and how many more there were."""
    if len(text) <= MESSAGE_LIMIT and text.count("\n") < lines:
        return text
    parts = text.splitlines()
    shown = [excerpt(line, MESSAGE_LIMIT) for line in parts[:lines]]
    if len(parts) > lines:
        shown.append(f"… ({len(parts) - lines} more lines)")
    return "\n".join(shown)


def calling_run() -> tuple[Scheduler, Job | None] | None:
    """The run going on in this process that calls this code, if any: the run whose step body
    runs on this thread (with its job), or the run whose loop does (a listener; no job)."""
    me = threading.current_thread()
    for scheduler in list(_RUNNING):
        if scheduler._loop_thread == me.ident and not scheduler.done:
            return scheduler, None
        job_of = getattr(scheduler.executor, "job_of", None)
        job = job_of(me) if job_of is not None else None
        if job is not None:
            return scheduler, job
    return None


def nesting(plan: Plan) -> tuple[tuple[str, str], ...]:
    """The runs a run of ``plan`` started here would be nested in (outermost first); raises
    :class:`~notebook_pipelines.errors.NestedRunError` where that run may not start.

    A step body may run another pipeline (its own run, with its own steps), not the pipeline
    it belongs to — that run would start itself again, across worker threads, without end —
    and runs nest at most :data:`MAX_NESTED_RUNS` deep. Pipelines are told apart by their
    identifier.
    """
    found = calling_run()
    if found is None:
        return ()
    parent, job = found
    where = f"step {job.node.fqn}" if job is not None else "its own thread: a listener, or a body run there"
    chain = (*parent.chain, (parent.plan.pipeline.id, where))
    this = plan.pipeline.id
    path = " → ".join(f"{excerpt(pid, 80)!r} ({excerpt(at, 160)})" for pid, at in chain)
    if any(pid == this for pid, _ in chain):
        raise NestedRunError(
            f"pipeline {excerpt(this, 80)!r} is already running in this call chain: {path} → "
            f"{excerpt(this, 80)!r}; a step cannot run the pipeline it belongs to (the run would "
            "start itself again without end). Run another pipeline from the step, or put the "
            "work in the step itself (pipelines are told apart by their identifier: another "
            "pipeline needs its own)"
        )
    if len(chain) >= MAX_NESTED_RUNS:
        raise NestedRunError(
            f"runs nested {len(chain) + 1} deep: {path} → {excerpt(this, 80)!r}; at most "
            f"{MAX_NESTED_RUNS} runs may be nested inside step bodies (each level holds a worker "
            "thread while the one below runs). Flatten the pipelines: put the inner steps in one"
        )
    return chain


def execute(
    plan: Plan,
    executor: Executor,
    clock: Clock,
    *,
    run_id: str | None = None,
    listeners: Iterable[Any] = (),
    on_intervention: Callable[[InterventionRequest], Any] | None = None,
    namespace: dict[str, Any] | None = None,
    loop_counts: dict[str, Any] | None = None,
    chain: tuple[tuple[str, str], ...] | None = None,
) -> RunResult:
    """Run ``plan`` with ``executor`` and ``clock``; the :class:`RunResult` (status, trace, interrupted).

    ``loop_counts``: a simulation's ``iterations=`` (how many items a run-time list holds, by
    looped node id or FQN); ``None`` in a real run, where such lists are resolved.
    ``chain``: a real run's :func:`nesting` (it is then known to runs started inside it);
    ``None`` for a simulation.
    """
    scheduler = Scheduler(
        plan,
        executor,
        clock,
        run_id=run_id,
        listeners=listeners,
        on_intervention=on_intervention,
        namespace=namespace,
        loop_counts=loop_counts,
    )
    key = registry.remember(scheduler.run_id, plan)  # known while it runs (a handle's partial trace)
    ready: dict[str, Any] = {}  # the trace's columns known before the end, made while bodies run
    early = isinstance(clock, RealClock) and len(plan.nodes) <= EARLY_TRACE_LIMIT
    if early and all(name in sys.modules for name in _TABLES_IMPORTED):
        # not in a process's first run: importing pandas on the loop would hold a waiting
        # completion (and the next step's start) for the ~0.3 s the import takes
        scheduler.idle.append(lambda: ready.update(start_trace(plan, scheduler.run_id)))
    if chain is not None:
        scheduler.chain = chain
        _RUNNING.add(scheduler)
    try:
        status = scheduler.execute()
    finally:
        _RUNNING.discard(scheduler)
    scheduler.fill_not_started()
    trace = build_trace(
        plan, scheduler.recorder.rows, scheduler.run_id, clock.epoch_ns, scheduler.extra, ready or None
    )
    _LAST[0] = trace
    registry.stamp(trace, key)
    scheduler._notify([x.run_finished for x in scheduler.listeners if hasattr(x, "run_finished")], trace)
    if scheduler.broken is not None:  # an exception escaped the loop: aborted, its trace kept (.breakage)
        raise broken_error(scheduler, trace) from scheduler.broken
    if scheduler.closed_with is not None:  # e.g. "left behind" made an error by -W error: trace kept
        raise scheduler.closed_with
    return RunResult(status, trace, scheduler.interrupted)


class Prepared(NamedTuple):
    """A plan whose pre-run checks passed (:func:`prepare`): ``run()`` starts it unchecked."""

    plan: Plan
    #: the runs it is nested in (:func:`nesting`), outermost first
    chain: tuple[tuple[str, str], ...]


def prepare(pipeline: Any) -> Prepared:
    """The pre-run checks of a real run, in one place, once: a Pipeline is validated and
    compiled (a Plan is kept), its typed steps need handlers (``check_runnable``), and the run
    may start here (:func:`nesting`). :func:`run` calls it; the run controller calls it before a
    view appears and hands the result to :func:`run` (a ``Prepared`` is kept as it is).
    """
    from .steptypes import check_runnable

    if isinstance(pipeline, Prepared):
        return pipeline
    plan = as_plan(pipeline)
    check_runnable(plan)  # typed steps without a handler: refuse before anything starts
    return Prepared(plan, nesting(plan))  # a step body running its own pipeline: refused here


def run(
    pipeline: Any,
    *,
    executor: Executor | None = None,
    run_id: str | None = None,
    listeners: Iterable[Any] = (),
    on_intervention: Callable[[InterventionRequest], Any] | None = None,
    namespace: dict[str, Any] | None = None,
    check: bool = False,
    report: bool = True,
    max_workers: int | None = None,
) -> pd.DataFrame:
    """Run a pipeline in the kernel and return its trace (a pandas DataFrame).

    Args:
        pipeline: a :class:`~notebook_pipelines.definition.model.Pipeline` (validated first: an invalid
            pipeline raises ``DefinitionError`` and runs nothing), its compiled ``Plan``, or a
            :class:`Prepared` plan (its pre-run checks made: :func:`prepare`).
        executor: where bodies run; default the process's warm pool of worker threads
            (:class:`~.executors.threads.ThreadExecutor`), reused from run to run.
        max_workers: at most this many step bodies at a time (with the default executor).
            Without it every step of a parallel block starts at once, as in Harness; with it
            the extra steps wait for a free worker, and their ``start`` is when their body
            started (the wait shows as a gap after the block's start).
        run_id: fix the run id (default: random).
        listeners: objects with any of ``run_started(scheduler)`` (the :class:`Scheduler`,
            whose :meth:`~Scheduler.cancel` any thread may call), ``node_started(node, attempt, t)``,
            ``node_finished(node, row)``, ``intervention(request)``, ``run_finished(trace)``.
        on_intervention: called with an :class:`InterventionRequest` when a manual
            intervention waits (D12); without one the run waits the timeout.
        namespace: the globals that code-text step bodies run in.
        check: raise :class:`~notebook_pipelines.errors.RunFailed` (carrying the trace) when
            the pipeline does not end ``Success``.
        report: print a short summary to stderr when the pipeline does not end ``Success``
            (bounded: see :func:`failure_lines`).

    Raises:
        NestedRunError: called from a step body (or a listener) of a run of the same pipeline,
            or nested ``MAX_NESTED_RUNS`` runs deep: nothing runs (the calling step fails).
        RunInterrupted: on Ctrl-C / kernel interrupt (also ``_thread.interrupt_main()``): the
            running bodies are told to stop, and the run ends without waiting for those that
            ignore it; its ``trace`` is the partial trace (also ``nbp.last_trace()``).
        RunFailed: also without ``check``, when an exception escaped the run's loop (an internal
            error of notebook-pipelines, or a warning that ``-W error`` turned into an
            exception): the run was aborted as an abort does (running bodies told to stop), the
            node whose rules raised has an ``Errored`` row, ``trace`` is the complete trace (also
            ``nbp.last_trace()``), and the original exception is chained (``__cause__``).
    """
    from .executors.threads import ThreadExecutor

    plan, chain = prepare(pipeline)  # the pre-run checks, unless the caller made them
    if executor is None:
        executor = ThreadExecutor(max_workers=max_workers)
    elif max_workers is not None:
        raise ValueError("max_workers= goes with the default executor; give it to your executor instead")
    clock = check_executor(executor).clock or RealClock()
    status, trace, interrupted = execute(
        plan,
        executor,
        clock,
        run_id=run_id,
        listeners=listeners,
        on_intervention=on_intervention,
        namespace=namespace,
        chain=chain,
    )
    if interrupted:
        raise RunInterrupted(
            f"run of {plan.pipeline.id!r} interrupted; the partial trace is in .trace", trace
        )
    if status != SUCCESS:
        text = summary(trace)
        if check:
            raise RunFailed(text, trace)
        if report:
            sys.stderr.write(text + "\n")
    return trace


def summary(trace: pd.DataFrame) -> str:
    """A few lines that say how a run ended and which nodes did not succeed.

    Listed: every step that ended badly, and any stage or group that failed on its own (its
    condition could not be evaluated), each with its error.
    """
    from ..definition.durations import format_duration

    root = trace[trace["kind"] == "pipeline"]
    status = str(root["status"].iloc[0]) if len(root) else "?"
    took = format_duration(float(root["duration_s"].iloc[0])) if len(root) else "?"
    lines = [f"pipeline {trace.attrs.get('pipeline', '')!r} ended {status} after {took}"]
    return "\n".join([*lines, *failure_lines(trace)])


def failure_lines(trace: pd.DataFrame) -> list[str]:
    """One line per node whose last attempt ended badly (Failed, Expired, Aborted, Errored):
    every such step, and every stage or group that failed on its own (with its own error).

    Bounded, whatever the run: each error's first lines, each of at most ``MESSAGE_LIMIT``
    characters (:func:`~notebook_pipelines.errors.excerpt`); at most :data:`MAX_SUMMARY_LINES`
    nodes, and a line saying how many more.

    A step that failed and then succeeded on a retry is not listed.

    >>> import notebook_pipelines as nbp
    >>> p = nbp.Pipeline("p")
    >>> with p.stage("s") as s:
    ...     _ = s.step("a", failure_strategies=nbp.Retry(1))
    ...     _ = s.step("b")
    >>> failure_lines(nbp.simulate(p, failures={"a": [1], "b": "Timeout"}))
    ['  ✗ pipeline.stages.s.spec.execution.steps.b — Failed (Timeout): injected failure (attempt 1)']
    """
    last = trace[trace["kind"] != "pipeline"].drop_duplicates("fqn", keep="last")
    broke = last["status"].astype(str).isin(["Failed", "Expired", "Aborted", "Errored"])
    own_error = (last["kind"] == "step") | last["error"].notna()
    lines = []
    rows = last[broke & own_error]
    for row in rows.head(MAX_SUMMARY_LINES).itertuples(index=False):
        kind = (
            f" ({excerpt(row.error_type, 80)})" if isinstance(row.error_type, str) else ""
        )  # none for an abort
        detail = (
            f"{kind}: {_bounded(printable(row.error, keep=chr(10)))}" if isinstance(row.error, str) else ""
        )
        lines.append(f"  ✗ {row.fqn} — {row.status}{detail}")
    if len(rows) > MAX_SUMMARY_LINES:
        lines.append(f"  … and {len(rows) - MAX_SUMMARY_LINES} more (the trace has them all)")
    return lines
