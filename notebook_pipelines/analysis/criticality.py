"""How often each node of a history decides the makespan, and how many seconds of it it owns.

The critical path of every run comes from :func:`~notebook_pipelines.analysis.paths.path_flows`
(all runs at once; ties split evenly); :func:`criticality_runs` turns its edges into per-(run,
node) exclusive and inclusive seconds and the share of the run's path through the node;
:func:`criticality_table` aggregates them over runs (:func:`criticality` is the public table,
``step_stats``, ``regressions`` and ``compare`` read the same numbers).

It stands on :mod:`.node_runs` (the per-(run, node) table), :mod:`.paths` and :mod:`.checks`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .checks import check_history
from .node_runs import cached, node_keys, node_runs_present, short_name

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["criticality", "criticality_runs", "criticality_table"]

_TOL = 1e-6


def criticality_runs(h: pd.DataFrame, iterations: bool) -> tuple[Any, ...]:
    """Per (run, node): exclusive and inclusive seconds on the path, and the share of the run's
    path through the node. Returns (runs, nodes, kinds, exclusive, inclusive, weight, makespan);
    kept for the same frame (:func:`cached`)."""
    return cached("paths", h, iterations, lambda: _find_criticality_runs(h, iterations))


def _find_criticality_runs(h: pd.DataFrame, iterations: bool) -> tuple[Any, ...]:
    import numpy as np
    import pandas as pd

    from .paths import path_flows

    flows = path_flows(h)
    rows = flows.rows
    node, mapping = node_keys(rows, iterations)
    node_id, uniques = pd.factorize(node)
    nodes = list(uniques)
    index = {x: i for i, x in enumerate(nodes)}
    k = len(nodes)
    distinct = pd.DataFrame(
        {
            "id": node_id,
            "kind": rows["kind"].to_numpy(dtype=object),
            "parent": rows["parent"].to_numpy(dtype=object, na_value=None),
        }
    ).drop_duplicates()
    kinds: dict[str, str] = {}
    parent_of: dict[str, str | None] = {}
    for i, kind, p in zip(distinct["id"], distinct["kind"], distinct["parent"]):
        x = nodes[i]
        kinds.setdefault(x, kind)
        folded = mapping.get(p, p) if isinstance(p, str) and not iterations else p
        if x not in parent_of or parent_of[x] is None:
            parent_of[x] = folded if folded != x else None
    # A[x, y]: y is x or an ancestor of x
    ancestors = np.zeros((k + 1, k), dtype=bool)  # the last row: the run's end, inside nothing
    for x, i in index.items():
        seen, y = 0, x
        while y is not None and y in index and seen < k + 1:
            ancestors[i, index[y]] = True
            y = parent_of.get(y)
            seen += 1
    n = len(rows)
    n_runs = len(flows.runs)
    exclusive = np.bincount(
        flows.run[flows.owner] * k + node_id[flows.owner],
        weights=flows.gap * flows.flow,
        minlength=n_runs * k,
    ).reshape(n_runs, k)
    inclusive = exclusive @ ancestors[:k].astype(float)
    # the path enters a node's subtree on an edge from inside it to outside (walking back)
    a = node_id[flows.src // 2]  # a source is always a row's event; a destination may be a run's end
    b = np.full(len(flows.dst), k)
    inside = flows.dst < 2 * n
    b[inside] = node_id[flows.dst[inside] // 2]
    edge, hit = np.nonzero(ancestors[a] & ~ancestors[b])
    weight = np.bincount(
        flows.run[flows.src[edge] // 2] * k + hit, weights=flows.flow[edge], minlength=n_runs * k
    ).reshape(n_runs, k)
    weight = np.where(inclusive > _TOL, np.minimum(weight, 1.0), 0.0)
    return flows.runs, nodes, kinds, exclusive, inclusive, weight, flows.makespan


def criticality_table(h: pd.DataFrame, iterations: bool, only: Any = None) -> pd.DataFrame:
    """The criticality table over the runs of ``h`` (``only``: over these run ids of it)."""
    import numpy as np
    import pandas as pd

    runs, nodes, kinds, exclusive, inclusive, weight, makespan = criticality_runs(h, iterations)
    present = node_runs_present(h, iterations, runs, nodes)
    if only is not None:
        chosen = pd.Index(runs).isin(list(only))
        exclusive, inclusive, weight = exclusive[chosen], inclusive[chosen], weight[chosen]
        makespan, present = makespan[chosen], present[chosen]
    n_present = present.sum(axis=0)
    on = weight > 0
    crit = np.where(n_present > 0, weight.sum(axis=0) / np.maximum(n_present, 1), np.nan)

    def median_on(values: Any) -> Any:  # seconds per unit of the path through the node (ties: whole)
        with np.errstate(all="ignore"):
            masked = np.where(on, values / np.where(on, weight, 1.0), np.nan)
        with np.errstate(all="ignore"):
            out = np.full(values.shape[1], np.nan)
            has = on.any(axis=0)
            if has.any():
                out[has] = np.nanmedian(masked[:, has], axis=0)
        return out

    owned = np.where(n_present > 0, (exclusive * present).sum(axis=0) / np.maximum(n_present, 1), np.nan)
    p50 = float(np.median(makespan)) if len(makespan) else math.nan
    table = pd.DataFrame(
        {
            "kind": [kinds[x] for x in nodes],
            "name": [short_name(x) for x in nodes],
            "runs": n_present.astype(np.int64),
            "criticality": crit,
            "exclusive_s": median_on(exclusive),
            "inclusive_s": median_on(inclusive),
            "owned_s": owned,
            "share_of_p50": owned / p50 if p50 > 0 else np.nan,
        },
        index=pd.Index(nodes, name="fqn"),
    )
    table = table[table["runs"] > 0]
    table.attrs["makespan_p50_s"] = p50
    return table


def criticality(h: pd.DataFrame, iterations: bool = False) -> pd.DataFrame:
    """Per node, how often it decides the makespan and how many seconds of it it owns.

    The critical path of every run is found (the same rules as
    ``trace.pipeline.critical_path()``); where two or more predecessors of an event tie for the
    latest (two branches ending at the same moment), the run's path is split evenly between
    them: each carries ½ (⅓ for three…), and so do the nodes on them.

    Returns:
        Indexed by node ``fqn``, sorted by ``criticality`` then ``owned_s`` (highest first):
        ``kind``, ``name``, ``runs`` (runs that have the node), ``criticality`` (the criticality
        index: the share of those runs whose critical path goes through it, ties split),
        ``exclusive_s`` (the median, over the runs where it is on the path, of the path's
        seconds it owns: a step's duration and the waits between its attempts; a container's
        gaps — a queue before it starts, before its first child, after its last), ``inclusive_s``
        (the same median of the path's seconds inside the node, its descendants' included),
        ``owned_s`` (its exclusive seconds on the path, averaged over all its runs, 0 where it is
        not on the path: per run the nodes' exclusive seconds add up to the makespan) and
        ``share_of_p50`` (``owned_s`` ÷ the median makespan, in ``attrs["makespan_p50_s"]``).

    >>> import notebook_pipelines as nbp
    >>> p = nbp.Pipeline("p")
    >>> with p.stage("s") as s:
    ...     _ = s.step("a", duration=3)
    ...     with s.parallel():
    ...         _ = s.step("b", duration=5)
    ...         _ = s.step("c", duration=5)
    >>> table = criticality(p.simulate(run_id="one"))
    >>> table.set_index("name").loc[["a", "b", "c"], ["criticality", "exclusive_s"]]
          criticality  exclusive_s
    name
    a             1.0          3.0
    b             0.5          5.0
    c             0.5          5.0
    """
    check_history(h, "criticality()")
    table = criticality_table(h, iterations)
    table["_order"] = range(len(table))
    table = table.sort_values(["criticality", "owned_s", "_order"], ascending=[False, False, True])
    return table.drop(columns="_order")
