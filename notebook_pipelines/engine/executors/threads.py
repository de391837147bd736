"""Step bodies on threads in the kernel: a warm pool of worker threads that outlive a run.

Design
------
**The pool** (:class:`WorkerPool`, one per process by default) keeps worker threads between
runs, since a kernel runs many pipelines. Every job is handed to a worker that is free at that
moment (a free worker is *reserved* for each job as it is queued; ``_free`` counts workers
waiting with no job reserved for them), to a busy one that finishes first, or to a new one: a
job with no free worker waits (``_waiting``) while the submitting thread yields, and gets a new
worker if none finished meanwhile (see :meth:`WorkerPool.submit_many`). A burst of short bodies
thus reuses a few workers; bodies that take time each get their own, so the pool grows to the
widest moment. A worker that has waited ``idle_timeout`` seconds with nothing to do leaves, so
the pool shrinks when the kernel is idle. Waiting is a blocking queue read: no polling. Workers
are daemon threads and an ``atexit`` hook lets the idle ones go, so none is left when the
interpreter exits.

**Concurrency**: every step of a parallel block starts at once (R5), however wide. With
``max_workers=N`` at most N bodies of the run execute at a time; the others wait their turn in
submission order, and a step's ``start`` in the trace is when its body started.

**Stopping never waits.** ``cancel(job)`` (timeout, abort, interrupt) sets the step context's
flag (``ctx.cancelled``, ``ctx.sleep`` wakes up) and raises :class:`StepCancelled` in the worker
at its next Python instruction. The scheduler does not wait for the body: it is recorded
``Expired``/``Aborted`` at once. The worker is *detached* from the pool — it is renamed
``nbp-left-behind-…``, finishes the body on its own, discards the late result and exits — so
the pool replaces it on demand and never shrinks because of it. At the end of a run the
executor gives bodies it told to stop a short grace (``stop_grace`` seconds, waiting on an
event, not polling) and warns, naming each step, about those still running after it.

A stop signal may land late, after the body's own ``except`` (while the worker builds the
outcome): the worker still reports the job, and once the job is off the running list it lets a
signal still pending land, so none can land after the job. No stop signal is raised while a
trace or profile function is installed (see :func:`.stopping.raise_in_thread`): the context alone tells
the body, and a body that ignores it is left behind as always.

**Output capture** (:mod:`.capture`): while a run is on, what each worker thread prints is
copied into that step's log (and still passed on, so the notebook cell shows it), a
:class:`~.capture.StepLog` of its first and last ``log_limit / 2`` characters (100,000 in all by
default), bounded while the body prints.

**A body's own misdeeds** end its step, never the worker or the run: an exception that cannot
be shown is ``Failed`` with a placeholder message (``outcome_of_exception`` never raises); a
``run()`` of the pipeline the body belongs to is refused (``NestedRunError``, found through
:meth:`ThreadExecutor.job_of`); after ``os.fork()`` in a body, the child leaves when the body
returns into the library (one line on stderr, ``os._exit``), since the parent's threads do not
exist there.
"""

from __future__ import annotations

import atexit
import itertools
import os
import queue
import threading
import time
import traceback
import warnings
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

from ...definition.statuses import ABORTED, SUCCESS
from ...errors import MESSAGE_LIMIT, StepError
from ..context import StepCancelled
from .base import Job, Outcome, message_of, outcome_of_exception
from .capture import LOG_HEAD, LOG_TAIL, StepLog, install_tee, local, remove_tee
from .stopping import raise_in_thread

__all__ = ["ThreadExecutor", "WorkerPool", "default_pool"]

WORKER_PREFIX = "nbp-worker"
LEFT_BEHIND_PREFIX = "nbp-left-behind"


def _format_exc(exc: BaseException) -> str:
    """The traceback of ``exc`` being handled, as text; a line naming its type if that fails."""
    try:
        return traceback.format_exc()
    except Exception:  # an exception whose parts (notes, cause) break the formatting
        return f"{type(exc).__name__} (its traceback could not be formatted)\n"


