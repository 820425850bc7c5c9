"""Many sources, little config: ``sources.d/`` fragments and secrets read from files."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edsync.cli import main
from edsync.config import load_config
from edsync.errors import ConfigError
from edsync.settings import Secret
from tests.conftest import DREAMAPPLY_KEY, EDLINK_TOKEN

SECRET = "s3cret-value-never-printed"
ROOT = Path(__file__).resolve().parents[2]


def mirror(path: Path) -> str:
    return f'[mirror]\nurl = "sqlite:///{path / "mirror.db"}"\n'


def dreamapply(name: str, secret: str = 'api_key_env = "DA_KEY"', url: str = "") -> str:
    return (
        f'[sources.{name}]\nkind = "dreamapply"\n'
        f'base_url = "{url or "https://apply.example.edu"}"\n{secret}\n'
    )


def edlink(name: str, secret: str = 'token_env = "ED_TOKEN"', url: str = "") -> str:
    return f'[sources.{name}]\nkind = "edlink"\nbase_url = "{url or "https://ed.link"}"\n{secret}\n'


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory for edsync.toml and its sources.d/, with the test's variables set."""
    monkeypatch.setenv("DA_KEY", SECRET)
    monkeypatch.setenv("ED_TOKEN", SECRET)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    directory = tmp_path / "etc"
    (directory / "sources.d").mkdir(parents=True)
    return directory


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def config_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    return raised.value


# -- sources.d ---------------------------------------------------------------------------


def test_fragments_in_sources_d_are_merged_by_name_and_other_files_ignored(
    config_dir: Path, tmp_path: Path
) -> None:
    rule = '[[rules]]\nname = "r"\nsource = "district-2"\nmatch = { entity = "person" }\n'
    path = write(config_dir, "edsync.toml", mirror(tmp_path) + dreamapply("main") + rule)
    write(config_dir, "sources.d/b.toml", edlink("district-2") + 'interval = "10m"\n')
    write(config_dir, "sources.d/a.toml", edlink("district-1") + dreamapply("institution-1"))
    # Editor leftovers, hidden files and other files are not fragments.
    write(config_dir, "sources.d/b.toml~", "not = [toml")
    write(config_dir, "sources.d/.#b.toml", "not = [toml")
    write(config_dir, "sources.d/.hidden.toml", "not = [toml")
    write(config_dir, "sources.d/README", "not = [toml")
    (config_dir / "sources.d" / "old.toml").mkdir()

    config = load_config(path)

    assert list(config.sources) == ["main", "district-1", "institution-1", "district-2"]
    assert config.sources["district-2"].kind == "edlink"
    assert config.sources["district-2"].interval == 600.0
    assert config.sources["institution-1"].kind == "dreamapply"
    # A rule in the main file may name a source of a fragment.
    (compiled,) = config.compiled_rules
    assert compiled.source == "district-2"


@pytest.mark.parametrize("present", [False, True], ids=["missing", "empty"])
def test_a_missing_or_empty_sources_d_is_fine(
    config_dir: Path, tmp_path: Path, present: bool
) -> None:
    if not present:
        (config_dir / "sources.d").rmdir()
    path = write(config_dir, "edsync.toml", mirror(tmp_path) + dreamapply("main"))
    assert list(load_config(path).sources) == ["main"]


@pytest.mark.parametrize("first", ["edsync.toml", "sources.d/a.toml"])
def test_a_source_defined_twice_names_both_files(
    config_dir: Path, tmp_path: Path, first: str
) -> None:
    path = write(config_dir, "edsync.toml", mirror(tmp_path))
    original = write(
        config_dir, first, (path.read_text() if first == path.name else "") + edlink("x")
    )
    again = write(config_dir, "sources.d/b.toml", dreamapply("x"))

    error = config_error(path)

    assert (error.file, error.key) == (str(again), "sources.x")
    assert str(original) in error.message
    assert "already defined" in error.message


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('[mirror]\nurl = "sqlite:///other.db"\n', "mirror"),
        ('[[rules]]\nname = "r"\nsource = "x"\nevent = "e"\n', "rules"),
        ('[sinks.hook]\nkind = "webhook"\n', "sinks"),
        ('name = "x"\n', "name"),
    ],
    ids=["mirror", "rules", "sinks", "bare-key"],
)
def test_a_fragment_with_another_top_level_key_is_refused_naming_file_and_key(
    config_dir: Path, tmp_path: Path, body: str, key: str
) -> None:
    path = write(config_dir, "edsync.toml", mirror(tmp_path))
    fragment = write(config_dir, "sources.d/x.toml", body + edlink("x"))

    error = config_error(path)

    assert (error.file, error.key) == (str(fragment), key)
    assert "only [sources.NAME]" in error.message


