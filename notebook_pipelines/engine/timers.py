"""Timers: a pending call at a clock time, and the handle that takes it back.

The scheduler keeps them in one heap and calls them from its loop. Both seams hand them out:
the rules' :meth:`~.runtime.Runtime.call_at` (a timeout, a retry interval) and the
executors' :meth:`~.executors.base.ServedRun.call_at` (a virtual body's completion).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Timer"]


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
