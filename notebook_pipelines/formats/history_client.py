"""The HTTP side of fetching a history: one bounded request, a client with a deadline, a thread pool.

Network rules: one overall ``deadline`` (seconds) for the whole call, each request's timeout
cut to what is left; ``429`` (and GitHub's ``403`` with ``x-ratelimit-remaining: 0``) waits
``Retry-After`` (or until ``x-ratelimit-reset``) when that fits in the deadline; ``401``,
``403``, ``404`` are errors saying what to check; a body cut short, or larger than
``MAX_BODY``, is refused; redirects are not followed. The token is sent in a header only; it
is never in a URL, a message or a repr (messages replace it with ``***``).

All HTTP goes through :func:`http_request` (one small function): the GETs and the two POSTs
(GitLab's GraphQL, Harness's execution list) through the package's bounded request
(:mod:`.http`: an overall deadline on every socket operation, bounded bodies, and a ``stop``
event that ends a request in flight when Ctrl-C interrupts the fetch).
:class:`ApiClient` adds the deadline, the retries and the messages; :func:`fetch_all` runs one
function per run in a bounded pool, stopping the rest at the first error or Ctrl-C.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import email.utils
import json
import math
import os
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import excerpt
from .history import HistoryError

__all__ = [
    "MAX_BODY",
    "REQUEST_TIMEOUT",
    "ApiClient",
    "FetchProgress",
    "Response",
    "fetch_all",
    "http_request",
    "shown_url",
    "token_or_env",
]

#: the largest answer accepted (bytes)
MAX_BODY = 100 * 2**20
#: a request's own timeout (seconds), cut to what is left of the deadline
REQUEST_TIMEOUT = 30.0
_RETRIES = 5


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]  # lower-cased names
    body: bytes


def http_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    timeout: float,
    stop: threading.Event | None = None,
) -> Response:
    """One HTTP request within ``timeout`` seconds overall, the body read whole up to
    :data:`MAX_BODY`, no redirects, through the package's bounded request
    (:func:`~notebook_pipelines.formats.http.request`: every socket wait bounded by the
    deadline); ``stop`` (set on Ctrl-C) ends it within a fifth of a second.

    Raises:
        HistoryError: the server cannot be reached, the answer is cut short or too large, the
            timeout passed, ``stop`` was set. The message names the URL (without a password).
    """
    from .http import HttpError, HttpStopped, HttpTimeout, HttpTooLarge, request

    shown = shown_url(url)
    try:
        return request(
            method, url, body=body, headers=headers, timeout=timeout, max_bytes=MAX_BODY, what=method,
            stop=stop,
        )  # fmt: skip
    except HttpTimeout:
        raise HistoryError(f"{excerpt(shown, 160)} did not answer within {timeout:.2g} s") from None
    except HttpTooLarge:
        raise HistoryError(
            f"the answer of {excerpt(shown, 160)} is over {MAX_BODY // 2**20} MB: refused"
        ) from None
    except HttpStopped:
        raise HistoryError(f"the request to {excerpt(shown, 160)} was stopped (interrupted)") from None
    except HttpError as err:
        if "ProtocolError" in str(err):
            raise HistoryError(_CUT_SHORT.format(url=excerpt(shown, 160))) from None
        raise HistoryError(str(err)) from None


def shown_url(url: str) -> str:
    """``url`` as messages may show it: without its ``user:password@`` (the query is kept: it
    holds the paging, never a token).

    >>> shown_url("https://me:s3cret@gitlab.example.com/api/v4/projects?page=2")
    'https://gitlab.example.com/api/v4/projects?page=2'
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<an invalid URL>"
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


_LATE = (
    ", the rest of the deadline of {:g} s; the runs fetched so far are kept in the cache: call again "
    "to go on (or give a longer deadline=)"
)
_CUT_SHORT = "the answer of {url} was cut short (the connection closed before the whole body came): try again"


