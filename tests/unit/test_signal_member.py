"""A signal's member: where it is read (the change, or the person's record in
the mirror at delivery time), and when a delivery waits for it (SPEC 2.3, 3)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from edsync.cli import main
from edsync.config import load_config
from edsync.errors import FatalError
from edsync.mirror.erasure import SIGNAL_KEEP
from edsync.mirror.outbox import PersonRecord, signal_data
from edsync.model import Change, Signal
from edsync.normalize import scrub
from edsync.publisher import WAIT_MAX, WAIT_MIN, NoMember, member_or_wait, wait_delay
from edsync.rules import MemberRef, Rule, member_value
from edsync.settings import HttpUrl, Secret
from edsync.sinks import learninghub
from tests.unit.test_rules import SOURCE as RULES_SOURCE


def change(**kw: Any) -> Change:
    defaults: dict[str, Any] = {
        "event_id": "11",
        "position": 11,
        "type": 'Offer was edited: "Enrolled"',
        "entity": "offer",
        "entity_id": "50",
        "op": "updated",
        "occurred_at": "2026-12-01T08:00:00+00:00",
        "payload": {"applicant": "/api/v9/applicants/7", "offer": "/api/v9/offers/50"},
        "data": None,
        "status": "Enrolled",
        "person_id": "7",
    }
    return Change(**(defaults | kw))


def rule(member: str | None) -> Rule:
    return Rule(
        name="offer-enrolled",
        source="da",
        event=None,
        entity="offer",
        op=None,
        where=(),
        publish=("hub",),
        event_type="offer.enrolled",
        member=tuple(member.split(".")) if member else None,
    )


EMAIL = MemberRef("applicant", "7", ("email",))


def test_a_member_path_at_the_person_is_read_from_the_mirror() -> None:
    assert rule("applicant.email").member_ref(change(), "applicant") == EMAIL
    assert rule("applicant.contact.email").member_ref(change(), "applicant") == MemberRef(
        "applicant", "7", ("contact", "email")
    )


@pytest.mark.parametrize(
    ("member", "person_entity", "person_id"),
    [
        (None, "applicant", "7"),  # no member at all
        ("data.email", "applicant", "7"),  # a path into the event
        ("applicant", "applicant", "7"),  # the person itself: the event's link, as before
        ("applicant.email", None, "7"),  # the source has no person entity
        ("applicant.email", "applicant", None),  # the event names no person
        ("person.email", "applicant", "7"),  # another source kind's person
    ],
)
def test_other_member_paths_are_resolved_in_the_change(
    member: str | None, person_entity: str | None, person_id: str | None
) -> None:
    assert rule(member).member_ref(change(person_id=person_id), person_entity) is None


def test_the_signal_row_says_where_its_member_is_read() -> None:
    data = signal_data(rule("applicant.email"), "da", change(), person_entity="applicant")
    assert data["member"] is None
    assert data["member_from"] == {"entity": "applicant", "id": "7", "path": ["email"]}
    assert MemberRef.from_json(data["member_from"]) == EMAIL

    expanded = change(payload={"applicant": {"id": 7, "email": "then@example.org"}})
    data = signal_data(rule("applicant.email"), "da", expanded, person_entity="applicant")
    assert data["member"] is None  # the current email, not the event's copy

    edlink = change(entity="person", payload={}, data={"email": "t@example.org"})
    data = signal_data(rule("data.email"), "ed", edlink, person_entity="person")
    assert data["member"] == "t@example.org"
    assert "member_from" not in data


def test_where_the_member_is_read_survives_an_erasure_of_the_signal() -> None:
    data = signal_data(rule("applicant.email"), "da", change(), person_entity="applicant")
    scrubbed = scrub(data, SIGNAL_KEEP)
    assert MemberRef.from_json(scrubbed["member_from"]) == EMAIL


@pytest.mark.parametrize(
    "value",
    [
        None,
        "applicant.email",
        {"entity": "applicant", "id": 7, "path": ["email"]},
        {"entity": "applicant", "id": "7", "path": []},
        {"entity": "applicant", "id": "7", "path": ["", "x"]},
        {"entity": "applicant", "id": "7"},
    ],
)
def test_a_malformed_member_from_is_no_reference(value: Any) -> None:
    assert MemberRef.from_json(value) is None


def test_the_member_is_a_scalar_at_the_path() -> None:
    assert EMAIL.read({"email": "ada@example.org"}) == "ada@example.org"
    assert MemberRef("applicant", "7", ("contact", "email")).read(
        {"contact": {"email": "ada@example.org"}}
    ) == ("ada@example.org")
    assert MemberRef("applicant", "7", ("id",)).read({"id": 7}) == "7"
    assert EMAIL.read({}) is None
    assert EMAIL.read({"email": None}) is None
    assert EMAIL.read({"email": " "}) is None
    assert EMAIL.read({"email": {"primary": "x"}}) is None
    assert member_value(["a"]) is None


def test_a_delivery_waits_until_the_record_holds_the_member() -> None:
    assert member_or_wait(EMAIL, None) == NoMember(
        "waiting for applicant 7's email (not in the mirror yet)"
    )
    assert member_or_wait(EMAIL, PersonRecord({"id": 7}, deleted=False)) == NoMember(
        "waiting for applicant 7's email (the record has none yet)"
    )
    deleted = member_or_wait(EMAIL, PersonRecord({"id": 7, "email": "a@x.org"}, deleted=True))
    assert deleted == NoMember("waiting for applicant 7's email (applicant 7 is deleted)")
    found = member_or_wait(EMAIL, PersonRecord({"id": 7, "email": "a@x.org"}, deleted=False))
    assert found == "a@x.org"


@pytest.mark.parametrize("tombstone", [{"forgotten": True}, {"purged": True, "forgotten": False}])
def test_an_erased_person_is_never_waited_for(tombstone: dict[str, Any]) -> None:
    outcome = member_or_wait(EMAIL, PersonRecord({"id": 7, **tombstone}, deleted=True))
    assert isinstance(outcome, NoMember)
    assert outcome.erased
    assert "applicant 7 was erased" in outcome.reason


def test_the_wait_grows_with_the_signal_age_within_bounds() -> None:
    assert wait_delay(0.0) == WAIT_MIN
    assert wait_delay(60.0) == 30.0
    assert wait_delay(86400.0) == WAIT_MAX
    ages = [0.0]
    for _ in range(30):
        ages.append(ages[-1] + wait_delay(ages[-1]))
    gaps = [b - a for a, b in itertools.pairwise(ages)]
    assert gaps == sorted(gaps)  # never shorter than the one before
    assert sum(age < 600.0 for age in ages) >= 10  # often while a refresh may bring it
    assert gaps[-1] == WAIT_MAX  # then every ten minutes, not a busy loop


def signal(**data: Any) -> Signal:
    return Signal("sig", "offer-enrolled", "da", "11", "offer", "50", "2026-12-01T08:00:00", data)


def test_a_signal_gets_its_member_for_the_sink() -> None:
    waiting = signal(member=None, member_from={"entity": "applicant", "id": "7", "path": ["email"]})
    assert waiting.member is None
    assert waiting.member_from == {"entity": "applicant", "id": "7", "path": ["email"]}
    sent = waiting.with_member("ada@example.org")
    assert sent.member == "ada@example.org"
    assert sent.id == waiting.id
    assert waiting.member is None  # the row's own value is left as it was
    assert signal(member="x").member_from is None


def hub() -> learninghub.LearningHubSink:
    settings = learninghub.Settings(
        name="hub",
        kind="learninghub",
        base_url=HttpUrl("https://hub.example.org"),
        program_id="FOO",
        user_id="edsync",
        api_key=Secret(env="HUB_KEY", value="k"),
    )
    return learninghub.LearningHubSink(settings)


def test_the_learning_hub_never_gets_an_event_without_its_member() -> None:
    sink = hub()
    try:
        body = sink.payload(signal(event_type="offer.enrolled", member="ada@example.org"))
        assert body["ProgramMemberId"] == "ada@example.org"
        with pytest.raises(FatalError, match="no ProgramMemberId"):
            sink.send(signal(event_type="offer.enrolled", member=None))
    finally:
        sink.close()


SOURCE = (
    RULES_SOURCE
    + """[sinks.hook]
