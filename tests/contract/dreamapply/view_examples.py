"""DreamApply objects as its API documents them, for the typed views.

Copied in shape from the vendor's examples:
- APPLICANT: help.dreamapply.com/api/api_applicants_id/ (GET /api/v9/applicants/123).
- APPLICATION: help.dreamapply.com/api/api_applicants_id_applications/ (an item
  of GET /api/v9/applicants/123/applications, keyed "60").
- OFFER: docs.dreamapply.com api:api_applications_id_offers (API version >= 4,
  the offer keyed "12"; the list is keyed by offer id, which the object lacks).
"""

from __future__ import annotations

from typing import Any

APPLICANT: dict[str, Any] = {
    "id": 123,
    "type": "Natural",
    "registered": "2025-11-24T10:56:34+00:00",
    "name": {"full": "John Smith", "given": "John", "middle": None, "family": "Smith"},
    "email": "john.smith@email.com",
    "phone": "",
    "reference": None,
    "matriculation": None,
    "citizenship": "GB",
    "notes": None,
    "applications": "/api/v9/applicants/123/applications",
    "trackers": "/api/v9/applicants/123/trackers",
    "photo": "/api/v9/applicants/123/photo",
    "consents": "/api/v9/applicants/123/consents",
    "invoices": "/api/v9/applicants/123/invoices",
    "wishes": "/api/v9/applicants/123/wishes",
    "documents": "/api/v9/applicants/123/documents",
}

APPLICATION: dict[str, Any] = {
    "created": "2025-06-20T08:30:31+00:00",
    "revised": "2025-06-20T08:30:31+00:00",
    "submitted": None,
    "status": "Prepare",
    "commence_year": "2025",
    "applicant": "/api/v9/applicants/60",
    "flags": "/api/v9/applications/60/flags",
    "courses": "/api/v9/applications/60/courses",
    "offers": "/api/v9/applications/60/offers",
    "exports": "/api/v9/applications/60/exports",
    "documents": "/api/v9/applications/60/documents",
}

OFFER: dict[str, Any] = {
    "priority": 1,
    "inserted": "2014-06-20T11:00:19+00:00",
    "saved": "2014-06-20T11:00:19+00:00",
    "confirmed": None,
    "course": "/api/courses/1",
    "type": "/api/v4/applications/offers/types/7",
    "type-confirmed": "/api/v4/applications/offers/types/1",
    "comments": None,
    "comments-confirmed": None,
    "decision": "None",
    "decision-policy": "None",
    "decision-deadline": None,
    "score": {"auto": "10.00", "extra": None},
    "notes": None,
}
