"""The scheduler: one implementation of the semantics, for every clock and executor.

Design
------
The rules (:mod:`.semantics`) are generator functions, one per kind of node. A generator
*yields an effect* when it must wait and is resumed with the result:

``(ALL, [gen, ...])``
    run these children concurrently; resume with their statuses when all are terminal.
``(EXEC, node, attempt, scope)``
    run the step's body on the executor; resume with an :class:`~.executors.base.Outcome`.
``(SLEEP, seconds, scope)``, ``(ASK, node, outcome, action, scope)``, ``(ACQUIRE, key, scope)``
    a retry interval, a manual intervention, a resource shared by parallel stages (D8).

The scheduler is a single-threaded loop over a ready queue, a timer heap (:class:`~.runtime.Timer`
handles) and an inbox that executors post completions to. There is no thread per step and no
polling: the loop blocks on the inbox until the next timer is due (on the main thread in
slices of :data:`WAKE_EVERY` seconds, so that ``_thread.interrupt_main()`` — which sends no
real signal — is seen too). What time it is and where bodies run are plug-ins (the
:class:`~.executors.base.Clock` and :class:`~.executors.base.Executor` protocols):

- :class:`RealClock` + :class:`~.executors.threads.ThreadExecutor` (``run()``): wall
  clock, bodies on a warm pool of reused worker threads;
- :class:`~.executors.virtual.VirtualClock` + ``VirtualExecutor`` (``simulate()``): the clock
  jumps to the next timer; a body "takes" its declared duration.

The rules see the run only through :class:`~.runtime.Runtime` (implemented here); executors
see it only through :class:`~.executors.base.ServedRun` (``now``, ``complete``, ``call_at``).
Trace rows are :class:`~.trace.Record` s built in :meth:`Scheduler.record` alone.

Stopping: a step whose timeout passes is ``Expired`` at its deadline and the run goes on; an
abort or an interrupt ends every running step ``Aborted`` at once. In each case the executor
is told to stop the body (``ctx.cancelled``, ``ctx.sleep`` wakes, an exception where one can be
raised) and is never waited for: a body that ignores it is left behind, its late result
discarded. Ctrl-C is taken between scheduler steps (a SIGINT handler sets a flag), so a
generator is never killed half-way; the run then drains to a complete trace and raises.
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
from types import MappingProxyType
from typing import Any

from ..definition.failure import ManualIntervention
from ..definition.plan import Plan, PlanNode, as_plan
from ..definition.statuses import ABORTED, EXPIRED, FAILED, NOT_STARTED, POSITIVE, SKIPPED, SUCCESS
from ..errors import (
    MESSAGE_LIMIT,
    ExpressionError,
    NestedRunError,
    PipelineError,
    RunFailed,
    RunInterrupted,
    excerpt,
    printable,
)
from . import registry
from .context import StepCancelled, StepContext
from .executors.base import Job, Outcome, call_body, check_executor, message_of, outcome_of_exception
from .runtime import Ask, Gate, Queue, Sleep, Timer
from .semantics import ACQUIRE, ALL, ASK, BARRIER, EXEC, SLEEP, Rules, Scope
from .trace import Record, Recorder, build_trace, make_record

__all__ = [
    "MAX_NESTED_RUNS",
    "WAKE_EVERY",
    "InterventionRequest",
    "Outcome",
    "RealClock",
    "RunResult",
    "Scheduler",
    "StepCancelled",
    "StepContext",
    "call_body",
    "execute",
    "last_trace",
    "outcome_of_exception",
    "run",
]

#: The main thread waits in slices this long, so that a Ctrl-C or ``_thread.interrupt_main()``
#: is seen within it even while nothing happens (an event wakes the loop at once, whatever it).
WAKE_EVERY = 0.1

_LAST: list = [None]

#: At most this many runs nested inside step bodies (a body's ``run()`` of another pipeline):
#: each level holds a worker thread while the one below runs.
MAX_NESTED_RUNS = 8
#: The real runs going on in this process, to find the run that a ``run()`` is called inside.
_RUNNING: set = set()
#: The most failure lines a run's summary lists (the trace has them all).
MAX_SUMMARY_LINES = 30


def last_trace():
    """The trace of the last run or simulation in this process (also after an interrupt)."""
    return _LAST[0]


class Task:
    """A running generator and where its result goes (its parent's slot ``index``)."""

    __slots__ = ("gen", "index", "parent", "pending", "results")

    def __init__(self, gen: Any, parent: Task | None, index: int):
        self.gen, self.parent, self.index = gen, parent, index
        self.pending, self.results = 0, None


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
        self._scheduler.post(self._scheduler._answered, (self, choice))

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
        #: wait in slices (set on the main thread, where signals arrive)
        self.slice: float | None = None

    def now(self) -> float:
        return time.perf_counter() - self._t0

    def wait(self, inbox: queue.SimpleQueue, deadline: float | None) -> Any:
        timeout = None if deadline is None else max(0.0, deadline - self.now())
        if self.slice is not None and (timeout is None or timeout > self.slice):
            timeout = self.slice
        try:
            return inbox.get(timeout=timeout)
        except queue.Empty:
            return None


class RunResult:
    """What :func:`execute` returns: the pipeline's status, the trace, and whether the run
    was interrupted (Ctrl-C)."""

    __slots__ = ("interrupted", "status", "trace")

    def __init__(self, status: str, trace: Any, interrupted: bool):
        self.status, self.trace, self.interrupted = status, trace, interrupted

    def __iter__(self):  # (status, trace, interrupted), as a tuple
        return iter((self.status, self.trace, self.interrupted))


class Scheduler:
    """Runs one plan to completion with one clock and one executor. Use :func:`execute`.

    Implements :class:`~.runtime.Runtime` for the rules and
    :class:`~.executors.base.ServedRun` for the executor.
    """

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
        loop_counts: dict | None = None,
    ):
        self.plan, self.executor, self.clock = plan, executor, clock
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.namespace = namespace
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.ready: deque = deque()
        self.timers: list = []  # heap of (when, seq, Timer)
        self._seq = itertools.count()
        self.waits: dict[
            Task, Any
        ] = {}  # what each waiting generator waits for (runtime.Job/Sleep/Ask/Queue)
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
        # looping strategies (R46–R54): the run's copies of looped nodes, one subtree per
        # iteration, indexed after the plan's nodes; references resolve against ``view``
        self.extra: list[PlanNode] = []
        self.view: Any = plan
        self.loop_counts: dict | None = loop_counts
        self.barriers: dict[str, _Barrier] | None = None  # made when a Barrier step first arrives
        self.runs_handlers = bool(check_executor(executor).runs_handlers)
        self.on_intervention = on_intervention
        self.listeners = list(listeners)
        self._started = [x.node_started for x in self.listeners if hasattr(x, "node_started")]
        self._finished = [x.node_finished for x in self.listeners if hasattr(x, "node_finished")]
        self._asked = [x.intervention for x in self.listeners if hasattr(x, "intervention")]
        self.status: str | None = None
        self.done = False
        self._loop_thread: int | None = None
        #: the runs this one is nested in, outermost first: (pipeline id, where it was started)
        self.chain: tuple[tuple[str, str], ...] = ()
        self._callbacks: list[threading.Thread] = []  # on_intervention calls (off the loop)

    # -- the loop -----------------------------------------------------------------------------
    def execute(self) -> str:
        """Run to the end; return the pipeline's status. After a Ctrl-C the run is aborted,
        drained to a complete trace, and ``interrupted`` is set."""
        root = Task(Rules(self).pipeline(self.plan.root), None, 0)
        self.ready.append((root, None))
        self._loop_thread = threading.get_ident()
        self.executor.open(self)
        previous = self._defer_sigint()
        if isinstance(self.clock, RealClock) and threading.current_thread() is threading.main_thread():
            self.clock.slice = WAKE_EVERY
        try:
            started = [x.run_started for x in self.listeners if hasattr(x, "run_started")]
            if started:
                self._notify(started, self)
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
            if self._callbacks:
                self._left_callbacks()
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
        ready, timers, clock, advance = self.ready, self.timers, self.clock, self._advance
        now, pop, heappop = clock.now, ready.popleft, heapq.heappop
        flush = getattr(self.executor, "flush", None)  # an executor may take jobs in batches
        while True:
            while ready:
                if self.sigint and not self.interrupted:
                    raise KeyboardInterrupt
                task, value = pop()
                advance(task, value)
            if flush is not None:
                flush()
            if self.done:
                return
            if timers and timers[0][0] <= now():
                timer = heappop(timers)[2]
                if timer.active:
                    timer.active = False
                    timer.fn(timer.arg)
                continue
            item = clock.wait(self.inbox, timers[0][0] if timers else None)
            if item is not None:
                item[0](item[1])
            if self.sigint and not self.interrupted:
                raise KeyboardInterrupt

    def _notify(self, listeners: list, *args: Any) -> bool:
        """Call each listener; one that raises is reported (a warning) and dropped for this run.

        A listener's error must not kill a node's generator (the run would lose its trace).
        In a simulation, our own errors (``PipelineError``: bad input found while running, such
        as an invalid scripted answer) still end the run; in a real run they are a listener's
        error like any other (a listener's ``run()`` refused with ``NestedRunError``, say).
        Returns False when a listener raised.
        """
        ok = True
        for fn in list(listeners):
            try:
                fn(*args)
            except PipelineError:
                if not isinstance(self.clock, RealClock):
                    raise  # a deliberate error of ours (e.g. a bad scripted answer in a simulation)
                ok = self._dropped(listeners, fn, sys.exc_info()[1])
            except KeyboardInterrupt:
                raise  # the loop takes it: the run is interrupted, with its trace
            except BaseException as exc:  # SystemExit too: it must not end the run without a trace
                ok = self._dropped(listeners, fn, exc)
        return ok

    @staticmethod
    def _dropped(listeners: list, fn: Any, exc: BaseException) -> bool:
        listeners.remove(fn)
        warnings.warn(
            f"listener {_name(fn)} raised {type(exc).__name__}: "
            f"{excerpt(message_of(exc), MESSAGE_LIMIT)}; it gets no more events of this run",
            RuntimeWarning,
            stacklevel=3,
        )
        return False

    # -- what executors and the rules call (ServedRun, Runtime) ---------------------------------
    def now(self) -> float:
        return self.clock.now()

    def call_at(self, when: float, fn: Callable[[Any], None], arg: Any) -> Timer:
        """Call ``fn(arg)`` from the loop at clock time ``when``; returns a cancellable handle."""
        timer = Timer(when, fn, arg)
        heapq.heappush(self.timers, (when, next(self._seq), timer))
        return timer

    def post(self, fn: Callable[[Any], None], arg: Any) -> None:
        """Thread-safe: have the loop call ``fn(arg)`` soon."""
        self.inbox.put((fn, arg))

    def complete(self, job: Job, outcome: Outcome) -> None:
        """A body finished; safe from any thread. A late result (timed out, aborted) is dropped."""
        if threading.get_ident() != self._loop_thread:
            self.inbox.put((self._completed, (job, outcome)))
        else:
            self._completed((job, outcome))

    def _completed(self, item: tuple) -> None:
        job, outcome = item
        if job.done:
            return  # it timed out or was aborted before; its late result is ignored
        job.done = True
        del self.waits[job.task]
        if job.timer is not None:
            job.timer.active = False
        self.ready.append((job.task, outcome))

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
            self.ready.extend([(Task(gen, task, i), None) for i, gen in enumerate(gens)])
        elif kind is SLEEP:
            self.waits[task] = Sleep(self.call_at(self.clock.now() + effect[1], self._wake, task), effect[2])
        elif kind is ASK:
            self._ask(task, effect[1], effect[2], effect[3], effect[4])
        elif kind is ACQUIRE:
            waiting = self.resources.setdefault(effect[1], deque())
            waiting.append(task)
            if len(waiting) == 1:
                self.ready.append((task, True))
            else:
                self.waits[task] = Queue(effect[1], effect[2])
        elif kind is BARRIER:
            self._arrive(task, effect[1], effect[2])
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

    def release(self, key: str) -> None:
        waiting = self.resources[key]
        waiting.popleft()
        if waiting:
            nxt = waiting[0]
            self.waits.pop(nxt, None)
            self.ready.append((nxt, True))

    # -- step bodies ----------------------------------------------------------------------------
    def _exec(self, task: Task, node: PlanNode, attempt: int, scope: Scope) -> None:
        now = self.clock.now()
        job = Job(self, node, attempt, scope, now)
        job.task = task
        job.timer = self.call_at(now + node.timeout, self._expire_job, job) if node.timeout else None
        if node.body is None and node.type is not None:
            job.spec = self._resolved_spec.get(node.index)
        job.namespace = self.namespace
        self.waits[task] = job
        if self._started:
            self._notify(self._started, node, attempt, now)
        self.executor.submit(job)

    def _expire_job(self, job: Job) -> None:
        if job.done:
            return
        self._settle(job.task, job, EXPIRED, "Timeout", f"timed out after {job.node.timeout:g}s")

    def context(self, node: PlanNode, attempt: int) -> StepContext:
        """The step context for one execution of ``node`` (made when a body is about to run)."""
        return StepContext(node, attempt, self.run_id, self._variables(node), self._inputs(node))

    def _variables(self, node: PlanNode) -> dict:
        """The variables a node sees (pipeline, stage, groups, its own; innermost wins): merged
        once per node (the plan does not change), a fresh copy for each body to use."""
        return dict(self._merged(node))

    def _merged(self, node: PlanNode) -> dict:
        """The merged variables of ``node``, never changed once made: a node without variables
        of its own shares its parent's dict (one copy per body, none per step)."""
        merged = self._merged_variables.get(node.index)
        if merged is None:
            merged = self._merged(node.parent) if node.parent is not None else {}
            if node.variables:
                merged = {**merged, **node.variables}
            self._merged_variables[node.index] = merged
        return merged

    def _inputs(self, node: PlanNode) -> dict:
        return self._resolved.get(node.index, node.inputs) or {}

    def resolve_inputs(self, node: PlanNode) -> str | None:
        """Resolve the step's inputs just before it runs (R42–R47); the error text, if any."""
        from ..definition.references import resolve_inputs

        try:
            self._resolved[node.index] = resolve_inputs(self, node)
        except ExpressionError as err:
            return str(err)
        return None

    def resolve_spec(self, node: PlanNode) -> str | None:
        """Resolve a typed step's spec just before it runs (D13); the error text, if any."""
        from .steptypes import resolve_spec

        try:
            self._resolved_spec[node.index] = resolve_spec(self, node, node.spec or {})
        except ExpressionError as err:
            return str(err)
        return None

    # -- looping strategies (R46–R54) ---------------------------------------------------------
    def evaluate(self, node: PlanNode, value: Any) -> Any:
        """The value of ``value`` (text with ``<+…>``) for ``node`` now; raises ExpressionError."""
        from ..definition.references import render_template

        return render_template(self, node, value)

    def warn(self, message: str) -> None:
        from ..definition.looping import LoopingWarning

        warnings.warn(message, LoopingWarning, stacklevel=2)

    def expand(self, node: PlanNode, iteration: Any) -> PlanNode:
        """The run's copy of ``node`` (and everything below it) for one iteration (R46, D11).

        The copy's identifier and FQN carry the iteration's postfix (``build_0_1``); its
        descendants' FQNs follow; every copy gets an index after the plan's nodes (its trace
        rows carry its own FQN) and is found by references (``view.by_fqn``). Looped nodes
        below keep their strategy: they expand when their copy starts.
        """
        if self.view is self.plan:
            self.view = _RunView(self.plan)
        by_fqn, extra, base = self.view.by_fqn.maps[0], self.extra, len(self.plan.nodes)
        old, new = node.fqn, node.fqn + iteration.postfix
        taken = self.view.by_fqn.get(new)
        if taken is not None and (taken.origin or taken) is not (node.origin or node):
            from ..definition.looping import LoopingError

            raise LoopingError(  # R46: run-time items name an iteration as another node
                f"iteration {iteration.index} would be {new}, which is the {taken.kind.replace('_', ' ')} "
                f"{taken.id!r}: rename one of them (an iteration's identifier is the node's plus its postfix)"
            )
        copies: dict[int, PlanNode] = {}

        def copy(n: PlanNode) -> PlanNode:
            c = PlanNode.__new__(PlanNode)
            c.__dict__.update(n.__dict__)
            copies[id(n)] = c
            c.origin = n.origin or n
            c.fqn = new + n.fqn[len(old) :]
            c.iteration = iteration.index
            if n.kind != "parallel":
                c.index = base + len(extra)
                extra.append(c)
                by_fqn[c.fqn] = c
            if n is not node:
                c.parent = copies.get(id(n.parent), n.parent)
                c.stage = copies.get(id(n.stage), n.stage)
                c.group = copies.get(id(n.group), n.group)
            if n.items:
                c.items = tuple(copy(i) for i in n.items)
            if n.rollback:
                c.rollback = tuple(copy(i) for i in n.rollback)
            return c

        root = PlanNode.__new__(PlanNode)
        root.__dict__.update(node.__dict__)
        copies[id(node)] = root
        root.origin = node.origin or node
        root.id, root.fqn, root.iteration = node.id + iteration.postfix, new, iteration.index
        root.name = f"{node.name}{iteration.postfix}"
        root.strategy, root.loop, root.looped = None, iteration, node
        root.index = base + len(extra)
        extra.append(root)
        by_fqn[new] = root
        if node.kind == "stage":
            root.stage = root
        elif node.kind == "step_group":
            root.group = root
        if node.items:
            root.items = tuple(copy(i) for i in node.items)
        if node.rollback:
            root.rollback = tuple(copy(i) for i in node.rollback)
        name = getattr(node.strategy, "node_name", None)
        if isinstance(name, str):
            try:
                root.name = str(self.evaluate(root, name))
            except ExpressionError:
                pass  # the default name stays; the strategy's nodeName is only for display
        return root

    # -- barriers (R55–R58, E11) -----------------------------------------------------------------
    def _barrier(self, ref: str) -> _Barrier:
        if self.barriers is None:
            self.barriers = {}
            for node in self.plan.nodes:
                if node.barrier is not None:
                    self.barriers.setdefault(node.barrier, _Barrier()).expected += 1
        return self.barriers.setdefault(ref, _Barrier())

    def expanded(self, node: PlanNode, copies: list[PlanNode]) -> None:
        """The looped ``node`` runs as ``copies``: their Barrier steps take the place of its own."""
        if self.barriers is None and not any(n.barrier is not None for n in self.plan.nodes):
            return
        for n in node.walk():
            if n.barrier is not None:
                self._barrier(n.barrier).expected -= 1
        for copy in copies:
            for n in copy.walk():
                if n.barrier is not None:
                    self._barrier(n.barrier).expected += 1
        for ref in list(self.barriers or ()):
            self._open_if_complete(ref)

    def _arrive(self, task: Task, node: PlanNode, scope: Scope) -> None:
        gate = self._barrier(node.barrier)
        gate.arrived.add(node.index)
        if gate.broken is not None:
            self.ready.append((task, (FAILED, gate.error_type, gate.broken)))
            return
        timer = None
        if node.timeout:
            timer = self.call_at(self.clock.now() + node.timeout, self._barrier_timeout, task)
        self.waits[task] = Gate(node.barrier, node, timer, scope)
        gate.waiting.append(task)
        self._open_if_complete(node.barrier)

    def _open_if_complete(self, ref: str) -> None:
        gate = self.barriers[ref]
        if gate.waiting and gate.broken is None and len(gate.arrived) >= gate.expected:
            for task in gate.waiting:
                wait = self.waits.pop(task)
                if wait.timer is not None:
                    wait.timer.cancel()
                self.ready.append((task, None))
            gate.waiting.clear()

    def _break(self, ref: str, error_type: str, text: str) -> None:
        """A participant will not arrive (R57, E11): the ones waiting fail at the barrier."""
        gate = self.barriers[ref]
        gate.broken, gate.error_type = text, error_type
        for task in gate.waiting:
            wait = self.waits.pop(task)
            if wait.timer is not None:
                wait.timer.cancel()
            self.ready.append((task, (FAILED, error_type, text)))
        gate.waiting.clear()

    def _barrier_timeout(self, task: Task) -> None:
        wait = self.waits.pop(task, None)
        if not isinstance(wait, Gate):
            return
        gate = self.barriers[wait.ref]
        gate.waiting.remove(task)
        gate.arrived.discard(wait.node.index)
        gate.expected -= 1
        text = f"timed out after {wait.node.timeout:g}s waiting at barrier {wait.ref!r}"
        self.ready.append((task, (EXPIRED, "Timeout", text)))
        self._break(wait.ref, "Timeout", f"{wait.node.fqn} {text}")

    def _dropped_out(self, node: PlanNode, row: Record) -> None:
        """A participant's row without its arrival: it will not reach the barrier."""
        gate = self._barrier(node.barrier)
        if node.index in gate.arrived:
            return
        gate.expected -= 1
        failed = row.status not in POSITIVE or "failed" in (row.reason or "")
        if failed and gate.broken is None:
            why = f"{node.fqn} ended {row.status} before reaching barrier {node.barrier!r}"
            if row.reason:
                why += f" ({row.reason})"
            self._break(node.barrier, row.error_type or "Unknown", why)
        else:
            self._open_if_complete(node.barrier)

    # -- interventions --------------------------------------------------------------------------
    def _ask(self, task: Task, node: PlanNode, outcome: Outcome, action: ManualIntervention, scope: Scope):
        request = InterventionRequest(self, task, node, outcome, action)
        timer = self.call_at(self.clock.now() + request.timeout, self._intervention_timeout, request)
        self.waits[task] = Ask(request, timer, scope)
        self._notify(self._asked, request)
        if self.on_intervention is None:
            return
        if isinstance(self.clock, RealClock):  # a real run: the user's code runs off the loop
            self._call_off_loop(self.on_intervention, request)
        elif not self._notify([self.on_intervention], request):
            self.on_intervention = None  # it raised: from now on interventions wait their timeout

    def _call_off_loop(self, fn: Callable, request: InterventionRequest) -> None:
        """Call ``on_intervention`` on a thread of its own, as a body runs: a callback that
        blocks delays nothing (other steps' timeouts fire on time, the intervention's too), and
        whatever it raises — ``SystemExit`` included — comes back to the loop, which warns and
        calls it no more in this run (the intervention then waits its timeout). Interventions
        are rare: a thread each, never waited for (one still running when the run ends is left
        behind, with a warning)."""

        def call() -> None:
            try:
                fn(request)
            except BaseException as exc:  # the user's code: any exception, SystemExit too
                self.post(self._callback_failed, (fn, request, exc))

        thread = threading.Thread(target=call, name=f"nbp-intervention-{request.node.id}", daemon=True)
        self._callbacks.append(thread)
        thread.start()

    def _callback_failed(self, item: tuple) -> None:
        fn, request, exc = item
        if self.on_intervention is not fn:
            return  # already reported
        self.on_intervention = None
        warnings.warn(
            f"on_intervention {_name(fn)} raised {type(exc).__name__} for {request.fqn}: "
            f"{excerpt(message_of(exc), MESSAGE_LIMIT)}; it is not called again in this run, and "
            f"the intervention waits its timeout ({request.timeout:g}s)",
            RuntimeWarning,
            stacklevel=2,
        )

    def _left_callbacks(self, grace: float = 0.25) -> None:
        """At the end of the run: report the ``on_intervention`` calls that raised meanwhile,
        and warn about those still running after ``grace`` seconds (left behind)."""
        deadline = time.monotonic() + grace
        for thread in self._callbacks:
            thread.join(max(0.0, deadline - time.monotonic()))
        while True:  # a failure posted after the loop ended is still reported
            try:
                fn, arg = self.inbox.get_nowait()
            except queue.Empty:
                break
            if fn == self._callback_failed:
                fn(arg)
        left = [t.name.removeprefix("nbp-intervention-") for t in self._callbacks if t.is_alive()]
        if left:
            warnings.warn(
                f"on_intervention is still running for {len(left)} intervention(s) of this run "
                f"({', '.join(left[:10])}); it is left behind and its answers are discarded",
                RuntimeWarning,
                stacklevel=3,
            )

    def _answered(self, item: tuple) -> None:
        request, choice = item
        wait = self.waits.get(request._task)
        if not isinstance(wait, Ask) or wait.request is not request:
            return  # already timed out or aborted
        wait.timer.cancel()
        del self.waits[request._task]
        request.answered = choice
        self.ready.append((request._task, choice))

    def _intervention_timeout(self, request: InterventionRequest) -> None:
        if self.waits.pop(request._task, None) is not None:
            self.ready.append((request._task, None))

    # -- stopping -------------------------------------------------------------------------------
    def cancel(self, reason: str = "cancelled by the user") -> None:
        """Abort the run from any thread (a Cancel button, a run handle): the abort is posted
        to the loop, which ends running steps ``Aborted`` and starts nothing new (R21, E15).
        A run that has already ended is left alone."""
        self.post(self._cancel, reason)

    def _cancel(self, reason: str) -> None:
        if not self.done:
            self.abort(reason)

    def abort(self, reason: str) -> None:
        """Abort the run: running steps end Aborted, nothing new starts (R21, E15)."""
        if self.aborted is not None:
            return
        self.aborted = reason
        for task, wait in list(self.waits.items()):
            self._settle(task, wait, ABORTED, None, reason)

    def expire(self, scope: Scope) -> None:
        """``scope``'s timeout passed (R59): everything waiting inside it ends Expired."""
        scope.expired = True
        scope.stop = f"{scope.node.kind.replace('_', ' ')} timed out"
        text = f"{scope.node.fqn} timed out after {scope.node.timeout:g}s"
        for task, wait in list(self.waits.items()):
            if wait.scope is not None and wait.scope.within(scope):
                self._settle(task, wait, EXPIRED, "Timeout", text)

    def _settle(self, task: Task, wait: Any, status: str, error_type: str | None, text: str) -> None:
        """Stop waiting: resume ``task`` now, as if what it waited for had ended this way."""
        del self.waits[task]
        if isinstance(wait, Job):
            wait.done = True
            if wait.timer is not None:
                wait.timer.cancel()
            self.executor.cancel(wait)  # tell the body to stop; never wait for it
            worker, log = _partial(wait)
            outcome = Outcome(status, wait.submitted, self.clock.now(), worker, error_type, text, log=log)
            self.ready.append((task, outcome))
        elif isinstance(wait, Sleep | Ask):
            wait.timer.cancel()
            self.ready.append((task, None))
        elif isinstance(wait, Queue):
            self.resources[wait.key].remove(task)
            self.ready.append((task, False))
        elif isinstance(wait, Gate):
            if wait.timer is not None:
                wait.timer.cancel()
            gate = self.barriers[wait.ref]
            gate.waiting.remove(task)
            gate.arrived.discard(wait.node.index)
            gate.expected -= 1
            self.ready.append((task, (status, error_type, text)))
            if self.aborted is None and gate.broken is None:
                self._break(wait.ref, error_type or "Unknown", f"{wait.node.fqn}: {text}")

    def stop_reason(self, scope: Scope) -> str | None:
        if self.aborted is not None:
            return self.aborted
        cur: Scope | None = scope
        while cur is not None:
            if cur.stop is not None:
                return cur.stop
            cur = cur.parent
        return None

    # -- records --------------------------------------------------------------------------------
    def record(
        self, node: PlanNode, attempt: int, status: str, start: float | None, end: float | None, **info: Any
    ) -> None:
        """Append one trace row: ``info`` holds the other fields of :class:`~.trace.Record`
        (``reason``, ``worker``, ``error_type``, ``error``, ``action``, ``outputs``, ``log``)."""
        get = info.get
        self._row(
            node, attempt, status, get("reason"), start, end, get("worker"),
            get("error_type"), get("error"), get("action"), get("outputs"), get("log"),
        )  # fmt: skip

    def succeeded(self, node: PlanNode, attempt: int, outcome: Outcome) -> None:
        """A step attempt succeeded: its outputs become readable (R44), and its row is recorded."""
        outputs = outcome.outputs
        self.outputs[node.fqn] = outputs or _NO_OUTPUTS
        self._row(
            node, attempt, SUCCESS, None, outcome.start, outcome.end, outcome.worker,
            None, None, None, outputs, outcome.log,
        )  # fmt: skip

    def _row(
        self, node: PlanNode, attempt: int, status: str, reason: Any, start: float | None,
        end: float | None, worker: Any, error_type: Any, error: Any, action: Any, outputs: Any, log: Any,
    ) -> None:  # fmt: skip
        """The one place a :class:`~.trace.Record` is made (positional: the hot path)."""
        inputs = self._resolved.get(node.index) if node.inputs else None
        self._add(
            node,
            make_record(
                (
                    node.index,
                    node.iteration,
                    attempt,
                    status,
                    reason,
                    start,
                    end,
                    worker,
                    error_type,
                    error,
                    action,
                    outputs,
                    log,
                    inputs,
                )
            ),
        )

    def _add(self, node: PlanNode, row: Record) -> None:
        """The one place a row joins the trace (and the statuses that references read)."""
        self.recorder.add(row)
        self.statuses[node.fqn] = row.status
        if node.barrier is not None:  # a participant that ends without arriving (R57)
            self._dropped_out(node, row)
        if self._finished:
            self._notify(self._finished, node, row)

    def seen(self, node: PlanNode) -> bool:
        return node.index in self.recorder.seen

    def started(self, node: PlanNode, attempt: int, t: float) -> None:
        if self._started:
            self._notify(self._started, node, attempt, t)

    def mark(self, items: Iterable[PlanNode], status: str, reason: str, now: float | None) -> None:
        """Record ``status`` (Skipped / NotStarted) for these nodes and everything below them."""
        for item in items:
            nodes = item.items if item.kind == "parallel" else (item,)
            for top in nodes:
                for node in top.walk():
                    if node.index in self.recorder.seen and node is not top:
                        continue
                    why = reason if node is top else "parent skipped" if status == SKIPPED else reason
                    self.record(node, 0, status, now, now, reason=why)

    def fill_not_started(self) -> None:
        """D6: every node without a record gets a NotStarted row."""
        seen = self.recorder.seen
        if not self.extra and len(seen) == len(self.plan.nodes):
            return  # every node has its row (the common case): nothing to look for
        why = self.aborted or "not reached"
        # the nodes inside a looped node that ran are its iterations' copies, not these (R46)
        inside = self.plan.inside_loops() if self.extra else {}
        for node in self.plan.nodes:
            if node.index not in seen and inside.get(node.index) not in seen:
                self.record(node, 0, NOT_STARTED, None, None, reason=why)


