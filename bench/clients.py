"""Live consoles following a real render at full speed.

Processes: the nodes service (`dispatcher serve nodes`) on its own, the jobs
and admin services in another, the consoles in BENCH_CONSOLE_PROCESSES
client processes (grpc.aio, so client CPU is not the server's), and in this
process the simulated render nodes of bench/render.py speaking the agent
protocol, finishing every chunk the moment it arrives. Every console opens
its stream before the job is submitted and reads until the job's completed
change: each must receive every event (chunk started, finished,
job and node changes), in order. Measured: delivery latency (event created
-> received by the console, median and p99), events missing or out of order
in any console (must be 0), the nodes service's peak resident memory, and
events delivered per second to all consoles together. Peer, same run: the
same number of streams fed pre-built messages by a bare grpc.aio server
(the transport's own cost).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from sqlalchemy import text

from bench.common import (
    BENCHMARKS,
    Row,
    bench_database,
    bench_token,
    dispatcher_process,
    postgres_pids,
    rss_mb,
)
from bench.render import CpuShares, SimulatedNode
from muster_gateway.live import events_of
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from muster_services.core.auth import auth_metadata, security_for
from muster_services.core.database import Database
from muster_services.jobs.templates import COMMAND_LINE_TEMPLATE_ID

ROOT = Path(__file__).resolve().parent.parent
CONSOLES = int(os.environ.get("BENCH_CONSOLES", "1000"))
CHUNKS = int(os.environ.get("BENCH_CONSOLE_CHUNKS", "10000"))
NODES = int(os.environ.get("BENCH_CONSOLE_NODES", "100"))
PROCESSES = int(os.environ.get("BENCH_CONSOLE_PROCESSES", "2"))
# As muster-console connects: several events per response (0: one per response).
BATCHED = os.environ.get("BENCH_CONSOLE_BATCHED", "1") != "0"
STREAMS_PER_CHANNEL = 100
# How late a console process's event loop runs a 50 ms timer: how far behind
# its own work (reading and decoding the events) that process is.
LAG_PROBE_SECONDS = 0.05
SAMPLE_EVERY = 10  # latency of one console in ten (all are counted and checked)
RENDER_TIMEOUT_SECONDS = float(os.environ.get("BENCH_CONSOLE_TIMEOUT", "900"))
# The second measurement: chunks that take this long on each simulated node
# (a farm rendering, rather than the render loop at full speed). 0: skip it.
PACED_CHUNK_SECONDS = float(os.environ.get("BENCH_CONSOLE_CHUNK_SECONDS", "1.0"))
JOB_NAME = "bench-consoles"
# The simulated nodes send no heartbeat: a render longer than the lost-node
# timeout (60 s) must not declare them lost.
QUIET_NODES = {"MUSTER_NODE_LOST_TIMEOUT_SECONDS": "3600"}


def sequence_hash(previous: int, event_id: int) -> int:
    """A fingerprint of a sequence of event ids, extended by one id (order matters)."""
    return (previous * 1_000_003 + event_id) % (1 << 61)


# --- the console processes ----------------------------------------------------------------


async def _hold_consoles(address: str, tokens: list[str], pipe: Connection) -> dict[str, Any]:
    """Open one console per token, report when all are accepted, read until the job completes."""
    latencies: list[float] = []
    counts = [0] * len(tokens)
    job_counts = [0] * len(tokens)
    hashes = [0] * len(tokens)
    bench_job = [0]  # learnt from its first change (the submission), named JOB_NAME
    notices: list[str] = []
    accepted = 0
    all_accepted = asyncio.Event()
    channels = [
        grpc.aio.insecure_channel(address) for _ in range(0, len(tokens), STREAMS_PER_CHANNEL)
    ]

    async def console(index: int) -> None:
        nonlocal accepted
        stub = nodes_pb2_grpc.ClientsServiceStub(channels[index // STREAMS_PER_CHANNEL])
        call = stub.Connect(
            nodes_pb2.ConnectRequest(
                client_kind=nodes_pb2.CLIENT_KIND_CONSOLE, host="bench", batch_events=BATCHED
            ),
            metadata=auth_metadata(tokens[index]),
        )
        sampled = index % SAMPLE_EVERY == 0
        async for response in call:
            if response.HasField("accepted"):
                accepted += 1
                if accepted == len(tokens):
                    all_accepted.set()
                continue
            now = time.time()
            # As lean as a console that checks every event can be: the
            # consoles share the machine with the services they measure.
            for event in events_of(response):
                kind = event.WhichOneof("event")
                if sampled:
                    latencies.append(now - event.event_time.ToNanoseconds() / 1e9)
                counts[index] += 1
                if kind == "chunk_changed":
                    if event.chunk_changed.chunk.job_id != bench_job[0]:
                        continue
                elif kind == "job_changed":
                    job = event.job_changed.job
                    if not bench_job[0] and job.name == JOB_NAME:
                        bench_job[0] = job.id
                    if job.id != bench_job[0]:
                        continue
                elif kind == "custom_message":
                    # The bench's broadcast once the job completed: every
                    # event before it on the bus has been delivered.
                    call.cancel()
                    return
                elif kind == "disconnect_notice":
                    notices.append(nodes_pb2.DisconnectReason.Name(event.disconnect_notice.reason))
                    return
                else:
                    continue
                job_counts[index] += 1
                hashes[index] = sequence_hash(hashes[index], event.event_id)

    lags: list[float] = []

    async def probe_lag() -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(LAG_PROBE_SECONDS)
            lags.append(time.perf_counter() - started - LAG_PROBE_SECONDS)

    tasks = [asyncio.create_task(console(i)) for i in range(len(tokens))]
    await asyncio.wait_for(all_accepted.wait(), 300)
    pipe.send("ready")
    lag = asyncio.create_task(probe_lag())
    await asyncio.wait_for(
        asyncio.gather(*tasks, return_exceptions=True), RENDER_TIMEOUT_SECONDS + 60
    )
    lag.cancel()
    for channel in channels:
        await channel.close(None)
    return {
        "latencies": latencies,
        "counts": counts,
        "job_counts": job_counts,
        "hashes": hashes,
        "notices": notices,
        "lags": lags,
    }


def _console_process(address: str, tokens: list[str], pipe: Connection) -> None:
    """A client process (multiprocessing target): its figures go back through `pipe`."""
    try:
        pipe.send(asyncio.run(_hold_consoles(address, tokens, pipe)))
    except BaseException as exc:
        pipe.send({"error": repr(exc)})
        raise


# --- the render ---------------------------------------------------------------------------


class PacedNode(SimulatedNode):
    """A simulated node whose chunks take `chunk_seconds` (its results wait)."""

    def __init__(self, *args: Any, chunk_seconds: float) -> None:
        super().__init__(*args)
        self.chunk_seconds = chunk_seconds

    async def _requests(self) -> Any:
        while (message := await self.outgoing.get()) is not None:
            if self.chunk_seconds and message.HasField("result"):
                await asyncio.sleep(self.chunk_seconds)
            yield message


def _job() -> jobs_pb2.Job:
    return jobs_pb2.Job(
        name=JOB_NAME,
        owner="bench",
        parent_id=-1,
        template_id=COMMAND_LINE_TEMPLATE_ID,
        start_frame=1,
        end_frame=CHUNKS,
        by_frame=1,
        packet_size=1,
        attributes=[jobs_pb2.JobAttribute(name="executable", string_value="/bin/true")],
    )


async def _render(
    db: Database,
    jobs_address: str,
    nodes_address: str,
    pids: dict[str, int],
    chunk_seconds: float,
) -> dict[str, Any]:
    nodes_pid = pids["nodes service"]
    signer = security_for(db).signer
    tokens = [signer.issue(f"console-{i}", "user", "user", 7200)[0] for i in range(CONSOLES)]
    context = multiprocessing.get_context("spawn")
    share = -(-CONSOLES // PROCESSES)
    pipes, processes = [], []
    for start in range(0, CONSOLES, share):
        ours, theirs = context.Pipe()
        process = context.Process(
            target=_console_process,
            args=(nodes_address, tokens[start : start + share], theirs),
            daemon=True,
        )
        process.start()
        pipes.append(ours)
        processes.append(process)
    for pipe in pipes:
        answer = await asyncio.to_thread(pipe.recv)
        if answer != "ready":
            raise RuntimeError(f"a console process failed: {answer}")
    rss = rss_mb(nodes_pid)

    nodes_channel = grpc.aio.insecure_channel(nodes_address)
    nodes = [PacedNode(nodes_channel, i, signer, chunk_seconds=chunk_seconds) for i in range(NODES)]
    registered: set[int] = set()
    tasks = [asyncio.create_task(n.run(asyncio.Event(), registered)) for n in nodes]
    deadline = time.monotonic() + 120
    while len(registered) < NODES:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(registered)} of {NODES} simulated nodes registered")
        await asyncio.sleep(0.1)

    # Where the render's CPU goes, the consoles' own processes included.
    cpu = CpuShares(
        {
            "nodes service": lambda: [nodes_pid],
            "jobs+admin service": lambda: [pids["jobs+admin service"]],
            "PostgreSQL": postgres_pids,
            "console processes": lambda: [p.pid for p in processes if p.pid is not None],
            "simulated nodes (this process)": lambda: [os.getpid()],
        }
    )
    async with grpc.aio.insecure_channel(jobs_address) as channel:
        jobs = jobs_pb2_grpc.JobsServiceStub(channel)
        cpu.start()
        started = time.perf_counter()
        reply = await jobs.SubmitJob(
            jobs_pb2.SubmitJobRequest(job=_job()),
            metadata=auth_metadata(bench_token(db)),
        )
        job_id = reply.job_id
        metadata = auth_metadata(bench_token(db))
        while True:
            got = await jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=metadata)
            if got.job.status == jobs_pb2.JOB_STATUS_COMPLETED:
                break
            if time.perf_counter() - started > RENDER_TIMEOUT_SECONDS:
                raise RuntimeError("the render did not complete")
            rss = max(rss, rss_mb(nodes_pid))
            await asyncio.sleep(0.2)
        # Events of the job may follow its completion on the bus: a broadcast
        # published after them tells the consoles they have had everything.
        async with grpc.aio.insecure_channel(nodes_address) as clients_channel:
            await nodes_pb2_grpc.ClientsServiceStub(clients_channel).SendConsoleMessage(
                nodes_pb2.SendConsoleMessageRequest(message="bench: render over", broadcast=True),
                metadata=metadata,
            )
        results: list[dict[str, Any]] = []
        for pipe in pipes:
            while not await asyncio.to_thread(pipe.poll, 0.5):
                rss = max(rss, rss_mb(nodes_pid))
                if time.perf_counter() - started > RENDER_TIMEOUT_SECONDS + 60:
                    raise RuntimeError("the consoles did not see the render complete")
            results.append(await asyncio.to_thread(pipe.recv))
        elapsed = time.perf_counter() - started
        cpu.stop(CHUNKS)
    for node in nodes:
        await node.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    await nodes_channel.close(None)
    for process in processes:
        process.join(30)
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError(f"console processes failed: {errors}")

    # The job's events in the order the bus delivers them: every console must
    # have received exactly this sequence.
    with db.transaction() as session:
        expected = list(
            session.execute(
                text(
                    "SELECT id FROM events WHERE (topic LIKE 'chunk.%' OR topic LIKE 'job.%')"
                    " AND payload->>'job_id' = :job ORDER BY txid, id"
                ),
                {"job": str(job_id)},
            ).scalars()
        )
    expected_hash = 0
    for event_id in expected:
        expected_hash = sequence_hash(expected_hash, event_id)
    counts = [c for r in results for c in r["counts"]]
    job_counts = [c for r in results for c in r["job_counts"]]
    hashes = [h for r in results for h in r["hashes"]]
    missing = sum(max(0, len(expected) - c) for c in job_counts)
    disorder = sum(
        1
        for c, h in zip(job_counts, hashes, strict=True)
        if c == len(expected) and h != expected_hash
    )
    latencies = sorted(x for r in results for x in r["latencies"])
    lags = sorted(x for r in results for x in r["lags"])
    return {
        # CPU seconds of each group over the render, and the cores' seconds it had.
        "cpu_seconds": {n: ms * CHUNKS / 1e6 for n, ms in cpu.per_thousand().items()},
        "core_seconds": elapsed * (os.cpu_count() or 1),
        "lag_median_ms": statistics.median(lags) * 1000 if lags else 0.0,
        "lag_p90_ms": lags[int(len(lags) * 0.9)] * 1000 if lags else 0.0,
        "median_ms": statistics.median(latencies) * 1000 if latencies else 0.0,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0.0,
        "gaps": float(missing + disorder),
        "rss_mb": rss,
        "events_per_s": sum(counts) / elapsed,
        "events": float(len(expected)),
        "chunks_per_s": CHUNKS / elapsed,
        "notices": [n for r in results for n in r["notices"]],
        "missing": float(missing),
        "disorder": float(disorder),
        "counts": (min(counts), max(counts)),
    }


# --- the peer: a bare grpc.aio server stream -----------------------------------------------

PEER_EVENTS = 400


class _Pusher(nodes_pb2_grpc.ClientsServiceServicer):
    async def Connect(self, request: Any, context: Any) -> Any:
        yield nodes_pb2.ConnectResponse(accepted=nodes_pb2.ConnectionAccepted(connection_id=1))
        event = nodes_pb2.ClientEvent(event_id=1)
        event.chunk_changed.chunk.id = 1
        for _ in range(PEER_EVENTS):
            yield nodes_pb2.ConnectResponse(event=event)


async def _bare_fan_out() -> float:
    server = grpc.aio.server()
    nodes_pb2_grpc.add_ClientsServiceServicer_to_server(_Pusher(), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    received = 0
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        for _ in range(0, CONSOLES, STREAMS_PER_CHANNEL)
    ]

    async def one(index: int) -> None:
        nonlocal received
        stub = nodes_pb2_grpc.ClientsServiceStub(channels[index // STREAMS_PER_CHANNEL])
        async for _ in stub.Connect(nodes_pb2.ConnectRequest()):
            received += 1

    started = time.perf_counter()
    outcomes = await asyncio.gather(*(one(i) for i in range(CONSOLES)), return_exceptions=True)
    elapsed = time.perf_counter() - started
    for channel in channels:
        await channel.close(None)
    await server.stop(None)
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    if failed:
        print(f"  peer: {len(failed)} of {CONSOLES} streams failed ({failed[0]!r:.80})")
    return received / elapsed


def _measured(chunk_seconds: float) -> dict[str, Any]:
    """One render followed by the consoles, on services started for it."""
    with (
        # A database per measurement: signing keys are cached per database URL.
        bench_database("bench_clients_paced" if chunk_seconds else "bench_clients", 2) as db,
        dispatcher_process(db, ["jobs", "admin"], QUIET_NODES) as (jobs_address, jobs_pid),
        dispatcher_process(db, ["nodes"], {**QUIET_NODES, "MUSTER_JOBS_ADDRESS": jobs_address}) as (
            nodes_address,
            nodes_pid,
        ),
    ):
        pids = {"nodes service": nodes_pid, "jobs+admin service": jobs_pid}
        figures = asyncio.run(_render(db, jobs_address, nodes_address, pids, chunk_seconds))
    pace = f"chunks of {chunk_seconds:g} s" if chunk_seconds else "full speed"
    print(
        f"  ours ({pace}): {figures['events_per_s']:,.0f} events/s, latency median"
        f" {figures['median_ms']:,.0f} ms, p99 {figures['p99_ms']:,.0f} ms,"
        f" gaps {figures['gaps']:.0f}, nodes service {figures['rss_mb']:.0f} MB"
    )
    if figures["notices"]:
        print(f"  consoles closed by the dispatcher: {sorted(set(figures['notices']))}")
    print(
        f"  job events missing {figures['missing']:.0f}, consoles with them out of order"
        f" {figures['disorder']:.0f}; events received per console {figures['counts']}"
    )
    print(
        f"  {figures['events']:,.0f} events of the job; render {figures['chunks_per_s']:,.0f}"
        " chunks/s with the consoles connected"
    )
    spent = ", ".join(f"{n} {s:,.1f}" for n, s in figures["cpu_seconds"].items())
    print(
        f"  CPU seconds over the render: {spent} (of {figures['core_seconds']:,.1f} core"
        f" seconds); console processes' event-loop lag median {figures['lag_median_ms']:,.0f}"
        f" ms, p90 {figures['lag_p90_ms']:,.0f} ms; load average {os.getloadavg()[0]:.1f}"
    )
    return figures


def _where_time_goes(figures: dict[str, Any], what: str) -> list[Row]:
    """The CPU each group of processes spent over the render, as a share of
    the machine's cores, and how far behind the console processes ran."""
    rows = [
        Row(
            f"CPU over the render, {what}: {name}",
            100.0 * seconds / figures["core_seconds"],
            None,
            "-",
            "% of all cores",
        )
        for name, seconds in figures["cpu_seconds"].items()
    ]
    rows.append(
        Row(
            f"console processes' event-loop lag, median (a {LAG_PROBE_SECONDS * 1000:.0f} ms"
            f" timer's delay), {what}",
            figures["lag_median_ms"],
            None,
            "-",
            "ms",
        )
    )
    return rows


