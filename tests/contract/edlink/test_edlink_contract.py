"""The product, and the simulator, against Edlink's documented payloads (payloads.py)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import Engine

from edsync.cli import main
from edsync.errors import (
    AuthError,
    EdsyncError,
    GapError,
    RefusedError,
    RetriableError,
)
from edsync.mirror import checkpoints
from edsync.model import Bounds, Cursor
from edsync.settings import Duration, HttpUrl, Secret
from edsync.sources.edlink import EdlinkSource, IntegrationStateError, Settings
from edsync_sim import Simulator
from tests.conftest import json_value, mirror_engine
from tests.contract.edlink.payloads import (
    ERRORS,
    LEGACY_EVENTS,
    OBJECTS,
    PARENT_ID,
    PLURALS,
    V2_EVENTS,
    Json,
    error_body,
    events_page,
    list_page,
)
from tests.contract.edlink.server import RecordedEdlink, fixed

TOKEN = "contract-edlink-token"
EVENTS = "/api/v2/graph/events"


@pytest.fixture
def edlink() -> Iterator[RecordedEdlink]:
    with RecordedEdlink() as server:
        yield server


def records(engine: Engine) -> dict[tuple[str, str], tuple[bool, dict[str, Any], str | None]]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT entity, entity_id, deleted, data, person_id FROM records "
            "WHERE source = 'edlink'"
        ).all()
    dialect = engine.dialect.name
    return {(e, i): (bool(d), json_value(dialect, data), p) for e, i, d, data, p in rows}


def serve_stream(server: RecordedEdlink, events: list[dict[str, Any]]) -> None:
    """The events once from the start; nothing after the last of them."""
    last = events[-1]["id"]

    def answer(query: Any) -> tuple[int, Any]:
        return 200, events_page([] if query.get("$after") == last else events)

    server.answers[EVENTS] = answer


# -- events: each target in the v2 shape, and the older shape --------------------------


def test_an_event_of_every_v2_target_is_mirrored(
    edlink: RecordedEdlink, edlink_config: Callable[..., Path]
) -> None:
    serve_stream(edlink, V2_EVENTS)
    path = edlink_config(edlink.url, 'retry_for = "1s"', token=TOKEN)
    assert main(["backfill", "-c", str(path)]) == 0
    assert main(["backfill", "-c", str(path)]) == 0  # and again: nothing new

    mirror = records(mirror_engine(path))
    assert len(mirror) == len(V2_EVENTS) == 9
    for event in V2_EVENTS:
        deleted, data, _ = mirror[event["target"], event["target_id"]]
        assert deleted is (event["type"] == "deleted")
        assert data == event["data"]
    assert mirror["person", OBJECTS["person"]["id"]][2] == OBJECTS["person"]["id"]
    assert mirror["enrollment", OBJECTS["enrollment"]["id"]][2] == OBJECTS["person"]["id"]
    checkpoint = checkpoints.load(mirror_engine(path), "edlink")
    assert checkpoint is not None
    assert checkpoint.cursor is not None
    assert checkpoint.cursor.value == V2_EVENTS[-1]["id"]
    assert checkpoint.events_total == 9


def test_events_of_the_older_shape_are_mirrored(
    edlink: RecordedEdlink, edlink_config: Callable[..., Path]
) -> None:
    serve_stream(edlink, LEGACY_EVENTS)
    path = edlink_config(edlink.url, 'retry_for = "1s"', token=TOKEN)
    assert main(["backfill", "-c", str(path)]) == 0

    mirror = records(mirror_engine(path))
    organization = LEGACY_EVENTS[0]["data"]["id"]
    assert set(mirror) == {
        ("organization", organization),
        ("term", LEGACY_EVENTS[1]["data"]["id"]),
        ("person", OBJECTS["person"]["id"]),
        ("enrollment", OBJECTS["enrollment"]["id"]),
    }
    # "organization.deleted" last: a tombstone keeping the object as it last was.
    assert mirror["organization", organization][:2] == (True, LEGACY_EVENTS[-1]["data"])
    assert mirror["person", OBJECTS["person"]["id"]][:2] == (False, OBJECTS["person"])
    assert mirror["enrollment", OBJECTS["enrollment"]["id"]][:2] == (False, OBJECTS["enrollment"])


# -- the list endpoints: a page of each kind --------------------------------------------


def test_a_list_page_of_every_kind_is_mirrored(
    edlink: RecordedEdlink, edlink_config: Callable[..., Path]
) -> None:
    for kind, plural in PLURALS.items():
        edlink.answers[f"/api/v2/graph/{plural}"] = fixed(200, list_page(kind))
    # People come in two pages: the first links the second with an absolute `$next`.
    parent = {**copy.deepcopy(OBJECTS["person"]), "id": PARENT_ID, "roles": ["parent"]}
    second = {"$data": [parent], "$request": list_page("person")["$request"]}

    def people(query: Any) -> tuple[int, Any]:
        if query.get("$cursor") == "page-2":
            return 200, second
        return 200, list_page("person", f"{edlink.url}/api/v2/graph/people?$cursor=page-2")

    edlink.answers["/api/v2/graph/people"] = people
    path = edlink_config(edlink.url, 'retry_for = "1s"', token=TOKEN)
    assert main(["backfill", "-c", str(path)]) == 0

    mirror = records(mirror_engine(path))
    expected = {(kind, obj["id"]): (False, obj) for kind, obj in OBJECTS.items()}
    expected["person", PARENT_ID] = (False, parent)
    assert {key: value[:2] for key, value in mirror.items()} == expected
    paths = [r.path for r in edlink.requests]
    assert paths.index("/api/v2/graph/districts") < paths.index("/api/v2/graph/agents")


# -- errors: every documented code, on the stream and on a list ---------------------------

CREDENTIAL = {
    "INVALID_TOKEN",
    "EXPIRED_TOKEN",
    "UNSHARED_TOKEN",
    "INVALID_PROVIDER_TOKEN",
    "NO_PERMISSION",
}
TRANSIENT = {"UNKNOWN", "INTERNAL"}
# SPEC 2.2: only these, and only for the stored `$after` id, say the cursor is refused.
CURSOR = {"INVALID_CURSOR", "NOT_FOUND", "INVALID_UUID"}
UNDOCUMENTED = "SOMETHING_NEW"  # a code Edlink may add: a source error, never a gap


def expected_error(status: int, codes: tuple[str, ...], *, stream: bool) -> type[EdsyncError]:
    """SPEC 2.2 as this test reads it, written out apart from the product's mapping."""
    if set(codes) & (CREDENTIAL | {"UNAUTHORIZED"}) or status in (401, 403):
        return AuthError
    if "INVALID_INTEGRATION_STATE" in codes:
        return IntegrationStateError
    if set(codes) & TRANSIENT:
        return RetriableError
    if stream and set(codes) & CURSOR:
        return GapError
    return RefusedError


