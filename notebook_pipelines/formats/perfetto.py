"""A trace as Chrome trace-event JSON, which Perfetto (ui.perfetto.dev) and ``chrome://tracing`` open.

The format is the JSON object form of the Trace Event Format: ``{"traceEvents": [...],
"displayTimeUnit": "ms"}``, every timestamp and duration in **microseconds** from the run's
start. What the file holds:

- **one process per stage** (``pid`` 2, 3, … in trace order, named ``stage <id>``; a looped
  stage's iterations are lanes of its process) and process 1 for the pipeline itself;
- **one thread per lane**: the lanes of a stage are laid out from its structure, as a tree —
  a step takes one lane, the items of a parallel block sit on lanes side by side, serial items
  reuse the same lanes, a looped node's iterations take as few lanes as ran at once (one that
  took a freed slot, R54, reuses its lane) — so nothing on a thread ever overlaps, and a
  container (a looped step's row too) spans the lanes of its items;
- **complete events** (``"ph": "X"``) nested stage → step group → step on each lane (a
  container's slice is repeated on each of its lanes, so each lane nests on its own), one per
  attempt, with ``args`` holding ``fqn``, ``status``, ``attempt``, ``error_type``, ``error``,
  ``action``, ``reason`` and ``worker``; the wait between two attempts is a slice named
  ``wait`` (category ``wait``);
- **instant events** (``"ph": "i"``, thread scope) where an attempt ended in a non-positive
  status (``Failed: deploy``), with its error;
- metadata events (``"ph": "M"``) naming processes and threads and keeping their order.

Skipped and never-started nodes have no times and are left out.

>>> import json, os, tempfile
>>> import notebook_pipelines as nbp
>>> p = nbp.Pipeline("p", stages=[nbp.Stage("s", items=[nbp.Step("a", duration=2)])])
>>> path = to_perfetto(p.simulate(), os.path.join(tempfile.mkdtemp(), "run.json"))
>>> events = json.loads(path.read_text())["traceEvents"]
>>> [(e["name"], e["ts"], e["dur"]) for e in events if e["ph"] == "X"]
[('pipeline p', 0.0, 2000000.0), ('stage s', 0.0, 2000000.0), ('a', 0.0, 2000000.0)]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..definition.looping import is_iteration
from ..definition.statuses import POSITIVE

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["to_perfetto", "trace_events"]

_ARGS = ("fqn", "status", "attempt", "error_type", "error", "action", "reason", "worker")
_QUIET = ("Skipped", "NotStarted")


def to_perfetto(trace: pd.DataFrame, path: str | Path) -> Path:
    """Write ``trace`` (one run) as Chrome trace-event JSON to ``path``; return the path."""
    path = Path(path)
    document = {
        "traceEvents": trace_events(trace),
        "displayTimeUnit": "ms",
        "otherData": {"generator": "notebook-pipelines", "run_id": _run_id(trace)},
    }
    path.write_text(json.dumps(document, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    return path


def _run_id(trace: pd.DataFrame) -> str:
    runs = trace["run_id"].dropna().unique() if "run_id" in trace.columns else []
    return str(runs[0]) if len(runs) else ""


def _ns(seconds: float) -> int:
    """Integer nanoseconds (so nesting compares exactly; written as µs with 3 decimals)."""
    return round(seconds * 1e9)


def trace_events(trace: pd.DataFrame) -> list[dict[str, Any]]:
    """The trace-event list of :func:`to_perfetto` (see the module notes)."""
    units, children, roots = _unit_tree(trace)

    width: dict[tuple, int] = {}
    column: dict[tuple, int] = {}  # an iteration → its column among its loop's (R54: slots reused)
    columns: dict[tuple, int] = {}  # a looped node → the width of one column

    def measure(key: tuple) -> int:  # iterative-safe enough: depth is bounded by the plan's limits
        blocks = children.get(key, {})
        sizes = []
        for block in blocks.values():
            if all(is_iteration(k[0], key[0]) for k in block):
                sizes.append(_pack(block, units, column, measure, columns, key))
            else:
                sizes.append(sum(measure(k) for k in block))
        width[key] = max(sizes or [1])
        return width[key]

    lane: dict[tuple, int] = {}

    def place(key: tuple, offset: int) -> None:
        lane[key] = offset
        for block in children.get(key, {}).values():
            o = offset
            for k in block:
                if k in column and key in columns:
                    place(k, offset + column[k] * columns[key])
                    continue
                place(k, o)
                o += width[k]

    events: list[dict[str, Any]] = []
    for key, pid in _processes(roots, units, children):
        first = units[key][0]
        if first["kind"] == "pipeline":
            name = _pipeline_name(trace)
            events += _meta(pid, name, 1, "pipeline")
            events += _slices(units[key], pid, 1, name, instants=False)
            continue
        measure(key)
        place(key, 0)
        name = _name(first)
        label = f"{first['kind'].replace('_', ' ')} {name}"
        events += _meta(pid, label, width[key], name)
        _emit(key, pid, 0, width[key], units, children, lane, width, events)
    return events


def _unit_tree(trace: pd.DataFrame) -> tuple[dict[tuple, list[dict]], dict, list[tuple]]:
    """The timed rows by unit — (fqn, iteration), its attempts in order — and the units' tree:
    each owner's children by (rollback?, block), and the units without an owner (the roots)."""
    timed = trace[trace["start_s"].notna() & trace["end_s"].notna()]
    timed = timed[~timed["status"].astype(str).isin(_QUIET)]
    rows = timed.astype(object).where(timed.notna(), None).to_dict("records")
    units: dict[tuple, list[dict]] = {}
    for row in rows:
        units.setdefault((row["fqn"], row["iteration"]), []).append(row)
    for attempts in units.values():
        attempts.sort(key=lambda r: (r["attempt"], r["start_s"]))
    children: dict[tuple, dict[tuple, list[tuple]]] = {}
    roots: list[tuple] = []
    by_fqn: dict[str, list[tuple]] = {}
    for key in units:
        by_fqn.setdefault(key[0], []).append(key)
    for key, attempts in units.items():
        first = attempts[0]
        owners = by_fqn.get(first["parent"] or "", [])
        owner = next((k for k in owners if k[1] == key[1]), owners[0] if owners else None)
        if owner is None or (units[owner][0]["kind"] == "step" and not is_iteration(key[0], owner[0])):
            roots.append(key)
            continue
        number = first["block"] if first["block"] is not None else -1
        children.setdefault(owner, {}).setdefault((first["phase"] == "rollback", number), []).append(key)
    return units, children, roots


