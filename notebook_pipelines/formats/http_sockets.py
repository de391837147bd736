"""The sockets under :mod:`.http`: an httpcore network backend whose every wait is bounded by
one overall deadline and, when a ``stop`` event is given, sliced into :data:`SLICE`-second
waits so that setting it (Ctrl-C in another thread) ends the call at once: reads, the TCP
handshake and the TLS handshake (the DNS look-up is not sliced).
"""

from __future__ import annotations

import errno
import math
import os
import select
import socket
import ssl
import threading
import time
from typing import Any

__all__ = ["SLICE", "DeadlineBackend"]  # Expired, Stopped: http.py's own signals, not errors users see


class Expired(Exception):
    """The overall deadline passed between two socket operations."""


class Stopped(Exception):
    """The ``stop`` event was set while the call waited."""


#: the longest one socket wait lasts when a ``stop`` event is given (how soon a set stop is seen)
SLICE = 0.2


def _left(deadline: float, timeout: float | None) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise Expired
    return remaining if timeout is None or math.isinf(timeout) else min(remaining, timeout)


class _DeadlineStream:
    """A network stream whose every read and write waits at most for the time left; with a
    ``stop`` event, a read waits in slices of :data:`SLICE` seconds and ends once it is set."""

    def __init__(self, inner: Any, deadline: float, stop: threading.Event | None = None):
        self._inner, self._deadline, self._stop = inner, deadline, stop

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._stop is None:
            return self._inner.read(max_bytes, _left(self._deadline, timeout))
        import httpcore

        end = time.monotonic() + _left(self._deadline, timeout)
        while True:
            if self._stop.is_set():
                raise Stopped
            wait = end - time.monotonic()
            if wait <= 0:
                raise httpcore.ReadTimeout("timed out")
            try:  # a recv that timed out has read nothing: asking again loses no byte
                return self._inner.read(max_bytes, min(wait, SLICE))
            except httpcore.ReadTimeout:
                if wait <= SLICE:
                    raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if self._stop is not None and self._stop.is_set():
            raise Stopped
        self._inner.write(buffer, _left(self._deadline, timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> _DeadlineStream:  # fmt: skip
        sock = self._inner.get_extra_info("socket")
        if self._stop is None or not isinstance(sock, socket.socket) or isinstance(sock, ssl.SSLSocket):
            inner = self._inner.start_tls(ssl_context, server_hostname, _left(self._deadline, timeout))
            return _DeadlineStream(inner, self._deadline, self._stop)
        return _DeadlineStream(
            _handshake(sock, ssl_context, server_hostname, self), self._deadline, self._stop
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class DeadlineBackend:
    """httpcore's sync backend, with every connect, read and write bounded by one deadline."""

    def __init__(self, deadline: float, stop: threading.Event | None = None):
        import httpcore

        self._inner, self._deadline, self._stop = httpcore.SyncBackend(), deadline, stop

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> _DeadlineStream:
        if self._stop is None:
            stream = self._inner.connect_tcp(
                host,
                port,
                _left(self._deadline, timeout),
                local_address=local_address,
                socket_options=socket_options,
            )
            return _DeadlineStream(stream, self._deadline, self._stop)
        return _DeadlineStream(
            _connect(host, port, self._deadline, self._stop, local_address, socket_options),
            self._deadline,
            self._stop,
        )

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        raise OSError("unix sockets are not used")  # pragma: no cover

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, max(0.0, self._deadline - time.monotonic())))


def _connect(
    host: str, port: int, deadline: float, stop: threading.Event, local_address: Any, options: Any
) -> Any:
    """httpcore's TCP connect, waiting for the handshake in :data:`SLICE` slices so that ``stop``
    ends it (a firewall that drops packets leaves a plain connect waiting for its whole timeout)."""
    import httpcore
    from httpcore._backends.sync import SyncStream

    failure: OSError | None = None
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            for option in options or ():
                sock.setsockopt(*option)
            if local_address:
                sock.bind((local_address, 0))
            sock.setblocking(False)
            code = sock.connect_ex(address)
            while code in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
                if stop.is_set():
                    raise Stopped
                if select.select([], [sock], [], min(SLICE, _left(deadline, None)))[1]:
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise OSError(code, os.strerror(code))
            sock.setblocking(True)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return SyncStream(sock)
        except OSError as err:
            sock.close()
            failure = err
        except BaseException:
            sock.close()
            raise
    raise httpcore.ConnectError(str(failure or f"no address for {host}"))


def _handshake(sock: socket.socket, context: ssl.SSLContext, hostname: str | None, stream: Any) -> Any:
    """httpcore's TLS upgrade of ``sock``, the handshake awaited in :data:`SLICE` slices so that
    the stream's ``stop`` ends it (a server that accepts and never answers the hello)."""
    import httpcore
    from httpcore._backends.sync import SyncStream

    try:
        tls = context.wrap_socket(sock, server_hostname=hostname, do_handshake_on_connect=False)
        tls.setblocking(False)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                waits: tuple[list, list] = ([tls], [])
            except ssl.SSLWantWriteError:
                waits = ([], [tls])
            if stream._stop.is_set():
                raise Stopped
            select.select(*waits, [], min(SLICE, _left(stream._deadline, None)))
        tls.setblocking(True)
    except (ssl.SSLError, OSError) as err:
        sock.close()
        raise httpcore.ConnectError(str(err) or type(err).__name__) from None
    except BaseException:
        sock.close()
        raise
    return SyncStream(tls)
