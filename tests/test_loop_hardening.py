"""Odd values reaching the scheduler's loop, and what a run does when something escapes it.

The rules (``engine/semantics.py`` and its helpers) run on the scheduler's loop and read values
the user's code made: a condition's result, output variables a body set, a looping strategy's
run-time items, an intervention's answer. Each odd value below (a NumPy array, an object whose
``__bool__``/``__eq__``/``__hash__``/``__str__``/``__repr__`` raises, a huge mapping) used to
raise out of a node's generator, which lost the whole run (no trace, ``last_trace()`` stale);
each now fails its node with a clear, bounded error naming it, and the run goes on.

The second half is the safety net: whatever still escapes a node's generator (or a callback
the loop runs) aborts the run as an abort does, records an ``Errored`` row for that node, and
``run()``/``simulate()`` raise ``RunFailed`` carrying the complete trace, chained to the
original exception. Faults are injected through a real seam (one rules method made to raise
for one named node), never by mocking the scheduler.
"""

from __future__ import annotations

import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import finishes, row, status

import notebook_pipelines as nbp
from notebook_pipelines.engine.executors.threads import ThreadExecutor, default_pool
from notebook_pipelines.engine.steptypes import register_step_type, unregister_step_type
from notebook_pipelines.errors import MESSAGE_LIMIT

OUT = "<+execution.steps.a.output.outputVariables.x>"


class BadStr:
    """A value that cannot be shown: its ``__str__`` and ``__repr__`` raise."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class BadBool:
    def __bool__(self) -> bool:
        raise RuntimeError("no bool")


class BadEq:
    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")

    __hash__ = object.__hash__


class BadHash:
    def __hash__(self) -> int:
        raise RuntimeError("no hash")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")


class Unshowable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


def publishes(value: Any) -> Callable[[nbp.StepContext], None]:
    def body(ctx: nbp.StepContext) -> None:
        ctx.outputs["x"] = value

    return body


def then(value: Any, **b: Any) -> nbp.Pipeline:
    """``a`` publishes ``x = value``; ``b`` (with ``b``'s options) reads it; ``c`` runs after."""
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=publishes(value), outputs=["x"])
        s.step("b", run=lambda ctx, **kw: None, **b)
        s.step("c", run=lambda ctx: None, when="All")
    return p


def both(p: nbp.Pipeline, value: Any) -> list[tuple[str, Any]]:
    """The trace of a real run and of a simulation (``a`` publishing ``value`` in each); each
    must be ``last_trace()`` when it is returned."""
    out = []
    trace = finishes(lambda: p.run(progress=False, report=False))
    assert nbp.last_trace() is trace
    out.append(("run", trace))
    trace = p.simulate(outputs={"a": {"x": value}})
    assert nbp.last_trace() is trace
    out.append(("simulate", trace))
    return out


def failed_with(trace: Any, key: str) -> str:
    """The error of node ``key``, which must have Failed; ``c`` (after it, ``when: All``) ran."""
    assert status(trace, key) == "Failed", trace[["fqn", "status", "error"]]
    assert status(trace, "c") == "Success"
    error = str(row(trace, key)["error"])
    assert len(error) < 2 * MESSAGE_LIMIT + 400, len(error)
    return error


# -- item 1: odd values, each failing its node with a clear error ------------------------------------
@pytest.mark.parametrize(
    ("value", "shown"),
    [(np.array([1, 2]), "ValueError: The truth value of an array"), (BadBool(), "RuntimeError: no bool")],
)
def test_R28_a_condition_giving_a_value_neither_true_nor_false_fails_its_node(value: Any, shown: str):
    """``when=lambda ctx: array`` (or an expression reading such an output) used to raise
    ValueError out of the step's generator: the run lost its trace."""
    for how, trace in both(then(value, when=lambda ctx: value), value):
        error = failed_with(trace, "b")
        assert error.startswith("pipeline.stages.s.spec.execution.steps.b: the condition "), (how, error)
        assert "which is neither true nor false" in error and shown in error, (how, error)
    for how, trace in both(then(value, when=OUT), value):
        error = failed_with(trace, "b")
        assert "which is neither true nor false" in error and shown in error, (how, error)
        assert "in pipeline.stages.s.spec.execution.steps.b at position 0" in error, (how, error)
        assert error.splitlines()[1].strip() == OUT


