"""Drawing off the run's thread: :class:`Throttle` calls a view's drawing function on a thread of
its own, at most every ``interval`` seconds, coalescing the updates that arrive meanwhile.

The run's views (:mod:`.progress`' text line, the live widget of :mod:`.live`) draw through it, so
the engine's loop never waits for a picture. It stands on the standard library alone.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["Throttle"]


class Throttle:
    """Call ``fn`` on a thread of its own, at most every ``interval`` seconds, never on the
    thread that asks for an update (the scheduler's loop must never wait for a view).

    - ``poke()`` — an update is wanted: O(1), it never calls ``fn``. The drawing thread
      (``nbp-draw-<name>``, started on demand) calls ``fn`` once the last call is ``interval``
      old *and* ``spacing`` times the last call's duration has passed since it ended. Pokes
      that come meanwhile are coalesced into that one call, so when drawing is slower than the
      run, frames are skipped, never queued, and the thread draws at most ``1 / (1 + spacing)``
      of the time. The thread ends after ``IDLE`` seconds without pokes.
    - ``finish(wait)`` — the final update: made on the drawing thread (at once, cutting short
      the interval); waits up to ``wait`` seconds for it and returns True when it was made and
      the thread has ended. After it, pokes do nothing.
    - ``flush(close=False)`` — call ``fn`` now on this thread (a view made before or after a
      run); ``close=True``: no update after it.
    - ``wait(timeout)`` — wait until no drawing thread is left.
    - ``cancel()`` — no more updates, not even a final one (a run that ended without a trace);
      the drawing thread ends after any call under way.

    Calls of ``fn`` never overlap. A ``fn`` that raises stops the updates with one warning.

    >>> calls = []
    >>> t = Throttle(lambda: calls.append(threading.current_thread().name), 0.1, name="doc")
    >>> for _ in range(1000):
    ...     t.poke()
    >>> t.finish(wait=5.0)
    True
    >>> 1 <= len(calls) <= 2, set(calls)
    (True, {'nbp-draw-doc'})
    """

    #: seconds without a poke after which the drawing thread ends (a new poke starts one)
    IDLE = 5.0

    def __init__(self, fn: Callable[[], Any], interval: float, name: str = "view", spacing: float = 3.0):
        self.fn, self.interval, self.spacing, self.name = fn, interval, spacing, name
        self._cond = threading.Condition(threading.Lock())
        self._drawing = threading.Lock()  # calls of fn never overlap
        self._wanted = False  # a poke since the last call began
        self._final = False  # finish() asked for the final call
        self._cancelled = False  # cancel(): the thread ends without another call
        self._thread: threading.Thread | None = None
        self._next = float("-inf")  # the earliest start of the next call (time.monotonic())
        self.calls = 0  # how many updates were made (tests read it)
        self.closed = False
        self.error: BaseException | None = None

    def poke(self) -> None:
        if self._wanted or self.closed:
            return  # an update is already wanted: this event joins it
        with self._cond:
            if self._wanted or self.closed:
                return
            self._wanted = True
            if self._thread is None:
                self._start()
            else:
                self._cond.notify()

    def delay(self, seconds: float | None = None) -> None:
        """No update before ``seconds`` (default: ``interval``) from now."""
        self._next = time.monotonic() + (self.interval if seconds is None else seconds)

    def finish(self, wait: float | None = 5.0) -> bool:
        with self._cond:
            thread = self._thread
            if not self._final and self.error is None:
                self.closed = self._final = True
                if thread is None:
                    thread = self._start()
                else:
                    self._cond.notify()
            self.closed = True
        if thread is None or thread is threading.current_thread():
            return thread is None
        if wait is None or wait > 0:
            thread.join(wait)
        return not thread.is_alive()

    def cancel(self) -> None:
        """No update after this one: the thread ends; an update under way is waited for."""
        with self._cond:
            self.closed = self._cancelled = True
            self._cond.notify()
        if self._thread is not threading.current_thread():
            with self._drawing:  # an update under way ends before cancel() returns
                pass

    def flush(self, close: bool = False) -> None:
        with self._cond:
            self._wanted = False
        self._call()
        self.closed = self.closed or close

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds until no drawing thread is left; True if none is."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            return not thread.is_alive()
        return thread is None

    @property
    def busy(self) -> bool:
        """True while a drawing thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def _start(self) -> threading.Thread:
        thread = threading.Thread(target=self._work, name=f"nbp-draw-{self.name}"[:60], daemon=True)
        self._thread = thread
        thread.start()
        return thread

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cond:
                quiet_until = time.monotonic() + self.IDLE
                while not self._wanted and not self._final:
                    left = quiet_until - time.monotonic()
                    if left <= 0 or self._cancelled:
                        self._thread = None if self._thread is me else self._thread
                        return
                    self._cond.wait(left)
                while not self._final and (left := self._next - time.monotonic()) > 0:
                    if self._cancelled:
                        break
                    self._cond.wait(left)  # not due yet: pokes meanwhile join this update
                final = self._final
                self._wanted = False
            ok = not self._cancelled and self._call()
            if final or not ok:
                with self._cond:
                    self._thread = None if self._thread is me else self._thread
                return

    def _call(self) -> bool:
        with self._drawing:
            if self.error is not None or self._cancelled:
                return False
            start = time.monotonic()
            self.calls += 1
            try:
                self.fn()
            except Exception as exc:  # a view is not worth failing a run for: stop updating it
                self.error, self.closed = exc, True
                warnings.warn(
                    f"the {self.name} view stopped updating: {type(exc).__name__}: {exc}",
                    RuntimeWarning,
                    stacklevel=2,
                )
                return False
            end = time.monotonic()
            self._next = max(start + self.interval, end + self.spacing * (end - start))
            return True
