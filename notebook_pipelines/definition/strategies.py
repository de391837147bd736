"""The looping strategies themselves: ``Matrix``, ``Repeat``, ``Parallelism`` (R46–R54, D11).

Plain data, the Harness YAML dict form read and written (:func:`coerce_strategy`,
:func:`to_dict`), the postfix functions (R53) and the picture's badge. What a strategy does —
its iterations, its checks — is :mod:`~notebook_pipelines.definition.looping`'s, which also
exports these names (``nbp.Matrix`` is ``looping.Matrix``).

It stands on :mod:`.limits` and :func:`~notebook_pipelines.definition.expressions.is_expression`.

>>> coerce_strategy({"repeat": {"times": 3, "maxConcurrency": 1}})
Repeat(times=3, max_concurrency=1)
>>> to_dict(Parallelism(2))
{'parallelism': 2}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import LoopingError
from .expressions import is_expression
from .limits import short

__all__ = [
    "MAX_ITERATIONS",
    "ON_FAILURE",
    "Matrix",
    "Parallelism",
    "Repeat",
    "Strategy",
    "badge",
    "coerce_strategy",
    "index_postfix",
    "labels_by_name",
    "max_concurrency",
    "runtime_values",
    "strategy_problems",
    "to_dict",
]

#: What happens to queued iterations when one fails (R48, schema ``strategy-on-failure-type``).
ON_FAILURE = ("RunAll", "SkipQueued")
#: The most iterations one looped node may have (a matrix's product grows fast).
MAX_ITERATIONS = 10_000


def index_postfix(indices: tuple[int, ...], values: tuple[Any, ...]) -> str:
    """The default postfix (D11): value indices per axis, ``_0_1``.

    >>> index_postfix((0, 1), ("linux", "arm"))
    '_0_1'
    """
    return "".join(f"_{i}" for i in indices)


def labels_by_name(indices: tuple[int, ...], values: tuple[Any, ...]) -> str:
    """The postfix of Harness's "Enable Matrix Labels By Name" (R53): the values themselves.

    >>> labels_by_name((0, 1), ("linux", "arm"))
    '_linux_arm'
    """
    return "".join(f"_{v}" for v in values)


@dataclass(eq=True, repr=False)
class Matrix:
    """``strategy: {matrix: {AXIS: [values], exclude: [...], maxConcurrency: k, nodeName: …}}`` (R49).

    Axes are given as a dict (``Matrix({"os": [...]})``) or keywords (``Matrix(os=[...])``);
    an axis's values may be a ``<+…>`` expression resolved when the node starts.
    """

    axes: dict[str, Any] = field(default_factory=dict)
    exclude: list[Any] | None = None
    max_concurrency: Any = None
    node_name: str | None = None
    on_failure: str | None = None
    postfix: Callable[..., Any] | None = None

    def __init__(
        self,
        axes: Mapping[str, Any] | None = None,
        *,
        exclude: list[Any] | None = None,
        max_concurrency: Any = None,
        node_name: str | None = None,
        on_failure: str | None = None,
        postfix: Callable[..., Any] | None = None,
        **named_axes: Any,
    ):
        self.axes = {**dict(axes or {}), **named_axes}
        self.exclude, self.max_concurrency, self.node_name = exclude, max_concurrency, node_name
        self.on_failure, self.postfix = on_failure, postfix

    kind = "matrix"

    def __repr__(self) -> str:
        parts = [f"{k}={v!r}" for k, v in self.axes.items()]
        for name in ("exclude", "max_concurrency", "node_name", "on_failure"):
            if getattr(self, name) is not None:
                parts.append(f"{name}={getattr(self, name)!r}")
        return f"Matrix({', '.join(parts)})"


@dataclass(eq=True, repr=False)
class Repeat:
    """``strategy: {repeat: {times: N | items: [...], maxConcurrency, partitionSize, unit, start, end}}``.

    R50: ``times`` is like ``parallelism``; ``items`` like a matrix of one axis.
    """

    items: Any = None
    times: Any = None
    max_concurrency: Any = None
    partition_size: Any = None
    unit: str | None = None
    start: Any = None
    end: Any = None
    on_failure: str | None = None

    kind = "repeat"

    def __repr__(self) -> str:
        parts = [
            f"{f}={getattr(self, f)!r}"
            for f in (
                "items",
                "times",
                "max_concurrency",
                "partition_size",
                "unit",
                "start",
                "end",
                "on_failure",
            )
            if getattr(self, f) is not None
        ]
        return f"Repeat({', '.join(parts)})"


@dataclass(eq=True, repr=False)
class Parallelism:
    """``strategy: {parallelism: N, maxConcurrency: k}``: N identical iterations ``_0`` … ``_N-1`` (R51)."""

    n: Any
    max_concurrency: Any = None
    on_failure: str | None = None

    kind = "parallelism"

    def __repr__(self) -> str:
        more = f", max_concurrency={self.max_concurrency!r}" if self.max_concurrency is not None else ""
        return f"Parallelism({self.n!r}{more})"


Strategy = Matrix | Repeat | Parallelism
_KINDS = ("matrix", "repeat", "parallelism")


# -- reading the YAML form -------------------------------------------------------------------
def coerce_strategy(value: Any) -> Strategy:
    """A strategy object from an object or the Harness YAML dict (R48).

    Raises:
        LoopingError: the value is not a strategy (what is wrong, and the allowed shapes).

    >>> coerce_strategy({"parallelism": 3, "maxConcurrency": 1})
    Parallelism(3, max_concurrency=1)
    >>> coerce_strategy({"repeat": {"times": 2}, "matrix": {"a": [1]}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    notebook_pipelines.errors.LoopingError: a strategy has exactly one of ...
    """
    if isinstance(value, Matrix | Repeat | Parallelism):
        return value
    if not isinstance(value, Mapping):
        raise LoopingError(
            f"a strategy is nbp.Matrix(...), nbp.Repeat(...), nbp.Parallelism(n) or a dict "
            f"{{matrix: …}} / {{repeat: …}} / {{parallelism: n}}, not {type(value).__name__}"
        )
    kinds = [k for k in _KINDS if k in value]
    if len(kinds) != 1:
        have = ", ".join(sorted(kinds)) or "none of them"
        raise LoopingError(f"a strategy has exactly one of matrix, repeat, parallelism; this one has {have}")
    unknown = [k for k in value if k not in (*_KINDS, "maxConcurrency", "onFailure")]
    if unknown:
        raise LoopingError(f"unknown strategy key(s) {', '.join(map(str, unknown))}")
    kind = kinds[0]
    on_failure = value.get("onFailure")
    body = value[kind]
    if kind == "parallelism":
        return Parallelism(body, max_concurrency=value.get("maxConcurrency"), on_failure=on_failure)
    if not isinstance(body, Mapping):
        raise LoopingError(f"{kind}: write a mapping of its settings, not {type(body).__name__}")
    if kind == "matrix":
        special = {"exclude", "maxConcurrency", "nodeName", "onFailure"}
        axes = {k: v for k, v in body.items() if k not in special}
        return Matrix(
            axes,
            exclude=body.get("exclude"),
            max_concurrency=body.get("maxConcurrency", value.get("maxConcurrency")),
            node_name=body.get("nodeName"),
            on_failure=body.get("onFailure", on_failure),
        )
    known = {
        "items",
        "times",
        "maxConcurrency",
        "partitionSize",
        "unit",
        "start",
        "end",
        "onFailure",
        "nodeName",
    }
    unknown = [k for k in body if k not in known]
    if unknown:
        raise LoopingError(f"repeat: unknown key(s) {', '.join(map(str, unknown))}")
    return Repeat(
        items=body.get("items"),
        times=body.get("times"),
        max_concurrency=body.get("maxConcurrency", value.get("maxConcurrency")),
        partition_size=body.get("partitionSize"),
        unit=body.get("unit"),
        start=body.get("start"),
        end=body.get("end"),
        on_failure=body.get("onFailure", on_failure),
    )


def to_dict(value: Any) -> Any:
    """The Harness YAML form of a strategy (a dict is returned as it is).

    >>> to_dict(Matrix(os=["a", "b"], max_concurrency=1))
    {'matrix': {'os': ['a', 'b'], 'maxConcurrency': 1}}
    """
    if isinstance(value, Matrix):
        body = dict(value.axes)
        for key, attr in (
            ("exclude", "exclude"),
            ("maxConcurrency", "max_concurrency"),
            ("nodeName", "node_name"),
        ):
            if getattr(value, attr) is not None:
                body[key] = getattr(value, attr)
        if value.on_failure is not None:
            body["onFailure"] = value.on_failure
        return {"matrix": body}
    if isinstance(value, Repeat):
        names = (
            ("items", "items"), ("times", "times"), ("maxConcurrency", "max_concurrency"),
            ("partitionSize", "partition_size"), ("unit", "unit"), ("start", "start"), ("end", "end"),
            ("onFailure", "on_failure"),
        )  # fmt: skip
        return {
            "repeat": {key: getattr(value, attr) for key, attr in names if getattr(value, attr) is not None}
        }
    if isinstance(value, Parallelism):
        out: dict[str, Any] = {"parallelism": value.n}
        if value.max_concurrency is not None:
            out["maxConcurrency"] = value.max_concurrency
        if value.on_failure is not None:
            out["onFailure"] = value.on_failure
        return out
    return value


# -- static checks ---------------------------------------------------------------------------
def _count_problem(value: Any, what: str, least: int, most: int | None = None) -> str | None:
    if value is None or is_expression(value):
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{what} must be a whole number, not {short(value)}"
    if value < least:
        return f"{what} is {short(value)}: it must be at least {least}"
    if most is not None and value > most:
        return f"{what} is {short(value)}: the limit is {most} iterations"
    return None


def strategy_problems(value: Any) -> list[tuple[str, str, str]]:
    """``(rule, message, fix)`` for everything wrong with a strategy that is known before a run.

    >>> for problem in strategy_problems({"matrix": {"os": [], "maxConcurrency": 0}}):
    ...     print(problem[1])
    maxConcurrency is 0: it must be at least 1
    the matrix axis 'os' has no values
    """
    try:
        strategy = coerce_strategy(value)
    except LoopingError as err:
        return [
            ("R48", str(err), "give exactly one of matrix, repeat or parallelism, e.g. {repeat: {times: 3}}")
        ]
    out = []
    problem = _count_problem(strategy.max_concurrency, "maxConcurrency", 1)
    if problem:
        out.append(("R54", problem, "give maxConcurrency of 1 or more (or leave it out: all at once)"))
    if strategy.on_failure is not None and strategy.on_failure not in ON_FAILURE:
        out.append(
            (
                "R48",
                f"onFailure {strategy.on_failure!r} is not one of RunAll, SkipQueued",
                "use RunAll or SkipQueued",
            )
        )
    if isinstance(strategy, Parallelism):
        problem = _count_problem(strategy.n, "parallelism", 0, MAX_ITERATIONS)
        if problem:
            out.append(
                ("R51", problem, f"give the number of copies (at most {MAX_ITERATIONS}), e.g. parallelism: 3")
            )
    elif isinstance(strategy, Repeat):
        out += _repeat_problems(strategy)
    else:
        out += _matrix_problems(strategy)
    return out


def _repeat_problems(strategy: Repeat) -> list[tuple[str, str, str]]:
    """What is wrong with a ``repeat`` (R50)."""
    out = []
    if (strategy.items is None) == (strategy.times is None):
        out.append(("R50", "repeat takes exactly one of items and times", "give items: [...] or times: N"))
    problem = _count_problem(strategy.times, "repeat times", 0, MAX_ITERATIONS)
    if problem:
        out.append(("R50", problem, f"give times: N with 0 ≤ N ≤ {MAX_ITERATIONS}"))
    if (
        strategy.items is not None
        and not is_expression(strategy.items)
        and not isinstance(strategy.items, list | tuple)
    ):
        out.append(
            (
                "R50",
                f"repeat items must be a list (or a <+…> expression), not {strategy.items!r}",
                "write items: [a, b, c]",
            )
        )
    problem = _count_problem(strategy.partition_size, "partitionSize", 1)
    if problem:
        out.append(("R50", problem, "give partitionSize of 1 or more"))
    if strategy.unit is not None and strategy.unit not in ("Count", "Percentage"):
        out.append(
            ("R50", f"unit {strategy.unit!r} is not Count or Percentage", "use unit: Count or Percentage")
        )
    for name in ("start", "end"):
        problem = _count_problem(getattr(strategy, name), name, 0)
        if problem:
            out.append(("R50", problem, f"give {name} as a whole number ≥ 0"))
    return out


def _matrix_problems(strategy: Matrix) -> list[tuple[str, str, str]]:
    """What is wrong with a ``matrix`` (R49; R46: a value listed twice)."""
    out = []
    if not strategy.axes:
        out.append(("R49", "the matrix has no axes", "give at least one axis: matrix: {os: [linux, mac]}"))
    for name, values in strategy.axes.items():
        if is_expression(values):
            continue
        if not isinstance(values, list | tuple):
            out.append(
                (
                    "R49",
                    f"the matrix axis {name!r} must be a list of values, not {values!r}",
                    f"write {name}: [a, b]",
                )
            )
        elif not values:
            out.append(
                (
                    "R49",
                    f"the matrix axis {name!r} has no values",
                    f"give {name} at least one value, or remove the axis",
                )
            )
        else:
            twice = _repeated(values)
            if twice is not None:
                first, second = twice
                out.append(
                    (
                        "R46",
                        f"the matrix axis {name!r} lists {short(values[first])} twice (values {first} "
                        f"and {second}): two iterations would be one combination, under one identifier "
                        "when labelled by name",
                        f"give {name} distinct values",
                    )
                )
    sizes = [len(v) for v in strategy.axes.values() if isinstance(v, list | tuple)]
    if len(sizes) == len(strategy.axes) and sizes and math.prod(sizes) > MAX_ITERATIONS:
        out.append(
            (
                "R49",
                f"the matrix has {' × '.join(map(str, sizes))} = {math.prod(sizes):,} combinations; "
                f"the limit is {MAX_ITERATIONS:,}",
                f"give fewer values (at most {MAX_ITERATIONS:,} combinations), or split the matrix",
            )
        )
    return out + _exclude_problems(strategy)


def _exclude_problems(strategy: Matrix) -> list[tuple[str, str, str]]:
    """What is wrong with a matrix's ``exclude`` entries (R49)."""
    out: list[tuple[str, str, str]] = []
    exclude = strategy.exclude
    if exclude is not None and not is_expression(exclude):
        if not isinstance(exclude, list | tuple) or not all(isinstance(e, Mapping) for e in exclude):
            out.append(
                (
                    "R49",
                    f"exclude must be a list of {{axis: value}} entries, not {exclude!r}",
                    "write exclude: [{os: win, arch: arm}]",
                )
            )
        else:
            for entry in exclude:
                for axis, val in entry.items():
                    if axis not in strategy.axes:
                        known = ", ".join(map(str, strategy.axes)) or "none"
                        out.append(
                            (
                                "R49",
                                f"exclude names the axis {axis!r}, which the matrix does not have "
                                f"(axes: {known})",
                                "name an axis of the matrix",
                            )
                        )
                        continue
                    values = strategy.axes[axis]
                    if isinstance(values, list | tuple) and val not in values:
                        out.append(
                            (
                                "R49",
                                f"exclude names {axis}={val!r}, which is not a value of that axis "
                                f"({', '.join(map(repr, values))})",
                                "name a value of the axis",
                            )
                        )
    return out


def _repeated(values: list[Any] | tuple[Any, ...]) -> tuple[int, int] | None:
    """The positions of the first value listed twice (None: all distinct)."""
    seen: dict[str, Any] = {}
    others: list[Any] = []
    for i, value in enumerate(values):
        try:
            if value in seen:
                return seen[value], i
            seen[value] = i
        except TypeError:  # unhashable (a list or a mapping): compared one by one
            for j, other in others:
                if other == value:
                    return j, i
            others.append((i, value))
    return None


def runtime_values(strategy: Any) -> bool:
    """True when the iterations depend on values known only while running (``<+…>``)."""
    s = coerce_strategy(strategy)
    if isinstance(s, Parallelism):
        return is_expression(s.n)
    if isinstance(s, Repeat):
        return is_expression(s.items) or is_expression(s.times) or is_expression(s.partition_size)
    return any(is_expression(v) for v in s.axes.values())


def max_concurrency(strategy: Any) -> int | None:
    """The strategy's ``maxConcurrency`` as a number (None: no limit, or an unresolved expression)."""
    k = coerce_strategy(strategy).max_concurrency
    return k if isinstance(k, int) and not isinstance(k, bool) and k >= 1 else None


def badge(strategy: Any) -> str:
    """A short label for the picture: ``matrix 3×2 − 1, max 2``, ``repeat over hosts, max 1``.

    >>> badge(Matrix(os=["a", "b", "c"], arch=["x", "y"], exclude=[{"os": "c"}], max_concurrency=2))
    'matrix 3×2 − 1, max 2'
    >>> badge({"repeat": {"items": "<+stage.output.hosts>", "maxConcurrency": 1}})
    'repeat over hosts, max 1'
    >>> badge(Parallelism(4))
    'parallelism 4'
    """
    try:
        s = coerce_strategy(strategy)
    except LoopingError:
        return "strategy ?"
    if isinstance(s, Matrix):
        sizes = "×".join(str(len(v)) if isinstance(v, list | tuple) else "?" for v in s.axes.values())
        text = f"matrix {sizes or '?'}"
        if s.exclude and isinstance(s.exclude, list | tuple):
            text += f" − {len(s.exclude)}"
    elif isinstance(s, Repeat):
        if s.times is not None:
            text = f"repeat {s.times if not is_expression(s.times) else '?'} times"
        elif isinstance(s.items, list | tuple):
            text = f"repeat over {len(s.items)} items"
        else:
            text = f"repeat over {_last_name(s.items)}"
        if s.partition_size is not None:
            unit = "%" if s.unit == "Percentage" else ""
            text += f" in partitions of {s.partition_size}{unit}"
    else:
        text = f"parallelism {s.n if not is_expression(s.n) else '?'}"
    if s.max_concurrency is not None:
        text += f", max {s.max_concurrency}"
    return text


def _last_name(expression: Any) -> str:
    """``<+stage.output.hosts>`` → ``hosts``."""
    text = str(expression).strip()
    if text.startswith("<+") and text.endswith(">"):
        text = text[2:-1]
    return text.rsplit(".", 1)[-1] or text
