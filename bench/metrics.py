"""The Prometheus metrics endpoint and the RPC interceptor's cost.

Set-up: a fresh database with 2,000 registered nodes and 10,000 jobs, 500
of them running (rows inserted directly: what is measured is the scrape, not
registration), `dispatcher serve jobs nodes admin` on it with its metrics
endpoint, and a few RPCs of several methods and statuses so the RPC series
exist. Measured:

- a scrape, median of SCRAPES by this process over HTTP (a new connection
  each, as Prometheus does); peer, same run: a bare prometheus-client
  endpoint in its own process serving the same samples (our exposition
  parsed and served back from memory: no database, no locks);
- the database gauges' reading, which the endpoint repeats every 2 s in the
  background (a scrape never waits for it), in process: our two grouped
  statements (the unfinished jobs' counters, through the scheduler's partial
  index; nodes by state) against the same with the obvious queue statement,
  grouping every job's counters (the finished ones included).

And the interceptor's cost on a unary RPC, A/B: the same `dispatcher serve
admin` with the metrics endpoint (RPCs measured) and without (not measured),
the health check (no database) called back to back by one client thread,
rounds alternated; plus the per-call recording alone, in process, against
prometheus-client's plain `labels(...).inc()` / `.observe()` per call.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from bench.common import BENCHMARKS, Row, bench_database, bench_token, dispatcher_process
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from muster_services.core import metrics
from muster_services.core.auth import auth_metadata
from muster_services.core.database import Database
from muster_services.jobs import store as jobs_store
from muster_services.jobs.service import JobsService
from muster_services.jobs.templates import COMMAND_LINE_TEMPLATE_ID
from muster_services.nodes import store as nodes_store

NODES = 2_000
JOBS = 10_000
RUNNING = 500
SCRAPES = 200
READINGS = 30
CALLS = 600
ROUNDS = 31

# The peer: prometheus-client's own endpoint serving a fixed exposition.
PEER = """
import sys, time
from prometheus_client import start_http_server
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

families = list(text_string_to_metric_families(open(sys.argv[1]).read()))

class Fixed:
    def collect(self):
        return families

registry = CollectorRegistry(auto_describe=False)
registry.register(Fixed())
httpd, _ = start_http_server(0, "127.0.0.1", registry)
print(httpd.server_port, flush=True)
time.sleep(3600)
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _farm(db: Database) -> None:
    JobsService(db).templates.seed_templates()
    with db.transaction() as session:
        session.execute(
            text(
                "INSERT INTO nodes (name, host_name, platform, status, paused, pools)"
                " SELECT 'bench-' || i, 'bench-' || i, 'linux', state, state = 'paused',"
                " ARRAY['all'] FROM (SELECT i, (ARRAY['idle','rendering','offline','paused'])"
                "[1 + i % 4] AS state FROM generate_series(1, :n) AS i) AS farm"
            ),
            {"n": NODES},
        )
        session.execute(
            text(
                "INSERT INTO jobs (name, owner, template_id, status, chunks_total,"
                " chunks_running, chunks_completed) SELECT 'job-' || i, 'bench', :template,"
                " CASE WHEN i <= :running THEN 'running' ELSE 'completed' END, 10,"
                " CASE WHEN i <= :running THEN 2 ELSE 0 END,"
                " CASE WHEN i <= :running THEN 8 ELSE 10 END"
                " FROM generate_series(1, :n) AS i"
            ),
            {"n": JOBS, "running": RUNNING, "template": COMMAND_LINE_TEMPLATE_ID},
        )


def _calls(address: str, token: str) -> None:
    """A few RPCs of several methods and statuses: the series a live farm has."""
    with grpc.insecure_channel(address) as channel:
        jobs = jobs_pb2_grpc.JobsServiceStub(channel)
        nodes = nodes_pb2_grpc.NodesServiceStub(channel)
        metadata = auth_metadata(token)
        for _ in range(3):
            jobs.ListJobs(jobs_pb2.ListJobsRequest(page_size=10), metadata=metadata)
            nodes.ListNodes(nodes_pb2.ListNodesRequest(page_size=10), metadata=metadata)
            for job_id, md in ((10**9, metadata), (1, ())):
                with contextlib.suppress(grpc.RpcError):
                    jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=md)


def _scrape_ms(url: str) -> tuple[float, str]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=10) as reply:
        body = reply.read().decode()
    return (time.perf_counter() - started) * 1000, body


def _scrapes_ms(url: str) -> float:
    return statistics.median(_scrape_ms(url)[0] for _ in range(SCRAPES))


# The obvious reading of the queue depth: every job's counters, one statement.
OBVIOUS = (
    "SELECT status, count(*), sum(chunks_total), sum(chunks_queued), sum(chunks_running),"
    " sum(chunks_completed), sum(chunks_failed) FROM jobs WHERE kind = 'job' GROUP BY status"
)


