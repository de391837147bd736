"""Durations drawn from a measured history (issue 28, part 1), on shapes a user brings: bad
rows, the history of another pipeline, frames that are not histories, looped steps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import measured_history, two_steps

import notebook_pipelines as nbp


@pytest.mark.parametrize("engine", ["auto", "scheduler"])
def test_a_history_step_that_ends_before_it_starts_is_refused_naming_it(engine):
    """A measured row with end_s < start_s (a clock skew, a bad export) gave a negative duration:
    the vectorised path used it (a makespan shorter than any run), the scheduler refused it with
    an error that did not say it came from the history."""
    plan = two_steps().plan()
    h = measured_history({"1": {"a": 2.0, "b": 3.0}, "2": {"a": 4.0, "b": 1.0}}, plan)
    bad = (h["run_id"] == "2") & (h["step"] == "a")
    h.loc[bad, "end_s"] = h.loc[bad, "start_s"] - 2.0
    with pytest.raises(nbp.SimulationError) as caught:
        nbp.monte_carlo(plan, h, runs=50, engine=engine)
    message = str(caught.value)
    assert plan.steps[0].fqn in message and "run '2'" in message and "-2.0 s" in message
    assert "h = h[~(h['end_s'] < h['start_s'])]" in message  # how to fix it
    with pytest.raises(nbp.SimulationError, match=r"run '2', attempt 1\) lasts -2\.0 s"):
        nbp.simulate(plan, durations=h)


def test_a_history_step_that_lasts_forever_is_refused():
    plan = two_steps().plan()
    h = measured_history({"1": {"a": 2.0, "b": 3.0}}, plan)
    h.loc[h["step"] == "b", "end_s"] = np.inf
    with pytest.raises(nbp.SimulationError, match=r"steps\.b \(run '1', attempt 1\) lasts inf s"):
        nbp.monte_carlo(plan, h, runs=10)


def test_the_history_of_another_pipeline_is_refused_naming_what_it_measured():
    """It measured none of the pipeline's steps: every duration fell back to default= (1 s) with a
    warning only, and Monte Carlo, what-ifs and layouts answered about a pipeline never measured."""
    other = nbp.Pipeline("deploy")
    with other.stage("d") as s:
        s.step("push")
        s.step("verify")
    runs = {"1": {"a": 2.0, "b": 3.0}, "2": {"a": 1.0, "b": 1.0}}
    h = measured_history(runs, two_steps().plan(), pipeline="octo/ci.yml")
    expected = (
        r"the history measures none of the steps of 'deploy' \(push, verify\); it measured a, b "
        r"\(its pipelines: octo/ci.yml\): give the history of this pipeline"
    )
    with pytest.raises(nbp.SimulationError, match=expected):
        nbp.monte_carlo(other, h, runs=10)
    with pytest.raises(nbp.SimulationError, match=expected):
        nbp.simulate(other, durations=h)
    for trace in (h, h[h["run_id"] == "1"]):  # a history, or one run's trace
        with pytest.raises(nbp.LayoutError, match=r"the trace is not of 'deploy': it has none of its nodes"):
            nbp.suggest_layout(other, trace=trace)


def test_a_history_that_measures_some_steps_still_warns_for_the_others():
    p = two_steps()
    with p.stage("late") as s:
        s.step("new")
    h = measured_history({"1": {"a": 2.0, "b": 3.0}}, two_steps().plan())
    with pytest.warns(nbp.HistoryDurationsWarning, match=r"late\.spec\.execution\.steps\.new"):
        mc = nbp.monte_carlo(p, h, runs=5, default=4.0)
    assert set(mc["makespan_s"]) == {2.0 + 3.0 + 4.0}


def test_a_frame_without_the_history_columns_is_refused_naming_them():
    plan = two_steps().plan()
    h = measured_history({"1": {"a": 2.0, "b": 3.0}}, plan).drop(columns=["attempt", "status"])
    with pytest.raises(nbp.SimulationError, match=r"no column 'attempt', 'status'.*nbp\.read_history"):
        nbp.monte_carlo(plan, h, runs=10)


def test_run_history_that_is_not_a_history_is_a_clear_error_before_the_run():
    """p.run(history=…) with something else than a history failed with KeyError: 'kind'."""
    p = two_steps()
    with pytest.raises(nbp.SimulationError, match=r"run\(history=…\): give a history .* not dict"):
        p.run(history={"a": 1.0}, progress=True, report=False)
    other = nbp.Pipeline("other")
    with other.stage("s") as s:
        s.step("x")
    h = measured_history({"1": {"x": 2.0}}, other.plan())
    with pytest.raises(nbp.SimulationError, match=r"run\(history=…\): the history measures none of"):
        p.run(history=h, progress=True, report=False)


def _looped_history(plan, spans: list[tuple[float, float]]) -> pd.DataFrame:
    """One measured run of the looped step ``lim``: its iterations at ``spans`` (start, end) and
    its own row spanning them, as a trace records a loop (R46)."""
    fqn = plan.steps[0].fqn
    rows = [
        {"run_id": "1", "fqn": fqn, "parent": "pipeline.stages.s", "kind": "step", "step": "lim",
         "attempt": 1, "status": "Success", "start_s": min(s for s, _ in spans),
         "end_s": max(e for _, e in spans), "iteration": None}
    ]  # fmt: skip
    for i, (start, end) in enumerate(spans):
        rows.append(
            {"run_id": "1", "fqn": f"{fqn}_{i}", "parent": fqn, "kind": "step", "step": f"lim_{i}",
             "attempt": 1, "status": "Success", "start_s": start, "end_s": end, "iteration": i}
        )  # fmt: skip
    return pd.DataFrame(rows).astype({"iteration": "Int64"})


def _looped(max_concurrency: int | None) -> nbp.Pipeline:
    p = nbp.Pipeline("loop")
    with p.stage("s") as s:
        s.step("lim", strategy=nbp.Repeat(times=3, max_concurrency=max_concurrency))
    return p


def test_R54_a_looped_step_run_in_turn_takes_its_iterations_durations_not_the_loops_span():
    """Three iterations measured one after the other (maxConcurrency 1): 2 s, 3 s, 4 s — the
    loop's row spans 0 → 9. Every simulated iteration took that 9 s span: 3 × 9 = 27 s instead
    of the 9 s measured. Now each takes the longest iteration, 4 s: 3 × 4 = 12 s."""
    p = _looped(1)
    h = _looped_history(p.plan(), [(0.0, 2.0), (2.0, 5.0), (5.0, 9.0)])
    mc = nbp.monte_carlo(p, h, runs=3)
    assert mc.attrs["engine"] == "scheduler"
    assert set(mc["makespan_s"]) == {3 * 4.0}
    assert nbp.simulate(p, durations=h)["end_s"].max() == 12.0


def test_R54_a_looped_step_side_by_side_still_takes_its_span_on_both_engines():
    """Side by side (no maxConcurrency): the iterations 2, 3 and 4 s all start at 0; the loop
    ends with the longest, 4 s — its row's span — on the vectorised path and the scheduler."""
    p = _looped(None)
    h = _looped_history(p.plan(), [(0.0, 2.0), (0.0, 3.0), (0.0, 4.0)])
    fast, slow = (nbp.monte_carlo(p, h, runs=3, engine=e) for e in ("vectorised", "scheduler"))
    assert set(fast["makespan_s"]) == set(slow["makespan_s"]) == {4.0}


