"""Where histories live on disk: the raw JSON as fetched, and a Parquet dataset.

The cache folder (:func:`cache_dir`: ``NBP_CACHE`` if set, else the user's cache directory,
``~/.cache/notebook-pipelines`` on Linux) holds::

    raw/<source>/<pipeline>/<run id>.json        what the API answered for one run, as fetched
    history/source=<source>/pipeline=<pipeline>/part-<time>-<id>.parquet

``<pipeline>`` is percent-encoded (``.github%2Fworkflows%2Fci.yml``). The Parquet files form
a Hive-partitioned dataset that pandas (``pd.read_parquet(folder / "history")``), DuckDB
(``read_parquet('…/history/**/*.parquet', hive_partitioning=true)``) or Dask read as they
are; each fetch adds one part holding the runs it added. Every file is written to a temporary
name in its folder and renamed into place, so a crash or an interrupt leaves no half-written
file. No token is ever written: the raw files hold the answers' bodies only.

:func:`read_history` reads a folder back into a history DataFrame with the schema of
:mod:`.history` (the trace's dtypes, ``after`` as tuples, then the run columns).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
import urllib.parse
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import HistoryWarning, excerpt
from .history import RUN_COLUMNS, HistoryError, concat_runs, empty_history, history_dtypes

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["cache_dir", "raw_path", "read_history", "stored_runs", "write_atomic", "write_part"]

#: the partition columns (directory names), outermost first
PARTITIONS = ("source", "pipeline")
#: loader columns beyond the schema that are kept (Harness ids), as text
EXTRAS = ("uuid", "setupId", "stepType")
_JSON_COLUMNS = ("outputs", "inputs")


def cache_dir() -> Path:
    """The cache folder: ``$NBP_CACHE``, else the platform's user cache directory
    (``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on macOS,
    ``%LOCALAPPDATA%`` on Windows) + ``notebook-pipelines``."""
    env = os.environ.get("NBP_CACHE")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "notebook-pipelines" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "notebook-pipelines"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "notebook-pipelines"


def _segment(value: str) -> str:
    return urllib.parse.quote(str(value), safe="")


def raw_path(folder: Path, source: str, pipeline: str, run_id: str) -> Path:
    """Where the raw JSON of one run is kept."""
    return Path(folder) / "raw" / _segment(source) / _segment(pipeline) / f"{_segment(run_id)}.json"


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[tuple[int, str]]:
    """A temporary file beside ``path`` (its descriptor and name) that replaces ``path`` when the
    block ends well, and is removed when it does not: readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        yield fd, tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename:
    readers see the old file or the whole new one, never a part."""
    with _replacing(path) as (fd, _), os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def write_raw(
    folder: Path, source: str, pipeline: str, run_id: str, doc: Any, secret: str | None = None
) -> Path:
    """Keep one run's answers (a JSON-able dict) in the cache; returns the file. ``secret`` (the
    token) is replaced by ``***`` wherever an answer echoed it."""
    path = raw_path(folder, source, pipeline, run_id)
    if secret:  # in any form an answer may echo it (any letter case, percent-encoded), in the
        from .http import redact_values  # text of each value: the JSON around them stays whole

        doc, _ = redact_values(doc, [secret])
    write_atomic(path, json.dumps(doc, separators=(",", ":")).encode())
    return path


def cached_raw(folder: Path, source: str, pipeline: str) -> dict[str, Path]:
    """``{run id: raw file}`` of the runs kept for one pipeline."""
    where = Path(folder) / "raw" / _segment(source) / _segment(pipeline)
    if not where.is_dir():
        return {}
    return {urllib.parse.unquote(p.stem): p for p in where.glob("*.json") if not p.name.startswith(".")}


def _dataset_root(folder: Path) -> Path:
    """The dataset under a cache folder, or the folder itself if it is the dataset."""
    folder = Path(folder)
    if (folder / "history").is_dir() or not any(folder.glob("source=*")):
        return folder / "history"
    return folder


def _arrow_schema(partitions: bool = False) -> Any:
    import pyarrow as pa

    from ..engine.trace import COLUMNS

    types = history_dtypes()
    fields = []
    for name in (*COLUMNS, *RUN_COLUMNS, *EXTRAS):
        if name in PARTITIONS and not partitions:
            continue
        kind = str(types.get(name, "str"))
        if name == "after":
            arrow = pa.list_(pa.string())
        elif kind.startswith("datetime64"):
            arrow = pa.timestamp("ns", tz="UTC")
        elif kind in ("int64", "Int64"):
            arrow = pa.int64()
        elif kind == "float64":
            arrow = pa.float64()
        else:  # text, categories, JSON of the dict columns
            arrow = pa.string()
        fields.append(pa.field(name, arrow))
    return pa.schema(fields)


def write_part(frame: pd.DataFrame, folder: Path) -> list[Path]:
    """Add ``frame`` (a history) to the Parquet dataset under ``folder``: one new part per
    (source, pipeline) it holds. Returns the files written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(folder) / "history"
    schema = _arrow_schema()
    written = []
    for (source, pipeline), part in frame.groupby(list(PARTITIONS), sort=False, observed=True):
        columns = {}
        for field in schema:
            name = field.name
            if name not in part.columns:
                columns[name] = pa.nulls(len(part), field.type)
                continue
            values = part[name]
            if name == "after":
                data = [None if v is None or v is pd_na() else list(v) for v in values.astype(object)]
                columns[name] = pa.array(data, type=field.type)
            elif name in _JSON_COLUMNS:
                data = [None if v is None else json.dumps(v, default=str) for v in values.astype(object)]
                columns[name] = pa.array(data, type=pa.string())
            elif field.type == pa.string():
                columns[name] = pa.array(
                    values.astype(object).where(values.notna(), None).tolist(), pa.string()
                )
            else:
                columns[name] = pa.array(values, type=field.type, from_pandas=True)
        table = pa.table(columns, schema=schema)
        target = root / f"source={_segment(source)}" / f"pipeline={_segment(pipeline)}"
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        path = target / f"part-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
        with _replacing(path) as (fd, tmp):
            os.close(fd)
            pq.write_table(table, tmp)
        written.append(path)
    return written


