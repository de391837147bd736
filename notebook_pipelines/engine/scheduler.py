"""The scheduler: one implementation of the semantics, for every clock and executor.

Design
------
The rules (:mod:`.semantics`) are generator functions, one per kind of node. A generator
*yields a request* when it must wait (:data:`~.runtime.Request`: ``Execute`` a body,
``Concurrent`` children, ``Pause``, ``Intervene``, ``Acquire``, ``Arrive``) and is resumed
with the answer.

The scheduler is a single-threaded loop over a ready queue, a timer heap (:class:`~.runtime.Timer`
handles) and an inbox that executors post completions to. There is no thread per step and no
polling: the loop blocks on the inbox until the next timer is due (on the main thread in
slices of :data:`WAKE_EVERY` seconds, so that ``_thread.interrupt_main()`` — which sends no
real signal — is seen too). What time it is and where bodies run are plug-ins (the
:class:`~.executors.base.Clock` and :class:`~.executors.base.Executor` protocols):

- :class:`~.clocks.RealClock` + :class:`~.executors.threads.ThreadExecutor` (``run()``): wall
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
import threading
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..definition.plan import Plan, PlanNode
from ..definition.statuses import ABORTED, EXPIRED, NOT_STARTED, SKIPPED, SUCCESS
from ..errors import ExpressionError, PipelineError
from .barriers import Barriers
from .breakage import dropped, recover
from .clocks import RealClock, Timer
from .context import StepContext
from .executors.base import Clock, Executor, Job, Outcome, check_executor
from .idle import next_event
from .interventions import InterventionRequest, Interventions
from .looping import RunView, expand
from .runtime import Acquire, Arrive, Ask, Concurrent, Execute, Gate, Intervene, Latch, Pause, Queue, Sleep
from .runtime import ByFqn as ByFqn
from .scope import Scope
from .semantics import Rules
from .trace import Recorder, make_record

if TYPE_CHECKING:  # pragma: no cover
    from ..definition.looping import Iteration
    from .runtime import NodeRun, Yields

__all__ = ["WAKE_EVERY", "Scheduler", "Task"]

#: The main thread waits in slices this long, so that a Ctrl-C or ``_thread.interrupt_main()``
#: is seen within it even while nothing happens (an event wakes the loop at once, whatever it).
WAKE_EVERY = 0.1


class Task:
    """A running generator and where its result goes (its parent's slot ``index``)."""

    __slots__ = ("gen", "index", "parent", "pending", "results")
    gen: NodeRun | Yields[None]
    parent: Task | None
    index: int
    pending: int  # children still running (a Concurrent request)
    results: list[Any]  # their statuses, by index (set with ``pending``, when it has children)

    def __init__(self, gen: NodeRun | Yields[None], parent: Task | None, index: int):
        self.gen, self.parent, self.index = gen, parent, index
        self.pending = 0


class Scheduler:
    """Runs one plan to completion with one clock and one executor. Use :func:`execute`.

    Implements :class:`~.runtime.Runtime` for the rules and
    :class:`~.executors.base.ServedRun` for the executor.
    """

    def __init__(
        self,
        plan: Plan,
        executor: Executor,
        clock: Clock,
        *,
        run_id: str | None = None,
        listeners: Iterable[Any] = (),
        on_intervention: Callable[[InterventionRequest], Any] | None = None,
        namespace: dict[str, Any] | None = None,
        loop_counts: dict[str, Any] | None = None,
    ):
        self.plan, self.executor, self.clock = plan, executor, clock
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.namespace = namespace
        self.inbox: queue.SimpleQueue[tuple[Callable[[Any], None], Any]] = queue.SimpleQueue()
        self.ready: deque[tuple[Task, Any]] = deque()  # (generator, the value it resumes with)
        self.timers: list[tuple[float, int, Timer]] = []  # a heap
        self._seq = itertools.count()
        self.waits: dict[Task, Any] = {}  # what each waiting generator waits for (a Job, Sleep…)
        self.recorder = Recorder()
        self.aborted: str | None = None
        self.interrupted = False
        self.sigint = False  # a Ctrl-C arrived; taken between scheduler steps
        self.resources: dict[str, deque[Task]] = {}  # stages holding (first) and queued for a key
        self.statuses, self.outputs = ByFqn(plan), ByFqn(plan)  # what references read (R42–R45)
        self._resolved: dict[int, dict[str, Any]] = {}
        self._merged_variables: dict[int, dict[str, Any]] = {}
        self._resolved_spec: dict[int, Any] = {}  # typed steps' specs, resolved before they start
        self.runs: dict[int, int] = {}  # executions per step so far: attempts go on across RetryStepGroup
        # looping strategies (R46–R54): the run's copies of looped nodes, one subtree per
        # iteration, indexed after the plan's nodes; references resolve against ``view``
        self.extra: list[PlanNode] = []
        self.view: Plan | RunView = plan
        self.loop_counts = loop_counts
        self.barriers: Barriers | None = None  # made when a Barrier step first arrives
        self.runs_handlers = bool(check_executor(executor).runs_handlers)
        self.listeners = list(listeners)
        self._started = [x.node_started for x in self.listeners if hasattr(x, "node_started")]
        self._finished = [x.node_finished for x in self.listeners if hasattr(x, "node_finished")]
        self._expanded = [x.loop_expanded for x in self.listeners if hasattr(x, "loop_expanded")]
        asked = [x.intervention for x in self.listeners if hasattr(x, "intervention")]
        self.interventions = Interventions(self, on_intervention, asked, isinstance(clock, RealClock))
        self.status: str | None = None
        self.done = False
        self.broken: Exception | None = None  # what escaped the loop (.breakage): the run was aborted
        self.closed_with: Exception | None = None  # what closing the executor raised (after the loop)
        self._loop_thread: int | None = None
        self.idle: list[Callable[[], Any]] = []  # work made while the loop waits (.idle)
        #: the runs this one is nested in, outermost first: (pipeline id, where it was started)
        self.chain: tuple[tuple[str, str], ...] = ()

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
        except Exception as exc:  # escaped a node's generator or a loop callback: aborted, trace kept
            recover(self, exc)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            try:  # a warning made an error there (-W error) is raised once the trace is made
                self.executor.close(cancel=self.interrupted or self.aborted is not None)
                if self.interventions.callbacks:
                    self.interventions.left_behind()
            except Exception as exc:
                self.closed_with = exc
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
        starting = getattr(self.executor, "starting", None)  # bodies handed over, not started yet
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
            item = next_event(clock, self.inbox, timers[0][0] if timers else None, self.idle, starting)
            if item is not None:
                item[0](item[1])
            if self.sigint and not self.interrupted:
                raise KeyboardInterrupt

    def _notify(self, listeners: list[Callable[..., Any]], *args: Any) -> bool:
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
            except PipelineError as exc:
                if not isinstance(self.clock, RealClock):
                    raise  # a deliberate error of ours (e.g. a bad scripted answer in a simulation)
                ok = dropped(listeners, fn, exc)
            except KeyboardInterrupt:
                raise  # the loop takes it: the run is interrupted, with its trace
            except BaseException as exc:  # SystemExit too: it must not end the run without a trace
                ok = dropped(listeners, fn, exc)
        return ok

    # -- what executors and the rules call (ServedRun, Runtime) ---------------------------------
    def now(self) -> float:
        return self.clock.now()

    def call_at(self, when: float, fn: Callable[[Any], None], arg: Any) -> Timer:
        """Call ``fn(arg)`` from the loop at clock time ``when``; returns a cancellable handle."""
        timer = _new_timer(Timer)  # Timer(when, fn, arg) without a frame: one per simulated step
        timer.when, timer.fn, timer.arg, timer.active = when, fn, arg, True
        heapq.heappush(self.timers, (when, next(self._seq), timer))
        return timer

    def post(self, fn: Callable[[Any], None], arg: Any) -> None:
        """Thread-safe: have the loop call ``fn(arg)`` soon."""
        self.inbox.put((fn, arg))

    def complete(self, job: Job, outcome: Outcome) -> None:
        """A body finished; safe from any thread. A late result (timed out, aborted) is dropped."""
        if threading.get_ident() != self._loop_thread:
            self.inbox.put((self._completed, (job, outcome)))
            return
        if job.done:  # on the loop's thread (a simulation's every step): no hand-off, no frame
            return  # it timed out or was aborted before; its late result is ignored
        job.done = True
        del self.waits[job.task]
        if job.timer is not None:
            job.timer.active = False
        self.ready.append((job.task, outcome))

    def _completed(self, item: tuple[Job, Outcome]) -> None:  # complete(), on the loop's thread
        self.complete(*item)

    def _advance(self, task: Task, value: Any) -> None:
        """Resume ``task`` with ``value``; serve what it asks next (a body, a node's end: inline)."""
        try:
            request = task.gen.send(value)
        except StopIteration as stop:  # the node ended: its status goes to its parent's slot
            parent = task.parent
            if parent is None:
                self.status = stop.value
                self.done = True
                return
            parent.results[task.index] = stop.value
            parent.pending -= 1
            if parent.pending == 0:
                self.ready.append((parent, parent.results))
            return
        if isinstance(request, Execute):  # a step's body: to the executor
            node, attempt = request.node, request.attempt
            now = self.clock.now()
            job = Job(self, node, attempt, request.scope, now, task, self.namespace)  # each field set once
            if node.timeout:
                job.timer = self.call_at(now + node.timeout, self._expire_job, job)
            if node.body is None and node.type is not None:
                job.spec = self._resolved_spec.get(node.index)
            self.waits[task] = job
            if self._started:
                self._notify(self._started, node, attempt, now)
            self.executor.submit(job)
        elif isinstance(request, Concurrent):
            gens = request.children
            if not gens:
                self.ready.append((task, []))
                return
            task.pending, task.results = len(gens), [None] * len(gens)
            for i, gen in enumerate(gens):  # a Task per child without __init__'s frame: one per step
                child = _new_task(Task)
                child.gen, child.parent, child.index, child.pending = gen, task, i, 0
                self.ready.append((child, None))
        elif isinstance(request, Pause):
            timer = self.call_at(self.clock.now() + request.seconds, self._wake, task)
            self.waits[task] = Sleep(timer, request.scope)
        elif isinstance(request, Intervene):
            self.interventions.ask(task, request.node, request.outcome, request.action, request.scope)
        elif isinstance(request, Acquire):
            waiting = self.resources.setdefault(request.key, deque())
            waiting.append(task)
            if len(waiting) == 1:
                self.ready.append((task, True))
            else:
                self.waits[task] = Queue(request.key, request.scope)
        elif isinstance(request, Arrive):
            self._gates().arrive(task, request.node, request.barrier, request.scope)
        elif isinstance(request, Latch):  # a member of a parallel block waits for its needs (D14)
            request.task, self.waits[task] = task, request
        else:  # pragma: no cover - programming error
            raise RuntimeError(f"unknown request {request!r}")

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

    def needs_met(self, latch: Latch) -> None:
        task = latch.task
        if task is not None and self.waits.get(task) is latch:
            del self.waits[task]
            self.ready.append((task, True))

    # -- step bodies (handed to the executor by _advance) ---------------------------------------
    def _expire_job(self, job: Job) -> None:
        if job.done:
            return
        self._settle(job.task, job, EXPIRED, "Timeout", f"timed out after {job.node.timeout:g}s")

    def context(self, node: PlanNode, attempt: int) -> StepContext:
        """The step context for one execution of ``node`` (made when a body is about to run)."""
        return StepContext(node, attempt, self.run_id, self._variables(node), self._inputs(node))

    def _variables(self, node: PlanNode) -> dict[str, Any]:
        """The variables a node sees (pipeline, stage, groups, its own; innermost wins): merged
        once per node (the plan does not change), a fresh copy for each body to use."""
        return dict(self._merged(node))

    def _merged(self, node: PlanNode) -> dict[str, Any]:
        """The merged variables of ``node``, never changed once made: a node without variables
        of its own shares its parent's dict (one copy per body, none per step)."""
        merged = self._merged_variables.get(node.index)
        if merged is None:
            merged = self._merged(node.parent) if node.parent is not None else {}
            if node.variables:
                merged = {**merged, **node.variables}
            self._merged_variables[node.index] = merged
        return merged

    def _inputs(self, node: PlanNode) -> Mapping[str, Any]:
        resolved = self._resolved.get(node.index)
        return resolved if resolved is not None else node.inputs or {}

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

    def expand(self, node: PlanNode, iteration: Iteration) -> PlanNode:
        """The run's copy of ``node`` for one iteration (R46, D11): :func:`.looping.expand`."""
        return expand(self, node, iteration)

    # -- barriers (R55–R58, E11): their state is .barriers' --------------------------------------
    def _gates(self) -> Barriers:
        if self.barriers is None:
            self.barriers = Barriers(self)
        return self.barriers

    def expanded(self, node: PlanNode, copies: list[PlanNode]) -> None:
        """The looped ``node`` runs as ``copies``: listeners with ``loop_expanded(node, copies)``
        are told (a progress count), and their Barrier steps take the place of its own."""
        if self._expanded:
            self._notify(self._expanded, node, copies)
        if self.barriers is None and not any(n.barrier is not None for n in self.plan.nodes):
            return
        self._gates().expanded(node, copies)

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
            worker, log = wait.partial()
            outcome = Outcome(status, wait.submitted, self.clock.now(), worker, error_type, text, log=log)
            self.ready.append((task, outcome))
        elif isinstance(wait, Sleep | Ask):
            wait.timer.cancel()
            self.ready.append((task, None))
        elif isinstance(wait, Queue):
            self.resources[wait.key].remove(task)
            self.ready.append((task, False))
        elif isinstance(wait, Latch):
            self.ready.append((task, False))
        elif isinstance(wait, Gate):
            self._gates().settle(task, wait, status, error_type, text, self.aborted is not None)

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
        self, node: PlanNode, attempt: int, status: str, start: float | None, end: float | None, *,
        reason: str | None = None, worker: str | None = None, error_type: str | None = None,
        error: str | None = None, action: str | None = None, outputs: dict[str, Any] | None = None,
        log: str | None = None,
    ) -> None:  # fmt: skip
        """Append one trace row; the keywords are the other fields of :class:`~.trace.Record`."""
        self._row(
            node, attempt, status, reason, start, end, worker, error_type, error, action, outputs, log
        )  # fmt: skip

    def succeeded(self, node: PlanNode, attempt: int, outcome: Outcome) -> None:
        """A step attempt succeeded: its outputs become readable (R44), and its row is recorded."""
        outputs, known, i = outcome.outputs, self.outputs, node.index
        if i in known.listed:  # a list store, not a long FQN hashed into a large table
            known.at[i] = outputs or _NO_OUTPUTS
        else:
            known.named[node.fqn] = outputs or _NO_OUTPUTS
        self._row(
            node, attempt, SUCCESS, None, outcome.start, outcome.end, outcome.worker,
            None, None, None, outputs, outcome.log,
        )  # fmt: skip

    def _row(
        self, node: PlanNode, attempt: int, status: str, reason: Any, start: float | None,
        end: float | None, worker: Any, error_type: Any, error: Any, action: Any, outputs: Any, log: Any,
    ) -> None:  # fmt: skip
        """The one place a :class:`~.trace.Record` is made (positional: the hot path) and joins
        the trace (and the statuses that references read)."""
        inputs = self._resolved.get(node.index) if node.inputs else None
        row = make_record(
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
        )
        self.recorder.add(row)
        known, i = self.statuses, node.index
        if i in known.listed:
            known.at[i] = status
        else:
            known.named[node.fqn] = status
        if node.barrier is not None:  # a participant that ends without arriving (R57)
            self._gates().dropped_out(node, node.barrier, row)
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


#: ``Timer``'s and ``Task``'s instances without their ``__init__`` (the hot paths set the fields)
_new_timer = _new_task = object.__new__

#: the outputs of a step that published none (read-only, shared by all such steps)
_NO_OUTPUTS: Any = MappingProxyType({})


def _noop(_: Any) -> None: ...
