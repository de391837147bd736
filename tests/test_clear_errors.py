"""Raw exceptions of other libraries become the toolkit's own errors, naming the node, file or
argument (issue 31, item 5). Trace files have theirs in ``test_trace_files.py``, the magics in
``test_magics.py``, ``max_workers=True`` in ``test_worker_pool.py``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import notebook_pipelines as nbp


def one_step(**options) -> nbp.Pipeline:
    return nbp.Pipeline("p", stages=[nbp.Stage("s", items=[nbp.Step("a", **options)])])


@pytest.mark.parametrize(
    ("value", "where"),
    [(object(), r"pipeline\.variables\[0\]\.value"), (np.int64(3), r"pipeline\.variables\[0\]\.value")],
)
def test_to_yaml_names_a_value_yaml_cannot_write(value, where):
    p = nbp.Pipeline("p", variables={"v": value}, stages=[nbp.Stage("s", items=[nbp.Step("a")])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(nbp.DefinitionError, match=rf"{where}: .*has no YAML form .*fix: give text"):
            p.to_yaml()


@pytest.mark.parametrize("start", ["garbage", "2026-13-45", None, True, float("nan")])
def test_simulate_names_a_start_that_is_not_a_time(start):
    with pytest.raises(nbp.SimulationError, match=r"start=.*give a time pandas reads"):
        one_step(duration=1).simulate(start=start)
    assert one_step(duration=1).simulate(start="2026-05-01T10:00:00Z")["start"].min().hour == 10


def test_R53_a_postfix_function_that_raises_fails_its_node_by_name():
    def postfix(indices, values):
        return f"_{1 / 0}"

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=lambda: None, strategy=nbp.Matrix(os=["l", "w"], postfix=postfix))
    for trace in (p.simulate(), p.run(report=False)):
        row = trace[trace["step"] == "a"].iloc[0]
        assert row["status"] == "Failed"
        assert row["error"].startswith(
            "pipeline.stages.s.spec.execution.steps.a: the matrix postfix function"
        )
        assert "raised ZeroDivisionError: division by zero for the indices (0,)" in row["error"]
    p.stages[0].items[0].strategy = nbp.Matrix(os=["l", "w"], postfix=lambda i, v: 7)
    row = p.simulate().set_index("step").loc["a"]
    assert "returned 7 (of type int)" in row["error"] and "a postfix is text" in row["error"]


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({1: "x"}, "the output name 1 (an int) is not an identifier"),
        ({"my-var": 1}, "the output name 'my-var' is not an identifier"),
        ({"x" * 129: 1}, "is 129 characters; the limit is 128"),
    ],
)
def test_output_names_are_checked_when_published(outputs, message):
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=lambda: outputs)
    row = p.run(report=False).set_index("step").loc["a"]
    assert row["status"] == "Failed"
    assert row["error"].startswith("pipeline.stages.s.spec.execution.steps.a: the output name")
    assert message in row["error"]
    assert row["outputs"] is None


SHELL_YAML = """\
pipeline:
  name: p
  identifier: p
  stages:
    - stage:
        name: s
        identifier: s
        type: Custom
        spec:
          execution:
            steps:
              - step:
                  type: ShellScript
                  name: a
                  identifier: a
                  spec:
                    shell: Bash
                    source:
                      type: Inline
                      spec:
                        script: {script}
"""


@pytest.mark.parametrize(
    ("script", "read"), [("yes", "True is a bool"), ("off", "False is a bool"), ("12", "12 is a int")]
)
def test_R4_a_shell_script_that_yaml_reads_as_a_boolean_or_number_is_refused_at_validation(
    tmp_path, script, read
):
    from notebook_pipelines.frontends.cli import main

    path = tmp_path / "p.yaml"
    path.write_text(SHELL_YAML.format(script=script))
    p = nbp.load_yaml(path)
    with pytest.raises(
        nbp.DefinitionError, match=rf"\[R4\] spec\.source\.spec\.script={read}, not a script"
    ) as info:
        p.validate()
    assert 'fix: quote the script or write it as a block: `script: "yes"`' in str(info.value)
    assert main(["validate", str(path), "-q"]) == 1
    path.write_text(SHELL_YAML.format(script=f'"{script}"'))  # quoted: text, valid
    assert nbp.load_yaml(path).validate() is None
    python = nbp.Pipeline(
        "q",
        stages=[
            nbp.Stage(
                "s", items=[nbp.Step("a", type="ShellScript", spec={"source": {"spec": {"script": True}}})]
            )
        ],
    )
    with pytest.raises(nbp.DefinitionError, match=r"fix: give the script as text: spec=\{'source'"):
        python.validate()


def test_R44_declared_and_simulated_output_names_follow_the_same_rule():
    with pytest.raises(nbp.DefinitionError, match=r"\[R44\] the output name 'bad-name' is not an identifier"):
        one_step(outputs=["bad-name"]).validate()
    with pytest.raises(nbp.SimulationError, match=r"outputs= .*steps\.a: the output name 1 \(an int\)"):
        one_step().simulate(outputs={"a": {1: "x"}})
    assert one_step(outputs=["ok"]).simulate(outputs={"a": {"ok": 1}})["outputs"].iloc[-1] == {"ok": 1}
