"""Fixtures of the end-to-end tests that run `edsync run` as a real process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import DaemonProcess


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    """The daemons a test starts (append them): killed at its end if still running."""
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        daemon.close()


@pytest.fixture
def start_daemon(daemons: list[DaemonProcess]) -> Callable[..., DaemonProcess]:
    """``start_daemon(config, **env)``: `edsync run` on ``config`` with ``env``
    added to the environment, closed at the test's end."""

    def factory(config: Path, **env: str) -> DaemonProcess:
        daemon = DaemonProcess(config, env)
        daemons.append(daemon)
        return daemon

    return factory
