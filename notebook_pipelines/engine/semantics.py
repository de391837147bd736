"""The semantics of step groups, as straight-line generator code (SEMANTICS.md §3–§5, §9).

Each kind of node is one generator method — ``_pipeline``, ``_stage``, ``_group``, ``_step`` —
that reads like the rules: serial items in a ``for`` loop, a parallel block as one ``Concurrent``
request, conditions (R28–R32) before a node starts, the failure-strategy chain (R15–R24) and its
actions after a failure (:mod:`.strategies`), rollback in the order of R36/R38, timeouts
(R59–R61), parent statuses (R26, R27, D4), looped nodes' iterations (:mod:`.looping`). When a
generator must wait it *yields a request* — :class:`~.runtime.Execute` (a step body),
:class:`~.runtime.Concurrent` (children at once), :class:`~.runtime.Pause`,
:class:`~.runtime.Intervene`, :class:`~.runtime.Acquire`, :class:`~.runtime.Arrive` — and is
resumed with the answer (the table in :mod:`.runtime`).

:class:`Rules` holds the generators; it talks to the run only through the small
:class:`~.runtime.Runtime` interface (the time, timers, records, marks, stop reasons), never to
the scheduler's loop, timers or executor. The state of a running container is a
:class:`Scope`. What time it is and where bodies run never matter here, which is why a
simulated run and a real run produce the same statuses and rows.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, cast

from ..definition.evaluation import raised
from ..definition.failure import (
    PipelineRollback,
    RetryStepGroup,
    StageRollback,
    StepGroupRollback,
    When,
)
from ..definition.limits import short
from ..definition.looping import LoopingError, check_identities, max_concurrency
from ..definition.plan import PlanNode
from ..definition.statuses import (
    ABORTED,
    EXPIRED,
    FAILED,
    IGNORE_FAILED,
    NOT_STARTED,
    POSITIVE,
    SEVERITY,
    SKIPPED,
    SUCCESS,
)
from ..errors import ExpressionError, excerpt
from .looping import Iterations
from .runtime import Acquire, Arrive, Concurrent, Execute, Latch, Pause
from .scope import Scope
from .strategies import RETRY, FailureStrategies

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterable

    from .executors.base import Outcome
    from .runtime import NodeRun, Runtime, Yields

__all__ = ["Rules", "Scope"]


class Rules:
    """The node generators: ``Rules(runtime).pipeline(plan.root)`` is the whole run."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self._loops = Iterations(rt)  # the iterations of looped nodes (R46–R54)
        self._strategies = FailureStrategies(rt, self._failed)  # after a failed attempt (R15–R24)
        #: D14: members whose needs all succeeded: their status condition Success is judged by
        #: their needs, not by what unrelated siblings did (GitHub's and GitLab's success())
        self._needs_succeeded: set[int] = set()

    def _should_run(
        self, node: PlanNode, scope: Scope, status_only: bool = False
    ) -> tuple[bool, str | None, str | None]:
        """(run?, reason if skipped, error if the condition failed) — R28–R31."""
        when = node.when
        if when is None:  # an iteration of a node whose `when` has no condition
            return True, None, None
        failed = scope.failed if node.kind == "stage" else scope.fail_scope.failed
        if failed and when.status == "Success" and id(node) in self._needs_succeeded:
            failed = False  # D14: judged by its needs, which all succeeded
        if when.condition is None and when.status == "Success" and not failed:
            return True, None, None  # the common case
        where = "pipeline" if node.kind == "stage" else "stage"
        if when.status == "Success" and failed:
            return False, f"the {where} has failed so far (status condition Success)", None
        if when.status == "Failure" and not failed:
            return False, f"the {where} has not failed (status condition Failure)", None
        condition = when.condition
        if condition is None or status_only:
            return True, None, None
        try:
            value = self._evaluate(node, condition)
        except ExpressionError as err:
            return False, None, str(err)
        except (Exception, SystemExit) as err:  # a Python condition raised (sys.exit too): the node fails
            return False, None, f"the condition raised {raised(err)}"
        try:
            if _truthy(value):
                return True, None, None
        except Exception as err:  # a value that is neither true nor false (an array, a DataFrame…)
            return False, None, _undecided(node, condition, value, err)
        text = condition if isinstance(condition, str) else getattr(condition, "__name__", "condition")
        return False, f"condition {text} is false", None

    def _evaluate(self, node: PlanNode, condition: Any) -> Any:
        if callable(condition):
            return condition(self.rt.context(node, 0))
        from ..definition.references import evaluate_condition

        return evaluate_condition(self.rt, node, condition)

    # -- the semantics --------------------------------------------------------------------------
    def _items(self, items: tuple[PlanNode, ...], scope: Scope) -> Yields[list[str]]:
        statuses: list[str] = []
        for i, item in enumerate(items):
            reason = self.rt.stop_reason(scope)
            if reason is not None:
                if not isinstance(scope.request, RetryStepGroup):  # a retried group runs them again
                    self.rt.mark(items[i:], NOT_STARTED, reason, None)
                break
            if item.kind == "parallel":
                if item.order is None:  # most children are steps: made without _node's dispatch
                    step, node = self.step, self._node
                    runs = [
                        step(c, scope) if c.kind == "step" and c.strategy is None else node(c, scope)
                        for c in item.items
                    ]
                else:  # members that wait for siblings (D14)
                    runs = self._dag(item, scope)
                statuses.extend((yield Concurrent(runs)))
            else:
                statuses.append((yield from self._node(item, scope)))
        return statuses

    # -- needs (D14): members of a parallel block that wait for siblings ------------------------
    def _dag(self, block: PlanNode, scope: Scope) -> list[NodeRun]:
        """The runs of a parallel block whose members have needs: all start with the block; a
        member with needs first waits on a :class:`~.runtime.Latch` that its needs count down."""
        members = block.items
        latches = [Latch(len(m.needs), scope) if m.needs else None for m in members]
        counts: list[list[Latch]] = [[] for _ in members]  # per member: the latches it counts down
        for k, member in enumerate(members):
            for j in member.needs:
                counts[j].append(cast("Latch", latches[k]))
        ended: list[str | None] = [None] * len(members)
        return [self._member(k, members, latches[k], counts[k], ended, scope) for k in range(len(members))]

    def _member(
        self,
        k: int,
        members: tuple[PlanNode, ...],
        latch: Latch | None,
        counts: list[Latch],
        ended: list[str | None],
        scope: Scope,
    ) -> NodeRun:
        """Member ``k`` of a block with needs: waits for them (D14), runs, then counts down the
        latches of the members that need it."""
        node = members[k]
        if latch is None:
            status = yield from self._node(node, scope)
        else:
            if latch.remaining:
                yield latch  # resumed when the last need ends (or the wait is settled)
            status = yield from self._after_needs(node, members, ended, scope)
        ended[k] = status
        for waiting in counts:
            waiting.remaining -= 1
            if waiting.remaining == 0:
                self.rt.needs_met(waiting)
        return status

    def _after_needs(
        self, node: PlanNode, members: tuple[PlanNode, ...], ended: list[str | None], scope: Scope
    ) -> NodeRun:
        """D14: every need has ended. Stopped meanwhile: NotStarted; with the default condition
        (``Success``) and a need that did not succeed (IgnoreFailed counts as success): Skipped,
        naming it; with it and every need succeeded: the node runs, even if an unrelated sibling
        failed (its status condition is judged by its needs); else its condition decides as usual."""
        reason = self.rt.stop_reason(scope)
        if reason is not None:
            self.rt.mark((node,), NOT_STARTED, reason, None)
            return NOT_STARTED
        when = node.when
        if when is None or when.status == "Success":
            for j in node.needs:
                if ended[j] not in _NEED_MET:
                    why = f"its need {members[j].fqn} ended {ended[j]} (needs, D14)"
                    self.rt.mark((node,), SKIPPED, why, self.rt.now())
                    return SKIPPED
            self._needs_succeeded.add(id(node))
        status: str = yield from self._node(node, scope)
        return status

    def _node(self, node: PlanNode, scope: Scope) -> NodeRun:
        if node.strategy is not None:
            return self.looped(node, scope)
        if node.kind == "step":
            return self.step(node, scope)
        if node.kind == "step_group":
            return self.group(node, scope)
        return self.stage(node, scope)

    def _container_status(self, statuses: Iterable[str], scope: Scope) -> str:
        if scope.expired:
            return EXPIRED
        if self.rt.aborted is not None:  # E15: every container still running at the abort ends Aborted
            return ABORTED
        if scope.rolled_back:
            return FAILED
        worst, rank = SUCCESS, 0
        for status in statuses:
            if status not in POSITIVE:
                r = SEVERITY.get(status, 0)
                if worst == SUCCESS or r > rank:
                    worst, rank = status, r
        if worst == NOT_STARTED:
            return ABORTED
        return worst

    def pipeline(self, root: PlanNode) -> NodeRun:
        start = self.rt.now()
        scope = Scope(root, None, "pipeline")
        timer = self.rt.call_at(start + root.timeout, self.rt.expire, scope) if root.timeout else None
        statuses = yield from self._items(root.items, scope)
        if isinstance(scope.request, PipelineRollback) and self.rt.aborted is None:
            # the stop reason held the execution back; it must not hold back the rollback (R38)
            stopped, scope.stop = scope.stop, None
            for stage, stage_scope in reversed(scope.ran):
                if not stage_scope.rolled_back:
                    yield from self._rollback_stage(stage, stage_scope)
            scope.rolled_back, scope.stop = True, scope.stop or stopped
        if timer is not None:
            timer.cancel()
        status = self._container_status(statuses, scope)
        action = "PipelineRollback" if scope.rolled_back else None
        self.rt.record(
            root, 1, status, start, self.rt.now(), reason=self.rt.aborted or scope.stop, action=action
        )
        return status

    def _skip_or_fail(self, node: PlanNode, scope: Scope, reason: str | None, error: str | None) -> str:
        now = self.rt.now()
        if error is not None:
            why = reason or (
                "its inputs could not be resolved"
                if node.kind == "step" and node.inputs
                else "condition failed"
            )
            self.rt.record(node, 1, FAILED, now, now, error_type="Unknown", error=error, reason=why)
            for item in (*node.items, *node.rollback):
                self.rt.mark((item,), NOT_STARTED, "its parent's condition failed", None)
            self._failed(node, scope, FAILED)
            return FAILED
        self.rt.mark((node,), SKIPPED, reason or "skipped", now)
        return SKIPPED

    def _failed(self, node: PlanNode, scope: Scope, status: str) -> None:
        """Note a non-positive status in 'successful so far' of the stage (or pipeline)."""
        if status in POSITIVE:
            return
        if node.kind != "stage" and self._retry_pending(scope):
            return  # an enclosing group will run again (R19, E6): this failure does not count yet
        target = scope if node.kind == "stage" else scope.fail_scope
        if target is not None:
            target.failed = True

    @staticmethod
    def _retry_pending(scope: Scope) -> bool:
        """True when this group, or one enclosing it, is about to be retried (RetryStepGroup)."""
        cur: Scope | None = scope
        while cur is not None and cur.kind == "group":
            if isinstance(cur.request, RetryStepGroup):
                return True
            cur = cur.parent
        return False

    def stage(self, node: PlanNode, pscope: Scope) -> NodeRun:
        ok, reason, error = self._should_run(node, pscope)
        if not ok:
            return self._skip_or_fail(node, pscope, reason, error)
        if node.resource is not None:
            got = yield Acquire(node.resource, pscope)
            if not got:
                self.rt.mark((node,), NOT_STARTED, self.rt.stop_reason(pscope) or "not started", None)
                return NOT_STARTED
        start = self.rt.now()
        self.rt.started(node, 1, start)
        scope = Scope(node, pscope, "stage")
        pscope.ran.append((node, scope))
        timer = self.rt.call_at(start + node.timeout, self.rt.expire, scope) if node.timeout else None
        statuses = yield from self._items(node.items, scope)
        if isinstance(scope.request, StageRollback) and self.rt.aborted is None:
            yield from self._rollback_stage(node, scope)
        if timer is not None:
            timer.cancel()
        if node.resource is not None:
            self.rt.release(node.resource)
        status = self._container_status(statuses, scope)
        action = "StageRollback" if scope.rolled_back else None
        why = "rolled back" if scope.rolled_back else scope.stop if status != SUCCESS else None
        self.rt.record(node, 1, status, start, self.rt.now(), reason=why, action=action)
        self._failed(node, pscope, status)
        return status

    # -- looping strategies (R46–R54, E13) -------------------------------------------------------
    def looped(self, node: PlanNode, scope: Scope) -> NodeRun:
        """A node with a looping strategy: its iterations, at most ``maxConcurrency`` at a time.

        The iterations are computed now (run-time lists are known only now); each is the run's
        copy of the node (``rt.expand``: postfixed id and FQN, R46) and runs as the node would.
        With ``maxConcurrency: k`` there are k *lanes*, each taking the next iteration in list
        order when its current one ends (a sliding window, R54, E13). The node's own row spans
        its iterations, with their combined status (D4; all skipped: ``Skipped``).
        """
        ok, reason, _ = self._should_run(node, scope, status_only=True)
        if not ok:  # R29, R30: the status part of `when` is the looped node's, decided once
            self.rt.mark((node,), SKIPPED, reason or "skipped", self.rt.now())
            return SKIPPED
        start = self.rt.now()
        try:
            its = self._loops.of(node)
            check_identities(node, its)  # one postfix per iteration (R46)
            copies = [self.rt.expand(node, it) for it in its]  # an FQN taken: LoopingError (R46)
        except (ExpressionError, LoopingError) as err:
            why = "its looping strategy could not be expanded"
            return self._skip_or_fail(node, scope, why, f"{node.fqn}: {err}")
        if not its:
            self.rt.mark((node,), SKIPPED, "its looping strategy has no iterations", start)
            return SKIPPED
        self.rt.started(node, 1, start)
        self.rt.expanded(node, copies)
        each = When("All", node.when.condition) if node.when is not None else None
        for copy in copies:  # a condition is evaluated per iteration (it may read <+matrix.x>)
            copy.when = each
        # each iteration keeps its own "failed so far": one failing does not skip the others' steps
        scopes = [Scope(copy, scope, "loop") for copy in copies]
        k = max_concurrency(node.strategy) or len(copies)
        if k >= len(copies):
            statuses = yield Concurrent([self._node(copy, s) for copy, s in zip(copies, scopes)])
        else:
            slots: list[str | None] = [None] * len(copies)
            queue = deque(range(len(copies)))
            skip = getattr(node.strategy, "on_failure", None) == "SkipQueued"
            yield Concurrent([self._lane(queue, copies, scopes, slots, skip) for _ in range(k)])
            statuses = cast("list[str]", slots)  # the lanes have filled every slot
        if all(status == SKIPPED for status in statuses):
            status = SKIPPED
        else:
            status = self._container_status(statuses, Scope(node, scope, "loop"))
        n = len(copies)
        reason = f"{n} iteration{'s' if n != 1 else ''}" + (f", at most {k} at a time" if k < n else "")
        self.rt.record(node, 1, status, start, self.rt.now(), reason=reason)
        self._failed(node, scope, status)
        return status

    def _lane(
        self,
        queue: deque[int],
        copies: list[PlanNode],
        scopes: list[Scope],
        statuses: list[str | None],
        skip_queued: bool,
    ) -> Yields[None]:
        """One slot of a looped node's window: runs the next queued iteration until none is left."""
        while queue:
            i = queue.popleft()
            scope = scopes[i]
            reason = self.rt.stop_reason(scope)
            if reason is None and skip_queued and any(s not in POSITIVE for s in statuses if s is not None):
                reason = "an iteration failed (onFailure: SkipQueued)"
            if reason is not None:
                self.rt.mark((copies[i],), NOT_STARTED, reason, None)
                statuses[i] = NOT_STARTED
                continue
            statuses[i] = yield from self._node(copies[i], scope)
        return None

    def _rollback_stage(self, node: PlanNode, scope: Scope) -> Yields[None]:
        """R36: rollback lists of the groups that ran, in reverse order, then the stage's list."""
        rscope = Scope(node, scope.parent, "rollback")
        for group, group_scope in reversed(scope.ran):
            if group.rollback and not group_scope.rolled_back:
                group_scope.rolled_back = True
                yield from self._items(group.rollback, rscope)
        if node.rollback:
            yield from self._items(node.rollback, rscope)
        scope.rolled_back = True
        # what a stage rollback did not reach stays NotStarted, with the reason
        for group, _ in scope.ran:
            self.rt.mark(
                tuple(i for i in group.rollback if not self._seen(i)), NOT_STARTED, "not rolled back", None
            )

    def _seen(self, item: PlanNode) -> bool:
        nodes = item.items if item.kind == "parallel" else (item,)
        return all(self.rt.seen(n) for n in nodes)

    def group(self, node: PlanNode, scope: Scope) -> NodeRun:
        ok, reason, error = self._should_run(node, scope)
        if not ok:
            return self._skip_or_fail(node, scope, reason, error)
        stage_scope = scope.stage_scope
        attempt, retries = 0, 0
        while True:
            attempt += 1
            start = self.rt.now()
            self.rt.started(node, attempt, start)
            gscope = Scope(node, scope, "group")
            gscope.retries = retries
            if attempt == 1:
                stage_scope.ran.append((node, gscope))
            else:
                stage_scope.ran[:] = [(n, gscope if n is node else s) for n, s in stage_scope.ran]
            timer = self.rt.call_at(start + node.timeout, self.rt.expire, gscope) if node.timeout else None
            statuses = yield from self._items(node.items, gscope)
            if timer is not None:
                timer.cancel()
            request = gscope.request
            if isinstance(request, RetryStepGroup) and self.rt.stop_reason(scope) is None:
                if retries < request.count:
                    retries += 1
                    self.rt.record(node, attempt, FAILED, start, self.rt.now(), action="RetryStepGroup")
                    wait = request.interval(retries)
                    if wait:
                        yield Pause(wait, scope)
                    if self.rt.stop_reason(scope) is None:
                        continue
                    self.rt.record(
                        node, attempt + 1, NOT_STARTED, None, None, reason=self.rt.stop_reason(scope)
                    )
                    return FAILED
                scope.fail_scope.failed = True
            if (
                isinstance(request, StepGroupRollback)
                and self.rt.aborted is None
                and scope.kind != "rollback"
            ):
                if node.rollback:
                    gscope.rolled_back = True
                    yield from self._items(node.rollback, Scope(node, scope, "rollback"))
                gscope.rolled_back = True
            status = self._container_status(statuses, gscope)
            action = "StepGroupRollback" if gscope.rolled_back else None
            why = "rolled back" if gscope.rolled_back else gscope.stop if status != SUCCESS else None
            self.rt.record(node, attempt, status, start, self.rt.now(), reason=why, action=action)
            self._failed(node, scope, status)
            return status

    def step(self, node: PlanNode, scope: Scope) -> NodeRun:
        """A step: its condition, its inputs, then attempts until one is final (R15–R24, R59)."""
        when = node.when  # the common case (status Success, no condition, nothing failed) inline
        if when is not None and (
            when.condition is not None or when.status != "Success" or scope.fail_scope.failed
        ):
            ok, reason, error = self._should_run(node, scope)
            if not ok:
                return self._skip_or_fail(node, scope, reason, error)
        if node.inputs:
            error = self.rt.resolve_inputs(node)
            if error is not None:
                return self._skip_or_fail(node, scope, None, error)
        if node.body is None and node.type is not None and node.barrier is None and self.rt.runs_handlers:
            # a typed step's spec, like its inputs: resolved here, on the loop's thread (D13)
            error = self.rt.resolve_spec(node)
            if error is not None:
                return self._skip_or_fail(node, scope, "its spec could not be resolved", error)
        runs = self.rt.runs
        attempt = runs.get(node.index, 0)
        used: dict[int, int] | None = None  # retries used, per Retry action of the chain
        while True:
            attempt += 1
            runs[node.index] = attempt
            if node.barrier is None:
                outcome: Outcome = yield Execute(node, attempt, scope)
            else:
                outcome = yield from self._at_barrier(node, node.barrier, attempt, scope)
            if outcome.status == SUCCESS:
                self.rt.succeeded(node, attempt, outcome)
                return SUCCESS
            if used is None:  # made at the first failure (most steps never fail)
                used = {}
            final = yield from self._strategies.after_failure(node, scope, attempt, outcome, used)
            if final is not RETRY:
                return final
            if self.rt.stop_reason(scope) is not None:  # stopped during the retry interval
                self.rt.record(node, attempt + 1, NOT_STARTED, None, None, reason=self.rt.stop_reason(scope))
                return outcome.status

    def _at_barrier(self, node: PlanNode, ref: str, attempt: int, scope: Scope) -> Yields[Outcome]:
        """A Barrier step (R56): wait until every participant has arrived; an ``Outcome``."""
        from .executors.base import Outcome

        start = self.rt.now()
        self.rt.started(node, attempt, start)
        result = yield Arrive(node, ref, scope)
        if result is None:
            return Outcome(SUCCESS, start, self.rt.now(), "barrier")
        status, error_type, message = result
        return Outcome(status, start, self.rt.now(), "barrier", error_type, message)


#: what a need may end with for its waiter to run under the default condition (D14)
_NEED_MET = frozenset({SUCCESS, IGNORE_FAILED})


def _truthy(value: Any) -> bool:
    from ..definition.expressions import truthy

    return truthy(value)


def _undecided(node: PlanNode, condition: Any, value: Any, err: BaseException) -> str:
    """The error of a ``when`` condition whose value is neither true nor false: ``bool()`` of it
    raised (a NumPy array, a pandas Series or DataFrame, an object whose ``__bool__`` fails)."""
    what = f"gave {short(value)} (a {type(value).__name__}), which is neither true nor false: bool() raised"
    fix = "make it give true or false (for an array: .any() or .all())"
    if isinstance(condition, str):  # shown like every expression error: FQN, text, caret
        return str(ExpressionError(f"the condition {what} {raised(err)}; {fix}", condition, 0, node.fqn))
    name = getattr(condition, "__qualname__", None)
    name = name if isinstance(name, str) else type(condition).__name__
    return f"{node.fqn}: the condition {excerpt(name, 80)}(ctx) {what} {raised(err)}; {fix}"
