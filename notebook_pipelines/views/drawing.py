"""One walk of the plan into Graphviz nodes, clusters and edges (:class:`Drawing`), with what a
summary collapses or shortens. :func:`~notebook_pipelines.views.rendering.render` sets the picture
up around it; the conventions are in that module's docstring.

It stands on the compiled plan (:mod:`~notebook_pipelines.definition.plan`), the durations'
format, :mod:`.overlays` (the fills of ``color_by``) and :mod:`.outcomes` (a status's colours).
"""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING, Any

from ..definition.callables import is_sampler
from ..definition.durations import format_duration
from ..definition.plan import Plan, PlanNode
from .outcomes import STATUS_STYLES, UNKNOWN_STYLE, Outcome
from .overlays import ink

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: above this many stages, step groups and steps (iterations drawn with ``iterations="expand"``
#: count too), :func:`render` draws a summary unless ``full=True``
MAX_FULL_NODES = 400
#: in a summary, a list of more items than this shows its first and last ones and "… N more"
SUMMARY_ITEMS = 10

_EDGE = "#78909c"


def dot_label(*lines: str | None, left: bool = False) -> str:
    """One Graphviz label from plain lines: special characters escaped, lines joined by ``\\n``
    (centred) or ended by ``\\l`` (left-justified)."""
    import graphviz

    parts = [graphviz.escape(line) for line in lines if line]
    return graphviz.nohtml("".join(f"{p}\\l" for p in parts) if left else "\\n".join(parts))


_PLAIN_POSTFIX = re.compile(r"[A-Za-z0-9_]*")


def dot_id(text: str) -> str:
    """A DOT id for any text (a status loaded from a file, a pipeline id): backslashes doubled, so
    a trailing one cannot escape the closing quote (``quote`` escapes the quotes); never HTML.

    >>> import graphviz
    >>> graphviz.quoting.quote(dot_id("legend_odd\\\\"))
    '"legend_odd\\\\\\\\"'
    """
    import graphviz

    return graphviz.nohtml(text.replace("\\", "\\\\"))


def summary_level(plan: Plan) -> str:
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


def iterations_of(trace: pd.DataFrame) -> dict[str, list[str]]:
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


NODE_DEFAULTS = {"shape": "box", "style": "rounded,filled", "fillcolor": "#ffffff", "color": "#546e7a",
                 "fontname": "Helvetica", "fontsize": "10", "height": "0.3"}  # fmt: skip
EDGE_DEFAULTS = {"color": _EDGE, "arrowsize": "0.6"}
# a terminal's height follows its width (fixedsize circle); the default node height would not
TERMINAL = {"label": "", "style": "filled", "fillcolor": "#37474f", "fixedsize": "true", "height": "0"}
_LANE = {"style": "dashed,rounded", "color": "#9e9e9e", "bgcolor": "#ffffff", "fontcolor": "#616161"}


def _point(graph: Any, name: str, tooltip: str, color: str = _EDGE) -> None:
    """A small dot: a join point after a parallel block, or the entry of a rollback lane."""
    graph.node(name, label="", shape="point", width="0.06", color=color, tooltip=dot_label(tooltip))


def status_attrs(status: str) -> dict[str, str]:
    fill, border, extra = STATUS_STYLES.get(status, UNKNOWN_STYLE)
    style = "rounded,filled" + (f",{extra}" if extra else "")
    return {
        "fillcolor": fill,
        "color": border,
        "style": style,
        "fontcolor": "#757575" if extra else "#1b1b1b",
    }


class Drawing:
    """One walk of the plan: declares nodes and clusters in place, collects edges for the root.

    Edges go to the root graph at the end because an edge written inside a cluster would pull
    both its ends into that cluster.
    """

    def __init__(
        self,
        info: dict[str, Outcome],
        fills: dict[str, str] | None = None,
        notes: dict[str, Any] | None = None,
        summary: str | None = None,
    ):
        self.info = info
        self.fills: dict[str, str] = fills or {}  # fqn → fill colour of an overlay (color_by)
        self.notes: dict[str, Any] = notes or {}  # fqn → a history's figures for its label
        self.edges: list[tuple[str, str, dict[str, str]]] = []
        self.iterations: dict[str, list[str]] = {}  # looped FQN → iteration FQNs (expand)
        self.barriers: dict[str, list[str]] = {}  # barrier → the ids of its participants' nodes
        self.renames: list[tuple[str, str]] = []  # drawing an iteration: plan FQN prefix → its FQN
        self.suffix = ""  # appended to node ids inside an expanded iteration
        self.summary = summary  # None (every step), "groups" or "stages" collapsed
        self._more = 0  # "… N more" boxes drawn so far (their ids)

    def plan(self, graph: Any, root: PlanNode) -> None:
        """Draw the whole plan: a ``start`` dot, the root's items, a double-circle ``end``."""
        graph.node("start", tooltip=dot_label(f"{root.fqn} start"), shape="circle", width="0.2", **TERMINAL)
        last = self.items(graph, root.items, "start", "n0", rollback=False)
        graph.node(
            "end", tooltip=dot_label(f"{root.fqn} end"), shape="doublecircle", width="0.12", **TERMINAL
        )
        self.edge(last, "end", rollback=False)

    def add_edges(self, graph: Any) -> None:
        """Write the collected edges into the root graph, then join the steps of each barrier."""
        for tail, head, attrs in self.edges:
            graph.edge(tail, head, **attrs)
        for ref, nids in self.barriers.items():  # R55: participants of one barrier, across lanes
            for tail, head in itertools.pairwise(nids):
                graph.edge(tail, head, style="dashed", color="#6a1b9a", dir="none", constraint="false",
                           tooltip=dot_label(f"barrier {ref}"))  # fmt: skip

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
            if item.order is not None and self.summary is None:  # members with needs (D14)
                exits = self._dag(graph, item, prev, join, rollback)
            elif all(child.kind in ("step", "more") for child in members):
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

    def _dag(self, graph: Any, block: PlanNode, prev: str, join: str, rollback: bool) -> list[str]:
        """A parallel block whose members have needs (D14): a member without needs follows
        ``prev``; one with a need follows it (with several, a dot they all lead to); the exits of
        the members nothing in the block needs, which the block's join follows."""
        members, exits = block.items, [""] * len(block.items)
        needed = {j for member in members for j in member.needs}
        for k in block.order:
            member = members[k]
            before = prev
            if len(member.needs) == 1:
                before = exits[member.needs[0]]
            elif member.needs:
                before = f"{join}_n{k}"
                _point(graph, before, f"{member.fqn} needs {len(member.needs)} members")
                for j in member.needs:
                    self.edge(exits[j], before, rollback)
            exits[k] = self.item(graph, member, before, rollback)
        return [exits[k] for k in range(len(members)) if k not in needed]

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
                    attrs.update(fillcolor=self.fills[fqn], fontcolor=ink(self.fills[fqn]))
            elif outcome is None:
                lines.append(_declared(node.duration))
                attrs = {}
            else:
                lines += _outcome_lines(outcome)
                attrs = status_attrs(outcome.status)
                if node.fqn in self.fills:  # an overlay: the fill shows it, the border the status
                    attrs.update(fillcolor=self.fills[node.fqn], fontcolor=ink(self.fills[node.fqn]))
            graph.node(nid, label=dot_label(*lines), tooltip=_tooltip(node, outcome), **attrs)
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
                border, status = STATUS_STYLES.get(outcome.status, UNKNOWN_STYLE)[1], outcome.summary()
            if stage:
                box.attr(style="rounded,bold", color=border, penwidth="2", bgcolor="#ffffff")
            else:
                box.attr(style="rounded,filled", color=border, fillcolor="#f4f6fa", penwidth="1")
            name = node.name if fqn == node.fqn else fqn.rsplit(".", 1)[-1]
            box.attr(
                label=dot_label(
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
                    tip = dot_label(f"{node.fqn} rollback")
                    lane.attr(label="rollback", fontsize="10", tooltip=tip, **_LANE)
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
            attrs = status_attrs(outcome.status) if outcome is not None else {"fillcolor": "#f4f6fa"}
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
        tooltip = dot_label(*lines) if isinstance(node, _More) else _tooltip(node, outcome)
        graph.node(nid, label=dot_label(*lines), tooltip=tooltip, **attrs)
        self.edge(prev, nid, rollback)
        return nid

    def _expanded(self, graph: Any, node: PlanNode, prev: str, rollback: bool) -> str:
        """A looped node after a run: its iterations side by side in a dashed cluster (R46)."""
        fqn = self.fqn(node)
        nid = f"n{node.index}{self.suffix}"
        outcome = self.info.get(fqn)
        with graph.subgraph(name=f"cluster_{nid}_loop") as box:
            status = outcome.summary() if outcome is not None else None
            box.attr(label=dot_label(f"⟳ {node.name} — {loop_badge(node.strategy)}", status, left=True),
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
        return dot_label(node.fqn)
    return dot_label(node.fqn, outcome.summary(), outcome.reason, outcome.error)
