"""Where each plan node sits: a trace's static columns (``fqn``, ``parent``, ``kind``,
``phase``, ``stage``, ``step_group``, ``step``, ``block``, ``after``), one entry per plan node,
made once per plan (:func:`node_columns`, cached on it) and taken by :mod:`.trace` for every
trace of the plan.

They are made list by list, not node by node: every node but the pipeline is a member of one
item of one list of one container, and everything but its ``fqn``, its ``id`` and (for a
container) its kind, stage and group is the same for the members of one item: the parent,
the ``block``, the phase, what it waited for (``after``; D14 for a member with ``needs``).
The members of a parallel block with nothing below them are consecutive in the plan's
pre-order, so such a block is one run of rows. The runs are sorted into plan order and each
column is one ``numpy.repeat`` of their values: the columns of a 100,000-step plan of step
groups take ~45 ms (half of it the FQNs and ids, still read node by node) rather than ~100 ms
(eight lists over the nodes and a walk setting each node's ``after``). A plan whose lists do
not cover its nodes exactly once (none that the compile makes) is read node by node, and so
is a small plan (:data:`LAYOUT_FROM`).

>>> import notebook_pipelines as nbp
>>> p = nbp.Pipeline("p")
>>> with p.stage("s") as s:
...     _ = s.step("a", duration=1)
...     with s.parallel():
...         _ = s.step("b", duration=1)
...         _ = s.step("c", duration=1)
>>> columns = node_columns(p.plan())
>>> columns["block"].tolist()[1:], [len(after) for after in columns["after"]]
([0, 0, 1, 1], [0, 0, 0, 1, 1])
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from ..definition.plan import Plan, PlanNode

__all__ = ["KINDS", "LAYOUT_FROM", "PHASES", "after_column", "node_columns", "strings", "with_extra"]

KINDS = ("pipeline", "stage", "step_group", "step")
PHASES = ("execution", "rollback")
#: plans of fewer nodes are read node by node (:func:`_per_node`): a dozen numpy calls cost
#: more than eight short lists (~10 µs more at 66 nodes; ~10 µs less at 100)
LAYOUT_FROM = 100
_KIND = {value: code for code, value in enumerate(KINDS)}
_PHASE: dict[str | None, int] = {value: code for code, value in enumerate(PHASES)}


@functools.cache
def kind_dtype() -> pd.CategoricalDtype:
    import pandas as pd

    return pd.CategoricalDtype(KINDS)


@functools.cache
def phase_dtype() -> pd.CategoricalDtype:
    import pandas as pd

    return pd.CategoricalDtype(PHASES)


@functools.cache
def str_dtype() -> Any:
    """The dtype of a ``str`` column (pandas' default string dtype: Arrow-backed, NaN for NA)."""
    import pandas as pd

    return pd.array([], dtype="str").dtype


def strings(values: Any) -> Any:
    """A ``str`` column from a pyarrow array of strings, without Python objects per value."""
    import pyarrow as pa
    from pandas.arrays import ArrowStringArray

    return ArrowStringArray(pa.chunked_array([values], type=pa.large_string()), dtype=str_dtype())


def node_columns(plan: Plan) -> dict[str, Any]:
    """The static columns as pandas arrays with one entry per plan node (cached on the plan).

    Two string arrays are made from Python objects, the FQNs and the ids; ``parent``,
    ``stage``, ``step_group`` and ``step`` are taken from them by node index (a C loop: most
    nodes share a few parents, stages and groups); the node indexes, kinds, phases, blocks and
    ``after`` come from :func:`_layout` (per list item, not per node).
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    cached: dict[str, Any] | None = plan.__dict__.get("_trace_columns")
    if cached is not None:
        return cached
    nodes = plan.nodes
    fqns = [x.fqn for x in nodes]
    fqn = pa.array(fqns, type=pa.large_string())
    ids = pa.array([x.id for x in nodes], type=pa.large_string())
    found = _layout(plan, fqns) if len(nodes) >= LAYOUT_FROM else None
    kind, parent, stage, group, block, phase, after = found if found is not None else _per_node(plan)
    step = np.where(kind == _KIND["step"], np.arange(len(nodes), dtype=np.intp), -1)
    cached = {
        "fqn": strings(fqn),
        "parent": strings(fqn.take(pa.array(parent, mask=parent < 0))),  # -1: none (NA)
        "stage": strings(ids.take(pa.array(stage, mask=stage < 0))),
        "step_group": strings(ids.take(pa.array(group, mask=group < 0))),
        "step": strings(ids.take(pa.array(step, mask=step < 0))),
        "kind": pd.Categorical.from_codes(kind, dtype=kind_dtype()),
        "phase": pd.Categorical.from_codes(phase, dtype=phase_dtype()),
        "block": pd.arrays.IntegerArray(block, block == -1),
        "after": after,
    }
    object.__setattr__(plan, "_trace_columns", cached)  # a frozen dataclass; computed once per plan
    return cached


def _index(node: PlanNode | None) -> int:
    return -1 if node is None else node.index


def _layout(plan: Plan, fqns: list[str]) -> tuple[Any, ...] | None:
    """Per node: kind and phase codes, parent, stage and group indexes (-1: none), block (-1:
    none) and ``after``, from the containers' lists (see the module's docstring); None if
    those lists do not cover the plan's nodes exactly once.

    A run of rows is one member of an item, or every member of a parallel block without
    needs whose members are consecutive (nothing below them). Each list's runs share its
    container's values (as the compile's context gives them to the steps in it: parent, phase,
    stage, innermost group); a container's own row then takes its own kind, stage, group."""
    import numpy as np

    # the plan's containers, in plan order: the compile notes every one (Plan.traits)
    containers = [x for x in plan.traits().readers if x.kind != "step"]
    runs: list[tuple[int, int, int, tuple[str, ...]]] = [(0, 1, -1, ())]  # start, size, block, after
    lists = [(-1, -1, -1, 0, 1)]  # per list: parent, stage, group, phase, how many runs; the pipeline's row
    add = runs.append
    for c in containers:
        stage = c.index if c.kind == "stage" else _index(c.stage)
        group = c.index if c.kind == "step_group" else -1
        for seq, phase in ((c.items, c.phase), (c.rollback, "rollback")):
            before = len(runs)
            previous: tuple[str, ...] = ()
            for block, item in enumerate(seq):
                if item.kind != "parallel":
                    add((item.index, 1, block, previous))
                    previous = (item.fqn,)
                    continue
                members = item.items
                first, size = members[0].index, len(members)
                if item.order is None and members[-1].index - first == size - 1:  # one run of rows
                    add((first, size, block, previous))
                    previous = tuple(fqns[first : first + size])
                    continue
                for m in members:
                    add((m.index, 1, block, waited_for(m, members, previous)))
                previous = tuple([m.fqn for m in members])
            if len(runs) > before:
                lists.append((c.index, stage, group, _PHASE[phase], len(runs) - before))
    starts, sizes, blocks, afters = zip(*runs)
    n = len(fqns)
    start = np.array(starts, dtype=np.intp)
    order = np.argsort(start, kind="stable")
    sized = np.array(sizes, dtype=np.intp)[order]
    ends = np.cumsum(sized)
    if not (len(ends) and ends[-1] == n and (start[order] == ends - sized).all()):
        return None  # the lists leave a node out or hold one twice
    run = np.repeat(order, sized)  # each row's run
    per_list = np.array(lists, dtype=np.intp)
    of_list = np.repeat(np.arange(len(lists)), per_list[:, 4])[run]  # each row's list
    parents, stages, groups = per_list[of_list, 0], per_list[of_list, 1], per_list[of_list, 2]
    phases = per_list[of_list, 3].astype(np.int8)
    kind = np.full(n, _KIND["step"], dtype=np.int8)
    block_column = np.array(blocks, dtype=np.int64)[run]
    for c in containers:  # a container's own row: its own values (few)
        i = c.index
        kind[i], parents[i], stages[i], groups[i] = (
            _KIND[c.kind],
            _index(c.parent),
            _index(c.stage),
            _index(c.group),
        )
        phases[i], block_column[i] = _PHASE[c.phase], -1 if c.block is None else c.block
    after = np.fromiter(afters, dtype=object, count=len(afters))[run]  # never read as a 2-D array
    return kind, parents, stages, groups, block_column, phases, after


