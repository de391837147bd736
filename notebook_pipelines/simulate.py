"""``simulate()``: the same scheduler as ``run()``, on a virtual clock.

No real waiting and no step bodies: each step takes its declared duration (``duration=`` on
the step, or the ``durations`` mapping, or ``default``), fails where ``failures`` says, and
manual interventions are answered from ``interventions`` (D12). Deterministic for a seed.

>>> import notebook_pipelines as nbp
>>> p = nbp.Pipeline("p")
>>> with p.stage("s") as s:
...     _ = s.step("a", duration="2s", failure_strategies=nbp.Retry(1, intervals="1s"))
>>> t = simulate(p, failures={"a": [1]}, run_id="doc")
>>> t[["step", "attempt", "status", "start_s", "end_s", "action"]].dropna(subset=["step"]).to_string(index=False)
'step  attempt  status  start_s  end_s action\\n   a        1  Failed      0.0    2.0  Retry\\n   a        2 Success      3.0    5.0    NaN'
"""

from __future__ import annotations

import fnmatch
import zlib
from collections.abc import Callable, Mapping
from typing import Any

from .durations import parse_duration
from .engine import execute
from .executors.virtual import VirtualClock, VirtualExecutor

__all__ = ["simulate", "DEFAULT_START"]

#: Virtual runs start at this UTC instant unless ``start=`` says otherwise (deterministic traces).
DEFAULT_START = "2026-01-01T00:00:00Z"


def _lookup(mapping: Mapping | None, node: Any) -> Any:
    """The value for ``node`` in a mapping keyed by step id, FQN or glob; ``None`` if absent."""
    if not mapping:
        return None
    for key in (node.fqn, node.id):
        if key in mapping:
            return mapping[key]
    for key, value in mapping.items():
        if isinstance(key, str) and any(ch in key for ch in "*?[") and (
            fnmatch.fnmatchcase(node.fqn, key) or fnmatch.fnmatchcase(node.id, key)
        ):
            return value
    return None


def _seconds(value: Any, rng: Any, where: str) -> float:
    if callable(value):
        value = value(rng)
    elif hasattr(value, "rvs"):  # a scipy.stats frozen distribution
        value = value.rvs(random_state=rng)
    seconds = parse_duration(value, where)
    return 0.0 if seconds is None else seconds


def _failure_spec(value: Any, attempt: int) -> tuple[str, str] | None:
    """Does a ``failures`` entry fail this attempt? Returns (error_type, message) or None."""
    error_type = "Unknown"
    attempts: Any = True
    if isinstance(value, Mapping):
        error_type = value.get("error_type", error_type)
        attempts = value.get("attempts", True)
    elif isinstance(value, str):
        error_type = value
    elif value is False or value is None:
        return None
    elif not isinstance(value, bool):
        attempts = value
    if attempts is True or (isinstance(attempts, int) and not isinstance(attempts, bool) and attempt <= attempts):
        return error_type, f"injected failure (attempt {attempt})"
    if not isinstance(attempts, int | bool) and attempt in set(attempts):
        return error_type, f"injected failure (attempt {attempt})"
    return None


def simulate(
    pipeline: Any,
    *,
    durations: Mapping | Callable | None = None,
    default: Any = 1.0,
    failures: Mapping | None = None,
    interventions: Mapping | None = None,
    seed: int | None = 0,
    run_id: str | None = None,
    start: Any = DEFAULT_START,
    listeners: Any = (),
):
    """Run ``pipeline`` in virtual time and return its trace (the schema of ``run()``).

    Args:
        durations: seconds per step — a mapping by step id, FQN or glob to seconds, a Harness
            duration, a callable ``rng -> seconds`` or a scipy frozen distribution; or one
            callable ``(node, rng) -> seconds`` for all steps. A step's own ``duration=``
            is used when the mapping has no entry.
        default: the duration of a step with none declared.
        failures: which steps fail — by id/FQN/glob: ``True`` (every attempt), an int ``n``
            (the first n attempts), a list of attempt numbers, an error type string, or
            ``{"attempts": [1, 2], "error_type": "Timeout"}``.
        interventions: scripted answers to manual interventions by id/FQN/glob: a choice
            (``"Retry"``) or ``(choice, seconds)`` to answer after a delay (D12).
        seed: seeds the ``numpy.random.Generator`` that sampled durations draw from; each
            step draws from its own stream, so one step's distribution does not shift others.
        run_id: fix the run id (default: ``"sim-<seed>"``).
        start: the virtual run's start (UTC); the trace's timestamps count from it.
    """
    import numpy as np
    import pandas as pd

    plan = pipeline.plan() if hasattr(pipeline, "plan") else pipeline
    epoch_ns = pd.Timestamp(start).tz_convert("UTC").value if pd.Timestamp(start).tzinfo else pd.Timestamp(
        start, tz="UTC"
    ).value
    generators: dict[tuple, Any] = {}

    def rng_for(node: Any, attempt: int) -> Any:
        key = (node.index, attempt)
        if key not in generators:
            generators[key] = np.random.default_rng([seed or 0, zlib.crc32(node.fqn.encode()), attempt])
        return generators[key]

    def duration(node: Any, attempt: int) -> float:
        if callable(durations) and not isinstance(durations, Mapping):
            return _seconds(durations(node, rng_for(node, attempt)), None, node.fqn)
        value = _lookup(durations, node)
        if value is None:
            if node.duration is not None:
                return node.duration
            value = default
        if callable(value) or hasattr(value, "rvs"):
            return _seconds(value, rng_for(node, attempt), node.fqn)
        return _seconds(value, None, node.fqn)

    def failure(node: Any, attempt: int) -> tuple[str, str] | None:
        value = _lookup(failures, node)
        return None if value is None else _failure_spec(value, attempt)

    clock = VirtualClock(epoch_ns)
    executor = VirtualExecutor(duration, failure, clock)
    scripted = None
    if interventions:

        def scripted(request: Any) -> None:
            answer = _lookup(interventions, request.node)
            if answer is None:
                return  # wait the timeout, then on_timeout (D12)
            choice, delay = (answer, 0.0) if isinstance(answer, str) else answer
            delay = parse_duration(delay) or 0.0
            executor.scheduler.call_at(clock.now() + delay, lambda r: r.answer(choice), request)

    _status, trace, _ = execute(
        plan,
        executor,
        clock,
        run_id=run_id or f"sim-{seed}",
        listeners=listeners,
        on_intervention=scripted,
    )
    return trace
