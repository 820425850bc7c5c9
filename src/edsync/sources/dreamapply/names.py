"""DreamApply's links between resources: the id a link or an expanded object names.

Its own module because both the journal reader (``journal``) and the
snapshot (``snapshot``) follow links, and neither imports the other.
"""

from __future__ import annotations

import re

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


def link_child(child: dict[str, object], application: str | None) -> None:
    """Give a child's record (offer, task, reference, document) the link to
    its application. The vendor's objects have none (the SDK's Offer.php,
    ApplicationTask.php): they are read under their application, so its id is
    known, and ``application_id`` reads the same whichever way they came. A
    link the child has is kept."""
    if application is not None and "application" not in child:
        child["application"] = f"/api/applications/{application}"
