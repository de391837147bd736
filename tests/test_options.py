"""simulate()'s options as the front-ends and the what-if helpers pass them on (analysis/options.py)."""

from __future__ import annotations

import pytest

from notebook_pipelines.analysis.options import in_flags, parse_failure, parse_failures, run_options
from notebook_pipelines.engine.simulation import SimulationError


def test_parse_failure_forms():
    assert parse_failure("unit") == ("unit", True)
    assert parse_failure("unit:2,1") == ("unit", [1, 2])
    assert parse_failure("unit:Timeout") == ("unit", {"attempts": True, "error_type": "Timeout"})


def test_fail_specs_for_one_step_merge():
    assert parse_failures(["flaky:1", "flaky:3:Timeout", "forced"]) == {
        "flaky": {"attempts": [1, 3], "error_type": "Timeout"},
        "forced": True,
    }
    assert parse_failures(["flaky:2", "flaky"]) == {"flaky": True}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (":1", "--fail ':1': name a step, e.g. --fail unit or --fail unit:1,2"),
        ("unit:0", "--fail 'unit:0': attempts count from 1"),
        ("unit:soon", "--fail 'unit:soon': 'soon' is neither attempt numbers (1,2) nor an error type"),
    ],
)
def test_a_bad_fail_spec_is_a_simulation_error_naming_the_spec(spec: str, message: str):
    with pytest.raises(SimulationError) as info:
        parse_failure(spec)
    assert str(info.value).startswith(message)


def test_a_long_fail_spec_is_shown_as_an_excerpt():
    with pytest.raises(SimulationError) as info:
        parse_failure("unit:" + "x" * 10_000)
    message = str(info.value)
    assert "x" * 100 not in message and len(message) < 700


def test_option_errors_are_worded_with_their_flags():
    assert in_flags(SimulationError("durations: no step matches 'x'")) == "--durations: no step matches 'x'"
    assert in_flags(SimulationError("default=-1: …")) == "--default -1: …"


def test_run_options_refuses_an_unknown_name_and_lists_the_known_ones():
    assert run_options("f()", {"outputs": {}}) == {"outputs": {}}
    with pytest.raises(
        SimulationError,
        match=r"f\(\): no option 'seeds'; the options are durations, default, "
        r"failures, interventions, outputs, seed$",
    ):
        run_options("f()", {"seeds": 1}, also=("seed",))
