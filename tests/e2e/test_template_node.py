"""A studio template's code runs on the render node: the real dispatcher
(which loads the template file from its templates folder), a real agent
process and real commands built by the template's callbacks."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import select

from muster_gateway.template_engine import version_of
from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2_grpc
from muster_services.core.database import Database
from muster_services.jobs.tables import chunk_run_logs, chunk_runs
from tests.agent.studio_template import SOURCE
from tests.e2e.conftest import online_nodes
from tests.e2e.test_render import eventually, job_status

TEMPLATE_ID = 1701
VERSION = version_of(SOURCE)


def install_template(jobs: jobs_pb2_grpc.JobsServiceStub, templates_dir: Path) -> None:
    """The studio's template file in the dispatcher's templates folder, loaded."""
    (templates_dir / "studio_shell.py").write_text(SOURCE)

    def loaded() -> bool:
        try:
            found = jobs.GetTemplate(jobs_pb2.GetTemplateRequest(template_id=TEMPLATE_ID))
        except grpc.RpcError:
            return False
        return found.template.version == VERSION

    eventually(loaded, 30, "the studio template loaded")


def run_log(database_url: str, job_id: int) -> str:
    db = Database(database_url, pool_size=1)
    try:
        with db.read_session() as session:
            rows = session.execute(
                select(chunk_run_logs.c.line)
                .join(chunk_runs, chunk_runs.c.id == chunk_run_logs.c.run_id)
                .where(chunk_runs.c.job_id == job_id)
                .order_by(chunk_runs.c.id, chunk_run_logs.c.seq)
            ).all()
        return "\n".join(r.line for r in rows)
    finally:
        db.dispose()


def studio_job(name: str, frames: int, packet: int, script: str, **attributes: str) -> Any:
    return jobs_pb2.Job(
        name=name,
        owner="alice",
        parent_id=-1,
        template_id=TEMPLATE_ID,
        start_frame=1,
        end_frame=frames,
        by_frame=1,
        packet_size=packet,
        priority=50,
        attributes=[
            jobs_pb2.JobAttribute(name=k, string_value=v)
            for k, v in {"script": script, **attributes}.items()
        ],
    )


def first_run(jobs: jobs_pb2_grpc.JobsServiceStub, job_id: int, what: str) -> jobs_pb2.ChunkRun:
    def ended() -> list[jobs_pb2.ChunkRun]:
        runs = jobs.ListChunkHistory(jobs_pb2.ListChunkHistoryRequest(job_id=job_id)).chunk_runs
        return [r for r in runs if r.HasField("end_time")]

    run: jobs_pb2.ChunkRun = eventually(ended, timeout=60, what=what)[0]
    # A failed chunk goes back to the queue: this test has seen what it needed.
    jobs.DeleteJob(jobs_pb2.DeleteJobRequest(job_id=job_id))
    return run


def test_a_studio_template_runs_on_the_node_with_its_code_fetched_once_per_version(
    database_url: str,
    jobs: jobs_pb2_grpc.JobsServiceStub,
    nodes: nodes_pb2_grpc.NodesServiceStub,
    start_agent: Callable[..., Any],
    shared_tmp: Path,
    templates_dir: Path,
) -> None:
    install_template(jobs, templates_dir)
    prefs = shared_tmp / "prefs.json"
    prefs.write_text(json.dumps({str(TEMPLATE_ID): {"RENDERER_NAME": "node-renderer"}}))
    agent = start_agent(
        "tpl-node",
        env={"MUSTER_AGENT_TEMPLATE_PREFERENCES": str(prefs), "MUSTER_AGENT_TEMPLATE_TIMEOUT": "3"},
    )
    eventually(lambda: len(online_nodes(nodes)) == 1, what="agent online")
    out = shared_tmp / "out.txt"

    # Two chunks of two frames: the command comes from the template, with the
    # node's preference and the chunk's frames; "Frame N done" drives progress.
    script = (
        f'echo "$RENDERER_NAME $FIRST_FRAME-$LAST_FRAME" >> {out};'
        " echo Frame $FIRST_FRAME done; sleep 2.5; echo Frame $LAST_FRAME done"
    )
    job_id = jobs.SubmitJob(
        jobs_pb2.SubmitJobRequest(job=studio_job("studio", 4, 2, script))
    ).job_id
    seen: set[Any] = set()
    deadline = time.monotonic() + 90
    while job_status(jobs, job_id) != jobs_pb2.JOB_STATUS_COMPLETED:
        assert time.monotonic() < deadline, "the studio job did not complete"
        chunks = jobs.ListChunks(jobs_pb2.ListChunksRequest(job_id=job_id)).chunks
        seen.update((c.status, c.progress) for c in chunks)
        time.sleep(0.2)
    assert sorted(out.read_text().splitlines()) == ["node-renderer 1-2", "node-renderer 3-4"]
    # One frame of two done, as the template's pattern read it, while the chunk ran.
    assert 50.0 in {p for status, p in seen if status != jobs_pb2.CHUNK_STATUS_COMPLETED}, seen
    log = agent.log.read_text()
    assert log.count(f"fetched template {TEMPLATE_ID} version {VERSION}") == 1, log
    assert (
        shared_tmp / "agents" / "tpl-node" / "templates" / f"{TEMPLATE_ID}-{VERSION}.json"
    ).exists()

    # An error line in the log fails the chunk with the template's message.
    failing = jobs.SubmitJob(
        jobs_pb2.SubmitJobRequest(job=studio_job("bad", 1, 1, "echo 'ERROR: scene missing'"))
    ).job_id
    run = first_run(jobs, failing, "the failing chunk's run")
    assert (run.outcome, run.message) == (
        common_pb2.CHUNK_RUN_OUTCOME_FAILED,
        "error in log: ERROR: scene missing",
    )

    # A callback that raises fails its chunk with the traceback in its log.
    raising = jobs.SubmitJob(
        jobs_pb2.SubmitJobRequest(
            job=studio_job("raising", 1, 1, "echo never", **{"raise": "onBuildCommandLine"})
        )
    ).job_id
    run = first_run(jobs, raising, "the raising chunk's run")
    assert run.outcome == common_pb2.CHUNK_RUN_OUTCOME_FAILED
    assert "onBuildCommandLine raised" in run.message, run.message
    assert "RuntimeError: onBuildCommandLine exploded on purpose" in run.message
    text = eventually(lambda: run_log(database_url, raising), what="the raising chunk's log")
    assert "Traceback (most recent call last)" in text
    assert "studio_shell.py" in text

    # A callback that hangs past the agent's limit (3 s) fails its chunk too.
    hanging = jobs.SubmitJob(
        jobs_pb2.SubmitJobRequest(
            job=studio_job("hanging", 1, 1, "echo rendered", hang="onCheckExitCode")
        )
    ).job_id
    run = first_run(jobs, hanging, "the hanging chunk's run")
    assert run.outcome == common_pb2.CHUNK_RUN_OUTCOME_FAILED
    assert "no answer within 3s" in run.message, run.message

    # The agent kept working: the next chunk renders, with no new fetch.
    after = jobs.SubmitJob(
        jobs_pb2.SubmitJobRequest(job=studio_job("after", 1, 1, f"echo after >> {out}"))
    ).job_id
    eventually(
        lambda: job_status(jobs, after) == jobs_pb2.JOB_STATUS_COMPLETED, what="the next job"
    )
    assert out.read_text().splitlines()[-1] == "after"
    assert agent.proc.poll() is None
    assert agent.log.read_text().count(f"fetched template {TEMPLATE_ID} version") == 1
