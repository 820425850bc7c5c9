"""DreamApply API v9 *resource* payloads, hand-written in the vendor's shapes.

These, not the simulator, are the authority where the two disagree: the
simulator must answer them. Every constant names its source; "(invented)"
marks a value the vendor does not print. Sources (help.dreamapply.com/api/* is
the v9 reference; docs.dreamapply.com ``api:*`` is the older wiki; the SDK is
dream-group/dream-apply-sdk at 8.0.1, ``Client::API_VERSION = 8``):

- help .../api_applications_id: ``GET /api/v9/applications/ID`` "Get the
  application contents (data input by the application). Does not include
  documents, flags, offers, exports etc."; 404 "The application was not
  found"; ``expand``: "The full list of possible expansions is applicant,flags,
  courses,offers,documents,tasks,scores,references" (plural; the same note's
  example says ``applicant,offer``). Its example starts at ``"profile"`` (copied
  below) then ``"legal": {}``; the stored copy stops inside ``contact``, so the
  example's links, and whether it has an ``id``, are not visible.
- help .../api_applicants_id_applications: the one v9 application printed with
  links, keyed ``"60"``, **no** ``id``: created, revised, submitted, status
  ("Prepare"), commence_year, applicant, flags, courses, offers, exports,
  documents -- no tasks, scores, references or pdf link (``view_examples``).
- SDK ``gen/Models/Application.php``: fields id, created, revised, submitted,
  status (Blank|Draft|Inactive|Reopened|Submitted|Withdrawn|Closed), profile,
  legal, contact, home, host, education, grades, languages, career, activities,
  residences, motivation, visa, misc, extras, academic_term, applicant, pdf;
  flags, courses, offers, documents, scores read from their field; tasks and
  exports built as ``{application url}/tasks`` (never read from a field); no
  references at all.
- SDK ``src/BaseModels/ChildNamespaces.php``/``Collection.php``: a collection
  field holding a string is its URL, an array is its data **keyed by the
  child's id**; a child's URL is ``{collection url}/{key}`` (none when the data
  came embedded); a string value is the child's own URL.
- help .../api_applications_id_tasks_id (v9): a task is id, created, reminded,
  committed, resolved, class, title, status, notes {applicant, administrator};
  404 "The task was not found". Wiki ``api:api_applications_id_tasks`` (2015
  revision): the list is keyed by task id (``"1"``, ``"5"``). SDK
  ``ApplicationTask.php``: the same without ``title``.
- help .../api_applications_id_references(_id): keyed by id; id, invited,
  accessed, committed, invitation {name, email}, data {referee {name},
  evaluation {essay}} (the stored copy stops inside the essay).
- help .../api_applications_id_documents: "a list of documents that have been
  attached to this application", keyed by id, each id, uploaded, name, mime,
  size (a **string**); ``.../documents/ID`` is the binary file. SDK
  ``BinaryRecord.php``: uploaded, name, mime, size (int), content, expires, no
  id. Wiki ``api:api_applications_id_documents_id``: document ids are the same
  under the applicant and under each application it is attached to.
- Wiki ``api:api_applications_id_offers`` (API version >= 4): keyed by offer
  id; help .../api_applications_id_offers_id (v9) adds the fields id, intake,
  decided ("explanation fields are available in version 9 or later"). Type
  links print as ``/api/v4/applications/offers/types/N`` even on v9 pages
  (help .../api_applications_id_offers_id_type).
- help .../api_applications_offers_types(_id): keyed by id; id, status, title,
  colour, ranking, bcc, confirm, freeze, decide, decline, reopen, silence,
  subject, comments, reasons; flags print as ``1``/``null`` (SDK
  ``OfferType.php``: bool, no status or reasons).
- help .../api_applications_id_flags and .../api_applications_id_courses:
  associations keyed by the **flag's / course's** id: {assigned, flag} and
  {priority, submitted, deadline, course, intake, modifier}.
- help .../api_applicants_id: ``GET /api/v9/applicants/ID`` (``view_examples``).
- help .../api_invoices_id: ``GET /api/v9/invoices/ID``: id, type, nr, serie,
  applicant, application, course, deadline, issued, delivered, reminder,
  reminded, collected, currency, items [{item, price, qty, unit,
  inventory_item_ID}], collections {}, instructions, smallprint, payer {name,
  email}. help .../api_applications_id_invoices_id: after an applicant is
  deleted "the applicant and application field is set to null".
- help .../api_purged-resources: in ``payloads.PURGED_RESOURCES``, re-exported.
- help .../get-started/limits: "180 requests per minute" per API key, then
  "429 Too Many Requests"; help .../api_applications: at most 32768 items,
  8192 with ``expand``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from tests.contract.dreamapply import payloads, view_examples

API = "/api/v9"
APPLICATION_ID = 60  # help .../api_applicants_id_applications
APPLICANT_ID = 123  # help .../api_applicants_id

# help .../api_applications_id, note [1], in its order.
EXPANSIONS = (
    "applicant",
    "flags",
    "courses",
    "offers",
    "documents",
    "tasks",
    "scores",
    "references",
)
# What the refresh asks for (SPEC 2.1): every collection that holds records.
REFRESH_EXPANSIONS = ("offers", "tasks", "references", "documents", "flags", "courses")
REFRESH_EXPAND = ",".join(REFRESH_EXPANSIONS)

QUOTA_PER_MINUTE = 180  # help .../get-started/limits; no Retry-After is documented
LIST_CAP = 32768  # help .../api_applications and .../api_applicants
LIST_CAP_EXPANDED = 8192


def link(*parts: object) -> str:
    """``/api/v9/a/b/c``: the spelling the v9 pages print."""
    return "/".join((API, *(str(part) for part in parts)))


_T = TypeVar("_T")


def fresh(value: _T) -> _T:
    """A deep copy, so that a test may edit what it got."""
    return copy.deepcopy(value)


# Tasks -------------------------------------------------------------------

# help .../api_applications_id_tasks_id, verbatim (its "reminded" has month 15).
TASK_V9_EXAMPLE: dict[str, Any] = {
    "id": 20,
    "created": "2025-12-03T13:11:08+00:00",
    "reminded": "2025-15-03T13:10:00+00:00",
    "committed": None,
    "resolved": None,
    "class": "checklist-language-english",
    "title": "Proof of English language proficiency",
    "status": "I have NOT yet taken a language test",
    "notes": {"applicant": "I need help", "administrator": None},
}

# Wiki api:api_applications_id_tasks (2015), keyed "1" and "5", with v9's id
# and title: one resolved, one still open -- two statuses in one application.
TASK_RESOLVED: dict[str, Any] = {
    "id": 1,
    "created": "2015-07-27T15:36:36+00:00",
    "reminded": None,
    "committed": "2015-07-27T17:36:36+00:00",
    "resolved": "2015-07-27T17:36:36+00:00",
    "class": "checklist-language-english",
    "title": "Proof of English language proficiency",
    "status": "I have received my language test score",
    "notes": {"applicant": None, "administrator": "Seems to be good!"},
}
TASK_OPEN: dict[str, Any] = {
    "id": 5,
    "created": "2015-07-27T15:36:36+00:00",
    "reminded": "2015-07-31T15:36:36+00:00",
    "committed": None,
    "resolved": None,
    "class": "checklist-passport",
    "title": "Passport or ID card",  # (invented: the 2015 list has no title)
    "status": "I have NOT yet attached my passport/ID card",
    "notes": {"applicant": "I need help", "administrator": None},
}
TASKS: dict[str, Any] = {"1": TASK_RESOLVED, "5": TASK_OPEN}


# References --------------------------------------------------------------

# help .../api_applications_id_references (key "1") and .../references_id (the
# vendor prints id 1 there too; here 2). Essays shortened.
REFERENCES: dict[str, Any] = {
    "1": {
        "id": 1,
        "invited": "2026-02-17T11:14:44+00:00",
        "accessed": "2026-02-17T11:15:17+00:00",
        "committed": "2026-02-17T11:17:54+00:00",
        "invitation": {"name": "John Smith", "email": "john.smith@email.com"},
        "data": {
            "referee": {"name": "Linda Jason"},
            "evaluation": {"essay": "It is a pleasure to recommend Linda Jason."},
        },
    },
    "2": {
        "id": 2,
        "invited": "2026-02-17T11:15:03+00:00",
        "accessed": "2026-02-17T11:19:05+00:00",
        "committed": "2026-02-17T11:19:18+00:00",
        "invitation": {"name": "Sarah Tyler", "email": "sarah.tyler@email.com"},
        "data": {
            "referee": {"name": "Linda Jason"},
            "evaluation": {"essay": "Linda possesses a remarkable ability."},
        },
    },
}


# Documents ---------------------------------------------------------------

# help .../api_applications_id_documents, verbatim: size is a string here.
DOCUMENTS: dict[str, Any] = {
    "222": {
        "id": 222,
        "uploaded": "2014-04-29T15:46:38+00:00",
        "name": "Passport",
        "mime": "image/jpeg",
        "size": "1966954",
    },
    "333": {
        "id": 333,
        "uploaded": "2014-04-29T15:46:38+00:00",
        "name": "Diploma",
        "mime": "image/jpeg",
        "size": "310178",
    },
}
# help .../api_applications_id_documents_id: the binary file, Content-Type and
# Last-Modified headers; 404 "This document does not belong to this application".
DOCUMENT_LINK = link("applications", APPLICATION_ID, "documents", 222)


# Offers and offer types --------------------------------------------------

OFFER_TYPE_LINK = "/api/v4/applications/offers/types/{}"  # as printed on v9 pages

# Wiki api:api_applications_id_offers (API version >= 4), keyed "12" and "13",
# with v9's id, intake and decided (help .../api_applications_id_offers_id).
OFFERS: dict[str, Any] = {
    "12": {
        "id": 12,
        "priority": 1,
        "inserted": "2014-06-20T11:00:19+00:00",
        "saved": "2014-06-20T11:00:19+00:00",
        "confirmed": None,
        "course": link("courses", 1),
        "intake": link("intakes", 2),
        "type": OFFER_TYPE_LINK.format(7),
        "type-confirmed": OFFER_TYPE_LINK.format(1),
        "comments": None,
        "comments-confirmed": None,
        "decision": "None",
        "decision-policy": "None",
        "decision-deadline": None,
        "decided": None,
        "score": {"auto": "10.00", "extra": None},
        "notes": None,
    },
    "13": {
        "id": 13,
        "priority": 2,
        "inserted": "2014-06-20T11:00:19+00:00",
        "saved": "2014-06-20T11:00:19+00:00",
        "confirmed": "2014-06-20T11:00:19+00:00",
        "course": link("courses", 3),
        "intake": link("intakes", 2),
        "type": OFFER_TYPE_LINK.format(1),
        "type-confirmed": OFFER_TYPE_LINK.format(20),
        "comments": None,
        "comments-confirmed": None,
        "decision": "Final",
        "decision-policy": "None",
        "decision-deadline": None,
        "decided": "2014-06-21T09:00:00+00:00",  # (invented)
        "score": {"auto": None, "extra": "85.50"},
        "notes": None,
    },
}

# help .../api_applications_offers_types ("1") and .../types_id ("7"); "20" is
# the type-confirmed of offer 13 in the wiki example (its row is invented).
OFFER_TYPES: dict[str, Any] = {
    "1": {
        "id": 1,
        "status": "Online",
        "title": "Unreplied",
        "colour": "#FFD21F",
        "ranking": "Pending",
        "bcc": [],
        "confirm": 1,
        "freeze": None,
        "decide": None,
        "decline": None,
        "reopen": None,
        "silence": None,
        "subject": "Reply Unreplied from Institute of Technology",
        "comments": "Dear %applicant-Name%,\n\nInstitute of Technology",
        "reasons": None,
    },
    "7": {
        "id": 7,
        "status": "Online",
        "title": "Feedback",
        "colour": "#FF5599",
        "ranking": "Pending",
        "bcc": [],
        "confirm": 1,
        "freeze": None,
        "decide": None,
        "decline": None,
        "reopen": None,
        "silence": None,
        "subject": "Reply Feedback",
        "comments": "Dear %applicant-Name%,\n\nYou have received feedback.",
        "reasons": None,
    },
    "20": {
        "id": 20,
        "status": "Online",
        "title": "Accepted",
        "colour": "#97C4D9",
        "ranking": "In quota",  # SDK OfferType::RANKING_* value
        "bcc": [],
        "confirm": 1,
        "freeze": 1,
        "decide": 1,
        "decline": 1,
        "reopen": None,
        "silence": None,
        "subject": "Reply Accepted",
        "comments": "Dear %applicant-Name%,\n\nYou have been accepted.",
        "reasons": None,
    },
}


# Flags, courses, scores: associations keyed by the *global* flag/course id --

# help .../api_applications_id_flags, verbatim.
FLAGS: dict[str, Any] = {
    "1": {"assigned": "2025-12-09T13:26:24+00:00", "flag": link("applications", "flags", 1)},
    "2": {"assigned": "2025-12-09T13:26:29+00:00", "flag": link("applications", "flags", 2)},
}
# help .../api_applications_id_courses, verbatim (courses 1 and 3 match OFFERS).
COURSES: dict[str, Any] = {
    "1": {
        "priority": 1,
        "submitted": "2025-09-29T07:44:26+00:00",
        "deadline": "2025-06-01T23:59:59+00:00",
        "course": link("courses", 1),
        "intake": link("intakes", 2),
        "modifier": None,
    },
    "3": {
        "priority": 2,
        "submitted": "2025-10-02T12:31:47+00:00",
        "deadline": "2025-06-01T23:59:59+00:00",
        "course": link("courses", 3),
        "intake": link("intakes", 2),
        "modifier": "On-campus housing",
    },
}
# SDK ApplicationScores (items Score.php, no id); no v9 example was readable.
SCORES: dict[str, Any] = {}


# Applicant ---------------------------------------------------------------


def applicant(id_: int = APPLICANT_ID) -> dict[str, Any]:
    """``GET /api/v9/applicants/{id}`` (help .../api_applicants_id)."""
    body = fresh(view_examples.APPLICANT)
    body["id"] = id_
    for key, value in body.items():
        if isinstance(value, str) and value.startswith(link("applicants", APPLICANT_ID) + "/"):
            body[key] = link("applicants", id_, key)
    return body


APPLICANT: dict[str, Any] = applicant()


# Application -------------------------------------------------------------

# help .../api_applications_id example, as far as the stored copy shows it;
# the other sections are the SDK's (empty here).
SECTIONS: dict[str, Any] = {
    "profile": {
        "name": {"given": "Sofia", "family": "Pereira"},
        "idcode": "99010156789",
        "passport": {"number": "T1234567890B", "issue": "2020-08-15", "expiry": "2030-08-14"},
        "birth": {"date": "1999-10-01", "place": "Lisbon"},
        "nationality": "PT",
        "citizenship": "PT",
        "gender": "F",
        "marital": "S",
    },
    "legal": {},
    "contact": {
        "address": {
            "street": "Rua do Sol, 5-3º Dto",
            "municipality": "Lisbon",
            "postalcode": "1200-123",
        }
    },
    "home": {},
    "host": {},
    "education": {},
    "grades": {},
    "languages": {},
    "career": {},
    "activities": {},
    "residences": {},
    "motivation": {},
    "visa": {},
    "misc": {},
    "extras": {},
}

_DEFAULTS: dict[str, dict[str, Any]] = {
    "flags": FLAGS,
    "courses": COURSES,
    "offers": OFFERS,
    "documents": DOCUMENTS,
    "scores": SCORES,
    "tasks": TASKS,
    "references": REFERENCES,
}


def application(
    id_: int = APPLICATION_ID,
    *,
    applicant_id: int = APPLICANT_ID,
    expand: Iterable[str] = (),
    status: str = "Submitted",
    empty_as_list: bool = True,
    **collections: Mapping[str, Any],
) -> dict[str, Any]:
    """``GET /api/v9/applications/{id}[?expand=...]``, a fresh dict.

    Unexpanded, each collection is its link (``/api/v9/applications/60/offers``);
    expanded, it is the object its list endpoint answers, keyed by the child's
    key (``collections`` overrides the module's defaults, e.g. ``tasks={}``).
    An empty expanded collection is ``[]`` (PHP's empty array) unless
    ``empty_as_list`` is false, then ``{}``: the vendor prints neither.
    ``tasks``, ``scores`` and ``references`` links are inferred from the
    expansion list; the one v9 example with links lacks them (see module doc).
    """
    unknown = set(collections) - set(_DEFAULTS)
    if unknown:
        raise TypeError(f"not an application collection: {sorted(unknown)}")
    wanted = set(expand)
    body: dict[str, Any] = {
        "id": id_,
        "created": "2025-06-20T08:30:31+00:00",
        "revised": "2025-06-21T09:00:00+00:00",
        "submitted": "2025-06-21T09:00:00+00:00" if status == "Submitted" else None,
        "status": status,
        "commence_year": "2025",
        **fresh(SECTIONS),
        "academic_term": link("academic-terms", 4),
        "applicant": (
            applicant(applicant_id) if "applicant" in wanted else link("applicants", applicant_id)
        ),
        "pdf": link("applications", id_, "pdf"),  # SDK Application::getPdf (a BinaryRecord)
    }
    for name in ("flags", "courses", "offers", "exports", "documents", "scores", "tasks"):
        body[name] = _collection(id_, name, wanted, collections, empty_as_list)
    body["references"] = _collection(id_, "references", wanted, collections, empty_as_list)
    return body


def _collection(
    id_: int,
    name: str,
    wanted: set[str],
    given: Mapping[str, Mapping[str, Any]],
    empty_as_list: bool,
) -> Any:
    if name not in wanted or name not in _DEFAULTS:  # exports is never an expansion
        return link("applications", id_, name)
    data = fresh(dict(given.get(name, _DEFAULTS[name])))
    if not data:
        return [] if empty_as_list else {}
    return data


def child_link(application_id: int, collection: str, key: object) -> str:
    """``/api/v9/applications/60/tasks/5``: collection URL + "/" + list key."""
    return link("applications", application_id, collection, key)


APPLICATION_PLAIN: dict[str, Any] = application()
APPLICATION_EXPANDED: dict[str, Any] = application(expand=REFRESH_EXPANSIONS)
# Two tasks of one application, one resolved and one open (keys "1" and "5").
APPLICATION_TWO_TASKS: dict[str, Any] = application(expand=("tasks",))
# Nothing attached yet: PHP prints an empty array as [] ...
APPLICATION_EMPTY: dict[str, Any] = application(
    expand=REFRESH_EXPANSIONS, offers={}, tasks={}, references={}, documents={}, flags={}
)
# ... or {} where the vendor forces an object ("legal": {}, "collections": {}).
APPLICATION_EMPTY_OBJECTS: dict[str, Any] = application(
    expand=REFRESH_EXPANSIONS,
    offers={},
    tasks={},
    references={},
    documents={},
    flags={},
    empty_as_list=False,
)


# Invoices ----------------------------------------------------------------

# help .../api_invoices_id, verbatim.
INVOICE: dict[str, Any] = {
    "id": 1,
    "type": "Invoice",
    "nr": "1",
    "serie": {"id": 100, "name": "Default invoice series"},
    "applicant": link("applicants", 2),
    "application": link("applications", 2),
    "course": None,
    "deadline": "2023-08-15",
    "issued": "2023-04-27T16:00:00+00:00",
    "delivered": "2023-04-27T16:00:00+00:00",
    "reminder": True,
    "reminded": None,
    "collected": None,
    "currency": "EUR",
    "items": [
        {
            "item": "Tuition fee",
            "price": "1000.00",
            "qty": "1.00",
            "unit": None,
            "inventory_item_ID": None,
        }
    ],
    "collections": {},
    "instructions": "Bank account details:\r\n\r\nDREAMAPPLY BANK",
    "smallprint": "Please make sure that you include the invoice number.",
    "payer": {"name": "John Smith", "email": "j.smith@example.com"},
}
INVOICE_LINK = link("invoices", 1)


def invoice(
    id_: int = 1,
    *,
    applicant_id: int | None = APPLICANT_ID,
    application_id: int | None = APPLICATION_ID,
) -> dict[str, Any]:
    """``GET /api/v9/invoices/{id}``; ``None`` ids give the detached invoice
    that survives its applicant's deletion (help .../api_applications_id_invoices_id)."""
    body = fresh(INVOICE)
    body["id"] = id_
    body["nr"] = str(id_)
    body["applicant"] = None if applicant_id is None else link("applicants", applicant_id)
    body["application"] = None if application_id is None else link("applications", application_id)
    return body


INVOICE_DETACHED: dict[str, Any] = invoice(applicant_id=None, application_id=None)
# GET /api/v9/applicants/123/invoices (and .../applications/60/invoices): keyed by id.
APPLICANT_INVOICES: dict[str, Any] = {"1": invoice()}


# Purged resources --------------------------------------------------------

PURGED_RESOURCES: dict[str, Any] = payloads.PURGED_RESOURCES  # the v9 example


def purged_page(
    entries: Iterable[Mapping[str, Any]],
    *,
    current: int = 1,
    total: int = 1,
    first_key: int = 10,
    items_total: int | None = None,
) -> dict[str, Any]:
    """A purged-resources page: ``pages`` beside entries keyed by list number
    (``"10"``, ``"11"``...; not the resource id), as in the v9 example."""
    listed = {str(first_key + n): fresh(dict(entry)) for n, entry in enumerate(entries)}
    return {
        "pages": {
            "total": total,
            "current": current,
            "prev": current - 1 if current > 1 else None,
            "next": current + 1 if current < total else None,
            "items": {
                "current": len(listed),
                "total": len(listed) if items_total is None else items_total,
            },
        },
        **listed,
    }
