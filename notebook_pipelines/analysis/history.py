"""Analyses of a history (many runs of one pipeline) that keep the structure.

A history is the trace schema with one block of rows per run (``nbp.read_history``, the
``fetch_*_history`` functions, or runs of ``simulate()`` concatenated with their own
``run_id``), optionally with the run columns (``created``, ``commit``, ``branch`` …). Every
function here reads one pipeline's history (select one with ``h[h.pipeline == name]``) and
answers per *node* — a step, step group or stage, or the pipeline — with looping iterations
folded into their looped node unless ``iterations=True`` (a GitHub matrix job
``build (ubuntu)`` and ``build (macos)`` are one node ``build``; its ``Run make`` step is one
node across the matrix).

- :func:`step_stats` — per node: runs, duration percentiles, queue, failure, retry and skip rates;
- :func:`criticality` — per node: how often it decides the makespan (the *criticality index*),
  its exclusive seconds on the critical path and its share of the median makespan;
- :func:`trend` — duration percentiles per period;
- :func:`regressions` — shifts in a node's duration (a rank test and a change point), ranked by
  their effect on the makespan;
- :func:`flaky` — nodes whose outcome differs on the same commit, retried-then-passed counts;
- :func:`compare` — two slices side by side, and which nodes explain the change in makespan.

Critical paths come from :func:`~notebook_pipelines.analysis.paths.path_flows` (every run at
once, the same rules as ``trace.pipeline.critical_path()``, ties split evenly).

**Percentiles** are numpy's default, ``method="linear"`` (Hyndman & Fan type 7): the ``q``-th
percentile of ``n`` sorted values lies at position ``(n - 1) q / 100``, interpolated between the
two values around it. So the p95 of 1, 2, …, 10 is 9.55 (position 8.55: 9 + 0.55 × (10 − 9)).

A node's **time in a run** is from its first start to its last end (its attempts, the waits
between them and, folded, all its iterations).

>>> import pandas as pd
>>> import notebook_pipelines as nbp
>>> p = nbp.Pipeline("p")
>>> with p.stage("s") as s, s.parallel():
...     _ = s.step("a", duration=lambda rng: rng.uniform(10, 20))
...     _ = s.step("b", duration=5)
>>> h = pd.concat([p.simulate(seed=k, run_id=f"r{k}") for k in range(5)], ignore_index=True)
>>> table = criticality(h)
>>> table.loc[table["name"] == "a", "criticality"].item()
1.0
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..definition.statuses import SEVERITY
from ..errors import TraceError
from .timing import check_trace

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "FAILURES",
    "compare",
    "criticality",
    "flaky",
    "mann_whitney",
    "node_runs",
    "regressions",
    "select",
    "step_stats",
    "trend",
]

#: statuses that count as a failure of a node (its last attempt ended so)
FAILURES = frozenset(SEVERITY)
_TOL = 1e-6
_PCT = (50, 90, 95)


def check_history(h: Any, what: str) -> None:
    """Refuse what is not a history of one pipeline, saying how to fix it."""
    check_trace(h, what, one_run=False)
    if "pipeline" in h.columns:
        names = h["pipeline"].dropna().unique()
        if len(names) > 1:
            shown = ", ".join(repr(str(x)) for x in names[:3]) + (", …" if len(names) > 3 else "")
            raise TraceError(
                f"{what} reads the history of one pipeline; this one holds {len(names)} ({shown}): "
                f"select one, e.g. h[h.pipeline == {str(names[0])!r}]"
            )
    duplicated = h.duplicated(["run_id", "fqn", "iteration", "attempt", "start_s"])
    if duplicated.any():
        raise TraceError(
            f"{what}: some rows repeat in one run id — the runs share a run_id (simulate() names "
            "every run 'sim-<seed>'): give each run its own, simulate(p, seed=s, run_id=f'run-{s}')"
        )


def _keys(h: pd.DataFrame, iterations: bool) -> tuple[Any, dict[str, str]]:
    """Per row, its node's key (the fqn, iterations folded unless ``iterations``); and the map."""
    from .paths import fold_fqns

    fqn = h["fqn"].astype(object)
    if iterations:
        return fqn, {}
    pairs = h[["fqn", "parent"]].astype(object).drop_duplicates()
    mapping = fold_fqns(pairs["fqn"].tolist(), pairs["parent"].where(pairs["parent"].notna(), None).tolist())
    return fqn.map(mapping), mapping


