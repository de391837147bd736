"""Durations (and failure rates) drawn from a measured history (issue 28, part 1).

A history is the trace schema with one block of rows per run (``run_id``), as
:func:`~notebook_pipelines.formats.history_store.read_history` and the loaders return it (the
engine reads it by its columns: ``run_id``, ``fqn``, ``kind``, ``step``, ``attempt``,
``start_s``, ``end_s``, ``status``, ``iteration``). Wherever durations are taken
(``simulate``, ``monte_carlo``, ``compare``, ``what_if``, ``suggest_layout``) ``durations=h``
samples them from it:

- ``mode="joint"`` (the default) resamples whole runs: every step of a simulated run takes its
  duration from the same measured run, so steps that were slow together stay slow together
  (the correlation between the steps of one run is kept). A step missing from the drawn run
  (added later, skipped then) takes one of its own measured durations, drawn independently.
- ``mode="independent"`` draws each step's duration from its own measurements, independently.

A step's measured duration in a run is its last attempt's (``end_s - start_s``). Plan steps
are matched by FQN, then by step id when that id names one measured step. A looped step
(``compile_0``, ``compile_1``) and a step inside a looped stage or group
(``build_ubuntu.…``, ``build_macos.…``) take, per run, the longest of their iterations'
copies, which every iteration of the simulated run then takes — exact for iterations side by
side (the looped step's own row spans them), an overestimate when ``maxConcurrency`` runs them
in turn (the looped row's span would count the whole loop once per iteration). Steps the
history lacks take their own ``duration=`` or ``default=``, with a
:class:`HistoryDurationsWarning` that names them.

``failures="history"`` injects each step's measured failure rate: the share of its measured
attempts that failed (``Failed``, ``Errored``, ``Aborted``, ``ApprovalRejected``, and
``IgnoreFailed``: a failure its strategy ignored), per attempt — for a looped step, per attempt
of an iteration (its own row, which fails when one iteration does, is left out).

Randomness: ``simulate(p, durations=h, seed=s)`` draws its measured run (joint) or each step's
measurement (independent) from a generator seeded with ``(s, "history")``, so
``monte_carlo``'s ``seed`` column replays a run on the scheduler path.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

from ..definition.callables import is_sampler
from ..errors import HistoryDurationsWarning, SimulationError
from .sampling import draw_runs, to_seconds
from .steptable import MISSING, StepTable

__all__ = ["MODES", "HistoryDurations", "HistoryDurationsWarning", "is_history"]

MODES = ("joint", "independent")
_FAILED = ("Failed", "Errored", "Aborted", "ApprovalRejected", "IgnoreFailed")
#: the statuses of a step attempt that did not run: no measurement
_NOT_RUN = ("Skipped", "NotStarted", "Queued")
#: the entropy word of the history stream (after the seed): b"hist" as an integer
_TAG = 0x68697374


def is_history(value: Any) -> bool:
    """True for a DataFrame with the trace schema's ``run_id`` and ``fqn`` columns."""
    columns = getattr(value, "columns", None)
    return columns is not None and "fqn" in columns and "run_id" in columns


