"""DreamApply's records as the mirror holds them: the typed columns of its
views, how a link column is read, and what an erasure keeps (its links).

Entity → (plural used in view names, fields); each field is column name →
JSON path in ``records.data`` → type (``edsync.kinds.FieldType``). The
fields come from the vendor's documents, not from our simulator: the SDK's
models (dream-group/dream-apply-sdk ``gen/Models``: Applicant,
ApplicantName, Application, Offer, Invoice, ApplicationTask, BinaryRecord)
and help.dreamapply.com/api (an offer's ``inserted``, ``saved`` and
``confirmed`` are ISO strings there, ints in the SDK's docblocks). A
record's data is the resource as its endpoint answers it (SPEC 2.1); a link
column accepts a link (``/api/applicants/12``) or an expanded object
(``{"id": 12}``), held as the link's trailing digits or the object's ``id``
(``link``); the applicant is the record's ``person_id`` (``person``): an
offer carries no applicant link of its own. A child's ``application`` is the
one it was read under. References:
help.dreamapply.com/api/api_applications_id_references. Media and
interviews have no endpoint, so no records and no view: their events stay in
the ledger.
"""

from __future__ import annotations

from edsync.kinds import Demo, Entity, Example, Field, Records, Tally
from edsync.sources.dreamapply.links import is_link, ref_id

_f = Field.at


def _link(column: str, path: str) -> Field:
    return Field.at(column, path, "link")


_APPLICANT = Field("applicant_id", (), "person")
_APPLICATION = _link("application_id", "application")

ENTITIES: dict[str, Entity] = {
    "applicant": (
        "applicants",
        (
            _f("email", "email"),
            _f("given_name", "name.given"),
            _f("middle_name", "name.middle"),
            _f("family_name", "name.family"),
            _f("full_name", "name.full"),
            _f("phone", "phone"),
            _f("citizenship", "citizenship"),
            _f("reference", "reference"),
            _f("matriculation", "matriculation"),
            _f("type", "type"),
            _f("status", "status"),
            _f("registered", "registered", "timestamp"),
            # A request to be forgotten awaiting DreamApply's deletion (SPEC 5.4).
            _f("forget_requested", "forget_requested", "timestamp"),
        ),
    ),
    "application": (
        "applications",
        (
            _APPLICANT,
            _f("status", "status"),
            _f("commence_year", "commence_year"),
            _link("academic_term_id", "academic_term"),
            _f("created", "created", "timestamp"),
            _f("revised", "revised", "timestamp"),
            _f("submitted", "submitted", "timestamp"),
        ),
    ),
    "offer": (
        "offers",
        (
            _APPLICATION,
            _APPLICANT,
            _f("status", "status"),
            _link("course_id", "course"),
            _link("type_id", "type"),
            _f("priority", "priority", "integer"),
            _f("decision", "decision"),
            _f("decision_policy", "decision-policy"),
            _f("decision_deadline", "decision-deadline", "timestamp"),
            _f("inserted", "inserted", "timestamp"),
            _f("saved", "saved", "timestamp"),
            _f("confirmed", "confirmed", "timestamp"),
        ),
    ),
    "invoice": (
        "invoices",
        (
            _APPLICATION,
            _APPLICANT,
            _link("course_id", "course"),
            _f("nr", "nr"),
            _f("currency", "currency"),
            _f("issued", "issued", "timestamp"),
            _f("deadline", "deadline", "timestamp"),
            _f("delivered", "delivered", "timestamp"),
            _f("reminded", "reminded", "timestamp"),
            _f("collected", "collected", "timestamp"),
        ),
    ),
    "task": (
        "tasks",
        (
            _APPLICATION,
            _APPLICANT,
            _f("status", "status"),
            _f("class", "class"),
            _f("title", "title"),
            _f("created", "created", "timestamp"),
            _f("committed", "committed", "timestamp"),
            _f("reminded", "reminded", "timestamp"),
            _f("resolved", "resolved", "timestamp"),
        ),
    ),
    "document": (
        "documents",
        (
            _APPLICATION,
            _APPLICANT,
            _f("name", "name"),
            _f("mime", "mime"),
            _f("size", "size", "integer"),
            _f("uploaded", "uploaded", "timestamp"),
        ),
    ),
    # help.dreamapply.com/api/api_applications_id_references
    "reference": (
        "references",
        (
            _APPLICATION,
            _APPLICANT,
            _f("referee_name", "invitation.name"),
            _f("referee_email", "invitation.email"),
            _f("invited", "invited", "timestamp"),
            _f("accessed", "accessed", "timestamp"),
            _f("committed", "committed", "timestamp"),
        ),
    ),
}


def link_id(value: object) -> str | None:
    """A link column's id: as the journal reads a link, and a bare number as its own id."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ref_id(value)


RECORDS = Records(entities=ENTITIES, link_id=link_id, ids=is_link)

scrub = RECORDS.scrub
"""An erasure of DreamApply data: ids and links stay (SPEC 5.4)."""

DEMO = Demo(
    tallies=(Tally("Offers with status Enrolled", "offer", "Enrolled"),),
    examples=(
        Example(
            "offer", ("id", "application_id"), person=("email",), where=(("status", "Enrolled"),)
        ),
        # Tasks under their own ids: several per application, each with its own status.
        Example(
            "task", ("application_id", "id", "status"), order=("application_id", "id"), limit=6
        ),
    ),
)
"""What ``edsync demo`` shows of a DreamApply mirror."""
