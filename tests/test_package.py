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


def _public_exceptions() -> dict[str, type]:
    """Every exception or warning class a module of the package defines or lists in ``__all__``."""
    import importlib
    import pkgutil

    found = {}
    for info in pkgutil.walk_packages(nbp.__path__, "notebook_pipelines."):
        if info.name.endswith("__main__") or info.name.startswith("notebook_pipelines.cluster.dask"):
            continue  # __main__ runs the CLI; the Dask executor needs the [dask] extra
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            if isinstance(value, type) and issubclass(value, BaseException | Warning):
                found[f"{info.name}.{name}"] = value
    return found


def test_every_public_error_is_defined_in_errors_py_and_exported_from_nbp():
    """One list of what the package may raise: ``errors.py``; ``except nbp.X`` for each."""
    from notebook_pipelines import errors

    exceptions = _public_exceptions()
    assert len(exceptions) > 30
    elsewhere = sorted(
        f"{where} ({cls.__module__})"
        for where, cls in exceptions.items()
        if cls.__module__ != errors.__name__
    )
    assert not elsewhere, f"errors defined outside errors.py: {elsewhere}"
    for cls in set(exceptions.values()):
        assert getattr(nbp, cls.__name__) is cls and cls.__name__ in nbp.__all__
        assert cls.__name__ in errors.__all__


def test_nbp_all_is_grouped_with_the_errors_last():
    """``__all__`` reads by layer (definition, running, analysis, formats, views) and ends with
    every error and warning (and ``Problem``, what a ``DefinitionError`` lists), in one block."""
    from notebook_pipelines import errors

    kinds = [name in errors.__all__ for name in nbp.__all__]
    first_error = kinds.index(True)
    assert all(kinds[first_error:]), [n for n in nbp.__all__[first_error:] if n not in errors.__all__]
    assert nbp.__all__[0] == "Pipeline"
