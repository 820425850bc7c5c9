"""Deployment files: the systemd units, the secrets example, the Grafana dashboard, the docs.

They ship beside the package and nothing else exercises them, so these tests
hold them to what SPEC 5.6-7 and the runbook (README.md, "Run as a service") say.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edsync.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "systemd"
DAEMON = SYSTEMD / "edsync.service"
BACKFILL = SYSTEMD / "edsync-backfill.service"
ENV_EXAMPLE = SYSTEMD / "edsync.env.example"
DASHBOARD = ROOT / "grafana" / "edsync-dashboard.json"
RUNBOOK = ROOT / "README.md"
CONFIG_EXAMPLE = ROOT / "config.example.toml"

INSTALLED_EDSYNC = "/opt/edsync/.venv/bin/edsync"
CONFIG = "/etc/edsync/edsync.toml"
MIRROR_URL = "sqlite:////var/lib/edsync/edsync.db"
SECRETS = {
    "DREAMAPPLY_API_KEY",
    "DREAMAPPLY_WEBHOOK_AUTH",
    "EDLINK_TOKEN",
    "LEARNINGHUB_API_KEY",
    "EDSYNC_WEBHOOK_SECRET",
}

# The metric names edsync exposes on /metrics: the dashboard may use no other.
METRICS = {
    "edsync_events_applied_total",  # counter {source, status}
    "edsync_polls_total",  # counter {source, outcome}
    "edsync_errors_total",  # counter {source, kind}
    "edsync_lag_events",  # gauge {source}
    "edsync_checkpoint_position",  # gauge {source}
    "edsync_last_success_timestamp_seconds",  # gauge {source}
    "edsync_consecutive_failures",  # gauge {source}
    "edsync_page_duration_seconds_bucket",  # histogram {source}
    "edsync_page_duration_seconds_sum",
    "edsync_page_duration_seconds_count",
    "edsync_deliveries",  # gauge {sink, status}
    "edsync_source_healthy",  # gauge {source}
    "edsync_http_retries_total",  # counter {source, cause}
    "edsync_http_requests_total",  # counter {source}
    "edsync_http_throttled_total",  # counter {source}
}
METRICS_WITHOUT_SOURCE = {"edsync_deliveries"}

Unit = dict[str, dict[str, list[str]]]

BOOLEANS = {"yes": True, "true": True, "on": True, "1": True}
BOOLEANS |= {"no": False, "false": False, "off": False, "0": False}

# What both units must set, identically: identity, files, hardening.
COMMON: dict[str, str] = {
    "DynamicUser": "yes",
    "User": "edsync",
    "StateDirectory": "edsync",
    "WorkingDirectory": "/var/lib/edsync",
    "ConfigurationDirectory": "edsync",
    "EnvironmentFile": "-/etc/edsync/edsync.env",
    "UMask": "0077",
    "KillSignal": "SIGTERM",
    "TimeoutStopSec": "15",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
}
HARDENING_LISTS = ("RestrictAddressFamilies", "SystemCallFilter")


def parse_unit(text: str) -> Unit:
    """A systemd unit as {section: {key: [values…]}}: keys may repeat, so values are lists."""
    sections: Unit = {}
    current: dict[str, list[str]] | None = None
    lines = iter(text.splitlines())
    for raw in lines:
        line = raw.strip()
        while line.endswith("\\"):  # continuation line
            line = line[:-1].rstrip() + " " + next(lines, "").strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"key outside a section: {raw!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=VALUE: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def last(unit: Unit, key: str, section: str = "Service") -> str:
    values = unit.get(section, {}).get(key)
    assert values, f"[{section}] {key}= is missing"
    return values[-1]


def same(actual: str, expected: str) -> bool:
    if expected.lower() in BOOLEANS:
        return BOOLEANS.get(actual.lower()) == BOOLEANS[expected.lower()]
    return actual == expected


def words(unit: Unit, key: str, section: str = "Service") -> list[str]:
    return [w for value in unit.get(section, {}).get(key, []) for w in value.split()]


@pytest.fixture(scope="module")
def daemon() -> Unit:
    return parse_unit(DAEMON.read_text())


@pytest.fixture(scope="module")
def backfill() -> Unit:
    return parse_unit(BACKFILL.read_text())


def test_parse_unit_collects_repeated_keys_and_continuations() -> None:
    unit = parse_unit(
        "# comment\n[Service]\nSystemCallFilter=@system-service\n; comment\n"
        "SystemCallFilter=~@privileged \\\n  @resources\nCapabilityBoundingSet=\n"
    )
    assert unit == {
        "Service": {
            "SystemCallFilter": ["@system-service", "~@privileged @resources"],
            "CapabilityBoundingSet": [""],
        }
    }


@pytest.mark.parametrize("path", [DAEMON, BACKFILL], ids=lambda p: p.name)
def test_units_share_identity_files_and_hardening(path: Path) -> None:
    unit = parse_unit(path.read_text())
    wrong = {
        key: unit.get("Service", {}).get(key)
        for key, want in COMMON.items()
        if not unit.get("Service", {}).get(key) or not same(unit["Service"][key][-1], want)
    }
    expected = {key: COMMON[key] for key in wrong}
    assert not wrong, f"{path.name}: expected {expected}, got {wrong}"
    assert set(words(unit, "RestrictAddressFamilies")) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    filters = unit["Service"]["SystemCallFilter"]
    assert "@system-service" in filters
    denied = [w.lstrip("~") for f in filters if f.startswith("~") for w in f.split()]
    assert {"@privileged", "@resources"} <= set(denied)
    assert "network-online.target" in words(unit, "After", "Unit")
    assert "network-online.target" in words(unit, "Wants", "Unit")


def test_backfill_hardening_is_the_daemons(daemon: Unit, backfill: Unit) -> None:
    for key in (*COMMON, *HARDENING_LISTS, "Group", "StateDirectoryMode", "SystemCallErrorNumber"):
        assert backfill["Service"].get(key) == daemon["Service"].get(key), key


def test_daemon_unit(daemon: Unit) -> None:
    assert last(daemon, "Type") == "notify"
    assert last(daemon, "NotifyAccess") == "main"
    assert last(daemon, "ExecStart") == f"{INSTALLED_EDSYNC} run -c {CONFIG}"
    assert re.fullmatch(
        r"/(usr/)?bin/kill (-HUP|-s HUP|-SIGHUP|--signal HUP) \$MAINPID", last(daemon, "ExecReload")
    )
    assert last(daemon, "WatchdogSec") == "60"
    assert last(daemon, "Restart") == "on-failure"
    assert last(daemon, "RestartSec") == "5"
    assert "78" in words(daemon, "RestartPreventExitStatus")  # a config error: don't loop
    # SIGTERM ends edsync within 10 s (SPEC 5.6): the stop timeout must leave it that.
    assert int(last(daemon, "TimeoutStopSec")) > 10
    assert last(daemon, "WantedBy", "Install") == "multi-user.target"


def test_backfill_unit(backfill: Unit) -> None:
    assert last(backfill, "Type") == "oneshot"
    assert last(backfill, "ExecStart") == f"{INSTALLED_EDSYNC} backfill -c {CONFIG}"
    assert last(backfill, "TimeoutStartSec") == "infinity"
    assert "WatchdogSec" not in backfill["Service"]
    assert backfill["Service"].get("Restart", ["no"])[-1] == "no"
    # Never together with the daemon on one SQLite file; the ordering makes
    # systemd finish stopping one before starting the other.
    assert "edsync.service" in words(backfill, "Conflicts", "Unit")
    ordering = words(backfill, "After", "Unit") + words(backfill, "Before", "Unit")
    assert "edsync.service" in ordering
    assert "Install" not in backfill  # started by hand, never at boot


def test_env_example_names_the_secrets_the_config_reads() -> None:
    text = ENV_EXAMPLE.read_text()
    assigned = {
        line.partition("=")[0]
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    assert assigned == SECRETS
    assert "chmod 600" in text
    # Every *_env the example config names (and the commented Edlink one) is here.
    named = set(re.findall(r'^#?\s*\w+_env\s*=\s*"(\w+)"', CONFIG_EXAMPLE.read_text(), re.M))
    assert named <= SECRETS, named - SECRETS


def test_runbook_config_edit_gives_the_state_directory_mirror(tmp_path: Path) -> None:
    """The runbook's sed turns config.example.toml into a valid config on /var/lib/edsync."""
    runbook = RUNBOOK.read_text()
    sed = re.search(r"sed -i 's#(.+?)#(.+?)#' /etc/edsync/edsync\.toml", runbook)
    assert sed, "the runbook no longer edits the mirror url with sed"
    edited, count = re.subn(sed[1], sed[2], CONFIG_EXAMPLE.read_text(), flags=re.M)
    assert count == 1, "the sed no longer matches config.example.toml's mirror url"
    path = tmp_path / "edsync.toml"
    path.write_text(edited)
    config = load_config(path, env=dict.fromkeys(SECRETS, "secret"))
    assert config.mirror.url == MIRROR_URL
    for needle in (
        "pip install",
        "chmod 600",
        f"{INSTALLED_EDSYNC} check -c {CONFIG}",
        f"{INSTALLED_EDSYNC} status -c {CONFIG}",
        "systemctl daemon-reload",
        "systemctl start edsync-backfill",
        "journalctl -u edsync-backfill -f",
        "systemctl enable --now edsync",
        "systemctl reload edsync",
        "/metrics",
        "/healthz",
        DASHBOARD.relative_to(ROOT).as_posix(),
    ):
        assert needle in runbook, needle


