"""One exception tree, grouped by what the caller does about it.

- ``ConfigError``: the user must fix the configuration; exit 78.
- ``FatalError``: this source (or run) cannot go on without a human; exit 1.
- ``RetriableError``: try again later (backoff, next interval).
- ``SkippableError``: this one item is bad; quarantine it and go on.
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
    status: int, target: str, *, retry_after: str | None = None, detail: str = ""
) -> EdsyncError | None:
    """Map an HTTP status to the branch of the tree the caller acts on.

    The one place where HTTP semantics become edsync semantics.
    """
    if status < 400:
        return None
    suffix = f": {detail}" if detail else ""
    if status in (401, 403):
        return AuthError(f"{target}: HTTP {status}, credentials refused{suffix}")
    if status in (408, 425, 429) or status >= 500:
        wait = parse_retry_after(retry_after) if status in (429, 503) else None
        return RetriableError(f"{target}: HTTP {status}{suffix}", retry_after=wait)
    return FatalError(f"{target}: HTTP {status}{suffix}")


class IntegrationStateError(FatalError):
    """Edlink's ``INVALID_INTEGRATION_STATE``: the integration cannot be read now
    (disabled, not yet approved or started). A human acts upstream; it is not a
    gap, so nothing is resynced: the source fails this poll and the daemon tries
    again on its next interval."""


# Edlink answers most refusals with HTTP 400 and says why in ``$errors[].code``
# (edlink/docs api/v2.0/responses/errors.md). The token's, and the person's it
# acts for: no retry or resync can fix these, a new token or a sharing change can.
EDLINK_CREDENTIAL_CODES = frozenset(
    {
        "INVALID_TOKEN",
        "EXPIRED_TOKEN",
        "UNAUTHORIZED",  # not in the vendor's list, named by SPEC 2.2
        "UNSHARED_TOKEN",
        "INVALID_PROVIDER_TOKEN",
        "NO_PERMISSION",
    }
)
EDLINK_STATE_CODES = frozenset({"INVALID_INTEGRATION_STATE"})
# "The server encountered an unexpected condition": Edlink's 5xx spelled as a 400.
EDLINK_TRANSIENT_CODES = frozenset({"UNKNOWN", "INTERNAL"})


def edlink_error(
    status: int,
    codes: tuple[str, ...],
    *,
    source: str,
    token_env: str,
    detail: str,
    stream: bool = False,
    after: str | None = None,
    retry_after: str | None = None,
) -> EdsyncError | None:
    """The one place where an Edlink refusal (status + codes) becomes edsync's error.

    ``stream``: the request reads the event stream (after the id ``after``), so
    a refusal that is neither the token's nor the integration's means that id
    is no longer served: a gap (SPEC 2.2). On a list endpoint it is a plain
    failure. ``detail`` is the ``$errors`` as one line, already scrubbed.
    """
    if status < 400:
        return None
    found = set(codes)
    what = f"source {source!r}"
    if found & EDLINK_CREDENTIAL_CODES or status in (401, 403):
        return AuthError(
            f"{what}: Edlink refused the token in ${token_env} ({detail}); "
            f"set {token_env} to a valid integration access token"
        )
    if found & EDLINK_STATE_CODES:
        return IntegrationStateError(
            f"{what}: the Edlink integration cannot be read now ({detail}); "
            "edsync tries again next interval"
        )
    if found & EDLINK_TRANSIENT_CODES or status in (408, 425, 429) or status >= 500:
        wait = parse_retry_after(retry_after) if status in (429, 503) else None
        return RetriableError(f"{what}: Edlink failed ({detail})", retry_after=wait)
    if stream:
        return GapError(
            f"{what}: Edlink refused the cursor {after!r} ({detail}); events may have been missed"
        )
    return FatalError(f"{what}: Edlink refused the request ({detail})")
