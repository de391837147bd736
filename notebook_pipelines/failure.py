"""Failure strategies and conditional execution, as plain values.

A failure strategy is a list of :class:`OnFailure` entries, each mapping Harness error types
(R16) to an action (R17). Actions are small frozen dataclasses named after Harness's action
types, so a learner meets one vocabulary:

>>> Retry(2, intervals=["10s"], then=StageRollback())
Retry(count=2, intervals=('10s',), then=StageRollback())
>>> OnFailure(["Timeout"], Ignore()).to_dict()
{'onFailure': {'errors': ['Timeout'], 'action': {'type': 'Ignore'}}}

Settings accept four spellings, normalised by :func:`coerce_strategies`:

- a list of ``OnFailure`` (or of Harness YAML dicts ``{"onFailure": {...}}``),
- a dict ``{"Timeout": Retry(2), "AllErrors": Abort()}`` (keys: an error type or a tuple),
- a single action, meaning ``AllErrors`` → that action.

``When`` is the ``when:`` of a step, step group (``stageStatus``) or stage (``pipelineStatus``):
a status test (Success, Failure, All) ANDed with an optional condition, which is a Harness
expression string or, in Python, a callable taking the step context.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .durations import parse_duration
from .errors import PipelineError

__all__ = [
    "ACTION_TYPES",
    "ERROR_TYPES",
    "STATUS_CHOICES",
    "Abort",
    "Action",
    "Ignore",
    "ManualIntervention",
    "MarkAsFailure",
    "MarkAsSuccess",
    "OnFailure",
    "PipelineRollback",
    "ProceedWithDefaultValues",
    "Retry",
    "RetryStepGroup",
    "StageRollback",
    "StepGroupRollback",
    "When",
    "action_from_dict",
    "coerce_strategies",
    "coerce_when",
]

#: Harness error types (R16).
ERROR_TYPES = (
    "AllErrors",
    "Unknown",
    "Authentication",
    "Authorization",
    "Connectivity",
    "Timeout",
    "Verification",
    "DelegateProvisioning",
    "PolicyEvaluationFailure",
    "InputTimeoutError",
    "ApprovalRejection",
    "DelegateRestart",
    "UserMarkedFailure",
    "InfrastructureFailure",
    "PluginImageFailure",
    "ResourceLimitsFailure",
    "ConfigurationFailure",
    "RetryableTransientFailure",
)

#: ``stageStatus`` / ``pipelineStatus`` values (R28).
STATUS_CHOICES = ("Success", "Failure", "All")


class StrategyError(PipelineError, ValueError):
    """A failure strategy or condition that cannot be understood."""


@dataclass(frozen=True)
class Action:
    """Base of the failure-strategy actions (R17). ``type`` is the Harness YAML name."""

    type: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """The Harness YAML form ``{"type": ..., "spec": {...}}``."""
        return {"type": self.type}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@dataclass(frozen=True, repr=False)
class Ignore(Action):
    """Mark the node ``IgnoreFailed`` and go on (a positive status, R21, R26)."""

    type: ClassVar[str] = "Ignore"


@dataclass(frozen=True, repr=False)
class MarkAsSuccess(Action):
    """Mark the node ``Success`` and go on (R21)."""

    type: ClassVar[str] = "MarkAsSuccess"


@dataclass(frozen=True, repr=False)
class MarkAsFailure(Action):
    """Mark the node ``Failed`` and let the next nodes' ``when`` decide (R21, E9)."""

    type: ClassVar[str] = "MarkAsFailure"


@dataclass(frozen=True, repr=False)
class Abort(Action):
    """Abort the whole run: running nodes end ``Aborted``, the rest never start (R21, E15)."""

    type: ClassVar[str] = "Abort"


@dataclass(frozen=True, repr=False)
class StageRollback(Action):
    """Stop the stage and run its rollback (group rollbacks in reverse, then the stage's; R36)."""

    type: ClassVar[str] = "StageRollback"


@dataclass(frozen=True, repr=False)
class StepGroupRollback(Action):
    """Stop the step group and run its rollback list (R37); only for steps inside a group."""

    type: ClassVar[str] = "StepGroupRollback"


@dataclass(frozen=True, repr=False)
class PipelineRollback(Action):
    """Stop the pipeline and roll back every stage that ran, in reverse order (R38)."""

    type: ClassVar[str] = "PipelineRollback"


@dataclass(frozen=True, repr=False)
class ProceedWithDefaultValues(Action):
    """For missing run-time inputs: go on with defaults; on a step failure it acts as MarkAsSuccess."""

    type: ClassVar[str] = "ProceedWithDefaultValues"


