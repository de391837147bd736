"""The design search: a pipeline's dependencies as graphs of units, its candidate layouts, and
the pipelines they make.

:class:`Design` reads one pipeline: the stage level and each stage's items become
:class:`~notebook_pipelines.analysis.layout_graph.UnitGraph` s, with an edge for every reference
that reads a finished value (:func:`references`), every ``Failure``/``All`` step and Barrier step
(walls), every user constraint, and (unless ``across_stages``) the written stage order. It
computes the lower bound, proposes the designs (``best`` per stage, each strategy of
:mod:`~notebook_pipelines.analysis.layout_graph`, stage-level layouts), builds each into a
``Pipeline`` (:class:`_Builder`: new step groups ``lane_N``; references to moved steps rewritten
by :mod:`~notebook_pipelines.analysis.layout_rewrite`) and says what changed and which orderings
of the original it relaxes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..definition.expressions import parse_condition, parse_template
from ..definition.model import Parallel, Pipeline, Stage, Step, StepGroup
from ..definition.references import KNOWN_ROOTS, LOOP_ROOTS, expressions_of, node_of_path
from ..errors import PipelineError
from .layout_graph import (
    UnitGraph,
    asap_levels,
    candidates,
    canon,
    estimate,
    kept_together,
    levels_tree,
    ordered_pairs,
    outline,
    par_tree,
    series_tree,
    tree_width,
    unit_tree,
    units_of,
)
from .layout_rewrite import ReferenceRewriter, rewrite_expressions

#: attribute paths that read the definition, not the run: they order nothing
_STATIC_ATTRIBUTES = ("variables", "name", "identifier", "description", "type")


# -- from abstract layouts to the model ------------------------------------------------------
class _NoFit(Exception):
    pass


class _Builder:
    """Turn an abstract layout of one stage into model items (new groups named ``lane_N``)."""

    def __init__(self, nodes: list[Any], kinds: list[str], taken: set[str]):
        self.nodes, self.kinds, self.taken = nodes, kinds, set(taken)
        self.moved: dict[str, str] = {}  # step id -> new group id
        self.count = 0

    def items(self, tree: tuple, g: UnitGraph) -> list:
        parts = tree[1] if tree[0] == "series" else [tree]
        out = []
        for part in parts:
            if part[0] == "unit":
                out.append(self.nodes[part[1]])
            else:  # a parallel block
                try:
                    saved = (dict(self.moved), self.count, set(self.taken))
                    out.append(Parallel([self.member(m, g) for m in part[1]]))
                except _NoFit:
                    self.moved, self.count, self.taken = saved
                    levels = asap_levels(g, sorted(units_of(part)))
                    out.extend(
                        self.items(levels_tree(g, levels, None), g)
                        if len(levels) > 1
                        else [Parallel([self.nodes[u] for u in levels[0]])]
                    )
        return out

    def member(self, tree: tuple, g: UnitGraph) -> Any:
        if tree[0] == "unit":
            return self.nodes[tree[1]]
        if tree[0] == "par":  # pragma: no cover - par_tree flattens nested blocks
            raise _NoFit
        units = units_of(tree)
        if any(self.kinds[u] != "step" for u in units):
            raise _NoFit  # classic rules: an existing group never goes into a new one (D1)
        group_items = []
        for part in tree[1]:
            if part[0] == "unit":
                group_items.append(self.nodes[part[1]])
            elif all(p[0] == "unit" for p in part[1]):
                group_items.append(Parallel([self.nodes[p[1]] for p in part[1]]))
            else:  # deeper nesting: levels of plain steps inside the group (an over-constraint)
                for level in asap_levels(g, sorted(units_of(part))):
                    nodes = [self.nodes[u] for u in level]
                    group_items.append(nodes[0] if len(nodes) == 1 else Parallel(nodes))
        self.count += 1
        name = f"lane_{self.count}"
        while name in self.taken:
            self.count += 1
            name = f"lane_{self.count}"
        self.taken.add(name)
        for u in units:
            self.moved[self.nodes[u].id] = name
        return StepGroup(name, items=group_items)


def _stage_items(tree: tuple, nodes: list[Any]) -> list:
    parts = tree[1] if tree[0] == "series" else [tree]
    return [nodes[p[1]] if p[0] == "unit" else Parallel([nodes[m[1]] for m in p[1]]) for p in parts]


def _tree_of_items(items: list, index: dict[str, int]) -> tuple:
    parts = []
    for item in items:
        if isinstance(item, Parallel):
            parts.append(par_tree([unit_tree(index[m.id]) for m in item.items]))
        else:
            parts.append(unit_tree(index[item.id]))
    return series_tree(parts)


def references(plan: Any) -> list[tuple[Any, Any]]:
    """``(reader, target)`` plan nodes for every reference that reads a finished value."""
    out = []
    for node in plan.nodes:
        texts = [(text, "condition" in where) for where, text, _strict in expressions_of(node)]
        # what validation does not walk but the run reads: a looping strategy resolved when the
        # node starts (matrix axes, repeat items, R49-R51); a timeout is a number here (an
        # expression timeout does not validate, R59)
        rewrite_expressions(node.strategy, lambda t, c, seen=texts: seen.append((t, c)) or t)
        for text, condition in texts:
            try:
                parsed = parse_condition(text) if condition else parse_template(text)
            except PipelineError:
                continue
            for ref in parsed.references:
                if ref.path[0] not in KNOWN_ROOTS or ref.path[0] in LOOP_ROOTS:
                    continue
                try:
                    target, rest = node_of_path(plan, node, ref.path)
                except LookupError:
                    continue
                if rest[:1] and rest[0] in _STATIC_ATTRIBUTES:
                    continue
                out.append((node, target))
    return out


def _top(node: Any, kind: str) -> Any:
    """The stage (``kind='stage'``) or the top-level item of its stage's list holding ``node``."""
    x = node
    while x is not None:
        if kind == "stage" and x.kind == "stage":
            return x
        if kind == "item" and x.parent is not None and x.parent.kind == "stage":
            return x if x.phase == "execution" else None
        x = x.parent
    return None


