"""``simulate()``: the scheduler of ``run()`` on a virtual clock (issue 5).

The first tests run the same pipelines twice — ``run()`` with real sleeping bodies and
``simulate()`` with durations equal to the sleeps and failures mirroring the bodies — and
require the same rows, statuses, actions and reasons, and the same order of events (only
timing jitter may differ). The rest check each option of ``simulate()`` in virtual time, where
times are exact.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import two_steps

import notebook_pipelines as nbp
from notebook_pipelines.definition.limits import MAX_RETRIES
from notebook_pipelines.engine.simulation import SimulationError, simulate

# -- run() and simulate() agree ---------------------------------------------------------------


class Twin:
    """Builds steps whose real body sleeps (and fails) exactly as the simulation is told to."""

    def __init__(self) -> None:
        self.durations: dict[str, float] = {}
        self.failures: dict[str, Any] = {}

    def step(self, container: Any, ident: str, seconds: float, fail: Any = (), **settings: Any) -> None:
        self.durations[ident] = seconds
        if fail:
            self.failures[ident] = True if fail is True else list(fail)

        def body(ctx: nbp.StepContext) -> None:
            time.sleep(seconds)
            if fail is True or ctx.attempt in fail:
                raise nbp.StepError(f"{ctx.id} failed on attempt {ctx.attempt}")

        container.step(ident, run=body, **settings)


def failures_design() -> tuple[nbp.Pipeline, Twin]:
    """R14 parallel block, R18 retry with an interval, R21 Ignore, R59 timeout, R29 conditions."""
    tw, p = Twin(), nbp.Pipeline("failures")
    with p.stage("build") as s:
        with s.parallel():
            tw.step(s, "a", 0.12)
            tw.step(s, "b", 0.03, fail=[1], failure_strategies=nbp.Retry(1, intervals=["50ms"]))
        tw.step(s, "c", 0.03, fail=True, failure_strategies=nbp.Ignore())
        tw.step(s, "d", 0.15, timeout="60ms")
        tw.step(s, "e", 0.03)
        tw.step(s, "f", 0.04, when="Failure")
    with p.stage("deploy") as s:
        tw.step(s, "g", 0.03)
    with p.stage("cleanup", when="All") as s:
        tw.step(s, "h", 0.03)
    return p, tw


def rollback_design() -> tuple[nbp.Pipeline, Twin]:
    """R35/R36 stage rollback after a failing parallel sibling (E1, E7), D7 afterwards."""
    tw, p = Twin(), nbp.Pipeline("rollback")
    with p.stage("deploy", failure_strategies=nbp.StageRollback()) as s:
        with s.step_group("db") as g:
            tw.step(g, "migrate", 0.03)
            with g.rollback():
                tw.step(g, "restore", 0.04)
        with s.parallel():
            tw.step(s, "x", 0.03, fail=True)
            tw.step(s, "y", 0.08)
        tw.step(s, "z", 0.03)
        with s.rollback():
            tw.step(s, "undo1", 0.03)
            tw.step(s, "undo2", 0.05)
    with p.stage("next") as s:
        tw.step(s, "n", 0.03)
    with p.stage("notify", when="Failure") as s:
        tw.step(s, "m", 0.03)
    return p, tw


def groups_design() -> tuple[nbp.Pipeline, Twin]:
    """D8 resource keys, R37 StepGroupRollback, R19 RetryStepGroup, D12 intervention timeout, R59."""
    tw, p = Twin(), nbp.Pipeline("groups")
    with p.parallel():
        with p.stage("us", resource="prod") as s:
            tw.step(s, "u1", 0.04)
        with p.stage("eu", resource="prod") as s:
            tw.step(s, "e1", 0.03)
        with p.stage("ap") as s:
            tw.step(s, "a1", 0.11)
    with p.stage("verify") as s:
        with s.step_group("g1", failure_strategies=nbp.StepGroupRollback()) as g:
            tw.step(g, "v1", 0.03, fail=True)
            tw.step(g, "v2", 0.03)
            with g.rollback():
                tw.step(g, "r1", 0.04)
        tw.step(s, "w", 0.03, when="All")
        with s.step_group(
            "g2", failure_strategies=nbp.RetryStepGroup(1, intervals=["40ms"]), when="All"
        ) as g:
            tw.step(g, "q1", 0.03)
            tw.step(g, "q2", 0.05, fail=[1])
        ask = nbp.ManualIntervention(timeout="50ms", on_timeout=nbp.Ignore())
        tw.step(s, "mi", 0.03, fail=True, when="All", failure_strategies=ask)
    with p.stage("slow", timeout="100ms", when="All") as s:
        tw.step(s, "s1", 0.03)
        tw.step(s, "s2", 0.2)
        tw.step(s, "s3", 0.03)
    return p, tw


SAME = [
    "fqn",
    "kind",
    "phase",
    "stage",
    "step_group",
    "step",
    "attempt",
    "status",
    "action",
    "reason",
    "error_type",
]


def events(trace: pd.DataFrame) -> pd.DataFrame:
    """Start and end of every execution, with the row they belong to."""
    ran = trace[trace["attempt"] > 0].reset_index(drop=True)
    starts = pd.DataFrame({"row": ran.index, "what": "start", "t": ran["start_s"]})
    ends = pd.DataFrame({"row": ran.index, "what": "end", "t": ran["end_s"]})
    return pd.concat([starts, ends], ignore_index=True)


@pytest.mark.parametrize(
    "design", [failures_design, rollback_design, groups_design], ids=lambda f: f.__name__
)
def test_run_and_simulate_give_the_same_rows_statuses_and_order(design: Callable) -> None:
    p, tw = design()
    real = p.run(report=False)
    sim = p.simulate(durations=tw.durations, failures=tw.failures)

    # the same rows, in the same order, with the same outcome
    pd.testing.assert_frame_equal(
        real[SAME].astype(str).reset_index(drop=True), sim[SAME].astype(str).reset_index(drop=True)
    )
    assert list(real.columns) == list(sim.columns)
    assert (sim["worker"].dropna() == "virtual").all()

    # the same order of events wherever the simulation separates them by 25 ms or more
    e_real, e_sim = events(real), events(sim)
    assert e_real[["row", "what"]].equals(e_sim[["row", "what"]])
    t_real, t_sim = e_real["t"].to_numpy(), e_sim["t"].to_numpy()
    for i, j in itertools.combinations(range(len(t_sim)), 2):
        if t_sim[j] - t_sim[i] >= 0.025:
            assert t_real[i] < t_real[j], (e_sim.iloc[i].tolist(), e_sim.iloc[j].tolist())
        elif t_sim[i] - t_sim[j] >= 0.025:
            assert t_real[j] < t_real[i], (e_sim.iloc[i].tolist(), e_sim.iloc[j].tolist())


# -- determinism --------------------------------------------------------------------------------


def sampled_design() -> nbp.Pipeline:
    p = nbp.Pipeline("sampled")
    with p.stage("s") as s:
        with s.parallel():
            s.step("a", failure_strategies=nbp.Retry(2, intervals=["5s"]))
            s.step("b")
        s.step("c", failure_strategies=nbp.Ignore())
    return p


SAMPLED = {
    "durations": {"a": lambda rng: rng.lognormal(2, 0.5), "b": lambda rng: rng.uniform(5, 15), "c": 3},
    "failures": {"a": 0.5, "c": {"probability": 0.3, "error_type": "Connectivity"}},
}


def test_same_seed_gives_an_identical_trace_bit_for_bit():
    p = sampled_design()
    one = simulate(p, seed=7, run_id="one", **SAMPLED)
    two = simulate(p, seed=7, run_id="two", **SAMPLED)
    assert not one["run_id"].equals(two["run_id"])
    pd.testing.assert_frame_equal(one.drop(columns="run_id"), two.drop(columns="run_id"), check_exact=True)


def test_the_default_run_id_is_fixed_by_the_seed_too():
    p = sampled_design()
    assert simulate(p, seed=3, **SAMPLED).equals(simulate(p, seed=3, **SAMPLED))
    assert simulate(p, seed=3)["run_id"].iloc[0] == "sim-3"


def test_another_seed_draws_other_durations():
    p = sampled_design()
    one, two = simulate(p, seed=1, **SAMPLED), simulate(p, seed=2, **SAMPLED)
    assert steps_of(one).loc["b", "duration_s"] != steps_of(two).loc["b", "duration_s"]


def test_seed_none_draws_a_fresh_seed_that_replays_the_run():
    p = sampled_design()
    fresh = simulate(p, seed=None, **SAMPLED)
    seed = fresh.attrs["seed"]
    assert isinstance(seed, int)
    again = simulate(p, seed=seed, **SAMPLED)
    pd.testing.assert_frame_equal(fresh, again)


def test_each_step_draws_from_its_own_stream():
    p = sampled_design()
    base = simulate(p, seed=5, durations=SAMPLED["durations"])
    changed = simulate(
        p, seed=5, durations={**SAMPLED["durations"], "a": lambda rng: rng.uniform(0, 1) + 100}
    )
    b0 = base.loc[base["step"] == "b", "duration_s"].to_numpy()
    b1 = changed.loc[changed["step"] == "b", "duration_s"].to_numpy()
    assert b0.tolist() == b1.tolist()


# -- durations ----------------------------------------------------------------------------------


def steps_of(trace: pd.DataFrame) -> pd.DataFrame:
    return trace[(trace["kind"] == "step") & (trace["attempt"] > 0)].set_index("step")


def durations_design() -> nbp.Pipeline:
    p = nbp.Pipeline("d")
    with p.stage("build") as s:
        s.step("declared", duration="1m 30s")
        s.step("by_id", duration=5)
        s.step("by_fqn")
        with s.step_group("tests") as g:
            g.step("unit")
            g.step("lint")
        s.step("plain")
    return p


def test_durations_precedence_fqn_then_id_then_glob_then_declared_then_default():
    fqn = "pipeline.stages.build.spec.execution.steps.by_fqn"
    t = steps_of(
        simulate(
            durations_design(),
            durations={fqn: "2m", "by_fqn": 1, "by_id": "250ms", "*.tests.steps.*": 7, "unit": 4},
            default=2,
        )
    )
    assert t.loc["by_fqn", "duration_s"] == 120.0  # the FQN beats the id
    assert t.loc["by_id", "duration_s"] == 0.25  # the mapping beats the declared duration
    assert t.loc["unit", "duration_s"] == 4.0  # an id beats a glob
    assert t.loc["lint", "duration_s"] == 7.0  # a glob on the FQN
    assert t.loc["declared", "duration_s"] == 90.0  # the step's own duration=
    assert t.loc["plain", "duration_s"] == 2.0  # default


def test_durations_callables_and_distribution_objects_draw_from_the_seeded_generator():
    class Uniform:  # the scipy frozen-distribution protocol
        def rvs(self, random_state: np.random.Generator) -> float:
            return random_state.uniform(10, 20)

    t = steps_of(
        simulate(
            durations_design(),
            durations={"unit": lambda rng: rng.integers(3, 4), "lint": Uniform()},
            default=lambda rng: rng.exponential(1.0),
        )
    )
    assert t.loc["unit", "duration_s"] == 3.0  # a numpy integer is accepted
    assert 10 <= t.loc["lint", "duration_s"] <= 20
    assert t.loc["plain", "duration_s"] > 0
    assert t.loc["declared", "duration_s"] == 90.0


def test_one_callable_for_every_step_may_fall_back_by_returning_none():
    def per_step(node: Any, rng: np.random.Generator) -> float | None:
        return None if node.id == "plain" else len(node.id)

    t = steps_of(simulate(durations_design(), durations=per_step, default=0.5))
    assert t.loc["declared", "duration_s"] == 8.0
    assert t.loc["plain", "duration_s"] == 0.5


def test_a_mapping_like_a_pandas_series_works():
    measured = pd.Series({"unit": 12.5, "lint": 3.0})
    t = steps_of(simulate(durations_design(), durations=measured))
    assert t.loc["unit", "duration_s"] == 12.5


@pytest.mark.parametrize(
    ("durations", "message"),
    [
        ({"unti": 3}, "did you mean 'unit'"),
        ({"*.nothing.*": 3}, "no step of pipeline 'd' matches '*.nothing.*'"),
        ({"unit": "3 parsecs"}, "cannot read the duration '3 parsecs'"),
        ({"unit": -1}, "is -1.0: durations are finite and ≥ 0"),
        ({"unit": lambda rng: rng.normal(-5, 0.1)}, "drew -"),
        ({"unit": lambda rng: float("nan")}, "durations are finite"),
        ({3: 1}, "is not a step id, FQN or glob"),
        ([1, 2], "takes a mapping"),
    ],
)
def test_bad_durations_are_clear_errors(durations: Any, message: str):
    with pytest.raises(SimulationError) as err:
        simulate(durations_design(), durations=durations)
    assert message in str(err.value)


def test_strict_false_ignores_keys_for_other_designs():
    t = steps_of(simulate(durations_design(), durations={"unit": 4, "elsewhere": 9}, strict=False))
    assert t.loc["unit", "duration_s"] == 4.0


# -- failures -----------------------------------------------------------------------------------


def retry_design(**settings: Any) -> nbp.Pipeline:
    p = nbp.Pipeline("r")
    with p.stage("s") as s:
        s.step("x", duration=10, **settings)
        s.step("after", duration=1, when="All")
    return p


def attempts_of(trace: pd.DataFrame, step: str = "x") -> list[tuple]:
    rows = trace[trace["step"] == step]
    return list(zip(rows["attempt"], rows["status"].astype(str), rows["start_s"], rows["end_s"]))


def test_R18_D3_E5_retry_intervals_in_virtual_time_reuse_the_last_interval():
    p = retry_design(failure_strategies=nbp.Retry(3, intervals=["10s", "20s"]))
    t = simulate(p, failures={"x": 3})
    assert attempts_of(t) == [
        (1, "Failed", 0.0, 10.0),
        (2, "Failed", 20.0, 30.0),
        (3, "Failed", 50.0, 60.0),
        (4, "Success", 80.0, 90.0),
    ]


@pytest.mark.parametrize(
    ("failures", "statuses"),
    [
        ({"x": True}, ["Failed", "Failed", "Failed"]),
        ({"x": 2}, ["Failed", "Failed", "Success"]),
        ({"x": [2]}, ["Success"]),
        ({"x": [1, 2]}, ["Failed", "Failed", "Success"]),
        ({"x": False}, ["Success"]),
        ({"x": 0.0}, ["Success"]),
        ({"x": 1.0}, ["Failed", "Failed", "Failed"]),
        ({"x": lambda attempt, rng: attempt == 1}, ["Failed", "Success"]),
        ({"x": {"attempts": [1], "message": "disk full"}}, ["Failed", "Success"]),
    ],
)
def test_failures_choose_the_failing_attempts(failures: dict, statuses: list[str]):
    t = simulate(retry_design(failure_strategies=nbp.Retry(2)), failures=failures)
    assert [s for _, s, _, _ in attempts_of(t)] == statuses


def test_R16_failure_error_type_selects_the_failure_strategy():
    strategies = [nbp.OnFailure(["Timeout"], nbp.Retry(1)), nbp.OnFailure(["AllErrors"], nbp.Ignore())]
    p = retry_design(failure_strategies=strategies)
    as_timeout = simulate(p, failures={"x": {"attempts": [1], "error_type": "Timeout"}})
    assert [s for _, s, _, _ in attempts_of(as_timeout)] == ["Failed", "Success"]
    assert as_timeout["error_type"].dropna().tolist() == ["Timeout"]
    unknown = simulate(p, failures={"x": 1})
    assert [s for _, s, _, _ in attempts_of(unknown)] == ["IgnoreFailed"]
    for text in ("Connectivity", lambda attempt, rng: "Connectivity"):
        typed = simulate(p, failures={"x": text})
        assert typed["error_type"].dropna().tolist() == ["Connectivity"]


def test_failure_probability_is_roughly_right():
    p = retry_design()
    failed = [
        str(simulate(p, seed=seed, failures={"x": 0.3}).set_index("step").loc["x", "status"]) == "Failed"
        for seed in range(150)
    ]
    assert 0.15 < np.mean(failed) < 0.45


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Oops", "unknown error type 'Oops'"),
        ({"attempts": [0]}, "not attempt numbers"),
        ({"probability": 2}, "not between 0 and 1"),
        ({"retries": 2}, "unknown keys ['retries']"),
        (1.5, "not between 0 and 1"),
    ],
)
def test_bad_failures_are_clear_errors(value: Any, message: str):
    with pytest.raises(SimulationError) as err:
        simulate(retry_design(), failures={"x": value})
    assert message in str(err.value)
    assert "x" in str(err.value)


# -- timeouts -------------------------------------------------------------------------------------


def test_R59_a_step_longer_than_its_timeout_expires_at_the_deadline():
    t = simulate(retry_design(timeout="4s"))
    assert attempts_of(t) == [(1, "Expired", 0.0, 4.0)]
    assert t.set_index("step").loc["x", "error_type"] == "Timeout"
    after = t.set_index("step").loc["after"]
    assert after["start_s"] == 4.0  # the run goes on from the deadline


def test_E17_retry_on_timeout_restarts_with_a_fresh_timer():
    p = retry_design(
        timeout="4s", failure_strategies=nbp.OnFailure(["Timeout"], nbp.Retry(1, intervals="1s"))
    )
    t = simulate(p, durations={"x": 3})
    assert attempts_of(t) == [(1, "Success", 0.0, 3.0)]
    slow = simulate(p)
    assert attempts_of(slow) == [(1, "Expired", 0.0, 4.0), (2, "Expired", 5.0, 9.0)]


def test_R59_a_stage_timeout_expires_the_running_step_and_skips_the_rest():
    p = nbp.Pipeline("t")
    with p.stage("s", timeout="15s") as s:
        s.step("a", duration=10)
        s.step("b", duration=10)
        s.step("c", duration=10)
    t = simulate(p).set_index("fqn")
    stage = t.loc["pipeline.stages.s"]
    assert (str(stage["status"]), stage["end_s"]) == ("Expired", 15.0)
    b = steps_of(simulate(p)).loc["b"]
    assert (str(b["status"]), b["end_s"]) == ("Expired", 15.0)
    c = simulate(p).set_index("step").loc["c"]
    assert str(c["status"]) == "NotStarted"


# -- manual intervention (D12) --------------------------------------------------------------------


def intervention_design(on_timeout: nbp.Action | None = None) -> nbp.Pipeline:
    p = nbp.Pipeline("mi")
    ask = nbp.ManualIntervention(timeout="10m", on_timeout=on_timeout or nbp.MarkAsFailure())
    with p.stage("s") as s:
        s.step("x", duration=10, failure_strategies=ask)
        s.step("after", duration=1)
    return p


def test_D12_without_an_answer_the_timeout_passes_in_virtual_time():
    t = simulate(intervention_design(on_timeout=nbp.Ignore()), failures={"x": True})
    x, after = steps_of(t).loc["x"], steps_of(t).loc["after"]
    assert (str(x["status"]), x["action"], x["reason"]) == (
        "IgnoreFailed",
        "Ignore",
        "manual intervention timed out",
    )
    assert after["start_s"] == 10 + 600


def test_D12_a_scripted_answer_after_a_delay():
    t = simulate(intervention_design(), failures={"x": 1}, interventions={"x": ("Retry", "2m")})
    assert attempts_of(t) == [(1, "Failed", 0.0, 10.0), (2, "Success", 130.0, 140.0)]


def test_D12_a_list_of_answers_for_successive_interventions():
    t = simulate(
        intervention_design(), failures={"x": True}, interventions={"x": ["Retry", ("MarkAsSuccess", 5)]}
    )
    assert attempts_of(t) == [(1, "Failed", 0.0, 10.0), (2, "Success", 10.0, 20.0)]
    assert steps_of(t).loc["after", "start_s"] == 25.0


def test_D12_a_callable_answers_from_the_request():
    seen = []

    def answer(request: nbp.InterventionRequest) -> str:
        seen.append(request.fqn)
        return "Ignore"

    t = simulate(intervention_design(), failures={"x": True}, interventions={"x": answer})
    assert str(steps_of(t).loc["x", "status"]) == "IgnoreFailed"
    assert seen == ["pipeline.stages.s.spec.execution.steps.x"]


def test_D12_an_answer_outside_the_choices_is_a_clear_error():
    with pytest.raises(SimulationError, match="'Maybe' is not one of the choices"):
        simulate(intervention_design(), failures={"x": True}, interventions={"x": "Maybe"})


def test_D12_retrying_for_ever_is_stopped_with_advice():
    t = simulate(intervention_design(), failures={"x": True}, interventions={"x": "Retry"})
    x = t[t["step"] == "x"]
    assert len(x) == MAX_RETRIES + 1
    assert (x["status"].iloc[-1], x["action"].iloc[-1]) == ("Failed", "MarkAsFailure")
    assert f"answered Retry {MAX_RETRIES} times" in x["reason"].iloc[-1]


# -- the trace ----------------------------------------------------------------------------------


def test_the_simulated_trace_has_the_schema_of_run():
    p = nbp.Pipeline("schema")
    with p.stage("s") as s:
        s.step("a", run=lambda: None, duration=1)
    real, sim = p.run(), p.simulate()
    assert sim.dtypes.to_dict() == real.dtypes.to_dict()
    assert sim["worker"].dropna().unique().tolist() == ["virtual"]
    assert sim.attrs["simulated"] is True and sim.attrs["seed"] == 0


def test_start_fixes_the_timestamps():
    t = simulate(retry_design(), start="2030-05-01T12:00:00+02:00")
    x = t.set_index("step").loc["x"]
    assert x["start"] == pd.Timestamp("2030-05-01T10:00:00Z")
    assert x["end"] == pd.Timestamp("2030-05-01T10:00:10Z")


# -- values that would corrupt the trace (issue 11) -----------------------------------------------


def test_a_duration_trace_timestamps_cannot_hold_is_refused_not_stamped_before_its_start():
    # 1e10 s wrapped the int64 nanoseconds round: the trace said a ended in 1733, before it started
    with pytest.raises(SimulationError) as err:
        simulate(two_steps(), durations={"a": 1e10})
    text = str(err.value)
    assert "pipeline.stages.s.spec.execution.steps.a (durations) is 10000000000.0" in text
    assert "longer than the limit of 100 years" in text and "give a shorter one" in text


@pytest.mark.parametrize("default", [1e10, "6000w"])
def test_a_default_duration_trace_timestamps_cannot_hold_is_refused(default: Any):
    with pytest.raises(SimulationError, match="limit of 100 years"):
        simulate(two_steps(), default=default)


def test_a_sampler_drawing_a_value_trace_timestamps_cannot_hold_fails_clearly_at_run_time():
    with pytest.raises(SimulationError) as err:
        simulate(two_steps(), durations={"b": lambda rng: 1e12})
    text = str(err.value)
    assert "steps.b drew 1000000000000.0" in text and "limit of 100 years" in text
    assert "clip the distribution" in text


def test_long_durations_in_a_row_that_pass_year_2262_fail_clearly():
    # each value is within the limit, their sum is not: the step that would end there is named
    with pytest.raises(SimulationError) as err:
        simulate(two_steps(), durations={"a": 3e9, "b": 3e9}, start="2200-01-01")
    text = str(err.value)
    assert "attempt 1 of pipeline.stages.s.spec.execution.steps.a would end" in text
    assert "past 2262-04-11" in text and "earlier start=" in text


def test_long_durations_within_the_timestamp_range_stay_in_order():
    t = simulate(two_steps(), durations={"a": 3e9, "b": 3e9})
    rows = t[t.kind == "step"].set_index("step")
    assert (rows["end"] > rows["start"]).all()
    assert rows.loc["b", "end"] == pd.Timestamp("2026-01-01T00:00:00Z") + pd.Timedelta(seconds=6e9)


def test_waits_that_take_the_virtual_clock_past_year_2262_fail_clearly():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        for name in ("a", "b", "c"):
            s.step(name, when="All", failure_strategies=nbp.ManualIntervention(timeout="5000w"))
    with pytest.raises(SimulationError, match=r"the simulated run ended at .* past 2262-04-11"):
        simulate(p, failures={"*": True})


def test_R59_a_timeout_longer_than_100_years_is_a_definition_error():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", timeout="6000w", failure_strategies=nbp.Retry(1, intervals=[1e10]))
    with pytest.raises(nbp.DefinitionError) as err:
        simulate(p)
    found = {(x.fqn.rsplit(".", 1)[-1], x.message.split("=")[0]) for x in err.value.problems}
    assert found == {("a", "timeout"), ("a", "retryIntervals")}
    assert all("limit of 100 years" in x.message and x.rule == "R59" for x in err.value.problems)


_MANY_STARS = """
import sys
sys.path.insert(0, sys.argv[1])
import notebook_pipelines as nbp

