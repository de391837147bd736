"""References in a pipeline: outputs, variables, conditions and their checks (R8, R18, R33, R42–R47, D13).

Each test builds a tiny pipeline with the builder, runs it (``p.run()``: real threads, bodies
are tiny lambdas) or simulates it (``p.simulate()``: virtual time, no bodies), and reads the
answer from the trace: a step's resolved ``inputs``, its ``status``, ``reason`` and ``error``.

Two kinds of mistakes are told apart (D13):

* what can be known before running (an unknown node or variable; reading a node that runs
  later, in parallel, or the reader itself, R45) is a ``DefinitionError`` raised by
  ``p.plan()`` / ``p.run()``, one line per problem: reader FQN, rule, expression, reason, fix;
* what only the run can tell (the step that was read was skipped) fails the reading node with
  an expression error whose text shows the expression with a caret under the reference.

Looped identifiers (R46, ``<+pipeline.stages.build_0…>``) come with looping strategies.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from conftest import row, run

import notebook_pipelines as nbp

BUILD = "pipeline.stages.build.spec.execution.steps"


# -- helpers ----------------------------------------------------------------------------------


def inputs(trace: pd.DataFrame, ident: str) -> dict:
    """The resolved inputs recorded for step ``ident``."""
    return row(trace, ident)["inputs"]


def problems(p: nbp.Pipeline) -> list[nbp.Problem]:
    """The problems ``p.plan()`` reports (it must report some)."""
    with pytest.raises(nbp.DefinitionError) as info:
        p.plan()
    return info.value.problems


def caret_target(error: str) -> str:
    """The text the caret of an expression error points at (from the caret to the line's end)."""
    lines = error.splitlines()
    column = lines[-1].index("^")
    assert lines[-1].strip() == "^"
    return lines[-2][column:]


def probe(ident: str = "probe", /, **expressions: str) -> nbp.Step:
    """A step that only reads: its ``inputs`` are the expressions; the trace shows their values."""
    return nbp.Step(ident, run=lambda **values: None, inputs=expressions)


# -- R44: a step publishes output variables -----------------------------------------------------


def test_R44_a_returned_dict_becomes_the_steps_output_variables():
    p = nbp.Pipeline("p")
    with p.stage("build") as s:
        s.step("unit", run=lambda: {"coverage": 91})
        s.add(probe(cov="<+execution.steps.unit.output.outputVariables.coverage>"))
    t = run(p)
    assert row(t, "unit")["outputs"] == {"coverage": 91}
    assert inputs(t, "probe") == {"cov": 91}  # a text that is one reference keeps the value's type


def test_R44_ctx_outputs_and_a_returned_dict_are_merged():
    def body(ctx: nbp.StepContext) -> dict:
        ctx.outputs["tag"] = "v1"
        return {"digest": "abc"}

    p = nbp.Pipeline("p")
    with p.stage("build") as s:
        s.step("image", run=body)
        out = "execution.steps.image.output.outputVariables"
        s.add(probe(ref=f"<+{out}.tag>@sha:<+{out}.digest>"))  # text around references: a string
    t = run(p)
    assert row(t, "image")["outputs"] == {"tag": "v1", "digest": "abc"}
    assert inputs(t, "probe") == {"ref": "v1@sha:abc"}


def test_R44_the_body_receives_resolved_inputs_as_keywords():
    seen = {}
    p = nbp.Pipeline("p", variables={"env": "prod"})
    with p.stage("deploy") as s:
        s.step(
            "go",
            run=lambda target: seen.update(target=target),
            inputs={"target": "k8s-<+pipeline.variables.env>"},
        )
    t = run(p)
    assert seen == {"target": "k8s-prod"} and inputs(t, "go") == {"target": "k8s-prod"}


def test_R44_reading_an_undeclared_output_of_a_declaring_step_is_a_definition_error():
    p = nbp.Pipeline("p")
    with p.stage("build") as s:
        s.step("unit", run=lambda: {"coverage": 91}, outputs=["coverage"])
        s.add(probe(cov="<+execution.steps.unit.output.outputVariables.coverge>"))
    [problem] = problems(p)
    assert problem.rule == "R44" and "did you mean 'coverage'" in problem.message


def test_R44_an_output_the_step_did_not_publish_fails_the_reader_at_run_time():
    p = nbp.Pipeline("p")
    with p.stage("build") as s:
        s.step("unit", run=lambda: {"coverage": 91})  # declares nothing: only the run can tell
        s.add(probe(n="<+execution.steps.unit.output.outputVariables.count>"))
    t = run(p)
    reader = row(t, "probe")
    assert reader["status"] == "Failed" and reader["reason"] == "its inputs could not be resolved"
    assert "has no output variable 'count'" in reader["error"] and "known: coverage" in reader["error"]
    assert reader["error"].startswith("input 'n': ")
    assert caret_target(reader["error"]).startswith("<+execution.steps.unit.output")


def test_R44_outputs_of_a_skipped_step_fail_a_when_condition_with_a_caret_under_the_reference():
    condition = '<+pipeline.variables.build> != "x" && <+execution.steps.a.output.outputVariables.x> == 1'
    p = nbp.Pipeline("p", variables={"build": "no"})
    with p.stage("s") as s:
        s.step("a", run=lambda: {"x": 1}, when='<+pipeline.variables.build> == "yes"')
        s.step("b", run=lambda: None, when=condition)
    t = run(p)
    assert row(t, "a")["status"] == "Skipped"
    b = row(t, "b")
    assert (b["status"], b["reason"], b["error_type"]) == ("Failed", "condition failed", "Unknown")
    assert "ended Skipped: it has no output variables" in b["error"]
    column = condition.index("<+execution")
    assert f"in {b['fqn']} at position {column}:" in b["error"]  # where, and the column of the reference
    assert caret_target(b["error"]).startswith("<+execution.steps.a.output.outputVariables.x> == 1")
    assert t["status"].iloc[0] == "Failed"  # never a silent null (D13)


# -- R42: the fully qualified name always works ---------------------------------------------------


def test_R42_a_full_fqn_reads_an_output_across_stages_and_groups():
    p = nbp.Pipeline("p")
    with p.stage("build") as s, s.step_group("tests") as g:
        g.step("unit", run=lambda: {"coverage": 91})
    with p.stage("deploy") as d:
        d.add(probe(cov=f"<+{BUILD}.tests.steps.unit.output.outputVariables.coverage>"))
    assert BUILD + ".tests.steps.unit" in p.plan().by_fqn
    assert inputs(run(p), "probe") == {"cov": 91}


def test_R42_nested_groups_chain_steps_and_getParentStepGroup_climbs():
    fqn = "pipeline.stages.s.spec.execution.steps.outer.steps.inner.steps.x"
    p = nbp.Pipeline("p", rules="current")  # nested groups need the newer rule set (D1)
    with p.stage("s") as s:
        with s.step_group("outer", variables={"region": "eu"}) as outer, outer.step_group("inner") as inner:
            inner.step("x", run=lambda: {"v": 7})
            inner.add(
                probe(up="<+stepGroup.getParentStepGroup.variables.region>", me="<+stepGroup.identifier>")
            )
        s.add(probe("after", v=f"<+{fqn}.output.outputVariables.v>"))
    assert fqn in p.plan().by_fqn
    t = run(p)
    assert inputs(t, "probe") == {"up": "eu", "me": "inner"}
    assert inputs(t, "after") == {"v": 7}


def test_R42_an_unknown_stage_or_step_is_a_definition_error_that_suggests_the_name():
    p = nbp.Pipeline("p")
    with p.stage("build") as s:
        s.step("unit")
    with p.stage("deploy") as d:
        d.add(probe(a="<+pipeline.stages.biuld.status>", b=f"<+{BUILD}.unti.status>"))
    stage, step = problems(p)
    assert stage.rule == step.rule == "R42"
    assert "has no stage 'biuld' (did you mean 'build'? known: build, deploy)" in stage.message
    assert "has no node 'unti' in steps (did you mean 'unit'? known: unit)" in step.message


def test_R42_a_stages_steps_are_under_spec_execution():
    p = nbp.Pipeline("p")
    with p.stage("build") as s:
        s.step("unit")
    with p.stage("deploy") as d:
        d.add(probe(a="<+pipeline.stages.build.steps.unit.status>"))
    [problem] = problems(p)
    assert "write spec.execution.steps.ID" in problem.message


# -- R43: relative forms --------------------------------------------------------------------------


def test_R43_execution_steps_is_relative_to_the_current_stage():
    p = nbp.Pipeline("p")
    with p.stage("build") as s:
        s.step("unit", run=lambda: {"n": 1})
        with s.step_group("g") as g:
            g.step("lint", run=lambda: {"n": 2})
        s.add(
            probe(
                a="<+execution.steps.unit.output.outputVariables.n>",
                b="<+execution.steps.g.steps.lint.output.outputVariables.n>",
            )
        )
    assert inputs(run(p), "probe") == {"a": 1, "b": 2}


def test_R43_stage_forms_read_the_current_stage():
    p = nbp.Pipeline("p")
    with p.stage("deploy", name="Deploy EU", variables={"region": "eu"}) as s:
        s.add(probe(region="<+stage.variables.region>", name="<+stage.name>", id="<+stage.identifier>"))
    assert inputs(p.simulate(), "probe") == {"region": "eu", "name": "Deploy EU", "id": "deploy"}


def test_R43_step_forms_read_the_current_step():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step(
            "smoke",
            name="Smoke test",
            run=lambda **kw: None,
            inputs={"n": "<+step.name>", "i": "<+step.identifier>"},
        )
    assert inputs(p.simulate(), "smoke") == {"n": "Smoke test", "i": "smoke"}


def test_R43_stepGroup_forms_read_the_innermost_group():
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.step_group("tests", name="All tests", variables={"level": "3"}) as g:
        g.add(probe(v="<+stepGroup.variables.level>", n="<+stepGroup.name>", i="<+stepGroup.identifier>"))
    assert inputs(p.simulate(), "probe") == {"v": "3", "n": "All tests", "i": "tests"}


def test_R43_pipeline_forms_read_the_pipeline():
    p = nbp.Pipeline("release", name="Release", variables={"env": "prod"})
    with p.stage("s") as s:
        s.add(probe(env="<+pipeline.variables.env>", n="<+pipeline.name>", i="<+pipeline.identifier>"))
    assert inputs(p.simulate(), "probe") == {"env": "prod", "n": "Release", "i": "release"}


def test_R43_stepGroup_outside_a_group_and_an_unknown_root_are_definition_errors():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.add(probe(a="<+stepGroup.variables.x>", b="<+stages.s.name>"))
    found = problems(p)
    assert [pr.rule for pr in found] == ["R43", "R43"]
    assert "is not inside a step group" in found[0].message and "unknown root 'stages'" in found[1].message


def test_R43_a_step_reads_its_own_variables_like_its_body_does():
    # Decision: a step's variables are part of its definition, readable before it runs, and
    # the same values the body gets in ctx.variables. Its status and outputs are not (R45).
    seen = {}
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step(
            "go",
            run=lambda ctx, x: seen.update(x=x, ctx=ctx.variables["x"]),
            variables={"x": "1"},
            inputs={"x": "<+step.variables.x>"},
        )
    run(p)
    assert seen == {"x": "1", "ctx": "1"}


# -- R8: step-group variables ---------------------------------------------------------------------


def test_R8_group_variables_inside_the_group_in_both_forms():
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.step_group("db", variables={"schema": "v2"}) as g:
        g.add(probe(a="<+stepGroup.variables.schema>", b="<+execution.steps.db.variables.schema>"))
    assert inputs(p.simulate(), "probe") == {"a": "v2", "b": "v2"}


def test_R8_group_variables_outside_the_group_by_the_full_path():
    p = nbp.Pipeline("p")
    with p.stage("build") as s, s.step_group("db", variables={"schema": "v2"}) as g:
        g.step("migrate")
    with p.stage("deploy") as d:
        d.add(probe(a=f"<+{BUILD}.db.variables.schema>"))
    assert inputs(p.simulate(), "probe") == {"a": "v2"}


def test_R8_an_unknown_group_variable_lists_the_known_ones():
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.step_group("db", variables={"schema": "v2"}) as g:
        g.add(probe(a="<+stepGroup.variables.shema>"))
    [problem] = problems(p)
    assert problem.fqn.endswith("db.steps.probe") and problem.rule == "R42"
    assert "has no variable 'shema' (did you mean 'schema'? known: schema)" in problem.message


# -- R45: only what has finished can be read --------------------------------------------------------


def test_R45_reading_a_later_step_is_a_definition_error_naming_reader_expression_and_reason():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.add(probe(v="<+execution.steps.late.output.outputVariables.x>"))
        s.step("late")
    [problem] = problems(p)
    assert problem.fqn == "pipeline.stages.s.spec.execution.steps.probe" and problem.rule == "R45"
    assert problem.message == (
        "input 'v' <+execution.steps.late.output.outputVariables.x>: "
        "pipeline.stages.s.spec.execution.steps.late runs after the reader"
    )
    assert problem.fix


def test_R45_a_step_cannot_read_its_own_status():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", when='<+execution.steps.a.status> == "SUCCEEDED"')
    [problem] = problems(p)
    assert "cannot read its own status" in problem.message
    assert "at position 0 <+execution.steps.a.status>" in problem.message  # the reference in the condition


def test_R45_parallel_sibling_steps_cannot_read_each_others_outputs():
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        s.step("a", run=lambda: {"x": 1})
        s.add(probe(v="<+execution.steps.a.output.outputVariables.x>"))
    [problem] = problems(p)
    assert problem.rule == "R45" and "runs in parallel with the reader" in problem.message


def test_R45_a_step_in_a_parallel_group_cannot_read_the_sibling_group():
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        with s.step_group("left") as left:
            left.step("a", run=lambda: {"x": 1})
        with s.step_group("right") as right:
            right.add(probe(v="<+execution.steps.left.steps.a.output.outputVariables.x>"))
    [problem] = problems(p)
    assert "left.steps.a runs in parallel with the reader" in problem.message


def test_R45_parallel_stages_cannot_read_each_others_status():
    p = nbp.Pipeline("p")
    with p.parallel():
        with p.stage("us") as us:
            us.step("a")
        with p.stage("eu", when='<+pipeline.stages.us.status> == "SUCCEEDED"') as eu:
            eu.step("b")
    [problem] = problems(p)
    assert problem.fqn == "pipeline.stages.eu" and "runs in parallel" in problem.message


def test_R45_a_stage_condition_cannot_read_its_own_steps():
    p = nbp.Pipeline("p")
    with p.stage("s", when='<+execution.steps.a.status> == "SUCCEEDED"') as s:
        s.step("a")
    [problem] = problems(p)
    assert "is inside the reader" in problem.message


def test_R45_the_status_of_a_running_container_is_currentStatus():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", when='<+stage.status> == "FAILED"')
    [problem] = problems(p)
    assert "contains the reader" in problem.message and "currentStatus" in problem.fix

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("ok", run=lambda: None)
        s.add(probe(before="<+stage.currentStatus>"))
        s.step("tolerated", run=lambda: 1 / 0, failure_strategies=nbp.Ignore())
        s.add(probe("probe2", after_ignore="<+stage.currentStatus>"))
        s.step("bad", run=lambda: 1 / 0)
        s.step(
            "cleanup",
            run=lambda **kw: None,
            when="All",
            inputs={"now": "<+stage.currentStatus>", "all": "<+pipeline.currentStatus>"},
        )
    t = run(p)
    assert inputs(t, "probe") == {"before": "RUNNING"}
    assert inputs(t, "probe2") == {"after_ignore": "RUNNING"}  # IgnoreFailed is not a failure
    assert inputs(t, "cleanup") == {"now": "FAILED", "all": "FAILED"}  # any failure counts (Harness)


def test_R45_definition_values_of_later_or_parallel_nodes_can_be_read():
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        s.add(probe(v="<+execution.steps.twin.variables.k>", n="<+pipeline.stages.later.name>"))
        s.step("twin", variables={"k": "v"})
    with p.stage("later", name="Later") as later:
        later.step("x")
    assert inputs(p.simulate(), "probe") == {"v": "v", "n": "Later"}


def test_R45_rollback_steps_read_the_execution_but_not_the_other_way_round():
    p = nbp.Pipeline("p")
    with p.stage("s", failure_strategies=nbp.StageRollback()) as s:
        s.step("deploy", run=lambda: {"release": "r7"})
        s.step("verify", run=lambda: 1 / 0)
        with s.rollback():
            s.step(
                "undo",
                run=lambda release: None,
                inputs={"release": "<+execution.steps.deploy.output.outputVariables.release>"},
            )
    t = run(p)
    assert row(t, "undo")["status"] == "Success" and inputs(t, "undo") == {"release": "r7"}

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.add(probe(v="<+execution.rollbackSteps.undo.status>"))
        with s.rollback():
            s.step("undo")
    [problem] = problems(p)
    assert "is a rollback step: it runs after the reader" in problem.message


def test_R45_every_problem_is_reported_at_once_and_run_refuses_to_start():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.add(probe(a="<+execution.steps.b.status>", c="<+pipeline.variables.nope>"))
        s.step("b", when='<+pipeline.variables.x> = "1"')
    found = problems(p)
    assert [pr.rule for pr in found] == ["R45", "R42", "R33"]
    assert "unexpected '=' (did you mean '=='?) at position 24" in found[2].message
    with pytest.raises(nbp.DefinitionError, match="3 problems"):
        p.run(report=False)


def test_R42_a_reference_problem_inside_a_longer_expression_shows_a_caret_under_it():
    text = "<+pipeline.variables.x> == 1 && <+pipeline.variables.nope> > 1"
    p = nbp.Pipeline("p", variables={"x": 1})
    with p.stage("s") as s:
        s.step("a", when=text)
    [problem] = problems(p)
    column = text.index("<+pipeline.variables.nope>")
    assert problem.rule == "R42" and (problem.expression, problem.position) == (text, column)
    assert f"at position {column} <+pipeline.variables.nope>" in problem.message
    assert str(problem).splitlines()[1:] == ["    " + text, "    " + " " * column + "^"]
    with pytest.raises(nbp.DefinitionError) as caught:
        p.plan()
    lines = str(caught.value).splitlines()  # the caret sits under the reference in the error too
    assert lines[-3:-1] == ["    " + text, "    " + " " * column + "^"]  # then the rules' reference


def test_R33_a_syntax_error_found_before_running_shows_a_caret_under_it():
    text = '<+pipeline.variables.x> = "1"'
    p = nbp.Pipeline("p", variables={"x": "1"})
    with p.stage("s") as s:
        s.step("a", when=text)
    [problem] = problems(p)
    assert problem.rule == "R33" and (problem.expression, problem.position) == (text, 24)
    assert str(problem).splitlines()[1:] == ["    " + text, "    " + " " * 24 + "^"]


def test_R42_the_caret_of_a_multi_line_text_is_under_the_reference_on_its_line():
    text = "first line\nsecond <+pipeline.variables.nope> here\nthird"
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.add(probe(v=text))
    [problem] = problems(p)
    assert problem.position == text.index("<+pipeline.variables.nope>")
    assert str(problem).splitlines()[1:] == [
        "    second <+pipeline.variables.nope> here",
        "    " + " " * len("second ") + "^",
    ]


def test_R42_a_text_that_is_only_the_reference_needs_no_caret():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.add(probe(v="<+pipeline.variables.nope>"))
    [problem] = problems(p)
    assert problem.position is None and len(str(problem).splitlines()) == 1


# -- R47: quoted segments -------------------------------------------------------------------------


def test_R47_quoted_segments_and_get_read_variables_with_hyphens():
    p = nbp.Pipeline("p", variables={"x-auth": "token", "my var": "spaced"})
    with p.stage("s", variables={"db-url": "pg://db"}) as s:
        s.add(
            probe(
                a='<+pipeline.variables["x-auth"]>',
                b="<+pipeline.variables.get('x-auth')>",
                c='<+pipeline.variables["my var"]>',
                d='<+stage.variables.get("db-url")>',
            )
        )
    assert inputs(p.simulate(), "probe") == {"a": "token", "b": "token", "c": "spaced", "d": "pg://db"}


def test_R47_an_unknown_quoted_variable_is_a_definition_error():
    p = nbp.Pipeline("p", variables={"x-auth": "token"})
    with p.stage("s") as s:
        s.add(probe(a='<+pipeline.variables["x-oauth"]>'))
    [problem] = problems(p)
    assert "no variable 'x-oauth' (did you mean 'x-auth'?" in problem.message


# -- R33 / R26: conditions ------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "ran"), [("prod", True), ("dev", False)])
def test_R33_a_step_condition_over_a_pipeline_variable(env: str, ran: bool):
    p = nbp.Pipeline("p", variables={"env": env})
    with p.stage("s") as s:
        s.step("deploy", when='<+pipeline.variables.env> == "prod"')
    d = row(p.simulate(), "deploy")
    assert d["status"] == ("Success" if ran else "Skipped")
    if not ran:
        assert d["reason"] == 'condition <+pipeline.variables.env> == "prod" is false'


def test_R33_group_and_stage_conditions_use_methods_and_membership():
    p = nbp.Pipeline("p", variables={"branch": "release/1.2", "region": "eu"})
    with p.stage("build", when='<+pipeline.variables.branch>.startsWith("release/")') as s:
        with s.step_group("eu_only", when='<+pipeline.variables.region> =~ ["eu", "uk"]') as g:
            g.step("a")
        with s.step_group("us_only", when='<+pipeline.variables.region> == "us"') as g:
            g.step("b")
    t = p.simulate()
    assert row(t, "a")["status"] == "Success"
    assert row(t, "us_only")["status"] == "Skipped" and row(t, "b")["reason"] == "parent skipped"


def test_R33_wrapped_and_compound_conditions_with_stage_variables():
    p = nbp.Pipeline("p", variables={"env": "prod"})
    with p.stage("s", variables={"canary": "false"}) as s:
        s.step("full", when='<+<+pipeline.variables.env> == "prod" && <+stage.variables.canary> != "true">')
        s.step("canary", when="<+stage.variables.canary> == true")  # "false" == true is false (R33)
    t = p.simulate()
    assert row(t, "full")["status"] == "Success" and row(t, "canary")["status"] == "Skipped"


def test_R26_statuses_read_as_harness_upper_case_names():
    p = nbp.Pipeline("p")
    with p.stage("build") as s:
        s.step("ok", run=lambda: None)
        s.step("flaky", run=lambda: 1 / 0, failure_strategies=nbp.Ignore())
        s.step("never", when="false")
        s.step("broken", run=lambda: 1 / 0)
    with p.stage("report", when="All") as r:
        r.add(
            probe(
                ok=f"<+{BUILD}.ok.status>",
                flaky=f"<+{BUILD}.flaky.status>",
                never=f"<+{BUILD}.never.status>",
                broken=f"<+{BUILD}.broken.status>",
                stage="<+pipeline.stages.build.status>",
            )
        )
    assert inputs(run(p), "probe") == {
        "ok": "SUCCEEDED",
        "flaky": "IGNORE_FAILED",
        "never": "SKIPPED",
        "broken": "FAILED",
        "stage": "FAILED",
    }


def test_R26_a_later_stage_runs_on_a_failed_stage_status():
    p = nbp.Pipeline("p")
    with p.stage("build") as s:
        s.step("compile", run=lambda: 1 / 0)
    when_failed = {"pipelineStatus": "All", "condition": '<+pipeline.stages.build.status> == "FAILED"'}
    when_ok = {"pipelineStatus": "All", "condition": '<+pipeline.stages.build.status> == "SUCCEEDED"'}
    with p.stage("notify", when=when_failed) as n:
        n.step("page", run=lambda: None)
    with p.stage("release", when=when_ok) as r:
        r.step("ship", run=lambda: None)
    t = run(p)
    assert row(t, "build")["status"] == "Failed"
    assert row(t, "page")["status"] == "Success"
    assert row(t, "release")["status"] == "Skipped"


# -- R18: retry conditions ------------------------------------------------------------------------


def flaky(message: str = "connection reset") -> Any:
    def body() -> None:
        raise nbp.StepError(message, error_type="Connectivity")

    return body


@pytest.mark.parametrize(("retries", "attempts"), [("on", 3), ("off", 1)])
def test_R18_a_retry_condition_over_a_pipeline_variable(retries: str, attempts: int):
    p = nbp.Pipeline("p", variables={"retries": retries})
    with p.stage("s") as s:
        s.step(
            "call",
            run=flaky(),
            failure_strategies=nbp.Retry(2, condition='<+pipeline.variables.retries> == "on"'),
        )
    t = run(p)
    rows = t[t["fqn"].str.endswith(".call")]
    assert rows["attempt"].tolist() == list(range(1, attempts + 1))
    assert rows["action"].iloc[-1] == "MarkAsFailure" and rows["status"].iloc[-1] == "Failed"


def test_R18_a_retry_condition_reads_the_failure_of_the_attempt():
    def body(ctx: nbp.StepContext) -> None:
        raise nbp.StepError("flaky network" if ctx.attempt == 1 else "disk full")

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        condition = (
            '<+step.failureInfo.message>.contains("flaky") && <+step.failureInfo.errorType> == "Unknown"'
        )
        s.step("call", run=body, failure_strategies=nbp.Retry(5, condition=condition))
    t = run(p)
    rows = t[t["fqn"].str.endswith(".call")]
    assert rows["attempt"].tolist() == [1, 2] and rows["error"].tolist() == ["flaky network", "disk full"]


def test_R18_a_stage_level_retry_condition_is_read_by_each_failing_step():
    p = nbp.Pipeline("p")
    with p.stage("s", failure_strategies=nbp.Retry(1, condition='<+step.identifier> == "a"')) as s:
        s.step("a", run=flaky())
        s.step("b", run=flaky(), when="All")
    t = run(p)
    assert row(t, "a")["attempt"] == 2 and row(t, "b")["attempt"] == 1


def test_R18_failure_info_outside_a_retry_condition_and_exit_code_are_definition_errors():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", when='<+step.failureInfo.message> == ""')
        s.step("b", run=flaky(), failure_strategies=nbp.Retry(1, condition="<+step.exitCode> == 137"))
    found = problems(p)
    assert [pr.rule for pr in found] == ["R18", "R18"]
    assert "only in a retry condition" in found[0].message
    assert (
        "exitCode exists for Harness shell steps only" in found[1].message and "failureInfo" in found[1].fix
    )


def test_R18_a_retry_condition_that_fails_at_run_time_does_not_retry_and_says_why():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("probe", run=lambda: {"ok": "yes"}, when="false")
        s.step(
            "call",
            run=flaky(),
            failure_strategies=nbp.Retry(
                2, condition='<+execution.steps.probe.output.outputVariables.ok> == "yes"'
            ),
        )
        s.step("after", run=lambda: None, when="All")
    t = run(p)
    call = row(t, "call")
    assert (call["attempt"], call["status"], call["action"]) == (1, "Failed", "MarkAsFailure")
    assert call["error"].startswith("connection reset\nthe retry condition failed: cannot resolve")
    assert caret_target(call["error"]).startswith("<+execution.steps.probe.output")
    assert row(t, "after")["status"] == "Success"  # the run went on
