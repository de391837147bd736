"""The rich display of the design assistant's suggestions: the table, then the original's
picture above the best layout's (``Suggestions._repr_html_``). Never raises: a picture that
cannot be drawn becomes its text outline."""

from __future__ import annotations

import base64
import html
import re
from typing import Any

__all__ = ["suggestions_html"]


def _picture(pipeline: Any, caption: str) -> str:
    """The picture as an ``<img>`` of its SVG at its natural size (shrunk to fit, never blown up):
    JupyterLab's sanitizer keeps an image in an untrusted notebook, where inline SVG is dropped."""
    from .rendering import fit_svg, outline, to_svg

    try:
        svg = fit_svg(to_svg(pipeline.plan()))
    except Exception:  # rich display never raises: fall back to the outline
        try:
            return f"<pre>{html.escape(outline(pipeline))}</pre>"
        except Exception as err:
            return f"<pre>{html.escape(f'{type(err).__name__}: {err}')}</pre>"
    size = re.search(r'<svg\b[^>]*?\swidth="([0-9.]+)pt"\s+height="([0-9.]+)pt"', svg)
    width = f"width: {float(size.group(1)) * 4 / 3:.0f}px; " if size else ""
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    alt = html.escape(caption, quote=True)
    style = f"{width}max-width: 100%; height: auto"
    return f'<img alt="{alt}" style="{style}" src="data:image/svg+xml;base64,{data}">'


def suggestions_html(suggestions: Any) -> str:
    """HTML for a :class:`~notebook_pipelines.analysis.layout.Suggestions` list."""
    esc = html.escape
    cap = f", at most {suggestions.max_parallel} at once" if suggestions.max_parallel else ""
    head = (
        f"<p><b>{esc(suggestions.original.id)}</b>: {suggestions.original_s:g} s as written; "
        f"lower bound {suggestions.bound_s:g} s{esc(cap)}</p>"
    )
    head += "".join(f"<p><i>{esc(note)}</i></p>" for note in getattr(suggestions, "notes", ()))
    if not suggestions:
        return head + "<p>No faster layout found.</p>"
    rows = []
    for i, s in enumerate(suggestions, 1):
        changes = "<br>".join(esc(c) for c in s.changes)
        relaxed = ", ".join(f"{esc(a)} → {esc(b)}" for a, b in s.relaxed) or "—"
        rows.append(
            f"<tr><td>{i}</td><td>{esc(s.strategy)}</td><td>{s.makespan_s:g}</td>"
            f"<td>×{s.speedup:.2f}</td><td>{100 * s.gap:.0f}%</td>"
            f"<td style='text-align:left'>{changes}</td><td style='text-align:left'>{relaxed}</td></tr>"
        )
    table = (
        "<table><tr><th>#</th><th>strategy</th><th>makespan (s)</th><th>speedup</th>"
        "<th>above bound</th><th>changes</th><th>relaxed orderings</th></tr>" + "".join(rows) + "</table>"
    )
    best = suggestions[0]
    # one above the other, each at its own size: side by side they shrank to unreadable labels
    written, suggested = f"as written ({suggestions.original_s:g} s)", f"suggested ({best.makespan_s:g} s)"
    pictures = (
        f"<div><p>{written}</p>{_picture(suggestions.original, written)}</div>"
        f"<div><p>{suggested}</p>{_picture(best.pipeline, suggested)}</div>"
    )
    return head + table + pictures
