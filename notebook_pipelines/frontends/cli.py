"""The ``notebook-pipelines`` command line (also ``python -m notebook_pipelines``).

Four commands over a Harness pipeline YAML file, each a thin shell around the library:

- ``validate FILE`` — every problem of the pipeline, each with its ``file:line:column``;
- ``render FILE -o OUT`` — the picture, ``.svg``, ``.png`` or ``.dot`` by suffix;
- ``simulate FILE`` — a run in virtual time (durations from a YAML file, injected failures);
- ``run FILE`` — a real run: ``ShellScript`` steps run in ``bash``, other types need a handler.

``simulate`` and ``run`` print a readable table of the trace, or write it with ``-o`` as
``.csv``, ``.json`` or ``.parquet`` with :func:`~notebook_pipelines.formats.traces.write_trace`
(the file format of ``trace.pipeline.save``, read back by ``nbp.read_trace``: the columns and
status names of the trace schema; ``outputs`` and ``inputs`` as JSON text in CSV and Parquet;
CSV cells a spreadsheet would run as formulas prefixed with ``'``).

One rule of exit codes for every command: **0** success (valid, drawn, the run ended
``Success``); **1** the pipeline has problems — it is not valid (every problem is listed, as
``validate`` lists them: a YAML file that is not a valid pipeline, a looping strategy, a step
type that cannot run here) or its run did not end ``Success`` (the trace is still printed or
written); **2** unusable input or usage — a bad option, a ``FILE`` or ``--durations`` file that
cannot be read (missing, not a regular file, not UTF-8, not YAML), an ``-o`` path that cannot
be written (checked before anything runs); 130 interrupted. Never a traceback: each error is
one message saying what is wrong, where, and how to fix it, and no message echoes more than an
excerpt of a file (a value is cut to :data:`~notebook_pipelines.errors.EXCERPT` characters, at
most :data:`MAX_PROBLEMS` problems are listed).

What the YAML keeps but the toolkit does not model is printed as warnings on stderr
(``--quiet`` hides them). Every command takes ``--rules classic|current`` (decision D1).

>>> main(["--version"])  # doctest: +ELLIPSIS
notebook-pipelines ...
0
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from ..definition.durations import DurationError, format_duration, parse_duration
from ..errors import (
    EXCERPT,
    MESSAGE_LIMIT,
    DefinitionError,
    PipelineError,
    RunInterrupted,
    excerpt,
    printable,
    rule_reference,
)
from ..formats.traces import write_trace

__all__ = ["EXIT_CODES", "MAX_PROBLEMS", "build_parser", "format_table", "main", "write_trace"]

TRACE_FORMATS = (".csv", ".json", ".parquet")
PICTURE_FORMATS = (".svg", ".png", ".dot")
#: The most problems an error lists (then how many more there are).
MAX_PROBLEMS = 100
#: YAML aliases may repeat what they name at most this many nodes over (a "billion laughs"
#: document expands to more than memory holds).

EXIT_CODES = """\
exit codes (the same for every command):
  0    success: the pipeline is valid (validate), drawn (render), or its run ended Success
  1    the pipeline has problems: it is not valid (each problem is listed with FILE:LINE:COLUMN,
       as validate lists them) or its run did not end Success (the trace is still printed or
       written)
  2    unusable input or usage: a bad option; FILE or --durations cannot be read (missing, not
       a regular file, not UTF-8, not YAML); -o cannot be written (checked before anything runs)
  130  interrupted
"""

_EPILOG = f"""\
examples:
  notebook-pipelines validate pipeline.yaml --rules current
  notebook-pipelines render pipeline.yaml -o pipeline.svg
  notebook-pipelines simulate pipeline.yaml --durations durations.yaml --default 30s \\
      --fail unit:1,2 --fail deploy -o trace.parquet
  notebook-pipelines run pipeline.yaml --var env=dev -o trace.csv

