"""The course's exercises (issue 30 part 4): ``nbp.check`` and the notebooks' exercise cells.

- each checker: a right answer (worked out by hand in a comment) is right; a wrong one is not,
  with a hint, more precise on the next try; an unfilled one (``...``) says what to fill in;
- the notebooks from 02 on each hold an exercise, stored unsolved;
- ``notebooks/solutions.yaml`` holds a solution for each, and each notebook run with its
  solutions filled in (nbclient, a real kernel) makes every check say right.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

import notebook_pipelines as nbp
from notebook_pipelines.course.exercises import _EXERCISES

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
SOLUTIONS = NOTEBOOKS_DIR / "solutions.yaml"
CHECK = re.compile(r"""nbp\.check\(\s*["'](\d\d\.\d+)["']""")
UNFILLED = re.compile(r"^answer = \.\.\..*$", re.MULTILINE)
COURSE = [p for p in sorted(NOTEBOOKS_DIR.glob("*.ipynb")) if "02" <= p.name[:2] <= "13"]
PUZZLES = NOTEBOOKS_DIR / "14-puzzles.ipynb"


@pytest.fixture(autouse=True)
def fresh_tries():
    """Each test starts with no wrong try counted (hints start from the first)."""
    for exercise in _EXERCISES.values():
        exercise.tries = 0


def wrong(verdict) -> None:
    assert not verdict.right and not verdict.pending and verdict.hint, verdict


def two_hints(exercise: str, answer, *given) -> tuple[str, str]:
    first, second = nbp.check(exercise, answer, *given), nbp.check(exercise, answer, *given)
    wrong(first)
    wrong(second)
    assert first.hint != second.hint, "the second try's hint says more"
    return first.hint, second.hint


def unfilled(exercise: str, *given) -> None:
    verdict = nbp.check(exercise, ..., *given)
    assert not verdict.right and verdict.pending and verdict.hint is None
    assert str(verdict).startswith("your turn: fill in `answer`: ")
    assert _EXERCISES[exercise].tries == 0, "an unfilled answer is not a try"


# -- the pipelines of the notebooks' exercises -------------------------------------------------------
def blocks() -> nbp.Pipeline:  # 03
    ex = nbp.Pipeline("exercise")
    with ex.stage("s") as s, s.step_group("g") as g:
        with g.parallel():
            g.step("a", duration="20s")
            g.step("b", duration="50s")
        g.step("c", duration="10s")
    return ex


def retried() -> nbp.Pipeline:  # 06
    p = nbp.Pipeline("one")
    with p.stage("s") as s:
        s.step("deploy", duration="30s", failure_strategies=nbp.Retry(3, intervals=["10s", "20s"]))
        s.step("verify", duration="10s")
    return p


def order() -> nbp.Pipeline:  # 07
    o = nbp.Pipeline("order")
    with o.stage("s", failure_strategies=nbp.StageRollback()) as s:
        for name in ("db", "app", "cdn"):
            with s.step_group(name) as g:
                g.step(f"{name}_do", duration="10s")
                with g.rollback():
                    g.step(f"{name}_undo", duration="5s")
        with s.rollback():
            s.step("stage_undo", duration="5s")
    return o


def conditions() -> nbp.Pipeline:  # 04
    x = nbp.Pipeline("exercise")
    with x.stage("s") as s:
        s.step("deploy", duration="5s", failure_strategies=nbp.Ignore())
        s.step("a", duration="5s")
        s.step("b", duration="5s", when="Failure")
        s.step("c", duration="5s", when="All")
    return x


DURATIONS = {
    "build_0_0": "10m",
    "build_0_1": "30m",
    "build_1_0": "5m",
    "build_1_1": "20m",
    "build_2_0": "10m",
}


def matrix(at_once: int) -> nbp.Pipeline:  # 05
    p = nbp.Pipeline("builds")
    with p.stage("ci") as ci:
        ci.step(
            "build",
            strategy=nbp.Matrix(
                os=["linux", "mac", "win"],
                arch=["x64", "arm"],
                exclude=[{"os": "win", "arch": "arm"}],
                max_concurrency=at_once,
            ),
        )
        ci.step("publish", duration="1m")
    return p


def release() -> nbp.Pipeline:  # 08
    p = nbp.Pipeline("release")
    with p.stage("build") as s:
        s.step("compile", duration="10s")
        with s.step_group("tests") as g:
            with g.parallel():
                g.step("unit", duration="30s")
                g.step("lint", duration="5s")
            with g.parallel():
                g.step("e2e", duration="20s", failure_strategies=nbp.Retry(1, intervals="5s"))
                g.step("smoke", duration="8s")
    with p.parallel():
        p.stage("us").step("ship_us", duration="15s")
        p.stage("eu").step("ship_eu", duration="12s")
    return p


def out(step: str, name: str) -> str:
    return f"<+execution.steps.{step}.output.outputVariables.{name}>"


def small(lane: bool = False) -> nbp.Pipeline:  # 12: as written, or laid out in a lane
    p = nbp.Pipeline("small")
    with p.stage("build") as s:
        if not lane:
            s.step("checkout", duration="20s", outputs=["sha"])
            s.step("compile", duration="1m", inputs={"sha": out("checkout", "sha")}, outputs=["jar"])
            s.step("lint", duration="40s", inputs={"sha": out("checkout", "sha")})
            s.step("base_image", duration="1m 30s", outputs=["base"])
            return p
        with s.parallel():
            with s.step_group("lane") as g:
                g.step("checkout", duration="20s", outputs=["sha"])
                with g.parallel():
                    sha = out("lane.steps.checkout", "sha")
                    g.step("compile", duration="1m", inputs={"sha": sha}, outputs=["jar"])
                    g.step("lint", duration="40s", inputs={"sha": sha})
            s.step("base_image", duration="1m 30s", outputs=["base"])
    return p


# -- each checker ---------------------------------------------------------------------------------------
def test_R5_03_1_c_ends_when_the_slower_of_block_0_has_ended():
    unfilled("03.1", blocks())
    assert nbp.check("03.1", 60, blocks()).right  # block 0 ends with b at 50 s; c: 50 + 10
    assert nbp.check("03.1", "1m", blocks()).right  # a Harness duration works too
    first, second = two_hints("03.1", 30, blocks())  # 20 + 10: after the faster one
    assert "R5" in first and "50 s" in second  # the rule, then the numbers of the case


def test_E5_D3_06_1_the_last_of_four_attempts():
    unfilled("06.1", retried())
    # 4 attempts of 30 s, waits of 10, 20 and 20 s (the last interval reused): 120 + 50
    assert nbp.check("06.1", 170, retried()).right
    first, second = two_hints("06.1", 150, retried())  # 4 × 30 + 10 + 20: forgot the reuse
    assert "E5" in first and "D3" in second


def test_R36_07_1_only_groups_that_ran_are_rolled_back():
    unfilled("07.1", order())
    assert nbp.check("07.1", ["db_undo", "stage_undo"], order()).right  # app, cdn never ran
    verdict = nbp.check("07.1", ["cdn_undo", "app_undo", "db_undo", "stage_undo"], order())
    wrong(verdict)
    assert "app_undo, cdn_undo" in verdict.message and "R36" in verdict.hint
    wrong(nbp.check("07.1", ["stage_undo", "db_undo"], order()))
    with pytest.raises(nbp.ExerciseError, match="list of step ids"):
        nbp.check("07.1", "db_undo", order())


def test_R30_04_1_ignore_failed_counts_as_success_so_far():
    unfilled("04.1", conditions())
    assert nbp.check("04.1", {"a": "Success", "b": "Skipped", "c": "Success"}, conditions()).right
    verdict = nbp.check("04.1", {"a": "Skipped", "b": "Success", "c": "Success"}, conditions())
    wrong(verdict)
    assert "`a`, `b`" in verdict.message and "R30" in verdict.hint


def test_R54_05_1_three_at_a_time_is_a_sliding_window():
    unfilled("05.1", matrix(3), DURATIONS)
    # lanes: 10m, 30m, 5m start at 0; 20m starts at 5 (ends 25), 10m at 10 (ends 20): 30 m
    assert nbp.check("05.1", "30m", matrix(3), DURATIONS).right
    assert nbp.check("05.1", 1800, matrix(3), DURATIONS).right
    # with two at a time (the notebook's) the same builds end at 40 m: the truth is simulated
    assert nbp.check("05.1", "40m", matrix(2), DURATIONS).right
    first, second = two_hints("05.1", "40m", matrix(3), DURATIONS)
    assert "R54" in first and "build_0_1" in second


def test_08_1_both_attempts_of_a_retried_step_shorten_the_run():
    p = release()
    trace = p.simulate(failures={"e2e": 1}, run_id="ex-08")
    unfilled("08.1", trace, p)
    # the path: compile 10, unit 30, e2e 20 + 5 + 20, ship_us 15 = 100 s; e2e at 10 s: 80 s
    assert nbp.check("08.1", 20, trace, p).right
    first, second = two_hints("08.1", 10, trace, p)  # one attempt only
    assert "critical_path" in first and "twice" in second


def test_09_1_the_stage_that_ends_last_is_read_from_the_trace():
    p = nbp.load_yaml(NOTEBOOKS_DIR / "data" / "payments-release.yaml")
    durations = {"*deploy_eu*rollout": "12m", "*deploy_us*rollout": "15m", "smoke": "2m"}
    good = p.simulate(durations=durations, seed=1)
    unfilled("09.1", good)
    # both start together; eu: 12 + 2 = 14 m, us: 15 m
    assert nbp.check("09.1", "deploy_us", good).right
    wrong(nbp.check("09.1", "deploy_eu", good))
    slower_eu = p.simulate(durations={**durations, "smoke": "5m"}, seed=1)  # eu: 12 + 5 = 17 m
    assert nbp.check("09.1", "deploy_eu", slower_eu).right
    with pytest.raises(nbp.ExerciseError, match="give one of 'deploy_eu', 'deploy_us'"):
        nbp.check("09.1", "build", good)


def test_10_1_a_step_off_the_critical_path_saves_nothing():
    trace = nbp.load_harness_execution(
        NOTEBOOKS_DIR / "data" / "harness-execution-release.json",
        attempts=NOTEBOOKS_DIR / "data" / "harness-execution-release.attempts.json",
    )
    p = nbp.pipeline_from_execution(trace)
    unfilled("10.1", trace, p)
    # deploy_eu (29 s) runs beside deploy_us (59 s), which sets the end: nothing saved
    assert nbp.check("10.1", 0, trace, p).right
    first, second = two_hints("10.1", 22, trace, p)  # the rollout's own 22 s
    assert "critical_path" in first and "deploy_eu runs beside deploy_us" in second


def test_R62_11_1_a_pipeline_the_cluster_runs():
    from distributed import Client, LocalCluster

    lock = threading.Lock()

    def closes_over_a_lock():
        with lock:
            return {"ok": True}

    def makes_its_lock():
        with threading.Lock():
            return {"ok": True}

    def checks(selectors, body) -> nbp.Pipeline:
        q = nbp.Pipeline("checks")
        with q.stage("s") as s:
            s.step("train", run=lambda: None, delegate_selectors=selectors)
            s.step("guarded", run=body)
        return q

    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0")
    with cluster, Client(cluster) as client:
        unfilled("11.1", client)
        assert nbp.check("11.1", checks(None, makes_its_lock), client).right
        verdict = nbp.check("11.1", checks(["gpu"], closes_over_a_lock), client)
        wrong(verdict)
        assert "gpu" in verdict.message
        verdict = nbp.check("11.1", checks(None, closes_over_a_lock), client)
        wrong(verdict)
        assert "pickle" in verdict.message and "inside the body" in verdict.hint
        other = nbp.Pipeline("other")
        other.stage("s").step("train", run=lambda: None)
        assert "keep the steps" in nbp.check("11.1", other, client).message


def test_R42_12_1_a_layout_by_hand_reaches_the_lower_bound():
    unfilled("12.1", small())
    # lane: checkout 20 s, then compile 60 s ∥ lint 40 s = 80 s, beside base_image 90 s: 90 s,
    # the longest chain (base_image alone)
    verdict = nbp.check("12.1", small(lane=True), small())
    assert verdict.right and "1m 30s" in verdict.message
    wrong(nbp.check("12.1", small(), small()))  # as written: 20 + 60 + 40 + 90 = 210 s
    side_by_side = nbp.Pipeline("small")
    with side_by_side.stage("build") as s:
        s.step("checkout", duration="20s", outputs=["sha"])
        with s.parallel():  # 20 + 90 = 110 s
            s.step("compile", duration="1m", inputs={"sha": out("checkout", "sha")}, outputs=["jar"])
            s.step("lint", duration="40s", inputs={"sha": out("checkout", "sha")})
            s.step("base_image", duration="1m 30s", outputs=["base"])
    verdict = nbp.check("12.1", side_by_side, small())
    wrong(verdict)
    assert "1m 50s" in verdict.message


def test_E5_02_1_retries_run_out_and_the_run_fails():
    def built(retries: int) -> nbp.Pipeline:
        p = nbp.Pipeline("release")
        with p.stage("build") as s:
            s.step("checkout")
            s.step("unit", failure_strategies=nbp.Retry(retries))
        p.stage("deploy").step("rollout")
        return p

    unfilled("02.1", built(1))
    # --retry 1: 2 attempts, both fail (--fail unit:2); MarkAsFailure, the stage and run fail
    assert nbp.check("02.1", "Failed", built(1)).right
    wrong(nbp.check("02.1", "Success", built(1)))
    assert nbp.check("02.1", "Success", built(2)).right  # a third attempt succeeds


def gitlab_like() -> pd.DataFrame:  # 13: a run of GitLab's shop/web, its jobs' median durations
    p = nbp.Pipeline("web")
    with p.stage("build") as s:
        s.step("compile", duration="64s")
    with p.stage("test") as s, s.parallel():
        s.step("rspec", duration="170s")
        s.step("unit", duration="128s")
        s.step("lint", duration="20s")
    p.stage("deploy").step("release", duration="35s")
    return p.simulate(run_id="web-1")


def test_13_1_speed_up_the_step_on_the_critical_path_not_the_slowest():
    history = gitlab_like()
    unfilled("13.1", history)
    # the path: compile 64 + rspec 170 + release 35 = 269 s; unit (128 s) and lint end before
    # rspec: on no path. Other than rspec, compile owns the most of the path (64 s > 35 s)
    assert nbp.check("13.1", "compile", history).right
    first, second = two_hints("13.1", "unit", history)  # the second slowest, beside rspec
    assert "criticality" in first and "`unit` is on the critical path in 0% of the runs" in second
    verdict = nbp.check("13.1", "release", history)
    wrong(verdict)
    assert "another step owns more" in verdict.message
    assert "leaves out" in nbp.check("13.1", "rspec", history).message
    with pytest.raises(nbp.ExerciseError, match="give the name of a step of this history: one of rspec"):
        nbp.check("13.1", "docs", history)


def test_check_says_how_to_call_it():
    with pytest.raises(nbp.ExerciseError, match=r"no exercise '99.1'; the exercises: 02.1, 03.1"):
        nbp.check("99.1", 1)
    with pytest.raises(
        nbp.ExerciseError, match=r"needs 2 more argument\(s\): nbp.check\('08.1', answer, trace"
    ):
        nbp.check("08.1", 20)
    with pytest.raises(nbp.ExerciseError, match="pass the exercise's pipeline"):
        nbp.check("03.1", 60, "ex")
    with pytest.raises(nbp.ExerciseError, match="give seconds"):
        nbp.check("03.1", [60], blocks())
    table = nbp.check.exercises()
    assert (
        list(table.id) == sorted(_EXERCISES, key=lambda i: float(i)) and table.question.str.len().min() > 20
    )


# -- the notebooks ----------------------------------------------------------------------------------------
def exercise_cells(path: Path) -> list[tuple[str, nbformat.NotebookNode]]:
    cells = nbformat.read(path, as_version=4).cells
    return [(m[1], c) for c in cells if c.cell_type == "code" and (m := CHECK.search(c.source))]


def test_every_notebook_from_02_on_has_an_exercise_stored_unsolved():
    assert [p.name[:2] for p in COURSE] == [f"{n:02}" for n in range(2, 14)]
    for path in COURSE:
        cells = exercise_cells(path)
        assert cells, f"{path.name}: no exercise (a cell with nbp.check)"
        for exercise, cell in cells:
            assert len(UNFILLED.findall(cell.source)) == 1, f"{path.name} {exercise}: one `answer = ...` line"
            shown = [o for o in cell.outputs if "data" in o]
            assert shown and shown[-1]["data"]["text/plain"].startswith("your turn: fill in `answer`"), (
                f"{path.name} {exercise}: stored solved or not run"
            )


def test_every_exercise_has_a_solution_and_a_notebook():
    solutions = yaml.safe_load(SOLUTIONS.read_text(encoding="utf-8"))
    in_notebooks = sorted(e for path in COURSE for e, _ in exercise_cells(path))
    assert sorted(solutions) == in_notebooks == sorted(_EXERCISES)


@pytest.mark.kernel  # runs every course notebook with its solutions in a real kernel (~35 s in all)
@pytest.mark.parametrize("path", COURSE, ids=[p.name for p in COURSE])
def test_the_notebook_with_its_solutions_filled_in_makes_every_check_say_right(path: Path):
    from nbclient import NotebookClient

    solutions = yaml.safe_load(SOLUTIONS.read_text(encoding="utf-8"))
    nb = nbformat.read(path, as_version=4)
    checked = []
    for cell in nb.cells:
        found = CHECK.search(cell.source) if cell.cell_type == "code" else None
        if found:
            solution = solutions[found[1]].strip()
            cell.source = UNFILLED.sub(lambda _, filled=solution: filled, cell.source)
            checked.append((found[1], cell))
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS_DIR)}}
    ).execute()
    for exercise, cell in checked:
        said = [o["data"]["text/plain"] for o in cell.outputs if "data" in o]
        assert said and said[-1].startswith("right: "), f"{path.name} {exercise}: {said or cell.outputs}"


