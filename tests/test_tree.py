"""``Pipeline.walk()``: the one walk of a definition tree (``definition/tree.py``)."""

import sys

import notebook_pipelines as nbp
from notebook_pipelines.definition.model import Parallel, Pipeline, Stage, Step, StepGroup


def _release() -> Pipeline:
    p = Pipeline("release", rules="current")
    with p.parallel():
        with p.stage("build") as build:
            _ = build.step("compile")
            with build.step_group("tests") as tests:
                with tests.parallel():
                    _ = tests.step("unit")
                    _ = tests.step("lint")
                with tests.rollback():
                    _ = tests.step("clean")
            with build.rollback():
                _ = build.step("undo")
        with p.stage("docs") as docs:
            _ = docs.step("site")
    return p


def test_R12_R35_walk_visits_every_node_in_pre_order_with_its_place():
    rows = [
        (v.node.id, v.depth, v.phase, v.block, v.parallel is not None, v.parent.id) for v in _release().walk()
    ]
    assert rows == [
        ("build", 1, "execution", 0, True, "release"),
        ("compile", 2, "execution", 0, False, "build"),
        ("tests", 2, "execution", 1, False, "build"),
        ("unit", 3, "execution", 0, True, "tests"),
        ("lint", 3, "execution", 0, True, "tests"),
        ("clean", 3, "rollback", 0, False, "tests"),
        ("undo", 2, "rollback", 0, False, "build"),
        ("docs", 1, "execution", 0, True, "release"),
        ("site", 2, "execution", 0, False, "docs"),
    ]


def test_walk_fqns_are_the_plans():
    p = _release()
    assert [v.fqn for v in p.walk()] == [n.fqn for n in p.plan().nodes[1:]]


def test_walk_ancestors_run_from_the_root_to_the_parent():
    visits = {v.node.id: v for v in _release().walk()}
    assert [a.id for a in visits["clean"].ancestors] == ["release", "build", "tests"]
    assert visits["clean"].parent is visits["tests"].node


def test_walk_enter_false_leaves_a_containers_nodes_out():
    ids = [v.node.id for v in _release().walk(enter=lambda v: v.node.id != "tests")]
    assert ids == ["build", "compile", "tests", "undo", "docs", "site"]


def test_walk_of_a_stage_or_group_alone():
    p = _release()
    build = p.stages[0].items[0]
    assert [v.fqn for v in build.walk()][:2] == [
        "pipeline.stages.build.spec.execution.steps.compile",
        "pipeline.stages.build.spec.execution.steps.tests",
    ]
    tests = build.items[1]
    assert [v.fqn for v in tests.walk()] == [
        "tests.steps.unit",
        "tests.steps.lint",
        "tests.rollbackSteps.clean",
    ]


def test_walk_needs_no_recursion_however_deep():
    group = inner = StepGroup("g0")
    for level in range(1, 3 * sys.getrecursionlimit()):
        inner = inner.step_group(f"g{level}")
    _ = inner.step("leaf")
    p = Pipeline("deep", rules="current", stages=[Stage("s", items=[group])])
    visits = list(p.walk())
    assert (
        visits[-1].node.id == "leaf" and visits[-1].depth == 3 * sys.getrecursionlimit() + 2
    )  # pipeline > s > g0 … > leaf


def test_walk_skips_what_is_not_a_list_validation_reports_it():
    p = Pipeline("bad", stages=[Stage("s", items="oops", rollback_items=[Parallel(items=3), Step("ok")])])
    assert [v.fqn for v in p.walk()] == [
        "pipeline.stages.s",
        "pipeline.stages.s.spec.execution.rollbackSteps.ok",
    ]
    assert "walk" in dir(nbp.Pipeline)
