"""One exception tree, grouped by what the caller does about it.

- ``ConfigError``: the user must fix the configuration; exit 78.
- ``FatalError``: this source (or run) cannot go on without a human; exit 1.
- ``RetriableError``: try again later (backoff, next interval).
- ``SkippableError``: this one item is bad; quarantine it and go on.

The mirror database's failures are ``edsync.mirror.MirrorError``, an
``EdsyncError`` kept beside the database code that raises it: what the
database said, its own exception as the cause. A unit of the mirror's work
that may succeed later (a page's transaction on a locked or full database)
fails as ``RetriableMirrorError``, a ``RetriableError`` too.
"""

from __future__ import annotations

import email.utils
import time


class EdsyncError(Exception):
    """Root of every error edsync raises on purpose."""


class ConfigError(EdsyncError):
    """The configuration is wrong: names the file and the key."""

    def __init__(self, file: str, key: str, message: str) -> None:
        self.file = file
        self.key = key
        self.message = message
        super().__init__(f"{file}: {key}: {message}" if key else f"{file}: {message}")


class FatalError(EdsyncError):
    """Stop this source or run; retrying will not help."""


class AuthError(FatalError):
    """401/403: the credentials for a source or sink were refused."""


class RefusedError(FatalError):
    """The upstream refused the request for a reason it names (an error code)
    that waiting a little will not fix: this poll fails, and the source backs
    off as for a refused credential, never resyncing."""


class ForeignOriginError(FatalError):
    """A link or ``$next`` from an answer names another origin (scheme, host,
    port) than the ``base_url`` the credential was configured for. It is not
    requested: the credential would go with it (SPEC 5.5). A misconfigured
    proxy or upstream, or a hostile one, will not mend itself within a poll,
    so the source backs off as for a refused credential."""


class GapError(FatalError):
    """The stored cursor is no longer served upstream: events may be missing."""


class RetriableError(EdsyncError):
    """A transient failure: back off and try again."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class MalformedPageError(RetriableError):
    """A page that is not the expected envelope (truncated, invalid JSON)."""


class SkippableError(EdsyncError):
    """One event cannot be used; it is quarantined and the feed goes on."""


class UnreadableJsonError(SkippableError):
    """A page that is complete, valid JSON no parser here reads (an item nested
    past its depth). Not retried: the same bytes would fail the same way. A
    feed narrows the page until the item stands alone and quarantines it
    (``edsync.pages``); elsewhere it fails the read, naming why. ``text``: the
    page as text, for the item's id and its raw text."""

    def __init__(self, message: str, *, text: str) -> None:
        self.text = text
        super().__init__(message)


class InvalidEventError(SkippableError):
    """An event that cannot be normalized.

    ``person_id``: the person the raw event still names, if any, so that its
    quarantined ledger row is found and scrubbed when they ask to be forgotten.
    """

    def __init__(self, message: str, *, person_id: str | None = None) -> None:
        self.person_id = person_id
        super().__init__(message)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def error_for_status(
    status: int,
    target: str,
    *,
    retry_after: str | None = None,
    location: str | None = None,
    detail: str = "",
) -> EdsyncError | None:
    """Map an HTTP status to the branch of the tree the caller acts on.

    The one place where HTTP semantics become edsync semantics. Only a 2xx is
    an answer: a redirect is never followed (it could carry a credential to
    another host) and never taken for a delivery (SPEC 2.4); it is retried like
    a 5xx, since a load balancer's 307 may be passing, and named so a human can
    point ``base_url`` at the final address.
    """
    if 200 <= status < 300:
        return None
    if status < 400:
        where = f"to {location}" if location else "without a Location"
        return RetriableError(
            f"{target}: HTTP {status}, a redirect {where}; edsync does not follow "
            "redirects: set base_url to the address that answers"
        )
    suffix = f": {detail}" if detail else ""
    if status in (401, 403):
        return AuthError(f"{target}: HTTP {status}, credentials refused{suffix}")
    if status in (408, 425, 429) or status >= 500:
        wait = parse_retry_after(retry_after) if status in (429, 503) else None
        return RetriableError(f"{target}: HTTP {status}{suffix}", retry_after=wait)
    return FatalError(f"{target}: HTTP {status}{suffix}")
