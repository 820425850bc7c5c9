"""An Edlink bootstrap of a huge district: peak RSS and objects/s beside a bare loop.

    python bench/edlink_million.py                      # 1 000 000 objects, SQLite
    python bench/edlink_million.py --objects 100000     # quick
    python bench/edlink_million.py --objects 100000 --postgres   # a throwaway cluster
    python bench/edlink_million.py --resync 0.9 --no-loop        # then a gap's resync

Issue 32: "an Edlink bootstrap of 1 000 000 objects (people and enrollments)
streams in constant memory (<= 150 MB RSS), paged, committed per page,
resumable". A purpose-built Graph (this script with ``--serve``, in its own
process so its memory is not counted) serves ``--objects`` objects: a fifth
people, the rest enrollments, bar a few hundred districts, schools,
sessions, courses, classes and sections; no agents; an empty event stream.
Objects have the shapes of ``tests/contract/edlink/payloads.py`` (Edlink's
docs), each with its own ids and names; pages are built when asked for, from
the offset in ``$next``, so the server holds no dataset (the built-in
simulator keeps its whole graph in memory, and builds it first).

``edsync backfill`` then runs as its own process, start-up and all, into a new
mirror (a SQLite file; ``--postgres``: a database of a throwaway cluster,
started with initdb/pg_ctl as the tests do; ``--mirror URL``: an empty
database of yours). Its RSS is sampled from ``/proc/<pid>/status`` every
0.1 s; its peak is the kernel's (``VmHWM``, the same as ``wait4``'s
``ru_maxrss``). The samples are printed at each tenth of the run: flat is
constant memory, a slope is something kept per object. ``--resync KEEP``
then serves the same district with only that share of its people and
enrollments and runs ``edsync backfill --reset`` on the same mirror (a gap's
resync): the rest must be marked deleted, and its RSS is sampled alike.

The yardstick is the **bare loop** on the same objects: stdlib ``sqlite3``
with WAL and ``synchronous=NORMAL`` (edsync's settings), each page fetched
and parsed first (untimed), then one transaction per page, timed: an
``executemany`` upsert of the page's records into the same ``records``
table and the snapshot's progress into ``checkpoints``; at the end one
``UPDATE`` marks deleted what the snapshot lacked. Its figure with the
fetch and parse timed too ("naive") is printed beside it. **Ratio** =
edsync's objects/s ÷ the bare loop's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson

TOKEN = "bench-edlink-token"  # what the bench's own server accepts
TOKEN_ENV = "EDSYNC_BENCH_EDLINK_TOKEN"
SOURCE = "edlink"
LIST_PREFIX = "/api/v2/graph/"
EVENTS_PATH = "/api/v2/graph/events"

# The Graph's lists in bootstrap order, and the ones a district of N objects
# holds besides its people and enrollments (the rest of N is enrollments).
PLURALS: dict[str, str] = {
    "districts": "district",
    "schools": "school",
    "sessions": "session",
    "courses": "course",
    "people": "person",
    "classes": "class",
    "sections": "section",
    "enrollments": "enrollment",
    "agents": "agent",
}
KIND_NUMBER = {kind: n for n, kind in enumerate(PLURALS.values(), 1)}
SMALL = {"district": 1, "school": 8, "session": 2, "course": 40, "class": 200, "section": 200}


def counts(objects: int, keep: float = 1.0) -> dict[str, int]:
    """Objects per kind: ``SMALL``, a fifth people, the rest enrollments, none agents.
    ``keep``: the share of people and enrollments still served (the rest vanished)."""
    sizes = {kind: min(SMALL.get(kind, 0), max(objects // 1000, 1)) for kind in PLURALS.values()}
    sizes["person"] = objects // 5
    sizes["enrollment"] = objects - sum(sizes.values())
    for kind in ("person", "enrollment"):
        sizes[kind] = round(sizes[kind] * keep)
    return sizes


# -- the Graph ------------------------------------------------------------------


def uid(kind: str, n: int) -> str:
    return f"{KIND_NUMBER[kind]:08x}-0000-4000-8000-{n:012x}"


DATE = "2021-07-13T17:45:27.674Z"
_DEMOGRAPHICS = dict.fromkeys(
    [
        "birthday",
        "gender",
        "residence_status",
        "english_language_learner",
        "country_of_birth",
        "state_of_birth",
        "city_of_birth",
        "hispanic_or_latino_ethnicity",
        "homeless",
        "disability",
        "gifted_talented",
        "food_service_program_eligibility",
        "economically_disadvantaged",
        "migrant",
        "public_assistance",
        "rural_residency",
        "individualized_education_plan",
    ]
)


def make(kind: str, n: int, sizes: dict[str, int]) -> dict[str, Any]:
    """Object ``n`` of ``kind``, shaped as ``tests/contract/edlink/payloads.py``'s."""
    district = uid("district", 0)
    school = uid("school", n % max(sizes["school"], 1))
    base: dict[str, Any] = {
        "id": uid(kind, n),
        "created_date": DATE,
        "updated_date": DATE,
    }
    if kind == "person":
        return base | {
            "first_name": f"First{n}",
            "middle_name": None,
            "last_name": f"Last{n}",
            "display_name": f"First{n} Last{n}",
            "picture_url": None,
            "roles": ["student"] if n % 20 else ["teacher"],
            "email": f"person{n}@example.com",
            "phone": None,
            "locale": "en",
            "time_zone": "America/Chicago",
            "graduation_year": 2026 + n % 12,
            "grade_levels": [f"{n % 12 + 1:02d}"],
            "demographics": {**_DEMOGRAPHICS, "races": []},
            "properties": {},
            "identifiers": [{"type": "sis", "value": f"S{n:07d}"}],
            "district_id": district,
            "school_ids": [school],
            "product_ids": [],
        }
    if kind == "enrollment":
        people, sections = max(sizes["person"], 1), max(sizes["section"], 1)
        return base | {
            "start_date": None,
            "end_date": None,
            "role": "student",
            "primary": None,
            "state": "active",
            "properties": {},
            "identifiers": [],
            "person_id": uid("person", n % people),
            "class_id": uid("class", n % sections),
            "section_id": uid("section", n % sections),
        }
    named = base | {"name": f"{kind.title()} {n}", "properties": {}, "identifiers": []}
    if kind == "district":
        return named | {"picture_url": None, "locale": "en", "time_zone": "America/Chicago"}
    if kind == "school":
        return named | {"grade_levels": ["09", "10"], "district_id": district, "product_ids": []}
    if kind == "session":
        return named | {"state": "active", "type": "semester", "school_id": school}
    if kind == "course":
        return named | {"code": f"C{n}", "subjects": [], "school_id": school}
    if kind == "class":
        return named | {"state": "active", "course_id": uid("course", n % 40), "school_id": school}
    if kind == "section":
        return named | {"state": "active", "class_id": uid("class", n)}
    return named


