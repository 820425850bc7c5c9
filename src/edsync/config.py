"""Configuration: TOML in, frozen typed settings out, or one ``ConfigError``.

Settings are plain dataclasses; the parser reads their field types, so a new
feed kind declares its keys once, as a dataclass in its own module. Nothing
here touches a database or the network.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
import ssl
import tomllib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

from edsync import sinks as sink_kinds
from edsync import sources as source_kinds
from edsync.errors import ConfigError
from edsync.rule_compiler import compile_rules
from edsync.settings import (
    Config,
    Duration,
    HttpUrl,
    LogSettings,
    MetricsSettings,
    MirrorSettings,
    RuleSettings,
    Secret,
    SinkSettings,
    SourceSettings,
)

SOURCES_DIR = "sources.d"
"""Beside the config file: one TOML file per source, merged into ``sources``."""
MAX_SECRET_FILE = 64 * 1024
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
DEFAULT_CONFIG = "edsync.toml"


def parse_duration(text: str) -> float:
    """``"90s"`` → 90.0; raises ValueError on anything else."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration (use e.g. '30s', '5m', '1h', '30d')")
    return float(match.group(1)) * _UNITS[match.group(2)]


def resolve_path(explicit: str | None, env: Mapping[str, str] | None = None) -> Path:
    """``-c`` first, then ``$EDSYNC_CONFIG``, then ``./edsync.toml``."""
    env = os.environ if env is None else env
    return Path(explicit or env.get("EDSYNC_CONFIG") or DEFAULT_CONFIG)


def load_config(
    path: Path, env: Mapping[str, str] | None = None, *, secrets: bool = True
) -> Config:
    """Parse and validate the file and the ``sources.d/`` beside it;
    ``secrets=False`` (status, db) leaves credentials unread."""
    env = os.environ if env is None else env
    doc = _read_toml(path, "configuration file not found")
    fragments = [(str(p), _read_toml(p, "file not found")) for p in source_fragments(path)]
    return parse_config(doc, str(path), env, secrets=secrets, fragments=fragments)


def source_fragments(path: Path) -> list[Path]:
    """The ``*.toml`` files of the ``sources.d/`` beside the config file ``path``,
    by name; hidden files (``.#x.toml``), backups (``x.toml~``) and directories
    are not read. No such directory: none."""
    directory = path.parent / SOURCES_DIR
    try:
        entries = sorted(directory.iterdir(), key=lambda entry: entry.name)
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        raise ConfigError(
            str(directory), "", "not a directory (one TOML file per source)"
        ) from None
    except OSError as exc:
        raise ConfigError(str(directory), "", f"cannot read: {exc.strerror}") from None
    return [
        entry
        for entry in entries
        if entry.suffix == ".toml" and not entry.name.startswith(".") and not entry.is_dir()
    ]


