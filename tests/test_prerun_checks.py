"""The pre-run checks of a real run (validation and compilation, handlers for typed steps, the
nesting of runs) are made once per ``run()`` / ``start()``, in one place
(``engine.running.prepare``)."""

import collections

import pytest

import notebook_pipelines as nbp
from notebook_pipelines.definition import plan as plan_module
from notebook_pipelines.engine import running, steptypes


@pytest.fixture
def counted(monkeypatch):
    """How many times each pre-run check ran."""
    counts = collections.Counter()

    def counting(module, name):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            counts[name] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    counting(plan_module, "compile_plan")
    counting(steptypes, "check_runnable")
    counting(running, "nesting")
    return counts


def _pipeline():
    p = nbp.Pipeline("checked_once")
    with p.stage("s") as s:
        s.step("a", run=lambda: None)
    return p


@pytest.mark.parametrize("how", ["run", "start", "run plan", "Pipeline.run"])
def test_pre_run_checks_run_once(counted, how):
    p = _pipeline()
    if how == "run":
        trace = nbp.run(p, progress=False)
    elif how == "start":
        trace = nbp.start(p, progress=False).wait(timeout=30)
    elif how == "run plan":
        trace = nbp.run(p.plan(), progress=False)
    else:
        trace = p.run(progress=False)
    assert set(trace["status"]) == {"Success"}
    assert counted == {"compile_plan": 1, "check_runnable": 1, "nesting": 1}


def test_a_refused_run_is_refused_before_it_starts(counted):
    p = nbp.Pipeline("typed")
    with p.stage("s") as s:
        s.step("deploy", type="NoSuchStepType")
    with pytest.raises(nbp.DefinitionError, match="NoSuchStepType"):
        nbp.start(p, progress=False)
    assert counted["check_runnable"] == 1