class HistoryDurations:
    """The measured durations of ``plan``'s steps in ``history``: a runs × steps matrix.

    >>> import pandas as pd, notebook_pipelines as nbp
    >>> p = nbp.Pipeline("p")
    >>> with p.stage("s") as s:
    ...     _ = s.step("a")
    >>> fqn = p.plan().steps[0].fqn
    >>> h = pd.DataFrame({"run_id": ["1", "2"], "fqn": [fqn] * 2, "kind": "step", "step": "a",
    ...                   "attempt": 1, "status": "Success", "start_s": 0.0, "end_s": [3.0, 5.0]})
    >>> HistoryDurations(h, p.plan()).matrix.tolist()
    [[3.0], [5.0]]
    """

    def __init__(self, history: Any, plan: Any, mode: str = "joint", warn: bool = True):
        import numpy as np

        from ..definition.plan import as_plan

        if mode not in MODES:
            raise SimulationError(f"mode={mode!r}: use 'joint' (whole runs resampled) or 'independent'")
        self.plan: Any = as_plan(plan)  # a Plan (typed Any like the plans of the engine's options)
        plan = self.plan
        self.mode, self.history = mode, history
        self.scale: dict[int, float] = {}  # node index → factor (what_if: "20 % faster" is 0.8)
        self.fixed: dict[int, Any] = {}  # node index → a duration or sampler that replaces the measured
        self.default: Any = None  # what an unmeasured step without duration= takes (scaled by scale)
        rows = _measured_rows(history)
        last = rows.sort_values("attempt", kind="stable").groupby(["run_id", "fqn"], observed=True).tail(1)
        seconds = (last["end_s"] - last["start_s"]).groupby([last["run_id"], last["fqn"]], observed=True)
        table = seconds.first()
        inner_fqns: set[str] = set()
        if "iteration" in last.columns:  # an iteration's copies (R46): postfixed FQNs, matched below
            inner_fqns = set(last.loc[last["iteration"].notna(), "fqn"]) - set(
                last.loc[last["iteration"].isna(), "fqn"]
            )
        wide = table.unstack("fqn") if len(table) else None
        self.run_ids = list(wide.index) if wide is not None else []
        measured_fqns = (set(wide.columns) - inner_fqns) if wide is not None else set()
        sources = step_sources(plan, measured_fqns)
        inside = plan.inside_loops()
        self.steps: list[Any] = []  # plan step nodes with measurements, in matrix column order
        columns = []
        self.missing: list[str] = []
        for node in plan.nodes:
            if node.kind != "step" or node.phase == "rollback":
                continue
            source = sources.get(node.index)
            column = None
            if node.strategy is not None and inner_fqns:  # its iterations, not its row that spans them
                column = _iterations(node, node, inner_fqns, wide)
            if column is None and source is not None and wide is not None:  # a column of wide
                column = wide[source].to_numpy(dtype=float)
            elif column is None and node.index in inside and inner_fqns:
                column = _iterations(node, plan.nodes[inside[node.index]], inner_fqns, wide)
            if column is None:
                self.missing.append(node.fqn)
                continue
            self.steps.append(node)
            columns.append(column)
        n_runs = len(self.run_ids)
        self.matrix = np.column_stack(columns) if columns else np.empty((n_runs, 0))
        if n_runs == 0:
            raise SimulationError(
                "durations=: the history has no finished step rows (kind 'step', attempt ≥ 1, start and end)"
            )
        every = set(wide.columns) if wide is not None else set()  # the measured FQNs, copies too
        if not self.steps and self.missing and not _shares_a_step(plan, every):
            raise _unrelated(history, plan, every)
        if self.missing and warn:
            warn_missing(self.missing, stacklevel=4)
        rows = self._without_unrelated_runs(rows, warn)
        # failure rates: failed attempts / attempts, per measured step
        self._rows = rows

    def _without_unrelated_runs(self, rows: Any, warn: bool) -> Any:
        """Leave out the runs that measure none of the plan's steps (another pipeline's runs in a
        history of several, a run that failed before its first step): joint resampling drew them
        and then filled every step independently, and their failures counted."""
        import numpy as np

        kept: Any = ~np.isnan(self.matrix).all(axis=1)
        if kept.all() or not self.steps:  # (no step measured: the warning named them all)
            return rows
        dropped = int((~kept).sum())
        self.matrix = self.matrix[kept]
        self.run_ids = [r for r, k in zip(self.run_ids, kept) if k]
        if warn:
            warnings.warn(
                f"durations=history: {dropped} of {len(kept)} runs measure none of the steps of "
                f"{self.plan.pipeline.id!r} (runs of another pipeline?): left out; select this pipeline's "
                "runs, e.g. h[h['pipeline'] == …]",
                HistoryDurationsWarning,
                stacklevel=5,
            )
        return rows[rows["run_id"].isin(self.run_ids)]

    def draw(self, rng: Any, runs: int) -> dict[int, Any]:
        """``runs`` durations per measured step (by plan node index)."""
        import numpy as np

        m = self.matrix
        n = m.shape[0]
        out: dict[int, Any] = {}
        if self.mode == "joint":
            picked = m[rng.integers(n, size=runs)]
            for j, node in enumerate(self.steps):
                column = picked[:, j]
                gaps = np.isnan(column)
                if gaps.any():  # the drawn run lacks the step: one of its own measurements
                    own = m[:, j][~np.isnan(m[:, j])]
                    column[gaps] = own[rng.integers(len(own), size=int(gaps.sum()))]
                out[node.index] = column
        else:
            for j, node in enumerate(self.steps):
                own = m[:, j][~np.isnan(m[:, j])]
                out[node.index] = own[rng.integers(len(own), size=runs)]
        return out

    def changed(self, durations: Any = None, scale: Any = None, default: Any = None) -> HistoryDurations:
        """A copy whose draws are changed: ``durations`` (by step id, FQN or glob: seconds, a
        Harness duration or a sampler) replace the measured ones, ``scale`` (by step id, FQN or
        glob: a factor) multiplies them (``{"scan": 0.8}``: scan 20 % faster) — or, for a step
        the history does not measure, its own ``duration=``, else ``default``."""
        import copy

        other = copy.copy(self)
        other.default = default
        other.scale, other.fixed = dict(self.scale), dict(self.fixed)
        steps = [n for n in self.plan.nodes if n.kind == "step" and n.phase != "rollback"]
        if durations:
            table = StepTable("durations", durations, self.plan, True)
            for node in steps:
                value = table.get(node)
                if value is not MISSING:
                    other.fixed[node.index] = value
        if scale:
            table = StepTable("scale", scale, self.plan, True)
            for node in steps:
                value = table.get(node)
                if value is MISSING:
                    continue
                if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
                    raise SimulationError(
                        f"scale[{node.id!r}]: give a finite factor ≥ 0 (0.8: 20 % faster), not {value!r}"
                    )
                other.scale[node.index] = float(value)
        return other

    def _changes(self, out: dict[int, Any], rng: Any, runs: int) -> dict[int, Any]:
        if not self.fixed and not self.scale:
            return out
        import numpy as np

        nodes = self.plan.nodes
        for index, value in self.fixed.items():
            where = nodes[index].fqn
            if is_sampler(value):
                out[index] = draw_runs(value, rng, runs, where)
            else:
                out[index] = np.full(runs, to_seconds(value, f"{where} (durations)"))
        for index, factor in self.scale.items():
            if index in out:
                out[index] = out[index] * factor
                continue
            value = nodes[index].duration if nodes[index].duration is not None else self.default
            where = nodes[index].fqn
            if is_sampler(value):  # unmeasured: its own duration or the default, scaled
                out[index] = draw_runs(value, rng, runs, where) * factor
            elif value is not None:
                out[index] = np.full(runs, to_seconds(value, f"{where} (durations)") * factor)
        return out

    def one_run(self, seed: int) -> dict[str, float]:
        """The durations of one simulated run with ``seed``: ``{step FQN: seconds}``."""
        import numpy as np

        rng = np.random.default_rng([seed, _TAG])
        drawn = self._changes(self.draw(rng, 1), rng, 1)
        nodes = self.plan.nodes
        return {nodes[i].fqn: float(values[0]) for i, values in drawn.items()}

    def batch(self, seed: int, runs: int) -> dict[int, Any]:
        """``runs`` runs at once (the vectorised path): one generator seeded ``(seed, "history")``."""
        return self.draws(seed)(runs)

    def draws(self, seed: int) -> Callable[[int], dict[int, Any]]:
        """A function ``runs -> durations`` (as :meth:`batch`) that draws a batch in chunks from
        one generator seeded ``(seed, "history")``: each call continues it."""
        import numpy as np

        rng = np.random.default_rng([seed, _TAG])
        return lambda runs: self._changes(self.draw(rng, runs), rng, runs)

    def failure_rates(self) -> dict[str, float]:
        """``{step FQN: share of its measured attempts that failed}`` for steps that ever failed."""
        rows = self._rows
        out = {}
        by_source = {}
        for node in self.steps:
            by_source[node.fqn] = node
        fqns = rows["fqn"].astype(str)
        if "parent" in rows.columns:  # a looped step's iterations (R46): their row's parent is its row
            parents = rows["parent"].astype(object)
            copy = parents.isin(set(fqns))
            spans = fqns.isin(set(parents[copy].astype(str))) & ~copy  # its own row spans them
            fqns = fqns.where(~copy, parents.astype(str))
            rows, fqns = rows[~spans], fqns[~spans]
        failed = rows["status"].astype(str).isin(_FAILED)
        shares = failed.groupby(fqns.to_numpy(), observed=True).mean()
        ids = {n.id: n.fqn for n in self.steps}
        for fqn, share in shares.items():
            target = fqn if fqn in by_source else ids.get(str(fqn).rsplit(".", 1)[-1])
            if target is not None and share > 0:
                out[target] = float(share)
        return out


