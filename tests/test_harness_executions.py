"""Real Harness runs as traces (issue 15): hand-written execution JSON → rows checked by hand.

The fixtures in ``fixtures/harness_executions/`` are synthetic (written by hand in the shapes of
``shared/HARNESS_EXECUTIONS.md``; times from 2026-01-01T10:00:00Z = 1767261600000 ms). Each test
states the expected rows itself. Rules: R46 (iteration rows, parent = looped node), D6 (every
stage of the run has a row: NotStarted ones from the layout), R16 (error types), R26 (statuses).
"""

from __future__ import annotations

import http.server
import json
import math
import subprocess
import threading
import time
import warnings
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import notebook_pipelines as nbp
from notebook_pipelines.definition.failure import Retry, StageRollback
from notebook_pipelines.definition.looping import Matrix
from notebook_pipelines.definition.model import Parallel, StepGroup
from notebook_pipelines.engine.trace import COLUMNS, STATUSES, dtypes
from notebook_pipelines.formats.harness_executions import (
    EXTRA_COLUMNS,
    MAX_BYTES,
    HarnessExecutionError,
    HarnessStatusWarning,
    fetch_harness_execution,
    load_harness_execution,
    pipeline_from_execution,
)
from notebook_pipelines.frontends.cli import main
from notebook_pipelines.views.rendering import render

HERE = Path(__file__).parent / "fixtures" / "harness_executions"
CD = HERE / "cd_parallel.json"
ATTEMPTS = HERE / "cd_parallel.attempts.json"
ROLLBACK = HERE / "failed_rollback.json"
MATRIX = HERE / "matrix_expired.json"
LEGACY = HERE / "legacy_fork.json"
T0 = pd.Timestamp("2026-01-01T10:00:00Z")
NA = None


def table(trace: pd.DataFrame, *columns: str) -> list[tuple]:
    """Rows as tuples, fqn shortened (``pipeline.stages.`` and ``spec.execution.`` left out), NA → None."""
    out = []
    for row in trace[["fqn", *columns]].itertuples(index=False):
        values = []
        for name, value in zip(("fqn", *columns), row):
            if name == "fqn":
                value = value.replace("pipeline.stages.", "").replace("spec.execution.", "")
            elif value is pd.NA or (isinstance(value, float) and math.isnan(value)):
                value = None
            elif name in ("kind", "phase", "status"):
                value = str(value)
            values.append(value)
        out.append(tuple(values))
    return out


def load(path: Path) -> dict:
    return json.loads(path.read_text())


# -- rows -----------------------------------------------------------------------------------------
def test_parallel_blocks_in_a_group_parallel_stages_retry_and_skip_rows_as_written():
    """Two parallel blocks in a step group (NG_FORK), parallel stages (NG_FORK under stages), a
    retried step with its earlier attempt's node JSON, a skipped step: every row by hand."""
    trace = load_harness_execution(CD, attempts=ATTEMPTS)
    cols = ("kind", "block", "attempt", "status", "start_s", "end_s")
    assert table(trace, *cols) == [
        ("pipeline", "pipeline", NA, 1, "Success", 0.0, 100.0),
        ("build", "stage", 0, 1, "Success", 1.0, 41.0),
        ("build.steps.tests", "step_group", 0, 1, "Success", 2.0, 32.0),
        ("build.steps.tests.steps.unit", "step", 0, 1, "Success", 2.0, 27.0),
        ("build.steps.tests.steps.lint", "step", 0, 1, "Success", 2.0, 12.0),
        ("build.steps.tests.steps.report", "step", 1, 1, "Success", 27.0, 32.0),
        ("build.steps.package", "step", 1, 1, "Success", 32.0, 41.0),
        ("deploy_eu", "stage", 1, 1, "Success", 41.0, 70.0),
        ("deploy_eu.steps.rollout", "step", 0, 1, "Success", 48.0, 70.0),
        ("deploy_us", "stage", 1, 1, "Success", 41.0, 100.0),
        ("deploy_us.steps.rollout", "step", 0, 1, "Failed", 42.0, 60.0),
        ("deploy_us.steps.rollout", "step", 0, 2, "Success", 65.0, 90.0),
        ("deploy_us.steps.smoke", "step", 1, 1, "Skipped", 90.0, 90.0),
        ("deploy_us.steps.verify", "step", 2, 1, "Success", 90.0, 100.0),
    ]
    parents = dict(zip(trace["fqn"], trace["parent"]))
    assert parents["pipeline.stages.build.spec.execution.steps.tests.steps.lint"] == (
        "pipeline.stages.build.spec.execution.steps.tests"
    )
    assert parents["pipeline.stages.deploy_us"] == "pipeline"
    group = trace[trace["step"] == "unit"].iloc[0]
    assert (group["stage"], group["step_group"], group["worker"]) == ("build", "tests", "delegate-a")
    first = trace[
        (trace["stage"] == "deploy_us") & (trace["attempt"] == 1) & (trace["step"] == "rollout")
    ].iloc[0]
    assert (first["error_type"], first["error"]) == (
        "Connectivity",
        "dial tcp 10.0.0.7:443: connect: connection refused",
    )
    assert (first["uuid"], first["setupId"], first["stepType"]) == (
        "nUsRollout1",
        "setupUsRollout",
        "K8sRollingDeploy",
    )
    skipped = trace[trace["step"] == "smoke"].iloc[0]
    assert skipped["reason"] == 'condition <+pipeline.variables.smoke> == "true" was false'
    assert trace.attrs["run_id"] == "syntheticRun01" and trace.attrs["pipeline"] == "release"
    assert set(trace["run_id"]) == {"syntheticRun01"}


