"""The live run view: an ipywidgets box that follows a run as it goes.

It watches a :class:`~.progress.RunState` (an engine listener; the engine never imports
ipywidgets) and shows:

- the pipeline picture re-coloured as nodes start and finish (``Running`` blue, waiting for a
  person purple, then each node's final status), redrawn at most twice a second;
- a progress bar (``IntProgress``: steps done of steps planned), counts by status and the
  elapsed time, updated at most ten times a second, and once more at the end;
- the manual interventions waiting (R20, D12): the allowed choices as buttons and the time
  left; a click answers the request (the run resumes);
- a Cancel button;
- each step's captured output, on demand (pick the step).

The buttons work in a foreground ``p.run()`` too: their messages are handled on a kernel
subshell of this package (:mod:`.kernel_comms`) while the main thread runs the pipeline.
Where the kernel has no subshells, only a run started with ``p.start()`` takes the clicks
(the kernel is free then), and the view says so.

The view never holds the run: engine events only mark an update as wanted, and two drawing
threads (:class:`~.progress.Throttle`: the text parts, the picture) redraw when due, coalescing
what came meanwhile, so a drawing slower than the run skips frames; a picture that takes ``d``
seconds to draw is redrawn at most every ``max(0.5, 4 d)`` seconds. Above ``PICTURE_LIMIT``
steps the picture is not drawn while the run goes (counts and progress only): it is drawn once
when the run has ended, and ``run()`` does not wait for it (:meth:`LiveView.wait` does); above
``PICTURE_MAX`` steps not at all (``p.render(trace)`` draws it when asked). Below
it, the end of the run waits up to ``FINAL_WAIT`` seconds for the final picture. The drawing
threads end with the run. ipywidgets sends updates to the frontend as comm messages, which is
safe from any thread with ipykernel ≥ 6. Headless (no frontend, e.g. in tests) the widgets work
the same: read their traits, ``.click()`` buttons.
"""

from __future__ import annotations

import html
import threading
from collections import Counter
from typing import Any

import ipywidgets as widgets

from ..definition.durations import format_duration
from .kernel_comms import answer_off_main_thread
from .outcomes import STATUS_STYLES, UNKNOWN_STYLE
from .progress import RunState, eta_text
from .rendering import GraphvizMissing, fit_svg, outline, to_svg
from .throttle import Throttle

__all__ = ["LiveView", "status_chips"]

#: seconds between redraws of the text parts and of the picture (Graphviz costs more)
TEXT_EVERY, PICTURE_EVERY = 0.1, 0.5
#: above this many steps (planned, or ended so far: loops) the picture is drawn only when the run ends
PICTURE_LIMIT = 300
#: above this many steps the view draws no picture at all (Graphviz would take minutes and the
#: SVG megabytes): ``p.render(trace)`` draws it when asked
PICTURE_MAX = 5_000
#: seconds the end of a run waits for the view's final update (the picture: below PICTURE_LIMIT)
FINAL_WAIT = 5.0


def status_chips(counts: dict[str, int]) -> str:
    """HTML: one coloured chip per status with its count."""
    chips = []
    for status, n in counts.items():
        fill, border, _ = STATUS_STYLES.get(status, UNKNOWN_STYLE)
        chips.append(
            f'<span style="background:{fill};border:1px solid {border};border-radius:8px;'
            f'padding:0 6px;margin-right:4px">{html.escape(status)} {n}</span>'
        )
    return "".join(chips)


def picture_html(plan: Any, trace: Any) -> str:
    """The plan's picture coloured by ``trace`` as inline SVG, scaled to the output's width (the
    text outline without ``dot``)."""
    try:
        return fit_svg(to_svg(plan, trace))
    except GraphvizMissing:
        return f"<pre>{html.escape(outline(plan, trace))}</pre>"


