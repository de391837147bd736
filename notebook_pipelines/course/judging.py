"""What the puzzles compare and run: a plan's steps and the references between them, what each
step waits for (moves), a level's simulation, and whether a trace meets a goal.

It stands on the model and the plan (:mod:`~notebook_pipelines.definition.plan`), the
references (``analysis.layout.references``), the simulator (imported when a level is judged)
and :mod:`.level_files`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..definition.durations import format_duration
from ..definition.model import Pipeline
from ..definition.plan import Plan, PlanNode, compile_plan
from ..definition.references import expressions_of
from .level_files import Level

__all__ = ["count_moves"]

_OUTPUT_REF = re.compile(
    r"execution\.steps\.(?:[A-Za-z_$][\w$]*\.steps\.)*([A-Za-z_$][\w$]*)\.output\.outputVariables\.([A-Za-z_$][\w$]*)"
)


def declared_durations(plan: Plan) -> dict[str, Any]:
    """Each step's own ``duration=``, by id (by FQN where two steps share an id)."""
    steps = [n for n in plan.nodes if n.kind == "step" and n.duration is not None]
    ids = [n.id for n in steps]
    return {(n.id if ids.count(n.id) == 1 else n.fqn): n.duration for n in steps}


def _key(node: PlanNode) -> tuple[str | None, str]:
    """A step's identity across layouts: its stage and its id (moving into a group keeps it)."""
    return (node.stage.id if node.stage is not None else None, node.id)


def steps_by_key(plan: Plan) -> dict[tuple, PlanNode]:
    return {_key(n): n for n in plan.nodes if n.kind == "step"}


def dependencies(plan: Plan) -> set[tuple[str, str]]:
    """``(reader, target)`` (step ids) for every reference a step makes to another node."""
    from ..analysis.layout import references

    return {(reader.id, target.id) for reader, target in references(plan) if target is not reader}


def _outputs_read(plan: Plan) -> dict[str, dict[str, str]]:
    """A placeholder for every output variable a reference reads, so a sketch without bodies runs."""
    read: dict[str, dict[str, str]] = {}
    for node in plan.nodes:
        for _where, text, _strict in expressions_of(node):
            for step, var in _OUTPUT_REF.findall(text):
                read.setdefault(step, {})[var] = f"{step}.{var}"
    return read


def simulate_level(level: Level, pipeline: Pipeline) -> Any:
    from ..engine.simulation import simulate

    plan = compile_plan(pipeline)
    goal = level.goal
    return simulate(
        plan,
        durations=level.durations,
        default=0.0,
        failures=goal.get("failures"),
        outputs=_outputs_read(plan),
        strict=False,
        run_id="puzzle",
    )


def makespan_of(trace: Any) -> float:
    root = trace[trace.kind == "pipeline"]
    return float(root.duration_s.iloc[-1]) if len(root) else 0.0


def goal_failures(goal: Mapping, trace: Any, makespan: float) -> str | None:
    """Why ``trace`` misses ``goal`` (one sentence), or None when it meets it."""
    status = trace[trace.kind == "pipeline"].status.iloc[-1]
    wanted = goal.get("status", "Success" if "makespan_at_most" in goal else None)
    if wanted is not None and status != wanted:
        return f"the pipeline ends {status}, the goal is {wanted}"
    limit = goal.get("makespan_at_most")
    if limit is not None and makespan > limit + 1e-9:
        return f"it takes {format_duration(makespan)}; the goal is at most {format_duration(limit)}"
    steps = trace[trace.kind == "step"].drop_duplicates("fqn", keep="last")
    by_id = dict(zip(steps.step, steps.status.astype(str)))
    for step, want in (goal.get("statuses") or {}).items():
        got = by_id.get(step, "missing")
        if got != want:
            return f"`{step}` ends {got}; the goal is {want}"
    return None


def _waits(plan: Plan) -> dict[str, tuple]:
    """Per step id: (its containers' ids, its list, the set of step ids before it in the layout)."""
    out: dict[tuple, tuple] = {}

    def visit(container: PlanNode, before: frozenset, path: tuple) -> None:
        for phase, items in (("execution", container.items or ()), ("rollback", container.rollback or ())):
            done = before if phase == "execution" else frozenset()
            for item in items:
                members = item.items if item.kind == "parallel" else (item,)
                for node in members:
                    if node.kind == "step":
                        out[_key(node)] = (path, phase, done)
                    else:
                        visit(node, done, (*path, node.id))
                done = done | {
                    _key(n) for m in members for n in m.walk() if n.kind == "step" and n.phase == "execution"
                }

    visit(plan.root, frozenset(), ())
    return out


def count_moves(start: Plan, answer: Plan) -> int:
    """Steps that wait for a different set of steps, or sit in another container, than at the start."""
    a, b = _waits(start), _waits(answer)
    return sum(1 for step, where in a.items() if b.get(step) != where)
