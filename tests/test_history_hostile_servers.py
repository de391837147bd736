"""Fetching histories from servers that are hostile, broken or slow (a real HTTP server on
127.0.0.1, hand-written answers): nested JSON, endless or repeating pages, links to another
host, rate limits with odd headers, credentials in a URL, tokens echoed in another form,
Ctrl-C while a request waits. Each ends with a clear :class:`HistoryError` (or the
interrupt) promptly, and no secret in any message or file."""

from __future__ import annotations

import base64
import copy
import json
import re
import signal
import threading
import time
from pathlib import Path

import pytest
from test_github_runs import JOBS
from test_history_fetch import SECRET, Server, fetch, github_routes, ok

from notebook_pipelines.formats import history_fetch
from notebook_pipelines.formats.history import HistoryError, HistoryWarning, read_json
from notebook_pipelines.formats.history_fetch import (
    fetch_github_history,
    fetch_gitlab_history,
    fetch_harness_history,
)
from notebook_pipelines.formats.history_store import write_raw

RUNS = "/repos/o/r/actions/workflows/ci.yml/runs"
FIXTURES = Path(__file__).parent / "fixtures" / "harness_executions"


@pytest.fixture
def server():
    s = Server()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()
    s.thread.join()


def test_an_answer_nested_100000_deep_is_a_clear_error_not_a_recursion_error(server, tmp_path):
    deep = b"[" * 100_000 + b"]" * 100_000
    server.routes[("GET", RUNS)] = lambda q, b: (200, {}, deep)
    with pytest.raises(HistoryError, match=r"GitHub: the answer of .*/runs.*: the JSON is nested too deeply"):
        fetch(server, tmp_path)
    server.routes[("GET", RUNS)] = lambda q, b: (500, {}, deep)  # an error answer too
    with pytest.raises(HistoryError, match=r"GitHub answered 500 for"):
        fetch(server, tmp_path)


def test_json_text_or_file_nested_too_deeply_or_not_utf8_is_a_history_error(tmp_path):
    with pytest.raises(HistoryError, match=r"the jobs JSON: the JSON is nested too deeply"):
        read_json("[" * 100_000 + "]" * 100_000, "the jobs JSON")
    path = tmp_path / "jobs.json"
    path.write_bytes(b'{"jobs": ["\xff"]}')
    with pytest.raises(HistoryError, match=r"jobs.json: byte 12 is not UTF-8"):
        read_json(path, "the jobs JSON")


@pytest.mark.parametrize("after", ["soon", "Wed, 99 Foo 2026 25:61:00 GMT"])
def test_a_429_with_a_retry_after_that_is_neither_seconds_nor_a_date_waits_a_second(server, tmp_path, after):
    github_routes(server, [1])
    listing = server.routes[("GET", RUNS)]
    calls = []

    def limited(query, body):
        calls.append(time.monotonic())
        return (429, {"Retry-After": after}, b"{}") if len(calls) == 1 else listing(query, body)

    server.routes[("GET", RUNS)] = limited
    assert set(fetch(server, tmp_path, last=1)["run_id"]) == {"1"}
    assert len(calls) == 2 and 0.9 <= calls[1] - calls[0] < 2.5


def test_the_password_of_a_base_url_is_in_no_message(server, tmp_path):
    """``base_url="http://user:password@host"`` (a proxy or an Enterprise server): the
    password is sent, never shown — not when the server is slow, nor in a 404."""
    with_password = server.url.replace("http://", "http://me:pw-0123456789-secret@")

    def slow(query, body):
        time.sleep(1.5)
        return ok({"workflow_runs": []})

    server.routes[("GET", RUNS)] = slow
    with pytest.raises(HistoryError, match=r"did not answer within 1 s") as info:
        fetch(server, tmp_path, base_url=with_password, deadline=1)
    assert "pw-0123456789-secret" not in str(info.value) and "me:" not in str(info.value)
    server.routes.pop(("GET", RUNS))
    with pytest.raises(HistoryError, match=r"GitHub answered 404 for http://127\.0\.0\.1:\d+/repos") as info:
        fetch(server, tmp_path, base_url=with_password)
    assert "pw-0123456789-secret" not in str(info.value)


