"""Sphinx configuration of the documentation site (``make docs``; warnings are errors).

Pages are MyST Markdown, readable on GitHub as they are. The course notebooks are copied from
``../notebooks`` into ``course/`` (not committed) and rendered from their stored outputs: they
are never executed here.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import notebook_pipelines  # noqa: E402

COURSE = Path(__file__).resolve().parent / "course"


def copy_course() -> None:
    """The notebooks as they are committed, into ``course/`` (rebuilt from scratch each time)."""
    shutil.rmtree(COURSE, ignore_errors=True)
    COURSE.mkdir()
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        # links to the docs from a notebook (``../docs/semantics.md#r14``) point next door in the site
        text = notebook.read_text(encoding="utf-8").replace("](../docs/", "](../")
        (COURSE / notebook.name).write_text(text, encoding="utf-8")


project = "notebook-pipelines"
author = "The notebook-pipelines authors"
copyright = "2026, the notebook-pipelines authors"
release = version = notebook_pipelines.__version__

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]
html_theme = "furo"
html_title = f"notebook-pipelines {version}"
html_static_path = ["_static"]
html_show_sourcelink = False
html_favicon = "_static/favicon.svg"

# the notebooks keep the outputs they are committed with (nbval checks those outputs)
nb_execution_mode = "off"
nb_merge_streams = True
myst_heading_anchors = 3  # `semantics.md#r14` links to the heading "R14"
myst_enable_extensions = ["colon_fence", "deflist"]
suppress_warnings = ["mystnb.unknown_mime_type"]  # live-view widgets show their text outline

autodoc_member_order = "bysource"
# the Dask executor is documented without the dask extra installed (`make docs` installs docs only)
autodoc_mock_imports = ["cloudpickle", "distributed"]
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields: no second description of a documented member


class CliHelp(SphinxDirective):
    """``{cli-help}``: the ``--help`` of the command line and of each of its commands, as printed."""

    def run(self) -> list[nodes.Node]:
        import argparse

        from notebook_pipelines.frontends.cli import build_parser

        parser = build_parser()
        out: list[nodes.Node] = [nodes.literal_block(text=parser.format_help())]
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        for name, command in sub.choices.items():
            section = nodes.section(ids=[f"command-{name}"], names=[f"command {name}"])
            section += nodes.title(text=f"notebook-pipelines {name}")
            section += nodes.literal_block(text=command.format_help())
            out.append(section)
        return out


_CODE_OR_LINK = re.compile(r"(```.*?```|`[^`\n]*`|\[[^\]]*\]\([^)]*\)|<[^>\n]*>)", re.S)
_BARE_RULE_ID = re.compile(r"(?<![\w#/\[.-])([RDE])(\d{1,2})\b(?![\w-])")


def link_rule_ids(text: str, prefix: str = "") -> str:
    """Every rule id of a Markdown text outside code and links, as a link to its rule.

    >>> link_rule_ids("a failing sibling (R14, D9) — `R14` in code stays")
    'a failing sibling ([R14](semantics.md#r14), [D9](semantics.md#d9)) — `R14` in code stays'
    """
    parts = _CODE_OR_LINK.split(text)
    return "".join(
        part if i % 2 else _BARE_RULE_ID.sub(lambda m: f"[{m[0]}]({prefix}semantics.md#{m[0].lower()})", part)
        for i, part in enumerate(parts)
    )


def _link_rule_ids(app, docname: str, source: list[str]) -> None:
    """``source-read``: pages written for GitHub too (the architecture) cite rules by bare id; on
    the site each id links to the semantics reference."""
    if docname != "semantics" and app.env.doc2path(docname).suffix == ".md":
        source[0] = link_rule_ids(source[0], "../" * docname.count("/"))
    # the launch badge, where a page asks for it (an HTML comment: invisible on GitHub)
    source[0] = source[0].replace("<!-- binder-badge -->", binder_badge())


_RST_LITERAL = re.compile(r"(``.*?``|:\w+:`[^`]*`|`[^`]*`_*|>>>.*$|\.\.\. .*$)")


def _link_rule_ids_in_docstring(app, what, name, obj, options, lines: list[str]) -> None:
    """``autodoc-process-docstring``: rule ids in the API reference's docstrings link to their rule
    (the API page sits next to the semantics page)."""

    def link(found: re.Match) -> str:
        return f"`{found[0]} <semantics.html#{found[0].lower()}>`__"

    for i, line in enumerate(lines):
        parts = _RST_LITERAL.split(line)
        lines[i] = "".join(part if k % 2 else _BARE_RULE_ID.sub(link, part) for k, part in enumerate(parts))


def setup(app):
    copy_course()
    app.add_directive("cli-help", CliHelp)
    app.connect("source-read", _link_rule_ids)
    app.connect("autodoc-process-docstring", _link_rule_ids_in_docstring)


def binder_badge(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """A Binder launch badge once the repository's public address is configured, in one place:
    ``Repository`` under ``[project.urls]`` in pyproject.toml (a https://github.com/OWNER/NAME URL);
    nothing until then (no placeholder link)."""
    import tomllib

    urls = tomllib.loads(pyproject.read_text())["project"].get("urls", {})
    repository = urls.get("Repository", "").removesuffix("/").removesuffix(".git")
    prefix = "https://github.com/"
    if not repository.startswith(prefix):
        return ""
    launch = (
        f"https://mybinder.org/v2/gh/{repository[len(prefix) :]}/HEAD?labpath=notebooks%2F01-quickstart.ipynb"
    )
    return f"[![Launch the course on Binder](https://mybinder.org/badge_logo.svg)]({launch})"