def _latency_rows(figures: dict[str, Any], what: str) -> list[Row]:
    return [
        Row(
            f"console delivery latency, median (event published -> received), {what}",
            figures["median_ms"],
            None,
            "-",
            "ms",
        ),
        Row(f"console delivery latency, p99, {what}", figures["p99_ms"], None, "-", "ms"),
        Row(
            f"events missing or out of order, all consoles, {what}",
            figures["gaps"],
            None,
            "-",
            "count",
        ),
    ]


def run() -> list[Row]:
    full = _measured(0.0)
    peer = asyncio.run(_bare_fan_out())
    rows = [
        Row(
            f"console fan-out: {CONSOLES} consoles x a {CHUNKS:,}-chunk render"
            f" ({NODES} simulated nodes, full speed)",
            full["events_per_s"],
            peer,
            f"bare grpc.aio server stream, {CONSOLES} streams x {PEER_EVENTS} pre-built messages",
            "events/s delivered",
        ),
        *_latency_rows(full, f"full speed ({full['chunks_per_s']:,.0f} chunks/s)"),
        *_where_time_goes(full, "full speed"),
    ]
    highest = full["rss_mb"]
    if PACED_CHUNK_SECONDS:
        paced = _measured(PACED_CHUNK_SECONDS)
        highest = max(highest, paced["rss_mb"])
        rows += _latency_rows(
            paced,
            f"chunks of {PACED_CHUNK_SECONDS:g} s ({paced['chunks_per_s']:,.0f} chunks/s)",
        )
    rows.append(
        Row(
            f"nodes service peak resident memory with {CONSOLES} consoles",
            highest,
            None,
            "-",
            "MB",
        )
    )
    return rows


BENCHMARKS["consoles"] = run
