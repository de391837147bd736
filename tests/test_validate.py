"""Validation: every structural problem, all at once, each with FQN, rule and fix (D1, D10, R1–R62).

A ``DefinitionError`` lists every problem; each line names the node as Harness writes its
fully qualified name, the rule it breaks and how to fix it. An invalid pipeline never runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import notebook_pipelines as nbp
from notebook_pipelines.definition.model import Parallel, Pipeline, Stage, Step, StepGroup
from notebook_pipelines.definition.validation import problems
from notebook_pipelines.errors import MESSAGE_LIMIT, DefinitionError, Problem, excerpt

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
    """A problem names the node (FQN), the rule and the fix, and its one line says all three
    (each bounded: a long or multi-line value is shown as an excerpt)."""
    assert problem.fqn == "pipeline" or problem.fqn.startswith("pipeline.stages."), problem
    assert problem.rule and problem.rule != "-", problem
    assert problem.fix, problem
    message, fix = (excerpt(text, MESSAGE_LIMIT) for text in (problem.message, problem.fix))
    assert str(problem) == f"{excerpt(problem.fqn)}: [{problem.rule}] {message} — fix: {fix}"
    assert "\n" not in str(problem)


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


# Harness's own rule (EntityIdentifierValidator): "not start with a number or $"
@pytest.mark.parametrize("bad", ["1st", "a-b", "a b", "9", "$y", "$", "a\n"])
def test_R1_bad_identifiers_are_reported(bad):
    problem = only(one_stage(Step("ok"), Step(bad)))
    assert_complete(problem)
    assert problem.fqn == f"{STEPS}.{bad}" and problem.rule == "R1"
    assert repr(bad) in problem.message and "not starting with a digit" in problem.fix


@pytest.mark.parametrize("good", ["a", "_x", "a$y", "_$", "step_2", "CamelCase"])
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


@pytest.mark.parametrize("field", ["timeout", "duration"])
def test_R59_a_runtime_input_duration_says_it_needs_a_value_before_running(field):
    problem = only(one_stage(Step("x", **{field: "<+input>"})))
    assert_complete(problem)
    assert (problem.fqn, problem.rule) == (f"{STEPS}.x", "R59")
    assert problem.message == f"{field}='<+input>' is a runtime input: it needs a value before running"
    assert "cannot read" not in problem.message and "'10m'" in problem.fix


def test_R59_a_runtime_input_duration_with_a_default_offers_the_default():
    p = Pipeline(
        "p", timeout="<+input>.default(1h).allowedValues(1h,2h)", stages=[Stage("s", items=[Step("x")])]
    )
    problem = only(p)
    assert (problem.fqn, problem.rule) == ("pipeline", "R59")
    assert "is a runtime input: it needs a value before running" in problem.message
    assert "its default is '1h'" in problem.fix


def test_R59_the_default_of_a_runtime_input_is_found_with_spaces_around_it():
    problem = only(one_stage(Step("x", timeout="<+input>.default(  30m  )")))
    assert "its default is '30m'" in problem.fix


_SPACES = """
import sys
sys.path.insert(0, sys.argv[1])
from notebook_pipelines.definition.model import Pipeline, Stage, Step
from notebook_pipelines.definition.validation import problems

