"""Pipeline puzzles (``nbp.puzzle``): every built-in level plays, a teacher's level round-trips.

Each level is checked by simulating the learner's answer, so these tests compare verdicts with
makespans and statuses worked out by hand from the level's durations.
"""

from __future__ import annotations

import contextlib
import warnings

import pytest

import notebook_pipelines as nbp
from notebook_pipelines.course.puzzles import PuzzleError, count_moves, load_level
from notebook_pipelines.definition.plan import compile_plan

LEVELS = nbp.puzzle.levels()


def test_there_are_at_least_eight_levels_numbered_from_one():
    assert len(LEVELS) >= 8
    assert list(LEVELS.number) == list(range(1, len(LEVELS) + 1))
    assert LEVELS.name.is_unique


@pytest.mark.parametrize("number", list(LEVELS.number))
def test_each_levels_reference_solution_is_right(number):
    pz = nbp.puzzle(number)
    verdict = pz.check(pz.solution())
    assert verdict.right, verdict
    assert verdict.hint is None
    if not pz.level.predicts:
        assert verdict.moves == verdict.par  # the reference solution sets the par


@pytest.mark.parametrize("number", list(LEVELS.number))
def test_each_level_is_not_solved_as_it_starts_and_a_wrong_answer_gets_the_hints_in_turn(number):
    pz = nbp.puzzle(number)
    wrong = {"ran": ["nothing_runs"], "statuses": {}, "makespan": "1h"}.get(pz.level.predicts)
    if pz.level.predicts == "ran":
        wrong = [next(iter(pz.level.durations))]  # one step that exists, surely not the whole answer
    first = pz.check(wrong)
    second = pz.check(wrong)
    assert not first.right and not second.right
    assert first.hint == pz.level.hints[0]
    assert second.hint == pz.level.hints[min(1, len(pz.level.hints) - 1)]


def test_level_1_unit_beside_lint_finishes_when_unit_does():
    pz = nbp.puzzle("side-by-side")
    # as written: checkout 5 + unit 30 + lint 10 = 45 s > 35 s
    verdict = pz.check()
    assert not verdict.right and "45s" in verdict.message
    answer = nbp.Pipeline("ci")
    with answer.stage("build") as b:
        b.step("checkout")
        with b.parallel():
            b.step("lint")
            b.step("unit")
    verdict = pz.check(answer)
    # checkout 5 + max(unit 30, lint 10) = 35 s; one move: lint no longer waits for unit
    assert verdict.right and verdict.makespan_s == 35.0 and verdict.moves == 1 and verdict.par == 1


def test_R45_putting_a_reader_beside_what_it_reads_is_refused_with_a_hint():
    pz = nbp.puzzle("keep-the-order")
    answer = nbp.Pipeline("docs")
    with answer.stage("build") as b, b.parallel():
        b.step("compile")
        b.step(
            "test",
            when=nbp.When("Success", "<+execution.steps.compile.output.outputVariables.version> != ''"),
        )
        b.step("docs")
    verdict = pz.check(answer)
    assert not verdict.right and "not valid" in verdict.message
    assert "finished before it starts" in verdict.hint


def test_dropping_a_reference_to_go_faster_is_not_a_solution():
    pz = nbp.puzzle("keep-the-order")
    answer = nbp.Pipeline("docs")
    with answer.stage("build") as b, b.parallel():
        b.step("compile")
        b.step("test")  # no longer reads compile's version: 30 s would meet the goal
        b.step("docs")
    verdict = pz.check(answer)
    assert not verdict.right and "`test` no longer reads `compile`" in verdict.message


def test_removing_or_adding_a_step_is_named():
    pz = nbp.puzzle(1)
    answer = nbp.Pipeline("ci")
    with answer.stage("build") as b:
        b.step("unit")
        b.step("extra")
    verdict = pz.check(answer)
    assert not verdict.right
    assert "missing checkout, lint" in verdict.message and "new extra" in verdict.message