def test_R28_a_condition_raising_an_unshowable_or_huge_error_fails_its_node_with_a_bounded_message():
    def unshowable(ctx: nbp.StepContext) -> bool:
        raise Unshowable()

    def huge(ctx: nbp.StepContext) -> bool:
        raise ValueError("x" * 1_000_000)

    for how, trace in both(then(1, when=unshowable), 1):
        error = failed_with(trace, "b")
        assert error == "the condition raised Unshowable: (its message could not be shown)", how
    for how, trace in both(then(1, when=huge), 1):
        error = failed_with(trace, "b")
        assert error.startswith("the condition raised ValueError: xxx"), how
        assert len(error) < 500, (how, len(error))


def test_R28_R18_a_condition_or_retry_condition_calling_sys_exit_fails_its_node_the_run_goes_on():
    """``sys.exit()`` in a Python condition (it runs on the loop's thread) is that condition's
    failure, as it is a body's: the run keeps going and keeps its trace."""

    def leaves(ctx: Any) -> bool:
        sys.exit(3)

    for how, trace in both(then(1, when=leaves), 1):
        assert failed_with(trace, "b") == "the condition raised SystemExit: 3", how

    def fails() -> None:
        raise ValueError("boom")

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=fails, failure_strategies=nbp.Retry(2, condition=lambda outcome: sys.exit(4)))
    trace = p.run(progress=False, report=False)
    assert nbp.last_trace() is trace
    assert status(trace, "a") == "Failed"  # the retry condition failed: no retry (D13)
    assert len(trace[trace["fqn"].str.endswith(".a")]) == 1
    assert "the retry condition failed: SystemExit: 4" in str(row(trace, "a")["error"])


def test_R33_an_equality_on_a_value_whose_eq_raises_fails_with_the_operator_s_position():
    condition = f"{OUT} == {OUT}"
    for how, trace in both(then(BadEq(), when=condition), BadEq()):
        error = failed_with(trace, "b")
        assert error.startswith("a value's own method raised RuntimeError: no eq in "), (how, error)
        assert f"at position {condition.index('==')}:" in error, (how, error)


@pytest.mark.parametrize("text", [f"v={OUT}", f"<+{OUT}.length()>"])
def test_R43_an_input_built_from_a_value_that_cannot_be_shown_fails_the_step(text: str):
    """An input's template that renders an object whose ``__str__`` raises used to raise out
    of the step's generator."""
    for how, trace in both(then(BadStr(), inputs={"i": text}), BadStr()):
        error = failed_with(trace, "b")
        assert error.startswith("input 'i': "), (how, error)
        assert "RuntimeError: no str in pipeline.stages.s.spec.execution.steps.b at position" in error, how


def looped(strategy: Any, value: Any, **b: Any) -> nbp.Pipeline:
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=publishes(value), outputs=["x"])
        s.step("b", run=lambda ctx, **kw: None, strategy=strategy, **b)
        s.step("c", run=lambda ctx: None, when="All")
    return p


