"""The precedence graph of every run of a history as arrays: the rows, their units and lists,
and the edges between their events (``S(r) = 2r``, ``F(r) = 2r + 1``, a run's end ``2n + run``).

:func:`~notebook_pipelines.analysis.paths.path_flows` builds it in this order — the timed rows
(:func:`timed_rows`), each row's parent row (:func:`parent_rows`), a node's attempts as units
(:func:`attempt_units`), attempts chained (:func:`chain_attempts`), the items of each parent's
lists (:func:`unit_lists`, :func:`list_edges`), the starts that follow what a row waited for
(:func:`after_edges`) — then keeps the binding edges. The rules are ``Schedule``'s
(:mod:`~notebook_pipelines.analysis.schedule`), with pandas merges and numpy for all runs at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .schedule import RERUN, TOLERANCE

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

__all__ = [
    "Edges",
    "Lists",
    "Rows",
    "Units",
    "after_edges",
    "attempt_units",
    "chain_attempts",
    "list_edges",
    "parent_rows",
    "timed_rows",
    "unit_lists",
]


@dataclass
class Rows:
    """The timed rows of a history as arrays, in run order (position ``r``)."""

    timed: pd.DataFrame
    runs: Any  # the run ids, in order of first appearance
    run: np.ndarray  # per row, its run's number
    names: pd.Index  # the fqns (and parents' fqns) the codes ``fqn`` and ``parent`` stand for
    fqn_all: np.ndarray  # the fqns themselves
    fqn: np.ndarray
    parent: np.ndarray  # -1: no parent
    iterates: np.ndarray  # a looping iteration's row
    is_step: np.ndarray  # the work: a step's row that is no looped node's
    phase: np.ndarray
    block: np.ndarray
    iteration: np.ndarray
    attempt: np.ndarray
    start: np.ndarray
    end: np.ndarray
    queued: np.ndarray  # seconds a CI job waited for a runner, else 0
    rerun_action: np.ndarray  # the whole run was re-run after this attempt
    after: np.ndarray  # the fqns a row waited for (None / NaN: unknown)
    after_known: np.ndarray


def timed_rows(history: pd.DataFrame) -> Rows:
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
    queued = np.zeros(n)
    if "queued_s" in timed.columns:
        queued = np.nan_to_num(timed["queued_s"].to_numpy(dtype=np.float64), nan=0.0)
    rerun_action = np.zeros(n, dtype=bool)
    if "action" in timed.columns:
        rerun_action = (timed["action"].astype(object) == RERUN).to_numpy(dtype=bool)
    after = (
        timed["after"].to_numpy(dtype=object) if "after" in timed.columns else np.full(n, None, dtype=object)
    )
    return Rows(
        timed=timed,
        runs=runs,
        run=run,
        names=names,
        fqn_all=fqn_all,
        fqn=fqn,
        parent=parent,
        iterates=iterates,
        is_step=(kind == "step") & ~looped[fqn],
        phase=timed["phase"].astype(object).fillna("execution").to_numpy(),
        block=timed["block"].astype("Float64").fillna(-1).to_numpy(dtype=np.float64).astype(np.int64),
        iteration=timed["iteration"].astype("Float64").fillna(-1).to_numpy(dtype=np.float64).astype(np.int64),
        attempt=timed["attempt"].to_numpy(dtype=np.int64),
        start=timed["start_s"].to_numpy(dtype=np.float64),
        end=timed["end_s"].to_numpy(dtype=np.float64),
        queued=queued,
        rerun_action=rerun_action,
        after=after,
        after_known=~pd.isna(after),  # None / NaN: unknown; a tuple or an array of fqns: known
    )


def parent_rows(rows: Rows) -> Any:
    """Each row's parent row: of the parent's rows in the run (containers only, as ``Schedule``),
    the same iteration's if any, the latest that started by the row's start; -1 for none."""
    import numpy as np
    import pandas as pd

    n = len(rows.start)
    rows_df = pd.DataFrame(
        {"run": rows.run, "fqn": rows.fqn, "parent": rows.parent, "it": rows.iteration, "start": rows.start,
         "r": np.arange(n)}
    )  # fmt: skip
    holders = rows_df[~rows.is_step][["run", "fqn", "it", "start", "r"]].rename(
        columns={"fqn": "parent", "it": "pit", "start": "pstart", "r": "c"}
    )
    cand = rows_df[["run", "parent", "it", "start", "r"]].merge(holders, on=["run", "parent"])
    cand["same"] = cand["it"] == cand["pit"]
    any_same = cand.groupby("r")["same"].transform("any")
    cand = cand[cand["same"] | ~any_same]
    cand["inside"] = cand["pstart"] <= cand["start"] + TOLERANCE
    cand["k"] = np.where(cand["inside"], cand["pstart"], -np.inf)
    cand["kc"] = np.where(cand["inside"], cand["c"], -cand["c"])
    cand = cand.sort_values(["r", "inside", "k", "kc"], ascending=[True, False, False, False])
    chosen = cand.drop_duplicates("r")
    prow = np.full(n, -1, dtype=np.int64)
    prow[chosen["r"].to_numpy()] = chosen["c"].to_numpy()
    return prow


@dataclass
class Units:
    """A node's attempts (per run, fqn, iteration and parent row) as units ``0..count-1``."""

    count: int
    unit_id: np.ndarray  # per attempt, in unit order
    urows: np.ndarray  # the rows, in unit order (by attempt)
    unit_of: np.ndarray  # per row, its unit
    first_row: np.ndarray  # per unit, its first attempt's row
    last_row: np.ndarray
    prev_in_unit: np.ndarray  # per row, the attempt before it (-1: none)