@pytest.mark.parametrize(
    "echo",
    [SECRET.upper(), "".join(f"%{ord(c):02X}" for c in SECRET)],
    ids=["upper-case", "percent-encoded"],
)
def test_a_token_the_server_echoes_in_another_form_is_in_no_message(server, tmp_path, echo):
    body = ('{"message": "Bad credentials: ' + echo + '"}').encode()
    server.routes[("GET", RUNS)] = lambda q, b: (401, {}, body)
    with pytest.raises(HistoryError, match=r"GitHub answered 401 .*Bad credentials: \*\*\*") as info:
        fetch(server, tmp_path)
    assert SECRET.lower() not in str(info.value).lower() and "%67%68%70" not in str(info.value)


def test_a_token_echoed_in_another_letter_case_is_not_kept_in_the_cache(server, tmp_path):
    github_routes(server, [1])
    echo = copy.deepcopy(JOBS)
    echo["jobs"][0]["steps"][1]["name"] = f"Run echo {SECRET.upper()}"
    server.routes[("GET", "/repos/o/r/actions/runs/1/jobs")] = lambda q, b: ok(echo)
    history = fetch(server, tmp_path, last=1)
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file():
            assert SECRET.upper().encode() not in path.read_bytes(), path
    assert "Run echo ***" in set(history["name"].dropna())


def test_a_next_page_on_another_host_is_refused_without_sending_the_token(server, tmp_path):
    """A ``Link`` to another server (here: the same port on another loopback name) is not
    followed: the token would go with it."""
    other = server.url.replace("127.0.0.1", "localhost")
    for link in (f"{other}{RUNS}?page=2", server.url.replace("http:", "https:") + RUNS + "?page=2"):
        server.seen.clear()
        server.routes[("GET", RUNS)] = lambda q, b, link=link: ok(
            {"workflow_runs": [{"id": 9, "status": "in_progress"}]}, Link=f'<{link}>; rel="next"'
        )
        with pytest.raises(
            HistoryError, match=r"the next page .* is not under http://127.0.0.1:\d+: refused"
        ):
            fetch(server, tmp_path)
        assert len(server.seen) == 1


def test_paging_keeps_the_password_of_the_base_url(server, tmp_path):
    """The server's ``Link`` has no ``user:password@``; the next page is still on the same
    server, so it is followed, with the same credentials."""
    runs = [3, 2, 1]
    github_routes(server, runs)
    with_password = server.url.replace("http://", "http://me:pw@")
    history = fetch(server, tmp_path, base_url=with_password)
    assert sorted(set(history["run_id"])) == ["1", "2", "3"]
    assert all(h.get("Authorization") == "Basic bWU6cHc=" for _, _, h in server.seen)  # me:pw


def test_a_next_page_that_repeats_one_already_read_is_an_error_at_once(server, tmp_path):
    """``Link: rel="next"`` pointing at the page just read: without a check, the loop asks for
    it again and again until the deadline (and lists its runs again each time)."""
    same = f"{server.url}{RUNS}?per_page=3&status=completed"
    server.routes[("GET", RUNS)] = lambda q, b: ok(
        {"workflow_runs": [{"id": 9, "status": "in_progress"}]}, Link=f'<{same}>; rel="next"'
    )
    started = time.monotonic()
    with pytest.raises(HistoryError, match=r"GitHub: the pages of .* come back to one already read"):
        fetch(server, tmp_path, deadline=5)
    assert time.monotonic() - started < 1 and len(server.seen) == 1


def test_pages_that_never_end_stop_at_max_pages(server, tmp_path, monkeypatch):
    from notebook_pipelines.formats import history_pages

    monkeypatch.setattr(history_pages, "MAX_PAGES", 5)
    github_routes(server, [1])

    def endless(query, body):
        page = int(query.get("page", ["1"])[0])
        link = f'<{server.url}/repos/o/r/actions/runs/1/jobs?page={page + 1}>; rel="next"'
        return ok(copy.deepcopy(JOBS), Link=link)

    server.routes[("GET", "/repos/o/r/actions/runs/1/jobs")] = endless
    with pytest.raises(HistoryError, match=r"GitHub: run 1 has more than 5 pages: refused"):
        fetch(server, tmp_path, last=1, deadline=5)
    assert len(server.paths("/runs/1/jobs")) == 5
    assert not list((tmp_path / "cache").rglob("1.json"))


