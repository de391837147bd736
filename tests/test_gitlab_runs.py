"""GitLab pipelines → history rows (issue 26), against hand-written expectations.

Stages build → test → deploy; ``pages`` needs only ``compile`` (it skips the test stage);
``release`` has no needs (it waits for the whole test stage); ``rspec 1/2``, ``rspec 2/2``
are one parallel job; ``lint`` failed and was retried. Times: seconds after 10:00:00.
"""

from __future__ import annotations

import time

import pandas as pd
import pytest
from conftest import short, table

from notebook_pipelines.analysis.timing import critical_path
from notebook_pipelines.formats.gitlab import load_gitlab_pipeline, needs_from_graphql
from notebook_pipelines.formats.history import HistoryError


def t(seconds: float) -> str:
    return (
        (pd.Timestamp("2026-01-05T10:00:00Z") + pd.Timedelta(seconds=seconds))
        .isoformat()
        .replace("+00:00", "Z")
    )


def job(id, name, stage, status, start, end, queued=0.5, runner="r1", created=None, **more):
    return {
        "id": id,
        "name": name,
        "stage": stage,
        "status": status,
        "created_at": t(created if created is not None else start - queued),
        "started_at": t(start),
        "finished_at": t(end),
        "duration": end - start,
        "queued_duration": queued,
        "runner": {"id": 1, "description": runner},
        **more,
    }


PIPELINE = {
    "id": 500,
    "iid": 12,
    "project_id": 77,
    "status": "success",
    "source": "push",
    "ref": "main",
    "sha": "cafe01",
    "created_at": t(-2),
    "started_at": t(0),
    "finished_at": t(50),
    "duration": 50,
    "queued_duration": 2,
    "web_url": "https://gitlab.example/g/p/-/pipelines/500",
}
JOBS = [
    job(9, "release", "deploy", "success", 41, 50, queued=1.0),
    job(8, "lint", "test", "success", 16, 20, created=15),
    job(7, "pages", "deploy", "success", 12, 18, queued=2.0, runner="r2"),
    job(6, "lint", "test", "failed", 11, 14, queued=1.0, failure_reason="script_failure"),
    job(5, "rspec 2/2", "test", "success", 11, 35, queued=1.0),
    job(4, "rspec 1/2", "test", "success", 11, 25, queued=1.0),
    job(3, "unit", "test", "success", 11, 40, queued=1.0, runner="r3"),
    job(2, "docs", "build", "success", 0, 4, queued=0.0),
    job(1, "compile", "build", "success", 0, 10, queued=0.0),
]  # the REST order: newest first
GRAPHQL = {
    "data": {
        "project": {
            "pipeline": {
                "jobs": {
                    "nodes": [
                        {
                            "name": "compile",
                            "stage": {"name": "build"},
                            "needs": {"nodes": []},
                            "previousStageJobsOrNeeds": {"nodes": []},
                        },
                        {
                            "name": "docs",
                            "stage": {"name": "build"},
                            "needs": {"nodes": []},
                            "previousStageJobsOrNeeds": {"nodes": []},
                        },
                        *[
                            {
                                "name": n,
                                "stage": {"name": "test"},
                                "needs": {"nodes": []},
                                "previousStageJobsOrNeeds": {
                                    "nodes": [{"name": "compile"}, {"name": "docs"}]
                                },
                            }
                            for n in ("unit", "rspec 1/2", "rspec 2/2", "lint")
                        ],
                        {
                            "name": "pages",
                            "stage": {"name": "deploy"},
                            "needs": {"nodes": [{"name": "compile"}]},
                            "previousStageJobsOrNeeds": {"nodes": [{"name": "compile"}]},
                        },
                        {
                            "name": "release",
                            "stage": {"name": "deploy"},
                            "needs": {"nodes": []},
                            "previousStageJobsOrNeeds": {
                                "nodes": [
                                    {"name": "unit"},
                                    {"name": "rspec 1/2"},
                                    {"name": "rspec 2/2"},
                                    {"name": "lint"},
                                ]
                            },
                        },
                    ]
                }
            }
        }
    }
}
P = "pipeline.stages."


