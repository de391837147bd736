"""Time in a run: the wall clock, and timers (a pending call at a clock time, and its handle).

:class:`RealClock` is a real run's :class:`~.executors.base.Clock` (a simulation's is
:class:`~.executors.virtual.VirtualClock`). The scheduler keeps :class:`Timer` s in one heap and
calls them from its loop. Both seams hand them out: the rules' :meth:`~.runtime.Runtime.call_at`
(a timeout, a retry interval) and the executors' :meth:`~.executors.base.ServedRun.call_at` (a
virtual body's completion).
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any

__all__ = ["RealClock", "Timer"]


class Timer:
    """A pending call of ``fn(arg)`` at clock time ``when``; ``cancel()`` takes it back."""

    __slots__ = ("active", "arg", "fn", "when")

    def __init__(self, when: float, fn: Callable[[Any], None], arg: Any):
        self.when, self.fn, self.arg, self.active = when, fn, arg, True

    def cancel(self) -> None:
        """The call will not happen (idempotent; harmless after it happened)."""
        self.active = False

    def __repr__(self) -> str:
        state = "pending" if self.active else "cancelled"
        return f"<Timer at {self.when:g}s {getattr(self.fn, '__name__', self.fn)} {state}>"


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

    def wait(self, inbox: queue.SimpleQueue[Any], deadline: float | None) -> Any:
        timeout = None if deadline is None else max(0.0, deadline - self.now())
        if self.slice is not None and (timeout is None or timeout > self.slice):
            timeout = self.slice
        try:
            return inbox.get(timeout=timeout)
        except queue.Empty:
            return None
