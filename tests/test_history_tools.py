"""A pipeline rebuilt from a history, and the Harness Insights export (issue 26)."""

from __future__ import annotations

import pandas as pd
import pytest
from test_github_runs import JOBS, RUN, WORKFLOW

import notebook_pipelines as nbp
from notebook_pipelines.formats.github import load_github_run
from notebook_pipelines.formats.history import HistoryError
from notebook_pipelines.formats.history_tools import load_harness_insights, pipeline_from_history


def layout() -> nbp.Pipeline:
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        _ = s.step("a", duration=1)
        with s.parallel():
            _ = s.step("b", duration=1)
            _ = s.step("c", duration=1)
    return p


def test_durations_are_medians_across_runs_and_the_layout_is_kept():
    p = layout()
    runs = pd.concat(
        [
            p.simulate(durations={"a": a, "b": b, "c": 1}, run_id=f"r{i}")
            for i, (a, b) in enumerate([(1, 4), (3, 2), (8, 9)])
        ]
    )
    rebuilt = pipeline_from_history(runs)
    trace = rebuilt.simulate()
    # a: median(1, 3, 8) = 3; b: median(4, 2, 9) = 4; c: 1; b ‖ c after a: makespan 3 + 4 = 7
    assert dict(zip(trace["step"].dropna(), trace.loc[trace["kind"] == "step", "duration_s"])) == {
        "a": 3.0,
        "b": 4.0,
        "c": 1.0,
    }
    assert trace["end_s"].max() == 7.0
    assert "needs" not in (rebuilt.extra or {})  # a series-parallel run: nothing to keep


def test_a_github_dag_is_laid_out_by_levels_and_keeps_its_edges_and_says_so():
    run = load_github_run(JOBS, workflow=WORKFLOW, run=RUN)
    p = pipeline_from_history(run)
    needs = p.extra["needs"]
    assert needs["pipeline.stages.docs"] == ["pipeline.stages.lint"]
    assert needs["pipeline.stages.integration"] == ["pipeline.stages.build", "pipeline.stages.lint"]
    assert "DAG no Harness layout expresses" in p.description
    assert "its needs form a DAG: drawn by levels" in p.render().source
    trace = p.simulate()  # levels: lint ‖ build, then docs ‖ unit ‖ integration, then deploy
    stages = trace[trace["kind"] == "stage"].set_index("stage")
    assert stages.loc["docs", "start_s"] == stages.loc["build", "end_s"]
    assert stages.loc["deploy", "start_s"] == stages.loc["integration", "end_s"]


def test_a_history_of_several_pipelines_is_refused():
    a = load_github_run(JOBS, workflow=WORKFLOW, run=RUN)
    b = load_github_run(JOBS, workflow=WORKFLOW, run={**RUN, "id": 43}, pipeline="other.yml")
    with pytest.raises(HistoryError, match=r"holds 2 pipelines .*select one"):
        pipeline_from_history(pd.concat([a, b]))
    with pytest.raises(HistoryError, match=r"no run 'zz'"):
        pipeline_from_history(a, run="zz")


HEADER = "Step Executions Plan Execution Id,PIPELINE IDENTIFIER,Stage Identifier,step_identifier,Status,"
CSV = (
    HEADER
    + """Start Time,End Time,Duration
e1,release,build,compile,Success,2026-01-05 10:00:00,2026-01-05 10:01:00,60
e1,release,build,test,Failed,2026-01-05 10:01:00,2026-01-05 10:01:30,30
e1,release,build,test,Success,2026-01-05 10:01:40,2026-01-05 10:02:20,40
e1,release,deploy,rollout,Success,2026-01-05 10:02:30,2026-01-05 10:03:00,30
e2,release,build,compile,Success,2026-01-06 10:00:00,2026-01-06 10:00:50,50
"""
)


def test_insights_export_columns_matched_case_insensitively_with_retries(tmp_path):
    path = tmp_path / "steps.csv"
    path.write_text(CSV)
    h = load_harness_insights(path)
    assert h.attrs["columns_found"]["run_id"] == "Step Executions Plan Execution Id"
    assert h.attrs["columns_found"]["step"] == "step_identifier"
    e1 = h[h["run_id"] == "e1"]
    rows = [
        (f.replace("pipeline.stages.", "").replace("spec.execution.steps.", ""), a, str(s), st, en)
        for f, a, s, st, en in zip(e1["fqn"], e1["attempt"], e1["status"], e1["start_s"], e1["end_s"])
    ]
    assert rows == [
        ("pipeline", 1, "Success", 0.0, 180.0),
        ("build", 1, "Success", 0.0, 140.0),  # test's last attempt succeeded
        ("build.compile", 1, "Success", 0.0, 60.0),
        ("build.test", 1, "Failed", 60.0, 90.0),
        ("build.test", 2, "Success", 100.0, 140.0),
        ("deploy", 1, "Success", 150.0, 180.0),
        ("deploy.rollout", 1, "Success", 150.0, 180.0),
    ]
    assert e1["after"].isna().all() and set(h["source"]) == {"harness-insights"}
    assert set(h["pipeline"]) == {"release"}


def test_insights_export_missing_a_column_says_what_was_found(tmp_path):
    path = tmp_path / "steps.csv"
    path.write_text("Plan Execution Id,Stage,Status,Start Time\ne1,build,Success,2026-01-05 10:00:00\n")
    with pytest.raises(
        HistoryError, match=r"lacks step, end or duration \(columns found: Plan Execution Id, Stage"
    ):
        load_harness_insights(path)


def test_a_gitlab_pipeline_whose_needs_skip_a_stage_keeps_its_edges():
    from test_gitlab_runs import GRAPHQL
    from test_gitlab_runs import JOBS as GL_JOBS
    from test_gitlab_runs import PIPELINE as GL_PIPELINE

    from notebook_pipelines.formats.gitlab import load_gitlab_pipeline

    p = pipeline_from_history(load_gitlab_pipeline(GL_PIPELINE, GL_JOBS, GRAPHQL))
    needs = {k.rsplit(".", 1)[-1]: [f.rsplit(".", 1)[-1] for f in v] for k, v in p.extra["needs"].items()}
    assert needs == {
        "unit": ["compile", "docs"],
        "rspec": ["compile", "docs"],
        "lint": ["compile", "docs"],
        "pages": ["compile"],  # skips the test stage: no layout of stages expresses it
        "release": ["unit", "rspec", "lint"],
    }
    assert [type(s).__name__ for s in p.stages] == ["Stage", "Stage", "Stage"]
