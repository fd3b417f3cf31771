"""End-to-end: the dispatcher and real agent processes running real commands."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from farm.jobs.v1 import jobs_pb2_grpc
from farm.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from tests.support import AgentProcess, DispatcherProcess


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


DISCOVERY_PORT = free_port(socket.SOCK_DGRAM)


@pytest.fixture
def dispatcher(database_url: str, shared_tmp: Path) -> Iterator[DispatcherProcess]:
    proc = DispatcherProcess(
        ["serve", "jobs", "nodes", "admin"],
        {
            "MUSTER_DATABASE_URL": database_url,
            "MUSTER_NODE_LOST_TIMEOUT_SECONDS": "4",
            "MUSTER_EVENT_POLL_SECONDS": "1",
            # Empty unless a test writes hook files there (the hooks_dir fixture).
            "MUSTER_HOOKS_DIR": str(shared_tmp / "hooks"),
            "MUSTER_DISCOVERY_PORT": str(DISCOVERY_PORT),
        },
    )
    yield proc
    proc.kill()


@pytest.fixture
def hooks_dir(dispatcher: DispatcherProcess, shared_tmp: Path) -> Path:
    """The dispatcher's hooks folder: files written here run as its hooks."""
    folder = shared_tmp / "hooks"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture
def channel(dispatcher: DispatcherProcess) -> Iterator[grpc.Channel]:
    with dispatcher.channel() as ch:
        yield ch


@pytest.fixture
def jobs(channel: grpc.Channel) -> jobs_pb2_grpc.JobsServiceStub:
    return jobs_pb2_grpc.JobsServiceStub(channel)


@pytest.fixture
def nodes(channel: grpc.Channel) -> nodes_pb2_grpc.NodesServiceStub:
    return nodes_pb2_grpc.NodesServiceStub(channel)


@pytest.fixture
def start_agent(
    dispatcher: DispatcherProcess, shared_tmp: Path
) -> Iterator[Callable[..., AgentProcess]]:
    started: list[AgentProcess] = []

    def start(
        name: str, instances: int = 1, env: dict[str, str] | None = None, address: str = ""
    ) -> AgentProcess:
        agent = AgentProcess(
            address or dispatcher.address, name, shared_tmp / "agents" / name, instances, env
        )
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.kill()


def online_nodes(nodes: nodes_pb2_grpc.NodesServiceStub) -> list[nodes_pb2.Node]:
    return [
        n
        for n in nodes.ListNodes(nodes_pb2.ListNodesRequest()).nodes
        if n.status != nodes_pb2.NODE_STATUS_OFFLINE
    ]
