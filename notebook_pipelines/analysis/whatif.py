"""What-if helpers for design: compare designs on the same durations, Monte Carlo over sampled ones.

Design notes
------------
Both helpers are thin loops over :func:`~notebook_pipelines.engine.simulation.simulate`: every number
comes from the one scheduler, so a comparison shows exactly what a run would do (retries,
timeouts, rollback and conditions included). Each design is compiled once and its plan reused
for every simulation (a plan caches the static columns of its traces, so a run costs the
scheduler and the dynamic columns only).

- :func:`compare` simulates each design once with the same options and reports one row per
  design: makespan, speed-up against the first design, end status, the critical path and its
  length, step counts, and one ``stage:<id>`` column per stage with the stage's duration.
- :func:`monte_carlo` (:mod:`~notebook_pipelines.analysis.montecarlo`, re-exported here)
  simulates one design ``runs`` times with sampled durations (and probabilistic failures, if
  asked) and returns one row per run; :func:`summarize` of it
  (:mod:`~notebook_pipelines.analysis.distribution`) gives the distribution: mean, spread and
  percentiles of the makespan and of each stage. Run ``i`` uses the i-th child of
  ``numpy.random.SeedSequence(seed)``; the ``seed`` column holds it, so
  ``simulate(p, seed=row.seed, …)`` replays any run exactly.
- :func:`critical_path` reads a trace (simulated or real); it is
  :func:`~notebook_pipelines.analysis.timing.critical_path` (the structure of the trace, retries
  and their waits on the path). ``critical_path_s`` (the sum of the chain's step durations) is
  below the makespan exactly by the time spent waiting.
- :func:`what_if` re-simulates a trace's own pipeline (:func:`plan_for`: the engine's registry
  of recent runs, or ``pipeline=``) with the durations and failures measured in it, changed.

Common random numbers: sampled durations are drawn per step FQN (see ``simulate``), so two
designs that keep a step's FQN draw the same durations for it in the same run.

>>> import notebook_pipelines as nbp
>>> def design(grouped):
...     p = nbp.Pipeline("release")
...     with p.stage("build") as s:
...         _ = s.step("compile", duration="20s")
...         if grouped:
...             with s.parallel():
...                 _ = s.step("unit", duration="30s")
...                 _ = s.step("lint", duration="10s")
...         else:
...             _ = s.step("unit", duration="30s")
...             _ = s.step("lint", duration="10s")
...     return p
>>> table = compare({"serial": design(False), "parallel": design(True)})
>>> print(table[["makespan_s", "speedup", "critical_path", "stage:build"]])
          makespan_s  speedup            critical_path  stage:build
design
serial          60.0      1.0  compile → unit → lint         60.0
parallel        50.0      1.2         compile → unit         50.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..engine import registry
from ..engine.simulation import SimulationError, as_plan, simulate
from . import timing
from .distribution import PERCENTILES, distribution, summarize
from .montecarlo import MAX_RUNS, monte_carlo
from .options import RUN_OPTIONS, run_options
from .outcomes import outcome, path_text, refuse, stage_durations, unsimulatable

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "MAX_RUNS",
    "PERCENTILES",
    "compare",
    "critical_path",
    "distribution",
    "measured",
    "monte_carlo",
    "plan_for",
    "summarize",
    "what_if",
]


# -- reading a trace ----------------------------------------------------------------------------
#: the critical path of a trace: the one implementation lives in :mod:`.timing` (also behind
#: ``trace.pipeline.critical_path()``)
critical_path = timing.critical_path


# -- compare -------------------------------------------------------------------------------------
def compare(
    designs: Mapping[str, Any] | Sequence[Any],
    *,
    durations: Any = RUN_OPTIONS["durations"],
    default: Any = RUN_OPTIONS["default"],
    failures: Any = RUN_OPTIONS["failures"],
    interventions: Any = RUN_OPTIONS["interventions"],
    outputs: Any = RUN_OPTIONS["outputs"],
    seed: int = 0,
    mode: str = "joint",
) -> pd.DataFrame:
    """Simulate several designs (or settings of one design) with the same options; one row each.

    Each design runs exactly as ``simulate(design, **options)`` runs it (same options, same
    defaults, same seed): its row is that simulation's makespan, status and critical path.

    Args:
        designs: ``{"name": pipeline}`` (a Pipeline or a Plan), in the order to report; a
            value may be ``(pipeline, {simulate options})`` to change options for that design
            only (a ``durations``/``failures``/``interventions``/``outputs`` mapping there is
            merged over the shared one; ``default`` and ``seed`` replace the shared value). A
            list of pipelines is named by their ids.
        durations, default, failures, interventions, outputs, seed: as for :func:`simulate`
            (the same defaults), shared by every design. A key must match a step in at least
            one design. ``durations`` may be a history: each design then takes the measured
            run ``seed`` draws (the same run for every design); for distributions, see
            :func:`monte_carlo` and :func:`what_if` of a history.
        mode: with a history, ``"joint"`` (every step from one measured run) or
            ``"independent"`` (each step from its own measurements), as for :func:`simulate`.

    Returns:
        A DataFrame indexed by design name (``design``) in the given order, with columns
        ``makespan_s``, ``speedup`` (the first design's makespan / this one's), ``status``,
        ``critical_path`` (step ids joined by ``→``; ``x#2`` is a second attempt),
        ``critical_path_s`` (its steps' total duration; below the makespan by the waiting
        time), ``steps`` (steps in the plan), ``attempts`` (step executions) and one
        ``stage:<id>`` column per stage with its duration (NaN where a design has no such
        stage or the stage never started).

    Raises:
        SimulationError: a design fails before one of its steps runs — an input, condition,
            spec or looping strategy that cannot be resolved in virtual time (e.g. a step with
            a body that declares no outputs, read by a later step): its time would be the time
            to that failure. The message names the design, the node and the reason. Injected
            failures and timeouts are reported in ``status``, not refused.
    """
    import pandas as pd

    named = _named(designs)
    shared = {
        "durations": durations,
        "default": default,
        "failures": failures,
        "interventions": interventions,
        "outputs": outputs,
        "seed": seed,
        "mode": mode,
    }
    plans = {name: as_plan(target) for name, (target, _) in named.items()}
    _check_shared_keys(plans, shared)
    rows, stage_columns = [], {}
    for name, (_, own) in named.items():
        options = _merged(shared, own)
        with registry.unremembered():  # compare's own runs: the user's runs stay known
            trace = simulate(plans[name], strict=False, run_id=f"compare-{name}", **options)
        found = unsimulatable(trace)
        if found is not None:
            raise refuse(f"compare(): design {name!r}", found)
        path = critical_path(trace)
        stages = stage_durations(trace)
        stage_columns.update(dict.fromkeys(stages))
        steps = trace[trace["kind"] == "step"]
        work = ~steps["fqn"].astype(object).isin(timing.looped_steps(trace))  # a looped row spans its work
        rows.append(
            {
                "design": name,
                **outcome(trace),
                "critical_path": path_text(path),
                "critical_path_s": float(path["duration_s"].sum()),
                "steps": int(steps["fqn"].nunique()),
                "attempts": int(((steps["attempt"] > 0) & work).sum()),
                **stages,
            }
        )
    columns = ["makespan_s", "speedup", "status", "critical_path", "critical_path_s", "steps", "attempts"]
    table = pd.DataFrame(rows).set_index("design")
    first = table["makespan_s"].iloc[0]
    table["speedup"] = first / table["makespan_s"]
    return table.reindex(columns=[*columns, *stage_columns])


# -- what if: re-simulate a trace's own pipeline ------------------------------------------------
#: statuses of an attempt that a what-if replays as an injected failure (an ``Expired`` attempt
#: needs none: its measured duration reaches the timeout again)
_REPLAYED = ("Failed", "Errored", "Aborted", "ApprovalRejected")
_LOOPING = ("matrix", "repeat", "parallelism")


def plan_for(trace: pd.DataFrame, pipeline: Any = None) -> Any:
    """The plan a trace was made from: ``pipeline`` if given, else the run's registered plan.

    The engine remembers the plan of each recent run, real or simulated
    (:mod:`~notebook_pipelines.engine.registry`); a trace read from a file has none.

    Raises:
        TraceError: no plan is known for the run, or ``pipeline`` lacks nodes of the trace.
    """
    from ..errors import TraceError

    timing.check_trace(trace, "what_if()")
    if pipeline is not None:
        # an iteration's rows (and those below it) are the run's copies of a looped node (R46),
        # named with the iteration's postfix: the plan holds the looped node only
        fqns = set(trace.loc[trace["iteration"].isna(), "fqn"].dropna().astype(str))
        plan = as_plan(pipeline)
        unknown = sorted(fqns - plan.by_fqn.keys())
        if unknown:
            raise TraceError(
                f"what_if(): the pipeline {plan.pipeline.id!r} is not the one this trace ran: it has "
                f"no node {unknown[0]!r}" + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
            )
        return plan
    run_ids = trace["run_id"].dropna().unique()
    run_id = str(run_ids[0]) if len(run_ids) else ""
    plan = registry.plan_for_trace(trace)
    if plan is None:
        raise TraceError(
            f"what_if(): no pipeline is known for the run {run_id!r} (a trace read from a file, or a "
            f"run this session no longer keeps: it keeps the last {registry.MAX_RUNS}, fewer of large "
            "pipelines): pass it, "
            "trace.pipeline.what_if(..., pipeline=p)"
        )
    return plan


def measured(trace: pd.DataFrame) -> tuple[dict[str, float], dict[str, dict]]:
    """``(durations, failures)`` that make ``simulate()`` replay ``trace``, by step FQN.

    A step's duration is the mean of its attempts' durations; the attempts that failed
    (``Failed``, ``Errored``, ``Aborted``, ``ApprovalRejected``) fail again, with their error
    type. Steps that never ran keep their declared durations.
    """
    steps = trace[(trace["kind"] == "step") & (trace["attempt"] > 0) & trace["start_s"].notna()]
    steps = steps[steps["end_s"].notna() & ~steps["fqn"].astype(object).isin(timing.looped_steps(trace))]
    durations = {
        str(fqn): float(value)
        for fqn, value in (steps["end_s"] - steps["start_s"]).groupby(steps["fqn"], sort=False).mean().items()
    }
    failures: dict[str, dict] = {}
    failed = steps[steps["status"].astype(str).isin(_REPLAYED)]
    for fqn, rows in failed.groupby("fqn", sort=False, observed=True):
        types = rows["error_type"].dropna().astype(str)
        failures[str(fqn)] = {"attempts": [int(a) for a in rows["attempt"]]}
        if len(types):
            failures[str(fqn)]["error_type"] = types.iloc[-1]
    return durations, failures


def what_if(
    trace: pd.DataFrame,
    durations: Mapping | None = None,
    strategy: Mapping | None = None,
    *,
    pipeline: Any = None,
    **simulate_options: Any,
) -> pd.DataFrame:
    """Re-simulate the pipeline of ``trace`` with its measured durations, changed as asked.

    Both rows are simulations of the trace's own pipeline with the durations and failures
    measured in it (:func:`measured`) and the output variables its steps published (later steps
    read them as they did): ``as run`` unchanged, ``what if`` with the changes, so the
    difference is the changes' alone.

    Args:
        trace: one run's trace (``run()``, ``simulate()`` or ``read_trace``).
        durations: new durations by step id, FQN or glob (anything ``simulate(durations=)``
            takes), over the measured ones.
        strategy: ``{node id or FQN: strategy}`` — a failure strategy (``nbp.Retry(2)``, a
            list of ``OnFailure``) or a looping strategy (a dict with ``matrix``, ``repeat``
            or ``parallelism``) that replaces the node's own.
        pipeline: the pipeline (or plan) the trace ran; needed when the session does not
            know it (a trace read from a file).
        **simulate_options: ``default``, ``failures``, ``interventions``, ``outputs``,
            ``seed`` as :func:`simulate` takes them (a ``failures`` or ``outputs`` mapping is
            merged over what was measured, for both rows).

    Returns:
        The :func:`compare` table of ``as run`` and ``what if`` (makespan, speed-up, status,
        critical path, stage times) with ``change_s``: the makespan's change against ``as run``.

    A history (a frame of many measured runs, ``nbp.read_history``) is answered in
    distribution: ``what_if(h, pipeline=p, design=proposed, scale={"scan": 0.8}, durations=…,
    runs=10_000, seed=0, mode="joint")`` runs :func:`monte_carlo` of ``p`` on the measured
    durations and of the changed design (``design=`` another layout of the same steps, matched
    by FQN then step id; ``scale`` multiplies a step's measured durations; ``durations``
    replaces them) with the same seed (common random numbers), and returns one row each
    (``as measured``, ``what if``): ``p50_s``, ``change_p50_s``, ``p95_s``, ``change_p95_s``,
    ``mean_s``, ``critical`` (steps on a critical path in at least half the runs, most critical
    first), ``becomes_critical`` (those not critical before), ``engine`` and ``runs``;
    ``attrs`` holds both criticality indexes. A history of one run (one trace) is answered so
    too when ``design``, ``scale``, ``runs`` or ``mode`` is given (``pipeline`` may then be left
    out for a run this session made). The design's steps the history does not measure (and
    ``durations`` does not give) are named in a :class:`~notebook_pipelines.errors.HistoryDurationsWarning`.

    >>> import notebook_pipelines as nbp
    >>> p = nbp.Pipeline("p")
    >>> with p.stage("s") as s:
    ...     with s.parallel():
    ...         _ = s.step("a", duration=5)
    ...         _ = s.step("b", duration=3)
    >>> print(what_if(p.simulate(), {"a": 1})[["makespan_s", "change_s", "critical_path"]])
             makespan_s  change_s critical_path
    design
    as run          5.0       0.0             a
    what if         3.0      -2.0             b
    """
    if _is_many_runs(trace) or (_is_history(trace) and _HISTORY_OPTIONS & simulate_options.keys()):
        return _what_if_history(trace, durations, strategy, pipeline, simulate_options)
    plan = plan_for(trace, pipeline)
    timing.check_trace(trace, "what_if()")
    unknown = set(simulate_options) - {"default", "failures", "interventions", "outputs", "seed"}
    if unknown:
        raise SimulationError(
            f"what_if(): no option {sorted(unknown)[0]!r}; the options are durations, strategy, pipeline, "
            "default, failures, interventions, outputs, seed"
        )
    base, failures = measured(trace)
    if simulate_options.get("failures") is not None:
        _overlay(failures, "failures", simulate_options.pop("failures"), plan, trace)
    changed = dict(base)
    if durations is not None:
        _overlay(changed, "durations", durations, plan, trace)
    outputs = _published(trace)  # what the bodies published: later steps read it as they did
    if simulate_options.get("outputs") is not None:
        _overlay(outputs, "outputs", simulate_options.pop("outputs"), plan, trace)
    other = _with_strategies(plan, strategy) if strategy else plan
    designs = {
        "as run": (plan, {"durations": base, "failures": failures, "outputs": outputs or None}),
        "what if": (other, {"durations": changed, "failures": failures, "outputs": outputs or None}),
    }
    result = compare(designs, **simulate_options)
    result.insert(1, "change_s", result["makespan_s"] - result["makespan_s"].iloc[0])
    return result


#: the options only a history's what-if takes: with them, a history of one run is answered as one
_HISTORY_OPTIONS = {"scale", "design", "runs", "mode"}


def _is_history(trace: Any) -> bool:
    from ..engine.measured import is_history

    return is_history(trace)


def _is_many_runs(trace: Any) -> bool:
    """True for a history: a frame of the trace schema holding more than one run."""
    return _is_history(trace) and trace["run_id"].nunique() > 1


def _what_if_history(
    history: pd.DataFrame, durations: Any, strategy: Any, pipeline: Any, options: dict
) -> pd.DataFrame:
    """:func:`what_if` of a history: Monte Carlo of the design before and after the changes."""
    import pandas as pd

    from ..engine.measured import HistoryDurations

    allowed = {"scale", "design", "runs", "seed", "mode", "default"}
    unknown = set(options) - allowed
    if unknown:
        raise SimulationError(
            f"what_if() of a history: no option {sorted(unknown)[0]!r}; the options are durations, "
            "strategy, pipeline, design, scale, runs, seed, mode, default"
        )
    if pipeline is None and history["run_id"].nunique() == 1 and registry.plan_for_trace(history) is not None:
        pipeline = registry.plan_for_trace(history)  # one run this session made: its plan is known
    if pipeline is None:
        raise SimulationError(
            "what_if() of a history needs pipeline= (the design the runs measured): "
            "e.g. pipeline=nbp.pipeline_from_history(h)"
        )
    plan = as_plan(pipeline)
    design = options.get("design")
    other = as_plan(design) if design is not None else plan
    if strategy:
        other = _with_strategies(other, strategy)
    runs, seed, mode = options.get("runs", 10_000), options.get("seed", 0), options.get("mode", "joint")
    default = options.get("default", RUN_OPTIONS["default"])
    before_source = HistoryDurations(history, plan, mode)
    after_source = HistoryDurations(history, other, mode, warn=False).changed(
        durations, options.get("scale"), default
    )
    _warn_new_unmeasured(before_source, after_source)
    before = monte_carlo(plan, before_source, runs=runs, seed=seed, mode=mode, default=default)
    after = monte_carlo(other, after_source, runs=runs, seed=seed, mode=mode, default=default)
    rows = []
    critical_before = _critical_ids(plan, before)
    for name, frame, target in (("as measured", before, plan), ("what if", after, other)):
        values = frame["makespan_s"]
        critical = _critical_ids(target, frame)
        rows.append(
            {
                "design": name,
                "p50_s": float(values.quantile(0.5)),
                "p95_s": float(values.quantile(0.95)),
                "mean_s": float(values.mean()),
                "critical": ", ".join(critical),
                "becomes_critical": ", ".join(c for c in critical if c not in critical_before),
                "engine": frame.attrs["engine"],
                "runs": len(frame),
            }
        )
    table = pd.DataFrame(rows).set_index("design")
    table.insert(1, "change_p50_s", table["p50_s"] - table["p50_s"].iloc[0])
    table.insert(3, "change_p95_s", table["p95_s"] - table["p95_s"].iloc[0])
    table.attrs.update(
        criticality_before=before.attrs["criticality"], criticality_after=after.attrs["criticality"]
    )
    return table


def _warn_new_unmeasured(before: Any, after: Any) -> None:
    """Warn for the design's steps the history does not measure, that ``durations=`` does not
    give and that the original lacks too (the original's warning named those already)."""
    from ..engine.measured import warn_missing

    known = {before.plan.by_fqn[f].id for f in before.missing}
    new = [f for f in after.missing if after.plan.by_fqn[f].index not in after.fixed]
    new = [f for f in new if after.plan.by_fqn[f].id not in known]
    if new:
        warn_missing(new, stacklevel=5)


def _critical_ids(plan: Any, frame: pd.DataFrame, threshold: float = 0.5) -> list[str]:
    """Step ids on a critical path in at least ``threshold`` of the runs, most critical first."""
    crit = frame.attrs.get("criticality") or {}
    names = {n.fqn: n.id for n in plan.nodes if n.kind == "step"}
    ranked = sorted(
        ((share, names.get(f, f)) for f, share in crit.items() if share >= threshold), reverse=True
    )
    return [name for _, name in ranked]


def _published(trace: pd.DataFrame) -> dict[str, dict]:
    """The output variables each step published in ``trace`` (its last attempt that did), by FQN."""
    rows = trace[(trace["kind"] == "step") & trace["outputs"].notna()]
    out: dict[str, dict] = {}
    for fqn, value in zip(rows["fqn"].astype(str), rows["outputs"]):
        if isinstance(value, dict) and value:
            out[fqn] = dict(value)
    return out


def _overlay(values: dict, option: str, mapping: Any, plan: Any, trace: pd.DataFrame) -> None:
    """Set ``values[fqn]`` for every step that ``mapping`` (an option of :func:`simulate`) names.

    ``values`` is keyed by step FQN as ``trace`` holds them. A key of ``mapping`` reaches every
    row of the trace it names (a looped step's key its iterations too, R46), so no measured
    value of an iteration shadows it; keys for steps or iterations that did not run are kept.
    """
    from ..engine.steptable import StepTable

    table = StepTable(option, mapping, plan, strict=True)
    names = table.names_in(plan, trace)
    for fqn in [*names, *(f for f in values if f not in names)]:
        value = table.lookup(names.get(fqn, (fqn,)))
        if value is not _missing():
            values[fqn] = value
    for node in plan.steps:
        value = table.get(node)
        if value is not _missing() and node.fqn not in names:
            values[node.fqn] = value
    for key, value in table.exact.items():
        if key not in values and not any(key in n for n in names.values()):
            values[key] = value


def _missing() -> Any:
    from ..engine.steptable import MISSING

    return MISSING


def _with_strategies(plan: Any, strategy: Mapping) -> Any:
    """A copy of ``plan``'s pipeline with the nodes' strategies replaced, compiled."""
    import copy
    import difflib

    from ..definition.nodes import canonical_settings as _canonical_settings
    from ..definition.plan import compile_plan

    if not isinstance(strategy, Mapping):
        raise SimulationError(
            f"what_if(strategy=…) takes {{node id or FQN: strategy}}, not {type(strategy).__name__}"
        )
    pipeline = copy.deepcopy(plan.pipeline)
    copied = compile_plan(pipeline, check=False)
    for key, value in strategy.items():
        nodes = [n for n in copied.nodes if n.kind != "parallel" and key in (n.fqn, n.id)]
        if not nodes:
            names = sorted({n.id for n in copied.nodes if n.id} | set(copied.by_fqn))
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SimulationError(f"what_if(strategy=…): no stage, step group or step {key!r}{hint}")
        for node in nodes:
            source = node.source
            if isinstance(value, Mapping) and set(value) & set(_LOOPING):
                source.strategy = dict(value)
            else:
                source.failure_strategies = value
                _canonical_settings(source)
    return compile_plan(pipeline)


def _named(designs: Any) -> dict[str, tuple[Any, dict]]:
    if isinstance(designs, Mapping):
        items = list(designs.items())
    elif isinstance(designs, Sequence) and not isinstance(designs, str):
        items = [(_design_id(d), d) for d in designs]
        ids = [name for name, _ in items]
        if len(set(ids)) != len(ids):
            raise SimulationError(
                f"compare(): designs share ids {ids}; name them: compare({{'a': p1, 'b': p2}})"
            )
    else:
        raise SimulationError(f"compare() takes {{'name': pipeline, …}}, not {type(designs).__name__}")
    if not items:
        raise SimulationError("compare() needs at least one design")
    out: dict[str, tuple[Any, dict]] = {}
    for name, value in items:
        if isinstance(value, tuple):
            if len(value) != 2 or not isinstance(value[1], Mapping):
                raise SimulationError(
                    f"compare(): design {name!r} must be a pipeline or (pipeline, {{options}})"
                )
            target = value[0]
            own = run_options(f"compare(): design {name!r}", value[1], also=("seed",))
        else:
            target, own = value, {}
        out[str(name)] = (target, own)
    return out


def _design_id(design: Any) -> str:
    target = design[0] if isinstance(design, tuple) else design
    pipeline = getattr(target, "pipeline", target)  # a Plan knows its pipeline
    return str(getattr(pipeline, "id", pipeline))


def _merged(shared: dict, own: dict) -> dict:
    """The options of one design: its own mappings merged over the shared ones, the rest replaced."""
    options = dict(shared)
    for key, value in own.items():
        base = options.get(key)
        if isinstance(base, Mapping) and isinstance(value, Mapping):
            options[key] = {**base, **value}
        else:
            options[key] = value
    return options


def _check_shared_keys(plans: dict, shared: dict) -> None:
    """A shared key must match a step of some design (a typo would silently do nothing)."""
    from ..engine.measured import HistoryDurations, is_history
    from ..engine.steptable import StepTable, unknown_key_error

    for option in ("durations", "failures", "interventions", "outputs"):
        mapping = shared[option]
        if mapping is None or not hasattr(mapping, "items") or is_history(mapping):
            continue
        if isinstance(mapping, HistoryDurations):
            continue
        unknown = None
        for plan in plans.values():
            missing = set(StepTable(option, mapping, plan, strict=False).unmatched(plan))
            unknown = missing if unknown is None else unknown & missing
        if unknown:
            key = next(k for k in mapping if k in unknown)
            raise unknown_key_error(option, next(iter(plans.values())), key)
