"""Telling a worker thread to stop: an exception raised into it at its next Python instruction.

:class:`~.threads.ThreadExecutor` raises :class:`~notebook_pipelines.errors.StepCancelled` this
way into a body it was told to stop (timeout, abort, interrupt), besides setting the step
context's flag; never while a trace or profile function is installed (:func:`tracing`).
"""

from __future__ import annotations

import ctypes
import sys
import threading

__all__ = ["raise_in_thread", "tracing"]


def raise_in_thread(thread: threading.Thread, exc: type[BaseException]) -> bool:
    """Raise ``exc`` in ``thread`` at its next Python instruction; False when it is not safe.

    Not while a trace or profile function is installed (a debugger, coverage, a profiler):
    CPython then spins every traced thread at 100 % CPU for as long as the exception waits to
    land — for the whole of a body blocked in C code. The body is told to stop through its
    context only, and left behind if it ignores that.
    """
    if tracing() or thread.ident is None:
        return False
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(exc))
    return True


def tracing() -> bool:
    """True when a trace or profile function is installed here or for new threads."""
    hooks = (sys.gettrace, sys.getprofile, threading.gettrace, threading.getprofile)
    return any(hook() is not None for hook in hooks)
