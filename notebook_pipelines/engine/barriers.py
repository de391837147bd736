"""Barriers during a run (R55–R58, E11): who is expected, who has arrived, who waits.

A Barrier step (R56) waits until every participant of its barrier has arrived; the static
checks (declared barriers, deadlocking shapes, E12) are :mod:`..definition.barriers`. Here is
the run-time state, one :class:`Barrier` per barrier reference, and what changes it:

- :meth:`Barriers.arrive` — a Barrier step reaches its barrier and waits (a :class:`~.runtime.Gate`
  with its timeout), or passes when it is the last one expected;
- :meth:`Barriers.expanded` — a looped node runs as its iterations' copies: their Barrier
  steps are the participants (R58), not the looped node's own;
- :meth:`Barriers.dropped_out` — a participant's row without its arrival (it was skipped,
  failed, was aborted): one fewer expected; a failure breaks the barrier (R57, E11), and the
  ones waiting fail with its reason;
- :meth:`Barriers.settle` — a wait at a barrier is ended from outside (a timeout of the
  stage, an abort).

The scheduler owns one :class:`Barriers`, made when the first Barrier step arrives; the
barriers see of it only what :class:`BarrierRun` lists.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Protocol

from ..definition.statuses import EXPIRED, FAILED, POSITIVE
from .runtime import Gate

if TYPE_CHECKING:  # pragma: no cover
    from collections import deque

    from ..definition.plan import Plan, PlanNode
    from .clocks import Timer
    from .scope import Scope
    from .trace import Record

__all__ = ["Barrier", "BarrierRun", "Barriers"]


class BarrierRun(Protocol):
    """What the barriers use of the run (the scheduler): its plan, waits, ready queue and timers."""

    plan: Plan
    waits: dict[Any, Any]
    ready: deque[tuple[Any, Any]]

    def now(self) -> float: ...

    def call_at(self, when: float, fn: Callable[[Any], None], arg: Any) -> Timer: ...


class Barrier:
    """The state of one barrier in a run: participants expected and arrived, who waits."""

    __slots__ = ("arrived", "broken", "error_type", "expected", "waiting")

    def __init__(self) -> None:
        self.expected = 0
        self.arrived: set[int] = set()
        self.waiting: list[Hashable] = []
        self.broken: str | None = None  # why the waiting ones failed (a participant dropped out)
        self.error_type = "Unknown"


class Barriers:
    """The barriers of one run, by reference; every participant of the plan counted up front."""

    def __init__(self, run: BarrierRun) -> None:
        self._run = run
        self.gates: dict[str, Barrier] = {}
        for node in run.plan.nodes:
            if node.barrier is not None:
                self.gates.setdefault(node.barrier, Barrier()).expected += 1

    def _gate(self, ref: str) -> Barrier:
        return self.gates.setdefault(ref, Barrier())

    def expanded(self, node: PlanNode, copies: list[PlanNode]) -> None:
        """The looped ``node`` runs as ``copies``: their Barrier steps take the place of its own."""
        for n in node.walk():
            if n.barrier is not None:
                self._gate(n.barrier).expected -= 1
        for copy in copies:
            for n in copy.walk():
                if n.barrier is not None:
                    self._gate(n.barrier).expected += 1
        for ref in list(self.gates):
            self._open_if_complete(ref)

    def arrive(self, task: Hashable, node: PlanNode, ref: str, scope: Scope) -> None:
        """``node`` (a Barrier step run by ``task``) reaches barrier ``ref`` and waits there."""
        gate = self._gate(ref)
        gate.arrived.add(node.index)
        run = self._run
        if gate.broken is not None:
            run.ready.append((task, (FAILED, gate.error_type, gate.broken)))
            return
        timer = None
        if node.timeout:
            timer = run.call_at(run.now() + node.timeout, self._timeout, task)
        run.waits[task] = Gate(ref, node, timer, scope)
        gate.waiting.append(task)
        self._open_if_complete(ref)

    def _open_if_complete(self, ref: str) -> None:
        gate, run = self.gates[ref], self._run
        if gate.waiting and gate.broken is None and len(gate.arrived) >= gate.expected:
            for task in gate.waiting:
                wait = run.waits.pop(task)
                if wait.timer is not None:
                    wait.timer.cancel()
                run.ready.append((task, None))
            gate.waiting.clear()

    def _break(self, ref: str, error_type: str, text: str) -> None:
        """A participant will not arrive (R57, E11): the ones waiting fail at the barrier."""
        gate, run = self.gates[ref], self._run
        gate.broken, gate.error_type = text, error_type
        for task in gate.waiting:
            wait = run.waits.pop(task)
            if wait.timer is not None:
                wait.timer.cancel()
            run.ready.append((task, (FAILED, error_type, text)))
        gate.waiting.clear()

    def _timeout(self, task: Hashable) -> None:
        wait = self._run.waits.pop(task, None)
        if not isinstance(wait, Gate):
            return
        gate = self.gates[wait.ref]
        gate.waiting.remove(task)
        gate.arrived.discard(wait.node.index)
        gate.expected -= 1
        text = f"timed out after {wait.node.timeout:g}s waiting at barrier {wait.ref!r}"
        self._run.ready.append((task, (EXPIRED, "Timeout", text)))
        self._break(wait.ref, "Timeout", f"{wait.node.fqn} {text}")

    def settle(
        self, task: Hashable, wait: Gate, status: str, error_type: str | None, text: str, aborted: bool
    ) -> None:
        """Stop ``task`` waiting at its barrier: it ends ``status``; unless the run is being
        aborted, the barrier breaks (the others waiting there fail with this reason)."""
        if wait.timer is not None:
            wait.timer.cancel()
        gate = self.gates[wait.ref]
        gate.waiting.remove(task)
        gate.arrived.discard(wait.node.index)
        gate.expected -= 1
        self._run.ready.append((task, (status, error_type, text)))
        if not aborted and gate.broken is None:
            self._break(wait.ref, error_type or "Unknown", f"{wait.node.fqn}: {text}")

    def dropped_out(self, node: PlanNode, ref: str, row: Record) -> None:
        """A participant's row without its arrival: it will not reach the barrier."""
        gate = self._gate(ref)
        if node.index in gate.arrived:
            return
        gate.expected -= 1
        failed = row.status not in POSITIVE or "failed" in (row.reason or "")
        if failed and gate.broken is None:
            why = f"{node.fqn} ended {row.status} before reaching barrier {ref!r}"
            if row.reason:
                why += f" ({row.reason})"
            self._break(ref, row.error_type or "Unknown", why)
        else:
            self._open_if_complete(ref)