# systemd-analyze verify ------------------------------------------------------


def _runnable_stand_in() -> str:
    """An absolute executable that exists here, for ExecStart= in the verified copies."""
    venv_edsync = Path(sys.executable).with_name("edsync")
    if venv_edsync.is_file():
        return str(venv_edsync)
    true = shutil.which("true")
    assert true, "no `true` executable"
    return true


def _verify(unit_dir: Path, name: str) -> tuple[int, list[str]]:
    analyze = shutil.which("systemd-analyze")
    assert analyze
    result = subprocess.run(
        [analyze, "verify", str(unit_dir / name)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=unit_dir,
        check=False,
    )
    return result.returncode, (result.stdout + result.stderr).splitlines()


@pytest.fixture
def unit_copies(tmp_path: Path) -> Path:
    """Both units with ExecStart= on an executable that exists on this machine."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the units are only parsed")
    stand_in = _runnable_stand_in()
    for unit in (DAEMON, BACKFILL):
        text = unit.read_text()
        assert INSTALLED_EDSYNC in text
        (tmp_path / unit.name).write_text(text.replace(INSTALLED_EDSYNC, stand_in))
    return tmp_path


def _ours(lines: list[str]) -> list[str]:
    return [line for line in lines if DAEMON.name in line or BACKFILL.name in line]


@pytest.mark.parametrize("name", [DAEMON.name, BACKFILL.name])
def test_systemd_analyze_verify(unit_copies: Path, name: str) -> None:
    code, lines = _verify(unit_copies, name)
    complaints = _ours(lines)
    if code != 0 and not complaints:
        pytest.skip(f"systemd-analyze cannot verify here: {' | '.join(lines[:3])}")
    assert not complaints, "\n".join(complaints)
    assert code == 0, "\n".join(lines)


def test_systemd_analyze_reports_a_bad_key(unit_copies: Path) -> None:
    """The check above is not vacuous: systemd-analyze does name a bad key in our unit."""
    unit = unit_copies / DAEMON.name
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSistem=strict"))
    code, lines = _verify(unit_copies, DAEMON.name)
    if code != 0 and not _ours(lines):
        pytest.skip(f"systemd-analyze cannot verify here: {' | '.join(lines[:3])}")
    assert any("ProtectSistem" in line for line in _ours(lines)), lines


# Grafana ---------------------------------------------------------------------

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_VARIABLES = re.compile(r"\$\{[^}]*\}|\$\w+")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels, keywords removed)."""
    text = _MATCHERS.sub(" ", _STRINGS.sub(" ", expr))
    text = _GROUPING.sub(" ", _RANGES.sub(" ", _VARIABLES.sub(" ", text)))
    return {
        name
        for name, call in _IDENTIFIER.findall(text)
        if not call and name.lower() not in _KEYWORDS
    }


def test_metric_names_extraction() -> None:
    expr = (
        'sum by (source, le) (rate(edsync_page_duration_seconds_bucket{source=~"$source",'
        'le!="x"}[$__rate_interval] offset 5m)) / on (source) group_left(kind) other_metric'
        " > bool 1e3 and time() - edsync_lag_events"
    )
    assert metric_names(expr) == {
        "edsync_page_duration_seconds_bucket",
        "other_metric",
        "edsync_lag_events",
    }


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    return [
        target["expr"]
        for panel in _panels(dashboard["panels"])
        for target in panel.get("targets", [])
    ]


def test_dashboard_is_a_dashboard(dashboard: dict[str, Any]) -> None:
    for key in ("panels", "title", "uid", "schemaVersion"):
        assert key in dashboard, key
    assert isinstance(dashboard["schemaVersion"], int)
    assert dashboard["panels"]
    ids = [panel["id"] for panel in _panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in _panels(dashboard["panels"]):
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        if panel["type"] != "row":
            assert panel.get("targets"), panel["title"]
            assert all(target.get("expr") for target in panel["targets"]), panel["title"]


def test_dashboard_uses_only_edsync_metrics(dashboard: dict[str, Any]) -> None:
    for expr in _exprs(dashboard):
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        assert names <= METRICS, f"unknown metric {names - METRICS} in {expr!r}"
        if names - METRICS_WITHOUT_SOURCE:
            assert 'source=~"$source"' in expr, f"not filtered by $source: {expr!r}"


def test_dashboard_panels_cover_the_metrics(dashboard: dict[str, Any]) -> None:
    exprs = "\n".join(_exprs(dashboard))
    for needle in (
        "sum by (source, status) (rate(edsync_events_applied_total",
        "edsync_lag_events",
        "edsync_checkpoint_position",
        "time() - edsync_last_success_timestamp_seconds",
        "sum by (source, kind) (rate(edsync_errors_total",
        "histogram_quantile(0.5, sum by (source, le) (rate(edsync_page_duration_seconds_bucket",
        "histogram_quantile(0.95, sum by (source, le) (rate(edsync_page_duration_seconds_bucket",
        "sum by (sink, status) (edsync_deliveries)",
        "edsync_source_healthy",
        "sum by (source, cause) (rate(edsync_http_retries_total",
    ):
        assert needle in exprs, needle


def test_dashboard_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    source = variables["source"]
    query = source["query"]
    query = query["query"] if isinstance(query, dict) else query
    assert query == "label_values(edsync_polls_total, source)"
    assert source["multi"]
    assert source["includeAll"]
    prometheus = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    assert source["datasource"] == prometheus
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            assert panel["datasource"] == prometheus, panel["title"]
            assert target["datasource"] == prometheus, panel["title"]


_REPO_PATH = re.compile(r"\b(?:README\.md|(?:docs|systemd|grafana|bench)/[\w./-]*\w)")


@pytest.mark.parametrize("path", [DAEMON, BACKFILL, ENV_EXAMPLE], ids=lambda p: p.name)
def test_files_the_units_point_to_exist(path: Path) -> None:
    """A unit's comments send the reader to the runbook: it must be there."""
    named = _REPO_PATH.findall(path.read_text())
    missing = [name for name in named if not (ROOT / name).exists()]
    assert not missing, f"{path.name} points to {missing}, which do not exist"
    if path == DAEMON:
        assert named, "the daemon unit no longer says where its runbook is"
        assert "## Run as a service" in RUNBOOK.read_text()
