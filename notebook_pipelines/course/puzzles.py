"""Pipeline puzzles: small levels, each checked at once by simulating the learner's answer.

``nbp.puzzle(1)`` opens a level: a story, a start pipeline (``.pipeline``, a fresh copy to
edit or to rebuild), the durations its steps take, and a goal. ``.check(answer)`` simulates
the answer in virtual time and says *right* or *not yet*, with a hint that gets more precise
with each wrong try; ``.solution()`` shows the reference answer when asked.

Kinds of goal (the ``goal`` mapping of a level):

- **Layout** (``makespan_at_most``, ``status``, ``statuses``): the answer is a pipeline. It
  must validate, hold the same steps, keep every reference a step makes to another (a step
  that reads ``build``'s output still reads it), and, simulated with the level's durations
  and ``failures``, meet the goal: finish within ``makespan_at_most``, end with ``status``
  (``Success`` by default when a makespan is asked), give these steps these ``statuses``.
- **Prediction** (``predict: ran | statuses | makespan``): the answer is a guess about the
  start pipeline, checked against its simulation: the steps that run (a collection of step
  ids: every step that started, whatever its status), each step's status (a mapping), or
  the makespan (seconds or a Harness duration, right within half a second).

Moves ("golf"): a layout answer is scored by how many steps now wait for a different set of
steps than in the start pipeline (everything before a step in the serial lists around it,
earlier stages included), plus steps that changed their stage, group or rollback list. Each
level's par is its reference solution's count.

A level is a small YAML file (see ``levels/`` beside this module)::

    title: Side by side
    story: "`unit` and `lint` share nothing, yet `lint` waits for `unit`."
    goal: {makespan_at_most: 30s}
    durations: {unit: 30s, lint: 10s}
    hints: ["Steps that share nothing can start together: a parallel block."]
    pipeline: |          # the start pipeline, in Harness YAML
      pipeline: ...
    solution: |          # a pipeline (layout goals) or the answer (prediction goals)
      pipeline: ...

``nbp.puzzle.save(path, pipeline, title=…, goal=…, solution=…)`` writes one from Python (and
checks that the reference solution solves it and the start does not), ``nbp.puzzle(path)``
plays it, ``nbp.puzzle.levels()`` lists the built-in levels.

>>> import notebook_pipelines as nbp
>>> pz = nbp.puzzle(1)
>>> pz.check(pz.pipeline).right
False
>>> pz.check(pz.solution()).right
True
"""

from __future__ import annotations

import copy
import html
import math
import numbers
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..definition.durations import format_duration, parse_duration
from ..definition.model import Pipeline
from ..definition.plan import Plan, PlanNode, compile_plan
from ..definition.references import expressions_of
from ..errors import DefinitionError, PipelineError

__all__ = ["Level", "Puzzle", "PuzzleError", "Verdict", "levels", "load_level", "puzzle", "save"]

LEVELS = Path(__file__).with_name("levels")
#: what a prediction of the makespan may be off by, in seconds
TOLERANCE_S = 0.5
#: a level file is small: refuse anything larger before reading it
MAX_LEVEL_BYTES = 256 * 1024
GOAL_KEYS = ("makespan_at_most", "status", "statuses", "failures", "predict")
PREDICTIONS = ("ran", "statuses", "makespan")
_OUTPUT_REF = re.compile(
    r"execution\.steps\.(?:[A-Za-z_$][\w$]*\.steps\.)*([A-Za-z_$][\w$]*)\.output\.outputVariables\.([A-Za-z_$][\w$]*)"
)


class PuzzleError(PipelineError, ValueError):
    """A level that cannot be read or saved, or an answer of the wrong kind; says what and how to fix it."""


# -- levels -----------------------------------------------------------------------------------------
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
    _check_goal(level)
    if not isinstance(level.pipeline, str):
        raise PuzzleError(f"{source}: `pipeline` is the start pipeline's YAML text (`pipeline: |`)")
    return level


def _check_goal(level: Level) -> None:
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
        goal["makespan_at_most"] = _seconds(goal["makespan_at_most"], f"{where}: makespan_at_most")
    for step, value in level.durations.items():
        level.durations[step] = _seconds(value, f"{where}: durations of {step!r}")


