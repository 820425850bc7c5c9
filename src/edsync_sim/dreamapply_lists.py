"""DreamApply's list endpoints, served over the same history as the journal.

A client bootstraps a mirror from these, as the vendor documents them:
applicants paged by their own ids (``bySince`` / ``byUntil`` inclusive,
``limit``); applications, which **require** ``byAcademicTermID``,
``byAcademicYear`` or ``byAcademicYears`` (400 without) and have no id paging,
only the hard cap (``byApplicantIDs`` narrows them further), each keyed by its
id (no ``id`` inside), with ``expand`` as an application's own endpoint has it
(``applicant``, ``offers`` (or ``offer``), ``tasks``, ``references``,
``documents``, ``flags``, ``courses``: ``dreamapply_resources``); the academic
terms; each application's offers (no applicant or application link:
Offer.php); the offer types whose titles are the statuses the journal's names
carry; and what was purged, in the documented shape (a ``pages`` paginator
beside entries keyed by list number). Each object is the entity as it is now;
purged entities are not listed. Offer types and purged resources exist from
API v4 on: under the unversioned ``/api`` (API v3) they are 404.

Every body is a JSON object keyed by id (by list number for purged resources;
``{}`` when empty, as the journal); ``X-Count`` counts what matches the
filters, ``limit`` aside. ``limit`` is capped silently at 32768, or 8192 with
``expand``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import orjson

from edsync_sim.dataset import (
    ACADEMIC_TERMS,
    FIRST_IDS,
    OFFER_TYPES,
    Entity,
    Journal,
    Purge,
    Registry,
)
from edsync_sim.dreamapply import BadQueryError, parse_limit
from edsync_sim.dreamapply_resources import (
    PREFIX,
    PREFIX_V4,
    application_json,
    dreamapply_route,
    keyed_object,
    parse_expand,
    serve_children,
)
from edsync_sim.web import JSON, Request, Response, Route, json_error

__all__ = [
    "ACADEMIC_TERMS_PATH",
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

APPLICANTS_PATH = re.compile(PREFIX + r"/applicants/?")
APPLICATIONS_PATH = re.compile(PREFIX + r"/applications/?")
# Digits only, so ".../applications/offers/types" never reads as application "offers".
OFFERS_PATH = re.compile(PREFIX + r"/applications/(?P<id>[0-9]+)/offers/?")
OFFER_TYPES_PATH = re.compile(PREFIX_V4 + r"/applications/offers/types(?:/(?P<id>[^/]+))?/?")
PURGED_PATH = re.compile(PREFIX_V4 + r"/purged-resources/?")
ACADEMIC_TERMS_PATH = re.compile(PREFIX + r"/academic-terms/?")
PURGED_PER_PAGE = 1000
_TERM_FILTERS = ("byAcademicTermID", "byAcademicYear", "byAcademicYears")

MAX_LIST_LIMIT = 32768
MAX_LIST_LIMIT_EXPANDED = 8192

_DIGITS = re.compile(r"[0-9]+")
# help .../api_applications_offers_types: flags print as 1 or null.
_COLOURS = ("#FFD21F", "#97C4D9", "#5CB85C", "#2E7D32", "#D9534F", "#1565C0", "#9E9E9E")
_TYPES: dict[int, bytes] = {
    id_: orjson.dumps(
        {
            "id": id_,
            "status": "Online",
            "title": title,
            "colour": _COLOURS[(id_ - 1) % len(_COLOURS)],
            "ranking": "In quota" if title in ("Accepted", "Enrolled") else "Pending",
            "bcc": [],
            "confirm": 1 if title in ("Conditional", "Unconditional") else None,
            "freeze": 1 if title in ("Accepted", "Enrolled", "Rejected") else None,
            "decide": 1 if title in ("Conditional", "Unconditional", "Offered") else None,
            "decline": 1 if title in ("Conditional", "Unconditional", "Offered") else None,
            "reopen": None,
            "silence": None,
            "subject": f"Reply {title}",
            "comments": f"Dear %applicant-Name%,\n\nYour offer: {title}.",
            "reasons": None,
        }
    )
    for id_, title in OFFER_TYPES.items()
}
# AcademicTerm.php: name, start, grace, finish, year and type links.
_TERMS: dict[int, bytes] = {
    id_: orjson.dumps(
        {
            "name": f"{term} {year}",
            "start": f"{year}-{'02' if term == 'Spring' else '09'}-01",
            "grace": f"{year}-{'02' if term == 'Spring' else '09'}-15",
            "finish": f"{year}-{'06' if term == 'Spring' else '12'}-30",
            "year": f"/api/academic-years/{year}",
            "type": f"/api/academic-terms/types/{1 if term == 'Spring' else 2}",
        }
    )
    for id_, (year, term) in ACADEMIC_TERMS.items()
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
    expand = parse_expand(query.get("expand"))
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


def _purge_json(purge: Purge) -> bytes:
    """An entry as the v9 purged-resources page shows it."""
    moment = {"at": purge.purged}
    forgotten = purge.reason == "forgotten"
    return orjson.dumps(
        {
            "id": purge.entity.id,
            "type": purge.entity.kind.capitalize(),
            "created": purge.purged,
            "request_to_be_forgotten": {"at": purge.requested or purge.purged}
            if forgotten
            else None,
            "marked": moment,
        }
    )


def _listing(request: Request, count: int, items: Iterable[tuple[int, bytes]]) -> Response:
    """The list response; ``items`` (lazy) are rendered for GET only."""
    body = b"" if request.method == "HEAD" else keyed_object(items)
    return Response(200, body, {"Content-Type": JSON, "X-Count": str(count)})


# A route's work once the request is authorized: the registry, the request and
# its path's match → the response. It runs with the journal's lock held, so it
# sees one moment of the history.
_Handler = Callable[[Registry, Request, re.Match[str]], Response]


def _applicants(registry: Registry, request: Request, path: re.Match[str]) -> Response:
    query = parse_list_query(request.query)
    count, page = select_entities(registry.entities("applicant"), FIRST_IDS["applicant"], query)
    return _listing(request, count, ((entity.id, entity.json()) for entity in page))


def _terms_wanted(query: Mapping[str, str]) -> Callable[[Entity], bool]:
    """The term filter /applications requires: a term id, a year or years."""
    if not any(query.get(name, "").strip() for name in _TERM_FILTERS):
        raise BadQueryError("one of byAcademicTermID, byAcademicYear, byAcademicYears is required")
    terms: set[int] = set()
    term = query.get("byAcademicTermID", "").strip()
    if term:
        if not _DIGITS.fullmatch(term):
            raise BadQueryError(f"byAcademicTermID: expected an id, got {term!r}")
        terms.add(int(term))
    years = query.get("byAcademicYear", "") + "," + query.get("byAcademicYears", "")
    for year in re.split(r"[\s,]+", years.strip(", ")):
        if not year:
            continue
        if not _DIGITS.fullmatch(year):
            raise BadQueryError(f"byAcademicYear(s): expected years, got {year!r}")
        terms.update(id_ for id_, (y, _) in ACADEMIC_TERMS.items() if y == int(year))
    applicants = _ids("byApplicantIDs", query.get("byApplicantIDs", ""))
    if applicants is None:
        return lambda application: application.term in terms
    return lambda app: app.term in terms and app.owner is not None and app.owner.id in applicants


def _ids(param: str, value: str) -> set[int] | None:
    """A documented id-list filter (comma or space separated), or None when absent."""
    terms = [term for term in re.split(r"[\s,]+", value.strip()) if term]
    if not terms:
        return None
    if not all(_DIGITS.fullmatch(term) for term in terms):
        raise BadQueryError(f"{param}: expected ids, got {value!r}")
    return {int(term) for term in terms}


def _applications(
    registry: Registry, request: Request, path: re.Match[str], *, embed: bool = True
) -> Response:
    # No bySince paging here (the vendor documents none): the hard cap only.
    wanted = _terms_wanted(request.query)
    query = parse_list_query({k: v for k, v in request.query.items() if not k.startswith("by")})
    live = [app for app in registry.entities("application") if app.live and wanted(app)]
    expand = query.expand if embed else query.expand - {"offer", "offers"}
    items = (
        (entity.id, application_json(entity, expand, with_id=False))
        for entity in live[: query.limit]
    )
    return _listing(request, len(live), items)


def _academic_terms(registry: Registry, request: Request, path: re.Match[str]) -> Response:
    return _listing(request, len(_TERMS), _TERMS.items())


def _offer_types(registry: Registry, request: Request, path: re.Match[str]) -> Response:
    wanted = path.group("id")
    if wanted is None:
        return _listing(request, len(_TYPES), _TYPES.items())
    body = _TYPES.get(int(wanted)) if _DIGITS.fullmatch(wanted) else None
    if body is None:
        return json_error(404, f"no such offer type: {wanted}")
    return Response(200, b"" if request.method == "HEAD" else body)


def _purged(registry: Registry, request: Request, path: re.Match[str]) -> Response:
    """The documented page: ``pages`` beside the entries; ``page`` picks one."""
    number = _parse_id("page", request.query.get("page")) or 1
    entries = list(registry.purges.values())
    total = max(1, -(-len(entries) // PURGED_PER_PAGE))
    page = entries[(number - 1) * PURGED_PER_PAGE : number * PURGED_PER_PAGE]
    pages = {
        "total": total,
        "current": number,
        "prev": number - 1 if number > 1 else None,
        "next": number + 1 if number < total else None,
        "items": {"current": len(page), "total": len(entries)},
    }
    headers = {"Content-Type": JSON, "X-Count": str(len(entries))}
    if request.method == "HEAD":
        return Response(200, b"", headers)
    items = [(b"pages", orjson.dumps(pages))]
    items += [(b"%d" % purge.number, _purge_json(purge)) for purge in page]
    return Response(200, b"{" + b",".join(b'"%b":%b' % item for item in items) + b"}", headers)


def list_routes(
    journal: Journal,
    api_key: str,
    before: Callable[[], None] | None = None,
    embed_offers: Callable[[], bool] | None = None,
) -> list[Route]:
    """The list endpoints' routes; ``before`` runs first on each request (the
    simulator grows the journal there, as for the journal route);
    ``embed_offers`` says whether the applications list honours ``expand=offer``
    (default: yes)."""

    def applications(registry: Registry, request: Request, path: re.Match[str]) -> Response:
        embed = embed_offers is None or embed_offers()
        return _applications(registry, request, path, embed=embed)

    def route(name: str, pattern: re.Pattern[str], handle: _Handler) -> Route:
        return dreamapply_route(journal, api_key, name, pattern, handle, before=before)

    return [
        route("dreamapply-offer-types", OFFER_TYPES_PATH, _offer_types),
        route("dreamapply-offers", OFFERS_PATH, serve_children),
        route("dreamapply-applicants", APPLICANTS_PATH, _applicants),
        route("dreamapply-applications", APPLICATIONS_PATH, applications),
        route("dreamapply-purged", PURGED_PATH, _purged),
        route("dreamapply-academic-terms", ACADEMIC_TERMS_PATH, _academic_terms),
    ]
