"""A registration lines the agent up with the assignment it found, and only
that one (muster_services/nodes/delivery.py, reconcile).

Found by the 20-minute soak: a paused agent came back and registered; the
node, idle again, was given a chunk at once; the reconcile, reading the
node's live assignment a moment later, took that brand-new assignment for
one the agent had not confirmed and ended it LOST a second later, while the
agent had already started it: the chunk was queued again and its first
render went on outside every recorded run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_services import app
from muster_services.core.database import Database
from muster_services.core.settings import Settings
from muster_services.nodes.delivery import UNCONFIRMED_GRACE_SECONDS, AssignmentDelivery
from tests.nodes.conftest import ProtocolAgent
from tests.render.test_render_loop import _assignment, _job
from tests.support import InProcessServer


@pytest.fixture
def farm(db: Database) -> Iterator[InProcessServer]:
    components = app.build_components(list(app.SERVICE_NAMES), db, Settings())
    with InProcessServer(components) as server:
        yield server


def test_a_chunk_given_to_the_node_after_its_registration_is_delivered_not_ended_as_lost(
    farm: InProcessServer, agents: list[ProtocolAgent], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The scheduler wins the race: the reconcile reads the node's live
    # assignment only once the chunk queued before the agent came is its.
    read = AssignmentDelivery._live_token

    def after_the_scheduler(self: AssignmentDelivery, node_id: int) -> int:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            token = read(self, node_id)
            if token:
                return token
            time.sleep(0.05)
        return read(self, node_id)

    monkeypatch.setattr(AssignmentDelivery, "_live_token", after_the_scheduler)
    with farm.channel() as channel:
        jobs = jobs_pb2_grpc.JobsServiceStub(channel)
        job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=_job(1))).job_id
        agent = ProtocolAgent(channel, "reconcile-render")
        agents.append(agent)
        assignment = _assignment(agent)  # never sent, before the fix
        assert assignment.job_id == job_id
        time.sleep(UNCONFIRMED_GRACE_SECONDS + 1.5)  # past the grace: not ended
        runs = jobs.ListChunkHistory(jobs_pb2.ListChunkHistoryRequest(job_id=job_id)).chunk_runs
        assert [(r.fencing_token, r.outcome) for r in runs] == [
            (assignment.fencing_token, common_pb2.CHUNK_RUN_OUTCOME_RUNNING)
        ]


@pytest.fixture
def agents(farm: InProcessServer) -> Iterator[list[ProtocolAgent]]:
    started: list[ProtocolAgent] = []
    yield started
    for agent in started:
        agent.close()