timeout = "<+input>.default(" + " " * 100_000 + "1h"  # no closing parenthesis
found = problems(Pipeline("p", stages=[Stage("s", items=[Step("x", timeout=timeout)])]))
print([(x.rule, "e.g. '10m'" in x.fix) for x in found])
"""


def test_R59_finding_a_runtime_input_default_is_linear_time():
    # the old pattern backtracked cubically: 20,000 spaces took minutes
    root = str(Path(__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-c", _SPACES, root], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[('R59', True)]"


def test_R59_an_expression_that_is_not_a_runtime_input_is_still_an_unreadable_duration():
    problem = only(one_stage(Step("x", timeout="<+pipeline.variables.t>")))
    assert "cannot read timeout='<+pipeline.variables.t>' as a duration" in problem.message


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
    assert lines[1:-1] == [f"  - {x}" for x in err.problems]
    assert lines[-1] == "(rule ids: see the semantics reference, docs/semantics.md#r1)"  # issue 29
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


def test_D13_structural_and_reference_problems_are_reported_in_one_pass():
    """Problems of the structure do not hide those of the references: one error lists both,
    even where a value cannot be read (the timeout below), which the references do not need."""
    p = one_stage(
        Step("a", timeout="soon", inputs={"x": "<+nope>"}),
        Step("a"),
        Step("b", when="<+pipeline.variables.nope> == 1"),
    )
    found = errors_of_all(p)
    assert [(x.rule, x.fqn.rsplit(".", 1)[-1]) for x in found] == [
        ("R59", "a"),  # the structure first, in definition order
        ("R1", "a"),
        ("R43", "a"),  # then the references
        ("R42", "b"),
    ]
    assert "unknown root 'nope'" in found[2].message and "no variable 'nope'" in found[3].message


def test_D13_a_problem_with_a_9000_character_condition_prints_a_bounded_excerpt():
    condition = "<+pipeline.variables.x> == '" + "a" * 9_000 + "' && <+pipeline.variables.nope> == 1"
    p = Pipeline("p", variables={"x": "1"}, stages=[Stage("s", items=[Step("a", when=condition)])])
    [problem] = errors_of_all(p)
    text = str(problem)
    assert len(text) < 1200 and "characters]…" in text and "no variable 'nope'" in text
    _message, expression_line, caret_line = text.splitlines()
    assert expression_line[caret_line.index("^") :].startswith("<+pipeline.variables.nope>")


def errors_of_all(p: Pipeline) -> list[Problem]:
    """Every problem ``validate()`` reports, structural and references (``problems()`` has the
    structural ones only)."""
    with pytest.raises(DefinitionError) as info:
        p.validate()
    structural = problems(p)
    assert info.value.problems[: len(structural)] == structural
    return info.value.problems


# -- how a body is called: inputs as keyword arguments, the context first ---------------------------
def _ctx_only(ctx):
    return None


def _no_context(a, b):
    return None


def _context_named_ctx(ctx):
    return None


@pytest.mark.parametrize(
    ("body", "inputs", "message", "fix"),
    [
        (
            _ctx_only,
            {"url": "https://x"},
            "the body _ctx_only(ctx) takes no parameter for the input 'url' "
            "(inputs arrive as keyword arguments)",
            "give the body a parameter per input, the context first: def _ctx_only(ctx, url), "
            "or take them all: def _ctx_only(ctx, **inputs)",
        ),
        (
            _no_context,
            {"a": 1},
            "the body _no_context(a, b) needs b, which no input gives",
            "add inputs={'b': …} to the step, or give the parameter a default",
        ),
        (
            _context_named_ctx,
            {"ctx": 1},
            "the body _context_named_ctx(ctx) takes the step context as 'ctx', and an input has "
            "that name too",
            "rename the input 'ctx'",
        ),
    ],
)
def test_R43_a_body_that_cannot_take_its_inputs_is_reported_before_the_run(body, inputs, message, fix):
    step = Step("deploy", run=body, inputs=inputs)
    problem = only(one_stage(step))
    assert_complete(problem)
    assert (problem.fqn, problem.rule) == (f"{STEPS}.deploy", "R43")
    assert (problem.message, problem.fix) == (message, fix)


def _takes_ctx_then_inputs(ctx, url, retries=3):
    return {"got": f"{ctx.fqn.rsplit('.', 1)[-1]} {url} {retries}"}


def _takes_inputs_only(url):
    return {"got": url}


def _takes_all_inputs(ctx, **inputs):
    return {"got": ",".join(sorted(inputs))}


def _takes_keywords_only(*, url):
    return {"got": url}


@pytest.mark.parametrize(
    ("body", "got"),
    [
        (_takes_ctx_then_inputs, "deploy https://x 3"),
        (_takes_inputs_only, "https://x"),
        (_takes_all_inputs, "url"),
        (_takes_keywords_only, "https://x"),
        (lambda ctx, url: {"got": url}, "https://x"),
    ],
)
def test_R43_bodies_that_take_their_inputs_as_keywords_validate_and_run(body, got, no_worker_leak):
    p = one_stage(Step("deploy", run=body, inputs={"url": "https://x"}))
    assert problems(p) == []
    trace = p.run(report=False)
    row = trace[trace["step"] == "deploy"].iloc[0]
    assert (row["status"], row["outputs"]) == ("Success", {"got": got})


def test_R43_a_body_with_inputs_written_as_fn_ctx_failed_only_at_run_time_before():
    """What the check prevents: the run's TypeError, once the step is already running."""
    p = one_stage(Step("deploy", run=_ctx_only, inputs={"url": "https://x"}))
    with pytest.raises(DefinitionError, match="takes no parameter for the input 'url'"):
        p.run(report=False)