def test_suggest_layout_searches_on_a_history_matched_by_step_id_like_monte_carlo():
    """A CI history's FQNs need not be the rebuilt pipeline's (``pipeline_from_history`` lays
    jobs out anew): the Monte Carlo ranking matched steps by id, but the search and the
    original's time looked them up by FQN only, so every step took default= (1 s)."""
    p = nbp.Pipeline("ci")
    with p.stage("jobs") as s:
        s.step("a")
        s.step("b")
    history_plan = two_steps().plan()  # the same step ids, in stage s
    h = measured_history({"1": {"a": 2.0, "b": 5.0}, "2": {"a": 4.0, "b": 7.0}}, history_plan)
    found = nbp.suggest_layout(p, trace=h)
    # the mean durations: a (2 + 4) / 2 = 3, b (5 + 7) / 2 = 6: in turn 3 + 6 = 9, side by side 6
    assert found.original_s == 9.0 and found.best.makespan_s == 6.0
    # the ranking's Monte Carlo (joint): runs 2 + 5 = 7 and 4 + 7 = 11 before; max → 5 and 7 after
    assert {found.original_p50_s, found.original_p95_s} <= {7.0, 11.0}
    assert {found.best.p50_s, found.best.p95_s} <= {5.0, 7.0}


def test_a_history_of_several_pipelines_is_refused_naming_them():
    """read_history gives every pipeline kept: their runs were resampled as this one's (a step id
    or FQN they share took their durations; their other runs filled each step independently)."""
    plan = two_steps().plan()
    h = pd.concat(
        [
            measured_history({"1": {"a": 1.0, "b": 1.0}}, plan, "octo/ci.yml"),
            measured_history({"2": {"a": 9.0}}, plan, "web"),
        ]
    )
    with pytest.raises(nbp.SimulationError, match=r"runs of 2 pipelines \('octo/ci.yml', 'web'\).*"
                       r"h\[h\['pipeline'\] == 'octo/ci.yml'\]"):  # fmt: skip
        nbp.monte_carlo(plan, h, runs=10)


