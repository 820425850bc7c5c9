"""The Learning Hub Event Store (SPEC 2.3): ``PUT`` and ``GET /events/{eventId}``.

Behaviour follows the seed document: HTTP Basic auth with a user id and an API
key that may write some programs only; ``{eventId}`` must start with a
permitted ``ProgramId`` and a hyphen, and the body's ``ProgramId`` must be that
program; a PUT creates or replaces the event and answers ``200`` with
``Location: /events/{eventId}``. ``GET`` of the same path returns the stored
event or ``404``: a read-back for tests, which the seed does not document and
edsync never sends (``check`` only proves the host answers).

``LearningHub`` is also the tests' oracle: ``events`` holds the latest body per
id, ``puts`` every PUT in arrival order (faults injected on the route included),
``bodies`` every body PUT for one id, and ``wait_for_puts`` blocks without sleeps.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

import orjson

from edsync_sim.web import JSON, Request, Response, Route, json_error

__all__ = [
    "DEFAULT_HUB_KEY",
    "DEFAULT_HUB_PROGRAMS",
    "DEFAULT_HUB_USER",
    "EVENTS_PATH",
    "ROUTE",
    "BadEventError",
    "HubPut",
    "LearningHub",
    "basic_user",
    "hub_route",
    "validate_event",
]

ROUTE = "learninghub"
EVENTS_PATH = re.compile(r"/events/(?P<event_id>[^/]+)")
DEFAULT_HUB_USER = "edsync"
DEFAULT_HUB_KEY = "sim-hub-key"
DEFAULT_HUB_PROGRAMS: tuple[str, ...] = ("FOO",)

_BASIC = re.compile(r"\s*basic\s+(\S+)\s*", re.IGNORECASE)
_REQUIRED = ("ProgramId", "EventType", "EventStartUTC")
_TIMESTAMPS = ("EventStartUTC", "EventEndUTC")
_ALLOW = "GET, HEAD, PUT"

Event = dict[str, Any]


class BadEventError(ValueError):
    """A PUT body the hub refuses with 400."""


@dataclass(frozen=True, slots=True)
class HubPut:
    """One PUT as the hub saw it.

    ``body`` is the parsed JSON object (None when the body was not one);
    ``status`` what was answered (0: the connection was dropped by an injected
    fault); ``user`` the Basic auth user id sent, right or wrong (None: no
    readable Basic credentials).
    """

    event_id: str
    body: Event | None
    status: int
    user: str | None


def basic_user(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """(user id, api key) from ``Authorization: Basic …``; None when absent or unreadable."""
    match = _BASIC.fullmatch(headers.get("authorization", ""))
    if match is None:
        return None
    try:
        decoded = base64.b64decode(match.group(1), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, key = decoded.partition(":")
    return (user, key) if colon else None


def _parse_body(body: bytes) -> Event | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _utc_timestamp(field: str, value: str) -> None:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadEventError(f"{field}: expected an ISO 8601 UTC date/time, got {value!r}") from None
    if moment.utcoffset() not in (None, timedelta(0)):
        raise BadEventError(f"{field}: expected a UTC date/time, got {value!r}")


def validate_event(event: Mapping[str, object]) -> None:
    """Raise ``BadEventError`` unless ``event`` is a valid Event Store payload.

    ``ProgramId``, ``EventType`` and ``EventStartUTC`` are required non-empty
    strings; ``ProgramMemberId`` and ``EventEndUTC`` strings, ``EventData`` an
    object and ``ReferenceEventId`` a string or null when present. The two
    timestamps are ISO 8601, in UTC (``Z``, ``+00:00`` or no offset). Other
    fields are kept as sent.
    """
    for field in _REQUIRED:
        value = event.get(field)
        if not isinstance(value, str) or not value:
            raise BadEventError(f"{field}: required, a non-empty string")
    for field in ("ProgramMemberId", "EventEndUTC"):
        if field in event and not isinstance(event[field], str):
            raise BadEventError(f"{field}: expected a string")
    if "EventData" in event and not isinstance(event["EventData"], dict):
        raise BadEventError("EventData: expected a JSON object")
    reference = event.get("ReferenceEventId")
    if reference is not None and not isinstance(reference, str):
        raise BadEventError("ReferenceEventId: expected a string or null")
    for field in _TIMESTAMPS:
        value = event.get(field)
        if isinstance(value, str):
            _utc_timestamp(field, value)


class LearningHub:
    """The Event Store's state and its credentials: one user id, one key, its programs."""

    def __init__(
        self,
        user: str = DEFAULT_HUB_USER,
        key: str = DEFAULT_HUB_KEY,
        programs: Iterable[str] = DEFAULT_HUB_PROGRAMS,
    ) -> None:
        self.user = user
        self.key = key
        self.programs: tuple[str, ...] = tuple(programs)
        self.events: dict[str, Event] = {}
        self.puts: list[HubPut] = []
        self._changed = threading.Condition()

    # -- oracle -------------------------------------------------------------

    def bodies(self, event_id: str) -> list[Event]:
        """Every JSON object PUT for ``event_id``, in order, whatever was answered."""
        with self._changed:
            return [
                put.body for put in self.puts if put.event_id == event_id and put.body is not None
            ]

    def wait_for_puts(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` PUTs were received; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self.puts) >= count, timeout)

    # -- serving ------------------------------------------------------------

    def authorized(self, headers: Mapping[str, str]) -> bool:
        credentials = basic_user(headers)
        if credentials is None:
            return False
        user_ok = hmac.compare_digest(credentials[0].encode(), self.user.encode())
        key_ok = hmac.compare_digest(credentials[1].encode(), self.key.encode())
        return user_ok and key_ok

    def program_of(self, event_id: str) -> str | None:
        """The permitted program whose ``{ProgramId}-`` prefixes ``event_id`` (longest)."""
        owners = [p for p in self.programs if event_id.startswith(p + "-")]
        return max(owners, key=len) if owners else None

    def record(self, request: Request, response: Response | None, *, store: bool = False) -> None:
        """Note a PUT answered by ``response`` (None: connection dropped); with ``store``,
        its body becomes the event. The server records PUTs that injected faults answer
        without ``store``: even an injected 200 keeps nothing."""
        if request.method != "PUT":
            return
        match = EVENTS_PATH.fullmatch(request.path)
        event_id = unquote(match.group("event_id")) if match else request.path
        body = _parse_body(request.body)
        credentials = basic_user(request.headers)
        status = 0 if response is None else response.status
        put = HubPut(event_id, body, status, credentials[0] if credentials else None)
        with self._changed:
            if store and body is not None:
                self.events[event_id] = body
            self.puts.append(put)
            self._changed.notify_all()

    def handle(self, request: Request) -> Response:
        response = self._answer(request)
        self.record(request, response, store=response.status == 200)
        return response

    def _answer(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD", "PUT"):
            return json_error(405, f"{request.method} is not allowed here", {"Allow": _ALLOW})
        if not self.authorized(request.headers):
            return json_error(
                401,
                "missing or wrong credentials: send HTTP Basic user id and API key",
                {"WWW-Authenticate": 'Basic realm="Learning Hub"'},
            )
        match = EVENTS_PATH.fullmatch(request.path)
        assert match is not None  # the route only sends its own paths
        event_id = unquote(match.group("event_id"))
        program = self.program_of(event_id)
        if program is None:
            return json_error(
                403, f"{event_id!r}: not prefixed with a ProgramId this API key may write"
            )
        if event_id == program + "-":
            return json_error(400, f"{event_id!r}: no id after the ProgramId prefix")
        if request.method == "PUT":
            return self._put(event_id, request.body)
        with self._changed:
            stored = self.events.get(event_id)
        if stored is None:
            return json_error(404, f"no such event: {event_id}")
        return Response(200, orjson.dumps(stored), {"Content-Type": JSON})

    def _put(self, event_id: str, raw: bytes) -> Response:
        body = _parse_body(raw)
        if body is None:
            return json_error(400, "the body must be a JSON object")
        try:
            validate_event(body)
        except BadEventError as exc:
            return json_error(400, str(exc))
        program_id = body["ProgramId"]
        if program_id not in self.programs or not event_id.startswith(program_id + "-"):
            return json_error(
                403, f"ProgramId {program_id!r} does not own {event_id!r} for this API key"
            )
        location = "/events/" + quote(event_id, safe="")
        body_out = orjson.dumps({"EventId": event_id, "Location": location})
        return Response(200, body_out, {"Content-Type": JSON, "Location": location})


def hub_route(hub: LearningHub) -> Route:
    """The ``learninghub`` route: ``/events/{eventId}`` served by ``hub``."""
    return Route(ROUTE, EVENTS_PATH, hub.handle)
