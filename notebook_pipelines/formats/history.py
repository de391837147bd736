"""A history: many runs of one or more pipelines, as one DataFrame in the trace schema.

A history is the trace schema (:mod:`~notebook_pipelines.engine.trace`) with one block of
rows per run, followed by the *run columns*:

============  ========================  ====================================================
column        dtype                     meaning
============  ========================  ====================================================
source        str                       ``harness``, ``github``, ``gitlab``, ``ours``, …
pipeline      str                       the pipeline (Harness identifier, GitHub workflow
                                        file, GitLab project path)
run_number    Int64                     the run's number in its pipeline (Harness
                                        ``runSequence``, GitHub ``run_number``, GitLab ``iid``)
commit        str                       the commit the run built, or NA
branch        str                       the branch (or ref), or NA
trigger       str                       what started it (``push``, ``schedule``, a Harness
                                        trigger type …), or NA
created       datetime64[ns, UTC]       when the run was created (before any queue)
queued_s      float64                   seconds waiting before starting: the run's queue on the
                                        pipeline row, a job's (``started_at − created_at``, or
                                        GitLab ``queued_duration``) on a job's rows, NA else
url           str                       the run's web page, or NA
name          str                       the node's display name at the source (a GitHub
                                        matrix job ``build (ubuntu, 3.12)``), or NA
============  ========================  ====================================================

Read the ``pipeline`` column as ``h["pipeline"]``: ``h.pipeline`` is the accessor of every trace
(``h.pipeline.step_stats()``).

``start_s``/``end_s`` count from each run's own start (its pipeline row starts at 0), so runs
compare node by node; ``start``/``end`` are wall-clock. ``after`` holds the edges each node
waited for (``needs`` for GitHub and GitLab), so ``trace.pipeline.critical_path()`` of one run
follows them.

This module builds such frames from plain row dicts (the loaders' common part), and holds the
status vocabularies of the CI systems; the loaders are :mod:`.github`, :mod:`.gitlab` and
:mod:`.harness_executions`, the fetchers and the cache :mod:`.history_fetch`, the storage
:mod:`.history_store`.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import HistoryError, HistoryWarning, excerpt
from .traces import RUN_COLUMNS as _TRACE_RUN_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "RUN_COLUMNS",
    "HistoryError",
    "HistoryWarning",
    "history_dtypes",
    "ident",
    "read_json",
    "run_frame",
    "stamp_ns",
    "whole",
]

#: each run column's dtype, in order (the trace file reader restores them: one table for both)
_RUN_DTYPES = dict(_TRACE_RUN_COLUMNS)
#: the run columns after the trace schema's, in order
RUN_COLUMNS = tuple(_RUN_DTYPES)
#: files over this many bytes are refused before parsing (a run's JSON is far smaller)
MAX_BYTES = 100 * 2**20
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_NS_MAX = 2**63 - 1
_GO_ZERO = _dt.datetime(1, 1, 1, tzinfo=_dt.UTC)


def history_dtypes() -> dict[str, Any]:
    """Each column's dtype in a history: the trace's, then the run columns'."""
    import pandas as pd

    from ..engine.trace import dtypes

    out = dtypes()
    out.update({name: pd.api.types.pandas_dtype(kind) for name, kind in _RUN_DTYPES.items()})
    return out


def read_json(source: Any, what: str) -> tuple[Any, str]:
    """``source`` parsed: a path to a JSON file (at most 100 MB, a regular file), JSON text, or
    the data itself. Returns the data and a label naming it for messages."""
    if isinstance(source, (Mapping, list)):
        return source, what
    if isinstance(source, str) and source.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(source), what
        except json.JSONDecodeError as err:
            raise HistoryError(f"{what}: not JSON ({err.msg} at line {err.lineno})") from None
        except RecursionError:
            raise HistoryError(f"{what}: the JSON is nested too deeply to read") from None
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            info = path.stat()
        except FileNotFoundError:
            raise HistoryError(f"{what}: no such file: {path}") from None
        if not stat.S_ISREG(info.st_mode):
            raise HistoryError(f"{what}: {path} is not a regular file")
        if info.st_size > MAX_BYTES:
            raise HistoryError(f"{what}: {path} is over {MAX_BYTES // 2**20} MB: refused")
        try:
            return json.loads(path.read_bytes()), str(path)
        except json.JSONDecodeError as err:
            raise HistoryError(f"{path}:{err.lineno}:{err.colno}: not JSON ({err.msg})") from None
        except RecursionError:
            raise HistoryError(f"{path}: the JSON is nested too deeply to read") from None
        except UnicodeDecodeError as err:
            raise HistoryError(f"{path}: byte {err.start + 1} is not UTF-8: not a JSON file") from None
    raise HistoryError(f"{what}: give a path, JSON text or the parsed JSON, not {type(source).__name__}")