def node_runs(h: pd.DataFrame, iterations: bool = False) -> pd.DataFrame:
    """One row per (run, node): the table the other analyses aggregate.

    Columns: ``run_id``, ``node`` (fqn, folded), ``kind``, ``seconds`` (first start to last end;
    NaN if it never started), ``attempts``, ``queued_s`` (its first row's, where known),
    ``failed`` (an iteration's last attempt ended in a failure), ``retried`` (more than one
    attempt), ``passed_after_retry`` (an attempt failed, the last succeeded), ``skipped``
    (every row ``Skipped``), ``order`` (first appearance), and the run columns present
    (``created``, ``commit``, ``branch``).
    """
    import numpy as np
    import pandas as pd

    node, _ = _keys(h, iterations)
    status = h["status"].astype(object)
    frame = pd.DataFrame(
        {
            "run_id": h["run_id"].astype(object).to_numpy(),
            "node": node.to_numpy(),
            "fqn": h["fqn"].astype(object).to_numpy(),
            "iteration": h["iteration"].astype("Float64").fillna(-1).to_numpy(dtype=float),
            "kind": h["kind"].astype(object).to_numpy(),
            "attempt": h["attempt"].to_numpy(dtype=np.int64),
            "start_s": h["start_s"].to_numpy(dtype=float),
            "end_s": h["end_s"].to_numpy(dtype=float),
            "failure": status.isin(FAILURES).to_numpy(),
            "success": status.isin(("Success", "IgnoreFailed")).to_numpy(),
            "skip": (status == "Skipped").to_numpy(),
            "queued_s": h["queued_s"].to_numpy(dtype=float) if "queued_s" in h.columns else np.nan,
            "order": np.arange(len(h)),
        }
    )
    # each (run, fqn, iteration)'s last attempt decides its outcome
    by_unit = frame.sort_values(["attempt", "start_s"], na_position="first", kind="stable")
    last = by_unit.drop_duplicates(["run_id", "fqn", "iteration"], keep="last")
    unit = last[["run_id", "node", "failure", "success"]].rename(columns={"failure": "last_failed",
                                                                          "success": "last_ok"})  # fmt: skip
    any_fail = frame.groupby(["run_id", "fqn", "iteration"], sort=False)["failure"].any().rename("any_fail")
    unit["any_fail"] = any_fail.reindex(
        pd.MultiIndex.from_frame(last[["run_id", "fqn", "iteration"]])
    ).to_numpy()
    unit["pr"] = unit["any_fail"] & ~unit["last_failed"] & unit["last_ok"]
    per_unit = unit.groupby(["run_id", "node"], sort=False).agg(failed=("last_failed", "any"),
                                                               passed_after_retry=("pr", "any"))  # fmt: skip
    g = frame.groupby(["run_id", "node"], sort=False)
    out = g.agg(
        kind=("kind", "first"),
        start_s=("start_s", "min"),
        end_s=("end_s", "max"),
        attempts=("attempt", "max"),
        queued_s=("queued_s", "first"),
        skipped=("skip", "all"),
        order=("order", "min"),
    )
    out["seconds"] = out["end_s"] - out["start_s"]
    out = out.join(per_unit)
    out["retried"] = out["attempts"] > 1
    out = out.reset_index()
    runs = _run_info(h)
    out = out.merge(runs, on="run_id", how="left")
    return out.sort_values("order", kind="stable").reset_index(drop=True)


def _run_info(h: pd.DataFrame) -> pd.DataFrame:
    """Per run: ``run_id``, ``created`` (NaT if unknown), ``commit``, ``branch``, ``run_order``."""
    import pandas as pd

    columns = [c for c in ("created", "commit", "branch") if c in h.columns]
    runs = h.drop_duplicates("run_id")[["run_id", *columns]].copy()
    runs["run_id"] = runs["run_id"].astype(object)
    for c in ("commit", "branch"):
        if c not in runs.columns:
            runs[c] = pd.NA
        runs[c] = runs[c].astype(object)
    if "created" not in runs.columns:
        runs["created"] = pd.NaT
    runs["run_order"] = range(len(runs))
    return runs.reset_index(drop=True)


def _percentiles(values: Any, prefix: str = "") -> dict[str, float]:
    import numpy as np

    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if not len(x):
        return {f"{prefix}p{q}_s": math.nan for q in _PCT}
    return {f"{prefix}p{q}_s": float(v) for q, v in zip(_PCT, np.percentile(x, _PCT))}


def _name(fqn: str) -> str:
    return str(fqn).rsplit(".", 1)[-1]


