"""Tests of the Graphviz renderer: structure read back from the DOT text, real ``dot`` for SVG/PNG.

The missing-``dot`` condition is real: ``PATH`` points at an empty directory.
"""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import warnings

import graphviz
import pytest

import notebook_pipelines as nbp
from notebook_pipelines.views.rendering import (
    FIT_WIDTH_PX,
    FORMATS,
    MAX_FULL_NODES,
    OUTLINE_LINES,
    STATUS_STYLES,
    SUMMARY_ITEMS,
    GraphvizMissing,
    mimebundle,
    natural_width_px,
    outcomes,
    outline,
    render,
    to_file,
    to_svg,
)

# --- helpers ---------------------------------------------------------------------------------


def release() -> nbp.Pipeline:
    """A stage with a step group of two parallel blocks, a rollback list, then parallel stages."""
    p = nbp.Pipeline("release")
    with p.stage("build") as build:
        build.step("checkout", duration="5s")
        with build.step_group("tests") as tests:
            with tests.parallel():
                tests.step("unit", duration="30s")
                tests.step("lint", duration="10s")
            with tests.parallel():
                tests.step("integration", duration="1m")
                tests.step("e2e", duration="2m")
        build.step("package", duration="20s")
        with build.rollback():
            build.step("undo")
    with p.parallel():
        with p.stage("deploy_eu", type="Deployment") as eu:
            eu.step("rollout_eu")
        with p.stage("deploy_us", type="Deployment") as us:
            us.step("rollout_us")
    return p


def nid(p: nbp.Pipeline, ident: str) -> str:
    """The DOT node id of the (unique) node with identifier ``ident``."""
    (node,) = [n for n in p.plan().nodes if n.id == ident]
    return f"n{node.index}"


def edges(source: str) -> list[tuple[str, str, str]]:
    """(tail, head, attributes) of every edge statement."""
    return re.findall(r"^\s*(\S+) -> (\S+)(?: \[(.*)\])?$", source, flags=re.M)


def visible_edges(source: str) -> set[tuple[str, str]]:
    return {(t, h) for t, h, attrs in edges(source) if "invis" not in attrs}


def block(source: str, opener: str) -> str:
    """The text of the subgraph that starts with ``opener`` up to its matching brace."""
    start = source.index(opener)
    depth = 0
    for i in range(start, len(source)):
        if source[i] == "{":
            depth += 1
        elif source[i] == "}":
            depth -= 1
            if depth == 0:
                return source[start : i + 1]
    raise AssertionError(f"unbalanced subgraph {opener!r}")


def declaration(source: str, node_id: str) -> str:
    """The attribute text of the node statement for ``node_id``."""
    match = re.search(rf"^\s*{re.escape(node_id)} \[(.*)\]$", source, flags=re.M)
    assert match, f"node {node_id} not declared"
    return match.group(1)


def fill_of(status: str) -> str:
    return f'fillcolor="{STATUS_STYLES[status][0]}"'


def sim_release():
    """A simulated run: unit needs 3 attempts, lint 2, e2e fails and rolls the stage back."""
    p = release()
    p.find("build").find("tests").find("unit").failure_strategies = nbp.Retry(2)
    p.find("build").find("tests").find("lint").failure_strategies = nbp.Retry(1)
    p.find("build").find("tests").find("e2e").failure_strategies = nbp.StageRollback()
    trace = p.simulate(failures={"unit": 2, "lint": 1, "e2e": True})
    return p, trace


# --- structure -------------------------------------------------------------------------------


def test_dot_source_is_deterministic_for_one_and_for_equal_pipelines():
    p = release()
    first = render(p).source
    assert render(p).source == first
    assert render(release()).source == first
    assert render(p.plan()).source == first
    p2, trace = sim_release()
    p3, trace3 = sim_release()
    assert render(p2, trace).source == render(p3, trace3).source


