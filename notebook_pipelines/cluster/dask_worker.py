"""The worker's side of :class:`~notebook_pipelines.cluster.dask.DaskExecutor`: what runs on a
Dask worker — one step body as a task (:func:`run_on_worker`, never raising: its outcome as a small
dict) and :class:`StopBodies`, the plugin that tells a body its task was cancelled.

Workers import this module (the task is a reference to :func:`run_on_worker`), so it holds only
what a worker needs.

It stands on the engine's step-running parts (:mod:`~notebook_pipelines.engine.context`,
``engine.executors.base`` and ``threads``: the body run as on a thread) and
:mod:`~notebook_pipelines.definition.statuses`.
"""

from __future__ import annotations

import threading
import time
import traceback
from contextlib import nullcontext
from typing import Any

import cloudpickle
from distributed import WorkerPlugin

from ..definition.statuses import ABORTED, FAILED, SUCCESS
from ..engine.context import StepCancelled, StepContext
from ..engine.executors.base import call_body, check_outputs, outcome_of_exception, refuse_unrun
from ..engine.executors.capture import StepLog, captured
from ..errors import StepError

__all__ = ["KEY_PREFIX", "PLUGIN", "PackedStep", "StopBodies", "run_on_worker"]

#: every task key this executor submits starts with this (the worker plugin acts on no other)
KEY_PREFIX = "nbp-"
#: the name the worker plugin is registered under (once per client; idempotent)
PLUGIN = "notebook-pipelines-stop-bodies"


_running: dict[str, StepContext] = {}  # task key -> context of a body running in this process
_stopped: set[str] = set()  # keys told to stop before their body started
_registry_lock = threading.Lock()


class StopBodies(WorkerPlugin):
    """Worker plugin: tells a step's body to stop when its task stops executing (cancelled).

    Runs in each worker's event loop; ``ctx.cancel()`` only sets a flag and events, so it never
    waits for the body.
    """

    idempotent = True
    name = PLUGIN

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if start != "executing" or finish not in ("released", "cancelled", "forgotten"):
            return
        if not (isinstance(key, str) and key.startswith(KEY_PREFIX)):
            return
        with _registry_lock:
            ctx = _running.get(key)
            if ctx is None:
                _stopped.add(key)  # its body has not registered yet: it stops as it starts
                return
        ctx.cancel()


class PackedStep:
    """What travels to a worker for one step (packed once per run): the fields a body's call
    reads (:func:`~notebook_pipelines.engine.executors.base.call_body`), a typed step's
    handler, and the notebook variables a code-text body names."""

    __slots__ = ("body", "fqn", "handler", "id", "namespace", "outputs", "spec", "takes_ctx", "type")

    def __init__(self, node: Any, handler: Any, namespace: dict | None):
        self.fqn, self.id, self.body, self.type = node.fqn, node.id, node.body, node.type
        self.takes_ctx, self.outputs, self.spec = node.takes_ctx, node.outputs, node.spec
        self.handler, self.namespace = handler, namespace


def run_on_worker(key: str, packed: bytes, ctx: StepContext, spec: Any, capture: bool = True) -> dict:
    """One step body on a Dask worker; never raises: the outcome as a small dict."""
    from distributed import get_worker

    start = time.time()
    try:
        worker = get_worker().address
    except ValueError:  # pragma: no cover - called outside a worker
        worker = "dask"
    buffer = StepLog()  # bounded: its head and tail
    with _registry_lock:
        _running[key] = ctx
        told = key in _stopped
        _stopped.discard(key)
    if told:
        ctx.cancel()
    try:
        with captured(buffer) if capture else nullcontext():
            status, error_type, error, outputs = _run_packed_step(packed, ctx, spec, worker, buffer)
    finally:
        with _registry_lock:
            _running.pop(key, None)
            _stopped.discard(key)
    return {
        "status": status,
        "error_type": error_type,
        "error": error,
        "outputs": outputs,
        "log": buffer.text() or None,
        "start": start,
        "end": time.time(),
        "worker": worker,
    }


def _run_packed_step(packed: bytes, ctx: StepContext, spec: Any, worker: str, buffer: StepLog) -> tuple:
    """(status, error type, message, outputs) of running the packed step here."""
    try:
        step = cloudpickle.loads(packed)
    except Exception as exc:
        return (
            FAILED,
            "Unknown",
            f"the step could not be unpacked on the Dask worker {worker}: {type(exc).__name__}: {exc}; "
            "install notebook-pipelines and the modules the body imports on every worker",
            None,
        )
    # one packing serves every iteration of a looped step (R46): what the body's messages name
    # is the iteration running here (``…steps.b_0``, the context's), not the looped step
    step.fqn, step.id = getattr(ctx, "fqn", step.fqn), getattr(ctx, "id", step.id)
    try:
        if step.handler is not None:
            result = step.handler(ctx, step.spec if spec is None else spec)
        else:
            namespace = dict(step.namespace) if step.namespace is not None else None
            result = call_body(step, ctx, namespace)
        refuse_unrun(result)
        outputs = dict(ctx.outputs)
        if isinstance(result, dict):
            outputs.update(result)
        elif result is not None:
            print(
                f"RuntimeWarning: {step.fqn}: the body returned a {type(result).__name__}, which is "
                "ignored; return a dict (or set ctx.outputs[...]) to publish output variables"
            )
        outputs = check_outputs(step.fqn, outputs)
        unsent = _unsendable(outputs)
        if unsent:
            return FAILED, "Unknown", unsent, None
        return SUCCESS, None, None, outputs
    except StepCancelled:
        return ABORTED, None, "the step was told to stop", None
    except BaseException as exc:  # the body's own failure goes into the trace
        status, error_type, text = outcome_of_exception(exc)
        if not isinstance(exc, StepError):
            buffer.append(traceback.format_exc())
        return status, error_type, text, None


def _unsendable(outputs: dict | None) -> str | None:
    """Why these output variables cannot travel back to the kernel, or None when they can."""
    if not outputs:
        return None
    try:
        cloudpickle.dumps(outputs, protocol=5, buffer_callback=lambda _buffer: False)
        return None
    except Exception:
        pass
    for name, value in outputs.items():
        try:
            cloudpickle.dumps(value, protocol=5, buffer_callback=lambda _buffer: False)
        except Exception as exc:
            return (
                f"output variable {name!r} ({type(value).__name__}) cannot be sent back from the Dask "
                f"worker: {type(exc).__name__}: {exc}; publish plain values (numbers, text, lists, "
                "dicts, arrays, frames)"
            )
    return None  # pragma: no cover - the whole failed but no part did
