"""DreamApply's resources (SPEC 2.1): what a record is, read from its own endpoint.

The journal only says *that* something happened; the SDK (dream-apply-sdk)
resolves each link by its URL. So records are read here: an application
with its documented expansions (offers, tasks, references, documents, flags,
courses: help.dreamapply.com/api/api_applications_id), whose collections are
objects keyed by each child's id (the SDK's collections are
``ArrayAccess<int, …>``), an applicant, an invoice; a 404 means the
resource is gone. Each record is keyed by the vendor's own id: its link's,
the key it was listed under, or its own ``id``; never another entity's.

Both the snapshot (the list endpoints) and the refresh (one resource) build
records through ``application_records``, so an application reads the same
whichever way it came.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import structlog

from edsync.errors import MalformedPageError
from edsync.http import HttpClient, Reply
from edsync.model import Ref, Refreshed, SnapshotObject
from edsync.pages import Page, by_link
from edsync.sources.dreamapply.links import link_child, ref_id

log = structlog.get_logger("edsync.dreamapply")

CHILDREN: dict[str, str] = {
    "offers": "offer",
    "tasks": "task",
    "references": "reference",
    "documents": "document",
}
"""An application's collections that are records of their own: field → entity."""

SNAPSHOT_ENTITIES = ("applicant", "application", *CHILDREN.values())
"""What a snapshot reads, in order; a record of these it lacks is marked deleted."""

APPLICATION_EXPAND = "offers,tasks,references,documents,flags,courses"
"""An application's documented expansions, all read in its one request."""

LIST_EXPAND = "offers,tasks,references,documents"
"""The expansions asked of the applications list (``offers``, plural)."""

_PURGED_TYPES = {"applicant": "applicant", "application": "application"}
_FIRST_PAGE = 0  # purged-resources' first page, asked for without a page number


class _NotServed(Exception):
    """The server has no purged-resources (404): never leaves ``purged``."""


class OfferTypes:
    """An offer's status is its type's title (``/applications/offers/types``),
    read once and cached; a type created since is asked for alone."""

    def __init__(self, http: HttpClient, prefix: str, source: str) -> None:
        self.http = http
        self.prefix = prefix
        self.source = source
        self._titles: dict[str, str | None] | None = None

    def title(self, link: object) -> str | None:
        if isinstance(link, dict) and isinstance(link.get("title"), str):
            return str(link["title"])  # expanded: the type itself
        type_id = ref_id(link)
        if type_id is None:
            # API v3 names the type instead of linking it (api_applications_id_offers).
            return link if isinstance(link, str) and "/" not in link and link else None
        if self._titles is None:
            path = f"{self.prefix}/applications/offers/types"
            types = self.http.fetch("GET", path, None, self._list_or_gone, expect=(404,))
            self._titles = {str(id_): _type_title(obj) for id_, obj in types or []}
        if type_id not in self._titles:
            path = f"{self.prefix}/applications/offers/types/{type_id}"
            found = self.http.fetch(
                "GET", path, None, lambda r: read_object(r, self.source), expect=(404,)
            )
            self._titles[type_id] = _type_title(found) if found is not None else None
        return self._titles[type_id]

    def _list_or_gone(self, reply: Reply) -> list[tuple[int, dict[str, Any]]] | None:
        return None if reply.status == 404 else list_items(reply.json(self.source), self.source)


