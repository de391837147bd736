"""The trace's static columns are made per list item (``engine/trace_layout.py``), not node by
node: they must be what the old way made, node by node, for every shape — nested groups,
parallel blocks of steps and of groups, rollback lists, loops (R46), needs (D14), retries, a
failed run — and so must the trace made of them, whose rows' own columns are now made from
the rows laid end to end (``_fields``), a column of one text or of no objects without a list
of values (``_column``).

``old_node_columns``, ``old_fields`` and ``old_column`` are the code that made them before
(eight lists over the nodes and a walk setting each node's ``after``; ``zip(*rows)``; every
object column through a list), kept here as the reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import notebook_pipelines as nbp
from notebook_pipelines.definition.plan import Plan, compile_plan
from notebook_pipelines.engine import trace as trace_module
from notebook_pipelines.engine import trace_layout
from notebook_pipelines.engine.trace_layout import (
    KINDS,
    PHASES,
    after_column,
    kind_dtype,
    node_columns,
    phase_dtype,
    strings,
)


def old_node_columns(plan: Plan) -> dict[str, Any]:
    """The static columns as they were made before, node by node (not cached)."""
    nodes = plan.nodes
    n = len(nodes)
    fqn = pa.array([x.fqn for x in nodes], type=pa.large_string())
    ids = pa.array([x.id for x in nodes], type=pa.large_string())
    kinds = {value: code for code, value in enumerate(KINDS)}
    kind = np.array([kinds[x.kind] for x in nodes], dtype=np.int8)
    parent = np.array([-1 if x.parent is None else x.parent.index for x in nodes], dtype=np.intp)
    stage = np.array([-1 if x.stage is None else x.stage.index for x in nodes], dtype=np.intp)
    group = np.array([-1 if x.group is None else x.group.index for x in nodes], dtype=np.intp)
    step = np.where(kind == kinds["step"], np.arange(n, dtype=np.intp), -1)
    block = np.array([-1 if x.block is None else x.block for x in nodes], dtype=np.int64)
    phases = {value: code for code, value in enumerate(PHASES)}
    return {
        "fqn": strings(fqn),
        "parent": strings(fqn.take(pa.array(parent, mask=parent < 0))),
        "stage": strings(ids.take(pa.array(stage, mask=stage < 0))),
        "step_group": strings(ids.take(pa.array(group, mask=group < 0))),
        "step": strings(ids.take(pa.array(step, mask=step < 0))),
        "kind": pd.Categorical.from_codes(kind, dtype=kind_dtype()),
        "phase": pd.Categorical.from_codes(
            np.array([phases[x.phase] for x in nodes], dtype=np.int8), dtype=phase_dtype()
        ),
        "block": pd.arrays.IntegerArray(block, block == -1),
        "after": after_column(nodes, [plan.root]),
    }


def old_fields(rows: Any) -> dict[str, Any]:
    """The rows transposed as before."""
    fields: dict[str, Any] = dict.fromkeys(trace_module.Record._fields, ())
    if rows:
        fields = dict(zip(trace_module.Record._fields, zip(*rows)))
    return fields


def old_column(name: str, values: Any, order: Any, n: int, empty: Any = None) -> Any:
    """A record field's column as before."""
    import itertools

    kind = trace_module._ANNOTATIONS[name]
    if name == "status":
        codes = np.fromiter(
            map(trace_module._STATUS_CODE.get, values, itertools.repeat(-1)), np.int8, count=n
        )
        return pd.Categorical.from_codes(codes[order], dtype=trace_module._status_dtype(), validate=False)
    if kind == "int":
        return np.fromiter(values, dtype=np.int64, count=n)[order]
    if kind == "float | None":
        return np.array(values, dtype=np.float64)[order] if n else np.array([], dtype=np.float64)
    if kind in ("int | None", "str | None", "str") and values.count(None) == n:
        return empty if empty is not None else trace_module._no_values(kind, n)
    data = np.array(values, dtype=object)[order] if n else np.array([], dtype=object)
    if kind == "int | None":
        return pd.array(data, dtype="Int64")
    if kind in ("str | None", "str"):
        return trace_module._text(data)
    return data


def assert_same_columns(new: dict[str, Any], old: dict[str, Any]) -> None:
    assert list(new) == list(old)
    for name in old:
        assert type(new[name]) is type(old[name]), name
        assert new[name].dtype == old[name].dtype, name
        if name == "after":
            assert list(new[name]) == list(old[name])
            assert all(type(x) is tuple for x in new[name])
        else:
            pd.testing.assert_extension_array_equal(new[name], old[name])


