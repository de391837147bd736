"""The running state of a container (pipeline, stage, step group, rollback section, iteration).

The rules (:mod:`.semantics`) create and update scopes; the scheduler and the records of what
a generator waits for (:mod:`.runtime`) carry them, so that a timeout, a rollback or an abort
finds every wait inside a scope. It lives below both so that neither imports the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ..definition.failure import Action
    from ..definition.plan import PlanNode

__all__ = ["Scope"]


class Scope:
    """The running state of a pipeline, stage, step group, or rollback section."""

    __slots__ = (
        "expired",
        "fail_scope",
        "failed",
        "kind",
        "node",
        "parent",
        "ran",
        "request",
        "retries",
        "rolled_back",
        "stage_scope",
        "stop",
    )

    def __init__(self, node: PlanNode, parent: Scope | None, kind: str):
        self.node, self.parent, self.kind = node, parent, kind
        self.failed = False  # something in this stage (pipeline) failed so far (R29, R30)
        self.stop: str | None = None  # why nothing new may start here
        self.request: Action | None = None  # a rollback/retry asked for by a failing child
        self.ran: list[
            tuple[PlanNode, Scope]
        ] = []  # groups (stages) that ran, with their scopes, for rollback (R36, R38)
        self.rolled_back = False
        self.expired = False
        self.retries = 0  # RetryStepGroup retries already used by this group (R19)
        # where "failed so far" is kept for the nodes in this scope: the stage, or rollback section
        self.stage_scope: Scope = (
            self if kind in ("stage", "rollback") or parent is None else parent.stage_scope
        )
        # where "failed so far" is kept for the nodes in this scope: the stage (rollback section),
        # or one iteration of a looped node — its failure reaches the stage when the loop ends
        self.fail_scope: Scope = (
            self if kind in ("stage", "rollback", "loop") or parent is None else parent.fail_scope
        )
        if (
            kind == "loop" and parent is not None
        ):  # the stages and groups an iteration runs are the container's (R36, R38)
            self.ran = parent.ran

    def up(self, *kinds: str) -> Scope | None:
        scope: Scope | None = self
        while scope is not None and scope.kind not in kinds:
            scope = scope.parent
        return scope

    def within(self, other: Scope) -> bool:
        scope: Scope | None = self
        while scope is not None:
            if scope is other:
                return True
            scope = scope.parent
        return False