def test_a_run_listed_again_on_the_next_page_is_fetched_once(server, tmp_path):
    """A run started while the list is paged shifts it: page 2 begins with page 1's last run."""
    github_routes(server, [4, 3, 2, 1])
    listing = server.routes[("GET", RUNS)]

    def shifted(query, body):
        status, headers, data = listing(query, body)
        doc = json.loads(data)
        if query.get("page") == ["2"]:
            doc["workflow_runs"].insert(0, {**doc["workflow_runs"][0], "id": 3, "run_number": 3})
        return status, headers, json.dumps(doc).encode()

    server.routes[("GET", RUNS)] = shifted
    history = fetch(server, tmp_path, last=3, concurrency=1)
    assert sorted(set(history["run_id"])) == ["2", "3", "4"]
    assert len(server.paths("/runs/3/jobs")) == 1


def test_gitlab_an_x_next_page_that_repeats_is_an_error_at_once(server, tmp_path):
    base = "/api/v4/projects/g%2Fp"
    server.routes[("GET", base)] = lambda q, b: ok({"path_with_namespace": "g/p"})
    server.routes[("GET", f"{base}/pipelines")] = lambda q, b: ok(
        [{"id": 1, "status": "running"}], **{"X-Next-Page": "1"}
    )
    started = time.monotonic()
    with pytest.raises(HistoryError, match=r"GitLab: the pages of pipelines of 'g/p' come back .*page 1"):
        fetch_gitlab_history("g/p", url=server.url, token="t", cache=tmp_path, progress=False, deadline=5)
    assert time.monotonic() - started < 1 and len(server.paths("/pipelines")) == 1


def test_harness_a_page_that_repeats_the_runs_already_read_is_an_error_at_once(server, tmp_path):
    """The server ignores ``page`` and says there are a million pages."""
    server.routes[("POST", "/pipeline/api/pipelines/execution/summary")] = lambda q, b: ok(
        {"data": {"content": [{"planExecutionId": "a1", "status": "Running"}], "totalPages": 10**6}}
    )
    started = time.monotonic()
    with pytest.raises(HistoryError, match=r"Harness: page 1 of the runs of 'p' repeats runs already read"):
        fetch_harness_history(
            pipeline="p", account="a", org="o", project="pr", api_key=SECRET, base_url=server.url,
            cache=tmp_path, progress=False, deadline=5,
        )  # fmt: skip
    assert time.monotonic() - started < 1 and len(server.seen) == 2


@pytest.mark.parametrize("source", ["github", "gitlab-graphql"])
def test_ctrl_c_ends_a_fetch_whose_requests_wait_for_a_silent_server_at_once(server, tmp_path, source):
    """Every answer the pool waits for takes 8 s (a server that holds the connection): Ctrl-C
    0.5 s in ends the call within a second — the requests in flight are stopped, not waited
    for — and no thread of the pool is left. GitLab: the waiting request is the GraphQL POST."""

    def silent(query, body):
        time.sleep(8)
        return ok({})

    if source == "github":
        github_routes(server, [2, 1])
        for rid in (1, 2):
            server.routes[("GET", f"/repos/o/r/actions/runs/{rid}/jobs")] = silent
        call = lambda: fetch(server, tmp_path, last=2, concurrency=2, deadline=30)  # noqa: E731
    else:
        base = "/api/v4/projects/g%2Fp"
        server.routes[("GET", base)] = lambda q, b: ok({"path_with_namespace": "g/p"})
        server.routes[("GET", f"{base}/pipelines")] = lambda q, b: ok([{"id": 5, "status": "success"}])
        server.routes[("GET", f"{base}/pipelines/5")] = lambda q, b: ok(
            {"id": 5, "iid": 1, "sha": "f", "ref": "main", "status": "success"}
        )
        server.routes[("GET", f"{base}/pipelines/5/jobs")] = lambda q, b: ok([])
        server.routes[("POST", "/api/graphql")] = silent
        call = lambda: fetch_gitlab_history(  # noqa: E731
            "g/p", url=server.url, token="t", cache=tmp_path, progress=False, deadline=30
        )
    main = threading.main_thread().ident  # a real SIGINT to the main thread, as Ctrl-C sends
    timer = threading.Timer(0.5, signal.pthread_kill, (main, signal.SIGINT))
    started = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        call()
    assert time.monotonic() - started < 1.5
    timer.join()
    assert not [t for t in threading.enumerate() if t.name.startswith("nbp-fetch")]


