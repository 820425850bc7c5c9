"""SPEC 5.1 and 5.5 against upstreams that misbehave on purpose (issue 36):
``timeout`` bounds a whole attempt, so an answer that trickles in a byte at a
time is a timeout; and a credential goes only to its ``base_url``'s origin,
whatever link or ``$next`` an answer names.

Real servers on loopback (``tests.hostile.Upstream``): 127.0.0.1 is the
configured upstream, 127.0.0.2 another host. The behaviour is HTTP's, not the
mirror's: these run on SQLite alone.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import orjson
import pytest
from sqlalchemy import Engine

from edsync.cli import main
from edsync.mirror import checkpoints
from tests.conftest import DREAMAPPLY_KEY, mirror_engine
from tests.hostile import Answer, Route, Seen, Trickle, Upstream, not_found
from tests.integration.daemon import DaemonProcess
from tests.tlscerts import TlsFiles, make_tls_files

pytestmark = pytest.mark.sqlite_only

PREFIX = "/api/v9"
JOURNAL = f"{PREFIX}/journal"
TOKEN = "hostile-edlink-token-5c1e"
TIMEOUT = 1.0
RETRY_FOR = 3.0  # room for one retry: an attempt (1 s) and its backoff (0.5-1.5 s) fit
QUICK = f'timeout = "{TIMEOUT:g}s"\nretry_for = "{RETRY_FOR:g}s"\n'
LOGGED = "2026-03-01T09:00:00+00:00"


@pytest.fixture
def upstreams() -> Iterator[Callable[..., Upstream]]:
    """``upstreams(route, host=…, tls=…)``: a started Upstream, stopped at the end."""
    started: list[Upstream] = []

    def factory(route: Route = not_found, **kwargs: Any) -> Upstream:
        upstream = Upstream(route, **kwargs).start()
        started.append(upstream)
        return upstream

    yield factory
    for upstream in started:
        upstream.stop()


@pytest.fixture
def foreign(upstreams: Callable[..., Upstream]) -> Upstream:
    """Another host (127.0.0.2), answering whatever it is asked with an empty,
    valid page: had edsync gone there, its poll would have succeeded."""
    try:
        return upstreams(lambda _: Answer(200, {"$data": []}), host="127.0.0.2")
    except OSError as exc:
        pytest.skip(f"cannot listen on 127.0.0.2: {exc}")


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def log_lines(text: str) -> list[dict[str, Any]]:
    """The JSON log lines among edsync's stderr."""
    lines = []
    for raw in text.splitlines():
        if raw.startswith("{"):
            line = orjson.loads(raw)
            if isinstance(line, dict):
                lines.append(line)
    return lines


