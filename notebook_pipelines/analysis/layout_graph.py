"""The graph of one list of units and the layouts found on it (the design assistant's search).

A *unit* is what a layout moves whole: a step or a step group of a stage, or a stage (see
:mod:`~notebook_pipelines.analysis.layout`). :class:`UnitGraph` holds units ``0..n-1`` with their
weights (seconds), resource keys and dependencies; a layout is an abstract tree ``("unit", i)``
| ``("series", [..])`` | ``("par", [..])`` that the design turns into model items. The strategies:

* ``levels`` / ``late levels`` — ASAP and ALAP layering (:func:`asap_levels`, :func:`_alap_levels`),
  levels too wide for ``max_parallel`` cut into blocks;
* ``lanes`` — list scheduling with critical-path priority into lanes, cut into phases where a
  unit waits for another lane (:func:`_lanes_tree`);
* ``series-parallel`` — the memoised search for the best split into parallel parts and
  before/after (:func:`_sp_tree`);
* ``best lanes`` — under ``max_parallel``, the exact partition of independent units into lanes
  (branch and bound, :func:`_exact_lanes`).

:func:`estimate` times a tree (series add up, parallel parts take the longest, units sharing a
resource key queue, D8); :func:`canon` and :func:`outline` compare and describe trees.

It stands on nothing of the package (plain tuples, lists and numbers; ``LayoutError``);
:mod:`.layout_design` builds the graphs from a pipeline and the trees into pipelines.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import LayoutError

#: above this many units in one stage, the series-parallel search tries fewer splits
_SEARCH_UNITS = 24


# -- the abstract layouts: ("unit", i) | ("series", [..]) | ("par", [..]) ----------------------
def unit_tree(i: int) -> tuple:
    """The layout of unit ``i`` alone: ``("unit", i)``."""
    return ("unit", i)


def series_tree(parts: list) -> tuple:
    """``parts`` one after another (nested series flattened; one part is itself)."""
    flat: list = []
    for part in parts:
        flat.extend(part[1] if part[0] == "series" else [part])
    return flat[0] if len(flat) == 1 else ("series", flat)


def par_tree(parts: list) -> tuple:
    """``parts`` side by side (nested parallel blocks flattened; one part is itself)."""
    flat: list = []
    for part in parts:
        flat.extend(part[1] if part[0] == "par" else [part])
    return flat[0] if len(flat) == 1 else ("par", flat)


def units_of(tree: tuple) -> list[int]:
    """The units of ``tree``, in written order."""
    if tree[0] == "unit":
        return [tree[1]]
    return [u for part in tree[1] for u in units_of(part)]


def estimate(tree: tuple, weight: Sequence[float], resource: Sequence[Any]) -> float:
    """Series add up, parallel parts take the longest; units sharing a resource key in one
    parallel block run one after the other (D8)."""
    if tree[0] == "unit":
        return weight[tree[1]]
    times = [estimate(part, weight, resource) for part in tree[1]]
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


def tree_width(tree: tuple, unit_width: Sequence[int] | None = None) -> int:
    """How many units (or ``unit_width[u]`` each) can run at once in ``tree``."""
    if tree[0] == "unit":
        return 1 if unit_width is None else unit_width[tree[1]]
    widths = [tree_width(part, unit_width) for part in tree[1]]
    return sum(widths) if tree[0] == "par" else max(widths)


def kept_together(tree: tuple, groups: Sequence[frozenset[int]]) -> bool:
    """Whether each group of units sits in one parallel block of ``tree`` (a series of blocks)."""
    parts = tree[1] if tree[0] == "series" else [tree]
    blocks = [set(units_of(part)) for part in parts]
    return all(any(group <= block for block in blocks) for group in groups)


def ordered_pairs(tree: tuple) -> set[tuple[int, int]]:
    """``(u, v)``: in ``tree``, ``v`` starts only after ``u`` ends."""
    pairs: set[tuple[int, int]] = set()
    if tree[0] == "unit":
        return pairs
    for part in tree[1]:
        pairs |= ordered_pairs(part)
    if tree[0] == "series":
        seen: list[int] = []
        for part in tree[1]:
            units = units_of(part)
            pairs.update((u, v) for u in seen for v in units)
            seen.extend(units)
    return pairs


# -- the dependency graph of one list of units ---------------------------------------------------
class UnitGraph:
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

    def successors(self, units: Iterable[int]) -> dict[int, list[int]]:
        """Each of ``units`` → the units of ``units`` that come right after it."""
        units = list(units)
        within = set(units)
        succ: dict[int, list[int]] = {u: [] for u in units}
        for v in units:
            for u in self.preds[v] & within:
                succ[u].append(v)
        return succ

    def bottom(self, units: Iterable[int]) -> dict[int, float]:
        """Longest remaining chain from each unit (its weight included), within ``units``."""
        units = set(units)
        succ = self.successors(units)
        out: dict[int, float] = {}
        for u in reversed([x for x in self._topological() if x in units]):
            out[u] = self.weight[u] + max((out[v] for v in succ[u]), default=0.0)
        return out

    def longest_chain(self) -> float:
        return max(self.bottom(range(self.n)).values(), default=0.0)


# -- layouts ----------------------------------------------------------------------------------
def asap_levels(g: UnitGraph, units: list[int]) -> list[list[int]]:
    """``units`` in levels, each as early as its dependencies allow (level 0 depends on none)."""
    level: dict[int, int] = {}
    for u in sorted(units):
        level[u] = 1 + max((level[p] for p in g.preds[u] if p in level), default=-1)
    return [[u for u in units if level[u] == k] for k in range(max(level.values(), default=-1) + 1)]


def _alap_levels(g: UnitGraph, units: list[int]) -> list[list[int]]:
    succ = g.successors(units)
    height: dict[int, int] = {}
    for u in sorted(units, reverse=True):
        height[u] = 1 + max((height[v] for v in succ[u]), default=-1)
    top = max(height.values(), default=-1)
    return [[u for u in units if top - height[u] == k] for k in range(top + 1)]


def levels_tree(g: UnitGraph, levels: list[list[int]], cap: int | None) -> tuple:
    """Levels in series; with ``cap``, a level too wide is cut into blocks (longest first) that
    each run at most ``cap`` at once (a unit wider than ``cap`` has a block of its own)."""
    parts = []
    for level in levels:
        if cap is None or sum(g.widths[u] for u in level) <= cap:
            parts.append(par_tree([unit_tree(u) for u in level]))
            continue
        blocks: list[list[int]] = []
        for u in sorted(level, key=lambda u: (-g.weight[u], u)):
            if not blocks or sum(g.widths[x] for x in blocks[-1]) + g.widths[u] > cap:
                blocks.append([])
            blocks[-1].append(u)
        parts.extend(par_tree([unit_tree(u) for u in sorted(block)]) for block in blocks)
    return series_tree(parts)


def _lanes_tree(g: UnitGraph, units: list[int], cap: int | None) -> tuple:
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


def _phases(g: UnitGraph, order: list[int], lane_of: dict[int, int]) -> tuple:
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
        par_tree([series_tree([unit_tree(u) for u in chain]) for chain in sorted(phase.values())])
        for phase in phases
        if phase
    ]
    return series_tree(parts)


def _exact_lanes(g: UnitGraph, units: list[int], cap: int) -> tuple | None:
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
    return par_tree([series_tree([unit_tree(u) for u in chain]) for chain in lanes.values()])


def _sp_tree(g: UnitGraph, units: list[int]) -> tuple:
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
            result = (g.weight[u], unit_tree(u))
        else:
            comps = components(part)
            if len(comps) > 1:
                solved = [best(frozenset(c)) for c in comps]
                tree = par_tree([t for _, t in solved])
                result = (estimate(tree, g.weight, g.resource), tree)
            else:
                result = (math.inf, unit_tree(min(part)))
                for before in _splits(part):
                    a, b = best(before), best(part - before)
                    if a[0] + b[0] < result[0]:
                        result = (a[0] + b[0], series_tree([a[1], b[1]]))
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
        for level in itertools.accumulate(asap_levels(g, sorted(part))[:-1], lambda a, b: a + b):
            cut = frozenset(level)
            if cut and cut != part and cut not in out:
                out.append(cut)
        return out

    return best(frozenset(units))[1]


def candidates(g: UnitGraph, cap: int | None, stage_level: bool) -> dict[str, tuple]:
    """The layout each strategy proposes for ``g``, by strategy name (the stage level: levels only)."""
    units = list(range(g.n))
    if not units:
        return {}
    out = {
        "levels": levels_tree(g, asap_levels(g, units), cap),
        "late levels": levels_tree(g, _alap_levels(g, units), cap),
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


def canon(tree: tuple) -> Any:
    """A form of ``tree`` that is equal for equal layouts (parallel parts in a fixed order)."""
    if tree[0] == "unit":
        return tree[1]
    parts = [canon(p) for p in tree[1]]
    return (tree[0], tuple(sorted(parts, key=repr)) if tree[0] == "par" else tuple(parts))


def outline(tree: tuple, names: list[str], lanes: dict[str, str]) -> str:
    """``tree`` in one line for people: ``a → [b ∥ c]``, a series in one lane as ``lane_1(…)``."""
    if tree[0] == "unit":
        return names[tree[1]]
    parts = [outline(p, names, lanes) for p in tree[1]]
    if tree[0] == "series":
        units = units_of(tree)
        lane = {lanes.get(names[u]) for u in units}
        text = " → ".join(parts)
        if len(lane) == 1 and None not in lane:
            return f"{lane.pop()}({text})"
        return text
    return "[" + " ∥ ".join(parts) + "]"
