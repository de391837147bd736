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
    """Per row, its node's key (the fqn, iterations folded unless ``iterations``), as an object
    array; and the map fqn → node. Worked out once per distinct fqn."""
    import numpy as np
    import pandas as pd

    from .paths import fold_fqns

    codes, uniques = pd.factorize(h["fqn"], use_na_sentinel=True)
    names = np.asarray(uniques, dtype=object)
    if iterations:
        return names[codes], {}
    first = pd.Series(np.arange(len(codes))).groupby(codes).first()
    parents = h["parent"].to_numpy(dtype=object, na_value=None)[first.to_numpy()]
    mapping = fold_fqns(list(names[first.index.to_numpy()]), list(parents))
    # a parent seen only as a parent (its row not in the frame) folds too
    extra = [p for p in dict.fromkeys(parents) if isinstance(p, str) and p not in mapping]
    if extra:
        mapping.update(fold_fqns(extra, [None] * len(extra)))
    folded = np.array([mapping.get(x, x) for x in names], dtype=object)
    return folded[codes], mapping


_CACHE: dict[tuple, Any] = {}  # the last few answers per history (see _cached)


def _cached(name: str, h: pd.DataFrame, iterations: bool, make: Any) -> Any:
    """``make()``, kept for the same frame: keyed by the frame's identity, length and the sums of
    its times (a frame changed in place gets new sums), so the analyses of one history in a row
    (``step_stats``, ``criticality``, ``regressions`` …) find the paths and the per-run table once."""
    ends = (str(h["run_id"].iat[0]), str(h["run_id"].iat[-1]), str(h["fqn"].iat[-1])) if len(h) else ()
    key = (name, id(h), iterations, len(h), float(h["start_s"].sum()), float(h["end_s"].sum()), *ends)
    if key in _CACHE:
        return _CACHE[key]
    out = make()
    while len(_CACHE) >= 8:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = out
    return out


def node_runs(h: pd.DataFrame, iterations: bool = False) -> pd.DataFrame:
    """One row per (run, node); see :func:`_node_runs` (kept for the same frame, do not change it)."""
    return _cached("node_runs", h, iterations, lambda: _node_runs(h, iterations))


