"""The vectorised Monte Carlo path (issue 28): exact agreement with the scheduler, and when it declines."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import measured_history, two_steps
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import notebook_pipelines as nbp
from notebook_pipelines.analysis.montecarlo import _critical_records
from notebook_pipelines.analysis.whatif import what_if
from notebook_pipelines.engine.vectorised import batch, step_durations, why_not

# -- random pipelines: stages (some in parallel), steps, parallel blocks, step groups, `when` --------
_WHEN = st.sampled_from([None, None, None, "All", "Failure"])
_SECONDS = st.one_of(
    st.sampled_from([0.0, 0.1, 0.2, 0.3, 1.0, 1e-9, 3.7]),
    st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False),
)


#: needs inside a parallel block (D14): per member, a rank and the positions it may name; a
#: member needs the named members of lower rank (a random DAG over a random topological order)
_NEEDS = st.tuples(
    st.lists(st.integers(0, 9), min_size=4, max_size=4),
    st.lists(st.lists(st.integers(0, 3), max_size=3), min_size=4, max_size=4),
)


def _needs(spec, ids: list[str]) -> list[list[str] | None]:
    """The needs of each member of a block of ``ids`` under the drawn ``spec`` (acyclic)."""
    if spec is None:
        return [None] * len(ids)
    ranks, named = spec
    rank = [(ranks[k % 4], k) for k in range(len(ids))]
    out = []
    for k in range(len(ids)):
        picks = [j % len(ids) for j in named[k % 4]]
        out.append(sorted({ids[j] for j in picks if rank[j] < rank[k]}) or None)
    return out


def _items(depth: int) -> st.SearchStrategy:
    leaf = st.tuples(
        st.just("step"),
        _WHEN,
        st.sampled_from([None, None, None, 5.0, 1e9]),
        st.sampled_from([0, 0, 0, 1, 3]),
    )
    if depth == 0:
        return st.lists(leaf, min_size=1, max_size=3)
    group = st.tuples(st.just("group"), _WHEN, st.deferred(lambda: _items(depth - 1)))
    one = st.one_of(leaf, leaf, group)
    block = st.tuples(st.just("parallel"), st.lists(one, min_size=1, max_size=4), st.none() | _NEEDS)
    return st.lists(st.one_of(one, one, block), min_size=1, max_size=4)


_SHAPES = st.lists(
    st.tuples(
        st.booleans(), st.lists(st.tuples(_WHEN, _items(2)), min_size=1, max_size=3), st.none() | _NEEDS
    ),
    min_size=1,
    max_size=3,
)


def _build(shape: list) -> nbp.Pipeline:
    p = nbp.Pipeline("p", rules="current")  # step groups in step groups too
    counter = iter(range(10_000))

    def one(container, item, ident, needs=None):
        if item[0] == "step":
            loop = nbp.Matrix(i=list(range(item[3]))) if item[3] else None  # iterations side by side
            container.step(ident, when=item[1], timeout=item[2], strategy=loop, needs=needs)
        else:
            with container.step_group(ident, when=item[1], needs=needs) as g:
                fill(g, item[2])

    def fill(container, items):
        for item in items:
            if item[0] == "parallel":
                ids = [f"{m[0][0]}{next(counter)}" for m in item[1]]
                with container.parallel():
                    for member, ident, needs in zip(item[1], ids, _needs(item[2], ids)):
                        one(container, member, ident, needs)
            else:
                one(container, item, f"{item[0][0]}{next(counter)}")

    for together, stages, spec in shape:
        ids = [f"st{next(counter)}" for _ in stages]
        needs = _needs(spec, ids) if together and len(stages) > 1 else [None] * len(ids)

        def add(stages=stages, ids=ids, needs=needs):
            for (when, items), ident, need in zip(stages, ids, needs):
                with p.stage(ident, when=when, needs=need) as s:
                    fill(s, items)

        if together and len(stages) > 1:
            with p.parallel():
                add()
        else:
            add()
    return p


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=_SHAPES, data=st.data())
def test_vectorised_path_agrees_exactly_with_the_scheduler(shape, data):
    """Every node's start and end (not only the makespan), bit for bit, for random structures
    (random needs DAGs inside the parallel blocks too, D14)."""
    plan = _build(shape).plan()
    assert why_not(plan) is None
    steps = [n for n in plan.nodes if n.kind == "step"]
    values = {n.fqn: data.draw(_SECONDS) for n in steps}
    runs = 3
    per_step = {n.index: np.array([values[n.fqn]] * runs) for n in steps}
    result = batch(plan, per_step, runs)
    trace = nbp.simulate(plan, durations=values)
    expired = result.timeout_reached()
    if expired is not None:  # the batch sends this one to the scheduler: a step ends at or past it
        row = trace[trace["fqn"] == expired].iloc[0]
        assert row["status"] == "Expired" or row["end_s"] == row["start_s"] + plan.by_fqn[expired].timeout
        return
    rows = trace[trace["iteration"].isna()]  # the plan's nodes (a looped node's own row spans its copies)
    for node, (_, row) in zip(plan.nodes, rows.iterrows()):
        assert row["fqn"] == node.fqn
        assert str(row["status"]) == result.status[node.index], node.fqn
        for column, got in (("start_s", result.start), ("end_s", result.end)):
            want = row[column]
            if np.isnan(want):
                assert np.isnan(got[node.index]).all(), (node.fqn, column)
            else:
                assert (got[node.index] == want).all(), (node.fqn, column, got[node.index], want)
    # the critical nodes: the batch's rule and the scheduler path's (monte_carlo), back along needs too
    records = [
        SimpleNamespace(node=n.index, start_s=row["start_s"], end_s=row["end_s"], status=str(row["status"]))
        for n, (_, row) in zip(plan.nodes, rows.iterrows())
    ]
    assert set(np.flatnonzero(result.critical()[:, 0])) == _critical_records(plan, records)


def test_the_timeout_named_is_the_one_that_expires_first_not_the_first_in_plan_order():
    """[g: a 10 s, then b 10 s (timeout 5)] beside c 10 s (timeout 5): c's deadline is 0 + 5 = 5 s,
    b's would be 10 + 5 = 15 s. c expires at 5 s; the stage has failed when a ends at 10 s, so b is
    skipped (R29) and never reaches its timeout, though it comes first in plan order."""
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        with s.step_group("g") as g:
            g.step("a", duration=10)
            g.step("b", duration=10, timeout="5s")
        s.step("c", duration=10, timeout="5s")
    plan = p.plan()
    per_step = {n.index: np.array([10.0]) for n in plan.nodes if n.kind == "step"}
    named = batch(plan, per_step, 1).timeout_reached()
    trace = nbp.simulate(plan)
    status = dict(zip(trace["fqn"], trace["status"].astype(str)))
    assert named == "pipeline.stages.s.spec.execution.steps.c" and status[named] == "Expired"
    assert status["pipeline.stages.s.spec.execution.steps.g.steps.b"] == "Skipped"


def test_why_not_says_why_it_declines():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", when="<+pipeline.variables.x> == 1")
    p.variables = {"x": 1}
    assert "condition on run-time values" in why_not(p.plan())
    q = nbp.Pipeline("q")
    with q.stage("s") as s:
        s.step("a", failure_strategies=nbp.Retry(2))
    assert why_not(q.plan()) is None  # a retry cannot act when nothing fails
    assert "injects failures" in why_not(q.plan(), failures={"a": 0.5})
    assert "function of the node" in why_not(q.plan(), durations=lambda node, rng: 1.0)


def test_samplers_are_drawn_all_at_once_and_replay_as_a_batch():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", duration=lambda rng: rng.lognormal(1, 0.3))
        s.step("b", duration=lambda rng: float(rng.uniform(1, 2)))  # a scalar: called per run
    plan = p.plan()
    one = step_durations(plan, None, 1.0, 500, seed=7)
    two = step_durations(plan, None, 1.0, 500, seed=7)
    a, b = (n.index for n in plan.steps)
    assert one[a].shape == (500,) and np.array_equal(one[a], two[a]) and np.array_equal(one[b], two[b])
    assert one[b].min() >= 1.0 and one[b].max() <= 2.0 and len(set(one[b])) == 500


def test_a_negative_sampled_duration_is_refused_naming_the_step():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", duration=lambda rng: rng.normal(0, 1))
    with pytest.raises(nbp.SimulationError, match=r"steps\.a"):
        step_durations(p.plan(), None, 1.0, 100, seed=0)


# -- monte_carlo: which engine runs, and agreement ----------------------------------------------------
def _serial_and_parallel() -> nbp.Pipeline:
    p = nbp.Pipeline("p")
    with p.stage("build") as s:
        s.step("compile", duration=20)
        with s.parallel():
            s.step("unit", duration=30)
            with s.step_group("checks") as g:
                g.step("lint", duration=10)
                g.step("types", duration=12.5)
    with p.stage("ship") as s:
        s.step("deploy", duration=5)
    return p


def test_monte_carlo_auto_runs_vectorised_and_agrees_with_the_scheduler_run_for_run():
    p = _serial_and_parallel()
    fast = nbp.monte_carlo(p, runs=20, seed=4)
    slow = nbp.monte_carlo(p, runs=20, seed=4, engine="scheduler")
    assert fast.attrs["engine"] == "vectorised" and fast.attrs["replay"] == "run"
    assert (
        slow.attrs["engine"] == "scheduler"
        and slow.attrs["engine_reason"] == "engine='scheduler' was asked for"
    )
    for column in ("run", "seed", "makespan_s", "status", "stage:build", "stage:ship"):
        assert fast[column].tolist() == slow[column].tolist(), column
    assert fast["makespan_s"].iloc[0] == 20 + 30 + 5  # compile, then unit (30 > 10 + 12.5), then deploy
    assert fast.attrs["criticality"] == slow.attrs["criticality"]


def test_monte_carlo_auto_falls_back_to_the_scheduler_and_says_why():
    p = _serial_and_parallel()
    mc = nbp.monte_carlo(p, runs=5, failures={"unit": 0.5})
    assert mc.attrs["engine"] == "scheduler"
    assert mc.attrs["engine_reason"].startswith("failures= injects failures")
    assert "on the scheduler path (failures= injects failures" in repr(nbp.distribution(mc))
    with pytest.raises(nbp.SimulationError, match="needs the scheduler: failures= injects failures"):
        nbp.monte_carlo(p, runs=5, failures={"unit": 0.5}, engine="vectorised")


def test_monte_carlo_sampled_on_the_vectorised_path_replays_as_a_batch():
    p = _serial_and_parallel()
    sampled = {"unit": lambda rng: rng.lognormal(3.4, 0.3)}
    one = nbp.monte_carlo(p, sampled, runs=300, seed=9)
    two = nbp.monte_carlo(p, sampled, runs=300, seed=9)
    pd.testing.assert_frame_equal(one, two)
    assert one.attrs["replay"] == "batch" and one["seed"].isna().all()
    assert "runs replay as a batch" in repr(nbp.distribution(one))
    # the same distribution as the scheduler's (different draws): the medians are close
    slow = nbp.monte_carlo(p, sampled, runs=300, seed=9, engine="scheduler")
    assert abs(one["makespan_s"].median() - slow["makespan_s"].median()) < 3.0


# -- criticality under the design: a case with a known answer ------------------------------------------
def _fork() -> nbp.Pipeline:
    p = nbp.Pipeline("fork")
    with p.stage("s") as s:
        with s.parallel():
            s.step("a")
            s.step("b")
        s.step("c")
    return p


def test_criticality_index_of_a_fork_is_the_share_of_runs_each_branch_is_longest():
    plan = _fork().plan()
    a, b, c = (n.index for n in plan.steps)
    # four runs: a = 1, 3, 3, 2 and b = 2 always; c = 1.
    # run 1: b longest; runs 2, 3: a longest; run 4: a tie (both critical).
    # a: runs 2, 3, 4 → 3/4; b: runs 1, 4 → 2/4; c (serial, after the block): 4/4
    result = batch(plan, {a: np.array([1.0, 3, 3, 2]), b: 2.0, c: 1.0}, 4)
    crit = result.critical().mean(axis=1)
    assert (crit[a], crit[b], crit[c]) == (0.75, 0.5, 1.0)
    # the same four runs measured, resampled whole (joint): the index is the same shares
    h = measured_history({str(i): {"a": x, "b": 2.0, "c": 1.0} for i, x in enumerate([1.0, 3, 3, 2])}, plan)
    mc = nbp.monte_carlo(plan, h, runs=20_000, seed=1)
    fqn = {n.id: n.fqn for n in plan.steps}
    assert mc.attrs["engine"] == "vectorised"
    assert mc.attrs["criticality"][fqn["a"]] == pytest.approx(0.75, abs=0.015)
    assert mc.attrs["criticality"][fqn["b"]] == pytest.approx(0.5, abs=0.015)
    assert mc.attrs["criticality"][fqn["c"]] == 1.0
    # the scheduler path counts the same rule run by run
    slow = nbp.monte_carlo(plan, h, runs=400, seed=1, engine="scheduler")
    assert slow.attrs["criticality"][fqn["a"]] == pytest.approx(0.75, abs=0.08)
    assert slow.attrs["criticality"][fqn["c"]] == 1.0


# -- durations from a history: joint vs independent ---------------------------------------------------
def test_joint_resampling_keeps_the_correlation_independent_does_not():
    plan = two_steps().plan()
    # ten measured runs where a and b took the same time: k seconds each, k = 1 … 10
    h = measured_history({str(k): {"a": float(k), "b": float(k)} for k in range(1, 11)}, plan)
    joint = nbp.monte_carlo(plan, h, runs=20_000, seed=3)
    independent = nbp.monte_carlo(plan, h, runs=20_000, seed=3, mode="independent")
    # joint: the sum is 2k, k uniform on 1…10: P(sum ≤ 18) = 9/10 < 0.95, P(sum = 20) = 1/10 → p95 = 20
    assert np.percentile(joint["makespan_s"], 95) == 20.0
    assert set(joint["makespan_s"]) == {float(2 * k) for k in range(1, 11)}
    # independent: P(a + b ≥ 19) = (1 + 2)/100 = 3 %, P(a + b ≥ 18) = (1 + 2 + 3)/100 = 6 %,
    # so P(sum ≤ 17) = 94 % < 95 % ≤ P(sum ≤ 18) = 97 % → p95 = 18
    assert np.percentile(independent["makespan_s"], 95) == 18.0
    assert len(set(independent["makespan_s"])) == 19  # every sum 2 … 20


def test_history_runs_replay_one_by_one_on_the_scheduler_path():
    plan = two_steps().plan()
    h = measured_history({str(k): {"a": float(k), "b": float(10 * k)} for k in range(1, 6)}, plan)
    mc = nbp.monte_carlo(plan, h, runs=12, seed=5, engine="scheduler")
    assert set(mc["makespan_s"]) <= {11.0 * k for k in range(1, 6)}  # joint: a and b of one run
    for row in mc.iloc[[0, 7]].itertuples():
        trace = nbp.simulate(plan, durations=h, seed=int(row.seed))
        assert trace.loc[trace["kind"] == "pipeline", "duration_s"].iloc[0] == row.makespan_s


def test_steps_the_history_lacks_take_the_default_with_a_warning_naming_them():
    p = two_steps()
    with p.stage("late") as s:
        s.step("new")
    plan = p.plan()
    h = measured_history({"1": {"a": 2.0, "b": 3.0}}, plan)
    with pytest.warns(
        nbp.HistoryDurationsWarning, match=r"steps\.new; they take their own duration= or default="
    ):
        mc = nbp.monte_carlo(plan, h, runs=10, default=7.0)
    assert set(mc["makespan_s"]) == {2.0 + 3.0 + 7.0}


def test_failures_history_injects_the_measured_failure_rates():
    plan = two_steps().plan()
    h = measured_history({str(k): {"a": 1.0, "b": 1.0} for k in range(4)}, plan)
    h.loc[(h["run_id"] == "0") & (h["step"] == "b"), "status"] = "Failed"  # b failed 1 attempt of 4
    from notebook_pipelines.engine.measured import HistoryDurations

    assert HistoryDurations(h, plan).failure_rates() == {plan.steps[1].fqn: 0.25}
    mc = nbp.monte_carlo(plan, h, runs=400, failures="history")
    assert mc.attrs["engine"] == "scheduler" and "injects failures" in mc.attrs["engine_reason"]
    assert (mc["status"] == "Failed").mean() == pytest.approx(0.25, abs=0.07)


# -- what_if on a history: before/after p50 and p95, and what becomes critical ------------------------
def _unit_scan(parallel: bool) -> nbp.Pipeline:
    p = nbp.Pipeline("ci")
    with p.stage("s") as s:
        if parallel:
            with s.parallel():
                s.step("unit")
                s.step("scan")
        else:
            s.step("unit")
            s.step("scan")
    return p


def test_what_if_of_a_history_moving_scan_beside_unit():
    serial, parallel = _unit_scan(False), _unit_scan(True)
    # five measured runs: unit 12 s, scan 5k s (k = 1 … 5), resampled whole
    h = measured_history({str(k): {"unit": 12.0, "scan": 5.0 * k} for k in range(1, 6)}, serial.plan())
    table = what_if(h, pipeline=serial, design=parallel, runs=10_000)
    # before (serial): 12 + 5k = 17, 22, 27, 32, 37, each 1/5: p50 = 27 (cdf 0.4 at 22, 0.6 at 27),
    # p95 = 37 (the top fifth). After (side by side): max(12, 5k) = 12, 12, 15, 20, 25: p50 = 15, p95 = 25
    assert table.loc["as measured", ["p50_s", "p95_s"]].tolist() == [27.0, 37.0]
    assert table.loc["what if", ["p50_s", "p95_s"]].tolist() == [15.0, 25.0]
    assert table.loc["what if", ["change_p50_s", "change_p95_s"]].tolist() == [-12.0, -12.0]
    # side by side, scan is the longer in 3 runs of 5 (k = 3, 4, 5), unit in 2 (k = 1, 2)
    assert table.loc["what if", "critical"] == "scan"
    assert table.loc["as measured", "critical"] in ("unit, scan", "scan, unit")
    assert set(table["engine"]) == {"vectorised"}


def test_what_if_of_a_history_scan_faster_makes_unit_critical():
    parallel = _unit_scan(True)
    h = measured_history({str(k): {"unit": 12.0, "scan": 5.0 * k} for k in range(1, 6)}, parallel.plan())
    table = what_if(h, pipeline=parallel, scale={"scan": 0.4}, runs=10_000)
    # scan 60 % faster: 2k ≤ 10 < 12 in every run: the makespan is unit's 12 s, and unit becomes critical
    assert table.loc["what if", ["p50_s", "p95_s"]].tolist() == [12.0, 12.0]
    assert table.loc["as measured", "critical"] == "scan"
    assert table.loc["what if", "becomes_critical"] == "unit"


def test_suggest_layout_on_a_history_ranks_by_p50_and_shows_p95():
    serial = _unit_scan(False)
    h = measured_history({str(k): {"unit": 12.0, "scan": 5.0 * k} for k in range(1, 6)}, serial.plan())
    found = nbp.suggest_layout(serial, trace=h)
    best = found.best
    # side by side (as in the what-if above): p50 15, p95 25; the original serial: p50 27, p95 37
    assert (found.original_p50_s, found.original_p95_s) == (27.0, 37.0)
    assert (best.p50_s, best.p95_s) == (15.0, 25.0)
    assert "p50 15 s, p95 25 s" in found.text() and "original p50 27 s, p95 37 s" in found.text()
    assert found.table()[0]["p50_s"] == 15.0


def test_compare_takes_a_history_and_draws_the_same_measured_run_for_every_design():
    serial, parallel = _unit_scan(False), _unit_scan(True)
    h = measured_history({str(k): {"unit": 12.0, "scan": 5.0 * k} for k in range(1, 6)}, serial.plan())
    table = nbp.compare({"serial": serial, "parallel": parallel}, durations=h, seed=2)
    unit_plus_scan, longest = table["makespan_s"].tolist()
    k = (unit_plus_scan - 12.0) / 5.0  # the run drawn with seed 2, the same for both designs
    assert k in (1.0, 2.0, 3.0, 4.0, 5.0) and longest == max(12.0, 5.0 * k)


def test_the_accessor_what_if_takes_a_history():
    serial, parallel = _unit_scan(False), _unit_scan(True)
    h = measured_history({str(k): {"unit": 12.0, "scan": 5.0 * k} for k in range(1, 6)}, serial.plan())
    table = h.pipeline.what_if(pipeline=serial, design=parallel, runs=2_000)
    assert table.loc["what if", ["p50_s", "p95_s"]].tolist() == [15.0, 25.0]


def test_steps_inside_a_looped_stage_take_the_longest_iteration_of_each_measured_run():
    from notebook_pipelines.engine.measured import HistoryDurations

    p = nbp.Pipeline("loop")
    with p.stage("build", strategy=nbp.Matrix(os=["ubuntu", "macos"])) as s:
        s.step("make")
    plan = p.plan()
    rows = []
    for run, (ubuntu, macos) in enumerate([(10.0, 30.0), (25.0, 5.0)]):
        for i, (os_, seconds) in enumerate((("ubuntu", ubuntu), ("macos", macos))):
            rows.append(
                {"run_id": str(run), "fqn": f"pipeline.stages.build_{os_}.spec.execution.steps.make",
                 "parent": f"pipeline.stages.build_{os_}", "kind": "step", "step": "make", "attempt": 1,
                 "status": "Success", "start_s": 0.0, "end_s": seconds, "iteration": i}
            )  # fmt: skip
    measured = HistoryDurations(pd.DataFrame(rows), plan)
    # run 0: max(10, 30) = 30; run 1: max(25, 5) = 25 (the iterations run side by side)
    assert measured.missing == [] and measured.matrix[:, 0].tolist() == [30.0, 25.0]


def test_timeouts_stay_on_the_vectorised_path_until_a_run_reaches_one():
    p = nbp.Pipeline("t")
    with p.stage("s", timeout="1h") as s:
        s.step("a", timeout="10s")
        s.step("b", timeout="1m")
    plan = p.plan()
    short = {"a": lambda rng: rng.uniform(1, 9), "b": 5.0}
    fast = nbp.monte_carlo(plan, short, runs=200)
    assert fast.attrs["engine"] == "vectorised" and (fast["status"] == "Success").all()
    # a up to 12 s: past its 10 s timeout in about a quarter of the runs → the scheduler, which expires it
    long = {"a": lambda rng: rng.uniform(4, 12), "b": 5.0}
    slow = nbp.monte_carlo(plan, long, runs=200)
    assert slow.attrs["engine"] == "scheduler"
    assert (
        slow.attrs["engine_reason"]
        == "pipeline.stages.s.spec.execution.steps.a reaches its timeout in some runs"
    )
    assert set(slow["status"]) == {"Success", "Expired"}
    # the same constant durations: both paths give the same runs
    exact = {"a": 9.5, "b": 5.0}
    one, two = (nbp.monte_carlo(plan, exact, runs=3, engine=e) for e in ("auto", "scheduler"))
    assert one.attrs["engine"] == "vectorised" and one["makespan_s"].tolist() == two["makespan_s"].tolist()


# -- looping strategies: iterations side by side, each with the same duration ------------------------
def _looped(max_concurrency=None) -> nbp.Pipeline:
    p = nbp.Pipeline("loops")
    with p.stage("build", strategy=nbp.Matrix(os=["ubuntu", "macos"])) as s:
        s.step("make", duration=7.5)
        s.step("pack", duration=1.25)
    with p.stage("test") as s:
        s.step("unit", duration=3.0, strategy=nbp.Matrix(shard=[1, 2, 3], max_concurrency=max_concurrency))
        s.step("lint", duration=0.5)
    return p


def test_loops_whose_iterations_run_side_by_side_take_the_vectorised_path_and_agree():
    plan = _looped().plan()
    assert why_not(plan) is None
    fast = nbp.monte_carlo(plan, runs=4)
    slow = nbp.monte_carlo(plan, runs=4, engine="scheduler")
    assert fast.attrs["engine"] == "vectorised"
    for column in ("seed", "makespan_s", "stage:build", "stage:test"):
        assert fast[column].tolist() == slow[column].tolist(), column
    # build: both iterations at once, 7.5 + 1.25; test: three shards at once (3), then lint (0.5)
    assert fast["makespan_s"].iloc[0] == 7.5 + 1.25 + 3.0 + 0.5
    trace = nbp.simulate(plan)
    result = batch(plan, step_durations(plan, None, 1.0, 1, 0), 1)
    looped = {n.index for n in plan.nodes if n.strategy is not None}
    for node in plan.nodes:  # the plan's nodes outside loops and the looped nodes themselves
        if node.index in plan.inside_loops():
            continue
        row = trace[(trace["fqn"] == node.fqn) & trace["iteration"].isna()].iloc[0]
        assert (row["start_s"], row["end_s"]) == (result.start[node.index, 0], result.end[node.index, 0])
    assert looped


def test_loops_the_batch_cannot_time_go_to_the_scheduler_saying_why():
    assert why_not(_looped(max_concurrency=2).plan()).endswith("runs its 3 iterations at most 2 at a time")
    sampled = nbp.monte_carlo(_looped(), {"unit": lambda rng: rng.uniform(1, 2)}, runs=3)
    assert sampled.attrs["engine"] == "scheduler"
    assert sampled.attrs["engine_reason"].endswith(
        "steps.unit samples its duration inside a loop (each iteration draws its own)"
    )


def _dag(c=3.0) -> nbp.Pipeline:
    """One parallel block (D14): a = 1 s, b = 5 s; c needs a and b; d = 2 s needs a."""
    p = nbp.Pipeline("dag")
    with p.stage("s") as s, s.parallel():
        s.step("a", duration=1)
        s.step("b", duration=5)
        s.step("c", duration=c, needs=["a", "b"])
        s.step("d", duration=2, needs=["a"])
    return p


@pytest.mark.parametrize("c", [3.0, 0.0])
def test_D14_a_dag_block_is_timed_by_its_longest_path_on_both_paths(c):
    """c starts at max(1, 5) = 5, d at 1 (ends 1 + 2 = 3); the makespan is max(5 + c, 3): 8 with
    c = 3, 5 with c = 0 (b's end binds). By levels it would be 5 + max(c, 2): 8 and 7."""
    plan = _dag(c).plan()
    assert why_not(plan) is None
    result = batch(plan, step_durations(plan, None, 1.0, 2, 0), 2)
    trace = nbp.simulate(plan).set_index("fqn")
    at = {n.id: n.index for n in plan.nodes}
    for ident, start, end in (("a", 0, 1), ("b", 0, 5), ("c", 5, 5 + c), ("d", 1, 3)):
        fqn = plan.nodes[at[ident]].fqn
        assert (result.start[at[ident]] == start).all() and (result.end[at[ident]] == end).all(), ident
        assert (trace.loc[fqn, "start_s"], trace.loc[fqn, "end_s"]) == (start, end), ident
    assert (result.makespan == max(5 + c, 3)).all() and trace.loc["pipeline", "end_s"] == max(5 + c, 3)


def test_D14_a_skipped_need_skips_its_waiter_on_both_paths():
    """a has the condition Failure (nothing fails: skipped at 0, R28), so c and d, which need it,
    are skipped too: d at a's end, 0; c when b ends, 5. The block ends at 5."""
    p = _dag()
    p.stages[0].items[0].items[0].when = "Failure"
    plan = p.plan()
    result = batch(plan, step_durations(plan, None, 1.0, 1, 0), 1)
    trace = nbp.simulate(plan).set_index("fqn")
    for node in plan.steps:
        row = trace.loc[node.fqn]
        assert result.status[node.index] == row["status"], node.id
        assert (result.start[node.index, 0], result.end[node.index, 0]) == (row["start_s"], row["end_s"])
    assert [result.status[n.index] for n in plan.steps] == ["Skipped", "Success", "Skipped", "Skipped"]
    assert result.makespan[0] == 5.0


def test_D14_monte_carlo_of_a_dag_agrees_with_the_scheduler_and_its_criticality_follows_the_needs():
    """a ∈ {1, 7} alternately, b = 5, c = 3 needs a and b, d = 2 needs a.
    a = 1: c starts at max(1, 5) = 5, makespan 8; b → c critical.
    a = 7: c starts at 7, makespan 10; a → c critical (d: 7 + 2 = 9 < 10, not critical).
    Over the runs: a critical half of them, b the other half, c always, d never."""
    p = _dag()
    plan = p.plan()
    fqn = {n.id: n.fqn for n in plan.steps}
    h = measured_history(
        {str(i): {"a": [1.0, 7.0][i % 2], "b": 5.0, "c": 3.0, "d": 2.0} for i in range(4)}, plan
    )
    fast = nbp.monte_carlo(plan, h, runs=200, seed=3)
    slow = nbp.monte_carlo(plan, h, runs=200, seed=3, engine="scheduler")
    assert fast.attrs["engine"] == "vectorised" and slow.attrs["engine"] == "scheduler"
    for mc in (fast, slow):  # each path draws its own runs of the history: the same rule on each
        assert set(mc["makespan_s"]) == {8.0, 10.0}
        share = (mc["makespan_s"] == 10.0).mean()
        crit = mc.attrs["criticality"]
        assert crit[fqn["a"]] == pytest.approx(share) and crit[fqn["b"]] == pytest.approx(1 - share)
        assert crit[fqn["c"]] == 1.0 and crit.get(fqn["d"], 0.0) == 0.0


# -- more shapes: looped stages and groups, failure strategies that never act, rollback lists, Wait ----
_LOOPS = st.sampled_from([None, None, None, None, ("parallelism", 2), ("repeat", 3), ("matrix", 2)])
_STRATEGIES = st.sampled_from([None, None, "retry", "ignore", "rollback"])


def _loop(spec, serial: bool = False):
    """The looping strategy of ``spec``; ``serial``: its iterations one at a time (R54)."""
    if spec is None:
        return None
    kind, n = spec
    if serial:
        return nbp.Repeat(times=n, max_concurrency=1)
    if kind == "parallelism":
        return nbp.Parallelism(n)
    return nbp.Repeat(times=n) if kind == "repeat" else nbp.Matrix(x=list(range(n)))


def _strategy(spec):
    return {None: None, "retry": nbp.Retry(2), "ignore": nbp.Ignore(), "rollback": nbp.StageRollback()}[spec]


def _more_items(depth: int) -> st.SearchStrategy:
    leaf = st.tuples(
        st.just("step"), _WHEN, _STRATEGIES, st.sampled_from(["plain", "plain", "wait", "timeout"])
    )
    if depth == 0:
        return st.lists(leaf, min_size=1, max_size=3)
    group = st.tuples(st.just("group"), _LOOPS, _STRATEGIES, st.deferred(lambda: _more_items(depth - 1)))
    one = st.one_of(leaf, group)
    return st.lists(st.one_of(one, st.tuples(st.just("parallel"), st.lists(one, min_size=1, max_size=3))),
                    min_size=1, max_size=3)  # fmt: skip


_MORE_SHAPES = st.lists(
    st.tuples(
        st.booleans(),
        st.lists(st.tuples(_LOOPS, _STRATEGIES, _more_items(2), st.booleans()), min_size=1, max_size=2),
    ),
    min_size=1,
    max_size=3,
)


def _build_more(shape: list, serial: bool = False) -> nbp.Pipeline:
    """The pipeline of a drawn shape; ``serial``: its loops run one iteration at a time."""
    p = nbp.Pipeline("p", rules="current")
    counter = iter(range(10_000))

    def one(container, item):
        ident = f"{item[0][0]}{next(counter)}"
        if item[0] == "step":
            _, when, strategy, kind = item
            options = {"when": when, "failure_strategies": _strategy(strategy)}
            if kind == "wait":
                container.step(ident, type="Wait", spec={"duration": "3s"}, **options)
            else:
                container.step(ident, timeout="1h" if kind == "timeout" else None, **options)
        else:
            _, loop, strategy, items = item
            with container.step_group(
                ident, strategy=_loop(loop, serial), failure_strategies=_strategy(strategy)
            ) as g:
                fill(g, items)

    def fill(container, items):
        for item in items:
            if item[0] == "parallel":
                with container.parallel():
                    for member in item[1]:
                        one(container, member)
            else:
                one(container, item)

    for together, stages in shape:

        def add(stages=stages):
            for loop, strategy, items, rollback in stages:
                with p.stage(
                    f"st{next(counter)}", strategy=_loop(loop, serial), failure_strategies=_strategy(strategy)
                ) as s:
                    fill(s, items)
                    if rollback:
                        with s.rollback():
                            s.step(f"rb{next(counter)}", duration=4)

        if together and len(stages) > 1:
            with p.parallel():
                add()
        else:
            add()
    return p


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=_MORE_SHAPES, data=st.data())
def test_vectorised_path_agrees_exactly_on_looped_stages_and_groups_rollback_lists_and_wait_steps(
    shape, data
):
    """Every node's start, end and status, and the critical nodes, outside the loops' copies:
    looped stages and step groups (iterations side by side), failure strategies and rollback
    lists that never act (nothing fails), Wait steps (their spec's duration), timeouts not reached."""
    plan = _build_more(shape).plan()
    why = why_not(plan)
    if why is not None:  # nested loops only: every other shape here is the batch's
        assert why.endswith("holds another looped node (nested loops)"), why
        return
    timed = [n for n in plan.nodes if n.kind == "step" and n.phase != "rollback" and n.type != "Wait"]
    values = {n.fqn: data.draw(_SECONDS.filter(lambda x: x < 3000)) for n in timed}
    result = batch(plan, step_durations(plan, values, 1.0, 2, 0), 2)
    trace = nbp.simulate(plan, durations=values)
    rows = {r["fqn"]: r for r in trace[trace["iteration"].isna()].to_dict("records")}
    inside = plan.inside_loops()
    records = []
    for node in plan.nodes:
        if node.index in inside:
            continue  # an iteration's copy (R46): its looped node's row is compared
        row = rows[node.fqn]
        assert str(row["status"]) == result.status[node.index], node.fqn
        for column, got in (("start_s", result.start), ("end_s", result.end)):
            if pd.isna(row[column]):
                assert np.isnan(got[node.index]).all(), (node.fqn, column)
            else:
                assert (got[node.index] == row[column]).all(), (
                    node.fqn,
                    column,
                    got[node.index],
                    row[column],
                )
        records.append(SimpleNamespace(node=node.index, start_s=row["start_s"], end_s=row["end_s"],
                                       status=str(row["status"])))  # fmt: skip
    critical = set(np.flatnonzero(result.critical()[:, 0])) - set(inside)
    assert critical == _critical_records(plan, records) - set(inside)


