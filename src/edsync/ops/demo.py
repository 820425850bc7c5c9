"""``edsync demo``: the whole product on the built-in simulator, in one command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edsync.config import with_compiled_rules
from edsync.errors import EdsyncError
from edsync.settings import (
    Config,
    Duration,
    HttpUrl,
    LogSettings,
    MirrorSettings,
    RuleSettings,
    Secret,
    SourceSettings,
)

if TYPE_CHECKING:
    from edsync.mirror import Mirror

DEMO_KEY = "sim-dreamapply-key"
DEMO_HUB_KEY = "sim-hub-key"
DEMO_TOKEN = "sim-edlink-token"  # noqa: S105 - the simulator's public token


DEMO_RATE = 300
"""Journal events the demo's simulator adds a second while the demo runs."""

DEFAULT_DB = "edsync-demo.db"


class DemoFileError(EdsyncError):
    """``--db`` names a file the demo must not touch, or a directory that does not exist."""


def fresh_file(db: Path) -> None:
    """Make room for a new demo mirror at ``db``: an earlier demo's file is
    removed (saying so); any other existing file is refused, never deleted."""
    from edsync.mirror.db import is_demo_mirror, remove_sqlite_file

    parent = db.parent if str(db.parent) else Path(".")
    if not parent.is_dir():
        raise DemoFileError(f"directory {parent} does not exist")
    if not db.exists():
        return
    # The default name is the demo's own (files from before the mark have only it).
    if not (is_demo_mirror(db) or db.name == DEFAULT_DB):
        raise DemoFileError(
            f"{db} exists and is not an earlier demo's mirror; name another file with --db"
        )
    print(
        f"{db} is left from an earlier demo: starting it afresh (pass --db OTHER.db to keep it)",
        file=sys.stderr,
    )
    remove_sqlite_file(db)


def demo_config(url: str, db: Path, *, edlink: bool = True) -> Config:
    from edsync.sinks import learninghub
    from edsync.sources import edlink as edlink_source
    from edsync.sources.dreamapply.journal import Settings

    source = Settings(
        name="dreamapply",
        kind="dreamapply",
        base_url=HttpUrl(url),
        api_key=Secret(env="(demo)", value=DEMO_KEY),
        max_requests_per_minute=0,
        interval=Duration(60.0),
    )
    sources: dict[str, SourceSettings] = {"dreamapply": source}
    if edlink:
        sources["edlink"] = edlink_source.Settings(
            name="edlink",
            kind="edlink",
            base_url=HttpUrl(url),
            token=Secret(env="(demo)", value=DEMO_TOKEN),
        )
    hub = learninghub.Settings(
        name="learninghub",
        kind="learninghub",
        base_url=HttpUrl(url),
        program_id="FOO",
        user_id="edsync",
        api_key=Secret(env="(demo)", value=DEMO_HUB_KEY),
    )
    enrolled = RuleSettings(
        name="offer-enrolled",
        source="dreamapply",
        event='Offer was edited: "Enrolled"',
        publish=["learninghub"],
        event_type="offer.enrolled",
        member="applicant.email",
    )
    return with_compiled_rules(
        Config(
            path="(demo)",
            mirror=MirrorSettings(url=f"sqlite:///{db}"),
            log=LogSettings(level="warning"),
            sources=sources,
            sinks={"learninghub": hub},
            rules=[enrolled],
        )
    )


def run_demo(events: int, db: Path) -> int:
    from edsync.mirror.db import create_mirror_engine, ensure_schema, mark_demo
    from edsync.ops import logs
    from edsync.ops.ui import RichProgress
    from edsync.run.backfill import run_backfill
    from edsync.sources import source_records
    from edsync_sim import Simulator

    fresh_file(db)
    # The simulated institution keeps working while the demo runs: what changes
    # during the snapshot arrives through the journal afterwards (and fires rules).
    with Simulator(events=events, seed=0, api_key=DEMO_KEY, rate=DEMO_RATE) as sim:
        config = demo_config(sim.url, db)
        logs.configure(config.log)
        engine = create_mirror_engine(config.mirror)
        ensure_schema(engine, auto_migrate=True, sources=source_records(config.sources))
        mark_demo(engine)
        print(
            f"Simulated DreamApply ({events} journal events, {DEMO_RATE} more a second) and "
            f"Edlink at {sim.url}. Both mirrors start from a snapshot of the list "
            "endpoints, then follow the change feeds.",
            file=sys.stderr,
        )
        with RichProgress() as progress:
            outcome = run_backfill(config, engine, list(config.sources), progress=progress)
    if not outcome.ok:
        for name, error in outcome.failures.items():
            print(f"edsync: source {name!r} failed: {error}", file=sys.stderr)
        return 1
    _summary(engine, db, config)
    return 0


def _summary(engine: Mirror, db: Path, config: Config) -> None:
    from edsync import sources
    from edsync.mirror import outbox, reads, views
    from edsync.ops.ui import print_table

    kinds = [(name, sources.kind(settings.kind)) for name, settings in config.sources.items()]
    demos = [(name, kind, kind.demo) for name, kind in kinds if kind.demo is not None]
    per_entity = reads.records_by_entity(engine)
    ledger = reads.ledger_by_status(engine)
    signals = sum(n for (_, status), n in outbox.counts(engine).items() if status == "delivered")
    print_table(
        "records", ["source", "entity", "records", "deleted"], [list(r) for r in per_entity]
    )
    print_table("events ledger", ["source", "status", "events"], [list(r) for r in ledger])
    for name, _, demo in demos:  # what each kind's demo counts
        for tally in demo.tallies:
            count = reads.with_status(engine, name, tally.entity, tally.status)
            print(f"{tally.label}: {count}")
    print(
        f"Signals delivered to the simulated Learning Hub: {signals} "
        "(rule offer-enrolled: one PUT per offer edited to Enrolled)"
    )
    print(f"\nThe mirror is {db}. Try:\n")
    for name, kind, demo in demos:
        for example in demo.examples:
            print(f'  sqlite3 {db} "{views.example_sql(name, kind, example)}"')
    print('\n(every entity of both feeds has such a view: README, "Query the mirror")')
