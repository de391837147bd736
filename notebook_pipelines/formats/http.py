"""One bounded HTTP request for every API client of the package (Harness executions, CI histories).

A server can be slow, hostile or broken; a notebook must not pay for it. :func:`get`:

- ends within ``timeout`` seconds **overall** — connecting, TLS, the headers and the whole body
  (each socket operation waits at most for the time left, so a server that drips one byte every
  half second cannot stretch the call; the read timeouts of HTTP libraries are per read);
- reads the body as a stream and stops at ``max_bytes`` — counted **after** decompression (the
  client asks for ``gzip``/``deflate`` and inflates the body itself, chunk by chunk, with a bound:
  a 1 MB gzip bomb stops at the limit instead of inflating to 1 GB); a ``Content-Length`` over
  the limit is refused before reading;
- never shows a secret: the ``user:password@`` of a URL is sent as Basic authentication and
  left out of every message, and each of ``secrets`` (an API key…) is redacted from messages in
  every form a server may echo it (any letter case, percent-encoded, JSON-escaped);
- refuses header values that cannot be sent (non-ASCII, line breaks) with a message that names
  the header, not the value;
- follows no redirects (a 3xx is returned like any status); honours ``HTTPS_PROXY``/
  ``HTTP_PROXY``/``NO_PROXY``.

It returns a :class:`Response` for any status (the caller decides what a 404 means) and raises
:class:`HttpError` (``HttpTimeout``, ``HttpTooLarge``, or the base class for an unreachable
server) with a one-line message: what was asked, of where, what went wrong.

Built on ``httpcore`` (installed with ``httpx``: the ``[harness]`` extra).

>>> redact("Token ABC-def is invalid; abc-DEF again", ["abc-def"])
'Token *** is invalid; *** again'
>>> safe_url("https://me:s3cret@example.com/api?x=1")
'https://example.com/api'
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import ssl
import threading
import time
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import HttpError, HttpStopped, HttpTimeout, HttpTooLarge, excerpt
from .http_sockets import DeadlineBackend, Expired, Stopped

__all__ = [
    "MAX_JSON_CONTAINERS",
    "HttpError",
    "HttpStopped",
    "HttpTimeout",
    "HttpTooLarge",
    "Response",
    "get",
    "load_json",
    "redact",
    "redact_values",
    "request",
    "safe_url",
    "url_secrets",
]


#: the most objects and arrays :meth:`Response.json` parses (each costs ~100 bytes of memory)
MAX_JSON_CONTAINERS = 4_000_000
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Response:
    """A complete answer: ``status``, ``headers`` (names lower-cased), the decoded ``body``."""

    status: int
    headers: Mapping[str, str]
    body: bytes = field(repr=False)
    url: str = ""  # without credentials or query

    def __repr__(self) -> str:
        return f"Response(status={self.status}, {len(self.body):,} bytes, url={self.url!r})"

    def json(self, what: str = "the answer", max_containers: int = MAX_JSON_CONTAINERS) -> Any:
        """The body as JSON (see :func:`load_json`)."""
        return load_json(self.body, what, max_containers)


def load_json(data: bytes | str, what: str, max_containers: int = MAX_JSON_CONTAINERS) -> Any:
    """JSON with bounds: at most ``max_containers`` objects and arrays (counted on the text,
    before parsing; ``{``/``[`` in strings count too), nesting that Python's parser can follow.

    >>> load_json(b'{"a": [1, 2]}', "x")
    {'a': [1, 2]}
    >>> try:
    ...     load_json(b"[" * 100_000 + b"]" * 100_000, "the answer")
    ... except ValueError as err:
    ...     print(err)
    the answer: the JSON is nested too deeply to read

    Raises:
        ValueError: not UTF-8, not JSON, too many objects, nested too deeply (the message
            starts with ``what``).
    """
    raw = data.encode() if isinstance(data, str) else data
    containers = raw.count(b"{") + raw.count(b"[")
    if containers > max_containers:
        raise ValueError(
            f"{what}: the JSON holds {containers:,} objects and arrays (at most {max_containers:,})"
        )
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError(f"{what}: the JSON is nested too deeply to read") from None
    except UnicodeDecodeError:
        raise ValueError(f"{what}: the JSON is not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{what}:{err.lineno}:{err.colno}: not JSON ({err.msg})") from None


def safe_url(url: str) -> str:
    """``url`` without ``user:password@``, query or fragment: what messages may show."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<an invalid URL>"
    return urllib.parse.urlunsplit((parts.scheme, host + port, parts.path, "", ""))


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every form of each secret replaced by ``***``: each character as written in
    any letter case, percent-encoded (``%2E``, ``%2e``, ``+`` for a space) or JSON-escaped
    (``\\u00e9``), in any mix.

    >>> redact('{"message": "key PAT%2eAbc\\u0044 refused"}', ["pat.abcd"])
    '{"message": "key *** refused"}'
    """
    alternatives = []
    for secret in secrets:
        if not secret:
            continue
        parts = []
        for c in secret:
            forms = [re.escape(c)]
            for v in {c, c.lower(), c.upper()} if len(c.upper()) == 1 else {c}:  # É escaped is not é
                forms += ["".join(f"%{b:02x}" for b in v.encode()), f"\\\\u{ord(v):04x}"]
            if c == " ":
                forms.append(r"\+")
            parts.append(f"(?:{'|'.join(forms)})")
        alternatives.append("".join(parts))
    if not alternatives:
        return text
    return re.sub("|".join(alternatives), "***", text, flags=re.IGNORECASE)


def redact_values(doc: Any, secrets: Iterable[str]) -> tuple[Any, bool]:
    """``doc`` (parsed JSON) with each secret redacted (:func:`redact`) in every string value,
    and whether any was there: a copy when one was (walked without recursion: an answer may be
    nested deeply), ``doc`` itself when none was. The JSON around the values stays whole.

    >>> redact_values({"a": [True, "key PAT.X"], "b": 1}, ["pat.x"])
    ({'a': [True, 'key ***'], 'b': 1}, True)
    """
    secrets = [s for s in secrets if s]
    lowered = [s.lower() for s in secrets]
    root, changed = [doc], False
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        holder, key = stack.pop()
        value = holder[key]
        if isinstance(value, str):
            text = value.lower()
            if "%" in text or any(s in text for s in lowered):  # else no form of a secret is there
                new = redact(value, secrets)
                if new != value:
                    holder[key], changed = new, True
        elif isinstance(value, dict):
            value = holder[key] = dict(value)
            stack += [(value, k) for k in value]
        elif isinstance(value, list):
            value = holder[key] = list(value)
            stack += [(value, i) for i in range(len(value))]
    return (root[0], True) if changed else (doc, False)


def url_secrets(url: str) -> list[str]:
    """The password of ``url``'s ``user:password@`` (as written and decoded): what to redact.

    >>> url_secrets("https://me:p%40ss@example.com")
    ['p%40ss', 'p@ss']
    """
    try:
        password = urllib.parse.urlsplit(url).password
    except ValueError:
        return []
    return [password, urllib.parse.unquote(password)] if password else []


def _check_header(name: str, value: str) -> None:
    bad = next((i for i, c in enumerate(value) if not (" " <= c <= "~" or c == "\t")), None)
    if bad is not None:
        kind = "a line break or control character" if ord(value[bad]) < 128 else "a non-ASCII character"
        raise HttpError(
            f"the {name} header has {kind} at position {bad + 1} of {len(value)}; an HTTP header holds "
            "ASCII only: copy the value again (it is not shown here)"
        )


def _proxy_for(scheme: str, host: str) -> str | None:
    if urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(scheme)


def _ssl_context() -> ssl.SSLContext:
    """certifi's authorities and the system's, and ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set
    (a company's own authority, as ``httpx`` and ``requests`` read them)."""
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with httpx
        context = ssl.create_default_context()
    else:
        context = ssl.create_default_context(cafile=certifi.where())
        context.load_default_certs()
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile or capath:
        context.load_verify_locations(cafile=cafile or None, capath=capath or None)
    return context


def get(
    url: str,
    *,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    max_bytes: int,
    secrets: Iterable[str] = (),
    what: str = "GET",
    stop: threading.Event | None = None,
) -> Response:
    """``GET url`` within ``timeout`` seconds overall, reading at most ``max_bytes`` of body.

    Args:
        url: ``http://`` or ``https://``; a ``user:password@`` in it is sent as Basic auth.
        params: the query (added to ``url``'s own).
        headers: request headers (ASCII values).
        timeout: seconds for the whole call: connect, TLS, headers and body.
        max_bytes: the most bytes of body, after decompression.
        secrets: values never to show (an API key): redacted from every message.
        what: how messages name the call (``"fetch_harness_execution()"``).
        stop: an event that ends the call within a fifth of a second once set (another thread
            was interrupted: Ctrl-C), raising :class:`HttpStopped`.

    Returns:
        The :class:`Response`, whatever its status.

    Raises:
        HttpTimeout: no complete answer within ``timeout``.
        HttpTooLarge: a body over ``max_bytes`` (reading stopped there).
        HttpStopped: ``stop`` was set.
        HttpError: a bad URL or header, a server that cannot be reached, a broken answer.
    """
    return request(
        "GET", url, params=params, headers=headers, timeout=timeout, max_bytes=max_bytes,
        secrets=secrets, what=what, stop=stop,
    )  # fmt: skip


def request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    max_bytes: int,
    secrets: Iterable[str] = (),
    what: str = "GET",
    stop: threading.Event | None = None,
) -> Response:
    """:func:`get` for any method, with a request ``body`` (a POST of JSON): the same bounds."""
    try:
        import httpcore
    except ImportError:  # pragma: no cover - the extra is installed for the tests
        raise HttpError(f"{what} needs httpx: pip install 'notebook-pipelines[harness]'") from None
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 0 < timeout < math.inf:
        raise HttpError(f"{what}: timeout={timeout!r}: give a number of seconds > 0 (not infinite)")
    secrets = [s for s in secrets if s]
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise HttpError(
            f"{what}: {excerpt(redact(safe_url(url), secrets), 160)} is not a URL ({err})"
        ) from None
    secrets += url_secrets(url)
    shown = redact(safe_url(url), secrets)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpError(f"{what}: {excerpt(shown, 160)} is not an http:// or https:// URL", shown)

    def fail(kind: type[HttpError], message: str, status: int | None = None) -> HttpError:
        return kind(redact(f"{what}: {message}", secrets), shown, status)

    sent = _request_headers(parts, headers, secrets, fail)
    if body is not None:
        sent["Content-Length"] = str(len(body))
    request_url = _request_url(parts, port, params)
    deadline = time.monotonic() + timeout
    backend = DeadlineBackend(deadline, stop)
    proxy = _proxy_for(parts.scheme, parts.hostname)
    try:
        pool = _connection_pool(httpcore, parts, proxy, backend, secrets)
        with pool:
            timeouts = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
            with pool.stream(
                method,
                request_url,
                headers=list(sent.items()),
                content=body,
                extensions={"timeout": timeouts},
            ) as response:
                status = response.status
                got = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers}
                body = _read_body(response, got, max_bytes, lambda kind, message: fail(kind, message, status))
    except HttpError:
        raise
    except Stopped:
        raise fail(HttpStopped, f"stopped while asking {excerpt(shown, 160)} (interrupted)") from None
    except (httpcore.TimeoutException, Expired):
        raise fail(
            HttpTimeout,
            f"no complete answer from {excerpt(shown, 160)} within {timeout:g} s (the whole call)",
        ) from None
    except (httpcore.ProtocolError, httpcore.NetworkError, httpcore.ProxyError, httpcore.UnsupportedProtocol,
            OSError, ssl.SSLError, zlib.error) as err:  # fmt: skip
        reason = excerpt(str(err) or type(err).__name__, 200)
        raise fail(
            HttpError, f"cannot reach {excerpt(shown, 160)}: {type(err).__name__} ({reason})"
        ) from None
    return Response(status, got, body, shown)


def _request_headers(parts: Any, headers: Mapping[str, str] | None, secrets: list[str], fail: Any) -> dict:
    """The headers to send: gzip/deflate accepted, ``user:password@`` of the URL as Basic auth
    (its token added to ``secrets``), each checked (ASCII, no line breaks)."""
    sent = {"Accept-Encoding": "gzip, deflate", **(headers or {})}
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        secrets.append(token)
        sent["Authorization"] = f"Basic {token}"
    for name, value in sent.items():
        try:
            _check_header(name, str(value))
        except HttpError as err:
            raise fail(HttpError, str(err)) from None
    return sent


def _request_url(parts: Any, port: int | None, params: Mapping[str, Any] | None) -> str:
    """The URL asked for: without ``user:password@``, the query ``params`` added to its own."""
    query = urllib.parse.urlencode(list((params or {}).items()))
    target = parts.path or "/"
    target += "?" + "&".join(q for q in (parts.query, query) if q) if (parts.query or query) else ""
    host = parts.hostname
    netloc = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{netloc}{f':{port}' if port else ''}{target}"


def _connection_pool(httpcore: Any, parts: Any, proxy: str | None, backend: Any, secrets: list[str]) -> Any:
    """One connection through ``proxy`` (the environment's for the host; its password added to
    ``secrets``) or straight, on ``backend`` (every wait bounded by the deadline)."""
    context = _ssl_context() if parts.scheme == "https" or (proxy or "").startswith("https") else None
    if not proxy:
        return httpcore.ConnectionPool(
            ssl_context=context, network_backend=backend, max_connections=1, retries=0
        )
    pproxy = urllib.parse.urlsplit(proxy)
    auth = (
        (urllib.parse.unquote(pproxy.username), urllib.parse.unquote(pproxy.password or ""))
        if pproxy.username
        else None
    )
    if pproxy.password:
        secrets.append(pproxy.password)
    return httpcore.HTTPProxy(
        proxy_url=safe_url(proxy) or proxy, proxy_auth=auth, ssl_context=context,
        network_backend=backend, max_connections=1, retries=0,
    )  # fmt: skip


def _read_body(response: Any, headers: Mapping[str, str], max_bytes: int, fail: Any) -> bytes:
    """The body, decompressed as it streams in, never more than ``max_bytes`` of it; ``fail(kind,
    message)`` makes the error to raise."""
    over = f"the answer is over {max_bytes:,} bytes: refused (reading stopped there)"
    encoding = headers.get("content-encoding", "identity").strip().lower()
    length = headers.get("content-length", "")
    if encoding in ("", "identity") and length.isdigit() and int(length) > max_bytes:
        raise fail(
            HttpTooLarge,
            f"the answer is {int(length):,} bytes, over {max_bytes:,}: refused before reading it",
        )
    if encoding in ("gzip", "x-gzip"):
        inflate: Any = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        inflate = zlib.decompressobj()
    elif encoding in ("", "identity"):
        inflate = None
    else:
        raise fail(
            HttpError, f"the answer is encoded as {excerpt(encoding, 40)!r}, which this client does not read"
        )
    parts: list[bytes] = []
    size = 0
    for chunk in response.iter_stream():
        data = chunk
        while data:
            if inflate is None:
                piece, data = data, b""
            else:
                # at most 1 MB at a time: one 64 KB chunk of a bomb would inflate to 64 MB
                piece = inflate.decompress(data, min(max_bytes - size + 1, 2**20))
                data = inflate.unconsumed_tail
            size += len(piece)
            if size > max_bytes:
                raise fail(HttpTooLarge, over)
            parts.append(piece)
    if inflate is not None:
        piece = inflate.flush()
        size += len(piece)
        if size > max_bytes:
            raise fail(HttpTooLarge, over)
        parts.append(piece)
    return b"".join(parts)
