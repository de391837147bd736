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


def _front_end(module: str) -> str | None:
    """The front-end a module belongs to: ``frontends/<name>.py`` or the package ``frontends/<name>/``."""
    parts = module.split(".")
    is_front_end = parts[:2] == ["notebook_pipelines", "frontends"] and len(parts) > 2
    return parts[2] if is_front_end and parts[2] != "__init__" else None


@pytest.mark.parametrize(
    "path",
    [
        p
        for p in _modules()
        if _top(p) == "frontends" and p.relative_to(PACKAGE).parts != ("frontends", "__init__.py")
    ],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_a_front_end_imports_no_other_front_end(path):
    """The command line and the magics share code through a lower layer (e.g. the ``--fail``
    parser in ``analysis/options.py``), never through each other. A front-end may be a package
    (``frontends/magics/``): its own modules import each other."""
    own = _front_end(_module_name(path))
    sideways = [
        f"line {line}: {module}" for line, module in _imports(path) if _front_end(module) not in (None, own)
    ]
    assert not sideways, f"{path.name} imports another front-end: {sideways}"


def test_front_end_of_a_module_and_of_a_package():
    assert _front_end("notebook_pipelines.frontends.cli") == "cli"
    assert _front_end("notebook_pipelines.frontends.magics.building") == "magics"
    assert _front_end("notebook_pipelines.frontends") is None
    assert _front_end("notebook_pipelines.views.rendering") is None


# -- no import cycle between modules (issue 25) ----------------------------------------------------


def _module_name(path: pathlib.Path) -> str:
    parts = ["notebook_pipelines", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_graph() -> dict[str, set[str]]:
    """``module -> the package's modules it imports``: every import, at module level, inside
    functions and in ``if TYPE_CHECKING:`` blocks alike (a type hint is a dependency too).

    ``from package import name`` points at the submodule ``package.name`` when there is one,
    else at the package (its ``__init__``); importing ``a.b.c`` is not counted as importing
    ``a.b``'s ``__init__`` (Python runs it first, but every module would then depend on it).
    """
    modules = {_module_name(p): p for p in _modules()}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    targets.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycles_finds_a_cycle_through_three_modules_and_ignores_a_chain():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycle_between_modules_lazy_and_type_checking_imports_included():
    """No module imports (even lazily, even for a type hint) a module that imports it back.

    A cycle held open by an import inside a function works, but only in one import order, and
    it makes the modules one unit: none can be read, tested or moved without the others. The
    definition's verbs that need a module above ``model`` (``Pipeline.plan``/``validate``) are
    wired in by the facade (``model.VERBS``), like ``run`` and ``simulate``.
    """
    graph = _module_graph()
    cycles = _cycles(graph)
    detail = [[f"{m} -> {sorted(graph[m] & set(cycle))}" for m in cycle] for cycle in cycles]
    assert not cycles, f"import cycles: {detail}"


def _public_definitions(name: str) -> list[str]:
    """The modules that define ``name`` (a class or function at their top level)."""
    found = []
    for path in _modules():
        for node in ast.parse(path.read_text(), str(path)).body:
            if isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name == name:
                found.append(_module_name(path))
    return found


@pytest.mark.parametrize(
    ("name", "owner"),
    [
        ("RunHandle", "notebook_pipelines.views.controller"),  # the user's handle on a started run
        ("locate", "notebook_pipelines.definition.placement"),  # the model's placement of a node
    ],
)
def test_one_name_one_meaning(name, owner):
    """``RunHandle`` is the user's handle only (what an executor sees is ``ServedRun``);
    ``locate`` is the model's placement only (``references.node_of_path`` walks a ``<+…>`` path,
    ``yaml_io.source_position`` finds where a node is written)."""
    assert _public_definitions(name) == [owner]


def _size_offenders(path: pathlib.Path) -> list[str]:
    """``offenders(path)`` of ``scripts/check_sizes.py`` (a script, not a module of the package)."""
    import runpy

    return runpy.run_path(str(PACKAGE.parent / "scripts" / "check_sizes.py"))["offenders"](path)


def test_every_module_and_function_within_its_size_budget():
    """Files a person can hold in their head (issue 25): no module over 600 lines, no function over
    80 without its docstring, unless a ``# Long because:`` comment at its top says why
    (``scripts/check_sizes.py``, which this test runs on the whole package)."""
    assert _size_offenders(PACKAGE) == []


def test_the_size_check_finds_a_long_module_and_a_long_function_and_takes_a_reason(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(80))
    long_function = f'def f():\n    """Doc."""\n{body}\n'
    (tmp_path / "a.py").write_text(long_function)  # its def line + 80 = 81 lines without its docstring
    assert [line.split(": ", 1)[1][:6] for line in _size_offenders(tmp_path)] == ["f() 81"]
    (tmp_path / "a.py").write_text(
        long_function.replace('"""Doc."""', '"""Doc."""\n    # Long because: a test')
    )
    assert _size_offenders(tmp_path) == []
    (tmp_path / "a.py").write_text("x = 1\n" * 601)  # 601 lines
    assert len(_size_offenders(tmp_path)) == 1
    (tmp_path / "a.py").write_text("# Long because: a test\n" + "x = 1\n" * 601)
    assert _size_offenders(tmp_path) == []
