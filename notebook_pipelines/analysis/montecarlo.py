"""Monte Carlo over one design: :func:`monte_carlo` simulates it ``runs`` times with sampled
durations (and probabilistic failures, if asked) and returns one row per run.

Two engines: the vectorised batch (:mod:`~notebook_pipelines.engine.vectorised`: every run at once
with numpy, where timing depends on durations alone, checked against one scheduler run) and the
scheduler (one ``simulate`` per run; run ``i`` uses the i-th child of
``numpy.random.SeedSequence(seed)``, so ``simulate(p, seed=row.seed, …)`` replays it). The
distribution of the result: :mod:`~notebook_pipelines.analysis.distribution`.
"""

from __future__ import annotations

import array
import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..engine.simulation import SimulationError, as_plan, simulate_records
from ..errors import RunInterrupted
from .distribution import PERCENTILES, check_percentiles
from .options import RUN_OPTIONS
from .outcomes import from_records, refuse, unsimulatable_records

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["MAX_RUNS", "monte_carlo"]

#: the most runs of one :func:`monte_carlo` call: a million runs of even a one-step pipeline take
#: about an hour and their results ~20 MB; beyond it, call it in batches (``seed=`` differs)
MAX_RUNS = 1_000_000


# -- Monte Carlo ----------------------------------------------------------------------------------
def monte_carlo(
    pipeline: Any,
    durations: Any = RUN_OPTIONS["durations"],
    *,
    runs: int = 200,
    seed: int = 0,
    default: Any = RUN_OPTIONS["default"],
    failures: Any = RUN_OPTIONS["failures"],
    interventions: Any = RUN_OPTIONS["interventions"],
    outputs: Any = RUN_OPTIONS["outputs"],
    percentiles: Sequence[float] = PERCENTILES,
    progress: bool = False,
    mode: str = "joint",
    engine: str = "auto",
) -> pd.DataFrame:
    """Simulate ``pipeline`` ``runs`` times with sampled durations; one row per run.

    Two engines compute the runs (``attrs["engine"]`` says which ran, ``attrs["engine_reason"]``
    why the vectorised one did not):

    - ``"vectorised"``: where timing depends on durations alone
      (:func:`~notebook_pipelines.engine.vectorised.why_not` decides, and says why not), all
      runs at once with numpy over the plan's structure — every node's start and end exactly as
      the scheduler computes them for the same durations. Sampled durations are drawn per step,
      ``runs`` at a time, so the runs replay *as a batch* (the same ``seed`` and ``runs`` give
      the same result) and the ``seed`` column is missing (``<NA>``); with constant durations
      every run is ``simulate(pipeline, seed=row.seed, …)``, as on the scheduler. Many runs
      are timed in chunks of at most :data:`CHUNK_CELLS` node-runs (the memory stays bounded:
      a million runs of a 100-step pipeline take ~250 MB), each continuing the same streams.
    - ``"scheduler"``: run ``i`` is ``simulate(pipeline, seed=row.seed, **options)`` with the
      same options (and the same defaults) as given here; it replays run by run.
    - ``"auto"`` (the default): the vectorised engine where it applies, else the scheduler. It
      first checks the batch's first run against one scheduler simulation with the same
      durations (and refuses a design whose simulation fails before a step runs, as
      :func:`compare` does).

    Args:
        pipeline: a Pipeline or its Plan (compiled once either way).
        durations, default, failures, interventions, outputs: as for :func:`simulate` (the
            same defaults); give distributions (``lambda rng: rng.lognormal(3, 0.25)``, scipy
            frozen distributions) for what varies, and failure probabilities
            (``{"deploy": 0.1}``). ``durations`` may be a history (measured runs, see
            :mod:`~notebook_pipelines.engine.measured`), resampled by ``mode``;
            ``failures="history"`` injects its measured failure rates.
        runs: how many simulations, at most :data:`MAX_RUNS` (a million). The seeds are made
            one run at a time and the results kept as columns (~17 bytes a run, 8 more per
            stage), so a large ``runs`` costs no memory before the first run.
        seed: run ``i`` uses the i-th child of ``numpy.random.SeedSequence(seed)``.
        percentiles: what :func:`summarize` reports for these runs (kept in ``attrs``).
        progress: show a progress bar (tqdm if installed, else a counter on stderr); on the
            vectorised path it counts the chunks of runs as they are timed.
        mode: ``"joint"`` (whole measured runs) or ``"independent"`` (per step), with a history.
        engine: ``"auto"``, ``"vectorised"`` (refused, saying why, where it does not apply) or
            ``"scheduler"``.

    Raises:
        SimulationError: ``runs`` is not a whole number from 1 to :data:`MAX_RUNS`, or an
            option is invalid (checked on the first run).
        RunInterrupted: Ctrl-C (or a kernel interrupt); its ``trace`` is the DataFrame of
            the runs that finished (on the vectorised path, the chunks timed), with the attrs
            of a whole result.

    Returns:
        A DataFrame with columns ``run``, ``seed`` (``simulate(p, seed=…)`` replays the run),
        ``makespan_s``, ``status`` and ``stage:<id>`` per stage. ``attrs`` holds plain values
        only (``pipeline``, ``seed``, ``runs``, ``percentiles``, ``engine``, ``engine_reason``,
        ``replay`` — ``"run"`` or ``"batch"`` —, ``mode`` and ``measured_runs`` (with a
        history: how it was resampled, from how many measured runs), and ``criticality``: ``{step FQN:
        share of runs in which it lies on a critical path}``): a DataFrame in ``attrs``
        would break ``merge``/``concat`` (pandas compares attrs with ``==``), so the summary
        is :func:`summarize` (or :func:`distribution`) of the result rather than an attribute.

    Raises:
        SimulationError: a run fails before one of its steps runs (as :func:`compare` refuses).

    >>> import notebook_pipelines as nbp
    >>> p = nbp.Pipeline("p")
    >>> with p.stage("s") as s:
    ...     with s.parallel():
    ...         _ = s.step("a")
    ...         _ = s.step("b")
    >>> mc = monte_carlo(p, {"a": lambda rng: rng.uniform(1, 2), "b": 1.5}, runs=100)
    >>> bool((mc["makespan_s"] >= 1.5).all()), list(nbp.summarize(mc).columns)
    (True, ['runs', 'mean', 'std', 'min', 'p50', 'p90', 'p95', 'p99', 'max'])
    >>> mc.attrs["engine"], mc.attrs["replay"]
    ('vectorised', 'batch')
    """
    from ..engine.simulation import history_source

    if not isinstance(runs, int) or isinstance(runs, bool) or runs < 1:
        raise SimulationError(f"monte_carlo(runs={runs!r}): give a whole number of runs ≥ 1")
    if runs > MAX_RUNS:
        raise SimulationError(
            f"monte_carlo(runs={runs:,}): at most {MAX_RUNS:,} runs in one call; a percentile needs far "
            f"fewer (p99 is stable within a few thousand): call it in batches with seed=0, 1, 2, … "
            "and pd.concat the results if you really need more"
        )
    if engine not in ("auto", "vectorised", "scheduler"):
        raise SimulationError(f"monte_carlo(engine={engine!r}): use 'auto', 'vectorised' or 'scheduler'")
    check_percentiles(percentiles)
    plan = as_plan(pipeline)
    source = history_source(plan, durations, mode)
    if source is not None:
        durations = source
        if isinstance(failures, str) and failures == "history":
            failures = source.failure_rates() or None
    elif isinstance(failures, str) and failures == "history":
        raise SimulationError('failures="history" takes the failure rates of durations= a history: give one')
    if engine == "scheduler":
        reason = "engine='scheduler' was asked for"
    else:
        from ..engine.vectorised import why_not

        reason = why_not(plan, durations=durations, failures=failures, interventions=interventions)
        if reason is not None and engine == "vectorised":
            raise SimulationError(
                f"monte_carlo(engine='vectorised'): {plan.pipeline.id!r} needs the scheduler: {reason}"
            )
    frame = None
    # what every result (or the runs kept at Ctrl-C) says of how it was asked for
    asked = {"seed": seed, "percentiles": tuple(percentiles), **_measured(source, mode)}
    if reason is None:
        frame, reason = _vectorised_or_why(
            plan, durations, default, outputs, runs, seed, source, asked, progress
        )
        if frame is None and engine == "vectorised":
            raise SimulationError(f"monte_carlo(engine='vectorised'): {reason}")
    if frame is None:
        options = {
            "durations": durations,
            "default": default,
            "failures": failures,
            "interventions": interventions,
        }
        about = {"engine": "scheduler", "engine_reason": reason, "replay": "run", **asked}
        try:
            frame = _scheduled(plan, pipeline, options, outputs, runs, seed, progress, mode)
        except RunInterrupted as interrupted:  # the finished runs: summarized as a whole result is
            interrupted.trace.attrs.update(about)
            raise
        frame.attrs.update(about)
        return frame
    frame.attrs.update(asked)
    return frame


