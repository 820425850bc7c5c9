"""structlog setup: JSON lines for machines, readable lines on a terminal."""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog

from edsync.config import LogSettings


class _StderrLogger:
    """Writes to whatever ``sys.stderr`` is *now*, so a live progress bar can
    redirect log lines above itself."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def _logger_factory(*_args: Any) -> _StderrLogger:
    return _StderrLogger()


def _json(event_dict: Any, **_kw: Any) -> str:
    return orjson.dumps(event_dict, default=str).decode()


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
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[settings.level.upper()]
        ),
        logger_factory=_logger_factory,
        cache_logger_on_first_use=False,
    )
