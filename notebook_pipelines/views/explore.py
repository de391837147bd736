"""The trace explorer (``nbp.explore``): pick a node, see its attempts, timings, error, log and
outputs; filter the nodes by status or stage.

:func:`node_details` is the pure part (one node's rows as HTML); the widget picks the node.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

__all__ = ["ALL", "Explorer", "explore", "node_details"]

#: the filter value that keeps every node
ALL = "(all)"
_ATTEMPT_COLUMNS = [
    "attempt",
    "status",
    "start_s",
    "end_s",
    "duration_s",
    "worker",
    "error_type",
    "action",
    "reason",
]


def _present(value: Any) -> bool:
    if value is None:
        return False
    try:
        import pandas as pd

        return not bool(pd.isna(value))
    except (TypeError, ValueError):  # a dict or a list
        return True


def node_details(trace: Any, fqn: str) -> str:
    """HTML: every row of node ``fqn`` (attempts with their times, worker, error type, action,
    reason), then the last error, the log of each attempt, the outputs and the inputs."""
    rows = trace[trace["fqn"] == fqn]
    if not len(rows):
        return f"<i>no rows of {html.escape(fqn)}</i>"
    first = rows.iloc[0]
    name = first["step"] if _present(first["step"]) else first["stage"] if _present(first["stage"]) else fqn
    kind, where = html.escape(str(first["kind"])), html.escape(fqn)
    parts = [f"<b>{html.escape(str(name))}</b> ({kind})<br><small>{where}</small>"]
    parts.append(rows[_ATTEMPT_COLUMNS].to_html(index=False, na_rep="", float_format=lambda x: f"{x:.3f}"))
    for row in rows.itertuples(index=False):
        if _present(row.error):
            parts.append(f"<b>error</b> (attempt {row.attempt}, {html.escape(str(row.error_type))}):"
                         f"<pre>{html.escape(str(row.error))}</pre>")  # fmt: skip
        if _present(row.log):
            parts.append(f"<b>log</b> (attempt {row.attempt}):<pre>{html.escape(str(row.log))}</pre>")
    last = rows.iloc[-1]
    for column in ("outputs", "inputs"):
        if _present(last[column]) and last[column]:
            items = "".join(
                f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(repr(v))}</td></tr>"
                for k, v in last[column].items()
            )
            parts.append(f"<b>{column}</b><table>{items}</table>")
    return "\n".join(parts)


class Explorer(widgets.VBox):
    """The explorer widget (made by :func:`explore`): ``status`` and ``stage`` filters
    (``Dropdown``), ``node`` (``Dropdown`` of the nodes that pass them, plan order) and
    ``details`` (``HTML``)."""

    def __init__(self, trace: Any, **kwargs: Any):
        self.trace = trace
        last = trace.drop_duplicates("fqn", keep="last")
        self._last = last
        statuses = [str(s) for s in last["status"].astype(str).unique()]
        stages = [str(s) for s in last["stage"].dropna().unique()]
        self.status = widgets.Dropdown(options=[ALL, *statuses], value=ALL, description="status")
        self.stage = widgets.Dropdown(options=[ALL, *stages], value=ALL, description="stage")
        self.node = widgets.Dropdown(description="node", layout=widgets.Layout(width="60%"))
        self.details = widgets.HTML()
        self.status.observe(self._filter, names="value")
        self.stage.observe(self._filter, names="value")
        self.node.observe(self._pick, names="value")
        super().__init__([widgets.HBox([self.status, self.stage]), self.node, self.details], **kwargs)
        self._label = f"<explorer of a trace of {trace.attrs.get('pipeline', '?')!r}>"
        self._filter()

    def __repr__(self) -> str:  # the text/plain of the display: the same in every run
        return self._label

    def _filter(self, _change: Any = None) -> None:
        rows = self._last
        if self.status.value != ALL:
            rows = rows[rows["status"].astype(str) == self.status.value]
        if self.stage.value != ALL:
            rows = rows[rows["stage"] == self.stage.value]
        options = [(_label(row), str(row.fqn)) for row in rows.itertuples(index=False)]
        keep = self.node.value
        self.node.options = options
        values = [value for _, value in options]
        self.node.value = keep if keep in values else values[0] if values else None
        self._pick()

    def _pick(self, _change: Any = None) -> None:
        fqn = self.node.value
        self.details.value = node_details(self.trace, fqn) if fqn else "<i>no node matches the filters</i>"


def _label(row: Any) -> str:
    kind = str(row.kind)
    if kind == "step":
        name = row.step
    elif kind == "step_group":
        name = row.step_group
    elif kind == "stage":
        name = row.stage
    else:
        name = row.fqn
    return f"{'  ' * (str(row.fqn).count('.steps.') + (kind != 'pipeline'))}{name} — {kind}, {row.status}"


def explore(trace: Any) -> Explorer:
    """A trace explorer: pick a node (filtered by status or stage) to see its attempts, timings,
    error, log, outputs and inputs. For a real or a simulated trace."""
    return Explorer(trace)
