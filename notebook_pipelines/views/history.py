"""Pictures of a history (matplotlib, no pyplot): trend small multiples and the median run's Gantt.

- :func:`trend_figure` — a panel per node: the p50 of each period as a line, the p90–p95 band
  shaded, the runs per period as faint bars at the bottom; a shift found by ``regressions()``
  is marked by a dashed vertical line with its size.
- :func:`summary_gantt` — the *median run*: a lane per step (iterations folded), its bar from
  its median start for its median time, a whisker to its p95 time, coloured by criticality (the
  share of runs whose critical path goes through it), the figures on the right.

Both return a figure that shows itself as PNG in a notebook (the Gantt chart's class).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..definition.durations import format_duration
from .gantt import figure_class

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["report_html", "report_text", "short_name", "summary_gantt", "trend_figure"]

_CRIT = ("#cfd8dc", "#fff59d", "#ffcc80", "#ef6c00", "#b71c1c")


def short_name(fqn: str) -> str:
    """``stage / step`` from an fqn (``pipeline.stages.unit.spec.execution.steps.Run_make_test``
    → ``unit / Run_make_test``); a stage or the pipeline: its identifier.

    >>> short_name("pipeline.stages.unit.spec.execution.steps.Run_make_test")
    'unit / Run_make_test'
    """
    parts = str(fqn).split(".")
    if "stages" in parts[:-2]:
        stage = parts[parts.index("stages") + 1]
        return f"{stage} / {parts[-1]}"
    return parts[-1]


def _top_nodes(h: pd.DataFrame, count: int) -> list[str]:
    """The pipeline, then the steps owning the most seconds of the critical path."""
    from ..analysis.history import criticality

    table = criticality(h)
    steps = table[table["kind"] == "step"].sort_values("owned_s", ascending=False)
    roots = list(table.index[table["kind"] == "pipeline"])
    return roots[:1] + list(steps.index[: max(0, count - len(roots[:1]))])


def trend_figure(
    h: pd.DataFrame,
    nodes: Any = None,
    freq: str = "D",
    *,
    top: int = 6,
    columns: int = 3,
    regressions: bool = True,
) -> Any:
    """Small multiples of ``trend(nodes, freq)``: one panel per node (``nodes=None``: the
    pipeline and the ``top - 1`` steps that own the most of the critical path)."""
    from ..analysis.history import regressions as find_shifts
    from ..analysis.history import trend

    chosen = _top_nodes(h, top) if nodes is None else nodes
    table = trend(h, chosen, freq)
    names = list(dict.fromkeys(table.index.get_level_values("fqn")))
    shifts = find_shifts(h) if regressions else None
    rows = max(1, -(-len(names) // columns))
    figure = figure_class()(
        figsize=(4.2 * min(columns, max(1, len(names))), 2.6 * rows), layout="constrained"
    )
    axes = figure.subplots(rows, min(columns, max(1, len(names))), squeeze=False)
    for k, name in enumerate(names):
        ax = axes[k // columns][k % columns]
        part = table.xs(name, level="fqn")
        x = part.index.to_timestamp()
        ax.fill_between(x, part["p90_s"], part["p95_s"], color="#90caf9", alpha=0.5, label="p90–p95")
        ax.plot(x, part["p50_s"], color="#1565c0", lw=1.5, label="p50")
        ax.set_title(short_name(name), fontsize=10, loc="left")
        ax.set_ylim(bottom=0)
        ax.tick_params(labelsize=8)
        ax.yaxis.set_major_formatter(_seconds_formatter())
        if shifts is not None and name in shifts.index:
            row = shifts.loc[name]
            if row["change_at"] == row["change_at"]:
                ax.axvline(row["change_at"].tz_convert(None), color="#c62828", ls="--", lw=1)
                ax.text(row["change_at"].tz_convert(None), ax.get_ylim()[1] * 0.95,
                        f" {row['shift_pct']:+.0%}", color="#c62828", fontsize=8, va="top")  # fmt: skip
        for label in ax.get_xticklabels():
            label.set_rotation(30)
            label.set_ha("right")
    for k in range(len(names), rows * axes.shape[1]):
        axes[k // axes.shape[1]][k % axes.shape[1]].set_visible(False)
    if names:
        axes[0][0].legend(fontsize=7, loc="lower left")
    figure.suptitle(f"duration per {freq} period (p50, p90–p95 band)", fontsize=11)
    return figure


def _seconds_formatter() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: format_duration(max(0.0, float(v))))


def summary_gantt(h: pd.DataFrame, *, kinds: tuple[str, ...] = ("step",), title: str | None = None) -> Any:
    """The median run of a history: a lane per node (steps by default), a bar from its median
    start for its median time, a whisker to its p95 time, coloured by criticality."""
    import numpy as np

    from ..analysis.history import criticality, node_runs

    table = node_runs(h)
    table = table[table["kind"].isin(kinds) & table["seconds"].notna()]
    crit = criticality(h)["criticality"]
    by = table.groupby("node", sort=False)
    lanes = by.agg(start=("start_s", "median"), p50=("seconds", "median"), first=("order", "min"))
    lanes["p95"] = by["seconds"].quantile(0.95)
    lanes = lanes.sort_values(["start", "first"])
    n = len(lanes)
    figure = figure_class()(figsize=(10, 0.6 + 0.32 * max(n, 1)), layout="constrained")
    ax = figure.subplots()
    y = np.arange(n)
    colours = [_CRIT[min(4, int(crit.get(f, 0.0) * 5))] for f in lanes.index]
    ax.barh(y, lanes["p50"], left=lanes["start"], color=colours, edgecolor="#37474f", height=0.6)
    ax.errorbar(lanes["start"] + lanes["p50"], y, xerr=[np.zeros(n), lanes["p95"] - lanes["p50"]],
                fmt="none", ecolor="#37474f", capsize=3, lw=1)  # fmt: skip
    ax.set_yticks(y, [short_name(f) for f in lanes.index], fontsize=8)
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(_seconds_formatter())
    right = float((lanes["start"] + lanes["p95"]).max()) if n else 1.0
    for k, (f, row) in enumerate(lanes.iterrows()):
        ax.text(row["start"] + row["p95"] + right * 0.01, k,
                f"{format_duration(row['p50'])} (p95 {format_duration(row['p95'])}) · critical "
                f"{crit.get(f, 0.0):.0%}", va="center", fontsize=7, color="#37474f")  # fmt: skip
    ax.set_xlim(0, right * 1.45)
    runs = h["run_id"].nunique()
    ax.set_title(
        title or f"the median run of {runs} runs: median start and time, whisker to p95", fontsize=10
    )
    return figure


# -- the report ---------------------------------------------------------------------------------------
def report_text(h: pd.DataFrame, top: int = 8, window: int = 20) -> str:
    """A plain-text report of one pipeline's history: the steps owning most of the critical
    path, the regressions and the flaky nodes (what ``notebook-pipelines history report`` prints)."""
    from ..analysis.history import criticality, flaky, regressions

    crit = criticality(h)
    steps = crit[crit["kind"] == "step"].sort_values(["owned_s", "criticality"], ascending=False).head(top)
    lines = [_headline(h, crit)]
    lines.append(f"top {len(steps)} steps by their share of the critical path:")
    rows = [("step", "critical", "on the path", "owns of p50")]
    for fqn, row in steps.iterrows():
        rows.append(
            (
                short_name(fqn),
                f"{row['criticality']:.0%}",
                format_duration(row["exclusive_s"]),
                f"{row['share_of_p50']:.0%}",
            )
        )
    lines += _columns(rows)
    shifts = regressions(h, window)
    lines.append("regressions:" if len(shifts) else "regressions: none found")
    for fqn, row in shifts.iterrows():
        when = row["change_at"].strftime("%Y-%m-%d %H:%M") if row["change_at"] == row["change_at"] else "?"
        lines.append(
            f"  {short_name(fqn)}: {row['shift_pct']:+.0%} ({format_duration(row['before_p50_s'])} → "
            f"{format_duration(row['after_p50_s'])}) from {when} (run {row['run_id']}); makespan "
            f"{'+' if row['makespan_effect_s'] >= 0 else '−'}{format_duration(abs(row['makespan_effect_s']))}"
        )
    flakes = flaky(h)
    flakes = flakes[flakes["flaky"]]
    lines.append("flaky:" if len(flakes) else "flaky: none found")
    for fqn, row in flakes.head(top).iterrows():
        lines.append(
            f"  {short_name(fqn)}: both outcomes on {row['flaky_commits']} of {row['commits']} commits; "
            f"{row['passed_after_retry']} runs passed after a retry"
        )
    return "\n".join(lines)


def _headline(h: pd.DataFrame, crit: pd.DataFrame) -> str:
    first = h.iloc[0]
    name = str(first["pipeline"]) if "pipeline" in h.columns else "pipeline"
    source = f" ({first['source']})" if "source" in h.columns else ""
    created = h["created"].dropna() if "created" in h.columns else []
    span = f", {created.min():%Y-%m-%d} – {created.max():%Y-%m-%d}" if len(created) else ""
    p50 = crit.attrs.get("makespan_p50_s", float("nan"))
    return f"{name}{source}: {h['run_id'].nunique()} runs{span}, makespan p50 {format_duration(p50)}"


def _columns(rows: list[tuple]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def report_html(histories: list[pd.DataFrame], top: int = 8, window: int = 20) -> str:
    """A self-contained HTML page: per pipeline, its report, its structure coloured by
    criticality (SVG, when Graphviz and the structure can be drawn), the median run's Gantt and
    the trends (PNG, inline). Every name from the history is escaped."""
    import html

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>history report</title>",
        "<style>body{font-family:Helvetica,Arial,sans-serif;margin:2em;max-width:1200px}"
        "pre{background:#f6f8fa;padding:1em;overflow-x:auto}img,svg{max-width:100%}"
        "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:2px 6px}</style></head><body>",
        "<h1>History report</h1>",
    ]
    for h in histories:
        text = report_text(h, top, window)
        parts.append(f"<h2>{html.escape(text.splitlines()[0])}</h2>")
        parts.append(f"<pre>{html.escape(text)}</pre>")
        picture = _picture_svg(h)
        if picture:
            parts.append("<h3>The structure, coloured by criticality</h3>" + picture)
        parts.append("<h3>The median run</h3>" + _png(summary_gantt(h)))
        if "created" in h.columns and h["created"].notna().any():
            parts.append("<h3>Trends</h3>" + _png(trend_figure(h, freq="W")))
    parts.append("</body></html>")
    return "\n".join(parts)


def _png(figure: Any) -> str:
    import base64

    data = base64.b64encode(figure._repr_png_()).decode("ascii")
    return f"<p><img alt='chart' src='data:image/png;base64,{data}'></p>"


def _picture_svg(h: pd.DataFrame) -> str:
    """The structure rebuilt from the history, coloured by criticality, as SVG; "" if it cannot be."""
    import warnings

    from ..formats.history_tools import pipeline_from_history
    from .rendering import render

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipeline = pipeline_from_history(h)
            return render(pipeline, h, color_by="criticality").pipe(format="svg", encoding="utf-8")
    except Exception:  # the report goes on without the picture (no dot, a structure it cannot draw)
        return ""