{EXIT_CODES}"""


class BadInput(Exception):
    """Unusable input or a usage mistake (an option, a file that cannot be read or written):
    exit code 2, one message."""


class Problems(Exception):
    """The pipeline has problems (it is not valid, or cannot run here): exit code 1.

    ``lines`` are the problems as printed (each bounded, at most ``MAX_PROBLEMS`` of them),
    ``count`` how many there are, ``what`` says what is wrong in a few words.
    """

    def __init__(self, lines: list[str], count: int, what: str = "is not valid"):
        super().__init__(what)
        self.lines, self.count, self.what = lines, count, what


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
        help="set a pipeline variable (repeatable); Number variables take numbers. A ShellScript "
        "gets <+...> values pasted into its script unquoted, as Harness does: a value like $(cmd) "
        "runs cmd. To keep a value as text, pass it in the step's environmentVariables "
        '(- {name: WHO, value: <+pipeline.variables.who>}) and write "$WHO" in the script',
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
        help="check every rule; exit 1 listing the problems",
        description="Check every rule of the pipeline (structure and <+…> references); exit 0 when "
        "valid, 1 listing each problem as FILE:LINE:COLUMN: FQN: [RULE] message — fix: ..., 2 when "
        "FILE cannot be read as YAML",
        epilog="examples:\n  notebook-pipelines validate pipeline.yaml\n"
        "  notebook-pipelines validate nested.yaml --rules current\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(handler=_validate)

    p = sub.add_parser(
        "render",
        parents=[common],
        help="draw the pipeline: .svg, .png or .dot",
        description="Draw the plan of a valid pipeline with Graphviz (an invalid one is refused, "
        "listing its problems as validate does). The format follows the suffix of OUT: "
        ".svg and .png need Graphviz's dot, .dot is the DOT text.",
        epilog="examples:\n  notebook-pipelines render pipeline.yaml -o pipeline.svg\n"
        "  notebook-pipelines render pipeline.yaml -o pipeline.dot --rules current\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "-o", "--output", metavar="OUT", required=True, help="the picture file: .svg, .png or .dot"
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="draw every step of a large pipeline (above 400 nodes the picture is a summary: step "
        "groups collapsed, long lists shortened, with counts)",
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
        "  unit: 30s\n  deploy: 2m 30s\n  'pipeline.stages.prod.*': 45\n\n" + EXIT_CODES,
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
    p.add_argument(
        "--iterations",
        metavar="NODE=N",
        action="append",
        default=[],
        help="a looped NODE whose items are known only in a run (items: <+stage.output.hosts>) "
        "has N of them; repeatable (without it: one iteration, with a warning)",
    )
    p.set_defaults(handler=_simulate)

    p = sub.add_parser(
        "run",
        parents=[common, trace_out],
        help="run for real: ShellScript steps in bash",
        description="Run the pipeline for real on this machine: ShellScript steps run in bash (their "
        "output streams to stdout), other step types need a handler registered in Python "
        "(nbp.register_step_type), untyped steps complete at once.",
        epilog="examples:\n  notebook-pipelines run pipeline.yaml\n"
        "  notebook-pipelines run pipeline.yaml --var env=dev -o trace.csv\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(handler=_run)

    p = sub.add_parser(
        "suggest",
        parents=[common],
        help="find faster layouts that keep every dependency (the design assistant)",
        description="Find faster layouts of the pipeline: steps that no <+…> reference, condition or "
        "constraint orders run in parallel (new step groups hold chains), stages likewise with "
        "--across-stages; each "
        "layout is simulated with the same durations. Prints the suggestions, best first, with the "
        "orderings each one relaxes; -o writes the best one as Harness YAML.",
        epilog="examples:\n  notebook-pipelines suggest pipeline.yaml --durations d.yaml -o better.yaml\n"
        "  notebook-pipelines suggest pipeline.yaml --max-parallel 2 --constraint build:deploy\n\n"
        + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--durations", metavar="D.yaml", help="YAML mapping step id / FQN / glob -> duration")
    p.add_argument("--default", metavar="DURATION", default="1s", help="duration of other steps (default 1s)")
    p.add_argument(
        "--max-parallel",
        metavar="N",
        type=int,
        help="at most N units (a step, a step group, a looped step) at once in the whole pipeline",
    )
    p.add_argument(
        "--across-stages",
        action="store_true",
        help="stages that nothing orders may run in parallel (default: the stage order is kept)",
    )
    p.add_argument(
        "--constraint",
        metavar="FIRST:SECOND",
        action="append",
        default=[],
        help="SECOND never starts before FIRST ends (identifiers); repeatable",
    )
    p.add_argument(
        "-o", "--output", metavar="OUT", help="write the best layout as Harness YAML (.yaml, .yml)"
    )
    p.set_defaults(handler=_suggest)

    p = sub.add_parser(
        "analyse",
        help="analyse a real Harness run: summary and critical path",
        description="Load a Harness execution (the JSON of GET /pipeline/api/pipelines/execution/v2/"
        "{planExecutionId}?renderFullBottomGraph=true) into a trace; print the time per stage, step "
        "group and parallel block, and the critical path. Exit 0 when the run ended Success, 1 when "
        "it did not, 2 when EXECUTION cannot be read as an execution.",
        epilog="examples:\n  notebook-pipelines analyse execution.json\n"
        "  notebook-pipelines analyse execution.json --attempts attempts.json -o trace.parquet\n\n"
        + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="EXECUTION", help="the execution's JSON file (at most 100 MB)")
    p.add_argument(
        "--attempts",
        metavar="A.json",
        help="node JSON of earlier attempts of retried steps (getExecutionNode answers, a list)",
    )
    p.add_argument("-o", "--output", metavar="OUT", help="write the trace to OUT: .csv, .json or .parquet")
    p.set_defaults(handler=_analyse, rules="classic")
    _history_parser(sub)
    return parser


def _history_parser(sub: Any) -> None:
    """``history fetch harness|github|gitlab …``, ``history show`` and ``history report [FOLDER]``."""
    history = sub.add_parser(
        "history",
        help="fetch many runs from Harness, GitHub Actions or GitLab; summarise a kept history",
        description="Fetch the runs of a pipeline into the history cache (raw JSON + Parquet, under "
        "$NBP_CACHE or the user cache directory), or summarise a kept history. Tokens are read from "
        "the environment only (GITHUB_TOKEN, GITLAB_TOKEN, HARNESS_API_KEY), never from the command line.",
        epilog="examples:\n"
        "  notebook-pipelines history fetch github octo/app --workflow ci.yml --last 200\n"
        "  notebook-pipelines history fetch gitlab group/app --last 100\n"
        "  notebook-pipelines history fetch harness --pipeline release --account A --org default "
        "--project shop --since 2026-01-01\n"
        "  notebook-pipelines history show\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    history.set_defaults(rules="classic", file="history")
    actions = history.add_subparsers(dest="action", metavar="ACTION", required=True)
    fetch = actions.add_parser("fetch", help="fetch runs into the cache")
    systems = fetch.add_subparsers(dest="system", metavar="SYSTEM", required=True)
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument("--last", type=int, default=100, metavar="N", help="the newest N runs (default 100)")
    shared.add_argument(
        "--cache", metavar="DIR", help="the cache folder (default: $NBP_CACHE or the user cache dir)"
    )
    shared.add_argument(
        "--deadline", type=float, default=600.0, metavar="S", help="seconds for the whole fetch"
    )
    shared.add_argument("--concurrency", type=int, default=4, metavar="K", help="requests at once (1-16)")
    gh = systems.add_parser(
        "github", parents=[shared], help="a GitHub Actions workflow (token: GITHUB_TOKEN)"
    )
    gh.add_argument("repo", metavar="OWNER/REPO")
    gh.add_argument("--workflow", required=True, help="the workflow file name (ci.yml) or id")
    gh.add_argument("--base-url", default="https://api.github.com", help="the API (GitHub Enterprise Server)")
    gh.add_argument("--branch", help="only runs of this branch")
    gl = systems.add_parser("gitlab", parents=[shared], help="a GitLab project (token: GITLAB_TOKEN)")
    gl.add_argument("project", metavar="PROJECT", help="group/name or the numeric id")
    gl.add_argument("--url", default="https://gitlab.com", help="the GitLab instance")
    gl.add_argument("--ref", help="only pipelines of this branch or tag")
    hn = systems.add_parser("harness", parents=[shared], help="a Harness pipeline (key: HARNESS_API_KEY)")
    for name in ("pipeline", "account", "org", "project"):
        hn.add_argument(f"--{name}", required=True)
    hn.add_argument("--since", help="runs started at or after this time (ISO 8601)")
    hn.add_argument("--status", action="append", help="only runs with this status (repeatable)")
    hn.add_argument("--base-url", default="https://app.harness.io", help="Harness's address")
    fetch.set_defaults(handler=_history_fetch)
    show = actions.add_parser("show", help="runs, date range and makespan percentiles of a kept history")
    show.add_argument("folder", nargs="?", metavar="FOLDER", help="the cache folder (default: the cache)")
    show.add_argument("--source", help="only this source (github, gitlab, harness, …)")
    show.add_argument("--pipeline", help="only this pipeline")
    show.set_defaults(handler=_history_show)
    report = actions.add_parser(
        "report",
        help="the steps that own the critical path, the regressions and the flaky jobs of a kept history",
        description="Per pipeline of a kept history: the steps owning most of the critical path "
        "(criticality, seconds on the path, share of the median makespan), the shifts in duration "
        "(a rank test, where they started, their cost to the makespan) and the flaky nodes; with -o, "
        "an HTML page with the pictures (the structure coloured by criticality, the median run's "
        "Gantt, the trends).",
        epilog="example:\n  notebook-pipelines history report notebooks/data -o report.html\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("folder", nargs="?", metavar="FOLDER", help="the cache folder (default: the cache)")
    report.add_argument("--source", help="only this source (github, gitlab, harness, …)")
    report.add_argument("--pipeline", help="only this pipeline")
    report.add_argument(
        "--top", type=int, default=8, metavar="N", help="steps listed per pipeline (default 8)"
    )
    report.add_argument(
        "--window", type=int, default=20, metavar="RUNS", help="runs on each side of a change (default 20)"
    )
    report.add_argument(
        "-o", "--output", metavar="REPORT.html", help="also write an HTML report with the pictures"
    )
    report.set_defaults(handler=_history_report)


def _history_fetch(args: argparse.Namespace) -> int:
    from ..formats import history_fetch as hf
    from ..formats.history import HistoryError

    common = {"last": args.last, "cache": args.cache, "deadline": args.deadline,
              "concurrency": args.concurrency, "progress": True}  # fmt: skip
    try:
        if args.system == "github":
            frame = hf.fetch_github_history(args.repo, args.workflow, base_url=args.base_url,
                                            branch=args.branch, **common)  # fmt: skip
        elif args.system == "gitlab":
            frame = hf.fetch_gitlab_history(args.project, url=args.url, ref=args.ref, **common)
        else:
            frame = hf.fetch_harness_history(pipeline=args.pipeline, account=args.account, org=args.org,
                                             project=args.project, since=args.since, status=args.status,
                                             base_url=args.base_url, **common)  # fmt: skip
    except HistoryError as err:
        raise BadInput(_foreign(err)) from None
    _print_history(frame)
    return 0


def _history_show(args: argparse.Namespace) -> int:
    from ..formats.history import HistoryError
    from ..formats.history_store import read_history

    try:
        frame = read_history(args.folder, source=args.source, pipeline=args.pipeline)
    except HistoryError as err:
        raise BadInput(_foreign(err)) from None
    if not len(frame):
        print("no runs")
        return 0
    _print_history(frame)
    return 0


def _history_report(args: argparse.Namespace) -> int:
    from ..errors import PipelineError
    from ..formats.history import HistoryError
    from ..formats.history_store import read_history
    from ..views.history import report_html, report_text

    out = _check_output(args.output, (".html", ".htm"), "report") if args.output else None
    if not 1 <= args.top <= 1000:
        raise BadInput(f"--top {args.top}: give a number of steps from 1 to 1000")
    if not 3 <= args.window <= 10_000:
        raise BadInput(f"--window {args.window}: give a number of runs from 3 to 10000")
    try:
        frame = read_history(args.folder, source=args.source, pipeline=args.pipeline)
    except HistoryError as err:
        raise BadInput(_foreign(err)) from None
    if not len(frame):
        print("no runs")
        return 0
    histories = [part for _, part in frame.groupby(["source", "pipeline"], sort=True, observed=True)]
    try:
        for k, part in enumerate(histories):
            print(("\n" if k else "") + report_text(part, args.top, args.window))
        if out is not None:
            page = report_html(histories, args.top, args.window)
            try:
                out.write_text(page, encoding="utf-8")
            except OSError as err:
                raise BadInput(f"-o {args.output}: cannot write the report ({err.strerror or err})") from None
            print(f"\nwrote {out}")
    except PipelineError as err:
        raise BadInput(_foreign(err)) from None
    return 0


def _print_history(frame: Any) -> None:
    """One line per pipeline: runs, date range, p50/p95 makespan, share of successful runs."""
    heads = frame[frame["kind"] == "pipeline"]
    lines = [("source", "pipeline", "runs", "first", "last", "p50", "p95", "success")]
    for (source, pipeline), runs in heads.groupby(["source", "pipeline"], sort=True, observed=True):
        created = runs["created"].dropna()
        spans = runs["duration_s"].dropna()
        ok = (runs["status"].astype(str) == "Success").mean()
        lines.append(
            (
                _cell(source),
                _cell(pipeline),
                str(runs["run_id"].nunique()),
                created.min().strftime("%Y-%m-%d %H:%M") if len(created) else "",
                created.max().strftime("%Y-%m-%d %H:%M") if len(created) else "",
                _seconds(float(spans.quantile(0.5))) if len(spans) else "",
                _seconds(float(spans.quantile(0.95))) if len(spans) else "",
                f"{ok:.0%}",
            )
        )
    widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
    for r in lines:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


class _Terminal:
    """A terminal stream that shows control characters as text (:func:`printable`): what a
    step prints (its log, echoed live) or a pipeline holds never reaches the terminal as an
    escape sequence (clearing the screen, setting the title, recolouring). Line breaks, carriage
    returns (the progress line) and tabs pass."""

    def __init__(self, stream: Any):
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(printable(text, keep="\n\r\t"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _on_terminal(stream: Any) -> Any:
    """``stream`` wrapped in :class:`_Terminal` when it is a terminal, else as it is."""
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        tty = False
    return _Terminal(stream) if tty and not isinstance(stream, _Terminal) else stream


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code (see :data:`EXIT_CODES`).

    On a terminal, control characters in anything printed (names, conditions, messages, the
    steps' live output) are shown escaped (``\\x1b[2J``), never run by the terminal.
    """
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _on_terminal(stdout), _on_terminal(stderr)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = stdout, stderr


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version (0), usage errors (2)
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return args.handler(args)
    except BadInput as err:
        print(_bounded(f"error: {err}"), file=sys.stderr)
        return 2
    except Problems as err:
        n = f"{err.count} problem{'s' if err.count != 1 else ''} under the {args.rules} rules"
        if args.command == "validate":  # the problems are validate's report: on stdout
            print("\n".join(err.lines))
            print(f"{args.file}: {n}", file=sys.stderr)
        else:
            print(
                "\n".join([f"error: {args.file}: the pipeline {err.what} ({n}):", *err.lines]),
                file=sys.stderr,
            )
        if reference := rule_reference("\n".join(err.lines)):
            print(reference, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`… | head`): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _foreign(error: Exception | str) -> str:
    """Another layer's error message, each line an excerpt (it may quote a value at length)."""
    return "\n".join(excerpt(line, MESSAGE_LIMIT) for line in str(error).splitlines()[:MAX_PROBLEMS])


