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
iteration     Int64                     looping-strategy iteration (0-based) of the node's innermost
                                        looped node, NA outside one and on the looped node's own row
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
after         object                    tuple of the fqns of the nodes this node waited for
                                        before it could start (its dependency edges), or
                                        None where they are unknown; see below
============  ========================  ====================================================

``after`` holds the edges that decided the run's timing. For ``run()`` and ``simulate()`` it
comes from the plan's structure: a node in serial position ``k`` of its container waited for
the item before it (every branch of a parallel block before it), a member of a parallel block
with ``needs`` for the members it needs (D14); the first item of a list,
an item of a parallel block that opens a list and a looping iteration wait for nothing but
their parent's start (``()``). Loaders fill it from what the source knows: the Harness graph's
order (as above), a GitHub workflow's ``needs``, a GitLab job's needs or previous stage. The
timing analyses (``trace.pipeline.critical_path()``, ``slack()``) follow ``after`` where a row
has it, so they work on any DAG, not only on series-parallel layouts. The lists of one node's
rows are one object (a node's attempts share it): copy a list before changing it.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ..definition.statuses import POSITIVE, STATUSES
from ..errors import PipelineError
from .trace_layout import node_columns, with_extra
from .trace_layout import strings as _strings

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from ..definition.plan import Plan, PlanNode

__all__ = [
    "COLUMNS",
    "OBJECT_COLUMNS",
    "POSITIVE",
    "STATUSES",
    "Record",
    "Recorder",
    "after_from_blocks",
    "build_trace",
    "dtypes",
    "empty_trace",
    "make_record",
    "start_trace",
]

_STATUS_CODE = {status: code for code, status in enumerate(STATUSES)}


class Record(NamedTuple):
    """One trace row as the engine records it: the dynamic columns, read by name.

    The static columns (``fqn``, ``parent``, ``kind`` …) come from the plan node ``node``
    indexes; ``start``/``end`` timestamps and ``duration_s`` are derived from ``start_s`` and
    ``end_s``. A field's annotation gives its column's dtype (``str | None`` → pandas string,
    ``int`` → int64, ``int | None`` → Int64, ``float | None`` → float64, ``dict | None`` →
    object), so adding a column is one field here (with a default) and one line in the docs.
    """

    node: int
    iteration: int | None
    attempt: int
    status: str
    reason: str | None
    start_s: float | None
    end_s: float | None
    worker: str | None
    error_type: str | None
    error: str | None
    action: str | None
    outputs: dict[str, Any] | None
    log: str | None
    inputs: dict[str, Any] | None


#: ``make_record((node, iteration, …))``: a :class:`Record` from a tuple of every field, in
#: order, without the Python-level ``__new__`` of a named tuple (the scheduler's hot path; a
#: new field must be passed there too: no defaults apply)
make_record = functools.partial(tuple.__new__, Record)

#: Each field's annotation as text (``"str | None"``): what :func:`_column` makes of it.
_ANNOTATIONS = {name: getattr(kind, "__forward_arg__", kind) for name, kind in Record.__annotations__.items()}
#: The record fields whose column is made of NAs when no row has a value (see :func:`_column`).
_MAYBE_EMPTY = tuple(
    name for name, kind in _ANNOTATIONS.items() if kind in ("int | None", "str | None") and name != "node"
)
#: The columns taken from the plan node of each row (cached per plan, :mod:`.trace_layout`).
STATIC = ("fqn", "parent", "kind", "phase", "stage", "step_group", "step", "block")
STATIC_STR = ("fqn", "parent", "stage", "step_group", "step")


def _columns() -> tuple[str, ...]:
    """The trace's column order: run id, static, then the record's fields (timestamps before
    ``start_s``, ``duration_s`` after ``end_s``)."""
    out = ["run_id", *STATIC]
    for name in Record._fields[1:]:
        if name == "start_s":
            out += ["start", "end"]
        out.append(name)
        if name == "end_s":
            out.append("duration_s")
    return tuple(out)


COLUMNS = (*_columns(), "after")
#: the columns that hold Python objects (dicts, lists): what a file keeps as JSON
OBJECT_COLUMNS = ("outputs", "inputs", "after")


class Recorder:
    """Collects one :class:`Record` per node execution; cheap to append to."""

    __slots__ = ("rows", "seen")

    def __init__(self) -> None:
        self.rows: list[Record] = []
        self.seen: set[int] = set()

    def add(self, row: Record) -> None:
        self.rows.append(row)
        self.seen.add(row.node)


def after_from_blocks(
    fqn: list[str], parent: list[str | None], phase: list[str | None], block: list[Any]
) -> list[tuple[str, ...]]:
    """Per row, the fqns it waited for, read from the structure columns of a trace (for a
    loader that knows the serial order but not the plan): the nodes of the same parent and
    phase in the block before its own. Rows of one node share one list; a row without a block
    gets ``[]``.

    >>> after_from_blocks(["a", "b", "c", "d"], ["s"] * 4, ["execution"] * 4, [0, 1, 1, 2])
    [(), ('a',), ('a',), ('b', 'c')]
    """
    members: dict[tuple[Any, Any], dict[Any, dict[str, None]]] = {}  # (parent, phase) → block → fqns
    for f, p, ph, b in zip(fqn, parent, phase, block):
        if b is not None and b == b:
            members.setdefault((p, ph), {}).setdefault(b, {})[f] = None
    before: dict[tuple[Any, Any, str], tuple[str, ...]] = {}
    for (p, ph), blocks in members.items():
        previous: tuple[str, ...] = ()
        for b in sorted(blocks):
            for f in blocks[b]:
                before[(p, ph, f)] = previous
            previous = tuple(blocks[b])
    return [before.get((p, ph, f), ()) for f, p, ph in zip(fqn, parent, phase)]


@functools.cache
def _status_dtype() -> pd.CategoricalDtype:
    import pandas as pd

    return pd.CategoricalDtype(STATUSES)


def _no_values(kind: str, n: int) -> Any:
    """A column of ``n`` NAs of a kind (``reason``, ``error`` … of most rows): made in C."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    if kind == "int | None":
        return pd.arrays.IntegerArray(np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool))
    return _strings(pa.nulls(n, type=pa.large_string()))


def _text(data: Any) -> Any:
    """A ``str`` column from an object array of texts and ``None``; anything else (which no
    record holds) is left to pandas, which writes it as text."""
    import pandas as pd
    import pyarrow as pa

    try:
        return _strings(pa.array(data, type=pa.large_string(), from_pandas=True))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pd.array(data, dtype="str")


def _fields(rows: Sequence[Record]) -> dict[str, Sequence[Any]]:
    """Each record field's values, one list per field (the rows transposed): the rows laid
    end to end, then every ``len(Record._fields)``-th value from each field's place (C loops,
    no iterator per row as ``zip(*rows)`` makes: half the time at 100,000 rows)."""
    width = len(Record._fields)
    flat = list(itertools.chain.from_iterable(rows))
    if len(flat) != len(rows) * width:  # not a record of every field (no defaults apply)
        return dict(zip(Record._fields, zip(*rows))) if rows else dict.fromkeys(Record._fields, ())
    return {name: flat[k::width] for k, name in enumerate(Record._fields)}


def _column(name: str, values: Sequence[Any], order: Any, n: int, empty: Any = None) -> Any:
    """One record field as a column, by its annotation (see :class:`Record`); ``empty``: the
    column to take if no row has a value (made beforehand, :func:`start_trace`)."""
    import numpy as np
    import pandas as pd

    kind = _ANNOTATIONS[name]
    if name == "status":
        codes = np.fromiter(map(_STATUS_CODE.get, values, itertools.repeat(-1)), np.int8, count=n)
        return pd.Categorical.from_codes(codes[order], dtype=_status_dtype(), validate=False)  # -1: NA
    if kind == "int":
        return np.fromiter(values, dtype=np.int64, count=n)[order]
    if kind == "float | None":
        return np.array(values, dtype=np.float64)[order] if n else np.array([], dtype=np.float64)
    if kind in ("int | None", "str | None", "str") and values.count(None) == n:
        return empty if empty is not None else _no_values(kind, n)  # the common case: no values
    if n and kind in ("str | None", "str") and type(values[0]) is str and values.count(values[0]) == n:
        return _run_ids(values[0], n)  # one text in every row (a simulation's worker): made in C
    if n and kind not in ("int | None", "str | None", "str") and values.count(None) == n:
        return np.full(n, None, dtype=object)  # no outputs, no inputs: no list of n Nones to read
    data = np.array(values, dtype=object)[order] if n else np.array([], dtype=object)
    if kind == "int | None":
        return pd.array(data, dtype="Int64")
    if kind in ("str | None", "str"):
        return _text(data)
    return data  # dict | None and anything else: objects as they are


#: datetime64[ns] holds int64 nanoseconds since 1970; NaT is the smallest one
_NS_RANGE = (-(2**63) + 1, 2**63 - 1)


def _stamps(seconds: Any, epoch_ns: int) -> Any:
    """UTC timestamps from seconds since the run's start (NaN → NaT)."""
    import numpy as np
    import pandas as pd

    ns = np.round(seconds * 1e9)
    missing = np.isnan(ns)
    ns[missing] = 0
    if len(ns) and not (_NS_RANGE[0] < ns.min() + epoch_ns and ns.max() + epoch_ns < _NS_RANGE[1]):
        raise PipelineError(
            "a time in this run lies outside what trace timestamps can hold (1677-09-21 to "
            "2262-04-11): shorten the durations or move the run's start"
        )
    stamps = ns.astype(np.int64) + np.int64(epoch_ns)
    stamps[missing] = np.iinfo(np.int64).min  # NaT
    values = stamps.view("M8[ns]")
    if _FAST[0]:
        try:  # the array as pandas keeps it, without its checks: 0.1 ms less per trace in a run
            return pd.arrays.DatetimeArray._simple_new(values, dtype=_utc_dtype())
        except (AttributeError, TypeError):  # a pandas without it: the public way from now on
            _FAST[0] = False
    return pd.array(values).tz_localize("UTC")


