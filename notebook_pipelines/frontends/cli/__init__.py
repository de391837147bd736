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

import os
import sys
from typing import Any

from ...errors import printable, rule_reference
from ...formats.traces import write_trace
from .exits import EXIT_CODES, MAX_PROBLEMS, BadInput, Problems, bounded
from .parser import build_parser
from .tables import format_table

__all__ = ["EXIT_CODES", "MAX_PROBLEMS", "build_parser", "format_table", "main", "write_trace"]


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
        print(bounded(f"error: {err}"), file=sys.stderr)
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