@pytest.mark.parametrize(
    ("strategy", "value", "expected"),
    [
        (nbp.Repeat(items=OUT), BadStr(), "repeat items resolved to <BadStr instance at 0x"),
        (nbp.Repeat(times=OUT), BadStr(), "repeat times resolved to <BadStr instance at 0x"),
        (nbp.Parallelism(OUT), BadStr(), "parallelism resolved to <BadStr instance at 0x"),
        (nbp.Repeat(items=OUT), {i: i for i in range(200_000)}, "repeat items resolved to {0: 0, 1: 1, 2: 2"),
    ],
)
def test_R50_a_run_time_looping_value_that_cannot_be_shown_or_is_huge_fails_the_node_bounded(
    strategy: Any, value: Any, expected: str
):
    """The error used to show ``repr(value)``: raising when that raised (the run was lost), or
    megabytes long for a large mapping."""
    for how, trace in both(looped(strategy, value), value):
        error = failed_with(trace, "b")
        assert error.startswith(f"pipeline.stages.s.spec.execution.steps.b: {expected}"), (how, error)
        assert len(error) < 300, (how, len(error))


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ([np.array([1, 2]), np.array([3, 4])], "ValueError: The truth value"),
        ([BadHash()], "RuntimeError: no"),
    ],
)
def test_R49_matrix_values_that_cannot_be_compared_with_exclude_fail_the_node(value: Any, shown: str):
    strategy = nbp.Matrix(axes={"a": OUT, "b": [1]}, exclude=[{"a": 5, "b": 1}])
    for how, trace in both(looped(strategy, value), value):
        error = failed_with(trace, "b")
        assert "cannot be compared with the exclude entries" in error and shown in error, (how, error)


def test_R53_a_node_name_whose_value_cannot_be_shown_keeps_the_default_name():
    """``str()`` of the ``nodeName`` value used to raise out of the looped node's generator;
    the name is only for display: the iteration runs under its default name."""
    strategy = nbp.Matrix(axes={"a": OUT}, node_name="<+matrix.a>")
    for how, trace in both(looped(strategy, [BadStr()]), [BadStr()]):
        assert (status(trace, "b_0"), status(trace, "b"), status(trace, "c")) == ("Success",) * 3, how


def test_R18_a_retry_condition_raising_an_unshowable_error_fails_the_step():
    def fail(ctx: nbp.StepContext) -> None:
        raise nbp.StepError("boom")

    def condition(outcome: Any) -> bool:
        raise Unshowable()

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=fail, failure_strategies=[nbp.OnFailure(action=nbp.Retry(2, condition=condition))])
    trace = finishes(lambda: p.run(progress=False, report=False))
    assert nbp.last_trace() is trace
    assert status(trace, "a") == "Failed"
    unshown = "Unshowable: (its message could not be shown)"
    assert row(trace, "a")["error"] == f"boom\nthe retry condition failed: {unshown}"


class OddText(str):
    """An answer equal to an offered choice whose hash raises (a dict lookup of it fails)."""

    def __hash__(self) -> int:
        raise RuntimeError("no hash")

    __eq__ = str.__eq__


def test_R20_an_answer_given_as_a_str_subclass_is_taken_as_the_choice_offered():
    def fail(ctx: nbp.StepContext) -> None:
        raise nbp.StepError("boom")

    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=fail, failure_strategies=[nbp.OnFailure(action=nbp.ManualIntervention(timeout="1m"))])
    answer = lambda request: request.answer(OddText("MarkAsSuccess"))  # noqa: E731
    trace = finishes(lambda: p.run(progress=False, report=False, on_intervention=answer))
    assert nbp.last_trace() is trace
    assert (status(trace, "a"), row(trace, "a")["action"]) == ("Success", "MarkAsSuccess")
    assert not [t for t in threading.enumerate() if t.name.startswith("nbp-intervention") and t.is_alive()]


# -- item 2: the safety net ------------------------------------------------------------------------
def slow(ctx: nbp.StepContext) -> None:
    ctx.sleep(30)  # until the run tells it to stop