def step_sources(plan: Any, fqns: Any) -> dict[int, str]:
    """Where each of ``plan``'s steps (rollback aside) is measured among ``fqns``: see
    :func:`matched_by_id`."""
    steps = (n for n in plan.nodes if n.kind == "step" and n.phase != "rollback")
    return matched_by_id(steps, fqns)


def matched_by_id(nodes: Any, fqns: Any) -> dict[int, str]:
    """For each of ``nodes``, by node index, the FQN among ``fqns`` (a set, or a dict keyed by
    FQN) that stands for it: its own, else the one FQN that ends with its id (a CI history's
    job that ``pipeline_from_history`` laid out anew, D14); a node found neither way (or whose
    id ends several) is left out."""
    ids: dict[str, list[str]] = {}
    for fqn in fqns:
        ids.setdefault(str(fqn).rsplit(".", 1)[-1], []).append(fqn)
    out: dict[int, str] = {}
    for node in nodes:
        if node.fqn in fqns:
            out[node.index] = node.fqn
        elif len(ids.get(node.id, ())) == 1:
            out[node.index] = ids[node.id][0]
    return out


def warn_missing(fqns: list[str], stacklevel: int = 2) -> None:
    """The :class:`HistoryDurationsWarning` naming the steps a history does not measure."""
    shown = ", ".join(fqns[:8]) + (f" and {len(fqns) - 8} more" if len(fqns) > 8 else "")
    warnings.warn(
        f"durations=history: no measurement of {shown}; they take their own duration= or default=",
        HistoryDurationsWarning,
        stacklevel=stacklevel,
    )


