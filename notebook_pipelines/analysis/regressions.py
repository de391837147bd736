"""Shifts in a node's duration across a history: where they happened, how large, and what they
cost the makespan (a Mann-Whitney U test on sliding windows, written here: no scipy).

It stands on :mod:`.node_runs` (durations per run and node), :mod:`.criticality` (the seconds
of the makespan a node owns) and :mod:`.checks`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..errors import TraceError
from .checks import check_history
from .criticality import criticality_runs
from .node_runs import node_runs, short_name

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["mann_whitney", "regressions"]

_TOL = 1e-6


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
    import pandas as pd

    check_history(h, "regressions()")
    if not isinstance(window, int) or isinstance(window, bool) or window < 3:
        raise TraceError(f"regressions(window={window!r}): window is a number of runs, at least 3")
    table = node_runs(h, iterations)
    table = table[table["seconds"].notna()]
    sort = ["created", "run_order"] if table["created"].notna().any() else ["run_order"]
    table = table.sort_values([*sort, "order"], kind="stable")
    runs, nodes, _, _, _, weight, _ = criticality_runs(h, iterations)
    run_pos = {r: i for i, r in enumerate(runs)}
    node_pos = {x: i for i, x in enumerate(nodes)}

    def criticality_in(node: str, later: Any) -> float:  # its criticality index in these runs
        if node not in node_pos:
            return 0.0
        rows = [run_pos[x] for x in later if x in run_pos]
        return float(weight[rows, node_pos[node]].mean()) if rows else 0.0

    groups = list(table.groupby("node", sort=False))
    all_tests = _change_tests({node: g["seconds"].to_numpy(dtype=float) for node, g in groups}, window)
    found = []
    for node, g in groups:
        shift = _shift(node, g, all_tests.get(node), criticality_in, alpha, min_shift, min_effect)
        if shift is not None:
            found.append(shift)
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


def _shift(
    node: str,
    g: pd.DataFrame,
    tests: list[tuple] | None,
    criticality_in: Any,
    alpha: float,
    min_shift: float,
    min_effect: float,
) -> dict[str, Any] | None:
    """The row of :func:`regressions` for one node's runs ``g`` (in run order), at the split
    whose test is strongest; None when that shift is not significant, large or clear enough."""
    import numpy as np

    if not tests:
        return None
    x = g["seconds"].to_numpy(dtype=float)
    k, lo, hi, p_best, u_best, r_best = min(tests, key=lambda t: (t[3], -abs(t[5])))
    b50, a50 = float(np.median(x[lo:k])), float(np.median(x[k:hi]))
    shift = a50 - b50
    pct = shift / b50 if b50 > _TOL else math.inf if shift > 0 else 0.0
    if p_best >= alpha or abs(r_best) < min_effect or abs(pct) < min_shift:
        return None
    first = g.iloc[k]
    crit = criticality_in(node, g["run_id"].iloc[k:hi])
    return {
        "fqn": node,
        "kind": g["kind"].iloc[0],
        "name": short_name(node),
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
