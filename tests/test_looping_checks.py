"""Looping strategies: keys, references, identities and limits (issue 23 items 3–5, issue 31 item 3).

R46 (postfixed identifiers), R42 (references checked before a run), R49–R51, R54.
"""

from __future__ import annotations

import tracemalloc
import warnings

import pytest

import notebook_pipelines as nbp
from notebook_pipelines.definition.limits import MAX_NESTED_ITERATIONS
from notebook_pipelines.definition.looping import (
    MAX_ITERATIONS,
    LoopingError,
    Matrix,
    Parallelism,
    Repeat,
    iterations,
    labels_by_name,
)
from notebook_pipelines.engine.simulation import SimulationError
from notebook_pipelines.errors import DefinitionError

S1 = "pipeline.stages.s1.spec.execution.steps"


def loops() -> nbp.Pipeline:
    """s1: compile, a 2×1 matrix (1 s); the group regional, a 2×1 matrix holding deploy (2 s).
    s2: a stage repeated twice holding c, parallelism 2 (1 s)."""
    p = nbp.Pipeline("p")
    with p.stage("s1") as s:
        s.step("compile", duration=1, strategy=Matrix(os=["linux", "win"], arch=["x64"]))
        with s.step_group("regional", strategy=Matrix(region=["eu", "us"], tier=["a"])) as g:
            g.step("deploy", duration=2)
    with p.stage("s2", strategy=Repeat(times=2)) as s:
        s.step("c", duration=1, strategy=Parallelism(2))
    return p


def ends(trace) -> dict[str, float]:
    return {f.split(".", 2)[2]: e for f, e in zip(trace["fqn"], trace["end_s"]) if f.count(".") > 1}


# -- item 3: every FQN a trace holds is a key ------------------------------------------------------
def test_R46_two_index_iteration_fqns_are_duration_keys():
    trace = loops().simulate(
        durations={
            f"{S1}.compile_0_0": 3,  # a step's iteration, two indices
            f"{S1}.regional_1_0.steps.deploy": 5,  # a step inside an iteration of a looped group
            "pipeline.stages.s2_1.spec.execution.steps.c": 7,  # a looped step's row in a stage iteration
            "pipeline.stages.s2_0.spec.execution.steps.c_1": 4,  # an iteration inside an iteration
        }
    )
    got = ends(trace)
    # by hand: compile_0_0 0–3, compile_1_0 0–1 → the loop ends at 3; regional_0_0 deploy 3–5,
    # regional_1_0 deploy 3–8 → s1 ends at 8; s2_0: c_0 8–9, c_1 8–12; s2_1: c_0 and c_1 8–15
    assert got["s1.spec.execution.steps.compile_0_0"] == 3 and got["s1.spec.execution.steps.compile_1_0"] == 1
    assert got["s1.spec.execution.steps.regional_0_0.steps.deploy"] == 5
    assert got["s1.spec.execution.steps.regional_1_0.steps.deploy"] == 8
    assert (got["s2_0.spec.execution.steps.c_0"], got["s2_0.spec.execution.steps.c_1"]) == (9, 12)
    assert (got["s2_1.spec.execution.steps.c_0"], got["s2_1.spec.execution.steps.c_1"]) == (15, 15)


def test_R46_every_step_fqn_of_a_trace_is_a_valid_key_of_every_option():
    p = loops()
    trace = p.simulate()
    fqns = list(dict.fromkeys(trace.loc[trace["kind"] == "step", "fqn"]))
    assert len(fqns) == 3 + 2 + 2 * 3  # compile + 2 iterations, 2 deploys; s2_0, s2_1: c + 2 each
    for fqn in fqns:
        p.simulate(durations={fqn: 1})
        p.simulate(failures={fqn: 1})
        p.simulate(outputs={fqn: {"v": 1}})
        p.simulate(interventions={fqn: "MarkAsSuccess"})
    key = f"{S1}.compile_1_0"
    table = nbp.compare({"a": p}, durations={key: 10})
    assert table.loc["a", "makespan_s"] == 10 + 2 + 1  # compile_1_0 0–10, deploys 10–12, s2 12–13
    assert len(nbp.monte_carlo(p, {key: 10}, runs=2)) == 2


