"""The JSON of a Harness execution, read with its size and shape checked before it is parsed.

Files are read by ``formats/files`` (regular files only, at most :data:`MAX_BYTES`); the bytes
are checked before ``json.loads`` (the top level an object, at most :data:`MAX_CONTAINERS`
objects and arrays); :func:`unwrap` takes ``data`` out of the response envelope and checks it
is an execution (a node graph with a root in ``nodeMap``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

from ..errors import HarnessExecutionError, excerpt
from .files import InputFileError, decode, read_bytes

__all__ = ["MAX_BYTES", "MAX_CONTAINERS", "parse_execution_json", "read_execution_json", "unwrap"]

#: the largest execution file read (checked before parsing)
MAX_BYTES = 100 * 1024 * 1024

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


def unwrap(doc: Any, label: str) -> dict:
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
