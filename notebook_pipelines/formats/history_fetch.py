"""Fetch many runs from Harness, GitHub Actions or GitLab into a cached history.

Each ``fetch_*_history`` function lists the pipeline's runs (newest first, page by page),
fetches what one run needs (GitHub: its jobs of every attempt and the workflow file at its
commit; GitLab: the pipeline, its jobs with the retried ones, the ``needs`` by GraphQL;
Harness: the execution graph and the earlier attempts of retried nodes) for the runs not yet
in the cache, with at most ``concurrency`` requests at once, and returns the history of the
last ``last`` runs (:mod:`.history`). A second call fetches only the runs it has not kept.

The network rules (one overall ``deadline``, rate limits, bounded answers, the token never
shown) are :mod:`.history_client`'s; a token an answer echoes is replaced before the raw JSON
is kept (:mod:`.history_store`). Runs still in progress are left out and fetched by a later call.
"""

from __future__ import annotations

import base64
import os
import re
import threading
import urllib.parse
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import excerpt
from .harness_frame import load_harness_run
from .history import HistoryError, HistoryWarning, whole
from .history_client import (
    MAX_BODY,
    ApiClient,
    FetchProgress,
    Response,
    fetch_all,
    http_request,
    token_or_env,
)
from .history_pages import another_page, github_pages, gitlab_pages, new_items, numbered
from .history_store import cache_dir, cached_raw, kept_runs, sync_kept, write_raw

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "MAX_BODY",
    "HistoryWarning",
    "Response",
    "fetch_github_history",
    "fetch_gitlab_history",
    "fetch_harness_history",
    "http_request",
]

GITHUB_API = "https://api.github.com"
GITLAB_URL = "https://gitlab.com"
HARNESS_URL = "https://app.harness.io"


def _folder(cache: str | os.PathLike | None) -> Path:
    return Path(cache) if cache is not None else cache_dir()


def _bounded(last: Any, concurrency: Any = 1) -> int:
    """``last`` checked (1 to 10,000), and ``concurrency`` (a whole number: 1 to 16 are used)."""
    if isinstance(last, bool) or not isinstance(last, int) or not 1 <= last <= 10_000:
        raise HistoryError(f"last= is a number of runs from 1 to 10,000, not {excerpt(repr(last), 40)}")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int):
        raise HistoryError(
            f"concurrency= is a number of requests at once (1 to 16), not {excerpt(repr(concurrency), 40)}"
        )
    return last


def _loads(system: str, pipeline: str, run_id: str, load: Callable[[], Any]) -> bool:
    """Whether a fetched run loads; if it does not (an answer the loader refuses), a
    :class:`HistoryWarning` naming the run and why: it is not kept, and the other runs go on
    (one damaged run does not stop a history)."""
    try:
        load()
    except HistoryError as err:
        warnings.warn(
            f"{system} {pipeline}: run {excerpt(run_id, 80)} is left out: {excerpt(str(err), 300)}",
            HistoryWarning,
            stacklevel=3,
        )
        return False
    return True


def _fetch_new_runs(
    client: ApiClient,
    folder: Path,
    source: str,
    key: str,
    runs: list[dict],
    run_id: Callable[[Mapping], str],
    fetch_one: Callable[[Mapping], None],
    load: Callable[[str, dict], pd.DataFrame],
    *,
    concurrency: int,
    progress: Any,
    label: str,
) -> pd.DataFrame:
    """What every fetch ends with: ``fetch_one`` for each run not kept yet (in a bounded pool),
    the kept runs not yet in the Parquet dataset added (``load``), and the history of ``runs``."""
    kept = cached_raw(folder, source, key)
    todo = [r for r in runs if run_id(r) not in kept]
    fetch_all(client, todo, fetch_one, concurrency, FetchProgress(progress, label))
    sync_kept(folder, source, key, load)
    return kept_runs(folder, source, key, [run_id(r) for r in runs])


