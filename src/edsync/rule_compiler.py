"""Rules compiled from their settings (SPEC 3), once, when the config loads:
every ``[[rules]]`` table checked and turned into a ``Rule``, or a
ConfigError naming the rule. Apart from ``rules`` so that the compiled rules
know nothing of the settings they came from."""

from __future__ import annotations

from collections.abc import Callable

from edsync.errors import ConfigError
from edsync.rules import MATCH_KEYS, OPS, EventPattern, Rule
from edsync.settings import Config, RuleSettings

PatternCheck = Callable[[str, str], "str | None"]
"""(kind, event pattern) → why no event of that kind can match it, or None."""


def _any_pattern(kind: str, pattern: str) -> str | None:
    return None


def compile_rules(config: Config, pattern_problem: PatternCheck = _any_pattern) -> list[Rule]:
    """Every ``[[rules]]`` table as a Rule, or a ConfigError naming the rule.
    ``pattern_problem`` is the source kinds' check of an ``event`` pattern,
    passed in by the config loader (rules know no source kind)."""
    rules: list[Rule] = []
    names: set[str] = set()
    for index, settings in enumerate(config.rules):
        key = f"rules[{index}] ({settings.name!r})"
        if settings.name in names:
            raise ConfigError(config.path, f"{key}.name", "another rule has this name")
        names.add(settings.name)
        kind = config.sources[settings.source].kind
        rules.append(_compile(settings, key, config.path, kind, pattern_problem))
        _check_member(config, settings, key)
    return rules


def _check_member(config: Config, settings: RuleSettings, key: str) -> None:
    """A rule publishing to a sink that needs a member (Learning Hub's
    ``ProgramMemberId``, SPEC 2.3) must say where its member comes from."""
    if settings.member:
        return
    for name in settings.publish:
        sink = config.sinks.get(name)
        if sink is not None and getattr(sink, "needs_member", False):
            raise ConfigError(
                config.path,
                f"{key}.member",
                f"rule {settings.name!r} publishes to sink {name!r} ({sink.kind}), which needs "
                "a member for every event: set `member`, a dotted path like 'applicant.email'",
            )


def _compile(
    settings: RuleSettings, key: str, path: str, kind: str, pattern_problem: PatternCheck
) -> Rule:
    def fail(field: str, message: str) -> ConfigError:
        return ConfigError(path, f"{key}.{field}", message)

    unknown = set(settings.match) - MATCH_KEYS
    if unknown:
        raise fail("match", f"unknown key {sorted(unknown)[0]!r}; use entity and/or op")
    op = settings.match.get("op")
    if op is not None and op not in OPS:
        raise fail("match", f"op must be one of {', '.join(sorted(OPS))}")
    event = None
    if settings.event is not None:
        problem = pattern_problem(kind, settings.event)
        if problem:
            raise fail("event", problem)
        event = EventPattern.parse(settings.event)
    where = []
    for dotted, want in settings.where.items():
        parts = tuple(dotted.split("."))
        if not all(parts):
            raise fail("where", f"{dotted!r} is not a dotted path like 'data.roles'")
        where.append((parts, want))
    member = tuple(settings.member.split(".")) if settings.member else None
    if member is not None and not all(member):
        raise fail("member", f"{settings.member!r} is not a dotted path like 'applicant.email'")
    return Rule(
        name=settings.name,
        source=settings.source,
        event=event,
        entity=settings.match.get("entity"),
        op=op,
        where=tuple(where),
        publish=tuple(settings.publish),
        event_type=settings.event_type or settings.name,
        member=member,
    )
