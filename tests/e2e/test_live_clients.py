"""Consoles and a notificator watching a real render."""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from muster_proto.admin.v1 import admin_pb2, admin_pb2_grpc
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from tests.e2e.conftest import online_nodes
from tests.e2e.test_render import eventually, frame_job
from tests.notificator.test_notificator import notificator_process
from tests.support import DispatcherProcess, LiveClient


def _collect(
    client: LiveClient, want: Callable[[list[Any]], bool], timeout: float = 60
) -> list[Any]:
    seen: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not want(seen):
        with contextlib.suppress(queue.Empty):
            seen.append(client.next(timeout=1))
    return seen


def test_consoles_and_a_notificator_follow_a_real_render(
    dispatcher: DispatcherProcess,
    channel: grpc.Channel,
    jobs: jobs_pb2_grpc.JobsServiceStub,
    nodes: nodes_pb2_grpc.NodesServiceStub,
    start_agent: Callable[..., Any],
    shared_tmp: Path,
) -> None:
    start_agent("e2e-live")
    node = eventually(lambda: online_nodes(nodes), what="agent online")[0]
    nodes.SetNodeRealtimeLog(nodes_pb2.SetNodeRealtimeLogRequest(node_id=node.id, enabled=True))
    console = LiveClient(channel, "alice")
    notificator = notificator_process(dispatcher.address, "--only", "job_started,job_completed")
    try:
        notificator.wait_log("connected to")
        admin_pb2_grpc.AdminServiceStub(channel).AddLogEntry(
            admin_pb2.AddLogEntryRequest(
                message="render night starts", level=admin_pb2.LOG_LEVEL_INFO
            )
        )
        out = shared_tmp / "frames"
        out.mkdir()
        job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=frame_job(out, 2, 1))).job_id

        def finished(events: list[Any]) -> bool:
            return any(e.job_changed.job.status == jobs_pb2.JOB_STATUS_COMPLETED for e in events)

        events = _collect(console, finished)
        assert finished(events), [e.WhichOneof("event") for e in events]
        assert any(e.dispatcher_log.message == "render night starts" for e in events)
        named = [e.job_changed.job for e in events if e.HasField("job_changed")]
        assert {j.id for j in named} == {job_id} and all(j.name == "frames" for j in named)
        log_text = [
            line.text
            for e in events
            if e.HasField("chunk_log_lines")
            for line in e.chunk_log_lines.lines
        ]
        assert "frame 1" in log_text and "frame 2" in log_text
        ids = [e.event_id for e in events]
        # Each once, in the bus's (commit) order, which ids need not follow
        # (docs/clients.md); resuming is tested in tests/nodes.
        assert len(ids) == len(set(ids))

        lines = [notificator.lines.get(timeout=30) for _ in range(2)]
        assert "job started" in lines[0] and "frames" in lines[0]
        assert "job completed" in lines[1]
        assert notificator.lines.empty()  # no chunk started: its preferences exclude it
    finally:
        console.close()
        notificator.stop()
