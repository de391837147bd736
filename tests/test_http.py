"""The bounded GET (formats/http.py) and fetch_harness_execution against hostile servers (issue 24
item 10): real HTTP servers on 127.0.0.1 in threads, never the internet."""

from __future__ import annotations

import gzip
import http.server
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from notebook_pipelines.formats import http as nbp_http
from notebook_pipelines.formats.harness_executions import (
    MAX_BYTES,
    HarnessExecutionError,
    fetch_harness_execution,
)

REPO = Path(__file__).resolve().parents[1]
CD = REPO / "tests" / "fixtures" / "harness_executions" / "cd_parallel.json"
SECRET = "pat.synthetic.0123456789abcdef.NOTAREALKEY"


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers with whatever ``plan`` does; ``seen`` the requests, ``sent`` the body bytes written."""

    plan: ClassVar[Callable[[_Handler], None]]
    seen: ClassVar[list] = []
    sent: ClassVar[list] = [0]
    stop: ClassVar[threading.Event] = threading.Event()

    def do_GET(self):
        type(self).seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        try:
            type(self).plan(self)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: what a bounded client does

    def answer(self, body: bytes, status: int = 200, **headers: str) -> None:
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.write(body)

    def write(self, data: bytes) -> None:
        self.wfile.write(data)
        type(self).sent[0] += len(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.seen, _Handler.sent = [], [0]
    _Handler.stop = threading.Event()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads, httpd.block_on_close = True, False
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    _Handler.stop.set()  # a dripping handler ends at once
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def fetch(base_url: str, **options) -> object:
    options = {"api_key": SECRET, "path": None, **options}
    return fetch_harness_execution("run1", account="a", org="o", project="p", base_url=base_url, **options)


def test_a_deeply_nested_body_is_refused_with_our_error(server, tmp_path):
    _Handler.plan = lambda h: h.answer(b'{"data": ' * 100_000 + b"1" + b"}" * 100_000)
    with pytest.raises(
        HarnessExecutionError, match="the answer for run1: the JSON is nested too deeply to read"
    ):
        fetch(server, path=tmp_path / "x.json")  # was a raw RecursionError
    assert not (tmp_path / "x.json").exists()


def test_an_error_body_nested_deeply_still_gives_the_status(server):
    _Handler.plan = lambda h: h.answer(b'{"message": ' * 100_000 + b"1" + b"}" * 100_000, status=500)
    with pytest.raises(HarnessExecutionError, match=r"Harness answered 500 for run1$"):
        fetch(server)


def _drip(h: _Handler, headers_too: bool) -> None:
    """One byte every 0.2 s: each read is quick, the whole answer never comes."""
    head = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    if not headers_too:
        h.wfile.write(head)
        h.wfile.flush()
    for byte in (head if headers_too else b"") + b"{" * 100_000:
        if type(h).stop.wait(0.2):
            return
        h.wfile.write(bytes([byte]))
        h.wfile.flush()


_DRIP_CLIENT = """
import sys, time
from notebook_pipelines.formats.harness_executions import HarnessExecutionError, fetch_harness_execution
started = time.perf_counter()
try:
    fetch_harness_execution("run1", account="a", org="o", project="p", api_key="k", base_url=sys.argv[1],
                            timeout=1.0)
except HarnessExecutionError as err:
    print(f"{time.perf_counter() - started:.1f}|{err}")
