"""The executor seam: where step bodies run, as the scheduler sees it.

An executor takes :class:`Job` s — one execution of one step body — and reports an
:class:`Outcome` for each through the one public call :meth:`ServedRun.complete`, from any
thread. The scheduler keeps every rule (conditions, failure strategies, retries, timeouts);
an executor only runs bodies and stops them when asked. Threads in the kernel
(:class:`~.threads.ThreadExecutor`), virtual time (:class:`~.virtual.VirtualExecutor`) and a
Dask cluster implement it; so can a user:

>>> class Inline:
...     '''Runs each body on the scheduler's own thread (no parallelism, no timeouts).'''
...     name, clock, runs_handlers = "inline", None, True
...     def open(self, run): self.run = run
...     def submit(self, job):
...         start = self.run.now()
...         try:
...             result = job.call()
...             outcome = Outcome("Success", start, self.run.now(), "inline", outputs=result)
...         except Exception as exc:
...             status, error_type, text = outcome_of_exception(exc)
...             outcome = Outcome(status, start, self.run.now(), "inline", error_type, text)
...         self.run.complete(job, outcome)
...     def cancel(self, job): job.ctx.cancel()
...     def close(self, cancel=False): pass
>>> import notebook_pipelines as nbp
>>> p = nbp.Pipeline("p")
>>> with p.stage("s") as s:
...     _ = s.step("a", run=lambda: {"x": 1})
>>> trace = p.run(executor=Inline())
>>> trace.loc[trace.kind == "step", ["step", "status", "worker", "outputs"]].values.tolist()
[['a', 'Success', 'inline', {'x': 1}]]
"""

from __future__ import annotations

import threading
import types
import warnings
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from ...definition.statuses import FAILED
from ...errors import StepError, excerpt
from ..context import CURRENT_CONTEXT, StepContext, _current

if TYPE_CHECKING:  # pragma: no cover
    from ...definition.plan import PlanNode
    from ..clocks import Timer

__all__ = [
    "Clock",
    "Executor",
    "Job",
    "Outcome",
    "ServedRun",
    "call_body",
    "check_executor",
    "check_outputs",
    "message_of",
    "outcome_of_exception",
]


class Outcome:
    """The result of one execution of a step body.

    ``status`` is ``"Success"``, ``"Failed"`` or ``"Aborted"`` (the body was told to stop);
    ``start``/``end`` are clock seconds from the run's start; ``worker`` names where it ran.
    """

    __slots__ = ("end", "error", "error_type", "log", "outputs", "start", "status", "worker")

    def __init__(
        self,
        status: str,
        start: float,
        end: float,
        worker: str | None = None,
        error_type: str | None = None,
        error: str | None = None,
        outputs: dict[str, Any] | None = None,
        log: str | None = None,
    ):
        self.status, self.start, self.end, self.worker = status, start, end, worker
        self.error_type, self.error, self.outputs, self.log = error_type, error, outputs, log

    def __repr__(self) -> str:
        return f"<Outcome {self.status} {self.start:g}–{self.end:g}s on {self.worker}>"


