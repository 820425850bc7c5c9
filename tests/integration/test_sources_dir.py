"""`edsync run` and `sources.d/`: SIGHUP takes added and removed fragments, and
refuses a broken one keeping the config it runs."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import DREAMAPPLY_KEY
from tests.integration.daemon import DaemonProcess


def fragment(config: Path, name: str, url: str, *extra: str) -> Path:
    """``sources.d/NAME.toml`` beside ``config``: a DreamApply source at ``url``
    whose key is read from a file beside it (relative to sources.d)."""
    directory = config.parent / "sources.d"
    directory.mkdir(exist_ok=True)
    (directory / f"{name}.key").write_text(DREAMAPPLY_KEY + "\n")
    path = directory / f"{name}.toml"
    lines = [
        f"[sources.{name}]",
        'kind = "dreamapply"',
        f'base_url = "{url}"',
        f'api_key_file = "{name}.key"',
        "max_requests_per_minute = 0",
        "snapshot = false",
        'interval = "1s"',
        *extra,
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_sighup_starts_an_added_fragment_and_stops_a_removed_one(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    start_daemon: Callable[[Path], DaemonProcess],
) -> None:
    main, removed, added = (make_simulator(events=n) for n in (100, 70, 40))
    path = write_config(main.url, extra='interval = "1s"\n')
    gone = fragment(path, "removed", removed.url)
    daemon = start_daemon(path)
    daemon.wait_event("poll_done", source="dreamapply", cursor="100")
    daemon.wait_event("poll_done", source="removed", cursor="70", seen=True)

    fragment(path, "added", added.url)
    daemon.signal(signal.SIGHUP)
    assert sorted(daemon.wait_event("config_reloaded")["sources"]) == [
        "added",
        "dreamapply",
        "removed",
    ]
    daemon.wait_event("poll_done", source="added", cursor="40")

    gone.unlink()
    daemon.signal(signal.SIGHUP)
    assert sorted(daemon.wait_event("config_reloaded")["sources"]) == ["added", "dreamapply"]
    # A poll of `removed` under way at the reload may still finish: let two
    # polls of the main source pass, then two more, in which a source still
    # scheduled every second would have asked its server at least once.
    assert main.wait_for_requests(len(main.requests) + 2, timeout=10)
    asked = len(removed.requests)
    assert main.wait_for_requests(len(main.requests) + 3, timeout=10)
    assert len(removed.requests) == asked
    # The sources still configured go on.
    added.journal.append(5)
    daemon.wait_event("poll_done", source="added", cursor="45")
    assert daemon.terminate()[0] == 0


def test_sighup_refuses_a_broken_fragment_naming_it_and_keeps_the_old_config(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    start_daemon: Callable[[Path], DaemonProcess],
) -> None:
    main, kept = make_simulator(events=100), make_simulator(events=70)
    path = write_config(main.url, extra='interval = "1s"\n')
    kept_file = fragment(path, "kept", kept.url)
    daemon = start_daemon(path)
    daemon.wait_event("poll_done", source="dreamapply", cursor="100")
    daemon.wait_event("poll_done", source="kept", cursor="70", seen=True)

    # One reload that removes `kept` and adds a broken fragment: refused whole.
    kept_file.unlink()
    broken = fragment(path, "broken", kept.url, 'intervall = "5s"')
    daemon.signal(signal.SIGHUP)
    refused = daemon.wait_event("config_reload_refused")
    assert refused["error"].startswith(f"{broken}: sources.broken.intervall: unknown key")

    # The old config keeps running: `kept` is still polled, `broken` never is.
    main.journal.append(5)
    kept.journal.append(5)
    daemon.wait_event("poll_done", source="dreamapply", cursor="105")
    daemon.wait_event("poll_done", source="kept", cursor="75", seen=True)
    assert not [line for line in daemon.seen if line.get("source") == "broken"]
    assert daemon.terminate()[0] == 0
