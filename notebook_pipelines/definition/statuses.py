"""The status vocabulary (R26, D4, D6): names, the positive set and severity.

A leaf module of the definition layer: the engine writes these names into the trace, the
references read them (``<+pipeline.stages.S.status>``), the analyses and views colour by them.
"""

from __future__ import annotations

__all__ = [
    "ABORTED",
    "EXPIRED",
    "FAILED",
    "IGNORE_FAILED",
    "NOT_STARTED",
    "POSITIVE",
    "SEVERITY",
    "SKIPPED",
    "STATUSES",
    "SUCCESS",
]

SUCCESS, FAILED, SKIPPED, ABORTED, EXPIRED = "Success", "Failed", "Skipped", "Aborted", "Expired"
IGNORE_FAILED, NOT_STARTED = "IgnoreFailed", "NotStarted"

#: Harness statuses (R26) plus ``NotStarted`` (D6), in the order of the trace's status category:
#: how a node ended (the positive ones first), then what a node not ended is doing.
STATUSES = (
    SUCCESS, IGNORE_FAILED, SKIPPED, FAILED, "Errored", EXPIRED, ABORTED, "ApprovalRejected", "Suspended",
    "FreezeFailed", NOT_STARTED, "Running", "Queued", "InterventionWaiting", "ResourceWaiting",
)  # fmt: skip
#: Statuses that count as success (R26, R30).
POSITIVE = frozenset({"Success", "Skipped", "IgnoreFailed", "Suspended"})
#: D4: the most severe non-positive child status decides a container's status.
SEVERITY = {"Aborted": 6, "Errored": 5, "Failed": 4, "Expired": 3, "ApprovalRejected": 2, "FreezeFailed": 1}
