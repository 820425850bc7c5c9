"""SPEC 5.5 over real sockets: TLS is verified (``ca_bundle`` adds a CA), plain
http is refused except to loopback, and response bodies are size-limited."""

from __future__ import annotations

import functools
import gzip
import socket
import threading
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, Self, cast

import orjson
import pytest
import stamina
from sqlalchemy import Engine

from edsync.cli import main
from edsync.config import load_config
from edsync.errors import MalformedPageError
from edsync.http import HttpClient, Target
from edsync.mirror import checkpoints
from edsync.run.drain import drain
from edsync.settings import HttpUrl, Secret
from edsync.sources.base import Source
from edsync.sources.dreamapply.journal import DreamApplySource, Settings
from tests.conftest import DREAMAPPLY_KEY
from tests.tlscerts import TlsFiles, make_tls_files

MiB = 1024 * 1024
AUTH = {"Authorization": f'DREAM apikey="{DREAMAPPLY_KEY}"'}


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def ledger_size(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT COUNT(*) FROM events").scalar_one())


def cursor_of(engine: Engine, source: str = "dreamapply") -> str | None:
    checkpoint = checkpoints.load(engine, source)
    if checkpoint is None or checkpoint.cursor is None:
        return None
    return checkpoint.cursor.value


# -- TLS -------------------------------------------------------------------


def test_https_with_the_private_ca_in_ca_bundle_mirrors_the_journal(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    make_engine: Callable[..., Engine],
    tls_files: TlsFiles,
) -> None:
    sim = make_simulator(events=300, tls=tls_files.server_context())
    assert sim.url.startswith("https://127.0.0.1:")
    path = write_config(sim.url, extra=f'ca_bundle = "{tls_files.ca}"\n')

    assert main(["backfill", "-c", str(path)]) == 0

    engine = make_engine("mirror.db")
    assert ledger_size(engine) == 300
    assert cursor_of(engine) == "300"
    assert sim.requests, "the backfill spoke to the https simulator"


def test_https_without_ca_bundle_fails_verification_naming_the_source(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    make_engine: Callable[..., Engine],
    capsys: pytest.CaptureFixture[str],
    tls_files: TlsFiles,
) -> None:
    sim = make_simulator(events=50, tls=tls_files.server_context())
    path = write_config(sim.url)

    assert main(["backfill", "-c", str(path)]) == 1

    err = capsys.readouterr().err
    assert "source 'dreamapply'" in err
    assert "certificate verification failed" in err
    assert "Traceback" not in err
    assert sim.requests == [], "no request got past the handshake"
    engine = make_engine("mirror.db")
    assert ledger_size(engine) == 0
    checkpoint = checkpoints.load(engine, "dreamapply")
    assert checkpoint is not None
    assert checkpoint.cursor is None
    assert "certificate verification failed" in (checkpoint.last_error or "")


HUB_SINK = """
[sinks.hub]
kind = "learninghub"
base_url = "{url}"
program_id = "FOO"
user_id = "edsync"
api_key_env = "HUB_KEY"
{ca}"""


@pytest.mark.parametrize("trusted", [True, False])
def test_check_on_a_hub_verifies_tls_and_leaves_credentials_to_the_first_delivery(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tls_files: TlsFiles,
    trusted: bool,
) -> None:
    """SPEC 2.3: the Event Store documents no read endpoint, so `check` proves
    the host answers over TLS and says the key is verified by the first PUT;
    it reads no event and writes none."""
    sim = make_simulator(events=5, tls=tls_files.server_context())
    monkeypatch.setenv("HUB_KEY", "a key the hub would refuse")
    ca = f'ca_bundle = "{tls_files.ca}"\n'
    sink = HUB_SINK.format(url=sim.url, ca=ca if trusted else "")
    path = write_config(sim.url, extra=ca + sink)
    capsys.readouterr()

    assert main(["check", "-c", str(path)]) == (0 if trusted else 1)

    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("sink hub:"))
    if trusted:
        assert line.startswith("sink hub: ok (host answers over TLS")
        assert "verified by the first delivery" in line
    else:
        assert line.startswith("sink hub: FAILED")
        assert "certificate verification failed" in line
    assert "a key the hub would refuse" not in out
    assert sim.hub.puts == []
    assert not [r for r in sim.requests if r.path.startswith("/events")]