def test_a_request_cut_by_the_end_of_the_deadline_says_so_and_that_the_runs_are_kept(server, tmp_path):
    """Run 1's jobs take 2 s and the deadline is 1.5 s: the error names what was left (not
    "within 0 s") and the deadline, and run 2, fetched before, is kept."""
    github_routes(server, [2, 1])
    route = server.routes[("GET", "/repos/o/r/actions/runs/1/jobs")]
    server.routes[("GET", "/repos/o/r/actions/runs/1/jobs")] = lambda q, b: (time.sleep(2), route(q, b))[1]
    with pytest.raises(HistoryError) as info:
        fetch(server, tmp_path, last=2, concurrency=1, deadline=1.5)
    message = str(info.value)
    assert "did not answer within 0 s" not in message
    assert re.search(
        r"did not answer within 1(\.\d)? s, the rest of the deadline of 1.5 s; the runs", message
    )
    assert [p.name for p in (tmp_path / "cache").rglob("*.json")] == ["2.json"]


def test_harness_a_listed_run_whose_start_is_not_a_number_is_a_clear_error(server, tmp_path):
    """Before: ValueError("invalid literal for int()") out of fetch_harness_history."""
    server.routes[("POST", "/pipeline/api/pipelines/execution/summary")] = lambda q, b: ok(
        {"data": {"content": [{"planExecutionId": "a1", "status": "Success", "startTs": "yesterday"}]}}
    )
    with pytest.raises(HistoryError, match=r"Harness: run a1 startTs: 'yesterday' is not a whole number"):
        fetch_harness_history(
            pipeline="p", account="a", org="o", project="pr", api_key=SECRET, base_url=server.url,
            cache=tmp_path, progress=False, since="2026-01-01",
        )  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("id", "1/../../../../user?", r"GitHub: the list of runs has a run whose id is '1/\.\./\.\./"),
        ("id", "9" * 300, r"GitHub: the list of runs has a run whose id is '9+…"),
        (
            "path",
            "../../../../user",
            r"GitHub: run 1: its workflow path '\.\./\.\./\.\./\.\./user' is not a file",
        ),
    ],
    ids=["id-with-a-path", "id-of-300-digits", "workflow-path-up"],
)
def test_a_listed_run_whose_id_or_path_would_leave_the_repository_is_refused(
    server, tmp_path, field, value, message
):
    """Ids and paths from the listing go into URLs (with the token) and file names: before,
    ``1/../../../../user?`` asked for ``/user`` and 300 digits failed with 'File name too long'."""
    github_routes(server, [1])
    listing = server.routes[("GET", RUNS)]

    def damaged(query, body):
        status, headers, data = listing(query, body)
        doc = json.loads(data)
        doc["workflow_runs"][0][field] = value
        return status, headers, json.dumps(doc).encode()

    server.routes[("GET", RUNS)] = damaged
    with pytest.raises(HistoryError, match=message):
        fetch(server, tmp_path, last=1)
    assert all(p.startswith(("/repos/o/r/actions/", "/repos/o/r/contents/.github")) for p in server.paths())
    assert not [p for p in server.paths() if "/user" in p]


@pytest.mark.parametrize("deadline", [float("nan"), float("inf"), "60"])
def test_a_deadline_that_is_not_a_positive_finite_number_is_refused(tmp_path, deadline):
    """Before: NaN and infinity were taken, and never ended anything (every ``left <= 0`` was
    False); "60" failed with a TypeError."""
    with pytest.raises(HistoryError, match=r"GitHub: deadline=.*: give the seconds the whole fetch may take"):
        fetch_github_history(
            "o/r", "ci.yml", cache=tmp_path, deadline=deadline, base_url="http://127.0.0.1:9"
        )


