"""Compile a valid definition into the immutable plan that the renderer and the engine walk.

A plan is a tree of :class:`PlanNode`. Containers (pipeline, stage, step group) hold a serial
tuple ``items`` whose entries are nodes or ``parallel`` nodes (whose ``items`` start
together), and a ``rollback`` tuple of the same shape. Every node carries its fully qualified
name exactly as Harness writes it, its position (``block``: index in the parent's serial
list), and its *effective* settings: a step's ``when`` is its own or its innermost group's
(R7, R31); its failure strategies are the chain step → groups → stage → default (R22, R24).

>>> from notebook_pipelines.definition.model import Pipeline
>>> p = Pipeline("release")
>>> with p.stage("build") as b:
...     with b.step_group("tests") as t:
...         _ = t.step("unit")
>>> plan = compile_plan(p)
>>> [n.fqn for n in plan.nodes]  # doctest: +NORMALIZE_WHITESPACE
['pipeline', 'pipeline.stages.build', 'pipeline.stages.build.spec.execution.steps.tests',
 'pipeline.stages.build.spec.execution.steps.tests.steps.unit']
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..errors import DefinitionError, Problem
from .callables import is_sampler, takes_ctx
from .depth import depth_problems
from .durations import parse_duration
from .failure import MarkAsFailure, OnFailure, When, coerce_strategies, coerce_when
from .model import Parallel, Pipeline, Stage, Step, StepGroup, read_from_yaml
from .needs import compile_needs
from .strategies import coerce_strategy
from .traits import Traits, TraitsFound
from .validation import problems as structural_problems

__all__ = [
    "DEFAULT_STAGE_STRATEGY",
    "KINDS",
    "Plan",
    "PlanNode",
    "choose",
    "choose_action",
    "compile_plan",
    "validate",
]

#: The stage's default entry (R24): a failure that no strategy catches fails the node and lets
#: the following nodes' ``when`` decide (MarkAsFailure, E9).
DEFAULT_STAGE_STRATEGY = (OnFailure(("AllErrors",), MarkAsFailure()),)
KINDS = ("pipeline", "stage", "step_group", "step")


class PlanNode:
    """One node of a plan. Plain attributes; treat as read-only."""

    # Class-level defaults; a node stores only what differs (fast to build 100,000 of them).
    # Every node has its own kind, id, name, fqn and phase.
    kind: str
    id: str
    name: str
    fqn: str
    phase: str
    parent: PlanNode | None = None
    stage: PlanNode | None = None
    group: PlanNode | None = None
    #: the index of its entry in the parent's list (None: the pipeline)
    block: int | None = None
    index: int = 0
    depth: int = 0
    items: tuple[PlanNode, ...] = ()
    rollback: tuple[PlanNode, ...] = ()
    when: When | None = None
    #: the levels of failure strategies: its own, its groups' (innermost first), its stage's
    strategies: Any = None
    timeout: float | None = None
    body: Callable[..., Any] | str | None = None
    #: seconds, or a sampler (``simulate()`` draws from it)
    duration: Any = None
    type: str | None = None
    spec: Any = None
    takes_ctx: bool = False
    variables: Mapping[str, Any] | None = None
    inputs: Mapping[str, Any] | None = None
    outputs: tuple[str, ...] | None = None
    delegate_selectors: Any = None
    resource: str | None = None
    #: the definition node it was compiled from
    source: Any = None
    #: the node's looping strategy (``looping.Matrix`` / ``Repeat`` / ``Parallelism``), or None.
    #: The engine's copies of a looped node for one iteration (made while running, R46) have
    #: ``loop`` (the :class:`~.looping.Iteration`), ``looped`` (the strategy node) and, like
    #: every node copied with them, ``origin`` (the plan node they copy).
    strategy: Any = None
    loop: Any = None
    looped: PlanNode | None = None
    origin: PlanNode | None = None
    iteration: Any = None
    #: a Barrier step's ``barrierRef`` (R55), else None
    barrier: Any = None
    #: a member of a parallel block: the positions in the block of the members it needs (D14)
    needs: tuple[int, ...] = ()
    #: a parallel block whose members have needs: a topological order of their positions, else None
    order: tuple[int, ...] | None = None

    def __init__(self, kind: str, **attrs: Any):
        self.kind = kind
        for name, value in attrs.items():  # not __dict__.update: that would make the instance
            setattr(self, name, value)  # keep a dict of its own, slower to build and to read

    @property
    def is_container(self) -> bool:
        return self.kind in ("pipeline", "stage", "step_group")

    def walk(self) -> Iterator[PlanNode]:
        """This node and every node below it (execution, then rollback), in plan order."""
        yield self
        for item in (*(self.items or ()), *(self.rollback or ())):
            if item.kind == "parallel":
                for child in item.items:
                    yield from child.walk()
            else:
                yield from item.walk()

    def __repr__(self) -> str:
        return f"<PlanNode {self.kind} {self.fqn}>"


@dataclass(frozen=True)
class Plan:
    """The compiled pipeline: ``root`` and every node in pre-order (``nodes[i].index == i``)."""

    pipeline: Pipeline
    root: PlanNode
    nodes: tuple[PlanNode, ...]
    #: ``by_fqn`` when given (``Plan(pipeline, root, nodes, by_fqn)``); else made on first use
    _by_fqn: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def by_fqn(self) -> dict[str, Any]:
        """Every node by its FQN (made on first use: a simulation of plain steps never needs it,
        and 100,000 FQNs take ~20 ms to index)."""
        found = self._by_fqn
        if found is None:
            found = {n.fqn: n for n in self.nodes}
            object.__setattr__(self, "_by_fqn", found)
        return found

    def inside_loops(self) -> dict[int, int]:
        """``{node index: index of the looped node it is inside}`` for every node strictly inside
        a node with a looping strategy (the outermost one); empty without strategies (cached)."""
        cached = self.__dict__.get("_inside_loops")
        if cached is None:
            cached = {}
            for node in self.nodes:
                if node.strategy is not None and node.index not in cached:
                    for below in node.walk():
                        if below is not node:
                            cached.setdefault(below.index, node.index)
            object.__setattr__(self, "_inside_loops", cached)
        return cached

    def traits(self) -> Traits:
        """The plan's :class:`Traits` (from the compile; else found with one pass, cached)."""
        cached: Traits | None = self.__dict__.get("_traits")
        if cached is None:
            traits = TraitsFound()
            for node in self.nodes:
                if node.kind != "step":
                    traits.readers.append(node)
                    traits.looped = traits.looped or node.strategy is not None
                    continue
                when = node.when
                traits.step(
                    node,
                    bool(
                        (when is not None and when.condition is not None)
                        or node.inputs
                        or node.spec is not None
                        or node.strategy is not None
                        or _declared(node.strategies)
                    ),
                )
            cached = traits.done()
            object.__setattr__(self, "_traits", cached)
        return cached

    @property
    def steps(self) -> list[PlanNode]:
        return [n for n in self.nodes if n.kind == "step"]

    def __len__(self) -> int:
        return len(self.nodes)


