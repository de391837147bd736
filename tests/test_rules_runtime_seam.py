"""The rules (``engine/semantics.py``) driven through a second, minimal ``Runtime`` (issue 25).

The scheduler is one implementation of :class:`~notebook_pipelines.engine.runtime.Runtime`;
the rules must need nothing else. ``LedgerRuntime`` below is another: no loop, no threads, no
executor, a clock that only moves when a body "takes" time, bodies replaced by a table of
outcomes, and a ledger of every call the rules make. It drives the generators itself
(``Execute`` → the next outcome from the table, ``Concurrent`` → the children one after
another, ``Pause`` → the clock moves on). If the rules reached past the seam (into the scheduler's
inbox, timers or executor), this runtime would not have it and the test would fail.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

import notebook_pipelines as nbp
from notebook_pipelines.definition import reference_paths, references
from notebook_pipelines.definition.plan import compile_plan
from notebook_pipelines.engine import semantics, strategies
from notebook_pipelines.engine.clocks import Timer
from notebook_pipelines.engine.executors.base import Outcome
from notebook_pipelines.engine.looping import IterationRun
from notebook_pipelines.engine.runtime import Concurrent, Execute, Pause, Runtime
from notebook_pipelines.engine.semantics import Rules


class LedgerRuntime:
    """Every request of the rules, written down; the smallest run that can answer them."""

    def __init__(self, plan: Any, outcomes: dict[tuple[str, int], tuple[str, float]]):
        self.run_id, self.plan, self.view, self.aborted = "ledger", plan, plan, None
        self.statuses: dict[str, str] = {}
        self.outputs: dict[str, dict] = {}
        self.runs: dict[int, int] = {}
        self.runs_handlers, self.loop_counts = False, None
        self.outcomes = outcomes  # (step id, attempt) -> (status, seconds)
        self.clock = 0.0
        self.rows: list[tuple[str, int, str, Any, Any, str | None, str | None]] = []
        self.calls: list[str] = []

    # -- what the rules may ask (the Runtime protocol) -------------------------------------------
    def now(self) -> float:
        return self.clock

    def call_at(self, when: float, fn: Any, arg: Any) -> Timer:
        self.calls.append("call_at")
        return Timer(when, fn, arg)  # never fires here: no step of these tests has a timeout

    def record(self, node: Any, attempt: int, status: str, start: Any, end: Any, **info: Any) -> None:
        self.calls.append("record")
        self.statuses[node.fqn] = status
        self.rows.append((node.id, attempt, status, start, end, info.get("action"), info.get("reason")))

    def succeeded(self, node: Any, attempt: int, outcome: Outcome) -> None:
        self.calls.append("succeeded")
        self.outputs[node.fqn] = outcome.outputs or {}
        self.statuses[node.fqn] = "Success"
        self.rows.append((node.id, attempt, "Success", outcome.start, outcome.end, None, None))

    def mark(self, items: Any, status: str, reason: str, now: float | None) -> None:
        self.calls.append("mark")
        for item in items:
            for node in item.walk():
                self.record(node, 0, status, now, now, reason=reason if node is item else "parent skipped")

    def seen(self, node: Any) -> bool:
        return node.fqn in self.statuses

    def started(self, node: Any, attempt: int, t: float) -> None:
        self.calls.append("started")

    def stop_reason(self, scope: Any) -> str | None:
        if self.aborted is not None:
            return self.aborted
        while scope is not None:
            if scope.stop is not None:
                return scope.stop
            scope = scope.parent
        return None

    def abort(self, reason: str) -> None:
        self.aborted = reason

    def expire(self, scope: Any) -> None:  # pragma: no cover - no timeouts here
        raise AssertionError("no scope has a timeout in these tests")

    def release(self, key: str) -> None:  # pragma: no cover - no resources here
        raise AssertionError("no stage holds a resource in these tests")

    def needs_met(self, latch: Any) -> None:  # pragma: no cover - no needs here (D14)
        raise AssertionError("no member of a parallel block has needs in these tests")

    def context(self, node: Any, attempt: int) -> Any:  # pragma: no cover - no Python conditions
        raise AssertionError("no condition needs a context in these tests")

    def resolve_inputs(self, node: Any) -> str | None:  # pragma: no cover - no inputs
        return None

    def resolve_spec(self, node: Any) -> str | None:  # pragma: no cover - no typed steps
        return None

    def evaluate(self, node: Any, value: Any) -> Any:  # pragma: no cover - no <+…> here
        raise AssertionError("no expression in these tests")

    def warn(self, message: str) -> None:  # pragma: no cover
        raise AssertionError(message)

    def expand(self, node: Any, iteration: Any) -> Any:  # pragma: no cover - no looping
        raise AssertionError("no looping strategy in these tests")

    def expanded(self, node: Any, copies: list) -> None:  # pragma: no cover
        raise AssertionError("no looping strategy in these tests")

    # -- the driver: what the scheduler's loop does, one generator at a time -------------------------
    def drive(self, generator: Any) -> Any:
        value = None
        try:
            while True:
                request = generator.send(value)
                if isinstance(request, Execute):
                    status, seconds = self.outcomes[(request.node.id, request.attempt)]
                    start, self.clock = self.clock, self.clock + seconds
                    error = None if status == "Success" else "boom"
                    value = Outcome(
                        status, start, self.clock, "ledger", None if error is None else "Unknown", error
                    )
                elif isinstance(request, Concurrent):
                    value = [self.drive(child) for child in request.children]
                elif isinstance(request, Pause):
                    self.calls.append(f"sleep {request.seconds:g}s")
                    self.clock += request.seconds
                    value = None
                else:  # pragma: no cover - Intervene, Acquire, Arrive: not in these pipelines
                    raise AssertionError(f"unexpected request {request!r}")
        except StopIteration as done:
            return done.value


def _pipeline() -> nbp.Pipeline:
    p = nbp.Pipeline("seam")
    with p.stage("build") as build:
        build.step("flaky", run="pass", failure_strategies=nbp.Retry(1, intervals="5s"))
        build.step("cleanup", run="pass", when=nbp.When("Failure"))  # the stage has not failed: skipped
        build.step("ship", run="pass")
    return p


def _declared(protocol: type) -> set[str]:
    """The members a protocol declares: its methods and its annotated attributes."""
    return {n for n in vars(protocol) if not n.startswith("_")} | set(protocol.__annotations__)


def test_the_runtime_declares_everything_the_rules_ask_of_it():
    """Every ``self.rt.X`` / ``rt.X`` the rules use is declared by ``Runtime`` (``succeeded`` was
    not), so a second runtime written from the protocol alone is complete. The rules hand their
    runtime to ``strategies.FailureStrategies`` (read the same way) and ``looping.Iterations``,
    which uses what ``IterationRun`` declares."""
    used = set()
    for module in (semantics, strategies):
        tree = ast.parse(Path(module.__file__).read_text())
        used |= {
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and (
                (isinstance(node.value, ast.Name) and node.value.id == "rt")
                or (isinstance(node.value, ast.Attribute) and node.value.attr == "rt")
            )
        }
    used |= _declared(IterationRun)
    assert {"loop_counts", "evaluate", "warn"} <= used
    assert len(used) > 20
    assert used <= _declared(Runtime), used - _declared(Runtime)


def test_the_ledger_runtime_has_every_member_the_protocol_declares():
    plan = compile_plan(_pipeline())
    missing = _declared(Runtime) - set(dir(LedgerRuntime(plan, {})))
    assert not missing


def test_R18_R29_the_rules_ask_the_runtime_for_a_retry_and_a_skip_and_nothing_else():
    """A step that fails once and is retried after 5 s (R18), a step skipped by its status
    condition (R29: ``Failure`` runs only when the stage failed so far), then a step that runs.

    Times, by hand: flaky attempt 1 takes 2 s (0–2), the interval 5 s (2–7), attempt 2 takes
    3 s (7–10); cleanup is skipped at 10; ship takes 1 s (10–11); the stage 0–11, the pipeline too.
    """
    plan = compile_plan(_pipeline())
    rt = LedgerRuntime(
        plan, {("flaky", 1): ("Failed", 2.0), ("flaky", 2): ("Success", 3.0), ("ship", 1): ("Success", 1.0)}
    )
    status = rt.drive(Rules(rt).pipeline(plan.root))
    assert status == "Success"
    assert rt.rows == [
        ("flaky", 1, "Failed", 0.0, 2.0, "Retry", None),
        ("flaky", 2, "Success", 7.0, 10.0, None, None),
        ("cleanup", 0, "Skipped", 10.0, 10.0, None, "the stage has not failed (status condition Failure)"),
        ("ship", 1, "Success", 10.0, 11.0, None, None),
        ("build", 1, "Success", 0.0, 11.0, None, None),
        ("seam", 1, "Success", 0.0, 11.0, None, None),
    ]
    assert "sleep 5s" in rt.calls and rt.calls.count("succeeded") == 2
    assert rt.runs == {plan.by_fqn[f].index: n for f, n in _step_fqns(plan, flaky=2, ship=1).items()}


@pytest.mark.parametrize(
    ("then", "final"), [(nbp.MarkAsSuccess(), "Success"), (nbp.Ignore(), "IgnoreFailed")]
)
def test_R18_when_retries_run_out_the_then_action_decides_through_the_same_seam(then, final):
    p = nbp.Pipeline("seam")
    with p.stage("build") as build:
        build.step("flaky", run="pass", failure_strategies=nbp.Retry(1, then=then))
    plan = compile_plan(p)
    rt = LedgerRuntime(plan, {("flaky", 1): ("Failed", 1.0), ("flaky", 2): ("Failed", 1.0)})
    rt.drive(Rules(rt).pipeline(plan.root))
    # attempt 1 fails and is retried at once (no interval): 0–1; attempt 2 fails too: 1–2, then `then`
    assert [row[:6] for row in rt.rows if row[0] == "flaky"] == [
        ("flaky", 1, "Failed", 0.0, 1.0, "Retry"),
        ("flaky", 2, final, 1.0, 2.0, then.type),
    ]


def _step_fqns(plan: Any, **runs: int) -> dict[str, int]:
    return {n.fqn: runs[n.id] for n in plan.nodes if n.kind == "step" and n.id in runs}


def test_references_read_a_run_only_through_their_own_protocol_which_the_runtime_declares():
    """``definition/references.py`` (and ``reference_paths.py``, the walker it stands on) names
    what it reads of a run (``RunValues``: ``view``, ``statuses``, ``outputs``) instead of
    reaching for ``scheduler.view`` by name; every function that takes a run takes that
    protocol, and reads nothing else of it."""
    trees = [ast.parse(Path(module.__file__).read_text()) for module in (references, reference_paths)]
    declared = _declared(references.RunValues)
    assert declared == {"view", "statuses", "outputs"}
    takers, read = [], set()
    functions = (n for tree in trees for n in ast.walk(tree) if isinstance(n, ast.FunctionDef))
    for function in functions:
        first = function.args.args[0] if function.args.args else None
        if first is None or first.arg not in ("run", "scheduler"):
            continue
        takers.append((function.name, ast.unparse(first.annotation) if first.annotation else None))
        read |= {
            n.attr
            for n in ast.walk(function)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == first.arg
        }
    assert len(takers) >= 6 and all(annotation == "RunValues" for _, annotation in takers), takers
    assert read <= declared, read - declared
    assert declared <= _declared(Runtime)  # the rules pass their runtime to the references
