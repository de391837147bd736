"""Barriers in real runs (SEMANTICS R55–R58, E11; issue 23 item 1): on threads and from the CLI.

A Barrier step runs no body: the scheduler itself keeps the participant waiting (a wait like a
retry interval's, so it is interruptible and its timeout counts). Each test runs the same
pipeline for real and simulated (every step has a body *and* the duration its body takes) and
checks that both give the same rows — statuses, attempts, error types, the order of events —
and times that agree within a generous tolerance. The Dask executor's test is in
``tests/test_dask.py`` (it needs that module's cluster).
"""

from __future__ import annotations

import _thread
import threading
import time

import pandas as pd
import pytest
from conftest import row, status

import notebook_pipelines as nbp
from notebook_pipelines.frontends.cli import main
from notebook_pipelines.views.progress import RunState

GUARD = 20.0  # seconds: a hang guard, never a measure
A = "pipeline.stages.a.spec.execution.steps"
B = "pipeline.stages.b.spec.execution.steps"
#: real times may lag the simulated ones by this much (thread hand-offs on a shared machine);
#: the pipelines' events are at least 0.3 s apart, so the order of events stays unambiguous
SLACK = 0.2


def sleeps(seconds: float):
    def body(ctx: nbp.StepContext) -> None:
        ctx.sleep(seconds)

    return body


def fails_after(seconds: float):
    def body(ctx: nbp.StepContext) -> None:
        ctx.sleep(seconds)
        raise nbp.StepError("b could not prepare", error_type="Unknown")

    return body


def meeting(prep_a: float = 0.1, prep_b: float = 0.4, b_fails: bool = False, timeout="1h") -> nbp.Pipeline:
    """Stages a and b in parallel: ``prep`` (a body that takes its declared duration), the
    barrier ``ready``, then ``go`` (0.3 s)."""
    p = nbp.Pipeline("meet", barriers=["ready"])
    with p.parallel():
        for sid, prep in (("a", prep_a), ("b", prep_b)):
            with p.stage(sid) as s:
                body = fails_after(prep) if (b_fails and sid == "b") else sleeps(prep)
                s.step("prep", run=body, duration=prep)
                s.step("meet", type="Barrier", spec={"barrierRef": "ready"}, timeout=timeout)
                s.step("go", run=sleeps(0.3), duration=0.3)
    return p


COLUMNS = ["fqn", "kind", "attempt", "status", "error_type"]


def same_as_simulation(
    p: nbp.Pipeline, real: pd.DataFrame, slack: float = SLACK, **simulate: object
) -> pd.DataFrame:
    """Assert ``real`` has the simulation's rows and times within ``slack`` of the simulated
    ones; return the simulated trace."""
    sim = p.simulate(**simulate)
    pd.testing.assert_frame_equal(
        real[COLUMNS].reset_index(drop=True).astype(str), sim[COLUMNS].reset_index(drop=True).astype(str)
    )
    # times: each real start/end within the slack of the simulated one (events keep their order)
    for col in ("start_s", "end_s"):
        gap = (real[col].astype(float) - sim[col].astype(float)).abs()
        assert (gap.fillna(0) < slack).all(), (col, list(zip(real["fqn"], real[col], sim[col], strict=True)))
    return sim


def test_R56_a_real_run_waits_at_the_barrier_and_leaves_together_as_simulated():
    p = meeting()
    real = p.run(progress=False, report=False)
    sim = same_as_simulation(p, real)
    # by hand: a arrives at 0.1, b at 0.4, both leave at 0.4; both `go` end at 0.7
    assert (row(sim, f"{A}.meet")["start_s"], row(sim, f"{A}.meet")["end_s"]) == (0.1, 0.4)
    meet_a, meet_b = row(real, f"{A}.meet"), row(real, f"{B}.meet")
    assert meet_a["end_s"] >= row(real, f"{B}.prep")["end_s"]  # a waited for b's arrival
    assert abs(meet_a["end_s"] - meet_b["end_s"]) < SLACK  # and both left together
    assert row(real, f"{A}.go")["start_s"] >= row(real, f"{B}.prep")["end_s"]
    assert meet_a["worker"] == "barrier" and set(real["status"]) == {"Success"}


def test_R57_E11_a_participant_failing_before_the_barrier_fails_the_waiting_one_at_once():
    p = meeting(b_fails=True)  # the barrier's timeout is 1h: only E11 can end a's wait
    started = time.monotonic()
    real = p.run(progress=False, report=False)
    assert time.monotonic() - started < GUARD
    same_as_simulation(p, real, failures={f"{B}.prep": "Unknown"})
    meet = row(real, f"{A}.meet")
    assert meet["status"] == "Failed" and meet["error_type"] == "Unknown"
    assert f"{B}.meet ended Skipped before reaching barrier 'ready'" in meet["error"]
    assert abs(meet["end_s"] - row(real, f"{B}.prep")["end_s"]) < SLACK  # at once, not by timeout
    assert status(real, f"{A}.go") == "Skipped" and status(real, "pipeline") == "Failed"