CASES: list[tuple[int, tuple[str, ...]]] = [
    *((400, (code,)) for code in ERRORS),
    (400, ("UNAUTHORIZED",)),  # named by SPEC 2.2, not in errors.md
    (400, (UNDOCUMENTED,)),
    (401, ()),
    (403, ()),
    (400, ()),  # a 4xx with no code at all: not a gap either
    (404, ()),  # a wrong base_url, say: not a refused cursor
    (404, ("NOT_FOUND",)),
    (400, ("INVALID_CURSOR", "EXPIRED_TOKEN")),  # several at once: the token's wins
    (400, ("INVALID_CURSOR", "INVALID_INTEGRATION_STATE")),
]


def source_for(url: str) -> EdlinkSource:
    settings = Settings(
        name="edlink",
        kind="edlink",
        base_url=HttpUrl(url),
        token=Secret("EDLINK_TOKEN", TOKEN),
        retry_for=Duration(1.0),
        page_size=100,
    )
    return EdlinkSource(settings)


def refusal(status: int, codes: tuple[str, ...]) -> tuple[int, Any]:
    body: Json = error_body(*codes) if codes else {"$request": "r"}
    # An upstream quoting the refused token must not put it in our messages.
    body["echo"] = f"Bearer {TOKEN}"
    for error in body.get("$errors", []):
        error["message"] += f" (token {TOKEN})"
    return status, body


