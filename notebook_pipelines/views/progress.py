"""What a run has done so far, told by its listener events, and the one-line text progress.

:class:`RunState` is an engine listener (``run_started``, ``node_started``, ``node_finished``,
``intervention``, ``run_finished``) that keeps the state of a run as it goes: the steps planned
and done, the status of each, what runs now, which steps wait for a person, the rows so far.
Views watch it: :class:`TextProgress` (a line on stderr, no widget code at all) and the live
widget (:mod:`.live`). The engine calls the listener on its loop thread, and an observer must
never hold that loop: an event costs a lock, a dict update and an O(1) ``poke``. Each view
draws through a :class:`~.throttle.Throttle`, on a drawing thread of its own: at most every ``interval``
seconds while events arrive (coalesced: a slow drawing skips frames, it never delays a step),
and once at the end; the thread ends with the run. Nothing polls.

>>> import notebook_pipelines as nbp
>>> p = nbp.Pipeline("p")
>>> with p.stage("s") as s:
...     _ = s.step("a", duration="5s")
...     _ = s.step("b", duration="5s")
>>> state = RunState(p.plan())
>>> _ = p.simulate(listeners=[state])
>>> state.done_steps, state.planned, state.status, state.counts()
(2, 2, 'Success', {'Success': 2})
>>> print(text_line(state, elapsed=10.0))
p: 2/2 steps done · Success 2 · 10s · Success
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from ..definition.durations import format_duration
from ..definition.plan import Plan, PlanNode
from ..engine.trace import Record, build_trace
from ..errors import printable
from .throttle import Throttle

__all__ = ["RunState", "TextProgress", "Throttle", "in_kernel", "text_line"]

RUNNING, WAITING, NOT_STARTED = "Running", "InterventionWaiting", "NotStarted"
ROLLBACK = "rollback"  # a plan node's phase inside a rollback list


def in_kernel() -> bool:
    """True inside a Jupyter kernel (an IPython shell with a ``kernel``: a frontend may show
    widgets). Imports nothing: without IPython already loaded there is no kernel."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # pragma: no cover - a broken IPython install
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


