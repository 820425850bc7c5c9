"""Shared fixtures: real mirrors (SQLite files, PostgreSQL databases), a real
simulator over HTTP, config files."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import textwrap
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import stamina
from sqlalchemy import Connection, Engine, event

from edsync.config import load_config
from edsync.mirror.db import create_mirror_engine, ensure_schema
from edsync.settings import MirrorSettings

DREAMAPPLY_KEY = "sim-dreamapply-key"
EDLINK_TOKEN = "sim-edlink-token"
PG_URL_ENV = "EDSYNC_TEST_PG_URL"  # a server to use instead of a throwaway cluster


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: a test of SQLite behaviour itself")
    config.addinivalue_line("markers", "postgresql_only: a test of PostgreSQL behaviour itself")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that touches the mirror runs on SQLite and on PostgreSQL."""
    if "backend" not in metafunc.fixturenames:
        return
    backends = ["sqlite", "postgresql"]
    if metafunc.definition.get_closest_marker("sqlite_only"):
        backends = ["sqlite"]
    elif metafunc.definition.get_closest_marker("postgresql_only"):
        backends = ["postgresql"]
    metafunc.parametrize("backend", backends)


def _pg_bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return candidates[-1].parent if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A PostgreSQL server URL (no database): $EDSYNC_TEST_PG_URL, or a throwaway
    cluster started with initdb/pg_ctl in a temporary directory."""
    if os.environ.get(PG_URL_ENV):
        yield os.environ[PG_URL_ENV].rstrip("/")
        return
    bindir = _pg_bindir()
    if bindir is None:
        if os.environ.get("EDSYNC_TEST_REQUIRE_PG"):
            pytest.fail("PostgreSQL is required (EDSYNC_TEST_REQUIRE_PG) but not installed")
        pytest.skip("PostgreSQL is not installed here (.ci/run installs it)")
    root = Path(tempfile.mkdtemp(prefix="edsync-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        import pwd

        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()
    # Autovacuum keeps its production default (a look once a minute): edsync
    # analyzes the tables a backfill outgrows by itself, and the crash test's
    # 50 000-event backfills would show it if that stopped working.
    options = (
        f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c synchronous_commit=off "
        "-c full_page_writes=off -c max_connections=300"
    )
    subprocess.run(
        [*run_as, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
         "-E", "UTF8", "--no-sync"],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"),
         "-o", options, "start"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            check=False, capture_output=True,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def _admin_url(server: str) -> str:
    return server.replace("postgresql+psycopg://", "postgresql://") + "/postgres"


def create_pg_database(server: str) -> str:
    """A new, empty database on ``server``; returns its name."""
    import psycopg

    database = f"edsync_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(_admin_url(server), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    return database


def drop_pg_databases(server: str, databases: Iterable[str]) -> None:
    import psycopg

    with psycopg.connect(_admin_url(server), autocommit=True) as conn:
        for database in databases:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture
def mirror_url(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> Iterator[Callable[[str], str]]:
    """``mirror_url("clean.db")``: the URL of a fresh, private mirror database of
    this test's backend; the same name gives the same database."""
    if backend == "sqlite":
        yield lambda name: f"sqlite:///{tmp_path / name}"
        return
    server = request.getfixturevalue("pg_server")
    names: dict[str, str] = {}

    def factory(name: str) -> str:
        if name not in names:
            names[name] = create_pg_database(server)
        return f"{server}/{names[name]}"

    yield factory
    drop_pg_databases(server, names.values())


_opened: weakref.WeakSet[Engine] = weakref.WeakSet()


@event.listens_for(Engine, "engine_connect")
def _track_engine(conn: Connection) -> None:
    _opened.add(conn.engine)


@pytest.fixture(autouse=True)
def _dispose_engines() -> Iterator[None]:
    """Close the pooled connections of every engine a test used: psycopg warns
    about a connection garbage-collected while open (and warnings are errors)."""
    yield
    for engine in list(_opened):
        engine.dispose()
    _opened.clear()


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDSYNC_CONFIG", raising=False)


@pytest.fixture
def fast_retries() -> Iterator[None]:
    """Retries without waiting (stamina's test mode), for tests about *whether* we retry."""
    stamina.set_testing(True, attempts=5)
    yield
    stamina.set_testing(False)


@pytest.fixture
def make_engine(mirror_url: Callable[[str], str]) -> Iterator[Callable[..., Engine]]:
    engines: list[Engine] = []

    def factory(name: str = "mirror.db") -> Engine:
        engine = create_mirror_engine(MirrorSettings(url=mirror_url(name)))
        ensure_schema(engine, auto_migrate=True)
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        engine.dispose()


@pytest.fixture
def make_simulator() -> Iterator[Callable[..., Any]]:
    from edsync_sim import Simulator

    started: list[Simulator] = []

    def factory(**kwargs: Any) -> Simulator:
        sim = Simulator(**kwargs).start()
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        sim.stop()


