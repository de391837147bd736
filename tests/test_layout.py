"""The design assistant (issue 19): ``nbp.suggest_layout`` — faster layouts that keep every
dependency, with optima computed by hand from declared durations (virtual time)."""

from __future__ import annotations

import warnings

import pytest

import notebook_pipelines as nbp
from notebook_pipelines.analysis.layout import LayoutError


def out(step: str, name: str) -> str:
    return f"<+execution.steps.{step}.output.outputVariables.{name}>"


def span(trace, stage: str, ident: str) -> tuple[float, float]:
    """(first start, last end) of the step or group ``ident`` of ``stage`` in ``trace``."""
    rows = trace[(trace["stage"] == stage) & trace["fqn"].str.endswith("." + ident)]
    rows = rows[rows["kind"].isin(["step", "step_group"]) & rows["start_s"].notna()]
    assert len(rows), f"{ident} did not run"
    return float(rows["start_s"].min()), float(rows["end_s"].max())


def stage_span(trace, stage: str) -> tuple[float, float]:
    rows = trace[(trace["kind"] == "stage") & (trace["fqn"] == f"pipeline.stages.{stage}")]
    return float(rows["start_s"].iloc[0]), float(rows["end_s"].iloc[0])


def check(suggestions, deps: list[tuple[str, str, str]], stage_deps: list[tuple[str, str]] = ()) -> None:
    """Every suggestion validates and its simulated trace keeps every dependency: the second
    starts after the first ends (R45)."""
    for s in suggestions:
        s.pipeline.validate()
        trace = s.pipeline.simulate()
        assert float(trace[trace["kind"] == "pipeline"]["end_s"].iloc[0]) == pytest.approx(s.makespan_s)
        for stage, first, second in deps:
            assert span(trace, stage, second)[0] >= span(trace, stage, first)[1], (s.strategy, first, second)
        for first, second in stage_deps:
            assert stage_span(trace, second)[0] >= stage_span(trace, first)[1], (s.strategy, first, second)


def chain_pair() -> nbp.Pipeline:
    """a 1 → b 4, c 4 → d 1, both feeding e 1 (outputs read through inputs, R44)."""
    p = nbp.Pipeline("pair")
    with p.stage("s") as s:
        s.step("a", duration=1, outputs=["x"])
        s.step("b", duration=4, inputs={"v": out("a", "x")}, outputs=["y"])
        s.step("c", duration=4, outputs=["z"])
        s.step(
            "d",
            duration=1,
            inputs={"v": "<+pipeline.stages.s.spec.execution.steps.c.output.outputVariables.z>"},
            outputs=["w"],
        )
        s.step("e", duration=1, inputs={"y": out("b", "y"), "w": out("d", "w")})
    return p


PAIR_DEPS = [("s", "a", "b"), ("s", "c", "d"), ("s", "b", "e"), ("s", "d", "e")]


def test_R5_two_chains_as_parallel_groups_beat_levels():
    # by hand: as written 1+4+4+1+1 = 11; levels [a‖c] [b‖d] e = 4+4+1 = 9;
    # two groups [a→b ‖ c→d] then e = 5+1 = 6 = the longest chain
    found = nbp.suggest_layout(chain_pair())
    assert found.original_s == 11
    assert found.bound_s == 6
    best = found[0]
    assert best.makespan_s == 6 and best.speedup == pytest.approx(11 / 6) and best.gap == 0
    block, last = best.pipeline.stages[0].items
    assert isinstance(block, nbp.Parallel) and last.id == "e"
    chains = sorted([m.id for m in g.items] for g in block.items)
    assert all(isinstance(g, nbp.StepGroup) for g in block.items) and chains == [["a", "b"], ["c", "d"]]
    levels = next(s for s in found if s.strategy == "levels")
    assert levels.makespan_s == 9
    assert best.changes and "lane_" in best.changes[0]
    check(found, PAIR_DEPS)


