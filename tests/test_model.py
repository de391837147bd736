"""The definition objects and the builder (R1, R4, R5, R11, R12, R35, R3).

The builder (``with p.stage(...)``, ``s.step(...)``, ``with g.parallel():``…) and plain
dataclasses build the same tree; re-running a cell redefines a node in place and never
duplicates it.
"""

from __future__ import annotations

import pytest

import notebook_pipelines as nbp
from notebook_pipelines.definition.model import Parallel, Pipeline, Step, StepGroup, locate, place, take


def checkout() -> None:
    """A body shared by both ways of building (bodies compare by identity)."""


def unit(ctx) -> dict:
    return {"passed": 12}


def build_with_builder() -> Pipeline:
    p = nbp.Pipeline("release", variables={"env": "prod"})
    with p.stage("build") as build:
        build.step("checkout", run=checkout, timeout="1m")
        with build.step_group("tests", failure_strategies=nbp.Retry(1)) as tests:
            with tests.parallel():
                tests.step("unit", run=unit)
                tests.step("lint", duration="10s")
            tests.step("e2e", when="All")
            with tests.rollback():
                tests.step("undo_tests")
        with build.rollback():
            build.step("restore")
    with p.parallel():
        with p.stage("deploy_eu") as eu:
            eu.step("apply_eu")
        with p.stage("deploy_us", type="Deployment") as us:
            us.step("apply_us")
    return p


def build_with_objects() -> Pipeline:
    return nbp.Pipeline(
        "release",
        variables={"env": "prod"},
        stages=[
            nbp.Stage(
                "build",
                items=[
                    nbp.Step("checkout", run=checkout, timeout="1m"),
                    nbp.StepGroup(
                        "tests",
                        items=[
                            nbp.Parallel([nbp.Step("unit", run=unit), nbp.Step("lint", duration="10s")]),
                            nbp.Step("e2e", when="All"),
                        ],
                        rollback_items=[nbp.Step("undo_tests")],
                        failure_strategies=nbp.Retry(1),
                    ),
                ],
                rollback_items=[nbp.Step("restore")],
            ),
            nbp.Parallel(
                [
                    nbp.Stage("deploy_eu", items=[nbp.Step("apply_eu")]),
                    nbp.Stage("deploy_us", type="Deployment", items=[nbp.Step("apply_us")]),
                ]
            ),
        ],
    )


# -- the builder builds the right tree ---------------------------------------------------------


def test_R11_R12_builder_builds_stages_groups_parallel_blocks_and_rollback_lists():
    p = build_with_builder()
    assert [type(s).__name__ for s in p.stages] == ["Stage", "Parallel"]
    build, deploys = p.stages
    assert [s.id for s in deploys.items] == ["deploy_eu", "deploy_us"]
    assert deploys.items[1].type == "Deployment"
    checkout_step, tests = build.items
    assert isinstance(checkout_step, Step) and checkout_step.run is checkout and checkout_step.timeout == "1m"
    assert isinstance(tests, StepGroup)
    block, e2e = tests.items
    assert isinstance(block, Parallel) and block.ids == ["unit", "lint"]
    assert block.items[0].run is unit and block.items[1].duration == "10s"
    assert e2e.id == "e2e" and e2e.when == nbp.When("All")  # held as a When, however spelled
    assert [s.id for s in tests.rollback_items] == ["undo_tests"]
    assert [s.id for s in build.rollback_items] == ["restore"]
    assert tests.failure_strategies == [nbp.OnFailure(action=nbp.Retry(1))]


def test_R1_R4_R5_plain_objects_build_a_pipeline_equal_to_the_builders():
    assert build_with_builder() == build_with_objects()


def test_R4_plain_objects_differ_when_one_setting_differs():
    other = build_with_objects()
    other.stages[0].items[0].timeout = "2m"
    assert build_with_builder() != other


def test_builder_returns_the_nodes_it_adds():
    s = nbp.Stage("build")
    step = s.step("compile", duration="30s")
    assert step is s.items[0] and step.duration == "30s"
    group = s.step_group("g")
    assert group is s.items[1]
    assert s.find("compile") is step and s.find("nope") is None


def test_add_places_a_plain_node_at_the_cursor():
    s = nbp.Stage("build")
    with s.parallel():
        s.add(nbp.Step("a"))
        s.add(nbp.Step("b"))
    with s.rollback():
        s.add(nbp.Step("undo"))
    assert s.items == [nbp.Parallel([nbp.Step("a"), nbp.Step("b")])]
    assert s.rollback_items == [nbp.Step("undo")]