def _sets_snapshot(extra: str) -> bool:
    """Whether ``extra`` sets ``snapshot`` in the table it continues (before any
    table of its own)."""
    own = re.split(r"^\s*\[", extra, maxsplit=1, flags=re.M)[0]
    return re.search(r"^\s*snapshot\s*=", own, re.M) is not None


@pytest.fixture
def write_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mirror_url: Callable[[str], str]
) -> Callable[..., Path]:
    """Write an edsync.toml for a DreamApply source at ``url`` (the mirror on this
    test's backend; ``db`` names it); returns its path. The source reads the
    journal alone (``snapshot = false``) unless ``extra`` sets ``snapshot``:
    most tests are about the feed, not the bootstrap."""
    monkeypatch.setenv("DREAMAPPLY_API_KEY", DREAMAPPLY_KEY)

    def factory(
        url: str, *, db: str = "mirror.db", extra: str = "", name: str = "edsync.toml"
    ) -> Path:
        path = tmp_path / name
        path.write_text(
            textwrap.dedent(
                f"""
                [mirror]
                url = "{mirror_url(db)}"

                [log]
                format = "json"

                [sources.dreamapply]
                kind = "dreamapply"
                base_url = "{url}"
                api_key_env = "DREAMAPPLY_API_KEY"
                max_requests_per_minute = 0
                """
            )
            + ("" if _sets_snapshot(textwrap.dedent(extra)) else "snapshot = false\n")
            + textwrap.dedent(extra)
        )
        return path

    return factory


@pytest.fixture
def edlink_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mirror_url: Callable[[str], str]
) -> Callable[..., Path]:
    """``edlink_config(url, *keys, token=…, with_dreamapply=False)``: an edsync.toml
    for an Edlink source at ``url``, ``keys`` (TOML lines) added to its table, and
    with a DreamApply source at the same ``url`` if asked; returns its path."""
    monkeypatch.setenv("DREAMAPPLY_API_KEY", DREAMAPPLY_KEY)

    def factory(
        url: str, *keys: str, token: str = EDLINK_TOKEN, with_dreamapply: bool = False
    ) -> Path:
        monkeypatch.setenv("EDLINK_TOKEN", token)
        lines = [
            "[mirror]",
            f'url = "{mirror_url("mirror.db")}"',
            "[log]",
            'format = "json"',
            "[sources.edlink]",
            'kind = "edlink"',
            f'base_url = "{url}"',
            'token_env = "EDLINK_TOKEN"',
            *keys,
        ]
        if with_dreamapply:
            lines += [
                "[sources.dreamapply]",
                'kind = "dreamapply"',
                f'base_url = "{url}"',
                'api_key_env = "DREAMAPPLY_API_KEY"',
                "max_requests_per_minute = 0",
                'interval = "1s"',
            ]
        path = tmp_path / "edsync.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    return factory


def mirror_engine(path: Path) -> Engine:
    """The mirror the config at ``path`` names, migrated."""
    engine = create_mirror_engine(load_config(path).mirror)
    ensure_schema(engine, auto_migrate=True)
    return engine


def json_value(dialect: str, value: Any) -> Any:
    """A JSON column as Python: SQLite returns its text, psycopg the parsed value
    (a JSON string is a Python ``str`` there, so ``sql.loads`` cannot tell)."""
    import orjson

    return orjson.loads(value) if dialect == "sqlite" else value


def table_rows(engine: Engine, table: str, ignore: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
    """Every row of a table, ordered, without the columns named in ``ignore``."""
    with engine.connect() as conn:
        result = conn.exec_driver_sql(f"SELECT * FROM {table}")
        columns = list(result.keys())
        keep = [i for i, c in enumerate(columns) if c not in ignore]
        rows = [tuple(row[i] for i in keep) for row in result]
    return sorted(rows, key=repr)


RUN_TIMESTAMPS = {
    "records": ("first_seen_at", "synced_at"),
    "events": ("applied_at", "id"),
    "checkpoints": ("updated_at", "last_success_at", "purged_at", "webhook_at"),
    "signals": ("created_at",),
    "deliveries": ("next_attempt_at", "delivered_at"),
}


def mirror_snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """All five tables, run timestamps aside: what 'identical mirrors' means."""
    return {table: table_rows(engine, table, ignore) for table, ignore in RUN_TIMESTAMPS.items()}


TABLE_ORDER = {
    "records": "source, entity, entity_id",
    "events": "source, event_id",
    "checkpoints": "source",
    "signals": "id",
    "deliveries": "signal_id, sink",
}


def mirror_digest(engine: Engine) -> dict[str, str]:
    """A hash per table, run timestamps aside: identical mirrors, cheaply compared."""
    import hashlib

    digests = {}
    with engine.connect() as conn:
        for table, order in TABLE_ORDER.items():
            result = conn.exec_driver_sql(f"SELECT * FROM {table} ORDER BY {order}")
            ignore = set(RUN_TIMESTAMPS[table])
            keep = [i for i, c in enumerate(result.keys()) if c not in ignore]
            digest = hashlib.sha256()
            for row in result:
                digest.update(repr(tuple(row[i] for i in keep)).encode())
            digests[table] = digest.hexdigest()
    return digests