@contextlib.contextmanager
def paused_gc() -> Any:
    """Pause the cyclic garbage collector while many long-lived objects are made at once.

    A large simulation or plan creates hundreds of thousands of objects that all live until it
    ends; each automatic collection would walk all of them again (half the time of a wide
    100,000-step simulation). Reference counting still frees what dies. Not used for real runs,
    whose step bodies are the user's code.

    After a large batch (``BATCH`` objects or more), the objects made are moved to the oldest
    generation (``gc.freeze()`` then ``gc.unfreeze()``: a list splice, no walk) rather than
    left young, where the first collection after the pause would walk them all (~80 ms for a
    100,000-step simulation, a tenth of its time, and more per object the more there are: the
    walk misses the caches). They are looked at again by the next full collection, as every
    long-lived object is. Skipped when objects are frozen already (``gc.freeze()`` before a
    fork, say): ``unfreeze`` would release those too.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if gc.get_count()[0] >= BATCH and not gc.get_freeze_count():
            gc.freeze()
            gc.unfreeze()
        gc.enable()


#: objects made in one :func:`paused_gc` from which they are moved to the oldest generation
BATCH = 50_000


def as_plan(pipeline: Any) -> Plan:
    """The compiled plan of ``pipeline`` (a Pipeline is validated and compiled; a Plan is kept).

    ``run()`` and ``simulate()`` take either; pass a plan to run or simulate many times without
    compiling each time.
    """
    if isinstance(pipeline, Plan):
        return pipeline
    if hasattr(pipeline, "plan"):
        plan: Plan = pipeline.plan()
        return plan
    raise TypeError(f"run() or simulate() takes a Pipeline or a Plan, not {type(pipeline).__name__}")


def validate(pipeline: Pipeline) -> None:
    """Raise one ``DefinitionError`` listing every problem, or return None when valid
    (``Pipeline.validate()``).

    Everything ``run()`` and ``simulate()`` check before starting is checked: the structural
    rules (:mod:`.validation`), then every ``<+…>`` reference against the compiled plan (R45, D13).
    """
    compile_plan(pipeline)


def compile_plan(pipeline: Pipeline, check: bool = True) -> Plan:
    """Validate ``pipeline`` (unless ``check=False``) and compile it into a :class:`Plan`.

    Checking is in two steps: the structural rules (``validation.problems``), then, on the
    compiled plan, every ``<+…>`` reference (``references.static_problems``, R45, D13). Both
    are reported in one pass: when the structure has problems, the references are still
    checked wherever the pipeline can be compiled anyway, so one ``DefinitionError`` lists
    every problem there is. Even with ``check=False`` the nesting limits
    (``limits.depth_problems``) are checked first: compiling recurses once per level.
    """
    if check:
        found = structural_problems(pipeline)
        if found:
            more = [] if depth_problems(pipeline) else _references_despite(pipeline, found)
            raise DefinitionError(_as_written(pipeline, [*found, *more]))
    else:  # the builder recurses: a definition beyond the nesting limits is refused even so
        found = depth_problems(pipeline)
        if found:
            raise DefinitionError(_as_written(pipeline, found))
    builder = _Builder()
    with paused_gc():
        root = builder.pipeline(pipeline)
    plan = builder.plan(pipeline, root)
    if check:
        from .barriers import barrier_problems
        from .looping import loop_problems
        from .references import static_problems

        found = static_problems(plan) + barrier_problems(plan)
        if plan.traits().looped:  # known from the compile: no pass over the nodes
            found += loop_problems(plan)
        if found:
            raise DefinitionError(_as_written(pipeline, found))
    return plan


def _as_written(pipeline: Pipeline, problems: list[Problem]) -> list[Problem]:
    """Problems with fixes in the pipeline's own language: YAML for one read from YAML."""
    return [p.for_yaml() for p in problems] if read_from_yaml(pipeline) else problems


