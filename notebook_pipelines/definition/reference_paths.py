"""Walking a ``<+…>`` path over the plan: the roots a path may start from, the node it names
(:func:`node_of_path`), what it may read there before a run, whether the reader runs after what
it reads (:func:`order_problem`, happens-before), and the values of a looping strategy's
iteration (R46, R49–R52). :mod:`~notebook_pipelines.definition.references` (the design notes)
builds the static checks and the run-time resolution on it, and names these too.

It stands on :mod:`.statuses` only: the plan and the run come in as arguments
(:class:`RunValues` is what it reads of a run).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from .needs import waits_for
from .statuses import POSITIVE

# ``Unresolvable`` is shared with ``references`` too, but is no public error: ``references`` turns
# it into a problem or an ``ExpressionError`` before a user sees it.
__all__ = [
    "FIXES",
    "FOREIGN_ROOTS",
    "HARNESS_STATUS",
    "KNOWN_ROOTS",
    "LOOP_ROOTS",
    "MASKED",
    "YAML_FIXES",
    "RunValues",
    "attribute_kind",
    "check_reference",
    "encloses",
    "iteration_attribute",
    "loop_value",
    "node_of_path",
    "order_problem",
    "refuse_un_postfixed",
    "static_value",
    "unknown_name",
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
FOREIGN_ROOTS = ("secrets", "env", "input")
#: How to fix a reference that breaks each rule (R42…, ``vars``): the ``fix`` of its problem.
FIXES = {
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
YAML_FIXES = {
    FIXES["R42"]: "check each identifier of the path against the pipeline's stages, step groups and steps",
    FIXES["R44"]: "declare it in the step's `spec.outputVariables`, or fix the name",
    FIXES["vars"]: "declare it under `variables:` (`- {name: …, type: String, value: …}`) or fix its name",
}


class Unresolvable(LookupError):
    """A reference that cannot be resolved: the reason, the rule it breaks and how to fix it."""

    def __init__(self, reason: str, rule: str = "R42", fix: str | None = None):
        super().__init__(reason)
        self.rule = rule
        self.fix = fix or FIXES[rule]


def _kind(node: Any) -> str:
    kind: str = node.kind
    return kind.replace("_", " ")


def _children(node: Any, section: str) -> list[str]:
    items = node.items if section == "steps" else node.rollback
    out: list[str] = []
    for item in items or ():
        out.extend(child.id for child in (item.items if item.kind == "parallel" else (item,)))
    return out


def unknown_name(what: str, name: str, known: list[str], where: str = "") -> str:
    """``no axis 'x' (did you mean 'y'? known: …)``: a name not found, the closest one, the known ones."""
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
        raise Unresolvable(
            f"{_kind(node)} {node.id!r} has "
            + unknown_name("no node", ident, _children(node, section), f" in {section}")
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
        Unresolvable: the path names no node of the plan (a ``LookupError``).
    """
    head, rest = path[0], tuple(path[1:])
    if head == "pipeline":
        node = plan.root
        if rest[:1] == ("stages",):
            if len(rest) < 2:
                raise Unresolvable("pipeline.stages needs a stage identifier")
            node = plan.by_fqn.get(f"pipeline.stages.{rest[1]}")
            if node is None and _static(plan):
                node = _postfixed(plan.by_fqn, f"pipeline.stages.{rest[1]}")
            if node is None:
                stages = [n.id for n in plan.nodes if n.kind == "stage"]
                raise Unresolvable("the pipeline has " + unknown_name("no stage", rest[1], stages))
            rest = rest[2:]
    elif head == "stage":
        node = reader if reader.kind == "stage" else reader.stage
    elif head == "execution":
        node = reader if reader.kind == "stage" else reader.stage
        rest = ("spec", "execution", *rest)
    elif head == "stepGroup":
        node = reader.group
        if node is None:
            raise Unresolvable(f"{reader.fqn} is not inside a step group", "R43")
        while rest[:1] == ("getParentStepGroup",):
            parent = node.parent
            if parent is None or parent.kind != "step_group":
                raise Unresolvable(f"step group {node.id!r} is not inside another step group", "R43")
            node, rest = parent, rest[1:]
    elif head == "step":
        if reader.kind != "step":
            raise Unresolvable(f"<+step…> is only meaningful for a step, not a {_kind(reader)}", "R43")
        node = reader
    else:
        raise Unresolvable(f"unknown root {head!r}: use pipeline, stage, stepGroup, step or execution", "R43")
    if node is None:
        raise Unresolvable(f"{reader.fqn} has no {head}", "R43")
    # descend through steps / rollbackSteps
    while rest:
        if node.kind == "stage" and rest[:3] in (
            ("spec", "execution", "steps"),
            ("spec", "execution", "rollbackSteps"),
        ):
            if len(rest) < 4:
                raise Unresolvable("the path stops at a list of steps: name a step")
            node, rest = _child(plan, node, rest[2], rest[3]), rest[4:]
        elif node.kind == "step_group" and rest[:1] in (("steps",), ("rollbackSteps",)):
            if len(rest) < 2:
                raise Unresolvable("the path stops at a list of steps: name a step")
            node, rest = _child(plan, node, rest[0], rest[1]), rest[2:]
        else:
            break
    return node, rest