class _Barrier:
    """The state of one barrier in a run: participants expected and arrived, who waits."""

    __slots__ = ("arrived", "broken", "error_type", "expected", "waiting")

    def __init__(self) -> None:
        self.expected = 0
        self.arrived: set[int] = set()
        self.waiting: list = []
        self.broken: str | None = None  # why the waiting ones failed (a participant dropped out)
        self.error_type = "Unknown"


class _RunView:
    """What references resolve against during a run: the plan's nodes and the run's copies of
    looped nodes (``by_fqn`` looks in the copies first)."""

    run_view = True

    def __init__(self, plan: Plan):
        from collections import ChainMap

        self.pipeline, self.root, self.nodes = plan.pipeline, plan.root, plan.nodes
        self.by_fqn = ChainMap({}, plan.by_fqn)


#: the outputs of a step that published none (read-only, shared by all such steps)
_NO_OUTPUTS: Any = MappingProxyType({})


def _noop(_: Any) -> None:
    return None


def _partial(job: Job) -> tuple[str | None, str | None]:
    """(worker, output printed so far) of a job the scheduler stops waiting for.

    An executor that captures output may set ``job.data = (worker_name, list_of_text)``.
    """
    if isinstance(job.data, tuple) and len(job.data) == 2:
        worker, buffer = job.data
        try:
            text = (
                buffer.text() if hasattr(buffer, "text") else "".join(t for t in buffer if isinstance(t, str))
            )
        except Exception:  # an executor's own buffer: what it printed is not worth losing the run
            text = None
        return worker, text or None
    return None, None


