"""DreamApply's webhooks, played by the simulator: a POST for each journal event.

DreamApply POSTs a subscribed event to the client's endpoint "in the same
format as the GET /api/journal request", with the authorization header it
was given, and expects 200, 201, 202 or 204
(help.dreamapply.com/kb/integrations/webhooks/how-it-works). Here each
appended event becomes one such POST, ``{"<id>": {item}}``, sent in order
from a thread of its own so an append never waits for the receiver. Every
delivery is recorded (``deliveries``). DreamApply's retries (five, a minute
apart) are not played: a delivery that fails is recorded and dropped, which
is what a receiver must survive anyway.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edsync_sim import dreamapply
from edsync_sim.dataset import Journal

if TYPE_CHECKING:
    import httpx

__all__ = ["WebhookDelivery", "WebhookSender"]


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One POST: the event's id, the status answered (None: no answer, see
    ``error``), and when it was sent and answered (``time.monotonic()``)."""

    event_id: int
    status: int | None
    sent_at: float
    answered_at: float
    error: str | None = None


class WebhookSender:
    """POSTs each event of ``journal`` appended after ``start()`` to ``url``
    with ``Authorization: <authorization>``; ``send(first, last)`` (re)sends
    any range of ids, as DreamApply's "rewind" does."""

    def __init__(
        self, journal: Journal, url: str, authorization: str, timeout: float = 5.0
    ) -> None:
        self.journal = journal
        self.url = url
        self.authorization = authorization
        self.timeout = timeout
        self.deliveries: list[WebhookDelivery] = []
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._delivered = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.journal.on_append.append(self.send)
        self._thread = threading.Thread(target=self._run, name="simulator-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the POSTs already queued."""
        if self.send in self.journal.on_append:
            self.journal.on_append.remove(self.send)
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def send(self, first: int, last: int) -> None:
        """Queue a POST for each event id from ``first`` to ``last``."""
        for event_id in range(first, last + 1):
            self._queue.put(event_id)

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Block until ``count`` deliveries are recorded; False on timeout."""
        with self._delivered:
            return self._delivered.wait_for(lambda: len(self.deliveries) >= count, timeout)

    def payload(self, event_id: int) -> bytes:
        """The journal-shaped body for one event: ``{"<id>": {item}}``."""
        return dreamapply.render(self.journal, [event_id - 1], frozenset())

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=self.timeout) as client:
            while (event_id := self._queue.get()) is not None:
                delivery = self._post(client, event_id)
                with self._delivered:
                    self.deliveries.append(delivery)
                    self._delivered.notify_all()

    def _post(self, client: httpx.Client, event_id: int) -> WebhookDelivery:
        import httpx

        headers = {"Authorization": self.authorization, "Content-Type": "application/json"}
        sent = time.monotonic()
        try:
            reply = client.post(self.url, content=self.payload(event_id), headers=headers)
        except httpx.HTTPError as exc:
            return WebhookDelivery(event_id, None, sent, time.monotonic(), type(exc).__name__)
        return WebhookDelivery(event_id, reply.status_code, sent, time.monotonic())
