"""The Gantt chart of a run (matplotlib): lanes banded by stage and step group.

Conventions
-----------
- **One lane per step execution** (a step, or one iteration of a looped step), top to bottom in
  plan order; its attempts are bars on that lane, in the picture's status colours
  (:data:`~notebook_pipelines.views.outcomes.STATUS_STYLES`), ``#2``, ``#3`` on later attempts.
- **Waits between attempts** (retry intervals, manual interventions) are hatched bars between them.
- **Rollback steps** have a dashed border and ``↩`` before their name.
- **Stages and step groups are bands**, not envelope bars: each stage a shaded band across its
  lanes, labelled on the right; each step group a lighter band inside it, labelled at its top
  left. The **critical path** (``trace.pipeline.critical_path()``) is outlined in black.
- **Many lanes**: above ``max_lanes`` (60) lanes, each step group's steps are packed into the
  fewest lanes that keep them apart (first fit, by start time) and labelled by the group; if that
  is still too many, each stage's are. A 2,000-step trace then stays a chart of a few dozen
  labelled lanes; the slack and critical path are unchanged (they come from the trace).

The figure is a :class:`matplotlib.figure.Figure` made without pyplot (no global state; nothing
is shown twice); it displays itself as PNG in a notebook. Matplotlib is imported only here.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..definition.durations import format_duration
from .outcomes import STATUS_STYLES, UNKNOWN_STYLE

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["MAX_LANES", "figure_class", "gantt"]

#: above this many lanes, lanes are packed per step group (then per stage)
MAX_LANES = 60
_STAGE_BANDS = ("#eef2f7", "#f8f9fb")
_GROUP_BAND = "#dde6f0"


@functools.cache
def figure_class() -> type:
    """A ``Figure`` that shows itself as PNG (IPython's own matplotlib formatter wins if set)."""
    from matplotlib.figure import Figure

    class GanttFigure(Figure):
        """The Gantt chart of a run; ``savefig`` it, or let the notebook show it."""

        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            self.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
            return buffer.getvalue()

    GanttFigure.__module__ = __name__
    return GanttFigure


def _lanes(steps: pd.DataFrame, max_lanes: int) -> tuple[list[dict], str]:
    """Lanes (label, stage, groups, units) and how they were made: ``step``, ``group`` or ``stage``."""
    units: dict[tuple, dict] = {}
    for row in steps.itertuples():
        key = (row.fqn, row.iteration)
        unit = units.get(key)
        if unit is None:
            unit = units[key] = {
                "fqn": row.fqn,
                "name": row.step if row.iteration is None else f"{row.step} [{row.iteration}]",
                "stage": row.stage,
                "group": _group_of(row.fqn, row.step_group),
                "rollback": row.phase == "rollback",
                "rows": [],
            }
        unit["rows"].append(row)
    lanes = [
        {**u, "units": [u], "label": ("↩ " if u["rollback"] else "") + u["name"]} for u in units.values()
    ]
    if len(lanes) <= max_lanes:
        return lanes, "step"
    for level in ("group", "stage"):
        lanes = _packed(list(units.values()), level)
        if len(lanes) <= max_lanes:
            break
    return lanes, level


def _group_of(fqn: str, group: Any) -> str | None:
    """The FQN of the innermost step group holding step ``fqn`` (``None`` outside groups)."""
    if group is None:
        return None
    marker = f".steps.{group}."
    cut = fqn.rfind(marker)
    return fqn[: cut + len(marker) - 1] if cut >= 0 else None


def _packed(units: list[dict], level: str) -> list[dict]:
    """Each group's (or stage's) units packed into the fewest non-overlapping lanes, first fit."""
    owners: dict[Any, list[dict]] = {}
    for unit in units:
        owner = (unit["stage"], unit["group"] if level == "group" else None)
        owners.setdefault(owner, []).append(unit)
    lanes = []
    for (stage, group), members in owners.items():
        packed: list[tuple[float, dict]] = []  # (free from, lane)
        for unit in sorted(members, key=lambda u: min(r.start_s for r in u["rows"])):
            begin = min(r.start_s for r in unit["rows"])
            finish = max(r.end_s for r in unit["rows"])
            for index, (free, lane) in enumerate(packed):
                if free <= begin:
                    lane["units"].append(unit)
                    packed[index] = (finish, lane)
                    break
            else:
                name = (group or stage).rsplit(".", 1)[-1]
                lane = {"stage": stage, "group": group, "units": [unit], "rollback": False, "name": name}
                packed.append((finish, lane))
        for k, (_, lane) in enumerate(packed):
            lane["label"] = f"{lane['name']} ({len(members)} steps) {k + 1}/{len(packed)}"
            lanes.append(lane)
    return lanes


def gantt(
    trace: pd.DataFrame,
    *,
    critical: bool = True,
    max_lanes: int = MAX_LANES,
    title: str | None = None,
    width: float = 11.0,
) -> Any:
    """The Gantt chart of one run's trace (see the module notes for what it shows).

    Args:
        trace: one run's trace.
        critical: outline the critical path.
        max_lanes: above this many step lanes, pack lanes per step group (then per stage).
        title: the chart's title; ``None``: the pipeline, run id and makespan.
        width: the figure's width in inches (the height follows the lanes).

    Returns:
        A matplotlib ``Figure`` (it shows itself in a notebook; ``fig.savefig(path)`` writes it).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from ..analysis.timing import check_trace, critical_path

    check_trace(trace, "gantt()")
    if max_lanes < 1:
        raise ValueError(f"gantt(max_lanes={max_lanes!r}): give at least 1")
    timed = trace[trace["start_s"].notna() & trace["end_s"].notna()]
    steps = _step_rows(trace, timed)
    lanes, packing = _lanes(steps, max_lanes)
    on_path = set(critical_path(trace).index) if critical else set()

    n = max(1, len(lanes))
    figure = figure_class()(figsize=(width, min(0.26 * n + 1.8, 40)))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(1, 1, 1)
    labelled = n <= 120
    marks = _Marks.of(lanes, on_path, ax if labelled else None)
    _bands(ax, lanes, _blended_transform(ax))
    marks.draw(ax)
    end = float(timed["end_s"].max()) if len(timed) else 0.0
    _axes(ax, lanes, labelled, end)
    if title is None:
        title = _default_title(trace, end, packing, len(steps))
    ax.set_title(title, fontsize=10, loc="left", parse_math=False)
    handles = marks.legend()
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.11, 1.0), fontsize=8, frameon=False)
    figure.subplots_adjust(
        left=0.2, right=0.78, top=1 - 0.7 / figure.get_figheight(), bottom=0.6 / figure.get_figheight()
    )
    return figure


def _blended_transform(ax: Any) -> Any:
    """x in axes fractions (0 the left edge, 1 the right), y in lanes: where band labels go."""
    from matplotlib.transforms import blended_transform_factory

    return blended_transform_factory(ax.transAxes, ax.transData)


def _step_rows(trace: pd.DataFrame, timed: pd.DataFrame) -> pd.DataFrame:
    """The step executions that took time (a looped step drawn as its iterations), NaN as None."""
    from ..analysis.timing import looped_steps

    steps = timed[(timed["kind"] == "step") & (timed["attempt"] > 0)]
    steps = steps[~steps["fqn"].astype(object).isin(looped_steps(trace))]  # a looped step's iterations run
    steps = steps.astype({"iteration": object, "step_group": object, "stage": object, "phase": str})
    return steps.astype(object).where(steps.notna(), None)


@dataclass
class _Marks:
    """What the chart draws on its lanes, gathered in one pass: the attempts' bars, the waits
    between attempts, the critical path's outlines, and which statuses and rollbacks occur."""

    bars: dict[str, list] = field(
        default_factory=lambda: {"y": [], "left": [], "width": [], "fill": [], "edge": [], "style": []}
    )
    waits: dict[str, list] = field(default_factory=lambda: {"y": [], "left": [], "width": []})
    outline: dict[str, list] = field(default_factory=lambda: {"y": [], "left": [], "width": []})
    statuses: list[str] = field(default_factory=list)
    rollback_seen: bool = False

    @classmethod
    def of(cls, lanes: list[dict], on_path: set, ax: Any | None) -> _Marks:
        """Gather the marks of ``lanes``; with ``ax`` (lanes labelled), write ``#N`` on retries."""
        marks = cls()
        for y, lane in enumerate(lanes):
            for unit in lane["units"]:
                marks.rollback_seen |= unit["rollback"]
                previous = None
                for row in sorted(unit["rows"], key=lambda r: r.attempt):
                    marks._attempt(y, row, unit["rollback"], previous, row.Index in on_path)
                    if row.attempt > 1 and ax is not None:
                        ax.text(row.start_s, y, f" #{row.attempt}", va="center", ha="left", fontsize=7,
                                zorder=5, parse_math=False)  # fmt: skip
                    previous = row.end_s
        return marks

    def _attempt(self, y: int, row: Any, rollback: bool, previous: float | None, critical: bool) -> None:
        fill, edge, _ = STATUS_STYLES.get(str(row.status), UNKNOWN_STYLE)
        self.statuses.append(str(row.status))
        span = max(row.end_s - row.start_s, 0.0)
        for key, value in zip(
            ("y", "left", "width", "fill", "edge", "style"),
            (y, row.start_s, span, fill, edge, "--" if rollback else "-"),
        ):
            self.bars[key].append(value)
        if previous is not None and row.start_s > previous:
            self.waits["y"].append(y)
            self.waits["left"].append(previous)
            self.waits["width"].append(row.start_s - previous)
        if critical:
            self.outline["y"].append(y)
            self.outline["left"].append(row.start_s)
            self.outline["width"].append(span)

    def draw(self, ax: Any) -> None:
        """The bars (solid, dashed for rollback steps), the hatched waits, the critical outlines."""
        bars, waits, outline = self.bars, self.waits, self.outline
        for style in ("-", "--"):  # one call per border style (matplotlib takes one per call)
            chosen = [i for i, s in enumerate(bars["style"]) if s == style]
            if chosen:
                pick = {key: [bars[key][i] for i in chosen] for key in bars}
                ax.barh(pick["y"], pick["width"], left=pick["left"], height=0.62, color=pick["fill"],
                        edgecolor=pick["edge"], linestyle=style, linewidth=1.0, zorder=3)  # fmt: skip
        if waits["y"]:
            ax.barh(waits["y"], waits["width"], left=waits["left"], height=0.36, color="none",
                    edgecolor="#9e9e9e", hatch="////", linewidth=0.6, zorder=2)  # fmt: skip
        if outline["y"]:
            ax.barh(outline["y"], outline["width"], left=outline["left"], height=0.62, color="none",
                    edgecolor="#000000", linewidth=2.0, zorder=4)  # fmt: skip

    def legend(self) -> list:
        """The legend's entries: the statuses present, then critical path, waits, rollback."""
        from matplotlib.patches import Patch

        present = [s for s in STATUS_STYLES if s in self.statuses]
        handles = [
            Patch(facecolor=STATUS_STYLES[s][0], edgecolor=STATUS_STYLES[s][1], label=s) for s in present
        ]
        if self.outline["y"]:
            handles.append(Patch(facecolor="none", edgecolor="#000000", linewidth=2.0, label="critical path"))
        if self.waits["y"]:
            handles.append(
                Patch(facecolor="none", edgecolor="#9e9e9e", hatch="////", label="wait between attempts")
            )
        if self.rollback_seen:
            handles.append(
                Patch(facecolor="#ffffff", edgecolor="#616161", linestyle="--", label="↩ rollback step")
            )
        return handles


def _axes(ax: Any, lanes: list[dict], labelled: bool, end: float) -> None:
    """Lanes top to bottom (labelled when there are at most 120), seconds along x up to ``end``."""
    n = max(1, len(lanes))
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_yticks(range(len(lanes)))
    ax.set_yticklabels(
        [lane["label"] for lane in lanes] if labelled else [""] * len(lanes), fontsize=8, parse_math=False
    )
    ax.set_xlabel("seconds from the start of the run")
    ax.grid(axis="x", color="#e0e0e0", linewidth=0.6, zorder=0)
    ax.set_axisbelow(True)
    ax.set_xlim(0, max(end, 1e-9) * 1.01)


def _default_title(trace: pd.DataFrame, end: float, packing: str, executions: int) -> str:
    """The pipeline, the run id and the makespan; how lanes are packed when they are."""
    run = trace["run_id"].dropna().unique()
    pipeline = trace.attrs.get("pipeline", "pipeline")
    title = f"{pipeline} — run {run[0] if len(run) else '?'} — makespan {format_duration(end)}"
    if packing != "step":
        level = "step group" if packing == "group" else "stage"
        title += f"\n(lanes packed per {level}: {executions} step executions)"
    return title


def _bands(ax: Any, lanes: list[dict], transform: Any) -> None:
    """Shaded bands: a stage's lanes, and inside it each step group's, with their names."""

    def runs(key: str) -> list[tuple[Any, int, int]]:
        out: list[tuple[Any, int, int]] = []
        for y, lane in enumerate(lanes):
            value = (lane["stage"], lane[key]) if key == "group" else lane["stage"]
            if out and out[-1][0] == value:
                out[-1] = (value, out[-1][1], y)
            else:
                out.append((value, y, y))
        return out

    for k, (stage, first, last) in enumerate(runs("stage")):
        ax.axhspan(first - 0.5, last + 0.5, color=_STAGE_BANDS[k % 2], zorder=0, linewidth=0)
        ax.axhline(first - 0.5, color="#b0bec5", linewidth=0.8, zorder=1)
        ax.text(1.005, (first + last) / 2, f"stage {stage}", transform=transform, va="center", ha="left",
                fontsize=8, fontweight="bold", color="#37474f", clip_on=False, parse_math=False)  # fmt: skip
    for stage_group, first, last in runs("group"):
        group = stage_group[1]
        if group is None:
            continue
        ax.axhspan(
            first - 0.45,
            last + 0.45,
            xmin=0.0,
            xmax=1.0,
            color=_GROUP_BAND,
            alpha=0.55,
            zorder=0,
            linewidth=0,
        )
        name = f"step group {group.rsplit('.', 1)[-1]}"
        ax.text(0.003, first - 0.42, name, transform=transform, va="top", ha="left", fontsize=7,
                style="italic", color="#455a64", zorder=6, parse_math=False)  # fmt: skip
