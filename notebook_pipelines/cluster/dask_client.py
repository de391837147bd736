"""The kernel's connection to a Dask scheduler, for :class:`~notebook_pipelines.cluster.dask.DaskExecutor`:
:func:`handshake` checks that a Dask scheduler listens at an address before a ``Client`` is made
(bounded in time and bytes), and :class:`SchedulerEvents` hands the scheduler's ``remove-worker``
events to the executors running on a client.

It stands on the standard library and ``distributed`` (imported when an address is checked);
nothing of the package.
"""

from __future__ import annotations

import inspect
import socket
import struct
import threading
import time
from typing import Any, ClassVar, Protocol


class WorkerListener(Protocol):
    """What :class:`SchedulerEvents` calls on an executor: a worker left the cluster (the
    scheduler's ``remove-worker`` message); it may return an awaitable."""

    def _worker_left(self, message: dict) -> Any: ...


__all__ = ["NotDask", "SchedulerEvents", "cluster_workers", "handshake"]

#: the most bytes of a scheduler's first message (its handshake: a few hundred bytes)
_HANDSHAKE_BYTES = 64 * 1024


class NotDask(Exception):
    """The peer answered, but not as a Dask scheduler does."""


def _receive(sock: socket.socket, n: int, deadline: float) -> bytes:
    """Exactly ``n`` bytes, each wait at most until ``deadline``."""
    data = bytearray()
    while len(data) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        chunk = sock.recv(min(n - len(data), 65536))
        if not chunk:
            raise NotDask("it closed the connection without the handshake a Dask scheduler sends")
        data += chunk
    return bytes(data)


def handshake(address: str, timeout: float) -> None:
    """Check that a Dask scheduler listens at a ``tcp://`` address (other protocols: no check):
    connect and read the handshake a scheduler sends first, all within ``timeout`` seconds, and
    without trusting what comes back (a length is checked before anything is read or allocated).

    Checked before making the client: a ``Client`` pointed at another service waits for ever for
    the handshake (an HTTP server waits for a request), or allocates what a hostile length prefix
    says (1 TiB: ``MemoryError``); one that fails leaves its event-loop thread running and delays
    the interpreter's exit (distributed 2026.8).

    Raises:
        OSError: nothing listens there (or the name does not resolve).
        TimeoutError: no handshake within ``timeout``.
        NotDask: something else answered.
    """
    from distributed.comm import get_address_host_port
    from distributed.protocol.core import loads

    if not (address.startswith("tcp://") or "://" not in address):
        return
    host, port = get_address_host_port(address if "://" in address else f"tcp://{address}")
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        (size,) = struct.unpack("Q", _receive(sock, 8, deadline))
        if not 16 <= size <= _HANDSHAKE_BYTES:
            raise NotDask(
                f"its first message announces {size:,} bytes, where a scheduler's handshake has a few hundred"
            )
        blob = _receive(sock, size, deadline)
    (count,) = struct.unpack_from("Q", blob)
    lengths = struct.unpack_from(f"{count}Q", blob, 8) if 1 <= count <= 16 and 8 * (count + 1) <= size else ()
    if not lengths or 8 * (count + 1) + sum(lengths) != size:
        raise NotDask("its first message is not in Dask's framing")
    frames, start = [], 8 * (count + 1)
    for length in lengths:
        frames.append(blob[start : start + length])
        start += length
    try:
        info = loads(frames, deserialize=False)
    except Exception:  # any decoding error: not Dask's handshake
        info = None
    if not isinstance(info, dict) or "compression" not in info:
        raise NotDask("its first message is not a Dask handshake")


def cluster_workers(client: Any) -> dict[str, Any]:
    """The cluster's workers, ``{address: info}`` (resources, threads…), asked of its scheduler.

    Not ``client.scheduler_info()["workers"]``: that returns the client's cached identity after
    refreshing it, and the client's own periodic refresh (every 2 s; since distributed 2025 it
    asks for no per-worker details) can land in between, so a cluster with workers looked empty
    now and then (≈4 % of calls with the refresh at 1 ms).
    """
    try:
        info = client.sync(client.scheduler.identity, n_workers=-1)
    except TypeError:  # a scheduler older than ``n_workers`` (distributed < 2025): all of them
        info = client.sync(client.scheduler.identity)
    return dict(info.get("workers") or {})


class SchedulerEvents:
    """The scheduler's events for one client, handed to the executors running on it.

    A client has one handler per topic; this one subscribes to ``"all"`` while at least one
    executor runs, and unsubscribes after the last (a subscribed client that closes makes the
    scheduler log an error). A handler the user had for ``"all"`` is called too, and put back.
    """

    _by_client: ClassVar[dict[str, SchedulerEvents]] = {}
    _lock = threading.Lock()

    def __init__(self, client: Any):
        self.client, self.executors = client, set()
        self.previous: Any = None

    @classmethod
    def of(cls, client: Any) -> SchedulerEvents:
        with cls._lock:
            events = cls._by_client.get(client.id)
            if events is None:
                events = cls._by_client[client.id] = SchedulerEvents(client)
            return events

    def add(self, executor: WorkerListener) -> None:
        with self._lock:
            first = not self.executors
            self.executors.add(executor)
        if first:
            # one handler per topic and client (no public getter): one of the user's is chained;
            previous = getattr(self.client, "_event_handlers", {}).get("all")
            # the client keeps a handler after unsubscribing: ours from an earlier run is not chained
            self.previous = (
                None if isinstance(getattr(previous, "__self__", None), SchedulerEvents) else previous
            )
            self.client.subscribe_topic("all", self.handle)

    def discard(self, executor: WorkerListener) -> None:
        with self._lock:
            if executor not in self.executors:
                return
            self.executors.discard(executor)
            last = not self.executors
            if last:
                self._by_client.pop(self.client.id, None)
        if last and self.client.status == "running":
            if self.previous is not None:
                self.client.subscribe_topic("all", self.previous)
            else:
                self.client.unsubscribe_topic("all")

    def handle(self, event: Any) -> Any:
        """Called on the client's event loop with ``(time, message)``; may return an awaitable."""
        pending = [self.previous(event)] if self.previous is not None else []
        message = event[1] if isinstance(event, tuple) and len(event) == 2 else None
        if isinstance(message, dict) and message.get("action") == "remove-worker":
            with self._lock:
                executors = list(self.executors)
            pending += [executor._worker_left(message) for executor in executors]
        pending = [p for p in pending if inspect.isawaitable(p)]
        return _in_turn(*pending) if pending else None


async def _in_turn(*awaitables: Any) -> None:
    for awaitable in awaitables:
        await awaitable
