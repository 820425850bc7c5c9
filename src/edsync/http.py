"""HTTP for feeds and sinks: pacing, bounded bodies and attempts, retries,
status mapping, and where a credential may go (SPEC 5.1, 5.5)."""

from __future__ import annotations

import ssl
import threading
import time
import zlib
from collections.abc import Callable, Collection, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

import httpx
import orjson
import stamina
import structlog

from edsync import __version__, transport
from edsync.backoff import Backoff
from edsync.errors import (
    AuthError,
    ForeignOriginError,
    MalformedPageError,
    RetriableError,
    error_for_status,
    parse_retry_after,
)
from edsync.origins import Origin, foreign_origin
from edsync.pacing import Pacer
from edsync.redaction import credentials_in, error_detail, excerpt

if TYPE_CHECKING:
    from stamina.instrumentation import RetryDetails

    from edsync.settings import Secret

log = structlog.get_logger("edsync.http")

T = TypeVar("T")

MAX_BODY_BYTES = 64 * 1024 * 1024
"""A hostile or broken upstream cannot make us buffer more than this."""


class CertificateError(AuthError):
    """The peer's TLS certificate was not trusted (unknown CA, wrong host name,
    expired). Like refused credentials it needs a human (``ca_bundle``, a new
    certificate), so it is not retried within a poll, and backs off like one."""


@dataclass(slots=True)
class Spent:
    """Seconds the last ``fetch`` spent on the wire and reading the reply, over
    all its attempts: the benchmark's stage breakdown."""

    network: float = 0.0
    read: float = 0.0


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: httpx.Headers
    body: bytes

    def json(self, target: str) -> object:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            # Refused is not yet invalid (SPEC 5.3); imported only on such a rare page.
            from edsync import jsontext
            from edsync.errors import UnreadableJsonError

            try:
                return jsontext.tolerant(self.body)
            except jsontext.TooDeepError as deep:  # complete: retrying cannot help
                raise UnreadableJsonError(f"{target}: {deep}", text=deep.text) from None
            except jsontext.NotJsonError:
                raise MalformedPageError(f"{target}: invalid JSON in response ({exc})") from None


def _retry_hook(exc: BaseException) -> bool | float:
    if isinstance(exc, RetriableError):
        # Never undercut the server's Retry-After.
        return exc.retry_after if exc.retry_after is not None else True
    return False


@dataclass(slots=True)
class _Call:
    """The request being retried, for the retry hook (stamina only knows a
    ``retry_context`` as ``<context block>``)."""

    client: HttpClient
    method: str
    path: str
    cause: str | None = None


_CALL: ContextVar[_Call | None] = ContextVar("edsync_http_call", default=None)

RetryListener = Callable[[str, str], None]
"""Called with (source or ``sink:NAME``, cause) for every retry scheduled."""

_listeners: list[RetryListener] = []
_instrumented = threading.Lock()
_hooked: list[bool] = []


def on_retry(listener: RetryListener) -> Callable[[], None]:
    """Count retries (the daemon's metrics); returns the function that stops it."""
    _instrument()
    _listeners.append(listener)
    return lambda: _listeners.remove(listener)


RequestListener = Callable[[str, bool], None]
"""Called with (source or ``sink:NAME``, whether the answer was a 429) for
every attempt sent, answered or not."""

_request_listeners: list[RequestListener] = []


def on_request(listener: RequestListener) -> Callable[[], None]:
    """Count requests and 429s (the daemon's metrics); returns the function that stops it."""
    _request_listeners.append(listener)
    return lambda: _request_listeners.remove(listener)


def _instrument() -> None:
    """Replace stamina's default hooks (a log line naming ``<context block>``,
    a counter in prometheus-client's global registry nobody serves) with ours."""
    with _instrumented:
        if _hooked:
            return
        from stamina.instrumentation import set_on_retry_hooks

        set_on_retry_hooks([_retry_scheduled])
        _hooked.append(True)


def _retry_scheduled(details: RetryDetails) -> None:
    call = _CALL.get()
    exc = details.caused_by
    cause = (call.cause if call else None) or (
        "malformed" if isinstance(exc, MalformedPageError) else type(exc).__name__.lower()
    )
    target = call.client.target if call else details.name
    log.warning(
        "http_retry",
        target=target,
        url=call.client.url(call.path) if call else None,
        method=call.method if call else None,
        cause=cause,
        error=str(exc),
        retry=details.retry_num,
        wait=round(details.wait_for, 2),
        waited=round(details.waited_so_far, 2),
    )
    label = call.client.label if call else details.name
    for listener in list(_listeners):
        listener(label, cause)


