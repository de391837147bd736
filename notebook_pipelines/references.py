"""Resolving ``<+…>`` references against a running scheduler (conditions and inputs)."""

from __future__ import annotations

from typing import Any

from .errors import ExpressionError

__all__ = ["evaluate_condition"]


def evaluate_condition(scheduler: Any, node: Any, text: str, failure: Any = None) -> Any:
    """Evaluate a ``when`` condition of ``node`` with the values known now."""
    try:
        from .expressions import parse_condition
    except ImportError as err:  # pragma: no cover - until the expression language lands
        raise ExpressionError("expressions are not supported yet", text) from err
    expression = parse_condition(text)
    return expression.evaluate(lambda ref: resolve(scheduler, node, ref.path, failure))


def resolve(scheduler: Any, node: Any, path: tuple, failure: Any = None) -> Any:
    raise LookupError(".".join(path))