class ApiClient:
    """Requests with the deadline, retries on rate limits, clear errors; holds the token (never shown)."""

    def __init__(
        self,
        system: str,
        auth: dict[str, str],
        secret: str | None,
        deadline: float,
        request: Callable[..., Response] = http_request,
    ):
        if isinstance(deadline, bool) or not isinstance(deadline, int | float) or not 0 < deadline < math.inf:
            raise HistoryError(
                f"{system}: deadline={excerpt(repr(deadline), 40)}: give the seconds the whole fetch may "
                "take (a number > 0; an infinite or NaN deadline would let a server hold the call forever)"
            )
        self.system, self._auth, self._secret = system, auth, secret
        self._secrets = [secret] if secret else []  # and the password of a URL called
        self.end = time.monotonic() + deadline
        self.deadline = deadline
        self.stop = threading.Event()
        self.request = request

    def __repr__(self) -> str:
        return f"<{self.system} client, token {'***' if self._secret else 'none'}>"

    def hide(self, text: str) -> str:
        """``text`` without the token or a URL's password, in any form a server may echo them
        (any letter case, percent-encoded, JSON-escaped: :func:`.http.redact`)."""
        from .http import redact

        return redact(text, self._secrets)

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
        from .http import url_secrets

        self._secrets += [s for s in url_secrets(url) if s not in self._secrets]
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
                timeout = min(REQUEST_TIMEOUT, left)
                if self.request is http_request:  # ours takes the stop event (Ctrl-C ends it at once)
                    response = http_request(method, url, headers, data, timeout, self.stop)
                else:  # a request function given to the client: its five arguments, as ever
                    response = self.request(method, url, headers, data, timeout)
            except HistoryError as err:
                late = "" if left >= REQUEST_TIMEOUT or "did not answer" not in str(err) else _LATE
                raise HistoryError(self.hide(f"{self.system}: {err}{late.format(self.deadline)}")) from None
            status = response.status
            if status == 200:
                return self._json(response, shown_url(url)), response.headers
            wait = self._wait(response)
            if wait is not None and attempt < _RETRIES:
                if wait > self.left():
                    asked = f"{wait:.0f} s" if wait < 1e7 else "months or more"
                    raise HistoryError(
                        f"{self.system}: rate limited ({status}); the server asks to wait {asked}, past the "
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
            raise HistoryError(self.hide(self._error(status, shown_url(url), response, what)))
        raise HistoryError(f"{self.system}: still rate limited after {_RETRIES} waits: call again later")

    def _json(self, response: Response, url: str) -> Any:
        """The answer's JSON, parsed with bounds (nesting, objects): a hostile answer is an error."""
        from .http import load_json

        what = f"{self.system}: the answer of {excerpt(url, 160)}"
        try:
            return load_json(response.body, what)
        except ValueError as err:
            if "html" in response.headers.get("content-type", "").lower():
                raise HistoryError(
                    self.hide(
                        f"{what} is a web page, not JSON (a sign-in page, or a proxy's?): check the "
                        "address (the API's, not the site's) and the token"
                    )
                ) from None
            if "not JSON (" in str(err):
                raise HistoryError(self.hide(f"{what} is not JSON (cut short?): try again")) from None
            raise HistoryError(self.hide(str(err))) from None  # nested too deeply, too many objects

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
                pass
            try:  # an HTTP date
                when = email.utils.parsedate_to_datetime(after)
            except (TypeError, ValueError, IndexError):
                return 1.0  # neither seconds nor a date: wait a little, as without the header
            if when.tzinfo is None:
                when = when.replace(tzinfo=datetime.UTC)
            return max(0.0, when.timestamp() - time.time())
        reset = h.get("x-ratelimit-reset")
        if reset and reset.isdigit():  # (float: an int of thousands of digits is a ValueError)
            return max(0.0, float(reset) - time.time())
        return 1.0

    def _error(self, status: int, url: str, response: Response, what: str) -> str:
        message = ""
        from .http import load_json

        try:
            doc = load_json(response.body, "the answer", max_containers=10_000)
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
        if 300 <= status < 400:
            from .http import safe_url  # without its query: a sign-in link may carry a ticket

            to = excerpt(safe_url(response.headers.get("location", "")), 160) or "nowhere"
            fix = (
                f"it points to {to}; redirects are not followed (the token would go with them): check "
                "the address (a repository or project renamed or moved?)"
            )
        return f"{where}{detail}" + (f" ({fix})" if fix else "")


class FetchProgress:
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


def fetch_all(
    client: ApiClient,
    todo: list[Any],
    fetch_one: Callable[[Any], None],
    concurrency: int,
    progress: FetchProgress,
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


def token_or_env(token: str | None, env: str) -> str | None:
    """The token given, else the environment variable ``env``; ``None`` when neither is set."""
    value = token if token is not None else os.environ.get(env)
    return value or None
