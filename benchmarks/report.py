"""Result rows, their ratios and budgets, printed as JSON lines and as a table.

One row per (workload, engine). ``ratio`` is the row's median over the median of the
workload's baseline (``threadpool``; ``pandas`` for the import workload) measured in the same
process. Ideal-bound workloads add ``ideal_s`` and ``ratio_ideal`` (median over the ideal).
Extra measurements (``growth``, ``peak_bytes``, ``bytes_per_step``, ``delta_ms``) ride along
on the rows they belong to; a baseline that could not run carries ``missing`` and no numbers.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .measure import Missing, Result, Timing


@dataclass
class Row:
    workload: str
    engine: str
    timing: Timing | None
    ratio: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    budget: str | None = None
    ok: bool | None = None
    missing: str | None = None
    measured: bool = True  # False for a computed bound (``ideal``): ``n`` is then 0

    @property
    def median(self) -> float | None:
        return self.timing.median if self.timing else None

    def as_json(self) -> dict[str, Any]:
        t = self.timing
        out: dict[str, Any] = {
            "workload": self.workload,
            "engine": self.engine,
            "median_s": _round(t.median) if t else None,
            "min_s": _round(t.min) if t else None,
            "max_s": _round(t.max) if t else None,
            "n": t.n if t and self.measured else 0,
            "ratio": _round(self.ratio),
        }
        out.update({key: _round(value) for key, value in self.extra.items()})
        if self.missing is not None:
            out["missing"] = self.missing
        if self.budget is not None:
            out["budget"] = self.budget
            out["ok"] = self.ok
        return out


@dataclass(frozen=True)
class Budget:
    """What the issue allows for the ``nbp`` row of a workload, and how to check a row."""

    text: str
    check: Callable[[Row], bool]

    def apply(self, row: Row) -> None:
        row.budget = self.text
        row.ok = bool(self.check(row))


def _round(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


def rows_for(
    workload: str, results: Mapping[str, Result], baseline: str = "threadpool", ideal: float | None = None
) -> list[Row]:
    """Rows of one workload, in the order of ``results``, with ratios to ``baseline``.

    With ``ideal`` (seconds), every measured row gets ``ideal_s`` and ``ratio_ideal``, and an
    ``ideal`` row is appended, whose ratio is the ideal over the baseline.
    """
    base = results.get(baseline)
    base_median = base.median if isinstance(base, Timing) else None
    rows = []
    for engine, result in results.items():
        if isinstance(result, Missing):
            rows.append(Row(workload, engine, None, missing=result.reason))
            continue
        row = Row(workload, engine, result, ratio=_ratio(result.median, base_median))
        if ideal is not None:
            row.extra = {"ideal_s": ideal, "ratio_ideal": result.median / ideal}
        rows.append(row)
    if ideal is not None:
        ideal_row = Row(workload, "ideal", Timing((ideal,)), ratio=_ratio(ideal, base_median), measured=False)
        ideal_row.extra = {"ideal_s": ideal, "ratio_ideal": 1.0}
        rows.append(ideal_row)
    return rows


def _ratio(value: float, base: float | None) -> float | None:
    return value / base if base else None


def json_lines(rows: Iterable[Row]) -> str:
    return "\n".join(json.dumps(row.as_json(), ensure_ascii=False) for row in rows)


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.3f} s"


def _detail(row: Row) -> str:
    if row.missing is not None:
        return f"missing: {row.missing}"
    e = row.extra
    if "ratio_ideal" in e and row.engine != "ideal":
        return f"{e['ratio_ideal']:.3f}× ideal"
    if "growth" in e:
        return f"growth 10k→100k ×{e['growth']:.1f}"
    if "bytes_per_step" in e:
        return f"peak {e['peak_bytes'] / 1e6:.1f} MB, {e['bytes_per_step'] / 1e3:.2f} KB/step"
    if "delta_ms" in e:
        return f"{e['delta_ms']:+.0f} ms"
    return ""


def _ok(row: Row) -> str:
    return "" if row.ok is None else ("yes" if row.ok else "NO")


HEADERS = ("workload", "engine", "median", "ratio", "budget", "ok", "detail")


def table(rows: list[Row]) -> str:
    """The human table: one line per row, columns padded to their widest cell."""
    cells = [
        (
            row.workload,
            row.engine,
            _seconds(row.median),
            "-" if row.ratio is None else f"{row.ratio:.2f}",
            row.budget or "",
            _ok(row),
            _detail(row),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [HEADERS, *cells]) for i in range(len(HEADERS))]
    right = {2, 3}  # numbers
    lines = []
    for line in [HEADERS, *cells]:
        padded = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))]
        lines.append("  ".join(padded).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine() -> str:
    """One line on where the numbers come from: cores, Python, CPU model, date."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    when = time.strftime("%Y-%m-%d %H:%M %Z")
    return f"{os.cpu_count()} cores, Python {platform.python_version()}, {cpu}, {when}"
