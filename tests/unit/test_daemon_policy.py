"""The daemon's pure decisions: backoff, error kinds, health, sd_notify parsing."""

from __future__ import annotations

import os

import pytest

from edsync.backoff import next_delay
from edsync.errors import AuthError, FatalError, MalformedPageError, RefusedError, RetriableError
from edsync.ops.metrics import Health
from edsync.ops.systemd import Notifier
from edsync.run.runner import error_kind


def test_a_refused_credential_backs_off_exponentially_up_to_an_hour() -> None:
    delays = [next_delay(AuthError("401"), 60.0, n) for n in range(1, 10)]
    assert delays[:4] == [60.0, 120.0, 240.0, 480.0]
    assert delays[-1] == 3600.0


def test_an_upstream_refusal_backs_off_like_a_credential_and_a_plain_failure_does_not() -> None:
    """An Edlink code such as UNSUPPORTED_OPERATION will not fix itself by the
    next interval (SPEC 2.2: a source error, backed off); a 5xx might."""
    refused = [next_delay(RefusedError("UNKNOWN_PROVIDER"), 60.0, n) for n in range(1, 10)]
    assert refused == [next_delay(AuthError("401"), 60.0, n) for n in range(1, 10)]
    assert [next_delay(FatalError("x"), 60.0, n) for n in (1, 5)] == [60.0, 60.0]


def test_retry_after_is_never_undercut() -> None:
    assert next_delay(RetriableError("429", retry_after=900.0), 60.0, 1) == 900.0
    assert next_delay(RetriableError("503", retry_after=5.0), 60.0, 1) == 60.0
    assert next_delay(RetriableError("timeout"), 60.0, 7) == 60.0


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (AuthError("x"), "auth"),
        (MalformedPageError("x"), "malformed"),
        (RetriableError("x"), "retriable"),
        (FatalError("x"), "fatal"),
        (RefusedError("x"), "refused"),
    ],
)
def test_error_kinds(exc: Exception, kind: str) -> None:
    assert error_kind(exc) == kind


def test_health_turns_red_only_after_failing_longer_than_the_limit() -> None:
    now = [1000.0]
    health = Health(60.0, clock=lambda: now[0])
    health.track({"a", "b"})
    health.failed("a")
    now[0] += 59
    assert health.report()["healthy"] is True
    health.failed("a")  # still failing since the first failure
    now[0] += 2
    report = health.report()
    assert report["healthy"] is False
    assert report["failing_seconds"] == {"a": 61.0}
    health.succeeded("a")
    assert health.report()["healthy"] is True


def test_notifier_reads_abstract_sockets_and_the_watchdog() -> None:
    notifier = Notifier({"NOTIFY_SOCKET": "@edsync", "WATCHDOG_USEC": "30000000"})
    assert notifier.address == "\0edsync"
    assert notifier.watchdog_interval == 15.0


def test_notifier_ignores_a_watchdog_meant_for_another_process() -> None:
    other = str(os.getpid() + 1)
    notifier = Notifier({"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "100", "WATCHDOG_PID": other})
    assert notifier.watchdog_interval is None


def test_notifier_without_socket_is_silent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    notifier.ready("fine")  # no socket: nothing to send, nothing raised
