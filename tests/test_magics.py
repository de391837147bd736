"""The IPython magics, driven through a real ``InteractiveShell`` (and once through a real kernel).

A pipeline is built over many cells, cells are re-run, the pipeline runs with its bodies in the
shell's namespace, and the result is compared with the same pipeline built with the Python API:
equal plans (kind, FQN, block of every node) and equal structure; only the bodies differ
(code text here, callables there).
"""

from __future__ import annotations

import doctest
import re
import subprocess
import sys
from collections.abc import Iterator

import nbformat
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from nbclient import NotebookClient

import notebook_pipelines as nbp
from notebook_pipelines.definition import validation
from notebook_pipelines.errors import RunFailed
from notebook_pipelines.formats.yaml_io import YamlWarning
from notebook_pipelines.frontends import magics
from notebook_pipelines.frontends.magics import building

# The quickstart pipeline, one magic cell per entry (a cell magic's body after its first line).
QUICKSTART_CELLS = [
    "%pipeline release --var env=prod",
    "%stage build",
    "%%step checkout\nlog.append('checkout')",
    "%%step_group tests\nunit, lint          # block 1: together\nintegration, e2e    # block 2",
    "%%step unit --group tests\nlog.append('unit')",
    "%%step lint --group tests\nlog.append('lint')",
    "%%step integration --group tests\nlog.append('integration')",
    "%%step e2e --group tests\nlog.append('e2e')",
    "%%step package --outputs artifact\nartifact = 'release-1.0.tgz'",
    "%stage deploy_eu",
    "%%step rollout\nlog.append('rollout eu')",
    "%stage deploy_us --parallel-with deploy_eu",
    "%%step rollout\nlog.append('rollout us')",
]


def quickstart_api() -> nbp.Pipeline:
    """The same pipeline through the Python API (the README's quickstart), with callable bodies."""

    def body() -> None:
        return None

    p = nbp.Pipeline("release", variables={"env": "prod"})
    with p.stage("build") as build:
        build.step("checkout", run=body)
        with build.step_group("tests") as tests:
            with tests.parallel():
                tests.step("unit", run=body)
                tests.step("lint", run=body)
            with tests.parallel():
                tests.step("integration", run=body)
                tests.step("e2e", run=body)
        build.step("package", run=body)
    with p.parallel():
        with p.stage("deploy_eu") as eu:
            eu.step("rollout", run=body)
        with p.stage("deploy_us") as us:
            us.step("rollout", run=body)
    return p


def shape(items: list) -> list:
    """The structure of a definition without bodies: kinds, ids and blocks, recursively."""
    out: list = []
    for item in items:
        if isinstance(item, nbp.Parallel):
            out.append(("parallel", shape(item.items)))
        elif isinstance(item, nbp.Stage | nbp.StepGroup):
            out.append((type(item).__name__, item.id, shape(item.items), shape(item.rollback_items)))
        else:
            out.append(("step", item.id))
    return out


def plan_rows(p: nbp.Pipeline) -> list[tuple]:
    return [(n.kind, n.fqn, n.block) for n in p.plan().nodes]


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    """A real IPython shell with a fresh namespace and fresh magics (as after %load_ext)."""
    sh = InteractiveShell.instance()
    sh.reset(new_session=False)
    nbp.load_ipython_extension(sh)  # re-registering replaces the magics: no state from other tests
    sh.user_ns["log"] = []
    yield sh
    sh.reset(new_session=False)


def cell(sh: InteractiveShell, capsys: pytest.CaptureFixture, text: str, cell_id: str | None = None) -> str:
    """Run one cell as the notebook would (JupyterLab sends the cell's id); return what it
    printed; fail on any error."""
    capsys.readouterr()
    result = sh.run_cell(text, cell_id=cell_id)
    out = capsys.readouterr()
    assert result.success, f"cell failed: {text!r}\n{out.out}\n{out.err}"
    return out.out


def build_quickstart(sh: InteractiveShell, capsys: pytest.CaptureFixture) -> list[str]:
    """Run the quickstart cells; cell ``i`` has the id ``q{i}``."""
    return [cell(sh, capsys, text, f"q{i}") for i, text in enumerate(QUICKSTART_CELLS)]


# -- loading ----------------------------------------------------------------------------------
def test_load_ext_registers_the_magics(shell: InteractiveShell) -> None:
    shell.extension_manager.load_extension("notebook_pipelines")
    for name in ("pipeline", "stage", "step_group"):
        assert shell.find_line_magic(name) is not None
    for name in ("step", "step_group"):
        assert shell.find_cell_magic(name) is not None


def test_importing_the_package_does_not_import_ipython() -> None:
    code = "import sys, notebook_pipelines; print('IPython' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_every_magic_has_help_with_an_example(shell: InteractiveShell, capsys: pytest.CaptureFixture) -> None:
    for query, options in [
        ("%pipeline?", ["--rules", "--seed", "--fail", "--columns", "delete"]),
        ("%stage?", ["--parallel-with", "--when", "--resource"]),
        ("%step_group?", ["--group", "--parallel-with", "layout"]),
        ("%%step?", ["--group", "--timeout", "--when", "--retry", "--outputs", "--duration"]),
    ]:
        help_text = cell(shell, capsys, query)
        assert "Example::" in help_text, query
        for option in options:
            assert option in help_text, (query, option)


