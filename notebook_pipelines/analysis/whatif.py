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
- :func:`monte_carlo` simulates one design ``runs`` times with sampled durations (and
  probabilistic failures, if asked) and returns one row per run; :func:`summarize` of it gives
  the distribution: mean, spread and percentiles of the makespan and
  of each stage. Run ``i`` uses the i-th child of ``numpy.random.SeedSequence(seed)``; the
  ``seed`` column holds it, so ``simulate(p, seed=row.seed, …)`` replays any run exactly.
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

import array
import math
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..engine import registry
from ..engine.simulation import SimulationError, as_plan, simulate, simulate_records
from ..errors import RunInterrupted
from . import timing
from .options import RUN_OPTIONS, run_options

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

#: The percentiles :func:`monte_carlo` and :func:`summarize` report by default.
PERCENTILES = (50, 90, 95, 99)
#: the most runs of one :func:`monte_carlo` call: a million runs of even a one-step pipeline take
#: about an hour and their results ~20 MB; beyond it, call it in batches (``seed=`` differs)
MAX_RUNS = 1_000_000


# -- reading a trace ----------------------------------------------------------------------------
#: the critical path of a trace: the one implementation lives in :mod:`.timing` (also behind
#: ``trace.pipeline.critical_path()``)
critical_path = timing.critical_path


def _path_text(path: pd.DataFrame) -> str:
    parts = []
    for step, attempt in zip(path["step"].astype(str), path["attempt"]):
        parts.append(step if attempt == 1 else f"{step}#{attempt}")
    return " → ".join(parts)


def _stage_durations(trace: pd.DataFrame) -> dict[str, float]:
    """Seconds per stage id (first to last row of the stage; 0 if skipped, NaN if never started)."""
    stages = trace[(trace["kind"] == "stage") & trace["iteration"].isna()]  # a looped stage: its own row
    if stages.empty:
        return {}
    spans = stages.groupby("stage", sort=False, observed=True).agg(
        start=("start_s", "min"), end=("end_s", "max")
    )
    return {f"stage:{sid}": float(row.end - row.start) for sid, row in spans.iterrows()}


def _from_records(plan: Any, records: list[tuple]) -> tuple[dict[str, Any], dict[str, float]]:
    """(makespan and status, stage durations) straight from a simulation's records.

    The same numbers as :func:`_outcome` and :func:`_stage_durations` of the trace, without
    building it (each a :class:`~notebook_pipelines.engine.trace.Record`).
    """
    nodes = plan.nodes
    outcome: dict[str, Any] = {}
    spans: dict[str, list] = {}
    for record in records:
        if record.node >= len(nodes):
            continue  # an iteration of a looped node (R46): its looped node's row spans it
        node = nodes[record.node]
        if node.kind == "pipeline":
            outcome = {"makespan_s": record.end_s - record.start_s, "status": record.status}
        elif node.kind == "stage":
            span = spans.setdefault(f"stage:{node.id}", [math.inf, -math.inf])
            if record.start_s is not None:
                span[0] = min(span[0], record.start_s)
                span[1] = max(span[1], record.end_s)
    stages = {key: (end - begin if begin <= end else math.nan) for key, (begin, end) in spans.items()}
    return outcome, stages


def _unsimulatable(trace: pd.DataFrame) -> tuple[str, str] | None:
    """``(fqn, error)`` of the first node that failed because the simulation could not evaluate
    it — an input, condition, spec or looping strategy that does not resolve — or ``None``.

    Such a failure is no executor's (its row has no ``worker``), unlike an injected failure or
    a timeout: it says the design cannot be timed as it stands, so a baseline that has one is
    refused instead of reporting the time to the failure.
    """
    bad = trace[(trace["status"] == "Failed") & trace["worker"].isna() & trace["error"].notna()]
    if bad.empty:
        return None
    row = bad.iloc[0]
    return str(row["fqn"]), str(row["error"])


def _unsimulatable_records(plan: Any, records: list[tuple]) -> tuple[str, str] | None:
    """:func:`_unsimulatable` of a simulation's records (no DataFrame)."""
    for record in records:
        if record.status == "Failed" and record.worker is None and record.error is not None:
            node = plan.nodes[record.node] if record.node < len(plan.nodes) else None
            return (node.fqn if node is not None else f"node {record.node}"), str(record.error)
    return None


