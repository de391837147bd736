"""Make the synthetic history that ``notebooks/13-history.ipynb`` reads (nothing is fetched).

Three pipelines, written in the shapes the APIs return (``../shared/CI_RUNS.md``) and loaded
by the same loaders a real fetch uses, so the shipped Parquet dataset is what a fetch would
have kept:

- GitHub Actions ``octo/shop`` workflow ``ci.yml`` (120 runs, every 12 h from 2026-01-05):
  lint, a matrix build (ubuntu, macos), docs, unit, integration, deploy; ``needs`` form a DAG
  that no series-parallel layout expresses (docs needs lint, integration needs build and lint);
- GitLab ``shop/web`` (80 pipelines): stages build → test → deploy, ``pages`` needs only
  ``compile`` (it skips the test stage), ``rspec`` runs as 2 parallel jobs;
- Harness ``payments`` (60 runs) as the Pipeline Insights "Step Executions" CSV export.

What the data holds, to be found again in the notebook:

- **drift**: every duration grows by 0.25 % a day (about +15 % over two months);
- **a regression** on ``REGRESSION`` (2026-02-16): GitHub ``integration`` tests take 1.45×,
  GitLab ``rspec`` 1.3×, Harness ``rollout`` 1.5×;
- **a flaky job**: GitHub ``unit`` fails 15 % of runs and is re-run (run attempt 2); GitLab
  ``lint`` fails 20 % and is retried; Harness ``unit_tests`` fails 10 % and is retried.

Usage::

    python scripts/make_synthetic_history.py [OUT]      # default: notebooks/data

writes ``OUT/history/`` (the Parquet dataset: ``nbp.read_history(OUT)``), and one sample run
per source in ``OUT/history-samples/`` (``github-run.json`` + ``ci.yml``, ``gitlab-*.json``,
``harness-insights.csv``). The same seed gives the same files.
"""

from __future__ import annotations

import json
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from notebook_pipelines.formats.github import load_github_run
from notebook_pipelines.formats.gitlab import load_gitlab_pipeline
from notebook_pipelines.formats.history import concat_runs
from notebook_pipelines.formats.history_store import write_part
from notebook_pipelines.formats.history_tools import load_harness_insights

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
REGRESSION = datetime(2026, 2, 16, tzinfo=UTC)
DRIFT_PER_DAY = 0.0025
SEED = 26

WORKFLOW = """\
name: CI
on: [push, pull_request]
jobs:
  lint:
    runs-on: ubuntu-latest
    steps: [{uses: actions/checkout@v4}, {run: ruff check .}]
  build:
    name: Build
    strategy:
      matrix:
        os: [ubuntu, macos]
    runs-on: ${{ matrix.os }}-latest
    steps: [{uses: actions/checkout@v4}, {run: make}]
  docs:
    needs: lint
    runs-on: ubuntu-latest
    steps: [{run: make docs}]
  unit:
    needs: build
    runs-on: ubuntu-latest
    steps: [{run: make test}]
  integration:
    name: Integration
    needs: [build, lint]
    runs-on: ubuntu-latest
    steps: [{run: make integration}]
  deploy:
    name: Deploy to ${{ github.ref_name }}
    needs: [unit, integration, docs]
    runs-on: ubuntu-latest
    steps: [{run: make deploy}]
"""
# job → (API name, needs, [(step name, base seconds)], runner prefix, mean queue s)
GITHUB_JOBS = {
    "lint": (
        "lint",
        [],
        [("Set up job", 3), ("Run actions/checkout@v4", 4), ("Run ruff check .", 25)],
        "gh",
        6,
    ),
    "build_ubuntu": (
        "Build (ubuntu)",
        [],
        [("Set up job", 4), ("Run actions/checkout@v4", 5), ("Run make", 240)],
        "gh",
        6,
    ),
    "build_macos": (
        "Build (macos)",
        [],
        [("Set up job", 8), ("Run actions/checkout@v4", 9), ("Run make", 420)],
        "mac",
        40,
    ),
    "docs": ("docs", ["lint"], [("Set up job", 3), ("Run make docs", 60)], "gh", 6),
    "unit": ("unit", ["build_ubuntu", "build_macos"], [("Set up job", 3), ("Run make test", 180)], "gh", 6),
    "integration": (
        "Integration",
        ["build_ubuntu", "build_macos", "lint"],
        [("Set up job", 4), ("Run make integration", 300)],
        "gh",
        6,
    ),
    "deploy": (
        "Deploy to main",
        ["unit", "integration", "docs"],
        [("Set up job", 3), ("Run make deploy", 45)],
        "gh",
        6,
    ),
}


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Durations:
    """Base seconds × drift × regression × noise, for a run created at ``when``."""

    def __init__(self, rng: np.random.Generator, when: datetime, slower: dict[str, float]):
        self.rng, self.when = rng, when
        self.factor = 1 + DRIFT_PER_DAY * (when - START).total_seconds() / 86400
        self.slower = slower if when >= REGRESSION else {}

    def __call__(self, base: float, name: str = "") -> float:
        noise = float(self.rng.lognormal(0.0, 0.08))
        return max(1.0, round(base * self.factor * self.slower.get(name, 1.0) * noise))


