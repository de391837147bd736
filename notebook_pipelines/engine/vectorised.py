"""Many simulated runs at once, with numpy, where timing depends only on durations (issue 28).

Design notes
------------
When no step can fail, wait, be asked, queue for a resource or loop, a run's timing is a
function of its step durations alone, over the plan's series-parallel structure: a serial
list adds (an item starts when the one before it ends), a parallel block takes the max (its
items start together; the next item starts when the last ends), a container starts when it is
entered and ends with its last child, and a step ends at ``start + duration``. :func:`batch`
computes that for every sampled run at once, with the same float64 operations the scheduler
does on its virtual clock (``end = start + duration``, ``max`` of the ends), so every node's
start and end agree *exactly* with :func:`~.simulation.simulate` given the same durations
(``tests/test_vectorised.py`` checks it with Hypothesis over random pipelines).

:func:`why_not` is the one place that decides whether a plan and its options qualify; it says
why when they do not (and :func:`~notebook_pipelines.analysis.whatif.monte_carlo` then runs
the scheduler).

Sampling and replay: the scheduler draws each (run, step) from its own seeded stream, so one
run replays with ``simulate(p, seed=row.seed)``. A batch cannot afford one Generator per
(run, step): it draws each step's ``runs`` values at once from one stream per step, seeded
with ``(seed, the step's FQN)`` (common random numbers across designs, as in ``simulate``). A
sampler ``lambda rng: rng.lognormal(4, 0.3)`` is called once with a proxy whose numpy
Generator methods take ``size=runs``; a scipy frozen distribution is asked ``rvs(size=runs)``;
a sampler that does not return ``runs`` values that way is called once per run on the step's
stream. A batch therefore replays *as a batch* (same seed and runs → the same result), not run
by run; with constant durations both paths agree run for run. A history (``durations=h``) is
drawn by :class:`~.measured.HistoryDurations` from one stream for the whole batch, while the
scheduler draws each run's measured run from that run's seed: the two paths resample the same
runs with the same probabilities, but not in the same order.

DAGs (D14): a parallel block whose members have ``needs`` is a DAG inside the block. Its
members are timed in a topological order (the plan's ``order``): a member starts at the max of
the block's start and the ends of its needs (``np.maximum``, the exact float the scheduler's
virtual clock jumps to: the last need's end), a member whose need was skipped is skipped
there (default condition), and the block ends with the max of its members' ends — the longest
path over the needs edges, exactly as the scheduler times it
(``tests/test_vectorised.py`` draws random needs DAGs inside the blocks of its random
pipelines). A CI history's DAG (GitHub/GitLab ``needs``) is such a block:
:func:`~notebook_pipelines.formats.history_tools.pipeline_from_history` lays it out so.
"""

from __future__ import annotations

from typing import Any

from ..definition.callables import is_sampler
from .sampling import draw_runs, fqn_key, to_seconds
from .steptable import MISSING, StepTable

__all__ = ["Batch", "StepDraws", "batch", "why_not"]

_RUN_STATUSES = ("Success", "All")


def why_not(
    plan: Any,
    *,
    durations: Any = None,
    failures: Any = None,
    interventions: Any = None,
    iterations: Any = None,
) -> str | None:
    """``None`` when :func:`batch` times ``plan`` exactly as the scheduler would; else why not.

    Declined: failure injection, scripted interventions, a ``durations`` function of the node
    (``(node, rng) -> seconds``), conditions on run-time values (a ``when`` with a condition),
    barriers, resource queues (a stage's ``resource``) and looping strategies whose iterations
    do not all run side by side (run-time items, ``maxConcurrency`` below their number, nested
    loops); a loop whose iterations all start at once is timed as one run of the node, when each
    iteration takes the same duration (a constant or a history's: ``monte_carlo`` sends a sampled
    duration inside a loop to the scheduler, as each iteration draws its own there). Failure strategies
    (retries, manual interventions) cannot act when no step fails. Timeouts are allowed: a
    batch in which some node reaches its timeout is sent to the scheduler afterwards
    (:meth:`Batch.timeout_reached`).

    >>> import notebook_pipelines as nbp
    >>> p = nbp.Pipeline("p")
    >>> with p.stage("s") as s:
    ...     _ = s.step("a", timeout="1m")
    >>> why_not(p.plan()) is None
    True
    >>> why_not(p.plan(), failures={"a": 0.1})
    'failures= injects failures (retries and failure strategies need the scheduler)'
    """
    if failures:
        return "failures= injects failures (retries and failure strategies need the scheduler)"
    if interventions:
        return "interventions= scripts manual interventions"
    if iterations:
        return "iterations= sets run-time loop counts"
    if callable(durations) and not hasattr(durations, "items") and not _is_history(durations):
        return "durations= is a function of the node ((node, rng) -> seconds), called per run and step"
    for node in plan.nodes:
        if node.kind == "parallel" or node.phase == "rollback":
            continue
        what = f"{node.kind.replace('_', ' ')} {node.fqn}"
        if node.strategy is not None:
            why = _loop_declined(plan, node)
            if why is not None:
                return f"{what} {why}"
        when = node.when
        if when is not None and when.condition is not None:
            return f"{what} has a condition on run-time values ({when.condition!r})"
        if when is not None and when.status not in (*_RUN_STATUSES, "Failure"):
            return f"{what} has the status condition {when.status!r}"
        if node.barrier is not None:
            return f"{what} is a barrier"
        if node.resource is not None:
            return f"{what} queues for the resource {node.resource!r}"
    return None


