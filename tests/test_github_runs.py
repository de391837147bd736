"""GitHub Actions runs → history rows (issue 26), checked against hand-written expectations.

The run below is written by hand in the shapes of ``../shared/CI_RUNS.md`` (REST jobs with
``filter=all``): a matrix job (``Build (ubuntu, 3.12)``, ``Build (macos, 3.12)``), a re-run
of the failed macOS build (attempt 2) with the jobs that were skipped because of it, and
``needs`` forming the "N" that no series-parallel layout expresses (docs needs lint;
integration needs lint and build; unit needs build). Times are seconds after 10:00:00.
"""

from __future__ import annotations

import json
import time
import warnings

import pandas as pd
import pytest
from conftest import short, table

import notebook_pipelines as nbp
from notebook_pipelines.analysis.timing import critical_path
from notebook_pipelines.formats.github import load_github_run
from notebook_pipelines.formats.history import HistoryError

WORKFLOW = """
name: CI
on: [push]
jobs:
  lint:
    runs-on: ubuntu-latest
    steps: [{run: ruff check .}]
  build:
    name: Build
    strategy:
      matrix:
        os: [ubuntu, macos]
        python: ["3.12"]
    runs-on: ${{ matrix.os }}
    steps: [{run: make}]
  docs:
    needs: lint
    runs-on: ubuntu-latest
  unit:
    needs: [build]
    runs-on: ubuntu-latest
  integration:
    name: Integration
    needs: [build, lint]
    runs-on: ubuntu-latest
  deploy:
    name: Deploy to ${{ github.ref_name }}
    needs: [unit, integration, docs]
    runs-on: ubuntu-latest
"""