def nested() -> nbp.Pipeline:
    """Steps and groups in every kind of place: nested groups, a parallel block of steps, one
    holding a group (its members are not consecutive), rollback lists of stage and group."""
    p = nbp.Pipeline("nested", rules="current")
    with p.stage("build") as s:
        s.step("first", duration=1)
        with s.parallel():
            s.step("a", duration=1)
            s.step("b", duration=2)
        with s.step_group("g") as g:
            g.step("in_g", duration=1)
            with g.step_group("inner") as inner:
                inner.step("deep", duration=1)
            with g.parallel():
                with g.step_group("pg") as pg:
                    pg.step("x", duration=1)
                    pg.step("y", duration=1)
                g.step("beside", duration=1)
            with g.rollback():
                g.step("undo_g", duration=1)
        s.step("last", duration=1)
        with s.rollback():
            s.step("restore", duration=1)
            with s.parallel():
                s.step("r1", duration=1)
                s.step("r2", duration=1)
    with p.parallel():
        with p.stage("left") as s:
            s.step("l", duration=1)
        with p.stage("right") as s:
            s.step("r", duration=1)
    with p.stage("deploy") as d:
        d.step("apply", duration=1)
    return p


def with_needs() -> nbp.Pipeline:
    """D14: members of parallel blocks that wait for siblings, and one block of plain members."""
    p = nbp.Pipeline("needs")
    with p.stage("s") as s:
        s.step("before", duration=1)
        with s.parallel():
            s.step("a", duration=1)
            s.step("b", duration=2)
            s.step("c", duration=1, needs=["a", "b"])
            s.step("d", duration=1, needs="a")
        with s.parallel():
            s.step("e", duration=1)
            with s.step_group("g", needs=["e"]) as g:
                g.step("in_g", duration=1)
        with s.parallel():
            s.step("f", duration=1)
            s.step("h", duration=1)
    return p


def looped() -> nbp.Pipeline:
    """R46: a looped step and a looped group (the run's copies are extra rows)."""
    p = nbp.Pipeline("looped")
    with p.stage("s") as s:
        s.step("build", duration=1, strategy=nbp.Matrix(os=["linux", "win"]))
        with s.step_group("g", strategy=nbp.Repeat(times=2)) as g:
            g.step("one", duration=1)
            with g.parallel():
                g.step("two", duration=1)
                g.step("three", duration=1)
        s.step("after", duration=1)
    return p


def retried() -> nbp.Pipeline:
    """Retries (more rows than nodes), then a failure that fails the run and skips a stage."""
    p = nbp.Pipeline("retried")
    with p.stage("s") as s:
        s.step("flaky", duration=1, failure_strategies=nbp.Retry(2))
        with s.parallel():
            s.step("broken", duration=1)
            s.step("fine", duration=1)
        s.step("after", duration=1)
    with p.stage("then") as s:
        s.step("x", duration=1)
    return p


