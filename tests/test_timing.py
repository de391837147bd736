"""Timing analysis on traces (issue 14): ``trace.pipeline`` — critical path, slack, concurrency,
summary, what-if, compare, step_stats — with answers computed by hand from virtual time."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pandas as pd
import pytest

import notebook_pipelines as nbp
from notebook_pipelines.engine import registry
from notebook_pipelines.frontends.accessor import PipelineAccessor


def release() -> nbp.Pipeline:
    """build: compile 10 s; group tests: [unit 30 ‖ lint 5], then [e2e 20 (retry once after 5 s) ‖
    smoke 8]; then the parallel stages us (ship_us 15) and eu (ship_eu 12)."""
    p = nbp.Pipeline("release")
    with p.stage("build") as s:
        s.step("compile", duration=10)
        with s.step_group("tests") as g:
            with g.parallel():
                g.step("unit", duration=30)
                g.step("lint", duration=5)
            with g.parallel():
                g.step("e2e", duration=20, failure_strategies=nbp.Retry(1, intervals="5s"))
                g.step("smoke", duration=8)
    with p.parallel():
        with p.stage("us") as us:
            us.step("ship_us", duration=15)
        with p.stage("eu") as eu:
            eu.step("ship_eu", duration=12)
    return p


@pytest.fixture(scope="module")
def trace() -> pd.DataFrame:
    # by hand: compile 0–10; unit 10–40, lint 10–15; e2e#1 40–60 fails, waits 5 s, e2e#2 65–85;
    # smoke 40–48; us 85–100, eu 85–97; the run ends at 100
    return release().simulate(failures={"e2e": 1}, run_id="timing-release")


def test_R5_R11_R18_critical_path_through_blocks_group_retry_and_parallel_stages(trace):
    path = trace.pipeline.critical_path()
    assert list(zip(path["step"], path["attempt"])) == [
        ("compile", 1),
        ("unit", 1),
        ("e2e", 1),
        ("e2e", 2),  # the retry and the 5 s wait before it are on the path (E5)
        ("ship_us", 1),
    ]
    assert list(path["start_s"]) == [0.0, 10.0, 40.0, 65.0, 85.0]
    assert path.index.isin(trace.index).all()  # rows of the trace itself
    assert list(nbp.critical_path(trace)["fqn"]) == list(path["fqn"])  # one implementation


def test_R5_R14_slack_by_hand(trace):
    table = trace.pipeline.slack()
    slack = {(row.step, row.attempt): row.slack_s for row in table.itertuples()}
    assert slack == {
        ("compile", 1): 0.0,
        ("unit", 1): 0.0,
        ("lint", 1): 25.0,  # its block ends with unit at 40
        ("e2e", 1): 0.0,
        ("e2e", 2): 0.0,
        ("smoke", 1): 37.0,  # its block ends with e2e#2 at 85
        ("ship_us", 1): 0.0,
        ("ship_eu", 1): 3.0,  # the parallel stage us ends at 100
    }
    assert {"fqn", "step", "slack_s", "critical"} <= set(table.columns)
    assert list(table.loc[table["critical"], "step"]) == ["compile", "unit", "e2e", "e2e", "ship_us"]


def test_slack_is_what_a_step_can_grow_without_delaying_the_end(trace):
    """The definition checked against the scheduler: grow a step by its slack, the makespan stays;
    by a little more, it grows."""
    for step, grow in (("lint", 25.0), ("smoke", 37.0), ("ship_eu", 3.0)):
        base = {"lint": 5, "smoke": 8, "ship_eu": 12}[step]
        same = release().simulate(failures={"e2e": 1}, durations={step: base + grow})
        later = release().simulate(failures={"e2e": 1}, durations={step: base + grow + 1})
        assert same["end_s"].max() == 100.0, step
        assert later["end_s"].max() == 101.0, step


def test_R13_D8_critical_path_through_a_shared_resource():
    p = nbp.Pipeline("p")
    with p.parallel():
        with p.stage("a", resource="infra") as a:
            a.step("x", duration=4)
        with p.stage("b", resource="infra") as b:
            b.step("y", duration=3)
    trace = p.simulate()
    assert list(trace.pipeline.critical_path()["step"]) == ["x", "y"]  # b waited for a
    assert list(trace.pipeline.slack()["slack_s"]) == [0.0, 0.0]


def test_efficiency_of_a_block_with_one_straggler():
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        for name, seconds in (("a", 10), ("b", 10), ("c", 10), ("slow", 40)):
            s.step(name, duration=seconds)
    trace = p.simulate()
    block = trace.pipeline.concurrency("block").iloc[0]
    assert (block["width"], block["span_s"], block["busy_s"]) == (4, 40.0, 70.0)
    assert block["efficiency"] == 70 / (4 * 40)  # 0.4375
    assert block["idle_s"] == 3 * 30.0  # three lanes wait 30 s for the straggler
    over_time = trace.pipeline.concurrency()
    assert over_time.to_dict("list") == {"start_s": [0.0, 10.0], "end_s": [10.0, 40.0], "running": [4, 1]}


def test_summary_per_stage_group_and_block(trace):
    table = trace.pipeline.summary().set_index(["kind", "name"])
    group = table.loc[("step_group", "tests")]
    assert (group["span_s"], group["busy_s"], group["width"]) == (75.0, 83.0, 2)  # 30+5+20+20+8
    assert group["speedup"] == pytest.approx(83 / 75)
    assert (group["longest_step"], group["longest_s"]) == ("e2e", 40.0)  # both attempts
    assert group["idle_s"] == 25.0 + 37.0
    first = table.loc[("block", "tests block 0")]
    assert (first["span_s"], first["busy_s"], first["efficiency"]) == (30.0, 35.0, 35 / 60)
    stages = table.loc["stage"]
    assert stages["span_s"].to_dict() == {"build": 85.0, "us": 15.0, "eu": 12.0}
    assert table.loc[("pipeline", "pipeline"), "span_s"] == 100.0
    with pytest.raises(nbp.TraceError, match="by is None"):
        trace.pipeline.concurrency("stages")


def test_what_if_shortening_a_critical_step_moves_the_path(trace):
    table = trace.pipeline.what_if(durations={"ship_us": 5})
    assert list(table.index) == ["as run", "what if"]
    assert table.loc["as run", "makespan_s"] == 100.0  # the measured durations replay the run
    assert table.loc["what if", "makespan_s"] == 97.0  # eu (12 s) is now the longer stage
    assert table.loc["what if", "change_s"] == -3.0
    assert table.loc["as run", "critical_path"] == "compile → unit → e2e → e2e#2 → ship_us"
    assert table.loc["what if", "critical_path"] == "compile → unit → e2e → e2e#2 → ship_eu"


def test_what_if_changes_a_failure_strategy(trace):
    table = trace.pipeline.what_if(strategy={"e2e": nbp.Retry(0)})
    assert table.loc["what if", "status"] == "Failed"  # no retry: the measured failure ends it
    with pytest.raises(nbp.SimulationError, match="did you mean 'e2e'"):
        trace.pipeline.what_if(strategy={"e2f": nbp.Retry(0)})
    with pytest.raises(nbp.SimulationError, match="did you mean 'unit'"):
        trace.pipeline.what_if(durations={"unti": 1})


def test_what_if_without_a_known_plan_says_to_pass_the_pipeline(trace, tmp_path):
    path = tmp_path / "run.csv"
    trace.to_csv(path, index=False)
    back = nbp.read_trace(path).assign(run_id="from-a-file")
    with pytest.raises(nbp.TraceError, match=r"pass it, trace.pipeline.what_if\(..., pipeline=p\)"):
        back.pipeline.what_if(durations={"ship_us": 5})
    table = back.pipeline.what_if(durations={"ship_us": 5}, pipeline=release())
    assert table.loc["what if", "makespan_s"] == 97.0
    other = nbp.Pipeline("other", stages=[nbp.Stage("s", items=[nbp.Step("a")])])
    with pytest.raises(nbp.TraceError, match="is not the one this trace ran"):
        back.pipeline.what_if(pipeline=other)


def test_registry_keeps_the_last_runs_and_tells_pipelines_apart():
    p, q = release(), nbp.Pipeline("q", stages=[nbp.Stage("s", items=[nbp.Step("a", duration=1)])])
    tp = p.simulate(run_id="shared-id")
    tq = q.simulate(run_id="shared-id")  # another pipeline under the same run id
    assert registry.plan_of("shared-id", pipeline="release", fqns=tp["fqn"]).pipeline is p
    assert registry.plan_of("shared-id", pipeline="q", fqns=tq["fqn"]).pipeline is q
    for k in range(registry.MAX_RUNS):
        registry.remember(f"filler-{k}", q.plan())
    assert registry.plan_of("shared-id") is None  # bounded: the oldest run ids go


def test_registry_keeps_large_plans_only_up_to_max_nodes_and_always_the_latest(monkeypatch):
    """Large plans go first by their size, not only by their count: 64 plans of a 100,000-step
    pipeline would keep gigabytes alive (and slow every full garbage collection)."""
    monkeypatch.setattr(registry, "_RUNS", type(registry._RUNS)())
    monkeypatch.setattr(registry, "_NODES", [0])
    monkeypatch.setattr(registry, "MAX_NODES", 10)
    p = nbp.Pipeline("big")
    with p.stage("s") as s:
        for k in range(4):
            s.step(f"x{k}", duration=1)
    plan = p.plan()
    size = len(plan.nodes)  # pipeline, stage, 4 steps
    assert size == 1 + 1 + 4
    keys = [registry.remember(f"run-{k}", plan) for k in range(3)]
    # run-0 and run-1 together hold 12 nodes beside the latest > 10: run-0 goes; run-1 (6) stays
    assert registry.plan_of("run-0", key=keys[0]) is None
    assert registry.plan_of("run-1", key=keys[1]) is plan
    assert registry.plan_of("run-2", key=keys[2]) is plan
    assert registry._NODES[0] == 2 * size
    monkeypatch.setattr(registry, "MAX_NODES", 0)
    latest = registry.remember("run-3", plan)  # beyond the bound alone: still kept, the others go
    assert registry.plan_of("run-3", key=latest) is plan
    assert [registry.plan_of(f"run-{k}", key=keys[k]) for k in range(3)] == [None, None, None]
    assert registry._NODES[0] == size


def test_repeated_simulations_of_a_large_pipeline_do_not_keep_every_plan_alive(monkeypatch):
    monkeypatch.setattr(registry, "MAX_NODES", 3_000)
    p = nbp.Pipeline("wide")
    with p.stage("s") as s:
        for k in range(2_000):
            s.step(f"x{k}", duration=1)
    traces = [p.simulate() for _ in range(3)]
    wide = [run for run in registry._RUNS.values() if run.pipeline == "wide"]
    # 2,002 nodes a plan: the latest, and one more (2,002 ≤ 3,000; two more would be 4,004)
    assert len(wide) == 2
    assert registry._NODES[0] == sum(len(run.plan.nodes) for run in registry._RUNS.values())
    assert traces[-1].pipeline.what_if()["makespan_s"].iloc[0] == 2_000  # the latest still finds its plan


def test_simulations_sharing_a_run_id_each_find_their_own_pipeline():
    """Two layouts of one pipeline id simulated with the same seed share ``sim-0``: each trace
    still re-simulates its own layout (on main, the serial trace's what-if used the later one)."""

    def layout(parallel: bool) -> nbp.Pipeline:
        p = nbp.Pipeline("p")
        with p.stage("s") as s:
            block = s.parallel() if parallel else contextlib.nullcontext()
            with block:
                s.step("a", duration=10)
                s.step("b", duration=30)
        return p

    serial, parallel = layout(False).simulate(), layout(True).simulate()
    assert serial["run_id"].iloc[0] == parallel["run_id"].iloc[0] == "sim-0"
    assert serial.pipeline.what_if()["makespan_s"].tolist() == [10 + 30, 10 + 30]
    assert parallel.pipeline.what_if()["makespan_s"].tolist() == [max(10, 30)] * 2


def test_analyses_own_simulations_do_not_push_the_users_runs_out_of_the_registry():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        for k in range(6):
            s.step(f"x{k}", duration=k + 1)
    trace = p.simulate(run_id="mine")
    nbp.compare({f"d{k}": p for k in range(registry.MAX_RUNS + 1)})
    nbp.suggest_layout(p)
    assert trace.pipeline.what_if()["makespan_s"].iloc[0] == 1 + 2 + 3 + 4 + 5 + 6  # its plan is known


def test_compare_two_runs_node_by_node(trace):
    faster = release().simulate(failures={"e2e": 1}, durations={"unit": 20})
    table = trace.pipeline.compare(faster)
    assert table.loc["pipeline", "change_s"] == -10.0
    unit = table[table["name"] == "unit"].iloc[0]
    assert (unit["this_s"], unit["other_s"], unit["ratio"]) == (30.0, 20.0, 20 / 30)
    e2e = table[table["name"] == "e2e"].iloc[0]
    assert (e2e["this_s"], e2e["this_attempts"]) == (45.0, 2)  # first start to last end


def test_step_stats_finds_the_step_whose_variance_drives_the_makespan():
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        s.step("wobbly", duration=lambda rng: rng.uniform(10, 20))
        s.step("steady", duration=lambda rng: rng.uniform(1, 2))
    runs = pd.concat([p.simulate(seed=k, run_id=f"mc-{k}") for k in range(30)], ignore_index=True)
    every = runs.pipeline.step_stats()
    assert list(every["kind"]) == ["pipeline", "stage", "step", "step"]  # the makespan itself first
    stats = every[every["kind"] == "step"]
    assert list(stats["step"]) == ["wobbly", "steady"]  # sorted by correlation with the makespan
    assert stats.loc[stats.index[0], "corr_makespan"] == pytest.approx(1.0)
    assert stats["runs"].tolist() == [30, 30]
    assert stats["critical_share"].tolist() == [1.0, 0.0]
    assert 10 <= stats["min_s"].iloc[0] <= stats["mean_s"].iloc[0] <= stats["max_s"].iloc[0] <= 20
    same_id = pd.concat([p.simulate(seed=k) for k in range(2)] * 1, ignore_index=True)
    same_id["run_id"] = "sim-0"
    with pytest.raises(nbp.TraceError, match="share a run_id"):
        same_id.pipeline.step_stats()
    with pytest.raises(nbp.TraceError, match="select one"):
        runs.pipeline.critical_path()


def test_iteration_column_with_values_is_accepted(trace):
    """Looping is issue 12; rows with iterations (the same node twice) are separate units."""
    looped = trace.copy()
    ship = looped[looped["step"] == "ship_eu"].copy()
    ship["iteration"] = pd.array([1], dtype="Int64")
    ship["start_s"], ship["end_s"] = 85.0, 99.0
    looped.loc[looped["step"] == "ship_eu", "iteration"] = 0
    looped = pd.concat([looped, ship], ignore_index=True)
    assert len(looped.pipeline.slack()) == 9
    assert looped.pipeline.slack().query("step == 'ship_eu'")["slack_s"].tolist() == [3.0, 1.0]


def test_not_a_trace_is_a_clear_error():
    with pytest.raises(nbp.TraceError, match="lacks the columns"):
        pd.DataFrame({"x": [1]}).pipeline.critical_path()


def test_accessor_is_registered_on_import_without_importing_pandas():
    code = (
        "import sys, notebook_pipelines as nbp\n"
        "assert 'pandas' not in sys.modules\n"
        "p = nbp.Pipeline('p', stages=[nbp.Stage('s', items=[nbp.Step('a', duration=2)])])\n"
        "t = p.simulate()\n"
        "print(list(t.pipeline.critical_path()['step']), type(t.pipeline).__name__)\n"
        "import importlib.abc\n"
        "print(any(type(f).__name__ == '_PandasHook' for f in sys.meta_path))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["['a'] PipelineAccessor", "False"]  # the hook removed itself
    code = "import pandas, notebook_pipelines; print(pandas.DataFrame.pipeline.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "PipelineAccessor"  # pandas imported first: registered at once
    assert pd.DataFrame.pipeline is PipelineAccessor


def test_a_run_key_from_another_process_matches_no_run_here(tmp_path):
    """``attrs`` survive Parquet (pandas keeps them): a trace from another kernel must not find
    the plan of this kernel's run that happens to have the same counter."""
    p = release()
    trace = p.simulate(run_id="elsewhere")
    foreign = trace.copy()
    foreign.attrs["run_key"] = "00000000-" + trace.attrs["run_key"].split("-")[1]
    foreign["run_id"] = "a-run-of-another-kernel"
    assert registry.plan_for_trace(trace).pipeline is p
    assert registry.plan_for_trace(foreign) is None