class Job:
    """One execution of a step body, handed to an executor.

    Attributes:
        node: the plan node of the step (``node.fqn``, ``node.body``, ``node.timeout`` …).
        attempt: 1 for the first execution, 2 for the first retry, …
        submitted: clock time when the scheduler handed it over.
        spec: a typed step's spec, its ``<+…>`` resolved by the scheduler before it started.
        namespace: the globals that a code-text body runs in.
        data: free for the executor; ``(worker name, list of printed text)`` lets the
            scheduler keep what a body printed when it stops waiting for it.
        done: set by the scheduler once it no longer waits for this job (finished, timed out,
            aborted): a report after that is discarded.
        scope, task, timer: the scheduler's (the running container, the waiting generator, the
            timeout); an executor leaves them alone.
    """

    __slots__ = (
        "_ctx",
        "_run",
        "attempt",
        "data",
        "done",
        "namespace",
        "node",
        "scope",
        "spec",
        "submitted",
        "task",
        "timer",
    )
    _ctx: StepContext | None
    _run: Any  # the run (``context(node, attempt)`` makes the body's context)
    data: Any
    done: bool
    namespace: dict[str, Any] | None
    spec: Any
    task: Any  # the scheduler's waiting generator (opaque here)
    timer: Timer | None

    def __init__(
        self, run: Any, node: PlanNode, attempt: int, scope: Any, submitted: float,
        task: Any = None, namespace: dict[str, Any] | None = None,
    ):  # fmt: skip
        self._run, self.node, self.attempt, self.scope, self.submitted = run, node, attempt, scope, submitted
        self.task, self.namespace = task, namespace  # the scheduler's waiting generator; the globals
        self.done, self.data, self._ctx, self.spec, self.timer = False, None, None, None, None

    @property
    def ctx(self) -> StepContext:
        """The body's :class:`~notebook_pipelines.StepContext` (made on first use)."""
        if self._ctx is None:
            self._ctx = self._run.context(self.node, self.attempt)
        return self._ctx

    @property
    def runs_code(self) -> bool:
        """False for a body-less, type-less step: nothing to run, it succeeds at once."""
        return self.node.body is not None or self.node.type is not None

    def call(self) -> dict[str, Any] | None:
        """Run the body here, now; return its output variables (``ctx.outputs`` and a returned
        dict). Any other value a body returns is ignored, with a warning naming the step."""
        ctx = self.ctx
        result = call_body(self.node, ctx, self.namespace, self.spec)
        if result is None and not ctx.outputs:
            return None  # the common case: no outputs
        refuse_unrun(result)
        outputs = dict(ctx.outputs)
        if isinstance(result, dict):
            outputs.update(result)
        elif result is not None:
            _warn_ignored(self._run, self.node.fqn, result)
        return check_outputs(self.node.fqn, outputs)

    def partial(self) -> tuple[str | None, str | None]:
        """(worker, output printed so far) of a job the scheduler stops waiting for, from
        ``data = (worker_name, list_of_text)`` when the executor set it; else ``(None, None)``."""
        if isinstance(self.data, tuple) and len(self.data) == 2:
            worker, buffer = self.data
            try:
                text = (
                    buffer.text()
                    if hasattr(buffer, "text")
                    else "".join(t for t in buffer if isinstance(t, str))
                )
            except Exception:  # an executor's own buffer: what it printed is not worth losing the run
                text = None
            return worker, text or None
        return None, None

    def __repr__(self) -> str:
        return f"<Job {self.node.fqn} attempt={self.attempt}>"


#: what a body returns when it was an async or generator function called through a plain one
#: at most this many "the body returned …, which is ignored" warnings per run (a wide block of
#: bodies returning values would otherwise print one per step); the last one says so
MAX_IGNORED_RETURN_WARNINGS = 5
_IGNORED_RETURNS: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_IGNORED_LOCK = threading.Lock()


def _warn_ignored(run: Any, fqn: str, result: Any) -> None:
    """Warn that ``fqn``'s body returned ``result`` (not a dict), at most
    :data:`MAX_IGNORED_RETURN_WARNINGS` times per run."""
    with _IGNORED_LOCK:
        try:
            count = _IGNORED_RETURNS.get(run, 0) + 1
            _IGNORED_RETURNS[run] = count
        except TypeError:  # a run that cannot be weakly referenced: each step warns
            count = 1
    if count > MAX_IGNORED_RETURN_WARNINGS:
        return
    text = (
        f"{fqn}: the body returned a {_type_name(result)}, which is ignored; "
        "return a dict (or set ctx.outputs[...]) to publish output variables"
    )
    if count == MAX_IGNORED_RETURN_WARNINGS:
        text += f" (the last such warning of this run: {count} shown, the others are not)"
    warnings.warn(text, RuntimeWarning, stacklevel=3)  # where the job was called, as before


_UNRUN = (types.CoroutineType, types.GeneratorType, types.AsyncGeneratorType)


def refuse_unrun(result: Any) -> None:
    """Raise ``TypeError`` if a body returned a coroutine or generator it never ran (an async or
    generator function called through a plain one: the step would succeed without its work)."""
    if hasattr(result, "__await__") or isinstance(result, _UNRUN):
        if hasattr(result, "close"):
            result.close()  # no "never awaited" warning: the error says it
        raise TypeError(
            f"the body returned a {type(result).__name__} without running it (an async or generator "
            "function called through a plain one): run it to its end inside the body, e.g. "
            "asyncio.run(...) or list(...)"
        )


@runtime_checkable
class ServedRun(Protocol):
    """What an executor sees of the run it serves.

    Attributes:
        plan: the compiled plan being run (an executor that must check every step before
            anything starts — that bodies pickle, say — reads it in ``open``).
        namespace: the globals code-text bodies run in (None: a fresh dict per body).
    """

    @property
    def plan(self) -> Any: ...

    @property
    def namespace(self) -> dict[str, Any] | None: ...

    def now(self) -> float:
        """Clock seconds since the run started."""
        ...

    def complete(self, job: Job, outcome: Outcome) -> None:
        """Report a finished body; safe from any thread. A late report (the job timed out or
        was aborted meanwhile) is discarded."""
        ...

    def call_at(self, when: float, fn: Callable[[Any], None], arg: Any) -> Timer:
        """Have the run call ``fn(arg)`` at clock time ``when`` (from the run's own thread only)."""
        ...