class RunState:
    """A listener that keeps what a run has done so far; views observe it.

    Attributes read by views (under :attr:`lock`): ``planned`` (steps to run: see below),
    ``finished`` (step index → its latest status), ``running`` (node index → ``(node,
    attempt, start_s)``), ``waiting`` (step index → ``(request, asked_at, running_entry)``: manual
    interventions, R20), ``rows`` (the trace's records so far), ``status`` (``Queued``,
    ``Running``, then the pipeline's status), ``done``, ``trace`` (the final one).

    Looped nodes (R48–R50) in the count: a looped node counts as its plan steps (a looped step
    as one) until its iterations are known; when it expands (``loop_expanded``, as it starts)
    its iterations' steps replace it in ``planned`` and the looped step itself is no longer
    counted (not done, running or in :meth:`counts`); expanded again (its group retried, R19),
    the new iterations replace the old. So ``done_steps <= planned`` throughout, and a run that
    ran every step ends ``planned/planned``; nested loops follow. Chosen over counting plan steps
    only (``10/8`` with loops) and over counting iterations as they start (the total would creep
    while they queue behind ``maxConcurrency``): the total changes when a loop's size is known.

    Rollback steps (R35–R41) run only when a failure strategy asks for their rollback: they join
    ``planned`` (and :meth:`counts`) when they start or end having run, so a run that needed no
    rollback ends ``2/2``, not ``2/4`` with its rollback steps ``NotStarted``.

    >>> import notebook_pipelines as nbp
    >>> from notebook_pipelines.definition.looping import Matrix
    >>> p = nbp.Pipeline("m")
    >>> _ = p.stage("s").step("b", duration=1, strategy=Matrix(x=[1, 2, 3]))
    >>> state = RunState(p.plan())
    >>> state.planned
    1
    >>> _ = p.simulate(listeners=[state])
    >>> state.done_steps, state.planned
    (3, 3)
    >>> with p.stage("t") as t:
    ...     _ = t.step("deploy", duration=1)
    ...     with t.rollback():
    ...         _ = t.step("undo", duration=1)
    >>> state = RunState(p.plan())
    >>> state.planned
    2
    >>> _ = p.simulate(listeners=[state])
    >>> state.done_steps, state.planned, state.counts()
    (4, 4, {'Success': 4})
    """

    def __init__(self, plan: Plan):
        self.plan = plan
        self.lock = threading.RLock()
        self.planned = sum(1 for n in plan.nodes if n.kind == "step" and n.phase != ROLLBACK)
        #: the rollback steps counted in ``planned`` (they started, or ended having run)
        self.rollback_counted: set[int] = set()
        self.finished: dict[int, str] = {}
        self.running: dict[int, tuple[PlanNode, int, float]] = {}
        self.waiting: dict[int, tuple[Any, float]] = {}
        self.rows: list[Record] = []
        self.scheduler: Any = None
        self.status = "Queued"
        self.done = False
        self.trace: Any = None
        self.t0: float | None = None  # time.monotonic() when the run started
        self.t1: float | None = None  # … and when it ended
        self.makespan: float | None = None  # the trace's, once the run has ended
        self.observers: list[Callable[[bool], Any]] = []
        self.throttles: list[Throttle] = []  # the views' drawing, stopped by abandon()
        #: an :class:`~notebook_pipelines.analysis.eta.Eta` (``run(history=h)``), else None
        self.eta: Any = None
        self._eta_key: Any = None
        self._eta_value: tuple[float, float] | None = None
        self.closers: list[Callable[[str], Any]] = []  # told by abandon() why the run never ran
        self.refused: str | None = None  # abandon()'s reason
        #: looped node index → (node, its latest copies): their steps count in its place
        self.expansions: dict[int, tuple[PlanNode, list[PlanNode]]] = {}

    # -- listener events (the engine's loop thread) -------------------------------------------
    def run_started(self, scheduler: Any) -> None:
        with self.lock:
            self.scheduler, self.status, self.t0 = scheduler, RUNNING, time.monotonic()
        self._changed(False)

    def node_started(self, node: PlanNode, attempt: int, t: float) -> None:
        with self.lock:
            self.finished.pop(node.index, None)
            self.waiting.pop(node.index, None)
            self.running[node.index] = (node, attempt, t)
            self._count_rollback_step(node)
        self._changed(False)

    def loop_expanded(self, node: PlanNode, copies: list[PlanNode]) -> None:
        """The looped ``node`` runs as ``copies``: their steps replace its own in the count.

        Expanded again (its group retried, R19): the new copies replace the previous ones,
        whose steps (and the loops expanded inside them) leave the count."""
        with self.lock:
            before = self.expansions.get(node.index)
            self.planned -= self._count(before[1]) if before is not None else self._count([node])
            if before is not None:
                self._forget(before[1])
            if node.index in self.rollback_counted:  # a looped rollback step: its copies count
                self.rollback_counted.discard(node.index)
                self.planned -= 1
            self.expansions[node.index] = (node, copies)
            self.planned += self._count(copies)
            self.running.pop(node.index, None)
            self.finished.pop(node.index, None)
        self._changed(False)

    def _count(self, nodes: list[PlanNode]) -> int:
        """The steps ``nodes`` count as now: an expanded looped node as its copies' steps."""
        total, stack = 0, list(nodes)
        while stack:
            n = stack.pop()
            if n.kind == "parallel":
                stack.extend(n.items)
            elif n.index in self.expansions and n.strategy is not None:
                stack.extend(self.expansions[n.index][1])
            elif n.phase != ROLLBACK:  # rollback steps count when they run
                total += n.kind == "step"
                stack.extend(n.items or ())
        return total

    def _count_rollback_step(self, node: PlanNode) -> None:
        """A rollback step that runs joins ``planned`` (once; a looped one as its copies)."""
        if (
            node.kind == "step"
            and node.phase == ROLLBACK
            and node.index not in self.rollback_counted
            and node.index not in self.expansions
        ):
            self.rollback_counted.add(node.index)
            self.planned += 1

    def _forget(self, copies: list[PlanNode]) -> None:
        """Drop what the replaced ``copies`` (and loops expanded inside them) had done."""
        for copy in copies:
            for n in copy.walk():
                self.finished.pop(n.index, None)
                if n.index in self.rollback_counted:
                    self.rollback_counted.discard(n.index)
                    self.planned -= 1
                inner = self.expansions.pop(n.index, None) if n.strategy is not None else None
                if inner is not None:
                    self._forget(inner[1])

    def node_finished(self, node: PlanNode, row: Record) -> None:
        with self.lock:
            self.rows.append(row)
            self.running.pop(node.index, None)
            self.waiting.pop(node.index, None)
            never_ran = node.phase == ROLLBACK and row.status == NOT_STARTED
            if node.kind == "step" and node.index not in self.expansions and not never_ran:
                self.finished[node.index] = row.status
                self._count_rollback_step(node)
        self._changed(False)

    def intervention(self, request: Any) -> None:
        with self.lock:
            entry = self.running.pop(request.node.index, None)
            self.waiting[request.node.index] = (request, time.monotonic(), entry)
        self._changed(False)

    def run_finished(self, trace: Any) -> None:
        with self.lock:
            root = trace[trace["kind"] == "pipeline"]
            self.status = str(root["status"].iloc[0]) if len(root) else "NotStarted"
            took = root["duration_s"].iloc[0] if len(root) else None
            self.makespan = float(took) if took is not None and took == took else None
            self.trace, self.done, self.t1 = trace, True, time.monotonic()
            self.running.clear()
            self.waiting.clear()
        self._changed(True)

    def abandon(self, reason: str | None = None) -> None:
        """The run ended without a trace (refused before it started, say): the views stop
        updating and their drawing threads end, without a final update; then each of
        :attr:`closers` is told why (``reason``: the refusal's first line), so a view does not
        stay "Queued" with a Cancel to click."""
        if self.done:
            return
        for throttle in list(self.throttles):
            throttle.cancel()
        with self.lock:
            self.status, self.refused, self.done = NOT_STARTED, reason or "the run did not start", True
            self.t1 = time.monotonic() if self.t0 is not None else None
        for closer in list(self.closers):
            closer(self.refused)

    def _changed(self, final: bool) -> None:
        for observer in list(self.observers):
            observer(final)

    # -- what views read ----------------------------------------------------------------------
    @property
    def done_steps(self) -> int:
        """Steps whose latest attempt has ended, Skipped ones too; not those that never started
        (``NotStarted``: a cancel or an abort ended the run before them)."""
        with self.lock:
            return sum(1 for status in self.finished.values() if status != NOT_STARTED)

    def elapsed(self) -> float:
        """Seconds since the run started; once it has ended, the trace's makespan (not the wall
        time to the ``run_finished`` event, which includes building the trace)."""
        if self.makespan is not None:
            return self.makespan
        if self.t0 is None:
            return 0.0
        return (self.t1 if self.t1 is not None else time.monotonic()) - self.t0

    def counts(self) -> dict[str, int]:
        """Steps by status now: the latest status of each step that ended, ``Running`` and
        ``InterventionWaiting`` for those under way (in the order of first appearance)."""
        with self.lock:
            counts = Counter(self.finished.values())
            running = sum(1 for node, _, _ in self.running.values() if node.kind == "step")
            if running:
                counts[RUNNING] = running
            if self.waiting:
                counts[WAITING] = len(self.waiting)
            return dict(counts)

    def requests(self) -> list[Any]:
        """The manual interventions waiting now (oldest first)."""
        with self.lock:
            return [entry[0] for entry in self.waiting.values()]

    def expected_end(self) -> tuple[float, float] | None:
        """``(p50, p95)`` seconds from the start at which the run is expected to end (with
        ``run(history=h)``), recomputed when a step finishes; ``None`` without an estimate."""
        if self.eta is None or self.done:
            return None
        with self.lock:
            key = len(self.rows)
            if key == self._eta_key:
                return self._eta_value
            done, first = {}, {}  # a node's time: from its first attempt's start (retries count)
            for row in self.rows:
                if row.start_s is not None and row.end_s is not None and row.node < len(self.plan.nodes):
                    first[row.node] = min(first.get(row.node, row.start_s), row.start_s)
                    done[row.node] = row.end_s - first[row.node]
            now = self.scheduler.now() if self.scheduler is not None else 0.0
            running, before = {}, {}
            for i, (node, _, start) in self.running.items():
                if node.kind == "step":
                    running[i] = now - start
                    if i in first:  # a retry under way: its earlier attempts (and waits) took this long
                        before[i] = start - first[i]
                        done.pop(i, None)
        try:
            value = self.eta.estimate(done, running, before)
        except Exception:  # an estimate must never break a run's view
            value = None
        with self.lock:
            self._eta_key, self._eta_value = key, value
        return value

    def snapshot(self) -> Any:
        """The trace so far (a DataFrame with the full schema): rows recorded, plus a
        ``Running`` row per node under way and an ``InterventionWaiting`` row per step that
        waits for a person; nodes not reached yet have no row. The final trace once done."""
        with self.lock:
            if self.done:
                return self.trace
            rows = list(self.rows)
            scheduler = self.scheduler
            now = scheduler.now() if scheduler is not None else 0.0
            for index, (_node, attempt, start) in self.running.items():
                rows.append(_live_row(index, attempt, RUNNING, start, now))
            for index, (request, _, entry) in self.waiting.items():
                attempt, start = (entry[1], entry[2]) if entry else (1, now)
                rows.append(_live_row(index, attempt, WAITING, start, now, request.outcome.error))
        run_id = scheduler.run_id if scheduler is not None else ""
        epoch = getattr(getattr(scheduler, "clock", None), "epoch_ns", 0)
        return build_trace(self.plan, rows, run_id, epoch)