def test_retry_without_the_earlier_attempts_json_keeps_the_attempt_number():
    """attempt = 1 + RETRY interrupts; without getExecutionNode's JSON the first attempt has no row."""
    trace = load_harness_execution(load(CD))
    rollout = trace[(trace["stage"] == "deploy_us") & (trace["step"] == "rollout")]
    assert table(rollout, "attempt", "status", "start_s", "end_s") == [
        ("deploy_us.steps.rollout", 2, "Success", 65.0, 90.0)
    ]
    assert len(trace) == 13


def test_schema_dtypes_times_and_extra_columns():
    trace = load_harness_execution(CD, attempts=ATTEMPTS)
    assert list(trace.columns) == [*COLUMNS, *EXTRA_COLUMNS] == [*COLUMNS, "uuid", "setupId", "stepType"]
    expected = dtypes()
    for name in COLUMNS:
        assert trace[name].dtype == expected[name], name
    assert trace["start"].iloc[0] == T0
    assert trace["end"].iloc[0] == T0 + pd.Timedelta(seconds=100)
    unit = trace[trace["step"] == "unit"].iloc[0]
    assert unit["start"] == T0 + pd.Timedelta(seconds=2) and unit["duration_s"] == 25.0
    assert list(trace["stepType"].iloc[:3]) == ["PIPELINE_SECTION", "CUSTOM_STAGE", "STEP_GROUP"]


def test_failed_step_stage_rollback_and_a_stage_that_never_started():
    """A failed step, the stage's rollback chain (phase rollback), then a stage only in the layout (D6)."""
    trace = load_harness_execution(ROLLBACK)
    assert table(trace, "kind", "phase", "block", "attempt", "status", "start_s", "end_s", "error_type") == [
        ("pipeline", "pipeline", "execution", NA, 1, "Failed", 0.0, 60.0, "Unknown"),
        ("deploy", "stage", "execution", 0, 1, "Failed", 1.0, 60.0, "Unknown"),
        ("deploy.steps.prepare", "step", "execution", 0, 1, "Success", 8.0, 12.0, NA),
        ("deploy.steps.apply", "step", "execution", 1, 1, "Failed", 12.0, 30.0, "Unknown"),
        ("deploy.rollbackSteps.undo", "step", "rollback", 0, 1, "Success", 31.0, 59.0, NA),
        ("verify", "stage", "execution", 1, 0, "NotStarted", NA, NA, NA),
    ]
    verify = trace[trace["stage"] == "verify"].iloc[0]
    assert pd.isna(verify["start"]) and pd.isna(verify["end"]) and verify["setupId"] == "setupVerify"
    assert trace[trace["step"] == "apply"]["error"].iloc[0] == "exit status 1"


