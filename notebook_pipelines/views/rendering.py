"""Draw the plan of a pipeline with Graphviz, optionally coloured by the trace of a run.

The renderer walks the compiled :class:`~notebook_pipelines.definition.plan.Plan` — the very plan the
engine runs — so the picture shows exactly what will run.

Drawing conventions
-------------------
- **Serial items** (R4, R11) are a chain of edges, from a small filled ``start`` dot to a
  double-circle ``end``.
- **A parallel block** (R5, R12) fans out from the previous item to every sibling and fans back
  in to a small *join point*; the next item starts from that point. Sibling steps share one
  ``{rank=same}`` subgraph, so they stand side by side; parallel stages sit side by side too.
- **A step group** is a rounded, lightly filled cluster labelled with its name and
  "step group"; **a stage** is a bold cluster labelled with its name and type.
- **A rollback list** (R35, R3) is a separate lane inside its stage or group: a *dashed*
  cluster labelled "rollback", entered from its own point, with dashed edges and no visible
  edge from the main path (an invisible one keeps it level with the container's first items),
  because it only runs when a rollback action fires (R37).
- Node ids are the plan index (``n3``; clusters ``cluster_n3``; join points ``n3_p1``, ``n3_rp0``
  in a rollback lane), labels are display names (with a declared ``duration``), tooltips are FQNs.
  The same plan always gives byte-identical DOT: nothing depends on ``id()``, time or hashing.
- **With a trace**, each node shows its final status (its last attempt row): fill and border
  from :data:`STATUS_STYLES` (Skipped dashed, NotStarted dotted and faded), the time it took
  (first start to last end, retry waits included), ``×N`` for N attempts and the failure
  strategy action applied. Stage and group clusters take the status colour on their border and
  the status in their label; the legend lists the statuses present.
- **A looped node** (R48–R51) is drawn once, with a badge (``⟳ matrix 3×2 − 1, max 2``,
  ``⟳ repeat over hosts, max 1``). After a run, ``render(trace, iterations="expand")`` draws
  its iterations side by side in a dashed cluster, each coloured by its own rows (R46).
- **Barrier steps** (R55) that share a barrier are joined by a dashed, undirected edge across
  their lanes.
- **Rich display never raises**: without ``dot`` (or for an invalid definition) it warns and
  shows text; files and SVG without ``dot`` raise :class:`GraphvizMissing` with install hints.
- **A large plan is summarised** (more than :data:`MAX_FULL_NODES` stages, step groups and
  steps; Graphviz's layout grows faster than the drawing: 10,000 steps took 7–82 s and made
  10–15 MB of SVG). Each step group is one box with its step count (and, with a trace, its
  steps' statuses counted); a list of more than :data:`SUMMARY_ITEMS` items shows its first and
  last ones around a "… N more" box that counts what it hides; if that is still too much, each
  stage is one box. The title says so. ``render(p, full=True)`` draws every step whatever the
  size. The rich display of a Pipeline is this summary, so it stays quick and bounded, and its
  text outline is cut at :data:`OUTLINE_LINES` lines.

:func:`outline` is the same walk as indented text — what notebooks show next to pictures, since
SVG bytes differ between Graphviz versions:

>>> from notebook_pipelines import Pipeline
>>> p = Pipeline("release")
>>> with p.stage("build") as build:
...     _ = build.step("checkout", duration="5s")
...     with build.parallel():
...         _ = build.step("unit", duration="30s")
...         _ = build.step("lint", duration="10s")
>>> print(outline(p))
pipeline release
  stage build
    step checkout
    parallel
      step unit
      step lint
>>> print(outline(p, p.simulate()))
pipeline release    Success 35s
  stage build       Success 35s
    step checkout   Success 5s
    parallel
      step unit     Success 30s
      step lint     Success 10s
>>> render(p).source.count("->")
6
"""

from __future__ import annotations

import base64
import functools
import html
import itertools
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..definition.callables import is_sampler
from ..definition.durations import format_duration
from ..definition.plan import Plan, PlanNode, compile_plan
from ..errors import DefinitionError, GraphvizMissing

if TYPE_CHECKING:  # pragma: no cover
    import graphviz
    import pandas as pd

__all__ = [
    "COLOR_BY",
    "DIRECTIONS",
    "FIT_WIDTH_PX",
    "FORMATS",
    "STATUS_STYLES",
    "GraphvizMissing",
    "Outcome",
    "fit_svg",
    "mimebundle",
    "natural_width_px",
    "outcomes",
    "outline",
    "picture_bundle",
    "render",
    "to_file",
    "to_svg",
]

DIRECTIONS = ("LR", "TB", "RL", "BT")
#: above this many stages, step groups and steps (iterations drawn with ``iterations="expand"``
#: count too), :func:`render` draws a summary unless ``full=True``
MAX_FULL_NODES = 400
#: in a summary, a list of more items than this shows its first and last ones and "… N more"
SUMMARY_ITEMS = 10
#: the text outline of a summarised picture stops after this many lines (it says how many more)
OUTLINE_LINES = 200
FORMATS = (".svg", ".png", ".dot")
INSTALL_HINT = (
    "Graphviz's `dot` program was not found on PATH, so the picture cannot be drawn as SVG or PNG. "
    "Install Graphviz: `apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` (macOS) "
    "or `conda install -c conda-forge graphviz`. Without it, `render(p).source` (DOT text) and "
    "`outline(p)` still work."
)

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
_UNKNOWN_STYLE = ("#ffffff", "#616161", "")
_QUIET = ("Skipped", "NotStarted")  # statuses shown without a duration
_EDGE = "#78909c"


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


