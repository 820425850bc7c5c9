"""How daemons share the sources out (SPEC 8): the pure decisions."""

from __future__ import annotations

import pytest

from edsync.run.daemon import coordination_interval
from edsync.run.sharing import Share, plan_share

NAMES = [f"district-{n:04d}" for n in range(1000)]


def settle(held: dict[str, set[str]], rounds: int = 6) -> dict[str, set[str]]:
    """Daemons taking turns at ``plan_share`` until nothing moves; claims of a
    source another took first in the same round fail, as pg_try_advisory_lock's do."""
    held = {member: set(sources) for member, sources in held.items()}
    for _ in range(rounds):
        for member, mine in held.items():
            others = set().union(*(h for m, h in held.items() if m != member))
            share = plan_share(NAMES, mine, others, members=len(held), busy=(), member=member)
            mine -= set(share.release)
            mine |= {s for s in share.claim if s not in others}
    return held


def simulate(members: list[str]) -> dict[str, set[str]]:
    return settle({member: set() for member in members})


def test_four_daemons_hold_a_quarter_each_and_never_the_same_source() -> None:
    held = simulate(["a", "b", "c", "d"])
    assert sorted(len(h) for h in held.values()) == [250, 250, 250, 250]
    assert set().union(*held.values()) == set(NAMES)


def test_the_first_to_start_takes_all_then_hands_back_down_to_its_share() -> None:
    alone = plan_share(NAMES, set(), set(), members=1, busy=(), member="a")
    assert set(alone.claim) == set(NAMES)
    joined = plan_share(NAMES, set(NAMES), set(), members=4, busy=(), member="a")
    assert len(joined.release) == 750
    assert joined.claim == ()


def test_a_source_mid_poll_is_never_handed_back() -> None:
    busy = set(NAMES[:900])
    share = plan_share(NAMES, set(NAMES), set(), members=4, busy=busy, member="a")
    assert not set(share.release) & busy
    assert len(share.release) == 100  # what is idle now; the rest on a later round


def test_a_dead_daemons_sources_go_to_the_survivors_and_newcomers_even_out() -> None:
    held = simulate(["a", "b", "c", "d"])
    del held["d"]
    survivors = settle(held)
    assert set().union(*survivors.values()) == set(NAMES)
    assert all(332 <= len(h) <= 334 for h in survivors.values())  # ceil(1000 / 3) at most

    five = settle({**survivors, "e": set(), "f": set()})
    assert sorted(len(h) for h in five.values()) == [200] * 5


def test_a_source_removed_from_the_config_is_handed_back_at_once() -> None:
    share = plan_share(NAMES[:10], {"district-0000", "gone"}, set(), members=1, busy=(), member="a")
    assert share.release == ("gone",)
    assert set(share.claim) == set(NAMES[1:10])


def test_claims_of_different_daemons_mostly_differ() -> None:
    a = plan_share(NAMES, set(), set(), members=4, busy=(), member="a")
    b = plan_share(NAMES, set(), set(), members=4, busy=(), member="b")
    assert len(a.claim) == len(b.claim) == 250
    assert len(set(a.claim) & set(b.claim)) < 125


def test_nothing_moves_at_the_share() -> None:
    mine = set(NAMES[:250])
    others = set(NAMES[250:])
    assert plan_share(NAMES, mine, others, members=4, busy=(), member="a") == Share()


@pytest.mark.parametrize(
    ("intervals", "expected"),
    [([1.0], 0.5), ([60.0, 300.0], 15.0), ([10.0], 5.0), ([0.2], 0.5), ([], 15.0)],
)
def test_the_coordinator_runs_twice_per_shortest_interval_within_bounds(
    intervals: list[float], expected: float
) -> None:
    assert coordination_interval(intervals) == expected
