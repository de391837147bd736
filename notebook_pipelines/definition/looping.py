"""Looping strategies: ``matrix``, ``repeat`` and ``parallelism`` (SEMANTICS R46–R54, D11).

A looping strategy on a stage, step group or step runs the node's body once per *iteration*.
The plan keeps the node once (the picture draws it once, with a badge); the engine computes
the iterations when the node starts — run-time values such as ``items: <+stage.output.hosts>``
are only known then — and runs them, at most ``max_concurrency`` at a time in list order, a new
one starting whenever a running one ends (R54, E13: a sliding window, not waves).

Three spellings, one meaning. The Python API:

>>> Matrix(os=["linux", "mac"], arch=["x64", "arm"], exclude=[{"os": "mac"}], max_concurrency=2)
Matrix(os=['linux', 'mac'], arch=['x64', 'arm'], exclude=[{'os': 'mac'}], max_concurrency=2)
>>> Repeat(items=["a", "b", "c", "d", "e"], partition_size=2, max_concurrency=1)
Repeat(items=['a', 'b', 'c', 'd', 'e'], max_concurrency=1, partition_size=2)
>>> Parallelism(3)
Parallelism(3)

and the Harness YAML dict (R48), which :func:`coerce_strategy` reads:

>>> coerce_strategy({"matrix": {"os": ["linux", "mac"], "maxConcurrency": 1}})
Matrix(os=['linux', 'mac'], max_concurrency=1)

Iterations (:func:`iterations`) carry what the iteration expressions read (R52):
``<+matrix.AXIS>``, ``<+repeat.item>``, ``<+repeat.partition>``, ``<+strategy.iteration>``,
``<+strategy.iterations>``, ``<+strategy.identifierPostFix>``.

>>> [(it.postfix, it.matrix) for it in iterations(Matrix(os=["l", "w"], arch=["x", "a"],
...                                                     exclude=[{"os": "w", "arch": "a"}]))]
[('_0_0', {'os': 'l', 'arch': 'x'}), ('_0_1', {'os': 'l', 'arch': 'a'}), ('_1_0', {'os': 'w', 'arch': 'x'})]
>>> [(it.postfix, it.partition) for it in iterations(Repeat(items=[1, 2, 3, 4, 5], partition_size=2))]
[('_0', [1, 2]), ('_1', [3, 4]), ('_2', [5])]

Decisions where the sources leave room:

* Matrix combinations run in the order of ``itertools.product`` over the axes as declared
  (the last axis varies fastest); the postfix is the value index per axis joined with ``_``
  (D11). ``Matrix(postfix=fn)`` replaces it: ``fn(indices, values) -> str`` (R53), e.g.
  :func:`labels_by_name` for Harness's "Enable Matrix Labels By Name".
* ``repeat`` with ``partitionSize`` makes one iteration per partition (Count: that many
  items; Percentage: that share of the items, rounded up); ``<+repeat.partition>`` is the
  partition's list of items and ``<+repeat.item>`` the same list. ``start``/``end`` first cut
  the items (indices with Count, percentages with Percentage, rounded down/up).
* ``onFailure``: ``RunAll`` (the default) lets queued iterations run after one failed;
  ``SkipQueued`` leaves them ``NotStarted``. Running iterations always run to their end (R14).
* A run-time list in a simulation (nothing can resolve ``<+stage.output.hosts>`` there) is
  given by ``simulate(iterations={"Phase": 4})`` — how many items it holds — else the node
  runs once, with a warning that names it. In a real run a value that is not a list fails
  the node with an error saying so; so does a simulation when it knows the value (a pipeline
  variable, an output given by ``simulate(outputs=…)``): it never succeeds where the run fails.
* The references in a strategy (axes, items, counts, ``nodeName``) get the same static checks
  as any other (R42–R45: an undefined variable is refused at validation); only a stage's
  infrastructure outputs (``<+stage.output.hosts>``) are left to the run.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import LoopingError, LoopingWarning, Problem, excerpt
from .limits import MAX_NESTED_ITERATIONS, short

__all__ = [
    "ON_FAILURE",
    "Iteration",
    "LoopingError",
    "LoopingWarning",
    "Matrix",
    "Parallelism",
    "Repeat",
    "badge",
    "coerce_strategy",
    "index_postfix",
    "is_iteration",
    "iterations",
    "labels_by_name",
    "loop_problems",
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


def _is_expression(value: Any) -> bool:
    return isinstance(value, str) and "<+" in value


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
    if value is None or _is_expression(value):
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
        return out
    if isinstance(strategy, Repeat):
        if (strategy.items is None) == (strategy.times is None):
            out.append(
                ("R50", "repeat takes exactly one of items and times", "give items: [...] or times: N")
            )
        problem = _count_problem(strategy.times, "repeat times", 0, MAX_ITERATIONS)
        if problem:
            out.append(("R50", problem, f"give times: N with 0 ≤ N ≤ {MAX_ITERATIONS}"))
        if (
            strategy.items is not None
            and not _is_expression(strategy.items)
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
    # a matrix (R49)
    if not strategy.axes:
        out.append(("R49", "the matrix has no axes", "give at least one axis: matrix: {os: [linux, mac]}"))
    for name, values in strategy.axes.items():
        if _is_expression(values):
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
    exclude = strategy.exclude
    if exclude is not None and not _is_expression(exclude):
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


# -- expanding -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Iteration:
    """One iteration of a looped node and what its iteration expressions read (R52)."""

    index: int
    count: int
    postfix: str
    kind: str
    matrix: dict[str, Any] | None = None
    item: Any = None
    partition: list[Any] | None = None
    name: str | None = None

    def values(self) -> dict[str, Any]:
        """``<+strategy.…>`` values: iteration, iterations, identifierPostFix."""
        return {"iteration": self.index, "iterations": self.count, "identifierPostFix": self.postfix}


def _as_list(value: Any, what: str) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    raise LoopingError(f"{what} resolved to {value!r} ({type(value).__name__}), not a list")


def _as_count(value: Any, what: str) -> int:
    if isinstance(value, str) and value.strip().lstrip("+").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LoopingError(f"{what} resolved to {value!r}, not a whole number ≥ 0")
    return value


def iterations(
    strategy: Any,
    resolve: Callable[[Any], Any] | None = None,
    count: int | None = None,
    outer: int = 1,
) -> list[Iteration]:
    """The iterations of ``strategy``, in the order they start.

    Args:
        resolve: resolves a ``<+…>`` value (the run's values now); raises when it cannot.
        count: when given, a run-time list or number stands for this many items
            (``simulate(iterations=…)``); its items are placeholders naming their position.
        outer: how many times the other loops multiply each iteration (the product of the
            iteration counts around the node, and of the known counts inside it): the count
            times ``outer`` is checked against ``MAX_NESTED_ITERATIONS`` too, before any
            iteration is made.

    Raises:
        LoopingError: a run-time value is not a list / a count, or there are too many iterations.
    """
    strategy = coerce_strategy(strategy)

    def bound(n: int, what: str) -> int:
        return _bounded(n, what, outer)

    def value(v: Any, what: str) -> Any:
        if not _is_expression(v):
            return v
        if count is not None:
            return [f"{what}[{i}]" for i in range(bound(count, what))]
        if resolve is None:
            raise LoopingError(f"{what} ({v}) is known only while running")
        return resolve(v)

    if isinstance(strategy, Parallelism):
        n = strategy.n
        n = (
            count
            if _is_expression(n) and count is not None
            else _as_count(value(n, "parallelism"), "parallelism")
        )
        return [Iteration(i, n, f"_{i}", "parallelism") for i in range(bound(n, "parallelism"))]
    if isinstance(strategy, Repeat):
        if strategy.times is not None:
            t = strategy.times
            n = (
                count
                if _is_expression(t) and count is not None
                else _as_count(value(t, "repeat times"), "repeat times")
            )
            return [Iteration(i, n, f"_{i}", "repeat", item=i) for i in range(bound(n, "repeat times"))]
        items = _as_list(value(strategy.items, "repeat items"), "repeat items")
        items = _cut(items, strategy)
        size = strategy.partition_size
        if size is not None:
            size = _as_count(value(size, "partitionSize") if count is None else size, "partitionSize") or 1
            if strategy.unit == "Percentage":
                size = max(1, math.ceil(len(items) * size / 100))
            n = bound(-(-len(items) // size), "repeat items")  # before any iteration is made
            parts = [items[i : i + size] for i in range(0, len(items), size)]
            return [Iteration(i, n, f"_{i}", "repeat", item=p, partition=p) for i, p in enumerate(parts)]
        n = bound(len(items), "repeat items")
        return [Iteration(i, n, f"_{i}", "repeat", item=x, partition=[x]) for i, x in enumerate(items)]
    # matrix (R49)
    if count is not None and any(_is_expression(v) for v in strategy.axes.values()):
        names = list(strategy.axes)
        return [
            Iteration(i, count, f"_{i}", "matrix", matrix={a: f"{a}[{i}]" for a in names})
            for i in range(bound(count, "the matrix"))
        ]  # fmt: skip
    axes = {
        name: _as_list(value(vals, f"matrix axis {name}"), f"matrix axis {name}")
        for name, vals in strategy.axes.items()
    }
    if not axes or any(not v for v in axes.values()):
        return []
    total = math.prod(len(v) for v in axes.values())
    if total > MAX_ITERATIONS:
        raise LoopingError(f"the matrix has {total} combinations; the limit is {MAX_ITERATIONS}")
    bound(total, "the matrix")
    excluded = _exclusion(list(axes), strategy.exclude)
    postfix = strategy.postfix or index_postfix
    names = list(axes)
    kept = []
    for indices in itertools.product(*(range(len(axes[a])) for a in names)):
        values = tuple(axes[a][i] for a, i in zip(names, indices))
        if not excluded(values):
            kept.append((indices, values))
    n = len(kept)
    return [
        Iteration(i, n, _postfix(postfix, indices, values), "matrix", matrix=dict(zip(names, values)))
        for i, (indices, values) in enumerate(kept)
    ]


def _exclusion(names: list[Any], exclude: Any) -> Callable[[tuple[Any, ...]], bool]:
    """A test of a combination (its values, axis by axis) against the ``exclude`` entries (R49).

    Entries are grouped by the axes they name; a combination is looked up once per group (a
    set of value tuples), so 9,900 entries over a 10,000-combination matrix cost 10,000
    lookups, not 10⁸ comparisons. An entry naming an axis the matrix lacks excludes nothing
    (validation refuses it).
    """
    position = {a: i for i, a in enumerate(names)}
    groups: dict[tuple[int, ...], tuple[set[Any], list[Any]]] = {}
    for entry in exclude if isinstance(exclude, list | tuple) else ():
        if not isinstance(entry, Mapping) or any(k not in position for k in entry):
            continue
        axes = tuple(sorted(position[k] for k in entry))
        values = tuple(entry[names[i]] for i in axes)
        hashed, other = groups.setdefault(axes, (set(), []))
        try:
            hashed.add(values)
        except TypeError:  # an unhashable value (a list or a mapping): compared one by one
            other.append(values)

    def excluded(combo: tuple[Any, ...]) -> bool:
        for axes, (hashed, other) in groups.items():
            key = tuple(combo[i] for i in axes)
            try:
                if key in hashed:
                    return True
            except TypeError:
                if any(key == h for h in hashed):
                    return True
            if other and any(key == o for o in other):
                return True
        return False

    return excluded


def _postfix(fn: Callable[..., Any], indices: tuple[int, ...], values: tuple[Any, ...]) -> str:
    """``fn(indices, values)``, the postfix of one matrix iteration (R53): a failure of the user's
    function, or a value that is not text, is a :class:`LoopingError` (the node fails, named)."""
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    try:
        text = fn(indices, values)
    except Exception as err:  # the user's function: any failure becomes the node's, with its name
        raise LoopingError(
            f"the matrix postfix function {name} raised {type(err).__name__}: {excerpt(str(err), 120)} "
            f"for the indices {indices} and values {short(values)}; fix the function"
        ) from None
    if not isinstance(text, str):
        raise LoopingError(
            f"the matrix postfix function {name} returned {short(text)} (of type {type(text).__name__}) "
            f"for the indices {indices}; a postfix is text, e.g. '_' + '_'.join(map(str, indices))"
        )
    return text


def _cut(items: list[Any], strategy: Repeat) -> list[Any]:
    start, end = strategy.start, strategy.end
    if start is None and end is None:
        return items
    n = len(items)
    if strategy.unit == "Percentage":
        lo = math.floor(n * (start or 0) / 100)
        hi = math.ceil(n * (100 if end is None else end) / 100)
    else:
        lo, hi = start or 0, n if end is None else end
    return items[lo:hi]


def _bounded(n: int, what: str, outer: int = 1) -> int:
    """``n`` when it is at most ``MAX_ITERATIONS`` (and, inside loops that run the node
    ``outer`` times, ``n × outer`` at most ``MAX_NESTED_ITERATIONS``); checked before any
    iteration is made (a count from input such as ``times: 1000000000`` must not exhaust
    memory first)."""
    if n > MAX_ITERATIONS:
        raise LoopingError(
            f"{what} asks for {short(n)} iterations; the limit is {MAX_ITERATIONS}: "
            f"give at most {MAX_ITERATIONS} (split the work into batches)"
        )
    if n * outer > MAX_NESTED_ITERATIONS:
        raise LoopingError(
            f"{what} asks for {n:,} iterations, each run {outer:,} times by the loops around and "
            f"inside it: {n * outer:,} in all; the limit for nested looping strategies is "
            f"{MAX_NESTED_ITERATIONS:,}: loop fewer times (batch the inner items)"
        )
    return n


def static_count(strategy: Any) -> int | None:
    """How many iterations ``strategy`` has, when that is known before a run (else None).

    Raises:
        LoopingError: the strategy cannot be expanded (a matrix beyond the limit).
    """
    if runtime_values(strategy):
        return None
    return len(iterations(strategy))


def loop_problems(plan: Any) -> list[Problem]:
    """What the plan's looping strategies would do wrong, known before a run (R46, R49).

    - an iteration takes a sibling's identity: its FQN (the looped node's plus the postfix) is
      another node's (``build`` with ``Repeat(times=2)`` beside a step ``build_0``), or two
      iterations get one postfix (a ``postfix=`` function or labels by name over equal values);
    - nested loops multiply past ``MAX_NESTED_ITERATIONS``: the product of the counts of a
      looped node and the looped nodes around it (counts known only in a run count as 1 here;
      the engine checks them before the node expands).

    >>> from notebook_pipelines.definition.model import Pipeline
    >>> from notebook_pipelines.definition.plan import compile_plan
    >>> p = Pipeline("p")
    >>> with p.stage("s") as s:
    ...     _ = s.step("build", duration=1, strategy=Repeat(times=2))
    ...     _ = s.step("build_0", duration=1)
    >>> for problem in loop_problems(compile_plan(p, check=False)):
    ...     print(problem.message)  # doctest: +NORMALIZE_WHITESPACE
    iteration 0 of the looped step 'build' would be pipeline.stages.s.spec.execution.steps.build_0,
    which is the step 'build_0'
    """
    problems: list[Problem] = []
    made: dict[str, tuple[Any, int]] = {}  # an iteration's FQN → (looped node, iteration index)
    product: dict[int, int] = {}  # a looped node's index → its count × the counts around it
    for node in plan.nodes:
        if node.strategy is None or node.kind == "parallel":
            continue
        try:
            its = None if runtime_values(node.strategy) else iterations(node.strategy)
        except Exception:  # too many combinations, a postfix function that fails: the node fails
            its = None  # by name when it starts (R53), as a run-time list would
        outer = _outer_loop(node)
        total = (len(its) if its is not None else 1) * (product.get(outer.index, 1) if outer else 1)
        product[node.index] = total
        reported = outer is not None and product.get(outer.index, 1) > MAX_NESTED_ITERATIONS
        if total > MAX_NESTED_ITERATIONS and not reported:  # once, at the loop that goes past
            chain = []
            cur = node
            while cur is not None:
                chain.append(f"{cur.kind.replace('_', ' ')} {cur.id!r} × {_count_text(cur.strategy)}")
                cur = _outer_loop(cur)
            problems.append(
                Problem(
                    node.fqn,
                    "R46",
                    f"nested looping strategies run this node {total:,} times "
                    f"({'; inside '.join(chain)}); the limit is {MAX_NESTED_ITERATIONS:,}",
                    f"loop fewer times (at most {MAX_NESTED_ITERATIONS:,} in all), e.g. batch the "
                    "items of the inner loop",
                )
            )
        if its is None:
            continue
        seen: dict[str, int] = {}
        for it in its:
            fqn = node.fqn + it.postfix
            what = f"iteration {it.index} of the looped {node.kind.replace('_', ' ')} {node.id!r}"
            if it.postfix in seen:
                problems.append(
                    Problem(
                        node.fqn,
                        "R46",
                        f"{what} and iteration {seen[it.postfix]} both get the postfix {it.postfix!r} "
                        f"(one FQN, {fqn})",
                        "give the matrix distinct values (or a postfix function that tells them apart)",
                    )
                )
                continue
            seen[it.postfix] = it.index
            other = plan.by_fqn.get(fqn)
            if other is not None:
                problems.append(
                    Problem(
                        node.fqn,
                        "R46",
                        f"{what} would be {fqn}, which is the {other.kind.replace('_', ' ')} {other.id!r}",
                        f"rename the {other.kind.replace('_', ' ')} {other.id!r} or the looped node "
                        f"{node.id!r}: an iteration's identifier is the node's plus its postfix",
                    )
                )
            elif fqn in made:
                looped, index = made[fqn]
                problems.append(
                    Problem(
                        node.fqn,
                        "R46",
                        f"{what} would be {fqn}, as iteration {index} of the looped node {looped.id!r}",
                        f"rename {node.id!r} or {looped.id!r}: an iteration's identifier is the node's "
                        "plus its postfix",
                    )
                )
            else:
                made[fqn] = (node, it.index)
    return problems


def _outer_loop(node: Any) -> Any:
    cur = node.parent
    while cur is not None and cur.strategy is None:
        cur = cur.parent
    return cur


def _count_text(strategy: Any) -> str:
    try:
        n = static_count(strategy)
    except Exception:  # reported on its own node
        n = None
    return "?" if n is None else f"{n:,}"


def outer_count(node: Any) -> int:
    """How many times the loops around ``node`` (a run's node) run it: their counts' product."""
    total, cur = 1, node.parent
    while cur is not None:
        if cur.loop is not None:
            total *= max(1, cur.loop.count)
        cur = cur.parent
    return total


def inner_count(node: Any) -> int:
    """The most times the looped nodes inside ``node`` multiply one of its iterations (their
    counts known before a run; a run-time count is 1 here)."""
    best: dict[int, int] = {}
    for below in reversed(list(node.walk())):  # the innermost first
        if below is node:
            continue
        factor = 1
        if below.strategy is not None:
            try:
                factor = static_count(below.strategy) or 1
            except Exception:  # refused where the node expands
                factor = 1
        inside = max((best.get(id(c), 1) for c in _children(below)), default=1)
        best[id(below)] = factor * inside
    return max((best.get(id(c), 1) for c in _children(node)), default=1)


def _children(node: Any) -> list[Any]:
    out: list[Any] = []
    for item in (*(node.items or ()), *(node.rollback or ())):
        out.extend(item.items if item.kind == "parallel" else (item,))
    return out


def check_identities(node: Any, its: list[Iteration]) -> None:
    """Raise a LoopingError when two iterations of ``node`` get one postfix (R46)."""
    seen: dict[str, int] = {}
    for it in its:
        if it.postfix in seen:
            raise LoopingError(
                f"iterations {seen[it.postfix]} and {it.index} both get the postfix {it.postfix!r} "
                f"(one FQN, {node.fqn}{it.postfix}): give the items distinct values"
            )
        seen[it.postfix] = it.index


def is_iteration(fqn: str, parent: Any) -> bool:
    """True when ``fqn`` is an iteration of the looped node ``parent`` (a trace row's ``fqn`` and
    ``parent``): the iteration's FQN is its looped node's plus the postfix (R46).

    >>> is_iteration("pipeline.stages.s.steps.c_0_1", "pipeline.stages.s.steps.c")
    True
    >>> is_iteration("pipeline.stages.s.steps.g.steps.c", "pipeline.stages.s.steps.g")
    False
    """
    return isinstance(parent, str) and len(fqn) > len(parent) + 1 and fqn.startswith(parent + "_")


def runtime_values(strategy: Any) -> bool:
    """True when the iterations depend on values known only while running (``<+…>``)."""
    s = coerce_strategy(strategy)
    if isinstance(s, Parallelism):
        return _is_expression(s.n)
    if isinstance(s, Repeat):
        return _is_expression(s.items) or _is_expression(s.times) or _is_expression(s.partition_size)
    return any(_is_expression(v) for v in s.axes.values())


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
            text = f"repeat {s.times if not _is_expression(s.times) else '?'} times"
        elif isinstance(s.items, list | tuple):
            text = f"repeat over {len(s.items)} items"
        else:
            text = f"repeat over {_last_name(s.items)}"
        if s.partition_size is not None:
            unit = "%" if s.unit == "Percentage" else ""
            text += f" in partitions of {s.partition_size}{unit}"
    else:
        text = f"parallelism {s.n if not _is_expression(s.n) else '?'}"
    if s.max_concurrency is not None:
        text += f", max {s.max_concurrency}"
    return text


def _last_name(expression: Any) -> str:
    """``<+stage.output.hosts>`` → ``hosts``."""
    text = str(expression).strip()
    if text.startswith("<+") and text.endswith(">"):
        text = text[2:-1]
    return text.rsplit(".", 1)[-1] or text