def _plan(obj: Any) -> Plan:
    if isinstance(obj, Plan):
        return obj
    if hasattr(obj, "_pipeline_for_display"):
        return compile_plan(obj._pipeline_for_display())
    raise TypeError(f"cannot draw {type(obj).__name__}: pass a Pipeline, Stage, StepGroup or Plan")


def _text(*lines: str | None, left: bool = False) -> str:
    """One Graphviz label from plain lines: special characters escaped, lines joined by ``\\n``
    (centred) or ended by ``\\l`` (left-justified)."""
    import graphviz

    parts = [graphviz.escape(line) for line in lines if line]
    return graphviz.nohtml("".join(f"{p}\\l" for p in parts) if left else "\\n".join(parts))


_PLAIN_POSTFIX = re.compile(r"[A-Za-z0-9_]*")


def _id(text: str) -> str:
    """A DOT id for any text (a status loaded from a file, a pipeline id): backslashes doubled, so
    a trailing one cannot escape the closing quote (``quote`` escapes the quotes); never HTML.

    >>> import graphviz
    >>> graphviz.quoting.quote(_id("legend_odd\\\\"))
    '"legend_odd\\\\\\\\"'
    """
    import graphviz

    return graphviz.nohtml(text.replace("\\", "\\\\"))


def render(
    pipeline_or_plan: Any,
    trace: pd.DataFrame | None = None,
    *,
    direction: str = "auto",
    legend: bool | None = None,
    title: str | None = None,
    color_by: str = "status",
    iterations: str = "badge",
    size: str | None = None,
    full: bool = False,
) -> graphviz.Digraph:
    """The Graphviz picture of a plan (see the module docstring for the conventions).

    Args:
        pipeline_or_plan: a Pipeline (validated and compiled), Stage, StepGroup or a Plan.
        trace: the trace DataFrame of a run of this plan, to colour nodes by status.
        direction: ``rankdir``: one of ``LR``, ``TB``, ``RL``, ``BT``; ``"auto"`` (the default)
            draws left to right, or top to bottom when the left-to-right picture would be too
            wide to read in a notebook and the top-to-bottom one reads larger (decided when
            the picture is first drawn; see :data:`FIT_WIDTH_PX`).
        legend: draw the status legend; ``None`` means: when a trace is given.
        title: the graph label; ``None`` means the pipeline's name (and status with a trace),
            ``""`` means none.
        color_by: what a step's fill shows: ``"status"`` (the default), ``"duration"`` (its
            time, first start to last end, in five equal bins up to the longest) or
            ``"slack"`` (how long it could grow without delaying the run: critical, then
            bins by share of the makespan); the border keeps the status colour, and a second
            legend gives the bins. Needs a trace for anything but ``"status"``. With a
            *history* (many runs: ``nbp.read_history``, traces concatenated) for ``trace``:
            ``"criticality"`` (the share of runs whose critical path goes through the step),
            ``"p95"`` (its 95th-percentile time) or ``"failure_rate"``; every step and stage
            then shows its figures in its label (criticality, p50/p95, failure rate), from
            :func:`~notebook_pipelines.analysis.history.step_stats` and ``criticality``.
        iterations: ``"badge"`` (a looped node drawn once, with a badge) or ``"expand"`` (with
            a trace: each iteration drawn, coloured by its rows).
        size: Graphviz's ``size`` attribute, the largest drawing in inches (``"8,5"``; a
            trailing ``!`` also scales small drawings up). ``None`` leaves the natural size; in
            a notebook a picture is scaled down to the output area's width either way.
        full: draw every step even when the plan has more than :data:`MAX_FULL_NODES` nodes
            (by default such a plan is summarised: groups collapsed, long lists shortened,
            with counts; see the module docstring).

    Raises:
        DefinitionError: the pipeline breaks a structural rule.
        ValueError: an unknown ``direction``.
    """
    if direction != "auto" and direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r} is not one of auto, {', '.join(DIRECTIONS)}")
    if color_by not in COLOR_BY:
        raise ValueError(f"color_by {color_by!r} is not one of {', '.join(COLOR_BY)}")
    if color_by != "status" and trace is None:
        raise ValueError(f"color_by={color_by!r} colours a run: pass its trace, render(p, trace, color_by=…)")
    history = color_by in HISTORY_COLOR_BY or (
        trace is not None and len(trace) and trace["run_id"].nunique() > 1
    )
    if iterations not in ("badge", "expand"):
        raise ValueError(f"iterations {iterations!r} is not one of badge, expand")
    plan = _plan(pipeline_or_plan)
    info = outcomes(trace) if not history else {}
    notes: dict[str, Any] = {}
    if history:
        if color_by not in HISTORY_COLOR_BY and color_by != "status":
            raise ValueError(
                f"color_by={color_by!r} colours one run; this trace holds "
                f"{trace['run_id'].nunique()} runs: color_by one of {', '.join(HISTORY_COLOR_BY)}"
            )
        fills, scale, notes = _history_overlay(trace, color_by)
    else:
        fills, scale = _overlay(trace, info, color_by) if color_by != "status" else ({}, [])
    root = plan.root
    expand = iterations == "expand" and trace is not None and len(trace)
    drawn = len(plan.nodes) - 1 + (int(trace["iteration"].notna().sum()) if expand else 0)
    summary = None if full or drawn <= MAX_FULL_NODES else _summary_level(plan)
    if title is None:
        title = root.name + (f" — {info[root.fqn].summary()}" if root.fqn in info else "")
        if history:  # one fact a line: a long title widens the whole picture
            title += f" — {trace['run_id'].nunique()} runs" + (f"\n{notes['']}" if "" in notes else "")
        needs = (getattr(plan.pipeline, "extra", None) or {}).get("needs")
        if needs:  # a DAG no layout expresses (nbp.pipeline_from_history): say how it is drawn
            title += f"\nits needs form a DAG: drawn by levels ({len(needs)} nodes' needs in extra['needs'])"
    if summary is not None and title is not None:
        steps = sum(1 for n in plan.nodes if n.kind == "step")
        what = "step groups collapsed" if summary == "groups" else "stages collapsed"
        title = (f"{title}\n" if title else "") + (
            f"summary of {steps:,} steps ({what}): render(..., full=True) draws every step"
        )
    graph = _picture_class()(name=_id(root.id), node_attr=_NODE_DEFAULTS, edge_attr=_EDGE_DEFAULTS)
    graph.attr(rankdir="LR" if direction == "auto" else direction)
    graph.oriented = direction != "auto"  # "auto" is settled when the picture is first drawn
    graph.attr(compound="true", newrank="true", nodesep="0.25", ranksep="0.35")
    graph.attr(fontname="Helvetica", fontsize="12", labelloc="t", label=_text(*(title or "").split("\n")))
    if size is not None:
        graph.attr(size=str(size))
    graph.outline_text = _outline(plan, info, OUTLINE_LINES if summary is not None else None)
    graph.node("start", tooltip=_text(f"{root.fqn} start"), shape="circle", width="0.2", **_TERMINAL)
    drawing = _Drawing(info)
    drawing.fills = fills
    drawing.notes = notes
    drawing.summary = summary
    if expand and summary is None:
        drawing.iterations = _iterations_of(trace)
    last = drawing.items(graph, root.items, "start", "n0", rollback=False)
    graph.node("end", tooltip=_text(f"{root.fqn} end"), shape="doublecircle", width="0.12", **_TERMINAL)
    drawing.edge(last, "end", rollback=False)
    graph.legend_ids = []  # stacked in one column whatever the direction (see _stack_legend)
    if legend or (legend is None and info):
        present = {o.status for o in info.values()} or set(STATUS_STYLES)
        ordered = [s for s in STATUS_STYLES if s in present] + sorted(present - set(STATUS_STYLES))
        with graph.subgraph(name="cluster_legend") as box:
            box.attr(label="legend", style="rounded", color="#bdbdbd", fontsize="10")
            for status in ordered:
                box.node(_id(f"legend_{status}"), label=_text(status), **_status_attrs(status))
                graph.legend_ids.append(_id(f"legend_{status}"))
    if scale:
        with graph.subgraph(name="cluster_legend_overlay") as box:
            box.attr(label=color_by, style="rounded", color="#bdbdbd", fontsize="10")
            for k, (label, fill) in enumerate(scale):
                box.node(f"legend_{color_by}_{k}", label=_text(label), fillcolor=fill, style="rounded,filled",
                         color="#90a4ae", fontcolor=_ink(fill))  # fmt: skip
                graph.legend_ids.append(f"legend_{color_by}_{k}")
    if direction in ("TB", "BT"):
        _stack_legend(graph)
    for tail, head, attrs in drawing.edges:
        graph.edge(tail, head, **attrs)
    for ref, nids in drawing.barriers.items():  # R55: participants of one barrier, across lanes
        for tail, head in itertools.pairwise(nids):
            graph.edge(tail, head, style="dashed", color="#6a1b9a", dir="none", constraint="false",
                       tooltip=_text(f"barrier {ref}"))  # fmt: skip
    return graph


