"""Upstreams that send valid JSON a fast parser refuses (issue 36, point 3),
over real HTTP on 127.0.0.1.

- ``RawJournal``: the fault server's DreamApply journal (``tests/faultserver.py``,
  its scripted faults included) serving some items, and some resources, as
  the text given, byte for byte: orjson cannot write a lone surrogate escape
  or 50 000 levels of nesting.
- ``RawEdlink``: Edlink's Graph API (SPEC 2.2) from texts: the events by
  ``$after``, ``$last`` and the ``$cursor`` of its own ``$next``, the lists by
  ``$cursor``, ``$first`` on every page, as Edlink pages them. Every request
  is recorded.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

import orjson

from tests.faultserver import Fault, FaultServer, Request, _Handler

LONE_SURROGATE = "Zo\\ud83d"
"""A JSON string's text: what ``JSON.stringify`` writes for "Zo😀" cut inside
the emoji (the high half of its surrogate pair, alone). Valid JSON."""

DEPTH = 50_000


def nested(levels: int = DEPTH) -> str:
    """A JSON array nested ``levels`` deep: valid, and past every parser's depth."""
    return "[" * levels + "]" * levels


def with_field(value: Mapping[str, Any], name: str, text: str) -> str:
    """``value`` as JSON text, with a member ``name`` whose value is ``text`` as is."""
    rendered = orjson.dumps(value).decode()
    assert rendered.endswith("}")
    separator = "," if len(rendered) > 2 else ""
    return f'{rendered[:-1]}{separator}"{name}":{text}}}'


# -- DreamApply ---------------------------------------------------------------------


class RawJournal(FaultServer):
    """The fault server's journal of ``events``; the ids in ``texts`` are
    served as that text, and the resources in ``resource_texts`` (keyed as
    ``faultserver.resources``: ``("applicants", 5)``) too."""

    def __init__(
        self,
        events: Mapping[int, Any],
        *,
        texts: Mapping[int, str],
        resource_texts: Mapping[tuple[str, int], str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(events, **kwargs)
        self.texts = dict(texts)
        self.resource_texts = dict(resource_texts or {})

    def _page(self, query: Mapping[str, str], fault: Fault | None) -> tuple[int, bytes]:
        count, body = super()._page(query, fault)
        for event_id, text in self.texts.items():
            # orjson renders a dict the same way every time: its text is found as is.
            rendered = orjson.dumps(self.events[event_id])
            body = body.replace(b'"%d":' % event_id + rendered, b'"%d":' % event_id + text.encode())
        return count, body

    def _resource(self, handler: _Handler, request: Request) -> bool:
        parts = request.path.rstrip("/").rsplit("/", 2)
        key = (parts[-2], int(parts[-1])) if parts[-1].isdigit() else None
        text = self.resource_texts.get(key) if key is not None else None
        if text is None:
            return super()._resource(handler, request)
        headers = {"Content-Type": "application/json; charset=utf-8"}
        return handler.send_response(200, headers, text.encode())


# -- Edlink -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seen:
    """A request as the server read it."""

    path: str
    query: Mapping[str, str]


class RawEdlink:
    """Edlink's Graph API from texts: ``events`` (id, the event's JSON text) in
    order, ``lists`` (collection, e.g. ``people`` → the objects' JSON texts)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.events: list[tuple[str, str]] = []
        self.lists: dict[str, list[str]] = {}
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._server: _EdlinkServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        self._server = _EdlinkServer(self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def seen(self, path: str) -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def answer(self, path: str, query: Mapping[str, str]) -> tuple[int, bytes]:
        """(status, body) for one GET."""
        with self._lock:
            self.requests.append(Seen(path, dict(query)))
            events = list(self.events)
        collection = path.removeprefix("/api/v2/graph/").strip("/")
        if collection == "events":
            ids = [event_id for event_id, _ in events]
            texts = [text for _, text in events]
            after = query.get("$after")
            if after is not None and after not in ids:
                return _refusal("INVALID_CURSOR", f"no event {after!r}")
            start = ids.index(after) + 1 if after is not None else 0
            return 200, self._page(path, texts, start, query)
        if collection.isalpha():  # a list endpoint: one with nothing set is empty
            return 200, self._page(path, self.lists.get(collection, []), 0, query)
        return _refusal("NOT_FOUND", f"no such resource: {path}", status=404)

    def _page(self, path: str, items: list[str], start: int, query: Mapping[str, str]) -> bytes:
        if "$last" in query:
            chosen = items[start:][-int(query["$last"]) :]
            return _envelope(chosen, None)
        start = int(query.get("$cursor", start))
        first = int(query.get("$first", "100"))
        chosen = items[start : start + first]
        following = None
        if start + first < len(items):
            following = f"{self.url}{path}?$first={first}&$cursor={start + first}"
        return _envelope(chosen, following)


def _envelope(items: list[str], following: str | None) -> bytes:
    parts = ['{"$data":[', ",".join(items), "]"]
    if following is not None:
        parts.append(',"$next":' + orjson.dumps(following).decode())
    parts.append(f',"$request":"{uuid.uuid4()}"}}')
    return "".join(parts).encode()


def _refusal(code: str, message: str, *, status: int = 400) -> tuple[int, bytes]:
    return status, orjson.dumps({"$errors": [{"code": code, "message": message}]})


class _EdlinkServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: RawEdlink) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _EdlinkHandler)


class _EdlinkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects
    server: _EdlinkServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        owner = self.server.owner
        if self.headers.get("Authorization") != f"Bearer {owner.token}":
            status, body = _refusal("INVALID_TOKEN", "You must supply a valid access token.")
        else:
            query = dict(parse_qsl(url.query, keep_blank_values=True))
            status, body = owner.answer(url.path, query)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads ``RawEdlink.requests``."""
