"""The command line's files: FILE and the other inputs read (bounded, never blocking), ``-o`` paths
checked before anything runs, the pipeline loaded with every problem it has, traces written.

It stands on :mod:`~notebook_pipelines.formats` (``files``, ``yaml_io``, ``traces``,
``harness_executions``), the durations' parser, :mod:`.exits` and :mod:`.tables`.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import sys
from pathlib import Path
from typing import Any

from ...definition.durations import DurationError, parse_duration
from ...errors import EXCERPT, MESSAGE_LIMIT, DefinitionError, excerpt
from ...formats.traces import write_trace
from .exits import MAX_PROBLEMS, BadInput, Problems, foreign
from .tables import format_table

TRACE_FORMATS = (".csv", ".json", ".parquet")
PICTURE_FORMATS = (".svg", ".png", ".dot")


# -- reading and writing files --------------------------------------------------------------------
def read_text_file(path_text: str, option: str = "") -> str:
    """The text of the regular UTF-8 file ``path_text``; anything else → ``BadInput`` saying why.

    The reader of ``formats.files``, which the Python API uses too (``nbp.load_yaml(path)``):
    opened without blocking and refused unless it is a regular file, so a FIFO or a device
    never makes the command wait; at most ``MAX_TEXT_BYTES``. ``option`` names the flag that
    gave the path (``--durations``).
    """
    from ...formats.files import InputFileError, read_text

    try:
        return read_text(path_text, option=option)
    except InputFileError as err:
        raise BadInput(str(err)) from None


def check_output(path_text: str, formats: tuple[str, ...], what: str) -> Path:
    """Refuse an ``-o`` path that cannot take the output, before anything runs (exit 2).

    The suffix must be one of ``formats``; the directory must exist; the path must not be a
    directory or a special file, and must be writable (tried: a new file is created and
    removed again, an existing one opened for appending, so nothing is lost).
    """
    path = Path(path_text)
    if path.suffix.lower() not in formats:
        raise BadInput(f"-o {path_text}: the {what} file must end in {', '.join(formats)}")
    if path.is_dir():
        raise BadInput(f"-o {path_text} is a directory: give a file name, e.g. {path / ('out' + formats[0])}")
    parent = path.parent
    if not parent.exists():
        raise BadInput(f"-o {path_text}: no directory {parent}: create it first (mkdir -p {parent})")
    if not parent.is_dir():
        raise BadInput(f"-o {path_text}: {parent} is not a directory")
    if path.exists() and not path.is_file():
        raise BadInput(f"-o {path_text} exists and is not a regular file: choose another name")
    try:
        if path.exists():
            with open(path, "ab"):
                pass
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            os.close(fd)
            os.unlink(path)
    except (OSError, ValueError) as err:  # ValueError: a NUL character in the name
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise BadInput(f"-o {path_text}: cannot write there ({reason.lower()})") from None
    if path.suffix.lower() == ".parquet" and not any(
        importlib.util.find_spec(engine) for engine in ("pyarrow", "fastparquet")
    ):
        raise BadInput(f"-o {path_text}: writing Parquet needs pyarrow (pip install pyarrow)")
    return path


# -- loading --------------------------------------------------------------------------------------
def _read(text: str, args: argparse.Namespace, rules: str) -> Any:
    from ...formats.yaml_io import read_yaml

    try:
        return read_yaml(io.StringIO(text), rules, source_name=args.file)
    except RecursionError:
        raise BadInput(f"{args.file}: the YAML is nested too deeply to read") from None


def _load(args: argparse.Namespace) -> Any:
    """The pipeline of FILE, not yet validated.

    A file that cannot be read as YAML is ``BadInput`` (exit 2); YAML that is not a valid
    pipeline is ``Problems`` (exit 1) listing every problem the file has.
    """
    from ...formats.yaml_io import YamlError, YamlSyntaxError

    text = read_text_file(args.file)
    try:
        loaded = _read(text, args, args.rules)
    except YamlSyntaxError as err:  # not YAML at all
        raise BadInput("\n".join(["cannot read the pipeline:", *problem_lines(None, err.problems)])) from None
    except YamlError as err:  # YAML, not a valid pipeline
        pipeline, found = _every_problem(text, args, list(err.problems))
        raise Problems(problem_lines(pipeline, found), len(found)) from None
    _warn(args, loaded.notes)
    return loaded.pipeline


def _every_problem(text: str, args: argparse.Namespace, reader: list) -> tuple[Any, list]:
    """Every problem of a file the reader refused: its own problems and validation's.

    Under the classic rules the reader refuses what only that rule set forbids (nested step
    groups, group delegate selectors), and stops there. Read again under the current rules
    (which allow them), the pipeline can be validated under the classic rules: validation
    finds the same rule-set problems (already listed, with the reader's wording) and every
    other problem of the file.
    """
    from ...formats.yaml_io import YamlError

    if args.rules != "classic":
        return None, reader
    try:
        loaded = _read(text, args, "current")
    except (YamlError, BadInput):  # problems of any rule set: the reader's list is what there is
        return None, reader
    _warn(args, loaded.notes)
    pipeline = loaded.pipeline
    pipeline.rules = "classic"
    _plan, found = _compile(pipeline)
    listed = {(p.fqn, p.rule) for p in reader}
    return pipeline, [*reader, *(p for p in found if (p.fqn, p.rule) not in listed)]


def _warn(args: argparse.Namespace, notes: list) -> None:
    if not args.quiet:
        for note in notes[:MAX_PROBLEMS]:
            print(f"warning: {excerpt(str(note), 2 * MESSAGE_LIMIT)}", file=sys.stderr)
        if len(notes) > MAX_PROBLEMS:
            print(f"warning: … and {len(notes) - MAX_PROBLEMS} more", file=sys.stderr)


def problem_lines(pipeline: Any, problems: list) -> list[str]:
    """One printed entry per problem (where it is written, when known), at most ``MAX_PROBLEMS``."""
    from ...formats.yaml_io import YamlProblem, source_position

    lines = []
    for problem in problems[:MAX_PROBLEMS]:
        where = (
            None
            if isinstance(problem, YamlProblem) or pipeline is None
            else source_position(pipeline, problem.fqn)
        )
        lines.append(f"{where}: {problem}" if where else str(problem))
    if len(problems) > MAX_PROBLEMS:
        lines.append(f"… and {len(problems) - MAX_PROBLEMS} more problems: fix these first")
    return lines


def _compile(pipeline: Any) -> tuple[Any, list]:
    """``(plan, [])`` for a valid pipeline, ``(None, problems)`` otherwise.

    One compilation: ``pipeline.plan()`` checks the structure and the references (R42–R47,
    D13) and raises one ``DefinitionError`` listing every problem.
    """
    try:
        return pipeline.plan(), []
    except DefinitionError as err:
        return None, list(err.problems)


def load_plan(args: argparse.Namespace) -> Any:
    """The plan of the loaded pipeline, with ``--var`` applied; any problem → ``Problems``.

    The pipeline is ``plan.pipeline``; it is compiled (and so validated) once, here.
    """
    pipeline = _load(args)
    _apply_vars(pipeline, getattr(args, "var", []))
    plan, found = _compile(pipeline)
    if found:
        raise Problems(problem_lines(pipeline, found), len(found))
    return plan


def _apply_vars(pipeline: Any, assignments: list[str]) -> None:
    from ...definition.validation import number_value

    declared = dict(pipeline.variables or {})
    meta = {m.get("name"): m for m in (pipeline.extra or {}).get("variables") or () if isinstance(m, dict)}
    for text in assignments:
        name, sep, value = text.partition("=")
        if not sep or not name:
            raise BadInput(f"--var {excerpt(text)!r}: write NAME=VALUE")
        if name not in declared:
            known = excerpt(", ".join(declared) or "none")
            shown = excerpt(name)
            raise BadInput(f"--var {shown}: the pipeline declares no variable {shown!r} (declared: {known})")
        current = declared[name]
        number = meta.get(name, {}).get("type") == "Number" or (
            isinstance(current, int | float) and not isinstance(current, bool)
        )
        if number:  # one rule for what a Number takes, shared with the YAML reader
            if number_value(value) is None:
                raise BadInput(f"--var {name}: {excerpt(value)!r} is not a number (the variable is a Number)")
            declared[name] = number_value(value)
        else:
            declared[name] = value
    if assignments:
        pipeline.variables = declared


def durations_file(path_text: str) -> dict[str, float]:
    """The ``--durations`` file: a mapping step id / FQN / glob → seconds or a Harness duration."""
    from ...formats.yaml_io import YamlError, load_data

    label = f"--durations {path_text}"
    text = read_text_file(path_text, "--durations")
    try:
        data = load_data(text, source_name=path_text)  # aliases within a budget, like a pipeline
    except YamlError as err:
        raise BadInput(f"{label}: invalid YAML: {excerpt(str(err.problems[0]), MESSAGE_LIMIT)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadInput(f"{label}: expected a mapping step -> duration, got a {type(data).__name__}")
    out = {}
    for key, value in data.items():
        where = f"{path_text} ({excerpt(str(key), 60)})"
        if isinstance(value, bool) or not isinstance(value, str | int | float | None):
            raise BadInput(  # never the value's text: an alias can make it megabytes long
                f"--durations {where}: a {type(value).__name__} is not a duration; "
                "write seconds (30) or a Harness duration ('1m 30s')"
            )
        if isinstance(value, str) and len(value) > EXCERPT:
            raise BadInput(f"--durations {where}: {excerpt(value)!r} is not a duration (too long)")
        try:
            seconds = parse_duration(value, where)
        except DurationError as err:
            raise BadInput(foreign(err)) from None
        out[str(key)] = seconds if seconds is not None else 0.0
    return out


def execution_json(path_text: str, option: str = "") -> Any:
    """The parsed JSON of an execution file, read as ``load_harness_execution`` reads it (a
    regular UTF-8 file of at most 100 MB, its shape checked before it is parsed whole)."""
    from ...formats.harness_executions import HarnessExecutionError, read_execution_json

    try:
        return read_execution_json(path_text, option, top="any" if option else "object")
    except HarnessExecutionError as err:
        raise BadInput(foreign(err)) from None


# -- traces ---------------------------------------------------------------------------------------
def write_or_print(trace: Any, path_text: str) -> None:
    """Write the trace with :func:`~notebook_pipelines.formats.traces.write_trace`; a trace that
    cannot be written is printed instead (it is not lost) and the error says why."""
    from ...errors import TraceError

    try:
        write_trace(trace, path_text)
    except OSError as err:  # checked before the run; the disk may still fill up
        print(format_table(trace))
        raise BadInput(f"-o {path_text}: cannot write the trace ({err.strerror or err})") from None
    except TraceError as err:  # a value JSON cannot hold
        print(format_table(trace))
        raise BadInput(f"-o {path_text}: {str(err).removeprefix('write_trace: ')}") from None
    print(f"wrote {path_text}", file=sys.stderr)