def _steps_in(node: PlanNode) -> int:
    """How many steps ``node`` counts as (execution and rollback): itself if a step."""
    return sum(1 for n in node.walk() if n.kind == "step")


def _live_row(index: int, attempt: int, status: str, start: float, now: float, error: Any = None) -> Record:
    fields = dict.fromkeys(Record._fields)
    fields.update(node=index, attempt=attempt, status=status, start_s=start, end_s=now, error=error)
    return Record(**fields)


def text_line(state: RunState, elapsed: float | None = None) -> str:
    """The one line of text progress: ``name: done/planned steps done · counts · time · status``."""
    counts = " · ".join(f"{status} {n}" for status, n in state.counts().items())
    seconds = state.elapsed() if elapsed is None else elapsed
    took = format_duration(seconds if state.done else round(seconds, 1))  # the end: the makespan
    parts = [f"{state.plan.pipeline.id}: {state.done_steps}/{state.planned} steps done"]
    parts += [counts] if counts else []
    parts.append(took)
    eta = eta_text(state, seconds)
    if eta:
        parts.append(eta)
    if state.done:
        parts.append(state.status)
    return " · ".join(parts)


def eta_text(state: RunState, elapsed: float | None = None) -> str:
    """``ends in ~1m 5s (p50), ≤ 2m (p95)`` from the run's history, or ``""``."""
    expected = state.expected_end()
    if expected is None:
        return ""
    now = state.elapsed() if elapsed is None else elapsed
    p50, p95 = (max(0.0, t - now) for t in expected)
    return f"ends in ~{format_duration(round(p50))} (p50), ≤ {format_duration(round(p95))} (p95)"