def test_R57_a_barrier_timeout_while_waiting_is_a_failure_that_fails_the_late_participant():
    p = meeting(prep_a=0.1, prep_b=0.9, timeout=0.4)
    real = p.run(progress=False, report=False)
    same_as_simulation(p, real)
    meet = row(real, f"{A}.meet")  # a arrives at 0.1 and gives up at 0.5
    assert meet["status"] == "Expired" and meet["error_type"] == "Timeout"
    assert "timed out after 0.4s waiting at barrier 'ready'" in meet["error"]
    assert abs(meet["end_s"] - 0.5) < SLACK
    late = row(real, f"{B}.meet")  # b arrives at 0.9 at a broken barrier: it fails at once
    assert late["status"] == "Failed" and late["end_s"] - late["start_s"] < SLACK


def test_R58_every_iteration_of_a_looped_group_meets_at_the_barrier_in_a_real_run():
    p = nbp.Pipeline("loop", barriers=["ready"], rules="current")
    with p.stage("s") as s, s.step_group("g", strategy=nbp.Repeat(items=[0.1, 0.4])) as g:
        g.step("work", run=lambda t: time.sleep(float(t)), inputs={"t": "<+repeat.item>"})
        g.step("meet", type="Barrier", spec={"barrierRef": "ready"})
    real = p.run(progress=False, report=False)
    meets = real[real["step"] == "meet"].sort_values("start_s")
    assert list(meets["status"]) == ["Success", "Success"]
    assert meets["end_s"].iloc[0] >= meets["start_s"].iloc[1]  # the first waited for the second


def _waiting_at(state, fqn: str) -> bool:
    with state.lock:
        return any(node.fqn == fqn for node, _, _ in state.running.values())


def test_R21_cancelling_a_run_while_a_participant_waits_at_the_barrier_aborts_it_at_once():
    p = meeting(prep_b=30.0)  # b would arrive after 30 s
    handle = p.start(progress=False)
    deadline = time.monotonic() + GUARD
    while not _waiting_at(handle.state, f"{A}.meet"):
        assert time.monotonic() < deadline, "a never reached the barrier"
        time.sleep(0.01)
    handle.cancel("stop waiting")
    trace = handle.wait(timeout=GUARD)
    meet = row(trace, f"{A}.meet")
    assert meet["status"] == "Aborted" and meet["reason"] == "stop waiting"
    assert status(trace, f"{B}.prep") == "Aborted" and status(trace, "pipeline") == "Aborted"
    assert meet["end_s"] < 10  # ended by the cancel, long before b could arrive


def test_an_interrupt_while_a_participant_waits_at_the_barrier_ends_the_run_with_its_trace():
    assert threading.current_thread() is threading.main_thread()
    p = meeting(prep_b=30.0)
    state = RunState(p.plan())

    over = threading.Event()

    def interrupt_when_waiting() -> None:
        deadline = time.monotonic() + GUARD
        while not _waiting_at(state, f"{A}.meet"):
            if over.wait(0.01) or time.monotonic() > deadline:
                return  # the run ended (or never got there): the assertions below fail
        _thread.interrupt_main()  # what the kernel's Interrupt does on Windows: no signal

    helper = threading.Thread(target=interrupt_when_waiting)
    helper.start()
    try:
        with pytest.raises(nbp.RunInterrupted) as caught:
            p.run(progress=False, report=False, listeners=[state])
    finally:
        over.set()
        helper.join(GUARD)
    trace = caught.value.trace
    meet = row(trace, f"{A}.meet")
    assert meet["status"] == "Aborted" and meet["reason"] == "interrupted by the user"
    assert status(trace, f"{B}.meet") == "NotStarted" and meet["end_s"] < 10


BARRIER_YAML = """\
pipeline:
  identifier: meet
  flowControl:
    barriers:
      - {identifier: ready, name: ready}
  stages:
    - parallel:
"""


def _stage(sid: str, seconds: float) -> str:
    shell = "{shell: Bash, source: {type: Inline, spec: {script: 'sleep %s'}}}"
    return (
        f"        - stage:\n            identifier: {sid}\n            type: Custom\n"
        f"            spec:\n              execution:\n                steps:\n"
        f"                  - step: {{identifier: prep, type: ShellScript, timeout: 1m, "
        f"spec: {shell % seconds}}}\n"
        f"                  - step: {{identifier: meet, type: Barrier, timeout: 1m, "
        f"spec: {{barrierRef: ready}}}}\n"
        f"                  - step: {{identifier: go, type: ShellScript, timeout: 1m, spec: {shell % 0}}}\n"
    )


def test_R55_the_cli_runs_a_yaml_pipeline_with_barriers(tmp_path, capsys):
    path = tmp_path / "meet.yaml"
    path.write_text(BARRIER_YAML + _stage("a", 0.1) + _stage("b", 0.5))
    code = main(["run", str(path), "-q", "-o", str(tmp_path / "t.csv")])
    _out, err = capsys.readouterr()
    assert code == 0, err
    trace = nbp.read_trace(tmp_path / "t.csv")
    assert set(trace["status"]) == {"Success"}
    assert row(trace, f"{A}.meet")["end_s"] >= row(trace, f"{B}.prep")["end_s"]
    assert row(trace, f"{A}.go")["start_s"] >= row(trace, f"{B}.prep")["end_s"]
