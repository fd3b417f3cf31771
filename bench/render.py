"""The render loop under load: simulated nodes speaking the real agent protocol.

The services run as in a cluster: jobs and admin in one process, one
nodes-service replica in another (its resident memory is the one reported), on
the embedded PostgreSQL. This process holds the simulated agents (grpc.aio, one
stream each), which finish every chunk the moment it arrives. Measured, each
the median of RUNS runs:

- chunks dispatched and completed per second with every node busy, with a
  small queue, a large one and a huge one (BENCH_RENDER_HUGE_QUEUE=0 leaves that out);
- dispatch latency: a chunk becomes ready while nodes are idle (a job's
  submission has committed) -> the node receives its assignment (after one
  uncounted warm-up probe);
- the cycle under saturation: a node's result sent -> its next assignment
  (mostly queueing: NODES / throughput);
- the nodes service's resident memory with every stream open, and an idle
  real agent's;
- peers, same run, same PostgreSQL: pgqueuer at its best (bench/ceiling.py:
  asyncpg, 5 consumers in batches of 100, PEER_JOBS jobs, `pgq autovac`),
  and as issue 5 measured it: one psycopg consumer pushing the same number of
  jobs through enqueue, dequeue and acknowledge;
- the design's limit, same run, same simulated nodes: a bare grpc.aio relay
  (bench/bare_relay.py) sending the same two messages per chunk with no
  database; the render loop as a ratio of it;
- CPU milliseconds per 1,000 chunks of each process (the services, PostgreSQL's
  processes, the simulated nodes) over the small queue's windows, and the
  same for the bare relay: where the render loop's time goes;
- how many nodes are heartbeating after the small queue's windows.

BENCH_RENDER_REPLICAS=2 runs two nodes-service replicas with the simulated
nodes' streams split between them (the 10,000-node row:
BENCH_RENDER_NODES=10000); the memory row is then the largest replica's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from sqlalchemy import text

from bench.ceiling import install_pgqueuer, pgqueuer_at_best
from bench.common import (
    BENCHMARKS,
    Row,
    bench_database,
    bench_token,
    cpu_seconds,
    dispatcher_process,
    postgres_pids,
    private_mb,
    rss_mb,
    wait_registered,
)
from muster_proto.agent.v1 import agent_pb2, agent_pb2_grpc
from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_services.core.auth import (
    ENROLLMENT_SECRET,
    TokenSigner,
    auth_metadata,
    farm_secret,
    security_for,
)
from muster_services.core.database import Database, libpq_url
from muster_services.jobs.templates import COMMAND_LINE_TEMPLATE_ID

ROOT = Path(__file__).resolve().parent.parent
NODES = int(os.environ.get("BENCH_RENDER_NODES", "2000"))
CHUNKS = int(os.environ.get("BENCH_RENDER_CHUNKS", "10000"))
BIG_QUEUE = int(os.environ.get("BENCH_RENDER_BIG_QUEUE", "100000"))
HUGE_QUEUE = int(os.environ.get("BENCH_RENDER_HUGE_QUEUE", "1000000"))
RUNS = int(os.environ.get("BENCH_RENDER_RUNS", "3"))
# Nodes-service replicas, the simulated nodes' streams split between them.
REPLICAS = int(os.environ.get("BENCH_RENDER_REPLICAS", "1"))
LATENCY_CHUNKS = 100
# The peer at its best drains as many jobs as its authors' benchmark does.
PEER_JOBS = int(os.environ.get("BENCH_RENDER_PEER_JOBS", "50000"))
MEASURE_SECONDS = 15.0


class SimulatedNode:
    def __init__(self, channel: grpc.aio.Channel, index: int, signer: TokenSigner) -> None:
        self.stub = agent_pb2_grpc.AgentServiceStub(channel)
        self.index = index
        host = f"sim-{index:05d}"
        # As Enroll would answer: a token for this host's instance 0.
        self.metadata = auth_metadata(
            signer.issue(f"agent:{host}#0", "agent", "", 24 * 3600, host=host, instance=0)[0]
        )
        self.outgoing: asyncio.Queue[agent_pb2.SessionRequest | None] = asyncio.Queue()
        self.latencies: list[float] = []
        # perf_counter of each assignment received: the dispatch latency probe.
        self.received: list[float] = []
        self.done = 0
        self.idle_since = 0.0
        self.node_id = 0
        self.errors: list[str] = []
        # The last assignment received: the bare relay sends it again (bare_relay.py).
        self.assignment: agent_pb2.Assignment | None = None

    async def _requests(self) -> Any:
        while (message := await self.outgoing.get()) is not None:
            yield message

    async def run(self, ready: asyncio.Event, registered: set[int]) -> None:
        """One stream, opened again (as an agent does) if it fails."""
        while True:
            try:
                await self._session(ready, registered)
                return
            except grpc.aio.AioRpcError as exc:
                self.errors.append(exc.code().name)
                registered.discard(self.index)
                self.outgoing = asyncio.Queue()
                await asyncio.sleep(0.5)

    async def _session(self, ready: asyncio.Event, registered: set[int]) -> None:
        await self.outgoing.put(
            agent_pb2.SessionRequest(
                register=agent_pb2.Register(
                    node_id=self.node_id,
                    host_name=f"sim-{self.index:05d}",
                    platform=common_pb2.PLATFORM_LINUX,
                    cpu_cores=1,
                    agent_version="bench",
                )
            )
        )
        call = self.stub.Session(self._requests(), metadata=self.metadata)
        beating: asyncio.Task[None] | None = None
        try:
            async for message in call:
                if message.WhichOneof("message") == "register_accepted":
                    interval = message.register_accepted.heartbeat_interval_seconds or 10.0
                    beating = asyncio.create_task(self._heartbeats(interval))
                await self._handle(message, ready, registered)
        finally:
            if beating is not None:
                beating.cancel()

    async def _heartbeats(self, interval: float) -> None:
        """As an agent does: without them the nodes service declares the node
        lost after its timeout and requeues its chunk."""
        while True:
            await asyncio.sleep(interval * random.uniform(0.8, 1.2))
            await self.outgoing.put(agent_pb2.SessionRequest(heartbeat=agent_pb2.Heartbeat()))

    async def _handle(
        self, message: agent_pb2.SessionResponse, ready: asyncio.Event, registered: set[int]
    ) -> None:
        kind = message.WhichOneof("message")
        if kind == "register_accepted":
            self.node_id = message.register_accepted.node_id
            registered.add(self.index)
            self.idle_since = time.perf_counter()
            if len(registered) == NODES:
                ready.set()
        elif kind == "assignment":
            now = time.perf_counter()
            self.latencies.append(now - self.idle_since)
            self.received.append(now)
            self.assignment = a = message.assignment
            await self._report(a, 0, common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED)
        elif kind == "result_accepted":
            # A stale report (a killed run of a deleted job) is not a chunk done.
            self.done += int(message.result_accepted.applied)
            self.idle_since = time.perf_counter()
        elif kind == "command" and message.command.HasField("kill_process"):
            # A job deleted mid-run: confirm the kill as an agent would (the
            # assignment stays until then), with a result for its token.
            kill = message.command.kill_process
            await self.outgoing.put(
                agent_pb2.SessionRequest(
                    command_ack=agent_pb2.CommandAck(
                        command_id=message.command.command_id, success=True
                    )
                )
            )
            await self._report(kill, -1, common_pb2.CHUNK_RUN_OUTCOME_KILLED)

    async def _report(
        self,
        run: agent_pb2.Assignment | agent_pb2.KillProcessCommand,
        exit_code: int,
        outcome: common_pb2.ChunkRunOutcome.ValueType,
    ) -> None:
        result = agent_pb2.ChunkResult(
            job_id=run.job_id,
            chunk_id=run.chunk_id,
            fencing_token=run.fencing_token,
            exit_code=exit_code,
            outcome=outcome,
        )
        await self.outgoing.put(agent_pb2.SessionRequest(result=result))

    async def close(self) -> None:
        await self.outgoing.put(None)


def _job(chunks: int) -> jobs_pb2.Job:
    return jobs_pb2.Job(
        name="bench",
        owner="bench",
        parent_id=-1,
        template_id=COMMAND_LINE_TEMPLATE_ID,
        start_frame=1,
        end_frame=chunks,
        by_frame=1,
        packet_size=1,
        attributes=[jobs_pb2.JobAttribute(name="executable", string_value="/bin/true")],
    )


async def _start_nodes(
    channels: list[grpc.aio.Channel], signer: TokenSigner
) -> tuple[list[SimulatedNode], list[asyncio.Task[None]]]:
    """NODES simulated nodes, spread over `channels` in turn, once every one
    is registered."""
    nodes = [SimulatedNode(channels[i % len(channels)], i, signer) for i in range(NODES)]
    ready, registered = asyncio.Event(), set[int]()
    tasks = [asyncio.create_task(n.run(ready, registered)) for n in nodes]
    try:
        await asyncio.wait_for(ready.wait(), 600)
    except TimeoutError:
        errors = sorted({e for n in nodes for e in n.errors})
        raise RuntimeError(
            f"{len(registered)} of {NODES} nodes registered; errors {errors}"
        ) from None
    await asyncio.sleep(2.0)  # the first heartbeats and registrations settle
    return nodes, tasks


async def _stop_nodes(nodes: list[SimulatedNode], tasks: list[asyncio.Task[None]]) -> None:
    for n in nodes:
        await n.close()
    await asyncio.gather(*tasks, return_exceptions=True)


class CpuShares:
    """CPU seconds per 1,000 chunks of named groups of processes over windows
    (each group's processes listed again at the start of each window)."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self.spent = dict.fromkeys(groups, 0.0)
        self.chunks = 0
        self._at: dict[str, tuple[list[int], float]] = {}

    def start(self) -> None:
        self._at = {}
        for name, listed in self.groups.items():
            pids = listed()
            self._at[name] = (pids, cpu_seconds(pids))

    def stop(self, chunks: int) -> dict[str, float]:
        """Ends a window of `chunks`: its CPU milliseconds per 1,000 chunks."""
        window = {}
        for name, (pids, at) in self._at.items():
            spent = cpu_seconds(pids) - at
            self.spent[name] += spent
            window[name] = spent / max(chunks, 1) * 1e6
        self.chunks += chunks
        return window

    def per_thousand(self) -> dict[str, float]:
        """CPU milliseconds per 1,000 chunks (= µs per chunk) of each group."""
        return {n: s / max(self.chunks, 1) * 1e6 for n, s in self.spent.items()}


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else 0.0


def _progress(window: str, rate: float, shares: dict[str, float] | None = None) -> None:
    """A window's figures on stderr as it ends (the table comes at the end)."""
    cost = "; ".join(f"{name} {ms:,.0f}" for name, ms in (shares or {}).items())
    print(
        f"render loop, {window}: {rate:,.0f} chunks/s"
        + (f"; CPU ms per 1,000 chunks: {cost}" if cost else ""),
        file=sys.stderr,
        flush=True,
    )


def _heartbeating(db: Database) -> int:
    """Nodes with a session whose last heartbeat is under 30 s old."""
    with db.transaction() as session:
        return int(
            session.execute(
                text(
                    "SELECT count(*) FROM nodes WHERE session_id IS NOT NULL"
                    " AND last_heartbeat_at > now() - interval '30 seconds'"
                )
            ).scalar_one()
        )


async def _render(
    db: Database, jobs_address: str, nodes_addresses: list[str], cpu: CpuShares
) -> tuple[dict[str, float], agent_pb2.Assignment]:
    signer = security_for(db).signer
    user = auth_metadata(bench_token(db))
    async with contextlib.AsyncExitStack() as channels:
        jobs_channel = await channels.enter_async_context(grpc.aio.insecure_channel(jobs_address))
        replicas = [
            await channels.enter_async_context(grpc.aio.insecure_channel(a))
            for a in nodes_addresses
        ]
        stub = jobs_pb2_grpc.JobsServiceStub(jobs_channel)

        async def submit(chunks: int) -> int:
            request = jobs_pb2.SubmitJobRequest(job=_job(chunks))
            return int((await stub.SubmitJob(request, metadata=user)).job_id)

        async def delete(job_id: int) -> None:
            await stub.DeleteJob(jobs_pb2.DeleteJobRequest(job_id=job_id), metadata=user)

        nodes, tasks = await _start_nodes(replicas, signer)
        rss_streams = max(rss_mb(pid) for pid in cpu.groups["nodes service"]())

        def done() -> int:
            return sum(n.done for n in nodes)

        async def drained(before: int, chunks: int, seconds: float) -> None:
            started = time.perf_counter()
            while done() < before + chunks and time.perf_counter() - started < seconds:
                await asyncio.sleep(0.01)

        async def latency() -> tuple[list[float], list[float]]:
            """Chunks ready while every node idles: (ready -> assignment,
            submission sent -> assignment).

            A chunk is ready once its job's submission has committed, which
            is before SubmitJob answers: measuring from the answer leaves out
            the submission's own cost (the second list keeps it in).
            """
            for n in nodes:
                n.received.clear()
            before = done()
            submitted = time.perf_counter()
            job_id = await submit(LATENCY_CHUNKS)
            ready = time.perf_counter()
            await drained(before, LATENCY_CHUNKS, 30)
            await delete(job_id)
            await asyncio.sleep(1.0)
            received = [t for n in nodes for t in n.received]
            return [t - ready for t in received], [t - submitted for t in received]

        async def busy(chunks: int) -> tuple[int, int]:
            """A job of `chunks`, once every node is busy with it: (its id, the
            chunks done before it)."""
            job_id, before = await submit(chunks), done()
            await asyncio.sleep(1.0)  # every node is busy by now: measure from here
            for n in nodes:
                n.latencies.clear()
            return job_id, before

        async def throughput(chunks: int, windows: int) -> list[float]:
            """Chunks/s over `windows` windows of MEASURE_SECONDS, all nodes busy.

            The job is deleted only once it has drained (or at the end): a
            job deleted while 2,000 simulated nodes run it left the farm
            dispatching nothing afterwards (see docs/benchmarks.md).
            """
            job_id, before = await busy(chunks)
            rates = []
            for _ in range(windows):
                started, at_start = time.perf_counter(), done()
                await drained(before, chunks, MEASURE_SECONDS)
                rates.append((done() - at_start) / (time.perf_counter() - started))
                _progress(f"{chunks:,} queued, window {len(rates)}", rates[-1])
                if done() >= before + chunks:
                    break
            await drained(before, chunks, 120 if chunks <= CHUNKS else 0)
            await delete(job_id)
            await asyncio.sleep(1.0)
            return rates

        async def sustained(queued: int, windows: int) -> list[float]:
            """Chunks/s over `windows` windows of MEASURE_SECONDS with about
            `queued` chunks kept waiting: jobs of half as many are submitted as
            the queue drains (a queue of that length held for as long as the
            big queues' windows, not one job draining in a few seconds)."""
            first, before = await busy(queued)
            job_ids, submitted = [first], queued
            rates = []
            for _ in range(windows):
                started, at_start = time.perf_counter(), done()
                cpu.start()
                while time.perf_counter() - started < MEASURE_SECONDS:
                    # Not yet done = queued + running (at most one per node).
                    if submitted - (done() - before) < queued + NODES:
                        job_ids.append(await submit(queued // 2))
                        submitted += queued // 2
                    await asyncio.sleep(0.05)
                shares = cpu.stop(done() - at_start)
                rates.append((done() - at_start) / (time.perf_counter() - started))
                _progress(f"{queued:,} queued, window {len(rates)}", rates[-1], shares)
            for job_id in job_ids:
                await delete(job_id)
            await asyncio.sleep(1.0)
            return rates

        probes: list[float] = []
        with_submission: list[float] = []
        # One probe first, not counted: the first assignments after a start
        # pay one-off costs (statement compilation, the templates' cache).
        await latency()
        for _ in range(RUNS):
            from_ready, from_submission = await latency()
            probes += from_ready
            with_submission += from_submission
        small = statistics.median(await sustained(CHUNKS, RUNS))
        cycle = [x for n in nodes for x in n.latencies]
        heartbeating = await asyncio.to_thread(_heartbeating, db)
        big = statistics.median(await throughput(BIG_QUEUE, RUNS))
        huge = statistics.median(await throughput(HUGE_QUEUE, RUNS)) if HUGE_QUEUE else 0.0
        await _stop_nodes(nodes, tasks)
    assignment = next(n.assignment for n in nodes if n.assignment is not None)
    return {
        "small": small,
        "big": big,
        "huge": huge,
        "latency_median_ms": _percentile(probes, 0.5) * 1000,
        "latency_p99_ms": _percentile(probes, 0.99) * 1000,
        "submitted_median_ms": _percentile(with_submission, 0.5) * 1000,
        "cycle_median_ms": _percentile(cycle, 0.5) * 1000,
        "cycle_p99_ms": _percentile(cycle, 0.99) * 1000,
        "rss_streams_mb": rss_streams,
        "heartbeating": heartbeating,
    }, assignment


async def _relay(address: str, signer: TokenSigner, cpu: CpuShares) -> float:
    """Chunks/s through the bare relay (bare_relay.py), the median of RUNS
    windows of MEASURE_SECONDS with every node busy."""
    async with grpc.aio.insecure_channel(address) as channel:
        nodes, tasks = await _start_nodes([channel], signer)
        rates = []
        for _ in range(RUNS):
            started, at_start = time.perf_counter(), sum(n.done for n in nodes)
            cpu.start()
            await asyncio.sleep(MEASURE_SECONDS)
            chunks = sum(n.done for n in nodes) - at_start
            cpu.stop(chunks)
            rates.append(chunks / (time.perf_counter() - started))
        await _stop_nodes(nodes, tasks)
    return statistics.median(rates)


def _bare_relay(signer: TokenSigner, assignment: agent_pb2.Assignment) -> tuple[float, CpuShares]:
    """The bare relay in its own process, sending `assignment` again and again."""
    with tempfile.NamedTemporaryFile(suffix=".assignment") as message:
        message.write(assignment.SerializeToString())
        message.flush()
        relay = subprocess.Popen(
            [sys.executable, "-m", "bench.bare_relay", message.name],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert relay.stdout is not None
            address = relay.stdout.readline().rsplit(" at ", 1)[1].strip()
            cpu = CpuShares(
                {"relay": lambda: [relay.pid], "simulated nodes": lambda: [os.getpid()]}
            )
            return asyncio.run(_relay(address, signer, cpu)), cpu
        finally:
            relay.terminate()
            relay.wait(30)


def _idle_agent_rss(db: Database, nodes_address: str) -> tuple[float, float]:
    """Resident memory of a real agent (one instance) registered and idle, and
    its private part (bench/common.py private_mb)."""
    with tempfile.TemporaryDirectory() as work:
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
            cwd=ROOT,
            env={
                **os.environ,
                "MUSTER_AGENT_DISCOVERY": "off",
                "MUSTER_ENROLLMENT_SECRET": farm_secret(db, ENROLLMENT_SECRET),
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # Registered (under load that alone can take seconds), then a heartbeat or
            # two and the agent's first hand-back of freed memory (bench/agent_memory.py
            # measures the same way).
            wait_registered(db, 1)
            time.sleep(8.0)
            return rss_mb(agent.pid), private_mb(agent.pid)
        finally:
            agent.terminate()
            agent.wait(30)


async def _pgqueuer(url: str, jobs_count: int) -> float:
    import psycopg
    from pgqueuer.adapters.drivers.psycopg import PsycopgDriver
    from pgqueuer.adapters.persistence.queries import Queries
    from pgqueuer.core.qm import QueueManager

    connection = await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True)
    driver = PsycopgDriver(connection)
    queries = Queries(driver)
    await queries.install()
    await queries.enqueue(["render"] * jobs_count, [None] * jobs_count, [0] * jobs_count)
    manager = QueueManager(queries)
    done = 0

    @manager.entrypoint("render")
    async def render(job: Any) -> None:
        nonlocal done
        done += 1
        if done >= jobs_count:
            manager.shutdown.set()

    started = time.perf_counter()
    await asyncio.wait_for(
        manager.run(
            batch_size=100,
            dequeue_timeout=timedelta(seconds=1),
            log_aggregation_interval=timedelta(0),
        ),
        timeout=300,
    )
    elapsed = time.perf_counter() - started
    await connection.close()
    return done / elapsed


def _pgqueuer_run() -> float:
    """The peer as before (issue 5): one psycopg consumer, CHUNKS jobs,
    per-job statistics."""
    with bench_database("bench_pgqueuer", pool_size=1) as peer_db:
        url = peer_db.url.render_as_string(hide_password=False)
        return asyncio.run(_pgqueuer(url, CHUNKS))


def _pgqueuer_best_run() -> float:
    """The peer at its best (bench/ceiling.py): asyncpg, 5 consumers x 100,
    PEER_JOBS jobs, the table tuned by `pgq autovac`."""
    with bench_database("bench_pgqueuer", pool_size=1) as peer_db:
        url = peer_db.url.render_as_string(hide_password=False)
        install_pgqueuer(url)
        return pgqueuer_at_best(url, PEER_JOBS)


def run() -> list[Row]:
    with (
        bench_database("bench_render", pool_size=4) as db,
        dispatcher_process(db, ["jobs", "admin"]) as (jobs_address, jobs_pid),
        contextlib.ExitStack() as stack,
    ):
        replicas = [
            stack.enter_context(
                dispatcher_process(db, ["nodes"], {"MUSTER_JOBS_ADDRESS": jobs_address})
            )
            for _ in range(REPLICAS)
        ]
        nodes_address, nodes_pid = replicas[0]
        time.sleep(2.0)
        idle_rss = rss_mb(nodes_pid)
        agent_rss, agent_private = _idle_agent_rss(db, nodes_address)
        cpu = CpuShares(
            {
                "jobs+admin service": lambda: [jobs_pid],
                "nodes service": lambda: [pid for _, pid in replicas],
                "PostgreSQL": postgres_pids,
                "simulated nodes": lambda: [os.getpid()],
            }
        )
        figures, assignment = asyncio.run(_render(db, jobs_address, [a for a, _ in replicas], cpu))
        signer = security_for(db).signer
    relay, relay_cpu = _bare_relay(signer, assignment)
    peer = statistics.median(_pgqueuer_run() for _ in range(RUNS))
    best = statistics.median(_pgqueuer_best_run() for _ in range(RUNS))
    render = (
        f"render loop: {NODES:,} simulated nodes"
        + (f" over {REPLICAS} nodes-service replicas" if REPLICAS > 1 else "")
        + f", {CHUNKS:,} queued chunks"
    )
    rows = [
        Row(
            render,
            figures["small"],
            best,
            f"pgqueuer at its best: drain of {PEER_JOBS:,}, asyncpg, 5 consumers x 100, autovac",
            "chunks/s",
        ),
        Row(
            render,
            figures["small"],
            peer,
            "pgqueuer enqueue+dequeue+ack, same count, one psycopg consumer (issue 5's peer)",
            "chunks/s",
        ),
        Row(
            f"render loop: {BIG_QUEUE:,} queued chunks vs {CHUNKS:,} (ours only)",
            figures["big"],
            figures["small"],
            f"ours with {CHUNKS:,} queued",
            "chunks/s",
        ),
    ]
    if HUGE_QUEUE:
        rows.append(
            Row(
                f"render loop: {HUGE_QUEUE:,} queued chunks vs {CHUNKS:,} (ours only)",
                figures["huge"],
                figures["small"],
                f"ours with {CHUNKS:,} queued",
                "chunks/s",
            )
        )
    return [
        *rows,
        Row(
            f"dispatch latency, median (chunk ready, {NODES:,} nodes idle -> assignment received)",
            figures["latency_median_ms"],
            None,
            "-",
            "ms",
        ),
        Row("dispatch latency, p99", figures["latency_p99_ms"], None, "-", "ms"),
        Row(
            "submission sent -> assignment received, median (the latency row plus SubmitJob)",
            figures["submitted_median_ms"],
            None,
            "-",
            "ms",
        ),
        Row(
            "saturated cycle, median (result sent -> next assignment, every node busy)",
            figures["cycle_median_ms"],
            None,
            "-",
            "ms",
        ),
        Row("saturated cycle, p99", figures["cycle_p99_ms"], None, "-", "ms"),
        Row(
            f"nodes service resident memory with {NODES // REPLICAS:,} agent streams"
            + (f" (the largest of {REPLICAS} replicas)" if REPLICAS > 1 else ""),
            figures["rss_streams_mb"],
            idle_rss,
            "the same process with no stream",
            "MB",
        ),
        Row(
            "nodes heartbeating (a session, a heartbeat under 30 s old) after the windows",
            figures["heartbeating"],
            NODES,
            "simulated nodes",
            "nodes",
        ),
        Row("idle agent resident memory (one instance)", agent_rss, None, "-", "MB"),
        Row(
            "of which private (anonymous) memory; the rest is mapped files' pages",
            agent_private,
            None,
            "-",
            "MB",
        ),
        Row(
            f"render loop ({CHUNKS:,} queued) vs the design's limit: a bare grpc.aio relay,"
            " the same nodes and messages, no database",
            figures["small"],
            relay,
            "bare relay (bench/bare_relay.py)",
            "chunks/s",
        ),
        *(
            Row(
                f"CPU per 1,000 chunks, render loop ({CHUNKS:,} queued): {name}",
                seconds,
                relay_cpu.per_thousand().get(name),
                "the same in the bare relay" if name in relay_cpu.groups else "-",
                "ms",
            )
            for name, seconds in cpu.per_thousand().items()
        ),
        Row(
            "CPU per 1,000 chunks, bare relay: the relay process",
            relay_cpu.per_thousand()["relay"],
            None,
            "-",
            "ms",
        ),
    ]


BENCHMARKS["render loop"] = run
