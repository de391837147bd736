"""The trace schema: the contract every front-end and analysis relies on (D5, D6, R26).

Exact columns and order, dtypes, one row per plan node (every node present) and one per step
attempt, pipeline row first, rows in plan order then attempt, times consistent with each other.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import failing, sleeper

import notebook_pipelines as nbp
from notebook_pipelines.engine.trace import COLUMNS, STATUSES, empty_trace

pytestmark = pytest.mark.usefixtures("no_worker_leak")

EXPECTED_COLUMNS = [
    "run_id",
    "fqn",
    "parent",
    "kind",
    "phase",
    "stage",
    "step_group",
    "step",
    "block",
    "iteration",
    "attempt",
    "status",
    "reason",
    "start",
    "end",
    "start_s",
    "end_s",
    "duration_s",
    "worker",
    "error_type",
    "error",
    "action",
    "outputs",
    "log",
    "inputs",  # added by the expressions issue, after the columns the foundation fixed
    "after",  # added by the history issue (26): the nodes each node waited for
]
STRING_COLUMNS = [
    "run_id",
    "fqn",
    "parent",
    "stage",
    "step_group",
    "step",
    "reason",
    "worker",
    "error_type",
    "error",
    "action",
    "log",
]
EXPECTED_STATUSES = [
    "Success",
    "IgnoreFailed",
    "Skipped",
    "Failed",
    "Errored",
    "Expired",
    "Aborted",
    "ApprovalRejected",
    "Suspended",
    "FreezeFailed",
    "NotStarted",
    "Running",
    "Queued",
    "InterventionWaiting",
    "ResourceWaiting",
]


def flaky(ctx) -> dict:
    if ctx.attempt < 3:
        raise ConnectionError(f"attempt {ctx.attempt} failed")
    return {"attempts": ctx.attempt}


def mixed_pipeline() -> nbp.Pipeline:
    """Success, retries, a failure, skips and a rollback list that never runs."""
    p = nbp.Pipeline("mixed")
    with p.stage("build") as s:
        s.step("flaky", run=flaky, failure_strategies=nbp.Retry(2))
        with s.step_group("g") as g:
            with g.parallel():
                g.step("a", run=sleeper(0.02, text="a says hi"))
                g.step("b", run=failing("nope"))
            g.step("c", run=sleeper(0.01))
            with g.rollback():
                g.step("undo_g")
        s.step("after", run=sleeper(0.01))
        with s.rollback():
            s.step("restore")
    with p.stage("deploy") as d:
        d.step("apply", run=sleeper(0.01))
    return p


@pytest.fixture(scope="module")
def mixed() -> tuple[nbp.Pipeline, pd.DataFrame]:
    p = mixed_pipeline()
    return p, p.run(run_id="schema-run", report=False)


def test_columns_are_exactly_the_documented_list_in_order(mixed):
    _, trace = mixed
    assert list(trace.columns) == EXPECTED_COLUMNS
    assert list(COLUMNS) == EXPECTED_COLUMNS
    assert list(nbp.COLUMNS) == EXPECTED_COLUMNS


def test_dtypes_are_the_documented_ones(mixed):
    _, trace = mixed
    dtypes = trace.dtypes
    assert isinstance(dtypes["kind"], pd.CategoricalDtype)
    assert list(dtypes["kind"].categories) == ["pipeline", "stage", "step_group", "step"]
    assert isinstance(dtypes["phase"], pd.CategoricalDtype)
    assert list(dtypes["phase"].categories) == ["execution", "rollback"]
    assert isinstance(dtypes["status"], pd.CategoricalDtype)
    assert list(dtypes["status"].categories) == EXPECTED_STATUSES
    assert dtypes["block"] == pd.Int64Dtype() and dtypes["iteration"] == pd.Int64Dtype()
    assert dtypes["attempt"] == np.dtype("int64")
    for column in ("start", "end"):
        assert dtypes[column] == pd.DatetimeTZDtype("ns", "UTC"), column
    for column in ("start_s", "end_s", "duration_s"):
        assert dtypes[column] == np.dtype("float64"), column
    for column in STRING_COLUMNS:
        assert isinstance(dtypes[column], pd.StringDtype), (column, dtypes[column])
    assert dtypes["outputs"] == np.dtype("object") and dtypes["inputs"] == np.dtype("object")


def test_the_status_vocabulary_is_documented_once():
    assert list(STATUSES) == EXPECTED_STATUSES
    assert list(nbp.STATUSES) == EXPECTED_STATUSES


def test_D6_every_plan_node_has_a_row(mixed):
    p, trace = mixed
    plan = p.plan()
    assert set(trace["fqn"]) == {n.fqn for n in plan.nodes}
    counts = trace["fqn"].value_counts()
    for node in plan.nodes:
        expected = 3 if node.id == "flaky" else 1
        assert counts[node.fqn] == expected, node.fqn


def test_one_row_per_step_attempt(mixed):
    _, trace = mixed
    flaky_rows = trace[trace["step"] == "flaky"]
    assert list(flaky_rows["attempt"]) == [1, 2, 3]
    assert list(flaky_rows["status"]) == ["Failed", "Failed", "Success"]
    assert list(flaky_rows["action"].fillna("-")) == ["Retry", "Retry", "-"]
    assert list(flaky_rows["error"].fillna("-")) == [
        "ConnectionError: attempt 1 failed",
        "ConnectionError: attempt 2 failed",
        "-",
    ]
    assert flaky_rows["outputs"].iloc[-1] == {"attempts": 3}
    starts, ends = flaky_rows["start_s"].to_numpy(), flaky_rows["end_s"].to_numpy()
    assert (starts[1:] >= ends[:-1]).all()


def test_the_pipeline_row_comes_first_then_plan_order_then_attempt(mixed):
    p, trace = mixed
    assert trace["kind"].iloc[0] == "pipeline" and trace["fqn"].iloc[0] == "pipeline"
    assert (trace["kind"] == "pipeline").sum() == 1
    position = {n.fqn: n.index for n in p.plan().nodes}
    keys = list(zip(trace["fqn"].map(position), trace["attempt"]))
    assert keys == sorted(keys)
    assert list(trace.index) == list(range(len(trace)))


def test_static_columns_describe_where_each_node_sits(mixed):
    _, trace = mixed
    by = trace.drop_duplicates("fqn", keep="last").set_index("fqn")
    a = by.loc["pipeline.stages.build.spec.execution.steps.g.steps.a"]
    assert (a["parent"], a["kind"], a["phase"]) == (
        "pipeline.stages.build.spec.execution.steps.g",
        "step",
        "execution",
    )
    assert (a["stage"], a["step_group"], a["step"], a["block"]) == ("build", "g", "a", 0)
    assert pd.isna(a["iteration"])
    restore = by.loc["pipeline.stages.build.spec.execution.rollbackSteps.restore"]
    assert restore["phase"] == "rollback" and pd.isna(restore["step_group"])
    root = by.loc["pipeline"]
    assert (
        pd.isna(root["parent"])
        and pd.isna(root["stage"])
        and pd.isna(root["step"])
        and pd.isna(root["block"])
    )
    stage = by.loc["pipeline.stages.build"]
    assert (stage["kind"], stage["stage"], stage["parent"]) == ("stage", "build", "pipeline")
    assert pd.isna(stage["step"])


def test_statuses_are_from_the_vocabulary(mixed):
    _, trace = mixed
    assert set(trace["status"].astype(str)) <= set(EXPECTED_STATUSES)
    assert trace["status"].notna().all()
    by = trace.drop_duplicates("fqn", keep="last").set_index("step")
    assert by.loc["a", "status"] == "Success" and by.loc["b", "status"] == "Failed"
    assert by.loc["c", "status"] == "Skipped" and by.loc["apply", "status"] == "Skipped"
    assert by.loc["undo_g", "status"] == "NotStarted" and by.loc["restore", "status"] == "NotStarted"


def test_times_are_consistent(mixed):
    _, trace = mixed
    timed = trace[trace["start"].notna()]
    assert (timed["start"] <= timed["end"]).all()
    assert (timed["start_s"] <= timed["end_s"]).all()
    assert np.allclose(trace["duration_s"], trace["end_s"] - trace["start_s"], equal_nan=True)
    assert (trace["start"].isna() == trace["start_s"].isna()).all()
    # the wall-clock columns and the seconds-from-start columns tell the same story
    origin = timed["start"].iloc[0] - pd.Timedelta(seconds=timed["start_s"].iloc[0])
    assert np.allclose((timed["start"] - origin).dt.total_seconds(), timed["start_s"], atol=1e-6)
    assert np.allclose((timed["end"] - origin).dt.total_seconds(), timed["end_s"], atol=1e-6)
    root = timed.iloc[0]
    assert (timed["start_s"] >= root["start_s"]).all() and (timed["end_s"] <= root["end_s"]).all()


def test_D5_skipped_rows_have_attempt_zero_and_zero_duration(mixed):
    _, trace = mixed
    skipped = trace[trace["status"] == "Skipped"]
    assert len(skipped) >= 4
    assert (skipped["attempt"] == 0).all() and (skipped["duration_s"] == 0).all()
    assert skipped["reason"].notna().all()


def test_D6_not_started_rows_have_attempt_zero_and_no_times(mixed):
    _, trace = mixed
    not_started = trace[trace["status"] == "NotStarted"]
    assert len(not_started) == 2
    assert (not_started["attempt"] == 0).all()
    assert not_started[["start", "end"]].isna().all().all()
    assert not_started[["start_s", "end_s", "duration_s"]].isna().all().all()
    assert not_started["reason"].notna().all()


def test_run_id_argument_is_respected(mixed):
    _, trace = mixed
    assert (trace["run_id"] == "schema-run").all()
    assert trace.attrs["run_id"] == "schema-run" and trace.attrs["pipeline"] == "mixed"


def test_without_run_id_each_run_gets_its_own():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("x", run=sleeper(0.001))
    first, second = p.run(), p.run()
    assert first["run_id"].nunique() == 1 and second["run_id"].nunique() == 1
    assert first["run_id"].iloc[0] != second["run_id"].iloc[0]


def test_worker_log_and_error_columns(mixed):
    _, trace = mixed
    by = trace.drop_duplicates("fqn", keep="last").set_index("step")
    assert by.loc["a", "worker"].startswith("nbp-worker")
    assert by.loc["a", "log"] == "a says hi\n"
    assert by.loc["b", "error_type"] == "Unknown" and by.loc["b", "error"] == "ValueError: nope"
    assert pd.isna(by.loc["a", "error"]) and pd.isna(by.loc["a", "error_type"])


def test_an_empty_trace_and_a_simulated_trace_have_the_same_schema(mixed):
    p, trace = mixed
    assert empty_trace().dtypes.to_dict() == trace.dtypes.to_dict()
    assert len(empty_trace()) == 0
    simulated = p.simulate(run_id="sim")
    assert simulated.dtypes.to_dict() == trace.dtypes.to_dict()
    assert set(simulated["fqn"]) == set(trace["fqn"])


def test_inputs_column_holds_the_inputs_a_step_ran_with():
    def greet(ctx, who: str) -> dict:
        return {"greeting": f"hello {who}"}

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("greet", run=greet, inputs={"who": "world"})
        s.step("plain", run=sleeper(0.001))
    trace = p.run()
    by = trace.set_index("step")
    assert by.loc["greet", "inputs"] == {"who": "world"}
    assert by.loc["greet", "outputs"] == {"greeting": "hello world"}
    assert by.loc["plain", "inputs"] is None


def test_times_beyond_what_timestamps_hold_are_refused_not_wrapped_around():
    """int64 nanoseconds end in 2262: a record past that must not become a stamp in 1733."""
    import numpy as np

    from notebook_pipelines.engine.trace import Record, build_trace
    from notebook_pipelines.errors import PipelineError

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a")
    plan = p.plan()
    rows = [Record(2, None, 1, "Success", None, 0.0, 1e10, None, None, None, None, None, None, None)]
    with pytest.raises(PipelineError, match="outside what trace timestamps can hold"):
        build_trace(plan, rows, "r", int(np.datetime64("2026-01-01", "ns").view("i8")))


def test_editing_a_trace_leaves_the_next_trace_of_the_same_plan_alone():
    # the static columns are cached per plan and handed to each trace without copying strings
    p = nbp.Pipeline("edit")
    with p.stage("s") as s, s.parallel():
        s.step("a", duration=1)
        s.step("b", duration=2)
    plan = p.plan()
    first = nbp.simulate(plan)
    first.loc[0, "fqn"] = "edited"
    first.loc[1, "stage"] = "edited"
    first.loc[2, "parent"] = "edited"
    first.loc[3, "block"] = 7
    second = nbp.simulate(plan)
    assert "edited" not in set(second["fqn"]) | set(second["stage"].dropna()) | set(second["parent"].dropna())
    assert list(second["fqn"]) == [n.fqn for n in plan.nodes]
    # blocks: the pipeline none, the stage 0 (of the pipeline's list), a and b 0 (one block)
    assert second["block"].isna().sum() == 1 and set(second["block"].dropna()) == {0}


def test_a_text_column_holding_a_non_text_value_shows_it_as_text():
    # an executor may name its worker with a number: the column is text all the same, as
    # pandas writes it (the fast path, pyarrow, takes texts only and hands the rest to pandas)
    from notebook_pipelines.engine.trace import Record, build_trace

    p = nbp.Pipeline("texts")
    with p.stage("s") as s:
        s.step("a", duration=1)
    plan = p.plan()
    rows = [
        Record(n.index, None, 1, "Success", None, 0.0, 1.0, 7 if n.kind == "step" else None,
               None, None, None, None, None, None)
        for n in plan.nodes
    ]  # fmt: skip
    trace = build_trace(plan, rows, "r", 0)
    assert str(trace["worker"].dtype) == "str"
    assert list(trace["worker"].fillna("-")) == ["-", "-", "7"]
