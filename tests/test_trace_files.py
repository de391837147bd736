"""Traces as files (issue 14, part 4): Chrome trace-event JSON for Perfetto, CSV/Parquet back
with the dtypes of ``run()``.

Perfetto's own Python trace processor (``pip install perfetto``) installs here but downloads its
``trace_processor_shell`` binary on first use, which this machine cannot (no internet besides
PyPI); the file is checked against the Trace Event Format instead.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import grouped

import notebook_pipelines as nbp
from tests.test_timing import release


@pytest.fixture(scope="module")
def trace() -> pd.DataFrame:
    return release().simulate(failures={"e2e": 1}, run_id="files")


def _nested(events: list[dict]) -> None:
    """Complete events of each thread nest: every slice lies inside the slice open around it."""
    threads: dict[tuple, list[dict]] = {}
    for e in events:
        if e["ph"] == "X":
            threads.setdefault((e["pid"], e["tid"]), []).append(e)
    for key, slices in threads.items():
        stack: list[tuple[float, float]] = []
        for e in sorted(slices, key=lambda e: (e["ts"], -e["dur"])):
            begin, end = e["ts"], e["ts"] + e["dur"]
            while stack and stack[-1][1] <= begin + 1e-3:
                stack.pop()
            assert not stack or end <= stack[-1][1] + 1e-3, f"{e['name']} overlaps on thread {key}"
            stack.append((begin, end))


def test_perfetto_file_follows_the_trace_event_format(trace, tmp_path):
    path = trace.pipeline.to_perfetto(tmp_path / "run.json")
    document = json.loads(path.read_text())
    events = document["traceEvents"]
    assert document["displayTimeUnit"] == "ms"
    for e in events:
        assert {"ph", "pid", "tid", "name"} <= set(e), e
        assert e["ph"] in ("X", "i", "M")
        if e["ph"] == "X":
            assert {"ts", "dur", "cat", "args"} <= set(e) and e["dur"] >= 0
        if e["ph"] == "i":
            assert e["s"] == "t" and "ts" in e
    _nested(events)
    processes = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert processes == {1: "pipeline release", 2: "stage build", 3: "stage us", 4: "stage eu"}
    slices = [e for e in events if e["ph"] == "X"]
    unit = next(e for e in slices if e["name"] == "unit")
    assert (unit["ts"], unit["dur"]) == (10_000_000.0, 30_000_000.0)  # microseconds
    assert unit["args"]["status"] == "Success" and unit["args"]["attempt"] == 1
    lint = next(e for e in slices if e["name"] == "lint")
    assert lint["pid"] == unit["pid"] and lint["tid"] != unit["tid"]  # parallel: two lanes
    groups = [e for e in slices if e["name"] == "tests"]
    assert {e["tid"] for e in groups} == {unit["tid"], lint["tid"]}  # group → step on each lane
    e2e = [e for e in slices if e["name"] == "e2e"]
    assert [(e["args"]["attempt"], e["args"]["status"]) for e in e2e] == [(1, "Failed"), (2, "Success")]
    wait = next(e for e in slices if e["name"] == "wait")
    assert (wait["ts"], wait["dur"], wait["tid"]) == (60_000_000.0, 5_000_000.0, e2e[0]["tid"])
    failures = [e for e in events if e["ph"] == "i"]
    assert [(f["name"], f["ts"]) for f in failures] == [("Failed: e2e", 60_000_000.0)]


def test_perfetto_nests_a_large_real_shaped_trace(tmp_path):
    p = grouped("wide", stages=3, groups=4, blocks=3, width=5, longest=9)
    path = p.simulate(seed=3).pipeline.to_perfetto(tmp_path / "wide.json")
    events = json.loads(path.read_text())["traceEvents"]
    _nested(events)
    assert sum(e["ph"] == "X" and e["cat"] == "step" for e in events) == 3 * 4 * 3 * 5


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_saved_trace_loads_back_with_the_dtypes_of_run(trace, tmp_path, suffix):
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=lambda: {"answer": 42}, outputs=["answer"])
        s.step("b", run=lambda: print("hello"))
    real = p.run(run_id="real")
    for frame in (trace, real):
        path = tmp_path / f"t{suffix}"
        frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
        back = nbp.read_trace(path)
        assert list(back.columns) == list(frame.columns)
        assert back.dtypes.to_dict() == frame.dtypes.to_dict()
        pd.testing.assert_frame_equal(
            back.drop(columns=["outputs", "inputs"]),
            frame.drop(columns=["outputs", "inputs"]).reset_index(drop=True),
        )
        assert back["outputs"].tolist() == frame["outputs"].tolist()
        assert list(back.pipeline.critical_path()["fqn"]) == list(frame.pipeline.critical_path()["fqn"])


def test_read_trace_refuses_what_is_not_a_trace(tmp_path):
    with pytest.raises(nbp.TraceError, match=r"\.csv, \.parquet, \.pq"):
        nbp.read_trace(tmp_path / "t.xlsx")
    with pytest.raises(FileNotFoundError):
        nbp.read_trace(tmp_path / "missing.csv")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(nbp.TraceError, match="lacks the columns run_id, fqn"):
        nbp.read_trace(tmp_path / "x.csv")