#: whether :func:`_stamps` and :func:`_frame` take pandas' own constructors (``_simple_new``,
#: ``arrays_to_mgr``; the public ones check every column again); off for good once one is missing
_FAST = [True]


@functools.cache
def _utc_dtype() -> Any:
    import pandas as pd

    return pd.DatetimeTZDtype("ns", "UTC")


@functools.cache
def _column_index() -> Any:
    import pandas as pd

    return pd.Index(COLUMNS)


def _frame(data: dict[str, Any], n: int) -> pd.DataFrame:
    """The DataFrame of ``data``'s columns in ``COLUMNS`` order, each taken as it is: what
    ``pd.DataFrame(data, copy=False)`` makes (no copy, one block per column), without the
    constructor's checks and conversions of every column (each here is a new 1-D numpy or
    pandas array of ``n`` values, made above): 0.2–0.3 ms less at the end of a run."""
    import pandas as pd

    arrays = [data[name] for name in COLUMNS]
    if _FAST[0]:
        try:
            from pandas.core.internals.construction import arrays_to_mgr

            mgr = arrays_to_mgr(
                arrays, _column_index(), pd.RangeIndex(n), verify_integrity=False, consolidate=False
            )
            return pd.DataFrame._from_mgr(mgr, axes=mgr.axes)
        except (ImportError, AttributeError, TypeError):  # a pandas without them: the public way
            _FAST[0] = False
    return pd.DataFrame(dict(zip(COLUMNS, arrays)), copy=False)


