"""Reading one node's fields from Harness YAML: the reporting (problems and notes with line and
column), the shape checks, and the settings every node shares — ``when``, ``failureStrategies``,
``strategy``, ``timeout``, ``variables`` and the keys the model keeps as data.

:class:`FieldReader` is the base of the reader of the v0 shape (:mod:`.yaml_reader`);
:func:`infrastructure_key` is shared with the writer (:mod:`.yaml_writer`).

It stands on :mod:`.yaml_document` (positions, ``plain_data``) and the definition layer's
vocabulary: :mod:`~notebook_pipelines.definition.failure` (actions, ``When``),
:mod:`~notebook_pipelines.definition.validation` (variable types) and ``limits``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..definition.failure import ACTION_TYPES, OnFailure, StrategyError, When, action_from_dict
from ..definition.limits import MAX_DATA_DEPTH, data_depth, short
from ..definition.validation import VARIABLE_TYPES, variable_problem
from .yaml_document import MarkedList, MarkedMap, YamlProblem, line_column, plain_data

__all__ = [
    "DOCUMENT_KEY",
    "FieldReader",
    "Note",
    "infrastructure_key",
    "is_empty",
    "shape_of",
    "variable_type",
]


@dataclass(frozen=True)
class Note:
    """Something kept as data but not modelled (reported as a warning, never an error)."""

    fqn: str
    message: str
    source: str = "<yaml>"
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        return f"{self.source}:{self.line}:{self.column}: {self.fqn}: {self.message}"


#: kept in ``extra`` without a note: Harness metadata that changes nothing in a run
_QUIET = {"projectIdentifier", "orgIdentifier", "tags", "description"}


#: what the entries of each YAML list are, for the fix of a list written as something else
_LIST_ENTRIES = {
    "stages": "`stage:` or `parallel:` entry",
    "steps": "`step:`, `stepGroup:` or `parallel:` entry",
    "rollbackSteps": "`step:`, `stepGroup:` or `parallel:` entry",
    "parallel": "`stage:`, `step:` or `stepGroup:` entry",
    "variables": "`name: …, type: String, value: …` entry",
    "failureStrategies": "`onFailure: {errors: [...], action: {type: …}}` entry",
}


def shape_of(value: Any) -> str:
    """What a value is, for a message: 'a mapping {...}', 'a list [...]', 'the text ...'."""
    if isinstance(value, dict):
        return f"a mapping {short(plain_data(value))}"
    if isinstance(value, list):
        return f"a list {short(plain_data(value))}"
    if isinstance(value, str):
        return f"the text {short(value)}"
    return short(value)


def is_empty(value: Any) -> bool:
    """True for a setting written but empty (``None``, ``""``, ``{}``, ``[]``): kept as not written."""
    return value is None or value == "" or (isinstance(value, dict | list) and not value)


def variable_type(value: Any) -> str:
    """The Harness variable type a value implies: ``Number`` for a number, else ``String``."""
    return "Number" if isinstance(value, int | float) and not isinstance(value, bool) else "String"


class FieldReader:
    """Reads the fields of one node; collects ``problems`` and ``notes`` with their positions."""

    def __init__(self, source: str, rules: str):
        self.source, self.rules = source, rules
        self.problems: list[YamlProblem] = []
        self.notes: list[Note] = []
        self.positions: dict[str, tuple[int, int]] = {}
        self.step_types: dict[str, int] = {}

    # -- reporting -------------------------------------------------------------------------------
    def problem(self, mark: Any, fqn: str, rule: str, message: str, fix: str = "") -> None:
        line, column = line_column(mark)
        self.problems.append(YamlProblem(fqn, rule, message, fix, self.source, line, column))

    def note(self, mark: Any, fqn: str, message: str) -> None:
        line, column = line_column(mark)
        self.notes.append(Note(fqn, message, self.source, line, column))

    def expect(self, value: Any, kind: type, mark: Any, fqn: str, what: str) -> bool:
        """True when ``value`` is a ``MarkedList`` (``kind`` a list type) or a ``MarkedMap``; else a problem
        saying which shape ``what`` needs, what it got and how to write it in YAML."""
        if isinstance(value, kind):
            return True
        wants_list = issubclass(kind, list)
        shape = "a list" if wants_list else "a mapping"
        got = shape_of(value)
        if wants_list:
            entries = _LIST_ENTRIES.get(what, "entry")
            fix = f"write `{what}:` as a list: each {entries} on its own line starting with '- '"
            if isinstance(value, dict) and len(value) == 1:  # the '- ' forgotten before the only entry
                fix += f", e.g. `{what}:` then `  - {next(iter(value))}: …`"
        else:
            fix = f"write `{what}:` as a mapping: `key: value` lines indented below it"
        self.problem(mark, fqn, "YAML", f"{what} must be {shape}, got {got}", fix)
        return False

    def scan_inputs(self, value: Any, path: str, mark: Any) -> None:
        """Note every ``<+input>`` runtime input below ``value`` (iteratively: data may be deep)."""
        stack = [(value, path, mark)]
        while stack:
            item, where, at = stack.pop()
            if isinstance(item, str):
                if "<+input>" in item:
                    message = f"runtime input {short(item)} kept as is: give a value before running"
                    self.note(at, where, message)
            elif isinstance(item, MarkedMap):
                stack.extend(
                    (child, f"{where}.{key}", item.values_at.get(key, at))
                    for key, child in reversed(item.items())
                )
            elif isinstance(item, MarkedList):
                stack.extend(
                    (child, f"{where}[{i}]", item.items_at[i] if i < len(item.items_at) else at)
                    for i, child in reversed(list(enumerate(item)))
                )

    def extras(self, body: MarkedMap, known: set, fqn: str, what: str) -> dict | None:
        """Keys of ``body`` the model has no field for: kept (and noted unless harmless)."""
        out = {}
        for key, value in body.items():
            if key in known:
                continue
            out[key] = plain_data(value)
            mark = body.keys_at.get(key)
            if key == "template":
                ref = value.get("templateRef") if isinstance(value, dict) else value
                message = f"template {short(plain_data(ref))} kept as a reference: templates are not resolved"
                self.note(mark, fqn, message)
            elif key == "flowControl":
                pass  # the barriers' declarations (R55), read from here by validation and the run
            elif key not in _QUIET and not is_empty(value):
                self.note(mark, fqn, f"{what} key {key!r} kept as data (not modelled)")
            if key != "template":
                self.scan_inputs(value, f"{fqn}.{key}", body.values_at.get(key))
        return out or None

    # -- settings --------------------------------------------------------------------------------
    def settings(self, body: MarkedMap, fqn: str, status_key: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "timeout" in body:
            out["timeout"] = plain_data(body["timeout"])
            self.scan_inputs(body["timeout"], f"{fqn}.timeout", body.values_at["timeout"])
        if "strategy" in body and body["strategy"] is not None:
            strategy = plain_data(body["strategy"])
            out["strategy"] = strategy
            self.scan_inputs(body["strategy"], f"{fqn}.strategy", body.values_at["strategy"])
        if "when" in body and body["when"] is not None:
            out["when"] = self.when(body["when"], body.values_at["when"], fqn, status_key)
        if "failureStrategies" in body and body["failureStrategies"] is not None:
            out["failure_strategies"] = self.strategies(
                body["failureStrategies"], body.values_at["failureStrategies"], fqn
            )
        return out

    def when(self, value: Any, mark: Any, fqn: str, status_key: str) -> Any:
        if isinstance(value, str) and "<+input>" in value:
            self.scan_inputs(value, f"{fqn}.when", mark)
            return value
        if not isinstance(value, MarkedMap):
            self.problem(
                mark,
                fqn,
                "R28",
                f"when must be a mapping with {status_key}, got {shape_of(value)}",
                f"write `when: {{{status_key}: Success}}` (Success, Failure or All), with an optional "
                "`condition: <+…> == …`",
            )
            return None
        status = value.get(status_key, value.get("stageStatus", value.get("pipelineStatus")))
        if status is None:
            self.problem(
                mark, fqn, "R28", f"when needs {status_key} (Success, Failure or All)", f"add `{status_key}:`"
            )
            status = "Success"
        condition = value.get("condition")
        if isinstance(condition, bool):
            condition = "true" if condition else "false"
        elif condition is not None and not isinstance(condition, str):
            condition = str(condition)
        self.scan_inputs(value, f"{fqn}.when", mark)
        return When(status, condition)

    def strategies(self, value: Any, mark: Any, fqn: str) -> Any:
        if isinstance(value, str):
            self.scan_inputs(value, f"{fqn}.failureStrategies", mark)
            return value
        if not self.expect(value, MarkedList, mark, fqn, "failureStrategies"):
            return None
        entries: list[OnFailure] = []
        for i, item in enumerate(value):
            at = value.items_at[i]
            body = item.get("onFailure") if isinstance(item, MarkedMap) else None
            if not isinstance(body, MarkedMap) or "errors" not in body or "action" not in body:
                self.problem(
                    at,
                    fqn,
                    "R15",
                    f"cannot read the failure strategy entry {shape_of(item)}",
                    "write `- onFailure: {errors: [AllErrors], action: {type: ...}}`",
                )
                continue
            if data_depth(body) > MAX_DATA_DEPTH:  # reading actions recurses once per nested action
                self.problem(
                    at,
                    fqn,
                    "R15",
                    f"the failure strategy entry is nested more than {MAX_DATA_DEPTH} levels deep",
                    "end the chain of onRetryFailure / onTimeout actions with a simple action "
                    "such as MarkAsFailure or Abort",
                )
                continue
            errors = plain_data(body["errors"])
            try:
                action = action_from_dict(plain_data(body["action"]))
            except StrategyError as err:
                self.problem(
                    _find_type_mark(body["action"]) or body.values_at["action"],
                    fqn,
                    "R17",
                    str(err),
                    "write `action: {type: …}` with a known type; Retry takes `spec: {retryCount: 2, "
                    "retryIntervals: [10s]}`",
                )
                continue
            dropped = _unmodelled(body["action"]) + [k for k in body if k not in ("errors", "action")]
            if dropped:
                self.note(
                    body.values_at["action"],
                    fqn,
                    f"failure strategy key(s) {', '.join(dropped)} not modelled: dropped (not written back)",
                )
            entries.append(OnFailure(errors if isinstance(errors, list | tuple) else [errors], action))
        return entries

    def variables_and_extras(
        self, body: MarkedMap, known: set, fqn: str, what: str
    ) -> tuple[dict | None, dict | None]:
        """The node's variables, and the keys the model has no field for (see ``extras``).

        What the variables declare beyond name and value (a type other than the inferred one,
        a description…) is kept in ``extra["variables"]``, where ``dump_yaml`` finds it again.
        """
        variables, meta = self.variables(body, fqn)
        extra = self.extras(body, known, fqn, what)
        if meta:
            extra = {**(extra or {}), "variables": meta}
        return variables, extra

    def variables(self, body: MarkedMap, fqn: str) -> tuple[dict | None, list | None]:
        """Harness's list of ``{name, type, value}`` entries as a dict name → value, and what the
        entries declare beyond that. The checks are those of every front-end: a list (not a
        mapping), each name once, a known type, a ``Number`` that is a number
        (:func:`~notebook_pipelines.definition.validation.variable_problem`)."""
        raw = body.get("variables")
        if raw is None:
            return None, None
        if not self.expect(raw, MarkedList, body.values_at["variables"], fqn, "variables"):
            return None, None
        values: dict = {}
        meta: list = []
        first: dict = {}
        for i, entry in enumerate(raw):
            named = isinstance(entry, MarkedMap) and isinstance(entry.get("name"), str) and entry["name"]
            if not named:
                got = shape_of(entry) if not isinstance(entry, MarkedMap) else shape_of(entry.get("name"))
                self.problem(
                    raw.items_at[i],
                    fqn,
                    "R8",
                    f"a variable needs a name (text), got {got}",
                    "write each variable as `- {name: replicas, type: Number, value: 2}`",
                )
                continue
            name, value = entry["name"], plain_data(entry.get("value"))
            if name in first:
                self.problem(
                    raw.items_at[i],
                    fqn,
                    "R8",
                    f"the variable {name!r} is declared twice (first at line {first[name]})",
                    f"keep one `- name: {name}` entry",
                )
                continue
            first[name] = line_column(raw.items_at[i])[0]
            kind = plain_data(entry.get("type", variable_type(value)))
            found = variable_problem(name, kind, value)
            if found:
                at = entry.values_at.get("value" if kind in VARIABLE_TYPES else "type", raw.items_at[i])
                self.problem(at, f"{fqn}.variables.{name}", "R8", found[0], found[1])
            values[name] = value
            self.scan_inputs(entry.get("value"), f"{fqn}.variables.{name}", entry.values_at.get("value"))
            rest = {k: plain_data(v) for k, v in entry.items() if k not in ("name", "value")}
            if rest != {"type": variable_type(value)}:
                meta.append({"name": name, **rest})
        return values or None, meta or None


def _find_type_mark(action: Any) -> Any:
    """The mark of the innermost action ``type`` (where an unknown action type sits)."""
    if not isinstance(action, MarkedMap):
        return None
    spec = action.get("spec")
    if isinstance(spec, MarkedMap):
        for key in ("onRetryFailure", "onTimeout"):
            sub = spec.get(key)
            if isinstance(sub, MarkedMap) and isinstance(sub.get("action"), MarkedMap):
                found = _find_type_mark(sub["action"])
                if found is not None and sub["action"].get("type") not in ACTION_TYPES:
                    return found
    return action.values_at.get("type")


#: the ``spec`` keys of each action type that the failure-strategy classes model
_ACTION_SPEC_KEYS = {
    "Retry": {"retryCount", "retryIntervals", "onRetryFailure", "condition"},
    "RetryStepGroup": {"retryCount", "retryIntervals"},
    "ManualIntervention": {"timeout", "onTimeout"},
}


def _unmodelled(action: Any) -> list[str]:
    """Keys of a failure-strategy action (and of its nested actions) that are not modelled,
    e.g. ``failAll`` (fail-fast, R14)."""
    if not isinstance(action, dict):
        return []
    out = [k for k in action if k not in ("type", "spec")]
    spec = action.get("spec")
    if isinstance(spec, dict):
        known = _ACTION_SPEC_KEYS.get(action.get("type"), set())
        out += [k for k in spec if k not in known]
        for key in ("onRetryFailure", "onTimeout"):
            nested = spec.get(key)
            if isinstance(nested, dict):
                out += _unmodelled(nested.get("action"))
    return out


#: ``Pipeline.extra`` key for top-level keys beside ``pipeline:``
DOCUMENT_KEY = "@document"


def infrastructure_key(stage_type: str | None, spec: dict | None) -> str | None:
    """The resource key of a Deployment stage: its environment and infrastructure (R13, D8).

    Parallel Deployment stages with the same key do not overlap. Custom stages, and
    infrastructures that allow simultaneous deployments, have none.

    >>> infrastructure_key("Deployment", {"environment": {"environmentRef": "dev",
    ...     "infrastructureDefinitions": [{"identifier": "k8s"}]}})
    'infra:dev/k8s'
    >>> infrastructure_key("Custom", {"environment": {"environmentRef": "dev"}}) is None
    True
    """
    if stage_type != "Deployment" or not isinstance(spec, dict):
        return None
    env = spec.get("environment")
    if isinstance(env, dict) and env.get("environmentRef") is not None:
        infras = env.get("infrastructureDefinitions") or []
        ids = (
            ["*"]
            if env.get("deployToAll")
            else [str(i.get("identifier")) for i in infras if isinstance(i, dict)]
        )
        return f"infra:{env['environmentRef']}/{','.join(ids)}" if ids else f"infra:{env['environmentRef']}"
    infra = spec.get("infrastructure")
    if isinstance(infra, dict) and infra.get("environmentRef") is not None:
        if infra.get("allowSimultaneousDeployments") is True:
            return None
        definition = infra.get("infrastructureDefinition") or {}
        dspec = definition.get("spec") if isinstance(definition, dict) else None
        parts = [str(infra["environmentRef"])]
        if isinstance(dspec, dict):
            parts += [str(dspec[k]) for k in ("connectorRef", "namespace", "cluster", "region") if k in dspec]
        return "infra:" + "/".join(parts)
    return None