def _summary_level(plan: Plan) -> str:
    """``"groups"`` (step groups collapsed, long lists shortened) when that draws at most
    :data:`MAX_FULL_NODES` boxes, else ``"stages"`` (each stage one box)."""
    boxes = 0
    stack = [plan.root]
    while stack:
        node = stack.pop()
        for items in (node.items or (), node.rollback or ()):
            for item in _shortened(items):
                for member in _shortened(item.items) if item.kind == "parallel" else (item,):
                    boxes += 1
                    if member.kind == "stage":
                        stack.append(member)
    return "groups" if boxes <= MAX_FULL_NODES else "stages"


class _More:
    """The items a summary leaves out of a list, drawn as one "… N more" box."""

    kind = "more"

    def __init__(self, hidden: list):
        self.hidden = hidden


def _shortened(items: Any) -> list:
    """``items``, or its first and last ones around a :class:`_More` when there are more than
    :data:`SUMMARY_ITEMS`."""
    items = list(items)
    if len(items) <= SUMMARY_ITEMS:
        return items
    head, tail = SUMMARY_ITEMS // 2, SUMMARY_ITEMS - SUMMARY_ITEMS // 2 - 1
    return [*items[:head], _More(items[head : len(items) - tail]), *items[len(items) - tail :]]


def _below(nodes: Any) -> list[PlanNode]:
    """The steps at or below ``nodes`` (plan nodes, parallel blocks), in plan order."""
    out = []
    stack = list(reversed(list(nodes)))
    while stack:
        node = stack.pop()
        if node.kind == "step":
            out.append(node)
        stack.extend(reversed([*(node.items or ()), *(node.rollback or ())]))
    return out