# -- os.fork() in a step body ---------------------------------------------------------------------
#: in a child process a step body forked: the thread that forked (the only one the child has)
_FORKED_IN: int | None = None


def _after_fork_in_child() -> None:
    """In a forked child: the parent's worker threads do not exist here. The locks they may have
    held are made anew and the default pool is emptied, so a run the child starts makes its own
    workers; if a step body forked, its thread leaves the child when the body returns."""
    global _DEFAULT_LOCK, _FORKED_IN
    _DEFAULT_LOCK = threading.Lock()
    for pool in _DEFAULT:
        pool._reset_after_fork()
    name = threading.current_thread().name
    _FORKED_IN = threading.get_ident() if name.startswith((WORKER_PREFIX, LEFT_BEHIND_PREFIX)) else None


def _leave_forked_child(job: Job, outcome: Outcome) -> None:
    """The body that forked returned (or raised) in the child: the child ends here, at once.

    The library's state in the child is a copy of the parent's run, whose other threads do not
    exist here: going on would report to nobody and keep the child (and any pipe it holds)
    alive. A note on stderr says so; the exit status is 0 if the body succeeded, else 1.
    Nothing is flushed (buffers copied from the parent would print twice).
    """
    if threading.get_ident() != _FORKED_IN:
        return  # a worker of a run the child started itself
    code = 0 if outcome.status == SUCCESS else 1
    note = (
        f"notebook-pipelines: the step {job.node.fqn} forked this process (os.fork()) and the child "
        f"returned into the library, which cannot run in a forked child; the child exits now "
        f"(status {code}). End a forked child with os._exit(), or use subprocess or multiprocessing\n"
    )
    try:
        os.write(2, note.encode("utf-8", "replace"))
    finally:
        os._exit(code)


def _exit_forked_child(exc: SystemExit) -> None:
    """``sys.exit(code)`` in the child a body forked (on the thread that forked): the child
    exits with that code, as a process whose main thread calls it would (quietly)."""
    if threading.get_ident() != _FORKED_IN:
        return
    code = exc.code
    if code is None or isinstance(code, bool):
        os._exit(int(bool(code)))
    if isinstance(code, int):
        os._exit(code & 0xFF)
    try:
        os.write(2, f"{message_of(exc, MESSAGE_LIMIT)}\n".encode("utf-8", "replace"))
    finally:
        os._exit(1)


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _absorb() -> None:
    """Run a few instructions: a stop signal raised into this thread and still pending lands here."""
    for _ in range(64):
        pass


