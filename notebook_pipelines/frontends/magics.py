"""IPython magics: build a pipeline cell by cell.

``%load_ext notebook_pipelines`` registers four magics. ``%pipeline?``, ``%stage?``,
``%step_group?`` and ``%step?`` show their help::

    %pipeline release --var env=prod            # start (or select) a pipeline
    %stage build                                # start (or select) a stage

    %%step checkout                             # a step: the cell is its body
    print("checking out")

    %%step_group tests                          # a step group and its layout:
    unit, lint                                  #   block 0: unit and lint together
    integration, e2e                            #   block 1, after block 0

    %%step unit --group tests --retry 2         # a body for a step of the layout
    run_unit_tests()

    %stage deploy_us --parallel-with deploy_eu  # stages side by side
    %pipeline run                               # or: show, simulate, trace, yaml, validate, delete

Design notes
------------
* **The pipeline is a plain** :class:`~notebook_pipelines.definition.model.Pipeline` kept in the user
  namespace under its name, so the Python API works on it between magics (``release.find(…)``,
  ``release.simulate()``), and the magics work on whatever object that name holds.
* **State**: the current pipeline's name, per pipeline the current stage (``%stage``), and
  per cell the pipeline and stage its node went into. A cell says where its node goes
  (``--group``, ``--stage``, ``--parallel-with``, ``--rollback``); what it leaves out comes
  from the current stage the first time, and from the cell's own stage when the same cell runs
  again — so going back to edit ``checkout`` after ``%stage deploy_us`` redefines the
  ``checkout`` of ``build``. Cells are known by the id the front-end sends (JupyterLab,
  Notebook 7 and VS Code do; terminal IPython and nbclient do not). Without it the current
  stage applies, a ``--group`` is looked up in the whole pipeline when the current stage has
  none of that name, and a new step or group that copies one in another stage prints a hint
  to pass ``--stage``.
* **Parallel blocks are an option, not a bracket**: ``--parallel-with unit`` puts the node in
  ``unit``'s block. A ``%parallel`` … ``%end_parallel`` pair spanning cells would be state the
  reader cannot see in the cell, and re-running one cell from the middle of it later would
  land elsewhere. A ``%%step_group`` cell may instead list the group's blocks, one line each.
* **Blocks count from 0**, like the trace's ``block`` column (a node's place in its list, a
  parallel block counting as one place): "block 0" in a cell's message is the node whose trace
  rows say ``block == 0``.
* **Redefine, never duplicate**: a node whose id already exists in the container takes the old
  node's place, inside its parallel block too. The cell prints one line saying what changed
  and one line showing where the node sits (serial ``→``, parallel ``∥``, the node in ``[ ]``)::

      group `tests`: block 1 gained `e2e`
      release › build › tests: unit ∥ lint → integration ∥ [e2e]

* **Containers also select**: ``%pipeline``, ``%stage`` and ``%step_group`` update the
  settings you pass and keep the others. A ``%%step`` cell defines the whole step: a setting
  it does not pass is unset.
* **Bodies are code text**, checked to compile but never run when the cell runs.
  ``%pipeline run`` runs them with ``exec`` in the user namespace
  (``p.run(namespace=get_ipython().user_ns)``): a body reads and writes notebook variables,
  and ``--outputs a,b`` exports those names as the step's output variables. Parallel steps
  share that one namespace: bodies in one parallel block that assign the same name race, and
  so does ``ctx`` (the step context the engine puts in the namespace before each body). Give
  parallel bodies distinct names, or use a callable body (``def unit(ctx): …``) through the
  Python API for parallel work that needs its context.
* **User mistakes** (an unknown group, a step outside a stage, a bad option) raise
  :class:`~IPython.core.error.UsageError` with one line; IPython shows it without a traceback.
* The plain functions below (``define_step``, ``define_group``, ``place``, ``picture``…) do
  the work and can be called without a shell; the magics parse arguments and print.
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import (
    Magics,
    cell_magic,
    line_cell_magic,
    line_magic,
    magics_class,
    no_var_expand,
    output_can_be_silenced,
)
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.utils.process import arg_split

from ..definition import model
from ..definition.durations import DurationError, format_duration, parse_duration
from ..definition.failure import Retry, coerce_when
from ..definition.model import Parallel, Pipeline, Stage, Step, StepGroup, members
from ..definition.validation import IDENTIFIER
from ..errors import DefinitionError, ExpressionError

__all__ = [
    "PipelineMagics",
    "define_group",
    "define_pipeline",
    "define_stage",
    "define_step",
    "delete_node",
    "load_ipython_extension",
    "parse_layout",
    "picture",
    "place",
    "run_summary",
]

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


def _walk(container: Any, chain: tuple = ()) -> Iterator[tuple[Any, tuple, bool]]:
    """``(node, chain of containers down to its parent, in_rollback)`` for every node below."""
    chain = (*chain, container)
    for rollback, items in ((False, container.items), (True, container.rollback_items)):
        for item in items:
            for node in members(item):
                yield node, chain, rollback
                if isinstance(node, Stage | StepGroup):
                    yield from _walk(node, chain)


def _chain_to(pipeline: Pipeline, container: Any) -> tuple:
    """The containers from the pipeline down to ``container`` (both included)."""
    if container is pipeline:
        return (pipeline,)
    for node, chain, _rb in _walk(pipeline):
        if node is container:
            return (*chain, node)
    raise UsageError(f"`{container.id}` is no longer in pipeline `{pipeline.id}`")


def where(pipeline: Pipeline, container: Any, id: str, rollback: bool = False) -> str:
    """One line: the path to ``container`` and the picture of its list with ``id`` marked."""
    path = " › ".join(c.id for c in _chain_to(pipeline, container))
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
    return [(node, chain) for node, chain, _rb in _walk(container) if isinstance(node, StepGroup)]


def find_container(
    pipeline: Pipeline, stage: str | None, group: str | None, what: str, current: str | None = None
) -> Stage | StepGroup:
    """The container a node goes into: step group ``group`` or else the stage.

    The stage is ``stage`` when given, else ``current`` (the current stage). A group not found
    in the current stage is looked up in the whole pipeline, so re-running a cell after moving
    on to another stage still finds its group; an explicit ``stage`` is never left. ``what``
    names the node in messages.
    """
    stages = [n for n, _c, _rb in _walk(pipeline) if isinstance(n, Stage)]
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
    every = list(_walk(pipeline))
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
    from ..engine.running import failure_lines
    from ..engine.trace import STATUSES

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


def _failures(specs: list[str] | None) -> dict | None:
    """``--fail STEP[:ATTEMPTS][:ERROR]`` (parsed as on the command line) → ``simulate(failures=…)``.

    Which steps they name is checked by ``simulate()`` itself (strict keys).
    """
    from ..analysis.options import parse_failures
    from ..engine.simulation import SimulationError

    try:
        return parse_failures(specs or ()) or None
    except SimulationError as exc:
        raise UsageError(str(exc)) from None


# -- the magics -----------------------------------------------------------------------------------
def _parse(magic: Any, line: str) -> Any:
    """Parse a magic's line with shell quoting (``--when "<+a> == 'b'"`` keeps its inner quotes)."""
    try:
        argv = arg_split(line, posix=True)
    except ValueError as exc:
        raise UsageError(f"cannot read the arguments ({exc}): check the quotes") from None
    return magic.parser.parse_args(argv)


