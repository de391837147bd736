"""``trace.pipeline.table()``: a trace shown cleanly, the DataFrame unchanged (issue 17).

Real runs (thread executor) for logs, seeded simulations for the rest.
"""

from __future__ import annotations

import pandas as pd
import pytest

import notebook_pipelines as nbp
from notebook_pipelines.views.tables import NONE, TraceTable

LONG = "x" * 300  # beyond pandas' display.max_colwidth (50)


def traced() -> pd.DataFrame:
    def talk() -> None:
        print("line one")
        print("line two")

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("talk", run=talk)
        s.step("fail", run=lambda: (_ for _ in ()).throw(RuntimeError(LONG)))
        s.step("after", run=lambda: None)  # default condition: skipped after the failure (R29)
    return p.run(run_id="table")


def test_the_dataframe_is_unchanged_and_the_view_holds_the_chosen_columns():
    trace = traced()
    before = trace.copy()
    table = trace.pipeline.table(["step", "status", "log"])
    pd.testing.assert_frame_equal(trace, before)
    assert list(table.frame.columns) == ["step", "status", "log"]
    pd.testing.assert_frame_equal(table.frame, trace[["step", "status", "log"]])


def test_one_marker_for_none_whatever_the_dtype():
    trace = traced()
    columns = ["step", "step_group", "block", "start_s", "outputs", "error_type"]  # str, Int64, float, object
    text = str(trace.pipeline.table(columns))
    assert "NaN" not in text and "<NA>" not in text and "None" not in text and "NaT" not in text
    assert NONE in text
    html = trace.pipeline.table(columns)._repr_html_()
    assert "NaN" not in html and "&lt;NA&gt;" not in html and NONE in html


def test_logs_keep_their_line_breaks_in_html_and_read_as_one_row_in_text():
    table = traced().pipeline.table(["step", "log"])
    html = table._repr_html_()
    assert "line one\nline two" in html and "pre-wrap" in html  # shown as two lines, not "\n"
    text = str(table)
    assert "line one ⏎ line two" in text and "\\n" not in text
    assert len(text.splitlines()) == len(table.frame) + 1  # header + one line per row


def test_long_texts_are_not_cut():
    trace = traced()
    assert LONG in trace.loc[trace.step == "fail", "error"].iloc[0]
    table = trace.pipeline.table(["step", "error"])
    assert LONG in str(table) and LONG in table._repr_html_()
    assert "..." not in str(table) and "…" not in str(table)


def test_html_escapes_text_and_uses_inline_styles_only():
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", duration="1s", when={"stageStatus": "Success", "condition": "1 < 0"})
    html = p.simulate().pipeline.table(["step", "reason"])._repr_html_()
    assert "1 &lt; 0" in html and "<style" not in html  # untrusted notebooks keep inline styles


def test_default_columns_and_a_clear_error_for_an_unknown_column():
    p = nbp.Pipeline("p")
    p.stage("s").step("a", duration="1s")
    trace = p.simulate()
    assert list(TraceTable(trace).frame.columns)[:3] == ["stage", "step_group", "step"]
    with pytest.raises(KeyError, match=r"no column 'stauts'.*the trace has: run_id"):
        trace.pipeline.table(["stauts"])
