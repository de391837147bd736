"""Fetching histories (issue 26) from a real HTTP server on 127.0.0.1 serving hand-written JSON
in the documented shapes: paging, an incremental second fetch, 401/403/404, 429 with
Retry-After, a truncated body, the deadline, progress, and a token that never shows."""

from __future__ import annotations

import base64
import copy
import http.server
import json
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
from test_github_runs import JOBS, RUN, WORKFLOW
from test_gitlab_runs import GRAPHQL
from test_gitlab_runs import JOBS as GL_JOBS
from test_gitlab_runs import PIPELINE as GL_PIPELINE

import notebook_pipelines as nbp
from notebook_pipelines.formats.history import HistoryError
from notebook_pipelines.formats.history_fetch import (
    fetch_github_history,
    fetch_gitlab_history,
    fetch_harness_history,
)

SECRET = "ghp_synthetic_0123456789abcdefNOTAREALTOKEN"
FIXTURES = Path(__file__).parent / "fixtures" / "harness_executions"


class Server:
    """Routes: ``(method, path) → handler(query, body) → (status, headers, body bytes)``."""

    def __init__(self):
        self.routes = {}
        self.seen = []  # (method, path with query, headers)
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _serve(self, method):
                parsed = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with outer.lock:
                    outer.seen.append((method, self.path, dict(self.headers)))
                handler = outer.routes.get((method, parsed.path))
                if handler is None:
                    status, headers, data = 404, {}, b'{"message": "Not Found"}'
                else:
                    status, headers, data = handler(urllib.parse.parse_qs(parsed.query), body)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if "Content-Length" not in headers and not callable(data):
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if callable(data):  # a body written by the route itself (a server that drips)
                    data(self.wfile)
                    return
                self.wfile.write(data)

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def paths(self, fragment=""):
        return [p for _, p, _ in self.seen if fragment in p]


@pytest.fixture
def server():
    s = Server()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()
    s.thread.join()


def ok(doc, **headers):
    return 200, {"Content-Type": "application/json", **headers}, json.dumps(doc).encode()


def github_routes(server, runs):
    """A repo o/r with workflow ci.yml whose runs are ``runs`` (ids, newest first), 2 per page."""

    def listing(query, body):
        page = int(query.get("page", ["1"])[0])
        chunk = runs[(page - 1) * 2 : page * 2]
        items = [
            {**RUN, "id": rid, "run_number": rid, "created_at": f"2026-01-0{rid}T10:00:00Z"} for rid in chunk
        ]
        headers = {}
        if page * 2 < len(runs):
            headers["Link"] = (
                f'<{server.url}/repos/o/r/actions/workflows/ci.yml/runs?page={page + 1}>; rel="next"'
            )
        return ok({"total_count": len(runs), "workflow_runs": items}, **headers)

    server.routes[("GET", "/repos/o/r/actions/workflows/ci.yml/runs")] = listing
    for rid in range(1, 10):
        jobs = copy.deepcopy(JOBS)
        for j in jobs["jobs"]:
            j["run_id"] = rid
        server.routes[("GET", f"/repos/o/r/actions/runs/{rid}/jobs")] = lambda q, b, jobs=jobs: ok(jobs)
    content = {"content": base64.b64encode(WORKFLOW.encode()).decode(), "encoding": "base64"}
    server.routes[("GET", "/repos/o/r/contents/.github/workflows/ci.yml")] = lambda q, b: ok(content)


def fetch(server, tmp_path, **more):
    options = {
        "last": 3,
        "token": SECRET,
        "base_url": server.url,
        "cache": tmp_path / "cache",
        "progress": False,
    }
    options.update(more)
    return fetch_github_history("o/r", "ci.yml", **options)


