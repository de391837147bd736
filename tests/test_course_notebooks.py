"""What the course notebooks (02–13) show, read from their stored outputs (issue 30 parts 3, 7).

nbval checks that the stored outputs are what the code gives; these check that they are what a
learner should see: trace tables with the columns the prose walks through, shown whole; a log
without a literal ``\\n``; ``%pipeline show`` with its picture.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

import notebook_pipelines as nbp

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
COURSE = [p for p in sorted(NOTEBOOKS_DIR.glob("*.ipynb")) if "02" <= p.name[:2] <= "13"]
TRACE_COLUMNS = set(nbp.COLUMNS)
#: columns the prose names on purpose without showing them, and why
NOT_SHOWN = {
    ("11-dask.ipynb", "worker"): "worker addresses change on every run: the next cell counts them instead",
}


def cells(path: Path) -> list:
    return nbformat.read(path, as_version=4).cells


def assigned_names(path: Path) -> set[str]:
    """Names the notebook's code assigns (``log = []``): a backticked word that is one of them
    names the variable, not a column."""
    names = set()
    for cell in cells(path):
        if cell.cell_type != "code":
            continue
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith("%"))
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        names |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return names


def tables(cell) -> list[tuple[str, str]]:
    """The tables a code cell shows: ("trace-table", html) for ``trace.pipeline.table``,
    ("other", text) for a pandas frame or a printed table whose header names trace columns."""
    found = []
    for output in cell.get("outputs", []):
        data = output.get("data", {})
        html = data.get("text/html", "")
        if "nbp-trace-table" in html:
            found.append(("trace-table", html))
            continue
        text = output.get("text", "") if output.get("output_type") == "stream" else data.get("text/plain", "")
        header = [w for w in text.splitlines()[0].split() if w != "\\"] if text.strip() else []
        is_header = all(re.fullmatch(r"[a-z_]+", w) for w in header) and len(set(header) & TRACE_COLUMNS) >= 2
        if is_header or "<table" in html:
            found.append(("other", html or text))
    return found


@pytest.mark.parametrize("path", COURSE, ids=[p.name for p in COURSE])
def test_a_trace_table_the_prose_walks_through_shows_its_columns_whole(path: Path):
    """The markdown after a table names trace columns (`reason`, `start_s`): the table is a
    ``trace.pipeline.table`` (HTML, text wrapped in its cell, nothing cut at 1024 px) with
    those columns."""
    variables = assigned_names(path)
    notebook = cells(path)
    for i, cell in enumerate(notebook[:-1]):
        after = notebook[i + 1]
        if cell.cell_type != "code" or after.cell_type != "markdown":
            continue
        named = {w for w in re.findall(r"`([a-z_]+)`", after.source) if w in TRACE_COLUMNS}
        named -= variables | {column for (name, column) in NOT_SHOWN if name == path.name}
        shown = tables(cell)
        if not named or not shown:
            continue
        kinds = [kind for kind, _ in shown]
        assert "trace-table" in kinds, (
            f"{path.name} cell {i}: a table the prose reads is not trace.pipeline.table"
        )
        cells_shown = {v for kind, html in shown for v in re.findall(r"<td[^>]*>([^<]*)</td>", html)}
        named -= cells_shown  # a backticked value of the table (a step named `after`), not a column
        heads = [
            re.search(r"<thead>(.*?)</thead>", html, re.S)[1] for kind, html in shown if kind == "trace-table"
        ]
        for column in sorted(named):
            assert any(f">{column}</th>" in head for head in heads), (
                f"{path.name} cell {i}: the next cell talks about `{column}`, the table does not show it"
            )


def test_11_the_log_column_reads_as_text_without_a_literal_backslash_n():
    shards = next(c for c in cells(NOTEBOOKS_DIR / "11-dask.ipynb") if "shard(ctx)" in c.source)
    shown = [o["data"] for o in shards.outputs if "nbp-trace-table" in o.get("data", {}).get("text/html", "")]
    assert shown, "the shards' table is a trace.pipeline.table"
    assert "\\n" not in shown[0]["text/plain"] and "\\n" not in shown[0]["text/html"]
    assert "shard0 done" in shown[0]["text/html"]


def test_02_pipeline_show_draws_the_picture_with_the_outline_as_text():
    show = next(c for c in cells(NOTEBOOKS_DIR / "02-magics.ipynb") if c.source.strip() == "%pipeline show")
    data = [o["data"] for o in show.outputs if "data" in o]
    assert data, "%pipeline show displays something"
    assert "image/svg+xml" in data[0] and "image/png" in data[0], "the picture, and a PNG for untrusted views"
    assert (
        data[0]["text/plain"].startswith("Pipeline('release'") and "step_group tests" in data[0]["text/plain"]
    )