def backfill_process(path: Path, limit: float) -> tuple[int, str, float]:
    """``edsync backfill`` as a process: exit code, stderr, seconds it took.
    ``limit`` kills a backfill that hangs (the test then fails on it)."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "edsync", "backfill", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=limit,
        env=dict(os.environ),
        check=False,
    )
    return done.returncode, done.stderr, time.monotonic() - started


def journal_route(trickle: Trickle) -> Route:
    """A DreamApply journal whose count answers at once and whose pages trickle."""

    def route(seen: Seen) -> Answer | Trickle:
        if seen.path == JOURNAL and seen.method == "HEAD":
            return Answer(200, headers={"X-Count": "1"})
        if seen.path == JOURNAL:
            return trickle
        return not_found(seen)

    return route


# -- 1. a deadline per attempt ----------------------------------------------------


@pytest.mark.parametrize("where", ["body", "headers"])
def test_a_trickling_answer_times_out_and_backfill_exits_1_within_timeout_and_retry_for(
    upstreams: Callable[..., Upstream],
    write_config: Callable[..., Path],
    where: Literal["body", "headers"],
) -> None:
    """A byte every half second never trips a per-read timeout of 1 s; the
    attempt's deadline does, and the attempt is retried as a timeout."""
    upstream = upstreams(journal_route(Trickle(every=0.5, headers=where == "headers")))
    path = write_config(upstream.url, extra=QUICK)

    code, err, elapsed = backfill_process(path, limit=30)

    assert code == 1
    # Attempts of 1 s with backoff between them, for retry_for; the start-up aside.
    assert elapsed < TIMEOUT + RETRY_FOR + 8, f"took {elapsed:.1f}s"
    failure = next(line for line in err.splitlines() if line.startswith("edsync: source"))
    assert failure.startswith("edsync: source 'dreamapply' failed: source 'dreamapply': ")
    assert f"timed out (ReadTimeout) on GET {upstream.url}{JOURNAL}" in failure
    retries = [line for line in log_lines(err) if line.get("event") == "http_retry"]
    assert retries, "the timed-out attempt is retried within retry_for"
    assert {line["cause"] for line in retries} == {"timeout"}
    gets = [seen for seen in upstream.requests if seen.method == "GET"]
    assert len(gets) == len(retries) + 1
    for before, after in itertools.pairwise(gets):
        assert after.at - before.at >= TIMEOUT * 0.9, "each attempt lasted its timeout"
    # A half-read answer's connection is closed, never handed to the next attempt.
    assert len({seen.peer_port for seen in gets}) == len(gets)
    assert DREAMAPPLY_KEY not in err


# -- 2. credentials stay home: Edlink's $next ---------------------------------------


def edlink_route(foreign_url: str, where: Literal["list", "events"]) -> Route:
    """Edlink's Graph with one page whose ``$next`` names ``foreign_url``: the
    districts list (``list``) or the event stream (``events``)."""
    event = {
        "id": "3f1e9a5c-0000-4000-8000-000000000001",
        "date": "2026-03-01T09:00:00.000Z",
        "type": "created",
        "target": "person",
        "target_id": "person-1",
        "data": {"id": "person-1", "first_name": "Ada"},
    }

    def route(seen: Seen) -> Answer:
        if seen.path == "/api/v2/graph/events":
            if where == "events" and "$last" not in seen.query:
                following = f"{foreign_url}/api/v2/graph/events?$first=1000&$cursor=next"
                return Answer(200, {"$data": [event], "$next": following})
            return Answer(200, {"$data": []})
        if seen.path == "/api/v2/graph/districts" and where == "list":
            following = f"{foreign_url}/api/v2/graph/districts?$first=1000&$cursor=next"
            return Answer(200, {"$data": [{"id": "district-1"}], "$next": following})
        if seen.path.startswith("/api/v2/graph/"):
            return Answer(200, {"$data": []})
        return not_found(seen)

    return route


@pytest.mark.parametrize("where", ["list", "events"])
def test_a_next_to_another_origin_is_not_requested_and_fails_the_poll_naming_it(
    upstreams: Callable[..., Upstream],
    foreign: Upstream,
    edlink_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    where: Literal["list", "events"],
) -> None:
    home = upstreams(edlink_route(foreign.url, where))
    path = edlink_config(home.url, QUICK, token=TOKEN)

    assert main(["backfill", "-c", str(path)]) == 1

    out, err = capsys.readouterr()
    assert foreign.requests == [], "no request reached the other origin"
    assert home.requests, "the configured origin was read"
    assert {seen.authorization for seen in home.requests} == {f"Bearer {TOKEN}"}
    failure = next(line for line in err.splitlines() if line.startswith("edsync: source"))
    assert failure.startswith("edsync: source 'edlink' failed: source 'edlink': ")
    assert f"sent edsync to {foreign.url}, another origin than base_url's {home.url}" in failure
    assert "Traceback" not in err
    assert TOKEN not in out + err
    # Not retried: no wait will mend it.
    assert not [line for line in log_lines(err) if line.get("event") == "http_retry"]

    assert main(["status", "-c", str(path), "--json"]) == 0
    (source,) = orjson.loads(capsys.readouterr().out)["sources"]
    assert foreign.url in source["last_error"]
    assert TOKEN not in source["last_error"]


