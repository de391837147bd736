"""Looping strategies during a run (R46–R54, D11): the run's copies of looped nodes.

The iterations themselves are :mod:`..definition.looping`'s (a pure expansion); the rules
(:mod:`.semantics`) decide when they run. Here is what a run makes of one iteration:
:func:`expand` copies the looped node and everything below it, with the iteration's postfix
in identifiers and FQNs, and files the copies in the run's :class:`RunView` — the plan as the
run sees it, which ``<+…>`` references resolve against.
"""

from __future__ import annotations

from collections import ChainMap
from typing import TYPE_CHECKING, Any, Protocol

from ..definition.plan import PlanNode
from ..errors import ExpressionError

if TYPE_CHECKING:  # pragma: no cover
    from ..definition.looping import Iteration
    from ..definition.plan import Plan

__all__ = ["LoopRun", "RunView", "expand"]


class RunView:
    """What references resolve against during a run: the plan's nodes and the run's copies of
    looped nodes (``by_fqn`` looks in the copies first)."""

    run_view = True

    def __init__(self, plan: Plan):
        self.pipeline, self.root, self.nodes = plan.pipeline, plan.root, plan.nodes
        self.by_fqn: ChainMap[str, PlanNode] = ChainMap({}, plan.by_fqn)


class LoopRun(Protocol):
    """What :func:`expand` uses of the run (the scheduler)."""

    plan: Plan
    view: Plan | RunView
    extra: list[PlanNode]

    def evaluate(self, node: PlanNode, value: Any) -> Any: ...


def expand(run: LoopRun, node: PlanNode, iteration: Iteration) -> PlanNode:
    """The run's copy of ``node`` (and everything below it) for one iteration (R46, D11).

    The copy's identifier and FQN carry the iteration's postfix (``build_0_1``); its
    descendants' FQNs follow; every copy gets an index after the plan's nodes (its trace
    rows carry its own FQN) and is found by references (``view.by_fqn``). Looped nodes
    below keep their strategy: they expand when their copy starts.
    """
    view = run.view
    if not isinstance(view, RunView):
        view = run.view = RunView(run.plan)
    by_fqn, extra, base = view.by_fqn.maps[0], run.extra, len(run.plan.nodes)
    old, new = node.fqn, node.fqn + iteration.postfix
    taken = view.by_fqn.get(new)
    if taken is not None and (taken.origin or taken) is not (node.origin or node):
        from ..definition.looping import LoopingError

        raise LoopingError(  # R46: run-time items name an iteration as another node
            f"iteration {iteration.index} would be {new}, which is the {taken.kind.replace('_', ' ')} "
            f"{taken.id!r}: rename one of them (an iteration's identifier is the node's plus its postfix)"
        )
    copies: dict[int, PlanNode] = {}

    def copy(n: PlanNode) -> PlanNode:
        c = PlanNode.__new__(PlanNode)
        c.__dict__.update(n.__dict__)
        copies[id(n)] = c
        c.origin = n.origin or n
        c.fqn = new + n.fqn[len(old) :]
        c.iteration = iteration.index
        if n.kind != "parallel":
            c.index = base + len(extra)
            extra.append(c)
            by_fqn[c.fqn] = c
        if n is not node:
            c.parent = copies.get(id(n.parent), n.parent)
            c.stage = copies.get(id(n.stage), n.stage)
            c.group = copies.get(id(n.group), n.group)
        if n.items:
            c.items = tuple(copy(i) for i in n.items)
        if n.rollback:
            c.rollback = tuple(copy(i) for i in n.rollback)
        return c

    root = PlanNode.__new__(PlanNode)
    root.__dict__.update(node.__dict__)
    copies[id(node)] = root
    root.origin = node.origin or node
    root.id, root.fqn, root.iteration = node.id + iteration.postfix, new, iteration.index
    root.name = f"{node.name}{iteration.postfix}"
    root.strategy, root.loop, root.looped = None, iteration, node
    root.index = base + len(extra)
    extra.append(root)
    by_fqn[new] = root
    if node.kind == "stage":
        root.stage = root
    elif node.kind == "step_group":
        root.group = root
    if node.items:
        root.items = tuple(copy(i) for i in node.items)
    if node.rollback:
        root.rollback = tuple(copy(i) for i in node.rollback)
    name = getattr(node.strategy, "node_name", None)
    if isinstance(name, str):
        try:
            root.name = str(run.evaluate(root, name))
        except ExpressionError:
            pass  # the default name stays; the strategy's nodeName is only for display
    return root
