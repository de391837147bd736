"""The fast paths of the pre-run checks give the answers of the full checks (issue 28 part 5).

Validation skips the one-by-one visit of a step group's or stage's steps when they are all
plain and surely valid (``validation._sound_lists``); the compile notes which nodes may read a
reference and what a simulation needs to look for (``Plan.traits``), so that the reference
check and the simulation's set-up do not walk every node. Each case below is checked both
ways: with the fast path, and with it turned off (every node visited, every node walked).
"""

from __future__ import annotations

import pytest

import notebook_pipelines as nbp
from notebook_pipelines.definition import validation
from notebook_pipelines.definition.callables import is_sampler
from notebook_pipelines.definition.limits import MAX_DATA_DEPTH
from notebook_pipelines.definition.model import Parallel, Pipeline, Stage, Step, StepGroup
from notebook_pipelines.definition.plan import compile_plan
from notebook_pipelines.definition.references import expressions_of, output_reads, static_problems
from notebook_pipelines.definition.validation import problems


def _nested(depth: int) -> list:
    value: list = [1]
    for _ in range(depth):
        value = [value]
    return value


def _body_needing_x(ctx, x):  # a body whose input ``x`` no step gives (R43)
    return None


#: steps that stand beside plain ones in a parallel block: each valid or not, plain or not
ODD_STEPS = {
    "plain": lambda: Step("odd", duration=2.0),
    "dollar_id": lambda: Step("odd$1"),
    "bad_id": lambda: Step("1odd"),
    "unicode_id": lambda: Step("ödd"),
    "long_id": lambda: Step("o" * 129),
    "not_text_id": lambda: Step(7),
    "duplicate_id": lambda: Step("a0"),
    "empty_variables": lambda: Step("odd", variables={}),
    "negative_duration": lambda: Step("odd", duration=-1),
    "unreadable_duration": lambda: Step("odd", duration="soon"),
    "harness_duration": lambda: Step("odd", duration="1m 30s"),
    "bool_duration": lambda: Step("odd", duration=True),
    "sampler_duration": lambda: Step("odd", duration=lambda rng: 1.0),
    "bad_sampler": lambda: Step("odd", duration=lambda: 1.0),
    "name_not_text": lambda: Step("odd", name=3),
    "run_not_callable": lambda: Step("odd", run=3),
    "run_needs_input": lambda: Step("odd", run=_body_needing_x),
    "code_text": lambda: Step("odd", run="print(1)"),
    "outputs": lambda: Step("odd", outputs=["o"]),
    "bad_output": lambda: Step("odd", outputs=["1o"]),
    "when": lambda: Step("odd", when="Failure"),
    "timeout": lambda: Step("odd", timeout="soon"),
    "deep_variables": lambda: Step("odd", variables={"v": _nested(MAX_DATA_DEPTH + 1)}),
    "not_a_step": lambda: Stage("odd", items=[Step("x")]),
    "needs_a_sibling": lambda: Step("odd", needs=["a10"]),
    "needs_nothing_there": lambda: Step("odd", needs=["zzz"]),
    "needs_not_text": lambda: Step("odd", needs=[3]),
}


def _pipeline(odd: Step | Stage, *, in_rollback: bool = False) -> Pipeline:
    """A stage of a group of three parallel blocks of plain steps, ``odd`` in the second
    (or in the group's rollback list), and a second group of plain steps only."""
    names = [[f"a{b}{i}" if b else f"a{i}" for i in range(3)] for b in range(3)]
    group = StepGroup("g", items=[Parallel([Step(name, duration=1.0) for name in block]) for block in names])
    if in_rollback:
        group.rollback_items = [Step("undo"), odd]
    else:
        group.items[1].items.append(odd)
    plain = StepGroup("h", items=[Step("x", duration="1s"), Parallel([Step("y"), Step("z", run="pass")])])
    return Pipeline("p", rules="current", stages=[Stage("s", items=[group, plain])])


