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


def link_offer(offer: dict[str, object], application: str | None) -> None:
    """Give an offer's record the link to its application. The vendor's Offer
    object has none (the SDK's Offer.php): an expanded journal event names
    the application beside it, the snapshot reads offers under theirs; an
    unexpanded event's record has the link already. So ``application_id``
    is known whichever way the offer came. A link the offer has is kept."""
    if application is not None and "application" not in offer:
        offer["application"] = f"/api/applications/{application}"
