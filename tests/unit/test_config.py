"""Bad configuration: one message naming the file and the key, exit 78, nothing touched."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from edsync.cli import main
from edsync.config import load_config, parse_duration
from edsync.errors import ConfigError
from edsync.settings import Secret

GOOD_SOURCE = """
[sources.da]
kind = "dreamapply"
base_url = "https://apply.example.edu"
api_key_env = "DA_KEY"
"""


def mirror(url: str) -> str:
    return f'[mirror]\nurl = "{url}"\n'


def untouched(url: str) -> bool:
    """No mirror file (SQLite), or a database without a table (PostgreSQL)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return not Path(str(parsed.database)).exists()
    engine = create_engine(url)
    try:
        return inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


BAD_CONFIGS = [
    # (id, file body after [mirror] or None for a missing file, key named, words in message)
    ("missing-file", None, "", "not found"),
    ("bad-toml", "[sources.da\nkind = ", "", "invalid TOML"),
    ("unknown-top-key", "[mirrors]\nurl = 1\n", "mirrors", "unknown key"),
    ("unknown-key", GOOD_SOURCE + "page_sise = 10\n", "sources.da.page_sise", "did you mean"),
    ("wrong-type", GOOD_SOURCE + 'page_size = "big"\n', "sources.da.page_size", "integer"),
    ("bool-not-int", GOOD_SOURCE + "page_size = true\n", "sources.da.page_size", "integer"),
    ("out-of-range", GOOD_SOURCE + "page_size = 5000\n", "sources.da.page_size", "1024"),
    ("bad-resync", GOOD_SOURCE + 'resync = "sometimes"\n', "sources.da.resync", "manual"),
    (
        "unknown-event-name",
        GOOD_SOURCE + 'events = ["Applicant registered", "Aplicant was deleted"]\n',
        "sources.da.events",
        "not a DreamApply journal event name",
    ),
    (
        "new-event-name-empty",
        GOOD_SOURCE + 'new_events = [""]\n',
        "sources.da.new_events",
        "not an event name",
    ),
    (
        "missing-secret",
        GOOD_SOURCE.replace("DA_KEY", "EDSYNC_TEST_UNSET"),
        "sources.da.api_key_env",
        "EDSYNC_TEST_UNSET is not set",
    ),
    (
        "bad-url",
        GOOD_SOURCE.replace("https://apply.example.edu", "ftp://apply.example.edu"),
        "sources.da.base_url",
        "not an http(s) URL",
    ),
    (
        "plain-http",
        GOOD_SOURCE.replace("https://", "http://"),
        "sources.da.base_url",
        "plain http",
    ),
    ("bad-duration", GOOD_SOURCE + 'interval = "5 parsecs"\n', "sources.da.interval", "duration"),
    ("bad-choice", GOOD_SOURCE + 'on_invalid = "ignore"\n', "sources.da.on_invalid", "quarantine"),
    ("unknown-kind", '[sources.x]\nkind = "moodle"\n', "sources.x.kind", "unknown kind"),
    ("missing-kind", "[sources.x]\nbase_url = 'https://a.b'\n", "sources.x.kind", "required"),
    (
        "missing-required",
        '[sources.da]\nkind = "dreamapply"\napi_key_env = "DA_KEY"\n',
        "sources.da.base_url",
        "required",
    ),
    ("list-type", GOOD_SOURCE + 'expand = "offer"\n', "sources.da.expand", "array"),
    (
        "rule-unknown-source",
        GOOD_SOURCE + '[[rules]]\nname = "r"\nsource = "nope"\nevent = "x"\n',
        "rules[0].source",
        "no source named 'nope'",
    ),
    ("bad-mirror-url", '[log]\nlevel = "loud"\n', "log.level", "one of"),
]


