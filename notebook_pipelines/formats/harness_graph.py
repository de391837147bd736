"""The walk of a Harness execution's node graph: the graph checked, then walked into rows.

``executionGraph`` holds ``rootNodeId``, ``nodeMap`` and ``nodeAdjacencyListMap``; how each node
becomes a row (or sets block, phase and iteration for the rows below it) is described in
:mod:`.harness_executions`. :func:`check_graph` refuses a missing id or a cycle naming the node;
:func:`walk_execution` walks the graph with an explicit stack (no recursion limit on deep
graphs), and :func:`not_started_rows`, :func:`pipeline_row` and :func:`in_plan_order` complete
and order the rows as a run's trace orders them. A row is a dict of the trace's columns (times
in epoch ms) plus ``top``, the top-level block; :mod:`.harness_frame` makes the DataFrame.

It stands on :mod:`.harness_json` (the checked JSON) and :mod:`.history` (``rows_by_fqn``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any

from ..errors import HarnessExecutionError, excerpt
from .harness_json import read_execution_json
from .history import rows_by_fqn

__all__ = [
    "ERROR_TYPE_MAP",
    "STATUS_MAP",
    "attempt_nodes",
    "check_graph",
    "earlier_attempt_ids",
    "epoch_ms",
    "in_plan_order",
    "not_started_rows",
    "pipeline_row",
    "walk_execution",
]

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


def check_graph(node_map: Mapping, adjacency: Mapping, root: str, label: str) -> None:
    """Every id named is in ``nodeMap``; no cycle through children/nextIds (iterative DFS)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    edges: dict[str, tuple[list, list]] = {}  # each node's, read once (a node may have thousands)
    stack: list[tuple[str, int]] = [(root, 0)]
    while stack:
        node_id, i = stack.pop()
        if i == 0:
            state[node_id] = 1
            children, next_ids = _edges(adjacency, node_id, label)
            edges[node_id] = (children, [*children, *next_ids])
        children, targets = edges[node_id]
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
            del edges[node_id]


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


def epoch_ms(value: Any, where: str = "") -> int | None:
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


def earlier_attempt_ids(node: Mapping) -> list[str | None]:
    """The ids of the earlier attempts, oldest first (one per ``RETRY`` interrupt)."""
    out = []
    history = [h for h in (_get(node, "interruptHistories") or []) if isinstance(h, Mapping)]
    history.sort(key=lambda h: epoch_ms(_get(h, "tookEffectAt")) or 0)
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


def attempt_nodes(attempts: Any, label: str) -> dict[str, Mapping]:
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


def walk_execution(
    node_map: Mapping, adjacency: Mapping, root: str, earlier: Mapping[str, Mapping], label: str
) -> tuple[list[dict], dict[str, None]]:
    """The rows of a checked graph (:func:`check_graph`) in walk order, and the unknown statuses
    met on the way (in the order met). ``earlier`` holds the node JSON of earlier attempts by id
    (:func:`attempt_nodes`)."""
    walk = _Walk(node_map, adjacency, earlier, label)
    walk.run(root)
    return walk.rows, walk.unknown


#: one frame of the walk: (node id, where it sits, the block it was given or None)
_Frame = tuple[str, _Ctx, Any]


