"""DreamApply's quota: requests spread evenly, never a minute's worth at once."""

from __future__ import annotations

from edsync.http import Pacer


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_burst_of_three_then_one_request_every_third_of_a_second() -> None:
    t = FakeTime()
    pacer = Pacer(180, burst=3, clock=t.clock, sleep=t.sleep)
    for _ in range(9):
        pacer.acquire()
    assert t.slept[:1] == [1 / 3]
    assert len(t.slept) == 6
    assert all(abs(s - 1 / 3) < 1e-9 for s in t.slept)
    assert abs(t.now - 2.0) < 1e-9  # 9 requests: 3 at once, then 6 at 180/min


def test_a_minute_never_sees_more_than_the_quota() -> None:
    t = FakeTime()
    pacer = Pacer(180, burst=3, clock=t.clock, sleep=t.sleep)
    stamps = []
    for _ in range(400):
        pacer.acquire()
        stamps.append(t.now)
    for i, start in enumerate(stamps):
        in_window = [s for s in stamps[i:] if s < start + 60]
        assert len(in_window) <= 180 + 3


def test_idle_time_refills_only_up_to_the_burst() -> None:
    t = FakeTime()
    pacer = Pacer(60, burst=3, clock=t.clock, sleep=t.sleep)
    t.now = 3600.0
    for _ in range(4):
        pacer.acquire()
    assert t.slept == [1.0]


def test_zero_turns_pacing_off() -> None:
    t = FakeTime()
    pacer = Pacer(0, clock=t.clock, sleep=t.sleep)
    for _ in range(1000):
        pacer.acquire()
    assert t.slept == []