def _makespans(h: pd.DataFrame) -> pd.Series:
    """Per run: the pipeline row's time, else first start to last end."""
    timed = h[h["start_s"].notna() & h["end_s"].notna()]
    spans = timed.groupby("run_id", sort=False, observed=True).agg(a=("start_s", "min"), b=("end_s", "max"))
    out = (spans["b"] - spans["a"]).copy()
    roots = timed[timed["kind"] == "pipeline"].groupby("run_id", sort=False, observed=True)
    roots = roots.agg(a=("start_s", "min"), b=("end_s", "max"))
    out.update(roots["b"] - roots["a"])
    out.index = out.index.astype(object)
    return out


# -- step_stats ---------------------------------------------------------------------------------------
def step_stats(h: pd.DataFrame, iterations: bool = False) -> pd.DataFrame:
    """Per node, its time across runs, its outcomes, and how it drives the makespan.

    ``h`` is a history, or several traces concatenated (``pd.concat``), each run with its own
    ``run_id``. A node's time in a run is from its first start to its last end (its retries and
    their waits, and its iterations unless ``iterations=True``, included). Percentiles are
    numpy's ``method="linear"`` (see the module notes: the p95 of 1…10 is 9.55).

    Returns:
        Indexed by node ``fqn``, sorted by ``corr_makespan`` (highest first, then plan order):
        ``kind``, ``step`` (the node's identifier), ``runs`` (runs that have the node),
        ``mean_s``, ``std_s``, ``min_s``, ``p50_s``, ``p90_s``, ``p95_s``, ``max_s`` (over the
        runs where it started), ``queue_p50_s``, ``queue_p95_s`` (``queued_s``, where known),
        ``attempts_mean``, ``failure_rate`` (share of runs where it failed: an iteration's last
        attempt), ``retry_rate`` (share of runs with a second attempt), ``skipped_share``,
        ``corr_makespan`` (Pearson correlation of its time with the makespan; NaN when either
        does not vary) and ``critical_share`` (its criticality index, :func:`criticality`).
    """
    import numpy as np
    import pandas as pd

    check_history(h, "step_stats()")
    table = node_runs(h, iterations)
    makespan = _makespans(h)
    crit = _criticality_table(h, iterations)["criticality"]
    rows = {}
    for node, g in table.groupby("node", sort=False):
        x = g["seconds"].to_numpy(dtype=float)
        started = x[~np.isnan(x)]
        y = makespan.reindex(g["run_id"]).to_numpy(dtype=float)
        both = ~np.isnan(x) & ~np.isnan(y)
        corr = math.nan
        if both.sum() > 1 and np.std(x[both]) > _TOL and np.std(y[both]) > _TOL:
            corr = float(np.corrcoef(x[both], y[both])[0, 1])
        q = g["queued_s"].to_numpy(dtype=float)
        runs = len(g)
        row = {
            "kind": g["kind"].iloc[0],
            "step": _name(node),
            "runs": runs,
            "mean_s": started.mean() if len(started) else math.nan,
            "std_s": started.std(ddof=1) if len(started) > 1 else math.nan,
            "min_s": started.min() if len(started) else math.nan,
        }
        row.update(_percentiles(started))
        row["max_s"] = started.max() if len(started) else math.nan
        row.update(_percentiles(q, "queue_"))
        del row["queue_p90_s"]
        row.update(
            {
                "attempts_mean": float(g["attempts"].mean()),
                "failure_rate": float(g["failed"].mean()),
                "retry_rate": float(g["retried"].mean()),
                "skipped_share": float(g["skipped"].mean()),
                "corr_makespan": corr,
                "critical_share": float(crit.get(node, 0.0)),
            }
        )
        rows[node] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "fqn"
    if out.empty:
        return out
    out["_order"] = range(len(out))
    out = out.sort_values(["corr_makespan", "_order"], ascending=[False, True], na_position="last")
    return out.drop(columns="_order")


# -- criticality --------------------------------------------------------------------------------------
_LAST: list = [None, None]  # the last history's paths: (its key, the result); analyses in a row share it


def _criticality_runs(h: pd.DataFrame, iterations: bool) -> tuple[Any, ...]:
    """Per (run, node): exclusive and inclusive seconds on the path, and the share of the run's
    path through the node. Returns (runs, nodes, kinds, exclusive, inclusive, weight, makespan).

    The last answer is kept, keyed by the frame's identity, length and the sums of its times (a
    frame changed in place gets new sums), so ``step_stats``, ``criticality`` and
    ``regressions`` of one history find the paths once."""
    key = (id(h), iterations, len(h), float(h["start_s"].sum()), float(h["end_s"].sum()))
    if _LAST[0] == key:
        return _LAST[1]
    out = _find_criticality_runs(h, iterations)
    _LAST[:] = [key, out]
    return out


