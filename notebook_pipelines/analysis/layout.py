"""The design assistant: find the parallelism a pipeline leaves on the table.

``suggest_layout(p)`` reads what each step really depends on and proposes faster layouts that
Harness can express, each simulated with the same durations as the original.

**Units.** Inside a stage the units are the items of its execution list (a parallel block
counts as its members): a step, or a step group kept whole (its settings, rollback list and
looping strategy stay with it; looped nodes are units, R46–R54). At the pipeline level the
units are the stages. Rollback lists are copied unchanged.

**Stage boundaries.** Steps never leave their stage, not even with ``across_stages=True``: a
stage carries settings its steps run under — failure strategies and rollback (R7, R35),
variables (``<+stage.variables.x>``), infrastructure and resource key (D8), its ``when`` and
looping strategy — so a step moved to another stage would run differently. By default the
stages also keep their written layout (the order is a dependency, and the bound counts it).
``across_stages=True`` lets stages that nothing orders share parallel blocks of stages (R11):
a stage still runs after every stage it reads an output or status of (a step reference, or
the stage's own ``when``), after the first of a user constraint, and stages that share a
resource key queue in list order (D8); stages that meet at a barrier stay in one parallel
block (R56, R58). Harness has no group of stages, so a stage-level layout is a series of
parallel blocks (levels, ASAP and ALAP): a chain of two stages cannot run beside a third one
and the bound (the longest chain) may not be reachable — ``gap`` says by how much.

**Dependencies** (what a layout must keep, everything else is relaxed and listed):

* every ``<+…>`` reference that reads a *finished value* — an output or a status — in a
  ``when`` condition, a retry condition, an input or a typed step's spec (R44, R45), a
  looping strategy (a matrix axis or repeat list resolved when the node starts, R49, R50):
  the reader's unit runs after the unit that holds the target; names,
  identifiers and variables are part of the definition and order nothing. The references
  are walked by the same walker validation uses
  (:func:`~notebook_pipelines.definition.references.node_of_path`);
* a unit whose ``when`` is not the default ``Success`` (a ``Failure``/``All`` step, such as a
  cleanup or a notification, R29/R30), and a Barrier step (R55), keep every unit before them
  before them and every unit after them after them;
* user constraints ``("build", "deploy")``: ``deploy`` never starts before ``build`` ends
  (identifiers of steps, step groups or stages);
* resource keys (D8): stages sharing a key never overlap, and the estimate knows it;
* with the default ``across_stages=False``, the written order of the stages.

**Layouts Harness can express** (R4, R5, R11, R12, D1): a stage is a serial list of items, an
item is a unit or a parallel block, and a parallel block holds units or *new* step groups,
each a serial list of steps and parallel blocks of steps (``classic`` rules: groups do not
nest, so an existing group never goes into a new one). Pipelines hold stages and parallel
blocks of stages. A dependency graph is in general not series-parallel; the assistant tries
several embeddings and keeps the best by estimate, then by simulation:

* ``levels`` — ASAP layering (every unit as early as its dependencies allow), and ALAP (as
  late as they allow, which keeps short side branches out of the way of resource queues);
* ``lanes`` — list scheduling (critical-path priority, a unit continues the lane of its
  latest predecessor): every lane becomes a step group holding a chain, the lanes run in one
  parallel block, and a join closes the block only where a unit waits for another lane;
* ``series-parallel`` — a recursive decomposition: independent parts in parallel, otherwise
  the split into "before" and "after" (at each finishing time of the ASAP schedule) with the
  best estimate, searched with memoisation;
* with ``max_parallel``: lanes capped at ``max_parallel`` (list scheduling with
  critical-path priority, longest first), levels cut into blocks of at most ``max_parallel``,
  and, for independent steps, the exact best partition into lanes (a branch-and-bound search
  while the stage is small). Scheduling with a cap is NP-hard in general: each suggestion
  reports ``bound_s`` — the longest dependency chain, and the total work ÷ ``max_parallel``
  — and ``gap`` (how far above it the makespan is).

``max_parallel`` caps the whole pipeline, not each stage: stages share a parallel block
(with ``across_stages=True``) only while their layouts' widths add up to at most the cap,
and stages written side by side whose layouts together exceed it run one after another in
the written order. The width counts units: a step group or a looped step counts as one
(its inside keeps its own layout), and a looped stage fills the cap. The bound is over the
same dependencies: each stage takes at least its longest chain and its work ÷ the cap,
chained along the stage order (written, or the stage dependencies with ``across_stages``).

References to a step that moves into a new group are rewritten (its FQN gains
``.steps.GROUP`` — R42) wherever a ``<+…>`` can live — conditions, retry conditions and every
other field of a failure strategy, inputs, spec, variables, looping strategies, timeouts,
rollback steps — through one walk, :func:`rewrite_expressions`. A candidate that does not
validate is dropped; the layouts respect the dependencies by construction, and
``tests/test_layout.py`` checks every suggestion's simulated trace (each dependency's second
starts after its first ends).

**Distinct suggestions.** Candidates are compared by :func:`layout_key` (parallel blocks as
sets, new step groups by what they hold, not their names): a layout found by two strategies
is simulated once. Of suggestions with the same makespan only the one that relaxes the fewest
orderings is kept (then the one with fewer new groups): another with the same time is no
better. At most ``MAX_SUGGESTIONS`` are returned.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..definition.expressions import parse_condition, parse_template
from ..definition.model import Parallel, Pipeline, Stage, Step, StepGroup, verb
from ..definition.references import KNOWN_ROOTS, LOOP_ROOTS, expressions_of, node_of_path
from ..errors import LayoutError, PipelineError

__all__ = ["Suggestion", "Suggestions", "references", "rewrite_expressions", "suggest_layout"]

#: attribute paths that read the definition, not the run: they order nothing
_STATIC_ATTRIBUTES = ("variables", "name", "identifier", "description", "type")
#: how many suggestions to return at most
MAX_SUGGESTIONS = 5
#: above this many units in one stage, the series-parallel search tries fewer splits
_SEARCH_UNITS = 24


# -- the abstract layouts: ("unit", i) | ("series", [..]) | ("par", [..]) ----------------------
def _unit(i: int) -> tuple:
    return ("unit", i)


def _series(parts: list) -> tuple:
    flat: list = []
    for part in parts:
        flat.extend(part[1] if part[0] == "series" else [part])
    return flat[0] if len(flat) == 1 else ("series", flat)


def _par(parts: list) -> tuple:
    flat: list = []
    for part in parts:
        flat.extend(part[1] if part[0] == "par" else [part])
    return flat[0] if len(flat) == 1 else ("par", flat)


def _units_of(tree: tuple) -> list[int]:
    if tree[0] == "unit":
        return [tree[1]]
    return [u for part in tree[1] for u in _units_of(part)]


def _estimate(tree: tuple, weight: Sequence[float], resource: Sequence[Any]) -> float:
    """Series add up, parallel parts take the longest; units sharing a resource key in one
    parallel block run one after the other (D8)."""
    if tree[0] == "unit":
        return weight[tree[1]]
    times = [_estimate(part, weight, resource) for part in tree[1]]
    if tree[0] == "series":
        return sum(times)
    queued: dict[Any, float] = {}
    free = []
    for part, t in zip(tree[1], times, strict=True):
        key = resource[part[1]] if part[0] == "unit" else None
        if key is None:
            free.append(t)
        else:
            queued[key] = queued.get(key, 0.0) + t
    return max([*free, *queued.values()], default=0.0)


def _width(tree: tuple, unit_width: Sequence[int] | None = None) -> int:
    """How many units (or ``unit_width[u]`` each) can run at once in ``tree``."""
    if tree[0] == "unit":
        return 1 if unit_width is None else unit_width[tree[1]]
    widths = [_width(part, unit_width) for part in tree[1]]
    return sum(widths) if tree[0] == "par" else max(widths)


def _together(tree: tuple, groups: Sequence[frozenset[int]]) -> bool:
    """Whether each group of units sits in one parallel block of ``tree`` (a series of blocks)."""
    parts = tree[1] if tree[0] == "series" else [tree]
    blocks = [set(_units_of(part)) for part in parts]
    return all(any(group <= block for block in blocks) for group in groups)


def _ordered_pairs(tree: tuple) -> set[tuple[int, int]]:
    """``(u, v)``: in ``tree``, ``v`` starts only after ``u`` ends."""
    pairs: set[tuple[int, int]] = set()
    if tree[0] == "unit":
        return pairs
    for part in tree[1]:
        pairs |= _ordered_pairs(part)
    if tree[0] == "series":
        seen: list[int] = []
        for part in tree[1]:
            units = _units_of(part)
            pairs.update((u, v) for u in seen for v in units)
            seen.extend(units)
    return pairs


# -- the dependency graph of one list of units ---------------------------------------------------
class _Graph:
    """Units ``0..n-1`` with weights, resource keys and edges ``u → v`` (v after u)."""

    def __init__(self, n: int, weight: list[float], resource: list[Any], kinds: list[str]):
        self.n = n
        self.weight = weight
        self.resource = resource
        self.kinds = kinds  # "step" | "group" | "stage": only steps go into new groups
        self.widths = [1] * n  # how many steps a unit runs at once (for max_parallel)
        self.preds: list[set[int]] = [set() for _ in range(n)]

    def edge(self, u: int, v: int) -> None:
        if u != v:
            self.preds[v].add(u)

    def closure(self) -> list[set[int]]:
        """Every unit's ancestors (the original serial order is a topological order)."""
        anc: list[set[int]] = [set() for _ in range(self.n)]
        for v in self._topological():
            for u in self.preds[v]:
                anc[v] |= anc[u] | {u}
        return anc

    def _topological(self) -> list[int]:
        order, seen = [], set()
        for v in range(self.n):
            stack = [(v, False)]
            while stack:
                x, done = stack.pop()
                if done:
                    order.append(x)
                    continue
                if x in seen:
                    continue
                seen.add(x)
                stack.append((x, True))
                stack.extend((u, False) for u in sorted(self.preds[x], reverse=True) if u not in seen)
        return order

    def bottom(self, units: Iterable[int]) -> dict[int, float]:
        """Longest remaining chain from each unit (its weight included), within ``units``."""
        units = set(units)
        succ: dict[int, list[int]] = {u: [] for u in units}
        for v in units:
            for u in self.preds[v] & units:
                succ[u].append(v)
        out: dict[int, float] = {}
        for u in reversed([x for x in self._topological() if x in units]):
            out[u] = self.weight[u] + max((out[v] for v in succ[u]), default=0.0)
        return out

    def longest_chain(self) -> float:
        return max(self.bottom(range(self.n)).values(), default=0.0)


