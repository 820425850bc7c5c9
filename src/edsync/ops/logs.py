"""structlog setup: JSON lines for machines, readable lines on a terminal."""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

import orjson
import structlog

from edsync.settings import LogSettings

_WRITING = threading.Lock()


def write_line(message: str) -> None:
    """One log line to whatever ``sys.stderr`` is *now* (a live progress bar
    redirects it above itself), whole: in one write, under one lock shared by
    every thread, as ``print`` writes the text and its newline apart and two
    threads' lines ran together (``{...}{...}``), unreadable to a JSON reader."""
    with _WRITING:
        stream = sys.stderr
        stream.write(message + "\n")
        stream.flush()


class _StderrLogger:
    """structlog's end of the pipeline: ``write_line``."""

    def msg(self, message: str) -> None:
        write_line(message)

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def _logger_factory(*_args: Any) -> _StderrLogger:
    return _StderrLogger()


def _json(event_dict: Any, **_kw: Any) -> str:
    return orjson.dumps(event_dict, default=str).decode()


class _StderrHandler(logging.Handler):
    """The stdlib end of the pipeline: library records, rendered by structlog,
    through ``write_line`` (as ``_StderrLogger``)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            write_line(self.format(record))
        except Exception:  # noqa: BLE001 - logging's own contract: report, never raise
            self.handleError(record)


def configure(settings: LogSettings) -> None:
    fmt = settings.format
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: Any = (
        # Plain tracebacks whether or not structlog saw rich (see cli.main).
        structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
        if fmt == "console"
        else structlog.processors.JSONRenderer(serializer=_json)
    )
    # JSON needs the traceback as a string; the console renderer formats it itself.
    tracebacks: list[Any] = [] if fmt == "console" else [structlog.processors.format_exc_info]
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    level = logging.getLevelNamesMapping()[settings.level.upper()]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamp,
            *tracebacks,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_logger_factory,
        cache_logger_on_first_use=False,
    )
    _route_stdlib(renderer, [structlog.processors.add_log_level, stamp, *tracebacks], level)


def _route_stdlib(renderer: Any, chain: list[Any], level: int) -> None:
    """Every library's stdlib logging (APScheduler, httpx, alembic) comes out
    as edsync's own lines, so a JSON log stays all JSON. Below ``debug`` only
    their warnings: their info lines (each HTTP request, each job run) are noise."""
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *chain],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if level <= logging.DEBUG else max(level, logging.WARNING))
