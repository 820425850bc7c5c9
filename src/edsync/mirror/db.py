"""Opening the mirror: engine, SQLite pragmas and file modes, migrations."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from edsync.config import MirrorSettings
from edsync.errors import ConfigError, FatalError, RetriableError

MIGRATION_LOCK = 0x65647379_6E63_0001  # "edsync" + 1: the advisory lock migrations take
WRITE = "edsync_write"
"""Execution option: on SQLite, take the write lock when the transaction begins."""


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def create_mirror_engine(settings: MirrorSettings, config_path: str = "") -> Engine:
    try:
        url = make_url(settings.url)
    except ArgumentError:
        raise ConfigError(
            config_path, "mirror.url", f"not a database URL: {settings.url!r}"
        ) from None
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            _prepare_sqlite_file(Path(url.database))
        # How long a writer waits for a lock; `?timeout=5` in the URL overrides.
        connect_args = {} if "timeout" in url.query else {"timeout": 30.0}
        engine = create_engine(
            url,
            json_serializer=_dumps,
            json_deserializer=orjson.loads,
            connect_args=connect_args,
        )
        _sqlite_transactions(engine)
        return engine
    try:
        return create_engine(
            url,
            json_serializer=_dumps,
            json_deserializer=orjson.loads,
            pool_pre_ping=True,
        )
    except ModuleNotFoundError as exc:
        raise ConfigError(
            config_path,
            "mirror.url",
            f"driver not installed ({exc.name}); pip install edsync[postgres]",
        ) from None


def _prepare_sqlite_file(path: Path) -> None:
    """Create the mirror file 0600 (in a 0700 directory if we create it).

    The mirror holds personal data: other local users must not read it.
    """
    if path.exists():
        return
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    except OSError as exc:
        raise FatalError(f"cannot create the mirror file {path}: {exc.strerror}") from None
    os.close(fd)


SQLITE_PRAGMAS = (
    # Readers (status, queries) never block the writer, and the writer never fsyncs
    # on commit: a crash loses at most the last commits, which the committed
    # cursor then re-reads, never a torn page.
    "journal_mode=WAL",
    "synchronous=NORMAL",
    # Checkpoint the WAL every ~40 MB instead of every 4 MB: a backfill commits a
    # page every few milliseconds and would otherwise checkpoint on most commits.
    "wal_autocheckpoint=10000",
    # 8 MB of page cache (negative: KiB; the default is 2 MB): a page's index pages
    # stay hot. 32 MB measured no faster on a 100 000-event backfill, and costs RSS.
    "cache_size=-8192",
    "temp_store=MEMORY",
)
"""The one place SQLite is tuned for a write-heavy mirror."""


def _sqlite_transactions(engine: Engine) -> None:
    """Let SQLAlchemy own BEGIN so a page's reads and writes are one transaction.

    pysqlite otherwise defers BEGIN to the first write; SQLAlchemy documents
    this recipe. Writers BEGIN IMMEDIATE so two processes fail fast and retry
    instead of deadlocking on a lock upgrade.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _alembic_config(conn: Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "edsync.mirror:migrations")
    cfg.attributes["connection"] = conn
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    cfg = _alembic_config(None)  # type: ignore[arg-type]
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> None:
    from alembic import command

    try:
        with engine.execution_options(**{WRITE: True}).begin() as conn:
            if conn.dialect.name == "postgresql":
                # Several daemons may start at once on a new database: one migrates,
                # the others wait here and then find the schema current.
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            command.upgrade(_alembic_config(conn), "head")
    except OperationalError as exc:
        raise RetriableError(f"mirror: cannot migrate: {exc.orig}") from None


SCHEMA_HEAD = "0007"
"""The newest migration's revision (a test holds it equal to Alembic's head): a
current mirror is recognised without importing Alembic, which would cost a
caught-up ``backfill`` more than all its other work."""


def _stamped_revision(engine: Engine) -> str | None:
    from sqlalchemy import inspect

    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        value = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    return str(value) if value is not None else None


def ensure_schema(engine: Engine, *, auto_migrate: bool) -> None:
    """Upgrade the schema, or refuse to run on one that is not current."""
    try:
        if _stamped_revision(engine) == SCHEMA_HEAD:
            return  # nothing to do, and no write lock taken
        current = current_revision(engine)
    except OperationalError as exc:
        raise RetriableError(f"mirror: cannot read the schema version: {exc.orig}") from None
    if current == head_revision():
        return
    if auto_migrate:
        upgrade(engine)
        return
    if current != head_revision():
        raise FatalError(
            f"mirror schema is at {current or 'nothing'}, edsync needs {head_revision()}: "
            "run `edsync db upgrade` (or a backfill with auto_migrate = true)"
        )
