"""DreamApply's list endpoints, served over the same history as the journal.

A client bootstraps a mirror from these: applicants and applications paged by
their own ids (``bySince`` / ``byUntil`` inclusive, ``limit``), each
application's offers, the offer types whose titles are the statuses the
journal's names carry, and what was purged. Each object is the entity as it is
now, the very bytes the journal's newest event about it embeds with
``expand``; purged entities are not listed but named by
``/purged-resources``.

Every body is a JSON object keyed by id (by purge number for purged
resources; ``{}`` when empty, as the journal); ``X-Count`` counts what matches
the filters, ``limit`` aside. ``limit`` is capped silently at 32768, or 8192
with ``expand``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import orjson

from edsync.simulator.dataset import (
    FIRST_IDS,
    OFFER_TYPES,
    Entity,
    Journal,
    Purge,
    Registry,
)
from edsync.simulator.dreamapply import BadQueryError, parse_limit, refuse
from edsync.simulator.web import JSON, Request, Response, Route, json_error

__all__ = [
    "APPLICANTS_PATH",
    "APPLICATIONS_PATH",
    "MAX_LIST_LIMIT",
    "MAX_LIST_LIMIT_EXPANDED",
    "OFFERS_PATH",
    "OFFER_TYPES_PATH",
    "PURGED_PATH",
    "ListQuery",
    "list_routes",
    "parse_list_query",
    "select_entities",
    "select_purges",
]

_PREFIX = r"/api(?:/v\d+)?"
APPLICANTS_PATH = re.compile(_PREFIX + r"/applicants/?")
APPLICATIONS_PATH = re.compile(_PREFIX + r"/applications/?")
# Digits only, so ".../applications/offers/types" never reads as application "offers".
OFFERS_PATH = re.compile(_PREFIX + r"/applications/(?P<id>[0-9]+)/offers/?")
OFFER_TYPES_PATH = re.compile(_PREFIX + r"/applications/offers/types(?:/(?P<id>[^/]+))?/?")
PURGED_PATH = re.compile(_PREFIX + r"/purged-resources/?")

MAX_LIST_LIMIT = 32768
MAX_LIST_LIMIT_EXPANDED = 8192

_DIGITS = re.compile(r"[0-9]+")
_TYPES: dict[int, bytes] = {
    id_: orjson.dumps({"id": id_, "title": title}) for id_, title in OFFER_TYPES.items()
}


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A list endpoint's parameters, validated: inclusive id bounds, a page size."""

    since: int | None = None
    until: int | None = None
    limit: int = MAX_LIST_LIMIT
    expand: frozenset[str] = frozenset()


def _parse_id(param: str, value: str | None) -> int | None:
    if not value:
        return None
    value = value.strip()
    if not _DIGITS.fullmatch(value):
        raise BadQueryError(f"{param}: expected an id, got {value!r}")
    return int(value)


def parse_list_query(query: Mapping[str, str]) -> ListQuery:
    """Validate ``bySince``, ``byUntil``, ``limit`` and ``expand``; others are ignored."""
    expand = frozenset(term.strip() for term in query.get("expand", "").split(",") if term.strip())
    cap = MAX_LIST_LIMIT_EXPANDED if expand else MAX_LIST_LIMIT
    return ListQuery(
        since=_parse_id("bySince", query.get("bySince")),
        until=_parse_id("byUntil", query.get("byUntil")),
        limit=parse_limit(query.get("limit"), cap),
        expand=expand,
    )


def select_entities(
    entities: Sequence[Entity], first_id: int, query: ListQuery
) -> tuple[int, list[Entity]]:
    """(X-Count, page) of the live entities with ids inside the bounds, ascending.

    ``entities`` holds consecutive ids from ``first_id``, so the bounds are a
    slice; liveness needs a look at each, as deletions leave holes anywhere.
    """
    lo = 0 if query.since is None else max(query.since - first_id, 0)
    hi = len(entities) if query.until is None else query.until - first_id + 1
    # max(): a negative stop would count from the end.
    live = [entity for entity in entities[lo : max(hi, lo)] if entity.live]
    return len(live), live[: query.limit]


def select_purges(purges: Mapping[int, Purge], query: ListQuery) -> tuple[int, list[Purge]]:
    """(X-Count, page) of the purge entries numbered inside the bounds, ascending."""
    low = query.since if query.since is not None else 0
    high = query.until if query.until is not None else float("inf")
    matching = [purge for number, purge in purges.items() if low <= number <= high]
    return len(matching), matching[: query.limit]


