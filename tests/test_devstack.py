"""`make run`'s process: the whole dispatcher on the embedded PostgreSQL."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc
import psycopg
import pytest

from farm.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from tests.support import DispatcherProcess, health_status, reflected_services

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
    env = {"MUSTER_DATA_DIR": str(data_dir), "MUSTER_DATABASE_URL": ""}

    first = DispatcherProcess(["run"], env, timeout=120)
    try:
        with grpc.insecure_channel(first.address) as channel:
            for name in ALL_SERVICES:
                assert health_status(channel, name) == "SERVING"
            assert set(ALL_SERVICES) <= reflected_services(channel)
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
        assert second.stop(signal.SIGTERM) == 0
    finally:
        second.kill()
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
