"""DreamApply's quota: requests spread evenly, never more than the quota in any
60 s window, and nothing at all while a 429 says to hold off (SPEC 2.1)."""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from edsync.pacing import WINDOW, Pacer, next_start, throttled_until


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def busiest_window(starts: Sequence[float]) -> int:
    """The most starts in any half-open window [t, t + 60) (the busiest one opens at a start)."""
    ordered = sorted(starts)
    return max(bisect.bisect_left(ordered, s + WINDOW) - i for i, s in enumerate(ordered))


def paced(pacer: Pacer, t: FakeTime, gaps: Sequence[float]) -> list[float]:
    """Acquire once after each idle gap; the start times."""
    starts = []
    for gap in gaps:
        t.now += gap
        pacer.acquire()
        starts.append(t.now)
    return starts


# -- the pure decisions -----------------------------------------------------------------


def test_the_first_request_starts_at_once() -> None:
    assert next_start(5.0, starts=[], interval=1 / 3, cap=180, paused_until=0.0) == 5.0


def test_the_next_start_is_one_interval_after_the_last() -> None:
    assert next_start(10.0, starts=[9.9], interval=1.0, cap=60, paused_until=0.0) == 10.9
    assert next_start(12.0, starts=[9.9], interval=1.0, cap=60, paused_until=0.0) == 12.0


def test_a_full_window_holds_the_next_start_until_its_oldest_has_aged_out() -> None:
    starts = [0.0, 1.0, 2.0]
    assert next_start(2.5, starts=starts, interval=0.5, cap=3, paused_until=0.0) == 60.0
    assert next_start(2.5, starts=starts, interval=0.5, cap=4, paused_until=0.0) == 2.5


def test_a_pause_holds_the_next_start() -> None:
    assert next_start(3.0, starts=[2.9], interval=1.0, cap=60, paused_until=10.0) == 10.0


def test_after_a_429_retry_after_decides() -> None:
    assert throttled_until(100.0, 7.0, [50.0, 99.0]) == 107.0
    assert throttled_until(100.0, 0.0, [99.0]) == 100.0


def test_after_a_429_without_retry_after_the_window_that_filled_must_pass() -> None:
    # 41.0 left the window at 101.0; 45.0 is its oldest start.
    assert throttled_until(101.0, None, [41.0, 45.0, 99.0, 100.5]) == 105.0


def test_after_a_429_with_no_start_in_the_window_the_backoff_decides() -> None:
    assert throttled_until(100.0, None, []) is None
    assert throttled_until(100.0, None, [10.0, 40.0]) is None


# -- the pacer on a fake clock ------------------------------------------------------------


def test_one_request_every_third_of_a_second_from_the_first() -> None:
    """Replaces the token bucket's burst of three: no two requests start at once."""
    t = FakeTime()
    pacer = Pacer(180, clock=t.clock, sleep=t.sleep)
    for _ in range(9):
        pacer.acquire()
    assert len(t.slept) == 8
    assert all(abs(s - 1 / 3) < 1e-9 for s in t.slept)
    assert abs(t.now - 8 / 3) < 1e-9


def test_a_minute_never_sees_more_than_the_quota() -> None:
    """Was ``<= 180 + 3`` with the token bucket; now the quota itself."""
    t = FakeTime()
    pacer = Pacer(180, clock=t.clock, sleep=t.sleep)
    starts = paced(pacer, t, [0.0] * 400)
    assert busiest_window(starts) == 180


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.sampled_from([0.0, 0.0, 0.0, 0.001, 0.2, 1 / 3, 1.0, 30.0, 59.9, 60.0, 61.0]),
        min_size=1000,
        max_size=1000,
    ),
    st.sampled_from([180, 60, 7]),
)
def test_no_60s_window_ever_holds_more_than_the_quota(gaps: list[float], quota: int) -> None:
    """Any 1000 acquires, whatever the idle time between them."""
    t = FakeTime()
    t.now = 1_000_000.0  # far from zero, where float spacing is coarser
    pacer = Pacer(quota, clock=t.clock, sleep=t.sleep)
    starts = paced(pacer, t, gaps)
    assert busiest_window(starts) <= quota
    spacing = [b - a for a, b in itertools.pairwise(starts)]
    assert min(spacing) >= 60 / quota - 1e-6