def test_matrix_stage_with_an_expired_iteration():
    """R46: the STRATEGY node is the looped stage's row; iterations are its children with
    ``iteration`` from strategyMetadata (lower-case keys in one, camelCase in the other)."""
    trace = load_harness_execution(MATRIX)
    assert table(
        trace, "parent", "kind", "block", "iteration", "status", "start_s", "end_s", "error_type"
    ) == [
        ("pipeline", NA, "pipeline", NA, NA, "Expired", 0.0, 31.0, NA),
        ("smoke", "pipeline", "stage", 0, NA, "Expired", 1.0, 31.0, NA),
        ("smoke_0", "pipeline.stages.smoke", "stage", 0, 0, "Success", 1.0, 11.0, NA),
        ("smoke_0.steps.ping", "pipeline.stages.smoke_0", "step", 0, 0, "Success", 2.0, 10.0, NA),
        ("smoke_1", "pipeline.stages.smoke", "stage", 0, 1, "Expired", 1.0, 31.0, "Timeout"),
        ("smoke_1.steps.ping", "pipeline.stages.smoke_1", "step", 0, 1, "Expired", 2.0, 31.0, "Timeout"),
    ]
    assert list(trace["stage"].iloc[1:4]) == ["smoke", "smoke_0", "smoke_0"]


def test_older_fork_shape_branches_hang_off_the_parent():
    """No NG_FORK node: several children (or several nextIds) of one node are one parallel
    block; branches that share what follows reach it once. Legacy SCREAMING statuses map."""
    trace = load_harness_execution(LEGACY)
    assert table(trace, "kind", "block", "status", "start_s", "end_s") == [
        ("pipeline", "pipeline", NA, "Success", 0.0, 30.0),
        ("a", "stage", 0, "Success", 0.0, 20.0),
        ("a.steps.x", "step", 0, "Success", 0.0, 10.0),
        ("a.steps.y", "step", 0, "Success", 0.0, 5.0),
        ("a.steps.z", "step", 1, "Success", 10.0, 20.0),
        ("b", "stage", 0, "Success", 0.0, 30.0),
        ("b.steps.p", "step", 0, "Success", 0.0, 10.0),
        ("b.steps.q", "step", 1, "Success", 10.0, 30.0),
        ("b.steps.r", "step", 1, "Success", 10.0, 15.0),
    ]


def test_both_fork_shapes_give_the_same_rows():
    """The same parallel steps written with an NG_FORK node and without one."""
    doc = load(LEGACY)
    graph = doc["data"]["executionGraph"]
    graph["nodeMap"]["nFork"] = {
        "uuid": "nFork", "stepType": "NG_FORK", "name": "parallel", "identifier": "parallelsF",
        "baseFqn": "pipeline.stages.a.spec.execution.steps", "status": "Success",
        "startTs": 1767261600000, "endTs": 1767261610000,
    }  # fmt: skip
    adjacency = graph["nodeAdjacencyListMap"]
    adjacency["nAExec"] = {"children": ["nFork"], "nextIds": []}
    adjacency["nFork"] = {"children": ["nX", "nY"], "nextIds": ["nZ"]}
    adjacency["nX"] = adjacency["nY"] = {"children": [], "nextIds": []}
    with_fork = load_harness_execution(doc)
    without = load_harness_execution(LEGACY)
    columns = ["fqn", "parent", "kind", "block", "status", "start_s", "end_s"]
    pd.testing.assert_frame_equal(with_fork[columns], without[columns])


def test_unknown_status_is_kept_verbatim_with_a_warning():
    """R26: known names are mapped; an unknown one stays as Harness wrote it, as an extra category."""
    doc = load(LEGACY)
    doc["data"]["executionGraph"]["nodeMap"]["nZ"]["status"] = "Hibernating"
    with pytest.warns(HarnessStatusWarning, match="Hibernating"):
        trace = load_harness_execution(doc)
    assert list(trace["status"].cat.categories) == [*STATUSES, "Hibernating"]
    assert trace.loc[trace["step"] == "z", "status"].iloc[0] == "Hibernating"


def test_running_node_has_no_end():
    doc = load(LEGACY)
    node = doc["data"]["executionGraph"]["nodeMap"]["nZ"]
    node["status"], node["endTs"] = "AsyncWaiting", None
    trace = load_harness_execution(doc)
    z = trace[trace["step"] == "z"].iloc[0]
    assert z["status"] == "Running" and pd.isna(z["end"]) and math.isnan(z["end_s"])


