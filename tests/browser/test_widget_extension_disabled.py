"""Negative control (issue 18, part 3): with the widget front-end extension disabled, the
widget check of the quickstart test must fail; so that check really looks at what is rendered."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from browser.labdriver import (
    SHOTS,
    WIDGETS_EXTENSION,
    Lab,
    Problems,
    cell_index,
    check_widget,
    open_notebook,
    output_of,
    run_all,
    start_lab,
    stop_lab,
    write_notebook,
)

NOTEBOOK = "widget-control.ipynb"
CELLS = [
    "import notebook_pipelines as nbp",
    'p = nbp.Pipeline("control")\n'
    'with p.stage("s") as s:\n    s.step("a", run=lambda: None)\n    s.step("b", run=lambda: None)',
    'trace = p.run(run_id="control")  # shows the live run view',
]


@pytest.fixture(scope="module")
def lab_without_widgets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A JupyterLab whose temp config disables the widget manager (``jupyter labextension
    disable``, i.e. ``disabledExtensions`` in the temp dir's page_config), with a small
    notebook that shows a live run view."""
    server = start_lab(tmp_path_factory.mktemp("lab-no-widgets"), disable=(WIDGETS_EXTENSION,))
    write_notebook(server.notebooks / NOTEBOOK, CELLS)
    try:
        yield server
    finally:
        stop_lab(server)


def test_widget_check_fails_without_the_widget_extension(page: Any, lab_without_widgets: Lab):
    problems = Problems(page)
    open_notebook(page, lab_without_widgets, NOTEBOOK)
    assert not page.evaluate(f"() => window.jupyterapp.hasPlugin('{WIDGETS_EXTENSION}:plugin')")
    result, cells = run_all(page)
    assert result is True
    index = cell_index(cells, "trace = p.run(")
    out = output_of(page, index)
    # the run is over and its output is there: only the plain-text repr, no widget view
    out.get_by_text("live view of a run").wait_for(timeout=20_000)
    with pytest.raises(AssertionError, match="no widget view rendered"):
        check_widget(page, index, timeout_s=3)
    SHOTS.mkdir(parents=True, exist_ok=True)
    out.screenshot(path=str(SHOTS / "control-widgets-disabled.png"))
    # and the console-error collector sees it: the kernel opens widget comms nobody handles
    assert any("Exception opening new comm" in p for p in problems.unexpected()), problems.all