def test_runs_that_share_a_run_id_are_refused_saying_how_to_name_them():
    """Two simulations concatenated keep simulate()'s run id 'sim-0': one of them was lost."""
    p = two_steps()
    h = pd.concat([nbp.simulate(p, durations={"a": x, "b": x}) for x in (1.0, 10.0)], ignore_index=True)
    assert set(h["run_id"]) == {"sim-0"}
    with pytest.raises(nbp.SimulationError, match=r"share a run_id .* run_id=f'run-\{s\}'"):
        nbp.monte_carlo(p, h, runs=10)


def test_runs_that_measure_none_of_the_steps_are_left_out_of_joint_resampling():
    """Runs (a=1, b=1) and (a=10, b=10), and a run that measured none of a, b: joint resampling
    drew it a third of the time and filled a and b independently (1 + 10 = 11 s). Left out, the
    sums are 2 and 20 only."""
    plan = two_steps().plan()
    other = nbp.Pipeline("other")
    with other.stage("s") as s:
        s.step("z")
    h = pd.concat(
        [measured_history({"1": {"a": 1.0, "b": 1.0}, "2": {"a": 10.0, "b": 10.0}}, plan),
         measured_history({"3": {"z": 5.0}}, other.plan())],
        ignore_index=True,
    )  # fmt: skip
    with pytest.warns(nbp.HistoryDurationsWarning, match=r"1 of 3 runs measure none of the steps of 'p'"):
        mc = nbp.monte_carlo(plan, h, runs=300)
    assert set(mc["makespan_s"]) == {2.0, 20.0}


def test_a_misspelt_mode_is_refused_with_or_without_a_history():
    """mode="indep" was ignored when durations= was not a history (joint is the default)."""
    p = two_steps()
    for call in (lambda: nbp.monte_carlo(p, {"a": 1.0}, mode="indep", runs=3),
                 lambda: nbp.simulate(p, mode="indep")):  # fmt: skip
        with pytest.raises(nbp.SimulationError, match=r"mode='indep': use 'joint' .* or 'independent'"):
            call()


def test_R46_failures_history_of_a_looped_step_is_the_rate_of_its_iterations():
    """Four measured runs of a loop of two iterations side by side; one iteration failed once
    (1 attempt in 8), so the loop's own row failed in 1 run of 4. The rate was read from the
    loop's row (1/4) and injected into each iteration: the loop then failed in 1 - (3/4)² ≈ 44 %
    of the runs instead of 1/4. Per iteration attempt it is 1/8."""
    from notebook_pipelines.engine.measured import HistoryDurations

    p = _looped(None)
    plan = p.plan()
    runs = []
    for run in "1234":
        h = _looped_history(plan, [(0.0, 2.0), (0.0, 3.0)]).assign(run_id=run)
        if run == "1":
            h.loc[h["iteration"] == 0, "status"] = "Failed"
            h.loc[h["iteration"].isna(), "status"] = "Failed"  # the loop fails with its iteration
        runs.append(h)
    measured = HistoryDurations(pd.concat(runs, ignore_index=True), plan)
    assert measured.failure_rates() == {plan.steps[0].fqn: 1 / 8}


def test_failures_history_counts_a_failure_its_strategy_ignored():
    """b failed in 1 run of 4 and its Ignore strategy made it IgnoreFailed: its rate was 0."""
    from notebook_pipelines.engine.measured import HistoryDurations

    plan = two_steps().plan()
    h = measured_history({run: {"a": 1.0, "b": 1.0} for run in "1234"}, plan)
    h.loc[(h["run_id"] == "2") & (h["step"] == "b"), "status"] = "IgnoreFailed"
    assert HistoryDurations(h, plan).failure_rates() == {plan.steps[1].fqn: 1 / 4}