def test_a_yaml_answer_is_checked_like_a_pipeline():
    pz = nbp.puzzle(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = pz.solution().to_yaml()
    assert pz.check(text).right


def test_prediction_of_the_makespan_is_right_within_half_a_second():
    pz = nbp.puzzle("blocks-in-a-group")
    # checkout 5 + max(unit 30, lint 10) + max(integration 60, e2e 45) = 95 s
    assert pz.check(95).right
    assert pz.check("1m 35s").right
    assert pz.check(95.4).right
    assert not pz.check(96).right
    assert not pz.check(5 + 30 + 10 + 60 + 45).right  # 150 s: every step one after another


def test_R14_prediction_of_statuses_after_a_sibling_fails():
    pz = nbp.puzzle("a-sibling-fails")
    assert pz.check({"unit": "Failed", "e2e": "Success", "package": "Skipped"}).right
    verdict = pz.check({"unit": "Failed", "e2e": "Aborted", "package": "Skipped"})
    assert not verdict.right and "1 of 3" in verdict.message


def test_R31_prediction_of_which_steps_run_after_a_failure():
    pz = nbp.puzzle("after-a-failure")
    assert pz.check({"lint", "notify_failure", "report"}).right
    verdict = pz.check(["lint", "unit", "report"])  # unit is wrong, notify_failure is missing
    assert not verdict.right and "2 steps are not right" in verdict.message


def test_a_prediction_of_the_wrong_kind_or_naming_no_step_is_a_clear_error():
    pz = nbp.puzzle("after-a-failure")
    with pytest.raises(PuzzleError, match="list of step ids"):
        pz.check("lint")
    with pytest.raises(PuzzleError, match="no step named 'lnit'"):
        pz.check(["lnit"])
    with pytest.raises(PuzzleError, match="mapping"):
        nbp.puzzle("a-sibling-fails").check(["unit"])


def test_R35_the_rollback_level_needs_the_step_in_the_rollback_list_and_a_rollback_action():
    pz = nbp.puzzle("put-the-database-back")
    # as written restore_db comes after the failing deploy_app and is skipped
    assert "`restore_db` ends Skipped" in pz.check().message
    answer = nbp.Pipeline("database")
    with answer.stage("deploy") as d:
        d.step("migrate_db")
        d.step("deploy_app")
        d.step("smoke")
        with d.rollback():
            d.step("restore_db")
    # in the rollback list but nothing triggers it: the default strategy marks the stage failed
    assert not pz.check(answer).right
    answer.stages[0].items[1].failure_strategies = [nbp.OnFailure(["AllErrors"], nbp.StageRollback())]
    verdict = pz.check(answer)
    # migrate 10 + deploy_app 20 (fails) + restore_db 15 = 45 s
    assert verdict.right and verdict.makespan_s == 45.0


def test_moves_count_steps_that_wait_for_a_different_set():
    def chain(*layout):
        p = nbp.Pipeline("p")
        with p.stage("s") as s:
            for item in layout:
                if isinstance(item, tuple):
                    with s.parallel():
                        for step in item:
                            s.step(step)
                else:
                    s.step(item)
        return compile_plan(p)

    start = chain("a", "b", "c", "d")
    # [a ∥ b], c, d: only b waits for less (nothing instead of a); c and d still wait for a and b
    assert count_moves(start, chain(("a", "b"), "c", "d")) == 1
    # a, [b ∥ c ∥ d]: c no longer waits for b, d no longer for b and c
    assert count_moves(start, chain("a", ("b", "c", "d"))) == 2
    assert count_moves(start, chain("a", "b", "c", "d")) == 0


def _scan_level(side_by_side: bool) -> nbp.Pipeline:
    """fetch 10 s, scan 20 s, then upload 5 s, which reads fetch's output."""
    p = nbp.Pipeline("mine")
    with p.stage("s") as s:
        with s.parallel() if side_by_side else contextlib.nullcontext():
            s.step("fetch", duration="10s")
            s.step("scan", duration="20s")
        reads_fetch = nbp.When("Success", "<+execution.steps.fetch.output.outputVariables.f> != ''")
        s.step("upload", duration="5s", when=reads_fetch)
    return p


def test_a_teachers_level_saved_and_loaded_back_plays(tmp_path):
    start, solution = _scan_level(False), _scan_level(True)
    path = nbp.puzzle.save(
        tmp_path / "scan.yaml",
        start,
        title="Scan beside fetch",
        story="`scan` needs nothing from `fetch`.",
        goal={"makespan_at_most": "25s"},
        hints=["Put fetch and scan side by side."],
        solution=solution,
    )
    pz = nbp.puzzle(path)
    assert pz.level.title == "Scan beside fetch" and pz.level.durations == {
        "fetch": 10.0,
        "scan": 20.0,
        "upload": 5.0,
    }
    # max(fetch 10, scan 20) + upload 5 = 25 s
    verdict = pz.check(pz.solution())
    assert verdict.right and verdict.makespan_s == 25.0
    wrong = pz.check()  # 10 + 20 + 5 = 35 s
    assert not wrong.right and wrong.hint == "Put fetch and scan side by side."
    assert nbp.puzzle(str(path)).check(solution).right


def test_save_refuses_a_level_with_nothing_to_solve_or_a_wrong_solution(tmp_path):
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", duration="10s")
    with pytest.raises(PuzzleError, match="already meets the goal"):
        nbp.puzzle.save(tmp_path / "x.yaml", p, title="t", goal={"makespan_at_most": "20s"})
    with pytest.raises(PuzzleError, match="does not solve"):
        nbp.puzzle.save(tmp_path / "x.yaml", p, title="t", goal={"makespan_at_most": "5s"}, solution=p)
    assert not (tmp_path / "x.yaml").exists()  # nothing half-written


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("title: t\n", "needs goal, pipeline"),
        ("title: t\ngoal: {fastest: 1}\npipeline: x\n", "unknown goal key"),
        ("title: t\ngoal: {predict: colour}\npipeline: x\n", "`predict` is one of"),
        ("title: t\ngoal: {}\npipeline: x\n", "`goal` is a mapping"),
        ("title: t\ngoal: {makespan_at_most: soon}\npipeline: x\n", "makespan_at_most"),
        ("title: t\ngoal: {status: Success}\npipeline: x\nsecret: 1\n", "unknown key"),
        ("- a list\n", "a level is a mapping"),
    ],
)
def test_a_malformed_level_file_says_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PuzzleError, match=message):
        load_level(path)


def test_a_level_that_is_not_a_small_regular_file_is_refused_before_reading(tmp_path):
    with pytest.raises(PuzzleError, match="not a regular file"):
        load_level(tmp_path)  # a folder
    big = tmp_path / "big.yaml"
    big.write_text("#" * (300 * 1024))
    with pytest.raises(PuzzleError, match="over"):
        load_level(big)
    with pytest.raises(PuzzleError, match="no level 99"):
        nbp.puzzle(99)
    with pytest.raises(PuzzleError, match="no level named 'nope'"):
        nbp.puzzle("nope")


def test_a_puzzle_and_a_verdict_display_what_a_learner_reads():
    pz = nbp.puzzle(1)
    page = pz._repr_html_()
    assert "Level 1 · Side by side" in page and "<code>unit</code> 30s" in page and "at most 35s" in page
    assert repr(pz).startswith("<puzzle level 1: Side by side")
    verdict = pz.check()
    assert "✘ not yet" in verdict._repr_html_() and "hint:" in verdict._repr_html_()
    assert str(verdict).startswith("not yet: it takes 45s")
