"""GitHub Actions runs → the trace schema (a history's rows for one run).

Mapping (``../shared/CI_RUNS.md``): a workflow run is the run (``run_id`` = its ``id``, ``commit`` =
``head_sha``, ``branch`` = ``head_branch``, ``trigger`` = ``event``); a job is a stage
``pipeline.stages.<job id>`` (the YAML key), its steps are its step rows; a matrix job
(``build (ubuntu, 3.12)``, one API job per combination) is one looped node with an iteration
per combination (``pipeline.stages.build_ubuntu_3_12``, parent ``pipeline.stages.build``,
R46); ``run_attempt`` is the ``attempt`` (an attempt followed by another has ``action``
``"Rerun"``: the timing analysis then lets the next one wait for its needs again); a job's
``queued_s`` is ``started_at − created_at``; its runner is the ``worker``. The API has no
dependency edges: ``needs`` comes from the workflow YAML (``jobs.<id>.needs``), and becomes
``after``; a job's ``block`` is its depth in the ``needs`` graph (the longest chain of needs
before it), so a layout drawn by blocks is the nearest series-parallel one, while ``after``
keeps the DAG.

Job names in the API are display names: ``jobs.<id>.name`` if set (``${{ … }}`` expressions
in it expanded), else the id; a matrix job's name gets `` (v1, v2)`` unless its name already
uses the matrix; a reusable workflow's jobs are ``caller / callee``. Names are mapped back to
the YAML's job ids in that order; a name no job explains is an error naming the run and the job.

>>> jobs = {"jobs": [
...     {"id": 1, "name": "build", "run_attempt": 1, "status": "completed", "conclusion": "success",
...      "created_at": "2026-01-05T10:00:00Z", "started_at": "2026-01-05T10:00:05Z",
...      "completed_at": "2026-01-05T10:01:05Z", "runner_name": "r1", "steps": []},
...     {"id": 2, "name": "Test", "run_attempt": 1, "status": "completed", "conclusion": "failure",
...      "created_at": "2026-01-05T10:01:05Z", "started_at": "2026-01-05T10:01:10Z",
...      "completed_at": "2026-01-05T10:02:00Z", "runner_name": "r2", "steps": []}]}
>>> workflow = "jobs:\\n  build: {runs-on: x}\\n  test: {name: Test, needs: build, runs-on: x}"
>>> run = load_github_run(jobs, workflow=workflow, run_id="7")
>>> print(run[["fqn", "status", "start_s", "end_s", "queued_s", "after"]].to_string(index=False))
                  fqn  status  start_s  end_s  queued_s                    after
             pipeline  Failed      0.0  115.0       5.0                       ()
pipeline.stages.build Success      0.0   60.0       5.0                       ()
 pipeline.stages.test  Failed     65.0  115.0       5.0 (pipeline.stages.build,)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import excerpt
from .history import (
    HistoryError,
    Names,
    first_queued,
    ident,
    read_json,
    rows_by_fqn,
    run_frame,
    span,
    stamp_ns,
    unique,
    whole,
    worst,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["STATUS", "load_github_run", "workflow_jobs"]

#: a job's or step's ``conclusion`` (or, while unfinished, its ``status``) → trace status
STATUS = {
    "success": "Success",
    "failure": "Failed",
    "cancelled": "Aborted",
    "timed_out": "Expired",
    "skipped": "Skipped",
    "neutral": "Success",
    "action_required": "InterventionWaiting",
    "stale": "Aborted",
    "startup_failure": "Failed",
    "in_progress": "Running",
    "queued": "Queued",
    "waiting": "Queued",
    "requested": "Queued",
    "pending": "Queued",
}
#: ``gh run view --json …`` keys → the REST API's
_CAMEL = {
    "databaseId": "id",
    "startedAt": "started_at",
    "completedAt": "completed_at",
    "createdAt": "created_at",
    "headSha": "head_sha",
    "headBranch": "head_branch",
    "number": "run_number",
    "attempt": "run_attempt",
    "url": "html_url",
    "workflowName": "name",
    "runnerName": "runner_name",
}
#: the most attempts of a run (GitHub keeps 50 re-runs; a larger number is a damaged answer)
_MAX_ATTEMPT = 10_000


def _snake(obj: Any) -> Any:
    if not isinstance(obj, Mapping):
        return obj
    return {_CAMEL.get(k, k): v for k, v in obj.items()}


def workflow_jobs(workflow: Any, label: str = "the workflow") -> dict[str, dict]:
    """``{job id: {"name": display name or None, "needs": [ids], "matrix": bool, "uses": bool}}``
    from a workflow: YAML text, a path, or the parsed dict."""
    from ..errors import YamlError
    from .yaml_io import load_data

    try:
        doc = workflow if isinstance(workflow, Mapping) else load_data(workflow)
    except YamlError as err:  # the workflow file is not YAML: a history error, naming the run
        where = (
            str(err).splitlines()[-1].strip(" -").replace("<yaml>:", "line ").replace(" pipeline: [YAML]", "")
        )
        raise HistoryError(
            f"{label} is not YAML ({excerpt(where, 200)}): give the workflow file (.github/workflows/….yml)"
        ) from None
    jobs = doc.get("jobs") if isinstance(doc, Mapping) else None
    if not isinstance(jobs, Mapping) or not jobs:
        raise HistoryError(f"{label} has no jobs: give the workflow file (.github/workflows/….yml)")
    out = {}
    for job_id, spec in jobs.items():
        spec = spec if isinstance(spec, Mapping) else {}
        needs = spec.get("needs") or []
        if isinstance(needs, (str, int, float)):
            needs = [needs]
        if not isinstance(needs, list):
            raise HistoryError(
                f"{label}: job {excerpt(str(job_id), 80)!r}: needs is a job id or a list of them, not "
                f"{excerpt(repr(needs), 60)}"
            )
        needs = [str(x) for x in needs]
        strategy = spec.get("strategy")
        matrix = isinstance(strategy, Mapping) and strategy.get("matrix") is not None
        name = spec.get("name")
        out[str(job_id)] = {
            "name": None if name is None else str(name),
            "needs": needs,
            "matrix": matrix,
            "uses": "uses" in spec,
        }
    return out


def _name_matcher(jobs: Mapping[str, dict]) -> Any:
    """A function: API job name → (job id, iteration label or None), or None if nothing fits."""
    exact: dict[str, str] = {}
    patterns: list[tuple[list[str], str]] = []
    for job_id, spec in jobs.items():
        shown = spec["name"] or job_id
        parts = _literal_parts(shown)
        if len(parts) > 1:
            patterns.append((parts, job_id))
        else:
            exact.setdefault(shown, job_id)
        exact.setdefault(job_id, job_id)

    def match(name: str) -> tuple[str, str | None] | None:
        if name in exact:
            job_id = exact[name]
            return job_id, (name if jobs[job_id]["matrix"] and name != job_id else None)
        if " / " in name:  # a reusable workflow's job: caller / callee
            caller = name.split(" / ", 1)[0]
            found = match(caller)
            if found is not None:
                return found[0], name.split(" / ", 1)[1]
        at = name.rfind(" (", 0, len(name) - 1) if name.endswith(")") else -1  # ``name (v1, v2)``
        if at >= 0 and name[:at] in exact:  # (the last " (": no regex, which backtracks quadratically)
            return exact[name[:at]], name[at + 2 : -1]
        for parts, job_id in patterns:
            if _fits(name, parts):
                return job_id, (name if jobs[job_id]["matrix"] else None)
        return None

    return match


def _literal_parts(text: str) -> list[str]:
    """``text`` split around its ``${{ … }}`` expressions, in one pass (a lazy regular
    expression is quadratic on a text of many ``${{`` without ``}}``).

    >>> _literal_parts("Deploy ${{ env.X }} to ${{ matrix.r }}")
    ['Deploy ', ' to ', '']
    """
    parts, at = [], 0
    while (start := text.find("${{", at)) >= 0 and (end := text.find("}}", start + 3)) >= 0:
        parts.append(text[at:start])
        at = end + 2
    return [*parts, text[at:]]


def _fits(name: str, parts: list[str]) -> bool:
    """Whether ``name`` is ``parts`` joined by non-empty texts (a name with ``${{ … }}``
    expressions, each expanded to something): the literal parts found leftmost, in order —
    linear in the name, where a regular expression with a lazy group per expression
    backtracks exponentially on a long name that does not fit.

    >>> _fits("Deploy to main (eu)", ["Deploy to ", " (", ")"]), _fits("Deploy to ", ["Deploy to ", ""])
    (True, False)
    """
    head, *middle, tail = parts
    if (
        not name.startswith(head)
        or not name.endswith(tail)
        or len(name) < len(head) + len(tail) + len(middle) + 1
    ):
        return False
    at, end = len(head), len(name) - len(tail)
    for part in middle:
        found = name.find(part, at + 1, end - 1) if part else at + 1
        if found < 0 or found + len(part) > end - 1:
            return False
        at = found + len(part)
    return at < end


def _order(jobs: Mapping[str, dict], label: str) -> dict[str, int]:
    """Each job's depth in the ``needs`` graph; a cycle or an unknown need is refused."""
    for job_id, spec in jobs.items():
        for need in spec["needs"]:
            if need not in jobs:
                raise HistoryError(
                    f"{label}: job {excerpt(job_id, 80)!r} needs {excerpt(need, 80)!r}, which the workflow "
                    f"does not define (jobs: {excerpt(', '.join(jobs), 200)})"
                )
    depth: dict[str, int] = {}
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    for root in jobs:
        if root in depth:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = []
        while stack:
            job, i = stack.pop()
            if i == 0:
                if state.get(job) == 1:
                    cycle = [*path[path.index(job) :], job]
                    raise HistoryError(
                        f"{label}: the needs of the workflow form a cycle: {excerpt(' → '.join(cycle), 400)}"
                    )
                if state.get(job) == 2:
                    continue
                state[job] = 1
                path.append(job)
            needs = jobs[job]["needs"]
            if i < len(needs):
                stack.append((job, i + 1))
                stack.append((needs[i], 0))
                continue
            depth[job] = 1 + max((depth[n] for n in needs), default=-1)
            state[job] = 2
            path.pop()
    return depth


