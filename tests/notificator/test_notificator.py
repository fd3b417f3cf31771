"""The notificator program, as a real process against a real nodes service."""

from __future__ import annotations

import socket
from typing import Any

from muster_services.core.bus import publish
from muster_services.core.database import Database
from tests.support import ClientProcess, DispatcherProcess, token


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def notificator_process(address: str, *args: str) -> ClientProcess:
    # Only the nodes service runs here (no Login): a token signed with the
    # test database's key stands for carol's login.
    return ClientProcess(
        "notificator",
        address,
        "--user",
        "carol",
        "--no-desktop",
        *args,
        env={"MUSTER_TOKEN": token("carol", "user")},
    )


def _publish(db: Database, topic: str, **payload: Any) -> None:
    with db.transaction() as session:
        publish(session, topic, payload)


def test_notificator_prints_notifications_and_catches_up_after_a_dispatcher_restart(
    database_url: str, db: Database
) -> None:
    address = f"127.0.0.1:{_free_port()}"
    env = {"MUSTER_DATABASE_URL": database_url, "MUSTER_LISTEN": address}
    server = DispatcherProcess(["serve", "nodes"], env)
    notificator = notificator_process(address, "--only", "job_started,job_completed,node_offline")
    try:
        notificator.wait_log("connected to")
        _publish(db, "job.started", job_id=1)
        _publish(db, "chunk.started", job_id=1, chunk_id=1, node_id=1)  # not asked for
        _publish(db, "job.completed", job_id=1, status="completed")
        first = [notificator.lines.get(timeout=15) for _ in range(2)]
        assert ("job started" in first[0] and "job 1" not in first[0]) or "started" in first[0]
        assert "job completed" in first[1]

        assert server.stop() == 0
        _publish(db, "node.lost", node_id=4, name="render-04")  # while the dispatcher is down
        server = DispatcherProcess(["serve", "nodes"], env)
        line = notificator.lines.get(timeout=60)
        assert "node offline" in line and "render-04" in line
        assert notificator.lines.empty()
    finally:
        assert notificator.stop() == 0
        server.kill()
