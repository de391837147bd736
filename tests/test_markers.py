"""The markers ``make test-fast`` leaves out (issue 25): registered, and on the tests they name."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAST = "not browser and not binder and not kernel and not slow"


def test_the_four_markers_are_registered_and_make_test_fast_leaves_them_out():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--strict-markers" in config["addopts"]
    assert {m.split(":")[0] for m in config["markers"]} >= {"browser", "binder", "kernel", "slow"}
    makefile = (ROOT / "Makefile").read_text()
    assert f'-m "{FAST}"' in makefile.split("\ntest-fast:")[1].split("\n\n")[0]


def test_browser_binder_and_kernel_tests_are_left_out_of_the_fast_run():
    """Collected with the fast selection: of the browser tests, the real-kernel tests, the Binder
    build and a notebook's cells, only the two quick checks of the Binder requirements remain."""
    notebook = sorted((ROOT / "notebooks").glob("*.ipynb"))[0]
    paths = ["tests/browser", "tests/test_widgets_in_kernel.py", "tests/test_binder.py", str(notebook)]
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", FAST]
    done = subprocess.run([*command, *paths], cwd=ROOT, capture_output=True, text=True, timeout=300)
    selected = sorted(line.split("::")[-1] for line in done.stdout.splitlines() if "::" in line)
    assert selected == [
        "test_binder_requirements_cover_the_dask_notebook",
        "test_binder_requirements_name_every_runtime_dependency",
    ], done.stdout + done.stderr
