"""Fixtures of the admin tests: the service layer on a fresh database, and the
admin component behind a real gRPC server (cheap argon2 parameters, and a
sampler that stays quiet unless a test samples on purpose)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher

from muster_proto.admin.v1 import admin_pb2_grpc
from muster_services.admin.component import build
from muster_services.admin.service import AdminService
from muster_services.core.database import Database
from muster_services.core.settings import Settings
from tests.admin.slapd import Slapd, slapd_unavailable
from tests.support import InProcessServer


def cheap_hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def service(db: Database) -> AdminService:
    return AdminService(db, cheap_hasher())


@pytest.fixture
def stub(db: Database) -> Iterator[admin_pb2_grpc.AdminServiceStub]:
    component = build(
        db, Settings(event_poll_seconds=0.2), hasher=cheap_hasher(), sampler_tick_seconds=3600
    )
    with (
        InProcessServer([component], worker_threads=4) as server,
        server.channel() as channel,
    ):
        yield admin_pb2_grpc.AdminServiceStub(channel)


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """A real OpenLDAP on a loopback port with a small directory (see slapd.py)."""
    reason = slapd_unavailable()
    if reason:
        pytest.skip(reason)
    server = Slapd(tmp_path_factory.mktemp("slapd"))
    server.start()
    yield server
    server.stop()
