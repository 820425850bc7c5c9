"""HTTP for feeds and sinks: pacing, bounded bodies, retries, status mapping."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import httpx
import orjson
import stamina
import structlog

from edsync import __version__
from edsync.errors import MalformedPageError, RetriableError, error_for_status

log = structlog.get_logger("edsync.http")

MAX_BODY_BYTES = 64 * 1024 * 1024
"""A hostile or broken upstream cannot make us buffer more than this."""


class Pacer:
    """Token bucket: ``per_minute`` requests spread evenly, bursts of at most ``burst``.

    DreamApply counts requests per key per minute; pacing below the quota is
    politer and faster than running into 429s.
    """

    def __init__(
        self,
        per_minute: float,
        burst: int = 3,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.tokens = float(burst)
        self.clock = clock
        self.sleep = sleep
        self.last = clock()
        self.lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until there is one; returns the time slept."""
        if self.rate <= 0:
            return 0.0
        with self.lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
            wait = 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate
            self.tokens -= 1
        if wait:
            self.sleep(wait)
        return wait


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    jitter: float = 1.0


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: httpx.Headers
    body: bytes

    def json(self, target: str) -> object:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise MalformedPageError(f"{target}: invalid JSON in response ({exc})") from None


def _retry_hook(exc: Exception) -> bool | float:
    if isinstance(exc, RetriableError):
        # Never undercut the server's Retry-After.
        return exc.retry_after if exc.retry_after is not None else True
    return False


class HttpClient:
    """One keep-alive client per feed or sink, with the policies of SPEC 5."""

    def __init__(
        self,
        target: str,
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
    ) -> None:
        self.target = target
        self.retry_for = retry_for
        self.backoff = backoff or Backoff()
        self.max_body = max_body
        self.pacer = Pacer(per_minute)
        verify: ssl.SSLContext | bool = True
        if ca_bundle:
            # Adds the CA to the system ones; verification is never turned off.
            verify = ssl.create_default_context()
            verify.load_verify_locations(ca_bundle)
        self.client = httpx.Client(
            base_url=base_url,
            headers={"User-Agent": f"edsync/{__version__}", **(headers or {})},
            auth=auth,
            timeout=timeout,
            verify=verify,
            follow_redirects=False,
        )

    def close(self) -> None:
        self.client.close()

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
        for attempt in stamina.retry_context(
            on=_retry_hook,
            attempts=None,
            timeout=self.retry_for,
            wait_initial=self.backoff.initial,
            wait_max=self.backoff.maximum,
            wait_jitter=self.backoff.jitter,
        ):
            with attempt:
                return self.once(method, path, params, expect=expect)
        raise AssertionError("unreachable")  # pragma: no cover

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
        """One paced attempt; every failure comes out as an EdsyncError."""
        self.pacer.acquire()
        try:
            with self.client.stream(
                method, path, params=params, content=content, headers=headers
            ) as response:
                body = self._read_bounded(response)
        except httpx.TimeoutException as exc:
            raise RetriableError(f"{self.target}: timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise RetriableError(
                f"{self.target}: connection failed ({type(exc).__name__})"
            ) from None
        if response.status_code in expect:
            return Reply(response.status_code, response.headers, body)
        error = error_for_status(
            response.status_code,
            self.target,
            retry_after=response.headers.get("Retry-After"),
            detail=_error_detail(body) if response.status_code >= 400 else "",
        )
        if error is not None:
            raise error
        return Reply(response.status_code, response.headers, body)

    def _read_bounded(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_body:
            raise MalformedPageError(f"{self.target}: response of {declared} bytes is too large")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self.max_body:
                raise MalformedPageError(f"{self.target}: response exceeds {self.max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def _error_detail(body: bytes) -> str:
    """A short, safe excerpt of an error body for the message."""
    if not body:
        return ""
    text = body[:200].decode("utf-8", "replace").strip()
    return " ".join(text.split())