class TextProgress:
    """One line of progress on a stream (stderr): redrawn in place on a terminal (about 10
    times a second), else a line now and then (every ``every`` seconds) and one at the end.

    Attach to a :class:`RunState` (``state.observers``). No widget code runs. Lines are
    written by a drawing thread (:class:`Throttle`), so a slow stream never delays a step; the
    run's end waits up to ``FINAL_WAIT`` seconds for the last line.

    On a terminal the line is drawn without a newline, so what a step (or anyone) prints to
    ``sys.stdout``/``sys.stderr`` meanwhile would be glued to it: while the run goes, both are
    wrapped (:class:`_LineGuard`) so that the first text written after a draw clears the line
    first — the text starts on its own line — and the next draw puts the progress back below it.
    """

    #: seconds the end of a run waits for the last line to be written
    FINAL_WAIT = 5.0

    def __init__(self, state: RunState, stream: Any = None, every: float = 10.0):
        self.state = state
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.throttle = Throttle(self._draw, 0.1 if self.tty else every, name="text-progress")
        state.throttles.append(self.throttle)
        self._width = 0
        self._final = False
        self._ended = False  # the final line has been written
        self._first = True
        self._lock = threading.RLock()
        self._drawn = False  # the progress line is on the screen, the cursor at its end
        self._partial = False  # other text was written without a newline: the cursor is mid-line
        self._guards: list[tuple[str, _LineGuard]] = []
        if self.tty:
            for name in ("stdout", "stderr"):
                guard = _LineGuard(getattr(sys, name), self)
                setattr(sys, name, guard)
                self._guards.append((name, guard))
        state.observers.append(self.changed)

    def changed(self, final: bool) -> None:
        if final:
            self._final = True
            self.throttle.finish(self.FINAL_WAIT)
            self._unguard()
        elif self.tty or not self._first:
            self.throttle.poke()
        else:  # off a terminal the first line waits a full interval: short runs print one line
            self._first = False
            self.throttle.delay()

    def close(self) -> None:
        """Stop guarding ``sys.stdout``/``sys.stderr`` (done at the end of the run; call it when
        a run never started)."""
        self._unguard()

    def _unguard(self) -> None:
        for name, guard in self._guards:
            guard.progress = None  # wrapped again by someone since: it passes everything on
            if getattr(sys, name) is guard:
                setattr(sys, name, guard.stream)
        self._guards = []

    def _draw(self) -> None:
        if self._ended:
            return  # the final line is out
        final = self._final
        line = printable(text_line(self.state))  # names from the pipeline: no raw escape sequences
        try:
            if self.tty:
                with self._lock:
                    lead = "\n" if self._partial else ""  # other text keeps the line it began
                    pad = " " * max(0, self._width - len(line))
                    self.stream.write(lead + "\r" + line + pad + ("\n" if final else ""))
                    self.stream.flush()
                    self._width = len(line)
                    self._drawn, self._partial = not final, False
            else:
                self.stream.write(line + "\n")
                self.stream.flush()
        except (OSError, ValueError):  # a closed stream: progress is not worth failing a run for
            pass
        self._ended = final

    def _before(self, text: str) -> None:
        """Other text is about to be written: clear the progress line if it is on the screen."""
        if self._drawn and text:
            try:
                self.stream.write("\r" + " " * self._width + "\r")
                self.stream.flush()
            except (OSError, ValueError):
                pass
            self._drawn, self._width = False, 0


class _LineGuard:
    """``sys.stdout``/``sys.stderr`` while a :class:`TextProgress` draws in place: passes every
    write on, clearing the progress line first (see :class:`TextProgress`)."""

    def __init__(self, stream: Any, progress: TextProgress):
        self.stream, self.progress = stream, progress

    def write(self, text: str) -> int:
        progress = self.progress
        if progress is None or not text:
            return self.stream.write(text)
        with progress._lock:
            progress._before(text)
            written = self.stream.write(text)
            self.stream.flush()  # before the next draw, which goes to another stream
            progress._partial = not text.endswith("\n")
        return written

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)
