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
once, the same rules as ``trace.pipeline.critical_path()``, ties split evenly). This module is
the front door; it stands on :mod:`.node_runs` (the per-(run, node) table), :mod:`.criticality`,
:mod:`.regressions` and :mod:`.checks`, and re-exports their public functions.

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

from typing import TYPE_CHECKING, Any

from ..errors import TraceError
from .checks import check_history
from .criticality import criticality, criticality_table
from .node_runs import FAILURES, makespans, node_keys, node_runs, short_name
from .regressions import mann_whitney, regressions

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "FAILURES",
    "check_history",
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

_TOL = 1e-6
_PCT = (50, 90, 95)


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
    makespan = makespans(h)
    crit = criticality_table(h, iterations)["criticality"]
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
    out.insert(1, "step", [short_name(x) for x in out.index])
    out["critical_share"] = crit.reindex(out.index).fillna(0.0).to_numpy()
    out.index.name = "fqn"
    if out.empty:
        return out
    out["_order"] = range(len(out))
    out = out.sort_values(["corr_makespan", "_order"], ascending=[False, True], na_position="last")
    return out.drop(columns="_order")


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
        found = [f for f in available if short_name(f) == x or f.endswith("." + x)]
        if not found:
            close = ", ".join(sorted({short_name(f) for f in available})[:12])
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
    node, _ = node_keys(h, iterations)
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
    out.insert(1, "name", [short_name(x) for x in out.index])
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
        crit = criticality_table(source, iterations, only=ids if whole else None)
        stats[f"{label}_criticality"] = crit["criticality"]
        stats[f"{label}_owned_s"] = crit["owned_s"]
        stats["kind"] = crit["kind"]
        out[label] = (stats, crit.attrs["makespan_p50_s"], len(ids))
    first, second = out["before"][0], out["after"][0]
    index = list(dict.fromkeys([*first.index, *second.index]))
    table = pd.DataFrame(index=pd.Index(index, name="fqn"))
    table["kind"] = first["kind"].reindex(index).combine_first(second["kind"].reindex(index))
    table["name"] = [short_name(x) for x in index]
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