def _duration(value: Any) -> Any:
    """Seconds of a declared duration, or the sampler itself (``simulate()`` draws from it)."""
    kind = type(value)
    if kind is float or kind is int or kind is str or value is None:  # not a sampler: no lookups
        return parse_duration(value)
    return value if is_sampler(value) else parse_duration(value)


def _unset_on_error(read: Any, unset: Any = None) -> Any:
    """``read``, with a value it cannot read taken as ``unset`` (validation reports the value)."""

    def lenient(value: Any) -> Any:
        try:
            return read(value)
        except Exception:  # any value at all may come in; validation names it
            return unset

    return lenient


def _references_despite(pipeline: Pipeline, found: list[Problem]) -> list[Problem]:
    """The reference problems of a pipeline whose structure has ``found`` problems, where it
    compiles at all (a value that cannot be read, such as a timeout of ``"soon"``, stops the
    compiler: then the references wait until the structure is fixed)."""
    from .references import static_problems

    try:
        with paused_gc():
            builder = _Builder(lenient=True)
            root = builder.pipeline(pipeline)
        more = static_problems(builder.plan(pipeline, root))
    except Exception:  # an invalid structure may break the compiler anywhere
        return []
    seen = {(p.fqn, p.rule, p.message) for p in found}
    return [p for p in more if (p.fqn, p.rule, p.message) not in seen]