def _seconds(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real | str):
        raise PuzzleError(f"{what}: give seconds or a Harness duration ('30s'), not {value!r}")
    try:
        seconds = float(value) if isinstance(value, numbers.Real) else parse_duration(value)
    except (ValueError, PipelineError) as err:
        raise PuzzleError(f"{what}: {err}") from None
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
            {"number": level.number, "name": level.name, "title": level.title, "goal": _goal_text(level)}
        )
    return pd.DataFrame(rows, columns=["number", "name", "title", "goal"])


# -- answers ------------------------------------------------------------------------------------------
@dataclass
class Verdict:
    """What :meth:`Puzzle.check` (or ``nbp.check``) says: ``right``, a message, a hint when not
    right, and the score; ``pending`` when there is no answer yet (the message says what to give)."""

    right: bool
    message: str
    hint: str | None = None
    makespan_s: float | None = None
    moves: int | None = None
    par: int | None = None
    pending: bool = False

    def __bool__(self) -> bool:
        return self.right

    def __str__(self) -> str:
        word = "right: " if self.right else "your turn: " if self.pending else "not yet: "
        return word + self.message + (f"\nhint: {self.hint}" if self.hint else "")

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        if self.right:
            colour, mark = "#1b7f3b", "✔ right"
        elif self.pending:
            colour, mark = "#5f6b7a", "✎ your turn"
        else:
            colour, mark = "#a4501b", "✘ not yet"
        hint = f"<div><b>hint:</b> {_markup(self.hint)}</div>" if self.hint else ""
        return (
            f'<div style="border-left: 4px solid {colour}; padding: 4px 10px">'
            f'<b style="color: {colour}">{mark}</b> — {_markup(self.message)}{hint}</div>'
        )


