"""Edlink's Graph API v2 over the simulator: the event stream and the list endpoints.

Behaviour follows Edlink's documentation and SPEC 2.2, including the parts a
consumer gets wrong: ``$next`` embeds a cursor that expires two hours after it
was issued; events older than 30 days are gone, and ``$after`` naming one of
them (or an id never seen) fails with ``INVALID_CURSOR`` rather than silently
starting somewhere else. Errors come as ``{"$errors": [{"code", "message"}]}``,
with HTTP 400 as Edlink sends them (api/v2.0/responses/errors.md): a wrong or
missing token is ``INVALID_TOKEN``, an expired one ``EXPIRED_TOKEN``, an
integration that cannot be read (disabled, not yet started)
``INVALID_INTEGRATION_STATE``. ``Integration`` lets a test cause each mid-run.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import operator
import re
import uuid
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import orjson

from edsync_sim.edlink_graph import PLURALS, EdlinkGraph
from edsync_sim.web import JSON, Request, Response, Route

__all__ = [
    "CURSOR_TTL",
    "DEFAULT_FIRST",
    "EVENTS_PATH",
    "EVENT_PATH",
    "GRAPH_PATH",
    "MAX_FIRST",
    "Cursors",
    "EdlinkError",
    "Integration",
    "authorized",
    "edlink_error",
    "edlink_routes",
    "parse_filter",
]

EVENTS_PATH = re.compile(r"/api/v2/graph/events/?")
EVENT_PATH = re.compile(r"/api/v2/graph/events/(?P<event_id>[^/]+)/?")
GRAPH_PATH = re.compile(r"/api/v2/graph/(?P<plural>" + "|".join(PLURALS.values()) + r")/?")
DEFAULT_FIRST = 100
MAX_FIRST = 10_000
CURSOR_TTL = timedelta(hours=2)

_KIND_OF = {plural: kind for kind, plural in PLURALS.items()}
_DIGITS = re.compile(r"[0-9]+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Json = dict[str, object]
Predicate = Callable[[Mapping[str, object]], bool]


class EdlinkError(Exception):
    """A request Edlink refuses; becomes a ``$errors`` response."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> Response:
        return edlink_error(self.status, self.code, self.message)


# api/v2.0/responses/errors.md: every code Edlink documents, with its own text.
ERROR_MESSAGES: dict[str, str] = {
    "UNKNOWN": "The server encountered an unexpected condition which prevented it "
    "from fulfilling the request.",
    "INTERNAL": "The server encountered an unexpected condition which prevented it "
    "from fulfilling the request.",
    "UNKNOWN_PROVIDER": "Edlink could not find the proper provider for the authenticated "
    "person or integration.",
    "INVALID_TOKEN": "You must supply a valid access token to access this endpoint.",
    "EXPIRED_TOKEN": "The token you provided, while it was valid at some point, is now expired.",
    "UNSHARED_TOKEN": "The person that this token is associated with is no longer shared "
    "with the integration.",
    "INVALID_PROVIDER_TOKEN": "The person that the token belongs to has not signed in to "
    "Edlink with their provider account.",
    "INVALID_INTEGRATION_STATE": "The integration associated with the provided access token "
    "is not in the correct state to perform the requested action.",
    "INVALID_UUID": "You have provided a UUID in an invalid format.",
    "UNSUPPORTED_OPERATION": "The current provider does not support the requested operation.",
    "NOT_FOUND": "The requested resource could not be found.",
    "NO_PERMISSION": "The person that the token belongs to does not have permission to "
    "perform the requested action.",
    "IDEMPOTENCY_KEY_TOO_LONG": "The supplied $idempotency key may not be longer than 255 "
    "characters.",
    "INVALID_CURSOR": "The supplied cursor is invalid.",
    "INVALID_PAGE_SIZE": "For rostering endpoints, the requested page size must be between "
    "1 and 10000.",
    "ENTITY_NOT_PRESENT_IN_SOURCE": "The current user or class is not present in the source "
    "system.",
    "INVALID_SUBMISSION_TYPE": "One or more submission_types are invalid.",
    "MISSING_REQUIRED_FIELD": "One or more required fields are missing.",
    "INVALID_ASSIGNEES": "One or more assignee_ids must be provided when the assignee_mode "
    "is individual.",
}


