"""Manual interventions during a run (R20, D12): the request a person answers, and the calls.

When a failure strategy asks a person, the step waits (an :class:`~.runtime.Ask` with the
action's timeout) and an :class:`InterventionRequest` goes to the listeners
(``intervention(request)``: the live widget shows its buttons) and to ``on_intervention``.
Whoever answers calls :meth:`InterventionRequest.answer` from any thread; the answer is posted
into the loop. In a real run ``on_intervention`` runs on a thread of its own, as a body does;
in a simulation on the loop (scripted answers must land before virtual time moves on).

The scheduler owns one :class:`Interventions`; it sees of the run only what
:class:`InterventionRun` lists.
"""

from __future__ import annotations

import queue
import threading
import time
import warnings
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Protocol

from ..definition.limits import short
from ..errors import MESSAGE_LIMIT, excerpt
from .executors.base import message_of
from .runtime import Ask

if TYPE_CHECKING:  # pragma: no cover
    from collections import deque

    from ..definition.failure import ManualIntervention
    from ..definition.plan import PlanNode
    from .clocks import Timer
    from .executors.base import Outcome
    from .scope import Scope

__all__ = ["InterventionRequest", "InterventionRun", "Interventions", "callable_name"]

#: what ``on_intervention`` is called with, and returns (ignored)
Callback = Callable[["InterventionRequest"], Any]


class InterventionRun(Protocol):
    """What the interventions use of the run (the scheduler)."""

    waits: dict[Any, Any]
    ready: deque[tuple[Any, Any]]
    inbox: queue.SimpleQueue[Any]

    def now(self) -> float: ...

    def call_at(self, when: float, fn: Callable[[Any], None], arg: Any) -> Timer: ...

    def post(self, fn: Callable[[Any], None], arg: Any) -> None: ...

    def _notify(self, listeners: list[Callable[..., Any]], *args: Any) -> bool: ...


class InterventionRequest:
    """A manual intervention waiting for an answer (R20, D12).

    A front-end (the live widget) shows ``choices`` and calls :meth:`answer`.
    """

    def __init__(
        self,
        interventions: Interventions,
        task: Hashable,
        node: PlanNode,
        outcome: Outcome,
        action: ManualIntervention,
    ):
        self._interventions, self._task = interventions, task
        self.node, self.fqn, self.outcome, self.action = node, node.fqn, outcome, action
        self.choices = tuple(action.choices)
        self.timeout = _seconds(action.timeout)
        self.answered: str | None = None

    def answer(self, choice: str) -> None:
        """Answer with one of ``choices``; safe to call from any thread."""
        offered = next((c for c in self.choices if c == choice), None)  # compared here, not on the loop
        if offered is None:
            raise ValueError(f"{short(choice)} is not one of {', '.join(self.choices)}")
        self._interventions.post_answer(self, offered)  # the choice as offered: a plain text

    def __repr__(self) -> str:
        return f"<InterventionRequest {self.fqn} choices={self.choices}>"


def _seconds(value: Any) -> float:
    from ..definition.durations import parse_duration

    return parse_duration(value) or 0.0


class Interventions:
    """The interventions of one run: asking, answers, timeouts, and ``on_intervention``'s calls."""

    def __init__(
        self,
        run: InterventionRun,
        on_intervention: Callback | None,
        listeners: list[Callable[..., Any]],
        off_loop: bool,
    ) -> None:
        self._run = run
        self.on_intervention = on_intervention
        self._asked = listeners  # the listeners' ``intervention`` methods
        self._off_loop = off_loop  # a real run: the user's callback runs off the loop
        self.callbacks: list[threading.Thread] = []  # on_intervention calls (off the loop)

    def ask(
        self, task: Hashable, node: PlanNode, outcome: Outcome, action: ManualIntervention, scope: Scope
    ) -> None:
        """``task`` (a step's generator) waits for a person's answer, or the action's timeout."""
        run = self._run
        request = InterventionRequest(self, task, node, outcome, action)
        timer = run.call_at(run.now() + request.timeout, self._timed_out, request)
        run.waits[task] = Ask(request, timer, scope)
        run._notify(self._asked, request)
        if self.on_intervention is None:
            return
        if self._off_loop:
            self._call_off_loop(self.on_intervention, request)
        elif not run._notify([self.on_intervention], request):
            self.on_intervention = None  # it raised: from now on interventions wait their timeout

    def post_answer(self, request: InterventionRequest, choice: str) -> None:
        """Thread-safe: the loop takes the answer ``choice`` to ``request``."""
        self._run.post(self._answered, (request, choice))

    def _call_off_loop(self, fn: Callback, request: InterventionRequest) -> None:
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
                self._run.post(self._callback_failed, (fn, request, exc))

        thread = threading.Thread(target=call, name=f"nbp-intervention-{request.node.id}", daemon=True)
        self.callbacks.append(thread)
        thread.start()

    def _callback_failed(self, item: tuple[Callback, InterventionRequest, BaseException]) -> None:
        fn, request, exc = item
        if self.on_intervention is not fn:
            return  # already reported
        self.on_intervention = None
        warnings.warn(
            f"on_intervention {callable_name(fn)} raised {type(exc).__name__} for {request.fqn}: "
            f"{excerpt(message_of(exc), MESSAGE_LIMIT)}; it is not called again in this run, and "
            f"the intervention waits its timeout ({request.timeout:g}s)",
            RuntimeWarning,
            stacklevel=2,
        )

    def left_behind(self, grace: float = 0.25) -> None:
        """At the end of the run: report the ``on_intervention`` calls that raised meanwhile,
        and warn about those still running after ``grace`` seconds (left behind)."""
        deadline = time.monotonic() + grace
        for thread in self.callbacks:
            thread.join(max(0.0, deadline - time.monotonic()))
        while True:  # a failure posted after the loop ended is still reported
            try:
                fn, arg = self._run.inbox.get_nowait()
            except queue.Empty:
                break
            if fn == self._callback_failed:
                fn(arg)
        left = [t.name.removeprefix("nbp-intervention-") for t in self.callbacks if t.is_alive()]
        if left:
            warnings.warn(
                f"on_intervention is still running for {len(left)} intervention(s) of this run "
                f"({', '.join(left[:10])}); it is left behind and its answers are discarded",
                RuntimeWarning,
                stacklevel=3,
            )

    def _answered(self, item: tuple[InterventionRequest, str]) -> None:
        request, choice = item
        run = self._run
        wait = run.waits.get(request._task)
        if not isinstance(wait, Ask) or wait.request is not request:
            return  # already timed out or aborted
        wait.timer.cancel()
        del run.waits[request._task]
        request.answered = choice
        run.ready.append((request._task, choice))

    def _timed_out(self, request: InterventionRequest) -> None:
        run = self._run
        if run.waits.pop(request._task, None) is not None:
            run.ready.append((request._task, None))


def callable_name(fn: Any) -> str:
    """A callable's name for a message (its qualified name, else its type's), bounded."""
    name = getattr(fn, "__qualname__", None)
    return repr(excerpt(name if isinstance(name, str) else type(fn).__name__, 80))
