"""A real render: the dispatcher, three agent processes, real commands."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from farm.common.v1 import common_pb2
from farm.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from farm.nodes.v1 import nodes_pb2_grpc
from services.jobs.templates import COMMAND_LINE_TEMPLATE_ID
from tests.e2e.conftest import online_nodes


def eventually(check: Callable[[], Any], timeout: float = 60, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what or check}")


def frame_job(out: Path, frames: int, packet: int, seconds: float = 0.0, **fields: Any) -> Any:
    """Each chunk appends one line to one file per frame of its range."""
    script = (
        f"for f in $(seq {{start}} {{end}}); do sleep {seconds}; "
        f"echo rendered >> {out}/frame_$f.txt; echo frame $f; done"
    )
    return jobs_pb2.Job(
        name="frames",
        owner="alice",
        parent_id=-1,
        template_id=COMMAND_LINE_TEMPLATE_ID,
        start_frame=1,
        end_frame=frames,
        by_frame=1,
        packet_size=packet,
        priority=50,
        attributes=[
            jobs_pb2.JobAttribute(name="executable", string_value="/bin/sh"),
            jobs_pb2.JobAttribute(name="arguments", string_value=f"-c '{script}'"),
        ],
        **fields,
    )


def job_status(jobs: jobs_pb2_grpc.JobsServiceStub, job_id: int) -> int:
    return int(jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id)).job.status)


def test_three_agents_render_a_thirty_frame_job_once_per_frame(
    jobs: jobs_pb2_grpc.JobsServiceStub,
    nodes: nodes_pb2_grpc.NodesServiceStub,
    start_agent: Callable[..., Any],
    shared_tmp: Path,
) -> None:
    out = shared_tmp / "frames"
    out.mkdir()
    for name in ("e2e-a", "e2e-b", "e2e-c"):
        start_agent(name)
    eventually(lambda: len(online_nodes(nodes)) == 3, what="three nodes online")

    job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=frame_job(out, 30, 3))).job_id
    eventually(
        lambda: job_status(jobs, job_id) == jobs_pb2.JOB_STATUS_COMPLETED, what="job completed"
    )

    files = sorted(out.glob("frame_*.txt"))
    assert len(files) == 30
    assert all(f.read_text() == "rendered\n" for f in files)
    runs = jobs.ListChunkHistory(jobs_pb2.ListChunkHistoryRequest(job_id=job_id)).chunk_runs
    assert sorted(r.chunk_id for r in runs) == list(range(1, 11))
    assert {r.outcome for r in runs} == {common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED}
    assert len({r.node_id for r in runs}) >= 2  # the work was shared


def test_an_agent_killed_mid_chunk_loses_nothing(
    jobs: jobs_pb2_grpc.JobsServiceStub,
    nodes: nodes_pb2_grpc.NodesServiceStub,
    start_agent: Callable[..., Any],
    shared_tmp: Path,
) -> None:
    out = shared_tmp / "frames"
    out.mkdir()
    victim = start_agent("e2e-victim")
    eventually(lambda: len(online_nodes(nodes)) == 1, what="victim online")
    job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=frame_job(out, 2, 2, seconds=3))).job_id
    eventually(lambda: job_status(jobs, job_id) == jobs_pb2.JOB_STATUS_RUNNING, what="running")
    time.sleep(1)
    victim.kill()  # SIGKILL mid-chunk: its child keeps nothing, reports nothing
    start_agent("e2e-rescuer")
    eventually(
        lambda: job_status(jobs, job_id) == jobs_pb2.JOB_STATUS_COMPLETED,
        timeout=90,
        what="job completed on the rescuer",
    )
    runs = jobs.ListChunkHistory(jobs_pb2.ListChunkHistoryRequest(job_id=job_id)).chunk_runs
    assert [r.outcome for r in runs] == [
        common_pb2.CHUNK_RUN_OUTCOME_LOST,
        common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED,
    ]
    assert runs[0].node_name == "e2e-victim" and runs[1].node_name == "e2e-rescuer"


def test_a_chunk_that_times_out_is_requeued_then_failed_at_the_maximum(
    jobs: jobs_pb2_grpc.JobsServiceStub,
    nodes: nodes_pb2_grpc.NodesServiceStub,
    start_agent: Callable[..., Any],
    shared_tmp: Path,
) -> None:
    out = shared_tmp / "frames"
    out.mkdir()
    start_agent("e2e-slow")
    eventually(lambda: len(online_nodes(nodes)) == 1, what="agent online")
    job = frame_job(out, 1, 1, seconds=30, chunk_timeout_seconds=1, max_chunk_requeues=1)
    job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=job)).job_id
    eventually(
        lambda: job_status(jobs, job_id) == jobs_pb2.JOB_STATUS_COMPLETED_WITH_ERRORS,
        timeout=60,
        what="the job ends with errors",
    )
    runs = jobs.ListChunkHistory(jobs_pb2.ListChunkHistoryRequest(job_id=job_id)).chunk_runs
    assert [r.outcome for r in runs] == [common_pb2.CHUNK_RUN_OUTCOME_TIMED_OUT] * 2
    chunk = jobs.GetChunk(jobs_pb2.GetChunkRequest(job_id=job_id, chunk_id=1)).chunk
    assert (chunk.status, chunk.requeue_count) == (jobs_pb2.CHUNK_STATUS_FAILED, 1)