def edlink_error(
    status: int, code: str, message: str | None = None, headers: Mapping[str, str] | None = None
) -> Response:
    """guides/v2.0/errors-warnings.md: ``$request`` and a list of ``$errors``;
    without a ``message``, the documented text of ``code`` (or the code itself)."""
    text = ERROR_MESSAGES.get(code, code) if message is None else message
    body = orjson.dumps(
        {"$request": str(uuid.uuid4()), "$errors": [{"code": code, "message": text}]}
    )
    return Response(status, body, {"Content-Type": JSON, **(headers or {})})


def _bad_request(message: str) -> EdlinkError:
    return EdlinkError(400, "BAD_REQUEST", message)


def _invalid_cursor(message: str) -> EdlinkError:
    return EdlinkError(400, "INVALID_CURSOR", message)


def authorized(headers: Mapping[str, str], token: str) -> bool:
    scheme, _, credential = headers.get("authorization", "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        credential.strip().encode(), token.encode()
    )


# Edlink's IntegrationState (api/v2.0/models/internal/enums/integration-state.md).
# The API answers under "active" and "paused" ("Users can still make API
# requests"); errors.md: "You must set the integration to `active` or `paused`".
INTEGRATION_STATES = frozenset(
    {"requested", "inactive", "scheduled", "active", "disabled", "paused", "error", "pending"}
)
READABLE_STATES = frozenset({"active", "paused"})


class Integration:
    """The integration behind the access token, as a test may change it mid-run:
    ``token`` (another value makes the client's ``INVALID_TOKEN``),
    ``token_expired`` (``EXPIRED_TOKEN``), ``state`` (one of Edlink's
    IntegrationState values; any but active/paused: ``INVALID_INTEGRATION_STATE``).
    Plain attributes: the serving thread reads them on each request."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.token_expired = False
        self._state = "active"

    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        if value not in INTEGRATION_STATES:
            raise ValueError(f"not an Edlink integration state: {value!r}")
        self._state = value

    def refusal(self, headers: Mapping[str, str]) -> EdlinkError | None:
        """Why Edlink would refuse a request with these headers, if it would."""
        if not authorized(headers, self.token):
            return EdlinkError(
                400,
                "INVALID_TOKEN",
                "You must supply a valid access token to access this endpoint.",
            )
        if self.token_expired:
            return EdlinkError(
                400, "EXPIRED_TOKEN", "The token you provided, while valid once, is now expired."
            )
        if self._state not in READABLE_STATES:
            return EdlinkError(
                400,
                "INVALID_INTEGRATION_STATE",
                f"The integration is {self._state}: it must be active or paused.",
            )
        return None


# -- cursors ------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Cursors:
    """Opaque ``$cursor`` values: signed (a client can neither forge nor edit one) and
    stamped with their issue time, so they expire like Edlink's."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _sign(self, body: bytes) -> str:
        return _b64(hmac.new(self._secret, body, hashlib.sha256).digest()[:16])

    def issue(self, scope: str, state: Json, now_ms: int) -> str:
        body = orjson.dumps({"s": scope, "t": now_ms, **state})
        return f"{_b64(body)}.{self._sign(body)}"

    def read(self, token: str, scope: str, now_ms: int) -> Json:
        """The state issued with ``token``; INVALID_CURSOR if forged, foreign or expired."""
        encoded, _, signature = token.partition(".")
        try:
            body = _unb64(encoded)
        except (binascii.Error, ValueError) as exc:
            raise _invalid_cursor("the cursor is malformed") from exc
        if not hmac.compare_digest(signature, self._sign(body)):
            raise _invalid_cursor("the cursor is malformed")
        state = orjson.loads(body)
        if not isinstance(state, dict) or state.get("s") != scope:
            raise _invalid_cursor("the cursor belongs to another endpoint")
        issued = state.get("t")
        if not isinstance(issued, int) or now_ms - issued >= CURSOR_TTL // timedelta(
            milliseconds=1
        ):
            raise _invalid_cursor("the cursor has expired")
        return state


# -- parameters ---------------------------------------------------------------


