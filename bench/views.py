"""A query on a typed view against the same query spelled in JSON on ``records``.

    python bench/views.py [--records 100000] [--runs 15] [--mirror postgresql+psycopg://…]

Fills an empty mirror (a temporary SQLite file unless ``--mirror`` names an
empty database) with ``--records`` records shaped as the vendors document
them (DreamApply applicants, applications and offers whose links are link
strings, as the journal sends them unexpanded; Edlink people, classes and
enrollments), creates the views, then times each question both ways, the
best of ``--runs`` taken in turns, after one untimed warm-up each. The JSON spelling is the
one a user writes by hand against ``records`` for the same answer (with the
same types: PostgreSQL casts the dates).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from edsync.kinds import typed_values
from edsync.mirror.db import create_mirror_engine, ensure_schema
from edsync.mirror.schema import records
from edsync.settings import MirrorSettings
from edsync.sources import records as kind_records

SOURCES = {"dreamapply": "dreamapply", "edlink": "edlink"}
STATUSES = ("Unreplied", "Accepted", "Conditional", "Rejected", "Enrolled")

# question → (view query, JSON query on SQLite, JSON query on PostgreSQL)
QUERIES: dict[str, tuple[str, str, str]] = {
    "count enrolled offers": (
        "SELECT count(*) FROM dreamapply_offers WHERE status = 'Enrolled'",
        "SELECT count(*) FROM records WHERE source = 'dreamapply' AND entity = 'offer' "
        "AND json_extract(data, '$.status') = 'Enrolled'",
        "SELECT count(*) FROM records WHERE source = 'dreamapply' AND entity = 'offer' "
        "AND data->>'status' = 'Enrolled'",
    ),
    "enrolled offers + applicant e-mail (join)": (
        "SELECT o.id, a.email FROM dreamapply_offers o "
        "JOIN dreamapply_applicants a ON a.id = o.applicant_id WHERE o.status = 'Enrolled'",
        "SELECT o.entity_id, json_extract(a.data, '$.email') FROM records o "
        "JOIN records a ON a.source = 'dreamapply' AND a.entity = 'applicant' "
        "AND a.entity_id = replace(json_extract(o.data, '$.applicant'), '/api/applicants/', '') "
        "WHERE o.source = 'dreamapply' AND o.entity = 'offer' "
        "AND json_extract(o.data, '$.status') = 'Enrolled'",
        "SELECT o.entity_id, a.data->>'email' FROM records o "
        "JOIN records a ON a.source = 'dreamapply' AND a.entity = 'applicant' "
        "AND a.entity_id = replace(o.data->>'applicant', '/api/applicants/', '') "
        "WHERE o.source = 'dreamapply' AND o.entity = 'offer' "
        "AND o.data->>'status' = 'Enrolled'",
    ),
    "a class's teachers (join)": (
        "SELECT p.display_name FROM edlink_enrollments e "
        "JOIN edlink_people p ON p.id = e.person_id "
        "WHERE e.class_id = 'class-20' AND e.role = 'teacher'",
        "SELECT json_extract(p.data, '$.display_name') FROM records e "
        "JOIN records p ON p.source = 'edlink' AND p.entity = 'person' "
        "AND p.entity_id = json_extract(e.data, '$.person_id') "
        "WHERE e.source = 'edlink' AND e.entity = 'enrollment' "
        "AND json_extract(e.data, '$.class_id') = 'class-20' "
        "AND json_extract(e.data, '$.role') = 'teacher'",
        "SELECT p.data->>'display_name' FROM records e "
        "JOIN records p ON p.source = 'edlink' AND p.entity = 'person' "
        "AND p.entity_id = e.data->>'person_id' "
        "WHERE e.source = 'edlink' AND e.entity = 'enrollment' "
        "AND e.data->>'class_id' = 'class-20' AND e.data->>'role' = 'teacher'",
    ),
    "applicants registered in 2026 (dates)": (
        "SELECT count(*) FROM dreamapply_applicants WHERE registered >= '2026-01-01'",
        "SELECT count(*) FROM records WHERE source = 'dreamapply' AND entity = 'applicant' "
        "AND json_extract(data, '$.registered') >= '2026-01-01'",
        "SELECT count(*) FROM records WHERE source = 'dreamapply' AND entity = 'applicant' "
        "AND (data->>'registered')::timestamptz >= '2026-01-01'",
    ),
    "every offer, typed columns (scan)": (
        "SELECT id, application_id, status, priority, inserted FROM dreamapply_offers",
        "SELECT entity_id, replace(json_extract(data, '$.application'), "
        "'/api/applications/', ''), json_extract(data, '$.status'), "
        "json_extract(data, '$.priority'), json_extract(data, '$.inserted') "
        "FROM records WHERE source = 'dreamapply' AND entity = 'offer'",
        "SELECT entity_id, replace(data->>'application', '/api/applications/', ''), "
        "data->>'status', (data->>'priority')::bigint, (data->>'inserted')::timestamptz "
        "FROM records WHERE source = 'dreamapply' AND entity = 'offer'",
    ),
}


def _stamp(i: int) -> str:
    return f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00+00:00"


def _rows(total: int) -> Iterator[dict[str, Any]]:
    """Records in the proportions of a university beside a district: a fifth
    applicants, a fifth applications, two fifths offers, a fifth rostering."""
    applicants = total // 5
    now = "2026-12-01T00:00:00+00:00"

    def record(
        source: str, entity: str, id_: str, data: dict[str, Any], n: int, *, person: Any = None
    ) -> dict[str, Any]:
        return {
            "source": source,
            "entity": entity,
            "entity_id": id_,
            "data": data,
            "deleted": n % 50 == 0,
            "version": n,
            "last_event_id": str(n),
            "person_id": person,  # as edsync's apply sets it: the applicant
            "first_seen_at": now,
            "changed_at": _stamp(n),
            "synced_at": now,
        }

    n = 0
    for i in range(applicants):
        n += 1
        data: dict[str, Any] = {
            "id": i,
            "registered": _stamp(i) if i % 3 else _stamp(i).replace("2026", "2025"),
            "name": {"given": f"Given{i}", "family": f"Family{i}", "full": f"Given{i} Family{i}"},
            "email": f"applicant{i}@example.org",
            "phone": "+372 5555555",
            "citizenship": "EE",
        }
        yield record("dreamapply", "applicant", str(i), data, n, person=str(i))
    for i in range(applicants):
        n += 1
        data = {
            "id": 20_000_000 + i,
            "applicant": f"/api/applicants/{i}",
            "created": _stamp(i),
            "status": "Submitted",
            "academic_term": "/api/academic-terms/3",
        }
        yield record("dreamapply", "application", str(20_000_000 + i), data, n, person=str(i))
    for i in range(2 * applicants):
        n += 1
        data = {
            "id": 50_000_000 + i,
            "applicant": f"/api/applicants/{i // 2}",
            "application": f"/api/applications/{20_000_000 + i // 2}",
            "course": f"/api/courses/{i % 40}",
            "type": f"/api/applications/offers/types/{i % 5}",
            "priority": 1 + i % 2,
            "inserted": _stamp(i),
            "saved": _stamp(i + 1),
            "confirmed": None,
            "decision": "None",
            "status": STATUSES[i % len(STATUSES)],
        }
        yield record("dreamapply", "offer", str(50_000_000 + i), data, n, person=str(i // 2))
    people, classes = total // 25, total // 100
    for i in range(people):
        n += 1
        data = {
            "id": f"person-{i}",
            "first_name": f"First{i}",
            "last_name": f"Last{i}",
            "display_name": f"First{i} Last{i}",
            "email": f"person{i}@schools.example.org",
            "roles": ["teacher" if i % 20 == 0 else "student"],
            "created_date": "2026-01-01T00:00:00.000Z",
            "updated_date": _stamp(i),
        }
        yield record("edlink", "person", f"person-{i}", data, n)
    for i in range(classes):
        n += 1
        data = {"id": f"class-{i}", "name": f"Class {i}", "state": "active"}
        yield record("edlink", "class", f"class-{i}", data, n)
    for i in range(total - n):
        n += 1
        person = i % people
        data = {
            "id": str(uuid.UUID(int=i)),
            "role": "teacher" if person % 20 == 0 else "student",
            "state": "active",
            "primary": person % 20 == 0,
            "person_id": f"person-{person}",
            "class_id": f"class-{i % classes}",
            "section_id": None,
            "start_date": "2026-08-15T00:00:00.000Z",
        }
        yield record("edlink", "enrollment", data["id"], data, n)


def fill(engine: Engine, total: int) -> None:
    """Insert the records with their typed values, as the apply step writes them."""
    by_kind = {kind: kind_records(kind).readers for kind in set(SOURCES.values())}
    batch: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for row in _rows(total):
            fields = by_kind[SOURCES[row["source"]]][row["entity"]]
            row["typed"] = typed_values(fields, row["data"])
            batch.append(row)
            if len(batch) == 5000:
                conn.execute(records.insert(), batch)
                batch = []
        if batch:
            conn.execute(records.insert(), batch)
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE records")
        else:
            conn.exec_driver_sql("ANALYZE")


def _run(conn: Any, sql: str) -> tuple[float, list[tuple[Any, ...]]]:
    started = time.perf_counter()
    rows = [tuple(row) for row in conn.exec_driver_sql(sql)]
    return time.perf_counter() - started, rows


def compare(engine: Engine, view_sql: str, json_sql: str, runs: int) -> tuple[float, float, int]:
    """The best time of each spelling over ``runs``, taken in turns (the order
    alternating) so a busy machine slows both alike; after one warm-up each.
    The best, not the median: on a shared machine what varies is the waiting,
    not the work. Both must answer the same rows."""
    view_times: list[float] = []
    json_times: list[float] = []
    with engine.connect() as conn:
        _, view_rows = _run(conn, view_sql)
        _, json_rows = _run(conn, json_sql)
        assert sorted(view_rows, key=repr) == sorted(json_rows, key=repr), "different answers"
        for run in range(runs):
            pair = [(view_sql, view_times), (json_sql, json_times)]
            for sql, times in pair if run % 2 else reversed(pair):
                times.append(_run(conn, sql)[0])
    return min(view_times), min(json_times), len(view_rows)


def plan_shape(engine: Engine, sql: str) -> list[str]:
    """The plan without its expressions: SQLite's bytecode opcodes, PostgreSQL's
    plan nodes. The same shape means the view was inlined into the same plan,
    which no amount of noise on the machine blurs."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return [str(row[1]) for row in conn.exec_driver_sql(f"EXPLAIN {sql}")]
        lines = [str(row[0]) for row in conn.exec_driver_sql(f"EXPLAIN (COSTS OFF) {sql}")]
    return [line.split("  ")[0].strip() for line in lines if ":" not in line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--mirror", help="an empty database URL (default: a temporary SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.mirror or f"sqlite:///{Path(tmp) / 'views.db'}"
        engine = create_mirror_engine(MirrorSettings(url=url))
        ensure_schema(
            engine, auto_migrate=True, sources={n: kind_records(k) for n, k in SOURCES.items()}
        )
        started = time.perf_counter()
        fill(engine, args.records)
        print(
            f"{engine.dialect.name}: {args.records} records filled in "
            f"{time.perf_counter() - started:.1f} s; best of {args.runs} runs\n"
        )
        print(f"{'question':44} {'view ms':>9} {'JSON ms':>9} {'view/JSON':>9} {'rows':>7}  plan")
        postgres = engine.dialect.name == "postgresql"
        for question, (view_sql, sqlite_sql, pg_sql) in QUERIES.items():
            json_sql = pg_sql if postgres else sqlite_sql
            view_s, json_s, rows = compare(engine, view_sql, json_sql, args.runs)
            same = plan_shape(engine, view_sql) == plan_shape(engine, json_sql)
            print(
                f"{question:44} {view_s * 1e3:9.1f} {json_s * 1e3:9.1f} "
                f"{view_s / json_s:9.2f} {rows:7}  {'same' if same else 'differs'}"
            )
        engine.dispose()


if __name__ == "__main__":
    main()