def _bounded(message: str) -> str:
    """A message of at most ``MAX_PROBLEMS`` lines, none longer than a problem line can be: a
    safety net, since each part is bounded where it is made."""
    lines = message.splitlines() or [""]
    shown = [excerpt(line, 3 * MESSAGE_LIMIT) for line in lines[:MAX_PROBLEMS]]
    if len(lines) > MAX_PROBLEMS:
        shown.append(f"… and {len(lines) - MAX_PROBLEMS} more lines")
    return "\n".join(shown)


# -- reading and writing files --------------------------------------------------------------------
def _read_text(path_text: str, option: str = "") -> str:
    """The text of the regular UTF-8 file ``path_text``; anything else → ``BadInput`` saying why.

    The reader of ``formats.files``, which the Python API uses too (``nbp.load_yaml(path)``):
    opened without blocking and refused unless it is a regular file, so a FIFO or a device
    never makes the command wait; at most ``MAX_TEXT_BYTES``. ``option`` names the flag that
    gave the path (``--durations``).
    """
    from ..formats.files import InputFileError, read_text

    try:
        return read_text(path_text, option=option)
    except InputFileError as err:
        raise BadInput(str(err)) from None


def _check_output(path_text: str, formats: tuple[str, ...], what: str) -> Path:
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
    from ..formats.yaml_io import read_yaml

    try:
        return read_yaml(io.StringIO(text), rules, source_name=args.file)
    except RecursionError:
        raise BadInput(f"{args.file}: the YAML is nested too deeply to read") from None


