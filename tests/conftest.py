"""Shared helpers for the tests: step bodies, trace look-ups and a thread-leak check.

Bodies really sleep (real threads, wall clock); keep them short (10–100 ms). Timing checks
compare events of one trace with each other (overlap, order), never with fixed thresholds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pytest

WORKER_PREFIX = "nbp-worker"


def sleeper(seconds: float, text: str | None = None, result: dict | None = None) -> Callable[[], Any]:
    """A step body that sleeps ``seconds`` (optionally printing ``text`` and returning ``result``)."""

    def body() -> Any:
        if text is not None:
            print(text)
        time.sleep(seconds)
        return result

    body.__name__ = f"sleep_{seconds:g}s"
    return body


def failing(message: str = "bad value", exc: type[BaseException] = ValueError, after: float = 0.02):
    """A step body that sleeps ``after`` seconds, then raises ``exc(message)``."""

    def body() -> None:
        time.sleep(after)
        raise exc(message)

    return body


def worker_threads() -> list[threading.Thread]:
    """The engine's worker threads that are alive now."""
    return [t for t in threading.enumerate() if t.name.startswith(WORKER_PREFIX) and t.is_alive()]


def row(trace: pd.DataFrame, ident: str, attempt: int | None = None) -> pd.Series:
    """The one row of the node whose identifier is ``ident`` (the last attempt by default)."""
    rows = trace[trace["fqn"].str.rsplit(".", n=1).str[-1] == ident]
    if attempt is not None:
        rows = rows[rows["attempt"] == attempt]
    assert len(rows) >= 1, f"no row for {ident!r} in {trace['fqn'].tolist()}"
    return rows.iloc[-1]


def overlap(a: pd.Series, b: pd.Series) -> bool:
    """True when two trace rows ran at the same time for a while (each started before the other ended)."""
    return a["start_s"] < b["end_s"] and b["start_s"] < a["end_s"]


@pytest.fixture
def no_worker_leak() -> Iterator[None]:
    """Fail the test when an ``nbp-worker`` thread is still alive after it."""
    before = set(worker_threads())
    yield
    leaked = [t.name for t in worker_threads() if t not in before]
    assert not leaked, f"worker threads left running: {leaked}"
