"""DreamApply's bootstrap (SPEC 2.1): the current state from the list endpoints.

As the vendor documents them: applicants paged by their own ids
(``bySince``); applications per academic term (``/applications`` requires a
term or year filter and has no id paging, only a hard cap, so each term's
``X-Count`` is checked against it first; a term at the cap is read in slices
of applicants, ``byApplicantIDs``: nothing is truncated silently);
each application's offers, embedded by the list's ``expand`` when the server
does, else one request per application; then purged resources, a ``pages``
paginator beside entries keyed by list number.

Offers carry no applicant or application link (Offer.php): the snapshot knows
the application it read them under, and the applicant through it. An offer has
no status field, only a ``type`` link: its status is that type's title, which
is what the journal's event names carry ("Enrolled"); and its record gets the
link to the application it was read under, as the journal's records have it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import structlog

from edsync.errors import FatalError, MalformedPageError
from edsync.http import HttpClient, Reply
from edsync.model import SNAPSHOT_DONE, SnapshotObject, SnapshotPage
from edsync.sources.dreamapply.names import link_offer, ref_id

log = structlog.get_logger("edsync.dreamapply")

LIST_LIMIT = 4096
"""Items a list request asks for (the server allows 32 768): few requests under
the quota, bounded memory per page."""

APPLICATIONS_CAP = 8192
"""What ``/applications`` answers at most with ``expand`` (32 768 without)."""

APPLICANTS_PER_REQUEST = 400
"""Applicants per ``byApplicantIDs`` slice of a term above the cap: a URL of a
few kilobytes, and far fewer applications than the cap."""

APPLICANT_IDS_LIMIT = 32768
"""Applicants a list request asks for when only their ids are wanted."""

OFFERS_EXPAND = "offer"
"""The applications list's expansion asked for: its documented example is
``applicant,offer``; a server that ignores it gets one offers request per
application instead."""

OFFERS_PER_PAGE = 100
"""Applications whose offers are read one request each before a commit: at
DreamApply's 180 a minute a page commits about every half minute."""

_PURGED_TYPES = {"applicant": "applicant", "application": "application"}


class SnapshotTooLargeError(FatalError):
    """A term holds more applications than one answer can: refuse to truncate."""


