"""The fills of ``render(…, color_by=)``: one run's duration or slack, or a history's criticality,
p95 or failure rate (with the figures each box of a history shows), and their legends.

It stands on :mod:`.outcomes` (the colours) and the durations' format; the numbers come from
:mod:`~notebook_pipelines.analysis.timing` (slack) and :mod:`~notebook_pipelines.analysis.history`
(criticality, step statistics), imported when asked.
"""

from __future__ import annotations

from typing import Any

from ..definition.durations import format_duration
from .outcomes import Outcome

#: what ``render(…, color_by=)`` can show of a history (many runs)
HISTORY_COLOR_BY = ("criticality", "p95", "failure_rate")
#: what ``render(…, color_by=)`` can show
COLOR_BY = ("status", "duration", "slack", *HISTORY_COLOR_BY)
#: light to dark: criticality in five bins (0–20 % … 80–100 %)
CRITICALITY_FILLS = ("#f1f8e9", "#fff59d", "#ffcc80", "#ef6c00", "#b71c1c")
#: light to dark: the fills of five duration bins
DURATION_FILLS = ("#fff7d6", "#fdd49e", "#fc8d59", "#d7301f", "#7f0000")
#: slack bins: critical, then under 10 %, 25 %, 50 % of the makespan, and more
SLACK_FILLS = ("#d32f2f", "#ffb74d", "#fff176", "#c5e1a5", "#81c784")


def ink(fill: str) -> str:
    """Dark text on a light fill, white on a dark one."""
    red, green, blue = (int(fill[i : i + 2], 16) for i in (1, 3, 5))
    return "#1b1b1b" if 0.299 * red + 0.587 * green + 0.114 * blue > 140 else "#ffffff"


def run_overlay(trace: Any, info: dict[str, Outcome], color_by: str) -> tuple[dict[str, str], list]:
    """``(fqn → fill, [(legend label, fill), …])`` of a ``duration`` or ``slack`` overlay."""
    steps = trace[trace["kind"] == "step"]
    ran = {str(f) for f in steps.loc[steps["start_s"].notna(), "fqn"]}
    if color_by == "duration":
        values = {f: info[f].seconds for f in ran if f in info and info[f].seconds is not None}
        top = max(values.values(), default=0.0) or 1.0
        edges = [top * k / 5 for k in range(6)]
        scale = [
            (f"{format_duration(edges[k])} – {format_duration(edges[k + 1])}", DURATION_FILLS[k])
            for k in range(5)
        ]
        fills = {f: DURATION_FILLS[min(4, int(v / top * 5))] for f, v in values.items()}
        return fills, scale
    import pandas as pd

    from ..analysis.timing import looped_steps, slack

    table = slack(trace)
    per_step = table.groupby("fqn", sort=False, observed=True)["slack_s"].min()
    looped = looped_steps(trace)
    if looped:  # a looped step's box (drawn once) takes its least slack iteration's colour
        parents = trace.loc[table.index, "parent"].astype(object)
        inner = table["slack_s"][parents.isin(looped).to_numpy()]
        per_step = pd.concat([per_step, inner.groupby(parents[inner.index], sort=False).min()])
    makespan = float(trace["end_s"].max() - trace["start_s"].min()) if len(trace) else 0.0
    limits = [0.1 * makespan, 0.25 * makespan, 0.5 * makespan]
    fills = {}
    for fqn, value in per_step.items():
        if value <= 1e-6:
            fills[str(fqn)] = SLACK_FILLS[0]
        else:
            fills[str(fqn)] = SLACK_FILLS[1 + sum(value >= limit for limit in limits)]
    # the legend box is titled "slack": short entries keep its column (and the picture) narrow
    scale = [("critical", SLACK_FILLS[0])]
    scale.append((f"under {format_duration(limits[0])}", SLACK_FILLS[1]))
    for k in range(2):
        scale.append((f"{format_duration(limits[k])} – {format_duration(limits[k + 1])}", SLACK_FILLS[k + 2]))
    scale.append((f"≥ {format_duration(limits[2])}", SLACK_FILLS[4]))
    return fills, scale


def _percent(x: float) -> str:
    return "—" if x != x else f"{100 * x:.0f}%"


def _rounded(seconds: float) -> str:
    """A measured time as a label shows it: whole seconds from 10 s on (``8m 2s``, not ``8m 1.5s``)."""
    return format_duration(round(seconds) if seconds >= 10 else round(seconds, 1))


def history_overlay(history: Any, color_by: str) -> tuple[dict[str, str], list, dict[str, Any]]:
    """``(fqn → fill, legend, fqn → label lines)`` of a history: criticality, p95 or failure rate."""
    from ..analysis.history import criticality, step_stats

    stats = step_stats(history)
    crit = criticality(history)
    notes: dict[str, Any] = {}  # "" → the makespan's line for the title
    for fqn, row in stats.iterrows():
        c = crit["criticality"].get(fqn, float("nan"))
        lines = [f"critical {_percent(c)}"]
        if row["p50_s"] == row["p50_s"]:
            lines.append(f"p50 {_rounded(row['p50_s'])} · p95 {_rounded(row['p95_s'])}")
        if row["failure_rate"] > 0:
            lines.append(f"fails {_percent(row['failure_rate'])}")
        if row["retry_rate"] > 0:
            lines.append(f"retried {_percent(row['retry_rate'])}")
        notes[str(fqn)] = lines
    pipeline = stats[stats["kind"] == "pipeline"]
    if len(pipeline):
        row = pipeline.iloc[0]
        notes[""] = f"makespan p50 {format_duration(row['p50_s'])}, p95 {format_duration(row['p95_s'])}"
    steps = stats[stats["kind"] == "step"]
    if color_by not in HISTORY_COLOR_BY:  # "status": the figures, no overlay
        return {}, [], notes
    if color_by == "criticality":
        values = crit["criticality"].reindex(steps.index).fillna(0.0)
        fills = {str(f): CRITICALITY_FILLS[min(4, int(v * 5))] for f, v in values.items()}
        # under the legend's title "criticality": short entries keep its column narrow
        scale = [(f"{20 * k}–{20 * (k + 1)}% of runs", CRITICALITY_FILLS[k]) for k in range(5)]
        return fills, scale, notes
    column = "p95_s" if color_by == "p95" else "failure_rate"
    values = steps[column].dropna()
    top = float(values.max()) if len(values) else 0.0
    top = top or 1.0
    edges = [top * k / 5 for k in range(6)]
    fills = {str(f): DURATION_FILLS[min(4, int(v / top * 5))] for f, v in values.items()}
    show = format_duration if color_by == "p95" else _percent
    scale = [(f"{show(edges[k])} – {show(edges[k + 1])}", DURATION_FILLS[k]) for k in range(5)]
    return fills, scale, notes
