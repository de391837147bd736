"""The widgets, driven headless: the live run view, the run handle (cancel, manual intervention),
the timeline scrubber and the trace explorer (issue 13); and the text progress of a run outside
a notebook, which runs no widget code.

Widgets are made without a frontend (ipywidgets then uses no kernel comm) and read through
their traits; buttons are pressed with ``.click()``. Waiting for a run is bounded by generous
guards (``until``), never by a wall-clock threshold on what is tested.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import row, sleeper, status

import notebook_pipelines as nbp
from notebook_pipelines.views.live import LiveView
from notebook_pipelines.views.progress import RunState
from notebook_pipelines.views.replay import FRAMES, WAITING
from notebook_pipelines.views.throttle import Throttle

ROOT = Path(__file__).resolve().parents[1]
GUARD = 20.0  # seconds: "it happens at all", never a measure


def until(condition, what: str, guard: float = GUARD) -> None:
    """Wait until ``condition()`` is true (fail with ``what`` after ``guard`` seconds)."""
    end = time.monotonic() + guard
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def waits_for(event: threading.Event):
    """A body that waits (cancellably) until ``event`` is set."""

    def body(ctx: nbp.StepContext) -> None:
        deadline = time.monotonic() + GUARD
        while not event.is_set() and not ctx.cancelled and time.monotonic() < deadline:
            ctx.sleep(0.01)

    return body


def _running(handle, step_id: str) -> bool:
    with handle.state.lock:
        return any(node.id == step_id for node, _, _ in handle.state.running.values())


def started_while_long_runs(*after: str, **start):
    """A run started in the background: its step ``long`` waits (cancellably) for an event nobody
    sets, the quick steps ``after`` follow it. Returns ``(handle, view)`` once ``long`` runs."""
    p = nbp.Pipeline("bg")
    with p.stage("s") as s:
        s.step("long", run=waits_for(threading.Event()))
        for name in after:
            s.step(name, run=sleeper(0.001))
    handle = p.start(progress=False, **start)
    view = handle.view()
    until(lambda: _running(handle, "long"), "the long step to run")
    return handle, view


# -- the live view -------------------------------------------------------------------------------
def test_live_view_progress_increases_while_the_run_goes_and_ends_in_the_final_state():
    shown_one = threading.Event()
    p = nbp.Pipeline("live")
    with p.stage("s") as s:
        s.step("a", run=sleeper(0.01, "a says hi"))
        s.step("b", run=waits_for(shown_one))  # runs until the view has shown a's end
        s.step("c", run=sleeper(0.01))
    state = RunState(p.plan())
    view = LiveView(state)
    values: list[int] = []

    def seen(change: dict) -> None:
        values.append(change["new"])
        if change["new"] == 1:
            shown_one.set()

    view.progress.observe(seen, names="value")
    trace = nbp.run(p, listeners=[state], progress=False, run_id="live")

    assert shown_one.is_set(), "the view never showed 1 step done while b was running"
    assert values == sorted(values) and values[0] >= 1 and values[-1] == 3  # it only goes up
    assert view.progress.max == 3 and view.progress.value == 3
    assert view.progress.bar_style == "success"
    assert "Success" in view.header.value and "3/3 steps done" in view.header.value
    assert "Success 3" in view.counts.value
    assert "<svg" in view.picture.value and "Success" in view.picture.value
    # no kernel here, so no subshell takes a foreground run's clicks (a real kernel does:
    # tests/test_widgets_in_kernel.py): Cancel stays off, the kernel's Interrupt stops run()
    assert not view.routed and not view.interactive and view.cancel_button.disabled
    assert status(trace, "pipeline") == "Success"  # the trace is returned as before
    assert repr(view) == "<live view of a run of 'live'>"  # the notebook's text/plain


def test_live_view_shows_a_steps_captured_output_on_demand():
    p = nbp.Pipeline("out")
    with p.stage("s") as s:
        s.step("talk", run=sleeper(0.001, "hello from talk"))
    state = RunState(p.plan())
    view = LiveView(state)
    nbp.run(p, listeners=[state], progress=False)
    labels = [label for label, _ in view.step_picker.options]
    assert labels == ["(pick a finished step)", "talk (attempt 1)"]
    view.step_picker.value = view.step_picker.options[1][1]
    assert "hello from talk" in view.step_output.value


def test_throttle_updates_at_most_once_an_interval_on_its_own_thread_then_once_at_the_end():
    calls: list[str] = []
    first = threading.Event()

    def draw() -> None:
        calls.append(threading.current_thread().name)
        first.set()

    throttle = Throttle(draw, interval=600.0, name="t")
    for _ in range(100):
        throttle.poke()  # never draws here: the first poke wakes the drawing thread
    assert first.wait(GUARD)
    for _ in range(100):
        throttle.poke()  # within the interval: coalesced into one update, due in 600 s
    assert calls == ["nbp-draw-t"] and throttle.busy
    assert throttle.finish(wait=GUARD)  # the final update cuts the interval short
    assert calls == ["nbp-draw-t", "nbp-draw-t"] and not throttle.busy
    throttle.poke()
    assert len(calls) == 2 and not throttle.busy  # closed: nothing after the final update


# -- the run handle ------------------------------------------------------------------------------
def test_R21_E15_cancel_button_aborts_a_running_start_run():
    handle, view = started_while_long_runs("after", run_id="bg")
    assert not handle.done
    live = handle.trace  # the rows so far, with the step under way
    assert status(live, "long") == "Running"
    assert not view.cancel_button.disabled

    view.cancel_button.click()
    trace = handle.wait(timeout=GUARD)

    assert handle.done and handle.status == "Aborted"
    assert status(trace, "long") == "Aborted" and row(trace, "long")["reason"] == "cancelled by the user"
    assert status(trace, "after") == "NotStarted"  # D6: never started, no times
    assert status(trace, "pipeline") == "Aborted"
    assert view.cancel_button.disabled and "Aborted" in view.header.value
    assert handle.wait() is trace and handle.trace is trace


def test_R21_cancel_clicked_before_the_run_starts_stays_off_and_aborts_it_at_once():
    from notebook_pipelines.views.controller import RunHandle

    p = nbp.Pipeline("early")
    with p.stage("s") as s:
        s.step("a", run=sleeper(0.001))
    handle = RunHandle(p.plan())  # made, not started yet (start() starts it at once)
    view = handle.view()
    view.cancel_button.click()
    view.text_updates.flush()  # a redraw while the run has not ended
    assert view.cancel_button.disabled and view.cancel_button.description == "Cancelling"
    handle._thread.start()
    trace = handle.wait(timeout=GUARD)
    assert status(trace, "pipeline") == "Aborted" and status(trace, "a") in ("Aborted", "NotStarted")


def test_cancel_before_the_run_has_started_still_aborts_it():
    p = nbp.Pipeline("early")
    with p.stage("s") as s:
        s.step("x", run=waits_for(threading.Event()))
    handle = p.start(progress=False)
    handle.cancel("changed my mind")  # from this thread, at once
    trace = handle.wait(timeout=GUARD)
    assert status(trace, "pipeline") == "Aborted"
    assert status(trace, "x") in ("Aborted", "NotStarted")


def test_wait_with_a_timeout_raises_timeout_error_and_the_run_goes_on():
    release = threading.Event()
    p = nbp.Pipeline("slow")
    with p.stage("s") as s:
        s.step("x", run=waits_for(release))
    handle = p.start(progress=False)
    with pytest.raises(TimeoutError, match=r"has not ended after 0\.05s"):
        handle.wait(timeout=0.05)
    release.set()
    assert status(handle.wait(timeout=GUARD), "x") == "Success"
    assert repr(handle) == "<RunHandle 'slow' Success: 1/1 steps done>"


def flaky_pipeline(name: str, on_timeout: str = "MarkAsFailure") -> tuple[nbp.Pipeline, list]:
    calls: list[int] = []

    def flaky(ctx: nbp.StepContext) -> None:
        calls.append(ctx.attempt)
        if len(calls) == 1:
            raise nbp.StepError("disk full", error_type="Unknown")

    p = nbp.Pipeline(name)
    with p.stage("s") as s:
        s.step(
            "deploy",
            run=flaky,
            failure_strategies=nbp.ManualIntervention(
                timeout="10m", choices=("Retry", "MarkAsSuccess", "Abort")
            ),
        )
        s.step("verify", run=sleeper(0.001))
    return p, calls


def test_R20_D12_an_intervention_button_click_resumes_the_run():
    p, calls = flaky_pipeline("ask")
    handle = p.start(progress=False)
    view = handle.view()
    until(lambda: len(view.interventions.children) == 1, "the intervention buttons")
    box = view.interventions.children[0]
    assert [b.description for b in box.buttons] == ["Retry", "MarkAsSuccess", "Abort"]
    assert "deploy" in box.children[0].value and "disk full" in box.children[0].value
    assert (
        "times out in" in box.clock.value and "MarkAsFailure" in box.clock.value
    )  # time left, then onTimeout

    next(b for b in box.buttons if b.description == "Retry").click()
    trace = handle.wait(timeout=GUARD)

    assert calls == [1, 2]
    first, second = trace[trace.step == "deploy"].itertuples()
    assert (first.status, first.action, first.reason) == ("Failed", "Retry", "manual intervention")
    assert second.status == "Success"
    assert status(trace, "verify") == "Success" and status(trace, "pipeline") == "Success"
    assert view.interventions.children == ()  # answered: the buttons are gone


def test_R20_handle_intervene_answers_from_code_by_id_or_fqn():
    p, calls = flaky_pipeline("ask_code")
    handle = p.start(progress=False)
    until(lambda: handle.requests, "the intervention")
    assert status(handle.trace, "deploy") == "InterventionWaiting"  # the rows so far say so
    with pytest.raises(ValueError, match="no manual intervention of 'verify' waits; waiting now: deploy"):
        handle.intervene("verify", "Retry")
    with pytest.raises(ValueError, match="is not one of Retry, MarkAsSuccess, Abort"):
        handle.intervene("deploy", "Ignore")
    handle.intervene("pipeline.stages.s.spec.execution.steps.deploy", "MarkAsSuccess")
    trace = handle.wait(timeout=GUARD)
    assert calls == [1]
    assert (
        status(trace, "deploy") == "Success"
        and row(trace, "deploy")["reason"] == "manual intervention: MarkAsSuccess"
    )


# -- the timeline scrubber -----------------------------------------------------------------------
def release_pipeline() -> nbp.Pipeline:
    p = nbp.Pipeline("release")
    with p.stage("build") as build:
        build.step("checkout", duration="10s")
        with build.parallel():
            build.step("unit", duration="30s")
            build.step("lint", duration="20s")
        build.step("package", duration="5s")
    return p


def test_replay_at_three_moments_of_a_seeded_simulation_shows_each_nodes_state():
    p = release_pipeline()
    trace = p.simulate(
        seed=7, run_id="replay"
    )  # by hand: checkout 0–10, unit 10–40, lint 10–30, package 40–45
    scrubber = nbp.replay(trace, pipeline=p)

    def shown() -> dict[str, str]:
        return {fqn.rsplit(".", 1)[-1]: s for fqn, s in scrubber.states.items() if ".steps." in fqn}

    scrubber.slider.value = 5.0
    assert shown() == {"checkout": "Running", "unit": WAITING, "lint": WAITING, "package": WAITING}
    assert "<b>5s</b> of 45s" in scrubber.clock.value and "00:00:05 UTC" in scrubber.clock.value
    scrubber.slider.value = 35.0
    assert shown() == {"checkout": "Success", "unit": "Running", "lint": "Success", "package": WAITING}
    assert "Running" in scrubber.picture.value  # the picture is redrawn as of that moment
    scrubber.play.value = FRAMES  # the play button's last frame: the end of the run
    assert scrubber.slider.value == 45.0
    assert set(shown().values()) == {"Success"} and scrubber.states[trace.fqn[0]] == "Success"


def _drawn(svg: str, step: str) -> list[str]:
    """The text lines of ``step``'s box in a picture (its name, then its status line)."""
    for node in re.findall(r'<g id="[^"]*" class="node">.*?</g>', svg, re.S):
        if re.search(rf'steps\.{step}(&#10;|")', node):
            return re.findall(r"<text[^>]*>(.*?)</text>", node)
    raise AssertionError(f"no box for {step!r} in the picture")


