"""Every structural rule that can be checked before a run, checked once, all problems at once.

Each problem names the node by its fully qualified name (as Harness writes it), the rule of
``SEMANTICS.md`` it breaks, and the fix. ``validate()`` raises one ``DefinitionError`` that
lists them all; ``problems()`` returns the list.

>>> from notebook_pipelines.model import Pipeline, Stage, StepGroup, Step
>>> p = Pipeline("p", stages=[Stage("1st"), Stage("b", items=[StepGroup("g", items=[StepGroup("h")])])])
>>> for problem in problems(p):
...     print(problem)  # doctest: +ELLIPSIS
pipeline.stages.1st: [R1] the identifier '1st' is not valid ... — fix: ...
pipeline.stages.1st: [R1] the stage has no steps — fix: add a step...
pipeline.stages.b.spec.execution.steps.g.steps.h: [R6/D1] a step group inside a step group ...
pipeline.stages.b.spec.execution.steps.g.steps.h: [R1] the step group has no steps — fix: ...
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from .durations import DurationError, parse_duration
from .errors import DefinitionError, Problem
from .failure import (
    ERROR_TYPES,
    STATUS_CHOICES,
    ManualIntervention,
    Retry,
    RetryStepGroup,
    StepGroupRollback,
    StrategyError,
    coerce_strategies,
    coerce_when,
)
from .model import Parallel, Pipeline, Stage, Step, StepGroup

__all__ = ["IDENTIFIER", "RULE_SETS", "problems", "validate"]

#: Harness identifiers: letters, digits, ``_`` and ``$``; not starting with a digit (R1).
IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
RULE_SETS = ("classic", "current")


_UNTEMPLATE = "replace the template reference by the steps it stands for (templates are kept as data)"


def _template(node: Any) -> Any:
    """The templateRef of a node loaded from YAML as a template reference (kept in ``extra``)."""
    template = (getattr(node, "extra", None) or {}).get("template")
    return template.get("templateRef", "?") if isinstance(template, dict) else template


def validate(pipeline: Pipeline) -> None:
    """Raise one ``DefinitionError`` listing every problem, or return None when valid."""
    found = problems(pipeline)
    if found:
        raise DefinitionError(found)


def problems(pipeline: Pipeline) -> list[Problem]:
    """Every problem in ``pipeline``, in definition order."""
    return list(_Checker(pipeline).run())


class _Checker:
    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        self.classic = pipeline.rules == "classic"

    def run(self) -> Iterator[Problem]:
        p = self.pipeline
        if p.rules not in RULE_SETS:
            yield Problem(
                "pipeline", "D1", f"unknown rule set {p.rules!r}", "use rules='classic' or 'current'"
            )
        yield from self._identifier("pipeline", p.id, "pipeline")
        yield from self._duration("pipeline", "timeout", p.timeout)
        if not p.stages:
            yield Problem(
                "pipeline", "R11", "the pipeline has no stages", "add one: `with p.stage('build'):`"
            )
        yield from self._list(p.stages, "pipeline.stages", "stages", kinds=(Stage,), in_group=0)

    # -- lists --------------------------------------------------------------------------------
    def _list(self, items: list, prefix: str, what: str, kinds: tuple, in_group: int) -> Iterator[Problem]:
        seen: dict[str, str] = {}
        for block, item in enumerate(items):
            if isinstance(item, Parallel):
                if not item.items:  # named like the plan names parallel blocks: LIST[index]
                    fix = "add nodes to it or remove it"
                    yield Problem(f"{prefix}[{block}]", "R5", "an empty parallel block", fix)
                for child in item.items:
                    yield from self._one(child, prefix, what, kinds, in_group, seen)
            else:
                yield from self._one(item, prefix, what, kinds, in_group, seen)

    def _one(self, item: Any, prefix: str, what: str, kinds: tuple, in_group: int, seen: dict):
        ident = getattr(item, "id", None)
        fqn = f"{prefix}.{ident}"
        if not isinstance(item, kinds):
            allowed = " or ".join(k.__name__ for k in kinds)
            yield Problem(fqn, "R4", f"a {type(item).__name__} cannot stand in {what}", f"use a {allowed}")
            return
        if ident in seen:
            yield Problem(
                fqn, "R1", f"the identifier {ident!r} is used twice in {what}", "rename one of them"
            )
        seen[ident] = fqn
        yield from self._identifier(fqn, ident, type(item).__name__.lower())
        if isinstance(item, Stage):
            yield from self._stage(item, fqn)
        elif isinstance(item, StepGroup):
            yield from self._group(item, fqn, in_group)
        else:
            yield from self._step(item, fqn, in_group)

    # -- nodes --------------------------------------------------------------------------------
    def _stage(self, stage: Stage, fqn: str) -> Iterator[Problem]:
        yield from self._settings(stage, fqn, "stage", in_group=0)
        if not stage.items and _template(stage):
            text = f"the stage is template {_template(stage)!r}, which is not resolved"
            yield Problem(fqn, "R1", text, _UNTEMPLATE)
        elif not stage.items:
            yield Problem(fqn, "R1", "the stage has no steps", "add a step: `stage.step('name', run=...)`")
        kinds = (Step, StepGroup)
        yield from self._list(stage.items, f"{fqn}.spec.execution.steps", "a stage", kinds, 0)
        yield from self._list(
            stage.rollback_items, f"{fqn}.spec.execution.rollbackSteps", "a rollback list", kinds, 0
        )

    def _group(self, group: StepGroup, fqn: str, in_group: int) -> Iterator[Problem]:
        if in_group and self.classic:
            yield Problem(
                fqn,
                "R6/D1",
                "a step group inside a step group is not allowed under the classic rules",
                "put its steps in the outer group (parallel blocks are allowed), or allow nesting "
                "with Pipeline(..., rules='current')",
            )
        if self.classic and group.delegate_selectors:
            yield Problem(
                fqn,
                "R62/D1",
                "step groups take no delegate selectors under the classic rules",
                "set delegate_selectors on each step, or use rules='current'",
            )
        if self.classic and group.timeout is not None:
            yield Problem(
                fqn,
                "R60/D10",
                "step groups take no timeout under the classic rules",
                "set timeouts on the steps",
            )
        yield from self._settings(group, fqn, "step group", in_group + 1)
        if not group.items and _template(group):
            text = f"the step group is template {_template(group)!r}, which is not resolved"
            yield Problem(fqn, "R1", text, _UNTEMPLATE)
        elif not group.items:
            yield Problem(
                fqn, "R1", "the step group has no steps", "add a step: `group.step('name', run=...)`"
            )
        kinds = (Step, StepGroup)
        yield from self._list(group.items, f"{fqn}.steps", "a step group", kinds, in_group + 1)
        yield from self._list(
            group.rollback_items, f"{fqn}.rollbackSteps", "a rollback list", kinds, in_group + 1
        )

    def _step(self, step: Step, fqn: str, in_group: int) -> Iterator[Problem]:
        yield from self._settings(step, fqn, "step", in_group)
        yield from self._duration(fqn, "duration", step.duration)
        if step.run is not None and not (callable(step.run) or isinstance(step.run, str)):
            yield Problem(
                fqn, "R4", f"run={step.run!r} is neither a callable nor code text", "pass a function"
            )

    # -- settings -----------------------------------------------------------------------------
    def _settings(self, node: Any, fqn: str, kind: str, in_group: int) -> Iterator[Problem]:
        yield from self._duration(fqn, "timeout", node.timeout)
        if node.strategy is not None:
            yield Problem(
                fqn,
                "R48",
                "looping strategies (matrix, repeat, parallelism) are not supported yet",
                "remove strategy= for now; it is kept as data by the YAML loader",
            )
        try:
            when = coerce_when(node.when)
        except StrategyError as err:
            yield Problem(fqn, "R28", str(err), "")
        else:
            if when is not None and when.status not in STATUS_CHOICES:
                key = "pipelineStatus" if kind == "stage" else "stageStatus"
                yield Problem(
                    fqn, "R28", f"{key} {when.status!r} is not one of {', '.join(STATUS_CHOICES)}", "pick one"
                )
            if when is not None and not (
                when.condition is None or isinstance(when.condition, str | Callable)
            ):
                yield Problem(
                    fqn, "R28", f"condition {when.condition!r} is not an expression", "use a string"
                )
        try:
            strategies = coerce_strategies(node.failure_strategies)
        except StrategyError as err:
            yield Problem(fqn, "R15/R17", str(err), "see nbp.OnFailure and the action classes")
            return
        for entry in strategies:
            for error in entry.errors:
                if error not in ERROR_TYPES:
                    yield Problem(
                        fqn, "R16", f"unknown error type {error!r}", f"use one of: {', '.join(ERROR_TYPES)}"
                    )
            yield from self._action(entry.action, fqn, kind, in_group)

    def _action(self, action: Any, fqn: str, kind: str, in_group: int) -> Iterator[Problem]:
        if isinstance(action, Retry | RetryStepGroup):
            if action.count < 0:
                yield Problem(fqn, "R18", f"retry count {action.count} is negative", "use 0 or more")
            for interval in action.intervals:
                yield from self._duration(fqn, "retryIntervals", interval)
        if isinstance(action, Retry):
            yield from self._action(action.then, fqn, kind, in_group)
            if isinstance(action.then, Retry):
                yield Problem(fqn, "R18", "onRetryFailure cannot be another Retry", "use Abort, Ignore, …")
        if isinstance(action, ManualIntervention):
            yield from self._duration(fqn, "ManualIntervention timeout", action.timeout)
            yield from self._action(action.on_timeout, fqn, kind, in_group)
        if isinstance(action, RetryStepGroup) and kind != "step group":
            yield Problem(
                fqn,
                "R19",
                f"RetryStepGroup is a step-group action, set on a {kind}",
                "set it on the step group",
            )
        if isinstance(action, StepGroupRollback) and kind != "step group" and not in_group:
            yield Problem(
                fqn,
                "R37",
                f"StepGroupRollback on a {kind} outside any step group",
                "use StageRollback, or put the step in a step group",
            )

    def _duration(self, fqn: str, key: str, value: Any) -> Iterator[Problem]:
        try:
            parse_duration(value)
        except DurationError:
            yield Problem(
                fqn, "R59", f"cannot read {key}={value!r} as a duration", "write '10s', '1m 30s' or seconds"
            )

    def _identifier(self, fqn: str, ident: Any, kind: str) -> Iterator[Problem]:
        if not isinstance(ident, str) or not IDENTIFIER.match(ident):
            yield Problem(
                fqn,
                "R1",
                f"the identifier {ident!r} is not valid for a {kind}",
                "use letters, digits, _ and $, not starting with a digit (name= can be anything)",
            )