# -- a step's duration may be a sampler, as simulate(durations=…) takes ---------------------------
class _Frozen:
    """A stand-in for a frozen scipy distribution: anything with ``.rvs(random_state=rng)``."""

    def rvs(self, random_state):
        return float(random_state.uniform(10, 20))


@pytest.mark.parametrize("sampler", [lambda rng: rng.uniform(1, 2), _Frozen()], ids=["callable", "rvs"])
def test_R59_a_step_duration_may_be_a_sampler_as_simulate_durations_takes(sampler):
    p = one_stage(Step("a", duration=sampler), Step("b"))
    assert problems(p) == []
    assert p.plan().by_fqn[f"{STEPS}.a"].duration is sampler
    # the step's own sampler draws exactly what the same sampler given to simulate() draws
    own = p.simulate(durations={"b": 1}, seed=3)
    given = one_stage(Step("a"), Step("b")).simulate(durations={"a": sampler, "b": 1}, seed=3)
    assert own["duration_s"].tolist() == given["duration_s"].tolist()
    drawn = own.loc[own["step"] == "a", "duration_s"].iloc[0]
    assert drawn != 1.0 and (1 <= drawn <= 2 or 10 <= drawn <= 20)


def test_R59_a_sampler_that_does_not_take_the_random_generator_is_reported():
    problem = only(one_stage(Step("a", duration=lambda: 5)))
    assert_complete(problem)
    assert problem.rule == "R59"
    assert "the sampler <lambda>() is called with one argument, the random generator (rng)" in problem.message
    assert problem.fix.startswith("write it as lambda rng: …")


# -- wrong value types: a problem line each (FQN, rule, fix), never a TypeError from inside --------


@pytest.mark.parametrize(
    ("field", "value"),
    [("timeout", float("nan")), ("timeout", float("inf")), ("timeout", "1e400"), ("duration", float("inf"))],
)
def test_R59_non_finite_durations_are_reported_as_unreadable(field, value):
    problem = only(one_stage(Step("a", **{field: value})))
    assert_complete(problem)
    assert (problem.fqn, problem.rule) == (f"{STEPS}.a", "R59")
    assert f"{field}={value!r}" in problem.message


def test_R59_a_nan_step_timeout_is_a_definition_error_naming_the_step():
    with pytest.raises(DefinitionError, match=r"steps\.a: \[R59\] cannot read timeout=nan"):
        nbp.compile_plan(one_stage(Step("a", timeout=float("nan"))))


def test_R59_non_finite_stage_pipeline_and_retry_interval_durations_are_reported():
    p = Pipeline(
        "p",
        timeout=float("inf"),
        stages=[
            Stage(
                "s",
                timeout="1e400",
                items=[Step("a", failure_strategies=nbp.Retry(1, intervals=[float("nan")]))],
            )
        ],
    )
    found = errors_of(p)
    assert [(x.fqn, x.rule) for x in found] == [("pipeline", "R59"), (S, "R59"), (f"{STEPS}.a", "R59")]


def _on(where: str, **settings) -> Pipeline:
    """A pipeline with ``settings`` on the step, group, stage or pipeline (``where``)."""
    if where == "pipeline":
        return Pipeline("p", stages=[Stage("s", items=[Step("a")])], **settings)
    if where == "stage":
        return Pipeline("p", stages=[Stage("s", items=[Step("a")], **settings)])
    if where == "group":
        return one_stage(StepGroup("g", items=[Step("a")], **settings))
    return one_stage(Step("a", **settings))


_FQN = {"pipeline": "pipeline", "stage": S, "group": f"{STEPS}.g", "step": f"{STEPS}.a"}


@pytest.mark.parametrize("where", ["step", "group", "stage", "pipeline"])
@pytest.mark.parametrize("bad", [[1], "x", 42, [("a", 1)]])
def test_R8_R43_variables_must_be_a_mapping_of_names_to_values(where, bad):
    problem = only(_on(where, variables=bad))
    assert_complete(problem)
    assert problem.fqn == _FQN[where] and problem.rule == ("R8" if where == "group" else "R43")
    assert "not a mapping" in problem.message and "variables={" in problem.fix


@pytest.mark.parametrize("where", ["step", "group", "stage", "pipeline"])
def test_R8_R43_variable_names_must_be_strings(where):
    problem = only(_on(where, variables={1: "x"}))
    assert_complete(problem)
    assert problem.fqn == _FQN[where] and "1" in problem.message


