"""The metrics endpoint of a running dispatcher during a real render by real
agents: the counters and gauges move (docs/metrics.md)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2_grpc
from tests.core.test_metrics import Scrape, scrape
from tests.e2e.conftest import free_port
from tests.e2e.test_render import eventually, farm, frame_job, job_status
from tests.support import DispatcherProcess, LiveClient, health_status


@pytest.fixture(autouse=True)
def metrics_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The dispatcher of these tests (the `dispatcher` fixture, which passes
    on this environment) serves its metrics here."""
    port = free_port()
    monkeypatch.setenv("MUSTER_METRICS_LISTEN", f"127.0.0.1:{port}")
    yield f"http://127.0.0.1:{port}/metrics"


def test_a_render_moves_the_counters_and_gauges(
    dispatcher: DispatcherProcess,
    channel: grpc.Channel,
    jobs: jobs_pb2_grpc.JobsServiceStub,
    nodes: nodes_pb2_grpc.NodesServiceStub,
    start_agent: Callable[..., Any],
    shared_tmp: Path,
    metrics_url: str,
) -> None:
    assert f"metrics at {metrics_url}" in "\n".join(dispatcher.output)
    before = scrape(metrics_url)
    assert before.value("muster_chunks_dispatched_total") == 0

    out = farm(nodes, start_agent, shared_tmp, "metrics-a", "metrics-b")
    # Nodes by state (a database snapshot, refreshed every 2 s at most).
    eventually(
        lambda: (
            scrape(metrics_url).value("muster_nodes", paused="false")
            - scrape(metrics_url).value("muster_nodes", state="offline")
            == 2
        ),
        timeout=10,
        what="two nodes online in the metrics",
    )
    console = LiveClient(channel, "watcher")
    try:
        live = scrape(metrics_url)
        assert live.value("muster_rpc_streams_open", method="Session") == 2  # the agents
        assert live.value("muster_rpc_streams_open", method="Connect") == 1  # the console
    finally:
        console.close()

    # Chunks of 2 s on two nodes: about 6 s of rendering, so that the database
    # gauges (a snapshot every 2 s) see it running; at 0.5 s a fast render
    # could end between two snapshots.
    job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=frame_job(out, 6, 1, seconds=2.0))).job_id
    # Queue depth while the job renders: its chunks by status.
    busy = eventually(
        lambda: (s := scrape(metrics_url)).value("muster_chunks", status="running") >= 1 and s,
        timeout=30,
        what="the job's chunks running in the metrics",
    )
    assert busy.value("muster_jobs", status="running") == 1
    assert busy.value("muster_chunks") == 6
    assert busy.value("muster_chunks", status="completed") < 6
    eventually(
        lambda: job_status(jobs, job_id) == jobs_pb2.JOB_STATUS_COMPLETED, what="job completed"
    )
    with pytest.raises(grpc.RpcError):
        jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id + 1000))

    # Nothing left to render: the finished job leaves the queue depth.
    after: Scrape = eventually(
        lambda: (s := scrape(metrics_url)).value("muster_jobs") == 0 and s,
        timeout=10,
        what="the queue empty in the metrics",
    )
    assert after.value("muster_chunks") == 0
    assert after.value("muster_chunks_dispatched_total") == 6
    assert after.value("muster_chunk_runs_ended_total", status="completed") == 6
    assert after.value("muster_scheduler_tick_seconds_count") > before.value(
        "muster_scheduler_tick_seconds_count"
    )
    # RPCs by method and status: the submission, the refused read, the ends
    # of the console stream and of the agents' render reports.
    assert after.value("muster_rpc_handled_total", method="SubmitJob", code="OK") == 1
    assert after.value("muster_rpc_duration_seconds_count", method="SubmitJob", code="OK") == 1
    assert after.value("muster_rpc_handled_total", method="GetJob", code="NOT_FOUND") == 1
    assert after.value("muster_rpc_handled_total", method="Connect", code="CANCELLED") == 1
    assert after.value("muster_rpc_streams_open", method="Connect") == 0
    assert after.value("muster_rpc_handled_total", service="farm.agent.v1.AgentService") > 0
    # The nodes service's own bus consumers report their lag.
    assert after.labels("muster_event_bus_lag_seconds", "consumer") >= {"nodes-agents"}


def test_dispatcher_run_serves_its_metrics_beside_the_grpc_port(
    database_url: str, shared_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `dispatcher run`'s own default: beside a free gRPC port, a free port.
    monkeypatch.delenv("MUSTER_METRICS_LISTEN")
    run = DispatcherProcess(
        ["run", "--agents", "0"],
        {"MUSTER_DATABASE_URL": database_url, "MUSTER_DATA_DIR": str(shared_tmp / "run")},
    )
    try:
        found = re.search(r"metrics at (http://127\.0\.0\.1:(\d+)/metrics)", "\n".join(run.output))
        assert found is not None, run.output
        assert int(found[2]) not in (0, 9464)
        with grpc.insecure_channel(run.address) as channel:
            assert health_status(channel, "farm.jobs.v1.JobsService") == "SERVING"
        seen = scrape(found[1])
        assert seen.value("muster_rpc_handled_total", method="Check", code="OK") >= 1
        assert seen.labels("muster_chunks", "status") >= {"queued", "running"}
    finally:
        run.stop()
