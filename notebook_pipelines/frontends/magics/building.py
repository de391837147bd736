"""The plain functions behind the magics: where nodes are, what a cell changed, defining nodes.

They do the work of ``%pipeline``, ``%stage``, ``%step_group`` and ``%%step`` and can be called
without a shell (:mod:`notebook_pipelines.frontends.magics` parses the arguments and prints).
A user mistake is a :class:`~IPython.core.error.UsageError` with one line. Placement itself (find,
take out, put in, next to a sibling) is the model's: one implementation for the builder and the
magics.
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

from IPython.core.error import UsageError

from ...definition import model
from ...definition.durations import format_duration
from ...definition.model import Parallel, Pipeline, Stage, Step, StepGroup, members
from ...definition.validation import IDENTIFIER
from ...errors import DefinitionError

#: Harness identifiers, the rule validation applies (R1): step, stage and group ids and variable
#: names. (Pipeline names are Python identifiers instead: they become variables.)
_ID = IDENTIFIER
#: ``%pipeline`` words that are commands, not pipeline names.
COMMANDS = ("show", "run", "simulate", "trace", "yaml", "validate", "delete", "suggest")
#: columns ``%pipeline trace`` shows unless told otherwise.
TRACE_COLUMNS = ("kind", "stage", "step_group", "step", "attempt", "status", "start_s", "end_s")
_ABSENT = object()  # a name not in the namespace (``None`` is a value a variable can hold)
_STEP_FIELDS = [f.name for f in fields(Step) if f.name != "id"]
_FIELD_WORDS = {"run": "body", "failure_strategies": "retry", "delegate_selectors": "delegate selectors"}


# -- where nodes are ------------------------------------------------------------------------------
# Placement itself (find, take out, put in, next to a sibling) is the model's (``model.place``,
# ``model.take``, ``model.locate``): one implementation for the builder and the magics.
def outline(items: list) -> tuple[tuple[str, ...], ...]:
    """The ids of a serial list, one tuple per block (a parallel block has several).

    >>> outline([Step("a"), Parallel([Step("b"), Step("c")])])
    (('a',), ('b', 'c'))
    """
    return tuple(tuple(node.id for node in members(item)) for item in items)


def picture(items: list, mark: str | None = None) -> str:
    """A one-line picture of a serial list: ``→`` between blocks, ``∥`` inside a block.

    >>> picture([Step("a"), Parallel([Step("b"), Step("c")])], mark="c")
    'a → b ∥ [c]'
    """
    blocks = [" ∥ ".join(f"[{i}]" if i == mark else i for i in block) for block in outline(items)]
    return " → ".join(blocks) or "(empty)"


def place(items: list, node: Any, parallel_with: str | None = None) -> None:
    """:func:`~notebook_pipelines.definition.model.place`, a bad sibling as a ``UsageError``.

    >>> items = [Step("unit"), Step("e2e")]
    >>> place(items, Step("lint"), parallel_with="unit"); picture(items)
    'unit ∥ lint → e2e'
    """
    _check_sibling(items, node.id, parallel_with)
    model.place(items, node, parallel_with)


def _take(items: list, id: str) -> Any:
    """Remove node ``id`` from ``items``; a parallel block left with one node becomes that node."""
    return model.take(items, id, tidy=True)


def _check_sibling(items: list, id: str, parallel_with: str | None) -> None:
    """Raise ``UsageError`` unless ``parallel_with`` names another node of ``items`` (or is None)."""
    try:
        model.check_sibling(items, id, parallel_with)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def walk_nodes(container: Any) -> Iterator[tuple[Any, tuple, bool]]:
    """``(node, chain of containers down to its parent, in_rollback)`` for every node below."""
    for visit in container.walk():
        yield visit.node, visit.ancestors, visit.phase == "rollback"


def chain_to(pipeline: Pipeline, container: Any) -> tuple:
    """The containers from the pipeline down to ``container`` (both included)."""
    if container is pipeline:
        return (pipeline,)
    for node, chain, _rb in walk_nodes(pipeline):
        if node is container:
            return (*chain, node)
    raise UsageError(f"`{container.id}` is no longer in pipeline `{pipeline.id}`")


def where(pipeline: Pipeline, container: Any, id: str, rollback: bool = False) -> str:
    """One line: the path to ``container`` and the picture of its list with ``id`` marked."""
    path = " › ".join(c.id for c in chain_to(pipeline, container))
    items = container.rollback_items if rollback else container.items
    return f"{path}{' › rollback' if rollback else ''}: {picture(items, mark=id)}"


def _label(container: Any, rollback: bool = False) -> str:
    kind = {Pipeline: "pipeline", Stage: "stage", StepGroup: "group"}[type(container)]
    return f"{kind} `{container.id}`{' rollback' if rollback else ''}"


def _check_id(id: str, what: str) -> None:
    if not _ID.fullmatch(id):
        raise UsageError(
            f"{what} id `{id}` is not an identifier: use letters, digits, `_` or `$`, "
            "not starting with a digit or `$`"
        )


# -- telling what changed -------------------------------------------------------------------------
def _changed_fields(old: Any, new: Any, names: list[str]) -> list[str]:
    return [_FIELD_WORDS.get(n, n) for n in names if getattr(old, n) != getattr(new, n)]


def describe(
    kind: str,
    id: str,
    label: str,
    before: tuple,
    after: tuple,
    changes: list[str] | None,
) -> str:
    """One line for a node placed in a list: added, gained by a block, changed or unchanged.

    ``changes`` is None for a new node, else the names of what changed in its settings.

    >>> describe("step", "e2e", "group `tests`", (("unit",), ("integration",)),
    ...          (("unit",), ("integration", "e2e")), None)
    'group `tests`: block 1 gained `e2e`'
    >>> describe("step", "unit", "group `tests`", (("unit",),), (("unit",),), ["body"])
    'step `unit` changed (body)'
    """
    b = next(i for i, block in enumerate(after) if id in block)
    mates = tuple(i for i in after[b] if i != id)
    if changes is None:
        if mates and mates in before:
            return f"{label}: block {b} gained `{id}`"
        return f"{kind} `{id}` added to {label}, block {b}"
    old_b = next((i for i, block in enumerate(before) if id in block), None)
    if old_b is None:
        changes = [*changes, f"moved to {label}, block {b}"]
    elif set(before[old_b]) - {id} != set(mates):
        with_ = " with " + ", ".join(f"`{m}`" for m in mates) if mates else " alone"
        changes = [*changes, f"now in block {b}{with_}"]
    return f"{kind} `{id}` changed ({', '.join(changes)})" if changes else f"{kind} `{id}` unchanged"


def describe_layout(label: str, before: tuple, after: tuple) -> str:
    """One line for a list whose blocks were rearranged (a ``%%step_group`` layout).

    >>> describe_layout("group `tests`", (("unit", "lint"), ("integration",)),
    ...                 (("unit", "lint"), ("integration", "e2e")))
    'group `tests`: block 1 gained `e2e`'
    >>> describe_layout("group `tests`", (("unit",),), (("unit",),))
    'group `tests` unchanged'
    """
    old_ids = {i for block in before for i in block}
    new_ids = {i for block in after for i in block}
    phrases = []
    for b, block in enumerate(after):
        fresh = [i for i in block if i not in old_ids]
        if not fresh:
            continue
        names = ", ".join(f"`{i}`" for i in fresh)
        if len(fresh) < len(block):
            phrases.append(f"block {b} gained {names}")
        else:
            phrases.append(f"block {b} added: {' ∥ '.join(f'`{i}`' for i in fresh)}")
    phrases += [f"`{i}` removed" for block in before for i in block if i not in new_ids]
    old_block = {i: b for b, block in enumerate(before) for i in block}
    phrases += [
        f"`{i}` moved to block {b}"
        for b, block in enumerate(after)
        for i in block
        if i in old_block and old_block[i] != b
    ]
    return f"{label}: {'; '.join(phrases)}" if phrases else f"{label} unchanged"


# -- defining nodes -------------------------------------------------------------------------------
def parse_layout(text: str) -> list[list[str]]:
    """The blocks of a ``%%step_group`` cell: one line per block, ids in a line run together.

    >>> parse_layout("unit, lint   # together\\nintegration | e2e\\n")
    [['unit', 'lint'], ['integration', 'e2e']]
    """
    blocks: list[list[str]] = []
    seen: set[str] = set()
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        ids = [part.strip() for part in re.split(r"[,|∥]", line)]
        for id in ids:
            if not _ID.fullmatch(id):
                raise UsageError(
                    f"layout line {n}: `{id}` is not a step id (one block per line, ids separated by commas)"
                )
            if id in seen:
                raise UsageError(f"layout line {n}: `{id}` is listed twice")
            seen.add(id)
        blocks.append(ids)
    return blocks


def _update(node: Any, settings: dict) -> list[str]:
    """Set the given settings on a container in place; return the names of those that changed."""
    changed = []
    for name, value in settings.items():
        if getattr(node, name) != value:
            setattr(node, name, value)
            changed.append(_FIELD_WORDS.get(name, name))
    return changed


def define_pipeline(namespace: dict, name: str, force: bool = False, **settings: Any) -> tuple[Pipeline, str]:
    """Start pipeline ``name`` in ``namespace``, or select it and update the given settings.

    The pipeline becomes the variable ``name``, so a name that would hide a Python builtin
    (``print``, ``list``…) or replace a variable holding something else is refused unless
    ``force``.
    """
    if not name.isidentifier() or keyword.iskeyword(name):
        raise UsageError(f"pipeline name `{name}` must be a Python identifier (it becomes a variable)")
    if name in COMMANDS:
        raise UsageError(f"`{name}` is a %pipeline command; give the pipeline another name")
    settings = {k: v for k, v in settings.items() if v is not None}
    existing = namespace.get(name, _ABSENT)
    if isinstance(existing, Pipeline):
        changed = _update(existing, settings)
        n = sum(len(block) for block in outline(existing.stages))
        text = f"pipeline `{name}` selected ({n} stage{'s' if n != 1 else ''})"
        return existing, f"{text}; changed: {', '.join(changed)}" if changed else text
    replaced = ""
    if existing is not _ABSENT:
        if not force:
            raise UsageError(
                f"`{name}` is already a variable holding a {type(existing).__name__}; "
                f"choose another pipeline name, `del {name}` first, or pass --force to replace it"
            )
        replaced = f" (it held a {type(existing).__name__})"
    elif hasattr(builtins, name):
        if not force:
            raise UsageError(
                f"`{name}` is a Python builtin: a pipeline of that name would hide it in this "
                "notebook; choose another name, or pass --force"
            )
        replaced = f" (it hides the builtin `{name}`: `del {name}` brings it back)"
    p = Pipeline(name, **settings)
    namespace[name] = p
    return p, f"pipeline `{name}` started ({p.rules} rules); the variable `{name}` holds it{replaced}"


def define_stage(pipeline: Pipeline, id: str, parallel_with: str | None = None, **settings: Any) -> str:
    """Add stage ``id`` to ``pipeline``, or select it and update the given settings."""
    _check_id(id, "stage")
    _check_sibling(pipeline.stages, id, parallel_with)
    settings = {k: v for k, v in settings.items() if v is not None}
    before = outline(pipeline.stages)
    here = model.locate(pipeline.stages, id)
    old = here[0][here[1]] if here else None
    node = old if old is not None else Stage(id, **settings)
    changes = _update(old, settings) if old is not None else None
    place(pipeline.stages, node, parallel_with)
    line = describe("stage", id, _label(pipeline), before, outline(pipeline.stages), changes)
    return f"{line}\n{where(pipeline, pipeline, id)}"


def _groups(container: Any) -> list[tuple[StepGroup, tuple]]:
    return [(node, chain) for node, chain, _rb in walk_nodes(container) if isinstance(node, StepGroup)]


def find_container(
    pipeline: Pipeline, stage: str | None, group: str | None, what: str, current: str | None = None
) -> Stage | StepGroup:
    """The container a node goes into: step group ``group`` or else the stage.

    The stage is ``stage`` when given, else ``current`` (the current stage). A group not found
    in the current stage is looked up in the whole pipeline, so re-running a cell after moving
    on to another stage still finds its group; an explicit ``stage`` is never left. ``what``
    names the node in messages.
    """
    stages = [n for n, _c, _rb in walk_nodes(pipeline) if isinstance(n, Stage)]
    name = stage or current
    the_stage = next((s for s in stages if s.id == name), None) if name else None
    if name and the_stage is None:
        known = ", ".join(s.id for s in stages) or "none yet"
        raise UsageError(f"no stage `{name}` in pipeline `{pipeline.id}`; stages: {known}")
    if group is None:
        if the_stage is None:
            raise UsageError(f"{what} is outside a stage: start one with `%stage ID` (or pass --stage)")
        return the_stage
    found = [g for g, _c in _groups(the_stage)] if the_stage is not None else []
    found = [g for g in found if g.id == group]
    if not found and not stage:
        everywhere = [(g, chain[1].id) for g, chain in _groups(pipeline) if g.id == group]
        if len(everywhere) > 1:
            names = ", ".join(s for _g, s in everywhere)
            raise UsageError(f"step group `{group}` is in stages {names}: pass --stage to say which")
        found = [g for g, _s in everywhere]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise UsageError(f"several step groups `{group}` in stage `{the_stage.id}`: give them distinct ids")
    where_ = the_stage if stage else pipeline  # without --stage, the whole pipeline was searched
    known = ", ".join(g.id for g, _c in _groups(where_)) or "none"
    raise UsageError(
        f"no step group `{group}` in {_label(where_)} (groups: {known}); add it with %step_group"
    )


def _in_container(container: Any, id: str) -> tuple[Any, bool] | None:
    for rollback, items in ((False, container.items), (True, container.rollback_items)):
        here = model.locate(items, id)
        if here is not None:
            return here[0][here[1]], rollback
    return None


def define_step(
    pipeline: Pipeline,
    container: Stage | StepGroup,
    step: Step,
    parallel_with: str | None = None,
    rollback: bool = False,
) -> str:
    """Put ``step`` into ``container`` (in place of the step with its id) and say what changed."""
    _check_id(step.id, "step")
    items = container.rollback_items if rollback else container.items
    _check_sibling(items, step.id, parallel_with)
    label = _label(container, rollback)
    before = outline(items)
    found = _in_container(container, step.id)
    changes = placeholder = None
    if found is not None:
        old, old_rollback = found
        if not isinstance(old, Step):
            raise UsageError(f"`{step.id}` in {_label(container)} is a {type(old).__name__}, not a step")
        if old_rollback != rollback:
            _take(container.rollback_items if old_rollback else container.items, step.id)
        changes = _changed_fields(old, step, _STEP_FIELDS)
        placeholder = old == Step(old.id)  # listed by a group layout, defined now
    place(items, step, parallel_with)
    after = outline(items)
    if placeholder:
        block = next(i for i, b in enumerate(after) if step.id in b)
        line = f"step `{step.id}` defined in {label}, block {block}"
    else:
        line = describe("step", step.id, label, before, after, changes)
    return f"{line}\n{where(pipeline, container, step.id, rollback)}"


def define_group(
    pipeline: Pipeline,
    container: Stage | StepGroup,
    id: str,
    layout: str | None = None,
    parallel_with: str | None = None,
    rollback: bool = False,
    **settings: Any,
) -> str:
    """Add step group ``id`` to ``container`` or select it; a ``layout`` sets its blocks."""
    _check_id(id, "step group")
    blocks = parse_layout(layout) if layout is not None and layout.strip() else None
    settings = {k: v for k, v in settings.items() if v is not None}
    items = container.rollback_items if rollback else container.items
    _check_sibling(items, id, parallel_with)
    before = outline(items)
    found = _in_container(container, id)
    if found is not None and not isinstance(found[0], StepGroup):
        raise UsageError(f"`{id}` in {_label(container)} is a {type(found[0]).__name__}, not a step group")
    group = found[0] if found is not None else StepGroup(id, **settings)
    rollback_ids = {i for block in outline(group.rollback_items) for i in block}
    clash = [i for block in blocks or () for i in block if i in rollback_ids]
    if clash:
        raise UsageError(f"`{clash[0]}` is in the rollback list of group `{id}`; delete it there first")
    changes = _update(group, settings) if found is not None else None
    if found is not None and found[1] != rollback:
        _take(container.rollback_items if found[1] else container.items, id)
    place(items, group, parallel_with)
    line = describe("group", id, _label(container, rollback), before, outline(items), changes)
    if blocks is not None:
        inner_before = outline(group.items)
        _apply_layout(group, blocks)
        if found is not None:
            inner = describe_layout(_label(group), inner_before, outline(group.items))
            parts = [text for text in (line, inner) if not text.endswith("unchanged")]
            line = "; ".join(parts) if parts else line
    lines = [line, where(pipeline, container, id, rollback)]
    if group.items:
        lines.append(f"{id}: {picture(group.items)}")
    return "\n".join(lines)


def _apply_layout(group: StepGroup, blocks: list[list[str]]) -> None:
    """Rebuild the group's execution list from ``blocks``, keeping existing nodes (and bodies)."""
    existing = {node.id: node for item in group.items for node in members(item)}
    new_items: list = []
    for ids in blocks:
        nodes = [existing.get(i) or Step(i) for i in ids]
        new_items.append(nodes[0] if len(nodes) == 1 else Parallel(nodes))
    group.items[:] = new_items


