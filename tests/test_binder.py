"""Binder installs the package with ``--no-deps`` (binder/postBuild) from binder/requirements.txt:
that file must name every runtime dependency of the package, and what the notebooks import."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

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