class WorkerPool:
    """Worker threads that outlive runs; see the module notes.

    Args:
        idle_timeout: seconds a worker waits for work before it leaves.

    >>> pool = WorkerPool(idle_timeout=5)
    >>> done = threading.Event()
    >>> pool.submit(done.set)
    >>> done.wait(5), pool.size
    (True, 1)
    >>> pool.shutdown()
    >>> pool.size
    0
    """

    def __init__(self, idle_timeout: float = 60.0):
        self.idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified when a worker comes or goes
        self._queue: queue.SimpleQueue[Callable[[], Any] | None] = queue.SimpleQueue()
        self._free = 0  # workers waiting for work with no job reserved for them
        self._waiting = 0  # jobs queued with no worker reserved for them (see submit_many)
        self._taken = 0  # waiting jobs taken by workers that finished (progress, _until_taken)
        self._workers: set[threading.Thread] = set()
        self._names = itertools.count()

    @property
    def size(self) -> int:
        """Worker threads in the pool (busy or idle; not those left behind)."""
        return len(self._workers)

    @property
    def idle(self) -> int:
        """Workers waiting for work."""
        return self._free

    @property
    def busy(self) -> int:
        """Workers running a job."""
        with self._lock:
            return len(self._workers) - self._free - (self._queue.qsize() - self._waiting)

    def submit(self, fn: Callable[[], Any]) -> None:
        """Run ``fn()`` on a free worker, or on a new one when none is free (:meth:`submit_many`).
        If ``fn`` returns a callable, the worker calls it once it counts as free again or has
        taken a waiting job (nothing of a run is busy once its last report has been sent)."""
        self.submit_many([fn])

    def submit_many(self, fns: list[Callable[[], Any]]) -> None:
        """Run each of ``fns`` on a worker of its own, in order (see :meth:`submit`). All are
        queued under one lock in one C loop (a parallel block's jobs wake their free workers
        back to back); a job with no free worker *waits* for the first busy worker that
        finishes, or a new one (:meth:`_until_taken`): a burst of short bodies reuses a few
        workers, handed jobs in rounds, and long ones each get their own."""
        with self._lock:
            taken = min(self._free, len(fns))
            self._free -= taken
            self._waiting += len(fns) - taken
            # no bytecode between the puts: woken workers cannot take the interpreter from
            # this thread half-way through the batch
            deque(map(self._queue.put, fns), maxlen=0)
            new = self._grow(1) if self._waiting and not self._workers else []  # none could finish
        self._start(new)
        if self._waiting:
            self._until_taken()

    def hand_on(self, fn: Callable[[], Any]) -> bool:
        """Queue ``fn`` for this worker to take when its job ends (no wait, no new worker); False,
        nothing queued, on a thread that is not (or no longer) a worker: :meth:`submit` then."""
        with self._lock:
            if threading.current_thread() not in self._workers:
                return False
            if self._free:
                self._free -= 1
            else:
                self._waiting += 1
            self._queue.put(fn)
        return True

    def _until_taken(self) -> None:
        """Yield until no job waits (a finishing worker takes one, see ``_work``); after a yield in
        which none did, new workers: one, then twice as many after each such yield in a row."""
        grow = 1
        try:
            while True:
                with self._lock:
                    waiting, taken = self._waiting, self._taken
                if not waiting:
                    return
                time.sleep(0)  # the busy workers' chance to finish and take a waiting job
                with self._lock:
                    new = self._grow(grow) if self._taken == taken else []  # none did
                if new:
                    self._start(new)
                    grow *= 2
                else:  # some did: they may take the rest
                    grow = 1
        except BaseException:  # an interrupt in the yield: no job is left without a worker
            with self._lock:
                new = self._grow(self._waiting)
            self._start(new)
            raise

    def _grow(self, count: int) -> list[threading.Thread]:
        """New workers for ``count`` waiting jobs (under the lock), started by :meth:`_start`
        once the lock is let go (a finishing worker need not wait for thread starts)."""
        count = min(count, self._waiting)
        new = [
            threading.Thread(target=self._work, name=f"{WORKER_PREFIX}-{next(self._names)}", daemon=True)
            for _ in range(count)
        ]
        self._workers.update(new)
        self._waiting -= count
        return new

    def _start(self, threads: list[threading.Thread]) -> None:
        """Start new workers; one the system refuses (no threads left) leaves its job waiting."""
        for k, thread in enumerate(threads):
            try:
                thread.start()
            except BaseException:
                with self._lock:
                    self._workers.difference_update(threads[k:])
                    self._waiting += len(threads) - k
                raise

    def _reset_after_fork(self) -> None:
        """In a forked child: no worker of the parent exists here (a lock one held stays held)."""
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue = queue.SimpleQueue()
        self._free = self._waiting = self._taken = 0
        self._workers = set()

    def detach(self, thread: threading.Thread, label: str) -> None:
        """Take ``thread`` out of the pool: it ends its current job on its own, then exits."""
        with self._lock:
            if thread in self._workers:
                self._workers.discard(thread)
                thread.name = f"{LEFT_BEHIND_PREFIX}-{label}"
                self._changed.notify_all()

    def _work(self) -> None:
        me = threading.current_thread()
        try:
            while True:
                try:
                    fn = self._queue.get(timeout=self.idle_timeout)
                except queue.Empty:
                    with self._lock:
                        if self._free > 0 and self._queue.qsize() == 0:  # nothing reserved for me
                            self._free -= 1
                            return
                    continue
                if fn is None:
                    return
                then = fn()
                with self._lock:
                    detached = me not in self._workers  # it ran a body that was told to stop
                    if not detached and self._waiting:  # a job waits for a worker: this one takes it
                        self._waiting -= 1
                        self._taken += 1
                    elif not detached:
                        self._free += 1
                if then is not None:
                    then()
                if detached:
                    return
        except StepCancelled:  # a stop signal that landed outside any job (a safety net)
            pass
        finally:
            with self._lock:
                self._workers.discard(me)
                self._changed.notify_all()

    def wait(self, predicate: Callable[[WorkerPool], bool], timeout: float) -> bool:
        """Wait (on a condition, no polling) until ``predicate(pool)`` holds; False at timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.1))  # in slices: a Ctrl-C is seen
        return True

    def shutdown(self, timeout: float = 1.0) -> None:
        """Let every idle worker go (busy ones end after their job); wait up to ``timeout``."""
        with self._lock:
            for _ in range(self._free):
                self._queue.put(None)
            self._free = 0
            idle = [t for t in self._workers]
        self.wait(lambda pool: not any(t in pool._workers for t in idle if t.is_alive()), timeout)

    def __repr__(self) -> str:
        return f"<WorkerPool {self.size} workers ({self.idle} idle), idle_timeout={self.idle_timeout:g}s>"


_DEFAULT: list[WorkerPool] = []
_DEFAULT_LOCK = threading.Lock()


def default_pool() -> WorkerPool:
    """The process-wide pool that ``run()`` uses (made on first use, once, from any thread)."""
    if not _DEFAULT:
        with _DEFAULT_LOCK:
            if not _DEFAULT:
                _DEFAULT.append(WorkerPool())
                atexit.register(_DEFAULT[0].shutdown)
    return _DEFAULT[0]


class ThreadExecutor:
    """Runs step bodies on a warm pool of worker threads in this process.

    Args:
        capture: copy what steps print into the trace's ``log`` column (default True).
        max_workers: at most this many bodies of a run at a time (default: no limit, every
            step of a parallel block starts at once).
        pool: the :class:`WorkerPool` (default: the process-wide one, warm across runs).
        stop_grace: seconds the end of a run waits for bodies it told to stop, before it
            leaves them behind with a warning.
        log_limit: the most characters of one step execution's output the trace keeps: the
            first and the last half of it, with a line saying how much was dropped between
            (:class:`StepLog`; default 100,000). Memory stays bounded while a body prints.
    """

    name = "threads"
    clock = None
    _pool: WorkerPool  # the pool of the run going on (set by ``open``)
    #: the scheduler resolves the ``spec`` of body-less typed steps for this executor's handlers
    runs_handlers = True

    def __init__(
        self,
        capture: bool = True,
        max_workers: int | None = None,
        pool: WorkerPool | None = None,
        stop_grace: float = 0.25,
        log_limit: int = LOG_HEAD + LOG_TAIL,
    ):
        if max_workers is not None and (
            isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1
        ):
            raise ValueError(f"max_workers={max_workers!r}: give a whole number ≥ 1, or None for no limit")
        if type(log_limit) is not int or log_limit < 0:  # not a bool
            raise ValueError(f"log_limit={log_limit!r}: give a whole number of characters ≥ 0")
        self._log = StepLog.sized(log_limit // 2, log_limit - log_limit // 2)
        self.capture, self.max_workers, self.stop_grace = capture, max_workers, stop_grace
        self.pool = pool
        self._lock = threading.Lock()
        self._running: dict[Job, threading.Thread] = {}
        self._signalled: set[Job] = set()  # running jobs a stop signal was raised into
        self._stopped: dict[Job, threading.Event] = {}  # jobs told to stop, set when their body ends
        self._waiting: deque[Job] = deque()  # jobs over max_workers, in submission order
        self._holding: set[Job] = set()  # jobs holding one of the max_workers slots
        self._batch: dict[Job, None] = {}  # submitted, handed to the pool at the next flush()
        self._handed = self._started = 0  # jobs flush() handed to the pool; those a worker took

    @property
    def busy(self) -> int:
        """Bodies of the current run executing now."""
        return len(self._running)

    def job_of(self, thread: threading.Thread) -> Job | None:
        """The job whose body runs on ``thread`` now, if any (how a run started inside a body
        finds the run it is nested in)."""
        with self._lock:
            for job, worker in self._running.items():
                if worker is thread:
                    return job
        return None

    def open(self, run: Any) -> None:
        self.run = run
        if self.pool is None:
            self.pool = default_pool()
        self._pool = self.pool
        self._running, self._signalled, self._stopped = {}, set(), {}
        self._waiting, self._holding, self._batch = deque(), set(), {}
        self._handed = self._started = 0
        if self.capture:
            install_tee()

    def submit(self, job: Job) -> None:
        if not job.runs_code:  # nothing to run: done at once
            now = self.run.now()
            self.run.complete(job, Outcome(SUCCESS, now, now, "main"))
            return
        _ = job.ctx  # made here, on the run's thread, before any worker or cancel() can touch it
        if self.max_workers is not None:
            with self._lock:
                if len(self._holding) >= self.max_workers:
                    self._waiting.append(job)
                    return
                self._holding.add(job)
        self._batch[job] = None

    def flush(self) -> None:
        """Hand the jobs submitted since the last flush to the pool, in one batch. The scheduler
        calls it before it waits (nothing else to do): the workers of a parallel block are then
        woken together, not each while the loop still makes the next job (a woken worker only
        competes with the loop for the interpreter and the CPU until the loop waits)."""
        if self._batch:
            jobs, self._batch = self._batch, {}
            self._handed += len(jobs)
            execute = self._execute
            self._pool.submit_many([partial(execute, job) for job in jobs])

    def starting(self) -> bool:
        """Whether bodies :meth:`flush` handed over wait for their worker (the loop's idle work waits)."""
        return self._started != self._handed

    def cancel(self, job: Job) -> None:
        job.ctx.cancel()
        if self._batch.pop(job, 0) is None:  # never handed to a worker (this is the loop's thread)
            self._free_slot(job)
            return
        with self._lock:
            if job in self._waiting:  # never handed to a worker: it never will be
                self._waiting.remove(job)
                return
            if job in self._stopped:
                return
            # set when the job is off its worker; a job not started yet will be skipped by it
            self._stopped[job] = threading.Event()
            thread = self._running.get(job)
            if thread is not None:
                if job not in self._signalled and raise_in_thread(thread, StepCancelled):
                    self._signalled.add(job)
                self._pool.detach(thread, job.node.id)
        self._free_slot(job)  # a body left behind holds no slot of max_workers

    def _execute(self, job: Job) -> Callable[[], None]:
        """Run one job on this (worker) thread; never raises. Returns the report, which the
        pool sends once the worker counts as free again."""
        run, me = self.run, threading.current_thread()
        name = me.name  # (a worker left behind is renamed; its late outcome is discarded)
        buffer = self._log()
        start = run.now()
        outcome = None  # None in the end: a stop signal landed after the body's own handlers
        delivered = 0  # stop signals of cancel() that landed here (they carry no message)
        try:
            with self._lock:
                self._started += 1
                if job.done or job.ctx.cancelled:  # told to stop before it started: it does not
                    self._stopped.setdefault(job, threading.Event()).set()
                    outcome = Outcome(ABORTED, start, start, name, None, "the step was told to stop")
                    return partial(run.complete, job, outcome)  # discarded: the run gave it up
                self._running[job] = me
            local.buffer = buffer
            job.data = (name, buffer)  # what the scheduler keeps if it gives up on the job
            try:
                outputs = job.call()
                outcome = Outcome(SUCCESS, start, run.now(), name, outputs=outputs)
            except StepCancelled as exc:
                delivered += not exc.args
                outcome = Outcome(ABORTED, start, run.now(), name, None, "the step was told to stop")
            except BaseException as exc:  # the body's own failure goes into the trace
                end = run.now()
                if _FORKED_IN is not None and isinstance(exc, SystemExit):
                    _exit_forked_child(exc)  # sys.exit() in a child the body forked: as asked
                status, error_type, text = outcome_of_exception(exc)  # never raises
                if not isinstance(exc, StepError):  # a StepError is a chosen failure: its message says it all
                    buffer.append(_format_exc(exc))
                outcome = Outcome(status, start, end, name, error_type, text)
        except StepCancelled as exc:  # landed late, in the handlers above: the job was given up already
            delivered += not exc.args
        finally:
            if _FORKED_IN is not None:  # set only in a process a body forked
                _leave_forked_child(job, outcome or Outcome(ABORTED, start, start))
            self._off_the_running_list(job, me, delivered)
            if outcome is None:  # made here, where no stop signal can land any more
                outcome = Outcome(ABORTED, start, start, name, None, "the step was told to stop")
            local.buffer = None
            outcome.log = buffer.text() or None
            if self.max_workers is not None:
                self._free_slot(job, handing_on=True)
        return partial(run.complete, job, outcome)

    def _off_the_running_list(self, job: Job, me: threading.Thread, delivered: int) -> None:
        """No stop signal can be raised into this thread after this; one raised but not landed
        yet lands here (at most one is ever pending), so none can land after the job."""
        landed = delivered > 0
        stopped = None
        while True:
            try:
                with self._lock:
                    self._running.pop(job, None)
                    raised = job in self._signalled
                    self._signalled.discard(job)
                    stopped = self._stopped.get(job)
                if raised and not landed:
                    _absorb()
                break
            except StepCancelled as exc:  # landed meanwhile: only repeats the loop
                landed = landed or not exc.args
        if stopped is not None:
            stopped.set()

    def _free_slot(self, job: Job, handing_on: bool = False) -> None:
        """``job`` gives back its slot of ``max_workers`` (once); the next waiting job starts (on
        the worker whose job ends, ``handing_on``: :meth:`WorkerPool.hand_on`, the pool stays)."""
        if self.max_workers is None:
            return
        with self._lock:
            if job not in self._holding:
                return
            self._holding.discard(job)
            nxt = self._waiting.popleft() if self._waiting else None
            if nxt is not None:
                self._holding.add(nxt)
        if nxt is not None:
            fn = partial(self._execute, nxt)
            if not (handing_on and self._pool.hand_on(fn)):
                self._pool.submit(fn)

    def close(self, cancel: bool = False) -> None:
        """The run ends. With ``cancel``, running bodies are told to stop. Bodies told to stop
        get ``stop_grace`` seconds to end; those still running are left behind, with a warning."""
        self._batch.clear()  # jobs never handed over: the run no longer waits for them
        with self._lock:
            running = list(self._running)
            self._waiting.clear()
        if cancel:
            for job in running:
                self.cancel(job)
        with self._lock:
            stopped = [(job, event) for job, event in self._stopped.items() if not event.is_set()]
        deadline = time.monotonic() + self.stop_grace
        left: list[str] = []
        for job, event in stopped:
            if not event.wait(max(0.0, deadline - time.monotonic())):
                left.append(job.node.fqn)
        if self.capture:
            remove_tee()
        if left:
            warnings.warn(
                f"{len(left)} step(s) still running after they were told to stop, left behind: "
                f"{', '.join(left[:10])}{f' and {len(left) - 10} more' if len(left) > 10 else ''}; "
                "their late results are discarded. Their bodies ignore "
                "ctx.cancelled — check it in long loops or use ctx.sleep()",
                RuntimeWarning,
                stacklevel=3,
            )

    def __repr__(self) -> str:
        limit = "no limit" if self.max_workers is None else f"max_workers={self.max_workers}"
        return f"<ThreadExecutor {limit}, pool={self.pool!r}>"
