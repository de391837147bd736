"""The progress count (text line and live view) of runs with looped nodes (R48–R50).

A looped node counts as its plan steps until its iterations are known; then its iterations'
steps replace it (RunState's docstring says why). ``done`` never exceeds ``planned``.
"""

from __future__ import annotations

import notebook_pipelines as nbp
from notebook_pipelines.definition.looping import Matrix, Repeat
from notebook_pipelines.views.live import LiveView
from notebook_pipelines.views.progress import RunState, text_line


class Watch(RunState):
    """A RunState that records ``(done, planned)`` after every event."""

    def __init__(self, plan):
        super().__init__(plan)
        self.seen: list[tuple[int, int]] = []
        self.observers.append(lambda final: self.seen.append((self.done_steps, self.planned)))


def looped_pipeline() -> nbp.Pipeline:
    p = nbp.Pipeline("looped")
    with p.stage("s") as s:
        s.step("a", duration=1)
        s.step("b", duration=1, strategy=Matrix(x=[1, 2, 3], max_concurrency=1))  # a Matrix step
        with s.step_group("g", strategy=Repeat(times=2)) as g:  # a Repeat step group ...
            g.step("c", duration=1)
            g.step("d", duration=1, strategy=Repeat(times=3))  # ... with a nested loop
    p.stage("t", strategy=Repeat(times=2)).step("e", duration=1)  # a looped stage
    return p


def test_R49_R50_progress_counts_iterations_in_place_of_the_looped_nodes():
    p = looped_pipeline()
    state = Watch(p.plan())
    # before the run: each looped node counts as its plan steps: a, b, c, d, e
    assert state.planned == 5
    p.simulate(listeners=[state])
    # a 1 + b 3 iterations + g 2 × (c 1 + d 3 iterations) + t 2 × e 1 = 1 + 3 + 8 + 2 = 14
    assert (state.done_steps, state.planned) == (14, 14)
    assert state.counts() == {"Success": 14}  # the looped steps themselves are not counted
    assert text_line(state, elapsed=1.0).startswith("looped: 14/14 steps done · Success 14")
    assert all(done <= planned for done, planned in state.seen), state.seen


def test_R49_progress_total_is_known_when_the_loop_expands_not_as_iterations_start():
    p = nbp.Pipeline("m")
    p.stage("s").step("b", duration=1, strategy=Matrix(x=[1, 2, 3, 4], max_concurrency=1))
    state = Watch(p.plan())
    p.simulate(listeners=[state])
    # 1 planned until b starts; then its 4 iterations (one at a time) count, never more
    planned = [planned for _, planned in state.seen]
    assert planned[0] == 1 and set(planned) == {1, 4} and planned == sorted(planned)
    assert all(planned == 4 for done, planned in state.seen if done > 0)  # known before any ends
    assert [done for done, _ in state.seen] == sorted(done for done, _ in state.seen)
    assert state.seen[-1] == (4, 4)


def test_R50_live_view_progress_bar_and_header_count_iterations():
    p = nbp.Pipeline("live")
    with p.stage("s") as s:
        s.step("a", run=lambda: None)
        s.step("b", run=lambda: None, strategy=Repeat(times=3))
    state = RunState(p.plan())
    view = LiveView(state)
    nbp.run(p, listeners=[state], progress=False, run_id="live-loops")
    # a 1 + b's 3 iterations = 4; the looped step b is not a fifth
    assert view.progress.max == 4 and view.progress.value == 4
    assert "4/4 steps done" in view.header.value
    assert "Success 4" in view.counts.value


def test_R19_a_retried_group_expands_its_loop_again_and_the_new_iterations_replace_the_old():
    tries: list[int] = []

    def fails_once() -> None:
        tries.append(1)
        if len(tries) == 1:
            raise RuntimeError("once")

    p = nbp.Pipeline("retry")
    with p.stage("s") as s, s.step_group("g", failure_strategies=nbp.RetryStepGroup(1)) as g:
        g.step("each", run=lambda: None, strategy=Repeat(times=2))
        g.step("f", run=fails_once)
    state = Watch(p.plan())
    nbp.run(p, listeners=[state], progress=False)
    # each's 2 iterations + f = 3, however many times the group ran (before: 5/4)
    assert (state.done_steps, state.planned) == (3, 3)
    assert all(done <= planned for done, planned in state.seen), state.seen


# -- rollback steps count when they run (R35–R41) ------------------------------------------------
def rollback_pipeline() -> nbp.Pipeline:
    p = nbp.Pipeline("r")
    with p.stage("s", failure_strategies=nbp.StageRollback()) as s:
        s.step("a", duration=1)
        s.step("b", duration=1)
        with s.rollback():
            s.step("undo", duration=1)
            s.step("undo_hosts", duration=1, strategy=Matrix(host=["h1", "h2", "h3"]))
    return p


def test_R37_a_run_that_needs_no_rollback_ends_with_all_its_steps_done():
    p = rollback_pipeline()
    state = Watch(p.plan())
    assert state.planned == 2  # a, b: the rollback list runs only if a strategy asks for it
    trace = p.simulate(listeners=[state])
    # the trace keeps the rollback steps, NotStarted; the progress does not count them
    assert set(trace[trace.phase == "rollback"].status) == {"NotStarted"}
    assert (state.done_steps, state.planned, state.counts()) == (2, 2, {"Success": 2})
    assert text_line(state).startswith("r: 2/2 steps done")
    assert all(done <= planned for done, planned in state.seen)


def test_R37_R49_a_stage_rollback_that_runs_joins_the_count_its_looped_step_as_its_iterations():
    p = rollback_pipeline()
    state = Watch(p.plan())
    p.simulate(listeners=[state], failures={"b": True})
    # a, b (Failed), then the rollback list: undo + undo_hosts' 3 iterations = 2 + 1 + 3 = 6
    assert (state.done_steps, state.planned) == (6, 6)
    assert state.counts() == {"Success": 5, "Failed": 1}
    assert all(done <= planned for done, planned in state.seen)
