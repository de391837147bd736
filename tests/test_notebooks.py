"""Checks on the committed notebooks that nbval itself does not make.

``make test`` runs nbval on every notebook in ``notebooks/``: each runs top to bottom on a fresh
kernel and every output is compared with the stored one, after the substitutions of
``notebooks/nbval_sanitize.cfg``. What nbval does not check, and this module does:

- the kernelspec: nbval starts the kernel the notebook names, so it must be ``python3`` (the
  name ipykernel installs everywhere), and the file must be a valid notebook;
- the stored outputs come from one top-to-bottom run: code cells numbered 1, 2, 3… in order
  (nbval ignores execution counts, so outputs of an out-of-order session pass as long as they
  happen to match);
- nothing that churns in git: no per-cell execution timings;
- complete notebook metadata: ``kernelspec`` and ``language_info``, which JupyterLab fills in
  on opening, so a notebook missing it opens marked "modified" (issue 17);
- every output left out of the comparison (an ``NBVAL_IGNORE_OUTPUT`` / ``NBVAL_SKIP`` comment
  or tag) says why in a comment of the same cell;
- the sanitize file: nbval reads it with a regular expression and silently drops an entry it
  cannot read (``regex:`` without a space, say); here every section must yield exactly one
  pattern nbval reads, compile, and say why in a comment; the Graphviz pattern must blank a
  real SVG and leave text outlines and tables alone.

To store outputs after editing a notebook (executes it, keeps only kernelspec, language_info
and tags)::

    .venv/bin/jupyter nbconvert --to notebook --execute --inplace \\
        --ExecutePreprocessor.record_timing=False --ClearMetadataPreprocessor.enabled=True \\
        --ClearMetadataPreprocessor.preserve_nb_metadata_mask=kernelspec \\
        --ClearMetadataPreprocessor.preserve_nb_metadata_mask=language_info \\
        --ClearMetadataPreprocessor.preserve_cell_metadata_mask=tags notebooks/NAME.ipynb
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbval.plugin import get_sanitize_patterns

import notebook_pipelines as nbp
from notebook_pipelines.views.rendering import outline, to_svg

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
SANITIZE = NOTEBOOKS_DIR / "nbval_sanitize.cfg"
REEXECUTE = "re-execute it with the nbconvert command in the docstring of tests/test_notebooks.py"
IGNORING_MARKERS = ("NBVAL_IGNORE_OUTPUT", "NBVAL_SKIP")
IGNORING_TAGS = ("nbval-ignore-output", "nbval-skip")

each_notebook = pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])


def code_cells(path: Path) -> list:
    return [cell for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]


def sanitize(text: str) -> str:
    """``text`` after the sanitize file's substitutions, applied the way nbval applies them."""
    for regex, replace in get_sanitize_patterns(SANITIZE.read_text(encoding="utf-8")):
        text = re.sub(regex, replace, text)
    return text


def test_the_notebooks_directory_holds_notebooks():
    assert NOTEBOOKS, f"no *.ipynb in {NOTEBOOKS_DIR}"


@each_notebook
def test_notebook_is_valid_and_names_the_python3_kernel(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    name = nb.metadata.get("kernelspec", {}).get("name")
    assert name == "python3", (
        f"{path.name}: kernelspec name is {name!r}; nbval starts that kernel, use 'python3'"
    )


@each_notebook
def test_stored_outputs_come_from_one_run_top_to_bottom(path: Path):
    counts = [cell.execution_count for cell in code_cells(path)]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name}: execution counts {counts} are not 1, 2, 3…: {REEXECUTE}"
    )


@each_notebook
def test_notebook_has_no_metadata_that_churns(path: Path):
    nb = nbformat.read(path, as_version=4)
    timed = [cell.get("id") for cell in nb.cells if "execution" in cell.metadata]
    assert not timed, f"{path.name}: cells {timed} carry execution timings: {REEXECUTE}"
    assert set(nb.metadata) == {"kernelspec", "language_info"}, (
        f"{path.name}: metadata keys {sorted(nb.metadata)}, want kernelspec and language_info: {REEXECUTE}"
    )
    assert nb.metadata.language_info.get("name") == "python", f"{path.name}: language_info names no language"


@each_notebook
def test_every_output_left_out_of_the_comparison_says_why(path: Path):
    unexplained = []
    for cell in code_cells(path):
        lines = cell.source.splitlines()
        ignoring = any(marker in line for line in lines for marker in IGNORING_MARKERS) or any(
            tag in cell.metadata.get("tags", ()) for tag in IGNORING_TAGS
        )
        reasons = [
            line
            for line in lines
            if line.lstrip().startswith("#") and not any(marker in line for marker in IGNORING_MARKERS)
        ]
        if ignoring and not reasons:
            unexplained.append(cell.get("id"))
    assert not unexplained, (
        f"{path.name}: cells {unexplained} ignore their output without a comment saying why"
    )


def test_every_sanitize_section_is_one_pattern_nbval_reads_with_a_comment():
    text = SANITIZE.read_text(encoding="utf-8")
    sections = re.split(r"^\[([^\]]+)\]\s*$", text, flags=re.M)[1:]
    names, bodies = sections[0::2], sections[1::2]
    assert names, f"{SANITIZE} has no [section]"
    for name, body in zip(names, bodies):
        lines = body.strip().splitlines()
        assert any(line.startswith("#") for line in lines), f"[{name}] has no comment saying why"
        read = get_sanitize_patterns(body)
        assert len(read) == 1, (
            f"[{name}] gives {len(read)} patterns to nbval; write 'regex: …' then 'replace: …'"
        )
        re.compile(read[0][0])
    assert len(get_sanitize_patterns(text)) == len(names)


def pipeline() -> nbp.Pipeline:
    p = nbp.Pipeline("release")
    with p.stage("build") as build:
        build.step("checkout", duration="5s")
        with build.parallel():
            build.step("unit", duration="30s")
            build.step("lint", duration="10s")
    return p


def test_the_graphviz_pattern_blanks_a_real_svg_whole():
    svg = to_svg(pipeline())  # the real dot
    assert svg.lstrip().startswith("<?xml")
    blanked = sanitize(svg)
    assert "<svg" in blanked and "</svg>" not in blanked and "graphviz" not in blanked.lower()
    assert blanked == sanitize(svg.replace("5s", "6s")), "two different pictures must compare equal"


def test_sanitizing_leaves_outlines_and_tables_alone():
    p = pipeline()
    trace = p.simulate(run_id="sanitize")
    columns = ["stage", "step", "kind", "status", "start", "start_s", "end_s"]
    for text in (outline(p), outline(p, trace), trace[columns]._repr_html_(), repr(trace[columns]), repr(p)):
        assert sanitize(text) == text
