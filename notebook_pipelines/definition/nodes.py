"""The leaves of a definition: a step, and a parallel block of siblings that start together.

They are plain data (dataclasses compared by value); the containers that hold them (stages, step
groups, the pipeline) and the builder live in :mod:`~notebook_pipelines.definition.model`.
The leaves stand on :mod:`.failure` alone: settings given in any spelling are held in one form
(:func:`canonical_settings`), so a pipeline read back from its YAML equals the original:

>>> Step("deploy", when="Failure").when
When(status='Failure', condition=None)
>>> Parallel([Step("unit"), Step("lint")])
Parallel(['unit', 'lint'])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import StrategyError
from .failure import coerce_strategies, coerce_when

__all__ = ["Parallel", "Settings", "Step", "canonical_settings"]


class Settings:
    """What a step, a step group and a stage share beyond their fields: settings held in one
    form whatever spelling built them (:func:`canonical_settings`), and a display name.

    Each node's class declares its fields itself (the Harness keys it takes, in its order: the
    order of ``dataclasses.fields``, of the positional arguments and of the magics' change lists).
    """

    id: str
    name: str | None

    def __post_init__(self) -> None:
        canonical_settings(self)

    @property
    def display_name(self) -> str:
        return self.name or self.id


@dataclass(eq=True, repr=False)
class Step(Settings):
    """A step: a body (callable, cell code, or nothing) and its settings.

    Args:
        id: Harness identifier (letters, digits, ``_``, ``$``; not starting with a digit).
        run: a callable, code text, or None. A callable is called as ``fn(ctx, **inputs)``
            when it takes the step context (a parameter ``ctx``, or a first positional
            parameter that is not an input), else as ``fn(**inputs)``; see
            :mod:`notebook_pipelines.definition.callables`.
        name: display name (defaults to ``id``).
        when, failure_strategies, timeout, delegate_selectors, strategy, variables: as in
            Harness YAML; see :mod:`notebook_pipelines.definition.failure`.
        duration: what ``simulate()`` takes for this step: seconds, a Harness duration, or a
            sampler as ``simulate(durations=…)`` takes one (``lambda rng: …``, a frozen scipy
            distribution).
        type, spec: a typed step (e.g. ``ShellScript``) as Harness data.
        inputs: values for the body, passed as keyword arguments of those names; strings may
            embed ``<+…>`` expressions.
        outputs: names exported as output variables.
        extra: Harness keys the model has no field for (kept by ``load_yaml``, written back
            by ``to_yaml``).
        needs: in a parallel block, the identifiers of the members it waits for: it starts
            when they have all ended, not with the block (D14; GitHub/GitLab ``needs``).
    """

    id: str
    run: Callable[..., Any] | str | None = None
    name: str | None = None
    when: Any = None
    failure_strategies: Any = None
    timeout: Any = None
    delegate_selectors: Any = None
    strategy: Any = None
    variables: dict[str, Any] | None = None
    duration: Any = None
    type: str | None = None
    spec: dict[str, Any] | None = None
    inputs: dict[str, Any] | None = None
    outputs: list[Any] | None = None
    extra: dict[str, Any] | None = None
    needs: list[str] | str | None = None

    def __repr__(self) -> str:
        return f"Step({self.id!r})"


@dataclass(eq=True, repr=False)
class Parallel:
    """Siblings that start together; the block ends when the last one ends (R5, R12)."""

    items: list[Any] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [it.id for it in self.items]

    def __repr__(self) -> str:
        return f"Parallel({self.ids!r})"


def canonical_settings(node: Any) -> None:
    """Hold ``when`` and ``failure_strategies`` in one form, whatever spelling built them.

    ``when="Failure"`` becomes ``When("Failure")``; a single action, a dict or Harness YAML
    dicts become a list of ``OnFailure``. So two nodes that mean the same compare equal (a
    pipeline read back from its YAML equals the original). A value that cannot be read is
    kept as given: validation reports it with the node's FQN.
    """
    runtime_input = isinstance(node.when, str) and node.when.strip() == "<+input>"
    try:
        if not runtime_input:  # a Harness runtime input is kept verbatim, like every <+input>
            node.when = coerce_when(node.when)
    except StrategyError:
        pass
    if node.failure_strategies is not None:
        try:
            node.failure_strategies = list(coerce_strategies(node.failure_strategies))
        except StrategyError:
            pass
