"""`edsync backfill` against the simulator over real HTTP into a real mirror, on each backend."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import Engine

from edsync.cli import main
from edsync.mirror.db import create_mirror_engine
from edsync.settings import MirrorSettings
from edsync_sim.dataset import EVENT_NAMES
from tests.conftest import (
    DREAMAPPLY_KEY,
    create_pg_database,
    drop_pg_databases,
    json_value,
    mirror_snapshot,
)

# The journal from its start (no snapshot): every event, then what they name.
EXPAND = 'expand = ["applicant", "application", "offer"]\nsnapshot = false\n'


def open_mirror(url: str) -> Engine:
    return create_mirror_engine(MirrorSettings(url=url))


def records(engine: Engine) -> dict[tuple[str, str], dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT entity, entity_id, data, deleted FROM records").all()
    return {
        (entity, entity_id): {
            "data": json_value(engine.dialect.name, data),
            "deleted": bool(deleted),
        }
        for entity, entity_id, data, deleted in rows
    }


def journal(url: str, **params: str) -> dict[str, Any]:
    reply = httpx.get(
        f"{url}/api/journal",
        params={"limit": "1024", "byEvents": ",".join(EVENT_NAMES), **params},
        headers={"Authorization": f'DREAM apikey="{DREAMAPPLY_KEY}"'},
    )
    reply.raise_for_status()
    body: dict[str, Any] = reply.json() or {}
    return body


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def mirrored(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """One 10 000-event backfill per backend, shared by the read-only assertions below."""
    from edsync_sim import Simulator

    tmp = tmp_path_factory.mktemp("mirrored")
    if request.param == "sqlite":
        url, database = f"sqlite:///{tmp / 'mirror.db'}", None
    else:
        server = request.getfixturevalue("pg_server")
        database = create_pg_database(server)
        url = f"{server}/{database}"
    sim = Simulator(events=10_000, seed=7).start()
    config = tmp / "edsync.toml"
    config.write_text(
        f'[mirror]\nurl = "{url}"\n[log]\nformat = "json"\n'
        f'[sources.dreamapply]\nkind = "dreamapply"\nbase_url = "{sim.url}"\n'
        f'api_key_env = "EDSYNC_TEST_DA_KEY"\nmax_requests_per_minute = 0\n{EXPAND}'
    )
    os.environ["EDSYNC_TEST_DA_KEY"] = DREAMAPPLY_KEY
    try:
        code = main(["backfill", "-c", str(config)])
    finally:
        del os.environ["EDSYNC_TEST_DA_KEY"]
    engine = open_mirror(url)
    yield {"code": code, "sim": sim, "engine": engine, "config": config}
    engine.dispose()
    sim.stop()
    if database is not None:
        drop_pg_databases(server, [database])


def test_backfill_exits_0_and_ledgers_every_event(mirrored: dict[str, Any]) -> None:
    assert mirrored["code"] == 0
    with mirrored["engine"].connect() as conn:
        count, low, high = conn.exec_driver_sql(
            "SELECT COUNT(*), MIN(position), MAX(position) FROM events"
        ).one()
        cursor, total = conn.exec_driver_sql(
            "SELECT cursor, events_total FROM checkpoints WHERE source = 'dreamapply'"
        ).one()
    assert (count, low, high) == (10_000, 1, 10_000)
    assert (cursor, total) == ("10000", 10_000)


def test_mirror_matches_what_the_endpoints_serve(mirrored: dict[str, Any]) -> None:
    """The journal names every resource; read at the end, the mirror holds each
    one the endpoints serve, under its own id, and each purged one deleted."""
    current = mirrored["sim"].journal.current()
    mirror = records(mirrored["engine"])
    assert current.records, "the simulator reported no entities"
    live = {(e, int(i)) for (e, i), got in mirror.items() if not got["deleted"]}
    assert live == set(current.records)
    for (entity, entity_id), upstream in current.records.items():
        if entity == "offer":
            got = mirror[(entity, str(entity_id))]["data"]
            assert got["status"] == upstream["status"], (entity, entity_id)
    for entity, entity_id in current.purged:
        assert mirror[(entity, str(entity_id))]["deleted"], (entity, entity_id)


def test_offer_edited_to_enrolled_has_status_enrolled(mirrored: dict[str, Any]) -> None:
    sim, mirror = mirrored["sim"], records(mirrored["engine"])
    enrolled = journal(sim.url, byEvents='Offer was edited: "Enrolled"')
    assert enrolled
    last_status: dict[str, str] = {}
    for body in journal_all(sim.url, byEvents="Offer was edited: ?,Offer was confirmed: ?"):
        offer_id = body["offer"].rsplit("/", 1)[1]
        last_status[offer_id] = body["event"].split(":", 1)[1].strip().strip('"')
    enrolled_now = [o for o, s in last_status.items() if s == "Enrolled"]
    assert enrolled_now
    current = sim.journal.current()
    live = [o for o in enrolled_now if ("offer", int(o)) in current.records]
    assert live
    for offer_id in live:
        assert mirror[("offer", offer_id)]["data"]["status"] == "Enrolled"
    for offer_id in set(enrolled_now) - set(live):
        # Its application is gone upstream: read after, the offer never was live.
        assert mirror.get(("offer", offer_id), {"deleted": True})["deleted"]


def journal_all(url: str, **params: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    since = 1
    while page := journal(url, bySince=str(since), **params):
        out.extend(page.values())
        since = max(map(int, page)) + 1
    return out


def test_closed_application_is_deleted_and_reverted_one_is_back(mirrored: dict[str, Any]) -> None:
    sim, mirror = mirrored["sim"], records(mirrored["engine"])
    last: dict[str, str] = {}
    for body in journal_all(sim.url, byEvents="Application was closed,Application was reverted"):
        last[body["application"].rsplit("/", 1)[1]] = body["event"]
    closed = [a for a, name in last.items() if name == "Application was closed"]
    reverted = [a for a, name in last.items() if name == "Application was reverted"]
    assert closed
    assert reverted
    for app in closed:
        assert mirror[("application", app)]["deleted"] is True
    current = sim.journal.current()
    assert any(("application", int(app)) in current.records for app in reverted)
    for app in reverted:  # back, unless its applicant was deleted since
        live = ("application", int(app)) in current.records
        assert mirror[("application", app)]["deleted"] is not live


def test_forgotten_applicant_is_scrubbed_from_every_table(mirrored: dict[str, Any]) -> None:
    """Once DreamApply deletes them (a confirmed request: a purge with no journal
    event); a request still under review erases nothing."""
    sim = mirrored["sim"]
    requested = {
        body["applicant"].rsplit("/", 1)[1]
        for body in journal_all(sim.url, byEvents="Applicant requested to be forgotten")
    }
    current = sim.journal.current()
    forgotten = {
        str(i) for (e, i), why in current.purged.items() if e == "applicant" and why == "forgotten"
    }
    pending = {str(i) for i in current.forget_requests}
    assert requested & forgotten
    emails: dict[str, str] = {}
    for body in journal_all(sim.url, expand="applicant"):
        applicant = body.get("applicant")
        if isinstance(applicant, dict):
            emails[str(applicant["id"])] = applicant["email"]
    dump = orjson.dumps(mirror_snapshot(mirrored["engine"]), default=str).decode()
    for applicant_id in forgotten:
        assert emails[applicant_id] not in dump
    # ... while others' data is still there, a pending request's included.
    assert "@example.org" in dump
    mirror = records(mirrored["engine"])
    for applicant_id in pending:
        assert emails[applicant_id] in dump
        assert mirror[("applicant", applicant_id)]["data"]["forget_requested"]
    for applicant_id in forgotten:
        assert mirror[("applicant", applicant_id)]["data"]["forgotten"] is True


def test_second_backfill_changes_nothing(mirrored: dict[str, Any]) -> None:
    before = mirror_snapshot(mirrored["engine"])
    os.environ["EDSYNC_TEST_DA_KEY"] = DREAMAPPLY_KEY
    try:
        assert main(["backfill", "-c", str(mirrored["config"])]) == 0
    finally:
        del os.environ["EDSYNC_TEST_DA_KEY"]
    assert mirror_snapshot(mirrored["engine"]) == before


# Libraries edsync imports only when a command needs them.
OPTIONAL = ("rich", "alembic", "prometheus_client", "psycopg", "apscheduler")


def test_caught_up_backfill_imports_no_optional_library(mirrored: dict[str, Any]) -> None:
    """A timer-started run with nothing to do pays for no library it does not use."""
    probe = (
        "import sys\nfrom edsync.cli import main\ncode = main(sys.argv[1:])\n"
        f"print(code, *[name for name in {OPTIONAL!r} if name in sys.modules])"
    )
    reply = subprocess.run(
        [sys.executable, "-c", probe, "backfill", "-c", str(mirrored["config"])],
        env={**os.environ, "EDSYNC_TEST_DA_KEY": DREAMAPPLY_KEY},
        capture_output=True,
        text=True,
        check=True,
    )
    code, *imported = reply.stdout.split()
    assert code == "0"
    driver = {"psycopg"} if mirrored["engine"].dialect.name == "postgresql" else set()
    assert set(imported) == driver


def run_until_killed(config: Path, pages_before_kill: int) -> None:
    """Start a real `edsync backfill`, SIGKILL it after it logged N committed pages."""
    env = {**os.environ, "DREAMAPPLY_API_KEY": DREAMAPPLY_KEY}
    seen = 0
    with subprocess.Popen(
        [sys.executable, "-m", "edsync", "backfill", "-c", str(config)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=env,
    ) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            if b'"page_applied"' in line:
                seen += 1
                if seen == pages_before_kill:
                    proc.send_signal(signal.SIGKILL)
                    break
        proc.wait()
    assert seen == pages_before_kill, "backfill finished before the kill point"
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("kills", [(3,), (2, 5, 4)])
def test_sigkilled_backfill_rerun_equals_a_clean_run(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    mirror_url: Callable[[str], str],
    kills: tuple[int, ...],
) -> None:
    sim = make_simulator(events=10_000, seed=3)
    clean_cfg = write_config(sim.url, db="clean.db", extra=EXPAND, name="clean.toml")
    killed_cfg = write_config(sim.url, db="killed.db", extra=EXPAND, name="killed.toml")
    assert main(["backfill", "-c", str(clean_cfg)]) == 0
    for pages in kills:
        run_until_killed(killed_cfg, pages)
    assert main(["backfill", "-c", str(killed_cfg)]) == 0
    clean = open_mirror(mirror_url("clean.db"))
    killed = open_mirror(mirror_url("killed.db"))
    assert mirror_snapshot(killed) == mirror_snapshot(clean)