def test_a_history_whose_measurements_are_all_in_loops_in_loops_is_not_called_another_pipelines():
    """Its only step runs in a looped group inside a looped stage: the copies
    (``s_0.….g_1.steps.x``) are not matched through both loops, but the history is this
    pipeline's: a warning names the step (it takes default=), no 'measures none' error."""
    p = nbp.Pipeline("nested", rules="current")
    with p.stage("s", strategy=nbp.Parallelism(2)) as s, s.step_group("g", strategy=nbp.Parallelism(2)) as g:
        g.step("x", duration=3.0)
    h = pd.concat([nbp.simulate(p, run_id=f"run-{k}") for k in range(2)], ignore_index=True)
    with pytest.warns(nbp.HistoryDurationsWarning, match=r"no measurement of .*steps\.x"):
        mc = nbp.monte_carlo(p, h, runs=3)
    assert set(mc["makespan_s"]) == {3.0}  # x's own duration=


def test_a_misspelt_failures_history_says_what_the_option_is():
    """failures="History" said only "takes a mapping …, not str"."""
    plan = two_steps().plan()
    h = measured_history({"1": {"a": 2.0, "b": 3.0}}, plan)
    with pytest.raises(
        nbp.SimulationError, match=r"not str \('History': failures=\"history\", with durations="
    ):
        nbp.monte_carlo(plan, h, runs=3, failures="History")


def test_distribution_of_a_joint_history_says_how_few_measured_runs_its_tail_rests_on():
    """18 measured runs resampled whole: every sampled makespan is one of 18 values, each drawn
    1/18 = 5.6 % of the time, so the p95 is the slowest measured run (a 17 s, b 1 s: 18 s) and
    its CI is that value alone — tight, though it rests on one run. distribution() says so."""
    plan = two_steps().plan()
    h = measured_history({str(i): {"a": float(i), "b": 1.0} for i in range(18)}, plan)  # makespans 1 … 18 s
    mc = nbp.monte_carlo(plan, h, runs=20_000)
    assert mc.attrs["mode"] == "joint" and mc.attrs["measured_runs"] == 18
    d = nbp.distribution(mc)
    assert d.percentiles.loc["p95"].tolist() == [18.0, 18.0, 18.0]  # 17 + 1: the slowest run
    # the runs at or above the p95: ceil(18 × 0.05) = ceil(0.9) = 1
    assert "from 18 measured runs (joint): the CIs count only this sampling" in repr(d)
    assert "the p95 rests on the slowest 1 of them" in repr(d)
    forty = measured_history({str(i): {"a": float(i), "b": 1.0} for i in range(40)}, plan)
    # 40 runs: ceil(40 × 0.05) = 2
    assert "the slowest 2 of them" in repr(nbp.distribution(nbp.monte_carlo(plan, forty, runs=500)))
    independent = nbp.monte_carlo(plan, h, runs=500, mode="independent")
    assert independent.attrs["measured_runs"] == 18
    assert "measured runs" not in repr(nbp.distribution(independent))
    plain = nbp.monte_carlo(plan, runs=20)
    assert plain.attrs["measured_runs"] is None and "measured runs" not in repr(nbp.distribution(plain))


def test_a_skipped_step_with_times_is_not_a_measurement():
    """GitHub gives a skipped step started/completed times, its end at times before its start:
    such a row measured nothing. It is left out (its run lacks the step, which takes another
    run's measurement), not refused as a negative duration and not taken as 0 s.
    Runs 1, 2: a 2 s + b 3 s; run 3: a 4 s, b skipped (end 1 s before start). Joint resampling
    never gives b less than 3 s: every makespan is 2 + 3 = 5 or 4 + 3 = 7."""
    plan = two_steps().plan()
    h = measured_history(
        {"1": {"a": 2.0, "b": 3.0}, "2": {"a": 2.0, "b": 3.0}, "3": {"a": 4.0, "b": 3.0}}, plan
    )
    skipped = (h["run_id"] == "3") & (h["step"] == "b")
    h.loc[skipped, "status"] = "Skipped"
    h.loc[skipped, "end_s"] = h.loc[skipped, "start_s"] - 1.0
    for engine in ("vectorised", "scheduler"):
        mc = nbp.monte_carlo(plan, h, runs=200, engine=engine)
        assert set(mc["makespan_s"]) <= {5.0, 7.0} and 7.0 in set(mc["makespan_s"])
