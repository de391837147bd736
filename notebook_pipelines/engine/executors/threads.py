"""Step bodies on threads in the kernel: a pool that grows to the concurrency it meets.

No thread per step: a worker takes jobs from one queue until the run ends. A new worker is
started only when every existing one is busy (parallel siblings must really overlap), so a
run uses as many threads as its widest moment, plus any still stuck in a timed-out body.

Output capture: while a run is on, ``sys.stdout``/``sys.stderr`` are wrapped by a proxy that
copies what each worker thread prints into that step's log (and still passes it on, so the
notebook cell shows it).

Stopping: ``cancel(job)`` sets the step context's flag (``ctx.cancelled``, ``ctx.sleep``
wakes up) and raises ``StepCancelled`` in the worker thread at its next Python instruction.
That signal may land late, after the body's own ``except`` (while the worker builds the
outcome): the worker then still reports the job back (``complete``/``returned`` always run),
and once the job is off the running list it drops a signal still pending, so none can land
between jobs. ``close()`` waits for the workers to exit, so no thread outlives the run (a body
blocked in C code for long is waited for, up to ``join_timeout`` seconds, then reported).

One executor may serve several runs, one after the other: ``open()`` starts each run with a new
queue and no workers. Each worker holds the queue and the scheduler of its own run, so a worker
still stuck in a body that timed out in an earlier run never takes a job of a later one, and
its late result goes to its own (finished) run.
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

from ...errors import StepError
from ..context import StepCancelled
from ..scheduler import Outcome, call_body, outcome_of_exception
from ..semantics import SUCCESS

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


def _raise_in_thread(thread: threading.Thread, exc: type[BaseException] | None) -> None:
    """Raise ``exc`` in ``thread`` at its next Python instruction (``None``: drop a pending one)."""
    ident = thread.ident
    if ident is not None:
        pending = None if exc is None else ctypes.py_object(exc)  # None is a NULL pointer
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), pending)


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
        # stop signals raised into each running job (kept across runs: a late worker pops its own)
        self._signalled: dict[int, int] = {}
        self._lock = threading.Lock()

    #: the scheduler resolves the ``spec`` of body-less typed steps for this executor's handlers
    runs_handlers = True

    def open(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.clock = scheduler.clock
        # a new run: new queue, no workers (those of the last run have ended, or are stuck in a
        # timed-out body and read their own run's queue)
        self.threads = []
        self.busy = 0
        self._work = queue.SimpleQueue()
        self._running = {}
        if self.capture:
            _install_tee()

    def submit(self, job: Any) -> None:
        if job.node.body is None and job.node.type is None:  # nothing to run: done at once
            now = self.clock.now()
            self.scheduler.complete(job, Outcome(SUCCESS, now, now, "main"))
            return
        self.scheduler.context(job)
        # a typed step's spec, resolved by the scheduler (on this, the loop's thread) before it started
        spec = self.scheduler._resolved_spec.get(job.node.index) if job.node.body is None else None
        self.busy += 1
        if self.busy > len(self.threads):
            thread = threading.Thread(
                target=self._worker,
                args=(self._work, self.scheduler),
                name=f"nbp-worker-{len(self.threads)}",
                daemon=True,
            )
            self.threads.append(thread)
            thread.start()
        self._work.put((job, spec))

    def returned(self, job: Any) -> None:
        if job.node.body is not None or job.node.type is not None:  # it went to a worker
            self.busy -= 1

    def cancel(self, job: Any) -> None:
        job.ctx.cancel()
        with self._lock:
            entry = self._running.get(id(job))
            if entry is not None and entry[0] is job:
                _raise_in_thread(entry[1], StepCancelled)
                self._signalled[id(job)] = self._signalled.get(id(job), 0) + 1

    def _worker(self, work: queue.SimpleQueue, scheduler: Any) -> None:
        """Take jobs from ``work`` (this run's queue) until ``None``; report to ``scheduler``."""
        me = threading.current_thread()
        while True:
            try:
                item = work.get()
                if item is None:
                    return
                self._run_one(item[0], item[1], me, scheduler)
            except StepCancelled:  # a safety net: _run_one drops the stop signals still pending
                _local.buffer = None

    def _run_one(self, job: Any, spec: Any, me: threading.Thread, scheduler: Any) -> None:
        clock = scheduler.clock
        buffer: list[str] = []
        start = clock.now()
        # what is reported if a stop signal lands after the body's own handlers below
        outcome = Outcome("Aborted", start, start, me.name, None, "the step was told to stop")
        delivered = 0  # stop signals of cancel() that landed here (they carry no message)
        try:
            with self._lock:
                self._running[id(job)] = (job, me)
            _local.buffer = buffer
            job.data = (me.name, buffer)  # what the scheduler keeps if it gives up on the job
            try:
                result = call_body(job.node, job.ctx, scheduler.namespace, spec)
                outputs = dict(job.ctx.outputs)
                if isinstance(result, dict):
                    outputs.update(result)
                outcome = Outcome(SUCCESS, start, clock.now(), me.name, outputs=outputs or None)
            except StepCancelled as exc:
                delivered += not exc.args
                outcome = Outcome("Aborted", start, clock.now(), me.name, None, "the step was told to stop")
            except BaseException as exc:  # the body's own failure goes into the trace
                end = clock.now()
                status, error_type, text = outcome_of_exception(exc)
                if not isinstance(exc, StepError):  # a StepError is a chosen failure: its message says it all
                    buffer.append(traceback.format_exc())
                outcome = Outcome(status, start, end, me.name, error_type, text)
        except StepCancelled as exc:  # landed late, in the handlers above: the job was given up already
            delivered += not exc.args
        finally:
            # Off the running list (no stop signal can be raised into this thread after that), and
            # a signal raised but not landed yet dropped (only then: dropping one slows Python down
            # until the next signal lands); a signal landing meanwhile only repeats the loop.
            while True:
                try:
                    with self._lock:
                        self._running.pop(id(job), None)
                        if self._signalled.pop(id(job), 0) > delivered:
                            _raise_in_thread(me, None)
                    break
                except StepCancelled as exc:
                    delivered += not exc.args
            _local.buffer = None
            outcome.log = "".join(buffer) or None
            scheduler.post(scheduler._complete_posted, (job, outcome))

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