def test_replay_picture_shows_the_time_of_the_sliders_moment_not_a_cached_one():
    """A running step's time grows with the clock: at 15 s and at 25 s the states are the same
    (checkout done, unit and lint running, package waiting), but unit has run 5 s, then 15 s."""
    p = release_pipeline()
    trace = p.simulate(run_id="replay-times")  # checkout 0–10, unit 10–40, lint 10–30, package 40–45
    scrubber = nbp.replay(trace, pipeline=p)
    for t, unit, lint in ((15.0, "5s", "5s"), (25.0, "15s", "15s"), (35.0, "25s", None)):
        scrubber.slider.value = t
        assert f"<b>{int(t)}s</b> of 45s" in scrubber.clock.value
        assert _drawn(scrubber.picture.value, "unit")[1:] == [unit]  # 15 − 10 = 5, 25 − 10 = 15, 35 − 10 = 25
        if lint is not None:
            assert _drawn(scrubber.picture.value, "lint")[1:] == [lint]
    assert _drawn(scrubber.picture.value, "lint")[1:] == ["20s"]  # ended at 30 s: 30 − 10 = 20
    scrubber.slider.value = 15.0  # back to an earlier moment: its own picture again
    assert _drawn(scrubber.picture.value, "unit")[1:] == ["5s"]


