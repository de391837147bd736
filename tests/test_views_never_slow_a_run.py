"""The views never slow a run (issue 31 item 1): observers draw on threads of their own.

The engine calls its listeners on the scheduler's loop; a view only marks an update as wanted
there, and draws on a drawing thread (``Throttle``), coalescing events, so a drawing slower
than the run skips frames. Each test makes the drawing deliberately slow and compares times
*within one trace* — the gaps between a chain's steps — with the time one drawing takes: a
view drawing on the loop would put at least one drawing between two steps. The widgets are
made headless (no frontend), as in ``tests/test_widgets.py``.
"""

from __future__ import annotations

import io
import threading
import time

import pandas as pd
import pytest
from conftest import sleeper

import notebook_pipelines as nbp
from notebook_pipelines.views import live
from notebook_pipelines.views.live import LiveView
from notebook_pipelines.views.progress import RunState, TextProgress

GUARD = 20.0  # seconds: a hang guard, never a measure
SLOW = 1.0  # seconds one deliberately slow drawing takes


def chain(name: str, n: int = 8) -> nbp.Pipeline:
    p = nbp.Pipeline(name)
    with p.stage("s") as s:
        for i in range(n):
            s.step(f"x{i}", run=sleeper(0.02))
    return p


def largest_gap(trace: pd.DataFrame) -> float:
    """The longest time between the end of a step of the chain and the start of the next (and
    between the pipeline's start and the first step's)."""
    steps = trace[trace["kind"] == "step"].sort_values("start_s")
    starts = steps["start_s"].to_numpy()
    ends = [float(trace[trace["kind"] == "pipeline"]["start_s"].iloc[0]), *steps["end_s"].to_numpy()[:-1]]
    return float(max(s - e for s, e in zip(starts, ends, strict=True)))


def drawing_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("nbp-draw") and t.is_alive()]


def test_a_slow_picture_never_delays_the_steps_and_the_last_picture_is_the_final_state(monkeypatch):
    drawn: list[bool] = []  # for each drawing: had the run ended?
    real_picture = live.picture_html

    def slow_picture(plan, trace):
        time.sleep(SLOW)
        drawn.append(state.done)
        return real_picture(plan, trace)

    monkeypatch.setattr(live, "picture_html", slow_picture)
    p = chain("slow_picture")
    state = RunState(p.plan())
    view = LiveView(state)  # the plan's picture: asked for now, drawn on the drawing thread
    trace = nbp.run(p, listeners=[state], progress=False)

    assert largest_gap(trace) < SLOW  # no drawing sat between two steps
    assert drawn and drawn[-1] is True  # it drew while the run went, and once after its end
    assert view.picture.value == real_picture(p.plan(), trace)  # the final state, statuses and all
    assert "8/8 steps done" in view.header.value and view.progress.value == 8
    assert drawing_threads() == []  # the run's end waited for the final picture; no thread is left


def test_a_slow_text_stream_never_delays_the_steps_and_ends_with_the_final_line():
    class SlowTerminal(io.StringIO):
        def isatty(self) -> bool:  # redrawn in place about ten times a second
            return True

        def write(self, text: str) -> int:
            time.sleep(SLOW / 2)
            return super().write(text)

    p = chain("slow_text")
    state = RunState(p.plan())
    stream = SlowTerminal()
    TextProgress(state, stream=stream)
    trace = nbp.run(p, listeners=[state], progress=False)

    assert largest_gap(trace) < SLOW / 2  # not one write sat between two steps
    last = stream.getvalue().split("\r")[-1]
    assert last.startswith("slow_text: 8/8 steps done") and last.endswith("Success\n")
    assert drawing_threads() == []


def test_above_PICTURE_LIMIT_the_picture_is_drawn_once_after_the_run_and_run_does_not_wait(monkeypatch):
    drawn: list[bool] = []
    real_picture = live.picture_html
    release = threading.Event()

    def picture(plan, trace):
        release.wait(GUARD)  # the final picture is held until the run has returned
        drawn.append(state.done)
        return real_picture(plan, trace)

    monkeypatch.setattr(live, "PICTURE_LIMIT", 5)
    monkeypatch.setattr(live, "picture_html", picture)
    p = chain("big", n=8)  # 8 steps > 5: counts and progress only while it runs
    state = RunState(p.plan())
    view = LiveView(state)
    assert "above 5 the picture is drawn when the run has ended" in view.picture.value
    trace = nbp.run(p, listeners=[state], progress=False)  # returns with the picture held
    assert drawn == [] and "8/8 steps done" in view.header.value
    release.set()
    assert view.wait(GUARD)
    assert drawn == [True] and view.picture.value == real_picture(p.plan(), trace)
    assert drawing_threads() == []


def test_a_view_whose_drawing_raises_stops_updating_with_a_warning_and_the_run_goes_on():
    p = chain("broken", n=3)
    state = RunState(p.plan())

    class Broken(io.StringIO):
        def isatty(self) -> bool:
            return True

        def write(self, text: str) -> int:
            raise RuntimeError("the terminal is gone")

    TextProgress(state, stream=Broken())
    with pytest.warns(RuntimeWarning, match="text-progress view stopped updating: RuntimeError"):
        trace = nbp.run(p, listeners=[state], progress=False)
    assert set(trace["status"]) == {"Success"} and drawing_threads() == []


def test_above_PICTURE_MAX_the_view_draws_no_picture_and_says_how_to_draw_it(monkeypatch):
    drawn: list[bool] = []
    monkeypatch.setattr(live, "PICTURE_LIMIT", 2)
    monkeypatch.setattr(live, "PICTURE_MAX", 4)
    monkeypatch.setattr(live, "picture_html", lambda plan, trace: drawn.append(True) or "")
    p = chain("huge", n=6)
    state = RunState(p.plan())
    view = LiveView(state)
    nbp.run(p, listeners=[state], progress=False)
    assert view.wait(GUARD) and drawn == []
    assert "6 steps: above 4 the view draws no picture; draw it with p.render(trace)" in view.picture.value
    assert "6/6 steps done" in view.header.value


def test_a_run_that_ends_without_a_trace_stops_its_views_drawing_threads_at_once():
    class Unreachable:  # an executor whose cluster cannot be reached: the run never starts
        name, clock, runs_handlers = "unreachable", None, True

        def open(self, run):
            raise ConnectionError("no cluster at 127.0.0.1:1")

        def submit(self, job): ...
        def cancel(self, job): ...
        def close(self, cancel): ...

    p = chain("unreachable", n=2)
    state = RunState(p.plan())
    view = LiveView(state)  # the plan's picture is being drawn on its thread
    with pytest.raises(ConnectionError):
        nbp.run(p, listeners=[state], progress=False, executor=Unreachable())
    # ended after the picture under way, not after the idle time (Throttle.IDLE, 5 s) of a
    # thread that waits for more events of a run that is over
    assert view.wait(timeout=2.0) and drawing_threads() == []