def _iterations_of(trace: pd.DataFrame) -> dict[str, list[str]]:
    """Looped node FQN → the FQNs of its iterations, in order (rows with an ``iteration``
    whose parent is that node)."""
    rows = trace[trace["iteration"].notna()]
    out: dict[str, list[str]] = {}
    for fqn, parent in zip(rows["fqn"], rows["parent"]):
        if isinstance(parent, str) and fqn.startswith(parent + "_") and "." not in fqn[len(parent) :]:
            listed = out.setdefault(parent, [])
            if fqn not in listed:
                listed.append(fqn)
    return out


_NODE_DEFAULTS = dict(
    shape="box",
    style="rounded,filled",
    fillcolor="#ffffff",
    color="#546e7a",
    fontname="Helvetica",
    fontsize="10",
    height="0.3",
)
_EDGE_DEFAULTS = {"color": _EDGE, "arrowsize": "0.6"}
# a terminal's height follows its width (fixedsize circle); the default node height would not
_TERMINAL = {"label": "", "style": "filled", "fillcolor": "#37474f", "fixedsize": "true", "height": "0"}
_LANE = {"style": "dashed,rounded", "color": "#9e9e9e", "bgcolor": "#ffffff", "fontcolor": "#616161"}


def _point(graph: Any, name: str, tooltip: str, color: str = _EDGE) -> None:
    """A small dot: a join point after a parallel block, or the entry of a rollback lane."""
    graph.node(name, label="", shape="point", width="0.06", color=color, tooltip=_text(tooltip))


def _status_attrs(status: str) -> dict[str, str]:
    fill, border, extra = STATUS_STYLES.get(status, _UNKNOWN_STYLE)
    style = "rounded,filled" + (f",{extra}" if extra else "")
    return {
        "fillcolor": fill,
        "color": border,
        "style": style,
        "fontcolor": "#757575" if extra else "#1b1b1b",
    }