def test_R46_failures_keyed_by_an_iteration_fail_that_iteration_only():
    trace = loops().simulate(failures={f"{S1}.regional_0_0.steps.deploy": 1})
    status = dict(zip(trace["fqn"], trace["status"].astype(str)))
    assert status[f"{S1}.regional_0_0.steps.deploy"] == "Failed"
    assert status[f"{S1}.regional_1_0.steps.deploy"] == "Success"


def test_R46_a_postfix_the_loop_does_not_make_is_still_refused():
    with pytest.raises(SimulationError, match=r"no step of pipeline 'p' matches .*compile_5_0") as caught:
        loops().simulate(durations={f"{S1}.compile_5_0": 1})
    assert "the iterations of 'compile' are compile_0_0, compile_1_0" in str(caught.value)
    with pytest.raises(SimulationError, match="no step"):  # the stage's iterations are s2_0 and s2_1
        loops().simulate(durations={"pipeline.stages.s2_2.spec.execution.steps.c_0": 1})


# -- item 4: references in looping strategies ------------------------------------------------------
def test_R42_undefined_variable_in_a_matrix_axis_is_refused_at_validation():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("c", duration=1, strategy={"matrix": {"region": "<+pipeline.variables.regions>"}})
    with pytest.raises(
        DefinitionError, match=r"\[R42\] strategy matrix axis 'region'.*no variable 'regions'"
    ):
        p.validate()
    with pytest.raises(DefinitionError):
        p.simulate()


def test_R42_looping_references_of_every_field_are_checked():
    for strategy in (
        {"repeat": {"items": "<+pipeline.variables.nope>"}},
        {"repeat": {"times": "<+pipeline.variables.nope>"}},
        {"parallelism": "<+pipeline.variables.nope>"},
        {"matrix": {"os": ["a"], "maxConcurrency": "<+pipeline.variables.nope>"}},
    ):
        p = nbp.Pipeline("p")
        with p.stage("s") as s:
            s.step("c", duration=1, strategy=strategy)
        with pytest.raises(DefinitionError, match="no variable 'nope'"):
            p.validate()


