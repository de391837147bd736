"""Drive a real JupyterLab in real headless Chromium (issue 18): start/stop the server, open a
notebook, run it, and the checks of what a person sees (pictures, widgets, errors).

Chromium is Debian's ``chromium`` (``scripts/ensure-chromium``), driven by Playwright for
Python with ``executable_path`` set: no browser download. JupyterLab runs on loopback with a
token; its config, runtime, settings and workspace dirs live in a temp dir, its ``cwd`` is a
temp copy of ``notebooks/`` (a run never modifies the repo) and ``PYTHONPATH`` points at this
tree so the kernel imports the package under test.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "out" / "browser"
CHROMIUM = os.environ.get("NBP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
WIDGETS_EXTENSION = "@jupyter-widgets/jupyterlab-manager"
#: Generous guards ("finishes at all"), not performance thresholds.
START_GUARD_S = 90
RUN_GUARD_S = 120


@dataclass
class Lab:
    """A running JupyterLab server: its URL, token, process and temp dirs."""

    url: str
    token: str
    proc: subprocess.Popen
    root: Path  # the temp dir (config, runtime, settings, workspaces, log)
    notebooks: Path  # the server's cwd: a copy of notebooks/
    log: Path = field(default_factory=Path)

    def api(self, path: str, method: str = "GET") -> Any:
        req = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(tmp: Path, *, disable: tuple[str, ...] = (), app: str = "lab") -> Lab:
    """Start JupyterLab (``app="notebook"``: Notebook 7) in ``tmp`` (``disable``: front-end
    extensions to disable, through ``jupyter labextension disable`` in the temp config dir) and
    wait until it answers."""
    config, runtime, data_settings = tmp / "config", tmp / "runtime", tmp / "settings"
    workspaces, notebooks = tmp / "workspaces", tmp / "notebooks"
    for d in (config, runtime, data_settings, workspaces):
        d.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "notebooks", notebooks, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    # every cell in the DOM (no windowing), so queries and screenshots see the whole notebook
    tracker = data_settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    # no "Would you like to get notified about Jupyter news?" toast over the screenshots
    news = data_settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false"}))
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(runtime),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    jupyter = Path(sys.executable).with_name("jupyter")
    for ext in disable:
        subprocess.run(
            [str(jupyter), "labextension", "disable", "--level=user", ext],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
    port, token = free_port(), secrets.token_hex(16)
    log = tmp / "lab.log"
    klass = {"lab": "LabApp", "notebook": "JupyterNotebookApp"}[app]
    cmd = [
        str(jupyter), app, "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
        "--ServerApp.allow_root=True", f"--{klass}.expose_app_in_browser=True",
        f"--{klass}.user_settings_dir={data_settings}", f"--{klass}.workspaces_dir={workspaces}",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=notebooks, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    lab = Lab(f"http://127.0.0.1:{port}", token, proc, tmp, notebooks, log)
    deadline = time.monotonic() + START_GUARD_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{lab.log_text()}")
        try:
            lab.api("/api/status")
            return lab
        except OSError:
            if time.monotonic() > deadline:
                stop_lab(lab)
                raise RuntimeError(
                    f"JupyterLab did not answer in {START_GUARD_S} s:\n{lab.log_text()}"
                ) from None
            time.sleep(0.25)


def stop_lab(lab: Lab) -> None:
    """``POST /api/shutdown``, then end the server's process group."""
    try:
        lab.api("/api/shutdown", method="POST")
        lab.proc.wait(timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        pass
    if lab.proc.poll() is None:
        os.killpg(lab.proc.pid, signal.SIGTERM)
        try:
            lab.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(lab.proc.pid, signal.SIGKILL)
            lab.proc.wait()


# -- the page ---------------------------------------------------------------------------------
#: Console messages that are not about this project (each explained).
EXTERNAL_NOISE = (
    # Chromium without network access tries the favicon of the default origin
    "favicon.ico",
)


class Problems:
    """Console errors and page errors of one page, all logged; ``unexpected()`` filters noise
    (``EXTERNAL_NOISE`` and ``also``: messages of other projects, each explained where given)."""

    def __init__(self, page: Any, also: tuple[str, ...] = ()):
        self.all: list[str] = []
        self.noise = EXTERNAL_NOISE + also
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.all.append(f"pageerror: {exc}"))

    def _console(self, msg: Any) -> None:
        if msg.type == "error":
            self.all.append(f"console.error: {msg.text} @ {msg.location}")

    def unexpected(self) -> list[str]:
        return [p for p in self.all if not any(n in p for n in self.noise)]


