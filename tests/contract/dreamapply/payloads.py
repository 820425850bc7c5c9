"""DreamApply payloads copied in shape from the vendor's documents.

These, not the simulator, are the authority where the two disagree. Sources:

- docs.dreamapply.com ``api:api_journal`` (the shared seed
  ``seeds/dreamapply-journal.txt``): a page is an object keyed by the event
  id; the example item is ``{"logged", "event", "bind", "applicant",
  "application"}``; the expansions are applicant, application, course,
  institution, invoice, offer, document, flag, tracker.
- dream-group/dream-apply-sdk ``gen/Models/JournalItem.php``: the link fields
  are applicant, application, course, institution, invoice, document (a
  BinaryRecord), flag and tracker; offer (the seed's expansions) and
  administrator lately (SPEC 2.1). No referee, task, interview or media.
- ``gen/Models/Applicant.php``: id, type, registered, email, phone, reference,
  citizenship, notes, address, vatin, name (ApplicantName).
- ``gen/Models/BinaryRecord.php``: uploaded, name, mime, size, content,
  expires: **no id**.
- ``gen/Models/Offer.php`` and docs.dreamapply.com
  ``api:api_applications_id_offers`` (the API version >= 4 example): priority,
  inserted, saved, confirmed, course, type, type-confirmed, comments,
  comments-confirmed, decision, decision-policy, decision-deadline, score,
  notes: **no applicant or application link**.
- ``gen/Models/OfferType.php``: title, colour, ranking, bcc, confirm, freeze,
  decide, decline, reopen, silence, subject, comments.
- ``gen/Models/AcademicTerm.php``: name, start, grace, finish, year, type.
- help.dreamapply.com/api/api_purged-resources (the v9 example response): a
  ``pages`` paginator beside entries keyed by list number, each ``{"id",
  "type": "Application"|"Applicant", "created", "request_to_be_forgotten":
  null|{...}, "marked": {"at": ...}}``.
- docs.dreamapply.com ``api:api_applications``: ``/applications`` requires
  byAcademicTermID, byAcademicYear or byAcademicYears; a hard limit of 32768
  items, 8192 with ``expand``; the documented ``expand`` example is
  ``applicant,offer``. help.dreamapply.com/api/api_applications_id lists an
  application's expansions: applicant, flags, courses, offers, documents,
  tasks, scores, references (plural ``offers``).
"""

from __future__ import annotations

from typing import Any

LOGGED = "2014-06-20T08:13:41+00:00"  # the journal page's example

APPLICANT_LINK = "/api/applicants/123"
APPLICATION_LINK = "/api/applications/321"

# Applicant.php, as an expanded journal item embeds it.
APPLICANT: dict[str, Any] = {
    "id": 123,
    "type": "Natural",
    "registered": "2014-06-01T10:00:00+00:00",
    "email": "sofia.pereira@example.org",
    "phone": "+351 912 345 678",
    "reference": "SP-123",
    "citizenship": "PT",
    "notes": "Called about her transcript",
    "address": "Rua Augusta 10, Lisboa",
    "vatin": None,
    "name": {"given": "Sofia", "family": "Pereira"},
}

# An application as the journal expands it (the SDK's Application: an id and
# its applicant's link).
APPLICATION: dict[str, Any] = {
    "id": 321,
    "applicant": APPLICANT_LINK,
    "created": "2014-06-20T08:13:41+00:00",
}

# Offer.php / the offers page (API version >= 4): no applicant, no application.
# The list is keyed by offer id; an expanded offer in a journal item has its id.
OFFER_FIELDS: dict[str, Any] = {
    "priority": 1,
    "inserted": "2014-06-20T11:00:19+00:00",
    "saved": "2014-06-20T11:00:19+00:00",
    "confirmed": None,
    "course": "/api/courses/1",
    "type": "/api/v4/applications/offers/types/7",
    "type-confirmed": "/api/v4/applications/offers/types/1",
    "comments": "Dear Sofia Pereira, welcome",
    "comments-confirmed": None,
    "decision": "None",
    "decision-policy": "None",
    "decision-deadline": None,
    "score": {"auto": "10.00", "extra": None},
    "notes": None,
}
OFFER: dict[str, Any] = {"id": 12, **OFFER_FIELDS}
OFFER_LINK = "/api/applications/321/offers/12"

