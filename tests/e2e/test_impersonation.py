"""onDispatcherOverrideImpersonationUser: a real hook picks the OS user a real
agent runs a chunk as; a user the agent cannot become fails the chunk."""

from __future__ import annotations

import os
import pwd
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2_grpc
from muster_services.core.database import Database
from muster_services.jobs.templates import COMMAND_LINE_TEMPLATE_ID
from tests.e2e.conftest import online_nodes
from tests.e2e.test_render import eventually, job_status


def _job(name: str, script: str) -> jobs_pb2.Job:
    return jobs_pb2.Job(
        name=name,
        owner="alice",
        parent_id=-1,
        template_id=COMMAND_LINE_TEMPLATE_ID,
        start_frame=1,
        end_frame=1,
        by_frame=1,
        packet_size=1,
        max_chunk_requeues=0,
        attributes=[
            jobs_pb2.JobAttribute(name="executable", string_value="/bin/sh"),
            jobs_pb2.JobAttribute(name="arguments", string_value=f"-c '{script}'"),
        ],
    )


def _log(db: Database, job_id: int) -> list[str]:
    """The stored log lines of the job's chunk 1 (no RPC reads chunk logs yet)."""
    with db.transaction() as session:
        query = text(
            "SELECT l.line FROM chunk_run_logs l JOIN chunk_runs r ON r.id = l.run_id"
            " WHERE r.job_id = :job AND r.chunk_number = 1 ORDER BY l.seq"
        )
        return list(session.execute(query, {"job": job_id}).scalars())


def test_the_hook_picks_the_user_the_agent_runs_the_chunk_as(
    jobs: jobs_pb2_grpc.JobsServiceStub,
    nodes: nodes_pb2_grpc.NodesServiceStub,
    start_agent: Callable[..., Any],
    hooks_dir: Path,
    shared_tmp: Path,
    db: Database,
) -> None:
    if os.geteuid() != 0:
        pytest.skip("the agent must run as root to start processes as another user")
    (hooks_dir / "run_as.py").write_text(
        textwrap.dedent(
            """
            def onDispatcherOverrideImpersonationUser(job, chunk, node):
                if job.getName().startswith("as-nobody"):
                    return "nobody"
                if job.getName().startswith("as-ghost"):
                    return "no-such-user-xyz"
                return None  # the agent's own user
            """
        )
    )
    out = shared_tmp / "out"
    out.mkdir()
    out.chmod(0o777)
    start_agent("e2e-runas")
    eventually(lambda: len(online_nodes(nodes)) == 1, what="agent online")

    nobody = jobs.SubmitJob(
        jobs_pb2.SubmitJobRequest(job=_job("as-nobody", f"id -u > {out}/nobody.txt"))
    ).job_id
    eventually(
        lambda: job_status(jobs, nobody) == jobs_pb2.JOB_STATUS_COMPLETED, what="nobody's job"
    )
    assert (out / "nobody.txt").read_text().strip() == str(pwd.getpwnam("nobody").pw_uid)

    own = jobs.SubmitJob(
        jobs_pb2.SubmitJobRequest(job=_job("as-agent", f"id -u > {out}/agent.txt"))
    ).job_id
    eventually(lambda: job_status(jobs, own) == jobs_pb2.JOB_STATUS_COMPLETED, what="own job")
    assert (out / "agent.txt").read_text().strip() == "0"

    ghost = jobs.SubmitJob(
        jobs_pb2.SubmitJobRequest(job=_job("as-ghost", f"id -u > {out}/ghost.txt"))
    ).job_id

    def first_run() -> Any:
        request = jobs_pb2.ListChunkHistoryRequest(job_id=ghost)
        runs = jobs.ListChunkHistory(request).chunk_runs
        return runs and runs[0].outcome != common_pb2.CHUNK_RUN_OUTCOME_RUNNING and runs[0]

    run = eventually(first_run, what="ghost's chunk ended")
    message = "cannot run as user 'no-such-user-xyz': no such user on this node"
    assert (run.outcome, run.message) == (common_pb2.CHUNK_RUN_OUTCOME_FAILED, message)
    assert not (out / "ghost.txt").exists()  # never ran as the agent instead
    eventually(lambda: message in _log(db, ghost), what="the reason in the chunk log")