def _object(items: Iterable[tuple[int, bytes]]) -> bytes:
    """``{"id": value, …}`` from serialized values, in the order given."""
    return b"{" + b",".join(b'"%d":%b' % item for item in items) + b"}"


def _application_json(application: Entity, expand: frozenset[str]) -> bytes:
    owner = application.owner
    if "applicant" not in expand or owner is None:
        return application.json()
    data = application.data()
    data["applicant"] = orjson.Fragment(owner.json())
    return orjson.dumps(data)


def _purge_json(purge: Purge) -> bytes:
    entity = purge.entity
    return orjson.dumps(
        {
            "type": entity.kind,
            "id": entity.id,
            "resource": entity.link,
            "purged": purge.purged,
            "reason": purge.reason,
        }
    )


def _listing(request: Request, count: int, items: Iterable[tuple[int, bytes]]) -> Response:
    """The list response; ``items`` (lazy) are rendered for GET only."""
    body = b"" if request.method == "HEAD" else _object(items)
    return Response(200, body, {"Content-Type": JSON, "X-Count": str(count)})


# A route's work once the request is authorized: the registry, the request and
# its path's match → the response. It runs with the journal's lock held, so it
# sees one moment of the history.
_Handler = Callable[[Registry, Request, re.Match[str]], Response]


def _applicants(registry: Registry, request: Request, path: re.Match[str]) -> Response:
    query = parse_list_query(request.query)
    count, page = select_entities(registry.entities("applicant"), FIRST_IDS["applicant"], query)
    return _listing(request, count, ((entity.id, entity.json()) for entity in page))


def _applications(registry: Registry, request: Request, path: re.Match[str]) -> Response:
    query = parse_list_query(request.query)
    entities = registry.entities("application")
    count, page = select_entities(entities, FIRST_IDS["application"], query)
    items = ((entity.id, _application_json(entity, query.expand)) for entity in page)
    return _listing(request, count, items)


def _offers(registry: Registry, request: Request, path: re.Match[str]) -> Response:
    application = registry.get("application", int(path.group("id")))
    if application is None:
        return json_error(404, f"no such application: {path.group('id')}")
    if not application.live:
        # Upstream does not serve what it purged (a forgotten applicant's above all).
        return json_error(404, f"application {application.id} was purged")
    offers = application.children or []
    return _listing(request, len(offers), ((offer.id, offer.json()) for offer in offers))


def _offer_types(registry: Registry, request: Request, path: re.Match[str]) -> Response:
    wanted = path.group("id")
    if wanted is None:
        return _listing(request, len(_TYPES), _TYPES.items())
    body = _TYPES.get(int(wanted)) if _DIGITS.fullmatch(wanted) else None
    if body is None:
        return json_error(404, f"no such offer type: {wanted}")
    return Response(200, b"" if request.method == "HEAD" else body)


def _purged(registry: Registry, request: Request, path: re.Match[str]) -> Response:
    query = parse_list_query(request.query)
    count, page = select_purges(registry.purges, query)
    return _listing(request, count, ((purge.number, _purge_json(purge)) for purge in page))


def list_routes(
    journal: Journal, api_key: str, before: Callable[[], None] | None = None
) -> list[Route]:
    """The list endpoints' routes; ``before`` runs first on each request (the
    simulator grows the journal there, as for the journal route)."""

    def route(name: str, pattern: re.Pattern[str], handle: _Handler) -> Route:
        def serve(request: Request) -> Response:
            if before is not None:
                before()
            refusal = refuse(request, api_key)
            if refusal is not None:
                return refusal
            path = pattern.fullmatch(request.path)
            if path is None:  # only when called by hand: the server matched it
                return json_error(404, f"no such resource: {request.path}")
            try:
                with journal.locked():
                    return handle(journal.registry, request, path)
            except BadQueryError as exc:
                return json_error(400, str(exc))

        return Route(name, pattern, serve)

    return [
        route("dreamapply-offer-types", OFFER_TYPES_PATH, _offer_types),
        route("dreamapply-offers", OFFERS_PATH, _offers),
        route("dreamapply-applicants", APPLICANTS_PATH, _applicants),
        route("dreamapply-applications", APPLICATIONS_PATH, _applications),
        route("dreamapply-purged", PURGED_PATH, _purged),
    ]