def stamp_ns(value: Any, where: str) -> int | None:
    """Nanoseconds since the Unix epoch of an ISO 8601 time (``2026-01-05T10:00:00Z``), an
    epoch in milliseconds (Harness), or None/empty/``0001-01-01T00:00:00Z`` (Go's zero time,
    what ``gh`` writes for a time not set) → None."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise HistoryError(f"{where}: {value!r} is not a time")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise HistoryError(f"{where}: {value!r} is not a time")
        ns = int(value) * 1_000_000
    elif isinstance(value, str):
        try:
            moment = _dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise HistoryError(f"{where}: {excerpt(repr(value), 60)} is not an ISO 8601 time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=_dt.UTC)
        if moment == _GO_ZERO:  # Go's zero time (``gh … --json``): not set, as null is
            return None
        ns = (moment - _EPOCH) // _dt.timedelta(microseconds=1) * 1000
    else:
        raise HistoryError(f"{where}: {excerpt(repr(value), 60)} is not a time")
    if not -_NS_MAX <= ns <= _NS_MAX:  # a trace holds nanoseconds in 64 bits
        raise HistoryError(
            f"{where}: {excerpt(repr(value), 60)} is outside the times a trace holds (1677 to 2262): "
            "the answer was edited or damaged"
        )
    return ns


def whole(
    value: Any, where: str, default: int | None = None, *, low: int = -_NS_MAX, high: int = _NS_MAX
) -> Any:
    """An integer field (an id, an attempt number): an int, an integral float or text of
    digits, from ``low`` to ``high``; None or ``""`` give ``default``.

    >>> whole("42", "job id"), whole(None, "run_attempt", 1)
    (42, 1)
    >>> whole("abc", "run 7: job 'build' id")
    Traceback (most recent call last):
    ...
    notebook_pipelines.errors.HistoryError: run 7: job 'build' id: 'abc' is not a whole number
    """
    if value is None or value == "":
        return default
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,19}\s*", value)
    ):
        number = int(value)
    if number is None:
        raise HistoryError(f"{where}: {excerpt(repr(value), 60)} is not a whole number")
    if not low <= number <= high:
        raise HistoryError(f"{where}: {excerpt(repr(value), 60)} is not from {low:,} to {high:,}")
    return number


_NOT_IDENT = re.compile(r"[^A-Za-z0-9_]+")


def ident(name: str) -> str:
    """An identifier (letters, digits, ``_``) from a display name: ``"Set up job"`` →
    ``"Set_up_job"``; never empty.

    >>> ident("build (ubuntu, 3.12)"), ident("rspec 1/3"), ident("!!")
    ('build_ubuntu_3_12', 'rspec_1_3', '_')
    """
    return _NOT_IDENT.sub("_", str(name)).strip("_") or "_"


class Names(set):
    """The names taken so far, and for each name the last number :func:`unique` gave it: a
    thousand steps of one name cost a thousand look-ups, not half a million."""

    def __init__(self) -> None:
        super().__init__()
        self.last: dict[str, int] = {}


def unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3`` … if taken; the result is added to ``taken`` (a
    :class:`Names` makes each call constant-time; a plain set works, counting from 2).

    >>> taken = Names()
    >>> [unique("s", taken) for _ in range(3)]
    ['s', 's_2', 's_3']
    """
    out, k = name, (taken.last.get(name, 1) if isinstance(taken, Names) else 1)
    while out in taken:
        k += 1
        out = f"{name}_{k}"
    if isinstance(taken, Names) and out != name:
        taken.last[name] = k
    taken.add(out)
    return out


def worst(statuses: Iterable[str]) -> str:
    """The status of a container from its children's (the most severe one, D4)."""
    from ..definition.statuses import STATUSES

    order = {s: i for i, s in enumerate(STATUSES)}
    found = [s for s in statuses if s in order]
    if not found:
        return "NotStarted"
    running = [s for s in found if s in ("Running", "Queued")]
    if running:
        return "Running"
    done = [s for s in found if s not in ("Skipped", "NotStarted")]
    if not done:
        return "Skipped" if "Skipped" in found else "NotStarted"
    return max(done, key=lambda s: order[s])


def rows_by_fqn(rows: Iterable[dict]) -> tuple[dict[str, list[dict]], dict[Any, list[str]]]:
    """The rows by fqn (a node's attempts together, in order) and each parent's children (their
    fqns in the order of their first rows): the tree a loader puts in the trace's order.

    >>> by_fqn, children = rows_by_fqn([{"fqn": "p", "parent": None}, {"fqn": "p.a", "parent": "p"},
    ...                                 {"fqn": "p.a", "parent": "p"}])
    >>> len(by_fqn["p.a"]), children
    (2, {None: ['p'], 'p': ['p.a']})
    """
    by_fqn: dict[str, list[dict]] = {}
    children: dict[Any, list[str]] = {}
    for row in rows:
        if row["fqn"] not in by_fqn:
            by_fqn[row["fqn"]] = []
            children.setdefault(row["parent"], []).append(row["fqn"])
        by_fqn[row["fqn"]].append(row)
    return by_fqn, children


