"""DreamApply's links between resources: the id a link or an expanded object
names, and what a journal item names for a read (``own_id``, ``refreshes``).

Its own module because the journal reader (``journal``), the snapshot
(``snapshot``) and the resources (``resources``) follow links, and none
imports the others for it.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from edsync.model import Ref

_TRAILING_ID = re.compile(r"(\d+)/?$", re.ASCII)


def ref_id(value: object) -> str | None:
    """The id of a link (``/api/applications/321`` → ``321``) or expanded object."""
    if isinstance(value, str):
        tail = value.rpartition("/")[2]
        if tail.isdigit() and tail.isascii():
            return tail  # the common case, without the regex
        match = _TRAILING_ID.search(value)
        return match.group(1) if match else None
    if isinstance(value, dict):
        inner = value.get("id")
        if isinstance(inner, int) and not isinstance(inner, bool):
            return str(inner)
        if isinstance(inner, str) and inner:
            return inner
    return None


def is_link(key: str, value: str) -> bool:
    """Whether a string is a link (``/api/applicants/12``): what an erasure
    keeps of DreamApply's strings, as it names a resource and not the person."""
    return value.startswith("/api/")


def link_child(child: dict[str, object], application: str | None) -> None:
    """Give a child's record (offer, task, reference, document) the link to
    its application. The vendor's objects have none (the SDK's Offer.php,
    ApplicationTask.php): they are read under their application, so its id is
    known, and ``application_id`` reads the same whichever way they came. A
    link the child has is kept."""
    if application is not None and "application" not in child:
        child["application"] = f"/api/applications/{application}"


class _Object(msgspec.Struct):
    """An expanded object, read for its id alone."""

    id: Any = None


_LINK = msgspec.json.Decoder(_Object | str | None)
_SUB_LINK = re.compile(rb"/applications/([0-9]{1,18})/")


def link_id(raw: msgspec.Raw | None) -> str | None:
    """A link's id, or an expanded object's, without building the object."""
    if raw is None:
        return None
    try:
        value = _LINK.decode(raw)
    except msgspec.ValidationError:
        return None  # a number, a list: no id, as ``ref_id`` reads them
    return ref_id({"id": value.id} if isinstance(value, _Object) else value)


def application_id(raw: msgspec.Raw | None) -> str | None:
    """The id of the application an event names: its link's, its expanded
    object's ``id``, or (an expanded application need not carry its id) the
    one its own sub-links name (``"offers": "/api/v9/applications/60/offers"``)."""
    found = link_id(raw)
    if found is not None or raw is None:
        return found
    ids = set(_SUB_LINK.findall(bytes(raw)))
    return ids.pop().decode() if len(ids) == 1 else None


def own_id(entity: str, fields: Any) -> str | None:
    """The id of the event's own resource: its link's, or its expanded
    object's. Never another entity's: task, referee, interview and media
    events carry no link of their own (JournalItem.php), so they have none.
    ``fields``: ``_Fields``."""
    if entity == "application":
        return application_id(fields.application)
    raw = getattr(fields, entity, None)
    return link_id(raw) if raw is not None else None


def refreshes(
    entity: str, fields: Any, person_id: str | None, application: str | None
) -> tuple[Ref, ...]:
    """The resources an event names that a refresh reads (SPEC 2.1): the
    ``application`` (one read refreshes it and its offers, tasks, references
    and documents); the applicant for the applicant's own events, or when no
    application is named; an invoice by its link."""
    refs: list[Ref] = []
    if entity == "invoice":
        invoice = link_id(fields.invoice)
        if invoice is not None:
            return (Ref("invoice", invoice, person_id),)
    if application is not None:
        refs.append(Ref("application", application, person_id))
    if person_id is not None and (entity == "applicant" or application is None):
        refs.append(Ref("applicant", person_id, person_id))
    return tuple(refs)
