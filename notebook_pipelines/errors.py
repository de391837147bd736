"""One hierarchy of errors.

``PipelineError`` is the root. ``DefinitionError`` reports every structural problem found
before a run (each line names the node's fully qualified name, the rule and the fix).
``ExpressionError`` shows the expression with a caret under the problem. ``StepError`` is
raised by step bodies to choose a Harness error type; ``RunFailed``/``RunInterrupted`` carry
the trace of a run that did not end well.

Every public error and warning of the package is defined here (the errors of definitions, runs,
simulations, files, HTTP, YAML, Harness executions, histories, layouts, clusters, pictures and
puzzles), so this module is the one list of what the package may raise; ``nbp`` exports each,
and the module that raises one re-exports it. This module imports nothing of the package.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

# The one list of the errors and warnings the package may raise (and ``Problem``, what a
# ``DefinitionError`` lists): ``notebook_pipelines`` exports exactly these. The helpers below
# (``EXCERPT``, ``MESSAGE_LIMIT``, ``excerpt``, ``rule_reference``…) are the package's own.
__all__ = [
    "ClusterError",
    "DefinitionError",
    "DurationError",
    "DurationTooLong",
    "ExerciseError",
    "ExpressionError",
    "GraphvizMissing",
    "HarnessExecutionError",
    "HarnessStatusWarning",
    "HistoryDurationsWarning",
    "HistoryError",
    "HistoryWarning",
    "HttpError",
    "HttpStopped",
    "HttpTimeout",
    "HttpTooLarge",
    "InputFileError",
    "LayoutError",
    "LoopingError",
    "LoopingWarning",
    "MissingFileError",
    "NestedRunError",
    "PipelineError",
    "Problem",
    "PuzzleError",
    "RunError",
    "RunFailed",
    "RunInterrupted",
    "SimulationError",
    "StepCancelled",
    "StepError",
    "StrategyError",
    "TraceError",
    "YamlError",
    "YamlSyntaxError",
    "YamlWarning",
]


#: The most characters of one value (an expression, an identifier, a file's text…) a message shows.
EXCERPT = 200
#: The most characters of one part of a problem (its message, its fix) as printed.
MESSAGE_LIMIT = 400


#: control characters (C0, DEL, C1) and the bidirectional-text controls (they reorder what a
#: terminal shows) → their escaped form
_CONTROLS = {
    **{c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))},
    **{c: f"\\u{c:04x}" for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))},
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
}


def printable(text: str, keep: str = "") -> str:
    r"""``text`` with every control character escaped (``\x1b``, ``\n``, ``\u202e``…), except
    those in ``keep``: what a pipeline's names, conditions or logs hold reaches a terminal as
    text, never as an escape sequence that recolours, moves the cursor or clears the screen.

    >>> printable("\x1b[2Jred\tline\n")
    '\\x1b[2Jred\\tline\\n'
    >>> printable("two\nlines", keep="\n")
    'two\nlines'
    """
    table = _CONTROLS if not keep else {c: v for c, v in _CONTROLS.items() if chr(c) not in keep}
    return text.translate(table)


def excerpt(text: str, limit: int = EXCERPT) -> str:
    r"""``text`` on one line (line breaks and other control characters escaped, :func:`printable`),
    cut to about ``limit`` characters: the middle of a longer text is left out, and counted.
    Messages never echo a whole input.

    >>> excerpt("a short value")
    'a short value'
    >>> excerpt("x" * 1000, limit=20)
    'xxxxxxxxxxxxxxx…[980 characters]…xxxxx'
    >>> excerpt("two\nlines")
    'two\\nlines'
    """
    text = printable(text)
    if len(text) <= limit:
        return text
    head = limit * 3 // 4
    tail = limit - head
    return f"{text[:head]}…[{len(text) - head - tail} characters]…{text[-tail:]}"


def _window(line: str, column: int, width: int = EXCERPT) -> tuple[str, int]:
    """At most ``width`` characters of ``line`` around ``column``, and the column in them."""
    if len(line) <= width:
        return line, column
    start = max(0, min(column - width // 2, len(line) - width))
    prefix = "…" if start > 0 else ""
    suffix = "…" if start + width < len(line) else ""
    return f"{prefix}{line[start : start + width]}{suffix}", column - start + len(prefix)


#: Where every rule that a message cites by id (``[R45]``, ``(D9)``) is explained: the semantics
#: reference of the documentation (``make docs``: its "Semantics reference" page), one anchor per id.
SEMANTICS_REFERENCE = "docs/semantics.md"

_RULE_ID = re.compile(r"[\[(]([RDE]\d{1,2})(?:/[RDE]\d{1,2})*[\]),]")


def rule_reference(text: str) -> str:
    """The line that points a message citing rule ids to the semantics reference; ``""`` when
    ``text`` cites none (or already points there).

    >>> rule_reference("pipeline.stages.s: [R60/D10] step groups take no timeout")
    '(rule ids: see the semantics reference, docs/semantics.md#r60)'
    >>> rule_reference("no rule here")
    ''
    """
    found = _RULE_ID.search(text)
    if found is None or SEMANTICS_REFERENCE in text:
        return ""
    return f"(rule ids: see the semantics reference, {SEMANTICS_REFERENCE}#{found[1].lower()})"


class PipelineError(Exception):
    """Base class of every error this package raises on purpose.

    A message that cites a rule id ends with a line pointing to the semantics reference
    (:func:`rule_reference`).
    """

    def __str__(self) -> str:
        text = super().__str__()
        reference = rule_reference(text)
        return f"{text}\n{reference}" if reference else text


@dataclass(frozen=True)
class Problem:
    """One problem found by validation: where, which rule, what is wrong, how to fix it.

    A problem inside an expression also carries the ``expression`` and the 0-based
    ``position`` of the problem in it (keyword-only); its text then ends with the expression's
    line and a caret under that position, like :class:`ExpressionError`:

    >>> print(Problem("pipeline.stages.s", "R42", "unknown variable 'nope'", "declare it",
    ...               expression="<+a> > 1 && <+nope> > 1", position=12))
    pipeline.stages.s: [R42] unknown variable 'nope' — fix: declare it
        <+a> > 1 && <+nope> > 1
                    ^

    The text is bounded whatever the values: the message and the fix are cut to
    ``MESSAGE_LIMIT`` characters (:func:`excerpt`), the expression's line to a window of
    ``EXCERPT`` characters around the caret.

    >>> long = "<+a> == '" + "x" * 10_000 + "' && <+nope> > 1"
    >>> text = str(Problem("s", "R42", f"unknown variable in {long!r}", "declare it",
    ...                    expression=long, position=long.index("<+nope>")))
    >>> len(text) < 1000, text.splitlines()[-1].strip()
    (True, '^')
    """

    fqn: str
    rule: str
    message: str
    fix: str = ""
    expression: str = field(default="", kw_only=True)
    position: int | None = field(default=None, kw_only=True)
    #: the fix in YAML terms where it differs from ``fix`` (which may name Python calls)
    yaml_fix: str = field(default="", kw_only=True, compare=False)

    def for_yaml(self) -> Problem:
        """This problem with its fix in YAML terms: what a pipeline read from YAML reports.

        >>> p = Problem("pipeline", "R11", "no stages", "`with p.stage('build'):`",
        ...             yaml_fix="add `- stage:` entries under `stages:`")
        >>> print(p.for_yaml())
        pipeline: [R11] no stages — fix: add `- stage:` entries under `stages:`
        """
        return replace(self, fix=self.yaml_fix, yaml_fix="") if self.yaml_fix else self

    def __str__(self) -> str:
        text = f"{excerpt(self.fqn)}: [{excerpt(self.rule, 40)}] {excerpt(self.message, MESSAGE_LIMIT)}"
        text = f"{text} — fix: {excerpt(self.fix, MESSAGE_LIMIT)}" if self.fix else text
        if not self.expression or self.position is None:
            return text
        # only the line of a multi-line text that holds the position, caret under the column
        start = self.expression.rfind("\n", 0, self.position) + 1
        end = self.expression.find("\n", self.position)
        raw = self.expression[start : end if end >= 0 else None]
        column = self.position - start
        # escaped (a control character shows as \x1b…): the caret moves by what was added before it
        line, column = _window(printable(raw), len(printable(raw[:column])))
        return f"{text}\n    {line}\n    {' ' * column}^"


class DefinitionError(PipelineError, ValueError):
    """The definition breaks one or more structural rules; ``problems`` lists them all.

    >>> err = DefinitionError([Problem("pipeline.stages.a", "R1", "empty stage", "add a step")])
    >>> print(err)
    1 problem in the pipeline definition:
      - pipeline.stages.a: [R1] empty stage — fix: add a step
    (rule ids: see the semantics reference, docs/semantics.md#r1)
    """

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem("pipeline", "-", problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in the pipeline definition:"
        super().__init__("\n".join([head, *(f"  - {p}" for p in self.problems)]))


class ExpressionError(PipelineError, ValueError):
    """An expression that cannot be parsed or evaluated.

    The message shows the expression with a caret under ``position`` (0-based).

    >>> print(ExpressionError("unexpected token", "<+a> == ", 8))
    unexpected token at position 8:
      <+a> ==
              ^
    """

    def __init__(self, message: str, expression: str = "", position: int | None = None, fqn: str = ""):
        self.reason = message
        self.expression = expression
        self.position = position
        self.fqn = fqn
        where = f" in {fqn}" if fqn else ""
        shown = printable(expression)  # a control character shows escaped; the caret follows it
        if position is None:
            text = f"{message}{where}: {shown}" if expression else f"{message}{where}"
        else:
            column = len(printable(expression[:position]))
            text = f"{message}{where} at position {position}:\n  {shown}\n  {' ' * column}^"
        super().__init__(text)


class StepError(PipelineError):
    """Raise from a step body to fail the step with a chosen Harness error type (R16).

    >>> StepError("host unreachable", error_type="Connectivity").error_type
    'Connectivity'
    """

    def __init__(self, message: str = "", error_type: str = "Unknown"):
        super().__init__(message)
        self.error_type = error_type

    def __str__(self) -> str:  # the body's own words, as written (they land in the trace)
        return Exception.__str__(self)


class NestedRunError(PipelineError, RuntimeError):
    """A step body (or a listener) started a run that may not start there: a run of the
    pipeline it belongs to (a run would start itself again without end), or a run nested
    deeper than ``MAX_NESTED_RUNS`` runs inside step bodies."""


class RunError(PipelineError):
    """A run that did not succeed; ``trace`` holds its complete trace DataFrame."""

    def __init__(self, message: str, trace: pd.DataFrame | Any):
        super().__init__(message)
        self.trace = trace


class RunFailed(RunError):
    """Raised by ``run(check=True)`` when the pipeline did not end ``Success``."""


class RunInterrupted(RunError, KeyboardInterrupt):
    """The run was interrupted (Ctrl-C / kernel interrupt); ``trace`` is the partial trace."""


class TraceError(PipelineError, ValueError):
    """A trace that cannot be read or analysed as asked (missing columns, several runs, no plan)."""


# -- the errors (and warnings) of every part of the package ----------------------------------------
# Defined here, below every layer, so that ``nbp`` exports them all from one module and any layer
# may raise them; each module that raises one re-exports it (``yaml_io.YamlError`` still works).


class DurationError(PipelineError, ValueError):
    """A duration that cannot be parsed."""


class DurationTooLong(DurationError):
    """A duration longer than ``MAX_SECONDS`` (what trace timestamps can hold)."""


class StrategyError(PipelineError, ValueError):
    """A failure strategy or condition that cannot be understood."""


class LoopingError(PipelineError, ValueError):
    """A looping strategy that cannot be read or expanded (R48–R51)."""


class LoopingWarning(UserWarning):
    """A simulation could not know a looped node's run-time items and ran it once."""


class StepCancelled(BaseException):
    """Raised inside a step's thread when the run is aborted or the step timed out."""


class SimulationError(PipelineError, ValueError):
    """A ``simulate()`` option that cannot be used: says which option, which key, and the fix."""


class InputFileError(PipelineError, ValueError):
    """An input file that cannot be read: missing, not a regular file, too large, not UTF-8.

    ``path`` is the file as given; ``line`` and ``column`` (1-based) say where undecodable
    bytes start (else ``None``).
    """

    def __init__(self, message: str, path: str = "", line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.path, self.line, self.column = path, line, column


class MissingFileError(InputFileError, FileNotFoundError):
    """The file does not exist (also a ``FileNotFoundError``)."""


class HttpError(PipelineError):
    """A GET that gave no usable answer: unreachable, refused, too slow or too large.

    ``url`` is the address without credentials or query; ``status`` the HTTP status when one
    was received (else ``None``). The message holds no secret.
    """

    def __init__(self, message: str, url: str = "", status: int | None = None):
        super().__init__(message)
        self.url, self.status = url, status


class HttpTimeout(HttpError):
    """No complete answer within the overall deadline."""


class HttpStopped(HttpError):
    """The call was ended by its ``stop`` event (another thread was interrupted: Ctrl-C)."""


class HttpTooLarge(HttpError):
    """The body (after decompression) is over ``max_bytes``: reading stopped at the limit."""


class YamlError(DefinitionError):
    """The YAML cannot be read as a pipeline; ``problems`` lists each with its line and column.

    >>> from notebook_pipelines.formats.yaml_io import load_yaml
    >>> try:
    ...     load_yaml("pipeline: [", source_name="p.yaml")
    ... except YamlError as err:
    ...     print(err.problems[0].line, err.problems[0].column, err.problems[0].rule)
    2 1 YAML
    """


class YamlSyntaxError(YamlError):
    """The text is not YAML at all (a parse error): one problem, where the parser stopped."""


class YamlWarning(UserWarning):
    """What a loaded pipeline keeps as data but does not model; ``notes`` lists it all
    (``formats.yaml_io.Note`` s)."""

    def __init__(self, message: str, notes: list[Any] | None = None):
        super().__init__(message)
        self.notes = list(notes or [])


class HarnessExecutionError(PipelineError, ValueError):
    """The input is not a usable Harness execution (what, where, how to fix in the message)."""


class HarnessStatusWarning(UserWarning):
    """A status this loader does not know: kept verbatim in the trace."""


class HistoryError(PipelineError, ValueError):
    """A run or a history that cannot be read: the message names the run, the job and the fix."""


class HistoryWarning(UserWarning):
    """Something a fetch had to do without (GitLab's GraphQL needs): the history says less."""


class LayoutError(PipelineError, ValueError):
    """A ``suggest_layout`` option that cannot be used (an unknown constraint name, …)."""


class ClusterError(PipelineError, ConnectionError):
    """The Dask cluster cannot take the run: unreachable, or no worker connected."""


class GraphvizMissing(PipelineError, RuntimeError):
    """Graphviz's ``dot`` program is not installed, so no SVG or PNG can be made."""


class PuzzleError(PipelineError, ValueError):
    """A level that cannot be read or saved, or an answer of the wrong kind; says what and how to fix it."""


class ExerciseError(PipelineError, ValueError):
    """A check called wrongly: no such exercise, or what it needs is missing (says what to pass)."""


class HistoryDurationsWarning(UserWarning):
    """Steps of the pipeline that the history has no measurement for (they take ``default=``)."""
