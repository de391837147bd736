"""Validation: every structural problem, all at once, each with FQN, rule and fix (D1, D10, R1–R62).

A ``DefinitionError`` lists every problem; each line names the node as Harness writes its
fully qualified name, the rule it breaks and how to fix it. An invalid pipeline never runs.
"""

from __future__ import annotations

import pytest

import notebook_pipelines as nbp
from notebook_pipelines.errors import DefinitionError, Problem
from notebook_pipelines.model import Parallel, Pipeline, Stage, Step, StepGroup
from notebook_pipelines.validation import problems

S = "pipeline.stages.s"
STEPS = f"{S}.spec.execution.steps"


def one_stage(*items, rules: str = "classic", **stage_settings) -> Pipeline:
    return Pipeline("p", rules=rules, stages=[Stage("s", items=list(items), **stage_settings)])


def errors_of(p: Pipeline) -> list[Problem]:
    """The problems of ``p`` as the DefinitionError raised by ``validate`` carries them."""
    with pytest.raises(DefinitionError) as info:
        p.validate()
    assert info.value.problems == problems(p)
    return info.value.problems


def only(p: Pipeline) -> Problem:
    found = errors_of(p)
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


def assert_complete(problem: Problem) -> None:
    """A problem names the node (FQN), the rule and the fix, and its line says all three."""
    assert problem.fqn == "pipeline" or problem.fqn.startswith("pipeline.stages."), problem
    assert problem.rule and problem.rule != "-", problem
    assert problem.fix, problem
    assert str(problem) == f"{problem.fqn}: [{problem.rule}] {problem.message} — fix: {problem.fix}"


def nested_groups(rules: str) -> Pipeline:
    inner = StepGroup("inner", items=[Step("x")])
    return one_stage(StepGroup("outer", items=[Step("first"), inner]), rules=rules)


# -- rule sets (D1) -------------------------------------------------------------------------------


def test_D1_R6_nested_step_group_is_refused_under_classic_and_says_how_to_switch():
    problem = only(nested_groups("classic"))
    assert_complete(problem)
    assert problem.fqn == f"{STEPS}.outer.steps.inner"
    assert problem.rule == "R6/D1"
    assert "rules='current'" in problem.fix


def test_D1_R6_nested_step_groups_are_allowed_under_current():
    p = nested_groups("current")
    p.validate()
    assert f"{STEPS}.outer.steps.inner.steps.x" in p.plan().by_fqn


def test_D1_nested_step_group_in_a_rollback_list_is_refused_under_classic():
    group = StepGroup("g", items=[Step("x")], rollback_items=[StepGroup("undo", items=[Step("y")])])
    problem = only(one_stage(group))
    assert problem.fqn == f"{STEPS}.g.rollbackSteps.undo" and problem.rule == "R6/D1"


def test_D1_unknown_rule_set_is_reported():
    problem = only(one_stage(Step("x"), rules="modern"))
    assert_complete(problem)
    assert problem.fqn == "pipeline" and problem.rule == "D1"
    assert "'modern'" in problem.message and "classic" in problem.fix and "current" in problem.fix


@pytest.mark.parametrize("rules", ["classic", "current"])
def test_D1_both_rule_sets_accept_a_plain_pipeline(rules):
    assert (
        problems(one_stage(StepGroup("g", items=[Parallel([Step("a"), Step("b")]), Step("c")]), rules=rules))
        == []
    )


def test_D1_R62_delegate_selectors_on_a_step_group_are_refused_under_classic():
    group = StepGroup("g", items=[Step("x")], delegate_selectors=["big-box"])
    problem = only(one_stage(group))
    assert_complete(problem)
    assert problem.fqn == f"{STEPS}.g" and problem.rule == "R62/D1"
    assert "rules='current'" in problem.fix
    assert problems(one_stage(group, rules="current")) == []


def test_D1_R62_delegate_selectors_on_a_step_are_fine_under_classic():
    assert problems(one_stage(StepGroup("g", items=[Step("x", delegate_selectors=["big-box"])]))) == []


def test_D10_R60_step_group_timeout_is_refused_under_classic():
    group = StepGroup("g", items=[Step("x")], timeout="10m")
    problem = only(one_stage(group))
    assert_complete(problem)
    assert problem.fqn == f"{STEPS}.g" and problem.rule == "R60/D10"
    assert problems(one_stage(group, rules="current")) == []


def test_D10_timeouts_on_steps_stages_and_pipelines_are_fine():
    p = Pipeline("p", timeout="1h", stages=[Stage("s", timeout="30m", items=[Step("x", timeout="10s")])])
    assert problems(p) == []


