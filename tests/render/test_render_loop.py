"""The render loop through the real services: scheduler, nodes service and
agents speaking the real protocol (driven by the test)."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from muster_proto.admin.v1 import admin_pb2, admin_pb2_grpc
from muster_proto.agent.v1 import agent_pb2
from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_services import app
from muster_services.core.bus import HintListener
from muster_services.core.database import Database
from muster_services.core.settings import Settings
from muster_services.jobs.templates import COMMAND_LINE_TEMPLATE_ID
from tests.nodes.conftest import ProtocolAgent
from tests.support import InProcessServer


@pytest.fixture
def farm(db: Database) -> Iterator[grpc.Channel]:
    components = app.build_components(list(app.SERVICE_NAMES), db, Settings())
    with InProcessServer(components) as server, server.channel() as ch:
        yield ch


@pytest.fixture(params=["hint", "sweep"])
def farm_by(request: pytest.FixtureRequest, db: Database) -> Iterator[grpc.Channel]:
    """The farm, its assignments reaching the agents by the scheduler's hint,
    or (the hints' listener left out) by the nodes service's sweep of the
    state table only."""
    components = app.build_components(list(app.SERVICE_NAMES), db, Settings())
    if request.param == "sweep":
        for component in components:
            component.background = [
                b for b in component.background if not isinstance(b, HintListener)
            ]
    with InProcessServer(components) as server, server.channel() as ch:
        yield ch


@pytest.fixture
def agents() -> Iterator[list[ProtocolAgent]]:
    started: list[ProtocolAgent] = []
    yield started
    for agent in started:
        agent.close()


def _job(frames: int, **fields: Any) -> jobs_pb2.Job:
    return jobs_pb2.Job(
        name="echo frames",
        owner="alice",
        parent_id=-1,
        template_id=COMMAND_LINE_TEMPLATE_ID,
        start_frame=1,
        end_frame=frames,
        by_frame=1,
        packet_size=1,
        priority=10,
        attributes=[
            jobs_pb2.JobAttribute(name="executable", string_value="/bin/echo"),
            jobs_pb2.JobAttribute(name="arguments", string_value="frame {start}"),
        ],
        **fields,
    )


def _attribute(assignment: agent_pb2.Assignment, name: str) -> str:
    """A job attribute as the node's template callbacks read it."""
    found = [a.string_value for a in assignment.job.attributes if a.name == name]
    assert found, f"no attribute {name} in {assignment.job}"
    return found[0]


def _assignment(agent: ProtocolAgent, timeout: float = 15) -> agent_pb2.Assignment:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = agent.next(timeout)
        if message.WhichOneof("message") == "assignment":
            return message.assignment
    raise AssertionError("no assignment")


def _finish(
    agent: ProtocolAgent,
    assignment: agent_pb2.Assignment,
    outcome: common_pb2.ChunkRunOutcome.ValueType = common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED,
    exit_code: int = 0,
    token: int | None = None,
) -> agent_pb2.ResultAccepted:
    agent.send(
        result=agent_pb2.ChunkResult(
            job_id=assignment.job_id,
            chunk_id=assignment.chunk_id,
            fencing_token=assignment.fencing_token if token is None else token,
            exit_code=exit_code,
            outcome=outcome,
        )
    )
    while True:
        message = agent.next(15)
        if message.WhichOneof("message") == "result_accepted":
            return message.result_accepted


def _wait_job(
    stub: jobs_pb2_grpc.JobsServiceStub, job_id: int, status: int, timeout: float = 15
) -> jobs_pb2.Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id)).job
        if job.status == status:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} is {job.status}, not {status}")