class _Walk:
    """One walk of an execution graph: the rows it made, the block counters, the unknown statuses."""

    def __init__(self, node_map: Mapping, adjacency: Mapping, earlier: Mapping, label: str) -> None:
        self.node_map, self.adjacency, self.earlier, self.label = node_map, adjacency, earlier, label
        self.unknown: dict[str, None] = {}
        self.rows: list[dict] = []
        self.counters: dict[tuple, int] = {}

    def run(self, root: str) -> None:
        """Walk from ``root`` in display order: a node, its children, then its nextIds."""
        seen: set[str] = set()
        stack: list[_Frame] = [(root, _Ctx(None, None, None, "execution", None, -1), None)]
        while stack:
            node_id, ctx, fixed = stack.pop()
            if node_id in seen:  # a join of the older fork shape: branches share what follows
                continue
            seen.add(node_id)
            node = self.node_map[node_id]
            if not isinstance(node, Mapping):
                raise HarnessExecutionError(f"{self.label}: nodeMap[{node_id!r}] is not an object")
            children, next_ids = _edges(self.adjacency, node_id, self.label)
            stack.extend(reversed(self.visit(node, ctx, fixed, children, next_ids)))

    def take(self, where: tuple) -> int:
        """The next block number among the siblings at ``where`` (parent, phase)."""
        value = self.counters.get(where, 0)
        self.counters[where] = value + 1
        return value

    def visit(self, node: Mapping, ctx: _Ctx, fixed: Any, children: list, next_ids: list) -> list[_Frame]:
        """The rows of one node; returns the frames to walk next (its children first, then its nextIds)."""
        kind = _classify(node)
        key = (ctx.parent, ctx.phase)
        pending: list[_Frame] = []
        inner = ctx
        if kind == "pipeline":
            self.rows.append(self.row(node, ctx, "pipeline", "pipeline", None, "pipeline"))
            inner = ctx.but(parent="pipeline")
        elif kind in ("stage", "step_group", "step"):
            block = fixed if fixed is not None else self.take(key)
            ctx, inner = self.node_rows(node, ctx, kind, block)
        elif kind == "strategy":
            block = fixed if fixed is not None else self.take(key)
            pending.extend(self.looped_node_rows(node, ctx, block, children))
            children = []
        elif kind == "fork":
            block = fixed if fixed is not None else self.take(key)
            pending.extend((child, ctx, block) for child in children)
            children = []
        elif kind == "rollback":
            inner = ctx.but(phase="rollback")
        if children:
            if len(children) > 1:  # the older shape: parallel branches hang off the parent
                block = self.take((inner.parent, inner.phase))
                pending.extend((child, inner, block) for child in children)
            else:
                pending.append((children[0], inner, None))
        if next_ids:
            if len(next_ids) > 1:
                block = self.take(key)
                pending.extend((nid, ctx, block) for nid in next_ids)
            else:
                pending.append((next_ids[0], ctx, None))
        return pending

    def node_rows(self, node: Mapping, ctx: _Ctx, kind: str, block: Any) -> tuple[_Ctx, _Ctx]:
        """The rows of a stage, step group or step (an earlier attempt's before the last's);
        returns the context of what follows the node and the context of what it holds."""
        ident = str(node.get("identifier") or str(node.get("baseFqn", "")).rsplit(".", 1)[-1])
        fqn = str(node.get("baseFqn") or ident)
        top = block if ctx.parent == "pipeline" and kind == "stage" and ctx.iteration is None else ctx.top
        if ctx.parent is None:  # a graph rooted below the pipeline: give it a parent
            ctx = ctx.but(parent="pipeline")
        phase = "rollback" if ".rollbackSteps." in fqn else ctx.phase
        row = self.row(node, ctx.but(phase=phase), kind, fqn, block, ident, top=top)
        retry_ids = earlier_attempt_ids(node)
        if retry_ids:
            for number, retry_id in enumerate(retry_ids, start=1):
                old = self.earlier.get(retry_id) if retry_id else None
                if old is not None:
                    self.rows.append(
                        self.row(old, ctx.but(phase=phase), kind, fqn, block, ident, top=top, attempt=number)
                    )
            row["attempt"] = len(retry_ids) + 1
        self.rows.append(row)
        inner = ctx.but(
            parent=fqn,
            stage=row["stage"],
            group=row["step_group"],
            phase="execution" if kind == "stage" else phase,
            top=top,
        )
        return ctx, inner

    def looped_node_rows(self, node: Mapping, ctx: _Ctx, block: Any, children: list) -> list[_Frame]:
        """The row of a looped node (a ``STRATEGY`` wrapper: the kind of what it loops, R46);
        returns its iterations' frames, each with its iteration number."""
        ident = str(node.get("identifier") or "")
        path = str(node.get("baseFqn") or "")
        fqn = path if path.endswith("." + ident) else f"{path}.{ident}" if path else ident
        first = self.node_map.get(children[0]) if children else None
        looped = _classify(first) if isinstance(first, Mapping) else None
        if looped not in ("stage", "step_group", "step"):
            looped = "stage" if path == "pipeline.stages" else "step"
        top = block if looped == "stage" and ctx.parent == "pipeline" else ctx.top
        self.rows.append(self.row(node, ctx, looped, fqn, block, ident, top=top))
        frames: list[_Frame] = []
        for i, child in enumerate(children):
            child_node = self.node_map[child]
            iteration = _iteration(child_node) if isinstance(child_node, Mapping) else None
            at = ctx.but(parent=fqn, iteration=i if iteration is None else iteration, top=top)
            frames.append((child, at, block))
        return frames

    def row(self, node: Mapping, ctx: _Ctx, kind: str, fqn: str, block: Any, ident: str, **more: Any) -> dict:
        """The row of ``node`` at ``ctx``; ``more`` overrides columns (``top``, ``attempt``)."""
        status = _status(node.get("status"), self.unknown)
        error_type, error = _failure(node)
        where = f"{self.label}: {_describe_node(node, fqn)}"
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
            "start_ms": epoch_ms(node.get("startTs"), f"{where} startTs"),
            "end_ms": None
            if status in ("Running", "Queued")
            else epoch_ms(node.get("endTs"), f"{where} endTs"),
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


def in_plan_order(rows: list[dict]) -> list[dict]:
    """Rows in pre-order of the node tree, siblings by phase then block (as a run's trace is):
    a node's attempts together, then its children. Iterative; walk order breaks ties."""
    by_fqn, children = rows_by_fqn(rows)
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


def pipeline_row(summary: Mapping, rows: list, unknown: dict, label: str) -> dict:
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
        "status": status, "reason": None, "start_ms": epoch_ms(node["startTs"], f"{where}.startTs"),
        "end_ms": None if status in ("Running", "Queued") else epoch_ms(node["endTs"], f"{where}.endTs"),
        "worker": None,
        "error_type": error_type, "error": error, "uuid": node["uuid"], "setupId": None,
        "stepType": "PIPELINE_SECTION", "top": -1,
    }  # fmt: skip


def not_started_rows(summary: Mapping, node_map: Mapping, rows: list) -> None:
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