def _per_node(plan: Plan) -> tuple[Any, ...]:
    """What :func:`_layout` gives, read node by node (for a small plan, or one whose lists do
    not cover its nodes exactly once)."""
    import numpy as np

    nodes = plan.nodes
    kind = np.array([_KIND[x.kind] for x in nodes], dtype=np.int8)
    parent = np.array([-1 if x.parent is None else x.parent.index for x in nodes], dtype=np.intp)
    stage = np.array([-1 if x.stage is None else x.stage.index for x in nodes], dtype=np.intp)
    group = np.array([-1 if x.group is None else x.group.index for x in nodes], dtype=np.intp)
    block = np.array([-1 if x.block is None else x.block for x in nodes], dtype=np.int64)
    phase = np.array([_PHASE[x.phase] for x in nodes], dtype=np.int8)
    return kind, parent, stage, group, block, phase, after_column(nodes, [plan.root])


def waited_for(member: PlanNode, members: Sequence[PlanNode], previous: tuple[str, ...]) -> tuple[str, ...]:
    """A member's ``after``: the FQNs of the members of its block it needs (D14), or else
    ``previous``, what its list's item before it left (the item before its block)."""
    return tuple([members[j].fqn for j in member.needs]) if member.needs else previous


def after_column(nodes: Any, roots: Any, offset: int = 0) -> Any:
    """Per node of ``nodes`` (``nodes[i].index == offset + i``), the fqns it waits for (see
    :mod:`.trace`'s schema): one walk down the serial lists from ``roots`` (the plan's root, or
    a run's looping iterations, which wait for nothing but their looped node); one tuple per
    serial item, shared by the nodes that wait for it (no object per node: 100,000 new objects
    would cost a garbage collection)."""
    import numpy as np

    values: list[tuple[str, ...]] = [()] * len(nodes)
    stack = list(roots)
    while stack:
        container = stack.pop()
        for seq in (container.items, container.rollback):
            previous: tuple[str, ...] = ()
            for item in seq:
                members = item.items if item.kind == "parallel" else (item,)
                for member in members:
                    values[member.index - offset] = waited_for(member, members, previous)
                    if member.items or member.rollback:
                        stack.append(member)
                previous = (item.fqn,) if item.kind != "parallel" else tuple(m.fqn for m in members)
    return np.fromiter(values, dtype=object, count=len(nodes))  # never read as a 2-D array