# -- bad input ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([1, 2], r"the parsed JSON \(a dict\), not list"),
        ({"status": "SUCCESS", "data": {"content": []}}, "no data.executionGraph"),
        ({"data": {"pipelineExecutionSummary": {}}}, "renderFullBottomGraph=true"),
        ({"data": {"executionGraph": {"rootNodeId": "x", "nodeMap": {}}}}, "nodeMap is missing or empty"),
        ({"data": {"executionGraph": {"rootNodeId": "x", "nodeMap": {"y": {}}}}}, "rootNodeId 'x'"),
    ],
)
def test_not_an_execution_is_refused_saying_why(doc, message):
    with pytest.raises(HarnessExecutionError, match=message):
        load_harness_execution(doc)


def test_a_node_id_missing_from_node_map_is_named():
    doc = load(CD)
    doc["data"]["executionGraph"]["nodeAdjacencyListMap"]["nTests"]["nextIds"] = ["nGhost"]
    with pytest.raises(
        HarnessExecutionError, match=r"node 'nTests' .* lists 'nGhost' in its nextIds, but nodeMap"
    ):
        load_harness_execution(doc)


def test_a_cycle_in_next_ids_is_refused_naming_the_nodes():
    doc = load(CD)
    doc["data"]["executionGraph"]["nodeAdjacencyListMap"]["nReport"]["nextIds"] = ["nTestsFork"]
    with pytest.raises(HarnessExecutionError, match=r"a cycle .*'nReport'.* leads back to node 'nTestsFork'"):
        load_harness_execution(doc)
    doc = load(LEGACY)
    doc["data"]["executionGraph"]["nodeAdjacencyListMap"]["nZ"]["nextIds"] = ["nZ"]
    with pytest.raises(HarnessExecutionError, match="a cycle"):
        load_harness_execution(doc)


def test_a_file_over_100_mb_is_refused_before_parsing(tmp_path):
    big = tmp_path / "huge.json"
    with open(big, "wb") as f:
        f.truncate(MAX_BYTES + 1)  # sparse: nothing is written, nothing would parse
    with pytest.raises(HarnessExecutionError, match="over 100 MB are refused"):
        load_harness_execution(big)
    assert main(["analyse", str(big)]) == 2


def test_not_json_and_missing_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": ')
    with pytest.raises(HarnessExecutionError, match=r"bad.json:1:10: not JSON"):
        load_harness_execution(bad)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(
        HarnessExecutionError, match=r"list\.json is not a Harness execution JSON: its top level is a list"
    ):
        load_harness_execution(listed)
    with pytest.raises(HarnessExecutionError, match="no such file"):
        load_harness_execution(tmp_path / "nope.json")


def test_a_deep_graph_is_walked_without_recursion():
    """20 000 steps chained by nextIds (far past Python's recursion limit) load."""
    n = 20_000
    node_map = {
        "root": {"uuid": "root", "stepType": "PIPELINE_SECTION", "baseFqn": "pipeline", "status": "Success",
                 "startTs": 1767261600000, "endTs": 1767261600000 + n},
        "st": {"uuid": "st", "stepType": "CUSTOM_STAGE", "identifier": "s", "baseFqn": "pipeline.stages.s",
               "status": "Success", "startTs": 1767261600000, "endTs": 1767261600000 + n},
    }  # fmt: skip
    adjacency = {"root": {"children": ["st"], "nextIds": []}, "st": {"children": ["s0"], "nextIds": []}}
    for i in range(n):
        node_map[f"s{i}"] = {"uuid": f"s{i}", "stepType": "ShellScript", "identifier": f"x{i}",
                             "baseFqn": f"pipeline.stages.s.spec.execution.steps.x{i}", "status": "Success",
                             "startTs": 1767261600000 + i, "endTs": 1767261600000 + i + 1}  # fmt: skip
        adjacency[f"s{i}"] = {"children": [], "nextIds": [f"s{i + 1}"] if i + 1 < n else []}
    doc = {
        "data": {
            "executionGraph": {"rootNodeId": "root", "nodeMap": node_map, "nodeAdjacencyListMap": adjacency}
        }
    }
    trace = load_harness_execution(doc)
    assert len(trace) == n + 2
    assert trace["block"].iloc[-1] == n - 1 and trace["end_s"].iloc[-1] == n / 1000


