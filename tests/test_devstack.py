"""`make run`'s process: the whole dispatcher on the embedded PostgreSQL."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path

import grpc
import psycopg
import pytest

from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from muster_services.devstack import Backoff, Supervisor
from tests.e2e.conftest import free_port
from tests.e2e.test_render import eventually, frame_job, job_status
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


STARTED = re.compile(r"local agent started \(pid (?P<pid>\d+)\)")


def _agent_pids(run: DispatcherProcess) -> list[int]:
    """The local agent processes `run` started, in order (its log lines)."""
    return [int(m["pid"]) for line in list(run.output) if (m := STARTED.search(line))]


def _gone(pid: int) -> bool:
    """No such process: neither running nor a zombie left unreaped."""
    return not Path(f"/proc/{pid}").exists()


def _local_node(nodes: nodes_pb2_grpc.NodesServiceStub) -> list[nodes_pb2.Node]:
    return list(nodes.ListNodes(nodes_pb2.ListNodesRequest()).nodes)


def test_run_restarts_a_killed_local_agent_under_the_same_name_and_stops_it_with_the_stack(
    database_url: str, shared_tmp: Path
) -> None:
    data_dir = shared_tmp / "data"
    run = DispatcherProcess(
        ["run", "--agents", "1"],
        {
            "MUSTER_DATABASE_URL": database_url,
            "MUSTER_DATA_DIR": str(data_dir),
            "MUSTER_NODE_LOST_TIMEOUT_SECONDS": "10",
            "MUSTER_DISCOVERY_PORT": str(free_port(socket.SOCK_DGRAM)),
        },
    )
    try:
        with run.channel() as channel:
            nodes = nodes_pb2_grpc.NodesServiceStub(channel)
            jobs = jobs_pb2_grpc.JobsServiceStub(channel)
            name = f"{socket.gethostname()}-local"

            def idle() -> list[nodes_pb2.Node]:
                return [
                    n
                    for n in _local_node(nodes)
                    if n.name == name and n.status == nodes_pb2.NODE_STATUS_IDLE
                ]

            first = eventually(idle, what="the local agent online")[0]
            [pid] = _agent_pids(run)
            os.kill(pid, signal.SIGKILL)

            restarted = eventually(
                lambda: len(_agent_pids(run)) == 2, timeout=15, what="the agent restarted"
            )
            assert restarted
            new_pid = _agent_pids(run)[1]
            restarted_at = time.time()
            assert new_pid != pid
            # The dispatcher reaped the dead one (no zombie) and said why and when.
            assert _gone(pid)
            warning = [line for line in run.output if f"local agent (pid {pid}) exited" in line]
            assert warning and "WARNING" in warning[0], run.output[-20:]
            assert "signal SIGKILL" in warning[0] and "restarting in 1 s" in warning[0]

            # The same node (same name, same work folder) comes back online...
            def back() -> list[nodes_pb2.Node]:
                return [
                    n for n in idle() if n.last_heartbeat_time.ToMicroseconds() / 1e6 > restarted_at
                ]

            again = eventually(back, timeout=30, what="the node online again")[0]
            assert again.id == first.id
            assert [n.name for n in _local_node(nodes)] == [name]
            # ...and renders what is submitted afterwards.
            out = shared_tmp / "frames"
            out.mkdir()
            job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=frame_job(out, 2, 1))).job_id
            eventually(
                lambda: job_status(jobs, job_id) == jobs_pb2.JOB_STATUS_COMPLETED,
                timeout=60,
                what="the job rendered",
            )
            assert sorted(p.name for p in out.iterdir()) == ["frame_1.txt", "frame_2.txt"]
        # A clean stop stops the agent and starts no other.
        assert run.stop(signal.SIGTERM) == 0
        assert _agent_pids(run) == [pid, new_pid]
        assert any(f"stopping the local agent (pid {new_pid})" in line for line in run.output)
        assert _gone(new_pid)
    except AssertionError:
        print("--- dispatcher output ---", *run.output[-200:], sep="\n")
        raise
    finally:
        run.kill()


def _supervised(tmp: Path, script: str, **backoff: float) -> Supervisor:
    return Supervisor(
        "test child",
        [sys.executable, "-c", script],
        dict(os.environ),
        tmp / "child.log",
        Backoff(**backoff),
        stop_timeout=1.0,
    )


def test_backoff_doubles_to_its_longest_and_starts_over_after_a_stable_run() -> None:
    backoff = Backoff(first=1, longest=30, stable_after=60)
    delays: list[float] = []
    delay = None
    for _ in range(7):
        delay = backoff.next(delay, uptime=0.5)
        delays.append(delay)
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.next(30, uptime=60) == 1
    assert backoff.next(30, uptime=59.9) == 30


def test_a_child_that_keeps_dying_is_restarted_with_growing_delays_and_logged_each_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    supervisor = _supervised(tmp_path, "import sys; sys.exit(3)", first=0.05, longest=0.2)
    with caplog.at_level(logging.INFO, logger="dispatcher.devstack"):
        supervisor.start()
        eventually(lambda: supervisor.starts >= 5, timeout=10, what="five starts")
        supervisor.stop()
    starts = supervisor.starts
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) >= starts - 1
    assert all("test child (pid" in w and "exited with exit code 3" in w for w in warnings)
    delays = [float(m[1]) for w in warnings[:4] if (m := re.search(r"restarting in ([\d.]+) s", w))]
    assert delays == [0.05, 0.1, 0.2, 0.2]
    # Stopped: no start after it.
    time.sleep(0.5)
    assert supervisor.starts == starts and supervisor.pid is None


def test_stop_terminates_the_child_reaps_it_and_never_restarts_it(tmp_path: Path) -> None:
    supervisor = _supervised(tmp_path, "import time; time.sleep(60)", first=0.01)
    supervisor.start()
    pid = eventually(lambda: supervisor.pid, timeout=10, what="the child started")
    began = time.monotonic()
    supervisor.stop()
    assert time.monotonic() - began < 5
    assert _gone(pid) and supervisor.starts == 1
    time.sleep(0.2)
    assert supervisor.starts == 1
    supervisor.stop()  # twice is harmless


def test_stop_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    script = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        " print('ready', flush=True, file=sys.stderr); time.sleep(60)"
    )
    supervisor = _supervised(tmp_path, script)
    supervisor.start()
    pid = eventually(lambda: supervisor.pid, timeout=10, what="the child started")
    eventually(lambda: b"ready" in (tmp_path / "child.log").read_bytes(), what="SIG_IGN set")
    began = time.monotonic()
    supervisor.stop()
    assert 0.9 < time.monotonic() - began < 5
    assert _gone(pid) and supervisor.starts == 1


def test_a_stop_during_the_backoff_delay_returns_at_once(tmp_path: Path) -> None:
    supervisor = _supervised(tmp_path, "pass", first=30)
    supervisor.start()
    eventually(lambda: supervisor.starts == 1 and supervisor.pid is None, what="first exit")
    time.sleep(0.2)
    began = time.monotonic()
    supervisor.stop()
    assert time.monotonic() - began < 1
    assert supervisor.starts == 1
