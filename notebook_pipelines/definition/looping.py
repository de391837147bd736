"""Looping strategies: ``matrix``, ``repeat`` and ``parallelism`` (SEMANTICS R46–R54, D11): what
they do — their static checks and their iterations; the strategies themselves (plain data,
the YAML form, the badge) are :mod:`~notebook_pipelines.definition.strategies`'.

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
from dataclasses import dataclass
from typing import Any

from ..errors import LoopingError, LoopingWarning, Problem
from .evaluation import raised
from .expressions import is_expression
from .limits import MAX_NESTED_ITERATIONS, short
from .strategies import (
    MAX_ITERATIONS,
    ON_FAILURE,
    Matrix,
    Parallelism,
    Repeat,
    badge,
    coerce_strategy,
    index_postfix,
    labels_by_name,
    max_concurrency,
    runtime_values,
    strategy_problems,
    to_dict,
)

# the strategies themselves are strategies.py's; looping names them too (``nbp.Matrix`` is
# ``looping.Matrix``), beside what they do: their checks and their iterations
__all__ = [
    "MAX_ITERATIONS",
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
    "max_concurrency",
    "runtime_values",
    "static_count",
    "strategy_problems",
    "to_dict",
]


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
    raise LoopingError(f"{what} resolved to {short(value)} ({type(value).__name__}), not a list")


def _as_count(value: Any, what: str) -> int:
    if isinstance(value, str) and value.strip().lstrip("+").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LoopingError(f"{what} resolved to {short(value)}, not a whole number ≥ 0")
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
        if not is_expression(v):
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
            if is_expression(n) and count is not None
            else _as_count(value(n, "parallelism"), "parallelism")
        )
        return [Iteration(i, n, f"_{i}", "parallelism") for i in range(bound(n, "parallelism"))]
    if isinstance(strategy, Repeat):
        if strategy.times is not None:
            t = strategy.times
            n = (
                count
                if is_expression(t) and count is not None
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
    if count is not None and any(is_expression(v) for v in strategy.axes.values()):
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
        except Exception:  # unhashable (a list or a mapping; a __hash__ that raises): compared one by one
            other.append(values)

    def excluded(combo: tuple[Any, ...]) -> bool:
        try:
            return matches(combo)
        except LoopingError:
            raise
        except Exception as err:  # a value's own __hash__ or __eq__ raised (a NumPy array…)
            raise LoopingError(
                f"the matrix combination {short(combo)} cannot be compared with the exclude entries: "
                f"{raised(err)}; give the axes plain values "
                "(text, numbers, booleans)"
            ) from None

    def matches(combo: tuple[Any, ...]) -> bool:
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
            f"the matrix postfix function {name} raised {raised(err)} "
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