def attempt_units(rows: Rows, prow: Any) -> Units:
    import numpy as np
    import pandas as pd

    n = len(rows.start)
    units = pd.DataFrame({"run": rows.run, "fqn": rows.fqn, "it": rows.iteration, "prow": prow,
                          "attempt": rows.attempt, "start": rows.start, "r": np.arange(n)})  # fmt: skip
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
    return Units(n_units, unit_id, urows, unit_of, first_row, last_row, prev_in_unit)


class Edges:
    """The graph's edges ``src → dst`` with their lags, gathered in arrays (events: ``S(r) = 2r``,
    ``F(r) = 2r + 1``, a run's end ``2n + run``)."""

    def __init__(self) -> None:
        self.src: list[np.ndarray] = []
        self.dst: list[np.ndarray] = []
        self.lag: list[np.ndarray] = []

    def add(self, s: Any, d: Any, lag: Any) -> None:
        import numpy as np

        s = np.asarray(s, dtype=np.int64)
        self.src.append(s)
        self.dst.append(np.asarray(d, dtype=np.int64))
        self.lag.append(np.broadcast_to(np.asarray(lag, dtype=np.float64), s.shape).copy())

    def arrays(self) -> tuple[Any, Any, Any]:
        import numpy as np

        src = np.concatenate(self.src) if self.src else np.zeros(0, np.int64)
        dst = np.concatenate(self.dst) if self.dst else np.zeros(0, np.int64)
        lag = np.concatenate(self.lag) if self.lag else np.zeros(0)
        return src, dst, lag


def chain_attempts(rows: Rows, units: Units, edges: Edges) -> Any:
    """Attempts chained by the wait between them (none after a re-run); returns, per row, whether
    a re-run of the whole run started it."""
    import numpy as np

    n = len(rows.start)
    has_prev = units.prev_in_unit >= 0
    r_next = np.arange(n)[has_prev]
    r_prev = units.prev_in_unit[has_prev]
    is_rerun = np.zeros(n, dtype=bool)
    is_rerun[r_next[rows.rerun_action[r_prev]]] = True
    edges.add(
        2 * r_prev + 1,
        2 * r_next,
        np.where(rows.rerun_action[r_prev], 0.0, np.maximum(0.0, rows.start[r_next] - rows.end[r_prev])),
    )
    return is_rerun


@dataclass
class Lists:
    """Per unit (in unit order): the list it is an item of — its owner (the parent row, or
    ``n + 1 + parent`` for a parent not in the trace), phase and block — and its block's place."""

    frame: pd.DataFrame  # run, owner, phase, block, u, known, dag, prev_block, last
    first: np.ndarray  # the unit's first attempt's row
    last: np.ndarray  # its last attempt's row
    owner: np.ndarray
    has_owner: np.ndarray  # the owner is a row of the trace
    known: np.ndarray  # the unit says what it waited for (``after``)


def unit_lists(rows: Rows, prow: Any, units: Units) -> Lists:
    import numpy as np
    import pandas as pd

    n = len(rows.start)
    uf = units.first_row
    u_prow, u_par = prow[uf], rows.parent[uf]
    owner = np.where(u_prow >= 0, u_prow, n + u_par + 1)  # -1 parent → n: one "missing" owner
    ulist = pd.DataFrame({"run": rows.run[uf], "owner": owner, "phase": rows.phase[uf],
                          "block": rows.block[uf], "u": np.arange(units.count)})  # fmt: skip
    known = rows.after_known[uf]
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
    owner_arr = ulist["owner"].to_numpy()
    return Lists(
        frame=ulist,
        first=units.first_row[ulist["u"].to_numpy()],
        last=units.last_row[ulist["u"].to_numpy()],
        owner=owner_arr,
        has_owner=owner_arr < n,
        known=known,
    )