p = nbp.Pipeline("p")
with p.stage("s") as s:
    s.step("a" * 120 + "x")
    s.step("a" * 120 + "b")
glob = "*a" * 60 + "*b"  # a backtracking matcher tries every way to place 60 stars
t = nbp.simulate(p, durations={glob: 7}, default=1)
print(t[t.kind == "step"].set_index("step")["end_s"].tolist())
"""


def test_duration_globs_match_in_linear_time():
    root = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-c", _MANY_STARS, root], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[1.0, 8.0]"


def test_R18_a_retry_count_beyond_the_limit_is_refused_before_the_trace_can_grow_for_ever():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", failure_strategies=nbp.Retry(10**9))
    with pytest.raises(nbp.DefinitionError) as err:
        simulate(p, failures={"a": True})
    (problem,) = err.value.problems
    assert (problem.fqn, problem.rule) == ("pipeline.stages.s.spec.execution.steps.a", "R18")
    assert "count 1000000000 is more than the limit of 100 retries" in problem.message


def test_a_plan_is_accepted_and_gives_the_same_trace_as_the_pipeline():
    p = sampled_design()
    plan = p.plan()
    assert simulate(plan, **SAMPLED).equals(simulate(p, **SAMPLED))
    with pytest.raises(TypeError, match="takes a Pipeline or a Plan"):
        simulate("release")


def test_listeners_hear_virtual_times():
    heard = []

    class Listener:
        def node_started(self, node: Any, attempt: int, t: float) -> None:
            heard.append((node.id, attempt, t))

    simulate(
        retry_design(failure_strategies=nbp.Retry(1, intervals="5s")),
        failures={"x": 1},
        listeners=[Listener()],
    )
    assert ("x", 1, 0.0) in heard and ("x", 2, 15.0) in heard and ("after", 1, 25.0) in heard


# -- scale ------------------------------------------------------------------------------------------


def test_100000_steps_simulate():
    """1,000 step groups × 10 parallel blocks × 10 steps; each block lasts its slowest step (10 s)."""
    groups = []
    for g in range(1_000):
        blocks = [
            nbp.Parallel([nbp.Step(f"s{g}_{b}_{i}", duration=1 + i) for i in range(10)]) for b in range(10)
        ]
        groups.append(nbp.StepGroup(f"g{g}", items=blocks))
    p = nbp.Pipeline("big", stages=[nbp.Stage("s", items=groups)])
    t = simulate(p)
    steps = t[t["kind"] == "step"]
    assert len(steps) == 100_000
    assert (steps["status"] == "Success").all()
    root = t[t["kind"] == "pipeline"].iloc[0]
    assert root["end_s"] == 1_000 * 10 * 10.0


def test_R44_declared_outputs_resolve_in_virtual_time():
    """A reader of a declared output works in simulate() as in run(): None unless given."""
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=lambda: {"v": 3}, outputs=["v"])
        s.step("b", when="<+execution.steps.a.output.outputVariables.v> > 2")
    real = p.run()
    assert real.set_index("step").loc["b", "status"] == "Success"
    default = simulate(p)
    assert default.set_index("step").loc["a", "outputs"] == {"v": None}
    assert default.set_index("step").loc["b", "status"] == "Skipped"  # null > 2 is false
    given = simulate(p, outputs={"a": {"v": 5}})
    assert given.set_index("step").loc["a", "outputs"] == {"v": 5}
    assert given.set_index("step").loc["b", "status"] == "Success"
    by_attempt = simulate(p, outputs={"a": lambda attempt: {"v": attempt}})
    assert by_attempt.set_index("step").loc["a", "outputs"] == {"v": 1}


def test_a_steps_own_duration_sampler_is_drawn_by_a_plain_simulate():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", duration=lambda rng: rng.uniform(10, 20))
        s.step("b", duration="5s")
    t = p.simulate(seed=7)
    a = t.set_index("step").loc["a"]
    assert 10 <= a["duration_s"] <= 20
    assert p.simulate(seed=7).equals(t)  # the same seed draws the same
    assert t.set_index("step").loc["b", "duration_s"] == pytest.approx(5)


# -- samplers that misbehave name their step (issue 23 item 9) -------------------------------------
A = "pipeline.stages.s.spec.execution.steps.a"


def one_step(**settings: Any) -> nbp.Pipeline:
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", **settings)
    return p


def test_a_sampler_returning_none_is_refused_not_taken_as_zero_seconds():
    with pytest.raises(SimulationError, match=f"the duration sampler of {A} returned None"):
        simulate(one_step(duration=lambda rng: None))
    with pytest.raises(SimulationError, match=f"the duration sampler of {A} returned None"):
        simulate(one_step(), durations={"a": lambda rng: None})


def test_a_sampler_that_raises_names_its_step():
    with pytest.raises(SimulationError, match=f"the duration sampler of {A} raised ZeroDivisionError"):
        simulate(one_step(duration=lambda rng: 1 / 0))
    with pytest.raises(SimulationError, match=f"durations=: the function raised KeyError for {A}"):
        simulate(one_step(), durations=lambda node, rng: {}["x"])
    with pytest.raises(SimulationError, match=f"failures for {A}: the function raised ZeroDivisionError"):
        simulate(one_step(), failures={"a": lambda attempt, rng: 1 / 0})
    with pytest.raises(SimulationError, match=f"outputs for {A}: the function raised ZeroDivisionError"):
        simulate(one_step(), outputs={"a": lambda attempt: 1 / 0})