def application_records(
    app_id: str, application: Mapping[str, Any], types: OfferTypes
) -> tuple[list[tuple[str, SnapshotObject]], tuple[str, ...], dict[str, str]]:
    """An application read with its expansions, as records: the application
    itself (its embedded collections left out: they are records of their
    own), then each child keyed by its list key. Also the child kinds read in
    full (``complete``) and, for a collection the server sent as a link
    instead (it ignored the expansion), that link by child kind."""
    person = ref_id(application.get("applicant"))
    own = {k: v for k, v in application.items() if not _is_collection(k, v)}
    if "id" not in own and app_id.isdigit():
        own["id"] = int(app_id)  # an expanded application need not carry it
    records: list[tuple[str, SnapshotObject]] = [
        ("application", SnapshotObject(app_id, own, person))
    ]
    complete: list[str] = []
    links: dict[str, str] = {}
    for field, entity in CHILDREN.items():
        value = application.get(field)
        items = collection_items(value)
        if items is None:
            # A path or an absolute URL; HttpClient judges its origin when it is read.
            if isinstance(value, str) and (value.startswith("/") or "://" in value):
                links[entity] = value
            continue
        complete.append(entity)
        records += child_records(entity, items, app_id, person, types)
    return records, tuple(complete), links


def child_records(
    entity: str,
    items: Sequence[tuple[str, dict[str, Any]]],
    app_id: str,
    person: str | None,
    types: OfferTypes,
) -> list[tuple[str, SnapshotObject]]:
    """Children of an application, each keyed by its list key, linked to it."""
    out = []
    for key, item in items:
        data = dict(item)
        if entity == "offer":
            data["status"] = types.title(item.get("type"))
        link_child(data, app_id)
        out.append((entity, SnapshotObject(key, data, person, app_id)))
    return out


def _is_collection(field: str, value: object) -> bool:
    return field in CHILDREN and collection_items(value) is not None


def collection_items(value: object) -> list[tuple[str, dict[str, Any]]] | None:
    """An expanded collection as (list key, object) pairs in key order; None
    when it is not expanded (a link, or absent). PHP renders an empty map as ``[]``."""
    if isinstance(value, list) and not value:
        return []
    if isinstance(value, list) and all(isinstance(v, dict) and ref_id(v) for v in value):
        # Tolerated: a list of objects that carry their ids.
        return sorted(((str(ref_id(v)), v) for v in value), key=_key_order)
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        return None
    return sorted(((str(k), v) for k, v in value.items()), key=_key_order)


def _key_order(item: tuple[str, object]) -> tuple[int, str]:
    key = item[0]
    return (int(key), key) if key.isascii() and key.isdigit() else (0, key)


BATCH_APPLICANTS = 400
"""Applicants per batch read of their applications (``byApplicantIDs``): a URL
of a few kilobytes, as the snapshot's slices."""

_REFUSED = (400, 404, 422)  # a filter or expansion the server does not take

BATCH_FROM = 3
"""Queued applications worth a batch read: below this, single reads cost less."""