# -- layouts ----------------------------------------------------------------------------------
def _asap_levels(g: _Graph, units: list[int]) -> list[list[int]]:
    level: dict[int, int] = {}
    for u in sorted(units):
        level[u] = 1 + max((level[p] for p in g.preds[u] if p in level), default=-1)
    return [[u for u in units if level[u] == k] for k in range(max(level.values(), default=-1) + 1)]


def _alap_levels(g: _Graph, units: list[int]) -> list[list[int]]:
    units_set = set(units)
    succ: dict[int, list[int]] = {u: [] for u in units}
    for v in units:
        for u in g.preds[v] & units_set:
            succ[u].append(v)
    height: dict[int, int] = {}
    for u in sorted(units, reverse=True):
        height[u] = 1 + max((height[v] for v in succ[u]), default=-1)
    top = max(height.values(), default=-1)
    return [[u for u in units if top - height[u] == k] for k in range(top + 1)]


def _levels_tree(g: _Graph, levels: list[list[int]], cap: int | None) -> tuple:
    """Levels in series; with ``cap``, a level too wide is cut into blocks (longest first) that
    each run at most ``cap`` at once (a unit wider than ``cap`` has a block of its own)."""
    parts = []
    for level in levels:
        if cap is None or sum(g.widths[u] for u in level) <= cap:
            parts.append(_par([_unit(u) for u in level]))
            continue
        blocks: list[list[int]] = []
        for u in sorted(level, key=lambda u: (-g.weight[u], u)):
            if not blocks or sum(g.widths[x] for x in blocks[-1]) + g.widths[u] > cap:
                blocks.append([])
            blocks[-1].append(u)
        parts.extend(_par([_unit(u) for u in sorted(block)]) for block in blocks)
    return _series(parts)


