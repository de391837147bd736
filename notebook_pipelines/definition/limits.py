"""Limits on what a definition may hold, each with its reason (issue 11: hostile input).

A definition comes from a notebook, a YAML file or a program; none of them should be able to
make the toolkit spin, exhaust memory or crash with a ``RecursionError``. Each limit is far
beyond what a real pipeline needs, and is checked before anything walks the definition:

``MAX_GROUP_DEPTH = 32`` levels of nested step groups (``rules="current"``, R6).
    Harness documents no maximum (R6 is uncertain about it); its own samples nest two levels
    (``Phase`` → ``Phase Group``) and deeper nesting is hard to read in any picture. Every walk of
    a definition — validation, plan compilation, rendering, ``to_yaml`` and PyYAML's writer, the
    YAML reader — recurses once or a few times per level (``to_yaml`` writes three YAML levels per
    group, about three Python frames each), so 32 levels with 64 levels of data below them stay
    under a third of Python's default recursion limit of 1,000, leaving room for the caller's
    own stack (a notebook cell, a test runner). 150 levels from YAML or 400 from Python used to
    end in a ``RecursionError``.
``MAX_DATA_DEPTH = 64`` levels of nesting inside any setting of a node: its data (``spec``,
    ``variables``, ``inputs``, ``strategy``, the YAML keys kept in ``extra``), its failure
    strategies (an action inside ``Retry(then=…)`` or ``ManualIntervention(on_timeout=…)`` is a
    level), even a value that should have been text. Harness step specs are a handful of levels
    deep (``spec.source.spec.script``), a chain of actions at most three; reference checking,
    validation, messages that show a value, ``to_yaml`` and the JSON of the trace walk them
    recursively.
``MAX_RETRIES = 100`` for ``Retry`` and ``RetryStepGroup`` counts (R18, R19). Each retry is an
    attempt and a row of the trace: ``Retry(10**9)`` on a failing step grew a simulation's trace
    for ever. A hundred retries is already more than any transient failure deserves (Harness
    users retry 1–5 times, with intervals); a step that needs more is failing, not flaky.
``MAX_IDENTIFIER = 128`` characters in an identifier (R1): Harness's own limit
    (``EntityIdentifierValidator``: ``^[a-zA-Z_][0-9a-zA-Z_$]{0,127}$``).
``MAX_NESTED_ITERATIONS = 100_000``: the product of the iteration counts of nested looping
    strategies (a looped step inside a looped group inside a looped stage runs
    stage × group × step times; each one looped node is at most ``looping.MAX_ITERATIONS``,
    10,000). Each iteration is a copy of its node and a row of the trace: a stage
    ``Repeat(times=10000)`` holding a step ``Repeat(times=10000)`` asked for 10⁸ and ended in a
    ``MemoryError`` at 5.5 GB; 100,000 is the size of the ``simulate-100k`` benchmark (seconds,
    a few hundred MB). Checked at validation where the counts are written, and in a run before
    a looped node expands (run-time lists, ``simulate(iterations=…)``).

Manual interventions answered "Retry" are counted apart, per step, and bounded by the same
``MAX_RETRIES`` in the engine (``engine/semantics.py``): a person, a callback or a simulation's
scripted answer that says Retry for ever ends with the step failing, the reason in the trace.

:func:`depth_problems` checks the two depths without recursion (an explicit stack), so it can
run first on any definition, however deep; validation, ``compile_plan`` (also with
``check=False``) and ``to_yaml`` call it before their recursive walks.

>>> from notebook_pipelines.definition.model import Pipeline, Stage, StepGroup, Step
>>> group = inner = StepGroup("g0")
>>> for level in range(1, 40):
...     inner = inner.step_group(f"g{level}")
>>> _ = inner.step("leaf")
>>> [problem] = depth_problems(Pipeline("p", rules="current", stages=[Stage("s", items=[group])]))
>>> print(problem.rule, problem.fqn.count(".steps."), problem.message)
R6 33 step groups are nested 33 levels deep; the limit is 32
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import reprlib
from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import Problem

__all__ = [
    "MAX_DATA_DEPTH",
    "MAX_GROUP_DEPTH",
    "MAX_IDENTIFIER",
    "MAX_NESTED_ITERATIONS",
    "MAX_RETRIES",
    "data_depth",
    "depth_problems",
    "short",
]

MAX_GROUP_DEPTH = 32
MAX_DATA_DEPTH = 64
MAX_RETRIES = 100
MAX_IDENTIFIER = 128
MAX_NESTED_ITERATIONS = 100_000

#: the fields of the nodes that hold the structure (walked by ``depth_problems``, not as data)
_STRUCTURE = ("items", "rollback_items", "stages")
_REPR = reprlib.Repr()  # keyword arguments only from Python 3.12
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 60, 60
_REPR.maxdict = _REPR.maxlist = _REPR.maxtuple = _REPR.maxset = 4


def short(value: Any) -> str:
    """A short ``repr`` of any value, however large or deep (for messages about bad input).

    >>> short({"a": [[[[1]]]]}), len(short("x" * 100_000)), short(-(10**400))
    ("{'a': [[[...]]]}", 60, '(a negative integer of about 401 digits)')
    """
    if type(value) is int and abs(value).bit_length() > 265:  # over ~80 digits (past 4,300 repr fails)
        sign = "a negative" if value < 0 else "an"
        return f"({sign} integer of about {int(abs(value).bit_length() * 0.30103) + 1} digits)"
    if isinstance(value, str | int | float | bool | type(None)) and len(text := repr(value)) <= 80:
        return text
    return _REPR.repr(value)


_GROUP_FIX = (
    "flatten the nesting: move the inner steps into an outer step group (parallel blocks are "
    f"allowed); at most {MAX_GROUP_DEPTH} levels of step groups"
)


def _children(value: Any) -> Any:
    if isinstance(value, Mapping):
        return value.values()
    if isinstance(value, list | tuple):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # When, OnFailure, actions
        return [getattr(value, f.name) for f in dataclasses.fields(value)]
    return None


def data_depth(value: Any, limit: int = MAX_DATA_DEPTH) -> int:
    """The nesting depth of plain data (a scalar is 0, ``{"a": [1]}`` is 2), or ``limit + 1``
    when it is deeper than ``limit`` (or contains itself).

    Counted with an explicit stack, never by recursion, and each shared sub-structure once (a
    structure that repeats one list inside itself is walked in linear time).

    >>> data_depth({"spec": {"source": {"spec": {"script": "echo"}}}}), data_depth("text")
    (4, 0)
    """
    if _children(value) is None:
        return 0
    height: dict[int, int] = {}  # id -> depth of the structure below it (itself included)
    entered: set[int] = set()
    stack: list[tuple[Any, int, bool]] = [(value, 1, False)]
    while stack:
        item, level, finished = stack.pop()
        key = id(item)
        if finished:
            below = [height[id(c)] for c in _children(item) if _children(c) is not None]
            height[key] = 1 + max(below, default=0)
            entered.discard(key)
            continue
        if key in height:
            continue
        if key in entered or level > limit:  # a cycle, or deeper than the limit
            return limit + 1
        entered.add(key)
        stack.append((item, level, True))
        stack.extend((c, level + 1, False) for c in _children(item) if _children(c) is not None)
    return min(height[id(value)], limit + 1)


#: values that hold nothing nested (most settings of most nodes): no walk needed
_FLAT = (type(None), str, int, float, bool)


@functools.cache
def _setting_names(cls: type) -> tuple[str, ...]:
    """The fields of a node class that hold settings (not the child lists), looked up once."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.name not in _STRUCTURE)


