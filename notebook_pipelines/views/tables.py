"""A trace as a table a person reads: ``trace.pipeline.table()``.

A trace DataFrame shown as it is mixes ``NaN`` (floats), ``<NA>`` (strings, nullable ints),
``NaT`` and ``None`` for "none", prints a ``log`` with ``\\n`` literally and cuts long texts at
pandas' ``display.max_colwidth`` with a silent ``...``. :class:`TraceTable` is a view of the
chosen columns that leaves the DataFrame itself unchanged (``table.frame``):

- one marker for none: ``—`` (:data:`NONE`), whatever the dtype;
- text shown whole: in HTML, logs and long reasons wrap inside their cell, line breaks kept
  (``white-space: pre-wrap``); in text, a line break reads ``⏎`` so rows stay one line each;
- styles are inline, so a notebook that is not trusted shows the same table.

>>> import notebook_pipelines as nbp
>>> p = nbp.Pipeline("release")
>>> with p.stage("build") as s:
...     _ = s.step("unit", duration="30s")
...     _ = s.step("docs", duration="5s", when="Failure")
>>> print(p.simulate().pipeline.table(["kind", "step", "status", "start_s", "reason"]))
    kind step  status start_s                                                  reason
pipeline    —  Success     0.0                                                       —
   stage    —  Success     0.0                                                       —
    step unit  Success     0.0                                                       —
    step docs  Skipped    30.0 the stage has not failed (status condition Failure)
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["DEFAULT_COLUMNS", "NONE", "TraceTable"]

#: what a table shows for "none" (NaN, NA, NaT, None) in every column
NONE = "—"

#: the columns shown when none are asked for (those the trace has)
DEFAULT_COLUMNS = (
    "stage",
    "step_group",
    "step",
    "kind",
    "phase",
    "attempt",
    "status",
    "start_s",
    "end_s",
    "action",
    "reason",
    "error",
    "log",
)

_CELL = "text-align: left; vertical-align: top; padding: 2px 8px;"
_TEXT = _CELL + " white-space: pre-wrap; max-width: 40em; overflow-wrap: anywhere;"
_NONE = '<span style="color: #9e9e9e">' + NONE + "</span>"


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        import pandas as pd

        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a dict or list cell: not "none"
        return False


class TraceTable:
    """The chosen columns of a trace, displayed cleanly; ``frame`` is the unchanged DataFrame.

    Args:
        trace: a trace DataFrame (or any slice of one).
        columns: the columns to show, in order; ``None`` means :data:`DEFAULT_COLUMNS` that
            the trace has.

    Raises:
        KeyError: a column the trace does not have (the message lists those it has).
    """

    def __init__(self, trace: pd.DataFrame, columns: list[str] | tuple[str, ...] | None = None):
        if columns is None:
            columns = [c for c in DEFAULT_COLUMNS if c in trace.columns]
        unknown = [c for c in columns if c not in trace.columns]
        if unknown:
            raise KeyError(
                f"trace.pipeline.table(): no column {', '.join(map(repr, unknown))}; "
                f"the trace has: {', '.join(trace.columns)}"
            )
        self.frame = trace[list(columns)]

    def _cells(self) -> list[list[str | None]]:
        """Each cell as its text, ``None`` for none."""
        return [
            [None if _missing(value) else str(value) for value in values]
            for values in self.frame.itertuples(index=False, name=None)
        ]

    def __str__(self) -> str:
        header = [str(c) for c in self.frame.columns]
        rows = [
            [NONE if v is None else v.rstrip("\n").replace("\n", " ⏎ ") for v in row] for row in self._cells()
        ]
        widths = [max([len(h)] + [len(r[k]) for r in rows]) for k, h in enumerate(header)]
        lines = [" ".join(h.rjust(w) for h, w in zip(header, widths))]
        lines += [" ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        head = "".join(f'<th style="{_CELL}">{html.escape(str(c))}</th>' for c in self.frame.columns)
        body = []
        for row in self._cells():
            cells = "".join(f'<td style="{_TEXT}">{_NONE if v is None else html.escape(v)}</td>' for v in row)
            body.append(f"<tr>{cells}</tr>")
        return (
            '<table class="nbp-trace-table" style="border-collapse: collapse">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        )