def grouped(n: int) -> nbp.Pipeline:
    """The benchmark's shape, small: step groups of parallel blocks of steps."""
    p = nbp.Pipeline("grouped")
    k = 0
    with p.stage("s") as stage:
        for g in range(n // 20):
            with stage.step_group(f"g{g}") as group:
                for _ in range(2):
                    with group.parallel():
                        for _ in range(10):
                            group.step(f"s{k}", duration=1.0)
                            k += 1
    return p


@pytest.fixture(autouse=True)
def every_plan_by_its_lists(monkeypatch):
    """The shapes here are small: made by their lists all the same, as a large plan is."""
    monkeypatch.setattr(trace_layout, "LAYOUT_FROM", 0)


SHAPES = {
    "nested": nested,
    "needs": with_needs,
    "looped": looped,
    "retried": retried,
    "grouped": lambda: grouped(200),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_the_static_columns_are_those_made_node_by_node(name):
    plan = SHAPES[name]().plan()
    assert trace_layout._layout(plan, [x.fqn for x in plan.nodes]) is not None  # not the fallback
    assert_same_columns(node_columns(plan), old_node_columns(plan))


def test_D14_a_member_with_needs_waited_for_them_in_the_static_columns():
    plan = with_needs().plan()
    after = dict(zip(node_columns(plan)["fqn"], node_columns(plan)["after"]))
    prefix = "pipeline.stages.s.spec.execution.steps."
    assert after[prefix + "c"] == (prefix + "a", prefix + "b")
    assert after[prefix + "d"] == (prefix + "a",)
    assert after[prefix + "a"] == (prefix + "before",)
    assert after[prefix + "g"] == (prefix + "e",)
    assert after[prefix + "g.steps.in_g"] == ()
    assert after[prefix + "f"] == after[prefix + "h"] == (prefix + "e", prefix + "g")  # the block before
    assert_same_columns(node_columns(plan), old_node_columns(plan))


def old_trace(simulate: Any, monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    """The trace ``simulate()`` makes with its columns made the old way."""
    with monkeypatch.context() as patched:
        patched.setattr(trace_module, "node_columns", old_node_columns)
        patched.setattr(trace_layout, "node_columns", old_node_columns)  # the run's looped copies
        patched.setattr(trace_module, "_fields", old_fields)
        patched.setattr(trace_module, "_column", old_column)
        return simulate()


def layout(frame: pd.DataFrame) -> list[tuple[str, list[int]]]:
    return [(str(block.dtype), list(block.mgr_locs)) for block in frame._mgr.blocks]


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_a_simulated_trace_is_the_one_made_the_old_way(name, monkeypatch):
    options: dict[str, Any] = {"failures": {"flaky": 2, "broken": 1}} if name == "retried" else {}

    def simulate() -> pd.DataFrame:
        return SHAPES[name]().simulate(run_id="r", **options)  # a fresh plan: nothing cached

    new, old = simulate(), old_trace(simulate, monkeypatch)
    if name == "retried":  # retries, a failed run and a skipped stage
        assert (new["attempt"] == 3).any() and "Failed" in set(new["status"].astype(str))
    if name == "looped":
        assert len(new) > len(SHAPES[name]().plan().nodes)  # the iterations' rows
    pd.testing.assert_frame_equal(new, old, check_exact=True)
    assert layout(new) == layout(old)
    assert new.attrs.keys() == old.attrs.keys()
    assert {k: v for k, v in new.attrs.items() if k != "run_key"} == {  # each run has its own key
        k: v for k, v in old.attrs.items() if k != "run_key"
    }
    assert [list(a) if a is not None else None for a in new["after"]] == [
        list(a) if a is not None else None for a in old["after"]
    ]


def test_a_failed_real_run_keeps_the_trace_made_the_old_way(monkeypatch):
    def boom() -> None:
        raise RuntimeError("nope")

    def build() -> nbp.Pipeline:
        p = nbp.Pipeline("failing")
        with p.stage("s") as s:
            with s.parallel():
                s.step("a", run=boom)
                s.step("b", run=lambda: None)
            s.step("c", run=lambda: None)
            with s.rollback():
                s.step("undo", run=lambda: None)
        return p

    def run() -> pd.DataFrame:
        return build().run(run_id="r", report=False, progress=False)

    new, old = run(), old_trace(run, monkeypatch)
    assert "Failed" in set(new["status"].astype(str))
    keep = ["fqn", "parent", "kind", "phase", "stage", "step_group", "step", "block", "status", "attempt"]
    pd.testing.assert_frame_equal(new[keep], old[keep], check_exact=True)
    assert list(new["after"]) == list(old["after"])
    assert layout(new) == layout(old)


def test_rows_that_are_not_whole_records_are_transposed_as_before():
    rows = [(0, None, 1), (1, None, 1, "extra")]  # not records: zip keeps the fields all have
    for some in (rows, [], [tuple(range(len(trace_module.Record._fields)))] * 2):
        new, old = trace_module._fields(some), old_fields(some)
        assert {k: list(v) for k, v in new.items()} == {k: list(v) for k, v in old.items()}


def test_columns_of_one_text_or_of_no_objects_are_made_as_before():
    order = np.array([1, 0, 2])
    for name, values in (
        ("worker", ["virtual"] * 3),
        ("worker", ["virtual", "virtual", "w2"]),
        ("outputs", [None] * 3),
        ("outputs", [None, {"a": 1}, None]),
        ("log", ["x", None, "x"]),
    ):
        new, old = trace_module._column(name, values, order, 3), old_column(name, tuple(values), order, 3)
        assert type(new) is type(old) and new.dtype == old.dtype
        assert list(new) == list(old)


def test_a_small_plan_is_read_node_by_node_and_a_large_one_by_its_lists(monkeypatch):
    monkeypatch.undo()
    seen: list[Any] = []
    monkeypatch.setattr(trace_layout, "_layout", lambda *args: seen.append(args) or None)  # then per node
    small, large = grouped(20).plan(), grouped(trace_layout.LAYOUT_FROM).plan()
    assert len(small.nodes) < trace_layout.LAYOUT_FROM <= len(large.nodes)
    node_columns(small)
    assert seen == []
    node_columns(large)
    assert len(seen) == 1


def test_a_plan_whose_lists_miss_a_node_is_read_node_by_node():
    # not a plan the compile makes: the lists no longer cover the nodes exactly once
    plan = nested().plan()
    build = plan.nodes[1]
    assert build.id == "build" and build.rollback
    build.rollback = ()  # its rollback steps are still nodes of the plan
    broken = Plan(plan.pipeline, plan.root, plan.nodes)
    assert trace_layout._layout(broken, [x.fqn for x in broken.nodes]) is None
    assert_same_columns(node_columns(broken), old_node_columns(broken))


def test_an_empty_group_compiled_unchecked_has_its_own_row():
    # R1 refuses it; compiled unchecked it is a leaf among the members of a parallel block
    p = nbp.Pipeline("p", stages=[nbp.Stage("s", items=[nbp.Parallel([nbp.Step("a"), nbp.StepGroup("g")])])])
    plan = compile_plan(p, check=False)
    assert [x.kind for x in plan.nodes] == ["pipeline", "stage", "step", "step_group"]
    assert_same_columns(node_columns(plan), old_node_columns(plan))
