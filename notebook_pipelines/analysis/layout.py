"""The design assistant: find the parallelism a pipeline leaves on the table.

``suggest_layout(p)`` reads what each step really depends on and proposes faster layouts that
Harness can express, each simulated with the same durations as the original.

**Units.** Inside a stage the units are the items of its execution list (a parallel block
counts as its members): a step, or a step group kept whole (its settings, rollback list and
looping strategy stay with it; looped nodes are units, R46–R54). At the pipeline level the
units are the stages. Rollback lists are copied unchanged.

**Stage boundaries.** Steps never leave their stage, not even with ``across_stages=True``: a
stage carries settings its steps run under — failure strategies and rollback (R7, R35),
variables (``<+stage.variables.x>``), infrastructure and resource key (D8), its ``when`` and
looping strategy — so a step moved to another stage would run differently. By default the
stages also keep their written layout (the order is a dependency, and the bound counts it).
``across_stages=True`` lets stages that nothing orders share parallel blocks of stages (R11):
a stage still runs after every stage it reads an output or status of (a step reference, or
the stage's own ``when``), after the first of a user constraint, and stages that share a
resource key queue in list order (D8); stages that meet at a barrier stay in one parallel
block (R56, R58). Harness has no group of stages, so a stage-level layout is a series of
parallel blocks (levels, ASAP and ALAP): a chain of two stages cannot run beside a third one
and the bound (the longest chain) may not be reachable — ``gap`` says by how much.

**Dependencies** (what a layout must keep, everything else is relaxed and listed):

* every ``<+…>`` reference that reads a *finished value* — an output or a status — in a
  ``when`` condition, a retry condition, an input or a typed step's spec (R44, R45), a
  looping strategy (a matrix axis or repeat list resolved when the node starts, R49, R50):
  the reader's unit runs after the unit that holds the target; names,
  identifiers and variables are part of the definition and order nothing. The references
  are walked by the same walker validation uses
  (:func:`~notebook_pipelines.definition.references.node_of_path`);
* a unit whose ``when`` is not the default ``Success`` (a ``Failure``/``All`` step, such as a
  cleanup or a notification, R29/R30), and a Barrier step (R55), keep every unit before them
  before them and every unit after them after them;
* user constraints ``("build", "deploy")``: ``deploy`` never starts before ``build`` ends
  (identifiers of steps, step groups or stages);
* resource keys (D8): stages sharing a key never overlap, and the estimate knows it;
* with the default ``across_stages=False``, the written order of the stages.

**Layouts Harness can express** (R4, R5, R11, R12, D1): a stage is a serial list of items, an
item is a unit or a parallel block, and a parallel block holds units or *new* step groups,
each a serial list of steps and parallel blocks of steps (``classic`` rules: groups do not
nest, so an existing group never goes into a new one). Pipelines hold stages and parallel
blocks of stages. A dependency graph is in general not series-parallel; the assistant tries
several embeddings and keeps the best by estimate, then by simulation:

* ``levels`` — ASAP layering (every unit as early as its dependencies allow), and ALAP (as
  late as they allow, which keeps short side branches out of the way of resource queues);
* ``lanes`` — list scheduling (critical-path priority, a unit continues the lane of its
  latest predecessor): every lane becomes a step group holding a chain, the lanes run in one
  parallel block, and a join closes the block only where a unit waits for another lane;
* ``series-parallel`` — a recursive decomposition: independent parts in parallel, otherwise
  the split into "before" and "after" (at each finishing time of the ASAP schedule) with the
  best estimate, searched with memoisation;
* with ``max_parallel``: lanes capped at ``max_parallel`` (list scheduling with
  critical-path priority, longest first), levels cut into blocks of at most ``max_parallel``,
  and, for independent steps, the exact best partition into lanes (a branch-and-bound search
  while the stage is small). Scheduling with a cap is NP-hard in general: each suggestion
  reports ``bound_s`` — the longest dependency chain (the ``needs`` of a parallel block's
  members, D14, count as dependencies: the layouts keep them), and the total work ÷
  ``max_parallel`` — and ``gap`` (how far above it the makespan is).

``max_parallel`` caps the whole pipeline, not each stage: stages share a parallel block
(with ``across_stages=True``) only while their layouts' widths add up to at most the cap,
and stages written side by side whose layouts together exceed it run one after another in
the written order. The width counts units: a step group or a looped step counts as one
(its inside keeps its own layout), and a looped stage fills the cap. The bound is over the
same dependencies: each stage takes at least its longest chain and its work ÷ the cap,
chained along the stage order (written, or the stage dependencies with ``across_stages``).

References to a step that moves into a new group are rewritten (its FQN gains
``.steps.GROUP`` — R42) wherever a ``<+…>`` can live — conditions, retry conditions and every
other field of a failure strategy, inputs, spec, variables, looping strategies, timeouts,
rollback steps — through one walk, :func:`rewrite_expressions`. A candidate that does not
validate is dropped; the layouts respect the dependencies by construction, and
``tests/test_layout.py`` checks every suggestion's simulated trace (each dependency's second
starts after its first ends).

**Distinct suggestions.** Candidates are compared by :func:`layout_key` (parallel blocks as
sets, new step groups by what they hold, not their names): a layout found by two strategies
is simulated once. Of suggestions with the same makespan only the one that relaxes the fewest
orderings is kept (then the one with fewer new groups): another with the same time is no
better. At most ``MAX_SUGGESTIONS`` are returned.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..definition.model import Parallel, Pipeline, Stage, StepGroup, verb
from ..errors import LayoutError, PipelineError
from .layout_design import Design, references
from .layout_rewrite import rewrite_expressions

__all__ = ["Suggestion", "Suggestions", "references", "rewrite_expressions", "suggest_layout"]

#: how many suggestions to return at most
MAX_SUGGESTIONS = 5


# -- the result -------------------------------------------------------------------------------
@dataclasses.dataclass
class Suggestion:
    """One suggested layout.

    Attributes:
        pipeline: the new ``Pipeline`` (same steps, bodies and settings; new containers).
        makespan_s: its simulated makespan, with the same durations as the original.
        speedup: the original's makespan ÷ this one's.
        bound_s: a lower bound on any layout's makespan (see :func:`suggest_layout`).
        gap: how far above the bound the makespan is (``makespan_s / bound_s - 1``).
        changes: what moved where, in words.
        relaxed: orderings of the original that no dependency explains and this layout drops,
            as ``(first, second)`` identifiers — pin those that hide a side effect with
            ``constraints=``.
        strategy: how the layout was found (``levels``, ``lanes``, ``series-parallel``…).
        new_groups: the step groups the layout adds, as ``(stage id, group id)``.
    """

    pipeline: Pipeline
    makespan_s: float
    speedup: float
    bound_s: float
    changes: list[str]
    relaxed: list[tuple[str, str]]
    strategy: str
    trace: Any = dataclasses.field(default=None, repr=False)
    new_groups: frozenset = dataclasses.field(default=frozenset(), repr=False)
    #: with ``trace=`` a history: the makespan's median and 95th percentile over Monte Carlo
    #: runs on the measured durations (the suggestions are ranked by ``p50_s``)
    p50_s: float | None = None
    p95_s: float | None = None

    @property
    def gap(self) -> float:
        """How far above ``bound_s`` the makespan is (0.25: 25 % above). The bound keeps the
        same dependencies as the search (the stage order too, unless ``across_stages``), but
        not the shape Harness imposes (no group of stages, no nested groups under
        ``classic``) nor that scheduling under ``max_parallel`` is NP-hard: a gap is not
        always reachable."""
        return self.makespan_s / self.bound_s - 1.0 if self.bound_s > 0 else 0.0

    def to_yaml(self, path: Any = None) -> str:
        """The suggestion as Harness v0 YAML (written to ``path`` when given)."""
        return self.pipeline.to_yaml(path)

    def __repr__(self) -> str:
        return (
            f"Suggestion({self.strategy!r}, makespan_s={self.makespan_s:g}, speedup={self.speedup:.2f}, "
            f"bound_s={self.bound_s:g}, changes={len(self.changes)}, relaxed={len(self.relaxed)})"
        )


class Suggestions(list):
    """The suggestions, best first; ``original_s`` and ``bound_s`` for reference.

    ``notes`` say what the search kept fixed (stages in their order without
    ``across_stages=True``, stages that meet at barriers, how ``max_parallel`` treats stages);
    the bound counts those as dependencies. Shows as a table in a notebook (and the best
    layout's picture beside the original's).
    """

    def __init__(
        self,
        items: Iterable[Suggestion],
        original: Pipeline,
        original_s: float,
        bound_s: float,
        max_parallel: int | None,
        notes: Sequence[str] = (),
    ):
        super().__init__(items)
        self.original = original
        self.original_s = original_s
        self.bound_s = bound_s
        self.max_parallel = max_parallel
        self.notes = list(notes)
        self.original_p50_s: float | None = None
        self.original_p95_s: float | None = None

    @property
    def best(self) -> Suggestion | None:
        return self[0] if self else None

    def table(self) -> list[dict[str, Any]]:
        """One row per suggestion (plain data; ``pd.DataFrame(s.table())`` for a frame)."""
        return [
            {
                "strategy": s.strategy,
                "makespan_s": round(s.makespan_s, 6),
                "speedup": round(s.speedup, 3),
                "bound_s": round(s.bound_s, 6),
                "gap": round(s.gap, 3),
                "relaxed": len(s.relaxed),
                **({"p50_s": round(s.p50_s, 6), "p95_s": round(s.p95_s, 6)} if s.p50_s is not None else {}),
            }
            for s in self
        ]

    def text(self) -> str:
        """A plain-text report (what the CLI and ``repr`` print)."""
        cap = f", at most {self.max_parallel} at once" if self.max_parallel else ""
        lines = [
            f"original {self.original.id!r}: {self.original_s:g} s; lower bound {self.bound_s:g} s{cap}",
            *(f"({note})" for note in self.notes),
        ]
        if self.original_p50_s is not None:
            lines.insert(
                1, f"original p50 {self.original_p50_s:g} s, p95 {self.original_p95_s:g} s (measured runs)"
            )
        if not self:
            lines.append("no faster layout found")
        for i, s in enumerate(self, 1):
            spread = f"p50 {s.p50_s:g} s, p95 {s.p95_s:g} s; " if s.p50_s is not None else ""
            lines.append(
                f"{i}. {s.strategy}: {spread}{s.makespan_s:g} s (x{s.speedup:.2f}, "
                f"{100 * s.gap:.0f}% above the bound)"
            )
            lines.extend(f"   - {change}" for change in s.changes)
            if s.relaxed:
                shown = ", ".join(f"{a} → {b}" for a, b in s.relaxed[:8])
                more = f" (+{len(s.relaxed) - 8} more)" if len(s.relaxed) > 8 else ""
                lines.append(f"   relaxed: {shown}{more}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        return verb("suggestions_html")(self)  # the views draw it (wired by the facade)


# -- suggest_layout ---------------------------------------------------------------------------
def suggest_layout(
    p: Pipeline | None = None,
    durations: Mapping | Any = None,
    default: Any = 1.0,
    trace: Any = None,
    constraints: Iterable[tuple[str, str]] = (),
    max_parallel: int | None = None,
    rules: str | None = None,
    *,
    across_stages: bool = False,
) -> Suggestions:
    """Faster layouts of ``p`` that keep every dependency, best first.

    Args:
        p: the pipeline (with ``trace=`` alone: the pipeline that ran it).
        durations, default: as for :func:`~notebook_pipelines.simulate`; the original and every
            suggestion are simulated with them (seed 0).
        trace: a real or simulated trace of ``p``: its measured step durations are used
            ("make my last run faster"). A history (many runs, ``nbp.read_history``): the
            search uses the steps' mean durations, then the original and each suggestion are
            simulated :data:`HISTORY_RUNS` times on durations resampled from the measured runs
            (joint, seed 0); suggestions are ranked by that p50 (``p50_s``, and ``p95_s`` shown;
            one not faster at the median is dropped), the original's in ``original_p50_s``.
        constraints: ``(first, second)`` identifiers: ``second`` never starts before ``first``
            ends.
        max_parallel: at most this many units at once in the whole pipeline (a step group or
            a looped step counts as one; see the module notes).
        rules: ``"classic"`` or ``"current"`` (default: the pipeline's); new groups never nest.
        across_stages: ``False`` (the default) keeps the stages' written layout; ``True`` lets
            stages that no dependency orders run in parallel blocks of stages (R11). Steps
            never move between stages (a stage's settings would change how they run).

    Returns:
        :class:`Suggestions` (a list of :class:`Suggestion`, best first, distinct layouts, one
        per makespan; empty when nothing beats the original), with ``original_s``,
        ``bound_s`` and ``notes`` (what the search kept fixed). A suggestion's simulation
        succeeds; one that is faster only because it fails is dropped.

    Raises:
        LayoutError: the simulation of the original does not succeed (its time would be the
            time to the failure): the message lists the steps that failed and why. A sketch —
            steps with durations and no bodies — simulates: each such step publishes a
            placeholder for the output variables read from it.

    >>> import notebook_pipelines as nbp
    >>> p = nbp.Pipeline("p")
    >>> with p.stage("s") as s:
    ...     _ = s.step("a", duration=2)
    ...     _ = s.step("b", duration=3)
    >>> best = suggest_layout(p)[0]
    >>> best.makespan_s, best.bound_s, best.relaxed
    (3.0, 3.0, [('a', 'b')])
    """
    from ..engine import registry

    p = _pipeline_of(p, trace)
    _check_options(max_parallel, rules or p.rules)
    plan = p.plan()
    base, known = _baseline(plan, trace, durations, default)
    _check_baseline(base, p.id)
    original_s = _makespan(base)
    pairs = _constraints(constraints, plan, p.id)
    design = Design(p, plan, _rows(base), references(plan), pairs, max_parallel, bool(across_stages))
    found, plans = _simulated_designs(design, p, known, default, original_s)
    kept = _distinct(found)[:MAX_SUGGESTIONS]
    original_p = None
    if trace is not None and _is_history(trace):  # rank by p50 on the measured runs, show p95
        original_p = _percentiles(plan, trace, default)
        kept = _ranked_by_history(kept, plans, trace, default, original_p[0])
    for s in kept:  # a suggestion's trace is one this kernel made: replay and what_if find its plan
        registry.remember(s.trace["run_id"].iloc[0], plans[id(s)], s.trace)
    out = Suggestions(kept, p, original_s, design.bound, max_parallel, design.notes)
    if original_p is not None:
        out.original_p50_s, out.original_p95_s = original_p
        out.notes.append(
            f"ranked by the p50 makespan of {HISTORY_RUNS:,} runs resampled from the history's "
            f"{trace['run_id'].nunique()} measured runs (joint); makespan_s uses their mean durations"
        )
    return out


def _pipeline_of(p: Pipeline | None, trace: Any) -> Pipeline:
    """``p``, or the pipeline that ran ``trace`` when ``p`` is not given."""
    from .whatif import plan_for

    if p is not None:
        return p
    if trace is None:
        raise LayoutError("suggest_layout needs a pipeline, or a trace= of one")
    return plan_for(trace).pipeline


def _check_options(max_parallel: Any, rules: Any) -> None:
    if max_parallel is not None and (not isinstance(max_parallel, int) or max_parallel < 1):
        raise LayoutError(f"max_parallel must be a positive integer, not {max_parallel!r}")
    if rules not in ("classic", "current"):
        raise LayoutError(f"rules must be 'classic' or 'current', not {rules!r}")


def _baseline(plan: Any, trace: Any, durations: Any, default: Any) -> tuple[Any, dict[str, float]]:
    """The original's simulation (on ``trace``'s measured durations when given) and the step
    durations every suggestion is simulated with, by the original's FQNs."""
    from ..engine import registry
    from ..engine.simulation import simulate
    from .whatif import measured

    with registry.unremembered():  # the assistant's own simulations: the user's runs stay known
        if trace is not None:
            known = _check_trace_of(plan, trace, measured(trace)[0])
            base = simulate(plan, durations=_by_old_fqn(known, {}), default=default, seed=0)
        else:
            base = simulate(plan, durations=durations, default=default, seed=0)
            known, _ = measured(base)
    return base, known


def _check_trace_of(plan: Any, trace: Any, known: dict[str, float]) -> dict[str, float]:
    """``known`` (measured seconds by the trace's step FQNs) with the plan's steps matched as a
    history's durations match them (:mod:`~notebook_pipelines.engine.measured`): by FQN, then by
    step id when that id names one measured step (a CI history's jobs, laid out anew by
    ``pipeline_from_history``). A trace that shares no node with ``plan`` (another pipeline's) is
    refused: its durations would all be ignored, every step simulated with ``default``."""
    from ..engine.measured import step_sources

    out = dict(known)
    matched = False
    for index, source in step_sources(plan, known).items():
        fqn = plan.nodes[index].fqn
        if source != fqn:  # found by its step id
            out[fqn] = known[source]
            matched = True
    rows = trace[trace["kind"] != "pipeline"]
    if "iteration" in rows.columns:  # an iteration's rows are named with its postfix (R46)
        rows = rows[rows["iteration"].isna()]
    own = rows["fqn"].dropna().astype(str)
    if len(own) and not matched and not set(own) & (plan.by_fqn.keys() - {plan.root.fqn}):
        steps = [n.id for n in plan.nodes if n.kind == "step"][:8]
        theirs = sorted({f.rsplit(".", 1)[-1] for f in own})[:8]
        raise LayoutError(
            f"suggest_layout(trace=…): the trace is not of {plan.pipeline.id!r}: it has none of its nodes "
            f"(steps {', '.join(steps)}; the trace's: {', '.join(theirs)}): give a trace or history of "
            "this pipeline, or leave trace= out"
        )
    return out


def _constraints(constraints: Iterable[Any], plan: Any, name: str) -> list[tuple[str, str]]:
    """The user's ``(first, second)`` constraints, each naming a step, step group or stage."""
    pairs = [_constraint(c) for c in constraints]
    names = {n.id for n in plan.nodes if n.kind != "pipeline"}
    for a, b in pairs:
        for x in (a, b):
            if x not in names:
                raise LayoutError(
                    f"constraint ({a!r}, {b!r}): no step, step group or stage {x!r} in {name!r}"
                )
    return pairs


def _simulated_designs(
    design: Design, p: Pipeline, known: dict[str, float], default: Any, original_s: float
) -> tuple[list[Suggestion], dict[int, Any]]:
    """Every distinct design that validates and, simulated, succeeds faster than the original;
    and ``{id(suggestion): its compiled plan}``."""
    from ..engine import registry
    from ..engine.simulation import simulate

    found = []
    plans: dict[int, Any] = {}
    seen = {design.signature(design.original_layouts())}
    layouts_seen = {layout_key(p)}
    for strategy, layouts in design.designs():
        signature = design.signature(layouts)
        if signature in seen:
            continue
        seen.add(signature)
        candidate, moved = design.build(layouts)
        key = layout_key(candidate, _new_groups(moved))
        if key in layouts_seen:  # the same layout by another route (or the original itself)
            continue
        layouts_seen.add(key)
        try:
            candidate_plan = candidate.plan()  # validated and compiled once
        except PipelineError:
            continue
        with registry.unremembered():
            sim = simulate(candidate_plan, durations=_by_old_fqn(known, moved), default=default, seed=0)
        makespan = _makespan(sim)
        if makespan >= original_s - 1e-9 or _status(sim) != "Success":
            continue  # slower, or faster only because it fails
        suggestion = Suggestion(
            candidate,
            makespan,
            original_s / makespan if makespan > 0 else math.inf,
            design.bound,
            design.changes(layouts, moved),
            design.relaxed(layouts),
            strategy,
            sim,
            frozenset(_new_groups(moved)),
        )
        found.append(suggestion)
        plans[id(suggestion)] = candidate_plan
    return found, plans


def _distinct(found: list[Suggestion]) -> list[Suggestion]:
    """The suggestions by makespan, one per makespan: a tie is no better unless it relaxes fewer
    orderings (then fewer new groups)."""
    found = sorted(found, key=lambda s: (s.makespan_s, len(s.relaxed), len(s.new_groups), s.strategy))
    kept: list[Suggestion] = []
    for s in found:
        if not any(_same_time(k.makespan_s, s.makespan_s) and len(k.relaxed) <= len(s.relaxed) for k in kept):
            kept.append(s)
    return kept


def _ranked_by_history(
    kept: list[Suggestion], plans: dict[int, Any], history: Any, default: Any, original_p50: float
) -> list[Suggestion]:
    """The suggestions faster than the original at the median of Monte Carlo runs resampled from
    ``history``, ranked by that p50 (then p95); each gets its ``p50_s`` and ``p95_s``."""
    for s in kept:
        s.p50_s, s.p95_s = _percentiles(plans[id(s)], history, default)
    kept = [s for s in kept if s.p50_s < original_p50 - 1e-9]  # faster at the median too
    kept.sort(key=lambda s: (s.p50_s, s.p95_s, s.makespan_s, len(s.relaxed)))
    return kept


#: Monte Carlo runs per design when ``suggest_layout(trace=)`` is a history
HISTORY_RUNS = 2000


def _is_history(trace: Any) -> bool:
    return "run_id" in trace.columns and trace["run_id"].nunique() > 1


def _percentiles(plan: Any, history: Any, default: Any) -> tuple[float, float]:
    """(p50, p95) of the makespan of ``plan`` over Monte Carlo runs resampled from ``history``."""
    import warnings

    from ..engine import registry
    from ..engine.measured import HistoryDurations
    from .montecarlo import monte_carlo

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the original's run warns once about unmeasured steps
        source = HistoryDurations(history, plan, "joint", warn=False)
    with registry.unremembered():
        mc = monte_carlo(plan, source, runs=HISTORY_RUNS, seed=0, default=default)
    values = mc["makespan_s"]
    return float(values.quantile(0.5)), float(values.quantile(0.95))


def _status(trace: Any) -> str:
    root = trace[trace["kind"] == "pipeline"]
    return str(root["status"].iloc[0]) if len(root) else "NotStarted"


def _check_baseline(base: Any, name: str) -> None:
    """Refuse to design from a simulation of the original that did not succeed: its makespan
    is the time to the failure, not the pipeline's."""
    from ..engine.running import failure_lines

    status = _status(base)
    if status == "Success":
        return
    lines = failure_lines(base) or ["  (no step failed: see the trace's reason column)"]
    raise LayoutError(
        f"suggest_layout: the simulation of {name!r} ended {status}, so its time is not the pipeline's:\n"
        + "\n".join(lines[:5])
        + ("\n  …" if len(lines) > 5 else "")
        + "\nfix it first (p.simulate() shows the trace): a step that reads an output of a step with a "
        "body must declare it (Step(..., outputs=['name'])); a step that times out needs a shorter "
        "duration or a longer timeout"
    )


def _same_time(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def _new_groups(moved: Mapping[str, str]) -> set[tuple[str, str]]:
    """``(stage id, group id)`` of the new groups, from ``{new FQN: old FQN}`` of moved steps."""
    out = set()
    for new in moved:
        stage = new.split(".", 3)[2]
        out.add((stage, new.rsplit(".steps.", 1)[0].rsplit(".", 1)[1]))
    return out


def layout_key(p: Pipeline, new_groups: Iterable[tuple[str, str]] = ()) -> tuple:
    """The canonical form of ``p``'s layout: equal for two layouts that run the same way.

    Parallel blocks are sets (their list order does not matter, R5/R11), the new step groups
    ``new_groups`` (``(stage id, group id)``) are known by what they hold, not their names;
    everything else by its identifier (an existing group's inside never changes).

    >>> import notebook_pipelines as nbp
    >>> def two(first, second):
    ...     p = nbp.Pipeline("p")
    ...     with p.stage("s") as s:
    ...         with s.parallel():
    ...             with s.step_group(first) as g:
    ...                 _ = g.step("a")
    ...             _ = s.step("b")
    ...     return p
    >>> layout_key(two("lane_1", "x"), {("s", "lane_1")}) == layout_key(two("lane_2", "y"), {("s", "lane_2")})
    True
    """
    new = set(new_groups)

    def item(x: Any, stage: str) -> Any:
        if isinstance(x, Parallel):
            return ("parallel", tuple(sorted((item(m, stage) for m in x.items), key=repr)))
        if isinstance(x, Stage):
            return ("stage", x.id, tuple(item(m, x.id) for m in x.items))
        if isinstance(x, StepGroup) and (stage, x.id) in new:
            return ("new group", tuple(item(m, stage) for m in x.items))
        return x.id

    return tuple(item(x, "") for x in p.stages)


def _constraint(c: Any) -> tuple[str, str]:
    if (
        isinstance(c, Sequence)
        and not isinstance(c, str)
        and len(c) == 2
        and all(isinstance(x, str) for x in c)
    ):
        return c[0], c[1]
    raise LayoutError(f"a constraint is a pair of identifiers (first, second), not {c!r}")


def _makespan(trace: Any) -> float:
    root = trace[trace["kind"] == "pipeline"]
    return float(root["end_s"].max() - root["start_s"].min())


def _rows(trace: Any) -> dict[str, float]:
    done = trace[trace["start_s"].notna() & trace["end_s"].notna()]
    spans = (done["end_s"] - done["start_s"]).groupby(done["fqn"].astype(str), sort=False).max()
    return {str(k): float(v) for k, v in spans.items()}


def _by_old_fqn(known: dict[str, float], moved: dict[str, str]) -> Any:
    """A ``(node, rng) -> seconds`` that finds a node's duration under its original FQN."""

    def duration(node: Any, rng: Any) -> float | None:
        fqn = node.fqn
        for new, old in moved.items():
            if fqn.startswith(new):
                fqn = old + fqn[len(new) :]
                break
        return known.get(fqn)

    return duration
