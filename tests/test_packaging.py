"""Issue 29 part 2: the package as a user gets it from ``pip install notebook-pipelines``.

``python -m build`` makes an sdist and a wheel from the tracked files (a fresh clone's); the wheel
installs into a fresh virtual environment and runs the README's first example there, away from
the source tree. No network: the build runs ``--no-isolation`` with the setuptools of the test
environment, and the fresh environment borrows the dependencies already installed here (a ``.pth``
file naming this environment's site-packages) instead of downloading them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from pathlib import Path

import notebook_pipelines as nbp

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list, cwd: Path, env: dict | None = None) -> str:
    done = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


def _clean_env() -> dict[str, str]:
    """A user's shell: nothing of this test's interpreter (PYTHONPATH, a virtualenv) leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return env | {"PYTHONNOUSERSITE": "1", "MPLBACKEND": "Agg"}


def _tracked_copy(dest: Path) -> Path:
    """The files of a fresh clone: those git tracks (plus any not yet committed but added here)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split("\n")  # fmt: skip
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def test_one_version_source():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", nbp.__version__)
    assert (REPO / "LICENSE").read_text().startswith("MIT License") and project["license"] == "MIT"
    assert f"## [{nbp.__version__}]" in (REPO / "CHANGELOG.md").read_text()


def test_the_wheel_installs_in_a_fresh_venv_and_runs_the_readme_first_example(tmp_path):
    source = _tracked_copy(tmp_path / "clone")
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, source], cwd=source)
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    version = nbp.__version__
    assert sdist.name == f"notebook_pipelines-{version}.tar.gz"
    assert wheel.name == f"notebook_pipelines-{version}-py3-none-any.whl"
    with tarfile.open(sdist) as archive:
        names = {
            Path(n).relative_to(f"notebook_pipelines-{version}").as_posix() for n in archive.getnames()[1:]
        }
    assert {"LICENSE", "README.md", "pyproject.toml", "notebook_pipelines/py.typed"} <= names
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"notebook_pipelines-{version}.dist-info/METADATA").decode()
        entry_points = archive.read(f"notebook_pipelines-{version}.dist-info/entry_points.txt").decode()
    assert "notebook_pipelines/py.typed" in names and not any(
        n.startswith(("tests/", "docs/")) for n in names
    )
    assert f"Version: {version}" in metadata and "License-Expression: MIT" in metadata
    assert "notebook-pipelines = notebook_pipelines.frontends.cli:main" in entry_points

    # a fresh virtual environment; its dependencies are this environment's (no download)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).strip()
    (Path(site) / "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = _clean_env()
    _run([python, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--force-reinstall", wheel],
         tmp_path, env)  # fmt: skip
    _run([python, "-m", "pip", "check"], tmp_path, env)  # every dependency the wheel declares is there

    # the README's first example, pasted into a file and run by the installed package
    readme = (REPO / "README.md").read_text()
    first = re.search(r"```python\n(.*?)```\n+```text\n(.*?)```", readme, re.S)
    work = tmp_path / "user"
    work.mkdir()
    (work / "first.py").write_text(
        "import notebook_pipelines\n"
        f"assert notebook_pipelines.__file__.startswith({str(venv)!r}), notebook_pipelines.__file__\n"
        + first[1]
    )
    out = _run([python, "first.py"], work, env)
    assert out.rstrip() == first[2].rstrip()
    assert (work / "release.svg").read_text().lstrip().startswith("<?xml")
    assert "validate" in _run([venv / "bin" / "notebook-pipelines", "--help"], work, env)


def _make_dry_run(target: str, tmp_path: Path) -> str:
    """What ``make TARGET`` would run on a machine with no .venv yet (``make -n``: nothing runs)."""
    return _run(["make", "-n", "-B", target, f"VENV={tmp_path / 'fresh-venv'}"], REPO)


def test_make_demo_installs_the_package_and_dot_only(tmp_path):
    demo = _make_dry_run("demo", tmp_path)
    assert (
        "pip install --quiet -e '.'" in demo and "scripts/ensure-dot" in demo and "examples/demo.py" in demo
    )
    assert "chromium" not in demo and "[test" not in demo, demo
    test = _make_dry_run("test", tmp_path)
    assert "-e '.[test," in test and "scripts/ensure-chromium" in test and "pytest" in test
    docs = _make_dry_run("docs", tmp_path)
    assert "-e '.[docs]'" in docs and "sphinx -W" in docs and "chromium" not in docs


def test_binder_badge_only_once_a_public_repository_is_configured(tmp_path):
    import runpy

    conf = runpy.run_path(str(REPO / "docs" / "conf.py"))
    assert conf["binder_badge"]() == ""  # nothing configured: no badge, no placeholder link
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "x"\n[project.urls]\nRepository = "https://github.com/acme/pipes/"\n'
    )
    badge = conf["binder_badge"](pyproject)
    assert "https://mybinder.org/v2/gh/acme/pipes/HEAD?labpath=notebooks%2F01-quickstart.ipynb" in badge
    for name in ("README.md", "docs/index.md", "docs/development.md"):
        assert "OWNER/REPO" not in (REPO / name).read_text(), name


def test_the_test_extra_holds_what_the_docs_build_needs():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras["docs"]) <= set(extras["test"])
    assert {"sybil>=9", "build>=1.2", "setuptools>=77"} <= set(extras["test"])
