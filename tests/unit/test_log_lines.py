"""Log lines stay whole when threads log at once (the daemon polls each source
in its own thread, the publisher in another)."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator

import orjson
import pytest
import structlog

from edsync.ops import logs
from edsync.settings import LogSettings


class Recording:
    """A stderr that keeps each ``write`` call apart."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], Recording]]:
    """``stderr()`` swaps in a Recording: called in the test itself, as pytest's
    capture puts its own stream back between a fixture's setup and the test."""
    logs.configure(LogSettings(level="info", format="json"))

    def swap() -> Recording:
        recording = Recording()
        monkeypatch.setattr(sys, "stderr", recording)
        return recording

    yield swap
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if type(h).__name__ == "_StderrHandler"]:
        root.removeHandler(handler)


def test_each_line_is_one_write_ending_in_its_newline(stderr: Callable[[], Recording]) -> None:
    written = stderr()
    structlog.get_logger("edsync.test").info("page_applied", source="a", count=3)
    logging.getLogger("apscheduler.scheduler").warning("Run time of job was missed")
    assert len(written.writes) == 2
    for text in written.writes:
        assert text.endswith("\n")
        assert text.count("\n") == 1
        assert isinstance(orjson.loads(text), dict)


def test_lines_from_many_threads_each_read_as_json(stderr: Callable[[], Recording]) -> None:
    written = stderr()
    start = threading.Barrier(8)

    def work(n: int) -> None:
        log = structlog.get_logger("edsync.test")
        start.wait()
        for i in range(200):
            log.info("poll_done", source=f"s{n}", cursor=str(i))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = "".join(written.writes).splitlines()
    assert len(lines) == 8 * 200
    assert all(orjson.loads(line)["event"] == "poll_done" for line in lines)