def _full_check(p: Pipeline, monkeypatch: pytest.MonkeyPatch) -> list:
    """``problems(p)`` with every node visited and checked one by one."""
    with monkeypatch.context() as m:
        m.setattr(validation, "_sound_lists", lambda node: False)
        m.setattr(validation, "_sound", lambda step: False)
        return problems(p)


@pytest.mark.parametrize("in_rollback", [False, True], ids=["execution", "rollback"])
@pytest.mark.parametrize("case", sorted(ODD_STEPS))
def test_R1_R4_R43_validation_fast_path_reports_what_the_full_check_reports(case, in_rollback, monkeypatch):
    p = _pipeline(ODD_STEPS[case](), in_rollback=in_rollback)
    assert problems(p) == _full_check(p, monkeypatch)


def test_validation_fast_path_takes_the_lists_of_plain_steps_alone():
    p = _pipeline(ODD_STEPS["plain"]())
    group, plain = p.stages[0].items
    assert validation._sound_lists(group) and validation._sound_lists(plain)
    for case in ("dollar_id", "harness_duration", "code_text"):  # valid, and sound without a doubt
        assert validation._sound_lists(_pipeline(ODD_STEPS[case]()).stages[0].items[0]), case
    for case in sorted(set(ODD_STEPS) - {"plain", "dollar_id", "harness_duration", "code_text"}):
        assert not validation._sound_lists(_pipeline(ODD_STEPS[case]()).stages[0].items[0]), case
    assert problems(p) == []


def test_validation_fast_path_keeps_the_order_of_problems(monkeypatch):
    """Problems before, inside and after a group of plain steps, in definition order."""
    p = _pipeline(ODD_STEPS["bad_id"]())
    p.stages[0].items.insert(0, Step("2early"))
    p.stages[0].items[2].items.append(Step("3late"))
    found = problems(p)
    assert [f.fqn.rsplit(".", 1)[-1] for f in found] == ["2early", "1odd", "3late"]
    assert found == _full_check(p, monkeypatch)


# -- what the compile notes (Plan.traits) --------------------------------------------------------


def _designs() -> dict[str, nbp.Pipeline]:
    """Pipelines with each thing a trait stands for, and one with none of them."""
    out: dict[str, nbp.Pipeline] = {}
    p = nbp.Pipeline("plain")
    with p.stage("s") as s, s.step_group("g") as g, g.parallel():
        for i in range(4):
            g.step(f"x{i}", run=lambda: None, duration=1.0)
    out["plain"] = p

    p = nbp.Pipeline("reads")
    with p.stage("s") as s:
        s.step("a", outputs=["v"], run=lambda ctx: {"v": 1})
        s.step("b", run=lambda ctx, x: None, inputs={"x": "<+execution.steps.a.output.outputVariables.v>"})
        s.step("c", when='<+execution.steps.a.output.outputVariables.v> == "1"')
        with s.step_group("g", when="<+pipeline.variables.go> == 'yes'") as g:
            g.step("d")
    p.variables = {"go": "yes"}
    out["reads"] = p

    p = nbp.Pipeline("retries")
    with p.stage("s", failure_strategies=nbp.Retry(1, condition='<+step.identifier> == "a"')) as s:
        s.step("a", duration="2s")
        s.step("b", duration=lambda rng: rng.uniform(1, 2))
    out["retries"] = p

    p = nbp.Pipeline("typed")
    with p.stage("s") as s:
        s.step(
            "sh",
            type="ShellScript",
            spec={"shell": "Bash", "source": {"type": "Inline", "spec": {"script": "echo"}},
                  "outputVariables": [{"name": "o", "type": "String", "value": "o"}]},
        )  # fmt: skip
        s.step("after", inputs={"o": "<+execution.steps.sh.output.outputVariables.o>"}, run=lambda o: None)
    out["typed"] = p

    p = nbp.Pipeline("looped")
    with p.stage("s") as s:
        s.step("m", strategy=nbp.Matrix(axes={"x": ["1", "2"]}), run=lambda: None)
    out["looped"] = p
    return out


