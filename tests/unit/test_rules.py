"""Rule patterns and validation (SPEC 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edsync.cli import main
from edsync.model import Change
from edsync.rules import EventPattern, Rule, signal_id


def change(type_: str, status: str | None = None, **kw: Any) -> Change:
    return Change(
        event_id="1",
        position=1,
        type=type_,
        entity=kw.pop("entity", "offer"),
        entity_id="9",
        op=kw.pop("op", "updated"),
        occurred_at=None,
        payload=kw.pop("payload", {}),
        data=kw.pop("data", {}),
        status=status,
    )


@pytest.mark.parametrize(
    ("pattern", "name", "status", "hit"),
    [
        ("Offer was edited: ?", 'Offer was edited: "Enrolled"', "Enrolled", True),
        ("Offer was edited: ?", 'Offer was edited: "Offered"', "Offered", True),
        ('Offer was edited: "Enrolled"', 'Offer was edited: "Enrolled"', "Enrolled", True),
        ("Offer was edited: Enrolled", 'Offer was edited: "Enrolled"', "Enrolled", True),
        ('Offer was edited: "Enrolled"', 'Offer was edited: "Offered"', "Offered", False),
        ('Offer was edited: "Enrolled"', 'Offer was confirmed: "Enrolled"', "Enrolled", False),
        ("Application was closed", "Application was closed", None, True),
        ("Application was closed", "Application was created", None, False),
        ("person.created", "person.created", None, True),
    ],
)
def test_event_patterns_follow_dreamapply_wildcards(
    pattern: str, name: str, status: str | None, hit: bool
) -> None:
    assert EventPattern.parse(pattern).matches(change(name, status)) is hit


def rule(**kw: Any) -> Rule:
    defaults: dict[str, Any] = {
        "name": "r",
        "source": "s",
        "event": None,
        "entity": None,
        "op": None,
        "where": (),
        "publish": (),
        "event_type": "r",
        "member": None,
    }
    return Rule(**(defaults | kw))


def test_where_is_equality_or_membership() -> None:
    teacher = change(
        "person.created",
        entity="person",
        op="created",
        data={"roles": ["teacher", "staff"], "state": "active"},
    )
    assert rule(where=((("data", "roles"), "teacher"),)).matches(teacher)
    assert not rule(where=((("data", "roles"), "student"),)).matches(teacher)
    assert rule(where=((("data", "state"), ["active", "pending"]),)).matches(teacher)
    assert not rule(where=((("data", "missing"), "x"),)).matches(teacher)
    assert rule(entity="person", op="created").matches(teacher)
    assert not rule(entity="person", op="deleted").matches(teacher)


def test_member_comes_from_the_named_path() -> None:
    offer = change("x", payload={"applicant": {"id": 7, "email": "a@example.org"}})
    assert rule(member=("applicant", "email")).member_of(offer) == "a@example.org"
    assert rule(member=("applicant", "phone")).member_of(offer) is None


def test_signal_ids_are_deterministic_and_distinct() -> None:
    assert signal_id("r", "s", "1") == signal_id("r", "s", "1")
    assert len({signal_id("r", "s", "1"), signal_id("r", "s", "2"), signal_id("q", "s", "1")}) == 3


SOURCE = """
[sources.da]
kind = "dreamapply"
base_url = "https://apply.example.edu"
api_key_env = "DA_KEY"
[sinks.hub]
kind = "learninghub"
base_url = "https://hub.example.org"
program_id = "FOO"
user_id = "edsync"
api_key_env = "DA_KEY"
"""


@pytest.mark.parametrize(
    ("rule_body", "key", "words"),
    [
        ('event = "Offer was eddited: ?"', "rules[0] ('bad').event", "not a DreamApply"),
        ('match = { entity = "offer", kind = "x" }', "rules[0] ('bad').match", "unknown key"),
        ('match = { op = "exploded" }', "rules[0] ('bad').match", "op must be"),
        (
            'event = "Application was closed"\nwhere = { "data..x" = 1 }',
            "rules[0] ('bad').where",
            "dotted path",
        ),
        (
            'event = "Application was closed"\npublish = ["nowhere"]',
            "rules[0].publish",
            "no sink named",
        ),
        ("publish = []", "rules[0].event", "needs `event`"),
    ],
)
def test_invalid_rules_exit_78_naming_the_rule(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    rule_body: str,
    key: str,
    words: str,
) -> None:
    monkeypatch.setenv("DA_KEY", "k")
    path = tmp_path / "edsync.toml"
    path.write_text(
        f'[mirror]\nurl = "sqlite:///{tmp_path / "m.db"}"\n{SOURCE}'
        f'[[rules]]\nname = "bad"\nsource = "da"\n{rule_body}\n'
    )
    assert main(["backfill", "-c", str(path)]) == 78
    err = capsys.readouterr().err
    assert f"{key}:" in err
    assert words in err
    assert not (tmp_path / "m.db").exists()


def test_duplicate_rule_names_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DA_KEY", "k")
    one = '[[rules]]\nname = "same"\nsource = "da"\nevent = "Application was closed"\n'
    path = tmp_path / "edsync.toml"
    path.write_text(f'[mirror]\nurl = "sqlite:///{tmp_path / "m.db"}"\n{SOURCE}{one}{one}')
    assert main(["check", "-c", str(path)]) == 78
    assert "rules[1] ('same').name" in capsys.readouterr().err
