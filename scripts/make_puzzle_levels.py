"""Write the built-in pipeline puzzles (notebook_pipelines/course/levels/*.yaml) with nbp.puzzle.save.

Each level is built with the public API, then saved: ``save`` refuses a level whose start
pipeline already meets its goal or whose reference solution does not. Run it after editing a
level here; the YAML files are what ships (a teacher's own levels need no script):

    .venv/bin/python scripts/make_puzzle_levels.py
"""

from __future__ import annotations

from pathlib import Path

import notebook_pipelines as nbp

OUT = Path(__file__).resolve().parents[1] / "notebook_pipelines" / "course" / "levels"
READS = "<+execution.steps.{}.output.outputVariables.{}> != ''"
STAGE_READS = "<+pipeline.stages.{}.spec.execution.steps.compile.output.outputVariables.out> != ''"


def reads(step: str, var: str = "out") -> nbp.When:
    """A condition that reads ``step``'s output: the reader must run after it (R45)."""
    return nbp.When("Success", READS.format(step, var))


def level_1() -> dict:
    def start() -> nbp.Pipeline:
        p = nbp.Pipeline("ci")
        with p.stage("build") as b:
            b.step("checkout", duration="5s")
            b.step("unit", duration="30s")
            b.step("lint", duration="10s")
        return p

    solution = nbp.Pipeline("ci")
    with solution.stage("build") as b:
        b.step("checkout", duration="5s")
        with b.parallel():
            b.step("unit", duration="30s")
            b.step("lint", duration="10s")
    return dict(
        pipeline=start(),
        title="Side by side",
        story="`unit` and `lint` read nothing from each other, yet `lint` waits the whole 30 s of `unit`.",
        goal={"makespan_at_most": "35s"},
        hints=[
            "Two steps that share nothing can start together: put them in one parallel block.",
            "In Python: `with build.parallel():` around `unit` and `lint`; in YAML a `- parallel:` list.",
        ],
        solution=solution,
    )


def level_2() -> dict:
    def build(layout: str) -> nbp.Pipeline:
        p = nbp.Pipeline("docs")
        with p.stage("build") as b:
            if layout == "start":
                b.step("compile", duration="20s")
                b.step("test", duration="30s", when=reads("compile", "version"))
                b.step("docs", duration="25s")
            else:
                b.step("compile", duration="20s")
                with b.parallel():
                    b.step("test", duration="30s", when=reads("compile", "version"))
                    b.step("docs", duration="25s")
        return p

    return dict(
        pipeline=build("start"),
        title="Keep the order that matters",
        story=(
            "`test` reads the version that `compile` publishes, so it must start after `compile` ends. "
            "`docs` reads nothing. Put all three side by side and the pipeline no longer validates."
        ),
        goal={"makespan_at_most": "50s"},
        hints=[
            "A step can only read what finished before it starts: `test` stays after `compile`.",
            "Which step could run beside `test`?",
        ],
        solution=build("solution"),
    )


def level_3() -> dict:
    p = nbp.Pipeline("checks")
    with p.stage("ci") as s:
        s.step("lint", duration="10s")
        s.step("unit", duration="30s")
        s.step("notify_failure", duration="2s", when="Failure")
        s.step("report", duration="3s", when="All")
    return dict(
        pipeline=p,
        title="Who runs after a failure?",
        story=(
            "`lint` fails, and nothing catches it. A step runs by default only while its stage is still "
            "successful; `when: Failure` steps run only after a failure, `when: All` steps always."
        ),
        goal={"predict": "ran", "failures": {"lint": [1]}},
        hints=[
            "`unit` has the default condition: the stage has already failed when its turn comes.",
            "Count `lint` too: a step that ran and failed still ran.",
        ],
        solution=["lint", "notify_failure", "report"],
    )


def level_4() -> dict:
    p = nbp.Pipeline("tests")
    with p.stage("ci") as s:
        with s.parallel():
            s.step("unit", duration="10s")
            s.step("e2e", duration="30s")
        s.step("package", duration="5s")
    return dict(
        pipeline=p,
        title="A sibling fails",
        story="`unit` fails after 10 s while `e2e`, beside it in a parallel block, still has 20 s to go.",
        goal={"predict": "statuses", "failures": {"unit": [1]}},
        hints=[
            "A failure in a parallel block does not stop the siblings already running.",
            "What comes after the block sees a failed stage.",
        ],
        solution={"unit": "Failed", "e2e": "Success", "package": "Skipped"},
    )


def level_5() -> dict:
    p = nbp.Pipeline("release")
    with p.stage("build") as b:
        b.step("checkout", duration="5s")
        with b.step_group("tests") as t:
            with t.parallel():
                t.step("unit", duration="30s")
                t.step("lint", duration="10s")
            with t.parallel():
                t.step("integration", duration="60s")
                t.step("e2e", duration="45s")
    return dict(
        pipeline=p,
        title="Blocks in a step group",
        story=(
            "A step group is a serial list: its second parallel block starts when every step of the first "
            "has ended. How long does the whole run take?"
        ),
        goal={"predict": "makespan"},
        hints=[
            "A parallel block takes as long as its longest step.",
            "checkout, then the first block, then the second: add them up.",
        ],
        solution="1m 35s",
    )


