"""Failure strategies and conditional execution, as plain values.

A failure strategy is a list of :class:`OnFailure` entries, each mapping Harness error types
(R16) to an action (R17). Actions are small frozen dataclasses named after Harness's action
types, so a learner meets one vocabulary:

>>> Retry(2, intervals=["10s"], then=StageRollback())
Retry(count=2, intervals=('10s',), then=StageRollback())
>>> OnFailure(["Timeout"], Ignore()).to_dict()
{'onFailure': {'errors': ['Timeout'], 'action': {'type': 'Ignore'}}}

Settings accept these spellings, normalised by :func:`coerce_strategies`:

- a list of ``OnFailure`` (or of Harness YAML dicts ``{"onFailure": {...}}``),
- a dict ``{"Timeout": Retry(2), "AllErrors": Abort()}`` (keys: an error type or a tuple),
- a single action, meaning ``AllErrors`` → that action,
- an action type name such as ``"Ignore"`` or ``"Retry"``, meaning ``AllErrors`` → that
  action with its defaults (the same as passing ``Ignore()`` or ``Retry()``).

Wherever an action is expected (``OnFailure(errors, action)``, ``Retry(then=...)``,
``ManualIntervention(on_timeout=...)``, the values of the dict spelling) an action type name
stands for that action with its defaults. Values of the wrong type are kept as given and
reported by validation (``validation.problems``), which names the node and the rule.

``When`` is the ``when:`` of a step, step group (``stageStatus``) or stage (``pipelineStatus``):
a status test (Success, Failure, All) ANDed with an optional condition, which is a Harness
expression string or, in Python, a callable taking the step context.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any, ClassVar

from ..errors import StrategyError
from .durations import parse_duration
from .limits import short

# What ``notebook_pipelines`` exports (``from .definition.failure import *``): the vocabulary of a
# definition. The tables and coercions below (``ACTION_TYPES``, ``ERROR_TYPES``, ``STATUS_CHOICES``,
# ``action_from_dict``, ``coerce_strategies``, ``coerce_when``) are the package's own.
__all__ = [
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


@dataclass(frozen=True)
class Action:
    """Base of the failure-strategy actions (R17). ``type`` is the Harness YAML name."""

    #: the Harness YAML name: the class's own name unless it says otherwise
    type: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type" not in cls.__dict__:
            cls.type = cls.__name__

    def to_dict(self) -> dict[str, Any]:
        """The Harness YAML form ``{"type": ..., "spec": {...}}``."""
        return {"type": self.type}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@dataclass(frozen=True, repr=False)
class Ignore(Action):
    """Mark the node ``IgnoreFailed`` and go on (a positive status, R21, R26)."""


@dataclass(frozen=True, repr=False)
class MarkAsSuccess(Action):
    """Mark the node ``Success`` and go on (R21)."""


@dataclass(frozen=True, repr=False)
class MarkAsFailure(Action):
    """Mark the node ``Failed`` and let the next nodes' ``when`` decide (R21, E9)."""


@dataclass(frozen=True, repr=False)
class Abort(Action):
    """Abort the whole run: running nodes end ``Aborted``, the rest never start (R21, E15)."""


@dataclass(frozen=True, repr=False)
class StageRollback(Action):
    """Stop the stage and run its rollback (group rollbacks in reverse, then the stage's; R36)."""


@dataclass(frozen=True, repr=False)
class StepGroupRollback(Action):
    """Stop the step group and run its rollback list (R37); only for steps inside a group."""


@dataclass(frozen=True, repr=False)
class PipelineRollback(Action):
    """Stop the pipeline and roll back every stage that ran, in reverse order (R38)."""


@dataclass(frozen=True, repr=False)
class ProceedWithDefaultValues(Action):
    """For missing run-time inputs: go on with defaults; on a step failure it acts as MarkAsSuccess."""


def _intervals(values: Any) -> tuple[Any, ...]:
    if values is None:
        return ()
    if isinstance(values, str | Mapping) or not isinstance(values, Iterable):
        return (values,)  # one interval (validation reports one that is not a duration)
    return tuple(values)


def _as_action(value: Any) -> Any:
    """An action type name as that action with its defaults; anything else unchanged."""
    if isinstance(value, str) and value in _BY_TYPE:
        return _BY_TYPE[value]()
    return value


@dataclass(frozen=True, repr=False)
class _Retrying(Action):
    """What ``Retry`` and ``RetryStepGroup`` share: a retry count and the waits between retries."""

    count: int = 1
    intervals: tuple[Any, ...] = ()

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
    condition: str | Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "then", _as_action(self.then))

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

    def __repr__(self) -> str:
        return f"RetryStepGroup(count={self.count}, intervals={self.intervals!r})"


@dataclass(frozen=True)
class ManualIntervention(Action):
    """Wait for a person to choose what to do (R20, D12); ``on_timeout`` applies otherwise.

    ``choices`` are the actions offered; a live notebook shows them as buttons, a
    simulation can script the answer, elsewhere the run waits ``timeout`` and applies
    ``on_timeout``.
    """

    timeout: str | float | None = "1h"  # None: read from YAML without one (validation says so)
    on_timeout: Action = field(default_factory=lambda: MarkAsFailure())
    choices: tuple[Any, ...] = (
        "MarkAsSuccess",
        "Ignore",
        "Retry",
        "Abort",
        "StageRollback",
        "PipelineRollback",
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "on_timeout", _as_action(self.on_timeout))

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
_BY_TYPE: dict[str, type[Action]] = {
    **_SIMPLE,
    "Retry": Retry,
    "RetryStepGroup": RetryStepGroup,
    "ManualIntervention": ManualIntervention,
}