def _lanes_tree(g: _Graph, units: list[int], cap: int | None) -> tuple:
    """List scheduling into lanes, then phases of parallel lanes (see the module notes)."""
    bottom = g.bottom(units)
    unit_set = set(units)
    done_at: dict[int, float] = {}
    lane_of: dict[int, int] = {}
    start: dict[int, float] = {}
    lane_free: list[float] = []
    lane_last: list[int | None] = []
    busy_resource: dict[Any, float] = {}
    waiting = set(units)
    t = 0.0
    while waiting:
        ready = [
            u
            for u in waiting
            if all(p in done_at and done_at[p] <= t for p in g.preds[u] & unit_set)
            and busy_resource.get(g.resource[u], -1.0) <= t
        ]
        ready.sort(key=lambda u: (-bottom[u], -g.weight[u], u))
        progressed = False
        for u in ready:
            if g.resource[u] is not None and busy_resource.get(g.resource[u], -1.0) > t:
                continue
            idle = [k for k in range(len(lane_free)) if lane_free[k] <= t]
            preds = sorted(g.preds[u] & unit_set, key=lambda p: (done_at[p], p))
            own = [lane_of[p] for p in reversed(preds) if lane_of[p] in idle and lane_last[lane_of[p]] == p]
            if own:
                lane = own[0]
            elif idle:
                lane = idle[0]
            elif cap is None or len(lane_free) < cap:
                lane_free.append(t)
                lane_last.append(None)
                lane = len(lane_free) - 1
            else:
                break
            lane_of[u], start[u] = lane, t
            done_at[u] = lane_free[lane] = t + g.weight[u]
            lane_last[lane] = u
            if g.resource[u] is not None:
                busy_resource[g.resource[u]] = done_at[u]
            waiting.discard(u)
            progressed = True
        later = [x for x in [*done_at.values(), *busy_resource.values()] if x > t]
        if not progressed and not later:  # pragma: no cover - a cycle would be a bug upstream
            raise LayoutError("the dependencies form a cycle")
        if later:
            t = min(later)
    return _phases(g, sorted(units, key=lambda u: (start[u], lane_of[u], u)), lane_of)


def _phases(g: _Graph, order: list[int], lane_of: dict[int, int]) -> tuple:
    """Cut scheduled lanes into phases: a unit that waits for another lane of the current phase
    (or a unit that is not a step, which cannot go into a new group) closes the phase."""
    phases: list[dict[int, list[int]]] = [{}]
    for u in order:
        phase = phases[-1]
        lane = lane_of[u]
        cross = any(p in chain for k, chain in phase.items() if k != lane for p in g.preds[u])
        chain = phase.get(lane, [])
        ungroupable = chain and (g.kinds[u] != "step" or g.kinds[chain[-1]] != "step")
        if cross or ungroupable:
            phases.append({})
            phase = phases[-1]
        phase.setdefault(lane, []).append(u)
    parts = [
        _par([_series([_unit(u) for u in chain]) for chain in sorted(phase.values())])
        for phase in phases
        if phase
    ]
    return _series(parts)


def _exact_lanes(g: _Graph, units: list[int], cap: int) -> tuple | None:
    """The best partition of independent units into ``cap`` lanes (branch and bound)."""
    if len(units) > 16 or any(g.preds[u] & set(units) for u in units):
        return None
    order = sorted(units, key=lambda u: (-g.weight[u], u))
    best = [math.inf, None]
    loads = [0.0] * cap
    assign: dict[int, int] = {}
    budget = [200_000]

    def search(i: int) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            return
        if i == len(order):
            if max(loads) < best[0]:
                best[0], best[1] = max(loads), dict(assign)
            return
        u, tried = order[i], set()
        for k in sorted(range(cap), key=lambda k: loads[k]):
            if loads[k] in tried or loads[k] + g.weight[u] >= best[0]:
                continue
            tried.add(loads[k])
            loads[k] += g.weight[u]
            assign[u] = k
            search(i + 1)
            loads[k] -= g.weight[u]
            del assign[u]

    search(0)
    if best[1] is None:
        return None
    lanes: dict[int, list[int]] = {}
    for u in sorted(units):
        lanes.setdefault(best[1][u], []).append(u)
    if any(len(chain) > 1 and any(g.kinds[u] != "step" for u in chain) for chain in lanes.values()):
        return None
    return _par([_series([_unit(u) for u in chain]) for chain in lanes.values()])


