"""A nodes-service replica's resident memory per idle agent stream.

A real dispatcher (the jobs and admin services in one process, one nodes
service replica in another, on the embedded PostgreSQL) and the simulated
nodes of bench/render.py (`SimulatedNode`: the real agent protocol, one
grpc.aio stream each, every stream on one channel as the render bench opens
them), registered in waves and left idle (heartbeating). Measured: the
replica's resident memory with 0 streams, then with each of STREAM_WAVES open
(a few seconds after the wave's registrations, as bench/render.py waits), and
the memory per 1,000 streams from the last wave; then, over STREAM_CPU_SECONDS
with the last wave idle, the CPU the replica spends on those streams (their
heartbeats and its own periodic work), with the part of gRPC's I/O thread.

Peer, with BENCH_STREAM_MEMORY_PREVIOUS=DIR: the nodes service of another
checkout (DIR: a worktree of the previous code with its own .venv and stubs)
measured the same way right after (an A/B of a change).

STREAM_MEMORY_TRACE=1 also prints the replica's top tracemalloc lines (by
file and line) at the last wave (tracing slows it and costs memory itself:
those figures are not the ones reported).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc.aio

from bench.common import (
    BENCHMARKS,
    Row,
    bench_database,
    cpu_seconds,
    rss_mb,
    thread_cpu_seconds,
)
from muster_services.core.auth import security_for
from muster_services.core.database import Database

ROOT = Path(__file__).resolve().parent.parent
WAVES = [int(n) for n in os.environ.get("STREAM_WAVES", "1000,5000").split(",")]
PREVIOUS = os.environ.get("BENCH_STREAM_MEMORY_PREVIOUS", "")
TRACE = os.environ.get("STREAM_MEMORY_TRACE", "") == "1"
SETTLE_SECONDS = 4.0
# The CPU the replica spends on the last wave's idle streams (their
# heartbeats, one each interval, and its own periodic work), over this long.
CPU_SECONDS = float(os.environ.get("STREAM_CPU_SECONDS", "20"))


@dataclass
class Measured:
    rss: list[float]  # MB with 0 streams, then after each wave
    # Over CPU_SECONDS with the last wave idle: the replica's CPU, of which
    # gRPC's I/O thread's, and the simulated nodes' (this process), in % of
    # a core.
    replica_cpu: float = 0.0
    io_thread_cpu: float = 0.0
    nodes_cpu: float = 0.0


# Loaded into the replica with STREAM_MEMORY_TRACE=1 (sitecustomize): SIGUSR1
# writes the top allocation sites to the file named by its environment.
_TRACER = """
import os, signal, tracemalloc
tracemalloc.start(1)
def _dump(*_):
    snap = tracemalloc.take_snapshot()
    with open(os.environ["STREAM_MEMORY_TRACE_FILE"], "w") as out:
        for stat in snap.statistics("lineno")[:25]:
            out.write(f"{stat}\\n")
