"""Shared helpers for the tests: step bodies, trace look-ups and a thread-leak check.

Bodies really sleep (real threads, wall clock); keep them short (10–100 ms). Timing checks
compare events of one trace with each other (overlap, order), never with fixed thresholds.

Two kinds of body: ``sleeper``/``failing`` take no arguments and sleep with ``time.sleep``;
``ok``/``boom`` take the step context and sleep with ``ctx.sleep`` (so a timeout or an abort
stops them early). Trace look-ups name a node by its identifier (``"a"``) or by the tail of its
FQN (``"g.steps.a"``) where an identifier alone would be ambiguous.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import notebook_pipelines as nbp
from notebook_pipelines.engine.executors.threads import default_pool

REPO = Path(__file__).resolve().parents[1]
#: The shared corpus of real Harness pipelines, read in place (never copied into the project):
#: ``NBP_HARNESS_CORPUS``, else ``../shared/harness-corpus`` beside the clone (where CI has it).
CORPUS = Path(os.environ.get("NBP_HARNESS_CORPUS") or REPO.parent / "shared" / "harness-corpus")
CORPUS_FILES = sorted(CORPUS.glob("*.y*ml"))
CORPUS_ABSENT = (
    f"no Harness corpus at {CORPUS}: set NBP_HARNESS_CORPUS to a copy of shared/harness-corpus "
    "(CI has it, so nothing is skipped there)"
)
#: for tests that read the corpus: skipped, with the reason, in a clone without it
needs_corpus = pytest.mark.skipif(not CORPUS_FILES, reason=CORPUS_ABSENT)


def corpus_files() -> list:
    """The corpus files as test parameters (one skipped parameter, with the reason, without it)."""
    if CORPUS_FILES:
        return [pytest.param(path, id=path.name[:60]) for path in CORPUS_FILES]
    return [pytest.param(None, id="no-corpus", marks=pytest.mark.skip(reason=CORPUS_ABSENT))]


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C reaches Python in this session even if the suite was started with SIGINT ignored.

    A shell without job control starts a background command (``make test &``) with SIGINT
    ignored, and the interrupt tests (D6: ``os.kill(…, SIGINT)``, ``_thread.interrupt_main()``)
    then lose their interrupt: the run goes on to its end. Python's own handler is what a
    terminal or a Jupyter kernel's cell has; it is put back here (the tests that need another
    handler install it themselves)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


WORKER_PREFIX = "nbp-worker"
LEFT_BEHIND_PREFIX = "nbp-left-behind"


def sleeper(seconds: float, text: str | None = None, result: dict | None = None) -> Callable[[], Any]:
    """A step body that sleeps ``seconds`` (optionally printing ``text`` and returning ``result``)."""

    def body() -> Any:
        if text is not None:
            print(text)
        time.sleep(seconds)
        return result

    body.__name__ = f"sleep_{seconds:g}s"
    return body


def recording(calls: list[str], name: str, seconds: float) -> Callable[[], None]:
    """A step body that appends ``name`` to ``calls`` when it starts, then sleeps ``seconds`` with
    ``time.sleep`` (which nothing cuts short: a run told to stop leaves it behind)."""

    def body() -> None:
        calls.append(name)
        time.sleep(seconds)

    return body


def failing(message: str = "bad value", exc: type[BaseException] = ValueError, after: float = 0.02):
    """A step body that sleeps ``after`` seconds, then raises ``exc(message)``."""

    def body() -> None:
        time.sleep(after)
        raise exc(message)

    return body


def grouped(name: str, stages: int, groups: int, blocks: int, width: int, longest: float) -> nbp.Pipeline:
    """A real-shaped pipeline: ``stages`` stages of ``groups`` step groups, each a series of
    ``blocks`` parallel blocks of ``width`` steps lasting uniform(1, ``longest``) seconds."""
    p = nbp.Pipeline(name)
    for k in range(stages):
        with p.stage(f"s{k}") as s:
            for g in range(groups):
                with s.step_group(f"g{g}") as group:
                    for b in range(blocks):
                        with group.parallel():
                            for i in range(width):
                                group.step(f"x{b}_{i}", duration=lambda rng: rng.uniform(1, longest))
    return p


def two_steps() -> nbp.Pipeline:
    """The smallest serial chain: pipeline ``p``, one stage ``s`` of two plain steps, ``a`` then ``b``
    (no body, no duration)."""
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a")
        s.step("b")
    return p


def measured_history(runs: dict, plan, pipeline: str | None = None):
    """A measured history, as a trace of many runs: per run (``{run_id: {step id: seconds}}``),
    the steps one after the other (resampling reads only the durations). A step id the plan
    lacks is put in stage ``s``; ``pipeline`` adds the column that ``read_history`` gives."""
    import pandas as pd

    by_id = {n.id: n.fqn for n in plan.steps}
    rows = []
    for run_id, steps in runs.items():
        t = 0.0
        for step, seconds in steps.items():
            rows.append(
                {"run_id": run_id, "fqn": by_id.get(step, f"pipeline.stages.s.spec.execution.steps.{step}"),
                 "kind": "step", "step": step, "attempt": 1, "status": "Success", "start_s": t,
                 "end_s": t + seconds, "iteration": None}
            )  # fmt: skip
            t += seconds
    frame = pd.DataFrame(rows)
    frame["parent"] = frame["fqn"].str.split(".spec.", regex=False).str[0]  # the stage
    if pipeline is not None:
        frame["pipeline"] = pipeline
    return frame


def worker_threads() -> list[threading.Thread]:
    """The engine's worker threads that are alive now (in the pool, idle or busy)."""
    return [t for t in threading.enumerate() if t.name.startswith(WORKER_PREFIX) and t.is_alive()]