def test_replay_of_a_simulation_finds_its_pipeline_as_for_a_real_run():
    p = release_pipeline()
    trace = p.simulate()
    scrubber = nbp.replay(trace)  # issue 23: simulations are remembered like real runs
    assert scrubber.plan.pipeline is p and repr(scrubber) == "<replay of 'release'>"
    steps_only = trace[trace["kind"] == "step"]  # a filtered trace keeps its run's key
    assert nbp.replay(steps_only).plan.pipeline is p


def test_replay_of_a_trace_this_kernel_does_not_know_says_to_pass_the_pipeline(tmp_path):
    trace = release_pipeline().simulate(run_id="nameless")
    trace.to_parquet(tmp_path / "t.parquet")
    back = nbp.read_trace(tmp_path / "t.parquet").assign(run_id="from-a-file")
    with pytest.raises(nbp.PipelineError, match=r"nbp.replay\(trace, pipeline=p\)"):
        nbp.replay(back)
    other = nbp.Pipeline("other")
    with other.stage("s") as s:
        s.step("x")
    with pytest.raises(nbp.PipelineError, match="this trace is not of pipeline 'other'"):
        nbp.replay(trace, pipeline=other)


def test_replay_of_a_real_run_finds_its_pipeline():
    p = nbp.Pipeline("real")
    with p.stage("s") as s:
        s.step("a", run=sleeper(0.001))
    trace = p.run(progress=False)
    scrubber = nbp.replay(trace)
    scrubber.slider.value = scrubber.slider.max
    assert scrubber.states[row(trace, "a")["fqn"]] == "Success"
    assert repr(scrubber) == "<replay of 'real'>"


