"""The scheduler's leader dies mid-render: a standby takes over, nothing is
booked twice, everything renders once."""

from __future__ import annotations

import itertools
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2_grpc
from muster_services.core.database import Database
from tests.e2e.conftest import free_port, online_nodes
from tests.e2e.test_render import eventually, frame_job, job_status
from tests.support import AgentProcess, DispatcherProcess, authorized_channel


@pytest.fixture
def split_farm(database_url: str, shared_tmp: Path) -> Iterator[dict[str, DispatcherProcess]]:
    first, second = free_port(), free_port()
    common = {
        "MUSTER_DATABASE_URL": database_url,
        "MUSTER_EVENT_POLL_SECONDS": "1",
        "MUSTER_HOOKS_DIR": str(shared_tmp / "no-hooks"),
    }
    leader = DispatcherProcess(["serve", "jobs"], {**common, "MUSTER_LISTEN": f"127.0.0.1:{first}"})
    standby = DispatcherProcess(
        ["serve", "jobs"], {**common, "MUSTER_LISTEN": f"127.0.0.1:{second}"}
    )
    nodes = DispatcherProcess(
        ["serve", "nodes", "admin"],
        {**common, "MUSTER_JOBS_ADDRESS": f"ipv4:127.0.0.1:{first},127.0.0.1:{second}"},
    )
    procs = {"leader": leader, "standby": standby, "nodes": nodes}
    yield procs
    for proc in procs.values():
        proc.kill()


def test_the_standby_scheduler_takes_over_and_nothing_runs_twice(
    split_farm: dict[str, DispatcherProcess], db: Database, shared_tmp: Path
) -> None:
    out = shared_tmp / "frames"
    out.mkdir()
    nodes_address = split_farm["nodes"].address
    agents = [
        AgentProcess(nodes_address, f"e2e-fo-{n}", shared_tmp / "agents" / str(n)) for n in range(3)
    ]
    try:
        with authorized_channel(nodes_address) as ch:
            nodes = nodes_pb2_grpc.NodesServiceStub(ch)
            eventually(lambda: len(online_nodes(nodes)) == 3, what="three agents online")
        with authorized_channel(split_farm["standby"].address) as ch:
            jobs = jobs_pb2_grpc.JobsServiceStub(ch)
            job_id = jobs.SubmitJob(
                jobs_pb2.SubmitJobRequest(job=frame_job(out, 24, 1, seconds=0.3))
            ).job_id

            def done() -> int:
                return int(jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id)).job.chunks_completed)

            eventually(lambda: done() >= 4, what="a few chunks done")
            split_farm["leader"].stop(signal.SIGKILL)  # the leader dies mid-render
            eventually(
                lambda: job_status(jobs, job_id) == jobs_pb2.JOB_STATUS_COMPLETED,
                timeout=120,
                what="the render completes under the standby",
            )
    finally:
        for agent in agents:
            agent.kill()

    assert sorted(f.read_text() for f in out.glob("frame_*.txt")) == ["rendered\n"] * 24
    with db.transaction() as session:
        runs = session.execute(
            text(
                "SELECT chunk_number, started_at, ended_at, outcome FROM chunk_runs"
                " WHERE job_id = :j ORDER BY chunk_number, started_at"
            ),
            {"j": job_id},
        ).all()
        live = session.execute(text("SELECT count(*) FROM chunk_assignments")).scalar_one()
    assert live == 0
    by_chunk: dict[int, list[tuple[Any, Any, str]]] = {}
    for chunk, started, ended, outcome in runs:
        by_chunk.setdefault(chunk, []).append((started, ended, outcome))
    assert sorted(by_chunk) == list(range(1, 25))
    for chunk, chunk_runs in by_chunk.items():
        assert [o for *_, o in chunk_runs].count("succeeded") == 1, chunk
        # Never two runs of one chunk at once.
        for (_, end, _), (start, _, _) in itertools.pairwise(chunk_runs):
            assert end is not None and end <= start, chunk
