"""Live ETA from a history (issue 28, part 4): the text progress and the live view's header."""

from __future__ import annotations

import time

import pandas as pd
import pytest

import notebook_pipelines as nbp
from notebook_pipelines.analysis.eta import Eta
from notebook_pipelines.views.progress import RunState, text_line


def _pipeline() -> nbp.Pipeline:
    p = nbp.Pipeline("eta")
    with p.stage("s") as s:
        s.step("a", run=lambda: time.sleep(0.01))
        s.step("b", run=lambda: time.sleep(0.01))
    return p


def _history(plan) -> pd.DataFrame:
    a, b = (n.fqn for n in plan.steps)
    # three measured runs: (a, b) = (10, 20), (10, 20), (30, 40)
    durations = [(10.0, 20.0), (10.0, 20.0), (30.0, 40.0)]
    rows = []
    for run, (da, db) in enumerate(durations):
        rows += [
            {"run_id": str(run), "fqn": a, "kind": "step", "attempt": 1, "status": "Success",
             "start_s": 0.0, "end_s": da},
            {"run_id": str(run), "fqn": b, "kind": "step", "attempt": 1, "status": "Success",
             "start_s": da, "end_s": da + db},
        ]  # fmt: skip
    return pd.DataFrame(rows)


def _state_with_eta(p: nbp.Pipeline) -> RunState:
    """The progress state of a run of ``p``, its ETA from the three measured runs of ``_history``."""
    plan = p.plan()
    state = RunState(plan)
    state.eta = Eta(plan, _history(plan))
    return state


class _Lines:
    """A listener after the RunState: the text line as each step ends."""

    def __init__(self, state: RunState):
        self.state, self.lines = state, {}

    def node_finished(self, node, row) -> None:
        if node.kind == "step":
            self.lines[node.id] = text_line(self.state)


def test_run_history_the_text_progress_shows_the_expected_end_updated_as_steps_finish():
    p = _pipeline()
    state = _state_with_eta(p)
    lines = _Lines(state)
    p.run(progress=False, listeners=[state, lines])
    # before a step ends: a + b is 30 (2 runs in 3) or 70 → p50 30 s, p95 70 s (not shown yet).
    # a took ~0.01 s: the makespan is ~0.01 + b, b 20 (2 in 3) or 40: p50 ~20 s, p95 ~40 s left
    assert "ends in ~20s (p50), ≤ 40s (p95)" in lines.lines["a"], lines.lines["a"]
    # b ended too: nothing is left to run, the expected end is now
    assert "ends in ~0ms (p50), ≤ 0ms (p95)" in lines.lines["b"], lines.lines["b"]


def test_eta_before_any_step_and_without_history():
    plan = _pipeline().plan()
    assert Eta(plan, _history(plan), runs=3000).estimate({}, {}) == (30.0, 70.0)
    state = RunState(plan)
    assert state.expected_end() is None and "ends in" not in text_line(state)


def test_p_run_history_is_accepted_and_the_run_is_unchanged():
    p = _pipeline()
    trace = p.run(progress=True, history=_history(p.plan()), report=False)
    assert set(trace.loc[trace["kind"] == "step", "status"]) == {"Success"}


def test_the_live_view_header_shows_the_expected_end():
    from notebook_pipelines.views.live import LiveView

    p = _pipeline()
    state = _state_with_eta(p)
    view = LiveView(state)
    headers = {}

    class Header:
        def node_finished(self, node, row) -> None:
            if node.kind == "step":
                view._refresh_text()
                headers[node.id] = view.header.value

    p.run(progress=False, listeners=[state, Header()])
    assert "ends in ~20s (p50), ≤ 40s (p95)" in headers["a"], headers["a"]


def test_p_start_history_gives_its_handle_an_estimate():
    p = _pipeline()
    handle = p.start(history=_history(p.plan()))
    handle.wait()
    assert handle.state.eta is not None and handle.state.eta.estimate({}, {}) is not None


def test_the_expected_end_counts_the_earlier_attempts_of_a_step_being_retried():
    """a fails its first attempt at once and is retried after 0.3 s: while its second attempt
    runs, the estimate took the failed attempt's ~0 s as a's duration (the attempt under way
    had run ~0 s too): p50 ≈ 0 + b's 20 s, though a alone started 0.3 s before and, measured
    at 5 s, should end 5 s after its retry began. Now: 0.3 + max(5, ~0) + 20 ≈ 25.3 s."""
    calls = [0]

    def flaky() -> None:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("first attempt fails")

    p = nbp.Pipeline("eta")
    with p.stage("s") as s:
        s.step("a", run=flaky, failure_strategies=nbp.Retry(1, intervals=["0.3s"]))
        s.step("b", run=lambda: None)
    plan = p.plan()
    a, b = (n.fqn for n in plan.steps)
    measured = {"run_id": "1", "kind": "step", "attempt": 1, "status": "Success"}
    h = pd.DataFrame(
        [
            {**measured, "fqn": a, "start_s": 0.0, "end_s": 5.0},
            {**measured, "fqn": b, "start_s": 5.0, "end_s": 25.0},
        ]
    )
    state = RunState(plan)
    state.eta = Eta(plan, h)
    seen = {}

    class Retried:
        def node_started(self, node, attempt, t) -> None:
            if node.id == "a" and attempt == 2:
                seen["expected"] = state.expected_end()
                seen["started"] = t

    p.run(progress=False, listeners=[state, Retried()])
    p50, p95 = seen["expected"]
    # a's retry began at ~0.3 s: a ends at (retry start) + 5 s, b 20 s after; before, ~0 + 20 s
    assert p50 == p95 and 25.0 < p50 <= seen["started"] + 5.0 + 20.0, (seen, p50)


def test_run_history_says_why_there_is_no_expected_end():
    """A pipeline whose timing depends on more than durations (here a condition on a variable)
    gets no estimate: the run showed none and said nothing."""
    p = nbp.Pipeline("eta", variables={"go": "yes"})
    with p.stage("s") as s:
        s.step("a", run=lambda: None)
        s.step("b", run=lambda: None, when='<+pipeline.variables.go> == "yes"')
    why = r"no expected end for 'eta'.*steps\.b has a condition"
    with pytest.warns(nbp.HistoryDurationsWarning, match=why):
        trace = p.run(history=_history(p.plan()), progress=True, report=False)
    assert set(trace.loc[trace["kind"] == "step", "status"]) == {"Success"}
