"""The design assistant (issue 19): ``nbp.suggest_layout`` — faster layouts that keep every
dependency, with optima computed by hand from declared durations (virtual time)."""

from __future__ import annotations

import base64
import dataclasses
import re
import warnings

import pandas as pd
import pytest

import notebook_pipelines as nbp
from notebook_pipelines.analysis.layout import LayoutError, layout_key


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
    found = nbp.suggest_layout(resource_pipeline(), across_stages=True)
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
    # levels (blocks of two, longest first) and lanes both take 15 s: one of them is shown,
    # the one that relaxes fewer orderings (levels: 4 pairs)
    assert [s.makespan_s for s in found] == [14, 15]
    assert found[1].strategy == "levels" and found[1].gap == pytest.approx(15 / 14 - 1)
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
    assert list(nbp.suggest_layout(p, across_stages=True)) == []


def test_display_and_yaml_export():
    found = nbp.suggest_layout(chain_pair())
    html = found._repr_html_()
    assert "<table>" in html and "lane_" in html
    # two pictures, each an <img> of its SVG (an untrusted notebook drops inline SVG, keeps images),
    # stacked (not side by side in a flex row, where both shrank) at their natural width
    images = re.findall(
        r'<img alt="([^"]*)" style="width: (\d+)px; max-width: 100%[^"]*"'
        r' src="data:image/svg\+xml;base64,([^"]+)"',
        html,
    )
    assert [alt.split(" (")[0] for alt, _w, _d in images] == ["as written", "suggested"]
    assert "<svg" not in html and "display:flex" not in html
    for _alt, width, data in images:
        svg = base64.b64decode(data).decode()
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg
        assert abs(int(width) - float(re.search(r'width="([0-9.]+)pt"', svg).group(1)) * 4 / 3) < 1
    assert "1. best: 6 s" in repr(found)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = found[0].to_yaml()
    assert "stepGroup" in text and "lane_" in text


# -- across_stages (issue 19, part 2: "stage boundaries unless across_stages=True") -----------
def three_stages(link: str = "input") -> nbp.Pipeline:
    """a 10 s, b 20 s, c 5 s, one step each; c reads a (an output, or a's status in its when)."""
    p = nbp.Pipeline("three")
    with p.stage("a") as s:
        s.step("make", duration=10, outputs=["x"])
    with p.stage("b") as s:
        s.step("docs", duration=20)
    reads_a = "<+pipeline.stages.a.spec.execution.steps.make.output.outputVariables.x>"
    if link == "input":
        with p.stage("c") as s:
            s.step("use", duration=5, inputs={"x": reads_a})
    else:  # a stage `when` that reads another stage's status (R26, R43)
        with p.stage("c", when='<+pipeline.stages.a.status> == "SUCCEEDED"') as s:
            s.step("use", duration=5)
    return p


@pytest.mark.parametrize("link", ["input", "stage when"])
def test_R11_across_stages_runs_unordered_stages_in_parallel(link):
    # by hand: as written 10 + 20 + 5 = 35. c must follow a; b is free. Harness has no group of
    # stages, so the chain a → c cannot run beside b: [a ‖ b] → c = 20 + 5 = 25 (a → [b ‖ c]
    # = 30). The bound is the longest chain: max(a + c, b) = 20, so 25 % above it.
    p = three_stages(link)
    default = nbp.suggest_layout(p)
    assert list(default) == [] and default.original_s == 35
    assert default.bound_s == 35  # the written stage order is a dependency by default
    assert "stages keep their order" in repr(default)
    found = nbp.suggest_layout(p, across_stages=True)
    assert found.original_s == 35 and found.bound_s == 20
    best = found[0]
    assert best.makespan_s == 25 and best.gap == pytest.approx(0.25)
    block, last = best.pipeline.stages
    assert isinstance(block, nbp.Parallel) and sorted(block.ids) == ["a", "b"] and last.id == "c"
    assert best.relaxed == [("a", "b")] and best.changes == ["stages: [a ∥ b] → c"]
    check(found, [], [("a", "c")])


def test_across_stages_keeps_constraints_between_stages():
    # four stages a 10, b 20, c 5 (reads a), d 8, and ("b", "d"): d after b. By hand:
    # [a ‖ b] → [c ‖ d] = 20 + 8 = 28 = the longest chain b → d (as written 43)
    p = three_stages()
    with p.stage("d") as s:
        s.step("tidy", duration=8)
    found = nbp.suggest_layout(p, constraints=[("b", "d")], across_stages=True)
    assert found.original_s == 43 and found.bound_s == 28 and found[0].makespan_s == 28
    assert [sorted(it.ids) for it in found[0].pipeline.stages] == [["a", "b"], ["c", "d"]]
    check(found, [], [("a", "c"), ("b", "d")])


