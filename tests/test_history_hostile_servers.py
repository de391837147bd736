"""Fetching histories from servers that are hostile, broken or slow (a real HTTP server on
127.0.0.1, hand-written answers): nested JSON, endless or repeating pages, links to another
host, rate limits with odd headers, credentials in a URL, tokens echoed in another form,
Ctrl-C while a request waits. Each ends with a clear :class:`HistoryError` (or the
interrupt) promptly, and no secret in any message or file."""

from __future__ import annotations

import time

import pytest
from test_history_fetch import Server, fetch, github_routes

from notebook_pipelines.formats.history import HistoryError, read_json

RUNS = "/repos/o/r/actions/workflows/ci.yml/runs"


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