# -- many runs: timed in chunks ---------------------------------------------------------------------
def _wide(blocks: int) -> nbp.Pipeline:
    """``blocks`` parallel blocks of three steps in turn; ``a<i>`` samples its duration."""
    p = nbp.Pipeline("wide")
    with p.stage("s") as s:
        for i in range(blocks):
            with s.parallel():
                s.step(f"a{i}", duration=lambda rng: rng.uniform(1, 2))
                s.step(f"b{i}", duration=1.0)
                s.step(f"c{i}", duration=1.0)
    return p


def test_a_vectorised_monte_carlo_of_many_runs_keeps_its_memory_bounded():
    """The batch held every node's start and end for every run at once: 150 nodes × 60,000 runs
    took ~200 MB at its peak (a million runs of a 100-step pipeline, 2.1 GB). Timed in chunks of
    at most CHUNK_CELLS node-runs (~80 MB), it stays below 120 MB whatever the runs."""
    import tracemalloc

    plan = _wide(50).plan()
    assert len(plan.nodes) == 2 + 50 * 3
    tracemalloc.start()
    try:
        mc = nbp.monte_carlo(plan, runs=60_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert mc.attrs["engine"] == "vectorised" and len(mc) == 60_000
    assert peak < 120 * 2**20, f"{peak / 2**20:.0f} MB"
    # each block takes max(a, 1) = a (uniform on 1 … 2): the makespan is the sum of 50 of them
    assert mc["makespan_s"].between(50.0, 100.0).all() and mc["run"].tolist() == list(range(60_000))


def test_ctrl_c_during_a_vectorised_monte_carlo_keeps_the_chunks_that_finished(monkeypatch):
    """The batch was all or nothing: Ctrl-C gave 0 runs. Now the chunks timed before it stay."""
    import os
    import signal

    from notebook_pipelines.analysis import montecarlo

    monkeypatch.setattr(montecarlo, "CHUNK_CELLS", 1_000, raising=False)  # 4 nodes: chunks of 250 runs
    calls = [0]

    def duration(rng):  # drawn once per chunk (vectorised): interrupts while the 3rd is drawn
        calls[0] += 1
        if calls[0] == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return rng.uniform(1, 2)

    p = nbp.Pipeline("mc")
    with p.stage("s") as s:
        s.step("a", duration=duration)
        s.step("b", duration=1.0)
    with pytest.raises(nbp.RunInterrupted, match="after 500 of 1,000 runs") as caught:
        nbp.monte_carlo(p, runs=1_000, seed=3)
    done = caught.value.trace
    assert done["run"].tolist() == list(range(500)) and done.attrs["engine"] == "vectorised"
    assert done["makespan_s"].between(2.0, 3.0).all() and done.attrs["seed"] == 3


@pytest.mark.filterwarnings("ignore::notebook_pipelines.HistoryDurationsWarning")  # steps always skipped
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=_MORE_SHAPES, data=st.data())
def test_monte_carlo_of_a_history_replays_its_measured_runs_on_both_engines(shape, data):
    """Three runs of a random pipeline, each with its own durations, kept as a history: joint
    resampling draws whole runs, so every simulated makespan — on the scheduler, and on the
    vectorised path where it applies — is one of the three measured. Loops included, side by
    side or one iteration at a time: a looped step takes the longest of its iterations (here
    they all took the same time), not the loop's span."""
    plan = _build_more(shape, serial=data.draw(st.booleans())).plan()
    why = why_not(plan)
    looped = [n for n in plan.nodes if n.strategy is not None]
    if any(b.strategy is not None for n in looped for b in n.walk() if b is not n):
        return  # a loop in a loop: the history's copies are not matched through both
    timed = [n for n in plan.nodes if n.kind == "step" and n.phase != "rollback" and n.type != "Wait"]
    seconds = st.sampled_from([0.0, 0.1, 0.2, 1.0, 3.0, 7.7])
    runs = [
        nbp.simulate(plan, durations={n.fqn: data.draw(seconds) for n in timed}, run_id=f"run-{k}")
        for k in range(3)
    ]
    h = pd.concat(runs, ignore_index=True)
    if not ((h["kind"] == "step") & (h["attempt"] > 0)).any():
        return  # every step skipped: nothing measured
    measured = np.array([float(t.loc[t["kind"] == "pipeline", "end_s"].iloc[0]) for t in runs])

    def among_measured(makespans) -> bool:  # up to rounding: a step's measured end - start
        return all(np.isclose(measured, m, rtol=0, atol=1e-9).any() for m in set(makespans))

    slow = nbp.monte_carlo(plan, h, runs=15, seed=1, engine="scheduler")
    assert among_measured(slow["makespan_s"]), (set(slow["makespan_s"]), measured)
    if why is None:  # iterations side by side (or none): the vectorised path too
        fast = nbp.monte_carlo(plan, h, runs=60, seed=1)
        assert fast.attrs["engine"] == "vectorised", fast.attrs["engine_reason"]
        assert among_measured(fast["makespan_s"]), (set(fast["makespan_s"]), measured)
