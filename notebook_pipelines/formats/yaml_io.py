"""Harness pipeline YAML in and out: ``load_yaml`` reads the v0 shape, ``dump_yaml`` writes it.

Design notes
------------
**Reading.** PyYAML's safe loader composes the document (libyaml limits nesting to 1,000
levels); the composed graph is checked without recursion — aliases may repeat at most
``MAX_ALIAS_NODES`` nodes and may not contain their own anchor — and built without recursion
into mappings and lists that remember where every mapping, key and list item sat, so each problem
names the file, line and column (1-based) as well as the node's fully qualified name. Step groups
deeper than ``limits.MAX_GROUP_DEPTH`` are refused before the reader descends into them. The
reader then maps the v0 shape onto the model:

=======================================  ===============================================
Harness YAML                             model
=======================================  ===============================================
``pipeline.stages`` (``stage``,          ``Pipeline.stages`` (``Stage``, ``Parallel``)
``parallel``)
``stage.spec.execution.steps``           ``Stage.items`` (``Step``, ``StepGroup``, ``Parallel``)
``…execution.rollbackSteps``             ``Stage.rollback_items``
``stage.type``                           ``Stage.type``
other ``stage.spec`` keys (service,      ``Stage.spec`` (kept as data; a Deployment stage's
environment, infrastructure…)            infrastructure also gives ``Stage.resource``, R13/D8)
``stepGroup`` (``steps``,                ``StepGroup`` (``items``, ``rollback_items``)
``rollbackSteps``)
``step.type`` / ``spec`` / ``timeout``   ``Step.type`` / ``Step.spec`` / ``Step.timeout``
``step.spec.delegateSelectors``          ``Step.delegate_selectors``
``failureStrategies``                    a list of :class:`~notebook_pipelines.definition.failure.OnFailure`
``when``                                 :class:`~notebook_pipelines.definition.failure.When`
``variables`` (list of name/type/value)  a dict name → value (types that the value does not
                                         imply are kept in ``extra["variables"]``)
``delegateSelectors``, ``timeout``,      the fields of the same name (``strategy`` as written:
``strategy``                             the YAML dict, R48; ``nbp.Matrix`` … written back as one)
anything else                            ``extra`` of the node, written back as it was
=======================================  ===============================================

What the toolkit does not model is *kept* and *reported* (one :class:`YamlWarning` listing every
note): template references, ``<+input>`` runtime inputs, service/environment/infrastructure
blocks, unknown keys, step types without a handler (simulated only). Looping strategies
(``strategy:``, R48) are read as they are written and expanded when the node runs. Real mistakes
raise :class:`YamlError` (a ``DefinitionError``) listing every problem with its line and column:
invalid YAML, a node without identifier, an unknown action type, a stage without execution, a
step group inside a step group under the ``classic`` rules (D1), variables that are not a list of
``{name, type, value}`` entries with distinct names, known types and numbers for ``Number``.
Every fix is written for a YAML author; so are the fixes of validation problems of a pipeline read
from YAML (:meth:`~notebook_pipelines.errors.Problem.for_yaml`).

**Canonical form.** Loading gives one form for each setting, so ``load_yaml(p.to_yaml()) == p``:
``name`` is ``None`` when it equals the identifier, empty ``spec``/``variables``/``extra`` are
``None``, ``when`` is a ``When``, failure strategies a list of ``OnFailure``.

**Writing.** :func:`dump_yaml` writes the same shape back (the Harness spelling of every action
and condition, multi-line scripts as literal blocks, no anchors). What has no Harness YAML form —
a Python body, a simulated ``duration``, step ``inputs``/``outputs``/``variables``, a ``resource``
the infrastructure does not imply, a callable condition — is left out with a warning.

>>> p = load_yaml('''
... pipeline:
...   identifier: release
...   name: Release
...   stages:
...     - stage:
...         identifier: build
...         type: Custom
...         spec:
...           execution:
...             steps:
...               - step: {identifier: unit, type: ShellScript, timeout: 1m,
...                        spec: {shell: Bash, source: {type: Inline, spec: {script: echo hi}}}}
... ''')
>>> p.stages[0].items[0]
Step('unit')
>>> load_yaml(p.to_yaml()) == p
True
"""

from __future__ import annotations

import io
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..definition.failure import (
    OnFailure,
    StrategyError,
    When,
    action_from_dict,
    coerce_strategies,
    coerce_when,
)
from ..definition.limits import MAX_DATA_DEPTH, MAX_GROUP_DEPTH, data_depth, depth_problems, short
from ..definition.looping import to_dict as strategy_dict
from ..definition.model import SOURCE, Parallel, Pipeline, Stage, Step, StepGroup, read_from_yaml
from ..definition.validation import VARIABLE_TYPES, variable_problem
from ..errors import DefinitionError, Problem
from .files import decode, read_stream, read_text

__all__ = [
    "Loaded",
    "Note",
    "YamlError",
    "YamlProblem",
    "YamlSyntaxError",
    "YamlWarning",
    "dump_yaml",
    "infrastructure_key",
    "load_data",
    "load_yaml",
    "locate",
    "read_yaml",
]

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# -- problems, notes, warnings -------------------------------------------------------------------
@dataclass(frozen=True)
class YamlProblem(Problem):
    """A problem found while reading YAML: a ``Problem`` that also says where (1-based)."""

    source: str = "<yaml>"
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        return f"{self.source}:{self.line}:{self.column}: {Problem.__str__(self)}"


class YamlError(DefinitionError):
    """The YAML cannot be read as a pipeline; ``problems`` lists each with its line and column.

    >>> try:
    ...     load_yaml("pipeline: [", source_name="p.yaml")
    ... except YamlError as err:
    ...     print(err.problems[0].line, err.problems[0].column, err.problems[0].rule)
    2 1 YAML
    """


class YamlSyntaxError(YamlError):
    """The text is not YAML at all (a parse error): one problem, where the parser stopped."""


@dataclass(frozen=True)
class Note:
    """Something kept as data but not modelled (reported as a warning, never an error)."""

    fqn: str
    message: str
    source: str = "<yaml>"
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        return f"{self.source}:{self.line}:{self.column}: {self.fqn}: {self.message}"