# -- GitHub -------------------------------------------------------------------------------------------
def fetch_github_history(
    repo: str,
    workflow: str,
    *,
    last: int = 100,
    token: str | None = None,
    base_url: str = GITHUB_API,
    branch: str | None = None,
    cache: str | os.PathLike | None = None,
    concurrency: int = 4,
    deadline: float = 600.0,
    progress: Any = True,
) -> pd.DataFrame:
    """The last ``last`` completed runs of a GitHub Actions workflow, as a history.

    Args:
        repo: ``owner/name``.
        workflow: the workflow file name (``ci.yml``) or its numeric id.
        last: how many of the newest runs (at most 10,000).
        token: a token that may read Actions (default: ``GITHUB_TOKEN``); sent as
            ``Authorization: Bearer`` only. Public repositories need none (at a low rate limit).
        base_url: the API (``https://HOST/api/v3`` for GitHub Enterprise Server).
        branch: only runs of this branch.
        cache: the cache folder (default: :func:`~.history_store.cache_dir`).
        concurrency: requests at once (1–16).
        deadline: seconds for the whole call.
        progress: True (a line on stderr), False, or a callable ``(done, total)``.

    Raises:
        HistoryError: an HTTP error (what to check), a rate limit past the deadline, the
            deadline, an answer that is not what the API returns.
    """
    from .github import load_github_run

    if not isinstance(repo, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", repo):
        raise HistoryError(f"fetch_github_history: repo is 'owner/name', not {excerpt(repr(repo), 80)}")
    last = _bounded(last, concurrency)
    secret = token_or_env(token, "GITHUB_TOKEN")
    auth = {"Authorization": f"Bearer {secret}"} if secret else {}
    auth["X-GitHub-Api-Version"] = "2022-11-28"
    client = ApiClient("GitHub", auth, secret, deadline)
    base = base_url.rstrip("/")
    folder = _folder(cache)
    pipeline = f"{repo}/{workflow}"
    wf = urllib.parse.quote(str(workflow), safe="")
    params: dict[str, Any] = {"per_page": min(100, last), "status": "completed", "branch": branch}
    runs: list[dict] = []
    error = "GitHub: the answer of {url} has no workflow_runs list"
    what = f"workflow {workflow!r} in {repo}"
    url = f"{base}/repos/{repo}/actions/workflows/{wf}/runs"
    ids: set = set()
    for page in github_pages(client, base, url, params, "workflow_runs", what, error):
        done = [r for r in page if isinstance(r, Mapping) and r.get("status") == "completed"]
        runs += new_items(done, lambda r: str(r.get("id")), ids)
        if not page or len(runs) >= last:
            break
    runs = numbered(runs[:last], "GitHub", "run")
    fetcher = _GitHubRuns(client, base, repo, workflow, folder, pipeline, secret)

    def load(run_id: str, doc: dict) -> pd.DataFrame:
        return load_github_run(
            {"jobs": doc["jobs"]}, workflow=doc["workflow"], run=doc["run"], pipeline=pipeline
        )

    return _fetch_new_runs(
        client, folder, "github", pipeline, runs, lambda r: str(r.get("id")), fetcher.fetch_one, load,
        concurrency=concurrency, progress=progress, label=f"GitHub {pipeline}",
    )  # fmt: skip


#: the largest workflow file read (GitHub's contents API sends no content over 1 MB; parsing a
#: YAML file takes seconds per MB, in a thread Ctrl-C waits for)
MAX_WORKFLOW_BYTES = 2**20


class _GitHubRuns:
    """Fetches and keeps one GitHub run: its jobs of every attempt and its workflow file at its
    commit (each file fetched once per call)."""

    def __init__(
        self, client: ApiClient, base: str, repo: str, workflow: str, folder: Path, pipeline: str, secret: Any
    ) -> None:
        self.client, self.base, self.repo, self.workflow = client, base, repo, workflow
        self.folder, self.pipeline, self.secret = folder, pipeline, secret
        self.workflows: dict[tuple, str] = {}
        self.lock = threading.Lock()

    def workflow_at(self, path: str, sha: str) -> str:
        with self.lock:
            if (path, sha) in self.workflows:
                return self.workflows[(path, sha)]
        doc, _ = self.client.call(
            "GET",
            f"{self.base}/repos/{self.repo}/contents/{urllib.parse.quote(path)}",
            {"ref": sha},
            what=f"workflow file {path} at {sha}",
        )
        content = doc.get("content") if isinstance(doc, Mapping) else None
        size = doc.get("size") if isinstance(doc, Mapping) else None
        too_big = (isinstance(size, int) and size > MAX_WORKFLOW_BYTES) or (
            isinstance(content, str) and len(content) > MAX_WORKFLOW_BYTES * 4 // 3 + 4096
        )
        if too_big:  # GitHub sends no content over 1 MB; a larger answer is not a workflow file
            raise HistoryError(
                f"GitHub: the workflow file {excerpt(path, 80)} at {sha} is over "
                f"{MAX_WORKFLOW_BYTES // 2**20} MB: refused (a workflow is far smaller: the right file?)"
            )
        try:
            text = base64.b64decode(content).decode("utf-8")
        except (KeyError, TypeError, ValueError):
            raise HistoryError(f"GitHub: the contents of {path} at {sha} are not a base64 file") from None
        with self.lock:
            self.workflows[(path, sha)] = text
        return text

    def fetch_one(self, run: Mapping) -> None:
        from .github import load_github_run

        run_id = str(run["id"])
        jobs: list = []
        url = f"{self.base}/repos/{self.repo}/actions/runs/{run_id}/jobs"
        error = f"GitHub: run {run_id}: the jobs answer has no jobs list"
        params = {"per_page": 100, "filter": "all"}
        for page in github_pages(self.client, self.base, url, params, "jobs", f"run {run_id}", error):
            jobs += page
        path = str(run.get("path") or f".github/workflows/{self.workflow}")
        if ".." in path.split("/") or path.startswith("/") or len(path) > 1000:
            raise HistoryError(
                f"GitHub: run {run_id}: its workflow path {excerpt(path, 80)!r} is not a file of the "
                "repository"
            )
        text = self.workflow_at(path, str(run.get("head_sha")))
        if not _loads(
            "GitHub", self.pipeline, run_id, lambda: load_github_run({"jobs": jobs}, workflow=text, run=run)
        ):
            return  # refused before it is kept
        doc = {"run": run, "jobs": jobs, "workflow": text}
        write_raw(self.folder, "github", self.pipeline, run_id, doc, secret=self.secret)


# -- GitLab -------------------------------------------------------------------------------------------
_GRAPHQL = """query($path: ID!, $iid: ID!) { project(fullPath: $path) { pipeline(iid: $iid) {
  jobs { nodes { name retried stage { name } needs { nodes { name } }
    previousStageJobsOrNeeds { nodes { ... on CiBuildNeed { name } ... on CiJob { name } } } } } } } }"""


def fetch_gitlab_history(
    project: str | int,
    *,
    last: int = 100,
    token: str | None = None,
    url: str = GITLAB_URL,
    ref: str | None = None,
    cache: str | os.PathLike | None = None,
    concurrency: int = 4,
    deadline: float = 600.0,
    progress: Any = True,
) -> pd.DataFrame:
    """The last ``last`` finished pipelines of a GitLab project, as a history.

    Args:
        project: the project's path (``group/name``) or numeric id.
        token: a token with ``read_api`` (default: ``GITLAB_TOKEN``), sent as ``PRIVATE-TOKEN``.
        url: the GitLab instance.
        ref: only pipelines of this branch or tag.
        last, cache, concurrency, deadline, progress: as :func:`fetch_github_history`.

    The jobs come from REST (``include_retried=true``), the edges from GraphQL
    (``previousStageJobsOrNeeds``); without GraphQL (an error there) jobs wait for their
    previous stage and a warning says so.
    """
    from .gitlab import load_gitlab_pipeline

    last = _bounded(last, concurrency)
    secret = token_or_env(token, "GITLAB_TOKEN")
    client = ApiClient("GitLab", {"PRIVATE-TOKEN": secret} if secret else {}, secret, deadline)
    base = url.rstrip("/")
    folder = _folder(cache)
    pid = urllib.parse.quote(str(project), safe="")
    api = f"{base}/api/v4/projects/{pid}"
    pipeline = str(project)
    info, _ = client.call("GET", api, what=f"project {project!r}")
    full_path = str(info.get("path_with_namespace") or project) if isinstance(info, Mapping) else str(project)
    finished = {"success", "failed", "canceled", "skipped"}
    runs: list[dict] = []
    params = {"per_page": min(100, last), "page": None, "ref": ref}
    what, error = f"pipelines of {project!r}", f"GitLab: the pipelines of {project!r} are not a list"
    ids: set = set()
    for doc in gitlab_pages(client, f"{api}/pipelines", params, what, error):
        ended = [p for p in doc if isinstance(p, Mapping) and p.get("status") in finished]
        runs += new_items(ended, lambda p: str(p.get("id")), ids)
        if len(runs) >= last:
            break
    runs = numbered(runs[:last], "GitLab", "pipeline")
    fetcher = _GitLabRuns(client, base, api, full_path, folder, pipeline, secret)

    def load(run_id: str, doc: dict) -> pd.DataFrame:
        return load_gitlab_pipeline(doc["pipeline"], doc["jobs"], doc.get("graphql"), project=pipeline)

    return _fetch_new_runs(
        client, folder, "gitlab", pipeline, runs, lambda r: str(r.get("id")), fetcher.fetch_one, load,
        concurrency=concurrency, progress=progress, label=f"GitLab {pipeline}",
    )  # fmt: skip


class _GitLabRuns:
    """Fetches and keeps one GitLab pipeline: the pipeline, its jobs (the retried ones too) and
    its needs by GraphQL (without them: one warning per call, and the stage order)."""

    def __init__(
        self, client: ApiClient, base: str, api: str, full_path: str, folder: Path, pipeline: str, secret: Any
    ) -> None:
        self.client, self.base, self.api, self.full_path = client, base, api, full_path
        self.folder, self.pipeline, self.secret = folder, pipeline, secret
        self.lock, self.warned = threading.Lock(), False

    def fetch_one(self, item: Mapping) -> None:
        from .gitlab import load_gitlab_pipeline

        run_id = str(item["id"])
        detail, _ = self.client.call("GET", f"{self.api}/pipelines/{run_id}", what=f"pipeline {run_id}")
        jobs: list = []
        params = {"per_page": 100, "page": None, "include_retried": "true"}
        what, error = (
            f"jobs of pipeline {run_id}",
            f"GitLab: pipeline {run_id}: the jobs answer is not a list",
        )
        for doc in gitlab_pages(self.client, f"{self.api}/pipelines/{run_id}/jobs", params, what, error):
            jobs += doc
        graph = self.needs(detail)
        if not _loads(
            "GitLab",
            self.pipeline,
            run_id,
            lambda: load_gitlab_pipeline(detail, jobs, graph, project=self.pipeline),
        ):
            return  # refused before it is kept
        doc = {"pipeline": detail, "jobs": jobs, "graphql": graph}
        write_raw(self.folder, "gitlab", self.pipeline, run_id, doc, secret=self.secret)

    def needs(self, detail: Any) -> Any:
        """GraphQL's answer with the jobs' needs, or None (then a warning, once per call)."""
        from .gitlab import needs_from_graphql

        try:
            graph, _ = self.client.call(
                "POST",
                f"{self.base}/api/graphql",
                what="GraphQL",
                body={
                    "query": _GRAPHQL,
                    "variables": {"path": self.full_path, "iid": str(detail.get("iid"))},
                },
            )
            needs_from_graphql(graph, "GitLab's GraphQL answer")
        except HistoryError as err:
            if self.client.stop.is_set() or "deadline" in str(err):
                raise
            with self.lock:
                if not self.warned:
                    self.warned = True
                    warnings.warn(
                        f"GitLab: no needs from GraphQL ({excerpt(str(err), 200)}): jobs are taken to wait "
                        "for their previous stage",
                        HistoryWarning,
                        stacklevel=5,
                    )
            return None  # the edges are the stage order; said once
        return graph


# -- Harness ------------------------------------------------------------------------------------------
#: the most earlier attempts of retried nodes fetched for one run (one request each)
MAX_ATTEMPT_FETCHES = 200
#: Harness statuses of a run still going (lower-cased, ``_`` removed): left for a later call
_UNFINISHED = {
    "running",
    "asyncwaiting",
    "taskwaiting",
    "timedwaiting",
    "queued",
    "paused",
    "notstarted",
    "interventionwaiting",
    "approvalwaiting",
    "resourcewaiting",
    "inputwaiting",
    "waitsteprunning",
}


def fetch_harness_history(
    *,
    pipeline: str,
    account: str,
    org: str,
    project: str,
    last: int | None = 100,
    since: Any = None,
    status: str | list[str] | None = None,
    api_key: str | None = None,
    base_url: str = HARNESS_URL,
    cache: str | os.PathLike | None = None,
    concurrency: int = 4,
    deadline: float = 600.0,
    progress: Any = True,
) -> pd.DataFrame:
    """The last ``last`` finished runs of a Harness pipeline (or those since ``since``), as a history.

    Pages through ``POST /pipeline/api/pipelines/execution/summary`` (newest first), fetches
    each run's graph (``execution/v2/{id}?renderFullBottomGraph=true``) and the earlier
    attempts of retried nodes (``getExecutionNode``), and loads them with
    :func:`~.harness_executions.load_harness_execution`.

    Args:
        pipeline, account, org, project: the pipeline's identifier and where it lives.
        last: how many of the newest runs; ``since``: a time (ISO text, ``datetime``,
            ``pd.Timestamp``): runs started at or after it (with ``last``: both limits).
        status: only runs with this status (``Success``, ``Failed`` …) or one of these.
        api_key: default ``HARNESS_API_KEY``; sent as ``x-api-key`` only.
        base_url, cache, concurrency, deadline, progress: as :func:`fetch_github_history`.
    """
    if last is None and since is None:
        raise HistoryError("fetch_harness_history: give last=N, since=…, or both")
    limit = _bounded(last if last is not None else 10_000, concurrency)
    since_ms = None if since is None else _epoch_ms(since)
    secret = token_or_env(api_key, "HARNESS_API_KEY")
    if not secret:
        raise HistoryError("fetch_harness_history: no API key: pass api_key=… or set HARNESS_API_KEY")
    client = ApiClient("Harness", {"x-api-key": secret}, secret, deadline)
    base = base_url.rstrip("/")
    folder = _folder(cache)
    scope = {"accountIdentifier": account, "orgIdentifier": org, "projectIdentifier": project}
    statuses = [status] if isinstance(status, str) else list(status or [])
    runs = _harness_runs(client, base, {**scope, "pipelineIdentifier": pipeline}, statuses, limit, since_ms)
    key = f"{org}/{project}/{pipeline}"
    fetcher = _HarnessRuns(client, base, scope, folder, key, secret)

    def load(run_id: str, doc: dict) -> pd.DataFrame:
        return load_harness_run(run_id, doc, doc.get("summary") or {}, key)

    return _fetch_new_runs(
        client, folder, "harness", key, runs, lambda r: str(r["planExecutionId"]), fetcher.fetch_one, load,
        concurrency=concurrency, progress=progress, label=f"Harness {pipeline}",
    )  # fmt: skip


def _harness_runs(
    client: ApiClient, base: str, scope: dict, statuses: list[str], limit: int, since_ms: int | None
) -> list[dict]:
    """The summaries of the newest finished runs (at most ``limit``; none started before
    ``since_ms``; only ``statuses`` if any), page by page."""
    pipeline = scope["pipelineIdentifier"]
    runs: list[dict] = []
    page = 0
    done = False
    ids: set = set()
    pages: set[int] = set()
    while not done and len(runs) < limit:
        another_page(
            "Harness",
            f"the list of runs of {pipeline!r}",
            pages,
            page,
            "ask for fewer runs with last= or since=",
        )
        params = {**scope, "page": page, "size": min(100, limit), "status": statuses or None}
        doc, _ = client.call(
            "POST",
            f"{base}/pipeline/api/pipelines/execution/summary",
            params,
            body={"filterType": "PipelineExecution"},
            what=f"pipeline {pipeline!r}",
        )
        data = doc.get("data") if isinstance(doc, Mapping) else None
        content = data.get("content") if isinstance(data, Mapping) else None
        if not isinstance(content, list):
            raise HistoryError(f"Harness: the executions list of {pipeline!r} has no data.content")
        listed = [i for i in content if isinstance(i, Mapping) and i.get("planExecutionId")]
        fresh = new_items(listed, lambda i: str(i["planExecutionId"]), ids)
        if listed and not fresh:
            raise HistoryError(
                f"Harness: page {page} of the runs of {pipeline!r} repeats runs already read: the "
                "server's paging is broken; try again later"
            )
        for item in fresh:
            where = f"Harness: run {excerpt(str(item['planExecutionId']), 80)} startTs"
            started = whole(item.get("startTs"), where, None)  # None: queued, not started yet
            if since_ms is not None and started is not None and started < since_ms:
                done = True
                break
            if str(item.get("status", "")).lower() in _UNFINISHED:
                continue
            if statuses and item.get("status") not in statuses:
                continue
            runs.append(dict(item))
        total_pages = data.get("totalPages")
        page += 1
        if not content or data.get("last") is True or (isinstance(total_pages, int) and page >= total_pages):
            break
    return runs[:limit]


class _HarnessRuns:
    """Fetches and keeps one Harness run: its execution graph and its retried nodes' earlier attempts."""

    def __init__(
        self, client: ApiClient, base: str, scope: dict, folder: Path, key: str, secret: Any
    ) -> None:
        self.client, self.base, self.scope = client, base, scope
        self.folder, self.key, self.secret = folder, key, secret

    def fetch_one(self, item: Mapping) -> None:
        run_id = str(item["planExecutionId"])
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", run_id):
            raise HistoryError(f"Harness: {excerpt(repr(run_id), 80)} is not a planExecutionId")
        doc, _ = self.client.call(
            "GET",
            f"{self.base}/pipeline/api/pipelines/execution/v2/{run_id}",
            {**self.scope, "renderFullBottomGraph": "true"},
            what=f"execution {run_id}",
        )
        raw = {"execution": doc, "attempts": self.attempts(doc, run_id)}
        if not _loads("Harness", self.key, run_id, lambda: load_harness_run(run_id, raw, item, self.key)):
            return  # refused before it is kept
        write_raw(self.folder, "harness", self.key, run_id, {**raw, "summary": item}, secret=self.secret)

    def attempts(self, doc: Any, run_id: str) -> list:
        """The node JSON of the earlier attempts of the execution's retried nodes: each id
        once, at most :data:`MAX_ATTEMPT_FETCHES` of them (beyond: a warning)."""
        from .harness_graph import earlier_attempt_ids

        data = doc.get("data") if isinstance(doc, Mapping) else None
        graph = (data or {}).get("executionGraph") if isinstance(data, Mapping) else None
        nodes = (graph or {}).get("nodeMap") if isinstance(graph, Mapping) else None
        wanted: dict[str, None] = {}  # each id once, in order
        for node in (nodes or {}).values() if isinstance(nodes, Mapping) else ():
            for retry_id in earlier_attempt_ids(node) if isinstance(node, Mapping) else ():
                if isinstance(retry_id, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,128}", retry_id):
                    wanted[retry_id] = None
        if len(wanted) > MAX_ATTEMPT_FETCHES:
            warnings.warn(
                f"Harness: run {run_id} has {len(wanted):,} earlier attempts of retried nodes: the first "
                f"{MAX_ATTEMPT_FETCHES} are fetched (the others keep their attempt number, without their "
                "times)",
                HistoryWarning,
                stacklevel=2,
            )
        attempts = []
        for retry_id in list(wanted)[:MAX_ATTEMPT_FETCHES]:
            old, _ = self.client.call(
                "GET",
                f"{self.base}/pipeline/api/pipelines/getExecutionNode",
                {**self.scope, "nodeExecutionId": retry_id},
                what=f"node {retry_id}",
                missing_ok=True,  # an attempt Harness no longer keeps: its number stays
            )
            if isinstance(old, Mapping) and isinstance(old.get("data"), Mapping):
                attempts.append(old["data"])
        return attempts


def _epoch_ms(when: Any) -> int:
    """Milliseconds since the Unix epoch of a time (naive times are UTC)."""
    import pandas as pd

    try:
        stamp = pd.Timestamp(when)
    except (ValueError, TypeError):
        raise HistoryError(f"since= is a time (ISO text, datetime), not {excerpt(repr(when), 60)}") from None
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.value // 1_000_000)
