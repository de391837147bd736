"""The YAML document: text → data that remembers where each part sat (line and column).

PyYAML's safe loader composes the document (libyaml limits nesting to 1,000 levels); the composed
graph is checked without recursion — aliases may repeat at most ``MAX_ALIAS_NODES`` nodes and may
not contain their own anchor — and built without recursion into mappings (``MarkedMap``) and lists
(``MarkedList``) that remember where every mapping, key and list item sat, so each problem the reader
finds (:mod:`.yaml_reader`) names the file, line and column (1-based). :func:`load_data` reads any
YAML the same way and returns plain dicts and lists (the CLI's ``--durations``, a workflow file).

It stands on :mod:`.files` (a path or an open file read bounded, as UTF-8 with line and
column) and PyYAML; the problems are :mod:`~notebook_pipelines.errors`' ``YamlSyntaxError``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import Problem, YamlSyntaxError
from .files import decode, read_stream, read_text

__all__ = [
    "MAX_ALIAS_NODES",
    "MarkedList",
    "MarkedMap",
    "YamlProblem",
    "line_column",
    "load_data",
    "parse_document",
    "plain_data",
    "source_text",
]

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class YamlProblem(Problem):
    """A problem found while reading YAML: a ``Problem`` that also says where (1-based)."""

    source: str = "<yaml>"
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        return f"{self.source}:{self.line}:{self.column}: {Problem.__str__(self)}"


# -- the loader: PyYAML's safe loader, remembering positions --------------------------------------
class MarkedMap(dict):
    """A mapping that remembers where it, its keys and its values sat."""

    __slots__ = ("keys_at", "mark", "values_at")


class MarkedList(list):
    """A list that remembers where it and each item sat."""

    __slots__ = ("items_at", "mark")


class _Loader(_SafeLoader):  # type: ignore[misc, valid-type]
    pass


def _hashable(key: Any, node: yaml.MappingNode, key_node: yaml.Node) -> Any:
    """``key`` when it can be a mapping key; else a marked error at the key (a list or mapping)."""
    try:
        hash(key)
    except TypeError:
        raise yaml.constructor.ConstructorError(
            "while reading a mapping",
            node.start_mark,
            "a key cannot be a list or mapping",
            key_node.start_mark,
        ) from None
    return key


def _construct_map(loader: Any, node: yaml.MappingNode) -> Iterator[MarkedMap]:
    data = MarkedMap()
    data.mark, data.keys_at, data.values_at = node.start_mark, {}, {}
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = _hashable(loader.construct_object(key_node, deep=True), node, key_node)
        if key in data:
            loader.duplicates.append((key, key_node.start_mark))
        data[key] = loader.construct_object(value_node, deep=True)
        data.keys_at[key], data.values_at[key] = key_node.start_mark, value_node.start_mark


def _construct_seq(loader: Any, node: yaml.SequenceNode) -> Iterator[MarkedList]:
    data = MarkedList()
    data.mark, data.items_at = node.start_mark, [child.start_mark for child in node.value]
    yield data
    data.extend(loader.construct_object(child, deep=True) for child in node.value)


def _construct_int(loader: Any, node: yaml.ScalarNode) -> int:
    """An integer, or a marked error for one Python refuses to read (over 4,300 digits)."""
    try:
        return yaml.constructor.SafeConstructor.construct_yaml_int(loader, node)
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"the integer {node.value[:12]}… has {len(node.value)} characters: too long to read "
            f"(Python reads at most {sys.get_int_max_str_digits()} digits)",
            node.start_mark,
        ) from None


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def plain_data(value: Any) -> Any:
    """Deep copy of loaded data as plain dicts and lists (what the model stores).

    Iterative: the data may be as deep as the YAML parser allows (1,000 levels).
    """
    if not isinstance(value, dict | list):
        return value
    root: list = [None]
    stack: list[tuple[Any, Any, Any]] = [(value, root, 0)]  # (source, holder, key in holder)
    while stack:
        item, holder, key = stack.pop()
        if isinstance(item, dict):
            copy: Any = {}
            for k, v in item.items():
                copy[k] = None
                stack.append((v, copy, k))
        elif isinstance(item, list):
            copy = [None] * len(item)
            stack.extend((v, copy, i) for i, v in enumerate(item))
        else:
            copy = item
        holder[key] = copy
    return root[0]


# -- the budget: no "billion laughs" ---------------------------------------------------------------
#: How many nodes YAML aliases (``*name``) may add to a document by repeating anchored parts.
#: Pipelines rarely use anchors; one reused block of failure strategies on a thousand steps
#: adds some 50,000. A "billion laughs" document (aliases of aliases, 7 levels of ten) expands
#: to 10 million nodes from a few hundred characters: it took 10 s and 260 MB, 10 levels ran
#: out of memory. Composition shares an anchored node; only copying (``plain_data``) expands it, so
#: the expanded size is computed on the composed graph first, without copying anything.
MAX_ALIAS_NODES = 100_000
_MERGE = "tag:yaml.org,2002:merge"


def _node_children(node: Any) -> list:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    if isinstance(node, yaml.SequenceNode):
        return node.value
    return []


def _check_graph(root: Any, source: str) -> None:
    """Refuse a composed document whose aliases refer to themselves (a cycle) or would repeat
    more than ``MAX_ALIAS_NODES`` nodes; walked with an explicit stack, in linear time."""
    distinct = 0
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen.add(id(node))
            distinct += 1
            stack.extend(_node_children(node))
    cap = distinct + MAX_ALIAS_NODES
    size: dict[int, int] = {}
    entered: set[int] = set()
    walk: list[tuple[Any, bool]] = [(root, False)]
    while walk:
        node, finished = walk.pop()
        key = id(node)
        if finished:
            total = 1 + sum(size[id(child)] for child in _node_children(node))
            entered.discard(key)
            if total > cap:
                raise _graph_error(
                    node,
                    source,
                    f"YAML aliases expand this part of the document to more than {cap:,} nodes "
                    f"(the document has {distinct:,}; aliases may add at most {MAX_ALIAS_NODES:,})",
                    "write the repeated parts out, or repeat them less: a document of aliases of "
                    "aliases (a 'billion laughs') is refused",
                )
            size[key] = total
            continue
        if key in size:
            continue
        if key in entered:
            raise _graph_error(
                node,
                source,
                "a YAML alias refers to the anchored node that contains it (a recursive document)",
                "remove the alias (*name) that sits inside its own anchor (&name)",
            )
        entered.add(key)
        walk.append((node, True))
        walk.extend((child, False) for child in _node_children(node) if id(child) not in size)


def _graph_error(node: Any, source: str, message: str, fix: str) -> YamlSyntaxError:
    line, column = line_column(node.start_mark)
    return YamlSyntaxError([YamlProblem("pipeline", "YAML", message, fix, source, line, column)])


def _construct(loader: Any, root: Any) -> Any:
    """The data of a composed (and checked: acyclic) document, built without recursion.

    Mappings become ``MarkedMap`` and lists ``MarkedList`` (which remember positions); scalars are built by
    PyYAML's safe constructors; merge keys (``<<: *base``) work as in PyYAML (the mapping's own
    keys win, then the first merged mapping). A shared (anchored) node is built once. Other
    collection tags (``!!set``, ``!!omap``) are left to PyYAML.
    """
    built: dict[int, Any] = {}
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if key in built:
            continue
        if isinstance(node, yaml.ScalarNode) and node.tag == _MERGE:
            built[key] = None  # the '<<' key itself: _mapping merges its value
        elif isinstance(node, yaml.ScalarNode) or node.tag not in (_MAP_TAG, _SEQ_TAG):
            built[key] = loader.construct_object(node, deep=True)
        elif not finished:
            stack.append((node, True))
            stack.extend((child, False) for child in _node_children(node) if id(child) not in built)
        elif isinstance(node, yaml.SequenceNode):
            items = MarkedList(built[id(child)] for child in node.value)
            items.mark, items.items_at = node.start_mark, [child.start_mark for child in node.value]
            built[key] = items
        else:
            built[key] = _mapping(loader, node, built)
    return built[id(root)]


_MAP_TAG, _SEQ_TAG = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"


def _mapping(loader: Any, node: Any, built: dict) -> MarkedMap:
    data = MarkedMap()
    data.mark, data.keys_at, data.values_at = node.start_mark, {}, {}
    merged: list[MarkedMap] = []
    own = []
    for key_node, value_node in node.value:
        if key_node.tag != _MERGE:
            own.append((key_node, value_node))
            continue
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source in sources:
            if not isinstance(built.get(id(source)), MarkedMap):
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    "a merge key (<<) takes a mapping or a list of mappings",
                    source.start_mark,
                )
            merged.append(built[id(source)])
    for source in reversed(merged):  # the first merged mapping wins over later ones
        for k, v in source.items():
            data[k] = v
            data.keys_at[k], data.values_at[k] = source.keys_at[k], source.values_at[k]
    own_keys: set = set()
    for key_node, value_node in own:
        k = _hashable(built[id(key_node)], node, key_node)
        if k in own_keys:
            loader.duplicates.append((k, key_node.start_mark))
        own_keys.add(k)
        data[k] = built[id(value_node)]
        data.keys_at[k], data.values_at[k] = key_node.start_mark, value_node.start_mark
    return data


def parse_document(text: str, name: str) -> tuple[Any, list]:
    """The data of one YAML document (``MarkedMap``/``MarkedList``/scalars) and its duplicate keys.

    Composition (PyYAML, libyaml when installed) limits nesting to 1,000 levels; the composed
    graph is then checked (:func:`_check_graph`) before anything is built, and built without
    recursion.

    Raises:
        YamlSyntaxError: not YAML, or refused (cycles, too many repeated nodes), with the line
            and column.
    """
    loader = _Loader(text)
    loader.duplicates = []
    try:
        node = loader.get_single_node()
        if node is None:
            return None, []
        _check_graph(node, name)
        return _construct(loader, node), loader.duplicates
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, column = line_column(mark)
        detail = " ".join(str(x) for x in (err.context, err.problem) if x)
        fix = "check the indentation, the ':' after each key and the quoting around this line"
        if "too long to read" in detail:
            fix = "write a number of a sensible size (counts and durations have limits far below it)"
        raise YamlSyntaxError(
            [YamlProblem("pipeline", "YAML", f"invalid YAML: {detail}", fix, name, line, column)]
        ) from None
    except yaml.YAMLError as err:  # reader errors (bad characters) carry no mark
        fix = "save the file as UTF-8 text without control characters"
        problem = YamlProblem("pipeline", "YAML", f"invalid YAML: {err}", fix, name, 1, 1)
        raise YamlSyntaxError([problem]) from None
    except RecursionError:  # PyYAML's pure-Python composer (without libyaml) recurses per level
        fix = "nest the document less deeply"
        problem = YamlProblem("pipeline", "YAML", "the YAML is nested too deeply to read", fix, name, 1, 1)
        raise YamlSyntaxError([problem]) from None
    finally:
        loader.dispose()


def load_data(source: Any, *, source_name: str | None = None) -> Any:
    """Plain data (dicts, lists, scalars) from any YAML document, read as safely as a pipeline:
    aliases may not repeat more than ``MAX_ALIAS_NODES`` nodes, nor refer to themselves.

    ``source`` is YAML text, a path or an open file, as for :func:`read_yaml`.

    >>> load_data("base: &b {retries: 2}\\nstep: *b")
    {'base': {'retries': 2}, 'step': {'retries': 2}}

    Raises:
        YamlSyntaxError: the text is not YAML or is refused; the problem says where.
        InputFileError: the file cannot be read: not a regular file (a FIFO, ``/dev/zero``), over
            ``files.MAX_TEXT_BYTES`` (32 MB), not UTF-8 (the message says the line and column).
            A missing file is ``MissingFileError``, also a ``FileNotFoundError``.
    """
    text, name = source_text(source, source_name)
    return plain_data(parse_document(text, name)[0])


def line_column(mark: Any) -> tuple[int, int]:
    """The 1-based ``(line, column)`` of a PyYAML mark; ``(0, 0)`` for none."""
    return (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)


# -- the text of a source: a path, an open file, bytes or YAML text --------------------------------
def source_text(source: Any, name: str | None) -> tuple[str, str]:
    """The text of ``source`` and its name in messages: a file read as the CLI reads it
    (``formats.files``: regular files only, at most ``MAX_TEXT_BYTES``, UTF-8 with line and
    column), an open file read in chunks up to the same bound."""
    if hasattr(source, "read"):
        name = name or str(getattr(source, "name", "<yaml>"))
        return read_stream(source, name), name
    if isinstance(source, os.PathLike) or (
        isinstance(source, str) and "\n" not in source and source.strip().lower().endswith((".yaml", ".yml"))
    ):
        path = Path(source)
        return read_text(path), name or str(path)
    if isinstance(source, bytes):
        return decode(source, name or "<yaml>"), name or "<yaml>"
    if isinstance(source, str):
        return source, name or "<yaml>"
    raise TypeError(f"load_yaml() takes YAML text, a path or an open file, not {type(source).__name__}")
