"""Scheduling overhead of ``run()`` side by side with a bare thread pool, in one process.

Three measurements, each the best of ``--repeat`` runs, reported as ratios to the baseline:

1. serial no-op steps: µs of scheduling per step (pipeline makespan / steps) against
   ``concurrent.futures.ThreadPoolExecutor`` doing ``submit(noop).result()`` in a loop;
2. parallel no-op blocks (8 siblings per block): µs per step against ``pool.map`` per block;
3. parallel sleeping blocks: makespan against the ideal (blocks × sleep), i.e. how close
   parallel blocks come to perfect overlap.

Run: ``.venv/bin/python benchmarks/engine_overhead.py`` (or ``make bench``).
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import notebook_pipelines as nbp


def noop() -> None:
    return None


def serial_pipeline(n: int) -> nbp.Pipeline:
    return nbp.Pipeline("serial", stages=[nbp.Stage("s", items=[nbp.Step(f"x{i}", noop) for i in range(n)])])


def parallel_pipeline(blocks: int, width: int, body) -> nbp.Pipeline:
    items = [nbp.Parallel([nbp.Step(f"x{b}_{i}", body) for i in range(width)]) for b in range(blocks)]
    return nbp.Pipeline("parallel", stages=[nbp.Stage("s", items=[nbp.StepGroup("g", items=items)])])


def best(fn, repeat: int) -> float:
    return min(fn() for _ in range(repeat))


def engine_makespan(p: nbp.Pipeline) -> float:
    trace = p.run(run_id="bench")
    return float(trace.loc[trace.kind == "pipeline", "duration_s"].iloc[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, repeat = args.steps, args.repeat

    serial = serial_pipeline(n)
    engine_serial = best(lambda: engine_makespan(serial), repeat) / n * 1e6

    def pool_serial() -> float:
        with ThreadPoolExecutor(8) as pool:
            t0 = time.perf_counter()
            for _ in range(n):
                pool.submit(noop).result()
            return time.perf_counter() - t0

    base_serial = best(pool_serial, repeat) / n * 1e6

    width, blocks = 8, max(1, n // 8)
    par = parallel_pipeline(blocks, width, noop)
    engine_par = best(lambda: engine_makespan(par), repeat) / (blocks * width) * 1e6

    def pool_par() -> float:
        with ThreadPoolExecutor(width) as pool:
            t0 = time.perf_counter()
            for _ in range(blocks):
                list(pool.map(lambda _i: noop(), range(width)))
            return time.perf_counter() - t0

    base_par = best(pool_par, repeat) / (blocks * width) * 1e6

    sleep, sblocks = 0.05, 10

    def sleeper() -> None:
        time.sleep(sleep)

    sleepy = parallel_pipeline(sblocks, width, sleeper)
    ideal = sleep * sblocks
    sleepy_makespan = best(lambda: engine_makespan(sleepy), repeat)

    rows = [
        ("serial no-op steps, µs/step", engine_serial, base_serial, "10.1f"),
        ("parallel no-op blocks of 8, µs/step", engine_par, base_par, "10.1f"),
        ("10 blocks of 8 × 50 ms sleeps, makespan s", sleepy_makespan, ideal, "10.3f"),
    ]
    print(f"{'measurement':44} {'engine':>10} {'baseline':>10} {'ratio':>7}")
    for label, engine, baseline, fmt in rows:
        print(f"{label:44} {engine:{fmt}} {baseline:{fmt}} {engine / baseline:7.3f}")


if __name__ == "__main__":
    main()
