"""The pipelined drain (pages fetched ahead in a thread) against a page-at-a-time one,
and replays after --reset, on each backend."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from edsync.config import load_config
from edsync.rule_compiler import compile_rules
from edsync.run.drain import DrainResult, drain
from edsync.sources import create
from tests.conftest import mirror_digest

EXPAND = 'expand = ["applicant", "application", "offer"]\npage_size = 100\n'


def backfill(config_path: Path, engine: Engine, *, prefetch: int) -> DrainResult:
    config = load_config(config_path)
    source = create(config.sources["dreamapply"])
    try:
        return drain(engine, source, rules=compile_rules(config), prefetch=prefetch)
    finally:
        source.close()


def test_a_pipelined_mirror_equals_a_page_at_a_time_mirror(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    make_engine: Callable[..., Engine],
) -> None:
    sim = make_simulator(events=3000)
    path = write_config(sim.url, extra=EXPAND)
    pipelined, serial = make_engine("pipelined.db"), make_engine("serial.db")
    ahead = backfill(path, pipelined, prefetch=2)
    one_by_one = backfill(path, serial, prefetch=0)
    assert ahead.received == one_by_one.received == 3000
    assert ahead.pages == one_by_one.pages == 30
    assert mirror_digest(pipelined) == mirror_digest(serial)


def test_a_replay_after_reset_changes_nothing_and_skips_every_event(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    make_engine: Callable[..., Engine],
) -> None:
    from edsync.mirror import checkpoints

    sim = make_simulator(events=2000)
    path = write_config(sim.url, extra=EXPAND)
    engine = make_engine()
    backfill(path, engine, prefetch=2)
    before = mirror_digest(engine)
    checkpoints.reset(engine, "dreamapply")
    replay = backfill(path, engine, prefetch=2)
    assert replay.received == replay.duplicates == 2000
    assert replay.applied == 0
    assert mirror_digest(engine) == before


def test_a_drain_breaks_its_time_down_by_stage(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    make_engine: Callable[..., Engine],
) -> None:
    """The benchmark's breakdown: the apply splits into the fold and the SQL."""
    sim = make_simulator(events=500)
    result = backfill(write_config(sim.url, extra=EXPAND), make_engine(), prefetch=2)
    stages = result.stages
    assert result.received == 500
    assert min(stages.fetch, stages.parse, stages.normalize, stages.fold) > 0
    assert 0 < stages.fold < stages.apply
    per_event = stages.per_event(result.received)
    assert list(per_event) == ["fetch", "parse", "normalize", "apply", "fold", "sql"]
    assert per_event["sql"] == round((stages.apply - stages.fold) * 1e6 / 500, 2)