#: the columns a history needs to give durations (the trace schema has them all)
_COLUMNS = ("run_id", "fqn", "kind", "attempt", "status", "start_s", "end_s")


def _measured_rows(history: Any) -> Any:
    """The finished step attempts of ``history`` (kind ``step``, attempt ≥ 1, start and end, a
    status other than ``Skipped``/``NotStarted``/``Queued``), checked: the columns are there, and
    every attempt lasts a finite time ≥ 0 (at most ``MAX_SECONDS``) — a row that ends before it
    starts is refused, naming it."""
    import numpy as np

    from ..definition.durations import MAX_SECONDS

    missing = [c for c in _COLUMNS if c not in history.columns]
    if missing:
        raise SimulationError(
            f"durations=: the history has no column {', '.join(map(repr, missing))}; a history is the "
            f"trace schema with one block of rows per run (it needs {', '.join(_COLUMNS)}): read one with "
            "nbp.read_history(…) or nbp.read_trace(…), or pd.concat traces of runs"
        )
    if "pipeline" in history.columns:  # the run columns of a history (read_history)
        names = [str(x) for x in history["pipeline"].dropna().unique()]
        if len(names) > 1:
            shown = ", ".join(map(repr, names[:3])) + (", …" if len(names) > 3 else "")
            raise SimulationError(
                f"durations=: the history holds the runs of {len(names)} pipelines ({shown}); its "
                f"durations are one pipeline's: select its runs, e.g. h[h['pipeline'] == {names[0]!r}]"
            )
    rows = history[(history["kind"] == "step") & (history["attempt"] > 0)]
    rows = rows[rows["start_s"].notna() & rows["end_s"].notna()]
    # a step that did not run measured nothing (GitHub gives a skipped step times, its end at
    # times before its start): its run lacks the step, as a run before the step was added does
    rows = rows[~rows["status"].astype(str).isin(_NOT_RUN)]
    key = [c for c in ("run_id", "fqn", "iteration", "attempt", "start_s") if c in rows.columns]
    if rows.duplicated(key).any():
        raise SimulationError(
            "durations=: some step rows repeat in one run id: the runs share a run_id (simulate() names "
            "every run 'sim-<seed>'), so all but one of them would be lost; give each run its own, "
            "simulate(p, seed=s, run_id=f'run-{s}')"
        )
    seconds = (rows["end_s"] - rows["start_s"]).to_numpy(dtype=float)
    bad = ~(np.isfinite(seconds) & (seconds >= 0) & (seconds <= MAX_SECONDS))
    if bad.any():
        row = rows.iloc[int(np.argmax(bad))]
        raise SimulationError(
            f"durations=: the history's step {row['fqn']} (run {row['run_id']!r}, attempt {row['attempt']}) "
            f"lasts {float(seconds[bad][0])!r} s (start_s {float(row['start_s'])!r}, end_s "
            f"{float(row['end_s'])!r}): a measured duration is end_s - start_s, finite, ≥ 0 and at most "
            "100 years; fix or drop such rows"
            + (f" ({int(bad.sum())} in all)" if bad.sum() > 1 else "")
            + ", e.g. h = h[~(h['end_s'] < h['start_s'])]"
        )
    return rows


