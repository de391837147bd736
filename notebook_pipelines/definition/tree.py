"""The one walk of a definition tree: every node below a container, with where it stands.

A pipeline holds stages; a stage and a step group hold an execution list and a rollback list;
each list holds nodes and ``Parallel`` blocks of nodes. :func:`walk` (``Pipeline.walk()``,
``Stage.walk()``, ``StepGroup.walk()``) visits every stage, step group and step below a container
in pre-order (a container before what it holds; its execution list, then its rollback list; the
nodes of a parallel block in its place), and says for each what the walks of this package need:

>>> from notebook_pipelines.definition.model import Pipeline
>>> p = Pipeline("release")
>>> with p.stage("build") as build:
...     with build.step_group("tests") as tests:
...         with tests.parallel():
...             _ = tests.step("unit")
...             _ = tests.step("lint")
...     with build.rollback():
...         _ = build.step("undo")
>>> for v in p.walk():
...     print(v.depth, v.phase, v.block, v.parallel is not None, v.parent.id, v.fqn)
1 execution 0 False release pipeline.stages.build
2 execution 0 False build pipeline.stages.build.spec.execution.steps.tests
3 execution 0 True tests pipeline.stages.build.spec.execution.steps.tests.steps.unit
3 execution 0 True tests pipeline.stages.build.spec.execution.steps.tests.steps.lint
2 rollback 0 False build pipeline.stages.build.spec.execution.rollbackSteps.undo

``enter`` prunes: a container for which it returns False is visited but not entered:

>>> [v.node.id for v in p.walk(enter=lambda v: v.depth < 2)]
['build', 'tests', 'undo']

The walk uses an explicit stack, never recursion, and goes only where the structure is sound
(a list of children that is not a list, or a parallel block whose ``items`` is not one, is not
entered), so it may run on a definition that has not been validated yet: validation reports
what it left out. What a walk cannot do — rebuild a tree (plan compilation, the YAML writer,
the layout search) — is a fold over the lists and stays with its module.

The compiled plan has its own walk, :meth:`~notebook_pipelines.definition.plan.PlanNode.walk`
(a plan node already carries its FQN, parent, phase and block).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from .limits import short
from .nodes import Parallel, Step

__all__ = ["Visit", "walk"]


class Visit(NamedTuple):
    """One node met by :func:`walk`, and where it stands."""

    #: the stage, step group or step (on an unvalidated definition: whatever the list holds)
    node: Any
    #: the FQN of the list that holds it, with a trailing dot (``pipeline.stages.s.spec.execution.steps.``)
    prefix: str
    #: the containers from the walk's root down to the node's parent (both included)
    ancestors: tuple[Any, ...]
    #: ``"execution"`` or ``"rollback"``: which list of its parent holds it
    phase: str
    #: the index of its entry (the node, or its parallel block) in that list
    block: int
    #: the ``Parallel`` block that holds it, or None
    parallel: Parallel | None

    @property
    def fqn(self) -> str:
        """Its fully qualified name, as Harness writes it (``pipeline.stages.s.spec.execution.steps.a``;
        an identifier that is not text as a short repr)."""
        ident = getattr(self.node, "id", None)
        return self.prefix + (ident if type(ident) is str else _ident(ident))

    @property
    def parent(self) -> Any:
        """The container whose list holds the node."""
        return self.ancestors[-1]

    @property
    def depth(self) -> int:
        """How far below the walk's root: 1 for the root's own children."""
        return len(self.ancestors)


def fqn_of_child(parent: Any, parent_fqn: str, phase: str, ident: Any) -> str:
    """The FQN of a child of ``parent`` (whose FQN is ``parent_fqn``) in the list ``phase``.

    >>> from notebook_pipelines.definition.model import Stage
    >>> fqn_of_child(Stage("s"), "pipeline.stages.s", "rollback", "undo")
    'pipeline.stages.s.spec.execution.rollbackSteps.undo'
    """
    keys = type(parent).CHILD_KEYS
    return f"{parent_fqn}{keys[phase == 'rollback']}.{ident if type(ident) is str else short(ident)}"


def walk(
    root: Any, *, fqn: str | None = None, enter: Callable[[Visit], bool] | None = None
) -> Iterator[Visit]:
    """Every node below the container ``root``, in pre-order, as :class:`Visit` (see the module).

    Args:
        root: a ``Pipeline``, ``Stage`` or ``StepGroup``.
        fqn: the FQN of ``root`` (default: its own; for a step group walked alone, which does
            not know its stage, its identifier).
        enter: called with each visited container; False: do not walk below it.
    """
    # a stack of the lists being walked (an iterator per container): pre-order, no recursion
    first, _ = _children((root,), root._own_fqn() if fqn is None else fqn)
    stack = [iter(first)]
    containers = _CONTAINERS
    while stack:
        for visit in stack[-1]:
            yield visit
            cls = type(visit[0])
            if cls is Step:
                continue  # most nodes: a leaf
            known = containers.get(cls)
            if known is None:
                known = containers[cls] = hasattr(cls, "CHILD_KEYS")
            if known and (enter is None or enter(visit)):
                below, leaves = _children((*visit.ancestors, visit[0]), visit.fqn)
                if leaves:  # steps only (most lists): no container to enter, handed on at once
                    yield from below
                else:
                    stack.append(iter(below))
                    break  # its nodes first, then the rest of this list
        else:
            stack.pop()


def _children(ancestors: tuple[Any, ...], parent_fqn: str) -> tuple[list[Visit], bool]:
    """The visits of the nodes directly in the lists of ``ancestors[-1]`` (lists that are not
    lists, and parallel blocks whose ``items`` is not one, are left out), and whether they are
    all steps."""
    parent = ancestors[-1]
    keys = type(parent).CHILD_KEYS
    out: list[Visit] = []
    add = out.append
    leaves = True
    for phase, items, key in (
        ("execution", parent.items, keys[0]),
        ("rollback", parent.rollback_items, keys[1]),
    ):
        if not isinstance(items, list | tuple):
            continue
        prefix = f"{parent_fqn}{key}."
        for block, item in enumerate(items):
            if type(item) is Step:
                add(_new(Visit, (item, prefix, ancestors, phase, block, None)))
            elif isinstance(item, Parallel):
                if isinstance(item.items, list | tuple):
                    for node in item.items:
                        leaves = leaves and type(node) is Step
                        add(_new(Visit, (node, prefix, ancestors, phase, block, item)))
            else:
                leaves = False
                add(_new(Visit, (item, prefix, ancestors, phase, block, None)))
    return out, leaves


def _ident(ident: Any) -> str:
    """An identifier that is not a ``str`` as it stands in an FQN (a subclass of ``str`` as
    itself, anything else as a short repr)."""
    return ident if isinstance(ident, str) else short(ident)


#: whether the nodes of a class hold lists (they say where their children's FQNs go:
#: ``CHILD_KEYS``), looked up once per class
_CONTAINERS: dict[type, bool] = {}


#: ``Visit``'s constructor without the keyword handling of ``NamedTuple.__new__`` (a walk makes
#: one per node: 100,000 for a large pipeline)
_new = tuple.__new__
