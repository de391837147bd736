"""The model → Harness v0 pipeline YAML: :func:`dump_yaml` (``Pipeline.to_yaml``).

The same shape the reader reads (:mod:`.yaml_reader`): the Harness spelling of every action and
condition, multi-line scripts as literal blocks, no anchors. What has no Harness YAML form — a
Python body, a simulated ``duration``, step ``inputs``/``outputs``/``variables``, a ``resource``
the infrastructure does not imply, a callable condition, ``needs`` (D14) — is left out with one
warning.

It stands on the model (:mod:`~notebook_pipelines.definition.model`, ``failure``, ``looping``
for the YAML form of each setting), ``depth_problems`` (checked before writing) and
:mod:`.yaml_fields` (``infrastructure_key``, the variable types, ``DOCUMENT_KEY``).
"""

from __future__ import annotations

import io
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml

from ..definition.depth import depth_problems
from ..definition.failure import ACTION_TYPES, coerce_strategies, coerce_when
from ..definition.limits import short
from ..definition.looping import to_dict as strategy_dict
from ..definition.model import Parallel, Pipeline, Stage, Step, StepGroup, read_from_yaml
from ..errors import DefinitionError, Problem, YamlWarning
from .yaml_fields import DOCUMENT_KEY, infrastructure_key, variable_type

__all__ = ["dump_yaml"]


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
    if pipeline.extra and DOCUMENT_KEY in pipeline.extra:
        doc.update(pipeline.extra[DOCUMENT_KEY])
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
        warnings.warn(
            YamlWarning(f"not written to YAML (no Harness form):\n{lines}"), stacklevel=_caller_level()
        )
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


_PACKAGE = str(Path(__file__).resolve().parents[1]) + os.sep


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside this package and IPython, for a warning of
    the caller of :func:`dump_yaml`: ``p.to_yaml()`` reaches it through ``Pipeline.to_yaml``
    (definition/verbs.py), ``%pipeline yaml`` through the magics and IPython's magic machinery;
    the warning's file:line should be the user's line (the cell's), not one of those relays."""
    frame, level = sys._getframe(2), 2  # level 1: dump_yaml, which warns
    while frame.f_back is not None and (
        frame.f_code.co_filename.startswith((_PACKAGE, "<decorator-gen-"))
        or str(frame.f_globals.get("__name__", "")).startswith("IPython.")
    ):
        frame, level = frame.f_back, level + 1
    return level


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
        extra.pop(DOCUMENT_KEY, None)
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
        return self.container_tail(out, s, fqn, "pipelineStatus", meta, extra)

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
        return self.container_tail(out, g, fqn, "stageStatus", meta, extra)

    def container_tail(
        self, out: dict, node: Stage | StepGroup, fqn: str, status_key: str, meta: Any, extra: dict
    ) -> dict:
        """What a stage and a step group end with alike: settings, variables, delegate selectors,
        and the keys kept as data."""
        self.settings(out, node, fqn, status_key)
        if node.variables:
            out["variables"] = _variables(node.variables, meta)
        if node.delegate_selectors:
            out["delegateSelectors"] = node.delegate_selectors
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
        if node.needs:  # D14: GitHub/GitLab's, not Harness's
            self.drop(
                fqn,
                f"needs={short(node.needs)} (Harness has no needs: there the node starts with its block)",
            )
        if node.failure_strategies is not None:
            if isinstance(node.failure_strategies, str) and node.failure_strategies not in ACTION_TYPES:
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
        entry = dict(declared.get(name) or {"type": variable_type(value)})
        entry.pop("name", None)
        out.append({"name": name, **entry, "value": value})
    return out
