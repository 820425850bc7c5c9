"""The heavy journal shape: large expanded events, each record updated often.

Issue 23's feed: ``expand = ["applicant", "application", "offer"]``, events of
about 1.26 KB on average, 13 360 records over 100 000 events (about 7.5
updates a record). The simulator's own journal, as it renders, has about 650
bytes an event and 2.7 updates a record. This reshapes the simulator's events
as they are served, in the benchmark's simulator process only:

- **fewer records**: the ids of each kind are folded onto a smaller pool
  (``id → first + (id - first) mod pool``), in links and in expanded objects
  alike, so later stories update the records earlier ones made;
- **larger objects**: each expanded object gains a ``profile`` of short
  fields (as DreamApply's own objects carry many), sized so an event averages
  about 1.26 KB.

Erasure requests are renamed to an applicant update: folded onto a shared id,
one would scrub every later story of that id, which no real feed does.

It reaches into the simulator's journal (``_render``, the generator's ids):
a benchmark's liberty, so the simulator itself needs no knob for it.
"""

from __future__ import annotations

import re
import signal
import threading
from types import FrameType
from typing import Any

import orjson

from edsync_sim.dataset import FIRST_IDS, Journal
from edsync_sim.server import Simulator

# The pool's target, not the result: since issue 19, referee, task, interview
# and media events are keyed by their application (no own link), so records
# are fewer than the kinds' own ids suggest; 14 gives the measured 7.5.
UPDATES_PER_RECORD = 14.0
# Short fields added to each expanded object, by kind: about 1.23 KB an event
# and 500 bytes of a record's data on average (the feed: 1.26 KB, 534).
PROFILE_FIELDS = {"applicant": 1, "application": 8, "offer": 8}
MINOR_SQUEEZE = 12.0

_SEGMENTS = {
    b"applicants": "applicant",
    b"applications": "application",
    b"offers": "offer",
    b"documents": "document",
    b"media": "media",
    b"referees": "referee",
    b"tasks": "task",
    b"interviews": "interview",
    b"invoices": "invoice",
}
_LINK = re.compile(rb"/(" + b"|".join(_SEGMENTS) + rb")/(\d+)")
_FORGET = "Applicant requested to be forgotten"
EXPAND = frozenset({"applicant", "application", "offer"})  # what backfill.py asks for


def install(journal: Journal, events: int) -> None:
    """Serve ``journal`` in the heavy shape from now on (its ``events`` generated)."""
    counts = {kind: journal._generator.next_ids[kind] - first for kind, first in FIRST_IDS.items()}
    # Documents, tasks and the like (never expanded, small records) fold onto
    # fewer ids than the expanded kinds: most records are applicants,
    # applications and offers, as in the feed.
    weights = {kind: 1.0 if kind in PROFILE_FIELDS else MINOR_SQUEEZE for kind in counts}
    weighted = sum(count / weights[kind] for kind, count in counts.items())
    squeeze = max(1.0, UPDATES_PER_RECORD * weighted / max(events, 1))
    pools = {kind: max(1, round(count / squeeze / weights[kind])) for kind, count in counts.items()}
    plain = journal._render

    def fold(kind: str, value: int) -> int:
        first = FIRST_IDS[kind]
        return first + (value - first) % pools[kind]

    def link(match: re.Match[bytes]) -> bytes:
        segment, digits = match.group(1), match.group(2)
        return b"/%b/%d" % (segment, fold(_SEGMENTS[segment], int(digits)))

    def render(position: int, expand: frozenset[str]) -> bytes:
        head, _, body = plain(position, expand).partition(b":")
        obj: dict[str, Any] = orjson.loads(body)
        if obj.get("event") == _FORGET:
            obj["event"] = "Applicant email was changed"
        for key, value in obj.items():
            if isinstance(value, dict) and isinstance(value.get("id"), int) and key in FIRST_IDS:
                value["id"] = fold(key, value["id"])
                value["profile"] = _profile(key, value["id"], PROFILE_FIELDS.get(key, 0))
        return head + b":" + _LINK.sub(link, orjson.dumps(obj))

    journal._render = render  # type: ignore[method-assign]


def _profile(kind: str, id_: int, fields: int) -> dict[str, str]:
    """Short fields, the same for one record every time (what changes is the rest)."""
    return {f"{kind}Field{n:02d}": f"value {n} of the {kind} {id_}" for n in range(fields)}


def serve_forever(events: int) -> int:
    """``edsync simulate`` with the heavy shape and a journal that forgets nothing."""
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    with Simulator(events=events, journal_window=None, edlink_people=1) as sim:
        install(sim.journal, events)
        # Reshape every event now, as the current shape's events are cheap to
        # render: edsync's timed run must not wait on this process's reshaping.
        sim.journal.fragments(EXPAND, range(len(sim.journal)))
        print(f"edsync simulator (heavy shape): DreamApply at {sim.url}", flush=True)
        stopping.wait()
    return 0
