"""A trace of one run as a precedence graph of events: :class:`Schedule`.

The design is in :mod:`~notebook_pipelines.analysis.timing`'s notes: a start and an end event
per timed row, attempts chained by their waits, the blocks of a parent's lists joined, starts
that follow what a row waited for (``after``), a start the structure does not explain gated by
the latest end before it, and each event's binding predecessor. :func:`~notebook_pipelines.
analysis.timing.critical_path` walks the binding predecessors back from the end of the run;
:func:`~notebook_pipelines.analysis.timing.slack` is the backward pass (:meth:`Schedule.latest`).
:mod:`~notebook_pipelines.analysis.paths` builds the same graph for many runs at once.

It stands on :mod:`.checks` (the trace's columns checked) and
:mod:`~notebook_pipelines.definition.looping` (iterations folded into their looped node).
"""

from __future__ import annotations

import bisect
import itertools
import math
from typing import TYPE_CHECKING, Any

from ..definition.looping import is_iteration
from .checks import check_trace

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["RERUN", "TOLERANCE", "Schedule", "claim_slots", "gating_end"]

#: seconds: closer times are the same moment (virtual time is exact; threads are not)
TOLERANCE = 1e-6
_SCAN = 256  # how far back the search for a gating end looks, at most
#: the ``action`` of an attempt after which the whole run was re-run (GitHub "re-run jobs",
#: GitLab retry): the next attempt waited for its needs again, not for a retry interval
RERUN = "Rerun"


