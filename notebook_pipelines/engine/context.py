"""What a step body sees: its context (``ctx``), and how it is told to stop.

A body is ``fn()`` or ``fn(ctx)``. The context says where the step sits and which attempt this
is, carries its variables and resolved inputs, collects output variables, and is how the run
tells a body to stop (abort, interrupt, timeout): ``ctx.cancelled`` turns true, ``ctx.sleep()``
wakes up raising :class:`StepCancelled`, and any extra events registered in ``_watchers`` (a
shell script's watcher) are set.

Code-text bodies (cell code) run in a shared namespace; there ``ctx`` is
:data:`CURRENT_CONTEXT`, a proxy to the context of the step running on the calling thread.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import StepCancelled

if TYPE_CHECKING:  # pragma: no cover
    from ..definition.plan import PlanNode

__all__ = ["CURRENT_CONTEXT", "StepCancelled", "StepContext"]


class StepContext:
    """What a step body receives as its first argument.

    Attributes:
        fqn, id, name, stage, step_group: where the step sits.
        attempt: 1 for the first run, 2 for the first retry, …
        outputs: a dict; put output variables here (or return a dict from the body).
        variables: the pipeline, stage, group and step variables visible to the step.
        inputs: the step's resolved inputs.
    """

    __slots__ = (
        "_cancelled",
        "_event",
        "_watchers",
        "attempt",
        "fqn",
        "id",
        "inputs",
        "name",
        "outputs",
        "run_id",
        "stage",
        "step_group",
        "variables",
    )

    def __init__(
        self,
        node: PlanNode,
        attempt: int,
        run_id: str,
        variables: dict[str, Any],
        inputs: Mapping[str, Any],
    ):
        self.fqn, self.id, self.name = node.fqn, node.id, node.name
        self.stage = node.stage.id if node.stage is not None else None
        self.step_group = node.group.id if node.group is not None else None
        self.attempt, self.run_id = attempt, run_id
        self.outputs: dict[str, Any] = {}
        self.variables, self.inputs = variables, inputs
        self._cancelled = False
        self._event: threading.Event | None = None
        self._watchers: list[threading.Event] = []  # more events cancel() sets (one per shell script)

    @property
    def cancelled(self) -> bool:
        """True once the run was aborted or interrupted, or the step timed out: stop soon."""
        return self._cancelled

    def cancel(self) -> None:
        self._cancelled = True
        if self._event is not None:
            self._event.set()
        for event in list(self._watchers):
            event.set()

    def sleep(self, seconds: float) -> None:
        """Sleep that wakes up (raising ``StepCancelled``) when the step is told to stop."""
        if self._event is None:
            self._event = threading.Event()
        if self._cancelled or self._event.wait(seconds):
            raise StepCancelled(f"{self.fqn} was told to stop")

    def check(self) -> None:
        """Raise ``StepCancelled`` if the step was told to stop (call it in long loops)."""
        if self._cancelled:
            raise StepCancelled(f"{self.fqn} was told to stop")

    def __getstate__(self) -> dict[str, Any]:
        """What travels to another process (a Dask worker): the plain fields, whether it was
        told to stop; not the events that wake a sleeping body (the other side makes its own).

        >>> import pickle
        >>> from types import SimpleNamespace as Node
        >>> node = Node(fqn="pipeline.stages.s.steps.a", id="a", name="a", stage=None, group=None)
        >>> ctx = StepContext(node, 2, "r1", {"env": "prod"}, {"n": 3})
        >>> ctx.sleep(0)  # makes its event
        >>> copy = pickle.loads(pickle.dumps(ctx))
        >>> copy, copy.variables, copy.inputs, copy.cancelled
        (<StepContext pipeline.stages.s.steps.a attempt=2>, {'env': 'prod'}, {'n': 3}, False)
        """
        return {name: getattr(self, name) for name in _STATE}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)
        self._event = None
        self._watchers = []

    def __repr__(self) -> str:
        return f"<StepContext {self.fqn} attempt={self.attempt}>"


#: the fields of a context that pickle (the events that wake a body stay behind)
_STATE = tuple(name for name in StepContext.__slots__ if name not in ("_event", "_watchers"))


_current = threading.local()


class _CurrentContext:
    """Stands for the step context of the step running on the calling thread (code-text bodies)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # introspection (doctest, pickle, IPython) sees a plain object
            raise AttributeError(name)
        ctx = getattr(_current, "ctx", None)
        if ctx is None:
            raise RuntimeError("`ctx` is only available while a step's code runs")
        return getattr(ctx, name)

    def __repr__(self) -> str:
        ctx = getattr(_current, "ctx", None)
        return repr(ctx) if ctx is not None else "<step context: no step running>"


CURRENT_CONTEXT = _CurrentContext()
