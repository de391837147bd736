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
attempt       int64                     1, 2, … per execution of the node; 0 if never run
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
============  ========================  ====================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .plan import Plan

__all__ = ["COLUMNS", "STATUSES", "POSITIVE", "Recorder", "build_trace", "empty_trace"]

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
)

#: Harness statuses (R26) plus ``NotStarted`` (D6); the order of the status category.
STATUSES = (
    "Success",
    "IgnoreFailed",
    "Skipped",
    "Failed",
    "Errored",
    "Expired",
    "Aborted",
    "ApprovalRejected",
    "Suspended",
    "FreezeFailed",
    "NotStarted",
    "Running",
    "Queued",
    "InterventionWaiting",
    "ResourceWaiting",
)
#: Statuses that count as success (R26, R30).
POSITIVE = frozenset({"Success", "Skipped", "IgnoreFailed", "Suspended"})
KINDS = ("pipeline", "stage", "step_group", "step")
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


def build_trace(plan: Plan, rows: list[tuple], run_id: str, epoch_ns: int) -> pd.DataFrame:
    """The trace DataFrame from records, ordered by plan position, then attempt.

    ``epoch_ns`` is the run's start as nanoseconds since the Unix epoch (UTC).
    """
    import numpy as np
    import pandas as pd

    rows = sorted(rows, key=lambda r: (r[0], r[1] if r[1] is not None else -1, r[2]))
    n = len(rows)
    cols = list(zip(*rows)) if rows else [()] * len(RECORD)
    index = np.fromiter(cols[0], dtype=np.int64, count=n)
    nodes = plan.nodes

    def static(get: Any) -> np.ndarray:
        table = np.array([get(node) for node in nodes], dtype=object)
        return table[index]

    start_s = np.array(cols[5], dtype=np.float64)
    end_s = np.array(cols[6], dtype=np.float64)
    epoch = np.int64(epoch_ns)

    def stamp(seconds: np.ndarray) -> pd.DatetimeIndex:
        ns = np.where(np.isnan(seconds), np.nan, np.round(seconds * 1e9))
        values = pd.array(ns, dtype="Float64").astype("Int64") + epoch
        return pd.to_datetime(values, utc=True)

    def block_of(node: Any) -> Any:
        return node.block if node.block is not None else pd.NA

    data = {
        "run_id": pd.array([run_id] * n, dtype="str"),
        "fqn": pd.array(static(lambda x: x.fqn), dtype="str"),
        "parent": pd.array(static(lambda x: x.parent.fqn if x.parent is not None else None), dtype="str"),
        "kind": pd.Categorical(static(lambda x: x.kind), categories=KINDS),
        "phase": pd.Categorical(static(lambda x: x.phase), categories=PHASES),
        "stage": pd.array(static(lambda x: x.stage.id if x.stage is not None else None), dtype="str"),
        "step_group": pd.array(static(lambda x: x.group.id if x.group is not None else None), dtype="str"),
        "step": pd.array(static(lambda x: x.id if x.kind == "step" else None), dtype="str"),
        "block": pd.array(static(block_of), dtype="Int64"),
        "iteration": pd.array(np.array(cols[1], dtype=object), dtype="Int64"),
        "attempt": np.array(cols[2], dtype=np.int64),
        "status": pd.Categorical(np.array(cols[3], dtype=object), categories=STATUSES),
        "reason": pd.array(np.array(cols[4], dtype=object), dtype="str"),
        "start": stamp(start_s),
        "end": stamp(end_s),
        "start_s": start_s,
        "end_s": end_s,
        "duration_s": end_s - start_s,
        "worker": pd.array(np.array(cols[7], dtype=object), dtype="str"),
        "error_type": pd.array(np.array(cols[8], dtype=object), dtype="str"),
        "error": pd.array(np.array(cols[9], dtype=object), dtype="str"),
        "action": pd.array(np.array(cols[10], dtype=object), dtype="str"),
        "outputs": np.array(cols[11], dtype=object) if n else np.array([], dtype=object),
        "log": pd.array(np.array(cols[12], dtype=object), dtype="str"),
    }
    frame = pd.DataFrame(data, columns=list(COLUMNS))
    frame.attrs["run_id"] = run_id
    frame.attrs["pipeline"] = plan.pipeline.id
    return frame


def empty_trace() -> pd.DataFrame:
    """A trace with no rows and the full schema."""
    from .model import Pipeline, Stage, Step
    from .plan import compile_plan

    plan = compile_plan(Pipeline("empty", stages=[Stage("s", items=[Step("x")])]))
    return build_trace(plan, [], "", 0)
