"""JSON text read as JSON, also where the fast parser refuses it (SPEC 5.3).

orjson and msgspec refuse some valid JSON: a lone surrogate escape
(``"Zo\\ud83d"``, what ``JSON.stringify`` writes for a string cut inside an
emoji), a number past a double's range, nesting past their depth. ``loads``
tries the fast parser first, so a valid page costs nothing more, and only
when it refuses reads the text again (``model.parse_refused``, the reading
the mirror's own JSON goes through too).

What no parser here reads (nesting past its depth) is told apart from text
that is not JSON at all (truncated, invalid) by ``outline``: a scan that
keeps a stack instead of recursing, so it reads any depth. Complete but too
deep is ``TooDeepError``; not JSON is ``NotJsonError``. Generic: it knows no
feed, and imports nothing of edsync but the domain types' JSON helpers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

from edsync.model import parse_refused, without_lone_surrogates

MAX_DEPTH = 1024
"""Nesting that orjson refuses past (and the standard library's recursion
limit comes first): an item deeper than this is one no parser here reads."""


class NotJsonError(ValueError):
    """The text is not JSON: truncated, invalid, or not UTF-8."""


class TooDeepError(ValueError):
    """The text is complete, valid JSON, nested deeper than any parser here
    reads. ``text``: the text, decoded."""

    def __init__(self, message: str, text: str) -> None:
        super().__init__(message)
        self.text = text


@dataclass(frozen=True, slots=True)
class Span:
    """A JSON value ``outline`` did not build: where it is in the text (``start``
    to ``end``), and how deep its containers nest (0 for a scalar)."""

    start: int
    end: int
    depth: int = 0

    def of(self, text: str) -> str:
        return text[self.start : self.end]


def loads(data: bytes | str) -> Any:
    """The value of a JSON text: orjson's, or where orjson refuses a valid text,
    ``tolerant``'s. NotJsonError or TooDeepError when it cannot be read."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return tolerant(data)


def tolerant(data: bytes | str) -> Any:
    """``loads`` for a text orjson refused: lone surrogates as U+FFFD, numbers
    past a double's range as the standard library reads them (1e400: inf)."""
    try:
        return parse_refused(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NotJsonError(str(exc)) from None
    except RecursionError:
        pass  # out of the handler: the scan below must not run on a full stack
    text = decode(data)
    depth = outline(text, 0).depth  # NotJsonError if it is not complete after all
    raise TooDeepError(
        f"valid JSON nested {depth} levels deep, past what a parser here reads ({MAX_DEPTH})",
        text,
    )


def decode(data: bytes | str) -> str:
    """``data`` as text: JSON on the wire is UTF-8 (RFC 8259), never guessed."""
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotJsonError(f"not UTF-8 ({exc})") from None


def scrub(text: str) -> str:
    """``text`` with each lone surrogate escape replaced by ``\\ufffd`` (same
    length: offsets carry over); ``text`` itself when it holds none."""
    return without_lone_surrogates(text)


# -- the scan -------------------------------------------------------------------

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_STRING = re.compile(r'"[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*"')
_SCALAR = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|true|false|null")


@dataclass(slots=True)
class _Open:
    """A container being scanned: its value when built (else None), where it
    starts, its level (1 for the outermost), the deepest level within it, and
    the key read for its next member."""

    value: dict[str, Any] | list[Any] | None
    start: int
    level: int
    deepest: int
    key: str = ""


def outline(text: str, levels: int) -> Any:
    """``text``'s value, built for its first ``levels`` levels; every value
    below them is a ``Span`` (``levels=0``: the whole as one Span, which only
    validates it and says how deep it nests). Scans without recursing, so any
    depth is read; NotJsonError if the text is not complete, valid JSON.

    ``outline('{"1": {"a": [1]}}', 1)`` is ``{"1": Span(6, 16, 2)}``.
    """
    return _Scanner(text, levels).run()


class _Pending:
    """What ``_Scanner._value`` returns for a container it opened."""


_PENDING = _Pending()


class _Scanner:
    """One pass over the text with an explicit stack of open containers."""

    def __init__(self, text: str, levels: int) -> None:
        self.text = text
        self.levels = levels
        self.stack: list[_Open] = []
        self.pos = 0

    def run(self) -> Any:
        value = self._value()
        while True:
            if value is _PENDING:  # just opened: empty, or its first member
                value = self._close() if self._at_close() else self._member()
                continue
            if not self.stack:
                break
            self._store(value)
            if self._at_close():
                value = self._close()
            elif self._take(","):
                value = self._member()
            else:
                raise self._error("',' or a closing bracket expected")
        if self._skip() != len(self.text):
            raise self._error("data after the value")
        return value

    def _error(self, what: str) -> NotJsonError:
        return NotJsonError(f"{what} at char {self.pos}")

    def _skip(self) -> int:
        match = _WHITESPACE.match(self.text, self.pos)
        assert match is not None  # it matches the empty string
        self.pos = match.end()
        return self.pos

    def _take(self, char: str) -> bool:
        self._skip()
        if self.text.startswith(char, self.pos):
            self.pos += 1
            return True
        return False

    def _value(self) -> Any:
        """A scalar's value (or Span); a container is opened and ``_PENDING``
        returned, its members read by ``run``."""
        start = self._skip()
        building = len(self.stack) < self.levels
        char = self.text[start : start + 1]
        if char in ("{", "["):
            self.pos += 1
            value: dict[str, Any] | list[Any] | None = None
            if building:
                value = {} if char == "{" else []
            level = len(self.stack) + 1
            self.stack.append(_Open(value, start, level, level))
            return _PENDING
        match = (_STRING if char == '"' else _SCALAR).match(self.text, start)
        if match is None:
            raise self._error("a JSON value expected")
        self.pos = match.end()
        return _scalar(match.group()) if building else Span(start, self.pos)

    def _member(self) -> Any:
        """The next member of the innermost container: for an object, its key
        and ':' first."""
        top = self.stack[-1]
        if self.text[top.start] == "{":
            match = _STRING.match(self.text, self._skip())
            if match is None:
                raise self._error("a key expected")
            self.pos = match.end()
            top.key = _scalar(match.group()) if top.value is not None else ""
            if not self._take(":"):
                raise self._error("':' expected")
        return self._value()

    def _at_close(self) -> bool:
        top = self.stack[-1]
        return self._take("}" if self.text[top.start] == "{" else "]")

    def _store(self, value: Any) -> None:
        top = self.stack[-1]
        if isinstance(top.value, list):
            top.value.append(value)
        elif top.value is not None:
            top.value[top.key] = value

    def _close(self) -> Any:
        top = self.stack.pop()
        if self.stack:
            parent = self.stack[-1]
            parent.deepest = max(parent.deepest, top.deepest)
        if top.value is not None:
            return top.value
        return Span(top.start, self.pos, top.deepest - top.level + 1)


def _scalar(token: str) -> Any:
    """A string, number or literal token's value (a lone surrogate as U+FFFD)."""
    return json.loads(scrub(token))