class Resources:
    """Reads queued resources (``refresh``) and the purged list.

    Applications are read in batches where the vendor documents one: the
    applications list by academic years and ``byApplicantIDs`` (there is no
    filter by application id), expanded; one the batch does not bring whole
    (not listed, a collection sent as a link) is read alone, and a 404 there
    is what says it is gone. ``batch = False`` reads every one alone.
    """

    def __init__(self, source: str, http: HttpClient, prefix: str, *, batch: bool = True) -> None:
        self.source = source
        self.http = http
        self.prefix = prefix
        self.batch = batch
        self.types = OfferTypes(http, prefix, source)
        self._years: str | None = None

    def refresh(self, refs: Sequence[Ref]) -> Iterator[Refreshed]:
        listed = self._listed([r for r in refs if r.entity == "application"])
        for ref in refs:
            if ref.entity == "application":
                found = listed.get(ref.id)
                yield found if found is not None else self._application(ref)
            elif ref.entity in ("applicant", "invoice"):
                yield self._single(ref, f"{self.prefix}/{ref.entity}s/{ref.id}")
            else:
                log.warning("refresh_kind_unknown", source=self.source, entity=ref.entity)
                yield Refreshed(ref)

    def _application(self, ref: Ref) -> Refreshed:
        path = f"{self.prefix}/applications/{ref.id}"
        found = self.http.fetch(
            "GET",
            path,
            {"expand": APPLICATION_EXPAND},
            lambda r: read_object(r, self.source),
            expect=(404,),
        )
        if found is None:
            return Refreshed(ref, gone=True)
        records, complete, links = application_records(ref.id, found, self.types)
        person = records[0][1].person_id or ref.person_id
        for entity, link in links.items():
            # The server sent a link, not the collection: follow it, as the SDK
            # does. One to another origin fails the read (HttpClient refuses it).
            items = self.http.fetch("GET", link, None, self._list_or_gone, expect=(404,))
            if items is not None:
                pairs = [(str(k), v) for k, v in items]
                records += child_records(entity, pairs, ref.id, person, self.types)
                complete = (*complete, entity)
        return Refreshed(ref, tuple(records), complete)

    def _listed(self, refs: Sequence[Ref]) -> dict[str, Refreshed]:
        """Queued applications read through the list, by their applicants; only
        those it brought whole (every collection expanded)."""
        people = sorted({r.person_id for r in refs if r.person_id is not None})
        if not self.batch or len(refs) < BATCH_FROM or not people:
            return {}
        years = self._academic_years()
        if not years:
            return {}
        wanted = {r.id: r for r in refs}
        found: dict[str, Refreshed] = {}
        path = f"{self.prefix}/applications"
        for start in range(0, len(people), BATCH_APPLICANTS):
            params = {
                "byAcademicYears": years,
                "byApplicantIDs": ",".join(people[start : start + BATCH_APPLICANTS]),
                "expand": LIST_EXPAND,
            }
            listed = self.http.fetch("GET", path, params, self._batch_answer, expect=_REFUSED)
            if listed is None:
                # A server that refuses the filter: single reads from now on.
                log.warning("batch_read_refused", source=self.source, path=path)
                self.batch = False
                return found
            for id_, app in listed:
                ref = wanted.get(str(id_))
                if ref is None:
                    continue
                records, complete, links = application_records(ref.id, app, self.types)
                if not links and len(complete) == len(CHILDREN):
                    found[ref.id] = Refreshed(ref, tuple(records), complete)
        return found

    def _batch_answer(self, reply: Reply) -> list[tuple[int, dict[str, Any]]] | None:
        if reply.status in _REFUSED:
            return None
        return list_items(reply.json(f"source {self.source!r}"), self.source)

    def _academic_years(self) -> str:
        """Every academic year the terms name (``byAcademicYears``), read once."""
        if self._years is None:
            path = f"{self.prefix}/academic-terms"
            terms = self.http.fetch("GET", path, None, self._list_or_gone, expect=(404,)) or []
            years = {ref_id(term.get("year")) for _, term in terms}
            self._years = ",".join(sorted(y for y in years if y is not None))
        return self._years

    def _list_or_gone(self, reply: Reply) -> list[tuple[int, dict[str, Any]]] | None:
        if reply.status == 404:
            return None
        return list_items(reply.json(f"source {self.source!r}"), self.source)

    def _single(self, ref: Ref, path: str) -> Refreshed:
        found = self.http.fetch(
            "GET", path, None, lambda r: read_object(r, self.source), expect=(404,)
        )
        if found is None:
            return Refreshed(ref, gone=True)
        person = ref.id if ref.entity == "applicant" else ref_id(found.get("applicant"))
        parent = ref_id(found.get("application")) if ref.entity == "invoice" else None
        record = SnapshotObject(ref.id, found, person or ref.person_id, parent)
        return Refreshed(ref, ((ref.entity, record),))

    def purged(self, pages_done: int = 0) -> Iterator[tuple[list[Refreshed], int | None]]:
        """Each page of ``purged-resources`` as deletions, with the number of
        the page after it (None after the last)."""
        first = pages_done + 1 if pages_done else _FIRST_PAGE
        try:
            for page in by_link(self._purged_page, first):
                yield list(page.items), page.following
        except _NotServed:
            # API v9 has it; an older version (an unversioned prefix may be
            # v3) does not: say so, and read purges on the next interval.
            log.warning(
                "purged_resources_not_served",
                source=self.source,
                path=f"{self.prefix}/purged-resources",
                hint="api_prefix should name API v9, e.g. /api/v9",
            )

    def _purged_page(self, number: int, _size: int) -> Page[Refreshed, int]:
        """Page ``number`` of ``purged-resources`` (the first unnamed, as the
        server pages it) and the number of the next, if any."""
        path = f"{self.prefix}/purged-resources"
        params = None if number == _FIRST_PAGE else {"page": str(number)}
        read = self.http.fetch("GET", path, params, self._read_purged, expect=(404,))
        if read is None:
            raise _NotServed
        entries, following = read
        current = number or 1
        gone = [g for g in (purged_entry(self.source, e) for e in entries) if g is not None]
        last = following is None or following <= current
        return Page(gone, None if last else following)

    def _read_purged(self, reply: Reply) -> tuple[list[dict[str, Any]], int | None] | None:
        """The entries of a purged-resources page and the next page's number, if
        any; None when the server has no such endpoint (404)."""
        if reply.status == 404:
            return None
        body = reply.json(f"source {self.source!r}")
        if isinstance(body, list) and not body:
            return [], None
        if not isinstance(body, dict):
            raise MalformedPageError(f"source {self.source!r}: purged resources not an object")
        following = None
        pages = body.get("pages")
        if isinstance(pages, dict):
            following = _page_number(pages.get("next"))
        entries = [value for _, value in list_items(body, self.source, skip=("pages",))]
        return entries, following