def test_R56_stages_that_meet_at_a_barrier_stay_side_by_side():
    # build 2 s → [us ‖ eu] (prep 3 s each, then they meet at the barrier 'ready') → docs 4 s:
    # as written 9 s. eu reads build, us and docs read nothing: levels would put us beside
    # build and eu after it — apart, us and eu deadlock at the barrier (R58). Together:
    # build → [us ‖ eu ‖ docs] = 2 + 4 = 6 s (the bound, the chain build → eu, is 5 s)
    p = nbp.Pipeline("sync", barriers=["ready"])
    with p.stage("build") as s:
        s.step("make", duration=2, outputs=["x"])
    with p.parallel():
        for name in ("us", "eu"):
            with p.stage(name) as s:
                reads = {"x": "<+pipeline.stages.build.spec.execution.steps.make.output.outputVariables.x>"}
                s.step(f"prep_{name}", duration=3, inputs=reads if name == "eu" else None)
                s.step(f"wait_{name}", type="Barrier", spec={"barrierRef": "ready"}, duration=0)
    with p.stage("docs") as s:
        s.step("site", duration=4)
    found = nbp.suggest_layout(p, across_stages=True)
    assert "meet at a barrier stay in one parallel block" in repr(found)
    assert found.original_s == 9 and found.bound_s == 5 and found[0].makespan_s == 6
    for s in found:
        assert any(isinstance(it, nbp.Parallel) and {"us", "eu"} <= set(it.ids) for it in s.pipeline.stages)
    check(found, [], [("build", "eu")])


# -- max_parallel and stages (issue 19, part 3) --------------------------------------------------
def test_max_parallel_counts_stages_side_by_side_against_the_cap():
    # two stages of one 6 s step each, independent. By default the written order is a dependency:
    # 12 s is the bound and nothing is faster. With across_stages=True and max_parallel=2 the two
    # stages fit side by side (one step each): 6 s; with max_parallel=1 they cannot (bound 12)
    p = nbp.Pipeline("two")
    for name in ("x", "y"):
        with p.stage(name) as s:
            s.step(f"{name}_work", duration=6)
    kept = nbp.suggest_layout(p, max_parallel=2)
    assert list(kept) == [] and kept.bound_s == 12 and "stages keep their order" in repr(kept)
    found = nbp.suggest_layout(p, max_parallel=2, across_stages=True)
    assert found.bound_s == 6 and found[0].makespan_s == 6
    assert "at most 2 at once" in " ".join(found.notes)
    one = nbp.suggest_layout(p, max_parallel=1, across_stages=True)
    assert list(one) == [] and one.bound_s == 12


def test_max_parallel_never_puts_more_steps_side_by_side_across_stages():
    # stage w: two independent 4 s steps; stages u 6 s and v 5 s: one step each; all independent.
    # Cap 2: w alone fills both lanes (4 s); u ‖ v fit (6 s): by hand 4 + 6 = 10 (as written 4+4
    # +6+5 = 19). Work 19 / 2 = 9.5 is the bound.
    p = nbp.Pipeline("cap")
    with p.stage("w") as s:
        s.step("w1", duration=4)
        s.step("w2", duration=4)
    for name, d in (("u", 6), ("v", 5)):
        with p.stage(name) as s:
            s.step(f"{name}1", duration=d)
    found = nbp.suggest_layout(p, max_parallel=2, across_stages=True)
    assert found.original_s == 19 and found.bound_s == 9.5 and found[0].makespan_s == 10
    for s in found:
        steps = s.trace[s.trace["kind"] == "step"]
        for t in steps["start_s"]:
            assert ((steps["start_s"] <= t) & (steps["end_s"] > t)).sum() <= 2, s.strategy
    check(found, [])