kind = "webhook"
base_url = "https://hooks.example.org/edsync"
secret_env = "HOOK_SECRET"
"""
)


def write(tmp_path: Path, rule_body: str) -> Path:
    path = tmp_path / "edsync.toml"
    path.write_text(
        f'[mirror]\nurl = "sqlite:///{tmp_path / "m.db"}"\n{SOURCE}'
        f'[[rules]]\nname = "enrolled"\nsource = "da"\nevent = "Offer was edited: ?"\n'
        f"{rule_body}\n"
    )
    return path


def test_a_rule_publishing_to_the_learning_hub_needs_a_member(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DA_KEY", "k")
    monkeypatch.setenv("HOOK_SECRET", "whsec_" + "QUJD" * 11)
    path = write(tmp_path, 'publish = ["hook", "hub"]')
    assert main(["backfill", "-c", str(path)]) == 78
    err = capsys.readouterr().err
    assert "rules[0] ('enrolled').member:" in err
    assert "'hub'" in err
    assert str(path) in err
    assert not (tmp_path / "m.db").exists()  # before anything is touched

    # A webhook takes a signal without a member; with one, the hub does too.
    for body in ('publish = ["hook"]', 'publish = ["hub"]\nmember = "applicant.email"'):
        (compiled,) = load_config(write(tmp_path, body)).compiled_rules
        assert compiled.name == "enrolled"
