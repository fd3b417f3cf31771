"""Live consoles under a render's event stream.

The dispatcher runs as its own process; this process holds the console
streams (grpc.aio). A render's events (chunk finished, job changed) are
written to the outbox in batches, as the render loop writes them, and every
console must receive every event in order. Measured: delivery latency
(event committed -> received, median and p99), gaps (must be 0), and the
dispatcher's resident memory with every stream open. Peer, same run: the
same fan-out through a bare grpc.aio server stream pushing pre-built
messages to the same number of streams (the transport's own cost).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from bench.common import BENCHMARKS, Row, bench_database, bench_token, dispatcher_process, rss_mb
from farm.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from services.core.auth import auth_metadata
from services.core.bus import publish_many
from services.core.database import (
    Database,
)

ROOT = Path(__file__).resolve().parent.parent
CONSOLES = int(os.environ.get("BENCH_CONSOLES", "300"))
EVENTS = int(os.environ.get("BENCH_CONSOLE_EVENTS", "400"))
# Events arrive as a render makes them: 20 a second.
BATCH = 1
BATCH_INTERVAL_SECONDS = 0.05


async def _consoles(address: str, db: Database, pid: int) -> dict[str, float]:
    latencies: list[float] = []
    gaps = 0
    received = [0] * CONSOLES
    async with grpc.aio.insecure_channel(address) as channel:
        stub = nodes_pb2_grpc.ClientsServiceStub(channel)
        ready = asyncio.Event()
        accepted = 0

        async def console(index: int) -> None:
            nonlocal accepted, gaps
            last = 0
            call = stub.Connect(
                nodes_pb2.ConnectRequest(client_kind=nodes_pb2.CLIENT_KIND_CONSOLE, host="bench"),
                metadata=auth_metadata(bench_token(db, f"console-{index}", "user")),
            )
            async for response in call:
                if response.HasField("accepted"):
                    accepted += 1
                    if accepted == CONSOLES:
                        ready.set()
                    continue
                event = response.event
                now = time.time()
                if last and event.event_id <= last:
                    gaps += 1  # out of order or repeated
                last = event.event_id
                if index % 10 == 0:  # sample: one console in ten
                    sent = event.event_time.seconds + event.event_time.nanos / 1e9
                    latencies.append(now - sent)
                received[index] += 1
                if received[index] >= EVENTS:
                    call.cancel()
                    return

        tasks = [asyncio.create_task(console(i)) for i in range(CONSOLES)]
        await asyncio.wait_for(ready.wait(), 120)
        rss = rss_mb(pid)

        def emit() -> None:
            for start in range(0, EVENTS, BATCH):
                with db.transaction() as session:
                    publish_many(
                        session,
                        [
                            ("chunk.finished", {"job_id": 1, "chunk_id": n, "node_id": 1}, "1")
                            for n in range(start, min(start + BATCH, EVENTS))
                        ],
                    )
                time.sleep(BATCH_INTERVAL_SECONDS)

        started = time.perf_counter()
        await asyncio.to_thread(emit)
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 600)
        elapsed = time.perf_counter() - started
        rss = max(rss, rss_mb(pid))
    missing = CONSOLES * EVENTS - sum(received)
    latencies.sort()
    return {
        "median_ms": statistics.median(latencies) * 1000 if latencies else 0.0,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0.0,
        "gaps": float(gaps + missing),
        "rss_mb": rss,
        "messages_per_s": sum(received) / elapsed,
    }


class _Pusher(nodes_pb2_grpc.ClientsServiceServicer):
    async def Connect(self, request: Any, context: Any) -> Any:
        yield nodes_pb2.ConnectResponse(accepted=nodes_pb2.ConnectionAccepted(connection_id=1))
        event = nodes_pb2.ClientEvent(event_id=1)
        event.chunk_changed.chunk.id = 1
        for _ in range(EVENTS):
            yield nodes_pb2.ConnectResponse(event=event)


async def _bare_fan_out() -> float:
    server = grpc.aio.server()
    nodes_pb2_grpc.add_ClientsServiceServicer_to_server(_Pusher(), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    received = 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = nodes_pb2_grpc.ClientsServiceStub(channel)

        async def one() -> None:
            nonlocal received
            async for _ in stub.Connect(nodes_pb2.ConnectRequest()):
                received += 1

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(CONSOLES)))
        elapsed = time.perf_counter() - started
    await server.stop(None)
    return received / elapsed


def run() -> list[Row]:
    with (
        bench_database("bench_clients", pool_size=2) as db,
        dispatcher_process(db, ["nodes"]) as (address, pid),
    ):
        figures = asyncio.run(_consoles(address, db, pid))
    peer = asyncio.run(_bare_fan_out())
    return [
        Row(
            f"console fan-out: {CONSOLES} consoles x {EVENTS:,} events",
            figures["messages_per_s"],
            peer,
            "bare grpc.aio server stream, same fan-out",
            "messages/s",
        ),
        Row(
            "console delivery latency, median (commit -> received)",
            figures["median_ms"],
            None,
            "-",
            "ms",
        ),
        Row("console delivery latency, p99", figures["p99_ms"], None, "-", "ms"),
        Row("events missing or out of order, all consoles", figures["gaps"], None, "-", "count"),
        Row(
            f"nodes service resident memory with {CONSOLES} consoles",
            figures["rss_mb"],
            None,
            "-",
            "MB",
        ),
    ]


BENCHMARKS["consoles"] = run