def _declared(strategies: Any) -> bool:
    """Whether a chain of failure strategies holds any declared entry (the stage's default
    entry, R24, reads nothing)."""
    return bool(strategies) and any(level and level is not DEFAULT_STAGE_STRATEGY for level in strategies)


class _Builder:
    def __init__(self, lenient: bool = False) -> None:
        self.nodes: list[PlanNode] = []
        self.traits = TraitsFound()
        self.needs = False  # whether a member of the parallel block being made may have needs
        self.ctx: dict[int, bool] = {}  # takes_ctx of each body seen, by id (the pipeline holds them)
        # How settings are read: strictly (a valid pipeline); or, to check the references of
        # an invalid one, with a value that cannot be read taken as unset.
        self.seconds = _unset_on_error(_duration) if lenient else _duration
        self.when = _unset_on_error(coerce_when) if lenient else coerce_when
        self.strategies = _unset_on_error(coerce_strategies, ()) if lenient else coerce_strategies
        self.mapping = _unset_on_error(dict, {}) if lenient else dict
        self.names = _unset_on_error(tuple, ()) if lenient else tuple
        self.strategy = _unset_on_error(coerce_strategy) if lenient else coerce_strategy

    def _new(self, kind: str, **attrs: Any) -> PlanNode:
        node = PlanNode(kind, index=len(self.nodes), **attrs)
        self.nodes.append(node)
        self.traits.readers.append(node)  # a container: read by the reference checks (few)
        return node

    def plan(self, pipeline: Pipeline, root: PlanNode) -> Plan:
        """The :class:`Plan` of the nodes made, its traits known."""
        plan = Plan(pipeline, root, tuple(self.nodes))
        object.__setattr__(plan, "_traits", self.traits.done())
        return plan

    def pipeline(self, p: Pipeline) -> PlanNode:
        root = self._new(
            "pipeline",
            id=p.id,
            name=p.display_name,
            fqn="pipeline",
            phase="execution",
            depth=0,
            timeout=self.seconds(p.timeout),
            variables=self.mapping(p.variables or {}),
            source=p,
            block=None,
        )
        root.items = self._items(p.stages, root, "pipeline.stages", "execution", ctx=_Ctx(root))
        root.rollback = ()
        return root

    def _items(
        self, items: list[Any], parent: PlanNode, prefix: str, phase: str, ctx: _Ctx
    ) -> tuple[Any, ...]:
        out = []
        for block, item in enumerate(items):
            if isinstance(item, Parallel):
                par = PlanNode("parallel", fqn=f"{prefix}[{block}]", parent=parent, block=block, phase=phase)
                par.id, par.name, par.depth = f"parallel{block}", "parallel", parent.depth + 1
                par.stage, par.group = parent.stage if parent.kind != "stage" else parent, parent.group
                step, node = self._step, self._node  # most children are steps: no dispatch call
                outer, self.needs = self.needs, False  # set by a member that may have needs (a group too)
                par.items = tuple(
                    [  # a list comprehension: no generator to resume per child
                        step(child, parent, prefix, phase, block, ctx)
                        if type(child) is Step
                        else node(child, parent, prefix, phase, block, ctx)
                        for child in item.items
                    ]
                )
                par.rollback = ()
                flagged, self.needs = self.needs, outer
                dag = compile_needs(item.items) if flagged else None  # members waiting for siblings (D14)
                if dag is not None:
                    for member, needs in zip(par.items, dag[0]):
                        member.needs = needs
                    par.order = dag[1]
                out.append(par)
            else:
                out.append(self._node(item, parent, prefix, phase, block, ctx))
        return tuple(out)

    def _step(self, item: Step, parent: PlanNode, prefix: str, phase: str, block: int, ctx: _Ctx) -> PlanNode:
        """The hot path of compiling (most nodes are steps): plain attribute stores, shared
        defaults, each setting of the step read once; notes the plan's :class:`Traits`."""
        node = _new_node(PlanNode)  # no __init__: the attributes are set here
        node.kind = "step"
        node.index = len(self.nodes)
        self.nodes.append(node)
        ident, when, run, kind, spec, inputs = item.id, item.when, item.run, item.type, item.spec, item.inputs
        node.id, node.name, node.fqn, node.source = ident, item.name or ident, f"{prefix}.{ident}", item
        node.parent, node.block, node.phase, node.depth = parent, block, phase, ctx.depth
        node.stage, node.group = ctx.stage, ctx.group
        node.when = (self.when(when) if when is not None else None) or ctx.when or _SUCCESS
        traits = self.traits
        if item.timeout is not None:
            node.timeout = self.seconds(item.timeout)
        if item.duration is not None:
            node.duration = seconds = self.seconds(item.duration)
            if type(seconds) is not float:
                traits.samplers = True
        elif kind == "Wait" and isinstance(spec, dict) and spec.get("duration") is not None:
            node.duration = _unset_on_error(parse_duration)(spec["duration"])  # simulated: its wait
        if run is not None:
            node.body = run
            if inputs:
                node.takes_ctx = takes_ctx(run, inputs)
            else:  # many steps share a body: its answer once per compile (the pipeline holds it)
                known = self.ctx.get(id(run))
                if known is None:
                    known = self.ctx[id(run)] = takes_ctx(run, ())
                node.takes_ctx = known
        elif kind is None:
            traits.sketch = True
        if kind is not None or spec is not None:  # else the class defaults (None)
            node.type, node.spec = kind, spec
            if spec is not None:
                traits.outputs = True  # a spec may declare outputVariables
            if kind == "Barrier" and isinstance(spec, dict):
                node.barrier = spec.get("barrierRef")
        node.variables = self.mapping(item.variables) if item.variables else _EMPTY
        node.inputs = self.mapping(inputs) if inputs else _EMPTY
        if item.outputs:
            node.outputs = self.names(item.outputs)
            traits.outputs = True
        else:
            node.outputs = ()
        node.delegate_selectors = item.delegate_selectors or ctx.selectors
        own = self.strategies(item.failure_strategies) if item.failure_strategies is not None else ()
        node.strategies = (own, *ctx.strategies) if own or not ctx.step_chain else ctx.step_chain
        if item.needs is not None:
            self.needs = True
        strategy = item.strategy
        if strategy is not None:
            node.strategy = self.strategy(strategy)
            traits.looped = True
        if ctx.reads or when is not None or inputs or spec is not None or strategy is not None or own:
            traits.readers.append(node)  # it may read a reference (most steps do not)
        return node

    def _node(self, item: Any, parent: PlanNode, prefix: str, phase: str, block: int, ctx: _Ctx) -> PlanNode:
        if isinstance(item, Step):
            return self._step(item, parent, prefix, phase, block, ctx)
        self.needs = True  # a group in a parallel block: compile_needs looks at the members itself
        fqn = f"{prefix}.{item.id}"
        common = dict(
            id=item.id,
            name=item.display_name,
            fqn=fqn,
            parent=parent,
            block=block,
            phase=phase,
            depth=parent.depth + 1,
            source=item,
        )
        if isinstance(item, Stage):
            node = self._new(
                "stage",
                when=self.when(item.when) or When("Success"),
                timeout=self.seconds(item.timeout),
                strategies=(self.strategies(item.failure_strategies), DEFAULT_STAGE_STRATEGY),
                variables=self.mapping(item.variables or {}),
                delegate_selectors=item.delegate_selectors,
                resource=item.resource,
                type=item.type,
                spec=item.spec,
                **common,
            )
            node.stage, node.group = node, None
            if item.strategy is not None:
                node.strategy = self.strategy(item.strategy)
                self.traits.looped = True
            inner = _Ctx(node, strategies=node.strategies, selectors=item.delegate_selectors)
            node.items = self._items(item.items, node, f"{fqn}.spec.execution.steps", phase, inner)
            node.rollback = self._items(
                item.rollback_items, node, f"{fqn}.spec.execution.rollbackSteps", "rollback", inner
            )
            return node
        stage = parent if parent.kind == "stage" else parent.stage
        if isinstance(item, StepGroup):
            when = self.when(item.when)
            node = self._new(
                "step_group",
                when=when or ctx.when or When("Success"),
                timeout=self.seconds(item.timeout),
                variables=self.mapping(item.variables or {}),
                delegate_selectors=item.delegate_selectors or ctx.selectors,
                **common,
            )
            node.stage, node.group = stage, node
            if item.strategy is not None:
                node.strategy = self.strategy(item.strategy)
                self.traits.looped = True
            node.strategies = (self.strategies(item.failure_strategies), *ctx.strategies)
            inner = _Ctx(
                node, when=when or ctx.when, strategies=node.strategies, selectors=node.delegate_selectors
            )
            node.items = self._items(item.items, node, f"{fqn}.steps", phase, inner)
            node.rollback = self._items(item.rollback_items, node, f"{fqn}.rollbackSteps", "rollback", inner)
            return node
        raise TypeError(f"{fqn}: a {type(item).__name__} cannot be compiled (validation refuses it)")