def _sp_tree(g: _Graph, units: list[int]) -> tuple:
    """Series-parallel decomposition with the best estimated split (memoised)."""
    memo: dict[frozenset, tuple[float, tuple]] = {}
    anc = g.closure()

    def components(part: frozenset) -> list[list[int]]:
        parent = {u: u for u in part}

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for v in part:
            for u in g.preds[v] & part:
                parent[find(u)] = find(v)
        groups: dict[int, list[int]] = {}
        for u in sorted(part):
            groups.setdefault(find(u), []).append(u)
        return list(groups.values())

    def best(part: frozenset) -> tuple[float, tuple]:
        if part in memo:
            return memo[part]
        if len(part) == 1:
            (u,) = part
            result = (g.weight[u], _unit(u))
        else:
            comps = components(part)
            if len(comps) > 1:
                solved = [best(frozenset(c)) for c in comps]
                tree = _par([t for _, t in solved])
                result = (_estimate(tree, g.weight, g.resource), tree)
            else:
                result = (math.inf, _unit(min(part)))
                for before in _splits(part):
                    a, b = best(before), best(part - before)
                    if a[0] + b[0] < result[0]:
                        result = (a[0] + b[0], _series([a[1], b[1]]))
        memo[part] = result
        return result

    def _splits(part: frozenset) -> list[frozenset]:
        finish: dict[int, float] = {}
        for u in sorted(part):
            finish[u] = g.weight[u] + max((finish[p] for p in anc[u] & part), default=0.0)
        times = sorted(set(finish.values()))[:-1]
        if len(part) > _SEARCH_UNITS and len(times) > 8:
            times = [times[i * len(times) // 8] for i in range(8)]
        out = []
        for t in times:
            before = frozenset(u for u in part if finish[u] <= t)
            # down-closed: every ancestor of a unit before the cut is before it too
            before = frozenset(u for u in before if anc[u] & part <= before)
            if before and before != part and before not in out:
                out.append(before)
        for level in itertools.accumulate(_asap_levels(g, sorted(part))[:-1], lambda a, b: a + b):
            cut = frozenset(level)
            if cut and cut != part and cut not in out:
                out.append(cut)
        return out

    return best(frozenset(units))[1]


def _candidates(g: _Graph, cap: int | None, stage_level: bool) -> dict[str, tuple]:
    units = list(range(g.n))
    if not units:
        return {}
    out = {
        "levels": _levels_tree(g, _asap_levels(g, units), cap),
        "late levels": _levels_tree(g, _alap_levels(g, units), cap),
    }
    if not stage_level:
        out["lanes"] = _lanes_tree(g, units, cap)
        if cap is None:
            out["series-parallel"] = _sp_tree(g, units)
        else:
            exact = _exact_lanes(g, units, cap)
            if exact is not None:
                out["best lanes"] = exact
    return out


# -- from abstract layouts to the model ------------------------------------------------------
class _NoFit(Exception):
    pass


class _Builder:
    """Turn an abstract layout of one stage into model items (new groups named ``lane_N``)."""

    def __init__(self, nodes: list[Any], kinds: list[str], taken: set[str]):
        self.nodes, self.kinds, self.taken = nodes, kinds, set(taken)
        self.moved: dict[str, str] = {}  # step id -> new group id
        self.count = 0

    def items(self, tree: tuple, g: _Graph) -> list:
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
                    levels = _asap_levels(g, sorted(_units_of(part)))
                    out.extend(
                        self.items(_levels_tree(g, levels, None), g)
                        if len(levels) > 1
                        else [Parallel([self.nodes[u] for u in levels[0]])]
                    )
        return out

    def member(self, tree: tuple, g: _Graph) -> Any:
        if tree[0] == "unit":
            return self.nodes[tree[1]]
        if tree[0] == "par":  # pragma: no cover - _par flattens nested blocks
            raise _NoFit
        units = _units_of(tree)
        if any(self.kinds[u] != "step" for u in units):
            raise _NoFit  # classic rules: an existing group never goes into a new one (D1)
        group_items = []
        for part in tree[1]:
            if part[0] == "unit":
                group_items.append(self.nodes[part[1]])
            elif all(p[0] == "unit" for p in part[1]):
                group_items.append(Parallel([self.nodes[p[1]] for p in part[1]]))
            else:  # deeper nesting: levels of plain steps inside the group (an over-constraint)
                for level in _asap_levels(g, sorted(_units_of(part))):
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
            parts.append(_par([_unit(index[m.id]) for m in item.items]))
        else:
            parts.append(_unit(index[item.id]))
    return _series(parts)


# -- the result -------------------------------------------------------------------------------
@dataclasses.dataclass
class Suggestion:
    """One suggested layout.

    Attributes:
        pipeline: the new ``Pipeline`` (same steps, bodies and settings; new containers).
        makespan_s: its simulated makespan, with the same durations as the original.
        speedup: the original's makespan ÷ this one's.
        bound_s: a lower bound on any layout's makespan (see :func:`suggest_layout`).
        gap: how far above the bound the makespan is (``makespan_s / bound_s - 1``).
        changes: what moved where, in words.
        relaxed: orderings of the original that no dependency explains and this layout drops,
            as ``(first, second)`` identifiers — pin those that hide a side effect with
            ``constraints=``.
        strategy: how the layout was found (``levels``, ``lanes``, ``series-parallel``…).
        new_groups: the step groups the layout adds, as ``(stage id, group id)``.
    """

    pipeline: Pipeline
    makespan_s: float
    speedup: float
    bound_s: float
    changes: list[str]
    relaxed: list[tuple[str, str]]
    strategy: str
    trace: Any = dataclasses.field(default=None, repr=False)
    new_groups: frozenset = dataclasses.field(default=frozenset(), repr=False)
    #: with ``trace=`` a history: the makespan's median and 95th percentile over Monte Carlo
    #: runs on the measured durations (the suggestions are ranked by ``p50_s``)
    p50_s: float | None = None
    p95_s: float | None = None

    @property
    def gap(self) -> float:
        """How far above ``bound_s`` the makespan is (0.25: 25 % above). The bound keeps the
        same dependencies as the search (the stage order too, unless ``across_stages``), but
        not the shape Harness imposes (no group of stages, no nested groups under
        ``classic``) nor that scheduling under ``max_parallel`` is NP-hard: a gap is not
        always reachable."""
        return self.makespan_s / self.bound_s - 1.0 if self.bound_s > 0 else 0.0

    def to_yaml(self, path: Any = None) -> str:
        """The suggestion as Harness v0 YAML (written to ``path`` when given)."""
        return self.pipeline.to_yaml(path)

    def __repr__(self) -> str:
        return (
            f"Suggestion({self.strategy!r}, makespan_s={self.makespan_s:g}, speedup={self.speedup:.2f}, "
            f"bound_s={self.bound_s:g}, changes={len(self.changes)}, relaxed={len(self.relaxed)})"
        )


class Suggestions(list):
    """The suggestions, best first; ``original_s`` and ``bound_s`` for reference.

    ``notes`` say what the search kept fixed (stages in their order without
    ``across_stages=True``, stages that meet at barriers, how ``max_parallel`` treats stages);
    the bound counts those as dependencies. Shows as a table in a notebook (and the best
    layout's picture beside the original's).
    """

    def __init__(
        self,
        items: Iterable[Suggestion],
        original: Pipeline,
        original_s: float,
        bound_s: float,
        max_parallel: int | None,
        notes: Sequence[str] = (),
    ):
        super().__init__(items)
        self.original = original
        self.original_s = original_s
        self.bound_s = bound_s
        self.max_parallel = max_parallel
        self.notes = list(notes)
        self.original_p50_s: float | None = None
        self.original_p95_s: float | None = None

    @property
    def best(self) -> Suggestion | None:
        return self[0] if self else None

    def table(self) -> list[dict[str, Any]]:
        """One row per suggestion (plain data; ``pd.DataFrame(s.table())`` for a frame)."""
        return [
            {
                "strategy": s.strategy,
                "makespan_s": round(s.makespan_s, 6),
                "speedup": round(s.speedup, 3),
                "bound_s": round(s.bound_s, 6),
                "gap": round(s.gap, 3),
                "relaxed": len(s.relaxed),
                **({"p50_s": round(s.p50_s, 6), "p95_s": round(s.p95_s, 6)} if s.p50_s is not None else {}),
            }
            for s in self
        ]

    def text(self) -> str:
        """A plain-text report (what the CLI and ``repr`` print)."""
        cap = f", at most {self.max_parallel} at once" if self.max_parallel else ""
        lines = [
            f"original {self.original.id!r}: {self.original_s:g} s; lower bound {self.bound_s:g} s{cap}",
            *(f"({note})" for note in self.notes),
        ]
        if self.original_p50_s is not None:
            lines.insert(
                1, f"original p50 {self.original_p50_s:g} s, p95 {self.original_p95_s:g} s (measured runs)"
            )
        if not self:
            lines.append("no faster layout found")
        for i, s in enumerate(self, 1):
            spread = f"p50 {s.p50_s:g} s, p95 {s.p95_s:g} s; " if s.p50_s is not None else ""
            lines.append(
                f"{i}. {s.strategy}: {spread}{s.makespan_s:g} s (x{s.speedup:.2f}, "
                f"{100 * s.gap:.0f}% above the bound)"
            )
            lines.extend(f"   - {change}" for change in s.changes)
            if s.relaxed:
                shown = ", ".join(f"{a} → {b}" for a, b in s.relaxed[:8])
                more = f" (+{len(s.relaxed) - 8} more)" if len(s.relaxed) > 8 else ""
                lines.append(f"   relaxed: {shown}{more}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        return verb("suggestions_html")(self)  # the views draw it (wired by the facade)


# -- suggest_layout ---------------------------------------------------------------------------
def suggest_layout(
    p: Pipeline | None = None,
    durations: Mapping | Any = None,
    default: Any = 1.0,
    trace: Any = None,
    constraints: Iterable[tuple[str, str]] = (),
    max_parallel: int | None = None,
    rules: str | None = None,
    *,
    across_stages: bool = False,
) -> Suggestions:
    """Faster layouts of ``p`` that keep every dependency, best first.

    Args:
        p: the pipeline (with ``trace=`` alone: the pipeline that ran it).
        durations, default: as for :func:`~notebook_pipelines.simulate`; the original and every
            suggestion are simulated with them (seed 0).
        trace: a real or simulated trace of ``p``: its measured step durations are used
            ("make my last run faster"). A history (many runs, ``nbp.read_history``): the
            search uses the steps' mean durations, then the original and each suggestion are
            simulated :data:`HISTORY_RUNS` times on durations resampled from the measured runs
            (joint, seed 0); suggestions are ranked by that p50 (``p50_s``, and ``p95_s`` shown;
            one not faster at the median is dropped), the original's in ``original_p50_s``.
        constraints: ``(first, second)`` identifiers: ``second`` never starts before ``first``
            ends.
        max_parallel: at most this many units at once in the whole pipeline (a step group or
            a looped step counts as one; see the module notes).
        rules: ``"classic"`` or ``"current"`` (default: the pipeline's); new groups never nest.
        across_stages: ``False`` (the default) keeps the stages' written layout; ``True`` lets
            stages that no dependency orders run in parallel blocks of stages (R11). Steps
            never move between stages (a stage's settings would change how they run).

    Returns:
        :class:`Suggestions` (a list of :class:`Suggestion`, best first, distinct layouts, one
        per makespan; empty when nothing beats the original), with ``original_s``,
        ``bound_s`` and ``notes`` (what the search kept fixed). A suggestion's simulation
        succeeds; one that is faster only because it fails is dropped.

    Raises:
        LayoutError: the simulation of the original does not succeed (its time would be the
            time to the failure): the message lists the steps that failed and why. A sketch —
            steps with durations and no bodies — simulates: each such step publishes a
            placeholder for the output variables read from it.

    >>> import notebook_pipelines as nbp
    >>> p = nbp.Pipeline("p")
    >>> with p.stage("s") as s:
    ...     _ = s.step("a", duration=2)
    ...     _ = s.step("b", duration=3)
    >>> best = suggest_layout(p)[0]
    >>> best.makespan_s, best.bound_s, best.relaxed
    (3.0, 3.0, [('a', 'b')])
    """
    from ..engine import registry
    from ..engine.simulation import simulate
    from .whatif import measured, plan_for

    if p is None:
        if trace is None:
            raise LayoutError("suggest_layout needs a pipeline, or a trace= of one")
        p = plan_for(trace).pipeline
    if max_parallel is not None and (not isinstance(max_parallel, int) or max_parallel < 1):
        raise LayoutError(f"max_parallel must be a positive integer, not {max_parallel!r}")
    rules = rules or p.rules
    if rules not in ("classic", "current"):
        raise LayoutError(f"rules must be 'classic' or 'current', not {rules!r}")
    plan = p.plan()
    with registry.unremembered():  # the assistant's own simulations: the user's runs stay known
        if trace is not None:
            known, _ = measured(trace)
            base = simulate(plan, durations=_by_old_fqn(known, {}), default=default, seed=0)
        else:
            base = simulate(plan, durations=durations, default=default, seed=0)
            known, _ = measured(base)
    _check_baseline(base, p.id)
    original_s = _makespan(base)
    rows = _rows(base)
    pairs = [_constraint(c) for c in constraints]
    names = {n.id for n in plan.nodes if n.kind != "pipeline"}
    for a, b in pairs:
        for name in (a, b):
            if name not in names:
                raise LayoutError(
                    f"constraint ({a!r}, {b!r}): no step, step group or stage {name!r} in {p.id!r}"
                )
    deps = references(plan)
    design = _Design(p, plan, rows, deps, pairs, max_parallel, bool(across_stages))
    found = []
    plans: dict[int, Any] = {}  # id(suggestion) → its compiled plan
    seen = {design.signature(design.original_layouts())}
    layouts_seen = {layout_key(p)}
    for strategy, layouts in design.designs():
        signature = design.signature(layouts)
        if signature in seen:
            continue
        seen.add(signature)
        candidate, moved = design.build(layouts)
        key = layout_key(candidate, _new_groups(moved))
        if key in layouts_seen:  # the same layout by another route (or the original itself)
            continue
        layouts_seen.add(key)
        try:
            candidate_plan = candidate.plan()  # validated and compiled once
        except PipelineError:
            continue
        with registry.unremembered():
            sim = simulate(candidate_plan, durations=_by_old_fqn(known, moved), default=default, seed=0)
        makespan = _makespan(sim)
        if makespan >= original_s - 1e-9 or _status(sim) != "Success":
            continue  # slower, or faster only because it fails
        suggestion = Suggestion(
            candidate,
            makespan,
            original_s / makespan if makespan > 0 else math.inf,
            design.bound,
            design.changes(layouts, moved),
            design.relaxed(layouts),
            strategy,
            sim,
            frozenset(_new_groups(moved)),
        )
        found.append(suggestion)
        plans[id(suggestion)] = candidate_plan
    found.sort(key=lambda s: (s.makespan_s, len(s.relaxed), len(s.new_groups), s.strategy))
    kept: list[Suggestion] = []
    for s in found:  # a tie in makespan is no better unless it relaxes fewer orderings
        if not any(_same_time(k.makespan_s, s.makespan_s) and len(k.relaxed) <= len(s.relaxed) for k in kept):
            kept.append(s)
    kept = kept[:MAX_SUGGESTIONS]
    original_p = None
    if trace is not None and _is_history(trace):  # rank by p50 on the measured runs, show p95
        original_p = _percentiles(plan, trace, default)
        for s in kept:
            s.p50_s, s.p95_s = _percentiles(plans[id(s)], trace, default)
        kept = [s for s in kept if s.p50_s < original_p[0] - 1e-9]  # faster at the median too
        kept.sort(key=lambda s: (s.p50_s, s.p95_s, s.makespan_s, len(s.relaxed)))
    for s in kept:  # a suggestion's trace is one this kernel made: replay and what_if find its plan
        registry.remember(s.trace["run_id"].iloc[0], plans[id(s)], s.trace)
    found_ = Suggestions(kept, p, original_s, design.bound, max_parallel, design.notes)
    if original_p is not None:
        found_.original_p50_s, found_.original_p95_s = original_p
        found_.notes.append(
            f"ranked by the p50 makespan of {HISTORY_RUNS:,} runs resampled from the history's "
            f"{trace['run_id'].nunique()} measured runs (joint); makespan_s uses their mean durations"
        )
    return found_


#: Monte Carlo runs per design when ``suggest_layout(trace=)`` is a history
HISTORY_RUNS = 2000


def _is_history(trace: Any) -> bool:
    return "run_id" in trace.columns and trace["run_id"].nunique() > 1


def _percentiles(plan: Any, history: Any, default: Any) -> tuple[float, float]:
    """(p50, p95) of the makespan of ``plan`` over Monte Carlo runs resampled from ``history``."""
    import warnings

    from ..engine import registry
    from ..engine.measured import HistoryDurations
    from .whatif import monte_carlo

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the original's run warns once about unmeasured steps
        source = HistoryDurations(history, plan, "joint", warn=False)
    with registry.unremembered():
        mc = monte_carlo(plan, source, runs=HISTORY_RUNS, seed=0, default=default)
    values = mc["makespan_s"]
    return float(values.quantile(0.5)), float(values.quantile(0.95))


def _status(trace: Any) -> str:
    root = trace[trace["kind"] == "pipeline"]
    return str(root["status"].iloc[0]) if len(root) else "NotStarted"


def _check_baseline(base: Any, name: str) -> None:
    """Refuse to design from a simulation of the original that did not succeed: its makespan
    is the time to the failure, not the pipeline's."""
    from ..engine.running import failure_lines

    status = _status(base)
    if status == "Success":
        return
    lines = failure_lines(base) or ["  (no step failed: see the trace's reason column)"]
    raise LayoutError(
        f"suggest_layout: the simulation of {name!r} ended {status}, so its time is not the pipeline's:\n"
        + "\n".join(lines[:5])
        + ("\n  …" if len(lines) > 5 else "")
        + "\nfix it first (p.simulate() shows the trace): a step that reads an output of a step with a "
        "body must declare it (Step(..., outputs=['name'])); a step that times out needs a shorter "
        "duration or a longer timeout"
    )


def _same_time(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def _new_groups(moved: Mapping[str, str]) -> set[tuple[str, str]]:
    """``(stage id, group id)`` of the new groups, from ``{new FQN: old FQN}`` of moved steps."""
    out = set()
    for new in moved:
        stage = new.split(".", 3)[2]
        out.add((stage, new.rsplit(".steps.", 1)[0].rsplit(".", 1)[1]))
    return out


def layout_key(p: Pipeline, new_groups: Iterable[tuple[str, str]] = ()) -> tuple:
    """The canonical form of ``p``'s layout: equal for two layouts that run the same way.

    Parallel blocks are sets (their list order does not matter, R5/R11), the new step groups
    ``new_groups`` (``(stage id, group id)``) are known by what they hold, not their names;
    everything else by its identifier (an existing group's inside never changes).

    >>> import notebook_pipelines as nbp
    >>> def two(first, second):
    ...     p = nbp.Pipeline("p")
    ...     with p.stage("s") as s:
    ...         with s.parallel():
    ...             with s.step_group(first) as g:
    ...                 _ = g.step("a")
    ...             _ = s.step("b")
    ...     return p
    >>> layout_key(two("lane_1", "x"), {("s", "lane_1")}) == layout_key(two("lane_2", "y"), {("s", "lane_2")})
    True
    """
    new = set(new_groups)

    def item(x: Any, stage: str) -> Any:
        if isinstance(x, Parallel):
            return ("parallel", tuple(sorted((item(m, stage) for m in x.items), key=repr)))
        if isinstance(x, Stage):
            return ("stage", x.id, tuple(item(m, x.id) for m in x.items))
        if isinstance(x, StepGroup) and (stage, x.id) in new:
            return ("new group", tuple(item(m, stage) for m in x.items))
        return x.id

    return tuple(item(x, "") for x in p.stages)


def _constraint(c: Any) -> tuple[str, str]:
    if (
        isinstance(c, Sequence)
        and not isinstance(c, str)
        and len(c) == 2
        and all(isinstance(x, str) for x in c)
    ):
        return c[0], c[1]
    raise LayoutError(f"a constraint is a pair of identifiers (first, second), not {c!r}")


def _makespan(trace: Any) -> float:
    root = trace[trace["kind"] == "pipeline"]
    return float(root["end_s"].max() - root["start_s"].min())


def _rows(trace: Any) -> dict[str, float]:
    done = trace[trace["start_s"].notna() & trace["end_s"].notna()]
    spans = (done["end_s"] - done["start_s"]).groupby(done["fqn"].astype(str), sort=False).max()
    return {str(k): float(v) for k, v in spans.items()}


def _by_old_fqn(known: dict[str, float], moved: dict[str, str]) -> Any:
    """A ``(node, rng) -> seconds`` that finds a node's duration under its original FQN."""

    def duration(node: Any, rng: Any) -> float | None:
        fqn = node.fqn
        for new, old in moved.items():
            if fqn.startswith(new):
                fqn = old + fqn[len(new) :]
                break
        return known.get(fqn)

    return duration


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


class _Design:
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
        self.top = _Graph(
            len(self.stages), weight, [s.resource for s in self.stages], ["stage"] * len(self.stages)
        )
        self.top_original = _tree_of_items(p.stages, stage_index)
        # step level, one graph per stage
        self.graphs: dict[str, tuple[_Graph, list[Any]]] = {}
        for s in self.stages:
            nodes = [m for item in s.items for m in (item.items if isinstance(item, Parallel) else [item])]
            kinds = ["step" if isinstance(n, Step) else "group" for n in nodes]
            prefix = f"pipeline.stages.{s.id}.spec.execution.steps."
            g = _Graph(len(nodes), [rows.get(prefix + n.id, 0.0) for n in nodes], [None] * len(nodes), kinds)
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
            for u, v in _ordered_pairs(self.top_original):
                self.top.edge(u, v)
        if cap and self.across:
            self.notes.append(
                f"stages share a parallel block only while their layouts together run at most {cap} at once"
            )
        self.bound = self._bound()

    def _barriers(self) -> None:
        def walls(items: Sequence[Any], g: _Graph, status_of: Any) -> None:
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
            g, _ = self.graphs[s.id]
            work = sum(g.weight)
            total += work
            chain = g.longest_chain()
            inner = max(chain, work / self.cap) if self.cap else chain
            bounds.append(inner if not s.strategy else self.top.weight[len(bounds)])
        top = _Graph(self.top.n, bounds, self.top.resource, self.top.kinds)
        top.preds = self.top.preds
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
            return not cap or _width(tree) <= cap

        per_stage: dict[str, dict[str, tuple]] = {}
        for s in self.stages:
            g, _ = self.graphs[s.id]
            if s.strategy is not None:  # a looped stage is a unit: its inside stays as it is
                per_stage[s.id] = {}
                continue
            per_stage[s.id] = {k: t for k, t in _candidates(g, cap, False).items() if fits(t)}
        best_stage = {}
        for s in self.stages:
            g, _ = self.graphs[s.id]
            written = [("original", original[s.id])] if fits(original[s.id]) else []
            options = [*written, *per_stage[s.id].items()] or [("original", original[s.id])]
            best_stage[s.id] = min(options, key=lambda kv: _estimate(kv[1], g.weight, g.resource))[1]
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
                    weights.append(_estimate(tree, g.weight, g.resource))
                # a looped stage's iterations may run side by side: it never shares a capped block
                widths.append(cap if cap and s.strategy is not None else _width(tree))
            written = self.top_original
            if cap and _width(written, widths) > cap:
                written = _series([_unit(i) for i in range(self.top.n)])
            options = [("", written)]
            if self.across:
                top = _Graph(self.top.n, weights, self.top.resource, self.top.kinds)
                top.preds, top.widths = self.top.preds, widths
                more = _candidates(top, cap, True).items()
                options += [
                    (k, t)
                    for k, t in more
                    if (not cap or _width(t, widths) <= cap) and _together(t, self.meet)
                ]
            options.sort(key=lambda kv: _estimate(kv[1], weights, self.top.resource))
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
        return repr(sorted((k, _canon(v)) for k, v in layouts.items()))

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
        rewrite = _Rewriter(self.plan, moved_by_stage)
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
        if _canon(layouts[""]) != _canon(original[""]):
            out.append("stages: " + _outline(layouts[""], [s.id for s in self.stages], {}))
        for s in self.stages:
            if _canon(layouts[s.id]) != _canon(original[s.id]):
                _, nodes = self.graphs[s.id]
                lanes: dict[str, str] = {}
                for new, old in moved.items():
                    if old.startswith(f"pipeline.stages.{s.id}.spec."):
                        lanes[old.rsplit(".", 1)[1]] = new.split(".steps.")[-2].rsplit(".", 1)[-1]
                out.append(f"stage {s.id}: " + _outline(layouts[s.id], [n.id for n in nodes], lanes))
        return out

    def relaxed(self, layouts: dict[str, tuple]) -> list[tuple[str, str]]:
        original = self.original_layouts()
        out = []
        for key, g, names in [
            ("", self.top, [s.id for s in self.stages]),
            *((s.id, *self._graph_names(s.id)) for s in self.stages),
        ]:
            before = _ordered_pairs(original[key])
            after = _ordered_pairs(layouts[key])
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

    def _graph_names(self, stage_id: str) -> tuple[_Graph, list[str]]:
        g, nodes = self.graphs[stage_id]
        return g, [n.id for n in nodes]


def _canon(tree: tuple) -> Any:
    if tree[0] == "unit":
        return tree[1]
    parts = [_canon(p) for p in tree[1]]
    return (tree[0], tuple(sorted(parts, key=repr)) if tree[0] == "par" else tuple(parts))


def _outline(tree: tuple, names: list[str], lanes: dict[str, str]) -> str:
    if tree[0] == "unit":
        return names[tree[1]]
    parts = [_outline(p, names, lanes) for p in tree[1]]
    if tree[0] == "series":
        units = _units_of(tree)
        lane = {lanes.get(names[u]) for u in units}
        text = " → ".join(parts)
        if len(lane) == 1 and None not in lane:
            return f"{lane.pop()}({text})"
        return text
    return "[" + " ∥ ".join(parts) + "]"


#: fields that hold a container's children: the walkers below leave them to their callers
_CHILDREN = ("items", "rollback_items", "stages")


def rewrite_expressions(value: Any, fix: Any, key: str = "") -> Any:
    """``value`` with ``fix(text, is_condition)`` applied to every string that holds ``<+``.

    The one walk over everything a ``<+…>`` expression can live in: a node's ``when``
    condition, failure strategies (a retry ``condition``, any string of any action, nested
    ``then``/``on_timeout``), looping strategy (matrix axes, ``items``, ``times``,
    ``nodeName``…), inputs, spec, variables, timeout, delegate selectors and extra keys — every
    field of a model dataclass, recursively, except a container's children (``items``,
    ``rollback_items``, ``stages``), which the caller walks with their own reader. A field
    named ``condition`` is a condition (``fix(text, True)``), anything else a template.
    Returns ``value`` itself when nothing changed.

    >>> from notebook_pipelines.definition.model import Step
    >>> from notebook_pipelines.definition.failure import OnFailure, Retry
    >>> step = Step("b", failure_strategies=[OnFailure(action=Retry(condition="<+x> == 1"))],
    ...             inputs={"v": "<+y>", "n": 3})
    >>> seen = []
    >>> _ = rewrite_expressions(step, lambda text, cond: seen.append((text, cond)) or text)
    >>> seen
    [('<+x> == 1', True), ('<+y>', False)]
    >>> new = rewrite_expressions(step, lambda text, cond: text.replace("y", "z"))
    >>> new.inputs, step.inputs["v"]
    ({'v': '<+z>', 'n': 3}, '<+y>')
    >>> from notebook_pipelines.definition.looping import Repeat
    >>> rewrite_expressions(Repeat(items="<+y>"), lambda text, cond: "<+z>").items
    '<+z>'
    """
    if isinstance(value, str):
        if "<+" not in value:
            return value
        new = fix(value, key == "condition")
        return value if new == value else new
    if isinstance(value, Mapping):
        out = {k: rewrite_expressions(v, fix, key) for k, v in value.items()}
        return value if all(out[k] is v for k, v in value.items()) else out
    if isinstance(value, list | tuple):
        seq = [rewrite_expressions(v, fix, key) for v in value]
        return value if all(a is b for a, b in zip(seq, value, strict=True)) else type(value)(seq)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        container = isinstance(value, Pipeline | Stage | StepGroup | Parallel)
        changes = {}
        for f in dataclasses.fields(value):
            if not f.init or (container and f.name in _CHILDREN):
                continue
            old = getattr(value, f.name)
            new = rewrite_expressions(old, fix, f.name)
            if new is not old:
                changes[f.name] = new
        return dataclasses.replace(value, **changes) if changes else value
    return value


class _Rewriter:
    """Copies of nodes whose ``<+…>`` references follow the steps that moved into new groups."""

    def __init__(self, plan: Any, moved: dict[str, dict[str, str]]):
        self.plan = plan
        self.moved = moved  # stage id -> {step id: new group id}
        self.fqn_of_model: dict[int, str] = {}

    def item(self, item: Any, stage_id: str, prefix: str | None = None) -> Any:
        base = prefix or f"pipeline.stages.{stage_id}.spec.execution.steps."
        if isinstance(item, Parallel):
            return Parallel([self.item(m, stage_id, prefix) for m in item.items])
        if (
            isinstance(item, StepGroup)
            and item.id in self.moved.get(stage_id, {}).values()
            and prefix is None
        ):
            # a new group: its steps keep their original FQN for the lookups
            return dataclasses.replace(item, items=[self.item(m, stage_id, None) for m in item.items])
        old_fqn = self._old_fqn(item, stage_id, base)
        if isinstance(item, StepGroup):
            inner = f"{old_fqn}.steps."
            return self.copy(
                item,
                stage_id,
                old_fqn,
                items=[self.item(m, stage_id, inner) for m in item.items],
                rollback_items=[
                    self.item(m, stage_id, f"{old_fqn}.rollbackSteps.") for m in item.rollback_items
                ],
            )
        return self.copy(item, stage_id, old_fqn)

    def _old_fqn(self, item: Any, stage_id: str, base: str) -> str:
        fqn = f"{base}{item.id}"
        if fqn in self.plan.by_fqn:
            return fqn
        rb = f"pipeline.stages.{stage_id}.spec.execution.rollbackSteps.{item.id}"
        return rb if rb in self.plan.by_fqn else fqn

    def copy(self, node: Any, stage_id: str, old_fqn: str | None = None, **changes: Any) -> Any:
        """``node`` with ``changes`` and every ``<+…>`` of its own fields rewritten."""
        fqn = old_fqn or f"pipeline.stages.{stage_id}"
        reader = self.plan.by_fqn.get(fqn)
        if reader is not None:
            node = rewrite_expressions(node, lambda text, cond: self.text(reader, text, cond))
        return dataclasses.replace(node, **changes)  # a new node: editing a suggestion leaves p alone

    def text(self, reader: Any, text: str, condition: bool) -> str:
        try:
            parsed = parse_condition(text) if condition else parse_template(text)
        except PipelineError:
            return text
        out, last = [], 0
        for ref in sorted(parsed.references, key=lambda r: r.position):
            if ref.path[0] not in KNOWN_ROOTS or ref.path[0] in LOOP_ROOTS:
                continue
            try:
                target, rest = node_of_path(self.plan, reader, ref.path)
            except LookupError:
                continue
            if target.kind != "step" or target.parent is None or target.parent.kind != "stage":
                continue
            group = self.moved.get(target.stage.id, {}).get(target.id)
            if group is None or target.phase != "execution":
                continue
            cut = len(ref.path) - len(rest)  # path[:cut] ends with ("steps", STEP)
            path = (*ref.path[: cut - 1], group, "steps", *ref.path[cut - 1 :])
            out.append(text[last : ref.position])
            out.append("<+" + "".join(_segment(x, i) for i, x in enumerate(path)) + ">")
            last = ref.position + len(ref.text)
        out.append(text[last:])
        return "".join(out)


def _segment(name: str, i: int) -> str:
    """One path segment as written in a reference: ``.name``, or ``["x-y"]`` when quoted (R47)."""
    if name.replace("$", "_").isidentifier():
        return f".{name}" if i else name
    return f'["{name}"]'
