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

import bisect
import itertools
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..definition.looping import is_iteration
from ..errors import TraceError

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

#: the columns every analysis reads (a trace read with ``nbp.read_trace`` has them all)
REQUIRED = ("run_id", "fqn", "parent", "kind", "phase", "block", "iteration", "attempt", "status")
REQUIRED += ("start_s", "end_s")
#: what :func:`concurrency` and :func:`summary` report on, outermost first
LEVELS = ("pipeline", "stage", "step_group", "block")
_TOL = 1e-6  # seconds: closer times are the same moment (virtual time is exact; threads are not)
_SCAN = 256  # how far back the search for a gating end looks, at most
#: the ``action`` of an attempt after which the whole run was re-run (GitHub "re-run jobs",
#: GitLab retry): the next attempt waited for its needs again, not for a retry interval
RERUN = "Rerun"


def check_trace(trace: Any, what: str, *, one_run: bool = True) -> None:
    """Refuse what is not a trace (or, with ``one_run``, holds several runs), saying how to fix it."""
    columns = getattr(trace, "columns", None)
    if columns is None:
        raise TraceError(f"{what} reads a trace DataFrame, not {type(trace).__name__}")
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise TraceError(
            f"{what}: this DataFrame is not a trace: it lacks the columns {', '.join(missing)} "
            "(a trace saved as CSV or Parquet loads back with nbp.read_trace(path))"
        )
    if one_run:
        runs = trace["run_id"].dropna().unique()
        if len(runs) > 1:
            shown = ", ".join(repr(str(r)) for r in runs[:3]) + (", …" if len(runs) > 3 else "")
            raise TraceError(
                f"{what} reads one run; this trace holds {len(runs)} ({shown}): select one, e.g. "
                f"trace[trace.run_id == {str(runs[0])!r}] (step_stats() reads many runs)"
            )


def _values(series: Any) -> list:
    """A column as a Python list, NA → None."""
    return series.astype(object).where(series.notna(), None).tolist()


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


