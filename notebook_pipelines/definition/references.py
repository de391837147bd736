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
  outputs, unless the reader's branch needs the other's, D14). "Later" and "in parallel" are
  decided by the serial positions (``block``) of the two nodes' branches below their closest
  common container, and by the needs of a parallel block's members; rollback lists run after
  the execution list they belong to.

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

from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import ExpressionError, Problem
from .reference_paths import (
    FIXES,
    FOREIGN_ROOTS,
    HARNESS_STATUS,
    KNOWN_ROOTS,
    LOOP_ROOTS,
    MASKED,
    YAML_FIXES,
    RunValues,
    Unresolvable,
    attribute_kind,
    check_reference,
    encloses,
    iteration_attribute,
    loop_value,
    node_of_path,
    order_problem,
    refuse_un_postfixed,
    static_value,
    unknown_name,
)
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
                    if strict and ref.path[0] not in FOREIGN_ROOTS:
                        message = f"{_quoted(where, text, ref)}: unknown root {ref.path[0]!r}"
                        problems.append(Problem(node.fqn, "R43", message, FIXES["R43"], **_caret(text, ref)))
                    continue
                try:
                    check_reference(plan, node, ref.path, retry=where == "retry condition")
                except Unresolvable as err:
                    message = f"{_quoted(where, text, ref)}: {err}"
                    yaml_fix = YAML_FIXES.get(err.fix, "")
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


# -- run time ---------------------------------------------------------------------------------
def resolve(run: RunValues, node: Any, path: tuple[Any, ...], failure: Any = None) -> Any:
    """The value of a reference read by ``node`` now.

    ``failure``: the failed attempt's outcome, when a retry condition is evaluated.

    Raises:
        LookupError: with the reason; the expression layer turns it into an ExpressionError
            that shows the reference with a caret.
    """
    if path[0] in LOOP_ROOTS:
        return loop_value(run, node, path)
    if path[0] == "secrets":
        return MASKED  # <+secrets.getValue("x")>: valid, and never a secret's value
    plan = run.view
    target, rest = node_of_path(plan, node, path)
    kind = attribute_kind(target, rest)
    if kind == "static":
        return static_value(target, rest)
    if kind == "iteration":
        if rest[0] == "matrix" and target.loop is None:
            raise Unresolvable(f"{target.fqn} is not an iteration of a matrix", "R52")
        return iteration_attribute(run, target, rest)
    if kind in ("runtime", "current") and not (kind == "current" and encloses(target, node)):
        refuse_un_postfixed(node, target, rest, run=True)
    if kind == "failure":
        if failure is None or target is not node:
            raise Unresolvable("failureInfo is known only in a retry condition of the failing step", "R18")
        return failure.error if rest[1] == "message" else failure.error_type
    if kind == "current" and encloses(target, node):
        return _status_so_far(run, target)
    status = run.statuses.get(target.fqn)
    if rest[0] in ("status", "currentStatus"):
        if status is None:
            raise Unresolvable(f"{target.fqn} has not finished: it has no status to read yet", "R45")
        return HARNESS_STATUS.get(status, status.upper())
    outputs = run.outputs.get(target.fqn)
    if outputs is None:
        state = f"ended {status}" if status is not None else "has not finished"
        raise Unresolvable(f"{target.fqn} {state}: it has no output variables to read", "R44")
    if rest[2] not in outputs:
        raise Unresolvable(
            f"{target.fqn} has " + unknown_name("no output variable", rest[2], sorted(outputs)), "R44"
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
