"""A malformed result holds no other node's result back
(muster_services/nodes/relay.py).

The nodes service sends agents' results to the jobs service in batches, one
batch at a time, and sends a batch again until it is recorded. The jobs
service refuses a whole batch (INVALID_ARGUMENT, nothing recorded) when one
of its results is malformed, as an agent with a bug may send: that batch was
sent again forever, and every node's result waited behind it. Now the relay
splits a refused batch until the malformed results are alone, answers each
of those not applied, and records the rest.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from muster_proto.agent.v1 import agent_pb2
from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_services import app
from muster_services.core.database import Database
from muster_services.core.settings import Settings
from tests.nodes.conftest import ProtocolAgent
from tests.render.test_render_loop import _assignment, _job
from tests.support import InProcessServer


@pytest.fixture
def farm(db: Database) -> Iterator[InProcessServer]:
    components = app.build_components(list(app.SERVICE_NAMES), db, Settings())
    with InProcessServer(components) as server:
        yield server


def _answer(agent: ProtocolAgent, timeout: float = 10) -> agent_pb2.ResultAccepted:
    deadline = time.monotonic() + timeout
    while True:
        message = agent.next(max(0.1, deadline - time.monotonic()))
        if message.WhichOneof("message") == "result_accepted":
            return message.result_accepted


def _result(
    assignment: agent_pb2.Assignment, outcome: common_pb2.ChunkRunOutcome.ValueType
) -> agent_pb2.ChunkResult:
    return agent_pb2.ChunkResult(
        job_id=assignment.job_id,
        chunk_id=assignment.chunk_id,
        fencing_token=assignment.fencing_token,
        outcome=outcome,
    )


def test_a_malformed_result_is_answered_not_applied_and_the_others_are_recorded(
    farm: InProcessServer,
) -> None:
    with farm.channel() as channel:
        jobs = jobs_pb2_grpc.JobsServiceStub(channel)
        job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=_job(3))).job_id
        agents = [ProtocolAgent(channel, f"batch-{n}") for n in range(3)]
        try:
            given = [_assignment(agent) for agent in agents]
            # A result that is still running: no finished outcome (an agent's bug).
            agents[0].send(result=_result(given[0], common_pb2.CHUNK_RUN_OUTCOME_RUNNING))
            # Two good ones, in the same batch as the bad one and in the next.
            agents[1].send(result=_result(given[1], common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED))
            time.sleep(0.3)
            agents[2].send(result=_result(given[2], common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED))
            answers = [_answer(agent) for agent in agents]
            assert [a.applied for a in answers] == [False, True, True]
            chunks = jobs.ListChunks(jobs_pb2.ListChunksRequest(job_id=job_id)).chunks
            completed = {c.id for c in chunks if c.status == jobs_pb2.CHUNK_STATUS_COMPLETED}
            assert completed == {given[1].chunk_id, given[2].chunk_id}
        finally:
            for agent in agents:
                agent.close()
