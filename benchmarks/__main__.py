"""``python -m benchmarks [--quick] [--json] [--only NAME ...]``: run the workloads, print the results.

With ``--json``, one JSON line per (workload, engine) comes first, then the table; without
it, only the table. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .report import Row, json_lines, machine, table
from .workloads import WORKLOADS, Config

QUICK = Config(repeat=3, import_repeat=5)
FULL = Config(repeat=7, import_repeat=9)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="notebook-pipelines side by side with its baselines"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK.repeat} repetitions instead of {FULL.repeat}"
    )
    parser.add_argument("--json", action="store_true", help="one JSON line per row before the table")
    parser.add_argument(
        "--only",
        action="append",
        choices=list(WORKLOADS),
        metavar="NAME",
        help=f"run only this workload (repeatable): {', '.join(WORKLOADS)}",
    )
    return parser.parse_args(argv)


def run(names: Sequence[str], cfg: Config) -> list[Row]:
    rows: list[Row] = []
    for name in names:
        print(f"running {name} …", file=sys.stderr, flush=True)
        rows.extend(WORKLOADS[name](cfg))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = QUICK if args.quick else FULL
    rows = run(args.only or list(WORKLOADS), cfg)
    if args.json:
        print(json_lines(rows))
    print(f"# {machine()}; {cfg.repeat} repetitions (imports: {cfg.import_repeat}), medians")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
