"""A node shows `rendering` while it holds a live assignment: the status is
derived from the assignment rows (muster_services/nodes/store.py, SHOWN_STATUS), not
written when a chunk starts and ends. Whatever order the writes about an
earlier run land in, what the API shows, lists, counts and kills follows the
live assignment; a node whose failed run is being recorded stays off the
scheduler until the failure is counted."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator

import grpc
import pytest
from sqlalchemy import text

from muster_proto.agent.v1 import agent_pb2
from muster_proto.common.v1 import common_pb2
from muster_proto.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from muster_services.admin import store as admin_store
from muster_services.core.database import Database
from muster_services.jobs import store as jobs_store
from muster_services.jobs.service import JobsService
from muster_services.nodes import store as repo
from muster_services.nodes.delivery import SWEEP_SECONDS
from muster_services.nodes.service import NodesService
from tests.jobs.conftest import SPEC, assign
from tests.nodes.conftest import ProtocolAgent


@pytest.fixture
def agent(channel: grpc.Channel) -> Iterator[ProtocolAgent]:
    agent = ProtocolAgent(channel, "shown-01")
    yield agent
    agent.close()


def _job(db: Database) -> int:
    jobs = JobsService(db)
    jobs.templates.seed_templates()
    return int(jobs.queue.submit_job(SPEC).id)


def _stored(db: Database, node_id: int) -> str:
    with db.transaction() as session:
        return str(
            session.execute(
                text("SELECT status FROM nodes WHERE id = :n"), {"n": node_id}
            ).scalar_one()
        )


def _end(db: Database, token: int) -> None:
    """What FinishChunkRuns does to a run: it ended (killed), and the live
    assignment is gone."""
    with db.transaction() as session:
        session.execute(
            text(
                "UPDATE chunk_runs SET outcome = 'killed', ended_at = now()"
                " WHERE fencing_token = :t"
            ),
            {"t": token},
        )
        session.execute(
            text("DELETE FROM chunk_assignments WHERE fencing_token = :t"), {"t": token}
        )


def _shown(stub: nodes_pb2_grpc.NodesServiceStub, node_id: int) -> nodes_pb2.Node:
    return stub.GetNode(nodes_pb2.GetNodeRequest(node_id=node_id)).node


def _listed(
    stub: nodes_pb2_grpc.NodesServiceStub, status: nodes_pb2.NodeStatus.ValueType
) -> set[int]:
    reply = stub.ListNodes(nodes_pb2.ListNodesRequest(statuses=[status]))
    return {n.id for n in reply.nodes}


def test_a_late_end_of_an_old_run_does_not_hide_the_nodes_new_chunk(
    db: Database, nodes_stub: nodes_pb2_grpc.NodesServiceStub, agent: ProtocolAgent
) -> None:
    """The restart of a killed chunk: its new assignment is given to the same
    node, then the end of the killed run (its old token) is recorded. The node
    renders the new one: it shows rendering on its job, a filter of rendering
    nodes finds it, and killing the job's processes reaches it. In the old
    design the end's write could leave the row `idle` beside the new
    assignment, and the node looked free: here the row says idle and the
    node still shows what it holds."""
    node = agent.node_id
    job = _job(db)
    old = assign(db, job, 1, node)
    _end(db, old)  # killed, restart: the chunk is requeued ...
    new = assign(db, job, 1, node, run_number=2)  # ... and given to the node again
    service = NodesService(db, "test")
    service.set_idle([node], [(node, job, "killed")])  # the old run's end, late

    assert _stored(db, node) == "idle"  # nothing written about the new chunk
    shown = _shown(nodes_stub, node)
    assert shown.status == nodes_pb2.NODE_STATUS_RENDERING
    assert (shown.job_id, shown.chunk_id) == (job, 1)
    assert node in _listed(nodes_stub, nodes_pb2.NODE_STATUS_RENDERING)
    assert node not in _listed(nodes_stub, nodes_pb2.NODE_STATUS_IDLE)
    with db.engine.connect() as connection:
        rows = [tuple(r) for r in repo.count_by_state(connection)]
    counted = {(str(status), bool(paused)): int(n) for status, paused, n in rows}
    assert counted[("rendering", False)] == 1
    with db.transaction() as session:  # the statistics samples' count
        assert admin_store.node_counts_by_status(session).get("rendering") == 1

    killed = nodes_stub.KillJobProcesses(
        nodes_pb2.KillJobProcessesRequest(job_id=job, follow_up=common_pb2.KILL_FOLLOW_UP_CONTINUE)
    )
    assert list(killed.node_ids) == [node]
    # The agent is told to kill the new run (its token), not the old one.
    command = agent.next_command(timeout=15)
    while command.WhichOneof("command") != "kill_process":
        command = agent.next_command(timeout=15)
    assert command.kill_process.fencing_token == new

    # Its end recorded, the node shows idle again, with no write either.
    _end(db, new)
    service.set_idle([node], [(node, job, "killed")])
    assert _shown(nodes_stub, node).status == nodes_pb2.NODE_STATUS_IDLE
    assert node in _listed(nodes_stub, nodes_pb2.NODE_STATUS_IDLE)


def test_a_paused_node_shows_rendering_until_its_chunk_ends(
    db: Database, nodes_stub: nodes_pb2_grpc.NodesServiceStub, agent: ProtocolAgent
) -> None:
    node = agent.node_id
    token = assign(db, _job(db), 1, node)
    nodes_stub.PauseNode(nodes_pb2.PauseNodeRequest(node_id=node))
    shown = _shown(nodes_stub, node)
    assert shown.status == nodes_pb2.NODE_STATUS_RENDERING and shown.paused
    _end(db, token)
    assert _shown(nodes_stub, node).status == nodes_pb2.NODE_STATUS_PAUSED


def test_a_failed_run_keeps_its_node_off_the_scheduler_until_the_failure_counts(
    db: Database, agent: ProtocolAgent
) -> None:
    """The node is free for the scheduler once its assignment is gone, and a
    failure is counted after that (it may exclude the node from the job): a
    failed run's node is held first, released once its failure counted."""
    node = agent.node_id
    job = _job(db)
    token = assign(db, job, 1, node)
    service = NodesService(db, "test")

    def free() -> set[int]:
        with db.transaction() as session:
            return {r.id for r in jobs_store.free_nodes(session, 100)}

    service.hold_for_failures([node])  # the relay, before FinishChunkRuns
    _end(db, token)
    assert node not in free()
    service.set_idle([node], [(node, job, "failed")], (1, 60.0))
    with db.transaction() as session:
        excluded = session.execute(
            text("SELECT excluded_until IS NOT NULL FROM node_job_exclusions WHERE node_id = :n"),
            {"n": node},
        ).scalar_one()
    assert excluded
    assert node in free() and _stored(db, node) == "idle"