def test_a_job_renders_chunk_by_chunk_on_two_nodes_and_completes(
    farm: grpc.Channel, agents: list[ProtocolAgent], db: Database
) -> None:
    jobs = jobs_pb2_grpc.JobsServiceStub(farm)
    first, second = ProtocolAgent(farm, "render-a"), ProtocolAgent(farm, "render-b")
    agents.extend([first, second])
    job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=_job(4))).job_id

    done: list[tuple[int, int]] = []
    for _ in range(2):
        for agent in (first, second):
            assignment = _assignment(agent)
            # The node builds the command with the template's code of this version.
            assert assignment.template_version and not assignment.executable
            assert _attribute(assignment, "executable") == "/bin/echo"
            assert assignment.chunk.start_frame == assignment.chunk.end_frame
            assert assignment.chunk.start_frame == assignment.chunk_id
            accepted = _finish(agent, assignment)
            assert accepted.applied
            done.append((assignment.chunk_id, agent.node_id))
    assert sorted(c for c, _ in done) == [1, 2, 3, 4]

    job = _wait_job(jobs, job_id, jobs_pb2.JOB_STATUS_COMPLETED)
    assert (job.chunks_completed, job.progress) == (4, 100.0)
    history = jobs.ListChunkHistory(jobs_pb2.ListChunkHistoryRequest(job_id=job_id)).chunk_runs
    assert sorted(r.chunk_id for r in history) == [1, 2, 3, 4]
    assert all(r.outcome == common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED for r in history)
    with db.transaction() as session:
        assert session.execute(text("SELECT count(*) FROM chunk_assignments")).scalar_one() == 0
        topics = (
            session.execute(
                text(
                    "SELECT topic FROM events WHERE topic IN ('job.started', 'job.completed')"
                    " ORDER BY id"
                )
            )
            .scalars()
            .all()
        )
    assert topics == ["job.started", "job.completed"]


def test_each_assignment_reaches_its_agent_once_by_hint_or_by_event(
    farm_by: grpc.Channel, agents: list[ProtocolAgent]
) -> None:
    jobs = jobs_pb2_grpc.JobsServiceStub(farm_by)
    agent = ProtocolAgent(farm_by, "render-once")
    agents.append(agent)
    jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=_job(3)))
    tokens = []
    for _ in range(3):
        assignment = _assignment(agent)
        tokens.append(assignment.fencing_token)
        # Longer than the event's grace: a second copy would have come by now.
        time.sleep(0.5)
        assert _finish(agent, assignment).applied
    assert len(set(tokens)) == 3
    time.sleep(0.5)
    while not agent.received.empty():  # nothing but acknowledgements left over
        assert agent.received.get().WhichOneof("message") != "assignment"


def test_a_stale_report_changes_nothing_and_a_failure_is_requeued_then_failed(
    farm: grpc.Channel, agents: list[ProtocolAgent]
) -> None:
    jobs = jobs_pb2_grpc.JobsServiceStub(farm)
    agent = ProtocolAgent(farm, "render-c")
    agents.append(agent)
    job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=_job(1, max_chunk_requeues=1))).job_id

    first = _assignment(agent)
    stale = _finish(agent, first, token=first.fencing_token + 1000)
    assert not stale.applied
    assert _finish(agent, first, outcome=common_pb2.CHUNK_RUN_OUTCOME_FAILED, exit_code=3).applied
    # Requeued once (max_chunk_requeues=1): a new run with a new token.
    again = _assignment(agent)
    assert again.chunk_id == first.chunk_id and again.fencing_token > first.fencing_token
    assert not _finish(agent, first).applied  # the old run's late report
    assert _finish(agent, again, outcome=common_pb2.CHUNK_RUN_OUTCOME_FAILED, exit_code=3).applied
    job = _wait_job(jobs, job_id, jobs_pb2.JOB_STATUS_COMPLETED_WITH_ERRORS)
    assert job.chunks_failed == 1
    runs = jobs.ListChunkHistory(jobs_pb2.ListChunkHistoryRequest(job_id=job_id)).chunk_runs
    assert [r.exit_code for r in runs] == [3, 3]