def start_trace(plan: Plan, run_id: str) -> dict[str, Any]:
    """The columns of a run's trace that are known before it ends, each a new array: the run
    id and the static columns of the common trace (one row per node, in plan order).

    ``run()`` makes them while its loop waits for bodies (the loop is idle then), so that after
    the last body only the rows' own columns are left to make; :func:`build_trace` takes them
    (``ready=``) when the rows fit, and makes the trace as it would without them otherwise.

    >>> import notebook_pipelines as nbp
    >>> p = nbp.Pipeline("p")
    >>> with p.stage("s") as s:
    ...     _ = s.step("a", duration=1)
    >>> plan = p.plan()
    >>> ready = start_trace(plan, "r1")
    >>> list(ready["fqn"]) == [node.fqn for node in plan.nodes], list(ready["run_id"])
    (True, ['r1', 'r1', 'r1'])
    """
    nodes, n = node_columns(plan), len(plan.nodes)
    ready = {name: nodes[name].copy() for name in (*STATIC, "after")}
    ready["run_id"] = _run_ids(run_id, n)
    for name in _MAYBE_EMPTY:  # the column of a field no row has a value of (most rows' reason …)
        ready[name] = _no_values(str(_ANNOTATIONS[name]), n)
    return ready


def _run_ids(run_id: str, n: int) -> Any:
    """The ``run_id`` column (or any column of one text): ``n`` times ``run_id``, made in C."""
    import pyarrow as pa

    return _strings(pa.repeat(pa.scalar(run_id, type=pa.large_string()), n))


