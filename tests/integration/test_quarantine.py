"""`edsync quarantine list|retry`: see why, re-apply once they normalize, never regress."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from edsync.cli import main
from edsync.config import load_config
from edsync.mirror.db import create_mirror_engine
from edsync.mirror.sql import adapt
from tests.conftest import json_value

LOGGED = "2026-06-01T08:00:00+00:00"


def test_quarantined_events_are_listed_then_reapplied_in_order_without_regressing(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = make_simulator(events=0)
    offer = "/api/applications/5/offers/77"
    # Event 1 is broken as sent (a timestamp that is not ISO) ... but would
    # say "Offered"; event 2 then says "Enrolled" and is fine.
    sim.journal.append_raw(
        {
            "logged": "01/06/2026 08:00",
            "event": 'Offer was edited: "Offered"',
            "applicant": "/api/applicants/1",
            "offer": offer,
        }
    )
    sim.journal.append_raw(
        {
            "logged": LOGGED,
            "event": "Offer was edited: Enrolled",
            "applicant": "/api/applicants/1",
            "offer": offer,
        }
    )
    sim.journal.append_raw(
        {"logged": LOGGED, "event": "Application was created"}
    )  # names nothing to read: no application, no applicant
    path = write_config(sim.url)
    assert main(["backfill", "-c", str(path)]) == 0
    capsys.readouterr()

    assert main(["quarantine", "-c", str(path), "list", "--json"]) == 0
    listed = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(q["event_id"], q["position"]) for q in listed] == [("1", 1), ("3", 3)]
    assert "ISO" in listed[0]["reason"]
    assert "names no application" in listed[1]["reason"]

    # Fix the data as an upgrade would: here, rewrite the raw timestamp in the ledger.
    engine = create_mirror_engine(load_config(path).mirror)
    with engine.begin() as conn:
        raw = json_value(
            engine.dialect.name,
            conn.exec_driver_sql("SELECT payload FROM events WHERE event_id = '1'").scalar_one(),
        )
        raw["logged"] = LOGGED
        conn.exec_driver_sql(
            adapt(conn, "UPDATE events SET payload = ? WHERE event_id = '1'"),
            (orjson.dumps(raw).decode(),),
        )

    with engine.begin() as conn:  # what the backfill's events named was read
        conn.exec_driver_sql("DELETE FROM refresh_queue")
    assert main(["quarantine", "-c", str(path), "retry"]) == 0
    assert "applied 1, stale 0, still quarantined 1" in capsys.readouterr().out
    with engine.connect() as conn:
        statuses: dict[str, str] = dict(
            conn.exec_driver_sql("SELECT event_id, status FROM events").all()
        )
        queued = conn.exec_driver_sql("SELECT entity, entity_id, position FROM refresh_queue")
        total = conn.exec_driver_sql("SELECT events_total FROM checkpoints").scalar_one()
        queue = queued.all()
    assert statuses == {"1": "applied", "2": "applied", "3": "quarantined"}
    # The event is a notification (SPEC 2.1): applied, it queues what it names,
    # read on the next poll as it is now, so an old event cannot regress a record.
    assert queue == [("applicant", "1", 1)]
    assert total == 3


def test_retry_applies_an_event_that_now_normalizes(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = make_simulator(events=0)
    sim.journal.append_raw(
        {
            "logged": "yesterday",
            "event": "Application was closed",
            "applicant": "/api/applicants/1",
            "application": "/api/applications/9",
        }
    )
    path = write_config(sim.url)
    assert main(["backfill", "-c", str(path)]) == 0
    engine = create_mirror_engine(load_config(path).mirror)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "UPDATE events SET payload = jsonb_set(payload, '{logged}', to_jsonb(%s::text)) "
                "WHERE event_id = '1'",
                (LOGGED,),
            )
        else:
            conn.exec_driver_sql(
                "UPDATE events SET payload = json_set(payload, '$.logged', ?) WHERE event_id = '1'",
                (LOGGED,),
            )
    capsys.readouterr()
    assert main(["quarantine", "-c", str(path), "retry"]) == 0
    assert "applied 1, stale 0, still quarantined 0" in capsys.readouterr().out
    # The retried event queued its application; the next run reads it, and
    # DreamApply no longer has it (404): a deleted record.
    assert main(["backfill", "-c", str(path)]) == 0
    with engine.connect() as conn:
        deleted = conn.exec_driver_sql(
            "SELECT deleted FROM records WHERE entity = 'application' AND entity_id = '9'"
        ).scalar_one()
    assert deleted == 1  # 1 on SQLite, True on PostgreSQL


def test_a_payload_that_is_not_an_object_is_listed_and_stays_quarantined(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Regression (PostgreSQL): a JSON string payload must not be parsed twice.
    sim = make_simulator(events=3)
    sim.journal.append_raw("not an object")
    path = write_config(sim.url)
    assert main(["backfill", "-c", str(path)]) == 0
    capsys.readouterr()

    assert main(["quarantine", "-c", str(path), "list", "--json"]) == 0
    (listed,) = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (listed["event_id"], listed["position"]) == ("4", 4)
    assert "not an object" in listed["reason"]
    assert main(["quarantine", "-c", str(path), "retry"]) == 0
    assert "applied 0, stale 0, still quarantined 1" in capsys.readouterr().out
