"""Where a credential may go (SPEC 5.5), and the deadline of an attempt
(SPEC 5.1): the pure decisions, without a network."""

from __future__ import annotations

import httpcore
import pytest
from freezegun import freeze_time

from edsync import transport
from edsync.backoff import next_delay
from edsync.errors import AuthError, FatalError, ForeignOriginError, MalformedPageError
from edsync.http import HttpClient, Target
from edsync.origins import Origin, foreign_origin


@pytest.mark.parametrize(
    ("base", "link"),
    [
        ("https://apply.example.edu", "/api/v9/applicants/1"),
        ("https://apply.example.edu", ""),
        ("https://apply.example.edu", "https://apply.example.edu/api/v9/applicants/1"),
        ("https://apply.example.edu", "HTTPS://Apply.Example.EDU/api/v9/applicants/1"),
        ("https://apply.example.edu", "https://apply.example.edu:443/x"),
        ("https://apply.example.edu:443", "https://apply.example.edu/x"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/api/v2/graph/events?$cursor=x"),
        ("http://127.0.0.1", "http://127.0.0.1:80/x"),
        ("http://[::1]:8080", "http://[::1]:8080/x"),
        ("https://bücher.example", "https://xn--bcher-kva.example/x"),
        ("https://apply.example.edu", "//apply.example.edu/x"),
        ("https://apply.example.edu/prefix/", "../x"),
    ],
)
def test_a_path_or_a_url_on_the_same_origin_is_home(base: str, link: str) -> None:
    assert foreign_origin(base, link) is None


@pytest.mark.parametrize(
    ("base", "link", "named"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.2:8080/x", "http://127.0.0.2:8080"),
        ("https://ed.link", "http://ed.link/api/v2/graph/events", "http://ed.link"),
        ("https://ed.link", "https://ed.link:8443/x", "https://ed.link:8443"),
        ("http://ed.link:8080", "http://ed.link/x", "http://ed.link"),
        ("https://ed.link", "https://evil.example/x", "https://evil.example"),
        ("https://ed.link", "https://ed.link.evil.example/x", "https://ed.link.evil.example"),
        ("https://ed.link", "//evil.example/x", "https://evil.example"),
        ("https://ed.link", "ftp://ed.link/x", "ftp://ed.link"),
        ("http://[::1]:8080", "http://[::2]:8080/x", "http://[::2]:8080"),
        ("http://[::1]:8080", "http://[::1]:8081/x", "http://[::1]:8081"),
    ],
)
def test_another_scheme_host_or_port_is_another_origin(base: str, link: str, named: str) -> None:
    found = foreign_origin(base, link)

    assert found is not None
    assert str(found) == named


def test_an_origin_is_named_without_its_userinfo() -> None:
    found = foreign_origin("https://ed.link", "https://token:secret@evil.example:8443/x")

    assert found == Origin("https", "evil.example", 8443)
    assert str(found) == "https://evil.example:8443"


def test_the_client_refuses_another_origin_before_any_attempt() -> None:
    """No connection, no pacing, no retry: the host does not even resolve."""
    client = HttpClient(
        Target.source("edlink"),
        "https://district.invalid",
        headers={"Authorization": "Bearer the-token"},
        retry_for=60.0,
    )
    try:
        with pytest.raises(ForeignOriginError) as refused:
            client.request("GET", "http://district.invalid/api/v2/graph/events?$cursor=x")
    finally:
        client.close()

    message = str(refused.value)
    assert message.startswith("source 'edlink': ")
    assert "http://district.invalid, another origin than base_url's https://district.invalid" in (
        message
    )
    assert "the-token" not in message
    assert isinstance(refused.value, FatalError)
    assert client.requests == 0


def test_a_source_sent_to_another_origin_backs_off_as_for_a_refused_key() -> None:
    """It needs a human (a proxy, an upstream's configuration): polling it
    every interval would only fail again."""
    foreign = [next_delay(ForeignOriginError("x"), 60.0, n) for n in range(1, 10)]

    assert foreign == [next_delay(AuthError("401"), 60.0, n) for n in range(1, 10)]
    assert foreign[-1] > 60.0


def test_a_link_that_is_no_url_is_a_malformed_answer_not_a_crash() -> None:
    client = HttpClient(Target.source("edlink"), "https://district.invalid")
    try:
        with pytest.raises(MalformedPageError, match="a link that is no URL"):
            client.once("GET", "https://district.invalid:notaport/x")
    finally:
        client.close()
    assert client.requests == 0


def test_the_deadline_cuts_each_socket_wait_to_what_is_left() -> None:
    with freeze_time("2026-03-01 09:00:00") as clock, transport.deadline(3.0):
        assert transport._left(30.0, httpcore.ReadTimeout) == pytest.approx(3.0)
        assert transport._left(None, httpcore.ReadTimeout) == pytest.approx(3.0)
        clock.tick(2.5)
        assert transport._left(30.0, httpcore.ReadTimeout) == pytest.approx(0.5)
        assert transport._left(0.2, httpcore.ReadTimeout) == pytest.approx(0.2)
        clock.tick(0.5)
        with pytest.raises(httpcore.ReadTimeout):
            transport._left(30.0, httpcore.ReadTimeout)


def test_without_a_deadline_the_timeout_is_httpx_s_own() -> None:
    assert transport._left(30.0, httpcore.ReadTimeout) == 30.0
    assert transport._left(None, httpcore.ReadTimeout) is None
