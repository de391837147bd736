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
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

__all__ = ["Flows", "fold_fqns", "path_flows"]

_TOL = 1e-6
_SCAN = 256
RERUN = "Rerun"


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
    import pandas as pd

    wanted = ["run_id", "fqn", "parent", "kind", "phase", "block", "iteration", "attempt", "start_s", "end_s"]
    wanted += [c for c in ("queued_s", "action", "after") if c in history.columns]
    timed = history.loc[history["start_s"].notna() & history["end_s"].notna(), wanted]
    run_codes, runs = pd.factorize(timed["run_id"].astype(object), sort=False)
    order = np.argsort(run_codes, kind="stable")
    timed = timed.iloc[order]
    run = run_codes[order].astype(np.int64)
    n = len(timed)
    if n == 0:  # no run started: no path
        none, empty = np.zeros(0, np.int64), np.zeros(0)
        return Flows(timed, [], run, empty, none, none, empty, empty, none, empty)
    fqn_all = timed["fqn"].to_numpy(dtype=object)
    par_all = timed["parent"].to_numpy(dtype=object, na_value=None)
    has_parent = np.array([p is not None for p in par_all], dtype=bool)
    codes, uniques = pd.factorize(np.concatenate([fqn_all, np.where(has_parent, par_all, fqn_all)]))
    names = pd.Index(uniques)
    fqn = codes[:n].astype(np.int64)
    parent = np.where(has_parent, codes[n:], -1).astype(np.int64)
    kind = timed["kind"].astype(object).to_numpy()
    # a container: a pipeline, stage or group row, or a looped node's row (an iteration's parent,
    # the iteration's fqn without its postfix, R46), whatever its kind; the rest is the work
    iterates = np.array(
        [p is not None and len(f) > len(p) + 1 and f.startswith(p + "_") for f, p in zip(fqn_all, par_all)],
        dtype=bool,
    )
    looped = np.zeros(len(names) + 1, dtype=bool)
    looped[parent[iterates]] = True
    is_step = (kind == "step") & ~looped[fqn]  # the work
    phase = timed["phase"].astype(object).fillna("execution").to_numpy()
    block = timed["block"].astype("Float64").fillna(-1).to_numpy(dtype=np.float64).astype(np.int64)
    iteration = timed["iteration"].astype("Float64").fillna(-1).to_numpy(dtype=np.float64).astype(np.int64)
    attempt = timed["attempt"].to_numpy(dtype=np.int64)
    start = timed["start_s"].to_numpy(dtype=np.float64)
    end = timed["end_s"].to_numpy(dtype=np.float64)
    queued = np.zeros(n)
    if "queued_s" in timed.columns:
        queued = np.nan_to_num(timed["queued_s"].to_numpy(dtype=np.float64), nan=0.0)
    rerun_action = np.zeros(n, dtype=bool)
    if "action" in timed.columns:
        rerun_action = (timed["action"].astype(object) == RERUN).to_numpy(dtype=bool)
    after = (
        timed["after"].to_numpy(dtype=object) if "after" in timed.columns else np.full(n, None, dtype=object)
    )
    after_known = ~pd.isna(after)  # None / NaN: unknown; a tuple or an array of fqns: known
    pos = np.arange(n)

    # -- each row's parent row: the parent's rows in the run (containers only, as Schedule) ----
    rows_df = pd.DataFrame(
        {"run": run, "fqn": fqn, "parent": parent, "it": iteration, "start": start, "r": pos}
    )
    holders = rows_df[~is_step][["run", "fqn", "it", "start", "r"]].rename(
        columns={"fqn": "parent", "it": "pit", "start": "pstart", "r": "c"}
    )
    cand = rows_df[["run", "parent", "it", "start", "r"]].merge(holders, on=["run", "parent"])
    cand["same"] = cand["it"] == cand["pit"]
    any_same = cand.groupby("r")["same"].transform("any")
    cand = cand[cand["same"] | ~any_same]
    cand["inside"] = cand["pstart"] <= cand["start"] + _TOL
    cand["k"] = np.where(cand["inside"], cand["pstart"], -np.inf)
    cand["kc"] = np.where(cand["inside"], cand["c"], -cand["c"])
    cand = cand.sort_values(["r", "inside", "k", "kc"], ascending=[True, False, False, False])
    chosen = cand.drop_duplicates("r")
    prow = np.full(n, -1, dtype=np.int64)
    prow[chosen["r"].to_numpy()] = chosen["c"].to_numpy()

    # -- units: a node's attempts (per run, fqn, iteration and parent row) ---------------------
    units = pd.DataFrame({"run": run, "fqn": fqn, "it": iteration, "prow": prow, "attempt": attempt,
                          "start": start, "r": pos})  # fmt: skip
    units = units.sort_values(["run", "fqn", "it", "prow", "attempt", "start", "r"])
    unit_id = units.groupby(["run", "fqn", "it", "prow"], sort=False).ngroup().to_numpy()
    urows = units["r"].to_numpy()
    unit_of = np.empty(n, dtype=np.int64)
    unit_of[urows] = unit_id
    first_flag = np.r_[True, unit_id[1:] != unit_id[:-1]]
    last_flag = np.r_[unit_id[1:] != unit_id[:-1], True]
    n_units = int(unit_id.max()) + 1 if n else 0
    first_row = np.empty(n_units, dtype=np.int64)
    last_row = np.empty(n_units, dtype=np.int64)
    first_row[unit_id[first_flag]] = urows[first_flag]
    last_row[unit_id[last_flag]] = urows[last_flag]
    prev_in_unit = np.full(n, -1, dtype=np.int64)
    prev_in_unit[urows[~first_flag]] = urows[np.flatnonzero(~first_flag) - 1]

    src_l: list[np.ndarray] = []
    dst_l: list[np.ndarray] = []
    lag_l: list[np.ndarray] = []

    def add(s: Any, d: Any, lag: Any) -> None:
        s = np.asarray(s, dtype=np.int64)
        src_l.append(s)
        dst_l.append(np.asarray(d, dtype=np.int64))
        lag_l.append(np.broadcast_to(np.asarray(lag, dtype=np.float64), s.shape).copy())

    # attempts chained
    has_prev = prev_in_unit >= 0
    r_next = pos[has_prev]
    r_prev = prev_in_unit[has_prev]
    is_rerun = np.zeros(n, dtype=bool)
    is_rerun[r_next[rerun_action[r_prev]]] = True
    add(
        2 * r_prev + 1,
        2 * r_next,
        np.where(rerun_action[r_prev], 0.0, np.maximum(0.0, start[r_next] - end[r_prev])),
    )

    # lists: a unit's owner (parent row, or the missing parent's name), phase, block
    uf = first_row
    u_prow, u_par = prow[uf], parent[uf]
    owner = np.where(u_prow >= 0, u_prow, n + u_par + 1)  # -1 parent → n: one "missing" owner
    ulist = pd.DataFrame({"run": run[uf], "owner": owner, "phase": phase[uf], "block": block[uf],
                          "u": np.arange(n_units)})  # fmt: skip
    known = after_known[uf]
    ulist["known"] = known
    ulist["dag"] = ulist.groupby(["run", "owner", "phase"])["known"].transform("any")
    blocks_sorted = (
        ulist[["run", "owner", "phase", "block"]]
        .drop_duplicates()
        .sort_values(["run", "owner", "phase", "block"])
    )
    blocks_sorted["prev_block"] = blocks_sorted.groupby(["run", "owner", "phase"])["block"].shift(1)
    blocks_sorted["last"] = blocks_sorted.groupby(["run", "owner", "phase"])["block"].transform("max")
    ulist = ulist.merge(blocks_sorted, on=["run", "owner", "phase", "block"], how="left")
    ulist = ulist.sort_values("u")
    u_last = last_row[ulist["u"].to_numpy()]
    u_first = first_row[ulist["u"].to_numpy()]
    dag = ulist["dag"].to_numpy(dtype=bool)
    ends_list = dag | (ulist["block"].to_numpy() == ulist["last"].to_numpy())
    owner_arr = ulist["owner"].to_numpy()
    has_owner_row = owner_arr < n
    # parent ends after the items of its last block (any item, with after)
    sel = ends_list & has_owner_row
    add(2 * u_last[sel] + 1, 2 * owner_arr[sel] + 1, 0.0)
    has_children = np.zeros(n, dtype=bool)
    has_children[owner_arr[has_owner_row]] = True
    # the end of each run: outermost lists' last items
    sel = ends_list & ~has_owner_row
    end_event_of_run = 2 * n + np.arange(len(runs))
    add(2 * u_last[sel] + 1, end_event_of_run[ulist["run"].to_numpy()[sel]], 0.0)
    # duration edges
    dur = is_step | ~has_children
    add(2 * pos[dur], 2 * pos[dur] + 1, end[dur] - start[dur])

    # starts without after: previous block's items, or the parent's start
    uk = ~known
    prevb = ulist["prev_block"].to_numpy()
    no_prev = np.isnan(prevb.astype(np.float64))
    sel = uk & no_prev & has_owner_row & (ulist["phase"].to_numpy() == "execution")
    add(2 * owner_arr[sel], 2 * u_first[sel], 0.0)
    sel = uk & ~no_prev
    if sel.any():
        want = pd.DataFrame({"run": ulist["run"].to_numpy()[sel], "owner": owner_arr[sel],
                             "phase": ulist["phase"].to_numpy()[sel], "block": prevb[sel].astype(np.int64),
                             "to": u_first[sel]})  # fmt: skip
        have = pd.DataFrame({"run": ulist["run"].to_numpy(), "owner": owner_arr,
                             "phase": ulist["phase"].to_numpy(), "block": ulist["block"].to_numpy(),
                             "frm": u_last})  # fmt: skip
        pairs = want.merge(have, on=["run", "owner", "phase", "block"])
        add(2 * pairs["frm"].to_numpy() + 1, 2 * pairs["to"].to_numpy(), 0.0)

    # starts with after: the ends of the nodes named (same parent preferred)
    wants_after = np.zeros(n, dtype=bool)
    wants_after[u_first[known]] = True
    kn_units = np.zeros(n_units, dtype=bool)
    kn_units[ulist["u"].to_numpy()[known]] = True
    wants_after |= is_rerun & kn_units[unit_of]
    rs = np.flatnonzero(wants_after)
    if len(rs):
        lists = pd.Series(after[rs], index=rs).explode().dropna()
        need = pd.DataFrame(
            {
                "r": lists.index.to_numpy(dtype=np.int64),
                "fqn": names.get_indexer(lists.to_numpy(dtype=object)),
            }
        )
        need = need[need["fqn"] >= 0]
        need["run"] = run[need["r"].to_numpy()]
        need["upar"] = prow[first_row[unit_of[need["r"].to_numpy()]]]
        utab = pd.DataFrame({"run": run[first_row], "fqn": fqn[first_row], "k": np.arange(n_units),
                             "kpar": prow[first_row]})  # fmt: skip
        m = need.merge(utab, on=["run", "fqn"])
        m["same"] = m["upar"] == m["kpar"]
        m = m[m["same"] | ~m.groupby(["r", "fqn"])["same"].transform("any")]
        # the last attempt of unit k that ended by r's start, else its last attempt
        att = pd.DataFrame({"k": unit_id, "a": urows, "seq": np.arange(n)})
        mm = m[["r", "k"]].merge(att, on="k")
        mm = mm[end[mm["a"].to_numpy()] <= start[mm["r"].to_numpy()] + _TOL]
        best = mm.sort_values("seq").drop_duplicates(["r", "k"], keep="last")
        got = m[["r", "k"]].merge(best[["r", "k", "a"]], on=["r", "k"], how="left")
        a = got["a"].to_numpy(dtype=np.float64)
        a = np.where(np.isnan(a), last_row[got["k"].to_numpy()], a).astype(np.int64)
        add(2 * a + 1, 2 * got["r"].to_numpy(), 0.0)
        # a first attempt that waited for nothing starts with its parent
        edged = np.zeros(n, dtype=bool)
        edged[got["r"].to_numpy()] = True
        firsts = u_first[known]
        sel = (~edged[firsts]) & (prow[firsts] >= 0) & (phase[firsts] == "execution")
        add(2 * prow[firsts[sel]], 2 * firsts[sel], 0.0)

    src = np.concatenate(src_l) if src_l else np.zeros(0, np.int64)
    dst = np.concatenate(dst_l) if dst_l else np.zeros(0, np.int64)
    lag = np.concatenate(lag_l) if lag_l else np.zeros(0)
    n_events = 2 * n + len(runs)
    time = np.empty(n_events)
    time[0 : 2 * n : 2] = start
    time[1 : 2 * n : 2] = end
    is_end = dst >= 2 * n
    # a run's end: the latest end of its outermost rows
    makespan = np.full(len(runs), -np.inf)
    np.maximum.at(makespan, dst[is_end] - 2 * n, time[src[is_end]])
    makespan[~np.isfinite(makespan)] = 0.0
    time[2 * n :] = makespan
    value = time[src] + lag
    keep = (value <= time[dst] + _TOL) | is_end
    src, dst, lag, value = src[keep], dst[keep], lag[keep], value[keep]
    latest = np.full(n_events, -np.inf)
    np.maximum.at(latest, dst, value)

    # gates: starts their structure (and queue) does not explain
    starts_ev = np.arange(0, 2 * n, 2)
    first_end = np.full(len(runs), np.inf)
    np.minimum.at(first_end, run, end)
    unexplained = (start - latest[starts_ev] > queued + _TOL) & ~is_rerun & (first_end[run] <= start + _TOL)
    slots = _slots(prow, iterates, unit_of, first_row, last_row, start, end)
    gate_src, gate_dst = _gates(
        np.flatnonzero(unexplained), run, fqn_all, start, end, latest[starts_ev], slots
    )
    if len(gate_dst):
        drop = np.isin(dst, gate_dst)
        src, dst, value = src[~drop], dst[~drop], value[~drop]
        src = np.concatenate([src, gate_src])
        dst = np.concatenate([dst, gate_dst])
        value = np.concatenate([value, time[gate_dst]])
        latest[gate_dst] = time[gate_dst]
    tight = value >= latest[dst] - _TOL
    src, dst = src[tight], dst[tight]

    flow = _propagate(src, dst, n_events, 2 * n + np.arange(len(runs)))
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
    ok = is_step[rr] & (end[rr] - start[rr] > _TOL) & (attempt[rr] > 0)
    np.add.at(step_on_path, rr[ok], flow[dur_edge][ok])
    return Flows(timed, list(runs), run, makespan, src, dst, gap, flow, owner_row, step_on_path)


