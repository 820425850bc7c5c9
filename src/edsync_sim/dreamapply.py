"""DreamApply's ``/api[/vN]/journal``: authentication, filters, paging, rendering.

Behaviour follows the journal documentation, including its quiet parts: an
illegal ``order`` means the default, ``limit`` is capped silently (1024, or
512 with ``expand``), so a short page does not mean the end, and events older
than the retention window (six months upstream) are gone, whatever ``bySince``
asks for. ``byEvents`` is required (API v9), on HEAD too: without it, 400.
Under the filter ids jump over the events it hides. An injected event without
a name (a fault a test plants on purpose) is served whatever the filter.
"""

from __future__ import annotations

import heapq
import hmac
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice

from edsync_sim.dataset import Journal, canonical_name
from edsync_sim.web import JSON, Request, Response, Route, json_error

__all__ = [
    "JOURNAL_PATH",
    "MAX_LIMIT",
    "MAX_LIMIT_EXPANDED",
    "RETENTION",
    "At",
    "BadQueryError",
    "JournalQuery",
    "Window",
    "authorized",
    "handle_journal",
    "journal_route",
    "parse_limit",
    "parse_query",
    "refuse",
    "render",
    "select",
]

JOURNAL_PATH = re.compile(r"/api(?:/v\d+)?/journal/?")
MAX_LIMIT = 1024
MAX_LIMIT_EXPANDED = 512
# DreamApply keeps six months of journal.
RETENTION = 183 * 86400.0

_AUTHORIZATION = re.compile(r'\s*DREAM\s+apikey="([^"]*)"\s*')
_DIGITS = re.compile(r"[0-9]+")
# A "+" of a UTC offset that arrived unencoded in a query string reads as a space.
_SPACED_OFFSET = re.compile(r" (\d{2}(?::?\d{2})?)$")


class BadQueryError(ValueError):
    """A filter parameter the server refuses with 400."""


@dataclass(frozen=True, slots=True)
class At:
    """A ``bySince`` / ``byUntil`` given as a datetime (epoch seconds)."""

    timestamp: float


Bound = int | At
# The retention window in seconds, asked for on each request; None keeps everything.
Window = Callable[[], float | None]


@dataclass(frozen=True, slots=True)
class JournalQuery:
    """The journal parameters, validated. ``names`` empty means every event (only
    when called directly: the route requires ``byEvents``)."""

    since: Bound | None = None
    until: Bound | None = None
    newest_first: bool = False
    limit: int = MAX_LIMIT
    names: tuple[str, ...] = ()
    expand: frozenset[str] = frozenset()


def _terms(value: str | None) -> list[str]:
    if not value:
        return []
    return [term.strip() for term in value.split(",") if term.strip()]


def _parse_bound(param: str, value: str) -> Bound:
    value = value.strip()
    if _DIGITS.fullmatch(value):
        return int(value)
    for candidate in (value, _SPACED_OFFSET.sub(r"+\1", value)):
        try:
            moment = datetime.fromisoformat(candidate)
        except ValueError:
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        try:
            return At(moment.timestamp())
        except (OverflowError, ValueError):
            break
    raise BadQueryError(f"{param}: expected an event id or an ISO 8601 datetime, got {value!r}")


def parse_limit(value: str | None, cap: int) -> int:
    """``limit``: at least 1, silently capped at ``cap``, which is also the default."""
    if value is None:
        return cap
    if not _DIGITS.fullmatch(value.strip()) or int(value) < 1:
        raise BadQueryError(f"limit: expected an integer of at least 1, got {value!r}")
    return min(int(value), cap)


def parse_query(query: Mapping[str, str]) -> JournalQuery:
    """Validate the journal parameters; unknown ones are ignored, as upstream."""
    expand = frozenset(_terms(query.get("expand")))
    since = query.get("bySince")
    until = query.get("byUntil")
    return JournalQuery(
        since=_parse_bound("bySince", since) if since else None,
        until=_parse_bound("byUntil", until) if until else None,
        newest_first=query.get("order") == "newest-first",
        limit=parse_limit(query.get("limit"), MAX_LIMIT_EXPANDED if expand else MAX_LIMIT),
        names=tuple(_terms(query.get("byEvents"))),
        expand=expand,
    )


def authorized(headers: Mapping[str, str], api_key: str) -> bool:
    match = _AUTHORIZATION.fullmatch(headers.get("authorization", ""))
    return match is not None and hmac.compare_digest(match.group(1).encode(), api_key.encode())


