"""Each service started alone, as Kubernetes runs it, against a given database."""

from __future__ import annotations

import grpc
import pytest

from tests.support import DispatcherProcess, health_status, reflected_services

SERVICES = {
    "jobs": ["farm.jobs.v1.JobsService"],
    "nodes": [
        "farm.nodes.v1.NodesService",
        "farm.nodes.v1.ClientsService",
        "farm.agent.v1.AgentService",
    ],
    "admin": ["farm.admin.v1.AdminService"],
}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_service_started_alone_is_serving_and_reflects_its_services(
    service: str, database_url: str
) -> None:
    proc = DispatcherProcess(["serve", service], {"MUSTER_DATABASE_URL": database_url})
    try:
        with grpc.insecure_channel(proc.address) as channel:
            for name in SERVICES[service]:
                assert health_status(channel, name) == "SERVING"
            assert health_status(channel, "") == "SERVING"
            listed = reflected_services(channel)
            assert set(SERVICES[service]) <= listed
            others = {n for s, names in SERVICES.items() if s != service for n in names}
            assert not others & listed
            assert "grpc.health.v1.Health" in listed
        assert proc.stop() == 0
    finally:
        proc.kill()


def test_unknown_service_name_is_refused() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "serve", "scheduler"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