class Graph(BaseHTTPRequestHandler):
    """One list page, built from the offset its ``$next`` carries."""

    protocol_version = "HTTP/1.1"  # keep-alive, as edsync's pool expects
    sizes: ClassVar[dict[str, int]] = {}

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, {"$errors": [{"code": "INVALID_TOKEN", "message": "bad token"}]})
            return
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        request = str(uuid.uuid4())
        if parts.path == EVENTS_PATH:
            self._send(200, {"$data": [], "$request": request})
            return
        kind = PLURALS.get(parts.path.removeprefix(LIST_PREFIX))
        if kind is None:
            self._send(404, {"$errors": [{"code": "NOT_FOUND", "message": parts.path}]})
            return
        first = min(int(query.get("$first", "100")), 10_000)
        start = int(query.get("$cursor", "0"))
        end = min(start + first, self.sizes[kind])
        page: dict[str, Any] = {
            "$data": [make(kind, n, self.sizes) for n in range(start, end)],
            "$request": request,
        }
        if end < self.sizes[kind]:
            host = self.headers.get("Host", "127.0.0.1")
            page["$next"] = f"http://{host}{parts.path}?$first={first}&$cursor={end}"
        self._send(200, page)

    def _send(self, status: int, body: dict[str, Any]) -> None:
        payload = orjson.dumps(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def serve(objects: int, keep: float) -> int:
    Graph.sizes = counts(objects, keep)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Graph)
    print(f"serving http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
    return 0


def start_server(objects: int, keep: float = 1.0) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--objects", str(objects), "--keep", str(keep)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().split()[-1]
    return proc, url


# -- edsync -----------------------------------------------------------------------


@dataclass(slots=True)
class Sampled:
    seconds: float
    peak_mb: float
    samples: list[tuple[float, float]] = field(default_factory=list)  # (s, VmRSS MB)
    log: list[dict[str, Any]] = field(default_factory=list)


def _status_mb(pid: int) -> dict[str, float]:
    found = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    found[name] = int(value.split()[0]) / 1024
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return found


def run_edsync(config: Path, log_path: Path, *extra: str) -> Sampled:
    env = {**os.environ, TOKEN_ENV: TOKEN}
    started = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edsync", "backfill", "-c", str(config), "--no-deliver", *extra],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
        )
        samples: list[tuple[float, float]] = []
        hwm = 0.0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            found = _status_mb(proc.pid)
            if "VmRSS" in found:
                samples.append((time.perf_counter() - started, found["VmRSS"]))
                hwm = max(hwm, found.get("VmHWM", 0.0))
            time.sleep(0.1)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = [orjson.loads(line) for line in log_path.read_bytes().splitlines() if line[:1] == b"{"]
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        sys.exit(f"edsync backfill failed ({proc.returncode}):\n{tail}")
    # The reaped child's own peak (ru_maxrss): the samples may miss the last 0.1 s.
    peak = max(hwm, usage.ru_maxrss / 1024)
    return Sampled(seconds, peak, samples, lines)


