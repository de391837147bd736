"""Traces saved as CSV or Parquet, read back with the dtypes ``run()`` gives them.

Save a trace with pandas itself (``trace.to_csv(path, index=False)``,
``trace.to_parquet(path)``); :func:`read_trace` reads it back and restores the schema of
:mod:`~notebook_pipelines.engine.trace` — categories with their full vocabularies, ``Int64``
block and iteration, UTC nanosecond timestamps, pandas strings — so every analysis
(``trace.pipeline…``) reads it as it reads a fresh trace. Several runs concatenated before
saving load back as they were.

``after`` (tuples of fqns) is written by pandas as a Python tuple's text in CSV and as a
list in Parquet; both read back as tuples. A file saved before the column existed reads back
with ``after`` None (unknown) on every row.

Round-trip notes: CSV has no missing-vs-empty distinction, so an empty ``log``/``reason``
reads back as NA; the ``outputs``/``inputs`` dicts are written by pandas as their Python
text and read back with :func:`ast.literal_eval` (values that have no literal form stay
text). Parquet keeps dicts as structs: keys that only some rows have come back as ``None``
in the others.

>>> import os, tempfile
>>> import notebook_pipelines as nbp
>>> p = nbp.Pipeline("p", stages=[nbp.Stage("s", items=[nbp.Step("a", duration=2)])])
>>> trace = p.simulate()
>>> path = os.path.join(tempfile.mkdtemp(), "run.csv")
>>> trace.to_csv(path, index=False)
>>> back = read_trace(path)
>>> bool((back.dtypes == trace.dtypes).all()), back["end_s"].max()
(True, np.float64(2.0))
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import TraceError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["SUFFIXES", "conform", "read_trace"]

#: what :func:`read_trace` reads, by file suffix
SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_OBJECT_COLUMNS = ("outputs", "inputs", "after")
#: columns added to the schema later: a file saved before them reads back with them None
_OPTIONAL = ("after",)


def read_trace(path: str | Path) -> pd.DataFrame:
    """Read a trace saved as CSV (``.csv``) or Parquet (``.parquet``, ``.pq``).

    Returns:
        The trace DataFrame with the columns and dtypes of ``run()`` (the columns in the
        schema's order; a column the file lacks is refused, an extra one kept at the end).

    Raises:
        TraceError: the file's suffix is not one of ``SUFFIXES``, or it is not a trace
            (missing columns, values that do not fit the schema).
        FileNotFoundError: there is no such file.
    """
    import pandas as pd

    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise TraceError(
            f"read_trace({str(path)!r}): a trace is read from {', '.join(SUFFIXES)} files; "
            "save one with trace.to_csv(path, index=False) or trace.to_parquet(path)"
        )
    if not path.is_file():
        raise FileNotFoundError(f"read_trace: no file {str(path)!r}")
    if kind == "csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    else:
        frame = pd.read_parquet(path)
    return conform(frame, where=str(path))


def conform(frame: pd.DataFrame, where: str = "the frame") -> pd.DataFrame:
    """``frame`` with the trace schema's dtypes (see :func:`read_trace`)."""
    import pandas as pd

    from ..engine.trace import COLUMNS, dtypes

    missing = [c for c in COLUMNS if c not in frame.columns and c not in _OPTIONAL]
    if missing:
        raise TraceError(
            f"read_trace: {where} is not a trace: it lacks the columns {', '.join(missing)} "
            "(a trace saves every column: trace.to_csv(path, index=False))"
        )
    schema = dtypes()
    out = {}
    for column in COLUMNS:
        if column not in frame.columns:
            out[column] = [None] * len(frame)
            continue
        values, dtype = frame[column], schema[column]
        try:
            if column == "after":  # tuples of fqns; a list or an array read back is one
                out[column] = [_fqns(_literal(v)) for v in values.astype(object)]
                continue
            if column in _OBJECT_COLUMNS:
                out[column] = [_literal(v) for v in values.astype(object)]
                continue
            if str(dtype).startswith("datetime64"):
                out[column] = pd.to_datetime(values, utc=True, format="ISO8601").astype(dtype)
            elif str(dtype) in ("int64", "float64", "Int64"):
                numeric = pd.to_numeric(values)
                out[column] = numeric.astype(dtype)
            else:
                out[column] = values.astype(object).where(values.notna(), None).astype(dtype)
        except (ValueError, TypeError) as error:
            raise TraceError(
                f"read_trace: {where}: the column {column!r} does not hold {dtype}: {error}"
            ) from None
    result = pd.DataFrame(out, index=pd.RangeIndex(len(frame)))
    for column in frame.columns:
        if column not in result.columns:
            result[column] = frame[column].to_numpy()
    runs = result["run_id"].dropna().unique()
    if len(runs) == 1:
        result.attrs["run_id"] = str(runs[0])
    return result


def _fqns(value: Any) -> tuple[str, ...] | None:
    """An ``after`` value as the schema holds it: a tuple of fqns, or None (unknown)."""
    if value is None or isinstance(value, str):
        return None if value is None else (value,)
    return tuple(str(v) for v in value)


def _literal(value: Any) -> Any:
    """A dict read back from its Python text (CSV); anything else as it is, NA → None."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text[0] in "{[(":
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                return value
        return value
    if hasattr(value, "items"):
        return dict(value)
    if hasattr(value, "tolist"):  # Parquet gives a list column back as numpy arrays
        return value.tolist()
    return value
