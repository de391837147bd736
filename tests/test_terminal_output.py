"""What reaches a terminal (issue 31, item 7): control characters a pipeline holds — in names,
conditions, messages or what its steps print — are shown escaped (``\\x1b[2J``), never run by the
terminal (clear the screen, set the title, recolour)."""

from __future__ import annotations

import io

import pytest

import notebook_pipelines as nbp
from notebook_pipelines.errors import ExpressionError, Problem, printable
from notebook_pipelines.frontends.cli import main

ESC = "\x1b"

PIPELINE = """\
pipeline:
  name: "evil\\e[2J"
  identifier: p
  variables:
    - name: env
      type: String
      value: prod
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
                  when:
                    stageStatus: Success
                    condition: "<+pipeline.variables.{var}> == '\\e]0;pwned\\a'"
                  spec:
                    shell: Bash
                    source:
                      type: Inline
                      spec:
                        script: echo hi
              - step:
                  type: ShellScript
                  name: b
                  identifier: b
                  spec:
                    shell: Bash
                    source:
                      type: Inline
                      spec:
                        script: "printf 'x\\\\033[2Jy\\\\n'; echo \\"$(printf '\\\\033[31m')red\\" >&2"
"""


@pytest.fixture
def pipeline_file(tmp_path):
    def write(var: str = "env"):
        path = tmp_path / "p.yaml"
        path.write_text(PIPELINE.format(var=var))
        return path

    return write


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_cli_table_shows_a_condition_with_escape_sequences_escaped(pipeline_file, capsys):
    assert main(["simulate", str(pipeline_file()), "-q"]) == 0
    out, err = capsys.readouterr()
    assert ESC not in out + err and "\a" not in out
    line = next(line for line in out.splitlines() if line.strip().startswith("a "))
    assert "condition <+pipeline.variables.env> == '\\x1b]0;pwned\\x07' is false" in line


def test_validate_caret_line_is_escaped_and_the_caret_still_points_at_the_problem(pipeline_file, capsys):
    assert main(["validate", str(pipeline_file("nope"))]) == 1
    out, _ = capsys.readouterr()
    assert ESC not in out
    lines = out.splitlines()
    expression = next(i for i, line in enumerate(lines) if line.startswith("    <+pipeline"))
    assert lines[expression] == "    <+pipeline.variables.nope> == '\\x1b]0;pwned\\x07'"
    assert lines[expression + 1] == "    ^"


def test_a_caret_after_an_escaped_character_moves_with_it():
    text = str(Problem("a", "R42", "m", "f", expression=f"'{ESC}[2J' && <+nope>", position=10))
    line, caret = text.splitlines()[-2:]
    assert line == "    '\\x1b[2J' && <+nope>" and line.index("<+nope>") == caret.index("^")
    error = str(ExpressionError("bad", f"'{ESC}' + <+x", 6))
    assert error.splitlines()[1][error.splitlines()[2].index("^")] == "<"


def test_on_a_terminal_what_steps_print_is_escaped_too(pipeline_file, monkeypatch):
    out, err = Terminal(), Terminal()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("sys.stderr", err)
    assert main(["run", str(pipeline_file())]) == 0
    shown = out.getvalue() + err.getvalue()
    assert ESC not in shown
    assert "x\\x1b[2Jy" in shown and "\\x1b[31mred" in shown  # the steps' live output, as text
    assert "\r" in err.getvalue()  # the progress line still redraws in place


def test_failure_lines_escape_the_error_message():
    from notebook_pipelines.engine.running import failure_lines

    def body():
        raise RuntimeError(f"{ESC}[2Jgone")

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=body)

    (line,) = failure_lines(p.run(report=False))
    assert line.endswith("RuntimeError: \\x1b[2Jgone") and ESC not in line


def test_printable_escapes_c0_c1_del_and_bidi_controls_only():
    assert printable("é ✓ tab\there") == "é ✓ tab\\there"
    assert printable("\x00\x7f\x9b\u202e") == "\\x00\\x7f\\x9b\\u202e"
