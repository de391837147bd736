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


def test_D14_a_github_dag_becomes_one_parallel_block_of_stages_with_needs_honoured():
    run = load_github_run(JOBS, workflow=WORKFLOW, run=RUN)
    p = pipeline_from_history(run)
    needs = p.extra["needs"]  # the edges, by the history's FQNs, as documented
    assert needs["pipeline.stages.docs"] == ["pipeline.stages.lint"]
    assert needs["pipeline.stages.integration"] == ["pipeline.stages.build", "pipeline.stages.lint"]
    assert (
        repr(p)
        == "Pipeline('ci', stages=[Parallel(['lint', 'build', 'docs', 'unit', 'integration', 'deploy'])])"
    )
    assert {s.id: s.needs for s in p.stages[0].items} == {
        "lint": None,
        "build": None,
        "docs": ["lint"],
        "unit": ["build"],
        "integration": ["build", "lint"],
        "deploy": ["unit", "integration", "docs"],
    }
    assert "each member carrying its needs (honoured by simulate and monte_carlo, D14)" in p.description
    assert "levels" not in p.description and "drawn by levels" not in p.render().source
    stages = p.simulate().query("kind == 'stage' and iteration.isna()").set_index("stage")
    # medians: lint 2 + 26 = 28; build (both legs) 2 + median(58, 83) = 72.5; docs 2 + 17 = 19;
    # unit 1 + 57 = 58; integration 1 + 104 = 105; deploy 1 + 17 = 18.
    # lint 0 → 28; build 0 → 72.5; docs (needs lint) 28 → 47 (by levels it waited for build: 72.5);
    # unit (build) 72.5 → 130.5; integration (build, lint) 72.5 → 177.5;
    # deploy (unit, integration, docs) max(130.5, 177.5, 47) = 177.5 → 195.5
    assert stages.loc["docs", ["start_s", "end_s"]].tolist() == [28.0, 47.0]
    assert stages.loc["unit", ["start_s", "end_s"]].tolist() == [72.5, 130.5]
    assert stages.loc["integration", ["start_s", "end_s"]].tolist() == [72.5, 177.5]
    assert stages.loc["deploy", ["start_s", "end_s"]].tolist() == [177.5, 195.5]
    mc = nbp.monte_carlo(p, runs=3)
    assert mc.attrs["engine"] == "vectorised" and (mc["makespan_s"] == 195.5).all()


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


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            CSV.encode().replace(b"release", b"rel\xffase", 1),
            r"steps.csv is not UTF-8 text \(byte 0xff at line 2",
        ),
        (b'Plan Execution Id,Stage\n"e1,build\n', r"steps.csv is not a CSV file \(Error tokenizing data"),
        (b"", r"steps.csv is not a CSV file \(No columns to parse"),
    ],
    ids=["not-utf8", "unclosed-quote", "empty"],
)
def test_an_insights_export_that_is_not_utf8_csv_is_a_history_error_naming_the_file(tmp_path, data, message):
    """Before: UnicodeDecodeError, pandas' ParserError and EmptyDataError came out raw."""
    path = tmp_path / "steps.csv"
    path.write_bytes(data)
    with pytest.raises(HistoryError, match=r"load_harness_insights: .*" + message):
        load_harness_insights(path)


def test_an_insights_export_of_thousands_of_unknown_statuses_warns_in_one_short_line(tmp_path):
    """Before: the warning listed all 3,000 statuses (32 KB in one line)."""
    lines = [CSV.splitlines()[0]] + [
        f"e1,release,build,s{i},Weird{i},2026-01-05 10:00:00,2026-01-05 10:01:00,60" for i in range(3000)
    ]
    path = tmp_path / "steps.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match=r"unknown status\(es\) Weird0, Weird1, .*read as Running") as record:
        load_harness_insights(path)
    assert max(len(str(w.message)) for w in record) < 400


def test_D14_a_gitlab_pipeline_whose_needs_cross_stages_becomes_one_block_of_its_jobs():
    from test_gitlab_runs import GRAPHQL
    from test_gitlab_runs import JOBS as GL_JOBS
    from test_gitlab_runs import PIPELINE as GL_PIPELINE

    from notebook_pipelines.formats.gitlab import load_gitlab_pipeline

    h = load_gitlab_pipeline(GL_PIPELINE, GL_JOBS, GRAPHQL)
    p = pipeline_from_history(h)
    needs = {k.rsplit(".", 1)[-1]: [f.rsplit(".", 1)[-1] for f in v] for k, v in p.extra["needs"].items()}
    assert needs == {
        "unit": ["compile", "docs"],
        "rspec": ["compile", "docs"],
        "lint": ["compile", "docs"],
        "pages": ["compile"],  # skips the test stage: no layout of stages expresses it
        "release": ["unit", "rspec", "lint"],
    }
    # pages needs a job of the build stage, release jobs of the test stage: the members share one block
    (stage,) = p.stages
    assert stage.id == "jobs" and stage.name == "jobs of the stages build, test, deploy"
    assert {m.id: m.needs for m in stage.items[0].items} == {
        "compile": None,
        "docs": None,
        "unit": ["compile", "docs"],
        "rspec": ["compile", "docs"],
        "lint": ["compile", "docs"],
        "pages": ["compile"],
        "release": ["unit", "rspec", "lint"],
    }
    assert "its stages merged into one stage (jobs)" in p.description
    t = p.simulate().query("iteration.isna()").set_index("step")
    # compile 10, docs 4, unit 29, rspec 24, lint 4 (its last attempt), pages 6, release 9:
    # unit, rspec, lint start at max(10, 4) = 10; pages at 10 (by stages: at 39, after the test stage);
    # release at max(10 + 29, 10 + 24, 10 + 4) = 39 → 48
    assert t.loc["pages", ["start_s", "end_s"]].tolist() == [10.0, 16.0]
    assert t.loc["release", ["start_s", "end_s"]].tolist() == [39.0, 48.0]
    # the history's durations still find the jobs (by id: their FQNs moved into the one stage)
    mc = nbp.monte_carlo(p, h, runs=3)
    assert mc.attrs["engine"] == "vectorised" and (mc["makespan_s"] == 48.0).all()
    # and the picture of the history finds their figures (by id, as durations= does)
    source = p.render(h, color_by="criticality").source
    release = next(line for line in source.splitlines() if line.strip().startswith("n8 "))
    assert "release" in release and "critical 100%" in release  # on the path of the one run


def test_D14_a_dag_whose_edges_are_unknown_for_a_sibling_stays_laid_out_by_levels():
    run = load_github_run(JOBS, workflow=WORKFLOW, run=RUN)
    run["after"] = run["after"].astype(object)
    run.loc[run["fqn"] == "pipeline.stages.lint", "after"] = None  # lint's edges unknown
    p = pipeline_from_history(run)
    assert "laid out by levels (an upper bound on its timing)" in p.description
    assert repr(p).startswith("Pipeline('ci', stages=[Parallel(['lint', 'build']), Parallel(")
    assert "its needs form a DAG: drawn by levels" in p.render().source