# -- re-running a cell redefines in place --------------------------------------------------------


def test_R1_re_adding_a_step_replaces_it_in_place():
    s = nbp.Stage("build")
    for ident in ("a", "b", "c"):
        s.step(ident)
    new = s.step("b", duration="5s")
    assert [it.id for it in s.items] == ["a", "b", "c"]
    assert s.items[1] is new and new.duration == "5s"


def test_R1_re_adding_a_stage_replaces_it_in_place_with_its_new_contents():
    p = nbp.Pipeline("p")
    for ident in ("first", "middle", "last"):
        with p.stage(ident) as s:
            s.step("old")
    with p.stage("middle") as s:
        s.step("new")
    assert [st.id for st in p.stages] == ["first", "middle", "last"]
    assert [it.id for it in p.stages[1].items] == ["new"]


def test_R1_re_adding_a_step_group_replaces_it_in_place():
    s = nbp.Stage("build")
    s.step("before")
    with s.step_group("g") as g:
        g.step("one")
        g.step("two")
    s.step("after")
    with s.step_group("g") as g:
        g.step("three")
    assert [it.id for it in s.items] == ["before", "g", "after"]
    assert [it.id for it in s.items[1].items] == ["three"]


def test_R5_re_adding_a_parallel_block_with_the_same_ids_replaces_the_block_in_place():
    g = nbp.StepGroup("g")
    g.step("first")
    with g.parallel():
        g.step("a")
        g.step("b")
    g.step("last")
    with g.parallel():
        g.step("a", duration="1s")
        g.step("b")
    assert repr(g) == "StepGroup('g', ['first', Parallel(['a', 'b']), 'last'])"
    assert g.items[1].items[0].duration == "1s"


def test_R11_re_adding_parallel_stages_replaces_the_block_in_place():
    p = build_with_builder()
    with p.parallel():
        with p.stage("deploy_eu") as eu:
            eu.step("apply_eu_v2")
        with p.stage("deploy_us") as us:
            us.step("apply_us")
    assert repr(p) == "Pipeline('release', stages=['build', Parallel(['deploy_eu', 'deploy_us'])])"
    assert p.stages[1].items[0].items[0].id == "apply_eu_v2"


def test_R5_re_adding_a_step_inside_an_open_parallel_block_does_not_duplicate_it():
    s = nbp.Stage("build")
    with s.parallel():
        s.step("a")
        s.step("b")
        s.step("a", duration="2s")
    assert s.items[0].ids == ["a", "b"]
    assert s.items[0].items[0].duration == "2s"


def test_R35_re_adding_a_rollback_step_replaces_it_in_the_rollback_list():
    s = nbp.Stage("build")
    s.step("deploy")
    with s.rollback():
        s.step("undo")
        s.step("undo", duration="3s")
    assert [it.id for it in s.items] == ["deploy"]
    assert s.rollback_items == [nbp.Step("undo", duration="3s")]


def test_re_running_the_whole_cell_gives_an_equal_pipeline():
    p = build_with_builder()
    # the same cell run again on the same object
    with p.stage("build") as build:
        build.step("checkout", run=checkout, timeout="1m")
        with build.step_group("tests", failure_strategies=nbp.Retry(1)) as tests:
            with tests.parallel():
                tests.step("unit", run=unit)
                tests.step("lint", duration="10s")
            tests.step("e2e", when="All")
            with tests.rollback():
                tests.step("undo_tests")
        with build.rollback():
            build.step("restore")
    assert p == build_with_objects()


# -- remove, rollback(), names, reprs, guidance ----------------------------------------------------


def test_remove_takes_a_node_out_of_execution_or_rollback_lists():
    p = build_with_builder()
    build = p.stages[0]
    tests = build.find("tests")
    removed = tests.remove("lint")
    assert removed.id == "lint"
    assert repr(tests) == "StepGroup('tests', [Parallel(['unit']), 'e2e'])"
    tests.remove("unit")  # an emptied parallel block goes away
    assert repr(tests) == "StepGroup('tests', ['e2e'])"
    build.remove("restore")
    assert build.rollback_items == []
    p.remove("deploy_eu")
    assert repr(p) == "Pipeline('release', stages=['build', Parallel(['deploy_us'])])"


