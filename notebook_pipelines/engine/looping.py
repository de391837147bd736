"""Looping strategies during a run (R46–R54, D11): which iterations, and the run's copies.

The expansion itself is :mod:`..definition.looping`'s (pure); the rules (:mod:`.semantics`)
decide when iterations run. Here is what a run adds:

- :class:`Iterations` — a looped node's iterations when it starts: run-time lists resolved
  now; in a simulation, a list only a run knows comes from ``simulate(iterations=…)`` or counts
  one item (with a warning naming the node);
- :func:`expand` — the copy of the looped node and everything below it for one iteration,
  with the iteration's postfix in identifiers and FQNs, filed in the run's :class:`RunView`:
  the plan as the run sees it, which ``<+…>`` references resolve against.
"""

from __future__ import annotations

from collections import ChainMap
from typing import TYPE_CHECKING, Any, Protocol

from ..definition.looping import inner_count, iterations, outer_count, runtime_values
from ..definition.plan import PlanNode
from ..errors import ExpressionError

if TYPE_CHECKING:  # pragma: no cover
    from ..definition.looping import Iteration
    from ..definition.plan import Plan

__all__ = ["IterationRun", "Iterations", "LoopRun", "RunView", "expand"]


class IterationRun(Protocol):
    """What :class:`Iterations` uses of the run (the rules' ``Runtime``)."""

    @property
    def loop_counts(self) -> dict[str, Any] | None: ...

    def evaluate(self, node: PlanNode, value: Any) -> Any: ...

    def warn(self, message: str) -> None: ...


class _Unknown(LookupError):
    """A looping strategy's value a simulation cannot know (an output no virtual body published)."""


class Iterations:
    """The iterations of the looped nodes of one run, as each starts."""

    def __init__(self, run: IterationRun) -> None:
        self._run = run
        self._warned: set[int] = set()  # looped nodes already warned about (simulation)
        self._inner_counts: dict[int, int] = {}  # plan node index → inner_count

    def of(self, node: PlanNode) -> list[Iteration]:
        """The iterations of a looped node; in a simulation, run-time lists come from
        ``iterations=`` or count one item (with a warning naming the node)."""
        strategy, run = node.strategy, self._run
        counts = run.loop_counts

        def resolve(value: Any) -> Any:
            return run.evaluate(node, value)

        outer = outer_count(node) * self._inner(node)  # nested loops: bounded before expanding
        if counts is None or not runtime_values(strategy):
            return iterations(strategy, resolve, outer=outer)
        origin = node.origin or node
        given = counts.get(origin.fqn, counts.get(origin.id))
        if given is not None:
            return iterations(strategy, count=given, outer=outer)

        def known(value: Any) -> Any:  # None: an output no virtual body published
            resolved = resolve(value)
            if resolved is None:
                raise _Unknown(f"{value} has no value in a simulation")
            return resolved

        try:
            # a value the simulation knows (a variable, an output from outputs=) that is not a
            # list fails the node here as in a run (LoopingError from iterations())
            return iterations(strategy, known, outer=outer)
        except (_Unknown, ExpressionError) as err:  # a value only a run knows
            if origin.index not in self._warned:
                self._warned.add(origin.index)
                reason = str(err).splitlines()[0]
                run.warn(
                    f"{origin.fqn}: the looping strategy's items are known only in a run ({reason}); "
                    f"simulated as one iteration — give simulate(iterations={{{origin.id!r}: N}}) "
                    f"(CLI: --iterations {origin.id}=N) for N"
                )
            return iterations(strategy, count=1, outer=outer)

    def _inner(self, node: PlanNode) -> int:
        """:func:`inner_count` of ``node``'s plan node (computed once per run)."""
        origin = node.origin or node
        known = self._inner_counts.get(origin.index)
        if known is None:
            known = self._inner_counts[origin.index] = inner_count(origin)
        return known


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
        except Exception:  # ExpressionError, or a value whose str() raises: the default name stays
            pass  # the strategy's nodeName is only for display
    return root
