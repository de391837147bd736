"""Resolving ``<+…>`` references: statically against the plan, at run time against the scheduler.

The expression language itself lives in :mod:`.expressions` (parsing and evaluation, no
``eval``). This module says what a reference *means* in a pipeline (R42–R47):

================================================  ============================================
path                                              value
================================================  ============================================
``pipeline.variables.X``                          a pipeline variable
``pipeline.name`` / ``pipeline.identifier``       the pipeline's name / id
``pipeline.stages.S.…``                           stage ``S`` (its ``variables.X``, ``name``,
                                                  ``identifier``, ``status``, and its steps:)
``….spec.execution.steps.A.…``                    node ``A`` of that stage (``.steps.B`` inside
                                                  a group, ``.rollbackSteps.B`` for rollback)
``….output.outputVariables.X``                    an output variable of a finished step (R44)
``….status``                                      ``SUCCEEDED``, ``FAILED``, ``SKIPPED``… (R26)
``execution.steps.A.…``                           the same, relative to the current stage
``stage.…`` / ``stepGroup.…`` / ``step.…``        the current stage, innermost group, step
================================================  ============================================

Static checks (R45, D13): before a run, every reference in a ``when`` condition, a retry
condition, a step's ``inputs`` and a typed step's ``spec`` is resolved against the plan. A
reference to an unknown node or variable, to the reader itself, to a node that runs later,
or to a node that runs in parallel with the reader is a ``DefinitionError`` line naming the
reader, the expression and the reason. What can only be known while running (a step that was
skipped has no outputs) fails the reading node with an ``ExpressionError``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from .errors import ExpressionError, Problem

__all__ = ["HARNESS_STATUS", "evaluate_condition", "render_template", "resolve", "static_problems"]

#: How statuses read in expressions (Harness compares upper-case names, R26).
HARNESS_STATUS = {
    "Success": "SUCCEEDED",
    "Failed": "FAILED",
    "Errored": "ERRORED",
    "IgnoreFailed": "IGNORE_FAILED",
    "Skipped": "SKIPPED",
    "Aborted": "ABORTED",
    "Expired": "EXPIRED",
    "NotStarted": "NOT_STARTED",
    "Running": "RUNNING",
}
#: Roots of references the toolkit resolves; others (secrets, env, service…) are Harness's own.
KNOWN_ROOTS = frozenset({"pipeline", "stage", "stepGroup", "step", "execution"})


class _Unresolvable(LookupError):
    """A reference that cannot be resolved, with the reason."""


# -- walking a path over the plan -------------------------------------------------------------
def _child(plan: Any, node: Any, section: str, ident: str) -> Any:
    if node.kind == "stage":
        prefix = {"steps": ".spec.execution.steps.", "rollbackSteps": ".spec.execution.rollbackSteps."}[
            section
        ]
    else:
        prefix = f".{section}."
    found = plan.by_fqn.get(node.fqn + prefix + ident)
    if found is None:
        raise _Unresolvable(f"{node.kind.replace('_', ' ')} {node.id!r} has no node {ident!r} in {section}")
    return found


def locate(plan: Any, reader: Any, path: tuple) -> tuple[Any, tuple]:
    """The plan node a path starts from and the attribute path left over.

    Raises:
        _Unresolvable: the path names no node of the plan.
    """
    head, rest = path[0], tuple(path[1:])
    if head == "pipeline":
        node = plan.root
        if rest[:1] == ("stages",):
            if len(rest) < 2:
                raise _Unresolvable("pipeline.stages needs a stage identifier")
            node = plan.by_fqn.get(f"pipeline.stages.{rest[1]}")
            if node is None:
                raise _Unresolvable(f"the pipeline has no stage {rest[1]!r}")
            rest = rest[2:]
    elif head == "stage":
        node = reader if reader.kind == "stage" else reader.stage
    elif head == "execution":
        node = reader if reader.kind == "stage" else reader.stage
        rest = ("spec", "execution", *rest)
    elif head == "stepGroup":
        node = reader.group
        if node is None:
            raise _Unresolvable(f"{reader.fqn} is not inside a step group")
    elif head == "step":
        if reader.kind != "step":
            raise _Unresolvable(f"<+step…> is only meaningful for a step, not a {reader.kind}")
        node = reader
    else:
        raise _Unresolvable(f"unknown root {head!r}: use pipeline, stage, stepGroup, step or execution")
    if node is None:
        raise _Unresolvable(f"{reader.fqn} has no {head}")
    # descend through steps / rollbackSteps
    while rest:
        if node.kind == "stage" and rest[:3] in (
            ("spec", "execution", "steps"),
            ("spec", "execution", "rollbackSteps"),
        ):
            if len(rest) < 4:
                raise _Unresolvable("the path stops at a list of steps: name a step")
            node, rest = _child(plan, node, rest[2], rest[3]), rest[4:]
        elif node.kind == "step_group" and rest[:1] in (("steps",), ("rollbackSteps",)):
            if len(rest) < 2:
                raise _Unresolvable("the path stops at a list of steps: name a step")
            node, rest = _child(plan, node, rest[0], rest[1]), rest[2:]
        else:
            break
    return node, rest


def _attribute_kind(node: Any, rest: tuple) -> str:
    """``static`` (known before running), ``runtime`` (needs the node finished); or raise."""
    if not rest:
        raise _Unresolvable(
            f"the path names the {node.kind.replace('_', ' ')} {node.id!r}, not a value in it"
        )
    first = rest[0]
    if first in ("name", "identifier", "type", "kind", "fqn") and len(rest) == 1:
        return "static"
    if first == "variables":
        if len(rest) != 2:
            raise _Unresolvable("write variables.NAME")
        if rest[1] not in (node.variables or {}):
            known = ", ".join(sorted(node.variables or {})) or "none"
            raise _Unresolvable(
                f"{node.kind.replace('_', ' ')} {node.id!r} has no variable {rest[1]!r} (known: {known})"
            )
        return "static"
    if first in ("status", "currentStatus") and len(rest) == 1:
        return "runtime"
    if first == "output" and node.kind == "step":
        if rest[1:2] != ("outputVariables",) or len(rest) != 3:
            raise _Unresolvable("write output.outputVariables.NAME (R44)")
        declared = node.outputs or ()
        spec_outputs = _declared_spec_outputs(node)
        if (declared or spec_outputs) and rest[2] not in (*declared, *spec_outputs):
            raise _Unresolvable(f"step {node.id!r} declares no output variable {rest[2]!r}")
        return "runtime"
    raise _Unresolvable(f"unknown attribute {'.'.join(rest)!r} of {node.kind.replace('_', ' ')} {node.id!r}")


def _declared_spec_outputs(node: Any) -> tuple:
    spec = node.spec if isinstance(node.spec, Mapping) else {}
    items = spec.get("outputVariables") or ()
    return tuple(item.get("name") for item in items if isinstance(item, Mapping))


def _static_value(node: Any, rest: tuple) -> Any:
    first = rest[0]
    if first == "name":
        return node.name
    if first == "identifier":
        return node.id
    if first == "type":
        return node.type
    if first == "kind":
        return node.kind
    if first == "fqn":
        return node.fqn
    return node.variables[rest[1]]


# -- happens-before ---------------------------------------------------------------------------
def _chain(node: Any) -> dict:
    out = {}
    cur = node
    while cur.parent is not None:
        out[id(cur.parent)] = (cur.block, cur.phase)
        cur = cur.parent
    return out


def _ancestors(node: Any) -> Iterator[Any]:
    cur = node.parent
    while cur is not None:
        yield cur
        cur = cur.parent


def order_problem(reader: Any, target: Any) -> str | None:
    """Why ``reader`` cannot read a finished-value of ``target`` (R45), or None if it can."""
    if target is reader:
        return "a node cannot read its own status or outputs"
    if any(a is target for a in _ancestors(reader)):
        return f"{target.fqn} contains the reader and has not finished when the reader runs"
    if any(a is reader for a in _ancestors(target)):
        return f"{target.fqn} is inside the reader and has not run when the reader starts"
    target_chain = _chain(target)
    cur = reader
    while cur.parent is not None:
        hit = target_chain.get(id(cur.parent))
        if hit is not None:
            (t_block, t_phase), (r_block, r_phase) = hit, (cur.block, cur.phase)
            if t_phase == "execution" and r_phase == "rollback":
                return None
            if t_phase == "rollback" and r_phase == "execution":
                return f"{target.fqn} is a rollback step: it runs after the reader, if at all"
            if t_block < r_block:
                return None
            if t_block == r_block:
                return f"{target.fqn} runs in parallel with the reader (R45)"
            return f"{target.fqn} runs after the reader"
        cur = cur.parent
    return None  # pragma: no cover - every node shares the pipeline


# -- static checks ----------------------------------------------------------------------------
def _expressions_of(node: Any) -> Iterator[tuple[str, str, bool]]:
    """(where, text, strict) for every expression of a node; strict: unknown roots are errors."""
    when = node.when
    if (
        when is not None
        and isinstance(when.condition, str)
        and (node.kind != "step" or when is not _inherited(node))
    ):
        yield "when condition", when.condition, True
    for level in (node.strategies or ())[:1]:
        for entry in level:
            cond = getattr(entry.action, "condition", None)
            if isinstance(cond, str):
                yield "retry condition", cond, True
    for key, value in (node.inputs or {}).items():
        if isinstance(value, str) and "<+" in value:
            yield f"input {key}", value, True
    if node.kind == "step" and node.spec:
        for where, text in _strings(node.spec, "spec"):
            if "<+" in text:
                yield where, text, False


def _inherited(node: Any) -> Any:
    group = node.group
    return group.when if group is not None else None


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _strings(item, f"{where}[{i}]")


def static_problems(plan: Any) -> list[Problem]:
    """Every reference problem that can be known before running (R45, D13)."""
    from .expressions import parse_condition, parse_template

    problems: list[Problem] = []
    for node in plan.nodes:
        for where, text, strict in _expressions_of(node):
            try:
                parsed = parse_condition(text) if "condition" in where else parse_template(text)
            except ExpressionError as err:
                problems.append(
                    Problem(
                        node.fqn,
                        "R33",
                        f"{where}: {err.reason} at position {err.position} in {text!r}",
                        "fix the expression",
                    )
                )
                continue
            for ref in parsed.references:
                if ref.path[0] not in KNOWN_ROOTS or ref.path == ("input",):
                    if strict and ref.path[0] not in ("secrets", "env", "input"):
                        problems.append(
                            Problem(
                                node.fqn,
                                "R43",
                                f"{where}: {ref.text} has an unknown root {ref.path[0]!r}",
                                "use pipeline., stage., stepGroup., step. or execution.",
                            )
                        )
                    continue
                reason = _check(plan, node, ref.path)
                if reason is not None:
                    problems.append(
                        Problem(
                            node.fqn,
                            "R45" if "parallel" in reason or "after" in reason else "R42",
                            f"{where}: {ref.text} — {reason}",
                            "reference a node that finishes before this one, or a known variable",
                        )
                    )
    return problems


def _check(plan: Any, reader: Any, path: tuple) -> str | None:
    try:
        target, rest = locate(plan, reader, path)
        kind = _attribute_kind(target, rest)
    except _Unresolvable as err:
        return str(err)
    if kind == "runtime":
        return order_problem(reader, target)
    return None


# -- run time ---------------------------------------------------------------------------------
def resolve(scheduler: Any, node: Any, path: tuple, failure: Any = None) -> Any:
    """The value of a reference read by ``node`` now.

    Raises:
        LookupError: with the reason; the expression layer turns it into an ExpressionError
            that shows the reference with a caret.
    """
    plan = scheduler.plan
    target, rest = locate(plan, node, path)
    kind = _attribute_kind(target, rest)
    if kind == "static":
        return _static_value(target, rest)
    status = scheduler.statuses.get(target.fqn)
    if rest[0] in ("status", "currentStatus"):
        if status is None:
            return (
                "RUNNING" if target is node or any(a is target for a in _ancestors(node)) else "NOT_STARTED"
            )
        return HARNESS_STATUS.get(status, status.upper())
    outputs = scheduler.outputs.get(target.fqn)
    if outputs is None:
        state = f"ended {status}" if status is not None else "has not finished"
        raise _Unresolvable(f"{target.fqn} {state}: it has no output variables to read")
    if rest[2] not in outputs:
        raise _Unresolvable(f"{target.fqn} has no output variable {rest[2]!r} (it has: {_names(outputs)})")
    return outputs[rest[2]]


def evaluate_condition(scheduler: Any, node: Any, text: str, failure: Any = None) -> Any:
    """Evaluate a ``when`` (or retry) condition of ``node`` with the values known now."""
    from .expressions import parse_condition

    try:
        return parse_condition(text).evaluate(lambda ref: resolve(scheduler, node, ref.path, failure))
    except ExpressionError as err:
        if not err.fqn:
            err.fqn = node.fqn
        raise


def render_template(scheduler: Any, node: Any, text: Any) -> Any:
    """Resolve the ``<+…>`` expressions embedded in ``text`` for ``node`` (as Harness does
    before a step runs); a text that is exactly one reference returns its raw value."""
    if not isinstance(text, str) or "<+" not in text:
        return text
    from .expressions import parse_template

    return parse_template(text).evaluate(lambda ref: resolve(scheduler, node, ref.path))


def _names(values: Mapping) -> str:
    return ", ".join(sorted(values)) or "none"
