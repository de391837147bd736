"""Virtual time: the clock jumps from event to event, a body "takes" its declared duration.

``VirtualExecutor`` does not run bodies; it asks ``duration(node, attempt)`` how long the
step takes and ``failure(node, attempt)`` whether (and how) it fails, and schedules its
completion on the scheduler's timer heap. ``VirtualClock.wait`` never blocks: it moves the
clock to the next timer. Timeouts, retry intervals and manual-intervention waits are timers
like any other, so every semantic of the engine applies unchanged, instantly and
deterministically.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...definition.statuses import FAILED, SUCCESS
from .base import Job, Outcome

__all__ = ["VirtualClock", "VirtualExecutor"]


class VirtualClock:
    """A clock that only moves when the scheduler waits: straight to the next timer."""

    name = "virtual"

    def __init__(self, epoch_ns: int = 0):
        self.epoch_ns = epoch_ns
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def wait(self, inbox: Any, deadline: float | None) -> Any:
        if not inbox.empty():
            return inbox.get()
        if deadline is None:
            raise RuntimeError("virtual time: nothing is running and nothing is due (a deadlock)")
        if deadline > self.t:
            self.t = deadline
        return None


class VirtualExecutor:
    """Completes each step after its declared duration, with injected failures.

    Args:
        duration: ``(node, attempt) -> seconds``.
        failure: ``(node, attempt) -> None`` for success, or ``(error_type, message)``;
            ``None``: no step fails.
        outputs: ``(node, attempt) -> dict | None``, the output variables of a success;
            ``None``: no step publishes any.
    """

    name = "virtual"
    runs_handlers = False  # nothing runs: typed steps take their duration like any other

    def __init__(
        self,
        duration: Callable[[Any, int], float],
        failure: Callable[[Any, int], tuple[str, str] | None] | None = None,
        clock: VirtualClock | None = None,
        outputs: Callable[[Any, int], dict[str, Any] | None] | None = None,
    ):
        self.duration, self.failure, self.outputs = duration, failure, outputs
        self.clock = clock or VirtualClock()

    def open(self, run: Any) -> None:
        self.run = run

    def submit(self, job: Any) -> None:
        node, attempt = job.node, job.attempt
        start = self.clock.t
        end = start + self.duration(node, attempt)
        failed = None if self.failure is None else self.failure(node, attempt)
        if failed is None:
            outputs = None if self.outputs is None else self.outputs(node, attempt)
            outcome = Outcome(SUCCESS, start, end, "virtual", None, None, outputs)
        else:
            outcome = Outcome(FAILED, start, end, "virtual", failed[0], failed[1])
        self.run.call_at(end, self._finished, (job, outcome))

    def _finished(self, item: tuple[Job, Outcome]) -> None:
        self.run.complete(item[0], item[1])

    def cancel(self, job: Any) -> None:
        return None  # nothing runs: the scheduler has already settled the job

    def close(self, cancel: bool = False) -> None:
        return None
