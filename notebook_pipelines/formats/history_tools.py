"""What a history gives back: a pipeline rebuilt from its runs, and the Harness Insights export.

:func:`pipeline_from_history` rebuilds the structure of one pipeline's runs (the latest run's
layout, through :func:`~.harness_executions.pipeline_from_execution`) with each step's
duration measured across all runs (the median of its last attempts), so ``simulate``,
``what_if``, ``suggest_layout`` and the pictures work on it. Where the runs' ``after``
edges (GitHub/GitLab ``needs``) form a DAG that no serial/parallel layout expresses, the nodes
become one parallel block whose members carry their ``needs`` (D14: each starts when what it
needs has ended), which ``simulate``, ``monte_carlo`` and ``what_if`` honour: GitHub's jobs
(stages) one block of stages; GitLab's jobs, whose needs cross its stages, one block of steps in
one stage (``jobs``). The edges are kept in ``pipeline.extra["needs"]`` too
(``{fqn in the history: [fqns it needs]}``); the description says which form was taken. Where
the edges cannot be given that form (an edge not known for every sibling, identifiers that
collide once merged), the pipeline is laid out by levels (a node's depth in the DAG: an upper
bound on the timing), and its description and picture's title say so.

:func:`load_harness_insights` reads the Pipeline Insights "Step Executions" CSV export: per
step execution, durations and statuses without the graph.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import TYPE_CHECKING, Any

from ..errors import excerpt
from .history import HistoryError, concat_runs, ident, run_frame, span, worst

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["INSIGHTS_COLUMNS", "load_harness_insights", "pipeline_from_history"]


def _one_pipeline(history: pd.DataFrame, what: str) -> tuple[str, str]:
    columns = getattr(history, "columns", None)
    if columns is None or any(c not in columns for c in ("run_id", "fqn", "kind", "start_s", "end_s")):
        raise HistoryError(f"{what} reads a history DataFrame (nbp.read_history, nbp.fetch_*_history)")
    if "source" not in columns or "pipeline" not in columns:
        return "trace", "pipeline"
    pairs = history[["source", "pipeline"]].drop_duplicates()
    if len(pairs) != 1:
        shown = ", ".join(f"{s}:{p}" for s, p in pairs.head(4).itertuples(index=False))
        raise HistoryError(
            f"{what}: the history holds {len(pairs)} pipelines ({excerpt(shown, 200)}): select one, "
            "e.g. h[h[\"pipeline\"] == '…'] (h.pipeline is the trace accessor, not the column)"
        )
    source, pipeline = pairs.iloc[0]
    return str(source), str(pipeline)


def _pipeline_id(name: str) -> str:
    out = ident(name.rsplit("/", 1)[-1].rsplit(".", 1)[0] if "/" in name else name)
    return out if re.match(r"[A-Za-z_]", out) else f"p_{out}"


def pipeline_from_history(history: pd.DataFrame, *, run: str | None = None, id: str | None = None) -> Any:
    """The pipeline the runs of a history executed, with durations measured across them.

    Args:
        history: a history of one pipeline (``read_history``, a ``fetch_*_history`` result,
            a loader's frame, or several traces concatenated).
        run: the run whose layout is taken (default: the latest successful run, else the latest).
        id: the rebuilt pipeline's identifier (default: from the pipeline's name).

    Returns:
        A ``Pipeline``: stages, groups, parallel blocks and loops as in that run; each step's
        ``duration`` the median, over the runs where it ran, of its last attempt's duration.

    Raises:
        HistoryError: not a history, several pipelines in it, no such run.

    >>> import notebook_pipelines as nbp
    >>> p = nbp.Pipeline("p")
    >>> with p.stage("s") as s:
    ...     _ = s.step("a", duration=2)
    >>> import pandas as pd
    >>> runs = pd.concat([p.simulate(durations={"a": d}, run_id=f"r{d}") for d in (1, 2, 9)])
    >>> rebuilt = pipeline_from_history(runs)
    >>> rebuilt.simulate()["end_s"].max()  # the median of 1, 2 and 9
    np.float64(2.0)
    """
    from .harness_executions import pipeline_from_execution

    source, name = _one_pipeline(history, "pipeline_from_history()")
    rows = _run_rows(history, run)
    pipeline = pipeline_from_execution(rows, id=id or _pipeline_id(name))
    pipeline.name = name
    most = _set_median_durations(pipeline, history)
    runs = history["run_id"].nunique()
    needs = _needs_no_layout_expresses(rows)
    description = (
        f"rebuilt from {runs} run(s) of {name} ({source}); step durations: medians over {most} run(s) at most"
    )
    if needs:
        edges = sum(len(v) for v in needs.values())
        pipeline.extra = {**(pipeline.extra or {}), "needs": needs}
        form = _lay_out_needs(pipeline, rows, needs)
        if form is None:
            description += (
                f"; its needs form a DAG no Harness layout expresses: laid out by levels (an upper bound on "
                f"its timing), its {edges} edges kept in pipeline.extra['needs']"
            )
        else:
            description += (
                f"; its needs form a DAG: {form}, each member carrying its needs (honoured by simulate and "
                f"monte_carlo, D14); its {edges} edges also in pipeline.extra['needs']"
            )
    pipeline.description = description
    return pipeline


def _lay_out_needs(pipeline: Any, rows: pd.DataFrame, needs: dict[str, list]) -> str | None:
    """Give the DAG of ``needs`` the form of D14 (see the module notes); how it was laid out, or
    None (left by levels) when it cannot be."""
    from ..definition.model import Stage

    nodes = {visit.fqn: visit for visit in pipeline.walk()}
    if any(f not in nodes for f, ns in needs.items() for f in (f, *ns)):
        return None
    first = rows.drop_duplicates("fqn")
    after = dict(zip(first["fqn"].astype(str), first["after"]))

    def parent(fqn: str) -> Any:
        return nodes[fqn].parent

    if all(parent(n) is parent(f) for f, ns in needs.items() for n in ns):
        containers = list({id(parent(f)): parent(f) for f in needs}.values())
        if not all(_can_be_one_block(_members(c.items), nodes, after) for c in containers):
            return None
        for container in containers:  # the needs stay among siblings: each list one block
            _one_block(container, _members(container.items), nodes, after)
        kinds = sorted({_kind_name(m) for c in containers for m in _members(c.items)})
        blocks = "one parallel block" if len(containers) == 1 else f"{len(containers)} parallel blocks"
        return f"laid out as {blocks} of {' and '.join(kinds)}"
    stages = list(pipeline.stages)  # GitLab: jobs (steps of stages) whose needs cross stages
    jobs = [m for s in stages for m in _members(getattr(s, "items", ()))]
    ids = [getattr(m, "id", None) for m in jobs]
    if (
        not all(isinstance(s, Stage) and not s.rollback_items for s in stages)
        or not all(id(parent(f)) in set(map(id, stages)) for f, ns in needs.items() for f in (f, *ns))
        or len(set(ids)) != len(ids)
        or not _can_be_one_block(jobs, nodes, after)
    ):
        return None
    merged = Stage("jobs", name=f"jobs of the stages {', '.join(s.id for s in stages)}")
    _one_block(merged, jobs, nodes, after)
    pipeline.stages = [merged]
    return (
        "laid out as one parallel block of its jobs, its stages merged into one stage (jobs) as their "
        "needs cross stages"
    )


def _members(items: Any) -> list:
    from ..definition.model import Parallel

    return [m for item in items for m in (item.items if isinstance(item, Parallel) else (item,))]


def _kind_name(node: Any) -> str:
    return {"Stage": "stages", "StepGroup": "step groups"}.get(type(node).__name__, "steps")


def _edges(members: list, nodes: dict, after: dict) -> list | None:
    """Per member, the identifiers of the members it waited for; None when an edge is unknown or
    names a node outside ``members``."""
    fqn_of = {id(v.node): f for f, v in nodes.items()}
    ids = {fqn_of.get(id(m)): m.id for m in members}
    out = []
    for member in members:
        edges = after.get(fqn_of.get(id(member)))
        if edges is None or isinstance(edges, float) or any(e not in ids for e in edges):
            return None
        out.append([ids[e] for e in edges] or None)
    return out


def _can_be_one_block(members: list, nodes: dict, after: dict) -> bool:
    return _edges(members, nodes, after) is not None


def _one_block(container: Any, members: list, nodes: dict, after: dict) -> None:
    """Lay ``container``'s execution list out as one parallel block of ``members``, each with the
    identifiers of the members it waited for as ``needs`` (D14)."""
    from ..definition.model import Parallel

    for member, wants in zip(members, _edges(members, nodes, after) or []):
        member.needs = wants
    container.items = [Parallel(members)]


def _run_rows(history: pd.DataFrame, run: str | None) -> pd.DataFrame:
    """The rows of ``run`` (default: the latest successful run, else the latest), indexed from 0."""
    if run is None:
        heads = history[history["kind"] == "pipeline"]
        if "created" in heads.columns:
            heads = heads.sort_values("created", kind="stable")
        good = heads[heads["status"].astype(str) == "Success"]
        chosen = (good if len(good) else heads)["run_id"]
        if not len(chosen):
            raise HistoryError("pipeline_from_history(): the history has no run (no pipeline row)")
        run = str(chosen.iloc[-1])
    rows = history[history["run_id"] == run]
    if not len(rows):
        raise HistoryError(f"pipeline_from_history(): no run {run!r} in the history")
    return rows.reset_index(drop=True)


def _set_median_durations(pipeline: Any, history: pd.DataFrame) -> int:
    """Each step's ``duration``: the median, per plan node, of the last attempt of each run;
    returns the most runs a median was taken over."""
    import numpy as np

    from ..definition.plan import compile_plan

    steps = history[(history["kind"] == "step") & history["start_s"].notna() & history["end_s"].notna()]
    fqn = steps["fqn"].astype(object).to_numpy()
    plan_fqn = _plan_fqns(history, fqn)
    last = steps.assign(_plan=plan_fqn).sort_values("attempt", kind="stable")
    last = last.groupby(["run_id", "_plan", "iteration"], dropna=False, sort=False).tail(1)
    medians = last.groupby("_plan", sort=False)["duration_s"].median()
    counts = last.groupby("_plan", sort=False)["run_id"].nunique()
    for node in compile_plan(pipeline).nodes:
        if node.kind == "step" and node.fqn in medians.index and node.source is not None:
            value = float(medians[node.fqn])
            if np.isfinite(value):
                node.source.duration = round(max(0.0, value), 6)
    return int(counts.max()) if len(counts) else 0


def _needs_no_layout_expresses(rows: pd.DataFrame) -> dict[str, list]:
    """``{fqn: [fqns it waited for]}`` of the children of every container whose children waited
    otherwise than its blocks say (all their edges kept); empty when the blocks say it all."""
    from ..engine.trace import after_from_blocks

    if "after" not in rows.columns:
        return {}

    def listed(column: str) -> list:
        values = rows[column].astype(object)
        return values.where(values.notna(), None).tolist()

    derived = after_from_blocks(listed("fqn"), listed("parent"), listed("phase"), listed("block"))
    known = [
        (str(f), p, a, d)
        for f, p, a, d in zip(rows["fqn"], rows["parent"], rows["after"], derived)
        if a is not None and not isinstance(a, float)
    ]
    differ = {p for _, p, a, d in known if set(a) != set(d)}
    return {f: list(a) for f, p, a, _ in known if p in differ and len(a)}


def _plan_fqns(history: pd.DataFrame, fqn: Any) -> Any:
    """Each fqn with its looping iterations' postfixes removed (``…stages.build_macos_3_12.…`` →
    ``…stages.build.…``): the plan node the row ran."""
    import numpy as np

    loops = history[history["iteration"].notna() & history["parent"].notna()]
    mapping: dict[str, str] = {}
    for f, parent in zip(loops["fqn"].astype(object), loops["parent"].astype(object)):
        f, parent = str(f), str(parent)
        if f.rsplit(".", 1)[0] == parent.rsplit(".", 1)[0] and f != parent:
            mapping[f] = parent
    if not mapping:
        return fqn
    out = np.array(fqn, dtype=object)
    for iteration in sorted(mapping, key=len, reverse=True):
        looped = mapping[iteration]
        for i, f in enumerate(out):
            if f == iteration or f.startswith(iteration + "."):
                out[i] = looped + f[len(iteration) :]
    return out


# -- Harness Pipeline Insights ------------------------------------------------------------------------
#: what each needed column may be called in an export (matched case-insensitively, ignoring
#: spaces, ``_`` and a ``Step Executions`` prefix)
INSIGHTS_COLUMNS = {
    "run_id": ("planexecutionid", "pipelineexecutionid", "executionid", "planexecution"),
    "pipeline": ("pipelineidentifier", "pipelineid", "pipelinename", "pipeline"),
    "stage": ("stageidentifier", "stageid", "stagename", "stage"),
    "step": ("stepidentifier", "stepid", "stepname", "step"),
    "status": ("stepstatus", "status"),
    "start": ("starttime", "startts", "startedat", "start"),
    "end": ("endtime", "endts", "endedat", "end"),
    "duration": ("durationsec", "durationseconds", "durations", "duration"),
    "stage_execution": ("stageexecutionid",),
}
_REQUIRED = ("run_id", "stage", "step", "status", "start")


def _norm(name: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", str(name).lower())
    for prefix in ("stepexecutions", "stepexecution", "pipelineexecutions"):
        if key.startswith(prefix) and len(key) > len(prefix):
            key = key[len(prefix) :]
    return key


def load_harness_insights(source: Any, *, pipeline: str | None = None) -> pd.DataFrame:
    """The Pipeline Insights "Step Executions" CSV export as a history (no graph: ``after``
    is None, ``block`` the order of first starts).

    Args:
        source: a path to the CSV, or a DataFrame of it.
        pipeline: the ``pipeline`` column where the export has none.

    Returns:
        A history (``source`` = ``harness-insights``): per run a pipeline row, a row per stage
        and a row per step execution (a step seen twice in a run: attempts 1, 2 … by start).
        ``attrs["columns_found"]`` says which export column gave each field.

    Raises:
        HistoryError: a needed column is missing (the message lists those found and the names
            tried), or a time does not parse (it names the row).
    """
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        table, label = source, "the export"
    else:
        table, label = _read_insights_csv(source)
    found = _insights_columns(table, label)
    records = _insights_records(table, found, label, pipeline)
    unknown: dict[str, None] = {}
    frames = []
    for (run, pipe), group in records.groupby(["run", "pipeline"], sort=False):
        rows = _insights_run_rows(group.sort_values("start", kind="stable"), unknown)
        run_columns = {"run_id": run, "source": "harness-insights", "pipeline": pipe}
        frames.append(run_frame(rows, {**run_columns, "created_ns": rows[0]["start_ns"]}))
    if unknown:
        warnings.warn(
            f"load_harness_insights: unknown status(es) {excerpt(', '.join(sorted(unknown)), 200)} read as "
            "Running",
            stacklevel=2,
        )
    out = concat_runs(frames)
    out.attrs["columns_found"] = dict(found)
    return out


#: the largest Insights export read (bytes): a dashboard's CSV of step executions is far smaller
MAX_INSIGHTS_BYTES = 200 * 2**20


def _read_insights_csv(source: Any) -> tuple[pd.DataFrame, str]:
    """The export's table (text cells) and its path: a bounded UTF-8 read, then the CSV parser;
    a file that is not text, or not CSV, is a :class:`HistoryError` naming it and where."""
    import io

    import pandas as pd

    from ..errors import InputFileError
    from .files import read_text

    path = os.fspath(source)
    if not os.path.isfile(path):
        raise HistoryError(f"load_harness_insights: no such file: {path}")
    try:
        text = read_text(
            path, limit=MAX_INSIGHTS_BYTES, kind="an Insights export", too_large="export fewer rows"
        )
    except InputFileError as err:
        raise HistoryError(f"load_harness_insights: {err}") from None
    try:
        table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise HistoryError(
            f"load_harness_insights: {path} is not a CSV file ({excerpt(str(err), 160)}): give the "
            "Step Executions export of Pipeline Insights"
        ) from None
    return table, path


def _insights_columns(table: pd.DataFrame, label: str) -> dict[str, str]:
    """Which export column gives each field (:data:`INSIGHTS_COLUMNS`); a needed one missing is
    an error listing the columns found and the names tried."""
    found: dict[str, str] = {}
    normalized = {_norm(c): c for c in table.columns}
    for field, names in INSIGHTS_COLUMNS.items():
        for name in names:
            hit = normalized.get(name)
            if hit is not None and hit not in found.values():
                found[field] = hit
                break
    missing = [f for f in _REQUIRED if f not in found]
    if "end" not in found and "duration" not in found:
        missing.append("end or duration")
    if missing:
        raise HistoryError(
            f"load_harness_insights: {label} lacks {', '.join(missing)} (columns found: "
            f"{excerpt(', '.join(map(str, table.columns)), 300)}; names tried: "
            + "; ".join(f"{f}: {', '.join(INSIGHTS_COLUMNS[f][:3])}" for f in _REQUIRED if f in missing)
            + ")"
        )
    return found


def _insights_records(table: pd.DataFrame, found: dict[str, str], label: str, pipeline: str | None) -> Any:
    """One record per step execution: run, pipeline, stage, step, status, start and end (UTC)."""
    import pandas as pd

    def times(column: str) -> Any:
        values = table[found[column]]
        numeric = pd.to_numeric(values, errors="coerce")
        try:
            if numeric.notna().all() and len(values):
                return pd.to_datetime(numeric, unit="ms", utc=True)
            return pd.to_datetime(values, utc=True, format="mixed")
        except (ValueError, TypeError) as err:
            raise HistoryError(
                f"load_harness_insights: {label}: the column {found[column]!r} holds a value that "
                f"is not a time ({excerpt(str(err), 120)})"
            ) from None

    start = times("start")
    if "end" in found:
        end = times("end")
    else:
        seconds = pd.to_numeric(table[found["duration"]], errors="coerce")
        end = start + pd.to_timedelta(seconds, unit="s")
    return pd.DataFrame(
        {
            "run": table[found["run_id"]].astype(str),
            "pipeline": (
                table[found["pipeline"]].astype(str) if "pipeline" in found else (pipeline or "pipeline")
            ),
            "stage": table[found["stage"]].astype(str),
            "step": table[found["step"]].astype(str),
            "status": table[found["status"]].astype(str),
            "start": start,
            "end": end,
        }
    )


def _container_row(fqn: str, parent: Any, kind: str, stage: Any, block: Any, name: Any, rows: list) -> dict:
    """The row of a stage or the pipeline: the span of ``rows`` and their worst status."""
    start, end = span(rows)
    return {
        "fqn": fqn, "parent": parent, "kind": kind, "phase": "execution", "stage": stage,
        "step_group": None, "step": None, "block": block, "iteration": None, "attempt": 1,
        "status": worst({r["fqn"]: r["status"] for r in rows}.values()), "after": None, "name": name,
        "start_ns": start, "end_ns": end,
    }  # fmt: skip


def _insights_run_rows(group: pd.DataFrame, unknown: dict[str, None]) -> list[dict]:
    """One run's rows (its records by start): the pipeline's, then each stage's and its steps'
    (a step seen again is its next attempt; ``block`` the order of first starts)."""
    from .harness_executions import STATUS_MAP

    rows: list[dict] = []
    tops = []
    for block, stage in enumerate(dict.fromkeys(group["stage"])):
        sid = ident(stage)
        sfqn = f"pipeline.stages.{sid}"
        step_rows = []
        seen: dict[str, int] = {}
        firsts: dict[str, int] = {}
        for rec in group[group["stage"] == stage].itertuples(index=False):
            step_id = ident(rec.step)
            seen[step_id] = seen.get(step_id, 0) + 1
            firsts.setdefault(step_id, len(firsts))
            status = STATUS_MAP.get(str(rec.status).replace("_", "").lower())
            if status is None:
                unknown.setdefault(str(rec.status), None)
                status = "Running"
            step_rows.append({
                "fqn": f"{sfqn}.spec.execution.steps.{step_id}", "parent": sfqn, "kind": "step",
                "phase": "execution", "stage": sid, "step_group": None, "step": step_id,
                "block": firsts[step_id], "iteration": None, "attempt": seen[step_id], "status": status,
                "start_ns": _ns(rec.start), "end_ns": _ns(rec.end), "after": None, "name": rec.step,
            })  # fmt: skip
        stage_row = _container_row(sfqn, "pipeline", "stage", sid, block, stage, step_rows)
        tops.append(stage_row)
        rows += [stage_row, *sorted(step_rows, key=lambda r: (r["block"], r["attempt"]))]
    return [_container_row("pipeline", None, "pipeline", None, None, None, tops), *rows]


def _ns(value: Any) -> int | None:
    import pandas as pd

    return None if value is None or pd.isna(value) else int(pd.Timestamp(value).value)
