"""Harness YAML in and out: every construct maps to the model, round-trips, and simulates.

Fixtures (tests/fixtures) cover the constructs of SEMANTICS.md; the real pipelines of the shared
corpus (../shared/harness-corpus, never copied here) must load, round-trip, and validate or be
refused with a clear message.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import yaml
from conftest import CORPUS, CORPUS_FILES, corpus_files, needs_corpus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import notebook_pipelines as nbp
from notebook_pipelines.definition.failure import (
    ACTION_TYPES,
    ERROR_TYPES,
    STATUS_CHOICES,
    Abort,
    Ignore,
    ManualIntervention,
    MarkAsFailure,
    MarkAsSuccess,
    OnFailure,
    PipelineRollback,
    ProceedWithDefaultValues,
    Retry,
    RetryStepGroup,
    StageRollback,
    StepGroupRollback,
    When,
)
from notebook_pipelines.definition.limits import MAX_DATA_DEPTH, MAX_GROUP_DEPTH
from notebook_pipelines.definition.model import Parallel, Pipeline, Stage, Step, StepGroup
from notebook_pipelines.definition.plan import compile_plan
from notebook_pipelines.definition.validation import problems
from notebook_pipelines.errors import DefinitionError, PipelineError
from notebook_pipelines.formats.yaml_io import (
    MAX_ALIAS_NODES,
    YamlError,
    YamlSyntaxError,
    YamlWarning,
    dump_yaml,
    infrastructure_key,
    load_yaml,
    read_yaml,
    source_position,
)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
#: corpus files with looping strategies (R48): simulated one row per iteration
WITH_STRATEGY = {
    "harness-community__harnesscd-example-apps__aws-blue-green-traffic-shift__ecs-blue-greeen-traffic-shifting__pipeline.yaml",
    "harness-community__harnesscd-example-apps__custom-usecases__Dynamic-deployment-for-Multi-env-usecase-1__pipeline.yaml",
    "harness-community__harnesscd-example-apps__vm-aws__ssh__pipeline-ssh-basic.yml",
    "harness-community__harnesscd-example-apps__vm-aws__ssh__pipeline-ssh-rolling.yml",
}
NESTED = {"harness-community__harnesscd-example-apps__vm-aws__ssh__pipeline-ssh-rolling.yml"}


def quiet_load(source, rules="classic", **kw) -> Pipeline:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", YamlWarning)
        return load_yaml(source, rules, **kw)


def by_id(trace, ident: str):
    return trace[trace["fqn"].str.rsplit(".", n=1).str[-1] == ident]


def last(trace, ident: str):
    return by_id(trace, ident).iloc[-1]


def statuses(trace) -> dict[str, str]:
    """Last status of every node, keyed by identifier (the pipeline row as 'pipeline')."""
    out = {}
    for fqn, status in zip(trace["fqn"], trace["status"]):
        out[fqn.rsplit(".", 1)[-1]] = str(status)
    return out


@needs_corpus
def test_corpus_is_there():
    assert len(CORPUS_FILES) == 8, f"the shared corpus is expected at {CORPUS}"


# -- step groups (R1–R7, R12, R62, D2) ----------------------------------------------------------
def test_R1_R4_R5_step_groups_parallel_blocks_and_rollback_lists_map_to_the_model():
    p = quiet_load(FIXTURES / "step_groups.yaml", rules="current")
    assert p.id == "step_groups" and p.name == "Step groups" and p.rules == "current"
    assert p.variables == {"env": "prod"}
    assert p.extra == {"projectIdentifier": "demo", "orgIdentifier": "default", "tags": {}}
    (build,) = p.stages
    assert (build.id, build.name, build.type) == ("build", "Build", "Custom")
    assert build.variables == {"flavour": "release"} and build.extra == {
        "description": "build and test",
        "tags": {},
    }
    checkout, tests, block = build.items
    assert isinstance(checkout, Step) and isinstance(tests, StepGroup) and isinstance(block, Parallel)
    assert checkout.type == "ShellScript" and checkout.timeout == "1m"
    assert checkout.spec == {
        "shell": "Bash",
        "source": {"type": "Inline", "spec": {"script": "echo checkout"}},
    }
    assert checkout.delegate_selectors == ["git"]  # from spec.delegateSelectors (R62)
    assert [type(x).__name__ for x in block.items] == ["Step", "StepGroup"]
    assert [s.id for s in build.rollback_items] == ["restore"]
    unit_lint, e2e = tests.items
    assert unit_lint.ids == ["unit", "lint"]
    assert isinstance(e2e, StepGroup) and [s.id for s in e2e.items] == ["browser", "api"]
    assert e2e.when == When("Success", '<+pipeline.variables.env> == "prod"')
    assert tests.variables == {"shards": 2} and tests.delegate_selectors == ["big-runner"]
    assert [s.id for s in tests.rollback_items] == ["clean"]  # D2
    p.validate()


def test_R6_D1_nested_group_and_group_selectors_are_refused_under_classic_with_line_and_column():
    with pytest.raises(YamlError) as caught:
        read_yaml(FIXTURES / "step_groups.yaml", "classic")
    found = {(p.rule, p.line, p.column) for p in caught.value.problems}
    assert ("R6/D1", 65, 25) in found  # the nested e2e group
    assert ("R62/D1", 34, 19) in found  # delegateSelectors on the group
    text = str(caught.value)
    assert "step_groups.yaml:65:25: pipeline.stages.build.spec.execution.steps.tests.steps.e2e" in text
    assert "rules='current'" in text and "--rules current" in text
    assert isinstance(caught.value, nbp.DefinitionError)


def test_R5_R6_R29_step_groups_fixture_simulates_with_expected_makespan():
    p = quiet_load(FIXTURES / "step_groups.yaml", rules="current")
    durations = {
        "checkout": 5,
        "unit": 30,
        "lint": 10,
        "browser": 20,
        "api": 5,
        "package": 15,
        "docs_build": "25s",
    }
    trace = p.simulate(durations=durations)
    assert set(statuses(trace).values()) == {"Success", "NotStarted"}  # rollback lists never ran
    assert trace["end_s"].max() == 5 + 30 + (20 + 5) + 25
    assert last(trace, "browser")["start_s"] == 35.0  # after the slower of unit/lint (R5)
    p.variables["env"] = "dev"  # the nested group's condition is now false (R29, R32)
    trace = p.simulate(durations=durations)
    assert statuses(trace)["e2e"] == "Skipped" and statuses(trace)["browser"] == "Skipped"
    assert trace["end_s"].max() == 5 + 30 + 25


# -- failure strategies (R15–R25), conditions (R28–R30), rollback (R35–R38) ---------------------
def test_R15_R17_every_action_type_loads_as_action_objects():
    p = quiet_load(FIXTURES / "failure_strategies.yaml")
    flaky = p.stages[0].items[0]
    assert flaky.failure_strategies == [
        OnFailure(("Unknown",), Retry(2, intervals=("10s", "20s"), then=Ignore()))
    ]
    assert p.stages[0].failure_strategies == [
        OnFailure(("Timeout", "Connectivity"), Retry(1, intervals=("5s",), then=StageRollback())),
        OnFailure(("AllErrors",), MarkAsFailure()),
    ]
    rollout = p.stages[1].items[1]
    assert rollout.failure_strategies == [
        OnFailure(("AllErrors",), ManualIntervention(timeout="30m", on_timeout=StageRollback()))
    ]
    seen = set()
    for node in compile_plan(p).nodes:
        for level in node.strategies or ():
            for entry in level:
                action = entry.action
                while action is not None:
                    seen.add(action.type)
                    action = getattr(action, "then", None) or getattr(action, "on_timeout", None)
    assert seen == set(ACTION_TYPES)
    assert p.stages[3].when == When("Failure") and p.stages[4].when == When("All")


SCENARIOS = {
    # failures → (pipeline status, makespan, expected last statuses of some nodes)
    "no failure": (None, "Success", 130.0, {"notify": "Skipped", "page": "Skipped", "tidy": "Success"}),
    "E5 retry succeeds on the third attempt": (
        {"flaky": [1, 2]},
        "Success",
        180.0,  # 10 + 10 (wait) + 10 + 20 (wait) + 10, then the rest as before
        {"flaky": "Success", "build": "Success"},
    ),
    "E2 retries used up, then Ignore": ({"flaky": True}, "Success", 180.0, {"flaky": "IgnoreFailed"}),
    "E6 RetryStepGroup reruns the group": (
        {"b": [1]},
        "Success",
        155.0,
        {"flappy": "Success", "b": "Success"},
    ),
    "E8 StepGroupRollback": (
        {"migrate": True},
        "Failed",
        110.0,
        {
            "db": "Failed",
            "restore_snapshot": "Success",
            "after_db": "Skipped",
            "always": "Success",
            "deploy": "Skipped",
            "notify": "Success",
            "tidy": "Success",
        },
    ),
    "R20 manual intervention times out into StageRollback (R36 order)": (
        {"rollout": True},
        "Failed",
        90 + 20 + 1800 + 20 + 10 + 10.0,
        {"deploy": "Failed", "canary_delete": "Success", "rollback": "Success", "verify": "Skipped"},
    ),
    "R38 PipelineRollback": (
        {"smoke": True},
        "Failed",
        160.0,
        {"smoke": "Failed", "rollback": "Success", "build_rollback": "Success", "tidy": "NotStarted"},
    ),
    "E15 Abort": (
        {"migrate": True, "page": True},
        "Aborted",
        100.0,
        {"page": "Failed", "notify": "Aborted", "tidy": "NotStarted", "build_rollback": "NotStarted"},
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_R17_R21_failure_strategy_fixture_simulates(name):
    failures, status, makespan, expected = SCENARIOS[name]
    p = quiet_load(FIXTURES / "failure_strategies.yaml")
    trace = p.simulate(default="10s", failures=failures)
    got = statuses(trace)
    assert got["pipeline"] == status
    assert trace["end_s"].max() == makespan
    assert {k: got[k] for k in expected} == expected


def test_R36_E7_stage_rollback_runs_group_rollbacks_then_the_stage_list():
    p = quiet_load(FIXTURES / "failure_strategies.yaml")
    trace = p.simulate(default=10, failures={"rollout": True})
    assert last(trace, "canary_delete")["end_s"] <= last(trace, "rollback")["start_s"]
    assert last(trace, "rollout")["reason"] == "manual intervention timed out"


def test_E5_retry_attempts_and_intervals_come_from_the_yaml():
    p = quiet_load(FIXTURES / "failure_strategies.yaml")
    trace = p.simulate(default=10, failures={"flaky": [1, 2]})
    rows = by_id(trace, "flaky")
    assert rows["attempt"].tolist() == [1, 2, 3]
    assert rows["start_s"].tolist() == [0.0, 20.0, 50.0]
    assert rows["action"].tolist()[:2] == ["Retry", "Retry"]


# -- parallel stages and resources (R11, R13, D8), timeouts (R59) -------------------------------
def test_R13_D8_deployment_stages_on_the_same_infrastructure_get_one_resource_key():
    p = quiet_load(FIXTURES / "parallel_stages.yaml")
    block, verify = p.stages
    assert [(s.id, s.resource) for s in block.items] == [
        ("deploy_eu", "infra:prod/k8s_main"),
        ("deploy_us", "infra:prod/k8s_main"),
        ("deploy_staging", "infra:staging/k8s_small"),
        ("load_test", None),
    ]
    assert block.items[3].delegate_selectors == ["perf"] and block.items[3].timeout == "30m"
    assert p.timeout == "1h" and verify.resource is None


def test_R13_E10_parallel_deployments_to_one_infrastructure_do_not_overlap():
    p = quiet_load(FIXTURES / "parallel_stages.yaml")
    trace = p.simulate(default=10, durations={"hammer": "20s"})
    eu, us, staging, load = (
        last(trace, s) for s in ("deploy_eu", "deploy_us", "deploy_staging", "load_test")
    )
    assert (eu["start_s"], eu["end_s"], us["start_s"], us["end_s"]) == (0.0, 10.0, 10.0, 20.0)
    assert staging["start_s"] == 0.0 and load["start_s"] == 0.0  # other infra / Custom: overlap
    assert last(trace, "verify")["start_s"] == 20.0 and trace["end_s"].max() == 30.0


def test_R59_a_step_over_its_yaml_timeout_expires():
    p = quiet_load(FIXTURES / "parallel_stages.yaml")
    trace = p.simulate(default=10, durations={"hammer": "20m"})
    hammer = last(trace, "hammer")
    assert (hammer["status"], hammer["error_type"], hammer["end_s"]) == ("Expired", "Timeout", 900.0)
    assert statuses(trace)["verify"] == "Skipped"


# -- kept as data, reported as warnings ---------------------------------------------------------
def test_templates_inputs_unknown_keys_strategies_and_barriers_are_kept_and_reported():
    with pytest.warns(YamlWarning) as caught:
        p = load_yaml(FIXTURES / "kept_as_data.yaml", source_name="kept.yaml")
    (warning,) = [w.message for w in caught if isinstance(w.message, YamlWarning)]
    notes = {(n.line, n.message.split(" ")[0] + " " + n.message.split(" ")[1]) for n in warning.notes}
    text = "\n".join(str(n) for n in warning.notes)
    assert "looping strategy" not in text and "Barrier" not in text  # modelled now (R48, R55), not notes
    for expected in (
        "kept.yaml:26:9: pipeline.stages.from_template: template 'org.deploy_stage'",
        "kept.yaml:11:3: pipeline: pipeline key 'notificationRules' kept as data",
        "kept.yaml:21:16: pipeline.properties.ci.codebase.build: runtime input '<+input>'",
        "kept.yaml:57:32: pipeline.stages.matrix_stage.spec.execution.steps.deploy_region.timeout: runtime",
        "pipeline.stages.other: stage spec service, environment kept as data",
        "pipeline.stages.other.spec.execution.steps.repeated: step group key 'stepGroupInfra'",
        "pipeline.stages.other.spec.execution.steps.repeated.steps.scan: step type 'AquaTrivy' has no",
        "pipeline.stages.other.spec.execution.steps.shared: template 'account.notify'",
    ):
        assert expected in text, expected
    assert notes and all(n.line > 0 for n in warning.notes)
    # kept where to_yaml finds them again
    assert p.extra["flowControl"] == {"barriers": [{"identifier": "all_ready", "name": "all ready"}]}
    assert p.stages[0].extra["template"]["templateRef"] == "org.deploy_stage"
    matrix, other = p.stages[1].items
    assert matrix.strategy == {"matrix": {"region": ["eu", "us"], "maxConcurrency": 1}}
    assert matrix.items[1].timeout == "<+input>"
    assert other.spec["service"] == {"serviceRef": "<+input>"}
    repeated = other.items[1]
    assert repeated.strategy == {"repeat": {"times": 3}} and "stepGroupInfra" in repeated.extra
    assert repeated.items[0].extra == {"enforce": {"policySets": ["account.strict"]}}
    assert other.items[2].extra["template"]["templateRef"] == "account.notify" and other.items[2].type is None
    assert quiet_load(p.to_yaml()) == p


def test_R48_looping_strategies_are_read_from_yaml_and_simulated():
    p = quiet_load(FIXTURES / "kept_as_data.yaml")
    found = problems(p)
    assert not [x for x in found if x.rule.startswith("R4") and x.rule in ("R48", "R49", "R50", "R51")]
    (template,) = [x for x in found if x.rule == "R1" and x.fqn == "pipeline.stages.from_template"]
    assert "template 'org.deploy_stage'" in template.message and "not resolved" in template.message


def test_R28_when_and_failure_strategies_given_as_runtime_input_are_kept_verbatim():
    text = _pipeline_with_step("when: <+input>\nfailureStrategies: <+input>\ntimeout: <+input>")
    with pytest.warns(YamlWarning, match="runtime input"):
        p = load_yaml(text)
    step = p.stages[0].items[0]
    assert (step.when, step.failure_strategies, step.timeout) == ("<+input>", "<+input>", "<+input>")
    assert quiet_load(p.to_yaml()) == p


def test_variable_types_and_declarations_the_value_does_not_imply_are_written_back():
    text = textwrap.dedent(
        """\
        pipeline:
          identifier: v
          stages:
            - stage: {identifier: s, type: Custom, spec: {execution: {steps: [step: {identifier: a}]}}}
          variables:
            - {name: token, type: Secret, value: account.token}
            - {name: region, type: String, description: where, required: true, value: eu}
            - {name: count, type: String, value: 3}
            - {name: replicas, type: Number, value: 2}
            - {name: plain, type: String, value: text}
        """
    )
    p = quiet_load(text)
    assert p.variables == {
        "token": "account.token",
        "region": "eu",
        "count": 3,
        "replicas": 2,
        "plain": "text",
    }
    assert p.extra == {
        "variables": [
            {"name": "token", "type": "Secret"},
            {"name": "region", "type": "String", "description": "where", "required": True},
            {"name": "count", "type": "String"},
        ]
    }
    written = yaml.safe_load(p.to_yaml())["pipeline"]["variables"]
    assert written == yaml.safe_load(text)["pipeline"]["variables"]
    assert quiet_load(p.to_yaml()) == p


# -- clear errors with line and column -----------------------------------------------------------
def _pipeline_with_step(step_body: str) -> str:
    body = textwrap.indent(step_body, " " * 18)
    return (
        "pipeline:\n"
        "  identifier: p\n"
        "  stages:\n"
        "    - stage:\n"
        "        identifier: s\n"
        "        type: Custom\n"
        "        spec:\n"
        "          execution:\n"
        "            steps:\n"
        "              - step:\n"
        "                  identifier: a\n"
        "                  type: ShellScript\n"
        f"{body}\n"
    )


def test_invalid_yaml_is_reported_with_line_and_column():
    text = "pipeline:\n  identifier: p\n  stages:\n    - stage: {identifier: s\n  name: x\n"
    with pytest.raises(YamlError) as caught:
        load_yaml(text, source_name="bad.yaml")
    (problem,) = caught.value.problems
    assert (problem.rule, problem.source, problem.line) == ("YAML", "bad.yaml", 5)
    assert str(problem).startswith("bad.yaml:5:") and "invalid YAML" in str(problem)


def test_R1_a_step_without_identifier_is_reported_with_line_and_column():
    text = _pipeline_with_step("").replace(
        "                  identifier: a\n", "                  name: nameless\n"
    )
    with pytest.raises(YamlError) as caught:
        load_yaml(text)
    (problem,) = caught.value.problems
    assert (problem.rule, problem.line, problem.column) == ("R1", 11, 19)
    assert problem.fqn == "pipeline.stages.s.spec.execution.steps[0]"
    assert "the step has no identifier" in problem.message and "identifier:" in problem.fix


def test_R17_an_unknown_action_type_is_reported_where_it_is_written():
    text = _pipeline_with_step(
        "failureStrategies:\n"
        "  - onFailure:\n"
        "      errors: [AllErrors]\n"
        "      action:\n"
        "        type: Retry\n"
        "        spec:\n"
        "          retryCount: 1\n"
        "          onRetryFailure:\n"
        "            action:\n"
        "              type: Rollforward\n"
    )
    with pytest.raises(YamlError) as caught:
        load_yaml(text)
    (problem,) = caught.value.problems
    assert (problem.rule, problem.line, problem.column) == ("R17", 22, 39)  # at the bad value
    assert "Rollforward" in problem.message and "StageRollback" in problem.message


def test_R35_a_stage_without_execution_is_reported_with_line_and_column():
    text = (
        "pipeline:\n  identifier: p\n  stages:\n    - stage:\n        identifier: s\n"
        "        type: Custom\n        spec:\n          serviceConfig: {}\n"
    )
    with pytest.raises(YamlError) as caught:
        load_yaml(text)
    (problem,) = caught.value.problems
    assert (problem.rule, problem.line, problem.column, problem.fqn) == ("R35", 8, 11, "pipeline.stages.s")
    assert "spec.execution" in problem.message


def test_every_problem_is_reported_at_once():
    text = textwrap.dedent(
        """\
        pipeline:
          identifier: p
          identifier: q
          stages:
            - stage:
                type: Custom
                spec: {execution: {steps: [{step: {type: X}}, {stepp: {identifier: y}}]}}
            - stage: {identifier: t, type: Custom}
            - oops: 1
        """
    )
    with pytest.raises(YamlError) as caught:
        load_yaml(text)
    got = sorted((p.rule, p.line) for p in caught.value.problems)
    assert got == [("R1", 6), ("R1", 7), ("R35", 8), ("R4", 7), ("R4", 9), ("YAML", 3)]


def test_a_document_that_is_not_a_pipeline_says_what_it_needs():
    with pytest.raises(YamlError, match="needs a top-level 'pipeline:' key \\(found template\\)"):
        load_yaml("template:\n  identifier: t\n")


def test_locate_gives_file_line_and_column_of_a_node_or_its_nearest_ancestor():
    p = quiet_load(FIXTURES / "failure_strategies.yaml", source_name="f.yaml")
    assert source_position(p, "pipeline.stages.build.spec.execution.steps.flaky") == "f.yaml:15:19"
    assert source_position(p, "pipeline.stages.build.spec.execution.steps.flaky.timeout") == "f.yaml:15:19"
    assert source_position(Pipeline("x"), "pipeline") is None


# -- writing ------------------------------------------------------------------------------------
def test_to_yaml_writes_scripts_as_literal_blocks_without_anchors(tmp_path):
    spec = {"shell": "Bash", "source": {"type": "Inline", "spec": {"script": "echo a\necho b\n"}}}
    p = Pipeline(
        "p",
        stages=[
            Stage(
                "s",
                items=[Step("a", type="ShellScript", spec=spec), Step("b", type="ShellScript", spec=spec)],
            )
        ],
    )
    text = p.to_yaml(tmp_path / "p.yaml")
    assert (tmp_path / "p.yaml").read_text() == text
    assert "script: |\n" in text and "&id" not in text and "*id" not in text
    assert "  - stage:" in text  # lists indented the Harness way
    assert load_yaml(text) == p


def test_to_yaml_warns_about_what_has_no_harness_form():
    p = Pipeline("p")
    with p.stage("s", resource="db") as s:
        s.step("a", run=lambda: None, duration="5s", when=When("Success", lambda ctx: True))
    with pytest.warns(YamlWarning) as caught:
        text = dump_yaml(p)
    message = str(caught[0].message)
    for what in ("a Python body", "a simulated duration", "a Python condition", "resource='db'"):
        assert what in message
    assert "stageStatus: Success" in text


def test_the_to_yaml_warning_points_at_the_user_s_line_not_the_library():
    # p.to_yaml() in a cell: the warning's file:line is that line (a notebook shows it), not the
    # line of the library that relays the call (definition/verbs.py before the fix)
    p = Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=lambda: None)
    with pytest.warns(YamlWarning, match="a Python body") as caught:
        p.to_yaml()
    assert caught[0].filename == __file__


def test_infrastructure_key_of_the_older_infrastructure_block():
    spec = {
        "infrastructure": {
            "environmentRef": "dev",
            "infrastructureDefinition": {"spec": {"connectorRef": "k8s", "namespace": "ns"}},
        }
    }
    assert infrastructure_key("Deployment", spec) == "infra:dev/k8s/ns"
    spec["infrastructure"]["allowSimultaneousDeployments"] = True
    assert infrastructure_key("Deployment", spec) is None


# -- round trip (hypothesis) ---------------------------------------------------------------------
IDENT = st.sampled_from(["a", "b", "build", "deploy_eu", "x1", "$v", "_tmp", "Stage2", "rollout", "k8s"])
#: characters that matter to YAML (indicators, quotes, line breaks) and beyond ASCII
TEXT = st.text(st.sampled_from(list("ab Z9-:#,'\"\n{}[]&*!|>%@`?~é€😀")), max_size=12)
NAME = st.text(st.sampled_from(list("Ab z9-:'é")), min_size=1, max_size=8)
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
DATA = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(IDENT, inner, max_size=2),
    max_leaves=4,
)
SPEC = st.one_of(
    st.none(), st.dictionaries(IDENT.filter(lambda k: k != "delegateSelectors"), DATA, min_size=1, max_size=2)
)
TIMEOUT = st.one_of(st.none(), st.sampled_from(["10s", "1m 30s", "2h", "250ms"]), st.integers(1, 3600))
SELECTORS = st.one_of(st.none(), st.lists(IDENT, min_size=1, max_size=2))
VARIABLES = st.one_of(st.none(), st.dictionaries(IDENT, SCALAR, min_size=1, max_size=2))
STRATEGY = st.one_of(
    st.none(), st.just({"parallelism": 2}), st.just({"repeat": {"times": 3, "maxConcurrency": 1}})
)
WHEN = st.one_of(
    st.none(),
    st.builds(
        When,
        st.sampled_from(STATUS_CHOICES),
        st.sampled_from([None, "true", '<+pipeline.variables.x> == "a"']),
    ),
)
SIMPLE_ACTION = st.sampled_from(
    [
        Ignore(),
        MarkAsSuccess(),
        MarkAsFailure(),
        Abort(),
        StageRollback(),
        StepGroupRollback(),
        PipelineRollback(),
        ProceedWithDefaultValues(),
    ]
)
INTERVALS = st.lists(st.sampled_from(["1s", "10s", "1m"]), max_size=2).map(tuple)
ACTION = st.one_of(
    SIMPLE_ACTION,
    st.builds(
        Retry,
        st.integers(0, 3),
        INTERVALS,
        SIMPLE_ACTION,
        st.sampled_from([None, '<+step.failureInfo.errorType> == "Timeout"']),
    ),
    st.builds(RetryStepGroup, st.integers(0, 3), INTERVALS),
    st.builds(ManualIntervention, st.sampled_from(["30m", "1h"]), SIMPLE_ACTION),
)
STRATEGIES = st.one_of(
    st.none(),
    st.lists(
        st.builds(
            OnFailure,
            st.lists(st.sampled_from(ERROR_TYPES), min_size=1, max_size=3, unique=True).map(tuple),
            ACTION,
        ),
        min_size=1,
        max_size=2,
    ),
)


def _named(ident_strategy):
    return ident_strategy.flatmap(
        lambda ident: st.tuples(st.just(ident), st.one_of(st.none(), NAME.filter(lambda n, i=ident: n != i)))
    )


@st.composite
def steps(draw):
    ident, name = draw(_named(IDENT))
    kind = draw(st.sampled_from([None, "ShellScript", "Http", "K8sRollingDeploy", "Barrier"]))
    return Step(
        ident,
        name=name,
        type=kind,
        spec=draw(SPEC),
        timeout=draw(TIMEOUT),
        when=draw(WHEN),
        failure_strategies=draw(STRATEGIES),
        strategy=draw(STRATEGY),
        delegate_selectors=draw(SELECTORS),
        extra=draw(st.one_of(st.none(), st.builds(lambda d: {"description": d}, TEXT))),
    )


def groups(nested: bool, depth: int = 0):
    @st.composite
    def build(draw):
        ident, name = draw(_named(IDENT))
        inner = [steps()]
        if nested and depth < 1:
            inner.append(groups(nested, depth + 1))
        child = st.one_of(*inner)
        items = draw(
            st.lists(
                st.one_of(child, st.lists(child, min_size=1, max_size=2).map(Parallel)),
                min_size=1,
                max_size=2,
            )
        )
        rollback = draw(st.lists(steps(), max_size=1))
        return StepGroup(
            ident,
            items=items,
            rollback_items=rollback,
            name=name,
            when=draw(WHEN),
            failure_strategies=draw(STRATEGIES),
            strategy=draw(STRATEGY),
            variables=draw(VARIABLES),
            delegate_selectors=draw(SELECTORS) if nested else None,
            timeout=draw(TIMEOUT) if nested else None,
            extra=draw(st.one_of(st.none(), st.just({"stepGroupInfra": {"type": "KubernetesDirect"}}))),
        )

    return build()


@st.composite
def stages(draw, nested: bool):
    ident, name = draw(_named(IDENT))
    node = st.one_of(steps(), groups(nested))
    items = draw(
        st.lists(
            st.one_of(node, st.lists(node, min_size=1, max_size=2).map(Parallel)), min_size=1, max_size=2
        )
    )
    kind = draw(st.sampled_from(["Custom", "Deployment", "CI"]))
    spec = draw(
        st.one_of(
            st.none(),
            st.dictionaries(
                st.sampled_from(["service", "serviceDependencies", "cloneCodebase"]), DATA, min_size=1
            ),
        )
    )
    if kind == "Deployment" and draw(st.booleans()):
        env, infra = draw(IDENT), draw(IDENT)
        spec = {
            "deploymentType": "Kubernetes",
            "environment": {"environmentRef": env, "infrastructureDefinitions": [{"identifier": infra}]},
        }
    return Stage(
        ident,
        items=items,
        rollback_items=draw(st.lists(steps(), max_size=1)),
        name=name,
        type=kind,
        when=draw(WHEN),
        failure_strategies=draw(STRATEGIES),
        timeout=draw(TIMEOUT),
        delegate_selectors=draw(SELECTORS),
        strategy=draw(STRATEGY),
        variables=draw(VARIABLES),
        resource=infrastructure_key(kind, spec),
        spec=spec,
        extra=draw(st.one_of(st.none(), st.just({"description": "", "tags": {}}))),
    )


@st.composite
def pipelines(draw):
    rules = draw(st.sampled_from(["classic", "current"]))
    stage = stages(rules == "current")
    ident, name = draw(_named(IDENT))
    return Pipeline(
        ident,
        stages=draw(
            st.lists(
                st.one_of(stage, st.lists(stage, min_size=1, max_size=2).map(Parallel)),
                min_size=1,
                max_size=2,
            )
        ),
        name=name,
        variables=draw(VARIABLES),
        rules=rules,
        timeout=draw(TIMEOUT),
        description=draw(st.one_of(st.none(), TEXT)),
        extra=draw(
            st.one_of(
                st.none(),
                st.just({"projectIdentifier": "demo", "orgIdentifier": "default", "tags": {"a": "b"}}),
            )
        ),
    )


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(pipelines())
def test_round_trip_load_of_to_yaml_gives_an_equal_pipeline(p):
    assert quiet_load(p.to_yaml(), rules=p.rules) == p


@pytest.mark.parametrize(
    "name",
    [
        "step_groups.yaml",
        "failure_strategies.yaml",
        "parallel_stages.yaml",
        "kept_as_data.yaml",
        "shell_outputs.yaml",
    ],
)
def test_fixtures_round_trip(name):
    rules = "current" if name == "step_groups.yaml" else "classic"
    p = quiet_load(FIXTURES / name, rules=rules)
    again = quiet_load(p.to_yaml(), rules=rules)
    assert again == p
    assert again.to_yaml() == p.to_yaml()


# -- the real pipelines of the corpus ------------------------------------------------------------
@pytest.mark.parametrize("path", corpus_files())
def test_corpus_pipeline_loads_round_trips_validates_simulates_and_renders_under_current(path):
    with pytest.warns(YamlWarning) as caught:
        p = load_yaml(path, rules="current")
    notes = [n for w in caught if isinstance(w.message, YamlWarning) for n in w.message.notes]
    assert notes and all(n.source == str(path) and n.line > 0 for n in notes)
    assert quiet_load(p.to_yaml(), rules="current") == p
    found = problems(p)
    assert not found, [str(x) for x in found]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nbp.LoopingWarning)  # run-time host lists: one iteration
        trace = p.simulate(default="1m")
    assert statuses(trace)["pipeline"] == "Success"
    if path.name in WITH_STRATEGY:  # one row per iteration, under the looped node's own row (R46)
        looped = trace[trace["iteration"].notna() & trace["fqn"].str.contains("_0")]
        assert len(looped) and set(looped["parent"]) <= set(trace["fqn"])
    rendered = p.render()
    assert p.id in rendered.source


@pytest.mark.parametrize("path", corpus_files())
def test_D1_corpus_under_classic_rules_refuses_only_nested_groups(path):
    if path.name in NESTED:
        with pytest.raises(YamlError) as caught:
            read_yaml(path, "classic")
        assert {x.rule for x in caught.value.problems} == {"R6/D1"}
        assert all(x.line > 0 for x in caught.value.problems)
        assert "--rules current" in str(caught.value)
    else:
        assert read_yaml(path, "classic").pipeline.rules == "classic"


def _corpus(fragment: str) -> Path:
    (path,) = [p for p in CORPUS_FILES if fragment in p.name]
    return path


@needs_corpus
def test_corpus_constructs_map_as_expected():
    rolling = quiet_load(_corpus("ssh-rolling"), rules="current")
    phase = rolling.stages[0].items[0]
    assert isinstance(phase.items[0], StepGroup) and phase.items[0].id == "phase_group"
    assert phase.strategy["repeat"]["partitionSize"] == 1
    assert rolling.stages[0].resource == "infra:harnessdevenv/harness_remoteinstance"

    kustomize = quiet_load(_corpus("Kustomize"))
    canary, _primary = kustomize.stages[0].items
    assert [s.id for s in canary.rollback_items] == ["rollbackCanaryDelete"]
    assert kustomize.stages[0].failure_strategies == [OnFailure(("AllErrors",), StageRollback())]
    assert kustomize.stages[0].resource == "infra:env1/k8s/example"

    multi = quiet_load(_corpus("Multi-env"))
    assert [s.id for s in multi.stages[1].items] == ["deploy_stage_dev_env", "deploy_stage_sit"]
    assert multi.variables["env_data"].startswith("dev:")
    produce = multi.stages[0].items[0]
    assert [v["name"] for v in produce.spec["outputVariables"]] == ["ENV_LIST_dev", "ENV_LIST_sit"]

    blue_green = quiet_load(_corpus("blue-green"))
    create = blue_green.stages[0].items[0].items[0]
    assert create.failure_strategies == [OnFailure(("Timeout",), Retry(1, ("10s",), then=StageRollback()))]
    assert blue_green.stages[0].variables["desiredCount"] == 10


def test_R62_step_delegate_selectors_beside_the_spec_are_accepted_and_written_into_it():
    text = _pipeline_with_step("delegateSelectors: [gpu]\nspec: {shell: Bash}")
    p = quiet_load(text)
    step = p.stages[0].items[0]
    assert step.delegate_selectors == ["gpu"] and step.spec == {"shell": "Bash"} and step.extra is None
    written = yaml.safe_load(p.to_yaml())["pipeline"]["stages"][0]["stage"]["spec"]["execution"]["steps"][0]
    assert written["step"]["spec"] == {"shell": "Bash", "delegateSelectors": ["gpu"]}


def test_read_yaml_takes_text_paths_bytes_and_open_files(tmp_path):
    path = tmp_path / "p.yml"
    text = _pipeline_with_step("spec: {}")
    path.write_text(text)
    expected = quiet_load(text)
    assert quiet_load(path) == expected and quiet_load(str(path)) == expected
    assert quiet_load(text.encode()) == expected
    with path.open() as handle:
        assert quiet_load(handle) == expected
    with pytest.raises(FileNotFoundError):
        load_yaml(str(tmp_path / "missing.yaml"))


def test_R14_failure_strategy_keys_that_are_not_modelled_are_reported():
    text = _pipeline_with_step(
        "failureStrategies:\n"
        "  - onFailure:\n"
        "      errors: [AllErrors]\n"
        "      action:\n"
        "        type: MarkAsFailure\n"
        "        spec:\n"
        "          failAll: true\n"
    )
    with pytest.warns(YamlWarning, match=r"failure strategy key\(s\) failAll not modelled"):
        p = load_yaml(text)
    assert p.stages[0].items[0].failure_strategies == [OnFailure(("AllErrors",), MarkAsFailure())]


def test_round_trip_equals_the_original_for_shorthand_settings():
    """The README's shorthand spellings read back from YAML as an equal pipeline."""
    p = nbp.Pipeline("p")
    with p.stage("s", when="All", failure_strategies=nbp.Ignore()) as s:
        s.step("a", when="Failure", failure_strategies={"Timeout": nbp.Retry(2)}, timeout="10s")
        with s.step_group("g", when={"stageStatus": "All", "condition": '<+pipeline.name> == "p"'}) as g:
            g.step("b", failure_strategies="Abort")
    assert nbp.load_yaml(p.to_yaml()) == p