class YamlWarning(UserWarning):
    """What a loaded pipeline keeps as data but does not model; ``notes`` lists it all."""

    def __init__(self, message: str, notes: list[Note] | None = None):
        super().__init__(message)
        self.notes = list(notes or [])


@dataclass
class Loaded:
    """The result of :func:`read_yaml`: the pipeline and the notes about it."""

    pipeline: Pipeline
    notes: list[Note]
    source: str


# -- the loader: PyYAML's safe loader, remembering positions --------------------------------------
class _Map(dict):
    """A mapping that remembers where it, its keys and its values sat."""

    __slots__ = ("keys_at", "mark", "values_at")


class _Seq(list):
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


def _construct_map(loader: Any, node: yaml.MappingNode) -> Iterator[_Map]:
    data = _Map()
    data.mark, data.keys_at, data.values_at = node.start_mark, {}, {}
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = _hashable(loader.construct_object(key_node, deep=True), node, key_node)
        if key in data:
            loader.duplicates.append((key, key_node.start_mark))
        data[key] = loader.construct_object(value_node, deep=True)
        data.keys_at[key], data.values_at[key] = key_node.start_mark, value_node.start_mark


def _construct_seq(loader: Any, node: yaml.SequenceNode) -> Iterator[_Seq]:
    data = _Seq()
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


def _plain(value: Any) -> Any:
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
#: out of memory. Composition shares an anchored node; only copying (``_plain``) expands it, so
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
    line, column = _at(node.start_mark)
    return YamlSyntaxError([YamlProblem("pipeline", "YAML", message, fix, source, line, column)])


def _construct(loader: Any, root: Any) -> Any:
    """The data of a composed (and checked: acyclic) document, built without recursion.

    Mappings become ``_Map`` and lists ``_Seq`` (which remember positions); scalars are built by
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
            items = _Seq(built[id(child)] for child in node.value)
            items.mark, items.items_at = node.start_mark, [child.start_mark for child in node.value]
            built[key] = items
        else:
            built[key] = _mapping(loader, node, built)
    return built[id(root)]


_MAP_TAG, _SEQ_TAG = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"


def _mapping(loader: Any, node: Any, built: dict) -> _Map:
    data = _Map()
    data.mark, data.keys_at, data.values_at = node.start_mark, {}, {}
    merged: list[_Map] = []
    own = []
    for key_node, value_node in node.value:
        if key_node.tag != _MERGE:
            own.append((key_node, value_node))
            continue
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source in sources:
            if not isinstance(built.get(id(source)), _Map):
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


def _document(text: str, name: str) -> tuple[Any, list]:
    """The data of one YAML document (``_Map``/``_Seq``/scalars) and its duplicate keys.

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
        line, column = _at(mark)
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
    text, name = _source_text(source, source_name)
    return _plain(_document(text, name)[0])


def _at(mark: Any) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)


# -- public entry points --------------------------------------------------------------------------
def _source_text(source: Any, name: str | None) -> tuple[str, str]:
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


def read_yaml(source: Any, rules: str = "classic", *, source_name: str | None = None) -> Loaded:
    """Read a Harness pipeline; return the pipeline and the notes (no warning is emitted).

    Args:
        source: YAML text, a path (``Path`` or a string ending in ``.yaml``/``.yml``) or an
            open file.
        rules: ``"classic"`` or ``"current"`` (decision D1): nested step groups and group
            delegate selectors need ``"current"``.
        source_name: the name used in messages (default: the path, or ``<yaml>``).

    Raises:
        YamlError: every problem, each with its line and column.
        InputFileError: the file cannot be read (see :func:`load_data`); the CLI refuses the
            same files with the same message. A missing file is also a ``FileNotFoundError``.
    """
    if rules not in ("classic", "current"):
        raise ValueError(f"rules must be 'classic' or 'current', not {rules!r}")
    text, name = _source_text(source, source_name)
    doc, duplicates = _document(text, name)
    reader = _Reader(name, rules)
    for key, mark in duplicates:
        reader.problem(
            mark, "pipeline", "YAML", f"the key {key!r} appears twice in one mapping", "keep one of them"
        )
    pipeline = reader.document(doc)
    if reader.problems:
        raise YamlError(reader.problems)
    pipeline.__dict__["_yaml_positions"] = (name, reader.positions)
    pipeline.__dict__[SOURCE] = "yaml"  # its problems carry YAML fixes (Problem.for_yaml)
    return Loaded(pipeline, sorted(reader.notes, key=lambda n: (n.line, n.column)), name)


def load_yaml(source: Any, rules: str = "classic", *, source_name: str | None = None) -> Pipeline:
    """A :class:`~notebook_pipelines.definition.model.Pipeline` from Harness v0 pipeline YAML.

    What is kept but not modelled is reported in one :class:`YamlWarning` (its ``notes``
    attribute lists each note with line and column). See :func:`read_yaml` for the arguments.

    Raises:
        YamlError: invalid YAML or a definition it cannot map, every problem with its line
            and column (``YamlError`` is a ``DefinitionError``).
        InputFileError: a file that cannot be read (a FIFO, a device, over 32 MB, not UTF-8:
            the line and column of the first bad byte), refused without reading it whole.
    """
    loaded = read_yaml(source, rules, source_name=source_name)
    if loaded.notes:
        n = len(loaded.notes)
        head = f"{loaded.source}: {n} thing{'s' if n != 1 else ''} kept as data but not modelled:"
        text = "\n".join([head, *(f"  - {note}" for note in loaded.notes)])
        warnings.warn(YamlWarning(text, loaded.notes), stacklevel=2)
    return loaded.pipeline


def locate(pipeline: Pipeline, fqn: str) -> str | None:
    """``"file:line:column"`` of the node ``fqn`` (or its nearest ancestor) in the YAML it was
    loaded from; ``None`` for a pipeline that was not loaded from YAML."""
    info = pipeline.__dict__.get("_yaml_positions")
    if info is None:
        return None
    name, positions = info
    key = fqn
    while key:
        if key in positions:
            line, column = positions[key]
            return f"{name}:{line}:{column}"
        cut = max(key.rfind("."), key.rfind("["))
        key = key[:cut] if cut > 0 else ""
    return None