# -- every <+…> follows a moved step (issue 19, part 1: "references rewritten") ----------------
def test_R18_R42_a_retry_condition_follows_the_step_into_its_new_group():
    # the chain pair, but e reads b only in its retry condition (R18: it is read when e fails,
    # so e still runs after b); d keeps a variable and e a repeat list that read c and d. By
    # hand: [a → b ‖ c → d] → e = 6 s, as in test_R5; every reference names the new group
    p = nbp.Pipeline("retry")
    with p.stage("s") as s:
        s.step("a", duration=1, outputs=["x"])
        s.step("b", duration=4, inputs={"v": out("a", "x")}, outputs=["y"])
        s.step("c", duration=4, outputs=["z"])
        s.step("d", duration=1, inputs={"v": out("c", "z")}, outputs=["w"], variables={"seen": out("c", "z")})
        s.step(
            "e",
            duration=1,
            strategy=nbp.Repeat(items=out("d", "w")),
            failure_strategies=[
                nbp.OnFailure(action=nbp.Retry(2, condition=f'{out("b", "y")} == "flaky"', then="Ignore"))
            ],
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a repeat list known only in a run: one iteration
        found = nbp.suggest_layout(p)
        assert found[0].makespan_s == 6
        stage = found[0].pipeline.stages[0]
        group_of = {m.id: g.id for g in stage.items[0].items for m in g.items}
        e = stage.items[1]
        retry = e.failure_strategies[0].action
        assert retry.condition == (
            f'<+execution.steps.{group_of["b"]}.steps.b.output.outputVariables.y> == "flaky"'
        )
        assert retry.count == 2 and retry.then == nbp.Ignore()  # the rest of the strategy is kept
        assert e.strategy.items == f"<+execution.steps.{group_of['d']}.steps.d.output.outputVariables.w>"
        d = next(m for g in stage.items[0].items for m in g.items if m.id == "d")
        assert d.variables == {"seen": f"<+execution.steps.{group_of['c']}.steps.c.output.outputVariables.z>"}
        check(found, PAIR_DEPS)
    # the original keeps its text
    assert p.stages[0].items[-1].failure_strategies[0].action.condition.startswith("<+execution.steps.b.")


# -- distinct suggestions (issue 19, part 1: "at most a handful, distinct") ---------------------
def test_suggestions_are_distinct_layouts_and_no_tie_is_shown_twice():
    # the chain pair as in test_R5: 6 s ([a → b ‖ c → d] → e) and 9 s (levels) — series-parallel,
    # lanes and the best per stage all find the same 6 s layout (new groups named alike or not):
    # it is shown once, and each makespan at most once
    found = nbp.suggest_layout(chain_pair())
    assert [s.makespan_s for s in found] == [6, 9]
    keys = {layout_key(s.pipeline, s.new_groups) for s in found}
    assert len(keys) == len(found)
    # the same layout with its parallel block listed the other way round and other group names
    best = found[0].pipeline
    block = best.stages[0].items[0]
    renamed = [dataclasses.replace(g, id=f"other_{i}") for i, g in enumerate(reversed(block.items))]
    twin = dataclasses.replace(
        best,
        stages=[dataclasses.replace(best.stages[0], items=[nbp.Parallel(renamed), best.stages[0].items[1]])],
    )
    assert layout_key(twin, {("s", "other_0"), ("s", "other_1")}) == layout_key(best, found[0].new_groups)
    assert layout_key(twin) != layout_key(best, found[0].new_groups)  # existing groups: by name


def test_a_tie_keeps_the_layout_that_relaxes_fewer_orderings():
    # the eight steps of the max_parallel test, two at once. Two layouts take 15 s: levels in
    # blocks of two, longest first ([s0 ‖ s1] → [s2 ‖ s3] → [s4 ‖ s5] → [s6 ‖ s7]: relaxes the 4
    # pairs inside the blocks), and two lanes s0 → s2 → s4 → s6 ‖ s1 → s3 → s5 → s7 (keeps the
    # 12 pairs inside the lanes, relaxes the other 16 of the 28). Only the first is shown
    p = nbp.Pipeline("eight")
    with p.stage("s") as s:
        for i, d in enumerate([5, 5, 4, 4, 3, 3, 3, 1]):
            s.step(f"s{i}", duration=d)
    found = nbp.suggest_layout(p, max_parallel=2)
    ties = [s for s in found if s.makespan_s == 15]
    assert len(ties) == 1
    assert ties[0].relaxed == [("s0", "s1"), ("s2", "s3"), ("s4", "s5"), ("s6", "s7")]


def test_a_suggestions_steps_are_its_own_objects_editing_one_leaves_the_original_alone():
    p = nbp.Pipeline("three")
    with p.stage("s") as s:
        for name in ("a", "b", "c"):
            s.step(name, duration="5s")
    best = nbp.suggest_layout(p)[0]
    originals = {id(step) for step in p.stages[0].items}
    mine = [node for node in best.pipeline.stages[0].items]
    steps = [getattr(item, "items", [item]) for item in mine]
    flat = [step for group in steps for step in group]
    assert flat and not originals & {id(step) for step in flat}
    flat[0].timeout = 60
    assert all(step.timeout is None for step in p.stages[0].items)


# -- sketches: durations only, no bodies (issue 23 item 6) ------------------------------------------
def sketch() -> nbp.Pipeline:
    """a 10 s → b 30 s (reads a's output v) → c 30 s; nothing has a body or declares outputs."""
    p = nbp.Pipeline("sketch")
    with p.stage("s") as s:
        s.step("a", duration=10)
        s.step("b", duration=30, inputs={"x": out("a", "v")})
        s.step("c", duration=30)
    return p


def test_a_sketch_without_bodies_simulates_to_success_with_placeholder_outputs():
    trace = sketch().simulate()
    steps = trace[trace["kind"] == "step"].set_index("step")
    assert trace.loc[trace["kind"] == "pipeline", "status"].tolist() == ["Success"]
    assert steps.loc["a", "outputs"] == {"v": None}  # the placeholder b reads
    assert steps.loc["b", "inputs"] == {"x": None}
    assert pd.isna(steps.loc["c", "outputs"])  # nothing reads c: it publishes nothing
    assert float(trace["end_s"].max()) == 10 + 30 + 30


def test_a_sketchs_outputs_given_to_simulate_win_over_the_placeholder():
    trace = sketch().simulate(outputs={"a": {"v": "eu"}})
    assert trace.set_index("step").loc["b", "inputs"] == {"x": "eu"}


def test_a_step_with_a_body_gets_no_placeholder_it_must_declare_what_it_publishes():
    p = sketch()
    p.stages[0].items[0].run = lambda: None
    trace = p.simulate()
    assert "has no output variable 'v'" in trace.set_index("step").loc["b", "error"]


def test_suggest_layout_designs_a_sketch_70s_to_40s():
    found = nbp.suggest_layout(sketch())
    # serial: 10 + 30 + 30 = 70 s. b needs a (10 + 30 = 40 s); c depends on nothing and runs
    # beside b (or beside a → b): max(10 + 30, 30) = 40 s, which is also the bound (the chain a → b)
    assert (found.original_s, found.bound_s) == (70.0, 40.0)
    assert found[0].makespan_s == 40.0 and found[0].speedup == 70 / 40
    start_b, _ = span(found[0].trace, "s", "b")
    assert start_b >= span(found[0].trace, "s", "a")[1]  # the dependency is kept
    # the suggestion's trace is a run of this kernel: what_if finds the suggested layout's plan
    assert found[0].trace.pipeline.what_if()["makespan_s"].tolist() == [40.0, 40.0]


def test_suggest_layout_refuses_a_baseline_that_did_not_succeed_naming_the_step_and_reason():
    p = sketch()
    p.stages[0].items[0].run = lambda: None  # a body that declares no outputs: b cannot read v
    with pytest.raises(LayoutError) as err:
        nbp.suggest_layout(p)
    message = str(err.value)
    assert "ended Failed" in message and "pipeline.stages.s.spec.execution.steps.b" in message
    assert "has no output variable 'v'" in message and "outputs=['name']" in message


def test_D14_the_bound_counts_the_chains_that_needs_make():
    """A member waits for the siblings it needs, and the layouts keep the needs: the bound is
    the longest chain over them too (it was the longest step alone, 5 s, and the best layout
    read as 40 % above it)."""
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        with s.parallel():
            s.step("a", duration=1)
            s.step("b", duration=5)
            s.step("c", duration=2, needs=["a", "b"])
            s.step("d", duration=1, needs=["a"])
        s.step("e", duration=3)
        s.step("f", duration=3)
    found = nbp.suggest_layout(p)
    # chains: a → c = 1 + 2 = 3, b → c = 5 + 2 = 7, a → d = 1 + 1 = 2; e and f alone 3 each
    assert found.original_s == (5 + 2) + 3 + 3  # the block ends with b → c, then e, then f
    assert found.bound_s == 7.0
    assert found[0].makespan_s == 7.0 and found[0].gap == 0.0


def test_D14_the_bound_counts_needs_between_stages():
    """Stages in a parallel block with needs: ``build`` (4 s) then ``test`` (6 s) that needs it
    is a 10 s chain; ``docs`` (2 s) runs beside them."""
    p = nbp.Pipeline("p")
    with p.parallel():
        with p.stage("build") as s:
            s.step("compile", duration=4)
        with p.stage("test", needs=["build"]) as s:
            s.step("unit", duration=6)
        with p.stage("docs") as s:
            s.step("site", duration=2)
    found = nbp.suggest_layout(p, across_stages=True)
    assert found.original_s == 4 + 6
    assert found.bound_s == 4 + 6  # was max(4, 6, 2) = 6 without the need