def _intervals(values: Any) -> tuple:
    if values is None:
        return ()
    if isinstance(values, str | int | float):
        return (values,)
    return tuple(values)


@dataclass(frozen=True, repr=False)
class _Retrying(Action):
    """What ``Retry`` and ``RetryStepGroup`` share: a retry count and the waits between retries."""

    count: int = 1
    intervals: tuple = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "intervals", _intervals(self.intervals))

    def interval(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        if not self.intervals:
            return 0.0
        return parse_duration(self.intervals[min(retry, len(self.intervals)) - 1]) or 0.0

    def to_dict(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"retryCount": self.count}
        if self.intervals:
            spec["retryIntervals"] = list(self.intervals)
        return {"type": self.type, "spec": spec}


@dataclass(frozen=True)
class Retry(_Retrying):
    """Run the failed step again, up to ``count`` more times (R18; D3; E5).

    ``intervals`` are waits before each retry; the last is reused when there are fewer
    intervals than retries, none means no wait. ``then`` applies when the retries are used up
    (Harness ``onRetryFailure``). ``condition`` restricts retrying to failures it matches.
    """

    then: Action = field(default_factory=lambda: MarkAsFailure())
    condition: str | Callable | None = None
    type: ClassVar[str] = "Retry"

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["spec"]["onRetryFailure"] = {"action": self.then.to_dict()}
        if isinstance(self.condition, str):
            data["spec"]["condition"] = self.condition
        return data

    def __repr__(self) -> str:
        extra = f", condition={self.condition!r}" if self.condition is not None else ""
        return f"Retry(count={self.count}, intervals={self.intervals!r}, then={self.then!r}{extra})"


@dataclass(frozen=True)
class RetryStepGroup(_Retrying):
    """Run the whole step group again from its first step (R19, E6); group level only.

    ``intervals`` work as for :class:`Retry`.
    """

    type: ClassVar[str] = "RetryStepGroup"

    def __repr__(self) -> str:
        return f"RetryStepGroup(count={self.count}, intervals={self.intervals!r})"


@dataclass(frozen=True)
class ManualIntervention(Action):
    """Wait for a person to choose what to do (R20, D12); ``on_timeout`` applies otherwise.

    ``choices`` are the actions offered; a live notebook shows them as buttons, a
    simulation can script the answer, elsewhere the run waits ``timeout`` and applies
    ``on_timeout``.
    """

    timeout: str | float = "1h"
    on_timeout: Action = field(default_factory=lambda: MarkAsFailure())
    choices: tuple = ("MarkAsSuccess", "Ignore", "Retry", "Abort", "StageRollback", "PipelineRollback")
    type: ClassVar[str] = "ManualIntervention"

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "spec": {"timeout": self.timeout, "onTimeout": {"action": self.on_timeout.to_dict()}},
        }

    def __repr__(self) -> str:
        return f"ManualIntervention(timeout={self.timeout!r}, on_timeout={self.on_timeout!r})"


_SIMPLE: dict[str, type[Action]] = {
    cls.type: cls
    for cls in (
        Ignore,
        MarkAsSuccess,
        MarkAsFailure,
        Abort,
        StageRollback,
        StepGroupRollback,
        PipelineRollback,
        ProceedWithDefaultValues,
    )
}

#: Harness action types (R17).
ACTION_TYPES = (*_SIMPLE, "Retry", "RetryStepGroup", "ManualIntervention")


@dataclass(frozen=True)
class OnFailure:
    """One failure-strategy entry: these error types → this action (R15)."""

    errors: tuple = ("AllErrors",)
    action: Action = field(default_factory=lambda: MarkAsFailure())

    def __post_init__(self) -> None:
        errors = (self.errors,) if isinstance(self.errors, str) else tuple(self.errors)
        object.__setattr__(self, "errors", errors)

    def matches(self, error_type: str) -> bool:
        """True when this entry catches ``error_type`` (``AllErrors`` catches all)."""
        return error_type in self.errors or "AllErrors" in self.errors

    def to_dict(self) -> dict[str, Any]:
        return {"onFailure": {"errors": list(self.errors), "action": self.action.to_dict()}}


