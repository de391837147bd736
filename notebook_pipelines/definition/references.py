"""Resolving ``<+…>`` references: statically against the plan, at run time against a run (:class:`RunValues`).

The expression language itself lives in :mod:`.expressions` (parsing and evaluation, no
``eval``). This module says what a reference *means* in a pipeline (R42–R47):

================================================  ============================================
path                                              value
================================================  ============================================
``pipeline.variables.X``                          a pipeline variable (``variables`` alone: all)
``pipeline.name`` / ``pipeline.identifier``       the pipeline's name / id
``pipeline.stages.S.…``                           stage ``S`` (its ``variables.X``, ``name``,
                                                  ``identifier``, ``status``, and its steps:)
``….spec.execution.steps.A.…``                    node ``A`` of that stage (``.steps.B`` inside
                                                  a group, ``.rollbackSteps.B`` for rollback)
``….output.outputVariables.X``                    an output variable of a finished step (R44)
``….status``                                      ``SUCCEEDED``, ``FAILED``, ``SKIPPED``… (R26)
``….currentStatus``                               the same for a finished node; for a container
                                                  of the reader: ``FAILED`` once something in
                                                  it failed, else ``RUNNING``
``execution.steps.A.…``                           the same, relative to the current stage
``stage.…`` / ``stepGroup.…`` / ``step.…``        the current stage, innermost group, step
``stepGroup.getParentStepGroup.…``                the group around the current group (nesting)
``step.failureInfo.message`` / ``.errorType``     in a retry condition only: the failed
                                                  attempt's error text and error type (R16)
================================================  ============================================

Segments with hyphens or spaces are quoted, ``variables["x-auth"]`` or
``variables.get("x-auth")`` (R47): the parser hands the path over already split, so every form
below sees plain segments.

**One path walker.** :func:`node_of_path` turns a path into (plan node, attribute path); the static
check and the run-time resolution both call it, so a reference that passes validation is
resolved at run time by exactly the same rules.

**Static checks (R45, D13).** Before a run (``compile_plan`` → :func:`static_problems`), every
reference in a ``when`` condition, a retry condition, a step's ``inputs`` and a typed step's
``spec`` is checked against the plan. Each problem is one ``DefinitionError`` line naming the
reader's FQN, the expression (and, inside a longer one, the reference and its position) and
the reason:

* an unknown root, node or variable, or a declared-but-missing output variable;
* a *finished value* (``status``, ``output``) of the reader itself, of a node that runs later,
  of a node inside the reader, of a container of the reader (use ``currentStatus``), or of a
  node that runs in parallel with the reader (R45: parallel siblings cannot read each other's
  outputs). "Later" and "in parallel" are decided by the serial positions (``block``) of the
  two nodes' branches below their closest common container; rollback lists run after the
  execution list they belong to.

Values that are part of the definition (``name``, ``identifier``, ``variables``) can be read
from any node, in any order: they do not depend on the run. That includes a step reading its
own variables, ``<+step.variables.x>`` — the same values its body sees in ``ctx.variables``.

**Run time.** What can only be known while running fails the reading node with an
``ExpressionError`` that carries the expression and the position of the reference (its message
shows a caret under it), e.g. reading the outputs of a step that was skipped, or an output
variable that a step did not publish. The engine records such a node ``Failed`` with the
message in the trace's ``error`` column. Nothing resolves silently to ``null``.

**Retry conditions** (R18) are evaluated for the failing step after a failed attempt, with the
step as the reader: they can read variables, earlier nodes, and the attempt's failure through
``<+step.failureInfo.message>`` / ``<+step.failureInfo.errorType>`` (this toolkit's names).
``<+step.exitCode>`` (Harness shell steps) does not exist here: step bodies are Python.

**Looping strategies** (R46, R49–R52). Iteration values: ``<+matrix.AXIS>``,
``<+repeat.item>``, ``<+repeat.partition>``, ``<+strategy.iteration|iterations|identifierPostFix|
currentStatus>`` (the innermost iteration around the reader), ``<+strategy.node.ID.…>`` (the
iteration of the looped node ``ID`` around it), ``<+stage.matrix.AXIS>``,
``<+stage.identifierPostFix>`` (likewise ``step.``, ``stepGroup.``; ``""`` for a node without a
strategy). Statically the reader must sit inside a node with such a strategy (and a matrix
must have the axis). One iteration is named by its postfixed id (``pipeline.stages.build_0…``;
validation accepts any postfix of a looped node, the run the ones that exist); a finished value
inside a looped node read by its un-postfixed FQN names no one iteration and is refused (E14),
except the looped node's own ``status``. ``<+secrets.getValue("x")>`` resolves to a mask
(:data:`MASKED`), never a secret.

Not handled here: variable values that themselves contain ``<+…>`` (returned as written), the
256 KB cap of R47.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from ..errors import ExpressionError, Problem
from .statuses import POSITIVE

__all__ = [
    "HARNESS_STATUS",
    "KNOWN_ROOTS",
    "LOOP_ROOTS",
    "MASKED",
    "RunValues",
    "check_reference",
    "evaluate_condition",
    "expressions_of",
    "node_of_path",
    "order_problem",
    "output_reads",
    "render_template",
    "resolve",
    "resolve_inputs",
    "static_problems",
]


class RunValues(Protocol):
    """What resolving a reference at run time reads of a run, and nothing else.

    The scheduler is one; the rules pass their ``Runtime`` (``engine/runtime.py``), which
    declares the same three members.
    """

    @property
    def view(self) -> Any:
        """The plan as the run sees it: the compiled plan and the copies of looped nodes made so
        far (``view.by_fqn`` finds ``pipeline.stages.build_0``); the compiled plan until one is."""
        ...

    @property
    def statuses(self) -> Mapping[str, str]:
        """The last status of each node so far, by FQN."""
        ...

    @property
    def outputs(self) -> Mapping[str, Mapping[str, Any]]:
        """The output variables of each step that succeeded so far, by step FQN."""
        ...


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
KNOWN_ROOTS = frozenset(
    {"pipeline", "stage", "stepGroup", "step", "execution", "matrix", "repeat", "strategy"}
)
#: The roots of the iteration expressions (R52): values of the iteration a reader runs in.
LOOP_ROOTS = ("matrix", "repeat", "strategy")
#: What ``<+secrets.getValue("x")>`` resolves to: a mask, never a secret.
MASKED = "**************"
#: Roots that belong to Harness features this toolkit does not model; never an error in a spec.
_FOREIGN_ROOTS = ("secrets", "env", "input")
_FIXES = {
    "R42": "check the identifiers against the plan (p.plan().by_fqn lists every FQN)",
    "R43": "start the reference with pipeline., stage., stepGroup., step. or execution.",
    "R44": "publish it from the step (return a dict, or set ctx.outputs), or fix the name",
    "R45": "read it from a node that runs after it (a later item, not a parallel sibling)",
    "R18": "read the failure only in a retry condition of the failing step",
    "R46": "name one iteration by its postfixed identifier (e.g. build_0 or build_0_1, R46), "
    "or read it from inside the looped node",
    "R52": "read iteration values only inside a node with a looping strategy of that kind",
    "vars": "define the variable (variables={...}) or fix its name",
}
#: The same fixes in YAML terms, for a pipeline read from YAML (``Problem.yaml_fix``).
_YAML_FIXES = {
    _FIXES["R42"]: "check each identifier of the path against the pipeline's stages, step groups and steps",
    _FIXES["R44"]: "declare it in the step's `spec.outputVariables`, or fix the name",
    _FIXES["vars"]: "declare it under `variables:` (`- {name: …, type: String, value: …}`) or fix its name",
}


class _Unresolvable(LookupError):
    """A reference that cannot be resolved: the reason, the rule it breaks and how to fix it."""

    def __init__(self, reason: str, rule: str = "R42", fix: str | None = None):
        super().__init__(reason)
        self.rule = rule
        self.fix = fix or _FIXES[rule]


def _kind(node: Any) -> str:
    kind: str = node.kind
    return kind.replace("_", " ")


def _children(node: Any, section: str) -> list[str]:
    items = node.items if section == "steps" else node.rollback
    out: list[str] = []
    for item in items or ():
        out.extend(child.id for child in (item.items if item.kind == "parallel" else (item,)))
    return out


def _unknown(what: str, name: str, known: list[str], where: str = "") -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{what} {name!r}{where} ({hint}known: {', '.join(known) or 'none'})"


# -- walking a path over the plan -------------------------------------------------------------
def _postfixed(by_fqn: Any, fqn: str) -> Any:
    """The looped plan node that ``fqn`` names with an iteration postfix (``…build_0_1``), or None."""
    base = fqn
    while True:
        head, sep, tail = base.rpartition("_")
        if not sep or not tail or "." in tail:
            return None
        base = head
        node = by_fqn.get(base)
        if node is not None:
            return node if node.strategy is not None else None


def _static(plan: Any) -> bool:
    """True for the compiled plan (checks before a run), False for a run's view (``run_view``)."""
    return not getattr(plan, "run_view", False)