def _load(args: argparse.Namespace) -> Any:
    """The pipeline of FILE, not yet validated.

    A file that cannot be read as YAML is ``BadInput`` (exit 2); YAML that is not a valid
    pipeline is ``Problems`` (exit 1) listing every problem the file has.
    """
    from ..formats.yaml_io import YamlError, YamlSyntaxError

    text = _read_text(args.file)
    try:
        loaded = _read(text, args, args.rules)
    except YamlSyntaxError as err:  # not YAML at all
        raise BadInput(
            "\n".join(["cannot read the pipeline:", *_problem_lines(None, err.problems)])
        ) from None
    except YamlError as err:  # YAML, not a valid pipeline
        pipeline, found = _every_problem(text, args, list(err.problems))
        raise Problems(_problem_lines(pipeline, found), len(found)) from None
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
    from ..formats.yaml_io import YamlError

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


def _problem_lines(pipeline: Any, problems: list) -> list[str]:
    """One printed entry per problem (where it is written, when known), at most ``MAX_PROBLEMS``."""
    from ..formats.yaml_io import YamlProblem, source_position

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


def _load_plan(args: argparse.Namespace) -> Any:
    """The plan of the loaded pipeline, with ``--var`` applied; any problem → ``Problems``.

    The pipeline is ``plan.pipeline``; it is compiled (and so validated) once, here.
    """
    pipeline = _load(args)
    _apply_vars(pipeline, getattr(args, "var", []))
    plan, found = _compile(pipeline)
    if found:
        raise Problems(_problem_lines(pipeline, found), len(found))
    return plan