@dataclass(frozen=True)
class OnFailure:
    """One failure-strategy entry: these error types → this action (R15)."""

    errors: tuple[Any, ...] = ("AllErrors",)
    action: Action = field(default_factory=lambda: MarkAsFailure())

    def __post_init__(self) -> None:
        single = isinstance(self.errors, str) or not isinstance(self.errors, Iterable)
        object.__setattr__(self, "errors", (self.errors,) if single else tuple(self.errors))
        object.__setattr__(self, "action", _as_action(self.action))

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
    if isinstance(data, str) and data in _BY_TYPE:
        return _BY_TYPE[data]()  # a bare type name: the action with its defaults
    if isinstance(data, str):
        data = {"type": data}
    if not isinstance(data, Mapping) or "type" not in data:
        raise StrategyError(f"an action needs a 'type' (one of {', '.join(ACTION_TYPES)}), got {data!r}")
    kind = data["type"]
    if not isinstance(kind, str) or kind not in _BY_TYPE:
        raise StrategyError(f"unknown action type {kind!r}; use one of: {', '.join(ACTION_TYPES)}")
    spec = data.get("spec") or {}
    if not isinstance(spec, Mapping):
        raise StrategyError(f"the spec of a {kind!r} action must be a mapping, got {spec!r}")
    if kind in _SIMPLE:
        return _SIMPLE[kind]()
    if kind == "Retry":
        then = _nested_action(spec, "onRetryFailure")
        return Retry(
            count=_count(spec.get("retryCount", 1), where),
            intervals=spec.get("retryIntervals") or (),
            then=action_from_dict(then, where) if then else MarkAsFailure(),
            condition=spec.get("condition"),
        )
    if kind == "RetryStepGroup":
        return RetryStepGroup(_count(spec.get("retryCount", 1), where), spec.get("retryIntervals") or ())
    # ManualIntervention: ``timeout`` is required (R20), so a missing one stays None for validation
    on_timeout = _nested_action(spec, "onTimeout")
    return ManualIntervention(
        timeout=spec.get("timeout"),
        on_timeout=action_from_dict(on_timeout, where) if on_timeout else MarkAsFailure(),
    )


def _nested_action(spec: Mapping[str, Any], key: str) -> Any:
    """The ``action`` under ``spec[key]`` (``onRetryFailure`` / ``onTimeout``), or None."""
    holder = spec.get(key) or {}
    if not isinstance(holder, Mapping):
        raise StrategyError(f"{key} must be a mapping {{action: {{type: ...}}}}, got {holder!r}")
    return holder.get("action")


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise StrategyError(f"retryCount must be a whole number ≥ 0, got {short(value)}")
    return int(value)


def coerce_strategies(value: Any) -> tuple[OnFailure, ...]:
    """Normalise any accepted spelling of ``failure_strategies`` to a tuple of ``OnFailure``.

    The spellings: a list of ``OnFailure`` / Harness dicts ``{"onFailure": {...}}`` /
    ``(errors, action)`` pairs; a dict error type(s) → action; a single action, or an action
    type name (``"Ignore"``, ``"Retry"`` …), both meaning ``AllErrors`` → that action.

    >>> coerce_strategies({"Timeout": Retry(1)})
    (OnFailure(errors=('Timeout',), action=Retry(count=1, intervals=(), then=MarkAsFailure())),)
    >>> coerce_strategies("Ignore")
    (OnFailure(errors=('AllErrors',), action=Ignore()),)

    Raises:
        StrategyError: for an unknown spelling or action type (error types and the values
            inside actions are checked by validation, which names the node).
    """
    if value is None:
        return ()
    if isinstance(value, Action):
        return (OnFailure(("AllErrors",), value),)
    if isinstance(value, OnFailure):
        return (value,)
    if isinstance(value, str):
        if value in _BY_TYPE:
            return (OnFailure(("AllErrors",), _BY_TYPE[value]()),)
        if "<+" in value:
            raise StrategyError(
                f"the failure strategies are the runtime input or expression {value!r}, "
                "which has no value here: give the strategies themselves before running"
            )
        raise StrategyError(
            f"unknown failure strategy {value!r}: a string must be an action type, "
            f"one of {', '.join(ACTION_TYPES)}"
        )
    if isinstance(value, Mapping) and "onFailure" not in value:
        return tuple(OnFailure(key, action_from_dict(act)) for key, act in value.items())
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, Iterable):
        raise StrategyError(
            f"cannot read failure_strategies={value!r}: use an action (nbp.Retry(2)), an action "
            "type name ('Ignore'), a dict {error type: action} or a list of nbp.OnFailure(errors, action)"
        )
    entries = []
    for item in value:
        if isinstance(item, OnFailure):
            entries.append(item)
        elif isinstance(item, Mapping) and "onFailure" in item:
            body = item["onFailure"] or {}
            if not isinstance(body, Mapping) or "errors" not in body or "action" not in body:
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
    condition: str | Callable[..., Any] | None = None

    def to_dict(self, key: str = "stageStatus") -> dict[str, Any]:
        out: dict[str, Any] = {key: self.status}
        if isinstance(self.condition, str):
            out["condition"] = self.condition
        return out


_WHEN_KEYS = ("stageStatus", "pipelineStatus", "status", "condition")


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
        unknown = [key for key in value if key not in _WHEN_KEYS]
        if unknown:
            raise StrategyError(
                f"cannot read when={value!r}: unknown key {unknown[0]!r} "
                "(a when mapping has stageStatus or pipelineStatus, and condition)"
            )
        status = value.get("stageStatus", value.get("pipelineStatus", value.get("status", "Success")))
        return When(status, value.get("condition"))
    raise StrategyError(
        f"cannot read when={value!r}: use 'Success', 'Failure', 'All', nbp.When(status, condition), "
        "a condition string or a callable"
    )