def write_config(path: Path, url: str, mirror: str, page_size: int) -> None:
    path.write_text(
        f'[mirror]\nurl = "{mirror}"\n\n[log]\nlevel = "info"\nformat = "json"\n\n'
        f'[sources.{SOURCE}]\nkind = "edlink"\nbase_url = "{url}"\n'
        f'token_env = "{TOKEN_ENV}"\npage_size = {page_size}\n'
    )


def check_sqlite(db: Path, sizes: dict[str, int]) -> None:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT entity, count(*) FROM records WHERE source = ? AND NOT deleted GROUP BY entity",
            (SOURCE,),
        ).fetchall()
    held = dict(rows)
    wanted = {kind: n for kind, n in sizes.items() if n}
    if held != wanted:
        sys.exit(f"bootstrap incomplete: mirror holds {held}, the Graph serves {wanted}")


def check_url(url: str, sizes: dict[str, int]) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT entity, count(*) FROM records WHERE source = :s AND NOT deleted "
                "GROUP BY entity"
            ),
            {"s": SOURCE},
        ).all()
    engine.dispose()
    held = {entity: int(n) for entity, n in rows}
    wanted = {kind: n for kind, n in sizes.items() if n}
    if held != wanted:
        sys.exit(f"bootstrap incomplete: mirror holds {held}, the Graph serves {wanted}")


# -- the bare loop ----------------------------------------------------------------


