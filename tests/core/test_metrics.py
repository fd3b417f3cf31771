"""Prometheus metrics (muster_services/core/metrics.py): the endpoint a server
serves, the RPC interceptor's counts, the database snapshots, the settings,
and the documentation of every metric (docs/metrics.md)."""

from __future__ import annotations

import asyncio
import re
import socket
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from muster_services import cli
from muster_services.core import metrics
from muster_services.core.database import Database
from muster_services.core.server import DispatcherServer
from muster_services.core.settings import Settings
from muster_services.jobs import store as jobs_store
from muster_services.jobs.component import build as build_jobs
from muster_services.jobs.hooks import HookError, HookRunner
from muster_services.jobs.service import JobsService
from muster_services.nodes import store as nodes_store
from muster_services.nodes.component import build as build_nodes
from tests.e2e.test_render import frame_job
from tests.jobs.conftest import SPEC
from tests.support import REPO, auth

DOC = REPO / "docs" / "metrics.md"


@dataclass(frozen=True)
class Scrape:
    """One scrape of an endpoint, parsed by prometheus-client's own parser."""

    samples: list[Sample]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called `name` that carry these labels."""
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def labels(self, name: str, label: str) -> set[str]:
        return {s.labels[label] for s in self.samples if s.name == name and label in s.labels}


def scrape(url: str) -> Scrape:
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    return Scrape([s for family in text_string_to_metric_families(text) for s in family.samples])


def _serve(
    db: Database, scenario: Callable[[DispatcherServer, grpc.aio.Channel], Awaitable[Any]]
) -> Any:
    """Jobs and nodes on one real server with its metrics endpoint on a free port."""

    async def main() -> Any:
        settings = Settings(event_poll_seconds=0.2)
        server = DispatcherServer([build_jobs(db, settings), build_nodes(db, settings)], 4)
        port = await server.start("127.0.0.1:0", metrics_listen="127.0.0.1:0")
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                return await scenario(server, channel)
        finally:
            await server.stop(1)

    return asyncio.run(main())


def _url(server: DispatcherServer) -> str:
    assert server.metrics is not None
    return server.metrics.url


async def _scrape(server: DispatcherServer) -> Scrape:
    return await asyncio.to_thread(scrape, _url(server))


async def _scrape_until(
    server: DispatcherServer, name: str, expected: float, **labels: str
) -> Scrape:
    """A scrape where `name` has the expected value (waiting up to 10 s for it)."""
    return await _scrape_where(
        server, lambda found: found.value(name, **labels) == expected, f"{name}{labels}"
    )


async def _scrape_where(
    server: DispatcherServer, holds: Callable[[Scrape], bool], what: str
) -> Scrape:
    """A scrape for which `holds` is true (waiting up to 10 s for it). A scrape
    is not one instant: it reads the metrics one after another, so values that
    change together may show one before and one after the change."""
    for _ in range(50):
        found = await _scrape(server)
        if holds(found):
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"no scrape showed {what}")


def test_rpcs_are_counted_by_method_and_status_and_timed(db: Database) -> None:
    async def scenario(server: DispatcherServer, channel: grpc.aio.Channel) -> None:
        jobs = jobs_pb2_grpc.JobsServiceStub(channel)
        before = await _scrape(server)
        await jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=auth())
        await jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=auth())
        for job_id, metadata in ((424242, auth()), (1, ())):
            with pytest.raises(grpc.aio.AioRpcError):
                await jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=metadata)
        after = await _scrape(server)

        def moved(name: str, **labels: str) -> float:
            return after.value(name, **labels) - before.value(name, **labels)

        service = "farm.jobs.v1.JobsService"
        assert moved("muster_rpc_handled_total", service=service, method="ListJobs", code="OK") == 2
        assert moved("muster_rpc_duration_seconds_count", method="ListJobs", code="OK") == 2
        assert moved("muster_rpc_duration_seconds_sum", method="ListJobs") > 0
        assert moved("muster_rpc_handled_total", method="GetJob", code="NOT_FOUND") == 1
        assert moved("muster_rpc_handled_total", method="GetJob", code="UNAUTHENTICATED") == 1
        # Series are per method and status, never per request.
        assert after.labels("muster_rpc_handled_total", "method") >= {"ListJobs", "GetJob"}

    _serve(db, scenario)


def test_a_stream_is_gauged_while_open_and_counted_when_it_ends(db: Database) -> None:
    async def scenario(server: DispatcherServer, channel: grpc.aio.Channel) -> None:
        clients = nodes_pb2_grpc.ClientsServiceStub(channel)
        before = await _scrape(server)
        call = clients.Connect(
            nodes_pb2.ConnectRequest(
                host="ws-1", version="test", client_kind=nodes_pb2.CLIENT_KIND_CONSOLE
            ),
            metadata=auth("alice", "user"),
        )
        first: Any = await call.read()
        assert first.WhichOneof("message") == "accepted"
        live = await _scrape(server)
        assert live.value("muster_rpc_streams_open", method="Connect") == 1
        call.cancel()

        def ended(scrape: Scrape) -> float:
            # Counted once when it ends. A console stream's handler returns
            # normally when its client leaves: whether gRPC has marked the call
            # cancelled by then is a race, so the code is CANCELLED or OK.
            return sum(
                scrape.value("muster_rpc_handled_total", method="Connect", code=code)
                for code in ("CANCELLED", "OK")
            )

        # The registry is the process's: other tests' streams count in it too.
        # The interceptor counts the call and then closes its gauge; a scrape
        # that shows both has seen the whole end.
        after = await _scrape_where(
            server,
            lambda found: (
                found.value("muster_rpc_streams_open", method="Connect") == 0
                and ended(found) > ended(before)
            ),
            "the Connect stream closed and counted",
        )
        codes = {
            s.labels.get("code"): s.value
            for s in after.samples
            if s.name == "muster_rpc_handled_total" and s.labels.get("method") == "Connect"
        }
        assert ended(after) - ended(before) == 1, f"Connect streams ended by code: {codes}"
        # A stream's lifetime is not a latency: no histogram series for it.
        assert after.value("muster_rpc_duration_seconds_count", method="Connect") == 0

    _serve(db, scenario)


def test_queue_depth_and_nodes_by_state_come_from_the_database(db: Database) -> None:
    async def scenario(server: DispatcherServer, channel: grpc.aio.Channel) -> None:
        jobs = jobs_pb2_grpc.JobsServiceStub(channel)
        before = await _scrape(server)
        assert before.value("muster_jobs") == 0
        assert before.labels("muster_chunks", "status") == {
            "queued",
            "running",
            "completed",
            "failed",
            "other",
        }
        assert before.labels("muster_nodes", "state") == set()  # no node yet
        job = frame_job(Path("/nonexistent"), 12, 3)
        await jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=job), metadata=auth())
        # Read again in the background (every SNAPSHOT_SECONDS), not by the scrape.
        after = await _scrape_until(server, "muster_jobs", 1, status="queued")
        assert after.value("muster_chunks", status="queued") == 4
        assert after.value("muster_chunks", status="running") == 0

    _serve(db, scenario)


def test_a_scrape_serves_the_last_reading_of_the_database(db: Database) -> None:
    snapshot = metrics.queue_depth(db, jobs_store.unfinished_jobs)
    registry = metrics.exposition([snapshot])
    assert registry.get_sample_value("muster_jobs", {"status": "queued"}) is None
    service = JobsService(db)
    service.templates.seed_templates()
    service.queue.submit_job(SPEC)
    # Until the next reading the scrape serves the last one: the new job unseen.
    assert registry.get_sample_value("muster_jobs", {"status": "queued"}) is None
    snapshot.refresh()
    assert registry.get_sample_value("muster_jobs", {"status": "queued"}) == 1
    assert registry.get_sample_value("muster_chunks", {"status": "queued"}) == SPEC.end_frame


def test_a_hook_call_is_timed_and_its_failure_counted(shared_tmp: Path) -> None:
    hooks = shared_tmp / "hooks"
    hooks.mkdir()
    (hooks / "farm.py").write_text(
        "def onDispatcherIdling():\n    pass\n\n"
        "def onJobSubmit(job):\n    raise RuntimeError('refused')\n"
    )
    registry = metrics.exposition()

    def seen(name: str, hook: str) -> float:
        return registry.get_sample_value(name, {"callback": hook}) or 0.0

    calls, failures = (
        seen("muster_callback_duration_seconds_count", "onJobSubmit"),
        seen("muster_callback_failures_total", "onJobSubmit"),
    )
    runner = HookRunner(hooks, timeout=10)
    try:
        runner.call("onDispatcherIdling")
        with pytest.raises(HookError):
            runner.call("onJobSubmit", {})
    finally:
        runner.close()
    assert seen("muster_callback_duration_seconds_count", "onDispatcherIdling") >= 1
    assert seen("muster_callback_duration_seconds_count", "onJobSubmit") == calls + 1
    assert seen("muster_callback_failures_total", "onJobSubmit") == failures + 1


def test_an_endpoint_on_a_taken_port_is_refused_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            metrics.Endpoint(f"127.0.0.1:{port}")


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["run"], {}, "127.0.0.1:9464"),
        (["run"], {"MUSTER_LISTEN": "127.0.0.1:0"}, "127.0.0.1:0"),
        (["run"], {"MUSTER_LISTEN": "0.0.0.0:7000"}, "0.0.0.0:9464"),
        (["run"], {"MUSTER_METRICS_LISTEN": ""}, ""),
        (["run", "--metrics-listen", "off"], {}, ""),
        (["run", "--metrics-listen", "127.0.0.1:9999"], {}, "127.0.0.1:9999"),
        (["serve", "jobs"], {}, ""),
        (["serve", "jobs"], {"MUSTER_METRICS_LISTEN": "0.0.0.0:9464"}, "0.0.0.0:9464"),
        (["serve", "nodes", "--metrics-listen", ":9465"], {}, ":9465"),
    ],
)
def test_where_the_metrics_endpoint_listens(
    argv: list[str], env: dict[str, str], expected: str
) -> None:
    settings = Settings.from_env(env)
    assert cli._metrics_listen(cli._parser().parse_args(argv), settings, env) == expected


def test_every_metric_is_documented(db: Database) -> None:
    documented = set(re.findall(r"^\| `(muster_\w+)`", DOC.read_text(), flags=re.MULTILINE))
    snapshots = [
        metrics.queue_depth(db, jobs_store.unfinished_jobs),
        metrics.nodes_by_state(db, nodes_store.count_by_state),
    ]
    exposed = {
        f"{family.name}_total" if family.type == "counter" else family.name
        for family in metrics.exposition(snapshots).collect()
        if family.name.startswith("muster_")
    }
    assert exposed == documented