def test_an_agent_still_running_a_stale_chunk_keeps_its_node_busy(
    db: Database, nodes_stub: nodes_pb2_grpc.NodesServiceStub, channel: grpc.Channel
) -> None:
    """Stored `rendering` without an assignment (the agent runs a chunk that is
    no longer its own) shows rendering until that run's end released it."""
    agent = ProtocolAgent(channel, "shown-02")
    try:
        with db.transaction() as session:
            session.execute(
                text("UPDATE nodes SET status = 'rendering' WHERE id = :n"), {"n": agent.node_id}
            )
        assert _shown(nodes_stub, agent.node_id).status == nodes_pb2.NODE_STATUS_RENDERING
        NodesService(db, "test").set_idle([agent.node_id])
        assert _shown(nodes_stub, agent.node_id).status == nodes_pb2.NODE_STATUS_IDLE
    finally:
        agent.close()


def _drained(agent: ProtocolAgent) -> list[agent_pb2.SessionResponse]:
    found = []
    while True:
        try:
            found.append(agent.received.get_nowait())
        except queue.Empty:
            return found


def test_assignments_whose_hint_was_lost_go_down_with_the_next_sweep(
    db: Database, channel: grpc.Channel
) -> None:
    """The scheduler's hint (NOTIFY) lost (these assignments are written with
    none, and with no outbox event): the sweep reads the idle agents' live
    assignments from the state table and sends each one, once."""
    agents = [ProtocolAgent(channel, f"unhinted-{i}") for i in range(3)]
    try:
        job = _job(db)
        tokens = {a.node_id: assign(db, job, i + 1, a.node_id) for i, a in enumerate(agents)}
        started = time.monotonic()
        for agent in agents:
            message = agent.next(timeout=15)
            while message.WhichOneof("message") != "assignment":
                message = agent.next(timeout=15)
            assert message.assignment.fencing_token == tokens[agent.node_id]
        assert time.monotonic() - started < 1.0 + SWEEP_SECONDS * 3
        # Sent once: later sweeps find them sent.
        time.sleep(SWEEP_SECONDS * 2.5)
        for agent in agents:
            assert not [m for m in _drained(agent) if m.WhichOneof("message") == "assignment"]
    finally:
        for agent in agents:
            agent.close()
