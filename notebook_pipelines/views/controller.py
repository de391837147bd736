"""The run controller: ``run()`` with progress, and ``start()``: a run in the background with a handle.

Not a view itself (it was ``views/runs.py``): it starts the engine's run and attaches the views
of :mod:`.progress` and :mod:`.live`, which is why it lives in the views layer.

These are the front-end verbs of a real run (the facade wires ``Pipeline.run``, ``Pipeline.start``,
``nbp.run`` and ``nbp.start`` here); the engine's :func:`~notebook_pipelines.engine.running.run`
knows nothing of progress or widgets. Each attaches a :class:`~.progress.RunState` listener and
a view of it:

- in a Jupyter kernel, the live widget (:mod:`.live`, imported only then);
- elsewhere (plain Python, the CLI, CI), a one-line text progress on stderr: redrawn in place
  on a terminal; off a terminal (a log, a pipe) a line every 10 s while the run goes and one
  when it ends, so a short run adds one line. No widget code runs there;
- ``progress=False`` shows nothing anywhere.

:func:`start` runs the scheduler in a background thread and returns a :class:`RunHandle` at
once: ``cancel()``, ``wait()``, ``trace``, ``status``, ``done``, ``intervene()``; its rich
display is the live view, whose Cancel button calls ``cancel()``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..definition.plan import Plan
from .progress import RunState, TextProgress, in_kernel

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.running import Prepared

__all__ = ["RunHandle", "run", "start"]


def _prepare(pipeline: Any, progress: Any) -> Prepared:
    """What :func:`run` and :func:`start` check before anything is shown or started: the
    ``progress`` option, then the pre-run checks of the engine, once (``running.prepare``: the
    plan validated, typed steps runnable here, not nested); the engine's run takes the result
    without checking again."""
    from ..engine.running import prepare

    _check_progress(progress)
    return prepare(pipeline)


def _check_progress(progress: Any) -> None:
    if progress not in (None, True, False):
        raise ValueError(
            f"progress={progress!r}: use True, False or None (the default: where someone watches)"
        )


def run(
    pipeline: Any,
    *,
    progress: bool | None = None,
    executor: Any = None,
    max_workers: int | None = None,
    run_id: str | None = None,
    check: bool = False,
    report: bool = True,
    on_intervention: Callable | None = None,
    namespace: dict | None = None,
    listeners: Iterable[Any] = (),
    history: Any = None,
):
    """Run a pipeline in the kernel and return its trace, showing progress while it runs.

    Args:
        pipeline: a Pipeline (validated first) or its Plan.
        progress: ``None`` or ``True`` (default: show it): the live widget in a notebook, the
            one-line text progress on stderr anywhere else; ``False``: nothing.
        executor: where bodies run (default: the warm pool of threads in the kernel;
            ``nbp.DaskExecutor(…)`` for a Dask cluster).
        max_workers: at most this many bodies at a time (default: every step of a parallel
            block starts at once).
        run_id: fix the run id (default: random).
        check: raise ``RunFailed`` (carrying the trace) unless the run ends ``Success``.
        report: print a short summary to stderr when the run does not end ``Success``.
        on_intervention: called with each manual intervention that waits for an answer.
        namespace: the globals that code-text bodies (the magics) run in.
        listeners: more engine listeners.
        history: measured runs of this pipeline (``nbp.read_history``): the view and the text
            progress show the expected end, p50 and p95, updated as steps finish
            (:mod:`~notebook_pipelines.analysis.eta`).

    The options are those of :func:`notebook_pipelines.engine.running.run`.

    In a notebook the view shows the run as it goes (picture, progress bar, counts, elapsed
    time, each step's output) and its final state after; the kernel's Interrupt (■) stops the
    run (``RunInterrupted`` with the partial trace). The view's buttons (Cancel, a manual
    intervention's choices) answer while ``run()`` keeps the kernel busy: their clicks are
    handled on a kernel subshell (ipykernel ≥ 7.4; elsewhere only in a run made with
    :func:`start`).
    """
    from ..engine.running import run as engine_run

    prepared = _prepare(pipeline, progress)  # before a view appears
    plan = prepared.plan
    listeners = list(listeners)
    view = None
    if _wants_view(progress):  # progress=False: nothing is attached, the run is the engine's alone
        state = RunState(plan)
        if history is not None:
            state.eta = _eta(plan, history)
        view = _attach_view(state, progress, handle=None)
        listeners.insert(0, state)
    options = dict(executor=executor, max_workers=max_workers, run_id=run_id, check=check, report=report,
                   on_intervention=on_intervention, namespace=namespace)  # fmt: skip
    try:
        return engine_run(prepared, listeners=listeners, **options)  # the engine remembers its plan
    except BaseException as exc:
        for listener in listeners:  # a run that never ended (no trace): views' threads end too
            if isinstance(listener, RunState):
                listener.abandon(_first_line(exc))
        raise
    finally:
        if isinstance(view, TextProgress):
            view.close()  # a run that never started (a bad option) has no end event


def _eta(plan: Plan, history: Any) -> Any:
    """The expected end of a run of ``plan`` from its measured ``history`` (what the views show)."""
    from ..analysis.eta import Eta

    return Eta(plan, history)


def _first_line(exc: BaseException) -> str:
    """What a view says of a run that never started: the error's first line (a definition
    error's count of problems; the problems themselves are in the raised error)."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__).rstrip(":")


def _wants_view(progress: bool | None) -> bool:
    return progress is not False


def _attach_view(state: RunState, progress: bool | None, handle: RunHandle | None) -> Any:
    """Attach the view ``progress`` asks for; display it in a kernel. Returns the view or None."""
    if not _wants_view(progress):
        return None
    if in_kernel():
        from IPython.display import display

        if handle is not None:
            view = handle.view()
        else:
            from .live import LiveView

            view = LiveView(state)
        display(view)
        return view
    return TextProgress(state)


def start(
    pipeline: Any,
    *,
    progress: bool | None = None,
    executor: Any = None,
    max_workers: int | None = None,
    run_id: str | None = None,
    check: bool = False,
    report: bool = True,
    on_intervention: Callable | None = None,
    namespace: dict | None = None,
    listeners: Iterable[Any] = (),
    history: Any = None,
) -> RunHandle:
    """Start a run in a background thread and return its :class:`RunHandle` at once.

    Same arguments as :func:`run`. The pipeline is validated (and typed steps checked) before
    this returns. In a notebook, the handle as the last expression of a cell shows the live
    view (with ``progress=None`` nothing else is shown; ``progress=True`` shows it at once).
    Outside a notebook ``progress=True`` prints the text line. The options ``check`` and
    ``report`` apply when the run ends: an error is raised by :meth:`RunHandle.wait`.
    """
    prepared = _prepare(pipeline, progress)  # in the caller's thread
    plan = prepared.plan
    options = dict(executor=executor, max_workers=max_workers, run_id=run_id, check=check, report=report,
                   on_intervention=on_intervention, namespace=namespace)  # fmt: skip
    # on the handle's own thread the run is nested in no run (a step body that starts a run does
    # not wait for it): the chain the checks found here is not its
    handle = RunHandle(prepared._replace(chain=()), listeners=listeners, options=options)
    if history is not None:
        handle.state.eta = _eta(plan, history)
    if progress is True:
        view = _attach_view(handle.state, True, handle)
        if isinstance(view, TextProgress):
            handle._closers.append(view.close)
    handle._thread.start()
    return handle


class RunHandle:
    """A run going on in a background thread (:func:`start`).

    - ``cancel(reason)`` — abort the run (R21, E15), safe from any thread, returns at once;
    - ``wait(timeout=None)`` — the trace once the run has ended (raises what the run raised);
    - ``trace`` — the rows so far as a trace DataFrame (the final trace once done);
    - ``status`` — ``Queued``, ``Running``, then the pipeline's status; ``done``;
    - ``intervene(step, choice)`` — answer a manual intervention (R20, D12) by FQN or id;
    - ``requests`` — the interventions waiting now;
    - rich display / ``view()`` — the live widget (its Cancel button calls ``cancel()``).
    """

    def __init__(self, plan: Any, listeners: Iterable[Any] = (), options: dict | None = None):
        self._run_this = plan  # a Plan, or a Prepared one (start(): its checks made)
        self.plan: Plan = getattr(plan, "plan", plan)
        self.state = RunState(self.plan)
        self._listeners = [self.state, *listeners]
        self._options = dict(options or {})
        self._finished = threading.Event()
        self._lock = threading.Lock()
        self._cancel: str | None = None
        self._sent = False  # the cancel has reached the scheduler
        self._result: Any = None
        self._error: BaseException | None = None
        self._view: Any = None
        self._closers: list[Any] = []  # called when the run's thread ends
        self.state.observers.append(self._changed)
        name = f"nbp-run-{self.plan.pipeline.id}"[:60]
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    # -- the background thread ----------------------------------------------------------------
    def _main(self) -> None:
        from ..engine.running import run as engine_run

        try:
            self._result = engine_run(self._run_this, listeners=self._listeners, **self._options)
        except BaseException as exc:  # handed to wait()
            self._error = exc
            self._result = getattr(exc, "trace", None)
            self.state.abandon(_first_line(exc))
        finally:
            for close in self._closers:
                close()
            self._finished.set()

    def _changed(self, final: bool) -> None:
        with self._lock:
            scheduler, reason = self.state.scheduler, self._cancel
            send = scheduler is not None and reason is not None and not self._sent and not final
            self._sent = self._sent or send
        if send:
            scheduler.cancel(reason)  # a cancel that came before the run started

    # -- the public side ----------------------------------------------------------------------
    def cancel(self, reason: str = "cancelled by the user") -> None:
        """Abort the run: running steps end ``Aborted``, nothing new starts, never-started
        nodes are ``NotStarted`` (R21, E15, D6). Safe from any thread; returns at once (use
        :meth:`wait` for the trace). Cancelling an ended run does nothing."""
        with self._lock:
            self._cancel = self._cancel or reason
            scheduler = self.state.scheduler
            send = scheduler is not None and not self._sent
            self._sent = self._sent or send
        if send:
            scheduler.cancel(reason)

    @property
    def cancelled(self) -> str | None:
        """The reason given to :meth:`cancel` (the view's button gives "cancelled by the user"),
        None while nobody has cancelled the run."""
        return self._cancel

    def wait(self, timeout: float | None = None) -> Any:
        """Wait for the end of the run and return its trace.

        Waits in short slices, so a Ctrl-C (kernel interrupt) ends the wait — the run goes on;
        :meth:`cancel` stops it.

        Raises:
            TimeoutError: the run has not ended after ``timeout`` seconds.
            RunFailed, DefinitionError, …: what the run raised (e.g. with ``check=True``).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._finished.wait(
            0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic()))
        ):
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"the run of {self.plan.pipeline.id!r} has not ended after {timeout:g}s")
        if self._error is not None:
            raise self._error
        return self._result

    @property
    def done(self) -> bool:
        """True once the run has ended (its trace is ready)."""
        return self._finished.is_set()

    @property
    def status(self) -> str:
        """``Queued`` (not started yet), ``Running``, then the pipeline's status."""
        return self.state.status

    @property
    def run_id(self) -> str | None:
        """The run's id (None until the run has started)."""
        scheduler = self.state.scheduler
        return scheduler.run_id if scheduler is not None else self._options.get("run_id")

    @property
    def trace(self) -> Any:
        """The trace so far: rows recorded, ``Running`` rows for what runs now; the final trace
        once the run has ended."""
        return self.state.snapshot()

    @property
    def requests(self) -> list:
        """The manual interventions waiting for an answer now (``InterventionRequest`` s)."""
        return self.state.requests()

    def intervene(self, step: str, choice: str) -> None:
        """Answer the manual intervention of ``step`` (its FQN or id) with ``choice`` (R20, D12).

        Raises:
            ValueError: no intervention of that step waits, the name matches several, or the
                choice is not one of the request's choices (the message lists them).
        """
        waiting = self.requests
        found = [r for r in waiting if step in (r.fqn, r.node.id)]
        if not found:
            now = ", ".join(f"{r.node.id} ({r.fqn})" for r in waiting) or "none"
            raise ValueError(f"no manual intervention of {step!r} waits; waiting now: {now}")
        if len(found) > 1:
            raise ValueError(
                f"{step!r} names several waiting steps: give the FQN, one of {[r.fqn for r in found]}"
            )
        found[0].answer(choice)

    def view(self) -> Any:
        """The live widget of this run (made once; it catches up with what has happened)."""
        if self._view is None:
            from .live import LiveView

            self._view = LiveView(self.state, handle=self)
        return self._view

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> dict:
        if not in_kernel():
            return {"text/plain": repr(self)}
        return self.view()._repr_mimebundle_(include=include, exclude=exclude, **kwargs)

    def __repr__(self) -> str:
        state = self.state
        return (
            f"<RunHandle {self.plan.pipeline.id!r} {state.status}: "
            f"{state.done_steps}/{state.planned} steps done>"
        )
