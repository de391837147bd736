"""Trace files: one format, written and read here — CSV, JSON or Parquet, by the file's suffix.

:func:`write_trace` (also ``trace.pipeline.save(path)`` and the CLI's ``-o``) writes a trace;
:func:`read_trace` reads it back equal to what was written: the schema of
:mod:`~notebook_pipelines.engine.trace` (categories with their full vocabularies, ``Int64``
block and iteration, UTC nanosecond timestamps, pandas strings), the ``outputs``/``inputs``
dicts as dicts, and the columns the schema does not know kept at the end. Several runs
concatenated before saving load back as they were.

The format
----------
- **Object columns** (``outputs``, ``inputs``, any column of dicts or lists) are written as
  JSON text in CSV and Parquet, one JSON value per cell (so each row keeps its own keys, where
  a Parquet struct would merge every row's keys into one record type), and as nested JSON in
  ``.json``. A value JSON cannot hold (an object, a set, a non-string key) is refused when
  writing, with a :class:`~notebook_pipelines.errors.TraceError` naming the row's node and the
  column; NumPy numbers are written as numbers. On reading, the schema's object columns are
  decoded from JSON; an extra CSV column is decoded when every cell of it is a JSON object or
  array; Parquet lists its JSON columns in the file's metadata.
- **JSON** (``.json``) is a list of records, one object per row, timestamps in ISO 8601 with
  nanoseconds, missing values ``null``.
- **CSV formula neutralisation**: a spreadsheet runs a cell beginning with ``=``, ``+``, ``-``,
  ``@``, a tab or a carriage return as a formula (a log line or a failure message can be one).
  :func:`write_trace` prefixes every text cell that begins with one of them — after any
  apostrophes — with one apostrophe ``'``, the spreadsheets' own "this is text" mark, which they
  do not show. :func:`read_trace` removes that one apostrophe from such cells of any CSV, so a
  trace reads back with its original values. (A CSV written by another tool whose cell is itself
  ``'=…`` reads back as a spreadsheet shows it, ``=…``.) Numeric cells are never changed.
- **Columns of tuples**: ``after`` (the nodes each node waited for) holds tuples; JSON and
  Parquet store lists, read back as tuples. A file saved before a trace had ``after`` reads back
  with ``after`` None (unknown) on every row.
- **CSV limits**: CSV has no missing-vs-empty distinction, so an empty text cell reads back as
  NA; extra columns come back with pandas' type inference, except the run columns of a history
  (:data:`RUN_COLUMNS`: ``run_number`` ``Int64``, ``created`` a UTC timestamp, …). Parquet
  keeps every type (it is the faithful format for extra columns); JSON keeps numbers, text and
  nested values.

Reading is bounded: a file over ``max_bytes`` (default :data:`MAX_BYTES`) is refused before it
is parsed; cells are parsed as JSON, never evaluated. A CSV written by pandas' own ``to_csv``
(dicts as Python text) is still read: a cell that is not JSON is read as a Python literal if it
is at most :data:`MAX_LITERAL` characters (a longer one is refused), pandas' default index
column (``Unnamed: 0``) is dropped, and a UTF-8 byte-order mark (a spreadsheet's "CSV UTF-8")
is skipped. A value outside a category's vocabulary (an unknown status,
kind or phase) is refused, naming the value and the row — unless a Parquet file declares it
among the column's categories (a Harness execution's status this toolkit does not know, which
:func:`~notebook_pipelines.load_harness_execution` keeps verbatim, round-trips through Parquet).

>>> import os, tempfile
>>> import notebook_pipelines as nbp
>>> p = nbp.Pipeline("p", stages=[nbp.Stage("s", items=[nbp.Step("a", duration=2, outputs=["v"])])])
>>> trace = p.simulate(outputs={"a": {"v": "x"}})
>>> path = trace.pipeline.save(os.path.join(tempfile.mkdtemp(), "run.csv"))
>>> back = read_trace(path)
>>> back.equals(trace), back["outputs"].iloc[-1]
(True, {'v': 'x'})
>>> logged = trace.assign(log="=HYPERLINK(1)")  # a log line a spreadsheet would run
>>> header, *_, last = logged.pipeline.save(path).read_text().splitlines()
>>> print(last.split(",")[header.split(",").index("log")])
'=HYPERLINK(1)
>>> read_trace(path)["log"].iloc[-1]
'=HYPERLINK(1)'
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import TraceError, excerpt
from .trace_cells import (
    MAX_LITERAL,
    as_tuple,
    category,
    checked,
    decoded,
    encoded_cells,
    holds_json,
    is_text,
    json_containers,
    json_number,
    neutralise,
    stamps,
    structure,
    undo_neutralise,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["MAX_BYTES", "MAX_LITERAL", "RUN_COLUMNS", "SUFFIXES", "conform", "read_trace", "write_trace"]

#: what :func:`read_trace` reads and :func:`write_trace` writes, by file suffix
SUFFIXES = {".csv": "csv", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
#: the largest file :func:`read_trace` reads unless given ``max_bytes=`` (about a million rows of CSV)
MAX_BYTES = 256 * 2**20
#: the Parquet metadata key holding the JSON-encoded columns and the trace's ``attrs``
_META = b"notebook_pipelines"
#: columns of tuples (``after``, the nodes each node waited for): JSON and Parquet store lists
_TUPLES = ("after",)
#: schema columns a file saved before they existed may lack: read back as None (unknown)
_OPTIONAL = ("after",)
#: columns beyond the trace schema that :func:`read_trace` knows, with their dtypes: the run
#: columns of a history (issue 26), read back from CSV and JSON with these dtypes (Parquet keeps
#: every dtype by itself; other extra columns come back as pandas infers them)
RUN_COLUMNS = {
    "source": "str",
    "pipeline": "str",
    "run_number": "Int64",
    "commit": "str",
    "branch": "str",
    "trigger": "str",
    "created": "datetime64[ns, UTC]",
    "queued_s": "float64",
    "url": "str",
    "name": "str",
}


# -- writing --------------------------------------------------------------------------------------
def write_trace(trace: pd.DataFrame, path: str | Path) -> Path:
    """Write ``trace`` to ``path`` as CSV, JSON or Parquet, by its suffix (see the module notes).

    Args:
        trace: a trace DataFrame (``run()``, ``simulate()``, ``read_trace``, loaders), or several
            runs concatenated; extra columns are kept.
        path: ``….csv``, ``….json``, ``….parquet`` or ``….pq``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        TraceError: the suffix is not one of ``SUFFIXES``; a column name is not a string; a
            cell holds a value JSON cannot hold (named with its node and column); Parquet
            without pyarrow.
    """
    import pandas as pd

    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise TraceError(f"write_trace({str(path)!r}): the trace file must end in {', '.join(SUFFIXES)}")
    if not isinstance(trace, pd.DataFrame):
        raise TraceError(f"write_trace: a trace is a DataFrame, not {type(trace).__name__}")
    bad = [c for c in trace.columns if not isinstance(c, str)]
    if bad:
        raise TraceError(
            f"write_trace({str(path)!r}): column names must be strings, not {excerpt(repr(bad[0]))}: "
            "rename them (trace.rename(columns=str))"
        )
    frame = trace.reset_index(drop=True)
    if kind == "json":
        _write_json(frame, path)
        return path
    encoded = {column: encoded_cells(frame, column) for column in frame.columns if holds_json(frame, column)}
    for column, texts in encoded.items():
        frame[column] = pd.array(texts, dtype=object)
    if kind == "csv":
        for column in frame.columns:
            if is_text(frame[column]):
                frame[column] = neutralise(frame[column])
        frame.to_csv(path, index=False)
        return path
    _write_parquet(frame, list(encoded), trace.attrs, path)
    return path


def _write_json(frame: pd.DataFrame, path: Path) -> None:
    """One JSON list of records (one object per row), written with one call of the C encoder."""
    import numpy as np
    import pandas as pd

    columns: list[list[Any]] = []
    for name in frame.columns:
        column = frame[name]
        if column.dtype == object:
            values = column.tolist()
            for row, value in enumerate(values):
                if value is not None and not (isinstance(value, float) and value != value):
                    checked(frame, name, row, value)
            columns.append([None if isinstance(v, float) and v != v else v for v in values])
        elif isinstance(column.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(column):
            ns = column.dt.tz_convert("UTC") if isinstance(column.dtype, pd.DatetimeTZDtype) else column
            text = np.datetime_as_string(ns.to_numpy(dtype="datetime64[ns]"), unit="ns")
            columns.append([None if t == "NaT" else t + "Z" for t in text])
        else:
            columns.append(column.astype(object).where(column.notna(), None).tolist())
    names = list(frame.columns)
    records = [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
    text = json.dumps(records, ensure_ascii=False, default=json_number)
    path.write_text(text + "\n", encoding="utf-8")


def _write_parquet(frame: pd.DataFrame, encoded: list[str], attrs: dict, path: Path) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise TraceError(
            f"write_trace({str(path)!r}): writing Parquet needs pyarrow (pip install pyarrow)"
        ) from None
    table = pa.Table.from_pandas(frame, preserve_index=False)
    kept = {k: v for k, v in attrs.items() if isinstance(k, str) and isinstance(v, str | int | float | bool)}
    meta = json.dumps({"version": 1, "json_columns": encoded, "attrs": kept}).encode()
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META: meta})
    pq.write_table(table, path)


# -- reading --------------------------------------------------------------------------------------
def read_trace(path: str | Path, *, max_bytes: int = MAX_BYTES) -> pd.DataFrame:
    """Read a trace saved as CSV (``.csv``), JSON (``.json``) or Parquet (``.parquet``, ``.pq``).

    Args:
        path: the file (written by :func:`write_trace` / ``trace.pipeline.save``, or by pandas'
            ``to_csv`` / ``to_parquet``).
        max_bytes: refuse a larger file before parsing it (default :data:`MAX_BYTES`).

    Returns:
        The trace DataFrame with the columns and dtypes of ``run()`` (the columns in the
        schema's order; a column the file lacks is refused, an extra one kept at the end).

    Raises:
        TraceError: the file's suffix is not one of ``SUFFIXES``; it is a folder, a FIFO or
            another non-regular file, empty, larger than ``max_bytes``, not of its format, or
            not a trace (missing columns, values that do not fit the schema, an unknown status).
        FileNotFoundError: there is no such file.
    """
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise TraceError(
            f"read_trace({str(path)!r}): a trace is read from {', '.join(SUFFIXES)} files; "
            "save one with trace.pipeline.save(path)"
        )
    where = str(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"read_trace: no file {where!r}") from None
    except (OSError, ValueError) as err:  # ValueError: a NUL character in the name
        raise TraceError(f"read_trace: cannot open {where!r}: {err}") from None
    if stat.S_ISDIR(info.st_mode):
        raise TraceError(f"read_trace: {where!r} is a folder, not a trace file: give the file inside it")
    if not stat.S_ISREG(info.st_mode):
        raise TraceError(
            f"read_trace: {where!r} is not a regular file (a FIFO, socket or device): copy it to a file"
        )
    if info.st_size == 0:
        raise TraceError(f"read_trace: {where!r} is empty (0 bytes): it holds no trace")
    if info.st_size > max_bytes:
        raise TraceError(
            f"read_trace: {where!r} is {info.st_size / 2**20:.0f} MB, over the {max_bytes / 2**20:.0f} MB "
            "read_trace reads: pass max_bytes= to read it anyway, or save fewer runs per file"
        )
    if kind == "csv":
        frame, encoded, attrs = _read_csv(path, where), None, {}
    elif kind == "json":
        frame, encoded, attrs = _read_json(path, where), (), {}
    else:
        frame, encoded, attrs = _read_parquet(path, where)
    result = conform(frame, where=where, encoded=encoded)
    for key, value in attrs.items():
        result.attrs.setdefault(key, value)
    return result


def _read_csv(path: Path, where: str) -> pd.DataFrame:
    import pandas as pd

    from ..engine.trace import COLUMNS

    try:
        header = pd.read_csv(path, nrows=0, encoding="utf-8-sig")
        known = {c: str for c in header.columns if c in COLUMNS}
        frame = pd.read_csv(path, dtype=known, keep_default_na=False, na_values=[""], encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise TraceError(
            f"read_trace: {where!r} is not UTF-8 text (byte {err.start}): it is not a CSV trace"
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        raise TraceError(f"read_trace: {where!r} is not a CSV trace: {excerpt(str(err))}") from None
    if len(frame.columns) and str(frame.columns[0]) in ("Unnamed: 0", "") and frame.columns[0] not in COLUMNS:
        frame = frame.iloc[:, 1:]  # the index column of pandas' default to_csv
    for column in frame.columns:
        if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
            frame[column] = undo_neutralise(frame[column])
    return frame


def _read_json(path: Path, where: str) -> pd.DataFrame:
    import pandas as pd

    try:
        records = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise TraceError(
            f"read_trace: {where!r} is not UTF-8 text (byte {err.start}): it is not a JSON trace"
        ) from None
    except json.JSONDecodeError as err:
        raise TraceError(f"read_trace: {where}:{err.lineno}:{err.colno}: not JSON ({err.msg})") from None
    except RecursionError:
        raise TraceError(f"read_trace: {where!r}: the JSON is nested too deeply to read") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise TraceError(
            f"read_trace: {where!r} is not a JSON trace: a trace file holds a list of records, one "
            "object per row (write one with trace.pipeline.save(path))"
        )
    names: dict[str, None] = {}
    for record in records:
        if record.keys() != names.keys():
            names.update(dict.fromkeys(record))
    data = {name: pd.array([r.get(name) for r in records], dtype=object) for name in names}
    return pd.DataFrame(data, index=pd.RangeIndex(len(records)))


def _read_parquet(path: Path, where: str) -> tuple[pd.DataFrame, tuple[str, ...] | None, dict]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise TraceError(
            f"read_trace({where!r}): reading Parquet needs pyarrow (pip install pyarrow)"
        ) from None
    try:
        table = pq.read_table(path)
        frame = table.to_pandas()
    except (pa.ArrowException, OSError, ValueError, TypeError) as err:
        raise TraceError(f"read_trace: {where!r} is not a Parquet trace: {excerpt(str(err))}") from None
    meta = (table.schema.metadata or {}).get(_META)
    if meta is None:
        return frame, None, {}
    try:
        info = json.loads(meta)
        return frame, tuple(info.get("json_columns", ())), dict(info.get("attrs", {}))
    except (ValueError, TypeError, AttributeError):
        raise TraceError(f"read_trace: {where!r}: its notebook_pipelines metadata is not readable") from None


def conform(
    frame: pd.DataFrame, where: str = "the frame", encoded: tuple[str, ...] | None = None
) -> pd.DataFrame:
    """``frame`` with the trace schema's dtypes (see :func:`read_trace`).

    ``encoded`` names the columns holding JSON text: ``None`` (CSV, or a file without our
    metadata) means the schema's object columns, plus any extra text column of JSON objects or
    arrays only; ``()`` means none (the values are decoded already).
    """
    import pandas as pd

    from ..engine.trace import COLUMNS, dtypes

    missing = [c for c in COLUMNS if c not in frame.columns and c not in _OPTIONAL]
    if missing:
        raise TraceError(
            f"read_trace: {where} is not a trace: it lacks the columns {', '.join(missing)} "
            "(a trace saves every column: trace.pipeline.save(path))"
        )
    schema = dtypes()
    fqns = frame["fqn"].astype(object).tolist()
    known = {c: pd.api.types.pandas_dtype(d) for c, d in RUN_COLUMNS.items() if c in frame.columns}
    out = {}
    for column in frame.columns:
        values = frame[column]
        if column not in schema and column not in known:
            out[column] = _extra_column(values, column, encoded, where, fqns)
            continue
        dtype = schema[column] if column in schema else known[column]
        if column not in schema and values.dtype == dtype:  # Parquet: kept as it was
            out[column] = values.array
            continue
        try:
            out[column] = _typed_column(values, dtype, column, encoded, where, fqns)
        except TraceError:
            raise
        except (ValueError, TypeError, OverflowError) as error:
            raise TraceError(
                f"read_trace: {where}: the column {column!r} does not hold {dtype}: {excerpt(str(error))}"
            ) from None
    for column in _TUPLES:
        if column in out:
            out[column] = [as_tuple(v) for v in out[column]]
    for column in COLUMNS:
        out.setdefault(column, [None] * len(frame))  # an optional column the file predates: unknown
    order = [*COLUMNS, *(c for c in frame.columns if c not in COLUMNS)]
    result = pd.DataFrame({c: out[c] for c in order}, index=pd.RangeIndex(len(frame)))
    runs = result["run_id"].dropna().unique()
    if len(runs) == 1:
        result.attrs["run_id"] = str(runs[0])
    return result


def _extra_column(values: pd.Series, column: str, encoded: tuple | None, where: str, fqns: list) -> Any:
    """A column the schema does not know: decoded if it holds JSON cells, else as read."""
    if (encoded is None and json_containers(values)) or (encoded and column in encoded):
        return decoded(values, column, where, fqns)
    if encoded == ():  # JSON: numbers and text as pandas infers them, lists and dicts as they are
        return values.infer_objects().array
    return values.array


def _typed_column(
    values: pd.Series, dtype: Any, column: str, encoded: tuple | None, where: str, fqns: list
) -> Any:
    """A column of the schema (or a known run column) with its dtype."""
    import numpy as np
    import pandas as pd

    if dtype is np.dtype(object):
        if encoded is None or column in encoded:
            return decoded(values, column, where, fqns)
        if encoded == ():  # JSON: decoded by the parser already
            return values.astype(object).tolist()
        return [structure(v) for v in values.astype(object)]
    if isinstance(dtype, pd.CategoricalDtype):
        return category(values, dtype, column, where, fqns)
    if str(dtype).startswith("datetime64"):
        return stamps(values).astype(dtype)
    if str(dtype) in ("int64", "float64", "Int64"):
        if values.dtype == object:
            values = values.map(lambda v: float("nan") if v is None else v)
        return pd.to_numeric(values).astype(dtype)
    return values.astype(object).where(values.notna(), None).astype(dtype)