class _Drawing:
    """One walk of the plan: declares nodes and clusters in place, collects edges for the root.

    Edges go to the root graph at the end because an edge written inside a cluster would pull
    both its ends into that cluster.
    """

    def __init__(self, info: dict[str, Outcome]):
        self.info = info
        self.fills: dict[str, str] = {}  # fqn → fill colour of an overlay (color_by)
        self.notes: dict[str, list[str]] = {}  # fqn → a history's figures for its label
        self.edges: list[tuple[str, str, dict[str, str]]] = []
        self.iterations: dict[str, list[str]] = {}  # looped FQN → iteration FQNs (expand)
        self.barriers: dict[str, list[str]] = {}  # barrier → the ids of its participants' nodes
        self.renames: list[tuple[str, str]] = []  # drawing an iteration: plan FQN prefix → its FQN
        self.suffix = ""  # appended to node ids inside an expanded iteration
        self.summary: str | None = None  # None (every step), "groups" or "stages" collapsed
        self._more = 0  # "… N more" boxes drawn so far (their ids)

    def fqn(self, node: PlanNode) -> str:
        fqn = node.fqn
        for old, new in self.renames:
            if fqn == old or fqn.startswith(old + "."):
                fqn = new + fqn[len(old) :]
        return fqn

    def edge(self, tail: str, head: str, rollback: bool) -> None:
        self.edges.append((tail, head, {"style": "dashed", "color": "#9e9e9e"} if rollback else {}))

    def items(self, graph: Any, items: tuple, prev: str, owner: str, rollback: bool) -> str:
        """Chain ``items`` after ``prev`` inside ``graph``; return the id the next item follows."""
        for item in items if self.summary is None else _shortened(items):
            if item.kind != "parallel":
                prev = self.item(graph, item, prev, rollback)
                continue
            join = f"{owner}_{'r' if rollback else ''}p{item.block}"
            members = item.items if self.summary is None else _shortened(item.items)
            if all(child.kind in ("step", "more") for child in members):
                with graph.subgraph() as row:
                    row.attr(rank="same")
                    exits = [self.item(row, child, prev, rollback) for child in members]
            else:
                exits = [self.item(graph, child, prev, rollback) for child in members]
            _point(graph, join, f"{item.fqn} (join)")
            for tail in exits:
                self.edge(tail, join, rollback)
            prev = join
        return prev

    def item(self, graph: Any, node: PlanNode, prev: str, rollback: bool, looped: bool = True) -> str:
        """Draw one step, step group or stage after ``prev``; return its exit id."""
        if isinstance(node, _More) or (
            self.summary is not None
            and (node.kind == "step_group" or (node.kind == "stage" and self.summary == "stages"))
        ):
            return self._collapsed(graph, node, prev, rollback)
        if looped and node.strategy is not None and self.iterations.get(self.fqn(node)):
            return self._expanded(graph, node, prev, rollback)
        nid, before = f"n{node.index}{self.suffix}", prev
        fqn = self.fqn(node)
        outcome = self.info.get(fqn)
        badge = f"⟳ {loop_badge(node.strategy)}" if looped and node.strategy is not None else None
        if node.kind == "step":
            lines = [node.name if fqn == node.fqn else fqn.rsplit(".", 1)[-1]]
            if badge:
                lines.append(badge)
            if node.barrier is not None:
                lines.append(f"barrier {node.barrier}")
                self.barriers.setdefault(str(node.barrier), []).append(nid)
            if outcome is None and fqn in self.notes:  # a history: its figures
                lines += self.notes[fqn]
                attrs = {}
                if fqn in self.fills:
                    attrs.update(fillcolor=self.fills[fqn], fontcolor=_ink(self.fills[fqn]))
            elif outcome is None:
                lines.append(_declared(node.duration))
                attrs = {}
            else:
                lines += _outcome_lines(outcome)
                attrs = _status_attrs(outcome.status)
                if node.fqn in self.fills:  # an overlay: the fill shows it, the border the status
                    attrs.update(fillcolor=self.fills[node.fqn], fontcolor=_ink(self.fills[node.fqn]))
            graph.node(nid, label=_text(*lines), tooltip=_tooltip(node, outcome), **attrs)
            self.edge(prev, nid, rollback)
            return nid
        with graph.subgraph(name=f"cluster_{nid}") as box:
            stage = node.kind == "stage"
            kind = f"{node.type} stage" if stage else "step group"
            if outcome is None:
                border, status = ("#37474f" if stage else "#90a4ae"), None
                if fqn in self.notes:  # a history's figures, one a line (a long line widens the box)
                    status = self.notes[fqn]
            else:
                border, status = STATUS_STYLES.get(outcome.status, _UNKNOWN_STYLE)[1], outcome.summary()
            if stage:
                box.attr(style="rounded,bold", color=border, penwidth="2", bgcolor="#ffffff")
            else:
                box.attr(style="rounded,filled", color=border, fillcolor="#f4f6fa", penwidth="1")
            name = node.name if fqn == node.fqn else fqn.rsplit(".", 1)[-1]
            box.attr(
                label=_text(
                    f"{name} — {kind}", badge, *(status if isinstance(status, list) else [status]), left=True
                ),
                tooltip=_tooltip(node, outcome),
            )
            box.attr(labeljust="l", fontsize="11", fontname="Helvetica")
            if not node.items:  # only in a plan compiled with check=False
                box.node(f"{nid}_empty", label="(empty)", style="dashed", fontcolor="#9e9e9e")
                self.edge(prev, f"{nid}_empty", rollback)
                prev = f"{nid}_empty"
            exit_id = self.items(box, node.items, prev, nid, rollback)
            if node.rollback:
                with box.subgraph(name=f"cluster_{nid}_rollback") as lane:
                    lane.attr(label="rollback", fontsize="10", tooltip=_text(f"{node.fqn} rollback"), **_LANE)
                    _point(lane, f"{nid}_rb", f"{node.fqn} rollback start", color="#9e9e9e")
                    self.items(lane, node.rollback, f"{nid}_rb", nid, rollback=True)
                # invisible: keeps the lane level with the container's first items
                self.edges.append((before, f"{nid}_rb", {"style": "invis"}))
        return exit_id

    def _collapsed(self, graph: Any, node: Any, prev: str, rollback: bool) -> str:
        """A summary's box for a whole step group or stage, or for the items a list leaves out
        (:class:`_More`): what it holds, counted (by status, with a trace)."""
        if isinstance(node, _More):
            self._more += 1
            nid, outcome = f"more{self._more}", None
            kinds = {"stage": 0, "step_group": 0, "step": 0}
            for hidden in node.hidden:
                for child in [hidden] if hidden.kind != "parallel" else hidden.items:
                    kinds[child.kind] = kinds.get(child.kind, 0) + 1
            named = [f"{n:,} {k.replace('_', ' ')}{'s' if n != 1 else ''}" for k, n in kinds.items() if n]
            lines = [f"… and {' and '.join(named)} more"]
            steps = _below(node.hidden)
            if not all(s.kind == "step" for s in node.hidden):
                lines.append(f"{len(steps):,} steps in all")
            attrs = {"style": "rounded,dashed", "color": "#9e9e9e", "fontcolor": "#424242"}
        else:
            nid = f"n{node.index}{self.suffix}"
            outcome = self.info.get(self.fqn(node))
            stage = node.kind == "stage"
            kind = f"{node.type} stage" if stage else "step group"
            lines = [f"{node.name} — {kind}"]
            if node.strategy is not None:
                lines.append(f"⟳ {loop_badge(node.strategy)}")
            steps = _below(node.items) + _below(node.rollback)
            lines.append(f"{len(steps):,} step{'s' if len(steps) != 1 else ''} (collapsed)")
            if outcome is not None:
                lines.append(outcome.summary())
            attrs = _status_attrs(outcome.status) if outcome is not None else {"fillcolor": "#f4f6fa"}
            attrs["penwidth"] = "2" if stage else "1"
        if self.info:  # the steps' own outcomes, counted by status
            counts: dict[str, int] = {}
            for step in steps:
                found = self.info.get(step.fqn)
                if found is not None:
                    counts[found.status] = counts.get(found.status, 0) + 1
            if counts:  # in the legend's order
                order = [s for s in STATUS_STYLES if s in counts] + sorted(set(counts) - set(STATUS_STYLES))
                lines.append(" · ".join(f"{status} {counts[status]:,}" for status in order))
        tooltip = _text(*lines) if isinstance(node, _More) else _tooltip(node, outcome)
        graph.node(nid, label=_text(*lines), tooltip=tooltip, **attrs)
        self.edge(prev, nid, rollback)
        return nid

    def _expanded(self, graph: Any, node: PlanNode, prev: str, rollback: bool) -> str:
        """A looped node after a run: its iterations side by side in a dashed cluster (R46)."""
        fqn = self.fqn(node)
        nid = f"n{node.index}{self.suffix}"
        outcome = self.info.get(fqn)
        with graph.subgraph(name=f"cluster_{nid}_loop") as box:
            status = outcome.summary() if outcome is not None else None
            box.attr(label=_text(f"⟳ {node.name} — {loop_badge(node.strategy)}", status, left=True),
                     style="dashed,rounded", color="#6a1b9a", labeljust="l", fontsize="10")  # fmt: skip
            exits = []
            for k, it_fqn in enumerate(self.iterations[fqn]):
                postfix = it_fqn[len(fqn) :]
                self.renames.append((fqn, it_fqn))
                # a loaded trace's postfix may hold any text (`:` splits an edge's id, `\` ends its
                # quotes): then the iteration's number, after a `-` no plain postfix has
                plain = _PLAIN_POSTFIX.fullmatch(postfix) is not None
                saved, self.suffix = self.suffix, f"{self.suffix}{postfix if plain else f'-{k}'}"
                exits.append(self.item(box, node, prev, rollback, looped=False))
                self.renames.pop()
                self.suffix = saved
            join = f"{nid}_loop_join"
            _point(box, join, f"{fqn} (iterations join)")
        for tail in exits:
            self.edge(tail, join, rollback)
        return join