def test_R50_simulation_fails_where_the_run_fails_on_a_known_value_that_is_not_a_list():
    p = nbp.Pipeline("p", variables={"regions": "eu"})  # a text, not a list
    with p.stage("s") as s:
        s.step("c", lambda: None, strategy={"matrix": {"region": "<+pipeline.variables.regions>"}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "known only in a run" warning: the value is known
        simulated = p.simulate()
    ran = p.run(progress=False)
    for trace in (simulated, ran):
        c = trace[trace["step"] == "c"].iloc[0]
        assert str(c["status"]) == "Failed" and "not a list" in c["error"]


def test_R50_simulation_fails_on_an_output_given_by_outputs_that_is_not_a_list():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", duration=1, outputs=["hosts"])
        s.step(
            "c",
            duration=1,
            strategy={"repeat": {"items": "<+execution.steps.a.output.outputVariables.hosts>"}},
        )
    trace = p.simulate(outputs={"a": {"hosts": "h1"}})
    c = trace[trace["step"] == "c"].iloc[0]
    assert str(c["status"]) == "Failed" and "not a list" in c["error"]
    ok = p.simulate(outputs={"a": {"hosts": ["h1", "h2"]}})
    assert list(ok.loc[ok["step"].astype(str).str.startswith("c_"), "step"]) == ["c_0", "c_1"]


# -- item 5: an iteration never takes another node's identity --------------------------------------
def test_R46_an_iteration_cannot_take_a_sibling_steps_identity():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("build", duration=1, strategy=Repeat(times=2))
        s.step("build_0", duration=1)
    with pytest.raises(DefinitionError) as caught:
        p.validate()
    text = str(caught.value)
    assert "[R46] iteration 0 of the looped step 'build' would be" in text
    assert "steps.build_0, which is the step 'build_0'" in text


def test_R46_two_looped_siblings_cannot_make_one_fqn():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("b", duration=1, strategy=Matrix(x=["1", "2"], y=["1"]))  # b_0_0, b_1_0
        s.step("b_0", duration=1, strategy=Parallelism(1))  # b_0_0
    with pytest.raises(DefinitionError, match=r"iteration 0 of the looped step 'b_0' would be .*b_0_0, as"):
        p.validate()


def test_R46_a_matrix_axis_listing_a_value_twice_is_refused():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("c", duration=1, strategy=Matrix(os=["x", "x"]))
    with pytest.raises(DefinitionError, match=r"axis 'os' lists 'x' twice \(values 0 and 1\)"):
        p.validate()


def test_R53_labels_by_name_that_collide_are_refused():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("c", duration=1, strategy=Matrix(a=["x_y", "x"], b=["z", "y_z"], postfix=labels_by_name))
    # x_y + z → _x_y_z, and x + y_z → _x_y_z: one FQN for iterations 0 and 3
    with pytest.raises(DefinitionError, match=r"iteration 3 of the looped step 'c' and iteration 0 both"):
        p.validate()


def test_R46_run_time_items_that_name_a_sibling_fail_the_node_as_it_expands():
    p = nbp.Pipeline("p", variables={"hosts": ["h1", "h2"]})
    with p.stage("s") as s:
        s.step("deploy", lambda: None, strategy={"repeat": {"items": "<+pipeline.variables.hosts>"}})
        s.step("deploy_1", lambda: None)
    for trace in (p.simulate(), p.run(progress=False)):
        row = trace[trace["fqn"] == "pipeline.stages.s.spec.execution.steps.deploy"].iloc[0]
        assert str(row["status"]) == "Failed"
        assert "iteration 1 would be pipeline.stages.s.spec.execution.steps.deploy_1" in row["error"]
        assert "the step 'deploy_1'" in row["error"]


# -- issue 31 item 3: nested loops and large lists are bounded --------------------------------------
def test_nested_loops_beyond_the_limit_are_refused_at_validation():
    p = nbp.Pipeline("p")
    with p.stage("s", strategy=Repeat(times=10_000)) as s:
        s.step("c", duration=1, strategy=Repeat(times=10_000))
    with pytest.raises(DefinitionError) as caught:
        p.validate()
    # 10,000 × 10,000 = 100,000,000 > 100,000
    assert "nested looping strategies run this node 100,000,000 times" in str(caught.value)
    assert "step 'c' × 10,000; inside stage 's' × 10,000" in str(caught.value)
    assert MAX_NESTED_ITERATIONS == 100_000


def test_nested_loops_with_run_time_counts_fail_before_expanding():
    p = nbp.Pipeline("p")
    with p.stage("s", strategy=Repeat(items="<+stage.output.hosts>")) as s:
        s.step("c", duration=1, strategy=Repeat(times=300))
    p.validate()  # the stage's count is known only in a run
    # 400 stage iterations × 300 = 120,000 > 100,000: the stage fails before any iteration is made
    trace = p.simulate(iterations={"s": 400})
    stage = trace[trace["fqn"] == "pipeline.stages.s"].iloc[0]
    assert str(stage["status"]) == "Failed" and "120,000 in all" in stage["error"]
    assert len(trace) < 10
    # 300 × 300 = 90,000: within the limit, it runs
    assert str(p.simulate(iterations={"s": 300})["status"].iloc[0]) == "Success"


def test_a_long_run_time_list_is_counted_before_iterations_are_made():
    items = list(range(1_000_000))
    tracemalloc.start()
    try:
        with pytest.raises(LoopingError, match=f"asks for 1000000 iterations; the limit is {MAX_ITERATIONS}"):
            iterations(Repeat(items="<+x>"), resolve=lambda _: items)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # a copy of the list is 8 MB; a million iterations were hundreds of MB
    assert peak < 40_000_000


class Counted(str):
    """A matrix value that counts how often it is compared."""

    comparisons = 0

    def __eq__(self, other):
        Counted.comparisons += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_R49_matrix_exclusion_takes_linear_time():
    values = [Counted(f"v{i}") for i in range(30)]
    excluded = [{"a": values[i], "b": values[j]} for i in range(30) for j in range(29)]  # 870 entries
    Counted.comparisons = 0
    its = iterations(Matrix(a=values, b=values, exclude=excluded))
    # 900 combinations − 870 excluded = the 30 with b = v29
    assert [it.matrix["b"] for it in its] == ["v29"] * 30
    # one lookup per combination (a hash, an equality for each hit): not 900 × 870 comparisons
    assert Counted.comparisons <= 4 * 900


def test_R49_a_matrix_past_the_iteration_limit_is_refused_at_validation():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("c", duration=1, strategy=Matrix(a=list(range(101)), b=list(range(100))))
    # 101 × 100 = 10,100 > 10,000
    with pytest.raises(DefinitionError, match=r"\[R49\] the matrix has 101 × 100 = 10,100 combinations"):
        p.validate()