def test_plain_function_doctests_pass() -> None:
    failures, tried = doctest.testmod(building, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried > 5 and failures == 0


# -- building cell by cell --------------------------------------------------------------------
def test_quickstart_built_with_magics_has_the_plan_of_the_python_api(
    shell: InteractiveShell, capsys: pytest.CaptureFixture
) -> None:
    build_quickstart(shell, capsys)
    p = shell.user_ns["release"]
    api = quickstart_api()
    assert isinstance(p, nbp.Pipeline)
    assert plan_rows(p) == plan_rows(api)
    assert shape(p.stages) == shape(api.stages)
    assert p.variables == api.variables == {"env": "prod"}
    assert p.rules == api.rules
    bodies = [n.body for n in p.plan().steps]
    assert all(isinstance(b, str) for b in bodies)  # code text, the API has callables


def test_each_cell_prints_a_one_line_diff_and_where_the_node_sits(
    shell: InteractiveShell, capsys: pytest.CaptureFixture
) -> None:
    outs = build_quickstart(shell, capsys)
    assert outs[0] == "pipeline `release` started (classic rules); the variable `release` holds it\n"
    assert outs[2] == "step `checkout` added to stage `build`, block 0\nrelease › build: [checkout]\n"
    assert outs[3].splitlines() == [
        "group `tests` added to stage `build`, block 1",
        "release › build: checkout → [tests]",
        "tests: unit ∥ lint → integration ∥ e2e",
    ]
    assert outs[7].splitlines() == [
        "step `e2e` defined in group `tests`, block 1",
        "release › build › tests: unit ∥ lint → integration ∥ [e2e]",
    ]
    assert outs[11].splitlines() == [
        "pipeline `release`: block 1 gained `deploy_us`",
        "release: build → deploy_eu ∥ [deploy_us]",
    ]


def test_a_cells_block_number_is_the_traces_block(
    shell: InteractiveShell, capsys: pytest.CaptureFixture
) -> None:
    """ "block N" in a magic's message names the node whose trace rows say ``block == N``
    (issue 30: the magics counted from 1, the trace from 0)."""
    outs = build_quickstart(shell, capsys)
    trace = shell.user_ns["release"].simulate(seed=1)
    block = dict(zip(trace.fqn.str.rsplit(".", n=1).str[-1], trace.block))
    said = {}
    for out in outs:
        found = re.match(
            r"(?:step|group|stage) `(\w+)` (?:added to|defined in) .*, block (\d+)$", out.splitlines()[0]
        )
        if found:
            said[found[1]] = int(found[2])
    # checkout is the first node of `build` (block 0), the group `tests` its second (block 1),
    # e2e is in the group's second block (block 1), deploy_eu the pipeline's second (block 1)
    assert said["checkout"] == block["checkout"] == 0
    assert said["tests"] == block["tests"] == 1
    assert said["e2e"] == block["e2e"] == 1
    assert said["deploy_eu"] == block["deploy_eu"] == 1


def test_R5_parallel_with_joins_a_sibling_block(
    shell: InteractiveShell, capsys: pytest.CaptureFixture
) -> None:
    cell(shell, capsys, "%pipeline p\n%stage s")
    cell(shell, capsys, "%step_group tests")
    cell(shell, capsys, "%%step unit --group tests\npass")
    out = cell(shell, capsys, "%%step lint --group tests --parallel-with unit\npass")
    assert out.splitlines()[0] == "group `tests`: block 0 gained `lint`"
    cell(shell, capsys, "%%step integration --group tests\npass")
    out = cell(shell, capsys, "%%step e2e --group tests --parallel-with integration\npass")
    assert out.splitlines() == [
        "group `tests`: block 1 gained `e2e`",
        "p › s › tests: unit ∥ lint → integration ∥ [e2e]",
    ]
    tests = shell.user_ns["p"].find("s").find("tests")
    assert shape(tests.items) == shape(quickstart_api().find("build").find("tests").items)


def test_rerunning_a_cell_redefines_the_step_in_its_place_never_duplicates(
    shell: InteractiveShell, capsys: pytest.CaptureFixture
) -> None:
    build_quickstart(shell, capsys)
    p = shell.user_ns["release"]
    rows = plan_rows(p)
    same = cell(shell, capsys, "%%step unit --group tests\nlog.append('unit')", "q4")
    assert same.splitlines()[0] == "step `unit` unchanged"
    changed = cell(shell, capsys, "%%step unit --group tests --retry 2\nlog.append('unit v2')", "q4")
    assert changed.splitlines() == [
        "step `unit` changed (body, retry)",
        "release › build › tests: [unit] ∥ lint → integration ∥ e2e",  # still in its parallel block
    ]
    assert plan_rows(p) == rows
    unit = p.find("build").find("tests").find("unit")
    assert unit.run == "log.append('unit v2')"
    assert unit.failure_strategies == [nbp.OnFailure(action=nbp.Retry(2))]
    again = cell(shell, capsys, "%stage build")  # selecting the stage again keeps its steps
    assert again.splitlines()[0] == "stage `build` unchanged"
    assert plan_rows(p) == rows


def test_cells_never_run_the_step_code_at_definition_time(
    shell: InteractiveShell, capsys: pytest.CaptureFixture
) -> None:
    cell(shell, capsys, "%pipeline p\n%stage s")
    cell(shell, capsys, "%%step boom\nlog.append('ran')\nraise RuntimeError('must not run now')")
    assert shell.user_ns["log"] == []


def test_a_cell_rerun_after_moving_on_lands_in_its_own_stage(
    shell: InteractiveShell, capsys: pytest.CaptureFixture
) -> None:
    build_quickstart(shell, capsys)  # the current stage is now deploy_us
    rows = plan_rows(shell.user_ns["release"])
    out = cell(shell, capsys, "%%step checkout\nlog.append('checkout v2')", "q2")  # the same cell again
    assert out.splitlines() == [
        "step `checkout` changed (body)",
        "release › build: [checkout] → tests → package",
    ]
    out = cell(shell, capsys, "%%step_group tests\nunit, lint\nintegration, e2e", "q3")
    assert out.splitlines()[0] == "group `tests` unchanged"
    assert plan_rows(shell.user_ns["release"]) == rows


def test_a_cell_with_outputs_rerun_after_moving_on_redefines_its_step_in_its_own_stage(
    shell: InteractiveShell, capsys: pytest.CaptureFixture
) -> None:
    """``--outputs`` names must not replace the pipeline's name the cell remembers."""
    build_quickstart(shell, capsys)  # `package --outputs artifact` is cell q8, in build
    cell(shell, capsys, "%stage deploy_eu")
    out = cell(shell, capsys, "%%step package --outputs artifact\nartifact = 'release-1.1.tgz'", "q8")
    assert out.splitlines() == [
        "step `package` changed (body)",
        "release › build: checkout → tests → [package]",
    ]
    p = shell.user_ns["release"]
    packages = [n.fqn for n in p.plan().nodes if n.id == "package"]
    assert packages == ["pipeline.stages.build.spec.execution.steps.package"]  # no copy in deploy_eu


def test_without_cell_ids_a_group_is_found_anywhere_and_a_copied_step_gets_a_hint(
    shell: InteractiveShell, capsys: pytest.CaptureFixture
) -> None:
    build_quickstart(shell, capsys)  # then cells without ids (terminal IPython, nbclient)
    out = cell(shell, capsys, "%%step e2e --group tests\nlog.append('e2e v2')")
    assert out.splitlines()[0] == "step `e2e` changed (body)"
    out = cell(shell, capsys, "%%step checkout\nlog.append('checkout')")
    assert out.splitlines()[0] == "step `checkout` added to stage `deploy_us`, block 1"
    assert (
        out.splitlines()[-1] == "(stage `build` has a step `checkout` too: --stage build redefines that one)"
    )
    cell(shell, capsys, "%pipeline delete deploy_us.checkout")
    out = cell(shell, capsys, "%%step checkout --stage build\nlog.append('checkout')")
    assert out.splitlines()[0] == "step `checkout` unchanged"


def test_a_group_layout_cell_reorders_keeps_bodies_and_drops_unlisted_steps(
    shell: InteractiveShell, capsys: pytest.CaptureFixture
) -> None:
    build_quickstart(shell, capsys)
    out = cell(shell, capsys, "%%step_group tests\nunit, lint\nintegration\nsmoke, e2e", "q3")
    assert out.splitlines()[0] == "group `tests`: block 2 gained `smoke`; `e2e` moved to block 2"
    out = cell(shell, capsys, "%%step_group tests\nunit\nintegration, e2e", "q3")
    assert out.splitlines()[0] == "group `tests`: `lint` removed; `smoke` removed; `e2e` moved to block 1"
    tests = shell.user_ns["release"].find("build").find("tests")
    assert shape(tests.items) == [("step", "unit"), ("parallel", [("step", "integration"), ("step", "e2e")])]
    assert tests.find("e2e").run == "log.append('e2e')"  # the body survived the new layout


def test_deleting_a_step_and_an_ambiguous_name(
    shell: InteractiveShell, capsys: pytest.CaptureFixture
) -> None:
    build_quickstart(shell, capsys)
    out = cell(shell, capsys, "%pipeline delete e2e")
    assert out.splitlines() == [
        "step `e2e` deleted from group `tests`",
        "release › build › tests: unit ∥ lint → integration",
    ]
    shell.run_line_magic("stage", "build")
    with pytest.raises(UsageError, match=r"names several nodes .*deploy_eu\.rollout, deploy_us\.rollout"):
        shell.run_line_magic("pipeline", "delete rollout")
    cell(shell, capsys, "%pipeline delete deploy_eu.rollout")
    assert shell.user_ns["release"].find("deploy_eu").items == []


def test_R35_rollback_option_moves_a_step_to_the_rollback_list(
    shell: InteractiveShell, capsys: pytest.CaptureFixture
) -> None:
    cell(shell, capsys, "%pipeline p\n%stage s")
    cell(shell, capsys, "%%step deploy\npass")
    out = cell(shell, capsys, "%%step undo --rollback\npass")
    assert out.splitlines() == [
        "step `undo` added to stage `s` rollback, block 0",
        "p › s › rollback: [undo]",
    ]
    stage = shell.user_ns["p"].find("s")
    assert [n.id for n in stage.rollback_items] == ["undo"] and [n.id for n in stage.items] == ["deploy"]


def test_R6_nested_group_under_current_rules(shell: InteractiveShell, capsys: pytest.CaptureFixture) -> None:
    cell(shell, capsys, "%pipeline p --rules current\n%stage s")
    cell(shell, capsys, "%step_group outer")
    out = cell(shell, capsys, "%step_group inner --group outer")
    assert out.splitlines()[0] == "group `inner` added to group `outer`, block 0"
    cell(shell, capsys, "%%step a --group inner\npass")
    assert [n.fqn for n in shell.user_ns["p"].plan().steps] == [
        "pipeline.stages.s.spec.execution.steps.outer.steps.inner.steps.a"
    ]


def test_the_pipeline_is_a_plain_object_shared_with_the_python_api(
    shell: InteractiveShell, capsys: pytest.CaptureFixture
) -> None:
    cell(shell, capsys, "%pipeline p\n%stage s")
    cell(shell, capsys, "p.find('s').step('from_python', duration='2s')")
    out = cell(shell, capsys, "%%step from_magic\npass")
    assert out.splitlines()[-1] == "p › s: from_python → [from_magic]"
    cell(shell, capsys, "p = 1")
    with pytest.raises(UsageError, match="no longer holds a Pipeline"):
        shell.run_cell_magic("step", "x", "pass")


# -- running ------------------------------------------------------------------------------------
def test_run_executes_bodies_in_the_user_namespace_and_exports_outputs(
    shell: InteractiveShell, capsys: pytest.CaptureFixture, no_worker_leak: None
) -> None:
    build_quickstart(shell, capsys)
    cell(shell, capsys, "%%step unit --group tests\nlog.append('unit v2')")  # a re-run cell
    out = cell(shell, capsys, "%pipeline run")
    assert out == "pipeline `release` ended Success: 8 steps — 8 Success\n"
    log = shell.user_ns["log"]
    assert sorted(log) == sorted(
        ["checkout", "unit v2", "lint", "integration", "e2e", "rollout eu", "rollout us"]
    )
    assert log[0] == "checkout" and set(log[1:3]) == {"unit v2", "lint"}  # blocks in order
    assert shell.user_ns["artifact"] == "release-1.0.tgz"  # the body ran in the notebook namespace
    table = shell.run_line_magic("pipeline", "trace --steps --columns step,status,attempt,outputs")
    assert list(table.columns) == ["step", "status", "attempt", "outputs"]
    assert table["status"].astype(str).tolist() == ["Success"] * 8
    assert table.set_index("step").loc["package", "outputs"] == {"artifact": "release-1.0.tgz"}
    full = shell.run_line_magic("pipeline", "trace --all")
    assert list(full.columns) == list(nbp.COLUMNS) and full is not None


def test_a_missing_output_fails_the_step_with_a_clear_error(
    shell: InteractiveShell, capsys: pytest.CaptureFixture, no_worker_leak: None
) -> None:
    cell(shell, capsys, "%pipeline p\n%stage s")
    cell(shell, capsys, "%%step make --outputs result\nother = 1")
    out = cell(shell, capsys, "%pipeline run")
    assert out.splitlines()[0] == "pipeline `p` ended Failed: 1 step — 1 Failed"
    assert "did not assign its output(s) result" in out.splitlines()[1]
    with pytest.raises(RunFailed):
        shell.run_line_magic("pipeline", "run --check")


def test_simulate_is_deterministic_and_injects_failures(
    shell: InteractiveShell, capsys: pytest.CaptureFixture
) -> None:
    build_quickstart(shell, capsys)
    cell(shell, capsys, "%%step unit --group tests --retry 1 --duration 30s\nlog.append('unit')")
    out = cell(shell, capsys, "%pipeline simulate --seed 0 --default 5s --fail unit:1")
    assert out == "pipeline `release` ended Success in 1m 20s (virtual time): 8 steps — 8 Success\n"
    table = shell.run_line_magic("pipeline", "trace --steps --columns step,attempt,status,start_s,end_s")
    unit = table[table["step"] == "unit"]
    assert unit[["attempt", "status"]].astype(str).values.tolist() == [["1", "Failed"], ["2", "Success"]]
    assert unit["end_s"].tolist() == [35.0, 65.0]
    assert shell.user_ns["log"] == []  # a simulation runs no bodies


def test_simulate_merges_fail_specs_for_one_step_as_the_command_line_does(
    shell: InteractiveShell, capsys: pytest.CaptureFixture
) -> None:
    cell(shell, capsys, "%pipeline p\n%stage s")
    cell(shell, capsys, "%%step a --retry 3\npass")
    out = cell(shell, capsys, "%pipeline simulate --fail a:1 --fail a:2:Timeout")
    assert out == "pipeline `p` ended Success in 3s (virtual time): 1 step — 1 Success\n"
    table = shell.run_line_magic("pipeline", "trace --steps --columns attempt,status,error_type")
    assert table.fillna("").astype(str).values.tolist() == [  # attempts 1, 2: the last error type
        ["1", "Failed", "Timeout"],
        ["2", "Failed", "Timeout"],
        ["3", "Success", ""],
    ]


def test_run_summary_lists_a_group_that_failed_on_its_own_as_the_engine_summary_does() -> None:
    def broken(ctx: nbp.StepContext) -> bool:
        raise ZeroDivisionError("division by zero")

    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.step_group("g", when=broken) as g:
        g.step("a")
    trace = p.simulate()
    lines = magics.run_summary(trace, virtual=True).splitlines()
    assert lines[0].startswith("pipeline `p` ended Failed in ")
    assert lines[1:] == [
        "  ✗ pipeline.stages.s.spec.execution.steps.g — Failed (Unknown): "
        "the condition raised ZeroDivisionError: division by zero"
    ]
    assert lines[1:] == nbp.engine.running.summary(trace).splitlines()[1:]


def test_validate_prints_valid_or_every_problem(
    shell: InteractiveShell, capsys: pytest.CaptureFixture
) -> None:
    cell(shell, capsys, "%pipeline p\n%stage s")
    out = cell(shell, capsys, "%pipeline validate")
    assert out.startswith("1 problem in the pipeline definition:\n  - pipeline.stages.s:")
    cell(shell, capsys, "%%step a\npass")
    assert cell(shell, capsys, "%pipeline validate") == "valid\n"


def test_show_text_prints_the_outline(shell: InteractiveShell, capsys: pytest.CaptureFixture) -> None:
    build_quickstart(shell, capsys)
    from notebook_pipelines.views.rendering import outline

    out = cell(shell, capsys, "%pipeline show --text")
    assert out == outline(shell.user_ns["release"]) + "\n"
    assert "    step_group tests" in out.splitlines()


def test_show_displays_the_picture_coloured_by_the_last_trace(
    shell: InteractiveShell, capsys: pytest.CaptureFixture
) -> None:
    build_quickstart(shell, capsys)
    with capture_output() as plain:
        shell.run_line_magic("pipeline", "show")
    cell(shell, capsys, "%pipeline simulate --fail e2e")
    with capture_output() as coloured:
        shell.run_line_magic("pipeline", "show --trace")
    svg, svg_run = (c.outputs[0].data["image/svg+xml"] for c in (plain, coloured))
    assert "<svg" in svg and "integration" in svg
    assert svg_run != svg  # the statuses of the run are drawn


def test_pipeline_alone_tells_the_current_pipeline_and_stage(
    shell: InteractiveShell, capsys: pytest.CaptureFixture
) -> None:
    build_quickstart(shell, capsys)
    out = cell(shell, capsys, "%pipeline")
    assert out == "pipeline `release` (classic rules), stage `deploy_us`: build → deploy_eu ∥ [deploy_us]\n"


def test_yaml_prints_the_harness_yaml(shell: InteractiveShell, capsys: pytest.CaptureFixture) -> None:
    build_quickstart(shell, capsys)
    with pytest.warns(YamlWarning, match="a Python body"):  # code-text bodies have no Harness form
        out = cell(shell, capsys, "%pipeline yaml")
    with pytest.warns(YamlWarning):
        expected = shell.user_ns["release"].to_yaml()
    assert out == expected.rstrip("\n") + "\n"
    assert "stepGroup:" in out and "identifier: deploy_us" in out


def test_the_yaml_warning_points_at_the_cell_not_the_library_or_ipython(
    shell: InteractiveShell, capsys: pytest.CaptureFixture
) -> None:
    # the notebook shows a warning's file:line and that line: the cell's `%pipeline yaml`, not a
    # line of notebook_pipelines (definition/verbs.py) nor of IPython's magic machinery
    build_quickstart(shell, capsys)
    with pytest.warns(YamlWarning, match="a Python body") as caught:
        cell(shell, capsys, "%pipeline yaml")
    (where,) = {w.filename for w in caught if isinstance(w.message, YamlWarning)}
    assert "notebook_pipelines" not in where and "IPython" not in where, where


# -- mistakes -----------------------------------------------------------------------------------
MISTAKES = [
    ("", ("cell", "step", "a", "pass"), "no current pipeline: start one with `%pipeline NAME`"),
    ("%pipeline p", ("cell", "step", "a", "pass"), "step `a` is outside a stage"),
    (
        "%pipeline p\n%stage s",
        ("cell", "step", "a --group nope", "pass"),
        "no step group `nope` in pipeline `p` (groups: none)",
    ),
    ("%pipeline p\n%stage s", ("cell", "step", "a --stage nope", "pass"), "no stage `nope` in pipeline `p`"),
    (
        "%pipeline p\n%stage s",
        ("cell", "step", "a --timeout soon", "pass"),
        "cannot read the duration 'soon'",
    ),
    (
        "%pipeline p\n%stage s",
        ("cell", "step", "a --retry", "pass"),
        "argument --retry: expected one argument",
    ),
    ("%pipeline p\n%stage s", ("cell", "step", "a --bogus", "pass"), "unrecognized arguments: --bogus"),
    ("%pipeline p\n%stage s", ("cell", "step", "a", "!ls"), "the body does not compile"),
    ("%pipeline p\n%stage s", ("cell", "step", "a --outputs a-b", "pass"), "`a-b` is not a Python name"),
    ("%pipeline p\n%stage s", ("cell", "step", "a --when '<+a> =='", "pass"), "--when '<+a> =='"),
    (
        "%pipeline p\n%stage s",
        ("cell", "step", "a --parallel-with b", "pass"),
        "no `b` here to run in parallel",
    ),
    ("%pipeline p\n%stage s", ("cell", "step", "1a", "pass"), "step id `1a` is not an identifier"),
    ("%pipeline p\n%stage s", ("cell", "step", "a --when 'x", "pass"), "check the quotes"),
    ("%pipeline p\n%stage s", ("cell", "step_group", "g", "a, 1b"), "layout line 1: `1b` is not a step id"),
    ("%pipeline p\n%stage s", ("cell", "step_group", "g", "a\na"), "layout line 2: `a` is listed twice"),
    ("%pipeline p\n%stage s;;%%step a\npass", ("cell", "step", "a", "pass ("), "line 1"),
    ("%pipeline p\n%stage s;;%%step a\npass", ("line", "step_group", "a"), "is a Step, not a step group"),
    ("%pipeline p\n%stage s;;%%step a\npass", ("line", "stage", "t --parallel-with a"), "no `a` here"),
    ("", ("line", "pipeline", "p --rules modern"), "invalid choice: 'modern'"),
    ("", ("line", "pipeline", "run"), "no current pipeline"),
    ("", ("line", "pipeline", "9lives"), "must be a Python identifier"),
    ("%pipeline p", ("line", "pipeline", "run --seed 3"), "--seed does not apply to `%pipeline run`"),
    (
        "%pipeline p\n%stage s;;%%step a\npass",
        ("line", "pipeline", "simulate --fail g:x"),
        "neither attempt numbers",
    ),
    (
        "%pipeline p\n%stage s;;%%step a\npass",
        ("line", "pipeline", "simulate --fail nope"),
        "--fail: no step of pipeline 'p' matches 'nope' (keys are step ids, FQNs or globs); steps: a",
    ),
    (
        "%pipeline p\n%stage s;;%%step build\npass",
        ("line", "pipeline", "simulate --fail biuld"),
        "did you mean 'build'?",
    ),
    ("%pipeline p\n%stage s;;%%step a\npass", ("line", "pipeline", "simulate --seed -1"), "--seed -1: give"),
    ("%pipeline never_run", ("line", "pipeline", "trace"), "no trace of `never_run` yet"),
    ("%pipeline p", ("line", "pipeline", "run"), "pipeline `p` is not valid (1 problem"),
    ("%pipeline p", ("line", "pipeline", "delete ghost"), "nothing named `ghost`"),
    ("%pipeline p\n%stage s", ("line", "pipeline", "trace --columns nope"), None),
    ("%pipeline p\n%stage s", ("cell", "step", "a", "-" * 100_000), "the body is nested too deeply"),
]


@pytest.mark.parametrize(("setup", "call", "message"), MISTAKES)
def test_user_mistakes_are_one_line_usage_errors(
    shell: InteractiveShell, capsys: pytest.CaptureFixture, setup: str, call: tuple, message: str | None
) -> None:
    for text in setup.split(";;"):  # the cells to run first
        cell(shell, capsys, text)
    if message is None:  # needs a trace first
        cell(shell, capsys, "%%step a\npass")
        cell(shell, capsys, "%pipeline simulate")
        message = "no trace column `nope`"
    p = shell.user_ns.get("p")
    before = shape(p.stages) if p is not None else None
    with pytest.raises(UsageError) as info:
        if call[0] == "cell":
            shell.run_cell_magic(call[1], call[2], call[3])
        else:
            shell.run_line_magic(call[1], call[2])
    text = str(info.value)
    assert message in text
    assert "\n" not in text
    if p is not None:
        assert shape(p.stages) == before  # a mistake changes nothing


@pytest.mark.parametrize("ident", ["a", "_x", "step_2", "a$b", "_$", "$y", "$", "1st", "a-b", "é"])
def test_R1_magics_accept_exactly_the_ids_validation_accepts(
    shell: InteractiveShell, capsys: pytest.CaptureFixture, ident: str
) -> None:
    valid = not validation.problems(nbp.Pipeline("p", stages=[nbp.Stage("s", items=[nbp.Step(ident)])]))
    cell(shell, capsys, "%pipeline p")
    for kind, line, body in (("step", ident, "pass"), ("step_group", ident, "x"), ("stage", ident, None)):
        cell(shell, capsys, f"%stage in_{kind}")  # a fresh stage for each kind of node
        if valid:
            shell.run_cell_magic(kind, line, body) if body else shell.run_line_magic(kind, line)
        else:
            with pytest.raises(UsageError, match="is not an identifier"):
                shell.run_cell_magic(kind, line, body) if body else shell.run_line_magic(kind, line)


def test_an_invalid_pipeline_with_a_caret_problem_is_still_a_one_line_usage_error(
    shell: InteractiveShell, capsys: pytest.CaptureFixture
) -> None:
    cell(shell, capsys, "%pipeline p --var x=1\n%stage s")
    cell(
        shell,
        capsys,
        "%%step a --when '<+pipeline.variables.x> == 1 && <+pipeline.variables.nope> > 1'\npass",
    )
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("pipeline", "run")
    text = str(info.value)
    assert "pipeline `p` is not valid (1 problem" in text and "[R42]" in text and "\n" not in text


def test_a_usage_error_shows_one_line_without_a_traceback(
    shell: InteractiveShell, capsys: pytest.CaptureFixture
) -> None:
    capsys.readouterr()
    result = shell.run_cell("%%step a\npass")
    out = capsys.readouterr()
    assert isinstance(result.error_in_exec, UsageError)
    shown = (out.out + out.err).strip()
    assert shown == "UsageError: no current pipeline: start one with `%pipeline NAME`"


def test_a_name_holding_something_else_is_not_taken_over(shell: InteractiveShell) -> None:
    shell.user_ns["release"] = 42
    with pytest.raises(UsageError, match="already a variable holding a int"):
        shell.run_line_magic("pipeline", "release")
    assert shell.user_ns["release"] == 42


@pytest.mark.parametrize("name", ["print", "list", "id"])
def test_a_pipeline_name_that_would_hide_a_builtin_is_refused_unless_forced(
    shell: InteractiveShell, capsys: pytest.CaptureFixture, name: str
) -> None:
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("pipeline", name)
    text = str(info.value)
    assert text == (
        f"`{name}` is a Python builtin: a pipeline of that name would hide it in this notebook; "
        "choose another name, or pass --force"
    )
    assert name not in shell.user_ns  # the builtin is still what the name means
    out = cell(shell, capsys, f"%pipeline {name} --force")
    assert out.strip() == (
        f"pipeline `{name}` started (classic rules); the variable `{name}` holds it "
        f"(it hides the builtin `{name}`: `del {name}` brings it back)"
    )
    assert isinstance(shell.user_ns[name], nbp.Pipeline)
    out = cell(shell, capsys, f"%pipeline {name}")  # selecting it again needs no --force
    assert out.strip() == f"pipeline `{name}` selected (0 stages)"


@pytest.mark.parametrize("value", [42, None, [1, 2]])
def test_a_name_holding_another_value_is_replaced_only_with_force(
    shell: InteractiveShell, capsys: pytest.CaptureFixture, value: object
) -> None:
    shell.user_ns["release"] = value
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("pipeline", "release")
    kind = type(value).__name__
    assert str(info.value) == (
        f"`release` is already a variable holding a {kind}; choose another pipeline name, "
        "`del release` first, or pass --force to replace it"
    )
    assert shell.user_ns["release"] == value
    out = cell(shell, capsys, "%pipeline release --force")
    assert out.strip().endswith(f"the variable `release` holds it (it held a {kind})")
    assert isinstance(shell.user_ns["release"], nbp.Pipeline)


def test_force_applies_to_a_pipeline_name_only(
    shell: InteractiveShell, capsys: pytest.CaptureFixture
) -> None:
    cell(shell, capsys, "%pipeline p")
    with pytest.raises(UsageError, match=r"^--force does not apply to `%pipeline run`$"):
        shell.run_line_magic("pipeline", "run --force")


def test_magic_lines_are_not_variable_expanded(
    shell: InteractiveShell, capsys: pytest.CaptureFixture
) -> None:
    shell.user_ns["env"] = "EXPANDED"
    cell(shell, capsys, "%pipeline p\n%stage s")
    cell(shell, capsys, "%%step a --when \"<+pipeline.variables.env> == 'prod'\" --name '$env'\npass")
    step = shell.user_ns["p"].find("s").find("a")
    assert step.when == nbp.When("Success", "<+pipeline.variables.env> == 'prod'") and step.name == "$env"


# -- a real kernel ------------------------------------------------------------------------------
@pytest.mark.kernel
def test_magics_through_a_real_kernel(tmp_path) -> None:
    sources = [
        "%load_ext notebook_pipelines",
        "%pipeline demo",
        "%stage s",
        "%%step a --outputs answer\nanswer = 6 * 7",
        "%%step b --parallel-with a\nseen = 'b'",
        "%%step a --outputs answer\nanswer = 6 * 7",
        "%pipeline run",
        "%pipeline trace --steps --columns step,status,outputs",
        "print(answer, seen, type(demo).__name__)",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    def text(i: int) -> str:
        return "".join(o.get("text", "") for o in nb.cells[i].outputs if o.output_type == "stream")

    assert text(4).splitlines() == ["stage `s`: block 0 gained `b`", "demo › s: a ∥ [b]"]
    assert text(5).splitlines()[0] == "step `a` unchanged"
    assert text(6) == "pipeline `demo` ended Success: 2 steps — 2 Success\n"
    table = nb.cells[7].outputs[0]["data"]["text/plain"]
    assert "{'answer': 42}" in table
    assert text(8) == "42 b Pipeline\n"


# -- on a Dask cluster ------------------------------------------------------------------------
def test_pipeline_run_dask_runs_the_code_bodies_on_the_cluster_at_the_address(
    shell: InteractiveShell, capsys: pytest.CaptureFixture
) -> None:
    """``%pipeline run --dask ADDRESS`` (issue 16): bodies on the workers, with a copy of the
    notebook variables they name; assignments stay there, ``--outputs`` come back."""
    from distributed import Client, LocalCluster

    shell.user_ns["base"] = 10
    for text in ("%pipeline job", "%stage s", "%%step add --outputs total\ntotal = base + 5"):
        cell(shell, capsys, text)
    with (
        LocalCluster(
            n_workers=1, processes=False, protocol="tcp", host="127.0.0.1", dashboard_address=":0"
        ) as lc,
        Client(lc) as client,
    ):
        try:
            out = cell(shell, capsys, f"%pipeline run --dask {lc.scheduler_address}")
            trace = shell.run_line_magic("pipeline", "trace --steps --columns step,outputs,worker")
            workers = set(client.scheduler_info()["workers"])
        finally:
            for executor in magics_of(shell).dask.values():
                executor.shutdown()  # the connection the magic opened and kept
    assert out == "pipeline `job` ended Success: 1 step — 1 Success\n"
    assert trace["outputs"].tolist() == [{"total": 15}]
    assert trace["worker"].iloc[0] in workers
    assert "total" not in shell.user_ns


def test_pipeline_run_dask_with_no_scheduler_there_is_a_usage_error(
    shell: InteractiveShell, capsys: pytest.CaptureFixture
) -> None:
    for text in ("%pipeline job", "%stage s", "%%step a\npass"):
        cell(shell, capsys, text)
    with pytest.raises(UsageError, match=r"^--dask tcp://127.0.0.1:9: cannot reach the Dask scheduler at"):
        shell.run_line_magic("pipeline", "run --dask tcp://127.0.0.1:9")


def magics_of(sh: InteractiveShell) -> magics.PipelineMagics:
    return sh.magics_manager.registry["PipelineMagics"]


def test_pipeline_suggest_returns_the_design_assistants_suggestions(
    shell: InteractiveShell, capsys: pytest.CaptureFixture
) -> None:
    # issue 19: three independent 5 s steps; with build:test pinned, [build → test ‖ docs] = 10 s
    cell(shell, capsys, "%pipeline free\n%stage s")
    for name in ("build", "test", "docs"):
        cell(shell, capsys, f"%%step {name} --duration 5s\npass")
    found = shell.run_line_magic("pipeline", "suggest")
    assert found.original_s == 15 and found[0].makespan_s == 5
    found = shell.run_line_magic("pipeline", "suggest --constraint build:test --max-parallel 2")
    assert found[0].makespan_s == 10 and found.max_parallel == 2
    with pytest.raises(UsageError, match="FIRST:SECOND"):
        shell.run_line_magic("pipeline", "suggest --constraint build")
    with pytest.raises(UsageError, match="no step, step group or stage 'nope'"):
        shell.run_line_magic("pipeline", "suggest --constraint build:nope")
    # a second stage: kept after s by default, beside it with --across-stages (R11)
    cell(shell, capsys, "%stage t")
    cell(shell, capsys, "%%step later --duration 5s\npass")
    assert shell.run_line_magic("pipeline", "suggest")[0].makespan_s == 10
    found = shell.run_line_magic("pipeline", "suggest --across-stages")
    assert found[0].makespan_s == 5
    with pytest.raises(UsageError, match="--across-stages does not apply"):
        shell.run_line_magic("pipeline", "simulate --across-stages")


def test_D14_step_and_stage_magics_take_needs(shell: InteractiveShell, capsys: pytest.CaptureFixture) -> None:
    cell(shell, capsys, "%pipeline ci")
    cell(shell, capsys, "%stage lint")
    cell(shell, capsys, "%%step a --duration 1s\npass")
    cell(shell, capsys, "%%step b --parallel-with a --duration 5s\npass")
    out = cell(shell, capsys, "%%step c --parallel-with a --needs a,b --duration 2s\npass")
    assert "gained `c`" in out
    cell(shell, capsys, "%stage docs --parallel-with lint --needs lint")
    cell(shell, capsys, "%%step d --duration 3s\npass")
    p = shell.user_ns["ci"]
    lint, docs = p.stages[0].items  # one parallel block of stages
    assert lint.items[0].items[2].needs == ["a", "b"] and docs.needs == ["lint"]
    t = p.simulate().set_index("fqn")
    # c waits for a (1 s) and b (5 s): 5 → 7; lint ends at 7; docs needs lint: 7 → 10
    assert t.loc["pipeline.stages.lint.spec.execution.steps.c", "start_s"] == 5.0
    assert t.loc["pipeline.stages.docs", "start_s"] == 7.0 and t.loc["pipeline", "end_s"] == 10.0
    result = shell.run_cell("%%step e --needs 'x y'\npass")
    assert not result.success