@dataclass(frozen=True, slots=True)
class Target:
    """Whom a client speaks for: named in its messages, labelled in metrics."""

    role: Literal["source", "sink"]
    name: str

    @classmethod
    def source(cls, name: str) -> Target:
        return cls("source", name)

    @classmethod
    def sink(cls, name: str) -> Target:
        return cls("sink", name)

    @property
    def label(self) -> str:
        """A source's metrics label is its name; a sink's ``sink:NAME``."""
        return self.name if self.role == "source" else f"sink:{self.name}"

    def __str__(self) -> str:
        return f"{self.role} {self.name!r}"


class HttpClient:
    """One keep-alive client per feed or sink, with the policies of SPEC 5."""

    def __init__(
        self,
        target: Target,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        timeout: float = 30.0,
        retry_for: float = 120.0,
        ca_bundle: str | None = None,
        per_minute: float = 0.0,
        backoff: Backoff | None = None,
        max_body: int = MAX_BODY_BYTES,
        credential: Secret | None = None,
    ) -> None:
        """``credential``: the secret the headers or auth carry, whose origin
        (its environment variable or file, never its value) is named when it
        is refused."""
        _instrument()
        self.target = str(target)
        self.timeout = timeout
        self.label = target.label
        self.credential = credential
        self.retry_for = retry_for
        self.backoff = backoff or Backoff()
        self.max_body = max_body
        self.secrets = credentials_in(headers or {}, auth)
        self.pacer = Pacer(per_minute)
        self.spent = Spent()
        # Attempts sent and 429s received, for benchmarks and tests.
        self.requests = 0
        self.throttled = 0
        self._tally = threading.Lock()
        self._transport = transport.borrow(ca_bundle)
        self._closed = False
        self.client = httpx.Client(
            base_url=base_url,
            # gzip only: _read_bounded can decode it without overshooting max_body.
            headers={
                "User-Agent": f"edsync/{__version__}",
                "Accept-Encoding": "gzip",
                **(headers or {}),
            },
            auth=auth,
            timeout=timeout,
            transport=self._transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        """Give the shared transport back (closing it if this was its last
        client); the client itself holds nothing else to close."""
        # Not client.close(): that would close the transport others share.
        if not self._closed:
            self._closed = True
            transport.give_back(self._transport)

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        expect: Collection[int] = (),
    ) -> Reply:
        """Send with retries on transient failures for up to ``retry_for`` seconds.

        Statuses in ``expect`` come back as a Reply for the caller to read
        (Edlink's 400 ``$errors`` says whether a cursor expired).
        """
        return self.fetch(method, path, params, lambda reply: reply, expect=expect)

    def fetch(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        read: Callable[[Reply], T],
        *,
        expect: Collection[int] = (),
    ) -> T:
        """``request``, then ``read`` the reply, retried as one: a page that
        cannot be read (truncated JSON, not the expected envelope) is retried
        like a 5xx (SPEC 5.3), not only the exchange that brought it."""
        call = _Call(self, method, path)
        token = _CALL.set(call)
        try:
            return self._attempts(call, params, read, expect)
        finally:
            _CALL.reset(token)

    def _attempts(
        self,
        call: _Call,
        params: Mapping[str, str] | None,
        read: Callable[[Reply], T],
        expect: Collection[int],
    ) -> T:
        method, path = call.method, call.path
        spent = self.spent = Spent()
        clock = time.perf_counter
        for attempt in stamina.retry_context(
            on=_retry_hook,
            attempts=None,
            timeout=self.retry_for,
            wait_initial=self.backoff.initial,
            wait_max=self.backoff.maximum,
            wait_jitter=self.backoff.jitter,
        ):
            with attempt:
                call.cause = None
                started = clock()
                reply = self.once(method, path, params, expect=expect)
                received = clock()
                spent.network += received - started
                try:
                    return read(reply)
                finally:
                    spent.read += clock() - received
        raise AssertionError("unreachable")  # pragma: no cover

    def url(self, path: str) -> str:
        """Where ``path`` goes, for messages: no credentials, no query."""
        return str(self.client.base_url.join(path).copy_with(userinfo=b"", query=None))

    def _cause(self, cause: str) -> None:
        call = _CALL.get()
        if call is not None:
            call.cause = cause

    def once(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        expect: Collection[int] = (),
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """One paced attempt, bounded by ``timeout`` from connecting to the body's
        last byte; every failure comes out as an EdsyncError."""
        self._stay_home(path)
        self.pacer.acquire()
        status: int | None = None
        pause: float | None = None
        try:
            # A per-read timeout alone never trips on a body that trickles in a
            # byte at a time: every socket operation ends by this deadline. A
            # response left half-read is closed, so its connection is not reused.
            with (
                transport.deadline(self.timeout),
                self.client.stream(
                    method, path, params=params, content=content, headers=headers
                ) as response,
            ):
                status = response.status_code
                if status == 429:
                    # Before reading the body: the client's other threads hold off now.
                    pause = self.pacer.throttled(
                        parse_retry_after(response.headers.get("Retry-After"))
                    )
                body = self._read_bounded(response)
        except httpx.TimeoutException as exc:
            self._cause("timeout")
            raise RetriableError(
                f"{self.target}: timed out ({type(exc).__name__}) on {method} {self.url(path)}"
            ) from None
        except httpx.TransportError as exc:
            rejected = _certificate_rejection(exc)
            if rejected is not None:
                raise CertificateError(
                    f"{self.target}: TLS certificate verification failed ({rejected}); "
                    "set ca_bundle to trust a private CA"
                ) from None
            self._cause("connect")
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise RetriableError(
                f"{self.target}: connection failed ({reason}) on {method} {self.url(path)}"
            ) from None
        finally:
            self._count(throttled=status == 429)
        reply = Reply(response.status_code, response.headers, body)
        if reply.status not in expect:
            self._raise_for_status(reply, pause)
        return reply

    def _stay_home(self, path: str) -> None:
        """Refuse a link (a ``$next``, a resource link: anything an answer
        names) to another origin than ``base_url``'s: our headers, the
        credential among them, would go with the request (SPEC 5.5)."""
        try:
            foreign = foreign_origin(self.client.base_url, path)
        except httpx.InvalidURL as exc:
            reason = excerpt(str(exc), self.secrets)
            raise MalformedPageError(
                f"{self.target}: an answer named a link that is no URL ({reason})"
            ) from None
        if foreign is not None:
            home = Origin.of(self.client.base_url)
            raise ForeignOriginError(
                f"{self.target}: an answer sent edsync to {foreign}, another origin than "
                f"base_url's {home}; not requested, as the credential goes only to {home}. "
                "Check the proxy or upstream in front of base_url"
            )

    def _raise_for_status(self, reply: Reply, pause: float | None) -> None:
        """The reply's status as an EdsyncError (SPEC 5), if it is one."""
        error = error_for_status(
            reply.status,
            self.target,
            retry_after=reply.headers.get("Retry-After"),
            location=excerpt(reply.headers.get("Location", ""), self.secrets) or None,
            detail=error_detail(reply.body, self.secrets) if reply.status >= 400 else "",
        )
        if error is None:
            return
        self._cause(f"http_{reply.status}")
        if pause is not None and isinstance(error, RetriableError):
            # The retry waits out the pause (not a 0.5 s backoff into a
            # blocked acquire), so retry_for and the logs count it.
            error.retry_after = max(error.retry_after or 0.0, pause)
        if isinstance(error, AuthError) and self.credential is not None:
            # What to fix, never the value.
            error.args = (
                f"{error}; the credential comes from {self.credential.origin}: "
                "check that it holds a valid, current key",
            )
        raise error

    def _count(self, *, throttled: bool) -> None:
        with self._tally:
            self.requests += 1
            self.throttled += throttled
        for listener in list(_request_listeners):
            listener(self.label, throttled)

    def _read_bounded(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_body:
            raise MalformedPageError(f"{self.target}: response of {declared} bytes is too large")
        # Decoded here, not by httpx: it inflates a whole network read at once,
        # so 64 KiB of gzip could become 64 MiB before any size check.
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding not in ("", "identity"):
            raise MalformedPageError(f"{self.target}: unsupported Content-Encoding {encoding!r}")
        else:
            inflater = None
        chunks: list[bytes] = []
        size = 0
        for raw in response.iter_raw():
            pending = raw
            while pending:
                if inflater is None:
                    chunk, pending = pending, b""
                else:
                    try:
                        chunk = inflater.decompress(pending, self.max_body - size + 1)
                    except zlib.error as exc:
                        raise MalformedPageError(f"{self.target}: bad gzip body ({exc})") from None
                    pending = inflater.unconsumed_tail
                size += len(chunk)
                if size > self.max_body:
                    raise MalformedPageError(
                        f"{self.target}: response exceeds {self.max_body} bytes"
                    )
                chunks.append(chunk)
        return b"".join(chunks)


def _certificate_rejection(exc: BaseException) -> str | None:
    """Why the TLS handshake rejected the peer's certificate, if that is what failed."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return str(current.verify_message or current.reason or "certificate not trusted")
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
