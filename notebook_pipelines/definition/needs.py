"""``needs``: members of a parallel block that wait for some of their siblings (D14).

Harness has no ``needs``; GitHub Actions (``jobs.<id>.needs``) and GitLab CI (``needs:``) do,
and a CI history's edges form a DAG that no serial/parallel layout expresses. The toolkit's
form of it: ``needs=[ids]`` on a step, step group or stage that is a member of a parallel
block (``with x.parallel():``), naming other members of the same block. Such a member starts
when every member it needs has ended, instead of with the block; the block still ends when
all its members have ended. What happens when a need does not succeed is the engine's
(:mod:`~notebook_pipelines.engine.semantics`); ``docs/semantics.md#d14`` states it.

This module holds what the definition layer knows of it:

- :func:`need_ids`: the identifiers a node's ``needs`` names (a string is one identifier);
- :func:`compile_needs`: a block's needs as positions among its members, and a topological
  order of them (what the plan stores: ``PlanNode.needs``, the parallel node's ``order``);
- :func:`waits_for`: whether a member has surely waited for the one holding a node (the
  happens-before of references, R45);
- :class:`NeedsChecks`: the checks validation runs on each node that has ``needs`` — only in a
  parallel block, each name a sibling of that block (not the node itself, not twice), at most
  :data:`MAX_NEEDS`, no cycle (named as FQNs, ``a → b → a``).

>>> from notebook_pipelines.definition.model import Pipeline
>>> p = Pipeline("p")
>>> with p.stage("s") as s:
...     with s.parallel():
...         _ = s.step("a", duration=1)
...         _ = s.step("b", duration=5)
...         _ = s.step("c", duration=2, needs=["a", "b"])
>>> p.simulate().set_index("step").loc["c", ["start_s", "end_s"]].tolist()
[5.0, 7.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import Problem
from .limits import short

__all__ = ["MAX_NEEDS", "NeedsChecks", "compile_needs", "need_ids", "waits_for"]

#: the most members one node may need (GitLab allows 50 by default; GitHub sets no number):
#: a bound on what one definition may ask of the checks and the engine
MAX_NEEDS = 1_000

_RULE = "D14"


def need_ids(value: Any) -> list[Any]:
    """The identifiers ``needs`` names: ``None`` → ``[]``, a string → ``[it]``, a list or tuple
    as it is (its entries are checked by :class:`NeedsChecks`)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return list(value)
    return []


def compile_needs(members: Sequence[Any]) -> tuple[list[tuple[int, ...]], tuple[int, ...]] | None:
    """A parallel block's needs as positions: per member the positions of the members it needs
    (in its own order, each once), and a topological order of the positions (a member after
    every member it needs; otherwise in block order). None when no member has needs.

    Lenient (validation reports the problems): names that are not siblings are left out, and a
    cycle is broken (the first member left on it waits only for what is placed before it), so the
    engine never waits forever on a definition compiled unchecked.

    >>> from notebook_pipelines.definition.nodes import Step
    >>> compile_needs([Step("a"), Step("b", needs="c"), Step("c", needs=["a"])])
    ([(), (2,), (0,)], (0, 2, 1))
    """
    if not any(getattr(m, "needs", None) for m in members):
        return None
    position = {getattr(m, "id", None): k for k, m in enumerate(members)}
    needs: list[tuple[int, ...]] = []
    for k, member in enumerate(members):
        found: dict[int, None] = {}
        for name in need_ids(getattr(member, "needs", None))[:MAX_NEEDS]:
            j = position.get(name) if isinstance(name, str) else None
            if j is not None and j != k:
                found[j] = None
        needs.append(tuple(found))
    order = _topological(needs)
    return needs, tuple(order)