@pytest.mark.parametrize(
    ("body", "key", "words"),
    [pytest.param(b, k, w, id=i) for i, b, k, w in BAD_CONFIGS],
)
def test_bad_config_exits_78_naming_file_and_key(
    tmp_path: Path,
    mirror_url: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    body: str | None,
    key: str,
    words: str,
) -> None:
    monkeypatch.setenv("DA_KEY", "s3cret-value-never-printed")
    monkeypatch.delenv("EDSYNC_TEST_UNSET", raising=False)
    path = tmp_path / "edsync.toml"
    if body is not None:
        path.write_text(mirror(mirror_url("mirror.db")) + body)

    code = main(["backfill", "-c", str(path)])

    out, err = capsys.readouterr()
    assert code == 78
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(path) in lines[0]
    assert f"{key}:" in lines[0]
    assert words in lines[0]
    assert "s3cret-value-never-printed" not in out + err
    assert untouched(mirror_url("mirror.db"))


def test_bad_mirror_url_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "edsync.toml"
    path.write_text('[mirror]\nurl = "not a url"\n')
    assert main(["status", "-c", str(path)]) == 78
    assert "mirror.url" in capsys.readouterr().err


def test_config_path_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "elsewhere.toml"
    monkeypatch.setenv("EDSYNC_CONFIG", str(path))
    assert main(["status"]) == 78
    assert str(path) in capsys.readouterr().err


def test_default_config_path_is_edsync_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["status"]) == 78
    assert "edsync.toml" in capsys.readouterr().err


def test_good_config_parses_with_defaults_and_hides_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DA_KEY", "s3cret")
    path = tmp_path / "edsync.toml"
    path.write_text(
        mirror(f"sqlite:///{tmp_path / 'mirror.db'}")
        + GOOD_SOURCE
        + 'interval = "5m"\nretry_for = "1h"\n'
    )
    config = load_config(path)
    source = config.sources["da"]
    assert source.interval == 300.0
    assert source.retry_for == 3600.0
    assert source.page_size == 1024
    key = source.api_key  # type: ignore[attr-defined]
    assert isinstance(key, Secret)
    assert key.reveal() == "s3cret"
    assert "s3cret" not in repr(config)
    assert "s3cret" not in str(key)


def test_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DREAMAPPLY_API_KEY", "EDLINK_TOKEN", "LEARNINGHUB_API_KEY"):
        monkeypatch.setenv(var, "x")
    example = Path(__file__).parents[2] / "config.example.toml"
    config = load_config(example)
    assert "dreamapply" in config.sources


def test_the_loaded_config_carries_its_rules_compiled_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DA_KEY", "x")
    path = tmp_path / "edsync.toml"
    path.write_text(
        mirror(f"sqlite:///{tmp_path / 'mirror.db'}")
        + GOOD_SOURCE
        + '[[rules]]\nname = "enrolled"\nsource = "da"\nevent = "Offer was edited: ?"\n'
    )
    config = load_config(path)
    (rule,) = config.compiled_rules
    assert (rule.name, rule.source, rule.event_type) == ("enrolled", "da", "enrolled")
    assert rule.event is not None


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h", 3600), ("30d", 2592000), ("250ms", 0.25)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_status_needs_no_secrets(
    tmp_path: Path,
    mirror_url: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("DA_KEY", raising=False)
    path = tmp_path / "edsync.toml"
    path.write_text(mirror(mirror_url("mirror.db")) + GOOD_SOURCE)
    assert main(["db", "-c", str(path), "upgrade"]) == 0
    assert main(["status", "-c", str(path), "--json"]) == 0
    assert '"source": "da"' in capsys.readouterr().out
    assert main(["backfill", "-c", str(path)]) == 78


HOOK = """
[sinks.hook]
kind = "webhook"
base_url = "https://example.edu/hooks/edsync"
secret_env = "HOOK_SECRET"
"""
KEY_32 = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # base64 of 32 bytes