def _slots(
    prow: Any, iterates: Any, unit_of: Any, first_row: Any, last_row: Any, start: Any, end: Any
) -> dict:
    """Per iteration that waited for a slot of its loop's window (R54), the end event of the
    sibling that freed it: iterations in the order they started each take the latest sibling end
    at or before their start that no earlier one took (ties: the sibling that started first).
    The same rule as ``Schedule._slots``; a Python loop over the iterations of loops only."""
    import numpy as np

    out: dict[int, int] = {}
    firsts = np.unique(first_row[unit_of[np.flatnonzero(iterates)]]) if iterates.any() else []
    by_loop: dict[int, list[int]] = {}
    for r in firsts:
        if iterates[r] and prow[r] >= 0:
            by_loop.setdefault(int(prow[r]), []).append(int(r))
    for loop, rows in by_loop.items():
        rows.sort(key=lambda r: (start[r], r))
        free: list[tuple[float, float, int]] = []
        for r in rows:
            if start[r] > start[loop] + _TOL:
                i = bisect.bisect_right(free, (start[r] + _TOL, math.inf, math.inf))
                if i:
                    out[r] = 2 * -free.pop(i - 1)[2] + 1
            g = int(last_row[unit_of[r]])
            bisect.insort(free, (end[g], -start[g], -g))
    return out


