"""The compiled plan: FQNs as Harness writes them (R42), positions, pre-order, inherited settings.

Effective settings: a step's ``when`` is its own or its innermost group's (R7, R31); failure
strategies chain step → group(s) → stage → default (R22, R24); delegate selectors, innermost
wins (R62).
"""

from __future__ import annotations

import pytest

import notebook_pipelines as nbp
from notebook_pipelines.definition.failure import MarkAsFailure, OnFailure, When
from notebook_pipelines.definition.model import Parallel, Pipeline, Stage, Step, StepGroup
from notebook_pipelines.definition.plan import DEFAULT_STAGE_STRATEGY, choose_action, compile_plan

B = "pipeline.stages.build.spec.execution"


def body(ctx):
    return None


def no_ctx():
    return None


def release() -> Pipeline:
    p = nbp.Pipeline("release")
    with p.stage("build") as build:
        build.step("checkout", run=no_ctx)
        with build.step_group("tests") as tests:
            with tests.parallel():
                tests.step("unit", run=body)
                tests.step("lint")
            tests.step("e2e")
            with tests.rollback():
                tests.step("undo_tests")
        with build.rollback():
            build.step("restore")
    with p.parallel():
        with p.stage("eu") as eu:
            eu.step("apply")
        with p.stage("us") as us:
            us.step("apply")
    return p


EXPECTED_FQNS = [
    "pipeline",
    "pipeline.stages.build",
    f"{B}.steps.checkout",
    f"{B}.steps.tests",
    f"{B}.steps.tests.steps.unit",
    f"{B}.steps.tests.steps.lint",
    f"{B}.steps.tests.steps.e2e",
    f"{B}.steps.tests.rollbackSteps.undo_tests",
    f"{B}.rollbackSteps.restore",
    "pipeline.stages.eu",
    "pipeline.stages.eu.spec.execution.steps.apply",
    "pipeline.stages.us",
    "pipeline.stages.us.spec.execution.steps.apply",
]


def test_R42_fqns_are_exactly_as_harness_writes_them_in_pre_order():
    plan = release().plan()
    assert [n.fqn for n in plan.nodes] == EXPECTED_FQNS


def test_R42_nodes_carry_their_index_and_by_fqn_finds_them():
    plan = release().plan()
    assert [n.index for n in plan.nodes] == list(range(len(plan)))
    assert all(plan.by_fqn[n.fqn] is n for n in plan.nodes)
    assert list(plan.root.walk()) == list(plan.nodes)
    assert [n.id for n in plan.steps] == [
        "checkout",
        "unit",
        "lint",
        "e2e",
        "undo_tests",
        "restore",
        "apply",
        "apply",
    ]


def test_R6_nested_groups_chain_steps_in_their_fqns():
    inner = StepGroup("inner", items=[Step("x")], rollback_items=[Step("undo")])
    p = Pipeline("p", rules="current", stages=[Stage("s", items=[StepGroup("outer", items=[inner])])])
    fqns = [n.fqn for n in p.plan().nodes]
    prefix = "pipeline.stages.s.spec.execution.steps.outer.steps.inner"
    assert fqns[-2:] == [f"{prefix}.steps.x", f"{prefix}.rollbackSteps.undo"]
    plan = p.plan()
    x = plan.by_fqn[f"{prefix}.steps.x"]
    assert x.group.id == "inner" and x.group.parent.id == "outer"
    assert x.depth == 4


def test_kinds_phases_stages_and_groups_of_nodes():
    plan = release().plan()
    by = plan.by_fqn
    assert [n.kind for n in plan.nodes[:4]] == ["pipeline", "stage", "step", "step_group"]
    assert by[f"{B}.steps.tests.steps.unit"].group is by[f"{B}.steps.tests"]
    assert by[f"{B}.steps.checkout"].group is None
    assert by[f"{B}.steps.tests.steps.unit"].stage is by["pipeline.stages.build"]
    rollback = [n.id for n in plan.nodes if n.phase == "rollback"]
    assert rollback == ["undo_tests", "restore"]
    assert plan.root.parent is None and plan.root.stage is None
    assert by[f"{B}.steps.tests.steps.unit"].parent is by[f"{B}.steps.tests"]


def test_R5_R12_block_positions_and_parallel_nodes():
    plan = release().plan()
    by = plan.by_fqn
    blocks = {n.fqn.removeprefix(f"{B}.steps."): n.block for n in plan.nodes if n.fqn.startswith(B)}
    assert blocks["checkout"] == 0 and blocks["tests"] == 1
    assert blocks["tests.steps.unit"] == blocks["tests.steps.lint"] == 0
    assert blocks["tests.steps.e2e"] == 1
    assert by[f"{B}.rollbackSteps.restore"].block == 0
    assert by["pipeline.stages.eu"].block == by["pipeline.stages.us"].block == 1
    assert plan.root.block is None

    tests = by[f"{B}.steps.tests"]
    par, e2e = tests.items
    assert par.kind == "parallel" and [c.id for c in par.items] == ["unit", "lint"]
    assert par.fqn == f"{B}.steps.tests.steps[0]"
    assert e2e is by[f"{B}.steps.tests.steps.e2e"]
    assert [n.id for n in tests.rollback] == ["undo_tests"]
    stages = plan.root.items
    assert stages[0].id == "build" and stages[1].kind == "parallel"
    assert [s.id for s in stages[1].items] == ["eu", "us"]