def span(rows: Iterable[Mapping]) -> tuple[int | None, int | None]:
    """The earliest ``start_ns`` and the latest ``end_ns`` of ``rows`` (None where no row has one).

    >>> span([{"start_ns": 5, "end_ns": None}, {"start_ns": 2, "end_ns": 9}])
    (2, 9)
    """
    rows = list(rows)
    start = min((r["start_ns"] for r in rows if r["start_ns"] is not None), default=None)
    return start, max((r["end_ns"] for r in rows if r["end_ns"] is not None), default=None)


def first_queued(rows: Iterable[Mapping]) -> float | None:
    """The ``queued_s`` of the row that started first (a looped node started with its first
    iteration); None if none started."""
    first = min((r for r in rows if r["start_ns"] is not None), key=lambda r: r["start_ns"], default=None)
    return first.get("queued_s") if first else None


def run_frame(rows: list[dict], run: Mapping[str, Any]) -> pd.DataFrame:
    """A history frame of one run from row dicts.

    Each row has the trace's structure keys (``fqn``, ``parent``, ``kind``, ``phase``,
    ``stage``, ``step_group``, ``step``, ``block``, ``iteration``, ``attempt``, ``status``, and
    optionally ``reason``, ``worker``, ``error_type``, ``error``, ``action``, ``after``,
    ``queued_s``, ``name``), and ``start_ns``/``end_ns`` (epoch nanoseconds or None). ``run``
    gives the run columns (``run_id``, ``source``, ``pipeline``, ``run_number``, ``commit``,
    ``branch``, ``trigger``, ``created_ns``, ``queued_s`` (for the pipeline row), ``url``).
    Times count from the earliest start.
    """
    import numpy as np
    import pandas as pd

    from ..engine.trace import COLUMNS

    types = history_dtypes()
    n = len(rows)
    starts = [r["start_ns"] for r in rows if r.get("start_ns") is not None]
    t0 = min(starts) if starts else (run.get("created_ns") or 0)

    def ns_array(key: str) -> Any:
        return np.array([np.nan if r.get(key) is None else r[key] - t0 for r in rows], dtype=np.float64)

    start_rel, end_rel = ns_array("start_ns"), ns_array("end_ns")
    data: dict[str, Any] = {}
    for name in (*COLUMNS, *RUN_COLUMNS):
        kind = types[name]
        if name in ("start", "end"):
            rel = start_rel if name == "start" else end_rel
            stamps = np.where(np.isnan(rel), np.iinfo(np.int64).min, rel + t0).astype(np.int64)
            data[name] = pd.array(stamps.view("M8[ns]")).tz_localize("UTC")
            continue
        if name in ("start_s", "end_s"):
            data[name] = (start_rel if name == "start_s" else end_rel) / 1e9
            continue
        if name == "duration_s":
            data[name] = data["end_s"] - data["start_s"]
            continue
        if name == "created":
            created = run.get("created_ns")
            value = np.iinfo(np.int64).min if created is None else created
            data[name] = pd.array(np.full(n, value, dtype=np.int64).view("M8[ns]")).tz_localize("UTC")
            continue
        if name == "after":
            values = np.empty(n, dtype=object)
            for i, r in enumerate(rows):
                after = r.get("after")
                values[i] = None if after is None else tuple(after)
            data[name] = values
            continue
        if name == "queued_s":
            data[name] = np.array(
                [np.nan if r.get("queued_s") is None else float(r["queued_s"]) for r in rows],
                dtype=np.float64,
            )
            continue
        if name in run and name not in ("queued_s", "name"):
            values = [run.get(name)] * n
        else:
            values = [r.get(name) for r in rows]
        if name == "attempt":
            data[name] = np.array([int(v or 0) for v in values], dtype=np.int64)
        elif name == "status":
            data[name] = pd.Categorical(values, dtype=kind)
        elif kind == "object" or kind is object:
            data[name] = np.array([*values, None], dtype=object)[:-1]
        else:
            data[name] = pd.array(values, dtype=kind)
    frame = pd.DataFrame(data, columns=[*COLUMNS, *RUN_COLUMNS])
    frame.attrs["run_id"] = str(run.get("run_id"))
    frame.attrs["pipeline"] = str(run.get("pipeline"))
    frame.attrs["source"] = str(run.get("source"))
    return frame


def concat_runs(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Runs' frames as one history (the schema kept, even with no runs)."""
    import pandas as pd

    from ..engine.trace import COLUMNS

    if not frames:
        return empty_history()
    out = pd.concat(frames, ignore_index=True)
    out = out[[*COLUMNS, *RUN_COLUMNS, *[c for c in out.columns if c not in (*COLUMNS, *RUN_COLUMNS)]]]
    out["status"] = out["status"].astype(history_dtypes()["status"])
    out.attrs.clear()
    return out


def empty_history() -> pd.DataFrame:
    """A history with no runs, and every column."""
    return run_frame([], {"run_id": "", "source": "", "pipeline": ""})