def test_node_ids_come_from_the_plan_index_and_tooltips_are_fqns():
    p = release()
    source = render(p).source
    plan = p.plan()
    for node in plan.steps:
        attrs = declaration(source, f"n{node.index}")
        assert f'tooltip="{node.fqn}"' in attrs
        assert re.match(rf'label="?{node.name}\b', attrs)


def test_R4_R5_blocks_of_a_group_run_after_the_previous_blocks_join():
    p = release()
    source = render(p).source
    visible = visible_edges(source)
    tests = nid(p, "tests")
    join1, join2 = f"{tests}_p0", f"{tests}_p1"
    checkout, unit, lint = nid(p, "checkout"), nid(p, "unit"), nid(p, "lint")
    integration, e2e, package = nid(p, "integration"), nid(p, "e2e"), nid(p, "package")
    # block 1 fans out from the step before the group and fans in to its join point
    assert {(checkout, unit), (checkout, lint), (unit, join1), (lint, join1)} <= visible
    # block 2 starts from block 1's join, never from block 1's steps directly
    assert {(join1, integration), (join1, e2e), (integration, join2), (e2e, join2)} <= visible
    assert not {(unit, integration), (unit, e2e), (lint, integration), (lint, e2e)} & visible
    assert (join2, package) in visible
    assert "shape=point" in declaration(source, join1)


def test_R5_R12_parallel_sibling_steps_share_a_rank():
    p = release()
    source = render(p).source
    tests = block(source, f"subgraph cluster_{nid(p, 'tests')} {{")
    rows = re.findall(r"\{\s*rank=same\s*(.*?)\}", tests, flags=re.S)
    members = [set(re.findall(r"^\s*(n\d+) \[", row, flags=re.M)) for row in rows]
    assert members == [{nid(p, "unit"), nid(p, "lint")}, {nid(p, "integration"), nid(p, "e2e")}]


def test_R11_parallel_stages_fan_out_from_one_predecessor_and_join_before_the_end():
    p = release()
    source = render(p).source
    visible = visible_edges(source)
    package, eu, us = nid(p, "package"), nid(p, "rollout_eu"), nid(p, "rollout_us")
    assert {(package, eu), (package, us), (eu, "n0_p1"), (us, "n0_p1"), ("n0_p1", "end")} <= visible
    assert ("start", nid(p, "checkout")) in visible
    # the two stages are sibling clusters, neither inside the other
    eu_cluster = block(source, f"subgraph cluster_{nid(p, 'deploy_eu')} {{")
    assert f"cluster_{nid(p, 'deploy_us')}" not in eu_cluster


def test_R1_step_group_is_a_cluster_labelled_with_its_name():
    p = release()
    source = render(p).source
    group = block(source, f"subgraph cluster_{nid(p, 'tests')} {{")
    assert 'label="tests — step group\\l"' in group
    for step in ("unit", "lint", "integration", "e2e"):
        assert re.search(rf"^\s*{nid(p, step)} \[", group, flags=re.M)
    assert not re.search(rf"^\s*{nid(p, 'package')} \[", group, flags=re.M)


def test_stage_is_a_bold_cluster_with_its_name_and_type():
    p = release()
    source = render(p).source
    stage = block(source, f"subgraph cluster_{nid(p, 'deploy_eu')} {{")
    assert 'label="deploy_eu — Deployment stage\\l"' in stage
    assert 'style="rounded,bold"' in stage
    build = block(source, f"subgraph cluster_{nid(p, 'build')} {{")
    assert f"subgraph cluster_{nid(p, 'tests')} {{" in build  # the group is inside its stage


def test_R35_rollback_list_is_a_separate_dashed_lane():
    p = release()
    source = render(p).source
    build = nid(p, "build")
    lane = block(source, f"subgraph cluster_{build}_rollback {{")
    assert "label=rollback" in lane and "dashed" in lane
    undo = nid(p, "undo")
    assert re.search(rf"^\s*{undo} \[", lane, flags=re.M)  # declared inside the lane
    lane_nodes = {f"{build}_rb", undo}
    for tail, head, attrs in edges(source):
        if tail in lane_nodes or head in lane_nodes:
            # inside the lane: dashed; towards the main path: only an invisible layout edge
            assert "style=dashed" in attrs or "style=invis" in attrs, (tail, head, attrs)
    assert (f"{build}_rb", undo) in visible_edges(source)
    assert not any(undo in edge for edge in visible_edges(source) if f"{build}_rb" not in edge)


