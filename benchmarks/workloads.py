"""The workloads, their pipelines and the budgets the issue sets for the ``nbp`` rows.

Each workload is a function ``Config -> list[Row]`` in :data:`WORKLOADS`. The run workloads
time ``p.run(report=False, progress=False)`` on a pipeline built fresh (untimed) for every repetition, side by
side with :mod:`benchmarks.baselines`; pipelines are built through the public builder only.
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import notebook_pipelines as nbp

from .baselines import (
    Body,
    dask_block,
    dask_blocks,
    dask_chain,
    dask_map,
    dask_missing,
    distributed_missing,
    noop,
    pool_block,
    pool_blocks,
    pool_chain,
)
from .measure import (
    ROOT,
    Missing,
    Result,
    Thunk,
    Timing,
    constant,
    time_imports,
    time_side_by_side,
    traced_peaks,
)
from .report import Budget, Row, rows_for


@dataclass(frozen=True)
class Config:
    repeat: int  # timed repetitions per engine
    import_repeat: int  # fresh subprocesses per import snippet


Workload = Callable[[Config], list[Row]]


# --- pipelines (public builder only) -------------------------------------------------------


def chain_pipeline(n: int, body: Body) -> nbp.Pipeline:
    """One stage of ``n`` steps, one after the other."""
    p = nbp.Pipeline("chain")
    with p.stage("s") as stage:
        for i in range(n):
            stage.step(f"x{i}", run=body)
    return p


def block_pipeline(width: int, body: Body) -> nbp.Pipeline:
    """One stage holding one parallel block of ``width`` steps."""
    p = nbp.Pipeline("block")
    with p.stage("s") as stage, stage.parallel():
        for i in range(width):
            stage.step(f"x{i}", run=body)
    return p


def blocks_pipeline(blocks: int, width: int, body: Body) -> nbp.Pipeline:
    """One stage, one step group of ``blocks`` parallel blocks of ``width`` steps each."""
    p = nbp.Pipeline("blocks")
    with p.stage("s") as stage, stage.step_group("g") as group:
        for b in range(blocks):
            with group.parallel():
                for i in range(width):
                    group.step(f"x{b}_{i}", run=body)
    return p


def grouped_pipeline(n: int, width: int = 10, per_group: int = 100) -> nbp.Pipeline:
    """The "grouped" shape for simulation: one stage of step groups of ``per_group`` steps,
    each group ``per_group // width`` parallel blocks of ``width`` one-second steps."""
    p = nbp.Pipeline("grouped")
    k = 0
    with p.stage("s") as stage:
        for g in range(max(1, n // per_group)):
            with stage.step_group(f"g{g}") as group:
                for _ in range(per_group // width):
                    with group.parallel():
                        for _ in range(width):
                            group.step(f"s{k}", duration=1.0)
                            k += 1
    return p


def sleeper(seconds: float) -> Body:
    def body() -> None:
        time.sleep(seconds)

    return body


# --- the calls timed -----------------------------------------------------------------------


def nbp_run(build: Callable[[], nbp.Pipeline]) -> Callable[[], Thunk]:
    """Prepare ``p.run(report=False, progress=False)`` on a freshly built pipeline."""
    return lambda: partial(build().run, report=False, progress=False)


def nbp_simulate(build: Callable[[], nbp.Pipeline]) -> Callable[[], Thunk]:
    """Prepare ``p.simulate()`` on a freshly built pipeline."""
    return lambda: build().simulate


def succeeded(trace: Any) -> None:
    status = list(trace.loc[trace["kind"] == "pipeline", "status"])
    if status != ["Success"]:
        raise RuntimeError(f"the benchmark pipeline did not succeed: {status}")


def has_steps(n: int) -> Callable[[Any], None]:
    def check(trace: Any) -> None:
        steps = int((trace["kind"] == "step").sum())
        if steps != n:
            raise RuntimeError(f"{steps} step rows for {n} steps")

    return check


def side_by_side(
    cfg: Config,
    workload: str,
    build: Callable[[], nbp.Pipeline],
    on_pool: Callable[[ThreadPoolExecutor], None],
    on_dask: Thunk,
    workers: int | None = None,
    ideal: float | None = None,
    capped: bool = False,
) -> list[Row]:
    """``nbp``, ``threadpool`` (a pool of ``workers``, warm) and ``dask-threads`` on one workload.

    With ``capped``, also ``nbp-capped``: ``p.run(max_workers=…)`` with the pool's own number
    of workers — the baseline's concurrency, where plain ``nbp`` starts every step of a
    parallel block at once (R5), as Harness does.
    """
    missing = dask_missing()
    with ThreadPoolExecutor(workers) as pool:
        prepares = {"nbp": nbp_run(build), "threadpool": constant(partial(on_pool, pool))}
        if capped:
            limit = pool._max_workers  # the baseline's own size (ThreadPoolExecutor's default rule)
            prepares["nbp-capped"] = lambda: partial(
                build().run, report=False, progress=False, max_workers=limit
            )
        if missing is None:
            prepares["dask-threads"] = constant(on_dask)
        results: dict[str, Result] = {**time_side_by_side(prepares, cfg.repeat, {"nbp": succeeded})}
    if missing is not None:
        results["dask-threads"] = Missing(missing)
    return rows_for(workload, results, ideal=ideal)


def with_budget(rows: list[Row], budget: Budget, engine: str = "nbp") -> list[Row]:
    for row in rows:
        if row.engine == engine and row.missing is None:
            budget.apply(row)
    return rows


def _ratio_at_most(limit: float) -> Callable[[Row], bool]:
    return lambda row: row.ratio is not None and row.ratio <= limit


def _ideal_at_most(limit: float) -> Callable[[Row], bool]:
    return lambda row: row.extra["ratio_ideal"] <= limit


# --- the workloads -------------------------------------------------------------------------

NOOP_STEPS = 2_000


def noop_chain(cfg: Config) -> list[Row]:
    """2,000 no-op steps one after the other vs ``submit(f).result()`` in a loop."""
    n = NOOP_STEPS
    rows = side_by_side(
        cfg, "noop-chain", partial(chain_pipeline, n, noop), partial(pool_chain, n=n), partial(dask_chain, n)
    )
    return with_budget(rows, Budget("ratio ≤ 1.3", _ratio_at_most(1.3)))


def noop_wide(cfg: Config) -> list[Row]:
    """One parallel block of 2,000 no-op steps vs ``list(pool.map(f, range(2000)))``."""
    n = NOOP_STEPS
    rows = side_by_side(
        cfg,
        "noop-wide",
        partial(block_pipeline, n, noop),
        partial(pool_block, width=n),
        partial(dask_block, n),
        capped=True,
    )
    return with_budget(rows, Budget("ratio ≤ 2", _ratio_at_most(2.0)))


def sleep_blocks(cfg: Config) -> list[Row]:
    """A step group of 10 parallel blocks × 16 steps of ``sleep(0.02)``: ideal 0.2 s."""
    blocks, width, seconds = 10, 16, 0.02
    body = sleeper(seconds)
    rows = side_by_side(
        cfg,
        "sleep-blocks",
        partial(blocks_pipeline, blocks, width, body),
        partial(pool_blocks, blocks=blocks, width=width, body=body),
        partial(dask_blocks, blocks, width, body, width),
        workers=width,
        ideal=blocks * seconds,
    )
    return with_budget(rows, Budget("≤ 1.05× ideal", _ideal_at_most(1.05)))


def sleep_wide(cfg: Config) -> list[Row]:
    """One parallel block of 64 steps of ``sleep(0.05)``: ideal 0.05 s."""
    width, seconds = 64, 0.05
    body = sleeper(seconds)
    rows = side_by_side(
        cfg,
        "sleep-wide",
        partial(block_pipeline, width, body),
        partial(pool_block, width=width, body=body),
        partial(dask_block, width, body, width),
        workers=width,
        ideal=seconds,
    )
    return with_budget(rows, Budget("≤ 1.10× ideal", _ideal_at_most(1.10)))


SIMULATE_SIZES = {"simulate-10k": 10_000, "simulate-100k": 100_000}


def simulate(cfg: Config) -> list[Row]:
    """``p.simulate()`` of the grouped shape at 10k and 100k steps, and the growth between."""
    prepares = {name: nbp_simulate(partial(grouped_pipeline, n)) for name, n in SIMULATE_SIZES.items()}
    checks = {name: has_steps(n) for name, n in SIMULATE_SIZES.items()}
    timings = time_side_by_side(prepares, cfg.repeat, checks)
    small, large = (timings[name] for name in SIMULATE_SIZES)
    growth = large.median / small.median
    small_name, large_name = SIMULATE_SIZES
    rows = [Row(small_name, "nbp", small), Row(large_name, "nbp", large, extra={"growth": growth})]
    budget = Budget("≤ 1 s, growth ≤ 11×", lambda row: (row.median or 0) <= 1.0 and row.extra["growth"] <= 11)
    with_budget(rows[1:], budget)
    return rows


KB = 1_000  # the budget's "3 KB" read strictly, in bytes


def memory_wide(cfg: Config) -> list[Row]:
    """Peak ``tracemalloc`` bytes of running the 2,000-wide no-op block, per step.

    The thread pool's ``map`` over the same 2,000 no-ops is traced too, for reference.
    """
    n = NOOP_STEPS
    with ThreadPoolExecutor() as pool:
        traced = {
            "nbp": traced_peaks(nbp_run(partial(block_pipeline, n, noop)), cfg.repeat),
            "threadpool": traced_peaks(constant(partial(pool_block, pool, n)), cfg.repeat),
        }
    rows = rows_for("memory-wide", {engine: timing for engine, (timing, _) in traced.items()})
    for row in rows:
        peak = statistics.median(traced[row.engine][1])
        row.extra = {"peak_bytes": peak, "bytes_per_step": peak / n}
    return with_budget(rows, Budget("≤ 3 KB/step", lambda row: row.extra["bytes_per_step"] <= 3 * KB))


DASK_STEPS = 200


def dask_wide(cfg: Config) -> list[Row]:
    """One parallel block of 200 no-op steps run by ``nbp.DaskExecutor`` on a Dask cluster vs
    the same 200 no-ops as ``client.map`` + ``client.gather`` on that cluster ("ours on Dask vs
    Dask alone"). The cluster: ``LocalCluster(processes=False)``, 2 workers × 2 threads,
    started once for the workload (untimed), TCP on 127.0.0.1 so that tasks are serialized."""
    n = DASK_STEPS
    missing = distributed_missing()
    if missing is not None:
        return rows_for("dask-wide", {"nbp-dask": Missing(missing), "dask-map": Missing(missing)}, "dask-map")
    from distributed import Client, LocalCluster

    options = {"protocol": "tcp", "host": "127.0.0.1", "dashboard_address": ":0"}
    with (
        LocalCluster(n_workers=2, threads_per_worker=2, processes=False, **options) as cluster,
        Client(cluster) as client,
    ):
        executor = nbp.DaskExecutor(client)

        def prepare() -> Thunk:
            return partial(block_pipeline(n, noop).run, report=False, progress=False, executor=executor)

        prepares = {"nbp-dask": prepare, "dask-map": constant(partial(dask_map, client, n))}
        results = time_side_by_side(prepares, cfg.repeat, {"nbp-dask": succeeded})
    return rows_for("dask-wide", results, baseline="dask-map")


LIVE_BLOCKS, LIVE_WIDTH = 200, 10  # 2,000 steps
_DRAWING: list[Any] = []  # live views whose final picture may still be drawing


def _settle_views() -> None:
    """Untimed: let the last live view finish its final picture (drawn after ``run()``
    returns, above ``PICTURE_LIMIT`` steps) so that it does not overlap the next timed call."""
    while _DRAWING:
        _DRAWING.pop().wait(timeout=60)


def live_view(cfg: Config) -> list[Row]:
    """The 2,000-step run of 200 parallel blocks of 10 ~1 ms steps with the live view attached
    (``nbp-live``: the ``RunState`` listener and the ``LiveView`` widget that ``run()``
    displays in a notebook, made headless inside the timed call) vs the same run without a
    view (``nbp``, the ratio's baseline)."""
    from notebook_pipelines.views.live import LiveView
    from notebook_pipelines.views.progress import RunState

    build = partial(blocks_pipeline, LIVE_BLOCKS, LIVE_WIDTH, sleeper(0.001))

    def plain() -> Thunk:
        _settle_views()
        return partial(build().run, report=False, progress=False)

    def with_view() -> Thunk:
        _settle_views()
        p = build()

        def call() -> Any:
            plan = p.plan()
            state = RunState(plan)
            _DRAWING.append(LiveView(state))
            return nbp.run(plan, listeners=[state], report=False, progress=False)

        return call

    results = time_side_by_side({"nbp": plain, "nbp-live": with_view}, cfg.repeat, {"nbp-live": succeeded})
    _settle_views()
    rows = rows_for("live-view", results, baseline="nbp")
    return with_budget(rows, Budget("ratio ≤ 1.2", _ratio_at_most(1.2)), engine="nbp-live")


IMPORTS = {
    "nbp": "import notebook_pipelines as nbp; nbp.Pipeline('x')",
    "pandas": "import pandas",
}


def _timed_snippet(statement: str) -> str:
    return f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"


def import_cost(cfg: Config) -> list[Row]:
    """Fresh-interpreter cost of ``import notebook_pipelines`` + a first Pipeline vs ``import pandas``."""
    timings = time_imports({name: _timed_snippet(code) for name, code in IMPORTS.items()}, cfg.import_repeat)
    rows = rows_for("import", timings, baseline="pandas")
    nbp_row = rows[0]
    nbp_row.extra["delta_ms"] = (timings["nbp"].median - timings["pandas"].median) * 1e3
    return with_budget(rows, Budget("≤ +60 ms", lambda row: row.extra["delta_ms"] <= 60))


HISTORY_RUNS, HISTORY_NODES, HISTORY_PARTS = 1_000, 50, 10


def write_history(folder: Path, runs: int = HISTORY_RUNS, parts: int = HISTORY_PARTS) -> None:
    """A history cache of ``runs`` runs × 50 nodes (a pipeline, 7 stages of 6 serial steps), kept
    as ``parts`` fetches would keep it (one Parquet part each), through the package's writer."""
    from notebook_pipelines.formats.history import concat_runs, run_frame
    from notebook_pipelines.formats.history_store import write_part

    rng = random.Random(26)
    t0 = 1_767_600_000 * 10**9
    per_part = runs // parts
    for part in range(parts):
        frames = []
        for r in range(part * per_part, (part + 1) * per_part):
            start = t0 + r * 3600 * 10**9
            rows, t, previous = [], start, ()
            for s in range(7):
                stage = f"pipeline.stages.s{s}"
                stage_rows, step_after = [], ()
                stage_start = t
                for k in range(6):
                    fqn = f"{stage}.spec.execution.steps.x{k}"
                    end = t + int(rng.uniform(5, 60) * 10**9)
                    stage_rows.append(
                        {
                            "fqn": fqn,
                            "parent": stage,
                            "kind": "step",
                            "phase": "execution",
                            "stage": f"s{s}",
                            "step": f"x{k}",
                            "block": k,
                            "attempt": 1,
                            "status": "Success",
                            "start_ns": t,
                            "end_ns": end,
                            "after": step_after,
                            "worker": "runner-1",
                        }
                    )
                    step_after, t = (fqn,), end
                rows.append(
                    {
                        "fqn": stage,
                        "parent": "pipeline",
                        "kind": "stage",
                        "phase": "execution",
                        "stage": f"s{s}",
                        "block": s,
                        "attempt": 1,
                        "status": "Success",
                        "start_ns": stage_start,
                        "end_ns": t,
                        "after": previous,
                    }
                )
                rows += stage_rows
                previous = (stage,)
            rows.insert(
                0,
                {
                    "fqn": "pipeline",
                    "kind": "pipeline",
                    "phase": "execution",
                    "attempt": 1,
                    "status": "Success",
                    "start_ns": start,
                    "end_ns": t,
                    "after": (),
                },
            )
            info = {
                "run_id": str(100_000 + r),
                "source": "github",
                "pipeline": "octo/shop/ci.yml",
                "run_number": r + 1,
                "commit": f"{r:040x}",
                "branch": "main",
                "trigger": "push",
                "created_ns": start - 5 * 10**9,
                "url": f"https://github.com/octo/shop/actions/runs/{r}",
            }
            frames.append(run_frame(rows, info))
        write_part(concat_runs(frames), folder)


# The child's own high-water mark: on Linux ``ru_maxrss`` survives fork + exec, so a child of a
# large benchmark process would report its parent's size; ``VmHWM`` belongs to the new program.
_PEAK_RSS = """\
import resource, sys
import notebook_pipelines as nbp
h = nbp.read_history(sys.argv[1])
assert len(h) == int(sys.argv[2]), len(h)
try:
    with open("/proc/self/status") as status:
        hwm = next(line for line in status if line.startswith("VmHWM:"))
    print(int(hwm.split()[1]) * 1024)
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(peak if sys.platform == "darwin" else peak * 1024)
"""


def history_read(cfg: Config) -> list[Row]:
    """``nbp.read_history`` of a cache of 1,000 runs × 50 nodes (10 parts) vs ``pd.read_parquet``
    of the same dataset (no dtypes restored); and the peak RSS of a fresh interpreter that imports
    the package and reads it (everything it holds at its peak: interpreter, pandas, Arrow, result)."""
    import pandas as pd

    expected = HISTORY_RUNS * HISTORY_NODES
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_history(folder)

        def check(frame: Any) -> None:
            if len(frame) != expected or frame["after"].iloc[-1] != (
                "pipeline.stages.s6.spec.execution.steps.x4",
            ):
                raise AssertionError("read_history did not give the history back")

        prepares = {
            "nbp": constant(partial(nbp.read_history, folder)),
            "pandas": constant(partial(pd.read_parquet, folder / "history")),
        }
        timings = time_side_by_side(prepares, cfg.repeat, {"nbp": check})
        done = subprocess.run(
            [sys.executable, "-c", _PEAK_RSS, str(folder), str(expected)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        peak = int(done.stdout.strip().splitlines()[-1])
        result_bytes = int(nbp.read_history(folder).memory_usage(deep=True).sum())
    rows = rows_for("history-read", timings, baseline="pandas")
    rows[0].extra = {"peak_rss_mb": peak / 2**20, "result_mb": result_bytes / 2**20, "rows": expected}
    budget = Budget(
        "≤ 2 s, ≤ 500 MB", lambda row: (row.median or 0) <= 2.0 and row.extra["peak_rss_mb"] <= 500
    )
    return with_budget(rows, budget)


MC_RUNS, MC_SCHEDULER_RUNS = 10_000, 200


def mc_pipeline() -> nbp.Pipeline:
    """100 steps: 4 stages of a step, a parallel block of 12 steps, a step group of 12 steps."""
    p = nbp.Pipeline("mc")
    for i in range(4):
        with p.stage(f"s{i}") as s:
            s.step(f"build{i}")
            with s.parallel():
                for j in range(12):
                    s.step(f"test{i}_{j}")
            with s.step_group(f"g{i}") as g:
                for j in range(12):
                    g.step(f"deploy{i}_{j}")
    return p


def monte_carlo(cfg: Config) -> list[Row]:
    """``nbp.monte_carlo`` of 10,000 runs of a 100-step pipeline (lognormal durations) on the
    vectorised path, and the scheduler path beside it: timed at 200 runs and scaled ×50 (its
    cost is linear in the runs: one simulation each), said in ``extra``."""
    plan = mc_pipeline().plan()
    durations = {"*": lambda rng: rng.lognormal(3, 0.4)}

    def check(frame: Any) -> None:
        if frame.attrs.get("engine") != "vectorised" or len(frame) != MC_RUNS:
            raise AssertionError(f"monte_carlo ran on {frame.attrs.get('engine')}")

    prepares = {
        "nbp": constant(partial(nbp.monte_carlo, plan, durations, runs=MC_RUNS)),
        "nbp-scheduler": constant(
            partial(nbp.monte_carlo, plan, durations, runs=MC_SCHEDULER_RUNS, engine="scheduler")
        ),
    }
    timings = time_side_by_side(prepares, cfg.repeat, {"nbp": check})
    scale = MC_RUNS / MC_SCHEDULER_RUNS
    vectorised = timings["nbp"]
    scheduler = Timing(tuple(t * scale for t in timings["nbp-scheduler"].samples))
    rows = [
        Row("monte-carlo", "nbp", vectorised, ratio=vectorised.median / scheduler.median),
        Row("monte-carlo", "nbp-scheduler", scheduler, ratio=1.0),
    ]
    rows[0].extra = {"runs": MC_RUNS, "steps": 100, "speedup": scheduler.median / vectorised.median}
    rows[1].extra = {"runs_timed": MC_SCHEDULER_RUNS, "scaled_by": scale}
    return with_budget(rows, Budget("≤ 1 s (vectorised)", lambda row: (row.median or 0) <= 1.0))


def history_analytics(cfg: Config) -> list[Row]:
    """The history analyses of issue 27 together on 1,000 runs × 50 nodes (the ``history-read``
    dataset): ``step_stats``, ``criticality``, ``trend``, ``regressions``, ``flaky`` and
    ``compare`` of the first and second 500 runs, each call on a fresh copy of the history (so
    nothing is kept from an earlier repetition; the analyses of one copy share its critical paths).
    No baseline: no other tool answers these; the row is its time against the budget."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_history(folder)
        history = nbp.read_history(folder)
    runs = list(history["run_id"].unique())
    held: list[Any] = []

    def prepare() -> Thunk:
        held.append(history.copy())  # a new frame each time, the previous one still alive
        del held[:-2]
        h = held[-1]

        def analyses() -> Any:
            acc = h.pipeline
            return (
                acc.step_stats(),
                acc.criticality(),
                acc.trend(),
                acc.regressions(),
                acc.flaky(),
                acc.compare(runs[:500], runs[500:]),
            )

        return analyses

    def check(result: Any) -> None:
        stats, crit = result[0], result[1]
        if len(stats) != HISTORY_NODES or not (crit["criticality"] == 1.0).all():
            raise AssertionError(
                "the history analyses did not answer (a serial pipeline: every node critical)"
            )

    timings = time_side_by_side({"nbp": prepare}, cfg.repeat, {"nbp": check})
    rows = rows_for("history-analytics", timings, baseline="nbp")
    rows[0].extra = {"runs": HISTORY_RUNS, "nodes": HISTORY_NODES}
    return with_budget(rows, Budget("≤ 3 s", lambda row: (row.median or 0) <= 3.0))


WORKLOADS: dict[str, Workload] = {
    "noop-chain": noop_chain,
    "noop-wide": noop_wide,
    "sleep-blocks": sleep_blocks,
    "sleep-wide": sleep_wide,
    "simulate": simulate,
    "memory-wide": memory_wide,
    "dask-wide": dask_wide,
    "live-view": live_view,
    "import": import_cost,
    "history-read": history_read,
    "monte-carlo": monte_carlo,
    "history-analytics": history_analytics,
}
