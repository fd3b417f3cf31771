"""An idle agent's resident memory, before and after it has rendered a chunk.

A real dispatcher (the jobs and admin services in one process, the nodes
service in another, on the embedded PostgreSQL) and a real agent (`python -m
agent`, one instance, as bench/render.py starts it). Measured, each the median
of RUNS agents started afresh:

- the agent registered and idle, before its first chunk (its template host is
  not started yet);
- the same agent idle again after one chunk of a command-line job (a chunk of
  a versioned template: the agent fetched the template's code and its warm
  template host process keeps it loaded): the agent process, the template host
  and the two summed.

Peer, same run: a bare `python -c "import grpc.aio"` process, what any Python
gRPC client costs before it does anything (the floor), and, with
BENCH_AGENT_MEMORY_PREVIOUS=DIR, the agent of another checkout (DIR: a
worktree of the previous code with its own generated stubs) measured the same
way back to back: an A/B of a change.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

from bench.common import (
    BENCHMARKS,
    Row,
    bench_database,
    dispatcher_process,
    private_mb,
    rss_mb,
    submit_command_job,
    wait_registered,
)
from muster_services.core.auth import ENROLLMENT_SECRET, farm_secret
from muster_services.core.database import Database
from muster_services.jobs.service import JobsService

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("BENCH_AGENT_MEMORY_RUNS", "3"))
PREVIOUS = os.environ.get("BENCH_AGENT_MEMORY_PREVIOUS", "")
# Registered, a heartbeat or two, the allocator settled (as bench/render.py waits).
IDLE_SECONDS = 8.0
TIMEOUT_SECONDS = 60.0


def _children(pid: int) -> list[int]:
    """The direct children of a process (the agent's template host), whichever
    of its threads started them."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


@contextmanager
def _agent(db: Database, nodes_address: str, root: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real agent from the checkout `root`, one instance, discovery off."""
    with tempfile.TemporaryDirectory() as work:
        env = {
            **os.environ,
            "MUSTER_AGENT_DISCOVERY": "off",
            "MUSTER_ENROLLMENT_SECRET": farm_secret(db, ENROLLMENT_SECRET),
        }
        if root != ROOT:
            # The other checkout's code and stubs first (this venv's .pth names ours).
            env["PYTHONPATH"] = os.pathsep.join(
                [str(root), str(root / "gen"), str(root / "gateway" / "modules")]
            )
        agent = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "muster_agent",
                "--dispatcher",
                nodes_address,
                "--work-dir",
                work,
            ],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield agent
        finally:
            agent.terminate()
            agent.wait(30)


def _wait_job(db: Database, job_id: int) -> None:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        with db.transaction() as session:
            status = session.execute(
                text("SELECT status FROM jobs WHERE id = :id"), {"id": job_id}
            ).scalar()
        if status in ("completed", "completed_with_warnings", "completed_with_errors", "failed"):
            if status != "completed":
                raise RuntimeError(f"the bench's chunk ended {status}")
            return
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} not completed in {TIMEOUT_SECONDS:.0f} s")


def _measure_agent(
    db: Database, jobs: JobsService, nodes_address: str, root: Path, run: int
) -> tuple[float, float, float, float]:
    """(idle before a chunk, agent idle after one, its template host after one,
    the private part of the first), MB."""
    with _agent(db, nodes_address, root) as agent:
        wait_registered(db, 1, TIMEOUT_SECONDS)
        time.sleep(IDLE_SECONDS)
        if agent.poll() is not None:
            raise RuntimeError(f"the agent exited with {agent.returncode}")
        before, private = rss_mb(agent.pid), private_mb(agent.pid)
        job_id = submit_command_job(jobs, 1, f"agent-memory-{root.name}-{run}")
        _wait_job(db, job_id)
        time.sleep(IDLE_SECONDS)
        after = rss_mb(agent.pid)
        hosts = _children(agent.pid)
        if len(hosts) != 1:
            raise RuntimeError(f"expected the agent's one template host, found {hosts}")
        return before, after, rss_mb(hosts[0]), private


def _floor() -> tuple[float, float]:
    """A bare Python process that imported grpc.aio: (RSS, its private part), MB."""
    bare = subprocess.Popen(
        [sys.executable, "-c", "import grpc.aio, sys; print(flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert bare.stdout is not None
        bare.stdout.readline()  # imported
        time.sleep(1.0)
        return rss_mb(bare.pid), private_mb(bare.pid)
    finally:
        assert bare.stdin is not None
        bare.stdin.close()
        bare.wait(30)


def run() -> list[Row]:
    roots = [ROOT, *([Path(PREVIOUS).resolve()] if PREVIOUS else [])]
    figures: dict[Path, list[tuple[float, float, float, float]]] = {root: [] for root in roots}
    with (
        bench_database("bench_agent_memory", pool_size=2) as db,
        dispatcher_process(db, ["jobs", "admin"]) as (jobs_address, _),
        dispatcher_process(db, ["nodes"], {"MUSTER_JOBS_ADDRESS": jobs_address}) as (
            nodes_address,
            _,
        ),
    ):
        jobs = JobsService(db)
        for n in range(RUNS):
            for root in roots:  # back to back: an A/B sees the same load
                figures[root].append(_measure_agent(db, jobs, nodes_address, root, n))
    floors = [_floor() for _ in range(RUNS)]
    floor = statistics.median(f[0] for f in floors)
    floor_private = statistics.median(f[1] for f in floors)
    load = os.getloadavg()[0]

    def median(root: Path, index: int) -> float:
        return statistics.median(f[index] for f in figures[root])

    def summed(root: Path) -> float:
        return statistics.median(f[1] + f[2] for f in figures[root])

    bare = "bare `python -c 'import grpc.aio'`"
    print(f"load average (1 min) at the end: {load:.2f}")
    rows = []
    for index, what, floor_figure, floor_name in (
        (0, "idle agent resident memory, before its first chunk", floor, bare),
        (1, "idle agent resident memory, after a chunk (template code loaded)", floor, bare),
        (2, "its warm template host process, after a chunk", floor, bare),
        # What the agent holds of its own; the rest is mapped files' pages
        # (bench/common.py private_mb), which move with the machine's state.
        (
            3,
            "of the idle agent before its first chunk: private (anonymous) memory",
            floor_private,
            f"the same of {bare}",
        ),
    ):
        # Without a previous checkout to compare with, the floor is the peer.
        value, name = (
            (median(roots[1], index), f"the previous code ({roots[1].name})")
            if PREVIOUS
            else (floor_figure, floor_name)
        )
        rows.append(Row(what, median(ROOT, index), value, name, "MB"))
    total_peer = summed(roots[1]) if PREVIOUS else None
    rows.append(
        Row(
            "agent + warm template host, summed, after a chunk",
            summed(ROOT),
            total_peer,
            f"the previous code ({roots[1].name})" if PREVIOUS else "-",
            "MB",
        )
    )
    if PREVIOUS:
        rows.append(Row(f"{bare} (the floor)", floor, None, "-", "MB"))
        rows.append(Row("the floor's private (anonymous) memory", floor_private, None, "-", "MB"))
    return rows


BENCHMARKS["agent memory"] = run
