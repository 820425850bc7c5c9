"""Opening the mirror: engine, SQLite pragmas and file modes, migrations."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote

from sqlalchemy import Connection, Engine, PoolProxiedConnection, QueuePool, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from edsync.errors import ConfigError, FatalError
from edsync.kinds import Records
from edsync.mirror.errors import on_error, transient_failures, translate

# Re-exported: mirror.ledger imports WRITE from here.
from edsync.mirror.locks import WRITE as WRITE  # noqa: PLC0414
from edsync.mirror.locks import lock_migrations, session_name
from edsync.model import dump_json, parse_json
from edsync.settings import MirrorSettings

Access = Literal["create", "write", "read"]
"""How a command opens the mirror: ``create`` it if need be (run, backfill, db
upgrade, demo), ``write`` to one that exists (deliver, quarantine retry), or
``read`` one that exists without ever writing (status, db current, quarantine
list: SQLite ``mode=ro``, a PostgreSQL read-only session)."""


POOL_SIZE = 8
POOL_OVERFLOW = 2
SQLITE_POOL_SIZE = 4
SQLITE_POOL_OVERFLOW = 1
"""SQLite has one writer, and every connection parses the whole schema (a
thousand sources have eight thousand typed views: about 40 MB a connection),
so few connections, waited for rather than opened (SPEC 8: megabytes a source)."""
POOL_WAIT = 600.0


class _Pool(QueuePool):
    """The engine's pool: a wait for a free connection that times out is a
    ``MirrorError`` too (it is raised outside any statement, so ``on_error``
    never sees it)."""

    def connect(self) -> PoolProxiedConnection:
        try:
            return super().connect()
        except PoolTimeoutError as exc:
            raise translate(exc) from exc


def create_mirror_engine(
    settings: MirrorSettings, config_path: str = "", *, access: Access = "create"
) -> Engine:
    """The ``Mirror`` (``edsync.mirror``) ``settings`` name, opened for
    ``access``; every failure of its database is a ``MirrorError``."""
    try:
        url = make_url(settings.url)
    except ArgumentError:
        raise ConfigError(
            config_path, "mirror.url", f"not a database URL: {settings.url!r}"
        ) from None
    try:
        if url.get_backend_name() == "sqlite":
            engine = _sqlite_engine(url, config_path, access)
        else:
            engine = _postgresql_engine(url, config_path, access)
    except SQLAlchemyError as exc:  # an unknown dialect, a bad argument in the URL
        raise translate(exc) from exc
    event.listen(engine, "handle_error", on_error)
    return engine


def _postgresql_engine(url: URL, config_path: str, access: Access) -> Engine:
    connect_args: dict[str, str] = {"application_name": session_name()}
    if access == "read":
        connect_args["options"] = "-c default_transaction_read_only=on"
    try:
        return create_engine(
            url,
            json_serializer=dump_json,
            json_deserializer=parse_json,
            pool_pre_ping=True,
            # Bounded whatever the number of sources (SPEC 8): the poll workers,
            # the publisher and the coordination session share these.
            poolclass=_Pool,
            pool_size=POOL_SIZE,
            max_overflow=POOL_OVERFLOW,
            connect_args=connect_args,
        )
    except ModuleNotFoundError as exc:
        raise ConfigError(
            config_path,
            "mirror.url",
            f"driver not installed ({exc.name}); pip install edsync[postgres]",
        ) from None


def _sqlite_engine(url: URL, config_path: str, access: Access) -> Engine:
    read_only = False
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        path = Path(url.database)
        if access == "create":
            _prepare_sqlite_file(path, config_path)
        elif not path.exists():
            raise NoMirrorError(no_mirror_message(str(path), config_path))
        if access == "read":
            # A URI filename: SQLite itself refuses every write, creates nothing,
            # and reads a file the process may not write.
            read_only = True
            url = url.set(
                database="file:" + quote(str(path.resolve()), safe="/"),
                query={**url.query, "mode": "ro", "uri": "true"},
            )
    # How long a writer waits for a lock; `?timeout=5` in the URL overrides.
    connect_args = {} if "timeout" in url.query else {"timeout": 30.0}
    pool: dict[str, Any] = {}
    if url.database and url.database != ":memory:":
        pool = {
            "poolclass": _Pool,
            "pool_size": SQLITE_POOL_SIZE,
            "max_overflow": SQLITE_POOL_OVERFLOW,
            "pool_timeout": POOL_WAIT,
        }
    engine = create_engine(
        url,
        json_serializer=dump_json,
        json_deserializer=parse_json,
        connect_args=connect_args,
        **pool,
    )
    _sqlite_transactions(engine, read_only=read_only)
    return engine


def backend(engine: Engine) -> str:
    """``sqlite`` or ``postgresql``."""
    return engine.dialect.name


def location(engine: Engine) -> str:
    """Where the mirror is, as a user would name it (its URL, no password)."""
    return engine.url.render_as_string(hide_password=True)


def sqlite_file(engine: Engine) -> str | None:
    """The file of a SQLite mirror, as its URL names it; None for PostgreSQL or
    an in-memory database."""
    database = engine.url.database
    if backend(engine) != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):  # a URI filename: a read-only engine's (status)
        database = unquote(database[len("file:") :].split("?", 1)[0])
    return database


class NoMirrorError(FatalError):
    """A command that reads the mirror found none: nothing has created it yet."""


def no_mirror_message(where: str, config_path: str) -> str:
    named = f" (mirror.url in {config_path})" if config_path else ""
    return (
        f"no mirror at {where} yet{named}: `edsync backfill` or `edsync run` creates it "
        "(`edsync db upgrade` an empty one)"
    )


def require_mirror(engine: Engine, config_path: str = "") -> None:
    """A read-only command's check: the database holds an edsync mirror (a
    PostgreSQL database, or a SQLite file another program made, may be empty)."""
    with transient_failures("cannot read the schema version", retried=False):
        stamped = _stamped_revision(engine)
    if stamped is None:
        raise NoMirrorError(no_mirror_message(location(engine), config_path))


def _prepare_sqlite_file(path: Path, config_path: str) -> None:
    """Create the mirror file 0600, in a directory that must exist.

    The mirror holds personal data: other local users must not read it. A
    missing directory is most likely a typo in ``mirror.url``, so it is
    refused rather than created.
    """
    if path.exists():
        return
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(
            config_path,
            "mirror.url",
            f"directory {parent} does not exist (edsync creates the mirror file, "
            "not its directory)",
        )
    try:
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


def _sqlite_transactions(engine: Engine, *, read_only: bool = False) -> None:
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
            # Switching the journal mode writes the file header: not on a reader.
            if not (read_only and pragma.startswith("journal_mode")):
                cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _alembic_config(conn: Connection | None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "edsync.mirror:migrations")
    cfg.attributes["connection"] = conn
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    cfg = _alembic_config(None)
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, sources: Mapping[str, Records] | None = None) -> None:
    """Migrate to the newest schema, then create or replace the views of
    ``sources`` (name → its kind's records)."""
    _migrate(engine)
    if sources:
        from edsync.mirror import views

        with transient_failures("cannot create the views"):
            views.ensure(engine, sources)


def _migrate(engine: Engine) -> None:
    from alembic import command

    with (
        transient_failures("cannot migrate"),
        engine.execution_options(**{WRITE: True}).begin() as conn,
    ):
        lock_migrations(conn)
        command.upgrade(_alembic_config(conn), "head")


SCHEMA_HEAD = "0011"
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


def ensure_schema(
    engine: Engine, *, auto_migrate: bool, sources: Mapping[str, Records] | None = None
) -> None:
    """Upgrade the schema, or refuse to run on one that is not current; with
    ``auto_migrate``, also bring the views of ``sources`` (name → records) up to
    date, so a source added to the config gets its views on the next start."""
    _ensure_tables(engine, auto_migrate=auto_migrate)
    if auto_migrate and sources:
        from edsync.mirror import views

        # The views are a convenience over the tables: one that cannot be
        # replaced (a user's view depends on it) is reported, and the sync runs.
        views.ensure(engine, sources, strict=False)


def _ensure_tables(engine: Engine, *, auto_migrate: bool) -> None:
    with transient_failures("cannot read the schema version"):
        if _stamped_revision(engine) == SCHEMA_HEAD:
            return  # nothing to do, and no write lock taken
        current = current_revision(engine)
    if current == head_revision():
        return
    if auto_migrate:
        _migrate(engine)
        return
    if current != head_revision():
        raise FatalError(
            f"mirror schema is at {current or 'nothing'}, edsync needs {head_revision()}: "
            "run `edsync db upgrade` (or a backfill with auto_migrate = true)"
        )


DEMO_MARK = 0x65647364  # "edsd" in SQLite's user_version: a file `edsync demo` made
"""Alembic leaves ``user_version`` alone; the demo stamps its file with this, so a
second demo knows it may start that file afresh and never deletes another."""


def mark_demo(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(f"PRAGMA user_version = {DEMO_MARK}")


def is_demo_mirror(path: Path) -> bool:
    """Whether ``path`` is a SQLite file an earlier ``edsync demo`` made (read-only look)."""
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{quote(str(path.resolve()), safe='/')}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        return bool(conn.execute("PRAGMA user_version").fetchone()[0] == DEMO_MARK)
    except sqlite3.Error:
        return False  # not a SQLite database at all
    finally:
        conn.close()


def remove_sqlite_file(path: Path) -> None:
    """The file and the journal files SQLite keeps beside it."""
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)
