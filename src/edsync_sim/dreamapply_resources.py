"""DreamApply's resource endpoints: each resource as it is now, by its own id.

The journal says what changed, the resources say what it is (SPEC 2.1). Served
under ``/api/v9`` and any ``/api/vN`` (the unversioned ``/api`` too), as
``tests/contract/dreamapply/resources.py`` (help.dreamapply.com, API v9)
prints them:

- ``GET /applications/{id}[?expand=…]``: the application with its ``id``;
  each collection (``flags``, ``courses``, ``offers``, ``exports``,
  ``documents``, ``scores``, ``tasks``, ``references``) is its link, or, when
  named in ``expand`` (``applicant``, ``flags``, ``courses``, ``offers`` (or
  ``offer``), ``documents``, ``tasks``, ``scores``, ``references``), the object
  its list answers, keyed by the child's id (the course's or flag's for those
  associations), ``[]`` when empty as PHP prints it; ``applicant`` expands to
  the applicant.
- ``GET /applications/{id}/{offers|tasks|references|documents|flags|courses}``:
  that collection alone (``{}`` when empty), ``X-Count`` its size; and
  ``GET /applications/{id}/{offers|tasks|references}/{child}``: one child.
- ``GET /applicants/{id}``, ``GET /invoices/{id}`` (the journal's invoice link).

A resource that never existed, or is purged now (an application closed or
purged with its term or applicant, and so its children; an applicant deleted
or forgotten), answers 404 with a JSON error. An applicant who asked to be
forgotten is served until an administrator confirms it. An invoice outlives
its applicant, detached (applicant and application null).

Each answer is rendered from the registry under the journal's lock, so it
shows one moment of the history, the same the lists and ``Journal.current()``
show.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import NamedTuple

import orjson

from edsync_sim.dataset import Entity, Journal, Registry
from edsync_sim.dreamapply import BadQueryError, refuse
from edsync_sim.web import JSON, Request, Response, Route, json_error

__all__ = [
    "APPLICANT_PATH",
    "APPLICATION_PATH",
    "CHILDREN_PATH",
    "CHILD_PATH",
    "COLLECTIONS",
    "EXPANSIONS",
    "INVOICE_PATH",
    "PREFIX",
    "application_json",
    "collection_json",
    "dreamapply_route",
    "keyed_object",
    "parse_expand",
    "resource_routes",
    "serve_children",
]

# /api (API v3: the vendor's unversioned paths) or /api/vN.
PREFIX = r"/api(?:/v[0-9]+)?"
# API v4 and later (purged resources and offer types are not in v3).
PREFIX_V4 = r"/api/v(?:[4-9]|[1-9][0-9]+)"

APPLICATION_PATH = re.compile(PREFIX + r"/applications/(?P<id>[0-9]+)/?")
CHILDREN_PATH = re.compile(
    PREFIX
    + r"/applications/(?P<id>[0-9]+)/(?P<collection>tasks|references|documents|flags|courses)/?"
)
CHILD_PATH = re.compile(
    PREFIX
    + r"/applications/(?P<id>[0-9]+)/(?P<collection>offers|tasks|references)/(?P<child>[0-9]+)/?"
)
APPLICANT_PATH = re.compile(PREFIX + r"/applicants/(?P<id>[0-9]+)/?")
INVOICE_PATH = re.compile(PREFIX + r"/invoices/(?P<id>[0-9]+)/?")
INVOICES_PATH = re.compile(PREFIX + r"/invoices/?")

# An application's collections holding records: name → the child's entity kind.
COLLECTIONS: dict[str, str] = {
    "offers": "offer",
    "tasks": "task",
    "references": "reference",
    "documents": "document",
}
# help .../api_applications_id, note [1]; "offer" is the journal's and the
# lists' spelling, read as "offers".
EXPANSIONS = frozenset(
    {"applicant", "flags", "courses", "offers", "documents", "tasks", "scores", "references"}
)


def parse_expand(value: str | None) -> frozenset[str]:
    """The ``expand`` terms, stripped; empty ones dropped."""
    if not value:
        return frozenset()
    return frozenset(term.strip() for term in value.split(",") if term.strip())


def keyed_object(items: Iterable[tuple[int, bytes]]) -> bytes:
    """``{"id": value, …}`` from serialized values, in the order given (``{}`` when none)."""
    return b"{" + b",".join(b'"%d":%b' % item for item in items) + b"}"


def collection_json(application: Entity, name: str) -> bytes:
    """One of an application's collections as its list answers it: keyed by the
    child's id (by the course's or flag's id for those associations)."""
    if name in ("flags", "courses"):
        return application.associations(name)
    kind = COLLECTIONS.get(name)
    if kind is None:  # scores: none in this dataset
        return b"{}"
    return keyed_object((child.id, child.resource()) for child in application.members(kind))


def application_json(application: Entity, expand: frozenset[str], *, with_id: bool) -> bytes:
    """The application, its collections expanded as asked (``[]`` when empty).

    ``with_id``: its own endpoint prints the id; a list keys the application by it.
    """
    wanted = {"offers" if term == "offer" else term for term in expand} & EXPANSIONS
    body = application.resource() if with_id else application.json()
    if not wanted:
        return body
    data = orjson.loads(body)
    owner = application.owner
    for name in sorted(wanted):
        if name == "applicant":
            if owner is not None:
                data["applicant"] = orjson.Fragment(owner.json())
            continue
        collection = collection_json(application, name)
        data[name] = orjson.Fragment(b"[]" if collection == b"{}" else collection)
    return orjson.dumps(data)


