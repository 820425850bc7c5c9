"""The outbox: deliver pending signals to their sinks, at least once.

Each delivery is one attempt per round. A failure is rescheduled with capped,
jittered exponential backoff (never before a Retry-After) for the sink's
``retry_for`` (a day by default), counted from the first failed attempt; the
last attempt is made when that budget runs out, and if it fails too the
delivery turns ``failed`` and stays visible until ``edsync deliver
--retry-failed``. Sinks are idempotent per signal id, so at-least-once is
exactly-once in effect.

A signal whose member is read from the mirror (``member_from``: the person's
current record, SPEC 3) is sent only once the record holds it. Until then the
delivery waits: it stays pending, ``last_error`` says what it waits for, and
it is looked at again a little later (the wait grows with the signal's age),
without calling the sink and without counting an attempt or spending the
sink's ``retry_for``. A refresh that brings the record lets the next round
send it. A person erased meanwhile (SPEC 5.4) never has one again: that
delivery turns ``failed`` unsent, saying so, without counting as the sink's
failure.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from edsync import sinks
from edsync.backoff import next_attempt
from edsync.errors import AuthError, EdsyncError, RetriableError
from edsync.mirror import Mirror, outbox
from edsync.mirror.outbox import DeliveryUpdate, Due, PersonRecord
from edsync.model import Signal
from edsync.rules import MemberRef
from edsync.settings import Config
from edsync.sinks.base import Sink

log = structlog.get_logger("edsync.publisher")

ROUND_LIMIT = 500
BURST_WAIT = 120.0
"""The longest ``backfill`` waits on failing deliveries before it exits 1 and
leaves them pending in the outbox for ``run`` or ``deliver`` (a sink's day of
``retry_for`` would otherwise hold a burst job, and the daemon it conflicts
with, for a day)."""
WAIT_MIN = 5.0  # the daemon's publisher round
WAIT_MAX = 600.0
"""A delivery waiting for its member is looked at again after half the
signal's age, between these bounds: often while a refresh may be about to
bring the record, every ten minutes once it has been missing for a while."""


@dataclass(slots=True)
class Report:
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    pending: int = 0
    waiting: int = 0
    """Deliveries held back by the (last) round: their member is not in the mirror yet."""
    erased: int = 0
    """Deliveries turned failed unsent: the person whose member they needed was erased."""

    def add(self, other: Report) -> None:
        self.delivered += other.delivered
        self.retried += other.retried
        self.failed += other.failed
        self.pending = other.pending
        self.waiting = other.waiting
        self.erased += other.erased


def _now() -> float:
    return time.time()  # looked up per call, so freezegun's clock reaches it


def _at(when: float) -> dt.datetime:
    """A time of the publisher's clock (Unix seconds) as the mirror takes it."""
    return dt.datetime.fromtimestamp(when, dt.UTC)


def _seconds(when: dt.datetime | None) -> float | None:
    return None if when is None else when.timestamp()


@dataclass(frozen=True, slots=True)
class NoMember:
    """Why a delivery cannot be made: its member is not known. It waits for
    it, unless the person was ``erased`` (SPEC 5.4): then it never will be."""

    reason: str
    erased: bool = False


def member_or_wait(ref: MemberRef, record: PersonRecord | None) -> str | NoMember:
    """The member ``ref`` names in ``record`` (the person's record in the
    mirror, None when it has none yet), or why the delivery cannot have it."""
    wanted = ref.describe()
    if record is None:
        return NoMember(f"waiting for {wanted} (not in the mirror yet)")
    if record.data.get("forgotten") or record.data.get("purged"):
        # What the mirror scrubbed is gone for good, and is not to be sent.
        return NoMember(
            f"not sent: {ref.entity} {ref.id} was erased before {wanted} could be sent",
            erased=True,
        )
    if record.deleted:
        return NoMember(f"waiting for {wanted} ({ref.entity} {ref.id} is deleted)")
    member = ref.read(record.data)
    if member is None:
        return NoMember(f"waiting for {wanted} (the record has none yet)")
    return member


def wait_delay(age: float) -> float:
    """Seconds before a waiting delivery is looked at again, for a signal raised
    ``age`` seconds ago: half that, between WAIT_MIN and WAIT_MAX."""
    return min(WAIT_MAX, max(WAIT_MIN, age / 2))


