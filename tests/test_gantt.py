"""The Gantt chart and the picture overlays (issue 14, parts 2 and 3), drawn to PNG for real."""

from __future__ import annotations

import io

import pytest
from conftest import grouped
from PIL import Image

import notebook_pipelines as nbp
from notebook_pipelines.views.gantt import MAX_LANES, gantt
from notebook_pipelines.views.rendering import render, to_file
from tests.test_timing import release


def _png(figure) -> Image.Image:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=60)
    return Image.open(io.BytesIO(buffer.getvalue()))


@pytest.fixture(scope="module")
def trace():
    return release().simulate(failures={"e2e": 1}, run_id="gantt")


def test_gantt_draws_lanes_bands_waits_and_the_critical_path(trace):
    figure = trace.pipeline.gantt()
    ax = figure.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["compile", "unit", "lint", "e2e", "smoke", "ship_us", "ship_eu"]  # one lane per step
    texts = {t.get_text() for t in ax.texts}
    assert {"stage build", "stage us", "stage eu", "step group tests", " #2"} <= texts  # bands, retry
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["Success", "Failed", "critical path", "wait between attempts"]
    outlined = [p for p in ax.patches if p.get_linewidth() == 2.0 and p.get_facecolor()[3] == 0]
    assert len(outlined) == 5  # compile, unit, e2e#1, e2e#2, ship_us
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert [(p.get_x(), p.get_width()) for p in hatched] == [(60.0, 5.0)]
    image = _png(figure)
    assert image.size[0] == 11 * 60 and image.size[1] > 100
    assert "image/png" not in repr(figure) and figure._repr_png_()[:4] == b"\x89PNG"


def test_gantt_shows_rollback_steps():
    p = nbp.Pipeline("rb")
    with p.stage("s") as s:
        s.step("deploy", duration=5, failure_strategies=nbp.StageRollback())
        with s.rollback():
            s.step("undo", duration=2)
    ax = gantt(p.simulate(failures={"deploy": True})).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["deploy", "↩ undo"]
    assert "↩ rollback step" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_gantt_of_2000_steps_packs_lanes_per_group():
    trace = grouped("big", stages=4, groups=5, blocks=4, width=25, longest=5).simulate(seed=1)
    assert (trace["kind"] == "step").sum() == 2000
    figure = trace.pipeline.gantt()
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    # per group: 20 groups × 25 lanes = 500 > MAX_LANES, so per stage: 4 stages × 25 lanes
    assert (MAX_LANES, len(labels), labels[0]) == (60, 100, "s0 (500 steps) 1/25")
    assert "lanes packed per stage: 2000 step executions" in figure.axes[0].get_title(loc="left")
    image = _png(figure)
    assert 100 * 0.26 * 60 < image.size[1] <= 40 * 60  # readable lanes; the height is capped
    by_group = gantt(trace, max_lanes=500)
    assert len(by_group.axes[0].get_yticks()) == 500
    assert "lanes packed per step group" in by_group.axes[0].get_title(loc="left")


@pytest.mark.parametrize("color_by", ["status", "duration", "slack"])
def test_render_overlay_with_a_legend(trace, tmp_path, color_by):
    picture = render(release(), trace, color_by=color_by)
    if color_by == "slack":
        assert "label=slack" in picture.source and "label=critical " in picture.source
        assert 'fillcolor="#d32f2f"' in picture.source  # the critical steps
    if color_by == "duration":
        assert "cluster_legend_overlay" in picture.source and "#7f0000" in picture.source  # the longest
    path = to_file(release(), tmp_path / f"{color_by}.png", trace, color_by=color_by)
    assert Image.open(path).size[0] > 300


def test_legend_false_draws_no_legend_not_even_the_overlay_bins(trace):
    drawn = render(release(), trace, color_by="duration").source
    bare = render(release(), trace, color_by="duration", legend=False).source
    assert "cluster_legend_overlay" in drawn and "cluster_legend" not in bare
    assert "#7f0000" in bare  # the steps keep their fills: only the key is left out


def test_render_overlay_needs_a_trace_and_a_known_name(trace):
    with pytest.raises(ValueError, match="pass its trace"):
        render(release(), color_by="slack")
    with pytest.raises(ValueError, match="not one of status, duration, slack"):
        render(release(), trace, color_by="colour")
    assert render(release(), trace).source == render(release(), trace, color_by="status").source


def test_gantt_draws_names_with_dollar_signs_as_plain_text():
    # issue 24 item 12: `$` is valid in an identifier; matplotlib's mathtext must not read it
    p = nbp.Pipeline("p$x$")
    with p.stage("s$y$") as s, s.step_group("g$_$") as g:
        g.step("a$_$", duration=1)
        g.step("x$$", duration=2)
        g.step("a$b$", duration=3, failure_strategies=nbp.Retry(1))
    figure = gantt(p.simulate(failures={"a$b$": 1}))
    _png(figure)  # drawn: mathtext raised ValueError on `a$_$` and `x$$`
    ax = figure.axes[0]
    texts = [*ax.get_yticklabels(), *ax.texts, ax._left_title]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a$_$", "x$$", "a$b$"]
    assert {"stage s$y$", "step group g$_$"} <= {t.get_text() for t in ax.texts}
    assert ax._left_title.get_text().startswith("p$x$")
    assert all(not t.get_parse_math() for t in texts)  # `a$b$` is not drawn in math italics