def test_a_workflow_file_that_is_not_yaml_leaves_its_run_out_with_a_warning_naming_it(server, tmp_path):
    """Before: a YamlSyntaxError about "the pipeline definition", naming no run (not a
    HistoryError, so ``nbp history fetch`` ended with a traceback), and no run was kept."""
    github_routes(server, [2, 1])
    workflow = server.routes[("GET", "/repos/o/r/contents/.github/workflows/ci.yml")]
    bad = {"content": base64.b64encode(b"jobs: [").decode(), "encoding": "base64"}
    server.routes[("GET", "/repos/o/r/contents/.github/workflows/ci.yml")] = lambda q, b: (
        ok(bad) if q.get("ref") == ["bad"] else workflow(q, b)
    )
    listing = server.routes[("GET", RUNS)]

    def one_at_a_bad_commit(query, body):
        status, headers, data = listing(query, body)
        doc = json.loads(data)
        doc["workflow_runs"][1]["head_sha"] = "bad"  # run 1
        return status, headers, json.dumps(doc).encode()

    server.routes[("GET", RUNS)] = one_at_a_bad_commit
    with pytest.warns(
        HistoryWarning, match=r"run 1 is left out: run 1: the workflow is not YAML \(line \d+:\d+"
    ):
        history = fetch(server, tmp_path, last=2)
    assert set(history["run_id"]) == {"2"}


def test_a_one_letter_token_is_redacted_in_the_kept_values_without_breaking_the_file(tmp_path):
    """Before: the token was replaced in the JSON text, so ``t`` turned ``true`` into
    ``***rue``; the file was then taken as damaged and silently deleted."""
    path = write_raw(
        tmp_path, "github", "o/r/ci.yml", "1", {"ok": True, "name": "echo T", "n": [1, 2]}, secret="t"
    )
    assert json.loads(path.read_text()) == {"ok": True, "name": "echo ***", "n": [1, 2]}


@pytest.mark.parametrize(
    "kept", [b'{"run": ', b'{"run": {"id": 2}, "jobs": "x", "workflow": "jobs: {a: {}}"}']
)
def test_a_kept_run_that_cannot_be_read_is_set_aside_with_a_warning_and_fetched_again(server, tmp_path, kept):
    """A raw file cut short, or one the loader refuses (edited, or kept by an older version):
    before, the first was deleted without a word (the run missing from the result) and the
    second made every later call fail. Now: a warning naming the run, the file moved aside
    (still there to look at), and the next call fetches the run again."""
    github_routes(server, [2, 1])
    fetch(server, tmp_path, last=1)  # run 2 fetched and kept
    (raw,) = (tmp_path / "cache" / "raw").rglob("2.json")
    (raw.parent / "1.json").write_bytes(kept)  # run 1: a damaged answer in the cache
    with pytest.warns(HistoryWarning, match=r"github o/r/ci.yml: the kept answers of run 1 cannot be read"):
        history = fetch(server, tmp_path, last=2)
    assert sorted(set(history["run_id"])) == ["2"]
    assert (raw.parent / ".1.rejected").read_bytes() == kept
    assert sorted(set(fetch(server, tmp_path, last=2)["run_id"])) == ["1", "2"]


def test_a_redirect_or_a_sign_in_page_says_what_happened_and_what_to_check(server, tmp_path):
    """Before: "GitHub answered 302 for …" (nothing about where, nor why it was not followed)
    and, for a proxy's HTML sign-in page, "is not JSON (cut short?): try again"."""
    server.routes[("GET", RUNS)] = lambda q, b: (302, {"Location": "https://sso.example/login?t=x"}, b"")
    with pytest.raises(
        HistoryError, match=r"302 .*it points to https://sso.example/login; redirects are not"
    ):
        fetch(server, tmp_path)
    server.routes[("GET", RUNS)] = lambda q, b: (200, {"Content-Type": "text/html"}, b"<html>Sign in</html>")
    with pytest.raises(
        HistoryError, match=r"/runs.* is a web page, not JSON \(a sign-in page, or a proxy's\?\)"
    ):
        fetch(server, tmp_path)


def _harness_run_with_retries(server, retry_ids):
    """One finished run r1 whose first step lists ``retry_ids`` as RETRY interrupts."""
    execution = json.loads((FIXTURES / "matrix_expired.json").read_text())
    nodes = execution["data"]["executionGraph"]["nodeMap"]
    step = next(n for n in nodes.values() if ".steps." in n.get("baseFqn", ""))
    step["interruptHistories"] = [
        {"interruptType": "RETRY", "tookEffectAt": 1_700_000_000_000 + i,
         "interruptConfig": {"retryInterruptConfig": {"retryId": rid}}}
        for i, rid in enumerate(retry_ids)
    ]  # fmt: skip
    server.routes[("POST", "/pipeline/api/pipelines/execution/summary")] = lambda q, b: ok(
        {"data": {"content": [{"planExecutionId": "r1", "status": "Success"}], "totalPages": 1}}
    )
    server.routes[("GET", "/pipeline/api/pipelines/execution/v2/r1")] = lambda q, b: ok(execution)
    server.routes[("GET", "/pipeline/api/pipelines/getExecutionNode")] = lambda q, b: (404, {}, b"{}")
    return lambda tmp_path: fetch_harness_history(
        pipeline="p", account="a", org="o", project="pr", api_key=SECRET, base_url=server.url,
        cache=tmp_path, progress=False, deadline=10,
    )  # fmt: skip


