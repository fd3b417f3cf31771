"""The render loop under load: simulated nodes speaking the real agent protocol.

The dispatcher (jobs, nodes and admin in one process, as `dispatcher run`)
runs as its own process on the embedded PostgreSQL; this process holds the
simulated agents (grpc.aio, one stream each), which finish every chunk the
moment it arrives. Measured: chunks dispatched and completed per second,
dispatch latency (a node's result sent -> its next assignment received), the
dispatcher's resident memory with every stream open, and throughput with a
large queue against a small one. Peer, same run, same PostgreSQL: pgqueuer
pushing the same number of jobs through enqueue, dequeue and acknowledge.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from bench.common import BENCHMARKS, Row, bench_database, dispatcher_process, rss_mb
from farm.agent.v1 import agent_pb2, agent_pb2_grpc
from farm.common.v1 import common_pb2
from farm.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from services.core.database import (
    libpq_url,
)
from services.jobs.templates import COMMAND_LINE_TEMPLATE_ID

ROOT = Path(__file__).resolve().parent.parent
NODES = int(os.environ.get("BENCH_RENDER_NODES", "2000"))
CHUNKS = int(os.environ.get("BENCH_RENDER_CHUNKS", "10000"))
BIG_QUEUE = int(os.environ.get("BENCH_RENDER_BIG_QUEUE", "100000"))
MEASURE_SECONDS = 15.0


class SimulatedNode:
    def __init__(self, channel: grpc.aio.Channel, index: int) -> None:
        self.stub = agent_pb2_grpc.AgentServiceStub(channel)
        self.index = index
        self.outgoing: asyncio.Queue[agent_pb2.SessionRequest | None] = asyncio.Queue()
        self.latencies: list[float] = []
        self.done = 0
        self.idle_since = 0.0
        self.node_id = 0
        self.errors: list[str] = []

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
        call = self.stub.Session(self._requests())
        async for message in call:
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
                a = message.assignment
                await self.outgoing.put(
                    agent_pb2.SessionRequest(
                        result=agent_pb2.ChunkResult(
                            job_id=a.job_id,
                            chunk_id=a.chunk_id,
                            fencing_token=a.fencing_token,
                            exit_code=0,
                            outcome=common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED,
                        )
                    )
                )
            elif kind == "result_accepted":
                self.done += 1
                self.idle_since = time.perf_counter()

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


async def _render(address: str, dispatcher_pid: int) -> dict[str, float]:
    async with grpc.aio.insecure_channel(address) as channel:
        jobs = jobs_pb2_grpc.JobsServiceStub(channel)
        nodes = [SimulatedNode(channel, i) for i in range(NODES)]
        ready, registered = asyncio.Event(), set[int]()
        tasks = [asyncio.create_task(n.run(ready, registered)) for n in nodes]
        try:
            await asyncio.wait_for(ready.wait(), 600)
        except TimeoutError:
            errors = sorted({e for n in nodes for e in n.errors})
            raise RuntimeError(
                f"{len(registered)} of {NODES} nodes registered; errors {errors}"
            ) from None
        rss_streams = rss_mb(dispatcher_pid)

        async def throughput(chunks: int, seconds: float) -> float:
            before = sum(n.done for n in nodes)
            reply = await jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=_job(chunks)))
            started = time.perf_counter()
            target = before + chunks
            while time.perf_counter() - started < seconds:
                if sum(n.done for n in nodes) >= target:
                    break
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - started
            rate = (sum(n.done for n in nodes) - before) / elapsed
            await jobs.DeleteJob(jobs_pb2.DeleteJobRequest(job_id=reply.job_id))
            await asyncio.sleep(1.0)
            return rate

        small = await throughput(CHUNKS, MEASURE_SECONDS)
        latencies = sorted(x for n in nodes for x in n.latencies[1:])
        for n in nodes:
            n.latencies.clear()
        big = await throughput(BIG_QUEUE, MEASURE_SECONDS)
        for n in nodes:
            await n.close()
        await asyncio.gather(*tasks, return_exceptions=True)
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else 0.0
    return {
        "small": small,
        "big": big,
        "latency_median_ms": statistics.median(latencies) * 1000 if latencies else 0.0,
        "latency_p99_ms": p99 * 1000,
        "rss_streams_mb": rss_streams,
    }


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


def run() -> list[Row]:
    with (
        bench_database("bench_render", pool_size=4) as db,
        dispatcher_process(db, ["jobs", "nodes", "admin"]) as (address, pid),
    ):
        idle_rss = rss_mb(pid)
        figures = asyncio.run(_render(address, pid))
    with bench_database("bench_pgqueuer", pool_size=1) as peer_db:
        peer = asyncio.run(_pgqueuer(peer_db.url.render_as_string(hide_password=False), CHUNKS))
    return [
        Row(
            f"render loop: {NODES} simulated nodes, {CHUNKS:,} queued chunks",
            figures["small"],
            peer,
            "pgqueuer enqueue+dequeue+ack, same count",
            "chunks/s",
        ),
        Row(
            f"render loop: {BIG_QUEUE:,} queued chunks vs {CHUNKS:,} (ours only)",
            figures["big"],
            figures["small"],
            f"ours with {CHUNKS:,} queued",
            "chunks/s",
        ),
        Row(
            "dispatch latency, median (result sent -> next assignment)",
            figures["latency_median_ms"],
            None,
            "-",
            "ms",
        ),
        Row("dispatch latency, p99", figures["latency_p99_ms"], None, "-", "ms"),
        Row(
            f"dispatcher resident memory with {NODES} agent streams",
            figures["rss_streams_mb"],
            idle_rss,
            "the same process with no stream",
            "MB",
        ),
    ]


BENCHMARKS["render loop"] = run