class _Ctx:
    """What a container hands down to its children while compiling."""

    __slots__ = ("depth", "group", "node", "reads", "selectors", "stage", "step_chain", "strategies", "when")

    def __init__(
        self,
        node: PlanNode,
        when: When | None = None,
        strategies: tuple[Any, ...] = (),
        selectors: Any = None,
    ):
        self.node, self.when, self.strategies, self.selectors = node, when, strategies, selectors
        # what every step directly in ``node``'s lists has in common
        self.depth = node.depth + 1
        self.stage = node if node.kind == "stage" else node.stage
        self.group = node if node.kind == "step_group" else None
        # the chain of a step without strategies of its own, shared by all such steps
        self.step_chain = ((), *strategies) if strategies else None
        # whether its steps may read a reference whatever their own settings: a condition
        # they inherit, failure strategies (retry conditions) declared around them
        self.reads = (when is not None and when.condition is not None) or _declared(strategies)


_SUCCESS = When("Success")
_new_node = object.__new__
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def choose_action(node: PlanNode, error_type: str) -> Any:
    """The action for ``error_type`` on ``node``: first match in the nearest level (R22, R23)."""
    return choose(node, error_type)[0]


def choose(node: PlanNode, error_type: str) -> tuple[Any, PlanNode]:
    """The action for ``error_type`` on ``node`` and the node whose strategy chose it.

    The levels of ``node.strategies`` belong, in order, to the node itself, its step groups
    from the innermost out, and its stage (then the stage's default entry, R24). Group-level
    actions (StepGroupRollback, RetryStepGroup) act on the group that declared them.
    """
    owners = [node]
    cur = node.parent
    while cur is not None and cur.kind == "step_group":
        owners.append(cur)
        cur = cur.parent
    owners.append(node.stage if node.stage is not None else node)
    for owner, level in zip(owners, node.strategies):
        for entry in level:
            if entry.matches(error_type):
                return entry.action, owner
    return DEFAULT_STAGE_STRATEGY[0].action, owners[-1]