"""


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "headers"])
def test_a_server_that_drips_cannot_stretch_the_timeout(server, headers_too):
    _Handler.plan = lambda h: _drip(h, headers_too)
    done = subprocess.run(
        [sys.executable, "-c", _DRIP_CLIENT, server], capture_output=True, text=True, cwd=REPO, timeout=30
    )  # a hard timeout: the per-read timeout never fired, the call took 100,000 × 0.2 s
    took, message = done.stdout.strip().split("|", 1)
    assert message == f"fetch_harness_execution(): no complete answer from {server}/pipeline/api/pipelines/" \
        "execution/v2/run1 within 1 s (the whole call)", done.stderr[-2000:]  # fmt: skip
    assert float(took) < 1.5  # 1 s, and at most one short read more


def _big_body(total: int, length: bool) -> Callable[[_Handler], None]:
    def plan(h: _Handler) -> None:
        h.send_response(200)
        if length:
            h.send_header("Content-Length", str(total))
        h.end_headers()
        chunk = b" " * 2**20
        for _ in range(total // len(chunk)):
            h.write(chunk)

    return plan


def test_a_body_over_the_bound_is_refused_while_streaming(server):
    total = MAX_BYTES + 200 * 2**20  # 300 MB, no Content-Length: read until the bound, then stop
    _Handler.plan = _big_body(total, length=False)
    with pytest.raises(
        HarnessExecutionError, match=r"the execution run1 is over 100 MB: refused \(reading stopped"
    ):
        fetch(server)
    time.sleep(0.3)  # the server notices the closed connection
    assert _Handler.sent[0] < MAX_BYTES + 20 * 2**20  # the old client read all 300 MB first


def test_a_content_length_over_the_bound_is_refused_before_reading(server):
    _Handler.plan = _big_body(600 * 2**20, length=True)
    with pytest.raises(HarnessExecutionError, match=r"over 100 MB: refused"):
        fetch(server)
    time.sleep(0.3)
    assert _Handler.sent[0] < 20 * 2**20


def _bomb(inflated: int) -> bytes:
    pack = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"\0" * 2**20
    return b"".join([*(pack.compress(zeros) for _ in range(inflated // len(zeros))), pack.flush()])


def test_a_gzip_bomb_stops_inflating_at_the_bound(server):
    bomb = _bomb(400 * 2**20)  # 400 MB of zeros in ~400 KB
    assert len(bomb) < 2**20
    _Handler.plan = lambda h: h.answer(bomb, Content_Encoding="gzip", Content_Length=str(len(bomb)))
    tracemalloc.start()
    try:
        with pytest.raises(HarnessExecutionError, match=r"is over 100 MB: refused \(reading stopped there\)"):
            fetch(server)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MAX_BYTES + 30 * 2**20  # the old client inflated all 400 MB, then refused
    assert "gzip" in _Handler.seen[0][1]["accept-encoding"]


def test_a_gzipped_answer_is_read(server, tmp_path):
    body = CD.read_bytes()
    _Handler.plan = lambda h: h.answer(gzip.compress(body), Content_Encoding="gzip")
    trace = fetch(server, path=tmp_path / "run.json")
    assert len(trace) == 13 and (tmp_path / "run.json").read_bytes() == body


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_credentials_in_the_base_url_are_never_shown(server):
    port = _closed_port()
    with pytest.raises(HarnessExecutionError, match="cannot reach") as err:
        fetch(f"http://admin:hunter2pass@127.0.0.1:{port}")
    assert "hunter2pass" not in str(err.value) and "admin" not in str(err.value)
    assert f"cannot reach http://127.0.0.1:{port}/pipeline/api/pipelines/execution/v2/run1:" in str(err.value)
    # a reachable server gets them as Basic authentication, and an error still hides them
    _Handler.plan = lambda h: h.answer(json.dumps({"message": "bad hunter2pass"}).encode(), status=403)
    with pytest.raises(HarnessExecutionError, match="403") as err:
        fetch(server.replace("http://", "http://admin:hunter2pass@"))
    assert "hunter2pass" not in str(err.value)
    assert _Handler.seen[0][1]["authorization"] == "Basic YWRtaW46aHVudGVyMnBhc3M="  # admin:hunter2pass


def test_a_key_with_characters_a_header_cannot_hold_is_a_clear_error(server):
    for key, kind in (("pat.clé.secret", "a non-ASCII character at position 7"),
                      ("pat.a\nInjected: 1", "a line break or control character at position 6")):  # fmt: skip
        with pytest.raises(HarnessExecutionError) as err:
            fetch(server, api_key=key)  # was a raw UnicodeEncodeError
        assert f"the API key has {kind} of" in str(err.value)
        assert key not in str(err.value) and "secret" not in str(err.value)
    assert _Handler.seen == []  # nothing was sent


@pytest.mark.parametrize(
    "echo",
    [
        SECRET.upper(),
        SECRET.lower(),
        SECRET.swapcase(),
        SECRET.replace(".", "%2E"),
        SECRET.replace(".", "%2e"),
    ],
)
def test_a_key_echoed_in_any_form_is_redacted(server, echo):
    body = json.dumps({"message": f"Token {echo} is invalid"}).encode()
    _Handler.plan = lambda h: h.answer(body, status=401)
    with pytest.raises(HarnessExecutionError) as err:
        fetch(server)
    text = str(err.value)
    assert "Token *** is invalid" in text and "check the API key" in text
    assert SECRET.lower() not in text.lower().replace("%2e", ".")


# -- the function itself: its API for other clients ---------------------------------------------------
def test_get_returns_any_status_with_headers_and_the_body(server):
    _Handler.plan = lambda h: h.answer(b'{"a": 1}', status=404, X_Thing="yes")
    response = nbp_http.get(server + "/x?y=1", params={"z": "2 3"}, max_bytes=100, timeout=5)
    assert response.status == 404 and response.headers["x-thing"] == "yes"
    assert response.json() == {"a": 1} and response.url == server + "/x"
    assert _Handler.seen[0][0] == "/x?y=1&z=2+3"
    assert repr(response) == f"Response(status=404, 8 bytes, url='{server}/x')"


def test_get_refuses_what_it_cannot_ask(server):
    with pytest.raises(nbp_http.HttpError, match="is not an http:// or https:// URL"):
        nbp_http.get("ftp://example.invalid/x", max_bytes=1)
    with pytest.raises(nbp_http.HttpError, match="timeout=0"):
        nbp_http.get(server, max_bytes=1, timeout=0)
    _Handler.plan = lambda h: h.answer(b"x", Content_Encoding="br")
    with pytest.raises(nbp_http.HttpError, match="encoded as 'br', which this client does not read"):
        nbp_http.get(server, max_bytes=10, timeout=5)
    _Handler.plan = lambda h: h.answer(b"12345678901")
    with pytest.raises(nbp_http.HttpTooLarge):
        nbp_http.get(server, max_bytes=10, timeout=5)
    assert nbp_http.get(server, max_bytes=11, timeout=5).body == b"12345678901"


# -- over TLS: the deadline holds through the handshake (a certificate made with openssl) --------------
@pytest.fixture
def tls_server(tmp_path, monkeypatch) -> Iterator[str]:
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust it, as a company's authority is trusted
    _Handler.seen, _Handler.sent, _Handler.stop = [], [0], threading.Event()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads, httpd.block_on_close = True, False
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{httpd.server_port}"
    _Handler.stop.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_over_tls_an_answer_is_read_and_a_drip_is_cut_at_the_deadline(tls_server):
    _Handler.plan = lambda h: h.answer(b'{"ok": true}')
    assert nbp_http.get(tls_server + "/x", max_bytes=100, timeout=10).json() == {"ok": True}
    _Handler.plan = lambda h: _drip(h, headers_too=False)
    started = time.perf_counter()
    with pytest.raises(nbp_http.HttpTimeout, match=r"within 1 s \(the whole call\)"):
        nbp_http.get(tls_server + "/x", max_bytes=10**6, timeout=1.0)
    assert time.perf_counter() - started < 1.5


def test_over_tls_with_a_stop_event_the_sliced_handshake_and_reads_give_the_same_answer(tls_server):
    """With ``stop`` (as the history fetchers call it) the TLS handshake and the reads wait in
    slices: the certificate is still checked, the answer the same, a drip still cut."""
    stop = threading.Event()
    _Handler.plan = lambda h: h.answer(b'{"ok": true}')
    assert nbp_http.get(tls_server + "/x", max_bytes=100, timeout=10, stop=stop).json() == {"ok": True}
    _Handler.plan = lambda h: _drip(h, headers_too=False)
    started = time.perf_counter()
    with pytest.raises(nbp_http.HttpTimeout, match=r"within 1 s \(the whole call\)"):
        nbp_http.get(tls_server + "/x", max_bytes=10**6, timeout=1.0, stop=stop)
    assert time.perf_counter() - started < 1.5


def test_a_key_the_execution_echoes_is_in_neither_the_saved_file_nor_the_trace(server, tmp_path):
    """A step's name (or its parameters) can hold what a script printed — the key, here
    upper-cased. Before: the file was the answer's bytes as they came, and the trace showed it."""
    doc = json.loads(CD.read_text())
    node = next(
        n for n in doc["data"]["executionGraph"]["nodeMap"].values() if n.get("stepType") == "ShellScript"
    )
    node["name"] = f"echo {SECRET.upper()}"
    node["status"] = "Failed"
    node["failureInfo"] = {"message": f"curl -H 'x-api-key: {SECRET}' exited with 22"}
    _Handler.plan = lambda h: h.answer(json.dumps(doc).encode())
    trace = fetch(server, path=tmp_path / "run.json")
    saved = (tmp_path / "run.json").read_text()
    assert SECRET.lower() not in saved.lower() and "echo ***" in saved
    assert "curl -H 'x-api-key: ***' exited with 22" in set(trace["error"].dropna())
    assert SECRET.lower() not in trace.to_csv().lower()