def loop_badge(strategy: Any) -> str:
    from ..definition.looping import badge

    return badge(strategy)


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


def _ink(fill: str) -> str:
    """Dark text on a light fill, white on a dark one."""
    red, green, blue = (int(fill[i : i + 2], 16) for i in (1, 3, 5))
    return "#1b1b1b" if 0.299 * red + 0.587 * green + 0.114 * blue > 140 else "#ffffff"


def _overlay(trace: Any, info: dict[str, Outcome], color_by: str) -> tuple[dict[str, str], list]:
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


def _history_overlay(history: Any, color_by: str) -> tuple[dict[str, str], list, dict[str, Any]]:
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


def _declared(duration: Any) -> str | None:
    """A step's declared duration as its box shows it: ``30s``, or ``sampled`` for a sampler."""
    if duration is None:
        return None
    return "sampled" if is_sampler(duration) else format_duration(duration)


def _outcome_lines(outcome: Outcome) -> list[str]:
    if outcome.status == "Skipped":
        return ["skipped"]
    if outcome.status == "NotStarted":
        return ["not started"]
    time = format_duration(outcome.seconds) + (f" ×{outcome.attempts}" if outcome.attempts > 1 else "")
    return [line for line in (time.strip(), outcome.action) if line]


def _tooltip(node: PlanNode, outcome: Outcome | None) -> str:
    if outcome is None:
        return _text(node.fqn)
    return _text(node.fqn, outcome.summary(), outcome.reason, outcome.error)


#: what :meth:`Picture.save` writes, by the file name's suffix: Graphviz's output formats, or DOT
SAVE_FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot", ".gv": "dot"}


