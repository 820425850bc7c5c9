"""Edlink replayed from the hand-written payloads, over real HTTP on 127.0.0.1.

Not a simulator: it answers exactly what a test put in ``answers`` (by path),
so the product meets the vendor's documented bodies and nothing else. A path
with no answer gets an empty page; ``$last`` on the stream too. Every request
is recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

import orjson

from tests.contract.edlink.payloads import REQUEST_ID

Answer = Callable[[Mapping[str, str]], tuple[int, Any]]


@dataclass(frozen=True, slots=True)
class Seen:
    path: str
    query: Mapping[str, str]


def fixed(status: int, body: Any) -> Answer:
    return lambda _query: (status, body)


class RecordedEdlink:
    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self.requests: list[Seen] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, path: str, query: Mapping[str, str]) -> tuple[int, Any]:
        self.requests.append(Seen(path, dict(query)))
        if path.endswith("/events") and "$last" in query:
            return 200, {"$data": [], "$request": REQUEST_ID}
        handler = self.answers.get(path)
        if handler is None:
            return 200, {"$data": [], "$request": REQUEST_ID}
        return handler(query)

    def __enter__(self) -> Self:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                status, body = owner.answer(parts.path, dict(parse_qsl(parts.query)))
                raw = orjson.dumps(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        assert self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