def test_github_pages_fetches_each_run_and_keeps_raw_json_and_parquet(server, tmp_path):
    runs = [5, 4, 3, 2, 1]
    github_routes(server, runs)
    history = fetch(server, tmp_path)
    assert sorted(set(history["run_id"])) == ["3", "4", "5"]  # the 3 newest, over two pages
    assert len(server.paths("/actions/workflows/ci.yml/runs")) == 2
    assert sorted(p.split("/")[6] for p in server.paths("/jobs")) == ["3", "4", "5"]
    assert all("filter=all" in p for p in server.paths("/jobs"))
    assert all("ref=abc123" in p for p in server.paths("/contents/"))
    headers = {k.lower(): v for k, v in server.seen[0][2].items()}
    assert headers["authorization"] == f"Bearer {SECRET}"
    one = history[history["run_id"] == "4"]
    assert len(one) == 29 and set(one["source"]) == {"github"} and set(one["pipeline"]) == {"o/r/ci.yml"}
    raw = tmp_path / "cache" / "raw" / "github" / "o%2Fr%2Fci.yml"
    assert sorted(p.name for p in raw.iterdir()) == ["3.json", "4.json", "5.json"]
    assert set(json.loads((raw / "4.json").read_text())) == {"run", "jobs", "workflow"}
    parts = list(
        (tmp_path / "cache" / "history" / "source=github" / "pipeline=o%2Fr%2Fci.yml").glob("*.parquet")
    )
    assert len(parts) == 1
    back = nbp.read_history(tmp_path / "cache")
    assert sorted(set(back["run_id"])) == ["3", "4", "5"]
    assert list(back["after"]) == list(history["after"])


def test_github_second_fetch_asks_only_for_new_runs(server, tmp_path):
    runs = [3, 2, 1]
    github_routes(server, runs)
    fetch(server, tmp_path)
    runs.insert(0, 4)  # a new run appears
    server.seen.clear()
    history = fetch(server, tmp_path)
    assert sorted(set(history["run_id"])) == ["2", "3", "4"]
    assert [p.split("/")[6] for p in server.paths("/jobs")] == ["4"]  # only the new run's jobs
    assert len(list((tmp_path / "cache" / "history").rglob("*.parquet"))) == 2  # one new part


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, r"GitHub answered 401 .*the token was refused: check it"),
        (403, r"GitHub answered 403 .*check its scopes/permissions"),
        (404, r"GitHub answered 404 .*no such workflow 'ci.yml' in o/r, or the token cannot see it"),
    ],
)
def test_github_http_errors_are_clear_and_never_show_the_token(server, tmp_path, capsys, status, expected):
    message = json.dumps({"message": f"Bad credentials {SECRET}"}).encode()
    server.routes[("GET", "/repos/o/r/actions/workflows/ci.yml/runs")] = lambda q, b: (status, {}, message)
    with pytest.raises(HistoryError, match=expected) as info:
        fetch(server, tmp_path)
    assert SECRET not in str(info.value) and "***" in str(info.value)
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.json"))


def test_github_429_waits_for_retry_after(server, tmp_path):
    github_routes(server, [1])
    listing = server.routes[("GET", "/repos/o/r/actions/workflows/ci.yml/runs")]
    calls = []

    def limited(query, body):
        calls.append(time.monotonic())
        if len(calls) == 1:
            return 429, {"Retry-After": "1"}, b'{"message": "slow down"}'
        return listing(query, body)

    server.routes[("GET", "/repos/o/r/actions/workflows/ci.yml/runs")] = limited
    history = fetch(server, tmp_path, last=1)
    assert set(history["run_id"]) == {"1"}
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.95


def test_a_rate_limit_past_the_deadline_is_an_error_at_once(server, tmp_path):
    server.routes[("GET", "/repos/o/r/actions/workflows/ci.yml/runs")] = lambda q, b: (
        403,
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + 3600)},
        b"{}",
    )
    started = time.monotonic()
    with pytest.raises(HistoryError, match=r"rate limited \(403\); the server asks to wait 3\d\d\d s"):
        fetch(server, tmp_path, deadline=5)
    assert time.monotonic() - started < 2


