"""The command line's tables: a trace as a readable tree, a kept history per pipeline, seconds.

It stands on the durations' format and ``errors.printable``; a trace is any frame of the
trace schema.
"""

from __future__ import annotations

import math
from typing import Any

from ...definition.durations import format_duration
from ...errors import printable


def cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    try:
        import pandas as pd

        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    return str(value)


def seconds(value: float) -> str:
    """Seconds as the table shows them: ``'0s'``, ``'151µs'``, ``'1m 30s'`` (never a raw float)."""
    return format_duration(value) if value else "0s"


def format_table(trace: Any, width: int = 90) -> str:
    """A readable table of a trace: the tree of nodes, status, attempt, times and what happened.

    ``start`` and ``end`` are times since the run started, ``took`` the duration, each in the
    Harness form of :func:`~notebook_pipelines.definition.durations.format_duration`.
    """
    depth: dict[str, int] = {}
    for fqn, parent in zip(trace["fqn"], trace["parent"]):
        if fqn not in depth:
            depth[fqn] = depth.get(cell(parent), -1) + 1 if cell(parent) else 0
    header = ("node", "kind", "status", "try", "start", "end", "took", "note")
    rows = [header]
    for row in trace.itertuples(index=False):
        if row.kind == "pipeline":
            label = str(trace.attrs.get("pipeline") or "pipeline")
        else:
            label = row.fqn.rsplit(".", 1)[-1]
        if row.phase == "rollback":
            label += " (rollback)"
        note = " ".join(
            part
            for part in (
                cell(row.error_type) and f"[{cell(row.error_type)}]",
                cell(row.error),
                cell(row.action) and f"→ {cell(row.action)}",
                cell(row.reason) and f"({cell(row.reason)})" if cell(row.error) else cell(row.reason),
            )
            if part
        )
        note = printable(note)  # a control character from the pipeline shows escaped (\x1b…)
        if len(note) > width:
            note = note[: width - 1] + "…"
        start, end = cell(row.start_s), cell(row.end_s)
        took = seconds(row.duration_s) if start else ""
        rows.append(
            (
                "  " * depth.get(row.fqn, 0) + printable(label),
                str(row.kind).replace("_", " "),
                printable(str(row.status)),
                str(row.attempt) if row.attempt else "",
                seconds(float(start)) if start else "",
                seconds(float(end)) if end else "",
                took,
                note,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    right = {3, 4, 5, 6}
    lines = []
    for r in rows:
        cells = [r[i].rjust(widths[i]) if i in right else r[i].ljust(widths[i]) for i in range(len(header))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def print_history(frame: Any) -> None:
    """One line per pipeline: runs, date range, p50/p95 makespan, share of successful runs."""
    heads = frame[frame["kind"] == "pipeline"]
    lines = [("source", "pipeline", "runs", "first", "last", "p50", "p95", "success")]
    for (source, pipeline), runs in heads.groupby(["source", "pipeline"], sort=True, observed=True):
        created = runs["created"].dropna()
        spans = runs["duration_s"].dropna()
        ok = (runs["status"].astype(str) == "Success").mean()
        lines.append(
            (
                cell(source),
                cell(pipeline),
                str(runs["run_id"].nunique()),
                created.min().strftime("%Y-%m-%d %H:%M") if len(created) else "",
                created.max().strftime("%Y-%m-%d %H:%M") if len(created) else "",
                seconds(float(spans.quantile(0.5))) if len(spans) else "",
                seconds(float(spans.quantile(0.95))) if len(spans) else "",
                f"{ok:.0%}",
            )
        )
    widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
    for r in lines:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
