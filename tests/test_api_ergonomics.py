"""Issue 29 part 4: what Jupyter's completion and ``?`` show, and what a script can do with a picture.

Explicit keyword parameters on the builder and the verbs (no ``**options``), kept in step with the
functions they call; a clean ``dir(nbp)``; every public error importable from ``nbp``; a picture
with a readable repr, ``.save(path)`` and ``.source``.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import notebook_pipelines as nbp
from notebook_pipelines.definition.model import Pipeline, Stage, Step, StepGroup, _Container
from notebook_pipelines.definition.verbs import Drawable

REPO = Path(__file__).resolve().parents[1]


def _keywords(fn, skip: int = 0) -> dict[str, object]:
    """The parameters of ``fn`` after the first ``skip`` ones, by name → default."""
    params = list(inspect.signature(fn).parameters.values())[skip:]
    assert all(p.kind is not p.VAR_KEYWORD for p in params), f"{fn.__qualname__} still takes **options"
    return {p.name: p.default for p in params}


def _fields(cls, leave_out: set[str]) -> dict[str, object]:
    return {f.name: f.default for f in dataclasses.fields(cls) if f.name not in leave_out}


def test_step_step_group_and_stage_name_every_setting_of_their_node():
    assert _keywords(_Container.step, skip=3) == _fields(Step, {"id", "run"})
    assert _keywords(_Container.step_group, skip=2) == _fields(StepGroup, {"id", "items", "rollback_items"})
    assert _keywords(Pipeline.stage, skip=2) == _fields(Stage, {"id", "items", "rollback_items"})


def test_explicit_settings_build_the_same_nodes_as_before():
    with Stage("s").step_group("g", when="All", timeout="1m") as g:
        step = g.step("a", lambda: None, duration="5s", inputs={"x": 1}, outputs=["y"])
    assert g == StepGroup("g", items=[step], when="All", timeout="1m")
    assert step.duration == "5s" and step.inputs == {"x": 1} and step.outputs == ["y"]
    with pytest.raises(TypeError, match="nope"):
        Stage("s").step("a", nope=1)


def test_pipeline_verbs_take_exactly_the_options_of_the_functions_they_call():
    from notebook_pipelines.engine.running import run as engine_run
    from notebook_pipelines.engine.simulation import simulate
    from notebook_pipelines.views.controller import run, start
    from notebook_pipelines.views.rendering import render

    assert _keywords(Pipeline.simulate, skip=1) == _keywords(simulate, skip=1)
    assert _keywords(Drawable.render, skip=1) == _keywords(render, skip=1)
    options = (
        {"progress": None} | _keywords(engine_run, skip=1) | {"history": None}
    )  # history: the ETA (issue 28)
    for fn in (run, start, Pipeline.run, Pipeline.start):
        assert _keywords(fn, skip=1) == options, fn.__qualname__


def test_a_verb_called_with_a_wrong_option_names_pipeline_not_a_private_base():
    # Python's own TypeError names the method's __qualname__: `Pipeline.run()`, as before the
    # verbs moved to a mixin (not `PipelineVerbs.run()`); help(p.simulate) reads the same
    p = Pipeline("p")
    for name in ("run", "start", "simulate", "validate", "plan", "to_yaml"):
        with pytest.raises(TypeError, match=rf"^Pipeline\.{name}\(\) got an unexpected keyword argument"):
            getattr(p, name)(nope=1)
        assert getattr(Pipeline, name).__qualname__ == f"Pipeline.{name}"


def test_verbs_document_each_of_their_parameters():
    for fn in (Pipeline.run, Pipeline.simulate, Drawable.render, _Container.step, Pipeline.stage, nbp.run):
        doc = inspect.getdoc(fn)
        for name in _keywords(fn, skip=1):
            assert name in doc, f"{fn.__qualname__}'s docstring does not mention {name}"


def test_dir_of_the_package_lists_public_names_only():
    names = dir(nbp)
    assert "Any" not in names and "annotations" not in names
    assert {"Pipeline", "simulate", "DefinitionError", "__version__"} <= set(names)
    assert all(not n.startswith("_") or n == "__version__" for n in names), names


def _public_error_classes() -> dict[str, type]:
    found: dict[str, type] = {}
    for info in pkgutil.walk_packages(nbp.__path__, "notebook_pipelines."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                isinstance(value, type)
                and value.__module__ == module.__name__
                and not name.startswith("_")
                and issubclass(value, (nbp.PipelineError, Warning))
            ):
                found[name] = value
    return found


def test_every_public_error_and_warning_is_importable_from_nbp():
    errors = _public_error_classes()
    assert {"YamlError", "DurationError", "HarnessExecutionError", "TraceError", "ClusterError"} <= set(
        errors
    )
    missing = sorted(name for name, cls in errors.items() if getattr(nbp, name, None) is not cls)
    assert not missing, f"not importable from nbp: {missing}"
    assert set(errors) <= set(nbp.__all__)


def test_a_picture_reads_as_its_outline_and_saves_itself(tmp_path):
    p = nbp.Pipeline("release")
    with p.stage("build") as build:
        build.step("unit", duration="30s")
    picture = p.render(p.simulate())
    text = repr(picture)
    assert text.startswith("<Picture 'release': .save(") and "object at 0x" not in text
    assert "step unit" in text and "Success 30s" in text
    assert picture.source.startswith("digraph release {")
    magic = {"svg": b"<?xml", "png": b"\x89PNG", "pdf": b"%PDF", "dot": b"digraph"}
    for suffix, head in magic.items():
        path = picture.save(tmp_path / f"p.{suffix}")
        assert path == tmp_path / f"p.{suffix}" and path.read_bytes().startswith(head)
    with pytest.raises(ValueError, match=r"must end in one of \.svg, \.png, \.pdf"):
        picture.save(tmp_path / "p.gif")
    # graphviz's own render() (which saves the DOT text first) still works
    assert Path(picture.render(tmp_path / "g", format="svg")).read_bytes().startswith(b"<?xml")


def test_the_demo_uses_only_the_public_api():
    tree = ast.parse((REPO / "examples" / "demo.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.module == "__future__" or not node.module.startswith("notebook_pipelines"), (
                node.module
            )
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "nbp":
            assert not node.attr.startswith("_"), node.attr


# --- part 6: a rule id in an error message comes with a reference to the semantics page ----------


def test_a_definition_error_citing_rules_points_to_the_semantics_reference():
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.step_group("g", timeout="1m") as g:
        g.step("a")
    with pytest.raises(nbp.DefinitionError) as caught:
        p.validate()
    text = str(caught.value)
    assert "[R60/D10]" in text
    assert text.splitlines()[-1] == "(rule ids: see the semantics reference, docs/semantics.md#r60)"
    assert (REPO / "docs" / "semantics.md").read_text().count("\n### R60\n") == 1


def test_a_message_without_a_rule_id_and_a_body_s_own_error_are_left_as_written():
    assert str(nbp.TraceError("the trace has no 'status' column")) == "the trace has no 'status' column"
    assert str(nbp.StepError("deploy failed (R2)")) == "deploy failed (R2)"
    # a path or a name that merely looks like an id is not a citation
    assert str(nbp.TraceError("cannot read data/E1/run.csv")) == "cannot read data/E1/run.csv"
    assert str(nbp.TraceError("x (R21, E15)")).endswith("docs/semantics.md#r21)")


def test_the_cli_points_from_listed_problems_to_the_semantics_reference(tmp_path, capsys):
    from notebook_pipelines.frontends.cli import main

    path = tmp_path / "p.yaml"
    path.write_text(nbp.Pipeline("p", stages=[nbp.Stage("s")]).to_yaml())
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "(rule ids: see the semantics reference, docs/semantics.md#r" in err


def test_every_public_error_is_importable_without_the_optional_extras():
    """``except nbp.ClusterError`` must work where Dask (the ``dask`` extra) is not installed."""
    import subprocess
    import sys

    names = sorted(_public_error_classes())
    code = (
        "import sys\n"
        "for name in ('distributed', 'cloudpickle', 'dask', 'httpx'): sys.modules[name] = None\n"
        "import notebook_pipelines as nbp\n"
        f"for name in {names!r}: getattr(nbp, name)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]
