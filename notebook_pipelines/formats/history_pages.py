"""Paging through the lists of an API, with bounds: GitHub's ``Link: rel="next"`` (followed
only on the API's own server, where the token may go), GitLab's ``x-next-page``; a page asked
for twice, or more than :data:`MAX_PAGES` pages, is an error (a broken or hostile server would
otherwise loop until the deadline); items listed twice (a listing that shifts while it is paged)
are kept once (:func:`new_items`).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..errors import excerpt
from .history import HistoryError
from .history_client import ApiClient, shown_url

__all__ = ["MAX_PAGES", "another_page", "github_pages", "gitlab_pages", "new_items", "next_link", "numbered"]

#: the most pages one listing may take (100 items each): a server whose pages never end stops here
MAX_PAGES = 1000


def another_page(
    system: str, what: str, seen: set, page: Any, fewer: str = "ask for fewer runs with last="
) -> None:
    """Note that ``page`` (a URL or a page number) is about to be read: refused if it was read
    already (a server sending the same page again would loop until the deadline) or if it is
    one more than :data:`MAX_PAGES` (``fewer``: how to ask for fewer pages)."""
    if page in seen:
        raise HistoryError(
            f"{system}: the pages of {what} come back to one already read "
            f"({excerpt(shown_url(str(page)), 160)}, after {len(seen)} pages): the server's paging is "
            "broken; try again later"
        )
    if len(seen) >= MAX_PAGES:
        raise HistoryError(f"{system}: {what} has more than {MAX_PAGES:,} pages: refused ({fewer})")
    seen.add(page)


def new_items(items: list, key: Callable[[Any], Any], seen: set) -> list:
    """``items`` not seen before (a listing shifts when a run starts while it is paged: the next
    page repeats the end of the previous one)."""
    out = []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            out.append(item)
    return out


_REL = re.compile(r';\s*rel\s*=\s*"?([^";,]*)"?')


def next_link(header: str) -> str | None:
    """The ``rel="next"`` URL of a ``Link`` header, read in one pass (a regular expression
    over the whole header backtracks quadratically on a hostile one: seconds for 30 KB).

    >>> next_link('<https://a/x?page=1>; rel="prev", <https://a/x?page=3>; rel="next last"')
    'https://a/x?page=3'
    """
    at = 0
    while (start := header.find("<", at)) >= 0:
        end = header.find(">", start + 1)
        if end < 0:
            return None
        following = header.find("<", end)
        params = header[end + 1 : following if following >= 0 else len(header)]
        if any("next" in m.group(1).lower().split() for m in _REL.finditer(params)):
            return header[start + 1 : end] or None
        at = end + 1
    return None


def github_pages(
    client: ApiClient, base: str, url: str, params: Any, key: str, what: str, error: str
) -> Iterator[list]:
    """The ``key`` list of each page, following the ``Link: rel="next"`` header (only under
    ``base``; a page asked for twice, or more than :data:`MAX_PAGES`, is an error)."""
    next_url: str | None = url
    seen: set[str] = set()
    while next_url:
        query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v is not None})
        another_page(
            "GitHub", what, seen, next_url + (("&" if "?" in next_url else "?") + query if query else "")
        )
        doc, headers = client.call("GET", next_url, params, what=what)
        page = doc.get(key) if isinstance(doc, Mapping) else None
        if not isinstance(page, list):
            raise HistoryError(error.format(url=excerpt(next_url, 160)))
        next_url, params = next_link(headers.get("link", "")), None
        if next_url:
            next_url = _under(base, next_url)
        yield page
        if not page:
            return


def _under(base: str, link: str) -> str:
    """``link`` (a next page) if it is on ``base``'s server (scheme, host, port) and under its
    path, with ``base``'s ``user:password@`` if it has none; else an error: the token is sent
    with every request, so a page elsewhere is never asked for."""
    try:
        b, n = urllib.parse.urlsplit(base), urllib.parse.urlsplit(link)
        default = {"http": 80, "https": 443}
        same = bool(b.hostname) and (b.scheme, b.hostname, b.port or default.get(b.scheme)) == (
            n.scheme,
            n.hostname,
            n.port or default.get(n.scheme),
        )
    except ValueError:
        same = False
    if not same or not (n.path + "/").startswith(b.path.rstrip("/") + "/"):
        raise HistoryError(
            f"GitHub: the next page {excerpt(shown_url(link), 160)} is not under {shown_url(base)}: refused "
            "(the token is only sent to the API it was given for)"
        )
    if "@" in b.netloc and "@" not in n.netloc:
        return urllib.parse.urlunsplit(n._replace(netloc=b.netloc.rsplit("@", 1)[0] + "@" + n.netloc))
    return link


def gitlab_pages(client: ApiClient, url: str, params: dict, what: str, error: str) -> Iterator[list]:
    """Each page of a GitLab list, following ``x-next-page`` (``params`` holds ``page`` in its
    place; a page number asked for twice, or more than :data:`MAX_PAGES`, is an error)."""
    page: Any = 1
    seen: set[str] = set()
    while page:
        another_page("GitLab", what, seen, f"page {page}")
        doc, headers = client.call("GET", url, {**params, "page": page}, what=what)
        if not isinstance(doc, list):
            raise HistoryError(error)
        yield doc
        page = headers.get("x-next-page") or None
        if not doc:
            return


def numbered(runs: list[dict], system: str, kind: str) -> list[dict]:
    """``runs``, each with a numeric ``id`` (it goes into URLs and file names): another id is
    an answer that is not the API's, refused before anything is asked with it."""
    for run in runs:
        if not re.fullmatch(r"[0-9]{1,20}", str(run.get("id"))):
            raise HistoryError(
                f"{system}: the list of runs has a {kind} whose id is {excerpt(repr(run.get('id')), 60)}, "
                "not a number: refused (is the URL the API's?)"
            )
    return runs
