"""Harness durations (R59): units w, d, h, m, s, ms; plain numbers are seconds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from notebook_pipelines.definition.durations import (
    MAX_SECONDS,
    DurationError,
    DurationTooLong,
    format_duration,
    parse_duration,
)


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


# -- hostile input: issue 11 ----------------------------------------------------------------------
@pytest.mark.parametrize("too_long", [1e10, 3.2e9, "5300w", "36600d", "1000000h", "3200000000"])
def test_durations_longer_than_100_years_are_refused_before_they_corrupt_trace_timestamps(too_long):
    with pytest.raises(DurationTooLong) as info:
        parse_duration(too_long, where="pipeline.stages.s.spec.execution.steps.a")
    text = str(info.value)
    assert isinstance(info.value, DurationError)
    assert repr(too_long) in text and "pipeline.stages.s.spec.execution.steps.a" in text
    assert "limit of 100 years" in text and "give a shorter duration" in text


def test_the_100_year_limit_itself_is_accepted():
    assert MAX_SECONDS == 100 * 365.25 * 86400
    assert parse_duration(MAX_SECONDS) == MAX_SECONDS
    assert parse_duration("5200w") == 5200 * 604800


_LONG_DIGITS = """
import sys
sys.path.insert(0, sys.argv[1])
from notebook_pipelines.definition.durations import DurationError, parse_duration

for text in ("1" * 200_000 + "x", "1s " * 50_000 + "x", "1s " * 50_000):
    try:
        print(parse_duration(text))
    except DurationError as err:
        print("refused", str(err)[:24])
"""


def test_duration_parsing_is_linear_time_on_long_runs_of_digits():
    # a search for each part (finditer) retried every start: quadratic, minutes for 200k digits
    root = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-c", _LONG_DIGITS, root], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "refused cannot read the duration",
        "refused cannot read the duration",
        "50000.0",
    ]


def test_a_duration_text_is_read_once_per_distinct_value(monkeypatch):
    # R59: validation, the compiler and the engine each read a node's durations; a pipeline
    # repeats a few texts on many nodes, so each distinct text is parsed once, then remembered
    from notebook_pipelines import Pipeline
    from notebook_pipelines.definition import durations

    calls: list[str] = []
    parts = durations._parts
    monkeypatch.setattr(durations, "_parts", lambda text: calls.append(text) or parts(text))
    monkeypatch.setattr(durations, "_PARSED", {})
    p = Pipeline("many")
    with p.stage("s") as s:
        for i in range(50):
            s.step(f"a{i}", duration="1m 30s", timeout="7m 13s")
    trace = p.simulate()
    assert sorted(calls) == ["1m 30s", "7m 13s"]
    assert set(trace.loc[trace["kind"] == "step", "duration_s"]) == {90.0}


def test_remembered_durations_keep_refusing_bad_values(monkeypatch):
    # R59: only valid texts are remembered; a bad one is refused, with its message, every time
    from notebook_pipelines.definition import durations

    monkeypatch.setattr(durations, "_PARSED", {})
    monkeypatch.setattr(durations, "_PARSED_MAX", 3)
    for _ in range(2):
        with pytest.raises(DurationError, match="cannot read the duration 'soon' in t"):
            parse_duration("soon", "t")
    assert durations._PARSED == {}
    assert [parse_duration(t) for t in ("1s", "2s", "3s", "4s", "1s")] == [1.0, 2.0, 3.0, 4.0, 1.0]
    assert len(durations._PARSED) <= 3  # bounded: full, it starts over
    assert parse_duration(" 1s ") == 1.0 and parse_duration(2) == 2.0 and parse_duration(2.5) == 2.5
    for bad in (True, float("nan"), float("inf"), -1, -0.5, MAX_SECONDS * 2, "10x"):
        with pytest.raises(DurationError):
            parse_duration(bad)