def _find_criticality_runs(h: pd.DataFrame, iterations: bool) -> tuple[Any, ...]:
    import numpy as np

    from .paths import path_flows

    flows = path_flows(h)
    rows = flows.rows
    node, _ = _keys(rows, iterations)
    parents = rows["parent"].astype(object)
    if not iterations:
        _, mapping = _keys(h, iterations)
        parent_node = parents.map(lambda p: mapping.get(p, p) if isinstance(p, str) else None)
    else:
        parent_node = parents.where(parents.notna(), None)
    nodes = list(dict.fromkeys(node.tolist()))
    index = {x: i for i, x in enumerate(nodes)}
    k = len(nodes)
    node_id = node.map(index).to_numpy(dtype=np.int64)
    kinds: dict[str, str] = {}
    parent_of: dict[str, str | None] = {}
    for x, kind, p in zip(node.tolist(), rows["kind"].astype(object).tolist(), parent_node.tolist()):
        kinds.setdefault(x, kind)
        if x not in parent_of or parent_of[x] is None:
            parent_of[x] = p if p != x else None
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
    exclusive = np.zeros((n_runs, k))
    np.add.at(exclusive, (flows.run[flows.owner], node_id[flows.owner]), flows.gap * flows.flow)
    inclusive = exclusive @ ancestors[:k].astype(float)
    # the path enters a node's subtree on an edge from inside it to outside (walking back)
    a = node_id[flows.src // 2]  # a source is always a row's event; a destination may be a run's end
    b = np.full(len(flows.dst), k)
    inside = flows.dst < 2 * n
    b[inside] = node_id[flows.dst[inside] // 2]
    crossing = ancestors[a] & ~ancestors[b]
    weight = np.zeros((n_runs, k))
    np.add.at(weight, flows.run[flows.src // 2], crossing * flows.flow[:, None])
    weight = np.where(inclusive > _TOL, np.minimum(weight, 1.0), 0.0)
    return flows.runs, nodes, kinds, exclusive, inclusive, weight, flows.makespan


def _criticality_table(h: pd.DataFrame, iterations: bool) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    runs, nodes, kinds, exclusive, inclusive, weight, makespan = _criticality_runs(h, iterations)
    present = node_runs_present(h, iterations, runs, nodes)
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
            "name": [_name(x) for x in nodes],
            "runs": n_present.astype(np.int64),
            "criticality": crit,
            "exclusive_s": median_on(exclusive),
            "inclusive_s": median_on(inclusive),
            "owned_s": owned,
            "share_of_p50": owned / p50 if p50 > 0 else np.nan,
        },
        index=pd.Index(nodes, name="fqn"),
    )
    table.attrs["makespan_p50_s"] = p50
    return table


def node_runs_present(h: pd.DataFrame, iterations: bool, runs: list, nodes: list) -> Any:
    """A (runs × nodes) boolean matrix: the node has a row in the run."""
    import numpy as np
    import pandas as pd

    node, _ = _keys(h, iterations)
    pairs = pd.DataFrame({"run": h["run_id"].astype(object).to_numpy(), "node": node.to_numpy()})
    pairs = pairs.drop_duplicates()
    r = pd.Index(runs).get_indexer(pairs["run"])
    c = pd.Index(nodes).get_indexer(pairs["node"])
    ok = (r >= 0) & (c >= 0)
    out = np.zeros((len(runs), len(nodes)), dtype=bool)
    out[r[ok], c[ok]] = True
    return out


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
    table = _criticality_table(h, iterations)
    table["_order"] = range(len(table))
    table = table.sort_values(["criticality", "owned_s", "_order"], ascending=[False, False, True])
    return table.drop(columns="_order")


# -- trend --------------------------------------------------------------------------------------------
def _match_nodes(nodes: Any, available: list[str]) -> list[str]:
    if nodes is None:
        return available
    if isinstance(nodes, str):
        nodes = [nodes]
    out = []
    for x in nodes:
        if x in available:
            out.append(x)
            continue
        found = [f for f in available if _name(f) == x or f.endswith("." + x)]
        if not found:
            close = ", ".join(sorted({_name(f) for f in available})[:12])
            raise TraceError(f"no node {x!r} in this history; its nodes include {close}")
        out.extend(found)
    return list(dict.fromkeys(out))


def _created(table: pd.DataFrame, what: str) -> Any:
    if table["created"].isna().all():
        raise TraceError(
            f"{what} needs the runs' dates (the history's 'created' column); this history has none: "
            "read it with nbp.read_history(folder), or add a created column per run"
        )
    return table["created"]


def trend(h: pd.DataFrame, nodes: Any = None, freq: str = "D", iterations: bool = False) -> pd.DataFrame:
    """Each node's time per period: ``runs``, ``p50_s``, ``p90_s``, ``p95_s``, ``max_s``.

    Args:
        nodes: fqns or identifiers (``"integration"``); None: every node.
        freq: a pandas period alias: ``"D"`` (days), ``"W"`` (weeks), ``"h"``, ``"M"`` …; the
            period of a run is that of its ``created`` time.

    Returns:
        Indexed by (``period``, ``fqn``) — a ``pd.Period`` and the node — in time order.
    """
    import numpy as np

    check_history(h, "trend()")
    table = node_runs(h, iterations)
    keep = _match_nodes(nodes, list(dict.fromkeys(table["node"])))
    table = table[table["node"].isin(keep) & table["seconds"].notna()]
    created = _created(table, "trend()")
    try:
        period = created.dt.tz_convert(None).dt.to_period(freq)
    except (ValueError, TypeError) as error:
        raise TraceError(
            f"trend(freq={freq!r}): not a pandas period alias ('D', 'W', 'h', 'M'): {error}"
        ) from None
    table = table.assign(period=period.to_numpy())
    g = table.groupby(["period", "node"], sort=True)["seconds"]
    out = g.quantile([q / 100 for q in _PCT]).unstack()
    out.columns = [f"p{q}_s" for q in _PCT]
    out.insert(0, "runs", g.size())
    out["max_s"] = g.max()
    out.index.names = ["period", "fqn"]
    order = {x: i for i, x in enumerate(keep)}
    positions = np.lexsort(
        ([order[f] for f in out.index.get_level_values(1)], out.index.get_level_values(0).to_numpy())
    )
    return out.iloc[positions]


# -- regressions --------------------------------------------------------------------------------------
def mann_whitney(a: Any, b: Any) -> tuple[Any, Any, Any]:
    """The Mann-Whitney U test of each row of ``a`` against the same row of ``b`` (2-D arrays,
    or 1-D for one test): ``U`` (of ``b`` over ``a``: pairs where b is larger, ties ½), the
    two-sided p-value from the normal approximation with the tie correction, and the
    rank-biserial correlation ``2U / (n_a n_b) − 1`` (−1 … 1; 1: every b above every a).

    Every pair ordered: U = 4 × 4 = 16 against a mean of 8 and a variance of 4 × 4 × 9 / 12 = 12;
    z = (|16 − 8| − 0.5) / √12 = 2.165 (with the continuity correction), p = 2 (1 − Φ(z)):

    >>> u, p, r = mann_whitney([1, 2, 3, 4], [5, 6, 7, 8])
    >>> float(u), round(float(p), 4), float(r)
    (16.0, 0.0304, 1.0)
    """
    import numpy as np

    a = np.atleast_2d(np.asarray(a, dtype=float))
    b = np.atleast_2d(np.asarray(b, dtype=float))
    n1, n2 = a.shape[1], b.shape[1]
    diff = b[:, None, :] - a[:, :, None]
    u = (diff > 0).sum(axis=(1, 2)) + 0.5 * (diff == 0).sum(axis=(1, 2))
    both = np.concatenate([a, b], axis=1)
    equal = (both[:, :, None] == both[:, None, :]).sum(axis=2)
    ties = (equal.astype(float) ** 2 - 1).sum(axis=1)  # Σ over tie groups of t³ − t
    n = n1 + n2
    var = n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1)))
    mean = n1 * n2 / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(var > 0, (np.abs(u - mean) - 0.5) / np.sqrt(np.where(var > 0, var, 1)), 0.0)
    z = np.maximum(z, 0.0)
    p = np.array([math.erfc(v / math.sqrt(2)) for v in z.ravel()]).reshape(z.shape)
    r = 2 * u / (n1 * n2) - 1
    return u.squeeze(), p.squeeze(), r.squeeze()