# -- reading the v0 shape -------------------------------------------------------------------------
_PIPELINE_KEYS = {"identifier", "name", "stages", "variables", "timeout", "description"}
_STAGE_KEYS = {"identifier", "name", "type", "spec", "when", "failureStrategies", "strategy", "variables"}
_STAGE_KEYS |= {"delegateSelectors", "timeout"}
_GROUP_KEYS = {"identifier", "name", "steps", "rollbackSteps", "when", "failureStrategies", "strategy"}
_GROUP_KEYS |= {"variables", "delegateSelectors", "timeout"}
_STEP_KEYS = {"identifier", "name", "type", "spec", "timeout", "when", "failureStrategies", "strategy"}
_STEP_KEYS |= {"delegateSelectors"}  # Harness writes them in the spec; accepted beside it too
#: kept in ``extra`` without a note: Harness metadata that changes nothing in a run
_QUIET = {"projectIdentifier", "orgIdentifier", "tags", "description"}


#: what the entries of each YAML list are, for the fix of a list written as something else
_LIST_ENTRIES = {
    "stages": "`stage:` or `parallel:` entry",
    "steps": "`step:`, `stepGroup:` or `parallel:` entry",
    "rollbackSteps": "`step:`, `stepGroup:` or `parallel:` entry",
    "parallel": "`stage:`, `step:` or `stepGroup:` entry",
    "variables": "`name: …, type: String, value: …` entry",
    "failureStrategies": "`onFailure: {errors: [...], action: {type: …}}` entry",
}


def _shape(value: Any) -> str:
    """What a value is, for a message: 'a mapping {...}', 'a list [...]', 'the text ...'."""
    if isinstance(value, dict):
        return f"a mapping {short(_plain(value))}"
    if isinstance(value, list):
        return f"a list {short(_plain(value))}"
    if isinstance(value, str):
        return f"the text {short(value)}"
    return short(value)


def _empty(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, dict | list) and not value)


def _var_type(value: Any) -> str:
    return "Number" if isinstance(value, int | float) and not isinstance(value, bool) else "String"


