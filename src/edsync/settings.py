"""What a configuration says, as typed settings: the leaf every other module reads.

``edsync.config`` builds these from the TOML file; nothing here imports the
rest of edsync, so sources, sinks and rules depend on it without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NewType

if TYPE_CHECKING:
    from edsync.rules import Rule

Duration = NewType("Duration", float)
"""Seconds, written in the file as ``"30s"``, ``"5m"``, ``"1h"``, ``"30d"``."""

HttpUrl = NewType("HttpUrl", str)
"""An ``http(s)://`` URL; plain http only to loopback or when allowed."""


@dataclass(frozen=True, slots=True)
class Secret:
    """A credential, never showing its value: read from the environment
    variable ``env`` (``*_env`` keys), or from ``file`` (``*_file`` keys, e.g.
    a systemd credential), ``env`` then empty."""

    env: str
    value: str = field(repr=False)
    file: str | None = None

    def reveal(self) -> str:
        return self.value

    @property
    def origin(self) -> str:
        """Where the value came from, for messages: ``environment variable X``
        or ``file PATH``."""
        return f"file {self.file}" if self.file is not None else f"environment variable {self.env}"

    def __str__(self) -> str:
        return "***"

    def __repr__(self) -> str:
        if self.file is not None:
            return f"Secret(file={self.file!r})"
        return f"Secret(env={self.env!r})"


@dataclass(frozen=True, slots=True)
class MirrorSettings:
    url: str = "sqlite:///edsync.db"
    auto_migrate: bool = True


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    listen: str = "127.0.0.1:9464"
    unhealthy_after: Duration = Duration(900.0)


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


def split_listen(listen: str) -> tuple[str, int] | None:
    """A ``listen`` key ("HOST:PORT", an IPv6 host in brackets) as (host,
    port), or None when it is not of that form."""
    host, sep, port = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit():
        return None
    return host, int(port)


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookSettings:
    """Where a source's upstream POSTs its webhooks (``[sources.NAME.webhook]``):
    ``listen`` ("HOST:PORT", usually loopback behind the site's TLS proxy),
    ``path``, and the ``Authorization`` value the upstream sends with each."""

    listen: str
    path: str
    authorization: Secret

    def address(self) -> tuple[str, int] | None:
        """``listen`` as (host, port), or None when it is not HOST:PORT."""
        address = split_listen(self.listen)
        return address if address is not None and 0 < address[1] < 65536 else None

    def check(self) -> tuple[str, str] | None:
        if self.address() is None:
            return "listen", f'{self.listen!r} is not HOST:PORT (e.g. "127.0.0.1:8787")'
        path = self.path
        if not path.startswith("/") or any(c in path for c in "?# ") or not path.isprintable():
            return "path", f'{path!r} is not a URL path (e.g. "/hooks/source")'
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointSettings:
    """Keys every HTTP peer (source or sink) has; ``name`` and ``kind`` come
    from the table key and its ``kind``."""

    name: str
    kind: str
    base_url: HttpUrl
    timeout: Duration = Duration(30.0)
    retry_for: Duration = Duration(120.0)
    ca_bundle: str | None = None
    allow_insecure_http: bool = False

    def check(self) -> tuple[str, str] | None:
        """Cross-field validation: (key, message) for the first problem."""
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceSettings(EndpointSettings):
    """Keys every feed kind has; a kind subclasses it with its own."""

    interval: Duration = Duration(60.0)
    page_size: int = 1000
    on_invalid: Literal["quarantine", "stop"] = "quarantine"

    def check(self) -> tuple[str, str] | None:
        if self.page_size < 1:
            return "page_size", "must be at least 1"
        return None

    def hook(self) -> WebhookSettings | None:
        """The webhook that wakes this source's poll: a kind that has webhooks
        declares the key ``webhook: WebhookSettings | None``."""
        hook = getattr(self, "webhook", None)
        return hook if isinstance(hook, WebhookSettings) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkSettings(EndpointSettings):
    """Keys every sink kind has. ``retry_for`` is the delivery budget: a delivery
    that keeps failing is retried (capped backoff) this long after its first
    failed attempt, then marked ``failed``; a day outlasts an ordinary outage."""

    retry_for: Duration = Duration(86400.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleSettings:
    name: str
    source: str
    event: str | None = None
    match: dict[str, str] = field(default_factory=dict)
    where: dict[str, Any] = field(default_factory=dict)
    publish: list[str] = field(default_factory=list)
    event_type: str | None = None
    member: str | None = None

    def check(self) -> tuple[str, str] | None:
        if self.event is None and not self.match:
            return "event", "a rule needs `event` (a journal name) or `match`"
        return None


@dataclass(frozen=True, slots=True)
class Config:
    path: str
    mirror: MirrorSettings = field(default_factory=MirrorSettings)
    log: LogSettings = field(default_factory=LogSettings)
    metrics: MetricsSettings | None = None
    sources: dict[str, SourceSettings] = field(default_factory=dict)
    sinks: dict[str, SinkSettings] = field(default_factory=dict)
    rules: list[RuleSettings] = field(default_factory=list)
    compiled_rules: tuple[Rule, ...] = ()
    """``rules`` compiled once by the loader (``config.compile``), for every caller."""
