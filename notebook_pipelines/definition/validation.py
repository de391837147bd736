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

import math
import re
from collections.abc import Callable, Iterator, Mapping
from numbers import Integral
from typing import Any

from ..errors import Problem, StrategyError
from .callables import call_problem, is_sampler, sampler_problem
from .depth import depth_problems
from .durations import LIMIT, MAX_SECONDS, DurationError, DurationTooLong, parse_duration
from .expressions import is_expression
from .failure import (
    ACTION_TYPES,
    ERROR_TYPES,
    STATUS_CHOICES,
    Action,
    ManualIntervention,
    Retry,
    RetryStepGroup,
    StepGroupRollback,
    coerce_strategies,
    coerce_when,
)
from .limits import MAX_IDENTIFIER, MAX_RETRIES, short
from .looping import strategy_problems
from .model import Parallel, Pipeline, Stage, Step, StepGroup, read_from_yaml

__all__ = [
    "IDENTIFIER",
    "RULE_SETS",
    "VARIABLE_TYPES",
    "number_value",
    "problems",
    "variable_problem",
]

#: Harness identifiers: letters, digits, ``_`` and ``$``; not starting with a digit or ``$`` (R1;
#: Harness's ``EntityIdentifierValidator``: ``^[a-zA-Z_][0-9a-zA-Z_$]{0,127}$``).
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*\Z")
RULE_SETS = ("classic", "current")
#: Harness variable types (R2, R8, R43).
VARIABLE_TYPES = ("String", "Number", "Secret")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def number_value(value: Any) -> int | float | None:
    """The number that the value of a ``Number`` variable stands for, or None if it is none.

    One rule for every front-end: the YAML reader checks declared values with it, the command
    line's ``--var`` converts with it. A number, or text that spells a finite decimal number.

    >>> number_value(3), number_value(" 2.5 "), number_value("-4"), number_value("1e3")
    (3, 2.5, -4, 1000.0)
    >>> number_value("abc"), number_value(True), number_value("nan"), number_value("1e400")
    (None, None, None, None)
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value if math.isfinite(value) else None
    if not isinstance(value, str) or len(value) > 400 or not _NUMBER.fullmatch(text := value.strip()):
        return None
    number = int(text) if text.lstrip("+-").isdigit() else float(text)
    return number if math.isfinite(number) else None


def variable_problem(name: Any, kind: Any, value: Any) -> tuple[str, str] | None:
    """``(message, fix)`` when ``value`` cannot be the value of a variable of type ``kind``.

    A ``Number`` takes a number (or text spelling one); any type takes a ``<+…>`` expression
    (a runtime input such as ``<+input>``), or no value.

    >>> variable_problem("replicas", "Number", "abc")[0]
    "the Number variable 'replicas' has the value 'abc', which is not a number"
    >>> variable_problem("replicas", "Number", "<+input>") is None
    True
    """
    if kind not in VARIABLE_TYPES:
        return (
            f"the variable {short(name)} has the type {short(kind)}",
            f"use a type Harness knows: {', '.join(VARIABLE_TYPES)}",
        )
    if kind != "Number" or value is None or is_expression(value) or number_value(value) is not None:
        return None
    return (
        f"the Number variable {short(name)} has the value {short(value)}, which is not a number",
        "give a number (e.g. 3 or 2.5), or declare the variable as a String",
    )


_YAML_KIND = {"Stage": "stage", "Step": "step", "StepGroup": "stepGroup"}
_VARIABLES_YAML = "write `variables:` as a list of `- {name: n, type: String, value: v}` entries"


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


def _is_list(value: Any) -> bool:
    """A list-like value: iterable, but not a string or a mapping (whose iteration misleads)."""
    if isinstance(value, str | bytes | Mapping):
        return False
    try:
        iter(value)
    except TypeError:
        return False
    return True


def problems(pipeline: Pipeline) -> list[Problem]:
    """Every problem in ``pipeline``, in definition order.

    The limits on nesting (:mod:`~notebook_pipelines.definition.limits`) are checked first,
    without recursion; a pipeline beyond them reports only that (the rules are checked by
    walking it recursively). A pipeline read from YAML reports each fix in YAML terms.
    """
    found = depth_problems(pipeline) or list(_Checker(pipeline).run())
    return [problem.for_yaml() for problem in found] if read_from_yaml(pipeline) else found


class _Checker:
    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        self.classic = pipeline.rules == "classic"

    def run(self) -> Iterator[Problem]:
        p = self.pipeline
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
        yield from self._list(p.stages, "pipeline.stages", "stages", kinds=(Stage,), in_group=0)

    # -- lists --------------------------------------------------------------------------------
    def _list(
        self, items: list[Any], prefix: str, what: str, kinds: tuple[Any, ...], in_group: int
    ) -> Iterator[Problem]:
        if not _is_list(items):
            owner, key = prefix.rsplit(".", 1)  # …stages / …steps / …rollbackSteps
            owner = owner.removesuffix(".spec.execution")
            allowed = " and ".join(f"{k.__name__}s" for k in kinds)
            fix = "wrap the nodes in a list: [...]"
            yaml_fix = f"write `{key}:` as a list: a '- ' before each entry"
            message = f"{key} must be a list of {allowed}, got {short(items)}"
            yield Problem(owner, "R4", message, fix, yaml_fix=yaml_fix)
            return
        seen: set[str] = set()
        steps = Step in kinds
        for block, item in enumerate(items):
            if isinstance(item, Parallel) and not _is_list(item.items):
                fix = "write Parallel([node, node, ...])"
                yield Problem(
                    f"{prefix}[{block}]",
                    "R5",
                    f"a parallel block of {short(item.items)}",
                    fix,
                    yaml_fix="write `- parallel:` followed by a list of entries",
                )
            elif isinstance(item, Parallel):
                if not item.items:  # named like the plan names parallel blocks: LIST[index]
                    fix = "add nodes to it or remove it"
                    yield Problem(f"{prefix}[{block}]", "R5", "an empty parallel block", fix)
                for child in item.items:
                    if steps and type(child) is Step and _sound(child) and child.id not in seen:
                        seen.add(child.id)  # nothing to report: no generators, no FQN
                        continue
                    yield from self._one(child, prefix, what, kinds, in_group, seen)
            elif steps and type(item) is Step and _sound(item) and item.id not in seen:
                seen.add(item.id)
            else:
                yield from self._one(item, prefix, what, kinds, in_group, seen)

    def _one(
        self, item: Any, prefix: str, what: str, kinds: tuple[Any, ...], in_group: int, seen: set[Any]
    ) -> Iterator[Problem]:
        ident = getattr(item, "id", None)
        fqn = f"{prefix}.{ident}"
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
        yield from self._list(node.items, f"{fqn}{steps}", f"a {what}", kinds, in_group)
        yield from self._list(node.rollback_items, f"{fqn}{rollback}", "a rollback list", kinds, in_group)

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

    # -- settings -----------------------------------------------------------------------------
    def _settings(self, node: Any, fqn: str, kind: str, in_group: int) -> Iterator[Problem]:
        yield from self._duration(fqn, "timeout", node.timeout)
        yield from self._variables(fqn, node.variables, "R8" if kind == "step group" else "R43", node.extra)
        yield from self._selectors(fqn, node.delegate_selectors)
        if node.strategy is not None:
            for rule, message, fix in strategy_problems(node.strategy):
                yield Problem(fqn, rule, message, fix)
        key = "pipelineStatus" if kind == "stage" else "stageStatus"
        try:
            when = coerce_when(node.when)
        except StrategyError as err:
            fix = f"give a {key} (Success, Failure or All) and/or a condition such as '<+a> == 1'"
            yield Problem(fqn, "R28", str(err), fix)
        else:
            if when is not None and when.status not in STATUS_CHOICES:
                yield Problem(
                    fqn,
                    "R28",
                    f"{key} {short(when.status)} is not one of {', '.join(STATUS_CHOICES)}",
                    f"use {key} Success, Failure or All",
                )
            if when is not None and not (
                when.condition is None or isinstance(when.condition, str | Callable)
            ):
                yield Problem(
                    fqn,
                    "R28",
                    f"condition {short(when.condition)} is not an expression",
                    "write the condition as an expression string such as '<+a> == 1' (or, in Python, "
                    "a callable taking the step context)",
                    yaml_fix="write `condition:` as an expression string such as '<+a> == 1'",
                )
        try:
            strategies = coerce_strategies(node.failure_strategies)
        except StrategyError as err:
            fix = (
                "replace the runtime input by the strategies (YAML: a list of onFailure entries)"
                if isinstance(node.failure_strategies, str) and "<+" in node.failure_strategies
                else "use an action (nbp.Retry(2)), an action type name ('Ignore'), a dict "
                "{error type: action} or a list of nbp.OnFailure(errors, action) / Harness onFailure entries"
            )
            yaml_fix = (
                "write `failureStrategies:` as a list of `- onFailure: {errors: [AllErrors], "
                "action: {type: Retry, spec: {retryCount: 2}}}` entries"
            )
            yield Problem(fqn, "R15/R17", str(err), fix, yaml_fix=yaml_fix)
            return
        for entry in strategies:
            for error in entry.errors:
                if error not in ERROR_TYPES:
                    yield Problem(
                        fqn,
                        "R16",
                        f"unknown error type {short(error)}",
                        f"use one of: {', '.join(ERROR_TYPES)}",
                    )
            yield from self._action(entry.action, fqn, kind, in_group)

    def _action(
        self, action: Any, fqn: str, kind: str, in_group: int, what: str = "action"
    ) -> Iterator[Problem]:
        if not isinstance(action, Action):
            yield Problem(
                fqn,
                "R17",
                f"the {what} {short(action)} is not a failure-strategy action",
                f"use an action such as nbp.Abort() or a type name, one of: {', '.join(ACTION_TYPES)}",
                yaml_fix=f"write `action: {{type: …}}` with a type from: {', '.join(ACTION_TYPES)}",
            )
            return
        if isinstance(action, Retry | RetryStepGroup):
            name = type(action).__name__
            if isinstance(action.count, bool) or not isinstance(action.count, Integral):
                yield Problem(
                    fqn,
                    "R18",
                    f"{name} count {short(action.count)} is not a whole number",
                    f"give the number of retries as a whole number ≥ 0, e.g. {name}(2)",
                    yaml_fix="write `retryCount:` as a whole number ≥ 0, e.g. `retryCount: 2`",
                )
            elif action.count < 0:
                yield Problem(fqn, "R18", f"retry count {short(action.count)} is negative", "use 0 or more")
            elif action.count > MAX_RETRIES:
                rule = "R19" if isinstance(action, RetryStepGroup) else "R18"
                yield Problem(
                    fqn,
                    rule,
                    f"{name} count {short(action.count)} is more than the limit of {MAX_RETRIES} retries "
                    "(each retry is an attempt and a row of the trace)",
                    f"retry at most {MAX_RETRIES} times, e.g. {name}({min(MAX_RETRIES, 3)}); a step that "
                    "needs more is failing, not flaky",
                    yaml_fix=f"write `retryCount: {MAX_RETRIES}` or less (usually 1 to 5, with "
                    "`retryIntervals`)",
                )
            for interval in action.intervals:
                yield from self._duration(fqn, "retryIntervals", interval)
        if isinstance(action, Retry):
            yield from self._action(action.then, fqn, kind, in_group, "onRetryFailure action")
            if isinstance(action.then, Retry):
                yield Problem(fqn, "R18", "onRetryFailure cannot be another Retry", "use Abort, Ignore, …")
            if not (action.condition is None or isinstance(action.condition, str | Callable)):
                yield Problem(
                    fqn,
                    "R18",
                    f"retry condition {short(action.condition)} is not an expression",
                    "write it as an expression string such as '<+step.exitCode> == 137' (or a callable)",
                    yaml_fix="write `condition:` as an expression string such as '<+step.exitCode> == 137'",
                )
        if isinstance(action, ManualIntervention):
            if action.timeout is None:
                yield Problem(
                    fqn,
                    "R20",
                    "a ManualIntervention needs a timeout (the on_timeout action applies when it expires)",
                    "give one, e.g. nbp.ManualIntervention(timeout='30m')",
                    yaml_fix="add `timeout: 30m` to the action's `spec`",
                )
            yield from self._duration(fqn, "ManualIntervention timeout", action.timeout)
            yield from self._choices(fqn, action.choices)
            yield from self._action(action.on_timeout, fqn, kind, in_group, "onTimeout action")
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

    def _text(self, fqn: str, key: str, value: Any, rule: str) -> Iterator[Problem]:
        if value is not None and not isinstance(value, str):
            yield Problem(
                fqn,
                rule,
                f"{key}={short(value)} is not a string",
                f"write {key} as text, e.g. {key}='…'",
                yaml_fix=f'write `{key}:` as a string (quote it: {key}: "…")',
            )

    def _spec(self, fqn: str, value: Any) -> Iterator[Problem]:
        if value is not None and not isinstance(value, Mapping):
            yield Problem(
                fqn,
                "R4",
                f"spec={short(value)} is not a mapping",
                "write spec={'key': value, ...}",
                yaml_fix="write `spec:` as a mapping (`key: value` lines below it)",
            )

    def _shell_script(self, fqn: str, spec: Any) -> Iterator[Problem]:
        """A ``ShellScript``'s ``spec.source.spec.script``, when given, is text: YAML reads an
        unquoted ``yes``, ``on`` or ``12`` as a boolean or a number (the run would find no script)."""
        source = spec.get("source") if isinstance(spec, Mapping) else None
        inner = source.get("spec") if isinstance(source, Mapping) else None
        script = inner.get("script") if isinstance(inner, Mapping) else None
        if script is None or isinstance(script, str):
            return
        yaml_word = (
            {True: "yes, on or true", False: "no, off or false"}.get(script) if type(script) is bool else ""
        )
        read = f" (YAML reads an unquoted {yaml_word} as a boolean)" if yaml_word else ""
        yield Problem(
            fqn,
            "R4",
            f"spec.source.spec.script={short(script)} is a {type(script).__name__}, not a script{read}",
            "give the script as text: spec={'source': {'type': 'Inline', 'spec': {'script': 'echo hi'}}}",
            yaml_fix='quote the script or write it as a block: `script: "yes"`, or `script: |` and lines',
        )

    def _selectors(self, fqn: str, value: Any) -> Iterator[Problem]:
        if value is None or (isinstance(value, str) and "<+" in value):  # a runtime input kept as data
            return
        if not _is_list(value) or not all(isinstance(x, str) for x in value):
            fix = f"write delegate_selectors=[{value!r}]" if isinstance(value, str) else "list tag strings"
            message = f"delegate_selectors={short(value)} is not a list of delegate tags"
            yaml_fix = "write `delegateSelectors:` as a list of tags, e.g. `delegateSelectors: [big-runner]`"
            yield Problem(fqn, "R62", message, fix, yaml_fix=yaml_fix)

    def _choices(self, fqn: str, choices: Any) -> Iterator[Problem]:
        names = list(choices) if _is_list(choices) else []
        bad = [c for c in names if not (isinstance(c, str) and c in ACTION_TYPES)]
        if bad or not names:
            shown = f"{bad[0]!r} is not an action type" if bad else f"{choices!r} is not a list of them"
            yield Problem(
                fqn,
                "R20",
                f"ManualIntervention choices must be action type names: {shown}",
                f"list names from: {', '.join(ACTION_TYPES)}",
            )

    def _variables(self, fqn: str, value: Any, rule: str, extra: Any = None) -> Iterator[Problem]:
        if value is None:
            return
        if not isinstance(value, Mapping):
            yield Problem(
                fqn,
                rule,
                f"variables={short(value)} is not a mapping of names to values",
                "write variables={'name': value, ...}",
                yaml_fix=_VARIABLES_YAML,
            )
            return
        for name in value:
            if not isinstance(name, str) or not name:
                message = f"the variable name {short(name)} is not a string"
                yield Problem(fqn, rule, message, "name variables with strings")
        declared = extra.get("variables") if isinstance(extra, Mapping) else None
        for entry in declared if isinstance(declared, list) else ():  # types kept from YAML
            if isinstance(entry, Mapping) and "type" in entry and entry.get("name") in value:
                found = variable_problem(entry["name"], entry["type"], value[entry["name"]])
                if found:
                    yield Problem(fqn, rule, found[0], found[1])

    def _inputs(self, fqn: str, value: Any) -> Iterator[Problem]:
        if value is None:
            return
        if not isinstance(value, Mapping):
            yield Problem(
                fqn,
                "R43",
                f"inputs={short(value)} is not a mapping of parameter names to values",
                "write inputs={'name': value, ...} (values may embed <+…> expressions)",
            )
            return
        for name in value:
            if not (isinstance(name, str) and name.isidentifier()):
                yield Problem(
                    fqn,
                    "R43",
                    f"the input name {short(name)} is not a Python parameter name",
                    "name inputs like the body's parameters (letters, digits and _)",
                )

    def _outputs(self, fqn: str, value: Any) -> Iterator[Problem]:
        if value is None:
            return
        if not _is_list(value):
            yield Problem(
                fqn,
                "R44",
                f"outputs={short(value)} is not a list of names",
                f"write outputs=[{short(value)}]"
                if isinstance(value, str)
                else "write outputs=['name', ...]",
            )
            return
        for name in value:
            if not isinstance(name, str) or not name:
                yield Problem(
                    fqn,
                    "R44",
                    f"the output name {short(name)} is not a string",
                    "name output variables with strings",
                )
            elif not IDENTIFIER.match(name) or len(name) > MAX_IDENTIFIER:
                yield Problem(
                    fqn,
                    "R44",
                    f"the output name {short(name)} is not an identifier of at most {MAX_IDENTIFIER} "
                    "characters (expressions read it as outputVariables.NAME)",
                    "name output variables like Python names, e.g. outputs=['version']",
                )

    def _duration(self, fqn: str, key: str, value: Any) -> Iterator[Problem]:
        try:
            seconds = parse_duration(value)
            if key == "timeout" and seconds is not None and seconds <= 0:  # one meaning on every level
                yield Problem(
                    fqn,
                    "R59",
                    f"timeout={short(value)} would expire the node the moment it starts",
                    "give a positive duration such as '10m', or leave the timeout unset for none",
                )
        except DurationTooLong:
            yield Problem(
                fqn, "R59", f"{key}={short(value)} is {LIMIT}", "give a duration of at most 100 years"
            )
        except DurationError:
            if isinstance(value, str) and value.strip().startswith("<+input>"):  # Harness runtime input
                # [^()]* then strip(): linear; "\s*([^()]*?)\s*" backtracked cubically on long spaces
                default = re.search(r"\.default\(([^()]*)\)", value)
                example = f"its default is {default.group(1).strip()!r}" if default else "e.g. '10m'"
                yield Problem(
                    fqn,
                    "R59",
                    f"{key}={value!r} is a runtime input: it needs a value before running",
                    f"replace it by a duration ({example}); runtime inputs are not asked for here",
                )
                return
            yield Problem(
                fqn,
                "R59",
                f"cannot read {key}={short(value)} as a duration",
                "write '10s', '1m 30s' or seconds",
            )

    def _identifier(self, fqn: str, ident: Any, kind: str) -> Iterator[Problem]:
        if not isinstance(ident, str) or not IDENTIFIER.match(ident):
            yield Problem(
                fqn,
                "R1",
                f"the identifier {short(ident)} is not valid for a {kind}",
                "use letters, digits, _ and $, not starting with a digit or $ (name= can be anything)",
                yaml_fix="use letters, digits, _ and $, not starting with a digit or $ "
                "(`name:` can be anything)",
            )
        elif len(ident) > MAX_IDENTIFIER:
            yield Problem(
                fqn,
                "R1",
                f"the identifier of the {kind} is {len(ident)} characters long; Harness allows "
                f"at most {MAX_IDENTIFIER}",
                f"shorten it to {MAX_IDENTIFIER} characters or fewer (a long display name can go in name=)",
                yaml_fix=f"shorten it to {MAX_IDENTIFIER} characters or fewer (a long display name can "
                "go in `name:`)",
            )