def t(seconds: float) -> str:
    return (pd.Timestamp("2026-01-05T10:00:00Z") + pd.Timedelta(seconds=seconds)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def job(id, name, attempt, conclusion, created, start, end, runner=None, steps=()):
    return {
        "id": id,
        "run_id": 42,
        "run_attempt": attempt,
        "name": name,
        "status": "completed",
        "conclusion": conclusion,
        "created_at": t(created),
        "started_at": t(start),
        "completed_at": t(end),
        "runner_name": runner,
        "head_sha": "abc123",
        "steps": [
            {
                "name": n,
                "status": "completed",
                "conclusion": c,
                "number": i + 1,
                "started_at": t(a),
                "completed_at": t(b),
            }
            for i, (n, c, a, b) in enumerate(steps)
        ],
    }


JOBS = {
    "total_count": 11,
    "jobs": [
        job(
            1,
            "lint",
            1,
            "success",
            0,
            2,
            30,
            "gh-1",
            [("Set up job", "success", 2, 4), ("Run ruff check .", "success", 4, 30)],
        ),
        job(
            2,
            "Build (ubuntu, 3.12)",
            1,
            "success",
            0,
            3,
            63,
            "gh-2",
            [("Set up job", "success", 3, 5), ("Run make", "success", 5, 63)],
        ),
        job(
            3,
            "Build (macos, 3.12)",
            1,
            "failure",
            0,
            5,
            95,
            "mac-1",
            [("Set up job", "success", 5, 8), ("Run make", "failure", 8, 95)],
        ),
        job(
            4,
            "docs",
            1,
            "success",
            30,
            31,
            50,
            "gh-3",
            [("Set up job", "success", 31, 33), ("Build docs", "success", 33, 50)],
        ),
        job(5, "unit", 1, "skipped", 95, 95, 95),
        job(6, "Integration", 1, "skipped", 95, 95, 95),
        job(7, "Deploy to main", 1, "skipped", 95, 95, 95),
        job(
            8,
            "Build (macos, 3.12)",
            2,
            "success",
            100,
            105,
            190,
            "mac-2",
            [("Set up job", "success", 105, 107), ("Run make", "success", 107, 190)],
        ),
        job(
            9,
            "unit",
            2,
            "success",
            190,
            192,
            250,
            "gh-4",
            [("Set up job", "success", 192, 193), ("Run tests", "success", 193, 250)],
        ),
        job(
            10,
            "Integration",
            2,
            "success",
            190,
            195,
            300,
            "gh-5",
            [("Set up job", "success", 195, 196), ("Run integration", "success", 196, 300)],
        ),
        job(
            11,
            "Deploy to main",
            2,
            "success",
            300,
            302,
            320,
            "gh-6",
            [("Set up job", "success", 302, 303), ("Deploy", "success", 303, 320)],
        ),
    ],
}
RUN = {
    "id": 42,
    "run_number": 17,
    "run_attempt": 2,
    "name": "CI",
    "path": ".github/workflows/ci.yml",
    "head_branch": "main",
    "head_sha": "abc123",
    "event": "push",
    "status": "completed",
    "conclusion": "success",
    "created_at": t(0),
    "run_started_at": t(100),
    "html_url": "https://github.com/o/r/actions/runs/42",
}
P = "pipeline.stages."


def test_jobs_matrix_iterations_attempts_and_needs_as_written():
    run = load_github_run(JOBS, workflow=WORKFLOW, run=RUN)
    jobs = run[run["kind"] != "step"]
    # every time is seconds after the run's first start (lint, at 2 s): start_s = t − 2
    assert table(jobs, "kind", "block", "iteration", "attempt", "status", "start_s", "end_s", "after") == [
        ("pipeline", "pipeline", None, None, 2, "Success", 0.0, 318.0, []),
        ("lint", "stage", 0, None, 1, "Success", 0.0, 28.0, []),
        ("build", "stage", 0, None, 1, "Success", 1.0, 188.0, []),  # the looped node: all iterations
        ("build_ubuntu_3_12", "stage", 0, 0, 1, "Success", 1.0, 61.0, []),
        ("build_macos_3_12", "stage", 0, 1, 1, "Failed", 3.0, 93.0, []),
        ("build_macos_3_12", "stage", 0, 1, 2, "Success", 103.0, 188.0, []),
        ("docs", "stage", 1, None, 1, "Success", 29.0, 48.0, ["lint"]),
        ("unit", "stage", 1, None, 1, "Skipped", 93.0, 93.0, ["build"]),
        ("unit", "stage", 1, None, 2, "Success", 190.0, 248.0, ["build"]),
        ("integration", "stage", 1, None, 1, "Skipped", 93.0, 93.0, ["build", "lint"]),
        ("integration", "stage", 1, None, 2, "Success", 193.0, 298.0, ["build", "lint"]),
        ("deploy", "stage", 2, None, 1, "Skipped", 93.0, 93.0, ["unit", "integration", "docs"]),
        ("deploy", "stage", 2, None, 2, "Success", 300.0, 318.0, ["unit", "integration", "docs"]),
    ]
    parents = dict(
        zip(run["fqn"].map(short), run["parent"].map(lambda p: short(p) if isinstance(p, str) else p))
    )
    assert parents["build_macos_3_12"] == "build" and parents["build"] == "pipeline"
    columns = zip(run["fqn"], run["attempt"], run["worker"], run["queued_s"], run["name"], run["action"])
    by = {(short(f), a): (w, q, n, act) for f, a, w, q, n, act in columns}
    # queue = started_at − created_at: macOS attempt 2 created at 100, started at 105
    assert by[("build_macos_3_12", 2)][:3] == ("mac-2", 5.0, "Build (macos, 3.12)")
    assert by[("build_macos_3_12", 1)][3] == "Rerun" and pd.isna(by[("build_macos_3_12", 2)][3])
    assert by[("deploy", 2)][2] == "Deploy to main"
    head = run.iloc[0]
    assert (head["run_id"], head["source"], head["pipeline"], head["run_number"]) == (
        "42",
        "github",
        ".github/workflows/ci.yml",
        17,
    )
    assert (head["commit"], head["branch"], head["trigger"], head["url"]) == (
        "abc123",
        "main",
        "push",
        "https://github.com/o/r/actions/runs/42",
    )
    assert head["created"] == pd.Timestamp("2026-01-05T10:00:00Z") and head["queued_s"] == 2.0
    assert set(run["run_id"]) == {"42"}


def test_job_steps_are_child_rows_one_set_per_attempt():
    run = load_github_run(JOBS, workflow=WORKFLOW, run=RUN)
    steps = run[(run["kind"] == "step") & (run["stage"] == "build_macos_3_12")]
    assert table(steps, "attempt", "status", "start_s", "end_s", "after") == [
        ("build_macos_3_12.Set_up_job", 1, "Success", 3.0, 6.0, []),
        ("build_macos_3_12.Set_up_job", 2, "Success", 103.0, 105.0, []),
        ("build_macos_3_12.Run_make", 1, "Failed", 6.0, 93.0, ["build_macos_3_12.Set_up_job"]),
        ("build_macos_3_12.Run_make", 2, "Success", 105.0, 188.0, ["build_macos_3_12.Set_up_job"]),
    ]
    assert set(steps["iteration"]) == {1}


def test_critical_path_follows_needs_through_the_rerun():
    """From the end (deploy, 320) back: deploy waited for integration (300; unit ended 250,
    docs 50); integration waited for build (190; lint ended 30); build ended with its macOS
    iteration's attempt 2, re-run after attempt 1 failed (the re-run waited for attempt 1, not
    for an unrelated job). Each job's steps are in series."""
    path = critical_path(load_github_run(JOBS, workflow=WORKFLOW, run=RUN))
    assert [(short(f), a) for f, a in zip(path["fqn"], path["attempt"])] == [
        ("build_macos_3_12.Set_up_job", 1),
        ("build_macos_3_12.Run_make", 1),
        ("build_macos_3_12.Set_up_job", 2),
        ("build_macos_3_12.Run_make", 2),
        ("integration.Set_up_job", 2),
        ("integration.Run_integration", 2),
        ("deploy.Set_up_job", 2),
        ("deploy.Deploy", 2),
    ]
    assert nbp.critical_path is not None  # the public name exists


def test_gh_run_view_json_loads_the_same_rows():
    """``gh run view 42 --json jobs,databaseId,headSha,…`` (camelCase, no created_at/runner)."""
    gh = {
        "databaseId": 42,
        "headSha": "abc123",
        "headBranch": "main",
        "event": "push",
        "number": 17,
        "attempt": 2,
        "conclusion": "success",
        "jobs": [
            {
                "databaseId": j["id"],
                "name": j["name"],
                "status": j["status"],
                "conclusion": j["conclusion"],
                "startedAt": j["started_at"],
                "completedAt": j["completed_at"],
                "run_attempt": j["run_attempt"],
                "steps": [
                    {
                        "name": s["name"],
                        "number": s["number"],
                        "status": s["status"],
                        "conclusion": s["conclusion"],
                        "startedAt": s["started_at"],
                        "completedAt": s["completed_at"],
                    }
                    for s in j["steps"]
                ],
            }
            for j in JOBS["jobs"]
        ],
    }
    api = load_github_run(JOBS, workflow=WORKFLOW, run=RUN)
    cli = load_github_run(json.dumps(gh), workflow=WORKFLOW)
    cols = ["fqn", "attempt", "status", "start_s", "end_s", "after", "run_id", "commit", "run_number"]
    pd.testing.assert_frame_equal(cli[cols], api[cols])
    assert cli["worker"].isna().all() and cli["queued_s"].iloc[1:].isna().all()


def test_without_the_workflow_jobs_are_nodes_with_unknown_edges():
    run = load_github_run(JOBS, run=RUN)
    jobs = run[run["kind"] == "stage"]
    assert jobs["after"].isna().all() and len(jobs) == 11
    assert "pipeline.stages.Build_macos_3_12" in set(run["fqn"])


def test_not_a_run_json_is_refused_saying_what_to_give():
    with pytest.raises(
        HistoryError,
        match=r"not the jobs of a GitHub Actions run \(found total_count, "
        r"workflow_runs\).*runs/\{run_id\}/jobs",
    ):
        load_github_run({"total_count": 0, "workflow_runs": []}, workflow=WORKFLOW)
    with pytest.raises(HistoryError, match=r"jobs\[0\] is not a job"):
        load_github_run({"jobs": ["lint"]})


def test_a_job_missing_from_the_workflow_names_the_run_and_the_job():
    jobs = {"jobs": [*JOBS["jobs"], job(12, "Publish", 2, "success", 320, 321, 330)]}
    message = r"run 42: job 'Publish' is not in the workflow \(jobs: lint, build, docs.*head_sha"
    with pytest.raises(HistoryError, match=message):
        load_github_run(jobs, workflow=WORKFLOW, run=RUN)


def test_a_cycle_in_needs_names_the_run_and_the_jobs():
    cyclic = WORKFLOW.replace("needs: lint\n", "needs: deploy\n")
    with pytest.raises(
        HistoryError,
        match=r"run 42: the workflow: the needs of the workflow form a cycle: "
        r"docs → deploy → docs",
    ):
        load_github_run(JOBS, workflow=cyclic, run=RUN)
    unknown = WORKFLOW.replace("needs: lint\n", "needs: lnt\n")
    with pytest.raises(
        HistoryError, match=r"run 42: the workflow: job 'docs' needs 'lnt', which the workflow"
    ):
        load_github_run(JOBS, workflow=unknown, run=RUN)


def test_a_reusable_workflows_jobs_and_a_job_that_never_ran():
    """``call / build`` and ``call / test`` are the callee's jobs of the caller job ``call``
    (iterations of it); ``publish`` is in the workflow but not in the run: a NotStarted row (D6)."""
    workflow = """
jobs:
  call:
    uses: ./.github/workflows/reusable.yml
  publish:
    needs: call
    runs-on: ubuntu-latest
"""
    jobs = {
        "jobs": [job(1, "call / build", 1, "success", 0, 1, 11), job(2, "call / test", 1, "failure", 0, 2, 7)]
    }
    run = load_github_run(jobs, workflow=workflow, run_id="5")
    assert table(run, "kind", "iteration", "status", "start_s", "end_s", "after", "reason") == [
        ("pipeline", "pipeline", None, "Failed", 0.0, 10.0, [], None),
        ("call", "stage", None, "Failed", 0.0, 10.0, [], None),
        ("call_build", "stage", 0, "Success", 0.0, 10.0, [], None),
        ("call_test", "stage", 1, "Failed", 1.0, 6.0, [], None),
        ("publish", "stage", None, "NotStarted", None, None, ["call"], "the run has no job for it"),
    ]


@pytest.mark.parametrize("suffix", [".csv", ".json", ".parquet"])
def test_a_loaded_run_round_trips_through_the_trace_files(tmp_path, suffix):
    """``after`` and the run columns (issue 26) come back with their dtypes from every format."""
    run = load_github_run(JOBS, workflow=WORKFLOW, run=RUN)
    path = tmp_path / f"run{suffix}"
    run.pipeline.save(path)
    back = nbp.read_trace(path)
    pd.testing.assert_frame_equal(back, run, check_like=False)


def _with(change):
    jobs = json.loads(json.dumps(JOBS))
    change(jobs["jobs"][0])  # the job 'lint'
    return jobs


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda j: j.update(id="abc"), r"run 42: job 'lint' id: 'abc' is not a whole number"),
        (lambda j: j.update(run_attempt="x"), r"run 42: job 'lint' run_attempt: 'x' is not a whole number"),
        (lambda j: j.update(run_attempt=10**30), r"job 'lint' run_attempt: 1000\d+ is not from 1 to 10,000"),
        (lambda j: j.update(steps={"a": 1}), r"run 42: job 'lint': steps is dict, not a list of steps"),
        (
            lambda j: j.update(steps=[{"name": "a", "number": "x"}, {"name": "b", "number": 2}]),
            r"run 42: job 'lint' step 'a' number: 'x' is not a whole number",
        ),
        (lambda j: j.update(started_at=float("nan")), r"run 42: job 'lint' started_at: nan is not a time"),
        (
            lambda j: j.update(completed_at="9999-12-31T23:59:59Z"),
            r"job 'lint' completed_at: '9999-12-31T23:59:59Z' is outside the times a trace holds \(1677 to",
        ),
        (
            lambda j: j.update(started_at=10**20),
            r"job 'lint' started_at: 10+ is outside the times a trace holds",
        ),
    ],
    ids=["id", "attempt", "attempt-huge", "steps", "step-number", "nan-time", "year-9999", "epoch-huge"],
)
def test_a_damaged_job_field_is_a_history_error_naming_the_run_job_and_field(change, message):
    """Before: ValueError, OverflowError, AttributeError or TypeError out of the loader — or,
    for a time past 2262, a run loaded with wrapped-around times and a RuntimeWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(HistoryError, match=message):
            load_github_run(_with(change), workflow=WORKFLOW, run=RUN)


def test_needs_that_are_neither_an_id_nor_a_list_are_refused_naming_the_job():
    with pytest.raises(HistoryError, match=r"run 42: the workflow: job 'docs': needs is a job id or a list"):
        load_github_run(JOBS, workflow=WORKFLOW.replace("needs: lint", "needs: {lint: 1}"), run=RUN)
    with pytest.raises(HistoryError, match=r"run 42: the workflow: job 'unit' needs '7', which the workflow"):
        load_github_run(JOBS, workflow=WORKFLOW.replace("needs: [build]", "needs: 7"), run=RUN)


def test_a_job_name_of_a_million_characters_is_cut_in_the_message():
    jobs = _with(lambda j: j.update(name="y" * 1_000_000))
    with pytest.raises(
        HistoryError, match=r"run 42: job 'y+…\[\d+ characters\]…y+' is not in the workflow"
    ) as info:
        load_github_run(jobs, workflow=WORKFLOW, run=RUN)
    assert len(str(info.value)) < 500


def test_a_long_job_name_that_fits_no_expression_name_is_refused_at_once():
    """``name: ${{ a }}-${{ b }}-${{ c }}-${{ d }}!`` was matched with a regular expression
    of four lazy groups: a 400-character API name of dashes that does not fit took 2 s here
    (with five expressions, over a minute: the kernel hung). Now linear: milliseconds."""
    workflow = (
        'jobs:\n  build:\n    name: "${{ matrix.a }}-${{ matrix.b }}-${{ matrix.c }}-${{ matrix.d }}!"\n'
    )
    jobs = {"jobs": [{"id": 1, "name": "-".join(["a"] * 200), "conclusion": "success", "steps": []}]}
    started = time.monotonic()
    with pytest.raises(HistoryError, match=r"run 1: job 'a-a-a.*' is not in the workflow"):
        load_github_run(jobs, workflow=workflow, run_id="1")
    assert time.monotonic() - started < 0.5
    jobs["jobs"][0]["name"] = "ubuntu-3.12-x64-fast!"  # and a name that fits is still its job
    assert "pipeline.stages.build" in set(load_github_run(jobs, workflow=workflow, run_id="1")["fqn"])


def test_a_long_matrix_job_name_is_matched_in_linear_time():
    """``(.*) \\((.*)\\)`` backtracked quadratically on a name that does not end with ')': one
    of 24,000 characters of ' (' took about 2 s here (14 s for 80,000); the matrix split is
    the same (at the last ' (')."""
    jobs = _with(lambda j: j.update(name=" (" * 12_000))
    started = time.monotonic()
    with pytest.raises(HistoryError, match=r"is not in the workflow"):
        load_github_run(jobs, workflow=WORKFLOW, run=RUN)
    assert time.monotonic() - started < 1


def test_a_workflow_job_name_of_many_unclosed_expressions_is_read_in_linear_time():
    """``name: ${{${{${{…`` (20,000 times, never closed): finding the expressions with a lazy
    regular expression took about 5 s here. It has none: the name is a plain one."""
    workflow = {"jobs": {"build": {"name": "${{" * 20_000, "runs-on": "x"}}}
    started = time.monotonic()
    with pytest.raises(HistoryError, match=r"run 42: job 'lint' is not in the workflow"):
        load_github_run(JOBS, workflow=workflow, run=RUN)
    assert time.monotonic() - started < 1


def test_thousands_of_steps_of_one_name_get_their_ids_in_linear_time():
    """6,000 steps all named ``s`` (``s``, ``s_2`` … ``s_6000``): each id was found by trying
    ``s_2``, ``s_3``… from the start — 18 million look-ups, about 3 s here (26 s for 20,000)."""
    jobs = _with(
        lambda j: j.update(steps=[{"name": "s", "number": i, "conclusion": "success"} for i in range(6000)])
    )
    started = time.monotonic()
    rows = load_github_run(jobs, workflow=WORKFLOW, run=RUN)
    assert time.monotonic() - started < 1.5
    steps = rows[rows["parent"] == "pipeline.stages.lint"]["step"]
    assert list(steps[:3]) == ["s", "s_2", "s_3"] and steps.iloc[-1] == "s_6000" and steps.is_unique


def test_gos_zero_time_from_gh_is_a_time_not_set():
    """``gh run view --json jobs`` writes a time not set as Go's zero time,
    ``0001-01-01T00:00:00Z``. Before: taken as a time 2,000 years ago, whose nanoseconds
    wrapped around (a RuntimeWarning, and a job 'starting' in 1754); since the 1677–2262
    bound, it would refuse the run. Now it is a time not set, like null."""
    zero = "0001-01-01T00:00:00Z"
    jobs = _with(lambda j: j.update(conclusion="skipped", started_at=zero, completed_at=zero, steps=[]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = load_github_run(jobs, workflow=WORKFLOW, run=RUN)
    lint = rows[rows["fqn"] == "pipeline.stages.lint"].iloc[0]
    assert (str(lint["status"]), lint["start"], lint["end"]) == ("Skipped", pd.NaT, pd.NaT)
