"""The options of ``simulate()``, as the helpers above it and the front-ends pass them on.

One place for what several callers of :func:`~notebook_pipelines.engine.simulation.simulate`
share, so that they agree:

- :data:`RUN_OPTIONS`: the options that decide what a simulated run does. :func:`compare` and
  :func:`monte_carlo` take each of them, with the meaning and the default ``simulate()`` gives
  it, so a design compared (or sampled) with some options runs exactly as ``simulate()`` with
  the same options runs it;
- the text form of failures that the command line (``--fail``) and the magics
  (``%pipeline simulate --fail``) both read: ``STEP[:ATTEMPTS][:ERROR]``
  (:func:`parse_failures`);
- :func:`in_flags`: an option error worded with the flag that set the option.

>>> parse_failures(["unit:1", "deploy:2:Timeout"])
{'unit': [1], 'deploy': {'attempts': [2], 'error_type': 'Timeout'}}
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..definition.failure import ERROR_TYPES
from ..engine.simulation import SimulationError, simulate

__all__ = ["RUN_OPTIONS", "in_flags", "parse_failure", "parse_failures", "parse_iterations", "run_options"]

#: ``simulate()``'s options that decide what a run does, with ``simulate()``'s own defaults
#: (read from its signature, so they cannot drift apart). ``compare()`` and ``monte_carlo()``
#: take each of them with the same default; a design of ``compare()`` may set its own.
RUN_OPTIONS: dict[str, Any] = {
    name: inspect.signature(simulate).parameters[name].default
    for name in ("durations", "default", "failures", "interventions", "outputs")
}


def run_options(caller: str, given: Mapping[str, Any], also: Iterable[str] = ()) -> dict[str, Any]:
    """``given`` with every name checked against :data:`RUN_OPTIONS` (and ``also``).

    >>> run_options("compare()", {"default": "10s"})
    {'default': '10s'}
    >>> try:
    ...     run_options("compare()", {"defualt": "10s"})
    ... except SimulationError as err:
    ...     print(err)
    compare(): no option 'defualt'; the options are durations, default, failures, interventions, outputs
    """
    known = [*RUN_OPTIONS, *also]
    unknown = [name for name in given if name not in known]
    if unknown:
        raise SimulationError(f"{caller}: no option {unknown[0]!r}; the options are {', '.join(known)}")
    return dict(given)


# -- failures as text -----------------------------------------------------------------------------
def parse_failure(text: str) -> tuple[str, Any]:
    """``STEP[:ATTEMPTS][:ERROR]`` → (step, the ``failures`` value ``simulate()`` takes).

    >>> parse_failure("unit")
    ('unit', True)
    >>> parse_failure("unit:1,2")
    ('unit', [1, 2])
    >>> parse_failure("deploy:1:Timeout")
    ('deploy', {'attempts': [1], 'error_type': 'Timeout'})
    """
    step, *parts = text.split(":")
    shown = _short(text)
    if not step:
        raise SimulationError(f"--fail {shown}: name a step, e.g. --fail unit or --fail unit:1,2")
    attempts: Any = True
    error_type = None
    for part in parts:
        if re.fullmatch(r"\d+(,\d+)*", part):
            attempts = sorted({int(x) for x in part.split(",")})
            if 0 in attempts:
                raise SimulationError(f"--fail {shown}: attempts count from 1")
        elif part in ERROR_TYPES:
            error_type = part
        else:
            raise SimulationError(
                f"--fail {shown}: {_short(part)} is neither attempt numbers (1,2) nor an error type "
                f"({', '.join(ERROR_TYPES[1:])})"
            )
    if error_type is not None:
        return step, {"attempts": attempts, "error_type": error_type}
    return step, attempts


def parse_failures(specs: Iterable[str]) -> dict[str, Any]:
    """Every ``--fail STEP[:ATTEMPTS][:ERROR]`` → the ``failures`` mapping ``simulate()`` takes.

    Specs for the same step merge: their attempts add up (every attempt wins), the last error
    type given wins. Steps are not looked up here: ``simulate()`` refuses a key that matches
    no step (and suggests a close one); :func:`in_flags` words its error for the command line.

    >>> parse_failures(["unit:1", "unit:3:Timeout", "deploy"])
    {'unit': {'attempts': [1, 3], 'error_type': 'Timeout'}, 'deploy': True}
    >>> parse_failures([])
    {}
    """
    failures: dict[str, Any] = {}
    for text in specs:
        step, value = parse_failure(text)
        failures[step] = _merge_failure(failures[step], value) if step in failures else value
    return failures


def _merge_failure(old: Any, new: Any) -> Any:
    def parts(value: Any) -> tuple[Any, Any]:
        return (value["attempts"], value["error_type"]) if isinstance(value, dict) else (value, None)

    (a1, e1), (a2, e2) = parts(old), parts(new)
    attempts = True if a1 is True or a2 is True else sorted(set(a1) | set(a2))
    error_type = e2 or e1
    return {"attempts": attempts, "error_type": error_type} if error_type else attempts


def _short(text: str, limit: int = 60) -> str:
    """``repr`` of a piece of an option, cut to ``limit`` characters."""
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


# -- option errors as flags -----------------------------------------------------------------------
#: ``simulate()`` options as the command line (and ``%pipeline simulate``) names them.
_FLAGS = {"durations": "--durations", "failures": "--fail", "seed=": "--seed ", "default=": "--default "}
_OPTION = re.compile(r"^(durations|failures)\b|^(seed|default)=")


def in_flags(error: Exception) -> str:
    """The message of a ``simulate()`` option error, naming the option as its flag.

    >>> in_flags(ValueError("failures: no step of pipeline 'p' matches 'nope'"))
    "--fail: no step of pipeline 'p' matches 'nope'"
    >>> in_flags(ValueError("seed=-1: give a whole number ≥ 0"))
    '--seed -1: give a whole number ≥ 0'
    """
    return _OPTION.sub(lambda m: _FLAGS[m.group(0)], str(error), count=1)


def parse_iterations(texts: Iterable[str] | None) -> dict[str, int]:
    """``NODE=N`` (``--iterations``, repeatable) → ``simulate(iterations=…)``.

    >>> parse_iterations(["Phase=4", "canary=2"])
    {'Phase': 4, 'canary': 2}
    >>> parse_iterations(["Phase"])
    Traceback (most recent call last):
    ...
    notebook_pipelines.errors.SimulationError: --iterations 'Phase': write NODE=N, e.g. Phase=4
    """
    out: dict[str, int] = {}
    for text in texts or ():
        name, sep, count = str(text).partition("=")
        if not sep or not name.strip() or not count.strip().isdigit():
            raise SimulationError(f"--iterations {text!r}: write NODE=N, e.g. Phase=4")
        out[name.strip()] = int(count)
    return out