# -- the pipeline behind the run -------------------------------------------------------------------------
def test_rebuilt_pipeline_has_the_runs_structure():
    trace = load_harness_execution(CD, attempts=ATTEMPTS)
    p = pipeline_from_execution(trace)
    build, parallel = p.stages
    assert p.id == "release" and build.id == "build" and isinstance(parallel, Parallel)
    assert parallel.ids == ["deploy_eu", "deploy_us"]
    tests, package = build.items
    assert isinstance(tests, StepGroup) and package.id == "package" and package.duration == 9.0
    assert isinstance(tests.items[0], Parallel) and tests.items[0].ids == ["unit", "lint"]
    assert tests.items[1].id == "report"
    rollout = parallel.items[1].items[0]
    assert rollout.duration == 21.5  # the mean of 18 s and 25 s
    assert rollout.failure_strategies[0].action == Retry(1, intervals=(5.0,))
    rolled = pipeline_from_execution(load_harness_execution(ROLLBACK))
    deploy, verify = rolled.stages
    assert deploy.failure_strategies[0].action == StageRollback()
    assert [s.id for s in deploy.rollback_items] == ["undo"]
    assert [s.id for s in verify.items] == ["steps_not_in_execution"]
    looped = pipeline_from_execution(load_harness_execution(MATRIX)).stages[0]
    assert isinstance(looped.strategy, Matrix) and looped.strategy.axes == {"iteration": ["_0", "_1"]}
    assert looped.strategy.max_concurrency == 2


def test_render_colours_the_rebuilt_pipeline_by_the_run():
    trace = load_harness_execution(ROLLBACK)
    p = pipeline_from_execution(trace)
    plain, coloured = p.render().source, p.render(trace).source
    assert plain != coloured
    assert "apply" in coloured and "undo" in coloured


def test_what_if_resimulates_on_measured_durations():
    """Hand-computed: build = max(25, 10) + 5 + 9 = 39 s; deploy_us = 18 (fails) + 5 wait + 25
    + 0 (skipped) + 10 = 58 s against deploy_eu 22 s: 97 s as run (the 3 s Harness spent
    between nodes are not durations of steps). rollout in deploy_us at 10 s: 10 + 5 + 10 + 10 = 35."""
    trace = load_harness_execution(CD, attempts=ATTEMPTS)
    p = pipeline_from_execution(trace)
    result = trace.pipeline.what_if(
        {"pipeline.stages.deploy_us.spec.execution.steps.rollout": 10}, pipeline=p
    )
    assert list(result["makespan_s"]) == [97.0, 74.0]
    assert list(result["change_s"]) == [0.0, -23.0]
    assert result["critical_path"].iloc[0] == "unit → report → package → rollout → rollout#2 → verify"


def test_what_if_on_a_looped_run_with_the_rebuilt_pipeline():
    """R46: iteration rows are the run's copies, not nodes of the plan; each iteration keeps its
    own measured duration (8 s and 29 s, side by side)."""
    trace = load_harness_execution(MATRIX)
    result = trace.pipeline.what_if(pipeline=pipeline_from_execution(trace))
    assert list(result["makespan_s"]) == [29.0, 29.0]


# -- the command line ---------------------------------------------------------------------------------
def test_cli_analyse_prints_summary_and_critical_path_and_writes_the_trace(tmp_path, capsys):
    out = tmp_path / "trace.csv"
    code = main(["analyse", str(CD), "--attempts", str(ATTEMPTS), "-o", str(out)])
    stdout, _ = capsys.readouterr()
    assert code == 0
    assert stdout.splitlines()[0] == "run syntheticRun01 of pipeline 'release': Success after 1m 40s"
    assert "critical path:" in stdout
    assert "pipeline.stages.deploy_us.spec.execution.steps.rollout (attempt 2)" in stdout
    back = nbp.read_trace(out)
    assert len(back) == 14 and list(back["fqn"]) == list(load_harness_execution(CD, attempts=ATTEMPTS)["fqn"])


def test_cli_analyse_exit_codes(tmp_path, capsys):
    assert main(["analyse", str(ROLLBACK)]) == 1  # the run failed
    bad = tmp_path / "x.json"
    bad.write_text('{"data": {}}')
    assert main(["analyse", str(bad)]) == 2
    assert "not a Harness execution JSON" in capsys.readouterr().err


