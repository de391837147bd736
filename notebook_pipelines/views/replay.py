"""The timeline scrubber: a run's picture as it was at any moment (``nbp.replay``).

A slider (and a play button) moves over the run's time, from 0 to the end of its last node;
the picture is redrawn as it was then — nodes not reached yet plain (waiting), nodes under way
``Running``, nodes that had ended in their status — with the clock shown (seconds from the
start and the time of day). It works for a real or a simulated trace: the moments come from
the trace's ``start_s``/``end_s`` alone.

:func:`states_at` is the pure part (what each node was doing at ``t``); the widget draws it.

>>> import notebook_pipelines as nbp
>>> p = nbp.Pipeline("p")
>>> with p.stage("s") as s:
...     _ = s.step("a", duration="10s")
...     _ = s.step("b", duration="5s")
>>> trace = p.simulate()
>>> [states_at(trace, t)[f"pipeline.stages.s.spec.execution.steps.{x}"] for t in (5, 12, 15) for x in "ab"]
['Running', 'waiting', 'Success', 'Running', 'Success', 'Success']
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from ..definition.durations import format_duration
from ..definition.plan import Plan, compile_plan
from ..errors import PipelineError
from .outcomes import outcomes

__all__ = ["WAITING", "Replay", "moment", "replay", "states_at"]

#: the state of a node not reached yet at a moment
WAITING = "waiting"
#: frames of the play button over the whole run
FRAMES = 60
#: pictures kept for moments already shown (each is one SVG; dragging back and forth reuses them)
CACHED_PICTURES = 2 * FRAMES


def moment(trace: Any, t: float) -> Any:
    """The trace as it stood at ``t`` seconds into the run: rows started by then (nodes not
    reached have no row); a row under way at ``t`` is ``Running`` and ends at ``t``. Rows with
    no times (``NotStarted``) appear only at the very end of the run."""
    start, end = trace["start_s"], trace["end_s"]
    last = float(end.max()) if end.notna().any() else 0.0
    started = start <= t
    if t >= last:
        started = started | start.isna()
    view = trace[started].copy()
    running = (view["end_s"] > t).to_numpy()
    if running.any():
        view.loc[running, "status"] = "Running"
        view.loc[running, "end_s"] = t
        view.loc[running, "duration_s"] = t - view.loc[running, "start_s"]
    return view


def states_at(trace: Any, t: float) -> dict[str, str]:
    """``fqn → state`` at ``t`` seconds into the run: ``waiting`` (not reached yet),
    ``Running``, or the status the node had ended in (its latest attempt's, by then)."""
    now = moment(trace, t)
    states = dict.fromkeys(trace["fqn"].astype(str), WAITING)
    last = now.drop_duplicates("fqn", keep="last")
    states.update(zip(last["fqn"].astype(str), last["status"].astype(str)))
    return states


def _plan_for(trace: Any, pipeline: Any) -> Plan:
    if pipeline is not None:
        plan = pipeline if isinstance(pipeline, Plan) else compile_plan(pipeline)
    else:
        from ..engine import registry

        plan = registry.plan_for_trace(trace)
        if plan is None:
            name = trace.attrs.get("pipeline", "?") if hasattr(trace, "attrs") else "?"
            raise PipelineError(
                f"replay needs the pipeline this trace is of ({name!r}): a trace holds no picture, and "
                f"this kernel does not remember its run (a trace read from a file, or of a run it no "
                f"longer keeps: it keeps the last {registry.MAX_RUNS} runs, fewer of large pipelines). "
                "Pass it: nbp.replay(trace, pipeline=p)"
            )
    unknown = sorted(set(trace["fqn"].astype(str)) - set(plan.by_fqn))
    if unknown:
        raise PipelineError(
            f"this trace is not of pipeline {plan.pipeline.id!r}: it has {unknown[0]!r}, which the "
            f"pipeline has not; pass the pipeline that made the trace"
        )
    return plan


class Replay(widgets.VBox):
    """The scrubber (made by :func:`replay`), an ipywidgets ``VBox``.

    ``slider`` (``FloatSlider``, seconds from the start), ``play`` (``Play``, frames over the
    run), ``clock`` and ``picture`` (``HTML``); ``states`` holds the node states shown
    (``fqn → state``), ``moment()`` the trace as it stood then, ``show(t)`` moves to a moment.
    Pictures are cached by what they draw (each node's status and time), so the picture's times
    always match the clock.
    """

    def __init__(self, trace: Any, plan: Plan, **kwargs: Any):
        self.trace, self.plan = trace, plan
        self.end = float(trace["end_s"].max()) if trace["end_s"].notna().any() else 0.0
        self.epoch = trace["start"].min() if trace["start"].notna().any() else None
        step = self.end / FRAMES if self.end > 0 else 1.0
        self.slider = widgets.FloatSlider(
            value=0.0, min=0.0, max=max(self.end, 0.0), step=step, description="time",
            readout=False, continuous_update=True, layout=widgets.Layout(width="60%"),
        )  # fmt: skip
        self.play = widgets.Play(value=0, min=0, max=FRAMES, step=1, interval=250, description="play")
        self.clock = widgets.HTML()
        self.picture = widgets.HTML()
        self.states: dict[str, str] = {}
        self._cache: dict[tuple, str] = {}
        self.play.observe(self._on_play, names="value")
        self.slider.observe(lambda change: self.show(change["new"]), names="value")
        super().__init__([widgets.HBox([self.play, self.slider, self.clock]), self.picture], **kwargs)
        self._label = f"<replay of {plan.pipeline.id!r}>"
        self.show(0.0)

    def _on_play(self, change: dict) -> None:
        self.slider.value = min(self.end, self.end * change["new"] / FRAMES)

    def show(self, t: float) -> None:
        """Redraw the picture as it was ``t`` seconds into the run."""
        t = min(max(float(t), 0.0), self.end)
        if self.slider.value != t:
            self.slider.value = t  # observed: comes back here
            return
        self.states = states_at(self.trace, t)
        now = moment(self.trace, t)
        # the picture shows each node's status *and time* (a running step's grows with t): key the
        # cache by what is drawn, so a moment never shows another moment's times
        key = tuple((fqn, o.summary()) for fqn, o in outcomes(now).items())
        svg = self._cache.get(key)
        if svg is None:
            from .live import picture_html

            if len(self._cache) >= CACHED_PICTURES:
                self._cache.clear()
            svg = self._cache[key] = picture_html(self.plan, now)
        self.picture.value = svg
        counts: dict[str, int] = {}
        for fqn, state in self.states.items():
            if self.plan.by_fqn[fqn].kind == "step":
                counts[state] = counts.get(state, 0) + 1
        when = ""
        if self.epoch is not None:
            when = f" · {(self.epoch + _seconds(t)).strftime('%H:%M:%S')} UTC"
        steps = ", ".join(f"{state} {n}" for state, n in counts.items())
        now, end = format_duration(round(t, 3)), format_duration(round(self.end, 3))
        self.clock.value = f"<b>{now}</b> of {end}{when}<br><small>steps: {html.escape(steps)}</small>"

    def moment(self) -> Any:
        """The trace as it stood at the slider's time (see :func:`moment`): give it to
        ``outline(p, …)`` or ``render(p, …)``."""
        return moment(self.trace, self.slider.value)

    def __repr__(self) -> str:  # the text/plain of the display: the same in every run
        return self._label


def _seconds(t: float) -> Any:
    import pandas as pd

    return pd.Timedelta(seconds=t)


def replay(trace: Any, pipeline: Any = None) -> Replay:
    """A timeline scrubber over ``trace``: a slider and a play button over the run's time that
    redraw the pipeline's picture as it was at that moment (waiting, running, done), with the
    clock. For a real or a simulated run.

    Args:
        trace: the trace of a run (``p.run()``, ``p.simulate()``, ``nbp.last_trace()``).
        pipeline: the Pipeline (or Plan) the trace is of. Needed for a simulation; a real run
            of this kernel is found by its run id.

    Raises:
        PipelineError: no pipeline given and none remembered, or the trace is not of it.
    """
    return Replay(trace, _plan_for(trace, pipeline))
