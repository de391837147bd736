"""Expression rewriting: the one walk over every ``<+…>`` field of a node, and the references
that follow steps moved into new step groups (R42).

:func:`rewrite_expressions` applies a function to every string holding ``<+`` in a node's own
fields (conditions, failure strategies, looping, inputs, spec, variables…); the design
assistant reads references with it (:func:`~notebook_pipelines.analysis.layout_design.references`)
and :class:`ReferenceRewriter` rewrites them: a reference to a step that moved into a new group gains
``.steps.GROUP`` in its path.

It stands on the definition layer: the model's dataclasses, the expression parser
(:mod:`~notebook_pipelines.definition.expressions`) and the path walker
(:func:`~notebook_pipelines.definition.references.node_of_path`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..definition.expressions import parse_condition, parse_template
from ..definition.model import Parallel, Pipeline, Stage, StepGroup
from ..definition.references import KNOWN_ROOTS, LOOP_ROOTS, node_of_path
from ..errors import PipelineError

__all__ = ["ReferenceRewriter", "rewrite_expressions"]


#: fields that hold a container's children: the walkers below leave them to their callers
_CHILDREN = ("items", "rollback_items", "stages")


def rewrite_expressions(value: Any, fix: Any, key: str = "") -> Any:
    """``value`` with ``fix(text, is_condition)`` applied to every string that holds ``<+``.

    The one walk over everything a ``<+…>`` expression can live in: a node's ``when``
    condition, failure strategies (a retry ``condition``, any string of any action, nested
    ``then``/``on_timeout``), looping strategy (matrix axes, ``items``, ``times``,
    ``nodeName``…), inputs, spec, variables, timeout, delegate selectors and extra keys — every
    field of a model dataclass, recursively, except a container's children (``items``,
    ``rollback_items``, ``stages``), which the caller walks with their own reader. A field
    named ``condition`` is a condition (``fix(text, True)``), anything else a template.
    Returns ``value`` itself when nothing changed.

    >>> from notebook_pipelines.definition.model import Step
    >>> from notebook_pipelines.definition.failure import OnFailure, Retry
    >>> step = Step("b", failure_strategies=[OnFailure(action=Retry(condition="<+x> == 1"))],
    ...             inputs={"v": "<+y>", "n": 3})
    >>> seen = []
    >>> _ = rewrite_expressions(step, lambda text, cond: seen.append((text, cond)) or text)
    >>> seen
    [('<+x> == 1', True), ('<+y>', False)]
    >>> new = rewrite_expressions(step, lambda text, cond: text.replace("y", "z"))
    >>> new.inputs, step.inputs["v"]
    ({'v': '<+z>', 'n': 3}, '<+y>')
    >>> from notebook_pipelines.definition.looping import Repeat
    >>> rewrite_expressions(Repeat(items="<+y>"), lambda text, cond: "<+z>").items
    '<+z>'
    """
    if isinstance(value, str):
        if "<+" not in value:
            return value
        new = fix(value, key == "condition")
        return value if new == value else new
    if isinstance(value, Mapping):
        out = {k: rewrite_expressions(v, fix, key) for k, v in value.items()}
        return value if all(out[k] is v for k, v in value.items()) else out
    if isinstance(value, list | tuple):
        seq = [rewrite_expressions(v, fix, key) for v in value]
        return value if all(a is b for a, b in zip(seq, value, strict=True)) else type(value)(seq)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        container = isinstance(value, Pipeline | Stage | StepGroup | Parallel)
        changes = {}
        for f in dataclasses.fields(value):
            if not f.init or (container and f.name in _CHILDREN):
                continue
            old = getattr(value, f.name)
            new = rewrite_expressions(old, fix, f.name)
            if new is not old:
                changes[f.name] = new
        return dataclasses.replace(value, **changes) if changes else value
    return value


class ReferenceRewriter:
    """Copies of nodes whose ``<+…>`` references follow the steps that moved into new groups."""

    def __init__(self, plan: Any, moved: dict[str, dict[str, str]]):
        self.plan = plan
        self.moved = moved  # stage id -> {step id: new group id}
        self.fqn_of_model: dict[int, str] = {}

    def item(self, item: Any, stage_id: str, prefix: str | None = None) -> Any:
        base = prefix or f"pipeline.stages.{stage_id}.spec.execution.steps."
        if isinstance(item, Parallel):
            return Parallel([self.item(m, stage_id, prefix) for m in item.items])
        if (
            isinstance(item, StepGroup)
            and item.id in self.moved.get(stage_id, {}).values()
            and prefix is None
        ):
            # a new group: its steps keep their original FQN for the lookups
            return dataclasses.replace(item, items=[self.item(m, stage_id, None) for m in item.items])
        old_fqn = self._old_fqn(item, stage_id, base)
        if isinstance(item, StepGroup):
            inner = f"{old_fqn}.steps."
            return self.copy(
                item,
                stage_id,
                old_fqn,
                items=[self.item(m, stage_id, inner) for m in item.items],
                rollback_items=[
                    self.item(m, stage_id, f"{old_fqn}.rollbackSteps.") for m in item.rollback_items
                ],
            )
        return self.copy(item, stage_id, old_fqn)

    def _old_fqn(self, item: Any, stage_id: str, base: str) -> str:
        fqn = f"{base}{item.id}"
        if fqn in self.plan.by_fqn:
            return fqn
        rb = f"pipeline.stages.{stage_id}.spec.execution.rollbackSteps.{item.id}"
        return rb if rb in self.plan.by_fqn else fqn

    def copy(self, node: Any, stage_id: str, old_fqn: str | None = None, **changes: Any) -> Any:
        """``node`` with ``changes`` and every ``<+…>`` of its own fields rewritten."""
        fqn = old_fqn or f"pipeline.stages.{stage_id}"
        reader = self.plan.by_fqn.get(fqn)
        if reader is not None:
            node = rewrite_expressions(node, lambda text, cond: self.text(reader, text, cond))
        return dataclasses.replace(node, **changes)  # a new node: editing a suggestion leaves p alone

    def text(self, reader: Any, text: str, condition: bool) -> str:
        try:
            parsed = parse_condition(text) if condition else parse_template(text)
        except PipelineError:
            return text
        out, last = [], 0
        for ref in sorted(parsed.references, key=lambda r: r.position):
            if ref.path[0] not in KNOWN_ROOTS or ref.path[0] in LOOP_ROOTS:
                continue
            try:
                target, rest = node_of_path(self.plan, reader, ref.path)
            except LookupError:
                continue
            if target.kind != "step" or target.parent is None or target.parent.kind != "stage":
                continue
            group = self.moved.get(target.stage.id, {}).get(target.id)
            if group is None or target.phase != "execution":
                continue
            cut = len(ref.path) - len(rest)  # path[:cut] ends with ("steps", STEP)
            path = (*ref.path[: cut - 1], group, "steps", *ref.path[cut - 1 :])
            out.append(text[last : ref.position])
            out.append("<+" + "".join(_segment(x, i) for i, x in enumerate(path)) + ">")
            last = ref.position + len(ref.text)
        out.append(text[last:])
        return "".join(out)


def _segment(name: str, i: int) -> str:
    """One path segment as written in a reference: ``.name``, or ``["x-y"]`` when quoted (R47)."""
    if name.replace("$", "_").isidentifier():
        return f".{name}" if i else name
    return f'["{name}"]'
