"""What a failed step attempt leads to: the failure strategies (R15–R24, D3, D9, D12, E9).

The rules (:mod:`.semantics`) run a step's attempts; after a failed one they ask
:meth:`FailureStrategies.after_failure`, a generator like theirs, which follows the strategy
chosen for the error type (R22, R23) through its actions — ``Retry`` while retries are left
(then its ``onRetryFailure``; a ``Pause`` for the interval), a manual intervention's answer or
its ``onTimeout`` (an ``Intervene`` request, R20) — to one that ends the step (R21): its final
status, recorded, and what it asks of the containers (a rollback, a group retry, an abort).
It sees the run only through the :class:`~.runtime.Runtime`, as the rules do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypedDict

from ..definition.evaluation import raised
from ..definition.failure import (
    Abort,
    Action,
    Ignore,
    ManualIntervention,
    MarkAsFailure,
    MarkAsSuccess,
    PipelineRollback,
    ProceedWithDefaultValues,
    Retry,
    RetryStepGroup,
    StageRollback,
    StepGroupRollback,
    action_from_dict,
)
from ..definition.limits import MAX_RETRIES
from ..definition.plan import PlanNode, choose
from ..definition.statuses import ABORTED, EXPIRED, IGNORE_FAILED, SUCCESS
from ..errors import ExpressionError
from .runtime import Intervene, Pause
from .scope import Scope

if TYPE_CHECKING:  # pragma: no cover
    from .executors.base import Outcome
    from .runtime import Runtime, Yields

__all__ = ["INTERVENTION_RETRIES", "RETRY", "FailureStrategies"]

#: what ``after_failure`` returns when the step runs again
RETRY = "retry"
#: the key under which ``after_failure`` counts a step's retries answered by a person (bounded
#: like a Retry count: an ``on_intervention`` callback answering Retry for ever must not loop)
INTERVENTION_RETRIES = -1


class _RowInfo(TypedDict, total=False):
    """What every row recorded for one failed attempt repeats (``Runtime.record``'s keywords)."""

    worker: str | None
    log: str | None
    error_type: str | None
    error: str | None
    reason: str | None


class FailureStrategies:
    """The failure strategies of one run's steps; ``failed(node, scope, status)`` notes a
    non-positive status in the "failed so far" of the node's stage (the rules' own)."""

    def __init__(self, rt: Runtime, failed: Callable[[PlanNode, Scope, str], None]) -> None:
        self.rt = rt
        self._failed = failed

    def after_failure(
        self, node: PlanNode, scope: Scope, attempt: int, outcome: Outcome, used: dict[int, int]
    ) -> Yields[str]:
        """What a failed attempt leads to: ``RETRY``, or the step's final status (recorded).

        The failure strategy chosen for the error type (R22, R23) is followed through its
        actions: ``Retry`` while retries are left (then its ``onRetryFailure``), a manual
        intervention's answer or its ``onTimeout`` (R20), and finally an action that ends the
        step (R21). An aborted step, or one whose stage timed out, takes no strategy.
        """
        status = outcome.status
        info: _RowInfo = {"worker": outcome.worker, "log": outcome.log}
        info["error_type"], info["error"] = outcome.error_type, outcome.error
        if status == ABORTED or self._scope_expired(scope):
            info["reason"] = self.rt.stop_reason(scope)
            self.rt.record(node, attempt, status, outcome.start, outcome.end, **info)
            self._failed(node, scope, status)
            return status
        action, owner = choose(node, outcome.error_type or "Unknown")
        while True:
            if isinstance(action, Retry):
                n = used.get(id(action), 0)
                if n < action.count and self._retry_applies(action, node, outcome):
                    used[id(action)] = n + 1
                    self.rt.record(node, attempt, status, outcome.start, outcome.end, action="Retry", **info)
                    wait = action.interval(n + 1)
                    if wait:
                        yield Pause(wait, scope)
                    return RETRY
                action = action.then
                continue
            if isinstance(action, ManualIntervention):
                if self.rt.aborted is not None:
                    break
                answer = yield Intervene(node, outcome, action, scope)
                if self.rt.aborted is not None:
                    action = Abort()
                    break
                if answer is None and self._scope_expired(scope):  # R61: the stage ran out of time
                    status, info["reason"] = EXPIRED, self.rt.stop_reason(scope)
                    break
                if answer is None:
                    info["reason"] = "manual intervention timed out"
                    action = action.on_timeout
                    continue
                if answer == "Retry" and used.get(INTERVENTION_RETRIES, 0) >= MAX_RETRIES:
                    info["reason"] = (
                        f"manual intervention answered Retry {MAX_RETRIES} times, the limit for one step; "
                        "the step fails (answer Abort or MarkAsSuccess to end it otherwise)"
                    )
                    action = MarkAsFailure()
                    break
                if answer == "Retry":
                    used[INTERVENTION_RETRIES] = used.get(INTERVENTION_RETRIES, 0) + 1
                    info["reason"] = "manual intervention"  # replaces an earlier one's timeout
                    self.rt.record(node, attempt, status, outcome.start, outcome.end, action="Retry", **info)
                    return RETRY
                info["reason"] = f"manual intervention: {answer}"
                action = action_from_dict(answer)
                continue
            break
        final = self._apply(action, node, scope, status, owner)
        info["error"] = outcome.error  # with the error of a retry condition that failed, if any
        self.rt.record(node, attempt, final, outcome.start, outcome.end, action=action.type, **info)
        if isinstance(action, Abort):
            self.rt.abort(f"aborted by the failure strategy of {node.fqn}")
        return final

    def _scope_expired(self, scope: Scope) -> bool:
        cur: Scope | None = scope
        while cur is not None:
            if cur.expired:
                return True
            cur = cur.parent
        return False

    def _retry_applies(self, action: Retry, node: PlanNode, outcome: Outcome) -> bool:
        if action.condition is None:
            return True
        from ..definition.references import evaluate_condition

        try:  # a condition that cannot be evaluated does not retry; its error joins the step's (D13)
            if callable(action.condition):
                return _truthy(action.condition(outcome))
            return _truthy(evaluate_condition(self.rt, node, action.condition, failure=outcome))
        except (Exception, SystemExit) as err:  # the user's function (sys.exit too), a value's __bool__…
            text = str(err) if isinstance(err, ExpressionError) else raised(err)
            outcome.error = f"{outcome.error}\nthe retry condition failed: {text}"
            return False

    def _apply(
        self, action: Action, node: PlanNode, scope: Scope, status: str, owner: PlanNode | None = None
    ) -> str:
        """The node's final status under ``action``, and what it asks of its containers (R21).

        ``owner`` is the node whose failure strategy chose the action: a group-level action
        acts on that group (with nested groups, not necessarily the innermost one).
        """
        rollback_phase = scope.stage_scope.kind == "rollback"
        if isinstance(action, Ignore):
            return IGNORE_FAILED
        if isinstance(action, MarkAsSuccess | ProceedWithDefaultValues):
            return SUCCESS
        if not rollback_phase:
            if isinstance(action, StageRollback):
                target = scope.up("stage")
                if target is not None:  # a step is always inside a stage
                    target.request, target.stop = action, "stage rolled back"
            elif isinstance(action, StepGroupRollback | RetryStepGroup):
                target = scope.up("group")
                if owner is not None and owner.kind == "step_group":
                    while target is not None and target.node is not owner:
                        target = target.parent
                if isinstance(action, RetryStepGroup) and target and target.retries >= action.count:
                    target = None  # retries used up: the step fails, the next nodes' `when` decide (E9)
                if target is not None:
                    target.request = action
                    target.stop = (
                        "step group retried"
                        if isinstance(action, RetryStepGroup)
                        else "step group rolled back"
                    )
                    if isinstance(action, RetryStepGroup):
                        return status
            elif isinstance(action, PipelineRollback):
                target = scope.up("pipeline")
                if target is not None:  # every scope is inside the pipeline's
                    target.request, target.stop = action, "pipeline rolled back"
        self._failed(node, scope, status)
        return status


def _truthy(value: Any) -> bool:
    from ..definition.expressions import truthy

    return truthy(value)
