"""What edsync sends that is secret, and keeping it out of what it says:
an upstream quoting the credential it refused, or a ``Location`` carrying it,
must not put it in our messages and logs (SPEC 5.5)."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

import httpx


def credentials_in(
    headers: Mapping[str, str], auth: httpx.Auth | tuple[str, str] | None
) -> tuple[str, ...]:
    """What we send that is secret: the credential of an ``Authorization``
    header (``Bearer X``, ``DREAM apikey="X"``: both forms) and a password."""
    found = []
    for name, value in headers.items():
        if name.lower() == "authorization":
            credential = value.partition(" ")[2].strip()
            found += [credential, *re.findall(r'"([^"]+)"', credential)]
    if isinstance(auth, tuple):
        found.append(auth[1])
    return tuple(sorted({s for s in found if s}, key=len, reverse=True))


def error_detail(body: bytes, secrets: Collection[str] = ()) -> str:
    """A short, safe excerpt of an error body for the message: an upstream
    quoting the credential it refused must not put it in our logs."""
    if not body:
        return ""
    return excerpt(body[:4096].decode("utf-8", "replace"), secrets)


def excerpt(text: str, secrets: Collection[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return " ".join(text[:200].split())