# -- hostile input (issue 11) ----------------------------------------------------------------------
def _laughs(levels: int) -> str:
    """A 'billion laughs' pipeline: each anchor holds ten aliases of the one before."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 10) + "]")
    lines.append(f"pipeline: {{identifier: p, stages: [{{stage: {{identifier: s, spec: *l{levels}}}}}]}}")
    return "\n".join(lines) + "\n"


_LAUGHS = """
import sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]  # the package, and the tests' conftest
from notebook_pipelines.formats.yaml_io import YamlSyntaxError, load_yaml
from tests.test_yaml_io import _laughs

for levels in (7, 10):
    try:
        load_yaml(_laughs(levels), source_name="laughs.yaml")
    except YamlSyntaxError as err:
        print(str(err.problems[0])[:120])
"""


def test_yaml_alias_expansion_beyond_the_budget_is_refused_with_file_line_and_column():
    # 7 levels took 10 s and 260 MB, 10 levels ran out of memory: now both are refused at once
    done = subprocess.run(
        [sys.executable, "-c", _LAUGHS, str(REPO)], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:  # where the expansion passes the budget: l4 (10,000 lists of 10), line 5
        assert line.startswith("laughs.yaml:5:5: pipeline: [YAML] YAML aliases expand this part")


def test_yaml_alias_budget_message_says_why_and_how_to_fix():
    with pytest.raises(YamlSyntaxError) as caught:
        load_yaml(_laughs(5), source_name="laughs.yaml")
    (problem,) = caught.value.problems
    assert (problem.source, problem.line, problem.column, problem.rule) == ("laughs.yaml", 5, 5, "YAML")
    assert f"aliases may add at most {MAX_ALIAS_NODES:,}" in problem.message
    assert "write the repeated parts out" in problem.fix and "billion laughs" in problem.fix


def test_yaml_aliases_and_merge_keys_within_the_budget_still_work():
    text = textwrap.dedent(
        """\
        retry: &retry
          - onFailure: {errors: [AllErrors], action: {type: Retry, spec: {retryCount: 2}}}
        shell: &shell {type: ShellScript, timeout: 1m}
        pipeline:
          identifier: p
          stages:
            - stage:
                identifier: s
                type: Custom
                spec:
                  execution:
                    steps:
                      - step: {<<: *shell, identifier: a, failureStrategies: *retry}
                      - step: {<<: *shell, identifier: b, timeout: 5m}
        """
    )
    p = quiet_load(text)
    a, b = p.stages[0].items
    assert (a.type, a.timeout, b.type, b.timeout) == ("ShellScript", "1m", "ShellScript", "5m")
    assert a.failure_strategies == [OnFailure(("AllErrors",), Retry(2))]


def test_yaml_recursive_alias_is_refused_not_walked_for_ever():
    text = "pipeline: &p {identifier: p, stages: [{stage: {identifier: s, spec: *p}}]}\n"
    with pytest.raises(YamlSyntaxError) as caught:
        load_yaml(text, source_name="loop.yaml")
    (problem,) = caught.value.problems
    assert (problem.line, problem.column) == (1, 11)
    assert "refers to the anchored node that contains it" in problem.message and problem.fix


def _nested_groups_yaml(levels: int) -> str:
    lines = ["pipeline:", "  identifier: p", "  stages:", "    - stage:", "        identifier: s"]
    lines += ["        type: Custom", "        spec:", "          execution:", "            steps:"]
    indent = " " * 14
    for level in range(levels):
        lines += [f"{indent}- stepGroup:", f"{indent}    identifier: g{level}", f"{indent}    steps:"]
        indent += " " * 6
    lines.append(f"{indent}- step: {{identifier: leaf, type: ShellScript, timeout: 1m}}")
    return "\n".join(lines) + "\n"


def test_R6_150_nested_step_groups_in_yaml_are_refused_with_fqn_rule_fix_and_line():
    with pytest.raises(YamlError) as caught:  # used to be a RecursionError
        load_yaml(_nested_groups_yaml(150), rules="current", source_name="deep.yaml")
    (problem,) = caught.value.problems
    levels = MAX_GROUP_DEPTH + 1
    expected = "pipeline.stages.s.spec.execution.steps." + ".steps.".join(f"g{i}" for i in range(levels))
    assert (problem.fqn, problem.rule, problem.source) == (expected, "R6", "deep.yaml")
    # the mapping of the first group too deep, g32: line 11 + 3 × 32, column 19 + 6 × 32
    assert (problem.line, problem.column) == (11 + 3 * MAX_GROUP_DEPTH, 19 + 6 * MAX_GROUP_DEPTH)
    assert f"nested more than {MAX_GROUP_DEPTH} levels deep" in problem.message
    assert "`stepGroup:`" in problem.fix


def test_R6_the_deepest_nesting_allowed_loads_validates_and_writes_back():
    p = quiet_load(_nested_groups_yaml(MAX_GROUP_DEPTH), rules="current")
    p.validate()
    assert quiet_load(p.to_yaml(), rules="current") == p


def test_yaml_nested_beyond_the_parser_limit_is_a_syntax_error_not_a_recursion_error():
    for text in ("[" * 5000 + "]" * 5000, "pipeline:\n" + "".join(" " * i + "k:\n" for i in range(2, 3000))):
        with pytest.raises(YamlSyntaxError, match="exceeded maximum nesting depth"):
            load_yaml(text)


def test_yaml_data_nested_hundreds_of_levels_deep_loads_and_is_refused_by_validation():
    spec = "spec: {k: " + "[" * 900 + "]" * 900 + "}"
    p = quiet_load(_pipeline_with_step(spec), source_name="deep.yaml")
    with pytest.raises(DefinitionError) as caught:
        p.validate()
    (problem,) = caught.value.problems
    assert (problem.fqn, problem.rule) == ("pipeline.stages.s.spec.execution.steps.a", "limits")
    assert f"spec is nested more than {MAX_DATA_DEPTH} levels deep" in problem.message
    with pytest.raises(DefinitionError):
        p.to_yaml()


def test_yaml_failure_strategies_nested_deeper_than_the_limit_are_refused_at_load():
    action = "{type: Abort}"
    for _ in range(40):
        action = f"{{type: ManualIntervention, spec: {{timeout: 1m, onTimeout: {{action: {action}}}}}}}"
    text = _pipeline_with_step(
        f"failureStrategies:\n  - onFailure: {{errors: [AllErrors], action: {action}}}"
    )
    with pytest.raises(YamlError) as caught:
        load_yaml(text)
    (problem,) = caught.value.problems
    assert problem.rule == "R15" and f"nested more than {MAX_DATA_DEPTH} levels deep" in problem.message


# -- YAML fidelity: messages about YAML say YAML ---------------------------------------------------
def test_stages_written_as_a_mapping_say_a_list_is_needed_and_how_to_write_it():
    text = "pipeline:\n  identifier: p\n  stages:\n    stage: {identifier: s}\n"
    with pytest.raises(YamlError) as caught:
        load_yaml(text, source_name="p.yaml")
    (problem,) = caught.value.problems
    assert (problem.line, problem.column, problem.fqn) == (4, 5, "pipeline.stages")
    assert problem.message == "stages must be a list, got a mapping {'stage': {'identifier': 's'}}"
    assert "must be a mapping" not in str(problem)
    assert problem.fix == (
        "write `stages:` as a list: each `stage:` or `parallel:` entry on its own line starting "
        "with '- ', e.g. `stages:` then `  - stage: …`"
    )


def _on_failure(action: str) -> str:
    return f"failureStrategies:\n  - onFailure: {{errors: [AllErrors], action: {action}}}"


@pytest.mark.parametrize(
    ("step_body", "where"),
    [
        ("spec: [1, 2]", "spec"),
        ("when: sometimes", "when"),
        ("failureStrategies: {onFailure: {}}", "failureStrategies"),
        (_on_failure("{type: Nope}"), "action type"),
        (_on_failure("{type: Retry, spec: {retryCount: x}}"), "retryCount"),
        ("type: [ShellScript]", "type"),
    ],
)
def test_problems_found_while_loading_yaml_have_yaml_fixes(step_body, where):
    with pytest.raises(YamlError) as caught:
        load_yaml(_pipeline_with_step(step_body))
    for problem in caught.value.problems:
        assert problem.fix, (where, problem)
        assert not _PYTHON_FIX.search(problem.fix), (where, problem.fix)


#: Python spellings a fix for a YAML author must not use
_PYTHON_FIX = re.compile(r"nbp\.|\.step\(|Pipeline\(|\w+=\[|\w+=\{|\w+='|\(\d*\)")

_INVALID = {
    "no stages": "pipeline:\n  identifier: p\n  stages: []\n",
    "empty steps": _pipeline_with_step("").replace(
        "            steps:\n              - step:\n                  identifier: a\n"
        "                  type: ShellScript\n",
        "            steps: []\n",
    ),
    "retry count": _pipeline_with_step(_on_failure("{type: Retry, spec: {retryCount: 1000}}")),
    "intervention timeout": _pipeline_with_step(_on_failure("{type: ManualIntervention}")),
    "bad identifier": _pipeline_with_step("").replace("identifier: a", "identifier: 1a"),
    "unknown variable": _pipeline_with_step(
        "when: {stageStatus: Success, condition: <+pipeline.variables.nope> == 1}"
    ),
    "group selectors": _nested_groups_yaml(1).replace(
        "identifier: g0", "identifier: g0\n                  delegateSelectors: x"
    ),
    "name not text": _pipeline_with_step("name: [a, b]"),
    "retry condition": _pipeline_with_step(_on_failure("{type: Retry, spec: {condition: 5}}")),
}


@pytest.mark.parametrize("case", sorted(_INVALID))
def test_validation_problems_of_a_pipeline_read_from_yaml_have_yaml_fixes(case):
    p = quiet_load(_INVALID[case], rules="current" if case == "group selectors" else "classic")
    with pytest.raises(DefinitionError) as caught:
        p.validate()
    for problem in caught.value.problems:
        assert problem.fix, (case, problem)
        assert not _PYTHON_FIX.search(problem.fix), (case, problem.fix)
        assert problem.yaml_fix == ""  # the YAML form was chosen


def test_the_same_problem_built_in_python_keeps_its_python_fix():
    p = Pipeline("p", stages=[Stage("s", items=[Step("a", failure_strategies=Retry(1000))])])
    (problem,) = problems(p)
    assert "Retry(3)" in problem.fix and "retryCount: 100" in problem.yaml_fix
    assert quiet_load(p.to_yaml()) == p
    (from_yaml,) = problems(quiet_load(p.to_yaml()))
    assert from_yaml.fix == problem.yaml_fix and from_yaml.message == problem.message


# -- variables: one validation for load_yaml and the command line ---------------------------------
_ONE_STAGE = "{identifier: s, type: Custom, spec: {execution: {steps: [step: {identifier: a}]}}}"


def _with_variables(block: str) -> str:
    variables = textwrap.indent(textwrap.dedent(block), "    ")
    return f"pipeline:\n  identifier: p\n  variables:\n{variables}  stages:\n    - stage: {_ONE_STAGE}\n"


_TWICE = "- {name: n, type: String, value: a}\n- {name: n, type: String, value: b}\n"


@pytest.mark.parametrize(
    ("block", "where", "rule", "message", "fix"),
    [
        (
            "- {name: n, type: Number, value: abc}\n",
            (4, 38),
            "R8",
            "the Number variable 'n' has the value 'abc', which is not a number",
            "give a number",
        ),
        (
            _TWICE,
            (5, 7),
            "R8",
            "the variable 'n' is declared twice (first at line 4)",
            "keep one `- name: n`",
        ),
        (
            "n: 1\n",
            (4, 5),
            "YAML",
            "variables must be a list, got a mapping {'n': 1}",
            "`name: …, type: String, value: …` entry",
        ),
        (
            "- {name: n, type: Integer, value: 1}\n",
            (4, 23),
            "R8",
            "the variable 'n' has the type 'Integer'",
            "String, Number, Secret",
        ),
        (
            "- {type: String, value: 1}\n",
            (4, 7),
            "R8",
            "a variable needs a name (text), got None",
            "replicas",
        ),
    ],
)
def test_R8_variables_that_the_command_line_refused_are_refused_by_load_yaml(
    block, where, rule, message, fix
):
    with pytest.raises(YamlError) as caught:
        load_yaml(_with_variables(block), source_name="v.yaml")
    (problem,) = caught.value.problems
    assert (problem.line, problem.column, problem.rule) == (*where, rule)
    assert problem.message == message and fix in problem.fix


def test_R8_number_variables_take_numbers_text_that_spells_one_and_runtime_inputs():
    block = "- {name: a, type: Number, value: 2}\n- {name: b, type: Number, value: '2.5'}\n"
    block += "- {name: c, type: Number, value: <+input>}\n"
    assert quiet_load(_with_variables(block)).variables == {"a": 2, "b": "2.5", "c": "<+input>"}


def test_R8_a_number_variable_set_to_text_later_is_refused_by_validation():
    p = quiet_load(_with_variables("- {name: n, type: Number, value: '2'}\n"))
    p.variables["n"] = "abc"
    (problem,) = problems(p)
    assert (problem.fqn, problem.rule) == ("pipeline", "R43")
    assert "the Number variable 'n' has the value 'abc'" in problem.message


# -- property: any text either loads or is refused with our error -----------------------------------
_KEYS = st.sampled_from(
    ["pipeline", "identifier", "name", "stages", "stage", "parallel", "spec", "execution", "steps", "step",
     "stepGroup", "type", "timeout", "when", "failureStrategies", "onFailure", "errors", "action",
     "variables", "value", "rollbackSteps", "delegateSelectors", "strategy", "template", "<<", "x"]
)  # fmt: skip
_WORDS = ["Custom", "ShellScript", "Retry", "AllErrors", "Success", "<+input>", "1m", "10x", "", "*a"]
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**12),
    st.floats(allow_nan=True),
    st.sampled_from(_WORDS),
    st.text(max_size=8),
)
_DOCS = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=30,
)
_GARBAGE = st.text(st.sampled_from(list("pipeline:stages- &*!|>{}[],'\"#%@`?\n\t ab1")), max_size=200)


def _as_yaml(data: object, flow: bool) -> str:
    return yaml.safe_dump(data, default_flow_style=flow, allow_unicode=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.builds(_as_yaml, _DOCS, st.booleans()),
        st.builds(lambda d: _as_yaml({"pipeline": d}, False), _DOCS),
        _GARBAGE,
        st.builds(lambda d, g: _as_yaml(d, False) + g, _DOCS, _GARBAGE),
    ),
    st.sampled_from(["classic", "current"]),
)
def test_any_text_loads_as_a_pipeline_or_is_refused_with_a_pipeline_error(text, rules):
    _loads_or_is_refused(io.StringIO(text), rules)


#: bytes that are no UTF-8 (a stray byte, a cut sequence, a surrogate), put anywhere in a file
_NOT_UTF8 = st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xe9t\xe9"])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.builds(_as_yaml, _DOCS, st.booleans()),
    _NOT_UTF8,
    st.floats(0, 1),
    st.sampled_from([io.BytesIO, bytes]),
    st.sampled_from(["classic", "current"]),
)
def test_any_bytes_load_or_are_refused_with_a_pipeline_error(text, bad, where, kind, rules):
    # issue 24 item 6: bytes that are not UTF-8 gave a raw UnicodeDecodeError
    data = text.encode()
    cut = int(len(data) * where)
    _loads_or_is_refused(kind(data[:cut] + bad + data[cut:]), rules)


def _loads_or_is_refused(source: object, rules: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", YamlWarning)
        try:
            loaded = load_yaml(source, rules=rules)
        except PipelineError:
            return
    assert isinstance(loaded, Pipeline)
    try:  # what loads can be checked, and written back, without any other exception
        loaded.validate()
        loaded.to_yaml()
    except PipelineError:
        pass


def test_an_integer_too_long_for_python_is_a_marked_yaml_problem_not_a_crash():
    digits = "9" * 5000  # Python reads at most 4,300 digits: PyYAML's int() raised a bare ValueError
    text = f"pipeline:\n  identifier: p\n  timeout: {digits}\n"
    with pytest.raises(YamlSyntaxError) as caught:
        load_yaml(text, source_name="big.yaml")
    (problem,) = caught.value.problems
    assert (problem.source, problem.line, problem.column, problem.rule) == ("big.yaml", 3, 12, "YAML")
    assert "has 5000 characters: too long to read" in problem.message
    assert "sensible size" in problem.fix


# -- files that take the machine: the Python API refuses what the CLI refuses (issue 24 item 6) ----
_HOSTILE = """
import os, resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))  # /dev/zero read whole: MemoryError
import notebook_pipelines as nbp
for name in [*sys.argv[1:], "/dev/zero opened"]:
    try:
        if name.endswith(" opened"):  # an open file that never ends
            with open(name.split()[0], "rb") as stream:
                nbp.load_yaml(stream)
        else:
            nbp.load_yaml(Path(name))
    except BaseException as err:
        where = f"{getattr(err, 'line', '-')}|{getattr(err, 'column', '-')}"
        print(f"{type(err).__name__}|{where}|{str(err)[:200]}", flush=True)