def _processes(roots: list[tuple], units: dict, children: dict) -> list[tuple[tuple, int]]:
    """(unit, pid) of each process: the pipeline's is 1, each stage (or other root) the next."""
    processes: list[tuple[tuple, int]] = []  # (stage unit, pid)
    for key in roots:
        kind = units[key][0]["kind"]
        if kind == "pipeline":
            processes.append((key, 1))
            for stage in [k for block in children.get(key, {}).values() for k in block]:
                processes.append((stage, 0))
        else:
            processes.append((key, 0))
    pid = 1
    for index, (key, number) in enumerate(processes):
        if number == 0:
            pid += 1
            processes[index] = (key, pid)
    return processes


def _pack(block: list, units: dict, column: dict, measure: Any, columns: dict, owner: tuple) -> int:
    """Lay a looped node's iterations out in the fewest columns (first fit by start time: an
    iteration that took a freed slot reuses its lane, R54); the width they take."""
    each = max(measure(k) for k in block)
    free: list[int] = []  # per column, when it is free (ns)
    order = sorted(range(len(block)), key=lambda i: (_ns(units[block[i]][0]["start_s"]), i))
    for key in (block[i] for i in order):
        begin, end = _ns(units[key][0]["start_s"]), _ns(units[key][-1]["end_s"])
        for index, at in enumerate(free):
            if at <= begin:
                column[key], free[index] = index, end
                break
        else:
            column[key] = len(free)
            free.append(end)
    columns[owner] = each
    return each * max(1, len(free))


def _pipeline_name(trace: pd.DataFrame) -> str:
    pipeline = trace.attrs.get("pipeline")
    return f"pipeline {pipeline}" if pipeline else "pipeline"


def _name(row: dict) -> str:
    name = str(row["fqn"]).rsplit(".", 1)[-1]
    return name if row["iteration"] is None else f"{name} [{row['iteration']}]"


def _meta(pid: int, process: str, lanes: int, prefix: str) -> list[dict[str, Any]]:
    out = [
        {"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": process}},
        {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": pid}},
    ]
    for k in range(lanes):
        out.append(
            {
                "ph": "M",
                "name": "thread_name",
                "pid": pid,
                "tid": k + 1,
                "args": {"name": f"{prefix} lane {k + 1}"},
            }
        )
        out.append(
            {"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": k + 1, "args": {"sort_index": k + 1}}
        )
    return out


def _emit(key: tuple, pid: int, offset: int, span: int, units: dict, children: dict, lane: dict,
          width: dict, events: list) -> None:  # fmt: skip
    attempts = units[key]
    first = attempts[0]
    if first["kind"] == "step" and key not in children:  # a looped step's row holds its iterations
        events += _slices(attempts, pid, lane[key] + 1, _name(first))
        return
    label = _name(first) if first["kind"] != "stage" else f"stage {_name(first)}"
    for k in range(lane[key], lane[key] + width[key]):
        events += _slices(attempts, pid, k + 1, label, instants=False)
    for block in children.get(key, {}).values():
        for child in block:
            _emit(child, pid, lane[child], width[child], units, children, lane, width, events)


def _slices(
    attempts: list[dict], pid: int, tid: int, name: str, instants: bool = True
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    previous = None
    for row in attempts:
        start, end = _ns(row["start_s"]), _ns(row["end_s"])
        if previous is not None and start > previous:
            out.append(_x("wait", "wait", previous, start, pid, tid, {"before attempt": row["attempt"]}))
        args = {k: _plain(row.get(k)) for k in _ARGS if row.get(k) is not None}
        out.append(_x(name, str(row["kind"]), start, end, pid, tid, args))
        status = str(row["status"])
        if instants and status not in POSITIVE and status not in _QUIET:
            out.append(
                {
                    "name": f"{status}: {name}",
                    "cat": "failure",
                    "ph": "i",
                    "s": "t",
                    "ts": end / 1000,
                    "pid": pid,
                    "tid": tid,
                    "args": {k: args[k] for k in ("fqn", "attempt", "error_type", "error") if k in args},
                }
            )
        previous = end
    return out


def _x(name: str, cat: str, start: int, end: int, pid: int, tid: int, args: dict) -> dict[str, Any]:
    return {
        "name": name,
        "cat": cat,
        "ph": "X",
        "ts": start / 1000,
        "dur": (end - start) / 1000,
        "pid": pid,
        "tid": tid,
        "args": args,
    }


def _plain(value: Any) -> Any:
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)