def test_bodies_and_whether_they_take_ctx():
    plan = release().plan()
    by = plan.by_fqn
    assert by[f"{B}.steps.tests.steps.unit"].body is body and by[f"{B}.steps.tests.steps.unit"].takes_ctx
    assert by[f"{B}.steps.checkout"].body is no_ctx and not by[f"{B}.steps.checkout"].takes_ctx
    assert by[f"{B}.steps.tests.steps.lint"].body is None


def test_durations_and_timeouts_are_seconds():
    p = Pipeline(
        "p",
        timeout="1h",
        stages=[Stage("s", timeout="10m", items=[Step("x", timeout="1m 30s", duration="2s")])],
    )
    plan = p.plan()
    x = plan.by_fqn["pipeline.stages.s.spec.execution.steps.x"]
    assert (plan.root.timeout, plan.by_fqn["pipeline.stages.s"].timeout) == (3600.0, 600.0)
    assert (x.timeout, x.duration) == (90.0, 2.0)


# -- effective settings --------------------------------------------------------------------------


def conditions_pipeline() -> Pipeline:
    group = StepGroup(
        "g",
        when="Failure",
        items=[
            Parallel([Step("own", when="All"), Step("inherits")]),
            Step("cond", when={"stageStatus": "Success", "condition": "<+pipeline.variables.go> == 1"}),
        ],
        rollback_items=[Step("undo")],
    )
    stage = Stage("s", when="Failure", items=[Step("plain"), group])
    return Pipeline("p", variables={"go": 1}, stages=[stage])


def test_R7_R31_a_steps_when_overrides_its_groups():
    by = {n.id: n for n in conditions_pipeline().plan().nodes}
    assert by["own"].when == When("All")
    assert by["cond"].when == When("Success", "<+pipeline.variables.go> == 1")


def test_R7_a_step_without_when_takes_its_groups():
    by = {n.id: n for n in conditions_pipeline().plan().nodes}
    assert by["g"].when == When("Failure")
    assert by["inherits"].when == When("Failure")
    assert by["undo"].when == When("Failure")


def test_R28_R31_default_when_is_success_and_stage_conditions_are_not_inherited_by_steps():
    by = {n.id: n for n in conditions_pipeline().plan().nodes}
    assert by["s"].when == When("Failure")  # pipelineStatus of the stage
    assert by["plain"].when == When("Success")  # stageStatus of the step: its own default


def strategies_pipeline() -> Pipeline:
    step = Step("x", failure_strategies=[OnFailure(["Timeout"], nbp.Retry(2))])
    group = StepGroup(
        "g", items=[step, Step("y")], failure_strategies=[OnFailure(["Connectivity"], nbp.Ignore())]
    )
    stage = Stage("s", items=[group, Step("z")], failure_strategies=nbp.Abort())
    return Pipeline("p", stages=[stage])


def test_R22_strategies_chain_step_then_group_then_stage_then_default():
    by = {n.id: n for n in strategies_pipeline().plan().nodes}
    x = by["x"]
    assert x.strategies == (
        (OnFailure(("Timeout",), nbp.Retry(2)),),
        (OnFailure(("Connectivity",), nbp.Ignore()),),
        (OnFailure(("AllErrors",), nbp.Abort()),),
        DEFAULT_STAGE_STRATEGY,
    )
    assert by["y"].strategies == ((), *x.strategies[1:])
    assert by["z"].strategies == ((), (OnFailure(("AllErrors",), nbp.Abort()),), DEFAULT_STAGE_STRATEGY)
    assert by["g"].strategies == x.strategies[1:]
    assert by["s"].strategies == x.strategies[2:]


@pytest.mark.parametrize(
    ("error_type", "action"),
    [("Timeout", nbp.Retry(2)), ("Connectivity", nbp.Ignore()), ("Unknown", nbp.Abort())],
)
def test_R22_E4_the_nearest_level_with_a_matching_entry_chooses_the_action(error_type, action):
    x = {n.id: n for n in strategies_pipeline().plan().nodes}["x"]
    assert choose_action(x, error_type) == action


def test_R24_without_strategies_a_failure_marks_the_step_failed():
    plan = Pipeline("p", stages=[Stage("s", items=[Step("x")])]).plan()
    assert choose_action(plan.steps[0], "Unknown") == MarkAsFailure()


def test_R62_delegate_selectors_innermost_wins_under_current():
    step = Step("x", delegate_selectors=["step-box"])
    group = StepGroup("g", items=[step, Step("y")], delegate_selectors=["group-box"])
    p = Pipeline(
        "p", rules="current", stages=[Stage("s", items=[group, Step("z")], delegate_selectors=["stage-box"])]
    )
    by = {n.id: n for n in p.plan().nodes}
    assert by["x"].delegate_selectors == ["step-box"]
    assert by["y"].delegate_selectors == ["group-box"]
    assert by["z"].delegate_selectors == ["stage-box"]


def test_variables_and_names_are_on_their_nodes():
    p = Pipeline(
        "p",
        variables={"a": 1},
        stages=[Stage("s", name="Stage S", variables={"b": 2}, items=[Step("x", variables={"c": 3})])],
    )
    plan = p.plan()
    s, x = plan.nodes[1], plan.nodes[2]
    assert (plan.root.variables, s.variables, x.variables) == ({"a": 1}, {"b": 2}, {"c": 3})
    assert (s.name, x.name) == ("Stage S", "x")


def test_compile_plan_validates_first():
    with pytest.raises(nbp.DefinitionError):
        compile_plan(Pipeline("p", stages=[Stage("s")]))
    assert len(compile_plan(Pipeline("p", stages=[Stage("s")]), check=False)) == 2
