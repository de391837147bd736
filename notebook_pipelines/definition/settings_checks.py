r"""The checks of one node's settings: ``when``, failure strategies and their actions, timeout and
durations, variables, inputs, outputs, delegate selectors, identifiers and texts.

:class:`SettingChecks` is the half of validation's checker that looks at a node's values
(``validation._Checker`` walks the structure and calls these for each node); each method yields
:class:`~notebook_pipelines.errors.Problem`\ s naming the node's FQN, the rule and the fix. The
vocabulary the rest of the package checks values against lives here too: :data:`IDENTIFIER`,
:data:`VARIABLE_TYPES`, :func:`number_value`, :func:`variable_problem`.

It stands on the definition's vocabularies: :mod:`.durations`, :mod:`.failure`,
:mod:`.strategies`, :mod:`.expressions` and :mod:`.limits`.

>>> [p.message for p in SettingChecks()._duration("pipeline", "timeout", "soon")]
["cannot read timeout='soon' as a duration"]
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from numbers import Integral
from typing import Any

from ..errors import DurationError, DurationTooLong, Problem, StrategyError
from .durations import LIMIT, parse_duration
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
from .strategies import strategy_problems

__all__ = ["IDENTIFIER", "VARIABLE_TYPES", "SettingChecks", "is_list", "number_value", "variable_problem"]

#: Harness identifiers: letters, digits, ``_`` and ``$``; not starting with a digit or ``$`` (R1;
#: Harness's ``EntityIdentifierValidator``: ``^[a-zA-Z_][0-9a-zA-Z_$]{0,127}$``).
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*\Z")
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


_VARIABLES_YAML = "write `variables:` as a list of `- {name: n, type: String, value: v}` entries"


def is_list(value: Any) -> bool:
    """A list-like value: iterable, but not a string or a mapping (whose iteration misleads)."""
    if isinstance(value, str | bytes | Mapping):
        return False
    try:
        iter(value)
    except TypeError:
        return False
    return True


class SettingChecks:
    """The checks of a node's values (a mixin of validation's checker; no state of its own)."""

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
        if not is_list(value) or not all(isinstance(x, str) for x in value):
            fix = f"write delegate_selectors=[{value!r}]" if isinstance(value, str) else "list tag strings"
            message = f"delegate_selectors={short(value)} is not a list of delegate tags"
            yaml_fix = "write `delegateSelectors:` as a list of tags, e.g. `delegateSelectors: [big-runner]`"
            yield Problem(fqn, "R62", message, fix, yaml_fix=yaml_fix)

    def _choices(self, fqn: str, choices: Any) -> Iterator[Problem]:
        names = list(choices) if is_list(choices) else []
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
        if not is_list(value):
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