def test_R3_step_group_rollback_list_is_a_dashed_lane_inside_the_group():
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.step_group("db") as db:
        db.step("migrate")
        with db.rollback(), db.parallel():
            db.step("restore")
            db.step("notify")
    source = render(p).source
    group = block(source, f"subgraph cluster_{nid(p, 'db')} {{")
    lane = block(group, f"subgraph cluster_{nid(p, 'db')}_rollback {{")
    assert "dashed" in lane
    join = f"{nid(p, 'db')}_rp0"
    assert {(nid(p, "restore"), join), (nid(p, "notify"), join)} <= visible_edges(source)


def test_declared_durations_show_in_labels_and_special_characters_are_escaped():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", name='say "hi" <b> \\ done', duration="90s")
    source = render(p).source
    assert 'label="say \\"hi\\" <b> \\\\ done\\n1m 30s"' in source
    svg = to_svg(p)  # the real dot accepts it
    assert "say &quot;hi&quot; &lt;b&gt; \\ done" in svg


def test_R59_a_sampled_duration_shows_as_sampled():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", duration=lambda rng: rng.uniform(1, 2))
    assert 'label="a\\nsampled"' in render(p).source


def test_direction_is_checked_and_top_to_bottom_renders():
    p = release()
    assert "rankdir=TB" in render(p, direction="TB").source
    with pytest.raises(ValueError, match="LR, TB, RL, BT"):
        render(p, direction="up")


def test_invalid_pipeline_raises_definition_error_from_render():
    p = nbp.Pipeline("p")
    p.stage("empty")
    with pytest.raises(nbp.DefinitionError, match="no steps"):
        render(p)


def test_svg_from_the_real_dot_names_every_step():
    p = release()
    svg = to_svg(p)
    assert svg.lstrip().startswith("<?xml") and "</svg>" in svg
    for node in p.plan().steps:
        assert f">{node.name}</text>" in svg


def test_importing_the_renderer_does_not_import_graphviz():
    code = "import sys, notebook_pipelines.views.rendering; print('graphviz' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- coloured by a run -----------------------------------------------------------------------


def test_R26_run_colours_nodes_by_status_and_adds_a_legend():
    def fail():
        raise RuntimeError("boom")

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("ok", run=lambda: None)
        s.step("bad", run=fail)
        s.step("after", run=lambda: None)
    trace = p.run(report=False)
    source = render(p, trace).source
    assert fill_of("Success") in declaration(source, nid(p, "ok"))
    bad = declaration(source, nid(p, "bad"))
    assert fill_of("Failed") in bad and "RuntimeError: boom" in bad  # the error is in the tooltip
    after = declaration(source, nid(p, "after"))  # skipped: the stage has failed so far
    assert fill_of("Skipped") in after and "dashed" in after and "skipped" in after
    stage = block(source, f"subgraph cluster_{nid(p, 's')} {{")
    assert f'color="{STATUS_STYLES["Failed"][1]}"' in stage and "Failed" in stage
    legend = block(source, "subgraph cluster_legend {")
    assert set(re.findall(r"legend_(\w+) \[", legend)) == {"Success", "Failed", "Skipped"}
    assert "Failed" in render(p, trace).source.split("label=", 2)[1]  # the title has the status
    assert "cluster_legend" not in render(p, trace, legend=False).source
    assert "cluster_legend" not in render(p).source


def test_R18_E5_retries_show_as_attempt_counts():
    p, trace = sim_release()
    source = render(p, trace).source
    unit, lint = declaration(source, nid(p, "unit")), declaration(source, nid(p, "lint"))
    assert "×3" in unit and fill_of("Success") in unit
    assert "×2" in lint
    assert "×" not in declaration(source, nid(p, "checkout"))
    e2e = declaration(source, nid(p, "e2e"))
    assert fill_of("Failed") in e2e and "StageRollback" in e2e