def test_a_certificate_for_another_address_is_refused_even_with_the_ca(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    tls_files: TlsFiles,
) -> None:
    # Every 127/8 address is loopback on Linux; the certificate names only 127.0.0.1.
    try:
        sim = make_simulator(events=10, host="127.0.0.2", tls=tls_files.server_context())
    except OSError as exc:
        pytest.skip(f"cannot listen on 127.0.0.2: {exc}")
    path = write_config(sim.url, extra=f'ca_bundle = "{tls_files.ca}"\n')

    assert main(["backfill", "-c", str(path)]) == 1

    err = capsys.readouterr().err
    assert "source 'dreamapply'" in err
    assert "certificate verification failed" in err
    assert "mismatch" in err
    assert "Traceback" not in err
    assert sim.requests == []


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "not found"), (b"not a certificate\n", "no usable PEM certificate")],
)
def test_an_unusable_ca_bundle_is_a_configuration_error(
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    content: bytes | None,
    problem: str,
) -> None:
    bundle = tmp_path / "ca.pem"
    if content is not None:
        bundle.write_bytes(content)
    path = write_config("https://127.0.0.1:9", extra=f'ca_bundle = "{bundle}"\n')

    assert main(["backfill", "-c", str(path)]) == 78

    err = capsys.readouterr().err
    assert "sources.dreamapply.ca_bundle" in err
    assert str(path) in err
    assert problem in err
    assert "Traceback" not in err
    assert not (tmp_path / "mirror.db").exists(), "nothing is touched on a config error"


# -- plain http --------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://apply.example.edu",
        "http://127.0.0.1.example.edu",
        "http://localhost.example.edu:8080",
        "http://10.0.0.5",
    ],
)
def test_plain_http_to_a_remote_host_is_refused_at_load(
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    url: str,
) -> None:
    path = write_config(url)

    assert main(["backfill", "-c", str(path)]) == 78

    err = capsys.readouterr().err
    assert "sources.dreamapply.base_url" in err
    assert str(path) in err
    assert "allow_insecure_http" in err
    assert "Traceback" not in err
    assert not (tmp_path / "mirror.db").exists(), "nothing is touched on a config error"


def test_plain_http_to_a_remote_host_is_accepted_when_allowed(
    write_config: Callable[..., Path],
) -> None:
    path = write_config("http://apply.example.edu/", extra="allow_insecure_http = true\n")

    source = load_config(path).sources["dreamapply"]

    assert source.base_url == "http://apply.example.edu"
    assert source.allow_insecure_http is True


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8765", "http://localhost:8765", "http://[::1]:8765", "http://[::1]"]
)
def test_plain_http_to_loopback_needs_no_permission(
    write_config: Callable[..., Path], url: str
) -> None:
    source = load_config(write_config(url)).sources["dreamapply"]

    assert source.base_url == url
    assert source.allow_insecure_http is False


def test_plain_http_to_the_loopback_simulator_backfills(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    make_engine: Callable[..., Engine],
) -> None:
    sim = make_simulator(events=20)
    assert sim.url.startswith("http://127.0.0.1:")

    assert main(["backfill", "-c", str(write_config(sim.url))]) == 0

    assert ledger_size(make_engine("mirror.db")) == 20


# -- response size limit -----------------------------------------------------


class _FloodHandler(BaseHTTPRequestHandler):
    """HEAD: a small journal; GET: a body far larger than any client should read."""

    protocol_version = "HTTP/1.1"
    timeout = 30  # a client that neither reads nor closes cannot hang the test
    server: _FloodServer

    def log_message(self, format: str, *args: object) -> None:
        """Silent."""

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Count", "5")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def setup(self) -> None:
        super().setup()
        # Little in flight: what was sent is close to what the client took in.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)

    def do_GET(self) -> None:
        flood = self.server.flood
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if flood.mode == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(flood.limit))
        if flood.mode == "gzip":
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        sent = 0
        try:
            for piece in flood.pieces():
                self.wfile.write(piece)
                sent += len(piece)
        except OSError:
            pass  # the client hung up: what we want
        flood.record(sent)