@pytest.mark.parametrize("where", ["step", "group", "stage", "pipeline"])
def test_R8_R43_well_formed_variables_pass(where):
    assert problems(_on(where, variables={"region": "eu", "replicas": 2})) == []


@pytest.mark.parametrize("bad", ["x", ["x"], 42])
def test_R43_step_inputs_must_be_a_mapping(bad):
    problem = only(one_stage(Step("a", inputs=bad)))
    assert_complete(problem)
    assert (problem.fqn, problem.rule) == (f"{STEPS}.a", "R43")
    assert "inputs=" in problem.message and "not a mapping" in problem.message


def test_R43_step_input_names_must_be_parameter_names():
    problem = only(one_stage(Step("a", inputs={"not a name": 1})))
    assert_complete(problem)
    assert "'not a name'" in problem.message


@pytest.mark.parametrize(
    ("bad", "fix"), [("x", "outputs=['x']"), (42, "outputs=['name', ...]"), ({"x": 1}, "outputs=")]
)
def test_R44_step_outputs_must_be_a_list_of_names(bad, fix):
    problem = only(one_stage(Step("a", outputs=bad)))
    assert_complete(problem)
    assert (problem.fqn, problem.rule) == (f"{STEPS}.a", "R44")
    assert "not a list of names" in problem.message and fix in problem.fix


def test_R44_output_names_must_be_strings():
    problem = only(one_stage(Step("a", outputs=["ok", 1])))
    assert_complete(problem)
    assert (problem.rule, "1" in problem.message) == ("R44", True)


def test_R43_R44_well_formed_inputs_and_outputs_pass():
    assert problems(one_stage(Step("a", inputs={"v": "<+pipeline.variables.x>"}, outputs=("x", "y")))) == []


def test_R28_an_unreadable_when_has_a_fix():
    problem = only(one_stage(Step("a", when=42)))
    assert_complete(problem)
    assert (problem.fqn, problem.rule) == (f"{STEPS}.a", "R28")
    assert "stageStatus" in problem.fix


def test_R28_an_unreadable_stage_when_names_pipeline_status_in_its_fix():
    problem = only(one_stage(Step("a"), when=object()))
    assert_complete(problem)
    assert problem.fqn == S and "pipelineStatus" in problem.fix


def test_R28_a_when_mapping_with_an_unknown_key_is_reported():
    problem = only(one_stage(Step("a", when={"stageStatus": "All", "conditon": "<+a> == 1"})))
    assert_complete(problem)
    assert problem.rule == "R28" and "'conditon'" in problem.message


def test_R28_bad_status_and_condition_have_fixes():
    found = errors_of(one_stage(Step("a", when=nbp.When("Sometimes")), Step("b", when=nbp.When("All", 5))))
    assert [x.rule for x in found] == ["R28", "R28"]
    for problem in found:
        assert_complete(problem)
    assert "Success, Failure or All" in found[0].fix and "expression" in found[1].fix


def test_R48_two_strategies_on_one_node_are_refused_with_a_neutral_fix():
    problem = only(one_stage(Step("a", strategy={"parallelism": 2, "repeat": {"times": 2}})))
    assert_complete(problem)
    assert problem.rule == "R48" and "exactly one of matrix, repeat, parallelism" in problem.message
    assert "parallelism, repeat" in problem.message and "strategy=" not in problem.fix


@pytest.mark.parametrize(
    ("strategy", "rule", "words"),
    [
        (nbp.Matrix(os=[]), "R49", "the matrix axis 'os' has no values"),
        (nbp.Matrix(os=["l"], exclude=[{"arch": "x"}]), "R49", "exclude names the axis 'arch'"),
        (nbp.Matrix(os=["l"], exclude=[{"os": "w"}]), "R49", "exclude names os='w'"),
        (nbp.Matrix(os=["l"], max_concurrency=0), "R54", "maxConcurrency is 0"),
        (nbp.Repeat(items=[1, 2], max_concurrency=-1), "R54", "maxConcurrency is -1"),
        (nbp.Parallelism(2, max_concurrency=0), "R54", "maxConcurrency is 0"),
        (nbp.Repeat(items=[1], times=2), "R50", "exactly one of items and times"),
        (nbp.Repeat(items="hosts"), "R50", "must be a list"),
        (nbp.Parallelism(-1), "R51", "parallelism is -1"),
        ({"repeat": {"times": 2}, "matrix": {"a": [1]}}, "R48", "exactly one of"),
        ("matrix", "R48", "a strategy is nbp.Matrix"),
    ],
)
def test_R48_R54_bad_looping_strategies_are_refused_naming_node_rule_and_fix(strategy, rule, words):
    problem = only(one_stage(Step("a", strategy=strategy)))
    assert_complete(problem)
    assert problem.rule == rule and words in problem.message, problem


