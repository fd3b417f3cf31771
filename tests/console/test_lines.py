"""`muster-console` lines say what changed: a chunk's status from and to, its node;
what happened to a node."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from tests.e2e.conftest import online_nodes
from tests.e2e.test_render import eventually, frame_job, job_status
from tests.support import ClientProcess, DispatcherProcess


def test_chunk_lines_name_the_statuses_and_the_node(
    dispatcher: DispatcherProcess, start_agent: Callable[..., Any], shared_tmp: Path
) -> None:
    channel = dispatcher.channel()
    jobs = jobs_pb2_grpc.JobsServiceStub(channel)
    nodes = nodes_pb2_grpc.NodesServiceStub(channel)
    start_agent("console-a")
    [node] = eventually(lambda: online_nodes(nodes), what="agent online")
    env = {**dispatcher.facade_env(), "MUSTER_CLIENT_CONFIG": str(shared_tmp / "none.json")}
    console = ClientProcess("console", dispatcher.address, env=env)
    try:
        console.wait_log("connected to")
        out = shared_tmp / "frames"
        out.mkdir()
        job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=frame_job(out, 1, 1))).job_id
        eventually(lambda: job_status(jobs, job_id) == jobs_pb2.JOB_STATUS_COMPLETED)
        chunk = f"chunk 1 of job {job_id}"
        console.wait_line(f"{chunk}: queued -> assigned, node {node.id}")
        console.wait_line(f"{chunk}: assigned -> completed, node {node.id}")
        # A user's change, without a node: from and to.
        jobs.SetChunkStatus(
            jobs_pb2.SetChunkStatusRequest(
                job_id=job_id, chunk_id=1, status=jobs_pb2.CHUNK_STATUS_QUEUED
            )
        )
        console.wait_line(f"{chunk}: completed -> queued")
        assert not [line for line in console.printed if f"{chunk} changed" in line]
        # Node lines say what happened to the node.
        nodes.PauseNode(nodes_pb2.PauseNodeRequest(node_id=node.id))
        console.wait_line(f"node {node.id} paused")
        nodes.ResumeNode(nodes_pb2.ResumeNodeRequest(node_id=node.id))
        console.wait_line(f"node {node.id} resumed")
    finally:
        console.kill()
        channel.close()
