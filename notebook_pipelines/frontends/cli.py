"""The ``notebook-pipelines`` command line (also ``python -m notebook_pipelines``).

Four commands over a Harness pipeline YAML file, each a thin shell around the library:

- ``validate FILE`` — exit 0 when the pipeline is valid, 1 listing every problem (with its
  ``file:line:column``), 2 when the file is not readable YAML;
- ``render FILE -o OUT`` — the picture, ``.svg``, ``.png`` or ``.dot`` by suffix;
- ``simulate FILE`` — a run in virtual time (durations from a YAML file, injected failures);
- ``run FILE`` — a real run: ``ShellScript`` steps run in ``bash``, other types need a handler.

``simulate`` and ``run`` print a readable table of the trace, or write it with ``-o`` as
``.csv``, ``.json`` or ``.parquet`` (the columns and status names of the trace schema; the
``outputs`` and ``inputs`` columns are JSON text in CSV and Parquet). Exit codes: 0 the pipeline ended
``Success``; 1 it ended otherwise (the trace is still written) or ``validate`` found problems;
2 bad input (a missing file or unreadable YAML, for every command; an invalid pipeline, for
``simulate`` and ``run``; a bad option); 130 interrupted.

What the YAML keeps but the toolkit does not model is printed as warnings on stderr
(``--quiet`` hides them). Every command takes ``--rules classic|current`` (decision D1).

>>> main(["--version"])  # doctest: +ELLIPSIS
notebook-pipelines ...
0
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..definition.durations import DurationError, format_duration, parse_duration
from ..errors import DefinitionError, PipelineError, RunInterrupted

__all__ = [
    "build_parser",
    "format_table",
    "in_flags",
    "main",
    "parse_failure",
    "parse_failures",
    "write_trace",
]

TRACE_FORMATS = (".csv", ".json", ".parquet")
PICTURE_FORMATS = (".svg", ".png", ".dot")

_EPILOG = """\
examples:
  notebook-pipelines validate pipeline.yaml --rules current
  notebook-pipelines render pipeline.yaml -o pipeline.svg
  notebook-pipelines simulate pipeline.yaml --durations durations.yaml --default 30s \\
      --fail unit:1,2 --fail deploy -o trace.parquet
  notebook-pipelines run pipeline.yaml --var env=dev -o trace.csv