def _apply_vars(pipeline: Any, assignments: list[str]) -> None:
    from ..definition.validation import number_value

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


# -- validate -------------------------------------------------------------------------------------
def _validate(args: argparse.Namespace) -> int:
    plan = _load_plan(args)
    steps = sum(1 for node in plan.nodes if node.kind == "step")
    stages = sum(1 for node in plan.nodes if node.kind == "stage")
    print(f"{args.file}: valid under the {args.rules} rules ({stages} stages, {steps} steps)")
    return 0


# -- render ---------------------------------------------------------------------------------------
def _render(args: argparse.Namespace) -> int:
    out = _check_output(args.output, PICTURE_FORMATS, "picture")
    plan = _load_plan(args)  # an invalid pipeline is refused, as validate refuses it
    from ..views.rendering import to_file

    try:
        to_file(plan, out, full=args.full)
    except PipelineError as err:  # e.g. Graphviz missing
        raise BadInput(_foreign(err)) from None
    except OSError as err:
        raise BadInput(f"-o {args.output}: cannot write the picture ({err.strerror or err})") from None
    print(f"wrote {out}")
    return 0


# -- simulate -------------------------------------------------------------------------------------
def _durations(path_text: str) -> dict[str, float]:
    """The ``--durations`` file: a mapping step id / FQN / glob → seconds or a Harness duration."""
    from ..formats.yaml_io import YamlError, load_data

    label = f"--durations {path_text}"
    text = _read_text(path_text, "--durations")
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
            raise BadInput(_foreign(err)) from None
        out[str(key)] = seconds if seconds is not None else 0.0
    return out