def _reading_ms(db: Database) -> tuple[float, float]:
    """Median ms of one reading of the database gauges: ours, the obvious one."""
    ours = [
        metrics.queue_depth(db, jobs_store.unfinished_jobs),
        metrics.nodes_by_state(db, nodes_store.count_by_state),
    ]

    def ours_ms() -> float:
        started = time.perf_counter()
        for snapshot in ours:
            snapshot.refresh()
        return (time.perf_counter() - started) * 1000

    def obvious_ms() -> float:
        started = time.perf_counter()
        with db.read() as connection:
            connection.execute(text(OBVIOUS)).all()
            nodes_store.count_by_state(connection)
        return (time.perf_counter() - started) * 1000

    with db.read() as connection:
        connection.execute(text("VACUUM ANALYZE jobs"))
        connection.execute(text("VACUUM ANALYZE nodes"))
    ours_runs, obvious_runs = [], []
    for _ in range(READINGS):  # alternated
        ours_runs.append(ours_ms())
        obvious_runs.append(obvious_ms())
    return statistics.median(ours_runs), statistics.median(obvious_runs)


def _peer_ms(exposition: str) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".prom", delete=False) as dump:
        dump.write(exposition)
    proc = subprocess.Popen(
        [sys.executable, "-c", PEER, dump.name], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        url = f"http://127.0.0.1:{port}/metrics"
        _scrape_ms(url)
        return _scrapes_ms(url)
    finally:
        proc.terminate()
        proc.wait(10)
        Path(dump.name).unlink()


def _health_us(address: str) -> float:
    """Median microseconds per health check, one client thread, back to back."""
    with grpc.insecure_channel(address) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check
        request = health_pb2.HealthCheckRequest()
        for _ in range(200):
            check(request)
        started = time.perf_counter()
        for _ in range(CALLS):
            check(request)
        return (time.perf_counter() - started) / CALLS * 1e6


def _recording_us() -> tuple[float, float]:
    """Per-call recording: ours (series resolved once per method and status)
    against prometheus-client's labels() lookup on every call."""
    ours = metrics.rpc_method("/bench.Service/Method")
    naive = ("bench.Service", "Naive", "OK")
    loops = 100_000

    def cached() -> None:
        ours.ended("OK", 0.001)

    def looked_up() -> None:
        metrics.RPC_HANDLED.labels(*naive).inc()
        metrics.RPC_SECONDS.labels(*naive).observe(0.001)

    best = [
        min(timeit.repeat(f, number=loops, repeat=5)) / loops * 1e6 for f in (cached, looked_up)
    ]
    return best[0], best[1]


def run() -> list[Row]:
    with bench_database("bench_metrics", pool_size=2) as db:
        _farm(db)
        port = _free_port()
        url = f"http://127.0.0.1:{port}/metrics"
        with dispatcher_process(
            db, ["jobs", "nodes", "admin"], {"MUSTER_METRICS_LISTEN": f"127.0.0.1:{port}"}
        ) as (address, _):
            _calls(address, bench_token(db))
            _, exposition = _scrape_ms(url)
            series = sum(len(f.samples) for f in text_string_to_metric_families(exposition))
            scrape = _scrapes_ms(url)
        peer = _peer_ms(exposition)
        reading, obvious = _reading_ms(db)
        with (
            dispatcher_process(
                db, ["admin"], {"MUSTER_METRICS_LISTEN": f"127.0.0.1:{_free_port()}"}
            ) as (measured, _),
            dispatcher_process(db, ["admin"]) as (bare, _),
        ):
            on, off = [], []
            for _ in range(ROUNDS):  # alternate so drift hits both alike
                on.append(_health_us(measured))
                off.append(_health_us(bare))
    ours_us, naive_us = _recording_us()
    where = f"{NODES:,} nodes, {JOBS:,} jobs, {series:,} samples"
    return [
        Row(
            f"metrics scrape: {where}",
            scrape,
            peer,
            "bare prometheus-client endpoint, same samples",
            "ms",
        ),
        Row(
            f"database gauges' reading (background, every 2 s): {NODES:,} nodes,"
            f" {JOBS:,} jobs ({RUNNING} unfinished)",
            reading,
            obvious,
            "the queue statement grouping every job's counters",
            "ms",
        ),
        Row(
            "unary RPC (health check), one client thread, RPCs measured",
            statistics.median(on),
            statistics.median(off),
            "same server, metrics off (not measured)",
            "µs/call",
        ),
        Row(
            "recording one RPC's end (counter + histogram), in process",
            ours_us,
            naive_us,
            "prometheus-client labels().inc() + labels().observe() per call",
            "µs/call",
        ),
    ]


BENCHMARKS["metrics"] = run
