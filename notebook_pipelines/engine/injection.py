"""``failures=`` of ``simulate()``: which simulated step attempts fail, how likely, with which error.

Per step (by id, FQN or glob, see :mod:`.steptable`): ``True`` (every attempt), an int ``n``
(the first n attempts), a list of attempt numbers, a float ``0 < p < 1`` (each attempt fails
with probability p, drawn from the attempt's own seeded stream, :class:`~.sampling.Streams`), an
error type (every attempt, with that type), ``{"attempts": …, "error_type": …, "probability":
…, "message": …}``, or a callable ``(attempt, rng) -> bool | error type``.

>>> spec = FailureSpec.of({"attempts": [1], "error_type": "Timeout"}, "a")
>>> spec.fails(1, lambda: None), spec.fails(2, lambda: None)
(('Timeout', 'injected failure (attempt 1)'), None)
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import SimulationError
from .sampling import FAILURE, Streams
from .steptable import MISSING, StepTable

__all__ = ["FailureSpec", "failure_function"]


def failure_function(
    plan: Any, failures: Any, streams: Streams, strict: bool
) -> Callable[[Any, int], tuple[str, str] | None] | None:
    """``(node, attempt) -> None | (error_type, message)`` for the virtual executor (``None``
    when no step fails)."""
    if not failures:
        return None  # no step fails: the executor asks nothing
    table = StepTable("failures", failures, plan, strict)
    specs: dict[int, FailureSpec | None] = {}

    def failure(node: Any, attempt: int) -> tuple[str, str] | None:
        if node.index in specs:
            spec = specs[node.index]
        else:
            value = table.get(node)
            spec = specs[node.index] = None if value is MISSING else FailureSpec.of(value, node.fqn)
        if spec is None:
            return None
        try:
            return spec.fails(attempt, lambda: streams.rng(node, attempt, FAILURE))
        except SimulationError:
            raise
        except Exception as err:  # a callable (attempt, rng) of the user's
            raise SimulationError(
                f"failures for {node.fqn}: the function raised {type(err).__name__}: {err}"
            ) from err

    return failure


class FailureSpec:
    """One ``failures`` entry: which attempts fail, how likely, with which error type."""

    __slots__ = ("attempts", "decide", "error_type", "message", "probability")

    def __init__(
        self,
        attempts: Any = True,
        error_type: str = "Unknown",
        probability: float = 1.0,
        message: str | None = None,
        decide: Callable[[int, Any], Any] | None = None,
    ):
        self.attempts, self.error_type, self.probability = attempts, error_type, probability
        self.message, self.decide = message, decide

    @classmethod
    def of(cls, value: Any, where: str) -> FailureSpec | None:
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, str):
            return cls(error_type=_error_type(value, where))
        if isinstance(value, numbers.Integral):
            return cls(attempts=_attempts(int(value), where))
        if isinstance(value, numbers.Real):
            return cls(probability=_probability(value, where))
        if callable(value):
            return cls(decide=value)
        if isinstance(value, Mapping):
            unknown = set(value) - {"attempts", "error_type", "probability", "message"}
            if unknown:
                raise SimulationError(
                    f"failures[{where!r}]: unknown keys {sorted(unknown)}; "
                    "use attempts, error_type, probability, message"
                )
            return cls(
                attempts=_attempts(value.get("attempts", True), where),
                error_type=_error_type(value.get("error_type", "Unknown"), where),
                probability=_probability(value.get("probability", 1.0), where),
                message=value.get("message"),
            )
        if isinstance(value, Iterable):
            return cls(attempts=_attempts(value, where))
        raise SimulationError(f"failures[{where!r}]: cannot read {value!r}; " + _FORMS)

    def fails(self, attempt: int, rng: Callable[[], Any]) -> tuple[str, str] | None:
        error_type = self.error_type
        if self.decide is not None:
            verdict = self.decide(attempt, rng())
            if not verdict:
                return None
            if isinstance(verdict, str):
                error_type = verdict
        else:
            attempts = self.attempts
            if attempts is not True and not (
                attempt <= attempts if isinstance(attempts, int) else attempt in attempts
            ):
                return None
            if self.probability < 1.0 and not rng().random() < self.probability:
                return None
        return error_type, self.message or f"injected failure (attempt {attempt})"


_FORMS = (
    "write True (every attempt), n (the first n attempts), [1, 3] (those attempts), a float "
    "0 < p < 1 (each attempt fails with that probability), an error type ('Timeout'), "
    "{'attempts': …, 'error_type': …, 'probability': …, 'message': …}, or a callable "
    "(attempt, rng) -> bool or error type"
)


def _attempts(value: Any, where: str) -> Any:
    if value is True:
        return True
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, Iterable) and not isinstance(value, str | bytes | Mapping):
        numbers_ = frozenset(value)
        if all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in numbers_):
            return numbers_
    raise SimulationError(f"failures[{where!r}]: attempts {value!r} are not attempt numbers ≥ 1; " + _FORMS)


def _error_type(value: Any, where: str) -> str:
    from ..definition.failure import ERROR_TYPES

    if value in ERROR_TYPES[1:]:
        return str(value)
    raise SimulationError(
        f"failures[{where!r}]: unknown error type {value!r}; use one of {', '.join(ERROR_TYPES[1:])}"
    )


def _probability(value: Any, where: str) -> float:
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 <= float(value) <= 1.0:
        return float(value)
    raise SimulationError(f"failures[{where!r}]: probability {value!r} is not between 0 and 1")