def test_R42_references_follow_a_step_into_its_new_group():
    best = nbp.suggest_layout(chain_pair())[0]
    stage = best.pipeline.stages[0]
    group_of = {m.id: g.id for g in stage.items[0].items for m in g.items}
    d = next(m for g in stage.items[0].items for m in g.items if m.id == "d")
    assert d.inputs["v"] == (
        f"<+pipeline.stages.s.spec.execution.steps.{group_of['c']}.steps.c.output.outputVariables.z>"
    )
    e = stage.items[1]
    assert e.inputs == {
        "y": f"<+execution.steps.{group_of['b']}.steps.b.output.outputVariables.y>",
        "w": f"<+execution.steps.{group_of['d']}.steps.d.output.outputVariables.w>",
    }
    # bodies and settings are kept, the original is untouched
    original = chain_pair()
    assert d.duration == 1 and d.outputs == ["w"]
    assert nbp.suggest_layout(original) and [it.id for it in original.stages[0].items] == list("abcde")


def test_R45_diamond():
    # a 2 → (b 3 ‖ c 5) → d 1: by hand 2 + 5 + 1 = 8 (as written 11); b and c read a, d reads both
    p = nbp.Pipeline("diamond")
    with p.stage("s") as s:
        s.step("a", duration=2, outputs=["x"])
        s.step("b", duration=3, inputs={"v": out("a", "x")}, outputs=["y"])
        s.step("c", duration=5, when=f"{out('a', 'x')} == null", outputs=["z"])
        s.step("d", duration=1, inputs={"y": out("b", "y"), "z": out("c", "z")})
    found = nbp.suggest_layout(p)
    assert found.original_s == 11 and found.bound_s == 8 and found[0].makespan_s == 8
    items = found[0].pipeline.stages[0].items
    assert [type(it).__name__ for it in items] == ["Step", "Parallel", "Step"]
    assert sorted(items[1].ids) == ["b", "c"]
    assert found[0].relaxed == [("b", "c")]
    check(found, [("s", "a", "b"), ("s", "a", "c"), ("s", "b", "d"), ("s", "c", "d")])


IMAGE = "<+pipeline.stages.build.spec.execution.steps.compile.output.outputVariables.image>"


def resource_pipeline() -> nbp.Pipeline:
    """build 10 → (us 10, eu 10, both on resource 'k8s') ; docs 15 independent."""
    p = nbp.Pipeline("ship")
    with p.stage("build") as s:
        s.step("compile", duration=10, outputs=["image"])
    with p.stage("docs") as s:
        s.step("site", duration=15)
    for region in ("us", "eu"):
        with p.stage(region, type="Deployment", resource="k8s") as s:
            s.step(
                f"deploy_{region}",
                duration=10,
                inputs={"image": IMAGE},
            )
    return p


def test_D8_resource_key_keeps_stages_apart():
    # by hand: as written 10+15+10+10 = 45; levels [build ‖ docs] [us ‖ eu] = 15 + (10+10, D8) = 35;
    # build then [docs ‖ us ‖ eu] = 10 + max(15, 10+10) = 30 = build + the k8s queue (the bound)
    found = nbp.suggest_layout(resource_pipeline())
    assert found.original_s == 45 and found.bound_s == 30
    assert found[0].makespan_s == 30
    levels = next(s for s in found if s.strategy.endswith("stages in levels"))
    assert levels.makespan_s == 35
    trace = found[0].trace
    us, eu = stage_span(trace, "us"), stage_span(trace, "eu")
    assert us[1] <= eu[0] or eu[1] <= us[0]  # never overlap
    check(found, [], [("build", "us"), ("build", "eu")])


def test_user_constraint_forbids_the_best_move():
    # a, b, c 5 s each, independent: all in parallel, 5 s. With ("a", "b"): b after a, so
    # the best is [a→b ‖ c] = 10 (as written 15)
    p = nbp.Pipeline("free")
    with p.stage("s") as s:
        for name in "abc":
            s.step(name, duration=5)
    assert nbp.suggest_layout(p)[0].makespan_s == 5
    found = nbp.suggest_layout(p, constraints=[("a", "b")])
    assert found.bound_s == 10 and found[0].makespan_s == 10
    check(found, [("s", "a", "b")])
    with pytest.raises(LayoutError, match="no step, step group or stage 'zz'"):
        nbp.suggest_layout(p, constraints=[("a", "zz")])


