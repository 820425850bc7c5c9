"""HTTP plumbing for the simulator: a threaded stdlib server and a route table.

Route modules (``dreamapply``, ``edlink`` and ``learninghub``) turn a
``Request`` into a ``Response``; this module reads and writes the wire, records
requests, injects faults and grows the journal over time.
"""

from __future__ import annotations

import contextlib
import math
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Self
from urllib.parse import parse_qsl, urlsplit

from edsync_sim import dreamapply, dreamapply_lists, dreamapply_resources, edlink, learninghub
from edsync_sim.dataset import Journal
from edsync_sim.edlink_graph import DEFAULT_TOKEN, EdlinkGraph, utc_now
from edsync_sim.learninghub import LearningHub
from edsync_sim.web import JSON, Request, Response, Route, json_error
from edsync_sim.webhooks import WebhookSender

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_EDLINK_TOKEN",
    "RecordedRequest",
    "Simulator",
    "serve_forever",
]

DEFAULT_API_KEY = "sim-dreamapply-key"
DEFAULT_EDLINK_TOKEN = DEFAULT_TOKEN

# How often the accept loop looks for a stop request: bounds how long stop() takes.
_POLL_INTERVAL = 0.05
_WRITE_BUFFER = 64 * 1024
_MAX_LINE = 64 * 1024


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request as the simulator saw it; header names are lower-case."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    at: float  # time.monotonic() on arrival


@dataclass(slots=True)
class _Fault:
    response: Response | None  # None: drop the connection without answering
    remaining: int
    route: str | None


Dispatch = Callable[[Request], Response | None]