class _FloodServer(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close() waits for every handler: counts are final

    def __init__(self, flood: Flood) -> None:
        self.flood = flood
        super().__init__(("127.0.0.1", 0), _FloodHandler)


class Flood:
    """A journal whose pages are far larger than any client should read.

    ``"length"``: ``limit`` bytes, all declared up front in ``Content-Length``;
    ``"chunked"``: an endless chunked body (cut off at ``limit`` so a broken
    client cannot hang the run); ``"gzip"``: ``body``, sent as it is with
    ``Content-Encoding: gzip``. ``sent`` is the bytes written per GET, final
    once stopped.
    """

    def __init__(
        self, mode: Literal["length", "chunked", "gzip"], limit: int = 0, body: bytes = b""
    ) -> None:
        self.mode = mode
        self.body = body
        self.limit = len(body) if mode == "gzip" else limit
        self.sent: list[int] = []
        self._lock = threading.Lock()
        self._server = _FloodServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def pieces(self) -> Iterator[bytes]:
        block = 64 * 1024
        if self.mode == "gzip":
            for start in range(0, len(self.body), block):
                yield self.body[start : start + block]
            return
        blank = b" " * block
        for _ in range(self.limit // block):
            yield blank if self.mode == "length" else b"%x\r\n%s\r\n" % (block, blank)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def record(self, sent: int) -> None:
        with self._lock:
            self.sent.append(sent)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


@pytest.fixture
def two_attempts() -> Iterator[None]:
    stamina.set_testing(True, attempts=2)
    yield
    stamina.set_testing(False)


def da_source(url: str, *, max_body: int | None = None) -> Source:
    """The DreamApply source, in-process; ``max_body`` gives it its own HttpClient."""
    settings = Settings(
        name="dreamapply",
        kind="dreamapply",
        base_url=HttpUrl(url),
        api_key=Secret("DREAMAPPLY_API_KEY", DREAMAPPLY_KEY),
        max_requests_per_minute=0,
        snapshot=False,  # the journal alone: its limits are what is tested here
    )
    http = None
    if max_body is not None:
        http = HttpClient(Target.source("dreamapply"), url, headers=AUTH, max_body=max_body)
    # cast: its class attributes are narrower than the (mutable) Protocol's.
    return cast("Source", DreamApplySource(settings, http=http))


@pytest.fixture
def mirrored_40(make_simulator: Callable[..., Any], make_engine: Callable[..., Engine]) -> Engine:
    """A mirror whose DreamApply cursor is at 40, read from the real simulator."""
    engine = make_engine()
    source = da_source(make_simulator(events=40).url)
    try:
        drain(engine, source)
    finally:
        source.close()
    assert cursor_of(engine) == "40"
    return engine


@pytest.mark.parametrize(
    ("mode", "limit", "message"),
    [
        ("length", 200 * MiB, "response of 209715200 bytes is too large"),
        ("chunked", 1024 * MiB, "response exceeds 1000000 bytes"),
    ],
)
def test_an_oversized_body_fails_the_source_without_being_buffered(
    mirrored_40: Engine,
    two_attempts: None,
    mode: Literal["length", "chunked"],
    limit: int,
    message: str,
) -> None:
    with Flood(mode, limit) as flood:
        source = da_source(flood.url, max_body=1_000_000)
        try:
            with pytest.raises(MalformedPageError, match=message) as failed:
                drain(mirrored_40, source)
        finally:
            source.close()
    # Stopped: every handler has finished writing, so the counts are final.

    assert "source 'dreamapply'" in str(failed.value)
    assert len(flood.sent) == 2, "a malformed page is retried like a 5xx, then fails"
    assert max(flood.sent) < 4 * MiB, f"the client read on: {flood.sent}"
    assert cursor_of(mirrored_40) == "40"
    assert ledger_size(mirrored_40) == 40


def test_a_body_within_the_limit_is_read(
    make_simulator: Callable[..., Any], make_engine: Callable[..., Engine]
) -> None:
    engine = make_engine()
    source = da_source(make_simulator(events=40).url, max_body=1_000_000)
    try:
        drain(engine, source)
    finally:
        source.close()

    assert cursor_of(engine) == "40"


@functools.cache
def gzip_of_zeros(size: int) -> bytes:
    """``size`` zero bytes, gzipped: about a thousandth of that on the wire."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(MiB)
    return b"".join(packer.compress(block) for _ in range(size // MiB)) + packer.flush()


def test_a_gzip_bomb_is_cut_off_at_the_decoded_limit(
    mirrored_40: Engine, two_attempts: None
) -> None:
    bomb = gzip_of_zeros(64 * MiB)  # 64 KiB on the wire: one network read
    with Flood("gzip", body=bomb) as flood:
        source = da_source(flood.url, max_body=1_000_000)
        tracemalloc.start()
        try:
            with pytest.raises(MalformedPageError, match="response exceeds 1000000 bytes"):
                drain(mirrored_40, source)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            source.close()

    assert len(flood.sent) == 2
    assert peak < 16 * MiB, f"inflated {peak} bytes to read a 1 MB-limited page"
    assert cursor_of(mirrored_40) == "40"


def test_a_gzip_page_is_decoded_and_limited_by_its_decoded_size(two_attempts: None) -> None:
    page = orjson.dumps(
        {str(i): {"event": "Applicant registered", "pad": "x" * 200} for i in range(1000)}
    )
    assert len(page) > 200_000
    with Flood("gzip", body=gzip.compress(page)) as flood:
        roomy = HttpClient(Target.source("dreamapply"), flood.url, max_body=1_000_000)
        tight = HttpClient(Target.source("dreamapply"), flood.url, max_body=100_000)
        try:
            assert roomy.request("GET", "/api/journal").body == page
            with pytest.raises(MalformedPageError, match="response exceeds 100000 bytes"):
                tight.request("GET", "/api/journal")
        finally:
            roomy.close()
            tight.close()
    assert len(flood.sent) == 3