def _child(plan: Any, node: Any, section: str, ident: str) -> Any:
    prefix = f".spec.execution.{section}." if node.kind == "stage" else f".{section}."
    found = plan.by_fqn.get(node.fqn + prefix + ident)
    if found is None and _static(plan):
        found = _postfixed(plan.by_fqn, node.fqn + prefix + ident)
    if found is None:
        raise _Unresolvable(
            f"{_kind(node)} {node.id!r} has "
            + _unknown("no node", ident, _children(node, section), f" in {section}")
        )
    return found


def node_of_path(plan: Any, reader: Any, path: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
    """The plan node a path starts from and the attribute path left over.

    Both the static checks and the run-time resolution walk paths with this one function.

    >>> from notebook_pipelines.definition.model import Pipeline
    >>> from notebook_pipelines.definition.plan import compile_plan
    >>> p = Pipeline("p")
    >>> with p.stage("build") as b:
    ...     with b.step_group("tests") as t:
    ...         _ = t.step("unit")
    ...     _ = b.step("report")
    >>> plan = compile_plan(p)
    >>> reader = plan.by_fqn["pipeline.stages.build.spec.execution.steps.report"]
    >>> node, rest = node_of_path(plan, reader, ("execution", "steps", "tests", "steps", "unit", "status"))
    >>> node.fqn, rest
    ('pipeline.stages.build.spec.execution.steps.tests.steps.unit', ('status',))

    Raises:
        _Unresolvable: the path names no node of the plan (a ``LookupError``).
    """
    head, rest = path[0], tuple(path[1:])
    if head == "pipeline":
        node = plan.root
        if rest[:1] == ("stages",):
            if len(rest) < 2:
                raise _Unresolvable("pipeline.stages needs a stage identifier")
            node = plan.by_fqn.get(f"pipeline.stages.{rest[1]}")
            if node is None and _static(plan):
                node = _postfixed(plan.by_fqn, f"pipeline.stages.{rest[1]}")
            if node is None:
                stages = [n.id for n in plan.nodes if n.kind == "stage"]
                raise _Unresolvable("the pipeline has " + _unknown("no stage", rest[1], stages))
            rest = rest[2:]
    elif head == "stage":
        node = reader if reader.kind == "stage" else reader.stage
    elif head == "execution":
        node = reader if reader.kind == "stage" else reader.stage
        rest = ("spec", "execution", *rest)
    elif head == "stepGroup":
        node = reader.group
        if node is None:
            raise _Unresolvable(f"{reader.fqn} is not inside a step group", "R43")
        while rest[:1] == ("getParentStepGroup",):
            parent = node.parent
            if parent is None or parent.kind != "step_group":
                raise _Unresolvable(f"step group {node.id!r} is not inside another step group", "R43")
            node, rest = parent, rest[1:]
    elif head == "step":
        if reader.kind != "step":
            raise _Unresolvable(f"<+step…> is only meaningful for a step, not a {_kind(reader)}", "R43")
        node = reader
    else:
        raise _Unresolvable(
            f"unknown root {head!r}: use pipeline, stage, stepGroup, step or execution", "R43"
        )
    if node is None:
        raise _Unresolvable(f"{reader.fqn} has no {head}", "R43")
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


def _attribute_kind(node: Any, rest: tuple[Any, ...]) -> str:
    """``static`` (known before running), ``runtime`` (needs the node finished), ``current``
    (``currentStatus``), ``failure`` (the failed attempt, retry conditions); or raise."""
    if not rest:
        raise _Unresolvable(f"the path names the {_kind(node)} {node.id!r}, not a value in it")
    first = rest[0]
    if first in ("name", "identifier", "type", "kind", "fqn") and len(rest) == 1:
        return "static"
    if first == "variables":
        if len(rest) == 1:
            return "static"
        if len(rest) != 2:
            raise _Unresolvable('write variables.NAME (or variables["NAME"], R47)')
        if rest[1] not in (node.variables or {}):
            raise _Unresolvable(
                f"{_kind(node)} {node.id!r} has "
                + _unknown("no variable", rest[1], sorted(node.variables or {})),
                fix=_FIXES["vars"],
            )
        return "static"
    if first == "identifierPostFix" and len(rest) == 1:
        return "iteration"
    if first == "matrix" and len(rest) == 2:
        return "iteration"
    if first == "status" and len(rest) == 1:
        return "runtime"
    if first == "currentStatus" and len(rest) == 1:
        return "current"
    if first == "output" and node.kind == "step":
        if rest[1:2] != ("outputVariables",) or len(rest) != 3:
            raise _Unresolvable("write output.outputVariables.NAME (R44)", "R44")
        declared = node.outputs or ()
        spec_outputs = _declared_spec_outputs(node)
        if (declared or spec_outputs) and rest[2] not in (*declared, *spec_outputs):
            known = sorted({*declared, *spec_outputs})
            raise _Unresolvable(
                f"step {node.id!r} declares " + _unknown("no output variable", rest[2], known), "R44"
            )
        return "runtime"
    if first == "failureInfo" and node.kind == "step":
        if len(rest) != 2 or rest[1] not in ("message", "errorType"):
            raise _Unresolvable("write failureInfo.message or failureInfo.errorType", "R18")
        return "failure"
    if first == "exitCode" and node.kind == "step":
        raise _Unresolvable(
            "exitCode exists for Harness shell steps only; a step body here is Python",
            "R18",
            "use <+step.failureInfo.message> or <+step.failureInfo.errorType> in a retry condition",
        )
    if node.kind == "stage" and first in ("steps", "rollbackSteps"):
        raise _Unresolvable(f"a stage's steps are under spec.execution: write spec.execution.{first}.ID")
    raise _Unresolvable(f"unknown attribute {'.'.join(rest)!r} of {_kind(node)} {node.id!r}")


def _declared_spec_outputs(node: Any) -> tuple[Any, ...]:
    spec = node.spec if isinstance(node.spec, Mapping) else {}
    items = spec.get("outputVariables") or ()
    return tuple(item.get("name") for item in items if isinstance(item, Mapping))


def _static_value(node: Any, rest: tuple[Any, ...]) -> Any:
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
    if len(rest) == 1:  # variables
        return dict(node.variables or {})
    return node.variables[rest[1]]


# -- happens-before ---------------------------------------------------------------------------
def _chain(node: Any) -> dict[int, tuple[Any, Any]]:
    """``{id(container): (block, phase) of the entry on the way down to node}``, for every
    container above ``node``."""
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


def _contains(outer: Any, inner: Any) -> bool:
    return any(a is outer for a in _ancestors(inner))


def order_problem(reader: Any, target: Any) -> str | None:
    """Why ``reader`` cannot read a finished-value of ``target`` (R45), or None if it can.

    ``target`` must have finished whenever ``reader`` starts: it is an earlier item of a
    serial list both sit in (or inside one), or an execution node read from a rollback list.
    """
    if target is reader:
        return "a node cannot read its own status or outputs"
    if _contains(target, reader):
        return f"{target.fqn} contains the reader and has not finished when the reader runs"
    if _contains(reader, target):
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
                return f"{target.fqn} runs in parallel with the reader"
            return f"{target.fqn} runs after the reader"
        cur = cur.parent
    return None  # pragma: no cover - every node shares the pipeline


def _order(reader: Any, target: Any, kind: str) -> None:
    """Raise when ``reader`` may not read a ``kind`` value of ``target`` (R45)."""
    if kind == "current" and _contains(target, reader):
        return  # the status so far of a container the reader runs in
    reason = order_problem(reader, target)
    if reason is None:
        return
    if kind == "runtime" and _contains(target, reader):
        raise _Unresolvable(reason, "R45", "use currentStatus for the status so far of a running container")
    if target is reader:
        raise _Unresolvable(reason, "R45", "read it from a later node (its own name and variables are fine)")
    raise _Unresolvable(reason, "R45")


# -- static checks ----------------------------------------------------------------------------
def _expressions_of(
    node: Any, chains: dict[int, tuple[Any, ...]] | None = None
) -> Iterator[tuple[str, str, bool]]:
    """(where, text, strict) for every expression of a node; strict: unknown roots are errors.

    ``chains``: where a walk of many nodes keeps the retry conditions of each strategy chain
    (by ``id``, while the plan that holds the chains is alive): most steps share one chain.
    """
    when = node.when
    if (
        when is not None
        and isinstance(when.condition, str)
        and (node.kind != "step" or when is not _inherited(node))
    ):
        yield "when condition", when.condition, True
    if node.kind == "step" and node.strategies:  # read by the failing step, wherever it is set
        strategies = node.strategies
        conditions = None if chains is None else chains.get(id(strategies))
        if conditions is None:
            conditions = _retry_conditions(strategies)
            if chains is not None:
                chains[id(strategies)] = conditions
        for cond in conditions:
            yield "retry condition", cond, True
    for key, value in (node.inputs or {}).items():
        if isinstance(value, str) and "<+" in value:
            yield f"input {key!r}", value, True
    if node.strategy is not None:  # read when the looped node starts (nodeName: by each iteration)
        for where, text in _strategy_strings(node.strategy):
            yield f"strategy {where}", text, True
    if node.kind == "step" and node.spec:
        for where, text in _strings(node.spec, "spec"):
            if "<+" in text:
                yield where, text, False


#: a looping strategy's fields that may hold ``<+…>`` (R48–R51), with their YAML names
_LOOP_FIELDS = (
    ("n", "parallelism"), ("items", "repeat items"), ("times", "repeat times"),
    ("partition_size", "partitionSize"), ("start", "start"), ("end", "end"),
    ("exclude", "matrix exclude"), ("max_concurrency", "maxConcurrency"), ("node_name", "nodeName"),
)  # fmt: skip


def _strategy_strings(strategy: Any) -> Iterator[tuple[str, str]]:
    """(where, text) for the expressions of a looping strategy: axes, items, counts, nodeName."""
    for name, values in (getattr(strategy, "axes", None) or {}).items():
        yield from ((w, t) for w, t in _strings(values, f"matrix axis {name!r}") if "<+" in t)
    for attr, where in _LOOP_FIELDS:
        value = getattr(strategy, attr, None)
        if value is not None:
            yield from ((w, t) for w, t in _strings(value, where) if "<+" in t)


def _retry_conditions(strategies: tuple[Any, ...]) -> tuple[str, ...]:
    """The distinct retry conditions (text) in a step's chain of failure strategies, in order."""
    seen: dict[str, None] = {}
    for level in strategies:
        for entry in level:
            action = entry.action
            while action is not None:
                cond = getattr(action, "condition", None)
                if isinstance(cond, str):
                    seen.setdefault(cond)
                action = getattr(action, "then", None)
    return tuple(seen)


#: ``(where, text, strict)`` for every expression a plan node reads (the design assistant
#: walks the same expressions validation checks).
expressions_of = _expressions_of


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


def _quoted(where: str, text: str, ref: Any) -> str:
    if ref.text == text:
        return f"{where} {text}"
    return f"{where} {text!r}, at position {ref.position} {ref.text}"


def _caret(text: str, ref: Any) -> dict[str, Any]:
    """``Problem`` fields that show ``text`` with a caret under ``ref`` (none if it is all of it)."""
    return {} if ref.text == text else {"expression": text, "position": ref.position}


def static_problems(plan: Any) -> list[Problem]:
    """Every reference problem that can be known before running (R45, D13).

    >>> from notebook_pipelines.definition.model import Pipeline
    >>> from notebook_pipelines.definition.plan import compile_plan
    >>> p = Pipeline("p")
    >>> with p.stage("s") as s:
    ...     with s.parallel():
    ...         _ = s.step("a", outputs=["x"])
    ...         _ = s.step("b", inputs={"v": "<+execution.steps.a.output.outputVariables.x>"})
    >>> for problem in static_problems(compile_plan(p, check=False)):
    ...     print(problem)  # doctest: +NORMALIZE_WHITESPACE
    pipeline.stages.s.spec.execution.steps.b: [R45] input 'v' <+execution.steps.a.output.outputVariables.x>:
    pipeline.stages.s.spec.execution.steps.a runs in parallel with the reader — fix: read it from a node
    that runs after it (a later item, not a parallel sibling)
    """
    from .expressions import parse_condition, parse_template

    problems: list[Problem] = []
    chains: dict[int, tuple[Any, ...]] = {}  # retry conditions per strategy chain (shared by most steps)
    for node in plan.nodes:
        for where, text, strict in _expressions_of(node, chains):
            try:
                parsed = parse_condition(text) if "condition" in where else parse_template(text)
            except ExpressionError as err:
                at = "" if err.position is None else f" at position {err.position}"
                message = f"{where} {text!r}: {err.reason}{at}"
                fix = "fix the expression's syntax"
                problems.append(
                    Problem(node.fqn, "R33", message, fix, expression=text, position=err.position)
                )
                continue
            for ref in parsed.references:
                if ref.path[:2] == ("stage", "output") and where.startswith("strategy "):
                    continue  # a stage's infrastructure outputs (hosts): known only in a run (R50)
                if ref.path[0] not in KNOWN_ROOTS:
                    if strict and ref.path[0] not in _FOREIGN_ROOTS:
                        message = f"{_quoted(where, text, ref)}: unknown root {ref.path[0]!r}"
                        problems.append(Problem(node.fqn, "R43", message, _FIXES["R43"], **_caret(text, ref)))
                    continue
                try:
                    check_reference(plan, node, ref.path, retry=where == "retry condition")
                except _Unresolvable as err:
                    message = f"{_quoted(where, text, ref)}: {err}"
                    yaml_fix = _YAML_FIXES.get(err.fix, "")
                    problems.append(
                        Problem(node.fqn, err.rule, message, err.fix, yaml_fix=yaml_fix, **_caret(text, ref))
                    )
    return problems


def output_reads(plan: Any) -> dict[int, frozenset[str]]:
    """``{plan node index: output variable names}`` that some node of ``plan`` reads from that
    step (``<+….output.outputVariables.NAME>`` in a condition, a retry condition, an input, a
    typed step's spec or a looping strategy); computed once per plan.

    What a sketch's body-less steps publish in virtual time (a placeholder for each name read),
    so that a pipeline sketched with durations alone simulates like the run it stands for.

    >>> from notebook_pipelines.definition.model import Pipeline
    >>> from notebook_pipelines.definition.plan import compile_plan
    >>> p = Pipeline("p")
    >>> with p.stage("s") as s:
    ...     _ = s.step("a")
    ...     _ = s.step("b", inputs={"x": "<+execution.steps.a.output.outputVariables.v>"})
    >>> plan = compile_plan(p)
    >>> {plan.nodes[i].id: sorted(names) for i, names in output_reads(plan).items()}
    {'a': ['v']}
    """
    cached: dict[int, frozenset[str]] | None = plan.__dict__.get("_output_reads")
    if cached is not None:
        return cached
    from .expressions import parse_condition, parse_template

    found: dict[int, set[str]] = {}
    chains: dict[int, tuple[Any, ...]] = {}
    for node in plan.nodes:
        when = node.when
        if (
            (when is None or when.condition is None)
            and not node.inputs
            and not node.spec
            and node.strategy is None
        ):
            strategies = node.strategies  # the common node: only its retry conditions can read
            if strategies is None:
                continue
            conditions = chains.get(id(strategies))
            if conditions is None:
                conditions = chains[id(strategies)] = _retry_conditions(strategies)
            if not conditions:
                continue
        texts = [(text, "condition" in where) for where, text, _ in _expressions_of(node, chains)]
        if node.strategy is not None:
            texts += [(text, False) for _, text in _strings(_strategy_fields(node.strategy), "strategy")]
        for text, condition in texts:
            if "outputVariables" not in text:
                continue
            try:
                parsed = parse_condition(text) if condition else parse_template(text)
            except ExpressionError:
                continue  # validation reports it
            for ref in parsed.references:
                path = ref.path
                if len(path) < 4 or path[-3:-1] != ("output", "outputVariables") or path[0] in LOOP_ROOTS:
                    continue
                try:
                    target, rest = node_of_path(plan, node, path)
                except LookupError:
                    continue
                if target.kind == "step" and rest[:2] == ("output", "outputVariables") and len(rest) == 3:
                    found.setdefault(target.index, set()).add(rest[2])
    cached = {index: frozenset(names) for index, names in found.items()}
    object.__setattr__(plan, "_output_reads", cached)
    return cached


def _strategy_fields(strategy: Any) -> Any:
    """A looping strategy's fields as plain data (a dataclass's fields, or the YAML dict)."""
    import dataclasses

    if dataclasses.is_dataclass(strategy) and not isinstance(strategy, type):
        return {f.name: getattr(strategy, f.name) for f in dataclasses.fields(strategy)}
    return strategy


# -- looping strategies: iteration values (R46, R49–R52) ----------------------------------------
def _strategy_kind(strategy: Any) -> str:
    return getattr(strategy, "kind", "?")


def _static_loop(reader: Any, kind: str | None) -> Any:
    """The innermost node at or above ``reader`` whose strategy is of ``kind`` (any: None)."""
    cur = reader
    while cur is not None:
        if cur.strategy is not None and (kind is None or _strategy_kind(cur.strategy) == kind):
            return cur
        cur = cur.parent
    return None


def _run_loop(reader: Any, kind: str | None) -> Any:
    """The innermost iteration copy at or above ``reader`` of a strategy of ``kind`` (any: None)."""
    cur = reader
    while cur is not None:
        if cur.loop is not None and (kind is None or cur.loop.kind == kind):
            return cur
        cur = cur.parent
    return None


def _loop_path(path: tuple[Any, ...]) -> tuple[str | None, str | None, tuple[Any, ...]]:
    """(kind of strategy, node id named by ``strategy.node.ID``, attribute path) of an iteration path."""
    head, rest = path[0], tuple(path[1:])
    if head == "matrix":
        if len(rest) != 1:
            raise _Unresolvable("write matrix.AXIS (R49)", "R52")
        return "matrix", None, ("matrix", rest[0])
    if head == "repeat":
        if rest not in (("item",), ("partition",)):
            raise _Unresolvable("write repeat.item or repeat.partition (R50)", "R52")
        return "repeat", None, rest
    # strategy.…
    node_id = None
    if rest[:1] == ("node",):
        if len(rest) < 3:
            raise _Unresolvable(
                "write strategy.node.NODE_ID.iteration (or iterations, matrix.AXIS, …)", "R52"
            )
        node_id, rest = rest[1], rest[2:]
    if rest in (("iteration",), ("iterations",), ("identifierPostFix",), ("currentStatus",)):
        return None, node_id, rest
    if len(rest) == 2 and rest[0] == "matrix":
        return "matrix", node_id, rest
    raise _Unresolvable(
        "write strategy.iteration, strategy.iterations, strategy.identifierPostFix or strategy.currentStatus",
        "R52",
    )


def _named(reader: Any, node_id: str, static: bool) -> Any:
    cur = reader
    while cur is not None:
        origin = cur.origin or cur
        if origin.id == node_id and (cur.strategy is not None if static else cur.loop is not None):
            return cur
        cur = cur.parent
    raise _Unresolvable(f"{reader.fqn} is not inside a looped node {node_id!r}", "R52")


def _check_loop(reader: Any, path: tuple[Any, ...]) -> str:
    kind, node_id, rest = _loop_path(path)
    if node_id is not None:
        loop = _named(reader, node_id, static=True)
        if kind is not None and _strategy_kind(loop.strategy) != kind:
            raise _Unresolvable(f"the looped node {node_id!r} has no matrix", "R52")
    else:
        loop = _static_loop(reader, kind)
    if loop is None:
        what = f"a {kind}" if kind else "a looping strategy"
        raise _Unresolvable(f"{reader.fqn} is not inside a node with {what}", "R52")
    if kind == "matrix":
        _check_axis(loop, rest[1])
    return "iteration"


def _check_axis(loop: Any, axis: str) -> None:
    axes = getattr(loop.strategy, "axes", None)
    if isinstance(axes, Mapping) and axis not in axes:
        raise _Unresolvable(
            f"the matrix of {loop.fqn} has " + _unknown("no axis", axis, [str(a) for a in axes]),
            "R49",
            "name an axis of the matrix",
        )


def _loop_value(run: RunValues, reader: Any, path: tuple[Any, ...]) -> Any:
    kind, node_id, rest = _loop_path(path)
    loop = _named(reader, node_id, static=False) if node_id is not None else _run_loop(reader, kind)
    if loop is None:
        what = f"a {kind}" if kind else "a looping strategy"
        raise _Unresolvable(f"{reader.fqn} is not inside a node with {what}", "R52")
    return _iteration_attribute(run, loop, rest)


def _iteration_attribute(run: RunValues, loop: Any, rest: tuple[Any, ...]) -> Any:
    it = loop.loop
    first = rest[0]
    if first == "matrix":
        if it is None or it.matrix is None:
            raise _Unresolvable(f"{loop.fqn} is not an iteration of a matrix", "R52")
        if rest[1] not in it.matrix:
            raise _Unresolvable(
                f"the matrix of {loop.fqn} has " + _unknown("no axis", rest[1], list(it.matrix)), "R49"
            )
        return it.matrix[rest[1]]
    if first == "identifierPostFix":
        return it.postfix if it is not None else ""
    if first in ("item", "partition"):
        return it.item if first == "item" else it.partition
    if first == "iteration":
        return it.index
    if first == "iterations":
        return it.count
    # currentStatus of the looped node: FAILED once an iteration ended badly, else RUNNING
    for fqn, status in run.statuses.items():
        if fqn.startswith(loop.looped.fqn + "_") and status not in POSITIVE and status != "NotStarted":
            return "FAILED"
    return "RUNNING"


def _loop_around(node: Any) -> Any:
    """The outermost looped plan node at or above ``node`` (None: not in a loop)."""
    found, cur = None, node
    while cur is not None:
        if cur.strategy is not None and cur.loop is None and cur.origin is None:
            found = cur
        cur = cur.parent
    return found


def _un_postfixed(
    reader: Any, target: Any, rest: tuple[Any, ...], run: bool, path: tuple[Any, ...] = ()
) -> None:
    """E14: a finished value of a node of a looped node, read by its un-postfixed FQN, names no
    one iteration. The looped node's own status (its row spans its iterations) may be read."""
    if target.origin is not None or target.loop is not None:
        return  # a run's copy: the path named an iteration
    loop = _loop_around(target)
    if loop is None or (loop is target and rest[0] in ("status", "currentStatus")):
        return
    if any(isinstance(seg, str) and seg.startswith(loop.id + "_") for seg in path):
        return  # checked before a run: the path names an iteration (build_1), found at run time
    if not run and _contains_or_is(loop, reader):
        return  # relative paths from inside the loop resolve to the reader's own iteration
    ids = f"{loop.id}_0, {loop.id}_1, …"
    raise _Unresolvable(
        f"{target.fqn} is inside the looped node {loop.fqn}, whose iterations are {ids}", "R46"
    )


def _contains_or_is(outer: Any, inner: Any) -> bool:
    cur = inner
    while cur is not None:
        if cur is outer or cur.origin is outer:
            return True
        cur = cur.parent
    return False


def check_reference(plan: Any, reader: Any, path: tuple[Any, ...], retry: bool = False) -> str:
    """The kind of value ``path`` names for ``reader``; raise ``LookupError`` if it cannot be read.

    ``retry``: the path is read by a retry condition of ``reader`` (which may read its failure).
    """
    if path[0] in LOOP_ROOTS:
        return _check_loop(reader, path)
    target, rest = node_of_path(plan, reader, path)
    kind = _attribute_kind(target, rest)
    if kind == "iteration":
        if rest[0] == "matrix":
            if target.strategy is None or _strategy_kind(target.strategy) != "matrix":
                raise _Unresolvable(f"{target.fqn} has no matrix strategy", "R52")
            _check_axis(target, rest[1])
        return kind
    if kind in ("runtime", "current"):
        _un_postfixed(reader, target, rest, run=False, path=path)
    if kind == "failure":
        if not (retry and target is reader):
            raise _Unresolvable("failureInfo is known only in a retry condition of the failing step", "R18")
    elif kind in ("runtime", "current"):
        _order(reader, target, kind)
    return kind


# -- run time ---------------------------------------------------------------------------------
def resolve(run: RunValues, node: Any, path: tuple[Any, ...], failure: Any = None) -> Any:
    """The value of a reference read by ``node`` now.

    ``failure``: the failed attempt's outcome, when a retry condition is evaluated.

    Raises:
        LookupError: with the reason; the expression layer turns it into an ExpressionError
            that shows the reference with a caret.
    """
    if path[0] in LOOP_ROOTS:
        return _loop_value(run, node, path)
    if path[0] == "secrets":
        return MASKED  # <+secrets.getValue("x")>: valid, and never a secret's value
    plan = run.view
    target, rest = node_of_path(plan, node, path)
    kind = _attribute_kind(target, rest)
    if kind == "static":
        return _static_value(target, rest)
    if kind == "iteration":
        if rest[0] == "matrix" and target.loop is None:
            raise _Unresolvable(f"{target.fqn} is not an iteration of a matrix", "R52")
        return _iteration_attribute(run, target, rest)
    if kind in ("runtime", "current") and not (kind == "current" and _contains(target, node)):
        _un_postfixed(node, target, rest, run=True)
    if kind == "failure":
        if failure is None or target is not node:
            raise _Unresolvable("failureInfo is known only in a retry condition of the failing step", "R18")
        return failure.error if rest[1] == "message" else failure.error_type
    if kind == "current" and _contains(target, node):
        return _status_so_far(run, target)
    status = run.statuses.get(target.fqn)
    if rest[0] in ("status", "currentStatus"):
        if status is None:
            raise _Unresolvable(f"{target.fqn} has not finished: it has no status to read yet", "R45")
        return HARNESS_STATUS.get(status, status.upper())
    outputs = run.outputs.get(target.fqn)
    if outputs is None:
        state = f"ended {status}" if status is not None else "has not finished"
        raise _Unresolvable(f"{target.fqn} {state}: it has no output variables to read", "R44")
    if rest[2] not in outputs:
        raise _Unresolvable(
            f"{target.fqn} has " + _unknown("no output variable", rest[2], sorted(outputs)), "R44"
        )
    return outputs[rest[2]]


def _status_so_far(run: RunValues, container: Any) -> str:
    """``currentStatus`` of a running container: FAILED once a node in it ended badly (Harness
    counts any failure), else RUNNING."""
    statuses = run.statuses
    for node in container.walk():
        status = statuses.get(node.fqn)
        if status is not None and node is not container and status not in POSITIVE and status != "NotStarted":
            return "FAILED"
    return "RUNNING"


def _with_fqn(err: ExpressionError, fqn: str, prefix: str = "") -> ExpressionError:
    return ExpressionError(prefix + err.reason, err.expression, err.position, err.fqn or fqn)


def evaluate_condition(run: RunValues, node: Any, text: str, failure: Any = None) -> Any:
    """Evaluate a ``when`` (or retry) condition of ``node`` with the values known now.

    Raises:
        ExpressionError: a reference cannot be resolved now (with its position and ``node``'s FQN).
    """
    from .expressions import parse_condition

    try:
        return parse_condition(text).evaluate(lambda ref: resolve(run, node, ref.path, failure))
    except ExpressionError as err:
        raise _with_fqn(err, node.fqn) from None


def render_template(run: RunValues, node: Any, text: Any, budget: list[int] | None = None) -> Any:
    """Resolve the ``<+…>`` expressions embedded in ``text`` for ``node`` (as Harness does
    before a step runs); a text that is exactly one reference returns its raw value.

    ``budget``: ``[characters left]`` shared by the texts of one step (its inputs, its spec):
    each text built (not a raw reference) takes its length from it, and going below zero is an
    ``ExpressionError`` — 380 inputs of ``<+big>x`` would otherwise build 380 values of 10 MB.
    """
    if not isinstance(text, str) or "<+" not in text:
        return text
    from .expressions import MAX_VALUE, parse_template

    expression = parse_template(text)
    value = expression.evaluate(lambda ref: resolve(run, node, ref.path))
    if budget is not None and isinstance(value, str) and not expression.raw:
        budget[0] -= len(value)
        if budget[0] < 0:
            raise ExpressionError(
                f"the values built for this step add up to over {MAX_VALUE:,} characters (limit "
                f"{MAX_VALUE:,} per step): an expression builds no values that large",
                text,
                0,
            )
    return value


def resolve_inputs(run: RunValues, node: Any) -> dict[str, Any]:
    """The step's ``inputs`` with every embedded ``<+…>`` resolved now, just before it runs.

    Raises:
        ExpressionError: naming the input, with the position of the reference in its text.
    """
    from .expressions import MAX_VALUE

    out, budget = {}, [MAX_VALUE]
    for key, value in (node.inputs or {}).items():
        try:
            out[key] = render_template(run, node, value, budget)
        except ExpressionError as err:
            raise _with_fqn(err, node.fqn, f"input {key!r}: ") from None
    return out
