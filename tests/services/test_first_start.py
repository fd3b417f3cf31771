"""A first install, as Kubernetes starts it: several replicas at the same
moment against an empty database. Each one upgrades the schema, creates the
administrator from the password file, the farm's secrets and the built-in
templates; every replica must come up, and they must agree on what they made."""

from __future__ import annotations

import threading

import grpc
from sqlalchemy import func, select

from muster_proto.admin.v1 import admin_pb2, admin_pb2_grpc
from muster_services.core.auth import auth_metadata
from muster_services.core.database import Database
from muster_services.core.schema import farm_secrets
from muster_services.jobs.tables import template_versions, templates
from tests.support import TEST_ADMIN, DispatcherProcess, health_status, login

REPLICAS = 4


def _start_together(env: dict[str, str]) -> list[DispatcherProcess | BaseException]:
    """REPLICAS `dispatcher serve jobs nodes admin` started at one instant."""
    gate = threading.Barrier(REPLICAS)
    started: list[DispatcherProcess | BaseException] = [RuntimeError("not run")] * REPLICAS

    def start(index: int) -> None:
        gate.wait()
        try:
            started[index] = DispatcherProcess(["serve", "jobs", "nodes", "admin"], env)
        except BaseException as failed:  # the replica's own output, for the assertion
            started[index] = failed

    threads = [threading.Thread(target=start, args=(i,)) for i in range(REPLICAS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return started


def test_replicas_started_at_once_on_an_empty_database_all_come_up_and_agree(
    empty_database_url: str,
) -> None:
    # No enrollment secret file: the replicas create the stored one themselves.
    env = {
        "MUSTER_DATABASE_URL": empty_database_url,
        "MUSTER_ENROLLMENT_SECRET_FILE": "",
        "MUSTER_ENROLLMENT_SECRET": "",
    }
    started = _start_together(env)
    replicas = [r for r in started if isinstance(r, DispatcherProcess)]
    try:
        failures = [str(r) for r in started if not isinstance(r, DispatcherProcess)]
        assert not failures, "\n\n".join(failures)
        for replica in replicas:
            with grpc.insecure_channel(replica.address) as channel:
                assert health_status(channel, "") == "SERVING"
        # One administrator, and one signing key: a token from any replica
        # is accepted by every other.
        for index, replica in enumerate(replicas):
            token = login(replica.address)
            other = replicas[(index + 1) % len(replicas)]
            with grpc.insecure_channel(other.address) as channel:
                users = admin_pb2_grpc.AdminServiceStub(channel).ListUsers(
                    admin_pb2.ListUsersRequest(), metadata=auth_metadata(token)
                )
            assert [u.name for u in users.users] == [TEST_ADMIN]
        db = Database(empty_database_url, pool_size=1)
        try:
            with db.transaction() as session:
                secrets = session.execute(select(farm_secrets.c.name)).scalars().all()
                loaded = session.execute(
                    select(templates.c.name, func.count(template_versions.c.version))
                    .join(template_versions, template_versions.c.template_id == templates.c.id)
                    .where(templates.c.builtin)
                    .group_by(templates.c.name)
                ).all()
        finally:
            db.dispose()
        assert sorted(secrets) == sorted(set(secrets)) and len(secrets) >= 2, secrets
        # Every built-in template written once: one version each.
        assert loaded and all(count == 1 for _, count in loaded), loaded
        for replica in replicas:
            assert replica.stop() == 0, "\n".join(replica.output)
    finally:
        for replica in replicas:
            replica.kill()
