"""Puzzle levels as files: :class:`Level`, reading one (:func:`load_level`, checked key by key),
the built-in ones (:func:`levels`), the goal in words, and writing a level as a person would.

It stands on the model (:mod:`~notebook_pipelines.definition.model`), the durations' parser
and the YAML reader (:mod:`~notebook_pipelines.formats.yaml_io`); :mod:`.puzzles` opens the levels.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..definition.durations import format_duration, parse_duration
from ..definition.model import Pipeline
from ..errors import PipelineError, PuzzleError

__all__ = ["LEVELS", "Level", "levels", "load_level"]

LEVELS = Path(__file__).with_name("levels")
#: a level file is small: refuse anything larger before reading it
MAX_LEVEL_BYTES = 256 * 1024
GOAL_KEYS = ("makespan_at_most", "status", "statuses", "failures", "predict")
PREDICTIONS = ("ran", "statuses", "makespan")


@dataclass
class Level:
    """One puzzle: the start pipeline, what its steps take, the goal, hints and the reference answer."""

    title: str
    pipeline: str
    goal: dict
    story: str = ""
    durations: dict = field(default_factory=dict)
    hints: list = field(default_factory=list)
    solution: Any = None
    number: int | None = None
    name: str = ""
    source: str = "<level>"

    @property
    def predicts(self) -> str | None:
        """``"ran"``, ``"statuses"`` or ``"makespan"`` for a prediction level, else None."""
        return self.goal.get("predict")


def _level_files() -> list[Path]:
    return sorted(LEVELS.glob("*.yaml"))


def _number_and_name(path: Path) -> tuple[int | None, str]:
    head, _, rest = path.stem.partition("-")
    return (int(head), rest) if head.isdigit() else (None, path.stem)


def load_level(source: Any) -> Level:
    """A :class:`Level` from a level number, a built-in level's name, or a path to a level file.

    Raises:
        PuzzleError: no such level, or a file that is not a level (says which key is wrong).
    """
    from ..formats.yaml_io import load_data

    if isinstance(source, Level):
        return source
    if isinstance(source, bool) or not isinstance(source, int | str | Path):
        raise PuzzleError(f"puzzle({source!r}): give a level number, a level name or a path to a level file")
    path = _find(source)
    size = path.stat().st_size if path.is_file() else -1
    if size < 0 or size > MAX_LEVEL_BYTES:
        why = "not a regular file" if size < 0 else f"{size} bytes, over {MAX_LEVEL_BYTES}"
        raise PuzzleError(f"{path}: cannot be a level file ({why})")
    data = load_data(path)
    number, name = _number_and_name(path)
    return _level(data, str(path), number, name)


def _find(source: int | str | Path) -> Path:
    files = _level_files()
    if isinstance(source, int):
        for path in files:
            if _number_and_name(path)[0] == source:
                return path
        raise PuzzleError(
            f"there is no level {source}: the levels are 1 to {len(files)} (nbp.puzzle.levels())"
        )
    text = str(source)
    if isinstance(source, Path) or text.endswith((".yaml", ".yml")) or "/" in text:
        path = Path(source)
        if not path.exists():
            raise PuzzleError(f"{path}: no such level file")
        return path
    for path in files:
        if _number_and_name(path)[1] == text:
            return path
    names = ", ".join(_number_and_name(p)[1] for p in files)
    raise PuzzleError(f"there is no level named {text!r}; the levels: {names}")


def _level(data: Any, source: str, number: int | None, name: str) -> Level:
    if not isinstance(data, Mapping):
        raise PuzzleError(f"{source}: a level is a mapping with title, goal and pipeline")
    missing = [key for key in ("title", "goal", "pipeline") if key not in data]
    if missing:
        raise PuzzleError(f"{source}: a level needs {', '.join(missing)}")
    unknown = sorted(set(data) - {"title", "story", "goal", "durations", "hints", "pipeline", "solution"})
    if unknown:
        raise PuzzleError(f"{source}: unknown key(s) {', '.join(map(str, unknown))}")
    level = Level(
        title=str(data["title"]),
        story=str(data.get("story") or ""),
        goal=dict(data["goal"]) if isinstance(data["goal"], Mapping) else data["goal"],
        durations=dict(data.get("durations") or {}),
        hints=[str(h) for h in data.get("hints") or []],
        pipeline=data["pipeline"],
        solution=data.get("solution"),
        number=number,
        name=name,
        source=source,
    )
    check_goal(level)
    if not isinstance(level.pipeline, str):
        raise PuzzleError(f"{source}: `pipeline` is the start pipeline's YAML text (`pipeline: |`)")
    return level


def check_goal(level: Level) -> None:
    goal, where = level.goal, level.source
    if not isinstance(goal, Mapping) or not goal:
        raise PuzzleError(f"{where}: `goal` is a mapping with any of {', '.join(GOAL_KEYS)}")
    unknown = sorted(set(goal) - set(GOAL_KEYS))
    if unknown:
        raise PuzzleError(f"{where}: unknown goal key(s) {', '.join(unknown)}; known: {', '.join(GOAL_KEYS)}")
    predict = goal.get("predict")
    if predict is not None and predict not in PREDICTIONS:
        raise PuzzleError(f"{where}: `predict` is one of {', '.join(PREDICTIONS)}, not {predict!r}")
    if predict is None and not {"makespan_at_most", "status", "statuses"} & set(goal):
        raise PuzzleError(
            f"{where}: the goal says nothing to reach: give makespan_at_most, status, statuses or predict"
        )
    if "makespan_at_most" in goal:
        goal["makespan_at_most"] = seconds_of(goal["makespan_at_most"], f"{where}: makespan_at_most")
    for step, value in level.durations.items():
        level.durations[step] = seconds_of(value, f"{where}: durations of {step!r}")


def parse_seconds(value: Any, what: str, error: type[Exception], wrong_kind: str) -> float:
    """``value`` in seconds: a number (not a bool) or a Harness duration (``"1m 5s"``).

    Anything else raises ``error`` naming ``what``: ``wrong_kind`` says what to give instead of a
    value of another type; text that is no duration gets the parser's reason.

    >>> parse_seconds("1m 5s", "your answer", ValueError, "give seconds")
    65.0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real | str):
        raise error(f"{what}: {wrong_kind}, not {value!r}")
    try:
        return float(value) if isinstance(value, numbers.Real) else parse_duration(value)
    except (ValueError, PipelineError) as err:
        raise error(f"{what}: {err}") from None


