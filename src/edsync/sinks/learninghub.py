"""Learning Hub Event Store sink (SPEC 2.3): settings; delivery comes with rules."""

from __future__ import annotations

from dataclasses import dataclass

from edsync.config import Secret, SinkSettings


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings(SinkSettings):
    program_id: str
    user_id: str
    api_key: Secret
