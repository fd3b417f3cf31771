"""Fixtures of the hostile-input suite: one whole dispatcher (jobs, nodes and
admin in one real server) per test module, on its own database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from muster_services.admin import component as admin
from muster_services.core.database import Database, drop_database, ensure_database, with_database
from muster_services.core.settings import Settings
from muster_services.jobs import component as jobs
from muster_services.nodes import component as nodes
from tests.admin.conftest import cheap_hasher
from tests.conftest import new_database_name
from tests.security.fuzz import seed_queue
from tests.support import InProcessServer, admin_channel


@pytest.fixture(scope="module")
def stack_db(postgres_admin_url: str, template_database: str) -> Iterator[Database]:
    """A fresh database for the module's dispatcher (the `db` fixture is per test)."""
    name = new_database_name()
    ensure_database(postgres_admin_url, name, template=template_database)
    url = with_database(postgres_admin_url, name).render_as_string(hide_password=False)
    database = Database(url, pool_size=8)
    yield database
    database.dispose()
    drop_database(postgres_admin_url, name)


@pytest.fixture(scope="module")
def stack(
    stack_db: Database, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessServer]:
    hooks: Path = tmp_path_factory.mktemp("hooks")  # no hook: the dispatcher's own answers
    settings = Settings(event_poll_seconds=0.5, hooks_dir=hooks)
    components = [
        jobs.build(stack_db, settings),
        nodes.build(stack_db, settings),
        admin.build(stack_db, settings, hasher=cheap_hasher(), sampler_tick_seconds=3600),
    ]
    with InProcessServer(components, worker_threads=8) as server:
        yield server


@pytest.fixture(scope="module")
def channel(stack: InProcessServer) -> Iterator[grpc.Channel]:
    with admin_channel(stack.address) as ch:
        yield ch


@pytest.fixture(scope="module")
def seeded(channel: grpc.Channel) -> grpc.Channel:
    """The module's channel, once its queue holds the seed jobs (fuzz.seed_queue)."""
    seed_queue(channel)
    return channel
