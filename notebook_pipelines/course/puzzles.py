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

It stands on :mod:`.level_files` (levels as files: reading, the built-in ones, writing) and
:mod:`.judging` (what a check compares and simulates).

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
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..definition.durations import format_duration
from ..definition.model import Pipeline
from ..definition.plan import Plan, compile_plan
from ..errors import DefinitionError, PuzzleError
from .judging import (
    count_moves,
    declared_durations,
    dependencies,
    goal_failures,
    makespan_of,
    simulate_level,
    steps_by_key,
)
from .level_files import (
    Level,
    check_goal,
    dump_level,
    goal_text,
    levels,
    load_level,
    pipeline_of,
    quietly,
    seconds_of,
)

__all__ = ["Level", "Puzzle", "PuzzleError", "Verdict", "levels", "load_level", "puzzle", "save"]

#: what a prediction of the makespan may be off by, in seconds
TOLERANCE_S = 0.5


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
        self._start = pipeline_of(level.pipeline, f"{level.source}: pipeline")
        self.pipeline = self.reset()

    def reset(self) -> Pipeline:
        """A fresh copy of the start pipeline (also kept as ``.pipeline``)."""
        self.pipeline = copy.deepcopy(self._start)
        return self.pipeline

    @property
    def goal(self) -> str:
        """The goal in words."""
        return goal_text(self.level)

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
        return pipeline_of(solution, f"{self.level.source}: solution")

    def simulate(self, pipeline: Any = None) -> Any:
        """The trace of ``pipeline`` (default: the start) with the level's durations and failures."""
        return simulate_level(
            self.level, pipeline_of(pipeline, "answer") if pipeline is not None else self._start
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
        trace = simulate_level(self.level, self._start)
        steps = trace[(trace.kind == "step") & trace.iteration.isna()]
        last = steps.drop_duplicates("fqn", keep="last").set_index("step")
        kind = self.level.predicts
        if answer is None:
            raise PuzzleError(
                f"this level asks for a prediction ({goal_text(self.level)}): check(your_answer)"
            )
        if kind == "makespan":
            guess = seconds_of(answer, "your prediction")
            real = makespan_of(trace)
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
        candidate = self.pipeline if answer is None else pipeline_of(answer, "your answer")
        try:
            plan = compile_plan(candidate)
        except DefinitionError as err:
            first = err.problems[0]
            return Verdict(False, f"the pipeline is not valid: {first.message}", hint=_rule_hint(first.rule))
        start = compile_plan(self._start)
        before, after = steps_by_key(start), steps_by_key(plan)
        if set(before) != set(after):
            gone = sorted(k[1] for k in set(before) - set(after))
            new = sorted(k[1] for k in set(after) - set(before))
            parts = [f"missing {', '.join(gone)}" if gone else "", f"new {', '.join(new)}" if new else ""]
            return Verdict(False, "keep the same steps (" + "; ".join(p for p in parts if p) + ")")
        lost = sorted(dependencies(start) - dependencies(plan))
        if lost:
            reader, target = lost[0]
            return Verdict(
                False,
                f"`{reader}` no longer reads `{target}`: keep every reference the start pipeline makes",
                hint="move steps around; do not remove what they read from each other",
            )
        trace = simulate_level(self.level, candidate)
        makespan = makespan_of(trace)
        moves = count_moves(start, plan)
        par = self._par(start)
        failed = goal_failures(self.level.goal, trace, makespan)
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
            return count_moves(start, compile_plan(pipeline_of(self.level.solution, "solution")))
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
        durations = declared_durations(compile_plan(pipeline))
    level = Level(
        title=title,
        story=story,
        goal=dict(goal),
        durations=dict(durations),
        hints=list(hints),
        pipeline=quietly(dump_yaml, pipeline),
        solution=(quietly(dump_yaml, solution) if isinstance(solution, Pipeline) else solution),
        source=str(path),
    )
    check_goal(level)
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
    tmp.write_text(dump_level(data), encoding="utf-8")
    tmp.replace(path)
    return path


puzzle.levels = levels  # type: ignore[attr-defined]
puzzle.save = save  # type: ignore[attr-defined]
puzzle.load = load_level  # type: ignore[attr-defined]


def _rule_hint(rule: str | None) -> str | None:
    if rule == "R45":
        return "a step can read only what finished before it starts: keep a reader after what it reads"
    return None


def _markup(text: str) -> str:
    """The story as HTML: escaped, with `code` spans."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text.strip())).replace("\n\n", "</p><p>")