# -- 14: the puzzles are the exercises -------------------------------------------------------------------
PLAYED = re.compile(r"^pz = nbp\.puzzle\((\d+)\)$", re.MULTILINE)
PZ_CHECK = re.compile(r"^pz\.check\((.*)\)", re.MULTILINE)


def puzzle_cells() -> list[tuple[int, nbformat.NotebookNode]]:
    """The cells that check a level's answer, with the level they check."""
    level, found = None, []
    for cell in nbformat.read(PUZZLES, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        if played := PLAYED.search(cell.source):
            level = int(played[1])
        if PZ_CHECK.search(cell.source):
            found.append((level, cell))
    return found


def test_14_plays_every_level_each_stored_unsolved_with_a_hint():
    cells = puzzle_cells()
    assert [level for level, _ in cells] == list(nbp.puzzle.levels().number)
    assert len(cells) >= 8
    for level, cell in cells:
        said = [o["data"]["text/plain"] for o in cell.outputs if "data" in o]
        assert said and said[-1].startswith("not yet: ") and "\nhint: " in said[-1], f"level {level}: {said}"


@pytest.mark.kernel  # notebook 14 with each level's reference solution as the answer (~10 s)
def test_14_with_the_reference_solutions_every_level_says_right():
    from nbclient import NotebookClient

    nb = nbformat.read(PUZZLES, as_version=4)
    checked = []
    for cell in nb.cells:
        if cell.cell_type == "code" and PZ_CHECK.search(cell.source):
            cell.source = PZ_CHECK.sub("pz.check(pz.solution())", cell.source)
            checked.append(cell)
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS_DIR)}}
    ).execute()
    assert len(checked) == len(nbp.puzzle.levels())
    for cell in checked:
        said = [o["data"]["text/plain"] for o in cell.outputs if "data" in o]
        assert said and said[-1].startswith("right: "), said or cell.outputs