class _Found(NamedTuple):
    entity: Entity | None
    error: Response | None


def _live_application(registry: Registry, path: re.Match[str]) -> _Found:
    application = registry.get("application", int(path.group("id")))
    if application is None:
        return _Found(None, json_error(404, f"no such application: {path.group('id')}"))
    if not application.live:
        # Upstream does not serve what it purged (a forgotten applicant's above all).
        return _Found(None, json_error(404, f"application {application.id} was purged"))
    return _Found(application, None)


def _body(request: Request, body: bytes, count: int | None = None) -> Response:
    headers = {"Content-Type": JSON}
    if count is not None:
        headers["X-Count"] = str(count)
    return Response(200, b"" if request.method == "HEAD" else body, headers)


def _application(registry: Registry, request: Request, path: re.Match[str]) -> Response:
    application, error = _live_application(registry, path)
    if application is None:
        assert error is not None
        return error
    expand = parse_expand(request.query.get("expand"))
    return _body(request, application_json(application, expand, with_id=True))


def serve_children(registry: Registry, request: Request, path: re.Match[str]) -> Response:
    """An application's collection, its offers included (``OFFERS_PATH``)."""
    application, error = _live_application(registry, path)
    if application is None:
        assert error is not None
        return error
    name = path.group("collection") if "collection" in path.groupdict() else "offers"
    kind = COLLECTIONS.get(name)
    if kind is None:
        body = collection_json(application, name)
        return _body(request, body, len(orjson.loads(body)))
    members = application.members(kind)
    return _body(request, keyed_object((c.id, c.resource()) for c in members), len(members))


def _child(registry: Registry, request: Request, path: re.Match[str]) -> Response:
    application, error = _live_application(registry, path)
    if application is None:
        assert error is not None
        return error
    name, wanted = path.group("collection"), int(path.group("child"))
    for child in application.members(COLLECTIONS[name]):
        if child.id == wanted:
            return _body(request, child.resource())
    return json_error(404, f"no such {COLLECTIONS[name]} in application {application.id}: {wanted}")


def _applicant(registry: Registry, request: Request, path: re.Match[str]) -> Response:
    applicant = registry.get("applicant", int(path.group("id")))
    if applicant is None:
        return json_error(404, f"no such applicant: {path.group('id')}")
    if not applicant.live:
        return json_error(404, f"applicant {applicant.id} was purged")
    return _body(request, applicant.resource())


def _invoice(registry: Registry, request: Request, path: re.Match[str]) -> Response:
    invoice = registry.get("invoice", int(path.group("id")))
    if invoice is None:
        return json_error(404, f"no such invoice: {path.group('id')}")
    return _body(request, invoice.resource())


def _invoices(registry: Registry, request: Request, path: re.Match[str]) -> Response:
    """``GET /invoices`` (help.dreamapply.com/api/api_invoices): every invoice,
    keyed by id; ``byApplicantIDs`` narrows it (comma or space separated)."""
    wanted = request.query.get("byApplicantIDs")
    people = None if wanted is None else set(wanted.replace(",", " ").split())
    items = [
        (invoice.id, invoice.resource())
        for invoice in registry.entities("invoice")
        if people is None or _applicant_id(invoice) in people
    ]
    return _body(request, keyed_object(items), len(items))


def _applicant_id(invoice: Entity) -> str | None:
    link = orjson.loads(invoice.resource()).get("applicant")
    return link.rstrip("/").rsplit("/", 1)[1] if isinstance(link, str) else None


# A route's work once the request is authorized: the registry, the request and
# its path's match → the response. It runs with the journal's lock held, so it
# sees one moment of the history.
Handler = Callable[[Registry, Request, re.Match[str]], Response]


def dreamapply_route(
    journal: Journal,
    api_key: str,
    name: str,
    pattern: re.Pattern[str],
    handle: Handler,
    *,
    before: Callable[[], None] | None = None,
) -> Route:
    """A DreamApply route over the registry: ``before`` first (the simulator grows
    the journal there), then 405 / 401 as every route, then ``handle`` (a
    ``BadQueryError`` it raises answers 400)."""

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


def resource_routes(
    journal: Journal, api_key: str, before: Callable[[], None] | None = None
) -> list[Route]:
    """The resource endpoints' routes (route names scope injected faults)."""
    routes = (
        ("dreamapply-application", APPLICATION_PATH, _application),
        ("dreamapply-application-children", CHILDREN_PATH, serve_children),
        ("dreamapply-application-children", CHILD_PATH, _child),
        ("dreamapply-applicant", APPLICANT_PATH, _applicant),
        ("dreamapply-invoice", INVOICE_PATH, _invoice),
        ("dreamapply-invoices", INVOICES_PATH, _invoices),
    )
    return [
        dreamapply_route(journal, api_key, name, pattern, handle, before=before)
        for name, pattern, handle in routes
    ]
