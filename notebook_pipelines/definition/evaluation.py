"""Evaluating a parsed ``<+…>`` expression: the tree :mod:`~notebook_pipelines.definition.expressions`
built, walked against a ``resolve`` function (no ``eval``; methods from an explicit table).

Every value it builds is at most :data:`MAX_VALUE` characters (a concatenation, a rendered
template, a method's result), ``split`` makes at most :data:`MAX_ITEMS` items, and ``=~`` regexes
run on RE2 (linear time). Harness/JEXL truthiness is :func:`truthy`.
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import re2

from ..errors import MESSAGE_LIMIT, ExpressionError, excerpt

MAX_PATTERN = 1_000
#: the longest number literal an expression may hold (characters)
MAX_DIGITS = 300
_MAX_BITS = 4_000
_NUMERIC_STR = re.compile(r"\s*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*")
_RELATIONAL = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
#: the most characters of a value an expression builds (a concatenation, a rendered template or
#: list, a method's result): 10 MB, far above any real input, far below what takes a kernel's
#: memory (380 references to a 10 MB variable in one template were 3.8 GB)
MAX_VALUE = 10 * 2**20
#: the most items ``split`` makes
MAX_ITEMS = 100_000


@dataclass(frozen=True)
class Reference:
    """One ``<+a.b.c>`` reference: its path segments, source text and 0-based offset."""

    path: tuple[str, ...]
    text: str
    position: int


def truthy(value: Any) -> bool:
    """Harness/JEXL truthiness of a value (see the module docstring).

    >>> [truthy(v) for v in (True, "FALSE", "", "x", None, 0, 2.5, [])]
    [True, False, False, True, False, False, True, False]
    """
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str):
        lowered = value.strip().lower()
        return lowered == "true" if lowered in ("true", "false") else value != ""
    if isinstance(value, (int, float)):
        return value != 0
    return bool(value)


def raised(err: BaseException) -> str:
    """``Type: message`` of an exception that the user's code (a value's own method, a condition)
    raised, cut to ``MESSAGE_LIMIT`` characters; never raises, whatever ``err`` does.

    >>> raised(ValueError("x" * 1000))[:20], len(raised(ValueError("x" * 1000)))
    ('ValueError: xxxxxxxx', 430)
    """
    try:
        text = str(err)
    except Exception:
        text = "(its message could not be shown)"
    return f"{type(err).__name__}: {excerpt(text, MESSAGE_LIMIT)}"


class _TooLong(Exception):
    """A value over its budget of characters (turned into an ExpressionError where it happened)."""


def _to_text(value: Any, limit: int = MAX_VALUE) -> str:
    """``value`` as Harness renders it, at most ``limit`` characters (else ``_TooLong``: a list is
    given up as soon as it goes over, never rendered whole)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        out, size = [], 2
        for item in value:
            text = _to_text(item, limit - size)
            size += len(text) + 2
            if size > limit + 2:
                raise _TooLong
            out.append(text)
        return "[" + ", ".join(out) + "]"
    text = value if type(value) is str else str(value)
    if len(text) > limit:
        raise _TooLong
    return text


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    kind = {bool: "boolean", str: "string", int: "number", float: "number", list: "list"}
    try:
        shown = repr(_to_text(value[:41] if isinstance(value, str) else value, 200)[:40])
    except _TooLong:
        shown = f"of {len(value)} items" if isinstance(value, (list, tuple)) else "(too long to show)"
    return f"{kind.get(type(value), type(value).__name__)} {shown}"