def github_run(rng: np.random.Generator, number: int) -> tuple[dict, dict]:
    """One workflow run: (the run object, the jobs answer with every attempt)."""
    created = START + timedelta(hours=12 * number)
    took = Durations(rng, created, {"Run make integration": 1.45})
    event = str(rng.choice(["push", "push", "push", "pull_request", "schedule"]))
    ends: dict[str, datetime] = {}
    jobs, ids = [], iter(range(number * 100, number * 100 + 100))
    flaky = rng.random() < 0.15

    def job(key: str, attempt: int, ready: datetime, fail: bool = False, skipped: bool = False) -> dict:
        name, _, steps, runner, queue = GITHUB_JOBS[key]

        def record(conclusion: str, start: datetime, end: datetime, runner: str | None, out: list) -> dict:
            jobs.append(
                {
                    "id": next(ids),
                    "run_id": 9000 + number,
                    "run_attempt": attempt,
                    "name": name,
                    "status": "completed",
                    "conclusion": conclusion,
                    "created_at": iso(ready),
                    "started_at": iso(start),
                    "completed_at": iso(end),
                    "runner_name": runner,
                    "head_sha": sha,
                    "steps": out,
                }
            )
            return jobs[-1]

        if skipped:
            return record("skipped", ready, ready, None, [])
        start = ready + timedelta(seconds=round(float(rng.exponential(queue)) + 1))
        t, out = start, []
        for i, (step, base) in enumerate(steps, start=1):
            seconds = took(base, step) * (rng.uniform(0.2, 0.9) if fail and i == len(steps) else 1)
            end = t + timedelta(seconds=seconds)
            out.append(
                {
                    "name": step,
                    "status": "completed",
                    "number": i,
                    "started_at": iso(t),
                    "completed_at": iso(end),
                    "conclusion": "failure" if fail and i == len(steps) else "success",
                }
            )
            t = end
        ends[key] = t
        return record("failure" if fail else "success", start, t, f"{runner}-{int(rng.integers(1, 40))}", out)

    sha = "".join(rng.choice(list("0123456789abcdef"), 40))
    order = ["lint", "build_ubuntu", "build_macos", "docs", "unit", "integration", "deploy"]
    for key in order:
        needs = GITHUB_JOBS[key][1]
        ready = max([ends[n] for n in needs], default=created)
        if key == "unit" and flaky:
            job(key, 1, ready, fail=True)
        elif key == "deploy" and flaky:
            job(key, 1, ends["unit"], skipped=True)
        else:
            job(key, 1, ready)
    attempt = 1
    if flaky:  # "re-run failed jobs": unit again, then deploy
        attempt = 2
        rerun = ends["unit"] + timedelta(seconds=int(rng.integers(60, 900)))
        job("unit", 2, rerun)
        job("deploy", 2, max(ends["unit"], ends["integration"], ends["docs"]))
    run = {
        "id": 9000 + number,
        "run_number": number + 1,
        "run_attempt": attempt,
        "name": "CI",
        "path": ".github/workflows/ci.yml",
        "head_branch": "main" if event != "pull_request" else f"feature-{number}",
        "head_sha": sha,
        "event": event,
        "status": "completed",
        "conclusion": "success",
        "created_at": iso(created),
        "run_started_at": iso(created if attempt == 1 else rerun),
        "html_url": f"https://github.com/octo/shop/actions/runs/{9000 + number}",
    }
    return run, {"total_count": len(jobs), "jobs": jobs}