def test_R35_D7_rollback_lane_shows_which_rollback_steps_ran():
    p, trace = sim_release()
    source = render(p, trace).source
    undo = declaration(source, nid(p, "undo"))
    assert fill_of("Success") in undo and "dotted" not in undo
    # a run without a failure leaves the rollback list NotStarted: faded and dotted
    p_ok = release()
    quiet = declaration(render(p_ok, p_ok.simulate()).source, nid(p_ok, "undo"))
    assert fill_of("NotStarted") in quiet and "dotted" in quiet and "not started" in quiet


def test_R32_D5_skipped_stages_and_their_steps_are_styled_apart():
    p, trace = sim_release()
    source = render(p, trace).source  # after the stage rollback the later stages are skipped
    rollout = declaration(source, nid(p, "rollout_eu"))
    assert fill_of("Skipped") in rollout and "dashed" in rollout
    stage = block(source, f"subgraph cluster_{nid(p, 'deploy_eu')} {{")
    assert "Skipped" in stage and f'color="{STATUS_STYLES["Skipped"][1]}"' in stage


def test_outcomes_take_the_last_attempt_the_whole_span_and_the_last_action():
    p, trace = sim_release()
    unit = outcomes(trace)[p.plan().by_fqn["pipeline.stages.build.spec.execution.steps.tests.steps.unit"].fqn]
    rows = trace[trace.fqn == "pipeline.stages.build.spec.execution.steps.tests.steps.unit"]
    assert (unit.status, unit.attempts, unit.action) == ("Success", 3, "Retry")
    assert unit.seconds == rows.end_s.max() - rows.start_s.min()
    assert outcomes(None) == {} and outcomes(trace.iloc[:0]) == {}


# --- outline ---------------------------------------------------------------------------------


def small() -> nbp.Pipeline:
    p = nbp.Pipeline("release")
    with p.stage("build") as build:
        build.step("checkout", duration="5s")
        with build.step_group("tests", name="all tests") as tests, tests.parallel():
            tests.step("unit", duration="30s", failure_strategies=nbp.Retry(2))
            tests.step("lint", duration="10s")
        with build.rollback():
            build.step("undo")
    with p.parallel():
        with p.stage("eu") as eu:
            eu.step("rollout", duration="1m")
        with p.stage("us") as us:
            us.step("rollout", duration="2m")
    return p


def test_outline_is_an_indented_tree_of_the_plan():
    assert outline(small()) == (
        "pipeline release\n"
        "  stage build\n"
        "    step checkout\n"
        '    step_group tests "all tests"\n'
        "      parallel\n"
        "        step unit\n"
        "        step lint\n"
        "    rollback\n"
        "      step undo\n"
        "  parallel\n"
        "    stage eu\n"
        "      step rollout\n"
        "    stage us\n"
        "      step rollout"
    )


def test_outline_with_a_simulated_trace_shows_status_time_and_retries():
    p = small()
    trace = p.simulate(failures={"unit": 2})
    assert outline(p, trace) == (
        "pipeline release                  Success 3m 35s\n"
        "  stage build                     Success 1m 35s\n"
        "    step checkout                 Success 5s\n"
        '    step_group tests "all tests"  Success 1m 30s\n'
        "      parallel\n"
        "        step unit                 Success 1m 30s ×3 (Retry)\n"
        "        step lint                 Success 10s\n"
        "    rollback\n"
        "      step undo                   NotStarted\n"
        "  parallel\n"
        "    stage eu                      Success 1m\n"
        "      step rollout                Success 1m\n"
        "    stage us                      Success 2m\n"
        "      step rollout                Success 2m"
    )


# --- rich display and files ------------------------------------------------------------------