@pytest.mark.parametrize("field", ["items", "rollback_items"])
@pytest.mark.parametrize("bad", [42, "x", Step("a")])
def test_R4_node_lists_must_be_lists(field, bad):
    kwargs = {"items": [Step("ok")], field: bad}
    group = StepGroup("g", **kwargs)
    problem = only(one_stage(group))
    assert_complete(problem)
    assert (problem.fqn, problem.rule) == (f"{STEPS}.g", "R4")
    assert "must be a list" in problem.message


def test_R4_R11_stages_must_be_a_list():
    problem = only(Pipeline("p", stages=Stage("s", items=[Step("a")])))
    assert_complete(problem)
    assert (problem.fqn, problem.rule) == ("pipeline", "R4") and "stages must be a list" in problem.message


def test_R5_a_parallel_block_must_hold_a_list():
    problem = only(one_stage(Step("a"), Parallel(42)))
    assert_complete(problem)
    assert (problem.fqn, problem.rule) == (f"{STEPS}[1]", "R5")


def test_R1_an_identifier_that_is_not_a_string_is_reported_not_raised():
    problem = only(one_stage(Step(["a"])))
    assert_complete(problem)
    assert problem.rule == "R1" and "['a']" in problem.message


@pytest.mark.parametrize(
    ("node", "rule", "field"),
    [
        (Step("a", name=42), "R1", "name"),
        (Step("a", type=42), "R4", "type"),
        (Step("a", spec="x"), "R4", "spec"),
        (Step("a", delegate_selectors="big-box"), "R62", "delegate_selectors"),
        (Step("a", delegate_selectors=[1]), "R62", "delegate_selectors"),
    ],
)
def test_wrong_value_types_on_a_step_are_reported(node, rule, field):
    problem = only(one_stage(node))
    assert_complete(problem)
    assert (problem.fqn, problem.rule) == (f"{STEPS}.a", rule) and f"{field}=" in problem.message


@pytest.mark.parametrize(
    ("settings", "rule"),
    [({"type": 1}, "R9"), ({"spec": [1]}, "R4"), ({"resource": ["x"]}, "D8"), ({"name": 2.5}, "R1")],
)
def test_wrong_value_types_on_a_stage_are_reported(settings, rule):
    problem = only(_on("stage", **settings))
    assert_complete(problem)
    assert (problem.fqn, problem.rule) == (S, rule)


def test_R62_runtime_input_delegate_selectors_are_kept_as_data():
    assert problems(one_stage(Step("a", delegate_selectors="<+input>"))) == []


def test_every_problem_validation_finds_names_node_rule_and_fix():
    """A pipeline breaking many rules at once: every line has its FQN, rule and a fix."""
    bad_step = Step(
        "a",
        when=42,
        timeout=float("nan"),
        duration="1e400",
        variables=[1],
        inputs="x",
        outputs="y",
        strategy={"repeat": {"times": 2}, "parallelism": 2},
        failure_strategies=[
            nbp.OnFailure("Bogus", nbp.Retry("two", intervals=["zz"], then=nbp.Retry(1))),
            nbp.OnFailure("Timeout", nbp.ManualIntervention(timeout=None, choices=["Nope"])),
            nbp.OnFailure("Unknown", 7),
            nbp.OnFailure("AllErrors", nbp.StepGroupRollback()),
        ],
        run=42,
    )
    p = Pipeline(
        "my-pipe",
        rules="odd",
        variables="v",
        stages=[
            Stage(
                "1st", items=[bad_step, Step("a"), Parallel([])], failure_strategies="Explode", when={"x": 1}
            ),
            Stage("empty", rollback_items=5),
            Stage(
                "g", items=[StepGroup("grp", items=[Step("x", failure_strategies=nbp.RetryStepGroup(-1))])]
            ),
        ],
    )
    found = errors_of(p)
    assert len(found) >= 20
    for problem in found:
        assert_complete(problem)
    assert {
        "D1",
        "R1",
        "R4",
        "R5",
        "R15/R17",
        "R16",
        "R17",
        "R18",
        "R19",
        "R20",
        "R28",
        "R37",
        "R43",
        "R44",
        "R48",
        "R59",
    } <= {x.rule for x in found}