@functools.cache
def _picture_class() -> type:
    """``graphviz.Digraph`` whose rich display is :func:`picture_bundle`: SVG scaled to the output
    area, PNG for untrusted notebooks, the outline as ``text/plain``; text when ``dot`` is missing."""
    import graphviz

    class Picture(graphviz.Digraph):
        """The picture of a pipeline (or of a run): a ``graphviz.Digraph`` that displays itself in a
        notebook and saves itself from a script.

        - ``picture.save("release.svg")``: the file's suffix picks the format: ``.svg``,
          ``.png``, ``.pdf`` (drawn by Graphviz's ``dot``) or ``.dot``/``.gv`` (the DOT text);
        - ``picture.source``: the DOT text;
        - ``picture.outline``: the plan as an indented text tree (with a run's outcome per node);
        - ``repr(picture)``: the outline under a one-line header (what a terminal shows).
        """

        outline_text = ""

        @property
        def outline(self) -> str:
            """The plan as an indented text tree; after a run, each node's status and time."""
            return self.outline_text

        def save(
            self,
            filename: str | Path | None = None,
            directory: str | Path | None = None,
            *,
            skip_existing: bool | None = False,
        ) -> Any:
            """Write the picture to ``filename`` and return its path (a :class:`~pathlib.Path`).

            The suffix picks the format: ``.svg``, ``.png`` or ``.pdf`` (drawn by Graphviz's
            ``dot``), ``.dot`` or ``.gv`` (the DOT text, :attr:`source`).

            Raises:
                ValueError: another suffix (the message lists the ones that work).
                GraphvizMissing: ``.svg``/``.png``/``.pdf`` without Graphviz's ``dot`` installed.
            """
            if filename is None or skip_existing is None:  # graphviz's own render() saves the DOT here
                return super().save(filename, directory=directory, skip_existing=skip_existing)
            path = Path(directory or ".") / Path(filename)
            fmt = SAVE_FORMATS.get(path.suffix.lower())
            if fmt is None:
                raise ValueError(
                    f"cannot save the picture as {str(path)!r}: the file name must end in one of "
                    f"{', '.join(SAVE_FORMATS)}"
                )
            if skip_existing and path.exists():
                return path
            if fmt != "dot":
                _orient(self)  # direction="auto" settles as in a notebook
            data = self.source.encode("utf-8") if fmt == "dot" else _pipe(self, fmt)
            path.write_bytes(data)
            return path

        def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> dict:
            return picture_bundle(self)

        def __repr__(self) -> str:
            head = f"<Picture {self.name!r}: .save('x.svg' | 'x.png' | 'x.pdf'), .source (DOT), .outline>"
            return f"{head}\n{self.outline_text}" if self.outline_text else head

    Picture.__module__ = __name__
    Picture.__qualname__ = "Picture"
    return Picture


_SVG_SIZE = re.compile(r'<svg\b([^>]*?)\swidth="([0-9.]+)pt"\s+height="([0-9.]+)pt"')

#: the width, in CSS pixels, of a notebook's output area in a 1024 px wide JupyterLab 4 with its
#: file browser open (592 px, measured by tests/browser/test_course_at_1024.py): what a picture
#: can take before it is scaled down
FIT_WIDTH_PX = 590
#: the smallest scale at which a node's label (10 pt, 13.3 px) still reads at 11 px
_READABLE_SCALE = 11 / (10 * 4 / 3)


def fit_svg(svg: str) -> str:
    """``svg`` at its natural size, scaled down (never up) to the width of its container.

    Graphviz writes a fixed ``width``/``height`` in points: kept, they give the picture its
    natural size (a small pipeline is not blown up to the output's width, whether the SVG is
    inline or in an ``<img>``, as JupyterLab shows it); ``max-width: 100%`` with the
    ``viewBox`` shrinks a wide one in proportion.

    >>> fit_svg('<svg width="900pt" height="100pt" viewBox="0 0 900 100">')
    '<svg width="900pt" height="100pt" style="max-width: 100%; height: auto" viewBox="0 0 900 100">'
    """
    return _SVG_SIZE.sub(
        r'<svg\1 width="\2pt" height="\3pt" style="max-width: 100%; height: auto"', svg, count=1
    )


def natural_width_px(svg: str) -> float:
    """The width of an SVG from Graphviz at its natural size, in CSS pixels (1 pt = 4/3 px)."""
    found = _SVG_SIZE.search(svg)
    return float(found.group(2)) * 4 / 3 if found else 0.0


def _scale(svg: str) -> float:
    """How much a picture is scaled down to fit :data:`FIT_WIDTH_PX` (1: not at all)."""
    width = natural_width_px(svg)
    return min(1.0, FIT_WIDTH_PX / width) if width else 1.0


def _stack_legend(graph: Any) -> int:
    """Top to bottom, nodes of one rank stand side by side: chain the legend's entries with
    invisible edges so they stand in one column, as they do left to right. Returns the number
    of statements added to the graph's body."""
    ids = getattr(graph, "legend_ids", [])
    for tail, head in itertools.pairwise(ids):
        graph.edge(tail, head, style="invis")
    return max(0, len(ids) - 1)


def _orient(graph: Any) -> str | None:
    """Settle ``direction="auto"``: left to right unless that is scaled below a readable size
    and top to bottom reads larger. Returns the SVG of the chosen direction (None: not drawn)."""
    if getattr(graph, "oriented", True):
        return None
    graph.oriented = True
    wide = _pipe(graph, "svg").decode("utf-8")
    if _scale(wide) >= _READABLE_SCALE:
        return wide
    graph.body.append("\trankdir=TB\n")  # a later root attribute statement wins
    added = 1 + _stack_legend(graph)
    tall = _pipe(graph, "svg").decode("utf-8")
    if _scale(tall) > _scale(wide):
        return tall
    del graph.body[-added:]
    return wide