# -- identifiers and emptiness (R1, R5, R11) -----------------------------------------------------


def test_R1_duplicate_identifier_in_one_list_is_reported():
    problem = only(one_stage(Step("x"), Step("y"), Step("x")))
    assert_complete(problem)
    assert problem.fqn == f"{STEPS}.x" and problem.rule == "R1"
    assert "'x'" in problem.message and "twice" in problem.message


def test_R1_duplicate_identifier_across_a_parallel_block_is_reported():
    problem = only(one_stage(Step("x"), Parallel([Step("y"), Step("x")])))
    assert problem.fqn == f"{STEPS}.x" and problem.rule == "R1"


def test_R1_duplicate_stage_identifier_is_reported():
    p = Pipeline("p", stages=[Stage("s", items=[Step("a")]), Stage("s", items=[Step("b")])])
    problem = only(p)
    assert problem.fqn == "pipeline.stages.s" and problem.rule == "R1"


def test_R1_same_identifier_in_different_scopes_is_fine():
    p = Pipeline(
        "p",
        stages=[
            Stage("a", items=[Step("x"), StepGroup("g", items=[Step("x")])], rollback_items=[Step("y")]),
            Stage("b", items=[Step("x"), Step("y")]),
        ],
    )
    assert problems(p) == []


def test_R1_empty_stage_is_reported():
    p = Pipeline("p", stages=[Stage("s", items=[Step("x")]), Stage("empty")])
    problem = only(p)
    assert_complete(problem)
    assert problem.fqn == "pipeline.stages.empty" and problem.rule == "R1"


def test_R1_empty_step_group_is_reported():
    problem = only(one_stage(Step("x"), StepGroup("g")))
    assert_complete(problem)
    assert problem.fqn == f"{STEPS}.g" and problem.rule == "R1"


def test_R5_empty_parallel_block_is_reported():
    problem = only(one_stage(Step("x"), Parallel([])))
    assert_complete(problem)
    assert problem.fqn == f"{STEPS}[1]" and problem.rule == "R5"  # as the plan names the block
    assert "parallel" in problem.message


def test_R11_pipeline_without_stages_is_reported():
    problem = only(Pipeline("p"))
    assert_complete(problem)
    assert problem.fqn == "pipeline" and problem.rule == "R11"


@pytest.mark.parametrize("bad", ["1st", "a-b", "a b", "9"])
def test_R1_bad_identifiers_are_reported(bad):
    problem = only(one_stage(Step("ok"), Step(bad)))
    assert_complete(problem)
    assert problem.fqn == f"{STEPS}.{bad}" and problem.rule == "R1"
    assert repr(bad) in problem.message and "not starting with a digit" in problem.fix


@pytest.mark.parametrize("good", ["a", "_x", "$y", "step_2", "CamelCase"])
def test_R1_good_identifiers_pass(good):
    assert problems(one_stage(Step(good))) == []


def test_R1_bad_stage_and_pipeline_identifiers_are_reported():
    p = Pipeline("my-pipe", stages=[Stage("2nd", items=[Step("x")])])
    found = errors_of(p)
    assert [(x.fqn, x.rule) for x in found] == [("pipeline", "R1"), ("pipeline.stages.2nd", "R1")]


def test_R4_a_stage_inside_a_stage_is_reported():
    problem = only(one_stage(Step("x"), Stage("inner", items=[Step("y")])))
    assert problem.fqn == f"{STEPS}.inner" and problem.rule == "R4"


# -- failure strategies (R16–R19, R37) ----------------------------------------------------------


def test_R16_unknown_error_type_is_reported():
    step = Step("x", failure_strategies=[nbp.OnFailure(["Bogus"], nbp.Abort())])
    problem = only(one_stage(step))
    assert_complete(problem)
    assert problem.fqn == f"{STEPS}.x" and problem.rule == "R16"
    assert "'Bogus'" in problem.message and "AllErrors" in problem.fix and "Connectivity" in problem.fix


def test_R17_unknown_action_type_is_reported():
    strategy = {"onFailure": {"errors": ["AllErrors"], "action": {"type": "Explode"}}}
    problem = only(one_stage(Step("x", failure_strategies=[strategy])))
    assert_complete(problem)
    assert problem.fqn == f"{STEPS}.x" and "R17" in problem.rule
    assert "'Explode'" in problem.message and "StageRollback" in problem.message


def test_R37_step_group_rollback_on_a_step_outside_any_group_is_reported():
    problem = only(one_stage(Step("x", failure_strategies=nbp.StepGroupRollback())))
    assert_complete(problem)
    assert problem.fqn == f"{STEPS}.x" and problem.rule == "R37"
    assert "StageRollback" in problem.fix