class Puzzle:
    """A level being played: ``.pipeline`` to edit, ``.check(answer)``, ``.hint()``, ``.solution()``.

    Args:
        level: a :class:`Level` (see :func:`puzzle` for the other ways to name one).
    """

    def __init__(self, level: Level):
        self.level = level
        self.tries = 0
        self._start = _pipeline_of(level.pipeline, f"{level.source}: pipeline")
        self.pipeline = self.reset()

    def reset(self) -> Pipeline:
        """A fresh copy of the start pipeline (also kept as ``.pipeline``)."""
        self.pipeline = copy.deepcopy(self._start)
        return self.pipeline

    @property
    def goal(self) -> str:
        """The goal in words."""
        return _goal_text(self.level)

    def hint(self) -> str:
        """The next hint (the last one again once all were given)."""
        hints = self.level.hints or ["read the goal again, and simulate your answer: p.simulate(durations=…)"]
        return hints[min(self.tries, len(hints) - 1)]

    def solution(self) -> Any:
        """The reference answer: a pipeline for a layout goal, the answer itself for a prediction."""
        solution = self.level.solution
        if solution is None:
            raise PuzzleError(f"{self.level.source}: this level has no reference solution")
        if self.level.predicts:
            return solution
        return _pipeline_of(solution, f"{self.level.source}: solution")

    def simulate(self, pipeline: Any = None) -> Any:
        """The trace of ``pipeline`` (default: the start) with the level's durations and failures."""
        return _simulate(
            self.level, _pipeline_of(pipeline, "answer") if pipeline is not None else self._start
        )

    def check(self, answer: Any = None) -> Verdict:
        """Is ``answer`` right? A layout goal takes a pipeline (default: ``self.pipeline``),
        its YAML text or a path; a prediction takes the predicted value."""
        verdict = self._predicted(answer) if self.level.predicts else self._laid_out(answer)
        if not verdict.right:
            verdict.hint = verdict.hint or self.hint()
            self.tries += 1
        return verdict

    # -- prediction levels --
    def _predicted(self, answer: Any) -> Verdict:
        trace = _simulate(self.level, self._start)
        steps = trace[(trace.kind == "step") & trace.iteration.isna()]
        last = steps.drop_duplicates("fqn", keep="last").set_index("step")
        kind = self.level.predicts
        if answer is None:
            raise PuzzleError(
                f"this level asks for a prediction ({_goal_text(self.level)}): check(your_answer)"
            )
        if kind == "makespan":
            guess = _seconds(answer, "your prediction")
            real = _makespan(trace)
            right = abs(guess - real) <= TOLERANCE_S
            if right:
                return Verdict(True, f"the run takes {format_duration(real)}", makespan_s=real)
            return Verdict(False, f"the run does not take {format_duration(guess)}", makespan_s=None)
        if kind == "ran":
            if isinstance(answer, str) or not isinstance(answer, Iterable):
                raise PuzzleError("give the steps that run as a list of step ids: check(['a', 'b'])")
            guess = {str(a) for a in answer}
            ran = set(last.index[last.status.isin(_RAN)])
            self._known(guess, last.index)
            wrong = len(guess ^ ran)
            if not wrong:
                return Verdict(True, f"exactly these {len(ran)} steps run: {', '.join(sorted(ran))}")
            return Verdict(False, f"{wrong} step{'s are' if wrong > 1 else ' is'} not right")
        if not isinstance(answer, Mapping):
            raise PuzzleError("give each step's status as a mapping: check({'a': 'Success', 'b': 'Skipped'})")
        self._known(set(answer), last.index)
        wrong = sorted(s for s in last.index if str(answer.get(s)) != last.status[s])
        if not wrong:
            return Verdict(True, "every status is right")
        return Verdict(False, f"{len(wrong)} of {len(last)} statuses are not right")

    def _known(self, named: set, steps: Iterable) -> None:
        unknown = sorted(named - set(steps))
        if unknown:
            raise PuzzleError(
                f"no step named {', '.join(map(repr, unknown))}; the steps: {', '.join(sorted(steps))}"
            )

    # -- layout levels --
    def _laid_out(self, answer: Any) -> Verdict:
        candidate = self.pipeline if answer is None else _pipeline_of(answer, "your answer")
        try:
            plan = compile_plan(candidate)
        except DefinitionError as err:
            first = err.problems[0]
            return Verdict(False, f"the pipeline is not valid: {first.message}", hint=_rule_hint(first.rule))
        start = compile_plan(self._start)
        before, after = _steps(start), _steps(plan)
        if set(before) != set(after):
            gone = sorted(k[1] for k in set(before) - set(after))
            new = sorted(k[1] for k in set(after) - set(before))
            parts = [f"missing {', '.join(gone)}" if gone else "", f"new {', '.join(new)}" if new else ""]
            return Verdict(False, "keep the same steps (" + "; ".join(p for p in parts if p) + ")")
        lost = sorted(_dependencies(start) - _dependencies(plan))
        if lost:
            reader, target = lost[0]
            return Verdict(
                False,
                f"`{reader}` no longer reads `{target}`: keep every reference the start pipeline makes",
                hint="move steps around; do not remove what they read from each other",
            )
        trace = _simulate(self.level, candidate)
        makespan = _makespan(trace)
        moves = count_moves(start, plan)
        par = self._par(start)
        failed = _goal_failures(self.level.goal, trace, makespan)
        if failed:
            return Verdict(False, failed, makespan_s=makespan, moves=moves, par=par)
        score = f" in {moves} move{'s' if moves != 1 else ''}" + (f" (par {par})" if par is not None else "")
        return Verdict(
            True, f"finishes in {format_duration(makespan)}{score}", makespan_s=makespan, moves=moves, par=par
        )

    def _par(self, start: Plan) -> int | None:
        if self.level.solution is None:
            return None
        try:
            return count_moves(start, compile_plan(_pipeline_of(self.level.solution, "solution")))
        except DefinitionError:
            return None  # save() refuses such a level; a hand-written one still plays

    # -- display --
    def __repr__(self) -> str:
        number = f"level {self.level.number}: " if self.level.number is not None else ""
        return f"<puzzle {number}{self.level.title} — goal: {self.goal}>"

    def _repr_html_(self) -> str:
        level = self.level
        number = f"Level {level.number} · " if level.number is not None else ""
        durations = ", ".join(
            f"<code>{html.escape(str(s))}</code> {format_duration(d)}" for s, d in level.durations.items()
        )
        rows = [
            f"<h3 style='margin: 0.2em 0'>{number}{html.escape(level.title)}</h3>",
            f"<p>{_markup(level.story)}</p>" if level.story else "",
            f"<p><b>Goal:</b> {html.escape(self.goal)}</p>",
            f"<p><b>Durations:</b> {durations}</p>" if durations else "",
            "<p style='color: #555'>Edit or rebuild <code>pz.pipeline</code>, then <code>pz.check(…)</code>;"
            " <code>pz.hint()</code> when stuck.</p>",
        ]
        return "<div>" + "".join(rows) + "</div>"

    def _ipython_display_(self) -> None:
        from IPython.display import display

        card = {"text/html": self._repr_html_(), "text/plain": f"{self!r}\n{self.level.story}"}
        display(card, raw=True)
        display(self._start)


