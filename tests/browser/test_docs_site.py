"""Issue 29 part 3: the documentation site builds with no warning, its internal links and anchors
resolve, and its pages show what they should in the real (headless) browser the suite uses.

The site is built once per module, as ``make docs`` builds it (Sphinx, warnings are errors), into
a temporary directory, and served over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import functools
import http.server
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "html"
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "docs", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, f"the docs site did not build without warnings:\n{done.stderr[-5000:]}"
    return out


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class Links(HTMLParser):
    """The ids of a page, and the targets of its links and images."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.targets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.add(found["id"])
        if tag == "a" and found.get("href"):
            self.targets.append(found["href"])
        if tag == "img" and found.get("src"):
            self.targets.append(found["src"])


@functools.cache
def _parse(path: Path) -> Links:
    links = Links()
    links.feed(path.read_text(encoding="utf-8"))
    return links


def test_every_internal_link_and_anchor_of_the_site_resolves(site: Path):
    pages = sorted(p for p in site.rglob("*.html") if "_modules" not in p.parts)
    assert {"index.html", "semantics.html", "api.html", "cli.html", "trace.html", "guide.html"} <= {
        p.name for p in pages
    }
    broken = []
    for page in pages:
        for target in _parse(page).targets:
            if urlparse(target).scheme in ("http", "https", "mailto", "data"):
                continue
            address, anchor = urldefrag(target)
            file = (page.parent / unquote(address)).resolve() if address else page
            if address.endswith("/"):
                file = file / "index.html"
            if not file.exists():
                broken.append(f"{page.relative_to(site)}: {target} (no such file)")
            elif anchor and file.suffix == ".html" and unquote(anchor) not in _parse(file).ids:
                broken.append(f"{page.relative_to(site)}: {target} (no such anchor)")
    assert not broken, "\n".join(broken[:50])


def test_the_semantics_reference_has_every_rule_as_an_anchor(site: Path):
    ids = _parse(site / "semantics.html").ids
    expected = (
        {f"r{n}" for n in range(1, 63)} | {f"e{n}" for n in range(1, 18)} | {f"d{n}" for n in range(1, 14)}
    )
    assert expected <= ids, sorted(expected - ids)
    # pages that cite rules by bare id (the architecture, written for GitHub too) link them on the site
    cited = [t for t in _parse(site / "architecture.html").targets if t.startswith("semantics.html#")]
    assert len(cited) >= 10, cited
    # and so do the docstrings of the API reference ("side by side (R11)" in Pipeline's)
    assert "semantics.html#r11" in _parse(site / "api.html").targets


def _open(page, url: str) -> list[str]:
    """Open ``url``; return the console errors and the failed requests of the page."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("requestfailed", lambda r: problems.append(f"failed {r.url}") if "127.0.0.1" in r.url else None)
    page.goto(url, wait_until="load")
    return problems


_PICTURES_DRAWN = """() => {
    const images = [...document.querySelectorAll('article img')];
    const broken = images.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src);
    const wide = e => e.getBoundingClientRect().width > 50;
    const drawn = images.filter(i => i.naturalWidth > 0 && wide(i)).length
        + [...document.querySelectorAll('article svg')].filter(wide).length;
    return {images: images.length, broken, drawn};
}"""


def test_the_home_page_shows_the_picture(served: str, page, tmp_path: Path):
    problems = _open(page, f"{served}/index.html")
    assert "notebook-pipelines" in page.title()
    pictures = page.evaluate(_PICTURES_DRAWN)
    assert pictures["drawn"] >= 1 and not pictures["broken"], pictures
    page.get_by_role("link", name="The semantics reference").first.click()
    page.wait_for_url("**/semantics.html*")
    assert page.locator("#r14").is_visible()
    assert not problems, problems


def test_a_notebook_page_shows_the_stored_pictures_and_outputs(served: str, page):
    problems = _open(page, f"{served}/course/01-quickstart.html")
    pictures = page.evaluate(_PICTURES_DRAWN)
    assert pictures["drawn"] >= 3 and not pictures["broken"], pictures
    outputs = page.locator("div.cell_output").count()
    assert outputs >= 10
    assert not problems, problems


def test_an_api_page_shows_the_keyword_parameters_and_their_docs(served: str, page):
    problems = _open(page, f"{served}/api.html")
    signature = page.locator("[id='notebook_pipelines.Pipeline.simulate']").inner_text()
    for name in ("durations", "default", "failures", "seed"):
        assert re.search(rf"\b{name}\b", signature), signature
    assert page.locator("[id='notebook_pipelines.YamlError']").count() == 1
    # the builder's methods, wherever in the class hierarchy they are defined (a mixin, a base)
    for anchor in ("Pipeline.run", "Pipeline.parallel", "Pipeline.walk", "Stage.step", "StepGroup.parallel"):
        assert page.locator(f"[id='notebook_pipelines.{anchor}']").count() == 1, anchor
    assert not problems, problems
