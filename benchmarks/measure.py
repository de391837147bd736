"""The timing harness: a warm-up call, then timed calls, each on a fresh, untimed setup.

- :func:`time_side_by_side`: the engines of a workload each run once untimed (imports, thread
  pools, caches), then take turns for ``repeat`` rounds. A repetition calls ``prepare()``
  (building a fresh pipeline, say) and ``gc.collect()`` before the clock starts, and
  ``time.perf_counter`` brackets nothing but the call; its result is freed after the clock.
- :func:`traced_peaks`: the same under ``tracemalloc``, also giving each call's peak bytes.
- :func:`time_imports`: fresh interpreters that time an import snippet themselves
  (interpreter start-up is left out, being the same for all snippets), bytecode cached.
"""

from __future__ import annotations

import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: a call to time, its arguments bound
Thunk = Callable[[], Any]

#: the project root: subprocesses run there, so they import this checkout
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Timing:
    """Seconds of each timed repetition."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    @property
    def n(self) -> int:
        return len(self.samples)


@dataclass(frozen=True)
class Missing:
    """A baseline that could not run, and why."""

    reason: str


Result = Timing | Missing


def time_side_by_side(
    prepares: Mapping[str, Callable[[], Thunk]],
    repeat: int,
    verify: Mapping[str, Callable[[Any], None]] | None = None,
) -> dict[str, Timing]:
    """Time each entry's thunk ``repeat`` times, the entries taking turns, after a warm-up.

    ``prepare()`` runs before the clock starts (it builds a fresh pipeline, say) and returns
    the thunk to time. Every entry is first called once untimed; ``verify[name]`` checks that
    warm-up result (that the run succeeded), so a broken workload fails loudly instead of
    being timed. Taking turns spreads the drift of a shared machine over all entries alike.
    """
    checks = verify or {}
    for name, prepare in prepares.items():
        warm = prepare()()
        if name in checks:
            checks[name](warm)
        del warm
    samples: dict[str, list[float]] = {name: [] for name in prepares}
    for _ in range(repeat):
        for name, prepare in prepares.items():
            samples[name].append(_time_once(prepare))
    return {name: Timing(tuple(values)) for name, values in samples.items()}


def _time_once(prepare: Callable[[], Thunk]) -> float:
    thunk = prepare()
    gc.collect()
    start = time.perf_counter()
    result = thunk()
    elapsed = time.perf_counter() - start
    del result  # freeing the result (a trace DataFrame) is not part of the call
    return elapsed


def traced_peaks(prepare: Callable[[], Thunk], repeat: int) -> tuple[Timing, list[int]]:
    """Time ``repeat`` calls under ``tracemalloc``; also return each call's peak traced bytes.

    Tracing starts after ``prepare()``, so a peak counts what the call allocates and keeps
    until it returns (its result included), not the input it was given.
    """
    prepare()()  # warm: imports and first-use caches are not counted
    samples, peaks = [], []
    for _ in range(repeat):
        thunk = prepare()
        gc.collect()
        tracemalloc.start()
        try:
            start = time.perf_counter()
            result = thunk()
            samples.append(time.perf_counter() - start)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        del result, thunk
    return Timing(tuple(samples)), peaks


def constant(thunk: Thunk) -> Callable[[], Thunk]:
    """A ``prepare`` with nothing to prepare: the same thunk every time."""
    return lambda: thunk


def _import_seconds(code: str, env: Mapping[str, str]) -> float:
    """Run ``code`` in a fresh interpreter; it prints the seconds it measured itself."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip().splitlines()[-1])


def time_imports(codes: Mapping[str, str], repeat: int) -> dict[str, Timing]:
    """Seconds each snippet measures in fresh subprocesses, interleaved so drift hits all alike.

    Each snippet runs once untimed first. Bytecode is cached for every snippet alike, in a
    temporary ``PYTHONPYCACHEPREFIX`` (so nothing is written into the project, and a
    ``PYTHONDONTWRITEBYTECODE`` environment does not leave one side compiling its sources
    on every import while the other reads its installed ``.pyc`` files).
    """
    with tempfile.TemporaryDirectory(prefix="nbp-bench-pycache-") as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        for code in codes.values():
            _import_seconds(code, env)
        samples: dict[str, list[float]] = {name: [] for name in codes}
        for _ in range(repeat):
            for name, code in codes.items():
                samples[name].append(_import_seconds(code, env))
    return {name: Timing(tuple(values)) for name, values in samples.items()}