@pytest.mark.parametrize(
    ("secret", "words"),
    [
        ("not base64: a passphrase!", "is not a Standard Webhooks secret"),
        ("whsec_" + "c2hvcnQ=", "holds a 5-byte key"),
        ("whsec_", "holds a 0-byte key"),
    ],
    ids=["not-base64", "too-short", "empty-key"],
)
def test_an_invalid_webhook_secret_exits_78_naming_the_key(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    secret: str,
    words: str,
) -> None:
    monkeypatch.setenv("DA_KEY", "x")
    monkeypatch.setenv("HOOK_SECRET", secret)
    path = tmp_path / "edsync.toml"
    path.write_text(mirror(f"sqlite:///{tmp_path / 'mirror.db'}") + GOOD_SOURCE + HOOK)

    assert main(["check", "-c", str(path)]) == 78

    err = capsys.readouterr().err
    assert f"{path}: sinks.hook.secret_env:" in err
    assert "HOOK_SECRET" in err
    assert words in err
    key_text = secret.removeprefix("whsec_")
    assert not key_text or key_text not in err  # the secret is never printed


@pytest.mark.parametrize("secret", ["whsec_" + KEY_32, KEY_32, "whsec_" + KEY_32.rstrip("=")])
def test_webhook_secrets_as_the_libraries_take_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    """``whsec_`` + base64 (the specification's form), or the bare base64, padded or not."""
    monkeypatch.setenv("DA_KEY", "x")
    monkeypatch.setenv("HOOK_SECRET", secret)
    path = tmp_path / "edsync.toml"
    path.write_text(mirror(f"sqlite:///{tmp_path / 'mirror.db'}") + GOOD_SOURCE + HOOK)
    config = load_config(path)
    assert config.sinks["hook"].retry_for == 86400.0  # a delivery's budget: a day


def test_a_sink_retry_for_is_validated_like_other_durations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DA_KEY", "x")
    monkeypatch.setenv("HOOK_SECRET", KEY_32)
    path = tmp_path / "edsync.toml"
    body = GOOD_SOURCE + HOOK + 'retry_for = "a while"\n'
    path.write_text(mirror(f"sqlite:///{tmp_path / 'mirror.db'}") + body)
    assert main(["check", "-c", str(path)]) == 78
    assert "sinks.hook.retry_for:" in capsys.readouterr().err
    path.write_text(path.read_text().replace("a while", "36h"))
    assert load_config(path).sinks["hook"].retry_for == 36 * 3600.0


def test_a_new_journal_name_is_accepted_when_listed_deliberately(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DA_KEY", "k")
    path = tmp_path / "edsync.toml"
    names = 'events = ["Applicant registered", "Ticket was raised"]\n'
    path.write_text(mirror("sqlite:///x.db") + GOOD_SOURCE + names)
    with pytest.raises(ConfigError, match="Ticket was raised"):
        load_config(path)
    path.write_text(
        mirror("sqlite:///x.db") + GOOD_SOURCE + names + 'new_events = ["Ticket was raised"]\n'
    )
    settings = load_config(path).sources["da"]
    assert settings.events == ["Applicant registered", "Ticket was raised"]  # type: ignore[attr-defined]


def test_loading_a_config_imports_only_the_kinds_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "edsync.toml"
    path.write_text(
        mirror(f"sqlite:///{tmp_path / 'mirror.db'}")
        + '[sources.ed]\nkind = "edlink"\nbase_url = "https://ed.example.com"\n'
        + 'token_env = "ED_TOKEN"\n'
    )
    probe = (
        "import sys; from pathlib import Path; from edsync.config import load_config; "
        f"load_config(Path({str(path)!r})); "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith(('edsync.sources.', "
        "'edsync.sinks.')))))"
    )
    monkeypatch.setenv("ED_TOKEN", "x")
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    # The kind's package alone: its types come from edsync.model, not sources.base.
    assert out.split() == [
        "edsync.sources.edlink",
        "edsync.sources.edlink.fields",
        "edsync.sources.edlink.graph",
        "edsync.sources.edlink.refusals",
        "edsync.sources.edlink.snapshot",
        "edsync.sources.edlink.stream",
    ]