FRAGMENT_ERRORS = [
    # (id, fragment body, key named, words in message)
    ("unknown-key", edlink("x") + "page_sise = 10\n", "sources.x.page_sise", "did you mean"),
    ("bad-duration", edlink("x") + 'interval = "5 parsecs"\n', "sources.x.interval", "duration"),
    ("missing-required", '[sources.x]\nkind = "dreamapply"\n', "sources.x.base_url", "required"),
    ("missing-kind", "[sources.x]\nbase_url = 'https://a.b'\n", "sources.x.kind", "required"),
    (
        "missing-env",
        edlink("x", 'token_env = "EDSYNC_TEST_UNSET"'),
        "sources.x.token_env",
        "EDSYNC_TEST_UNSET is not set",
    ),
    ("not-a-table", "sources = 3\n", "sources", "table"),
    ("bad-toml", "[sources.x\nkind = ", "", "invalid TOML"),
]


@pytest.mark.parametrize(
    ("body", "key", "words"), [pytest.param(b, k, w, id=i) for i, b, k, w in FRAGMENT_ERRORS]
)
def test_an_error_in_a_fragment_exits_78_naming_the_fragment_and_the_key(
    config_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    body: str,
    key: str,
    words: str,
) -> None:
    monkeypatch.delenv("EDSYNC_TEST_UNSET", raising=False)
    path = write(config_dir, "edsync.toml", mirror(tmp_path) + dreamapply("main"))
    write(config_dir, "sources.d/a-good.toml", edlink("good"))
    fragment = write(config_dir, "sources.d/b-bad.toml", body)

    assert main(["check", "-c", str(path)]) == 78

    out, err = capsys.readouterr()
    (line,) = err.strip().splitlines()
    assert line.startswith(
        f"edsync: error: {fragment}: {key}: " if key else f"edsync: error: {fragment}: "
    )
    assert words in line
    assert SECRET not in out + err
    assert not (tmp_path / "mirror.db").exists()


# -- secrets from files ------------------------------------------------------------------


def test_a_secret_file_is_read_stripped_and_relative_to_the_file_naming_it(
    config_dir: Path, tmp_path: Path
) -> None:
    write(config_dir, "keys/main.key", "  main-key\n")
    write(config_dir, "sources.d/keys/district.token", "district-token\r\n")
    absolute = write(tmp_path, "elsewhere/absolute.key", "absolute-key")
    path = write(
        config_dir,
        "edsync.toml",
        mirror(tmp_path)
        + dreamapply("main", 'api_key_file = "keys/main.key"')
        + dreamapply("absolute", f'api_key_file = "{absolute}"'),
    )
    write(
        config_dir,
        "sources.d/district.toml",
        edlink("district", 'token_file = "keys/district.token"'),
    )

    config = load_config(path)

    main_key = config.sources["main"].api_key  # type: ignore[attr-defined]
    assert isinstance(main_key, Secret)
    assert main_key.reveal() == "main-key"
    assert main_key.file == str(config_dir / "keys" / "main.key")
    assert main_key.origin == f"file {config_dir / 'keys' / 'main.key'}"
    token = config.sources["district"].token  # type: ignore[attr-defined]
    assert token.reveal() == "district-token"
    assert token.file == str(config_dir / "sources.d" / "keys" / "district.token")
    assert config.sources["absolute"].api_key.reveal() == "absolute-key"  # type: ignore[attr-defined]
    for secret in ("main-key", "district-token", "absolute-key"):
        assert secret not in repr(config)
        assert secret not in str(config)