def _count(query: Mapping[str, str], name: str) -> int | None:
    """``$first`` / ``$last``: None when absent, else 1..10000."""
    value = query.get(name)
    if value is None:
        return None
    if not _DIGITS.fullmatch(value) or not 1 <= int(value) <= MAX_FIRST:
        raise _bad_request(f"{name} must be an integer from 1 to {MAX_FIRST}, got {value!r}")
    return int(value)


# -- $filter ------------------------------------------------------------------

_ID, _DATE, _STRING = "id", "date", "string"
_OPERATORS: Mapping[str, frozenset[str]] = {
    _ID: frozenset({"equals", "in", "not in"}),
    _DATE: frozenset({"equals", "gt", "gte", "lt", "lte"}),
    _STRING: frozenset(
        {"equals", "starts with", "contains", "in", "not in", "is known", "is unknown"}
    ),
}
_COMMON_FIELDS = {"id": _ID, "created_date": _DATE, "updated_date": _DATE}
_KIND_FIELDS: Mapping[str, Mapping[str, str]] = {
    "district": dict.fromkeys(("name", "locale", "time_zone"), _STRING),
    "school": dict.fromkeys(("name", "district_id", "locale", "time_zone"), _STRING),
    "session": {
        **dict.fromkeys(("name", "state", "type", "school_id", "district_id"), _STRING),
        "start_date": _DATE,
        "end_date": _DATE,
    },
    "course": dict.fromkeys(("name", "code", "school_id", "session_id", "district_id"), _STRING),
    "person": dict.fromkeys(
        (
            "first_name",
            "middle_name",
            "last_name",
            "display_name",
            "email",
            "phone",
            "locale",
            "time_zone",
            "district_id",
        ),
        _STRING,
    ),
    "class": dict.fromkeys(("name", "description", "state", "course_id", "school_id"), _STRING),
    "section": dict.fromkeys(("name", "state", "class_id"), _STRING),
    "enrollment": {
        **dict.fromkeys(("role", "state", "class_id", "section_id", "person_id"), _STRING),
        "start_date": _DATE,
        "end_date": _DATE,
    },
    "agent": dict.fromkeys(("relationship", "observer_id", "target_id"), _STRING),
}
_COMPARE: Mapping[str, Callable[[int, int], bool]] = {
    "equals": operator.eq,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def _micros(value: object) -> int | None:
    """An ISO date as epoch microseconds (naive = UTC); None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _date_test(field: str, op: str, value: object) -> Predicate:
    bound = _micros(value)
    if bound is None:
        raise _bad_request(f"$filter: {field} {op} needs an ISO 8601 date, got {value!r}")
    compare = _COMPARE[op]

    def test(data: Mapping[str, object]) -> bool:
        # Dates are compared as instants, so "…Z" and "…+00:00" forms agree.
        actual = _micros(data.get(field))
        return actual is not None and compare(actual, bound)

    return test


def _string_list(field: str, op: str, value: object) -> frozenset[str]:
    """``in`` / ``not in`` take one comma-separated string (guides/v2.0/
    filtering-results.md: ``"a,set,of,comma,separated,values"``). A JSON list of
    strings is accepted too: the guide is silent on it, and refusing costs more."""
    if isinstance(value, str):
        return frozenset(value.split(","))
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _bad_request(
            f"$filter: {field} {op} needs comma-separated values in a string, got {value!r}"
        )
    return frozenset(value)


def _string_test(field: str, op: str, value: object) -> Predicate:
    if op == "is known":
        return lambda data: data.get(field) is not None
    if op == "is unknown":
        return lambda data: data.get(field) is None
    if op in ("in", "not in"):
        members = _string_list(field, op, value)
        inside = op == "in"
        return lambda data: (data.get(field) in members) is inside
    if not isinstance(value, str):
        raise _bad_request(f"$filter: {field} {op} needs a string, got {value!r}")
    if op == "equals":
        return lambda data: data.get(field) == value
    # Text matching ignores case, as a search box would.
    needle = value.casefold()
    if op == "starts with":
        return lambda data: str(data.get(field) or "").casefold().startswith(needle)
    return lambda data: needle in str(data.get(field) or "").casefold()


def _condition(field: str, field_type: str, condition: object) -> Predicate:
    if not isinstance(condition, dict) or not isinstance(condition.get("operator"), str):
        raise _bad_request(f"$filter: each {field} condition needs an operator")
    op = condition["operator"]
    if op not in _OPERATORS[field_type]:
        allowed = ", ".join(sorted(_OPERATORS[field_type]))
        raise _bad_request(f"$filter: {field} does not support {op!r} (use {allowed})")
    if op not in ("is known", "is unknown") and "value" not in condition:
        raise _bad_request(f"$filter: {field} {op} needs a value")
    value = condition.get("value")
    if field_type == _DATE:
        return _date_test(field, op, value)
    return _string_test(field, op, value)


def parse_filter(kind: str, raw: str | None) -> Predicate | None:
    """``$filter`` as a predicate on an object's data; None when absent.

    Conditions on one field, and the fields themselves, are ANDed.
    """
    if raw is None:
        return None
    try:
        spec = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _bad_request("$filter must be a JSON object") from exc
    if not isinstance(spec, dict) or not spec:
        raise _bad_request("$filter must be a non-empty JSON object of fields")
    fields = {**_COMMON_FIELDS, **_KIND_FIELDS[kind]}
    tests: list[Predicate] = []
    for field, conditions in spec.items():
        field_type = fields.get(field)
        if field_type is None:
            raise _bad_request(f"$filter: {PLURALS[kind]} cannot be filtered on {field!r}")
        if not isinstance(conditions, list) or not conditions:
            raise _bad_request(f"$filter: {field} needs a list of conditions")
        tests.extend(_condition(field, field_type, condition) for condition in conditions)
    return lambda data: all(test(data) for test in tests)


# -- pages --------------------------------------------------------------------


def _page(items: Sequence[bytes], next_url: str | None) -> bytes:
    """``{"$data": […], "$next": …, "$request": …}`` from pre-rendered items."""
    parts = [b'{"$data":[', b",".join(items), b"]"]
    if next_url is not None:
        parts += [b',"$next":', orjson.dumps(next_url)]
    parts += [b',"$request":"', str(uuid.uuid4()).encode(), b'"}']
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class _Context:
    graph: EdlinkGraph
    cursors: Cursors
    base_url: Callable[[], str]

    def next_url(self, request: Request, first: int, cursor: str) -> str:
        # Absolute, on the host the client used, as Edlink's $next is; over
        # TLS an https URL (a plain-http $next would be another origin).
        host = request.headers.get("host")
        scheme = self.base_url().partition("://")[0]
        base = f"{scheme}://{host}" if host else self.base_url()
        return f"{base}{request.path}?" + urlencode({"$first": first, "$cursor": cursor}, safe="$")


def _events_start(context: _Context, query: Mapping[str, str], oldest: int, now: int) -> int:
    """Position of the first event to serve; INVALID_CURSOR rather than a silent gap."""
    token = query.get("$cursor")
    if token is not None:
        position = context.cursors.read(token, "events", now).get("p")
        if not isinstance(position, int):
            raise _invalid_cursor("the cursor is malformed")
        if position + 1 < oldest:
            raise _invalid_cursor("events after this cursor are past retention")
        return position + 1
    after = query.get("$after")
    if after is None:
        return oldest
    position = context.graph.position(after)
    if position is None or position < oldest:
        raise _invalid_cursor(f"$after: no event {after!r} (unknown or past retention)")
    return position + 1


def handle_events(context: _Context, request: Request) -> bytes:
    query = request.query
    first, last = _count(query, "$first"), _count(query, "$last")
    if first is not None and last is not None:
        raise _bad_request("use either $first or $last, not both")
    first = first or DEFAULT_FIRST
    graph = context.graph
    now = graph.now_ms()
    with graph.locked():
        start = _events_start(context, query, graph.retained_from(now), now)
        count = graph.events_count
        # $last=N: the newest N (after $after, if given); no further pages.
        stop = count if last is not None else min(start + first, count)
        start = max(start, count - last) if last is not None else start
        items = graph.event_bodies(start, stop)
    next_url = None
    if last is None and stop < count:
        cursor = context.cursors.issue("events", {"p": stop - 1}, now)
        next_url = context.next_url(request, first, cursor)
    return _page(items, next_url)


def handle_event(context: _Context, request: Request) -> bytes:
    """``GET /api/v2/graph/events/:event_id`` (api/v2.0/graph/events.md, "Fetch
    Event"): ``{"$data": event, "$request": …}``; a retained event only."""
    match = EVENT_PATH.fullmatch(request.path)
    if match is None:  # pragma: no cover - the route pattern already matched
        raise EdlinkError(404, "NOT_FOUND", f"no such resource: {request.path}")
    event_id = match.group("event_id")
    if not _UUID.fullmatch(event_id):
        raise EdlinkError(400, "INVALID_UUID", f"{event_id!r} is not a UUID")
    graph = context.graph
    now = graph.now_ms()
    with graph.locked():
        position = graph.position(event_id)
        if position is None or position < graph.retained_from(now):
            raise EdlinkError(400, "NOT_FOUND", f"no event {event_id!r}")
        (item,) = graph.event_bodies(position, position + 1)
    request_id = str(uuid.uuid4()).encode()
    return b'{"$data":' + item + b',"$request":"' + request_id + b'"}'


def handle_list(context: _Context, request: Request) -> bytes:
    match = GRAPH_PATH.fullmatch(request.path)
    if match is None:  # pragma: no cover - the route pattern already matched
        raise EdlinkError(404, "NOT_FOUND", f"no such resource: {request.path}")
    kind = _KIND_OF[match.group("plural")]
    query = request.query
    first = _count(query, "$first") or DEFAULT_FIRST
    graph = context.graph
    now = graph.now_ms()
    after: str | None = None
    raw_filter = query.get("$filter")
    token = query.get("$cursor")
    if token is not None:
        # The cursor carries the filter too, so $next alone reproduces the query.
        state = context.cursors.read(token, kind, now)
        cursor_after, cursor_filter = state.get("a"), state.get("f")
        if not isinstance(cursor_after, str) or not isinstance(cursor_filter, str | None):
            raise _invalid_cursor("the cursor is malformed")
        after, raw_filter = cursor_after, cursor_filter
    accept = parse_filter(kind, raw_filter)
    items: list[bytes] = []
    last_id: str | None = None
    more = False
    with graph.locked():
        ids = graph.live_ids(kind)
        # Keyset paging by id: stable while objects come and go between pages.
        for id_ in ids[0 if after is None else bisect_right(ids, after) :]:
            data, body = graph.current(kind, id_)
            if accept is not None and not accept(data):
                continue
            if len(items) == first:
                more = True
                break
            items.append(body)
            last_id = id_
    next_url = None
    if more:
        cursor = context.cursors.issue(kind, {"a": last_id, "f": raw_filter}, now)
        next_url = context.next_url(request, first, cursor)
    return _page(items, next_url)


def _serve(
    context: _Context,
    integration: Integration,
    handler: Callable[[_Context, Request], bytes],
    request: Request,
) -> Response:
    if request.method not in ("GET", "HEAD"):
        message = f"{request.method} is not allowed here"
        return edlink_error(405, "METHOD_NOT_ALLOWED", message, {"Allow": "GET, HEAD"})
    refused = integration.refusal(request.headers)
    if refused is not None:
        return refused.response()
    try:
        body = handler(context, request)
    except EdlinkError as exc:
        return exc.response()
    return Response(200, b"" if request.method == "HEAD" else body)


def edlink_routes(
    graph: EdlinkGraph,
    integration: Integration,
    *,
    base_url: Callable[[], str],
    before: Callable[[], None] | None = None,
) -> list[Route]:
    """The ``edlink-events`` and ``edlink-graph`` routes. ``base_url`` serves ``$next`` when
    a request has no Host header; ``before`` runs first on each request (growth)."""
    # Derived, not random: the same simulator setup issues the same cursors.
    seed = integration.token.encode()
    secret = hashlib.sha256(b"edsync-simulator-edlink-cursor:" + seed).digest()
    context = _Context(graph, Cursors(secret), base_url)

    def route(handler: Callable[[_Context, Request], bytes]) -> Callable[[Request], Response]:
        def serve(request: Request) -> Response:
            if before is not None:
                before()
            return _serve(context, integration, handler, request)

        return serve

    return [
        Route("edlink-events", EVENTS_PATH, route(handle_events)),
        Route("edlink-events", EVENT_PATH, route(handle_event)),
        Route("edlink-graph", GRAPH_PATH, route(handle_list)),
    ]