# -- limits on hostile input (issue 11) ------------------------------------------------------------
from notebook_pipelines.definition.limits import (  # noqa: E402
    MAX_DATA_DEPTH,
    MAX_GROUP_DEPTH,
    MAX_IDENTIFIER,
    MAX_RETRIES,
)
from notebook_pipelines.definition.plan import compile_plan  # noqa: E402


@pytest.mark.parametrize(
    ("action", "rule"),
    [(nbp.Retry(10**9), "R18"), (nbp.Retry(MAX_RETRIES + 1), "R18"), (nbp.RetryStepGroup(10**9), "R19")],
)
def test_R18_R19_retry_counts_above_the_limit_are_refused_naming_node_rule_and_fix(action, rule):
    group = StepGroup("g", items=[Step("a")], failure_strategies=action)
    problem = only(one_stage(group))
    assert_complete(problem)
    assert (problem.fqn, problem.rule) == (f"{STEPS}.g", rule)
    assert f"count {action.count} is more than the limit of {MAX_RETRIES} retries" in problem.message
    assert f"retry at most {MAX_RETRIES} times" in problem.fix


def test_R18_R19_retry_counts_up_to_the_limit_pass():
    group = StepGroup(
        "g",
        items=[Step("a", failure_strategies=nbp.Retry(MAX_RETRIES))],
        failure_strategies=nbp.RetryStepGroup(MAX_RETRIES),
    )
    assert problems(one_stage(group)) == []


def test_R18_a_retry_count_above_the_limit_inside_another_action_is_refused():
    strategy = nbp.ManualIntervention(timeout="1m", on_timeout=nbp.Retry(10**6))
    problem = only(one_stage(Step("a", failure_strategies=strategy)))
    assert problem.rule == "R18" and "count 1000000 is more than the limit" in problem.message


def nested_groups_api(levels: int, rules: str = "current") -> Pipeline:
    """A stage whose step groups are nested ``levels`` deep, built the way a notebook would."""
    p = Pipeline("p", rules=rules)
    with p.stage("s") as s:
        group = s.step_group("g0")
        for level in range(1, levels):
            group = group.step_group(f"g{level}")
        group.step("leaf")
    return p


def deep_fqn(levels: int) -> str:
    return STEPS + "." + ".steps.".join(f"g{i}" for i in range(levels))


def test_R6_step_groups_nested_400_deep_through_the_api_are_refused_before_any_walk():
    p = nested_groups_api(400)
    walks = {
        "validate": p.validate,
        "plan": p.plan,
        "compile_plan(check=False)": lambda: compile_plan(p, check=False),
        "to_yaml": p.to_yaml,
        "simulate": p.simulate,
        "render": lambda: nbp.render(p),
    }
    for name, walk in walks.items():
        with pytest.raises(DefinitionError) as info:  # never RecursionError
            walk()
        (problem,) = info.value.problems
        assert_complete(problem)
        assert problem.fqn == deep_fqn(MAX_GROUP_DEPTH + 1), name
        assert problem.rule == "R6", name
        assert f"nested {MAX_GROUP_DEPTH + 1} levels deep; the limit is {MAX_GROUP_DEPTH}" in problem.message
        assert "flatten the nesting" in problem.fix


def test_R6_400_nested_step_groups_under_classic_rules_are_refused_the_same_way():
    problem = only(nested_groups_api(400, rules="classic"))
    assert (problem.fqn, problem.rule) == (deep_fqn(MAX_GROUP_DEPTH + 1), "R6")


def test_R6_the_deepest_nesting_allowed_goes_through_every_walk():
    p = nested_groups_api(MAX_GROUP_DEPTH)
    deepest = p.stages[0].items[0]
    for _ in range(MAX_GROUP_DEPTH - 1):
        deepest = deepest.items[0]
    deepest.items[0].spec = {"level": "x"}  # and data as deep as allowed below it
    for _ in range(MAX_DATA_DEPTH - 1):
        deepest.items[0].spec = {"level": deepest.items[0].spec}
    plan = p.plan()
    assert plan.by_fqn[deep_fqn(MAX_GROUP_DEPTH) + ".steps.leaf"].kind == "step"
    again = nbp.load_yaml(p.to_yaml(), rules="current", source_name="deep.yaml")
    assert again == p and again.plan().by_fqn.keys() == plan.by_fqn.keys()
    assert set(p.simulate()["status"]) == {"Success"}
    assert "leaf" in nbp.render(p).source