def _simulate(args: argparse.Namespace) -> int:
    from ..analysis.options import in_flags, parse_failures, parse_iterations
    from ..engine.simulation import SimulationError, simulate

    if args.output:
        _check_output(args.output, TRACE_FORMATS, "trace")
    try:
        default = parse_duration(args.default, "--default")
        failures = parse_failures(args.fail)
        iterations = parse_iterations(args.iterations)
    except (DurationError, SimulationError) as err:
        raise BadInput(_foreign(err)) from None
    durations = _durations(args.durations) if args.durations else None
    plan = _load_plan(args)
    try:  # strict: a key that matches no step is refused, with a close match when there is one
        trace = simulate(
            plan,
            durations=durations,
            default=default or 0.0,
            failures=failures or None,
            seed=args.seed,
            strict=True,
            iterations=iterations or None,
        )
    except SimulationError as err:
        raise BadInput(_foreign(in_flags(err))) from None
    return _finish(args, trace, "simulated")


# -- suggest --------------------------------------------------------------------------------------
def _suggest(args: argparse.Namespace) -> int:
    from ..analysis.layout import LayoutError, suggest_layout
    from ..engine.simulation import SimulationError
    from ..formats.yaml_io import dump_yaml

    out = _check_output(args.output, (".yaml", ".yml"), "pipeline") if args.output else None
    try:
        default = parse_duration(args.default, "--default")
    except DurationError as err:
        raise BadInput(_foreign(err)) from None
    constraints = []
    for text in args.constraint:
        first, sep, second = text.partition(":")
        if not sep or not first or not second:
            raise BadInput(f"--constraint {excerpt(text, 60)}: write FIRST:SECOND (two identifiers)")
        constraints.append((first, second))
    durations = _durations(args.durations) if args.durations else None
    plan = _load_plan(args)
    try:
        found = suggest_layout(
            plan.pipeline,
            durations=durations,
            default=default or 0.0,
            constraints=constraints,
            max_parallel=args.max_parallel,
            rules=args.rules,
            across_stages=args.across_stages,
        )
    except (LayoutError, SimulationError) as err:
        raise BadInput(_foreign(err)) from None
    print(found.text())
    if out is not None:
        if not found:
            print(f"nothing written to {out}: no faster layout", file=sys.stderr)
            return 0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                dump_yaml(found[0].pipeline, out)
            except OSError as err:
                raise BadInput(f"-o {args.output}: cannot write ({err.strerror or err})") from None
        if not args.quiet:
            for w in caught:
                print(_bounded(f"note: {w.message}"), file=sys.stderr)
        print(f"wrote {out}")
    return 0


