"""How values reach a ShellScript (issue 31, item 9): pasted into the script unquoted, as Harness
does (documented where ``--var`` and ShellScript steps are), or quoted, through the step's
``environmentVariables``."""

from __future__ import annotations

import json

from notebook_pipelines.frontends.cli import build_parser, main

PIPELINE = """\
pipeline:
  name: p
  identifier: p
  variables:
    - name: who
      type: String
      value: world
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
                  name: greet
                  identifier: greet
                  spec:
                    shell: Bash
{env}                    source:
                      type: Inline
                      spec:
                        script: {script}
"""
QUOTED = """\
                    environmentVariables:
                      - name: WHO
                        type: String
                        value: <+pipeline.variables.who>
"""


def _run(tmp_path, monkeypatch, script: str, env: str = "") -> str:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text(PIPELINE.format(env=env, script=script))
    assert main(["run", "p.yaml", "--var", "who=$(touch made-by-the-value)", "-o", "t.json"]) == 0
    (row,) = [r for r in json.loads((tmp_path / "t.json").read_text()) if r["step"] == "greet"]
    return row["log"]


def test_a_value_in_environment_variables_stays_text(tmp_path, monkeypatch):
    log = _run(tmp_path, monkeypatch, "'echo \"hello $WHO\"'", QUOTED)
    assert log == "hello $(touch made-by-the-value)\n"
    assert not (tmp_path / "made-by-the-value").exists()


def test_a_value_pasted_into_the_script_is_shell_code_as_in_harness(tmp_path, monkeypatch):
    log = _run(tmp_path, monkeypatch, "echo hello <+pipeline.variables.who>")
    assert log == "hello\n"  # the command ran; its output (none) replaced it
    assert (tmp_path / "made-by-the-value").exists()


def test_the_var_help_says_values_are_pasted_unquoted_and_how_to_quote_them():
    parser = build_parser()
    run = next(
        a for a in parser._subparsers._group_actions[0].choices["run"]._actions if "--var" in a.option_strings
    )
    assert (
        "unquoted, as Harness does" in run.help
        and "environmentVariables" in run.help
        and '"$WHO"' in run.help
    )
    from notebook_pipelines.engine import steptypes

    assert "**Values in a script are not quoted.**" in steptypes.__doc__
