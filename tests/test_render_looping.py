"""Pictures of looped nodes and barriers (R46, R48–R51, R55): real Graphviz DOT."""

from __future__ import annotations

import notebook_pipelines as nbp


def looped_pipeline() -> nbp.Pipeline:
    p = nbp.Pipeline("p", barriers=["ready"])
    matrix = nbp.Matrix(
        os=["l", "m", "w"], arch=["x", "a"], exclude=[{"os": "w", "arch": "a"}], max_concurrency=2
    )
    with p.parallel():
        with p.stage("a") as a:
            a.step("build", strategy=matrix, duration=3)
            a.step("meet", type="Barrier", spec={"barrierRef": "ready"})
        with p.stage("b") as b:
            b.step("meet", type="Barrier", spec={"barrierRef": "ready"})
    return p


def test_R49_a_looped_node_is_drawn_once_with_its_badge():
    source = looped_pipeline().render().source
    assert source.count('label="build') == 1
    assert "⟳ matrix 3×2 − 1, max 2" in source


def test_R46_after_a_run_iterations_expand_one_node_each_coloured_by_its_rows():
    p = looped_pipeline()
    trace = p.simulate()
    source = p.render(trace, iterations="expand").source
    for postfix in ("_0_0", "_0_1", "_1_0", "_1_1", "_2_0"):
        assert f'label="build{postfix}' in source
    assert "build_2_1" not in source  # excluded
    assert p.render(trace).source.count('label="build') == 1  # the default stays one node


def test_R55_barrier_steps_of_one_barrier_are_joined_by_a_dashed_edge_across_lanes():
    source = looped_pipeline().render().source
    (edge,) = [line for line in source.splitlines() if 'tooltip="barrier ready"' in line]
    assert "style=dashed" in edge and "dir=none" in edge and "constraint=false" in edge
