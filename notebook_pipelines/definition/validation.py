"""Every structural rule that can be checked before a run, checked once, all problems at once.

Each problem names the node by its fully qualified name (as Harness writes it), the rule of
``SEMANTICS.md`` it breaks, and the fix. ``problems()`` returns the list; ``Pipeline.validate()``
(:func:`~.plan.validate`, which checks the ``<+…>`` references on the compiled plan too) raises
one ``DefinitionError`` that lists them all.

Values of the wrong type (a retry count of ``"two"``, ``variables=[1]``, a NaN timeout, a node
list that is not a list…) are problems like any other: checking never raises from inside, and
never lets such a value through to the plan or the engine. Every problem carries a fix.

>>> from notebook_pipelines.definition.model import Pipeline, Stage, StepGroup, Step
>>> p = Pipeline("p", stages=[Stage("1st"), Stage("b", items=[StepGroup("g", items=[StepGroup("h")])])])
>>> for problem in problems(p):
...     print(problem)  # doctest: +ELLIPSIS
pipeline.stages.1st: [R1] the identifier '1st' is not valid ... — fix: ...
pipeline.stages.1st: [R1] the stage has no steps — fix: add a step...
pipeline.stages.b.spec.execution.steps.g.steps.h: [R6/D1] a step group inside a step group ...
pipeline.stages.b.spec.execution.steps.g.steps.h: [R1] the step group has no steps — fix: ...
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import Problem
from .callables import call_problem, is_sampler, sampler_problem
from .depth import Limits, scalars_only
from .durations import MAX_SECONDS, DurationError, parse_duration
from .limits import MAX_IDENTIFIER, short
from .model import Parallel, Pipeline, Stage, Step, StepGroup, read_from_yaml
from .needs import NeedsChecks
from .settings_checks import IDENTIFIER, VARIABLE_TYPES, SettingChecks, number_value, variable_problem
from .tree import Visit

# IDENTIFIER, VARIABLE_TYPES, number_value, variable_problem: the vocabulary values are checked
# against (settings_checks'), named here too, where the package and users import them from
__all__ = [
    "IDENTIFIER",
    "RULE_SETS",
    "VARIABLE_TYPES",
    "number_value",
    "problems",
    "variable_problem",
]

RULE_SETS = ("classic", "current")


_YAML_KIND = {"Stage": "stage", "Step": "step", "StepGroup": "stepGroup"}


_UNTEMPLATE = "replace the template reference by the steps it stands for (templates are kept as data)"


def _plain(step: Step) -> bool:
    """True for a step with no setting at all beyond ``run``, ``name`` and ``duration``."""
    return (
        step.when is None
        and step.failure_strategies is None
        and step.timeout is None
        and step.delegate_selectors is None
        and step.strategy is None
        and not step.variables
        and step.type is None
        and step.spec is None
        and not step.inputs
        and not step.outputs
        and not step.extra
        and step.needs is None
        and (step.name is None or type(step.name) is str)
        and not is_sampler(step.duration)
    )


_SECONDS = (int, float)


def _sound(step: Step) -> bool:
    """True for a plain step (see :func:`_plain`) whose every value is surely valid: checked
    without generators or messages (most steps of a large pipeline). Any doubt returns False,
    and the full check (``_Checker._one``) says what is wrong, if anything."""
    ident, duration, run = step.id, step.duration, step.run
    return (
        type(ident) is str
        and len(ident) <= MAX_IDENTIFIER
        and IDENTIFIER.match(ident) is not None
        and (
            duration is None
            or (type(duration) in _SECONDS and 0 <= duration <= MAX_SECONDS)
            or (type(duration) is str and _readable(duration))
        )
        and _plain(step)
        and (run is None or type(run) is str or (callable(run) and not call_problem(run, [])))
    )


def _readable(text: str) -> bool:
    """True when ``text`` reads as a duration (``parse_duration`` remembers the texts it read)."""
    try:
        parse_duration(text)
    except DurationError:
        return False
    return True


def _template(node: Any) -> Any:
    """The templateRef of a node loaded from YAML as a template reference (kept in ``extra``)."""
    extra = getattr(node, "extra", None)
    template = extra.get("template") if isinstance(extra, dict) else None
    return template.get("templateRef", "?") if isinstance(template, dict) else template


def _kinds(container: Any) -> tuple[type, ...]:
    """What a container's lists may hold."""
    return (Stage,) if isinstance(container, Pipeline) else (Step, StepGroup)


