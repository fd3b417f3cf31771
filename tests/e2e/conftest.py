"""End-to-end: the dispatcher and real agent processes running real commands."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from muster_proto.jobs.v1 import jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from tests.audit import overlapping_runs
from tests.support import AgentProcess, DispatcherProcess


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


DISCOVERY_PORT = free_port(socket.SOCK_DGRAM)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the test, so fixtures know it failed."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


def _failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "report_call", None)
    return report is None or report.failed


@pytest.fixture
def dispatcher(
    request: pytest.FixtureRequest, database_url: str, shared_tmp: Path
) -> Iterator[DispatcherProcess]:
    proc = DispatcherProcess(
        ["serve", "jobs", "nodes", "admin"],
        {
            "MUSTER_DATABASE_URL": database_url,
            # Short, so a killed agent's node is lost soon; not so short that a
            # live agent starved of CPU by a busy test machine is declared lost
            # mid-chunk (its node would look free while it still renders).
            "MUSTER_NODE_LOST_TIMEOUT_SECONDS": "10",
            "MUSTER_EVENT_POLL_SECONDS": "1",
            # Empty unless a test writes hook files there (the hooks_dir fixture).
            "MUSTER_HOOKS_DIR": str(shared_tmp / "hooks"),
            # Empty unless a test writes template files there (templates_dir).
            "MUSTER_TEMPLATES_DIR": str(shared_tmp / "templates"),
            "MUSTER_TEMPLATES_POLL_SECONDS": "0.3",
            "MUSTER_DISCOVERY_PORT": str(DISCOVERY_PORT),
        },
    )
    yield proc
    # The history is the audit trail: no two runs of one chunk overlap in
    # time, in any test that rendered (tests/audit.py).
    overlaps = overlapping_runs(database_url)
    proc.kill()
    if overlaps:
        pytest.fail(
            "runs of one chunk overlap in time:\n" + "\n".join(str(o) for o in overlaps),
            pytrace=False,
        )
    if _failed(request):
        # Shown under the failed test's "Captured stdout teardown".
        print("--- dispatcher output (last 300 lines) ---")
        print("\n".join(proc.output[-300:]))
        for log in sorted((shared_tmp / "agents").glob("*/agent.log")):
            print(f"--- {log} (last 100 lines) ---")
            print("\n".join(log.read_text(errors="replace").splitlines()[-100:]))


@pytest.fixture
def hooks_dir(dispatcher: DispatcherProcess, shared_tmp: Path) -> Path:
    """The dispatcher's hooks folder: files written here run as its hooks."""
    folder = shared_tmp / "hooks"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture
def templates_dir(dispatcher: DispatcherProcess, shared_tmp: Path) -> Path:
    """The dispatcher's studio templates folder: files written here are its templates."""
    folder = shared_tmp / "templates"
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