def _shares_a_step(plan: Any, fqns: set[Any]) -> bool:
    """True when a measured FQN ends with one of ``plan``'s step ids, or with one and a postfix
    (``compile_0_1``: an iteration's copy, R46) — the history is of this pipeline, its
    measurements perhaps out of reach (loops in loops)."""
    ids = {n.id for n in plan.nodes if n.kind == "step"}
    for fqn in fqns:
        parts = str(fqn).rsplit(".", 1)[-1].split("_")
        if any("_".join(parts[:k]) in ids for k in range(1, len(parts) + 1)):
            return True
    return False


def _unrelated(history: Any, plan: Any, measured: set[str]) -> SimulationError:
    """The error for a history that measures none of ``plan``'s steps (another pipeline's)."""
    steps = [n.id for n in plan.nodes if n.kind == "step" and n.phase != "rollback"]
    ids = sorted({str(f).rsplit(".", 1)[-1] for f in measured})
    pipelines = ""
    if "pipeline" in history.columns:
        names = sorted(str(x) for x in history["pipeline"].dropna().unique())
        pipelines = f" (its pipelines: {', '.join(names[:5])})" if names else ""
    return SimulationError(
        f"durations=: the history measures none of the steps of {plan.pipeline.id!r} "
        f"({', '.join(steps[:8])}{', …' if len(steps) > 8 else ''}); it measured "
        f"{', '.join(ids[:8])}{', …' if len(ids) > 8 else ''}{pipelines}: give the history of this "
        "pipeline (select its runs, e.g. h[h['pipeline'] == …])"
    )


def _iterations(node: Any, looped: Any, fqns: set[str], wide: Any) -> Any:
    """Per run, the longest of the iterations' copies of ``node`` (a step inside the looped node
    ``looped``: its FQN with the looped node's postfix, ``build_ubuntu.…``), or None."""
    import re

    suffix = node.fqn[len(looped.fqn) :]
    pattern = re.compile(re.escape(looped.fqn) + r"(?:_[A-Za-z0-9$]+)+" + re.escape(suffix) + r"\Z")
    matched = [f for f in fqns if pattern.match(str(f))]
    if not matched:
        return None
    return wide[matched].max(axis=1).to_numpy(dtype=float)
