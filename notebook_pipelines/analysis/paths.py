"""Critical paths of many runs at once: the precedence graph of a history, built with array operations.

:class:`~notebook_pipelines.analysis.timing.Schedule` reads one run with Python loops over its
rows; a history of 1,000 runs × 50 nodes would take seconds that way. :func:`path_flows` builds
the same graph of events for every run of a history together, with pandas merges and numpy:

- every timed row ``r`` has a start ``S`` and an end ``F``; a step (and a container whose
  children are not in the trace) has the edge ``S → F`` of its duration;
- a node's attempts are chained ``F(k) → S(k+1)`` by the wait between them (none after an
  attempt marked ``action == "Rerun"``: the re-run waited for its ``after`` again);
- the items of a parent's list (per ``phase``) are grouped by ``block``: the first block starts
  with the parent, each next block after every item of the previous one, and the parent ends
  after the items of its last block; where an item says what it waited for (``after``), its
  start follows the ends of those nodes instead, and the parent ends after any item;
- a start later than its structure and its ``queued_s`` explain is gated by the latest end
  before it elsewhere in the run (a resource, a runner, a rollback started by a failure);
- the run ends with the latest end of its outermost rows.

The same rules as ``Schedule`` (``tests/test_history_analytics.py`` checks that both give the
same critical path on every run of the shipped history and on simulated runs with retries,
loops and parallel blocks). Only the gating search (rare: starts nothing explains) loops in
Python, over those rows only.

**Ties.** Each event's predecessors whose time plus lag is the latest (within 1 µs) are all
*binding*. Walking back from the end of a run, a unit of weight flows to the binding
predecessors, split evenly where several tie: two branches that end at the same moment each
carry ½ of the run's path, and a step on one of them is critical in ½ of that run.

**Exclusive seconds.** The walk from the end back to the run's start crosses the whole
makespan; each edge it crosses gives its seconds to one node: a step's duration and the waits
between its attempts to the step, a gap before a start (a runner's queue, a gate) to the node
that started, a gap between a container's start and its first child's to the container, a gap
between the last child's end and the container's end to the container. So per run the nodes'
exclusive seconds add up to the makespan, and a container's inclusive seconds (its own and its
descendants') are the part of the path inside it.

It stands on :mod:`.path_graph` (the rows, units and edges as arrays) and :mod:`.schedule`
(``claim_slots`` and ``gating_end``, the searches it shares with ``Schedule``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .path_graph import (
    Edges,
    Rows,
    Units,
    after_edges,
    attempt_units,
    chain_attempts,
    list_edges,
    parent_rows,
    timed_rows,
    unit_lists,
)
from .schedule import TOLERANCE, claim_slots, gating_end

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

__all__ = ["Flows", "fold_fqns", "path_flows"]


def fold_fqns(fqns: Any, parents: Any) -> dict[str, str]:
    """Each fqn → the fqn of its node with looping iterations folded into the looped node.

    An iteration's copy is a row whose fqn does not lie under its parent's (``steps.a_0``,
    child of the looped ``steps.a``; GitHub's ``build_ubuntu`` child of ``build``): it folds into
    its parent, and everything under it follows (``build_ubuntu.spec…Run_make`` →
    ``build.spec…Run_make``).

    >>> fold_fqns(["p", "p.a", "p.a_0", "p.a_0.x"], [None, "p", "p.a", "p.a_0"])["p.a_0.x"]
    'p.a.x'
    """
    roots: dict[str, str] = {}
    known: list[str] = []
    for f, p in zip(fqns, parents):
        if f is None or f != f:
            continue
        f = str(f)
        known.append(f)
        if isinstance(p, str) and not f.startswith(p + "."):
            roots[f] = p
    memo: dict[str, str] = {}
    return {f: _fold(f, roots, memo) for f in dict.fromkeys(known)}


def _fold(f: str, roots: dict[str, str], memo: dict[str, str]) -> str:
    """``f`` with every iteration copy on its way up replaced by its looped node."""
    parts: list[str] = []
    g, steps = f, 0
    while True:
        steps += 1
        if g in memo:
            out = memo[g]
            break
        if g in roots and roots[g] != g and steps < 10_000:
            g = roots[g]
            continue
        if "." not in g:
            out = g
            break
        g, last = g.rsplit(".", 1)
        parts.append(last)
    for last in reversed(parts):
        out = out + "." + last
    memo[f] = out
    return out


@dataclass
class Flows:
    """The critical paths of every run of a history, as arrays.

    Attributes:
        rows: the history's timed rows (original index kept), in run order; ``run`` is each
            row's run number (position in ``runs``).
        runs: the run ids, in order of first appearance.
        makespan: per run, the time of its end event (seconds from the run's start).
        src, dst, gap, flow: the edges the paths cross (events: ``S(r) = 2r``, ``F(r) = 2r + 1``,
            a run's end ``2n + run``): seconds between the two events, and the share of the
            run's path on the edge (ties split evenly).
        owner: per edge, the row whose node the edge's seconds belong to.
        step_on_path: per row, the share of its run's path through that step attempt (0 for
            containers, zero-length rows and attempts never reached).
    """

    rows: pd.DataFrame
    runs: list
    run: np.ndarray
    makespan: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    gap: np.ndarray
    flow: np.ndarray
    owner: np.ndarray
    step_on_path: np.ndarray


def path_flows(history: pd.DataFrame) -> Flows:
    """The critical path of every run of ``history`` (see the module notes), as :class:`Flows`."""
    import numpy as np

    rows = timed_rows(history)
    n, n_runs = len(rows.start), len(rows.runs)
    if n == 0:  # no run started: no path
        none, empty = np.zeros(0, np.int64), np.zeros(0)
        return Flows(rows.timed, [], rows.run, empty, none, none, empty, empty, none, empty)
    prow = parent_rows(rows)
    units = attempt_units(rows, prow)
    edges = Edges()
    is_rerun = chain_attempts(rows, units, edges)
    lists = unit_lists(rows, prow, units)
    list_edges(rows, lists, edges, n_runs)
    after_edges(rows, prow, units, lists, is_rerun, edges)
    src, dst, time, makespan = _binding_edges(rows, prow, units, edges, is_rerun, n_runs)
    flow = _propagate(src, dst, len(time), 2 * n + np.arange(n_runs))
    on = flow > 0
    src, dst, flow = src[on], dst[on], flow[on]
    gap = time[dst] - time[src]
    owner_row = np.where(
        (dst < 2 * n) & (dst % 2 == 0) & (src % 2 == 0),  # parent's start → child's start: the parent's
        src // 2,
        np.where(dst < 2 * n, dst // 2, src // 2),
    )
    step_on_path = np.zeros(n)
    dur_edge = (dst < 2 * n) & (dst == src + 1) & (src % 2 == 0)
    rr = src[dur_edge] // 2
    ok = rows.is_step[rr] & (rows.end[rr] - rows.start[rr] > TOLERANCE) & (rows.attempt[rr] > 0)
    np.add.at(step_on_path, rr[ok], flow[dur_edge][ok])
    return Flows(
        rows.timed, list(rows.runs), rows.run, makespan, src, dst, gap, flow, owner_row, step_on_path
    )


def _binding_edges(
    rows: Rows, prow: Any, units: Units, edges: Edges, is_rerun: Any, n_runs: int
) -> tuple[Any, Any, Any, Any]:
    """The binding edges (``src``, ``dst``), every event's ``time``
    and each run's makespan: edges the times contradict dropped (clock skew), a gate added for
    each start its structure and queue do not explain, then only the latest predecessors kept."""
    import numpy as np

    n = len(rows.start)
    start, end, run = rows.start, rows.end, rows.run
    src, dst, lag = edges.arrays()
    n_events = 2 * n + n_runs
    time = np.empty(n_events)
    time[0 : 2 * n : 2] = start
    time[1 : 2 * n : 2] = end
    is_end = dst >= 2 * n
    # a run's end: the latest end of its outermost rows
    makespan = np.full(n_runs, -np.inf)
    np.maximum.at(makespan, dst[is_end] - 2 * n, time[src[is_end]])
    makespan[~np.isfinite(makespan)] = 0.0
    time[2 * n :] = makespan
    value = time[src] + lag
    keep = (value <= time[dst] + TOLERANCE) | is_end
    src, dst, lag, value = src[keep], dst[keep], lag[keep], value[keep]
    latest = np.full(n_events, -np.inf)
    np.maximum.at(latest, dst, value)

    # gates: starts their structure (and queue) does not explain
    starts_ev = np.arange(0, 2 * n, 2)
    first_end = np.full(n_runs, np.inf)
    np.minimum.at(first_end, run, end)
    unexplained = (
        (start - latest[starts_ev] > rows.queued + TOLERANCE)
        & ~is_rerun
        & (first_end[run] <= start + TOLERANCE)
    )
    slots = _slots(prow, rows.iterates, units.unit_of, units.first_row, units.last_row, start, end)
    gate_src, gate_dst = _gates(
        np.flatnonzero(unexplained), run, rows.fqn_all, start, end, latest[starts_ev], slots
    )
    if len(gate_dst):
        drop = np.isin(dst, gate_dst)
        src, dst, value = src[~drop], dst[~drop], value[~drop]
        src = np.concatenate([src, gate_src])
        dst = np.concatenate([dst, gate_dst])
        value = np.concatenate([value, time[gate_dst]])
        latest[gate_dst] = time[gate_dst]
    tight = value >= latest[dst] - TOLERANCE
    return src[tight], dst[tight], time, makespan


def _slots(
    prow: Any, iterates: Any, unit_of: Any, first_row: Any, last_row: Any, start: Any, end: Any
) -> dict:
    """Per iteration that waited for a slot of its loop's window (R54), the end event of the
    sibling that freed it: iterations in the order they started each take the latest sibling end
    at or before their start that no earlier one took (ties: the sibling that started first).
    The rule is ``Schedule``'s (:func:`~notebook_pipelines.analysis.schedule.claim_slots`); a
    Python loop over the iterations of loops only."""
    import numpy as np

    firsts = np.unique(first_row[unit_of[np.flatnonzero(iterates)]]) if iterates.any() else []
    by_loop: dict[int, list[int]] = {}
    for r in firsts:
        if iterates[r] and prow[r] >= 0:
            by_loop.setdefault(int(prow[r]), []).append(int(r))
    return claim_slots(by_loop, start, end, lambda r: int(last_row[unit_of[r]]))


def _gates(rows: Any, run: Any, fqn: Any, start: Any, end: Any, latest: Any, slots: dict) -> tuple[Any, Any]:
    """For each row whose start nothing explains: the end event that let it start — the sibling
    that freed its slot in a loop's window, else the latest end at or before it elsewhere in the
    run, not of a related node (ties: the earliest started): ``Schedule``'s rule,
    :func:`~notebook_pipelines.analysis.schedule.gating_end`."""
    import numpy as np

    if not len(rows):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    bounds = np.flatnonzero(np.r_[True, run[1:] != run[:-1], True])
    run_start = {int(run[b]): (b, e) for b, e in itertools.pairwise(bounds)}
    cache: dict[int, tuple] = {}
    gs, gd = [], []
    for r in rows:
        k = int(run[r])
        if k not in cache:
            b, e = run_start[k]
            idx = np.arange(b, e)
            o = idx[np.argsort(end[idx], kind="stable")]
            cache[k] = (o, end[o])
        order, ends = cache[k]
        gate = gating_end(int(r), latest[r], slots.get(int(r)), order, ends, start, end, fqn)
        if gate is not None:
            gs.append(gate)
            gd.append(2 * int(r))
    return np.array(gs, dtype=np.int64), np.array(gd, dtype=np.int64)


def _propagate(src: Any, dst: Any, n_events: int, ends: Any) -> Any:
    """Per edge, the share of the path crossing it: one unit from each run's end, split evenly
    among an event's binding predecessors, walked back frontier by frontier."""
    import numpy as np

    flow = np.zeros(len(src))
    if not len(src):
        return flow
    order = np.argsort(dst, kind="stable")
    s_sorted = dst[order]
    begin = np.searchsorted(s_sorted, np.arange(n_events), side="left")
    count = np.searchsorted(s_sorted, np.arange(n_events), side="right") - begin
    events = np.asarray(ends, dtype=np.int64)
    weight = np.ones(len(events))
    for _ in range(n_events + 1):
        c = count[events]
        keep = c > 0
        events, weight, c = events[keep], weight[keep], c[keep]
        if not len(events):
            break
        # every binding edge of every frontier event
        idx = np.repeat(begin[events] - np.cumsum(np.r_[0, c[:-1]]), c) + np.arange(c.sum())
        edges = order[idx]
        w = np.repeat(weight / c, c)
        np.add.at(flow, edges, w)
        nxt, inv = np.unique(src[edges], return_inverse=True)
        events = nxt
        weight = np.bincount(inv, weights=w, minlength=len(nxt))
    return flow
