"""The scheduler: one implementation of the semantics, for every clock and executor.

Design
------
The semantics (serial items, parallel blocks, conditions, failure strategies, retries,
rollback, timeouts, resources) are written as straight-line generator functions, one per
kind of node (``_pipeline``, ``_stage``, ``_group``, ``_step``). A generator *yields an
effect* when it must wait and is resumed with the result:

``(ALL, [gen, ...])``
    run these children concurrently; resume with their statuses when all are terminal.
``(EXEC, node, attempt, scope)``
    run the step's body on the executor; resume with an :class:`Outcome`.
``(SLEEP, seconds)``, ``(ASK, request)``, ``(ACQUIRE, key)``
    a retry interval, a manual intervention, a resource shared by parallel stages (D8).

The scheduler is a single-threaded loop over a ready queue, a timer heap and an inbox that
executors post completions to. There is no thread per step and no polling: the loop blocks
on the inbox until the next timer is due. What time it is and where bodies run are plug-ins:

- :class:`RealClock` + :class:`~notebook_pipelines.engine.executors.threads.ThreadExecutor`
  (``run()``): wall clock, bodies on a pool of reused threads;
- :class:`~notebook_pipelines.engine.executors.virtual.VirtualClock` + ``VirtualExecutor``
  (``simulate()``): the clock jumps to the next timer; a body "takes" its declared duration.

State is small and explicit: a :class:`Scope` per running pipeline, stage or step group
holds "successful so far" (R30), a stop reason (rollback requested, timeout, abort) and
what ran (for rollback order, R36). Every record goes to a :class:`~.trace.Recorder`;
the DataFrame is built once at the end. A run that fails, aborts or is interrupted still
returns (or carries) its complete trace.

Timeouts: a Python thread cannot be killed. A step that times out is told to stop through
its context (``ctx.cancelled``, ``ctx.sleep`` wakes up) and an exception is raised in its
thread at the next Python instruction; it is recorded ``Expired`` at the deadline and the
run goes on without waiting for it.
"""

from __future__ import annotations

import heapq
import itertools
import queue
import signal
import sys
import threading
import time
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from ..definition.failure import (
    ManualIntervention,
)
from ..definition.plan import Plan, PlanNode, as_plan
from ..errors import ExpressionError, PipelineError, RunFailed, RunInterrupted, StepError
from .context import CURRENT_CONTEXT, StepCancelled, StepContext, _current
from .semantics import (
    ABORTED,
    ACQUIRE,
    ALL,
    ASK,
    EXEC,
    EXPIRED,
    FAILED,
    NOT_STARTED,
    SKIPPED,
    SLEEP,
    SUCCESS,
    Scope,
    Semantics,
)
from .trace import Recorder, build_trace

__all__ = [
    "InterventionRequest",
    "Outcome",
    "RealClock",
    "Scheduler",
    "StepCancelled",
    "StepContext",
    "execute",
    "last_trace",
    "run",
]

_LAST: list = [None]


def last_trace():
    """The trace of the last run or simulation in this process (also after an interrupt)."""
    return _LAST[0]


class Outcome:
    """The result of one execution of a step body."""

    __slots__ = ("end", "error", "error_type", "log", "outputs", "start", "status", "worker")

    def __init__(
        self,
        status: str,
        start: float,
        end: float,
        worker: str | None = None,
        error_type: str | None = None,
        error: str | None = None,
        outputs: dict | None = None,
        log: str | None = None,
    ):
        self.status, self.start, self.end, self.worker = status, start, end, worker
        self.error_type, self.error, self.outputs, self.log = error_type, error, outputs, log


class Job:
    """One execution of a step body, handed to an executor."""

    __slots__ = ("attempt", "ctx", "data", "done", "node", "submitted", "task", "timer")

    def __init__(self, node: PlanNode, attempt: int, ctx: StepContext, task: Task, submitted: float):
        self.node, self.attempt, self.ctx, self.task = node, attempt, ctx, task
        self.done, self.timer, self.submitted, self.data = False, None, submitted, None


class Task:
    __slots__ = ("gen", "index", "parent", "pending", "results", "scope")

    def __init__(self, gen: Any, parent: Task | None, index: int):
        self.gen, self.parent, self.index = gen, parent, index
        self.pending, self.results, self.scope = 0, None, None


