"""The plans of recent runs, by run id: how a trace finds the pipeline it came from.

A trace DataFrame holds no plan (``DataFrame.attrs`` is deep-copied and compared by pandas on
``concat``/``merge``, so it keeps plain values only). Instead :func:`~.scheduler.execute`
remembers the plan of every run here, keyed by its ``run_id``; analyses that re-simulate a
trace (``trace.pipeline.what_if``) ask :func:`plan_of`. The registry is bounded: the last
``MAX_RUNS`` run ids, and for each at most ``PER_RUN`` plans (simulations share a default
``run_id`` such as ``sim-0``, so one id may have served several pipelines; the most recent
plan that holds every node of the trace wins). A trace read from a file, or one older than
that, has no plan here: pass the pipeline explicitly.

>>> from notebook_pipelines.definition.model import Pipeline, Stage, Step
>>> from notebook_pipelines.definition.plan import compile_plan
>>> plan = compile_plan(Pipeline("p", stages=[Stage("s", items=[Step("a")])]))
>>> remember("doc-run", plan)
>>> plan_of("doc-run", pipeline="p") is plan, plan_of("doc-run", pipeline="other")
(True, None)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

__all__ = ["MAX_RUNS", "PER_RUN", "plan_of", "remember"]

#: how many run ids the registry keeps (least recently remembered first out)
MAX_RUNS = 64
#: how many plans one run id keeps
PER_RUN = 4

_PLANS: OrderedDict[str, list[Any]] = OrderedDict()
_LOCK = threading.Lock()


def remember(run_id: str, plan: Any) -> None:
    """Keep ``plan`` as the plan of the run ``run_id`` (the most recent first)."""
    with _LOCK:
        plans = [p for p in _PLANS.pop(run_id, []) if p is not plan]
        _PLANS[run_id] = [plan, *plans][:PER_RUN]
        while len(_PLANS) > MAX_RUNS:
            _PLANS.popitem(last=False)


def plan_of(run_id: str, *, pipeline: str | None = None, fqns: Iterable[str] = ()) -> Any:
    """The most recent plan of ``run_id`` whose pipeline id is ``pipeline`` (if given) and that
    has a node for every FQN in ``fqns``; ``None`` if there is none."""
    wanted = set(fqns)
    with _LOCK:
        plans = list(_PLANS.get(run_id, ()))
    for plan in plans:
        if pipeline is not None and plan.pipeline.id != pipeline:
            continue
        if wanted <= plan.by_fqn.keys():
            return plan
    return None
