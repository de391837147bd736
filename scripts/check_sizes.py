"""Files a person can hold in their head: no module over 600 lines, no function over 80.

A module or function may be longer when a reason is written at its top, in a comment that starts
``# Long because:`` (a module: within its first 60 lines; a function: between its ``def`` line and
its first statement after the docstring). A function's length is its lines without its docstring.

Usage::

    python scripts/check_sizes.py [PATH ...]     # default: notebook_pipelines

Prints one line per offender and exits 1 when there is any (tests/test_layers.py runs it too).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MODULE_LINES = 600
FUNCTION_LINES = 80
REASON = "# Long because:"


def _docstring_lines(node: ast.AST) -> int:
    body = getattr(node, "body", [])
    first = body[0] if body else None
    is_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    if is_doc and isinstance(first.value.value, str):  # type: ignore[union-attr]
        return first.end_lineno - first.lineno + 1  # type: ignore[union-attr,operator]
    return 0


def offenders(path: Path) -> list[str]:
    """Every module and function under ``path`` that is too long and says no reason why."""
    found: list[str] = []
    files = [path] if path.is_file() else sorted(path.rglob("*.py"))
    for file in files:
        text = file.read_text(encoding="utf-8")
        lines = text.splitlines()
        if len(lines) > MODULE_LINES and not any(REASON in line for line in lines[:60]):
            found.append(f"{file}: {len(lines)} lines (> {MODULE_LINES}) and no '{REASON}' at its top")
        for node in ast.walk(ast.parse(text, filename=str(file))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            doc = _docstring_lines(node)
            length = node.end_lineno - node.lineno + 1 - doc  # type: ignore[operator]
            if length <= FUNCTION_LINES:
                continue
            first = node.body[1] if doc and len(node.body) > 1 else node.body[0]
            top = lines[node.lineno - 1 : first.lineno]
            if not any(REASON in line for line in top):
                found.append(
                    f"{file}:{node.lineno}: {node.name}() {length} lines without its docstring "
                    f"(> {FUNCTION_LINES}) and no '{REASON}' at its top"
                )
    return found


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or [Path(__file__).resolve().parents[1] / "notebook_pipelines"]
    found = [line for p in paths for line in offenders(p)]
    print("\n".join(found) or "sizes: every module and function within its budget")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