def _with_needs(g: UnitGraph, units: Sequence[Any]) -> UnitGraph:
    """``g`` with the needs of its units (D14) as edges too, for the bound: a member of a parallel
    block waits for the siblings it needs, and the layouts keep the needs, so none can beat the
    chains they make. A copy (the search's own graph is left as it is); ``g`` when no unit has
    needs.

    >>> g = UnitGraph(3, [1.0, 5.0, 2.0], [None] * 3, ["step"] * 3)
    >>> units = [Step("a"), Step("b"), Step("c", needs=["a", "b"])]
    >>> g.longest_chain(), _with_needs(g, units).longest_chain()  # c after b: 5 + 2
    (5.0, 7.0)
    """
    index = {unit.id: k for k, unit in enumerate(units)}
    edges = [
        (index[name], v)
        for v, unit in enumerate(units)
        for name in getattr(unit, "needs", None) or ()
        if name in index
    ]
    if not edges:
        return g
    out = UnitGraph(g.n, g.weight, g.resource, g.kinds)
    out.widths, out.preds = g.widths, [set(p) for p in g.preds]
    for u, v in edges:
        out.edge(u, v)
    return out


class Design:
    """The graphs of one pipeline (stage level and each stage's items) and their layouts."""

    def __init__(
        self, p: Pipeline, plan: Any, rows: dict, deps: list, pairs: list, cap: int | None, across: bool
    ):
        self.p, self.plan, self.cap = p, plan, cap
        self.notes: list[str] = []
        self.stages: list[Stage] = [
            m for item in p.stages for m in (item.items if isinstance(item, Parallel) else [item])
        ]
        stage_index = {s.id: i for i, s in enumerate(self.stages)}
        # stage level
        weight = [rows.get(f"pipeline.stages.{s.id}", 0.0) for s in self.stages]
        self.top = UnitGraph(
            len(self.stages), weight, [s.resource for s in self.stages], ["stage"] * len(self.stages)
        )
        self.top_original = _tree_of_items(p.stages, stage_index)
        # step level, one graph per stage
        self.graphs: dict[str, tuple[UnitGraph, list[Any]]] = {}
        for s in self.stages:
            nodes = [m for item in s.items for m in (item.items if isinstance(item, Parallel) else [item])]
            kinds = ["step" if isinstance(n, Step) else "group" for n in nodes]
            prefix = f"pipeline.stages.{s.id}.spec.execution.steps."
            g = UnitGraph(
                len(nodes), [rows.get(prefix + n.id, 0.0) for n in nodes], [None] * len(nodes), kinds
            )
            self.graphs[s.id] = (g, nodes)
        self._barriers()
        for reader, target in deps:
            rs, ts = _top(reader, "stage"), _top(target, "stage")
            if rs is None or ts is None:
                continue
            if rs is not ts:
                self.top.edge(stage_index[ts.id], stage_index[rs.id])
                continue
            ri, ti = _top(reader, "item"), _top(target, "item")
            if ri is None or ti is None or ri is ti:
                continue
            g, nodes = self.graphs[rs.id]
            ids = [n.id for n in nodes]
            self_index = {x: i for i, x in enumerate(ids)}
            g.edge(self_index[ti.id], self_index[ri.id])
        for a, b in pairs:
            self._constrain(a, b, stage_index)
        # the stage level: kept as written unless across_stages=True (then stages that nothing
        # orders share parallel blocks). Stages that meet at a barrier stay in one parallel
        # block: before or after each other they would deadlock (R56, R58, E12)
        self.across = across and self.top.n > 1
        meet: dict[str, set[int]] = {}
        for n in plan.nodes:
            if n.barrier is not None and n.stage is not None:
                meet.setdefault(n.barrier, set()).add(stage_index[n.stage.id])
        self.meet = [frozenset(v) for v in meet.values() if len(v) > 1]
        if self.across and self.meet:
            self.notes.append("stages that meet at a barrier stay in one parallel block (R56)")
        elif not across and self.top.n > 1:
            self.notes.append("stages keep their order (across_stages=True lets them run side by side)")
        if not self.across:  # the written order is a dependency: the bound keeps it too
            for u, v in ordered_pairs(self.top_original):
                self.top.edge(u, v)
        if cap and self.across:
            self.notes.append(
                f"stages share a parallel block only while their layouts together run at most {cap} at once"
            )
        self.bound = self._bound()

    def _barriers(self) -> None:
        def walls(items: Sequence[Any], g: UnitGraph, status_of: Any) -> None:
            for v, node in enumerate(items):
                if status_of(node):
                    for u in range(g.n):
                        g.edge(u, v) if u < v else g.edge(v, u)

        walls(self.stages, self.top, lambda s: s.when is not None and s.when.status != "Success")
        for g, nodes in self.graphs.values():
            walls(
                nodes,
                g,
                lambda n: (
                    (n.when is not None and n.when.status != "Success")
                    or (isinstance(n, Step) and n.type == "Barrier")
                ),
            )

    def _constrain(self, a: str, b: str, stage_index: dict) -> None:
        where = {}
        for name in (a, b):
            node = next(n for n in self.plan.nodes if n.kind != "pipeline" and n.id == name)
            where[name] = node
        sa, sb = _top(where[a], "stage"), _top(where[b], "stage")
        if sa is not sb:
            self.top.edge(stage_index[sa.id], stage_index[sb.id])
            return
        ia, ib = _top(where[a], "item"), _top(where[b], "item")
        g, nodes = self.graphs[sa.id]
        ids = [n.id for n in nodes]
        if ia is not None and ib is not None and ia is not ib:
            g.edge(ids.index(ia.id), ids.index(ib.id))

    def _bound(self) -> float:
        bounds = []
        total = 0.0
        for s in self.stages:
            g, nodes = self.graphs[s.id]
            work = sum(g.weight)
            total += work
            chain = _with_needs(g, nodes).longest_chain()
            inner = max(chain, work / self.cap) if self.cap else chain
            bounds.append(inner if not s.strategy else self.top.weight[len(bounds)])
        top = UnitGraph(self.top.n, bounds, self.top.resource, self.top.kinds)
        top.preds = _with_needs(self.top, self.stages).preds
        chain = top.longest_chain()
        # stages sharing a resource key never overlap (D8): the first of them starts no earlier
        # than its longest chain of predecessors, then they run one after another
        head = [0.0] * top.n
        for v in top._topological():
            head[v] = max((head[u] + bounds[u] for u in top.preds[v]), default=0.0)
        by_key: dict[Any, list[int]] = {}
        for u, key in enumerate(self.top.resource):
            if key is not None:
                by_key.setdefault(key, []).append(u)
        queues = [min(head[u] for u in us) + sum(bounds[u] for u in us) for us in by_key.values()]
        bound = max([chain, *queues])
        if self.cap:
            bound = max(bound, total / self.cap)
        return bound

    # layouts: {"": stage-level tree, stage id: tree}
    def original_layouts(self) -> dict[str, tuple]:
        out = {"": self.top_original}
        for s in self.stages:
            _, nodes = self.graphs[s.id]
            out[s.id] = _tree_of_items(s.items, {n.id: i for i, n in enumerate(nodes)})
        return out

    def designs(self) -> list[tuple[str, dict[str, tuple]]]:
        original = self.original_layouts()
        cap = self.cap

        def fits(tree: tuple) -> bool:
            return not cap or tree_width(tree) <= cap

        per_stage: dict[str, dict[str, tuple]] = {}
        for s in self.stages:
            g, _ = self.graphs[s.id]
            if s.strategy is not None:  # a looped stage is a unit: its inside stays as it is
                per_stage[s.id] = {}
                continue
            per_stage[s.id] = {k: t for k, t in candidates(g, cap, False).items() if fits(t)}
        best_stage = {}
        for s in self.stages:
            g, _ = self.graphs[s.id]
            written = [("original", original[s.id])] if fits(original[s.id]) else []
            options = [*written, *per_stage[s.id].items()] or [("original", original[s.id])]
            best_stage[s.id] = min(options, key=lambda kv: estimate(kv[1], g.weight, g.resource))[1]
        out: list[tuple[str, dict[str, tuple]]] = []

        def top_for(stage_trees: dict[str, tuple]) -> list[tuple[str, tuple]]:
            """Stage-level layouts for these stage layouts, best estimate first: the written
            one (or, when it would run more than ``max_parallel`` at once, its stages one after
            another in the written order), and with across_stages the levels of the stages."""
            weights, widths = [], []
            for i, s in enumerate(self.stages):
                g, _ = self.graphs[s.id]
                tree = stage_trees[s.id]
                if tree is original[s.id]:
                    weights.append(self.top.weight[i])
                else:
                    weights.append(estimate(tree, g.weight, g.resource))
                # a looped stage's iterations may run side by side: it never shares a capped block
                widths.append(cap if cap and s.strategy is not None else tree_width(tree))
            written = self.top_original
            if cap and tree_width(written, widths) > cap:
                written = series_tree([unit_tree(i) for i in range(self.top.n)])
            options = [("", written)]
            if self.across:
                top = UnitGraph(self.top.n, weights, self.top.resource, self.top.kinds)
                top.preds, top.widths = self.top.preds, widths
                more = candidates(top, cap, True).items()
                options += [
                    (k, t)
                    for k, t in more
                    if (not cap or tree_width(t, widths) <= cap) and kept_together(t, self.meet)
                ]
            options.sort(key=lambda kv: estimate(kv[1], weights, self.top.resource))
            return options

        def add(name: str, stage_trees: dict[str, tuple], every_top: bool = False) -> None:
            options = top_for(stage_trees)
            for top_name, top in options[: None if every_top else 1]:
                label = " + ".join(x for x in (name, top_name and f"stages in {top_name}") if x)
                out.append((label, {"": top, **stage_trees}))
            if name and options[0][0]:  # the best puts stages side by side: also as written
                out.append((name, {"": next(t for k, t in options if not k), **stage_trees}))

        add("best", dict(best_stage), every_top=True)
        for strategy in ("levels", "late levels", "lanes", "series-parallel", "best lanes"):
            if not any(strategy in per_stage[s.id] for s in self.stages):
                continue  # (e.g. "best lanes" only exists under max_parallel)
            trees = {
                s.id: per_stage[s.id].get(strategy)
                or (original[s.id] if fits(original[s.id]) else best_stage[s.id])
                for s in self.stages
            }
            add(strategy, trees)
        if not cap:
            add("", dict(original))
        return out

    def signature(self, layouts: dict[str, tuple]) -> str:
        return repr(sorted((k, canon(v)) for k, v in layouts.items()))

    def build(self, layouts: dict[str, tuple]) -> tuple[Pipeline, dict[str, str]]:
        """The pipeline of ``layouts`` and ``{new FQN prefix: old FQN prefix}`` of moved steps."""
        moved_by_stage: dict[str, dict[str, str]] = {}
        stages: dict[str, Stage] = {}
        items_by_stage: dict[str, list] = {}
        for s in self.stages:
            g, nodes = self.graphs[s.id]
            taken = {n.id for n in self.plan.nodes if n.stage is not None and n.stage.id == s.id}
            builder = _Builder(nodes, g.kinds, taken)
            items_by_stage[s.id] = builder.items(layouts[s.id], g) if g.n else []
            moved_by_stage[s.id] = builder.moved
        rewrite = ReferenceRewriter(self.plan, moved_by_stage)
        for s in self.stages:
            new_items = [rewrite.item(it, s.id) for it in items_by_stage[s.id]]
            rollback = [rewrite.item(it, s.id) for it in s.rollback_items]
            stages[s.id] = rewrite.copy(s, s.id, items=new_items, rollback_items=rollback)
        top = _stage_items(layouts[""], [stages[s.id] for s in self.stages])
        root = rewrite_expressions(self.p, lambda text, cond: rewrite.text(self.plan.root, text, cond))
        new = dataclasses.replace(root, stages=top, rules=self.p.rules)
        moved = {}
        for stage_id, steps in moved_by_stage.items():
            base = f"pipeline.stages.{stage_id}.spec.execution.steps."
            for step, group in steps.items():
                moved[f"{base}{group}.steps.{step}"] = f"{base}{step}"
        return new, moved

    def changes(self, layouts: dict[str, tuple], moved: dict[str, str]) -> list[str]:
        original = self.original_layouts()
        out = []
        if canon(layouts[""]) != canon(original[""]):
            out.append("stages: " + outline(layouts[""], [s.id for s in self.stages], {}))
        for s in self.stages:
            if canon(layouts[s.id]) != canon(original[s.id]):
                _, nodes = self.graphs[s.id]
                lanes: dict[str, str] = {}
                for new, old in moved.items():
                    if old.startswith(f"pipeline.stages.{s.id}.spec."):
                        lanes[old.rsplit(".", 1)[1]] = new.split(".steps.")[-2].rsplit(".", 1)[-1]
                out.append(f"stage {s.id}: " + outline(layouts[s.id], [n.id for n in nodes], lanes))
        return out

    def relaxed(self, layouts: dict[str, tuple]) -> list[tuple[str, str]]:
        original = self.original_layouts()
        out = []
        for key, g, names in [
            ("", self.top, [s.id for s in self.stages]),
            *((s.id, *self._graph_names(s.id)) for s in self.stages),
        ]:
            before = ordered_pairs(original[key])
            after = ordered_pairs(layouts[key])
            anc = g.closure()
            for u, v in sorted(before - after):
                # D8: stages sharing a resource key keep their list order, unless the layout
                # puts the second in an earlier block
                same_queue = (
                    g.resource[u] is not None and g.resource[u] == g.resource[v] and (v, u) not in after
                )
                if u not in anc[v] and not same_queue:
                    out.append((names[u], names[v]))
        return out

    def _graph_names(self, stage_id: str) -> tuple[UnitGraph, list[str]]:
        g, nodes = self.graphs[stage_id]
        return g, [n.id for n in nodes]
