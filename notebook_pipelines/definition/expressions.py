"""Harness expressions as data: ``<+…>`` references and the JEXL subset of ``when`` conditions (R33).

Nothing here ever runs Python code taken from an expression: there is no ``eval``/``exec``/``compile``
and no attribute access on Python objects. A hand-written lexer and recursive-descent parser build a
small tree of tuples; the evaluator walks it. A reference is data: its path segments are handed to the
caller's ``resolve`` function and never looked up with ``getattr``. Methods are dispatched through an
explicit table (``METHODS``) that only knows ``str`` and ``list`` receivers; any other method name is
rejected while parsing.

Grammar (EBNF-ish; ``binop`` is parsed by precedence climbing, all binary operators are left-assoc)::

    condition := ternary EOF
    ternary   := binary [ "?" ternary ":" ternary ]
    binary    := unary { binop unary }
                 binop, lowest first:  "||" or  |  "&&" and  |  "==" "!=" "=~" "!~" eq ne
                                       |  "<" "<=" ">" ">=" lt le gt ge  |  "+" "-"  |  "*" "/" "%"
    unary     := ( "!" | "not" | "-" ) unary | postfix
    postfix   := primary { "." METHOD "(" [ ternary { "," ternary } ] ")" }
    primary   := NUMBER | STRING | "true" | "false" | "null" | "[" [ ternary { "," ternary } ] "]"
               | "(" ternary ")" | reference | wrapper | path      (a bare path only inside a wrapper)
    reference := "<+" path ">"      no spaces; it ends at the first ">" (references hold no operators)
    wrapper   := "<+" ternary ">"   when the text after "<+" is not a plain path followed by ">"
    path      := IDENT { "." SEGMENT | "[" STRING "]" | ".get(" STRING ")" }       (R47)
    template  := { TEXT | reference | wrapper }

Inside a wrapper a ``>`` closes it when what follows cannot start an operand (``<+<+a> > 3>`` works;
write ``(<+<+a> + 1>) - 1``, not ``<+<+a> + 1> - 1``). Inside a *template* the first ``>`` outside
parentheses closes it (write ``gt`` or use parentheses there).
Limits: ``MAX_LENGTH`` characters, ``MAX_DEPTH`` levels of nesting, ``MAX_PATTERN`` regex characters;
a value the expression builds (concatenation, template, a list as text, a method's result) at most
``MAX_VALUE`` characters, ``split`` at most ``MAX_ITEMS`` items — refused with an ExpressionError at
the operator or reference that went over. Evaluation takes time linear in what it builds: a chain
of ``+`` on strings is joined once, not copied at each step.

Coercion rules (the choices made where JEXL/Harness are loose):

* Truthiness (``&&``, ``||``, ``!``, ``?:``): booleans as is; ``null`` false; strings ``"true"``/``"false"``
  (any case) coerce, ``""`` is false, other strings true; numbers true unless zero; lists unless empty.
* ``==``/``!=``: ``null`` equals only ``null``. A boolean and a string compare by converting the string:
  ``"true"``/``"false"`` (any case) become booleans, any other string is *unequal*. A boolean never
  equals a number. A number equals a numeric string with the same value (``"5" == 5``).
* ``<``, ``<=``, ``>``, ``>=``: any ``null`` side gives ``false``; two strings compare lexicographically;
  otherwise both sides must be numbers or numeric strings (else ExpressionError).
* ``+`` concatenates when either side is a string (``"5" + 1 == "51"``), else adds numbers; ``-``, ``*``,
  ``/``, ``%`` need numbers or numeric strings. Integer ``/`` and ``%`` truncate toward zero like Java.
  Arithmetic on ``null`` or booleans, and division by zero, raise ExpressionError.
* ``=~``/``!~``: a list on the right tests membership (with ``==``); a string is a regex that is
  *searched* for in the left side (anchor it with ``^…$`` for a full match); a ``null`` left side
  never matches. Regexes run on RE2 (``google-re2``), which matches in time linear in the text, so
  a pattern such as ``^(a+)+$`` cannot make a condition spin (Python's ``re`` backtracks
  exponentially on it). RE2 syntax is Python's without the features that need backtracking:
  backreferences (``\\1``, ``(?P=name)``), lookaround (``(?=…)``, ``(?!…)``, ``(?<=…)``,
  ``(?<!…)``), atomic groups and possessive quantifiers are refused with an ExpressionError;
  write ``$`` or ``\\z`` for Python's ``\\Z``, and ``$`` matches only at the very end.
* Text rendering (templates, concatenation, string methods) follows Java/Harness: ``true``, ``false``,
  ``null``, lists as ``[a, 1, true]``; everything else ``str()``. A template that is exactly one
  ``<+…>`` returns the raw value.

>>> values = {("pipeline", "variables", "env"): "prod", ("tag",): "v1.2"}
>>> cond = parse_condition('<+pipeline.variables.env> == "prod" && <+tag>.startsWith("v")')
>>> [(r.path, r.position) for r in cond.references]
[(('pipeline', 'variables', 'env'), 0), (('tag',), 39)]
>>> cond.evaluate(lambda ref: values[ref.path])
True
>>> parse_template("deploy <+tag> to <+pipeline.variables.env>").evaluate(lambda ref: values[ref.path])
'deploy v1.2 to prod'
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, NoReturn

from ..errors import ExpressionError
from .evaluation import (
    MAX_DIGITS,
    MAX_ITEMS,
    MAX_PATTERN,
    MAX_VALUE,
    METHODS,
    Evaluator,
    Reference,
    truthy,
)

# MAX_VALUE, MAX_ITEMS, MAX_PATTERN, Reference and truthy are evaluation's; named here too
__all__ = [
    "MAX_ITEMS",
    "MAX_PATTERN",
    "MAX_VALUE",
    "Expression",
    "Reference",
    "is_expression",
    "parse_condition",
    "parse_template",
    "truthy",
]

MAX_LENGTH = 10_000
MAX_DEPTH = 100

_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_SEGMENT = re.compile(r"[A-Za-z0-9_$]+")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_OPS = ("==", "!=", "=~", "!~", "<=", ">=", "&&", "||", *"<>+-*/%!()[],.?:")
_WORDS = {"and": "&&", "or": "||", "not": "!", "eq": "==", "ne": "!="}
_WORDS.update({"lt": "<", "le": "<=", "gt": ">", "ge": ">="})
_LITERALS = {"true": True, "false": False, "null": None}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "0": "\0"}
_LEX_HINTS = {
    "=": "unexpected '=' (did you mean '=='?)",
    "&": "unexpected '&' (did you mean '&&'?)",
    "|": "unexpected '|' (did you mean '||'?)",
    "{": "unexpected '{' (Harness expressions are written <+…>, not ${…})",
    "}": "unexpected '}' (Harness expressions are written <+…>, not ${…})",
}
_PREC = {"||": 1, "&&": 2, "==": 3, "!=": 3, "=~": 3, "!~": 3, "<": 4, "<=": 4, ">": 4, ">=": 4}
_PREC.update({"+": 5, "-": 5, "*": 6, "/": 6, "%": 6})


@dataclass(frozen=True)
class Expression:
    """A parsed condition or template; ``evaluate`` walks the stored tree (never re-parses)."""

    text: str
    references: tuple[Reference, ...]
    kind: str = "condition"
    _node: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    @property
    def raw(self) -> bool:
        """A template that is exactly one reference: its value is the referenced value itself
        (nothing is built).

        >>> parse_template("<+a.b>").raw, parse_template("x<+a>").raw, parse_condition("<+a>").raw
        (True, False, False)
        """
        parts: tuple[Any, ...] = self._node[2] if self.kind == "template" else ()
        return len(parts) == 1 and not isinstance(parts[0], str) and parts[0][0] == "ref"

    def evaluate(self, resolve: Callable[[Reference], Any]) -> Any:
        """Evaluate with ``resolve(ref)`` supplying reference values.

        A ``LookupError`` raised by ``resolve`` becomes an ExpressionError at the reference.

        >>> parse_condition("<+a> ? 1 : 2").evaluate(lambda ref: "false")
        2
        """
        try:
            return Evaluator(self.text, resolve).walk(self._node)
        except RecursionError:
            raise ExpressionError("expression nested too deeply to evaluate", self.text, 0) from None


def is_expression(value: Any) -> bool:
    """True for a string that contains ``<+``.

    >>> is_expression("<+pipeline.name>"), is_expression("plain"), is_expression(3)
    (True, False, False)
    """
    return isinstance(value, str) and "<+" in value


def parse_condition(text: str) -> Expression:
    """Parse a ``when`` condition, wrapped (``<+ … >``) or not; results are cached per text.

    Raises:
        ExpressionError: the text is empty, too long or malformed (with the position of the problem).
        TypeError: ``text`` is not a string.

    >>> parse_condition('<+<+pipeline.variables.env> == "prod">').evaluate(lambda ref: "prod")
    True
    """
    return _parse_condition(_checked(text))


def parse_template(text: str) -> Expression:
    """Parse a string with embedded ``<+…>``; ``evaluate`` interpolates the values.

    >>> parse_template("v<+a>-<+<+a> + 1>").evaluate(lambda ref: 41)
    'v41-42'
    >>> parse_template("<+a>").evaluate(lambda ref: [1, 2])
    [1, 2]
    """
    return _parse_template(_checked(text))


def _checked(text: Any) -> str:
    if not isinstance(text, str):
        raise TypeError(f"an expression must be a str, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression too long ({len(text)} characters; limit {MAX_LENGTH})", text[:60])
    return text


def _guarded(text: str, parse: Callable[[], Any]) -> Any:
    try:
        return parse()
    except RecursionError:
        raise ExpressionError("expression nested too deeply", text, 0) from None


@functools.lru_cache(maxsize=2048)
def _parse_condition(text: str) -> Expression:
    if not text.strip():
        raise ExpressionError("empty expression", text, 0)
    parser = _Parser(text)
    node = _guarded(text, parser.condition)
    return Expression(text, tuple(parser.refs), "condition", node)


@functools.lru_cache(maxsize=2048)
def _parse_template(text: str) -> Expression:
    parts: list[Any] = []
    refs: list[Reference] = []
    i = 0
    while (j := text.find("<+", i)) >= 0:
        if j > i:
            parts.append(text[i:j])
        ref = _scan_reference(text, j)
        if ref is not None:
            refs.append(ref)
            parts.append(("ref", j, ref))
            i = j + len(ref.text)
            continue
        parser = _Parser(text, j, template=True)
        node, i = _guarded(text, parser.embedded)
        refs.extend(parser.refs)
        parts.append(node)
    if i < len(text):
        parts.append(text[i:])
    return Expression(text, tuple(refs), "template", ("tmpl", 0, tuple(parts)))


# ----------------------------------------------------------------------------------------- lexing


class _Tok(NamedTuple):
    kind: str  # num str kw ref path op err eof
    value: Any
    pos: int
    end: int


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _read_string(text: str, i: int) -> tuple[str, int]:
    """Read the quoted literal whose opening quote is ``text[i]``; return (value, end)."""
    quote, j = text[i], i + 1
    out: list[str] = []
    while j < len(text):
        c = text[j]
        if c == quote:
            return "".join(out), j + 1
        if c == "\\" and j + 1 < len(text):
            code = text[j + 2 : j + 6]
            if text[j + 1] == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", code):
                out.append(chr(int(code, 16)))
                j += 6
                continue
            out.append(_ESCAPES.get(text[j + 1], text[j + 1]))
            j += 2
            continue
        out.append(c)
        j += 1
    raise ExpressionError(f"unterminated string (missing closing {quote})", text, i)


def _scan_quoted(text: str, i: int, close: str) -> tuple[str, int] | None:
    """``["x"]`` or ``("x")`` with the opener at ``text[i]``: (value, end) or None."""
    j = _skip_ws(text, i + 1)
    if j >= len(text) or text[j] not in "\"'":
        return None
    try:
        value, j = _read_string(text, j)
    except ExpressionError:
        return None
    j = _skip_ws(text, j)
    return (value, j + 1) if text.startswith(close, j) else None


def _scan_path(text: str, i: int) -> tuple[tuple[str, ...], int] | None:
    """A dotted path at ``text[i]`` (stopping before a method call): (segments, end) or None."""
    m = _IDENT.match(text, i)
    if m is None:
        return None
    segments, i = [m.group()], m.end()
    while i < len(text):
        if text[i] == "[":
            got = _scan_quoted(text, i, "]")
        elif text[i] == "." and (m := _SEGMENT.match(text, i + 1)):
            if not text.startswith("(", m.end()):
                segments.append(m.group())
                i = m.end()
                continue
            # get("x") (R47), and the secrets functor: secrets.getValue("x") is the path (secrets, x)
            functor = m.group() == "get" or (m.group() == "getValue" and segments == ["secrets"])
            got = _scan_quoted(text, m.end(), ")") if functor else None
        else:
            break
        if got is None:
            break
        segments.append(got[0])
        i = got[1]
    return tuple(segments), i


def _scan_reference(text: str, i: int) -> Reference | None:
    """A plain ``<+path>`` reference at ``text[i]``, or None."""
    got = _scan_path(text, i + 2)
    if got is None or not text.startswith(">", got[1]):
        return None
    return Reference(got[0], text[i : got[1] + 1], i)


def _lex(text: str, i: int) -> _Tok:
    """The token at or after ``text[i]``; bad input gives an ``err`` token (raised only if parsed)."""
    i = _skip_ws(text, i)
    if i >= len(text):
        return _Tok("eof", None, len(text), len(text))
    if text.startswith("<+", i):
        ref = _scan_reference(text, i)
        return _Tok("ref", ref, i, i + len(ref.text)) if ref else _Tok("op", "<+", i, i + 2)
    if text.startswith("${", i):
        return _Tok("err", "'${…}' is not Harness syntax (write <+…>)", i, i + 2)
    if text[i] in "\"'":
        try:
            value, end = _read_string(text, i)
        except ExpressionError as exc:
            return _Tok("err", exc.reason, i, len(text))
        return _Tok("str", value, i, end)
    if m := _NUMBER.match(text, i):
        if len(m.group()) > MAX_DIGITS:
            return _Tok("err", f"number literal too long (over {MAX_DIGITS} characters)", i, m.end())
        literal = m.group()
        return _Tok("num", int(literal) if literal.isdigit() else float(literal), i, m.end())
    if m := _IDENT.match(text, i):
        if m.group() in _LITERALS:
            return _Tok("kw", _LITERALS[m.group()], i, m.end())
        if m.group() in _WORDS:
            return _Tok("op", _WORDS[m.group()], i, m.end())
        path, end = _scan_path(text, i) or ((), i)
        return _Tok("path", Reference(path, text[i:end], i), i, end)
    for op in _OPS:
        if text.startswith(op, i):
            return _Tok("op", op, i, i + len(op))
    return _Tok("err", _LEX_HINTS.get(text[i], f"unexpected character {text[i]!r}"), i, i + 1)


def _starts_operand(tok: _Tok) -> bool:
    if tok.kind == "op":
        return tok.value in ("(", "[", "!", "-", "<+")
    return tok.kind in ("num", "str", "kw", "ref", "path")


# ---------------------------------------------------------------------------------------- parsing


class _Parser:
    """Recursive descent over lazily lexed tokens, starting at ``start`` in ``text``."""

    def __init__(self, text: str, start: int = 0, template: bool = False):
        self.text, self.i, self.template = text, start, template
        self.buf: list[_Tok] = []
        self.refs: list[Reference] = []
        self.depth = self.wraps = self.groups = self.last_end = 0

    def peek(self, k: int = 0) -> _Tok:
        while len(self.buf) <= k:
            self.buf.append(_lex(self.text, self.i))
            self.i = self.buf[-1].end
        return self.buf[k]

    def advance(self) -> _Tok:
        tok = self.peek()
        if tok.kind != "eof":
            self.buf.pop(0)
            self.last_end = tok.end
        return tok

    def fail(self, message: str, pos: int) -> NoReturn:
        raise ExpressionError(message, self.text, pos)

    def at(self, *ops: str) -> bool:
        tok = self.peek()
        return tok.kind == "op" and tok.value in ops

    def expect(self, op: str, hint: str) -> _Tok:
        if not self.at(op):
            self.unexpected(self.peek(), hint)
        return self.advance()

    def unexpected(self, tok: _Tok, hint: str) -> NoReturn:
        if tok.kind == "err":
            self.fail(tok.value, tok.pos)
        if tok.kind == "eof":
            self.fail(f"unexpected end of expression ({hint})", tok.pos)
        source = self.text[tok.pos : tok.end]
        self.fail(f"unexpected {source[:30]!r} ({hint})", tok.pos)

    def enter(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"expression nested too deeply (limit {MAX_DEPTH})", pos)

    def condition(self) -> tuple[Any, ...]:
        node = self.ternary()
        if self.peek().kind != "eof":
            self.unexpected(self.peek(), "expected an operator or the end of the expression")
        return node

    def embedded(self) -> tuple[tuple[Any, ...], int]:
        node = self.wrapper(self.advance())
        return node, self.last_end

    def ternary(self) -> tuple[Any, ...]:
        self.enter(self.peek().pos)
        node = self.binary(1)
        if self.at("?"):
            pos = self.advance().pos
            yes = self.ternary()
            self.expect(":", "expected ':' of 'condition ? then : else'")
            node = ("if", pos, node, yes, self.ternary())
        self.depth -= 1
        return node

    def binary(self, min_prec: int) -> tuple[Any, ...]:
        node = self.unary()
        while True:
            tok = self.peek()
            prec = _PREC.get(tok.value, 0) if tok.kind == "op" else 0
            if prec < min_prec or self.closes_wrapper(tok):
                return node
            self.advance()
            node = ("bin", tok.pos, tok.value, node, self.binary(prec + 1))

    def closes_wrapper(self, tok: _Tok) -> bool:
        if not (self.wraps and not self.groups and tok.value == ">" and self.text[tok.pos] == ">"):
            return False
        return self.template or not _starts_operand(self.peek(1))

    def unary(self) -> tuple[Any, ...]:
        if not self.at("!", "-"):
            return self.postfix()
        tok = self.advance()
        self.enter(tok.pos)
        node = ("not" if tok.value == "!" else "neg", tok.pos, self.unary())
        self.depth -= 1
        return node

    def postfix(self) -> tuple[Any, ...]:
        node = self.primary()
        calls = []
        while self.at("."):
            self.advance()
            tok = self.advance()
            if tok.kind != "path":
                self.unexpected(tok, "expected a method name after '.'")
            name = tok.value.path[0]
            if len(tok.value.path) > 1 or not self.at("("):
                self.fail(f"property access '.{name}' is not allowed (only method calls)", tok.pos)
            if name not in METHODS:
                close = difflib.get_close_matches(name, METHODS, n=1)
                hint = f"did you mean '{close[0]}'?" if close else "allowed: " + ", ".join(sorted(METHODS))
                self.fail(f"unknown method '{name}' ({hint})", tok.pos)
            self.advance()
            args = self.items(")")
            if len(args) != METHODS[name][0]:
                self.fail(f"'{name}' takes {METHODS[name][0]} argument(s), got {len(args)}", tok.pos)
            calls.append((name, tok.pos, tuple(args)))
        return ("call", node[1], node, tuple(calls)) if calls else node

    def items(self, close: str) -> list[tuple[Any, ...]]:
        self.groups += 1
        items = []
        if not self.at(close):
            items.append(self.ternary())
            while not self.at(close):
                self.expect(",", f"expected ',' or '{close}'")
                items.append(self.ternary())
        self.advance()
        self.groups -= 1
        return items

    def primary(self) -> tuple[Any, ...]:
        tok = self.advance()
        if tok.kind in ("num", "str", "kw"):
            return ("lit", tok.pos, tok.value)
        if tok.kind == "path":
            source = tok.value.text
            if not self.wraps:
                self.fail(f"bare name '{source}' (did you mean '<+{source}>'?)", tok.pos)
            if self.at("("):
                self.fail(f"function calls such as '{source}(…)' are not supported", tok.pos)
        if tok.kind in ("ref", "path"):
            self.refs.append(tok.value)
            return ("ref", tok.pos, tok.value)
        if tok.kind == "op" and tok.value == "(":
            self.groups += 1
            node = self.ternary()
            self.expect(")", f"missing ')' for the '(' at position {tok.pos}")
            self.groups -= 1
            return node
        if tok.kind == "op" and tok.value == "[":
            return ("list", tok.pos, tuple(self.items("]")))
        if tok.kind == "op" and tok.value == "<+":
            return self.wrapper(tok)
        self.unexpected(tok, "expected a value")

    def wrapper(self, tok: _Tok) -> tuple[Any, ...]:
        saved, self.groups = self.groups, 0
        self.wraps += 1
        node = self.ternary()
        if self.peek().kind == "eof":
            self.fail("unterminated '<+' (missing closing '>')", tok.pos)
        self.expect(">", f"expected '>' to close the '<+' at position {tok.pos}")
        self.wraps -= 1
        self.groups = saved
        return node