def _node_runs(h: pd.DataFrame, iterations: bool = False) -> pd.DataFrame:
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
    status = h["status"]
    run_code, run_names = pd.factorize(h["run_id"])
    node_code, node_names = pd.factorize(node)
    fqn_code, _ = pd.factorize(h["fqn"])
    kind_code, kind_names = pd.factorize(h["kind"])
    frame = pd.DataFrame(
        {
            "run": run_code,
            "node": node_code,
            "fqn": fqn_code,
            "iteration": h["iteration"].astype("Float64").fillna(-1).to_numpy(dtype=float),
            "kind": kind_code,
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
    unit_keys = ["run", "fqn", "iteration"]
    by_unit = frame.sort_values(["attempt", "start_s"], na_position="first", kind="stable")
    last = by_unit.drop_duplicates(unit_keys, keep="last")
    any_fail = frame.groupby(unit_keys, sort=False)["failure"].any()
    unit = pd.DataFrame(
        {
            "run": last["run"].to_numpy(),
            "node": last["node"].to_numpy(),
            "last_failed": last["failure"].to_numpy(),
            "pr": any_fail.reindex(pd.MultiIndex.from_frame(last[unit_keys])).to_numpy()
            & ~last["failure"].to_numpy()
            & last["success"].to_numpy(),
        }
    )
    per_unit = unit.groupby(["run", "node"], sort=False).agg(
        failed=("last_failed", "any"), passed_after_retry=("pr", "any")
    )
    g = frame.groupby(["run", "node"], sort=False)
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
    out = out.reset_index().sort_values("order", kind="stable")
    info = _run_info(h).set_index("run_id")
    runs = np.asarray(run_names, dtype=object)[out["run"].to_numpy()]
    result = pd.DataFrame(
        {
            "run_id": runs,
            "node": np.asarray(node_names, dtype=object)[out["node"].to_numpy()],
            "kind": np.asarray(kind_names, dtype=object)[out["kind"].to_numpy()],
        }
    )
    for column in ("start_s", "end_s", "attempts", "queued_s", "skipped", "order", "seconds", "failed"):
        result[column] = out[column].to_numpy()
    result["passed_after_retry"] = out["passed_after_retry"].to_numpy()
    result["retried"] = out["retried"].to_numpy()
    position = info.index.get_indexer(runs)
    for column in ("created", "commit", "branch", "run_order"):
        result[column] = info[column].to_numpy()[position]
    return result


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
    their waits, and its iterations unless ``iterations=True``, included). With
    ``iterations=True`` each iteration is a node and a looped step's own row (a container of its
    iterations) is left out. Percentiles are numpy's ``method="linear"`` (see the module notes:
    the p95 of 1…10 is 9.55).

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
    if table.empty:
        columns = ["kind", "step", "runs", "mean_s", "std_s", "min_s", "p50_s", "p90_s", "p95_s", "max_s"]
        columns += ["queue_p50_s", "queue_p95_s", "attempts_mean", "failure_rate", "retry_rate"]
        columns += ["skipped_share", "corr_makespan", "critical_share"]
        return pd.DataFrame(columns=columns, index=pd.Index([], name="fqn"))
    makespan = _makespans(h)
    crit = _criticality_table(h, iterations)["criticality"]
    x = table["seconds"]
    y = pd.Series(makespan.reindex(table["run_id"]).to_numpy(dtype=float), index=table.index)
    both = x.notna() & y.notna()
    frame = pd.DataFrame({"node": table["node"], "x": x.where(both), "y": y.where(both)})
    frame["xy"], frame["xx"], frame["yy"] = frame["x"] * frame["y"], frame["x"] ** 2, frame["y"] ** 2
    sums = frame.groupby("node", sort=False).agg(
        n=("x", "count"),
        sx=("x", "sum"),
        sy=("y", "sum"),
        sxy=("xy", "sum"),
        sxx=("xx", "sum"),
        syy=("yy", "sum"),
    )
    with np.errstate(all="ignore"):
        cov = sums["sxy"] - sums["sx"] * sums["sy"] / sums["n"]
        vx = sums["sxx"] - sums["sx"] ** 2 / sums["n"]
        vy = sums["syy"] - sums["sy"] ** 2 / sums["n"]
        tol = _TOL**2 * sums["n"]
        corr = (cov / np.sqrt(vx * vy)).where((sums["n"] > 1) & (vx > tol) & (vy > tol))
    g = table.groupby("node", sort=False)
    seconds, queue = g["seconds"], g["queued_s"]
    quantiles = seconds.quantile([q / 100 for q in _PCT]).unstack()
    queues = queue.quantile([0.5, 0.95]).unstack()
    out = pd.DataFrame(
        {
            "kind": g["kind"].first(),
            "runs": g.size(),
            "mean_s": seconds.mean(),
            "std_s": seconds.std(ddof=1),
            "min_s": seconds.min(),
            "p50_s": quantiles[0.5],
            "p90_s": quantiles[0.9],
            "p95_s": quantiles[0.95],
            "max_s": seconds.max(),
            "queue_p50_s": queues[0.5],
            "queue_p95_s": queues[0.95],
            "attempts_mean": g["attempts"].mean().astype(float),
            "failure_rate": g["failed"].mean().astype(float),
            "retry_rate": g["retried"].mean().astype(float),
            "skipped_share": g["skipped"].mean().astype(float),
            "corr_makespan": corr.clip(-1.0, 1.0),
        }
    )
    if iterations:  # a looped step's row spans its iterations, which are the steps: not a step
        from ..definition.looping import is_iteration

        pairs = h[["fqn", "parent"]].astype(object).drop_duplicates()
        loops = {p for f, p in zip(pairs["fqn"], pairs["parent"]) if is_iteration(str(f), p)}
        out = out[~((out["kind"] == "step") & out.index.isin(list(loops)))]
    out.insert(1, "step", [_name(x) for x in out.index])
    out["critical_share"] = crit.reindex(out.index).fillna(0.0).to_numpy()
    out.index.name = "fqn"
    if out.empty:
        return out
    out["_order"] = range(len(out))
    out = out.sort_values(["corr_makespan", "_order"], ascending=[False, True], na_position="last")
    return out.drop(columns="_order")


# -- criticality --------------------------------------------------------------------------------------
def _criticality_runs(h: pd.DataFrame, iterations: bool) -> tuple[Any, ...]:
    """Per (run, node): exclusive and inclusive seconds on the path, and the share of the run's
    path through the node. Returns (runs, nodes, kinds, exclusive, inclusive, weight, makespan);
    kept for the same frame (:func:`_cached`)."""
    return _cached("paths", h, iterations, lambda: _find_criticality_runs(h, iterations))


def _find_criticality_runs(h: pd.DataFrame, iterations: bool) -> tuple[Any, ...]:
    import numpy as np
    import pandas as pd

    from .paths import path_flows

    flows = path_flows(h)
    rows = flows.rows
    node, mapping = _keys(rows, iterations)
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


def _criticality_table(h: pd.DataFrame, iterations: bool, only: Any = None) -> pd.DataFrame:
    """The criticality table over the runs of ``h`` (``only``: over these run ids of it)."""
    import numpy as np
    import pandas as pd

    runs, nodes, kinds, exclusive, inclusive, weight, makespan = _criticality_runs(h, iterations)
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
    table = table[table["runs"] > 0]
    table.attrs["makespan_p50_s"] = p50
    return table


