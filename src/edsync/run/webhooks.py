"""Listening for webhooks that wake a source's poll (SPEC 2.1, "Webhooks").

A small threaded HTTP server per listen address; several sources may share
one address, each under its own path. A POST to a source's path whose
``Authorization`` header is the configured value is answered 204 at once and
reported (``on_accepted``); its body is read (up to ``MAX_BODY``) and
dropped: the feed, not the payload, stays the truth, so a lost, duplicated,
replayed or forged webhook changes nothing but when the next poll runs.

Refusals, each reported (``on_rejected``) by reason, never with the header's
value: an unknown path 404, another method 405, a wrong or missing
authorization 401, a body over ``MAX_BODY`` 413 (known from Content-Length
before anything is read), an unreadable length or chunk 400.
"""

from __future__ import annotations

import hmac
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import structlog

from edsync.errors import FatalError

if TYPE_CHECKING:
    from email.message import Message
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from io import BufferedIOBase

    from edsync.settings import Config

log = structlog.get_logger("edsync.webhooks")

MAX_BODY = 1 << 20
"""Bytes a webhook's body may hold (a journal page of a thousand items fits)."""
READ_TIMEOUT = 10.0
"""Seconds a client may take to send its request: a stalled one is dropped."""
LINGER_BYTES = 4 << 20
LINGER_SECONDS = 2.0
"""After a refusal, what of the client's unread body is read and dropped."""
_MAX_LINE = 1024


@dataclass(frozen=True, slots=True)
class Route:
    """A source's webhook: whose it is, and the Authorization value it must carry."""

    source: str
    authorization: bytes


Routes = Mapping[str, Route]
"""Path → its route, for one listen address."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to answer a request: ``status``; ``reason`` for a refusal (the
    metric's label), ``source`` when the path is one's."""

    status: int
    reason: str | None = None
    source: str = ""


def judge(
    routes: Routes, method: str, target: str, authorization: str | None, length: str | None
) -> Verdict:
    """The answer to a request, from its line and headers alone (``length``:
    Content-Length, None when absent): 204 means read the body, then report it."""
    route = routes.get(urlsplit(target).path)
    if route is None:
        return Verdict(404, "not_found")
    if method != "POST":
        return Verdict(405, "method", route.source)
    given = (authorization or "").strip().encode("utf-8", "surrogateescape")
    # Constant time: how much of a guess was right must not show in the timing.
    if not given or not hmac.compare_digest(given, route.authorization):
        return Verdict(401, "unauthorized", route.source)
    if length is not None:
        if not length.strip().isdigit():
            return Verdict(400, "bad_request", route.source)
        if int(length) > MAX_BODY:
            return Verdict(413, "too_large", route.source)
    return Verdict(204, None, route.source)


def routes_by_address(config: Config) -> dict[tuple[str, int], dict[str, Route]]:
    """The configured webhooks, grouped by the address they are served on."""
    found: dict[tuple[str, int], dict[str, Route]] = {}
    for name, settings in config.sources.items():
        hook = settings.hook()
        address = hook.address() if hook is not None else None
        if hook is None or address is None:
            continue
        secret = hook.authorization.reveal().encode("utf-8", "surrogateescape")
        found.setdefault(address, {})[hook.path] = Route(name, secret)
    return found


Accepted = Callable[[str], None]
Rejected = Callable[[str, str], None]


class Listener:
    """One listen address: its server thread, and its routes (swappable)."""

    def __init__(
        self,
        address: tuple[str, int],
        routes: Routes,
        on_accepted: Accepted,
        on_rejected: Rejected,
    ) -> None:
        self.routes = routes
        # http.server is imported in these: a daemon without webhooks never loads it.
        server_class = _server_class(ipv6=":" in address[0])
        try:
            self.server = server_class(address, _handler(self, on_accepted, on_rejected))
        except OSError as exc:
            raise FatalError(
                f"cannot listen for webhooks on {_show(address)}: {exc.strerror or exc}"
            ) from None
        self.thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"edsync-webhooks-{address[1]}",
            daemon=True,
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self.thread.start()
        log.info("webhooks_listening", address=_show(self.address), paths=sorted(self.routes))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Webhooks:
    """Every listener of the daemon, reconciled with the config (start, reload)."""

    def __init__(self, on_accepted: Accepted, on_rejected: Rejected) -> None:
        self.on_accepted = on_accepted
        self.on_rejected = on_rejected
        self.listeners: dict[tuple[str, int], Listener] = {}

    def apply(self, config: Config) -> None:
        """Listen where ``config`` says, with its routes: an address no longer
        named stops, a new one starts (FatalError if it cannot), one kept
        takes its new routes at once."""
        wanted = routes_by_address(config)
        for address in set(self.listeners) - set(wanted):
            self.listeners.pop(address).stop()
        for address, routes in wanted.items():
            listener = self.listeners.get(address)
            if listener is not None:
                listener.routes = routes  # one reference swapped: requests see old or new
                continue
            listener = Listener(address, routes, self.on_accepted, self.on_rejected)
            self.listeners[address] = listener
            listener.start()

    def close(self) -> None:
        while self.listeners:
            self.listeners.popitem()[1].stop()