def pd_na() -> Any:
    import pandas as pd

    return pd.NA


def stored_runs(folder: Path, source: str, pipeline: str) -> set[str]:
    """The run ids the dataset holds for one pipeline (reads the ``run_id`` column only)."""
    import pyarrow.parquet as pq

    where = Path(folder) / "history" / f"source={_segment(source)}" / f"pipeline={_segment(pipeline)}"
    out: set[str] = set()
    for path in sorted(where.glob("*.parquet")) if where.is_dir() else ():
        out.update(str(x) for x in pq.read_table(path, columns=["run_id"]).column(0).to_pylist())
    return out


def read_history(
    folder: str | os.PathLike | None = None,
    *,
    source: str | Iterable[str] | None = None,
    pipeline: str | Iterable[str] | None = None,
) -> pd.DataFrame:
    """A history kept on disk, as one DataFrame (see :mod:`notebook_pipelines.formats.history`).

    Args:
        folder: the cache folder (default :func:`cache_dir`) or its ``history`` dataset.
        source, pipeline: keep only these (a name or several); only their files are read.

    Returns:
        The history: the trace's columns and dtypes, then the run columns; runs ordered by
        ``created`` then ``run_id``, each run's rows in the order they were stored.

    Raises:
        HistoryError: ``folder`` holds no history dataset.

    >>> import tempfile, notebook_pipelines as nbp
    >>> from notebook_pipelines.formats.github import load_github_run
    >>> folder = tempfile.mkdtemp()
    >>> run = load_github_run({"jobs": [{"id": 1, "name": "build", "conclusion": "success",
    ...     "started_at": "2026-01-05T10:00:00Z", "completed_at": "2026-01-05T10:01:00Z"}]}, run_id="1")
    >>> _ = write_part(run, folder)
    >>> back = read_history(folder)
    >>> list(back["fqn"]), float(back["end_s"].max()), back["source"].iloc[0]
    (['pipeline', 'pipeline.stages.build'], 60.0, 'github')
    """
    import pandas as pd
    import pyarrow.dataset as ds

    root = _dataset_root(Path(folder) if folder is not None else cache_dir())
    if not root.is_dir():
        raise HistoryError(
            f"read_history: no history at {root}: fetch one first (nbp.fetch_github_history, "
            "fetch_gitlab_history, fetch_harness_history) or give the folder it was kept in"
        )
    files = []
    wanted_sources = {source} if isinstance(source, str) else set(source) if source is not None else None
    wanted_pipes = (
        {pipeline} if isinstance(pipeline, str) else set(pipeline) if pipeline is not None else None
    )
    for sdir in sorted(root.glob("source=*")):
        if wanted_sources is not None and urllib.parse.unquote(sdir.name[7:]) not in wanted_sources:
            continue
        for pdir in sorted(sdir.glob("pipeline=*")):
            if wanted_pipes is not None and urllib.parse.unquote(pdir.name[9:]) not in wanted_pipes:
                continue
            files += [str(p) for p in sorted(pdir.glob("*.parquet")) if not p.name.startswith(".")]
    import pyarrow as pa

    schema = _arrow_schema(partitions=True)

    partitioning = ds.partitioning(
        pa.schema([pa.field("source", pa.string()), pa.field("pipeline", pa.string())]), flavor="hive"
    )
    if not files:
        return empty_history()
    dataset = ds.dataset(
        files, format="parquet", schema=schema, partitioning=partitioning, partition_base_dir=str(root)
    )
    table = dataset.to_table()
    return _conform(table, pd)


