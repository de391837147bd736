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

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..definition.plan import Plan, PlanNode, compile_plan
from ..errors import DefinitionError, GraphvizMissing
from .drawing import (
    EDGE_DEFAULTS,
    MAX_FULL_NODES,
    NODE_DEFAULTS,
    SUMMARY_ITEMS,
    Drawing,
    dot_id,
    dot_label,
    iterations_of,
    loop_badge,
    status_attrs,
    summary_level,
)
from .outcomes import STATUS_STYLES, Outcome, outcomes
from .overlays import COLOR_BY, HISTORY_COLOR_BY, history_overlay, ink, run_overlay
from .picture import (
    FIT_WIDTH_PX,
    display_warning,
    fit_svg,
    natural_width_px,
    orient,
    picture_bundle,
    picture_class,
    pipe,
    stack_legend,
    text_bundle,
)

if TYPE_CHECKING:  # pragma: no cover
    import graphviz
    import pandas as pd

__all__ = [
    "COLOR_BY",
    "DIRECTIONS",
    "FIT_WIDTH_PX",
    "FORMATS",
    "MAX_FULL_NODES",
    "OUTLINE_LINES",
    "STATUS_STYLES",
    "SUMMARY_ITEMS",
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
#: the text outline of a summarised picture stops after this many lines (it says how many more)
OUTLINE_LINES = 200
FORMATS = (".svg", ".png", ".dot")


def _plan_to_draw(obj: Any) -> Plan:
    if isinstance(obj, Plan):
        return obj
    if hasattr(obj, "_pipeline_for_display"):
        return compile_plan(obj._pipeline_for_display())
    raise TypeError(f"cannot draw {type(obj).__name__}: pass a Pipeline, Stage, StepGroup or Plan")


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
        legend: ``None`` (the default) draws the status legend when a trace is given and the
            bins of ``color_by`` whenever it has them; ``True`` the status legend always;
            ``False`` no legend at all (a narrower picture: a history's labels carry figures).
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
    _check_render_options(direction, color_by, trace, iterations)
    history = color_by in HISTORY_COLOR_BY or (
        trace is not None and len(trace) and trace["run_id"].nunique() > 1
    )
    plan = _plan_to_draw(pipeline_or_plan)
    info = outcomes(trace) if not history else {}
    fills, scale, notes = _overlay(trace, info, color_by, bool(history))
    if history:
        fills, notes = _matched_by_id(plan, fills), _matched_by_id(plan, notes)
    root = plan.root
    expand = iterations == "expand" and trace is not None and len(trace)
    drawn = len(plan.nodes) - 1 + (int(trace["iteration"].notna().sum()) if expand else 0)
    summary = None if full or drawn <= MAX_FULL_NODES else summary_level(plan)
    if title is None:
        title = _default_title(plan, info, trace if history else None, notes)
    if summary is not None and title is not None:
        title = _summary_title(plan, title, summary)
    graph = picture_class()(name=dot_id(root.id), node_attr=NODE_DEFAULTS, edge_attr=EDGE_DEFAULTS)
    graph.attr(rankdir="LR" if direction == "auto" else direction)
    graph.oriented = direction != "auto"  # "auto" is settled when the picture is first drawn
    graph.attr(compound="true", newrank="true", nodesep="0.25", ranksep="0.35")
    graph.attr(fontname="Helvetica", fontsize="12", labelloc="t", label=dot_label(*(title or "").split("\n")))
    if size is not None:
        graph.attr(size=str(size))
    graph.outline_text = _outline(plan, info, OUTLINE_LINES if summary is not None else None)
    drawing = Drawing(info, fills=fills, notes=notes, summary=summary)
    if expand and summary is None:
        drawing.iterations = iterations_of(trace)
    drawing.plan(graph, root)
    graph.legend_ids = []  # stacked in one column whatever the direction (see stack_legend)
    if legend or (legend is None and info):
        _status_legend(graph, info)
    if scale and legend is not False:
        _overlay_legend(graph, color_by, scale)
    if direction in ("TB", "BT"):
        stack_legend(graph)
    drawing.add_edges(graph)
    return graph


def _matched_by_id(plan: Plan, figures: dict[str, Any]) -> dict[str, Any]:
    """A history's figures (by FQN), and for each plan node whose FQN the history lacks, those of
    the one measured node its id names, as ``durations=`` matches steps (a GitLab job that
    ``pipeline_from_history`` moved into one stage with its needs, D14)."""
    from ..engine.measured import matched_by_id

    out = dict(figures)
    nodes = (n for n in plan.nodes if n.kind != "pipeline")
    for index, source in matched_by_id(nodes, figures).items():
        out[plan.nodes[index].fqn] = figures[source]
    return out


def _check_render_options(direction: str, color_by: str, trace: Any, iterations: str) -> None:
    """Raise ``ValueError`` for an option :func:`render` does not know, or a ``color_by`` without a trace."""
    if direction != "auto" and direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r} is not one of auto, {', '.join(DIRECTIONS)}")
    if color_by not in COLOR_BY:
        raise ValueError(f"color_by {color_by!r} is not one of {', '.join(COLOR_BY)}")
    if color_by != "status" and trace is None:
        raise ValueError(f"color_by={color_by!r} colours a run: pass its trace, render(p, trace, color_by=…)")
    if iterations not in ("badge", "expand"):
        raise ValueError(f"iterations {iterations!r} is not one of badge, expand")


def _overlay(
    trace: Any, info: dict[str, Outcome], color_by: str, history: bool
) -> tuple[dict[str, str], list[tuple[str, str]], dict[str, Any]]:
    """``(fqn → fill, legend entries, fqn → label lines)``: a history's figures and overlay, or one
    run's ``duration``/``slack`` overlay (none for ``"status"``)."""
    if not history:
        fills, scale = run_overlay(trace, info, color_by) if color_by != "status" else ({}, [])
        return fills, scale, {}
    if color_by not in HISTORY_COLOR_BY and color_by != "status":
        raise ValueError(
            f"color_by={color_by!r} colours one run; this trace holds "
            f"{trace['run_id'].nunique()} runs: color_by one of {', '.join(HISTORY_COLOR_BY)}"
        )
    return history_overlay(trace, color_by)


def _default_title(plan: Plan, info: dict[str, Outcome], history: Any, notes: dict[str, Any]) -> str:
    """The pipeline's name; its status after a run, or how many runs a ``history`` holds."""
    root = plan.root
    title = root.name + (f" — {info[root.fqn].summary()}" if root.fqn in info else "")
    if history is not None:  # one fact a line: a long title widens the whole picture
        title += f" — {history['run_id'].nunique()} runs" + (f"\n{notes['']}" if "" in notes else "")
    needs = (getattr(plan.pipeline, "extra", None) or {}).get("needs")
    if needs and not any(n.order is not None for n in _blocks(plan)):  # needs not laid out as D14's
        title += f"\nits needs form a DAG: drawn by levels ({len(needs)} nodes' needs in extra['needs'])"
    return title


def _blocks(plan: Plan) -> Any:
    """The parallel blocks of ``plan``."""
    for node in plan.nodes:
        for item in (*node.items, *node.rollback):
            if item.kind == "parallel":
                yield item


def _summary_title(plan: Plan, title: str, summary: str) -> str:
    """``title`` and a line saying the picture is a summary (and how to draw every step)."""
    steps = sum(1 for n in plan.nodes if n.kind == "step")
    what = "step groups collapsed" if summary == "groups" else "stages collapsed"
    return (f"{title}\n" if title else "") + (
        f"summary of {steps:,} steps ({what}): render(..., full=True) draws every step"
    )


def _status_legend(graph: Any, info: dict[str, Outcome]) -> None:
    """The statuses present in the run (all of them without one), in :data:`STATUS_STYLES` order."""
    present = {o.status for o in info.values()} or set(STATUS_STYLES)
    ordered = [s for s in STATUS_STYLES if s in present] + sorted(present - set(STATUS_STYLES))
    with graph.subgraph(name="cluster_legend") as box:
        box.attr(label="legend", style="rounded", color="#bdbdbd", fontsize="10")
        for status in ordered:
            box.node(dot_id(f"legend_{status}"), label=dot_label(status), **status_attrs(status))
            graph.legend_ids.append(dot_id(f"legend_{status}"))


def _overlay_legend(graph: Any, color_by: str, scale: list[tuple[str, str]]) -> None:
    """The bins of a ``color_by`` overlay, one box each in its fill."""
    with graph.subgraph(name="cluster_legend_overlay") as box:
        box.attr(label=color_by, style="rounded", color="#bdbdbd", fontsize="10")
        for k, (label, fill) in enumerate(scale):
            box.node(f"legend_{color_by}_{k}", label=dot_label(label), fillcolor=fill, style="rounded,filled",
                     color="#90a4ae", fontcolor=ink(fill))  # fmt: skip
            graph.legend_ids.append(f"legend_{color_by}_{k}")


def to_svg(pipeline_or_plan: Any, trace: pd.DataFrame | None = None, **options: Any) -> str:
    """The SVG text of :func:`render`.

    Raises:
        GraphvizMissing: ``dot`` is not installed (the message says how to install it).
    """
    graph = render(pipeline_or_plan, trace, **options)
    return orient(graph) or pipe(graph, "svg").decode("utf-8")


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
        orient(graph)
        path.write_bytes(pipe(graph, suffix[1:]))
    return path


def mimebundle(pipeline: Any) -> dict:
    """What ``_repr_mimebundle_`` of a Pipeline, Stage or StepGroup returns; never raises.

    Normally :func:`picture_bundle` (SVG, PNG) with ``text/plain`` the repr and the outline. An
    invalid definition shows its problems as text; a missing ``dot`` shows the outline as text; both warn.
    """
    text = repr(pipeline)
    try:
        plan = _plan_to_draw(pipeline)
    except DefinitionError as err:
        display_warning(f"{text} cannot be drawn: {err}")
        return text_bundle(f"{text}\n{err}", str(err))
    try:
        graph = render(plan)
    except Exception as err:  # rich display never raises; say what went wrong instead
        display_warning(f"{text} cannot be drawn: {type(err).__name__}: {err}")
        return text_bundle(text, f"{text}\n{type(err).__name__}: {err}")
    bundle = picture_bundle(graph)
    bundle["text/plain"] = f"{text}\n{graph.outline_text}"
    return bundle


def outline(pipeline_or_plan: Any, trace: pd.DataFrame | None = None) -> str:
    """The plan as an indented tree; with ``trace``, each node's :meth:`Outcome.summary`."""
    return _outline(_plan_to_draw(pipeline_or_plan), outcomes(trace))


def _outline(plan: Plan, info: dict[str, Outcome], limit: int | None = None) -> str:
    rows: list[tuple[str, str]] = []

    def visit(node: PlanNode, depth: int, block: tuple[PlanNode, ...] = ()) -> None:
        if limit is not None and len(rows) > limit:
            return
        pad = "  " * depth
        if node.kind == "parallel":
            rows.append((f"{pad}parallel", ""))
            for child in node.items:
                visit(child, depth + 1, node.items)
            return
        name = node.id if node.name == node.id else f'{node.id} "{node.name}"'
        if node.strategy is not None:
            name += f" [⟳ {loop_badge(node.strategy)}]"
        if node.needs:  # D14: the members of its block it waits for
            name += f" (needs {', '.join(block[j].id for j in node.needs)})"
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
