"""Harness v0 pipeline YAML → the model: :func:`read_yaml`, :func:`load_yaml`, :func:`source_position`.

The reader walks the document (:mod:`.yaml_document`) from ``pipeline:`` down through stages,
``parallel:`` blocks, step groups and steps, checking each shape on the way and reading each
node's settings with :class:`~.yaml_fields.FieldReader`; the mapping of the v0 shape onto the
model is the table in :mod:`.yaml_io`'s docstring.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from ..definition.limits import MAX_GROUP_DEPTH, short
from ..definition.model import SOURCE, Parallel, Pipeline, Stage, Step, StepGroup
from ..errors import YamlError, YamlWarning
from .yaml_document import MarkedList, MarkedMap, line_column, parse_document, plain_data, source_text
from .yaml_fields import DOCUMENT_KEY, FieldReader, Note, infrastructure_key, is_empty, shape_of

__all__ = ["Loaded", "load_yaml", "read_yaml", "source_position"]


@dataclass
class Loaded:
    """The result of :func:`read_yaml`: the pipeline and the notes about it."""

    pipeline: Pipeline
    notes: list[Note]
    source: str


_PIPELINE_KEYS = {"identifier", "name", "stages", "variables", "timeout", "description"}
_STAGE_KEYS = {"identifier", "name", "type", "spec", "when", "failureStrategies", "strategy", "variables"}
_STAGE_KEYS |= {"delegateSelectors", "timeout"}
_GROUP_KEYS = {"identifier", "name", "steps", "rollbackSteps", "when", "failureStrategies", "strategy"}
_GROUP_KEYS |= {"variables", "delegateSelectors", "timeout"}
_STEP_KEYS = {"identifier", "name", "type", "spec", "timeout", "when", "failureStrategies", "strategy"}
_STEP_KEYS |= {"delegateSelectors"}  # Harness writes them in the spec; accepted beside it too


class _Reader(FieldReader):
    def document(self, doc: Any) -> Pipeline:
        if not isinstance(doc, MarkedMap) or "pipeline" not in doc:
            found = f" (found {', '.join(map(str, doc))})" if isinstance(doc, dict) and doc else ""
            mark = doc.mark if isinstance(doc, MarkedMap) else None
            self.problem(
                mark,
                "pipeline",
                "YAML",
                f"the document is not a Harness pipeline: it needs a top-level 'pipeline:' key{found}",
                "start the file with `pipeline:` (templates and input sets are not pipelines)",
            )
            return Pipeline("pipeline")
        body = doc["pipeline"]
        if not self.expect(body, MarkedMap, doc.values_at["pipeline"], "pipeline", "pipeline"):
            return Pipeline("pipeline")
        pipeline = self.pipeline(body)
        others = {k: plain_data(v) for k, v in doc.items() if k != "pipeline"}
        if others:
            for key in others:
                self.note(doc.keys_at[key], "pipeline", f"top-level key {key!r} kept as data (not modelled)")
            pipeline.extra = {**(pipeline.extra or {}), DOCUMENT_KEY: others}
        return pipeline

    def pipeline(self, body: MarkedMap) -> Pipeline:
        ident = self.identifier(body, "pipeline", "pipeline")
        self.positions["pipeline"] = line_column(body.mark)
        stages: list = []
        raw = body.get("stages")
        if raw is None:
            if "template" not in body:
                self.problem(
                    body.mark, "pipeline", "R11", "the pipeline has no 'stages' list", "add `stages:`"
                )
        elif self.expect(raw, MarkedList, body.values_at["stages"], "pipeline.stages", "stages"):
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
            timeout=plain_data(body.get("timeout")),
            description=body.get("description"),
            extra=extra,
        )

    def identifier(self, body: MarkedMap, fqn: str, what: str) -> Any:
        ident = body.get("identifier")
        if isinstance(ident, dict | list):
            self.problem(
                body.values_at["identifier"],
                fqn,
                "R1",
                f"the identifier of the {what} must be text, got {shape_of(ident)}",
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

    def name(self, body: MarkedMap, ident: Any) -> str | None:
        name = body.get("name")
        return None if name == ident else name

    def stage_list(self, raw: MarkedList) -> list:
        stages: list = []
        for i, entry in enumerate(raw):
            where, mark = f"pipeline.stages[{i}]", raw.items_at[i]
            kind = self.wrapper(entry, mark, where, ("stage", "parallel"))
            if kind == "stage":
                stages.append(self.stage(entry["stage"], entry.values_at["stage"], where))
            elif kind == "parallel":
                block = self.parallel(entry, where, ("stage",), self.stage_entry)
                if block is not None:
                    stages.append(block)
        return stages

    def stage_entry(self, kind: str, entry: MarkedMap, where: str) -> Stage:
        return self.stage(entry[kind], entry.values_at[kind], where)

    def parallel(self, entry: MarkedMap, where: str, kinds: tuple, read: Any) -> Parallel | None:
        """A ``parallel:`` entry: its children of ``kinds``, each read by ``read(kind, child, where)``
        (None when the block is not a list)."""
        block = entry["parallel"]
        if not self.expect(block, MarkedList, entry.values_at["parallel"], where, "parallel"):
            return None
        children = []
        for j, child in enumerate(block):
            sub = f"{where}.parallel[{j}]"
            kind = self.wrapper(child, block.items_at[j], sub, kinds)
            if kind is not None:
                children.append(read(kind, child, sub))
        return Parallel(children)

    def wrapper(self, entry: Any, mark: Any, where: str, kinds: tuple) -> str | None:
        """Which of ``kinds`` this list entry is (exactly one key of a mapping), or None."""
        allowed = " or ".join(f"`{k}:`" for k in kinds)
        if not isinstance(entry, MarkedMap) or len(entry) != 1 or next(iter(entry)) not in kinds:
            keys = short(", ".join(map(str, entry))) if isinstance(entry, dict) else shape_of(entry)
            self.problem(
                mark,
                where,
                "R4",
                f"each entry here must be exactly one of {allowed}, got {keys}",
                f"make the entry a mapping with exactly one key, {allowed}, and the node below it",
            )
            return None
        kind = next(iter(entry))
        if kind != "parallel" and not self.expect(entry[kind], MarkedMap, entry.values_at[kind], where, kind):
            return None
        return kind

    def stage(self, body: MarkedMap, mark: Any, where: str) -> Stage:
        ident = self.identifier(body, where, "stage")
        fqn = f"pipeline.stages.{ident}" if ident is not None else where
        self.positions[fqn] = line_column(mark)
        stage_type = body.get("type")
        if stage_type is None and "template" not in body:
            self.note(body.mark, fqn, "the stage has no type: read as a Custom stage")
        spec_raw = body.get("spec")
        items: list = []
        rollback: list = []
        spec: dict | None = None
        if spec_raw is not None and not self.expect(spec_raw, MarkedMap, body.values_at["spec"], fqn, "spec"):
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
            spec = {k: plain_data(v) for k, v in spec_raw.items() if k != "execution"}
            if execution is not None and self.expect(
                execution, MarkedMap, spec_raw.values_at["execution"], fqn, "execution"
            ):
                prefix = f"{fqn}.spec.execution"
                items = self.item_list(execution, "steps", f"{prefix}.steps", 0, required=True)
                rollback = self.item_list(execution, "rollbackSteps", f"{prefix}.rollbackSteps", 0)
                rest = {k: plain_data(v) for k, v in execution.items() if k not in ("steps", "rollbackSteps")}
                for key in rest:
                    self.note(
                        execution.keys_at[key], fqn, f"execution key {key!r} kept as data (not modelled)"
                    )
                if rest:
                    spec["execution"] = rest
            kept = [
                k for k, v in spec.items() if k not in ("deploymentType", "execution") and not is_empty(v)
            ]
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
        if not is_empty(body.get("delegateSelectors")):
            settings["delegate_selectors"] = plain_data(body["delegateSelectors"])
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

    def item_list(self, body: MarkedMap, key: str, prefix: str, depth: int, required: bool = False) -> list:
        raw = body.get(key)
        if raw is None:
            if required and "template" not in body:
                what = "step group" if depth else "execution"
                self.problem(
                    body.mark, prefix, "R1", f"the {what} has no '{key}' list", f"add `{key}:` with a step"
                )
            return []
        if not self.expect(raw, MarkedList, body.values_at[key], prefix, key):
            return []
        items: list = []
        for i, entry in enumerate(raw):
            where, mark = f"{prefix}[{i}]", raw.items_at[i]
            kind = self.wrapper(entry, mark, where, ("step", "stepGroup", "parallel"))
            if kind == "parallel":

                def read(kind: str, child: MarkedMap, sub: str) -> Step | StepGroup:
                    return self.node(kind, child, prefix, sub, depth)

                block = self.parallel(entry, where, ("step", "stepGroup"), read)
                if block is not None:
                    items.append(block)
            elif kind is not None:
                items.append(self.node(kind, entry, prefix, where, depth))
        return items

    def node(self, kind: str, entry: MarkedMap, prefix: str, where: str, depth: int) -> Step | StepGroup:
        body, mark = entry[kind], entry.values_at[kind]
        if kind == "step":
            return self.step(body, mark, prefix, where)
        return self.group(body, mark, prefix, where, depth)

    def group(self, body: MarkedMap, mark: Any, prefix: str, where: str, depth: int) -> StepGroup:
        ident = self.identifier(body, where, "step group")
        fqn = f"{prefix}.{ident}" if ident is not None else where
        self.positions[fqn] = line_column(mark)
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
        if self.rules == "classic" and not is_empty(body.get("delegateSelectors")):
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
        selectors = plain_data(body.get("delegateSelectors"))
        return StepGroup(
            ident,
            items=items,
            rollback_items=rollback,
            name=self.name(body, ident),
            variables=variables,
            delegate_selectors=None if is_empty(selectors) else selectors,
            extra=extra,
            **self.settings(body, fqn, "stageStatus"),
        )

    def step(self, body: MarkedMap, mark: Any, prefix: str, where: str) -> Step:
        ident = self.identifier(body, where, "step")
        fqn = f"{prefix}.{ident}" if ident is not None else where
        self.positions[fqn] = line_column(mark)
        step_type = body.get("type")
        spec_raw = body.get("spec")
        spec: Any = plain_data(spec_raw)
        selectors = None
        if isinstance(spec, dict):
            selectors = spec.pop("delegateSelectors", None)
            self.scan_inputs(spec_raw, f"{fqn}.spec", body.values_at.get("spec"))
        elif spec is not None:
            self.problem(
                body.values_at["spec"],
                fqn,
                "YAML",
                f"spec must be a mapping, got {shape_of(spec)}",
                "write `spec:` as a mapping: `key: value` lines indented below it",
            )
        if isinstance(step_type, dict | list):
            self.problem(
                body.values_at["type"],
                fqn,
                "R4",
                f"the step type must be text, got {shape_of(step_type)}",
                "write `type: ShellScript` (or another Harness step type)",
            )
            step_type = None
        elif step_type is not None:
            self.note_type(step_type, body.values_at.get("type"), fqn)
        if selectors is None:
            selectors = plain_data(body.get("delegateSelectors"))
        extra = self.extras(body, _STEP_KEYS, fqn, "step")
        return Step(
            ident,
            name=self.name(body, ident),
            type=step_type,
            spec=spec or None,
            delegate_selectors=None if is_empty(selectors) else selectors,
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
    text, name = source_text(source, source_name)
    doc, duplicates = parse_document(text, name)
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


def source_position(pipeline: Pipeline, fqn: str) -> str | None:
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