# GitLab: job → (stage, needs or None for "the previous stage", base seconds, flaky share)
GITLAB_JOBS = {
    "compile": ("build", None, 60, 0.0),
    "docs": ("build", None, 20, 0.0),
    "unit": ("test", None, 120, 0.0),
    "rspec 1/2": ("test", None, 150, 0.0),
    "rspec 2/2": ("test", None, 140, 0.0),
    "lint": ("test", None, 30, 0.2),
    "pages": ("deploy", ["compile"], 40, 0.0),
    "release": ("deploy", None, 30, 0.0),
}
GITLAB_STAGES = ["build", "test", "deploy"]


def gitlab_pipeline(rng: np.random.Generator, number: int) -> tuple[dict, list, dict]:
    """One pipeline: (the pipeline object, its jobs with the retried ones, the GraphQL needs)."""
    created = START + timedelta(hours=18 * number, minutes=30)
    took = Durations(rng, created, {"rspec": 1.3})
    queued = round(float(rng.exponential(3)), 1)
    begin = created + timedelta(seconds=queued)
    ends: dict[str, datetime] = {}
    jobs, ids = [], iter(range(50000 + number * 20, 50000 + number * 20 + 20))
    previous: dict[str, list[str]] = {}
    for k, stage in enumerate(GITLAB_STAGES):
        previous[stage] = (
            [n for n, spec in GITLAB_JOBS.items() if spec[0] == GITLAB_STAGES[k - 1]] if k else []
        )
    nodes = []
    for name, (stage, needs, base, flaky) in GITLAB_JOBS.items():
        waited = needs if needs is not None else previous[stage]
        ready = max([ends[n] for n in waited], default=begin)
        attempts = 2 if rng.random() < flaky else 1
        for attempt in range(1, attempts + 1):
            wait = round(float(rng.exponential(4)), 1)
            start = ready + timedelta(seconds=wait)
            seconds = took(base, name.split(" ")[0]) * (0.4 if attempt < attempts else 1)
            end = start + timedelta(seconds=seconds)
            jobs.append(
                {
                    "id": next(ids),
                    "name": name,
                    "stage": stage,
                    "status": "failed" if attempt < attempts else "success",
                    "created_at": iso(ready),
                    "started_at": iso(start),
                    "finished_at": iso(end),
                    "duration": seconds,
                    "queued_duration": wait,
                    "allow_failure": False,
                    "failure_reason": "script_failure" if attempt < attempts else None,
                    "runner": {"id": 7, "description": f"shared-runner-{int(rng.integers(1, 9))}"},
                    "web_url": f"https://gitlab.example.com/shop/web/-/jobs/{50000 + number * 20}",
                }
            )
            ready = end
        ends[name] = ready
        nodes.append(
            {
                "name": name,
                "stage": {"name": stage},
                "needs": {"nodes": [{"name": n} for n in needs or ()]},
                "previousStageJobsOrNeeds": {"nodes": [{"name": n} for n in waited]},
            }
        )
    finished = max(ends.values())
    pipeline = {
        "id": 700 + number,
        "iid": number + 1,
        "project_id": 42,
        "status": "success",
        "source": str(rng.choice(["push", "push", "merge_request_event", "schedule"])),
        "ref": "main",
        "sha": "".join(rng.choice(list("0123456789abcdef"), 40)),
        "created_at": iso(created),
        "updated_at": iso(finished),
        "started_at": iso(begin),
        "finished_at": iso(finished),
        "duration": (finished - begin).total_seconds(),
        "queued_duration": queued,
        "web_url": f"https://gitlab.example.com/shop/web/-/pipelines/{700 + number}",
    }
    graphql = {"data": {"project": {"pipeline": {"jobs": {"nodes": nodes}}}}}
    return pipeline, sorted(jobs, key=lambda j: -j["id"]), graphql


