"""The expected end of a run under way, from a measured history (issue 28, part 4).

``p.run(history=h)`` attaches an :class:`Eta` to the run's progress state: when the run starts
it draws ``runs`` sampled runs of the plan's step durations from the history (joint resampling,
:mod:`~notebook_pipelines.engine.measured`; unmeasured steps take their ``duration=`` or 1 s);
each time a step finishes, the steps that ended keep their actual durations (first start to
last end), the steps under way take at least the time they have run so far (a step retried
now: the time since its first attempt started, plus at least a measured duration), and the vectorised timing
(:func:`~notebook_pipelines.engine.vectorised.batch`) of those runs gives the makespan's p50
and p95. The live view and the text progress show the time left to each.

A plan the vectorised timing does not cover (:func:`~notebook_pipelines.engine.vectorised.why_not`)
gets no estimate; :attr:`Eta.reason` says why, and a
:class:`~notebook_pipelines.errors.HistoryDurationsWarning` says so when the run starts.

>>> import pandas as pd, notebook_pipelines as nbp
>>> p = nbp.Pipeline("p")
>>> with p.stage("s") as s:
...     _ = s.step("a")
...     _ = s.step("b")
>>> a, b = (n.fqn for n in p.plan().steps)
>>> h = pd.DataFrame({"run_id": ["1", "1", "2", "2"], "fqn": [a, b, a, b], "kind": "step",
...                   "attempt": 1, "status": "Success", "start_s": 0.0, "end_s": [10.0, 20.0, 30.0, 40.0]})
>>> eta = Eta(p.plan(), h, runs=1000)
>>> eta.estimate({}, {}) in [(30.0, 70.0), (70.0, 70.0)]  # 10 + 20 or 30 + 40
True
>>> eta.estimate({p.plan().steps[0].index: 10.0}, {})  # a took 10 s: b takes 20 or 40
(30.0, 50.0)
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["Eta"]


class Eta:
    """p50/p95 of a run's makespan given what it has done so far (seconds from its start)."""

    def __init__(self, plan: Any, history: Any, *, runs: int = 2000, seed: int = 0, default: Any = 1.0):
        from ..engine.measured import HistoryDurations, is_history
        from ..engine.vectorised import step_durations, why_not
        from ..errors import SimulationError

        if not is_history(history):
            raise SimulationError(
                f"run(history=…): give a history (a DataFrame of measured runs with the trace schema: "
                f"run_id, fqn, kind, attempt, status, start_s, end_s; nbp.read_history(…)), not "
                f"{type(history).__name__}"
            )
        self.plan, self.runs = plan, runs
        self.reason = why_not(plan)
        self.samples: dict[int, Any] | None = None
        if self.reason is not None:  # asked for, not shown: say why
            from ..errors import HistoryDurationsWarning

            warnings.warn(
                f"run(history=…): no expected end for {plan.pipeline.id!r}, whose timing does not depend "
                f"on durations alone: {self.reason}",
                HistoryDurationsWarning,
                stacklevel=5,
            )
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    source = HistoryDurations(history, plan, "joint", warn=False)
                except SimulationError as err:  # said for run(history=…), not durations=
                    raise SimulationError(f"run(history=…): {err}".replace("durations=: ", "")) from None
            drawn = step_durations(plan, None, default, runs, seed)
            drawn.update(source.batch(seed, runs))
            self.samples = drawn

    def estimate(
        self, done: dict[int, float], running: dict[int, float], before: dict[int, float] | None = None
    ) -> tuple[float, float] | None:
        """``(p50, p95)`` of the makespan: ``done`` = step index → its actual duration (first
        start to last end), ``running`` = step index → seconds its attempt under way has run so
        far, ``before`` = step index → seconds since its first attempt started, for a step
        retried now (the attempt under way then takes at least a measured duration more)."""
        if self.samples is None:
            return None
        import numpy as np

        from ..engine.vectorised import batch

        durations = dict(self.samples)
        for index, seconds in done.items():
            if index in durations:
                durations[index] = float(seconds)
        for index, seconds in running.items():
            if index in durations:
                earlier = float((before or {}).get(index, 0.0))
                durations[index] = earlier + np.maximum(durations[index], float(seconds))
        makespan = batch(self.plan, durations, self.runs).makespan
        return float(np.percentile(makespan, 50)), float(np.percentile(makespan, 95))
