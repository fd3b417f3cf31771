"""Each service started alone, as Kubernetes runs it, against a given database."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from muster_proto.admin.v1 import admin_pb2, admin_pb2_grpc
from muster_services.core.auth import auth_metadata
from tests.support import (
    TEST_ADMIN_PASSWORD,
    DispatcherProcess,
    health_status,
    login,
    reflected_services,
)

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
        [sys.executable, "-m", "muster_services.cli", "serve", "scheduler"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_the_first_administrator_comes_from_the_password_file_and_nothing_else(
    database_url: str, shared_tmp: Path
) -> None:
    no_file = DispatcherProcess(
        ["serve", "admin"],
        {"MUSTER_DATABASE_URL": database_url, "MUSTER_ADMIN_PASSWORD_FILE": ""},
    )
    try:
        # No password file: no administrator, so no password of any kind works.
        for password in ("admin", "", TEST_ADMIN_PASSWORD):
            with pytest.raises(grpc.RpcError) as refused:
                login(no_file.address, "admin", password or "x")
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert no_file.stop() == 0
    finally:
        no_file.kill()
    secret = shared_tmp / "admin-password"
    secret.write_text("from-a-kubernetes-secret\n")
    with_file = DispatcherProcess(
        ["serve", "admin"],
        {
            "MUSTER_DATABASE_URL": database_url,
            "MUSTER_ADMIN_PASSWORD_FILE": str(secret),
            "MUSTER_ADMIN_USER": "farmadmin",
        },
    )
    try:
        token = login(with_file.address, "farmadmin", "from-a-kubernetes-secret")
        with grpc.insecure_channel(with_file.address) as channel:
            users = admin_pb2_grpc.AdminServiceStub(channel).ListUsers(
                admin_pb2.ListUsersRequest(), metadata=auth_metadata(token)
            )
        assert [(u.name, u.role) for u in users.users] == [
            ("farmadmin", admin_pb2.USER_ROLE_ADMINISTRATOR)
        ]
        assert with_file.stop() == 0
    finally:
        with_file.kill()