def _exact(plan) -> dict:
    """The traits as one walk over every node finds them exactly."""
    return {
        "readers": {n.index for n in plan.nodes if list(expressions_of(n))},
        "samplers": any(is_sampler(n.duration) for n in plan.nodes if n.duration is not None),
        "outputs": any(n.outputs or (n.spec or {}).get("outputVariables") for n in plan.steps),
        "sketch": any(n.body is None and n.type is None for n in plan.steps),
    }


@pytest.mark.parametrize("name", sorted(_designs()))
def test_R45_plan_traits_from_the_compile_miss_nothing_a_walk_finds(name):
    plan = compile_plan(_designs()[name])
    from_compile = plan.traits()
    del plan.__dict__["_traits"]  # as for a plan made elsewhere: found with one pass
    from_pass = plan.traits()
    exact = _exact(plan)
    for traits in (from_compile, from_pass):
        assert exact["readers"] <= {n.index for n in traits.readers}
        assert [n.index for n in traits.readers] == sorted(n.index for n in traits.readers)  # plan order
        for flag in ("samplers", "outputs", "sketch"):
            assert getattr(traits, flag) >= exact[flag], flag
    if name == "plain":  # nothing to look for: the checks and the set-up skip every step
        assert not (from_compile.samplers or from_compile.outputs or from_compile.sketch)
        assert all(n.kind != "step" for n in from_compile.readers)


@pytest.mark.parametrize("name", sorted(_designs()))
def test_R45_reference_checks_over_the_readers_equal_those_over_every_node(name, monkeypatch):
    plan = compile_plan(_designs()[name], check=False)
    found, reads = static_problems(plan), output_reads(plan)
    every = plan.traits()._replace(readers=plan.nodes)  # the readers: every node of the plan
    fresh = compile_plan(_designs()[name], check=False)
    object.__setattr__(fresh, "_traits", every)
    assert [str(p) for p in static_problems(fresh)] == [str(p) for p in found]
    assert output_reads(fresh) == reads
    if name == "reads":
        assert {plan.nodes[i].id: sorted(v) for i, v in reads.items()} == {"a": ["v"]}


def test_D14_compile_finds_needs_of_a_group_whose_own_blocks_have_none():
    """The compile looks for a block's needs only when a member may have them: a step group
    member counts as one even though the parallel blocks inside it have none (their flag is
    their own)."""
    p = nbp.Pipeline("p", rules="current")
    with p.stage("s") as s, s.parallel():
        with s.step_group("g", needs=["b"]) as g, g.parallel():
            g.step("x", duration=1.0)
            g.step("y", duration=1.0)
        s.step("b", duration=2.0)
        s.step("c", duration=1.0)
    plan = compile_plan(p)
    block = plan.root.items[0].items[0]
    group, b, c = block.items
    assert (group.needs, b.needs, c.needs) == ((1,), (), ())  # g waits for b, the second member
    assert block.order == (1, 0, 2)  # b before g; c in block order
    inner = group.items[0]
    assert inner.order is None and all(m.needs == () for m in inner.items)
    t = nbp.simulate(p)
    start = dict(zip(t["step"], t["start_s"]))
    assert (start["x"], start["b"], start["c"]) == (2.0, 0.0, 0.0)  # g starts when b ends (2 s)


# -- what references read: statuses and outputs by FQN, kept by node index (runtime.ByFqn) ---------


def _run_values(p: nbp.Pipeline, **options):
    """The scheduler's ``statuses`` and ``outputs`` after a simulation, and what a dict by FQN,
    written row by row, would hold (the last value written under each FQN)."""
    from notebook_pipelines.engine.scheduler import Scheduler
    from notebook_pipelines.engine.simulation import _virtual

    plan = compile_plan(p)
    _seed, clock, executor, scripted = _virtual(
        plan, None, 1.0, options.get("failures"), None, 0, 0, True, options.get("outputs")
    )
    scheduler = Scheduler(plan, executor, clock, run_id="t", on_intervention=scripted)
    scheduler.execute()
    scheduler.fill_not_started()
    nodes = [*plan.nodes, *scheduler.extra]
    statuses: dict = {}
    succeeded: set = set()  # the steps whose body "ran" and succeeded (not a looped node's own row)
    for row in scheduler.recorder.rows:
        node = nodes[row.node]
        statuses[node.fqn] = row.status
        if node.kind == "step" and node.strategy is None and row.status == "Success":
            succeeded.add(node.fqn)
    return scheduler, statuses, succeeded


