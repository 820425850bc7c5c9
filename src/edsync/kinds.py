"""What a feed kind is to the rest of edsync (``Kind``), and the generic
machinery of its views and its erasures.

A kind is one object, the ``KIND`` its module exports: its settings class,
its factory, its rule-pattern check, the entity that holds a person's data,
its records (``Records``: the typed columns of its views, how each value is
read, and what an erasure keeps of its data) and what ``edsync demo`` shows
of it (``Demo``). The one registry, ``edsync.sources``, hands kinds out by
name, importing each kind's module when it is first asked for; whoever
opens the mirror hands it the kinds (or their ``Records``) it needs, so the
mirror imports no source module.

Generic: nothing here names a kind. The values of the columns are read once,
when a record is written, into ``records.typed``, which the views read
(``mirror/views.py``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from edsync.model import dump_json
from edsync.normalize import Keep, keep_no_string, scrub

if TYPE_CHECKING:
    from edsync.settings import SourceSettings
    from edsync.sources.base import Source

FieldType = Literal["text", "integer", "boolean", "timestamp", "link", "person"]
"""What a column holds (``typed_values`` reads each from the record's data):

- ``text``: a string as it is; another value as its JSON text.
- ``integer``: an integer that fits a bigint; a fraction, a larger number or
  another type holds nothing (PostgreSQL's cast would round or raise).
- ``boolean``: ``true`` or ``false`` only.
- ``timestamp``: an ISO 8601 date or date-time as the vendor wrote it; one
  Python reads in another ISO form is written in the plain one; anything
  else (a month 13, PHP's zero date "-0001-11-30", an offset PostgreSQL
  refuses) holds nothing.
- ``link``: a reference to another resource, held as its id in text like
  ``records.entity_id``, as the kind reads it (``Records.link_id``).
- ``person``: the record's ``person_id`` column, which the kind's
  normalization (or its snapshot) sets."""


@dataclass(frozen=True, slots=True)
class Field:
    """A typed column of a view: its name, the JSON path of its value in
    ``records.data``, and what it holds."""

    column: str
    path: tuple[str, ...]
    type: FieldType

    @classmethod
    def at(cls, column: str, path: str, type_: FieldType = "text") -> Field:
        """The column ``column`` read at ``path`` (dotted: ``name.given``)."""
        return cls(column, tuple(path.split(".")), type_)


Entity = tuple[str, tuple[Field, ...]]
"""An entity's view: the plural used in its name, and its columns."""


# -- the values of the columns, read once when a record is written ----------

TYPED_FORMAT = 1
"""Bumped when what ``typed_values`` holds changes without the fields
changing: the views' definitions carry it, so ``db upgrade`` (or a start
that auto-migrates) finds them outdated and computes every record's values
again."""

_BIGINT = (-(2**63), 2**63 - 1)
# The ISO forms PostgreSQL reads as Python does; another form Python reads
# (``20260102T0304``, a week date) is written again in this one.
_ISO = re.compile(
    r"\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d{1,6})?)?)?"
    r"(?:Z|[+-](?:0\d|1[0-5])(?::?\d\d)?)?",
    re.ASCII,
)
# PostgreSQL refuses an offset of 16 hours or more; Python reads up to 24.
_MAX_OFFSET = dt.timedelta(hours=16)


def _text(value: object) -> str:
    return value if isinstance(value, str) else dump_json(value)


def _integer(value: object) -> int | None:
    if type(value) is int and _BIGINT[0] <= value <= _BIGINT[1]:
        return value
    return None


def _boolean(value: object) -> bool | None:
    return value if type(value) is bool else None


def _timestamp(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if _ISO.fullmatch(value):
        return value  # the common case: PostgreSQL reads it as it is
    offset = parsed.utcoffset()
    if offset is not None and abs(offset) >= _MAX_OFFSET:
        return None
    return parsed.isoformat()


def _no_link(value: object) -> str | None:
    return None


Reader = tuple[str, str, tuple[str, ...], Callable[[object], object]]
"""A column, the first key of its path, the rest of the path, how it is read."""


def typed_values(readers: Sequence[Reader], data: Mapping[str, object]) -> dict[str, object]:
    """The columns' values in ``data`` (a column with none is left out)."""
    typed: dict[str, object] = {}
    for column, key, rest, read in readers:
        value = data.get(key)
        for inner in rest:
            value = value.get(inner) if isinstance(value, dict) else None
        if value is not None and (value := read(value)) is not None:
            typed[column] = value
    return typed


@dataclass(frozen=True, slots=True, eq=False)
class Records:
    """What the mirror needs of a kind's records.

    ``entities``: entity → its view (a kind missing an entity here gives it
    no view); ``link_id``: how a ``link`` column reads its id; ``ids``: which
    strings an erasure of the kind's data keeps (its ids and links).

    Called with ``(entity, data)``, the JSON of the record's column values
    (``records.typed``), or None for an entity without a view.
    """

    entities: Mapping[str, Entity] = field(default_factory=dict)
    link_id: Callable[[object], str | None] = _no_link
    ids: Keep = keep_no_string
    readers: Mapping[str, tuple[Reader, ...]] = field(init=False)
    """Entity → how each of its columns is read; ``person`` columns are the
    record's, not read here."""

    def __post_init__(self) -> None:
        read: dict[FieldType, Callable[[object], object]] = {
            "text": _text,
            "integer": _integer,
            "boolean": _boolean,
            "timestamp": _timestamp,
            "link": self.link_id,
        }
        readers = {
            entity: tuple(
                (f.column, f.path[0], f.path[1:], read[f.type])
                for f in fields
                if f.type != "person"
            )
            for entity, (_, fields) in self.entities.items()
        }
        object.__setattr__(self, "readers", readers)

    def __call__(self, entity: str, data: Mapping[str, Any]) -> str | None:
        found = self.readers.get(entity)
        return None if found is None else dump_json(typed_values(found, data))

    def scrub(self, value: Any, keep: Sequence[str] = ()) -> Any:
        """``value`` with the person's data gone: the kind's ids and links
        stay, and what is under the keys in ``keep`` (``normalize.scrub``)."""
        return scrub(value, keep, self.ids)


NO_RECORDS = Records()
"""A kind without views, whose erasures keep no string (a test's memory feed)."""


# -- what ``edsync demo`` shows ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Tally:
    """A count the demo prints: ``label``, then how many of the source's
    ``entity`` records have the status ``status``."""

    label: str
    entity: str
    status: str


@dataclass(frozen=True, slots=True)
class Example:
    """A query over one of the kind's views that the demo suggests (it prints
    it, never runs it): ``columns`` of the ``entity``'s view, with those
    ``person`` columns of the person's view (joined on the entity's ``person``
    column), where each column of ``where`` holds its value, ordered by
    ``order``, at most ``limit`` rows; deleted records are left out."""

    entity: str
    columns: tuple[str, ...]
    person: tuple[str, ...] = ()
    where: tuple[tuple[str, str], ...] = ()
    order: tuple[str, ...] = ()
    limit: int = 5


@dataclass(frozen=True, slots=True)
class Demo:
    """What ``edsync demo`` shows of a mirror of the kind, after its tables:
    each tally's count, then each example query to try."""

    tallies: tuple[Tally, ...] = ()
    examples: tuple[Example, ...] = ()


# -- the kind ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Kind:
    """A feed kind: everything the rest of edsync needs of it."""

    name: str
    """Its key in the registry, and the ``kind`` of its config tables."""
    settings: type[SourceSettings]
    """Its config table's dataclass."""
    create: Callable[[SourceSettings], Source]
    """A source of this kind from its settings."""
    pattern_problem: Callable[[str], str | None] | None = None
    """Why a rule's ``event`` cannot match anything the kind emits, or None."""
    person_entity: str | None = None
    """The entity whose records hold a person's data (for erasure), if any."""
    records: Records = NO_RECORDS
    """Its records' views, and what an erasure of its data keeps."""
    demo: Demo | None = None
    """What ``edsync demo`` shows of a mirror of this kind, if anything."""
