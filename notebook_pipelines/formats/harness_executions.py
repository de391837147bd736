"""Real Harness runs as traces: an execution's node graph → the trace DataFrame (issue 15).

Harness shows one run in its UI but exports no node timings. Its execution-details endpoint
(``GET /pipeline/api/pipelines/execution/v2/{planExecutionId}?renderFullBottomGraph=true``)
returns the whole run as a node graph; :func:`load_harness_execution` turns that JSON into the
same trace DataFrame that ``run()`` and ``simulate()`` return, so ``trace.pipeline``
(critical path, slack, Gantt, what-if), ``p.render(trace)`` and every notebook work on real
data. :func:`pipeline_from_execution` rebuilds the pipeline's structure from the trace (for the
coloured picture and for re-simulating on the measured durations); :func:`fetch_harness_execution`
calls the API (``httpx``, the ``[harness]`` extra) and loads what it saved.

How the graph is read (see ``/work/shared/HARNESS_EXECUTIONS.md`` for the shapes)
--------------------------------------------------------------------------------
``executionGraph`` holds ``rootNodeId``, ``nodeMap`` (runtime uuid → node) and
``nodeAdjacencyListMap`` (uuid → ``children``: what is nested inside, ``nextIds``: what
follows). It is walked iteratively (an explicit stack: no recursion limit on deep graphs) in
display order: a node, its children, then its nextIds. Before the walk the graph is checked:
every id it names must be in ``nodeMap`` and no chain of children/nextIds may come back to a
node (a cycle) — each refusal names the node.

- Rows: one per stage, step group and step (``kind`` from ``stepType`` and ``baseFqn``), one
  for the pipeline (the ``PIPELINE_SECTION`` node, or the execution summary), and one for each
  looped node (a ``STRATEGY`` wrapper: ``fqn`` = its path + identifier, ``iteration`` NA), so
  the iterations' rows have their looped node as ``parent`` exactly as in a run's trace (R46).
  Other structural nodes (stages/execution sections, service and infrastructure sections,
  ``NG_FORK`` forks, rollback chains) give no row: they set ``block`` (the items of a fork,
  or several ``children``/``nextIds`` of one node — the older shape without a fork node —
  share one block), ``phase`` (``rollback`` inside a rollback chain or a ``…(Rollback)``
  section) and ``iteration``.
- ``fqn`` is the node's ``baseFqn``; ``start``/``end`` come from ``startTs``/``endTs``
  (epoch ms, UTC), ``start_s``/``end_s`` are seconds from the pipeline's start; ``worker`` is
  the delegate's name; ``error`` is ``failureInfo.message`` and ``error_type`` the first
  ``failureInfo.failureTypeList`` entry in the names of R16 (``EXPIRED`` → ``Timeout``).
- ``attempt`` = 1 + the ``RETRY`` entries of ``interruptHistories``. Harness keeps only the
  last attempt in the graph; an earlier attempt gets a row when its node JSON (from
  ``getExecutionNode``, keyed by the ``retryInterruptConfig.retryId``) is passed in
  ``attempts=``.
- ``iteration`` is ``strategyMetadata.currentiteration`` (keys looked up case-insensitively).
- Stages that never started are only in ``pipelineExecutionSummary.layoutNodeMap``: they get
  ``NotStarted`` rows with attempt 0 (D6), in layout order.
- Statuses are mapped to the trace's names (``STATUS_MAP``: waiting states → ``Running`` with
  no end, queued ones → ``Queued``). An unknown status is kept verbatim, with a warning: the
  ``status`` column's categories are then ``STATUSES`` followed by the unknown names, so
  filtering and grouping keep working and nothing is silently renamed.
- Extra columns after the schema's: ``uuid`` (the node execution id), ``setupId`` (the plan
  node id, shared by iterations and attempts) and ``stepType``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PipelineError, excerpt
from .files import InputFileError, decode, read_bytes

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "EXTRA_COLUMNS",
    "MAX_BYTES",
    "MAX_CONTAINERS",
    "STATUS_MAP",
    "HarnessExecutionError",
    "HarnessStatusWarning",
    "fetch_harness_execution",
    "load_harness_execution",
    "pipeline_from_execution",
]

#: the largest execution file read (checked before parsing)
MAX_BYTES = 100 * 1024 * 1024
#: the columns a loaded execution has after the trace schema's
EXTRA_COLUMNS = ("uuid", "setupId", "stepType")

#: Harness ``ExecutionStatus`` (lower-cased, ``_`` removed: legacy names read the same) → trace status
STATUS_MAP = {
    "success": "Success",
    "succeeded": "Success",
    "ignorefailed": "IgnoreFailed",
    "skipped": "Skipped",
    "failed": "Failed",
    "errored": "Errored",
    "error": "Errored",
    "expired": "Expired",
    "aborted": "Aborted",
    "abortedbyfreeze": "Aborted",
    "discontinuing": "Aborted",
    "approvalrejected": "ApprovalRejected",
    "rejected": "ApprovalRejected",
    "suspended": "Suspended",
    "freezefailed": "FreezeFailed",
    "rollbackfailed": "Failed",
    "notstarted": "NotStarted",
    "running": "Running",
    "asyncwaiting": "Running",
    "taskwaiting": "Running",
    "timedwaiting": "Running",
    "waitsteprunning": "Running",
    "approvalwaiting": "Running",
    "inputwaiting": "Running",
    "uploadwaiting": "Running",
    "paused": "Running",
    "pausing": "Running",
    "waiting": "Running",
    "queued": "Queued",
    "queuedlicenselimitreached": "Queued",
    "queuedexecutionconcurrencyreached": "Queued",
    "queuedglobalinfracapacityreached": "Queued",
    "interventionwaiting": "InterventionWaiting",
    "resourcewaiting": "ResourceWaiting",
}

#: ``failureInfo.failureTypeList`` entries → error types (R16)
ERROR_TYPE_MAP = {
    "EXPIRED": "Timeout",
    "TIMEOUT_ERROR": "Timeout",
    "DELEGATE_PROVISIONING": "DelegateProvisioning",
    "CONNECTIVITY": "Connectivity",
    "AUTHENTICATION": "Authentication",
    "AUTHORIZATION_ERROR": "Authorization",
    "VERIFICATION_FAILURE": "Verification",
    "APPLICATION_ERROR": "Unknown",
    "UNKNOWN": "Unknown",
    "POLICY_EVALUATION_FAILURE": "PolicyEvaluationFailure",
    "EXECUTION_INPUT_TIMEOUT_FAILURE": "InputTimeoutError",
    "INPUT_TIMEOUT_FAILURE": "InputTimeoutError",
    "APPROVAL_REJECTION": "ApprovalRejection",
    "DELEGATE_RESTART": "DelegateRestart",
    "USER_MARKED_FAILURE": "UserMarkedFailure",
}

_STAGE_TYPES = {"DEPLOYMENT_STAGE_STEP", "IntegrationStageStepPMS", "CUSTOM_STAGE", "APPROVAL_STAGE"}
_STRUCTURAL = {
    "PIPELINE_SECTION",
    "STAGES_STEP",
    "NG_FORK",
    "NG_EXECUTION",
    "ROLLBACK_OPTIONAL_CHILD_CHAIN",
    "STRATEGY",
    "SERVICE_CONFIG",
    "SERVICE_SECTION",
    "SERVICE",
    "SERVICE_V3",
    "INFRASTRUCTURE",
    "INFRASTRUCTURE_SECTION",
    "INFRASTRUCTURE_V2",
    "INFRASTRUCTURE_TASKSTEP_V2",
    "ENVIRONMENT",
}
_STEP_FQN = re.compile(r"\.(?:steps|rollbackSteps)\.[^.]+$")
_STAGE_FQN = re.compile(r"^pipeline\.stages\.[^.]+$")


class HarnessExecutionError(PipelineError, ValueError):
    """The input is not a usable Harness execution (what, where, how to fix in the message)."""


class HarnessStatusWarning(UserWarning):
    """A status this loader does not know: kept verbatim in the trace."""


# -- reading ---------------------------------------------------------------------------------------
#: the most objects and arrays (``{`` and ``[``) an execution's JSON may hold: parsed, each costs
#: ~100 bytes of memory for 1–3 bytes of text, so 100 MB of ``{},{},…`` would take 3 GB and 20 s.
#: Real executions hold one per 60+ bytes (1.7 M in 100 MB); the count is taken on the bytes
#: (``{`` or ``[`` inside strings count too) before anything is parsed.
MAX_CONTAINERS = 4_000_000
_FIRST = re.compile(rb"\s*(.?)")
_TOP_LEVEL = {b"[": "list", b'"': "str", b"t": "bool", b"f": "bool", b"n": "NoneType"}


def parse_execution_json(data: bytes, label: str, *, top: str = "object") -> Any:
    """The JSON of an execution, its shape checked before it is parsed whole: the top level must
    be an object (``top="any"``: anything, e.g. a list of attempts' nodes), and it may hold at most
    :data:`MAX_CONTAINERS` objects and arrays.

    Raises:
        HarnessExecutionError: not UTF-8 (with line and column), not JSON (line and column),
            a top level that is not an object, too many objects, nested too deeply.
    """
    first = _FIRST.match(data).group(1)  # type: ignore[union-attr]
    kind = _TOP_LEVEL.get(first) or ("number" if first.isdigit() or first == b"-" else None)
    if top == "object" and kind is not None:
        raise HarnessExecutionError(
            f"{label} is not a Harness execution JSON: its top level is a {kind}, not an object "
            "(expected the response of …/pipelines/execution/v2/{planExecutionId})"
        )
    containers = data.count(b"{") + data.count(b"[")
    if containers > MAX_CONTAINERS:
        raise HarnessExecutionError(
            f"{label} holds {containers:,} objects and arrays, more than an execution of this size has "
            f"(at most {MAX_CONTAINERS:,} are read): not an execution the API returned; fetch the run "
            "per stage (stageNodeId=…) if it is one"
        )
    try:
        text = decode(data, label)
    except InputFileError as err:
        raise HarnessExecutionError(str(err)) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise HarnessExecutionError(
            f"{label}:{err.lineno}:{err.colno}: not JSON ({err.msg}): "
            "give the JSON the execution API returned"
        ) from None
    except RecursionError:
        raise HarnessExecutionError(f"{label}: the JSON is nested too deeply to read") from None


def read_execution_json(path: str | os.PathLike, option: str = "", *, top: str = "object") -> Any:
    """The JSON of an execution file: a regular file (read by ``formats.files``, as the CLI reads
    every file) of at most :data:`MAX_BYTES`, checked by :func:`parse_execution_json`."""
    text = os.fspath(path)
    try:
        data = read_bytes(
            path,
            limit=MAX_BYTES,
            option=option,
            kind="the execution's JSON file",
            too_large="fetch the run per stage (stageNodeId=…) or without outcomes",
        )
    except InputFileError as err:
        raise HarnessExecutionError(str(err)) from None
    return parse_execution_json(data, f"{option} {text}" if option else text, top=top)


def _source(source: Any) -> tuple[Any, str]:
    if isinstance(source, Mapping):
        return source, "the execution"
    if isinstance(source, (str, os.PathLike)):
        return read_execution_json(source), str(source)
    raise HarnessExecutionError(
        f"load_harness_execution() takes a path or the parsed JSON (a dict), not {type(source).__name__}"
    )


def _get(mapping: Any, key: str, default: Any = None) -> Any:
    """``mapping[key]``, the key matched case-insensitively (Harness mixes casings)."""
    if not isinstance(mapping, Mapping):
        return default
    if key in mapping:
        return mapping[key]
    lower = key.lower()
    for k, v in mapping.items():
        if isinstance(k, str) and k.lower() == lower:
            return v
    return default


def _unwrap(doc: Any, label: str) -> dict:
    """``data`` of the response envelope (or the data itself), checked to be an execution."""
    if not isinstance(doc, Mapping):
        raise HarnessExecutionError(
            f"{label} is not a Harness execution JSON: its top level is a {type(doc).__name__}, not an "
            "object (expected the response of …/pipelines/execution/v2/{planExecutionId})"
        )
    data = doc.get("data") if isinstance(doc.get("data"), Mapping) else doc
    graph = data.get("executionGraph")
    if not isinstance(graph, Mapping):
        keys = ", ".join(sorted(str(k) for k in list(data)[:8])) or "none"
        hint = (
            "it has a pipelineExecutionSummary but no node graph: fetch it with renderFullBottomGraph=true"
            if "pipelineExecutionSummary" in data
            else f"no data.executionGraph (top-level keys: {excerpt(keys, 120)})"
        )
        raise HarnessExecutionError(
            f"{label} is not a Harness execution JSON (the response of "
            f"…/pipelines/execution/v2/{{planExecutionId}}?renderFullBottomGraph=true): {hint}"
        )
    node_map = graph.get("nodeMap")
    if not isinstance(node_map, Mapping) or not node_map:
        raise HarnessExecutionError(
            f"{label}: executionGraph.nodeMap is missing or empty: the run has no nodes"
        )
    adjacency = graph.get("nodeAdjacencyListMap") or {}
    if not isinstance(adjacency, Mapping):
        raise HarnessExecutionError(f"{label}: executionGraph.nodeAdjacencyListMap is not an object")
    root = graph.get("rootNodeId")
    if not isinstance(root, str) or root not in node_map:
        raise HarnessExecutionError(
            f"{label}: executionGraph.rootNodeId {excerpt(repr(root), 80)} is not a node of nodeMap"
        )
    return data


def _describe_node(node: Mapping, fqn: str) -> str:
    return f"node {excerpt(str(node.get('uuid', '')), 80)!r} ({excerpt(fqn, 120)})"


def _describe(node_id: str, node_map: Mapping) -> str:
    node = node_map.get(node_id)
    if not isinstance(node, Mapping):
        return f"node {excerpt(node_id, 80)!r}"
    fqn = node.get("baseFqn") or node.get("identifier") or ""
    name = excerpt(str(node.get("name", "")), 60)
    return f"node {excerpt(node_id, 80)!r} ({name!r}, {excerpt(str(fqn), 120)})"


def _edges(adjacency: Mapping, node_id: str, label: str) -> tuple[list, list]:
    entry = adjacency.get(node_id) or {}
    out = []
    for key in ("children", "nextIds"):
        ids = entry.get(key) or [] if isinstance(entry, Mapping) else []
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise HarnessExecutionError(
                f"{label}: nodeAdjacencyListMap[{node_id!r}].{key} is not a list of ids"
            )
        out.append(ids)
    return out[0], out[1]


def _check_graph(node_map: Mapping, adjacency: Mapping, root: str, label: str) -> None:
    """Every id named is in ``nodeMap``; no cycle through children/nextIds (iterative DFS)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    stack: list[tuple[str, int]] = [(root, 0)]
    while stack:
        node_id, i = stack.pop()
        if i == 0:
            state[node_id] = 1
        children, next_ids = _edges(adjacency, node_id, label)
        targets = [*children, *next_ids]
        if i < len(targets):
            stack.append((node_id, i + 1))
            target = targets[i]
            if target not in node_map:
                edge = "children" if i < len(children) else "nextIds"
                raise HarnessExecutionError(
                    f"{label}: {_describe(node_id, node_map)} lists {excerpt(target, 80)!r} in its {edge}, "
                    "but nodeMap has no such node: the JSON is incomplete (cut, or edited); fetch it again"
                )
            if state.get(target) == 1:
                raise HarnessExecutionError(
                    f"{label}: a cycle in the node graph: {_describe(node_id, node_map)} leads back to "
                    f"{_describe(target, node_map)}; an execution graph has no cycles: fetch it again"
                )
            if target not in state:
                stack.append((target, 0))
        else:
            state[node_id] = 2


# -- node fields -------------------------------------------------------------------------------------
def _status(value: Any, unknown: dict) -> str:
    if not isinstance(value, str) or not value:
        return "Running"
    mapped = STATUS_MAP.get(value.replace("_", "").lower())
    if mapped is None:
        unknown.setdefault(value, None)
        return value
    return mapped


#: the epoch milliseconds a trace can hold: 1970 to 2262 (pandas' nanosecond timestamps)
MAX_MS = (2**63 - 1) // 10**6


def _ms(value: Any, where: str = "") -> int | None:
    """Epoch milliseconds from a JSON value (``None`` for a missing value or one that is no
    number); a number out of range (``Infinity``, ``1e30``, ``-1e15``) is refused naming
    ``where`` — or ``None`` when ``where`` is empty (a value used only to order things)."""
    if isinstance(value, bool) or value in (None, 0, ""):
        return None
    if isinstance(value, str):
        try:
            value = int(value) if value.strip().lstrip("-").isdigit() else float(value)
        except ValueError:
            return None
    if not isinstance(value, int | float) or (isinstance(value, float) and math.isnan(value)):
        return None
    if (isinstance(value, int) or math.isfinite(value)) and 0 <= value <= MAX_MS:
        return int(value)
    if not where:
        return None
    raise HarnessExecutionError(
        f"{where} is {excerpt(repr(value), 60)}, not a time: expected epoch milliseconds between 0 (1970) "
        f"and {MAX_MS:,} (2262); the JSON was edited or damaged: fetch it again"
    )


def _failure(node: Mapping) -> tuple[str | None, str | None]:
    info = _get(node, "failureInfo")
    if not isinstance(info, Mapping):
        return None, None
    message = info.get("message") or None
    types = _get(info, "failureTypeList") or []
    error_type = None
    if isinstance(types, list) and types:
        error_type = ERROR_TYPE_MAP.get(str(types[0]), str(types[0]))
    return error_type, (str(message) if message else None)


def _worker(node: Mapping) -> str | None:
    names = [d.get("name") for d in (_get(node, "delegateInfoList") or []) if isinstance(d, Mapping)]
    names = [str(n) for n in names if n]
    return ", ".join(dict.fromkeys(names)) or None


def _skip_reason(node: Mapping) -> str | None:
    info = _get(node, "nodeRunInfo")
    condition = _get(info, "whenCondition") if isinstance(info, Mapping) else None
    if not condition:
        skip = _get(node, "skipInfo")
        condition = _get(skip, "skipCondition") if isinstance(skip, Mapping) else None
    return f"condition {condition} was false" if condition else "skipped"


def _retries(node: Mapping) -> list[str | None]:
    """The ids of the earlier attempts, oldest first (one per ``RETRY`` interrupt)."""
    out = []
    history = [h for h in (_get(node, "interruptHistories") or []) if isinstance(h, Mapping)]
    history.sort(key=lambda h: _ms(_get(h, "tookEffectAt")) or 0)
    for h in history:
        if str(_get(h, "interruptType", "")).upper() == "RETRY":
            config = _get(_get(h, "interruptConfig"), "retryInterruptConfig")
            out.append(_get(config, "retryId"))
    return out


def _iteration(node: Mapping) -> int | None:
    meta = _get(node, "strategyMetadata")
    value = _get(meta, "currentIteration") if isinstance(meta, Mapping) else None
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _classify(node: Mapping) -> str | None:
    """``stage``, ``step_group``, ``step``, ``strategy``, ``fork``, ``rollback`` (a rollback
    section), ``pipeline`` or None (a structural node that gives no row)."""
    step_type = str(node.get("stepType") or "")
    fqn = str(node.get("baseFqn") or "")
    name = str(node.get("name") or "")
    if step_type == "PIPELINE_SECTION" or (fqn == "pipeline" and step_type != "STAGES_STEP"):
        return "pipeline"
    if step_type == "NG_FORK":
        return "fork"
    if step_type == "STRATEGY":
        return "strategy"
    if step_type == "STEP_GROUP":
        return "step_group"
    if step_type == "ROLLBACK_OPTIONAL_CHILD_CHAIN" or name.endswith("(Rollback)"):
        return "rollback"
    if step_type in _STRUCTURAL or step_type.startswith("NG_SECTION"):
        return None
    if step_type in _STAGE_TYPES or (step_type.endswith("_STAGE") or "_STAGE_" in step_type):
        return "stage"
    if _STAGE_FQN.match(fqn):
        return "stage"
    if _STEP_FQN.search(fqn):
        return "step"
    return None


# -- the walk ----------------------------------------------------------------------------------------
class _Ctx:
    """Where a node sits: its row parent, stage, step group, phase, iteration, top-level block."""

    __slots__ = ("group", "iteration", "parent", "phase", "stage", "top")

    def __init__(self, parent, stage, group, phase, iteration, top):
        self.parent, self.stage, self.group = parent, stage, group
        self.phase, self.iteration, self.top = phase, iteration, top

    def but(self, **changes: Any) -> _Ctx:
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return _Ctx(**values)


def _attempt_nodes(attempts: Any, label: str) -> dict[str, Mapping]:
    """``attempts=`` as ``{uuid: node}``: a dict by id, a list of nodes, each maybe an envelope."""
    if attempts is None:
        return {}
    if isinstance(attempts, (str, os.PathLike)):
        attempts = read_execution_json(attempts, top="any")
    items = list(attempts.values()) if isinstance(attempts, Mapping) else list(attempts)
    out = {}
    for item in items:
        node = (
            item.get("data") if isinstance(item, Mapping) and isinstance(item.get("data"), Mapping) else item
        )
        if not isinstance(node, Mapping) or not isinstance(node.get("uuid"), str):
            raise HarnessExecutionError(
                f"{label}: attempts= holds {type(node).__name__}s without a uuid: give the node JSON of "
                "getExecutionNode (or a dict of them by nodeExecutionId)"
            )
        out[node["uuid"]] = node
    return out


def load_harness_execution(source: Any, attempts: Any = None, *, run_id: str | None = None) -> pd.DataFrame:
    """The trace DataFrame of a Harness run, from the execution-details JSON.

    Args:
        source: a path to the JSON of ``…/pipelines/execution/v2/{planExecutionId}`` (with
            ``renderFullBottomGraph=true``), or that JSON parsed (the response envelope or its
            ``data``). Files over 100 MB are refused before parsing.
        attempts: node JSON of earlier attempts of retried steps (``getExecutionNode``
            responses): a list, a dict by node execution id, or a path to a JSON file of one.
        run_id: the trace's ``run_id`` (default: the ``planExecutionId``).

    Returns:
        A trace with the schema of ``engine/trace.py`` plus ``uuid``, ``setupId``,
        ``stepType``; ``attrs["pipeline"]`` is the pipeline identifier.

    Raises:
        HarnessExecutionError: not an execution JSON, a node id missing from ``nodeMap``, a
            cycle in the graph, a file too large; the message names the node or the problem.
    """
    import pandas as pd

    from ..engine.trace import COLUMNS, STATUSES, dtypes
    from ..engine.trace import after_from_blocks as _after

    doc, label = _source(source)
    data = _unwrap(doc, label)
    graph = data["executionGraph"]
    node_map: Mapping = graph["nodeMap"]
    adjacency: Mapping = graph.get("nodeAdjacencyListMap") or {}
    root = graph["rootNodeId"]
    _check_graph(node_map, adjacency, root, label)
    summary = data.get("pipelineExecutionSummary") or {}
    if not isinstance(summary, Mapping):
        summary = {}
    earlier = _attempt_nodes(attempts, label)
    unknown: dict[str, None] = {}
    rows: list[dict] = []

    def add(node: Mapping, ctx: _Ctx, kind: str, fqn: str, block: Any, ident: str, **more: Any) -> dict:
        status = _status(node.get("status"), unknown)
        error_type, error = _failure(node)
        row = {
            "fqn": fqn,
            "parent": ctx.parent,
            "kind": kind,
            "phase": ctx.phase,
            "stage": ident if kind == "stage" else ctx.stage,
            "step_group": ident if kind == "step_group" else ctx.group,
            "step": ident if kind == "step" else None,
            "block": block,
            "iteration": ctx.iteration,
            "attempt": 1,
            "status": status,
            "reason": _skip_reason(node) if status == "Skipped" else None,
            "start_ms": _ms(node.get("startTs"), f"{label}: {_describe_node(node, fqn)} startTs"),
            "end_ms": None
            if status in ("Running", "Queued")
            else _ms(node.get("endTs"), f"{label}: {_describe_node(node, fqn)} endTs"),
            "worker": _worker(node),
            "error_type": error_type,
            "error": error,
            "uuid": node.get("uuid"),
            "setupId": node.get("setupId"),
            "stepType": node.get("stepType"),
            "top": ctx.top,
        }
        row.update(more)
        return row

    counters: dict[tuple, int] = {}
    seen: set[str] = set()
    base = _Ctx(None, None, None, "execution", None, -1)
    # frames: (node id, ctx, fixed block or None)
    stack: list[tuple[str, _Ctx, Any]] = [(root, base, None)]
    while stack:
        node_id, ctx, fixed = stack.pop()
        if node_id in seen:  # a join of the older fork shape: branches share what follows
            continue
        seen.add(node_id)
        node = node_map[node_id]
        if not isinstance(node, Mapping):
            raise HarnessExecutionError(f"{label}: nodeMap[{node_id!r}] is not an object")
        children, next_ids = _edges(adjacency, node_id, label)
        kind = _classify(node)
        key = (ctx.parent, ctx.phase)

        def take(where: tuple = key) -> int:
            value = counters.get(where, 0)
            counters[where] = value + 1
            return value

        pending: list[tuple[str, _Ctx, Any]] = []  # pushed reversed: children first, then next
        inner = ctx
        if kind == "pipeline":
            rows.append(add(node, ctx, "pipeline", "pipeline", None, "pipeline"))
            inner = ctx.but(parent="pipeline")
        elif kind in ("stage", "step_group", "step"):
            block = fixed if fixed is not None else take()
            ident = str(node.get("identifier") or str(node.get("baseFqn", "")).rsplit(".", 1)[-1])
            fqn = str(node.get("baseFqn") or ident)
            top = block if ctx.parent == "pipeline" and kind == "stage" and ctx.iteration is None else ctx.top
            if ctx.parent is None:  # a graph rooted below the pipeline: give it a parent
                ctx = ctx.but(parent="pipeline")
            phase = "rollback" if ".rollbackSteps." in fqn else ctx.phase
            row = add(node, ctx.but(phase=phase), kind, fqn, block, ident, top=top)
            retry_ids = _retries(node)
            if retry_ids:
                for number, retry_id in enumerate(retry_ids, start=1):
                    old = earlier.get(retry_id) if retry_id else None
                    if old is not None:
                        rows.append(
                            add(old, ctx.but(phase=phase), kind, fqn, block, ident, top=top, attempt=number)
                        )
                row["attempt"] = len(retry_ids) + 1
            rows.append(row)
            inner = ctx.but(
                parent=fqn,
                stage=row["stage"],
                group=row["step_group"],
                phase="execution" if kind == "stage" else phase,
                top=top,
            )
        elif kind == "strategy":
            block = fixed if fixed is not None else take()
            ident = str(node.get("identifier") or "")
            path = str(node.get("baseFqn") or "")
            fqn = path if path.endswith("." + ident) else f"{path}.{ident}" if path else ident
            first = node_map.get(children[0]) if children else None
            looped = _classify(first) if isinstance(first, Mapping) else None
            if looped not in ("stage", "step_group", "step"):
                looped = "stage" if path == "pipeline.stages" else "step"
            top = block if looped == "stage" and ctx.parent == "pipeline" else ctx.top
            row = add(node, ctx, looped, fqn, block, ident, top=top)
            rows.append(row)
            for i, child in enumerate(children):
                child_node = node_map[child]
                iteration = _iteration(child_node) if isinstance(child_node, Mapping) else None
                pending.append(
                    (
                        child,
                        ctx.but(parent=fqn, iteration=i if iteration is None else iteration, top=top),
                        block,
                    )
                )
            children = []
        elif kind == "fork":
            block = fixed if fixed is not None else take()
            pending.extend((child, ctx, block) for child in children)
            children = []
        elif kind == "rollback":
            inner = ctx.but(phase="rollback")
        if children:
            if len(children) > 1:  # the older shape: parallel branches hang off the parent
                block = take((inner.parent, inner.phase))
                pending.extend((child, inner, block) for child in children)
            else:
                pending.append((children[0], inner, None))
        if next_ids:
            if len(next_ids) > 1:
                block = take()
                pending.extend((nid, ctx, block) for nid in next_ids)
            else:
                pending.append((next_ids[0], ctx, None))
        stack.extend(reversed(pending))

    _not_started(summary, node_map, rows)
    if not any(r["kind"] == "pipeline" for r in rows):
        rows.insert(0, _pipeline_row(summary, rows, unknown, label))
    if unknown:
        warnings.warn(
            f"{label}: unknown Harness status(es) {', '.join(sorted(unknown))} kept verbatim in the trace "
            "(the status column's categories are STATUSES followed by them)",
            HarnessStatusWarning,
            stacklevel=2,
        )
    rows = _in_plan_order(rows)

    starts = [r["start_ms"] for r in rows if r["start_ms"] is not None]
    t0 = _ms(summary.get("startTs"), f"{label}: pipelineExecutionSummary.startTs") or (
        min(starts) if starts else 0
    )
    t0 = min([t0, *starts]) if starts else t0
    types = dtypes()
    data_cols: dict[str, Any] = {}
    run = run_id or str(summary.get("planExecutionId") or data.get("planExecutionId") or "harness")
    n = len(rows)

    def ms_column(name: str) -> Any:
        return pd.array([r[name] for r in rows], dtype="Int64")

    start_ms, end_ms = ms_column("start_ms"), ms_column("end_ms")
    for name in COLUMNS:
        if name == "run_id":
            values = [run] * n
        elif name in ("start", "end"):
            ms = start_ms if name == "start" else end_ms
            data_cols[name] = pd.to_datetime(ms.astype("float64"), unit="ms", utc=True).astype(types[name])
            continue
        elif name in ("start_s", "end_s"):
            ms = start_ms if name == "start_s" else end_ms
            data_cols[name] = (ms - t0).to_numpy(dtype="float64", na_value=float("nan")) / 1000
            continue
        elif name == "duration_s":
            data_cols[name] = data_cols["end_s"] - data_cols["start_s"]
            continue
        elif name == "status":
            categories = [*STATUSES, *unknown]
            data_cols[name] = pd.Categorical([r["status"] for r in rows], categories=categories)
            continue
        else:
            values = [r.get(name) for r in rows]
        data_cols[name] = (
            values
            if types[name] is object or types[name] == "object"
            else pd.array(values, dtype=object).astype(types[name])
        )
    data_cols["after"] = _after([r["fqn"] for r in rows], [r["parent"] for r in rows],
                                [r["phase"] for r in rows], [r["block"] for r in rows])  # fmt: skip
    for name in EXTRA_COLUMNS:
        data_cols[name] = pd.array([r[name] for r in rows], dtype="str")
    frame = pd.DataFrame(data_cols, columns=[*COLUMNS, *EXTRA_COLUMNS])
    frame.attrs["run_id"] = run
    frame.attrs["pipeline"] = str(summary.get("pipelineIdentifier") or "pipeline")
    frame.attrs["source"] = "harness"
    return frame


def _in_plan_order(rows: list[dict]) -> list[dict]:
    """Rows in pre-order of the node tree, siblings by phase then block (as a run's trace is):
    a node's attempts together, then its children. Iterative; walk order breaks ties."""
    by_fqn: dict[str, list[dict]] = {}
    children: dict[Any, list[str]] = {}
    for row in rows:
        if row["fqn"] not in by_fqn:
            by_fqn[row["fqn"]] = []
            children.setdefault(row["parent"], []).append(row["fqn"])
        by_fqn[row["fqn"]].append(row)
    rank = {fqn: i for i, fqn in enumerate(by_fqn)}

    def key(fqn: str) -> tuple:
        first = by_fqn[fqn][0]
        block = first["block"] if first["block"] is not None else -1
        return (first["phase"] == "rollback", block, rank[fqn])

    roots = [
        fqn for parent, fqns in children.items() if parent is None or parent not in by_fqn for fqn in fqns
    ]
    out: list[dict] = []
    stack = sorted(roots, key=key, reverse=True)
    done: set[str] = set()
    while stack:
        fqn = stack.pop()
        if fqn in done:
            continue
        done.add(fqn)
        out.extend(sorted(by_fqn[fqn], key=lambda r: r["attempt"]))
        stack.extend(sorted(children.get(fqn, ()), key=key, reverse=True))
    return out


def _pipeline_row(summary: Mapping, rows: list, unknown: dict, label: str) -> dict:
    """The pipeline's row from the execution summary (a graph rooted below the pipeline)."""
    starts = [r["start_ms"] for r in rows if r["start_ms"] is not None]
    ends = [r["end_ms"] for r in rows if r["end_ms"] is not None]
    node = {
        "status": summary.get("status") or "Running",
        "startTs": summary.get("startTs") or (min(starts) if starts else None),
        "endTs": summary.get("endTs") or (max(ends) if ends else None),
        "failureInfo": summary.get("failureInfo"),
        "uuid": summary.get("planExecutionId"),
        "stepType": "PIPELINE_SECTION",
    }
    status = _status(node["status"], unknown)
    error_type, error = _failure(node)
    where = f"{label}: pipelineExecutionSummary"
    return {
        "fqn": "pipeline", "parent": None, "kind": "pipeline", "phase": "execution", "stage": None,
        "step_group": None, "step": None, "block": None, "iteration": None, "attempt": 1,
        "status": status, "reason": None, "start_ms": _ms(node["startTs"], f"{where}.startTs"),
        "end_ms": None if status in ("Running", "Queued") else _ms(node["endTs"], f"{where}.endTs"),
        "worker": None,
        "error_type": error_type, "error": error, "uuid": node["uuid"], "setupId": None,
        "stepType": "PIPELINE_SECTION", "top": -1,
    }  # fmt: skip


def _not_started(summary: Mapping, node_map: Mapping, rows: list) -> None:
    """``NotStarted`` rows for the stages of ``layoutNodeMap`` that are not in the graph (D6)."""
    layout = summary.get("layoutNodeMap")
    start = summary.get("startingNodeId")
    if not isinstance(layout, Mapping) or start not in layout:
        return
    present = {r["fqn"] for r in rows}
    block, current, guard = 0, start, 0
    while current is not None and current in layout and guard <= len(layout):
        guard += 1  # a cycle in nextIds cannot loop forever
        entry = layout[current]
        if not isinstance(entry, Mapping):
            break
        members = [entry]
        edges = _get(entry, "edgeLayoutList") or {}
        if str(entry.get("nodeType", "")).lower() == "parallel":
            members = [
                layout[c]
                for c in (_get(edges, "currentNodeChildren") or [])
                if isinstance(layout.get(c), Mapping)
            ]
        for member in members:
            ident = member.get("nodeIdentifier")
            fqn = f"pipeline.stages.{ident}"
            executed = member.get("nodeExecutionId") in node_map
            if ident and fqn not in present and not executed:
                rows.append({
                    "fqn": fqn, "parent": "pipeline", "kind": "stage", "phase": "execution",
                    "stage": ident, "step_group": None, "step": None, "block": block, "iteration": None,
                    "attempt": 0, "status": "NotStarted", "reason": "never started",
                    "start_ms": None, "end_ms": None, "worker": None, "error_type": None, "error": None,
                    "uuid": member.get("nodeExecutionId") or None, "setupId": member.get("nodeUuid"),
                    "stepType": member.get("nodeType"), "top": block,
                })  # fmt: skip
        nexts = _get(edges, "nextIds") or []
        current = nexts[0] if nexts else None
        block += 1


# -- the pipeline behind a run -------------------------------------------------------------------------
#: the one step of a rebuilt container whose steps the execution does not show (it never started)
UNKNOWN_STEPS = "steps_not_in_execution"


def _recorded_postfix(indices: tuple, values: tuple) -> str:
    """The postfix of a rebuilt loop's iteration: the one Harness gave it (its only axis value)."""
    return str(values[0])


def _overlap(spans: list[tuple[float, float]]) -> int:
    """The most spans open at once (how many iterations ran side by side)."""
    events = sorted([(s, 1) for s, e in spans] + [(e, -1) for s, e in spans])
    best = now = 0
    for _, change in events:
        now += change
        best = max(best, now)
    return best


def pipeline_from_execution(trace: pd.DataFrame, *, id: str | None = None) -> Any:
    """The pipeline a Harness run executed, rebuilt from its trace (:func:`load_harness_execution`).

    Stages (side by side where they shared a block), step groups, parallel blocks, steps and
    rollback lists come back in place; a looped node gets a ``Matrix`` whose iterations carry
    the postfixes Harness gave them (so a simulation's FQNs are the run's) and whose
    ``max_concurrency`` is how many ran at once; each step declares its measured duration
    (the mean of its attempts); a retried step gets ``Retry`` with as many retries and the
    measured wait; a stage whose rollback ran gets ``StageRollback``. Its picture can be
    coloured by the trace (``p.render(trace)``) and the run re-simulated on its measured
    durations (``trace.pipeline.what_if(pipeline=p, …)``). Step bodies, conditions and types
    are not in an execution's graph: the rebuilt steps have none. A stage that never started
    shows no steps: it gets one step of no duration, ``steps_not_in_execution``.

    Raises:
        HarnessExecutionError: the trace has no pipeline row or no stage.
    """
    from ..definition.failure import Retry, StageRollback
    from ..definition.looping import Matrix
    from ..definition.model import Parallel, Pipeline, Stage, Step, StepGroup

    rows = trace.to_dict("records")
    by_fqn: dict[str, list[dict]] = {}
    children: dict[str, list[str]] = {}
    for row in rows:
        fqn = str(row["fqn"])
        if fqn not in by_fqn:
            by_fqn[fqn] = []
            parent = row["parent"]
            if isinstance(parent, str):
                children.setdefault(parent, []).append(fqn)
        by_fqn[fqn].append(row)
    if "pipeline" not in by_fqn:
        raise HarnessExecutionError(
            "pipeline_from_execution(): the trace has no pipeline row (fqn 'pipeline')"
        )

    def number(value: Any) -> float | None:
        return None if value is None or value != value else float(value)  # NaN → None

    def build(fqn: str, depth: int) -> Any:
        if depth > 64:
            raise HarnessExecutionError(
                f"pipeline_from_execution(): {fqn} is nested more than 64 levels deep"
            )
        first = by_fqn[fqn][0]
        kind, ident = str(first["kind"]), fqn.rsplit(".", 1)[-1]
        kids = children.get(fqn, [])
        iterations = [
            k
            for k in kids
            if by_fqn[k][0]["iteration"] is not None
            and by_fqn[k][0]["iteration"] == by_fqn[k][0]["iteration"]
        ]
        iterations = [k for k in iterations if _is_iteration(by_fqn[k][0])]
        strategy = None
        if iterations:
            iterations.sort(key=lambda k: int(by_fqn[k][0]["iteration"]))
            postfixes = [k.rsplit(".", 1)[-1][len(ident) :] for k in iterations]
            spans = [(number(by_fqn[k][0]["start_s"]), number(by_fqn[k][-1]["end_s"])) for k in iterations]
            spans = [(s, e) for s, e in spans if s is not None and e is not None]
            strategy = Matrix(
                {"iteration": postfixes},
                max_concurrency=max(1, _overlap(spans)) if spans else None,
                postfix=_recorded_postfix,
            )
            kids = children.get(iterations[0], [])  # the body, as the first iteration ran it
        if kind == "step":
            durations = [  # an end before the start (a damaged or skewed record) counts as no time
                max(0.0, number(r["end_s"]) - number(r["start_s"]))
                for r in by_fqn[iterations[0] if iterations else fqn]
                if number(r["start_s"]) is not None and number(r["end_s"]) is not None
            ]
            attempts = by_fqn[fqn]
            retries = max(int(r["attempt"]) for r in attempts) - 1
            failure = None
            if retries > 0:
                waits = [
                    number(b["start_s"]) - number(a["end_s"])
                    for a, b in itertools.pairwise(attempts)
                    if number(a["end_s"]) is not None and number(b["start_s"]) is not None
                ]
                failure = Retry(retries, intervals=(max(0.0, waits[0]),) if waits else ())
            return Step(
                ident,
                duration=sum(durations) / len(durations) if durations else None,
                strategy=strategy,
                failure_strategies=failure,
            )
        execution, rollback = _blocks(kids, by_fqn, build, depth, Parallel)
        if not execution:  # a stage that never started: its steps are not in the execution
            execution = [Step(UNKNOWN_STEPS, duration=0)]
        if kind == "stage":
            ran_rollback = any(
                str(by_fqn[k][0]["phase"]) == "rollback" and number(by_fqn[k][0]["start_s"]) is not None
                for k in kids
            )
            return Stage(
                ident,
                items=execution,
                rollback_items=rollback,
                strategy=strategy,
                failure_strategies=StageRollback() if ran_rollback else None,
            )
        return StepGroup(ident, items=execution, rollback_items=rollback, strategy=strategy)

    stages, _ = _blocks(children.get("pipeline", []), by_fqn, build, 0, Parallel)
    if not stages:
        raise HarnessExecutionError("pipeline_from_execution(): the trace has no stage")
    return Pipeline(id or str(trace.attrs.get("pipeline") or "pipeline"), stages=stages, rules="current")


def _is_iteration(row: dict) -> bool:
    """An iteration row of a looped node: its parent is the looped node (the postfixed fqn's stem)."""
    parent, fqn = str(row["parent"]), str(row["fqn"])
    stem = parent.rsplit(".", 1)[-1]
    return fqn.rsplit(".", 1)[0] == parent.rsplit(".", 1)[0] and fqn.rsplit(".", 1)[-1].startswith(stem)


def _blocks(kids: list[str], by_fqn: dict, build: Any, depth: int, parallel: Any) -> tuple[list, list]:
    """A container's execution and rollback lists: its children by block (a block of several
    is a ``Parallel``)."""
    lists: dict[bool, dict[int, list]] = {False: {}, True: {}}
    for k in kids:
        first = by_fqn[k][0]
        block = first["block"]
        block = -1 if block is None or block != block else int(block)
        lists[str(first["phase"]) == "rollback"].setdefault(block, []).append(build(k, depth + 1))
    out = []
    for phase in (False, True):
        items = []
        for _, members in sorted(lists[phase].items()):
            items.append(members[0] if len(members) == 1 else parallel(items=members))
        out.append(items)
    return out[0], out[1]


# -- fetching --------------------------------------------------------------------------------------------
#: where Harness SaaS answers (``base_url=`` for another cluster or a gateway path)
BASE_URL = "https://app.harness.io"
_PATH = "/pipeline/api/pipelines/execution/v2/{id}"
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def fetch_harness_execution(
    plan_execution_id: str,
    *,
    account: str,
    org: str,
    project: str,
    api_key: str | None = None,
    base_url: str = BASE_URL,
    path: str | os.PathLike | None = None,
    timeout: float = 60.0,
) -> pd.DataFrame:
    """Fetch a run from Harness's API, save its JSON, and load it (:func:`load_harness_execution`).

    Calls ``GET {base_url}/pipeline/api/pipelines/execution/v2/{plan_execution_id}`` with
    ``renderFullBottomGraph=true`` (needs ``httpx``: ``pip install 'notebook-pipelines[harness]'``).

    Args:
        plan_execution_id: the run's id (in the execution's URL).
        account, org, project: the account, organization and project identifiers.
        api_key: a personal or service-account token; default: the ``HARNESS_API_KEY``
            environment variable. It is sent in the ``x-api-key`` header only: never printed,
            stored, or put in an error message.
        base_url: Harness's address.
        path: where to save the JSON (default ``harness-execution-<id>.json`` in the current
            directory, i.e. next to the notebook); the file holds the response only.
        timeout: seconds for the whole call (connecting, the headers and the whole body; a
            server that answers slowly cannot stretch it). The body is read as a stream and
            refused at 100 MB (after decompression). See ``formats/http.py``.

    Raises:
        HarnessExecutionError: no key (or a key that cannot be sent: non-ASCII), an HTTP error
            (status and Harness's message, the key redacted in any letter case or encoding), no
            complete answer within ``timeout``, an answer over 100 MB, one that is not JSON
            (nested too deeply, too many objects) or not an execution. No message shows the key
            or the ``user:password@`` of ``base_url``.
    """
    from . import http

    key = api_key or os.environ.get("HARNESS_API_KEY")
    if not key:
        raise HarnessExecutionError(
            "fetch_harness_execution(): no API key: pass api_key=… or set HARNESS_API_KEY"
        )
    if not isinstance(plan_execution_id, str) or not _SAFE_ID.match(plan_execution_id):
        raise HarnessExecutionError(
            f"fetch_harness_execution(): {excerpt(repr(plan_execution_id), 80)} is not a planExecutionId "
            "(letters, digits, '-' and '_')"
        )
    url = base_url.rstrip("/") + _PATH.format(id=plan_execution_id)
    params = {
        "accountIdentifier": account,
        "orgIdentifier": org,
        "projectIdentifier": project,
        "renderFullBottomGraph": "true",
    }
    what = "fetch_harness_execution()"
    try:
        response = http.get(
            url,
            params=params,
            headers={"x-api-key": key, "Accept": "application/json"},
            timeout=timeout,
            max_bytes=MAX_BYTES,
            secrets=[key],
            what=what,
        )
    except http.HttpTooLarge:
        raise HarnessExecutionError(
            f"{what}: the execution {plan_execution_id} is over {MAX_BYTES // 2**20} MB: refused "
            "(reading stopped there); fetch the run per stage (stageNodeId=…)"
        ) from None
    except http.HttpError as err:
        message = str(err)
        if "the x-api-key header" in message:
            message = message.replace("the x-api-key header", "the API key")
        raise HarnessExecutionError(message) from None
    body = response.body
    if response.status != 200:
        message = ""
        try:
            answer = http.load_json(body, "the answer", max_containers=10_000)
            message = str(answer.get("message") or "") if isinstance(answer, dict) else ""
        except ValueError:
            pass
        secrets = [key, *http.url_secrets(base_url)]
        message = excerpt(http.redact(message, secrets), 200)
        raise HarnessExecutionError(
            f"{what}: Harness answered {response.status} for {plan_execution_id}"
            + (f": {message}" if message else "")
            + (" (check the API key and its permissions)" if response.status in (401, 403) else "")
        )
    doc = parse_execution_json(body, f"the answer for {plan_execution_id}")
    _unwrap(doc, f"the answer for {plan_execution_id}")  # refuse before saving
    target = Path(path) if path is not None else Path(f"harness-execution-{plan_execution_id}.json")
    target.write_bytes(body)
    return load_harness_execution(doc)