def _window(journal: Journal, query: JournalQuery, window: float | None) -> tuple[int, int]:
    """Positions [lo, hi) (id - 1) inside bySince..byUntil, both inclusive, and
    not older than the retention ``window``."""
    count = len(journal)
    timestamps = journal.timestamps
    lo = floor = journal.first_retained(window)
    if isinstance(query.since, At):
        lo = max(bisect_left(timestamps, query.since.timestamp), floor)
    elif query.since is not None:
        lo = min(max(query.since - 1, floor), count)
    hi = count
    if isinstance(query.until, At):
        hi = bisect_right(timestamps, query.until.timestamp)
    elif query.until is not None:
        hi = min(query.until, count)
    return lo, max(lo, hi)


def _matching_names(terms: Iterable[str], known: Iterable[str]) -> list[str]:
    """The journal's names that any term selects; ``…: ?`` is a wildcard."""
    exact: set[str] = set()
    prefixes: list[str] = []
    for term in terms:
        if term.endswith(": ?"):
            prefixes.append(term[:-1])
        else:
            exact.update((term, canonical_name(term)))
    wildcard = tuple(prefixes)
    return [name for name in known if name in exact or name.startswith(wildcard)]


def _slice(positions: Sequence[int], start: int, stop: int, *, reverse: bool) -> Iterator[int]:
    indices = range(stop - 1, start - 1, -1) if reverse else range(start, stop)
    return map(positions.__getitem__, indices)


def select(
    journal: Journal, query: JournalQuery, window: float | None = None
) -> tuple[int, list[int]]:
    """(X-Count, positions of the page), forgetting events older than ``window``
    seconds before the journal's clock. Call with ``journal.locked()`` held."""
    lo, hi = _window(journal, query, window)
    if not query.names:
        span = range(hi - 1, lo - 1, -1) if query.newest_first else range(lo, hi)
        return hi - lo, list(span[: query.limit])
    index = journal.positions_by_name
    count = 0
    streams: list[Iterator[int]] = []
    unnamed = journal.unnamed_positions  # planted faults: served whatever the filter
    start, stop = bisect_left(unnamed, lo), bisect_left(unnamed, hi)
    count += stop - start
    streams.append(_slice(unnamed, start, stop, reverse=query.newest_first))
    for name in _matching_names(query.names, index):
        positions = index[name]
        start, stop = bisect_left(positions, lo), bisect_left(positions, hi)
        count += stop - start
        streams.append(_slice(positions, start, stop, reverse=query.newest_first))
    # Names are disjoint, so merging their sorted streams yields each event once.
    merged = heapq.merge(*streams, reverse=query.newest_first)
    return count, list(islice(merged, query.limit))


def render(journal: Journal, positions: Sequence[int], expand: frozenset[str]) -> bytes:
    """The page body: the events' cached fragments in one JSON object."""
    return b"{" + b",".join(journal.fragments(expand, positions)) + b"}"


def refuse(request: Request, api_key: str) -> Response | None:
    """The 405 or 401 every DreamApply route answers before looking at anything else."""
    if request.method not in ("GET", "HEAD"):
        return json_error(405, f"{request.method} is not allowed here", {"Allow": "GET, HEAD"})
    if not authorized(request.headers, api_key):
        return json_error(
            401,
            'missing or wrong API key: send Authorization: DREAM apikey="..."',
            {"WWW-Authenticate": "DREAM"},
        )
    return None


def handle_journal(
    journal: Journal, api_key: str, request: Request, window: float | None = None
) -> Response:
    refusal = refuse(request, api_key)
    if refusal is not None:
        return refusal
    if not _terms(request.query.get("byEvents")):
        return json_error(400, "byEvents is required: the event names to list")
    try:
        query = parse_query(request.query)
    except BadQueryError as exc:
        return json_error(400, str(exc))
    with journal.locked():
        count, page = select(journal, query, window)
    headers = {"Content-Type": JSON, "X-Count": str(count)}
    if request.method == "HEAD":
        return Response(200, b"", headers)
    return Response(200, render(journal, page, query.expand), headers)


def journal_route(
    journal: Journal,
    api_key: str,
    before: Callable[[], None] | None = None,
    window: Window | None = None,
) -> Route:
    """The journal route; ``before`` runs first on each request (the simulator grows the
    journal there); ``window`` gives the retention in force (default: keep everything)."""

    def handler(request: Request) -> Response:
        if before is not None:
            before()
        return handle_journal(journal, api_key, request, None if window is None else window())

    return Route("dreamapply", JOURNAL_PATH, handler)
