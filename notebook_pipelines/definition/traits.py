"""What a pass over a compiled plan's nodes would find, noted by the compile as it makes them.

:meth:`~.plan.Plan.traits` hands them out: the reference checks
(:func:`~.references.static_problems`, :func:`~.references.output_reads`) and ``simulate()``'s
set-up read them instead of walking every node of a large plan.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["Traits", "TraitsFound"]


class Traits(NamedTuple):
    """What a pass over a plan's nodes would find out, known from the compile (:meth:`~.plan.Plan.traits`).

    Each is on the safe side: ``readers`` may hold nodes that read nothing, and a flag may be
    True where nothing is there (its reader then looks node by node); never the reverse.
    """

    #: the nodes that may read a ``<+…>`` reference, in plan order: every container, and the
    #: steps with a ``when`` condition (their own or their groups'), inputs, a spec, a looping
    #: strategy or failure strategies declared on them or around them (retry conditions)
    readers: tuple[Any, ...]  # PlanNode s (this module stands below the plan's)
    #: some node's declared duration is not seconds (a sampler)
    samplers: bool
    #: some step declares outputs or has a spec (``outputVariables``)
    outputs: bool
    #: some step has neither a body nor a type (a sketch's step)
    sketch: bool
    #: some node has a looping strategy (R46–R54)
    looped: bool


class TraitsFound:
    """:class:`Traits` as they are found, node by node (by the compile, or by
    :meth:`~.plan.Plan.traits`'s pass)."""

    __slots__ = ("looped", "outputs", "readers", "samplers", "sketch")

    def __init__(self) -> None:
        self.readers: list[Any] = []
        self.samplers = self.outputs = self.sketch = self.looped = False

    def step(self, node: Any, reads: bool) -> None:
        """Note the compiled step ``node`` (``reads``: it may read a reference)."""
        if reads:
            self.readers.append(node)
        duration = node.duration
        if duration is not None and type(duration) is not float:
            self.samplers = True
        if node.outputs or node.spec is not None:
            self.outputs = True
        if node.body is None and node.type is None:
            self.sketch = True
        if node.strategy is not None:
            self.looped = True

    def done(self) -> Traits:
        return Traits(tuple(self.readers), self.samplers, self.outputs, self.sketch, self.looped)