def _node_problems(node: Any, fqn: str) -> Iterator[Problem]:
    values = getattr(node, "__dict__", None)  # the dataclass's fields, read at once
    pairs = (
        values.items() if values is not None else ((n, getattr(node, n)) for n in _setting_names(type(node)))
    )
    for name, value in pairs:
        if type(value) in _FLAT or name in _STRUCTURE or callable(value):
            continue
        if _children(value) is not None and data_depth(value) > MAX_DATA_DEPTH:
            yield Problem(
                fqn,
                "limits",
                f"{name} is nested more than {MAX_DATA_DEPTH} levels deep",
                f"keep {name} within {MAX_DATA_DEPTH} levels of mappings, lists and nested actions",
            )


def _scalars_only(step: Any) -> bool:
    """True when no setting of ``step`` holds nested data (most steps): no depth to check.

    Reads the fields with one ``attrgetter`` rather than ``__dict__``, which would give the
    instance a dict of its own and make every later read of its attributes slower.
    """
    for value in filter(_IS_SET, _fields_of(type(step))(step)):  # most fields are None
        if type(value) in _FLAT or callable(value):
            continue
        return False
    return True


#: ``value is not None``, as a C-level predicate for ``filter``
_IS_SET = functools.partial(operator.is_not, None)


@functools.cache
def _fields_of(cls: type) -> Any:
    """``node -> tuple`` of the values of every field of the dataclass ``cls``."""
    return operator.attrgetter(*(f.name for f in dataclasses.fields(cls)))


def _id(node: Any) -> str:
    """The identifier of a node for an FQN (a short repr when it is not text)."""
    ident = getattr(node, "id", None)
    return ident if isinstance(ident, str) else short(ident)


def depth_problems(pipeline: Any) -> list[Problem]:
    """Step groups nested deeper than ``MAX_GROUP_DEPTH``, settings nested deeper than
    ``MAX_DATA_DEPTH``: found with an explicit stack, never by recursion. A too-deep group is
    reported once and not entered.

    Values of the wrong type are skipped here (validation reports them).
    """
    from .model import Parallel, Stage, Step, StepGroup

    found: list[Problem] = list(_node_problems(pipeline, "pipeline"))
    stages = pipeline.stages if isinstance(pipeline.stages, list | tuple) else []
    # (node, fqn, depth in step groups)
    stack: list[tuple[Any, str, int]] = []
    for item in _flat(stages, Parallel):
        stack.append((item, f"pipeline.stages.{_id(item)}", 0))
    stack.reverse()
    while stack:
        node, fqn, depth = stack.pop()
        if isinstance(node, StepGroup):
            depth += 1
            if depth > MAX_GROUP_DEPTH:
                found.append(
                    Problem(
                        fqn,
                        "R6",
                        f"step groups are nested {depth} levels deep; the limit is {MAX_GROUP_DEPTH}",
                        _GROUP_FIX,
                    )
                )
                continue
        if dataclasses.is_dataclass(node):
            found.extend(_node_problems(node, fqn))
        if not isinstance(node, Stage | StepGroup):
            continue
        lists = (("steps", node.items), ("rollbackSteps", node.rollback_items))
        prefix = f"{fqn}.spec.execution" if isinstance(node, Stage) else fqn
        children = []
        for key, items in lists:
            if isinstance(items, list | tuple):
                children += [
                    (child, f"{prefix}.{key}.{_id(child)}", depth)
                    for child in _flat(items, Parallel)
                    if type(child) is not Step or not _scalars_only(child)  # else: nothing to check
                ]
        stack.extend(reversed(children))
    return found


def _flat(items: Any, parallel: type) -> list:
    """The nodes of a list, with the nodes of its parallel blocks in their place."""
    out = []
    for item in items:
        if isinstance(item, parallel):
            out.extend(item.items if isinstance(item.items, list | tuple) else [])
        else:
            out.append(item)
    return out
