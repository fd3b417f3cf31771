"""Pools an agent declares decide where a real render runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from tests.e2e.conftest import online_nodes
from tests.e2e.test_render import completed_history, eventually, frame_job


def test_a_job_for_a_pool_renders_only_on_the_agent_declaring_it(
    jobs: jobs_pb2_grpc.JobsServiceStub,
    nodes: nodes_pb2_grpc.NodesServiceStub,
    start_agent: Callable[..., Any],
    shared_tmp: Path,
) -> None:
    out = shared_tmp / "pool-frames"
    out.mkdir()
    start_agent("pool-plain")
    start_agent("pool-gpu", env={"MUSTER_AGENT_POOLS": "gpu,fast"})
    eventually(lambda: len(online_nodes(nodes)) == 2, what="two nodes online")
    (gpu,) = nodes.ListNodes(nodes_pb2.ListNodesRequest(pool="GPU")).nodes
    assert gpu.name == "pool-gpu" and list(gpu.pools) == ["gpu", "fast"]

    job = frame_job(out, 6, 1, seconds=0.2, included_pools=["gpu"])
    job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=job)).job_id
    runs = completed_history(jobs, job_id, "the pool job completed")
    assert len(sorted(out.glob("frame_*.txt"))) == 6
    assert {r.node_id for r in runs} == {gpu.id}