def _show(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _server_class(ipv6: bool) -> type[ThreadingHTTPServer]:
    import sys
    from http.server import ThreadingHTTPServer

    class Server(ThreadingHTTPServer):
        daemon_threads = True  # a stop never waits for a client
        address_family = socket.AF_INET6 if ipv6 else socket.AF_INET

        def handle_error(self, request: object, client_address: object) -> None:
            """A client that hangs up mid-request is routine: no traceback on stderr."""
            error = sys.exc_info()[1]
            log.info("webhook_connection_lost", error=type(error).__name__)

    return Server


_STATUS = {"too_large": 413, "bad_request": 400}


def read_body(stream: BufferedIOBase, headers: Message) -> str | None:
    """Read a request's body and drop it; the refusal's reason if it is too
    large (chunked: found while reading) or malformed."""
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        return _read_chunked(stream)
    length = int(headers.get("Content-Length") or 0)
    if length and len(stream.read(length)) != length:
        return "bad_request"  # the client hung up mid-body
    return None


def _read_chunked(stream: BufferedIOBase) -> str | None:
    total = 0
    while True:
        try:
            size = int(stream.readline(_MAX_LINE).split(b";")[0].strip(), 16)
        except ValueError:
            return "bad_request"
        total += size
        if total > MAX_BODY:
            return "too_large"
        if size == 0:
            break
        stream.read(size)
        stream.readline(_MAX_LINE)
    while stream.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
        pass  # trailer fields
    return None


def _linger(connection: socket.socket) -> None:
    """Close after a refusal without cutting the answer off: a socket closed
    with unread bytes resets, and a reset can destroy the answer before the
    client reads it. So stop sending, then drop what the client still sends,
    up to a limit in bytes and in time."""
    left = LINGER_BYTES
    try:
        connection.shutdown(socket.SHUT_WR)
        connection.settimeout(LINGER_SECONDS)
        while left > 0 and (chunk := connection.recv(min(65536, left))):
            left -= len(chunk)
    except OSError:
        return  # gone already, or too slow: closed as it is


def _log_refusal(verdict: Verdict, method: str, target: str, client: str) -> None:
    """One line a refusal, naming neither the header's value nor the body."""
    log.warning(
        "webhook_rejected",
        source=verdict.source or None,
        reason=verdict.reason,
        status=verdict.status,
        method=method,
        path=urlsplit(target).path[:200],
        client=client,
    )


def _handler(
    listener: Listener, on_accepted: Accepted, on_rejected: Rejected
) -> type[BaseHTTPRequestHandler]:
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive for a sender that keeps its connection
        server_version = "edsync"
        sys_version = ""
        timeout = READ_TIMEOUT

        def _handle(self) -> None:
            verdict = judge(
                listener.routes,
                self.command,
                self.path,
                self.headers.get("Authorization"),
                self.headers.get("Content-Length"),
            )
            # A refused length is never read; any other body is read and dropped.
            unread = verdict.status in (400, 413)
            if not unread and (refusal := read_body(self.rfile, self.headers)) is not None:
                unread = True
                if verdict.status == 204:
                    verdict = Verdict(_STATUS[refusal], refusal, verdict.source)
            self._answer(verdict, close=unread)
            if unread:
                _linger(self.connection)
            if verdict.reason is None:
                on_accepted(verdict.source)
            else:
                self._refused(verdict)

        do_POST = do_GET = do_HEAD = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle

        def _answer(self, verdict: Verdict, *, close: bool) -> None:
            body = b"" if verdict.status == 204 else f"{verdict.reason}\n".encode()
            self.send_response(verdict.status)
            if verdict.status == 405:
                self.send_header("Allow", "POST")
            if close:
                self.close_connection = True
                self.send_header("Connection", "close")
            if verdict.status != 204:
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)
            self.wfile.flush()  # answered before the wake is reported

        def _refused(self, verdict: Verdict) -> None:
            _log_refusal(verdict, self.command, self.path, str(self.client_address[0]))
            on_rejected(verdict.source, verdict.reason or "")

        def log_message(self, format: str, *args: object) -> None:
            """Silent: refusals get a structured line of their own, without the header."""

    return Handler
