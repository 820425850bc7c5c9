"""Prometheus metrics and ``/healthz`` for the daemon (``[metrics]``).

The registry is per daemon, not prometheus-client's global one, so tests
and reloads never collide. prometheus-client is imported only when used.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from edsync.errors import ConfigError
from edsync.settings import split_listen

if TYPE_CHECKING:
    from http.server import BaseHTTPRequestHandler

    from prometheus_client import CollectorRegistry

    from edsync.settings import MetricsSettings


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "edsync_events_applied", "Ledger rows written", ["source", "status"], registry=r
        )
        self.polls = Counter("edsync_polls", "Polls by outcome", ["source", "outcome"], registry=r)
        self.errors = Counter("edsync_errors", "Errors by kind", ["source", "kind"], registry=r)
        self.lag = Gauge(
            "edsync_lag_events", "Events upstream past the cursor", ["source"], registry=r
        )
        self.position = Gauge(
            "edsync_checkpoint_position", "Committed cursor position", ["source"], registry=r
        )
        self.last_success = Gauge(
            "edsync_last_success_timestamp_seconds", "Last successful poll", ["source"], registry=r
        )
        self.failures = Gauge(
            "edsync_consecutive_failures", "Failed polls in a row", ["source"], registry=r
        )
        self.healthy = Gauge(
            "edsync_source_healthy", "1 unless failing too long", ["source"], registry=r
        )
        self.page_seconds = Histogram(
            "edsync_page_duration_seconds",
            "Time to normalize and apply one page",
            ["source"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self._http(r)
        self._webhooks(r)
        self.deliveries = Gauge(
            "edsync_deliveries", "Outbox by status", ["sink", "status"], registry=r
        )
        # SPEC 8: how the sources are shared out between daemons on one mirror.
        self.held = Gauge("edsync_sources_held", "Sources this process polls", registry=r)
        self.members = Gauge(
            "edsync_daemons", "Live daemons sharing the sources (PostgreSQL)", registry=r
        )
        self.handovers = Counter(
            "edsync_source_handovers",
            "Sources taken (acquired), handed back (released) or lost by this process",
            ["direction"],
            registry=r,
        )

    def _http(self, r: CollectorRegistry) -> None:
        from prometheus_client import Counter

        # stamina's own counter lives in prometheus-client's global registry,
        # which nothing serves; its retry hook feeds this one (http.py).
        self.retries = Counter(
            "edsync_http_retries",
            "HTTP retries scheduled, by source (sink:NAME for a sink) and cause",
            ["source", "cause"],
            registry=r,
        )
        # Every attempt sent, and the 429s among them (http.on_request).
        self.requests = Counter(
            "edsync_http_requests",
            "HTTP requests sent (each attempt), by source (sink:NAME for a sink)",
            ["source"],
            registry=r,
        )
        self.throttled = Counter(
            "edsync_http_throttled",
            "HTTP 429 answers received, by source (sink:NAME for a sink)",
            ["source"],
            registry=r,
        )

    def _webhooks(self, r: CollectorRegistry) -> None:
        from prometheus_client import Counter

        self.webhooks = Counter(
            "edsync_webhooks_received",
            "Webhooks accepted (authorized), by source",
            ["source"],
            registry=r,
        )
        self.webhooks_rejected = Counter(
            "edsync_webhooks_rejected",
            "Webhook requests refused, by source (empty: no such path) and reason "
            "(unauthorized, too_large, bad_request, method, not_found)",
            ["source", "reason"],
            registry=r,
        )
        self.woken = Counter(
            "edsync_polls_woken",
            "Polls started by a webhook rather than by the interval",
            ["source"],
            registry=r,
        )

    def count_request(self, source: str, throttled: bool) -> None:
        """An ``http.on_request`` listener."""
        self.requests.labels(source).inc()
        if throttled:
            self.throttled.labels(source).inc()

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class Health:
    """A source is unhealthy once it has failed for longer than ``unhealthy_after``."""

    def __init__(self, unhealthy_after: float, clock: Callable[[], float] = time.time) -> None:
        self.unhealthy_after = unhealthy_after
        self.clock = clock
        self.failing_since: dict[str, float] = {}
        self.sources: set[str] = set()
        self.lock = threading.Lock()

    def track(self, sources: set[str]) -> None:
        with self.lock:
            self.sources = set(sources)
            self.failing_since = {s: t for s, t in self.failing_since.items() if s in sources}

    def succeeded(self, source: str) -> None:
        with self.lock:
            self.failing_since.pop(source, None)

    def failed(self, source: str) -> None:
        with self.lock:
            self.failing_since.setdefault(source, self.clock())

    def report(self) -> dict[str, Any]:
        now = self.clock()
        with self.lock:
            failing = {
                source: round(now - since, 1)
                for source, since in self.failing_since.items()
                if now - since > self.unhealthy_after
            }
            sources = sorted(self.sources)
        return {"healthy": not failing, "sources": sources, "failing_seconds": failing}

    def is_healthy(self, source: str) -> bool:
        return source not in self.report()["failing_seconds"]


def parse_listen(listen: str, path: str = "") -> tuple[str, int]:
    address = split_listen(listen)
    if address is None:
        raise ConfigError(path, "metrics.listen", f"{listen!r} is not HOST:PORT")
    return address


class MetricsServer:
    """``/metrics`` and ``/healthz`` on a small threaded HTTP server."""

    def __init__(self, settings: MetricsSettings, metrics: Metrics, health: Health) -> None:
        # Imported here: a backfill that serves no metrics skips http.server (13 ms).
        from http.server import ThreadingHTTPServer

        host, port = parse_listen(settings.listen)
        handler = _handler(metrics, health)
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="edsync-metrics", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(metrics: Metrics, health: Health) -> type[BaseHTTPRequestHandler]:
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/metrics":
                body, content_type = metrics.exposition()
                self._reply(200, body, content_type)
            elif self.path.split("?")[0] == "/healthz":
                report = health.report()
                self._reply(
                    200 if report["healthy"] else 503, orjson.dumps(report), "application/json"
                )
            else:
                self._reply(404, b"not found\n", "text/plain")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Scrapes every few seconds are not worth a log line."""

    return Handler
