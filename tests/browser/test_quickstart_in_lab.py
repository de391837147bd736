"""The quickstart as a person sees it: a real JupyterLab in real headless Chromium (issue 18).

One run of ``01-quickstart.ipynb`` (outputs cleared, all cells run) and the checks of part 1:
execution counts, pictures, the live run view, the replay slider, no error outputs, no console
or page errors. Screenshots go to ``out/browser/``. The other notebooks are covered on the
kernel side by nbval (``notebooks/``); here only the quickstart runs, to keep this under ~90 s.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from browser.labdriver import (
    CELLS_JS,
    SHOTS,
    Lab,
    Problems,
    cell_index,
    check_picture,
    check_widget,
    error_outputs,
    full_screenshot,
    kernel_exec,
    open_notebook,
    run_all,
    write_notebook,
)

NOTEBOOK = "01-quickstart.ipynb"
#: the quickstart pipeline's stage and step ids: every picture of it names them all
IDS = ["build", "checkout", "tests", "unit", "lint", "integration", "e2e", "package",
       "deploy_eu", "deploy_us", "rollout"]  # fmt: skip


@pytest.fixture(scope="module")
def quickstart(browser: Any, lab: Lab) -> Any:
    """The quickstart opened and run once; yields (page, cells, run-all's result, problems)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems = Problems(page)
    open_notebook(page, lab, NOTEBOOK)
    result, cells = run_all(page)
    yield page, cells, result, problems
    full_screenshot(page, SHOTS / "01-quickstart.png")
    context.close()


def test_every_code_cell_ran(quickstart):
    _page, cells, result, _ = quickstart
    code = [c for c in cells if c["type"] == "code"]
    assert code and all(isinstance(c["count"], int) and c["count"] > 0 for c in code), code
    assert [c["count"] for c in code] == sorted(c["count"] for c in code)  # in order, once each
    assert result is True  # no cell of the quickstart raises


def test_every_pipeline_picture_renders(quickstart):
    page, cells, _, _ = quickstart
    shown = [c["i"] for c in cells if c["source"].strip() == "p"]  # the pipeline's own display
    pictures = [*shown, *(cell_index(cells, f"p.render({t})") for t in ("trace", "sim", "failed"))]
    assert len(pictures) == 4
    for index in pictures:
        check_picture(page, index, IDS)


def test_live_run_view_reaches_its_final_state(quickstart):
    page, cells, _, _ = quickstart
    index = cell_index(cells, "%%capture --no-display live")
    out = check_widget(page, index)
    assert "Widget(" not in out.inner_text() and "live view of a run" not in out.inner_text()
    bar = out.locator(".widget-hprogress .progress-bar")  # IntProgress: width = value / max
    assert bar.count() == 1
    page.wait_for_function("b => b.style.width === '100%'", arg=bar.element_handle(), timeout=20_000)
    header = out.locator(".widget-html").first.inner_text()
    done = re.search(r"(\d+)/(\d+) steps done", header)
    assert "Success" in header and done and done[1] == done[2] == "8", header  # 8 steps, 2 of them rollout
    assert out.get_by_role("button", name="Cancel").is_visible()  # disabled once the run is over
    # the live picture: inline SVG naming every step, in its final colours
    assert all(f">{i}" in out.locator("svg").first.evaluate("s => s.outerHTML") for i in IDS)
    # and it fits the output area (a wide pipeline is scaled down, not cut off on the right)
    svg_width = out.locator("svg").first.evaluate("s => s.getBoundingClientRect().width")
    area_width = out.evaluate("o => o.getBoundingClientRect().width")
    assert 0 < svg_width <= area_width + 1, (svg_width, area_width)
    SHOTS.mkdir(parents=True, exist_ok=True)
    out.screenshot(path=str(SHOTS / "01-quickstart-live-view.png"))


def test_replay_slider_changes_the_picture(quickstart):
    page, cells, _, _ = quickstart
    index = cell_index(cells, "scrubber = nbp.replay(")
    out = check_widget(page, index)
    picture = out.locator(".widget-html svg").first
    before = picture.evaluate("s => s.outerHTML")
    assert all(f">{i}" in before for i in IDS)
    handle = out.locator(".noUi-handle").first
    handle.focus()
    handle.press("Home")  # the slider to 0 s: nothing has run yet
    page.wait_for_function(
        "([s, b]) => s.isConnected === false || s.outerHTML !== b",
        arg=[picture.element_handle(), before],
        timeout=10_000,
    )
    after = out.locator(".widget-html svg").first.evaluate("s => s.outerHTML")
    assert after != before
    assert handle.get_attribute("aria-valuenow") in ("0", "0.0")
    assert out.get_by_text("0ms of 3m").is_visible()  # the clock moved with the slider
    out.screenshot(path=str(SHOTS / "01-quickstart-replay-at-0.png"))


def test_no_error_outputs_and_no_browser_errors(quickstart):
    page, _, _, problems = quickstart
    assert error_outputs(page) == []
    for p in problems.all:
        print(p)  # all of them, in the log
    assert problems.unexpected() == []


# -- part 2: a manual intervention answered with a click in the browser ---------------------------
INTERVENTION = [
    "import notebook_pipelines as nbp",
    """calls = []


def flaky(ctx):
    calls.append(ctx.attempt)
    if len(calls) == 1:
        raise nbp.StepError("disk full", error_type="Unknown")


p = nbp.Pipeline("ask")
with p.stage("s") as s:
    s.step("deploy", run=flaky, failure_strategies=nbp.ManualIntervention(
        timeout="10m", choices=("Retry", "MarkAsSuccess", "Abort")))
    s.step("verify", run=lambda: None)""",
    'handle = p.start(run_id="click")  # in the background: the kernel stays free for the click\nhandle',
]


def open_written(page: Any, lab: Lab, name: str, cells: list[str]) -> Problems:
    """Write a notebook of code ``cells`` as ``name``, open it; returns the page's problem log."""
    write_notebook(lab.notebooks / name, cells)
    problems = Problems(page)
    open_notebook(page, lab, name)
    return problems


def test_R20_D12_a_click_on_an_intervention_choice_lets_the_run_continue_to_its_end(page: Any, lab: Lab):
    problems = open_written(page, lab, "intervention.ipynb", INTERVENTION)
    result, cells = run_all(page)
    assert result is True
    out = check_widget(page, cell_index(cells, "handle = p.start("))
    retry = out.get_by_role("button", name="Retry")
    retry.wait_for(timeout=30_000)  # the run waits for a person
    assert "deploy" in out.inner_text() and "disk full" in out.inner_text()
    SHOTS.mkdir(parents=True, exist_ok=True)
    out.screenshot(path=str(SHOTS / "intervention-waiting.png"))
    bar = out.locator(".widget-hprogress .progress-bar")
    waiting_at = bar.evaluate("b => b.style.width")
    assert waiting_at != "100%", waiting_at  # the run is not over while it waits
    retry.click()
    page.wait_for_function("b => b.style.width === '100%'", arg=bar.element_handle(), timeout=30_000)
    out.get_by_text("Success · ").first.wait_for(timeout=30_000)
    assert out.get_by_role("button", name="Retry").count() == 0  # answered: the buttons are gone
    out.screenshot(path=str(SHOTS / "intervention-answered.png"))
    said = kernel_exec(
        page,
        "t = handle.wait(timeout=60)\n"
        "print(calls, list(t[t.step == 'deploy'].action)[:1], list(t[t.kind == 'step'].status),"
        " handle.status)",
    )
    assert said.strip() == "[1, 2] ['Retry'] ['Failed', 'Success', 'Success'] Success", said
    assert problems.unexpected() == [], problems.all


#: the run cell (index 2) has no execution count yet: it has not ended
RUNNING_JS = "() => window.jupyterapp.shell.currentWidget.content.widgets[2].model.executionCount === null"


def test_R20_D12_a_click_answers_a_foreground_run_while_the_kernel_is_busy(page: Any, lab: Lab):
    """``p.run()`` keeps the kernel busy; the click is still taken (a kernel subshell)."""
    cells = [*INTERVENTION[:2], 't = p.run(run_id="foreground")  # the kernel is busy until it ends']
    cells.append("print(calls, list(t[t.kind == 'step'].status), t.loc[0, 'status'])")
    problems = open_written(page, lab, "foreground.ipynb", cells)
    page.evaluate(CELLS_JS)  # number the cells for the locators
    # run all without awaiting the command: its promise ends with the cells, after the click
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    out = check_widget(page, 2)
    retry = out.get_by_role("button", name="Retry")
    retry.wait_for(timeout=30_000)
    assert page.evaluate(RUNNING_JS) is True  # run() still holds the kernel: its cell runs
    assert "p.start()" not in out.inner_text()  # the view does not send the person elsewhere
    retry.click()
    last = page.locator("[data-nb-idx='3'] .jp-OutputArea-output").first
    last.wait_for(timeout=30_000)  # the run ended, the next cell ran
    assert last.inner_text().strip() == "[1, 2] ['Failed', 'Success', 'Success'] Success"
    assert kernel_exec(page, "print(6 * 7)").strip() == "42"  # the kernel takes the next request
    assert problems.unexpected() == [], problems.all