def _jobs_of(doc: Any, label: str) -> tuple[list[dict], dict]:
    """The jobs list and the run-level fields of a jobs answer (REST or ``gh``)."""
    if isinstance(doc, list):
        jobs, top = doc, {}
    elif isinstance(doc, Mapping) and isinstance(doc.get("jobs"), list):
        jobs, top = doc["jobs"], _snake({k: v for k, v in doc.items() if k != "jobs"})
    else:
        keys = (
            ", ".join(sorted(str(k) for k in list(doc)[:8]))
            if isinstance(doc, Mapping)
            else type(doc).__name__
        )
        raise HistoryError(
            f"{label} is not the jobs of a GitHub Actions run (found {excerpt(keys, 120)}): give the answer "
            "of GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs or of `gh run view RUN_ID --json jobs`"
        )
    out = []
    for i, job in enumerate(jobs):
        if not isinstance(job, Mapping) or "name" not in job:
            raise HistoryError(f"{label}: jobs[{i}] is not a job (an object with a name)")
        out.append(_snake(job))
    return out, top


def load_github_run(
    jobs_json: Any,
    workflow: Any = None,
    *,
    run: Any = None,
    run_id: str | None = None,
    pipeline: str | None = None,
) -> pd.DataFrame:
    """One GitHub Actions run as history rows (the trace schema plus the run columns).

    Args:
        jobs_json: the run's jobs: the answer of ``GET …/actions/runs/{run_id}/jobs`` (with
            ``filter=all`` for earlier attempts, or several per-attempt answers' ``jobs``
            joined), or ``gh run view RUN_ID --json jobs[,…]`` output; a path, JSON text or
            the parsed JSON.
        workflow: the workflow file at the run's commit (YAML text, a path or the parsed
            dict) for ``needs``, job ids and matrices; without it every job is its own node
            with ``after`` None (unknown) and a matrix job's combinations are separate nodes.
        run: the run object (``GET …/actions/runs/{run_id}``) for the run columns.
        run_id: the ``run_id`` column (default: the run's or the jobs' ``run_id``).
        pipeline: the ``pipeline`` column (default: the run's workflow ``path`` or ``name``).

    Raises:
        HistoryError: not a jobs answer; a job the workflow does not explain; ``needs`` that
            name an unknown job or form a cycle (each names the run and the job).

    See the module's docstring for the mapping, and an example.
    """
    doc, label = read_json(jobs_json, "the jobs JSON")
    jobs, top = _jobs_of(doc, label)
    info = dict(top)
    if run is not None:
        run_doc, _ = read_json(run, "the run JSON")
        if not isinstance(run_doc, Mapping):
            raise HistoryError("the run JSON is not an object (GET /repos/{owner}/{repo}/actions/runs/{id})")
        info.update(_snake(run_doc))
    rid = str(
        run_id or info.get("id") or next((j.get("run_id") for j in jobs if j.get("run_id")), None) or "run"
    )
    label = f"run {rid}"
    spec = workflow_jobs(workflow, f"{label}: the workflow") if workflow is not None else None
    depth = _order(spec, f"{label}: the workflow") if spec is not None else {}
    nodes, labels = _jobs_by_node(jobs, spec, label)
    created = [
        stamp_ns(j.get("created_at"), f"{label}: job {excerpt(str(j['name']), 80)!r} created_at")
        for j in jobs
    ]
    rows = _stage_rows(nodes, labels, spec, depth, label)
    created_ns = stamp_ns(info.get("created_at"), f"{label}: created_at")
    if created_ns is None:
        created_ns = min((c for c in created if c is not None), default=None)
    rows.insert(0, _run_row(rows, info, spec is not None, created_ns, label))
    rows = _pipeline_order(rows)

    def first_of_jobs(key: str) -> Any:
        return next((j.get(key) for j in jobs if j.get(key)), None)

    return run_frame(
        rows,
        {
            "run_id": rid,
            "source": "github",
            "pipeline": pipeline or info.get("path") or info.get("name") or "workflow",
            "run_number": info.get("run_number"),
            "commit": info.get("head_sha") or first_of_jobs("head_sha"),
            "branch": info.get("head_branch") or first_of_jobs("head_branch"),
            "trigger": info.get("event"),
            "created_ns": created_ns,
            "url": info.get("html_url"),
        },
    )


