"""The pipeline behind a Harness run: :func:`pipeline_from_execution` rebuilds it from the trace.

Stages, step groups, parallel blocks (rows sharing a block), steps and rollback lists come back
in place; a looped node gets a ``Matrix`` with the postfixes Harness gave its iterations; each
step its measured duration; a retried step ``Retry``; a stage whose rollback ran ``StageRollback``.

It stands on the model (:mod:`~notebook_pipelines.definition.model`, ``failure``, ``looping``,
imported when called) and the trace's columns; the trace comes from :mod:`.harness_frame`.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from ..errors import HarnessExecutionError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["UNKNOWN_STEPS", "pipeline_from_execution"]

#: the one step of a rebuilt container whose steps the execution does not show (it never started)
UNKNOWN_STEPS = "steps_not_in_execution"


def _recorded_postfix(indices: tuple, values: tuple) -> str:
    """The postfix of a rebuilt loop's iteration: the one Harness gave it (its only axis value)."""
    return str(values[0])


def _overlap(spans: list[tuple[float, float]]) -> int:
    """The most spans open at once (how many iterations ran side by side)."""
    events = sorted([(s, 1) for s, e in spans] + [(e, -1) for s, e in spans])
    best = now = 0
    for _, change in events:
        now += change
        best = max(best, now)
    return best


def pipeline_from_execution(trace: pd.DataFrame, *, id: str | None = None) -> Any:
    """The pipeline a Harness run executed, rebuilt from its trace (:func:`load_harness_execution`).

    Stages (side by side where they shared a block), step groups, parallel blocks, steps and
    rollback lists come back in place; a looped node gets a ``Matrix`` whose iterations carry
    the postfixes Harness gave them (so a simulation's FQNs are the run's) and whose
    ``max_concurrency`` is how many ran at once; each step declares its measured duration
    (the mean of its attempts); a retried step gets ``Retry`` with as many retries and the
    measured wait; a stage whose rollback ran gets ``StageRollback``. Its picture can be
    coloured by the trace (``p.render(trace)``) and the run re-simulated on its measured
    durations (``trace.pipeline.what_if(pipeline=p, …)``). Step bodies, conditions and types
    are not in an execution's graph: the rebuilt steps have none. A stage that never started
    shows no steps: it gets one step of no duration, ``steps_not_in_execution``.

    Raises:
        HarnessExecutionError: the trace has no pipeline row or no stage.
    """
    from ..definition.model import Parallel, Pipeline

    by_fqn, children = _rows_by_fqn(trace)
    if "pipeline" not in by_fqn:
        raise HarnessExecutionError(
            "pipeline_from_execution(): the trace has no pipeline row (fqn 'pipeline')"
        )
    rebuild = _Rebuild(by_fqn, children)
    stages, _ = _blocks(children.get("pipeline", []), by_fqn, rebuild.node, 0, Parallel)
    if not stages:
        raise HarnessExecutionError("pipeline_from_execution(): the trace has no stage")
    return Pipeline(id or str(trace.attrs.get("pipeline") or "pipeline"), stages=stages, rules="current")


def _rows_by_fqn(trace: pd.DataFrame) -> tuple[dict[str, list[dict]], dict[str, list[str]]]:
    """The trace's rows by fqn (attempts in trace order), and each fqn's children in trace order."""
    by_fqn: dict[str, list[dict]] = {}
    children: dict[str, list[str]] = {}
    for row in trace.to_dict("records"):
        fqn = str(row["fqn"])
        if fqn not in by_fqn:
            by_fqn[fqn] = []
            parent = row["parent"]
            if isinstance(parent, str):
                children.setdefault(parent, []).append(fqn)
        by_fqn[fqn].append(row)
    return by_fqn, children


def _number(value: Any) -> float | None:
    return None if value is None or value != value else float(value)  # NaN → None


