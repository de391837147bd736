"""The course as a learner opens it: every notebook in JupyterLab at 1024 px, not trusted (issue 30).

A notebook opened from disk is not trusted, so JupyterLab shows no ``image/svg+xml`` and sanitises
HTML: each picture must still be there (the PNG beside its SVG, or an ``<img>``), and be large
enough to read. Checked on the stored outputs of every notebook, without running them:

- every pipeline picture is shown, loaded, and its labels (10 pt, 13.3 px at natural size) are at
  least 10 px high once scaled into the output area;
- no HTML output carries inline SVG (an untrusted notebook shows it as raw text);
- no table cuts a column that the next markdown cell names (its header is inside the visible
  part of the output area);

and, in a kernel, the replay's picture shows the time of the slider's moment at three positions.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from browser.labdriver import (
    CELLS_JS,
    SHOTS,
    Lab,
    check_widget,
    full_screenshot,
    kernel_exec,
    open_notebook,
    run_all,
    write_notebook,
)

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
WIDTH = 1024
#: a node label is 10 pt: 13.3 CSS px in an SVG at natural size, and in Graphviz's PNG (96 dpi)
LABEL_PX = 10 * 96 / 72
MIN_LABEL_PX = 10


@pytest.fixture
def narrow(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": WIDTH, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


def _stored(path: Path) -> list[dict]:
    """Per cell of the file: its type, source, and the mime types of each of its outputs."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = []
    for cell in nb["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        outputs = [out.get("data", {}) for out in cell.get("outputs", [])]
        cells.append({"type": cell["cell_type"], "source": source, "outputs": outputs})
    return cells


PICTURES_JS = """i => {
    const cell = document.querySelector(`[data-nb-idx='${i}'] .jp-OutputArea`);
    if (!cell) return [];
    return Array.from(cell.querySelectorAll('img')).map(img => {
        const area = img.closest('.jp-OutputArea-output').getBoundingClientRect();
        const box = img.getBoundingClientRect();
        return {src: img.getAttribute('src').slice(0, 40), complete: img.complete, nw: img.naturalWidth,
                w: box.width, area: area.width};
    });
}"""

TABLE_JS = """i => {
    const area = document.querySelector(`[data-nb-idx='${i}'] .jp-OutputArea-output`);
    if (!area) return null;
    const visible = area.getBoundingClientRect();
    return Array.from(area.querySelectorAll('table thead th, table tr:first-child th')).map(th => {
        const box = th.getBoundingClientRect();
        return {name: th.innerText.trim(), right: box.right, left: box.left, edge: visible.right};
    });
}"""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_a_notebook_opened_untrusted_at_1024px_shows_readable_pictures_and_uncut_tables(
    narrow: Any, lab: Lab, path: Path
):
    page = narrow
    stored = _stored(path)
    open_notebook(page, lab, path.name)
    cells = page.evaluate(CELLS_JS)
    assert len(cells) == len(stored)
    page.wait_for_timeout(500)  # images decode
    problems = []
    for i, cell in enumerate(stored):
        for data in cell["outputs"]:
            html = data.get("text/html", "")
            if "<svg" in (html if isinstance(html, str) else "".join(html)):
                problems.append(f"cell {i}: an HTML output with inline SVG (raw text when untrusted)")
        graphviz = any("image/svg+xml" in data for data in cell["outputs"])
        embedded = any("data:image/svg+xml" in str(data.get("text/html", "")) for data in cell["outputs"])
        if graphviz or embedded:
            shown = page.evaluate(PICTURES_JS, i)
            expected = sum("image/svg+xml" in d for d in cell["outputs"]) + sum(
                str(d.get("text/html", "")).count("data:image/svg+xml") for d in cell["outputs"]
            )
            if len(shown) < expected:
                problems.append(f"cell {i}: {expected} pictures stored, {len(shown)} shown untrusted")
            for img in shown:
                if not (img["complete"] and img["nw"] > 0):
                    problems.append(f"cell {i}: a picture that does not load ({img['src']}…)")
                    continue
                label = LABEL_PX * img["w"] / img["nw"]
                if label < MIN_LABEL_PX:
                    size = f"{img['nw']} px picture shown {img['w']:.0f} px wide in {img['area']:.0f} px"
                    problems.append(f"cell {i}: labels {label:.1f} px high ({size})")
        if cell["type"] == "code" and any("<table" in str(d.get("text/html", "")) for d in cell["outputs"]):
            following = next((c for c in stored[i + 1 :] if c["type"] == "markdown"), None)
            named = set(re.findall(r"`([A-Za-z_][\w]*)`", following["source"])) if following else set()
            for header in page.evaluate(TABLE_JS, i) or []:
                if header["name"] in named and header["right"] > header["edge"] + 1:
                    problems.append(
                        f"cell {i}: column {header['name']!r}, named in the next markdown cell, is cut "
                        f"({header['right']:.0f} px > {header['edge']:.0f} px)"
                    )
    if problems:
        full_screenshot(page, SHOTS / f"1024-{path.stem}.png")
    assert not problems, "\n".join(problems)


REPLAY = [
    """import notebook_pipelines as nbp

p = nbp.Pipeline("release")
with p.stage("build") as build:
    build.step("checkout", duration="10s")
    with build.parallel():
        build.step("unit", duration="30s")
        build.step("lint", duration="20s")
    build.step("package", duration="5s")
scrubber = nbp.replay(p.simulate(), pipeline=p)
scrubber""",
]


def test_the_replays_picture_shows_the_time_of_the_clock_at_three_positions(narrow: Any, lab: Lab):
    page = narrow
    write_notebook(lab.notebooks / "replay-1024.ipynb", REPLAY)
    open_notebook(page, lab, "replay-1024.ipynb")
    run_all(page)
    out = check_widget(page, 0)
    for t in (12, 18, 33):  # the states at 12 s and 18 s are the same; the times are not
        kernel_exec(page, f"scrubber.slider.value = {t}.0")
        out.get_by_text(f"{t}s of 45s").wait_for(timeout=10_000)
        page.wait_for_function(
            "t => Array.from(document.querySelectorAll('.widget-html svg text'))"
            ".some(e => e.textContent.includes('release — Running ' + t + 's'))",
            arg=t,
            timeout=10_000,
        )
        title = out.locator(".widget-html svg text").first.text_content()
        assert title == f"release — Running {t}s"  # the picture's time is the clock's
    out.screenshot(path=str(SHOTS / "replay-1024.png"))
