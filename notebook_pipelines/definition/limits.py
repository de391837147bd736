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

The depths are checked without recursion by :func:`~.depth.depth_problems` (``definition/depth.py``,
which knows the node classes; this module knows none, so every module of the definition may
import it).
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MAX_DATA_DEPTH",
    "MAX_GROUP_DEPTH",
    "MAX_IDENTIFIER",
    "MAX_NESTED_ITERATIONS",
    "MAX_RETRIES",
    "data_children",
    "data_depth",
    "short",
]

MAX_GROUP_DEPTH = 32
MAX_DATA_DEPTH = 64
MAX_RETRIES = 100
MAX_IDENTIFIER = 128
MAX_NESTED_ITERATIONS = 100_000

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


def data_children(value: Any) -> Any:
    """The values inside ``value`` (a mapping, list, tuple or settings dataclass); ``None`` for a scalar."""
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
    if data_children(value) is None:
        return 0
    height: dict[int, int] = {}  # id -> depth of the structure below it (itself included)
    entered: set[int] = set()
    stack: list[tuple[Any, int, bool]] = [(value, 1, False)]
    while stack:
        item, level, finished = stack.pop()
        key = id(item)
        if finished:
            below = [height[id(c)] for c in data_children(item) if data_children(c) is not None]
            height[key] = 1 + max(below, default=0)
            entered.discard(key)
            continue
        if key in height:
            continue
        if key in entered or level > limit:  # a cycle, or deeper than the limit
            return limit + 1
        entered.add(key)
        stack.append((item, level, True))
        stack.extend((c, level + 1, False) for c in data_children(item) if data_children(c) is not None)
    return min(height[id(value)], limit + 1)
