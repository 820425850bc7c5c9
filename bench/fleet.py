"""The fleet probe (issue 32): N sources, K ``edsync run`` processes, one mirror.

    python bench/fleet.py -n 20 -k 1 --db postgresql --duration 60
    python bench/fleet.py -n 40 -k 3 --db postgresql --duration 90
    python bench/fleet.py -n 200 --db sqlite --duration 240
    python bench/fleet.py -n 1000 -k 4 --interval 30 --kill --join
    python bench/fleet.py -n 1000 --db sqlite --interval 30 --idle 60 --backfill

One simulator (``edsync_sim.Simulator`` in a child process of its own, on a
small dataset: ``--events`` DreamApply journal events, ``--people`` Edlink
people) serves every source: half of them ``dreamapply``, half ``edlink``, all
at the same URL with the simulator's default key and token, in one TOML
config. The mirror is a SQLite file or a throwaway PostgreSQL cluster
(initdb/pg_ctl, as ``tests/conftest.py`` starts one), created and removed here.
K ``edsync run`` processes start on that config (their JSON logs go to files),
and every ``--sample`` seconds the probe prints the sources current, and per
process: the sources it holds, its PostgreSQL connections, its RSS
(``VmRSS``) and threads (``Threads``) from ``/proc/<pid>/status``, its CPU
since the last sample (and the simulator's).

**Current**: a source's checkpoint (``checkpoints.cursor``, no snapshot under
way) equals the upstream head, asked of the simulator as edsync asks it (the
``head()`` of a DreamApply and of an Edlink source built from the same config:
the newest journal id under the ``byEvents`` filter, the last event of the
Edlink stream). All sources of a kind share one head, so one checkpoint query
a sample decides it. The upstream only grows when the probe says so
(``--grow`` events on each feed at the start of the kill and join phases), so
the head is exact between samples: "current" is cursor == head, not "nearly".

**Holdings**: ``holder`` from ``edsync.ops.status.collect`` (what ``edsync
status --json`` prints), when the code has it; otherwise, on PostgreSQL, the
granted advisory locks whose key is ``lock_key(source)`` (``pg_locks``),
attributed to a process by their session; on SQLite one process holds every
source. Each sample also takes the union of both views on PostgreSQL: a
source in two processes' hands in one sample is reported as double-held.

**Connections**: ``pg_stat_activity`` rows named ``edsync <pid>@<host>`` (the
``application_name`` edsync gives its sessions), or, for code that does not
name them, the rows whose ``client_port`` is a socket the process has open
(``/proc/<pid>/fd`` and ``/proc/net/tcp``). The method is printed.

Phases, each closed by ``SUMMARY`` lines: ``bootstrap`` (the processes start
together, or ``--stagger`` seconds apart; until every source is current and,
with several processes, the holdings are balanced, or ``--duration``),
``idle`` (``--idle`` seconds more: peak RSS and threads of idle sources),
``kill`` (kill -9 of the process holding most, then the feeds grow; until its
sources are current again and held by survivors), ``join`` (one more process,
then the feeds grow; until the holdings are balanced, N/W within
``--tolerance``, and every source current), ``backfill`` (``edsync backfill``
over the same config, beside the daemons or, with ``--backfill alone``, after
they stop). Times are taken at samples: exact to one ``--sample`` period.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

DREAMAPPLY_KEY = "sim-dreamapply-key"  # edsync_sim.server.DEFAULT_API_KEY
EDLINK_TOKEN = "sim-edlink-token"  # edsync_sim.server.DEFAULT_EDLINK_TOKEN
SECRETS = {"DREAMAPPLY_API_KEY": DREAMAPPLY_KEY, "EDLINK_TOKEN": EDLINK_TOKEN}
EDSYNC = [sys.executable, "-m", "edsync"]
DATABASE = "edsync_fleet"
PG_DEFAULT_MAX_CONNECTIONS = 100
SESSION = re.compile(r"^edsync (\d+)@(\S*)")  # edsync's application_name, suffix aside
LOG_EVENTS = (
    "source_lock_acquired",
    "source_lock_lost",
    "source_handed_over",
    "source_standby",
    "snapshot_started",
    "snapshot_done",
    "poll_done",
)
QUOTED = re.compile(r'"[^"]*"')  # APScheduler's messages quote the job: one key for all
ELIDED = '"…"'


# -- the simulator, in a process of its own ----------------------------------


def serve_simulator(events: int, people: int, seed: int) -> int:
    """The child: serve, print the URL, then grow the feeds on ``grow N`` lines
    from stdin (answering ``grown <journal length> <edlink events>``) until EOF."""
    from edsync_sim import Simulator

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it, by closing stdin
    sim = Simulator(events=events, seed=seed, edlink_people=people).start()
    count = sim.edlink.events_count  # builds the Edlink graph before the first client
    print(f"url {sim.url} {len(sim.journal)} {count}", flush=True)
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["grow"]:
            n = int(words[1])
            sim.journal.append(n)
            sim.edlink.append(n)
            print(f"grown {len(sim.journal)} {sim.edlink.events_count}", flush=True)
    sim.stop()
    return 0


class SimulatorProcess:
    def __init__(self, args: argparse.Namespace, log: Path) -> None:
        self.log = log.open("wb")
        command = [sys.executable, __file__, "--serve-simulator", "--events", str(args.events)]
        command += ["--people", str(args.people), "--seed", str(args.seed)]
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            start_new_session=True,
        )
        words = self._answer().split()
        if words[:1] != ["url"]:
            raise RuntimeError(f"simulator did not start: {words} (see {log})")
        self.url = words[1]
        print(
            f"simulator: {self.url} (pid {self.proc.pid}): {words[2]} DreamApply journal "
            f"events, {words[3]} Edlink events"
        )

    def _answer(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def grow(self, n: int) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"grow {n}\n")
        self.proc.stdin.flush()
        return self._answer().strip()

    def stop(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


# -- the mirror ----------------------------------------------------------------


def _pg_bindir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not candidates:
        raise SystemExit("PostgreSQL is not installed (initdb/pg_ctl not found)")
    return candidates[-1].parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """A throwaway PostgreSQL cluster (tests/conftest.py's settings) and one database."""

    def __init__(self, max_connections: int) -> None:
        self.bindir = _pg_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="edsync-fleet-pg-"))
        self.run_as: list[str] = []
        if os.geteuid() == 0:  # postgres refuses to run as root
            import pwd

            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.run_as = ["runuser", "-u", "postgres", "--"]
        self.data, self.port = self.root / "data", _free_port()
        self.max_connections = max_connections
        self.started = False

    def start(self) -> str:
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off "
            f"-c max_connections={self.max_connections}"
        )
        subprocess.run(
            [*self.run_as, str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust",
             "-U", "postgres", "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(
            [*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w",
             "-l", str(self.root / "log"), "-o", options, "start"],
            check=True, capture_output=True,
        )  # fmt: skip
        self.started = True
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
            shown = conn.execute("SHOW max_connections").fetchone()
        print(
            f"postgresql: {self.dsn(DATABASE)} (throwaway cluster in {self.root}), "
            f"max_connections = {shown[0] if shown else '?'}"
        )
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.started:
            subprocess.run(
                [*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m",
                 "immediate", "stop"],
                check=False, capture_output=True,
            )  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


def write_config(path: Path, url: str, mirror: str, args: argparse.Namespace) -> dict[str, str]:
    """The fleet's config: N sources, alternating kinds; returns name -> kind."""
    interval = f'interval = "{args.interval:g}s"'
    lines = [
        "[mirror]",
        f'url = "{mirror}"',
        "",
        "[log]",
        'format = "json"',
        f'level = "{args.log_level}"',
        "",
    ]
    kinds: dict[str, str] = {}
    width = len(str(args.sources))
    for i in range(args.sources):
        if i % 2 == 0:
            name = f"da{i // 2 + 1:0{width}d}"
            kinds[name] = "dreamapply"
            lines += [
                f"[sources.{name}]",
                'kind = "dreamapply"',
                f'base_url = "{url}"',
                'api_key_env = "DREAMAPPLY_API_KEY"',
                "max_requests_per_minute = 0",
                f"snapshot = {'false' if args.no_snapshot else 'true'}",
                interval,
                "",
            ]
        else:
            name = f"el{i // 2 + 1:0{width}d}"
            kinds[name] = "edlink"
            lines += [
                f"[sources.{name}]",
                'kind = "edlink"',
                f'base_url = "{url}"',
                'token_env = "EDLINK_TOKEN"',
                "page_size = 50",
                interval,
                "",
            ]
    path.write_text("\n".join(lines))
    return kinds


def lock_key(source: str) -> int:
    """edsync.run.sharing.lock_key (imported when it exists; this copy otherwise)."""
    try:
        from edsync.run.sharing import lock_key as edsync_lock_key
    except ImportError:
        digest = hashlib.sha256(f"edsync:source:{source}".encode()).digest()
        return int.from_bytes(digest[:8], "big") >> 1
    return edsync_lock_key(source)


# -- one process: /proc and its log ---------------------------------------------


@dataclass
class Daemon:
    label: str
    proc: subprocess.Popen[bytes]
    log: Path
    started: float
    killed: bool = False
    offset: int = 0
    rest: bytes = b""
    events: Counter[str] = field(default_factory=Counter)
    problems: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    reported: tuple[Counter[str], Counter[str]] = field(
        default_factory=lambda: (Counter(), Counter())
    )

    def since_reported(self) -> tuple[Counter[str], Counter[str]]:
        """Log counts since the last call (one phase's)."""
        events, problems = self.events - self.reported[0], self.problems - self.reported[1]
        self.reported = (self.events.copy(), self.problems.copy())
        return events, problems

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def read_log(self) -> None:
        """New log lines: counts of the coordination events and of warnings and errors."""
        try:
            with self.log.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:
            return
        self.offset += len(chunk)
        *lines, self.rest = (self.rest + chunk).split(b"\n")
        for raw in lines:
            try:
                line = orjson.loads(raw)
            except orjson.JSONDecodeError:
                self.problems["(not JSON)"] += 1
                self.examples.setdefault("(not JSON)", raw.decode(errors="replace")[:160])
                continue
            if not isinstance(line, dict):
                continue
            event = str(line.get("event"))
            if event in LOG_EVENTS:
                self.events[event] += 1
            if line.get("level") in ("warning", "error", "critical"):
                key = f"{line.get('level')} {QUOTED.sub(ELIDED, event)[:100]}"
                self.problems[key] += 1
                detail = str(line.get("error") or line.get("exception") or "").strip()
                self.examples.setdefault(key, detail.splitlines()[-1][:160] if detail else "")


def proc_status(pid: int) -> tuple[float | None, int | None]:
    """(VmRSS in MB, Threads) from /proc/<pid>/status; Nones once it is gone."""
    rss = threads = None
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None, None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss, threads


def proc_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tcp_ports(remote_port: int) -> dict[int, int]:
    """Established TCP sockets to ``remote_port``: inode -> local port."""
    found: dict[int, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) < 10 or fields[3] != "01":
                continue
            if int(fields[2].rsplit(":", 1)[1], 16) == remote_port:
                found[int(fields[9])] = int(fields[1].rsplit(":", 1)[1], 16)
    return found


def socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


# -- samples ---------------------------------------------------------------------


@dataclass
class ProcSample:
    held: int | None
    conns: int | None
    conns_by_port: int | None
    rss: float | None
    threads: int | None
    cpu: float | None  # % of one core since the previous sample


@dataclass
class Sample:
    t: float  # seconds since the phase began
    current: set[str]
    synced: int  # sources with a cursor (bootstrapped at least once)
    holders: dict[str, set[int]]  # the union of the views: a source -> pids
    held_by: dict[int, set[str]]  # the primary view: a pid -> sources
    procs: dict[int, ProcSample]
    other_conns: int | None
    took: float  # seconds the sample took
    sim_cpu: float | None  # the simulator's CPU, % of one core


@dataclass
class PhaseStats:
    conns: Counter[int] = field(default_factory=Counter)  # pid -> max
    rss: dict[int, float] = field(default_factory=dict)
    threads: Counter[int] = field(default_factory=Counter)

    def add(self, sample: Sample) -> None:
        for pid, p in sample.procs.items():
            if p.conns is not None:
                self.conns[pid] = max(self.conns[pid], p.conns)
            if p.rss is not None:
                self.rss[pid] = max(self.rss.get(pid, 0.0), p.rss)
            if p.threads is not None:
                self.threads[pid] = max(self.threads[pid], p.threads)


class Fleet:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.env = {**os.environ, **SECRETS}
        os.environ.update(SECRETS)
        self.config_path = work / "fleet.toml"
        self.daemons: list[Daemon] = []
        self.kinds: dict[str, str] = {}
        self.keys: dict[int, str] = {}
        self.cluster: Cluster | None = None
        self.sim: SimulatorProcess | None = None
        self.engine: Any = None
        self.config: Any = None
        self.heads: dict[str, Any] = {}  # kind -> an edsync source, for head()
        self.holder_method = args.holders
        self.conn_method = "- (SQLite)"
        self.double: list[tuple[str, float, str, list[int]]] = []
        self.phase = ""
        self.last: Sample | None = None
        self.cpu: dict[int, tuple[float, float]] = {}  # pid -> (when, CPU seconds)

    # -- set-up ----------------------------------------------------------------

    def start(self) -> None:
        args = self.args
        self.sim = SimulatorProcess(args, self.work / "simulator.log")
        if args.db == "postgresql":
            processes = args.processes + (1 if args.join else 0)
            # Today's code: one pool of 5 + 10 overflow per process, plus the probe's
            # and a backfill's connections.
            needed = processes * args.connections_per_process + 25
            max_connections = args.max_connections or max(PG_DEFAULT_MAX_CONNECTIONS, needed)
            self.cluster = Cluster(max_connections)
            mirror = self.cluster.start()
            if max_connections > PG_DEFAULT_MAX_CONNECTIONS:
                print(
                    f"postgresql: max_connections raised from {PG_DEFAULT_MAX_CONNECTIONS} "
                    f"to {max_connections} ({processes} processes x "
                    f"{args.connections_per_process} + 25)"
                )
        else:
            mirror = f"sqlite:///{self.work / 'mirror.db'}"
            print(f"sqlite: {self.work / 'mirror.db'}")
        self.kinds = write_config(self.config_path, self.sim.url, mirror, args)
        self.keys = {lock_key(name): name for name in self.kinds}
        from edsync import sources
        from edsync.config import load_config

        self.config = load_config(self.config_path)
        for kind in ("dreamapply", "edlink"):
            name = next((n for n, k in self.kinds.items() if k == kind), None)
            if name is not None:
                self.heads[kind] = sources.create(self.config.sources[name])
        counts = Counter(self.kinds.values())
        print(
            f"config: {self.config_path}: {len(self.kinds)} sources ({counts['dreamapply']} "
            f"dreamapply, {counts['edlink']} edlink), interval {args.interval:g} s"
        )

    def spawn(self) -> Daemon:
        label = f"p{len(self.daemons) + 1}"
        log = self.work / f"{label}.log"
        with log.open("wb") as handle:
            proc = subprocess.Popen(
                [*EDSYNC, "run", "-c", str(self.config_path)],
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        daemon = Daemon(label, proc, log, time.monotonic())
        self.daemons.append(daemon)
        print(f"started {label}: edsync run, pid {proc.pid}, log {log}")
        return daemon

    def _open_engine(self) -> bool:
        if self.engine is not None:
            return True
        from edsync.mirror.db import create_mirror_engine

        try:
            self.engine = create_mirror_engine(
                self.config.mirror, str(self.config_path), access="read"
            )
        except Exception:  # noqa: BLE001 - no mirror yet: the daemons create it
            return False
        return True

    # -- one sample --------------------------------------------------------------

    def heads_now(self) -> dict[str, str | None]:
        return {kind: source.head() for kind, source in self.heads.items()}

    def sample(self, began: float) -> Sample:
        clock = time.monotonic()
        heads = self.heads_now()
        rows, activity, locks = self._query()
        current = {
            name
            for name, cursor, snapshot in rows
            if name in self.kinds
            and snapshot is None
            and cursor is not None
            and cursor == heads.get(self.kinds[name])
        }
        synced = sum(1 for _, cursor, _ in rows if cursor is not None)
        by_port, mine = self._ports()
        backend_pid = self._backend_owner(activity, by_port)
        conns, conns_by_port, other = self._connections(activity, by_port, mine)
        status_view = self._status_holders() if self.holder_method in ("auto", "status") else None
        lock_view: dict[str, set[int]] = {}
        for backend, key in locks:
            name = self.keys.get(key)
            owner = backend_pid.get(backend)
            if name is not None and owner is not None:
                lock_view.setdefault(name, set()).add(owner)
        holders, held_by = self._holdings(status_view, lock_view)
        procs = {}
        for d in self.daemons:
            if d.killed or not d.alive:
                continue
            rss, threads = proc_status(d.pid)
            cpu = self._cpu(d.pid)
            procs[d.pid] = ProcSample(
                held=len(held_by.get(d.pid, ())) if held_by is not None else None,
                conns=conns.get(d.pid, 0) if conns is not None else None,
                conns_by_port=conns_by_port.get(d.pid, 0) if conns_by_port is not None else None,
                rss=rss,
                threads=threads,
                cpu=cpu,
            )
            d.read_log()
        sample = Sample(
            time.monotonic() - began,
            current,
            synced,
            holders,
            held_by or {},
            procs,
            other,
            time.monotonic() - clock,
            self._cpu(self.sim.proc.pid) if self.sim else None,
        )
        for name, pids in holders.items():
            if len(pids) > 1:
                self.double.append((self.phase, sample.t, name, sorted(pids)))
        self.last = sample
        return sample

    def _cpu(self, pid: int) -> float | None:
        """CPU used since this pid's previous sample, in % of one core."""
        now, used = time.monotonic(), proc_cpu(pid)
        before = self.cpu.get(pid)
        if used is None:
            return None
        self.cpu[pid] = (now, used)
        if before is None or now <= before[0]:
            return None
        return 100 * (used - before[1]) / (now - before[0])

    def _query(self) -> tuple[list[Any], list[Any], list[Any]]:
        """Checkpoints; and on PostgreSQL the client sessions and advisory locks."""
        if not self._open_engine():
            return [], [], []
        rows: list[Any] = []
        activity: list[Any] = []
        locks: list[Any] = []
        try:
            with self.engine.connect() as conn:
                rows = list(
                    conn.exec_driver_sql("SELECT source, cursor, snapshot FROM checkpoints")
                )
        except Exception:  # noqa: BLE001 - no schema yet
            rows = []
        if self.engine.dialect.name != "postgresql":
            return rows, activity, locks
        with self.engine.connect() as conn:
            activity = list(
                conn.exec_driver_sql(
                    "SELECT pid, application_name, client_port FROM pg_stat_activity "
                    "WHERE backend_type = 'client backend' AND datname = current_database() "
                    "AND pid <> pg_backend_pid()"
                )
            )
            locks = list(
                conn.exec_driver_sql(
                    "SELECT l.pid, (l.classid::bigint << 32) | l.objid::bigint FROM pg_locks l "
                    "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND "
                    "l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            )
            conn.rollback()
        return rows, activity, locks

    def _ports(self) -> tuple[dict[int, int], set[int]]:
        """Local port -> daemon pid for sockets to the PostgreSQL port; the probe's own ports."""
        if self.cluster is None:
            return {}, set()
        sockets = tcp_ports(self.cluster.port)
        by_port: dict[int, int] = {}
        for d in self.daemons:
            if d.alive:
                for inode in socket_inodes(d.pid) & sockets.keys():
                    by_port[sockets[inode]] = d.pid
        mine = {sockets[i] for i in socket_inodes(os.getpid()) & sockets.keys()}
        return by_port, mine

    def _backend_owner(self, activity: list[Any], by_port: dict[int, int]) -> dict[int, int]:
        """PostgreSQL backend pid -> edsync pid (application_name first, client port else)."""
        owner: dict[int, int] = {}
        for backend, name, port in activity:
            match = SESSION.match(name or "")
            if match:
                owner[backend] = int(match[1])
            elif port in by_port:
                owner[backend] = by_port[port]
        return owner

    def _connections(
        self, activity: list[Any], by_port: dict[int, int], mine: set[int]
    ) -> tuple[dict[int, int] | None, dict[int, int] | None, int | None]:
        if self.cluster is None:
            return None, None, None
        by_name: Counter[int] = Counter()
        by_client: Counter[int] = Counter()
        other = 0
        pids = {d.pid for d in self.daemons}
        named = False
        for _backend, name, port in activity:
            match = SESSION.match(name or "")
            if match:
                named = True
                if int(match[1]) in pids:
                    by_name[int(match[1])] += 1
            if port in by_port:
                by_client[by_port[port]] += 1
            elif port not in mine and not (match and int(match[1]) == os.getpid()):
                other += 1
        if named:
            self.conn_method = "application_name 'edsync <pid>@<host>' (client ports beside)"
            return dict(by_name), dict(by_client), other
        self.conn_method = "client ports of the process's sockets (no application_name)"
        return dict(by_client), None, other

    def _status_holders(self) -> dict[str, set[int]] | None:
        """``holder`` per source from ``edsync status``'s report, or None (and the
        fallback from now on) when the code does not report it."""
        if not self._open_engine():
            return None
        from edsync.ops.status import collect

        try:
            report = collect(self.config, self.engine)
        except Exception:  # noqa: BLE001 - no schema yet; try again next sample
            return None
        view: dict[str, set[int]] = {}
        for row in report.get("sources", []):
            if "holder" not in row:
                if self.holder_method == "auto":
                    self.holder_method = "locks"
                return None
            holder = row["holder"]
            if isinstance(holder, dict) and holder.get("pid") is not None:
                view[row["source"]] = {int(holder["pid"])}
        if self.holder_method == "auto":
            self.holder_method = "status"
        return view

    def _holdings(
        self, status_view: dict[str, set[int]] | None, lock_view: dict[str, set[int]]
    ) -> tuple[dict[str, set[int]], dict[int, set[str]] | None]:
        alive = [d for d in self.daemons if d.alive and not d.killed]
        if status_view is not None:
            primary = status_view
        elif self.cluster is not None:
            primary = lock_view
        else:  # SQLite: the one process holds everything
            primary = {name: {alive[0].pid} for name in self.kinds} if alive else {}
        held_by: dict[int, set[str]] = {}
        for name, pids in primary.items():
            for pid in pids:
                held_by.setdefault(pid, set()).add(name)
        union = {name: set(pids) for name, pids in primary.items()}
        for name, pids in lock_view.items():
            union.setdefault(name, set()).update(pids)
        return union, held_by

    @property
    def holder_note(self) -> str:
        if self.holder_method == "status":
            extra = " and pg_locks (union, for double holding)" if self.cluster else ""
            return f"holder from edsync status{extra}"
        if self.cluster is not None:
            return "advisory locks in pg_locks keyed lock_key(source) (no holder in status)"
        return "one SQLite process holds every source (no holder in status)"

    # -- printing ----------------------------------------------------------------

    def show(self, s: Sample) -> None:
        n = len(self.kinds)
        held = sum(1 for pids in s.holders.values() if pids)
        doubled = sum(1 for pids in s.holders.values() if len(pids) > 1)
        other = "" if s.other_conns is None else f"  other conns {s.other_conns}"
        print(
            f"[{self.phase} +{s.t:6.1f} s] current {len(s.current)}/{n}  synced {s.synced}/{n}"
            f"  held {held}/{n}  double-held {doubled}{other}  simulator cpu {_pct(s.sim_cpu)}"
            f"  load {os.getloadavg()[0]:.1f}  (sample {s.took:.2f} s)"
        )
        for d in self.daemons:
            p = s.procs.get(d.pid)
            if p is None:
                state = "killed" if d.killed else f"exited {d.proc.returncode}"
                print(f"    {d.label} pid {d.pid:>7}  {state}")
                continue
            conns = "-" if p.conns is None else str(p.conns)
            if p.conns_by_port is not None and p.conns_by_port != p.conns:
                conns += f" [ports {p.conns_by_port}]"
            print(
                f"    {d.label} pid {d.pid:>7}  held {_n(p.held):>5}  conns {conns:>4}  "
                f"rss {_mb(p.rss):>7} MB  threads {_n(p.threads):>4}  cpu {_pct(p.cpu):>4}"
            )

    def processes_line(self, stats: PhaseStats, s: Sample) -> str:
        parts = []
        for d in self.daemons:
            p = s.procs.get(d.pid)
            if p is None and d.pid not in stats.rss:
                continue
            held = "dead" if p is None else f"holds {_n(p.held)}"
            conns = f", conns max {stats.conns[d.pid]}" if self.cluster else ""
            parts.append(
                f"{d.label} (pid {d.pid}) {held}{conns}, rss max "
                f"{_mb(stats.rss.get(d.pid))} MB, threads max {stats.threads[d.pid]}"
            )
        return "; ".join(parts)

    def log_lines(self) -> None:
        """Per process, what its log said since the last report: coordination events,
        and the commonest warnings and errors with an example of each."""
        for d in self.daemons:
            d.read_log()
            events, problems = d.since_reported()
            if d.killed and not events and not problems:
                continue
            counts = ", ".join(f"{k} {v}" for k, v in sorted(events.items()))
            print(f"    {d.label} log: {counts or 'no coordination events'}"
                  f"{'' if problems else ', no warnings or errors'}")  # fmt: skip
            for key, count in problems.most_common(4):
                example = d.examples.get(key, "")
                print(f"        {count} x {key}" + (f": {example}" if example else ""))

    # -- phases --------------------------------------------------------------------

    def watch(
        self, phase: str, began: float, timeout: float, done: Callable[[Sample], bool]
    ) -> tuple[Sample, PhaseStats, bool]:
        """Sample until ``done`` or the timeout; the last sample, the phase's maxima, done?"""
        self.phase = phase
        stats = PhaseStats()
        while True:
            s = self.sample(began)
            stats.add(s)
            self.show(s)
            if done(s):
                return s, stats, True
            if s.t >= timeout:
                return s, stats, False
            nxt = began + (int(s.t / self.args.sample) + 1) * self.args.sample
            time.sleep(max(0.0, min(nxt, began + timeout) - time.monotonic()))

    def intervals(self, seconds: float | None) -> str:
        if seconds is None:
            return "-"
        return f"{seconds:.1f} s ({seconds / self.args.interval:.1f} intervals)"

    def balance(self, s: Sample) -> tuple[int, int]:
        """The holdings every live process should be within: N/W -+ the tolerance,
        widened to whole sources (40 over 3: 12 to 15; 1 000 over 5: 180 to 220)."""
        live = max(1, sum(1 for p in s.procs.values() if p.held is not None))
        share = len(self.kinds) / live
        tol = self.args.tolerance * share
        return math.floor(share - tol + 1e-9), math.ceil(share + tol - 1e-9)

    def balanced(self, s: Sample) -> bool:
        """Every source held by exactly one process, each process within ``balance``."""
        low, high = self.balance(s)
        live = [p.held for p in s.procs.values() if p.held is not None]
        single = all(len(s.holders.get(name, ())) == 1 for name in self.kinds)
        return bool(live) and single and all(low <= held <= high for held in live)

    def bootstrap(self) -> bool:
        args, n = self.args, len(self.kinds)
        began = time.monotonic()
        for i in range(args.processes):
            if i and args.stagger:
                time.sleep(args.stagger)
            self.spawn()
        first: dict[str, float] = {}
        marks: dict[str, float] = {}

        def done(s: Sample) -> bool:
            for name in s.current:
                first.setdefault(name, s.t)
            if len(s.current) == n:
                marks.setdefault("all", s.t)
            if self.balanced(s):
                marks.setdefault("balanced", s.t)
            return {"all", "balanced"} <= marks.keys()

        s, stats, ok = self.watch("bootstrap", began, args.duration, done)
        if "all" in marks:
            when = f"all current after {self.intervals(marks['all'])}"
        else:
            when = f"{len(s.current)}/{n} current after {s.t:.1f} s (timeout)"
        low, high = self.balance(s)
        balance = ""
        if args.processes > 1:
            balance = (
                f"; holdings balanced ({low} to {high} each) after "
                f"{self.intervals(marks.get('balanced'))}"
            )
        spread = ""
        if first:
            times = sorted(first.values())
            median = statistics.median(times)
            spread = (
                f"; first current ({len(times)} sources): median {median:.1f} s, "
                f"last {times[-1]:.1f} s"
            )
        self.summary(
            "bootstrap",
            f"{n} sources ({self._kinds_text()}), {args.processes} x edsync run, {args.db}, "
            f"interval {args.interval:g} s: {when}{balance}; {s.synced}/{n} ever synced{spread}",
            stats,
            s,
        )
        return ok

    def idle(self) -> None:
        n = len(self.kinds)
        began = time.monotonic()
        s, stats, _ = self.watch("idle", began, self.args.idle, lambda s: False)
        peak = max(stats.rss.values(), default=0.0)
        threads = max(stats.threads.values(), default=0)
        self.summary(
            "idle",
            f"{self.args.idle:g} s more: {len(s.current)}/{n} current at the end, peak RSS "
            f"{peak:.1f} MB, max threads {threads} (per process)",
            stats,
            s,
        )

    def kill(self) -> None:
        assert self.last is not None
        alive = [d for d in self.daemons if d.alive and not d.killed]
        if len(alive) < 2:
            print("kill: needs at least 2 live processes; skipped")
            return
        held_by = self.last.held_by
        victim = max(alive, key=lambda d: len(held_by.get(d.pid, ())))
        theirs = set(held_by.get(victim.pid, ())) or set(self.kinds)
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        victim.killed = True
        began = time.monotonic()
        grown = self.sim.grow(self.args.grow) if self.sim else ""
        print(
            f"kill -9 {victim.label} (pid {victim.pid}), which held {len(theirs)}; "
            f"feeds grew by {self.args.grow} ({grown})"
        )
        marks: dict[str, float] = {}
        survivors = [d.pid for d in alive if d is not victim]

        def done(s: Sample) -> bool:
            if theirs <= s.current:
                marks.setdefault("current", s.t)
            if all(s.holders.get(name, set()) & set(survivors) for name in theirs):
                marks.setdefault("held", s.t)
            if len(s.current) == len(self.kinds):
                marks.setdefault("all", s.t)
            if self.balanced(s):
                marks.setdefault("balanced", s.t)
            return {"current", "all", "held"} <= marks.keys()

        s, stats, _ = self.watch("kill", began, self.args.phase_timeout, done)
        spread = Counter(
            pid for name in theirs for pid in s.holders.get(name, set()) if pid in survivors
        )
        spread_text = ", ".join(f"{self._label(pid)} +{spread[pid]}" for pid in survivors)
        low, high = self.balance(s)
        late = ""
        if "current" not in marks:
            late = f" (timeout: {len(theirs & s.current)}/{len(theirs)} of its sources current)"
        self.summary(
            "kill",
            f"kill -9 of {victim.label}, which held {len(theirs)} of {len(self.kinds)}: its "
            f"sources current again after {self.intervals(marks.get('current'))}, all held "
            f"by survivors after {self.intervals(marks.get('held'))} ({spread_text}), "
            f"every source current after {self.intervals(marks.get('all'))}{late}; "
            f"survivors balanced ({low} to {high} each) after "
            f"{self.intervals(marks.get('balanced'))}",
            stats,
            s,
        )

    def join(self) -> None:
        began = time.monotonic()
        joiner = self.spawn()
        grown = self.sim.grow(self.args.grow) if self.sim else ""
        print(f"{joiner.label} joined; feeds grew by {self.args.grow} ({grown})")
        n = len(self.kinds)
        marks: dict[str, float] = {}

        def done(s: Sample) -> bool:
            if self.balanced(s):
                marks.setdefault("balanced", s.t)
            mine = s.procs.get(joiner.pid)
            if mine is not None and mine.held:
                marks.setdefault("first", s.t)
            if len(s.current) == n:
                marks.setdefault("all", s.t)
            return {"balanced", "all"} <= marks.keys()

        s, stats, _ = self.watch("join", began, self.args.phase_timeout, done)
        low, high = self.balance(s)
        holdings = ", ".join(f"{self._label(pid)} {_n(p.held)}" for pid, p in s.procs.items())
        self.summary(
            "join",
            f"{joiner.label} joined {len(s.procs) - 1} live processes: holdings balanced "
            f"({low} to {high} each) after {self.intervals(marks.get('balanced'))}, first "
            f"source taken by it after {self.intervals(marks.get('first'))}, every source "
            f"current after {self.intervals(marks.get('all'))}; holdings at the end: {holdings}",
            stats,
            s,
        )

    def backfill(self, alone: bool) -> None:
        if alone:
            self.stop_daemons()
        log = self.work / "backfill.log"
        began = time.monotonic()
        with log.open("wb") as handle:
            proc = subprocess.Popen(
                [*EDSYNC, "backfill", "-c", str(self.config_path)],
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
            code, rusage = _wait4(proc, self.args.backfill_timeout)
        seconds = time.monotonic() - began
        where = "after the daemons stopped" if alone else "beside the running daemons"
        peak = f", peak RSS {rusage.ru_maxrss / 1024:.1f} MB" if rusage else ""
        print(
            f"SUMMARY backfill: edsync backfill over {len(self.kinds)} sources, {where}: "
            f"exit {code} in {seconds:.1f} s{peak} (log {log})"
        )
        if code != 0:
            tail = log.read_bytes().decode(errors="replace").splitlines()[-5:]
            for line in tail:
                print(f"    {line[:200]}")
        self.phase = "backfill"
        s = self.sample(began)
        self.show(s)
        print(f"SUMMARY backfill after: {len(s.current)}/{len(self.kinds)} sources current, "
              f"{s.synced} ever synced")  # fmt: skip

    def summary(self, phase: str, text: str, stats: PhaseStats, s: Sample) -> None:
        print(f"SUMMARY {phase}: {text}")
        print(f"SUMMARY {phase} processes: {self.processes_line(stats, s)}")
        doubled = [d for d in self.double if d[0] == phase]
        double = (
            f"{len(doubled)} source-samples held by two processes (first: {doubled[0][2]} at "
            f"+{doubled[0][1]:.1f} s by pids {doubled[0][3]})"
            if doubled
            else "no source held by two processes in any sample"
        )
        print(
            f"SUMMARY {phase} method: {self.holder_note}; connections by {self.conn_method}; "
            f"{double}; load average {os.getloadavg()[1]:.1f} (5 min)"
        )
        self.log_lines()

    def stop_daemons(self) -> None:
        live = [d for d in self.daemons if d.alive]
        began = time.monotonic()
        for d in live:
            d.proc.send_signal(signal.SIGTERM)
        for d in live:
            try:
                code = d.proc.wait(timeout=max(0.1, began + 20 - time.monotonic()))
                print(
                    f"stop: {d.label} (pid {d.pid}) exit {code} after "
                    f"{time.monotonic() - began:.1f} s"
                )
            except subprocess.TimeoutExpired:
                d.proc.kill()
                d.proc.wait()
                print(f"stop: {d.label} (pid {d.pid}) still running 20 s after SIGTERM: killed")

    def close(self) -> None:
        for d in self.daemons:
            if d.alive:
                d.proc.kill()
                d.proc.wait()
        for source in self.heads.values():
            with contextlib.suppress(Exception):
                source.close()
        if self.engine is not None:
            self.engine.dispose()
        if self.sim is not None:
            self.sim.stop()
        if self.cluster is not None:
            self.cluster.stop()

    def _label(self, pid: int) -> str:
        return next((d.label for d in self.daemons if d.pid == pid), f"pid {pid}")

    def _kinds_text(self) -> str:
        counts = Counter(self.kinds.values())
        return f"{counts['edlink']} edlink, {counts['dreamapply']} dreamapply"


def _wait4(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, Any]:
    """Exit code and rusage (for the peak RSS); killed after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, rusage
        time.sleep(0.2)
    proc.kill()
    _, status, rusage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    print(f"backfill: still running after {timeout:g} s: killed")
    return proc.returncode, rusage


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def parse_args(argv: Iterable[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="\n\n".join((__doc__ or "").split("\n\n")[:2]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-n", "--sources", type=int, default=20, help="half edlink, half dreamapply")
    p.add_argument("-k", "--processes", type=int, default=1, help="edsync run processes")
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    p.add_argument("--interval", type=float, default=10.0, help="the sources' interval, s")
    p.add_argument("--duration", type=float, help="bootstrap timeout, s (6 intervals, >= 60)")
    p.add_argument("--phase-timeout", type=float, help="kill/join timeout, s (6 intervals, >= 60)")
    p.add_argument("--idle", type=float, default=0.0, help="sample this long after bootstrap")
    p.add_argument("--kill", action="store_true", help="kill -9 one process, measure takeover")
    p.add_argument(
        "--join",
        action="store_true",
        help="start one more (after --kill if given), measure the rebalance",
    )
    p.add_argument(
        "--backfill",
        nargs="?",
        const="beside",
        choices=["beside", "alone"],
        help="run edsync backfill over the config at the end (beside the daemons, or alone)",
    )
    p.add_argument("--backfill-timeout", type=float, default=900.0)
    p.add_argument("--grow", type=int, default=5, help="events each feed grows by (kill, join)")
    p.add_argument("--sample", type=float, default=3.0, help="seconds between samples")
    p.add_argument("--stagger", type=float, default=0.0, help="seconds between process starts")
    p.add_argument("--tolerance", type=float, default=0.10, help="balanced: N/W within this")
    p.add_argument("--events", type=int, default=200, help="DreamApply journal events")
    p.add_argument("--people", type=int, default=20, help="Edlink people (5 events each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-snapshot", action="store_true", help="DreamApply snapshot = false")
    p.add_argument("--holders", choices=["auto", "status", "locks"], default="auto")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--max-connections", type=int, help="PostgreSQL's (default: as needed)")
    p.add_argument(
        "--connections-per-process",
        type=int,
        default=15,
        help="for sizing max_connections (SQLAlchemy's default pool: 5 + 10 overflow)",
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, config)")
    p.add_argument("--serve-simulator", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(None if argv is None else list(argv))
    floor = max(60.0, 6 * args.interval)
    args.duration = args.duration or floor
    args.phase_timeout = args.phase_timeout or floor
    if args.db == "sqlite" and (args.processes != 1 or args.kill or args.join):
        p.error("SQLite has one writer: --processes 1, no --kill or --join")
    return args


def main() -> int:
    args = parse_args()
    if args.serve_simulator:
        return serve_simulator(args.events, args.people, args.seed)
    import edsync

    print(f"edsync {edsync.__version__} from {Path(edsync.__file__).parent}")
    work = Path(tempfile.mkdtemp(prefix="edsync-fleet-"))
    fleet = Fleet(args, work)
    signal.signal(signal.SIGTERM, _interrupt)  # clean up (processes, cluster) on SIGTERM too
    try:
        fleet.start()
        fleet.bootstrap()
        if args.idle:
            fleet.idle()
        if args.kill:
            fleet.kill()
        if args.join:
            fleet.join()
        if args.backfill:
            fleet.backfill(alone=args.backfill == "alone")
        fleet.stop_daemons()
        fleet.log_lines()
    except KeyboardInterrupt:
        print("interrupted")
    finally:
        fleet.close()
        if args.keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