def test_settings_nested_deeper_than_the_limit_are_refused_before_any_walk():
    spec: object = "x"
    for _ in range(1000):
        spec = {"k": [spec]}
    chain: nbp.Action = nbp.Abort()
    for _ in range(1000):
        chain = nbp.ManualIntervention(timeout="1m", on_timeout=chain)
    p = one_stage(Step("a", spec=spec), Step("b", failure_strategies=chain))
    for walk in (p.validate, p.to_yaml, lambda: compile_plan(p, check=False)):
        with pytest.raises(DefinitionError) as info:
            walk()
        found = [(x.fqn, x.rule, x.message) for x in info.value.problems]
        assert found == [
            (f"{STEPS}.a", "limits", f"spec is nested more than {MAX_DATA_DEPTH} levels deep"),
            (f"{STEPS}.b", "limits", f"failure_strategies is nested more than {MAX_DATA_DEPTH} levels deep"),
        ]
        assert all(x.fix for x in info.value.problems)


def test_a_setting_that_contains_itself_is_refused_not_walked_for_ever():
    loop: list = []
    loop.append(loop)
    problem = only(one_stage(Step("a", spec={"loop": loop})))
    assert (problem.rule, problem.message) == (
        "limits",
        f"spec is nested more than {MAX_DATA_DEPTH} levels deep",
    )


def test_R1_identifiers_longer_than_harness_allows_are_refused():
    long_id = "a" * (MAX_IDENTIFIER + 1)
    problem = only(one_stage(Step(long_id)))
    assert_complete(problem)
    assert problem.rule == "R1" and f"is {MAX_IDENTIFIER + 1} characters long" in problem.message
    assert f"at most {MAX_IDENTIFIER}" in problem.message
    assert problems(one_stage(Step("a" * MAX_IDENTIFIER))) == []


@pytest.mark.parametrize("where", ["step", "stage", "pipeline"])
@pytest.mark.parametrize("zero", ["0s", 0, "0ms"])
def test_R59_a_zero_timeout_is_refused_on_every_level_with_one_meaning(where, zero):
    p = nbp.Pipeline("p", timeout=zero if where == "pipeline" else None)
    with p.stage("s", timeout=zero if where == "stage" else None) as s:
        s.step("a", timeout=zero if where == "step" else None)
    with pytest.raises(nbp.DefinitionError) as err:
        p.validate()
    [problem] = err.value.problems
    assert problem.rule == "R59" and "expire the node the moment it starts" in problem.message
    assert problem.fqn == {"pipeline": "pipeline", "stage": "pipeline.stages.s"}.get(
        where, "pipeline.stages.s.spec.execution.steps.a"
    )


def test_R1_R4_R59_problems_of_plain_steps_among_many_valid_ones_come_in_definition_order():
    # most steps of a large pipeline are plain (no setting but a body and a duration) and are
    # checked without generators; a plain step with a bad value is reported exactly as before
    good = [Step(f"ok{i}", duration=i % 3 or "1m 30s") for i in range(200)]
    bad = [
        Step("9lives"),  # R1: an identifier starting with a digit
        Step("a" * 129),  # R1: too long
        Step("ok7"),  # R1: used twice (ok7 is among the good ones, earlier)
        Step("neg", duration=-1),  # R59: negative
        Step("soon", duration="soon"),  # R59: unreadable
        Step("named", name=3),  # R1: a name that is not text
        Step("body", run=42),  # R4: neither a callable nor code text
        Step("huge", duration=1e12),  # R59: longer than 100 years
    ]
    items = [*good[:100], Parallel([*good[100:150], *bad[:4]]), *good[150:], *bad[4:]]
    found = errors_of(one_stage(*items))
    assert [(p.fqn.rsplit(".", 1)[-1], p.rule) for p in found] == [
        ("9lives", "R1"),
        ("a" * 129, "R1"),
        ("ok7", "R1"),
        ("neg", "R59"),
        ("soon", "R59"),
        ("named", "R1"),
        ("body", "R4"),
        ("huge", "R59"),
    ]
    assert "twice" in found[2].message and "cannot read duration='soon'" in found[4].message


HUGE = 10**5000  # more digits than Python will print (4,300): a message must not try


