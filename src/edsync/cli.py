"""``edsync`` command line (SPEC 7). Errors become exit codes in one place."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from edsync.config import load_config, resolve_path
from edsync.errors import ConfigError, EdsyncError
from edsync.settings import Config

if TYPE_CHECKING:
    from edsync.mirror import Mirror
    from edsync.mirror.db import Access

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h, which systemd understands
SIM_WEBHOOK_AUTHORIZATION = "EDSYNC_SIM_WEBHOOK_AUTHORIZATION"
"""``simulate --webhook-url``: the variable holding the Authorization value it sends."""


class UsageError(EdsyncError):
    """Arguments that parse but make no sense (an unknown --source)."""


def exit_code(exc: EdsyncError) -> int:
    """The one mapping from the exception tree to process exit codes."""
    if isinstance(exc, ConfigError):
        return EXIT_CONFIG
    if isinstance(exc, UsageError):
        return EXIT_USAGE
    return EXIT_FAILURE


def _config(args: argparse.Namespace, *, secrets: bool = True) -> Config:
    from edsync.ops import logs

    config = load_config(resolve_path(args.config), secrets=secrets)
    logs.configure(config.log)
    return config


def _engine(config: Config, *, access: Access = "create", migrate: bool = True) -> Mirror:
    """The mirror, opened for ``access`` (see ``mirror.db.Access``): only the
    commands that fill it create it; the read-only ones never write to it."""
    from edsync.mirror.db import create_mirror_engine, ensure_schema, require_mirror
    from edsync.sources import source_records

    engine = create_mirror_engine(config.mirror, config.path, access=access)
    _engines.append(engine)
    if access == "read" and migrate:
        require_mirror(engine, config.path)
        ensure_schema(engine, auto_migrate=False)  # read-only: never migrates
    elif migrate:
        ensure_schema(
            engine, auto_migrate=config.mirror.auto_migrate, sources=source_records(config.sources)
        )
    return engine


# Engines a command opened; ``main`` disposes them, so no connection outlives it.
_engines: list[Mirror] = []


def _selected_sources(config: Config, names: Sequence[str] | None) -> list[str]:
    if not names:
        return list(config.sources)
    unknown = [n for n in names if n not in config.sources]
    if unknown:
        raise UsageError(
            f"no source named {', '.join(unknown)} in {config.path} "
            f"(sources: {', '.join(config.sources) or 'none'})"
        )
    return list(names)


def _progress(show: bool) -> AbstractContextManager[Any]:
    if show and sys.stderr.isatty():
        from edsync.ops.ui import RichProgress

        return RichProgress()
    return nullcontext(None)


def cmd_run(args: argparse.Namespace) -> int:
    from edsync.run.daemon import Daemon
    from edsync.run.stopping import Stopper, tune_gc, tune_malloc

    config = _config(args)
    engine = _engine(config)
    tune_gc()
    tune_malloc()
    daemon = Daemon(resolve_path(args.config), config, engine, stopper=Stopper())
    with daemon.stopper.on_signals(reload=daemon.reload.set):
        return daemon.serve()


def cmd_backfill(args: argparse.Namespace) -> int:
    from edsync.model import Bounds
    from edsync.run.backfill import run_backfill
    from edsync.run.stopping import Stopper, run_stoppable, tune_gc, tune_malloc

    config = _config(args)
    names = _selected_sources(config, args.source)
    engine = _engine(config)
    tune_gc()
    tune_malloc()
    stopper = Stopper()
    with stopper.on_signals(), _progress(True) as progress:
        outcome = run_stoppable(
            lambda: run_backfill(
                config,
                engine,
                names,
                bounds=Bounds(since=args.since, until=args.until),
                reset=args.reset,
                progress=progress,
                stopper=stopper,
                deliver=not args.no_deliver,
            ),
            stopper,
        )
    for name, error in outcome.failures.items():
        print(f"edsync: source {name!r} failed: {error}", file=sys.stderr)
    if outcome.undelivered:
        print(
            f"edsync: {outcome.undelivered} deliveries not made; they stay in the outbox "
            "(edsync status; edsync deliver)",
            file=sys.stderr,
        )
    return EXIT_OK if outcome.ok else EXIT_FAILURE


def cmd_deliver(args: argparse.Namespace) -> int:
    from edsync.publisher import Publisher

    config = _config(args)
    engine = _engine(config, access="write")
    publisher = Publisher(engine, config)
    try:
        if args.retry_failed:
            print(f"{publisher.retry_failed()} failed deliveries queued again")
        report = publisher.round(due_only=False)
    finally:
        publisher.close()
    print(
        f"delivered {report.delivered}, retry later {report.retried}, failed {report.failed}, "
        f"pending {report.pending}"
    )
    return EXIT_OK if report.pending == 0 and report.failed == 0 else EXIT_FAILURE


def cmd_quarantine(args: argparse.Namespace) -> int:
    from edsync.run import quarantine

    config = _config(args, secrets=False)  # normalizing needs no credentials
    names = _selected_sources(config, args.source)
    engine = _engine(config, access="read" if args.action == "list" else "write")
    if args.action == "list":
        items = quarantine.list_quarantined(engine, names)
        if args.json or not sys.stdout.isatty():
            for item in items:
                line = {k: _shown(getattr(item, k)) for k in item.__slots__ if k != "payload"}
                sys.stdout.write(orjson.dumps(line).decode() + "\n")
        else:
            from edsync.ops.ui import print_table

            columns = ["source", "event_id", "position", "type", "reason", "received_at"]
            print_table(
                f"{len(items)} quarantined events",
                columns,
                [[_shown(getattr(item, c)) for c in columns] for item in items],
            )
        return EXIT_OK
    report = quarantine.retry(config, engine, names)
    print(
        f"applied {report.applied}, stale {report.stale}, "
        f"still quarantined {report.still_quarantined}"
    )
    return EXIT_OK


def _shown(value: object) -> object:
    """A value as the listings print it: a time as ISO 8601, to the microsecond."""
    return value.isoformat(timespec="microseconds") if isinstance(value, dt.datetime) else value


def cmd_status(args: argparse.Namespace) -> int:
    from edsync.ops.status import collect

    config = _config(args, secrets=False)  # reads the mirror only
    engine = _engine(config, access="read")
    report = collect(config, engine)
    if args.json or not sys.stdout.isatty():
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
        return EXIT_OK
    from rich.console import Console

    from edsync.ops.status import render

    render(report, Console())
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """One line per source and sink: reachable with these credentials, or why not."""
    import httpx

    from edsync import sinks, sources

    config = _config(args)
    failed = 0
    for name, settings in config.sources.items():
        source = sources.create(settings)
        try:
            print(f"source {name}: ok ({source.probe()})")
        except EdsyncError as exc:
            failed += 1
            print(f"source {name}: FAILED: {exc}")
        finally:
            source.close()
    for name, sink in config.sinks.items():
        try:
            print(f"sink {name}: ok ({sinks.probe(sink)})")
        except EdsyncError as exc:
            failed += 1
            print(f"sink {name}: FAILED: {exc}")
        except httpx.HTTPError as exc:
            failed += 1
            print(f"sink {name}: FAILED: cannot connect ({type(exc).__name__})")
    return EXIT_OK if not failed else EXIT_FAILURE


def cmd_db(args: argparse.Namespace) -> int:
    from edsync.mirror.db import current_revision, head_revision, upgrade
    from edsync.sources import source_records

    config = _config(args, secrets=False)
    engine = _engine(config, access="create" if args.action == "upgrade" else "read", migrate=False)
    if args.action == "views":
        return _print_views(config, engine)
    if args.action == "upgrade":
        upgrade(engine, source_records(config.sources))
    print(f"current: {current_revision(engine) or 'none'}  head: {head_revision()}")
    return EXIT_OK


def _print_views(config: Config, engine: Mirror) -> int:
    """``db views``: each configured source's views and their columns."""
    from edsync.mirror import views
    from edsync.mirror.db import backend, location
    from edsync.ops.ui import print_table
    from edsync.sources import source_records

    planned, skipped = views.plan(source_records(config.sources), backend(engine))
    current = views.present(engine, planned)
    rows = [
        [
            view.name if view.name in current else f"{view.name} (run edsync db upgrade)",
            ", ".join(f"{column} {type_}" for column, type_ in view.columns),
        ]
        for view in planned
    ]
    rows += [[f"({s.source} {s.entity}: none)", s.reason] for s in skipped]
    print_table(f"views in {location(engine)}", ["view", "columns"], rows)
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from edsync_sim import serve_forever

    code: int = serve_forever(
        port=args.port,
        events=args.events,
        seed=args.seed,
        rate=args.rate,
        webhook_url=args.webhook_url,
        webhook_authorization=os.environ.get(SIM_WEBHOOK_AUTHORIZATION, ""),
    )
    return code


