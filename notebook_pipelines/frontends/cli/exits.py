"""How a command ends: the one rule of exit codes, the two failures a command raises, bounded messages.

``BadInput`` is unusable input or usage (exit 2), ``Problems`` a pipeline with problems (exit 1);
:func:`~notebook_pipelines.frontends.cli.main` turns each into its message and exit code.
"""

from __future__ import annotations

from ...errors import MESSAGE_LIMIT, excerpt

#: The most problems an error lists (then how many more there are).
MAX_PROBLEMS = 100

EXIT_CODES = """\
exit codes (the same for every command):
  0    success: the pipeline is valid (validate), drawn (render), or its run ended Success
  1    the pipeline has problems: it is not valid (each problem is listed with FILE:LINE:COLUMN,
       as validate lists them) or its run did not end Success (the trace is still printed or
       written)
  2    unusable input or usage: a bad option; FILE or --durations cannot be read (missing, not
       a regular file, not UTF-8, not YAML); -o cannot be written (checked before anything runs)
  130  interrupted
"""


class BadInput(Exception):
    """Unusable input or a usage mistake (an option, a file that cannot be read or written):
    exit code 2, one message."""


class Problems(Exception):
    """The pipeline has problems (it is not valid, or cannot run here): exit code 1.

    ``lines`` are the problems as printed (each bounded, at most ``MAX_PROBLEMS`` of them),
    ``count`` how many there are, ``what`` says what is wrong in a few words.
    """

    def __init__(self, lines: list[str], count: int, what: str = "is not valid"):
        super().__init__(what)
        self.lines, self.count, self.what = lines, count, what


def foreign(error: Exception | str) -> str:
    """Another layer's error message, each line an excerpt (it may quote a value at length)."""
    return "\n".join(excerpt(line, MESSAGE_LIMIT) for line in str(error).splitlines()[:MAX_PROBLEMS])


def bounded(message: str) -> str:
    """A message of at most ``MAX_PROBLEMS`` lines, none longer than a problem line can be: a
    safety net, since each part is bounded where it is made."""
    lines = message.splitlines() or [""]
    shown = [excerpt(line, 3 * MESSAGE_LIMIT) for line in lines[:MAX_PROBLEMS]]
    if len(lines) > MAX_PROBLEMS:
        shown.append(f"… and {len(lines) - MAX_PROBLEMS} more lines")
    return "\n".join(shown)