def pages(url: str, page_size: int) -> Iterator[tuple[str, list[dict[str, Any]], float]]:
    """Every list's pages, parsed: (entity, objects, seconds to fetch and parse)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, headers=headers) as client:
        for plural, kind in PLURALS.items():
            target: str | None = f"{LIST_PREFIX}{plural}?$first={page_size}"
            while target:
                started = time.perf_counter()
                body = orjson.loads(client.get(target).content)
                yield kind, body["$data"], time.perf_counter() - started
                target = body.get("$next")


_UPSERT = (
    "INSERT INTO records (source, entity, entity_id, data, deleted, version, last_event_id, "
    "person_id, first_seen_at, changed_at, synced_at, snapshot_id) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (source, entity, entity_id) DO UPDATE SET "
    "data = excluded.data, deleted = excluded.deleted, version = excluded.version, "
    "person_id = excluded.person_id, changed_at = excluded.changed_at, "
    "synced_at = excluded.synced_at, snapshot_id = excluded.snapshot_id "
    "WHERE records.version <= excluded.version"
)
_PROGRESS = (
    "INSERT INTO checkpoints (source, updated_at, events_total, consecutive_failures, snapshot) "
    "VALUES (?, ?, 0, 0, ?) ON CONFLICT (source) DO UPDATE SET "
    "updated_at = excluded.updated_at, snapshot = excluded.snapshot"
)
_MISSING = (
    "UPDATE records SET deleted = 1, synced_at = ? WHERE source = ? AND NOT deleted "
    "AND (snapshot_id IS NULL OR snapshot_id <> ?)"
)


def run_loop(url: str, page_size: int, db: Path) -> tuple[float, float, int]:
    """The bare loop: (seconds writing, seconds in all, objects)."""
    from edsync.mirror.db import create_mirror_engine, ensure_schema
    from edsync.settings import MirrorSettings

    engine = create_mirror_engine(MirrorSettings(url=f"sqlite:///{db}"))
    ensure_schema(engine, auto_migrate=True)
    engine.dispose()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    now, snapshot = "2026-01-01T00:00:00+00:00", "bare"
    writing, count = 0.0, 0
    begun = time.perf_counter()
    for kind, data, _ in pages(url, page_size):
        started = time.perf_counter()
        rows = [
            (
                SOURCE,
                kind,
                obj["id"],
                orjson.dumps(obj).decode(),
                False,
                0,
                "snapshot",
                obj["id"] if kind == "person" else obj.get("person_id"),
                now,
                obj.get("updated_date"),
                now,
                snapshot,
            )
            for obj in data
        ]
        progress = orjson.dumps({"id": snapshot, "resume": kind}).decode()
        conn.execute("BEGIN")
        conn.executemany(_UPSERT, rows)
        conn.execute(_PROGRESS, (SOURCE, now, progress))
        conn.execute("COMMIT")
        writing += time.perf_counter() - started
        count += len(data)
    started = time.perf_counter()
    conn.execute("BEGIN")
    conn.execute(_MISSING, (now, SOURCE, snapshot))
    conn.execute("COMMIT")
    conn.close()
    ended = time.perf_counter()
    return writing + ended - started, ended - begun, count


# -- PostgreSQL -----------------------------------------------------------------------


def start_postgres(root: Path) -> tuple[str, list[str], Path]:
    """A throwaway cluster as tests/conftest.py starts one: (URL, runuser prefix, bindir)."""
    bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    found = shutil.which("pg_ctl")
    bindir = Path(os.path.realpath(found)).parent if found else (bindirs[-1] if bindirs else None)
    if bindir is None:
        sys.exit("--postgres: no PostgreSQL installed (initdb/pg_ctl)")
    run_as: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        import pwd

        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = root / "data"
    subprocess.run(
        [*run_as, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
         "-E", "UTF8", "--no-sync"],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"),
         "-o", f"-h 127.0.0.1 -p {port} -k {root}", "start"],
        check=True, capture_output=True,
    )  # fmt: skip
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", run_as, bindir


def stop_postgres(root: Path, run_as: list[str], bindir: Path) -> None:
    subprocess.run(
        [*run_as, str(bindir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "stop"],
        check=False, capture_output=True,
    )  # fmt: skip


# -- the report ---------------------------------------------------------------------


def report_edsync(label: str, total: int, edsync: Sampled) -> None:
    done = next((line for line in edsync.log if line.get("event") == "snapshot_done"), {})
    print(
        f"{label:<16} {edsync.seconds:>12.2f} s  {total / edsync.seconds:>12,.0f} objects/s"
        "  (process start to exit: HTTP + parse + apply per page + mark missing)"
    )
    print(f"  peak RSS       {edsync.peak_mb:>12.1f} MB  (VmHWM)")
    if edsync.samples:
        end = edsync.samples[-1][0]
        marks, shown = [], -1
        for at, rss in edsync.samples:
            tenth = int(at / end * 10) if end else 10
            if tenth > shown:
                marks.append(f"{rss:.0f}")
                shown = tenth
        print(f"  RSS by tenths  {' '.join(marks)} MB  (VmRSS, at each tenth of the run)")
    records, missing = done.get("records"), done.get("marked_deleted")
    print(f"  snapshot_done  records={records} marked_deleted={missing}")


def report_loop(total: int, edsync: Sampled, loop: tuple[float, float, int]) -> None:
    bare, naive, looped = loop
    if looped != total:
        sys.exit(f"the bare loop read {looped:,} objects, the Graph serves {total:,}")
    print(
        f"bare loop        {bare:>12.2f} s  {total / bare:>12,.0f} objects/s  "
        "(stdlib sqlite3 executemany, WAL + NORMAL, a transaction a page; fetch untimed)"
    )
    print(
        f"  naive          {naive:>12.2f} s  {total / naive:>12,.0f} objects/s  "
        "(the same with its httpx fetch and orjson parse timed)"
    )
    print(
        f"ratio            {bare / edsync.seconds:>12.2f}    (edsync's objects/s / the bare "
        f"loop's; {naive / edsync.seconds:.2f} against the naive one)"
    )


def check(mirror: str, db: Path, sizes: dict[str, int]) -> None:
    if mirror.startswith("sqlite"):
        check_sqlite(db, sizes)
    else:
        check_url(mirror, sizes)


def measure(args: argparse.Namespace, root: Path, url: str, mirror: str) -> None:
    sizes = counts(args.objects)
    total = sum(sizes.values())
    config, db = root / "edsync.toml", root / "edsync.db"
    write_config(config, url, mirror, args.page_size)
    edsync = run_edsync(config, root / "edsync.log")
    check(mirror, db, sizes)
    kinds = ", ".join(f"{n:,} {kind}" for kind, n in sizes.items() if n)
    print(f"objects          {total:>12,}   ({kinds})")
    shown = "SQLite (temporary file)" if mirror.startswith("sqlite") else mirror
    print(f"mirror           {shown}")
    report_edsync("edsync backfill", total, edsync)
    if args.resync:
        # The same district with people and enrollments gone: a gap's resync.
        left = counts(args.objects, args.resync)
        server, smaller = start_server(args.objects, args.resync)
        try:
            write_config(config, smaller, mirror, args.page_size)
            again = run_edsync(config, root / "resync.log", "--reset")
        finally:
            server.terminate()
            server.wait()
        check(mirror, db, left)
        served = sum(left.values())
        done = next(line for line in again.log if line.get("event") == "snapshot_done")
        if (marked := done.get("marked_deleted")) != total - served:
            sys.exit(f"the resync marked {marked} deleted, not {total - served}")
        print(f"resync: {served:,} objects served again, {total - served:,} gone upstream")
        report_edsync("backfill --reset", served, again)
    sys.stdout.flush()
    if mirror.startswith("sqlite"):
        db.unlink()
    if not args.no_loop:
        report_loop(total, edsync, run_loop(url, args.page_size, root / "bare.db"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--page-size", type=int, default=1000, help="edsync's page_size ($first)")
    parser.add_argument("--mirror", help="an empty database's URL for edsync; default SQLite")
    parser.add_argument("--postgres", action="store_true", help="a throwaway local cluster")
    parser.add_argument(
        "--resync",
        type=float,
        metavar="KEEP",
        help="then snapshot again (backfill --reset) with only this share of the people "
        "and enrollments still served, e.g. 0.9: the rest is marked deleted",
    )
    parser.add_argument("--no-loop", action="store_true", help="edsync only, no bare loop")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--keep", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.objects, args.keep)
    sys.path.insert(0, str(Path(__file__).parent))
    from _compiled import compile_edsync

    compile_edsync()
    server, url = start_server(args.objects)
    pg: tuple[str, list[str], Path] | None = None
    pg_root = Path()
    try:
        with tempfile.TemporaryDirectory(prefix="edsync-bench-") as tmp:
            mirror = args.mirror or f"sqlite:///{Path(tmp) / 'edsync.db'}"
            if args.postgres:
                # Its own directory: the postgres user cannot enter this one.
                pg_root = Path(tempfile.mkdtemp(prefix="edsync-bench-pg-"))
                pg = start_postgres(pg_root)
                mirror = pg[0]
            measure(args, Path(tmp), url, mirror)
    finally:
        server.terminate()
        server.wait()
        if pg is not None:
            stop_postgres(pg_root, pg[1], pg[2])
            shutil.rmtree(pg_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
