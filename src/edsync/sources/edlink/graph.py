"""Edlink's Graph API (SPEC 2.2) as the stream and the snapshot read it: the
source's settings, its client, how a reply is read (its ``$data``, or the
refusal it carries), and how its pages link on (``$next``; the same request
with a smaller ``$first`` for a page being narrowed, SPEC 5.3)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from edsync import jsontext
from edsync.errors import MalformedPageError
from edsync.http import HttpClient, Reply, Target
from edsync.model import Unreadable
from edsync.pages import Page
from edsync.settings import Duration, HttpUrl, Secret, SourceSettings
from edsync.sources.edlink.refusals import REFUSALS, refusal_error

MAX_PAGE = 10_000
PERSON_ENTITY = "person"

Link = tuple[str, dict[str, str] | None]
"""A Graph request: a path and its query, or a ``$next`` URL as Edlink sent it
(no query of ours: its cursor is in it)."""


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
            Target.source(settings.name),
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

    def _sized(self, link: Link, size: int) -> Link:
        """``link`` asking for ``size`` items: itself when it does (a ``$next``
        is followed as sent), else the same request, the same cursor, with
        ``$first`` set: a page narrowed (SPEC 5.3), or the full size again
        after one (the ``$next`` of a narrowed page carries its size)."""
        asked = first_of(link)
        if asked == str(size) or (asked is None and size == self.settings.page_size):
            return link
        return with_first(link, size)

    def _page(self, link: Link, size: int) -> Page[Any, Link]:
        """One page of a list: its ``$data``, and its ``$next`` if it has items."""
        url, params = self._sized(link, size)
        reply, body = self.http.fetch("GET", url, params, self._read(), expect=REFUSALS)
        data = self._data(reply, body)
        return Page(data, next_link(body) if data else None)

    def _data(self, reply: Reply, body: object = None) -> list[Any]:
        body = reply.json(f"source {self.name!r}") if body is None else body
        data = body.get("$data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise MalformedPageError(f"source {self.name!r}: response has no `$data` list")
        return data


def next_link(body: object) -> Link | None:
    """The page after ``body``'s, as Edlink names it (``$next``), if any."""
    link = body.get("$next") if isinstance(body, dict) else None
    return (link, None) if isinstance(link, str) and link else None


def first_of(link: Link) -> str | None:
    """The ``$first`` that ``link`` asks for, if it names one."""
    url, params = link
    if params is not None:
        return params.get("$first")
    for pair in urlsplit(url).query.split("&"):
        name, _, value = pair.partition("=")
        if name in _FIRST_NAMES:
            return value
    return None


def with_first(link: Link, size: int) -> Link:
    """``link`` asking for ``size`` items (``$first``). A ``$next`` URL keeps
    every other byte of its query: its cursor is opaque, and decoding and
    encoding it again could change it."""
    url, params = link
    if params is not None:
        return url, {**params, "$first": str(size)}
    parts = urlsplit(url)
    kept = [p for p in parts.query.split("&") if p and p.partition("=")[0] not in _FIRST_NAMES]
    query = "&".join([*kept, f"$first={size}"])
    return urlunsplit(parts._replace(query=query)), None


_FIRST_NAMES = frozenset({"$first", "%24first"})  # as sent, or percent-encoded


def lone_event(text: str, target: str) -> Page[Any, Link]:
    """A page of ``$first=1`` (``text``) whose one event no parser reads: the
    event kept as its text with its ``id`` where the text names one, to be
    quarantined, and the page after it (SPEC 5.3)."""
    try:
        page = jsontext.outline(text, 2)  # the envelope and its $data list built
    except jsontext.NotJsonError as exc:
        raise MalformedPageError(f"{target}: invalid JSON in response ({exc})") from None
    data = page.get("$data") if isinstance(page, dict) else None
    if not isinstance(data, list) or len(data) != 1:
        raise MalformedPageError(f"{target}: a page of $first=1 holds no single event")
    (span,) = data
    reason = (
        f"event nested {span.depth} levels deep, past what a parser here reads "
        f"({jsontext.MAX_DEPTH}); its payload is its text as sent"
    )
    item = span.of(text)
    return Page([Unreadable(item, reason, _own_id(item))], next_link(page))


def _own_id(text: str) -> str | None:
    """The ``id`` member of an event's text (valid JSON, however deep), if a string."""
    event = jsontext.outline(text, 1)
    found = event.get("id") if isinstance(event, dict) else None
    if not isinstance(found, jsontext.Span) or not text.startswith('"', found.start):
        return None
    value = jsontext.loads(found.of(text))
    return value if isinstance(value, str) and value else None


def person_of(entity: str, entity_id: str, data: dict[str, Any]) -> str | None:
    """The person an object is about: a person is its own; another names one
    by ``person_id`` (an enrollment) or none."""
    if entity == PERSON_ENTITY:
        return entity_id
    person = data.get("person_id")
    return person if isinstance(person, str) else None
