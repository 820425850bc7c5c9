"""DreamApply's bootstrap (SPEC 2.1): the current state from the list endpoints.

Applicants, then applications with their offers, then purged resources; each
list is paged by its own ids (``bySince``), so a page's last id is where a
snapshot cut short picks up again. An offer has no status field, only a
``type`` link: its status is that type's title, which is what the journal's
event names carry ("Enrolled").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import structlog

from edsync.errors import MalformedPageError
from edsync.sources.base import SNAPSHOT_DONE, SnapshotObject, SnapshotPage
from edsync.sources.dreamapply import ref_id
from edsync.sources.http import HttpClient, Reply

log = structlog.get_logger("edsync.dreamapply")

LIST_LIMIT = 4096
"""Items a list request asks for (the server allows 32 768): few requests under
the quota, bounded memory per page."""

OFFERS_PER_PAGE = 100
"""Applications whose offers are read before a commit: one request each, so at
DreamApply's 180 a minute a page commits about every half minute."""


class Snapshot:
    def __init__(self, source: str, http: HttpClient, prefix: str) -> None:
        self.source = source
        self.http = http
        self.prefix = prefix
        self._titles: dict[str, str | None] | None = None

    def pages(self, resume: str | None) -> Iterator[SnapshotPage]:
        """From the start, or from a token ``stage:last_id`` a page carried."""
        stage, after = _parse_token(resume)
        if stage == "applicant":
            yield from self._applicants(after)
            stage, after = "application", 0
        if stage == "application":
            yield from self._applications(after)
            stage, after = "purged", 0
        if stage == "purged":
            yield from self._purged(after)

    # -- the lists ----------------------------------------------------------

    def _list(self, path: str, after: int) -> Iterator[list[tuple[int, dict[str, Any]]]]:
        """Pages of ``(id, object)`` in id order, after ``after``, until an empty page."""
        while True:
            params = {"bySince": str(after + 1), "limit": str(LIST_LIMIT)}
            items = self.http.fetch("GET", f"{self.prefix}{path}", params, self._read_list)
            if not items:
                return
            yield items
            after = items[-1][0]

    def _applicants(self, after: int) -> Iterator[SnapshotPage]:
        for items in self._list("/applicants", after):
            objects = [SnapshotObject(str(id_), obj, str(id_)) for id_, obj in items]
            yield SnapshotPage("applicant", objects, resume=f"applicant:{items[-1][0]}")

    def _applications(self, after: int) -> Iterator[SnapshotPage]:
        for items in self._list("/applications", after):
            for start in range(0, len(items), OFFERS_PER_PAGE):
                chunk = items[start : start + OFFERS_PER_PAGE]
                before = f"application:{after}"
                objects = [SnapshotObject(str(i), o, _person(o)) for i, o in chunk]
                # Committed with the page before's token: a run cut short between
                # the two reads these applications (and their offers) again.
                yield SnapshotPage("application", objects, resume=before)
                after = chunk[-1][0]
                offers = [offer for id_, _ in chunk for offer in self._offers(id_)]
                yield SnapshotPage("offer", offers, resume=f"application:{after}")

    def _offers(self, application: int) -> list[SnapshotObject]:
        path = f"{self.prefix}/applications/{application}/offers"
        items = self.http.fetch("GET", path, None, self._read_list_or_gone, expect=(404,))
        if items is None:
            return []  # closed or purged since it was listed: the purged list says so
        objects = []
        for id_, offer in items:
            data = dict(offer)
            data["status"] = self._title(offer.get("type"))
            objects.append(SnapshotObject(str(id_), data, _person(offer)))
        return objects

    def _purged(self, after: int) -> Iterator[SnapshotPage]:
        for items in self._list("/purged-resources", after):
            by_entity: dict[str, list[SnapshotObject]] = {"applicant": [], "application": []}
            for _, item in items:
                entity, obj = _purged_object(self.source, item)
                if entity in by_entity:
                    by_entity[entity].append(obj)
            last = items[-1][0]
            yield SnapshotPage("applicant", by_entity["applicant"], f"purged:{after}", True)
            yield SnapshotPage("application", by_entity["application"], f"purged:{last}", True)
            after = last

    # -- offer types ----------------------------------------------------------

    def _title(self, link: object) -> str | None:
        """The title of an offer's type, fetched once for all types."""
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
        body = reply.json(f"source {self.source!r}")
        if isinstance(body, list) and not body:
            return []  # PHP renders an empty map as []
        if not isinstance(body, dict):
            raise MalformedPageError(f"source {self.source!r}: a list that is not an object")
        items = []
        for key, value in body.items():
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


def _parse_token(resume: str | None) -> tuple[str, int]:
    if resume is None:
        return "applicant", 0
    if resume == SNAPSHOT_DONE:
        return SNAPSHOT_DONE, 0
    stage, _, after = resume.partition(":")
    if stage not in ("applicant", "application", "purged") or not after.isdigit():
        raise MalformedPageError(f"cannot resume a DreamApply snapshot at {resume!r}")
    return stage, int(after)


def _person(obj: dict[str, Any]) -> str | None:
    return ref_id(obj.get("applicant"))


def _type_title(obj: object) -> str | None:
    title = obj.get("title") if isinstance(obj, dict) else None
    return title if isinstance(title, str) else None


def _purged_object(source: str, item: dict[str, Any]) -> tuple[str, SnapshotObject]:
    entity = item.get("type")
    id_ = ref_id(item.get("resource")) or ref_id(item)
    if not isinstance(entity, str) or id_ is None:
        raise MalformedPageError(f"source {source!r}: a purged resource without type or id")
    data: dict[str, Any] = {"id": int(id_) if id_.isdigit() else id_, "purged": True}
    if "purged" in item:
        data["purged_at"] = item["purged"]
    if "reason" in item:
        data["reason"] = item["reason"]
    if item.get("reason") == "forgotten":
        data["forgotten"] = True
    return entity, SnapshotObject(id_, data, id_ if entity == "applicant" else None)