def test_a_secret_file_path_may_name_credentials_directory(
    config_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """systemd's LoadCredential= puts each credential in $CREDENTIALS_DIRECTORY."""
    credentials = tmp_path / "run" / "credentials"
    write(credentials, "district-1", "from-systemd\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    path = write(config_dir, "edsync.toml", mirror(tmp_path))
    write(
        config_dir,
        "sources.d/d1.toml",
        edlink("d1", 'token_file = "${CREDENTIALS_DIRECTORY}/district-1"'),
    )
    write(
        config_dir,
        "sources.d/d2.toml",
        edlink("d2", 'token_file = "$CREDENTIALS_DIRECTORY/district-1"'),
    )

    config = load_config(path)

    for name in ("d1", "d2"):
        token = config.sources[name].token  # type: ignore[attr-defined]
        assert token.reveal() == "from-systemd"
        assert token.file == str(credentials / "district-1")

    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    error = config_error(path)
    assert (error.file, error.key) == (
        str(config_dir / "sources.d" / "d1.toml"),
        "sources.d1.token_file",
    )
    assert "CREDENTIALS_DIRECTORY" in error.message
    assert "not set" in error.message


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (dreamapply("x", 'api_key_env = "DA_KEY"\napi_key_file = "key"'), "api_key"),
        (edlink("x", 'token_env = "ED_TOKEN"\ntoken_file = "key"'), "token"),
        (
            '[sinks.x]\nkind = "webhook"\nbase_url = "https://example.edu/hook"\n'
            'secret_env = "DA_KEY"\nsecret_file = "key"\n',
            "secret",
        ),
        (
            '[sinks.x]\nkind = "learninghub"\nbase_url = "https://hub.example.org"\n'
            'program_id = "P"\nuser_id = "u"\napi_key_env = "DA_KEY"\napi_key_file = "key"\n',
            "api_key",
        ),
    ],
    ids=["dreamapply", "edlink", "webhook", "learninghub"],
)
def test_a_secret_from_both_a_variable_and_a_file_is_refused_naming_both_keys(
    config_dir: Path, tmp_path: Path, text: str, kind: str
) -> None:
    write(config_dir, "key", "whatever")
    path = write(config_dir, "edsync.toml", mirror(tmp_path) + text)

    error = config_error(path)

    assert error.file == str(path)
    assert error.key.endswith(f".x.{kind}_file")
    assert f"{kind}_env" in error.message
    assert f"{kind}_file" in error.message
    assert "not both" in error.message


def test_a_secret_from_neither_is_required_as_before(config_dir: Path, tmp_path: Path) -> None:
    path = write(config_dir, "edsync.toml", mirror(tmp_path) + dreamapply("x", ""))
    error = config_error(path)
    assert (error.file, error.key, error.message) == (
        str(path),
        "sources.x.api_key_env",
        "required",
    )


def _unreadable(path: Path) -> None:
    path.write_text(SECRET)
    path.chmod(0)


SECRET_FILE_PROBLEMS: list[tuple[str, Callable[[Path], Any], str]] = [
    ("missing", lambda path: None, "not found"),
    ("empty", lambda path: path.write_text(" \n"), "is empty"),
    ("directory", lambda path: path.mkdir(), "is a directory"),
    ("two-lines", lambda path: path.write_text(f"{SECRET}\n{SECRET}\n"), "more than one line"),
    ("not-utf8", lambda path: path.write_bytes(SECRET.encode() + b"\xff"), "not UTF-8"),
    ("too-large", lambda path: path.write_text(SECRET * 5000), "over 64 KiB"),
    ("unreadable", _unreadable, "Permission denied"),
    ("symlink-loop", lambda path: path.symlink_to(path), "cannot read"),
]


@pytest.mark.parametrize(
    ("make", "words"), [pytest.param(m, w, id=i) for i, m, w in SECRET_FILE_PROBLEMS]
)
def test_an_unusable_secret_file_exits_78_naming_key_and_path_never_the_content(
    config_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
    make: Callable[[Path], Any],
    words: str,
) -> None:
    if request.node.callspec.id == "unreadable" and os.geteuid() == 0:
        pytest.skip("root reads a file whatever its mode")
    secret_file = config_dir / "sources.d" / "da.key"
    make(secret_file)
    path = write(config_dir, "edsync.toml", mirror(tmp_path))
    fragment = write(config_dir, "sources.d/da.toml", dreamapply("da", 'api_key_file = "da.key"'))

    assert main(["check", "-c", str(path)]) == 78

    out, err = capsys.readouterr()
    (line,) = err.strip().splitlines()
    assert line.startswith(f"edsync: error: {fragment}: sources.da.api_key_file: ")
    assert str(secret_file) in line
    assert words in line
    assert SECRET not in out + err