def test_a_plain_http_next_behind_an_https_base_url_is_refused(
    upstreams: Callable[..., Upstream],
    edlink_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    tls_files: TlsFiles,
) -> None:
    """Same host and port, another scheme: another origin, where the token
    would cross the network in clear."""
    home: Upstream | None = None

    def route(seen: Seen) -> Answer:
        assert home is not None
        if seen.path == "/api/v2/graph/districts":
            following = f"http://127.0.0.1:{home.port}/api/v2/graph/districts?$cursor=next"
            return Answer(200, {"$data": [{"id": "district-1"}], "$next": following})
        return Answer(200, {"$data": []})

    home = upstreams(route, tls=tls_files.server_context())
    assert home.url.startswith("https://127.0.0.1:")
    path = edlink_config(home.url, QUICK, f'ca_bundle = "{tls_files.ca}"', token=TOKEN)

    assert main(["backfill", "-c", str(path)]) == 1

    err = capsys.readouterr().err
    plain = f"http://127.0.0.1:{home.port}"
    assert f"sent edsync to {plain}, another origin than base_url's {home.url}" in err
    assert home.handshake_failures == 0, "nothing was sent to the https port in clear"
    assert all(seen.authorization == f"Bearer {TOKEN}" for seen in home.requests)
    assert TOKEN not in err


# -- 3. credentials stay home: DreamApply's links -------------------------------------


def dreamapply_route(journal_links: str, offers_link: str) -> Route:
    """A journal of one event whose links name ``journal_links``'s origin, and
    an application that sends its offers as a link (``offers_link``) instead of
    expanding them, as a server may."""
    event = {
        "logged": LOGGED,
        "event": "Application was created",
        "applicant": f"{journal_links}{PREFIX}/applicants/7",
        "application": f"{journal_links}{PREFIX}/applications/5",
        "bind": [],
    }
    application = {
        "id": 5,
        "applicant": f"{PREFIX}/applicants/7",
        "offers": offers_link,
        "tasks": [],
        "references": [],
        "documents": [],
    }

    def route(seen: Seen) -> Answer:
        if seen.path == JOURNAL and seen.method == "HEAD":
            return Answer(200, headers={"X-Count": "1"})
        if seen.path == JOURNAL:
            since = int(seen.query.get("bySince") or 0)
            return Answer(200, {"1": event} if since <= 1 else [])
        if seen.path == f"{PREFIX}/purged-resources":
            return Answer(200, [])
        if seen.path == f"{PREFIX}/applications/5":
            return Answer(200, application)
        if seen.path == f"{PREFIX}/applicants/7":
            return Answer(200, {"id": 7, "registered": LOGGED})
        if seen.path == f"{PREFIX}/applications/5/offers":
            return Answer(200, {"9": {"id": 9, "type": {"title": "Accepted"}}})
        return not_found(seen)

    return route


def records(engine: Engine) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT entity, entity_id FROM records WHERE source = 'dreamapply'"
        ).all()
    return {(entity, entity_id) for entity, entity_id in rows}