def _duration(value: str | None, option: str) -> str | None:
    if value is not None:
        try:
            parse_duration(value, option)
        except DurationError as exc:
            raise UsageError(str(exc).splitlines()[0]) from None
    return value


def _when(value: str | None) -> str | None:
    if value is None:
        return None
    when = coerce_when(value)
    if when.condition is not None:
        from ..definition.expressions import parse_condition

        try:
            parse_condition(when.condition)
        except ExpressionError as exc:
            raise UsageError(f"--when {value!r}: {str(exc).splitlines()[0].rstrip(':')}") from None
    return value


def _variables(pairs: list[str] | None) -> dict | None:
    if not pairs:
        return None
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not _ID.fullmatch(key):
            raise UsageError(f"--var {pair!r}: write NAME=VALUE")
        out[key] = value
    return out


_PIPELINE_OPTIONS = {
    None: {"rules", "var", "timeout", "force"},
    "show": {"text", "trace"},
    "run": {"run_id", "check", "dask"},
    "simulate": {"seed", "default", "fail", "run_id"},
    "trace": {"columns", "steps", "all"},
    "yaml": set(),
    "validate": set(),
    "delete": set(),
    "suggest": {"default", "max_parallel", "constraint", "across_stages"},
}


@magics_class
class PipelineMagics(Magics):
    """``%pipeline``, ``%stage``, ``%step_group`` and ``%%step``: see the module docstring."""

    def __init__(self, shell: Any = None):
        super().__init__(shell)
        self.current: str | None = None  # the name of the current pipeline in user_ns
        self.stages: dict[str, str | None] = {}  # pipeline name -> current stage id
        self.traces: dict[str, Any] = {}  # pipeline name -> last trace made through %pipeline
        self.cell_id: str | None = None  # the running cell's id, when the front-end sends one
        self.cells: dict[str, tuple[str, str]] = {}  # cell id -> (pipeline name, stage id) of its node
        self.dask: dict[str, Any] = {}  # scheduler address -> DaskExecutor (its connection kept)

    def cell_started(self, info: Any) -> None:
        """``pre_run_cell`` hook: note the cell's id (JupyterLab, Notebook 7 and VS Code send it)."""
        self.cell_id = getattr(info, "cell_id", None)

    def cell_finished(self, result: Any) -> None:
        """``post_run_cell`` hook: magics called outside a cell have no cell id."""
        self.cell_id = None

    # -- state --------------------------------------------------------------------------------
    def _pipeline(self) -> Pipeline:
        if self.current is None:
            raise UsageError("no current pipeline: start one with `%pipeline NAME`")
        p = self.shell.user_ns.get(self.current)
        if not isinstance(p, Pipeline):
            raise UsageError(
                f"`{self.current}` no longer holds a Pipeline: run `%pipeline {self.current}` again"
            )
        return p

    def _stage_id(self, p: Pipeline) -> str | None:
        stage = self.stages.get(self.current)
        if stage is not None and not any(isinstance(n, Stage) and n.id == stage for n, _c, _r in _walk(p)):
            self.stages[self.current] = None
            return None
        return stage

    def _target(self, stage: str | None) -> tuple[str, Pipeline, str | None]:
        """The pipeline (name, object) and stage a node cell works on: when this very cell ran
        before, the ones it used then (so a re-run lands in the same place); else the current."""
        name, old = self.cells.get(self.cell_id, (None, None)) if self.cell_id else (None, None)
        p = self.shell.user_ns.get(name) if name else None
        known = isinstance(p, Pipeline) and any(isinstance(n, Stage) and n.id == old for n, _, _ in _walk(p))
        if known and not stage:
            return name, p, old
        p = self._pipeline()
        return self.current, p, self._stage_id(p)

    def _remember(self, name: str, p: Pipeline, container: Any) -> None:
        if self.cell_id:
            self.cells[self.cell_id] = (name, _chain_to(p, container)[1].id)

    # -- %pipeline ----------------------------------------------------------------------------
    @magic_arguments()
    @argument("words", nargs="*", help="NAME of a pipeline to start or select, or a command and its argument")
    @argument(
        "--rules", choices=("classic", "current"), help="with NAME: classic (groups not nested) or current"
    )
    @argument("--var", action="append", metavar="NAME=VALUE", help="with NAME: a pipeline variable; repeat")
    @argument("--timeout", help="with NAME: the pipeline timeout, e.g. 1h")
    @argument(
        "--force",
        action="store_true",
        help="with NAME: take the name even if it hides a builtin or holds another value",
    )
    @argument("--text", action="store_true", help="show: a text outline instead of the picture")
    @argument("--trace", action="store_true", help="show: colour by the last trace")
    @argument("--run-id", help="run, simulate: fix the run id")
    @argument("--check", action="store_true", help="run: raise RunFailed when the run does not succeed")
    @argument(
        "--dask",
        metavar="ADDRESS",
        help="run: the bodies on the Dask cluster whose scheduler is at ADDRESS (tcp://HOST:PORT)",
    )
    @argument("--seed", type=int, help="simulate: seed for sampled durations (default 0)")
    @argument("--default", help="simulate: duration of steps that declare none (default 1s)")
    @argument(
        "--fail",
        action="append",
        metavar="STEP[:ATTEMPTS][:ERROR]",
        help="simulate: make STEP fail (every attempt, or attempts 1,2), as on the command line; repeat",
    )
    @argument(
        "--iterations",
        action="append",
        metavar="NODE=N",
        help="simulate: a looped NODE whose items are known only in a run has N of them; repeat",
    )
    @argument(
        "--max-parallel",
        type=int,
        metavar="N",
        help="suggest: at most N units (step, step group, looped step) at once",
    )
    @argument(
        "--across-stages",
        action="store_true",
        help="suggest: stages that nothing orders may run in parallel (default: stage order kept)",
    )
    @argument(
        "--constraint",
        action="append",
        metavar="FIRST:SECOND",
        help="suggest: SECOND never starts before FIRST ends; repeat",
    )
    @argument("--columns", help="trace: columns to show, comma separated")
    @argument("--steps", action="store_true", help="trace: step rows only")
    @argument("--all", action="store_true", help="trace: every column")
    @output_can_be_silenced
    @no_var_expand
    @line_magic
    def pipeline(self, line: str = "") -> Any:
        """Start or select a pipeline, or act on the current one.

        ::

          %pipeline NAME [--rules classic|current] [--var NAME=VALUE]... [--timeout T] [--force]
          %pipeline show [--text] [--trace]     the picture (or a text outline)
          %pipeline run [--run-id ID] [--check] run the bodies in this kernel
          %pipeline run --dask ADDRESS          … or on a Dask cluster (scheduler at ADDRESS)
          %pipeline simulate [--seed N] [--default 5s] [--fail STEP[:ATTEMPTS][:ERROR]]...
                             [--iterations NODE=N]...
          %pipeline trace [--steps] [--columns a,b | --all]   the last run's trace
          %pipeline yaml                        the Harness YAML
          %pipeline validate                    "valid", or every problem
          %pipeline delete ID|STAGE.GROUP.ID    delete a step, group or stage
          %pipeline suggest [--default 5s] [--max-parallel N] [--constraint FIRST:SECOND]...
                            [--across-stages]
                                                faster layouts (nbp.suggest_layout), best first

        ``NAME`` becomes a variable holding the ``Pipeline``, so the Python API works on it too;
        a name that would hide a builtin (``print``) or replace another value needs ``--force``.
        Selecting an existing pipeline keeps the settings you do not pass. ``run`` runs the
        code bodies in the notebook's namespace (``p.run(namespace=...)``); with ``--dask`` they
        run on the cluster's workers, each with a copy of the notebook variables its code names
        (what it assigns stays there: ``--outputs`` brings values back); ``run`` and
        ``simulate`` print one line; ``trace`` returns the trace as a DataFrame (a few
        columns unless told otherwise: ``trace = %pipeline trace --all`` keeps all of it).

        Example::

          %pipeline release --var env=prod
          %stage build
          ...
          %pipeline run
          %pipeline trace --steps --columns step,status,attempt
        """
        args = _parse(self.pipeline, line)
        words = args.words
        command = words[0] if words and words[0] in COMMANDS else None
        rest = words[1:] if command else words
        self._check_options(args, command)
        if command is None:
            if len(rest) > 1:
                raise UsageError(
                    f"%pipeline takes one NAME (got {' '.join(rest)}); commands: {', '.join(COMMANDS)}"
                )
            if not rest:
                return self._status()
            _p, message = define_pipeline(
                self.shell.user_ns,
                rest[0],
                rules=args.rules,
                variables=_variables(args.var),
                timeout=_duration(args.timeout, "--timeout"),
                force=args.force,
            )
            self.current = rest[0]
            self.stages.setdefault(rest[0], None)
            print(message)
            return None
        if command == "delete":
            if len(rest) != 1:
                raise UsageError("write `%pipeline delete ID` or `%pipeline delete STAGE.GROUP.ID`")
        elif rest:
            raise UsageError(f"`%pipeline {command}` takes no argument `{rest[0]}`")
        p = self._pipeline()
        return getattr(self, f"_{command}")(p, args, *rest)

    def _check_options(self, args: Any, command: str | None) -> None:
        defaults = vars(self.pipeline.parser.parse_args([]))
        for name, value in vars(args).items():
            if name != "words" and value != defaults[name] and name not in _PIPELINE_OPTIONS[command]:
                flag = "--" + name.replace("_", "-")
                where = f"`%pipeline {command}`" if command else "`%pipeline NAME`"
                raise UsageError(f"{flag} does not apply to {where}")

    def _status(self) -> None:
        p = self._pipeline()
        stage = self._stage_id(p)
        at = f", stage `{stage}`" if stage else ""
        print(f"pipeline `{p.id}` ({p.rules} rules){at}: {picture(p.stages, mark=stage)}")

    def _show(self, p: Pipeline, args: Any) -> None:
        trace = self._last_trace(p) if args.trace else None
        if args.text:
            from ..views.rendering import outline as text_outline

            try:
                print(text_outline(p, trace))
            except DefinitionError as exc:
                raise UsageError(_invalid(p, exc)) from None
            return
        from IPython.display import display

        display(p.render(trace) if trace is not None else p)

    def _run(self, p: Pipeline, args: Any) -> None:
        from ..errors import RunFailed

        executor = self._dask_executor(args.dask) if args.dask else None
        try:
            trace = p.run(namespace=self.shell.user_ns, run_id=args.run_id, report=False, executor=executor)
        except DefinitionError as exc:
            raise UsageError(_invalid(p, exc)) from None
        except ConnectionError as exc:  # the cluster is unreachable or has no workers
            raise UsageError(f"--dask {args.dask}: {exc}") from None
        self.traces[self.current] = trace
        text = run_summary(trace)
        print(text)
        if args.check and set(trace.loc[trace["kind"] == "pipeline", "status"].astype(str)) != {"Success"}:
            raise RunFailed(text, trace)

    def _dask_executor(self, address: str) -> Any:
        """One executor per scheduler address, kept: the connection is reused by later runs."""
        executor = self.dask.get(address)
        if executor is None:
            try:
                from ..cluster.dask import DaskExecutor
            except ImportError as exc:
                raise UsageError(str(exc)) from None
            executor = self.dask[address] = DaskExecutor(address=address)
        return executor

    def _simulate(self, p: Pipeline, args: Any) -> None:
        from ..analysis.options import in_flags, parse_iterations
        from ..engine.simulation import SimulationError, simulate

        try:
            plan = p.plan()
        except DefinitionError as exc:
            raise UsageError(_invalid(p, exc)) from None
        options: dict[str, Any] = {"failures": _failures(args.fail), "run_id": args.run_id}
        if args.seed is not None:
            options["seed"] = args.seed
        if args.default is not None:
            options["default"] = _duration(args.default, "--default")
        try:  # strict keys: a --fail step that matches no step is refused, with a close match
            options["iterations"] = parse_iterations(args.iterations) or None
            trace = simulate(plan, strict=True, **options)
        except SimulationError as exc:
            raise UsageError(in_flags(exc).splitlines()[0]) from None
        self.traces[self.current] = trace
        print(run_summary(trace, virtual=True))

    def _suggest(self, p: Pipeline, args: Any) -> Any:
        """The design assistant's suggestions (shown as a table and the best picture)."""
        from ..analysis.layout import LayoutError, suggest_layout

        try:
            p.plan()
        except DefinitionError as exc:
            raise UsageError(_invalid(p, exc)) from None
        constraints = []
        for text in args.constraint or ():
            first, sep, second = text.partition(":")
            if not sep or not first or not second:
                raise UsageError(f"--constraint {text}: write FIRST:SECOND (two identifiers)")
            constraints.append((first, second))
        options: dict[str, Any] = {
            "constraints": constraints,
            "max_parallel": args.max_parallel,
            "across_stages": args.across_stages,
        }
        if args.default is not None:
            options["default"] = _duration(args.default, "--default")
        try:
            return suggest_layout(p, **options)
        except LayoutError as exc:
            raise UsageError(str(exc).splitlines()[0]) from None

    def _last_trace(self, p: Pipeline) -> Any:
        trace = self.traces.get(self.current)
        if trace is None:
            from ..engine.running import last_trace

            trace = last_trace()
            if trace is None or trace.attrs.get("pipeline") != p.id:
                raise UsageError(f"no trace of `{p.id}` yet: `%pipeline run` or `%pipeline simulate` first")
        return trace

    def _trace(self, p: Pipeline, args: Any) -> Any:
        from ..engine.trace import COLUMNS

        trace = self._last_trace(p)
        if args.steps:
            trace = trace[trace["kind"] == "step"]
        if args.columns:
            columns = [c.strip() for c in args.columns.split(",") if c.strip()]
            unknown = [c for c in columns if c not in COLUMNS]
            if unknown:
                raise UsageError(f"no trace column `{unknown[0]}`; columns: {', '.join(COLUMNS)}")
        else:
            columns = list(COLUMNS) if args.all else list(TRACE_COLUMNS)
        return trace[columns].reset_index(drop=True)

    def _yaml(self, p: Pipeline, args: Any) -> None:
        try:
            text = p.to_yaml()
        except DefinitionError as exc:
            raise UsageError(_invalid(p, exc)) from None
        print(text, end="" if text.endswith("\n") else "\n")

    def _validate(self, p: Pipeline, args: Any) -> None:
        try:
            p.validate()
        except DefinitionError as exc:
            print(exc)
        else:
            print("valid")

    def _delete(self, p: Pipeline, args: Any, path: str) -> None:
        node, message = delete_node(p, path, self._stage_id(p))
        if isinstance(node, Stage) and self.stages.get(self.current) == node.id:
            self.stages[self.current] = None
        print(message)

    # -- %stage -------------------------------------------------------------------------------
    @magic_arguments()
    @argument("id", help="stage identifier")
    @argument("--parallel-with", metavar="STAGE", help="run side by side with this stage")
    @argument("--name", help="display name")
    @argument(
        "--when",
        help='"Success" | "Failure" | "All" | a condition such as "<+pipeline.variables.env> == \'prod\'"',
    )
    @argument("--timeout", help="stage timeout, e.g. 30m")
    @argument("--type", help="Harness stage type (Custom, Deployment, CI…)")
    @argument("--resource", help="resource key: parallel stages with the same key do not overlap")
    @no_var_expand
    @line_magic
    def stage(self, line: str = "") -> None:
        """Start or select a stage of the current pipeline; later steps go into it.

        Re-running the cell keeps the stage's steps; the options you pass update its settings.

        Example::

          %stage build
          %stage deploy_eu --when "<+pipeline.variables.env> == 'prod'"
          %stage deploy_us --parallel-with deploy_eu
        """
        args = _parse(self.stage, line)
        p = self._pipeline()
        message = define_stage(
            p,
            args.id,
            parallel_with=args.parallel_with,
            name=args.name,
            when=_when(args.when),
            timeout=_duration(args.timeout, "--timeout"),
            type=args.type,
            resource=args.resource,
        )
        self.stages[self.current] = args.id
        print(message)

    # -- %step_group / %%step_group -----------------------------------------------------------
    @magic_arguments()
    @argument("id", help="step group identifier")
    @argument("--stage", help="the stage (default: the current stage)")
    @argument("--group", metavar="PARENT", help="the parent group (nested groups need --rules current)")
    @argument("--parallel-with", metavar="ID", help="run together with this sibling")
    @argument("--rollback", action="store_true", help="put the group in the rollback list")
    @argument("--name", help="display name")
    @argument("--when", help='"Success" | "Failure" | "All" | a condition; applies to its steps')
    @argument("--timeout", help="group timeout (--rules current only, R60)")
    @no_var_expand
    @line_cell_magic
    def step_group(self, line: str = "", cell: str | None = None) -> None:
        """Add or select a step group in the current stage; as a cell, the cell is its layout.

        The layout has one line per block; ids in one line run together, the blocks run one
        after the other. Steps it names get their bodies from ``%%step ID --group GROUP``
        cells (before or after); re-running the layout keeps their bodies, and drops steps
        it no longer lists.

        Example::

          %%step_group tests --when "<+pipeline.variables.env> == 'prod'"
          unit, lint          # block 0: unit and lint together
          integration, e2e    # block 1, after block 0
        """
        args = _parse(self.step_group, line)
        name, p, current = self._target(args.stage)
        container = find_container(p, args.stage, args.group, f"step group `{args.id}`", current)
        hint = _elsewhere(p, container, StepGroup(args.id)) if not (args.stage or args.group) else ""
        message = define_group(
            p,
            container,
            args.id,
            layout=cell,
            parallel_with=args.parallel_with,
            rollback=args.rollback,
            name=args.name,
            when=_when(args.when),
            timeout=_duration(args.timeout, "--timeout"),
        )
        self._remember(name, p, container)
        print(message + hint)

    # -- %%step -------------------------------------------------------------------------------
    @magic_arguments()
    @argument("id", help="step identifier")
    @argument("--group", help="the step group (default: directly in the stage)")
    @argument("--stage", help="the stage (default: the current stage)")
    @argument("--parallel-with", metavar="ID", help="run together with this sibling")
    @argument("--rollback", action="store_true", help="put the step in the rollback list")
    @argument("--name", help="display name")
    @argument("--timeout", help="step timeout, e.g. 30s")
    @argument(
        "--when",
        help='"Success" | "Failure" | "All" | a condition such as "<+pipeline.variables.env> == \'prod\'"',
    )
    @argument("--retry", type=int, metavar="N", help="retry up to N times on any error")
    @argument("--retry-interval", metavar="T", help="wait between retries, e.g. 10s")
    @argument("--outputs", metavar="a,b", help="names the body assigns, exported as output variables")
    @argument("--duration", help="how long simulate() takes for this step, e.g. 5s")
    @no_var_expand
    @cell_magic
    def step(self, line: str, cell: str) -> None:
        """Define (or redefine) a step; the cell is its body, run only when the pipeline runs.

        The body runs in this notebook's namespace, so it reads and writes your variables;
        ``--outputs`` names become the step's output variables. Re-running the cell replaces
        the step in its place and prints what changed. Without ``--group`` the step goes
        directly into the stage; a cell passes every setting of the step (an option it does
        not pass is unset).

        Example::

          %%step unit --group tests --parallel-with lint --retry 2 --timeout 30s --outputs coverage
          coverage = run_unit_tests()
        """
        args = _parse(self.step, line)
        name, p, current = self._target(args.stage)
        container = find_container(p, args.stage, args.group, f"step `{args.id}`", current)
        body = cell.rstrip() or None
        if body is not None:
            try:
                compile(body, f"<step {args.id}>", "exec")
            except SyntaxError as exc:
                raise UsageError(
                    f"step `{args.id}`: the body does not compile ({exc.msg}, line {exc.lineno}); "
                    "it is plain Python (no `!` or `%` lines)"
                ) from None
            except (MemoryError, RecursionError):  # e.g. 100,000 unary minus signs: the parser gives up
                raise UsageError(
                    f"step `{args.id}`: the body is nested too deeply for Python to compile "
                    f"({len(body)} characters); split the expression into several statements"
                ) from None
        outputs = [o.strip() for o in args.outputs.split(",") if o.strip()] if args.outputs else None
        for output in outputs or ():  # not `name`: that holds the pipeline's name, remembered below
            if not output.isidentifier():
                raise UsageError(f"--outputs: `{output}` is not a Python name")
        if args.retry_interval is not None and args.retry is None:
            raise UsageError("--retry-interval needs --retry N")
        retry = None
        if args.retry is not None:
            if args.retry < 1:
                raise UsageError("--retry N needs N ≥ 1")
            retry = Retry(args.retry, intervals=_duration(args.retry_interval, "--retry-interval") or ())
        step = Step(
            args.id,
            body,
            name=args.name,
            when=_when(args.when),
            failure_strategies=retry,
            timeout=_duration(args.timeout, "--timeout"),
            duration=_duration(args.duration, "--duration"),
            outputs=outputs,
        )
        hint = _elsewhere(p, container, step) if not (args.stage or args.group) else ""
        message = define_step(p, container, step, parallel_with=args.parallel_with, rollback=args.rollback)
        self._remember(name, p, container)
        print(message + hint)