class LiveView(widgets.VBox):
    """The live view of one run (see the module docstring). Made by ``run()`` in a notebook,
    or by a :class:`~.controller.RunHandle`'s display; it catches up with what has already happened."""

    def __init__(self, state: RunState, handle: Any = None, **kwargs: Any):
        self.state, self.handle = state, handle
        name = state.plan.pipeline.id
        self.header = widgets.HTML()
        self.progress = widgets.IntProgress(value=0, min=0, max=max(1, state.planned), description="steps")
        self.counts = widgets.HTML()
        self.picture = widgets.HTML()
        self.interventions = widgets.VBox()
        self.cancel_button = widgets.Button(description="Cancel", button_style="danger", icon="stop")
        self.cancel_button.on_click(self._on_cancel)
        self.step_picker = widgets.Dropdown(options=[("(pick a finished step)", None)], description="output")
        # in a kernel with subshells the clicks are taken while run() keeps the main thread busy
        self.routed = answer_off_main_thread([self.cancel_button, self.step_picker])
        #: the buttons answer: a run in the background, or clicks routed off the main thread
        self.interactive = handle is not None or self.routed
        self.cancel_button.disabled = not self.interactive
        self.cancel_button.tooltip = (
            "abort the run" if self.interactive else "use the kernel's Interrupt (■) to stop run()"
        )
        self.step_output = widgets.HTML()
        self.step_picker.observe(self._on_pick, names="value")
        self._buttons: dict[int, widgets.Widget] = {}  # step index → its intervention box
        self._tick: threading.Timer | None = None
        self._cancel_pending = False  # a foreground run's Cancel clicked before it started
        self._cancelled = False  # Cancel was clicked: the button stays off
        super().__init__(
            children=[
                self.header,
                widgets.HBox([self.progress, self.counts, self.cancel_button]),
                self.interventions,
                self.picture,
                widgets.HBox([self.step_picker]),
                self.step_output,
            ],
            **kwargs,
        )
        self._name = name
        self._logs: list[tuple[int, int]] = []  # (step index, attempt) of the rows with a log
        self._rows_seen = 0  # state.rows read for logs so far
        self._labels: dict[int, str] | None = None  # the output picker's name of each step
        self.text_updates = Throttle(self._refresh_text, TEXT_EVERY, name="live-text")
        self.picture_updates = Throttle(self._refresh_picture, PICTURE_EVERY, name="live-picture")
        state.observers.append(self.changed)
        state.closers.append(self._refused)
        state.throttles += [self.text_updates, self.picture_updates]
        if state.refused is not None:  # shown after a refusal: say so, draw nothing
            self._refused(state.refused)
            return
        self.text_updates.flush(close=state.done)
        if state.done:
            self.picture_updates.flush(close=True)
        elif self._big():
            self._show_picture_note()
        else:  # the plan's picture, drawn on the drawing thread: the run need not wait for it
            self.picture.value = "<small>drawing the pipeline…</small>"
            self.picture_updates.poke()

    def __repr__(self) -> str:  # the text/plain of the display: the same in every run
        return f"<live view of a run of {self._name!r}>"

    # -- updates ------------------------------------------------------------------------------
    def changed(self, final: bool) -> None:
        """The run state changed (an engine event, on the loop's thread): ask the drawing
        threads for an update (O(1)); at the end, the final update (see the module notes)."""
        if self._cancel_pending:
            self._send_cancel()
        if final:
            self.picture_updates.finish(wait=0)  # both start now; the text is quick
            self.text_updates.finish(FINAL_WAIT)
            self.picture_updates.finish(0 if self._big() else FINAL_WAIT)
        else:
            self.text_updates.poke()
            if not self._big():
                self.picture_updates.poke()

    def wait(self, timeout: float | None = FINAL_WAIT) -> bool:
        """Wait up to ``timeout`` seconds until the view's updates are drawn and its drawing
        threads have ended (the final picture of a pipeline above ``PICTURE_LIMIT`` steps is
        drawn after ``run()`` returns). True when none is left."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        ended = True
        for throttle in (self.text_updates, self.picture_updates):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ended = throttle.wait(left) and ended
        return ended

    def _big(self) -> bool:
        return self._steps() > PICTURE_LIMIT

    def _steps(self) -> int:
        state = self.state  # iterations of looped nodes count as they run
        return max(state.planned, len(state.finished))

    def _show_picture_note(self) -> None:
        steps = self._steps()
        if steps > PICTURE_MAX:
            text = (
                f"{steps} steps: above {PICTURE_MAX} the view draws no picture; draw it with p.render(trace)"
            )
        else:
            text = (
                f"{steps} steps: above {PICTURE_LIMIT} the picture is drawn when the run has ended, "
                "so that drawing never slows the run"
            )
        self.picture.value = f"<small>{html.escape(text)}</small>"

    def _refresh_text(self) -> None:
        state = self.state
        with state.lock:
            done, status, requests = state.done_steps, state.status, state.requests()
            planned = state.planned  # grows or shrinks as looped nodes expand (RunState)
            rows, seen = state.rows, self._rows_seen
            self._logs += [(row.node, row.attempt) for row in rows[seen:] if row.log]
            self._rows_seen = len(rows)
            logs = self._logs
        elapsed = format_duration(state.elapsed() if state.done else round(state.elapsed(), 1))
        self.header.value = (
            f"<b>{html.escape(self._name)}</b> · {html.escape(status)} · {elapsed}"
            f" · {done}/{planned} steps done"
        )
        eta = eta_text(state)
        if eta:
            self.header.value += f" · {html.escape(eta)}"
        self.progress.max = max(1, planned, done)
        self.progress.value = done
        self.progress.bar_style = "" if not state.done else "success" if status == "Success" else "danger"
        self.counts.value = status_chips(state.counts())
        cancelled = self._cancelled or (self.handle is not None and self.handle.cancelled is not None)
        self.cancel_button.disabled = not self.interactive or state.done or cancelled
        if cancelled:  # by the button or by handle.cancel(): off, and says so once the run has ended
            self.cancel_button.description = "Cancelled" if state.done else "Cancelling"
        self._show_requests(requests)
        self._offer_logs(logs)

    def _refresh_picture(self) -> None:
        if (not self.state.done and self._big()) or self._steps() > PICTURE_MAX:
            self._show_picture_note()  # the run outgrew PICTURE_LIMIT (loops): the end draws it
            return
        self.picture.value = picture_html(self.state.plan, self.state.snapshot())

    def _refused(self, reason: str) -> None:
        """The run never started (:meth:`RunState.abandon`): the header says why, nothing is left
        to cancel, no picture is coming."""
        self.header.value = f"<b>{html.escape(self._name)}</b> · not started: {html.escape(reason)}"
        self.progress.bar_style = "danger"
        self.cancel_button.disabled = True
        self.cancel_button.tooltip = "the run did not start"
        self.picture.value = ""
        self.interventions.children = ()

    # -- manual intervention ------------------------------------------------------------------
    def _show_requests(self, requests: list) -> None:
        live = {r.node.index for r in requests}
        boxes = [box for index, box in self._buttons.items() if index in live]
        for request in requests:
            index = request.node.index
            box = self._buttons.get(index)
            if box is None or box.request is not request:
                box = self._request_box(request)
                self._buttons[index] = box
                boxes = [b for b in boxes if b.request.node.index != index] + [box]
            box.clock.value = self._time_left(request)
        for index in [i for i in self._buttons if i not in live]:
            del self._buttons[index]
        self.interventions.children = tuple(boxes)
        if requests and not self.state.done:
            self._arm_tick()

    def _request_box(self, request: Any) -> widgets.VBox:
        error = f" — {request.outcome.error}" if request.outcome.error else ""
        label = widgets.HTML(
            f"<b>{html.escape(request.node.id)}</b> waits for you{html.escape(error)}"
            f"<br><small>{html.escape(request.fqn)}</small>"
        )
        buttons = []
        for choice in request.choices:
            button = widgets.Button(description=choice, tooltip=f"answer {choice}")
            button.on_click(lambda b, c=choice, r=request: self._answer(r, c))
            buttons.append(button)
        answer_off_main_thread(buttons)
        clock = widgets.HTML()
        box = widgets.VBox([label, widgets.HBox(buttons), clock])
        box.request, box.buttons, box.clock = request, buttons, clock
        return box

    def _time_left(self, request: Any) -> str:
        entry = self.state.waiting.get(request.node.index)
        if entry is None:
            return ""
        import time

        left = max(0.0, request.timeout - (time.monotonic() - entry[1]))
        then = getattr(request.action.on_timeout, "type", "?")
        if not self.interactive:
            how = "(the kernel is busy with run(): the buttons answer only in a run made with p.start())"
        else:
            how = ""
        return f"<small>times out in {format_duration(round(left))}, then {then} {how}</small>"

    def _answer(self, request: Any, choice: str) -> None:
        request.answer(choice)  # thread-safe: posted to the scheduler's loop
        box = self._buttons.get(request.node.index)
        if box is not None and box.request is request:
            for button in box.buttons:
                button.disabled = True
            box.clock.value = f"<small>answered {html.escape(choice)}</small>"

    def _arm_tick(self) -> None:
        """While a person is waited for, the time left counts down once a second."""
        if self._tick is None or not self._tick.is_alive():
            self._tick = threading.Timer(1.0, self.text_updates.poke)
            self._tick.daemon = True
            self._tick.start()

    # -- cancel and output ----------------------------------------------------------------------
    def _on_cancel(self, _button: Any = None) -> None:
        """Abort the run (R21, E15): through the handle, or the foreground run's scheduler."""
        if not self.interactive:
            return
        if self.handle is not None:
            self.handle.cancel()
        else:
            self._cancel_pending = True
            self._send_cancel()
        self._cancelled = True
        self.cancel_button.disabled = True
        self.cancel_button.description = "Cancelling"

    def _send_cancel(self) -> None:
        """A foreground run's cancel goes to its scheduler (thread-safe: posted to its loop),
        once it has one: a click before the run started is sent at the run's first event."""
        with self.state.lock:
            scheduler, send = self.state.scheduler, self._cancel_pending and not self.state.done
            if scheduler is None or not send:
                return
            self._cancel_pending = False
        scheduler.cancel("cancelled by the user")

    def _offer_logs(self, logs: list[tuple[int, int]]) -> None:
        options = [("(pick a finished step)", None)]
        options += [(f"{self._label(i)} (attempt {a})", (i, a)) for i, a in logs]
        if len(options) != len(self.step_picker.options):
            value = self.step_picker.value
            self.step_picker.options = options
            self.step_picker.value = value if value in dict(options).values() else None

    def _label(self, index: int) -> str:
        """A step's name in the output picker: its id, or where ids repeat (a ``rollout`` in two
        stages) the path of ids from its stage down (``deploy_eu › rollout``)."""
        labels = self._labels
        if labels is None:
            nodes = self.state.plan.nodes
            steps = [n for n in nodes if n.kind == "step"]
            ids = Counter(n.id for n in steps)
            labels = self._labels = {n.index: n.id if ids[n.id] == 1 else " › ".join(_path(n)) for n in steps}
        return labels.get(index, self.state.plan.nodes[index].id)

    def _on_pick(self, change: dict) -> None:
        pick = change["new"]
        if pick is None:
            self.step_output.value = ""
            return
        index, attempt = pick
        with self.state.lock:
            logs = [r.log for r in self.state.rows if r.node == index and r.attempt == attempt and r.log]
        text = logs[-1] if logs else ""
        self.step_output.value = f"<pre>{html.escape(text)}</pre>"


def _path(node: Any) -> list[str]:
    """The ids from a node's stage down to the node (parallel blocks have no id of their own)."""
    ids = []
    while node is not None and node.kind != "pipeline":
        if node.kind != "parallel":
            ids.append(node.id)
        node = node.parent
    return ids[::-1]