def _refuse(what: str, found: tuple[str, str]) -> SimulationError:
    fqn, error = found
    first = error.splitlines()[0] if error else "?"
    return SimulationError(
        f"{what} cannot be simulated as it stands: {fqn} failed before it ran: {first} — fix the "
        "design first (a step with a body declares the outputs others read: Step(..., outputs=['name']); "
        "or give values with outputs={step: {name: value}})"
    )


def _outcome(trace: pd.DataFrame) -> dict[str, Any]:
    root = trace[trace["kind"] == "pipeline"].iloc[0]
    return {"makespan_s": float(root["end_s"] - root["start_s"]), "status": str(root["status"])}


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
    }
    plans = {name: as_plan(target) for name, (target, _) in named.items()}
    _check_shared_keys(plans, shared)
    rows, stage_columns = [], {}
    for name, (_, own) in named.items():
        options = _merged(shared, own)
        with registry.unremembered():  # compare's own runs: the user's runs stay known
            trace = simulate(plans[name], strict=False, run_id=f"compare-{name}", **options)
        found = _unsimulatable(trace)
        if found is not None:
            raise _refuse(f"compare(): design {name!r}", found)
        path = critical_path(trace)
        stages = _stage_durations(trace)
        stage_columns.update(dict.fromkeys(stages))
        steps = trace[trace["kind"] == "step"]
        work = ~steps["fqn"].astype(object).isin(timing.looped_steps(trace))  # a looped row spans its work
        rows.append(
            {
                "design": name,
                **_outcome(trace),
                "critical_path": _path_text(path),
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
            f"run older than the last {registry.MAX_RUNS} in this session): pass it, "
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
    ``attrs`` holds both criticality indexes.

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
    if _is_many_runs(trace):
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


def _is_many_runs(trace: Any) -> bool:
    """True for a history: a frame of the trace schema holding more than one run."""
    from ..engine.measured import is_history

    return is_history(trace) and trace["run_id"].nunique() > 1


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
    after_source = HistoryDurations(history, other, mode, warn=False).changed(durations, options.get("scale"))
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

    from ..definition.model import _canonical_settings
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


# -- Monte Carlo ----------------------------------------------------------------------------------
def monte_carlo(
    pipeline: Any,
    durations: Any = RUN_OPTIONS["durations"],
    *,
    runs: int = 200,
    seed: int = 0,
    default: Any = RUN_OPTIONS["default"],
    failures: Any = RUN_OPTIONS["failures"],
    interventions: Any = RUN_OPTIONS["interventions"],
    outputs: Any = RUN_OPTIONS["outputs"],
    percentiles: Sequence[float] = PERCENTILES,
    progress: bool = False,
    mode: str = "joint",
    engine: str = "auto",
) -> pd.DataFrame:
    """Simulate ``pipeline`` ``runs`` times with sampled durations; one row per run.

    Two engines compute the runs (``attrs["engine"]`` says which ran, ``attrs["engine_reason"]``
    why the vectorised one did not):

    - ``"vectorised"``: where timing depends on durations alone
      (:func:`~notebook_pipelines.engine.vectorised.why_not` decides, and says why not), all
      runs at once with numpy over the plan's structure — every node's start and end exactly as
      the scheduler computes them for the same durations. Sampled durations are drawn per step,
      ``runs`` at a time, so the runs replay *as a batch* (the same ``seed`` and ``runs`` give
      the same result) and the ``seed`` column is missing (``<NA>``); with constant durations
      every run is ``simulate(pipeline, seed=row.seed, …)``, as on the scheduler.
    - ``"scheduler"``: run ``i`` is ``simulate(pipeline, seed=row.seed, **options)`` with the
      same options (and the same defaults) as given here; it replays run by run.
    - ``"auto"`` (the default): the vectorised engine where it applies, else the scheduler. It
      first checks the batch's first run against one scheduler simulation with the same
      durations (and refuses a design whose simulation fails before a step runs, as
      :func:`compare` does).

    Args:
        pipeline: a Pipeline or its Plan (compiled once either way).
        durations, default, failures, interventions, outputs: as for :func:`simulate` (the
            same defaults); give distributions (``lambda rng: rng.lognormal(3, 0.25)``, scipy
            frozen distributions) for what varies, and failure probabilities
            (``{"deploy": 0.1}``). ``durations`` may be a history (measured runs, see
            :mod:`~notebook_pipelines.engine.measured`), resampled by ``mode``;
            ``failures="history"`` injects its measured failure rates.
        runs: how many simulations, at most :data:`MAX_RUNS` (a million). The seeds are made
            one run at a time and the results kept as columns (~17 bytes a run, 8 more per
            stage), so a large ``runs`` costs no memory before the first run.
        seed: run ``i`` uses the i-th child of ``numpy.random.SeedSequence(seed)``.
        percentiles: what :func:`summarize` reports for these runs (kept in ``attrs``).
        progress: show a progress bar (tqdm if installed, else a counter on stderr).
        mode: ``"joint"`` (whole measured runs) or ``"independent"`` (per step), with a history.
        engine: ``"auto"``, ``"vectorised"`` (refused, saying why, where it does not apply) or
            ``"scheduler"``.

    Raises:
        SimulationError: ``runs`` is not a whole number from 1 to :data:`MAX_RUNS`, or an
            option is invalid (checked on the first run).
        RunInterrupted: Ctrl-C (or a kernel interrupt); its ``trace`` is the DataFrame of
            the runs that finished.

    Returns:
        A DataFrame with columns ``run``, ``seed`` (``simulate(p, seed=…)`` replays the run),
        ``makespan_s``, ``status`` and ``stage:<id>`` per stage. ``attrs`` holds plain values
        only (``pipeline``, ``seed``, ``runs``, ``percentiles``, ``engine``, ``engine_reason``,
        ``replay`` — ``"run"`` or ``"batch"`` —, ``mode`` and ``criticality``: ``{step FQN:
        share of runs in which it lies on a critical path}``): a DataFrame in ``attrs``
        would break ``merge``/``concat`` (pandas compares attrs with ``==``), so the summary
        is :func:`summarize` (or :func:`distribution`) of the result rather than an attribute.

    Raises:
        SimulationError: a run fails before one of its steps runs (as :func:`compare` refuses).

    >>> import notebook_pipelines as nbp
    >>> p = nbp.Pipeline("p")
    >>> with p.stage("s") as s:
    ...     with s.parallel():
    ...         _ = s.step("a")
    ...         _ = s.step("b")
    >>> mc = monte_carlo(p, {"a": lambda rng: rng.uniform(1, 2), "b": 1.5}, runs=100)
    >>> bool((mc["makespan_s"] >= 1.5).all()), list(summarize(mc).columns)
    (True, ['runs', 'mean', 'std', 'min', 'p50', 'p90', 'p95', 'p99', 'max'])
    >>> mc.attrs["engine"], mc.attrs["replay"]
    ('vectorised', 'batch')
    """
    from ..engine.simulation import history_source

    if not isinstance(runs, int) or isinstance(runs, bool) or runs < 1:
        raise SimulationError(f"monte_carlo(runs={runs!r}): give a whole number of runs ≥ 1")
    if runs > MAX_RUNS:
        raise SimulationError(
            f"monte_carlo(runs={runs:,}): at most {MAX_RUNS:,} runs in one call; a percentile needs far "
            f"fewer (p99 is stable within a few thousand): call it in batches with seed=0, 1, 2, … "
            "and pd.concat the results if you really need more"
        )
    if engine not in ("auto", "vectorised", "scheduler"):
        raise SimulationError(f"monte_carlo(engine={engine!r}): use 'auto', 'vectorised' or 'scheduler'")
    _check_percentiles(percentiles)
    plan = as_plan(pipeline)
    source = history_source(plan, durations, mode)
    if source is not None:
        durations = source
        if isinstance(failures, str) and failures == "history":
            failures = source.failure_rates() or None
    elif isinstance(failures, str) and failures == "history":
        raise SimulationError('failures="history" takes the failure rates of durations= a history: give one')
    if engine == "scheduler":
        reason = "engine='scheduler' was asked for"
    else:
        from ..engine.vectorised import why_not

        reason = why_not(plan, durations=durations, failures=failures, interventions=interventions)
        if reason is not None and engine == "vectorised":
            raise SimulationError(
                f"monte_carlo(engine='vectorised'): {plan.pipeline.id!r} needs the scheduler: {reason}"
            )
    frame = None
    if reason is None:
        try:
            frame, reason = _vectorised(plan, durations, default, outputs, runs, seed, source)
        except KeyboardInterrupt:  # the batch is all or nothing: no run is finished
            import pandas as pd

            empty = pd.DataFrame({"run": [], "seed": [], "makespan_s": [], "status": []})
            raise RunInterrupted(
                f"monte_carlo interrupted after 0 of {runs:,} runs (the vectorised batch was not finished)",
                empty,
            ) from None
        if frame is None and engine == "vectorised":
            raise SimulationError(f"monte_carlo(engine='vectorised'): {reason}")
    if frame is None:
        options = {
            "durations": durations,
            "default": default,
            "failures": failures,
            "interventions": interventions,
        }
        frame = _scheduled(plan, pipeline, options, outputs, runs, seed, progress, mode)
        frame.attrs.update(engine="scheduler", engine_reason=reason, replay="run")
    frame.attrs.update(seed=seed, percentiles=tuple(percentiles), mode=mode if source is not None else None)
    return frame


def _vectorised(
    plan: Any, durations: Any, default: Any, outputs: Any, runs: int, seed: int, source: Any
) -> tuple[pd.DataFrame | None, str | None]:
    """The vectorised engine's frame, or ``(None, why not)`` when its probe run disagrees."""
    import numpy as np
    import pandas as pd

    from ..engine.vectorised import batch, loop_members, step_durations

    if source is not None:
        drawn = step_durations(plan, None, default, runs, seed)
        measured = source.batch(seed, runs)
        drawn.update(measured)
    else:
        drawn = step_durations(plan, durations, default, runs, seed)
        measured = {}
    for node in loop_members(plan):  # every iteration of a looped node takes the same duration
        if isinstance(drawn.get(node.index), np.ndarray) and node.index not in measured:
            return None, f"{node.fqn} samples its duration inside a loop (each iteration draws its own)"
    constant = all(not isinstance(v, np.ndarray) for v in drawn.values())
    result = batch(plan, drawn, runs)
    expired = result.timeout_reached()
    if expired is not None:
        return None, f"{expired} reaches its timeout in some runs"
    # the probe: the first run on the scheduler with the same durations, node by node
    first = {plan.nodes[i].fqn: float(v[0]) if isinstance(v, np.ndarray) else v for i, v in drawn.items()}
    records = simulate_records(plan, durations=first, default=default, seed=0, outputs=outputs)
    found = _unsimulatable_records(plan, records)
    if found is not None:
        raise _refuse(f"monte_carlo(): {plan.pipeline.id!r}", found)
    for record in records:
        i = record.node
        if i >= len(plan.nodes):
            continue  # an iteration's copy (R46): timed as its looped node, whose row is checked
        if record.status != result.status[i]:
            return (
                None,
                f"its first run on the scheduler differs at {_node_name(plan, i)} (status {record.status})",
            )
        s, e = result.start[i, 0], result.end[i, 0]
        if record.start_s is None:
            if not np.isnan(s):
                return None, f"its first run on the scheduler differs at {_node_name(plan, i)}"
        elif record.start_s != s or record.end_s != e:
            return None, f"its first run on the scheduler differs at {_node_name(plan, i)}"
    columns: dict[str, Any] = {"run": np.arange(runs, dtype="int64")}
    if constant:  # every run is the same simulation: any run's seed replays it
        columns["seed"] = np.array(
            [
                np.random.SeedSequence(seed, spawn_key=(i,)).generate_state(1, np.uint64)[0]
                for i in range(runs)
            ],
            dtype="uint64",
        )
    else:
        columns["seed"] = pd.array([pd.NA] * runs, dtype="UInt64")
    columns["makespan_s"] = result.makespan
    columns["status"] = ["Success"] * runs
    for node in plan.nodes:
        if node.kind == "stage" and node.phase != "rollback" and node.index not in plan.inside_loops():
            key = f"stage:{node.id}"
            if key not in columns:
                columns[key] = result.end[node.index] - result.start[node.index]
    frame = pd.DataFrame(columns)
    crit = result.critical().mean(axis=1)
    frame.attrs.update(
        pipeline=plan.pipeline.id,
        runs=runs,
        engine="vectorised",
        engine_reason=None,
        replay="run" if constant else "batch",
        criticality={
            n.fqn: float(crit[n.index]) for n in plan.nodes if n.kind == "step" and n.phase != "rollback"
        },
    )
    return frame, None


def _node_name(plan: Any, index: int) -> str:
    return plan.nodes[index].fqn if index < len(plan.nodes) else f"node {index}"


def _scheduled(
    plan: Any, pipeline: Any, options: dict, outputs: Any, runs: int, seed: int, progress: bool, mode: str
) -> pd.DataFrame:
    """The scheduler engine: one ``simulate`` per run, seeded run by run."""
    import numpy as np
    import pandas as pd

    # the results as columns, appended run by run: 17 bytes a run, plus 8 a stage
    seeds: array.array = array.array("Q")
    makespans: array.array = array.array("d")
    statuses: list[str] = []
    stage_columns: dict[str, array.array] = {}
    steps = [n for n in plan.nodes if n.kind == "step" and n.phase != "rollback"]
    critical_counts = dict.fromkeys((n.index for n in steps), 0)

    def frame_of() -> pd.DataFrame:
        n = len(makespans)
        columns = {
            "run": np.arange(n, dtype="int64"),
            "seed": np.frombuffer(seeds, dtype="uint64")[:n].copy(),
            "makespan_s": np.frombuffer(makespans, dtype="float64").copy(),
            "status": statuses[:n],
            **{
                key: np.frombuffer(values, dtype="float64")[:n].copy()
                for key, values in stage_columns.items()
            },
        }
        frame = pd.DataFrame(columns)
        name = plan.pipeline.id if plan is not None else getattr(pipeline, "id", None)
        frame.attrs.update(
            pipeline=name,
            runs=n,
            criticality={nodes[i].fqn: (c / n if n else math.nan) for i, c in critical_counts.items()},
        )
        return frame

    nodes = plan.nodes
    try:
        with _Progress(runs, progress) as bar:
            for i in range(runs):
                # the i-th child of SeedSequence(seed), made when needed (spawn(runs) made them all first)
                run_seed = int(np.random.SeedSequence(seed, spawn_key=(i,)).generate_state(1, np.uint64)[0])
                records = simulate_records(
                    plan, seed=run_seed, strict=i == 0, outputs=outputs, mode=mode, **options
                )
                found = _unsimulatable_records(plan, records)
                if found is not None:
                    raise _refuse(f"monte_carlo(): {plan.pipeline.id!r} (run {i}, seed {run_seed})", found)
                outcome, stages = _from_records(plan, records)
                for index in _critical_records(plan, records):
                    if index in critical_counts:
                        critical_counts[index] += 1
                for key, value in stages.items():
                    if key not in stage_columns:  # a stage first seen now: missing in earlier runs
                        stage_columns[key] = array.array("d", [math.nan]) * i
                    stage_columns[key].append(value)
                for key, values in stage_columns.items():
                    if key not in stages:
                        values.append(math.nan)
                seeds.append(run_seed)
                statuses.append(outcome.get("status"))
                # last: a run counts once its makespan is appended
                makespans.append(outcome.get("makespan_s", math.nan))
                bar.update()
    except KeyboardInterrupt:
        done = frame_of()  # only the runs that ended: the interrupted one is not counted
        raise RunInterrupted(
            f"monte_carlo interrupted after {len(makespans)} of {runs:,} runs; "
            "the finished runs are in .trace",
            done,
        ) from None
    return frame_of()


def _critical_records(plan: Any, records: list) -> set[int]:
    """The plan nodes on a critical path of one simulated run (the rule of
    :meth:`~notebook_pipelines.engine.vectorised.Batch.critical`, on each node's span: its
    first start to its last end; skipped and not started nodes are not critical)."""
    n = len(plan.nodes)
    start = [math.nan] * n
    end = [math.nan] * n
    ran = [False] * n
    for r in records:
        i = r.node
        if i >= n or r.start_s is None or r.status in ("Skipped", "NotStarted"):
            continue
        ran[i] = True
        start[i] = r.start_s if math.isnan(start[i]) else min(start[i], r.start_s)
        end[i] = r.end_s if math.isnan(end[i]) else max(end[i], r.end_s)
    out: set[int] = set()

    def walk(node: Any) -> None:
        out.add(node.index)
        for item in node.items:
            children = [c for c in (item.items if item.kind == "parallel" else (item,)) if ran[c.index]]
            if not children:
                continue
            last = max(end[c.index] for c in children)
            for child in children:
                if end[child.index] == last:
                    walk(child)

    if ran[plan.root.index]:
        walk(plan.root)
    return out


def distribution(results: pd.DataFrame, *, ci: float = 0.95, top: int = 5) -> Distribution:
    """The makespan's p50/p90/p95 with order-statistic confidence intervals, and the most critical
    steps, of :func:`monte_carlo` results.

    The interval of the q-th quantile is distribution-free: ``[x_(l), x_(u)]``, the order
    statistics whose ranks bound a Binomial(n, q) count with probability ≥ ``ci`` (exact
    binomial tails; no bootstrap).

    >>> import pandas as pd
    >>> d = distribution(pd.DataFrame({"makespan_s": [float(x) for x in range(1, 101)]}))
    >>> d.percentiles.loc["p50"].tolist()
    [50.5, 40.0, 61.0]
    """
    import numpy as np
    import pandas as pd

    values = np.sort(results["makespan_s"].to_numpy(dtype=float))
    values = values[~np.isnan(values)]
    rows = {}
    for q in (50, 90, 95):
        lo, hi = _order_ci(len(values), q / 100, ci)
        rows[_pname(q)] = {
            "makespan_s": float(np.percentile(values, q)) if len(values) else math.nan,
            "low": float(values[lo - 1]) if lo else math.nan,
            "high": float(values[hi - 1]) if hi else math.nan,
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    crit = pd.Series(results.attrs.get("criticality") or {}, dtype=float, name="criticality")
    crit.index = (
        [str(k).rsplit(".", 1)[-1] for k in crit.index]
        if len(set(str(k).rsplit(".", 1)[-1] for k in crit.index)) == len(crit)
        else crit.index
    )
    return Distribution(results.attrs, table, crit.sort_values(ascending=False, kind="stable"), ci, top)


def _order_ci(n: int, q: float, ci: float) -> tuple[int, int]:
    """1-based ranks ``(l, u)`` with P(x_(l) ≤ ξ_q ≤ x_(u)) ≥ ``ci`` (0s when n is too small)."""
    if n == 0:
        return 0, 0
    alpha = (1 - ci) / 2
    # the Binomial(n, q) cdf F(k) = P(B ≤ k), in logs (lgamma), cumulated
    logs = (
        [
            math.lgamma(n + 1)
            - math.lgamma(k + 1)
            - math.lgamma(n - k + 1)
            + (k * math.log(q) if k else 0.0)
            + ((n - k) * math.log1p(-q) if n - k else 0.0)
            for k in range(n + 1)
        ]
        if n <= 20_000
        else None
    )
    if logs is None:  # large n: the normal approximation of the ranks
        sd = math.sqrt(n * q * (1 - q))
        z = _z(1 - alpha)
        return max(1, math.floor(n * q - z * sd)), min(n, math.ceil(n * q + z * sd) + 1)
    top = max(logs)
    cdf, total = [], 0.0
    for value in logs:
        total += math.exp(value - top)
        cdf.append(total)
    cdf = [c / total for c in cdf]
    lo = 0
    for k in range(1, n + 1):  # the largest l with F(l-1) ≤ alpha
        if cdf[k - 1] <= alpha:
            lo = k
    hi = 0
    for k in range(1, n + 1):  # the smallest u with F(u-1) ≥ 1-alpha
        if cdf[k - 1] >= 1 - alpha:
            hi = k
            break
    return lo, hi


def _z(p: float) -> float:
    """The standard normal quantile (bisection on erf)."""
    lo, hi = -10.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


class Distribution:
    """What :func:`distribution` returns: ``percentiles`` (rows p50/p90/p95; ``makespan_s``,
    ``low``, ``high``), ``criticality`` (a Series, by step) and a one-paragraph repr that says
    which engine ran."""

    def __init__(self, attrs: dict, percentiles: Any, criticality: Any, ci: float, top: int):
        self.attrs, self.percentiles, self.criticality, self.ci, self.top = (
            attrs,
            percentiles,
            criticality,
            ci,
            top,
        )

    def __repr__(self) -> str:
        a = self.attrs
        engine = a.get("engine", "?")
        how = {
            "batch": "runs replay as a batch: the same seed gives the same result",
            "run": "each run replays with simulate(p, seed=row.seed)",
        }.get(a.get("replay"), "")
        why = f" ({a['engine_reason']})" if engine == "scheduler" and a.get("engine_reason") else ""
        lines = [
            f"monte_carlo of {a.get('pipeline')!r}: {a.get('runs', 0):,} runs "
            f"on the {engine} path{why}; {how}"
        ]
        for name, row in self.percentiles.iterrows():
            lines.append(
                f"  {name} makespan {row['makespan_s']:.6g} s  "
                f"({self.ci:.0%} CI {row['low']:.6g} – {row['high']:.6g})"
            )
        if len(self.criticality):
            shown = ", ".join(f"{k} {v:.0%}" for k, v in self.criticality.head(self.top).items())
            lines.append(f"  most critical: {shown}")
        return "\n".join(lines)


def summarize(results: pd.DataFrame, percentiles: Sequence[float] | None = None) -> pd.DataFrame:
    """Distribution of each time column of :func:`monte_carlo` results: one row per column.

    Columns: ``runs`` (non-missing values), ``mean``, ``std``, ``min``, ``p<q>`` for each
    percentile (linear interpolation), ``max``. Rows: ``makespan_s``, then ``stage:<id>``
    (runs where a stage never started are left out of its row).

    Args:
        results: what :func:`monte_carlo` returned (or any frame with those columns).
        percentiles: default: those given to :func:`monte_carlo`, else ``PERCENTILES``.

    >>> import pandas as pd
    >>> summarize(pd.DataFrame({"makespan_s": [1.0, 2.0, 3.0, 4.0]}), percentiles=(50,))
                runs  mean       std  min  p50  max
    makespan_s     4   2.5  1.290994  1.0  2.5  4.0
    """
    import numpy as np
    import pandas as pd

    if percentiles is None:
        percentiles = results.attrs.get("percentiles", PERCENTILES)
    _check_percentiles(percentiles)
    columns = [c for c in results.columns if c == "makespan_s" or str(c).startswith("stage:")]
    rows = {}
    for column in columns:
        values = results[column].to_numpy(dtype=float)
        values = values[~np.isnan(values)]
        stats: dict[str, float] = {"runs": len(values)}
        if len(values):
            stats.update(
                mean=values.mean(), std=values.std(ddof=1) if len(values) > 1 else np.nan, min=values.min()
            )
            stats.update({_pname(q): float(np.percentile(values, q)) for q in percentiles})
            stats["max"] = values.max()
        rows[column] = stats
    names = ["runs", "mean", "std", "min", *(_pname(q) for q in percentiles), "max"]
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=names)
    table["runs"] = table["runs"].astype(int)
    return table


def _pname(q: float) -> str:
    return f"p{q:g}"


def _check_percentiles(percentiles: Sequence[float]) -> None:
    bad = [q for q in percentiles if not (isinstance(q, int | float) and 0 <= q <= 100)]
    if bad:
        raise SimulationError(f"percentiles {bad} are not numbers between 0 and 100")


class _Progress:
    """tqdm when installed, else a one-line counter on stderr; nothing when not asked."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.done, self.bar = total, enabled, 0, None
        self.step = max(1, total // 100)

    def __enter__(self) -> _Progress:
        if self.enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                self.bar = None
            else:
                self.bar = tqdm(total=self.total, desc="monte_carlo", unit="run")
        return self

    def update(self) -> None:
        self.done += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
        elif self.done % self.step == 0 or self.done == self.total:
            sys.stderr.write(f"\rmonte_carlo: {self.done}/{self.total} runs")
            sys.stderr.flush()

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            sys.stderr.write("\n")