def open_notebook(page: Any, lab: Lab, name: str, app: str = "lab") -> None:
    """Open ``name`` (in JupyterLab in its own workspace; ``app="notebook"``: in Notebook 7)
    and wait for its kernel to be idle."""
    workspace, quoted = Path(name).stem, urllib.parse.quote(name)
    if app == "lab":
        page.goto(f"{lab.url}/lab/workspaces/{workspace}/tree/{quoted}?token={lab.token}")
    else:
        page.goto(f"{lab.url}/notebooks/{quoted}?token={lab.token}")
    page.wait_for_function(
        """name => {
            const app = window.jupyterapp;
            const w = app && app.shell.currentWidget;
            return !!(w && w.context && w.context.path === name && w.sessionContext
                && w.sessionContext.session && w.sessionContext.session.kernel
                && w.sessionContext.session.kernel.status === 'idle' && w.content.widgets.length);
        }""",
        arg=name,
        timeout=START_GUARD_S * 1000,
    )


CELLS_JS = """() => {
    const nb = window.jupyterapp.shell.currentWidget;
    return nb.content.widgets.map((cell, i) => {
        cell.node.dataset.nbIdx = String(i);
        return {i, type: cell.model.type, source: cell.model.sharedModel.getSource(),
                count: cell.model.type === 'code' ? cell.model.executionCount : null};
    });
}"""


def run_all(page: Any) -> tuple[Any, list[dict]]:
    """Clear all outputs, run all cells; wait for every code cell's execution count and the
    kernel idle. Returns what ``notebook:run-all-cells`` resolved to and the cells."""
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
    cells = page.evaluate(CELLS_JS)
    assert all(c["count"] is None for c in cells if c["type"] == "code"), "clearing left counts"
    result = page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function(
        """() => {
            const nb = window.jupyterapp.shell.currentWidget;
            const code = nb.content.widgets.filter(c => c.model.type === 'code');
            return code.every(c => c.model.executionCount !== null)
                && nb.sessionContext.session.kernel.status === 'idle';
        }""",
        timeout=RUN_GUARD_S * 1000,
    )
    return result, page.evaluate(CELLS_JS)


def cell_index(cells: list[dict], starts: str) -> int:
    """The index of the one code cell whose source starts with (or, failing that, contains) ``starts``."""
    hits = [c["i"] for c in cells if c["type"] == "code" and c["source"].lstrip().startswith(starts)]
    hits = hits or [c["i"] for c in cells if c["type"] == "code" and starts in c["source"]]
    assert len(hits) == 1, f"{len(hits)} cells match {starts!r}"
    return hits[0]


def output_of(page: Any, index: int) -> Any:
    """The output area of cell ``index`` of the current notebook (a Playwright locator)."""
    return page.locator(f"[data-nb-idx='{index}'] .jp-OutputArea").first


def svg_source(src: str) -> str:
    """The SVG text of a ``data:image/svg+xml`` URL (URL-encoded or base64)."""
    head, _, data = src.partition(",")
    assert head.startswith("data:image/svg+xml"), head[:60]
    return base64.b64decode(data).decode() if head.endswith(";base64") else urllib.parse.unquote(data)


