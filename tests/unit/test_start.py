"""Where a drain starts: the pure decision over the checkpoint (SPEC 2.1, 2.2)."""

from __future__ import annotations

import pytest

from edsync.model import Cursor
from edsync.run.start import NEW_MIRROR, Bootstrap, Gap, Resume, plan_start

DAY = 86400.0
AT = Cursor("5e1a7c7e-0b6f-4d7e-8f57-4c0a3c1b0009", 9)


def test_a_new_mirror_bootstraps_when_the_kind_can_snapshot() -> None:
    start = plan_start(None, gap=None, age=None, retention=30 * DAY, can_snapshot=True)
    assert start == Bootstrap(NEW_MIRROR)


def test_a_new_mirror_of_a_kind_without_snapshot_reads_the_feed_from_its_start() -> None:
    assert plan_start(None, gap=None, age=None, retention=None, can_snapshot=False) == Resume(None)


def test_a_checkpoint_resumes_where_it_stopped() -> None:
    start = plan_start(AT, gap=None, age=29 * DAY, retention=30 * DAY, can_snapshot=True)
    assert start == Resume(AT)


def test_a_recorded_gap_stays_a_gap_until_resolved() -> None:
    start = plan_start(AT, gap="INVALID_CURSOR", age=1.0, retention=30 * DAY, can_snapshot=True)
    assert start == Gap("INVALID_CURSOR")


@pytest.mark.parametrize("can_snapshot", [True, False])
def test_a_checkpoint_older_than_the_retention_is_a_gap(can_snapshot: bool) -> None:
    start = plan_start(AT, gap=None, age=31 * DAY, retention=30 * DAY, can_snapshot=can_snapshot)
    assert isinstance(start, Gap)
    assert "31.0 days old" in start.reason
    assert "retention of 30 days" in start.reason


def test_a_feed_without_retention_never_ages_into_a_gap() -> None:
    start = plan_start(AT, gap=None, age=3650 * DAY, retention=None, can_snapshot=True)
    assert start == Resume(AT)
