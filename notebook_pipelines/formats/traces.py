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

import ast
import json
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import TraceError, excerpt

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["MAX_BYTES", "MAX_LITERAL", "RUN_COLUMNS", "SUFFIXES", "conform", "read_trace", "write_trace"]

#: what :func:`read_trace` reads and :func:`write_trace` writes, by file suffix
SUFFIXES = {".csv": "csv", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
#: the largest file :func:`read_trace` reads unless given ``max_bytes=`` (about a million rows of CSV)
MAX_BYTES = 256 * 2**20
#: the longest cell read as a Python literal (a CSV written by pandas' ``to_csv``)
MAX_LITERAL = 64 * 2**10
#: the Parquet metadata key holding the JSON-encoded columns and the trace's ``attrs``
_META = b"notebook_pipelines"
#: a text cell a spreadsheet would run as a formula (after any apostrophes of ours)
_FORMULA = re.compile(r"'*[=+\-@\t\r]")
_NEUTRALISED = re.compile(r"'+[=+\-@\t\r]")
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
    encoded = {column: _encoded(frame, column) for column in frame.columns if _holds_json(frame, column)}
    for column, texts in encoded.items():
        frame[column] = pd.array(texts, dtype=object)
    if kind == "csv":
        for column in frame.columns:
            if _is_text(frame[column]):
                frame[column] = _neutralise(frame[column])
        frame.to_csv(path, index=False)
        return path
    _write_parquet(frame, list(encoded), trace.attrs, path)
    return path


def _holds_json(frame: pd.DataFrame, column: str) -> bool:
    """An object column written as JSON cells: the schema's (``outputs``, ``inputs``) and any other
    holding something besides text (an object column of text only is written as text)."""
    from ..engine.trace import COLUMNS

    if frame[column].dtype != object:
        return False
    if column in COLUMNS:
        return True
    return any(not isinstance(v, str) and v is not None and v == v for v in frame[column].tolist())


def _fqn(frame: pd.DataFrame, row: int) -> str:
    if "fqn" in frame.columns and isinstance(frame["fqn"].iloc[row], str):
        return str(frame["fqn"].iloc[row])
    return f"row {row}"


def _encoded(frame: pd.DataFrame, column: str) -> list[str | None]:
    """Each cell of an object column as JSON text (``None`` stays ``None``)."""
    out: list[str | None] = []
    for row, value in enumerate(frame[column].tolist()):
        if value is None or (isinstance(value, float) and value != value):
            out.append(None)
        else:
            out.append(_checked(frame, column, row, value))
    return out


def _checked(frame: pd.DataFrame, column: str, row: int, value: Any) -> str:
    """``value`` as JSON text, or a :class:`TraceError` naming the row's node and the column."""
    try:
        return json.dumps(_plain(value), default=_number)
    except (TypeError, ValueError, RecursionError) as err:
        raise TraceError(
            f"write_trace: {_fqn(frame, row)}: the {column!r} value cannot be written to a trace "
            f"file: {excerpt(str(err))}; steps publish text, numbers, booleans, None and lists "
            "and dicts of them (convert other values first, e.g. str(value))"
        ) from None


def _plain(value: Any) -> Any:
    """``value`` checked for JSON: dict keys must be strings (JSON would turn ``1`` into ``"1"``)."""
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"the key {excerpt(repr(key))} is not a string")
        return {key: _plain(v) for key, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _number(value: Any) -> Any:
    """NumPy numbers and booleans as Python's (``json.dumps``' ``default``)."""
    import numpy as np

    if isinstance(value, np.generic) and isinstance(value.item(), bool | int | float | str):
        return value.item()
    raise TypeError(f"a {type(value).__name__} is not JSON: {excerpt(repr(value), 80)}")


def _is_text(column: pd.Series) -> bool:
    import pandas as pd

    return bool(
        column.dtype == object
        or pd.api.types.is_string_dtype(column)
        or isinstance(column.dtype, pd.CategoricalDtype)
    )


def _neutralise(column: pd.Series) -> pd.Series:
    """Text cells a spreadsheet would run as a formula, with one apostrophe before them."""
    import pandas as pd

    if isinstance(column.dtype, pd.CategoricalDtype):  # the vocabulary, not every cell
        return column.cat.rename_categories(
            lambda c: "'" + c if isinstance(c, str) and _FORMULA.match(c) else c
        )
    text = column.astype("str")  # None/NA stay missing
    formula = text.str.match(_FORMULA.pattern, na=False)
    return text.where(~formula, "'" + text) if formula.any() else column


def _undo(column: pd.Series) -> pd.Series:
    """The reader's inverse of :func:`_neutralise`: one leading apostrophe off such cells."""
    import pandas as pd

    if pd.api.types.is_string_dtype(column) and column.dtype != object:
        marked = column.str.match(_NEUTRALISED.pattern, na=False)
        return column.where(~marked, column.str.slice(1)) if marked.any() else column
    return column.map(lambda v: v[1:] if isinstance(v, str) and _NEUTRALISED.match(v) else v)


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
                    _checked(frame, name, row, value)
            columns.append([None if isinstance(v, float) and v != v else v for v in values])
        elif isinstance(column.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(column):
            ns = column.dt.tz_convert("UTC") if isinstance(column.dtype, pd.DatetimeTZDtype) else column
            text = np.datetime_as_string(ns.to_numpy(dtype="datetime64[ns]"), unit="ns")
            columns.append([None if t == "NaT" else t + "Z" for t in text])
        else:
            columns.append(column.astype(object).where(column.notna(), None).tolist())
    names = list(frame.columns)
    records = [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
    text = json.dumps(records, ensure_ascii=False, default=_number)
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
            frame[column] = _undo(frame[column])
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
    import numpy as np
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
            if (encoded is None and _json_containers(values)) or (encoded and column in encoded):
                out[column] = _decoded(values, column, where, fqns)
            elif encoded == ():  # JSON: numbers and text as pandas infers them, lists and dicts as they are
                out[column] = values.infer_objects().array
            else:
                out[column] = values.array
            continue
        dtype = schema[column] if column in schema else known[column]
        if column not in schema and values.dtype == dtype:  # Parquet: kept as it was
            out[column] = values.array
            continue
        try:
            if dtype is np.dtype(object):
                if encoded is None or column in encoded:
                    out[column] = _decoded(values, column, where, fqns)
                elif encoded == ():  # JSON: decoded by the parser already
                    out[column] = values.astype(object).tolist()
                else:
                    out[column] = [_structure(v) for v in values.astype(object)]
            elif isinstance(dtype, pd.CategoricalDtype):
                out[column] = _category(values, dtype, column, where, fqns)
            elif str(dtype).startswith("datetime64"):
                out[column] = _stamps(values).astype(dtype)
            elif str(dtype) in ("int64", "float64", "Int64"):
                if values.dtype == object:
                    values = values.map(lambda v: float("nan") if v is None else v)
                out[column] = pd.to_numeric(values).astype(dtype)
            else:
                out[column] = values.astype(object).where(values.notna(), None).astype(dtype)
        except TraceError:
            raise
        except (ValueError, TypeError, OverflowError) as error:
            raise TraceError(
                f"read_trace: {where}: the column {column!r} does not hold {dtype}: {excerpt(str(error))}"
            ) from None
    for column in _TUPLES:
        if column in out:
            out[column] = [_tuple(v) for v in out[column]]
    for column in COLUMNS:
        out.setdefault(column, [None] * len(frame))  # an optional column the file predates: unknown
    order = [*COLUMNS, *(c for c in frame.columns if c not in COLUMNS)]
    result = pd.DataFrame({c: out[c] for c in order}, index=pd.RangeIndex(len(frame)))
    runs = result["run_id"].dropna().unique()
    if len(runs) == 1:
        result.attrs["run_id"] = str(runs[0])
    return result


def _tuple(value: Any) -> tuple | None:
    """A cell of a column of tuples (``after``): JSON and Parquet give lists back; None stays."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(value)
    return value


def _stamps(values: pd.Series) -> Any:
    """ISO 8601 text as UTC timestamps; numbers (pandas' default ``to_json``) as epoch milliseconds."""
    import pandas as pd

    numbers = values.dropna()
    if len(numbers) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers):
        return pd.to_datetime(
            pd.to_numeric(values.astype(object).where(values.notna(), None)), unit="ms", utc=True
        )
    return pd.to_datetime(values, utc=True, format="ISO8601")


def _category(values: pd.Series, dtype: Any, column: str, where: str, fqns: list) -> Any:
    import pandas as pd

    text = values.astype(object)
    known = set(dtype.categories)
    if isinstance(values.dtype, pd.CategoricalDtype):  # Parquet: the file declares its categories
        declared = [c for c in values.dtype.categories if c not in known]
        if declared:  # e.g. a Harness status this toolkit does not know, kept verbatim by the loader
            dtype = pd.CategoricalDtype([*dtype.categories, *declared])
            known.update(declared)
    unknown = sorted({v for v in text.dropna() if v not in known}, key=str)
    if unknown:
        row = next(i for i, v in enumerate(text) if v == unknown[0])
        raise TraceError(
            f"read_trace: {where}: {excerpt(str(fqns[row]), 120)}: unknown {column} "
            f"{excerpt(repr(unknown[0]), 80)}"
            + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
            + f"; a trace's {column} is one of {', '.join(map(str, dtype.categories))} (a trace whose "
            "categories extend these, e.g. a Harness execution's unknown status, keeps them in Parquet)"
        )
    return pd.Categorical(text.where(text.notna(), None), dtype=dtype)


def _json_containers(values: pd.Series) -> bool:
    """Every cell of a text column is a JSON object or array (an extra column of a CSV)."""
    seen = False
    for value in values.astype(object):
        if value is None or (isinstance(value, float) and value != value):
            continue
        if not isinstance(value, str) or value[:1] not in "{[" or not value:
            return False
        seen = True
    if not seen:
        return False
    try:
        for value in values.dropna():
            json.loads(value)
    except (ValueError, RecursionError):
        return False
    return True


def _decoded(values: pd.Series, column: str, where: str, fqns: list) -> list:
    return [_decode(v, column, where, fqns[row]) for row, v in enumerate(values.astype(object))]


def _decode(value: Any, column: str, where: str, fqn: Any) -> Any:
    """A cell of an object column: JSON text → its value; a Python literal (pandas' to_csv) of at
    most ``MAX_LITERAL`` characters → its value; other text as it is; NA → None."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if not isinstance(value, str):
        return _structure(value)
    text = value.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    except RecursionError:
        raise TraceError(f"read_trace: {where}: {fqn}: the {column!r} value is nested too deeply") from None
    if text[0] not in "{[(":
        return value
    if len(text) > MAX_LITERAL:
        raise TraceError(
            f"read_trace: {where}: {excerpt(str(fqn), 120)}: the {column!r} cell is {len(text)} characters "
            f"of neither JSON nor a short Python literal (over {MAX_LITERAL}); save the trace with "
            "trace.pipeline.save(path), which writes JSON cells"
        )
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return value


def _structure(value: Any) -> Any:
    """A Parquet struct (a mapping) as a dict, a list array as a list; NA → None."""
    import numpy as np

    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, Mapping):
        return {k: _structure(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [_structure(v) for v in value.tolist()]
    return value
