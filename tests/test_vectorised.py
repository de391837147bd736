"""The vectorised Monte Carlo path (issue 28): exact agreement with the scheduler, and when it declines."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import notebook_pipelines as nbp
from notebook_pipelines.engine.vectorised import batch, step_durations, why_not

# -- random pipelines: stages (some in parallel), steps, parallel blocks, step groups, `when` --------
_WHEN = st.sampled_from([None, None, None, "All", "Failure"])
_SECONDS = st.one_of(
    st.sampled_from([0.0, 0.1, 0.2, 0.3, 1.0, 1e-9, 3.7]),
    st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False),
)


def _items(depth: int) -> st.SearchStrategy:
    leaf = st.tuples(st.just("step"), _WHEN)
    if depth == 0:
        return st.lists(leaf, min_size=1, max_size=3)
    group = st.tuples(st.just("group"), _WHEN, st.deferred(lambda: _items(depth - 1)))
    one = st.one_of(leaf, leaf, group)
    block = st.tuples(st.just("parallel"), st.lists(one, min_size=1, max_size=3))
    return st.lists(st.one_of(one, one, block), min_size=1, max_size=4)


_SHAPES = st.lists(
    st.tuples(st.booleans(), st.lists(st.tuples(_WHEN, _items(2)), min_size=1, max_size=2)),
    min_size=1,
    max_size=3,
)


def _build(shape: list) -> nbp.Pipeline:
    p = nbp.Pipeline("p", rules="current")  # step groups in step groups too
    counter = iter(range(10_000))

    def fill(container, items):
        for item in items:
            if item[0] == "parallel":
                with container.parallel():
                    fill(container, item[1])
            elif item[0] == "step":
                container.step(f"s{next(counter)}", when=item[1])
            else:
                with container.step_group(f"g{next(counter)}", when=item[1]) as g:
                    fill(g, item[2])

    for together, stages in shape:

        def add(stages=stages):
            for when, items in stages:
                with p.stage(f"st{next(counter)}", when=when) as s:
                    fill(s, items)

        if together and len(stages) > 1:
            with p.parallel():
                add()
        else:
            add()
    return p


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=_SHAPES, data=st.data())
def test_vectorised_path_agrees_exactly_with_the_scheduler(shape, data):
    """Every node's start and end (not only the makespan), bit for bit, for random structures."""
    plan = _build(shape).plan()
    assert why_not(plan) is None
    steps = [n for n in plan.nodes if n.kind == "step"]
    values = {n.fqn: data.draw(_SECONDS) for n in steps}
    runs = 3
    per_step = {n.index: np.array([values[n.fqn]] * runs) for n in steps}
    result = batch(plan, per_step, runs)
    trace = nbp.simulate(plan, durations=values)
    for node, (_, row) in zip(plan.nodes, trace.iterrows()):
        assert row["fqn"] == node.fqn
        assert str(row["status"]) == result.status[node.index], node.fqn
        for column, got in (("start_s", result.start), ("end_s", result.end)):
            want = row[column]
            if np.isnan(want):
                assert np.isnan(got[node.index]).all(), (node.fqn, column)
            else:
                assert (got[node.index] == want).all(), (node.fqn, column, got[node.index], want)


def test_why_not_says_why_it_declines():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", when="<+pipeline.variables.x> == 1")
    p.variables = {"x": 1}
    assert "condition on run-time values" in why_not(p.plan())
    q = nbp.Pipeline("q")
    with q.stage("s") as s:
        s.step("a", failure_strategies=nbp.Retry(2))
    assert why_not(q.plan()) is None  # a retry cannot act when nothing fails
    assert "injects failures" in why_not(q.plan(), failures={"a": 0.5})
    assert "function of the node" in why_not(q.plan(), durations=lambda node, rng: 1.0)


def test_samplers_are_drawn_all_at_once_and_replay_as_a_batch():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", duration=lambda rng: rng.lognormal(1, 0.3))
        s.step("b", duration=lambda rng: float(rng.uniform(1, 2)))  # a scalar: called per run
    plan = p.plan()
    one = step_durations(plan, None, 1.0, 500, seed=7)
    two = step_durations(plan, None, 1.0, 500, seed=7)
    a, b = (n.index for n in plan.steps)
    assert one[a].shape == (500,) and np.array_equal(one[a], two[a]) and np.array_equal(one[b], two[b])
    assert one[b].min() >= 1.0 and one[b].max() <= 2.0 and len(set(one[b])) == 500


def test_a_negative_sampled_duration_is_refused_naming_the_step():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", duration=lambda rng: rng.normal(0, 1))
    with pytest.raises(nbp.SimulationError, match=r"steps\.a"):
        step_durations(p.plan(), None, 1.0, 100, seed=0)
