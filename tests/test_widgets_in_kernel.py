"""The live view's buttons during a *foreground* ``p.run()``, in a real kernel (issue 13, R20, R21).

The kernel's main thread is busy with the run until it ends; the view's clicks must still be
answered. The test is the frontend: it starts a real ipykernel (jupyter_client), executes a
cell that runs a pipeline in the foreground, reads the widgets' ``comm_open`` messages on
IOPub and sends a button's click as JupyterLab does (a ``comm_msg`` on the shell channel,
``{"method": "custom", "content": {"event": "click"}}``).
"""

from __future__ import annotations

import ast
import os
import queue
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import start_new_kernel

ROOT = Path(__file__).resolve().parents[1]
GUARD = 120.0  # seconds without any message: the cell is stuck (never a measure)
pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def kernel() -> Iterator[Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    manager, client = start_new_kernel(kernel_name="python3", env=env)
    try:
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def click(client: Any, comm_id: str) -> None:
    """A button click, as a frontend sends it."""
    content = {"comm_id": comm_id, "data": {"method": "custom", "content": {"event": "click"}}}
    client.shell_channel.send(client.session.msg("comm_msg", content))


def run_cell(client: Any, code: str, press: str) -> dict[str, Any]:
    """Execute ``code``; click the first button described ``press`` as soon as it exists.

    Returns the cell's stdout and stderr, its errors, whether the click was sent, and the status messages
    (state, parent message type) published while the cell ran.
    """
    msg_id = client.execute(textwrap.dedent(code))
    out, err, errors, statuses, clicked = [], [], [], [], False
    button, shown = None, set()  # the button's model id; models some box shows as children
    while True:
        try:
            msg = client.get_iopub_msg(timeout=GUARD)
        except queue.Empty:
            pytest.fail(f"no message for {GUARD:g}s: the cell is stuck (clicked={clicked})")
        kind, parent = msg["msg_type"], msg["parent_header"]
        if kind in ("comm_open", "comm_msg"):
            state = msg["content"]["data"].get("state", {})
            if state.get("_model_name") == "ButtonModel" and state.get("description") == press:
                button = msg["content"]["comm_id"]
            shown.update(state.get("children", ()))
            # click as a person can: once a box on the page holds the button
            if not clicked and button is not None and f"IPY_MODEL_{button}" in shown:
                click(client, button)
                clicked = True
        elif kind == "stream" and parent.get("msg_id") == msg_id:
            (out if msg["content"]["name"] == "stdout" else err).append(msg["content"]["text"])
        elif kind == "error":
            errors.append(msg["content"]["evalue"])
        elif kind == "status":
            statuses.append((msg["content"]["execution_state"], parent.get("msg_type")))
            if parent.get("msg_id") == msg_id and msg["content"]["execution_state"] == "idle":
                return {
                    "out": "".join(out),
                    "err": "".join(err),
                    "errors": errors,
                    "statuses": statuses,
                    "clicked": clicked,
                }


def test_R20_D12_an_intervention_click_resumes_a_foreground_run_while_the_kernel_is_busy(kernel):
    done = run_cell(
        kernel,
        """
        import notebook_pipelines as nbp
        calls = []
        def flaky(ctx):
            calls.append(ctx.attempt)
            if len(calls) == 1:
                raise nbp.StepError("disk full", error_type="Unknown")
        p = nbp.Pipeline("foreground")
        with p.stage("s") as s:
            s.step("deploy", run=flaky, failure_strategies=nbp.ManualIntervention(
                timeout="10m", choices=("Retry", "MarkAsSuccess", "Abort"), on_timeout="Abort"))
        trace = p.run()
        print(calls, list(trace[trace.kind == "step"].status), trace.loc[0, "status"])
        """,
        press="Retry",
    )
    assert done["clicked"] and done["errors"] == []
    # the click was taken during run(): Retry ran attempt 2 (without it: a 10-minute wait, then Abort)
    assert done["out"].strip() == "[1, 2] ['Failed', 'Success'] Success"
    # handling the click published no idle status: the kernel shows busy until the cell ends
    assert done["statuses"] == [("busy", "execute_request"), ("idle", "execute_request")]


def test_R21_the_cancel_button_aborts_a_foreground_run_and_the_kernel_stays_usable(kernel):
    done = run_cell(
        kernel,
        """
        import time
        import notebook_pipelines as nbp
        p = nbp.Pipeline("long")
        with p.stage("s") as s:
            s.step("wait", run=lambda: time.sleep(600))
            s.step("after", run=lambda: None)
        trace = p.run()
        steps = trace[trace.kind == "step"]
        print((trace.loc[0, "status"], dict(zip(steps.step, steps.status))))
        """,
        press="Cancel",
    )
    assert done["clicked"] and done["errors"] == []
    pipeline, steps = ast.literal_eval(done["out"].strip())  # what the cell printed
    assert pipeline == "Aborted" and steps["wait"] == "Aborted"
    assert steps["after"] == "NotStarted"  # nothing new starts after the abort (R21, E15)
    assert "wait — Aborted: cancelled by the user" in done["err"]  # the run's summary says why
    after = run_cell(kernel, "print(6 * 7)", press="none")
    assert after["out"].strip() == "42"