@pytest.mark.parametrize(("status", "codes"), CASES, ids=str)
@pytest.mark.usefixtures("fast_retries")
def test_each_documented_error_on_the_stream_maps_to_its_branch(
    edlink: RecordedEdlink, status: int, codes: tuple[str, ...]
) -> None:
    edlink.answers[EVENTS] = fixed(*refusal(status, codes))
    source = source_for(edlink.url)
    try:
        with pytest.raises(EdsyncError) as caught:
            list(source.pages(Cursor("5e1a7c7e-0b6f-4d7e-8f57-4c0a3c1b0009", 9), Bounds()))
    finally:
        source.close()
    expected = expected_error(status, codes, stream=True)
    assert type(caught.value) is expected
    message = str(caught.value)
    assert "source 'edlink'" in message
    assert all(code in message for code in codes)
    assert TOKEN not in message
    if expected is AuthError:
        assert "EDLINK_TOKEN" in message
    retried = expected is RetriableError
    assert len(edlink.requests) == (5 if retried else 1)


@pytest.mark.parametrize(("status", "codes"), CASES, ids=str)
@pytest.mark.usefixtures("fast_retries")
def test_each_documented_error_on_a_list_maps_to_its_branch_and_is_never_a_gap(
    edlink: RecordedEdlink, status: int, codes: tuple[str, ...]
) -> None:
    edlink.answers["/api/v2/graph/schools"] = fixed(*refusal(status, codes))
    source = source_for(edlink.url)
    try:
        with pytest.raises(EdsyncError) as caught:
            list(source.snapshot())
    finally:
        source.close()
    assert type(caught.value) is expected_error(status, codes, stream=False)
    assert TOKEN not in str(caught.value)
    assert edlink.requests[0].path == "/api/v2/graph/districts"


@pytest.mark.parametrize("code", [*ERRORS, "UNAUTHORIZED", UNDOCUMENTED])
def test_a_refusal_of_the_stored_cursor_through_backfill(
    edlink: RecordedEdlink,
    edlink_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    code: str,
) -> None:
    """Each documented code (and an undocumented one) answering the stream after
    the stored id: only a refusal of that id is a gap, and only a gap resyncs;
    every other code fails the run naming the code, with no list request."""
    gap = resynced = code in CURSOR
    serve_stream(edlink, V2_EVENTS)
    path = edlink_config(edlink.url, 'retry_for = "1s"', token=TOKEN)
    assert main(["backfill", "-c", str(path)]) == 0
    engine = mirror_engine(path)
    before = checkpoints.load(engine, "edlink")
    # From now on the stored `$after` is refused; the lists still answer (empty).
    edlink.answers[EVENTS] = lambda query: (
        refusal(400, (code,)) if "$after" in query else (200, events_page([]))
    )
    first = len(edlink.requests)
    capsys.readouterr()

    status = main(["backfill", "-c", str(path)])

    later = edlink.requests[first:]
    lists = [r for r in later if r.path != EVENTS or "$last" in r.query]
    assert bool(lists) is resynced
    after = checkpoints.load(engine, "edlink")
    assert after is not None
    assert before is not None
    if gap:
        # resync = "auto" (the default): the snapshot ran and the stream goes on
        # after the head noted before it; the gap is resolved.
        assert status == 0
        assert "gap_detected" in capsys.readouterr().err
        assert after.gap is None
    else:
        assert status == 1
        assert "gap_detected" not in capsys.readouterr().err
        assert after.gap is None
        assert after.cursor == before.cursor
        assert code in (after.last_error or "")


# -- the simulator speaks the same shapes --------------------------------------------------


def json_type(value: object) -> str:
    for name, kind in (
        ("null", type(None)),
        ("boolean", bool),
        ("number", int | float),
        ("string", str),
        ("array", list),
        ("object", dict),
    ):
        if isinstance(value, kind):
            return name
    raise AssertionError(f"not JSON: {value!r}")


def shape_problems(where: str, documented: object, served: object) -> list[str]:
    """Where ``served`` differs from ``documented`` in keys or JSON types (null fits any)."""
    if documented is None or served is None:
        return []
    if json_type(documented) != json_type(served):
        return [f"{where}: {json_type(served)}, documented {json_type(documented)}"]
    if isinstance(documented, dict) and isinstance(served, dict) and documented and served:
        problems = []
        if set(documented) != set(served):
            extra, missing = set(served) - set(documented), set(documented) - set(served)
            problems.append(f"{where}: extra {sorted(extra)}, missing {sorted(missing)}")
        for key in set(documented) & set(served):
            problems += shape_problems(f"{where}.{key}", documented[key], served[key])
        return problems
    if isinstance(documented, list) and isinstance(served, list) and documented and served:
        return shape_problems(f"{where}[]", documented[0], served[0])
    return []