def test_stages_jobs_parallel_retries_and_needs_that_skip_a_stage():
    run = load_gitlab_pipeline(PIPELINE, JOBS, needs={"pages": ["compile"]}, project="g/p")
    test_stage = ["test.unit", "test.rspec", "test.lint"]
    assert table(run, "kind", "block", "iteration", "attempt", "status", "start_s", "end_s", "after") == [
        ("pipeline", "pipeline", None, None, 1, "Success", 0.0, 50.0, []),
        ("build", "stage", 0, None, 1, "Success", 0.0, 10.0, []),
        ("build.compile", "step", 0, None, 1, "Success", 0.0, 10.0, []),
        ("build.docs", "step", 0, None, 1, "Success", 0.0, 4.0, []),
        ("test", "stage", 1, None, 1, "Success", 11.0, 40.0, []),
        ("test.unit", "step", 0, None, 1, "Success", 11.0, 40.0, ["build.compile", "build.docs"]),
        ("test.rspec", "step", 0, None, 1, "Success", 11.0, 35.0, ["build.compile", "build.docs"]),
        ("test.rspec_1_2", "step", 0, 0, 1, "Success", 11.0, 25.0, []),
        ("test.rspec_2_2", "step", 0, 1, 1, "Success", 11.0, 35.0, []),
        ("test.lint", "step", 0, None, 1, "Failed", 11.0, 14.0, ["build.compile", "build.docs"]),
        ("test.lint", "step", 0, None, 2, "Success", 16.0, 20.0, ["build.compile", "build.docs"]),
        ("deploy", "stage", 2, None, 1, "Success", 12.0, 50.0, []),
        ("deploy.pages", "step", 0, None, 1, "Success", 12.0, 18.0, ["build.compile"]),  # skips test
        ("deploy.release", "step", 0, None, 1, "Success", 41.0, 50.0, test_stage),
    ]
    lint = run[run["step"] == "lint"]
    assert list(lint["action"].fillna("")) == ["Rerun", ""] and lint["error"].iloc[0] == "script_failure"
    head = run.iloc[0]
    assert (head["run_id"], head["source"], head["pipeline"], head["run_number"], head["commit"]) == (
        "500",
        "gitlab",
        "g/p",
        12,
        "cafe01",
    )
    assert (head["branch"], head["trigger"], head["queued_s"]) == ("main", "push", 2.0)
    assert head["created"] == pd.Timestamp("2026-01-05T09:59:58Z")
    pages = run[run["step"] == "pages"].iloc[0]
    assert (pages["worker"], pages["queued_s"]) == ("r2", 2.0)


def test_graphql_needs_give_the_same_edges_as_the_mapping():
    a = load_gitlab_pipeline(PIPELINE, JOBS, needs={"pages": ["compile"]})
    b = load_gitlab_pipeline(PIPELINE, JOBS, needs=GRAPHQL)
    assert list(a["after"]) == list(b["after"])


def test_critical_path_follows_the_stage_order_and_not_the_needs_shortcut():
    """release (41–50) waited for the test stage; its latest job is unit (ends 40); unit
    waited for the build stage, whose latest job is compile (ends 10). pages, which needed only
    compile, is off the path; so is the retried lint."""
    path = critical_path(load_gitlab_pipeline(PIPELINE, JOBS, needs=GRAPHQL))
    assert [short(f) for f in path["fqn"]] == ["build.compile", "test.unit", "deploy.release"]


def test_a_stage_skipped_by_needs_when_pages_ends_last():
    """Make pages the longest (12–60): the run ends with it, and the path is compile → pages,
    skipping the test stage entirely (the blocks alone would put the test stage before it)."""
    jobs = [
        j if j["name"] != "pages" else job(7, "pages", "deploy", "success", 12, 60, queued=2.0) for j in JOBS
    ]
    pipe = {**PIPELINE, "finished_at": t(60)}
    path = critical_path(load_gitlab_pipeline(pipe, jobs, needs=GRAPHQL))
    assert [short(f) for f in path["fqn"]] == ["build.compile", "deploy.pages"]


def test_bad_input_names_the_pipeline_and_the_job():
    with pytest.raises(HistoryError, match=r"is not a GitLab pipeline.*pipelines/\{pipeline_id\}"):
        load_gitlab_pipeline({"jobs": []}, JOBS)
    with pytest.raises(HistoryError, match=r"pipeline 500: .* is not a list of GitLab jobs"):
        load_gitlab_pipeline(PIPELINE, {"id": 1})
    with pytest.raises(HistoryError, match=r"pipeline 500: job 'pages' needs 'compil', which the pipeline"):
        load_gitlab_pipeline(PIPELINE, JOBS, needs={"pages": ["compil"]})
    with pytest.raises(
        HistoryError, match=r"pipeline 500: the jobs' needs form a cycle: compile → pages → compile"
    ):
        load_gitlab_pipeline(PIPELINE, JOBS, needs={"pages": ["compile"], "compile": ["pages"]})
    with pytest.raises(HistoryError, match=r"pipeline 500: job 'lint': unknown status 'exploded'"):
        load_gitlab_pipeline(PIPELINE, [*JOBS, job(10, "lint", "test", "exploded", 21, 22)])


