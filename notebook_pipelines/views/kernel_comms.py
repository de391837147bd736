"""Widget clicks while the kernel is busy: a widget's messages answered on a subshell thread.

A foreground ``p.run()`` keeps the kernel's main thread busy until the run ends, and a kernel
handles a frontend's widget messages (a button's click) on that thread — after the cell, too
late to answer a manual intervention or to cancel the run. ipykernel 7 has *subshells*
(JEP 91): threads with a message loop of their own, and it routes each comm message to the
subshell its comm names (``Comm._reply_subshell_for``, ipykernel ≥ 7.4).
:func:`answer_off_main_thread` makes one subshell for this package (once per kernel) and
routes the given widgets' comms to it, so their click handlers run there while the main
thread runs the pipeline. Those handlers only post to thread-safe objects (an intervention
request's ``answer``, ``Scheduler.cancel``).

The subshell's message lock is held for good: ipykernel then dispatches the comm messages it
routes there "concurrently" (its path for widget messages during a busy async cell), which
publishes no busy/idle status, so the frontend's kernel indicator stays *busy* while the cell
runs, as it should.

The subshell is this package's: it takes only the comm messages routed to it (its lock being
held, an ``execute_request`` sent to it by id would wait for good). If a frontend deletes it,
messages go back to the main shell and the next view makes a new one. While the subshell
handles a click, ipykernel makes that message the *global* parent of output for a moment (its
``set_parent``), so a line a step prints from a worker thread at that very moment may be shown
under the click rather than the cell; it is still in the step's log.

This leans on ipykernel internals (the subshell manager, the comm's routing hook). Each is
looked up, never assumed: where one is missing (an older ipykernel, another kernel, subshells
off) nothing is routed, :func:`answer_off_main_thread` returns False, and the live view says
that its buttons answer only in a run started with ``p.start()``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from typing import Any

__all__ = ["answer_off_main_thread", "subshell_id"]

#: (kernel, subshell id or None) of the subshell made for this package: tried once per kernel
_SUBSHELL: tuple[Any, str | None] | None = None
_LOCK = threading.Lock()
_ROUTED: dict[type, type] = {}
#: seconds to wait for the shell channel thread to make the subshell
_SETUP_WAIT = 5.0


def _kernel() -> Any:
    from .progress import in_kernel

    if not in_kernel():
        return None
    import IPython

    return IPython.get_ipython().kernel


def subshell_id() -> str | None:
    """The id of this package's subshell in the running kernel (made on first use), or None
    where the kernel cannot route widget messages to a subshell."""
    global _SUBSHELL
    kernel = _kernel()
    if kernel is None:
        return None
    with _LOCK:
        if _SUBSHELL is not None and _SUBSHELL[0] is kernel:
            sid = _SUBSHELL[1]
            if sid is None or _alive(kernel, sid):
                return sid  # a failure is kept too: no wait per view
        made = _make_subshell(kernel)
        _SUBSHELL = (kernel, made)
        return made


def _alive(kernel: Any, sid: str) -> bool:
    """The subshell still exists (a frontend may have deleted it)."""
    try:
        return sid in kernel.shell_channel_thread.manager.list_subshell()
    except Exception:  # pragma: no cover - an ipykernel that changed
        return False


def _make_subshell(kernel: Any) -> str | None:
    channel = getattr(kernel, "shell_channel_thread", None)
    if channel is None or not hasattr(channel, "io_loop"):
        return None  # no subshells in this kernel
    if getattr(channel, "_manager", None) is None and threading.current_thread() is not getattr(
        channel, "parent_thread", None
    ):
        return None  # the manager is made lazily, on the kernel's main thread only
    manager = channel.manager
    if not hasattr(manager, "_create_subshell") or not hasattr(manager, "get_subshell_asyncio_lock"):
        return None
    made: dict[str, Any] = {}
    ready = threading.Event()

    def create() -> None:  # on the shell channel thread, as the manager requires
        try:
            made["id"] = manager._create_subshell()
        except BaseException as exc:  # pragma: no cover - an ipykernel that changed
            made["error"] = exc
        finally:
            ready.set()

    channel.io_loop.add_callback(create)
    if not ready.wait(_SETUP_WAIT) or "id" not in made:
        return None
    sid = made["id"]
    try:
        with manager._lock_cache:
            loop = manager._get_subshell(sid).io_loop.asyncio_loop
        lock = manager.get_subshell_asyncio_lock(sid)
        asyncio.run_coroutine_threadsafe(lock.acquire(), loop).result(_SETUP_WAIT)
    except Exception:  # pragma: no cover - an ipykernel that changed: leave no subshell behind
        channel.io_loop.add_callback(manager._delete_subshell, sid)
        return None
    return sid


def _routed_class(base: type) -> type:
    routed = _ROUTED.get(base)
    if routed is None:

        def _reply_subshell_for(self: Any, data: Any, default: Any) -> Any:
            # on the shell channel thread, for each message of this comm; a deleted subshell
            # would lose the click: the main shell takes it then (after the cell)
            sid = self._nbp_subshell
            return sid if _alive(self.kernel or _kernel(), sid) else default

        routed = type(base.__name__, (base,), {"_reply_subshell_for": _reply_subshell_for})
        routed.__module__ = base.__module__
        _ROUTED[base] = routed
    return routed


def answer_off_main_thread(widgets: Iterable[Any]) -> bool:
    """Have the kernel handle these widgets' frontend messages on this package's subshell.

    Returns True when every widget is routed (their handlers run while the main thread is
    busy), False where the kernel cannot (nothing is changed then). Outside a kernel: False.
    """
    widgets = list(widgets)
    comms = [getattr(w, "comm", None) for w in widgets]
    if not comms or any(c is None or not hasattr(c, "_reply_subshell_for") for c in comms):
        return False
    sid = subshell_id()
    if sid is None:
        return False
    for comm in comms:
        comm._nbp_subshell = sid  # first: the shell channel thread may route a message any time
        if type(comm) not in _ROUTED.values():
            comm.__class__ = _routed_class(type(comm))
    return True
