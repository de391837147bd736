"""The magics' options read into the model's values: quoting, durations, conditions, variables.

Each turns a bad value into a one-line :class:`~IPython.core.error.UsageError` naming the option.

It stands on IPython (``UsageError``, ``arg_split``) and the definition layer's parsers
(durations, ``failure``'s conditions, expressions, identifiers).
"""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.utils.process import arg_split

from ...definition.durations import DurationError, parse_duration
from ...definition.failure import coerce_when
from ...definition.validation import IDENTIFIER
from ...errors import ExpressionError


def failures_of(specs: list[str] | None) -> dict | None:
    """``--fail STEP[:ATTEMPTS][:ERROR]`` (parsed as on the command line) → ``simulate(failures=…)``.

    Which steps they name is checked by ``simulate()`` itself (strict keys).
    """
    from ...analysis.options import parse_failures
    from ...engine.simulation import SimulationError

    try:
        return parse_failures(specs or ()) or None
    except SimulationError as exc:
        raise UsageError(str(exc)) from None


def parse_line(magic: Any, line: str) -> Any:
    """Parse a magic's line with shell quoting (``--when "<+a> == 'b'"`` keeps its inner quotes)."""
    try:
        argv = arg_split(line, posix=True)
    except ValueError as exc:
        raise UsageError(f"cannot read the arguments ({exc}): check the quotes") from None
    return magic.parser.parse_args(argv)


def checked_duration(value: str | None, option: str) -> str | None:
    if value is not None:
        try:
            parse_duration(value, option)
        except DurationError as exc:
            raise UsageError(str(exc).splitlines()[0]) from None
    return value


def checked_when(value: str | None) -> str | None:
    if value is None:
        return None
    when = coerce_when(value)
    if when.condition is not None:
        from ...definition.expressions import parse_condition

        try:
            parse_condition(when.condition)
        except ExpressionError as exc:
            raise UsageError(f"--when {value!r}: {str(exc).splitlines()[0].rstrip(':')}") from None
    return value


def variables_of(pairs: list[str] | None) -> dict | None:
    if not pairs:
        return None
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not IDENTIFIER.fullmatch(key):
            raise UsageError(f"--var {pair!r}: write NAME=VALUE")
        out[key] = value
    return out


PIPELINE_OPTIONS = {
    None: {"rules", "var", "timeout", "force"},
    "show": {"text", "trace"},
    "run": {"run_id", "check", "dask"},
    "simulate": {"seed", "default", "fail", "run_id"},
    "trace": {"columns", "steps", "all"},
    "yaml": set(),
    "validate": set(),
    "delete": set(),
    "suggest": {"default", "max_parallel", "constraint", "across_stages"},
}
