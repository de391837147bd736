"""What one simulation says — its makespan and status, its stages' times, a failure before any
step ran — read from its trace or straight from its records (without building the trace).

:func:`~notebook_pipelines.analysis.whatif.compare` reads traces,
:func:`~notebook_pipelines.analysis.montecarlo.monte_carlo` records; both refuse a design whose
simulation fails before a step runs (:func:`unsimulatable`, :func:`refuse`).

It stands on :mod:`~notebook_pipelines.engine.simulation` (a simulation's records and trace).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..engine.simulation import SimulationError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "from_records",
    "outcome",
    "path_text",
    "refuse",
    "stage_durations",
    "unsimulatable",
    "unsimulatable_records",
]


def path_text(path: pd.DataFrame) -> str:
    parts = []
    for step, attempt in zip(path["step"].astype(str), path["attempt"]):
        parts.append(step if attempt == 1 else f"{step}#{attempt}")
    return " → ".join(parts)


def stage_durations(trace: pd.DataFrame) -> dict[str, float]:
    """Seconds per stage id (first to last row of the stage; 0 if skipped, NaN if never started)."""
    stages = trace[(trace["kind"] == "stage") & trace["iteration"].isna()]  # a looped stage: its own row
    if stages.empty:
        return {}
    spans = stages.groupby("stage", sort=False, observed=True).agg(
        start=("start_s", "min"), end=("end_s", "max")
    )
    return {f"stage:{sid}": float(row.end - row.start) for sid, row in spans.iterrows()}


def from_records(plan: Any, records: list[tuple]) -> tuple[dict[str, Any], dict[str, float]]:
    """(makespan and status, stage durations) straight from a simulation's records.

    The same numbers as :func:`outcome` and :func:`stage_durations` of the trace, without
    building it (each a :class:`~notebook_pipelines.engine.trace.Record`).
    """
    nodes = plan.nodes
    outcome: dict[str, Any] = {}
    spans: dict[str, list] = {}
    for record in records:
        if record.node >= len(nodes):
            continue  # an iteration of a looped node (R46): its looped node's row spans it
        node = nodes[record.node]
        if node.kind == "pipeline":
            outcome = {"makespan_s": record.end_s - record.start_s, "status": record.status}
        elif node.kind == "stage":
            span = spans.setdefault(f"stage:{node.id}", [math.inf, -math.inf])
            if record.start_s is not None:
                span[0] = min(span[0], record.start_s)
                span[1] = max(span[1], record.end_s)
    stages = {key: (end - begin if begin <= end else math.nan) for key, (begin, end) in spans.items()}
    return outcome, stages


def unsimulatable(trace: pd.DataFrame) -> tuple[str, str] | None:
    """``(fqn, error)`` of the first node that failed because the simulation could not evaluate
    it — an input, condition, spec or looping strategy that does not resolve — or ``None``.

    Such a failure is no executor's (its row has no ``worker``), unlike an injected failure or
    a timeout: it says the design cannot be timed as it stands, so a baseline that has one is
    refused instead of reporting the time to the failure.
    """
    bad = trace[(trace["status"] == "Failed") & trace["worker"].isna() & trace["error"].notna()]
    if bad.empty:
        return None
    row = bad.iloc[0]
    return str(row["fqn"]), str(row["error"])


def unsimulatable_records(plan: Any, records: list[tuple]) -> tuple[str, str] | None:
    """:func:`unsimulatable` of a simulation's records (no DataFrame)."""
    for record in records:
        if record.status == "Failed" and record.worker is None and record.error is not None:
            node = plan.nodes[record.node] if record.node < len(plan.nodes) else None
            return (node.fqn if node is not None else f"node {record.node}"), str(record.error)
    return None


def refuse(what: str, found: tuple[str, str]) -> SimulationError:
    fqn, error = found
    first = error.splitlines()[0] if error else "?"
    return SimulationError(
        f"{what} cannot be simulated as it stands: {fqn} failed before it ran: {first} — fix the "
        "design first (a step with a body declares the outputs others read: Step(..., outputs=['name']); "
        "or give values with outputs={step: {name: value}})"
    )


def outcome(trace: pd.DataFrame) -> dict[str, Any]:
    root = trace[trace["kind"] == "pipeline"].iloc[0]
    return {"makespan_s": float(root["end_s"] - root["start_s"]), "status": str(root["status"])}
