"""Webhook sink: POST each signal as JSON, signed as Standard Webhooks says (SPEC 2.4).

Headers (https://www.standardwebhooks.com, "Webhook headers"):
- ``webhook-id``: the signal id; the same on every retry, so receivers dedupe on it.
- ``webhook-timestamp``: Unix seconds when this attempt was signed.
- ``webhook-signature``: ``v1,`` + base64 HMAC-SHA256(key, f"{id}.{timestamp}.{body}").

The secret is what the specification serializes: ``whsec_`` + base64 of the
key (it asks for 24 to 64 random bytes). Without the prefix, the value is read
as the bare base64, as the reference libraries read it, so a receiver hands
the very same string to ``standardwebhooks.Webhook``. Anything else (not
base64, fewer than 24 bytes) is a configuration error naming ``secret_env``.
``verify`` is the receiver's check without the library, the README's
fallback recipe.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import orjson

from edsync.errors import ConfigError
from edsync.http import HttpClient, Target
from edsync.model import Signal
from edsync.settings import Secret, SinkSettings

ID = "webhook-id"
TIMESTAMP = "webhook-timestamp"
SIGNATURE = "webhook-signature"
PREFIX = "whsec_"
MIN_KEY_BYTES = 24  # the specification's floor for a symmetric key
TOLERANCE = 300.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings(SinkSettings):
    secret: Secret

    def check(self) -> tuple[str, str] | None:
        if not self.secret.reveal():
            return None  # not read (status, db): nothing to check
        try:
            signing_key(self.secret.reveal())
        except ValueError as exc:
            key = "secret_file" if self.secret.file else "secret_env"
            return key, f"{self.secret.origin} {exc}"
        return None


def signing_key(secret: str) -> bytes:
    """The HMAC key a ``whsec_``-serialized secret holds; ValueError (never
    echoing the value) when it holds none."""
    encoded = secret.removeprefix(PREFIX)
    try:
        # Unpadded base64 is accepted, as the reference libraries accept it.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "is not a Standard Webhooks secret: expected whsec_ followed by base64 "
            "(make one with: echo whsec_$(openssl rand -base64 32))"
        ) from None
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"holds a {len(key)}-byte key; Standard Webhooks asks for at least "
            f"{MIN_KEY_BYTES} random bytes (make one with: echo whsec_$(openssl rand -base64 32))"
        )
    return key


def sign(key: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: Callable[[], float] = time.time,
    tolerance: float = TOLERANCE,
) -> bool:
    """The receiver's check: a fresh timestamp and one matching ``v1`` signature."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id, timestamp = lowered.get(ID, ""), lowered.get(TIMESTAMP, "")
    if not msg_id or not timestamp.isdigit() or abs(now() - int(timestamp)) > tolerance:
        return False
    expected = sign(signing_key(secret), msg_id, timestamp, body)
    offered = lowered.get(SIGNATURE, "").split()
    return any(hmac.compare_digest(expected, signature) for signature in offered)


def _now() -> float:
    return time.time()  # looked up per call, so freezegun's clock reaches it


class WebhookSink:
    def __init__(self, settings: Settings, clock: Callable[[], float] = _now) -> None:
        self.name = settings.name
        self.key = signing_key(settings.secret.reveal())
        self.clock = clock
        self.http = HttpClient(
            Target.sink(settings.name),
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

    def headers(self, signal: Signal, body: bytes) -> dict[str, str]:
        timestamp = str(int(self.clock()))
        return {
            "Content-Type": "application/json",
            ID: signal.id,
            TIMESTAMP: timestamp,
            SIGNATURE: sign(self.key, signal.id, timestamp, body),
        }

    def send(self, signal: Signal) -> None:
        body = self.body(signal)
        self.http.once("POST", "", content=body, headers=self.headers(signal, body))

    def close(self) -> None:
        self.http.close()


def create(settings: SinkSettings) -> WebhookSink:
    if not isinstance(settings, Settings):
        raise ConfigError("", f"sinks.{settings.name}", "not webhook settings")
    return WebhookSink(settings)


def probe(settings: SinkSettings) -> str:
    """A webhook has no read endpoint; a signed POST would be a write. Check the URL only."""
    return "not contacted (a webhook accepts only deliveries)"