def action_from_dict(data: Any, where: str = "") -> Action:
    """An action from its Harness YAML form ``{"type": ..., "spec": {...}}`` (or an action).

    >>> action_from_dict({"type": "Retry", "spec": {"retryCount": 2, "retryIntervals": ["1s"]}})
    Retry(count=2, intervals=('1s',), then=MarkAsFailure())
    """
    if isinstance(data, Action):
        return data
    if isinstance(data, str):
        data = {"type": data}
    if not isinstance(data, Mapping) or "type" not in data:
        raise StrategyError(f"an action needs a 'type' (one of {', '.join(ACTION_TYPES)}), got {data!r}")
    kind = data["type"]
    spec = data.get("spec") or {}
    if kind in _SIMPLE:
        return _SIMPLE[kind]()
    if kind == "Retry":
        then = (spec.get("onRetryFailure") or {}).get("action")
        return Retry(
            count=_count(spec.get("retryCount", 1), where),
            intervals=spec.get("retryIntervals") or (),
            then=action_from_dict(then, where) if then else MarkAsFailure(),
            condition=spec.get("condition"),
        )
    if kind == "RetryStepGroup":
        return RetryStepGroup(_count(spec.get("retryCount", 1), where), spec.get("retryIntervals") or ())
    if kind == "ManualIntervention":
        on_timeout = (spec.get("onTimeout") or {}).get("action")
        return ManualIntervention(
            timeout=spec.get("timeout", "1h"),
            on_timeout=action_from_dict(on_timeout, where) if on_timeout else MarkAsFailure(),
        )
    raise StrategyError(f"unknown action type {kind!r}; use one of: {', '.join(ACTION_TYPES)}")


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise StrategyError(f"retryCount must be a whole number ≥ 0, got {value!r}")
    return value


def coerce_strategies(value: Any) -> tuple[OnFailure, ...]:
    """Normalise any accepted spelling of ``failure_strategies`` to a tuple of ``OnFailure``.

    >>> coerce_strategies({"Timeout": Retry(1)})
    (OnFailure(errors=('Timeout',), action=Retry(count=1, intervals=(), then=MarkAsFailure())),)

    Raises:
        StrategyError: for an unknown spelling or action type (error types are checked by
            validation, which names the node).
    """
    if value is None:
        return ()
    if isinstance(value, Action):
        return (OnFailure(("AllErrors",), value),)
    if isinstance(value, OnFailure):
        return (value,)
    if isinstance(value, Mapping) and "onFailure" not in value:
        return tuple(OnFailure(key, action_from_dict(act)) for key, act in value.items())
    if isinstance(value, Mapping):
        value = [value]
    entries = []
    for item in value:
        if isinstance(item, OnFailure):
            entries.append(item)
        elif isinstance(item, Mapping) and "onFailure" in item:
            body = item["onFailure"] or {}
            if "errors" not in body or "action" not in body:
                raise StrategyError(f"an onFailure entry needs 'errors' and 'action' (R15), got {item!r}")
            entries.append(OnFailure(body["errors"], action_from_dict(body["action"])))
        elif isinstance(item, tuple) and len(item) == 2:
            entries.append(OnFailure(item[0], action_from_dict(item[1])))
        else:
            raise StrategyError(
                f"cannot read the failure strategy entry {item!r}: use nbp.OnFailure(errors, action) "
                "or {'onFailure': {'errors': [...], 'action': {'type': ...}}}"
            )
    return tuple(entries)


@dataclass(frozen=True)
class When:
    """Conditional execution (R28, R29): a status test ANDed with an optional condition.

    ``status`` is Success (run only if everything before succeeded so far), Failure (only if
    something failed) or All. ``condition`` is a Harness expression string or a callable that
    takes the step context and returns a bool.

    >>> When("All").to_dict("stageStatus")
    {'stageStatus': 'All'}
    """

    status: str = "Success"
    condition: str | Callable | None = None

    def to_dict(self, key: str = "stageStatus") -> dict[str, Any]:
        out: dict[str, Any] = {key: self.status}
        if isinstance(self.condition, str):
            out["condition"] = self.condition
        return out


def coerce_when(value: Any) -> When | None:
    """Normalise ``when=``: a ``When``, a status word, a YAML dict, a condition string or callable.

    >>> coerce_when("Failure")
    When(status='Failure', condition=None)
    >>> coerce_when({"stageStatus": "All", "condition": "<+a> == 1"})
    When(status='All', condition='<+a> == 1')
    """
    if value is None or isinstance(value, When):
        return value
    if isinstance(value, str):
        return When(value) if value in STATUS_CHOICES else When("Success", value)
    if callable(value):
        return When("Success", value)
    if isinstance(value, Mapping):
        status = value.get("stageStatus", value.get("pipelineStatus", value.get("status", "Success")))
        return When(status, value.get("condition"))
    raise StrategyError(
        f"cannot read when={value!r}: use 'Success', 'Failure', 'All', nbp.When(status, condition), "
        "a condition string or a callable"
    )