@runtime_checkable
class Clock(Protocol):
    """What time it is for a run, and how the run waits for the next event."""

    @property
    def name(self) -> str: ...

    @property
    def epoch_ns(self) -> int:
        """The run's start, in nanoseconds since the Unix epoch (UTC)."""
        ...

    def now(self) -> float: ...

    def wait(self, inbox: Any, deadline: float | None) -> Any:
        """The next item of ``inbox``, or None once ``deadline`` (clock seconds) has passed."""
        ...


@runtime_checkable
class Executor(Protocol):
    """Where step bodies run.

    Attributes:
        name: shown in reprs and errors.
        clock: a :class:`Clock` the executor brings (virtual time), or None for the wall clock.
        runs_handlers: True when it runs typed steps (``ShellScript`` …) through their
            registered handlers, so the scheduler resolves their specs before they start.

    Optionally ``flush()``: the loop calls it whenever it has nothing more to do before it
    waits, so an executor may keep what ``submit`` gave it and hand it over in one batch
    (``ThreadExecutor`` does: a parallel block's jobs wake their workers together). And
    ``starting()``: True while bodies handed over have not started; the loop then leaves its
    idle work (the trace's early columns) for later, so as not to hold back their starts.
    """

    @property
    def name(self) -> str: ...

    @property
    def clock(self) -> Clock | None: ...

    @property
    def runs_handlers(self) -> bool: ...

    def open(self, run: ServedRun) -> None:
        """A run starts; jobs follow."""
        ...

    def submit(self, job: Job) -> None:
        """Start ``job`` now (or as soon as a worker is free); report through ``run.complete``."""
        ...

    def cancel(self, job: Job) -> None:
        """Tell ``job``'s body to stop (timeout, abort, interrupt). Must not wait for it."""
        ...

    def close(self, cancel: bool = False) -> None:
        """The run ends. Must not wait for bodies that ignore being told to stop."""
        ...


def check_executor(executor: Any) -> Executor:
    """``executor`` if it has what :class:`Executor` promises, else a ``TypeError`` naming what
    it lacks (before anything runs).

    >>> check_executor(object())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    TypeError: object is not an executor: it lacks name, clock, runs_handlers, open, submit, ...
    """
    lacking = [name for name in ("name", "clock", "runs_handlers") if not hasattr(executor, name)]
    lacking += [
        name for name in ("open", "submit", "cancel", "close") if not callable(getattr(executor, name, None))
    ]
    if lacking:
        raise TypeError(
            f"{type(executor).__name__} is not an executor: it lacks {', '.join(lacking)} "
            "(see notebook_pipelines.engine.executors.base.Executor)"
        )
    return cast(Executor, executor)  # checked just above, member by member


def call_body(
    node: PlanNode, ctx: StepContext, namespace: dict[str, Any] | None = None, spec: Any = None
) -> Any:
    """Run a step body: a callable (with ``ctx`` when it takes it, inputs as keywords) or code text.

    A body-less step with a ``type`` runs the handler registered for that type
    (:mod:`notebook_pipelines.engine.steptypes`) with ``spec``: its spec as the scheduler
    resolved it before the step started (``None``: ``node.spec``, which then holds no ``<+…>``).
    """
    body = node.body
    if body is None:
        if node.type is not None:
            from ..steptypes import call_handler

            return call_handler(node, ctx, spec)
        return None
    if isinstance(body, str):
        scope = namespace if namespace is not None else {}
        # parallel code bodies share one namespace: ``ctx`` there is a proxy to this thread's context
        _current.ctx = ctx
        scope["ctx"] = CURRENT_CONTEXT
        try:
            exec(compile(body, f"<step {node.fqn}>", "exec"), scope)  # the user's own step code
        finally:
            _current.ctx = None
        missing = [name for name in node.outputs or () if name not in scope]
        if missing:
            raise StepError(
                f"{node.fqn}: the step's code did not assign its output(s) {', '.join(missing)}; "
                "assign them in the body or drop them from the step's outputs"
            )
        return {name: scope[name] for name in node.outputs or ()}
    if node.takes_ctx:
        return body(ctx, **ctx.inputs)
    return body(**ctx.inputs)