def check_picture(page: Any, index: int, ids: list[str]) -> dict:
    """Cell ``index`` shows its picture as JupyterLab 4 shows SVG: an ``<img>`` in
    ``.jp-RenderedSVG`` whose ``data:image/svg+xml`` source names every id in ``ids``, loaded
    with a real size, no wider than its output area."""
    img = output_of(page, index).locator(".jp-RenderedSVG img")
    assert img.count() == 1, (
        f"cell {index}: {img.count()} SVG <img> (outputs: {output_of(page, index).inner_text()[:300]!r})"
    )
    img.evaluate("i => i.decode ? i.decode() : true")
    info = img.evaluate(
        """i => ({src: i.getAttribute('src'), complete: i.complete, nw: i.naturalWidth, nh: i.naturalHeight,
                  w: i.getBoundingClientRect().width,
                  area: i.closest('.jp-OutputArea-output').getBoundingClientRect().width})"""
    )
    svg = svg_source(info["src"])
    missing = [i for i in ids if f">{i}" not in svg]  # a label's text starts with the id
    assert not missing, f"cell {index}: the picture lacks {missing}"
    assert info["complete"] and info["nw"] > 0 and info["nh"] > 0, (
        f"cell {index}: not loaded {info | {'src': '…'}}"
    )
    assert 0 < info["w"] <= info["area"] + 0.5, f"cell {index}: {info['w']} px wide in {info['area']} px"
    return info


def check_widget(page: Any, index: int, timeout_s: float = 20) -> Any:
    """Cell ``index``'s output is a rendered widget view (raises AssertionError otherwise:
    "Loading widget…", "Error displaying widget", a plain-text repr, or nothing)."""
    out = output_of(page, index)
    view = out.locator(".jp-OutputArea-output .jupyter-widgets").first
    try:
        view.wait_for(state="visible", timeout=timeout_s * 1000)
    except Exception as exc:
        raise AssertionError(
            f"cell {index}: no widget view rendered; the output shows {out.inner_text()[:300]!r}"
        ) from exc
    text = out.inner_text()
    for bad in ("Loading widget", "Error displaying widget"):
        assert bad not in text, f"cell {index}: {bad!r} in {text[:300]!r}"
    return out


def error_outputs(page: Any) -> list[str]:
    """Texts of stderr outputs with a traceback, and error outputs, in the current notebook."""
    return page.evaluate(
        """() => {
            const node = window.jupyterapp.shell.currentWidget.node;
            const sel = '.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]';
            return Array.from(node.querySelectorAll(sel)).map(e => e.innerText)
                .filter(t => t.includes('Traceback') || t.includes('Error'));
        }"""
    )


def full_screenshot(page: Any, path: Path) -> None:
    """A screenshot of the whole notebook: the window resized to the notebook's height (the
    notebook scrolls inside ``.jp-WindowedPanel-outer``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height = page.evaluate(
        """() => {
            const outer = window.jupyterapp.shell.currentWidget.node.querySelector('.jp-WindowedPanel-outer');
            return outer.scrollHeight + (window.innerHeight - outer.clientHeight);
        }"""
    )
    width = page.viewport_size["width"]
    page.set_viewport_size({"width": width, "height": min(int(height) + 40, 16000)})
    page.wait_for_timeout(300)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": width, "height": 900})


def write_notebook(path: Path, cells: list[str]) -> None:
    """A notebook of code cells ``cells`` (a Python 3 kernel) at ``path``."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


KERNEL_EXEC_JS = """async code => {
    const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
    const future = kernel.requestExecute({code, store_history: false});
    let out = '';
    future.onIOPub = msg => {
        if (msg.header.msg_type === 'stream') out += msg.content.text;
        if (msg.header.msg_type === 'error') out += 'ERROR ' + msg.content.ename + ': ' + msg.content.evalue;
    };
    await future.done;
    return out;
}"""


def kernel_exec(page: Any, code: str) -> str:
    """Run ``code`` in the current notebook's kernel (not in a cell); return its printed text."""
    return page.evaluate(KERNEL_EXEC_JS, code)
