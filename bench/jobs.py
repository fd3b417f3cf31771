"""Jobs service speed through gRPC against the embedded PostgreSQL.

Each figure is a median of repeated calls with blocking stubs. The peer of
each row is the same call answered by a trivial servicer on the same kind of
server in the same process, returning a pre-built response of exactly the
bytes ours returned: the ratio is the cost of our own code and the database
over a bare gRPC round trip of that payload.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from statistics import median
from typing import Any, NamedTuple

import grpc
from sqlalchemy import text

from bench.common import BENCHMARKS, Row, bench_database
from muster_gateway.tls import with_token
from muster_proto.jobs.v1 import jobs_pb2 as pb
from muster_proto.jobs.v1 import jobs_pb2_grpc
from muster_services.core.auth import security_for
from muster_services.core.database import (
    Database,
)
from muster_services.core.server import Component, DispatcherServer, contract_base
from muster_services.core.settings import Settings
from muster_services.jobs.component import JOBS_SERVICE, build
from muster_services.jobs.templates import BLENDER_TEMPLATE_ID

LISTED_JOBS = 10_000
SUBMIT_CHUNKS = 10_000
LISTED_CHUNKS = 100_000
RUNS = 5


class Served(NamedTuple):
    stub: jobs_pb2_grpc.JobsServiceStub
    address: str
    token: str


class _Canned(contract_base(jobs_pb2_grpc.JobsServiceServicer, JOBS_SERVICE)):  # type: ignore[misc]
    """The peer: answers with pre-built responses (by page token for lists)."""

    def __init__(self) -> None:
        self.submit = pb.SubmitJobResponse()
        self.job = pb.GetJobResponse()
        self.job_pages: dict[str, pb.ListJobsResponse] = {}
        self.chunk_pages: dict[str, pb.ListChunksResponse] = {}

    def SubmitJob(self, request: Any, context: Any) -> Any:
        return self.submit

    def GetJob(self, request: Any, context: Any) -> Any:
        return self.job

    def ListJobs(self, request: Any, context: Any) -> Any:
        return self.job_pages[request.page_token]

    def ListChunks(self, request: Any, context: Any) -> Any:
        return self.chunk_pages[request.page_token]


@contextmanager
def served(components: list[Component]) -> Iterator[Served]:
    """A DispatcherServer on 127.0.0.1:0 in a thread, a stub to it, its
    address and an administrator's token (the stub's calls carry it)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = DispatcherServer(components, worker_threads=4)
        holder["server"] = server
        holder["port"] = loop.run_until_complete(server.start("127.0.0.1:0"))
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(30)
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    try:
        token = next(c.security for c in components if c.security).signer.issue(
            "bench", "user", "administrator", 3600
        )[0]
        plain = grpc.insecure_channel(f"127.0.0.1:{holder['port']}", options=options)
        with with_token(plain, token) as channel:
            yield Served(
                jobs_pb2_grpc.JobsServiceStub(channel), f"127.0.0.1:{holder['port']}", token
            )
    finally:
        asyncio.run_coroutine_threadsafe(holder["server"].stop(1), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


def _timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return (time.perf_counter() - started) * 1000


def _all_pages(call: Callable[[str], Any]) -> list[Any]:
    pages, token = [], ""
    while True:
        page = call(token)
        pages.append((token, page))
        token = page.next_page_token
        if not token:
            return pages


def _seed_jobs(db: Database) -> None:
    """10,000 one-chunk jobs in bulk (setup, not measured)."""
    with db.transaction() as session:
        session.execute(
            text(
                "INSERT INTO jobs (name, owner, template_id, chunks_total, chunks_queued,"
                " attributes) SELECT 'job ' || g, 'bench', :t, 1, 1,"
                ' \'{"job_file": {"type": "string", "value": "/s/a.blend",'
                ' "substitute_paths": true}}\'::jsonb FROM generate_series(1, :n) g'
            ),
            {"t": BLENDER_TEMPLATE_ID, "n": LISTED_JOBS},
        )


def run() -> list[Row]:
    canned = _Canned()
    with bench_database("bench_jobs", pool_size=4) as db:
        peer = Component(
            "peer",
            [JOBS_SERVICE],
            lambda s: jobs_pb2_grpc.add_JobsServiceServicer_to_server(canned, s),
            security=security_for(db),
        )
        ours, theirs = _measure(db, build(db, Settings()), peer, canned)
    labels = [
        (f"jobSubmit of a {SUBMIT_CHUNKS:,}-chunk job", "ms"),
        (f"jobGetList: {LISTED_JOBS:,} jobs, all pages (5,000 per page)", "ms"),
        ("jobGet", "ms"),
        (f"chunkGetList: {LISTED_CHUNKS:,}-chunk job, all pages (10,000 per page)", "ms"),
    ]
    peer_name = "bare gRPC call, same payload (pre-built response)"
    return [Row(what, ours[i], theirs[i], peer_name, unit) for i, (what, unit) in enumerate(labels)]


def _measure(
    db: Database, jobs: Component, peer: Component, canned: _Canned
) -> tuple[list[float], list[float]]:
    ours: list[float] = []
    theirs: list[float] = []
    with served([jobs]) as (stub, _, _):
        big = pb.Job(
            name="bench",
            owner="bench",
            parent_id=-1,
            template_id=BLENDER_TEMPLATE_ID,
            start_frame=1,
            end_frame=SUBMIT_CHUNKS,
            by_frame=1,
            packet_size=1,
        )
        submits = [
            _timed(lambda: stub.SubmitJob(pb.SubmitJobRequest(job=big))) for _ in range(RUNS)
        ]
        canned.submit = stub.SubmitJob(pb.SubmitJobRequest(job=big))
        with db.transaction() as session:
            session.execute(text("DELETE FROM jobs"))
        _seed_jobs(db)
        list_jobs = lambda token: stub.ListJobs(  # noqa: E731
            pb.ListJobsRequest(page_size=5000, page_token=token)
        )
        listings = [_timed(lambda: _all_pages(list_jobs)) for _ in range(RUNS)]
        canned.job_pages = dict(_all_pages(list_jobs))
        first_id = canned.job_pages[""].jobs[0].id
        get = pb.GetJobRequest(job_id=first_id)
        gets = [_timed(lambda: stub.GetJob(get)) for _ in range(200)]
        canned.job = stub.GetJob(get)
        huge = stub.SubmitJob(
            pb.SubmitJobRequest(job=pb.Job(**{**_fields(big), "end_frame": LISTED_CHUNKS}))
        )
        list_chunks = lambda token: stub.ListChunks(  # noqa: E731
            pb.ListChunksRequest(job_id=huge.job_id, page_size=10_000, page_token=token)
        )
        chunk_listings = [_timed(lambda: _all_pages(list_chunks)) for _ in range(3)]
        canned.chunk_pages = dict(_all_pages(list_chunks))
    ours = [median(submits), median(listings), median(gets), median(chunk_listings)]
    with served([peer]) as (stub, _, _):
        theirs = [
            median(
                _timed(lambda: stub.SubmitJob(pb.SubmitJobRequest(job=big))) for _ in range(RUNS)
            ),
            median(_timed(lambda: _all_pages(list_jobs_peer(stub))) for _ in range(RUNS)),
            median(_timed(lambda: stub.GetJob(get)) for _ in range(200)),
            median(_timed(lambda: _all_pages(list_chunks_peer(stub))) for _ in range(3)),
        ]
    return ours, theirs


def _fields(job: pb.Job) -> dict[str, Any]:
    return {f.name: v for f, v in job.ListFields()}


def list_jobs_peer(stub: jobs_pb2_grpc.JobsServiceStub) -> Callable[[str], Any]:
    return lambda token: stub.ListJobs(pb.ListJobsRequest(page_size=5000, page_token=token))


def list_chunks_peer(stub: jobs_pb2_grpc.JobsServiceStub) -> Callable[[str], Any]:
    return lambda token: stub.ListChunks(pb.ListChunksRequest(page_size=10_000, page_token=token))


BENCHMARKS["jobs service"] = run
