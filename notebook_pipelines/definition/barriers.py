"""Barriers (SEMANTICS R55–R58, E11, E12): parallel stages or step groups meet at a ``Barrier`` step.

A pipeline declares its barriers (``flowControl: {barriers: [{identifier, name}]}`` in YAML,
``Pipeline(barriers=["ready"])`` in Python); a step ``type: Barrier, spec: {barrierRef: ready}``
is a *participant*. Every participant waits at its Barrier step until all have arrived, then all
go on together (R56). A participant that will never arrive — it failed, or was not started,
before reaching it — fails the ones waiting there (R57, E11); a barrier step's ``timeout``
expiring is a failure too, and fails the others.

What can deadlock is refused before a run (R58, E12): a barrier used twice in one stage or
group, participants that do not run in parallel with each other (the same barrier in
sequential stages), and a barrier inside a looped node with ``maxConcurrency`` (its queued
iterations could never arrive while the running ones wait).

>>> from notebook_pipelines.definition.model import Pipeline, Stage, Step, Parallel
>>> def stage(sid):
...     return Stage(sid, items=[Step("work"), Step("meet", type="Barrier", spec={"barrierRef": "ready"})])
>>> p = Pipeline("p", barriers=["ready"], stages=[stage("a"), stage("b")])
>>> from notebook_pipelines.definition.plan import compile_plan
>>> for problem in barrier_problems(compile_plan(p, check=False)):
...     print(problem.rule, problem.message)  # doctest: +ELLIPSIS
R58 the barrier 'ready' is used by ...stages.a... and ...stages.b..., which do not run in parallel: ...
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import Problem

__all__ = ["BARRIER_TYPE", "barrier_problems", "barrier_ref", "declared_barriers"]

#: The Harness step type of a barrier step (R55).
BARRIER_TYPE = "Barrier"


def barrier_ref(step: Any) -> Any:
    """The ``barrierRef`` of a Barrier step (model ``Step`` or plan node), else None."""
    if getattr(step, "type", None) != BARRIER_TYPE:
        return None
    spec = getattr(step, "spec", None)
    return spec.get("barrierRef") if isinstance(spec, Mapping) else None


def declared_barriers(pipeline: Any) -> list[str]:
    """The barrier identifiers a pipeline declares: ``barriers=`` and YAML ``flowControl.barriers``."""
    out: list[str] = []
    extra = getattr(pipeline, "extra", None) or {}
    flow = extra.get("flowControl") if isinstance(extra, Mapping) else None
    items = [*(getattr(pipeline, "barriers", None) or ())]
    if isinstance(flow, Mapping) and isinstance(flow.get("barriers"), list):
        items += flow["barriers"]
    for item in items:
        ident = item.get("identifier") if isinstance(item, Mapping) else item
        if isinstance(ident, str) and ident not in out:
            out.append(ident)
    return out


def _chain(node: Any) -> list[Any]:
    out = []
    while node is not None:
        out.append(node)
        node = node.parent
    return out[::-1]


def _parallel(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` run side by side: below their closest common container they
    sit in different branches of one parallel block (the same serial position)."""
    ca, cb = _chain(a), _chain(b)
    i = 0
    while i < min(len(ca), len(cb)) and ca[i] is cb[i]:
        i += 1
    if i >= len(ca) or i >= len(cb):
        return False  # one contains the other
    return bool(ca[i].block == cb[i].block and ca[i].phase == cb[i].phase)


def _owner(node: Any) -> Any:
    return node.parent


def barrier_problems(plan: Any) -> list[Problem]:
    """Every barrier problem that can be known before running (R55, R58, E12)."""
    declared = declared_barriers(plan.pipeline)
    by_ref: dict[str, list[Any]] = {}
    problems: list[Problem] = []
    fix_declare = (
        "declare it: Pipeline(..., barriers=['ID']) "
        "(YAML: flowControl: {barriers: [{identifier: ID, name: ID}]})"
    )
    for node in plan.nodes:
        if node.kind != "step" or node.type != BARRIER_TYPE:
            continue
        ref = barrier_ref(node)
        if not isinstance(ref, str) or not ref or "<+" in ref:
            problems.append(
                Problem(
                    node.fqn,
                    "R55",
                    f"a Barrier step needs spec.barrierRef naming a barrier, not {ref!r}",
                    "give spec={'barrierRef': 'ID'} with a declared barrier (not an expression)",
                )
            )
            continue
        if ref not in declared:
            known = ", ".join(declared) or "none"
            problems.append(
                Problem(
                    node.fqn, "R55", f"the barrier {ref!r} is not declared (declared: {known})", fix_declare
                )
            )
            continue
        by_ref.setdefault(ref, []).append(node)
        cur = node.parent
        while cur is not None:
            if cur.strategy is not None and getattr(cur.strategy, "max_concurrency", None) is not None:
                problems.append(
                    Problem(
                        node.fqn,
                        "R58",
                        f"the barrier {ref!r} is inside {cur.fqn}, a looped node with maxConcurrency: "
                        "its queued iterations could never arrive while the running ones wait "
                        "(deadlock, E12)",
                        "remove maxConcurrency from the looping strategy, or move the barrier out of it",
                    )
                )
                break
            cur = cur.parent
    for ref, nodes in by_ref.items():
        owners: dict[int, Any] = {}
        for node in nodes:
            owner = _owner(node)
            if id(owner) in owners:
                problems.append(
                    Problem(node.fqn, "R58", f"the barrier {ref!r} is used twice in {owner.fqn}",
                            "use each barrier at most once per stage or step group")
                )  # fmt: skip
            owners[id(owner)] = owner
        for i, a in enumerate(nodes):
            for b in nodes[i + 1 :]:
                if _owner(a) is not _owner(b) and not _parallel(a, b):
                    problems.append(
                        Problem(
                            b.fqn,
                            "R58",
                            f"the barrier {ref!r} is used by {a.fqn} and {b.fqn}, which do not run in "
                            "parallel: the first would wait for ever for the second (deadlock, E12)",
                            "use a barrier only in stages (or step groups) of one parallel block",
                        )
                    )
    return problems