def test_a_lost_node_s_chunk_is_requeued_and_renders_elsewhere(
    farm: grpc.Channel, agents: list[ProtocolAgent], db: Database
) -> None:
    jobs = jobs_pb2_grpc.JobsServiceStub(farm)
    doomed = ProtocolAgent(farm, "render-d")
    agents.append(doomed)
    job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=_job(1))).job_id
    lost = _assignment(doomed)
    doomed.close()  # the agent vanishes mid-chunk
    with db.transaction() as session:
        session.execute(
            text(
                "UPDATE nodes SET last_heartbeat_at = now() - interval '10 minutes' WHERE id = :id"
            ),
            {"id": doomed.node_id},
        )
    rescuer = ProtocolAgent(farm, "render-e")
    agents.append(rescuer)
    # The lost-node sweep (every few seconds) releases the chunk.
    retry = _assignment(rescuer, timeout=30)
    assert retry.chunk_id == lost.chunk_id and retry.fencing_token != lost.fencing_token
    assert _finish(rescuer, retry).applied
    _wait_job(jobs, job_id, jobs_pb2.JOB_STATUS_COMPLETED)
    runs = jobs.ListChunkHistory(jobs_pb2.ListChunkHistoryRequest(job_id=job_id)).chunk_runs
    assert [r.outcome for r in runs] == [
        common_pb2.CHUNK_RUN_OUTCOME_LOST,
        common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED,
    ]


def test_a_node_failing_a_job_three_times_is_excluded_from_it(
    farm: grpc.Channel, agents: list[ProtocolAgent], db: Database
) -> None:
    jobs = jobs_pb2_grpc.JobsServiceStub(farm)
    agent = ProtocolAgent(farm, "render-f")
    agents.append(agent)
    job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=_job(1, max_chunk_requeues=10))).job_id
    for _ in range(3):
        assignment = _assignment(agent)
        assert _finish(
            agent, assignment, outcome=common_pb2.CHUNK_RUN_OUTCOME_FAILED, exit_code=1
        ).applied
    deadline = time.monotonic() + 10
    excluded: list[int] = []
    while time.monotonic() < deadline and not excluded:
        with db.transaction() as session:
            excluded = list(
                session.execute(
                    text(
                        "SELECT job_id FROM node_job_exclusions WHERE node_id = :n"
                        " AND excluded_until > now()"
                    ),
                    {"n": agent.node_id},
                ).scalars()
            )
        time.sleep(0.1)
    assert excluded == [job_id]
    # The chunk went back to the queue, but this node no longer gets it.
    with pytest.raises(queue.Empty):
        _assignment(agent, timeout=2)


def test_attributes_flagged_for_substitution_reach_the_node_as_its_own_paths(
    farm: grpc.Channel, agents: list[ProtocolAgent], db: Database
) -> None:
    with db.transaction() as session:
        session.execute(
            text(
                "INSERT INTO repositories (name, windows_path, linux_path, macos_path)"
                " VALUES ('projects', 'P:\\projects', '/mnt/projects', '/Volumes/projects')"
            )
        )
    jobs = jobs_pb2_grpc.JobsServiceStub(farm)
    agent = ProtocolAgent(farm, "render-g")  # a Linux node
    agents.append(agent)
    job = _job(1)
    del job.attributes[:]
    job.attributes.extend(
        [
            jobs_pb2.JobAttribute(name="executable", string_value="/bin/echo"),
            jobs_pb2.JobAttribute(
                name="arguments", string_value="P:\\PROJECTS\\show\\a.ma", substitute_paths=True
            ),
        ]
    )
    jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=job))
    assignment = _assignment(agent)
    assert _attribute(assignment, "arguments") == "/mnt/projects/show/a.ma"
    assert _finish(agent, assignment).applied

    # The nodes service keeps the repositories between batches: a change
    # reaches the next assignment all the same.
    admin_pb2_grpc.AdminServiceStub(farm).UpdateRepository(
        admin_pb2.UpdateRepositoryRequest(
            repository=admin_pb2.Repository(
                name="projects",
                windows_path="P:\\projects",
                linux_path="/net/projects",
                macos_path="/Volumes/projects",
            )
        )
    )
    time.sleep(0.5)  # the repository.updated event reaches the nodes service
    jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=job))
    assert _attribute(_assignment(agent), "arguments") == "/net/projects/show/a.ma"
