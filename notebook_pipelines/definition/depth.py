"""The depth of a definition, checked without recursion (the limits of :mod:`.limits`).

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
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import Problem
from .limits import MAX_DATA_DEPTH, MAX_GROUP_DEPTH, data_children, data_depth
from .model import Stage, Step, StepGroup
from .tree import Visit, walk

__all__ = ["Limits", "depth_problems", "scalars_only"]

#: the fields of the nodes that hold the structure (walked by ``depth_problems``, not as data)
_STRUCTURE = ("items", "rollback_items", "stages")

_GROUP_FIX = (
    "flatten the nesting: move the inner steps into an outer step group (parallel blocks are "
    f"allowed); at most {MAX_GROUP_DEPTH} levels of step groups"
)


#: values that hold nothing nested (most settings of most nodes): no walk needed
_FLAT = (type(None), str, int, float, bool)


@functools.cache
def _setting_names(cls: type) -> tuple[str, ...]:
    """The fields of a node class that hold settings (not the child lists), looked up once."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.name not in _STRUCTURE)


def _node_problems(node: Any, fqn: str) -> Iterator[Problem]:
    values = getattr(node, "__dict__", None)  # the dataclass's fields, read at once
    pairs = (
        values.items()
        if values is not None
        else ((n, getattr(node, n)) for n in _setting_names(node.__class__))
    )
    for name, value in pairs:
        if type(value) in _FLAT or name in _STRUCTURE or name[:1] == "_" or callable(value):
            continue  # a scalar, the structure, the builder's own state (``_known`` ids…), a body
        if data_children(value) is not None and data_depth(value) > MAX_DATA_DEPTH:
            yield Problem(
                fqn,
                "limits",
                f"{name} is nested more than {MAX_DATA_DEPTH} levels deep",
                f"keep {name} within {MAX_DATA_DEPTH} levels of mappings, lists and nested actions",
            )


def scalars_only(step: Any) -> bool:
    """True when no setting of ``step`` holds nested data (most steps): no depth to check.

    Reads the fields with one ``attrgetter`` rather than ``__dict__``, which would give the
    instance a dict of its own and make every later read of its attributes slower.
    """
    values: tuple[Any, ...] = _fields_of(step.__class__)(step)
    for value in filter(_IS_SET, values):  # most fields are None
        if type(value) in _FLAT or callable(value):
            continue
        return False
    return True


#: ``value is not None``, as a C-level predicate for ``filter``
_IS_SET: Callable[[Any], bool] = functools.partial(operator.is_not, None)


@functools.cache
def _fields_of(cls: type) -> Any:
    """``node -> tuple`` of the values of every field of the dataclass ``cls``."""
    return operator.attrgetter(*(f.name for f in dataclasses.fields(cls)))


def depth_problems(pipeline: Any) -> list[Problem]:
    """Step groups nested deeper than ``MAX_GROUP_DEPTH``, settings nested deeper than
    ``MAX_DATA_DEPTH``: found with :func:`~.tree.walk` (an explicit stack, never recursion). A
    too-deep group is reported once and not entered.

    Values of the wrong type are skipped here (validation reports them).
    """
    limits = Limits(pipeline)
    for visit in walk(pipeline, enter=limits.enter):
        limits.check(visit)
    return limits.found


class Limits:
    """The depth checks of one walk, node by node (:func:`depth_problems`; validation makes them
    in its own walk, before the rules of each node)."""

    def __init__(self, pipeline: Any):
        self.found: list[Problem] = list(_node_problems(pipeline, "pipeline"))
        self.too_deep: set[int] = set()

    def enter(self, visit: Visit) -> bool:
        """Walk below stages and step groups, but not below a group nested too deep."""
        return isinstance(visit.node, Stage | StepGroup) and id(visit.node) not in self.too_deep

    def check(self, visit: Visit) -> bool:
        """Check one node; True when it breaks a limit (reported in ``found``)."""
        node = visit.node
        if type(node) is Step and scalars_only(node):
            return False  # most steps: nothing to check
        if isinstance(node, StepGroup):
            depth = 1 + sum(isinstance(a, StepGroup) for a in visit.ancestors)
            if depth > MAX_GROUP_DEPTH:
                message = f"step groups are nested {depth} levels deep; the limit is {MAX_GROUP_DEPTH}"
                self.found.append(Problem(visit.fqn, "R6", message, _GROUP_FIX))
                self.too_deep.add(id(node))
                return True
        if dataclasses.is_dataclass(node):
            before = len(self.found)
            self.found.extend(_node_problems(node, visit.fqn))
            return len(self.found) > before
        return False
