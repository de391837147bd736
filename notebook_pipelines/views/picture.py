"""A picture that shows itself: the ``Picture`` class (a ``graphviz.Digraph`` that displays and
saves itself), its rich display (:func:`picture_bundle`: SVG at its natural size, PNG, the outline),
the choice of direction for ``direction="auto"``, and ``dot`` missing as a clear error.

It stands on graphviz (imported when a picture is made) and
:class:`~notebook_pipelines.errors.GraphvizMissing`; :mod:`.rendering` makes the pictures.
"""

from __future__ import annotations

import base64
import functools
import html
import itertools
import re
import warnings
from pathlib import Path
from typing import Any

from ..errors import GraphvizMissing

INSTALL_HINT = (
    "Graphviz's `dot` program was not found on PATH, so the picture cannot be drawn as SVG or PNG. "
    "Install Graphviz: `apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` (macOS) "
    "or `conda install -c conda-forge graphviz`. Without it, `render(p).source` (DOT text) and "
    "`outline(p)` still work."
)


#: what :meth:`Picture.save` writes, by the file name's suffix: Graphviz's output formats, or DOT
SAVE_FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot", ".gv": "dot"}


@functools.cache
def picture_class() -> type:
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
                orient(self)  # direction="auto" settles as in a notebook
            data = self.source.encode("utf-8") if fmt == "dot" else pipe(self, fmt)
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


def stack_legend(graph: Any) -> int:
    """Top to bottom, nodes of one rank stand side by side: chain the legend's entries with
    invisible edges so they stand in one column, as they do left to right. Returns the number
    of statements added to the graph's body."""
    ids = getattr(graph, "legend_ids", [])
    for tail, head in itertools.pairwise(ids):
        graph.edge(tail, head, style="invis")
    return max(0, len(ids) - 1)


def orient(graph: Any) -> str | None:
    """Settle ``direction="auto"``: left to right unless that is scaled below a readable size
    and top to bottom reads larger. Returns the SVG of the chosen direction (None: not drawn)."""
    if getattr(graph, "oriented", True):
        return None
    graph.oriented = True
    wide = pipe(graph, "svg").decode("utf-8")
    if _scale(wide) >= _READABLE_SCALE:
        return wide
    graph.body.append("\trankdir=TB\n")  # a later root attribute statement wins
    added = 1 + stack_legend(graph)
    tall = pipe(graph, "svg").decode("utf-8")
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
        svg = orient(graph) or pipe(graph, "svg").decode("utf-8")
    except GraphvizMissing as err:
        display_warning(str(err))
        return text_bundle(plain, plain)
    except Exception as err:  # rich display never raises; say what went wrong instead
        display_warning(f"the picture cannot be drawn: {type(err).__name__}: {err}")
        return text_bundle(plain, f"{plain}\n{type(err).__name__}: {err}")
    bundle = {"image/svg+xml": fit_svg(svg), "text/plain": plain}
    try:
        bundle["image/png"] = base64.b64encode(pipe(graph, "png")).decode("ascii")
    except Exception:  # a Graphviz built without PNG still gives the SVG
        pass
    return bundle


def pipe(graph: Any, fmt: str) -> bytes:
    import graphviz

    try:
        return graph.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise GraphvizMissing(INSTALL_HINT) from None


def display_warning(message: str) -> None:
    # the default warnings filter shows a given message once per place
    warnings.warn(message, UserWarning, stacklevel=3)


def text_bundle(plain: str, pre: str) -> dict:
    return {"text/plain": plain, "text/html": f"<pre>{html.escape(pre)}</pre>"}
