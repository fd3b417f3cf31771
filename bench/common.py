"""What every benchmark shares: the registry and the row it reports."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text

from muster_services.core import migrate
from muster_services.core.database import (
    Database,
    EmbeddedPostgres,
    drop_database,
    ensure_database,
    with_database,
)
from muster_services.jobs.domain import Attribute, JobSpec
from muster_services.jobs.service import JobsService
from muster_services.jobs.templates import COMMAND_LINE_TEMPLATE_ID

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Row:
    what: str
    ours: float
    peer: float | None
    peer_name: str
    unit: str

    @property
    def ratio(self) -> str:
        return f"{self.ours / self.peer:.2f}" if self.peer else "-"


Benchmark = Callable[[], list[Row]]
BENCHMARKS: dict[str, Benchmark] = {}


def median_of(runs: int, work: Callable[[], float]) -> float:
    return statistics.median(work() for _ in range(runs))


# The benchmarks' PostgreSQL: the embedded one in .data/bench, or a server of
# this machine named by BENCH_POSTGRES_URL (a role that may create databases:
# each benchmark creates its own and drops it) and BENCH_POSTGRES_DATA (its
# data folder, where the CPU figures find its postmaster's pid).
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "").strip()
POSTGRES_DATA = Path(os.environ.get("BENCH_POSTGRES_DATA", "") or ROOT / ".data/bench/postgres")
if POSTGRES_URL and not os.environ.get("BENCH_POSTGRES_DATA"):
    raise SystemExit("BENCH_POSTGRES_URL needs BENCH_POSTGRES_DATA, the server's data folder")


def postmaster_pid() -> int:
    return int((POSTGRES_DATA / "postmaster.pid").read_text().split()[0])


def postgres_pids() -> list[int]:
    """The benchmarks' PostgreSQL processes: its postmaster and every child."""
    postmaster = postmaster_pid()
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                children.append(int(stat.parent.name))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return [postmaster, *children]


@contextlib.contextmanager
def bench_database(name: str, pool_size: int = 4) -> Iterator[Database]:
    """A fresh database `name` at the head migration on the benchmarks'
    PostgreSQL, dropped afterwards (the embedded server stops with its last
    user)."""
    server = EmbeddedPostgres(ROOT / ".data" / "bench")
    if POSTGRES_URL:
        admin = POSTGRES_URL
    else:
        server.start()
        admin = server.admin_url()
    drop_database(admin, name)
    ensure_database(admin, name)
    url = with_database(admin, name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    db = Database(url, pool_size=pool_size)
    try:
        yield db
    finally:
        db.dispose()
        drop_database(admin, name)
        server.stop()


@contextlib.contextmanager
def dispatcher_process(
    db: Database, services: list[str], extra_env: dict[str, str] | None = None
) -> Iterator[tuple[str, int]]:
    """`dispatcher serve SERVICES` on `db` as its own process: (address, pid)."""
    env = {
        **os.environ,
        "MUSTER_DATABASE_URL": db.url.render_as_string(hide_password=False),
        "MUSTER_LISTEN": "127.0.0.1:0",
        "MUSTER_LOG_LEVEL": "warning",
        "MUSTER_HOOKS_DIR": str(ROOT / ".data" / "bench" / "no-hooks"),
        "MUSTER_WORKER_THREADS": "32",
        "MUSTER_DB_POOL_SIZE": "20",
        **(extra_env or {}),
    }
    log = (ROOT / ".data" / "bench" / f"dispatcher-{'-'.join(services)}.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "muster_services.cli", "serve", *services],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().rsplit(" at ", 1)[1].strip()
        yield address, proc.pid
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def idle_nodes(db: Database, count: int, prefix: str = "n") -> None:
    """`count` idle nodes with a live session (as registered agents leave
    them), named PREFIX1, PREFIX2, ..."""
    with db.transaction() as session:
        session.execute(
            text(
                "INSERT INTO nodes (name, host_name, platform, status, session_id,"
                " last_heartbeat_at) SELECT :prefix || i, :prefix || i, 'linux', 'idle',"
                " 'live', now() FROM generate_series(1, :count) AS i"
            ),
            {"prefix": prefix, "count": count},
        )


def submit_command_job(jobs: JobsService, chunks: int, name: str, **fields: Any) -> int:
    """A command-line job (/bin/true) of `chunks` one-frame chunks, queued;
    `fields`: more of its JobSpec (dependencies, priority)."""
    spec = JobSpec(
        name=name,
        owner="bench",
        template_id=COMMAND_LINE_TEMPLATE_ID,
        start_frame=1,
        end_frame=chunks,
        packet_size=1,
        attributes=(Attribute("executable", "string", "/bin/true"),),
        **fields,
    )
    return int(jobs.queue.submit_job(spec).id)


def bench_token(db: Database, name: str = "bench", role: str = "administrator") -> str:
    """A token signed with `db`'s farm key, as a login would return."""
    from muster_services.core.auth import security_for

    return security_for(db).signer.issue(name, "user", role, 3600)[0]


def proc_stat(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command's name."""
    return _fields(Path(f"/proc/{pid}/stat").read_text())


def _fields(stat: str) -> list[str]:
    return stat.rsplit(")", 1)[1].split()


def cpu_ticks(fields: list[str]) -> int:
    """User + system clock ticks of a process or thread (proc_stat's fields)."""
    return int(fields[11]) + int(fields[12])


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) of these processes so far, in seconds."""
    total = 0
    for pid in pids:
        try:
            total += cpu_ticks(proc_stat(pid))
        except FileNotFoundError:
            continue  # ended meanwhile
    return total / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int, name: str) -> float:
    """CPU time so far of a process's threads named `name` (gRPC's C core
    names its I/O thread `event_engine`; Python threads keep the process's
    name), in seconds."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:
            continue
        if stat[stat.index("(") + 1 : stat.rindex(")")] == name:
            total += cpu_ticks(_fields(stat))
    return total / os.sysconf("SC_CLK_TCK")


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB."""
    return _status_mb(pid, "VmRSS")


def private_mb(pid: int) -> float:
    """The anonymous part of a process's resident memory (RssAnon), in MB: its
    own heap and stacks. The rest of its RSS is pages of files it maps (the
    interpreter, grpc's and other libraries), shared with every process that
    maps them and resident as the page cache holds them, so it moves with
    the machine's state (after a reboot, for one) and not with the code."""
    return _status_mb(pid, "RssAnon")


def wait_registered(db: Database, count: int, timeout: float = 60.0) -> None:
    """Until `count` nodes have a session (the agents started so far registered)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.transaction() as session:
            registered = session.execute(
                text("SELECT count(*) FROM nodes WHERE session_id IS NOT NULL")
            ).scalar_one()
        if registered >= count:
            return
        time.sleep(0.2)
    raise TimeoutError(f"{count} node(s) did not register in {timeout:.0f} s")
