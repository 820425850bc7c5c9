"""The simulator's list endpoints and forgetting journal, without HTTP: selection,
the registry behind it, and its agreement with the journal's own history."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import pytest

from edsync_sim.dataset import (
    EXPANDABLE,
    FIRST_IDS,
    OFFER_TYPES,
    RECORD_KINDS,
    Entity,
    Journal,
    offer_status,
)
from edsync_sim.dreamapply import BadQueryError, parse_query, select
from edsync_sim.dreamapply_lists import (
    MAX_LIST_LIMIT,
    MAX_LIST_LIMIT_EXPANDED,
    ListQuery,
    parse_list_query,
    select_entities,
    select_purges,
)

KINDS = ("applicant", "application", "offer")


@pytest.fixture(scope="module")
def journal() -> Journal:
    return Journal(6000, seed=11)


def events(journal: Journal) -> list[dict[str, Any]]:
    """Every event, expanded, in journal order."""
    fragments = journal.fragments(EXPANDABLE, range(len(journal)))
    body = orjson.loads(b"{" + b",".join(fragments) + b"}")
    return [body[str(i)] for i in range(1, len(journal) + 1)]


def live_ids(journal: Journal, kind: str) -> list[int]:
    return [e.id for e in journal.registry.entities(kind) if e.live]


# -- parameters -----------------------------------------------------------------


def test_parse_list_query_defaults_and_silent_caps() -> None:
    assert parse_list_query({}) == ListQuery(None, None, MAX_LIST_LIMIT, frozenset())
    assert parse_list_query({"limit": "99999"}).limit == MAX_LIST_LIMIT
    expanded = parse_list_query({"expand": "applicant", "limit": "99999"})
    assert (expanded.limit, expanded.expand) == (MAX_LIST_LIMIT_EXPANDED, frozenset({"applicant"}))
    assert parse_list_query({"expand": "applicant"}).limit == MAX_LIST_LIMIT_EXPANDED
    assert parse_list_query({"bySince": "1005", "byUntil": " 1010 ", "limit": "3"}) == ListQuery(
        1005, 1010, 3, frozenset()
    )
    assert parse_list_query({"bySince": "", "expand": ""}) == ListQuery()


@pytest.mark.parametrize(
    "params",
    [
        {"bySince": "x"},
        {"byUntil": "-3"},
        {"bySince": "2026-06-01"},
        {"limit": "0"},
        {"limit": "a"},
    ],
)
def test_bad_list_parameters_raise(params: dict[str, str]) -> None:
    with pytest.raises(BadQueryError):
        parse_list_query(params)


# -- selection --------------------------------------------------------------------


def test_paging_by_since_covers_every_live_applicant_once(journal: Journal) -> None:
    entities = journal.registry.entities("applicant")
    first = FIRST_IDS["applicant"]
    total, _ = select_entities(entities, first, ListQuery())
    seen: list[int] = []
    since = 0
    while True:
        count, page = select_entities(entities, first, ListQuery(since=since, limit=7))
        if not page:
            break
        assert count <= total
        seen.extend(e.id for e in page)
        since = page[-1].id + 1
    assert seen == live_ids(journal, "applicant")
    assert len(seen) == total
    assert len(seen) < len(entities), "some applicants should be deleted or forgotten"


def test_bounds_are_inclusive_ids_and_count_ignores_limit(journal: Journal) -> None:
    entities = journal.registry.entities("application")
    first = FIRST_IDS["application"]
    ids = live_ids(journal, "application")
    low, high = ids[3], ids[20]
    count, page = select_entities(entities, first, ListQuery(since=low, until=high, limit=5))
    assert count == 18
    assert [e.id for e in page] == ids[3:8]
    assert select_entities(entities, first, ListQuery(until=first - 1))[0] == 0
    assert select_entities(entities, first, ListQuery(since=10**9))[0] == 0
    assert select_entities(entities, first, ListQuery(since=high, until=low))[0] == 0


def test_limit_cap_applies_to_selection() -> None:
    many = [Entity("applicant", 1 + i, f"/api/applicants/{1 + i}", {}) for i in range(40_000)]
    count, page = select_entities(many, 1, parse_list_query({"limit": "1000000"}))
    assert (count, len(page)) == (40_000, MAX_LIST_LIMIT)
    count, page = select_entities(many, 1, parse_list_query({"expand": "x", "limit": "9000"}))
    assert (count, len(page)) == (40_000, MAX_LIST_LIMIT_EXPANDED)


def test_purges_are_numbered_in_journal_order(journal: Journal) -> None:
    purges = journal.registry.purges
    numbers = list(purges)
    assert numbers == sorted(numbers)
    assert [p.purged for p in purges.values()] == sorted(p.purged for p in purges.values())
    count, page = select_purges(purges, ListQuery(since=numbers[2], until=numbers[9], limit=3))
    assert count == 8
    assert [p.number for p in page] == numbers[2:5]


# -- the registry agrees with the journal ---------------------------------------------


def plain_events(journal: Journal) -> list[dict[str, Any]]:
    """Every event as links, in journal order."""
    fragments = journal.fragments(frozenset(), range(len(journal)))
    body = orjson.loads(b"{" + b",".join(fragments) + b"}")
    return [body[str(i)] for i in range(1, len(journal) + 1)]


def test_listed_objects_are_what_the_newest_event_embeds(journal: Journal) -> None:
    # An expanded application or offer has no id (as the vendor prints them):
    # the item's link names it.
    newest: dict[tuple[str, int], dict[str, Any]] = {}
    for plain, event in zip(plain_events(journal), events(journal), strict=True):
        for kind in KINDS:
            if isinstance(event.get(kind), dict):
                newest[(kind, trailing_id(plain[kind]))] = event[kind]
    current = journal.current().records
    assert {kind for kind, _ in current} == set(RECORD_KINDS)
    for (kind, id_), data in current.items():
        if kind not in KINDS:
            continue
        expected = {"id": id_, **newest[(kind, id_)]}
        assert ("id" in newest[(kind, id_)]) == (kind == "applicant")
        if kind == "offer":
            expected["status"] = offer_status(expected)
        assert data == expected, (kind, id_)


def trailing_id(link: str) -> int:
    return int(link.rsplit("/", 1)[1])


def test_offer_status_is_the_type_title_the_names_carry(journal: Journal) -> None:
    truth = journal.truth()
    current = journal.current().records
    offers = [key for key in current if key[0] == "offer"]
    assert len(offers) > 50
    for key in offers:
        assert current[key]["status"] == truth[key].status
        offer = journal.registry.get("offer", key[1])
        assert offer is not None
        assert "status" not in offer.data()
    titles = {current[key]["status"] for key in offers}
    assert titles <= set(OFFER_TYPES.values())
    assert len(titles) >= 3


def expected_purges(
    truth: dict[tuple[str, int], Any], owners: dict[int, int], pending: Iterable[int] = ()
) -> dict[Any, str]:
    """What must be purged, from the journal and the requests to be forgotten no
    administrator confirmed yet (``pending``): deleted applicants, forgotten ones
    whose request was confirmed, closed applications, and the other
    applications of those applicants."""
    waiting = set(pending)
    purged: dict[tuple[str, int], str] = {}
    for (kind, id_), t in truth.items():
        if kind == "applicant" and t.forgotten and id_ in waiting:
            continue  # asked, not confirmed yet: still live
        if kind == "applicant" and (t.deleted or t.forgotten):
            purged[(kind, id_)] = "forgotten" if t.forgotten else "deleted"
        elif kind == "application" and t.deleted:
            purged[(kind, id_)] = "closed"
    for application, applicant in owners.items():
        reason = purged.get(("applicant", applicant))
        if reason is not None:
            purged.setdefault(("application", application), reason)
    return purged


def test_purged_are_exactly_the_removed(journal: Journal) -> None:
    owners = {
        trailing_id(event["application"]): trailing_id(event["applicant"])
        for event in plain_events(journal)
        if event["event"].startswith("Application was created")
    }
    state = journal.current()
    assert state.forget_requests, "some requests to be forgotten should still be pending"
    for applicant in state.forget_requests:
        assert ("applicant", applicant) in state.records
    expected = expected_purges(journal.truth(), owners, state.forget_requests)
    assert state.purged == expected
    assert set(expected.values()) == {"deleted", "forgotten", "closed"}
    orphans = [k for k, r in expected.items() if k[0] == "application" and r != "closed"]
    assert orphans, "some applications should go with their applicant"
    assert not state.purged.keys() & state.records.keys()


def test_live_means_neither_purged_nor_owned_by_the_purged(journal: Journal) -> None:
    state = journal.current()
    truth = journal.truth()
    for kind in ("applicant", "application"):
        known = {key for key in truth if key[0] == kind}
        listed = {key for key in state.records if key[0] == kind}
        assert listed | {k for k in state.purged if k[0] == kind} == known
    for kind, id_ in state.records:
        if kind == "offer":
            # Offers carry no application link (Offer.php): the registry knows it.
            offer = journal.registry.get("offer", id_)
            assert offer is not None
            owner = offer.owner
            assert owner is not None
            assert ("application", owner.id) in state.records


def test_a_revert_unpurges_the_application() -> None:
    journal = Journal(0, seed=11)
    reverted = None
    while reverted is None:
        journal.append(1)
        event = events_tail(journal)
        if event["event"] == "Application was closed":
            closed_id = int(event["application"].rsplit("/", 1)[1])
            assert ("application", closed_id) in journal.current().purged
        if event["event"] == "Application was reverted":
            reverted = int(event["application"].rsplit("/", 1)[1])
    state = journal.current()
    assert ("application", reverted) not in state.purged
    assert ("application", reverted) in state.records
    assert journal.truth()[("application", reverted)].deleted is False


def events_tail(journal: Journal) -> dict[str, Any]:
    fragment = journal.fragments(frozenset(), [len(journal) - 1])[0]
    value: dict[str, Any] = orjson.loads(b"{" + fragment + b"}")[str(len(journal))]
    return value


def test_registry_is_deterministic_and_incremental() -> None:
    grown = Journal(1500, seed=5)
    grown.append(1500)
    whole = Journal(3000, seed=5)
    assert grown.current() == whole.current()
    assert grown.current() != Journal(3000, seed=6).current()


# -- the forgetting journal ---------------------------------------------------------


def window_page(journal: Journal, window: float | None, **params: str) -> tuple[int, list[int]]:
    with journal.locked():
        count, positions = select(journal, parse_query(params), window)
    return count, [p + 1 for p in positions]


def test_window_hides_events_older_than_the_clock_allows(journal: Journal) -> None:
    stamps = journal.timestamps
    assert journal.clock == stamps[-1]
    day = 86400.0
    kept = [i + 1 for i, t in enumerate(stamps) if t >= journal.clock - day]
    assert 0 < len(kept) < len(journal)
    assert journal.first_retained(day) == kept[0] - 1
    assert journal.first_retained(None) == 0
    assert window_page(journal, day, limit="5") == (len(kept), kept[:5])
    assert window_page(journal, day, bySince="1", limit="2") == (len(kept), kept[:2])
    assert window_page(journal, day, bySince=str(kept[3]), limit="1") == (len(kept) - 3, [kept[3]])
    newest = window_page(journal, day, order="newest-first", limit="3")
    assert newest == (len(kept), kept[::-1][:3])
    assert window_page(journal, None, limit="1") == (len(journal), [1])


def test_window_applies_to_names_and_times_too(journal: Journal) -> None:
    day = 86400.0
    floor = journal.first_retained(day)
    names = journal.positions_by_name["Application was edited"]
    expected = [p + 1 for p in names if p >= floor]
    count, page = window_page(journal, day, byEvents="Application was edited", limit="1024")
    assert (count, page) == (len(expected), expected)
    count, page = window_page(journal, day, bySince="2000-01-01T00:00:00Z", limit="1")
    assert page == [floor + 1]
    assert count == len(journal) - floor


def test_zero_window_keeps_the_newest_second() -> None:
    journal = Journal(500, seed=2)
    same = sum(t == journal.clock for t in journal.timestamps)
    assert window_page(journal, 0, limit="1024")[0] == same >= 1
