"""The per-(run, node) table every analysis of a history aggregates, and what it is built from.

:func:`node_runs` gives one row per run and node (a node's time in a run: its first start to
its last end; attempts, queue, failed, retried, passed after a retry, skipped; the run
columns); :func:`node_keys` folds looping iterations into their looped node
(:func:`~notebook_pipelines.analysis.paths.fold_fqns`); :func:`cached` keeps the last few
answers per frame, so the analyses of one history in a row
(:mod:`~notebook_pipelines.analysis.history`) build the table and the paths once.

It stands on a history frame (:mod:`~notebook_pipelines.formats.history`'s columns),
:mod:`~notebook_pipelines.definition.statuses` and :mod:`.paths` (``fold_fqns``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..definition.statuses import SEVERITY

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["FAILURES", "cached", "makespans", "node_keys", "node_runs", "node_runs_present", "short_name"]

#: statuses that count as a failure of a node (its last attempt ended so)
FAILURES = frozenset(SEVERITY)


def node_keys(h: pd.DataFrame, iterations: bool) -> tuple[Any, dict[str, str]]:
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


_CACHE: dict[tuple, Any] = {}  # the last few answers per history (see cached)


def cached(name: str, h: pd.DataFrame, iterations: bool, make: Any) -> Any:
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
    return cached("node_runs", h, iterations, lambda: _node_runs(h, iterations))


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

    node, _ = node_keys(h, iterations)
    frame, run_names, node_names, kind_names = _attempts(h, node)
    per_unit = _unit_outcomes(frame)
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


def _attempts(h: pd.DataFrame, node: Any) -> tuple[pd.DataFrame, Any, Any, Any]:
    """Every row of ``h`` as codes and numbers (run, node, fqn, kind; outcome flags), with the
    run ids, nodes and kinds the codes stand for."""
    import numpy as np
    import pandas as pd

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
    return frame, run_names, node_names, kind_names


def _unit_outcomes(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (run, node): ``failed`` (an iteration's last attempt failed) and ``passed_after_retry``
    (an attempt failed and the last one succeeded)."""
    import pandas as pd

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
    return per_unit


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


def short_name(fqn: str) -> str:
    return str(fqn).rsplit(".", 1)[-1]


def makespans(h: pd.DataFrame) -> pd.Series:
    """Per run: the pipeline row's time, else first start to last end."""
    timed = h[h["start_s"].notna() & h["end_s"].notna()]
    spans = timed.groupby("run_id", sort=False, observed=True).agg(a=("start_s", "min"), b=("end_s", "max"))
    out = (spans["b"] - spans["a"]).copy()
    roots = timed[timed["kind"] == "pipeline"].groupby("run_id", sort=False, observed=True)
    roots = roots.agg(a=("start_s", "min"), b=("end_s", "max"))
    out.update(roots["b"] - roots["a"])
    out.index = out.index.astype(object)
    return out


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