# -- hostile files (issue 24 item 7) ----------------------------------------------------------------
@pytest.mark.parametrize("value", [float("inf"), 1e30, -1e15, float("-inf"), 10**20])
@pytest.mark.parametrize("where", ["node", "summary"])
def test_a_time_out_of_range_is_refused_naming_the_node_and_field(tmp_path, capsys, value, where):
    doc = load(CD)
    data = doc["data"]
    if where == "node":
        data["executionGraph"]["nodeMap"]["nUnit"]["startTs"] = value
        named = "node 'nUnit' (pipeline.stages.build.spec.execution.steps.tests.steps.unit) startTs"
    else:
        data["pipelineExecutionSummary"]["startTs"] = value
        named = "pipelineExecutionSummary.startTs"
    with pytest.raises(HarnessExecutionError) as caught:  # was a raw OverflowError / OutOfBoundsDatetime
        load_harness_execution(doc)
    assert f"the execution: {named} is {value!r}, not a time" in str(caught.value)
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(doc))  # `Infinity` in the file, as JavaScript-ish servers write it
    assert main(["analyse", str(path)]) == 2  # the CLI printed a traceback
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: the execution: {named} is") and "Traceback" not in err


def test_a_step_that_ends_before_it_starts_rebuilds_as_a_step_of_no_time():
    # found by the fuzz test below: the rebuilt pipeline declared duration=-48 and did not validate
    doc = load(CD)
    node = doc["data"]["executionGraph"]["nodeMap"]["nEuRollout"]
    node["endTs"] = node["startTs"] - 48_000
    p = pipeline_from_execution(load_harness_execution(doc))
    p.validate()
    (node,) = [n for n in p.plan().nodes if n.fqn.endswith("deploy_eu.spec.execution.steps.rollout")]
    assert node.duration == 0


def test_a_file_of_millions_of_small_objects_is_refused_before_it_is_parsed(tmp_path):
    # 4,000,001 empty objects in 12 MB: parsed, they took ~125 bytes each (the 99.6 MB file of the
    # issue: 3.1 GB and 22 s before "not an execution"); counted on the bytes, refused at once
    path = tmp_path / "objects.json"
    with open(path, "wb") as f:  # MAX_CONTAINERS (4,000,000) + 1 objects, and the envelope's 3
        f.write(b'{"data": {"junk": [' + b"{}," * 4_000_000 + b"{}]}}")
    with pytest.raises(HarnessExecutionError, match=r"holds 4,000,004 objects and arrays, more than"):
        load_harness_execution(path)
    listed = tmp_path / "listed.json"
    listed.write_bytes(b" \n[" + b"{}," * 1000 + b"{}]")
    with pytest.raises(HarnessExecutionError, match=r"its top level is a list, not an object"):
        load_harness_execution(listed)


# -- property: a damaged execution loads, or is refused with our error (issue 24 items 7 and 13) ------
_HOSTILE_VALUES = st.sampled_from(
    [float("inf"), float("-inf"), float("nan"), 1e30, -1e15, 10**40, -1, 0, "", "soon", "1767261600000",
     None, True, [], {}, [1, [2]], "Odd\\", 'q"uote', "a$b$", "<b>html</b>", "x" * 500, "é\n\t"]
)  # fmt: skip
_FIELDS = st.sampled_from(["startTs", "endTs", "status", "identifier", "name", "baseFqn", "stepType", "uuid"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), _FIELDS, _HOSTILE_VALUES), min_size=1, max_size=4))
def test_any_damaged_execution_loads_and_draws_or_is_refused_with_our_error(changes):
    doc = load(CD)
    nodes = doc["data"]["executionGraph"]["nodeMap"]
    ids = sorted(nodes)
    for index, field, value in changes:
        nodes[ids[index % len(ids)]][field] = value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HarnessStatusWarning)
        try:
            trace = load_harness_execution(doc)
        except HarnessExecutionError:
            return
        try:  # a damaged baseFqn makes identifiers no pipeline may have: refused by validation
            source = render(pipeline_from_execution(trace), trace).source  # every DOT id escaped
        except nbp.PipelineError:
            return
    subprocess.run(["dot", "-Tsvg"], input=source.encode(), capture_output=True, check=True, timeout=60)


# -- fetching (a local server on loopback, never a real account) -----------------------------------------
class _Harness(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list] = []
    body = CD.read_bytes()
    status = 200

    def do_GET(self):
        type(self).seen.append((self.path, dict(self.headers)))
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(type(self).body)

    def log_message(self, *args):
        pass


