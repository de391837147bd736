"""Binder installs the package with ``--no-deps`` (binder/postBuild) from binder/requirements.txt:
that file must name every runtime dependency of the package, and what the notebooks import."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _names(requirements: list[str]) -> set[str]:
    return {
        re.split(r"[\[<>=!~ ;]", line.strip(), maxsplit=1)[0].lower() for line in requirements if line.strip()
    }


def test_binder_requirements_name_every_runtime_dependency():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    binder = (REPO / "binder" / "requirements.txt").read_text().splitlines()
    assert _names(project["dependencies"]) <= _names(binder)


def test_binder_requirements_cover_the_dask_notebook():
    binder = _names((REPO / "binder" / "requirements.txt").read_text().splitlines())
    uses_dask = any("DaskExecutor" in nb.read_text() for nb in (REPO / "notebooks").glob("*.ipynb"))
    assert not uses_dask or "dask" in binder


# --- issue 17 part 4: the Binder environment, built fresh, runs every notebook -------------------

#: Run with the fresh venv's own python: executes each notebook given on the command line with
#: nbclient on the ``python3`` kernel, which ipykernel in *that* venv provides (the kernel search
#: path is confined to the venv by the environment the test sets), and first proves the kernel is
#: the venv's interpreter. Prints one line per notebook; exits non-zero on the first cell error.
_RUN_NOTEBOOKS = r"""
import sys, time
from pathlib import Path
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

probe = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys; print(sys.prefix)")])
NotebookClient(probe, kernel_name="python3", timeout=120).execute()
kernel_prefix = probe.cells[0].outputs[0]["text"].strip()
if kernel_prefix != sys.prefix:
    sys.exit(f"the python3 kernel runs {kernel_prefix}, not this venv {sys.prefix}")
for name in sys.argv[1:]:
    path = Path(name)
    nb = nbformat.read(path, as_version=4)
    start = time.monotonic()
    try:
        NotebookClient(nb, kernel_name="python3", timeout=600,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    except CellExecutionError as error:
        sys.exit(f"{path.name}: a cell failed in the Binder environment:\n{error}")
    print(f"{path.name}: ok in {time.monotonic() - start:.1f} s", flush=True)
"""


def _fresh_env(venv: Path, jupyter_dir: Path) -> dict[str, str]:
    """The environment of a shell in the Binder image: the venv first on PATH, nothing of this
    test's interpreter leaking in (no PYTHONPATH, no user site, no user kernelspecs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "JUPYTER", "VIRTUAL_ENV"))}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        PYTHONNOUSERSITE="1",
        JUPYTER_CONFIG_DIR=str(jupyter_dir / "config"),
        JUPYTER_DATA_DIR=str(jupyter_dir / "data"),
        JUPYTER_RUNTIME_DIR=str(jupyter_dir / "runtime"),
        MPLBACKEND="Agg",
    )
    return env


def _run(cmd: list[str], env: dict[str, str], cwd: Path = REPO) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.binder
def test_binder_environment_built_from_requirements_alone_runs_every_notebook(tmp_path):
    """Issue 17 part 4: a virtual environment made from ``binder/requirements.txt`` alone (plus
    ipykernel and nbclient, which Binder's image brings, and the package installed by
    ``binder/postBuild`` with ``--no-deps``) executes every notebook in ``notebooks/`` without a
    cell error. Graphviz's ``dot`` is the one thing ``binder/apt.txt`` adds."""
    assert "graphviz" in (REPO / "binder" / "apt.txt").read_text().split()
    assert shutil.which("dot"), "Graphviz's dot is missing: run scripts/ensure-dot (binder/apt.txt)"
    venv = tmp_path / "binder-venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    env = _fresh_env(venv, tmp_path / "jupyter")
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run([*pip, "-r", str(REPO / "binder" / "requirements.txt"), "ipykernel", "nbclient"], env)
    _run(["bash", str(REPO / "binder" / "postBuild")], env)
    # the kernelspec inside the venv comes before any system-wide ``python3`` on the search path
    _run([python, "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3"], env)
    script = tmp_path / "run_notebooks.py"
    script.write_text(_RUN_NOTEBOOKS)
    notebooks = sorted(str(nb) for nb in (REPO / "notebooks").glob("*.ipynb"))
    assert len(notebooks) >= 12
    # two workers, notebooks dealt round-robin: each runs its share one after another
    workers = [
        subprocess.Popen(
            [python, str(script), *notebooks[i::2]],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outs = [(w.communicate()[0], w.returncode) for w in workers]
    for out, code in outs:
        assert code == 0, f"a notebook failed in the Binder environment:\n{out}"
    assert sum(out.count(": ok in ") for out, _ in outs) == len(notebooks), outs
