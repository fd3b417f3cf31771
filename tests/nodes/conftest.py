from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from muster_proto.agent.v1 import agent_pb2, agent_pb2_grpc
from muster_proto.common.v1 import common_pb2
from muster_proto.nodes.v1 import nodes_pb2_grpc
from muster_services.core.database import Database
from muster_services.core.settings import Settings
from muster_services.nodes import component
from tests.support import InProcessServer, agent_auth


class ProtocolAgent:
    """Drives one agent session over the real protocol, from the test.

    The render-node agent program has its own tests; this client lets the
    nodes service's tests say exactly what an agent sends and check exactly
    what it receives.
    """

    def __init__(
        self,
        channel: grpc.Channel,
        host: str,
        instance: int = 0,
        instance_count: int = 0,
        ip_address: str = "127.0.0.1",
        pools: tuple[str, ...] = (),
    ) -> None:
        self._outgoing: queue.Queue[agent_pb2.SessionRequest | None] = queue.Queue()
        self.received: queue.Queue[agent_pb2.SessionResponse] = queue.Queue()
        self.error: grpc.RpcError | None = None
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        self._outgoing.put(
            agent_pb2.SessionRequest(
                register=agent_pb2.Register(
                    host_name=host,
                    instance_number=instance,
                    platform=common_pb2.PLATFORM_LINUX,
                    cpu_cores=8,
                    memory_bytes=16 << 30,
                    agent_version="test",
                    ip_address=ip_address,
                    instance_count=instance_count,
                    pools=pools,
                )
            )
        )
        self._call = stub.Session(
            iter(self._outgoing.get, None), metadata=agent_auth(host, instance)
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        accepted = self.next(10)
        assert accepted.WhichOneof("message") == "register_accepted", accepted
        self.node_id = accepted.register_accepted.node_id
        self.accepted = accepted.register_accepted

    def _read(self) -> None:
        try:
            for message in self._call:
                self.received.put(message)
        except grpc.RpcError as exc:
            self.error = exc

    def send(self, **message: Any) -> None:
        self._outgoing.put(agent_pb2.SessionRequest(**message))

    def next(self, timeout: float = 10) -> agent_pb2.SessionResponse:
        return self.received.get(timeout=timeout)

    def next_command(self, timeout: float = 10) -> agent_pb2.Command:
        message = self.next(timeout)
        assert message.WhichOneof("message") == "command", message
        return message.command

    def close(self) -> None:
        self._outgoing.put(None)
        self._reader.join(10)


@pytest.fixture
def nodes_server(db: Database) -> Iterator[InProcessServer]:
    with InProcessServer([component.build(db, Settings(event_poll_seconds=1.0))]) as server:
        yield server


@pytest.fixture
def channel(nodes_server: InProcessServer) -> Iterator[grpc.Channel]:
    with nodes_server.channel() as ch:
        yield ch


@pytest.fixture
def nodes_stub(channel: grpc.Channel) -> nodes_pb2_grpc.NodesServiceStub:
    return nodes_pb2_grpc.NodesServiceStub(channel)


@pytest.fixture
def agents(channel: grpc.Channel) -> Iterator[list[ProtocolAgent]]:
    started: list[ProtocolAgent] = []
    yield started
    for agent in started:
        agent.close()