def _jobs_by_node(
    jobs: list[dict], spec: dict | None, label: str
) -> tuple[dict[str, dict[Any, list[dict]]], dict[str, dict[Any, str]]]:
    """The API jobs by node (job id) and iteration (a matrix combination, else None), oldest
    first, and the API name of each; without a workflow every name is its own node."""
    match = _name_matcher(spec) if spec is not None else None
    nodes: dict[str, dict[Any, list[dict]]] = {}
    labels: dict[str, dict[Any, str]] = {}
    ids = [whole(j.get("id"), f"{label}: job {excerpt(str(j['name']), 80)!r} id", 0) for j in jobs]
    for job in [jobs[i] for i in sorted(range(len(jobs)), key=ids.__getitem__)]:
        name = str(job["name"])
        if match is not None:
            found = match(name)
            if found is None:
                raise HistoryError(
                    f"{label}: job {excerpt(name, 80)!r} is not in the workflow (jobs: "
                    f"{excerpt(', '.join(spec), 200)}): give the workflow file at the run's commit (head_sha)"
                )
            job_id, iteration = found
        else:
            job_id, iteration = ident(name), None
        nodes.setdefault(job_id, {}).setdefault(iteration, []).append(job)
        labels.setdefault(job_id, {})[iteration] = name
    return nodes, labels


