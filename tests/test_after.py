"""The ``after`` column (issue 26): the nodes each node waited for, filled by ``run()``,
``simulate()`` and the Harness loader, kept by ``read_trace``, followed by the critical path."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import notebook_pipelines as nbp
from notebook_pipelines.analysis.timing import critical_path, slack
from notebook_pipelines.formats.harness_executions import load_harness_execution

CD = Path(__file__).parent / "fixtures" / "harness_executions" / "cd_parallel.json"
S = "pipeline.stages.s.spec.execution.steps."


def short(fqns) -> list[str]:
    return [f.replace("pipeline.stages.", "").replace("spec.execution.steps.", "") for f in fqns]


def layout() -> nbp.Pipeline:
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        _ = s.step("a", duration=2)
        with s.parallel():
            _ = s.step("b", duration=5)
            _ = s.step("c", duration=1)
        _ = s.step("d", duration=1)
    with p.stage("t", strategy=nbp.Matrix(os=["x", "y"])) as t:
        _ = t.step("e", duration=1)
        _ = t.step("f", duration=1)
    return p


def after_by_fqn(trace: pd.DataFrame) -> dict[str, list[str]]:
    return {short([f])[0]: short(a) for f, a in zip(trace["fqn"], trace["after"])}  # tuples → lists


def test_R4_R5_simulate_fills_after_from_the_plans_serial_and_parallel_order():
    got = after_by_fqn(layout().simulate())
    assert got == {
        "pipeline": [],
        "s": [],
        "s.a": [],  # first of its list: waits only for its stage to start
        "s.b": ["s.a"],  # a parallel block waits for the item before it
        "s.c": ["s.a"],
        "s.d": ["s.b", "s.c"],  # after a parallel block: every branch
        "t": ["s"],
        "t_0": [],  # a looping iteration waits for nothing but its looped node (R46)
        "t_0.e": [],
        "t_0.f": ["t_0.e"],  # the copies' own fqns, not the plan's
        "t_1": [],
        "t_1.e": [],
        "t_1.f": ["t_1.e"],
    }


def test_R24_run_fills_after_and_a_retried_steps_attempts_share_it():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 2:
            raise RuntimeError("once")

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        _ = s.step("a", lambda: None)
        _ = s.step("b", flaky, failure_strategies=nbp.Retry(1))
    trace = p.run(progress=False)
    rows = trace[trace["step"] == "b"]
    assert list(rows["attempt"]) == [1, 2]
    assert list(rows["after"]) == [(S + "a",), (S + "a",)]
    assert list(trace[trace["step"] == "a"]["after"]) == [()]


def test_harness_loader_fills_after_from_the_graphs_blocks():
    got = after_by_fqn(load_harness_execution(CD, attempts=CD.with_name("cd_parallel.attempts.json")))
    assert got["build.tests.steps.report"] == ["build.tests.steps.unit", "build.tests.steps.lint"]
    assert got["build.tests.steps.unit"] == []
    assert got["build.package"] == ["build.tests"]
    assert got["deploy_eu"] == ["build"] and got["deploy_us"] == ["build"]
    assert got["deploy_us.verify"] == ["deploy_us.smoke"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_after_round_trips_through_read_trace(tmp_path, suffix):
    trace = layout().simulate()
    path = tmp_path / f"run{suffix}"
    trace.to_csv(path, index=False) if suffix == ".csv" else trace.to_parquet(path)
    back = nbp.read_trace(path)
    assert list(back["after"]) == list(trace["after"])  # tuples again, not lists or arrays


def test_a_trace_saved_before_after_existed_reads_back_with_after_none(tmp_path):
    trace = layout().simulate().drop(columns="after")
    trace.to_csv(tmp_path / "old.csv", index=False)
    back = nbp.read_trace(tmp_path / "old.csv")
    assert list(back.columns) == list(nbp.COLUMNS) and back["after"].isna().all()
    assert list(critical_path(back)["step"]) == ["a", "b", "d", "e", "f"]


def dag_trace() -> pd.DataFrame:
    """a(2) ‖ e(20), then c(8) — retimed as a DAG where c needs only a (a GitHub ``needs``).

    With the DAG: a 0→2, c 2→10, e 0→20; the run ends at 20, with e. The critical path is e
    alone; a and c may grow by 20 − 10 = 10 s. The blocks alone would end the stage with its
    last block (c, at 10) and put a → c on the path.
    """
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        with s.parallel():
            _ = s.step("a", duration=2)
            _ = s.step("e", duration=20)
        _ = s.step("c", duration=8)
    trace = p.simulate()
    times = {"a": (0, 2), "e": (0, 20), "c": (2, 10)}
    for step, (start, end) in times.items():
        row = trace["step"] == step
        trace.loc[row, ["start_s", "end_s"]] = [float(start), float(end)]
        trace.loc[row, "duration_s"] = float(end - start)
    trace.loc[trace["kind"] != "step", "end_s"] = 20.0
    c = trace.index[trace["step"] == "c"]
    trace.loc[c, "after"] = pd.Series([(S + "a",)], index=c)
    return trace


def test_critical_path_follows_after_on_a_dag():
    trace = dag_trace()
    assert list(critical_path(trace)["step"]) == ["e"]
    assert slack(trace).set_index("step")["slack_s"].to_dict() == {"a": 10.0, "e": 0.0, "c": 10.0}


def test_without_after_the_blocks_decide_as_before():
    trace = dag_trace()
    trace["after"] = None
    assert list(critical_path(trace)["step"]) == ["a", "c"]