@pytest.mark.parametrize(
    ("step", "rule", "said"),
    [
        (Step("a", duration=HUGE), "R59", "duration=(an integer of about 5001 digits) is longer than"),
        (Step("a", timeout=-HUGE), "R59", "timeout=(a negative integer of about 5001 digits)"),
        (
            Step("a", failure_strategies=nbp.Retry(HUGE)),
            "R18",
            "count (an integer of about 5001 digits) is more",
        ),
        (Step("a", failure_strategies=nbp.Retry(-HUGE)), "R18", "(a negative integer of about 5001 digits)"),
        (Step("a", run=HUGE), "R4", "run=(an integer of about 5001 digits) is neither"),
        (Step("a", inputs=HUGE), "R43", "inputs=(an integer of about 5001 digits) is not a mapping"),
        (Step("a", outputs=[HUGE]), "R44", "the output name (an integer of about 5001 digits)"),
        (Step("a", when=nbp.When("Success", HUGE)), "R28", "condition (an integer of about 5001 digits)"),
        (Step("a", duration=10**30), "R59", "duration=1000000000000000000000000000000 is longer"),  # shown
    ],
)
def test_R18_R59_a_huge_integer_is_refused_with_its_size_not_a_crash(step, rule, said):
    problem = only(one_stage(step))
    assert_complete(problem)
    assert problem.rule == rule and said in problem.message


@pytest.mark.parametrize(
    ("strategy", "rule"),
    [(nbp.Repeat(times=10**9), "R50"), (nbp.Parallelism(10**9), "R51"), (nbp.Repeat(times=HUGE), "R50")],
)
def test_R50_R51_an_iteration_count_above_the_limit_is_refused_before_any_copy_is_made(strategy, rule):
    from notebook_pipelines.definition.looping import MAX_ITERATIONS

    p = Pipeline("p", stages=[Stage("s", items=[Step("a", duration=1, strategy=strategy)])])
    with pytest.raises(DefinitionError) as caught:  # was a MemoryError (or the OOM killer)
        nbp.simulate(p)
    (problem,) = caught.value.problems
    assert problem.rule == rule and problem.fqn == f"{STEPS}.a"
    assert f"the limit is {MAX_ITERATIONS} iterations" in problem.message
    assert str(MAX_ITERATIONS) in problem.fix


def test_R50_an_iteration_count_at_the_limit_runs():
    from notebook_pipelines.definition.looping import MAX_ITERATIONS

    p = Pipeline(
        "p", stages=[Stage("s", items=[Step("a", duration=1, strategy=nbp.Repeat(times=MAX_ITERATIONS))])]
    )
    trace = nbp.simulate(p)
    assert int(trace["iteration"].notna().sum()) == MAX_ITERATIONS  # the copies (and the looped node's row)


def test_R50_a_count_known_only_while_running_is_bounded_before_any_copy_is_made():
    p = nbp.Pipeline("p", variables={"n": 10**9})
    with p.stage("s") as s:
        s.step("x", run=lambda: None, strategy=nbp.Repeat(times="<+pipeline.variables.n>"))
    trace = p.run(progress=False, report=False)  # was a MemoryError (or the OOM killer)
    x = trace[trace["step"] == "x"].iloc[0]
    assert x["status"] == "Failed" and x["fqn"] == f"{STEPS}.x"
    assert "repeat times asks for 1000000000 iterations; the limit is 10000" in x["error"]
    assert "give at most 10000" in x["error"]


async def fetch_async(ctx):
    return {"x": 1}


def produce_items():
    yield 1


class AsyncCallable:
    async def __call__(self, ctx):
        return None


@pytest.mark.parametrize(
    ("body", "kind", "fix"),
    [
        (fetch_async, "an async function (async def)", "asyncio.run"),
        (produce_items, "a generator function (it yields)", "consumes the generator"),
        (AsyncCallable(), "an async function (async def)", "asyncio.run"),
    ],
)
def test_R43_an_async_or_generator_body_is_refused_at_validation_with_the_fix(body, kind, fix):
    [problem] = errors_of(one_stage(Step("a", run=body)))
    assert problem.fqn == "pipeline.stages.s.spec.execution.steps.a"
    assert kind in problem.message and "would run nothing" in problem.message
    assert fix in problem.fix


def test_a_body_shared_by_many_steps_is_looked_at_once(monkeypatch):
    """Validating 50 steps of one body works out its call once (R43), not once per step:
    formatting its signature for a message (``Signature.replace``) happens at most once."""
    import inspect

    formatted = []
    real = inspect.Signature.replace

    def counting(self, *args, **kwargs):
        formatted.append(1)
        return real(self, *args, **kwargs)

    def shared_body() -> None:
        return None

    monkeypatch.setattr(inspect.Signature, "replace", counting)
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        for i in range(50):
            s.step(f"x{i}", run=shared_body)
    p.validate()  # raises if anything is wrong
    assert len(formatted) <= 1
