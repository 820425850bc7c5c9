"""The request and response values route modules deal in, free of any server."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import orjson

__all__ = ["Handler", "Request", "Response", "Route", "json_error"]

JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed HTTP request; header names are lower-case."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Response:
    """What to answer. The server adds Content-Length (and drops the body for HEAD)."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=lambda: {"Content-Type": JSON})


Handler = Callable[[Request], Response]


@dataclass(frozen=True, slots=True)
class Route:
    """A path pattern (matched in full) served by a handler; ``name`` scopes fault injection."""

    name: str
    pattern: re.Pattern[str]
    handler: Handler


def json_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """DreamApply's error shape: ``{"error": {"code": …, "message": …}}``."""
    body = orjson.dumps({"error": {"code": status, "message": message}})
    return Response(status, body, {"Content-Type": JSON, **(headers or {})})
