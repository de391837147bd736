"""Issue 29 part 1: every code block of the README runs as pasted, in order, with Sybil.

- ``python`` blocks run one after another in one namespace (as a reader pastes them into one
  notebook or one file), in a fresh directory so the files they write land there;
- a ``text`` block is the output of the ``python`` block before it: what that block printed must
  be exactly that text;
- ``bash`` blocks are commands for a shell: each ``make TARGET`` must be a target of the Makefile,
  each ``pip install 'notebook-pipelines[…]'`` must name extras that ``pyproject.toml`` defines,
  and each ``notebook-pipelines COMMAND`` must be a command of the CLI.

A block of any other language fails the test, so a new kind of block cannot go unchecked.
"""

from __future__ import annotations

import contextlib
import io
import re
import tomllib
from pathlib import Path

from sybil import Sybil
from sybil.parsers.markdown import CodeBlockParser

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


class PythonBlocks(CodeBlockParser):
    """Runs a ``python`` block in the document's namespace and keeps what it printed."""

    language = "python"

    def evaluate(self, example) -> str | None:
        code = compile("\n" * example.line + example.parsed, str(README), "exec")
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(code, example.namespace)
        example.namespace["_printed"] = printed.getvalue()
        return None


class OutputBlocks(CodeBlockParser):
    """A ``text`` block: what the ``python`` block before it printed."""

    language = "text"

    def evaluate(self, example) -> str | None:
        printed = example.namespace.pop("_printed", None)
        if printed is None:
            return f"line {example.line}: a text block must follow the python block whose output it shows"
        if printed.rstrip() != example.parsed.rstrip():
            return f"line {example.line}: the block above printed\n{printed}\nnot\n{example.parsed}"
        return None


def _cli_commands() -> set[str]:
    from notebook_pipelines.frontends.cli import build_parser

    parser = build_parser()
    actions = [a for a in parser._actions if a.choices and isinstance(a.choices, dict)]  # the subparsers
    return set(actions[0].choices)


class ShellBlocks(CodeBlockParser):
    """A ``bash`` block: commands whose targets, extras and subcommands must exist."""

    language = "bash"

    def evaluate(self, example) -> str | None:
        makefile = (REPO / "Makefile").read_text()
        extras = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
        for raw in example.parsed.splitlines():
            line = raw.split("#", 1)[0].strip()
            if match := re.fullmatch(r"make (\S+)", line):
                if not re.search(rf"^{re.escape(match[1])}:", makefile, re.M):
                    return f"`{line}`: the Makefile has no target {match[1]!r}"
            elif match := re.fullmatch(r"pip install '?notebook-pipelines(?:\[([^\]]*)\])?'?", line):
                unknown = set(filter(None, (match[1] or "").split(","))) - extras
                if unknown:
                    return f"`{line}`: pyproject.toml defines no extra {sorted(unknown)}"
            elif match := re.match(r"notebook-pipelines (\S+)", line):
                if match[1] not in _cli_commands():
                    return f"`{line}`: the CLI has no command {match[1]!r}"
            elif line:
                return f"`{line}`: a README shell line this test does not know how to check"
        return None


def test_every_code_block_of_the_readme_runs_as_pasted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fences = re.findall(r"^```(\S*)$", README.read_text(), re.M)[::2]  # the opening fences
    assert set(fences) <= {"python", "text", "bash"}, f"a code block no test checks: {fences}"
    document = Sybil(parsers=[PythonBlocks(), OutputBlocks(), ShellBlocks()]).parse(README)
    examples = list(document)
    assert len(examples) == len(fences) >= 8
    for example in examples:
        example.evaluate()
    # the first example draws the picture the README shows
    assert (tmp_path / "release.svg").read_text().lstrip().startswith("<?xml")


def test_the_readme_stays_short_and_keeps_the_two_quick_start_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    assert "make demo" in text and "make test" in text
    assert "OWNER/REPO" not in text


def test_the_readme_links_every_rule_id_to_the_semantics_reference():
    text = README.read_text()
    ids = re.findall(r"(?<![\w#/])([RDE]\d{1,2})\b", text)
    linked = re.findall(r"\[([RDE]\d{1,2})\]\(docs/semantics\.md#([rde]\d{1,2})\)", text)
    assert linked and all(a.lower() == b for a, b in linked)
    assert sorted(ids) == sorted(a for a, _ in linked), "a rule id without a link to docs/semantics.md"


def test_every_relative_link_of_the_readme_resolves():
    text = README.read_text()
    semantics = (REPO / "docs" / "semantics.md").read_text()
    anchors = {heading.lower() for heading in re.findall(r"^### ([RDE]\d{1,2})$", semantics, re.M)}
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    assert len(targets) >= 15
    for target in targets:
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        assert (REPO / path).exists(), f"README links to {target}, which does not exist"
        if anchor:
            assert path == "docs/semantics.md" and anchor in anchors, f"{target}: no such rule"


def test_every_rule_id_in_a_notebook_s_text_links_to_the_semantics_reference():
    """The markdown cells of the notebooks cite rules by id; each id is a link to its anchor."""
    import json

    semantics = (REPO / "docs" / "semantics.md").read_text()
    anchors = {heading.lower() for heading in re.findall(r"^### ([RDE]\d{1,2})$", semantics, re.M)}
    for notebook in sorted((REPO / "notebooks").glob("*.ipynb")):
        for cell in json.loads(notebook.read_text())["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            text = "".join(cell["source"])
            prose = re.sub(r"```.*?```|`[^`\n]*`|\]\([^)]*\)", "", text, flags=re.S)
            bare = re.findall(r"(?<![\w\[#/.-])[RDE]\d{1,2}\b(?![\w-])", prose)
            assert not bare, f"{notebook.name}: rule ids without a link: {bare}"
            for anchor in re.findall(r"\]\(\.\./docs/semantics\.md#([a-z]\d+)\)", text):
                assert anchor in anchors, f"{notebook.name}: no rule {anchor!r} in docs/semantics.md"


def test_the_readme_and_the_course_page_list_every_notebook_in_order():
    notebooks = sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
    for page, prefix in ((README, "notebooks/"), (REPO / "docs" / "course.md", "course/")):
        listed = re.findall(rf"\]\({prefix}(\d\d-[\w-]+\.ipynb)\)", page.read_text())
        assert listed == notebooks, f"{page.name} lists {listed}"


def test_the_api_and_trace_pages_cover_every_public_name_and_column():
    import notebook_pipelines as nbp

    api = (REPO / "docs" / "api.md").read_text()
    documented = set(re.findall(r"\.\. auto\w+:: (?:notebook_pipelines\.)?(\w+)", api))
    assert not set(nbp.__all__) - documented, "docs/api.md misses public names"
    trace = (REPO / "docs" / "trace.md").read_text()
    assert not [c for c in nbp.COLUMNS if f"`{c}`" not in trace], "docs/trace.md misses trace columns"