class Snapshot:
    def __init__(self, source: str, http: HttpClient, prefix: str) -> None:
        self.source = source
        self.http = http
        self.prefix = prefix
        self._titles: dict[str, str | None] | None = None
        self._listed_applicants: list[int] | None = None

    def pages(self, resume: str | None) -> Iterator[SnapshotPage]:
        """From the start, or from a token a page carried: ``applicant:last_id``,
        ``application:term_id:last_id`` or ``purged:pages_done``."""
        stage, after, term = _parse_token(resume)
        if stage == "applicant":
            yield from self._applicants(after)
            stage, after, term = "application", 0, 0
        if stage == "application":
            yield from self._applications(term, after)
            stage, after = "purged", 0
        if stage == "purged":
            yield from self._purged(after)

    # -- applicants ---------------------------------------------------------

    def _applicants(self, after: int) -> Iterator[SnapshotPage]:
        path = f"{self.prefix}/applicants"
        while True:
            params = {"bySince": str(after + 1), "limit": str(LIST_LIMIT)}
            items = self.http.fetch("GET", path, params, self._read_list)
            if not items:
                return
            objects = [SnapshotObject(str(id_), obj, str(id_)) for id_, obj in items]
            after = items[-1][0]
            yield SnapshotPage("applicant", objects, resume=f"applicant:{after}")

    # -- applications, term by term ---------------------------------------------

    def _applications(self, first_term: int, after: int) -> Iterator[SnapshotPage]:
        path = f"{self.prefix}/academic-terms"
        terms = [id_ for id_, _ in self.http.fetch("GET", path, None, self._read_list)]
        for term in terms:
            if term < first_term:
                continue
            done = after if term == first_term else 0
            items = [item for item in self._term_applications(term) if item[0] > done]
            yield from self._application_pages(term, done, items)

    def _term_applications(self, term: int) -> list[tuple[int, dict[str, Any]]]:
        path = f"{self.prefix}/applications"
        params = {"byAcademicTermID": str(term)}
        count = self._count(path, params)
        if count >= APPLICATIONS_CAP:
            return self._split_by_applicants(term, count)
        items = self.http.fetch("GET", path, {**params, "expand": OFFERS_EXPAND}, self._read_list)
        if len(items) >= APPLICATIONS_CAP:
            # It grew to the cap between the HEAD and the GET: this may be cut short.
            return self._split_by_applicants(term, len(items))
        return items

    def _split_by_applicants(self, term: int, count: int) -> list[tuple[int, dict[str, Any]]]:
        """A term one answer cannot hold, read in slices of applicants
        (``byApplicantIDs``, a documented filter). An applicant registered since
        the list was read is in the journal after the noted head."""
        log.info("applications_term_split", source=self.source, term=term, count=count)
        path = f"{self.prefix}/applications"
        found: dict[int, dict[str, Any]] = {}
        applicants = self._applicant_ids()
        for start in range(0, len(applicants), APPLICANTS_PER_REQUEST):
            chunk = applicants[start : start + APPLICANTS_PER_REQUEST]
            params = {
                "byAcademicTermID": str(term),
                "byApplicantIDs": ",".join(map(str, chunk)),
                "expand": OFFERS_EXPAND,
            }
            items = self.http.fetch("GET", path, params, self._read_list)
            if len(items) >= APPLICATIONS_CAP:
                raise self._too_large(term, len(items))
            found.update(items)
        return sorted(found.items())

    def _applicant_ids(self) -> list[int]:
        """Every listed applicant's id, read once per snapshot (ids only: no expand)."""
        if self._listed_applicants is None:
            path, after, ids = f"{self.prefix}/applicants", 0, []
            while True:
                params = {"bySince": str(after + 1), "limit": str(APPLICANT_IDS_LIMIT)}
                items = self.http.fetch("GET", path, params, self._read_list)
                if not items:
                    break
                ids += [id_ for id_, _ in items]
                after = items[-1][0]
            self._listed_applicants = ids
        return self._listed_applicants

    def _too_large(self, term: int, count: int) -> SnapshotTooLargeError:
        return SnapshotTooLargeError(
            f"source {self.source!r}: academic term {term}: {count} applications of "
            f"{APPLICANTS_PER_REQUEST} applicants, more than one /applications answer "
            f"holds ({APPLICATIONS_CAP}); the snapshot stops rather than miss some"
        )

    def _count(self, path: str, params: dict[str, str]) -> int:
        reply = self.http.request("HEAD", path, params)
        count = reply.headers.get("X-Count", "")
        if not (count.isascii() and count.isdigit()):
            raise MalformedPageError(f"source {self.source!r}: {path} sent no X-Count")
        return int(count)

    def _application_pages(
        self, term: int, done: int, items: list[tuple[int, dict[str, Any]]]
    ) -> Iterator[SnapshotPage]:
        embedded = all(_embedded_offers(app) is not None for _, app in items)
        size = LIST_LIMIT if embedded else OFFERS_PER_PAGE
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            # Committed with the page before's token: a run cut short between
            # the two reads these applications (and their offers) again.
            before = f"application:{term}:{done}"
            apps = [(id_, app, _embedded_offers(app)) for id_, app in chunk]
            objects = [SnapshotObject(str(i), _without_offers(a), _person(a)) for i, a, _ in apps]
            yield SnapshotPage("application", objects, resume=before)
            done = chunk[-1][0]
            offers = [
                offer
                for id_, app, listed in apps
                for offer in self._offers(id_, _person(app), listed)
            ]
            yield SnapshotPage("offer", offers, resume=f"application:{term}:{done}")

    def _offers(
        self, application: int, person: str | None, listed: dict[str, Any] | None
    ) -> list[SnapshotObject]:
        if listed is None:
            path = f"{self.prefix}/applications/{application}/offers"
            items = self.http.fetch("GET", path, None, self._read_list_or_gone, expect=(404,))
            if items is None:
                return []  # closed or purged since it was listed: the purged list says so
        else:
            items = self._list_items(listed)
        objects = []
        for id_, offer in items:
            data = dict(offer)
            data["status"] = self._title(offer.get("type"))
            link_offer(data, str(application))
            objects.append(SnapshotObject(str(id_), data, person))
        return objects

    # -- purged resources ---------------------------------------------------------

    def _purged(self, pages_done: int) -> Iterator[SnapshotPage]:
        path = f"{self.prefix}/purged-resources"
        page: int | None = pages_done + 1 if pages_done else None
        while True:
            params = None if page is None else {"page": str(page)}
            entries, following = self.http.fetch("GET", path, params, self._read_purged)
            current = page or 1
            by_entity: dict[str, list[SnapshotObject]] = {"applicant": [], "application": []}
            for entry in entries:
                purged = _purged_object(self.source, entry)
                if purged is not None:
                    by_entity[purged[0]].append(purged[1])
            yield SnapshotPage(
                "applicant", by_entity["applicant"], f"purged:{current - 1}", deleted=True
            )
            last = following is None or following <= current
            resume = SNAPSHOT_DONE if last else f"purged:{current}"
            yield SnapshotPage("application", by_entity["application"], resume, deleted=True)
            if last:
                return
            page = following

    def _read_purged(self, reply: Reply) -> tuple[list[dict[str, Any]], int | None]:
        """The entries of a purged-resources page and the next page's number, if any."""
        body = reply.json(f"source {self.source!r}")
        if isinstance(body, list) and not body:
            return [], None
        if not isinstance(body, dict):
            raise MalformedPageError(f"source {self.source!r}: purged resources not an object")
        following = None
        pages = body.get("pages")
        if isinstance(pages, dict):
            following = _page_number(pages.get("next"))
        entries = [value for key, value in self._list_items(body, skip=("pages",))]
        return entries, following

    # -- offer types ----------------------------------------------------------

    def _title(self, link: object) -> str | None:
        """The title of an offer's type, fetched once for all types."""
        if isinstance(link, dict) and isinstance(link.get("title"), str):
            return str(link["title"])  # expanded: the type itself
        if self._titles is None:
            path = f"{self.prefix}/applications/offers/types"
            types = self.http.fetch("GET", path, None, self._read_list)
            self._titles = {str(id_): _type_title(obj) for id_, obj in types}
        type_id = ref_id(link)
        if type_id is None:
            return None
        if type_id not in self._titles:
            # A type created since: ask for it alone.
            path = f"{self.prefix}/applications/offers/types/{type_id}"
            reply = self.http.fetch("GET", path, None, self._read_object, expect=(404,))
            self._titles[type_id] = _type_title(reply) if reply is not None else None
        return self._titles[type_id]

    # -- reading replies ------------------------------------------------------

    def _read_list(self, reply: Reply) -> list[tuple[int, dict[str, Any]]]:
        return self._list_items(reply.json(f"source {self.source!r}"))

    def _list_items(
        self, body: object, skip: tuple[str, ...] = ()
    ) -> list[tuple[int, dict[str, Any]]]:
        """``{"id": object, …}`` as ``(id, object)`` in id order."""
        if isinstance(body, list) and not body:
            return []  # PHP renders an empty map as []
        if not isinstance(body, dict):
            raise MalformedPageError(f"source {self.source!r}: a list that is not an object")
        items = []
        for key, value in body.items():
            if key in skip:
                continue
            if not (key.isascii() and key.isdigit()) or not isinstance(value, dict):
                raise MalformedPageError(f"source {self.source!r}: list item {key!r} is malformed")
            items.append((int(key), value))
        items.sort(key=lambda item: item[0])
        return items

    def _read_list_or_gone(self, reply: Reply) -> list[tuple[int, dict[str, Any]]] | None:
        return None if reply.status == 404 else self._read_list(reply)

    def _read_object(self, reply: Reply) -> dict[str, Any] | None:
        if reply.status == 404:
            return None
        body = reply.json(f"source {self.source!r}")
        if not isinstance(body, dict):
            raise MalformedPageError(f"source {self.source!r}: an object was expected")
        return body


