"""Timing analysis of a trace: critical path, slack, concurrency, summaries, many runs.

Design notes
------------
Every function here reads a trace alone (``run()``, ``simulate()`` or :func:`read_trace`);
none needs the plan: the trace's ``parent``, ``phase`` and ``block`` columns carry the
structure. A trace is read as a **precedence graph of events** (:class:`Schedule`):

- each timed row has a start event ``S`` and an end event ``F``; a step attempt's ``S → F``
  edge is its duration;
- a *unit* is one node's executions (``fqn``, ``iteration``): attempt ``k``'s end precedes
  attempt ``k+1``'s start by the wait between them (a retry interval, an intervention), a
  fixed lag: growing attempt ``k`` pushes the later attempts;
- a parent's units are grouped into blocks (its ``block`` column, per ``phase``): the items of
  a block run together (R5, R11) and end at a *join* event, the latest of their ends; the
  join precedes every start of the next block (R4); the first execution block starts with its
  parent; the last join ends the parent (a container ends when its last child ends, R14);
- where a row says what it waited for (the ``after`` column: ``needs`` of a GitHub or GitLab
  job, a plan's serial order), its start follows the ends of those nodes instead of the
  previous block's join, so the path follows any DAG, not only series-parallel layouts; an
  attempt after one marked ``action == "Rerun"`` (a CI re-run) waits for its ``after`` again
  (the re-run's time is no lag of the node's own), and a container that ran more than once
  has its children's rows split by the container's run they belong to;
- a start that comes later than its structure explains (and than its ``queued_s``, the time
  a CI job waited for a runner, where a history has that column) (a stage waiting for a shared resource,
  D8; a rollback list, started by a failure; a body waiting for a worker under
  ``max_workers``) is gated by the latest end at or before it elsewhere in the run.

Each event's *binding* predecessor is the one whose time plus lag is the latest (ties: the
longer one, then trace order). The **critical path** is the chain of binding predecessors
walked back from the end of the run; its step rows, in time order, are what determined the
makespan — a retried step's attempts and the waits between them included. **Slack** is the
classic backward pass over the same graph: how much a step's end may move before the end of
the run does (an edge that bound keeps its observed lag, real-run overheads included, so the
critical steps have exactly zero slack).

Loops: a node's looping iterations (the ``iteration`` column) are separate units, so a
looped node's iterations are siblings of one block; rows with no iteration (NA) are one unit.
A looped node's own row (an iteration's ``parent``, its FQN the iteration's without the
postfix, R46) is a **container**, like a group's, whatever its ``kind``: a looped step's row
spans its iterations and is no running work — never on the critical path, never counted by
:func:`concurrency`, :func:`summary` or :func:`step_stats` (:func:`looped_steps` names them).
Under ``maxConcurrency`` an iteration that starts after the looped node did waited for a slot
(R54, E13: a sliding window): its binding predecessor is the sibling iteration whose end freed
it (the latest sibling end at or before its start), so the path runs item → the item that took
its slot → ….

>>> import notebook_pipelines as nbp
>>> p = nbp.Pipeline("p")
>>> with p.stage("s") as s:
...     _ = s.step("a", duration=2)
...     with s.parallel():
...         _ = s.step("b", duration=5)
...         _ = s.step("c", duration=1)
...     _ = s.step("d", duration=1)
>>> trace = p.simulate()
>>> list(critical_path(trace)["step"])
['a', 'b', 'd']
>>> print(slack(trace)[["step", "slack_s", "critical"]].to_string(index=False))
step  slack_s  critical
   a      0.0      True
   b      0.0      True
   c      4.0     False
   d      0.0      True
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..definition.looping import is_iteration
from ..errors import TraceError
from .checks import REQUIRED, check_trace
from .schedule import TOLERANCE, Schedule

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "LEVELS",
    "REQUIRED",
    "Schedule",
    "check_trace",
    "compare_traces",
    "concurrency",
    "critical_path",
    "looped_steps",
    "node_times",
    "slack",
    "step_stats",
    "summary",
]

#: what :func:`concurrency` and :func:`summary` report on, outermost first
LEVELS = ("pipeline", "stage", "step_group", "block")


def looped_steps(trace: Any) -> set[str]:
    """The FQNs of the looped steps in ``trace``: rows of kind ``step`` that are containers.

    A step with a matrix, repeat or parallelism has a row spanning its iterations; the
    iterations are the work. Every analysis treats that row as a container (a group's row).
    """
    if not len(trace):
        return set()
    parents = {
        str(parent)
        for fqn, parent in zip(trace["fqn"].astype(object), trace["parent"].astype(object))
        if isinstance(parent, str) and is_iteration(str(fqn), parent)
    }
    if not parents:
        return parents
    kinds = trace.loc[trace["fqn"].astype(object).isin(parents), ["fqn", "kind"]].astype(object)
    return {str(f) for f, k in zip(kinds["fqn"], kinds["kind"]) if str(k) == "step"}


# -- the accessor's functions -------------------------------------------------------------------------
def critical_path(trace: pd.DataFrame) -> pd.DataFrame:
    """The step executions that determined the makespan, in time order (rows of ``trace``).

    Works on any trace of one run (``run()``, ``simulate()``, ``read_trace``). The path follows
    serial order, parallel blocks, step groups, stages and shared resources; a retried step's
    attempts are on it one after the other (the waits between them are the gaps). Skipped and
    never-started steps, and steps that took no time, are never on it.

    >>> import notebook_pipelines as nbp
    >>> p = nbp.Pipeline("p")
    >>> with p.stage("s") as s:
    ...     _ = s.step("a", duration=2, failure_strategies=nbp.Retry(1, intervals="3s"))
    ...     _ = s.step("b", duration=1)
    >>> path = critical_path(p.simulate(failures={"a": 1}))
    >>> list(zip(path["step"], path["attempt"], path["start_s"]))
    [('a', 1, 0.0), ('a', 2, 5.0), ('b', 1, 7.0)]
    """
    schedule = Schedule(trace)
    return schedule.rows.iloc[schedule.path()]


def slack(trace: pd.DataFrame) -> pd.DataFrame:
    """One row per step execution: how long it could grow without delaying the end of the run.

    Returns:
        The step attempt rows (trace index kept) with ``fqn``, ``stage``, ``step_group``,
        ``step``, ``iteration``, ``attempt``, ``status``, ``start_s``, ``end_s``,
        ``duration_s``, ``slack_s`` (seconds) and ``critical`` (on :func:`critical_path`).
    """
    schedule = Schedule(trace)
    late = schedule.latest()
    rows = schedule.rows
    steps = [r for r in range(schedule.n) if schedule.is_work[r] and schedule.attempt[r] > 0]
    columns = ["fqn", "stage", "step_group", "step", "iteration", "attempt", "status", "start_s", "end_s"]
    out = rows.iloc[steps][[c for c in columns if c in rows.columns]].copy()
    out["duration_s"] = out["end_s"] - out["start_s"]
    out["slack_s"] = [max(0.0, round(late[2 * r + 1] - schedule.end[r], 9)) for r in steps]
    on_path = set(schedule.path())
    out["critical"] = [r in on_path for r in steps]
    return out


def concurrency(trace: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """Steps running over time, or the parallel efficiency of each block / group / stage.

    Args:
        by: ``None``: the step function of how many step bodies run at once — one row per
            interval: ``start_s``, ``end_s``, ``running``. ``"block"`` (the parallel blocks,
            two or more items), ``"step_group"``, ``"stage"`` or ``"pipeline"``: one row each
            with ``width`` (a block's items; a container's most steps running at once),
            ``span_s``, ``busy_s`` (seconds of step bodies; for a block, its items' time),
            ``efficiency`` = busy ÷ (width × span), and ``idle_s``: the lane-seconds lost at
            block boundaries, each item waiting for the block's straggler (for a container,
            summed over the parallel blocks inside it).

    >>> import notebook_pipelines as nbp
    >>> p = nbp.Pipeline("p")
    >>> with p.stage("s") as s:
    ...     with s.parallel():
    ...         _ = s.step("a", duration=4)
    ...         _ = s.step("b", duration=1)
    >>> print(concurrency(p.simulate()).to_string(index=False))
     start_s  end_s  running
         0.0    1.0        2
         1.0    4.0        1
    >>> table = concurrency(p.simulate(), "block")
    >>> print(table[["name", "width", "span_s", "busy_s", "efficiency", "idle_s"]])
          name  width  span_s  busy_s  efficiency  idle_s
    0  s block 0      2     4.0     5.0       0.625     3.0
    """
    import pandas as pd

    if by is None:
        check_trace(trace, "concurrency()")
        steps = trace[(trace["kind"] == "step") & trace["start_s"].notna() & trace["end_s"].notna()]
        steps = steps[~steps["fqn"].astype(object).isin(looped_steps(trace))]
        changes: dict[float, int] = {}
        for start, end in zip(steps["start_s"], steps["end_s"]):
            if end - start > TOLERANCE:
                changes[start] = changes.get(start, 0) + 1
                changes[end] = changes.get(end, 0) - 1
        times = sorted(changes)
        running, rows = 0, []
        for t0, t1 in itertools.pairwise(times):
            running += changes[t0]
            rows.append((t0, t1, running))
        frame = pd.DataFrame(rows, columns=["start_s", "end_s", "running"])
        return frame.astype({"start_s": "float64", "end_s": "float64", "running": "int64"})
    if by not in LEVELS:
        raise TraceError(f"concurrency(by={by!r}): by is None (over time) or one of {', '.join(LEVELS)}")
    table = _levels(trace)
    columns = ["fqn", "name", "block", "start_s", "span_s", "width", "busy_s", "efficiency", "idle_s"]
    return table[table["kind"] == by][columns].reset_index(drop=True)


def summary(trace: pd.DataFrame) -> pd.DataFrame:
    """Per pipeline, stage, step group and parallel block: span, busy time, speed-up, longest step.

    Columns: ``kind`` (``pipeline``, ``stage``, ``step_group``, ``block``), ``fqn`` (a block's
    is its parent's; ``block`` its number), ``name``, ``start_s``, ``span_s``, ``busy_s`` (step
    bodies), ``speedup`` = busy ÷ span (how much faster than running its steps one after the
    other), ``width``, ``efficiency``, ``idle_s`` (see :func:`concurrency`), ``longest_step``
    and ``longest_s`` (the step that took longest in it, attempts added up).
    """
    return _levels(trace)


def _levels(trace: pd.DataFrame) -> pd.DataFrame:
    """The table of :func:`summary`: a row per parallel block (two items or more) and per
    container (pipeline, stage, step group), in trace order."""
    import pandas as pd

    s = Schedule(trace)
    up = _holders(s)
    step_rows = [r for r in range(s.n) if s.is_work[r] and s.attempt[r] > 0]
    members: dict[int, list[int]] = {}  # a container row → the step executions inside it, by start
    for r in sorted(step_rows, key=lambda r: s.start[r]):
        for c in up(r):
            members.setdefault(c, []).append(r)
    entries, idle_of = _block_entries(s, members)
    entries += _container_entries(s, members, idle_of, up)
    entries.sort(key=lambda e: e.pop("_position"))
    columns = ["kind", "fqn", "name", "block", "start_s", "span_s", "busy_s", "speedup", "width"]
    columns += ["efficiency", "idle_s", "longest_step", "longest_s"]
    table = pd.DataFrame(entries, columns=columns)
    return table.astype({"block": "Int64", "width": "int64", "longest_step": "str"})


def _holders(s: Schedule) -> Any:
    """``up(r)``: the container rows holding row ``r``, innermost first (memoised)."""
    above: dict[int, list[int]] = {}

    def up(r: int) -> list[int]:
        chain = above.get(r)
        if chain is None:
            p = s.parent_of.get((s.fqn[r], s.iteration[r]))
            chain = above[r] = [] if p is None else [p, *up(p)]
        return chain

    return up


def _block_entries(s: Schedule, members: dict[int, list[int]]) -> tuple[list[dict], list[tuple[int, float]]]:
    """A row per parallel block of two items or more; and ``(parent row, idle seconds)`` of each
    block, which its containers add up."""

    def unit_busy(key: tuple) -> float:  # a step's attempts (not the waits); a container's span
        return sum(s.end[r] - s.start[r] for r in s.units[key])

    entries = []
    idle_of: list[tuple[int, float]] = []
    for (owner, _phase, number), keys in s.blocks.items():
        if len(keys) < 2:
            continue
        begin = min(s.start[s.units[k][0]] for k in keys)
        finish = max(s.end[s.units[k][-1]] for k in keys)
        idle = sum(finish - s.end[s.units[k][-1]] for k in keys)
        busy = sum(unit_busy(k) for k in keys)
        parent_fqn = s.fqn[owner] if isinstance(owner, int) else str(owner[1])
        if isinstance(owner, int):
            idle_of.append((owner, idle))
        inside = [r for k in keys for r in s.units[k] if s.is_work[r] and s.attempt[r] > 0]
        inside += [x for k in keys for r in s.units[k] if s.container[r] for x in members.get(r, ())]
        position = min(r for k in keys for r in s.units[k]) - 0.5
        name = f"{parent_fqn.rsplit('.', 1)[-1]} block {number}"
        width = len(keys)
        entries.append(
            _entry(s, "block", parent_fqn, name, number, begin, finish, busy, width, idle, inside, position)
        )
    return entries, idle_of


def _container_entries(
    s: Schedule, members: dict[int, list[int]], idle_of: list[tuple[int, float]], up: Any
) -> list[dict]:
    """A row per container row (a pipeline, stage or step group; a looped step's row is none)."""
    entries = []
    for r in range(s.n):
        if s.kind[r] == "step":  # a step, or a looped step's row: no level of its own
            continue
        inside = members.get(r, [])
        busy = sum(s.end[x] - s.start[x] for x in inside)
        width = _peak([(s.start[x], s.end[x]) for x in inside])
        idle = sum(i for owner, i in idle_of if owner == r or r in up(owner))
        fqn, name, begin, finish = s.fqn[r], s.fqn[r].rsplit(".", 1)[-1], s.start[r], s.end[r]
        entries.append(
            _entry(s, s.kind[r], fqn, name, None, begin, finish, busy, width, idle, inside, float(r))
        )
    return entries


def _entry(s: Schedule, kind: str, fqn: str, name: str, block: Any, begin: float, finish: float,
           busy: float, width: int, idle: float, inside: list[int], position: float) -> dict:  # fmt: skip
    span = finish - begin
    totals: dict[str, float] = {}
    for r in inside:
        totals[s.fqn[r]] = totals.get(s.fqn[r], 0.0) + s.end[r] - s.start[r]
    rank = {f: -k for k, f in enumerate(totals)}  # ties: the first in the trace
    longest = max(totals, key=lambda f: (totals[f], rank[f]), default=None)
    return {
        "kind": kind,
        "fqn": fqn,
        "name": name,
        "block": block,
        "start_s": begin,
        "span_s": span,
        "busy_s": busy,
        "speedup": busy / span if span > TOLERANCE else math.nan,
        "width": width,
        "efficiency": busy / (width * span) if span > TOLERANCE and width else math.nan,
        "idle_s": idle,
        "longest_step": longest.rsplit(".", 1)[-1] if longest else None,
        "longest_s": totals[longest] if longest else math.nan,
        "_position": position,
    }


def _peak(intervals: Iterable[tuple[float, float]]) -> int:
    """The most intervals open at once (an end at t closes before a start at t opens)."""
    events = sorted(
        [(b, 1) for b, e in intervals if e - b > TOLERANCE]
        + [(e, -1) for b, e in intervals if e - b > TOLERANCE]
    )
    peak = running = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


def node_times(trace: pd.DataFrame) -> pd.DataFrame:
    """Per run and node: ``seconds`` from its first start to its last end (retries and waits
    included), ``attempts`` and the node's ``kind``; indexed by (``run_id``, ``fqn``)."""
    timed = trace[trace["start_s"].notna() & trace["end_s"].notna()]
    by = timed.groupby(["run_id", "fqn"], sort=False, observed=True)
    out = by.agg(
        kind=("kind", "first"),
        start_s=("start_s", "min"),
        end_s=("end_s", "max"),
        attempts=("attempt", "max"),
    )
    out["seconds"] = out["end_s"] - out["start_s"]
    return out


def compare_traces(this: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """Node by node, how long each took in ``this`` run and in ``other``.

    Returns:
        Indexed by ``fqn`` (the nodes of both, in ``this`` trace's order, then ``other``'s):
        ``kind``, ``name``, ``this_s``, ``other_s`` (first start to last end), ``change_s``
        (other − this), ``ratio`` (other ÷ this), ``this_attempts``, ``other_attempts``,
        ``critical`` and ``other_critical`` (a step on that run's critical path).

    >>> import notebook_pipelines as nbp
    >>> p = nbp.Pipeline("p")
    >>> with p.stage("s") as s:
    ...     _ = s.step("a", duration=2)
    >>> table = compare_traces(p.simulate(), p.simulate(durations={"a": 3}))
    >>> print(table[["kind", "this_s", "other_s", "change_s", "critical"]].to_string())
                                        kind  this_s  other_s  change_s  critical
    fqn
    pipeline                        pipeline     2.0      3.0       1.0     False
    pipeline.stages.s                  stage     2.0      3.0       1.0     False
    pipeline.stages.s.spec.execution.steps.a   step     2.0      3.0       1.0      True
    """
    import pandas as pd

    check_trace(this, "compare()")
    check_trace(other, "compare(other)")
    a, b = node_times(this).droplevel(0), node_times(other).droplevel(0)
    index = list(dict.fromkeys([*a.index, *b.index]))
    table = pd.DataFrame(index=pd.Index(index, name="fqn"))
    table["kind"] = (
        a["kind"].astype(object).combine_first(b["kind"].astype(object)).reindex(index).astype(str)
    )
    table["name"] = [f.rsplit(".", 1)[-1] for f in index]
    table["this_s"] = a["seconds"].reindex(index)
    table["other_s"] = b["seconds"].reindex(index)
    table["change_s"] = table["other_s"] - table["this_s"]
    table["ratio"] = table["other_s"] / table["this_s"].where(table["this_s"] > 0)
    table["this_attempts"] = a["attempts"].reindex(index).astype("Int64")
    table["other_attempts"] = b["attempts"].reindex(index).astype("Int64")
    on_a, on_b = set(critical_path(this)["fqn"]), set(critical_path(other)["fqn"])
    table["critical"] = [f in on_a for f in index]
    table["other_critical"] = [f in on_b for f in index]
    return table


def step_stats(traces: pd.DataFrame, iterations: bool = True) -> pd.DataFrame:
    """Per step, its duration across runs, its outcomes, and how much it drives the makespan.

    ``traces`` is several traces concatenated (``pd.concat``), each run with its own
    ``run_id`` (``simulate(p, seed=s, run_id=f"mc-{s}")``), or a history (``nbp.read_history``).
    Here each looping iteration is a node of its own and a looped step's row (a container of
    its iterations) is left out; ``iterations=False`` folds the iterations into their looped
    node, as ``trace.pipeline.step_stats()`` does by default (which also lists the stages, groups
    and the pipeline). The table and its columns: :func:`~notebook_pipelines.analysis.history.step_stats`.
    """
    from .history import step_stats as stats

    table = stats(traces, iterations)
    return table[table["kind"] == "step"] if len(table) else table