def _topological(needs: list[tuple[int, ...]]) -> list[int]:
    """A topological order of positions (each after what it needs; ties in block order), in
    O(E log n); a cycle is broken in place (``needs`` changed): the first member left waits only
    for what is placed already."""
    import heapq

    waiting = [len(set(n)) for n in needs]
    waiters: list[list[int]] = [[] for _ in needs]
    for k, ns in enumerate(needs):
        for j in set(ns):
            waiters[j].append(k)
    ready = [k for k, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order: list[int] = []
    placed = [False] * len(needs)
    while len(order) < len(needs):
        if not ready:  # a cycle (an unchecked definition)
            k = next(k for k in range(len(needs)) if not placed[k])
            needs[k] = tuple(j for j in needs[k] if placed[j])
            heapq.heappush(ready, k)
            waiting[k] = 0
        k = heapq.heappop(ready)
        if placed[k]:
            continue
        placed[k] = True
        order.append(k)
        for w in waiters[k]:
            waiting[w] -= 1
            if waiting[w] == 0 and not placed[w]:
                heapq.heappush(ready, w)
    return order


def waits_for(member: Any, target: Any) -> bool:
    """True when ``member`` (a plan node, member of a parallel block) waits, through its needs
    (transitively), for the member of the same block that holds ``target``: that one has ended
    whenever ``member`` starts (what ``<+…>`` references may read, R45)."""
    if not member.needs:
        return False
    parent = member.parent
    block = (parent.items if member.phase == "execution" else parent.rollback)[member.block]
    held = target
    while held.parent is not parent:
        held = held.parent
    members = block.items
    seen, stack = set(), list(member.needs)
    while stack:
        j = stack.pop()
        if members[j] is held:
            return True
        if j not in seen:
            seen.add(j)
            stack.extend(members[j].needs)
    return False


class NeedsChecks:
    """The checks of ``needs`` (D14) for one validation: :meth:`problems` per visited node
    (a :class:`~.tree.Visit`); what concerns a whole block (its members' positions, a cycle) is
    worked out once per block, so a wide block is checked in time linear in its needs."""

    def __init__(self) -> None:
        self._cycles: dict[int, dict[int, str]] = {}  # id(block) → first member's position → the cycle
        self._blocks: dict[int, tuple[dict[int, int], dict[Any, int]]] = {}  # id(block) → positions

    def _positions(self, block: Any) -> tuple[dict[int, int], dict[Any, int]]:
        """``({id(member): position}, {member id: how many members have it})`` of a block (once)."""
        found = self._blocks.get(id(block))
        if found is None:
            counts: dict[Any, int] = {}
            for m in block.items:
                ident = getattr(m, "id", None)
                if isinstance(ident, str):
                    counts[ident] = counts.get(ident, 0) + 1
            found = self._blocks[id(block)] = ({id(m): k for k, m in enumerate(block.items)}, counts)
        return found

    def problems(self, visit: Any) -> list[Problem]:
        """The problems of ``visit.node``'s ``needs`` (none when it has none)."""
        node, fqn, block = visit.node, visit.fqn, visit.parallel
        value = getattr(node, "needs", None)
        if value is None or (isinstance(value, list | tuple) and not value):
            return []
        if not isinstance(value, str | list | tuple) or not all(isinstance(n, str) for n in value):
            return [
                Problem(
                    fqn,
                    _RULE,
                    f"needs={short(value)} is not a list of identifiers",
                    "write needs=['build', 'lint'] (identifiers of members of the same parallel block)",
                )
            ]
        names = need_ids(value)
        if block is None:
            return [
                Problem(
                    fqn,
                    _RULE,
                    f"needs={short(names)}, but the {_kind(node)} is not in a parallel block: needs "
                    "name members of the same parallel block, which otherwise start together",
                    "put it and the nodes it needs in one `with x.parallel():` block, or drop needs= "
                    "(in a serial list a node already waits for the one before it)",
                )
            ]
        if len(names) > MAX_NEEDS:
            return [
                Problem(
                    fqn,
                    _RULE,
                    f"needs names {len(names)} nodes, more than {MAX_NEEDS}",
                    "let it wait for fewer members (or put it after the block, where it waits for all)",
                )
            ]
        return [*self._names(node, fqn, names, block), *self._cycle(visit)]

    def _names(self, node: Any, fqn: str, names: list[str], block: Any) -> list[Problem]:
        counts = self._positions(block)[1]
        out, seen = [], set()
        for name in names:
            if name == getattr(node, "id", None):
                out.append(Problem(fqn, _RULE, f"it needs itself ({name!r})", f"remove {name!r} from needs"))
            elif name in seen:
                out.append(Problem(fqn, _RULE, f"needs names {name!r} twice", "name each member once"))
            elif counts.get(name, 0) == 0:
                known = [repr(m.id) for m in block.items[:11] if m is not node and isinstance(m.id, str)]
                more = len(block.items) - 1 - len(known[:10])
                listed = ", ".join(known[:10]) + (f" and {more} more" if more > 0 else "")
                out.append(
                    Problem(
                        fqn,
                        _RULE,
                        f"needs {short(name)}, which is not a member of its parallel block (members: "
                        f"{listed or 'none'})",
                        "name a member of the same `with x.parallel():` block, or move the node into "
                        "the block of the one it needs",
                    )
                )
            seen.add(name)
        return out

    def _cycle(self, visit: Any) -> list[Problem]:
        """The cycle this node opens, reported at the first member (in block order) on it."""
        block = visit.parallel
        cycles = self._cycles.get(id(block))
        if cycles is None:
            cycles = self._cycles[id(block)] = _cycles(block.items, visit.prefix)
        position = self._positions(block)[0][id(visit.node)]
        text = cycles.get(position)
        if text is None:
            return []
        return [
            Problem(
                visit.fqn,
                _RULE,
                f"its needs form a cycle: {text}",
                "remove one of these needs: members that wait for each other would never start",
            )
        ]


def _cycles(members: Sequence[Any], prefix: str) -> dict[int, str]:
    """``{position of a cycle's first member: 'a → b → a' (FQNs)}`` for the first cycle a
    depth-first search of the block's needs finds, or ``{}`` (iterative, linear in the needs:
    the block may be wide)."""
    position = {getattr(m, "id", None): k for k, m in enumerate(members)}
    edges = [
        [position[n] for n in need_ids(getattr(m, "needs", None)) if isinstance(n, str) and n in position]
        for m in members
    ]
    state = [0] * len(members)  # 0 new, 1 on the path, 2 done
    for root in range(len(members)):
        if state[root]:
            continue
        path, stack = [root], [iter(edges[root])]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state[nxt] == 1 and nxt != path[-1]:  # a back edge (a self-need is reported apart)
                ring = path[path.index(nxt) :]
                first = min(ring)
                turn = ring.index(first)
                ring = ring[turn:] + ring[:turn]
                fqns = [f"{prefix}{getattr(members[k], 'id', '?')}" for k in (*ring, first)]
                return {first: " → ".join(fqns)}  # one cycle a block: linear; the next once it is fixed
            elif state[nxt] == 0:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(edges[nxt]))
    return {}


def _kind(node: Any) -> str:
    return {"Stage": "stage", "StepGroup": "step group"}.get(type(node).__name__, "step")