def purged_entry(source: str, item: dict[str, Any]) -> Refreshed | None:
    """A purged-resources entry as a deletion; None for a type the mirror does
    not keep. The entry's key is a list number: the resource's id is its
    ``id``. A non-null ``request_to_be_forgotten`` says the applicant asked."""
    kind = item.get("type")
    id_ = ref_id(item) or ref_id(item.get("resource"))
    if not isinstance(kind, str) or id_ is None:
        raise MalformedPageError(f"source {source!r}: a purged resource without type or id")
    entity = _PURGED_TYPES.get(kind.lower())
    if entity is None:
        log.warning("purged_type_unknown", source=source, type=kind)
        return None
    forgotten = item.get("request_to_be_forgotten") is not None or item.get("reason") == "forgotten"
    person = id_ if entity == "applicant" else None
    return Refreshed(Ref(entity, id_, person), gone=True, forgotten=forgotten)


def partial_list(source: str) -> Any:
    return lambda reply: list_items(reply.json(f"source {source!r}"), source)


def list_items(
    body: object, source: str, skip: tuple[str, ...] = ()
) -> list[tuple[int, dict[str, Any]]]:
    """``{"id": object, …}`` as ``(id, object)`` in id order."""
    if isinstance(body, list) and not body:
        return []  # PHP renders an empty map as []
    if not isinstance(body, dict):
        raise MalformedPageError(f"source {source!r}: a list that is not an object")
    items = []
    for key, value in body.items():
        if key in skip:
            continue
        if not (key.isascii() and key.isdigit()) or not isinstance(value, dict):
            raise MalformedPageError(f"source {source!r}: list item {key!r} is malformed")
        items.append((int(key), value))
    items.sort(key=lambda item: item[0])
    return items


def read_object(reply: Reply, source: str) -> dict[str, Any] | None:
    """A resource's object; None for a 404 (it is gone)."""
    if reply.status == 404:
        return None
    body = reply.json(f"source {source!r}")
    if not isinstance(body, dict):
        raise MalformedPageError(f"source {source!r}: an object was expected")
    return body


def _page_number(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        tail = value.rpartition("=")[2]  # a number, or a link ending in page=N
        return int(tail) if tail.isascii() and tail.isdigit() else None
    return None


def _type_title(obj: object) -> str | None:
    title = obj.get("title") if isinstance(obj, dict) else None
    return title if isinstance(title, str) else None