def test_R5_place_puts_a_node_in_place_at_the_end_or_beside_a_sibling():
    """One placement for the builder and the magics: ``place`` / ``take`` / ``locate``."""
    items = [Step("unit"), Step("e2e")]
    place(items, Step("lint"), parallel_with="unit")  # a lone sibling becomes a block of two
    assert items == [Parallel([Step("unit"), Step("lint")]), Step("e2e")]
    place(items, Step("e2e", duration=3))  # in place of its namesake
    assert items[1] == Step("e2e", duration=3)
    place(items, Step("smoke"), parallel_with="e2e")
    place(items, Step("lint"), parallel_with="smoke")  # moved: its old block becomes a node
    assert items == [Step("unit"), Parallel([Step("e2e", duration=3), Step("smoke"), Step("lint")])]
    where, i = locate(items, "smoke")
    assert where is items[1].items and i == 1
    assert locate(items, "nope") is None
    with pytest.raises(ValueError, match="no `nope` here to run in parallel with `x`; here: unit, e2e"):
        place(items, Step("x"), parallel_with="nope")
    with pytest.raises(ValueError, match="`unit` cannot run in parallel with itself"):
        place(items, Step("unit"), parallel_with="unit")


def test_take_removes_a_node_and_an_emptied_block_and_tidies_on_request():
    items = [Parallel([Step("a"), Step("b")]), Step("c")]
    assert take(items, "b") == Step("b") and items == [Parallel([Step("a")]), Step("c")]
    assert take(items, "a") == Step("a") and items == [Step("c")]
    items = [Parallel([Step("a"), Step("b")]), Step("c")]
    assert take(items, "b", tidy=True) == Step("b") and items == [Step("a"), Step("c")]
    assert take(items, "zzz") is None


def test_remove_of_an_unknown_id_names_the_known_ones():
    s = nbp.Stage("build", items=[nbp.Step("a")], rollback_items=[nbp.Step("undo")])
    with pytest.raises(KeyError, match=r"no node 'zzz' here; known: a, undo"):
        s.remove("zzz")


def test_R35_rollback_context_sends_steps_to_the_rollback_list_then_back():
    s = nbp.Stage("deploy")
    s.step("apply")
    with s.rollback() as rollback_list:
        s.step("undo_apply")
        with s.parallel():
            s.step("notify")
            s.step("page")
    s.step("verify")
    assert rollback_list is s.rollback_items
    assert [it.id for it in s.items] == ["apply", "verify"]
    assert repr(s.rollback_items) == "[Step('undo_apply'), Parallel(['notify', 'page'])]"


def test_R3_step_groups_have_a_rollback_list_too():
    g = nbp.StepGroup("db")
    g.step("migrate")
    with g.rollback():
        g.step("restore_snapshot")
    assert [it.id for it in g.items] == ["migrate"]
    assert [it.id for it in g.rollback_items] == ["restore_snapshot"]


def test_R1_names_default_to_identifiers():
    p = build_with_builder()
    assert p.display_name == "release"
    assert p.stages[0].display_name == "build"
    assert p.stages[0].items[1].display_name == "tests"
    assert p.stages[0].items[0].display_name == "checkout"
    assert nbp.Step("x", name="Run the tests").display_name == "Run the tests"
    names = {n.id: n.name for n in p.plan().nodes}
    assert names["checkout"] == "checkout" and names["release"] == "release"


def test_reprs_show_identifiers_and_structure():
    p = build_with_builder()
    assert repr(p) == "Pipeline('release', stages=['build', Parallel(['deploy_eu', 'deploy_us'])])"
    assert repr(p.stages[0]) == "Stage('build', ['checkout', 'tests'])"
    assert repr(p.stages[0].items[1]) == "StepGroup('tests', [Parallel(['unit', 'lint']), 'e2e'])"
    assert repr(nbp.Step("unit")) == "Step('unit')"
    assert repr(nbp.Parallel([nbp.Step("a"), nbp.Step("b")])) == "Parallel(['a', 'b'])"


@pytest.mark.parametrize("verb", ["step", "step_group"])
def test_R12_steps_on_a_pipeline_give_a_clear_type_error(verb):
    p = nbp.Pipeline("p")
    with pytest.raises(TypeError, match=r"steps belong to a stage: `with p.stage\('build'\) as s"):
        getattr(p, verb)("x")