def node_runs_present(h: pd.DataFrame, iterations: bool, runs: list, nodes: list) -> Any:
    """A (runs × nodes) boolean matrix: the node has a row in the run."""
    import numpy as np
    import pandas as pd

    table = node_runs(h, iterations)
    pairs = pd.DataFrame({"run": table["run_id"].to_numpy(), "node": table["node"].to_numpy()})
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
    table = table.assign(period=period.array)
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
    z = (abs(16 − 8) − 0.5) / √12 = 2.165 (with the continuity correction), p = 2 (1 − Φ(z)):

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
    both = np.sort(np.concatenate([a, b], axis=1), axis=1)
    group = np.concatenate([np.zeros((len(both), 1), int), np.cumsum(both[:, 1:] != both[:, :-1], axis=1)], 1)
    sizes = np.zeros(both.shape)
    np.add.at(sizes, (np.repeat(np.arange(len(both)), both.shape[1]), group.ravel()), 1.0)
    ties = (sizes**3 - sizes).sum(axis=1)  # Σ over tie groups of t³ − t
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
    groups = list(table.groupby("node", sort=False))
    all_tests = _change_tests({node: g["seconds"].to_numpy(dtype=float) for node, g in groups}, window)
    for node, g in groups:
        x = g["seconds"].to_numpy(dtype=float)
        tests = all_tests.get(node)
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


def _change_tests(series: dict[str, Any], window: int) -> dict[str, list[tuple]]:
    """Per node, every split ``k`` of its times ``x`` with its test: (k, lo, hi, p, u, effect)
    comparing ``x[lo:k]`` with ``x[k:hi]``: ``window`` runs a side, fewer (down to
    ``window // 2``) near the ends. Tests of one shape are made together, across nodes."""
    import numpy as np

    out: dict[str, list[tuple]] = {}
    m = max(3, window // 2)
    shaped: dict[tuple[int, int], list[tuple[str, int, int, int]]] = {}  # (n1, n2) → (node, k, lo, hi)
    for node, x in series.items():
        t = len(x)
        if t < 2 * m:
            continue
        tests = out.setdefault(node, [])
        if t >= 2 * window:
            windows = np.lib.stride_tricks.sliding_window_view(x, 2 * window)
            u, p, r = (np.atleast_1d(v) for v in mann_whitney(windows[:, :window], windows[:, window:]))
            tests += [(j + window, j, j + 2 * window, p[j], u[j], r[j]) for j in range(len(p))]
        done = {k for k, *_ in tests}
        for k in range(m, t - m + 1):  # near the ends: the splits a full window on both sides misses
            if k not in done:
                lo, hi = max(0, k - window), min(t, k + window)
                shaped.setdefault((k - lo, hi - k), []).append((node, k, lo, hi))
    for items in shaped.values():
        a = np.array([series[node][lo:k] for node, k, lo, _ in items])
        b = np.array([series[node][k:hi] for node, k, _, hi in items])
        u, p, r = (np.atleast_1d(v) for v in mann_whitney(a, b))
        for (node, k, lo, hi), ui, pi, ri in zip(items, u, p, r):
            out[node].append((k, lo, hi, float(pi), float(ui), float(ri)))
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
    status = h["status"]
    fail = status.isin(FAILURES).to_numpy()
    ok = status.isin(("Success", "IgnoreFailed")).to_numpy()
    if "commit" in h.columns:
        commit = h["commit"].astype(object).where(h["commit"].notna(), "run:" + h["run_id"].astype(str))
    else:
        commit = "run:" + h["run_id"].astype(str)  # unknown commit: one per run
    node_code, node_names = pd.factorize(node)
    commit_code, _ = pd.factorize(commit)
    attempts = pd.DataFrame({"node": node_code, "commit": commit_code, "fail": fail, "ok": ok})
    attempts = attempts[fail | ok]
    by_commit = attempts.groupby(["node", "commit"], sort=False).agg(fail=("fail", "any"), ok=("ok", "any"))
    by_commit["mixed"] = by_commit["fail"] & by_commit["ok"]
    per_node = by_commit.groupby(level="node", sort=False).agg(
        commits=("mixed", "size"), flaky_commits=("mixed", "sum"), ever_failed=("fail", "any")
    )
    per_node.index = pd.Index(np.asarray(node_names, dtype=object)[per_node.index.to_numpy()], name="node")
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
    known = set(h["run_id"].astype(object).unique())
    table_all = node_runs(h, iterations)
    out = {}
    for label, part in (("before", a), ("after", b)):
        ids = set(part["run_id"].astype(object).unique())
        whole = ids <= known  # a slice of h: its runs' paths are h's
        source = h if whole else part
        rows = table_all[table_all["run_id"].isin(ids)] if whole else node_runs(part, iterations)
        runs = rows.groupby("node", sort=False)["seconds"]
        stats = pd.DataFrame({f"{label}_p50_s": runs.median(), f"{label}_p95_s": runs.quantile(0.95)})
        crit = _criticality_table(source, iterations, only=ids if whole else None)
        stats[f"{label}_criticality"] = crit["criticality"]
        stats[f"{label}_owned_s"] = crit["owned_s"]
        stats["kind"] = crit["kind"]
        out[label] = (stats, crit.attrs["makespan_p50_s"], len(ids))
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