def _measured(source: Any, mode: str) -> dict[str, Any]:
    """The attrs that say what a history gave: ``mode`` and ``measured_runs`` (how many measured
    runs were resampled); both ``None`` without a history."""
    if source is None:
        return {"mode": None, "measured_runs": None}
    return {"mode": mode, "measured_runs": len(source.run_ids)}


def _vectorised_or_why(
    plan: Any, durations: Any, default: Any, outputs: Any, runs: int, seed: int, source: Any,
    about: dict[str, Any], progress: bool = False,
) -> tuple[pd.DataFrame | None, str | None]:  # fmt: skip
    """:func:`_vectorised`, its Ctrl-C a :class:`RunInterrupted` with the runs timed so far
    (``about``: the attrs of how the result was asked for, which those runs carry too)."""
    try:
        return _vectorised(plan, durations, default, outputs, runs, seed, source, progress)
    except RunInterrupted as interrupted:  # the chunks that finished
        interrupted.trace.attrs.update(about)
        raise
    except KeyboardInterrupt:  # before the first chunk was timed: no run is finished
        import pandas as pd

        empty = pd.DataFrame({"run": [], "seed": [], "makespan_s": [], "status": []})
        empty.attrs.update(pipeline=plan.pipeline.id, runs=0, engine="vectorised", **about)
        raise RunInterrupted(
            f"monte_carlo interrupted after 0 of {runs:,} runs (before its first chunk was timed)", empty
        ) from None


