"""The distribution of Monte Carlo results: :func:`summarize` (mean, spread and percentiles of the
makespan and of each stage) and :func:`distribution` (p50/p90/p95 with distribution-free
confidence intervals, and the most critical steps).

It stands on :mod:`~notebook_pipelines.engine.simulation` (the simulation result's frame) and
numpy/pandas; :mod:`.montecarlo` makes the results it reads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..engine.simulation import SimulationError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["PERCENTILES", "Distribution", "check_percentiles", "distribution", "summarize"]

#: The percentiles :func:`~notebook_pipelines.analysis.montecarlo.monte_carlo` and :func:`summarize`
#: report by default.
PERCENTILES = (50, 90, 95, 99)


def distribution(results: pd.DataFrame, *, ci: float = 0.95, top: int = 5) -> Distribution:
    """The makespan's p50/p90/p95 with order-statistic confidence intervals, and the most critical
    steps, of :func:`monte_carlo` results.

    The interval of the q-th quantile is distribution-free: ``[x_(l), x_(u)]``, the order
    statistics whose ranks bound a Binomial(n, q) count with probability ≥ ``ci`` (exact
    binomial tails; no bootstrap).

    >>> import pandas as pd
    >>> d = distribution(pd.DataFrame({"makespan_s": [float(x) for x in range(1, 101)]}))
    >>> d.percentiles.loc["p50"].tolist()
    [50.5, 40.0, 61.0]
    """
    import numpy as np
    import pandas as pd

    _check_results(results, "distribution")
    if isinstance(ci, bool) or not isinstance(ci, int | float) or not 0 < ci < 1:
        raise SimulationError(f"distribution(ci={ci!r}): give the confidence as a share, 0 < ci < 1 (0.95)")
    values = np.sort(results["makespan_s"].to_numpy(dtype=float))
    values = values[~np.isnan(values)]
    rows = {}
    for q in (50, 90, 95):
        lo, hi = _order_ci(len(values), q / 100, ci)
        rows[_pname(q)] = {
            "makespan_s": float(np.percentile(values, q)) if len(values) else math.nan,
            "low": float(values[lo - 1]) if lo else math.nan,
            "high": float(values[hi - 1]) if hi else math.nan,
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    crit = pd.Series(results.attrs.get("criticality") or {}, dtype=float, name="criticality")
    crit.index = (
        [str(k).rsplit(".", 1)[-1] for k in crit.index]
        if len(set(str(k).rsplit(".", 1)[-1] for k in crit.index)) == len(crit)
        else crit.index
    )
    out = Distribution(results.attrs, table, crit.sort_values(ascending=False, kind="stable"), ci, top)
    if "status" in results.columns:  # runs that failed end early: their makespan is the time to it
        statuses = results["status"].astype(str)
        out.unsuccessful = statuses[statuses != "Success"].value_counts().to_dict()
    return out


def _check_results(results: Any, verb: str) -> None:
    """Refuse what is not :func:`monte_carlo` results (no ``makespan_s`` column), saying so."""
    if "makespan_s" not in getattr(results, "columns", ()) or not hasattr(results, "attrs"):
        raise SimulationError(
            f"{verb}() reads monte_carlo results (a makespan_s column per run), not "
            f"{_what(results)}: nbp.{verb}(nbp.monte_carlo(p, h)) for a pipeline on a history h"
        )


def _what(results: Any) -> str:
    columns = list(getattr(results, "columns", []))
    if "fqn" in columns and "run_id" in columns:
        return "a trace or history"
    return f"a {type(results).__name__}" + (f" with columns {columns[:5]}" if columns else "")


def _order_ci(n: int, q: float, ci: float) -> tuple[int, int]:
    """1-based ranks ``(l, u)`` with P(x_(l) ≤ ξ_q ≤ x_(u)) ≥ ``ci`` (0s when n is too small)."""
    if n == 0:
        return 0, 0
    alpha = (1 - ci) / 2
    # the Binomial(n, q) cdf F(k) = P(B ≤ k), in logs (lgamma), cumulated
    logs = (
        [
            math.lgamma(n + 1)
            - math.lgamma(k + 1)
            - math.lgamma(n - k + 1)
            + (k * math.log(q) if k else 0.0)
            + ((n - k) * math.log1p(-q) if n - k else 0.0)
            for k in range(n + 1)
        ]
        if n <= 20_000
        else None
    )
    if logs is None:  # large n: the normal approximation of the ranks
        sd = math.sqrt(n * q * (1 - q))
        z = _z(1 - alpha)
        return max(1, math.floor(n * q - z * sd)), min(n, math.ceil(n * q + z * sd) + 1)
    top = max(logs)
    cdf, total = [], 0.0
    for value in logs:
        total += math.exp(value - top)
        cdf.append(total)
    cdf = [c / total for c in cdf]
    lo = 0
    for k in range(1, n + 1):  # the largest l with F(l-1) ≤ alpha
        if cdf[k - 1] <= alpha:
            lo = k
    hi = 0
    for k in range(1, n + 1):  # the smallest u with F(u-1) ≥ 1-alpha
        if cdf[k - 1] >= 1 - alpha:
            hi = k
            break
    return lo, hi


def _z(p: float) -> float:
    """The standard normal quantile (bisection on erf)."""
    lo, hi = -10.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


class Distribution:
    """What :func:`distribution` returns: ``percentiles`` (rows p50/p90/p95; ``makespan_s``,
    ``low``, ``high``), ``criticality`` (a Series, by step) and a one-paragraph repr that says
    which engine ran."""

    def __init__(self, attrs: dict, percentiles: Any, criticality: Any, ci: float, top: int):
        self.attrs, self.percentiles, self.criticality, self.ci, self.top = (
            attrs,
            percentiles,
            criticality,
            ci,
            top,
        )
        #: ``{status: runs}`` of the runs that did not succeed (their makespan is the time to
        #: their end), empty when all did
        self.unsuccessful: dict[str, int] = {}

    def __repr__(self) -> str:
        a = self.attrs
        engine = a.get("engine", "?")
        how = {
            "batch": "runs replay as a batch: the same seed gives the same result",
            "run": "each run replays with simulate(p, seed=row.seed)",
        }.get(a.get("replay"), "")
        why = f" ({a['engine_reason']})" if engine == "scheduler" and a.get("engine_reason") else ""
        lines = [
            f"monte_carlo of {a.get('pipeline')!r}: {a.get('runs', 0):,} runs "
            f"on the {engine} path{why}; {how}"
        ]
        for name, row in self.percentiles.iterrows():
            lines.append(
                f"  {name} makespan {row['makespan_s']:.6g} s  "
                f"({self.ci:.0%} CI {row['low']:.6g} – {row['high']:.6g})"
            )
        if self.unsuccessful:
            counts = ", ".join(f"{status} {n:,}" for status, n in self.unsuccessful.items())
            lines.append(
                f"  {sum(self.unsuccessful.values()):,} of {a.get('runs', 0):,} runs did not succeed "
                f"({counts}): their makespan, counted above, is the time to their end"
            )
        measured = a.get("measured_runs")
        if a.get("mode") == "joint" and measured:  # whole measured runs: no more values than runs
            tail = math.ceil(measured * 0.05 - 1e-9)  # the measured runs at or above the p95
            lines.append(
                f"  from {measured:,} measured runs (joint): the CIs count only this sampling; "
                f"the p95 rests on the slowest {tail:,} of them"
            )
        if len(self.criticality):
            shown = ", ".join(f"{k} {v:.0%}" for k, v in self.criticality.head(self.top).items())
            lines.append(f"  most critical: {shown}")
        return "\n".join(lines)


def summarize(results: pd.DataFrame, percentiles: Sequence[float] | None = None) -> pd.DataFrame:
    """Distribution of each time column of :func:`monte_carlo` results: one row per column.

    Columns: ``runs`` (non-missing values), ``mean``, ``std``, ``min``, ``p<q>`` for each
    percentile (linear interpolation), ``max``. Rows: ``makespan_s``, then ``stage:<id>``
    (runs where a stage never started are left out of its row).

    Args:
        results: what :func:`monte_carlo` returned (or any frame with those columns).
        percentiles: default: those given to :func:`monte_carlo`, else ``PERCENTILES``.

    >>> import pandas as pd
    >>> summarize(pd.DataFrame({"makespan_s": [1.0, 2.0, 3.0, 4.0]}), percentiles=(50,))
                runs  mean       std  min  p50  max
    makespan_s     4   2.5  1.290994  1.0  2.5  4.0
    """
    import numpy as np
    import pandas as pd

    _check_results(results, "summarize")
    if percentiles is None:
        percentiles = results.attrs.get("percentiles", PERCENTILES)
    check_percentiles(percentiles)
    columns = [c for c in results.columns if c == "makespan_s" or str(c).startswith("stage:")]
    rows = {}
    for column in columns:
        values = results[column].to_numpy(dtype=float)
        values = values[~np.isnan(values)]
        stats: dict[str, float] = {"runs": len(values)}
        if len(values):
            stats.update(
                mean=values.mean(), std=values.std(ddof=1) if len(values) > 1 else np.nan, min=values.min()
            )
            stats.update({_pname(q): float(np.percentile(values, q)) for q in percentiles})
            stats["max"] = values.max()
        rows[column] = stats
    names = ["runs", "mean", "std", "min", *(_pname(q) for q in percentiles), "max"]
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=names)
    table["runs"] = table["runs"].astype(int)
    return table


def _pname(q: float) -> str:
    return f"p{q:g}"


def check_percentiles(percentiles: Sequence[float]) -> None:
    """Refuse percentiles that are not numbers from 0 to 100 (``SimulationError`` naming them)."""
    bad = [q for q in percentiles if not (isinstance(q, int | float) and 0 <= q <= 100)]
    if bad:
        raise SimulationError(f"percentiles {bad} are not numbers between 0 and 100")
