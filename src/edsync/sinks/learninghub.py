"""Learning Hub Event Store (SPEC 2.3): ``PUT /events/{ProgramId}-{id}``, Basic auth."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import orjson

from edsync.errors import ConfigError, FatalError
from edsync.http import HttpClient, Target
from edsync.model import Signal
from edsync.settings import Secret, SinkSettings


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings(SinkSettings):
    program_id: str
    user_id: str
    api_key: Secret

    needs_member: ClassVar[bool] = True
    """``ProgramMemberId`` is required: a rule publishing here must have a
    ``member`` (checked when rules are compiled)."""


def _client(settings: Settings) -> HttpClient:
    return HttpClient(
        Target.sink(settings.name),
        settings.base_url,
        auth=(settings.user_id, settings.api_key.reveal()),
        credential=settings.api_key,
        timeout=settings.timeout,
        ca_bundle=settings.ca_bundle,
    )


class LearningHubSink:
    def __init__(self, settings: Settings) -> None:
        self.name = settings.name
        self.program = settings.program_id
        self.http = _client(settings)

    def event_id(self, signal: Signal) -> str:
        return f"{self.program}-{signal.id}"

    def payload(self, signal: Signal) -> dict[str, object]:
        """The event's body; a FatalError (never sent) without a member: the
        publisher holds a signal whose member is not in the mirror yet, so one
        that reaches here without it never will have one."""
        if signal.member is None:
            raise FatalError(
                f"sink {self.name!r}: no ProgramMemberId for signal {signal.id} (rule "
                f"{signal.rule!r}: its member names nothing in the event, or was erased); "
                "not sent"
            )
        return {
            "ProgramId": self.program,
            "ProgramMemberId": signal.member,
            "EventType": signal.event_type,
            "EventStartUTC": signal.occurred_at,
            "EventEndUTC": signal.occurred_at,
            "EventData": signal.change,
        }

    def send(self, signal: Signal) -> None:
        self.http.once(
            "PUT",
            f"/events/{self.event_id(signal)}",
            content=orjson.dumps(self.payload(signal)),
            headers={"Content-Type": "application/json"},
        )

    def close(self) -> None:
        self.http.close()


def create(settings: SinkSettings) -> LearningHubSink:
    if not isinstance(settings, Settings):
        raise ConfigError("", f"sinks.{settings.name}", "not Learning Hub settings")
    return LearningHubSink(settings)


def probe(settings: SinkSettings) -> str:
    """The Event Store documents no read endpoint (SPEC 2.3), and a PUT would be
    a write: ``check`` proves that the host answers (its TLS certificate
    verified) and says plainly that the credentials are not checked here."""
    assert isinstance(settings, Settings)
    http = _client(settings)
    try:
        reply = http.once("HEAD", "", expect=range(100, 600))
    finally:
        http.close()
    over = "over TLS" if settings.base_url.startswith("https:") else "over plain HTTP"
    return (
        f"host answers {over} (HTTP {reply.status}); the Event Store has no read "
        "endpoint, so user_id and api_key are verified by the first delivery"
    )
