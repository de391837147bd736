"""How ``simulate()`` scales with the number of steps: 1k, 10k, 100k steps by default.

Each phase is timed separately, best of ``--repeat`` (the machine is shared and noisy):

- build:    the definition from plain objects (``Pipeline(stages=[Stage(items=[...])])``);
- plan:     ``p.plan()`` — validation, compilation and the static reference check;
- schedule: the scheduler on the virtual clock (``Scheduler.execute`` + NotStarted rows);
- trace:    the trace DataFrame from the records (first build for a plan, static columns included);
- again:    a whole ``simulate(plan)`` on a plan already simulated once (what Monte Carlo pays per run).

Shapes (``--shapes``): ``grouped`` — one stage of step groups, each 10 parallel blocks of 10
steps; ``serial`` — one stage of n steps one after the other; ``wide`` — one parallel block
of n steps. Printed: a table of seconds per phase, µs per step, and the growth ratio of each
phase from one size to the next (10× more steps → about 10× the time when linear).

Run: ``.venv/bin/python benchmarks/simulate_scale.py`` (``--sizes 1000 10000``, ``--repeat 1``).
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable

import notebook_pipelines as nbp
from notebook_pipelines.engine import Scheduler
from notebook_pipelines.executors.virtual import VirtualClock, VirtualExecutor
from notebook_pipelines.simulation import simulate
from notebook_pipelines.trace import build_trace

PHASES = ("build", "plan", "schedule", "trace", "again")


def grouped(n: int, width: int = 10, per_group: int = 100) -> nbp.Pipeline:
    groups, k = [], 0
    for g in range(max(1, n // per_group)):
        blocks = []
        for _ in range(per_group // width):
            blocks.append(nbp.Parallel([nbp.Step(f"s{k + i}", duration=1.0) for i in range(width)]))
            k += width
        groups.append(nbp.StepGroup(f"g{g}", items=blocks))
    return nbp.Pipeline("grouped", stages=[nbp.Stage("s", items=groups)])


def serial(n: int) -> nbp.Pipeline:
    return nbp.Pipeline(
        "serial", stages=[nbp.Stage("s", items=[nbp.Step(f"s{i}", duration=1.0) for i in range(n)])]
    )


def wide(n: int) -> nbp.Pipeline:
    block = nbp.Parallel([nbp.Step(f"s{i}", duration=1.0 + i % 7) for i in range(n)])
    return nbp.Pipeline("wide", stages=[nbp.Stage("s", items=[block])])


SHAPES: dict[str, Callable[[int], nbp.Pipeline]] = {"grouped": grouped, "serial": serial, "wide": wide}


def once(shape: Callable[[int], nbp.Pipeline], n: int) -> dict[str, float]:
    """One fresh pass through every phase; seconds per phase."""
    out: dict[str, float] = {}
    gc.collect()
    t = time.perf_counter()
    p = shape(n)
    out["build"] = time.perf_counter() - t

    t = time.perf_counter()
    plan = p.plan()
    out["plan"] = time.perf_counter() - t

    t = time.perf_counter()
    clock = VirtualClock(0)
    scheduler = Scheduler(plan, VirtualExecutor(lambda node, attempt: node.duration, clock=clock), clock)
    scheduler.execute()
    scheduler.fill_not_started()
    out["schedule"] = time.perf_counter() - t

    t = time.perf_counter()
    trace = build_trace(plan, scheduler.recorder.rows, scheduler.run_id, clock.epoch_ns)
    out["trace"] = time.perf_counter() - t
    steps = int((trace["kind"] == "step").sum())
    assert steps == n, f"{steps} step rows for {n} steps"

    t = time.perf_counter()
    simulate(plan)
    out["again"] = time.perf_counter() - t
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--shapes", nargs="+", default=["grouped"], choices=sorted(SHAPES))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    simulate(grouped(100).plan())  # imports and first-use costs out of the way
    for name in args.shapes:
        results: dict[int, dict[str, float]] = {}
        for n in args.sizes:
            runs = [once(SHAPES[name], n) for _ in range(args.repeat)]
            results[n] = {phase: min(r[phase] for r in runs) for phase in PHASES}
        print(f"\nshape {name!r}, best of {args.repeat} (seconds)")
        print(f"{'steps':>9} " + " ".join(f"{p:>9}" for p in PHASES) + f" {'sim total':>10} {'µs/step':>8}")
        previous = None
        for n in args.sizes:
            r = results[n]
            total = r["schedule"] + r["trace"]
            print(
                f"{n:>9,} "
                + " ".join(f"{r[p]:9.3f}" for p in PHASES)
                + f" {total:10.3f} {total / n * 1e6:8.1f}"
            )
            if previous is not None:
                m, q = previous
                ratios = " ".join(f"{r[p] / q[p]:9.1f}" if q[p] > 0 else f"{'-':>9}" for p in PHASES)
                grow = total / (q["schedule"] + q["trace"])
                print(f"{'×' + format(n / m, 'g'):>9} {ratios} {grow:10.1f}   (growth for {n / m:g}× steps)")
            previous = (n, r)


if __name__ == "__main__":
    main()
