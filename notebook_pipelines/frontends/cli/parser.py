"""The argparse parser of ``notebook-pipelines``: one small function per command.

:func:`build_parser` makes the top-level parser and the option groups several commands share
(:class:`SharedOptions`), then lets each of :data:`COMMANDS` add its subcommand. Every
subcommand's help ends with the one rule of exit codes (:data:`~.exits.EXIT_CODES`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import commands
from .exits import EXIT_CODES

__all__ = ["COMMANDS", "SharedOptions", "build_parser"]

_EPILOG = f"""\
examples:
  notebook-pipelines validate pipeline.yaml --rules current
  notebook-pipelines render pipeline.yaml -o pipeline.svg
  notebook-pipelines simulate pipeline.yaml --durations durations.yaml --default 30s \\
      --fail unit:1,2 --fail deploy -o trace.parquet
  notebook-pipelines run pipeline.yaml --var env=dev -o trace.csv

{EXIT_CODES}"""


@dataclass(frozen=True)
class SharedOptions:
    """Parent parsers of options that several commands take, in the order they list them."""

    common: argparse.ArgumentParser  # FILE, --rules, --quiet: every pipeline command
    trace_out: argparse.ArgumentParser  # -o (a trace) and --var: the commands that make a trace
    timing: argparse.ArgumentParser  # --durations and --default: the commands that simulate


def _common() -> argparse.ArgumentParser:
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
    return common


def _trace_out() -> argparse.ArgumentParser:
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
    return trace_out


def _timing() -> argparse.ArgumentParser:
    timing = argparse.ArgumentParser(add_help=False)
    timing.add_argument("--durations", metavar="D.yaml", help="YAML mapping step id / FQN / glob -> duration")
    timing.add_argument(
        "--default", metavar="DURATION", default="1s", help="duration of other steps (default 1s)"
    )
    return timing


def command(sub: Any, name: str, help: str, description: str, examples: str, parents: list[Any]) -> Any:
    """Add subcommand ``name``: its help, its description, then ``examples`` and the exit codes."""
    return sub.add_parser(
        name,
        parents=parents,
        help=help,
        description=description,
        epilog=examples + "\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _add_validate(sub: Any, shared: SharedOptions) -> None:
    p = command(
        sub,
        "validate",
        help="check every rule; exit 1 listing the problems",
        description="Check every rule of the pipeline (structure and <+…> references); exit 0 when "
        "valid, 1 listing each problem as FILE:LINE:COLUMN: FQN: [RULE] message — fix: ..., 2 when "
        "FILE cannot be read as YAML",
        examples="examples:\n  notebook-pipelines validate pipeline.yaml\n"
        "  notebook-pipelines validate nested.yaml --rules current",
        parents=[shared.common],
    )
    p.set_defaults(handler=commands.validate_command)


def _add_render(sub: Any, shared: SharedOptions) -> None:
    p = command(
        sub,
        "render",
        help="draw the pipeline: .svg, .png or .dot",
        description="Draw the plan of a valid pipeline with Graphviz (an invalid one is refused, "
        "listing its problems as validate does). The format follows the suffix of OUT: "
        ".svg and .png need Graphviz's dot, .dot is the DOT text.",
        examples="examples:\n  notebook-pipelines render pipeline.yaml -o pipeline.svg\n"
        "  notebook-pipelines render pipeline.yaml -o pipeline.dot --rules current",
        parents=[shared.common],
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
    p.set_defaults(handler=commands.render_command)


def _add_simulate(sub: Any, shared: SharedOptions) -> None:
    p = command(
        sub,
        "simulate",
        help="run in virtual time with declared durations and injected failures",
        description="Run the pipeline in virtual time: no step body runs, each step takes its duration "
        "(from --durations, else --default) and fails where --fail says. Deterministic for a seed.",
        examples="examples:\n"
        "  notebook-pipelines simulate pipeline.yaml --default 10s\n"
        "  notebook-pipelines simulate pipeline.yaml --durations d.yaml --fail unit --fail deploy:1,2\n"
        "  notebook-pipelines simulate pipeline.yaml --fail deploy:1:Timeout -o trace.json\n\n"
        "d.yaml maps step identifiers (or FQNs, or globs) to Harness durations or seconds:\n"
        "  unit: 30s\n  deploy: 2m 30s\n  'pipeline.stages.prod.*': 45",
        parents=[shared.common, shared.trace_out, shared.timing],
    )
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
    p.set_defaults(handler=commands.simulate_command)


def _add_run(sub: Any, shared: SharedOptions) -> None:
    p = command(
        sub,
        "run",
        help="run for real: ShellScript steps in bash",
        description="Run the pipeline for real on this machine: ShellScript steps run in bash (their "
        "output streams to stdout), other step types need a handler registered in Python "
        "(nbp.register_step_type), untyped steps complete at once.",
        examples="examples:\n  notebook-pipelines run pipeline.yaml\n"
        "  notebook-pipelines run pipeline.yaml --var env=dev -o trace.csv",
        parents=[shared.common, shared.trace_out],
    )
    p.set_defaults(handler=commands.run_command)


def _add_suggest(sub: Any, shared: SharedOptions) -> None:
    p = command(
        sub,
        "suggest",
        help="find faster layouts that keep every dependency (the design assistant)",
        description="Find faster layouts of the pipeline: steps that no <+…> reference, condition or "
        "constraint orders run in parallel (new step groups hold chains), stages likewise with "
        "--across-stages; each "
        "layout is simulated with the same durations. Prints the suggestions, best first, with the "
        "orderings each one relaxes; -o writes the best one as Harness YAML.",
        examples="examples:\n  notebook-pipelines suggest pipeline.yaml --durations d.yaml -o better.yaml\n"
        "  notebook-pipelines suggest pipeline.yaml --max-parallel 2 --constraint build:deploy",
        parents=[shared.common, shared.timing],
    )
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
    p.set_defaults(handler=commands.suggest_command)


def _add_analyse(sub: Any, shared: SharedOptions) -> None:
    p = command(
        sub,
        "analyse",
        help="analyse a real Harness run: summary and critical path",
        description="Load a Harness execution (the JSON of GET /pipeline/api/pipelines/execution/v2/"
        "{planExecutionId}?renderFullBottomGraph=true) into a trace; print the time per stage, step "
        "group and parallel block, and the critical path. Exit 0 when the run ended Success, 1 when "
        "it did not, 2 when EXECUTION cannot be read as an execution.",
        examples="examples:\n  notebook-pipelines analyse execution.json\n"
        "  notebook-pipelines analyse execution.json --attempts attempts.json -o trace.parquet",
        parents=[],
    )
    p.add_argument("file", metavar="EXECUTION", help="the execution's JSON file (at most 100 MB)")
    p.add_argument(
        "--attempts",
        metavar="A.json",
        help="node JSON of earlier attempts of retried steps (getExecutionNode answers, a list)",
    )
    p.add_argument("-o", "--output", metavar="OUT", help="write the trace to OUT: .csv, .json or .parquet")
    p.set_defaults(handler=commands.analyse_command, rules="classic")


def _add_history(sub: Any, shared: SharedOptions) -> None:
    """``history fetch harness|github|gitlab …``, ``history show`` and ``history report [FOLDER]``."""
    history = command(
        sub,
        "history",
        help="fetch many runs from Harness, GitHub Actions or GitLab; summarise a kept history",
        description="Fetch the runs of a pipeline into the history cache (raw JSON + Parquet, under "
        "$NBP_CACHE or the user cache directory), or summarise a kept history. Tokens are read from "
        "the environment only (GITHUB_TOKEN, GITLAB_TOKEN, HARNESS_API_KEY), never from the command line.",
        examples="examples:\n"
        "  notebook-pipelines history fetch github octo/app --workflow ci.yml --last 200\n"
        "  notebook-pipelines history fetch gitlab group/app --last 100\n"
        "  notebook-pipelines history fetch harness --pipeline release --account A --org default "
        "--project shop --since 2026-01-01\n"
        "  notebook-pipelines history show",
        parents=[],
    )
    history.set_defaults(rules="classic", file="history")
    actions = history.add_subparsers(dest="action", metavar="ACTION", required=True)
    _add_history_fetch(actions)
    show = actions.add_parser("show", help="runs, date range and makespan percentiles of a kept history")
    _add_history_filters(show)
    show.set_defaults(handler=commands.history_show_command)
    _add_history_report(actions)


def _add_history_filters(p: Any) -> None:
    """FOLDER, --source and --pipeline: which kept runs ``history show`` and ``history report`` read."""
    p.add_argument("folder", nargs="?", metavar="FOLDER", help="the cache folder (default: the cache)")
    p.add_argument("--source", help="only this source (github, gitlab, harness, …)")
    p.add_argument("--pipeline", help="only this pipeline")


def _add_history_fetch(actions: Any) -> None:
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
    fetch.set_defaults(handler=commands.history_fetch_command)


def _add_history_report(actions: Any) -> None:
    report = command(
        actions,
        "report",
        help="the steps that own the critical path, the regressions and the flaky jobs of a kept history",
        description="Per pipeline of a kept history: the steps owning most of the critical path "
        "(criticality, seconds on the path, share of the median makespan), the shifts in duration "
        "(a rank test, where they started, their cost to the makespan) and the flaky nodes; with -o, "
        "an HTML page with the pictures (the structure coloured by criticality, the median run's "
        "Gantt, the trends).",
        examples="example:\n  notebook-pipelines history report notebooks/data -o report.html",
        parents=[],
    )
    _add_history_filters(report)
    report.add_argument(
        "--top", type=int, default=8, metavar="N", help="steps listed per pipeline (default 8)"
    )
    report.add_argument(
        "--window", type=int, default=20, metavar="RUNS", help="runs on each side of a change (default 20)"
    )
    report.add_argument(
        "-o", "--output", metavar="REPORT.html", help="also write an HTML report with the pictures"
    )
    report.set_defaults(handler=commands.history_report_command)


#: The subcommands, in the order ``--help`` lists them: each adds its parser.
COMMANDS: tuple[Callable[[Any, SharedOptions], None], ...] = (
    _add_validate,
    _add_render,
    _add_simulate,
    _add_run,
    _add_suggest,
    _add_analyse,
    _add_history,
)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``notebook-pipelines`` (subcommands validate/render/simulate/run)."""
    from ..._version import __version__

    parser = argparse.ArgumentParser(
        prog="notebook-pipelines",
        description="Validate, draw, simulate and run Harness CD pipeline YAML (stages, steps, step groups).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"notebook-pipelines {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    shared = SharedOptions(common=_common(), trace_out=_trace_out(), timing=_timing())
    for add in COMMANDS:
        add(sub, shared)
    return parser