def _loop_declined(plan: Any, node: Any) -> str | None:
    """Why a looped node cannot be timed as one run of itself, or None.

    Its iterations all start at once (no ``maxConcurrency`` below their number), their number
    is known before the run and not 0, and no loop is nested in it; then, with the same
    durations for every iteration (constants or a history's, see :func:`loop_members`), its
    copies run side by side exactly as the node once.
    """
    from ..definition.looping import LoopingError, max_concurrency, static_count

    try:
        n = static_count(node.strategy)
    except LoopingError as err:
        return f"has a looping strategy that cannot be expanded ({err})"
    if n is None:
        return "has a looping strategy whose items are known only in a run"
    if n < 1:
        return "has a looping strategy with no iterations"
    k = max_concurrency(node.strategy)
    if k is not None and k < n:
        return f"runs its {n} iterations at most {k} at a time"
    if any(below.strategy is not None for below in node.walk() if below is not node):
        return "holds another looped node (nested loops)"
    return None


def loop_members(plan: Any) -> list[Any]:
    """The steps at or inside a looped node: each of their iterations must take the same duration
    (a constant, or a history's run) for the batch to time the node once."""
    inside = plan.inside_loops()
    return [n for n in plan.nodes if n.kind == "step" and (n.strategy is not None or n.index in inside)]


def _is_history(value: Any) -> bool:
    return hasattr(value, "columns") and "fqn" in getattr(value, "columns", ())


class Batch:
    """The timing of ``runs`` simulated runs: ``start[i]``, ``end[i]`` (arrays of ``runs``
    seconds, NaN where node ``i`` did not start), ``status[i]`` (the same in every run) and
    ``durations`` (the steps' drawn durations, by node index)."""

    def __init__(self, plan: Any, runs: int):
        import numpy as np

        self.plan, self.runs = plan, runs
        n = len(plan.nodes)
        self.start = np.full((n, runs), np.nan)
        self.end = np.full((n, runs), np.nan)
        self.status = ["NotStarted"] * n
        self.durations: dict[int, Any] = {}

    @property
    def makespan(self) -> Any:
        return self.end[0] - self.start[0]

    def timeout_reached(self) -> str | None:
        """The FQN of a node that expires in some run, else None: in the first run where any node
        reaches its timeout (its end at or past ``start + timeout``, the scheduler's test), the one
        whose deadline comes first. Only that one surely expires: its failure may skip the others."""
        import numpy as np

        first: tuple[int, float, str] | None = None  # (run, deadline, fqn)
        for node in self.plan.nodes:
            if node.timeout and node.phase != "rollback" and self.status[node.index] == "Success":
                i = node.index
                deadline = self.start[i] + node.timeout
                reached = np.flatnonzero(self.end[i] >= deadline)
                if len(reached):
                    run = int(reached[0])
                    candidate = (run, float(deadline[run]), node.fqn)
                    if first is None or candidate[:2] < first[:2]:
                        first = candidate
        return None if first is None else first[2]

    def critical(self) -> Any:
        """A boolean array (nodes × runs): the node lies on a critical path of the run — its
        container is critical, and in a parallel block it is an item whose end is the block's
        end (ties: every tied item). Skipped nodes are never critical."""
        import numpy as np

        crit = np.zeros(self.start.shape, dtype=bool)
        root = self.plan.root
        crit[root.index] = True
        self._critical(root, crit)
        return crit

    def _critical(self, node: Any, crit: Any) -> None:
        import numpy as np

        mine = crit[node.index]
        for item in node.items:
            children = item.items if item.kind == "parallel" else (item,)
            ran = [c for c in children if self.status[c.index] == "Success"]
            if not ran:
                continue
            block_end = np.max([self.end[c.index] for c in ran], axis=0)
            for child in ran:
                crit[child.index] = mine & (self.end[child.index] == block_end)
            if item.kind == "parallel" and item.order is not None:  # needs (D14): back along them
                for k in reversed(item.order):
                    waiter = children[k]
                    for j in waiter.needs:
                        need = children[j]
                        if self.status[need.index] == "Success" and self.status[waiter.index] == "Success":
                            binding = self.end[need.index] == self.start[waiter.index]
                            crit[need.index] |= crit[waiter.index] & binding
            for child in ran:
                if child.items:
                    self._critical(child, crit)


