"""The typed views (mirror/views.py) after a demo-like backfill of both feeds
from the simulator, on each backend: every entity of both kinds has its view,
each view's rows and columns are the records they come from, the README's
queries run as written, and the views follow the configured sources."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, inspect
from structlog.testing import capture_logs

from edsync.cli import main
from edsync.kinds import Field, Records
from edsync.mirror import views
from edsync.mirror.db import create_mirror_engine, ensure_schema, upgrade
from edsync.ops.demo import DEMO_KEY, demo_config
from edsync.run.backfill import run_backfill
from edsync.settings import MirrorSettings
from edsync.sources import VIEWS as KINDS
from edsync.sources import records as kind_records
from edsync.sources.dreamapply.journal import Settings as DreamApplySettings
from edsync_sim import Simulator
from tests.conftest import json_value

README = Path(__file__).resolve().parents[2] / "README.md"
SOURCES = {"dreamapply": "dreamapply", "edlink": "edlink", "journal": "dreamapply"}


def of_kinds(sources: dict[str, str]) -> dict[str, Records]:
    """Source name → kind name, as the mirror takes it: → its kind's records."""
    return {name: kind_records(kind) for name, kind in sources.items()}


RECORD = ("id", "deleted")
TAIL = ("version", "changed_at", "synced_at", "data")


@pytest.fixture
def mirror(mirror_url: Callable[[str], str]) -> Iterator[Engine]:
    """The demo's sources (DreamApply snapshotted and expanded, Edlink), then
    more events on both feeds, backfilled from the simulator; beside them the
    same journal unexpanded (``journal``): records holding only its links."""
    with Simulator(events=3000, seed=0, api_key=DEMO_KEY) as sim:
        config = demo_config(sim.url, Path("unused.db"))
        expanded = config.sources["dreamapply"]
        assert isinstance(expanded, DreamApplySettings)
        plain = dataclasses.replace(expanded, name="journal", snapshot=False, expand=[])
        config = dataclasses.replace(
            config,
            mirror=MirrorSettings(url=mirror_url("views.db")),
            sources={**config.sources, "journal": plain},
        )
        engine = create_mirror_engine(config.mirror)
        ensure_schema(engine, auto_migrate=True, sources=of_kinds(SOURCES))
        for _ in range(2):
            outcome = run_backfill(config, engine, list(config.sources), deliver=False)
            assert outcome.ok, outcome.failures
            sim.journal.append(2000)
            sim.edlink.append(1000)
    yield engine
    engine.dispose()


