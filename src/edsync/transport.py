"""One HTTP connection pool per trust setting, shared by every client of the process.

A source's client used to build its own transport, and with it its own TLS
context (the system's CA store loaded: about 0.8 MB) and connection pool: a
thousand sources on one upstream cost gigabytes and a thousand pools to the
same host (SPEC 8). Clients now borrow a transport keyed by their
``ca_bundle`` and give it back when they close; the last one out closes it.
Credentials stay on each client (its headers or auth), never on the transport.

Every socket operation of a pooled connection (connect, TLS handshake, each
write and read) ends by the deadline of the attempt in progress on its thread
(``deadline``): httpx's ``timeout`` bounds each read alone, so an answer that
trickles in a byte at a time would otherwise never time out (SPEC 5.1).
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

# Enough for the poll workers of one process and the publisher; a host gets
# at most this many connections whatever the number of sources on it.
LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=32)


@dataclass(slots=True)
class _Shared:
    transport: httpx.HTTPTransport
    users: int = 0


_shared: dict[str | None, _Shared] = {}
_mutex = threading.Lock()


def borrow(ca_bundle: str | None) -> httpx.HTTPTransport:
    """The process's transport for this trust setting (``None``: the system CAs)."""
    with _mutex:
        entry = _shared.get(ca_bundle)
        if entry is None:
            entry = _shared[ca_bundle] = _Shared(_transport(ca_bundle))
        entry.users += 1
        return entry.transport


def give_back(transport: httpx.HTTPTransport) -> None:
    """One client is done with ``transport``; the last one closes it."""
    with _mutex:
        for key, entry in list(_shared.items()):
            if entry.transport is transport:
                entry.users -= 1
                if entry.users <= 0:
                    del _shared[key]
                    transport.close()
                return


def in_use() -> int:
    """How many transports are open (for tests and benchmarks)."""
    with _mutex:
        return len(_shared)


def _transport(ca_bundle: str | None) -> httpx.HTTPTransport:
    verify: ssl.SSLContext | bool = True  # httpx's own default store
    if ca_bundle:
        # Adds the CA to the system ones; verification is never turned off.
        verify = ssl.create_default_context()
        verify.load_verify_locations(ca_bundle)
    return _DeadlineTransport(httpx.create_ssl_context(verify=verify), LIMITS)


# -- the attempt's deadline ------------------------------------------------------

_deadline: ContextVar[float | None] = ContextVar("edsync_http_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Within this block, this thread's requests end ``seconds`` from now: each
    socket operation waits at most what is left, and none starts after that
    (httpcore's ``ReadTimeout`` and kin, as httpx's own timeouts raise)."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def _left(timeout: float | None, expired: type[httpcore.TimeoutException]) -> float | None:
    """``timeout`` (httpx's, per operation) cut to what is left of the deadline."""
    end = _deadline.get()
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise expired("the attempt's timeout has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the deadline in force
    when it is made (the stream is shared by the pool; the deadline is not)."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(
            ssl_context, server_hostname, _left(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own sockets, each wrapped in a ``_DeadlineStream``."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, _left(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(
            path, _left(timeout, httpcore.ConnectTimeout), socket_options
        )
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _DeadlineTransport(httpx.HTTPTransport):
    """httpx's transport over the deadline backend.

    httpx takes no network backend (encode/httpx#3180), so its pool is built
    again with one, with the parameters httpx gives it: ``handle_request``
    and ``close`` use nothing else. The trickle tests
    (tests/integration/test_hostile_upstreams.py) fail if httpx stops reading it.
    """

    def __init__(self, ssl_context: ssl.SSLContext, limits: httpx.Limits) -> None:
        super().__init__(verify=ssl_context, limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_DeadlineBackend(),
        )
