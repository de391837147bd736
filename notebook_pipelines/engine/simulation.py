"""``simulate()``: the same scheduler as ``run()``, on a virtual clock.

Design notes
------------
No real waiting and no step bodies: :class:`~.executors.virtual.VirtualExecutor` asks how long
each step attempt takes and whether it fails, and the scheduler of ``run()`` does the rest on
a :class:`~.executors.virtual.VirtualClock` that jumps from event to event. Conditions,
failure strategies, retry intervals, timeouts (a step longer than its timeout expires at the
deadline), rollback and manual interventions (D12: the timeout passes in virtual time unless
an answer is scripted) therefore behave exactly as in a real run, and the trace has the
schema of ``run()`` with ``worker == "virtual"``.

What a step takes, in order of precedence:

1. the ``durations`` option: a mapping by step FQN, step id or glob (matched against the
   FQN and the id: ``"deploy_*"``, ``"*.tests.steps.*"`` for the steps of group ``tests``) to
   seconds, a Harness duration (``"1m 30s"``), a callable ``rng -> seconds`` or a scipy
   frozen distribution (anything with ``.rvs``); or one callable ``(node, rng) -> seconds``
   for every step (returning ``None`` falls through to 2);
2. the step's own ``duration=``;
3. ``default``.

Options are resolved once per step (keys are matched when the simulation starts; a key that
matches no step is an error, since a typo would silently simulate something else).

Randomness: every sampled value comes from a ``numpy.random.Generator`` seeded with
``(seed, hash of the step's FQN, attempt)``, so a step draws from its own stream: changing one
step's distribution (or adding steps) does not shift the draws of the others, and two
designs that keep a step's FQN draw the same durations for it (common random numbers).
Same seed, same trace, bit for bit (``run_id`` aside, and that is fixed too unless given).

Cost: the scheduler does a constant amount of work per event, lookups are cached per step,
and the trace is built column by column — simulating grows about linearly with the number of
steps (a timer heap adds a log factor; ``benchmarks/simulate_scale.py``).

>>> import notebook_pipelines as nbp
>>> p = nbp.Pipeline("p")
>>> with p.stage("s") as s:
...     _ = s.step("a", duration="2s", failure_strategies=nbp.Retry(1, intervals="1s"))
>>> t = simulate(p, failures={"a": [1]}, run_id="doc")
>>> columns = ["step", "attempt", "status", "start_s", "end_s", "action"]
>>> print(t.loc[t.kind == "step", columns].to_string(index=False))
step  attempt  status  start_s  end_s action
   a        1  Failed      0.0    2.0  Retry
   a        2 Success      3.0    5.0    NaN
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..definition.callables import is_sampler
from ..definition.limits import short
from ..definition.plan import as_plan, paused_gc
from ..errors import PipelineError, RunInterrupted, SimulationError, excerpt
from .executors.virtual import VirtualClock, VirtualExecutor
from .injection import failure_function
from .running import execute
from .sampling import Streams, draw, to_seconds
from .steptable import MISSING, StepTable
from .trace import Record

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["DEFAULT_START", "SimulationError", "as_plan", "simulate", "simulate_records"]

#: Virtual runs start at this UTC instant unless ``start=`` says otherwise (deterministic traces).
DEFAULT_START = "2026-01-01T00:00:00Z"

#: The last instant a trace timestamp (``datetime64[ns]``) can hold, in ns since 1970 (2262-04-11).
_LAST_NS = 2**63 - 1

#: The output variables a simulated step publishes.
Outputs = dict[str, Any]


def _horizon(clock: VirtualClock) -> float:
    """The virtual time (seconds since the run's start) past which trace timestamps overflow."""
    return (_LAST_NS - clock.epoch_ns) / 1e9 - 1.0


def _past_horizon(clock: VirtualClock, at: float, what: str) -> SimulationError:
    """The error for a simulated time ``at`` that a trace timestamp cannot hold."""
    import pandas as pd

    start = pd.Timestamp(clock.epoch_ns, tz="UTC").isoformat()
    return SimulationError(
        f"{what} at {at:.6g} s after the start ({start}), past 2262-04-11, the last instant a trace "
        "timestamp can hold: shorten the durations, timeouts or waits (or simulate from an earlier start=)"
    )


def _within_horizon(
    duration: Callable[[Any, int], float], clock: VirtualClock
) -> Callable[[Any, int], float]:
    """``duration`` that refuses an attempt ending where trace timestamps overflow.

    Each duration is at most ``MAX_SECONDS``, but many in a row (or a start close to 2262) can
    still pass the end of ``datetime64[ns]``; the step whose attempt would end there fails the
    simulation clearly instead of a trace with wrapped-around times.
    """
    horizon = _horizon(clock)

    def bounded(node: Any, attempt: int) -> float:
        seconds = duration(node, attempt)
        if clock.t + seconds > horizon:
            raise _past_horizon(clock, clock.t + seconds, f"attempt {attempt} of {node.fqn} would end")
        return seconds

    return bounded


def _duration_function(
    plan: Any, durations: Any, default: Any, streams: Streams, strict: bool, clock: VirtualClock
) -> Callable[[Any, int], float]:
    """``(node, attempt) -> seconds`` for the virtual executor, within the horizon of ``clock``
    (:func:`_within_horizon`)."""
    fallback = to_seconds(default, "default=") if not is_sampler(default) else None
    per_step: Callable[[Any, Any], Any] | None = None
    table: StepTable | None = None
    if durations is not None:
        if callable(durations) and not hasattr(durations, "items"):
            per_step = durations
        else:
            table = StepTable("durations", durations, plan, strict)
    fixed: dict[int, float] = {}  # per node: the constant duration, when it is one

    # declared durations are parsed seconds (float) or samplers: test only what is neither
    own_samplers = plan.traits().samplers and any(
        is_sampler(n.duration) for n in plan.nodes if n.duration is not None and type(n.duration) is not float
    )
    if per_step is None and table is None and fallback is not None and not own_samplers:
        horizon = _horizon(clock)

        def declared(node: Any, attempt: int) -> float:  # the plan has parsed declared durations
            seconds: float = node.duration
            if seconds is None:
                seconds = fallback
            if clock.t + seconds > horizon:  # _within_horizon's check, without a second call
                raise _past_horizon(clock, clock.t + seconds, f"attempt {attempt} of {node.fqn} would end")
            return seconds

        return declared

    def duration(node: Any, attempt: int) -> float:
        seconds = fixed.get(node.index)
        if seconds is not None:
            return seconds
        where = node.fqn
        if per_step is not None:
            try:
                value = per_step(node, streams.rng(node, attempt))
            except Exception as err:  # the user's function: say for which step it failed
                raise SimulationError(
                    f"durations=: the function raised {type(err).__name__} for {where}: {err}"
                ) from err
            if value is not None:
                return to_seconds(value, where, sampled=True)
        value = table.get(node) if table is not None else MISSING
        if value is MISSING or value is None:
            value = node.duration
        if value is None:
            value = default if fallback is None else fallback
        if is_sampler(value):
            return to_seconds(draw(value, streams.rng(node, attempt), where), where, sampled=True)
        seconds = to_seconds(value, f"{where} (durations)")
        if per_step is None:
            fixed[node.index] = seconds
        return seconds

    return _within_horizon(duration, clock)


def _outputs_function(plan: Any, outputs: Any, strict: bool) -> Callable[[Any, int], Outputs | None] | None:
    """``(node, attempt) -> dict | None``: the output variables a simulated step publishes
    (``None`` when no step publishes any).

    A step publishes the values given for it in ``outputs`` (a dict, or a callable
    ``attempt -> dict``), and ``None`` for each output it declares (``outputs=`` on the step,
    or ``spec.outputVariables`` of a typed step) without a value, so that references to
    declared outputs resolve in virtual time as they do in a real run. A step of a sketch —
    no body and no type — also publishes a placeholder (``None``) for every output variable
    that a node of the plan reads from it (:func:`~.references.output_reads`): the value its
    body will publish once written.
    """
    table = StepTable("outputs", outputs, plan, strict) if outputs else None
    declared: dict[int, Outputs | None] = {}
    sketched = _sketch_reads(plan)
    if (
        table is None
        and not sketched
        and not (
            plan.traits().outputs  # known from the compile: most plans declare none
            and any(n.outputs or (n.spec and _spec_output_names(n)) for n in plan.steps)
        )
    ):
        return None  # nothing to publish anywhere (the common case): the executor asks nothing

    def published(node: Any, attempt: int) -> Outputs | None:
        if node.index in declared:
            base = declared[node.index]
        else:
            names = [*(node.outputs or ()), *_spec_output_names(node)]
            plan_node = node.origin if node.origin is not None else node  # an iteration's copy
            names += sorted(sketched.get(plan_node.index, ()))
            base = declared[node.index] = dict.fromkeys(names) or None
        value = table.get(node) if table is not None else MISSING
        if value is MISSING:
            return dict(base) if base else None
        if callable(value):
            try:
                given = value(attempt)
            except Exception as err:
                raise SimulationError(
                    f"outputs for {node.fqn}: the function raised {type(err).__name__}: {err}"
                ) from err
        else:
            given = value
        if not isinstance(given, Mapping):
            raise SimulationError(f"outputs for {node.fqn}: give a dict of values (or attempt -> dict)")
        return {**(base or {}), **_named(node, given)}

    return published


def _named(node: Any, given: Mapping[str, Any]) -> Mapping[str, Any]:
    """``given`` when each output name is one a real run publishes (an identifier, bounded)."""
    from .executors.base import check_outputs

    try:
        check_outputs(node.fqn, dict(given))
    except PipelineError as err:
        raise SimulationError(f"outputs= {err}") from None
    return given


def _sketch_reads(plan: Any) -> dict[int, frozenset[str]]:
    """The output variables read from each step of ``plan`` that has neither a body nor a type
    (a sketch's step), by plan node index."""
    if not plan.traits().sketch:
        return {}
    from ..definition.references import output_reads

    steps = plan.nodes
    return {
        index: names
        for index, names in output_reads(plan).items()
        if steps[index].body is None and steps[index].type is None
    }


def _spec_output_names(node: Any) -> list[str]:
    spec = node.spec if isinstance(node.spec, Mapping) else {}
    items = spec.get("outputVariables") or ()
    return [item["name"] for item in items if isinstance(item, Mapping) and "name" in item]


def _intervention_function(
    plan: Any, interventions: Any, executor: VirtualExecutor, clock: VirtualClock, strict: bool
) -> Callable[[Any], None] | None:
    """The ``on_intervention`` callback that answers from the script (D12)."""
    if not interventions:
        return None
    table = StepTable("interventions", interventions, plan, strict)
    given: dict[int, int] = {}

    def answer_for(request: Any) -> Any:
        value = table.get(request.node)
        if callable(value):
            return value(request)
        if isinstance(value, list):  # successive interventions of the step, then none (timeout)
            n = given.get(request.node.index, 0)
            return value[n] if n < len(value) else None
        return None if value is MISSING else value

    def scripted(request: Any) -> None:
        answer = answer_for(request)
        if answer is None:
            return  # wait the timeout, then on_timeout (D12)
        choice, delay = (answer, 0.0) if isinstance(answer, str) else tuple(answer)
        where = f"interventions[{request.node.id!r}]"
        if choice not in request.choices:
            raise SimulationError(
                f"{where}: {choice!r} is not one of the choices {', '.join(request.choices)}"
            )
        given[request.node.index] = given.get(request.node.index, 0) + 1
        seconds = to_seconds(delay, f"{where} (answer delay)")
        executor.run.call_at(clock.now() + seconds, _answer, (request, choice))

    return scripted


def _answer(item: tuple[Any, str]) -> None:
    request, choice = item
    request.answer(choice)


def _epoch_ns(start: Any) -> int:
    """``start=`` as UTC nanoseconds: 0, or anything ``pandas.Timestamp`` reads (naive = UTC)."""
    if isinstance(start, int) and not isinstance(start, bool) and start == 0:
        return 0
    import pandas as pd

    fix = "give a time pandas reads, e.g. start='2026-01-01T09:00:00Z' or a datetime (naive means UTC)"
    if isinstance(start, bool) or start is None:
        raise SimulationError(f"start={start!r}: {fix}")
    try:
        stamp = pd.Timestamp(start)
        stamp = stamp.tz_convert("UTC") if stamp.tzinfo else stamp.tz_localize("UTC")
    except (ValueError, TypeError, OverflowError) as err:  # DateParseError, OutOfBoundsDatetime
        raise SimulationError(f"start={short(start)}: not a time ({excerpt(str(err), 120)}); {fix}") from None
    if pd.isna(stamp):
        raise SimulationError(f"start={short(start)}: not a time (NaT); {fix}")
    return int(stamp.value)


def _seed(seed: Any) -> int:
    if seed is None:
        import numpy as np

        return int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and int(seed) >= 0:
        return int(seed)
    raise SimulationError(f"seed={seed!r}: give a whole number ≥ 0 (or None for a fresh random seed)")


def simulate(
    pipeline: Any,
    *,
    durations: Mapping[str, Any] | Callable[[Any, Any], Any] | pd.DataFrame | None = None,
    default: Any = 1.0,
    failures: Mapping[str, Any] | str | None = None,
    interventions: Mapping[str, Any] | None = None,
    seed: int | None = 0,
    run_id: str | None = None,
    start: Any = DEFAULT_START,
    listeners: Iterable[Any] = (),
    strict: bool = True,
    outputs: Mapping[str, Any] | None = None,
    iterations: Mapping[str, int] | None = None,
    mode: str = "joint",
) -> pd.DataFrame:
    """Run ``pipeline`` in virtual time and return its trace (the schema of ``run()``).

    Args:
        pipeline: a Pipeline, or its Plan (``p.plan()``) to skip compiling on repeated calls.
        durations: seconds per step — a mapping by step FQN, id or glob to seconds, a Harness
            duration, a callable ``rng -> seconds`` or a scipy frozen distribution; or one
            callable ``(node, rng) -> seconds | None`` for all steps. A step's own
            ``duration=`` is used when the mapping has no entry.
        default: the duration of a step with none declared (a number, a Harness duration or
            a sampler as above).
        failures: which steps fail — by id/FQN/glob: ``True`` (every attempt), an int ``n``
            (the first n attempts), a list of attempt numbers, a float ``0 < p < 1`` (each
            attempt fails with probability p), an error type string (every attempt, with
            that type), ``{"attempts": [1, 2], "error_type": "Timeout", "probability": 0.5,
            "message": "…"}``, or a callable ``(attempt, rng) -> bool | error type``.
        interventions: scripted answers to manual interventions (D12) by id/FQN/glob: a
            choice (``"Retry"``, answering every intervention of the step at once),
            ``(choice, delay)`` to answer after a delay (``("Retry", "5m")``), a list of
            those for successive interventions (after the list, the timeout applies), or a
            callable ``request -> answer | None``. Steps without an answer wait the
            intervention's timeout and apply ``on_timeout``.
        seed: seeds the random streams that sampled durations and failures draw from (see
            the module notes); ``None`` draws a fresh seed (kept in ``trace.attrs["seed"]``).
        run_id: fix the run id (default: ``"sim-<seed>"``).
        start: the virtual run's start (UTC); the trace's timestamps count from it.
        listeners: as for ``run()``.
        strict: a key of ``durations``/``failures``/``interventions`` that matches no step
            is an error (``False``: ignore it, e.g. when one mapping serves several designs).
        outputs: output variables that steps publish, by id/FQN/glob: a dict of values, or a
            callable ``attempt -> dict``. Declared outputs without a value publish ``None``,
            so references to them resolve as in a real run; so does every output variable
            that a node reads from a step with no body and no type (a sketch's step), until
            its body is written.
        iterations: for looped nodes whose items are known only in a run
            (``items: <+stage.output.hosts>``, a matrix axis from an expression): how many
            items the run-time list holds, by the looped node's id or FQN
            (``{"Phase": 4}``). Without an entry such a node runs once, with a warning that
            names it (R50).
        mode: with ``durations=`` a history (a DataFrame of measured runs, see
            :mod:`~.measured`): ``"joint"`` takes every step's duration from one measured run
            (drawn with ``seed``), ``"independent"`` draws each step's from its own measurements.
            ``failures="history"`` then injects each step's measured failure rate.

    Returns:
        The trace DataFrame; ``attrs`` holds ``run_id``, ``pipeline``, ``seed`` and
        ``simulated=True``.

    Raises:
        SimulationError: an option that cannot be used (unknown key, bad duration, …).
        DefinitionError: the pipeline is not valid.
        RunInterrupted: Ctrl-C (or a kernel interrupt) while simulating; ``trace`` holds
            what was simulated so far (the rest ``NotStarted``).
        RunFailed: an exception escaped the simulation's loop (an internal error of
            notebook-pipelines, or a warning that ``-W error`` turned into an exception, such as
            the ``LoopingWarning`` of a run-time list): the simulation was aborted, the node whose
            rules raised has an ``Errored`` row, ``trace`` is the complete trace (also
            ``nbp.last_trace()``), and the original exception is chained (``__cause__``).
    """
    plan = as_plan(pipeline)
    seed, clock, executor, scripted = _virtual(
        plan, durations, default, failures, interventions, seed, start, strict, outputs, mode
    )
    counts = _loop_counts(plan, iterations, strict)
    with paused_gc():
        try:
            result = execute(
                plan,
                executor,
                clock,
                run_id=run_id or f"sim-{seed}",
                listeners=listeners,
                on_intervention=scripted,
                loop_counts=counts,
            )
        except PipelineError:
            if clock.t > _horizon(clock):  # waits (retry intervals, interventions) took it past
                raise _past_horizon(clock, clock.t, "the simulated run ended") from None
            raise
    trace = result.trace
    trace.attrs["seed"] = seed
    trace.attrs["simulated"] = True
    if result.interrupted:
        raise RunInterrupted(
            f"simulation of {plan.pipeline.id!r} interrupted; the partial trace is in .trace", trace
        )
    return trace


def simulate_records(
    plan: Any,
    *,
    durations: Any = None,
    default: Any = 1.0,
    failures: Any = None,
    interventions: Any = None,
    seed: int | None = 0,
    strict: bool = True,
    outputs: Any = None,
    iterations: Any = None,
    mode: str = "joint",
) -> list[Record]:
    """The trace's records (:class:`~.trace.Record` s) of a simulation, without the DataFrame.

    For many simulations of one plan (Monte Carlo), where building a DataFrame per run would
    cost ~30× the scheduling of a small pipeline. Same options and same results as
    :func:`simulate`; no listeners, and ``last_trace()`` is left alone.
    """
    from .breakage import broken_error
    from .scheduler import Scheduler

    seed, clock, executor, scripted = _virtual(
        plan, durations, default, failures, interventions, seed, 0, strict, outputs, mode
    )
    counts = _loop_counts(plan, iterations, strict)
    scheduler = Scheduler(
        plan, executor, clock, run_id=f"sim-{seed}", on_intervention=scripted, loop_counts=counts
    )
    with paused_gc():
        scheduler.execute()
        scheduler.fill_not_started()
    if scheduler.broken is not None:  # an exception escaped the loop (.breakage): no records to trust
        raise broken_error(scheduler, None) from scheduler.broken
    if scheduler.interrupted:
        raise KeyboardInterrupt  # the caller says what was done so far
    return scheduler.recorder.rows


def _loop_counts(plan: Any, iterations: Any, strict: bool) -> dict[str, int]:
    """``iterations=`` checked: looped node id or FQN → a whole number ≥ 0 (an empty dict: none)."""
    if iterations is None:
        return {}
    if not hasattr(iterations, "items"):
        raise SimulationError(
            "iterations= takes a mapping of looped node ids (or FQNs) to counts, "
            f"not {type(iterations).__name__}"
        )
    looped = {name for n in plan.nodes if n.strategy is not None for name in (n.id, n.fqn)}
    out: dict[str, int] = {}
    for key, value in iterations.items():
        if strict and key not in looped:
            known = ", ".join(sorted(n.id for n in plan.nodes if n.strategy is not None)) or "none"
            close = difflib.get_close_matches(str(key), sorted(looped), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SimulationError(
                f"iterations: {key!r} is not a node with a looping strategy{hint}; looped nodes: {known}"
            )
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise SimulationError(f"iterations[{key!r}]: give a whole number ≥ 0, not {value!r}")
        out[key] = int(value)
    return out


def history_source(plan: Any, durations: Any, mode: str = "joint") -> Any:
    """The :class:`~.measured.HistoryDurations` of ``durations`` for ``plan`` (made from a
    history DataFrame, or one made for another plan re-made), or ``None``."""
    from .measured import MODES, HistoryDurations, is_history

    if mode not in MODES:  # checked with or without a history: a typo is not ignored
        raise SimulationError(f"mode={mode!r}: use 'joint' (whole runs resampled) or 'independent'")
    if isinstance(durations, HistoryDurations):
        if durations.plan is plan:
            return durations
        return HistoryDurations(durations.history, plan, mode, warn=False)
    if is_history(durations):
        return HistoryDurations(durations, plan, mode)
    return None


def from_history(plan: Any, durations: Any, failures: Any, mode: str, seed: int) -> tuple[Any, Any]:
    """``(durations, failures)`` with a history replaced by one run's draws (see :mod:`.measured`)."""
    source = history_source(plan, durations, mode)
    if isinstance(failures, str) and failures == "history":
        if source is None:
            raise SimulationError(
                'failures="history" takes the failure rates of durations= a history: give one'
            )
        failures = source.failure_rates() or None
    if source is None:
        return durations, failures
    return source.one_run(seed), failures


def _virtual(
    plan: Any,
    durations: Any,
    default: Any,
    failures: Any,
    interventions: Any,
    seed: Any,
    start: Any,
    strict: bool,
    outputs: Any = None,
    mode: str = "joint",
) -> tuple[int, VirtualClock, VirtualExecutor, Callable[[Any], None] | None]:
    """(seed, clock, executor, intervention callback) for one simulation."""
    seed = _seed(seed)
    durations, failures = from_history(plan, durations, failures, mode, seed)
    streams = Streams(seed)
    clock = VirtualClock(_epoch_ns(start))
    duration = _duration_function(plan, durations, default, streams, strict, clock)
    failure = failure_function(plan, failures, streams, strict)
    executor = VirtualExecutor(duration, failure, clock, _outputs_function(plan, outputs, strict))
    scripted = _intervention_function(plan, interventions, executor, clock, strict)
    return seed, clock, executor, scripted
