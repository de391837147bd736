"""The execution trace: plain records while running, one columnar DataFrame at the end.

The engine appends a tuple per node execution to a :class:`Recorder` (one row per step
attempt, one per stage/step-group/pipeline execution, ``Skipped`` rows for nodes a condition
skipped and ``NotStarted`` rows for nodes that never started, so a trace always lists every
node of the plan, D5, D6). The DataFrame is built once, column by column; nothing is done per
row in pandas.

Schema (the contract every front-end and analysis relies on):

============  ========================  ====================================================
column        dtype                     meaning
============  ========================  ====================================================
run_id        str                       id of the run (``run_id=`` to fix it)
fqn           str                       fully qualified name, as Harness writes it
parent        str                       fqn of the parent node (NA for the pipeline)
kind          category                  pipeline, stage, step_group, step
phase         category                  execution, rollback
stage         str                       stage identifier (NA for the pipeline row)
step_group    str                       innermost step group identifier, or NA
step          str                       step identifier (NA for containers)
block         Int64                     index of the serial item holding the node in its parent
iteration     Int64                     looping-strategy iteration, NA without a strategy
attempt       int64                     1, 2, … per execution of the node; 0 if never reached (a retry
                                        that never started is NotStarted with its number)
status        category                  see ``STATUSES``
reason        str                       why skipped / not started / how it ended, or NA
start, end    datetime64[ns, UTC]       wall-clock (or virtual) times; NaT if never started
start_s       float64                   seconds from the run's start
end_s         float64                   seconds from the run's start
duration_s    float64                   end_s - start_s
worker        str                       thread name, ``virtual``, or the Dask worker
error_type    str                       Harness error type (R16) of a failure, or NA
error         str                       the error message, or NA
action        str                       failure-strategy action applied, or NA
outputs       object                    dict of output variables, or None
log           str                       text the step printed (stdout and stderr), or NA
inputs        object                    dict of the step's resolved inputs, or None
============  ========================  ====================================================
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from ..definition.statuses import POSITIVE, STATUSES

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from ..definition.plan import Plan

__all__ = ["COLUMNS", "POSITIVE", "STATUSES", "Recorder", "build_trace", "empty_trace"]

COLUMNS = (
    "run_id",
    "fqn",
    "parent",
    "kind",
    "phase",
    "stage",
    "step_group",
    "step",
    "block",
    "iteration",
    "attempt",
    "status",
    "reason",
    "start",
    "end",
    "start_s",
    "end_s",
    "duration_s",
    "worker",
    "error_type",
    "error",
    "action",
    "outputs",
    "log",
    "inputs",
)

KINDS = ("pipeline", "stage", "step_group", "step")
_STATUS_CODE = {status: code for code, status in enumerate(STATUSES)}
PHASES = ("execution", "rollback")

# The dynamic part of a record, in order (the static part comes from the plan node).
RECORD = (
    "node",
    "iteration",
    "attempt",
    "status",
    "reason",
    "start_s",
    "end_s",
    "worker",
    "error_type",
    "error",
    "action",
    "outputs",
    "log",
    "inputs",
)


class Recorder:
    """Collects one tuple per node execution (see ``RECORD``); cheap to append to."""

    __slots__ = ("rows", "seen")

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.seen: set[int] = set()

    def add(self, row: tuple) -> None:
        self.rows.append(row)
        self.seen.add(row[0])


def _node_columns(plan: Plan) -> dict:
    """The static columns as pandas arrays with one entry per plan node (cached on the plan)."""
    import pandas as pd

    static = plan.static_columns()
    cached = static.get("_arrays")
    if cached is None:
        cached = {name: pd.array(static[name], dtype="str") for name in STATIC_STR}
        cached["kind"] = pd.Categorical(static["kind"], categories=KINDS)
        cached["phase"] = pd.Categorical(static["phase"], categories=PHASES)
        cached["block"] = pd.array(static["block"], dtype="Int64")
        static["_arrays"] = cached
    return cached


STATIC_STR = ("fqn", "parent", "stage", "step_group", "step")


@functools.cache
def _status_dtype() -> pd.CategoricalDtype:
    import pandas as pd

    return pd.CategoricalDtype(STATUSES)


def build_trace(plan: Plan, rows: list[tuple], run_id: str, epoch_ns: int) -> pd.DataFrame:
    """The trace DataFrame from records, ordered by plan position, then iteration and attempt.

    ``epoch_ns`` is the run's start as nanoseconds since the Unix epoch (UTC). The work is
    column by column (numpy/pandas), never per row.
    """
    import numpy as np
    import pandas as pd

    n = len(rows)
    cols = list(zip(*rows)) if rows else [()] * len(RECORD)
    index = np.fromiter(cols[0], dtype=np.int64, count=n)
    iteration = np.array(cols[1], dtype=object)
    attempt = np.fromiter(cols[2], dtype=np.int64, count=n)
    iteration_key = np.fromiter((-1 if i is None else i for i in cols[1]), dtype=np.int64, count=n)
    order = np.lexsort((attempt, iteration_key, index))
    index, attempt, iteration = index[order], attempt[order], iteration[order]

    def column(i: int) -> np.ndarray:
        return np.array(cols[i], dtype=object)[order] if n else np.array([], dtype=object)

    start_s = np.array(cols[5], dtype=np.float64)[order] if n else np.array([], dtype=np.float64)
    end_s = np.array(cols[6], dtype=np.float64)[order] if n else np.array([], dtype=np.float64)

    def stamp(seconds: np.ndarray) -> pd.DatetimeIndex:
        missing = np.isnan(seconds)
        ns = np.where(missing, 0, np.round(np.nan_to_num(seconds) * 1e9)).astype(np.int64) + np.int64(
            epoch_ns
        )
        ns[missing] = np.iinfo(np.int64).min  # NaT; from datetime64[ns] is ~10× faster than to_datetime
        return pd.DatetimeIndex(ns.view("M8[ns]")).tz_localize("UTC")

    status_codes = np.fromiter((_STATUS_CODE.get(s, -1) for s in cols[3]), np.int8, count=n)
    nodes = _node_columns(plan)
    data = {"run_id": pd.array(np.full(n, run_id, dtype=object), dtype="str")}
    for name in STATIC_STR:
        data[name] = nodes[name].take(index)
    data["kind"] = nodes["kind"].take(index)
    data["phase"] = nodes["phase"].take(index)
    data["block"] = nodes["block"].take(index)
    data.update(
        {
            "iteration": pd.array(iteration, dtype="Int64"),
            "attempt": attempt,
            "status": pd.Categorical.from_codes(status_codes[order], dtype=_status_dtype()),
            "reason": pd.array(column(4), dtype="str"),
            "start": stamp(start_s),
            "end": stamp(end_s),
            "start_s": start_s,
            "end_s": end_s,
            "duration_s": end_s - start_s,
            "worker": pd.array(column(7), dtype="str"),
            "error_type": pd.array(column(8), dtype="str"),
            "error": pd.array(column(9), dtype="str"),
            "action": pd.array(column(10), dtype="str"),
            "outputs": column(11),
            "inputs": column(13),
            "log": pd.array(column(12), dtype="str"),
        }
    )
    frame = pd.DataFrame(data, columns=list(COLUMNS))
    frame.attrs["run_id"] = run_id
    frame.attrs["pipeline"] = plan.pipeline.id
    return frame


def empty_trace() -> pd.DataFrame:
    """A trace with no rows and the full schema."""
    from ..definition.model import Pipeline, Stage, Step
    from ..definition.plan import compile_plan

    plan = compile_plan(Pipeline("empty", stages=[Stage("s", items=[Step("x")])]))
    return build_trace(plan, [], "", 0)