def _parse_number(text: str) -> int | float | None:
    if len(text) > MAX_DIGITS or not _NUMERIC_STR.fullmatch(text):
        return None
    stripped = text.strip()
    return int(stripped) if stripped.lstrip("+-").isdigit() else float(stripped)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _equals(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        flag, other = (a, b) if isinstance(a, bool) else (b, a)
        if isinstance(other, str):
            lowered = other.strip().lower()
            return lowered in ("true", "false") and (lowered == "true") == flag
        return isinstance(other, bool) and other == flag
    if _is_number(a) or _is_number(b):
        number, other = (a, b) if _is_number(a) else (b, a)
        if isinstance(other, str):
            other = _parse_number(other)
        return _is_number(other) and number == other
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equals(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _div(x: int | float, y: int | float) -> int | float:
    if isinstance(x, int) and isinstance(y, int):
        quotient = abs(x) // abs(y)
        return -quotient if (x < 0) != (y < 0) else quotient
    return x / y


def _mod(x: int | float, y: int | float) -> int | float:
    if isinstance(x, int) and isinstance(y, int):
        rest = abs(x) % abs(y)
        return -rest if x < 0 else rest
    if y == 0:
        raise ZeroDivisionError
    return math.fmod(x, y)


def _split(text: str, sep: Any) -> list[str]:
    sep = _to_text(sep)
    if (text.count(sep) + 1 if sep else len(text)) > MAX_ITEMS:
        raise _TooLong(f"split() would make over {MAX_ITEMS:,} items (limit {MAX_ITEMS:,})")
    return text.split(sep) if sep else list(text)


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # RE2 would also print every refused pattern on stderr
_RE2_OPTIONS.max_mem = 8 << 20  # bytes for the compiled program and its DFA cache (RE2's default)


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> Any:
    r"""The compiled RE2 regex of an ``=~`` pattern, or the message saying why it is refused.

    RE2 matches in linear time; a pattern it refuses but Python's ``re`` accepts uses syntax
    that needs backtracking (``re.compile`` of a bounded pattern is safe: only *matching*
    backtracks), and the message says so.

    >>> _regex("^v[0-9]+$").search("v12") is not None
    True
    >>> print(_regex(r"(a)\1"))  # doctest: +ELLIPSIS
    the regular expression uses syntax that needs backtracking (invalid escape sequence: \1): ...
    """
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args else "not valid"
        reason = reason if isinstance(reason, str) else str(reason)
    try:
        re.compile(pattern)
    except (re.error, OverflowError, RecursionError):
        return f"invalid regular expression: {reason}"
    hint = " (write $ or \\z for \\Z)" if "\\Z" in pattern else ""
    return (
        f"the regular expression uses syntax that needs backtracking ({reason}): only linear-time "
        "(RE2) syntax is accepted — no backreferences, lookahead/lookbehind, atomic groups or "
        f"possessive quantifiers{hint}"
    )


_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": _div,
    "%": _mod,
}

#: the methods an expression may call: name -> (number of arguments, implementation on str,
#: implementation on list or None)
METHODS: dict[str, tuple[int, Callable[..., Any], Callable[..., Any] | None]] = {
    "contains": (1, lambda s, x: _to_text(x) in s, lambda items, x: any(_equals(e, x) for e in items)),
    "startsWith": (1, lambda s, x: s.startswith(_to_text(x)), None),
    "endsWith": (1, lambda s, x: s.endswith(_to_text(x)), None),
    "split": (1, _split, None),
    "length": (0, len, len),
    "size": (0, len, len),
    "toLowerCase": (0, str.lower, None),
    "toUpperCase": (0, str.upper, None),
    "trim": (0, str.strip, None),
    "equals": (1, lambda s, x: isinstance(x, str) and s == x, _equals),
}


class Evaluator:
    """Walks a parsed tree; ``resolve`` supplies reference values."""

    def __init__(self, text: str, resolve: Callable[[Reference], Any]):
        self.text, self.resolve = text, resolve

    def fail(self, message: str, pos: int) -> NoReturn:
        raise ExpressionError(message, self.text, pos)

    def walk(self, node: tuple[Any, ...]) -> Any:
        try:
            return self._walk(node)
        except _TooLong as err:  # where the value went over: this node's position
            reason = err.args[0] if err.args else f"the value is over {MAX_VALUE:,} characters"
            self.fail(f"{reason} (limit {MAX_VALUE:,}): an expression builds no values that large", node[1])
        except (ExpressionError, RecursionError):
            raise  # already placed (a RecursionError: Expression.evaluate says "nested too deeply")
        except Exception as err:  # a value's own method (__eq__, __bool__, __len__…) raised: here
            self.fail(f"a value's own method raised {raised(err)}", node[1])

    def _walk(self, node: tuple[Any, ...]) -> Any:
        match node[0]:
            case "lit":
                return node[2]
            case "ref":
                return self.reference(node[2])
            case "list":
                return [self.walk(item) for item in node[2]]
            case "not":
                return not truthy(self.walk(node[2]))
            case "neg":
                return self.arith("-", node[1], 0, self.number(self.walk(node[2]), node[1], "-"))
            case "bin":
                return self.binary(node)
            case "if":
                return self.walk(node[3] if truthy(self.walk(node[2])) else node[4])
            case "call":
                return self.call(node)
            case _:
                return self.template(node[2])

    def template(self, parts: tuple[Any, ...]) -> Any:
        if len(parts) == 1 and not isinstance(parts[0], str):
            return self.walk(parts[0])
        out, size = [], 0
        for part in parts:
            text = part if isinstance(part, str) else self.text_of(self.walk(part), MAX_VALUE - size, part[1])
            size += len(text)
            if size > MAX_VALUE:
                self.too_long(part[1] if not isinstance(part, str) else 0)
            out.append(text)
        return "".join(out)

    def text_of(self, value: Any, limit: int, pos: int) -> str:
        try:
            return _to_text(value, limit)
        except _TooLong:
            self.too_long(pos)
        except RecursionError:
            raise
        except Exception as err:  # its __str__ raised (or gave no text)
            self.fail(f"the {type(value).__name__} value cannot be shown as text: {raised(err)}", pos)

    def too_long(self, pos: int) -> NoReturn:
        self.fail(
            f"the value is over {MAX_VALUE:,} characters (limit {MAX_VALUE:,}): an expression builds "
            "no values that large",
            pos,
        )

    def reference(self, ref: Reference) -> Any:
        try:
            return self.resolve(ref)
        except ExpressionError:
            raise
        except LookupError as exc:
            detail = f": {exc.args[0]}" if exc.args else ""
            raise ExpressionError(f"cannot resolve {ref.text}{detail}", self.text, ref.position) from exc

    def binary(self, node: tuple[Any, ...]) -> Any:
        chain = []  # walk the left spine iteratively: long operator chains need no deep recursion
        while node[0] == "bin":
            chain.append(node)
            node = node[3]
        value = self.walk(node)
        parts: list[str] | None = None  # a run of `+` on a string: joined once, in linear time
        size = 0
        for _, pos, op, _, right in reversed(chain):
            if op == "+" and isinstance(value, str):
                if parts is None:
                    parts, size = [value], len(value)
                item = self.walk(right)
                if item is None:
                    self.fail("cannot concatenate null", pos)
                text = self.text_of(item, MAX_VALUE - size, pos)
                size += len(text)
                if size > MAX_VALUE:
                    self.too_long(pos)
                parts.append(text)
                continue
            if parts is not None:
                value, parts = "".join(parts), None
            value = self.apply(op, pos, value, right)  # `1 + "a"` starts a string: the next `+` joins
        return "".join(parts) if parts is not None else value

    def apply(self, op: str, pos: int, left: Any, right_node: tuple[Any, ...]) -> Any:
        if op == "&&":
            return truthy(left) and truthy(self.walk(right_node))
        if op == "||":
            return truthy(left) or truthy(self.walk(right_node))
        right = self.walk(right_node)
        if op in ("==", "!="):
            return _equals(left, right) == (op == "==")
        if op in ("=~", "!~"):
            return self.match(pos, left, right, right_node[1]) == (op == "=~")
        if op in _RELATIONAL:
            if left is None or right is None:
                return False
            if not (isinstance(left, str) and isinstance(right, str)):
                left, right = self.number(left, pos, op), self.number(right, pos, op)
            return _RELATIONAL[op](left, right)
        return self.arith(op, pos, left, right)

    def number(self, value: Any, pos: int, op: str) -> int | float:
        if isinstance(value, str) and (parsed := _parse_number(value)) is not None:
            return parsed
        if not _is_number(value):
            self.fail(f"'{op}' needs numbers, got {_describe(value)}", pos)
        number: int | float = value
        return number

    def arith(self, op: str, pos: int, left: Any, right: Any) -> Any:
        if op == "+" and (isinstance(left, str) or isinstance(right, str)):
            if left is None or right is None:
                self.fail("cannot concatenate null", pos)
            head = self.text_of(left, MAX_VALUE, pos)
            return head + self.text_of(right, MAX_VALUE - len(head), pos)
        x, y = self.number(left, pos, op), self.number(right, pos, op)
        try:
            result = _ARITH[op](x, y)
        except ZeroDivisionError:
            self.fail("division by zero", pos)
        except (OverflowError, ValueError):
            self.fail(f"arithmetic error in '{op}'", pos)
        if isinstance(result, int) and result.bit_length() > _MAX_BITS:
            self.fail("number too large", pos)
        return result

    def match(self, pos: int, left: Any, right: Any, at: int) -> bool:
        """``left =~ right``; ``at`` is where the right operand (the pattern) starts."""
        if isinstance(right, (list, tuple)):
            return any(_equals(left, item) for item in right)
        if not isinstance(right, str):
            self.fail(f"'=~' needs a list or a regex string on the right, got {_describe(right)}", pos)
        if left is None:
            return False
        if len(right) > MAX_PATTERN:
            self.fail(f"regular expression too long ({len(right)} characters; limit {MAX_PATTERN})", at)
        pattern = _regex(right)
        if isinstance(pattern, str):
            self.fail(pattern, at)
        return pattern.search(_to_text(left)) is not None

    def call(self, node: tuple[Any, ...]) -> Any:
        value = self.walk(node[2])
        for name, pos, args in node[3]:
            _, on_str, on_list = METHODS[name]
            impl = on_str if isinstance(value, str) else on_list if isinstance(value, (list, tuple)) else None
            if impl is None:
                receivers = "strings and lists" if on_list else "strings"
                self.fail(f"cannot call .{name}() on {_describe(value)} (it applies to {receivers})", pos)
            value = impl(value, *(self.walk(arg) for arg in args))
            if isinstance(value, str) and len(value) > MAX_VALUE:  # toUpperCase() may grow a text
                self.too_long(pos)
        return value