def test_harness_each_earlier_attempt_is_fetched_once_and_their_number_is_bounded(
    server, tmp_path, monkeypatch
):
    """40 RETRY interrupts naming 3 ids: 3 requests (before: 40). 300 distinct ids with the
    bound at 5: 5 requests and a warning (before: 300 requests, one per id)."""
    fetch_run = _harness_run_with_retries(server, ["a1", "a2", "a3"] * 13 + ["a1"])
    fetch_run(tmp_path / "one")
    assert len(server.paths("getExecutionNode")) == 3
    monkeypatch.setattr(history_fetch, "MAX_ATTEMPT_FETCHES", 5)
    server.seen.clear()
    fetch_run = _harness_run_with_retries(server, [f"id{i}" for i in range(300)])
    with pytest.warns(
        HistoryWarning, match=r"Harness: run r1 has 300 earlier attempts .*: the first 5 are fetched"
    ):
        fetch_run(tmp_path / "two")
    assert len(server.paths("getExecutionNode")) == 5


def test_a_workflow_file_over_1_mb_is_refused_before_it_is_parsed(server, tmp_path):
    """Parsing YAML takes seconds per MB in a pool thread that Ctrl-C waits for; before, a
    2 MB 'workflow' was parsed (about 10 s here). GitHub sends no content over 1 MB."""
    github_routes(server, [1])
    text = "jobs:\n" + "".join(f"  j{i}:\n    runs-on: x\n" for i in range(80_000))
    big = {"content": base64.b64encode(text.encode()).decode(), "encoding": "base64", "size": len(text)}
    server.routes[("GET", "/repos/o/r/contents/.github/workflows/ci.yml")] = lambda q, b: ok(big)
    started = time.monotonic()
    with pytest.raises(
        HistoryError, match=r"GitHub: the workflow file \.github/workflows/ci\.yml at .* is over 1 MB"
    ):
        fetch(server, tmp_path, last=1)
    assert time.monotonic() - started < 2


def test_harness_since_is_not_ended_by_a_queued_run_without_a_start(server, tmp_path):
    """The newest run waits in a queue (no ``startTs`` yet): before, it counted as started in
    1970, so ``since=`` stopped the listing there and no run was fetched."""
    execution = json.loads((FIXTURES / "matrix_expired.json").read_text())
    start = execution["data"]["pipelineExecutionSummary"]["startTs"]
    listed = [{"planExecutionId": "q1", "status": "Queued"},
              {"planExecutionId": "r1", "status": "Success", "startTs": start}]  # fmt: skip
    server.routes[("POST", "/pipeline/api/pipelines/execution/summary")] = lambda q, b: ok(
        {"data": {"content": listed, "totalPages": 1}}
    )
    server.routes[("GET", "/pipeline/api/pipelines/execution/v2/r1")] = lambda q, b: ok(execution)
    history = fetch_harness_history(
        pipeline="p", account="a", org="o", project="pr", api_key=SECRET, base_url=server.url,
        cache=tmp_path, progress=False, last=None, since=start - 86_400_000,
    )  # fmt: skip
    assert set(history["run_id"]) == {"r1"}