def _stage_rows(
    nodes: dict[str, dict[Any, list[dict]]],
    labels: dict[str, dict[Any, str]],
    spec: dict | None,
    depth: dict[str, int],
    label: str,
) -> list[dict]:
    """The rows of every job (a stage; a matrix job a looped stage), in the workflow's order;
    ``depth`` is each job's depth in the needs graph (its block)."""
    rows: list[dict] = []
    for job_id in list(spec) if spec is not None else list(nodes):
        fqn = f"pipeline.stages.{job_id}"
        after = None if spec is None else tuple(f"pipeline.stages.{n}" for n in spec[job_id]["needs"])
        block = depth.get(job_id, 0)
        iterations = nodes.get(job_id)
        if not iterations:  # in the workflow, not in the run: never started (D6)
            rows.append(_node_row(fqn, "pipeline", job_id, block, None, 0, "NotStarted", after, None))
            rows[-1]["reason"] = "the run has no job for it"
        elif any(it is not None for it in iterations):
            name = (spec or {}).get(job_id, {}).get("name") or job_id
            rows += _looped_rows(job_id, iterations, labels[job_id], block, after, name, label)
        else:
            rows += _job_rows(
                iterations[None], fqn, "pipeline", job_id, block, None, after, label, labels[job_id][None]
            )
    return rows


