"""The public facade: every name in ``__all__`` resolves, verbs stay functions, imports stay light."""

from __future__ import annotations

import subprocess
import sys

import notebook_pipelines as nbp


def test_every_public_name_resolves():
    for name in nbp.__all__:
        assert getattr(nbp, name) is not None, name


def test_public_verbs_stay_functions_after_their_modules_are_imported():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", duration=1)
    p.validate()
    p.simulate()
    p.render()  # imports the rendering module
    for name in ("run", "simulate", "render", "validate", "compare", "monte_carlo", "load_yaml"):
        assert callable(getattr(nbp, name)) and not isinstance(getattr(nbp, name), type(sys)), name


def test_importing_the_package_loads_no_heavy_dependency():
    heavy = ("pandas", "graphviz", "IPython", "ipywidgets", "numpy", "yaml")
    code = f"import sys, notebook_pipelines; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