def test_repr_mimebundle_gives_svg_png_and_the_outline_for_pipeline_stage_and_group():
    p = release()
    bundle = p._repr_mimebundle_()
    assert set(bundle) == {"image/svg+xml", "image/png", "text/plain"}
    assert "<svg" in bundle["image/svg+xml"] and bundle["text/plain"] == f"{p!r}\n{outline(p)}"
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")  # untrusted notebooks show it
    stage = p.find("build")
    assert ">checkout</text>" in stage._repr_mimebundle_()["image/svg+xml"]
    assert ">unit</text>" in stage.find("tests")._repr_mimebundle_()["image/svg+xml"]
    assert "<svg" in mimebundle(p)["image/svg+xml"]
    graph = p.render()
    assert isinstance(graph, graphviz.Digraph)
    picture = graph._repr_mimebundle_()
    assert "image/svg+xml" in picture and "image/png" in picture
    assert picture["text/plain"] == outline(p), "a picture reads as its outline, not <Picture at 0x…>"


def _readable_px(svg: str) -> float:
    """The height, in CSS px, of a 10 pt label once the picture is scaled to FIT_WIDTH_PX."""
    return 10 * 4 / 3 * min(1.0, FIT_WIDTH_PX / natural_width_px(svg))


def test_pictures_keep_their_natural_size_and_only_shrink_to_fit():
    p = release()
    svg = p.render()._repr_mimebundle_()["image/svg+xml"]
    width, height = re.search(r'<svg\b[^>]*\swidth="([0-9.]+)pt"\s+height="([0-9.]+)pt"', to_svg(p)).groups()
    # the natural size stays (an <img> of it is not blown up to the output's width) and CSS only
    # ever scales it down
    assert f'width="{width}pt" height="{height}pt" style="max-width: 100%; height: auto"' in svg
    assert 'width="100%"' not in svg
    assert "viewBox=" in svg  # keeps the proportions when scaled
    small = p.render(size="2,1")
    assert 'size="2,1"' in small.source
    narrow = float(re.search(r'<svg\b[^>]*\swidth="([0-9.]+)pt"', to_svg(p, size="2,1")).group(1))
    assert narrow <= 2 * 72 < float(width)


def _serial(n: int) -> nbp.Pipeline:
    p = nbp.Pipeline("long")
    with p.stage("s") as s:
        for i in range(n):
            s.step(f"step_number_{i}", duration="1s")
    return p


def test_a_long_serial_pipeline_is_drawn_top_to_bottom_so_its_labels_stay_readable():
    p = _serial(20)
    wide = to_svg(p, direction="LR")
    # 20 boxes side by side: over 2,000 px, scaled into 590 px its labels would be ~4 px high
    assert natural_width_px(wide) > 2000 and _readable_px(wide) < 5
    auto = to_svg(p)
    assert _readable_px(auto) >= 11
    picture = p.render()
    bundle = picture._repr_mimebundle_()
    assert "rankdir=TB" in picture.source and _readable_px(bundle["image/svg+xml"]) >= 11
    # a short one stays left to right
    small = _serial(3).render()
    small._repr_mimebundle_()
    assert "rankdir=TB" not in small.source


def test_an_explicit_direction_is_kept_even_when_wide():
    picture = _serial(20).render(direction="LR")
    picture._repr_mimebundle_()
    assert "rankdir=TB" not in picture.source


def test_a_picture_wide_both_ways_keeps_the_direction_that_reads_larger():
    p = nbp.Pipeline("grid")
    with p.stage("s") as s:
        for block in range(8):
            with s.parallel():
                for i in range(8):
                    s.step(f"b{block}_step_{i}", duration="1s")
    lr, tb = to_svg(p, direction="LR"), to_svg(p, direction="TB")
    chosen = to_svg(p)
    assert _readable_px(chosen) == max(_readable_px(lr), _readable_px(tb))


def test_rich_display_of_an_invalid_pipeline_lists_the_problems_and_warns():
    p = nbp.Pipeline("p")
    p.stage("empty")
    with pytest.warns(UserWarning, match="no steps"):
        bundle = p._repr_mimebundle_()
    assert "image/svg+xml" not in bundle
    assert "pipeline.stages.empty" in bundle["text/plain"] and "<pre>" in bundle["text/html"]


