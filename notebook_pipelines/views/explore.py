"""The trace explorer (``nbp.explore``): pick a node, see its attempts, timings, error, log and
outputs; filter the nodes by status or stage. On a history (many runs), :class:`HistoryExplorer`:
a node's distribution, trend, criticality and failed runs; a run's picture and Gantt chart.

:func:`node_details` is the pure part (one node's rows as HTML); the widget picks the node.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

__all__ = ["ALL", "Explorer", "HistoryExplorer", "explore", "history_node_details", "node_details"]

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


def explore(trace: Any) -> Explorer | HistoryExplorer:
    """A trace explorer: pick a node (filtered by status or stage) to see its attempts, timings,
    error, log, outputs and inputs. For a real or a simulated trace.

    On a history (several runs of one pipeline: ``nbp.read_history``, traces concatenated) a
    :class:`HistoryExplorer`: pick a node to see its distribution, trend, criticality and the runs
    where it failed; pick a run to see its picture and Gantt chart."""
    if "run_id" in trace.columns and trace["run_id"].nunique() > 1:
        return HistoryExplorer(trace)
    return Explorer(trace)


# -- a history: many runs --------------------------------------------------------------------------------
def history_node_details(h: Any, fqn: str, limit: int = 20) -> str:
    """HTML: a node of a history — its figures (runs, p50/p95, criticality, seconds on the path,
    failure and retry rates) and the runs where it failed (at most ``limit``, newest first)."""
    from ..analysis.history import criticality, node_runs, step_stats

    stats, crit = step_stats(h), criticality(h)
    if fqn not in stats.index:
        return f"<i>no node {html.escape(fqn)} in this history</i>"
    s, c = stats.loc[fqn], crit.loc[fqn] if fqn in crit.index else None
    figures = {
        "runs": f"{s['runs']}",
        "p50 / p90 / p95 / max": " / ".join(_secs(s[k]) for k in ("p50_s", "p90_s", "p95_s", "max_s")),
        "queue p50 / p95": f"{_secs(s['queue_p50_s'])} / {_secs(s['queue_p95_s'])}",
        "critical in": "—" if c is None else f"{c['criticality']:.0%} of runs",
        "on the path (median)": "—" if c is None else _secs(c["exclusive_s"]),
        "share of the median makespan": "—" if c is None else f"{c['share_of_p50']:.0%}",
        "failed / retried / skipped": " / ".join(
            f"{s[k]:.0%}" for k in ("failure_rate", "retry_rate", "skipped_share")
        ),
    }
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in figures.items())
    parts = [f"<b>{html.escape(fqn.rsplit('.', 1)[-1])}</b> ({html.escape(str(s['kind']))})"
             f"<br><small>{html.escape(fqn)}</small><table>{rows}</table>"]  # fmt: skip
    table = node_runs(h)
    bad = table[(table["node"] == fqn) & (table["failed"] | table["retried"])]
    bad = bad.sort_values(["created", "run_order"], ascending=False).head(limit)
    if len(bad):
        shown = bad[["run_id", "created", "commit", "attempts", "failed", "passed_after_retry"]]
        parts.append(f"<b>runs where it failed or was retried</b> ({len(bad)} shown)")
        parts.append(shown.to_html(index=False, na_rep=""))
    else:
        parts.append("<i>it never failed nor was retried</i>")
    return "\n".join(parts)


def _secs(value: Any) -> str:
    from ..definition.durations import format_duration

    return "—" if value != value else format_duration(float(value))


def _png_of(figure: Any) -> bytes:
    return figure._repr_png_()


def node_figure(h: Any, fqn: str) -> Any:
    """A node's distribution (histogram of its time per run) and its trend (time per run, in run order)."""
    from ..analysis.history import node_runs
    from .gantt import figure_class
    from .history import short_name

    table = node_runs(h)
    rows = table[(table["node"] == fqn) & table["seconds"].notna()]
    figure = figure_class()(figsize=(9, 2.4), layout="constrained")
    hist, trend = figure.subplots(1, 2)
    hist.hist(rows["seconds"], bins=min(30, max(5, len(rows) // 4)), color="#64b5f6", edgecolor="#1565c0")
    hist.set_title(f"{short_name(fqn)}: time per run", fontsize=9, loc="left")
    x = rows["created"] if rows["created"].notna().all() and len(rows) else rows["run_order"]
    x = x.dt.tz_convert(None) if hasattr(x, "dt") and x.dt.tz is not None else x
    trend.plot(x, rows["seconds"], ".", ms=3, color="#1565c0")
    trend.set_title("over time", fontsize=9, loc="left")
    trend.set_ylim(bottom=0)
    for ax in (hist, trend):
        ax.tick_params(labelsize=7)
    return figure


class HistoryExplorer(widgets.VBox):
    """The explorer of a history (made by :func:`explore` on several runs): ``node``
    (``Dropdown``, by criticality) → ``node_details`` (``HTML``: figures, failed runs) and
    ``node_chart`` (``Image``: distribution and trend); ``run`` (``Dropdown``, newest first) →
    ``picture`` (``HTML``: the structure, coloured by that run's statuses) and ``gantt``
    (``Image``). Pictures are drawn when picked."""

    def __init__(self, history: Any, **kwargs: Any):
        from ..analysis.history import check_history, criticality, node_runs

        check_history(history, "explore()")
        self.history = history
        crit = criticality(history)
        labels = [
            (f"{row['name']} — {row['kind']}, critical {row['criticality']:.0%}", str(fqn))
            for fqn, row in crit.iterrows()
        ]
        runs = node_runs(history).drop_duplicates("run_id")
        runs = runs.sort_values(["created", "run_order"], ascending=False)
        self.node = widgets.Dropdown(options=labels, description="node", layout=widgets.Layout(width="70%"))
        self.node_details = widgets.HTML()
        self.node_chart = widgets.Image(format="png")
        run_labels = [
            (
                f"{r.run_id}" + (f" — {r.created:%Y-%m-%d %H:%M}" if r.created == r.created else ""),
                str(r.run_id),
            )
            for r in runs.itertuples(index=False)
        ]
        self.run = widgets.Dropdown(options=run_labels, description="run", layout=widgets.Layout(width="50%"))
        self.picture = widgets.HTML()
        self.gantt = widgets.Image(format="png")
        self._pipeline: Any = None
        self.node.observe(self._pick_node, names="value")
        self.run.observe(self._pick_run, names="value")
        tabs = widgets.Tab(
            [
                widgets.VBox([self.node, self.node_chart, self.node_details]),
                widgets.VBox([self.run, self.picture, self.gantt]),
            ]
        )
        tabs.set_title(0, "nodes")
        tabs.set_title(1, "runs")
        super().__init__([tabs], **kwargs)
        self._label = f"<explorer of a history: {history['run_id'].nunique()} runs>"
        self._pick_node()
        self._pick_run()

    def __repr__(self) -> str:
        return self._label

    def _pick_node(self, _change: Any = None) -> None:
        fqn = self.node.value
        if not fqn:
            return
        self.node_details.value = history_node_details(self.history, fqn)
        self.node_chart.value = _png_of(node_figure(self.history, fqn))

    def _pick_run(self, _change: Any = None) -> None:
        run_id = self.run.value
        if not run_id:
            return
        trace = self.history[self.history["run_id"].astype(str) == run_id]
        self.picture.value = self._picture(trace)
        from .gantt import gantt

        self.gantt.value = _png_of(gantt(trace))

    def _picture(self, trace: Any) -> str:
        """The structure (rebuilt from the history once) coloured by this run; "" if it cannot be drawn."""
        from ..formats.history_tools import pipeline_from_history
        from .rendering import render

        try:
            if self._pipeline is None:
                self._pipeline = pipeline_from_history(self.history)
            svg = render(self._pipeline, trace).pipe(format="svg", encoding="utf-8")
        except Exception as error:  # a structure that cannot be drawn, no dot: say so, keep the explorer
            return f"<i>no picture: {html.escape(str(error)[:200])}</i>"
        return f"<div style='max-width:100%;overflow-x:auto'>{svg}</div>"
