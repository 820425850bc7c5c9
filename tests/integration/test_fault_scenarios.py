"""Fault scenarios against a real journal that misbehaves on cue (``tests/faultserver.py``).

Every scenario runs a real backfill and checks the exact mirror it leaves —
the ledger (event id, status), the records (entity, id, deleted, status) and
the cursor — against a model of the journal and against the mirror a clean
run over the same events makes (every table, run timestamps aside).

Transient faults must end identical to the clean run with exit 0; persistent
ones exit 1 with the cursor at the last good page and an error naming the
source; invalid events are quarantined and the feed goes on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, inspect

from edsync.cli import main
from edsync.config import load_config
from edsync.http import MAX_BODY_BYTES, HttpClient
from edsync.mirror import checkpoints
from edsync.mirror.checkpoints import Checkpoint
from edsync.mirror.db import create_mirror_engine, ensure_schema
from edsync.mirror.sql import adapt
from tests.conftest import DREAMAPPLY_KEY, RUN_TIMESTAMPS, json_value, mirror_snapshot
from tests.faultserver import (
    API_KEY,
    Body,
    Endless,
    Fault,
    FaultServer,
    Hang,
    HugeLength,
    Overlap,
    Reset,
    Status,
    Truncated,
    make_events,
    raw_event,
    resources,
)

SOURCE = "dreamapply"
COUNT = 60  # six pages of PAGE, then the empty page that ends a drain
PAGE = 10
RETRY_FOR = 2.0
LAST_GOOD = 30  # persistent faults strike the page after this id

Ledger = set[tuple[str, str]]
Records = set[tuple[str, str, bool, str | None]]


# -- the harness ----------------------------------------------------------------------------


@dataclass
class Harness:
    """Fault servers, config files and mirrors of one test; all closed at its end."""

    tmp_path: Path
    monkeypatch: pytest.MonkeyPatch
    mirror_url: Callable[[str], str]
    servers: list[FaultServer] = field(default_factory=list)
    engines: list[Engine] = field(default_factory=list)

    def serve(self, events: Mapping[int, Any], **kwargs: Any) -> FaultServer:
        server = FaultServer(events, **kwargs).start()
        self.servers.append(server)
        assert server.ready.is_set()
        return server

    def config(
        self,
        url: str,
        *,
        db: str = "mirror.db",
        name: str = "edsync.toml",
        extra: str = "",
        source: str = SOURCE,
        key_env: str = "DREAMAPPLY_API_KEY",
        log: str = 'format = "json"',
    ) -> Path:
        path = self.tmp_path / name
        path.write_text(
            textwrap.dedent(
                f"""
                [mirror]
                url = "{self.mirror_url(db)}"

                [log]
                {log}
                """
            )
            + source_table(source, url, key_env)
            + textwrap.dedent(extra)
        )
        return path

    def engine(self, path: Path) -> Engine:
        engine = create_mirror_engine(load_config(path).mirror)
        ensure_schema(engine, auto_migrate=True)
        self.engines.append(engine)
        return engine

    def clean(self, events: Mapping[int, Any], *, extra: str = "") -> Engine:
        """The mirror of a fault-free backfill over ``events``, in a file of its own."""
        server = self.serve(events)
        n = len(self.servers)
        path = self.config(server.url, db=f"clean-{n}.db", name=f"clean-{n}.toml", extra=extra)
        assert backfill(path) == 0
        assert server.pending_faults == 0
        return self.engine(path)

    def close(self) -> None:
        for engine in self.engines:
            engine.dispose()
        for server in self.servers:
            server.stop()


def source_table(name: str, url: str, key_env: str, kind: str = "dreamapply") -> str:
    return textwrap.dedent(
        f"""
        [sources.{name}]
        kind = "{kind}"
        base_url = "{url}"
        api_key_env = "{key_env}"
        max_requests_per_minute = 0
        snapshot = false
        page_size = {PAGE}
        timeout = "500ms"
        retry_for = "{RETRY_FOR:g}s"
        """
    )


@pytest.fixture
def harness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mirror_url: Callable[[str], str]
) -> Iterator[Harness]:
    monkeypatch.setenv("DREAMAPPLY_API_KEY", API_KEY)
    h = Harness(tmp_path, monkeypatch, mirror_url)
    yield h
    h.close()


def backfill(path: Path, *args: str) -> int:
    return main(["backfill", "-c", str(path), *args])


# -- what the mirror should be --------------------------------------------------------------


def model(
    events: Mapping[int, Any],
    quarantined: Collection[int] = (),
    served: Mapping[int, Any] | None = None,
) -> tuple[Ledger, Records, str]:
    """Ledger, records and cursor a correct mirror holds after ``events`` in id order.

    The journal is a notification feed (SPEC 2.1): every event is ledgered,
    and the records are the resources its applied events name as the server
    answers them when they are read (``faultserver.resources`` over its whole
    journal, ``served``): applicants, live applications and their offers
    (status: the offer type's name, as API v3 writes it); an application that
    answers 404 (closed) is a deleted record.
    """
    ledger: Ledger = set()
    named: set[str] = set()
    for event_id in sorted(events):
        if event_id in quarantined:
            ledger.add((str(event_id), "quarantined"))
            continue
        ledger.add((str(event_id), "applied"))
        application = events[event_id].get("application")
        if application is not None:
            named.add(application.rstrip("/").rsplit("/", 1)[1])
    live = resources(events if served is None else served)
    records: Records = set()
    people = {
        link.rstrip("/").rsplit("/", 1)[1]
        for event_id, body in events.items()
        if event_id not in quarantined and isinstance(link := body.get("applicant"), str)
    }
    for (kind, id_), state in live.items():
        if kind == "applicants":
            if str(id_) in people:
                records.add(("applicant", str(id_), False, None))
            continue
        if str(id_) not in named:
            continue
        records.add(("application", str(id_), False, None))
        records.update(
            ("offer", key, False, offer["type"]) for key, offer in state["offers"].items()
        )
    records.update(
        ("application", app, True, None) for app in named if ("applications", int(app)) not in live
    )
    return ledger, records, str(max(events))


def ledger_of(engine: Engine, source: str = SOURCE) -> Ledger:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            adapt(conn, "SELECT event_id, status FROM events WHERE source = ?"), (source,)
        ).all()
    assert len(rows) == len(set(rows)), "an event is in the ledger twice"
    return {(event_id, status) for event_id, status in rows}


def records_of(engine: Engine, source: str = SOURCE) -> Records:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            adapt(conn, "SELECT entity, entity_id, deleted, data FROM records WHERE source = ?"),
            (source,),
        ).all()
    dialect = engine.dialect.name
    return {(e, i, bool(d), json_value(dialect, data).get("status")) for e, i, d, data in rows}


def checkpoint_of(engine: Engine, source: str = SOURCE) -> Checkpoint:
    checkpoint = checkpoints.load(engine, source)
    assert checkpoint is not None
    return checkpoint


def cursor_of(engine: Engine, source: str = SOURCE) -> str | None:
    cursor = checkpoint_of(engine, source).cursor
    return cursor.value if cursor is not None else None


def source_rows(engine: Engine, source: str) -> dict[str, list[tuple[Any, ...]]]:
    """One source's rows of records, events and checkpoints, run timestamps aside."""
    out = {}
    with engine.connect() as conn:
        for table in ("records", "events", "checkpoints"):
            result = conn.exec_driver_sql(
                adapt(conn, f"SELECT * FROM {table} WHERE source = ?"), (source,)
            )
            keep = [i for i, c in enumerate(result.keys()) if c not in RUN_TIMESTAMPS[table]]
            out[table] = sorted((tuple(row[i] for i in keep) for row in result), key=repr)
    return out


def assert_exact_mirror(
    engine: Engine, events: Mapping[int, Any], clean: Engine, quarantined: Collection[int] = ()
) -> None:
    """The model's ledger, records and cursor, and every table equal to the clean run's."""
    ledger, records, cursor = model(events, quarantined)
    assert ledger_of(engine) == ledger
    assert records_of(engine) == records
    assert cursor_of(engine) == cursor
    checkpoint = checkpoint_of(engine)
    assert (checkpoint.events_total, checkpoint.last_error) == (len(events), None)
    assert mirror_snapshot(engine) == mirror_snapshot(clean)


def assert_retried_same_page(server: FaultServer) -> None:
    """Each faulted request was asked again, for the same page: the cursor never moved."""
    asked = server.journal_requests(method=None)
    for i, request in enumerate(asked):
        if request.fault is not None:
            again = next(r for r in asked[i + 1 :] if r.method == request.method)
            assert again.query.get("bySince") == request.query.get("bySince")


# -- the clean run is what the model says ---------------------------------------------------


def test_the_clean_run_is_the_model(harness: Harness) -> None:
    events = make_events(COUNT)
    clean = harness.clean(events)
    ledger, records, cursor = model(events)
    assert ledger_of(clean) == ledger
    assert records_of(clean) == records
    assert cursor_of(clean) == cursor == str(COUNT)
    # The journal exercises every branch: closed, reverted, statuses.
    assert {deleted for _, _, deleted, _ in records} == {False, True}
    assert {"Enrolled", "Accepted"} <= {status for *_, status in records}
    assert any(e["event"] == "Application was reverted" for e in events.values())


# -- transient faults: retried, identical to the clean run, exit 0 --------------------------

TRANSIENT: dict[str, Callable[[], list[Fault]]] = {
    "429 without Retry-After": lambda: [Status(status=429, since="21")],
    "500": lambda: [Status(status=500, since="21")],
    "502 with Connection: close": lambda: [Status(status=502, since="21", close=True)],
    "503 with Retry-After": lambda: [Status(status=503, since="21", retry_after="1")],
    "503 on the HEAD": lambda: [Status(status=503, method="HEAD")],
    "read timeout": lambda: [Hang(since="21")],
    "read timeout on the HEAD": lambda: [Hang(method="HEAD")],
    "reset mid-body": lambda: [Reset(since="21")],
    "truncated JSON": lambda: [Truncated(since="21")],
    "not the journal envelope": lambda: [Body(since="21", body=b'{"events": []}')],
    "oversized Content-Length": lambda: [HugeLength(since="21")],
    "a stale page of ids already applied": lambda: [Overlap(since="21", count=PAGE, only=True)],
    "a storm over every page": lambda: [
        Status(status=429),  # the first page, before any cursor
        Reset(),
        Status(status=500, since="11"),
        Truncated(since="21"),
        Hang(since="31"),
        HugeLength(since="31"),
        Status(status=502, since="41"),
        Status(status=503, since="51", retry_after="1"),
        Reset(since="61"),  # the empty page that ends the drain
    ],
}


@pytest.mark.parametrize("script", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_a_transient_fault_ends_identical_to_a_clean_run(
    harness: Harness, script: Callable[[], list[Fault]], fast_retries: None
) -> None:
    events = make_events(COUNT)
    clean = harness.clean(events)
    server = harness.serve(events)
    faults = server.script(*script())
    path = harness.config(server.url)

    assert backfill(path) == 0

    assert all(f.fired.is_set() for f in faults)
    assert server.pending_faults == 0
    assert_retried_same_page(server)
    assert_exact_mirror(harness.engine(path), events, clean)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_waited_at_least_that_long(harness: Harness, status: int) -> None:
    events = make_events(COUNT)
    clean = harness.clean(events)
    server = harness.serve(events)
    server.script(Status(status=status, since="31", retry_after="1"))
    path = harness.config(server.url)

    assert backfill(path) == 0

    gets = server.journal_requests()
    (faulted,) = [i for i, r in enumerate(gets) if r.fault]
    refused, again = gets[faulted], gets[faulted + 1]
    assert again.query["bySince"] == refused.query["bySince"] == "31"
    assert again.at - refused.at >= 1.0
    assert_exact_mirror(harness.engine(path), events, clean)


def test_the_default_body_limit_cuts_an_endless_body(
    harness: Harness, fast_retries: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """One never-ending chunked body, read up to the real 64 MiB limit, then the page again."""
    events = make_events(COUNT)
    clean = harness.clean(events)
    server = harness.serve(events)
    (endless,) = server.script(Endless(since="21", chunk=1024 * 1024))
    path = harness.config(server.url)

    assert backfill(path) == 0

    assert endless.fired.is_set()
    assert f"response exceeds {MAX_BODY_BYTES} bytes" in capsys.readouterr().err
    assert_retried_same_page(server)
    assert_exact_mirror(harness.engine(path), events, clean)


def test_duplicates_across_page_boundaries_are_applied_once(harness: Harness) -> None:
    events = make_events(COUNT + PAGE)
    first, later = dict(list(events.items())[:COUNT]), events
    clean_first, clean_later = harness.clean(first), harness.clean(later)
    server = harness.serve(first)
    path = harness.config(server.url)
    server.script(
        Overlap(since="21", count=3),  # the previous page's last ids again
        Overlap(since="31", count=PAGE + 2),  # more than a page of them
        Overlap(since="41", count=1),
    )

    assert backfill(path) == 0
    assert server.pending_faults == 0
    engine = harness.engine(path)
    assert_exact_mirror(engine, first, clean_first)

    # The journal grows; the next run's first page repeats what the last one applied.
    server.events.update(later)
    server.script(Overlap(since=str(COUNT + 1), count=5))
    assert backfill(path) == 0
    assert server.pending_faults == 0
    assert_exact_mirror(engine, later, clean_later)


# -- persistent faults: exit 1, the cursor at the last good page ----------------------------


def test_a_malformed_page_that_outlasts_retry_for_exits_1_at_the_last_good_page(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real time: retried with backoff for retry_for (2 s), then the poll fails."""
    events = make_events(COUNT)
    clean = harness.clean({i: e for i, e in events.items() if i <= LAST_GOOD})
    server = harness.serve(events)
    server.script(Truncated(since=str(LAST_GOOD + 1), times=None))
    path = harness.config(server.url)

    assert backfill(path) == 1

    reason = "invalid JSON in response"
    err = capsys.readouterr().err
    assert f"edsync: source {SOURCE!r} failed: source {SOURCE!r}: {reason}" in err
    assert_failed_at_last_good_page(harness.engine(path), events, clean, reason)
    gets = server.journal_requests()
    retried = [r for r in gets if r.fault]
    assert len(retried) >= 2, "retried within retry_for"
    assert gets[gets.index(retried[0]) :] == retried, "nothing asked past the bad page"
    assert {r.query["bySince"] for r in retried} == {str(LAST_GOOD + 1)}
    span = retried[-1].at - retried[0].at
    # Backoff starts at 0.5 s + up to 1 s of jitter, so the attempts spread over
    # retry_for; stamina stops once it has passed, one last backoff may overshoot.
    assert 0.5 <= span <= RETRY_FOR + 3.5


PERSISTENT: dict[str, tuple[Callable[[], Fault], str]] = {
    "not the journal envelope": (
        lambda: Body(since="31", times=None, body=b'"down for maintenance"'),
        "journal page is not an object of events",
    ),
    "oversized Content-Length": (
        lambda: HugeLength(since="31", times=None),
        f"response of {1 << 40} bytes is too large",
    ),
    "read timeouts": (lambda: Hang(since="31", times=None), "timed out (ReadTimeout)"),
    "a stale page of ids already applied": (
        lambda: Overlap(since="31", count=PAGE, only=True, times=None),
        "journal page after id 30 holds only events already applied",
    ),
    "reset mid-body": (lambda: Reset(since="31", times=None), "connection failed"),
    "503": (lambda: Status(status=503, since="31", times=None), "HTTP 503"),
}


@pytest.mark.parametrize(("fault", "reason"), PERSISTENT.values(), ids=PERSISTENT.keys())
def test_a_persistent_fault_exits_1_at_the_last_good_page(
    harness: Harness,
    fault: Callable[[], Fault],
    reason: str,
    capsys: pytest.CaptureFixture[str],
    fast_retries: None,
) -> None:
    """Every attempt stamina allows (5 in its test mode) meets the fault."""
    events = make_events(COUNT)
    clean = harness.clean({i: e for i, e in events.items() if i <= LAST_GOOD})
    server = harness.serve(events)
    server.script(fault())
    path = harness.config(server.url)

    assert backfill(path) == 1

    err = capsys.readouterr().err
    assert f"edsync: source {SOURCE!r} failed: source {SOURCE!r}: {reason}" in err
    assert_failed_at_last_good_page(harness.engine(path), events, clean, reason)
    gets = server.journal_requests()
    assert [(r.query.get("bySince"), r.fault) for r in gets[-5:]] == [("31", fault().name)] * 5
    assert gets[-6].fault is None


def assert_failed_at_last_good_page(
    engine: Engine, events: Mapping[int, Any], clean: Engine, reason: str
) -> None:
    # The pages before the fault were ledgered, and what they named was read
    # (from the server as it is now, its whole journal): a feed stuck on one
    # page does not hold the records back.
    ledger, records, _ = model({i: e for i, e in events.items() if i <= LAST_GOOD}, served=events)
    assert ledger_of(engine) == ledger
    assert records_of(engine) == records
    assert mirror_snapshot(engine)["events"] == mirror_snapshot(clean)["events"]
    checkpoint = checkpoint_of(engine)
    assert checkpoint.cursor is not None
    assert (checkpoint.cursor.value, checkpoint.cursor.position) == (str(LAST_GOOD), LAST_GOOD)
    assert (checkpoint.events_total, checkpoint.consecutive_failures) == (LAST_GOOD, 1)
    assert checkpoint.last_error is not None
    assert f"source {SOURCE!r}" in checkpoint.last_error
    assert reason in checkpoint.last_error


def test_an_endless_body_fails_at_the_size_limit_with_the_cursor_kept(
    harness: Harness,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fast_retries: None,
) -> None:
    """The limit made small (HttpClient's own default), so each attempt costs 256 KiB."""
    limit = 256 * 1024
    assert HttpClient.__init__.__kwdefaults__ is not None
    monkeypatch.setitem(HttpClient.__init__.__kwdefaults__, "max_body", limit)
    events = make_events(COUNT)
    clean = harness.clean({i: e for i, e in events.items() if i <= LAST_GOOD})
    server = harness.serve(events)
    server.script(Endless(since="31", times=None))
    path = harness.config(server.url)

    assert backfill(path) == 1

    reason = f"response exceeds {limit} bytes"
    assert f"source {SOURCE!r} failed: source {SOURCE!r}: {reason}" in capsys.readouterr().err
    assert_failed_at_last_good_page(harness.engine(path), events, clean, reason)
    assert len([r for r in server.journal_requests() if r.fault == "Endless"]) == 5


@pytest.mark.parametrize(
    "key",
    ["100000000000000000000", "\u0663\u0661", "\u00b2"],
    ids=["beyond 64 bits", "arabic-indic digits", "superscript two"],
)
def test_a_journal_key_that_is_no_event_id_is_a_malformed_page_not_a_crash(
    harness: Harness, key: str, fast_retries: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: ``key.isdigit()`` let these through to ``int()`` and SQLite
    (OverflowError, ValueError: tracebacks) or applied "٣١" as event 31."""
    events = make_events(COUNT)
    clean = harness.clean({i: e for i, e in events.items() if i <= LAST_GOOD})
    server = harness.serve(events)
    body = orjson.dumps(
        {key: raw_event("Application was edited", application="/api/applications/1")}
    )
    server.script(Body(since="31", times=None, body=body))
    path = harness.config(server.url)

    assert backfill(path) == 1

    reason = f"journal key {key!r} is not an id"
    assert reason in capsys.readouterr().err
    assert_failed_at_last_good_page(harness.engine(path), events, clean, reason)


# -- bad events: quarantined with their reason, the feed goes on ----------------------------

INVALID: dict[int, tuple[Any, str]] = {
    19: ("not an object", "event is not an object but str"),
    20: (["a", "list"], "event is not an object but list"),  # the last of a page...
    21: (raw_event(applicant="/api/applicants/1"), "event has no `event` name"),  # ...the next
    35: (
        {"event": "Application was edited", "application": "/api/applications/1"},
        "timestamp missing or not a string: None",
    ),
    # No offer link, and no application or applicant to read (SPEC 2.1).
    36: (
        raw_event('Offer was edited: "Enrolled"', course="/api/courses/1"),
        "'Offer was edited: \"Enrolled\"' names no offer, application or applicant to read",
    ),
    37: (None, "event is not an object but NoneType"),
    50: ({"event": 42, "logged": "2026-03-01T09:00:00+00:00"}, "event has no `event` name"),
}


def test_invalid_events_are_quarantined_with_reasons_and_the_feed_goes_on(
    harness: Harness, fast_retries: None, capsys: pytest.CaptureFixture[str]
) -> None:
    events: dict[int, Any] = make_events(COUNT)
    events |= {event_id: body for event_id, (body, _) in INVALID.items()}
    clean = harness.clean(events)
    server = harness.serve(events)
    server.script(Truncated(since="21"), Reset(since="31"))  # faults on the pages that hold them
    path = harness.config(server.url)

    assert backfill(path) == 0

    engine = harness.engine(path)
    assert_exact_mirror(engine, events, clean, quarantined=INVALID)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT event_id, reason, payload FROM events WHERE status = 'quarantined'"
        ).all()
    assert {int(i): (json_value(engine.dialect.name, p), r) for i, r, p in rows} == INVALID
    capsys.readouterr()
    assert main(["status", "-c", str(path), "--json"]) == 0
    (status,) = orjson.loads(capsys.readouterr().out)["sources"]
    assert (status["cursor"], status["events_total"], status["quarantined"]) == (
        str(COUNT),
        COUNT,
        len(INVALID),
    )


# -- refused credentials: that source stops, named; the others go on ------------------------


@pytest.mark.parametrize("when", ["wrong key", "key revoked mid-drain"])
def test_a_401_on_one_source_leaves_the_healthy_one_fully_mirrored(
    harness: Harness,
    make_simulator: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    when: str,
) -> None:
    sim = make_simulator(events=300)
    events = make_events(COUNT)
    locked = harness.serve(events)
    if when == "wrong key":
        monkeypatch.setenv("LOCKED_KEY", "not-the-key")
    else:
        monkeypatch.setenv("LOCKED_KEY", API_KEY)
        locked.script(Status(status=401, since="31", times=None))
    monkeypatch.setenv("SIM_KEY", DREAMAPPLY_KEY)
    both = harness.config(locked.url, source="locked", key_env="LOCKED_KEY")
    with both.open("a") as file:
        file.write(source_table("healthy", sim.url, "SIM_KEY"))
    alone = harness.config(
        sim.url, db="alone.db", name="alone.toml", source="healthy", key_env="SIM_KEY"
    )

    assert backfill(both) == 1

    err = capsys.readouterr().err
    assert "edsync: source 'locked' failed: source 'locked': HTTP 401, credentials refused" in err
    assert "source 'healthy' failed" not in err
    # A refusal is not retried: one request met it, and none followed.
    refused = [r for r in locked.requests if r.fault or when == "wrong key"]
    assert len(refused) == 1
    assert locked.requests[-1] == refused[0]
    engine = harness.engine(both)
    locked_checkpoint = checkpoint_of(engine, "locked")
    assert "HTTP 401" in (locked_checkpoint.last_error or "")
    if when == "wrong key":
        assert ledger_of(engine, "locked") == set()
        assert locked_checkpoint.cursor is None
    else:
        assert (
            ledger_of(engine, "locked")
            == model({i: e for i, e in events.items() if i <= LAST_GOOD})[0]
        )
        assert cursor_of(engine, "locked") == str(LAST_GOOD)
    # The healthy source, drained after the failing one, is exactly what it is alone.
    assert backfill(alone) == 0
    assert cursor_of(engine, "healthy") == "300"
    assert len(ledger_of(engine, "healthy")) == 300
    assert source_rows(engine, "healthy") == source_rows(harness.engine(alone), "healthy")


# -- secrets never leak ---------------------------------------------------------------------

DA_SECRET = "sekrit-da-7Qz2Kp"
ED_SECRET = "sekrit-ed-9Wx4Lm"
LH_SECRET = "sekrit-lh-3Rt8Vn"
CRASH_SECRET = "sekrit-da-\u00e9Zq81"  # no HTTP header can carry it
SECRETS = (DA_SECRET, ED_SECRET, LH_SECRET, CRASH_SECRET)


def assert_no_secret(text: str | bytes, where: str) -> None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for secret in SECRETS:
        assert secret not in text, f"{secret} leaked into {where}"
    assert "sekrit" not in text, f"part of a secret leaked into {where}"


def test_secrets_never_appear_in_output_status_or_the_mirror(
    harness: Harness,
    make_simulator: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fast_retries: None,
    backend: str,
) -> None:
    env = {"DREAMAPPLY_API_KEY": DA_SECRET, "EDLINK_TOKEN": ED_SECRET, "LH_KEY": LH_SECRET}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # The key is right until the journal revokes it mid-drain, quoting it back.
    server = harness.serve(make_events(COUNT), api_key=DA_SECRET)
    sim = make_simulator(events=20)  # Edlink there refuses ED_SECRET
    extra = f"""
        [sources.edlink]
        kind = "edlink"
        base_url = "{sim.url}"
        token_env = "EDLINK_TOKEN"

        [sinks.hub]
        kind = "learninghub"
        base_url = "{sim.url}"
        program_id = "FOO"
        user_id = "edsync"
        api_key_env = "LH_KEY"
    """
    path = harness.config(server.url, extra=extra, log='level = "debug"')
    outputs: list[tuple[str, str]] = []

    def run(label: str, *argv: str) -> int:
        code = main(list(argv))
        out, err = capsys.readouterr()
        outputs.append((f"{label}: stdout", out))
        outputs.append((f"{label}: stderr", err))
        return code

    # Records come from reading what the journal named, which a refused key
    # never gets to: a first run up to the fault writes some, to be checked too.
    first = ("backfill", "-c", str(path), "--source", SOURCE, "--until", "20")
    assert run("backfill up to the fault", *first) == 0
    server.script(Status(status=401, since="21", times=None, echo_credentials=True))
    assert run("backfill, 401 quoting the key", "backfill", "-c", str(path)) == 1
    server.clear_faults()
    server.script(Status(status=503, times=None, echo_credentials=True))
    assert run("backfill, 503s quoting the key", "backfill", "-c", str(path)) == 1
    server.clear_faults()
    server.script(Status(status=500, method="HEAD", echo_credentials=True))
    assert run("check", "check", "-c", str(path)) == 1
    assert run("status", "status", "-c", str(path), "--json") == 0
    status = orjson.loads(outputs[-2][1])
    assert "HTTP 503" in status["sources"][0]["last_error"]
    # Edlink refuses a wrong token with 400 INVALID_TOKEN (api/v2.0/responses/errors.md).
    assert "400 INVALID_TOKEN" in status["sources"][1]["last_error"]
    assert "EDLINK_TOKEN" in status["sources"][1]["last_error"]

    bad = harness.tmp_path / "bad.toml"
    bad.write_text(path.read_text().replace(f"page_size = {PAGE}", "page_size = 0", 1))
    assert run("config error elsewhere", "backfill", "-c", str(bad)) == 78
    assert "sources.dreamapply.page_size" in outputs[-1][1]
    typo = harness.tmp_path / "typo.toml"
    typo.write_text(path.read_text().replace("token_env", "tokn_env"))
    assert run("config key misspelt", "backfill", "-c", str(typo)) == 78
    assert "sources.edlink.tokn_env" in outputs[-1][1]

    # The same as a process: every byte of stdout and stderr.
    environ = {k: v for k, v in os.environ.items() if k != "EDSYNC_CONFIG"}
    server.clear_faults()
    server.script(Status(status=401, times=None, echo_credentials=True))
    procs = {"process, 401 quoting the key": python_m_edsync(path, environ)}
    mirror = harness.mirror_url("mirror.db")
    if backend == "sqlite":
        corrupt = harness.tmp_path / "corrupt.db"
        corrupt.write_bytes(b"this is not a database, " * 100)
        unusable, why = f"sqlite:///{corrupt}", "mirror database: file is not a database"
    else:  # a server that refuses the connection: no such database
        unusable = mirror.rsplit("/", 1)[0] + "/edsync_no_such_database"
        why = "mirror: cannot read the schema version"
    broken = harness.tmp_path / "broken.toml"
    broken.write_text(path.read_text().replace(mirror, unusable))
    procs["process, corrupt mirror"] = python_m_edsync(broken, environ)
    procs["process, unsendable key"] = python_m_edsync(
        path, {**environ, "DREAMAPPLY_API_KEY": CRASH_SECRET}
    )
    for label, proc in procs.items():
        outputs += [(f"{label}: stdout", proc.stdout), (f"{label}: stderr", proc.stderr)]
    assert procs["process, 401 quoting the key"].returncode == 1
    assert procs["process, corrupt mirror"].returncode == 1
    assert why in procs["process, corrupt mirror"].stderr
    assert procs["process, unsendable key"].returncode == 78

    for where, text in outputs:
        assert_no_secret(text, where)
    assert any("HTTP 401" in text and "***" in text for _, text in outputs), "the echo was seen"
    engine = harness.engine(path)
    with engine.connect() as conn:
        errors = conn.exec_driver_sql("SELECT source, last_error FROM checkpoints").all()
    assert len(errors) == 2
    for source, error in errors:
        assert error, source
        assert_no_secret(error, f"checkpoints.last_error of {source}")
    if backend == "postgresql":  # every row of every table, as text
        with engine.connect() as conn:
            for table in inspect(conn).get_table_names():
                rows = conn.exec_driver_sql(f"SELECT CAST(t AS text) FROM {table} AS t").all()
                assert rows or table in ("signals", "deliveries", "refresh_queue"), table
                assert_no_secret("\n".join(row[0] for row in rows), f"table {table}")
    engine.dispose()
    for file in harness.tmp_path.glob("mirror.db*"):
        assert_no_secret(file.read_bytes(), file.name)


def python_m_edsync(path: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edsync", "backfill", "-c", str(path)],
        capture_output=True,
        text=True,
        env=dict(env),
        timeout=60,
        check=False,
    )


# -- regressions for bugs this suite found outside http.py / dreamapply.py ------------------


def test_a_secret_no_header_can_carry_is_a_configuration_error(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server = harness.serve(make_events(5))
    monkeypatch.setenv("DREAMAPPLY_API_KEY", CRASH_SECRET)
    code = main(["backfill", "-c", str(harness.config(server.url))])
    assert code == 78
    assert "sources.dreamapply.api_key_env" in capsys.readouterr().err


def test_a_truncated_edlink_page_is_retried(
    make_simulator: Callable[..., Any],
    tmp_path: Path,
    mirror_url: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    fast_retries: None,
) -> None:
    sim = make_simulator(events=10, edlink_people=20)
    monkeypatch.setenv("EDLINK_TOKEN", sim.edlink_token)
    path = tmp_path / "edsync.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [mirror]
            url = "{mirror_url("mirror.db")}"
            [sources.edlink]
            kind = "edlink"
            base_url = "{sim.url}"
            token_env = "EDLINK_TOKEN"
            """
        )
    )
    sim.inject(200, body=b'{"$data": [{"id": "', route="edlink-events")
    assert backfill(path) == 0