def attribute_kind(node: Any, rest: tuple[Any, ...]) -> str:
    """``static`` (known before running), ``runtime`` (needs the node finished), ``current``
    (``currentStatus``), ``failure`` (the failed attempt, retry conditions); or raise."""
    if not rest:
        raise Unresolvable(f"the path names the {_kind(node)} {node.id!r}, not a value in it")
    first = rest[0]
    if first in ("name", "identifier", "type", "kind", "fqn") and len(rest) == 1:
        return "static"
    if first == "variables":
        if len(rest) == 1:
            return "static"
        if len(rest) != 2:
            raise Unresolvable('write variables.NAME (or variables["NAME"], R47)')
        if rest[1] not in (node.variables or {}):
            raise Unresolvable(
                f"{_kind(node)} {node.id!r} has "
                + unknown_name("no variable", rest[1], sorted(node.variables or {})),
                fix=FIXES["vars"],
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
            raise Unresolvable("write output.outputVariables.NAME (R44)", "R44")
        declared = node.outputs or ()
        spec_outputs = _declared_spec_outputs(node)
        if (declared or spec_outputs) and rest[2] not in (*declared, *spec_outputs):
            known = sorted({*declared, *spec_outputs})
            raise Unresolvable(
                f"step {node.id!r} declares " + unknown_name("no output variable", rest[2], known), "R44"
            )
        return "runtime"
    if first == "failureInfo" and node.kind == "step":
        if len(rest) != 2 or rest[1] not in ("message", "errorType"):
            raise Unresolvable("write failureInfo.message or failureInfo.errorType", "R18")
        return "failure"
    if first == "exitCode" and node.kind == "step":
        raise Unresolvable(
            "exitCode exists for Harness shell steps only; a step body here is Python",
            "R18",
            "use <+step.failureInfo.message> or <+step.failureInfo.errorType> in a retry condition",
        )
    if node.kind == "stage" and first in ("steps", "rollbackSteps"):
        raise Unresolvable(f"a stage's steps are under spec.execution: write spec.execution.{first}.ID")
    raise Unresolvable(f"unknown attribute {'.'.join(rest)!r} of {_kind(node)} {node.id!r}")


def _declared_spec_outputs(node: Any) -> tuple[Any, ...]:
    spec = node.spec if isinstance(node.spec, Mapping) else {}
    items = spec.get("outputVariables") or ()
    return tuple(item.get("name") for item in items if isinstance(item, Mapping))


def static_value(node: Any, rest: tuple[Any, ...]) -> Any:
    """A value of the definition (``name``, ``identifier``, ``type``, ``variables``…) of ``node``."""
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


def encloses(outer: Any, inner: Any) -> bool:
    """True when ``outer`` is a container above ``inner`` in the plan."""
    return any(a is outer for a in _ancestors(inner))


def order_problem(reader: Any, target: Any) -> str | None:
    """Why ``reader`` cannot read a finished-value of ``target`` (R45), or None if it can.

    ``target`` must have finished whenever ``reader`` starts: it is an earlier item of a
    serial list both sit in (or inside one), a member of a parallel block the reader's member
    needs (D14, or inside one), or an execution node read from a rollback list.
    """
    if target is reader:
        return "a node cannot read its own status or outputs"
    if encloses(target, reader):
        return f"{target.fqn} contains the reader and has not finished when the reader runs"
    if encloses(reader, target):
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
                if waits_for(cur, target):  # a member that needs the target's member (D14)
                    return None
                return f"{target.fqn} runs in parallel with the reader"
            return f"{target.fqn} runs after the reader"
        cur = cur.parent
    return None  # pragma: no cover - every node shares the pipeline


def _order(reader: Any, target: Any, kind: str) -> None:
    """Raise when ``reader`` may not read a ``kind`` value of ``target`` (R45)."""
    if kind == "current" and encloses(target, reader):
        return  # the status so far of a container the reader runs in
    reason = order_problem(reader, target)
    if reason is None:
        return
    if kind == "runtime" and encloses(target, reader):
        raise Unresolvable(reason, "R45", "use currentStatus for the status so far of a running container")
    if target is reader:
        raise Unresolvable(reason, "R45", "read it from a later node (its own name and variables are fine)")
    raise Unresolvable(reason, "R45")


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
            raise Unresolvable("write matrix.AXIS (R49)", "R52")
        return "matrix", None, ("matrix", rest[0])
    if head == "repeat":
        if rest not in (("item",), ("partition",)):
            raise Unresolvable("write repeat.item or repeat.partition (R50)", "R52")
        return "repeat", None, rest
    # strategy.…
    node_id = None
    if rest[:1] == ("node",):
        if len(rest) < 3:
            raise Unresolvable("write strategy.node.NODE_ID.iteration (or iterations, matrix.AXIS, …)", "R52")
        node_id, rest = rest[1], rest[2:]
    if rest in (("iteration",), ("iterations",), ("identifierPostFix",), ("currentStatus",)):
        return None, node_id, rest
    if len(rest) == 2 and rest[0] == "matrix":
        return "matrix", node_id, rest
    raise Unresolvable(
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
    raise Unresolvable(f"{reader.fqn} is not inside a looped node {node_id!r}", "R52")


def _check_loop(reader: Any, path: tuple[Any, ...]) -> str:
    kind, node_id, rest = _loop_path(path)
    if node_id is not None:
        loop = _named(reader, node_id, static=True)
        if kind is not None and _strategy_kind(loop.strategy) != kind:
            raise Unresolvable(f"the looped node {node_id!r} has no matrix", "R52")
    else:
        loop = _static_loop(reader, kind)
    if loop is None:
        what = f"a {kind}" if kind else "a looping strategy"
        raise Unresolvable(f"{reader.fqn} is not inside a node with {what}", "R52")
    if kind == "matrix":
        _check_axis(loop, rest[1])
    return "iteration"


def _check_axis(loop: Any, axis: str) -> None:
    axes = getattr(loop.strategy, "axes", None)
    if isinstance(axes, Mapping) and axis not in axes:
        raise Unresolvable(
            f"the matrix of {loop.fqn} has " + unknown_name("no axis", axis, [str(a) for a in axes]),
            "R49",
            "name an axis of the matrix",
        )


def loop_value(run: RunValues, reader: Any, path: tuple[Any, ...]) -> Any:
    """The value of an iteration expression (``matrix.x``, ``repeat.item``, ``strategy.…``) for ``reader``."""
    kind, node_id, rest = _loop_path(path)
    loop = _named(reader, node_id, static=False) if node_id is not None else _run_loop(reader, kind)
    if loop is None:
        what = f"a {kind}" if kind else "a looping strategy"
        raise Unresolvable(f"{reader.fqn} is not inside a node with {what}", "R52")
    return iteration_attribute(run, loop, rest)


def iteration_attribute(run: RunValues, loop: Any, rest: tuple[Any, ...]) -> Any:
    """One attribute (``rest``) of the iteration ``loop`` in ``run``: an axis, the item, the index…."""
    it = loop.loop
    first = rest[0]
    if first == "matrix":
        if it is None or it.matrix is None:
            raise Unresolvable(f"{loop.fqn} is not an iteration of a matrix", "R52")
        if rest[1] not in it.matrix:
            raise Unresolvable(
                f"the matrix of {loop.fqn} has " + unknown_name("no axis", rest[1], list(it.matrix)), "R49"
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


def refuse_un_postfixed(
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
    raise Unresolvable(
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
    kind = attribute_kind(target, rest)
    if kind == "iteration":
        if rest[0] == "matrix":
            if target.strategy is None or _strategy_kind(target.strategy) != "matrix":
                raise Unresolvable(f"{target.fqn} has no matrix strategy", "R52")
            _check_axis(target, rest[1])
        return kind
    if kind in ("runtime", "current"):
        refuse_un_postfixed(reader, target, rest, run=False, path=path)
    if kind == "failure":
        if not (retry and target is reader):
            raise Unresolvable("failureInfo is known only in a retry condition of the failing step", "R18")
    elif kind in ("runtime", "current"):
        _order(reader, target, kind)
    return kind
