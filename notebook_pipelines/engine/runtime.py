"""The seam between the rules and the scheduler: what the rules may ask of a run.

The rules (:mod:`.semantics`) are generators that never see the scheduler's loop, timers,
inbox or executor. They ask the run for the time, for timers (a :class:`Timer` handle with
``cancel()``), to record a trace row, to mark whole sub-trees ``Skipped``/``NotStarted``, why
nothing new may start, and to stop. :class:`Runtime` lists exactly that; the scheduler
(:class:`~.scheduler.Scheduler`) is its one implementation in the package.

When a rule must wait, its generator (a :data:`NodeRun`) *yields a request* and is resumed
with the answer — one small named type per kind of wait (:data:`Request`):

=====================  ======================================================  ==========================
request                what the rule waits for                                 resumed with
=====================  ======================================================  ==========================
:class:`Concurrent`    children run at once (a parallel block, lanes)         their statuses, in order
:class:`Execute`       a step body on the executor                            an ``Outcome``
:class:`Pause`         a retry interval                                       None
:class:`Intervene`     a person's answer to a manual intervention (R20, D12)  the choice, or None (timeout)
:class:`Acquire`       a resource shared by parallel stages (D8)              True, or False (stopped)
:class:`Arrive`        the other participants of a barrier (R56)              None, or ``(status, error
                                                                               type, message)`` (R57, E11)
:class:`Latch`         the needs of a parallel block's member (D14)           True, or False (stopped)
=====================  ======================================================  ==========================

While a generator waits, the scheduler keeps one small record of what it waits for — a
:class:`~.executors.base.Job` (a body on the executor), a :class:`Sleep` (a retry interval),
an :class:`Ask` (a manual intervention), a :class:`Queue` (a resource held by another
stage), a :class:`Gate` (a barrier, R56) or a :class:`Latch` (needs, D14) — each with the
``scope`` it waits in, so a timeout, a rollback or an abort can find and settle every wait
inside a scope.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar

if TYPE_CHECKING:  # pragma: no cover
    from ..definition.failure import ManualIntervention
    from ..definition.looping import Iteration
    from ..definition.plan import Plan, PlanNode
    from .clocks import Timer
    from .context import StepContext
    from .executors.base import Outcome
    from .looping import RunView
    from .scope import Scope

__all__ = [
    "Acquire",
    "Arrive",
    "Ask",
    "Concurrent",
    "Execute",
    "Gate",
    "Intervene",
    "Latch",
    "NodeRun",
    "Pause",
    "Queue",
    "Request",
    "Runtime",
    "Sleep",
    "Yields",
]


# -- the requests a rule's generator yields ---------------------------------------------------
# Slotted dataclasses, not frozen (treat them as read-only): an ``Execute`` is made for every
# step attempt, and a frozen dataclass's __init__ costs twice a plain one's (a NamedTuple's more).
@dataclass(slots=True)
class Concurrent:
    """Run ``children`` (node generators, or a loop's lanes) at once; resumed with what they
    return (a node's status; a lane's None), in order."""

    children: Sequence[Yields[Any]]


@dataclass(slots=True)
class Execute:
    """Run attempt ``attempt`` of step ``node``'s body inside ``scope``; resumed with its ``Outcome``."""

    node: PlanNode
    attempt: int
    scope: Scope


@dataclass(slots=True)
class Pause:
    """Wait ``seconds`` (a retry interval) inside ``scope``; resumed with None."""

    seconds: float
    scope: Scope


@dataclass(slots=True)
class Intervene:
    """Ask a person what to do after ``node``'s failed ``outcome`` (R20, D12); resumed with
    the choice, or None when ``action``'s timeout passed or the wait was settled."""

    node: PlanNode
    outcome: Outcome
    action: ManualIntervention
    scope: Scope


@dataclass(slots=True)
class Acquire:
    """Take resource ``key`` (D8), waiting while another stage holds it; resumed with True,
    or False when the wait was settled (an abort, a timeout)."""

    key: str
    scope: Scope


@dataclass(slots=True)
class Arrive:
    """Barrier step ``node`` reaches ``barrier`` and waits for the other participants (R56);
    resumed with None, or ``(status, error_type, message)`` when it will not open (R57, E11)."""

    node: PlanNode
    barrier: str
    scope: Scope


@dataclass(slots=True)
class Latch:
    """A member of a parallel block waits until every member it needs has ended (D14): the
    request (yielded while ``remaining`` needs have not ended; the rules count them down) and the
    scheduler's record of the wait (``task``), in ``scope``. Resumed with True, or False when the
    wait was settled (an abort, a timeout of a scope around it)."""

    remaining: int
    scope: Scope | None
    task: Any = None


#: what a rule's generator may yield
Request: TypeAlias = Concurrent | Execute | Pause | Intervene | Acquire | Arrive | Latch
_T = TypeVar("_T")
#: a rule's generator that yields requests, is resumed with their answers and returns a ``_T``
Yields: TypeAlias = Generator[Request, Any, _T]
#: a node's generator: returns the node's status
NodeRun: TypeAlias = Yields[str]


@dataclass(slots=True)
class Sleep:
    """A generator waits for ``timer`` (a retry interval)."""

    timer: Timer
    scope: Scope | None


@dataclass(slots=True)
class Ask:
    """A generator waits for a person's answer to ``request``, or for ``timer`` (its timeout)."""

    request: Any
    timer: Timer
    scope: Scope | None


@dataclass(slots=True)
class Queue:
    """A generator (a stage) waits for the resource ``key`` that another stage holds (D8)."""

    key: str
    scope: Scope | None


@dataclass(slots=True)
class Gate:
    """A generator (a Barrier step, R56) waits at barrier ``ref`` for the other participants,
    or for ``timer`` (its timeout; None without one)."""

    ref: str
    node: Any
    timer: Timer | None
    scope: Scope | None


class Runtime(Protocol):
    """What the rules see of a run. Values known now, for ``<+…>`` references, are ``view``,
    ``statuses`` (last status by FQN) and ``outputs`` (output variables by step FQN): a
    runtime is the :class:`~..definition.references.RunValues` the rules pass to them."""

    run_id: str
    plan: Plan
    #: the plan as the run sees it: ``plan`` and the copies of looped nodes made so far (what
    #: ``<+…>`` references resolve against, :class:`~..definition.references.RunValues`)
    view: Plan | RunView
    aborted: str | None  # why the run was aborted, or None
    statuses: dict[str, str]
    outputs: dict[str, dict[str, Any]]
    runs: dict[int, int]  # executions per step so far (attempts go on across RetryStepGroup)
    runs_handlers: bool  # the executor runs typed steps' handlers: resolve their specs first
    #: a simulation's ``iterations=`` (items of run-time lists, by looped node id or FQN); None in a run
    loop_counts: dict[str, Any] | None

    def now(self) -> float: ...

    def call_at(self, when: float, fn: Callable[[Any], None], arg: Any) -> Timer: ...

    def record(
        self,
        node: PlanNode,
        attempt: int,
        status: str,
        start: float | None,
        end: float | None,
        *,
        reason: str | None = None,
        worker: str | None = None,
        error_type: str | None = None,
        error: str | None = None,
        action: str | None = None,
        outputs: dict[str, Any] | None = None,
        log: str | None = None,
    ) -> None:
        """Append one trace row (the keywords: the other fields of :class:`~.trace.Record`)."""
        ...

    def succeeded(self, node: PlanNode, attempt: int, outcome: Outcome) -> None:
        """A step's attempt succeeded: its outputs become readable (R44) and its row is recorded."""
        ...

    def mark(self, items: Iterable[PlanNode], status: str, reason: str, now: float | None) -> None:
        """Record ``status`` for these nodes and everything below them not yet recorded."""
        ...

    def seen(self, node: PlanNode) -> bool:
        """True when ``node`` has a trace row already."""
        ...

    def started(self, node: PlanNode, attempt: int, t: float) -> None:
        """Tell the listeners that a container started."""
        ...

    def stop_reason(self, scope: Scope) -> str | None:
        """Why nothing new may start in ``scope`` (abort, rollback, timeout …), or None."""
        ...

    def abort(self, reason: str) -> None: ...

    def expire(self, scope: Scope) -> None:
        """``scope``'s timeout passed: every wait inside it ends ``Expired``."""
        ...

    def release(self, key: str) -> None:
        """A stage gives back resource ``key``; the next stage queued for it starts."""
        ...

    def needs_met(self, latch: Latch) -> None:
        """Every need of the member waiting on ``latch`` has ended (D14): it goes on."""
        ...

    def context(self, node: PlanNode, attempt: int) -> StepContext: ...

    def resolve_inputs(self, node: PlanNode) -> str | None:
        """Resolve a step's ``<+…>`` inputs now; the error text, if any."""
        ...

    def resolve_spec(self, node: PlanNode) -> str | None:
        """Resolve a typed step's ``<+…>`` spec now; the error text, if any."""
        ...

    def evaluate(self, node: PlanNode, value: Any) -> Any:
        """The value of ``value`` (text with ``<+…>``) read by ``node`` now, e.g. a looping
        strategy's ``items``; raises ``ExpressionError`` when it cannot be resolved."""
        ...

    def warn(self, message: str) -> None:
        """Tell the user something about the run that is not an error (a ``LoopingWarning``)."""
        ...

    def expand(self, node: PlanNode, iteration: Iteration) -> PlanNode:
        """The run's copy of a looped ``node`` for one :class:`~..definition.looping.Iteration`:
        postfixed id and FQN (R46), its own trace rows, found by references; nodes below with
        their own strategies expand when they start."""
        ...

    def expanded(self, node: PlanNode, copies: list[PlanNode]) -> None:
        """A looped ``node`` runs as ``copies``: the Barrier steps in them are the participants
        (R58: every iteration meets at the barrier), not the ones in ``node``."""
        ...