def _parse_token(resume: str | None) -> tuple[str, int, int]:
    """(stage, last id done, term) from a resume token."""
    if resume is None:
        return "applicant", 0, 0
    if resume == SNAPSHOT_DONE:
        return SNAPSHOT_DONE, 0, 0
    stage, _, rest = resume.partition(":")
    parts = rest.split(":")
    if stage not in ("applicant", "application", "purged") or not all(
        part.isascii() and part.isdigit() for part in parts
    ):
        raise MalformedPageError(f"cannot resume a DreamApply snapshot at {resume!r}")
    if stage == "application":
        if len(parts) != 2:
            return stage, 0, 0  # an older token paged by id: read the terms from the start
        return stage, int(parts[1]), int(parts[0])
    if len(parts) != 1:
        raise MalformedPageError(f"cannot resume a DreamApply snapshot at {resume!r}")
    return stage, int(parts[0]), 0


def _person(obj: dict[str, Any]) -> str | None:
    return ref_id(obj.get("applicant"))


def _embedded_offers(application: dict[str, Any]) -> dict[str, Any] | None:
    """The offers the list embedded (``expand``), or None when it sent a link or nothing."""
    for key in ("offers", "offer"):
        value = application.get(key)
        if isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()):
            return value
        if isinstance(value, list) and not value:
            return {}  # PHP renders an empty map as []
    return None


def _without_offers(application: dict[str, Any]) -> dict[str, Any]:
    """The application as its record keeps it: its offers are records of their own."""
    if _embedded_offers(application) is None:
        return application
    return {k: v for k, v in application.items() if k not in ("offers", "offer")}


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


def _purged_object(source: str, item: dict[str, Any]) -> tuple[str, SnapshotObject] | None:
    """A purged-resources entry as a tombstone; None for a type the mirror does not keep.

    The entry's key is a list number: the resource's id is its ``id``. A non-null
    ``request_to_be_forgotten`` means the applicant asked for erasure (SPEC 5.4).
    """
    kind = item.get("type")
    id_ = ref_id(item) or ref_id(item.get("resource"))
    if not isinstance(kind, str) or id_ is None:
        raise MalformedPageError(f"source {source!r}: a purged resource without type or id")
    entity = _PURGED_TYPES.get(kind.lower())
    if entity is None:
        log.warning("purged_type_unknown", source=source, type=kind)
        return None
    data: dict[str, Any] = {"id": int(id_) if id_.isdigit() else id_, "purged": True}
    for key in ("created", "marked", "purged", "reason"):
        if key in item:
            data[key] = item[key]
    forgotten = item.get("request_to_be_forgotten")
    if forgotten is not None or item.get("reason") == "forgotten":
        data["forgotten"] = True
        data["request_to_be_forgotten"] = forgotten
    return entity, SnapshotObject(id_, data, id_ if entity == "applicant" else None)