def _looped_rows(
    job_id: str, iterations: dict, labels: dict, block: int, after: Any, name: str, label: str
) -> list[dict]:
    """A matrix job's rows: the looped stage's (its span, its iterations' worst latest status),
    then each combination's as an iteration of it."""
    fqn = f"pipeline.stages.{job_id}"
    parts: list[dict] = []
    taken = Names()
    for i, (it, attempts) in enumerate(iterations.items()):
        postfix = unique(f"_{ident(it)}" if it is not None else "_0", taken)
        parts += _job_rows(attempts, f"{fqn}{postfix}", fqn, job_id + postfix, 0, i, (), label, labels[it])
    heads = [r for r in parts if r["parent"] == fqn]
    last = {r["fqn"]: r["status"] for r in heads}  # each iteration's latest attempt
    head = _node_row(fqn, "pipeline", job_id, block, None, 1, worst(last.values()), after, None)
    head["start_ns"], head["end_ns"] = span(heads)
    head["name"] = name
    head["queued_s"] = first_queued(heads)  # it started with its first iteration
    return [head, *parts]


def _run_row(rows: list[dict], info: Mapping, with_workflow: bool, created_ns: Any, label: str) -> dict:
    """The pipeline's row: the run's span, its conclusion (else the worst job's), its attempt."""
    starts_all = [r["start_ns"] for r in rows if r.get("start_ns") is not None]
    ends_all = [r["end_ns"] for r in rows if r.get("end_ns") is not None]
    run_start = stamp_ns(info.get("run_started_at"), f"{label}: run_started_at")
    begin = min([*starts_all, *([run_start] if run_start is not None else [])], default=None)
    top_rows = [r for r in rows if r["parent"] == "pipeline"]
    conclusion = info.get("conclusion") or (
        None if info.get("status") in (None, "completed") else info["status"]
    )
    status = STATUS.get(str(conclusion)) if conclusion else None
    row = _node_row(
        "pipeline",
        None,
        None,
        None,
        None,
        whole(info.get("run_attempt"), f"{label}: run_attempt", 1, low=1, high=_MAX_ATTEMPT),
        status or worst(r["status"] for r in top_rows),
        () if with_workflow else None,
        None,
    )
    row.update(start_ns=begin, end_ns=max(ends_all, default=None), stage=None)
    row["queued_s"] = None if begin is None or created_ns is None else max(0, begin - created_ns) / 1e9
    return row


def _node_row(
    fqn: str,
    parent: Any,
    stage: Any,
    block: Any,
    iteration: Any,
    attempt: int,
    status: str,
    after: Any,
    name: Any,
) -> dict:
    return {
        "fqn": fqn,
        "parent": parent,
        "kind": "pipeline" if parent is None else "stage",
        "phase": "execution",
        "stage": stage,
        "step_group": None,
        "step": None,
        "block": block,
        "iteration": iteration,
        "attempt": attempt,
        "status": status,
        "start_ns": None,
        "end_ns": None,
        "after": after,
        "name": name,
    }


def _status(obj: Mapping, label: str) -> str:
    value = obj.get("conclusion") or obj.get("status")
    status = STATUS.get(str(value).lower()) if value else None
    if status is None:
        if obj.get("status") == "completed" or value is None:
            return "Success" if obj.get("completed_at") else "NotStarted"
        raise HistoryError(f"{label}: unknown conclusion {excerpt(repr(value), 40)}")
    return status


