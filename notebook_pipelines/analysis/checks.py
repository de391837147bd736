"""What every analysis checks first: that it was given a trace, of one run where it reads one.

Below :mod:`.timing` and :mod:`.history` (which both check their input, and one of which uses
the other), so that neither imports the other back.
"""

from __future__ import annotations

from typing import Any

from ..errors import TraceError

__all__ = ["REQUIRED", "check_trace"]

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
            shown = ", ".join(repr(str(r)) for r in runs[:3]) + (", …" if len(runs) > 3 else "")
            raise TraceError(
                f"{what} reads one run; this trace holds {len(runs)} ({shown}): select one, e.g. "
                f"trace[trace.run_id == {str(runs[0])!r}] (step_stats() reads many runs)"
            )
