"""A real DreamApply journal over HTTP that misbehaves on cue, byte by byte.

``FaultServer`` serves ``GET``/``HEAD {prefix}/journal`` (``bySince``,
``byUntil``, ``limit``, ``order``; ``DREAM apikey`` auth; ``X-Count`` on HEAD)
from an in-memory ``{id: event}`` map, over raw sockets so that a fault can be
anything a broken upstream does on the wire: a status with or without
``Retry-After``, silence until the client gives up, a reset mid-body, a body
cut short, a body that never ends, a ``Content-Length`` too large to accept,
a page repeating ids the client already has.

Faults are a script: ``server.script(Status(503), Hang(), ...)`` appends to a
queue, and each fault applies, in order, to the next journal request it
matches (``method``, optionally ``since``) — ``times`` requests in a row, or
for good with ``times=None``. Every request is recorded (method, query,
monotonic arrival time, the fault it got). ``stop()`` releases any held
connection and joins every thread, so no socket outlives a test.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import re
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

import orjson

API_KEY = "fault-dreamapply-key"
SERVER_MAX_PAGE = 1024
SERVER_MAX_EXPANDED_PAGE = 512

_POLL = 0.05  # how often a waiting handler looks at the stop flag
_MAX_HEAD = 64 * 1024
_AUTHORIZATION = re.compile(r'\s*DREAM\s+apikey="([^"]*)"\s*')
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


# -- the script -----------------------------------------------------------------


@dataclass(kw_only=True)
class Fault:
    """One scripted misbehaviour; subclasses say what goes on the wire.

    ``method``: the request method it waits for (None: any). ``since``: only a
    request with this ``bySince``. ``times``: how many matching requests in a
    row get it (None: every one, for good). ``fired`` is set on first use.
    """

    method: str | None = "GET"
    since: str | None = None
    times: int | None = 1
    fired: threading.Event = field(default_factory=threading.Event, repr=False)
    used: int = 0

    @property
    def name(self) -> str:
        return type(self).__name__

    def matches(self, request: Request) -> bool:
        if self.method is not None and request.method != self.method:
            return False
        return self.since is None or request.query.get("bySince") == self.since


@dataclass(kw_only=True)
class Status(Fault):
    """An error status (429, 5xx, 401 ...) with a JSON body and optional Retry-After."""

    status: int = 500
    retry_after: str | None = None
    body: bytes | None = None
    close: bool = False  # Connection: close, as some proxies do
    # A careless upstream that quotes the credential it was sent in its error.
    echo_credentials: bool = False


@dataclass(kw_only=True)
class Hang(Fault):
    """Read the request, then say nothing until the client hangs up (or stop())."""


@dataclass(kw_only=True)
class Reset(Fault):
    """Headers with the real Content-Length, half the body, then a TCP RST."""


@dataclass(kw_only=True)
class Truncated(Fault):
    """Valid headers whose Content-Length matches a body cut mid-JSON."""


@dataclass(kw_only=True)
class Endless(Fault):
    """``Transfer-Encoding: chunked``, chunk after chunk, never the last one."""

    chunk: int = 64 * 1024


@dataclass(kw_only=True)
class HugeLength(Fault):
    """A Content-Length far beyond any sane limit; a few bytes, then hang up."""

    length: int = 1 << 40


@dataclass(kw_only=True)
class Overlap(Fault):
    """The page also repeats the ``count`` ids just before ``bySince``
    (``only``: nothing but those, as a stale cache would answer)."""

    count: int = 3
    only: bool = False


@dataclass(kw_only=True)
class Body(Fault):
    """A 200 with this body instead of the page (a malformed envelope)."""

    body: bytes = b"{}"


# -- the journal ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    at: float  # time.monotonic() once the request head was read
    fault: str | None = None  # the Fault subclass it got, if any


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins every handler thread
    allow_reuse_address = True

    def __init__(self, owner: FaultServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(socketserver.BaseRequestHandler):
    server: _TCPServer
    request: socket.socket

    def setup(self) -> None:
        self.sock = self.request
        self.sock.settimeout(_POLL)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.stopping = self.server.owner.stopping
        self.buffer = b""

    def handle(self) -> None:
        owner = self.server.owner
        while not self.stopping.is_set():
            request = self._read_request()
            if request is None:
                return
            if not owner.respond(self, request):
                return

    # -- the wire -----------------------------------------------------------------

    def _recv(self) -> bytes | None:
        """Some bytes, or None once the peer is gone or we are stopping."""
        while not self.stopping.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return None
            return data or None
        return None

    def _read_request(self) -> Request | None:
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > _MAX_HEAD:
                return None
            data = self._recv()
            if data is None:
                return None
            self.buffer += data
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        while len(self.buffer) < length:  # a body we do not need, but must consume
            data = self._recv()
            if data is None:
                return None
            self.buffer += data
        self.buffer = self.buffer[length:]
        url = urlsplit(target)
        return Request(
            method=method,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers=headers,
            at=time.monotonic(),
        )

    def send(self, data: bytes) -> bool:
        """All of ``data`` (partial sends resumed), or False if the peer is gone."""
        view = memoryview(data)
        while view:
            if self.stopping.is_set():
                return False
            try:
                sent = self.sock.send(view)
            except TimeoutError:
                continue
            except OSError:
                return False
            view = view[sent:]
        return True

    def send_response(
        self, status: int, headers: Mapping[str, str], body: bytes = b"", *, head: bool = False
    ) -> bool:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if "Content-Length" not in headers:
            lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return self.send(data if head else data + body)

    def wait_for_hangup(self) -> None:
        """Hold the connection, sending nothing, until the client closes it."""
        while self._recv() is not None:
            pass

    def reset(self) -> None:
        """Close with SO_LINGER 0: the peer gets an RST, not a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


