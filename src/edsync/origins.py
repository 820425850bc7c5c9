"""Where a credential may go: the origin (scheme, host, port) of the
``base_url`` it was configured for, and nowhere an answer points (SPEC 5.5).
Pure: the HTTP client asks ``foreign_origin`` before every request."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Origin:
    """Scheme, host and port (RFC 6454): where a credential may go."""

    scheme: str
    host: str
    port: int | None

    @classmethod
    def of(cls, url: httpx.URL | str) -> Origin:
        url = httpx.URL(url)
        scheme = url.scheme.lower()
        # raw_host: the IDNA (ASCII) spelling, one per host; an IPv6 address unbracketed.
        host = url.raw_host.decode("ascii").lower()
        return cls(scheme, host, url.port or _DEFAULT_PORTS.get(scheme))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = self.port is None or self.port == _DEFAULT_PORTS.get(self.scheme)
        return f"{self.scheme}://{host}{'' if default else f':{self.port}'}"


def foreign_origin(base: httpx.URL | str, link: str) -> Origin | None:
    """The origin ``link`` names when it is not ``base``'s; None for a path of
    base's origin or an absolute URL on it.

    ``link`` is resolved against ``base`` as a browser would (RFC 3986), so a
    scheme-relative ``//host/x`` names ``host`` too, though httpx would send
    it to base's origin: what an answer names is what is judged. Raises
    ``httpx.InvalidURL`` for what is no URL at all.
    """
    if not link or (link.startswith("/") and not link.startswith("//")):
        return None  # a path: no origin of its own (the common case, unparsed)
    home = Origin.of(base)
    there = Origin.of(httpx.URL(base).join(link))
    return None if there == home else there
