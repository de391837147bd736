"""The ``notebook-pipelines`` command line: validate, render, simulate, run; exit codes 0/1/2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import notebook_pipelines.definition.plan
from notebook_pipelines.engine.trace import COLUMNS, STATUSES
from notebook_pipelines.frontends.cli import format_table, main, parse_failure, parse_failures

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "harness-corpus"
CORPUS_FILES = sorted(CORPUS.glob("*.y*ml"))
FIXTURES = Path(__file__).parent / "fixtures"
STEP_GROUPS = str(FIXTURES / "step_groups.yaml")
FAILURES = str(FIXTURES / "failure_strategies.yaml")
SHELL = str(FIXTURES / "shell_outputs.yaml")


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# -- help -----------------------------------------------------------------------------------------
def test_help_texts_show_examples(capsys):
    code, out, _ = cli(capsys, "--help")
    assert code == 0 and "examples:" in out and "notebook-pipelines simulate" in out
    for command in ("validate", "render", "simulate", "run"):
        code, out, _ = cli(capsys, command, "--help")
        assert code == 0 and "examples:" in out and "--rules" in out, command


def test_usage_errors_exit_2(capsys):
    assert cli(capsys, "simulate")[0] == 2  # FILE missing
    assert cli(capsys, "validate", STEP_GROUPS, "--rules", "newest")[0] == 2
    code, _, err = cli(capsys, "validate", "no/such/file.yaml")
    assert code == 2 and "no such file" in err


# -- validate -------------------------------------------------------------------------------------
def test_validate_a_valid_pipeline_exits_0(capsys):
    code, out, _ = cli(capsys, "validate", STEP_GROUPS, "--rules", "current", "--quiet")
    assert code == 0 and "valid under the current rules (1 stages, 9 steps)" in out


def test_D1_validate_nested_groups_under_classic_exits_1_with_line_and_column(capsys):
    code, out, _err = cli(capsys, "validate", STEP_GROUPS)
    assert code == 1
    assert f"{STEP_GROUPS}:65:25: pipeline.stages.build.spec.execution.steps.tests.steps.e2e: [R6/D1]" in out
    assert "--rules current" in out


def test_validate_prints_every_problem_with_where_it_is_written(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "pipeline:\n  identifier: p\n  stages:\n    - stage:\n        identifier: s\n        type: Custom\n"
        "        spec:\n          execution:\n            steps:\n              - step:\n"
        "                  identifier: 1st\n                  type: Http\n                  timeout: soon\n"
    )
    code, out, _ = cli(capsys, "validate", bad, "-q")
    lines = out.splitlines()
    assert code == 1 and len(lines) == 2
    assert all(
        line.startswith(f"{bad}:11:19: pipeline.stages.s.spec.execution.steps.1st: [R") for line in lines
    )


def test_validate_of_unreadable_yaml_is_bad_input_exit_2_with_line_and_column(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipeline:\n  stages: [\n")
    code, out, err = cli(capsys, "validate", bad)
    assert code == 2 and out == ""  # like every other command given a file it cannot read
    assert err.startswith(f"error: cannot read the pipeline:\n{bad}:3:1: pipeline: [YAML] invalid YAML")


def test_R59_validate_says_a_runtime_input_timeout_needs_a_value(capsys, tmp_path):
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "pipeline:\n  identifier: p\n  stages:\n    - stage:\n        identifier: s\n        type: Custom\n"
        "        spec:\n          execution:\n            steps:\n              - step:\n"
        "                  identifier: a\n                  timeout: <+input>.default(10m)\n"
    )
    code, out, err = cli(capsys, "validate", pipeline)
    assert code == 1 and "warning:" in err and "runtime input" in err  # the loader's note
    [line] = out.splitlines()
    assert line.startswith(f"{pipeline}:11:19: pipeline.stages.s.spec.execution.steps.a: [R59] timeout=")
    assert "is a runtime input: it needs a value before running" in line and "its default is '10m'" in line
    assert "cannot read" not in line


def test_validate_of_readable_yaml_that_is_no_valid_pipeline_exits_1(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipeline:\n  name: no identifier, no stages\n")
    code, out, _ = cli(capsys, "validate", bad)
    assert code == 1
    assert f"{bad}:2:3: pipeline: [R1] the pipeline has no identifier" in out
    assert "[R11] the pipeline has no 'stages' list" in out


# -- render ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".svg", ".png", ".dot"])
def test_render_writes_the_format_of_the_suffix(capsys, tmp_path, suffix):
    out_file = tmp_path / f"picture{suffix}"
    code, out, _ = cli(capsys, "render", FAILURES, "-o", out_file, "-q")
    assert code == 0 and out_file.exists() and "wrote" in out
    data = out_file.read_bytes()
    assert {".svg": b"<svg", ".png": b"\x89PNG", ".dot": b"digraph"}[suffix] in data[:400]


def test_render_refuses_an_unknown_suffix(capsys, tmp_path):
    code, _, err = cli(capsys, "render", FAILURES, "-o", tmp_path / "x.pdf")
    assert code == 2 and ".svg, .png, .dot" in err


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name[:60])
def test_every_corpus_pipeline_renders_under_current_rules(capsys, tmp_path, path):
    out_file = tmp_path / "corpus.dot"
    code, _, err = cli(capsys, "render", path, "--rules", "current", "-o", out_file)
    assert code == 0 and out_file.read_text().startswith("digraph")
    assert "warning:" in err  # what is kept but not modelled (and, for strategies, R48) is reported


# -- simulate -------------------------------------------------------------------------------------
def test_parse_failure_forms():
    assert parse_failure("unit") == ("unit", True)
    assert parse_failure("unit:2,1") == ("unit", [1, 2])
    assert parse_failure("unit:Timeout") == ("unit", {"attempts": True, "error_type": "Timeout"})


def test_simulate_prints_a_table_and_exits_0_on_success(capsys):
    code, out, err = cli(capsys, "simulate", FAILURES, "--default", "10s", "-q")
    assert code == 0
    assert out.splitlines()[0].split() == ["node", "kind", "status", "try", "start", "end", "took", "note"]
    assert (
        "failure_strategies  pipeline  Success" in " ".join(out.split("  "))
        or "Success" in out.splitlines()[1]
    )
    assert "pipeline 'failure_strategies' simulated: Success after 2m 10s" in err


def test_E5_simulate_with_durations_file_and_failures_exits_1_when_the_pipeline_fails(capsys, tmp_path):
    durations = tmp_path / "d.yaml"
    durations.write_text(
        "flaky: 5s\n'pipeline.stages.build.spec.execution.steps.db.steps.migrate': 1m\nsmoke: 2\n"
    )
    out_file = tmp_path / "trace.csv"
    code, _, err = cli(
        capsys, "simulate", FAILURES, "--durations", durations, "--default", "1s",
        "--fail", "flaky:1", "--fail", "flaky:2", "--fail", "smoke", "-o", out_file, "-q",
    )  # fmt: skip
    assert code == 1 and "simulated: Failed" in err
    trace = pd.read_csv(out_file)
    assert list(trace.columns) == list(COLUMNS)
    assert set(trace["status"]) <= set(STATUSES)
    flaky = trace[trace["fqn"].str.endswith(".flaky")]
    assert flaky["status"].tolist() == ["Failed", "Failed", "Success"]
    assert flaky["duration_s"].tolist() == [5.0, 5.0, 5.0] and flaky["start_s"].tolist() == [0.0, 15.0, 40.0]
    migrate = trace[trace["fqn"].str.endswith(".migrate")].iloc[-1]
    assert migrate["duration_s"] == 60.0
    smoke = trace[trace["fqn"].str.endswith(".smoke")].iloc[-1]
    assert (smoke["status"], smoke["action"], smoke["duration_s"]) == ("Failed", "PipelineRollback", 2.0)


@pytest.mark.parametrize("suffix", [".json", ".parquet"])
def test_simulate_writes_json_and_parquet_traces_with_the_schema(capsys, tmp_path, suffix):
    out_file = tmp_path / f"trace{suffix}"
    code, _, _ = cli(capsys, "simulate", FAILURES, "--fail", "rollout:1:Timeout", "-o", out_file, "-q")
    assert code == 1
    trace = pd.read_json(out_file, orient="records") if suffix == ".json" else pd.read_parquet(out_file)
    assert list(trace.columns) == list(COLUMNS)
    rollout = trace[trace["fqn"].str.endswith(".rollout")].iloc[-1]
    assert (rollout["error_type"], rollout["action"]) == ("Timeout", "StageRollback")
    assert set(trace["status"]) <= set(STATUSES)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_write_trace_keeps_each_steps_own_inputs_and_outputs_as_json_text(tmp_path, suffix):
    import notebook_pipelines as nbp
    from notebook_pipelines.frontends.cli import write_trace

    p = nbp.Pipeline("p", variables={"env": "dev"})
    with p.stage("s") as s:
        s.step("a", inputs={"count": 3}, outputs=["x"])
        s.step("b", inputs={"who": "<+pipeline.variables.env>", "tags": ["x", "y"]})
        s.step("c")
    trace = p.simulate()
    out_file = write_trace(trace, tmp_path / f"trace{suffix}")
    back = pd.read_csv(out_file) if suffix == ".csv" else pd.read_parquet(out_file)

    def decoded(column: str) -> list:
        return [None if pd.isna(v) else json.loads(v) for v in back[column]]

    # not merged into one record type with every key of every step (Parquet structs do that)
    assert decoded("inputs") == [None, None, {"count": 3}, {"tags": ["x", "y"], "who": "dev"}, None]
    assert decoded("outputs") == list(trace["outputs"])


def test_simulate_var_changes_a_condition(capsys):
    code, out, _ = cli(capsys, "simulate", STEP_GROUPS, "--rules", "current", "--var", "env=dev", "-q")
    assert code == 0
    e2e = [line for line in out.splitlines() if line.strip().startswith("e2e")]
    assert e2e and "Skipped" in e2e[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fail", "nosuch"], "--fail: no step of pipeline 'failure_strategies' matches 'nosuch'"),
        (["--seed", "-1"], "--seed -1: give a whole number ≥ 0"),
        (["--fail", "flaky:x"], "neither attempt numbers"),
        (["--default", "soon"], "cannot read the duration 'soon'"),
        (["--var", "nosuch=1"], "declares no variable 'nosuch'"),
        (["--var", "novalue"], "write NAME=VALUE"),
        (["-o", "trace.xlsx"], ".csv, .json, .parquet"),
    ],
)
def test_simulate_bad_input_exits_2_with_one_message(capsys, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "simulate", FAILURES, "-q", *args)
    assert code == 2 and message in err


def test_simulate_durations_file_with_unknown_step_or_bad_duration_exits_2(capsys, tmp_path):
    durations = tmp_path / "d.yaml"
    durations.write_text("nosuch: 5s\n")
    code, _, err = cli(capsys, "simulate", FAILURES, "--durations", durations, "-q")
    assert code == 2 and "--durations: no step of pipeline 'failure_strategies' matches 'nosuch'" in err
    durations.write_text("flaky: soon\n")
    code, _, err = cli(capsys, "simulate", FAILURES, "--durations", durations, "-q")
    assert code == 2 and "soon" in err


def test_simulate_an_unknown_step_is_refused_with_a_close_match_and_the_steps(capsys):
    """simulate(strict=True) checks the keys; the CLI words its error with the flag."""
    code, out, err = cli(capsys, "simulate", FAILURES, "-q", "--fail", "flaki")
    assert code == 2 and out == ""
    assert err.startswith("error: --fail: no step of pipeline 'failure_strategies' matches 'flaki'")
    assert "did you mean 'flaky'?" in err and "steps: flaky, tolerated" in err
    code, _, err = cli(capsys, "simulate", FAILURES, "-q", "--fail", "*.nosuch_*")
    assert code == 2 and "matches '*.nosuch_*'" in err  # a glob that matches nothing, too


def test_fail_specs_for_one_step_merge():
    assert parse_failures(["flaky:1", "flaky:3:Timeout", "forced"]) == {
        "flaky": {"attempts": [1, 3], "error_type": "Timeout"},
        "forced": True,
    }
    assert parse_failures(["flaky:2", "flaky"]) == {"flaky": True}


@pytest.mark.parametrize(
    ("command", "extra"),
    [("validate", []), ("render", ["-o", "out.dot"]), ("simulate", ["--fail", "flaky:1"])],
)
def test_each_command_compiles_the_pipeline_once(capsys, tmp_path, monkeypatch, command, extra):
    """Validation is the compilation (structure, then references): no second or third pass."""
    monkeypatch.chdir(tmp_path)
    compiled = []
    real = notebook_pipelines.definition.plan.compile_plan

    def counting(pipeline, check=True):
        compiled.append(check)
        return real(pipeline, check)

    monkeypatch.setattr(notebook_pipelines.definition.plan, "compile_plan", counting)
    code, _, _ = cli(capsys, command, FAILURES, "-q", *extra)
    assert code == 0 and compiled == [True]


def test_run_compiles_the_pipeline_once(capsys, monkeypatch):
    compiled = []
    real = notebook_pipelines.definition.plan.compile_plan

    def counting(pipeline, check=True):
        compiled.append(check)
        return real(pipeline, check)

    monkeypatch.setattr(notebook_pipelines.definition.plan, "compile_plan", counting)
    code, _, _ = cli(capsys, "run", SHELL, "--var", "who=cli", "--var", "copies=3", "-q")
    assert code == 0 and compiled == [True]


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name[:60])
def test_every_corpus_pipeline_simulates_or_is_refused_for_its_looping_strategies(capsys, path):
    code, out, err = cli(capsys, "simulate", path, "--rules", "current", "--default", "30s", "-q")
    if "strategy:" in path.read_text():
        assert code == 2 and "[R48] looping strategies" in err and f"{path}:" in err
    else:
        assert code == 0 and "simulated: Success" in err and out.count("\n") > 3


# -- run ------------------------------------------------------------------------------------------
def test_run_executes_shell_scripts_and_writes_outputs_to_json(capsys, tmp_path):
    out_file = tmp_path / "trace.json"
    code, out, err = cli(capsys, "run", SHELL, "--var", "who=cli", "--var", "copies=3", "-o", out_file)
    assert code == 0 and "ran: Success" in err
    assert "hello from cli" in out  # the script's output streams through
    records = json.loads(out_file.read_text())
    produce = next(r for r in records if r["fqn"].endswith(".produce"))
    assert produce["outputs"]["greeting"] == "hello, cli" and produce["outputs"]["count"] == "63"
    assert list(records[0]) == list(COLUMNS)


def test_run_exits_1_when_a_script_fails_and_still_writes_the_trace(capsys, tmp_path):
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "pipeline:\n  identifier: p\n  stages:\n    - stage:\n        identifier: s\n        type: Custom\n"
        "        spec:\n          execution:\n            steps:\n              - step:\n"
        "                  identifier: bad\n                  type: ShellScript\n"
        "                  spec: {shell: Bash, source: {type: Inline, spec: {script: exit 4}}}\n"
    )
    code, _out, err = cli(capsys, "run", pipeline, "-o", tmp_path / "t.csv")
    assert code == 1 and "ran: Failed" in err
    trace = pd.read_csv(tmp_path / "t.csv")
    assert trace[trace["fqn"].str.endswith(".bad")]["error"].iloc[0] == "the script exited with code 4"


def test_run_refuses_step_types_without_handler_with_exit_2(capsys):
    code, _, err = cli(capsys, "run", FIXTURES / "parallel_stages.yaml", "-q")
    assert code == 2 and "cannot run here" in err and "'K8sRollingDeploy'" in err
    assert "register_step_type" in err


# -- entry points ---------------------------------------------------------------------------------
def test_python_m_and_the_console_script_run_the_cli(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "notebook_pipelines", "validate", FAILURES, "-q"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and "valid under the classic rules" in result.stdout
    script = Path(sys.executable).parent / "notebook-pipelines"
    result = subprocess.run(
        [str(script), "simulate", FAILURES, "-q", "-o", str(tmp_path / "t.parquet")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and (tmp_path / "t.parquet").exists()


def test_format_table_indents_by_depth_and_marks_rollback_rows():
    from notebook_pipelines.engine.simulation import simulate
    from notebook_pipelines.formats.yaml_io import read_yaml

    trace = simulate(read_yaml(FAILURES).pipeline, failures={"rollout": True})
    lines = format_table(trace).splitlines()
    assert lines[1].startswith("failure_strategies")
    assert any(line.startswith("  build ") for line in lines)
    assert any(line.startswith("      canary_delete (rollback)") for line in lines)
    assert any("manual intervention timed out" in line for line in lines)


def test_format_table_shows_times_readably_not_as_raw_floats():
    import re

    import notebook_pipelines as nbp
    from notebook_pipelines.definition.durations import format_duration

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=lambda: None)  # real runs: times of microseconds
        s.step("b", run=lambda: None)
    trace = p.run(report=False)
    lines = format_table(trace).splitlines()
    assert not re.search(r"\d\.\d{4,}", "\n".join(lines))  # no 0.000151104
    for line, row in zip(lines[1:], trace.itertuples(), strict=True):
        start, end, took = (
            format_duration(x) if x else "0s" for x in (row.start_s, row.end_s, row.duration_s)
        )
        assert re.search(rf" {re.escape(start)}\s+{re.escape(end)}\s+{re.escape(took)}$", line), line

    simulated = format_table(p.simulate(durations={"a": 90, "b": 40})).splitlines()
    assert re.search(r" 0s\s+1m 30s\s+1m 30s$", simulated[3])  # step a
    assert re.search(r" 1m 30s\s+2m 10s\s+40s$", simulated[4])  # step b


def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    """`notebook-pipelines simulate … | head -1`: no BrokenPipeError traceback."""
    import subprocess
    import sys as _sys

    path = tmp_path / "p.yaml"
    steps = "\n".join(
        f"              - step: {{identifier: s{i}, name: s{i}, type: ShellScript, timeout: 1m, "
        f"spec: {{shell: Bash, source: {{type: Inline, spec: {{script: 'true'}}}}}}}}"
        for i in range(2000)
    )
    path.write_text(
        "pipeline:\n  identifier: p\n  name: p\n  stages:\n    - stage:\n"
        "        identifier: s\n        name: s\n"
        f"        type: Custom\n        spec:\n          execution:\n            steps:\n{steps}\n"
    )
    command = f"{_sys.executable} -m notebook_pipelines simulate {path} | head -1"
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() and "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


# -- hostile input (issue 11) ----------------------------------------------------------------------
def test_a_billion_laughs_durations_file_is_refused_by_the_safe_reader(capsys, tmp_path):
    from tests.test_yaml_io import _laughs

    durations = tmp_path / "d.yaml"
    durations.write_text(_laughs(10).replace("pipeline:", "flaky:"))
    code, _, err = cli(capsys, "simulate", FAILURES, "--durations", durations, "-q")
    assert code == 2
    assert f"--durations {durations}: invalid YAML: {durations}:5:5: " in err
    assert "YAML aliases expand this part of the document" in err


_NUMBER_ABC = """\
pipeline:
  identifier: p
  variables:
    - {name: n, type: Number, value: abc}
  stages:
    - stage: {identifier: s, type: Custom, spec: {execution: {steps: [step: {identifier: a}]}}}
"""


def test_R8_a_number_variable_that_is_no_number_is_refused_by_validate_as_by_load_yaml(capsys, tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text(_NUMBER_ABC)
    code, out, _ = cli(capsys, "validate", path)
    assert code == 1
    assert f"{path}:4:38: pipeline.variables.n: [R8] the Number variable 'n' has the value 'abc'" in out


@pytest.mark.parametrize("value", ["abc", "nan", "1e400"])
def test_R8_var_gives_a_number_variable_only_numbers_by_the_same_rule(capsys, value):
    code, _, err = cli(capsys, "simulate", SHELL, "-q", "--var", f"copies={value}")
    assert code == 2 and f"--var copies: {value!r} is not a number (the variable is a Number)" in err