def test_max_parallel_two_on_eight_independent_steps_finds_the_optimum():
    # 5 5 4 4 3 3 3 1 = 28 s of work on 2 lanes: bound 14, reached by 5+5+4 | 4+3+3+3+1;
    # longest-first list scheduling alone gives 15 (5|5, 4|4, 3|3, 3 → 15)
    durations = [5, 5, 4, 4, 3, 3, 3, 1]
    p = nbp.Pipeline("eight")
    with p.stage("s") as s:
        for i, d in enumerate(durations):
            s.step(f"s{i}", duration=d)
    found = nbp.suggest_layout(p, max_parallel=2)
    assert found.original_s == 28 and found.bound_s == 14
    best = found[0]
    assert best.makespan_s == 14 and best.gap == 0
    lanes = next(s for s in found if s.strategy == "lanes")
    assert lanes.makespan_s == 15 and lanes.gap == pytest.approx(15 / 14 - 1)
    for s in found:  # never more than two steps at once
        steps = s.trace[(s.trace["kind"] == "step")]
        for t in steps["start_s"]:
            running = ((steps["start_s"] <= t) & (steps["end_s"] > t)).sum()
            assert running <= 2, s.strategy
    check(found, [])


def test_R29_a_failure_or_all_step_stays_after_everything_before_it():
    p = nbp.Pipeline("cleanup")
    with p.stage("s") as s:
        s.step("a", duration=3)
        s.step("b", duration=3)
        s.step("notify", duration=1, when="All")
        s.step("c", duration=2)
    found = nbp.suggest_layout(p)
    # by hand: [a ‖ b] notify c = 3 + 1 + 2 = 6 (as written 9)
    assert found[0].makespan_s == 6
    check(found, [("s", "a", "notify"), ("s", "b", "notify"), ("s", "notify", "c")])


def test_R3_groups_rollback_and_loops_are_kept_whole():
    p = nbp.Pipeline("whole")
    with p.stage("s") as s:
        s.step("a", duration=4, outputs=["x"])
        with s.step_group("g") as g:
            g.step("g1", duration=2)
            g.step("g2", duration=2)
        s.step("loop", duration=1, strategy=nbp.Parallelism(3), inputs={"v": out("a", "x")})
        with s.rollback():
            s.step("undo", duration=1, inputs={"v": out("a", "x")})
    found = nbp.suggest_layout(p)
    best = found[0]
    stage = best.pipeline.stages[0]
    group = stage.find("g") or next(
        m for it in stage.items if isinstance(it, nbp.Parallel) for m in it.items if m.id == "g"
    )
    assert [m.id for m in group.items] == ["g1", "g2"]
    assert [it.id for it in stage.rollback_items] == ["undo"]
    # the rollback step follows a, wherever a went
    assert stage.rollback_items[0].inputs["v"].endswith("a.output.outputVariables.x>")
    # by hand: [a → loop ‖ g] = max(4 + 1, 4) = 5 (as written 9)
    assert best.makespan_s == 5
    check(found, [("s", "a", "loop")])


def test_durations_from_a_trace_make_the_last_run_faster():
    p = chain_pair()
    trace = nbp.simulate(p, durations={"b": 10})
    found = nbp.suggest_layout(trace=trace)
    # by hand: a 1 → b 10 is the longest chain: 11 + e 1 = 12 (as written 17)
    assert found.original_s == 17 and found[0].makespan_s == 12
    assert nbp.suggest_layout(p, durations={"b": 10})[0].makespan_s == 12


def test_nothing_to_gain_and_bad_options():
    p = nbp.Pipeline("serial")
    with p.stage("s") as s:
        s.step("a", duration=1, outputs=["x"])
        s.step("b", duration=1, inputs={"v": out("a", "x")})
    found = nbp.suggest_layout(p)
    assert list(found) == [] and "no faster layout" in repr(found)
    with pytest.raises(LayoutError, match="max_parallel"):
        nbp.suggest_layout(p, max_parallel=0)
    with pytest.raises(LayoutError, match="across_stages"):
        nbp.suggest_layout(p, across_stages=True)


def test_display_and_yaml_export():
    found = nbp.suggest_layout(chain_pair())
    html = found._repr_html_()
    assert "<table>" in html and html.count("<svg") == 2 and "lane_" in html
    assert "1. best: 6 s" in repr(found)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = found[0].to_yaml()
    assert "stepGroup" in text and "lane_" in text
