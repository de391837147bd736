"""Sphinx configuration of the documentation site (``make docs``; warnings are errors).

Pages are MyST Markdown, readable on GitHub as they are. The course notebooks are copied from
``../notebooks`` into ``course/`` (not committed) and rendered from their stored outputs: they
are never executed here.
"""

from __future__ import annotations

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
myst_enable_extensions = ["colon_fence", "deflist", "substitution"]
suppress_warnings = ["mystnb.unknown_mime_type"]  # live-view widgets show their text outline

autodoc_member_order = "bysource"
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


def setup(app):
    copy_course()
    app.add_directive("cli-help", CliHelp)


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


myst_substitutions = {"binder_badge": binder_badge()}
