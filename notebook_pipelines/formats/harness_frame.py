"""A Harness execution → the trace DataFrame: :func:`load_harness_execution`.

The JSON is read and checked (:mod:`.harness_json`), the graph checked and walked into rows
(:mod:`.harness_graph`), and the rows made into a frame of the trace schema (``engine/trace.py``)
plus :data:`EXTRA_COLUMNS`: times relative to the pipeline's start, ``status`` categorical with
the unknown statuses after ``STATUSES``, ``after`` from the blocks as a run's trace has it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import HarnessExecutionError, HarnessStatusWarning
from .harness_graph import (
    attempt_nodes,
    check_graph,
    epoch_ms,
    in_plan_order,
    not_started_rows,
    pipeline_row,
    walk_execution,
)
from .harness_json import read_execution_json, unwrap

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["EXTRA_COLUMNS", "load_harness_execution", "load_harness_run"]

#: the columns a loaded execution has after the trace schema's
EXTRA_COLUMNS = ("uuid", "setupId", "stepType")


def load_harness_execution(source: Any, attempts: Any = None, *, run_id: str | None = None) -> pd.DataFrame:
    """The trace DataFrame of a Harness run, from the execution-details JSON.

    Args:
        source: a path to the JSON of ``…/pipelines/execution/v2/{planExecutionId}`` (with
            ``renderFullBottomGraph=true``), or that JSON parsed (the response envelope or its
            ``data``). Files over 100 MB are refused before parsing.
        attempts: node JSON of earlier attempts of retried steps (``getExecutionNode``
            responses): a list, a dict by node execution id, or a path to a JSON file of one.
        run_id: the trace's ``run_id`` (default: the ``planExecutionId``).

    Returns:
        A trace with the schema of ``engine/trace.py`` plus ``uuid``, ``setupId``,
        ``stepType``; ``attrs["pipeline"]`` is the pipeline identifier.

    Raises:
        HarnessExecutionError: not an execution JSON, a node id missing from ``nodeMap``, a
            cycle in the graph, a file too large; the message names the node or the problem.
    """

    doc, label = _source(source)
    data = unwrap(doc, label)
    graph = data["executionGraph"]
    node_map: Mapping = graph["nodeMap"]
    adjacency: Mapping = graph.get("nodeAdjacencyListMap") or {}
    check_graph(node_map, adjacency, graph["rootNodeId"], label)
    summary = data.get("pipelineExecutionSummary") or {}
    if not isinstance(summary, Mapping):
        summary = {}
    earlier = attempt_nodes(attempts, label)
    rows, unknown = walk_execution(node_map, adjacency, graph["rootNodeId"], earlier, label)
    not_started_rows(summary, node_map, rows)
    if not any(r["kind"] == "pipeline" for r in rows):
        rows.insert(0, pipeline_row(summary, rows, unknown, label))
    if unknown:
        warnings.warn(
            f"{label}: unknown Harness status(es) {', '.join(sorted(unknown))} kept verbatim in the trace "
            "(the status column's categories are STATUSES followed by them)",
            HarnessStatusWarning,
            stacklevel=2,
        )
    rows = in_plan_order(rows)
    run = run_id or str(summary.get("planExecutionId") or data.get("planExecutionId") or "harness")
    frame = _frame(rows, list(unknown), run, _start_ms(summary, rows, label))
    frame.attrs["run_id"] = run
    frame.attrs["pipeline"] = str(summary.get("pipelineIdentifier") or "pipeline")
    frame.attrs["source"] = "harness"
    return frame


def _source(source: Any) -> tuple[Any, str]:
    """The parsed JSON of ``source`` (a path or the parsed JSON) and its name in messages."""
    if isinstance(source, Mapping):
        return source, "the execution"
    if isinstance(source, (str, os.PathLike)):
        return read_execution_json(source), str(source)
    raise HarnessExecutionError(
        f"load_harness_execution() takes a path or the parsed JSON (a dict), not {type(source).__name__}"
    )


def _start_ms(summary: Mapping, rows: list[dict], label: str) -> int:
    """The pipeline's start (epoch ms): the summary's, or the earliest row's if that is earlier."""
    starts = [r["start_ms"] for r in rows if r["start_ms"] is not None]
    t0 = epoch_ms(summary.get("startTs"), f"{label}: pipelineExecutionSummary.startTs") or (
        min(starts) if starts else 0
    )
    return min([t0, *starts]) if starts else t0