def test_a_hostile_link_header_is_read_in_linear_time(server, tmp_path):
    """``Link: <<<<…>`` (30,000 characters): the regular expression that looked for
    ``rel="next"`` backtracked quadratically (about 3 s here; half a minute at the 100 KB a
    header may hold). Read in one pass, it has no next page."""
    github_routes(server, [1])
    listing = server.routes[("GET", RUNS)]
    server.routes[("GET", RUNS)] = lambda q, b: (
        *listing(q, b)[:1],
        {"Link": "<" * 30_000 + ">"},
        listing(q, b)[2],
    )
    started = time.monotonic()
    assert set(fetch(server, tmp_path, last=1)["run_id"]) == {"1"}
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    "headers",
    [{"x-ratelimit-remaining": "0", "x-ratelimit-reset": "9" * 5000}, {"Retry-After": "1e308"}],
    ids=["reset-of-5000-digits", "retry-after-1e308"],
)
def test_a_rate_limit_far_past_any_deadline_is_a_short_clear_error(server, tmp_path, headers):
    """Before: a reset of 5,000 digits raised ValueError (Python refuses to read an int that
    long), and 'wait 1e308 s' printed all 309 digits of it."""
    server.routes[("GET", RUNS)] = lambda q, b: (
        403 if "x-ratelimit-reset" in headers else 429,
        headers,
        b"{}",
    )
    with pytest.raises(
        HistoryError, match=r"rate limited \(4\d\d\); the server asks to wait (months or more|inf s)"
    ) as info:
        fetch(server, tmp_path)
    assert len(str(info.value)) < 300


def test_a_run_the_loader_refuses_is_left_out_and_the_others_are_kept(server, tmp_path):
    """One run whose jobs name a job the workflow does not have: before, the whole fetch
    failed, on every call (that run is always listed). Now a warning names it; the others
    are kept, and it is asked for again next time (it was not kept)."""
    github_routes(server, [3, 2, 1])
    server.routes[("GET", "/repos/o/r/actions/runs/2/jobs")] = lambda q, b: ok(
        {"jobs": [{"id": 1, "name": "ghost", "conclusion": "success", "steps": []}]}
    )
    with pytest.warns(
        HistoryWarning, match=r"GitHub o/r/ci.yml: run 2 is left out: run 2: job 'ghost' is not in"
    ):
        history = fetch(server, tmp_path, last=3)
    assert sorted(set(history["run_id"])) == ["1", "3"]
    assert sorted(p.name for p in (tmp_path / "cache" / "raw").rglob("*.json")) == ["1.json", "3.json"]


def test_a_pipeline_with_no_finished_run_yet_is_an_empty_history(server, tmp_path):
    """Before: 'read_history: no history at …: fetch one first' — right after the fetch."""
    server.routes[("GET", RUNS)] = lambda q, b: ok({"workflow_runs": [{"id": 5, "status": "in_progress"}]})
    history = fetch(server, tmp_path)
    assert len(history) == 0 and "fqn" in history.columns and history.attrs["source"] == "github"


def test_a_next_page_naming_the_default_port_or_another_letter_case_is_the_same_server(server, tmp_path):
    """``https://api.github.com:443/…`` and ``https://API.github.com/…`` are the API the token
    was given for: before, compared as text, both were refused (and the fetch failed)."""
    github_routes(server, [3, 2, 1])
    listing = server.routes[("GET", RUNS)]

    def upper_case_links(query, body):
        status, headers, data = listing(query, body)
        return status, {k: v.replace("http://", "HTTP://") for k, v in headers.items()}, data

    server.routes[("GET", RUNS)] = upper_case_links
    assert sorted(set(fetch(server, tmp_path)["run_id"])) == ["1", "2", "3"]  # page 2 followed

    from notebook_pipelines.formats.history_pages import _under

    for link in (
        "https://api.github.com:443/repos/o/r/x?page=2",
        "https://API.GitHub.com/repos/o/r/x?page=2",
    ):
        assert _under("https://api.github.com", link) == link
    for link in (
        "http://api.github.com/repos/x",
        "https://api.github.com:8443/repos/x",
        "https://api.github.co/x",
    ):
        with pytest.raises(HistoryError, match=r"is not under https://api.github.com: refused"):
            _under("https://api.github.com", link)


@pytest.mark.parametrize("concurrency", ["many", None, 2.5])
def test_a_concurrency_that_is_not_a_whole_number_is_refused_before_anything_is_asked(
    server, tmp_path, concurrency
):
    """Before: the runs were listed, then int("many") raised ValueError (None: TypeError; 2.5
    was silently 2)."""
    github_routes(server, [1])
    with pytest.raises(HistoryError, match=r"concurrency= is a number of requests at once \(1 to 16\)"):
        fetch(server, tmp_path, concurrency=concurrency)
    assert server.seen == []