def _what(container: Any) -> str:
    """How a message names a container's execution list."""
    return (
        "stages"
        if isinstance(container, Pipeline)
        else "a stage"
        if isinstance(container, Stage)
        else "a step group"
    )


_STAGES = (Stage,)


def problems(pipeline: Pipeline) -> list[Problem]:
    """Every problem in ``pipeline``, in definition order.

    One walk of the tree (:meth:`Pipeline.walk`, no recursion) checks each node against the
    limits on nesting (:mod:`~notebook_pipelines.definition.limits`) first, then against the
    rules; a pipeline beyond the limits reports only that (no rule is checked on a node beyond
    them). A list's own problems (not a list; a parallel block that is empty or holds no list)
    come with its container, before its nodes'. A pipeline read from YAML reports each fix in
    YAML terms.
    """
    found = _Checker(pipeline).check()
    return [problem.for_yaml() for problem in found] if read_from_yaml(pipeline) else found


class _Checker(SettingChecks):
    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        self.classic = pipeline.rules == "classic"
        self._needs = NeedsChecks()

    def check(self) -> list[Problem]:
        """The problems of the limits if any (only those), else those of the rules."""
        p = self.pipeline
        limits = Limits(p)
        rules = (
            [] if limits.found else [*self._pipeline(p), *self._shape(p.stages, "pipeline.stages", (Stage,))]
        )
        # every node, in definition order: the one walk of the tree. Identifiers are unique per
        # list; a node of a kind its list cannot hold is reported, and the rules do not look
        # below it (the limits do)
        seen: dict[tuple[int, str], set[str]] = {}  # per list: the identifiers met so far
        here: tuple[Any, ...] = ()  # the ancestors of the last list (one tuple per container)
        phase, scope = "", set()
        kinds: tuple[type, ...] = ()
        misplaced: set[int] = set()  # containers their lists cannot hold
        below_misplaced = False
        for visit in p.walk(enter=limits.enter):
            node, _, ancestors, in_phase, _, _ = visit
            if ancestors is not here or in_phase != phase:  # another list than the last
                here, phase, kinds = ancestors, in_phase, _kinds(ancestors[-1])
                scope = seen.setdefault((id(ancestors[-1]), phase), set())
                below_misplaced = bool(misplaced) and any(id(a) in misplaced for a in ancestors)
            if below_misplaced:
                limits.check(visit)  # the rules do not look here; the limits do
                continue
            if type(node) is Step and Step in kinds and _sound(node) and node.id not in scope:
                scope.add(node.id)  # most steps: nothing to report (no nested data either)
                continue
            if (not (type(node) is Step and scalars_only(node)) and limits.check(visit)) or limits.found:
                continue  # beyond the limits: only those are reported, no rule is checked
            if not isinstance(node, kinds):
                misplaced.add(id(node))
            rules.extend(self._one(visit, kinds, scope))
        return limits.found or rules

    def _pipeline(self, p: Pipeline) -> Iterator[Problem]:
        if p.rules not in RULE_SETS:
            yield Problem(
                "pipeline",
                "D1",
                f"unknown rule set {p.rules!r}",
                "use rules='classic' or 'current'",
                yaml_fix="load with rules='classic' or 'current' (CLI: --rules classic|current)",
            )
        yield from self._identifier("pipeline", p.id, "pipeline")
        yield from self._text("pipeline", "name", p.name, "R1")
        yield from self._text("pipeline", "description", p.description, "R1")
        yield from self._duration("pipeline", "timeout", p.timeout)
        yield from self._variables("pipeline", p.variables, "R43", p.extra)
        if not p.stages:
            yield Problem(
                "pipeline",
                "R11",
                "the pipeline has no stages",
                "add one: `with p.stage('build'):`",
                yaml_fix="add a stage under `stages:`: `- stage: {identifier: build, type: Custom, "
                "spec: {execution: {steps: [...]}}}`",
            )

    # -- lists --------------------------------------------------------------------------------
    def _shape(self, items: Any, prefix: str, kinds: tuple[Any, ...]) -> Iterator[Problem]:
        """What is wrong with a list itself: not a list, a parallel block of no list or of no
        node (its nodes are checked as the walk meets them)."""
        if not isinstance(items, list | tuple):
            owner, key = prefix.rsplit(".", 1)  # …stages / …steps / …rollbackSteps
            owner = owner.removesuffix(".spec.execution")
            allowed = " and ".join(f"{k.__name__}s" for k in kinds)
            fix = "wrap the nodes in a list: [...]"
            yaml_fix = f"write `{key}:` as a list: a '- ' before each entry"
            message = f"{key} must be a list of {allowed}, got {short(items)}"
            yield Problem(owner, "R4", message, fix, yaml_fix=yaml_fix)
            return
        for block, item in enumerate(items):
            if isinstance(item, Parallel) and not isinstance(item.items, list | tuple):
                fix = "write Parallel([node, node, ...])"
                yield Problem(
                    f"{prefix}[{block}]",
                    "R5",
                    f"a parallel block of {short(item.items)}",
                    fix,
                    yaml_fix="write `- parallel:` followed by a list of entries",
                )
            elif isinstance(item, Parallel) and not item.items:  # named as the plan names blocks
                yield Problem(
                    f"{prefix}[{block}]", "R5", "an empty parallel block", "add nodes to it or remove it"
                )

    def _one(self, visit: Visit, kinds: tuple[Any, ...], seen: set[str]) -> Iterator[Problem]:
        item, fqn = visit.node, visit.fqn
        what = _what(visit.parent) if visit.phase == "execution" else "a rollback list"
        ident = getattr(item, "id", None)
        if not isinstance(item, kinds):
            allowed = " or ".join(k.__name__ for k in kinds)
            in_yaml = " or ".join(f"`- {_YAML_KIND[k.__name__]}:`" for k in kinds)
            yield Problem(
                fqn,
                "R4",
                f"a {type(item).__name__} cannot stand in {what}",
                f"use a {allowed}",
                yaml_fix=f"use {in_yaml} entries",
            )
            return
        if isinstance(ident, str) and ident in seen:
            yield Problem(
                fqn, "R1", f"the identifier {ident!r} is used twice in {what}", "rename one of them"
            )
        if isinstance(ident, str):
            seen.add(ident)
        yield from self._identifier(fqn, ident, type(item).__name__.lower())
        yield from self._text(fqn, "name", item.name, "R1")
        if item.needs is not None:  # members of a parallel block waiting for siblings (D14)
            yield from self._needs.problems(visit)
        in_group = sum(isinstance(a, StepGroup) for a in visit.ancestors)  # the groups around it
        if isinstance(item, Stage):
            yield from self._stage(item, fqn)
        elif isinstance(item, StepGroup):
            yield from self._group(item, fqn, in_group)
        else:
            yield from self._step(item, fqn, in_group)

    # -- nodes --------------------------------------------------------------------------------
    def _stage(self, stage: Stage, fqn: str) -> Iterator[Problem]:
        yield from self._settings(stage, fqn, "stage", in_group=0)
        yield from self._text(fqn, "type", stage.type, "R9")
        yield from self._spec(fqn, stage.spec)
        yield from self._text(fqn, "resource", stage.resource, "D8")
        yield from self._contents(
            stage, fqn, "stage", 0,
            yaml_fix="add a step under `spec.execution.steps`: `- step: {identifier: name, "
            "type: ShellScript, ...}`",
        )  # fmt: skip

    def _group(self, group: StepGroup, fqn: str, in_group: int) -> Iterator[Problem]:
        if in_group and self.classic:
            yield Problem(
                fqn,
                "R6/D1",
                "a step group inside a step group is not allowed under the classic rules",
                "put its steps in the outer group (parallel blocks are allowed), or allow nesting "
                "with Pipeline(..., rules='current')",
                yaml_fix="move its steps into the outer group (parallel blocks are allowed), or load with "
                "rules='current' (CLI: --rules current) to allow nesting",
            )
        if self.classic and group.delegate_selectors:
            yield Problem(
                fqn,
                "R62/D1",
                "step groups take no delegate selectors under the classic rules",
                "set delegate_selectors on each step, or use rules='current'",
                yaml_fix="set `delegateSelectors` on each step, or load with rules='current' "
                "(CLI: --rules current)",
            )
        if self.classic and group.timeout is not None:
            yield Problem(
                fqn,
                "R60/D10",
                "step groups take no timeout under the classic rules",
                "set timeouts on the steps",
            )
        yield from self._settings(group, fqn, "step group", in_group + 1)
        yield from self._contents(
            group, fqn, "step group", in_group + 1,
            yaml_fix="add `steps:` with a step: `- step: {identifier: name, type: ShellScript, ...}`",
        )  # fmt: skip

    def _contents(
        self, node: Stage | StepGroup, fqn: str, what: str, in_group: int, yaml_fix: str
    ) -> Iterator[Problem]:
        """A stage's or step group's lists: none empty (or an unresolved template), then each
        checked (their FQNs as :func:`~.tree.walk` names them: ``CHILD_KEYS``)."""
        if not node.items and _template(node):
            text = f"the {what} is template {_template(node)!r}, which is not resolved"
            yield Problem(fqn, "R1", text, _UNTEMPLATE)
        elif not node.items:
            variable = "stage" if isinstance(node, Stage) else "group"
            add = f"add a step: `{variable}.step('name', run=...)`"
            yield Problem(fqn, "R1", f"the {what} has no steps", add, yaml_fix=yaml_fix)
        kinds = (Step, StepGroup)
        steps, rollback = type(node).CHILD_KEYS
        yield from self._shape(node.items, f"{fqn}{steps}", kinds)
        yield from self._shape(node.rollback_items, f"{fqn}{rollback}", kinds)

    def _step(self, step: Step, fqn: str, in_group: int) -> Iterator[Problem]:
        if _plain(step):  # most steps: no setting but a duration and a body; nothing else to check
            if not (
                step.duration is None
                or (type(step.duration) in (int, float) and 0 <= step.duration <= MAX_SECONDS)
            ):
                yield from self._duration(fqn, "duration", step.duration)
            if step.run is not None and not (callable(step.run) or isinstance(step.run, str)):
                yield Problem(
                    fqn, "R4", f"run={short(step.run)} is neither a callable nor code text", "pass a function"
                )
            elif callable(step.run) and (found := call_problem(step.run, [])):
                yield Problem(fqn, "R43", *found)
            return
        yield from self._settings(step, fqn, "step", in_group)
        if is_sampler(step.duration):  # what simulate(durations=...) takes for a step
            reason = sampler_problem(step.duration)
            if reason:
                fix = "write it as lambda rng: … (e.g. lambda rng: rng.lognormal(3, 0.25))"
                yield Problem(fqn, "R59", f"duration={step.duration!r}: {reason}", fix)
        else:
            yield from self._duration(fqn, "duration", step.duration)
        yield from self._inputs(fqn, step.inputs)
        yield from self._outputs(fqn, step.outputs)
        yield from self._text(fqn, "type", step.type, "R4")
        yield from self._spec(fqn, step.spec)
        if step.type == "ShellScript":
            yield from self._shell_script(fqn, step.spec)
        if step.run is not None and not (callable(step.run) or isinstance(step.run, str)):
            yield Problem(
                fqn, "R4", f"run={short(step.run)} is neither a callable nor code text", "pass a function"
            )
        elif callable(step.run):
            names = [n for n in step.inputs or ()] if isinstance(step.inputs, Mapping) else []
            if all(isinstance(n, str) and n.isidentifier() for n in names):  # else reported above
                found = call_problem(step.run, names)
                if found:
                    yield Problem(fqn, "R43", *found)