class _Rebuild:
    """Builds the model's node of each fqn from its rows (children by :func:`_blocks`)."""

    def __init__(self, by_fqn: dict[str, list[dict]], children: dict[str, list[str]]) -> None:
        self.by_fqn, self.children = by_fqn, children

    def node(self, fqn: str, depth: int) -> Any:
        """The ``Stage``, ``StepGroup`` or ``Step`` at ``fqn`` (``depth`` levels below the pipeline)."""
        from ..definition.failure import StageRollback
        from ..definition.model import Parallel, Stage, Step, StepGroup

        if depth > 64:
            raise HarnessExecutionError(
                f"pipeline_from_execution(): {fqn} is nested more than 64 levels deep"
            )
        by_fqn = self.by_fqn
        kind, ident = str(by_fqn[fqn][0]["kind"]), fqn.rsplit(".", 1)[-1]
        strategy, iterations, kids = self.loop(fqn, ident)
        if kind == "step":
            return self.step(fqn, ident, strategy, iterations)
        execution, rollback = _blocks(kids, by_fqn, self.node, depth, Parallel)
        if not execution:  # a stage that never started: its steps are not in the execution
            execution = [Step(UNKNOWN_STEPS, duration=0)]
        if kind == "stage":
            ran_rollback = any(
                str(by_fqn[k][0]["phase"]) == "rollback" and _number(by_fqn[k][0]["start_s"]) is not None
                for k in kids
            )
            return Stage(
                ident,
                items=execution,
                rollback_items=rollback,
                strategy=strategy,
                failure_strategies=StageRollback() if ran_rollback else None,
            )
        return StepGroup(ident, items=execution, rollback_items=rollback, strategy=strategy)

    def loop(self, fqn: str, ident: str) -> tuple[Any, list[str], list[str]]:
        """A looped node's ``Matrix`` (None if not looped), its iterations' fqns in order, and the
        children of its body (as the first iteration ran it; else the node's own children)."""
        from ..definition.looping import Matrix

        by_fqn = self.by_fqn
        kids = self.children.get(fqn, [])
        iterations = [
            k
            for k in kids
            if by_fqn[k][0]["iteration"] is not None
            and by_fqn[k][0]["iteration"] == by_fqn[k][0]["iteration"]
        ]
        iterations = [k for k in iterations if _is_iteration(by_fqn[k][0])]
        if not iterations:
            return None, [], kids
        iterations.sort(key=lambda k: int(by_fqn[k][0]["iteration"]))
        postfixes = [k.rsplit(".", 1)[-1][len(ident) :] for k in iterations]
        spans = [(_number(by_fqn[k][0]["start_s"]), _number(by_fqn[k][-1]["end_s"])) for k in iterations]
        spans = [(s, e) for s, e in spans if s is not None and e is not None]
        strategy = Matrix(
            {"iteration": postfixes},
            max_concurrency=max(1, _overlap(spans)) if spans else None,
            postfix=_recorded_postfix,
        )
        return strategy, iterations, self.children.get(iterations[0], [])

    def step(self, fqn: str, ident: str, strategy: Any, iterations: list[str]) -> Any:
        """A step with its measured duration (the mean of its attempts) and ``Retry`` if retried."""
        from ..definition.failure import Retry
        from ..definition.model import Step

        durations = [  # an end before the start (a damaged or skewed record) counts as no time
            max(0.0, _number(r["end_s"]) - _number(r["start_s"]))
            for r in self.by_fqn[iterations[0] if iterations else fqn]
            if _number(r["start_s"]) is not None and _number(r["end_s"]) is not None
        ]
        attempts = self.by_fqn[fqn]
        retries = max(int(r["attempt"]) for r in attempts) - 1
        failure = None
        if retries > 0:
            waits = [
                _number(b["start_s"]) - _number(a["end_s"])
                for a, b in itertools.pairwise(attempts)
                if _number(a["end_s"]) is not None and _number(b["start_s"]) is not None
            ]
            failure = Retry(retries, intervals=(max(0.0, waits[0]),) if waits else ())
        return Step(
            ident,
            duration=sum(durations) / len(durations) if durations else None,
            strategy=strategy,
            failure_strategies=failure,
        )


def _is_iteration(row: dict) -> bool:
    """An iteration row of a looped node: its parent is the looped node (the postfixed fqn's stem)."""
    parent, fqn = str(row["parent"]), str(row["fqn"])
    stem = parent.rsplit(".", 1)[-1]
    return fqn.rsplit(".", 1)[0] == parent.rsplit(".", 1)[0] and fqn.rsplit(".", 1)[-1].startswith(stem)


def _blocks(kids: list[str], by_fqn: dict, build: Any, depth: int, parallel: Any) -> tuple[list, list]:
    """A container's execution and rollback lists: its children by block (a block of several
    is a ``Parallel``)."""
    lists: dict[bool, dict[int, list]] = {False: {}, True: {}}
    for k in kids:
        first = by_fqn[k][0]
        block = first["block"]
        block = -1 if block is None or block != block else int(block)
        lists[str(first["phase"]) == "rollback"].setdefault(block, []).append(build(k, depth + 1))
    out = []
    for phase in (False, True):
        items = []
        for _, members in sorted(lists[phase].items()):
            items.append(members[0] if len(members) == 1 else parallel(items=members))
        out.append(items)
    return out[0], out[1]