def _related(a: str, b: str) -> bool:
    """``a`` and ``b`` are the same node, or one contains the other."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


class Schedule:
    """The precedence graph of one run's trace (see the module notes).

    Attributes (positions ``r`` index ``rows``, the trace's timed rows in trace order):
        rows: the timed rows; ``fqn``, ``kind``, ``start``, ``end``, ``attempt``: their columns.
        units: ``(fqn, iteration) → [r, …]`` the executions of one node, by attempt.
        blocks: ``(parent r or parent fqn, phase, block) → [unit key, …]``.
        parent_of: ``unit key → parent r`` (None when the parent row is not in the trace).
        time, binding: per event, its time and its binding predecessor (or None).
        end_event: the end of the run (the latest end of the outermost rows).
    """

    def __init__(self, trace: pd.DataFrame):
        check_trace(trace, "timing analysis")
        timed = trace[trace["start_s"].notna() & trace["end_s"].notna()]
        self.rows = timed
        n = self.n = len(timed)
        self.fqn = [str(x) for x in timed["fqn"].astype(object)]
        parent = _values(timed["parent"])
        self.kind = [str(x) for x in timed["kind"].astype(object)]
        phase = _values(timed["phase"])
        block = _values(timed["block"])
        iteration = _values(timed["iteration"])
        self.attempt = [int(x) for x in timed["attempt"]]
        self.start = [float(x) for x in timed["start_s"]]
        self.end = [float(x) for x in timed["end_s"]]
        self.iteration = iteration
        loops = {parent[r] for r in range(n) if is_iteration(self.fqn[r], parent[r])}
        #: per row: a container (a pipeline, stage or group row, or a looped node's row)
        self.container = [self.kind[r] != "step" or self.fqn[r] in loops for r in range(n)]
        self.is_work = [not c for c in self.container]

        containers: dict[str, list[int]] = {}
        for r in range(n):
            if self.container[r]:
                containers.setdefault(self.fqn[r], []).append(r)
        units: dict[tuple, list[int]] = {}
        for r in range(n):
            key: tuple = (self.fqn[r], iteration[r])
            holders = containers.get(parent[r]) or []
            if len(holders) > 1:  # the parent ran more than once (a re-run job): one unit per parent run
                key += (self._parent_row(holders, iteration[r], self.start[r]),)
            units.setdefault(key, []).append(r)
        for rows in units.values():
            rows.sort(key=lambda r: (self.attempt[r], self.start[r], r))
        self.units = units

        parent_of: dict[tuple, int | None] = {}
        blocks: dict[tuple, list[tuple]] = {}
        #: a looped node's row → its iterations' units (the slots of a sliding window, R54)
        self.loop_units: dict[int, list[tuple]] = {}
        for key, rows in units.items():
            first = rows[0]
            prow = self._parent_row(containers.get(parent[first]) or [], iteration[first], self.start[first])
            parent_of[key] = prow
            if prow is not None and is_iteration(self.fqn[first], parent[first]):
                self.loop_units.setdefault(prow, []).append(key)
            owner = prow if prow is not None else ("missing", parent[first])
            number = block[first] if block[first] is not None else -1
            blocks.setdefault((owner, phase[first] or "execution", number), []).append(key)
        self.parent_of, self.blocks = parent_of, blocks

        # events: S(r) = 2r, F(r) = 2r + 1, then joins, then the end of the run
        time = [0.0] * (2 * n)
        for r in range(n):
            time[2 * r], time[2 * r + 1] = self.start[r], self.end[r]
        preds: list[list[tuple[int, float]]] = [[] for _ in range(2 * n)]

        def event(t: float) -> int:
            time.append(t)
            preds.append([])
            return len(time) - 1

        action = _values(timed["action"]) if "action" in timed.columns else [None] * n
        self.rerun: set[int] = set()  # attempts started by a re-run of the run (GitHub, GitLab)
        for rows in units.values():
            for before, after in itertools.pairwise(rows):
                if action[before] == RERUN:  # not a wait of the node's own: its needs decide
                    self.rerun.add(after)
                    preds[2 * after].append((2 * before + 1, 0.0))
                else:
                    preds[2 * after].append((2 * before + 1, max(0.0, self.start[after] - self.end[before])))
        by_fqn: dict[str, list[tuple]] = {}
        for key in units:
            by_fqn.setdefault(key[0], []).append(key)
        lists: dict[tuple, list[tuple[int, list[tuple]]]] = {}
        for (owner, ph, number), keys in blocks.items():
            lists.setdefault((owner, ph), []).append((number, keys))
        ends: list[int] = []  # events that end an outermost list
        has_children = set()
        self.joins: dict[tuple, int] = {}
        after = self._after(trace, timed)
        for (owner, ph), numbered in lists.items():
            numbered.sort(key=lambda item: item[0])
            prow = owner if isinstance(owner, int) else None
            previous = None
            dag = False  # some unit of this list says what it waited for (``after``)
            joins = []
            for number, keys in numbered:
                join = event(max(self.end[units[k][-1]] for k in keys))
                self.joins[(owner, ph, number)] = join
                joins.append(join)
                for key in keys:
                    rows = units[key]
                    preds[join].append((2 * rows[-1] + 1, 0.0))
                    waited = after[rows[0]] if after is not None else None
                    if waited is not None:
                        dag = True
                        for r in rows:  # the first attempt, and attempts a re-run started
                            if r != rows[0] and r not in self.rerun:
                                continue
                            edges = []
                            for f in after[r] or ():
                                found = by_fqn.get(f, ())
                                same = [k for k in found if parent_of.get(k) == parent_of[key]]
                                edges += [self._last_end(units[k], self.start[r]) for k in same or found]
                            preds[2 * r].extend((e, 0.0) for e in edges if e is not None)
                            if r == rows[0] and not edges and ph == "execution" and prow is not None:
                                preds[2 * r].append((2 * prow, 0.0))
                    elif previous is not None:
                        preds[2 * rows[0]].append((previous, 0.0))
                    elif ph == "execution" and prow is not None:
                        preds[2 * rows[0]].append((2 * prow, 0.0))
                previous = join
            # with edges from ``after`` any block may hold the last end, not only the last one
            last = joins if dag else [previous]
            if prow is not None:
                has_children.add(prow)
                preds[2 * prow + 1].extend((j, 0.0) for j in last)
            else:
                ends.extend(last)
        for r in range(n):
            if self.is_work[r] or r not in has_children:
                preds[2 * r + 1].append((2 * r, self.end[r] - self.start[r]))
        self.end_event = event(max((time[e] for e in ends), default=0.0))
        preds[self.end_event] = [(e, 0.0) for e in ends]
        self.time, self.preds = time, preds
        self.slot = self._slots()
        self._bind()

    @staticmethod
    def _after(trace: pd.DataFrame, timed: pd.DataFrame) -> list | None:
        """Per timed row, the fqns it waited for (the ``after`` column), or None where unknown;
        None when the trace has no such column (a trace saved before it existed)."""
        if "after" not in trace.columns:
            return None
        out = []
        for value in timed["after"].tolist():
            if value is None or isinstance(value, (str, float)):  # NA, NaN: unknown
                out.append(None)
            else:
                out.append([str(v) for v in value])
        return out if any(v is not None for v in out) else None

    def _last_end(self, rows: list[int], before: float) -> int | None:
        """The end event of the last of ``rows`` (a unit's attempts) that ended by ``before``
        (else of the last one: an edge the times contradict is dropped later)."""
        done = [r for r in rows if self.end[r] <= before + _TOL]
        return 2 * (done[-1] if done else rows[-1]) + 1

    def _parent_row(self, candidates: list[int], iteration: Any, start: float) -> int | None:
        if not candidates:
            return None
        same = [r for r in candidates if self.iteration[r] == iteration] or candidates
        inside = [r for r in same if self.start[r] <= start + _TOL]
        return max(inside, key=lambda r: (self.start[r], r)) if inside else same[0]

    def _row_start(self, event: int) -> float:
        return self.start[event // 2] if event < 2 * self.n else self.time[event]

    def _bind(self) -> None:
        """Choose each event's binding predecessor; add a gating edge where structure falls short."""
        time, n = self.time, self.n
        order = sorted(range(n), key=lambda r: self.end[r])
        sorted_ends = [self.end[r] for r in order]
        self.binding: list[int | None] = [None] * len(time)
        queued = [0.0] * n  # seconds a CI job waited for a runner (history rows), else 0
        if "queued_s" in self.rows.columns:
            queued = [0.0 if q != q else float(q) for q in self.rows["queued_s"].to_numpy(dtype=float)]
        for v, edges in enumerate(self.preds):
            kept = [(u, lag) for u, lag in edges if time[u] + lag <= time[v] + _TOL or v == self.end_event]
            self.preds[v] = kept  # an edge the times contradict (clock skew) is no constraint
            valid = [(time[u] + lag, u) for u, lag in kept]
            latest = max((value for value, _ in valid), default=-math.inf)
            if (
                v < 2 * n
                and v % 2 == 0
                and time[v] - latest > queued[v // 2] + _TOL  # a start its queue explains is no gate
                and v // 2 not in self.rerun
            ):
                gate = self._gate(v // 2, latest, order, sorted_ends)
                if gate is not None:
                    self.preds[v].append((gate, time[v] - time[gate]))
                    self.binding[v] = gate
                    continue
            if valid:
                tied = [(self._row_start(u), u) for value, u in valid if value >= latest - _TOL]
                self.binding[v] = min(tied)[1]

    def _gate(self, r: int, latest: float, order: list[int], sorted_ends: list[float]) -> int | None:
        """The end event that let row ``r`` start when its structure does not explain the start."""
        freed = self.slot.get(r)
        if freed is not None and self.time[freed] >= latest - _TOL:
            return freed
        k = bisect.bisect_right(sorted_ends, self.start[r] + _TOL)
        found: list[int] = []
        for i in range(k - 1, max(-1, k - 1 - _SCAN), -1):
            g = order[i]
            if sorted_ends[i] < latest - _TOL or (found and sorted_ends[i] < self.end[found[0]] - _TOL):
                break
            if not _related(self.fqn[g], self.fqn[r]):
                found.append(g)
        if not found:
            return None
        return 2 * min(found, key=lambda g: (self.start[g], g)) + 1

    def _slots(self) -> dict[int, int]:
        """Per iteration that waited for a slot (R54), the end event of the sibling that freed it.

        Iterations are taken in the order they started (list order on ties); each takes the
        latest sibling end at or before its start that no earlier iteration took (ties: the
        sibling that started first), so two iterations starting when two slots free take one
        each.
        """
        out: dict[int, int] = {}
        for prow, keys in self.loop_units.items():
            order = sorted(keys, key=lambda k: (self.start[self.units[k][0]], self.units[k][0]))
            free: list[tuple[float, float, int]] = []  # (end, -start, -row) of unclaimed siblings
            for key in order:
                r = self.units[key][0]
                if self.start[r] > self.start[prow] + _TOL:
                    i = bisect.bisect_right(free, (self.start[r] + _TOL, math.inf, math.inf))
                    if i:
                        out[r] = 2 * -free.pop(i - 1)[2] + 1
                g = self.units[key][-1]
                bisect.insort(free, (self.end[g], -self.start[g], -g))
        return out

    # -- results -----------------------------------------------------------------------------------
    def path(self) -> list[int]:
        """Positions of the step rows on the critical path, in time order."""
        out, v = [], self.end_event
        while self.binding[v] is not None:
            u = self.binding[v]
            if v < 2 * self.n and v % 2 == 1 and u == v - 1 and self.is_work[v // 2]:
                out.append(v // 2)
            v = u
        out.reverse()
        return [r for r in out if self.end[r] - self.start[r] > _TOL and self.attempt[r] > 0]

    def latest(self) -> list[float]:
        """Per event, the latest time it could happen without delaying the end of the run."""
        time, m = self.time, len(self.time)
        succ: list[list[tuple[int, float]]] = [[] for _ in range(m)]
        indegree = [0] * m
        for v, edges in enumerate(self.preds):
            for u, lag in edges:
                succ[u].append((v, time[v] - time[u] if self.binding[v] == u else lag))
                indegree[v] += 1
        ready = [v for v in range(m) if indegree[v] == 0]
        order = []
        while ready:
            u = ready.pop()
            order.append(u)
            for v, _ in succ[u]:
                indegree[v] -= 1
                if indegree[v] == 0:
                    ready.append(v)
        late = [time[self.end_event]] * m
        for u in reversed(order):
            if succ[u]:
                late[u] = min(late[v] - lag for v, lag in succ[u])
        return late


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
            if end - start > _TOL:
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
    import pandas as pd

    s = Schedule(trace)
    step_rows = [r for r in range(s.n) if s.is_work[r] and s.attempt[r] > 0]
    by_start = sorted(step_rows, key=lambda r: s.start[r])
    above: dict[int, list[int]] = {}  # a row → the container rows holding it, innermost first

    def up(r: int) -> list[int]:
        chain = above.get(r)
        if chain is None:
            p = s.parent_of.get((s.fqn[r], s.iteration[r]))
            chain = above[r] = [] if p is None else [p, *up(p)]
        return chain

    members: dict[int, list[int]] = {}  # a container row → the step executions inside it, by start
    for r in by_start:
        for c in up(r):
            members.setdefault(c, []).append(r)

    def unit_busy(key: tuple) -> float:  # a step's attempts (not the waits); a container's span
        return sum(s.end[r] - s.start[r] for r in s.units[key])

    entries = []
    idle_of: list[tuple[str, float]] = []
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
        entries.append(
            _entry(
                s,
                "block",
                parent_fqn,
                f"{parent_fqn.rsplit('.', 1)[-1]} block {number}",
                number,
                begin,
                finish,
                busy,
                len(keys),
                idle,
                inside,
                position,
            )
        )
    for r in range(s.n):
        if s.kind[r] == "step":  # a step, or a looped step's row: no level of its own
            continue
        inside = members.get(r, [])
        busy = sum(s.end[x] - s.start[x] for x in inside)
        width = _peak([(s.start[x], s.end[x]) for x in inside])
        idle = sum(i for owner, i in idle_of if owner == r or r in up(owner))
        entries.append(
            _entry(
                s,
                s.kind[r],
                s.fqn[r],
                s.fqn[r].rsplit(".", 1)[-1],
                None,
                s.start[r],
                s.end[r],
                busy,
                width,
                idle,
                inside,
                float(r),
            )
        )
    entries.sort(key=lambda e: e.pop("_position"))
    columns = ["kind", "fqn", "name", "block", "start_s", "span_s", "busy_s", "speedup", "width"]
    columns += ["efficiency", "idle_s", "longest_step", "longest_s"]
    table = pd.DataFrame(entries, columns=columns)
    return table.astype({"block": "Int64", "width": "int64", "longest_step": "str"})


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
        "speedup": busy / span if span > _TOL else math.nan,
        "width": width,
        "efficiency": busy / (width * span) if span > _TOL and width else math.nan,
        "idle_s": idle,
        "longest_step": longest.rsplit(".", 1)[-1] if longest else None,
        "longest_s": totals[longest] if longest else math.nan,
        "_position": position,
    }


def _peak(intervals: Iterable[tuple[float, float]]) -> int:
    """The most intervals open at once (an end at t closes before a start at t opens)."""
    events = sorted(
        [(b, 1) for b, e in intervals if e - b > _TOL] + [(e, -1) for b, e in intervals if e - b > _TOL]
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
