"""How each node of a run ended, and the colours a status is drawn in (pictures, Gantt, live view).

It stands on a trace frame and the durations' format; :mod:`.drawing`, :mod:`.gantt` and
:mod:`.live` read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..definition.durations import format_duration

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["STATUS_STYLES", "UNKNOWN_STYLE", "Outcome", "outcomes"]

#: status → (fill colour, border colour, extra node style); a dashed or dotted node has faded text
STATUS_STYLES: dict[str, tuple[str, str, str]] = {
    "Success": ("#c8e6c9", "#2e7d32", ""),
    "IgnoreFailed": ("#ffe082", "#ff8f00", ""),
    "Skipped": ("#eeeeee", "#9e9e9e", "dashed"),
    "Failed": ("#ffcdd2", "#c62828", ""),
    "Errored": ("#ffcdd2", "#b71c1c", ""),
    "Expired": ("#ffcc80", "#e65100", ""),
    "Aborted": ("#bcaaa4", "#6d1b1b", ""),
    "ApprovalRejected": ("#ffcdd2", "#c62828", ""),
    "Suspended": ("#e1bee7", "#6a1b9a", ""),
    "FreezeFailed": ("#ffcdd2", "#c62828", ""),
    "NotStarted": ("#ffffff", "#bdbdbd", "dotted"),
    "Running": ("#bbdefb", "#1565c0", ""),
    "Queued": ("#e3f2fd", "#64b5f6", ""),
    "InterventionWaiting": ("#e1bee7", "#6a1b9a", ""),
    "ResourceWaiting": ("#e3f2fd", "#64b5f6", ""),
}
UNKNOWN_STYLE = ("#ffffff", "#616161", "")
_QUIET = ("Skipped", "NotStarted")  # statuses shown without a duration


@dataclass(frozen=True)
class Outcome:
    """How a node ended in a run: its last attempt's status, its time and its attempts."""

    status: str
    seconds: float | None
    attempts: int
    action: str | None = None
    reason: str | None = None
    error: str | None = None

    def summary(self) -> str:
        """``'Success 30s ×3 (Retry)'``: status, time (not for Skipped/NotStarted), retries, action."""
        parts = [self.status]
        if self.status not in _QUIET and self.seconds is not None:
            parts.append(format_duration(self.seconds))
        if self.attempts > 1:
            parts.append(f"×{self.attempts}")
        if self.action:
            parts.append(f"({self.action})")
        return " ".join(parts)


def outcomes(trace: pd.DataFrame | None) -> dict[str, Outcome]:
    """``fqn → Outcome`` from a trace: vectorised groupby, then one pass to build the dict.

    The status is the node's last row (rows are ordered by plan position, then attempt); the time
    runs from its first start to its last end; the action is the last one recorded.
    """
    if trace is None or len(trace) == 0:
        return {}
    last = trace.drop_duplicates("fqn", keep="last").set_index("fqn")
    by = trace.groupby("fqn", sort=False)
    keys = last.index
    seconds = (by["end_s"].max() - by["start_s"].min()).reindex(keys)
    attempts = by["attempt"].max().reindex(keys)
    action = by["action"].last().reindex(keys)  # last non-null action

    def column(values: pd.Series) -> list:
        return values.astype(object).where(values.notna(), None).tolist()

    return {
        fqn: Outcome(str(st), sec, int(n), act, why, err)
        for fqn, st, sec, n, act, why, err in zip(
            keys,
            last["status"].astype(object),
            column(seconds),
            attempts.fillna(0),
            column(action),
            column(last["reason"]),
            column(last["error"]),
        )
    }