exit codes: 0 success, 1 the pipeline did not end Success (or is not valid), 2 bad input
"""


class BadInput(Exception):
    """A user mistake on the command line or in the input files: exit code 2, one message."""


# -- the parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``notebook-pipelines`` (subcommands validate/render/simulate/run)."""
    from .._version import __version__

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("file", metavar="FILE", help="a Harness pipeline YAML file")
    common.add_argument(
        "--rules",
        choices=("classic", "current"),
        default="classic",
        help="rule set (D1): classic (default) forbids nested step groups and group delegate "
        "selectors; current allows both",
    )
    common.add_argument(
        "-q", "--quiet", action="store_true", help="do not print what is kept but not modelled"
    )
    trace_out = argparse.ArgumentParser(add_help=False)
    trace_out.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="write the trace to OUT: .csv, .json or .parquet (default: print a table)",
    )
    trace_out.add_argument(
        "--var",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="set a pipeline variable (repeatable); Number variables take numbers",
    )

    parser = argparse.ArgumentParser(
        prog="notebook-pipelines",
        description="Validate, draw, simulate and run Harness CD pipeline YAML (stages, steps, step groups).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"notebook-pipelines {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "validate",
        parents=[common],
        help="check every structural rule; exit 1 listing the problems",
        description="Check every structural rule of the pipeline; exit 0 when valid, 1 listing each "
        "problem as FILE:LINE:COLUMN: FQN: [RULE] message — fix: ..., 2 when FILE is not readable YAML",
        epilog="examples:\n  notebook-pipelines validate pipeline.yaml\n"
        "  notebook-pipelines validate nested.yaml --rules current\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(handler=_validate)

    p = sub.add_parser(
        "render",
        parents=[common],
        help="draw the pipeline: .svg, .png or .dot",
        description="Draw the plan of the pipeline with Graphviz. The format follows the suffix of OUT: "
        ".svg and .png need Graphviz's dot, .dot is the DOT text.",
        epilog="examples:\n  notebook-pipelines render pipeline.yaml -o pipeline.svg\n"
        "  notebook-pipelines render pipeline.yaml -o pipeline.dot --rules current\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "-o", "--output", metavar="OUT", required=True, help="the picture file: .svg, .png or .dot"
    )
    p.set_defaults(handler=_render)

    p = sub.add_parser(
        "simulate",
        parents=[common, trace_out],
        help="run in virtual time with declared durations and injected failures",
        description="Run the pipeline in virtual time: no step body runs, each step takes its duration "
        "(from --durations, else --default) and fails where --fail says. Deterministic for a seed.",
        epilog="examples:\n"
        "  notebook-pipelines simulate pipeline.yaml --default 10s\n"
        "  notebook-pipelines simulate pipeline.yaml --durations d.yaml --fail unit --fail deploy:1,2\n"
        "  notebook-pipelines simulate pipeline.yaml --fail deploy:1:Timeout -o trace.json\n\n"
        "d.yaml maps step identifiers (or FQNs, or globs) to Harness durations or seconds:\n"
        "  unit: 30s\n  deploy: 2m 30s\n  'pipeline.stages.prod.*': 45\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--durations", metavar="D.yaml", help="YAML mapping step id / FQN / glob -> duration")
    p.add_argument("--default", metavar="DURATION", default="1s", help="duration of other steps (default 1s)")
    p.add_argument(
        "--fail",
        metavar="STEP[:ATTEMPTS][:ERROR]",
        action="append",
        default=[],
        help="make STEP fail: every attempt, or only ATTEMPTS (e.g. 1,2), with error type ERROR "
        "(default Unknown); repeatable",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for sampled durations (default 0)")
    p.set_defaults(handler=_simulate)

    p = sub.add_parser(
        "run",
        parents=[common, trace_out],
        help="run for real: ShellScript steps in bash",
        description="Run the pipeline for real on this machine: ShellScript steps run in bash (their "
        "output streams to stdout), other step types need a handler registered in Python "
        "(nbp.register_step_type), untyped steps complete at once.",
        epilog="examples:\n  notebook-pipelines run pipeline.yaml\n"
        "  notebook-pipelines run pipeline.yaml --var env=dev -o trace.csv\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(handler=_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code (0 success, 1 failure, 2 bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, usage errors
        return int(exit_.code or 0)
    try:
        return args.handler(args)
    except BadInput as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`… | head`): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


# -- loading --------------------------------------------------------------------------------------
def _load(args: argparse.Namespace) -> Any:
    from ..formats.yaml_io import read_yaml

    path = Path(args.file)
    if not path.is_file():
        raise BadInput(f"no such file: {args.file}")
    loaded = read_yaml(path, args.rules)
    if not args.quiet:
        for note in loaded.notes:
            print(f"warning: {note}", file=sys.stderr)
    return loaded.pipeline


def _problem_lines(pipeline: Any, error: DefinitionError) -> list[str]:
    from ..formats.yaml_io import YamlProblem, locate

    lines = []
    for problem in error.problems:
        where = (
            None if isinstance(problem, YamlProblem) or pipeline is None else locate(pipeline, problem.fqn)
        )
        lines.append(f"{where}: {problem}" if where else str(problem))
    return lines


def _compile(pipeline: Any) -> tuple[Any, list]:
    """``(plan, [])`` for a valid pipeline, ``(None, problems)`` otherwise.

    One compilation: ``pipeline.plan()`` checks the structure, then the references
    (R42–R47, D13), and raises one ``DefinitionError`` listing the problems.
    """
    try:
        return pipeline.plan(), []
    except DefinitionError as err:
        return None, list(err.problems)


def _load_readable(args: argparse.Namespace) -> Any:
    """The loaded pipeline, not yet validated; YAML that cannot be read → BadInput (exit 2)."""
    from ..formats.yaml_io import YamlError

    try:
        return _load(args)
    except YamlError as err:
        raise BadInput("\n".join(["cannot read the pipeline:", *_problem_lines(None, err)])) from None


def _load_plan(args: argparse.Namespace) -> Any:
    """The plan of the loaded pipeline, with ``--var`` applied; every problem → BadInput (exit 2).

    The pipeline is ``plan.pipeline``; it is compiled (and so validated) once, here.
    """
    pipeline = _load_readable(args)
    _apply_vars(pipeline, args.var)
    plan, found = _compile(pipeline)
    if found:
        lines = _problem_lines(pipeline, DefinitionError(found))
        raise BadInput("\n".join(["the pipeline is not valid:", *lines]))
    return plan


def _apply_vars(pipeline: Any, assignments: list[str]) -> None:
    from ..definition.validation import number_value

    declared = dict(pipeline.variables or {})
    meta = {m.get("name"): m for m in (pipeline.extra or {}).get("variables") or () if isinstance(m, dict)}
    for text in assignments:
        name, sep, value = text.partition("=")
        if not sep or not name:
            raise BadInput(f"--var {text!r}: write NAME=VALUE")
        if name not in declared:
            known = ", ".join(declared) or "none"
            raise BadInput(f"--var {name}: the pipeline declares no variable {name!r} (declared: {known})")
        current = declared[name]
        number = meta.get(name, {}).get("type") == "Number" or (
            isinstance(current, int | float) and not isinstance(current, bool)
        )
        if number:  # one rule for what a Number takes, shared with the YAML reader
            if number_value(value) is None:
                raise BadInput(f"--var {name}: {value!r} is not a number (the variable is a Number)")
            declared[name] = number_value(value)
        else:
            declared[name] = value
    if assignments:
        pipeline.variables = declared


# -- validate -------------------------------------------------------------------------------------
def _validate(args: argparse.Namespace) -> int:
    from ..formats.yaml_io import YamlError, YamlSyntaxError

    try:
        pipeline = _load(args)
    except YamlSyntaxError as err:  # not YAML at all: bad input, as for every command (exit 2)
        raise BadInput("\n".join(["cannot read the pipeline:", *_problem_lines(None, err)])) from None
    except YamlError as err:  # YAML that is not a valid pipeline: validation's answer (exit 1)
        print("\n".join(_problem_lines(None, err)))
        return 1
    plan, found = _compile(pipeline)
    if found:
        print("\n".join(_problem_lines(pipeline, DefinitionError(found))))
        n = len(found)
        print(
            f"{args.file}: {n} problem{'s' if n != 1 else ''} under the {args.rules} rules", file=sys.stderr
        )
        return 1
    steps = sum(1 for node in plan.nodes if node.kind == "step")
    stages = sum(1 for node in plan.nodes if node.kind == "stage")
    print(f"{args.file}: valid under the {args.rules} rules ({stages} stages, {steps} steps)")
    return 0


# -- render ---------------------------------------------------------------------------------------
def _render(args: argparse.Namespace) -> int:
    from ..definition.plan import compile_plan

    out = Path(args.output)
    if out.suffix.lower() not in PICTURE_FORMATS:
        raise BadInput(f"-o {args.output}: the picture file must end in {', '.join(PICTURE_FORMATS)}")
    pipeline = _load_readable(args)
    plan, found = _compile(pipeline)
    if found:  # draw it anyway: seeing it helps fixing it
        if not args.quiet:
            for line in _problem_lines(pipeline, DefinitionError(found)):
                print(f"warning: {line}", file=sys.stderr)
        plan = compile_plan(pipeline, check=False)
    from ..views.rendering import to_file

    try:
        to_file(plan, out)
    except PipelineError as err:  # e.g. Graphviz missing
        raise BadInput(str(err)) from None
    print(f"wrote {out}")
    return 0


# -- simulate -------------------------------------------------------------------------------------
def parse_failure(text: str) -> tuple[str, Any]:
    """``STEP[:ATTEMPTS][:ERROR]`` → (step, the ``failures`` value ``simulate()`` takes).

    >>> parse_failure("unit")
    ('unit', True)
    >>> parse_failure("unit:1,2")
    ('unit', [1, 2])
    >>> parse_failure("deploy:1:Timeout")
    ('deploy', {'attempts': [1], 'error_type': 'Timeout'})
    """
    from ..definition.failure import ERROR_TYPES

    step, *parts = text.split(":")
    if not step:
        raise BadInput(f"--fail {text!r}: name a step, e.g. --fail unit or --fail unit:1,2")
    attempts: Any = True
    error_type = None
    for part in parts:
        if re.fullmatch(r"\d+(,\d+)*", part):
            attempts = sorted({int(x) for x in part.split(",")})
            if 0 in attempts:
                raise BadInput(f"--fail {text!r}: attempts count from 1")
        elif part in ERROR_TYPES:
            error_type = part
        else:
            raise BadInput(
                f"--fail {text!r}: {part!r} is neither attempt numbers (1,2) nor an error type "
                f"({', '.join(ERROR_TYPES[1:])})"
            )
    if error_type is not None:
        return step, {"attempts": attempts, "error_type": error_type}
    return step, attempts


def parse_failures(specs: Iterable[str]) -> dict[str, Any]:
    """Every ``--fail STEP[:ATTEMPTS][:ERROR]`` → the ``failures`` mapping ``simulate()`` takes.

    Specs for the same step merge: their attempts add up (every attempt wins), the last error
    type given wins. Steps are not looked up here: ``simulate()`` refuses a key that matches
    no step (and suggests a close one); :func:`in_flags` words its error for the command line.

    >>> parse_failures(["unit:1", "unit:3:Timeout", "deploy"])
    {'unit': {'attempts': [1, 3], 'error_type': 'Timeout'}, 'deploy': True}
    >>> parse_failures([])
    {}
    """
    failures: dict[str, Any] = {}
    for text in specs:
        step, value = parse_failure(text)
        failures[step] = _merge_failure(failures[step], value) if step in failures else value
    return failures


def _merge_failure(old: Any, new: Any) -> Any:
    def parts(value: Any) -> tuple[Any, Any]:
        return (value["attempts"], value["error_type"]) if isinstance(value, dict) else (value, None)

    (a1, e1), (a2, e2) = parts(old), parts(new)
    attempts = True if a1 is True or a2 is True else sorted(set(a1) | set(a2))
    error_type = e2 or e1
    return {"attempts": attempts, "error_type": error_type} if error_type else attempts


#: ``simulate()`` options as the command line (and ``%pipeline simulate``) names them.
_FLAGS = {"durations": "--durations", "failures": "--fail", "seed=": "--seed ", "default=": "--default "}
_OPTION = re.compile(r"^(durations|failures)\b|^(seed|default)=")


def in_flags(error: Exception) -> str:
    """The message of a ``simulate()`` option error, naming the option as its flag.

    >>> in_flags(ValueError("failures: no step of pipeline 'p' matches 'nope'"))
    "--fail: no step of pipeline 'p' matches 'nope'"
    >>> in_flags(ValueError("seed=-1: give a whole number ≥ 0"))
    '--seed -1: give a whole number ≥ 0'
    """
    return _OPTION.sub(lambda m: _FLAGS[m.group(0)], str(error), count=1)


def _durations(path_text: str) -> dict[str, float]:
    from ..formats.yaml_io import YamlError, load_data

    path = Path(path_text)
    if not path.is_file():
        raise BadInput(f"--durations: no such file: {path_text}")
    try:
        data = load_data(path, source_name=path_text)  # aliases within a budget, like a pipeline
    except YamlError as err:
        raise BadInput(f"--durations {path_text}: invalid YAML: {err.problems[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadInput(
            f"--durations {path_text}: expected a mapping step -> duration, got {type(data).__name__}"
        )
    out = {}
    for key, value in data.items():
        try:
            seconds = parse_duration(value, f"{path_text} ({key})")
        except DurationError as err:
            raise BadInput(str(err)) from None
        out[str(key)] = seconds if seconds is not None else 0.0
    return out


def _simulate(args: argparse.Namespace) -> int:
    from ..engine.simulation import SimulationError, simulate

    plan = _load_plan(args)
    try:
        default = parse_duration(args.default, "--default")
    except DurationError as err:
        raise BadInput(str(err)) from None
    durations = _durations(args.durations) if args.durations else None
    failures = parse_failures(args.fail)
    try:  # strict: a key that matches no step is refused, with a close match when there is one
        trace = simulate(
            plan,
            durations=durations,
            default=default or 0.0,
            failures=failures or None,
            seed=args.seed,
            strict=True,
        )
    except SimulationError as err:
        raise BadInput(in_flags(err)) from None
    return _finish(args, trace, "simulated")


# -- run ------------------------------------------------------------------------------------------
def _run(args: argparse.Namespace) -> int:
    from ..engine.scheduler import run

    plan = _load_plan(args)
    pipeline = plan.pipeline
    try:
        trace = run(plan, report=False)  # compiled once, by _load_plan
    except RunInterrupted as err:
        _finish(args, err.trace, "interrupted")
        return 130
    except DefinitionError as err:  # typed steps that cannot run here
        raise BadInput("\n".join(["the pipeline cannot run here:", *_problem_lines(pipeline, err)])) from None
    return _finish(args, trace, "ran")


def _finish(args: argparse.Namespace, trace: Any, how: str) -> int:
    if args.output:
        write_trace(trace, args.output)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(format_table(trace))
    root = trace[trace["kind"] == "pipeline"]
    status = str(root["status"].iloc[0]) if len(root) else "NotStarted"
    took = float(root["duration_s"].iloc[0]) if len(root) else float("nan")
    print(
        f"pipeline {trace.attrs.get('pipeline', '')!r} {how}: {status} after {format_duration(took)}",
        file=sys.stderr,
    )
    return 0 if status == "Success" else 1


# -- traces ---------------------------------------------------------------------------------------
def _json_text(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return json.dumps(value, default=str, sort_keys=True)


def write_trace(trace: Any, path: str | Path) -> Path:
    """Write a trace as ``.csv``, ``.json`` (records) or ``.parquet``, by the suffix of ``path``.

    Columns and status names are those of the trace schema; ``outputs`` and ``inputs`` become
    JSON text in CSV and Parquet (nested objects in JSON): each step keeps its own keys, where a
    Parquet struct would merge every step's keys into one record type.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TRACE_FORMATS:
        raise BadInput(f"-o {path}: the trace file must end in {', '.join(TRACE_FORMATS)}")
    frame = trace.copy()
    if suffix == ".json":
        frame.to_json(path, orient="records", date_format="iso", date_unit="us", indent=1)
        return path
    for column in ("outputs", "inputs"):
        if column in frame:
            frame[column] = [_json_text(v) for v in frame[column]]
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        try:
            frame.to_parquet(path, index=False)
        except ImportError as err:
            raise BadInput(f"-o {path}: writing Parquet needs pyarrow (pip install pyarrow): {err}") from None
    return path


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    try:
        import pandas as pd

        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    return str(value)


def _seconds(value: float) -> str:
    """Seconds as the table shows them: ``'0s'``, ``'151µs'``, ``'1m 30s'`` (never a raw float)."""
    return format_duration(value) if value else "0s"


def format_table(trace: Any, width: int = 90) -> str:
    """A readable table of a trace: the tree of nodes, status, attempt, times and what happened.

    ``start`` and ``end`` are times since the run started, ``took`` the duration, each in the
    Harness form of :func:`~notebook_pipelines.definition.durations.format_duration`.
    """
    depth: dict[str, int] = {}
    for fqn, parent in zip(trace["fqn"], trace["parent"]):
        if fqn not in depth:
            depth[fqn] = depth.get(_cell(parent), -1) + 1 if _cell(parent) else 0
    header = ("node", "kind", "status", "try", "start", "end", "took", "note")
    rows = [header]
    for row in trace.itertuples(index=False):
        if row.kind == "pipeline":
            label = str(trace.attrs.get("pipeline") or "pipeline")
        else:
            label = row.fqn.rsplit(".", 1)[-1]
        if row.phase == "rollback":
            label += " (rollback)"
        note = " ".join(
            part
            for part in (
                _cell(row.error_type) and f"[{_cell(row.error_type)}]",
                _cell(row.error),
                _cell(row.action) and f"→ {_cell(row.action)}",
                _cell(row.reason) and f"({_cell(row.reason)})" if _cell(row.error) else _cell(row.reason),
            )
            if part
        )
        if len(note) > width:
            note = note[: width - 1] + "…"
        start, end = _cell(row.start_s), _cell(row.end_s)
        took = _seconds(row.duration_s) if start else ""
        rows.append(
            (
                "  " * depth.get(row.fqn, 0) + label,
                str(row.kind).replace("_", " "),
                str(row.status),
                str(row.attempt) if row.attempt else "",
                _seconds(float(start)) if start else "",
                _seconds(float(end)) if end else "",
                took,
                note,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    right = {3, 4, 5, 6}
    lines = []
    for r in rows:
        cells = [r[i].rjust(widths[i]) if i in right else r[i].ljust(widths[i]) for i in range(len(header))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