class InterventionRequest:
    """A manual intervention waiting for an answer (R20, D12).

    A front-end (the live widget) shows ``choices`` and calls :meth:`answer`.
    """

    def __init__(
        self, scheduler: Scheduler, task: Task, node: PlanNode, outcome: Outcome, action: ManualIntervention
    ):
        self._scheduler, self._task = scheduler, task
        self.node, self.fqn, self.outcome, self.action = node, node.fqn, outcome, action
        self.choices = tuple(action.choices)
        self.timeout = _seconds(action.timeout)
        self.answered: str | None = None

    def answer(self, choice: str) -> None:
        """Answer with one of ``choices``; safe to call from any thread."""
        if choice not in self.choices:
            raise ValueError(f"{choice!r} is not one of {', '.join(self.choices)}")
        self._scheduler.inbox.put((self._scheduler._answered, (self, choice)))

    def __repr__(self) -> str:
        return f"<InterventionRequest {self.fqn} choices={self.choices}>"


def _seconds(value: Any) -> float:
    from ..definition.durations import parse_duration

    return parse_duration(value) or 0.0


class RealClock:
    """Wall clock; waiting blocks on the executors' inbox until the next timer is due."""

    name = "wall"

    def __init__(self) -> None:
        self.epoch_ns = time.time_ns()
        self._t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self._t0

    #: Cap each wait at 0.1 s so that a KeyboardInterrupt is seen promptly. Not needed when the
    #: scheduler's own SIGINT handler runs (it wakes the loop through the inbox): then the loop
    #: sleeps until an event or the next timer, without waking.
    poll = True

    def wait(self, inbox: queue.SimpleQueue, deadline: float | None) -> Any:
        if self.poll:
            timeout = 0.1 if deadline is None else max(0.0, min(deadline - self.now(), 0.1))
        else:
            timeout = None if deadline is None else max(0.0, deadline - self.now())
        try:
            return inbox.get(timeout=timeout)
        except queue.Empty:
            return None


def call_body(node: PlanNode, ctx: StepContext, namespace: dict | None = None, spec: Any = None) -> Any:
    """Run a step body: a callable (with ``ctx`` when it takes an argument) or code text.

    A body-less step with a ``type`` runs the handler registered for that type
    (:mod:`notebook_pipelines.engine.steptypes`) with ``spec``: its spec as the scheduler resolved it
    before the step started (``None``: ``node.spec``, which then may hold no ``<+…>``).
    """
    body = node.body
    if body is None:
        if node.type is not None:
            from .steptypes import call_handler

            return call_handler(node, ctx, spec)
        return None
    if isinstance(body, str):
        scope = namespace if namespace is not None else {}
        # parallel code bodies share one namespace: ``ctx`` there is a proxy to this thread's context
        _current.ctx = ctx
        scope["ctx"] = CURRENT_CONTEXT
        try:
            exec(compile(body, f"<step {node.fqn}>", "exec"), scope)  # the user's own step code
        finally:
            _current.ctx = None
        missing = [name for name in node.outputs or () if name not in scope]
        if missing:
            raise StepError(
                f"{node.fqn}: the step's code did not assign its output(s) {', '.join(missing)}; "
                "assign them in the body or drop them from the step's outputs"
            )
        return {name: scope[name] for name in node.outputs or ()}
    if node.takes_ctx:
        return body(ctx, **ctx.inputs)
    return body(**ctx.inputs)


def outcome_of_exception(exc: BaseException) -> tuple[str, str, str]:
    """(status, error_type, message) for an exception raised by a body."""
    if isinstance(exc, StepError):
        return FAILED, exc.error_type, str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        return FAILED, "Timeout", f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ConnectionError):
        return FAILED, "Connectivity", f"{type(exc).__name__}: {exc}"
    if isinstance(exc, PermissionError):
        return FAILED, "Authorization", f"{type(exc).__name__}: {exc}"
    return FAILED, "Unknown", f"{type(exc).__name__}: {exc}"


