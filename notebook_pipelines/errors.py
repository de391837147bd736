"""One hierarchy of errors.

``PipelineError`` is the root. ``DefinitionError`` reports every structural problem found
before a run (each line names the node's fully qualified name, the rule and the fix).
``ExpressionError`` shows the expression with a caret under the problem. ``StepError`` is
raised by step bodies to choose a Harness error type; ``RunFailed``/``RunInterrupted`` carry
the trace of a run that did not end well.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "DefinitionError",
    "ExpressionError",
    "PipelineError",
    "Problem",
    "RunError",
    "RunFailed",
    "RunInterrupted",
    "StepError",
]


class PipelineError(Exception):
    """Base class of every error this package raises on purpose."""


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
        text = f"{self.fqn}: [{self.rule}] {self.message}"
        text = f"{text} — fix: {self.fix}" if self.fix else text
        if not self.expression or self.position is None:
            return text
        # only the line of a multi-line text that holds the position, caret under the column
        start = self.expression.rfind("\n", 0, self.position) + 1
        end = self.expression.find("\n", self.position)
        line = self.expression[start : end if end >= 0 else None]
        return f"{text}\n    {line}\n    {' ' * (self.position - start)}^"


class DefinitionError(PipelineError, ValueError):
    """The definition breaks one or more structural rules; ``problems`` lists them all.

    >>> err = DefinitionError([Problem("pipeline.stages.a", "R1", "empty stage", "add a step")])
    >>> print(err)
    1 problem in the pipeline definition:
      - pipeline.stages.a: [R1] empty stage — fix: add a step
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
        if position is None:
            text = f"{message}{where}: {expression}" if expression else f"{message}{where}"
        else:
            text = f"{message}{where} at position {position}:\n  {expression}\n  {' ' * position}^"
        super().__init__(text)


class StepError(PipelineError):
    """Raise from a step body to fail the step with a chosen Harness error type (R16).

    >>> StepError("host unreachable", error_type="Connectivity").error_type
    'Connectivity'
    """

    def __init__(self, message: str = "", error_type: str = "Unknown"):
        super().__init__(message)
        self.error_type = error_type


class RunError(PipelineError):
    """A run that did not succeed; ``trace`` holds its complete trace DataFrame."""

    def __init__(self, message: str, trace: pd.DataFrame | Any):
        super().__init__(message)
        self.trace = trace


class RunFailed(RunError):
    """Raised by ``run(check=True)`` when the pipeline did not end ``Success``."""


class RunInterrupted(RunError, KeyboardInterrupt):
    """The run was interrupted (Ctrl-C / kernel interrupt); ``trace`` is the partial trace."""