def list_edges(rows: Rows, lists: Lists, edges: Edges, n_runs: int) -> None:
    """A parent ends after the items of its last block (after any item, with ``after``); a run
    ends after its outermost lists' last items; a step (and a container whose children are not in
    the trace) lasts its duration; an item without ``after`` starts after the previous block's
    items, or with its parent (the first block of an execution list)."""
    import numpy as np
    import pandas as pd

    n = len(rows.start)
    ulist, u_first, u_last = lists.frame, lists.first, lists.last
    owner_arr, has_owner_row = lists.owner, lists.has_owner
    dag = ulist["dag"].to_numpy(dtype=bool)
    ends_list = dag | (ulist["block"].to_numpy() == ulist["last"].to_numpy())
    sel = ends_list & has_owner_row
    edges.add(2 * u_last[sel] + 1, 2 * owner_arr[sel] + 1, 0.0)
    has_children = np.zeros(n, dtype=bool)
    has_children[owner_arr[has_owner_row]] = True
    # the end of each run: outermost lists' last items
    sel = ends_list & ~has_owner_row
    end_event_of_run = 2 * n + np.arange(n_runs)
    edges.add(2 * u_last[sel] + 1, end_event_of_run[ulist["run"].to_numpy()[sel]], 0.0)
    # duration edges
    pos = np.arange(n)
    dur = rows.is_step | ~has_children
    edges.add(2 * pos[dur], 2 * pos[dur] + 1, rows.end[dur] - rows.start[dur])

    # starts without after: previous block's items, or the parent's start
    uk = ~lists.known
    prevb = ulist["prev_block"].to_numpy()
    no_prev = np.isnan(prevb.astype(np.float64))
    sel = uk & no_prev & has_owner_row & (ulist["phase"].to_numpy() == "execution")
    edges.add(2 * owner_arr[sel], 2 * u_first[sel], 0.0)
    sel = uk & ~no_prev
    if sel.any():
        want = pd.DataFrame({"run": ulist["run"].to_numpy()[sel], "owner": owner_arr[sel],
                             "phase": ulist["phase"].to_numpy()[sel], "block": prevb[sel].astype(np.int64),
                             "to": u_first[sel]})  # fmt: skip
        have = pd.DataFrame({"run": ulist["run"].to_numpy(), "owner": owner_arr,
                             "phase": ulist["phase"].to_numpy(), "block": ulist["block"].to_numpy(),
                             "frm": u_last})  # fmt: skip
        pairs = want.merge(have, on=["run", "owner", "phase", "block"])
        edges.add(2 * pairs["frm"].to_numpy() + 1, 2 * pairs["to"].to_numpy(), 0.0)


def after_edges(rows: Rows, prow: Any, units: Units, lists: Lists, is_rerun: Any, edges: Edges) -> None:
    """Starts with ``after`` (a unit's first attempt, and attempts a re-run started): the ends of
    the nodes named, the same parent's preferred — each node's last attempt that ended by the
    start, else its last; a first attempt that waited for nothing starts with its parent."""
    import numpy as np
    import pandas as pd

    n = len(rows.start)
    known, u_first = lists.known, lists.first
    unit_id, urows, unit_of = units.unit_id, units.urows, units.unit_of
    first_row, last_row = units.first_row, units.last_row
    wants_after = np.zeros(n, dtype=bool)
    wants_after[u_first[known]] = True
    kn_units = np.zeros(units.count, dtype=bool)
    kn_units[lists.frame["u"].to_numpy()[known]] = True
    wants_after |= is_rerun & kn_units[unit_of]
    rs = np.flatnonzero(wants_after)
    if not len(rs):
        return
    named = pd.Series(rows.after[rs], index=rs).explode().dropna()
    need = pd.DataFrame(
        {
            "r": named.index.to_numpy(dtype=np.int64),
            "fqn": rows.names.get_indexer(named.to_numpy(dtype=object)),
        }
    )
    need = need[need["fqn"] >= 0]
    need["run"] = rows.run[need["r"].to_numpy()]
    need["upar"] = prow[first_row[unit_of[need["r"].to_numpy()]]]
    utab = pd.DataFrame({"run": rows.run[first_row], "fqn": rows.fqn[first_row], "k": np.arange(units.count),
                         "kpar": prow[first_row]})  # fmt: skip
    m = need.merge(utab, on=["run", "fqn"])
    m["same"] = m["upar"] == m["kpar"]
    m = m[m["same"] | ~m.groupby(["r", "fqn"])["same"].transform("any")]
    # the last attempt of unit k that ended by r's start, else its last attempt
    att = pd.DataFrame({"k": unit_id, "a": urows, "seq": np.arange(n)})
    mm = m[["r", "k"]].merge(att, on="k")
    mm = mm[rows.end[mm["a"].to_numpy()] <= rows.start[mm["r"].to_numpy()] + TOLERANCE]
    best = mm.sort_values("seq").drop_duplicates(["r", "k"], keep="last")
    got = m[["r", "k"]].merge(best[["r", "k", "a"]], on=["r", "k"], how="left")
    a = got["a"].to_numpy(dtype=np.float64)
    a = np.where(np.isnan(a), last_row[got["k"].to_numpy()], a).astype(np.int64)
    edges.add(2 * a + 1, 2 * got["r"].to_numpy(), 0.0)
    # a first attempt that waited for nothing starts with its parent
    edged = np.zeros(n, dtype=bool)
    edged[got["r"].to_numpy()] = True
    firsts = u_first[known]
    sel = (~edged[firsts]) & (prow[firsts] >= 0) & (rows.phase[firsts] == "execution")
    edges.add(2 * prow[firsts[sel]], 2 * firsts[sel], 0.0)