def delete_node(pipeline: Pipeline, path: str, stage: str | None = None) -> tuple[Any, str]:
    """Delete the node named by ``path``: an id (looked up in ``stage`` first, then everywhere)
    or a dotted path of ids from the stage (``build.tests.e2e``). Returns (node, message)."""
    parts = path.split(".")
    for part in parts:
        _check_id(part, "node")
    every = list(walk_nodes(pipeline))
    if len(parts) > 1:
        hits = [(n, c, rb) for n, c, rb in every if [x.id for x in c[1:]] + [n.id] == parts]
    else:
        hits = [
            (n, c, rb) for n, c, rb in every if n.id == path and stage and len(c) > 1 and c[1].id == stage
        ]
        hits = hits or [(n, c, rb) for n, c, rb in every if n.id == path and isinstance(n, Stage)]
        hits = hits or [(n, c, rb) for n, c, rb in every if n.id == path]
    if not hits:
        raise UsageError(f"nothing named `{path}` in pipeline `{pipeline.id}`")
    if len(hits) > 1:
        paths = ", ".join(".".join([x.id for x in c[1:]] + [n.id]) for n, c, _rb in hits)
        raise UsageError(f"`{path}` names several nodes ({paths}): use one of those paths")
    node, chain, rollback = hits[0]
    parent = chain[-1]
    _take(parent.rollback_items if rollback else parent.items, node.id)
    kind = {Stage: "stage", StepGroup: "group", Step: "step"}[type(node)]
    items = parent.rollback_items if rollback else parent.items
    path_text = " › ".join(c.id for c in chain) + (" › rollback" if rollback else "")
    return node, f"{kind} `{node.id}` deleted from {_label(parent, rollback)}\n{path_text}: {picture(items)}"