@pytest.fixture
def harness_server():
    _Harness.seen, _Harness.body, _Harness.status = [], CD.read_bytes(), 200
    server = http.server.HTTPServer(("127.0.0.1", 0), _Harness)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join()


SECRET = "pat.synthetic.0123456789abcdef.NOTAREALKEY"


def test_fetch_calls_the_v2_endpoint_saves_and_loads(harness_server, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HARNESS_API_KEY", raising=False)
    target = tmp_path / "run.json"
    trace = fetch_harness_execution(
        "syntheticRun01", account="acc1", org="default", project="shop", api_key=SECRET,
        base_url=harness_server, path=target,
    )  # fmt: skip
    path, headers = _Harness.seen[0]
    assert path.startswith("/pipeline/api/pipelines/execution/v2/syntheticRun01?")
    for part in ("accountIdentifier=acc1", "orgIdentifier=default", "projectIdentifier=shop",
                 "renderFullBottomGraph=true"):  # fmt: skip
        assert part in path
    assert {k.lower(): v for k, v in headers.items()}["x-api-key"] == SECRET
    assert SECRET not in path
    assert target.read_bytes() == CD.read_bytes() and SECRET not in target.read_text()
    assert len(trace) == 13 and trace.attrs["run_id"] == "syntheticRun01"
    out, err = capsys.readouterr()
    assert SECRET not in out + err + repr(trace) + str(trace.attrs)


def test_fetch_key_from_the_environment_and_errors_never_show_it(harness_server, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_API_KEY", SECRET)
    _Harness.status = 401
    _Harness.body = json.dumps(
        {"status": "ERROR", "code": "INVALID_TOKEN", "message": f"Token {SECRET} is invalid"}
    ).encode()
    with pytest.raises(HarnessExecutionError) as info:
        fetch_harness_execution("syntheticRun01", account="a", org="o", project="p",
                                base_url=harness_server, path=tmp_path / "x.json")  # fmt: skip
    assert "401" in str(info.value) and "check the API key" in str(info.value)
    assert SECRET not in str(info.value) and "***" in str(info.value)
    assert {k.lower(): v for k, v in _Harness.seen[0][1].items()}["x-api-key"] == SECRET
    assert not (tmp_path / "x.json").exists()
    monkeypatch.delenv("HARNESS_API_KEY")
    with pytest.raises(HarnessExecutionError, match="no API key"):
        fetch_harness_execution("syntheticRun01", account="a", org="o", project="p", base_url=harness_server)


def test_fetch_refuses_an_answer_that_is_not_an_execution(harness_server, tmp_path):
    _Harness.body = b'{"status": "SUCCESS", "data": {"content": []}}'
    with pytest.raises(HarnessExecutionError, match="not a Harness execution JSON"):
        fetch_harness_execution("r1", account="a", org="o", project="p", api_key=SECRET,
                                base_url=harness_server, path=tmp_path / "x.json")  # fmt: skip
    assert not (tmp_path / "x.json").exists()
    with pytest.raises(HarnessExecutionError, match="is not a planExecutionId"):
        fetch_harness_execution("../../admin", account="a", org="o", project="p", api_key=SECRET,
                                base_url=harness_server)  # fmt: skip


def test_a_node_with_ten_thousand_next_ids_is_checked_in_linear_time():
    """The cycle check re-read (and re-checked) a node's whole adjacency list once per edge:
    a node followed by 10,000 ``nextIds`` took about 4 s here (15 s for 20,000). Each of
    the 10,000 steps is still a row."""
    doc = load(MATRIX)
    graph = doc["data"]["executionGraph"]
    nodes, adjacency = graph["nodeMap"], graph["nodeAdjacencyListMap"]
    first = next(k for k, n in nodes.items() if n.get("stepType") == "Http")
    template = nodes[first]
    folder = template["baseFqn"].rsplit(".", 1)[0]
    for i in range(10_000):
        nodes[f"n{i}"] = {**template, "uuid": f"n{i}", "identifier": f"s{i}", "baseFqn": f"{folder}.s{i}"}
        adjacency[f"n{i}"] = {"children": [], "nextIds": []}
    adjacency[first] = {**adjacency.get(first, {}), "nextIds": [f"n{i}" for i in range(10_000)]}
    started = time.monotonic()
    trace = load_harness_execution(doc)
    assert time.monotonic() - started < 2
    assert trace["fqn"].str.endswith(".s9999").sum() == 1