def test_R11_a_pipeline_has_no_rollback_list():
    with pytest.raises(TypeError, match="a pipeline has no rollback list"):
        nbp.Pipeline("p").rollback()


def test_R5_parallel_blocks_cannot_be_nested():
    s = nbp.Stage("s")
    with s.parallel(), pytest.raises(TypeError, match="parallel blocks cannot be nested"), s.parallel():
        pass


def test_R5_an_empty_parallel_block_adds_nothing():
    s = nbp.Stage("s")
    with s.parallel():
        pass
    assert s.items == []


def test_building_many_steps_with_the_builder_is_linear_enough_to_finish():
    """30,000 adds (plain steps and parallel blocks): a quadratic builder would not finish in CI."""
    p = nbp.Pipeline("big")
    with p.stage("s") as s:
        with s.step_group("g") as g:
            for b in range(5_000):
                with g.parallel():
                    g.step(f"a{b}")
                    g.step(f"b{b}")
        for i in range(20_000):
            s.step(f"x{i}")
    assert len(p.stages[0].items) == 20_001
    assert len(p.stages[0].items[0].items) == 5_000
    s.step("x7", duration=3)  # a redefinition still replaces in place
    assert p.stages[0].items[8].duration == 3 and len(p.stages[0].items) == 20_001


def test_redefining_a_node_keeps_its_place_inside_a_parallel_block():
    p = nbp.Pipeline("p")
    with p.stage("build") as build:
        build.step("x")
    with p.parallel():
        with p.stage("eu") as eu:
            eu.step("r")
        with p.stage("us") as us:
            us.step("r")
    with p.stage("eu") as eu:  # re-running only the cell of one parallel stage
        eu.step("r2")
    assert repr(p) == "Pipeline('p', stages=['build', Parallel(['eu', 'us'])])"
    assert p.stages[1].items[0].items[0].id == "r2"
    with p.stage("build") as build, build.step_group("g") as g:
        with g.parallel():
            g.step("a")
            g.step("b")
        g.step("a", duration=3)  # redefined outside the `with parallel()`: stays in its block
    assert repr(g) == "StepGroup('g', [Parallel(['a', 'b'])])"
    assert g.items[0].items[0].duration == 3


def test_R35_execution_and_rollback_lists_are_separate_scopes_in_the_builder():
    """The same id may stand in a stage's execution list and its rollback list (different FQNs)."""
    s = nbp.Stage("s")
    s.step("u")
    with s.rollback():
        s.step("u")
    assert [i.id for i in s.items] == ["u"] and [i.id for i in s.rollback_items] == ["u"]
    p = nbp.Pipeline("p", stages=[s])
    p.validate()


def test_R28_R15_settings_spelled_differently_but_meaning_the_same_compare_equal():
    """``when`` and ``failure_strategies`` are held in one form, whatever spelling built them."""
    short = nbp.Step("a", when="Failure", failure_strategies={"Timeout": nbp.Retry(2)})
    long = nbp.Step(
        "a",
        when={"stageStatus": "Failure"},
        failure_strategies=[
            {"onFailure": {"errors": ["Timeout"], "action": {"type": "Retry", "spec": {"retryCount": 2}}}}
        ],
    )
    assert short == long
    assert short.when == nbp.When("Failure")
    assert short.failure_strategies == [nbp.OnFailure(("Timeout",), nbp.Retry(2))]
    stage = nbp.Stage("s", failure_strategies=nbp.Ignore())
    assert stage.failure_strategies == [nbp.OnFailure(action=nbp.Ignore())]
    # what cannot be read is kept as given, for validation to report with the node's FQN
    assert nbp.Step("a", failure_strategies=[42]).failure_strategies == [42]


def test_step_accepts_a_ready_made_step_and_step_group_a_ready_made_group():
    p = Pipeline("p")
    with p.stage("s") as s:
        a = s.step(Step("a", duration=3))  # issue 23: was TypeError: unhashable type: 'Step'
        with s.step_group(StepGroup("g")) as g:
            g.step(Step("b"))
    assert a is p.stages[0].items[0] and [it.id for it in p.stages[0].items] == ["a", "g"]
    assert [it.id for it in p.stages[0].items[1].items] == ["b"]
    with pytest.raises(TypeError, match=r"step\(\) got a Step and settings \(duration\).*or use add\(\)"):
        p.stages[0].step(Step("c"), duration=3)