def records(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        result = conn.exec_driver_sql(
            "SELECT source, entity, entity_id, deleted, data, person_id, version, changed_at, "
            "synced_at FROM records"
        )
        rows = [dict(row._mapping) for row in result]
    for row in rows:
        row["data"] = json_value(engine.dialect.name, row["data"])
    return rows


# -- what each column must hold, read from the record in Python --------------


def _at(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _link(value: Any) -> str | None:
    """A link's id as the journal reads it: its trailing ASCII digits (a
    trailing slash allowed, and a final newline, as a regular expression's
    ``$`` allows), an object's ``id``, a bare number itself."""
    if isinstance(value, dict):
        inner = value.get("id")
        if isinstance(inner, bool) or not isinstance(inner, int | str) or inner == "":
            return None
        return str(inner)
    if isinstance(value, str):
        match = re.search(r"([0-9]+)/?\n?\Z", value, re.ASCII)
        return match.group(1) if match else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _date(value: Any) -> dt.datetime | None:
    """A date PostgreSQL reads: an ISO string Python reads, offset under 16 hours."""
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    offset = parsed.utcoffset()
    if offset is None:  # a date alone (an invoice's deadline): midnight, in UTC
        return parsed.replace(tzinfo=dt.UTC)
    return None if abs(offset) >= dt.timedelta(hours=16) else parsed


def expected(field: Field, record: dict[str, Any], dialect: str) -> Any:
    """What a column holds, the same on both engines but for how each driver
    hands the type back: SQLite a boolean as 0/1 and a date as its text."""
    if field.type == "person":
        return record["person_id"]
    value = _at(record["data"], field.path)
    if value is None:
        return None
    if field.type == "link":
        return _link(value)
    if field.type == "text":
        return value if isinstance(value, str) else orjson.dumps(value).decode()
    if field.type == "integer":
        fits = isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
        return value if fits else None
    if field.type == "boolean":
        if not isinstance(value, bool):
            return None
        return int(value) if dialect == "sqlite" else value
    parsed = _date(value)
    if parsed is None:
        return None
    return value if dialect == "sqlite" else parsed


def same(actual: Any, wanted: Any, field: Field) -> bool:
    return type(actual) is type(wanted) and bool(actual == wanted)


def test_every_view_holds_its_records_column_by_column(mirror: Engine) -> None:
    dialect = mirror.dialect.name
    by_key = {(r["source"], r["entity"], r["entity_id"]): r for r in records(mirror)}
    kinds_seen = {(r["source"], r["entity"]) for r in by_key.values()}
    planned, skipped = views.plan(of_kinds(SOURCES), dialect)
    assert skipped == []
    # Every entity of both kinds has its view, and the backfill filled each the
    # simulator serves (seven DreamApply kinds, nine Edlink).
    assert {(v.source, v.entity) for v in planned} == {
        (source, entity) for source, kind in SOURCES.items() for entity in KINDS[kind]
    }
    assert kinds_seen - {(v.source, v.entity) for v in planned} == set()
    assert len(kinds_seen) == len(planned) == 7 * 2 + 9
    checked = 0
    with mirror.connect() as conn:
        for view in planned:
            _, fields = view.records.entities[view.entity]
            result = conn.exec_driver_sql(f'SELECT * FROM "{view.name}"')
            columns = list(result.keys())
            assert columns == [c for c, _ in view.columns]
            assert columns == [*RECORD, *(f.column for f in fields), *TAIL]
            rows = [dict(zip(columns, row, strict=True)) for row in result]
            keys = {k for k in by_key if k[:2] == (view.source, view.entity)}
            assert {(view.source, view.entity, row["id"]) for row in rows} == keys
            assert len(rows) == len(keys)
            for row in rows:
                record = by_key[(view.source, view.entity, row["id"])]
                assert bool(row["deleted"]) is bool(record["deleted"])
                for column in ("version", "changed_at", "synced_at"):
                    assert row[column] == record[column], (view.name, column)
                assert json_value(dialect, row["data"]) == record["data"]
                for field in fields:
                    want = expected(field, record, dialect)
                    got = row[field.column]
                    assert same(got, want, field), (view.name, row["id"], field.column, got, want)
                    checked += want is not None
    assert checked > 5000  # the columns are filled, not NULL throughout


def test_view_columns_have_their_declared_types(mirror: Engine) -> None:
    planned, _ = views.plan(of_kinds(SOURCES), mirror.dialect.name)
    with mirror.connect() as conn:
        for view in planned:
            if mirror.dialect.name == "postgresql":
                found = conn.exec_driver_sql(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_name = %s ORDER BY ordinal_position",
                    (view.name,),
                ).all()
                assert [tuple(row) for row in found] == list(view.columns)
                continue
            # SQLite types values, not columns: each value is of its column's type.
            _, fields = view.records.entities[view.entity]
            sqlite_type = {"integer": "integer", "boolean": "integer"}
            for column, allowed in (
                ("id", {"text"}),
                ("deleted", {"integer"}),
                ("version", {"integer"}),
                ("synced_at", {"text"}),
                ("data", {"text"}),
                *((f.column, {sqlite_type.get(f.type, "text"), "null"}) for f in fields),
            ):
                kinds = {
                    kind
                    for (kind,) in conn.exec_driver_sql(
                        f'SELECT DISTINCT typeof("{column}") FROM "{view.name}"'
                    )
                }
                assert kinds <= allowed, (view.name, column, kinds)


def test_deleted_records_stay_visible_with_deleted_true(mirror: Engine) -> None:
    with mirror.connect() as conn:
        gone = conn.exec_driver_sql(
            "SELECT count(*) FROM records WHERE source = 'edlink' AND entity = 'enrollment' "
            "AND deleted"
        ).scalar_one()
        shown = conn.exec_driver_sql(
            "SELECT count(*) FROM edlink_enrollments WHERE deleted"
        ).scalar_one()
        current = conn.exec_driver_sql(
            "SELECT count(*) FROM edlink_enrollments WHERE NOT deleted"
        ).scalar_one()
        total = conn.exec_driver_sql("SELECT count(*) FROM edlink_enrollments").scalar_one()
    assert gone > 0
    assert shown == gone
    assert current == total - gone


# -- the README's queries, as written ----------------------------------------


def readme_queries(dialect: str) -> list[str]:
    """The SQL blocks of README's "Query the mirror", those marked for the
    other engine left out."""
    text = README.read_text()
    section = text.split("## Query the mirror\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.DOTALL)
    other = "-- PostgreSQL" if dialect == "sqlite" else "-- SQLite"
    return [block for block in blocks if other not in block]


def test_readme_queries_answer_their_questions(mirror: Engine) -> None:
    dialect = mirror.dialect.name
    enrolled, teachers, changed = readme_queries(dialect)
    rows = records(mirror)
    index = {(r["source"], r["entity"], r["entity_id"]): r for r in rows}

    def of(entity: str) -> list[dict[str, Any]]:
        source = "edlink" if entity in KINDS["edlink"] else "dreamapply"
        return [r for r in rows if (r["source"], r["entity"]) == (source, entity)]

    with mirror.connect() as conn:
        # Enrolled offers, with the applicant's e-mail.
        got = {(row[0], row[2]) for row in conn.exec_driver_sql(enrolled)}
        want = set()
        for offer in of("offer"):
            if offer["data"].get("status") != "Enrolled" or offer["deleted"]:
                continue
            applicant_id = _link(offer["data"].get("applicant")) or offer["person_id"]
            applicant = index.get(("dreamapply", "applicant", applicant_id))
            if applicant is not None:
                want.add((offer["entity_id"], applicant["data"].get("email")))
        assert want
        assert got == want

        # Who teaches "Algebra I - Period 7".
        got = {(row[1], row[2]) for row in conn.exec_driver_sql(teachers)}
        want = set()
        for enrollment in of("enrollment"):
            data = enrollment["data"]
            klass = index.get(("edlink", "class", data.get("class_id")))
            person = index.get(("edlink", "person", data.get("person_id")))
            if enrollment["deleted"] or data.get("role") != "teacher" or not klass or not person:
                continue
            if klass["deleted"] or klass["data"].get("name") != "Algebra I - Period 7":
                continue
            if ("edlink", "school", klass["data"].get("school_id")) in index:
                want.add((klass["entity_id"], person["data"].get("display_name")))
        assert want
        assert got == want

        # Enrollments changed since yesterday: between what the cutoffs on
        # either side of the query select.
        before = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        got = {row[0] for row in conn.exec_driver_sql(changed)}
        after = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)

    def since(cutoff: dt.datetime) -> set[str]:
        return {
            r["entity_id"]
            for r in of("enrollment")
            if r["changed_at"] is not None and _when(r["changed_at"]) >= cutoff
        }

    assert since(after) <= got <= since(before.replace(microsecond=0))
    assert since(after)


def _when(value: Any) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)


# -- views follow the configuration -------------------------------------------


def view_names(engine: Engine) -> set[str]:
    from sqlalchemy import inspect

    return set(inspect(engine).get_view_names())


def test_a_source_added_to_the_config_gets_its_views(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    assert view_names(engine) == set()  # no sources named: no views
    ensure_schema(engine, auto_migrate=True, sources=of_kinds({"Da-Main": "dreamapply"}))
    assert "da_main_offers" in view_names(engine)
    assert not any(name.startswith("roster") for name in view_names(engine))
    ensure_schema(
        engine, auto_migrate=True, sources=of_kinds({"Da-Main": "dreamapply", "roster": "edlink"})
    )
    names = view_names(engine)
    assert {f"roster_{plural}" for plural, _ in KINDS["edlink"].values()} <= names
    assert {f"da_main_{plural}" for plural, _ in KINDS["dreamapply"].values()} <= names
    # Current views are left alone: a second start writes nothing.
    assert views.ensure(engine, of_kinds({"Da-Main": "dreamapply", "roster": "edlink"})) == []


def test_an_outdated_view_is_replaced(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE VIEW dreamapply_offers AS SELECT entity_id AS id FROM records")
    upgrade(engine, of_kinds({"dreamapply": "dreamapply"}))
    with engine.connect() as conn:
        columns = list(conn.exec_driver_sql("SELECT * FROM dreamapply_offers").keys())
    assert "application_id" in columns
    assert views.ensure(engine, of_kinds({"dreamapply": "dreamapply"})) == []


OLD_OFFER = (
    '{"status": "Enrolled", "priority": 2, "course": "/api/courses/9", '
    '"inserted": "2026-01-02T03:04:05+00:00"}'
)


def mirror_at_0008(engine: Engine, *statements: str) -> None:
    """A mirror as the edsync before migration 0009 left it: one offer and its
    view (reading ``data``), then ``statements``."""
    from alembic import command

    from edsync.mirror.db import _alembic_config

    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0008")
        conn.exec_driver_sql(
            "INSERT INTO records (source, entity, entity_id, data, deleted, version, "
            "last_event_id, person_id, first_seen_at, synced_at) VALUES ('da', 'offer', '5', "
            f"'{OLD_OFFER}', false, 1, 'x', '7', '2026-01-01', '2026-01-01')"
        )
        conn.exec_driver_sql(
            "CREATE VIEW da_offers AS SELECT entity_id AS \"id\", data->>'status' AS status "
            "FROM records WHERE source = 'da' AND entity = 'offer'"
        )
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("COMMENT ON VIEW da_offers IS 'edsync view of da/offer (0)'")
        for statement in statements:
            conn.exec_driver_sql(statement)


def offer_row(engine: Engine) -> tuple[Any, ...]:
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT id, applicant_id, status, priority, course_id, inserted FROM da_offers"
        ).one()
    inserted: Any = "2026-01-02T03:04:05+00:00"
    if engine.dialect.name == "postgresql":
        inserted = dt.datetime.fromisoformat(inserted)
    assert tuple(row) == ("5", "7", "Enrolled", 2, "9", inserted)
    return tuple(row)


def record_columns(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [str(c["name"]) for c in inspect(conn).get_columns("records")]


def test_an_upgrade_computes_the_typed_values_of_records_written_before(
    mirror_url: Callable[[str], str],
) -> None:
    """A mirror written by an edsync before migration 0009 has no typed values:
    ``db upgrade`` adds the column (before ``data`` on PostgreSQL, where the
    table is rebuilt, its edsync views dropped first) and computes the values
    when it creates the views again, so the views show those records at once."""
    engine = create_mirror_engine(MirrorSettings(url=mirror_url("old.db")))
    mirror_at_0008(engine)
    upgrade(engine, of_kinds({"da": "dreamapply"}))
    offer_row(engine)
    columns = record_columns(engine)
    if engine.dialect.name == "postgresql":
        assert columns.index("typed") == columns.index("data") - 1
    else:
        # SQLite finds a column as fast anywhere; migration 0010 appends parent_id.
        assert columns[-2:] == ["typed", "parent_id"]
    # Current views: nothing is computed again on the next start.
    with capture_logs() as logs:
        assert views.ensure(engine, of_kinds({"da": "dreamapply"})) == []
    assert not [log for log in logs if log["event"] == "records_retyped"]
    engine.dispose()


@pytest.mark.postgresql_only
def test_a_table_others_hang_objects_on_is_not_rebuilt(
    mirror_url: Callable[[str], str],
) -> None:
    """A rebuild would drop a user's view on ``records`` and their grants: the
    column is appended instead, with a warning, and the views work the same."""
    engine = create_mirror_engine(MirrorSettings(url=mirror_url("held.db")))
    mirror_at_0008(
        engine,
        "CREATE VIEW my_offers AS SELECT entity_id, data FROM records",
        "GRANT SELECT ON records TO PUBLIC",
    )
    with capture_logs() as logs:
        upgrade(engine, of_kinds({"da": "dreamapply"}))
    (warning,) = [log for log in logs if log["event"] == "records_typed_appended"]
    assert warning["why"].endswith("views, grants")
    offer_row(engine)
    assert record_columns(engine)[-2:] == ["typed", "parent_id"]  # 0010 appends parent_id
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT entity_id FROM my_offers").scalar_one() == "5"
    engine.dispose()


def test_a_source_name_too_long_for_a_view_is_skipped(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    long_name = "x" * 60
    ensure_schema(engine, auto_migrate=True, sources=of_kinds({long_name: "edlink", "e": "edlink"}))
    names = view_names(engine)
    assert not any(name.startswith("xxx") for name in names)
    assert "e_people" in names
    _, skipped = views.plan(of_kinds({long_name: "edlink"}), engine.dialect.name)
    assert len(skipped) == len(KINDS["edlink"])


def test_without_auto_migrate_views_are_left_to_db_upgrade(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine()
    ensure_schema(engine, auto_migrate=False, sources=of_kinds(SOURCES))
    assert view_names(engine) == set()


def test_db_views_and_upgrade_commands(
    tmp_path: Path,
    mirror_url: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    path = tmp_path / "edsync.toml"
    path.write_text(
        f"""
[mirror]
url = "{mirror_url("cli.db")}"
auto_migrate = false

[sources.da_main]
kind = "dreamapply"
base_url = "http://127.0.0.1:1"
api_key_env = "UNSET_IN_TESTS"

[sources.roster]
kind = "edlink"
base_url = "http://127.0.0.1:1"
token_env = "UNSET_IN_TESTS_TOO"
"""
    )
    assert main(["db", "-c", str(path), "upgrade"]) == 0
    capsys.readouterr()
    assert main(["db", "-c", str(path), "views"]) == 0
    out = capsys.readouterr().out
    assert "da_main_offers" in out
    assert "roster_enrollments" in out
    assert "application_id" in out
    assert "is_primary" in out
    assert "run edsync db upgrade" not in out  # all current after the upgrade
    engine = create_mirror_engine(MirrorSettings(url=mirror_url("cli.db")))
    assert {"da_main_applicants", "roster_people"} <= view_names(engine)
    engine.dispose()


def retyped(engine: Engine, sources: dict[str, str]) -> None:
    """Records inserted by hand, not by the apply step, get their typed
    values as a view refresh computes them."""
    with engine.begin() as conn:
        for source, kind in sources.items():
            for entity in KINDS[kind]:
                views.retype(conn, source, kind_records(kind), entity)


def test_a_malformed_value_never_fails_a_query(make_engine: Callable[..., Engine]) -> None:
    """Bad upstream data never makes a view unqueryable: a value not of its
    column's type reads as NULL, on both engines (PostgreSQL's casts would
    raise on it, failing the whole query)."""
    engine = make_engine()
    upgrade(engine, of_kinds({"edlink": "edlink"}))
    data = {
        "id": "e1",
        "start_date": "-0001-11-30T00:00:00+00:00",  # PHP's zero date
        "end_date": "2026-13-45",  # a date's shape, not a date
        "updated_date": "2026-01-02T03:04:05+23:00",  # an offset PostgreSQL refuses
        "created_date": "2026-01-02T03:04:05.678Z",
        "primary": "yes",
        "person_id": {"nested": True},
        "role": "soon",
    }
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO records (source, entity, entity_id, data, deleted, version, "
            "last_event_id, first_seen_at, synced_at) VALUES ('edlink', 'enrollment', 'e1', "
            f"'{orjson.dumps(data).decode()}', false, 1, 'x', '2026-01-01', '2026-01-01')"
        )
    retyped(engine, {"edlink": "edlink"})
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT start_date, end_date, updated_date, is_primary, person_id, role, "
            "created_date FROM edlink_enrollments "
            "WHERE id = 'e1' AND (end_date IS NULL OR end_date >= created_date) "
            "AND (updated_date IS NULL OR updated_date >= created_date)"
        ).one()
    created: Any = "2026-01-02T03:04:05.678Z"
    if engine.dialect.name == "postgresql":
        created = dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)
    assert row == (None, None, None, None, '{"nested":true}', "soon", created)


def test_an_integer_column_holds_only_integers_that_fit(make_engine: Callable[..., Engine]) -> None:
    """Integer columns are bigint: a fraction, a number beyond bigint's range,
    or another type reads as NULL (PostgreSQL's cast would round or raise);
    every integer that fits reads as itself, on both engines."""
    engine = make_engine()
    upgrade(engine, of_kinds({"edlink": "edlink"}))
    values: dict[str, Any] = {
        "small": 2026,
        "negative": -3,
        "max": 2**63 - 1,
        "min": -(2**63),
        "over": 2**63,
        "huge": 10**30,
        "fraction": 1.5,
        "point": 2.0,
        "text": "2026",
        "true": True,
        "list": [1],
    }
    rows = [
        f"('edlink', 'person', '{key}', '{json.dumps({'graduation_year': value})}', "
        "false, 1, 'x', '2026-01-01', '2026-01-01')"
        for key, value in values.items()
    ]
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO records (source, entity, entity_id, data, deleted, version, "
            f"last_event_id, first_seen_at, synced_at) VALUES {', '.join(rows)}"
        )
    retyped(engine, {"edlink": "edlink"})
    with engine.connect() as conn:
        got: dict[str, int | None] = dict(
            conn.exec_driver_sql("SELECT id, graduation_year FROM edlink_people").all()
        )
        total = conn.exec_driver_sql(
            "SELECT count(*) FROM edlink_people WHERE graduation_year > 0"
        ).scalar_one()
    fits = ("small", "negative", "max", "min")
    assert got == {key: values[key] if key in fits else None for key in values}
    assert total == 2


# -- the vendors' documented examples -----------------------------------------


def test_the_vendors_documented_objects_fill_their_columns(
    make_engine: Callable[..., Engine],
) -> None:
    from edsync.mirror.schema import records as records_table
    from tests.contract.dreamapply import view_examples as da
    from tests.contract.edlink import view_examples as ed

    engine = make_engine()
    upgrade(engine, of_kinds({"da": "dreamapply", "ed": "edlink"}))
    now = "2026-01-01T00:00:00+00:00"
    rows = [
        # person_id as the apply step sets it: the applicant the object links to.
        ("da", "applicant", "123", da.APPLICANT, "123"),
        ("da", "application", "60", da.APPLICATION, "60"),
        ("da", "offer", "12", da.OFFER, "60"),
        ("ed", "person", ed.ZERO, ed.PERSON, ed.ZERO),
        ("ed", "enrollment", ed.ZERO, ed.ENROLLMENT, ed.ZERO),
        ("ed", "agent", ed.ZERO, ed.AGENT, None),
        ("ed", "section", ed.ZERO, ed.SECTION, None),
    ]
    with engine.begin() as conn:
        conn.execute(
            records_table.insert(),
            [
                {
                    "source": source,
                    "entity": entity,
                    "entity_id": id_,
                    "data": data,
                    "deleted": False,
                    "version": 1,
                    "last_event_id": "1",
                    "person_id": person,
                    "first_seen_at": now,
                    "synced_at": now,
                }
                for source, entity, id_, data, person in rows
            ],
        )
    retyped(engine, {"da": "dreamapply", "ed": "edlink"})

    def one(sql: str) -> tuple[Any, ...]:
        with engine.connect() as conn:
            return tuple(conn.exec_driver_sql(sql).one())

    def when(value: str) -> Any:
        return value if engine.dialect.name == "sqlite" else dt.datetime.fromisoformat(value)

    assert one(
        "SELECT email, given_name, family_name, full_name, citizenship, type, registered, "
        "phone, reference FROM da_applicants"
    ) == (
        "john.smith@email.com",
        "John",
        "Smith",
        "John Smith",
        "GB",
        "Natural",
        when("2025-11-24T10:56:34+00:00"),
        "",
        None,
    )
    assert one(
        "SELECT applicant_id, status, commence_year, created, submitted FROM da_applications"
    ) == ("60", "Prepare", "2025", when("2025-06-20T08:30:31+00:00"), None)
    assert one(
        "SELECT id, applicant_id, application_id, course_id, type_id, priority, decision, "
        "decision_policy, inserted, confirmed, decision_deadline FROM da_offers"
    ) == (
        "12",
        "60",
        None,  # the vendor's offer carries no application link
        "1",
        "7",
        1,
        "None",
        "None",
        when("2014-06-20T11:00:19+00:00"),
        None,
        None,
    )
    assert one(
        "SELECT display_name, email, graduation_year, district_id, time_zone, created_date "
        "FROM ed_people"
    ) == (
        "Gob Bluth",
        "gob.bluth@example.com",
        1996,
        ed.ZERO,
        "America/Los_Angeles",
        when("2021-07-13T17:45:39.937Z"),
    )
    assert one(
        "SELECT person_id, class_id, section_id, role, state, is_primary, start_date "
        "FROM ed_enrollments"
    ) == (ed.ZERO, ed.ZERO, ed.ZERO, "teacher", "active", None, None)
    assert one("SELECT observer_id, target_id, relationship FROM ed_agents") == (
        ed.ZERO,
        ed.ZERO,
        "parent",
    )
    assert one("SELECT name, state, class_id, locale FROM ed_sections") == (
        "Section 3",
        "active",
        ed.ZERO,
        "en",
    )


# -- a link's id ---------------------------------------------------------------

TRICKY_LINKS: list[Any] = [
    "/api/applications/321",
    "/api/applications/321/",  # a trailing slash: the id before it
    "/api/applications/",  # the prefix alone
    "/api/applications/0",
    "/api/applications/007",
    "/api/applications/12a",
    "/api/applications/a12",
    "/api/applications/1/offers/2",  # extra segments: the last digits
    "/api/applications/offers/types/7",
    "/api/courses/5",
    "/api/v9/applications/321",  # the versioned form
    "/api/v4/applications/offers/types/7",
    "/api/applicants/12",
    "/API/APPLICATIONS/5",
    "/api/applicationsX12",
    "/api/applications12",
    "/api/applications//3",
    "12/api/applications/34",  # digits before the prefix
    "x/api/applications/4",
    "/api/applications/1/api/applications/2",
    "/api/applications/\u0661\u0662",  # Arabic-Indic digits: not ASCII ones
    "/api/applications/12\u20ac",
    "/api/applications/\u20ac12",
    "/api/applications/ 12",
    "/api/applications/+12",
    "/api/applications/-12",
    "/api/applications/1.5",
    "/api/applications/12\n",  # a final newline: read as by ``$``
    "/api/applications/" + "9" * 30,
    "",
    "321",
    {"id": 12},
    {"id": "abc"},
    {"id": None},
    {"id": True},
    {},
    {"id": 12, "href": "/api/applications/5"},
    321,
    0,
    True,
    ["/api/applications/3"],
    None,
    "(missing)",  # no such key
]


def test_a_link_column_holds_the_id_the_journal_reads(
    make_engine: Callable[..., Engine],
) -> None:
    """Every link column holds the id edsync itself reads from the same link
    (``ref_id``, which names the records a link points to), whatever form
    the link takes, on both engines."""
    from edsync.mirror.schema import records as records_table
    from edsync.sources.dreamapply.links import ref_id

    engine = make_engine()
    upgrade(engine, of_kinds({"da": "dreamapply"}))
    keys = ("application", "course", "type")
    now = "2026-01-01T00:00:00+00:00"
    rows = [
        {
            "source": "da",
            "entity": "offer",
            "entity_id": str(i),
            "data": dict.fromkeys(keys, value) if value != "(missing)" else {},
            "deleted": False,
            "version": 1,
            "last_event_id": "1",
            "person_id": None,
            "first_seen_at": now,
            "synced_at": now,
        }
        for i, value in enumerate(TRICKY_LINKS)
    ]
    with engine.begin() as conn:
        conn.execute(records_table.insert(), rows)
    retyped(engine, {"da": "dreamapply"})
    _, fields = KINDS["dreamapply"]["offer"]
    links = [field for field in fields if field.type == "link"]
    assert [field.path for field in links] == [(key,) for key in keys]
    with engine.connect() as conn:
        got = conn.exec_driver_sql(
            f"SELECT id, {', '.join(field.column for field in links)} FROM da_offers"
        ).all()
    assert len(got) == len(TRICKY_LINKS)
    for id_, *read in got:
        value = TRICKY_LINKS[int(id_)]
        value = None if value == "(missing)" else value
        assert read == [_link(value)] * len(links), (value, read)
        if isinstance(value, str | dict):
            assert read[0] == ref_id(value), value
    by_value = {json.dumps(TRICKY_LINKS[int(row[0])]): row[1] for row in got}
    assert by_value['"/api/applications/321"'] == "321"
    assert by_value['"/api/applications/offers/types/7"'] == "7"
    assert by_value['"/api/applications/1/offers/2"'] == "2"
    assert by_value['"/api/applications/321/"'] == "321"
    assert by_value['"/api/v9/applications/321"'] == "321"
    assert by_value['{"id": 12}'] == "12"
    assert by_value['"/api/applications/"'] is None
    assert by_value['"(missing)"'] is None
