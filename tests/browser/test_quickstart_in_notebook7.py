"""Part 4 of issue 18: the quickstart in Notebook 7 (the same front end parts as JupyterLab,
another shell): all cells run, the pipeline pictures render, the live run view renders and
ends in its final state. The detailed checks are in ``test_quickstart_in_lab.py``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from browser.labdriver import (
    SHOTS,
    Lab,
    Problems,
    cell_index,
    check_picture,
    check_widget,
    error_outputs,
    open_notebook,
    run_all,
    start_lab,
    stop_lab,
)
from browser.test_quickstart_in_lab import IDS, NOTEBOOK


@pytest.fixture(scope="module")
def notebook7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    server = start_lab(tmp_path_factory.mktemp("notebook7"), app="notebook")
    try:
        yield server
    finally:
        stop_lab(server)


def test_quickstart_in_notebook7(page: Any, notebook7: Lab):
    # Notebook 7's own shortcuts extension throws this while it loads settings (its
    # pluginChanged handler reads the schema of a plugin Notebook 7 does not load; seen with
    # notebook 7.6.5, with or without our settings, and never in JupyterLab): not ours
    problems = Problems(page, also=("pageerror: Cannot read properties of undefined (reading 'schema')",))
    open_notebook(page, notebook7, NOTEBOOK, app="notebook")
    result, cells = run_all(page)
    assert result is True
    assert all(c["count"] for c in cells if c["type"] == "code")
    check_picture(page, next(c["i"] for c in cells if c["source"].strip() == "p"), IDS)
    check_picture(page, cell_index(cells, "p.render(failed)"), IDS)
    out = check_widget(page, cell_index(cells, "%%capture --no-display live"))
    bar = out.locator(".widget-hprogress .progress-bar")
    page.wait_for_function("b => b.style.width === '100%'", arg=bar.element_handle(), timeout=20_000)
    assert out.get_by_role("button", name="Cancel").is_visible()
    assert error_outputs(page) == []
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "01-quickstart-notebook7.png"), full_page=True)
    assert problems.unexpected() == [], problems.all
