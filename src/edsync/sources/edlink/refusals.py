"""How an Edlink refusal becomes edsync's error (SPEC 2.2): the one place
that reads Edlink's ``$errors`` codes.

Edlink answers most refusals with HTTP 400 and says why in
``$errors[].code`` (edlink/docs api/v2.0/responses/errors.md); SPEC 2.2 says
what each means.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

import orjson

from edsync.errors import (
    AuthError,
    EdsyncError,
    FatalError,
    GapError,
    RefusedError,
    RetriableError,
    parse_retry_after,
)
from edsync.http import HttpClient, Reply
from edsync.settings import Secret

# Read here, not by HttpClient: Edlink says in `$errors` what a 4xx means (a
# 400 may be a dead token or a purged cursor). 408/425/429 stay transient.
REFUSALS: frozenset[int] = frozenset(range(400, 500)) - {408, 425, 429}

# The token's, and the person's it acts for: no retry or resync can fix these,
# a new token or a sharing change can.
CREDENTIAL_CODES = frozenset(
    {
        "INVALID_TOKEN",
        "EXPIRED_TOKEN",
        "UNAUTHORIZED",  # not in the vendor's list, named by SPEC 2.2
        "UNSHARED_TOKEN",
        "INVALID_PROVIDER_TOKEN",
        "NO_PERMISSION",
    }
)
STATE_CODES = frozenset({"INVALID_INTEGRATION_STATE"})
# "The server encountered an unexpected condition": Edlink's 5xx spelled as a 400.
TRANSIENT_CODES = frozenset({"UNKNOWN", "INTERNAL"})
# A refusal of the id sent as `$after` (or of the cursor inside our own
# `$next`): only these say that events may have been missed.
CURSOR_CODES = frozenset({"INVALID_CURSOR", "NOT_FOUND", "INVALID_UUID"})


class IntegrationStateError(FatalError):
    """``INVALID_INTEGRATION_STATE``: the integration cannot be read now
    (disabled, not yet approved or started). A human acts upstream; it is not a
    gap, so nothing is resynced: the source fails this poll and the daemon tries
    again on its next interval."""


class _Token(Protocol):
    @property
    def token(self) -> Secret: ...


class Reader(Protocol):
    """What a refusal names of the source that was refused."""

    @property
    def name(self) -> str: ...

    @property
    def http(self) -> HttpClient: ...

    @property
    def settings(self) -> _Token: ...


def refusal_detail(reply: Reply, secrets: Collection[str]) -> tuple[tuple[str, ...], str]:
    """The codes of Edlink's ``{"$errors": [{"code", "message"}]}`` and the whole as
    one line, with anything we sent as a credential masked."""
    try:
        body = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        body = None
    errors = body.get("$errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        errors = []
    found = [e for e in errors if isinstance(e, dict)]
    codes = tuple(str(e["code"]) for e in found if isinstance(e.get("code"), str))
    text = "; ".join(f"{e.get('code', '?')}: {e.get('message', '')}" for e in found)
    for secret in secrets:
        text = text.replace(secret, "***")
    detail = f"HTTP {reply.status} {text}" if text else f"HTTP {reply.status}"
    return codes, " ".join(detail[:300].split())


def refusal_error(reply: Reply, source: Reader, after: str | None = None) -> EdsyncError:
    """The one place where an Edlink refusal (status + codes) becomes edsync's error.

    ``after``: the stored event id the request resumes from, if any; only a
    cursor code then is a gap. Any other code, documented or not, is a source
    error naming it (``RefusedError``): backed off, never a resync.
    """
    codes, detail = refusal_detail(reply, source.http.secrets)
    found, status, what = set(codes), reply.status, f"source {source.name!r}"
    if found & CREDENTIAL_CODES or status in (401, 403):
        token = source.settings.token
        where, fix = (
            (f"file {token.file}", f"put a valid integration access token in {token.file}")
            if token.file
            else (f"${token.env}", f"set {token.env} to a valid integration access token")
        )
        return AuthError(f"{what}: Edlink refused the token in {where} ({detail}); {fix}")
    if found & STATE_CODES:
        return IntegrationStateError(
            f"{what}: the Edlink integration cannot be read now ({detail}); "
            "edsync tries again next interval"
        )
    if found & TRANSIENT_CODES or status in (408, 425, 429) or status >= 500:
        header = reply.headers.get("Retry-After") if status in (429, 503) else None
        return RetriableError(
            f"{what}: Edlink failed ({detail})", retry_after=parse_retry_after(header)
        )
    if after is not None and found & CURSOR_CODES:
        return GapError(
            f"{what}: Edlink refused the cursor {after!r} ({detail}); events may have been missed"
        )
    return RefusedError(
        f"{what}: Edlink refused the request ({detail}); not a gap: "
        "the source backs off and tries again"
    )
