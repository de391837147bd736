"""The folder layout is the architecture: every import points down the layers, never up.

Layers, bottom to top (docs/architecture.md): the leaves (``errors``, ``_version``) →
``definition`` → ``engine`` → ``analysis`` / ``formats`` → ``views`` (pictures may show an
analysis: a Gantt chart's critical path, a picture coloured by slack) → ``frontends`` → the facade
(``notebook_pipelines/__init__.py``). Imports inside functions count too: a lazy import that
points up is still an arrow up. The core (definition, engine) imports no front-end library.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "notebook_pipelines"
LAYER = {
    "errors": 0,
    "_version": 0,
    "definition": 1,
    "engine": 2,
    "analysis": 3,
    "formats": 3,
    "cluster": 3,
    "views": 4,
    "frontends": 5,
    "course": 5,
    "__init__": 6,
    "__main__": 6,
}
FRONT_END_LIBRARIES = {"IPython", "ipywidgets", "graphviz", "dask", "distributed", "matplotlib"}


def _modules() -> list[pathlib.Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _top(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _imports(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``path``, however deep in the code."""
    package = ["notebook_pipelines", *path.relative_to(PACKAGE).parent.parts]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:  # `from . import x`: each name may be a module
                    found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
                    continue
            else:
                module = node.module or ""
            found.append((node.lineno, module))
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_import_points_down_the_layers(path):
    own = LAYER[_top(path)]
    upward = []
    for line, module in _imports(path):
        parts = module.split(".")
        if parts[0] != "notebook_pipelines":
            continue
        target = parts[1] if len(parts) > 1 else "__init__"
        if target == _top(path):
            continue
        if LAYER.get(target, 6) >= own:
            upward.append(f"line {line}: {module}")
    assert not upward, f"{path.name} imports from its own level or above: {upward}"


@pytest.mark.parametrize(
    "path",
    [p for p in _modules() if _top(p) in ("definition", "engine")],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_the_core_imports_no_front_end_library(path):
    libraries = {module.split(".")[0] for _line, module in _imports(path)}
    assert not libraries & FRONT_END_LIBRARIES


@pytest.mark.parametrize(
    "path",
    [p for p in _modules() if _top(p) == "frontends" and p.name != "__init__.py"],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_a_front_end_imports_no_other_front_end(path):
    """The command line and the magics share code through a lower layer (e.g. the ``--fail``
    parser in ``analysis/options.py``), never through each other."""
    others = {f"notebook_pipelines.frontends.{p.stem}" for p in path.parent.glob("*.py")} - {
        f"notebook_pipelines.frontends.{path.stem}",
        "notebook_pipelines.frontends.__init__",
    }
    sideways = [f"line {line}: {module}" for line, module in _imports(path) if module in others]
    assert not sideways, f"{path.name} imports another front-end: {sideways}"