def step_durations(plan: Any, durations: Any, default: Any, runs: int, seed: int) -> dict[int, Any]:
    """Per step (node index): ``runs`` durations (a float64 array) or one float (constant)."""
    return StepDraws(plan, durations, default, seed)(runs)


class StepDraws:
    """The steps' durations of a batch, drawn ``runs`` at a time (a Monte Carlo of many runs is
    timed in chunks, so its memory stays bounded): one stream per sampled step, seeded with
    ``(seed, the step's FQN)``, that every call continues."""

    def __init__(self, plan: Any, durations: Any, default: Any, seed: int):
        import numpy as np

        table = StepTable("durations", durations, plan, True) if durations is not None else None
        self.values: dict[int, Any] = {}  # node index → seconds, or (sampler, its stream)
        for node in plan.nodes:
            if node.kind != "step" or node.phase == "rollback":
                continue
            value = table.get(node) if table is not None else MISSING
            if value is MISSING or value is None:
                value = node.duration
            if value is None:
                value = default
            if is_sampler(value):
                self.values[node.index] = (value, np.random.default_rng([seed, fqn_key(node.fqn)]), node.fqn)
            else:
                self.values[node.index] = to_seconds(value, f"{node.fqn} (durations)")

    def __call__(self, runs: int) -> dict[int, Any]:
        out: dict[int, Any] = {}
        for index, value in self.values.items():
            out[index] = draw_runs(value[0], value[1], runs, value[2]) if isinstance(value, tuple) else value
        return out


def batch(plan: Any, durations: dict[int, Any], runs: int) -> Batch:
    """Time ``runs`` runs of ``plan`` (which :func:`why_not` accepts) with ``durations`` (per step
    node index: an array of ``runs`` seconds or one number; see :func:`step_durations`)."""
    import numpy as np

    result = Batch(plan, runs)
    result.durations = durations
    zero = np.zeros(runs)
    _container(plan.root, zero, result, durations, np)
    return result


def _container(node: Any, t: Any, out: Batch, durations: dict[int, Any], np: Any) -> Any:
    """Run ``node`` (entered at ``t``); its end."""
    i = node.index
    out.start[i] = t
    out.status[i] = "Success"
    for item in node.items:
        if item.kind == "parallel":
            if item.order is None:
                ends = [_node(child, t, out, durations, np) for child in item.items]
            else:
                ends = _dag(item, t, out, durations, np)
            t = ends[0] if len(ends) == 1 else np.maximum.reduce(ends)
        else:
            t = _node(item, t, out, durations, np)
    out.end[i] = t
    return t


def _dag(block: Any, t: Any, out: Batch, durations: dict[int, Any], np: Any) -> list[Any]:
    """The ends of a parallel block's members with needs (D14), entered at ``t``: in a
    topological order, each starts at the max of ``t`` and its needs' ends; with the default
    condition, a member whose need was skipped is skipped at that time (as the scheduler does)."""
    members = block.items
    ends: list[Any] = [None] * len(members)
    for k in block.order:
        member = members[k]
        start = t
        for j in member.needs:
            start = np.maximum(start, ends[j])
        when = member.when
        default = when is None or when.status == "Success"
        if default and any(out.status[members[j].index] != "Success" for j in member.needs):
            ends[k] = _skipped(member, start, out)
        else:
            ends[k] = _node(member, start, out, durations, np)
    return ends


def _skipped(node: Any, t: Any, out: Batch) -> Any:
    for below in node.walk():
        out.start[below.index] = t
        out.end[below.index] = t
        out.status[below.index] = "Skipped"
    return t


def _node(node: Any, t: Any, out: Batch, durations: dict[int, Any], np: Any) -> Any:
    when = node.when
    if when is not None and when.status == "Failure":  # nothing fails in a batch: skipped (R28)
        return _skipped(node, t, out)
    if node.kind == "step":
        i = node.index
        out.start[i] = t
        end = t + durations[i]
        out.end[i] = end
        out.status[i] = "Success"
        return end
    return _container(node, t, out, durations, np)
