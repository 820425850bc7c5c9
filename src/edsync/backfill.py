"""The burst mode: drain the selected sources until caught up, then return."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog
from sqlalchemy import Engine

from edsync import sources
from edsync.config import Config
from edsync.errors import EdsyncError
from edsync.mirror import checkpoints
from edsync.sources.base import Bounds
from edsync.sync import DrainResult, Progress, drain

log = structlog.get_logger("edsync.backfill")


@dataclass(slots=True)
class Outcome:
    results: list[DrainResult] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures


def run_backfill(
    config: Config,
    engine: Engine,
    names: Sequence[str],
    *,
    bounds: Bounds | None = None,
    reset: bool = False,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    gate: threading.Lock | None = None,
) -> Outcome:
    """Drain each source in turn; one source's failure does not stop the others."""
    outcome = Outcome()
    for name in names:
        settings = config.sources[name]
        if reset:
            checkpoints.reset(engine, name)
            log.info("cursor_reset", source=name)
        source = sources.create(settings)
        try:
            result = drain(
                engine,
                source,
                bounds=bounds,
                on_invalid=settings.on_invalid,
                progress=progress,
                stop=stop,
                gate=gate,
            )
        except EdsyncError as exc:
            outcome.failures[name] = str(exc)
            checkpoints.record_failure(engine, name, str(exc))
            log.error("source_failed", source=name, error=str(exc), kind=type(exc).__name__)
        else:
            outcome.results.append(result)
            log.info(
                "source_drained",
                source=name,
                pages=result.pages,
                applied=result.applied,
                stale=result.stale,
                quarantined=result.quarantined,
                duplicates=result.duplicates,
                cursor=result.cursor.value if result.cursor else None,
            )
        finally:
            source.close()
        if stop is not None and stop.is_set():
            break
    return outcome