def check_outputs(fqn: str, outputs: dict[str, Any] | None) -> dict[str, Any] | None:
    """The output variables a step publishes, their names checked (``None`` for none).

    A name is an identifier (a letter or ``_``, then letters, digits, ``_`` or ``$``) of at most
    ``MAX_IDENTIFIER`` characters, as expressions read it
    (``<+execution.steps.a.output.outputVariables.NAME>``) and trace files write it.

    >>> check_outputs("pipeline.stages.s.spec.execution.steps.a", {"ok": 1})
    {'ok': 1}
    >>> check_outputs("steps.a", {1: "x"})
    Traceback (most recent call last):
    ...
    notebook_pipelines.errors.StepError: steps.a: the output name 1 (an int) is not an identifier; ...
    """
    if not outputs:
        return None
    from ...definition.limits import MAX_IDENTIFIER, short
    from ...definition.validation import IDENTIFIER

    for name in outputs:
        if not isinstance(name, str) or not IDENTIFIER.match(name):
            kind = f" (a{'n' if type(name).__name__[0] in 'aeiou' else ''} {type(name).__name__})"
            raise StepError(
                f"{fqn}: the output name {short(name)}{'' if isinstance(name, str) else kind} is not an "
                "identifier; name output variables like Python names, e.g. 'version'"
            )
        if len(name) > MAX_IDENTIFIER:
            raise StepError(
                f"{fqn}: the output name {short(name)} is {len(name)} characters; the limit is "
                f"{MAX_IDENTIFIER}"
            )
    return outputs


#: The most characters of a body's error message the trace keeps: the first and last halves,
#: the middle counted (the whole message with its traceback is in the step's bounded log).
ERROR_LIMIT = 10_000


def message_of(exc: BaseException, limit: int = ERROR_LIMIT) -> str:
    """``str(exc)``, cut to about ``limit`` characters; never raises, whatever ``exc`` does.

    An exception whose ``__str__`` raises (or returns something else than a string) gives a
    placeholder naming its type:

    >>> class Broken(Exception):
    ...     def __str__(self): raise RuntimeError("no")
    >>> message_of(Broken())
    '<the Broken could not be shown: its __str__ raised RuntimeError>'
    >>> text = message_of(ValueError("x" * 1_000_000), limit=100)
    >>> len(text), text[48:98]
    (146, 'xx…[999,900 characters of this message dropped]…xx')
    """
    try:
        text = str(exc)
        if type(text) is not str:  # a str subclass: only its characters
            text = str.__str__(text)
    except Exception as err:  # the exception's own code is the user's: it may fail in any way
        return f"<the {_type_name(exc)} could not be shown: its __str__ raised {_type_name(err)}>"
    if len(text) <= limit:
        return text
    head = limit // 2
    tail = limit - head
    return f"{text[:head]}…[{len(text) - head - tail:,} characters of this message dropped]…{text[-tail:]}"


def outcome_of_exception(exc: BaseException) -> tuple[str, str, str]:
    """(status, Harness error type, message) for an exception raised by a body (R16).

    Never raises: the message is :func:`message_of` (bounded, a placeholder when the
    exception cannot be shown), and a ``StepError`` whose ``error_type`` is not a text is
    ``Unknown``.

    >>> class Odd(StepError):
    ...     def __str__(self): raise ValueError
    >>> outcome_of_exception(Odd("x", "Timeout"))
    ('Failed', 'Timeout', '<the Odd could not be shown: its __str__ raised ValueError>')
    """
    if isinstance(exc, StepError):
        try:
            error_type = exc.error_type
        except Exception:
            error_type = None
        if type(error_type) is not str or not error_type:
            error_type = "Unknown"
        return FAILED, error_type[:ERROR_TYPE_LIMIT], message_of(exc) or _type_name(exc)
    name = _type_name(exc)
    if isinstance(exc, TimeoutError):
        return FAILED, "Timeout", f"{name}: {message_of(exc)}"
    if isinstance(exc, ConnectionError):
        return FAILED, "Connectivity", f"{name}: {message_of(exc)}"
    if isinstance(exc, PermissionError):
        return FAILED, "Authorization", f"{name}: {message_of(exc)}"
    return FAILED, "Unknown", f"{name}: {message_of(exc)}"


#: Harness error types are short words; a longer one chosen by a body is cut to this.
ERROR_TYPE_LIMIT = 64


def _type_name(value: Any) -> str:
    """The name of ``value``'s type, bounded (a class may be made with any name)."""
    return excerpt(type(value).__name__, 100)