def _retried_loop() -> nbp.Pipeline:
    """A looped step inside a group that is retried once: its copies are made again, under the
    same FQNs (an iteration's copy taking the looped step's own FQN is refused, R46)."""
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("before", outputs=["v"])
        with s.step_group("g", failure_strategies=nbp.RetryStepGroup(1)) as g:
            g.step("m", strategy=nbp.Matrix(os=["l", "w"]))
            g.step("flaky")
        s.step("after")
    return p


@pytest.mark.parametrize("design", ["plain", "retried_loop"])
def test_R44_R46_statuses_and_outputs_by_fqn_are_those_of_a_dict_written_row_by_row(design):
    p = _designs()["reads"] if design == "plain" else _retried_loop()
    failures = {"flaky": 1} if design == "retried_loop" else None
    published = {"before" if design == "retried_loop" else "a": {"v": 1}}
    scheduler, expected, succeeded = _run_values(p, failures=failures, outputs=published)
    assert dict(scheduler.statuses.items()) == expected
    assert len(scheduler.statuses) == len(expected)
    for fqn, status in expected.items():
        assert scheduler.statuses.get(fqn) == status and fqn in scheduler.statuses
    assert scheduler.statuses.get("pipeline.stages.nowhere") is None
    outputs = dict(scheduler.outputs.items())
    assert set(outputs) == succeeded
    if design == "retried_loop":
        stage = "pipeline.stages.s.spec.execution.steps"
        assert outputs[f"{stage}.before"] == {"v": 1}
        assert scheduler.statuses[f"{stage}.g.steps.m_1"] == expected[f"{stage}.g.steps.m_1"]  # made twice
        assert [n.id for n in scheduler.extra] == ["m_0", "m_1", "m_0", "m_1"]  # expanded twice
        assert sorted(fqn.rsplit(".", 1)[-1] for fqn in scheduler.statuses.named) == ["m", "m_0", "m_1"]


def test_compile_asks_each_shared_body_once_and_gives_each_step_its_own_body_s_answer(monkeypatch):
    """The compile remembers ``takes_ctx`` per body (many steps share one); a step's answer is
    still its own body's, and a step with inputs is asked with them."""
    from notebook_pipelines.definition import plan as plan_module

    asked: list[tuple[object, tuple[str, ...]]] = []
    real = plan_module.takes_ctx

    def counting(fn, inputs=()):
        asked.append((fn, tuple(inputs or ())))
        return real(fn, inputs)

    monkeypatch.setattr(plan_module, "takes_ctx", counting)

    def plain():
        pass

    def with_ctx(ctx):
        pass

    def first_is_input(x):  # its first parameter is an input, not the context
        pass

    steps = [Step(f"p{k}", run=plain) for k in range(50)] + [Step(f"c{k}", run=with_ctx) for k in range(50)]
    steps.append(Step("i", run=first_is_input, inputs={"x": 1}))
    plan = compile_plan(Pipeline("p", stages=[Stage("s", items=[Parallel(steps)])]))
    answers = {n.id: n.takes_ctx for n in plan.nodes if n.kind == "step"}
    assert [answers[f"p{k}"] for k in range(50)] == [False] * 50
    assert [answers[f"c{k}"] for k in range(50)] == [True] * 50
    assert answers["i"] is False
    assert sorted(asked, key=repr) == sorted(
        [(plain, ()), (with_ctx, ()), (first_is_input, ("x",))], key=repr
    )