def level_6() -> dict:
    def build(retry: bool) -> nbp.Pipeline:
        p = nbp.Pipeline("deploy")
        with p.stage("deploy") as d:
            d.step("fetch", duration="10s", failure_strategies=nbp.Retry(2) if retry else None)
            d.step("install", duration="20s")
        return p

    return dict(
        pipeline=build(False),
        title="Flaky, not broken",
        story="`fetch` fails its first two attempts, then works. Make the stage succeed within a minute.",
        goal={"makespan_at_most": "60s", "failures": {"fetch": [1, 2]}},
        hints=[
            "A failure strategy decides what happens after a failure: try `nbp.Retry`.",
            "Retry(2) means up to three attempts; intervals between them cost time.",
        ],
        solution=build(True),
    )


def level_7() -> dict:
    def build(solved: bool) -> nbp.Pipeline:
        p = nbp.Pipeline("database")
        with p.stage("deploy") as d:
            d.step("migrate_db", duration="10s")
            d.step(
                "deploy_app",
                duration="20s",
                failure_strategies=nbp.OnFailure(["AllErrors"], nbp.StageRollback()) if solved else None,
            )
            d.step("smoke", duration="5s")
            if solved:
                with d.rollback():
                    d.step("restore_db", duration="15s")
            else:
                d.step("restore_db", duration="15s")
        return p

    return dict(
        pipeline=build(False),
        title="Put the database back",
        story=(
            "`deploy_app` fails after `migrate_db` changed the schema. `restore_db` should put it back, "
            "but where it stands it is skipped like every step after the failure."
        ),
        goal={"statuses": {"restore_db": "Success"}, "failures": {"deploy_app": [1]}},
        hints=[
            "A stage's rollback list runs when a failure strategy says StageRollback.",
            "`with deploy.rollback():` holds the rollback steps; give `deploy_app` "
            "`failure_strategies=nbp.OnFailure(['AllErrors'], nbp.StageRollback())`.",
        ],
        solution=build(True),
    )


def level_8() -> dict:
    def build(lanes: bool) -> nbp.Pipeline:
        p = nbp.Pipeline("apps")
        with p.stage("build") as b:
            if not lanes:
                b.step("api_build", duration="20s")
                b.step("api_test", duration="30s", when=reads("api_build"))
                b.step("web_build", duration="25s")
                b.step("web_test", duration="20s", when=reads("web_build"))
                return p
            with b.parallel():
                with b.step_group("api") as api:
                    api.step("api_build", duration="20s")
                    api.step("api_test", duration="30s", when=reads("api.steps.api_build"))
                with b.step_group("web") as web:
                    web.step("web_build", duration="25s")
                    web.step("web_test", duration="20s", when=reads("web.steps.web_build"))
        return p

    return dict(
        pipeline=build(False),
        title="Two lanes",
        story=(
            "Each test reads its own build. Two parallel blocks (builds, then tests) take 55 s: "
            "`web_test` waits for `api_build` for no reason. Do better."
        ),
        goal={"makespan_at_most": "50s"},
        hints=[
            "A parallel block waits for its slowest member before the next item starts.",
            "Step groups are serial lists: two step groups side by side are two independent lanes.",
            "A reference to a step that moved into a group names the group: "
            "`<+execution.steps.api.steps.api_build.output…>`.",
        ],
        solution=build(True),
    )


def level_9() -> dict:
    def build(parallel: bool) -> nbp.Pipeline:
        p = nbp.Pipeline("regions")

        def builds() -> None:
            with p.stage("build_eu") as eu:
                eu.step("compile", duration="40s")
            with p.stage("build_us") as us:
                us.step("compile", duration="30s")

        if parallel:
            with p.parallel():
                builds()
        else:
            builds()
        with p.stage("deploy") as d:
            d.step(
                "rollout",
                duration="20s",
                when=nbp.When(
                    "Success", f"{STAGE_READS.format('build_eu')} && {STAGE_READS.format('build_us')}"
                ),
            )
        return p

    return dict(
        pipeline=build(False),
        title="Stages side by side",
        story="The two regional builds share nothing; `deploy` reads both. Stages can run in parallel too.",
        goal={"makespan_at_most": "60s"},
        hints=[
            "`with p.parallel():` around stages puts them side by side.",
            "`deploy` must stay after both builds.",
        ],
        solution=build(True),
    )


LEVELS = [
    ("side-by-side", level_1),
    ("keep-the-order", level_2),
    ("after-a-failure", level_3),
    ("a-sibling-fails", level_4),
    ("blocks-in-a-group", level_5),
    ("flaky-not-broken", level_6),
    ("put-the-database-back", level_7),
    ("two-lanes", level_8),
    ("stages-side-by-side", level_9),
]


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for number, (name, make) in enumerate(LEVELS, start=1):
        spec = make()
        path = nbp.puzzle.save(OUT / f"{number:02d}-{name}.yaml", spec.pop("pipeline"), **spec)
        print(path.relative_to(OUT.parents[2]))


if __name__ == "__main__":
    main()
