"""Valid JSON is read as JSON where the fast parser refuses it, and a text no
parser reads is told apart from one that is not JSON (``edsync.jsontext``,
SPEC 5.3)."""

from __future__ import annotations

import json
import math

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edsync import jsontext
from edsync.errors import MalformedPageError, UnreadableJsonError
from edsync.http import Reply
from edsync.jsontext import NotJsonError, Span, TooDeepError, outline
from edsync.model import parse_json

DEEP = "[" * 5000 + "]" * 5000


def test_a_lone_surrogate_becomes_u_fffd_and_a_pair_stays_a_pair() -> None:
    text = r'{"first_name":"Zo\ud83d","smile":"\ud83d\ude00","low":"\udc00x","kept":"\\ud83d"}'
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(text)
    assert jsontext.loads(text) == {
        "first_name": "Zo\ufffd",
        "smile": "\U0001f600",
        "low": "\ufffdx",
        "kept": "\\ud83d",  # an escaped backslash, then text: no escape at all
    }
    assert jsontext.loads(text.encode()) == jsontext.loads(text)


def test_scrub_keeps_the_length_and_touches_only_lone_halves() -> None:
    text = r'["\ud83d", "\uD83D\uDE00", "\\ud83d", "\\\ud83d", "\udc00\ud83d", "\u00e9"]'
    fixed = jsontext.scrub(text)
    assert len(fixed) == len(text)
    assert fixed == r'["\ufffd", "\uD83D\uDE00", "\\ud83d", "\\\ufffd", "\ufffd\ufffd", "\u00e9"]'
    plain = '{"a": "no escapes"}'
    assert jsontext.scrub(plain) is plain


def test_a_number_past_a_double_is_read_as_the_standard_library_reads_it() -> None:
    assert jsontext.loads('{"score": 1e400}') == {"score": math.inf}


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}'])
def test_javascript_constants_are_not_json(text: str) -> None:
    with pytest.raises(NotJsonError):
        jsontext.loads(text)


@pytest.mark.parametrize(
    "data", [b'{"a": "\xff"}', b'{"a": ', b'{"a": 1,}', b'["\\ud8"]', b"", b'"\\ud83d" x']
)
def test_text_that_is_not_json_stays_not_json(data: bytes) -> None:
    with pytest.raises(NotJsonError):
        jsontext.loads(data)


def test_nesting_past_every_parser_is_too_deep_and_a_cut_one_is_not_json() -> None:
    with pytest.raises(TooDeepError, match="5000 levels deep") as raised:
        jsontext.loads(DEEP.encode())
    assert raised.value.text == DEEP
    with pytest.raises(NotJsonError):
        jsontext.loads(DEEP[:-1])
    with pytest.raises(NotJsonError):
        jsontext.loads(DEEP[: len(DEEP) // 2])


def test_outline_builds_the_levels_asked_and_spans_the_rest() -> None:
    text = '{"1": {"a": [1, {"b": []}]}, "2": 3, "3": "x"}'
    assert outline(text, 0) == Span(0, len(text), 5)
    assert outline(text, 1) == {"1": Span(6, 27, 4), "2": Span(34, 35), "3": Span(42, 45)}
    assert outline(text, 1)["1"].of(text) == '{"a": [1, {"b": []}]}'
    built = outline(text, 2)
    assert built["1"] == {"a": Span(12, 26, 3)}
    assert built["2"] == 3
    assert outline(text, 9) == json.loads(text)
    assert outline(" [] ", 0) == Span(1, 3, 1)


def test_outline_reads_any_depth_without_recursing() -> None:
    page = '{"123": {"bind": ' + "[" * 50_000 + "]" * 50_000 + "}}"
    (span,) = outline(page, 1).values()
    assert span.depth == 50_001
    assert span.of(page).startswith('{"bind": [[[')


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(deadline=None, max_examples=60)
@given(json_values)
def test_outline_agrees_with_the_standard_library(value: object) -> None:
    text = json.dumps(value, indent=1)
    assert outline(text, 99) == json.loads(text)
    outline(text, 0)  # valid at any level
    for cut in range(len(text)):
        prefix = text[:cut]
        try:
            json.loads(prefix)
        except ValueError:
            with pytest.raises(NotJsonError):
                outline(prefix, 0)


def test_parse_json_reads_what_the_ledger_keeps_as_sent() -> None:
    assert parse_json('{"note":"Zo\\ud83d"}') == {"note": "Zo\ufffd"}
    assert orjson.dumps(parse_json('{"note":"Zo\\ud83d"}'))  # writable again


# -- Reply.json: the HTTP side ---------------------------------------------------


def reply(body: bytes) -> Reply:
    return Reply(200, httpx.Headers(), body)


def test_a_reply_orjson_refuses_is_read_when_it_is_valid() -> None:
    assert reply(b'{"$data": [{"first_name": "Zo\\ud83d"}]}').json("t") == {
        "$data": [{"first_name": "Zo\ufffd"}]
    }


def test_a_reply_too_deep_is_unreadable_not_malformed() -> None:
    with pytest.raises(UnreadableJsonError, match="t: valid JSON nested") as raised:
        reply(DEEP.encode()).json("t")
    assert not isinstance(raised.value, MalformedPageError)  # never retried
    assert raised.value.text == DEEP


def test_a_reply_cut_short_is_malformed_however_deep() -> None:
    for body in (DEEP[:-1].encode(), b'{"$data": [1,'):
        with pytest.raises(MalformedPageError, match="t: invalid JSON in response"):
            reply(body).json("t")
