"""Fixtures of the end-to-end tests that run `edsync run` as a real process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.daemon import DaemonProcess


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    """The daemons a test starts (append them): killed at its end if still running."""
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        daemon.close()