@pytest.fixture
def no_dot(tmp_path, monkeypatch):
    """The real missing-binary condition: nothing on PATH."""
    monkeypatch.setenv("PATH", str(tmp_path))


def test_without_dot_rich_display_falls_back_to_the_outline_and_warns(no_dot):
    p = release()
    with pytest.warns(UserWarning, match="apt-get install graphviz"):
        bundle = p._repr_mimebundle_()
    assert "image/svg+xml" not in bundle
    assert bundle["text/plain"].startswith(repr(p)) and "step_group tests" in bundle["text/plain"]
    assert bundle["text/html"].startswith("<pre>")
    trace = p.simulate()
    graph = p.render(trace)
    assert "digraph release" in graph.source  # DOT text needs no binary
    with pytest.warns(UserWarning, match="brew install graphviz"):
        picture = graph._repr_mimebundle_()
    assert picture["text/plain"] == outline(p, trace)


def test_without_dot_files_raise_graphviz_missing_with_install_hints(no_dot, tmp_path):
    p = release()
    for name in ("x.svg", "x.png"):
        with pytest.raises(GraphvizMissing) as info:
            to_file(p, tmp_path / name)
        message = str(info.value)
        for hint in (
            "apt-get install graphviz",
            "brew install graphviz",
            "conda install -c conda-forge graphviz",
        ):
            assert hint in message
    assert isinstance(info.value, nbp.PipelineError) and isinstance(info.value, RuntimeError)
    assert to_file(p, tmp_path / "x.dot").read_text(encoding="utf-8") == render(p).source


def test_to_file_writes_svg_png_and_dot(tmp_path):
    p, trace = sim_release()
    svg = to_file(p, tmp_path / "p.svg", trace)
    assert ">checkout</text>" in svg.read_text(encoding="utf-8")
    png = to_file(p, str(tmp_path / "p.png"), trace, direction="TB")
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    dot = to_file(p, tmp_path / "p.DOT", trace)
    assert dot.read_text(encoding="utf-8") == render(p, trace).source


def test_to_file_rejects_an_unknown_suffix_naming_the_allowed_ones(tmp_path):
    with pytest.raises(ValueError, match=r"\.svg, \.png, \.dot") as info:
        to_file(release(), tmp_path / "p.gif")
    assert "p.gif" in str(info.value)
    assert FORMATS == (".svg", ".png", ".dot")
    assert not (tmp_path / "p.gif").exists()


def test_rich_display_with_dot_present_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        release()._repr_mimebundle_()


# -- large pipelines are summarised (issue 31 item 10) ----------------------------------------------
def many_steps(stages: int = 10, groups: int = 100, per_group: int = 10) -> nbp.Pipeline:
    """``stages`` stages of one step then ``groups`` groups of ``per_group`` parallel steps."""
    p = nbp.Pipeline("big")
    for k in range(stages):
        with p.stage(f"s{k}") as s:
            s.step("first", duration=1)
            for g in range(groups):
                with s.step_group(f"g{g}") as group, group.parallel():
                    for j in range(per_group):
                        group.step(f"a{j}", duration=1)
    return p


def boxes(graph) -> int:
    """How many nodes a picture's DOT declares (steps, collapsed boxes, points, legend)."""
    return len(re.findall(r"^\s*(?:n\d+|more\d+)\s*\[", graph.source, flags=re.M))


def test_a_plan_above_the_size_limit_is_summarised_with_counts_and_says_how_to_get_all():
    p = many_steps()  # 10 stages × (1 + 100 groups × 10 steps) = 10,010 steps
    graph = nbp.render(p)
    assert boxes(graph) <= MAX_FULL_NODES  # on main: one box per step and group, 11,010
    assert "summary of 10,010 steps (step groups collapsed)" in graph.source
    assert "full=True" in graph.source
    # a group is one box with its step count; a long list shows its ends around "… N more"
    assert 'label="g0 — step group\\n10 steps (collapsed)"' in graph.source
    assert "… and 92 step groups more\\n920 steps in all" in graph.source  # 100 - 5 shown first - 3 last
    assert len(graph.outline_text.splitlines()) == OUTLINE_LINES + 1