def _job_rows(
    attempts: list[dict],
    fqn: str,
    parent: str,
    job_id: str,
    block: int,
    iteration: Any,
    after: Any,
    label: str,
    shown: str,
) -> list[dict]:
    """A job's rows: one per attempt, each followed by its step rows."""
    rows: list[dict] = []
    by_attempt: dict[int, dict] = {}
    for job in attempts:  # the same attempt twice (listings joined): the later job id wins
        where = f"{label}: job {excerpt(str(job['name']), 80)!r} run_attempt"
        by_attempt[whole(job.get("run_attempt"), where, 1, low=1, high=_MAX_ATTEMPT)] = job
    for attempt, job in sorted(by_attempt.items()):
        where = f"{label}: job {excerpt(str(job['name']), 80)!r}"
        status = _status(job, where)
        row = _node_row(fqn, parent, job_id, block, iteration, attempt, status, after, shown)
        row["start_ns"] = stamp_ns(job.get("started_at"), f"{where} started_at")
        row["end_ns"] = stamp_ns(job.get("completed_at"), f"{where} completed_at")
        if status in ("Skipped", "NotStarted", "Queued"):
            row["start_ns"] = row["start_ns"] if row["end_ns"] is not None else None
        created = stamp_ns(job.get("created_at"), f"{where} created_at")
        if created is not None and row["start_ns"] is not None:
            row["queued_s"] = max(0, row["start_ns"] - created) / 1e9
        row["worker"] = job.get("runner_name") or None
        if status in ("Failed", "Expired"):
            row["error"] = f"{job.get('conclusion')}"
        if attempt < max(by_attempt):  # the run was re-run after this attempt (timing.RERUN)
            row["action"] = "Rerun"
        rows.append(row)
        taken = Names()
        previous: tuple = ()
        for number, step in enumerate(_steps(job, where)):
            step = _snake(step)
            step_id = unique(ident(step.get("name") or f"step{number + 1}"), taken)
            step_fqn = f"{fqn}.spec.execution.steps.{step_id}"
            swhere = f"{where} step {excerpt(str(step.get('name')), 80)!r}"
            rows.append(
                {
                    "fqn": step_fqn,
                    "parent": fqn,
                    "kind": "step",
                    "phase": "execution",
                    "stage": job_id,
                    "step_group": None,
                    "step": step_id,
                    "block": number,
                    "iteration": iteration,
                    "attempt": attempt,
                    "status": _status(step, swhere),
                    "start_ns": stamp_ns(step.get("started_at"), f"{swhere} started_at"),
                    "end_ns": stamp_ns(step.get("completed_at"), f"{swhere} completed_at"),
                    "worker": row["worker"],
                    "after": previous,
                    "name": step.get("name"),
                }
            )
            previous = (step_fqn,)
    return rows


def _steps(job: Mapping, where: str) -> list[Mapping]:
    """A job's steps (objects) in their ``number`` order (a step without a number where it is listed)."""
    steps = job.get("steps") or []
    if not isinstance(steps, list):
        raise HistoryError(f"{where}: steps is {type(steps).__name__}, not a list of steps")
    steps = [s for s in steps if isinstance(s, Mapping)]
    numbers = [
        whole(s.get("number"), f"{where} step {excerpt(str(s.get('name')), 80)!r} number", 0) for s in steps
    ]
    return [steps[i] for _, i in sorted(zip(numbers, range(len(steps))))]


def _pipeline_order(rows: list[dict]) -> list[dict]:
    """Rows in the trace's order: pre-order of the tree (parents before children), a node's
    attempts together, each job attempt's steps after the job's rows."""
    by_fqn, children = rows_by_fqn(rows)
    out: list[dict] = []
    stack = list(reversed(children.get(None, [])))
    while stack:
        fqn = stack.pop()
        out += sorted(by_fqn[fqn], key=lambda r: r["attempt"])
        stack.extend(reversed(children.get(fqn, [])))
    return out
