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
    with pytest.raises(nbp.TraceError, match=r"\.csv, \.json, \.parquet, \.pq"):
        nbp.read_trace(tmp_path / "t.xlsx")
    with pytest.raises(FileNotFoundError):
        nbp.read_trace(tmp_path / "missing.csv")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(nbp.TraceError, match="lacks the columns run_id, fqn"):
        nbp.read_trace(tmp_path / "x.csv")


# -- one trace file format, both ways (issue 23 item 8, issue 31 items 5 and 8) ---------------------
SUFFIXES = [".csv", ".json", ".parquet"]


def _real_trace() -> pd.DataFrame:
    """A real run whose cells hold what files get wrong: dicts and lists, text a spreadsheet runs
    as a formula, text that already starts with an apostrophe."""
    p = nbp.Pipeline("p", variables={"env": "dev"})
    with p.stage("s") as s:
        s.step("a", run=lambda: {"answer": 42, "cmd": '=HYPERLINK("x")', "quoted": "'=1"}, outputs=["answer"])
        s.step(
            "b",
            run=lambda **inputs: print("-rf /\n@SUM(A1)\n+1"),
            inputs={"who": "<+pipeline.variables.env>", "tags": ["x", "y"], "n": {"deep": [1, 2.5, None]}},
        )
        s.step("c", run=lambda: 1 / 0)
    return p.run(run_id="files-real")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_saved_trace_reads_back_equal_to_the_original(trace, tmp_path, suffix):
    real = _real_trace()
    for original in (trace, real):
        path = original.pipeline.save(tmp_path / f"t{suffix}")
        back = nbp.read_trace(path)
        pd.testing.assert_frame_equal(back, original)
    b = back[back["step"] == "b"].iloc[0]
    assert b["inputs"] == {
        "who": "dev",
        "tags": ["x", "y"],
        "n": {"deep": [1, 2.5, None]},
    }  # a dict, not text
    assert b["log"] == "-rf /\n@SUM(A1)\n+1\n"
    assert back[back["step"] == "a"].iloc[0]["outputs"]["cmd"] == '=HYPERLINK("x")'


def test_the_cli_writes_the_same_format_read_trace_reads(tmp_path):
    from notebook_pipelines.formats import traces
    from notebook_pipelines.frontends import cli

    assert cli.write_trace is traces.write_trace  # one writer, beside the reader
    real = _real_trace()
    for suffix in SUFFIXES:
        pd.testing.assert_frame_equal(nbp.read_trace(cli.write_trace(real, tmp_path / f"t{suffix}")), real)


def test_csv_cells_a_spreadsheet_would_run_are_neutralised_and_read_back(tmp_path):
    real = _real_trace()
    path = real.pipeline.save(tmp_path / "t.csv")
    cells = [cell for row in __import__("csv").reader(path.open()) for cell in row]
    assert "'-rf /\n@SUM(A1)\n+1\n" in cells  # the log: one apostrophe in front
    assert not [
        c
        for c in cells
        if c[:1] in ("=", "+", "@", "\t", "\r") or (c.startswith("-") and not c[1:2].isdigit())
    ]
    back = nbp.read_trace(path)
    a = back[back["step"] == "a"].iloc[0]["outputs"]
    assert (a["cmd"], a["quoted"]) == ('=HYPERLINK("x")', "'=1")  # an apostrophe of the value stays
    # a value that is itself '=… is written with two apostrophes and reads back with one
    frame = real.assign(error=["'=x", "''+y", "=z", "'plain", *real["error"].iloc[4:]])
    frame["error"] = frame["error"].astype("str")
    back = nbp.read_trace(frame.pipeline.save(tmp_path / "e.csv"))
    assert list(back["error"].iloc[:4]) == ["'=x", "''+y", "=z", "'plain"]


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_read_trace_tolerates_a_byte_order_mark(trace, tmp_path, suffix):
    path = trace.pipeline.save(tmp_path / f"t{suffix}")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # as spreadsheets save "CSV UTF-8"
    pd.testing.assert_frame_equal(nbp.read_trace(path), trace.reset_index(drop=True))


def test_read_trace_tolerates_the_index_column_of_pandas_to_csv(tmp_path):
    real = _real_trace()
    real.to_csv(tmp_path / "t.csv")  # pandas' default: the index as a first, unnamed column
    back = nbp.read_trace(tmp_path / "t.csv")
    assert "Unnamed: 0" not in back.columns
    pd.testing.assert_frame_equal(
        back.drop(columns=["outputs", "inputs", "log"]), real.drop(columns=["outputs", "inputs", "log"])
    )
    assert (
        back["inputs"].tolist() == real["inputs"].tolist()
    )  # Python text of pandas, short: read as a literal


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_extra_columns_of_lists_and_run_facts_round_trip(trace, tmp_path, suffix):
    after = [() if i == 0 else (trace["fqn"].iloc[i - 1],) for i in range(len(trace))]  # tuples, as in run()
    frame = trace.assign(
        after=after,  # the history's columns (issue 26): known by read_trace, with their dtypes
        run_number=pd.array([7] * len(trace), dtype="Int64"),
        commit="abc123",
        created=pd.Timestamp("2026-03-01T09:30:00.123456789Z"),
        queued_s=1.5,
        shard=3,  # a column read_trace does not know: kept, as pandas infers it
    )
    frame["branch"] = pd.array(["main"] * len(frame), dtype=object)  # text in an object column
    back = nbp.read_trace(frame.pipeline.save(tmp_path / f"t{suffix}"))
    pd.testing.assert_frame_equal(back, frame)
    assert back["after"].iloc[1] == (trace["fqn"].iloc[0],)


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_read_trace_refuses_an_unknown_status_naming_it(trace, tmp_path, suffix):
    frame = trace.astype({"status": object})
    frame.loc[3, "status"] = "Sucess"
    path = tmp_path / f"t{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_json(
        path, orient="records", date_format="iso"
    )
    with pytest.raises(
        nbp.TraceError, match=rf"{frame['fqn'][3]}: unknown status 'Sucess'; .* one of .*Success"
    ):
        nbp.read_trace(path)