def test_R37_step_group_rollback_on_a_step_inside_a_group_is_fine():
    group = StepGroup("g", items=[Step("x", failure_strategies=nbp.StepGroupRollback())])
    assert problems(one_stage(group)) == []


def test_R37_step_group_rollback_on_a_stage_is_reported():
    problem = only(one_stage(Step("x"), failure_strategies=nbp.StepGroupRollback()))
    assert problem.fqn == S and problem.rule == "R37"


def test_R19_retry_step_group_on_a_step_is_reported():
    group = StepGroup("g", items=[Step("x", failure_strategies=nbp.RetryStepGroup(2))])
    problem = only(one_stage(group))
    assert_complete(problem)
    assert problem.fqn == f"{STEPS}.g.steps.x" and problem.rule == "R19"
    assert (
        problems(one_stage(StepGroup("g", items=[Step("x")], failure_strategies=nbp.RetryStepGroup(2)))) == []
    )


def test_R18_negative_retry_count_is_reported():
    problem = only(one_stage(Step("x", failure_strategies=nbp.Retry(-1))))
    assert_complete(problem)
    assert problem.fqn == f"{STEPS}.x" and problem.rule == "R18" and "-1" in problem.message


# -- durations (R59) ------------------------------------------------------------------------------


def test_R59_unparsable_durations_are_reported_where_they_are():
    p = Pipeline(
        "p",
        timeout="forever",
        stages=[
            Stage(
                "s",
                timeout="1x",
                items=[
                    Step(
                        "x", timeout="soon", duration="abc", failure_strategies=nbp.Retry(1, intervals=["zz"])
                    )
                ],
            )
        ],
    )
    found = errors_of(p)
    for problem in found:
        assert_complete(problem)
        assert problem.rule == "R59"
    keys = [(x.fqn, x.message.split("=")[0].split()[-1]) for x in found]
    assert keys == [
        ("pipeline", "timeout"),
        (S, "timeout"),
        (f"{STEPS}.x", "timeout"),
        (f"{STEPS}.x", "retryIntervals"),
        (f"{STEPS}.x", "duration"),
    ]


def test_R59_readable_durations_pass():
    assert problems(one_stage(Step("x", timeout="1m 30s", duration=2.5))) == []


# -- all at once, and nothing runs ------------------------------------------------------------------


def test_all_problems_are_collected_into_one_definition_error():
    p = Pipeline(
        "p",
        stages=[
            Stage("1st", items=[Step("x"), Step("x")]),
            Stage("b", items=[StepGroup("g", items=[StepGroup("h", items=[Step("y")])], timeout="1m")]),
            Stage("empty"),
        ],
    )
    with pytest.raises(DefinitionError) as info:
        p.validate()
    err = info.value
    rules = [x.rule for x in err.problems]
    assert rules == ["R1", "R1", "R60/D10", "R6/D1", "R1"]
    lines = str(err).splitlines()
    assert lines[0] == "5 problems in the pipeline definition:"
    assert lines[1:] == [f"  - {x}" for x in err.problems]
    for problem in err.problems:
        assert_complete(problem)
    assert isinstance(err, nbp.PipelineError) and isinstance(err, ValueError)


def test_running_an_invalid_pipeline_runs_nothing_and_raises_definition_error(no_worker_leak):
    calls: list[str] = []
    p = nbp.Pipeline("p")
    with p.stage("build") as s:
        s.step("first", run=lambda: calls.append("first"))
        with s.step_group("g") as g, g.step_group("nested") as h:  # nested under classic: invalid
            h.step("x", run=lambda: calls.append("x"))
    with pytest.raises(DefinitionError, match=r"R6/D1"):
        p.run()
    with pytest.raises(DefinitionError):
        nbp.run(p)
    assert calls == []


def test_planning_an_invalid_pipeline_raises_definition_error():
    with pytest.raises(DefinitionError):
        nbp.compile_plan(one_stage(StepGroup("g")))


def test_D13_validate_checks_references_too_as_run_would():
    """``validate()`` refuses exactly what ``run()`` refuses before starting: here an unknown variable."""
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", when="<+pipeline.variables.nope> == 1")
    with pytest.raises(nbp.DefinitionError) as info:
        p.validate()
    assert "pipeline.stages.s.spec.execution.steps.a" in str(info.value) and "nope" in str(info.value)
    with pytest.raises(nbp.DefinitionError):
        nbp.validate(p)
    with pytest.raises(nbp.DefinitionError):
        p.run()
