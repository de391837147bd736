"""Harness durations (R59): units w, d, h, m, s, ms; plain numbers are seconds."""

from __future__ import annotations

import pytest

from notebook_pipelines.definition.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("10s", 10.0), ("1m 30s", 90.0), ("1h", 3600.0), ("2d", 172800.0), ("1w", 604800.0),
     ("1h 1m 1s 1ms", 3661.001), ("1.5m", 90.0), (" 5s ", 5.0), (7, 7.0), (0.5, 0.5), ("3", 3.0)],
)  # fmt: skip
def test_R59_harness_durations_read_as_seconds(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


def test_no_duration_is_no_limit():
    assert parse_duration(None) is None


@pytest.mark.parametrize(
    "bad", ["", "ten seconds", "10x", "1m30", "-5s", -1, True, float("nan"), float("inf"), "1e400", "nan"]
)
def test_R59_unreadable_durations_name_the_value_and_the_accepted_forms(bad):
    with pytest.raises(DurationError) as info:
        parse_duration(bad, where="pipeline.stages.s.spec.execution.steps.a")
    text = str(info.value)
    assert repr(bad) in text and "pipeline.stages.s.spec.execution.steps.a" in text and "'1m 30s'" in text


def test_durations_format_for_people():
    assert [format_duration(s) for s in (0.25, 5, 90.5, 3600, 3725)] == [
        "250ms",
        "5s",
        "1m 30.5s",
        "1h",
        "1h 2m 5s",
    ]
    assert format_duration(None) == "" and format_duration(float("nan")) == ""