class FaultServer:
    """The journal ``events`` (id → event object, or any JSON value for a broken one)."""

    def __init__(
        self,
        events: Mapping[int, Any],
        *,
        api_key: str = API_KEY,
        prefix: str = "/api/v9",
    ) -> None:
        self.events = dict(events)
        self.api_key = api_key
        self.prefix = prefix.rstrip("/")
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self._lock = threading.Condition()
        self._faults: list[Fault] = []
        self._requests: list[Request] = []
        self._server: _TCPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Self:
        self._server = _TCPServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": _POLL}, daemon=True
        )
        self._thread.start()
        self.ready.set()
        return self

    def stop(self) -> None:
        """Release held connections, stop accepting, join every thread, close every socket."""
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self.ready.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- the script and the record ------------------------------------------------------

    def script(self, *faults: Fault) -> list[Fault]:
        """Queue faults; each applies in order to the next request it matches."""
        with self._lock:
            self._faults.extend(faults)
        return list(faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def journal_requests(self, method: str | None = "GET") -> list[Request]:
        return [
            r
            for r in self.requests
            if r.path.rstrip("/") == f"{self.prefix}/journal" and method in (None, r.method)
        ]

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> bool:
        """Block until ``count`` requests have arrived (a readiness signal, not a sleep)."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self._requests) >= count, timeout)

    def _take_fault(self, request: Request) -> Fault | None:
        if request.path.rstrip("/") != f"{self.prefix}/journal":
            return None
        with self._lock:
            if not self._faults or not self._faults[0].matches(request):
                return None
            fault = self._faults[0]
            fault.used += 1
            if fault.times is not None and fault.used >= fault.times:
                self._faults.pop(0)
        fault.fired.set()
        return fault

    def _record(self, request: Request) -> None:
        with self._lock:
            self._requests.append(request)
            self._lock.notify_all()

    # -- answering -----------------------------------------------------------------------

    def respond(self, handler: _Handler, request: Request) -> bool:
        """Answer one request; False closes the connection."""
        fault = self._take_fault(request)
        self._record(dataclasses.replace(request, fault=fault.name) if fault else request)
        head = request.method == "HEAD"
        if request.path.rstrip("/") != f"{self.prefix}/journal":
            return self._resource(handler, request)
        if request.method not in ("GET", "HEAD"):
            return handler.send_response(405, _json_headers(), _error("GET or HEAD"))
        if isinstance(fault, Status):
            return self._status(handler, fault, request)
        match = _AUTHORIZATION.fullmatch(request.headers.get("authorization", ""))
        if match is None or match.group(1) != self.api_key:
            body = _error("missing or wrong API key")
            headers = {**_json_headers(), "WWW-Authenticate": "DREAM"}
            headers["Content-Length"] = str(len(body))
            return handler.send_response(401, headers, body, head=head)
        count, body = self._page(request.query, fault)
        headers = {**_json_headers(), "X-Count": str(count)}
        return self._deliver(handler, fault, headers, body, head=head)

    def _resource(self, handler: _Handler, request: Request) -> bool:
        """What the journal's events name, read by URL as the refresh does: an
        applicant or application the journal has (not closed), an empty
        purged-resources; anything else 404. Faults strike the journal only."""
        path = request.path.rstrip("/")
        if path == f"{self.prefix}/purged-resources":
            return handler.send_response(200, _json_headers(), b"[]")
        found = re.fullmatch(re.escape(self.prefix) + r"/(applicants|applications)/(\d+)", path)
        state = resources(self.events).get((found[1], int(found[2]))) if found else None
        if state is None:
            return handler.send_response(404, _json_headers(), _error("no such resource"))
        return handler.send_response(200, _json_headers(), orjson.dumps(state))

    def _status(self, handler: _Handler, fault: Status, request: Request) -> bool:
        body = fault.body if fault.body is not None else _error(f"HTTP {fault.status}, scripted")
        if fault.echo_credentials:
            sent = request.headers.get("authorization", "")
            body = _error(f"HTTP {fault.status}: credentials {sent!r} refused")
        headers = _json_headers()
        if fault.retry_after is not None:
            headers["Retry-After"] = fault.retry_after
        if fault.close:
            headers["Connection"] = "close"
        headers["Content-Length"] = str(len(body))
        head = request.method == "HEAD"
        return handler.send_response(fault.status, headers, body, head=head) and not fault.close

    def _deliver(
        self,
        handler: _Handler,
        fault: Fault | None,
        headers: dict[str, str],
        body: bytes,
        *,
        head: bool,
    ) -> bool:
        if isinstance(fault, Hang):
            handler.wait_for_hangup()
            return False
        if head:  # the body's faults need a body
            return handler.send_response(200, headers, body, head=True)
        if isinstance(fault, Reset):
            headers["Content-Length"] = str(len(body))
            handler.send_response(200, headers, body[: len(body) // 2])
            handler.reset()
            return False
        if isinstance(fault, Truncated):
            return handler.send_response(200, headers, body[: len(body) // 2])
        if isinstance(fault, HugeLength):
            headers["Content-Length"] = str(fault.length)
            handler.send_response(200, headers, body[:16])
            return False
        if isinstance(fault, Endless):
            self._endless(handler, fault.chunk)
            return False
        if isinstance(fault, Body):
            return handler.send_response(200, _json_headers(), fault.body)
        return handler.send_response(200, headers, body)

    def _endless(self, handler: _Handler, size: int) -> None:
        headers = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        headers += "Transfer-Encoding: chunked\r\n\r\n"
        if not handler.send(headers.encode()):
            return
        entry = b'"1": {"logged": "2026-01-01T00:00:00+00:00", "event": "Application was edited"}, '
        payload = b"{" + entry * (size // len(entry))
        chunk = f"{len(payload):x}\r\n".encode() + payload + b"\r\n"
        while handler.send(chunk):
            pass  # until the client gives up and hangs up

    def _page(self, query: Mapping[str, str], fault: Fault | None) -> tuple[int, bytes]:
        """(X-Count, body) for a journal query, as DreamApply answers it."""
        cap = SERVER_MAX_EXPANDED_PAGE if query.get("expand") else SERVER_MAX_PAGE
        limit = min(int(query.get("limit") or cap), cap)
        since = int(query.get("bySince") or 0)
        until = int(query["byUntil"]) if query.get("byUntil") else None
        ids = sorted(i for i in self.events if i >= since and (until is None or i <= until))
        count = len(ids)
        if query.get("order") == "newest-first":
            ids.reverse()
        page = ids[:limit]
        if isinstance(fault, Overlap):
            before = sorted(i for i in self.events if i < since)[-fault.count :]
            page = before if fault.only else before + page
        if not page:
            return count, b"[]"  # PHP renders an empty map as a list
        return count, orjson.dumps({str(i): self.events[i] for i in page})


def _json_headers() -> dict[str, str]:
    return {"Content-Type": "application/json; charset=utf-8"}


def _error(message: str) -> bytes:
    return orjson.dumps({"error": {"code": "fault", "message": message}})


# -- a journal to serve ---------------------------------------------------------------

OFFER_STATUSES = ("Conditional", "Unconditional", "Accepted", "Enrolled", "Declined")
START = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


def make_events(count: int, *, seed: int = 0) -> dict[int, dict[str, Any]]:
    """A deterministic journal of ``count`` events, ids 1..count.

    Applicants register and apply; applications are edited, submitted,
    closed and reverted; offers move through statuses. Every event is one
    edsync must apply to a record.
    """
    rng = random.Random(seed)
    events: dict[int, dict[str, Any]] = {}
    applicants: list[int] = []
    applications: dict[int, int] = {}  # application id → applicant id
    closed: set[int] = set()
    offers: dict[int, int] = {}  # offer id → application id
    next_id = {"applicant": 1, "application": 1, "offer": 1}

    def new(kind: str) -> int:
        value = next_id[kind]
        next_id[kind] += 1
        return value

    for event_id in range(1, count + 1):
        logged = (START + dt.timedelta(seconds=37 * event_id)).isoformat()
        body: dict[str, Any] = {"logged": logged, "bind": []}
        roll = rng.random()
        if not applicants or roll < 0.12:
            applicant = new("applicant")
            applicants.append(applicant)
            body |= {"event": "Applicant registered", "applicant": f"/api/applicants/{applicant}"}
        elif not applications or roll < 0.3:
            applicant = rng.choice(applicants)
            application = new("application")
            applications[application] = applicant
            body |= {"event": "Application was created"}
            body |= _links(applicant, application)
        else:
            application = rng.choice(sorted(applications))
            applicant = applications[application]
            body |= _links(applicant, application)
            if application in closed and roll < 0.45:
                closed.discard(application)
                body["event"] = "Application was reverted"
            elif application in closed:
                body["event"] = "Application was edited"  # closed it stays
            elif roll < 0.45:
                body["event"] = rng.choice(["Application was edited", "Application was submitted"])
            elif roll < 0.55:
                closed.add(application)
                body["event"] = "Application was closed"
            elif roll < 0.62:
                body["event"] = f'Applicant decision: "{rng.choice(["Accepted", "Rejected"])}"'
            else:
                mine = [o for o, a in offers.items() if a == application]
                offer = rng.choice(mine) if mine and roll < 0.9 else new("offer")
                offers[offer] = application
                body["offer"] = f"/api/applications/{application}/offers/{offer}"
                verb = "edited" if roll < 0.95 else "confirmed"
                body["event"] = f'Offer was {verb}: "{rng.choice(OFFER_STATUSES)}"'
        events[event_id] = body
    return events


def resources(events: Mapping[int, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    """The applicants and applications the journal's ``events`` leave, as their
    endpoints answer (SPEC 2.1): an application with its offers expanded (each
    offer's status its last event's), its other collections empty; a closed
    application is gone."""
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for _, body in sorted(events.items()):
        if not isinstance(body, dict) or not isinstance(body.get("event"), str):
            continue
        applicant = _trailing(body.get("applicant"))
        application = _trailing(body.get("application"))
        if applicant is not None:
            found.setdefault(
                ("applicants", applicant), {"id": applicant, "registered": body.get("logged")}
            )
        if application is None:
            continue
        key = ("applications", application)
        state = found.setdefault(
            key,
            {
                "id": application,
                "applicant": f"/api/v9/applicants/{applicant}",
                "offers": {},
                "tasks": [],
                "references": [],
                "documents": [],
            },
        )
        name = body["event"]
        state["closed"] = name == "Application was closed" or (
            state.get("closed", False) and name != "Application was reverted"
        )
        offer = _trailing(body.get("offer"))
        if offer is not None and ":" in name:
            status = name.partition(":")[2].strip().strip('"')
            state["offers"][str(offer)] = {"id": offer, "type": status}
    return {k: v for k, v in found.items() if not v.get("closed")}


def _trailing(link: object) -> int | None:
    if not isinstance(link, str):
        return None
    tail = link.rstrip("/").rpartition("/")[2]
    return int(tail) if tail.isdigit() else None


def _links(applicant: int, application: int) -> dict[str, str]:
    return {
        "applicant": f"/api/applicants/{applicant}",
        "application": f"/api/applications/{application}",
    }


def raw_event(name: str | None = None, **links: Any) -> dict[str, Any]:
    """A hand-made journal event (``name=None`` leaves out ``event``)."""
    body: dict[str, Any] = {"logged": START.isoformat(), "bind": []}
    if name is not None:
        body["event"] = name
    body.update(links)
    return body
