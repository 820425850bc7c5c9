"""One HTTP connection pool per trust setting, shared by every client of the process.

A source's client used to build its own transport, and with it its own TLS
context (the system's CA store loaded: about 0.8 MB) and connection pool: a
thousand sources on one upstream cost gigabytes and a thousand pools to the
same host (SPEC 8). Clients now borrow a transport keyed by their
``ca_bundle`` and give it back when they close; the last one out closes it.
Credentials stay on each client (its headers or auth), never on the transport.
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass

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
    return httpx.HTTPTransport(verify=verify, limits=LIMITS)