def _name(fn: Any) -> str:
    """A callable's name for a message (its qualified name, else its type's), bounded."""
    name = getattr(fn, "__qualname__", None)
    return repr(excerpt(name if isinstance(name, str) else type(fn).__name__, 80))


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
    executor: Any,
    clock: Any,
    *,
    run_id: str | None = None,
    listeners: Iterable[Any] = (),
    on_intervention: Callable | None = None,
    namespace: dict | None = None,
    loop_counts: dict | None = None,
    chain: tuple | None = None,
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
    if chain is not None:
        scheduler.chain = chain
        _RUNNING.add(scheduler)
    try:
        status = scheduler.execute()
    finally:
        _RUNNING.discard(scheduler)
    scheduler.fill_not_started()
    trace = build_trace(plan, scheduler.recorder.rows, scheduler.run_id, clock.epoch_ns, scheduler.extra)
    _LAST[0] = trace
    registry.stamp(trace, key)
    scheduler._notify([x.run_finished for x in scheduler.listeners if hasattr(x, "run_finished")], trace)
    return RunResult(status, trace, scheduler.interrupted)


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
    max_workers: int | None = None,
):
    """Run a pipeline in the kernel and return its trace (a pandas DataFrame).

    Args:
        pipeline: a :class:`~notebook_pipelines.definition.model.Pipeline` (validated first: an invalid
            pipeline raises ``DefinitionError`` and runs nothing), or its compiled ``Plan``.
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
    """
    from .executors.threads import ThreadExecutor
    from .steptypes import check_runnable

    plan = as_plan(pipeline)
    check_runnable(plan)  # typed steps without a handler: refuse before anything starts
    chain = nesting(plan)  # a step body running its own pipeline: refused before anything starts
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