def wide() -> nbp.Pipeline:
    """Stage ``s``: a parallel block (``long``, told to stop; group ``g`` of ``a``, ``b``, ``c``),
    then ``d``; stage ``s2`` with ``e``. ``b``'s condition is evaluated (a real expression)."""
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        with s.parallel():
            s.step("long", run=slow, duration=60)
            with s.step_group("g") as g:
                g.step("a", run=lambda ctx: ctx.sleep(0.05))
                g.step("b", run=lambda ctx: None, when="<+pipeline.name> == 'p'")
                g.step("c", run=lambda ctx: None)
        s.step("d", run=lambda ctx: None)
    with p.stage("s2") as s2:
        s2.step("e", run=lambda ctx: None)
    return p


@pytest.fixture
def rules_break_at_b(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fault in the rules, for this test only: deciding whether ``b`` runs raises."""
    from notebook_pipelines.engine.semantics import Rules

    decide = Rules._should_run

    def broken(self: Rules, node: Any, scope: Any, status_only: bool = False) -> Any:
        if node.id == "b":
            raise ZeroDivisionError("injected into the rules")
        return decide(self, node, scope, status_only)

    monkeypatch.setattr(Rules, "_should_run", broken)


def internal_error(how: str, call: Callable[[], Any]) -> nbp.RunFailed:
    """What ``call`` raised: a RunFailed chained to the injected error, its trace last_trace()."""
    with pytest.raises(nbp.RunFailed) as info:
        finishes(call)
    err = info.value
    assert isinstance(err.__cause__, ZeroDivisionError), (how, repr(err.__cause__))
    assert str(err.__cause__) == "injected into the rules"
    assert nbp.last_trace() is err.trace, how
    return err


def test_an_exception_escaping_a_node_s_generator_aborts_the_run_and_keeps_its_trace(
    rules_break_at_b: None, no_worker_leak: None
):
    p = wide()
    fqn = "pipeline.stages.s.spec.execution.steps.g.steps.b"
    started = time.monotonic()
    err = internal_error("run", lambda: p.run(progress=False, report=False))
    assert time.monotonic() - started < 10  # `long` was told to stop, not waited for (30 s)
    assert str(err).startswith(f"run of 'p' aborted at {fqn}: internal error of notebook-pipelines")
    assert "ZeroDivisionError: injected into the rules" in str(err)
    assert "nbp.last_trace()" in str(err)
    trace = err.trace
    assert sorted(trace["fqn"]) == sorted(n.fqn for n in p.plan().nodes)  # D5/D6: every node, once
    b = row(trace, "b")
    assert b["status"] == "Errored"
    assert b["error"].startswith("internal error of notebook-pipelines (please report it")
    assert b["error"].endswith("ZeroDivisionError: injected into the rules")
    got = {key: status(trace, key) for key in ("a", "long", "c", "g", "d", "s", "e", "s2")}
    assert got == {
        "a": "Success",  # ended before
        "long": "Aborted",  # running: told to stop (E15)
        "c": "NotStarted",  # after b in the dead group: never ran
        "g": "Aborted",
        "d": "NotStarted",
        "s": "Aborted",
        "e": "NotStarted",
        "s2": "NotStarted",
    }
    assert str(row(trace, "pipeline")["status"]) == "Aborted"
    assert "ZeroDivisionError: injected into the rules" in row(trace, "e")["reason"]
    # the kernel stays usable: the next run (without the fault) works, and no worker is busy
    assert default_pool().busy == 0


def test_after_an_internal_error_the_next_run_succeeds(monkeypatch: pytest.MonkeyPatch):
    from notebook_pipelines.engine.semantics import Rules

    decide = Rules._should_run
    calls: list[str] = []

    def broken_once(self: Rules, node: Any, scope: Any, status_only: bool = False) -> Any:
        if node.id == "b" and not calls:
            calls.append(node.id)
            raise ZeroDivisionError("injected into the rules")
        return decide(self, node, scope, status_only)

    monkeypatch.setattr(Rules, "_should_run", broken_once)
    p = two_stages()
    internal_error("run", lambda: p.run(progress=False, report=False))
    trace = finishes(lambda: p.run(progress=False, report=False))
    assert set(trace["status"].astype(str)) == {"Success"} and nbp.last_trace() is trace
    assert default_pool().busy == 0


def two_stages() -> nbp.Pipeline:
    """Serial: stage ``s`` (``a``, ``b``), stage ``s2`` (``e``): ``b`` breaking kills the root's
    generator chain (pipeline → s → b), whose started containers then get their rows here."""
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=lambda ctx: None)
        s.step("b", run=lambda ctx: None, when="<+pipeline.name> == 'p'")
    with p.stage("s2") as s2:
        s2.step("e", run=lambda ctx: None)
    return p


def test_a_simulation_whose_rules_raise_keeps_its_trace(rules_break_at_b: None):
    for p in (wide(), two_stages()):
        err = internal_error("simulate", p.simulate)
        assert str(err).startswith("simulation of 'p' aborted at pipeline.stages.s.spec.execution.steps")
        trace = err.trace
        assert sorted(trace["fqn"]) == sorted(n.fqn for n in p.plan().nodes)
        assert status(trace, "b") == "Errored"
        assert (status(trace, "s"), status(trace, "pipeline"), status(trace, "e")) == (
            "Aborted",
            "Aborted",
            "NotStarted",
        )


def test_monte_carlo_records_raise_a_library_error_when_the_rules_raise(rules_break_at_b: None):
    from notebook_pipelines.engine.simulation import simulate_records

    with pytest.raises(nbp.RunFailed) as info:
        simulate_records(two_stages().plan())
    assert isinstance(info.value.__cause__, ZeroDivisionError) and info.value.trace is None
    assert "no trace was made" in str(info.value)


class RefusesB(ThreadExecutor):
    """An executor (the public seam of ``run(executor=…)``) whose ``submit`` raises for ``b``."""

    def submit(self, job: Any) -> None:
        if job.node.id == "b":
            raise ZeroDivisionError("injected into the rules")
        super().submit(job)


def test_a_request_that_cannot_be_served_aborts_the_run_and_keeps_its_trace(no_worker_leak: None):
    p = two_stages()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning about a body left behind: b never ran
        err = internal_error("run", lambda: p.run(progress=False, report=False, executor=RefusesB()))
    trace = err.trace
    assert (status(trace, "a"), status(trace, "b"), status(trace, "s"), status(trace, "e")) == (
        "Success",
        "Errored",
        "Aborted",
        "NotStarted",
    )


class BreaksAtB(ThreadExecutor):
    """An executor whose timer callback (run by the loop) raises when ``b`` is submitted."""

    def open(self, run: Any) -> None:
        self.served = run
        super().open(run)

    def submit(self, job: Any) -> None:
        if job.node.id == "b":
            self.served.call_at(self.served.now(), _divide, None)
        super().submit(job)


def _divide(_: Any) -> None:
    raise ZeroDivisionError("injected into the rules")


def test_a_loop_callback_that_raises_aborts_the_run_and_keeps_its_trace(no_worker_leak: None):
    p = two_stages()
    err = internal_error("run", lambda: p.run(progress=False, report=False, executor=BreaksAtB()))
    assert str(err).startswith("run of 'p' aborted: internal error of notebook-pipelines")
    trace = err.trace
    assert sorted(trace["fqn"]) == sorted(n.fqn for n in p.plan().nodes)
    assert status(trace, "pipeline") == "Aborted" and status(trace, "e") == "NotStarted"
    assert "ZeroDivisionError: injected into the rules" in row(trace, "pipeline")["reason"]


def test_R50_a_looping_warning_made_an_error_by_the_filter_keeps_the_simulation_s_trace():
    """User-reachable: ``-W error`` (or ``filterwarnings = error``) turns the LoopingWarning a
    simulation gives for a run-time list into an exception on the loop; it used to lose the run."""
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=publishes([1, 2]), outputs=["x"])
        s.step("b", run=lambda ctx: None, strategy=nbp.Repeat(items=OUT))
        s.step("c", run=lambda ctx: None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(nbp.RunFailed) as info:
            p.simulate()
    err = info.value
    assert isinstance(err.__cause__, nbp.LoopingWarning)
    assert "which the warnings filter turned into an exception" in str(err)
    assert nbp.last_trace() is err.trace
    assert (status(err.trace, "a"), status(err.trace, "b"), status(err.trace, "c")) == (
        "Success",
        "Errored",
        "NotStarted",
    )


def test_a_simulation_s_own_error_found_while_simulating_is_raised_as_it_is():
    def duration(node: Any, rng: Any) -> float:
        raise ZeroDivisionError("no duration")

    with pytest.raises(nbp.SimulationError, match="durations=: the function raised ZeroDivisionError"):
        two_stages().simulate(durations=duration)


def test_R59_a_left_behind_warning_made_an_error_keeps_the_run_s_trace(no_worker_leak: None):
    """User-reachable: under ``-W error`` the warning about a body that ignores being told to stop
    (issued while the executor closes, after the loop) used to raise before the trace was made."""
    p = nbp.Pipeline("p")
    with p.stage("s") as s:
        s.step("a", run=lambda ctx: time.sleep(1.0), timeout="0.1s")  # ignores ctx.cancelled
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        left = r"left behind: pipeline\.stages\.s\.spec\.execution\.steps\.a;"
        with pytest.raises(RuntimeWarning, match=left):
            finishes(lambda: p.run(progress=False, report=False, run_id="left-behind"))
    trace = nbp.last_trace()
    assert trace is not None and trace.attrs["run_id"] == "left-behind"
    assert (status(trace, "a"), status(trace, "pipeline")) == ("Expired", "Expired")


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        (lambda spec: 1 / 0, "of step type 'Odd' raised ZeroDivisionError: division by zero; fix the check"),
        (lambda spec: 5, "of step type 'Odd' raised TypeError: 'int' object is not iterable; fix the check"),
        (lambda spec: [BadStr()], "gave <BadStr instance at 0x"),
    ],
)
def test_a_step_type_check_that_raises_or_gives_no_text_is_a_problem_of_the_step(check: Any, expected: str):
    """A custom step type's pre-run ``check`` used to raise its own exception (or an
    AttributeError from the message formatting) out of ``run()``."""
    register_step_type("Odd", lambda ctx, spec: None, check=check)
    try:
        p = nbp.Pipeline("p")
        with p.stage("s") as s:
            s.step("a", type="Odd", spec={"x": 1})
        with pytest.raises(nbp.DefinitionError) as info:
            p.run(progress=False, report=False)
    finally:
        unregister_step_type("Odd")
    text = str(info.value)
    assert "pipeline.stages.s.spec.execution.steps.a: [type] the check '" in text
    assert expected in text


class Raises:
    """A listener whose ``node_started`` raises: dropped with a RuntimeWarning (``_notify``)."""

    def node_started(self, *args: Any) -> None:
        raise ValueError("listener broke")


def test_a_dropped_listener_s_warning_made_an_error_keeps_the_run_s_trace(no_worker_leak: None):
    """User-reachable: under ``-W error`` the warning about a dropped listener is an exception on
    the loop, inside a node's generator; it used to lose the run and leave ``long`` running."""
    p = wide()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(nbp.RunFailed) as info:
            finishes(lambda: p.run(progress=False, report=False, listeners=[Raises()]))
    err = info.value
    assert isinstance(err.__cause__, RuntimeWarning)
    assert "listener 'Raises.node_started' raised ValueError: listener broke" in str(err)
    assert nbp.last_trace() is err.trace
    assert sorted(err.trace["fqn"]) == sorted(n.fqn for n in p.plan().nodes)
    assert "Errored" in set(err.trace["status"].astype(str))
