"""Edlink's Graph API (SPEC 2.2) as the stream and the snapshot read it: the
source's settings, its client, and how a reply is read (its ``$data``, or
the refusal it carries)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from edsync.errors import MalformedPageError
from edsync.http import HttpClient, Reply
from edsync.settings import Duration, HttpUrl, Secret, SourceSettings
from edsync.sources.edlink.refusals import refusal_error

MAX_PAGE = 10_000
PERSON_ENTITY = "person"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings(SourceSettings):
    base_url: HttpUrl = HttpUrl("https://ed.link")
    token: Secret
    interval: Duration = Duration(300.0)
    page_size: int = 1000
    retention: Duration = Duration(30 * 86400.0)
    resync: Literal["auto", "manual"] = "auto"

    def check(self) -> tuple[str, str] | None:
        if not 1 <= self.page_size <= MAX_PAGE:
            return "page_size", f"must be between 1 and {MAX_PAGE} (Edlink's $first)"
        return None


class GraphReader:
    """What the stream and the snapshot share: the client with the token,
    and how a reply is read."""

    def __init__(self, settings: Settings, http: HttpClient | None = None) -> None:
        self.name = settings.name
        self.settings = settings
        self.http = http or HttpClient(
            f"source {settings.name!r}",
            settings.base_url,
            headers={"Authorization": f"Bearer {settings.token.reveal()}"},
            timeout=settings.timeout,
            retry_for=settings.retry_for,
            ca_bundle=settings.ca_bundle,
            credential=settings.token,
        )

    def close(self) -> None:
        self.http.close()

    def _read(self, *, after: str | None = None) -> Callable[[Reply], tuple[Reply, object]]:
        """A reader of one reply: its parsed body, checked for `$data`; or the
        refusal it carries as edsync's error (``after``: see ``refusal_error``)."""

        def read(reply: Reply) -> tuple[Reply, object]:
            if reply.status >= 400:
                raise refusal_error(reply, self, after)
            body = reply.json(f"source {self.name!r}")
            self._data(reply, body)
            return reply, body

        return read

    def _data(self, reply: Reply, body: object = None) -> list[Any]:
        body = reply.json(f"source {self.name!r}") if body is None else body
        data = body.get("$data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise MalformedPageError(f"source {self.name!r}: response has no `$data` list")
        return data


def person_of(entity: str, entity_id: str, data: dict[str, Any]) -> str | None:
    """The person an object is about: a person is its own; another names one
    by ``person_id`` (an enrollment) or none."""
    if entity == PERSON_ENTITY:
        return entity_id
    person = data.get("person_id")
    return person if isinstance(person, str) else None