# -- run ------------------------------------------------------------------------------------------
def _run(args: argparse.Namespace) -> int:
    from ..views.controller import run  # with a text progress line when stderr is a terminal

    if args.output:
        _check_output(args.output, TRACE_FORMATS, "trace")
    plan = _load_plan(args)
    pipeline = plan.pipeline
    try:
        trace = run(plan, report=False)  # compiled once, by _load_plan
    except RunInterrupted as err:
        _finish(args, err.trace, "interrupted")
        return 130
    except DefinitionError as err:  # typed steps that cannot run here
        raise Problems(_problem_lines(pipeline, err.problems), len(err.problems), "cannot run here") from None
    return _finish(args, trace, "ran")


def _finish(args: argparse.Namespace, trace: Any, how: str) -> int:
    if args.output:
        _write(trace, args.output)
    else:
        print(format_table(trace))
    root = trace[trace["kind"] == "pipeline"]
    status = str(root["status"].iloc[0]) if len(root) else "NotStarted"
    took = float(root["duration_s"].iloc[0]) if len(root) else float("nan")
    print(
        f"pipeline {trace.attrs.get('pipeline', '')!r} {how}: {status} after {format_duration(took)}",
        file=sys.stderr,
    )
    if args.output and status != "Success":  # the table is in the file: say here what went wrong
        from ..engine.running import failure_lines

        lines = failure_lines(trace)
        if lines:
            print(_bounded("\n".join(lines)), file=sys.stderr)
    return 0 if status == "Success" else 1