# -- the trace explorer --------------------------------------------------------------------------
def test_explorer_filters_by_status_and_stage_and_shows_a_nodes_attempts_error_and_log():
    p = nbp.Pipeline("x")
    with p.stage("build") as build:
        build.step("compile", failure_strategies=nbp.Retry(1))
        build.step("test")
    with p.stage("ship", when="All") as ship:  # runs after a failure (R29)
        ship.step("push")
    trace = p.simulate(failures={"compile": True}, run_id="explore")
    ex = nbp.explore(trace)

    ex.status.value = "Failed"
    assert [label.strip() for label, _ in ex.node.options] == [
        "pipeline — pipeline, Failed",
        "build — stage, Failed",
        "compile — step, Failed",
    ]
    ex.node.value = row(trace, "compile")["fqn"]
    details = ex.details.value
    assert "injected failure (attempt 1)" in details and "injected failure (attempt 2)" in details  # errors
    assert details.count("<tr>") == 2 and "<th>duration_s</th>" in details  # one row per attempt, timings
    ex.status.value = "(all)"
    ex.stage.value = "ship"
    assert [label.strip() for label, _ in ex.node.options] == [
        "ship — stage, Success",
        "push — step, Success",
    ]
    assert ex.node.value == row(trace, "ship")["fqn"]  # the picked node left: the first one
    assert "<b>ship</b> (stage)" in ex.details.value


