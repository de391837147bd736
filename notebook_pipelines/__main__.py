"""``python -m notebook_pipelines``: the ``notebook-pipelines`` command line (see :mod:`.frontends.cli`)."""

from __future__ import annotations

from .frontends.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