def _execution_json(path_text: str, option: str = "") -> Any:
    """The parsed JSON of an execution file, read as ``load_harness_execution`` reads it (a
    regular UTF-8 file of at most 100 MB, its shape checked before it is parsed whole)."""
    from ..formats.harness_executions import HarnessExecutionError, read_execution_json

    try:
        return read_execution_json(path_text, option, top="any" if option else "object")
    except HarnessExecutionError as err:
        raise BadInput(_foreign(err)) from None


def _analyse(args: argparse.Namespace) -> int:
    from ..analysis.timing import critical_path, summary
    from ..formats.harness_executions import HarnessExecutionError, load_harness_execution

    if args.output:
        _check_output(args.output, TRACE_FORMATS, "trace")
    doc = _execution_json(args.file)
    attempts = _execution_json(args.attempts, "--attempts") if args.attempts else None
    try:
        trace = load_harness_execution(doc, attempts=attempts)
    except HarnessExecutionError as err:
        raise BadInput(f"{args.file}: {_foreign(err)}") from None
    root = trace[trace["kind"] == "pipeline"]
    status = str(root["status"].iloc[0])
    took = float(root["duration_s"].iloc[0])
    print(
        f"run {printable(str(trace.attrs['run_id']))} of pipeline {trace.attrs['pipeline']!r}: "
        f"{printable(status)} after {_seconds(took)}"
    )
    print("\ntime per stage, step group and parallel block:")
    table = summary(trace)
    lines = [("kind", "name", "span", "busy", "speed-up", "longest")]
    for row in table.itertuples(index=False):
        lines.append(
            (
                str(row.kind).replace("_", " "),
                printable(_cell(row.name)),
                _seconds(row.span_s),
                _seconds(row.busy_s),
                f"{row.speedup:.2f}" if row.speedup == row.speedup else "",
                printable(_cell(row.longest_step)),
            )
        )
    widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
    for r in lines:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    path = critical_path(trace)
    print("\ncritical path:")
    for row in path.itertuples(index=False):
        attempt = f" (attempt {row.attempt})" if row.attempt != 1 else ""
        print(f"  {_seconds(row.start_s):>8} → {_seconds(row.end_s):>8}  {printable(row.fqn)}{attempt}")
    if args.output:
        _write(trace, args.output)
    return 0 if status == "Success" else 1


# -- traces ---------------------------------------------------------------------------------------
def _write(trace: Any, path_text: str) -> None:
    """Write the trace with :func:`~notebook_pipelines.formats.traces.write_trace`; a trace that
    cannot be written is printed instead (it is not lost) and the error says why."""
    from ..errors import TraceError

    try:
        write_trace(trace, path_text)
    except OSError as err:  # checked before the run; the disk may still fill up
        print(format_table(trace))
        raise BadInput(f"-o {path_text}: cannot write the trace ({err.strerror or err})") from None
    except TraceError as err:  # a value JSON cannot hold
        print(format_table(trace))
        raise BadInput(f"-o {path_text}: {str(err).removeprefix('write_trace: ')}") from None
    print(f"wrote {path_text}", file=sys.stderr)


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
        note = printable(note)  # a control character from the pipeline shows escaped (\x1b…)
        if len(note) > width:
            note = note[: width - 1] + "…"
        start, end = _cell(row.start_s), _cell(row.end_s)
        took = _seconds(row.duration_s) if start else ""
        rows.append(
            (
                "  " * depth.get(row.fqn, 0) + printable(label),
                str(row.kind).replace("_", " "),
                printable(str(row.status)),
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
