"""Shared fixtures: real SQLite files, a real simulator over HTTP, config files."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import stamina
from sqlalchemy import Engine

from edsync.config import MirrorSettings
from edsync.mirror.db import create_mirror_engine, ensure_schema

DREAMAPPLY_KEY = "sim-dreamapply-key"


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
def make_engine(tmp_path: Path) -> Callable[..., Engine]:
    engines: list[Engine] = []

    def factory(name: str = "mirror.db") -> Engine:
        engine = create_mirror_engine(MirrorSettings(url=f"sqlite:///{tmp_path / name}"))
        ensure_schema(engine, auto_migrate=True)
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        engine.dispose()


@pytest.fixture
def make_simulator() -> Iterator[Callable[..., Any]]:
    from edsync.simulator import Simulator

    started: list[Simulator] = []

    def factory(**kwargs: Any) -> Simulator:
        sim = Simulator(**kwargs).start()
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        sim.stop()


@pytest.fixture
def write_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Write an edsync.toml for a DreamApply source at ``url``; returns its path."""
    monkeypatch.setenv("DREAMAPPLY_API_KEY", DREAMAPPLY_KEY)

    def factory(
        url: str, *, db: str = "mirror.db", extra: str = "", name: str = "edsync.toml"
    ) -> Path:
        path = tmp_path / name
        path.write_text(
            textwrap.dedent(
                f"""
                [mirror]
                url = "sqlite:///{tmp_path / db}"

                [log]
                format = "json"

                [sources.dreamapply]
                kind = "dreamapply"
                base_url = "{url}"
                api_key_env = "DREAMAPPLY_API_KEY"
                max_requests_per_minute = 0
                """
            )
            + textwrap.dedent(extra)
        )
        return path

    return factory


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
    "checkpoints": ("updated_at", "last_success_at"),
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


def env_without_secrets() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.endswith("_KEY")}
