"""GitLab CI pipelines → the trace schema (a history's rows for one pipeline).

Mapping (``../shared/CI_RUNS.md``): a pipeline is the run (``run_id`` = its ``id``,
``run_number`` = ``iid``, ``commit`` = ``sha``, ``branch`` = ``ref``, ``trigger`` =
``source``); a GitLab stage is a stage ``pipeline.stages.<stage>`` (``block`` = its place in
the stage order); a job is a step of its stage; parallel jobs (``rspec 1/3``) and
``parallel:matrix`` jobs (``build: [linux, amd64]``) are iterations of one looped step;
retried jobs (``include_retried=true`` lists them beside their retry) are earlier
``attempt``\\ s (with ``action`` ``"Rerun"``); ``queued_duration`` is ``queued_s``; the runner's
description is the ``worker``; a failed job with ``allow_failure`` is ``IgnoreFailed``.

Edges: a job waits for the whole previous stage unless it has ``needs`` (``needs: []``: it
starts at once). REST does not give ``needs``: pass them as ``needs=`` — the GraphQL answer
(``jobs { nodes { name needs {…} previousStageJobsOrNeeds {…} } }``, whose
``previousStageJobsOrNeeds`` says exactly what each job waited for) or a mapping
``{job name: [names]}`` (a job missing from it waits for the previous stage).

>>> pipeline = {"id": 9, "iid": 3, "ref": "main", "sha": "f00", "source": "push",
...             "created_at": "2026-01-05T10:00:00Z", "queued_duration": 1}
>>> def job(id, name, stage, start, end):
...     return {"id": id, "name": name, "stage": stage, "status": "success",
...             "started_at": f"2026-01-05T10:00:{start:02d}Z", "finished_at": f"2026-01-05T10:00:{end:02d}Z"}
>>> jobs = [job(1, "compile", "build", 1, 11), job(2, "docs", "build", 1, 3),
...         job(3, "unit", "test", 4, 9), job(4, "e2e", "test", 11, 20)]
>>> run = load_gitlab_pipeline(pipeline, jobs, needs={"unit": ["docs"]})
>>> steps = run[run.kind == "step"]
>>> for step, start, end, after in zip(steps.step, steps.start_s, steps.end_s, steps.after):
...     print(step, start, end, [f.rsplit(".", 1)[-1] for f in after])
compile 0.0 10.0 []
docs 0.0 2.0 []
unit 3.0 8.0 ['docs']
e2e 10.0 19.0 ['compile', 'docs']
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import excerpt
from .history import HistoryError, first_queued, ident, read_json, run_frame, span, stamp_ns, whole, worst

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["STATUS", "load_gitlab_pipeline", "needs_from_graphql"]

#: a GitLab job or pipeline status → trace status
STATUS = {
    "success": "Success",
    "failed": "Failed",
    "canceled": "Aborted",
    "canceling": "Aborted",
    "skipped": "Skipped",
    "manual": "NotStarted",
    "scheduled": "NotStarted",
    "created": "Queued",
    "waiting_for_resource": "ResourceWaiting",
    "preparing": "Queued",
    "pending": "Queued",
    "running": "Running",
}
_PARALLEL = re.compile(r"^(.*) (\d+)/(\d+)$")


def _base(name: str) -> tuple[str, str | None]:
    """A job name's node and iteration label: ``rspec 1/3`` → (``rspec``, ``1/3``),
    ``build: [linux, amd64]`` → (``build``, ``linux, amd64``), else (name, None)."""
    m = _PARALLEL.match(name)
    if m:
        return m.group(1), f"{m.group(2)}/{m.group(3)}"
    # ``base: [values]``, split at the last ": [" (what ``^(.*): \[(.*)\]$`` finds, without its
    # quadratic backtracking: 16 s for a name of 120,000 characters)
    at = name.rfind(": [", 0, len(name) - 1)
    if name.endswith("]") and at >= 0 and "\n" not in name:
        return name[:at], name[at + 3 : -1]
    return name, None


def needs_from_graphql(doc: Any, label: str = "the GraphQL answer") -> dict[str, list[str] | None]:
    """``{job name: [names it waited for]}`` from the GraphQL answer (``data.project.pipeline.
    jobs.nodes``, or any object holding ``jobs.nodes``); ``previousStageJobsOrNeeds`` when
    present, else ``needs`` (an empty ``needs`` then means "the previous stage": None)."""
    node = doc
    for key in ("data", "project", "pipeline"):
        if isinstance(node, Mapping) and isinstance(node.get(key), Mapping):
            node = node[key]
    jobs = node.get("jobs") if isinstance(node, Mapping) else None
    nodes = jobs.get("nodes") if isinstance(jobs, Mapping) else jobs
    if not isinstance(nodes, list):
        raise HistoryError(f"{label} has no jobs {{ nodes }}: give the answer of the pipeline's jobs query")
    out: dict[str, list[str] | None] = {}
    for job in nodes:
        if not isinstance(job, Mapping) or "name" not in job:
            continue
        waited = job.get("previousStageJobsOrNeeds")
        if isinstance(waited, Mapping) and isinstance(waited.get("nodes") or [], list):
            out[str(job["name"])] = [
                str(n["name"]) for n in waited.get("nodes") or () if isinstance(n, Mapping) and "name" in n
            ]
            continue
        needs = job.get("needs")
        listed = needs.get("nodes") if isinstance(needs, Mapping) else needs  # {nodes: [...]} or [...]
        names = [str(n["name"]) for n in listed or () if isinstance(n, Mapping) and "name" in n]
        out[str(job["name"])] = names or None
    return out


def load_gitlab_pipeline(
    pipeline_json: Any,
    jobs_json: Any,
    needs: Any = None,
    *,
    stages: list[str] | None = None,
    project: str | None = None,
    run_id: str | None = None,
) -> pd.DataFrame:
    """One GitLab pipeline as history rows (the trace schema plus the run columns).

    Args:
        pipeline_json: the pipeline (``GET /projects/{id}/pipelines/{pipeline_id}``): a path,
            JSON text or the parsed object.
        jobs_json: its jobs (``GET …/pipelines/{pipeline_id}/jobs?include_retried=true``, the
            pages joined): a list, or a path / JSON text of one.
        needs: the GraphQL answer, or ``{job name: [needed job names]}`` (see the module).
            Without it every job waits for the previous stage.
        stages: the stage order (default: the order the jobs were created in: GitLab creates a
            pipeline's jobs stage by stage).
        project: the ``pipeline`` column (default: the pipeline's ``project_id``).
        run_id: the ``run_id`` column (default: the pipeline's ``id``).

    Raises:
        HistoryError: not a pipeline or not jobs; ``needs`` naming a job the pipeline does not
            have, or forming a cycle (the message names the pipeline and the job).
    """
    pipe, jobs, needs, rid = _read_inputs(pipeline_json, jobs_json, needs, run_id)
    label = f"pipeline {rid}"
    ids = [whole(j.get("id"), f"{label}: job {excerpt(str(j['name']), 80)!r} id", 0) for j in jobs]
    jobs = [jobs[i] for i in sorted(range(len(jobs)), key=ids.__getitem__)]
    order = list(stages or dict.fromkeys(str(j["stage"]) for j in jobs))
    missing = {str(j["stage"]) for j in jobs} - set(order)
    if missing:
        raise HistoryError(f"{label}: the jobs' stage(s) {', '.join(sorted(missing))} are not in stages=")
    graph = _JobGraph(jobs, needs, order, label)
    rows: list[dict] = []
    for k, stage in enumerate(order):
        rows += graph.stage_rows(k, stage)
    created = stamp_ns(pipe.get("created_at"), f"{label}: created_at")
    rows.insert(0, _pipeline_row(pipe, rows, label))
    return run_frame(
        rows,
        {
            "run_id": rid,
            "source": "gitlab",
            "pipeline": project or str(pipe.get("project_id") or "project"),
            "run_number": pipe.get("iid"),
            "commit": pipe.get("sha"),
            "branch": pipe.get("ref"),
            "trigger": pipe.get("source"),
            "created_ns": created,
            "url": pipe.get("web_url"),
        },
    )


def _read_inputs(pipeline_json: Any, jobs_json: Any, needs: Any, run_id: str | None) -> tuple:
    """The pipeline, its jobs and the needs (``{job name: [names]}``) read and checked, and the run id."""
    pipe, plabel = read_json(pipeline_json, "the pipeline JSON")
    if not isinstance(pipe, Mapping) or not ("id" in pipe and ("sha" in pipe or "ref" in pipe)):
        raise HistoryError(
            f"{plabel} is not a GitLab pipeline (an object with id, ref, sha): give the answer of "
            "GET /api/v4/projects/{id}/pipelines/{pipeline_id}"
        )
    rid = str(run_id or pipe["id"])
    label = f"pipeline {rid}"
    jobs, jlabel = read_json(jobs_json, f"{label}: the jobs JSON")
    if isinstance(jobs, Mapping) and isinstance(jobs.get("jobs"), list):
        jobs = jobs["jobs"]
    where = jlabel if jlabel.startswith(label) else f"{label}: {jlabel}"
    if isinstance(jobs, list):
        bad = [i for i, j in enumerate(jobs) if not isinstance(j, Mapping) or not {"name", "stage"} <= set(j)]
        if bad:
            raise HistoryError(
                f"{where}: jobs[{bad[0]}] is not a GitLab job (an object with name and stage): give the "
                "answer of GET /api/v4/projects/{id}/pipelines/{pipeline_id}/jobs?include_retried=true"
            )
    else:
        raise HistoryError(
            f"{where} is not a list of GitLab jobs (objects with name and stage): give the answer "
            "of GET /api/v4/projects/{id}/pipelines/{pipeline_id}/jobs?include_retried=true"
        )
    if isinstance(needs, (Mapping, list, str)) and not _is_mapping_of_lists(needs):
        doc, _ = read_json(needs, f"{label}: needs")
        needs = needs_from_graphql(doc, f"{label}: needs")
    return pipe, jobs, dict(needs or {}), rid


class _JobGraph:
    """A pipeline's jobs as nodes — (stage, base name) → iteration label → attempts — with the
    fqn of each job name and base name, and each node's ``after`` (checked for cycles)."""

    def __init__(self, jobs: list[Mapping], needs: dict, order: list[str], label: str) -> None:
        self.needs, self.order, self.label = needs, order, label
        self.nodes: dict[tuple[str, str], dict[Any, list[Mapping]]] = {}
        for job in jobs:
            base, it = _base(str(job["name"]))
            self.nodes.setdefault((str(job["stage"]), base), {}).setdefault(it, []).append(job)
        self.fqn_of: dict[str, str] = {}  # a job name (or base name) → its node's fqn
        for (stage, base), iterations in self.nodes.items():
            fqn = f"pipeline.stages.{ident(stage)}.spec.execution.steps.{ident(base)}"
            self.fqn_of[base] = fqn
            for attempts in iterations.values():
                for job in attempts:
                    self.fqn_of[str(job["name"])] = fqn
        self.by_stage: dict[str, list[str]] = {}
        self.bases: dict[str, list[str]] = {}  # each stage's nodes (base names), in order
        for stage, base in self.nodes:
            self.by_stage.setdefault(stage, []).append(self.fqn_of[base])
            self.bases.setdefault(stage, []).append(base)
        self.previous: dict[str, tuple[str, ...]] = {}  # each stage's previous stage with jobs
        last: tuple[str, ...] = ()
        for stage in order:
            self.previous[stage] = last
            last = tuple(self.by_stage.get(stage) or last)
        self.after_of: dict[str, tuple[str, ...]] = {}
        for (stage, base), iterations in self.nodes.items():
            names = [str(j["name"]) for attempts in iterations.values() for j in attempts]
            self.after_of[self.fqn_of[base]] = self.waited(base, names, stage)
        _check_cycle(self.after_of, label)

    def waited(self, base: str, names: list[str], stage: str) -> tuple[str, ...]:
        """What a node waits for: its needs (by job or base name), else the previous stage with jobs."""
        needs = self.needs
        if base in needs or any(n in needs for n in names):
            listed = needs.get(base) if base in needs else next(needs[n] for n in names if n in needs)
            if listed is not None:
                out = []
                for need in listed:
                    target = self.fqn_of.get(str(need)) or self.fqn_of.get(_base(str(need))[0])
                    if target is None:
                        known = excerpt(", ".join(dict.fromkeys(b for _, b in self.nodes)), 200)
                        raise HistoryError(
                            f"{self.label}: job {excerpt(base, 80)!r} needs {excerpt(str(need), 80)!r}, "
                            f"which the pipeline has no job for (jobs: {known})"
                        )
                    out.append(target)
                return tuple(dict.fromkeys(out))
        return self.previous[stage]  # the previous stage that has jobs

    def stage_rows(self, k: int, stage: str) -> list[dict]:
        """The stage's row (block ``k``, its jobs' span and worst status), then its jobs' rows."""
        stage_fqn = f"pipeline.stages.{ident(stage)}"
        rows: list[dict] = []
        for base in self.bases.get(stage, ()):
            fqn = self.fqn_of[base]
            iterations = self.nodes[(stage, base)]
            if any(it is not None for it in iterations):
                rows += self.looped_rows(stage, base, iterations)
            else:
                after = self.after_of[fqn]
                rows += _job_rows(
                    iterations[None], fqn, stage_fqn, stage, ident(base), 0, None, after, self.label
                )
        top = [r for r in rows if r["parent"] == stage_fqn]
        last = {r["fqn"]: r["status"] for r in top}
        row = _row(stage_fqn, "pipeline", stage, None, k, None, 1, worst(last.values()), ())
        row["kind"], row["step"] = "stage", None
        row["start_ns"], row["end_ns"] = span(top)
        row["name"] = stage
        return [row, *rows]

    def looped_rows(self, stage: str, base: str, iterations: dict) -> list[dict]:
        """A parallel/matrix job's rows: the looped step's (the span of its iterations), then each
        iteration's (``rspec 1/3`` → ``_1_3``)."""
        fqn, stage_fqn = self.fqn_of[base], f"pipeline.stages.{ident(stage)}"
        parts: list[dict] = []
        for i, (it, attempts) in enumerate(iterations.items()):
            postfix = "_" + ident(it) if it is not None else "_0"
            parts += _job_rows(
                attempts, fqn + postfix, fqn, stage, ident(base) + postfix, 0, i, (), self.label
            )
        last = {r["fqn"]: r["status"] for r in parts if r["parent"] == fqn}
        head = _row(fqn, stage_fqn, stage, ident(base), 0, None, 1, worst(last.values()), self.after_of[fqn])
        head["start_ns"], head["end_ns"] = span(parts)
        head["name"] = base
        head["queued_s"] = first_queued(r for r in parts if r["parent"] == fqn)  # it started with its first
        return [head, *parts]


def _pipeline_row(pipe: Mapping, rows: list[dict], label: str) -> dict:
    """The pipeline's row: its own span and status (else its stages'), its queued duration."""
    started = stamp_ns(pipe.get("started_at"), f"{label}: started_at")
    starts = [r["start_ns"] for r in rows if r["start_ns"] is not None]
    ends = [r["end_ns"] for r in rows if r["end_ns"] is not None]
    begin = min([*starts, *([started] if started is not None else [])], default=None)
    finished = stamp_ns(pipe.get("finished_at"), f"{label}: finished_at")
    status = STATUS.get(str(pipe.get("status")))
    head = _row(
        "pipeline",
        None,
        None,
        None,
        None,
        None,
        1,
        status or worst(r["status"] for r in rows if r["kind"] == "stage"),
        (),
    )
    head.update(kind="pipeline", stage=None, step=None, start_ns=begin)
    head["end_ns"] = max([*ends, *([finished] if finished is not None else [])], default=None)
    queued = pipe.get("queued_duration")
    head["queued_s"] = float(queued) if isinstance(queued, (int, float)) else None
    return head


def _is_mapping_of_lists(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        v is None or (isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v))
        for v in value.values()
    )


def _check_cycle(after_of: Mapping[str, tuple[str, ...]], label: str) -> None:
    state: dict[str, int] = {}
    for root in after_of:
        if state.get(root):
            continue
        stack, path = [(root, 0)], []
        while stack:
            node, i = stack.pop()
            if i == 0:
                if state.get(node) == 1:
                    cycle = [*path[path.index(node) :], node]
                    names = " → ".join(f.rsplit(".", 1)[-1] for f in cycle)
                    raise HistoryError(f"{label}: the jobs' needs form a cycle: {excerpt(names, 400)}")
                if state.get(node) == 2:
                    continue
                state[node] = 1
                path.append(node)
            edges = after_of.get(node, ())
            if i < len(edges):
                stack += [(node, i + 1), (edges[i], 0)]
                continue
            state[node] = 2
            path.pop()


def _row(
    fqn: str,
    parent: Any,
    stage: Any,
    step: Any,
    block: Any,
    iteration: Any,
    attempt: int,
    status: str,
    after: Any,
) -> dict:
    return {
        "fqn": fqn,
        "parent": parent,
        "kind": "step",
        "phase": "execution",
        "stage": stage if stage is None else ident(stage),
        "step_group": None,
        "step": step,
        "block": block,
        "iteration": iteration,
        "attempt": attempt,
        "status": status,
        "start_ns": None,
        "end_ns": None,
        "after": after,
    }


def _job_rows(
    attempts: list[Mapping],
    fqn: str,
    parent: str,
    stage: str,
    step: str,
    block: int,
    iteration: Any,
    after: Any,
    label: str,
) -> list[dict]:
    """A job's rows, one per attempt (retried jobs by creation), earlier ones marked Rerun."""
    rows = []

    def created(job: Mapping) -> tuple:  # the instant, not the text: offsets may differ (DST)
        where = f"{label}: job {excerpt(str(job.get('name')), 80)!r}"
        ns = stamp_ns(job.get("created_at"), f"{where} created_at")
        return (ns is not None, ns or 0, whole(job.get("id"), f"{where} id", 0))

    attempts = sorted(attempts, key=created)
    for number, job in enumerate(attempts, start=1):
        where = f"{label}: job {excerpt(str(job.get('name')), 80)!r}"
        raw = str(job.get("status"))
        status = STATUS.get(raw)
        if status is None:
            raise HistoryError(f"{where}: unknown status {excerpt(repr(raw), 40)}")
        if status == "Failed" and job.get("allow_failure"):
            status = "IgnoreFailed"
        row = _row(fqn, parent, stage, step, block, iteration, number, status, after)
        row["start_ns"] = stamp_ns(job.get("started_at"), f"{where} started_at")
        row["end_ns"] = stamp_ns(job.get("finished_at"), f"{where} finished_at")
        queued = job.get("queued_duration")
        row["queued_s"] = float(queued) if isinstance(queued, (int, float)) else None
        runner = job.get("runner")
        row["worker"] = runner.get("description") if isinstance(runner, Mapping) else None
        row["error"] = job.get("failure_reason") if status in ("Failed", "IgnoreFailed") else None
        row["name"] = job.get("name")
        if number < len(attempts):
            row["action"] = "Rerun"
        rows.append(row)
    return rows
