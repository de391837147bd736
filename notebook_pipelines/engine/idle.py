"""The scheduler loop's idle work: what a run can make before it ends, made while it waits.

A real run's loop spends most of its time blocked on the inbox while bodies run; work that
would otherwise wait for the end of the run (its trace's known columns, :func:`.trace.start_trace`)
is put in ``Scheduler.idle`` and done in such a wait — once nothing has happened for
:data:`IDLE_AFTER`, not at the first empty inbox: the workers the loop has just woken would
then wait for the interpreter behind it before their bodies start.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

__all__ = ["IDLE_AFTER", "next_event"]

#: The loop does a piece of its idle work once nothing has happened for this long (seconds).
IDLE_AFTER = 0.001


def next_event(
    clock: Any,
    inbox: Any,
    due: float | None,
    idle: list[Callable[[], Any]],
    starting: Callable[[], bool] | None = None,
) -> Any:
    """The next item of ``inbox`` by ``due`` (clock seconds; None: no deadline), as
    ``clock.wait`` gives it. While ``idle`` holds work and nothing is posted, a quiet
    :data:`IDLE_AFTER` first does one piece of it and gives None (the loop looks again).
    A moment is quiet only once ``starting()`` (the executor: bodies handed over and not
    started yet) is false: the loop holding the interpreter while a wide block's workers
    start would hold back the starts after it.
    The work is only made early: what fails in it is made again where it is needed."""
    if idle and inbox.empty():
        soon = clock.now() + IDLE_AFTER
        if due is None or soon < due:
            item = clock.wait(inbox, soon)
            if item is None and (starting is None or not starting()):  # a quiet moment
                with contextlib.suppress(Exception):
                    idle.pop(0)()
            return item
    return clock.wait(inbox, due)