def picture_bundle(graph: Any) -> dict:
    """The rich display of a picture; never raises.

    ``image/svg+xml`` (scaled by :func:`fit_svg`), ``image/png`` (JupyterLab shows no SVG of an
    untrusted notebook, a PNG it does) and ``text/plain`` the outline (what a terminal, a
    diff or a screen reader shows). Without ``dot``: the outline as text, with a warning.
    """
    plain = getattr(graph, "outline_text", "") or graph.source
    try:
        svg = _orient(graph) or _pipe(graph, "svg").decode("utf-8")
    except GraphvizMissing as err:
        _warn(str(err))
        return _text_bundle(plain, plain)
    except Exception as err:  # rich display never raises; say what went wrong instead
        _warn(f"the picture cannot be drawn: {type(err).__name__}: {err}")
        return _text_bundle(plain, f"{plain}\n{type(err).__name__}: {err}")
    bundle = {"image/svg+xml": fit_svg(svg), "text/plain": plain}
    try:
        bundle["image/png"] = base64.b64encode(_pipe(graph, "png")).decode("ascii")
    except Exception:  # a Graphviz built without PNG still gives the SVG
        pass
    return bundle


def _pipe(graph: Any, fmt: str) -> bytes:
    import graphviz

    try:
        return graph.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise GraphvizMissing(INSTALL_HINT) from None


def to_svg(pipeline_or_plan: Any, trace: pd.DataFrame | None = None, **options: Any) -> str:
    """The SVG text of :func:`render`.

    Raises:
        GraphvizMissing: ``dot`` is not installed (the message says how to install it).
    """
    graph = render(pipeline_or_plan, trace, **options)
    return _orient(graph) or _pipe(graph, "svg").decode("utf-8")


def to_file(pipeline: Any, path: str | Path, trace: pd.DataFrame | None = None, **options: Any) -> Path:
    """Write the picture to ``path``: ``.svg`` or ``.png`` (needs ``dot``) or ``.dot`` (DOT text).

    Raises:
        ValueError: the suffix is not one of ``FORMATS``.
        GraphvizMissing: ``.svg``/``.png`` without ``dot`` installed.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"cannot write {str(path)!r}: the file name must end in one of {', '.join(FORMATS)}")
    graph = render(pipeline, trace, **options)
    if suffix == ".dot":
        path.write_text(graph.source, encoding="utf-8")
    else:
        _orient(graph)
        path.write_bytes(_pipe(graph, suffix[1:]))
    return path


def _warn(message: str) -> None:
    # the default warnings filter shows a given message once per place
    warnings.warn(message, UserWarning, stacklevel=3)


def _text_bundle(plain: str, pre: str) -> dict:
    return {"text/plain": plain, "text/html": f"<pre>{html.escape(pre)}</pre>"}


def mimebundle(pipeline: Any) -> dict:
    """What ``_repr_mimebundle_`` of a Pipeline, Stage or StepGroup returns; never raises.

    Normally :func:`picture_bundle` (SVG, PNG) with ``text/plain`` the repr and the outline. An
    invalid definition shows its problems as text; a missing ``dot`` shows the outline as text; both warn.
    """
    text = repr(pipeline)
    try:
        plan = _plan(pipeline)
    except DefinitionError as err:
        _warn(f"{text} cannot be drawn: {err}")
        return _text_bundle(f"{text}\n{err}", str(err))
    try:
        graph = render(plan)
    except Exception as err:  # rich display never raises; say what went wrong instead
        _warn(f"{text} cannot be drawn: {type(err).__name__}: {err}")
        return _text_bundle(text, f"{text}\n{type(err).__name__}: {err}")
    bundle = picture_bundle(graph)
    bundle["text/plain"] = f"{text}\n{graph.outline_text}"
    return bundle


def outline(pipeline_or_plan: Any, trace: pd.DataFrame | None = None) -> str:
    """The plan as an indented tree; with ``trace``, each node's :meth:`Outcome.summary`."""
    return _outline(_plan(pipeline_or_plan), outcomes(trace))


def _outline(plan: Plan, info: dict[str, Outcome], limit: int | None = None) -> str:
    rows: list[tuple[str, str]] = []

    def visit(node: PlanNode, depth: int) -> None:
        if limit is not None and len(rows) > limit:
            return
        pad = "  " * depth
        if node.kind == "parallel":
            rows.append((f"{pad}parallel", ""))
            for child in node.items:
                visit(child, depth + 1)
            return
        name = node.id if node.name == node.id else f'{node.id} "{node.name}"'
        if node.strategy is not None:
            name += f" [⟳ {loop_badge(node.strategy)}]"
        outcome = info.get(node.fqn)
        rows.append((f"{pad}{node.kind} {name}", outcome.summary() if outcome else ""))
        for item in node.items or ():
            visit(item, depth + 1)
        if node.rollback:
            rows.append((f"{pad}  rollback", ""))
            for item in node.rollback:
                visit(item, depth + 2)

    visit(plan.root, 0)
    if limit is not None and len(rows) > limit:
        rows = rows[:limit]
        rows.append((f"… the outline stops after {limit} lines (outline(p) gives all of it)", ""))
    width = max((len(left) for left, right in rows if right), default=0)
    return "\n".join(f"{left.ljust(width)}  {right}" if right else left for left, right in rows)