def _elsewhere(p: Pipeline, container: Any, node: Step | StepGroup) -> str:
    """A hint when a new node looks like one in another stage (a step with the same body, a
    group with the same id): maybe an old cell re-run after moving on, where ``--stage`` helps."""
    if _in_container(container, node.id) is not None:
        return ""
    for other, chain, _rb in _walk(p):
        same = type(other) is type(node) and other.id == node.id
        if same and (isinstance(node, StepGroup) or other.run == node.run) and chain[1] is not container:
            stage, kind = chain[1].id, "group" if isinstance(node, StepGroup) else "step"
            return f"\n(stage `{stage}` has a {kind} `{node.id}` too: --stage {stage} redefines that one)"
    return ""


def _invalid(p: Pipeline, exc: DefinitionError) -> str:
    n = len(exc.problems)
    first = str(exc.problems[0]).splitlines()[0] if exc.problems else ""  # one line: no caret lines
    return (
        f"pipeline `{p.id}` is not valid ({n} problem{'s' if n != 1 else ''}, first: {first}); "
        "`%pipeline validate` lists them"
    )


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext notebook_pipelines``: register ``%pipeline``, ``%stage``, ``%step_group``, ``%%step``.

    Loading again replaces the magics (and their state) and their cell hooks.
    """
    old = ipython.magics_manager.registry.get(PipelineMagics.__name__)
    if old is not None:
        for event, hook in (("pre_run_cell", old.cell_started), ("post_run_cell", old.cell_finished)):
            if hook in ipython.events.callbacks[event]:
                ipython.events.unregister(event, hook)
    magics = PipelineMagics(ipython)
    ipython.register_magics(magics)
    ipython.events.register("pre_run_cell", magics.cell_started)
    ipython.events.register("post_run_cell", magics.cell_finished)
