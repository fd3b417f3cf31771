"""Agent streams spread over nodes-service replicas started after them: a
connection older than MUSTER_MAX_CONNECTION_AGE_SECONDS is asked to reconnect
(muster_services/core/server.py), and the agents' channels balance round robin over
the addresses they were given (muster_gateway/tls.py), as Kubernetes' load
balancer spreads new connections over the pods behind it."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from muster_services.core.database import Database
from tests.e2e.conftest import free_port
from tests.e2e.test_render import eventually
from tests.support import AgentProcess, DispatcherProcess

AGENTS = 4
# Short here; 1800 s by default (docs/configuration.md).
MAX_AGE_SECONDS = 2.0


def _holders(db: Database) -> dict[str, int]:
    """{agent name: pid of the nodes replica holding its stream} (replica
    ids start with the host name and the pid: muster_services/nodes/service.py)."""
    with db.transaction() as session:
        rows = session.execute(
            text("SELECT name, replica FROM nodes WHERE replica IS NOT NULL")
        ).all()
    return {str(row.name): int(str(row.replica).rsplit("-", 2)[-2]) for row in rows}


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    return {
        "MUSTER_DATABASE_URL": database_url,
        "MUSTER_EVENT_POLL_SECONDS": "1",
        "MUSTER_MAX_CONNECTION_AGE_SECONDS": str(MAX_AGE_SECONDS),
        "MUSTER_MAX_CONNECTION_AGE_GRACE_SECONDS": "1",
    }


@pytest.fixture
def replicas(env: dict[str, str]) -> Iterator[list[DispatcherProcess]]:
    ports = [free_port(), free_port()]
    procs = [
        DispatcherProcess(["serve", "nodes"], {**env, "MUSTER_LISTEN": f"127.0.0.1:{port}"})
        for port in ports
    ]
    yield procs
    for proc in procs:
        proc.kill()


def test_agents_spread_over_a_restarted_replica_within_the_connection_age(
    replicas: list[DispatcherProcess], env: dict[str, str], db: Database, shared_tmp: Path
) -> None:
    first, second = replicas
    both = ",".join(p.address for p in replicas)
    agents = [
        AgentProcess(f"ipv4:{both}", f"spread-{n}", shared_tmp / "agents" / str(n))
        for n in range(AGENTS)
    ]
    try:
        eventually(lambda: len(_holders(db)) == AGENTS, what="every agent connected")
        # A rollout: the second replica goes, its agents move to the first.
        assert second.stop(signal.SIGTERM) == 0
        eventually(
            lambda: len(h := _holders(db)) == AGENTS and set(h.values()) == {first.proc.pid},
            what="every agent on the first replica",
        )
        # ... and comes back (a new pod at the same address, as behind a Service).
        replicas[1] = second = DispatcherProcess(
            ["serve", "nodes"], {**env, "MUSTER_LISTEN": second.address}
        )
        spread = eventually(
            lambda: {first.proc.pid, second.proc.pid} <= set(_holders(db).values()),
            # The age (with gRPC's 10% jitter) and its grace, then a reconnect.
            timeout=10 * MAX_AGE_SECONDS,
            what="agents on both replicas",
        )
        assert spread
        assert set(_holders(db).values()) <= {first.proc.pid, second.proc.pid}
    finally:
        for agent in agents:
            agent.kill()