def test_idle_time_earns_no_burst() -> None:
    """Replaces "idle time refills only up to the burst" (one free request after an hour)."""
    t = FakeTime()
    pacer = Pacer(60, clock=t.clock, sleep=t.sleep)
    t.now = 3600.0
    for _ in range(4):
        pacer.acquire()
    assert t.slept == [1.0, 1.0, 1.0]


def test_zero_turns_pacing_off() -> None:
    t = FakeTime()
    pacer = Pacer(0, clock=t.clock, sleep=t.sleep)
    for _ in range(1000):
        pacer.acquire()
    assert t.slept == []
    assert pacer.throttled(None) is None  # no window known: the backoff decides


def test_after_a_429_with_retry_after_nothing_starts_for_that_long() -> None:
    t = FakeTime()
    pacer = Pacer(180, clock=t.clock, sleep=t.sleep)
    pacer.acquire()
    t.now = 0.25  # the 429 comes back
    assert pacer.throttled(7.0) == 7.0
    pacer.acquire()
    assert t.now == 7.25
    pacer.acquire()
    assert abs(t.now - (7.25 + 1 / 3)) < 1e-9  # then paced as before


def test_after_a_429_without_retry_after_nothing_starts_until_the_window_has_passed() -> None:
    t = FakeTime()
    pacer = Pacer(180, clock=t.clock, sleep=t.sleep)
    t.now = 100.0
    starts = paced(pacer, t, [0.0] * 30)  # the last at 109.667
    assert pacer.throttled(None) == 160.0 - t.now
    pacer.acquire()
    assert t.now == 160.0 == starts[0] + WINDOW


def test_a_pause_holds_a_thread_that_is_already_waiting_for_its_turn() -> None:
    t = FakeTime()
    pacer = Pacer(60, clock=t.clock, sleep=t.sleep)
    pacer.acquire()

    def sleep(seconds: float) -> None:
        if not t.slept:  # another thread gets a 429 while this one sleeps
            pacer.pause_until(30.0)
        t.sleep(seconds)

    pacer.sleep = sleep
    pacer.acquire()
    assert t.now == 30.0
    assert t.slept == [1.0, 29.0]


def test_a_shorter_pause_does_not_cut_a_longer_one() -> None:
    t = FakeTime()
    pacer = Pacer(0, clock=t.clock, sleep=t.sleep)
    assert pacer.throttled(30.0) == 30.0
    assert pacer.throttled(2.0) == 30.0
    pacer.acquire()
    assert t.now == 30.0


def test_a_retry_after_pauses_an_unpaced_client_too() -> None:
    t = FakeTime()
    pacer = Pacer(0, clock=t.clock, sleep=t.sleep)
    pacer.throttled(7.0)
    pacer.acquire()
    assert t.slept == [7.0]


# -- threads share one pacer ---------------------------------------------------------------


def test_threads_sharing_a_pacer_keep_the_spacing() -> None:
    """Real clock, tiny interval (0.2 ms): about 50 ms of sleeping in all."""
    pacer = Pacer(300_000)
    barrier = threading.Barrier(6)

    def work() -> None:
        barrier.wait()
        for _ in range(40):
            pacer.acquire()

    threads = [threading.Thread(target=work) for _ in range(6)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    starts = list(pacer.starts)
    assert len(starts) == 240
    assert starts == sorted(starts)
    assert starts[0] >= started
    spacing = [b - a for a, b in itertools.pairwise(starts)]
    assert min(spacing) >= pacer.interval - 1e-9  # monotonic()'s rounding