def test_read_trace_bounds_its_work(trace, tmp_path):
    path = tmp_path / "t.csv"
    trace.pipeline.save(path)
    with pytest.raises(nbp.TraceError, match="over the 0 MB read_trace reads: pass max_bytes="):
        nbp.read_trace(path, max_bytes=1000)
    # a huge cell of Python text (not JSON) is refused, not evaluated (40 MB took 95 s and 5 GB)
    frame = trace.astype({"outputs": object})
    frame.loc[2, "outputs"] = "{'v': [" + "1, " * 200_000 + "]}"
    frame.to_csv(path, index=False)
    with pytest.raises(
        nbp.TraceError, match=r"'outputs' cell is 600\d+ characters of neither JSON nor a short"
    ):
        nbp.read_trace(path)
    # the same size as JSON reads
    frame.loc[2, "outputs"] = '{"v": [' + "1, " * 200_000 + "1]}"
    frame.to_csv(path, index=False)
    assert len(nbp.read_trace(path)["outputs"][2]["v"]) == 200_001


def test_read_trace_names_what_is_wrong_with_a_file(tmp_path):
    import os

    cases = {
        "empty.csv": (b"", "is empty"),
        "empty.parquet": (b"", "is empty"),
        "garbage.parquet": (b"not a parquet file at all", "is not a Parquet trace"),
        "binary.csv": (b"\xff\xfe\x00garbage", "is not UTF-8 text"),
        "header.csv": (b"\n\n", "is not a CSV trace"),
        "quote.json": (b'[{"run_id": "x"', "not JSON"),
        "object.json": (b'{"run_id": "x"}', "a trace file holds a list of records"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(nbp.TraceError, match=message):
            nbp.read_trace(tmp_path / name)
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(nbp.TraceError, match="is a folder, not a trace file"):
        nbp.read_trace(tmp_path / "folder.csv")
    os.mkfifo(tmp_path / "fifo.csv")  # never opened: opening a FIFO blocks
    with pytest.raises(nbp.TraceError, match=r"is not a regular file \(a FIFO"):
        nbp.read_trace(tmp_path / "fifo.csv")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_write_trace_refuses_what_json_cannot_hold_naming_the_step(trace, tmp_path, suffix):
    import numpy as np

    step = trace.index[trace["kind"] == "step"][0]
    for value, message in (
        ({"handle": object()}, "a object is not JSON"),
        ({1: "x"}, "the key 1 is not a string"),
    ):
        frame = trace.astype({"outputs": object})
        frame.at[step, "outputs"] = value
        with pytest.raises(nbp.TraceError, match=rf"{trace['fqn'][step]}: the 'outputs' value .*{message}"):
            frame.pipeline.save(tmp_path / f"t{suffix}")
    frame.at[step, "outputs"] = {"n": np.int64(3), "x": np.float64(0.5)}  # NumPy numbers are numbers
    assert nbp.read_trace(frame.pipeline.save(tmp_path / f"t{suffix}"))["outputs"][step] == {"n": 3, "x": 0.5}
    with pytest.raises(nbp.TraceError, match="column names must be strings, not 0"):
        trace.rename(columns={"log": 0}).pipeline.save(tmp_path / f"t{suffix}")


def test_a_status_the_toolkit_does_not_know_round_trips_through_parquet_only(trace, tmp_path):
    # what load_harness_execution makes of a Harness status it does not know: an extra category
    frame = trace.copy()
    frame["status"] = frame["status"].cat.add_categories(["NewHarnessStatus"])
    frame.loc[3, "status"] = "NewHarnessStatus"
    pd.testing.assert_frame_equal(nbp.read_trace(frame.pipeline.save(tmp_path / "t.parquet")), frame)
    with pytest.raises(nbp.TraceError, match=r"unknown status 'NewHarnessStatus'.*keeps them in Parquet"):
        nbp.read_trace(frame.pipeline.save(tmp_path / "t.csv"))


def test_the_cli_keeps_a_trace_it_cannot_write_and_says_which_step(trace_with_an_object, tmp_path, capsys):
    from notebook_pipelines.frontends.cli.exits import BadInput
    from notebook_pipelines.frontends.cli.files import write_or_print

    with pytest.raises(BadInput, match=r"-o .*t\.json: .*steps\.a: the 'outputs' value cannot be written"):
        write_or_print(trace_with_an_object, str(tmp_path / "t.json"))
    assert "a  step      Success" in capsys.readouterr().out  # printed instead: not lost


@pytest.fixture
def trace_with_an_object():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=lambda: {"handle": object()})
    return p.run(report=False)
