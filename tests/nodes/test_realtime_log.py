"""A realtime log switched on before a chunk is given covers that chunk's
first lines (muster_services/nodes/delivery.py).

Found in CI: SetNodeRealtimeLog committed, the job was submitted and the
chunk's assignment reached the agent before the switch's command reached the
node's stream; the relay, which forwards lines to consoles by the switches
its streams have received, dropped the first chunk's lines. The switch is now
read with each assignment too.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Iterator

import pytest

from muster_proto.agent.v1 import agent_pb2
from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from muster_services import app
from muster_services.core.database import Database
from muster_services.core.settings import Settings
from muster_services.nodes.sessions import SessionHub
from tests.nodes.conftest import ProtocolAgent
from tests.render.test_render_loop import _assignment, _job
from tests.support import InProcessServer, LiveClient


@pytest.fixture
def farm(db: Database) -> Iterator[InProcessServer]:
    components = app.build_components(list(app.SERVICE_NAMES), db, Settings())
    with InProcessServer(components) as server:
        yield server


def _lines(console: LiveClient, want: str, timeout: float = 15) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and want not in seen:
        with contextlib.suppress(queue.Empty):
            event = console.next(timeout=0.5)
            seen += [line.text for line in event.chunk_log_lines.lines]
    return seen


def test_the_first_chunk_after_the_switch_streams_while_its_command_is_on_its_way(
    farm: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    held: list[int] = []

    async def late(self: SessionHub, node_id: int, command_id: int) -> None:
        held.append(command_id)  # still on its way when the chunk runs

    monkeypatch.setattr(SessionHub, "deliver_command", late)
    with farm.channel() as channel:
        agent = ProtocolAgent(channel, "realtime-render")
        console = LiveClient(channel, "alice")
        try:
            nodes_pb2_grpc.NodesServiceStub(channel).SetNodeRealtimeLog(
                nodes_pb2.SetNodeRealtimeLogRequest(node_id=agent.node_id, enabled=True)
            )
            jobs = jobs_pb2_grpc.JobsServiceStub(channel)
            jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=_job(1)))
            assignment = _assignment(agent)
            agent.send(
                log=agent_pb2.ChunkLog(
                    job_id=assignment.job_id,
                    chunk_id=assignment.chunk_id,
                    fencing_token=assignment.fencing_token,
                    lines=[common_pb2.LogLine(text="frame 1 rendered")],
                )
            )
            assert "frame 1 rendered" in _lines(console, "frame 1 rendered")
            assert held  # the command had not reached the stream
        finally:
            console.close()
            agent.close()