def test_a_summary_counts_the_statuses_of_the_steps_a_box_holds():
    p = many_steps(stages=1, groups=60)
    trace = p.simulate(failures={"pipeline.stages.s0.spec.execution.steps.g3.steps.a0": True})
    source = nbp.render(p, trace).source
    assert "Success 9 · Failed 1" in source  # g3: ten parallel steps, one failed
    assert "… and 52 step groups more\\n520 steps in all\\nSkipped 520" in source  # after the failure


def test_full_true_draws_every_step_of_a_large_plan():
    p = many_steps(stages=1, groups=50)  # 501 steps, 50 groups: over the limit
    graph = nbp.render(p, full=True)
    assert boxes(graph) == 1 + 50 * 10 and graph.source.count("subgraph cluster_n") == 1 + 50
    assert "summary" not in graph.source


def test_a_plan_still_too_large_with_groups_collapsed_shows_each_stage_as_one_box():
    # 60 stages, each 10 parallel blocks of 10 steps: with groups collapsed and lists shortened
    # the picture would still hold 10 stages x 10 blocks x 10 steps = 1,000 boxes
    p = nbp.Pipeline("wide")
    for k in range(60):
        with p.stage(f"s{k}") as s:
            for b in range(10):
                with s.parallel():
                    for j in range(10):
                        s.step(f"b{b}_{j}", duration=1)
    graph = nbp.render(p)
    assert "summary of 6,000 steps (stages collapsed)" in graph.source
    assert boxes(graph) == SUMMARY_ITEMS  # 5 stages, "… and 51 stages more", 4 stages
    assert 'label="s0 — Custom stage\\n100 steps (collapsed)"' in graph.source
    assert "… and 51 stages more\\n5,100 steps in all" in graph.source


def test_a_small_plan_is_drawn_whole():
    assert "summary" not in nbp.render(many_steps(stages=1, groups=3)).source


def test_the_rich_display_of_a_large_pipeline_is_quick_and_bounded():
    p = many_steps()
    bundle = p._repr_mimebundle_()
    assert len(bundle["image/svg+xml"]) < 500_000  # on main: 10-15 MB, after 7-82 s of dot
    assert len(bundle["text/plain"].splitlines()) <= OUTLINE_LINES + 2


def test_every_dot_id_is_escaped_a_loaded_status_ending_in_a_backslash_renders():
    # issue 24 item 13: a Harness status is kept verbatim; `Odd\` went unescaped into the legend's
    # node id and `dot` failed with a syntax error (labels were escaped, ids were not)
    p, trace = sim_release()
    trace = trace.copy()
    odd = 'Odd:"x\\'
    trace["status"] = trace["status"].cat.add_categories([odd])
    trace.loc[trace["fqn"].str.endswith(".checkout"), "status"] = odd
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # graphviz warns "expect syntax error" on a bad id
        picture = render(p, trace)
        svg = picture.pipe("svg").decode()
    assert "Odd:&quot;x\\" in svg


def test_an_iteration_postfix_a_dot_id_cannot_hold_is_numbered_instead():
    # an expanded iteration's postfix comes from the trace's FQNs (any text in a loaded run)
    p = nbp.Pipeline("p")
    with p.stage("a") as a:
        a.step("build", strategy=nbp.Matrix(os=["l", "m"]), duration=3)
    trace = p.simulate()
    steps = "pipeline.stages.a.spec.execution.steps"
    odd = {f"{steps}.build_0": f"{steps}.build_x:y\\"}
    trace["fqn"] = trace["fqn"].replace(odd)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        picture = p.render(trace, iterations="expand")
        svg = picture.pipe("svg").decode()
    assert "build_x:y\\" in svg and "build_1" in svg