def cmd_demo(args: argparse.Namespace) -> int:
    from edsync.ops.demo import DemoFileError, run_demo

    try:
        return run_demo(events=args.events, db=Path(args.db))
    except DemoFileError as exc:
        raise UsageError(f"--db: {exc}") from None


def _parser() -> argparse.ArgumentParser:
    from edsync import __version__

    parser = argparse.ArgumentParser(
        prog="edsync", description="Mirror DreamApply and Edlink change feeds into SQL."
    )
    parser.add_argument("--version", action="version", version=f"edsync {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], int], help_: str) -> Any:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-c", "--config", help="config file (default: $EDSYNC_CONFIG, then ./edsync.toml)"
        )

    p = command("run", cmd_run, "the daemon: poll every source on its interval until SIGTERM")
    with_config(p)

    p = command("backfill", cmd_backfill, "drain the feeds until caught up, then exit")
    with_config(p)
    p.add_argument("--source", action="append", help="only this source (repeatable)")
    p.add_argument(
        "--since",
        help="where a source with no cursor and no snapshot starts: at this event id, "
        "or at the first event dated at or after this ISO 8601 time",
    )
    p.add_argument(
        "--until",
        help="stop after this event id, or after the last event dated at or before this "
        "ISO 8601 time (inclusive; digits are an id, so is anything not ISO 8601)",
    )
    p.add_argument("--reset", action="store_true", help="forget the cursor and start over")
    p.add_argument("--no-deliver", action="store_true", help="leave raised signals in the outbox")

    p = command("deliver", cmd_deliver, "send the pending signals in the outbox once, then exit")
    with_config(p)
    p.add_argument("--retry-failed", action="store_true", help="send failed deliveries again")

    p = command("quarantine", cmd_quarantine, "show or re-apply quarantined events")
    with_config(p)
    p.add_argument("action", choices=["list", "retry"])
    p.add_argument("--source", action="append", help="only this source (repeatable)")
    p.add_argument("--json", action="store_true", help="JSON lines (list)")

    p = command("status", cmd_status, "per-source cursor, counts, health")
    with_config(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command("check", cmd_check, "validate the config and reach every source")
    with_config(p)

    p = command("db", cmd_db, "run or show the schema migrations; list the typed views")
    with_config(p)
    p.add_argument("action", choices=["upgrade", "current", "views"])

    p = command(
        "simulate",
        cmd_simulate,
        "serve simulated DreamApply, Edlink and Learning Hub APIs on 127.0.0.1",
    )
    p.add_argument(
        "--port", type=int, default=8765, help="port on 127.0.0.1 to listen on (default: 8765)"
    )
    p.add_argument(
        "--events",
        type=int,
        default=10_000,
        help="DreamApply journal events in the generated dataset (default: 10000)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="dataset seed: the same seed, the same data (default: 0)",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="new journal events appended per second while it runs (default: 0)",
    )
    p.add_argument(
        "--webhook-url",
        help="POST each new DreamApply journal event there, as DreamApply's webhooks do "
        f"(Authorization: the value of ${SIM_WEBHOOK_AUTHORIZATION})",
    )

    p = command("demo", cmd_demo, "simulator → backfill → SQLite, then a summary")
    p.add_argument(
        "--events",
        type=int,
        default=20_000,
        help="DreamApply journal events the simulator generates (default: 20000)",
    )
    p.add_argument(
        "--db",
        default="edsync-demo.db",
        help="the SQLite mirror file to create; an earlier demo's file there is started "
        "afresh (default: edsync-demo.db)",
    )
    return parser


def _import_structlog_without_rich() -> None:
    """Import structlog with rich hidden from it.

    structlog imports rich when it can, only to offer rich tracebacks, which
    edsync's renderers do not use; that import cost a caught-up run about
    50 ms of its 0.5 s. rich still loads when a progress bar or table needs it.
    """
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    modules: dict[str, Any] = sys.modules  # None there makes `import rich` fail
    modules["rich"] = None
    try:
        import structlog  # noqa: F401
    finally:
        del sys.modules["rich"]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _import_structlog_without_rich()  # after parsing: --help and usage errors need no logging
    try:
        # The mirror unreachable, locked or broken is a MirrorError: said
        # without a traceback, like every other error edsync knows.
        code: int = args.func(args)
    except EdsyncError as exc:
        print(f"edsync: error: {exc}", file=sys.stderr)
        return exit_code(exc)
    finally:
        while _engines:
            _engines.pop().dispose()
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