def regressions(
    h: pd.DataFrame,
    window: int = 20,
    *,
    alpha: float = 0.001,
    min_shift: float = 0.1,
    min_effect: float = 0.8,
    iterations: bool = False,
) -> pd.DataFrame:
    """Shifts in a node's duration: where they happened, how large, and what they cost the makespan.

    For each node, its times are ordered by run (``created``, else the order of the history);
    at every run ``k`` the ``window`` runs before it are compared with the ``window`` from it on
    (fewer near either end of the history, at least ``window // 2``) by a Mann-Whitney U test
    (:func:`mann_whitney`; a rank test, robust to outliers). The change point is the ``k`` where
    the test is strongest. A shift is reported when its p-value is below ``alpha``, its effect
    size is at least ``min_effect`` (0.8: 90 % of the pairs (before, after) ordered the same way)
    and the medians differ by at least ``min_shift`` (a share of the median before): a slow
    drift moves little within ``2 × window`` runs, and retries now and then move a median but
    leave most pairs unordered; a step change moves them all at once. The pipeline's own row
    (the makespan) is not listed: ``attrs["makespan"]`` holds its shift, if any.

    Returns:
        One row per shift (at most one per node), ranked by ``makespan_effect_s`` (highest
        first: a shift on the critical path first), then steps before the containers holding
        them, then by ``|shift_pct|``; indexed by node
        ``fqn``: ``kind``, ``name``, ``change_at`` (``created`` of the first run after the
        change, or NaT), ``run_id`` (that run), ``before_p50_s``, ``after_p50_s``, ``shift_s``,
        ``shift_pct``, ``u``, ``p_value``, ``effect`` (rank-biserial correlation: 1 when every
        run after is slower than every run before), ``criticality`` (in the runs after the
        change) and ``makespan_effect_s`` = ``shift_s`` × that criticality: the seconds the
        shift adds to a typical run's makespan — about zero for a node with slack.
    """
    import numpy as np
    import pandas as pd

    check_history(h, "regressions()")
    if not isinstance(window, int) or isinstance(window, bool) or window < 3:
        raise TraceError(f"regressions(window={window!r}): window is a number of runs, at least 3")
    table = node_runs(h, iterations)
    table = table[table["seconds"].notna()]
    sort = ["created", "run_order"] if table["created"].notna().any() else ["run_order"]
    table = table.sort_values([*sort, "order"], kind="stable")
    runs, nodes, _, _, _, weight, _ = _criticality_runs(h, iterations)
    run_pos = {r: i for i, r in enumerate(runs)}
    node_pos = {x: i for i, x in enumerate(nodes)}
    found = []
    for node, g in table.groupby("node", sort=False):
        x = g["seconds"].to_numpy(dtype=float)
        tests = _change_tests(x, window)
        if not tests:
            continue
        best = min(tests, key=lambda t: (t[3], -abs(t[5])))
        k, lo, hi, p_best, u_best, r_best = best
        before, after = x[lo:k], x[k:hi]
        b50, a50 = float(np.median(before)), float(np.median(after))
        shift = a50 - b50
        pct = shift / b50 if b50 > _TOL else math.inf if shift > 0 else 0.0
        if p_best >= alpha or abs(r_best) < min_effect or abs(pct) < min_shift:
            continue
        first = g.iloc[k]
        later = g["run_id"].iloc[k:hi]
        if node in node_pos:
            rows = [run_pos[x] for x in later if x in run_pos]
            crit = float(weight[rows, node_pos[node]].mean()) if rows else 0.0
        else:
            crit = 0.0
        found.append(
            {
                "fqn": node,
                "kind": g["kind"].iloc[0],
                "name": _name(node),
                "change_at": first["created"],
                "run_id": first["run_id"],
                "before_p50_s": b50,
                "after_p50_s": a50,
                "shift_s": shift,
                "shift_pct": pct,
                "u": float(u_best),
                "p_value": float(p_best),
                "effect": float(r_best),
                "criticality": crit,
                "makespan_effect_s": shift * crit,
            }
        )
    columns = ["kind", "name", "change_at", "run_id", "before_p50_s", "after_p50_s", "shift_s", "shift_pct"]
    columns += ["u", "p_value", "effect", "criticality", "makespan_effect_s"]
    out = pd.DataFrame(found, columns=["fqn", *columns]).set_index("fqn")
    makespan = out[out["kind"] == "pipeline"]
    out = out[out["kind"] != "pipeline"]
    out.attrs["makespan"] = makespan.iloc[0].to_dict() if len(makespan) else None
    if out.empty:
        return out
    out["_abs"] = out["shift_pct"].abs()
    out["_kind"] = out["kind"].map({"step": 0, "step_group": 1, "stage": 2}).fillna(3)
    out = out.sort_values(
        ["makespan_effect_s", "_kind", "_abs"], ascending=[False, True, False], kind="stable"
    )
    return out.drop(columns=["_abs", "_kind"])