def burst_budget(config: Config) -> float:
    """How long ``backfill`` delivers the outbox: the sinks' ``retry_for``, at most BURST_WAIT."""
    return min(BURST_WAIT, max((s.retry_for for s in config.sinks.values()), default=0.0))


class Publisher:
    def __init__(
        self, engine: Mirror, config: Config, *, clock: Callable[[], float] = _now
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.sinks: dict[str, Sink] = {name: sinks.create(s) for name, s in config.sinks.items()}
        self.retry_for = {name: float(s.retry_for) for name, s in config.sinks.items()}
        self._unknown: set[str] = set()
        # While ``deliver`` runs: the deliveries (signal, sink) held for a member.
        self._waiting: set[tuple[str, str]] | None = None

    def close(self) -> None:
        for sink in self.sinks.values():
            sink.close()

    def round(self, *, due_only: bool = True) -> Report:
        """One attempt for each delivery that is due (or every pending one)."""
        due = outbox.due(
            self.engine, everything=not due_only, now=_at(self.clock()), limit=ROUND_LIMIT
        )
        report = Report()
        members = self._members(due)
        for delivery in due:
            self._attempt(delivery, members, report)
        report.pending = self.pending()
        return report

    def _members(self, due: Sequence[Due]) -> dict[tuple[str, str, str], PersonRecord]:
        """The person records the round's members are read from, one query per
        (source, entity), keyed by (source, entity, id)."""
        wanted: dict[tuple[str, str], set[str]] = defaultdict(set)
        for delivery in due:
            ref = MemberRef.from_json(delivery.signal.member_from)
            if ref is not None:
                wanted[(delivery.signal.source, ref.entity)].add(ref.id)
        return {
            (source, entity, entity_id): record
            for (source, entity), ids in wanted.items()
            for entity_id, record in outbox.person_records(self.engine, source, entity, ids).items()
        }

    def _with_member(
        self, signal: Signal, members: dict[tuple[str, str, str], PersonRecord]
    ) -> Signal | NoMember:
        """The signal with its member read from the mirror, if it reads it there."""
        ref = MemberRef.from_json(signal.member_from)
        if ref is None:
            return signal
        found = member_or_wait(ref, members.get((signal.source, ref.entity, ref.id)))
        return found if isinstance(found, NoMember) else signal.with_member(found)

    def _attempt(
        self, delivery: Due, members: dict[tuple[str, str, str], PersonRecord], report: Report
    ) -> None:
        signal_id, sink_name = delivery.signal.id, delivery.sink
        sink = self.sinks.get(sink_name)
        if sink is None:
            if sink_name not in self._unknown:
                self._unknown.add(sink_name)
                log.warning("delivery_for_unknown_sink", sink=sink_name)
            return
        signal = self._with_member(delivery.signal, members)
        if isinstance(signal, NoMember):
            self._hold(delivery, signal, report)
            return
        if self._waiting is not None:
            self._waiting.discard((signal_id, sink_name))
        attempts = delivery.attempts + 1
        try:
            sink.send(signal)
        except (RetriableError, AuthError) as exc:
            # A refused credential is retried too: it is fixed by a human, not by waiting
            # less, and the budget keeps the delivery until then.
            self._retry(delivery, exc, attempts, report)
        except EdsyncError as exc:
            # Refused for good (a 4xx other than auth): retrying cannot help.
            self._failed(
                signal_id,
                sink_name,
                attempts=attempts,
                error=str(exc),
                since=_seconds(delivery.failing_since),
                report=report,
            )
        else:
            outcome = DeliveryUpdate("delivered", attempts, None, None, _at(self.clock()), None)
            outbox.record(self.engine, signal_id, sink_name, outcome)
            report.delivered += 1

    def _retry(self, delivery: Due, exc: EdsyncError, attempts: int, report: Report) -> None:
        """Again later, within the sink's ``retry_for``; failed once it is spent."""
        signal_id, sink_name = delivery.signal.id, delivery.sink
        now = self.clock()
        started = _seconds(delivery.failing_since)
        since = now if started is None else started
        retry_after = getattr(exc, "retry_after", None)
        when = next_attempt(now, since + self.retry_for[sink_name], attempts, retry_after)
        if when is None:
            self._failed(
                signal_id, sink_name, attempts=attempts, error=str(exc), since=since, report=report
            )
            return
        outcome = DeliveryUpdate("pending", attempts, str(exc), _at(when), None, _at(since))
        outbox.record(self.engine, signal_id, sink_name, outcome)
        report.retried += 1
        log.warning(
            "delivery_retry",
            sink=sink_name,
            signal=signal_id,
            error=str(exc),
            attempts=attempts,
            retry_in=round(when - now, 2),
            failing_for=round(now - since, 2),
        )

    def _hold(self, delivery: Due, missing: NoMember, report: Report) -> None:
        """A signal without its member: not sent if its person was erased, else it waits."""
        if missing.erased:
            self._erased(delivery, missing.reason, report)
        else:
            self._wait(delivery, missing.reason, report)

    def _wait(self, delivery: Due, reason: str, report: Report) -> None:
        """Hold the delivery until its member is known: pending, due again a
        little later; no attempt counted, the failure budget left as it was."""
        now = self.clock()
        raised = _seconds(delivery.created_at)
        when = now + wait_delay(0.0 if raised is None else now - raised)
        outcome = DeliveryUpdate(
            "pending", delivery.attempts, reason, _at(when), None, delivery.failing_since
        )
        outbox.record(self.engine, delivery.signal.id, delivery.sink, outcome)
        if self._waiting is not None:
            self._waiting.add((delivery.signal.id, delivery.sink))
        report.waiting += 1
        log.info(
            "delivery_waiting",
            sink=delivery.sink,
            signal=delivery.signal.id,
            reason=reason,
            retry_in=round(when - now, 2),
        )

    def _erased(self, delivery: Due, reason: str, report: Report) -> None:
        """The person was erased before the delivery was made: it turns failed
        (visible, ``--retry-failed`` looks again) without a send, and is not
        counted as a failure of the sink or of this round."""
        outcome = DeliveryUpdate(
            "failed", delivery.attempts, reason, None, None, delivery.failing_since
        )
        outbox.record(self.engine, delivery.signal.id, delivery.sink, outcome)
        if self._waiting is not None:
            self._waiting.discard((delivery.signal.id, delivery.sink))
        report.erased += 1
        log.info("delivery_not_sent", sink=delivery.sink, signal=delivery.signal.id, reason=reason)

    def _failed(
        self,
        signal_id: str,
        sink: str,
        *,
        attempts: int,
        error: str,
        since: float | None,
        report: Report,
    ) -> None:
        outcome = DeliveryUpdate(
            "failed", attempts, error, None, None, _at(since if since is not None else self.clock())
        )
        outbox.record(self.engine, signal_id, sink, outcome)
        report.failed += 1
        log.error("delivery_failed", sink=sink, signal=signal_id, attempts=attempts, error=error)

    def pending(self) -> int:
        return outbox.pending_count(self.engine)

    def next_due(self) -> float | None:
        """Seconds until the earliest pending delivery is due, or None if none is."""
        when = _seconds(outbox.earliest_due(self.engine))
        return None if when is None else max(0.0, when - self.clock())

    def retry_failed(self) -> int:
        """``deliver --retry-failed``: failed deliveries become pending, due now."""
        return outbox.retry_failed(self.engine, _at(self.clock()))

    def deliver(self, budget: float, stop: threading.Event | None = None) -> Report:
        """Deliver until nothing is pending or ``budget`` seconds have passed."""
        self._waiting = set()
        try:
            return self._deliver_due(budget, stop, self._waiting)
        finally:
            self._waiting = None

    def _deliver_due(
        self, budget: float, stop: threading.Event | None, waiting: set[tuple[str, str]]
    ) -> Report:
        deadline = self.clock() + budget
        total = Report()
        waiter = stop or threading.Event()
        while True:
            total.add(self.round())
            if total.pending == 0 or waiter.is_set():
                return total
            if total.pending <= len(waiting):
                # Only deliveries waiting for their member are left: what brings
                # it is a later poll of the source, not another round here.
                return total
            wait = self.next_due()
            if wait is None or self.clock() + wait > deadline:
                return total
            if wait > 0 and waiter.wait(wait):
                return total
