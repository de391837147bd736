"""History analytics (issue 27): step_stats, criticality, trend, regressions, flaky, compare over
many runs, with the answers computed by hand from virtual time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import notebook_pipelines as nbp
from notebook_pipelines.analysis.paths import path_flows
from notebook_pipelines.analysis.timing import critical_path

DATA = "notebooks/data"


def fork() -> nbp.Pipeline:
    """stage s: [a ‖ b], then c."""
    p = nbp.Pipeline("fork")
    with p.stage("s") as s:
        with s.parallel():
            s.step("a", duration=1)
            s.step("b", duration=1)
        s.step("c", duration=1)
    return p


def runs(p: nbp.Pipeline, durations: list[dict], **options) -> pd.DataFrame:
    return pd.concat(
        [p.simulate(durations=d, run_id=f"r{k}", **options) for k, d in enumerate(durations)],
        ignore_index=True,
    )


def by_name(table: pd.DataFrame) -> pd.DataFrame:
    return table.set_index("name")


@pytest.fixture(scope="module")
def three() -> pd.DataFrame:
    # r0: a 10 ‖ b 5, c 2 → path a, c (makespan 12)
    # r1: a 4 ‖ b 8, c 2 → path b, c (makespan 10)
    # r2: a 6 ‖ b 6, c 3 → a and b tie: each carries ½ of the path (makespan 9)
    return runs(fork(), [{"a": 10, "b": 5, "c": 2}, {"a": 4, "b": 8, "c": 2}, {"a": 6, "b": 6, "c": 3}])


def test_criticality_on_three_runs_with_a_tie(three):
    table = by_name(three.pipeline.criticality())
    # a: 1 + 0 + ½ of 3 runs = 0.5; b: 0 + 1 + ½ = 0.5; c: every run
    assert table.loc["a", "criticality"] == pytest.approx(0.5)
    assert table.loc["b", "criticality"] == pytest.approx(0.5)
    assert table.loc["c", "criticality"] == 1.0
    assert table.loc["s", "criticality"] == 1.0
    # exclusive seconds on the path, median over the runs where it is on it: a: 10, 6 → 8;
    # b: 8, 6 → 7; c: 2, 2, 3 → 2
    assert table.loc[["a", "b", "c"], "exclusive_s"].tolist() == [8.0, 7.0, 2.0]
    # owned: a 10 + 0 + 6 × ½ = 13 over 3 runs; b 0 + 8 + 3 = 11; c 2 + 2 + 3 = 7
    assert table.loc[["a", "b", "c"], "owned_s"].tolist() == pytest.approx([13 / 3, 11 / 3, 7 / 3])
    # the median makespan: median(12, 10, 9) = 10
    assert table.attrs["makespan_p50_s"] == 10.0
    assert table.loc["a", "share_of_p50"] == pytest.approx(13 / 3 / 10)
    # the stage holds the whole path: its inclusive seconds are the makespan, median 10
    assert table.loc["s", "inclusive_s"] == 10.0
    # the nodes' owned seconds add up to the mean makespan (12 + 10 + 9) / 3
    assert table["owned_s"].sum() == pytest.approx(31 / 3)


def test_exclusive_seconds_on_the_path_count_a_retry_and_its_wait():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", duration=4, failure_strategies=nbp.Retry(1, intervals="3s"))
        s.step("b", duration=2)
    h = runs(p, [{}, {"a": 6}], failures={"a": 1})
    table = by_name(h.pipeline.criticality())
    # r0: a#1 0–4 fails, waits 3 s, a#2 7–11, b 11–13: a owns 4 + 3 + 4 = 11 s of 13
    # r1: a#1 0–6, wait 3, a#2 9–15, b 15–17: a owns 15 s of 17; the median of 11 and 15 is 13
    assert table.loc["a", "exclusive_s"] == 13.0
    assert table.loc["b", "exclusive_s"] == 2.0
    assert table.loc["a", "owned_s"] == 13.0  # (11 + 15) / 2
    assert table.attrs["makespan_p50_s"] == 15.0  # median(13, 17)


def test_p95_is_numpy_linear_interpolation_and_queue_where_known():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("x", duration=1)
    h = runs(p, [{"x": k} for k in range(1, 11)])
    h["queued_s"] = np.where(h["kind"] == "step", h["run_id"].str[1:].astype(float), np.nan)  # 0 … 9
    stats = h.pipeline.step_stats()
    x = stats[stats["step"] == "x"].iloc[0]
    # 1 … 10, linear: p95 at position 9 × 0.95 = 8.55 → 9 + 0.55 × (10 − 9) = 9.55;
    # p90 at 8.1 → 9.1; p50 at 4.5 → 5.5
    assert (x["p50_s"], x["p90_s"], x["p95_s"], x["max_s"]) == pytest.approx((5.5, 9.1, 9.55, 10.0))
    # queues 0 … 9: p50 at 4.5 → 4.5; p95 at 8.55 → 8.55
    assert (x["queue_p50_s"], x["queue_p95_s"]) == pytest.approx((4.5, 8.55))
    assert (x["runs"], x["failure_rate"], x["retry_rate"], x["skipped_share"]) == (10, 0.0, 0.0, 0.0)


def planted(shift_a: float, shift_b: float, n: int = 60, at: int = 30) -> tuple[pd.DataFrame, list, list]:
    """[a ‖ b]: a about 100 s, b about 50 s (5 % noise); from run ``at`` on, a × shift_a, b × shift_b."""
    rng = np.random.default_rng(27)
    a = 100 * (1 + 0.05 * rng.standard_normal(n))
    b = 50 * (1 + 0.05 * rng.standard_normal(n))
    a[at:] *= shift_a
    b[at:] *= shift_b
    p = nbp.Pipeline("p")
    with p.stage("s") as s, s.parallel():
        s.step("a", duration=1)
        s.step("b", duration=1)
    return runs(p, [{"a": float(x), "b": float(y)} for x, y in zip(a, b)]), list(a), list(b)


def test_a_planted_shift_off_the_critical_path_is_found_and_costs_nothing():
    h, _, b = planted(1.0, 1.3)
    table = h.pipeline.regressions(window=20)
    assert list(table["name"]) == ["b"]  # a (noise only) is not reported
    row = table.iloc[0]
    assert row["run_id"] == "r30"  # every run after is slower than every run before: U = 20 × 20
    assert (row["u"], row["effect"]) == (400.0, 1.0)
    # shift: median of b[30:50] − median of b[10:30]
    assert row["shift_s"] == pytest.approx(np.median(b[30:50]) - np.median(b[10:30]))
    assert row["shift_pct"] == pytest.approx(row["shift_s"] / np.median(b[10:30]))
    assert 0.25 < row["shift_pct"] < 0.35
    # b (about 65 s) still ends long before a (about 100 s): never critical, no seconds of makespan
    assert (row["criticality"], row["makespan_effect_s"]) == (0.0, 0.0)


def test_a_planted_shift_on_the_critical_path_is_attributed_to_the_makespan():
    h, a, _ = planted(1.3, 1.0)
    table = h.pipeline.regressions(window=20)
    steps = table[table["kind"] == "step"]
    assert list(steps["name"]) == ["a"]
    assert table.index[0].endswith("steps.a")  # the step before the stage that holds it
    row = steps.iloc[0]
    assert row["run_id"] == "r30"
    shift = np.median(a[30:50]) - np.median(a[10:30])
    assert row["criticality"] == 1.0
    assert row["makespan_effect_s"] == pytest.approx(shift)  # all of it: a decides the makespan
    assert table.attrs["makespan"]["run_id"] == "r30"


def test_noise_alone_gives_no_regression():
    h, _, _ = planted(1.0, 1.0)
    assert h.pipeline.regressions(window=20).empty


def test_flaky_on_a_same_commit_fail_then_pass():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("steady", duration=1)
        s.step("t", duration=2, failure_strategies=nbp.Retry(1))
    h = pd.concat(
        [
            p.simulate(run_id="r0", failures={"t": 2}),  # c1: t fails twice: the run fails
            p.simulate(run_id="r1"),  # c1: t passes
            p.simulate(run_id="r2", failures={"t": 1}),  # c2: t fails, the retry passes
            p.simulate(run_id="r3"),  # c3: t passes
        ],
        ignore_index=True,
    )
    h["commit"] = h["run_id"].map({"r0": "c1", "r1": "c1", "r2": "c2", "r3": "c3"})
    table = by_name(h.pipeline.flaky())
    t = table.loc["t"]
    # both outcomes on c1 (across runs) and on c2 (within r2); c3 only passed
    assert (t["commits"], t["flaky_commits"], bool(t["flaky"])) == (3, 2, True)
    assert (t["failed_runs"], t["retried_runs"], t["passed_after_retry"]) == (1, 2, 1)
    assert "steady" not in table.index  # never failed
    assert table.index[0] == "t" or table.loc[table.index[0], "flaky_commits"] >= 2


def test_compare_two_slices_names_the_node_that_explains_the_change(three):
    before = fork().simulate(durations={"a": 10, "b": 5, "c": 2}, run_id="x0")
    after = fork().simulate(durations={"a": 14, "b": 5, "c": 2}, run_id="x1")
    h = pd.concat([before, after], ignore_index=True)
    table = by_name(h.pipeline.compare(["x0"], ["x1"]))
    # a goes from 10 to 14 on the path: it explains all 4 s of the change (12 → 16)
    assert table.index[0] == "a" or table.loc["a", "explains_s"] == 4.0
    assert table.loc["a", "explains_s"] == 4.0
    assert table.loc["b", "explains_s"] == 0.0
    assert table.loc["a", "change_p50_s"] == 4.0
    assert table.attrs["makespan_p50_s"] == (12.0, 16.0)
    with pytest.raises(nbp.TraceError, match="selects no run"):
        h.pipeline.compare(["nope"], ["x1"])


def test_trend_per_day():
    h = runs(fork(), [{"a": 10}, {"a": 20}, {"a": 30}, {"a": 7}])
    days = {
        "r0": "2026-03-01 09:00",
        "r1": "2026-03-01 18:00",
        "r2": "2026-03-02 09:00",
        "r3": "2026-03-02 10:00",
    }
    h["created"] = pd.to_datetime(h["run_id"].map(days)).dt.tz_localize("UTC")
    table = h.pipeline.trend(nodes="a")
    # day 1: 10, 20 → p50 15, p95 at 0.95 → 10 + 0.95 × 10 = 19.5; day 2: 30, 7 → p50 18.5
    assert table["p50_s"].tolist() == [15.0, 18.5]
    assert table["p95_s"].tolist() == pytest.approx([19.5, 7 + 0.95 * 23])
    assert table["runs"].tolist() == [2, 2]
    with pytest.raises(nbp.TraceError, match="no node 'zz'"):
        h.pipeline.trend(nodes="zz")


def test_iterations_fold_into_their_looped_node():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("m", duration=3, strategy=nbp.Matrix(x=[1, 2]))
    h = runs(p, [{}, {}])
    folded = h.pipeline.step_stats()
    assert [f.rsplit(".", 1)[-1] for f in folded.index if folded.loc[f, "kind"] == "step"] == ["m"]
    each = h.pipeline.step_stats(iterations=True)
    assert sorted(f.rsplit(".", 1)[-1] for f in each.index if each.loc[f, "kind"] == "step") == [
        "m_0",  # a looped step's own row holds its iterations: the iterations are the steps
        "m_1",
    ]


def test_the_vectorised_paths_are_the_schedules_on_every_run():
    h = nbp.read_history(DATA)
    p = nbp.Pipeline("release")  # retries, a group, parallel stages, a loop
    with p.stage("build") as s:
        s.step("compile", duration=10)
        with s.step_group("tests") as g:
            with g.parallel():
                g.step("unit", duration=30)
                g.step("lint", duration=5, strategy=nbp.Matrix(v=[1, 2]))
            g.step("e2e", duration=20, failure_strategies=nbp.Retry(1, intervals="5s"))
    with p.parallel():
        with p.stage("us") as us:
            us.step("ship_us", duration=15)
        with p.stage("eu") as eu:
            eu.step("ship_eu", duration=12)
    sims = [p.simulate(failures={"e2e": 1}, durations={"unit": u}, run_id=f"s{u}") for u in (3, 30, 60)]
    w = nbp.Pipeline("window")  # R54: a loop's iterations wait for a slot of maxConcurrency 2
    with w.stage("s") as s:
        s.step("c", duration=1, strategy=nbp.Repeat(items=[1, 2, 3, 4, 5], max_concurrency=2))
        s.step("d", duration=1)
    uneven = {"c_0": 2, "c_1": 1, "c_2": 3, "c_3": 1, "c_4": 4}
    sims += [w.simulate(durations=uneven, run_id="w0"), w.simulate(run_id="w1")]
    for history in [h, pd.concat(sims, ignore_index=True)]:
        flows = path_flows(history)
        share = pd.Series(flows.step_on_path, index=flows.rows.index)
        runs_of = flows.rows["run_id"].astype(str)
        for run_id, one in history.groupby("run_id", sort=False):
            mine = share[runs_of == str(run_id)]
            path = set(critical_path(one).index)
            # the Schedule picks one of tied predecessors; here the tied ones share the path: the
            # steps on every path are on its, and its steps are on ours (whole, or a share)
            assert set(mine.index[mine > 1 - 1e-9]) <= path <= set(mine.index[mine > 0]), run_id
            if (mine[mine > 0] > 1 - 1e-9).all():  # no tie in this run: the same path exactly
                assert path == set(mine.index[mine > 0]), run_id
        # per run, the edges walked give the makespan, second for second
        total = np.zeros(len(flows.runs))
        np.add.at(total, flows.run[flows.owner], flows.gap * flows.flow)
        assert total == pytest.approx(flows.makespan)


def test_one_run_behaves_as_before_and_several_pipelines_are_refused():
    trace = fork().simulate(run_id="one")
    assert list(trace.pipeline.critical_path()["step"]) == ["a", "c"]  # a ties b: the earlier row
    h = nbp.read_history(DATA)
    with pytest.raises(nbp.TraceError, match="one pipeline; this one holds 3"):
        h.pipeline.criticality()


def test_shipped_history_answers():
    h = nbp.read_history(DATA)
    github = h[h.source == "github"]
    top = github.pipeline.criticality()
    steps = top[top["kind"] == "step"]
    assert steps.sort_values("owned_s", ascending=False)["name"].iloc[0] == "Run_make"  # the build
    shifts = github.pipeline.regressions()
    assert shifts["name"].iloc[0] == "Run_make_integration"
    assert str(shifts["change_at"].iloc[0].date()) == "2026-02-16"
    assert github.pipeline.flaky()["name"].iloc[0] == "unit"


def test_render_colours_the_structure_by_criticality_with_the_figures_in_the_labels(three):
    source = fork().render(three, color_by="criticality").source
    # a: critical in ½ of 3 runs (bin 40–60 %); c: every run (bin 80–100 %)
    assert 'label="a\\ncritical 50%\\np50 6s · p95 9.6s" fillcolor="#ffcc80"' in source  # 4, 6, 10 → p95 9.6
    assert 'label="c\\ncritical 100%' in source and 'fillcolor="#b71c1c"' in source
    assert "3 runs\\nmakespan p50 10s" in source  # the title: one fact a line
    failure = fork().render(three, color_by="failure_rate").source
    assert "failure_rate" in failure
    with pytest.raises(ValueError, match="colours one run"):
        fork().render(three, color_by="slack")


def test_summary_gantt_and_trend_figures(three):
    figure = three.pipeline.gantt(summary=True)
    ax = figure.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["s / a", "s / b", "s / c"]  # by median start (0, 0, 10), then plan order
    bars = ax.patches
    # a: median of 10, 4, 6 = 6; b: of 5, 8, 6 = 6; c starts at median(10, 8, 6) = 8, takes 2
    assert [(b.get_x(), b.get_width()) for b in bars] == [(0.0, 6.0), (0.0, 6.0), (8.0, 2.0)]
    three = three.assign(created=pd.Timestamp("2026-03-01", tz="UTC"))
    trend = three.pipeline.plot_trend(nodes=["a", "c"])
    assert [a.get_title(loc="left") for a in trend.axes if a.get_visible()] == ["s / a", "s / c"]
    assert trend._repr_png_()[:4] == b"\x89PNG"


def test_cli_history_report_prints_and_writes_html(tmp_path, capsys):
    from notebook_pipelines.frontends.cli import main

    out = tmp_path / "report.html"
    assert main(["history", "report", DATA, "--source", "github", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].startswith("octo/shop/ci.yml (github): 120 runs, 2026-01-05 – 2026-03-05")
    assert lines[3].split()[:3] == ["build", "/", "Run_make"]  # owns the most of the path
    assert "integration / Run_make_integration: +49%" in text and "from 2026-02-16" in text
    assert "unit: both outcomes on 26 of 120 commits; 26 runs passed after a retry" in text
    page = out.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 2 and "<svg" in page  # Gantt, trends, picture
    assert main(["history", "report", DATA, "-o", str(tmp_path / "r.txt")]) == 2
    assert "must end in .html" in capsys.readouterr().err


def test_explore_a_history_pick_a_node_then_a_run():
    h = nbp.read_history(DATA)
    github = h[h.source == "github"]
    explorer = nbp.explore(github)
    assert repr(explorer) == "<explorer of a history: 120 runs>"
    integration = "pipeline.stages.integration.spec.execution.steps.Run_make_integration"
    explorer.node.value = integration
    assert "critical in</td><td>78% of runs" in explorer.node_details.value
    assert explorer.node_chart.value[:4] == b"\x89PNG"
    unit = "pipeline.stages.unit"
    explorer.node.value = unit
    assert "runs where it failed or was retried</b> (20 shown)" in explorer.node_details.value  # 26 retried
    explorer.run.value = "9003"  # the run whose unit job failed and was re-run
    assert "<svg" in explorer.picture.value
    assert explorer.gantt.value[:4] == b"\x89PNG"
    one = github[github.run_id == "9003"]
    assert type(nbp.explore(one)).__name__ == "Explorer"  # one run: the trace explorer, as before


def test_an_empty_history_gives_empty_tables():
    from notebook_pipelines.formats.history import empty_history

    empty = empty_history()
    for table in (
        empty.pipeline.step_stats(),
        empty.pipeline.criticality(),
        empty.pipeline.regressions(),
        empty.pipeline.flaky(),
    ):
        assert table.empty