def _conform(table: Any, pd: Any) -> pd.DataFrame:
    """The history's pandas dtypes from an Arrow table of the stored schema."""
    import numpy as np

    from ..engine.trace import COLUMNS

    types = history_dtypes()
    out: dict[str, Any] = {}
    n = table.num_rows
    for name in (*COLUMNS, *RUN_COLUMNS, *EXTRAS):
        if name not in table.column_names:
            continue
        column = table.column(name)
        if name in EXTRAS and column.null_count == n:
            continue  # a loader's extra column no run here has
        kind = types.get(name)
        if name == "after":
            values = np.empty(n, dtype=object)
            values[:] = [None if v is None else tuple(v) for v in column.to_pylist()]
            out[name] = values
        elif name in _JSON_COLUMNS:
            values = np.empty(n, dtype=object)
            values[:] = [None if v is None else json.loads(v) for v in column.to_pylist()]
            out[name] = values
        elif name in ("start", "end", "created"):
            out[name] = column.to_pandas().astype(kind).array
        elif kind is not None and isinstance(kind, pd.CategoricalDtype):
            values = column.to_pandas().astype(object)
            extra = [v for v in pd.unique(values.dropna()) if v not in kind.categories]
            dtype = pd.CategoricalDtype([*kind.categories, *extra]) if extra else kind
            out[name] = pd.Categorical(values, dtype=dtype)
        elif kind is not None and str(kind) in ("int64", "float64"):
            out[name] = column.to_numpy()
        elif kind is not None:
            out[name] = column.to_pandas().astype(kind).array
        else:
            out[name] = column.to_pandas().astype("str").array
    frame = pd.DataFrame(out)
    if len(frame):
        order = np.lexsort(
            (
                np.arange(n),
                frame["run_id"].to_numpy(dtype=object).astype(str),
                frame["created"].to_numpy(dtype="M8[ns]").view("i8"),
            )
        )
        frame = frame.iloc[order].reset_index(drop=True)
    return frame


def sync_kept(folder: Path, source: str, pipeline: str, load: Callable[[str, dict], pd.DataFrame]) -> None:
    """Add to the Parquet dataset the runs kept as raw JSON but not yet in it (one new part);
    ``load(run_id, doc)`` makes a run's rows. A kept file that no longer reads or loads (edited,
    or kept by an older version) is moved aside (``.<run>.rejected``) with a
    :class:`~notebook_pipelines.errors.HistoryWarning`: the next fetch asks for the run again."""
    have = stored_runs(folder, source, pipeline)
    frames = []
    for run_id, path in sorted(cached_raw(folder, source, pipeline).items()):
        if run_id in have:
            continue
        try:
            frame = load(run_id, json.loads(path.read_bytes()))
        except (ValueError, RecursionError) as err:  # not ours (edited, or an older version's)
            aside = path.with_name(f".{path.stem}.rejected")  # kept to look at, not read again
            path.replace(aside)
            warnings.warn(
                f"{source} {pipeline}: the kept answers of run {excerpt(run_id, 80)} cannot be read "
                f"({excerpt(str(err) or type(err).__name__, 200)}); moved aside to {aside}: the run is "
                "fetched again by the next call",
                HistoryWarning,
                stacklevel=4,
            )
            continue
        frame["source"], frame["pipeline"] = source, pipeline
        frames.append(frame)
    if frames:
        write_part(concat_runs(frames), folder)


def kept_runs(folder: Path, source: str, pipeline: str, run_ids: list[str]) -> pd.DataFrame:
    """The history of ``run_ids`` of one pipeline as kept in ``folder`` (no run kept yet, as when
    every listed run is still going: an empty history, not an error)."""
    if not _dataset_root(Path(folder)).is_dir():
        history = empty_history()
    else:
        history = read_history(folder, source=source, pipeline=pipeline)
    keep = history["run_id"].isin(set(run_ids))
    out = history[keep].reset_index(drop=True)
    out.attrs["source"], out.attrs["pipeline"] = source, pipeline
    return out