class Scheduler(Semantics):
    """Runs one plan to completion with one clock and one executor. Use :func:`execute`."""

    def __init__(
        self,
        plan: Plan,
        executor: Any,
        clock: Any,
        *,
        run_id: str | None = None,
        listeners: Iterable[Any] = (),
        on_intervention: Callable[[InterventionRequest], Any] | None = None,
        namespace: dict | None = None,
    ):
        self.plan, self.executor, self.clock = plan, executor, clock
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.namespace = namespace
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.ready: deque = deque()
        self.timers: list = []
        self._seq = itertools.count()
        self.waits: dict[Task, Any] = {}
        self.recorder = Recorder()
        self.aborted: str | None = None
        self.interrupted = False
        self.sigint = False  # a Ctrl-C arrived; taken between scheduler steps
        self.resources: dict[str, deque] = {}
        self.outputs: dict[str, dict] = {}
        self.statuses: dict[str, str] = {}
        self._resolved: dict[int, dict] = {}
        self._merged_variables: dict[int, dict] = {}
        self._resolved_spec: dict[int, Any] = {}  # typed steps' specs, resolved before they start
        self.runs: dict[int, int] = {}  # executions per step so far: attempts go on across RetryStepGroup
        self.on_intervention = on_intervention
        self.listeners = list(listeners)
        self._started = [x.node_started for x in self.listeners if hasattr(x, "node_started")]
        self._finished = [x.node_finished for x in self.listeners if hasattr(x, "node_finished")]
        self._asked = [x.intervention for x in self.listeners if hasattr(x, "intervention")]
        self.status: str | None = None
        self._returned: Callable | None = None  # the executor's hook for a finished body, if any
        self.done = False

    # -- the loop -----------------------------------------------------------------------------
    def execute(self) -> str:
        """Run to the end; return the pipeline's status. Raises KeyboardInterrupt after draining."""
        root = Task(self._pipeline(self.plan.root), None, 0)
        self.ready.append((root, None))
        self._returned = getattr(self.executor, "returned", None)
        self.executor.open(self)
        previous = self._defer_sigint()
        if hasattr(self.clock, "poll"):
            self.clock.poll = previous is None
        try:
            try:
                self._loop()
            except KeyboardInterrupt:
                self.interrupted = True
                self.abort("interrupted by the user")
                self._loop()
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            self.executor.close(cancel=self.interrupted or self.aborted is not None)
        return self.status or ABORTED

    def _defer_sigint(self) -> Any:
        """Take Ctrl-C between scheduler steps, never inside a node's generator.

        A KeyboardInterrupt raised while a generator (or a listener it calls) runs would kill
        that generator and leave the run waiting forever. In the main thread, Python's default
        handler is replaced for the run by one that sets a flag (and wakes the loop); the loop
        raises KeyboardInterrupt at a safe point. Returns the handler to restore, or None.
        """
        if threading.current_thread() is not threading.main_thread():
            return None
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return None

        def on_sigint(signum: int, frame: Any) -> None:
            self.sigint = True
            self.inbox.put((_noop, None))  # SimpleQueue.put is safe in a signal handler

        signal.signal(signal.SIGINT, on_sigint)
        return signal.default_int_handler

    def _loop(self) -> None:
        ready, timers, clock = self.ready, self.timers, self.clock
        while True:
            while ready:
                if self.sigint and not self.interrupted:
                    raise KeyboardInterrupt
                task, value = ready.popleft()
                self._advance(task, value)
            if self.done:
                return
            if timers and timers[0][0] <= clock.now():
                entry = heapq.heappop(timers)
                if entry[4]:
                    entry[2](entry[3])
                continue
            item = clock.wait(self.inbox, timers[0][0] if timers else None)
            if item is not None:
                item[0](item[1])
            if self.sigint and not self.interrupted:
                raise KeyboardInterrupt

    def _notify(self, listeners: list, *args: Any) -> bool:
        """Call each listener; one that raises is reported (a warning) and dropped for this run.

        A listener's error must not kill a node's generator (the run would lose its trace).
        Our own errors (``PipelineError``: bad input found while running, such as an invalid
        scripted answer in a simulation) still end the run. Returns False when a listener raised.
        """
        ok = True
        for fn in list(listeners):
            try:
                fn(*args)
            except PipelineError:
                raise  # a deliberate error of ours (e.g. a bad scripted answer in a simulation)
            except Exception as exc:
                ok = False
                listeners.remove(fn)
                warnings.warn(
                    f"listener {getattr(fn, '__qualname__', fn)!r} raised {type(exc).__name__}: {exc}; "
                    "it gets no more events of this run",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return ok

    def call_at(self, when: float, fn: Callable[[Any], None], arg: Any) -> list:
        """Call ``fn(arg)`` from the loop at clock time ``when``; returns a cancellable entry."""
        entry = [when, next(self._seq), fn, arg, True]
        heapq.heappush(self.timers, entry)
        return entry

    def post(self, fn: Callable[[Any], None], arg: Any) -> None:
        """Thread-safe: have the loop call ``fn(arg)`` (executors report completions this way)."""
        self.inbox.put((fn, arg))

    def _advance(self, task: Task, value: Any) -> None:
        try:
            effect = task.gen.send(value)
        except StopIteration as stop:
            self._finish(task, stop.value)
            return
        kind = effect[0]
        if kind is EXEC:
            self._exec(task, effect[1], effect[2], effect[3])
        elif kind is ALL:
            gens = effect[1]
            if not gens:
                self.ready.append((task, []))
                return
            task.pending, task.results = len(gens), [None] * len(gens)
            for i, gen in enumerate(gens):
                self.ready.append((Task(gen, task, i), None))
        elif kind is SLEEP:
            entry = self.call_at(self.clock.now() + effect[1], self._wake, task)
            self.waits[task] = ("timer", entry, effect[2])
        elif kind is ASK:
            self._ask(task, effect[1], effect[2], effect[3], effect[4])
        elif kind is ACQUIRE:
            waiting = self.resources.setdefault(effect[1], deque())
            waiting.append(task)
            if len(waiting) == 1:
                self.ready.append((task, True))
            else:
                self.waits[task] = ("resource", effect[1], effect[2])
        else:  # pragma: no cover - programming error
            raise RuntimeError(f"unknown effect {effect!r}")

    def _finish(self, task: Task, value: Any) -> None:
        parent = task.parent
        if parent is None:
            self.status = value
            self.done = True
            return
        parent.results[task.index] = value
        parent.pending -= 1
        if parent.pending == 0:
            self.ready.append((parent, parent.results))

    def _wake(self, task: Task) -> None:
        if self.waits.pop(task, None) is not None:
            self.ready.append((task, None))

    def _release(self, key: str) -> None:
        waiting = self.resources[key]
        waiting.popleft()
        if waiting:
            nxt = waiting[0]
            self.waits.pop(nxt, None)
            self.ready.append((nxt, True))

    # -- step bodies ----------------------------------------------------------------------------
    def _exec(self, task: Task, node: PlanNode, attempt: int, scope: Scope) -> None:
        now = self.clock.now()
        job = Job(node, attempt, None, task, now)  # executors that run bodies add a context
        self.waits[task] = ("job", job, scope)
        self._notify(self._started, node, attempt, now)
        if node.timeout is not None:
            job.timer = self.call_at(now + node.timeout, self._expire, job)
        self.executor.submit(job)

    def complete(self, job: Job, outcome: Outcome) -> None:
        """Called in the loop (directly or through :meth:`post`) when a body has finished."""
        if self._returned is not None:
            self._returned(job)
        if job.done:
            return  # it timed out or was aborted before; its late result is ignored
        job.done = True
        if job.timer is not None:
            job.timer[4] = False
        del self.waits[job.task]
        self.ready.append((job.task, outcome))

    def _complete_posted(self, item: tuple) -> None:
        self.complete(item[0], item[1])

    def _expire(self, job: Job) -> None:
        if job.done:
            return
        job.done = True
        self.executor.cancel(job)
        del self.waits[job.task]
        now = self.clock.now()
        text = f"timed out after {job.node.timeout:g}s"
        worker, log = _partial(job)
        self.ready.append((job.task, Outcome(EXPIRED, job.submitted, now, worker, "Timeout", text, log=log)))

    def context(self, job: Job) -> StepContext:
        """The step context for ``job`` (made when an executor is about to run its body)."""
        job.ctx = StepContext(
            job.node, job.attempt, self.run_id, self._variables(job.node), self._inputs(job.node)
        )
        return job.ctx

    def _variables(self, node: PlanNode) -> dict:
        """The variables a node sees (pipeline, stage, groups, its own; innermost wins): merged
        once per node (the plan does not change), a fresh copy for each body to use."""
        merged = self._merged_variables.get(node.index)
        if merged is None:
            merged = dict(self._variables(node.parent)) if node.parent is not None else {}
            merged.update(node.variables or {})
            self._merged_variables[node.index] = merged
        return dict(merged)

    def _inputs(self, node: PlanNode) -> dict:
        return self._resolved.get(node.index, node.inputs) or {}

    def _resolve_inputs(self, node: PlanNode) -> str | None:
        """Resolve the step's inputs just before it runs (R42–R47); the error text, if any."""
        from ..definition.references import resolve_inputs

        try:
            self._resolved[node.index] = resolve_inputs(self, node)
        except ExpressionError as err:
            return str(err)
        return None

    # -- interventions --------------------------------------------------------------------------
    def _ask(self, task: Task, node: PlanNode, outcome: Outcome, action: ManualIntervention, scope: Scope):
        request = InterventionRequest(self, task, node, outcome, action)
        entry = self.call_at(self.clock.now() + request.timeout, self._intervention_timeout, request)
        self.waits[task] = ("ask", (request, entry), scope)
        self._notify(self._asked, request)
        if self.on_intervention is not None and not self._notify([self.on_intervention], request):
            self.on_intervention = None  # it raised: from now on interventions wait their timeout

    def _answered(self, item: tuple) -> None:
        request, choice = item
        wait = self.waits.get(request._task)
        if wait is None or wait[0] != "ask" or wait[1][0] is not request:
            return  # already timed out or aborted
        wait[1][1][4] = False
        del self.waits[request._task]
        request.answered = choice
        self.ready.append((request._task, choice))

    def _intervention_timeout(self, request: InterventionRequest) -> None:
        if self.waits.pop(request._task, None) is not None:
            self.ready.append((request._task, None))

    # -- stopping -------------------------------------------------------------------------------
    def abort(self, reason: str) -> None:
        """Abort the run: running steps end Aborted, nothing new starts (R21, E15)."""
        if self.aborted is not None:
            return
        self.aborted = reason
        self._cancel_waits(lambda wait: True, ABORTED, None, reason)

    def _expire_scope(self, scope: Scope) -> None:
        scope.expired = True
        scope.stop = f"{scope.node.kind.replace('_', ' ')} timed out"
        text = f"{scope.node.fqn} timed out after {scope.node.timeout:g}s"
        self._cancel_waits(
            lambda wait: wait[2] is not None and wait[2].within(scope), EXPIRED, "Timeout", text
        )

    def _cancel_waits(self, match: Callable, status: str, error_type: str | None, text: str) -> None:
        now = self.clock.now()
        for task, wait in list(self.waits.items()):
            if not match(wait):
                continue
            del self.waits[task]
            if wait[0] == "job":
                job = wait[1]
                job.done = True
                if job.timer is not None:
                    job.timer[4] = False
                self.executor.cancel(job)
                worker, log = _partial(job)
                outcome = Outcome(status, job.submitted, now, worker, error_type, text, log=log)
                self.ready.append((task, outcome))
            elif wait[0] == "timer":
                wait[1][4] = False
                self.ready.append((task, None))
            elif wait[0] == "ask":
                wait[1][1][4] = False
                self.ready.append((task, None))
            elif wait[0] == "resource":
                self.resources[wait[1]].remove(task)
                self.ready.append((task, False))

    def _stop_reason(self, scope: Scope) -> str | None:
        if self.aborted is not None:
            return self.aborted
        cur: Scope | None = scope
        while cur is not None:
            if cur.stop is not None:
                return cur.stop
            cur = cur.parent
        return None

    # -- records --------------------------------------------------------------------------------
    def _record(
        self, node: PlanNode, attempt: int, status: str, start: float | None, end: float | None, **info: Any
    ):
        row = (
            node.index,
            info.get("iteration"),
            attempt,
            status,
            info.get("reason"),
            start,
            end,
            info.get("worker"),
            info.get("error_type"),
            info.get("error"),
            info.get("action"),
            info.get("outputs"),
            info.get("log"),
            self._inputs_of(node),
        )
        self._add(node, row)

    def _add(self, node: PlanNode, row: tuple) -> None:
        self.recorder.add(row)
        self.statuses[node.fqn] = row[3]
        self._notify(self._finished, node, row)

    def _inputs_of(self, node: PlanNode) -> dict | None:
        return self._resolved.get(node.index) if node.inputs else None

    def _mark(self, items: Iterable[PlanNode], status: str, reason: str, now: float | None) -> None:
        """Record ``status`` (Skipped / NotStarted) for these nodes and everything below them."""
        for item in items:
            nodes = item.items if item.kind == "parallel" else (item,)
            for top in nodes:
                for node in top.walk():
                    if node.index in self.recorder.seen and node is not top:
                        continue
                    why = reason if node is top else "parent skipped" if status == SKIPPED else reason
                    self._record(node, 0, status, now, now, reason=why)

    def fill_not_started(self) -> None:
        """D6: every node without a record gets a NotStarted row."""
        seen = self.recorder.seen
        why = self.aborted or "not reached"
        for node in self.plan.nodes:
            if node.index not in seen:
                self._record(node, 0, NOT_STARTED, None, None, reason=why)

    # -- conditions -----------------------------------------------------------------------------


def _noop(_: Any) -> None:
    return None


def _partial(job: Job) -> tuple[str | None, str | None]:
    """(worker, output printed so far) of a job the scheduler stops waiting for.

    An executor that captures output may set ``job.data = (worker_name, list_of_text)``.
    """
    if isinstance(job.data, tuple) and len(job.data) == 2:
        worker, buffer = job.data
        return worker, "".join(buffer) or None
    return None, None


def execute(
    plan: Plan,
    executor: Any,
    clock: Any,
    *,
    run_id: str | None = None,
    listeners: Iterable[Any] = (),
    on_intervention: Callable | None = None,
    namespace: dict | None = None,
):
    """Run ``plan`` with ``executor`` and ``clock``; return ``(status, trace, interrupted)``."""
    scheduler = Scheduler(
        plan,
        executor,
        clock,
        run_id=run_id,
        listeners=listeners,
        on_intervention=on_intervention,
        namespace=namespace,
    )
    status = scheduler.execute()
    scheduler.fill_not_started()
    trace = build_trace(plan, scheduler.recorder.rows, scheduler.run_id, clock.epoch_ns)
    _LAST[0] = trace
    scheduler._notify([x.run_finished for x in scheduler.listeners if hasattr(x, "run_finished")], trace)
    return status, trace, scheduler.interrupted


def run(
    pipeline: Any,
    *,
    executor: Any = None,
    run_id: str | None = None,
    listeners: Iterable[Any] = (),
    on_intervention: Callable | None = None,
    namespace: dict | None = None,
    check: bool = False,
    report: bool = True,
):
    """Run a pipeline in the kernel and return its trace (a pandas DataFrame).

    Args:
        pipeline: a :class:`~notebook_pipelines.definition.model.Pipeline` (validated first: an invalid
            pipeline raises ``DefinitionError`` and runs nothing), or its compiled ``Plan``.
        executor: where bodies run; default a pool of reused threads in this process.
        run_id: fix the run id (default: random).
        listeners: objects with any of ``node_started(node, attempt, t)``,
            ``node_finished(node, row)``, ``intervention(request)``, ``run_finished(trace)``.
        on_intervention: called with an :class:`InterventionRequest` when a manual
            intervention waits (D12); without one the run waits the timeout.
        namespace: the globals that code-text step bodies run in.
        check: raise :class:`~notebook_pipelines.errors.RunFailed` (carrying the trace) when
            the pipeline does not end ``Success``.
        report: print a short summary to stderr when the pipeline does not end ``Success``.

    Raises:
        RunInterrupted: on Ctrl-C / kernel interrupt, after every worker has stopped; its
            ``trace`` is the partial trace (also ``nbp.last_trace()``).
    """
    from .executors.threads import ThreadExecutor
    from .steptypes import check_runnable

    plan = as_plan(pipeline)
    check_runnable(plan)  # typed steps without a handler: refuse before anything starts
    executor = executor if executor is not None else ThreadExecutor()
    clock = getattr(executor, "clock", None) or RealClock()
    status, trace, interrupted = execute(
        plan,
        executor,
        clock,
        run_id=run_id,
        listeners=listeners,
        on_intervention=on_intervention,
        namespace=namespace,
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


def summary(trace: Any) -> str:
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


def failure_lines(trace: Any) -> list[str]:
    """One line per node whose last attempt ended badly (Failed, Expired, Aborted, Errored):
    every such step, and every stage or group that failed on its own (with its own error).

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
    for row in last[broke & own_error].itertuples(index=False):
        detail = f" ({row.error_type}): {row.error}" if isinstance(row.error, str) else ""
        lines.append(f"  ✗ {row.fqn} — {row.status}{detail}")
    return lines
