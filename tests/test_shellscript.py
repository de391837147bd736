"""Typed steps run for real: ShellScript in bash (R44 output variables), registered handlers,
and the refusal of a run whose typed steps cannot run, before anything starts."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest
from conftest import row, rows

import notebook_pipelines as nbp
from notebook_pipelines.definition.model import Pipeline, Stage, Step
from notebook_pipelines.engine.steptypes import (
    register_step_type,
    run_shell_script,
    shell_script_check,
    step_type,
    step_types,
    unregister_step_type,
)
from notebook_pipelines.formats.yaml_io import YamlWarning, load_yaml

FIXTURES = Path(__file__).parent / "fixtures"


def shell(ident: str, script: str, **settings) -> Step:
    spec = {"shell": "Bash", "source": {"type": "Inline", "spec": {"script": script}}}
    spec.update(settings.pop("spec", {}))
    return Step(ident, type="ShellScript", spec=spec, **settings)


def pipeline(*steps: Step) -> Pipeline:
    return Pipeline("p", stages=[Stage("s", items=list(steps))])


def gone(pid: int) -> bool:
    """True once no process has this pid (a killed child of ours is reaped by bash or by us)."""
    for _ in range(500):  # the kill is asynchronous: wait for it, up to 5 s
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                return True  # a zombie has exited; only its parent's wait is left
        except OSError:
            return True  # it vanished between the two looks
        time.sleep(0.01)
    return False


@pytest.fixture
def handlers():
    """Step types registered by a test are removed afterwards."""
    before = set(step_types())
    yield
    for name in set(step_types()) - before:
        unregister_step_type(name)


def test_R44_shellscript_pipeline_from_yaml_runs_for_real_and_exports_output_variables():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", YamlWarning)
        p = load_yaml(FIXTURES / "shell_outputs.yaml")
    trace = p.run(report=False)
    produce, consume = row(trace, "produce"), row(trace, "consume")
    assert (produce["status"], consume["status"]) == ("Success", "Success")
    # environment variables resolved from <+…>, expressions in the script resolved before it runs
    assert produce["outputs"] == {"greeting": "hello, world", "count": "42", "multi": "line one\nline two"}
    assert produce["log"] == "hello from world\nto stderr\n"  # stdout and stderr, in order
    # a later step reads them (relative and FQN forms); `exit 0` still exports (EXIT trap)
    assert consume["log"] == "got hello, world x 42\n"
    assert consume["outputs"] == {"result": "hello, world!"}
    assert produce["worker"].startswith("nbp-worker")


def test_a_nonzero_exit_code_fails_the_step_with_its_output_in_the_log():
    p = pipeline(shell("bad", "echo before\nexit 3"), shell("next", "echo never"))
    trace = p.run(report=False)
    bad = row(trace, "bad")
    assert (bad["status"], bad["error_type"], bad["error"]) == (
        "Failed",
        "Unknown",
        "the script exited with code 3",
    )
    assert bad["log"].startswith("before\n")
    assert row(trace, "next")["status"] == "Skipped"


def test_R59_a_timeout_kills_the_script_and_what_it_started(tmp_path):
    pids = tmp_path / "pids"
    script = f"sleep 30 &\necho $$ $! > {pids}\nwait"
    trace = pipeline(shell("slow", script, timeout="300ms")).run(report=False)
    slow = row(trace, "slow")
    assert (slow["status"], slow["error_type"]) == ("Expired", "Timeout")
    shell_pid, sleep_pid = map(int, pids.read_text().split())
    assert gone(shell_pid) and gone(sleep_pid)


def test_E15_abort_kills_a_script_running_in_a_parallel_branch(tmp_path):
    pid_file = tmp_path / "pid"
    p = Pipeline("p")
    with p.stage("s") as s, s.parallel():
        s.add(shell("long", f"echo $$ > {pid_file}\nsleep 30"))
        s.add(
            shell(
                "boom",
                f"while [ ! -s {pid_file} ]; do sleep 0.01; done\nexit 1",
                failure_strategies=nbp.Abort(),
            )
        )
    trace = p.run(report=False)
    assert row(trace, "long")["status"] == "Aborted"
    assert row(trace, "boom")["status"] == "Failed" and row(trace, "boom")["action"] == "Abort"
    assert gone(int(pid_file.read_text()))


def test_background_jobs_left_by_a_finished_script_are_ended(tmp_path):
    pid_file = tmp_path / "pid"
    # one keeps the step's output open, one does not: neither may outlive the step
    script = (
        f"sleep 300 &\necho $! > {pid_file}\nsleep 300 > /dev/null 2>&1 &\necho $! >> {pid_file}\necho done"
    )
    trace = pipeline(shell("spawner", script)).run(report=False)
    spawner = row(trace, "spawner")
    assert spawner["status"] == "Success" and spawner["log"] == "done\n"
    assert spawner["duration_s"] < 300  # it did not wait for the background sleep
    assert all(gone(int(pid)) for pid in pid_file.read_text().split())


def test_environment_variables_and_unset_output_variables():
    spec = {
        "environmentVariables": [
            {"name": "A", "type": "String", "value": "x y"},
            {"name": "N", "type": "String", "value": 7},
            {"name": "FLAG", "type": "String", "value": True},
        ],
        "outputVariables": [
            {"name": "both", "type": "String", "value": "BOTH"},
            {"name": "missing", "type": "String", "value": "NOPE"},
            {"name": "SAME", "type": "String"},  # no value: the shell variable of the same name
        ],
    }
    step = shell("env", 'BOTH="$A|$N|$FLAG"\nSAME=1', spec=spec)
    trace = pipeline(step).run(report=False)
    env = row(trace, "env")
    assert env["outputs"] == {"both": "x y|7|true", "missing": None, "SAME": "1"}
    assert "output variable 'missing': shell variable 'NOPE' is not set" in env["log"]


def test_an_expression_that_cannot_be_resolved_at_run_time_fails_the_step_naming_the_line():
    p = Pipeline("p")
    with p.stage("s") as s:
        s.add(shell("maybe", "X=1", when="Failure", spec={"outputVariables": [{"name": "x", "value": "X"}]}))
        s.add(shell("reader", "echo start\necho <+execution.steps.maybe.output.outputVariables.x>"))
    trace = p.run(report=False)
    reader = row(trace, "reader")
    assert row(trace, "maybe")["status"] == "Skipped"
    assert reader["status"] == "Failed"
    assert "spec.source.spec.script (line 2)" in reader["error"] and "Skipped" in reader["error"]


# -- the registry ---------------------------------------------------------------------------------
def test_register_step_type_runs_a_handler_with_the_resolved_spec(handlers):
    calls = []

    @nbp.register_step_type("Http")
    def http(ctx, spec):
        calls.append((ctx.fqn, ctx.attempt, spec))
        print("GET", spec["url"])
        return {"status": 200}

    p = Pipeline("p", variables={"host": "example.com"})
    with p.stage("s") as s:
        s.add(
            Step(
                "call",
                type="Http",
                spec={"url": "https://<+pipeline.variables.host>/health", "method": "GET"},
            )
        )
        s.add(shell("after", 'echo "status <+execution.steps.call.output.outputVariables.status>"'))
    trace = p.run(report=False)
    assert calls == [
        (
            "pipeline.stages.s.spec.execution.steps.call",
            1,
            {"url": "https://example.com/health", "method": "GET"},
        )
    ]
    assert (
        row(trace, "call")["outputs"] == {"status": 200}
        and row(trace, "call")["log"] == "GET https://example.com/health\n"
    )
    assert row(trace, "after")["log"] == "status 200\n"
    assert step_type("Http").handler is http


def test_a_handler_raising_StepError_chooses_the_error_type(handlers):
    def flaky(ctx, spec):
        if ctx.attempt == 1:
            raise nbp.StepError("no route", error_type="Connectivity")
        return None

    register_step_type("Flaky", flaky)
    step = Step("f", type="Flaky", failure_strategies=[nbp.OnFailure(["Connectivity"], nbp.Retry(1))])
    trace = pipeline(step).run(report=False)
    rows = trace[trace["fqn"].str.endswith(".f")]
    assert (
        rows["status"].tolist() == ["Failed", "Success"] and rows["error_type"].tolist()[0] == "Connectivity"
    )


def test_a_typed_step_without_handler_is_refused_before_anything_starts(tmp_path):
    marker = tmp_path / "ran"
    p = pipeline(shell("first", f"touch {marker}"), Step("notify", type="SlackNotify", spec={"channel": "x"}))
    with pytest.raises(nbp.DefinitionError) as caught:
        p.run(report=False)
    (problem,) = caught.value.problems
    assert problem.fqn == "pipeline.stages.s.spec.execution.steps.notify"
    assert "'SlackNotify'" in problem.message
    assert "nbp.register_step_type('SlackNotify', handler)" in problem.fix and "simulate" in problem.fix
    assert not marker.exists()  # nothing ran
    assert p.simulate()["status"].iloc[0] == "Success"  # simulating needs no handler


def test_handler_checks_and_template_references_refuse_the_run_before_it_starts():
    p = pipeline(
        shell("ps", "dir", spec={"shell": "PowerShell"}),
        Step("shared", extra={"template": {"templateRef": "account.notify"}}),
    )
    with pytest.raises(nbp.DefinitionError) as caught:
        p.run(report=False)
    messages = [str(x) for x in caught.value.problems]
    assert any("shell 'PowerShell' is not supported" in m for m in messages)
    assert any("template 'account.notify'" in m and "steps.shared" in m for m in messages)


def test_untyped_steps_without_a_body_still_complete_at_once():
    trace = pipeline(Step("plain")).run(report=False)
    assert row(trace, "plain")["status"] == "Success" and row(trace, "plain")["worker"] == "main"


def test_shell_script_check_lists_what_keeps_a_spec_from_running():
    assert shell_script_check({"shell": "Bash", "source": {"type": "Inline", "spec": {"script": "ls"}}}) == []
    problems = shell_script_check(
        {
            "shell": "Bash",
            "onDelegate": False,
            "executionTarget": {"host": "10.0.0.1"},
            "source": {"type": "Harness", "spec": {"file": "x.sh"}},
            "environmentVariables": [{"name": "BAD-NAME", "value": 1}],
            "outputVariables": [{"name": "o", "value": "not a name"}],
        }
    )
    assert len(problems) == 4
    assert "source type 'Harness'" in problems[0] and "remote host '10.0.0.1'" in problems[1]
    assert "'BAD-NAME'" in problems[2] and "'not a name'" in problems[3]
    assert shell_script_check({"source": {"type": "Inline", "spec": {"script": "  "}}}) == [
        "the script is empty: set spec.source.spec.script"
    ]


# -- several scripts in one step, and the spec resolved before the step starts ------------------
def script_spec(script: str, *outputs: str) -> dict:
    spec: dict = {"shell": "Bash", "source": {"type": "Inline", "spec": {"script": script}}}
    if outputs:
        spec["outputVariables"] = [{"name": name, "type": "String", "value": name} for name in outputs]
    return spec


def test_a_body_may_run_several_scripts_and_is_not_left_told_to_stop_by_the_first():
    def body(ctx: nbp.StepContext) -> dict:
        first = run_shell_script(ctx, script_spec("X=one", "X"))
        second = run_shell_script(ctx, script_spec("sleep 0.05; X=two", "X"))
        ctx.sleep(0.01)  # raised StepCancelled when the first script's end stopped the step
        return {"first": first["X"], "second": second["X"], "cancelled": ctx.cancelled}

    trace = pipeline(Step("two", run=body)).run(report=False)
    two = row(trace, "two")
    assert two["status"] == "Success", two["error"]
    assert two["outputs"] == {"first": "one", "second": "two", "cancelled": False}


def test_R59_a_timeout_still_kills_the_second_script_of_a_body(tmp_path):
    pid_file = tmp_path / "pid"

    def body(ctx: nbp.StepContext) -> None:
        run_shell_script(ctx, script_spec("true"))
        run_shell_script(ctx, script_spec(f"echo $$ > {pid_file}\nsleep 30"))

    trace = pipeline(Step("slow", run=body, timeout="300ms")).run(report=False)
    slow = row(trace, "slow")
    assert (slow["status"], slow["error_type"]) == ("Expired", "Timeout")
    assert gone(int(pid_file.read_text()))


def test_D13_an_unresolvable_spec_fails_the_typed_step_once_like_its_inputs(handlers):
    calls = []
    register_step_type("Echo", lambda ctx, spec: calls.append(spec))
    reference = "<+execution.steps.a.output.outputVariables.y>"
    p = Pipeline("p", variables={"go": 0})
    with p.stage("s") as s:
        s.step("a", run=lambda: {"y": 1}, outputs=["y"], when="<+pipeline.variables.go> == 1")
        s.add(Step("typed", type="Echo", spec={"v": reference}, failure_strategies=nbp.Retry(2)))
    trace = p.run(report=False)
    typed = rows(trace, "typed")
    assert len(typed) == 1 and calls == []  # no attempt ran, no retry (R42–R47, D13)
    (typed,) = typed.to_dict("records")
    assert (typed["status"], typed["attempt"], typed["error_type"]) == ("Failed", 1, "Unknown")
    assert typed["reason"] == "its spec could not be resolved" and pd.isna(typed["action"])
    assert typed["error"].startswith("spec.v: cannot resolve") and reference in typed["error"]
    assert pd.isna(typed["log"])  # an expression error, not a traceback


def test_a_typed_step_whose_spec_resolves_gets_it_on_each_attempt(handlers):
    seen = []

    def handler(ctx: nbp.StepContext, spec: dict) -> None:
        seen.append((ctx.attempt, spec))
        if ctx.attempt == 1:
            raise nbp.StepError("try again")

    register_step_type("Echo", handler)
    p = Pipeline("p", variables={"who": "world"})
    with p.stage("s") as s:
        s.add(
            Step(
                "typed",
                type="Echo",
                spec={"v": "hi <+pipeline.variables.who>"},
                failure_strategies=nbp.Retry(1),
            )
        )
    trace = p.run(report=False)
    assert row(trace, "typed")["status"] == "Success"
    assert seen == [(1, {"v": "hi world"}), (2, {"v": "hi world"})]
