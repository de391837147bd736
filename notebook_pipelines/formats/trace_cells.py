"""Trace file cells, both ways: object values as JSON text, CSV formula neutralisation, decoding.

The cell-level rules of the trace file format (:mod:`.traces`, whose docstring describes the
format): an object cell is one JSON value (dict keys text, NumPy numbers as numbers; a value
JSON cannot hold is a :class:`~notebook_pipelines.errors.TraceError` naming the row's node and
the column); a text cell a spreadsheet would run as a formula gets one leading apostrophe, which
the reader removes; a cell read back is JSON, or a Python literal of at most
:data:`MAX_LITERAL` characters (a CSV of pandas' ``to_csv``), never evaluated otherwise; a
category outside its vocabulary is refused naming the value and the row.

It stands on nothing of the package but :mod:`~notebook_pipelines.errors` and the trace's
columns (``engine/trace.py``); :mod:`.traces` reads and writes whole files with it.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import TraceError, excerpt

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["MAX_LITERAL"]

#: the longest cell read as a Python literal (a CSV written by pandas' ``to_csv``)
MAX_LITERAL = 64 * 2**10
#: a text cell a spreadsheet would run as a formula (after any apostrophes of ours)
_FORMULA = re.compile(r"'*[=+\-@\t\r]")
_NEUTRALISED = re.compile(r"'+[=+\-@\t\r]")


def holds_json(frame: pd.DataFrame, column: str) -> bool:
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


def encoded_cells(frame: pd.DataFrame, column: str) -> list[str | None]:
    """Each cell of an object column as JSON text (``None`` stays ``None``)."""
    out: list[str | None] = []
    for row, value in enumerate(frame[column].tolist()):
        if value is None or (isinstance(value, float) and value != value):
            out.append(None)
        else:
            out.append(checked(frame, column, row, value))
    return out


def checked(frame: pd.DataFrame, column: str, row: int, value: Any) -> str:
    """``value`` as JSON text, or a :class:`TraceError` naming the row's node and the column."""
    try:
        return json.dumps(_plain(value), default=json_number)
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


def json_number(value: Any) -> Any:
    """NumPy numbers and booleans as Python's (``json.dumps``' ``default``)."""
    import numpy as np

    if isinstance(value, np.generic) and isinstance(value.item(), bool | int | float | str):
        return value.item()
    raise TypeError(f"a {type(value).__name__} is not JSON: {excerpt(repr(value), 80)}")


def is_text(column: pd.Series) -> bool:
    import pandas as pd

    return bool(
        column.dtype == object
        or pd.api.types.is_string_dtype(column)
        or isinstance(column.dtype, pd.CategoricalDtype)
    )


def neutralise(column: pd.Series) -> pd.Series:
    """Text cells a spreadsheet would run as a formula, with one apostrophe before them."""
    import pandas as pd

    if isinstance(column.dtype, pd.CategoricalDtype):  # the vocabulary, not every cell
        return column.cat.rename_categories(
            lambda c: "'" + c if isinstance(c, str) and _FORMULA.match(c) else c
        )
    text = column.astype("str")  # None/NA stay missing
    formula = text.str.match(_FORMULA.pattern, na=False)
    return text.where(~formula, "'" + text) if formula.any() else column


def undo_neutralise(column: pd.Series) -> pd.Series:
    """The reader's inverse of :func:`neutralise`: one leading apostrophe off such cells."""
    import pandas as pd

    if pd.api.types.is_string_dtype(column) and column.dtype != object:
        marked = column.str.match(_NEUTRALISED.pattern, na=False)
        return column.where(~marked, column.str.slice(1)) if marked.any() else column
    return column.map(lambda v: v[1:] if isinstance(v, str) and _NEUTRALISED.match(v) else v)


def as_tuple(value: Any) -> tuple | None:
    """A cell of a column of tuples (``after``): JSON and Parquet give lists back; None stays."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(value)
    return value


def stamps(values: pd.Series) -> Any:
    """ISO 8601 text as UTC timestamps; numbers (pandas' default ``to_json``) as epoch milliseconds."""
    import pandas as pd

    numbers = values.dropna()
    if len(numbers) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers):
        return pd.to_datetime(
            pd.to_numeric(values.astype(object).where(values.notna(), None)), unit="ms", utc=True
        )
    return pd.to_datetime(values, utc=True, format="ISO8601")


def category(values: pd.Series, dtype: Any, column: str, where: str, fqns: list) -> Any:
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


def json_containers(values: pd.Series) -> bool:
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


def decoded(values: pd.Series, column: str, where: str, fqns: list) -> list:
    return [_decode(v, column, where, fqns[row]) for row, v in enumerate(values.astype(object))]


def _decode(value: Any, column: str, where: str, fqn: Any) -> Any:
    """A cell of an object column: JSON text → its value; a Python literal (pandas' to_csv) of at
    most ``MAX_LITERAL`` characters → its value; other text as it is; NA → None."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if not isinstance(value, str):
        return structure(value)
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


def structure(value: Any) -> Any:
    """A Parquet struct (a mapping) as a dict, a list array as a list; NA → None."""
    import numpy as np

    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, Mapping):
        return {k: structure(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [structure(v) for v in value.tolist()]
    return value
