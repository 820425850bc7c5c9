"""A real `edsync run` subprocess whose JSON log lines tests can wait on."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import DREAMAPPLY_KEY

Line = dict[str, Any]


class DaemonProcess:
    def __init__(self, config: Path, env: Mapping[str, str] | None = None) -> None:
        full_env = {**os.environ, "DREAMAPPLY_API_KEY": DREAMAPPLY_KEY, **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edsync", "run", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=full_env,
        )
        self.lines: queue.Queue[Line | None] = queue.Queue()
        self.seen: list[Line] = []
        self.raw: list[bytes] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.raw.append(raw)
            try:
                line = orjson.loads(raw)
            except orjson.JSONDecodeError:
                line = {"event": "non_json", "text": raw.decode(errors="replace")}
            self.lines.put(line if isinstance(line, dict) else {"event": "non_json"})
        self.lines.put(None)

    def wait_for(
        self, predicate: Callable[[Line], bool], timeout: float = 20.0, *, seen: bool = False
    ) -> Line:
        """The first log line (from now on, or ever with ``seen``) that satisfies ``predicate``."""
        if seen:
            for earlier in self.seen:
                if predicate(earlier):
                    return earlier
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no matching log line within {timeout}s; last: {self.seen[-5:]}"
                )
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(
                    f"edsync run exited: {self.proc.wait()}; last: {self.seen[-5:]}"
                )
            self.seen.append(line)
            if predicate(line):
                return line

    def wait_event(
        self, name: str, timeout: float = 20.0, *, seen: bool = False, **fields: Any
    ) -> Line:
        return self.wait_for(
            lambda line: (
                line.get("event") == name and all(line.get(k) == v for k, v in fields.items())
            ),
            timeout,
            seen=seen,
        )

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def terminate(self, timeout: float = 10.0) -> tuple[int, float]:
        """SIGTERM; the exit code and how long the process took to exit."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        elapsed = time.monotonic() - started
        self.close()
        return code, elapsed

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(timeout=5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def output(self) -> bytes:
        return b"".join(self.raw)