# -- outside a notebook ----------------------------------------------------------------------------
SCRIPT = textwrap.dedent(
    """
    import sys
    import notebook_pipelines as nbp
    p = nbp.Pipeline("plain")
    with p.stage("s") as s:
        s.step("a", run=lambda: None)
        s.step("b", run=lambda: None)
    nbp.simulate(p)
    p.run(progress=PROGRESS)
    loaded = sorted(m for m in ("ipywidgets", "IPython", "notebook_pipelines.views.live") if m in sys.modules)
    print("loaded:", loaded)
    """
)


def run_script(progress: str, stderr=subprocess.PIPE) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT.replace("PROGRESS", progress)],
        stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, timeout=120, check=True,
    )  # fmt: skip


@pytest.mark.parametrize("progress", ["None", "True"])
def test_outside_a_notebook_run_prints_one_line_of_text_progress_and_runs_no_widget_code(progress):
    done = run_script(progress)  # stderr is a pipe, as in CI: the default shows progress too
    assert done.stdout.strip() == "loaded: []"  # no ipywidgets, no IPython, no live view
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("plain: 2/2 steps done · Success 2 · ")
    assert lines[0].endswith(" · Success")
    assert "\r" not in done.stderr  # off a terminal: plain lines, nothing redrawn in place


def test_outside_a_notebook_progress_false_is_quiet():
    done = run_script("False")
    assert done.stderr == "" and done.stdout.strip() == "loaded: []"


def test_outside_a_notebook_the_default_draws_the_line_in_place_on_a_terminal():
    import pty

    leader, follower = pty.openpty()
    try:
        done = run_script("None", stderr=follower)
        os.close(follower)
        follower = -1
        out = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    text = out.decode("utf-8")
    assert done.stdout.strip() == "loaded: []"
    assert (
        text.startswith("\r")
        and "plain: 2/2 steps done · Success 2" in text
        and text.rstrip().endswith("Success")
    )


# -- issue 30: what a view says after a cancel, a refusal, and of steps that share an id ------------
def test_R21_after_a_cancel_the_header_counts_only_the_steps_that_ran_and_the_button_says_cancelled():
    handle, view = started_while_long_runs("after0", "after1", "after2", "after3", run_id="bg-cancel")
    view.cancel_button.click()
    trace = handle.wait(timeout=GUARD)
    assert view.wait(GUARD)
    view.text_updates.flush()
    # `long` ran (Aborted); the four after it never started (NotStarted): 1 of 5 steps done
    assert list(trace[trace.kind == "step"].status) == ["Aborted"] + ["NotStarted"] * 4
    assert "1/5 steps done" in view.header.value, view.header.value
    assert view.progress.value == 1
    assert view.cancel_button.description == "Cancelled" and view.cancel_button.disabled


def test_R21_a_cancel_from_code_leaves_the_button_saying_cancelled_too():
    handle, view = started_while_long_runs("after")
    handle.cancel("changed my mind")
    handle.wait(timeout=GUARD)
    assert view.wait(GUARD)
    view.text_updates.flush()
    assert handle.cancelled == "changed my mind"
    assert view.cancel_button.description == "Cancelled" and view.cancel_button.disabled
    assert "1/2 steps done" in view.header.value  # `after` never started