def test_an_infinite_timeout_is_refused_before_anything_is_sent(server):
    """Before: ``timeout=float("inf")`` was taken: no deadline at all, so a silent server held
    the call (and the kernel) forever."""
    with pytest.raises(
        nbp_http.HttpError, match=r"timeout=inf: give a number of seconds > 0 \(not infinite\)"
    ):
        nbp_http.get(server, max_bytes=1, timeout=float("inf"))
    with pytest.raises(HarnessExecutionError, match=r"timeout=inf"):
        fetch(server, timeout=float("inf"))
    assert _Handler.seen == []


def test_stop_ends_a_connect_that_a_silent_network_leaves_waiting():
    """A listening socket whose backlog is full drops new handshakes (as a firewall does): a
    plain connect waits for its whole timeout. With ``stop`` set after 0.3 s (what Ctrl-C does
    to the fetching threads), the call ends at once with HttpStopped."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    queued = []
    for _ in range(4):  # fill the backlog; none is accepted
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        queued.append(c)
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(nbp_http.HttpStopped, match=r"stopped while asking http://127.0.0.1:\d+/x"):
            nbp_http.get(f"http://127.0.0.1:{port}/x", max_bytes=10, timeout=5, stop=stop)
        assert time.monotonic() - started < 1.0
    finally:
        timer.join()
        for c in [*queued, listener]:
            c.close()


def test_stop_ends_a_tls_handshake_that_the_server_never_answers():
    """A server that accepts the connection and never answers the TLS hello: the handshake
    waited for the whole timeout. With ``stop`` set after 0.3 s it ends at once."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    held = []
    accepting = threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True)
    accepting.start()
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(nbp_http.HttpStopped, match=r"stopped while asking https://127.0.0.1:\d+/x"):
            nbp_http.get(f"https://127.0.0.1:{port}/x", max_bytes=10, timeout=5, stop=stop)
        assert time.monotonic() - started < 1.0
    finally:
        timer.join()
        accepting.join(1)
        for c in [*held, listener]:
            c.close()
