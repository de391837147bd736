"""A looped node's row is a container in every timing analysis (issue 23 item 2; R46, R54, E13).

A step with a matrix, repeat or parallelism has a row of kind ``step`` spanning its iterations;
the iterations are the work. Every expected figure is computed by hand in the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import notebook_pipelines as nbp
from notebook_pipelines.analysis import timing
from notebook_pipelines.formats.harness_executions import load_harness_execution
from notebook_pipelines.formats.perfetto import trace_events

STEPS = "pipeline.stages.s.spec.execution.steps"
REPEAT_STEP = Path(__file__).parent / "fixtures" / "harness_executions" / "repeat_step.json"


def window() -> nbp.Pipeline:
    """a 1 s; c: Repeat over five items, maxConcurrency 2, 1 s each unless told; d 1 s."""
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", duration=1)
        s.step("c", duration=1, strategy=nbp.Repeat(items=[1, 2, 3, 4, 5], max_concurrency=2))
        s.step("d", duration=1)
    return p


#: c_0 2 s, c_1 1 s, c_2 3 s, c_3 1 s, c_4 4 s
UNEVEN = {"c_0": 2, "c_1": 1, "c_2": 3, "c_3": 1, "c_4": 4}


@pytest.fixture(scope="module")
def uneven() -> pd.DataFrame:
    # by hand (R54: a sliding window of 2, list order): a 0–1; c_0 1–3 and c_1 1–2 start with c;
    # c_2 takes c_1's slot at 2 (2–5); c_3 takes c_0's slot at 3 (3–4); c_4 takes c_3's at 4 (4–8);
    # the loop ends with c_4 at 8; d 8–9. Makespan 9.
    trace = window().simulate(durations=UNEVEN)
    starts = dict(zip(trace["step"].astype(str), trace["start_s"]))
    assert [starts[f"c_{i}"] for i in range(5)] == [1, 1, 2, 3, 4] and starts["d"] == 8
    return trace


def test_R54_E13_critical_path_runs_item_then_the_item_that_took_its_slot(uneven):
    # the end (9) ← d (8–9) ← the loop's end 8 = c_4's end ← c_4 started at 4 when c_3 ended
    # (it took c_3's slot) ← c_3 started at 3 when c_0 ended ← c_0 started with the loop at 1 ← a
    path = timing.critical_path(uneven)
    assert list(path["step"]) == ["a", "c_0", "c_3", "c_4", "d"]
    assert float(path["duration_s"].sum()) == 1 + 2 + 1 + 4 + 1  # = 9, the makespan: no gap


def test_R54_slack_of_iterations_counts_what_follows_them(uneven):
    # on the path (a, c_0, c_3, c_4, d): 0. c_2 ends at 5; the loop ends at 8 → 3 s of slack;
    # c_1 (1–2) only delays c_2, which took its slot → also 3 s. The looped row has no slack row.
    table = timing.slack(uneven).set_index("step")
    assert dict(table["slack_s"]) == {"a": 0, "c_0": 0, "c_1": 3, "c_2": 3, "c_3": 0, "c_4": 0, "d": 0}
    assert list(table.index[table["critical"]]) == ["a", "c_0", "c_3", "c_4", "d"]


def test_concurrency_never_counts_the_looped_row_beside_its_iterations(uneven):
    # running: 0–1 a; 1–2 c_0 c_1; 2–3 c_0 c_2; 3–4 c_2 c_3; 4–5 c_2 c_4; 5–8 c_4; 8–9 d
    table = timing.concurrency(uneven)
    assert table.values.tolist() == [
        [0, 1, 1], [1, 2, 2], [2, 3, 2], [3, 4, 2], [4, 5, 2], [5, 8, 1], [8, 9, 1],
    ]  # fmt: skip
    assert table["running"].max() == 2  # maxConcurrency 2 (with the row counted: 3)


def test_concurrency_of_parallelism_4_peaks_at_4():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("c", duration=2, strategy=nbp.Parallelism(4))
    # four copies 0–2 at once: one interval with 4 running (the row counted too: 5)
    assert timing.concurrency(p.simulate()).values.tolist() == [[0, 2, 4]]


def test_summary_busy_time_is_the_iterations_not_the_looped_row(uneven):
    table = timing.summary(uneven).set_index("kind")
    stage = table.loc["stage"]
    # busy = a 1 + c_0..c_4 (2 + 1 + 3 + 1 + 4 = 11) + d 1 = 13 (the row's 7 s not added); span 9
    assert stage["busy_s"] == 13 and stage["span_s"] == 9
    assert stage["speedup"] == pytest.approx(13 / 9)
    assert stage["width"] == 2 and stage["longest_step"] == "c_4" and stage["longest_s"] == 4
    block = table.loc["block"]  # the iterations side by side: 1–8, five items of 11 s
    assert (block["name"], block["width"], block["span_s"], block["busy_s"]) == ("c block 1", 5, 7, 11)
    # idle: each item waits for the straggler (c_4, ends 8): 5 + 6 + 3 + 4 + 0 = 18 lane-seconds
    assert block["idle_s"] == 18 and stage["idle_s"] == 18
    assert "step" not in set(timing.summary(uneven)["kind"])


def test_summary_of_a_looped_stage_holds_its_iterations_steps():
    p = nbp.Pipeline("p")
    with p.stage("s", strategy=nbp.Parallelism(2)) as s:
        s.step("a", duration=3)
    table = timing.summary(p.simulate())
    # the looped stage's own row: both iterations' a (3 + 3 = 6 s) over a 3 s span, width 2
    looped = table[(table["kind"] == "stage") & (table["fqn"] == "pipeline.stages.s")].iloc[0]
    assert (looped["busy_s"], looped["span_s"], looped["width"]) == (6, 3, 2)


def test_step_stats_report_iterations_not_the_looped_row():
    p = window()
    runs = pd.concat([p.simulate(seed=k, run_id=f"r{k}", durations=UNEVEN) for k in range(2)])
    table = timing.step_stats(runs)
    assert f"{STEPS}.c" not in table.index
    assert sorted(table["step"]) == ["a", "c_0", "c_1", "c_2", "c_3", "c_4", "d"]
    assert table.loc[f"{STEPS}.c_4", "critical_share"] == 1.0  # on the path in both runs


def test_gantt_draws_iterations_not_the_looped_row(uneven):
    figure = uneven.pipeline.gantt()
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert labels == ["a", "c_0 [0]", "c_1 [1]", "c_2 [2]", "c_3 [3]", "c_4 [4]", "d"]


def test_perfetto_nests_iterations_in_the_looped_steps_slice(uneven):
    events = trace_events(uneven)
    processes = [e["args"]["name"] for e in events if e.get("name") == "process_name"]
    assert processes == ["pipeline p", "stage s"]  # no process of their own for the iterations
    slices = [
        (e["name"], e["tid"], e["ts"] / 1e6, (e["ts"] + e["dur"]) / 1e6) for e in events if e["ph"] == "X"
    ]
    looped = [x for x in slices if x[0].startswith("c")]
    # the loop's slice spans 1–8 s on the two lanes its iterations take (R54: an iteration that
    # took a freed slot reuses its lane): lane 1 c_0 1–3, c_3 3–4, c_4 4–8; lane 2 c_1 1–2, c_2 2–5
    assert looped == [
        ("c", 1, 1, 8), ("c", 2, 1, 8), ("c_0 [0]", 1, 1, 3), ("c_1 [1]", 2, 1, 2),
        ("c_2 [2]", 2, 2, 5), ("c_3 [3]", 1, 3, 4), ("c_4 [4]", 1, 4, 8),
    ]  # fmt: skip


def test_perfetto_lanes_of_nested_loops_never_overlap():
    p = nbp.Pipeline("p")
    with (
        p.stage("s", strategy=nbp.Repeat(times=2)) as s,
        s.step_group("g", strategy=nbp.Parallelism(3, max_concurrency=2)) as g,
        g.parallel(),
    ):
        g.step("x", duration=2)
        g.step("y", duration=1, strategy=nbp.Repeat(times=3, max_concurrency=1))
    events = [e for e in trace_events(p.simulate()) if e["ph"] == "X"]
    by_lane: dict = {}
    for e in events:
        by_lane.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"]))
    for spans in by_lane.values():  # on one thread, two slices nest or are apart
        for a0, a1 in spans:
            for b0, b1 in spans:
                assert a1 <= b0 or b1 <= a0 or (a0 <= b0 and b1 <= a1) or (b0 <= a0 and a1 <= b1)
    # the stage's process: its 2 iterations side by side; in each, g's window of 2 over 3
    # iterations takes 2 columns, each 2 lanes wide (x ‖ y's loop of one at a time): 2 × 2 × 2 = 8
    lanes = {e["tid"] for e in events if e["pid"] == 2}
    assert lanes == set(range(1, 9))


def test_what_if_changes_an_iteration_or_the_whole_looped_step(uneven):
    # c_4 takes 1 s: c_4 4–5, the loop ends with c_2 at 5, d 5–6 → 6
    one = uneven.pipeline.what_if({"c_4": 1}, pipeline=window())
    assert list(one["makespan_s"]) == [9.0, 6.0]
    # every iteration 1 s: c_0 c_1 1–2, c_2 c_3 2–3, c_4 3–4, d 4–5 → 5 (the measured
    # durations of the iterations no longer shadow the looped step's key)
    every = uneven.pipeline.what_if({"c": 1}, pipeline=window())
    assert list(every["makespan_s"]) == [9.0, 5.0]
    full = f"{STEPS}.c_4"
    assert list(uneven.pipeline.what_if({full: 1}, pipeline=window())["makespan_s"]) == [9.0, 6.0]


def test_harness_execution_strategy_row_is_a_container():
    """A step-level STRATEGY node (Repeat, maxConcurrency 2) is the looped step's row."""
    trace = load_harness_execution(REPEAT_STEP)
    nodes = json.loads(REPEAT_STEP.read_text())["data"]["executionGraph"]["nodeMap"]
    assert nodes["nStrategy"]["stepType"] == "STRATEGY"
    # prep 0–1; compile_0 1–4 and compile_1 1–2 start with the loop; compile_2 takes compile_1's
    # slot at 2 (2–5) and ends the loop at 5; pack 5–6
    assert list(timing.critical_path(trace)["step"]) == ["prep", "compile_1", "compile_2", "pack"]
    assert timing.concurrency(trace)["running"].max() == 2  # the row counted: 3
    slack = timing.slack(trace).set_index("step")["slack_s"]
    assert dict(slack) == {"prep": 0, "compile_0": 1, "compile_1": 0, "compile_2": 0, "pack": 0}
    stage = timing.summary(trace).set_index("kind").loc["stage"]
    assert stage["busy_s"] == 1 + 3 + 1 + 3 + 1  # prep, compile_0..2, pack = 9 (not + the row's 4)


def test_slack_picture_colours_a_looped_step_by_its_least_slack_iteration(uneven):
    from notebook_pipelines.views.rendering import render

    # c_0, c_3 and c_4 are on the path (no slack): the looped box is drawn critical
    source = render(window(), uneven, color_by="slack").source
    (line,) = [line for line in source.splitlines() if f'tooltip="{STEPS}.c\\n' in line]
    assert 'fillcolor="#d32f2f"' in line


def test_what_if_of_a_loaded_harness_execution_changes_one_iteration():
    from notebook_pipelines.formats.harness_executions import pipeline_from_execution

    trace = load_harness_execution(REPEAT_STEP)
    # compile_2 takes 1 s (2–3): the loop now ends with compile_0 at 4, pack 4–5 → 5 (as run: 6)
    result = trace.pipeline.what_if({"compile_2": 1}, pipeline=pipeline_from_execution(trace))
    assert list(result["makespan_s"]) == [6.0, 5.0]
    assert list(result["critical_path"]) == ["prep → compile_1 → compile_2 → pack", "prep → compile_0 → pack"]