def test_a_truncated_body_is_refused_and_nothing_is_half_written(server, tmp_path):
    github_routes(server, [2, 1])
    whole = json.dumps(JOBS).encode()
    server.routes[("GET", "/repos/o/r/actions/runs/1/jobs")] = lambda q, b: (
        200,
        {"Content-Length": str(len(whole))},
        whole[: len(whole) // 2],
    )
    with pytest.raises(HistoryError, match=r"cut short"):
        fetch(server, tmp_path, last=2, concurrency=1)
    files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert all(p.name == "2.json" for p in files)  # run 2 whole, or nothing; no temp file, no part of 1
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_the_deadline_bounds_the_whole_call(server, tmp_path):
    def slow(query, body):
        time.sleep(3)
        return ok({"workflow_runs": []})

    server.routes[("GET", "/repos/o/r/actions/workflows/ci.yml/runs")] = slow
    started = time.monotonic()
    with pytest.raises(HistoryError, match=r"did not answer within 1 s"):
        fetch(server, tmp_path, deadline=1)
    assert time.monotonic() - started < 2.5


def test_progress_and_the_token_in_no_file_repr_or_message(server, tmp_path, capsys):
    github_routes(server, [3, 2, 1])
    echo = copy.deepcopy(JOBS)
    echo["jobs"][0]["steps"][1]["name"] = f"Run echo {SECRET}"  # an answer that echoes the token
    server.routes[("GET", "/repos/o/r/actions/runs/1/jobs")] = lambda q, b: ok(echo)
    seen = []
    history = fetch(server, tmp_path, progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, 3) and seen[-1] == (3, 3) and len(seen) == 4
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in repr(history) + str(history.attrs)
    assert "Run echo ***" in set(history["name"].dropna())
    fetch(server, tmp_path, progress=True)  # the text progress goes to stderr
    out, err = capsys.readouterr()
    assert "GitHub o/r/ci.yml: 0/0 runs fetched" in err and SECRET not in out + err


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(HistoryError, match="repo is 'owner/name'"):
        fetch_github_history("nope", "ci.yml", cache=tmp_path)
    with pytest.raises(HistoryError, match="last= is a number of runs from 1 to 10,000"):
        fetch_github_history("o/r", "ci.yml", last=0, cache=tmp_path)


# -- GitLab -------------------------------------------------------------------------------------------
def test_gitlab_pages_pipelines_jobs_and_graphql(server, tmp_path):
    base = "/api/v4/projects/g%2Fp"
    pipelines = [{**GL_PIPELINE, "id": i, "iid": i} for i in (503, 502, 501, 500)]

    def listing(query, body):
        page = int(query["page"][0])
        headers = {"x-next-page": str(page + 1)} if page < 2 else {"x-next-page": ""}
        return ok(pipelines[(page - 1) * 2 : page * 2], **headers)

    graphql_bodies = []
    server.routes[("GET", base)] = lambda q, b: ok({"id": 77, "path_with_namespace": "g/p"})
    server.routes[("GET", f"{base}/pipelines")] = listing
    for p in pipelines:
        server.routes[("GET", f"{base}/pipelines/{p['id']}")] = lambda q, b, p=p: ok(p)
        server.routes[("GET", f"{base}/pipelines/{p['id']}/jobs")] = lambda q, b: ok(
            GL_JOBS, **{"x-next-page": ""}
        )
    server.routes[("POST", "/api/graphql")] = lambda q, b: graphql_bodies.append(json.loads(b)) or ok(GRAPHQL)
    history = fetch_gitlab_history(
        "g/p", last=3, token=SECRET, url=server.url, cache=tmp_path, progress=False
    )
    assert sorted(set(history["run_id"])) == ["501", "502", "503"]
    assert len(server.paths(f"{base}/pipelines?")) == 2
    assert all("include_retried=true" in p for p in server.paths("/jobs"))
    assert (
        graphql_bodies[0]["variables"]["path"] == "g/p"
        and "previousStageJobsOrNeeds" in graphql_bodies[0]["query"]
    )
    headers = {k.lower(): v for k, v in server.seen[0][2].items()}
    assert headers["private-token"] == SECRET
    pages = history[(history["run_id"] == "502") & (history["step"] == "pages")]
    assert [tuple(a) for a in pages["after"]] == [("pipeline.stages.build.spec.execution.steps.compile",)]
    for path in tmp_path.rglob("*"):
        assert not path.is_file() or SECRET.encode() not in path.read_bytes()


# -- Harness ------------------------------------------------------------------------------------------
def test_harness_lists_fetches_graphs_and_earlier_attempts(server, tmp_path):
    execution = json.loads((FIXTURES / "cd_parallel.json").read_text())
    attempts = json.loads((FIXTURES / "cd_parallel.attempts.json").read_text())
    attempt_nodes = [a["data"] for a in attempts]  # getExecutionNode answers
    start = execution["data"]["pipelineExecutionSummary"]["startTs"]  # no createdAt there: the list's is used
    summaries = [
        {
            "planExecutionId": f"run{i}",
            "status": "Success",
            "runSequence": 42,
            "startTs": start,
            "createdAt": start - 500,
        }
        for i in (3, 2, 1)
    ]

    def listing(query, body):
        page = int(query["page"][0])
        assert json.loads(body) == {"filterType": "PipelineExecution"}
        return ok(
            {"status": "SUCCESS", "data": {"content": summaries[page * 2 : page * 2 + 2], "totalPages": 2}}
        )

    server.routes[("POST", "/pipeline/api/pipelines/execution/summary")] = listing
    for i in (3, 2, 1):
        server.routes[("GET", f"/pipeline/api/pipelines/execution/v2/run{i}")] = lambda q, b: ok(execution)

    def node(query, body):
        wanted = query["nodeExecutionId"][0]
        found = [n for n in attempt_nodes if n.get("uuid") == wanted]
        return ok({"status": "SUCCESS", "data": found[0]}) if found else (404, {}, b"{}")

    server.routes[("GET", "/pipeline/api/pipelines/getExecutionNode")] = node

    def fetch():
        return fetch_harness_history(
            pipeline="release",
            account="a",
            org="o",
            project="p",
            last=3,
            api_key=SECRET,
            base_url=server.url,
            cache=tmp_path,
            progress=False,
        )

    history = fetch()
    assert sorted(set(history["run_id"])) == ["run1", "run2", "run3"]
    assert len(server.paths("/execution/summary")) == 2
    assert all("renderFullBottomGraph=true" in p for p in server.paths("/execution/v2/"))
    one = history[history["run_id"] == "run2"]
    rollout = one[(one["stage"] == "deploy_us") & (one["step"] == "rollout")]
    assert list(rollout["attempt"]) == [1, 2]  # the earlier attempt fetched by getExecutionNode
    head = one.iloc[0]
    assert (head["source"], head["pipeline"], head["run_number"], head["queued_s"]) == (
        "harness",
        "o/p/release",
        42,
        0.5,
    )
    server.seen.clear()
    fetch()
    assert server.paths("/execution/v2/") == []  # all kept: nothing fetched again


def test_ctrl_c_during_a_fetch_leaves_no_thread_and_no_half_written_file(server, tmp_path):
    """The main thread is interrupted while the pool fetches (each jobs answer takes 1 s): the
    KeyboardInterrupt comes through, the pool's threads have ended when it does, and the cache
    holds whole files only."""
    import _thread

    github_routes(server, [4, 3, 2, 1])
    for rid in (1, 2, 3, 4):
        route = server.routes[("GET", f"/repos/o/r/actions/runs/{rid}/jobs")]
        server.routes[("GET", f"/repos/o/r/actions/runs/{rid}/jobs")] = lambda q, b, route=route: (
            time.sleep(1.0),
            route(q, b),
        )[1]
    timer = threading.Timer(0.5, _thread.interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        fetch(server, tmp_path, last=4, concurrency=2)
    timer.join()
    assert not [t for t in threading.enumerate() if t.name.startswith("nbp-fetch")]
    assert not list((tmp_path / "cache").rglob("*.tmp")) if (tmp_path / "cache").exists() else True
    for path in (tmp_path / "cache").rglob("*.json") if (tmp_path / "cache").exists() else ():
        json.loads(path.read_text())  # whole JSON


def test_a_failed_parquet_write_leaves_no_part(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from notebook_pipelines.formats.github import load_github_run
    from notebook_pipelines.formats.history_store import write_part

    run = load_github_run(JOBS, workflow=WORKFLOW, run=RUN)

    def broken(table, where, **options):
        Path(where).write_bytes(b"PAR1 half")  # a part of a file, then the disk fills up
        raise OSError("No space left on device")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(OSError, match="No space"):
        write_part(run, tmp_path)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_the_dataset_reads_as_it_is_with_pandas(server, tmp_path):
    import pandas as pd

    github_routes(server, [2, 1])
    fetch(server, tmp_path, last=2)
    plain = pd.read_parquet(tmp_path / "cache" / "history")  # Hive partitions: source and pipeline come back
    assert set(plain["source"].astype(str)) == {"github"} and set(plain["pipeline"].astype(str)) == {
        "o/r/ci.yml"
    }
    assert sorted(set(plain["run_id"])) == ["1", "2"]


def test_the_client_repr_hides_the_token():
    from notebook_pipelines.formats.history_client import ApiClient

    client = ApiClient("GitHub", {"Authorization": f"Bearer {SECRET}"}, SECRET, 10)
    assert SECRET not in repr(client) and "***" in repr(client)
    assert client.hide(f"echo {SECRET}") == "echo ***"


def test_harness_since_stops_paging_at_older_runs(server, tmp_path):
    execution = json.loads((FIXTURES / "cd_parallel.json").read_text())
    start = execution["data"]["pipelineExecutionSummary"]["startTs"]
    summaries = [
        {"planExecutionId": f"run{i}", "status": "Success", "startTs": start - i * 86_400_000}
        for i in range(6)
    ]  # run0 today, run1 a day before, …

    def listing(query, body):
        page = int(query["page"][0])
        return ok({"data": {"content": summaries[page * 2 : page * 2 + 2], "totalPages": 3}})

    server.routes[("POST", "/pipeline/api/pipelines/execution/summary")] = listing
    for i in range(6):
        server.routes[("GET", f"/pipeline/api/pipelines/execution/v2/run{i}")] = lambda q, b: ok(execution)
    since = pd_stamp(start - 2 * 86_400_000)  # run0, run1, run2 started at or after it
    history = fetch_harness_history(
        pipeline="release",
        account="a",
        org="o",
        project="p",
        last=None,
        since=since,
        api_key=SECRET,
        base_url=server.url,
        cache=tmp_path,
        progress=False,
    )
    assert sorted(set(history["run_id"])) == ["run0", "run1", "run2"]
    assert len(server.paths("/execution/summary")) == 2  # the page holding run3 ended the listing


def pd_stamp(ms: int) -> str:
    import pandas as pd

    return pd.Timestamp(ms, unit="ms", tz="UTC").isoformat()


def test_gitlab_without_graphql_warns_and_takes_the_stage_order(server, tmp_path):
    from notebook_pipelines.formats.history import HistoryWarning

    base = "/api/v4/projects/g%2Fp"
    server.routes[("GET", base)] = lambda q, b: ok({"id": 77, "path_with_namespace": "g/p"})
    server.routes[("GET", f"{base}/pipelines")] = lambda q, b: ok([GL_PIPELINE], **{"x-next-page": ""})
    server.routes[("GET", f"{base}/pipelines/500")] = lambda q, b: ok(GL_PIPELINE)
    server.routes[("GET", f"{base}/pipelines/500/jobs")] = lambda q, b: ok(GL_JOBS, **{"x-next-page": ""})
    server.routes[("POST", "/api/graphql")] = lambda q, b: ok(
        {"errors": [{"message": "Field 'pipeline' doesn't exist"}]}
    )
    with pytest.warns(HistoryWarning, match="no needs from GraphQL .*previous stage"):
        history = fetch_gitlab_history(
            "g/p", last=1, token=SECRET, url=server.url, cache=tmp_path, progress=False
        )
    pages = history[history["step"] == "pages"]
    assert [len(a) for a in pages["after"]] == [
        3
    ]  # the whole test stage (unit, rspec, lint), not just compile


def test_a_server_that_drips_its_answer_is_cut_at_the_deadline(server, tmp_path):
    """Headers at once, then a byte every 0.2 s for 4 s: no single read waits long, so only an
    overall deadline stops it (1 s here)."""

    def drip(out):
        for _ in range(20):
            try:
                out.write(b" ")
                out.flush()
            except OSError:
                return
            time.sleep(0.2)

    server.routes[("GET", "/repos/o/r/actions/workflows/ci.yml/runs")] = lambda q, b: (
        200,
        {"Content-Length": "100"},
        drip,
    )
    started = time.monotonic()
    with pytest.raises(HistoryError, match=r"did not answer within 1 s"):
        fetch(server, tmp_path, deadline=1)
    assert time.monotonic() - started < 2.5