# BinaryRecord.php: file metadata, no id.
DOCUMENT: dict[str, Any] = {
    "uploaded": "2014-06-20T09:00:00+00:00",
    "name": "passport.pdf",
    "mime": "application/pdf",
    "size": 123456,
    "expires": None,
}
DOCUMENT_LINK = "/api/applicants/123/documents/55"

INVOICE: dict[str, Any] = {"id": 77, "issued": "2014-06-20T10:00:00+00:00"}
INVOICE_LINK = "/api/invoices/77"

# The subject's own link field where JournalItem.php has one; media, interview,
# referee and task events carry only their application's (and applicant's).
OWN_LINKS: dict[str, dict[str, str]] = {
    "offer": {"offer": OFFER_LINK},
    "document": {"document": DOCUMENT_LINK},
    "invoice": {"invoice": INVOICE_LINK},
}
EXPANDED: dict[str, Any] = {
    "applicant": APPLICANT,
    "application": APPLICATION,
    "offer": OFFER,
    "document": DOCUMENT,
    "invoice": INVOICE,
}


def journal_item(name: str, entity: str, *, expanded: bool) -> dict[str, Any]:
    """The item DreamApply logs for ``name``, whose subject is ``entity``."""
    links: dict[str, Any] = {"applicant": APPLICANT_LINK}
    if entity != "applicant":
        links["application"] = APPLICATION_LINK
    if name.startswith("Course was"):
        links["course"] = "/api/courses/1"
    if name.startswith(("Application was flagged", "Application was un-flagged")):
        links["flag"] = "/api/flags/2"
    links.update(OWN_LINKS.get(entity, {}))
    if expanded:
        links = {key: EXPANDED.get(key, value) for key, value in links.items()}
    return {"logged": LOGGED, "event": name, "bind": [], **links}


# Offer types (OfferType.php), keyed by id as the list answers.
OFFER_TYPES: dict[str, Any] = {
    str(id_): {
        "title": title,
        "colour": "#00aa00",
        "ranking": "In quota",
        "bcc": [],
        "confirm": True,
        "freeze": False,
        "decide": True,
        "decline": True,
        "reopen": False,
        "silence": False,
        "subject": f"Your offer: {title}",
        "comments": "",
    }
    for id_, title in ((1, "Accepted"), (7, "Conditional"))
}

# Academic terms (AcademicTerm.php), keyed by id.
ACADEMIC_TERMS: dict[str, Any] = {
    str(id_): {
        "name": name,
        "start": start,
        "grace": start,
        "finish": start,
        "year": "/api/academic-years/2014",
        "type": "/api/academic-terms/types/2",
    }
    for id_, name, start in ((4, "Autumn 2014", "2014-09-01"), (5, "Spring 2015", "2015-02-01"))
}

# The v9 purged-resources example response (one page), its entries completed.
PURGED_RESOURCES: dict[str, Any] = {
    "pages": {
        "total": 1,
        "current": 1,
        "prev": None,
        "next": None,
        "items": {"current": 3, "total": 3},
    },
    "10": {
        "id": 100,
        "type": "Application",
        "created": "2025-05-02T08:15:15+00:00",
        "request_to_be_forgotten": None,
        "marked": {"at": "2025-05-03T08:15:15+00:00"},
    },
    "11": {
        "id": 123,
        "type": "Applicant",
        "created": "2025-05-02T08:15:15+00:00",
        "request_to_be_forgotten": {"at": "2025-05-02T08:15:15+00:00"},
        "marked": {"at": "2025-05-03T08:15:15+00:00"},
    },
    "12": {
        "id": 124,
        "type": "Applicant",
        "created": "2025-05-02T08:15:15+00:00",
        "request_to_be_forgotten": None,
        "marked": None,
    },
}
