"""The definition of a pipeline: plain data, built cell by cell.

``Pipeline`` → stages (serial, or side by side in ``Parallel`` blocks, R11);
``Stage`` → an execution list and a rollback list of steps, step groups and parallel blocks
(R12, R35); ``StepGroup`` → a serial list of steps and ``Parallel`` blocks of steps (R4, R5).

The same objects are the builder. Each container has a *cursor*: ``with x.parallel():`` and
``with x.rollback():`` move it, so ``step()`` calls land where the code reads:

>>> p = Pipeline("release")
>>> with p.stage("build") as build:
...     _ = build.step("checkout")
...     with build.step_group("tests") as tests:
...         with tests.parallel():
...             _ = tests.step("unit")
...             _ = tests.step("lint")
...         _ = tests.step("e2e")
>>> p
Pipeline('release', stages=['build'])
>>> tests
StepGroup('tests', [Parallel(['unit', 'lint']), 'e2e'])

**Re-running redefines, never duplicates**: adding a node whose identifier already exists in
the same container replaces the old node in its place (a parallel block replaces the block
that held the same identifiers), so re-running a notebook cell is safe:

>>> with p.stage("build") as build:
...     _ = build.step("checkout")
>>> [s.id for s in p.stages]
['build']

Nothing here checks the rules; ``validation.py`` does, all at once, before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn, Self, TypeVar, Union

from .nodes import Parallel, Settings, Step
from .placement import (
    attach,
    block_of,
    check_sibling,
    ids_of,
    item_ids,
    locate,
    members,
    place,
    remove_ids,
    take,
)
from .tree import Visit, walk
from .verbs import VERBS as VERBS
from .verbs import Drawable, PipelineVerbs
from .verbs import verb as verb

__all__ = [
    "Node",
    "Parallel",
    "Pipeline",
    "Stage",
    "Step",
    "StepGroup",
    "block_of",
    "check_sibling",
    "locate",
    "members",
    "place",
    "take",
]


def _repr_items(items: list[Any]) -> list[Any]:
    return [it.id if not isinstance(it, Parallel) else it for it in items]


_Given = TypeVar("_Given")


def _alone(node: _Given, verb: str, run: Any, settings: dict[str, Any]) -> _Given:
    """``node`` given to ``step()``/``step_group()`` whole: refuse settings given beside it."""
    if run is not None or settings:
        given = ", ".join([*(["run"] if run is not None else []), *settings])
        raise TypeError(
            f"{verb}() got a {type(node).__name__} and settings ({given}): put the settings in the "
            f"{type(node).__name__}(...) and pass it alone, or use add()"
        )
    return node


#: what a container's lists hold: nodes and parallel blocks of nodes
Item = Union[Step, "StepGroup", "Stage", Parallel]
#: a node (``add()`` returns what it was given)
_Added = TypeVar("_Added", bound=Item)


class _Container(Drawable):
    """The builder methods shared by stages and step groups (and, for stages, pipelines)."""

    items: list[Any]
    rollback_items: list[Any]

    def _cursor(self) -> list[Any]:
        stack = self.__dict__.setdefault("_stack", [])
        return stack[-1] if stack else self.items

    def _push(self, target: list[Any]) -> None:
        self.__dict__.setdefault("_stack", []).append(target)

    def _pop(self) -> None:
        self.__dict__["_stack"].pop()

    def _pending(self) -> Parallel | None:
        block: Parallel | None = self.__dict__.get("_pending_block")
        return block

    def add(self, item: _Added) -> _Added:
        """Place a node at the cursor; a node with the same identifier is replaced in place."""
        target = self._cursor()
        pending = self._pending()
        if pending is not None and target is pending.items:
            if isinstance(item, Parallel):
                raise TypeError("parallel blocks cannot be nested: add the nodes themselves")
            seen = self.__dict__.setdefault("_pending_ids", set())
            if item.id in seen:
                place(target, item)
            else:
                target.append(item)
                seen.add(item.id)
            return item
        scope = target  # execution and rollback lists are separate scopes, as their FQNs are
        known = self._known_ids(scope)
        new_ids = item_ids(item)
        if known.isdisjoint(new_ids):  # the common case, O(1): a new node
            target.append(item)
            known.update(new_ids)
            self.__dict__["_known"][id(scope)] = (len(scope), known)
        else:  # a redefinition: replace in place (linear in the list, and rare)
            attach(scope, item)
            self.__dict__["_known"].pop(id(scope), None)
        return item

    def _known_ids(self, scope: list[Any]) -> set[str]:
        """The ids in one list of this container, cached while the list keeps its length."""
        caches = self.__dict__.setdefault("_known", {})
        cache = caches.get(id(scope))
        if cache is None or cache[0] != len(scope):
            cache = caches[id(scope)] = (len(scope), set(ids_of(scope)))
        ids: set[str] = cache[1]
        return ids

    def step(
        self,
        id: str | Step,
        run: Callable[..., Any] | str | None = None,
        *,
        name: str | None = None,
        when: Any = None,
        failure_strategies: Any = None,
        timeout: float | str | None = None,
        delegate_selectors: list[str] | None = None,
        strategy: Any = None,
        variables: dict[str, Any] | None = None,
        duration: Any = None,
        type: str | None = None,
        spec: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        outputs: list[str] | None = None,
        extra: dict[str, Any] | None = None,
        needs: list[str] | str | None = None,
    ) -> Step:
        """Add (or redefine) a step at the cursor and return it; a ready-made ``Step`` is added
        as it is (as :meth:`add` does), with no settings beside it.

        Args:
            id: the step's identifier (letters, digits, ``_``, ``$``; not starting with a digit).
            run: the body: a callable ``fn()``, ``fn(ctx)`` or ``fn(ctx, **inputs)``, code
                text, or None (a step that only takes its ``duration`` in a simulation).
            name: display name (default: ``id``).
            when: ``"Success"`` (default), ``"Failure"``, ``"All"``, a ``<+…>`` condition, or
                ``nbp.When(status, condition)``.
            failure_strategies: ``[nbp.OnFailure(error_types, action), …]`` or one action.
            timeout: seconds or a Harness duration (``"1m 30s"``).
            delegate_selectors: the delegates (Dask worker resources) that may run it.
            strategy: a looping strategy: ``nbp.Matrix(…)``, ``nbp.Repeat(…)``,
                ``nbp.Parallelism(n)``.
            variables: step variables.
            duration: what ``simulate()`` takes for this step: seconds, a Harness duration,
                or a sampler (``lambda rng: …``, a frozen scipy distribution).
            type, spec: a typed step as Harness data (``type="ShellScript"``).
            inputs: keyword arguments of the body; strings may embed ``<+…>`` expressions.
            outputs: names exported as output variables.
            extra: Harness keys the model has no field for (kept through YAML).
            needs: in a parallel block, the identifiers of the members it waits for (it starts
                when they have all ended, D14); GitHub/GitLab ``needs``.

        >>> s = Stage("build")
        >>> s.step("compile", duration="30s")
        Step('compile')
        >>> s.step(Step("lint"))
        Step('lint')
        """
        settings = dict(name=name, when=when, failure_strategies=failure_strategies, timeout=timeout,
                        delegate_selectors=delegate_selectors, strategy=strategy, variables=variables,
                        duration=duration, type=type, spec=spec, inputs=inputs, outputs=outputs,
                        extra=extra, needs=needs)  # fmt: skip
        if isinstance(id, Step):
            given = {k: v for k, v in settings.items() if v is not None}
            return self.add(_alone(id, "step", run, given))
        return self.add(Step(id, run, **settings))

    def step_group(
        self,
        id: str | StepGroup,
        *,
        name: str | None = None,
        when: Any = None,
        failure_strategies: Any = None,
        timeout: float | str | None = None,
        delegate_selectors: list[str] | None = None,
        strategy: Any = None,
        variables: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        needs: list[str] | str | None = None,
    ) -> StepGroup:
        """Add (or redefine) a step group at the cursor; use it as a context manager. A
        ready-made ``StepGroup`` is added as it is, with no settings beside it.

        The settings are a step's (see :meth:`step`) and apply to the group: its ``when``
        decides whether it runs, its failure strategies cover its steps, its timeout the
        whole group (``rules="current"``); ``needs`` too (in a parallel block, D14).

        >>> s = Stage("build")
        >>> with s.step_group("tests", when="All") as tests:
        ...     _ = tests.step("unit")
        >>> tests
        StepGroup('tests', ['unit'])
        """
        settings = dict(name=name, when=when, failure_strategies=failure_strategies, timeout=timeout,
                        delegate_selectors=delegate_selectors, strategy=strategy, variables=variables,
                        extra=extra, needs=needs)  # fmt: skip
        if isinstance(id, StepGroup):
            given = {k: v for k, v in settings.items() if v is not None}
            return self.add(_alone(id, "step_group", None, given))
        return self.add(StepGroup(id, **settings))

    @contextmanager
    def parallel(self) -> Iterator[Parallel]:
        """Nodes added inside the ``with`` block start together (one parallel block)."""
        if self._pending() is not None:
            raise TypeError("parallel blocks cannot be nested: close the open `with …parallel()` first")
        block = Parallel()
        self.__dict__["_pending_block"] = block
        self.__dict__["_pending_ids"] = set()
        self._push(block.items)
        try:
            yield block
        finally:
            self._pop()
            self.__dict__["_pending_block"] = None
        if block.items:
            self.add(block)

    @contextmanager
    def rollback(self) -> Iterator[list[Any]]:
        """Nodes added inside the ``with`` block go to the rollback list (R35, R3)."""
        self._push(self.rollback_items)
        try:
            yield self.rollback_items
        finally:
            self._pop()

    def remove(self, id: str) -> Step | StepGroup | Stage:
        """Remove the node with identifier ``id`` (from execution or rollback lists)."""
        found = remove_ids(self.items, {id}) + remove_ids(self.rollback_items, {id})
        self.__dict__.pop("_known", None)  # ids inside parallel blocks changed
        if not found:
            known = ", ".join(ids_of(self.items) + ids_of(self.rollback_items)) or "none"
            raise KeyError(f"no node {id!r} here; known: {known}")
        node: Step | StepGroup | Stage = found[0]
        return node

    def find(self, id: str) -> Step | StepGroup | Stage | None:
        """The node with identifier ``id`` directly in this container (or its parallel blocks)."""
        for it in [*self.items, *self.rollback_items]:
            for node in it.items if isinstance(it, Parallel) else (it,):
                if node.id == id:
                    found: Step | StepGroup | Stage = node
                    return found
        return None

    def walk(self, *, enter: Callable[[Visit], bool] | None = None) -> Iterator[Visit]:
        """Every stage, step group and step below this node, in pre-order (execution list, then
        rollback list; a parallel block's nodes in its place), each as a
        :class:`~notebook_pipelines.definition.tree.Visit`: ``node``, ``fqn``, ``parent``,
        ``ancestors``, ``depth``, ``phase``, ``block``, ``parallel``. ``enter(visit)`` returning
        False leaves a container's nodes out.

        >>> p = Pipeline("release")
        >>> with p.stage("build") as build:
        ...     _ = build.step("compile")
        >>> [(v.fqn, v.depth) for v in p.walk()]  # doctest: +NORMALIZE_WHITESPACE
        [('pipeline.stages.build', 1), ('pipeline.stages.build.spec.execution.steps.compile', 2)]

        See :mod:`notebook_pipelines.definition.tree`.
        """
        return walk(self, enter=enter)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


@dataclass(eq=True, repr=False)
class StepGroup(_Container, Settings):
    """A serial list of steps and parallel blocks of steps, with shared settings (R1–R7).

    ``rollback_items`` run when its failure strategy chooses ``StepGroupRollback`` (R3, R37).
    """

    #: where its children stand in an FQN: after its own, then ``.ID`` (execution, rollback)
    CHILD_KEYS: ClassVar[tuple[str, str]] = (".steps", ".rollbackSteps")

    id: str
    items: list[Any] = field(default_factory=list)
    rollback_items: list[Any] = field(default_factory=list)
    name: str | None = None
    when: Any = None
    failure_strategies: Any = None
    timeout: Any = None
    delegate_selectors: Any = None
    strategy: Any = None
    variables: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None
    needs: list[str] | str | None = None  # in a parallel block: the members it waits for (D14)

    def _own_fqn(self) -> str:
        return self.id  # its stage is not known here

    def _pipeline_for_display(self) -> Pipeline:
        return Pipeline(self.id, stages=[Stage(self.id, items=[self])], rules="current")

    def __repr__(self) -> str:
        return f"StepGroup({self.id!r}, {_repr_items(self.items)!r})"


@dataclass(eq=True, repr=False)
class Stage(_Container, Settings):
    """A stage: an execution list, a rollback list and stage-level settings.

    ``type`` is Harness's stage type (``Custom``, ``Deployment``, ``CI``…); ``resource`` is a
    key that keeps parallel stages on the same infrastructure from overlapping (D8, R13).
    """

    #: where its children stand in an FQN: after its own, then ``.ID`` (execution, rollback)
    CHILD_KEYS: ClassVar[tuple[str, str]] = (".spec.execution.steps", ".spec.execution.rollbackSteps")

    id: str
    items: list[Any] = field(default_factory=list)
    rollback_items: list[Any] = field(default_factory=list)
    name: str | None = None
    type: str = "Custom"
    when: Any = None
    failure_strategies: Any = None
    timeout: Any = None
    delegate_selectors: Any = None
    strategy: Any = None
    variables: dict[str, Any] | None = None
    resource: str | None = None
    spec: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None
    needs: list[str] | str | None = None  # in a parallel block: the members it waits for (D14)

    def _own_fqn(self) -> str:
        return f"pipeline.stages.{self.id}"

    def _pipeline_for_display(self) -> Pipeline:
        return Pipeline(self.id, stages=[self], rules="current")

    def __repr__(self) -> str:
        return f"Stage({self.id!r}, {_repr_items(self.items)!r})"


@dataclass(eq=True, repr=False)
class Pipeline(PipelineVerbs, _Container):
    """A pipeline: stages in order; stages in a ``parallel()`` block run side by side (R11).

    Args:
        id: the pipeline identifier (also its name unless ``name`` is given).
        stages: stages and ``Parallel`` blocks of stages, to build from plain objects.
        variables: pipeline variables (``<+pipeline.variables.NAME>``).
        rules: ``"classic"`` (no nested step groups, no group delegate selectors) or
            ``"current"`` (both allowed) — decision D1.
        timeout: a pipeline timeout (seconds or a Harness duration).
        barriers: the barriers that Barrier steps may name (R55): identifiers, or
            ``{"identifier": …, "name": …}`` (YAML ``flowControl.barriers`` counts too).
    """

    #: where its children stand in an FQN: after its own, then ``.ID`` (execution, rollback)
    CHILD_KEYS: ClassVar[tuple[str, str]] = (".stages", ".rollbackStages")  # a pipeline has no rollback list

    id: str
    stages: list[Any] = field(default_factory=list)
    name: str | None = None
    variables: dict[str, Any] | None = None
    rules: str = "classic"
    timeout: Any = None
    description: str | None = None
    extra: dict[str, Any] | None = None
    barriers: list[Any] | None = None

    @property
    def items(self) -> list[Any]:  # the builder's execution list is the stage list
        return self.stages

    @items.setter
    def items(self, stages: list[Any]) -> None:
        self.stages = stages

    @property
    def rollback_items(self) -> list[Any]:
        return []

    @rollback_items.setter
    def rollback_items(self, items: list[Any]) -> None:
        raise TypeError("a pipeline has no rollback list: add rollback steps to a stage")

    def _own_fqn(self) -> str:
        return "pipeline"

    @property
    def display_name(self) -> str:
        return self.name or self.id

    def stage(
        self,
        id: str,
        *,
        name: str | None = None,
        type: str = "Custom",
        when: Any = None,
        failure_strategies: Any = None,
        timeout: float | str | None = None,
        delegate_selectors: list[str] | None = None,
        strategy: Any = None,
        variables: dict[str, Any] | None = None,
        resource: str | None = None,
        spec: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        needs: list[str] | str | None = None,
    ) -> Stage:
        """Add (or redefine) a stage at the cursor; use it as a context manager.

        Args:
            id: the stage's identifier.
            name: display name (default: ``id``).
            type: Harness's stage type (``"Custom"``, ``"Deployment"``, ``"CI"``…).
            when, failure_strategies, timeout, delegate_selectors, strategy, variables: as on
                a step (:meth:`Stage.step`), for the whole stage; ``variables`` are read as
                ``<+stage.variables.NAME>``.
            resource: a key that keeps parallel stages on one infrastructure from
                overlapping: they queue in list order.
            spec: Harness's stage ``spec`` data beyond the execution list.
            extra: Harness keys the model has no field for (kept through YAML).
            needs: in a ``with p.parallel():`` block, the stages it waits for: it starts when
                they have all ended, not with the block (D14; GitHub ``jobs.<id>.needs``).

        >>> p = Pipeline("release")
        >>> with p.stage("deploy", variables={"region": "eu"}) as deploy:
        ...     _ = deploy.step("rollout")
        >>> deploy
        Stage('deploy', ['rollout'])
        """
        return self.add(
            Stage(id, name=name, type=type, when=when, failure_strategies=failure_strategies,
                  timeout=timeout, delegate_selectors=delegate_selectors, strategy=strategy,
                  variables=variables, resource=resource, spec=spec, extra=extra, needs=needs)
        )  # fmt: skip

    def step(self, *args: Any, **kwargs: Any) -> NoReturn:  # pragma: no cover - guidance only
        raise TypeError("steps belong to a stage: `with p.stage('build') as s: s.step(...)`")

    def step_group(self, *args: Any, **kwargs: Any) -> NoReturn:  # pragma: no cover - guidance only
        raise TypeError("steps belong to a stage: `with p.stage('build') as s: s.step(...)`")

    def rollback(self) -> NoReturn:  # pragma: no cover - guidance only
        raise TypeError("a pipeline has no rollback list: add rollback steps to a stage")

    def _pipeline_for_display(self) -> Pipeline:
        return self

    def __repr__(self) -> str:
        return f"Pipeline({self.id!r}, stages={_repr_items(self.stages)!r})"


Node = Union[Pipeline, Stage, StepGroup, Step]


def read_from_yaml(pipeline: Any) -> bool:
    """True for a pipeline that ``load_yaml`` read: its problems carry YAML fixes
    (:meth:`~notebook_pipelines.errors.Problem.for_yaml`), since its author edits YAML."""
    return getattr(pipeline, "__dict__", {}).get(SOURCE) == "yaml"


#: The key (in a pipeline's ``__dict__``, not a field: equality ignores it) that says where the
#: pipeline was read from; ``load_yaml`` sets it to ``"yaml"``.
SOURCE = "_source"
