"""`make run`'s process: the whole dispatcher on the embedded PostgreSQL."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import grpc
import psycopg
import pytest

from farm.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from tests.support import (
    TEST_ADMIN_PASSWORD,
    DispatcherProcess,
    health_status,
    login,
    reflected_services,
)

ALL_SERVICES = [
    "farm.jobs.v1.JobsService",
    "farm.nodes.v1.NodesService",
    "farm.nodes.v1.ClientsService",
    "farm.agent.v1.AgentService",
    "farm.admin.v1.AdminService",
]


def _socket_url(data_dir: Path) -> str:
    return f"postgresql://postgres@/dispatcher?host={data_dir / 'postgres'}"


@pytest.mark.slow
def test_run_from_a_clean_data_folder_serves_everything_and_a_restart_reuses_the_data(
    shared_tmp: Path,
) -> None:
    data_dir = shared_tmp / "data"
    # As on a user's machine: no password or secret given, `run` makes them.
    env = {
        "MUSTER_DATA_DIR": str(data_dir),
        "MUSTER_DATABASE_URL": "",
        "MUSTER_ADMIN_PASSWORD_FILE": "",
        "MUSTER_ENROLLMENT_SECRET_FILE": "",
        "MUSTER_ENROLLMENT_SECRET": "",
    }

    first = DispatcherProcess(["run"], env, timeout=120)
    try:
        # The administrator got a random password, kept in a private client file.
        assert first.client_file.stat().st_mode & 0o777 == 0o600
        client = json.loads(first.client_file.read_text())
        assert client["user"] == "admin" and len(client["password"]) >= 20
        assert client["password"] != TEST_ADMIN_PASSWORD
        assert len(client["enrollment_secret"]) >= 20
        with pytest.raises(grpc.RpcError) as refused:
            login(first.address, "admin", "admin")
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with grpc.insecure_channel(first.address) as channel:
            for name in ALL_SERVICES:
                assert health_status(channel, name) == "SERVING"
            assert set(ALL_SERVICES) <= reflected_services(channel)
            with pytest.raises(grpc.RpcError) as anonymous:
                nodes_pb2_grpc.NodesServiceStub(channel).ListNodes(nodes_pb2.ListNodesRequest())
            assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with first.channel() as channel:
            # Two local agent instances register by default.
            nodes = nodes_pb2_grpc.NodesServiceStub(channel)
            deadline = time.monotonic() + 60
            online: list[str] = []
            while time.monotonic() < deadline and len(online) < 2:
                online = [
                    n.name
                    for n in nodes.ListNodes(nodes_pb2.ListNodesRequest()).nodes
                    if n.status == nodes_pb2.NODE_STATUS_IDLE
                ]
                time.sleep(0.2)
            assert len(online) == 2, online
        # Leave a mark in the embedded database while it runs.
        with psycopg.connect(_socket_url(data_dir), autocommit=True) as conn:
            conn.execute("INSERT INTO events (topic, key) VALUES ('test.mark', 'first-run')")
        assert first.stop(signal.SIGINT) == 0
    finally:
        first.kill()
    # Ctrl-C stopped PostgreSQL too.
    assert not (data_dir / "postgres" / "postmaster.pid").exists()

    second = DispatcherProcess(["run"], env, timeout=120)
    try:
        with psycopg.connect(_socket_url(data_dir), autocommit=True) as conn:
            marks = conn.execute("SELECT key FROM events WHERE topic = 'test.mark'").fetchall()
        assert marks == [("first-run",)]
        with grpc.insecure_channel(second.address) as channel:
            assert health_status(channel, "farm.jobs.v1.JobsService") == "SERVING"
        # A new client file (this process has its own): the embedded farm's
        # administrator gets a new password written there, and it works.
        with second.channel() as channel:
            nodes_pb2_grpc.NodesServiceStub(channel).ListNodes(nodes_pb2.ListNodesRequest())
        assert second.stop(signal.SIGTERM) == 0
    finally:
        second.kill()
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
