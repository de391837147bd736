"""What a step body prints: a bounded log per step, and the capture of a thread's output.

While a run is on, ``sys.stdout``/``sys.stderr`` are wrapped by a proxy (:class:`_Tee`, one
per process however many runs use it) that copies what each capturing thread prints into that
thread's log and still passes it on, so the notebook cell shows it. The real stream takes each
write first: what it refuses (bytes, a number) raises its own ``TypeError`` in the body and is
not logged, so capture never fails. A step's log is a :class:`StepLog`: its first and last
characters and a line counting what was dropped between, bounded while the body prints.

:class:`~.threads.ThreadExecutor` captures with :func:`install_tee` / :func:`remove_tee` (per
run) and :data:`local` (``local.buffer``: the log of the body running on this thread); an
executor running bodies on threads of its own (a Dask worker) uses :func:`captured`.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["LOG_HEAD", "LOG_TAIL", "StepLog", "captured", "install_tee", "local", "remove_tee"]

#: ``local.buffer``: the log that what this thread prints goes to (None: not captured)
local = threading.local()
_proxy_lock = threading.Lock()
_proxy_users = [0]
#: A step's log keeps its first ``LOG_HEAD`` and last ``LOG_TAIL`` characters (:class:`StepLog`).
LOG_HEAD = 50_000
LOG_TAIL = 50_000


class StepLog:
    r"""What one step printed, bounded: the first ``head`` and the last ``tail`` characters.

    Output past the head goes to the tail, which keeps only its last ``tail`` characters; what
    falls out of it is counted (characters and line breaks), and the text carries a marker line
    saying so where it was cut. Memory stays bounded while the body prints, however much it
    prints (``yes`` under a timeout). One thread writes (the one running the body); any thread
    may read the text at any time (the scheduler does when it stops waiting for a body): every
    read is one operation on a list or a deque, so no lock is taken — a lock held by a body a
    stop signal interrupted would block the reader.

    ``StepLog()`` keeps ``LOG_HEAD`` and ``LOG_TAIL`` characters; ``StepLog.sized(head, tail)``
    is the class of logs with other bounds. One is made for every step execution, printing or
    not, so making one runs no code (its state is made at the first write).

    >>> log = StepLog.sized(head=10, tail=5)()
    >>> for n in range(6):
    ...     log.append(f"line {n}\n")
    >>> log.dropped, log.dropped_lines  # of 42 characters, the first 10 and the last 5 are kept
    (27, 4)
    >>> print(log.text())  # doctest: +ELLIPSIS
    line 0
    lin
    [notebook-pipelines: 27 characters (4 lines) of this step's output dropped here; ...]
    ne 5
    <BLANKLINE>
    >>> "".join(StepLog())  # iterable, like the list of texts it replaces
    ''
    """

    #: the most characters kept from the start and from the end of the output
    head = LOG_HEAD
    tail = LOG_TAIL
    _head: list[str] | None = None  # made at the first write
    _room = 0  # characters the head still takes (once _head is made)
    _tail: deque[str] | None = None  # made when the head is full
    _tail_size = 0
    dropped = 0  # characters dropped from the middle
    dropped_lines = 0  # line breaks among them

    @classmethod
    def sized(cls, head: int, tail: int) -> type[StepLog]:
        """The class of logs that keep the first ``head`` and the last ``tail`` characters."""
        if head == cls.head and tail == cls.tail:
            return cls
        return type(cls.__name__, (cls,), {"head": head, "tail": tail, "__doc__": cls.__doc__})

    def append(self, text: str) -> None:
        """Add printed ``text`` (a ``str``; anything else is ignored)."""
        if type(text) is not str:
            if not isinstance(text, str):
                return
            text = str.__str__(text)  # a subclass's own len/slicing are not trusted
        if self._head is None:
            self._head, self._room = [], self.head
        room = self._room
        if room:
            if len(text) <= room:
                self._head.append(text)
                self._room = room - len(text)
                return
            self._head.append(text[:room])
            self._room = 0
            text = text[room:]
        limit = self.tail
        if len(text) >= limit:  # it alone fills the tail: all before its end is dropped
            cut = len(text) - limit
            self._drop("".join(self._tail or ()), text[:cut])
            self._tail = deque((text[cut:],)) if limit else deque()
            self._tail_size = limit
            return
        tail = self._tail
        if tail is None:
            tail = self._tail = deque()
        tail.append(text)
        self._tail_size += len(text)
        while self._tail_size > limit:
            first = tail[0]
            excess = self._tail_size - limit
            if len(first) <= excess:
                tail.popleft()
                self._drop(first)
                self._tail_size -= len(first)
            else:
                tail[0] = first[excess:]
                self._drop(first[:excess])
                self._tail_size -= excess

    def _drop(self, *texts: str) -> None:
        for text in texts:
            self.dropped += len(text)
            self.dropped_lines += text.count("\n")

    def text(self) -> str:
        """The log: the head, a marker line where output was dropped, the tail."""
        if self._tail is None:  # nothing printed, or all in the head (the common cases)
            return "".join(self._head) if self._head is not None else ""
        head, tail = "".join(self._head or ()), "".join(tuple(self._tail))
        if not self.dropped:
            return head + tail
        newline = "" if head.endswith("\n") or not head else "\n"
        marker = (
            f"{newline}[notebook-pipelines: {self.dropped:,} characters ({self.dropped_lines:,} lines) "
            f"of this step's output dropped here; the log keeps the first {self.head:,} and the last "
            f"{self.tail:,} characters]\n"
        )
        return head + marker + tail

    def __iter__(self) -> Iterator[str]:
        return iter((self.text(),))

    def __len__(self) -> int:
        return (self.head - self._room if self._head is not None else 0) + self._tail_size

    def __repr__(self) -> str:
        return f"<StepLog {len(self):,} characters kept, {self.dropped:,} dropped>"


#: A body that prints without a break for this long (seconds) pauses for :data:`PAUSE` ...
BURST = 0.01
#: ... (seconds): see :func:`_pause_a_burst`.
PAUSE = 0.0002


def _pause_a_burst() -> None:
    """On a capturing thread that has printed without a break (writes < 1 ms apart) for
    :data:`BURST`: sleep :data:`PAUSE`, so that the run's loop gets the interpreter.

    Each write to a real stream lets the interpreter go for a moment (its system call), and
    the writing thread takes it straight back; a thread waiting for it (the loop, whose
    timeout is due) is woken by every such release, so it never asks the writer to hand over,
    and wins only the odd race: a 1 s timeout on a body printing in a loop fired after 2–36 s.
    A real sleep lets it in; bodies that print now and then never pause, one that prints
    without end is 2 % slower."""
    now = time.perf_counter()
    start = getattr(local, "burst", None)
    if start is None or now - local.last > 0.001:
        local.burst = now
    elif now - start > BURST:
        time.sleep(PAUSE)
        now = time.perf_counter()
        local.burst = now
    local.last = now


class _Tee:
    """Copies writes made on a capturing thread into that thread's log; passes all on.

    The real stream gets the write first: what it refuses (bytes, numbers) raises its own
    ``TypeError`` to the body, as without capture, and is not logged, so capture never fails.
    """

    def __init__(self, stream: Any):
        self._stream = stream

    def write(self, text: str) -> int:
        written: int = self._stream.write(text)
        buffer = getattr(local, "buffer", None)
        if buffer is not None:
            if isinstance(text, str):
                buffer.append(text)
            elif isinstance(text, bytes | bytearray):  # a stream that takes bytes took them
                buffer.append(bytes(text).decode("utf-8", "replace"))
            _pause_a_burst()
        return written

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def install_tee() -> None:
    with _proxy_lock:
        if _proxy_users[0] == 0:
            sys.stdout, sys.stderr = _Tee(sys.stdout), _Tee(sys.stderr)
        _proxy_users[0] += 1


def remove_tee() -> None:
    with _proxy_lock:
        _proxy_users[0] -= 1
        if _proxy_users[0] == 0:
            if isinstance(sys.stdout, _Tee):
                sys.stdout = sys.stdout._stream
            if isinstance(sys.stderr, _Tee):
                sys.stderr = sys.stderr._stream


@contextmanager
def captured(buffer: StepLog | list[str]) -> Iterator[StepLog | list[str]]:
    """Copy what the calling thread prints (stdout and stderr) into ``buffer`` while inside.

    Other threads print as before; everything is still passed on to the real streams. This is
    the capture :class:`ThreadExecutor` uses, for executors that run bodies on threads of
    their own (a Dask worker): one proxy per process, however many use it at once. Give it a
    :class:`StepLog` to keep a bounded log (a list keeps everything).

    >>> log = StepLog()
    >>> with captured(log):
    ...     print("hello")
    hello
    >>> log.text()
    'hello\\n'
    """
    install_tee()
    previous = getattr(local, "buffer", None)
    local.buffer = buffer
    try:
        yield buffer
    finally:
        local.buffer = previous
        remove_tee()


def _after_fork_in_child() -> None:
    """In a forked child: the lock a parent's thread may have held is made anew."""
    global _proxy_lock
    _proxy_lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)