def _read_toml(path: Path, missing: str) -> dict[str, Any]:
    file = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(file, "", missing) from None
    except OSError as exc:
        raise ConfigError(file, "", f"cannot read: {exc.strerror}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(file, "", f"invalid TOML: {exc}") from None


def parse_config(
    doc: Mapping[str, Any],
    file: str,
    env: Mapping[str, str],
    *,
    secrets: bool = True,
    fragments: Sequence[tuple[str, Mapping[str, Any]]] = (),
) -> Config:
    """``fragments``: (file, document) of each ``sources.d`` file, in order; their
    sources join the main file's, and every error names the file it is in."""
    reader = _Reader(file, env, secrets=secrets)
    known = {"mirror", "log", "metrics", "sources", "sinks", "rules"}
    reader.reject_unknown(doc, known, "")
    defined = {
        name: (reader, table)
        for name, table in reader.tables(doc.get("sources", {}), "sources").items()
    }
    for fragment, fragment_doc in fragments:
        part = _Reader(fragment, env, secrets=secrets)
        for key in fragment_doc:
            if key != "sources":
                raise part.fail(key, f"a file in {SOURCES_DIR} holds only [sources.NAME] tables")
        for name, table in part.tables(fragment_doc.get("sources", {}), "sources").items():
            if name in defined:
                raise part.fail(
                    f"sources.{name}",
                    f"source {name!r} is already defined in {defined[name][0].file}",
                )
            defined[name] = (part, table)
    sources = {
        name: part.plugin(
            table, f"sources.{name}", name, source_kinds.KINDS, source_kinds.settings_class
        )
        for name, (part, table) in defined.items()
    }
    sinks = {
        name: reader.plugin(
            table, f"sinks.{name}", name, sink_kinds.KINDS, sink_kinds.settings_class
        )
        for name, table in reader.tables(doc.get("sinks", {}), "sinks").items()
    }
    rules = [
        reader.settings(RuleSettings, table, f"rules[{i}]", {})
        for i, table in enumerate(reader.array_of_tables(doc.get("rules", []), "rules"))
    ]
    config = Config(
        path=file,
        mirror=reader.settings(MirrorSettings, doc.get("mirror", {}), "mirror", {}),
        log=reader.settings(LogSettings, doc.get("log", {}), "log", {}),
        metrics=(
            reader.settings(MetricsSettings, doc["metrics"], "metrics", {})
            if "metrics" in doc
            else None
        ),
        sources=typing.cast("dict[str, SourceSettings]", sources),
        sinks=typing.cast("dict[str, SinkSettings]", sinks),
        rules=rules,
    )
    _check_references(config, defined)
    return with_compiled_rules(config)


def with_compiled_rules(config: Config) -> Config:
    """``config`` with ``compiled_rules`` set: the one place rules are compiled
    (an invalid rule is a configuration error, named)."""
    return dataclasses.replace(
        config, compiled_rules=tuple(compile_rules(config, source_kinds.pattern_problem))
    )


def _check_hooks(config: Config, files: Mapping[str, str]) -> None:
    """Webhook listeners may share an address, never an address and a path;
    nor the address ``/metrics`` is served on. Errors name the later source's
    file (``files``: each source's) and key."""
    metrics = config.metrics.listen if config.metrics is not None else None
    taken: dict[tuple[str, int, str], str] = {}
    for name, settings in config.sources.items():
        hook = settings.hook()
        address = hook.address() if hook is not None else None
        if hook is None or address is None:
            continue
        key = f"sources.{name}.webhook"  # the table every kind with webhooks names so
        if metrics == hook.listen:
            raise ConfigError(files[name], f"{key}.listen", "is [metrics].listen too: pick another")
        other = taken.setdefault((address[0].lower(), address[1], hook.path), name)
        if other != name:
            raise ConfigError(
                files[name],
                f"{key}.path",
                f"{hook.listen}{hook.path} is already source {other!r}'s webhook",
            )


def _check_references(
    config: Config, defined: Mapping[str, tuple[_Reader, Mapping[str, Any]]]
) -> None:
    """Rules name sources and sinks that exist; webhooks do not collide
    (``defined``: each source's reader, which knows its file)."""
    _check_hooks(config, {name: part.file for name, (part, _) in defined.items()})
    for i, rule in enumerate(config.rules):
        if rule.source not in config.sources:
            raise ConfigError(config.path, f"rules[{i}].source", f"no source named {rule.source!r}")
        for sink in rule.publish:
            if sink not in config.sinks:
                raise ConfigError(config.path, f"rules[{i}].publish", f"no sink named {sink!r}")


class _Reader:
    """Walks the TOML document, turning every problem into one ConfigError."""

    def __init__(self, file: str, env: Mapping[str, str], *, secrets: bool = True) -> None:
        self.file = file
        self.env = env
        self.secrets = secrets
        self.directory = Path(file).parent  # a relative *_file is relative to it

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.file, key, message)

    def tables(self, value: object, key: str) -> dict[str, Mapping[str, Any]]:
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table of named tables")
        for name, table in value.items():
            if not isinstance(table, dict):
                raise self.fail(f"{key}.{name}", "must be a table")
        return value

    def array_of_tables(self, value: object, key: str) -> list[Mapping[str, Any]]:
        if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
            raise self.fail(key, "must be an array of tables ([[rules]])")
        return value

    def reject_unknown(self, table: Mapping[str, Any], known: set[str], prefix: str) -> None:
        for key in table:
            if key not in known:
                hint = difflib.get_close_matches(key, sorted(known), n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise self.fail(f"{prefix}{key}", f"unknown key{extra}")

    def plugin(
        self,
        table: Mapping[str, Any],
        key: str,
        name: str,
        kinds: Sequence[str],
        settings_class: Callable[[str], type[Any]],
    ) -> Any:
        """A source or sink table; only the module of the kind it names is imported."""
        kind = table.get("kind")
        if not isinstance(kind, str):
            raise self.fail(f"{key}.kind", f"required; one of {', '.join(sorted(kinds))}")
        if kind not in kinds:
            raise self.fail(f"{key}.kind", f"unknown kind {kind!r}; one of {', '.join(kinds)}")
        return self.settings(settings_class(kind), table, key, {"name": name, "kind": kind})

    def settings(self, cls: type[Any], table: object, key: str, implicit: Mapping[str, Any]) -> Any:
        if not isinstance(table, dict):
            raise self.fail(key, "must be a table")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in implicit}
        file_keys = {
            file_key: name for name in fields for file_key in self._file_keys(name, hints[name])
        }
        # `kind` is written in the file and checked before we get here.
        self.reject_unknown(table, set(file_keys) | ({"kind"} & set(implicit)), f"{key}.")
        values: dict[str, Any] = dict(implicit)
        for name, f in fields.items():
            written = self._file_keys(name, hints[name])
            given = [k for k in written if k in table]
            if len(given) > 1:  # a secret from a variable and from a file
                raise self.fail(f"{key}.{given[1]}", f"give {given[0]} or {given[1]}, not both")
            if not given:
                if _is_required(f):
                    raise self.fail(f"{key}.{written[0]}", "required")
            elif given[0] == f"{name}_file" and len(written) == 2:
                values[name] = self.secret_file(table[given[0]], f"{key}.{given[0]}")
            else:
                values[name] = self.convert(table[given[0]], hints[name], f"{key}.{given[0]}")
        values = self._check_urls(values, hints, key)
        if values.get("ca_bundle"):
            problem = ca_bundle_problem(values["ca_bundle"])
            if problem:
                raise self.fail(f"{key}.ca_bundle", problem)
        result = cls(**values)
        problem = result.check() if hasattr(result, "check") else None
        if problem:
            raise self.fail(f"{key}.{problem[0]}", problem[1])
        return result

    @staticmethod
    def _file_keys(name: str, hint: Any) -> tuple[str, ...]:
        """The keys a field is written as: a secret's variable or file, else its name."""
        return (f"{name}_env", f"{name}_file") if _unwrap_optional(hint) is Secret else (name,)

    def _check_urls(
        self, values: dict[str, Any], hints: Mapping[str, Any], key: str
    ) -> dict[str, Any]:
        insecure_ok = bool(values.get("allow_insecure_http", False))
        for name, hint in hints.items():
            if hint is HttpUrl and name in values:
                problem = url_problem(values[name], allow_insecure_http=insecure_ok)
                if problem:
                    raise self.fail(f"{key}.{name}", problem)
                values[name] = values[name].rstrip("/")
        return values

    def convert(self, value: Any, hint: Any, key: str) -> Any:
        base = _unwrap_optional(hint)
        if base is not hint and value is None:
            return None
        if base is Secret:
            return self.secret(value, key)
        if base is Duration:
            return self.duration(value, key)
        if base is HttpUrl or base is str:
            return self.expect(value, str, key, "a string")
        if base is bool:
            return self.expect(value, bool, key, "true or false")
        if base is int:
            if isinstance(value, bool):
                raise self.fail(key, f"must be an integer, not {value!r}")
            return self.expect(value, int, key, "an integer")
        if base is float:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            raise self.fail(key, f"must be a number, not {value!r}")
        origin = get_origin(base)
        if origin is Literal:
            choices = get_args(base)
            if value not in choices:
                raise self.fail(key, f"must be one of {', '.join(map(repr, choices))}")
            return value
        if origin is list:
            self.expect(value, list, key, "an array")
            (item,) = get_args(base)
            return [self.convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        if origin is dict:
            return dict(self.expect(value, dict, key, "a table"))
        if base is Any:
            return value
        if dataclasses.is_dataclass(base) and isinstance(base, type):
            return self.settings(base, value, key, {})  # a table of its own
        raise TypeError(f"unsupported settings type {hint!r} for {key}")  # programming error

    def expect(self, value: Any, kind: type[Any], key: str, what: str) -> Any:
        if not isinstance(value, kind):
            raise self.fail(key, f"must be {what}, not {type(value).__name__} {value!r}")
        return value

    def duration(self, value: Any, key: str) -> Duration:
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return Duration(float(value))
        if isinstance(value, str):
            try:
                return Duration(parse_duration(value))
            except ValueError as exc:
                raise self.fail(key, str(exc)) from None
        raise self.fail(key, f"must be a duration like '30s', not {value!r}")

    def secret(self, value: Any, key: str) -> Secret:
        var = self.expect(value, str, key, "the name of an environment variable")
        if not self.secrets:
            return Secret(env=var, value="")
        secret = self.env.get(var)
        if not secret:
            raise self.fail(key, f"environment variable {var} is not set")
        if not (secret.isascii() and secret.isprintable()):
            # It goes into an HTTP header; say so now rather than crash later.
            raise self.fail(
                key,
                f"environment variable {var} holds characters an HTTP header cannot carry "
                "(non-ASCII, a line break or another control character)",
            )
        return Secret(env=var, value=secret)

    def secret_file(self, value: Any, key: str) -> Secret:
        """A secret read from a file: its content, surrounding whitespace (a
        trailing newline) stripped. A relative path is relative to the
        directory of the file that names it; ``$NAME`` / ``${NAME}`` is that
        environment variable (``$CREDENTIALS_DIRECTORY``). Messages name the
        key and the path, never the content."""
        text = self.expect(value, str, key, "the path of a file")
        if not text.strip():
            raise self.fail(key, "must be the path of a file, not empty")
        path = self.directory / self._expand(text, key)
        if not self.secrets:
            return Secret(env="", value="", file=str(path))
        try:
            with path.open("rb") as stream:
                raw = stream.read(MAX_SECRET_FILE + 1)
        except FileNotFoundError:
            raise self.fail(key, f"file {str(path)!r} not found") from None
        except IsADirectoryError:
            raise self.fail(key, f"{str(path)!r} is a directory, not a file") from None
        except OSError as exc:
            raise self.fail(key, f"cannot read {str(path)!r}: {exc.strerror or 'error'}") from None
        if len(raw) > MAX_SECRET_FILE:
            raise self.fail(
                key, f"file {str(path)!r} is over 64 KiB: it must hold the secret alone"
            )
        try:
            secret = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise self.fail(key, f"file {str(path)!r} is not UTF-8 text") from None
        if not secret:
            raise self.fail(key, f"file {str(path)!r} is empty")
        if not (secret.isascii() and secret.isprintable()):
            raise self.fail(
                key,
                f"file {str(path)!r} holds characters an HTTP header cannot carry "
                "(non-ASCII, more than one line or another control character)",
            )
        return Secret(env="", value=secret, file=str(path))

    def _expand(self, text: str, key: str) -> str:
        """``text`` with each ``$NAME`` / ``${NAME}`` replaced by that variable;
        one unset is an error (left as written when secrets are not read)."""

        def value(match: re.Match[str]) -> str:
            name = match[1] or match[2]
            found = self.env.get(name)
            if found:
                return found
            if not self.secrets:
                return match[0]
            raise self.fail(key, f"environment variable {name} (in the path) is not set")

        return _VARIABLE.sub(value, text)


def _unwrap_optional(hint: Any) -> Any:
    if get_origin(hint) in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _is_required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def url_problem(url: str, *, allow_insecure_http: bool) -> str | None:
    """Why a base URL is unacceptable, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL"
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return f"{url!r} has an invalid port"
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(parts.hostname):
        return "plain http:// is refused except to loopback; use https or allow_insecure_http"
    return None


def ca_bundle_problem(path: str) -> str | None:
    """Why a ``ca_bundle`` cannot be used to verify TLS, or None (reads the file only)."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except FileNotFoundError:
        return f"file {path!r} not found"
    except ssl.SSLError as exc:
        return f"{path!r} holds no usable PEM certificate ({exc.reason or exc})"
    except OSError as exc:
        return f"cannot read {path!r}: {exc.strerror or exc}"
    return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