def test_a_run_refused_before_it_starts_closes_its_view_with_the_refusal():
    class Refusing:  # an executor that refuses the run when it opens (a Dask cluster without gpu)
        name, clock, runs_handlers = "refusing", None, True

        def open(self, run):
            raise nbp.DefinitionError(
                [nbp.Problem("pipeline.stages.s", "R62", "no worker offers gpu", "start one")]
            )

        def submit(self, job): ...
        def cancel(self, job): ...
        def close(self, cancel): ...

    p = nbp.Pipeline("checks")
    with p.stage("s") as s:
        s.step("train", run=sleeper(0.001))
    state = RunState(p.plan())
    view = LiveView(state)
    with pytest.raises(nbp.DefinitionError):
        nbp.run(p, listeners=[state], progress=False, executor=Refusing())
    assert view.wait(GUARD)
    assert "Queued" not in view.header.value
    assert "not started: 1 problem in the pipeline definition" in view.header.value, view.header.value
    assert view.cancel_button.disabled
    # a view made after the refusal (a handle's view shown late) says the same
    late = LiveView(state)
    assert late.header.value == view.header.value and late.cancel_button.disabled


def test_the_output_picker_names_steps_that_share_an_id_by_their_stage():
    p = nbp.Pipeline("regions")
    with p.parallel():
        for region in ("eu", "us"):
            p.stage(f"deploy_{region}").step("rollout", run=sleeper(0.001, f"rolled {region}"))
    p.stage("announce").step("post", run=sleeper(0.001, "posted"))
    state = RunState(p.plan())
    view = LiveView(state)
    nbp.run(p, listeners=[state], progress=False)
    view.text_updates.flush()
    labels = sorted(label for label, _ in view.step_picker.options[1:])
    assert labels == [
        "deploy_eu › rollout (attempt 1)",
        "deploy_us › rollout (attempt 1)",
        "post (attempt 1)",
    ]


# -- what the text progress says (issue 23 item 9) --------------------------------------------------
class Terminal(io.StringIO):
    """What a terminal receives (stdout and stderr both), reporting itself a terminal."""

    def isatty(self) -> bool:
        return True

    def screen(self) -> list[str]:
        """The lines as a terminal shows them: ``\\r`` returns to the line's start, text overwrites."""
        lines: list[list[str]] = [[]]
        col = 0
        for ch in self.getvalue():
            if ch == "\n":
                lines.append([])
                col = 0
            elif ch == "\r":
                col = 0
            else:
                line = lines[-1]
                line[col : col + 1] = [ch]
                col += 1
        return ["".join(line).rstrip() for line in lines if "".join(line).strip()]


def test_text_progress_ends_with_the_traces_makespan_not_the_time_to_build_the_trace(monkeypatch):
    from notebook_pipelines.definition.durations import format_duration

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    p = nbp.Pipeline("timed")
    with p.stage("s") as s:
        s.step("a", run=sleeper(0.03))
    trace = p.run()
    makespan = float(trace.loc[trace["kind"] == "pipeline", "duration_s"].iloc[0])
    assert term.screen()[-1] == f"timed: 1/1 steps done · Success 1 · {format_duration(makespan)} · Success"


def test_text_progress_drawn_in_place_does_not_glue_a_steps_printed_line_to_it(monkeypatch):
    term = Terminal()
    monkeypatch.setattr(sys, "stdout", term)
    monkeypatch.setattr(sys, "stderr", term)

    def unit() -> None:
        time.sleep(0.05)  # the progress line is drawn first
        print("unit says hello")

    p = nbp.Pipeline("printing")
    with p.stage("s") as s:
        s.step("unit", run=unit)
        s.step("lint", run=lambda: print("lint", end=""))  # a line without its newline
    p.run()
    lines = term.screen()
    assert "unit says hello" in lines  # on a line of its own
    assert "lint" in lines
    assert lines[-1].startswith("printing: 2/2 steps done · Success 2 · ")
    assert sys.stdout is term and sys.stderr is term  # the guard is gone after the run


def test_replay_of_a_runs_partial_trace_finds_its_pipeline_while_the_run_goes():
    release = threading.Event()
    p = nbp.Pipeline("going")
    with p.stage("s") as s:
        s.step("a", run=waits_for(release))
    handle = p.start(progress=False)
    try:
        until(lambda: handle.status == "Running" and len(handle.trace), "the run to start")
        scrubber = nbp.replay(handle.trace)  # the run is remembered from its start
        assert scrubber.plan is handle.plan
    finally:
        release.set()
        handle.wait(GUARD)
