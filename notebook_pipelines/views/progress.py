"""What a run has done so far, told by its listener events, and the one-line text progress.

:class:`RunState` is an engine listener (``run_started``, ``node_started``, ``node_finished``,
``intervention``, ``run_finished``) that keeps the state of a run as it goes: the steps planned
and done, the status of each, what runs now, which steps wait for a person, the rows so far.
Views watch it: :class:`TextProgress` (a line on stderr, no widget code at all) and the live
widget (:mod:`.live`). The engine calls the listener on its loop thread; a view must be cheap
there, so each view redraws through a :class:`Throttle`: at most every ``interval`` seconds
while events arrive, once more shortly after the last one (a ``threading.Timer``, armed only
when an update was skipped), and once at the end. Nothing polls.

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

__all__ = ["RunState", "TextProgress", "Throttle", "in_kernel", "text_line"]

RUNNING, WAITING = "Running", "InterventionWaiting"


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


class Throttle:
    """Call ``fn`` at most every ``interval`` seconds, and surely after the last poke.

    ``poke()`` calls ``fn`` now if the last call is ``interval`` old, else arms one
    ``threading.Timer`` for the rest of the interval (if none is armed): so a burst of events
    ends in a redraw, and quiet times cost nothing. ``flush()`` cancels the timer and calls
    ``fn`` now (the final update). Calls of ``fn`` never overlap (a lock).
    """

    def __init__(self, fn: Callable[[], Any], interval: float):
        self.fn, self.interval = fn, interval
        self._lock = threading.RLock()
        self._last = float("-inf")
        self._timer: threading.Timer | None = None
        self.calls = 0  # how many updates were made (tests read it)
        self.closed = False

    def poke(self) -> None:
        with self._lock:
            if self.closed:
                return
            wait = self._last + self.interval - time.monotonic()
            if wait <= 0:
                self._call()
            elif self._timer is None:
                self._timer = threading.Timer(wait, self._trailing)
                self._timer.daemon = True
                self._timer.start()

    def _trailing(self) -> None:
        with self._lock:
            self._timer = None
            if not self.closed:
                self._call()

    def flush(self, close: bool = False) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._call()
            self.closed = self.closed or close

    def _call(self) -> None:
        self._last = time.monotonic()
        self.calls += 1
        self.fn()


class RunState:
    """A listener that keeps what a run has done so far; views observe it.

    Attributes read by views (under :attr:`lock`): ``planned`` (steps in the plan),
    ``finished`` (step index → its latest status), ``running`` (node index → ``(node,
    attempt, start_s)``), ``waiting`` (step index → ``(request, asked_at, running_entry)``: manual
    interventions, R20), ``rows`` (the trace's records so far), ``status`` (``Queued``,
    ``Running``, then the pipeline's status), ``done``, ``trace`` (the final one).
    """

    def __init__(self, plan: Plan):
        self.plan = plan
        self.lock = threading.RLock()
        self.planned = sum(1 for n in plan.nodes if n.kind == "step")
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
        self.observers: list[Callable[[bool], Any]] = []

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
        self._changed(False)

    def node_finished(self, node: PlanNode, row: Record) -> None:
        with self.lock:
            self.rows.append(row)
            self.running.pop(node.index, None)
            self.waiting.pop(node.index, None)
            if node.kind == "step":
                self.finished[node.index] = row.status
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
            self.trace, self.done, self.t1 = trace, True, time.monotonic()
            self.running.clear()
            self.waiting.clear()
        self._changed(True)

    def _changed(self, final: bool) -> None:
        for observer in list(self.observers):
            observer(final)

    # -- what views read ----------------------------------------------------------------------
    @property
    def done_steps(self) -> int:
        """Steps whose latest attempt has ended (any status, Skipped and NotStarted too)."""
        return len(self.finished)

    def elapsed(self) -> float:
        """Wall-clock seconds since the run started (until it ended)."""
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


def _live_row(index: int, attempt: int, status: str, start: float, now: float, error: Any = None) -> Record:
    fields = dict.fromkeys(Record._fields)
    fields.update(node=index, attempt=attempt, status=status, start_s=start, end_s=now, error=error)
    return Record(**fields)


def text_line(state: RunState, elapsed: float | None = None) -> str:
    """The one line of text progress: ``name: done/planned steps done · counts · time · status``."""
    counts = " · ".join(f"{status} {n}" for status, n in state.counts().items())
    took = format_duration(round(state.elapsed() if elapsed is None else elapsed, 1))
    parts = [f"{state.plan.pipeline.id}: {state.done_steps}/{state.planned} steps done"]
    parts += [counts] if counts else []
    parts.append(took)
    if state.done:
        parts.append(state.status)
    return " · ".join(parts)


class TextProgress:
    """One line of progress on a stream (stderr): redrawn in place on a terminal (about 10
    times a second), else a line now and then (every ``every`` seconds) and one at the end.

    Attach to a :class:`RunState` (``state.observers``). No widget code runs.
    """

    def __init__(self, state: RunState, stream: Any = None, every: float = 10.0):
        self.state = state
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.throttle = Throttle(self._draw, 0.1 if self.tty else every)
        self._width = 0
        self._final = False
        self._first = True
        state.observers.append(self.changed)

    def changed(self, final: bool) -> None:
        if final:
            self._final = True
            self.throttle.flush(close=True)
        elif self.tty or not self._first:
            self.throttle.poke()
        else:  # off a terminal the first line waits a full interval: short runs print one line
            self._first = False
            self.throttle._last = time.monotonic()

    def _draw(self) -> None:
        line = printable(text_line(self.state))  # names from the pipeline: no raw escape sequences
        try:
            if self.tty:
                pad = " " * max(0, self._width - len(line))
                self.stream.write("\r" + line + pad + ("\n" if self._final else ""))
                self._width = len(line)
            else:
                self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed stream: progress is not worth failing a run for
            pass
