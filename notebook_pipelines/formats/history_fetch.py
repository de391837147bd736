"""Fetch many runs from Harness, GitHub Actions or GitLab into a cached history.

Each ``fetch_*_history`` function lists the pipeline's runs (newest first, page by page),
fetches what one run needs (GitHub: its jobs of every attempt and the workflow file at its
commit; GitLab: the pipeline, its jobs with the retried ones, the ``needs`` by GraphQL;
Harness: the execution graph and the earlier attempts of retried nodes) for the runs not yet
in the cache, with at most ``concurrency`` requests at once, and returns the history of the
last ``last`` runs (:mod:`.history`). A second call fetches only the runs it has not kept.

Network rules: one overall ``deadline`` (seconds) for the whole call, each request's timeout
cut to what is left; ``429`` (and GitHub's ``403`` with ``x-ratelimit-remaining: 0``) waits
``Retry-After`` (or until ``x-ratelimit-reset``) when that fits in the deadline; ``401``,
``403``, ``404`` are errors saying what to check; a body cut short, or larger than
``MAX_BODY``, is refused; redirects are not followed. The token is sent in a header only; it
is never in a URL, a message, a repr, a log line or a cached file (messages replace it with
``***``). Runs still in progress are left out and fetched by a later call.

All HTTP goes through :func:`http_request` (one small function): GETs through the package's
bounded GET (:mod:`.http`: an overall deadline on every socket operation, bounded bodies), the
two POSTs (GitLab's GraphQL, Harness's execution list) through httpx with the same bounds.
"""

from __future__ import annotations

import base64
import concurrent.futures
import email.utils
import json
import os
import re
import sys
import threading
import time
import urllib.parse
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import excerpt
from .history import HistoryError, HistoryWarning, concat_runs
from .history_store import cache_dir, cached_raw, read_history, stored_runs, write_part, write_raw

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

#: the largest answer accepted (bytes)
MAX_BODY = 100 * 2**20
#: a request's own timeout (seconds), cut to what is left of the deadline
REQUEST_TIMEOUT = 30.0
_RETRIES = 5
GITHUB_API = "https://api.github.com"
GITLAB_URL = "https://gitlab.com"
HARNESS_URL = "https://app.harness.io"


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]  # lower-cased names
    body: bytes


def http_request(
    method: str, url: str, headers: Mapping[str, str], body: bytes | None, timeout: float
) -> Response:
    """One HTTP request within ``timeout`` seconds overall, the body read whole up to
    :data:`MAX_BODY`, no redirects: a GET through the package's bounded GET
    (:func:`~notebook_pipelines.formats.http.get`), a POST (GitLab's GraphQL, Harness's
    execution list) through httpx with the same bounds.

    Raises:
        HistoryError: the server cannot be reached, the answer is cut short or too large, the
            timeout passed. The message names the URL (which never holds a token).
    """
    if method == "GET":
        from .http import HttpError, HttpTimeout, HttpTooLarge, get

        try:
            return get(url, headers=headers, timeout=timeout, max_bytes=MAX_BODY, what="GET")
        except HttpTimeout:
            raise HistoryError(f"{excerpt(url, 160)} did not answer within {timeout:.0f} s") from None
        except HttpTooLarge:
            raise HistoryError(
                f"the answer of {excerpt(url, 160)} is over {MAX_BODY // 2**20} MB: refused"
            ) from None
        except HttpError as err:
            if "ProtocolError" in str(err):
                raise HistoryError(_CUT_SHORT.format(url=excerpt(url, 160))) from None
            raise HistoryError(str(err)) from None
    try:
        import httpx
    except ImportError:  # pragma: no cover - the extra is installed for the tests
        raise HistoryError(
            "fetching a history needs httpx: pip install 'notebook-pipelines[history]'"
        ) from None
    end = time.monotonic() + timeout
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=False) as client,
            client.stream(method, url, headers=dict(headers), content=body) as response,
        ):
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_BODY:
                    raise HistoryError(
                        f"the answer of {excerpt(url, 160)} is over {MAX_BODY // 2**20} MB: refused"
                    )
                if time.monotonic() > end:  # a server dripping its answer: the deadline is overall
                    raise httpx.ReadTimeout("overall")
                chunks.append(chunk)
            return Response(
                response.status_code,
                {k.lower(): v for k, v in response.headers.items()},
                b"".join(chunks),
            )
    except httpx.TimeoutException:
        raise HistoryError(f"{excerpt(url, 160)} did not answer within {timeout:.0f} s") from None
    except httpx.RemoteProtocolError:
        raise HistoryError(_CUT_SHORT.format(url=excerpt(url, 160))) from None
    except httpx.HTTPError as err:
        raise HistoryError(f"cannot reach {excerpt(url, 160)}: {type(err).__name__}") from None