def test_a_webhook_secret_file_is_checked_like_the_variable_naming_the_file(
    config_dir: Path, tmp_path: Path
) -> None:
    key_file = write(config_dir, "hook.secret", SECRET + "\n")
    hook = (
        '[sinks.hook]\nkind = "webhook"\nbase_url = "https://example.edu/hook"\n'
        'secret_file = "hook.secret"\n'
    )
    path = write(config_dir, "edsync.toml", mirror(tmp_path) + dreamapply("da") + hook)

    error = config_error(path)

    assert error.key == "sinks.hook.secret_file"
    assert error.message.startswith(f"file {key_file} is not a Standard Webhooks secret")
    assert SECRET not in str(error)
    key_file.write_text("whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n")
    assert load_config(path).sinks["hook"].secret.file == str(key_file)  # type: ignore[attr-defined]


def test_status_and_db_need_no_secret_file(
    config_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        config_dir,
        "edsync.toml",
        mirror(tmp_path) + dreamapply("da", 'api_key_file = "$CREDENTIALS_DIRECTORY/absent"'),
    )
    write(config_dir, "sources.d/ed.toml", edlink("ed", 'token_file = "absent.token"'))

    assert main(["db", "-c", str(path), "upgrade"]) == 0
    assert main(["status", "-c", str(path), "--json"]) == 0
    assert '"source": "ed"' in capsys.readouterr().out
    assert main(["backfill", "-c", str(path)]) == 78
    assert "sources.da.api_key_file" in capsys.readouterr().err


# -- a credential from a file, refused ---------------------------------------------------


@pytest.mark.sqlite_only
@pytest.mark.parametrize("kind", ["dreamapply", "edlink"])
def test_a_refused_credential_from_a_file_names_the_file_not_a_variable(
    backend: str,
    config_dir: Path,
    tmp_path: Path,
    make_simulator: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
    kind: str,
) -> None:
    sim = make_simulator(events=5)
    wrong = "not-the-key"
    assert wrong not in (DREAMAPPLY_KEY, EDLINK_TOKEN)
    key_file = write(config_dir, "credentials/refused", wrong + "\n")
    source = dreamapply if kind == "dreamapply" else edlink
    secret = "api_key_file" if kind == "dreamapply" else "token_file"
    path = write(config_dir, "edsync.toml", mirror(tmp_path))
    write(
        config_dir,
        "sources.d/refused.toml",
        source("refused", f'{secret} = "../credentials/refused"', sim.url),
    )

    assert main(["check", "-c", str(path)]) == 1

    out, err = capsys.readouterr()
    (failure,) = [line for line in out.splitlines() if line.startswith("source refused:")]
    assert "FAILED" in failure
    assert f"file {config_dir / 'sources.d' / '../credentials/refused'}" in failure
    assert key_file.read_text().strip() == wrong
    assert "environment variable" not in failure
    assert wrong not in out + err


# -- the documentation's examples, as written --------------------------------------------


def test_the_readme_fragment_loads_from_sources_d(
    config_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```toml\n# /etc/edsync/sources\.d/([\w.-]+)\n(.*?)```", readme, re.S)
    assert block, "README no longer shows a sources.d fragment"
    credentials = tmp_path / "credentials"
    write(credentials, "district-12", "district-token\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    path = write(config_dir, "edsync.toml", mirror(tmp_path))
    write(config_dir, f"sources.d/{block[1]}", block[2])

    (source,) = load_config(path).sources.values()

    assert source.token.reveal() == "district-token"  # type: ignore[attr-defined]


def test_the_example_config_s_file_keys_load_in_place_of_the_variables(tmp_path: Path) -> None:
    example = (ROOT / "config.example.toml").read_text()
    # Each `X_env = "..."` line followed by a commented `# X_file = "..."`: swap them.
    swapped, count = re.subn(
        r'^(\w+)_env( *)= "\w+"[^\n]*\n# (\1_file = "[^"]+")', r"\3", example, flags=re.M
    )
    assert count == 3  # dreamapply, edlink, learninghub (the webhook sink is commented out)
    credentials = tmp_path / "credentials"
    for name in ("dreamapply", "learninghub", "edlink"):
        write(credentials, name, f"{name}-secret\n")
    path = write(tmp_path, "edsync.toml", swapped)

    config = load_config(path, env={"CREDENTIALS_DIRECTORY": str(credentials)})

    assert config.sources["dreamapply"].api_key.reveal() == "dreamapply-secret"  # type: ignore[attr-defined]
    assert config.sources["edlink"].token.reveal() == "edlink-secret"  # type: ignore[attr-defined]
    assert config.sinks["learninghub"].api_key.reveal() == "learninghub-secret"  # type: ignore[attr-defined]