def _change_tests(x: Any, window: int) -> list[tuple]:
    """Every split ``k`` of ``x`` with its test: (k, lo, hi, p, u, effect) comparing ``x[lo:k]``
    with ``x[k:hi]``: ``window`` runs a side, fewer (down to ``window // 2``) near the ends."""
    import numpy as np

    out: list[tuple] = []
    m = max(3, window // 2)
    t = len(x)
    if t < 2 * m:
        return out
    if t >= 2 * window:
        windows = np.lib.stride_tricks.sliding_window_view(x, 2 * window)
        u, p, r = (np.atleast_1d(v) for v in mann_whitney(windows[:, :window], windows[:, window:]))
        out += [(j + window, j, j + 2 * window, p[j], u[j], r[j]) for j in range(len(p))]
    # near the ends: the splits a full window on both sides does not reach
    done = {k for k, *_ in out}
    for k in range(m, t - m + 1):
        if k in done:
            continue
        lo, hi = max(0, k - window), min(t, k + window)
        u, p, r = mann_whitney(x[lo:k], x[k:hi])
        out.append((k, lo, hi, float(p), float(u), float(r)))
    return out


# -- flaky --------------------------------------------------------------------------------------------
def flaky(h: pd.DataFrame, iterations: bool = False) -> pd.DataFrame:
    """Nodes whose outcome differs on the same commit, and how often a retry rescued them.

    An outcome is an attempt's: failed (``Failed``, ``Errored``, ``Expired``, ``Aborted`` …)
    or succeeded (``Success``, ``IgnoreFailed``). A node is *flaky* on a commit when both were
    seen there — within one run (a failed attempt, then a passing retry or re-run) or across
    runs of that commit.

    Returns:
        Indexed by node ``fqn``, the nodes that failed at least once, flaky ones first (by
        ``flaky_commits``, then ``passed_after_retry``): ``kind``, ``name``, ``runs``,
        ``failed_runs`` (runs where it failed in the end), ``retried_runs``,
        ``passed_after_retry`` (runs where an attempt failed and the last one passed),
        ``commits`` (distinct commits it ran on), ``flaky_commits`` (commits with both outcomes),
        ``flaky`` (at least one).
    """
    import numpy as np
    import pandas as pd

    check_history(h, "flaky()")
    node, _ = _keys(h, iterations)
    status = h["status"].astype(object)
    commit = h["commit"].astype(object) if "commit" in h.columns else pd.Series(np.nan, index=h.index)
    commit = commit.where(commit.notna(), "run:" + h["run_id"].astype(str))  # unknown commit: one per run
    attempts = pd.DataFrame(
        {
            "node": node.to_numpy(),
            "commit": commit.to_numpy(),
            "fail": status.isin(FAILURES).to_numpy(),
            "ok": status.isin(("Success", "IgnoreFailed")).to_numpy(),
        }
    )
    by_commit = attempts.groupby(["node", "commit"], sort=False).agg(fail=("fail", "any"), ok=("ok", "any"))
    by_commit["mixed"] = by_commit["fail"] & by_commit["ok"]
    per_node = by_commit.groupby(level="node", sort=False).agg(
        commits=("mixed", "size"), flaky_commits=("mixed", "sum"), ever_failed=("fail", "any")
    )
    runs = (
        node_runs(h, iterations)
        .groupby("node", sort=False)
        .agg(
            kind=("kind", "first"),
            runs=("run_id", "size"),
            failed_runs=("failed", "sum"),
            retried_runs=("retried", "sum"),
            passed_after_retry=("passed_after_retry", "sum"),
        )
    )
    out = runs.join(per_node)
    out = out[out["ever_failed"].fillna(False).astype(bool)].drop(columns="ever_failed")
    out.insert(1, "name", [_name(x) for x in out.index])
    for c in ("failed_runs", "retried_runs", "passed_after_retry", "commits", "flaky_commits"):
        out[c] = out[c].fillna(0).astype(np.int64)
    out["flaky"] = out["flaky_commits"] > 0
    out.index.name = "fqn"
    out["_order"] = range(len(out))
    out = out.sort_values(["flaky_commits", "passed_after_retry", "_order"], ascending=[False, False, True])
    return out.drop(columns="_order")


# -- compare ------------------------------------------------------------------------------------------
def select(h: pd.DataFrame, which: Any, what: str = "compare()") -> pd.DataFrame:
    """The runs of ``h`` that ``which`` names.

    ``which`` is a DataFrame (a slice of ``h``, kept as it is); a list, tuple, set or Index of
    run ids; a ``slice(start, stop)`` of dates (``created`` in ``[start, stop)``, either may be
    None); a dict with any of ``since``, ``until`` (dates), ``branch``, ``commit``, ``runs``; or
    a string: a branch name.
    """
    import pandas as pd

    if isinstance(which, pd.DataFrame):
        return which
    if isinstance(which, str):
        which = {"branch": which}
    if isinstance(which, slice):
        which = {"since": which.start, "until": which.stop}
    if isinstance(which, dict):
        unknown = set(which) - {"since", "until", "branch", "commit", "runs"}
        if unknown:
            raise TraceError(
                f"{what}: unknown keys {sorted(unknown)}; use since, until, branch, commit, runs"
            )
        mask = pd.Series(True, index=h.index)
        for key in ("since", "until"):
            if which.get(key) is not None:
                if "created" not in h.columns:
                    raise TraceError(f"{what}: a date slice needs the history's 'created' column")
                moment = pd.Timestamp(which[key])
                moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment
                mask &= (h["created"] >= moment) if key == "since" else (h["created"] < moment)
        for key in ("branch", "commit"):
            if which.get(key) is not None:
                if key not in h.columns:
                    raise TraceError(f"{what}: this history has no {key!r} column")
                mask &= h[key].astype(object) == which[key]
        if which.get("runs") is not None:
            mask &= h["run_id"].astype(object).isin([str(x) for x in which["runs"]])
        out = h[mask]
    elif isinstance(which, (list, tuple, set, frozenset, pd.Index)):
        out = h[h["run_id"].astype(object).isin([str(x) for x in which])]
    else:
        raise TraceError(
            f"{what}: a slice is a DataFrame, run ids, slice(since, until) of dates, a dict or a branch "
            f"name, not {type(which).__name__}"
        )
    if out.empty:
        raise TraceError(f"{what}: {which!r} selects no run of this history")
    return out


def compare(h: pd.DataFrame, before: Any, after: Any, iterations: bool = False) -> pd.DataFrame:
    """Two slices of a history side by side, and which nodes explain the change in makespan.

    ``before`` and ``after`` select runs (see :func:`select`: run ids, ``slice(since, until)``
    of dates, a branch name, a dict, or slices of ``h``).

    Returns:
        Indexed by node ``fqn``, sorted by ``|explains_s|`` (largest first): ``kind``, ``name``,
        ``before_p50_s``, ``after_p50_s``, ``before_p95_s``, ``after_p95_s``, ``change_p50_s``,
        ``before_criticality``, ``after_criticality``, ``before_owned_s``, ``after_owned_s``
        (:func:`criticality`) and ``explains_s`` = after − before owned seconds: its part of the
        change of the makespan (the parts add up to the change of the mean makespan).
        ``attrs`` holds ``makespan_p50_s`` (before, after), ``runs`` (before, after).
    """
    import pandas as pd

    check_history(h, "compare()")
    a, b = select(h, before, "compare(before)"), select(h, after, "compare(after)")
    out = {}
    for label, part in (("before", a), ("after", b)):
        runs = node_runs(part, iterations).groupby("node", sort=False)["seconds"]
        stats = pd.DataFrame({f"{label}_p50_s": runs.median(), f"{label}_p95_s": runs.quantile(0.95)})
        crit = _criticality_table(part, iterations)
        stats[f"{label}_criticality"] = crit["criticality"]
        stats[f"{label}_owned_s"] = crit["owned_s"]
        stats["kind"] = crit["kind"]
        out[label] = (stats, crit.attrs["makespan_p50_s"], part["run_id"].nunique())
    first, second = out["before"][0], out["after"][0]
    index = list(dict.fromkeys([*first.index, *second.index]))
    table = pd.DataFrame(index=pd.Index(index, name="fqn"))
    table["kind"] = first["kind"].reindex(index).combine_first(second["kind"].reindex(index))
    table["name"] = [_name(x) for x in index]
    for col in ("p50_s", "p95_s"):
        table[f"before_{col}"] = first[f"before_{col}"].reindex(index)
        table[f"after_{col}"] = second[f"after_{col}"].reindex(index)
    table["change_p50_s"] = table["after_p50_s"] - table["before_p50_s"]
    for col in ("criticality", "owned_s"):
        table[f"before_{col}"] = first[f"before_{col}"].reindex(index)
        table[f"after_{col}"] = second[f"after_{col}"].reindex(index)
    table["explains_s"] = table["after_owned_s"].fillna(0) - table["before_owned_s"].fillna(0)
    table = table.iloc[table["explains_s"].abs().to_numpy().argsort(kind="stable")[::-1]]
    table.attrs["makespan_p50_s"] = (out["before"][1], out["after"][1])
    table.attrs["runs"] = (out["before"][2], out["after"][2])
    return table