_CUT_SHORT = "the answer of {url} was cut short (the connection closed before the whole body came): try again"


class _Client:
    """Requests with the deadline, retries on rate limits, clear errors; holds the token (never shown)."""

    def __init__(
        self,
        system: str,
        auth: dict[str, str],
        secret: str | None,
        deadline: float,
        request: Callable[..., Response] = http_request,
    ):
        self.system, self._auth, self._secret = system, auth, secret
        self.end = time.monotonic() + deadline
        self.deadline = deadline
        self.stop = threading.Event()
        self.request = request

    def __repr__(self) -> str:
        return f"<{self.system} client, token {'***' if self._secret else 'none'}>"

    def hide(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def left(self) -> float:
        return self.end - time.monotonic()

    def call(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None = None,
        *,
        body: Any = None,
        what: str = "",
        missing_ok: bool = False,
    ) -> tuple[Any, Mapping[str, str]]:
        """The parsed JSON of an answer and its headers (``missing_ok``: a 404 gives ``None``)."""
        if params:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(
                {k: v for k, v in params.items() if v is not None}, doseq=True
            )
        headers = {"Accept": "application/json", **self._auth}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        transient = 0
        for attempt in range(_RETRIES + 1):
            if self.stop.is_set():
                raise HistoryError(f"{self.system}: the fetch was stopped")
            left = self.left()
            if left <= 0:
                raise HistoryError(
                    f"{self.system}: the fetch ran past its deadline of {self.deadline:g} s; the runs "
                    "fetched so far are kept in the cache: call again to go on (or give a longer deadline=)"
                )
            try:
                response = self.request(method, url, headers, data, min(REQUEST_TIMEOUT, left))
            except HistoryError as err:
                raise HistoryError(self.hide(f"{self.system}: {err}")) from None
            status = response.status
            if status == 200:
                try:
                    return json.loads(response.body), response.headers
                except ValueError:
                    raise HistoryError(
                        f"{self.system}: the answer of {excerpt(url, 160)} is not JSON (cut short?): "
                        "try again"
                    ) from None
            wait = self._wait(response)
            if wait is not None and attempt < _RETRIES:
                if wait > self.left():
                    raise HistoryError(
                        f"{self.system}: rate limited ({status}); the server asks to wait {wait:.0f} s, "
                        "past the "
                        f"deadline of {self.deadline:g} s: call again later"
                    )
                self.stop.wait(wait)
                continue
            if status in (502, 503, 504) and transient < 2:
                transient += 1
                self.stop.wait(min(2.0**transient, max(0.0, self.left())))
                continue
            if status == 404 and missing_ok:
                return None, response.headers
            raise HistoryError(self.hide(self._error(status, url, response.body, what)))
        raise HistoryError(f"{self.system}: still rate limited after {_RETRIES} waits: call again later")

    @staticmethod
    def _wait(response: Response) -> float | None:
        """Seconds to wait before asking again, or None if this is not a rate limit."""
        h = response.headers
        limited = response.status == 429 or (response.status == 403 and h.get("x-ratelimit-remaining") == "0")
        if not limited:
            return None
        after = h.get("retry-after")
        if after:
            try:
                return max(0.0, float(after))
            except ValueError:
                when = email.utils.parsedate_to_datetime(after)
                return max(0.0, when.timestamp() - time.time()) if when else 1.0
        reset = h.get("x-ratelimit-reset")
        if reset and reset.isdigit():
            return max(0.0, int(reset) - time.time())
        return 1.0

    def _error(self, status: int, url: str, body: bytes, what: str) -> str:
        message = ""
        try:
            doc = json.loads(body)
            message = str(doc.get("message") or doc.get("error") or "") if isinstance(doc, Mapping) else ""
        except ValueError:
            pass
        where = f"{self.system} answered {status} for {excerpt(url, 160)}"
        detail = f": {excerpt(message, 200)}" if message else ""
        fix = {
            401: "the token was refused: check it (and that it has not expired)",
            403: "the token may not read this: check its scopes/permissions",
            404: f"no such {what or 'resource'}, or the token cannot see it: check the names "
            "(and the token's access)",
        }.get(status, "")
        return f"{where}{detail}" + (f" ({fix})" if fix else "")


class _Progress:
    """``progress=True``: one line on stderr at most once a second, and a last one; a callable
    is called with ``(done, total)``; False: nothing."""

    def __init__(self, progress: Any, label: str):
        self.progress, self.label, self.last = progress, label, 0.0
        self.lock = threading.Lock()

    def __call__(self, done: int, total: int) -> None:
        if not self.progress:
            return
        if callable(self.progress):
            self.progress(done, total)
            return
        with self.lock:
            now = time.monotonic()
            if done < total and now - self.last < 1.0:
                return
            self.last = now
            print(f"{self.label}: {done}/{total} runs fetched", file=sys.stderr, flush=True)


def _fetch_all(
    client: _Client, todo: list[Any], fetch_one: Callable[[Any], None], concurrency: int, progress: _Progress
) -> None:
    """``fetch_one(item)`` for every item, at most ``concurrency`` at once; the first error
    stops the rest (they finish the request they are in) and is raised; so is Ctrl-C."""
    total = len(todo)
    progress(0, total)
    if not todo:
        return
    pool = concurrent.futures.ThreadPoolExecutor(
        max(1, min(int(concurrency), 16)), thread_name_prefix="nbp-fetch"
    )
    try:
        futures = [pool.submit(fetch_one, item) for item in todo]
        for done, future in enumerate(concurrent.futures.as_completed(futures), start=1):
            future.result()
            progress(done, total)
    except BaseException:
        client.stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _token(token: str | None, env: str) -> str | None:
    value = token if token is not None else os.environ.get(env)
    return value or None


def _sync(folder: Path, source: str, pipeline: str, load: Callable[[str, dict], pd.DataFrame]) -> None:
    """Add to the Parquet dataset the runs kept as raw JSON but not yet in it (one new part)."""
    have = stored_runs(folder, source, pipeline)
    frames = []
    for run_id, path in sorted(cached_raw(folder, source, pipeline).items()):
        if run_id in have:
            continue
        try:
            doc = json.loads(path.read_bytes())
        except ValueError:
            path.unlink(missing_ok=True)  # not ours: written whole or not at all; fetch it again
            continue
        frame = load(run_id, doc)
        frame["source"], frame["pipeline"] = source, pipeline
        frames.append(frame)
    if frames:
        write_part(concat_runs(frames), folder)


def _result(folder: Path, source: str, pipeline: str, run_ids: list[str]) -> pd.DataFrame:
    history = read_history(folder, source=source, pipeline=pipeline)
    keep = history["run_id"].isin(set(run_ids))
    out = history[keep].reset_index(drop=True)
    out.attrs["source"], out.attrs["pipeline"] = source, pipeline
    return out


# -- GitHub -------------------------------------------------------------------------------------------
_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')


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
    last = _bounded(last)
    secret = _token(token, "GITHUB_TOKEN")
    auth = {"Authorization": f"Bearer {secret}"} if secret else {}
    auth["X-GitHub-Api-Version"] = "2022-11-28"
    client = _Client("GitHub", auth, secret, deadline)
    base = base_url.rstrip("/")
    folder = Path(cache) if cache is not None else cache_dir()
    pipeline = f"{repo}/{workflow}"
    wf = urllib.parse.quote(str(workflow), safe="")
    url = f"{base}/repos/{repo}/actions/workflows/{wf}/runs"
    params: dict[str, Any] = {"per_page": min(100, last), "status": "completed", "branch": branch}
    runs: list[dict] = []
    while url and len(runs) < last:
        doc, headers = client.call("GET", url, params, what=f"workflow {workflow!r} in {repo}")
        page = doc.get("workflow_runs") if isinstance(doc, Mapping) else None
        if not isinstance(page, list):
            raise HistoryError(f"GitHub: the answer of {excerpt(url, 160)} has no workflow_runs list")
        runs += [r for r in page if isinstance(r, Mapping) and r.get("status") == "completed"]
        match = _NEXT.search(headers.get("link", ""))
        url, params = (match.group(1) if match else None), None
        if url and not url.startswith(base + "/"):
            raise HistoryError(f"GitHub: the next page {excerpt(url, 160)} is not under {base}: refused")
        if not page:
            break
    runs = runs[:last]
    kept = cached_raw(folder, "github", pipeline)
    todo = [r for r in runs if str(r.get("id")) not in kept]
    workflows: dict[tuple, str] = {}
    lock = threading.Lock()

    def workflow_at(path: str, sha: str) -> str:
        with lock:
            if (path, sha) in workflows:
                return workflows[(path, sha)]
        doc, _ = client.call(
            "GET",
            f"{base}/repos/{repo}/contents/{urllib.parse.quote(path)}",
            {"ref": sha},
            what=f"workflow file {path} at {sha}",
        )
        try:
            text = base64.b64decode(doc["content"]).decode("utf-8")
        except (KeyError, TypeError, ValueError):
            raise HistoryError(f"GitHub: the contents of {path} at {sha} are not a base64 file") from None
        with lock:
            workflows[(path, sha)] = text
        return text

    def fetch_one(run: Mapping) -> None:
        run_id = str(run["id"])
        jobs: list = []
        url: str | None = f"{base}/repos/{repo}/actions/runs/{run_id}/jobs"
        params: Any = {"per_page": 100, "filter": "all"}
        while url:
            doc, headers = client.call("GET", url, params, what=f"run {run_id}")
            page = doc.get("jobs") if isinstance(doc, Mapping) else None
            if not isinstance(page, list):
                raise HistoryError(f"GitHub: run {run_id}: the jobs answer has no jobs list")
            jobs += page
            match = _NEXT.search(headers.get("link", ""))
            url, params = (match.group(1) if match else None), None
            if url and not url.startswith(base + "/"):
                raise HistoryError(f"GitHub: the next page {excerpt(url, 160)} is not under {base}: refused")
        text = workflow_at(str(run.get("path") or f".github/workflows/{workflow}"), str(run.get("head_sha")))
        load_github_run({"jobs": jobs}, workflow=text, run=run)  # refuse bad data before keeping it
        write_raw(
            folder, "github", pipeline, run_id, {"run": run, "jobs": jobs, "workflow": text}, secret=secret
        )

    _fetch_all(client, todo, fetch_one, concurrency, _Progress(progress, f"GitHub {pipeline}"))

    def load(run_id: str, doc: dict) -> pd.DataFrame:
        return load_github_run(
            {"jobs": doc["jobs"]}, workflow=doc["workflow"], run=doc["run"], pipeline=pipeline
        )

    _sync(folder, "github", pipeline, load)
    return _result(folder, "github", pipeline, [str(r["id"]) for r in runs])


def _bounded(last: Any) -> int:
    if isinstance(last, bool) or not isinstance(last, int) or not 1 <= last <= 10_000:
        raise HistoryError(f"last= is a number of runs from 1 to 10,000, not {excerpt(repr(last), 40)}")
    return last


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
    from .gitlab import load_gitlab_pipeline, needs_from_graphql

    last = _bounded(last)
    secret = _token(token, "GITLAB_TOKEN")
    client = _Client("GitLab", {"PRIVATE-TOKEN": secret} if secret else {}, secret, deadline)
    base = url.rstrip("/")
    folder = Path(cache) if cache is not None else cache_dir()
    pid = urllib.parse.quote(str(project), safe="")
    api = f"{base}/api/v4/projects/{pid}"
    pipeline = str(project)
    info, _ = client.call("GET", api, what=f"project {project!r}")
    full_path = str(info.get("path_with_namespace") or project) if isinstance(info, Mapping) else str(project)
    finished = {"success", "failed", "canceled", "skipped"}
    runs: list[dict] = []
    page: Any = 1
    while page and len(runs) < last:
        doc, headers = client.call(
            "GET",
            f"{api}/pipelines",
            {"per_page": min(100, last), "page": page, "ref": ref},
            what=f"pipelines of {project!r}",
        )
        if not isinstance(doc, list):
            raise HistoryError(f"GitLab: the pipelines of {project!r} are not a list")
        runs += [p for p in doc if isinstance(p, Mapping) and p.get("status") in finished]
        page = headers.get("x-next-page") or None
        if not doc:
            break
    runs = runs[:last]
    kept = cached_raw(folder, "gitlab", pipeline)
    todo = [r for r in runs if str(r.get("id")) not in kept]

    lock, warned = threading.Lock(), []

    def fetch_one(item: Mapping) -> None:
        run_id = str(item["id"])
        detail, _ = client.call("GET", f"{api}/pipelines/{run_id}", what=f"pipeline {run_id}")
        jobs: list = []
        page: Any = 1
        while page:
            doc, headers = client.call(
                "GET",
                f"{api}/pipelines/{run_id}/jobs",
                {"per_page": 100, "page": page, "include_retried": "true"},
                what=f"jobs of pipeline {run_id}",
            )
            if not isinstance(doc, list):
                raise HistoryError(f"GitLab: pipeline {run_id}: the jobs answer is not a list")
            jobs += doc
            page = headers.get("x-next-page") or None
            if not doc:
                break
        try:
            graph, _ = client.call(
                "POST",
                f"{base}/api/graphql",
                what="GraphQL",
                body={"query": _GRAPHQL, "variables": {"path": full_path, "iid": str(detail.get("iid"))}},
            )
            needs_from_graphql(graph, "GitLab's GraphQL answer")
        except HistoryError as err:
            if client.stop.is_set() or "deadline" in str(err):
                raise
            graph = None  # the edges are the stage order; said once
            with lock:
                if not warned:
                    warned.append(True)
                    warnings.warn(
                        f"GitLab: no needs from GraphQL ({excerpt(str(err), 200)}): jobs are taken to wait "
                        "for their previous stage",
                        HistoryWarning,
                        stacklevel=4,
                    )
        load_gitlab_pipeline(detail, jobs, graph, project=pipeline)  # refuse bad data before keeping it
        write_raw(
            folder,
            "gitlab",
            pipeline,
            run_id,
            {"pipeline": detail, "jobs": jobs, "graphql": graph},
            secret=secret,
        )

    _fetch_all(client, todo, fetch_one, concurrency, _Progress(progress, f"GitLab {pipeline}"))

    def load(run_id: str, doc: dict) -> pd.DataFrame:
        return load_gitlab_pipeline(doc["pipeline"], doc["jobs"], doc.get("graphql"), project=pipeline)

    _sync(folder, "gitlab", pipeline, load)
    return _result(folder, "gitlab", pipeline, [str(r["id"]) for r in runs])


# -- Harness ------------------------------------------------------------------------------------------
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
    from .harness_graph import _retries

    if last is None and since is None:
        raise HistoryError("fetch_harness_history: give last=N, since=…, or both")
    limit = _bounded(last) if last is not None else 10_000
    since_ms = None if since is None else _epoch_ms(since)
    secret = _token(api_key, "HARNESS_API_KEY")
    if not secret:
        raise HistoryError("fetch_harness_history: no API key: pass api_key=… or set HARNESS_API_KEY")
    client = _Client("Harness", {"x-api-key": secret}, secret, deadline)
    base = base_url.rstrip("/")
    folder = Path(cache) if cache is not None else cache_dir()
    scope = {"accountIdentifier": account, "orgIdentifier": org, "projectIdentifier": project}
    statuses = [status] if isinstance(status, str) else list(status or [])
    unfinished = {
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
    runs: list[dict] = []
    page = 0
    done = False
    while not done and len(runs) < limit:
        params = {
            **scope,
            "pipelineIdentifier": pipeline,
            "page": page,
            "size": min(100, limit),
            "status": statuses or None,
        }
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
        for item in content:
            if not isinstance(item, Mapping) or not item.get("planExecutionId"):
                continue
            if since_ms is not None and int(item.get("startTs") or 0) < since_ms:
                done = True
                break
            if str(item.get("status", "")).lower() in unfinished:
                continue
            if statuses and item.get("status") not in statuses:
                continue
            runs.append(dict(item))
        total_pages = data.get("totalPages")
        page += 1
        if not content or data.get("last") is True or (isinstance(total_pages, int) and page >= total_pages):
            break
    runs = runs[:limit]
    key = f"{org}/{project}/{pipeline}"
    kept = cached_raw(folder, "harness", key)
    todo = [r for r in runs if str(r["planExecutionId"]) not in kept]

    def fetch_one(item: Mapping) -> None:
        run_id = str(item["planExecutionId"])
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", run_id):
            raise HistoryError(f"Harness: {excerpt(repr(run_id), 80)} is not a planExecutionId")
        doc, _ = client.call(
            "GET",
            f"{base}/pipeline/api/pipelines/execution/v2/{run_id}",
            {**scope, "renderFullBottomGraph": "true"},
            what=f"execution {run_id}",
        )
        data = doc.get("data") if isinstance(doc, Mapping) else None
        graph = (data or {}).get("executionGraph") if isinstance(data, Mapping) else None
        nodes = (graph or {}).get("nodeMap") if isinstance(graph, Mapping) else None
        attempts = []
        for node in (nodes or {}).values() if isinstance(nodes, Mapping) else ():
            for retry_id in _retries(node) if isinstance(node, Mapping) else ():
                if retry_id:
                    old, _ = client.call(
                        "GET",
                        f"{base}/pipeline/api/pipelines/getExecutionNode",
                        {**scope, "nodeExecutionId": retry_id},
                        what=f"node {retry_id}",
                        missing_ok=True,  # an attempt Harness no longer keeps: its number stays
                    )
                    if isinstance(old, Mapping) and isinstance(old.get("data"), Mapping):
                        attempts.append(old["data"])
        raw = {"execution": doc, "attempts": attempts}
        _load_harness(run_id, raw, item, key)  # refuse bad data before keeping it
        write_raw(folder, "harness", key, run_id, {**raw, "summary": item}, secret=secret)

    _fetch_all(client, todo, fetch_one, concurrency, _Progress(progress, f"Harness {pipeline}"))

    def load(run_id: str, doc: dict) -> pd.DataFrame:
        return _load_harness(run_id, doc, doc.get("summary") or {}, key)

    _sync(folder, "harness", key, load)
    return _result(folder, "harness", key, [str(r["planExecutionId"]) for r in runs])


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


def _load_harness(run_id: str, raw: Mapping, summary: Mapping, pipeline: str) -> pd.DataFrame:
    """A Harness run (graph + earlier attempts) as history rows: the trace of
    :func:`~.harness_executions.load_harness_execution` and the run columns from its summary."""
    import pandas as pd

    from ..engine.trace import COLUMNS
    from .harness_executions import HarnessExecutionError, load_harness_execution
    from .history import RUN_COLUMNS, history_dtypes
    from .history_store import EXTRAS

    try:
        trace = load_harness_execution(raw["execution"], attempts=raw.get("attempts") or None, run_id=run_id)
    except HarnessExecutionError as err:
        raise HistoryError(f"Harness run {run_id}: {err}") from None
    execution = raw["execution"]
    data = execution.get("data") if isinstance(execution, Mapping) else None
    s = dict((data or {}).get("pipelineExecutionSummary") or {}) if isinstance(data, Mapping) else {}
    s.update({k: v for k, v in summary.items() if s.get(k) is None})
    trigger = s.get("executionTriggerInfo") if isinstance(s.get("executionTriggerInfo"), Mapping) else {}
    module = s.get("moduleInfo") if isinstance(s.get("moduleInfo"), Mapping) else {}
    ci = module.get("ci") if isinstance(module.get("ci"), Mapping) else {}
    git = s.get("gitDetails") if isinstance(s.get("gitDetails"), Mapping) else {}
    created, start = s.get("createdAt") or s.get("startTs"), s.get("startTs")
    types = history_dtypes()
    n = len(trace)
    out = trace.copy()
    values = {
        "source": "harness",
        "pipeline": pipeline,
        "run_number": s.get("runSequence"),
        "commit": git.get("commitId"),
        "branch": ci.get("branch") or git.get("branch"),
        "trigger": trigger.get("triggerType"),
        "url": None,
        "name": None,
    }
    for name, value in values.items():
        out[name] = pd.array([value] * n, dtype=types[name])
    stamp = pd.NaT if created is None else pd.Timestamp(int(created), unit="ms", tz="UTC")
    out["created"] = pd.array([stamp] * n, dtype=types["created"])
    queued = [float("nan")] * n
    if created is not None and start is not None and n:
        queued[0] = max(0, int(start) - int(created)) / 1000  # the pipeline row: the run's queue
    out["queued_s"] = queued
    return out[[*COLUMNS, *RUN_COLUMNS, *[c for c in EXTRAS if c in out.columns]]]
