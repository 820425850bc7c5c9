"""Webhook sink: POST each signal as JSON, signed with HMAC-SHA256.

Headers:
- ``X-Edsync-Delivery``: the signal id; the same on every retry, so receivers dedupe.
- ``X-Edsync-Timestamp``: Unix seconds when this attempt was signed.
- ``X-Edsync-Signature``: ``sha256=`` + hex HMAC-SHA256(secret, f"{timestamp}.{body}").

A receiver recomputes the HMAC over the raw body bytes, compares with
``hmac.compare_digest`` and rejects timestamps more than a few minutes old
(see ``verify``, which the tests use as the documented recipe).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import orjson

from edsync.config import Secret, SinkSettings
from edsync.errors import ConfigError
from edsync.sinks.base import Signal
from edsync.sources.http import HttpClient

SIGNATURE = "X-Edsync-Signature"
TIMESTAMP = "X-Edsync-Timestamp"
DELIVERY = "X-Edsync-Delivery"
TOLERANCE = 300.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings(SinkSettings):
    secret: Secret


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: Callable[[], float] = time.time,
    tolerance: float = TOLERANCE,
) -> bool:
    """The receiver's check: a fresh timestamp and a matching signature."""
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp = lowered.get(TIMESTAMP.lower(), "")
    signature = lowered.get(SIGNATURE.lower(), "")
    if not timestamp.isdigit() or abs(now() - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookSink:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.name = settings.name
        self.secret = settings.secret.reveal().encode()
        self.clock = clock
        self.http = HttpClient(
            f"sink {settings.name!r}",
            settings.base_url,
            timeout=settings.timeout,
            ca_bundle=settings.ca_bundle,
        )

    def body(self, signal: Signal) -> bytes:
        return orjson.dumps(
            {
                "id": signal.id,
                "rule": signal.rule,
                "event_type": signal.event_type,
                "source": signal.source,
                "event_id": signal.event_id,
                "entity": signal.entity,
                "entity_id": signal.entity_id,
                "occurred_at": signal.occurred_at,
                "member": signal.member,
                "change": signal.change,
            }
        )

    def send(self, signal: Signal) -> None:
        body = self.body(signal)
        timestamp = str(int(self.clock()))
        self.http.once(
            "POST",
            "",
            content=body,
            headers={
                "Content-Type": "application/json",
                DELIVERY: signal.id,
                TIMESTAMP: timestamp,
                SIGNATURE: sign(self.secret, timestamp, body),
            },
        )

    def close(self) -> None:
        self.http.close()


def create(settings: SinkSettings) -> WebhookSink:
    if not isinstance(settings, Settings):
        raise ConfigError("", f"sinks.{settings.name}", "not webhook settings")
    return WebhookSink(settings)


def probe(settings: SinkSettings) -> str:
    """A webhook has no read endpoint; a signed POST would be a write. Check the URL only."""
    return "not contacted (a webhook accepts only deliveries)"
