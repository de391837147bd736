"""The commands of ``notebook-pipelines``: each takes the parsed arguments and returns the exit code.

A command raises :class:`~.exits.BadInput` (exit 2) or :class:`~.exits.Problems` (exit 1) for
what stops it; :func:`~notebook_pipelines.frontends.cli.main` prints those.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any

from ...definition.durations import DurationError, format_duration, parse_duration
from ...errors import DefinitionError, PipelineError, RunInterrupted, excerpt, printable
from .exits import BadInput, Problems, bounded, foreign
from .files import (
    PICTURE_FORMATS,
    TRACE_FORMATS,
    check_output,
    durations_file,
    execution_json,
    load_plan,
    problem_lines,
    write_or_print,
)
from .tables import cell, format_table, print_history, seconds


# -- validate -------------------------------------------------------------------------------------
def validate_command(args: argparse.Namespace) -> int:
    plan = load_plan(args)
    steps = sum(1 for node in plan.nodes if node.kind == "step")
    stages = sum(1 for node in plan.nodes if node.kind == "stage")
    print(f"{args.file}: valid under the {args.rules} rules ({stages} stages, {steps} steps)")
    return 0


# -- render ---------------------------------------------------------------------------------------
def render_command(args: argparse.Namespace) -> int:
    out = check_output(args.output, PICTURE_FORMATS, "picture")
    plan = load_plan(args)  # an invalid pipeline is refused, as validate refuses it
    from ...views.rendering import to_file

    try:
        to_file(plan, out, full=args.full)
    except PipelineError as err:  # e.g. Graphviz missing
        raise BadInput(foreign(err)) from None
    except OSError as err:
        raise BadInput(f"-o {args.output}: cannot write the picture ({err.strerror or err})") from None
    print(f"wrote {out}")
    return 0


# -- simulate -------------------------------------------------------------------------------------
def simulate_command(args: argparse.Namespace) -> int:
    from ...analysis.options import in_flags, parse_failures, parse_iterations
    from ...engine.simulation import SimulationError, simulate

    if args.output:
        check_output(args.output, TRACE_FORMATS, "trace")
    try:
        default = parse_duration(args.default, "--default")
        failures = parse_failures(args.fail)
        iterations = parse_iterations(args.iterations)
    except (DurationError, SimulationError) as err:
        raise BadInput(foreign(err)) from None
    durations = durations_file(args.durations) if args.durations else None
    plan = load_plan(args)
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
        raise BadInput(foreign(in_flags(err))) from None
    return _finish(args, trace, "simulated")


# -- suggest --------------------------------------------------------------------------------------
def suggest_command(args: argparse.Namespace) -> int:
    from ...analysis.layout import LayoutError, suggest_layout
    from ...engine.simulation import SimulationError
    from ...formats.yaml_io import dump_yaml

    out = check_output(args.output, (".yaml", ".yml"), "pipeline") if args.output else None
    try:
        default = parse_duration(args.default, "--default")
    except DurationError as err:
        raise BadInput(foreign(err)) from None
    constraints = []
    for text in args.constraint:
        first, sep, second = text.partition(":")
        if not sep or not first or not second:
            raise BadInput(f"--constraint {excerpt(text, 60)}: write FIRST:SECOND (two identifiers)")
        constraints.append((first, second))
    durations = durations_file(args.durations) if args.durations else None
    plan = load_plan(args)
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
        raise BadInput(foreign(err)) from None
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
                print(bounded(f"note: {w.message}"), file=sys.stderr)
        print(f"wrote {out}")
    return 0


# -- run ------------------------------------------------------------------------------------------
def run_command(args: argparse.Namespace) -> int:
    from ...views.controller import run  # with a text progress line when stderr is a terminal

    if args.output:
        check_output(args.output, TRACE_FORMATS, "trace")
    plan = load_plan(args)
    pipeline = plan.pipeline
    try:
        trace = run(plan, report=False)  # compiled once, by load_plan
    except RunInterrupted as err:
        _finish(args, err.trace, "interrupted")
        return 130
    except DefinitionError as err:  # typed steps that cannot run here
        raise Problems(problem_lines(pipeline, err.problems), len(err.problems), "cannot run here") from None
    return _finish(args, trace, "ran")


def _finish(args: argparse.Namespace, trace: Any, how: str) -> int:
    if args.output:
        write_or_print(trace, args.output)
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
        from ...engine.running import failure_lines

        lines = failure_lines(trace)
        if lines:
            print(bounded("\n".join(lines)), file=sys.stderr)
    return 0 if status == "Success" else 1


# -- analyse --------------------------------------------------------------------------------------
def analyse_command(args: argparse.Namespace) -> int:
    from ...analysis.timing import critical_path, summary
    from ...formats.harness_executions import HarnessExecutionError, load_harness_execution

    if args.output:
        check_output(args.output, TRACE_FORMATS, "trace")
    doc = execution_json(args.file)
    attempts = execution_json(args.attempts, "--attempts") if args.attempts else None
    try:
        trace = load_harness_execution(doc, attempts=attempts)
    except HarnessExecutionError as err:
        raise BadInput(f"{args.file}: {foreign(err)}") from None
    root = trace[trace["kind"] == "pipeline"]
    status = str(root["status"].iloc[0])
    took = float(root["duration_s"].iloc[0])
    print(
        f"run {printable(str(trace.attrs['run_id']))} of pipeline {trace.attrs['pipeline']!r}: "
        f"{printable(status)} after {seconds(took)}"
    )
    print("\ntime per stage, step group and parallel block:")
    table = summary(trace)
    lines = [("kind", "name", "span", "busy", "speed-up", "longest")]
    for row in table.itertuples(index=False):
        lines.append(
            (
                str(row.kind).replace("_", " "),
                printable(cell(row.name)),
                seconds(row.span_s),
                seconds(row.busy_s),
                f"{row.speedup:.2f}" if row.speedup == row.speedup else "",
                printable(cell(row.longest_step)),
            )
        )
    widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
    for r in lines:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    path = critical_path(trace)
    print("\ncritical path:")
    for row in path.itertuples(index=False):
        attempt = f" (attempt {row.attempt})" if row.attempt != 1 else ""
        print(f"  {seconds(row.start_s):>8} → {seconds(row.end_s):>8}  {printable(row.fqn)}{attempt}")
    if args.output:
        write_or_print(trace, args.output)
    return 0 if status == "Success" else 1


# -- history --------------------------------------------------------------------------------------
def history_fetch_command(args: argparse.Namespace) -> int:
    from ...formats import history_fetch as hf
    from ...formats.history import HistoryError

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
        raise BadInput(foreign(err)) from None
    print_history(frame)
    return 0


def _kept_history(args: argparse.Namespace) -> Any:
    """The kept runs FOLDER, --source and --pipeline name; None (after saying so) when there are none."""
    from ...formats.history import HistoryError
    from ...formats.history_store import read_history

    try:
        frame = read_history(args.folder, source=args.source, pipeline=args.pipeline)
    except HistoryError as err:
        raise BadInput(foreign(err)) from None
    if not len(frame):
        print("no runs")
        return None
    return frame


def history_show_command(args: argparse.Namespace) -> int:
    frame = _kept_history(args)
    if frame is not None:
        print_history(frame)
    return 0


def history_report_command(args: argparse.Namespace) -> int:
    from ...views.history import report_html, report_text

    out = check_output(args.output, (".html", ".htm"), "report") if args.output else None
    if not 1 <= args.top <= 1000:
        raise BadInput(f"--top {args.top}: give a number of steps from 1 to 1000")
    if not 3 <= args.window <= 10_000:
        raise BadInput(f"--window {args.window}: give a number of runs from 3 to 10000")
    frame = _kept_history(args)
    if frame is None:
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
        raise BadInput(foreign(err)) from None
    return 0