def _frame(rows: list[dict], unknown: list[str], run: str, t0: int) -> pd.DataFrame:
    """The trace DataFrame of the rows: the schema's columns in order, then :data:`EXTRA_COLUMNS`."""
    import pandas as pd

    from ..engine.trace import COLUMNS, STATUSES, dtypes
    from ..engine.trace import after_from_blocks as _after

    types = dtypes()
    data_cols: dict[str, Any] = {}
    n = len(rows)

    def ms_column(name: str) -> Any:
        return pd.array([r[name] for r in rows], dtype="Int64")

    start_ms, end_ms = ms_column("start_ms"), ms_column("end_ms")
    for name in COLUMNS:
        if name == "run_id":
            values = [run] * n
        elif name in ("start", "end"):
            ms = start_ms if name == "start" else end_ms
            data_cols[name] = pd.to_datetime(ms.astype("float64"), unit="ms", utc=True).astype(types[name])
            continue
        elif name in ("start_s", "end_s"):
            ms = start_ms if name == "start_s" else end_ms
            data_cols[name] = (ms - t0).to_numpy(dtype="float64", na_value=float("nan")) / 1000
            continue
        elif name == "duration_s":
            data_cols[name] = data_cols["end_s"] - data_cols["start_s"]
            continue
        elif name == "status":
            categories = [*STATUSES, *unknown]
            data_cols[name] = pd.Categorical([r["status"] for r in rows], categories=categories)
            continue
        else:
            values = [r.get(name) for r in rows]
        data_cols[name] = (
            values
            if types[name] is object or types[name] == "object"
            else pd.array(values, dtype=object).astype(types[name])
        )
    data_cols["after"] = _after([r["fqn"] for r in rows], [r["parent"] for r in rows],
                                [r["phase"] for r in rows], [r["block"] for r in rows])  # fmt: skip
    for name in EXTRA_COLUMNS:
        data_cols[name] = pd.array([r[name] for r in rows], dtype="str")
    return pd.DataFrame(data_cols, columns=[*COLUMNS, *EXTRA_COLUMNS])


def load_harness_run(run_id: str, raw: Mapping, summary: Mapping, pipeline: str) -> pd.DataFrame:
    """A Harness run kept by ``fetch_harness_history`` (``raw``: the execution and the earlier
    attempts) as history rows: the trace of :func:`load_harness_execution` and the run columns
    (:mod:`.history`) from its summary."""
    import pandas as pd

    from ..engine.trace import COLUMNS
    from .history import RUN_COLUMNS, HistoryError, history_dtypes
    from .history_store import EXTRAS

    try:
        trace = load_harness_execution(raw["execution"], attempts=raw.get("attempts") or None, run_id=run_id)
    except HarnessExecutionError as err:
        raise HistoryError(f"Harness run {run_id}: {err}") from None
    execution = raw["execution"]
    data = execution.get("data") if isinstance(execution, Mapping) else None
    s = dict((data or {}).get("pipelineExecutionSummary") or {}) if isinstance(data, Mapping) else {}
    s.update({k: v for k, v in summary.items() if s.get(k) is None})
    trigger = s.get("executionTriggerInfo") if isinstance(s.get("executionTriggerInfo"), Mapping) else {}
    module = s.get("moduleInfo") if isinstance(s.get("moduleInfo"), Mapping) else {}
    ci = module.get("ci") if isinstance(module.get("ci"), Mapping) else {}
    git = s.get("gitDetails") if isinstance(s.get("gitDetails"), Mapping) else {}
    created, start = s.get("createdAt") or s.get("startTs"), s.get("startTs")
    types = history_dtypes()
    n = len(trace)
    out = trace.copy()
    values = {
        "source": "harness",
        "pipeline": pipeline,
        "run_number": s.get("runSequence"),
        "commit": git.get("commitId"),
        "branch": ci.get("branch") or git.get("branch"),
        "trigger": trigger.get("triggerType"),
        "url": None,
        "name": None,
    }
    for name, value in values.items():
        out[name] = pd.array([value] * n, dtype=types[name])
    stamp = pd.NaT if created is None else pd.Timestamp(int(created), unit="ms", tz="UTC")
    out["created"] = pd.array([stamp] * n, dtype=types["created"])
    queued = [float("nan")] * n
    if created is not None and start is not None and n:
        queued[0] = max(0, int(start) - int(created)) / 1000  # the pipeline row: the run's queue
    out["queued_s"] = queued
    return out[[*COLUMNS, *RUN_COLUMNS, *[c for c in EXTRAS if c in out.columns]]]