class _Reader:
    def __init__(self, source: str, rules: str):
        self.source, self.rules = source, rules
        self.problems: list[YamlProblem] = []
        self.notes: list[Note] = []
        self.positions: dict[str, tuple[int, int]] = {}
        self.step_types: dict[str, int] = {}

    # -- reporting -------------------------------------------------------------------------------
    def problem(self, mark: Any, fqn: str, rule: str, message: str, fix: str = "") -> None:
        line, column = _at(mark)
        self.problems.append(YamlProblem(fqn, rule, message, fix, self.source, line, column))

    def note(self, mark: Any, fqn: str, message: str) -> None:
        line, column = _at(mark)
        self.notes.append(Note(fqn, message, self.source, line, column))

    def expect(self, value: Any, kind: type, mark: Any, fqn: str, what: str) -> bool:
        """True when ``value`` is a ``_Seq`` (``kind`` a list type) or a ``_Map``; else a problem
        saying which shape ``what`` needs, what it got and how to write it in YAML."""
        if isinstance(value, kind):
            return True
        wants_list = issubclass(kind, list)
        shape = "a list" if wants_list else "a mapping"
        got = _shape(value)
        if wants_list:
            entries = _LIST_ENTRIES.get(what, "entry")
            fix = f"write `{what}:` as a list: each {entries} on its own line starting with '- '"
            if isinstance(value, dict) and len(value) == 1:  # the '- ' forgotten before the only entry
                fix += f", e.g. `{what}:` then `  - {next(iter(value))}: …`"
        else:
            fix = f"write `{what}:` as a mapping: `key: value` lines indented below it"
        self.problem(mark, fqn, "YAML", f"{what} must be {shape}, got {got}", fix)
        return False

    def scan_inputs(self, value: Any, path: str, mark: Any) -> None:
        """Note every ``<+input>`` runtime input below ``value`` (iteratively: data may be deep)."""
        stack = [(value, path, mark)]
        while stack:
            item, where, at = stack.pop()
            if isinstance(item, str):
                if "<+input>" in item:
                    message = f"runtime input {short(item)} kept as is: give a value before running"
                    self.note(at, where, message)
            elif isinstance(item, _Map):
                stack.extend(
                    (child, f"{where}.{key}", item.values_at.get(key, at))
                    for key, child in reversed(item.items())
                )
            elif isinstance(item, _Seq):
                stack.extend(
                    (child, f"{where}[{i}]", item.items_at[i] if i < len(item.items_at) else at)
                    for i, child in reversed(list(enumerate(item)))
                )

    def extras(self, body: _Map, known: set, fqn: str, what: str) -> dict | None:
        """Keys of ``body`` the model has no field for: kept (and noted unless harmless)."""
        out = {}
        for key, value in body.items():
            if key in known:
                continue
            out[key] = _plain(value)
            mark = body.keys_at.get(key)
            if key == "template":
                ref = value.get("templateRef") if isinstance(value, dict) else value
                message = f"template {short(_plain(ref))} kept as a reference: templates are not resolved"
                self.note(mark, fqn, message)
            elif key == "flowControl":
                pass  # the barriers' declarations (R55), read from here by validation and the run
            elif key not in _QUIET and not _empty(value):
                self.note(mark, fqn, f"{what} key {key!r} kept as data (not modelled)")
            if key != "template":
                self.scan_inputs(value, f"{fqn}.{key}", body.values_at.get(key))
        return out or None

    # -- the document ----------------------------------------------------------------------------
    def document(self, doc: Any) -> Pipeline:
        if not isinstance(doc, _Map) or "pipeline" not in doc:
            found = f" (found {', '.join(map(str, doc))})" if isinstance(doc, dict) and doc else ""
            mark = doc.mark if isinstance(doc, _Map) else None
            self.problem(
                mark,
                "pipeline",
                "YAML",
                f"the document is not a Harness pipeline: it needs a top-level 'pipeline:' key{found}",
                "start the file with `pipeline:` (templates and input sets are not pipelines)",
            )
            return Pipeline("pipeline")
        body = doc["pipeline"]
        if not self.expect(body, _Map, doc.values_at["pipeline"], "pipeline", "pipeline"):
            return Pipeline("pipeline")
        pipeline = self.pipeline(body)
        others = {k: _plain(v) for k, v in doc.items() if k != "pipeline"}
        if others:
            for key in others:
                self.note(doc.keys_at[key], "pipeline", f"top-level key {key!r} kept as data (not modelled)")
            pipeline.extra = {**(pipeline.extra or {}), _DOCUMENT: others}
        return pipeline

    def pipeline(self, body: _Map) -> Pipeline:
        ident = self.identifier(body, "pipeline", "pipeline")
        self.positions["pipeline"] = _at(body.mark)
        stages: list = []
        raw = body.get("stages")
        if raw is None:
            if "template" not in body:
                self.problem(
                    body.mark, "pipeline", "R11", "the pipeline has no 'stages' list", "add `stages:`"
                )
        elif self.expect(raw, _Seq, body.values_at["stages"], "pipeline.stages", "stages"):
            stages = self.stage_list(raw)
        variables, extra = self.variables_and_extras(body, _PIPELINE_KEYS, "pipeline", "pipeline")
        for key in ("timeout", "description"):
            self.scan_inputs(body.get(key), f"pipeline.{key}", body.values_at.get(key))
        return Pipeline(
            ident,
            stages=stages,
            name=self.name(body, ident),
            variables=variables,
            rules=self.rules,
            timeout=_plain(body.get("timeout")),
            description=body.get("description"),
            extra=extra,
        )

    def identifier(self, body: _Map, fqn: str, what: str) -> Any:
        ident = body.get("identifier")
        if isinstance(ident, dict | list):
            self.problem(
                body.values_at["identifier"],
                fqn,
                "R1",
                f"the identifier of the {what} must be text, got {_shape(ident)}",
                "write `identifier: name` (letters, digits, _ and $)",
            )
            return None
        if ident not in (None, ""):
            return ident
        if "template" in body and what != "pipeline":
            return None
        self.problem(
            body.mark, fqn, "R1", f"the {what} has no identifier", f"add `identifier: <name>` to the {what}"
        )
        return None

    def name(self, body: _Map, ident: Any) -> str | None:
        name = body.get("name")
        return None if name == ident else name

    def stage_list(self, raw: _Seq) -> list:
        stages: list = []
        for i, entry in enumerate(raw):
            where, mark = f"pipeline.stages[{i}]", raw.items_at[i]
            kind = self.wrapper(entry, mark, where, ("stage", "parallel"))
            if kind == "stage":
                stages.append(self.stage(entry["stage"], entry.values_at["stage"], where))
            elif kind == "parallel":
                block = entry["parallel"]
                if self.expect(block, _Seq, entry.values_at["parallel"], where, "parallel"):
                    children = []
                    for j, child in enumerate(block):
                        sub = f"{where}.parallel[{j}]"
                        if self.wrapper(child, block.items_at[j], sub, ("stage",)) == "stage":
                            children.append(self.stage(child["stage"], child.values_at["stage"], sub))
                    stages.append(Parallel(children))
        return stages

    def wrapper(self, entry: Any, mark: Any, where: str, kinds: tuple) -> str | None:
        """Which of ``kinds`` this list entry is (exactly one key of a mapping), or None."""
        allowed = " or ".join(f"`{k}:`" for k in kinds)
        if not isinstance(entry, _Map) or len(entry) != 1 or next(iter(entry)) not in kinds:
            keys = short(", ".join(map(str, entry))) if isinstance(entry, dict) else _shape(entry)
            self.problem(
                mark,
                where,
                "R4",
                f"each entry here must be exactly one of {allowed}, got {keys}",
                f"make the entry a mapping with exactly one key, {allowed}, and the node below it",
            )
            return None
        kind = next(iter(entry))
        if kind != "parallel" and not self.expect(entry[kind], _Map, entry.values_at[kind], where, kind):
            return None
        return kind

    def stage(self, body: _Map, mark: Any, where: str) -> Stage:
        ident = self.identifier(body, where, "stage")
        fqn = f"pipeline.stages.{ident}" if ident is not None else where
        self.positions[fqn] = _at(mark)
        stage_type = body.get("type")
        if stage_type is None and "template" not in body:
            self.note(body.mark, fqn, "the stage has no type: read as a Custom stage")
        spec_raw = body.get("spec")
        items: list = []
        rollback: list = []
        spec: dict | None = None
        if spec_raw is not None and not self.expect(spec_raw, _Map, body.values_at["spec"], fqn, "spec"):
            spec_raw = None
        execution = spec_raw.get("execution") if spec_raw is not None else None
        if execution is None and "template" not in body:
            self.problem(
                spec_raw.mark if spec_raw is not None else body.mark,
                fqn,
                "R35",
                "the stage has no spec.execution (the steps it runs)",
                "add `spec: {execution: {steps: [...]}}`; a stage from a template needs `template:`",
            )
        if spec_raw is not None:
            spec = {k: _plain(v) for k, v in spec_raw.items() if k != "execution"}
            if execution is not None and self.expect(
                execution, _Map, spec_raw.values_at["execution"], fqn, "execution"
            ):
                prefix = f"{fqn}.spec.execution"
                items = self.item_list(execution, "steps", f"{prefix}.steps", 0, required=True)
                rollback = self.item_list(execution, "rollbackSteps", f"{prefix}.rollbackSteps", 0)
                rest = {k: _plain(v) for k, v in execution.items() if k not in ("steps", "rollbackSteps")}
                for key in rest:
                    self.note(
                        execution.keys_at[key], fqn, f"execution key {key!r} kept as data (not modelled)"
                    )
                if rest:
                    spec["execution"] = rest
            kept = [k for k, v in spec.items() if k not in ("deploymentType", "execution") and not _empty(v)]
            if kept:
                self.note(
                    spec_raw.keys_at[kept[0]],
                    fqn,
                    f"stage spec {', '.join(kept)} kept as data (not modelled)",
                )
            for key in spec:
                if key != "execution":
                    self.scan_inputs(spec_raw[key], f"{fqn}.spec.{key}", spec_raw.values_at[key])
            spec = spec or None
        variables, extra = self.variables_and_extras(body, _STAGE_KEYS, fqn, "stage")
        settings = self.settings(body, fqn, "pipelineStatus")
        if not _empty(body.get("delegateSelectors")):
            settings["delegate_selectors"] = _plain(body["delegateSelectors"])
        stage_type = stage_type if stage_type is not None else "Custom"
        return Stage(
            ident,
            items=items,
            rollback_items=rollback,
            name=self.name(body, ident),
            type=stage_type,
            variables=variables,
            resource=infrastructure_key(stage_type, spec),
            spec=spec,
            extra=extra,
            **settings,
        )

    def item_list(self, body: _Map, key: str, prefix: str, depth: int, required: bool = False) -> list:
        raw = body.get(key)
        if raw is None:
            if required and "template" not in body:
                what = "step group" if depth else "execution"
                self.problem(
                    body.mark, prefix, "R1", f"the {what} has no '{key}' list", f"add `{key}:` with a step"
                )
            return []
        if not self.expect(raw, _Seq, body.values_at[key], prefix, key):
            return []
        items: list = []
        for i, entry in enumerate(raw):
            where, mark = f"{prefix}[{i}]", raw.items_at[i]
            kind = self.wrapper(entry, mark, where, ("step", "stepGroup", "parallel"))
            if kind == "parallel":
                block = entry["parallel"]
                if self.expect(block, _Seq, entry.values_at["parallel"], where, "parallel"):
                    children = []
                    for j, child in enumerate(block):
                        sub = f"{where}.parallel[{j}]"
                        child_kind = self.wrapper(child, block.items_at[j], sub, ("step", "stepGroup"))
                        if child_kind is not None:
                            children.append(self.node(child_kind, child, prefix, sub, depth))
                    items.append(Parallel(children))
            elif kind is not None:
                items.append(self.node(kind, entry, prefix, where, depth))
        return items

    def node(self, kind: str, entry: _Map, prefix: str, where: str, depth: int) -> Step | StepGroup:
        body, mark = entry[kind], entry.values_at[kind]
        if kind == "step":
            return self.step(body, mark, prefix, where)
        return self.group(body, mark, prefix, where, depth)

    def group(self, body: _Map, mark: Any, prefix: str, where: str, depth: int) -> StepGroup:
        ident = self.identifier(body, where, "step group")
        fqn = f"{prefix}.{ident}" if ident is not None else where
        self.positions[fqn] = _at(mark)
        if depth + 1 > MAX_GROUP_DEPTH:  # checked before reading deeper: each level recurses
            self.problem(
                mark,
                fqn,
                "R6",
                f"step groups are nested more than {MAX_GROUP_DEPTH} levels deep",
                f"flatten the nesting: move the inner steps into an outer `stepGroup:` (a `parallel:` "
                f"block is allowed); at most {MAX_GROUP_DEPTH} levels of step groups",
            )
            return StepGroup(ident)
        if depth and self.rules == "classic":
            self.problem(
                mark,
                fqn,
                "R6/D1",
                "a step group inside a step group is not allowed under the classic rules",
                "load with rules='current' (CLI: --rules current) to allow nesting, "
                "or move its steps into the outer group",
            )
        if self.rules == "classic" and not _empty(body.get("delegateSelectors")):
            self.problem(
                body.keys_at["delegateSelectors"],
                fqn,
                "R62/D1",
                "step groups take no delegate selectors under the classic rules",
                "load with rules='current' (CLI: --rules current), or set them on each step",
            )
        items = self.item_list(body, "steps", f"{fqn}.steps", depth + 1, required=True)
        rollback = self.item_list(body, "rollbackSteps", f"{fqn}.rollbackSteps", depth + 1)
        if "rollbackSteps" in body and rollback:
            self.note(
                body.keys_at["rollbackSteps"],
                fqn,
                "stepGroup.rollbackSteps is accepted (D2) but newer Harness schemas may not list it (R3)",
            )
        variables, extra = self.variables_and_extras(body, _GROUP_KEYS, fqn, "step group")
        selectors = _plain(body.get("delegateSelectors"))
        return StepGroup(
            ident,
            items=items,
            rollback_items=rollback,
            name=self.name(body, ident),
            variables=variables,
            delegate_selectors=None if _empty(selectors) else selectors,
            extra=extra,
            **self.settings(body, fqn, "stageStatus"),
        )

    def step(self, body: _Map, mark: Any, prefix: str, where: str) -> Step:
        ident = self.identifier(body, where, "step")
        fqn = f"{prefix}.{ident}" if ident is not None else where
        self.positions[fqn] = _at(mark)
        step_type = body.get("type")
        spec_raw = body.get("spec")
        spec: Any = _plain(spec_raw)
        selectors = None
        if isinstance(spec, dict):
            selectors = spec.pop("delegateSelectors", None)
            self.scan_inputs(spec_raw, f"{fqn}.spec", body.values_at.get("spec"))
        elif spec is not None:
            self.problem(
                body.values_at["spec"],
                fqn,
                "YAML",
                f"spec must be a mapping, got {_shape(spec)}",
                "write `spec:` as a mapping: `key: value` lines indented below it",
            )
        if isinstance(step_type, dict | list):
            self.problem(
                body.values_at["type"],
                fqn,
                "R4",
                f"the step type must be text, got {_shape(step_type)}",
                "write `type: ShellScript` (or another Harness step type)",
            )
            step_type = None
        elif step_type is not None:
            self.note_type(step_type, body.values_at.get("type"), fqn)
        if selectors is None:
            selectors = _plain(body.get("delegateSelectors"))
        extra = self.extras(body, _STEP_KEYS, fqn, "step")
        return Step(
            ident,
            name=self.name(body, ident),
            type=step_type,
            spec=spec or None,
            delegate_selectors=None if _empty(selectors) else selectors,
            extra=extra,
            **self.settings(body, fqn, "stageStatus"),
        )

    def note_type(self, step_type: Any, mark: Any, fqn: str) -> None:
        from ..engine.steptypes import step_type as registered

        if step_type in self.step_types:
            self.step_types[step_type] += 1
            return
        self.step_types[step_type] = 1
        if step_type in ("Barrier", "Wait"):
            pass  # the engine's own (R55–R58; Wait takes spec.duration)
        elif registered(step_type) is None:
            self.note(
                mark,
                fqn,
                f"step type {step_type!r} has no handler: simulated only; to run it, "
                f"nbp.register_step_type({step_type!r}, handler)",
            )

    # -- settings --------------------------------------------------------------------------------
    def settings(self, body: _Map, fqn: str, status_key: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "timeout" in body:
            out["timeout"] = _plain(body["timeout"])
            self.scan_inputs(body["timeout"], f"{fqn}.timeout", body.values_at["timeout"])
        if "strategy" in body and body["strategy"] is not None:
            strategy = _plain(body["strategy"])
            out["strategy"] = strategy
            self.scan_inputs(body["strategy"], f"{fqn}.strategy", body.values_at["strategy"])
        if "when" in body and body["when"] is not None:
            out["when"] = self.when(body["when"], body.values_at["when"], fqn, status_key)
        if "failureStrategies" in body and body["failureStrategies"] is not None:
            out["failure_strategies"] = self.strategies(
                body["failureStrategies"], body.values_at["failureStrategies"], fqn
            )
        return out

    def when(self, value: Any, mark: Any, fqn: str, status_key: str) -> Any:
        if isinstance(value, str) and "<+input>" in value:
            self.scan_inputs(value, f"{fqn}.when", mark)
            return value
        if not isinstance(value, _Map):
            self.problem(
                mark,
                fqn,
                "R28",
                f"when must be a mapping with {status_key}, got {_shape(value)}",
                f"write `when: {{{status_key}: Success}}` (Success, Failure or All), with an optional "
                "`condition: <+…> == …`",
            )
            return None
        status = value.get(status_key, value.get("stageStatus", value.get("pipelineStatus")))
        if status is None:
            self.problem(
                mark, fqn, "R28", f"when needs {status_key} (Success, Failure or All)", f"add `{status_key}:`"
            )
            status = "Success"
        condition = value.get("condition")
        if isinstance(condition, bool):
            condition = "true" if condition else "false"
        elif condition is not None and not isinstance(condition, str):
            condition = str(condition)
        self.scan_inputs(value, f"{fqn}.when", mark)
        return When(status, condition)

    def strategies(self, value: Any, mark: Any, fqn: str) -> Any:
        if isinstance(value, str):
            self.scan_inputs(value, f"{fqn}.failureStrategies", mark)
            return value
        if not self.expect(value, _Seq, mark, fqn, "failureStrategies"):
            return None
        entries: list[OnFailure] = []
        for i, item in enumerate(value):
            at = value.items_at[i]
            body = item.get("onFailure") if isinstance(item, _Map) else None
            if not isinstance(body, _Map) or "errors" not in body or "action" not in body:
                self.problem(
                    at,
                    fqn,
                    "R15",
                    f"cannot read the failure strategy entry {_shape(item)}",
                    "write `- onFailure: {errors: [AllErrors], action: {type: ...}}`",
                )
                continue
            if data_depth(body) > MAX_DATA_DEPTH:  # reading actions recurses once per nested action
                self.problem(
                    at,
                    fqn,
                    "R15",
                    f"the failure strategy entry is nested more than {MAX_DATA_DEPTH} levels deep",
                    "end the chain of onRetryFailure / onTimeout actions with a simple action "
                    "such as MarkAsFailure or Abort",
                )
                continue
            errors = _plain(body["errors"])
            try:
                action = action_from_dict(_plain(body["action"]))
            except StrategyError as err:
                self.problem(
                    _find_type_mark(body["action"]) or body.values_at["action"],
                    fqn,
                    "R17",
                    str(err),
                    "write `action: {type: …}` with a known type; Retry takes `spec: {retryCount: 2, "
                    "retryIntervals: [10s]}`",
                )
                continue
            dropped = _unmodelled(body["action"]) + [k for k in body if k not in ("errors", "action")]
            if dropped:
                self.note(
                    body.values_at["action"],
                    fqn,
                    f"failure strategy key(s) {', '.join(dropped)} not modelled: dropped (not written back)",
                )
            entries.append(OnFailure(errors if isinstance(errors, list | tuple) else [errors], action))
        return entries

    def variables_and_extras(
        self, body: _Map, known: set, fqn: str, what: str
    ) -> tuple[dict | None, dict | None]:
        """The node's variables, and the keys the model has no field for (see ``extras``).

        What the variables declare beyond name and value (a type other than the inferred one,
        a description…) is kept in ``extra["variables"]``, where ``dump_yaml`` finds it again.
        """
        variables, meta = self.variables(body, fqn)
        extra = self.extras(body, known, fqn, what)
        if meta:
            extra = {**(extra or {}), "variables": meta}
        return variables, extra

    def variables(self, body: _Map, fqn: str) -> tuple[dict | None, list | None]:
        """Harness's list of ``{name, type, value}`` entries as a dict name → value, and what the
        entries declare beyond that. The checks are those of every front-end: a list (not a
        mapping), each name once, a known type, a ``Number`` that is a number
        (:func:`~notebook_pipelines.definition.validation.variable_problem`)."""
        raw = body.get("variables")
        if raw is None:
            return None, None
        if not self.expect(raw, _Seq, body.values_at["variables"], fqn, "variables"):
            return None, None
        values: dict = {}
        meta: list = []
        first: dict = {}
        for i, entry in enumerate(raw):
            if not isinstance(entry, _Map) or not isinstance(entry.get("name"), str) or not entry["name"]:
                got = _shape(entry) if not isinstance(entry, _Map) else _shape(entry.get("name"))
                self.problem(
                    raw.items_at[i],
                    fqn,
                    "R8",
                    f"a variable needs a name (text), got {got}",
                    "write each variable as `- {name: replicas, type: Number, value: 2}`",
                )
                continue
            name, value = entry["name"], _plain(entry.get("value"))
            if name in first:
                self.problem(
                    raw.items_at[i],
                    fqn,
                    "R8",
                    f"the variable {name!r} is declared twice (first at line {first[name]})",
                    f"keep one `- name: {name}` entry",
                )
                continue
            first[name] = _at(raw.items_at[i])[0]
            kind = _plain(entry.get("type", _var_type(value)))
            found = variable_problem(name, kind, value)
            if found:
                at = entry.values_at.get("value" if kind in VARIABLE_TYPES else "type", raw.items_at[i])
                self.problem(at, f"{fqn}.variables.{name}", "R8", found[0], found[1])
            values[name] = value
            self.scan_inputs(entry.get("value"), f"{fqn}.variables.{name}", entry.values_at.get("value"))
            rest = {k: _plain(v) for k, v in entry.items() if k not in ("name", "value")}
            if rest != {"type": _var_type(value)}:
                meta.append({"name": name, **rest})
        return values or None, meta or None


def _find_type_mark(action: Any) -> Any:
    """The mark of the innermost action ``type`` (where an unknown action type sits)."""
    if not isinstance(action, _Map):
        return None
    spec = action.get("spec")
    if isinstance(spec, _Map):
        for key in ("onRetryFailure", "onTimeout"):
            sub = spec.get(key)
            if isinstance(sub, _Map) and isinstance(sub.get("action"), _Map):
                found = _find_type_mark(sub["action"])
                if found is not None and sub["action"].get("type") not in _known_actions():
                    return found
    return action.values_at.get("type")


#: the ``spec`` keys of each action type that the failure-strategy classes model
_ACTION_SPEC_KEYS = {
    "Retry": {"retryCount", "retryIntervals", "onRetryFailure", "condition"},
    "RetryStepGroup": {"retryCount", "retryIntervals"},
    "ManualIntervention": {"timeout", "onTimeout"},
}


def _unmodelled(action: Any) -> list[str]:
    """Keys of a failure-strategy action (and of its nested actions) that are not modelled,
    e.g. ``failAll`` (fail-fast, R14)."""
    if not isinstance(action, dict):
        return []
    out = [k for k in action if k not in ("type", "spec")]
    spec = action.get("spec")
    if isinstance(spec, dict):
        known = _ACTION_SPEC_KEYS.get(action.get("type"), set())
        out += [k for k in spec if k not in known]
        for key in ("onRetryFailure", "onTimeout"):
            nested = spec.get(key)
            if isinstance(nested, dict):
                out += _unmodelled(nested.get("action"))
    return out


def _known_actions() -> tuple:
    from ..definition.failure import ACTION_TYPES

    return ACTION_TYPES


#: ``Pipeline.extra`` key for top-level keys beside ``pipeline:``
_DOCUMENT = "@document"


def infrastructure_key(stage_type: str | None, spec: dict | None) -> str | None:
    """The resource key of a Deployment stage: its environment and infrastructure (R13, D8).

    Parallel Deployment stages with the same key do not overlap. Custom stages, and
    infrastructures that allow simultaneous deployments, have none.

    >>> infrastructure_key("Deployment", {"environment": {"environmentRef": "dev",
    ...     "infrastructureDefinitions": [{"identifier": "k8s"}]}})
    'infra:dev/k8s'
    >>> infrastructure_key("Custom", {"environment": {"environmentRef": "dev"}}) is None
    True
    """
    if stage_type != "Deployment" or not isinstance(spec, dict):
        return None
    env = spec.get("environment")
    if isinstance(env, dict) and env.get("environmentRef") is not None:
        infras = env.get("infrastructureDefinitions") or []
        ids = (
            ["*"]
            if env.get("deployToAll")
            else [str(i.get("identifier")) for i in infras if isinstance(i, dict)]
        )
        return f"infra:{env['environmentRef']}/{','.join(ids)}" if ids else f"infra:{env['environmentRef']}"
    infra = spec.get("infrastructure")
    if isinstance(infra, dict) and infra.get("environmentRef") is not None:
        if infra.get("allowSimultaneousDeployments") is True:
            return None
        definition = infra.get("infrastructureDefinition") or {}
        dspec = definition.get("spec") if isinstance(definition, dict) else None
        parts = [str(infra["environmentRef"])]
        if isinstance(dspec, dict):
            parts += [str(dspec[k]) for k in ("connectorRef", "namespace", "cluster", "region") if k in dspec]
        return "infra:" + "/".join(parts)
    return None


# -- writing --------------------------------------------------------------------------------------
class _Dumper(yaml.SafeDumper):
    """Harness-looking YAML: indented lists, literal blocks for scripts, no anchors."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> Any:
        return super().increase_indent(flow, False)

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> Any:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(tuple, lambda dumper, value: dumper.represent_list(list(value)))


def dump_yaml(pipeline: Pipeline, path: str | os.PathLike | None = None) -> str:
    """The Harness v0 YAML of ``pipeline`` (also written to ``path`` when given).

    What has no Harness form (Python bodies, simulated durations, …) is left out with one
    :class:`YamlWarning`.

    Raises:
        DefinitionError: the pipeline is nested beyond the limits (``definition.limits``):
            writing recurses once per level, so that is checked first; a value YAML cannot
            write (an ``object()`` variable, a NumPy number), named by its path in the YAML.
    """
    found = depth_problems(pipeline)
    if found:
        raise DefinitionError([p.for_yaml() for p in found] if read_from_yaml(pipeline) else found)
    writer = _Writer()
    doc = {"pipeline": writer.pipeline(pipeline)}
    if pipeline.extra and _DOCUMENT in pipeline.extra:
        doc.update(pipeline.extra[_DOCUMENT])
    unwritable = _unwritable(doc)
    if unwritable:
        where, value = unwritable
        raise DefinitionError(
            Problem(
                where,
                "-",
                f"{short(value)} (of type {type(value).__name__}) has no YAML form",
                "give text, a number, a boolean, None, or lists and dicts of them "
                "(str(value) keeps its text)",
            )
        )
    stream = io.StringIO()
    yaml.dump(
        doc, stream, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100
    )
    text = stream.getvalue()
    if writer.dropped:
        lines = "\n".join(f"  - {d}" for d in writer.dropped)
        warnings.warn(YamlWarning(f"not written to YAML (no Harness form):\n{lines}"), stacklevel=2)
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def _unwritable(doc: dict) -> tuple[str, Any] | None:
    """The first value (or key) of ``doc`` YAML cannot write, with its path
    (``pipeline.variables[0].value``); walked with a stack (the depth is checked before)."""
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack:
        where, value = stack.pop()
        if type(value) not in _Dumper.yaml_representers:
            return where or "the document", value
        if isinstance(value, dict):
            for key, item in reversed(value.items()):
                label = f"{where}.{key}" if where else str(key)
                if type(key) not in _Dumper.yaml_representers:
                    return f"{where or 'the document'} (a key)", key
                stack.append((label, item))
        elif isinstance(value, list | tuple):
            stack.extend((f"{where}[{i}]", item) for i, item in reversed(list(enumerate(value))))
    return None


class _Writer:
    def __init__(self) -> None:
        self.dropped: list[str] = []

    def drop(self, fqn: str, what: str) -> None:
        self.dropped.append(f"{fqn}: {what}")

    def pipeline(self, p: Pipeline) -> dict:
        extra = dict(p.extra or {})
        extra.pop(_DOCUMENT, None)
        meta = extra.pop("variables", None)
        out: dict[str, Any] = {"name": p.display_name, "identifier": p.id}
        for key in ("projectIdentifier", "orgIdentifier"):
            if key in extra:
                out[key] = extra.pop(key)
        if p.description is not None:
            out["description"] = p.description
        if "tags" in extra:
            out["tags"] = extra.pop("tags")
        if p.timeout is not None:
            out["timeout"] = p.timeout
        out["stages"] = [self.stage_entry(s) for s in p.stages]
        if p.variables:
            out["variables"] = _variables(p.variables, meta)
        if p.barriers and "flowControl" not in extra:  # declared in Python (R55)
            listed = [b if isinstance(b, dict) else {"identifier": b, "name": b} for b in p.barriers]
            out["flowControl"] = {"barriers": listed}
        out.update(extra)
        return out

    def stage_entry(self, item: Any) -> dict:
        if isinstance(item, Parallel):
            return {"parallel": [self.stage_entry(s) for s in item.items]}
        return {"stage": self.stage(item)}

    def stage(self, s: Stage) -> dict:
        fqn = f"pipeline.stages.{s.id}"
        extra = dict(s.extra or {})
        meta = extra.pop("variables", None)
        out: dict[str, Any] = {"name": s.display_name, "identifier": s.id}
        if "description" in extra:
            out["description"] = extra.pop("description")
        if not ("template" in extra and s.type == "Custom"):  # a template brings its own type
            out["type"] = s.type
        if "template" not in extra or s.items or s.rollback_items or s.spec:
            spec = dict(s.spec or {})
            execution = dict(spec.pop("execution", None) or {})
            prefix = f"{fqn}.spec.execution"
            execution["steps"] = self.items(s.items, f"{prefix}.steps")
            execution["rollbackSteps"] = self.items(s.rollback_items, f"{prefix}.rollbackSteps")
            spec["execution"] = execution
            out["spec"] = spec
        if "tags" in extra:
            out["tags"] = extra.pop("tags")
        if s.resource is not None and s.resource != infrastructure_key(s.type, s.spec):
            self.drop(fqn, f"resource={s.resource!r} (Harness derives it from the stage's infrastructure)")
        self.settings(out, s, fqn, "pipelineStatus")
        if s.variables:
            out["variables"] = _variables(s.variables, meta)
        if s.delegate_selectors:
            out["delegateSelectors"] = s.delegate_selectors
        out.update(extra)
        return out

    def items(self, items: list, prefix: str) -> list:
        out = []
        for item in items:
            if isinstance(item, Parallel):
                out.append({"parallel": [self.item(child, prefix) for child in item.items]})
            else:
                out.append(self.item(item, prefix))
        return out

    def item(self, item: Any, prefix: str) -> dict:
        if isinstance(item, StepGroup):
            return {"stepGroup": self.group(item, f"{prefix}.{item.id}")}
        if isinstance(item, Step):
            return {"step": self.step(item, f"{prefix}.{item.id}")}
        raise TypeError(f"{prefix}: cannot write {type(item).__name__} {item!r} as a step or step group")

    def group(self, g: StepGroup, fqn: str) -> dict:
        extra = dict(g.extra or {})
        meta = extra.pop("variables", None)
        out: dict[str, Any] = {"name": g.display_name, "identifier": g.id}
        if "template" not in extra or g.items:
            out["steps"] = self.items(g.items, f"{fqn}.steps")
        if g.rollback_items:
            out["rollbackSteps"] = self.items(g.rollback_items, f"{fqn}.rollbackSteps")
        self.settings(out, g, fqn, "stageStatus")
        if g.variables:
            out["variables"] = _variables(g.variables, meta)
        if g.delegate_selectors:
            out["delegateSelectors"] = g.delegate_selectors
        out.update(extra)
        return out

    def step(self, s: Step, fqn: str) -> dict:
        extra = dict(s.extra or {})
        out: dict[str, Any] = {"name": s.display_name, "identifier": s.id}
        if "description" in extra:
            out["description"] = extra.pop("description")
        if s.type is not None:
            out["type"] = s.type
        if s.timeout is not None:
            out["timeout"] = s.timeout
        spec = dict(s.spec or {})
        if s.delegate_selectors:
            spec["delegateSelectors"] = s.delegate_selectors
        if spec or (s.type is not None and "template" not in extra):
            out["spec"] = spec
        self.settings(out, s, fqn, "stageStatus", timeout=False)
        for attr, what in (("run", "a Python body"), ("duration", "a simulated duration")):
            if getattr(s, attr) is not None:
                self.drop(fqn, what)
        for attr in ("inputs", "outputs", "variables"):
            if getattr(s, attr):
                self.drop(fqn, f"step {attr} (Harness steps have no such key)")
        out.update(extra)
        return out

    def settings(self, out: dict, node: Any, fqn: str, status_key: str, timeout: bool = True) -> None:
        if node.failure_strategies is not None:
            if isinstance(node.failure_strategies, str) and node.failure_strategies not in _known_actions():
                out["failureStrategies"] = node.failure_strategies  # a runtime input such as <+input>
            else:
                out["failureStrategies"] = [
                    entry.to_dict() for entry in coerce_strategies(node.failure_strategies)
                ]
        if node.when is not None:
            if isinstance(node.when, str) and "<+input>" in node.when:
                out["when"] = node.when
            else:
                when = coerce_when(node.when)
                if when.condition is not None and not isinstance(when.condition, str):
                    self.drop(fqn, "a Python condition (only the status is written)")
                out["when"] = when.to_dict(status_key)
        if node.strategy is not None:
            out["strategy"] = strategy_dict(node.strategy)
        if timeout and node.timeout is not None:
            out["timeout"] = node.timeout


def _variables(values: dict, meta: list | None) -> list[dict]:
    declared = {m["name"]: m for m in meta or () if isinstance(m, dict) and "name" in m}
    out = []
    for name, value in values.items():
        entry = dict(declared.get(name) or {"type": _var_type(value)})
        entry.pop("name", None)
        out.append({"name": name, **entry, "value": value})
    return out