# Harness Insights: (stage, step, base seconds, flaky share)
HARNESS_STEPS = [
    ("build", "checkout", 15, 0.0),
    ("build", "compile", 180, 0.0),
    ("build", "unit_tests", 240, 0.1),
    ("deploy", "rollout", 120, 0.0),
    ("deploy", "smoke", 45, 0.0),
]


def harness_insights(rng: np.random.Generator, runs: int) -> str:
    """The "Step Executions" export of ``runs`` runs of ``payments`` (CSV text)."""
    lines = [
        "Plan Execution Id,Pipeline Identifier,Stage Identifier,Step Identifier,Status,Start Time,End Time,"
        "Duration (s)"
    ]
    for number in range(runs):
        created = START + timedelta(days=number, hours=14)
        took = Durations(rng, created, {"rollout": 1.5})
        t = created + timedelta(seconds=round(float(rng.exponential(5)), 0))
        run = f"pay{number:04d}x{int(rng.integers(1e6, 1e7))}"
        for stage, step, base, flaky in HARNESS_STEPS:
            tries = 2 if rng.random() < flaky else 1
            for attempt in range(1, tries + 1):
                seconds = took(base, step) * (0.5 if attempt < tries else 1)
                end = t + timedelta(seconds=seconds)
                status = "Failed" if attempt < tries else "Success"
                lines.append(
                    f"{run},payments,{stage},{step},{status},{t:%Y-%m-%d %H:%M:%S},{end:%Y-%m-%d %H:%M:%S},"
                    f"{seconds:g}"
                )
                t = end + timedelta(seconds=10 if attempt < tries else 1)  # the retry interval, the next step
    return "\n".join(lines) + "\n"


def main(out: Path) -> None:
    rng = np.random.default_rng(SEED)
    samples = out / "history-samples"
    dataset = out / "history"
    if dataset.exists():
        shutil.rmtree(dataset)
    samples.mkdir(parents=True, exist_ok=True)
    frames = []
    sampled = False
    for number in range(120):
        run, jobs = github_run(rng, number)
        frames.append(load_github_run(jobs, workflow=WORKFLOW, run=run, pipeline="octo/shop/ci.yml"))
        if number >= 30 and run["run_attempt"] == 2 and not sampled:  # the sample: a flaky unit test re-run
            (samples / "github-run.json").write_text(json.dumps({"run": run, **jobs}, indent=1) + "\n")
            sampled = True
    (samples / "ci.yml").write_text(WORKFLOW)
    for number in range(80):
        pipeline, jobs, graphql = gitlab_pipeline(rng, number)
        frames.append(load_gitlab_pipeline(pipeline, jobs, graphql, project="shop/web"))
        if number == 5:
            (samples / "gitlab-pipeline.json").write_text(json.dumps(pipeline, indent=1) + "\n")
            (samples / "gitlab-jobs.json").write_text(json.dumps(jobs, indent=1) + "\n")
            (samples / "gitlab-graphql.json").write_text(json.dumps(graphql, indent=1) + "\n")
    csv = harness_insights(rng, 60)
    (samples / "harness-insights.csv").write_text(csv)
    frames.append(load_harness_insights(samples / "harness-insights.csv"))
    history = concat_runs(frames)
    for path in write_part(history, out):  # fixed names: the same files each time
        path.rename(path.with_name("part-0.parquet"))
    runs = history["run_id"].nunique()
    print(f"wrote {runs} runs ({len(history)} rows) to {dataset} and samples to {samples}")


if __name__ == "__main__":
    main(
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "notebooks" / "data"
    )