"""


def test_load_yaml_refuses_a_fifo_a_device_a_huge_or_undecodable_file_as_the_cli_does(tmp_path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # nobody ever writes: reading it would block for ever
    zero = tmp_path / "x.yaml"
    zero.symlink_to("/dev/zero")  # never ends: read until memory runs out
    huge = tmp_path / "huge.yaml"
    with open(huge, "wb") as f:
        f.truncate(32 * 2**20 + 1)  # files.MAX_TEXT_BYTES + 1, sparse: nothing written
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"pipeline:\n  identifier: p\n  name: caf\xe9\n")
    paths = [str(p) for p in (fifo, zero, huge, latin)]
    done = subprocess.run(
        [sys.executable, "-c", _HOSTILE, *paths], capture_output=True, text=True, cwd=REPO, timeout=60
    )  # a hard timeout: a FIFO hung the old reader
    lines = done.stdout.splitlines()
    assert len(lines) == 5, done.stdout + done.stderr[-2000:]
    kinds = [line.split("|", 3) for line in lines]
    assert all(kind == "InputFileError" for kind, *_ in kinds), lines
    messages = [message for *_, message in kinds]
    assert messages[:4] == [
        f"{fifo} is a FIFO, not a regular file: give a YAML file",
        f"{zero} is a character device, not a regular file: give a YAML file",
        f"{huge} is 32 MB; files over 32 MB are refused: split it, or give a smaller file",
        f"{latin} is not UTF-8 text (byte 0xe9 at line 3, column 12): save it as UTF-8",
    ]
    assert kinds[3][1:3] == ["3", "12"]  # line and column on the error too
    assert messages[4] == "/dev/zero is over 32 MB: refused: give a smaller file"
    # the CLI says the same of each file: one reader
    for path, message in zip(paths, messages[:4]):
        cli = subprocess.run(
            [sys.executable, "-m", "notebook_pipelines", "validate", path],
            capture_output=True, text=True, cwd=REPO, timeout=60,
        )  # fmt: skip
        assert (cli.returncode, cli.stderr) == (2, f"error: {message}\n")


def test_a_missing_file_is_still_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_yaml(tmp_path / "nope.yaml")