def with_extra(plan: Plan, extra: Sequence[PlanNode]) -> dict[str, Any]:
    """The static columns of the plan's nodes followed by those of a run's looped copies."""
    import numpy as np
    import pandas as pd

    base = node_columns(plan)
    static = {
        "fqn": [n.fqn for n in extra],
        "parent": [
            n.looped.fqn if n.looped is not None else n.parent.fqn if n.parent is not None else None
            for n in extra
        ],
        "stage": [n.stage.id if n.stage is not None else None for n in extra],
        "step_group": [n.group.id if n.group is not None else None for n in extra],
        "step": [n.id if n.kind == "step" else None for n in extra],
    }
    out = {}
    for name in ("fqn", "parent", "stage", "step_group", "step"):
        more = pd.array(static[name], dtype="str")
        out[name] = type(more)._concat_same_type([base[name], more])
    for name, dtype, attr in (("kind", kind_dtype(), "kind"), ("phase", phase_dtype(), "phase")):
        codes = {value: code for code, value in enumerate(dtype.categories)}
        more = np.fromiter((codes[getattr(n, attr)] for n in extra), dtype=np.int8, count=len(extra))
        out[name] = pd.Categorical.from_codes(np.concatenate([base[name].codes, more]), dtype=dtype)
    out["block"] = pd.array([*base["block"], *(n.block for n in extra)], dtype="Int64")
    out["after"] = np.concatenate(
        [base["after"], after_column(extra, [n for n in extra if n.loop is not None], len(plan.nodes))]
    )
    return out
