"""The plans of recent runs: how a trace finds the pipeline it came from.

A trace DataFrame holds no plan (``DataFrame.attrs`` is deep-copied and compared by pandas on
``concat``/``merge``, so it keeps plain values only). Instead :func:`~.running.execute`
remembers the plan of every run — real or simulated, in the foreground or with ``start()`` —
here when the run starts (so the partial trace of a run still going finds it by run id), and
stamps the trace with the run's key (``trace.attrs["run_key"]``, such as
``"3f9a1c2e-17"``: this process's token and a counter, so a trace written to Parquet — which
keeps ``attrs`` — and read in another kernel matches nothing there; filtering and copying a
trace keep it). What needs a trace's pipeline asks
:func:`plan_for_trace`: ``nbp.replay(trace)``, ``trace.pipeline.what_if()``,
``suggest_layout(trace=…)``.

The key decides first, so two simulations that share a run id (the default ``sim-<seed>``,
the same for every simulation with that seed) each find their own plan. A trace without the
key (``concat`` of several runs drops ``attrs``) is matched by run id: the most recent run of
that id whose pipeline id is the trace's and whose plan has every node of the trace.

The registry is bounded: the last :data:`MAX_RUNS` runs, and of those only as many as hold
:data:`MAX_NODES` plan nodes in all (the most recent run is always kept). A plan of a
100,000-step pipeline takes ~100 MB with its definition; without the second bound, repeated
simulations of one would keep gigabytes alive, and every full collection of the garbage
collector would walk them. Analyses that simulate many designs
for their own use (``compare``, the candidates of ``suggest_layout``) do it inside
:func:`unremembered`, so they do not push the user's runs out. A trace read from a file, or one
older than that, has no plan here: pass the pipeline explicitly.

>>> from notebook_pipelines.definition.model import Pipeline, Stage, Step
>>> from notebook_pipelines.definition.plan import compile_plan
>>> plan = compile_plan(Pipeline("p", stages=[Stage("s", items=[Step("a")])]))
>>> key = remember("doc-run", plan)
>>> plan_of("doc-run", pipeline="p") is plan, plan_of("doc-run", pipeline="other")
(True, None)
>>> plan_of("any-run-id", key=key) is plan  # the key decides first
True
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

__all__ = ["KEY", "MAX_NODES", "MAX_RUNS", "plan_for_trace", "plan_of", "remember", "stamp", "unremembered"]

#: how many runs the registry keeps (the least recently made go first)
MAX_RUNS = 64
#: the most plan nodes the kept runs hold in all, the most recent run's aside (older runs go first)
MAX_NODES = 250_000
#: the ``trace.attrs`` entry that holds a run's key in this process
KEY = "run_key"


class _Run(NamedTuple):
    run_id: str
    pipeline: str
    plan: Any


_RUNS: OrderedDict[str, _Run] = OrderedDict()
_NODES = [0]  # the plan nodes the kept runs hold in all
_LOCK = threading.Lock()
_KEYS = itertools.count(1)
_PROCESS = os.urandom(4).hex()  # keys made here never match a run of another process
_LOCAL = threading.local()


@contextmanager
def unremembered() -> Iterator[None]:
    """Runs made inside (on this thread) are not remembered: an analysis's own simulations."""
    before = getattr(_LOCAL, "off", 0)
    _LOCAL.off = before + 1
    try:
        yield
    finally:
        _LOCAL.off = before


def remember(run_id: str, plan: Any, trace: Any = None) -> str | None:
    """Keep ``plan`` as the plan of a run ``run_id``; its key, also put in ``trace.attrs``.

    ``None`` (and nothing kept) inside :func:`unremembered`.
    """
    if getattr(_LOCAL, "off", 0):
        return None
    with _LOCK:
        key = f"{_PROCESS}-{next(_KEYS)}"
        _RUNS[key] = _Run(str(run_id), plan.pipeline.id, plan)
        _NODES[0] += _size(plan)
        while len(_RUNS) > MAX_RUNS or (len(_RUNS) > 1 and _NODES[0] - _size(plan) > MAX_NODES):
            _NODES[0] -= _size(_RUNS.popitem(last=False)[1].plan)
    stamp(trace, key)
    return key


def _size(plan: Any) -> int:
    """How many nodes ``plan`` holds (what it costs to keep)."""
    nodes = getattr(plan, "nodes", None)
    return len(nodes) if nodes is not None else 1


def stamp(trace: Any, key: str | None) -> None:
    """Put the run's ``key`` in ``trace.attrs`` (nothing for ``None``: a run not remembered)."""
    if key is not None and trace is not None and hasattr(trace, "attrs"):
        trace.attrs[KEY] = key


def plan_of(
    run_id: str, *, pipeline: str | None = None, fqns: Iterable[str] = (), key: str | None = None
) -> Any:
    """The plan of the run with ``key`` if it is still kept; else the most recent plan of
    ``run_id`` whose pipeline id is ``pipeline`` (if given) and that has a node for every FQN
    in ``fqns``; ``None`` if there is none."""
    with _LOCK:
        exact = _RUNS.get(key) if isinstance(key, str) else None
        runs = [] if exact is not None else [r for r in reversed(_RUNS.values()) if r.run_id == run_id]
    if exact is not None:
        return exact.plan
    wanted = set(fqns)
    for run in runs:
        if pipeline is not None and run.pipeline != pipeline:
            continue
        if wanted <= run.plan.by_fqn.keys():
            return run.plan
    return None


def plan_for_trace(trace: Any) -> Any:
    """The plan of the run that made ``trace`` (a trace DataFrame), or ``None`` if this process
    does not remember it. Iteration rows (R46) are the run's copies of a looped node, named with
    a postfix the plan does not hold: they are not matched."""
    attrs = getattr(trace, "attrs", {}) or {}
    run_id = attrs.get("run_id")
    if "run_id" in getattr(trace, "columns", ()):  # the rows say which run they are of
        ids = trace["run_id"].dropna().unique()
        run_id = str(ids[0]) if len(ids) else run_id
    fqns: Iterable[str] = ()
    if "fqn" in getattr(trace, "columns", ()):
        rows = trace[trace["iteration"].isna()] if "iteration" in trace.columns else trace
        fqns = set(rows["fqn"].dropna().astype(str))
    return plan_of(str(run_id or ""), pipeline=attrs.get("pipeline"), fqns=fqns, key=attrs.get(KEY))