def test_a_job_without_a_name_or_with_a_damaged_id_names_the_pipeline_and_the_job():
    """Before: KeyError('name') and ValueError out of the loader."""
    nameless = [dict(JOBS[0]), *JOBS[1:]]
    del nameless[0]["name"]
    with pytest.raises(HistoryError, match=r"^pipeline 500: the jobs JSON: jobs\[0\] is not a GitLab job"):
        load_gitlab_pipeline(PIPELINE, nameless)
    with pytest.raises(HistoryError, match=r"pipeline 500: job 'release' id: 'abc' is not a whole number"):
        load_gitlab_pipeline(PIPELINE, [{**JOBS[0], "id": "abc"}, *JOBS[1:]])


def test_graphql_needs_given_as_a_plain_list_are_read():
    """``needs`` as a list of ``{name}`` (no ``nodes`` wrapper) — before: AttributeError."""
    doc = {
        "data": {
            "project": {"pipeline": {"jobs": {"nodes": [{"name": "unit", "needs": [{"name": "docs"}]}]}}}
        }
    }
    assert needs_from_graphql(doc) == {"unit": ["docs"]}


def test_a_job_name_of_a_million_characters_is_cut_in_the_message():
    """The message names the job by an excerpt (before: the whole name, 1 MB in one line)."""
    huge = "x" * 1_000_000
    with pytest.raises(
        HistoryError, match=r"pipeline 500: job 'x+…\[\d+ characters\]…x+': unknown status"
    ) as info:
        load_gitlab_pipeline(PIPELINE, [*JOBS, job(10, huge, "test", "exploded", 21, 22)])
    assert len(str(info.value)) < 500


def test_a_long_job_name_is_split_into_node_and_iteration_in_linear_time():
    """``^(.*): \\[(.*)\\]$`` backtracked quadratically: a name of 45,000 characters of ': ['
    took 2 s here (16 s for 120,000). The split is the same: at the last ': ['."""
    name = ": [" * 15_000
    started = time.monotonic()
    load_gitlab_pipeline(PIPELINE, [*JOBS, job(10, name, "test", "success", 21, 22)])
    assert time.monotonic() - started < 1
    rows = load_gitlab_pipeline(
        PIPELINE, [*JOBS, job(10, "build: [linux, amd64]", "test", "success", 21, 22)]
    )
    looped = rows[rows["fqn"].str.endswith(".steps.build_linux_amd64")]
    assert list(looped["parent"]) == ["pipeline.stages.test.spec.execution.steps.build"]


def test_a_pipeline_of_ten_thousand_stages_loads_in_linear_time():
    """Each stage looked up its index in the stage order and scanned every job for its own:
    10,000 one-job stages took about 3 s here (quadratic). Each job still waits for the one
    before it (the previous stage)."""
    jobs = [job(i, f"j{i}", f"s{i}", "success", 1, 2) for i in range(1, 10_000)]
    started = time.monotonic()
    rows = load_gitlab_pipeline(PIPELINE, jobs)
    assert time.monotonic() - started < 1.5
    steps = rows[rows["kind"] == "step"].set_index("step")
    assert steps.loc["j2", "after"] == ("pipeline.stages.s1.spec.execution.steps.j1",)
    assert steps.loc["j1", "after"] == ()


def test_retried_jobs_are_ordered_by_the_instant_they_were_created_across_a_dst_change():
    """An instance that writes local times: the job at 02:30+02:00 (00:30 UTC) failed and its
    retry came at 02:10+01:00 (01:10 UTC, after the clocks went back). Sorted as text, the
    retry was attempt 1 and the failure attempt 2."""
    first = {**job(20, "smoke", "test", "failed", 21, 22), "created_at": "2026-10-25T02:30:00+02:00"}
    retry = {**job(21, "smoke", "test", "success", 23, 24), "created_at": "2026-10-25T02:10:00+01:00"}
    rows = load_gitlab_pipeline(PIPELINE, [*JOBS, retry, first])
    smoke = rows[rows["step"] == "smoke"]
    assert [(a, str(s)) for a, s in zip(smoke["attempt"], smoke["status"])] == [(1, "Failed"), (2, "Success")]
