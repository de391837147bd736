"""What every analysis checks first: that it was given a trace, of one run where it reads one
(:func:`check_trace`), or a history of one pipeline (:func:`check_history`).

Below :mod:`.timing` and the history analyses (which all check their input, and some of which
use the others), so that none imports another back.
"""

from __future__ import annotations

from typing import Any

from ..errors import TraceError

__all__ = ["REQUIRED", "check_history", "check_trace"]

#: the columns every analysis reads (a trace read with ``nbp.read_trace`` has them all)
REQUIRED = ("run_id", "fqn", "parent", "kind", "phase", "block", "iteration", "attempt", "status")
REQUIRED += ("start_s", "end_s")


def check_trace(trace: Any, what: str, *, one_run: bool = True) -> None:
    """Refuse what is not a trace (or, with ``one_run``, holds several runs), saying how to fix it."""
    columns = getattr(trace, "columns", None)
    if columns is None:
        raise TraceError(f"{what} reads a trace DataFrame, not {type(trace).__name__}")
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise TraceError(
            f"{what}: this DataFrame is not a trace: it lacks the columns {', '.join(missing)} "
            "(a trace saved as CSV or Parquet loads back with nbp.read_trace(path))"
        )
    if one_run:
        runs = trace["run_id"].dropna().unique()
        if len(runs) > 1:
            raise TraceError(
                f"{what} reads one run; this trace holds {len(runs)} ({_first_three(runs)}): select one, "
                f"e.g. trace[trace.run_id == {str(runs[0])!r}] (step_stats() reads many runs)"
            )


def check_history(h: Any, what: str) -> None:
    """Refuse what is not a history of one pipeline, saying how to fix it."""
    check_trace(h, what, one_run=False)
    if "pipeline" in h.columns:
        names = h["pipeline"].dropna().unique()
        if len(names) > 1:
            raise TraceError(
                f"{what} reads the history of one pipeline; this one holds {len(names)} "
                f"({_first_three(names)}): "
                f"select one, e.g. h[h.pipeline == {str(names[0])!r}]"
            )
    duplicated = h.duplicated(["run_id", "fqn", "iteration", "attempt", "start_s"])
    if duplicated.any():
        raise TraceError(
            f"{what}: some rows repeat in one run id — the runs share a run_id (simulate() names "
            "every run 'sim-<seed>'): give each run its own, simulate(p, seed=s, run_id=f'run-{s}')"
        )


def _first_three(values: Any) -> str:
    """``'a', 'b', 'c', …``: the first three of ``values``, quoted, and whether there are more."""
    return ", ".join(repr(str(x)) for x in values[:3]) + (", …" if len(values) > 3 else "")