def seconds_of(value: Any, what: str) -> float:
    """A duration in a level (or a predicted makespan): 0 s or more."""
    seconds = parse_seconds(value, what, PuzzleError, "give seconds or a Harness duration ('30s')")
    if not math.isfinite(seconds) or seconds < 0:
        raise PuzzleError(f"{what}: give a duration of 0 s or more, not {value!r}")
    return seconds


def levels() -> Any:
    """The built-in levels, easiest first: a DataFrame of ``number``, ``name``, ``title``, ``goal``."""
    import pandas as pd

    rows = []
    for path in _level_files():
        level = load_level(path)
        rows.append(
            {"number": level.number, "name": level.name, "title": level.title, "goal": goal_text(level)}
        )
    return pd.DataFrame(rows, columns=["number", "name", "title", "goal"])


def goal_text(level: Level) -> str:
    goal = level.goal
    parts = []
    failures = goal.get("failures")
    if goal.get("predict") == "ran":
        parts.append("name every step that runs")
    elif goal.get("predict") == "statuses":
        parts.append("give every step's final status")
    elif goal.get("predict") == "makespan":
        parts.append("predict how long the run takes")
    if "makespan_at_most" in goal:
        parts.append(f"finish in at most {format_duration(goal['makespan_at_most'])}")
    if goal.get("status"):
        parts.append(f"end {goal['status']}")
    for step, status in (goal.get("statuses") or {}).items():
        parts.append(f"`{step}` ends {status}")
    if failures:
        parts.append("when " + ", ".join(f"`{s}` fails" for s in failures))
    if not goal.get("predict"):
        parts.append("keeping every step and every reference between them")
    return ", ".join(parts)


def dump_level(data: dict) -> str:
    """A level as a person would write it: multi-line text (the pipelines) as literal blocks."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> Any:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100)


def quietly(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` with its warnings silenced (what a level's YAML keeps but the toolkit does not model)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


def pipeline_of(value: Any, what: str) -> Pipeline:
    from ..formats.yaml_io import load_yaml

    if isinstance(value, Pipeline):
        return value
    if isinstance(value, str | Path):
        return quietly(load_yaml, value)
    raise PuzzleError(f"{what}: give a Pipeline, its YAML text or a path, not {type(value).__name__}")