signal.signal(signal.SIGUSR1, _dump)
"""


def _replica(db: Database, root: Path, jobs_address: str, trace_dir: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "MUSTER_DATABASE_URL": db.url.render_as_string(hide_password=False),
        "MUSTER_LISTEN": "127.0.0.1:0",
        "MUSTER_LOG_LEVEL": "warning",
        "MUSTER_HOOKS_DIR": str(ROOT / ".data" / "bench" / "no-hooks"),
        "MUSTER_WORKER_THREADS": "32",
        "MUSTER_DB_POOL_SIZE": "20",
        "MUSTER_JOBS_ADDRESS": jobs_address,
    }
    if trace_dir:
        env["PYTHONPATH"] = trace_dir
        env["STREAM_MEMORY_TRACE_FILE"] = str(Path(trace_dir) / "top.txt")
    return subprocess.Popen(
        [str(root / ".venv" / "bin" / "python"), "-m", "muster_services.cli", "serve", "nodes"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


async def _waves(db: Database, address: str, pid: int, trace_dir: str) -> Measured:
    from bench.render import SimulatedNode

    signer = security_for(db).signer
    figures = [rss_mb(pid)]
    nodes: list[SimulatedNode] = []
    tasks: list[asyncio.Task[None]] = []
    registered: set[int] = set()
    never = asyncio.Event()  # SimulatedNode's own "all registered" is bench/render.py's
    async with grpc.aio.insecure_channel(address) as channel:
        for wave in WAVES:
            for i in range(len(nodes), wave):
                node = SimulatedNode(channel, i + 1_000_000, signer)
                nodes.append(node)
                tasks.append(asyncio.create_task(node.run(never, registered)))
            deadline = time.monotonic() + 600
            while len(registered) < wave:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{len(registered)} of {wave} streams registered")
                await asyncio.sleep(0.2)
            await asyncio.sleep(SETTLE_SECONDS)
            figures.append(rss_mb(pid))
            print(f"    {wave:>6,} streams: {figures[-1]:.1f} MB", flush=True)
        measured = Measured(figures)
        at = (
            cpu_seconds([pid]),
            thread_cpu_seconds(pid, "event_engine"),
            cpu_seconds([os.getpid()]),
        )
        await asyncio.sleep(CPU_SECONDS)
        measured.replica_cpu = 100 * (cpu_seconds([pid]) - at[0]) / CPU_SECONDS
        measured.io_thread_cpu = (
            100 * (thread_cpu_seconds(pid, "event_engine") - at[1]) / CPU_SECONDS
        )
        measured.nodes_cpu = 100 * (cpu_seconds([os.getpid()]) - at[2]) / CPU_SECONDS
        print(
            f"    {WAVES[-1]:>6,} idle streams: replica {measured.replica_cpu:.1f}% of a core"
            f" (gRPC I/O thread {measured.io_thread_cpu:.1f}%), simulated nodes"
            f" {measured.nodes_cpu:.1f}%",
            flush=True,
        )
        if trace_dir:
            os.kill(pid, 10)  # SIGUSR1
            await asyncio.sleep(5.0)
            print((Path(trace_dir) / "top.txt").read_text(), flush=True)
        for node in nodes:
            await node.close()
        await asyncio.gather(*tasks, return_exceptions=True)
    return measured


def _measure(db: Database, jobs_address: str, root: Path) -> Measured:
    with tempfile.TemporaryDirectory() as trace_dir:
        if TRACE:
            (Path(trace_dir) / "sitecustomize.py").write_text(_TRACER)
        proc = _replica(db, root, jobs_address, trace_dir if TRACE else "")
        try:
            assert proc.stdout is not None
            address = proc.stdout.readline().rsplit(" at ", 1)[1].strip()
            time.sleep(2.0)
            return asyncio.run(_waves(db, address, proc.pid, trace_dir if TRACE else ""))
        finally:
            proc.terminate()
            proc.wait(30)


def _per_thousand(figures: list[float]) -> float:
    return (figures[-1] - figures[0]) / WAVES[-1] * 1000


def run() -> list[Row]:
    from bench.common import dispatcher_process

    with (
        bench_database("bench_stream_memory", pool_size=4) as db,
        dispatcher_process(db, ["jobs", "admin"]) as (jobs_address, _),
    ):
        print("  this checkout", flush=True)
        ours = _measure(db, jobs_address, ROOT)
        theirs: Measured | None = None
        if PREVIOUS:
            print(f"  previous: {PREVIOUS}", flush=True)
            theirs = _measure(db, jobs_address, Path(PREVIOUS))
    peer = f"previous ({PREVIOUS})" if PREVIOUS else "-"
    rows = [
        Row(
            "nodes replica resident memory, no stream",
            ours.rss[0],
            theirs.rss[0] if theirs else None,
            peer,
            "MB",
        )
    ]
    for i, wave in enumerate(WAVES, 1):
        rows.append(
            Row(
                f"nodes replica resident memory, {wave:,} idle agent streams",
                ours.rss[i],
                theirs.rss[i] if theirs else None,
                peer,
                "MB",
            )
        )
    rows.append(
        Row(
            f"per 1,000 streams (from 0 to {WAVES[-1]:,})",
            _per_thousand(ours.rss),
            _per_thousand(theirs.rss) if theirs else None,
            peer,
            "MB",
        )
    )
    idle = f"{WAVES[-1]:,} idle agent streams, each heartbeating every ~10 s"
    rows += [
        Row(
            f"nodes replica CPU, {idle}",
            ours.replica_cpu,
            theirs.replica_cpu if theirs else ours.nodes_cpu,
            peer if theirs else "the simulated nodes sending those heartbeats",
            "% of a core",
        ),
        Row(
            "of which gRPC's I/O thread (event_engine)",
            ours.io_thread_cpu,
            theirs.io_thread_cpu if theirs else None,
            peer,
            "% of a core",
        ),
    ]
    return rows


BENCHMARKS["stream memory"] = run
if __name__ == "__main__":
    for row in run():
        print(row)
    sys.exit(0)
