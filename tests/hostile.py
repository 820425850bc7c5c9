"""Small HTTP upstreams that misbehave on purpose, for the tests of hostile
upstreams (tests/integration/test_hostile_upstreams.py).

``Upstream`` answers every request through a ``route`` (a function of the
request seen) with an ``Answer`` (a status, JSON or bytes, headers) or a
``Trickle`` (an answer that never ends: a byte every so often, of the body or
of the header block itself). It listens on any loopback address: on Linux all
of 127/8 is loopback, so an upstream on 127.0.0.2 stands for another host. It
serves TLS when given a server context. Every request is recorded with the
``Authorization`` header it carried and the client's port (its connection).

``stop()`` releases every held connection (a trickle included) and joins
every handler thread, so no socket outlives a test.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self
from urllib.parse import parse_qsl, urlsplit

import orjson


@dataclass(frozen=True, slots=True)
class Seen:
    """One request as it arrived."""

    method: str
    path: str
    query: Mapping[str, str]
    authorization: str | None
    peer_port: int  # the client's end of the connection: one per connection
    at: float  # time.monotonic() when its head was read


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole answer: ``body`` is sent as it is if bytes, else as JSON."""

    status: int = 200
    body: object = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return b"" if self.body is None else orjson.dumps(self.body)


@dataclass(frozen=True, slots=True)
class Trickle:
    """An answer that never ends: one byte every ``every`` seconds, until the
    client hangs up. ``headers=False``: a 200 whose body (a ``Content-Length``
    it never reaches) trickles; ``headers=True``: the header block itself
    trickles (one endless header line), so no status is ever complete."""

    every: float = 0.5
    headers: bool = False


Route = Callable[[Seen], Answer | Trickle]


def not_found(_: Seen) -> Answer:
    return Answer(404, {"error": "no such thing here"})


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins every handler thread

    def __init__(self, owner: Upstream, host: str) -> None:
        self.owner = owner
        super().__init__((host, 0), _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """Quiet: a client hanging up mid-answer is what these servers provoke."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        owner = self.server.owner
        owner.track(self.request)
        if owner.tls is not None:
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError):
                # Not TLS (a plain-http request on the https port) or a refused certificate.
                owner.count_handshake_failure()
                raise
        super().setup()

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.owner.untrack(self.request)

    def log_message(self, format: str, *args: object) -> None:
        """Silent."""

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self._answer()

    def _answer(self) -> None:
        owner = self.server.owner
        url = urlsplit(self.path)
        seen = Seen(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            authorization=self.headers.get("Authorization"),
            peer_port=int(self.client_address[1]),
            at=time.monotonic(),
        )
        owner.record(seen)
        answer = owner.route(seen)
        if isinstance(answer, Trickle):
            self.close_connection = True
            self._trickle(answer)
            return
        body = answer.payload()
        self.send_response(answer.status)
        headers = {"Content-Type": "application/json", **answer.headers}
        headers.setdefault("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _trickle(self, trickle: Trickle) -> None:
        owner = self.server.owner
        if trickle.headers:
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: "
            byte = b"a"
        else:
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            head += b"Content-Length: 1000000\r\n\r\n["
            byte = b" "
        try:
            self.wfile.write(head)
            owner.trickling.set()
            # The pace of the drip, not a wait for something: stop() cuts it short.
            while not owner.stopping.wait(trickle.every):
                self.wfile.write(byte)
        except OSError:
            pass  # the client hung up: what a timeout does


class Upstream:
    """An HTTP server on ``host`` answering through ``route``; see the module."""

    def __init__(
        self,
        route: Route = not_found,
        *,
        host: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.route = route
        self.host = host
        self.tls = tls
        self.stopping = threading.Event()
        self.trickling = threading.Event()  # set when a trickle has begun
        self._lock = threading.Condition()
        self._seen: list[Seen] = []
        self._connections: set[socket.socket] = set()
        self._handshake_failures = 0
        self._server = _Server(self, host)  # bound and listening from here on
        if tls is not None:
            # Each connection handshakes in its handler thread, never in accept().
            self._server.socket = tls.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        with self._lock:
            held = list(self._connections)
        for connection in held:
            with contextlib.suppress(OSError):  # the client may be gone already
                connection.shutdown(socket.SHUT_RDWR)
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- where it is, what it saw -------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Its origin, e.g. ``http://127.0.0.2:41234`` (no trailing slash)."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    @property
    def handshake_failures(self) -> int:
        """Connections whose TLS handshake failed: a plain-http request among them."""
        with self._lock:
            return self._handshake_failures

    def record(self, seen: Seen) -> None:
        with self._lock:
            self._seen.append(seen)
            self._lock.notify_all()

    def track(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    def count_handshake_failure(self) -> None:
        with self._lock:
            self._handshake_failures += 1