def _values(series: Any) -> list:
    """A column as a Python list, NA → None."""
    return series.astype(object).where(series.notna(), None).tolist()


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
        self.attempt = [int(x) for x in timed["attempt"]]
        self.start = [float(x) for x in timed["start_s"]]
        self.end = [float(x) for x in timed["end_s"]]
        self.iteration = _values(timed["iteration"])
        loops = {parent[r] for r in range(n) if is_iteration(self.fqn[r], parent[r])}
        #: per row: a container (a pipeline, stage or group row, or a looped node's row)
        self.container = [self.kind[r] != "step" or self.fqn[r] in loops for r in range(n)]
        self.is_work = [not c for c in self.container]

        containers: dict[str, list[int]] = {}
        for r in range(n):
            if self.container[r]:
                containers.setdefault(self.fqn[r], []).append(r)
        self.units = self._units(containers, parent)
        self._group(containers, parent, _values(timed["phase"]), _values(timed["block"]))

        # events: S(r) = 2r, F(r) = 2r + 1, then joins, then the end of the run
        self.time = [0.0] * (2 * n)
        for r in range(n):
            self.time[2 * r], self.time[2 * r + 1] = self.start[r], self.end[r]
        self.preds: list[list[tuple[int, float]]] = [[] for _ in range(2 * n)]
        self._chain_attempts(_values(timed["action"]) if "action" in timed.columns else [None] * n)
        ends, has_children = self._join_lists(self._after(trace, timed))
        for r in range(n):
            if self.is_work[r] or r not in has_children:
                self.preds[2 * r + 1].append((2 * r, self.end[r] - self.start[r]))
        self.end_event = self._event(max((self.time[e] for e in ends), default=0.0))
        self.preds[self.end_event] = [(e, 0.0) for e in ends]
        self.slot = self._slots()
        self._bind()

    def _units(self, containers: dict[str, list[int]], parent: list) -> dict[tuple, list[int]]:
        """``(fqn, iteration[, parent row]) → [r, …]``: one node's executions, by attempt (a node
        whose parent ran more than once — a re-run job — has a unit per run of its parent)."""
        units: dict[tuple, list[int]] = {}
        for r in range(self.n):
            key: tuple = (self.fqn[r], self.iteration[r])
            holders = containers.get(parent[r]) or []
            if len(holders) > 1:  # the parent ran more than once (a re-run job): one unit per parent run
                key += (self._parent_row(holders, self.iteration[r], self.start[r]),)
            units.setdefault(key, []).append(r)
        for rows in units.values():
            rows.sort(key=lambda r: (self.attempt[r], self.start[r], r))
        return units

    def _group(self, containers: dict[str, list[int]], parent: list, phase: list, block: list) -> None:
        """Each unit's parent row (``parent_of``), the units of each parent's blocks (``blocks``),
        and each looped node's iterations (``loop_units``)."""
        parent_of: dict[tuple, int | None] = {}
        blocks: dict[tuple, list[tuple]] = {}
        #: a looped node's row → its iterations' units (the slots of a sliding window, R54)
        self.loop_units: dict[int, list[tuple]] = {}
        for key, rows in self.units.items():
            first = rows[0]
            prow = self._parent_row(
                containers.get(parent[first]) or [], self.iteration[first], self.start[first]
            )
            parent_of[key] = prow
            if prow is not None and is_iteration(self.fqn[first], parent[first]):
                self.loop_units.setdefault(prow, []).append(key)
            owner = prow if prow is not None else ("missing", parent[first])
            number = block[first] if block[first] is not None else -1
            blocks.setdefault((owner, phase[first] or "execution", number), []).append(key)
        self.parent_of, self.blocks = parent_of, blocks

    def _event(self, t: float) -> int:
        """A new event at time ``t`` (a join, the end of the run)."""
        self.time.append(t)
        self.preds.append([])
        return len(self.time) - 1

    def _chain_attempts(self, action: list) -> None:
        """Attempt ``k``'s end precedes attempt ``k+1``'s start by the wait between them (none after
        a re-run of the whole run: its needs decide, ``rerun``)."""
        self.rerun: set[int] = set()  # attempts started by a re-run of the run (GitHub, GitLab)
        for rows in self.units.values():
            for before, after in itertools.pairwise(rows):
                if action[before] == RERUN:  # not a wait of the node's own: its needs decide
                    self.rerun.add(after)
                    self.preds[2 * after].append((2 * before + 1, 0.0))
                else:
                    lag = max(0.0, self.start[after] - self.end[before])
                    self.preds[2 * after].append((2 * before + 1, lag))

    def _join_lists(self, after: list | None) -> tuple[list[int], set[int]]:
        """Each parent's lists of blocks: a block's items end at its join, which precedes the next
        block's starts (or, for an item that says what it waited for, those ends: ``after``); the
        first block starts with its parent, which ends with the last join (any join, with
        ``after``). Returns the events that end an outermost list and the rows that have children."""
        by_fqn: dict[str, list[tuple]] = {}
        for key in self.units:
            by_fqn.setdefault(key[0], []).append(key)
        lists: dict[tuple, list[tuple[int, list[tuple]]]] = {}
        for (owner, ph, number), keys in self.blocks.items():
            lists.setdefault((owner, ph), []).append((number, keys))
        ends: list[int] = []  # events that end an outermost list
        has_children = set()
        self.joins: dict[tuple, int] = {}
        preds, units = self.preds, self.units
        for (owner, ph), numbered in lists.items():
            numbered.sort(key=lambda item: item[0])
            prow = owner if isinstance(owner, int) else None
            previous = None
            dag = False  # some unit of this list says what it waited for (``after``)
            joins = []
            for number, keys in numbered:
                join = self._event(max(self.end[units[k][-1]] for k in keys))
                self.joins[(owner, ph, number)] = join
                joins.append(join)
                for key in keys:
                    rows = units[key]
                    preds[join].append((2 * rows[-1] + 1, 0.0))
                    if after is not None and after[rows[0]] is not None:
                        dag = True
                        self._wait_for_after(key, after, by_fqn, ph == "execution" and prow is not None)
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
        return ends, has_children

    def _wait_for_after(
        self, key: tuple, after: list, by_fqn: dict[str, list[tuple]], with_parent: bool
    ) -> None:
        """The start edges of a unit that says what it waited for: its first attempt, and attempts
        a re-run started, follow the ends of the nodes in ``after`` (those with the same parent
        first); a first attempt that waited for nothing starts with its parent (``with_parent``:
        an execution list with a parent row)."""
        rows = self.units[key]
        for r in rows:  # the first attempt, and attempts a re-run started
            if r != rows[0] and r not in self.rerun:
                continue
            edges = []
            for f in after[r] or ():
                found = by_fqn.get(f, ())
                same = [k for k in found if self.parent_of.get(k) == self.parent_of[key]]
                edges += [self._last_end(self.units[k], self.start[r]) for k in same or found]
            self.preds[2 * r].extend((e, 0.0) for e in edges if e is not None)
            if r == rows[0] and not edges and with_parent:
                self.preds[2 * r].append((2 * self.parent_of[key], 0.0))

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
        done = [r for r in rows if self.end[r] <= before + TOLERANCE]
        return 2 * (done[-1] if done else rows[-1]) + 1

    def _parent_row(self, candidates: list[int], iteration: Any, start: float) -> int | None:
        if not candidates:
            return None
        same = [r for r in candidates if self.iteration[r] == iteration] or candidates
        inside = [r for r in same if self.start[r] <= start + TOLERANCE]
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
            kept = [
                (u, lag) for u, lag in edges if time[u] + lag <= time[v] + TOLERANCE or v == self.end_event
            ]
            self.preds[v] = kept  # an edge the times contradict (clock skew) is no constraint
            valid = [(time[u] + lag, u) for u, lag in kept]
            latest = max((value for value, _ in valid), default=-math.inf)
            if (
                v < 2 * n
                and v % 2 == 0
                and time[v] - latest > queued[v // 2] + TOLERANCE  # a start its queue explains is no gate
                and v // 2 not in self.rerun
            ):
                gate = self._gate(v // 2, latest, order, sorted_ends)
                if gate is not None:
                    self.preds[v].append((gate, time[v] - time[gate]))
                    self.binding[v] = gate
                    continue
            if valid:
                tied = [(self._row_start(u), u) for value, u in valid if value >= latest - TOLERANCE]
                self.binding[v] = min(tied)[1]

    def _gate(self, r: int, latest: float, order: list[int], sorted_ends: list[float]) -> int | None:
        """The end event that let row ``r`` start when its structure does not explain the start."""
        return gating_end(r, latest, self.slot.get(r), order, sorted_ends, self.start, self.end, self.fqn)

    def _slots(self) -> dict[int, int]:
        """Per iteration that waited for a slot (R54), the end event of the sibling that freed it
        (:func:`claim_slots`)."""
        loops = {prow: [self.units[k][0] for k in keys] for prow, keys in self.loop_units.items()}
        last = {self.units[k][0]: self.units[k][-1] for keys in self.loop_units.values() for k in keys}
        return claim_slots(loops, self.start, self.end, last.__getitem__)

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
        return [r for r in out if self.end[r] - self.start[r] > TOLERANCE and self.attempt[r] > 0]

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


# -- the two searches Schedule and paths.path_flows share --------------------------------------
def claim_slots(loops: dict[int, list[int]], start: Any, end: Any, last_of: Any) -> dict[int, int]:
    """Per iteration that waited for a slot of its loop's window (R54), the end event of the
    sibling that freed it.

    ``loops``: a looped node's row → its iterations' first rows; ``last_of(r)``: the row of that
    iteration's last attempt. Iterations are taken in the order they started (row order on
    ties); each that started after its loop takes the latest sibling end at or before its start
    that no earlier iteration took (ties: the sibling that started first), so two iterations
    starting when two slots free take one each.
    """
    out: dict[int, int] = {}
    for loop, rows in loops.items():
        free: list[tuple[float, float, int]] = []  # (end, -start, -row) of unclaimed siblings
        for r in sorted(rows, key=lambda r: (start[r], r)):
            if start[r] > start[loop] + TOLERANCE:
                i = bisect.bisect_right(free, (start[r] + TOLERANCE, math.inf, math.inf))
                if i:
                    out[r] = 2 * -free.pop(i - 1)[2] + 1
            g = last_of(r)
            bisect.insort(free, (end[g], -start[g], -g))
    return out


def gating_end(
    r: int, latest: float, slot: int | None, order: Any, ends: Any, start: Any, end: Any, fqn: Any
) -> int | None:
    """The end event that let row ``r`` start when its structure does not explain the start
    (``latest``: the latest time its predecessors allow), or None.

    The sibling that freed its slot in a loop's window (``slot``, :func:`claim_slots`) if that
    ended late enough; else, searching back from ``r``'s start through the run's rows by end
    (``order``, their ``ends`` sorted), the latest ends at or before it and not before
    ``latest``, of nodes not related to ``r``'s (ties: the earliest started).
    """
    if slot is not None and end[slot // 2] >= latest - TOLERANCE:
        return slot
    k = bisect.bisect_right(ends, start[r] + TOLERANCE)
    found: list[int] = []
    me = str(fqn[r])
    for i in range(k - 1, max(-1, k - 1 - _SCAN), -1):
        g = int(order[i])
        if ends[i] < latest - TOLERANCE or (found and ends[i] < end[found[0]] - TOLERANCE):
            break
        if not _related(str(fqn[g]), me):
            found.append(g)
    if not found:
        return None
    return 2 * min(found, key=lambda g: (start[g], g)) + 1
