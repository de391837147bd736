"""The baselines: the work of each workload without the engine.

- ``threadpool``: a warm ``concurrent.futures.ThreadPoolExecutor`` (its threads already
  started by the warm-up call): ``submit(f).result()`` one after another for a chain,
  ``list(pool.map(...))`` for a parallel block, one map per block for serial blocks.
- ``dask-threads``: ``dask.delayed`` graphs computed with ``scheduler="threads"`` — a chain
  of tasks each depending on the previous one, a block of independent tasks, one
  ``dask.compute`` per block for serial blocks. Graph building is timed too, as our compile
  is. Dask is optional (``pip install -e '.[bench]'``); :func:`dask_missing` says why it
  cannot run.
- ``dask-map``: the same no-ops straight on a Dask distributed cluster, ``client.map`` then
  ``client.gather`` (the ``dask-wide`` workload, against ``nbp.DaskExecutor`` on that cluster);
  :func:`distributed_missing` says why it cannot run (``pip install -e '.[dask]'``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

Body = Callable[[], None]


def noop() -> None:
    return None


def noop_after(_previous: Any = None) -> None:
    """A no-op that takes its predecessor's result: the link of a Dask chain."""
    return None


def pool_chain(pool: ThreadPoolExecutor, n: int, body: Body = noop) -> None:
    for _ in range(n):
        pool.submit(body).result()


def pool_block(pool: ThreadPoolExecutor, width: int, body: Body = noop) -> None:
    list(pool.map(lambda _i: body(), range(width)))


def pool_blocks(pool: ThreadPoolExecutor, blocks: int, width: int, body: Body) -> None:
    for _ in range(blocks):
        pool_block(pool, width, body)


def _not_installed(module: str, what: str) -> str | None:
    """``"<what> not installed"`` when ``module`` cannot be imported, else None."""
    try:
        importlib.import_module(module)
    except ImportError:
        return f"{what} not installed"
    return None


def dask_missing() -> str | None:
    """Why the Dask baseline cannot run, or None when it can."""
    return _not_installed("dask", "dask")


def dask_chain(n: int) -> None:
    import dask

    link = None
    for _ in range(n):
        link = dask.delayed(noop_after)(link)
    dask.compute(link, scheduler="threads")


def dask_block(width: int, body: Body = noop, workers: int | None = None) -> None:
    import dask

    tasks = [dask.delayed(body)() for _ in range(width)]
    dask.compute(*tasks, scheduler="threads", num_workers=workers)


def dask_blocks(blocks: int, width: int, body: Body, workers: int) -> None:
    for _ in range(blocks):
        dask_block(width, body, workers)


def distributed_missing() -> str | None:
    """Why the Dask distributed workload cannot run, or None when it can."""
    return _not_installed("distributed", "dask distributed")


def dask_map(client: Any, width: int) -> None:
    """``width`` independent no-op tasks on the cluster: ``client.map`` + ``client.gather``."""
    client.gather(client.map(noop_after, range(width), pure=False))
