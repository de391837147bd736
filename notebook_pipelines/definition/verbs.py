"""The verbs of a pipeline and its rich display, wired in from above.

``Pipeline.validate()``, ``.plan()``, ``.run()``, ``.start()``, ``.simulate()``, ``.to_yaml()``
and the picture a cell shows (``.render()``, ``_repr_mimebundle_``) live in higher layers
(engine, formats, views) or in modules of this layer that import the model (plan). The package
registers them in :data:`VERBS` (``notebook_pipelines/__init__.py``), so the model imports none of
them (no import cycle); a verb's module is imported on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["VERBS", "Drawable", "PipelineVerbs", "verb"]

#: Where the verbs of ``Pipeline`` (and the rich display) live: ``name -> "module:attribute"``.
#: Filled by the package (``notebook_pipelines/__init__.py``), so that this layer imports
#: nothing above it; a verb's module is imported on first use.
VERBS: dict[str, str] = {}


def verb(name: str) -> Callable[..., Any]:
    """The function registered for verb ``name`` (imported on first use)."""
    import importlib

    try:
        module, attr = VERBS[name].split(":")
    except KeyError:
        raise RuntimeError(f"no {name!r} verb is registered; import notebook_pipelines first") from None
    fn: Callable[..., Any] = getattr(importlib.import_module(module), attr)
    return fn


class Drawable:
    """Rich display: the last expression of a cell shows the picture of the plan."""

    def _pipeline_for_display(self) -> Any:  # pragma: no cover - overridden: a Pipeline
        raise NotImplementedError

    def render(
        self,
        trace: Any = None,
        *,
        direction: str = "auto",
        legend: bool | None = None,
        title: str | None = None,
        color_by: str = "status",
        iterations: str = "badge",
        size: str | None = None,
        full: bool = False,
    ) -> Any:
        """The picture of this node (a ``graphviz.Digraph``), coloured by a run's ``trace``.

        The picture displays itself in a notebook; from a script, ``.save("p.svg")`` (or
        ``.png``, ``.pdf``, ``.dot``) writes it and ``.source`` is its DOT text.

        Args:
            trace: the trace DataFrame of a run of this pipeline, to colour nodes by status.
            direction: ``"LR"`` (left to right), ``"TB"``, ``"RL"``, ``"BT"``, or ``"auto"``
                (left to right, or top to bottom when that reads larger in a notebook).
            legend: draw the status legend; ``None``: when a trace is given.
            title: the picture's title; ``None``: the pipeline's name (and status with a
                trace); ``""``: none.
            color_by: what a step's fill shows: ``"status"``, ``"duration"`` or ``"slack"``
                (the last two need a trace).
            iterations: ``"badge"`` (a looped node drawn once) or ``"expand"`` (each
                iteration drawn, with a trace).
            size: Graphviz's ``size`` in inches (``"8,5"``); ``None`` keeps the natural size.
            full: draw every node even of a very large pipeline (by default, above a few
                hundred nodes the picture is a summary with long lists shortened).

        See :func:`notebook_pipelines.render`.
        """
        return verb("render")(
            self._pipeline_for_display(), trace, direction=direction, legend=legend, title=title,
            color_by=color_by, iterations=iterations, size=size, full=full,
        )  # fmt: skip

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = verb("mimebundle")(self._pipeline_for_display())
        return bundle


class PipelineVerbs:
    """The verbs of ``Pipeline`` (each calls the function registered in :data:`VERBS`)."""

    def validate(self) -> None:
        """Check every rule that can be checked before a run (structure, then ``<+…>``
        references); raise one ``DefinitionError`` listing all problems."""
        verb("validate")(self)

    def plan(self) -> Any:
        """The validated, immutable plan that both the renderer and the engine walk (a
        :class:`~notebook_pipelines.definition.plan.Plan`, which imports this module)."""
        return verb("plan")(self)

    def run(
        self,
        *,
        progress: bool | None = None,
        executor: Any = None,
        max_workers: int | None = None,
        run_id: str | None = None,
        check: bool = False,
        report: bool = True,
        on_intervention: Callable[..., Any] | None = None,
        namespace: dict[str, Any] | None = None,
        listeners: Iterable[Any] = (),
        history: Any = None,
    ) -> pd.DataFrame:
        """Run in the kernel (step bodies on threads, wall clock) and return the trace DataFrame.

        In a notebook a live view shows the run as it goes; the kernel's Interrupt stops it
        (``RunInterrupted``, carrying the partial trace).

        Args:
            progress: ``None``/``True``: the live view in a notebook, one line of text on
                stderr elsewhere; ``False``: nothing.
            executor: where bodies run (default: a warm pool of threads in the kernel;
                ``nbp.DaskExecutor(…)`` for a Dask cluster).
            max_workers: at most this many bodies at a time (default: every step of a
                parallel block starts at once).
            run_id: fix the run id (default: random).
            check: raise ``nbp.RunFailed`` (carrying the trace) unless the run ends ``Success``.
            report: print a short summary to stderr when the run does not end ``Success``.
            on_intervention: called with each manual intervention that waits for an answer.
            namespace: the globals that code-text bodies (the magics) run in.
            listeners: engine listeners (``node_started``, ``node_finished``, ``run_finished``…).
            history: measured runs (``nbp.read_history``): the progress shows the expected end,
                p50 and p95.

        Raises:
            RunInterrupted: the kernel's Interrupt (Ctrl-C); ``.trace`` is the partial trace.
            RunFailed: with ``check=True``, a run that did not end ``Success``; and, whatever
                ``check``, a run whose loop an exception escaped (an internal error, or a warning
                made an error by ``-W error``): it was aborted, its node has an ``Errored`` row,
                ``.trace`` is its trace (also ``nbp.last_trace()``), the exception is chained.

        See :func:`notebook_pipelines.run`.
        """
        return verb("run")(
            self, progress=progress, executor=executor, max_workers=max_workers, run_id=run_id,
            check=check, report=report, on_intervention=on_intervention, namespace=namespace,
            listeners=listeners, history=history,
        )  # fmt: skip

    def start(
        self,
        *,
        progress: bool | None = None,
        executor: Any = None,
        max_workers: int | None = None,
        run_id: str | None = None,
        check: bool = False,
        report: bool = True,
        on_intervention: Callable[..., Any] | None = None,
        namespace: dict[str, Any] | None = None,
        listeners: Iterable[Any] = (),
        history: Any = None,
    ) -> Any:  # a views.controller.RunHandle (a layer above)
        """Start a run in the background and return its handle at once (``.cancel()``,
        ``.wait()``, ``.trace``, ``.status``, ``.done``, ``.intervene()``; displays as the
        live view). The options are :meth:`run`'s (``history``: the view shows the expected
        end); ``check`` and ``report`` apply when ``.wait()`` returns.

        See :func:`notebook_pipelines.start`.
        """
        return verb("start")(
            self, progress=progress, executor=executor, max_workers=max_workers, run_id=run_id,
            check=check, report=report, on_intervention=on_intervention, namespace=namespace,
            listeners=listeners, history=history,
        )  # fmt: skip

    def simulate(
        self,
        *,
        durations: Mapping[str, Any] | Callable[..., Any] | None = None,
        default: Any = 1.0,
        failures: Mapping[str, Any] | None = None,
        interventions: Mapping[str, Any] | None = None,
        seed: int | None = 0,
        run_id: str | None = None,
        start: Any = "2026-01-01T00:00:00Z",
        listeners: Iterable[Any] = (),
        strict: bool = True,
        outputs: Mapping[str, Any] | None = None,
        iterations: Mapping[str, Any] | None = None,
        mode: str = "joint",
    ) -> pd.DataFrame:
        """Run in virtual time (declared durations, injected failures) and return the trace:
        instant, deterministic for a ``seed``, with the columns of :meth:`run`'s trace.

        Args:
            durations: seconds per step, by step id, FQN or glob: a number, a Harness
                duration (``"2m"``) or a sampler (``lambda rng: …``); a step's own
                ``duration=`` counts when there is no entry.
            default: the duration of a step with none declared.
            failures: which steps fail, by id/FQN/glob: ``True``, the first ``n`` attempts, a
                list of attempt numbers, a probability, an error type, or a dict of those.
            interventions: scripted answers to manual interventions (``"Retry"``,
                ``("Retry", "5m")``…), by id/FQN/glob.
            seed: seeds the random draws (``None``: a fresh seed, kept in ``trace.attrs``).
            run_id: fix the run id (default ``"sim-<seed>"``).
            start: when the virtual run starts (UTC).
            listeners: as for :meth:`run`.
            strict: a key of ``durations``/``failures``/``interventions`` that matches no
                step is an error (``False``: ignored).
            outputs: output variables steps publish, by id/FQN/glob.
            iterations: how many items a run-time looping list holds, by looped node.
            mode: with ``durations=`` a history (measured runs): ``"joint"`` takes every step's
                duration from one measured run, ``"independent"`` each from its own.

        Raises:
            SimulationError: an option that cannot be used (also when found while simulating).
            RunFailed: an exception escaped the simulation's loop (an internal error, or a
                warning made an error by ``-W error``): aborted, ``.trace`` kept (also
                ``nbp.last_trace()``), the exception chained.

        See :func:`notebook_pipelines.simulate` for every detail.
        """
        return verb("simulate")(
            self, durations=durations, default=default, failures=failures, interventions=interventions,
            seed=seed, run_id=run_id, start=start, listeners=listeners, strict=strict, outputs=outputs,
            iterations=iterations, mode=mode,
        )  # fmt: skip

    def to_yaml(self, path: Any = None) -> str:
        """The Harness v0 pipeline YAML (also written to ``path`` when given).

        ``nbp.load_yaml`` reads it back.
        """
        text: str = verb("to_yaml")(self, path)
        return text


# The verbs are Pipeline's own methods to a user: Python's messages ("Pipeline.run() got an
# unexpected keyword argument …") and help() name them by their __qualname__.
for _name, _function in vars(PipelineVerbs).items():
    if callable(_function):
        _function.__qualname__ = f"Pipeline.{_name}"