def test_a_dreamapply_link_to_another_origin_is_not_requested_and_fails_the_poll(
    upstreams: Callable[..., Upstream],
    foreign: Upstream,
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The journal's own links are read for their ids alone (the resource is
    read from base_url); a collection link edsync follows as it is names
    another origin: not followed, and the poll fails naming it."""
    offers = f"{foreign.url}{PREFIX}/applications/5/offers"
    home = upstreams(dreamapply_route(foreign.url, offers))
    path = write_config(home.url, extra=QUICK)

    assert main(["backfill", "-c", str(path)]) == 1

    err = capsys.readouterr().err
    assert foreign.requests == [], "no request reached the other origin"
    read = {(seen.method, seen.path) for seen in home.requests}
    assert ("GET", f"{PREFIX}/applications/5") in read, "the journal's link, read at home"
    failure = next(line for line in err.splitlines() if line.startswith("edsync: source"))
    assert failure.startswith("edsync: source 'dreamapply' failed: source 'dreamapply': ")
    assert f"sent edsync to {foreign.url}, another origin than base_url's {home.url}" in failure
    assert DREAMAPPLY_KEY not in err
    checkpoint = checkpoints.load(mirror_engine(path), "dreamapply")
    assert checkpoint is not None
    assert foreign.url in (checkpoint.last_error or "")


def test_a_dreamapply_link_to_base_urls_own_origin_is_followed(
    upstreams: Callable[..., Upstream],
    write_config: Callable[..., Path],
) -> None:
    """An absolute link on base_url's origin is as good as a path."""
    home: Upstream | None = None

    def route(seen: Seen) -> Answer | Trickle:
        assert home is not None
        return dreamapply_route(home.url, f"{home.url}{PREFIX}/applications/5/offers")(seen)

    home = upstreams(route)
    path = write_config(home.url, extra=QUICK)

    assert main(["backfill", "-c", str(path)]) == 0

    assert ("offer", "9") in records(mirror_engine(path))
    assert ("GET", f"{PREFIX}/applications/5/offers") in {
        (seen.method, seen.path) for seen in home.requests
    }


# -- 5. in `run`, the others go on --------------------------------------------------


def test_run_keeps_the_other_sources_current_while_one_trickles(
    make_simulator: Callable[..., Any],
    upstreams: Callable[..., Upstream],
    edlink_config: Callable[..., Path],
    daemons: list[DaemonProcess],
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = make_simulator(events=40, edlink_people=20, edlink_events=10)
    slow = upstreams(journal_route(Trickle(every=0.5)))
    path = edlink_config(sim.url, 'interval = "1s"', with_dreamapply=True)
    slow_table = "\n".join(
        [
            "[sources.slow]",
            'kind = "dreamapply"',
            f'base_url = "{slow.url}"',
            'api_key_env = "DREAMAPPLY_API_KEY"',
            "max_requests_per_minute = 0",
            "snapshot = false",
            'interval = "1s"',
            QUICK,
            "[metrics]",
            'listen = "127.0.0.1:0"',
        ]
    )
    path.write_text(path.read_text() + slow_table + "\n")
    daemon = DaemonProcess(path)
    daemons.append(daemon)
    address = daemon.wait_event("metrics_listening")["address"]
    failed = daemon.wait_event("poll_failed", source="slow")
    assert "timed out (ReadTimeout)" in failed["error"]
    scraped = httpx.get(f"http://{address}/metrics").text
    retried = [
        line
        for line in scraped.splitlines()
        if line.startswith("edsync_http_retries_total{")
        and 'source="slow"' in line
        and 'cause="timeout"' in line
    ]
    assert retried, "the timed-out attempts are counted as retries caused by a timeout"
    assert float(retried[0].rpartition(" ")[2]) >= 1

    sim.journal.append(25)
    sim.edlink.append(15)
    # Either may come first: the lines read while waiting for one are kept (seen).
    daemon.wait_event("poll_done", source="dreamapply", cursor="65", seen=True)
    daemon.wait_event("poll_done", source="edlink", cursor=sim.edlink.head(), seen=True)

    assert main(["status", "-c", str(path), "--json"]) == 0
    report = {s["source"]: s for s in orjson.loads(capsys.readouterr().out)["sources"]}
    assert report["slow"]["consecutive_failures"] >= 1
    assert "timed out (ReadTimeout)" in report["slow"]["last_error"]
    assert report["dreamapply"]["last_error"] is None
    assert report["edlink"]["last_error"] is None
    assert daemon.terminate()[0] == 0