def left_behind() -> list[threading.Thread]:
    """Threads running a body that was told to stop and has not stopped yet."""
    return [t for t in threading.enumerate() if t.name.startswith(LEFT_BEHIND_PREFIX) and t.is_alive()]


def ok(seconds: float = 0.01) -> Callable:
    """A body that sleeps ``seconds`` and succeeds."""

    def body(ctx: nbp.StepContext) -> None:
        ctx.sleep(seconds)

    return body


def boom(seconds: float = 0.01, error_type: str = "Unknown") -> Callable:
    """A body that sleeps ``seconds`` and fails with ``error_type``."""

    def body(ctx: nbp.StepContext) -> None:
        ctx.sleep(seconds)
        raise nbp.StepError("boom", error_type=error_type)

    return body


def writes_bytes(text: str, seconds: float) -> Callable:
    """A body that prints ``text``, writes bytes to ``sys.stdout`` (refused with a TypeError, which
    it catches: issue 24.2), then sleeps ``seconds`` with ``ctx.sleep`` until the run stops it."""

    def body(ctx: nbp.StepContext) -> None:
        print(text)
        try:
            sys.stdout.write(b"bytes")
        except TypeError:
            pass
        ctx.sleep(seconds)

    return body


def run(p: nbp.Pipeline, **options: Any) -> pd.DataFrame:
    """Run for real (threads); the trace, also when the pipeline failed."""
    return p.run(report=False, **options)


def rows(trace: pd.DataFrame, key: str) -> pd.DataFrame:
    """The rows of the node whose FQN ends with ``.key`` (or is ``key``), by attempt."""
    fqn = trace["fqn"].astype(str)
    return trace[(fqn == key) | fqn.str.endswith("." + key)]


def row(trace: pd.DataFrame, key: str, attempt: int | None = None) -> pd.Series:
    """The one row of the node ``key`` names (see ``rows``): the last attempt by default."""
    found = rows(trace, key)
    if attempt is not None:
        found = found[found["attempt"] == attempt]
    assert len(found), f"no row for {key!r} in {trace['fqn'].tolist()}"
    return found.iloc[-1]


def status(trace: pd.DataFrame, key: str) -> str:
    """The status of the node ``key`` names (its last attempt)."""
    return str(row(trace, key)["status"])


def overlap(a: pd.Series, b: pd.Series) -> bool:
    """True when two trace rows ran at the same time for a while (each started before the other ended)."""
    return a["start_s"] < b["end_s"] and b["start_s"] < a["end_s"]


@pytest.fixture
def no_worker_leak() -> Iterator[None]:
    """Fail the test when a worker of the pool is still busy after it, or a body that was told
    to stop is still running (left behind) a while later (the join is a hang guard)."""
    before = set(left_behind())
    yield
    assert default_pool().busy == 0, f"busy workers after the run: {default_pool()!r}"
    for thread in left_behind():
        if thread not in before:
            thread.join(5.0)
    still = [t.name for t in left_behind() if t not in before]
    assert not still, f"bodies still running after they were told to stop: {still}"


_BROWSER_TESTS = Path(__file__).resolve().parent / "browser"


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers by place: every test in ``tests/browser`` is ``browser``; every cell nbval runs
    from ``notebooks/`` is ``kernel`` (``make test-fast`` leaves both out)."""
    for item in items:
        path = Path(str(item.path)).resolve()
        if _BROWSER_TESTS in path.parents:
            item.add_marker(pytest.mark.browser)
        elif path.suffix == ".ipynb":
            item.add_marker(pytest.mark.kernel)


def finishes(fn: Callable[[], Any], guard: float = 20.0) -> Any:
    """``fn()`` run in a thread; fails (instead of hanging) when it has not returned after ``guard`` s.
    Whatever ``fn`` raises — ``SystemExit`` too — is raised here."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # handed to the test below
            result["error"] = exc

    thread = threading.Thread(target=target, name="test-guard", daemon=True)
    thread.start()
    thread.join(guard)
    assert not thread.is_alive(), f"{getattr(fn, '__name__', fn)} hangs (still running after {guard:g}s)"
    if "error" in result:
        raise result["error"]
    return result["value"]


def short(fqn: str) -> str:
    """A history row's FQN without the ``pipeline.stages.`` and ``spec.execution.steps.`` parts."""
    return fqn.replace("pipeline.stages.", "").replace("spec.execution.steps.", "")


def table(frame: pd.DataFrame, *columns: str) -> list[tuple]:
    """Rows of a loaded history as plain tuples: the short FQN, then ``columns`` (missing → None,
    statuses and kinds as text, ``after`` as short FQNs)."""
    out = []
    for row in frame[["fqn", *columns]].itertuples(index=False):
        values = [short(row[0])]
        for name, value in zip(columns, row[1:]):
            if value is pd.NA or (isinstance(value, float) and math.isnan(value)):
                value = None
            elif name in ("kind", "status"):
                value = str(value)
            elif name == "after" and value is not None:
                value = [short(f) for f in value]
            values.append(value)
        out.append(tuple(values))
    return out