def build_trace(
    plan: Plan,
    rows: Sequence[Record],
    run_id: str,
    epoch_ns: int,
    extra: Sequence[PlanNode] = (),
    ready: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """The trace DataFrame from records, ordered by plan position, then iteration and attempt.

    ``epoch_ns`` is the run's start as nanoseconds since the Unix epoch (UTC). The work is
    column by column (numpy/pandas), never per row; every column is a new array, so the frame
    takes them without copying. ``extra``: the run's copies of looped nodes (one subtree per
    iteration, R46), whose indexes follow the plan's nodes; their static columns are their
    own (postfixed ``fqn``; an iteration's ``parent`` is its looped node). ``ready``: this
    run's :func:`start_trace`, made before the run ended (used once: its arrays join the trace).
    """
    import numpy as np

    n = len(rows)
    # each field's values, one tuple per field (rows transposed)
    fields = _fields(rows)
    index = np.fromiter(fields["node"], dtype=np.int64, count=n)
    plain = fields["iteration"].count(None) == n  # no looping: every iteration key is -1
    # one row per node (no retries, loops or unreached nodes: the common case) is put in plan
    # order by the rows' nodes alone, without a sort; it takes every static column as it is:
    # a copy, which for Arrow strings is a new wrapper of the same immutable buffers (O(1))
    whole = False
    if plain and not extra and n == len(plan.nodes):
        order = np.zeros(n, dtype=np.intp)
        order[index] = np.arange(n)  # the row of each node, if each has one
        whole = bool((index[order] == np.arange(n)).all())
    if not whole:
        attempt = np.fromiter(fields["attempt"], dtype=np.int64, count=n)
        if plain:
            iteration_key = np.full(n, -1, dtype=np.int64)
        else:
            iteration_key = np.fromiter(
                (-1 if i is None else i for i in fields["iteration"]), dtype=np.int64, count=n
            )
        if extra:  # a looped node's row is followed by its iterations' rows, each in plan order
            order = np.lexsort((attempt, iteration_key, _run_positions(plan, extra)[index]))
        else:
            order = np.lexsort((attempt, iteration_key, index))
        index = index[order]
        whole = n == len(plan.nodes) + len(extra) and bool((index == np.arange(n)).all())
    spare: dict[str, Any] = {}  # columns of no values, made before the end
    if whole and not extra and ready is not None and len(ready["fqn"]) == n:
        spare = dict(ready)  # made while the run went on: new arrays, this trace's now
        ready.clear()
        data: dict[str, Any] = {name: spare.pop(name) for name in ("run_id", *STATIC, "after")}
    else:
        nodes = node_columns(plan) if not extra else with_extra(plan, extra)
        data = {"run_id": _run_ids(run_id, n)}
        for name in (*STATIC, "after"):
            data[name] = nodes[name].copy() if whole else nodes[name].take(index)
    for name in Record._fields[1:]:
        data[name] = _column(name, fields[name], order, n, spare.get(name))
    data["start"] = _stamps(data["start_s"], epoch_ns)
    data["end"] = _stamps(data["end_s"], epoch_ns)
    data["duration_s"] = data["end_s"] - data["start_s"]
    frame = _frame(data, n)
    frame.attrs["run_id"] = run_id
    frame.attrs["pipeline"] = plan.pipeline.id
    return frame


def _run_positions(plan: Plan, extra: Sequence[PlanNode]) -> Any:
    """Each node's place in the run's pre-order: a looped node, then each iteration's subtree."""
    import numpy as np

    copies: dict[int, list[PlanNode]] = {}
    for node in extra:
        if node.loop is not None:
            copies.setdefault(id(node.looped), []).append(node)
    position = np.zeros(len(plan.nodes) + len(extra), dtype=np.int64)
    stack, rank = [plan.root], 0
    while stack:
        node = stack.pop()
        position[node.index] = rank
        rank += 1
        below: list[PlanNode] = []
        for item in (*node.items, *node.rollback):
            below.extend(item.items if item.kind == "parallel" else (item,))
        stack.extend(reversed([*copies.get(id(node), ()), *below]))
    return position


def empty_trace() -> pd.DataFrame:
    """A trace with no rows and the full schema."""
    from ..definition.model import Pipeline, Stage, Step
    from ..definition.plan import compile_plan

    plan = compile_plan(Pipeline("empty", stages=[Stage("s", items=[Step("x")])]))
    return build_trace(plan, [], "", 0)


def dtypes() -> dict[str, Any]:
    """Each column's dtype, as ``run()`` and ``simulate()`` make it (what a trace read from a
    file is given back, ``nbp.read_trace``)."""
    return dict(empty_trace().dtypes)