def _gates(rows: Any, run: Any, fqn: Any, start: Any, end: Any, latest: Any, slots: dict) -> tuple[Any, Any]:
    """For each row whose start nothing explains: the end event that let it start — the sibling
    that freed its slot in a loop's window, else the latest end at or before it elsewhere in the
    run, not of a related node (ties: the earliest started)."""
    import numpy as np

    if not len(rows):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    bounds = np.flatnonzero(np.r_[True, run[1:] != run[:-1], True])
    run_start = {int(run[b]): (b, e) for b, e in itertools.pairwise(bounds)}
    cache: dict[int, tuple] = {}
    gs, gd = [], []
    for r in rows:
        freed = slots.get(int(r))
        if freed is not None and end[freed // 2] >= latest[r] - _TOL:
            gs.append(freed)
            gd.append(2 * int(r))
            continue
        k = int(run[r])
        if k not in cache:
            b, e = run_start[k]
            idx = np.arange(b, e)
            o = idx[np.argsort(end[idx], kind="stable")]
            cache[k] = (o, end[o])
        order, ends = cache[k]
        i = int(np.searchsorted(ends, start[r] + _TOL, side="right"))
        found: list[int] = []
        me = str(fqn[r])
        for j in range(i - 1, max(-1, i - 1 - _SCAN), -1):
            g = int(order[j])
            if ends[j] < latest[r] - _TOL or (found and ends[j] < end[found[0]] - _TOL):
                break
            other = str(fqn[g])
            if not (other == me or other.startswith(me + ".") or me.startswith(other + ".")):
                found.append(g)
        if found:
            g = min(found, key=lambda x: (start[x], x))
            gs.append(2 * g + 1)
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