class _Server(ThreadingHTTPServer):
    """Knows its open connections, so stop() can end idle keep-alive ones too."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that vanishes mid-request (a SIGKILLed backfill) is routine here."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]

    def __init__(
        self, address: tuple[str, int], dispatch: Dispatch, tls: ssl.SSLContext | None = None
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.dispatch = dispatch
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _RequestHandler)
        if tls is not None:
            # Accepted connections come out wrapped; each handshakes in its own
            # handler thread, so a slow or refusing client never blocks accept().
            self.socket = tls.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # the peer may have closed it already
                connection.shutdown(socket.SHUT_RDWR)


class _RequestHandler(BaseHTTPRequestHandler):
    # HTTP/1.1 with Content-Length keeps clients' connections alive.
    protocol_version = "HTTP/1.1"
    server_version = "edsync-simulator"
    sys_version = ""
    # Headers and body leave in one segment; no Nagle / delayed-ACK stalls.
    disable_nagle_algorithm = True
    wbufsize = _WRITE_BUFFER
    server: _Server

    _handshake_failed = False

    def setup(self) -> None:
        connection: socket.socket = self.request
        self.server.track(connection)
        if isinstance(connection, ssl.SSLSocket):
            try:
                connection.do_handshake()
            except OSError:  # ssl.SSLError too: the client refused our certificate
                self._handshake_failed = True
        super().setup()

    def handle(self) -> None:
        if not self._handshake_failed:  # nothing to answer; no traceback on stderr
            super().handle()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: tests and benchmarks read their own output."""

    def _serve(self) -> None:
        request = self._read_request()
        if request is None:
            return
        response = self.server.dispatch(request)
        if response is None:
            self.close_connection = True
            return
        self._write(request.method, response)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def _read_request(self) -> Request | None:
        url = urlsplit(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            if "chunked" in headers.get("transfer-encoding", "").lower():
                body = self._read_chunked()
            else:
                length = int(headers.get("content-length", "0"))
                body = self.rfile.read(length) if length > 0 else b""
        except ValueError:
            self._write(self.command, json_error(400, "bad Content-Length or chunked body"))
            self.close_connection = True
            return None
        return Request(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers=headers,
            body=body,
        )

    def _read_chunked(self) -> bytes:
        """A ``Transfer-Encoding: chunked`` body; ValueError when malformed."""
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline(_MAX_LINE).split(b";", 1)[0].strip(), 16)
            if size == 0:
                break
            chunks.append(self.rfile.read(size))
            if self.rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n"):
                raise ValueError("chunk not followed by CRLF")
        while self.rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
            pass  # trailer fields: ignored
        return b"".join(chunks)

    def _write(self, method: str, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if method != "HEAD":
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(response.body)


class Simulator:
    """A DreamApply journal and an Edlink Graph served over real HTTP on a local port.

    ``rate`` grows the journal (and the Edlink stream) by that many generated
    events a second while running, computed on each request from ``clock``
    (inject a fake clock in tests). ``inject`` makes upcoming requests fail;
    ``requests`` records all. ``on_request``, when set, is called with each
    request once it is recorded and before it is routed (faults included), in
    the serving thread: a test can change the data at a precise moment, e.g.
    ``sim.journal.append(200)`` when the third ``/offers`` request arrives.
    An exception it raises is kept in ``errors`` and answered with a 500.

    DreamApply serves the journal and, over the same history, the list
    endpoints a mirror bootstraps from (``dreamapply_lists``): applicants,
    academic terms, applications (per term), an application's offers, offer
    types, purged resources, strict where the vendor's documents say Required;
    and the resources the journal's events name, by id
    (``dreamapply_resources``): an application (its offers, tasks, references,
    documents, flags and courses alone or expanded), an applicant, an invoice.
    ``embed_offers`` (default True) makes the applications list embed offers
    on ``expand=offers`` (or ``offer``); False plays a server that ignores
    that expansion, so a client must read each application's offers. The journal forgets events
    older than ``journal_window`` seconds before its clock (upstream keeps six
    months; ``None`` keeps all); the attribute may be changed while running.

    ``edlink`` is the Edlink side (``edlink_graph.EdlinkGraph``): ``edlink_people``
    sizes the initial graph, ``edlink_events`` (default five per person) the
    history, spread over the ``edlink_history_days`` before ``edlink_start``
    (default: ``edlink_clock()`` now). ``edlink_clock`` is Edlink's wall clock:
    growth events, retention and cursor expiry follow it.
    ``edlink_integration`` (``edlink.Integration``) is the integration behind
    the token: change its ``token``, set ``token_expired`` or its ``state``
    mid-run and Edlink's 400 ``INVALID_TOKEN`` / ``EXPIRED_TOKEN`` /
    ``INVALID_INTEGRATION_STATE`` follow.

    ``hub`` is the Learning Hub Event Store (``learninghub.LearningHub``): HTTP
    Basic ``hub_user`` / ``hub_key``, allowed to write ``hub_programs``; it
    records every PUT for tests (``hub.events``, ``hub.puts``).

    ``tls`` (a server-side ``ssl.SSLContext`` with its certificate loaded) serves
    HTTPS instead: ``url`` then starts with ``https://``, and the certificate must
    name ``host``.

    ``webhook_url`` plays DreamApply's webhooks: from ``start()`` on, each
    journal event appended (by ``journal.append``, or by ``rate``) is POSTed
    there, ``{"<id>": {item}}`` with ``Authorization: <webhook_authorization>``,
    from a thread of its own (``webhooks``: a ``WebhookSender``, its
    ``deliveries`` recorded). With ``rate`` the journal then also grows by
    itself, not only when a request arrives, so the webhooks keep coming.
    """

    def __init__(
        self,
        events: int = 1000,
        seed: int = 0,
        rate: float = 0.0,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = DEFAULT_API_KEY,
        start: datetime | None = None,
        clock: Callable[[], float] = time.monotonic,
        edlink_people: int = 200,
        edlink_events: int | None = None,
        edlink_token: str = DEFAULT_EDLINK_TOKEN,
        edlink_legacy_shape: bool = False,
        edlink_history_days: float = 10.0,
        edlink_start: datetime | None = None,
        edlink_clock: Callable[[], datetime] = utc_now,
        hub_user: str = learninghub.DEFAULT_HUB_USER,
        hub_key: str = learninghub.DEFAULT_HUB_KEY,
        hub_programs: tuple[str, ...] = learninghub.DEFAULT_HUB_PROGRAMS,
        tls: ssl.SSLContext | None = None,
        journal_window: float | None = dreamapply.RETENTION,
        webhook_url: str | None = None,
        webhook_authorization: str = "",
    ) -> None:
        if journal_window is not None and journal_window < 0:
            raise ValueError(f"journal_window must be None or at least 0, got {journal_window}")
        self.journal = Journal(events=events, seed=seed, start=start)
        self.journal_window = journal_window
        self.embed_offers = True
        self.on_request: Callable[[RecordedRequest], None] | None = None
        self.edlink = EdlinkGraph(
            people=edlink_people,
            events=edlink_events,
            seed=seed,
            history_days=edlink_history_days,
            start=edlink_start,
            clock=edlink_clock,
            legacy_shape=edlink_legacy_shape,
        )
        self.hub = LearningHub(hub_user, hub_key, hub_programs)
        self.api_key = api_key
        self.edlink_integration = edlink.Integration(edlink_token)
        self.rate = rate
        self.requests: list[RecordedRequest] = []
        self.errors: list[Exception] = []
        self.routes: list[Route] = [
            dreamapply.journal_route(
                self.journal, api_key, before=self._grow, window=lambda: self.journal_window
            ),
            *dreamapply_lists.list_routes(
                self.journal, api_key, before=self._grow, embed_offers=lambda: self.embed_offers
            ),
            *dreamapply_resources.resource_routes(self.journal, api_key, before=self._grow),
            *edlink.edlink_routes(
                self.edlink,
                self.edlink_integration,
                base_url=lambda: self.url,
                before=self._grow_edlink,
            ),
            learninghub.hub_route(self.hub),
        ]
        self._host = host
        self._port = port
        self._tls = tls
        self._clock = clock
        self._started_at: float | None = None
        self._grown = 0
        self._edlink_grown = 0
        self._grow_lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._recorded = threading.Condition()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.webhooks = (
            None
            if webhook_url is None
            else WebhookSender(self.journal, webhook_url, webhook_authorization)
        )
        self._stopping = threading.Event()

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._server = _Server((self._host, self._port), self._dispatch, self._tls)
        self._started_at = self._clock()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name=f"edsync-simulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._stopping.clear()
        if self.webhooks is not None:
            self.webhooks.start()
            if self.rate > 0:
                threading.Thread(target=self._tick, name="simulator-growth", daemon=True).start()
        return self

    def _tick(self) -> None:
        """Grow the journal on time, not on requests: its webhooks are what
        bring the requests."""
        period = min(max(1.0 / self.rate, 0.05), 1.0)
        while not self._stopping.wait(period):
            self._grow()

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        if self.webhooks is not None:
            self.webhooks.stop()
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join()
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self if self._server is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("simulator not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (no trailing slash);
        ``https://`` when serving TLS."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{host}:{self.port}"

    @property
    def edlink_token(self) -> str:
        """The Edlink access token accepted now (``edlink_integration.token``)."""
        return self.edlink_integration.token

    # -- test hooks ---------------------------------------------------------

    def inject(
        self,
        status: int,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        times: int = 1,
        route: str | None = None,
        code: str | None = None,
    ) -> None:
        """Answer the next ``times`` routed requests with this instead.

        ``body`` defaults to a JSON error (on an Edlink route, Edlink's
        ``$errors`` with ``code`` and its documented text); ``status=0`` drops the connection
        without a response (a reset). ``route`` limits the fault to one route
        name (``"dreamapply"`` (the journal), ``"dreamapply-applicants"``,
        ``"dreamapply-applications"``, ``"dreamapply-offers"``,
        ``"dreamapply-offer-types"``, ``"dreamapply-purged"``,
        ``"dreamapply-application"``, ``"dreamapply-application-children"``,
        ``"dreamapply-applicant"``, ``"dreamapply-invoice"``,
        ``"edlink-events"``, ``"edlink-graph"``, ``"learninghub"``). Faults
        queue up in the order injected; a PUT a fault answers is still
        recorded in ``hub.puts``.
        """
        if status == 0:
            response = None
        else:
            default = json_error(status, "injected fault").body
            if route is not None and route.startswith("edlink"):
                message = None if code else "injected fault"
                default = edlink.edlink_error(status, code or "INJECTED", message).body
            response = Response(
                status,
                default if body is None else body,
                {"Content-Type": JSON, **(headers or {})},
            )
        with self._recorded:
            self._faults.append(_Fault(response, times, route))

    def clear_faults(self) -> None:
        """Forget every injected fault not yet answered."""
        with self._recorded:
            self._faults.clear()

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` requests were recorded; False on timeout."""
        with self._recorded:
            return self._recorded.wait_for(lambda: len(self.requests) >= count, timeout)

    # -- serving ------------------------------------------------------------

    def _dispatch(self, request: Request) -> Response | None:
        recorded = self._record(request)
        try:
            hook = self.on_request
            if hook is not None:
                hook(recorded)
            return self._route(request)
        except Exception as exc:  # noqa: BLE001 - a bug must answer 500, not hang the client
            self.errors.append(exc)
            return json_error(500, f"simulator error: {type(exc).__name__}")

    def _route(self, request: Request) -> Response | None:
        route = next((r for r in self.routes if r.pattern.fullmatch(request.path)), None)
        if route is None:
            return json_error(404, f"no such resource: {request.path}")
        fault = self._take_fault(route.name)
        if fault is not None:
            if route.name == learninghub.ROUTE:
                self.hub.record(request, fault.response)
            return fault.response
        return route.handler(request)

    def _record(self, request: Request) -> RecordedRequest:
        recorded = RecordedRequest(
            request.method, request.path, request.query, request.headers, time.monotonic()
        )
        with self._recorded:
            self.requests.append(recorded)
            self._recorded.notify_all()
        return recorded

    def _take_fault(self, route: str) -> _Fault | None:
        with self._recorded:
            for fault in self._faults:
                if fault.route is None or fault.route == route:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _grow(self) -> None:
        """Bring the journal up to what ``rate`` has produced since start()."""
        if self.rate <= 0 or self._started_at is None:
            return
        with self._grow_lock:
            due = math.floor((self._clock() - self._started_at) * self.rate) - self._grown
            if due > 0:
                self.journal.append(due)
                self._grown += due

    def _grow_edlink(self) -> None:
        """Bring the Edlink stream up to what ``rate`` has produced since start()."""
        if self.rate <= 0 or self._started_at is None:
            return
        with self._grow_lock:
            due = math.floor((self._clock() - self._started_at) * self.rate) - self._edlink_grown
            if due > 0:
                self.edlink.append(due)
                self._edlink_grown += due


def serve_forever(
    port: int,
    events: int,
    seed: int,
    rate: float,
    host: str = "127.0.0.1",
    *,
    journal_window: float | None = dreamapply.RETENTION,
    webhook_url: str | None = None,
    webhook_authorization: str = "",
) -> int:
    """``edsync simulate``: serve until SIGINT or SIGTERM, then exit status 0."""
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, on_signal) for signum in handled}
    try:
        with Simulator(
            events=events,
            seed=seed,
            rate=rate,
            host=host,
            port=port,
            journal_window=journal_window,
            webhook_url=webhook_url,
            webhook_authorization=webhook_authorization,
        ) as sim:
            print(f"edsync simulator: DreamApply at {sim.url} (api key: {sim.api_key})", flush=True)
            print(
                f"edsync simulator: Edlink at {sim.url}/api/v2/graph (token: {sim.edlink_token})",
                flush=True,
            )
            hub = sim.hub
            print(
                f"edsync simulator: Learning Hub at {sim.url}/events "
                f"(user: {hub.user}, key: {hub.key}, programs: {', '.join(hub.programs)})",
                flush=True,
            )
            if webhook_url is not None:
                print(f"edsync simulator: DreamApply webhooks to {webhook_url}", flush=True)
            stopping.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
