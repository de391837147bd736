"""Step bodies on threads in the kernel: a pool that grows to the concurrency it meets.

No thread per step: a worker takes jobs from one queue until the run ends. A new worker is
started only when every existing one is busy (parallel siblings must really overlap), so a
run uses as many threads as its widest moment, plus any still stuck in a timed-out body.

Output capture: while a run is on, ``sys.stdout``/``sys.stderr`` are wrapped by a proxy that
copies what each worker thread prints into that step's log (and still passes it on, so the
notebook cell shows it).

Stopping: ``cancel(job)`` sets the step context's flag (``ctx.cancelled``, ``ctx.sleep``
wakes up) and raises ``StepCancelled`` in the worker thread at its next Python instruction.
``close()`` waits for the workers to exit, so no thread outlives the run (a body blocked in
C code for long is waited for, up to ``join_timeout`` seconds, then reported).
"""

from __future__ import annotations

import ctypes
import queue
import sys
import threading
import time
import traceback
import warnings
from typing import Any

from ..engine import SUCCESS, Outcome, StepCancelled, call_body, outcome_of_exception
from ..errors import StepError

__all__ = ["ThreadExecutor"]

_local = threading.local()
_proxy_lock = threading.Lock()
_proxy_users = [0]


class _Tee:
    """Copies writes made on a capturing thread into that thread's buffer; passes all on."""

    def __init__(self, stream: Any):
        self._stream = stream

    def write(self, text: str) -> int:
        buffer = getattr(_local, "buffer", None)
        if buffer is not None:
            buffer.append(text)
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _install_tee() -> None:
    with _proxy_lock:
        if _proxy_users[0] == 0:
            sys.stdout, sys.stderr = _Tee(sys.stdout), _Tee(sys.stderr)
        _proxy_users[0] += 1


def _remove_tee() -> None:
    with _proxy_lock:
        _proxy_users[0] -= 1
        if _proxy_users[0] == 0:
            if isinstance(sys.stdout, _Tee):
                sys.stdout = sys.stdout._stream
            if isinstance(sys.stderr, _Tee):
                sys.stderr = sys.stderr._stream


def _raise_in_thread(thread: threading.Thread, exc: type[BaseException]) -> None:
    ident = thread.ident
    if ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc))


class ThreadExecutor:
    """Runs step bodies on reused worker threads of this process.

    Args:
        capture: copy what steps print into the trace's ``log`` column (default True).
        join_timeout: seconds ``close()`` waits for each worker still in a body.
    """

    name = "threads"

    def __init__(self, capture: bool = True, join_timeout: float = 10.0):
        self.capture = capture
        self.join_timeout = join_timeout
        self.threads: list[threading.Thread] = []
        self.busy = 0
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._running: dict[int, tuple[Any, threading.Thread]] = {}
        self._lock = threading.Lock()

    def open(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.clock = scheduler.clock
        if self.capture:
            _install_tee()

    def submit(self, job: Any) -> None:
        if job.node.body is None and job.node.type is None:  # nothing to run: done at once
            now = self.clock.now()
            self.scheduler.complete(job, Outcome(SUCCESS, now, now, "main"))
            return
        self.scheduler.context(job)
        self.busy += 1
        if self.busy > len(self.threads):
            thread = threading.Thread(
                target=self._worker, name=f"nbp-worker-{len(self.threads)}", daemon=True
            )
            self.threads.append(thread)
            thread.start()
        self._work.put(job)

    def returned(self, job: Any) -> None:
        if job.node.body is not None or job.node.type is not None:  # it went to a worker
            self.busy -= 1

    def cancel(self, job: Any) -> None:
        job.ctx.cancel()
        with self._lock:
            entry = self._running.get(id(job))
            if entry is not None and entry[0] is job:
                _raise_in_thread(entry[1], StepCancelled)

    def _worker(self) -> None:
        me = threading.current_thread()
        while True:
            try:
                job = self._work.get()
                if job is None:
                    return
                self._run_one(job, me)
            except StepCancelled:
                # a stop signal that arrived after its job had ended: the scheduler had already
                # given up on that job (timed out or aborted), so nothing is lost
                _local.buffer = None
                with self._lock:
                    for key, (_job, thread) in list(self._running.items()):
                        if thread is me:
                            del self._running[key]

    def _run_one(self, job: Any, me: threading.Thread) -> None:
        clock = self.clock
        with self._lock:
            self._running[id(job)] = (job, me)
        buffer: list[str] = []
        _local.buffer = buffer
        job.data = (me.name, buffer)  # what the scheduler keeps if it gives up on the job
        start = clock.now()
        try:
            result = call_body(job.node, job.ctx, self.scheduler.namespace, self.scheduler)
            outputs = dict(job.ctx.outputs)
            if isinstance(result, dict):
                outputs.update(result)
            outcome = Outcome(SUCCESS, start, clock.now(), me.name, outputs=outputs or None)
        except StepCancelled:
            outcome = Outcome("Aborted", start, clock.now(), me.name, None, "the step was told to stop")
        except BaseException as exc:  # the body's own failure goes into the trace
            end = clock.now()
            status, error_type, text = outcome_of_exception(exc)
            if not isinstance(exc, StepError):  # a StepError is a chosen failure: its message says it all
                buffer.append(traceback.format_exc())
            outcome = Outcome(status, start, end, me.name, error_type, text)
        finally:
            with self._lock:
                self._running.pop(id(job), None)
            _local.buffer = None
        outcome.log = "".join(buffer) or None
        self.scheduler.post(self.scheduler._complete_posted, (job, outcome))

    def close(self, cancel: bool = False) -> None:
        """End the workers. With ``cancel``, running bodies are told to stop and waited for;
        without it, only bodies that already timed out may still run, and they are not waited
        for (the run's end is not delayed by them; their threads exit when the body returns)."""
        with self._lock:
            running = list(self._running.values())
        if cancel:
            for job, _thread in running:
                self.cancel(job)
        for _ in self.threads:
            self._work.put(None)
        left_running = set() if cancel else {thread for _job, thread in running}
        deadline = time.monotonic() + self.join_timeout
        stuck = []
        for thread in self.threads:
            if thread in left_running:
                continue
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                stuck.append(thread.name)
        if self.capture:
            _remove_tee()
        if stuck:
            warnings.warn(
                f"{len(stuck)} step(s) still running after the run ended ({', '.join(stuck)}); "
                "their bodies ignore ctx.cancelled — check it in long loops or use ctx.sleep()",
                RuntimeWarning,
                stacklevel=3,
            )