_RAN = frozenset(
    {"Success", "Failed", "Errored", "Expired", "Aborted", "IgnoreFailed", "ApprovalRejected", "FreezeFailed"}
)


def puzzle(level: Any) -> Puzzle:
    """Open a pipeline puzzle: ``puzzle(3)``, ``puzzle("side-by-side")`` or ``puzzle("my-level.yaml")``.

    ``puzzle.levels()`` lists the built-in levels; ``puzzle.save(...)`` writes a level of your own.
    """
    return Puzzle(load_level(level))


# -- saving a teacher's level -------------------------------------------------------------------------
def save(
    path: str | Path,
    pipeline: Pipeline,
    *,
    title: str,
    goal: Mapping,
    story: str = "",
    durations: Mapping | None = None,
    hints: Iterable[str] = (),
    solution: Any = None,
) -> Path:
    """Write a level file that :func:`puzzle` plays, after checking that it can be played.

    Args:
        path: where to write (``.yaml``).
        pipeline: the start pipeline.
        title, story, hints: what the learner reads.
        goal: as in the module notes (``{"makespan_at_most": "40s"}``, ``{"predict": "ran",
            "failures": {"lint": [1]}}``, …).
        durations: seconds or Harness durations by step id; default: each step's own
            ``duration=`` (a puzzle has one right answer, so no samplers).
        solution: the reference answer: a pipeline for a layout goal, the value for a prediction.

    Raises:
        PuzzleError: the goal is malformed, the start already meets it, or the solution does not.
    """
    from ..formats.yaml_io import dump_yaml

    path = Path(path)
    if durations is None:
        durations = _declared_durations(compile_plan(pipeline))
    level = Level(
        title=title,
        story=story,
        goal=dict(goal),
        durations=dict(durations),
        hints=list(hints),
        pipeline=_quiet(dump_yaml, pipeline),
        solution=(_quiet(dump_yaml, solution) if isinstance(solution, Pipeline) else solution),
        source=str(path),
    )
    _check_goal(level)
    played = Puzzle(level)
    if level.solution is not None:
        verdict = Puzzle(level).check(played.solution())
        if not verdict.right:
            raise PuzzleError(f"{path}: the solution does not solve the level: {verdict.message}")
    if not level.predicts and played.check(played.pipeline).right:
        raise PuzzleError(
            f"{path}: the start pipeline already meets the goal ({played.goal}): nothing to solve"
        )
    goal = dict(level.goal)
    if "makespan_at_most" in goal:
        goal["makespan_at_most"] = format_duration(goal["makespan_at_most"])
    data = {
        "title": level.title,
        "story": level.story,
        "goal": goal,
        "durations": {step: format_duration(seconds) for step, seconds in level.durations.items()},
        "hints": level.hints,
        "pipeline": level.pipeline,
        "solution": level.solution,
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(_dump(data), encoding="utf-8")
    tmp.replace(path)
    return path


puzzle.levels = levels  # type: ignore[attr-defined]
puzzle.save = save  # type: ignore[attr-defined]
puzzle.load = load_level  # type: ignore[attr-defined]


# -- helpers ----------------------------------------------------------------------------------------
def _dump(data: dict) -> str:
    """A level as a person would write it: multi-line text (the pipelines) as literal blocks."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> Any:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100)


def _quiet(fn: Any, *args: Any) -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


def _pipeline_of(value: Any, what: str) -> Pipeline:
    from ..formats.yaml_io import load_yaml

    if isinstance(value, Pipeline):
        return value
    if isinstance(value, str | Path):
        return _quiet(load_yaml, value)
    raise PuzzleError(f"{what}: give a Pipeline, its YAML text or a path, not {type(value).__name__}")


def _declared_durations(plan: Plan) -> dict[str, Any]:
    """Each step's own ``duration=``, by id (by FQN where two steps share an id)."""
    steps = [n for n in plan.nodes if n.kind == "step" and n.duration is not None]
    ids = [n.id for n in steps]
    return {(n.id if ids.count(n.id) == 1 else n.fqn): n.duration for n in steps}


def _key(node: PlanNode) -> tuple[str | None, str]:
    """A step's identity across layouts: its stage and its id (moving into a group keeps it)."""
    return (node.stage.id if node.stage is not None else None, node.id)


def _steps(plan: Plan) -> dict[tuple, PlanNode]:
    return {_key(n): n for n in plan.nodes if n.kind == "step"}


def _dependencies(plan: Plan) -> set[tuple[str, str]]:
    """``(reader, target)`` (step ids) for every reference a step makes to another node."""
    from ..analysis.layout import references

    return {(reader.id, target.id) for reader, target in references(plan) if target is not reader}


def _outputs_read(plan: Plan) -> dict[str, dict[str, str]]:
    """A placeholder for every output variable a reference reads, so a sketch without bodies runs."""
    read: dict[str, dict[str, str]] = {}
    for node in plan.nodes:
        for _where, text, _strict in expressions_of(node):
            for step, var in _OUTPUT_REF.findall(text):
                read.setdefault(step, {})[var] = f"{step}.{var}"
    return read


def _simulate(level: Level, pipeline: Pipeline) -> Any:
    from ..engine.simulation import simulate

    plan = compile_plan(pipeline)
    goal = level.goal
    return simulate(
        plan,
        durations=level.durations,
        default=0.0,
        failures=goal.get("failures"),
        outputs=_outputs_read(plan),
        strict=False,
        run_id="puzzle",
    )


def _makespan(trace: Any) -> float:
    root = trace[trace.kind == "pipeline"]
    return float(root.duration_s.iloc[-1]) if len(root) else 0.0


def _goal_failures(goal: Mapping, trace: Any, makespan: float) -> str | None:
    """Why ``trace`` misses ``goal`` (one sentence), or None when it meets it."""
    status = trace[trace.kind == "pipeline"].status.iloc[-1]
    wanted = goal.get("status", "Success" if "makespan_at_most" in goal else None)
    if wanted is not None and status != wanted:
        return f"the pipeline ends {status}, the goal is {wanted}"
    limit = goal.get("makespan_at_most")
    if limit is not None and makespan > limit + 1e-9:
        return f"it takes {format_duration(makespan)}; the goal is at most {format_duration(limit)}"
    steps = trace[trace.kind == "step"].drop_duplicates("fqn", keep="last")
    by_id = dict(zip(steps.step, steps.status.astype(str)))
    for step, want in (goal.get("statuses") or {}).items():
        got = by_id.get(step, "missing")
        if got != want:
            return f"`{step}` ends {got}; the goal is {want}"
    return None


def _goal_text(level: Level) -> str:
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


def _rule_hint(rule: str | None) -> str | None:
    if rule == "R45":
        return "a step can read only what finished before it starts: keep a reader after what it reads"
    return None


def _markup(text: str) -> str:
    """The story as HTML: escaped, with `code` spans."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text.strip())).replace("\n\n", "</p><p>")


# -- moves --------------------------------------------------------------------------------------------
def _waits(plan: Plan) -> dict[str, tuple]:
    """Per step id: (its containers' ids, its list, the set of step ids before it in the layout)."""
    out: dict[tuple, tuple] = {}

    def visit(container: PlanNode, before: frozenset, path: tuple) -> None:
        for phase, items in (("execution", container.items or ()), ("rollback", container.rollback or ())):
            done = before if phase == "execution" else frozenset()
            for item in items:
                members = item.items if item.kind == "parallel" else (item,)
                for node in members:
                    if node.kind == "step":
                        out[_key(node)] = (path, phase, done)
                    else:
                        visit(node, done, (*path, node.id))
                done = done | {
                    _key(n) for m in members for n in m.walk() if n.kind == "step" and n.phase == "execution"
                }

    visit(plan.root, frozenset(), ())
    return out


def count_moves(start: Plan, answer: Plan) -> int:
    """Steps that wait for a different set of steps, or sit in another container, than at the start."""
    a, b = _waits(start), _waits(answer)
    return sum(1 for step, where in a.items() if b.get(step) != where)