# -- runs -----------------------------------------------------------------------------------------
def run_summary(trace: Any, virtual: bool = False) -> str:
    """One line for a run (status, step counts; the time only when virtual, so deterministic),
    then the lines of :func:`~notebook_pipelines.engine.running.failure_lines`: each step that ended
    badly, and each stage or group that failed on its own, with its error."""
    from ...engine.running import failure_lines
    from ...engine.trace import STATUSES

    root = trace[trace["kind"] == "pipeline"]
    status = str(root["status"].iloc[0]) if len(root) else "?"
    steps = trace[trace["kind"] == "step"].drop_duplicates("fqn", keep="last")
    steps = steps[(steps["phase"] == "execution") | (steps["status"] != "NotStarted")]  # rollbacks that ran
    counts = steps["status"].astype(str).value_counts()
    parts = [f"{counts[s]} {s}" for s in STATUSES if s in counts]
    took = (
        f" in {format_duration(float(root['duration_s'].iloc[0]))} (virtual time)"
        if virtual and len(root)
        else ""
    )
    n = len(steps)
    lines = [
        f"pipeline `{trace.attrs.get('pipeline', '')}` ended {status}{took}: "
        f"{n} step{'s' if n != 1 else ''} — {', '.join(parts)}"
    ]
    return "\n".join([*lines, *failure_lines(trace)])


def elsewhere_hint(p: Pipeline, container: Any, node: Step | StepGroup) -> str:
    """A hint when a new node looks like one in another stage (a step with the same body, a
    group with the same id): maybe an old cell re-run after moving on, where ``--stage`` helps."""
    if _in_container(container, node.id) is not None:
        return ""
    for other, chain, _rb in walk_nodes(p):
        same = type(other) is type(node) and other.id == node.id
        if same and (isinstance(node, StepGroup) or other.run == node.run) and chain[1] is not container:
            stage, kind = chain[1].id, "group" if isinstance(node, StepGroup) else "step"
            return f"\n(stage `{stage}` has a {kind} `{node.id}` too: --stage {stage} redefines that one)"
    return ""


def invalid_message(p: Pipeline, exc: DefinitionError) -> str:
    n = len(exc.problems)
    first = str(exc.problems[0]).splitlines()[0] if exc.problems else ""  # one line: no caret lines
    return (
        f"pipeline `{p.id}` is not valid ({n} problem{'s' if n != 1 else ''}, first: {first}); "
        "`%pipeline validate` lists them"
    )