#: the node-runs the vectorised engine times at once (about 40 bytes each: ~80 MB): a batch of
#: more runs is timed in chunks, so a million runs of a large pipeline do not fill the memory
CHUNK_CELLS = 1 << 21


def _vectorised(
    plan: Any, durations: Any, default: Any, outputs: Any, runs: int, seed: int, source: Any,
    progress: bool = False,
) -> tuple[pd.DataFrame | None, str | None]:  # fmt: skip
    """The vectorised engine's frame, or ``(None, why not)`` when its probe run disagrees.

    The runs are timed in chunks of at most :data:`CHUNK_CELLS` node-runs, each drawn from the
    same streams (one per step, and the history's) continued; Ctrl-C keeps the finished chunks.
    """
    import numpy as np

    from ..engine.vectorised import StepDraws, batch, loop_members

    draws = StepDraws(plan, None if source is not None else durations, default, seed)
    history = source.draws(seed) if source is not None else None
    chunk = max(1, min(runs, CHUNK_CELLS // max(1, len(plan.nodes))))

    def drawn_for(k: int) -> tuple[dict[int, Any], dict[int, Any]]:
        drawn, measured = draws(k), (history(k) if history is not None else {})
        drawn.update(measured)
        return drawn, measured

    drawn, measured = drawn_for(chunk)
    for node in loop_members(plan):  # every iteration of a looped node takes the same duration
        if isinstance(drawn.get(node.index), np.ndarray) and node.index not in measured:
            return None, f"{node.fqn} samples its duration inside a loop (each iteration draws its own)"
    result = batch(plan, drawn, chunk)
    why = _probe(plan, result, drawn, default, outputs)
    if why is not None:
        return None, why
    constant = all(not isinstance(v, np.ndarray) for v in drawn.values())
    timed = _Timed(plan, seed, constant)
    timed.add(result)
    try:
        with _Progress(runs, progress) as bar:
            bar.update(chunk)
            while timed.done < runs:
                k = min(chunk, runs - timed.done)
                result = batch(plan, drawn_for(k)[0], k)
                expired = result.timeout_reached()
                if expired is not None:
                    return None, f"{expired} reaches its timeout in some runs"
                timed.add(result)
                bar.update(k)
    except KeyboardInterrupt:  # the chunks that finished are whole runs
        raise RunInterrupted(
            f"monte_carlo interrupted after {timed.done:,} of {runs:,} runs (vectorised, in chunks of "
            f"{chunk:,}); the finished runs are in .trace",
            timed.frame(),
        ) from None
    return timed.frame(), None


def _probe(plan: Any, result: Any, drawn: dict[int, Any], default: Any, outputs: Any) -> str | None:
    """Why the batch cannot stand for the scheduler (a timeout reached; its first run timed
    otherwise by one scheduler simulation with the same durations, node by node), or None."""
    import numpy as np

    expired = result.timeout_reached()
    if expired is not None:
        return f"{expired} reaches its timeout in some runs"
    first = {plan.nodes[i].fqn: float(v[0]) if isinstance(v, np.ndarray) else v for i, v in drawn.items()}
    records = simulate_records(plan, durations=first, default=default, seed=0, outputs=outputs)
    found = unsimulatable_records(plan, records)
    if found is not None:
        raise refuse(f"monte_carlo(): {plan.pipeline.id!r}", found)
    for record in records:
        i = record.node
        if i >= len(plan.nodes):
            continue  # an iteration's copy (R46): timed as its looped node, whose row is checked
        if record.status != result.status[i]:
            return f"its first run on the scheduler differs at {_node_name(plan, i)} (status {record.status})"
        s, e = result.start[i, 0], result.end[i, 0]
        if record.start_s is None:
            if not np.isnan(s):
                return f"its first run on the scheduler differs at {_node_name(plan, i)}"
        elif record.start_s != s or record.end_s != e:
            return f"its first run on the scheduler differs at {_node_name(plan, i)}"
    return None


class _Timed:
    """The vectorised engine's results, chunk by chunk: makespans, stage times, critical counts."""

    def __init__(self, plan: Any, seed: int, constant: bool):
        self.plan, self.seed, self.constant = plan, seed, constant
        self.done = 0
        self.makespans: list[Any] = []
        self.stages: dict[str, tuple[int, list[Any]]] = {}  # column → (stage node index, chunks)
        for node in plan.nodes:
            if node.kind == "stage" and node.phase != "rollback" and node.index not in plan.inside_loops():
                self.stages.setdefault(f"stage:{node.id}", (node.index, []))
        self.critical: Any = 0

    def add(self, result: Any) -> None:
        self.makespans.append(result.makespan)
        for index, chunks in self.stages.values():
            chunks.append(result.end[index] - result.start[index])
        self.critical = self.critical + result.critical().sum(axis=1)
        self.done += result.runs

    def frame(self) -> pd.DataFrame:
        import numpy as np
        import pandas as pd

        n, plan = self.done, self.plan
        columns: dict[str, Any] = {"run": np.arange(n, dtype="int64")}
        if self.constant:  # every run is the same simulation: any run's seed replays it
            columns["seed"] = np.array(
                [np.random.SeedSequence(self.seed, spawn_key=(i,)).generate_state(1, np.uint64)[0]
                 for i in range(n)],
                dtype="uint64",
            )  # fmt: skip
        else:
            columns["seed"] = pd.array([pd.NA] * n, dtype="UInt64")
        columns["makespan_s"] = np.concatenate(self.makespans) if self.makespans else np.empty(0)
        columns["status"] = ["Success"] * n
        for key, (_, chunks) in self.stages.items():
            columns[key] = np.concatenate(chunks) if chunks else np.empty(0)
        frame = pd.DataFrame(columns)
        crit = self.critical / n if n else np.full(len(plan.nodes), np.nan)
        frame.attrs.update(
            pipeline=plan.pipeline.id,
            runs=n,
            engine="vectorised",
            engine_reason=None,
            replay="run" if self.constant else "batch",
            criticality={
                node.fqn: float(crit[node.index])
                for node in plan.nodes
                if node.kind == "step" and node.phase != "rollback"
            },
        )
        return frame


def _node_name(plan: Any, index: int) -> str:
    return plan.nodes[index].fqn if index < len(plan.nodes) else f"node {index}"


def _scheduled(
    plan: Any, pipeline: Any, options: dict, outputs: Any, runs: int, seed: int, progress: bool, mode: str
) -> pd.DataFrame:
    """The scheduler engine: one ``simulate`` per run, seeded run by run."""
    import numpy as np
    import pandas as pd

    # the results as columns, appended run by run: 17 bytes a run, plus 8 a stage
    seeds: array.array = array.array("Q")
    makespans: array.array = array.array("d")
    statuses: list[str] = []
    stage_columns: dict[str, array.array] = {}
    steps = [n for n in plan.nodes if n.kind == "step" and n.phase != "rollback"]
    critical_counts = dict.fromkeys((n.index for n in steps), 0)

    def frame_of() -> pd.DataFrame:
        n = len(makespans)
        columns = {
            "run": np.arange(n, dtype="int64"),
            "seed": np.frombuffer(seeds, dtype="uint64")[:n].copy(),
            "makespan_s": np.frombuffer(makespans, dtype="float64").copy(),
            "status": statuses[:n],
            **{
                key: np.frombuffer(values, dtype="float64")[:n].copy()
                for key, values in stage_columns.items()
            },
        }
        frame = pd.DataFrame(columns)
        name = plan.pipeline.id if plan is not None else getattr(pipeline, "id", None)
        frame.attrs.update(
            pipeline=name,
            runs=n,
            criticality={nodes[i].fqn: (c / n if n else math.nan) for i, c in critical_counts.items()},
        )
        return frame

    nodes = plan.nodes
    try:
        with _Progress(runs, progress) as bar:
            for i in range(runs):
                # the i-th child of SeedSequence(seed), made when needed (spawn(runs) made them all first)
                run_seed = int(np.random.SeedSequence(seed, spawn_key=(i,)).generate_state(1, np.uint64)[0])
                records = simulate_records(
                    plan, seed=run_seed, strict=i == 0, outputs=outputs, mode=mode, **options
                )
                found = unsimulatable_records(plan, records)
                if found is not None:
                    raise refuse(f"monte_carlo(): {plan.pipeline.id!r} (run {i}, seed {run_seed})", found)
                outcome, stages = from_records(plan, records)
                for index in _critical_records(plan, records):
                    if index in critical_counts:
                        critical_counts[index] += 1
                for key, value in stages.items():
                    if key not in stage_columns:  # a stage first seen now: missing in earlier runs
                        stage_columns[key] = array.array("d", [math.nan]) * i
                    stage_columns[key].append(value)
                for key, values in stage_columns.items():
                    if key not in stages:
                        values.append(math.nan)
                seeds.append(run_seed)
                statuses.append(outcome.get("status"))
                # last: a run counts once its makespan is appended
                makespans.append(outcome.get("makespan_s", math.nan))
                bar.update()
    except KeyboardInterrupt:
        done = frame_of()  # only the runs that ended: the interrupted one is not counted
        raise RunInterrupted(
            f"monte_carlo interrupted after {len(makespans)} of {runs:,} runs; "
            "the finished runs are in .trace",
            done,
        ) from None
    return frame_of()


def _critical_records(plan: Any, records: list) -> set[int]:
    """The plan nodes on a critical path of one simulated run (the rule of
    :meth:`~notebook_pipelines.engine.vectorised.Batch.critical`, on each node's span: its
    first start to its last end; skipped and not started nodes are not critical; back along the
    needs of a parallel block's members, D14)."""
    n = len(plan.nodes)
    start = [math.nan] * n
    end = [math.nan] * n
    ran = [False] * n
    for r in records:
        i = r.node
        if i >= n or r.start_s is None or r.status in ("Skipped", "NotStarted"):
            continue
        ran[i] = True
        start[i] = r.start_s if math.isnan(start[i]) else min(start[i], r.start_s)
        end[i] = r.end_s if math.isnan(end[i]) else max(end[i], r.end_s)
    out: set[int] = set()

    def walk(node: Any) -> None:
        out.add(node.index)
        for item in node.items:
            children = [c for c in (item.items if item.kind == "parallel" else (item,)) if ran[c.index]]
            if not children:
                continue
            last = max(end[c.index] for c in children)
            critical = [child for child in children if end[child.index] == last]
            if item.kind == "parallel" and item.order is not None:  # needs (D14): back along them
                members, marked = item.items, {c.index for c in critical}
                for k in reversed(item.order):
                    waiter = members[k]
                    if waiter.index in marked:
                        for j in waiter.needs:
                            need = members[j]
                            if ran[need.index] and end[need.index] == start[waiter.index]:
                                marked.add(need.index)
                critical = [child for child in children if child.index in marked]
            for child in critical:
                walk(child)

    if ran[plan.root.index]:
        walk(plan.root)
    return out


class _Progress:
    """tqdm when installed, else a one-line counter on stderr; nothing when not asked."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.done, self.bar = total, enabled, 0, None
        self.step = max(1, total // 100)

    def __enter__(self) -> _Progress:
        if self.enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                self.bar = None
            else:
                self.bar = tqdm(total=self.total, desc="monte_carlo", unit="run")
        return self

    def update(self, runs: int = 1) -> None:
        before, self.done = self.done, self.done + runs
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(runs)
        elif self.done // self.step > before // self.step or self.done == self.total:
            sys.stderr.write(f"\rmonte_carlo: {self.done}/{self.total} runs")
            sys.stderr.flush()

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            sys.stderr.write("\n")