@pytest.fixture(scope="module")
def simulated() -> tuple[dict[str, list[Any]], list[Any], list[Any]]:
    """Every list, and the first 300 events in either shape, as the simulator serves them."""
    pages: dict[str, list[Any]] = {}
    streams: list[list[Any]] = []
    for legacy in (False, True):
        with (
            Simulator(events=1, edlink_people=80, edlink_legacy_shape=legacy) as sim,
            httpx.Client(
                base_url=sim.url, headers={"Authorization": f"Bearer {sim.edlink_token}"}
            ) as http,
        ):
            streams.append(http.get(EVENTS, params={"$first": 300}).json()["$data"])
            if not legacy:
                for kind, plural in PLURALS.items():
                    reply = http.get(f"/api/v2/graph/{plural}", params={"$first": 10000})
                    pages[kind] = reply.json()["$data"]
    return pages, streams[0], streams[1]


@pytest.mark.parametrize("kind", list(PLURALS))
def test_simulator_objects_have_the_documented_shape(
    simulated: tuple[dict[str, list[Any]], list[Any], list[Any]], kind: str
) -> None:
    served = simulated[0][kind]
    assert served
    documented = OBJECTS[kind]
    for obj in served:
        assert set(obj) == set(documented), (kind, set(obj) ^ set(documented))
        assert shape_problems(kind, documented, obj) == []


def test_simulator_events_have_the_documented_shape(
    simulated: tuple[dict[str, list[Any]], list[Any], list[Any]],
) -> None:
    _, modern, legacy = simulated
    assert {e["target"] for e in modern} == set(PLURALS)
    for event in modern:
        documented = next(e for e in V2_EVENTS if e["target"] == event["target"])
        assert list(event) == list(documented)
        assert shape_problems("event", documented, event) == []
    for event in legacy:
        assert list(event) == list(LEGACY_EVENTS[0])
        entity, _, op = event["type"].partition(".")
        assert entity in PLURALS
        assert op in ("created", "updated", "deleted")
        assert shape_problems(event["type"], OBJECTS[entity], event["data"]) == []


def test_simulator_errors_have_the_documented_envelope() -> None:
    with Simulator(events=1, edlink_people=5) as sim:
        reply = httpx.get(sim.url + EVENTS, headers={"Authorization": "Bearer wrong"})
        sim.edlink_integration.token_expired = True
        expired = httpx.get(
            sim.url + EVENTS, headers={"Authorization": f"Bearer {sim.edlink_token}"}
        )
    documented = error_body("INVALID_TOKEN")
    for got, code in ((reply, "INVALID_TOKEN"), (expired, "EXPIRED_TOKEN")):
        assert got.status_code == 400
        body = orjson.loads(got.content)
        assert [e["code"] for e in body["$errors"]] == [code]
        assert shape_problems("error", documented["$errors"][0], body["$errors"][0]) == []


def test_simulator_accepts_the_documented_filters() -> None:
    """guides/v2.0/filtering-results.md: its examples, `in` with one comma-separated string."""
    with (
        Simulator(events=1, edlink_people=80) as sim,
        httpx.Client(
            base_url=sim.url, headers={"Authorization": f"Bearer {sim.edlink_token}"}
        ) as http,
    ):
        people = http.get("/api/v2/graph/people", params={"$first": 10000}).json()["$data"]
        names = sorted({p["last_name"] for p in people})[:2]
        filters = {
            "starts with": {"first_name": [{"operator": "starts with", "value": "z"}]},
            "in": {"last_name": [{"operator": "in", "value": ",".join(names)}]},
            "not in": {"last_name": [{"operator": "not in", "value": ",".join(names)}]},
        }
        got = {}
        for name, spec in filters.items():
            reply = http.get(
                "/api/v2/graph/people",
                params={"$filter": orjson.dumps(spec).decode(), "$first": 10000},
            )
            assert reply.status_code == 200, reply.text
            got[name] = {p["id"] for p in reply.json()["$data"]}
    assert got["starts with"] == {p["id"] for p in people if p["first_name"].lower()[0] == "z"}
    assert got["in"] == {p["id"] for p in people if p["last_name"] in names}
    assert got["not in"] == {p["id"] for p in people if p["last_name"] not in names}
    assert got["in"]
