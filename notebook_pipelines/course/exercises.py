"""The course's exercises: ``nbp.check("03.1", answer, ...)`` says right or not yet, with a hint.

Every notebook of the course from 02 on ends with an exercise, stored *unsolved*: a cell with
``answer = ...`` for the learner to fill in, and a check. The check never holds the right
answer: it computes it, by simulating the notebook's pipeline (or reading the notebook's trace)
passed after the answer, so what it compares with is what the semantics give::

    answer = ...                     # when does `c` end, in seconds?
    nbp.check("03.1", answer, ex)    # ex: the exercise's pipeline, built in the cell above

It returns a :class:`~.puzzles.Verdict` (``right``, ``message``, ``hint``; shown as a coloured
box in a notebook, as ``right: …`` / ``not yet: …`` in text):

- an answer still ``...`` says what to fill in (``your turn: …``; it does not count as a try);
- a wrong answer says what is wrong and gives a hint, more precise on each try (the hints of an
  exercise go from the rule to apply to the numbers of the case);
- a right one says why it is right.

``check.exercises()`` lists them (id, notebook, question); the solutions the test suite fills
in live in ``notebooks/solutions.yaml``.

>>> import notebook_pipelines as nbp
>>> ex = nbp.Pipeline("exercise")
>>> with ex.stage("s") as s:
...     with s.step_group("g") as g:
...         with g.parallel():
...             _ = g.step("a", duration="20s")
...             _ = g.step("b", duration="50s")
...         _ = g.step("c", duration="10s")
>>> print(nbp.check("03.1", ..., ex))
your turn: fill in `answer`: the time `c` ends, in seconds (a number, or a duration such as "1m 5s")
>>> nbp.check("03.1", 30, ex).right
False
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..definition.durations import format_duration
from ..definition.model import Pipeline
from ..errors import DefinitionError, ExerciseError
from .level_files import parse_seconds
from .puzzles import Level, Puzzle, Verdict

__all__ = ["Exercise", "ExerciseError", "check", "exercises"]

#: how far a time may be off and still be right, in seconds
TOLERANCE_S = 0.5


@dataclass
class Exercise:
    """One exercise: what it asks, what it needs, how it finds the truth and judges an answer.

    Attributes:
        id: ``"NN.k"``: the notebook's number and the exercise's in it.
        question: the question, as the notebook asks it.
        fill: what ``answer`` holds (said when it is still ``...``).
        given: the names of what the check needs after the answer (the notebook's objects).
        judge: ``(answer, *given) -> (right, message, facts)``; ``facts`` feed the hints.
        hints: from general to precise; a hint is text, or a callable of the facts.
    """

    id: str
    question: str
    fill: str
    given: tuple[str, ...]
    judge: Callable[..., tuple[bool, str, dict]]
    hints: list[str | Callable[[dict], str]] = field(default_factory=list)
    tries: int = 0

    @property
    def notebook(self) -> str:
        return self.id.split(".")[0]

    def hint(self, facts: dict) -> str:
        """The hint for the current try: the first on the first wrong try, then the next ones."""
        hint = self.hints[min(self.tries, len(self.hints) - 1)]
        return hint(facts) if callable(hint) else hint


_EXERCISES: dict[str, Exercise] = {}


def _exercise(id: str, question: str, fill: str, given: tuple[str, ...], hints: list) -> Callable:
    def register(judge: Callable) -> Callable:
        _EXERCISES[id] = Exercise(id, question, fill, given, judge, hints)
        return judge

    return register


# -- the public calls -----------------------------------------------------------------------------
def check(exercise: str, answer: Any = ..., *given: Any) -> Verdict:
    """Check ``answer`` to exercise ``exercise`` (``"03.1"``), with what it needs (``given``).

    Args:
        exercise: the exercise's id, as the notebook names it.
        answer: the learner's answer; ``...`` (the stored, unsolved notebook) asks for one.
        *given: the notebook's objects the exercise is about (the check says which).

    Returns:
        A :class:`~.puzzles.Verdict`: right or not yet, a message, a hint when not right.

    Raises:
        ExerciseError: no such exercise, or the wrong number or kind of ``given``.
    """
    ex = _EXERCISES.get(str(exercise))
    if ex is None:
        known = ", ".join(sorted(_EXERCISES))
        raise ExerciseError(f"there is no exercise {exercise!r}; the exercises: {known}")
    if len(given) != len(ex.given):
        call = ", ".join([repr(ex.id), "answer", *ex.given])
        raise ExerciseError(f"exercise {ex.id} needs {len(ex.given)} more argument(s): nbp.check({call})")
    if answer is ...:
        return Verdict(False, f"fill in `answer`: {ex.fill}", pending=True)
    right, message, facts = ex.judge(answer, *given)
    if right:
        return Verdict(True, message)
    verdict = Verdict(False, message, hint=ex.hint(facts))
    ex.tries += 1
    return verdict


def exercises() -> Any:
    """The exercises of the course: a DataFrame of ``id``, ``notebook``, ``question``, ``answer``."""
    import pandas as pd

    rows = [{"id": e.id, "notebook": e.notebook, "question": e.question, "answer": e.fill} for e in _all()]
    return pd.DataFrame(rows, columns=["id", "notebook", "question", "answer"])


def _all() -> list[Exercise]:
    return sorted(_EXERCISES.values(), key=lambda e: tuple(int(p) for p in e.id.split(".")))


check.exercises = exercises  # type: ignore[attr-defined]


# -- answers of each kind -------------------------------------------------------------------------
def _seconds(answer: Any, what: str) -> float:
    """An answer in seconds: a number or a Harness duration (``"1m 5s"``)."""
    wrong_kind = "give seconds (a number) or a duration such as '1m 5s'"
    seconds = parse_seconds(answer, what, ExerciseError, wrong_kind)
    if not math.isfinite(seconds):
        raise ExerciseError(f"{what}: give a finite number of seconds, not {answer!r}")
    return seconds


def _same_time(guess: float, truth: float) -> bool:
    return abs(guess - truth) <= TOLERANCE_S


def _pipeline(value: Any, what: str) -> Pipeline:
    if not isinstance(value, Pipeline):
        kind = type(value).__name__
        raise ExerciseError(f"{what}: pass the exercise's pipeline (an nbp.Pipeline), not {kind}")
    return value


def _trace(value: Any, what: str) -> Any:
    import pandas as pd

    if not isinstance(value, pd.DataFrame) or "kind" not in value.columns:
        raise ExerciseError(f"{what}: pass the notebook's trace (a DataFrame from simulate() or run())")
    return value


def _step_rows(trace: Any) -> Any:
    return trace[trace.kind == "step"]


def _end(trace: Any, step: str) -> float:
    rows = _step_rows(trace)
    rows = rows[rows.step == step]
    if not len(rows):
        raise ExerciseError(f"the pipeline has no step {step!r}: pass the exercise's pipeline")
    return float(rows.end_s.max())


def _names(answer: Any, what: str) -> list[str]:
    if isinstance(answer, str) or not isinstance(answer, Iterable):
        raise ExerciseError(f"{what}: give a list of step ids, e.g. ['a_undo', 'b_undo']")
    return [str(a) for a in answer]


def _s(seconds: float) -> str:
    return f"{seconds:g} s"


# -- 02 magics -------------------------------------------------------------------------------------
@_exercise(
    "02.1",
    "`unit` has `--retry 1`. How does `%pipeline simulate --default 5s --fail unit:2` end?",
    'the pipeline\'s final status, e.g. "Success"',
    ("pipeline",),
    [
        "`--fail unit:2` makes the first 2 attempts of `unit` fail; "
        "how many attempts does --retry 1 give (E5)?",
        "When the retries run out, the stage's default strategy applies (R24): "
        "what happens to the steps after it?",
    ],
)
def _ends(answer: Any, pipeline: Any) -> tuple[bool, str, dict]:
    from ..definition.statuses import SEVERITY

    p = _pipeline(pipeline, "nbp.check('02.1', answer, release)")
    trace = p.simulate(default="5s", failures={"unit": 2}, seed=0)
    truth = str(trace[trace.kind == "pipeline"].status.iloc[-1])
    known = {"Success", *SEVERITY}
    if not isinstance(answer, str) or answer not in known:
        raise ExerciseError(f"give a status: one of {', '.join(sorted(known))}; not {answer!r}")
    if answer == truth:
        return True, f"the run ends {truth}", {}
    return False, f"the run does not end {answer}", {}


# -- 03 step groups --------------------------------------------------------------------------------
@_exercise(
    "03.1",
    "Block 0 of group `g` is `a` (20 s) and `b` (50 s), block 1 is `c` (10 s). When does `c` end?",
    'the time `c` ends, in seconds (a number, or a duration such as "1m 5s")',
    ("pipeline",),
    [
        "A parallel block ends when its slowest member ends; the next block starts then (R5).",
        lambda f: f"Block 0 ends when `b` ends, at {_s(f['b'])}; then `c` runs for {_s(f['c_takes'])}.",
    ],
)
def _c_ends(answer: Any, pipeline: Any) -> tuple[bool, str, dict]:
    trace = _pipeline(pipeline, "nbp.check('03.1', answer, ex)").simulate(seed=1)
    truth, guess = _end(trace, "c"), _seconds(answer, "your answer")
    rows = _step_rows(trace).set_index("step")
    facts = {"b": float(rows.end_s["b"]), "c_takes": float(rows.duration_s["c"])}
    if _same_time(guess, truth):
        return True, f"`c` ends at {_s(truth)}: it starts when `b`, the slower of block 0, ends (R5)", facts
    return False, f"`c` does not end at {_s(guess)}", facts


# -- 04 conditions ---------------------------------------------------------------------------------
@_exercise(
    "04.1",
    "`deploy` fails with the strategy Ignore; then `a` (default), `b` (when Failure), `c` (when All). "
    "What is each one's status?",
    'a mapping of `a`, `b` and `c` to their statuses, e.g. {"a": "Success", "b": "Skipped", "c": "Success"}',
    ("pipeline",),
    [
        "What status does `deploy` end with under Ignore, and does that count as success so far (R30)?",
        "IgnoreFailed counts as success so far (R30): which `when` runs only after a failure (R28)?",
    ],
)
def _statuses(answer: Any, pipeline: Any) -> tuple[bool, str, dict]:
    if not isinstance(answer, Mapping):
        raise ExerciseError('give a mapping of each step to its status: {"a": "Success", ...}')
    trace = _pipeline(pipeline, "nbp.check('04.1', answer, x)").simulate(failures={"deploy": True}, seed=1)
    truth = {step: str(status) for step, status in zip(trace.step, trace.status) if step in ("a", "b", "c")}
    wrong = sorted(step for step in truth if str(answer.get(step)) != truth[step])
    if not wrong:
        return True, "IgnoreFailed counts as success so far (R30): only `b`, for failures, is skipped", {}
    return False, f"the status of {', '.join(f'`{w}`' for w in wrong)} is not right", {}


# -- 05 looping ------------------------------------------------------------------------------------
@_exercise(
    "05.1",
    "The same five builds with the same durations, at most three at a time: when does `build` end?",
    'the time the last build ends, in seconds or as a duration ("45m")',
    ("pipeline", "durations"),
    [
        "A new build starts as soon as any running one ends, not in waves (R54, E13).",
        lambda f: (
            f"Draw three lanes: {f['first']} start at 0; each next build takes the first lane that frees up."
        ),
    ],
)
def _matrix_end(answer: Any, pipeline: Any, durations: Any) -> tuple[bool, str, dict]:
    trace = _pipeline(pipeline, "nbp.check('05.1', answer, wide, durations)").simulate(
        durations=durations, seed=1
    )
    rows = _step_rows(trace)
    iterations = rows[rows.iteration.notna()]
    truth, guess = float(iterations.end_s.max()), _seconds(answer, "your answer")
    first = iterations[iterations.start_s == iterations.start_s.min()]
    facts = {"first": ", ".join(f"`{r.step}` ({format_duration(r.duration_s)})" for r in first.itertuples())}
    if _same_time(guess, truth):
        return True, f"the builds end at {format_duration(truth)} ({_s(truth)})", facts
    return False, f"the builds do not end at {format_duration(guess)}", facts


# -- 06 failure strategies -------------------------------------------------------------------------
@_exercise(
    "06.1",
    '`deploy` has Retry(3, intervals=["10s", "20s"]), takes 30 s and fails every time. '
    "When does its last attempt end?",
    "the time the last attempt of `deploy` ends, in seconds",
    ("pipeline",),
    [
        "Retry(3) allows 3 retries: how many attempts is that (E5)?",
        "There are more retries than intervals: the last interval is reused (D3).",
        lambda f: (
            f"{f['attempts']} attempts of {_s(f['takes'])}, and a wait before each retry: 10, 20, 20 s."
        ),
    ],
)
def _last_attempt(answer: Any, pipeline: Any) -> tuple[bool, str, dict]:
    trace = _pipeline(pipeline, "nbp.check('06.1', answer, ex)").simulate(failures={"deploy": True}, seed=1)
    truth, guess = _end(trace, "deploy"), _seconds(answer, "your answer")
    rows = _step_rows(trace)
    rows = rows[rows.step == "deploy"]
    facts = {"attempts": len(rows), "takes": float(rows.duration_s.iloc[0])}
    if _same_time(guess, truth):
        return True, f"the last of {len(rows)} attempts ends at {_s(truth)}", facts
    return False, f"the last attempt does not end at {_s(guess)}", facts


# -- 07 rollback -----------------------------------------------------------------------------------
def _rolled_back(trace: Any) -> list[str]:
    rows = trace[(trace.phase == "rollback") & (trace.kind == "step") & (trace.attempt > 0)]
    return list(rows.sort_values("start_s", kind="stable").step)


@_exercise(
    "07.1",
    "In `order`, `db_do` fails. Which rollback steps run, in order?",
    "the rollback steps that run, in the order they run: a list of step ids",
    ("pipeline",),
    [
        "Only the step groups that ran are rolled back, latest first, then the stage's own list (R36).",
        lambda f: f"`db` is the first group: when it fails, {f['never']} never started.",
    ],
)
def _rollback_order(answer: Any, pipeline: Any) -> tuple[bool, str, dict]:
    p = _pipeline(pipeline, "nbp.check('07.1', answer, o)")
    truth = _rolled_back(p.simulate(failures={"db_do": True}, seed=1))
    guess = _names(answer, "your answer")
    groups = [g.id for g in p.stages[0].items if g.id != "db"]
    facts = {"never": " and ".join(f"`{g}`" for g in groups) or "no other group"}
    if guess == truth:
        return True, "these run: " + " → ".join(truth), facts
    extra, missing = sorted(set(guess) - set(truth)), sorted(set(truth) - set(guess))
    if extra:
        return False, f"{', '.join(extra)} do{'es' if len(extra) == 1 else ''} not run", facts
    if missing:
        return False, f"more rollback steps run than {', '.join(guess) or 'none'}", facts
    return False, "the right steps, in the wrong order", facts


# -- 08 timing analysis ----------------------------------------------------------------------------
@_exercise(
    "08.1",
    "If `e2e` took 10 s instead of 20 s, how many seconds sooner would the run end?",
    "the seconds saved (a number)",
    ("trace", "pipeline"),
    [
        "Is `e2e` on the critical path? Look at trace.pipeline.critical_path().",
        "`e2e` ran twice (its first attempt failed and was retried): what happens to each attempt?",
        lambda f: f"The critical path holds {f['on_path']} attempts of `e2e`; does the path move elsewhere?",
    ],
)
def _saved(answer: Any, trace: Any, pipeline: Any) -> tuple[bool, str, dict]:
    trace = _trace(trace, "nbp.check('08.1', answer, trace, p)")
    p = _pipeline(pipeline, "nbp.check('08.1', answer, trace, p)")
    change = trace.pipeline.what_if(durations={"e2e": "10s"}, pipeline=p)
    truth, guess = -float(change.change_s.iloc[-1]), abs(_seconds(answer, "your answer"))
    path = trace.pipeline.critical_path()
    facts = {"on_path": int((path.step == "e2e").sum())}
    if _same_time(guess, truth):
        return True, f"{_s(truth)} sooner: both attempts of `e2e` are on the critical path", facts
    return False, f"the run does not end {_s(guess)} sooner", facts


# -- 09 Harness YAML -------------------------------------------------------------------------------
@_exercise(
    "09.1",
    "In the good run, which of the two parallel deployments ends last?",
    'the identifier of the stage that ends last, e.g. "deploy_eu"',
    ("trace",),
    [
        "Compare the two stages' end_s in the good run's trace.",
        "Each deployment's end is the sum of its steps' durations (DURATIONS): "
        "rollout, then smoke where there is one.",
    ],
)
def _ends_last(answer: Any, trace: Any) -> tuple[bool, str, dict]:
    trace = _trace(trace, "nbp.check('09.1', answer, good)")
    stages = trace[trace.kind == "stage"].set_index("stage")
    candidates = [s for s in ("deploy_eu", "deploy_us") if s in stages.index]
    if len(candidates) != 2:
        raise ExerciseError("pass the good run's trace (good): it has the stages deploy_eu and deploy_us")
    truth = str(stages.loc[candidates, "end_s"].idxmax())
    if not isinstance(answer, str) or answer not in candidates:
        raise ExerciseError(f"give one of {', '.join(map(repr, candidates))}, not {answer!r}")
    if answer == truth:
        ends = ", ".join(f"{s} at {_s(float(stages.end_s[s]))}" for s in candidates)
        return True, f"{truth} ends last ({ends})", {}
    return False, f"{answer} is not the one that ends last", {}


# -- 10 Harness executions -------------------------------------------------------------------------
EU_ROLLOUT = "pipeline.stages.deploy_eu.spec.execution.steps.rollout"


@_exercise(
    "10.1",
    "If `deploy_eu`'s rollout took no time at all, how many seconds sooner would the run end?",
    "the seconds saved (a number)",
    ("trace", "pipeline"),
    [
        "Which steps set the run's length? trace.pipeline.critical_path() lists them.",
        "Only a step on the critical path can make the run shorter, and deploy_eu runs beside deploy_us.",
    ],
)
def _eu_saved(answer: Any, trace: Any, pipeline: Any) -> tuple[bool, str, dict]:
    trace = _trace(trace, "nbp.check('10.1', answer, trace, p)")
    p = _pipeline(pipeline, "nbp.check('10.1', answer, trace, p)")
    change = trace.pipeline.what_if({EU_ROLLOUT: "0s"}, pipeline=p)
    truth, guess = abs(float(change.change_s.iloc[-1])), abs(_seconds(answer, "your answer"))
    if _same_time(guess, truth):
        why = "deploy_eu is not on the critical path" if truth < TOLERANCE_S else "the path moves"
        return True, f"{_s(truth)} sooner: {why}", {}
    return False, f"the run does not end {_s(guess)} sooner", {}


# -- 11 Dask ---------------------------------------------------------------------------------------
@_exercise(
    "11.1",
    "Make `checks` run on this cluster: keep its steps `train` and `guarded`, drop what no worker "
    "offers, and give `guarded` a body that pickles.",
    "a Pipeline with the steps `train` and `guarded` that the cluster runs",
    ("client",),
    [
        "Read the two problems the refused run printed: each names its step and a fix.",
        "No worker offers `gpu`: drop delegate_selectors. A lock cannot travel: create it inside the body.",
    ],
)
def _runs_on_dask(answer: Any, client: Any) -> tuple[bool, str, dict]:
    from ..cluster.dask import DaskExecutor

    p = _pipeline(answer, "your answer")
    ids = sorted(n.id for n in p.plan().nodes if n.kind == "step")
    if ids != ["guarded", "train"]:
        has = ", ".join(ids) or "none"
        return False, f"keep the steps `train` and `guarded` (your pipeline has {has})", {}
    try:
        trace = p.run(executor=DaskExecutor(client), progress=False, report=False)
    except DefinitionError as err:
        first = err.problems[0]
        return False, f"the cluster refuses it: {first.message}", {}
    status = str(trace[trace.kind == "pipeline"].status.iloc[-1])
    if status != "Success":
        return False, f"the run ends {status}", {}
    return True, "both steps ran on the cluster's workers", {}


# -- 12 design assistant ---------------------------------------------------------------------------
@_exercise(
    "12.1",
    "Lay out `small` by hand so that it finishes as soon as its dependencies allow, keeping every step "
    "and every reference.",
    "a Pipeline: `small` laid out again",
    ("pipeline",),
    [
        "The lower bound is the longest chain of steps that read each other: "
        "nbp.suggest_layout(small).bound_s.",
        "`lint` and `compile` both read only `checkout`; `base_image` reads nothing. "
        "A step group can hold a chain (checkout, then a parallel block).",
        "A step in a group is read through the group: <+execution.steps.GROUP.steps.checkout.output…> (R42).",
    ],
)
def _by_hand(answer: Any, pipeline: Any) -> tuple[bool, str, dict]:
    from ..analysis.layout import suggest_layout
    from ..formats.yaml_io import dump_yaml
    from .level_files import quietly

    start = _pipeline(pipeline, "nbp.check('12.1', answer, small)")
    p = _pipeline(answer, "your answer")
    bound = suggest_layout(start).bound_s
    level = Level(
        title="by hand",
        pipeline=quietly(dump_yaml, start),
        goal={"makespan_at_most": bound},
        durations={n.id: n.duration for n in start.plan().steps if n.duration is not None},
    )
    verdict = Puzzle(level).check(p)
    if verdict.right:
        return True, f"it finishes in {format_duration(verdict.makespan_s)}, the lower bound", {}
    return False, verdict.message, {}


# -- 13 history ------------------------------------------------------------------------------------
def _on_path(facts: dict) -> str:
    return (
        f"`{facts['answer']}` is on the critical path in {facts['criticality']:.0%} of the runs and owns "
        f"{facts['owned_s']:.0f} s of it in an average run; sort the steps by `owned_s`."
    )


@_exercise(
    "13.1",
    "GitLab's shop/web: which step other than `rspec` shortens the runs most when it is made faster?",
    'the name of a step, e.g. "lint"',
    ("history",),
    [
        "A faster step saves time only in the runs where it is on the critical path: "
        "`gitlab.pipeline.criticality()` says in what share of the runs each step is (`criticality`) "
        "and how many seconds of the path it owns (`owned_s`).",
        _on_path,
    ],
)
def _speed_up(answer: Any, history: Any) -> tuple[bool, str, dict]:
    h = _trace(history, "nbp.check('13.1', answer, gitlab)")
    crit = h.pipeline.criticality()
    steps = crit[crit["kind"] == "step"].sort_values("owned_s", ascending=False, kind="stable")
    if len(steps) < 2:
        raise ExerciseError("pass the history of one pipeline with at least two steps (gitlab)")
    names = list(dict.fromkeys(steps["name"]))
    if not isinstance(answer, str) or answer not in names:
        raise ExerciseError(
            f"give the name of a step of this history: one of {', '.join(names)}; not {answer!r}"
        )
    row = steps[steps["name"] == answer].iloc[0]
    facts = {"answer": answer, "criticality": float(row["criticality"]), "owned_s": float(row["owned_s"])}
    top, truth = names[0], names[1]
    if answer == top:
        return False, f"`{top}` is the step the question leaves out: which one comes next?", facts
    said = f"`{answer}` is on the critical path in {facts['criticality']:.0%} of the runs"
    if answer == truth:
        return True, f"{said} and owns {facts['owned_s']:.0f} s of it: after `{top}`, the most", {}
    if facts["criticality"] == 0:
        return False, f"{said}: making it faster shortens none of them", facts
    return False, f"{said}, but another step owns more of it", facts
