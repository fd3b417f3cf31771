from __future__ import annotations

from collections.abc import Iterator

import pytest

from muster_gateway.connection import reset_connection
from muster_services import app
from muster_services.core import migrate
from muster_services.core.database import Database, drop_database, ensure_database, with_database
from muster_services.core.settings import Settings
from tests.conftest import new_database_name, seed_farm_secrets
from tests.support import InProcessServer


@pytest.fixture(scope="module")
def dispatcher_database(embedded_admin_url: str) -> Iterator[Database]:
    """The database of the module's dispatcher (its own, migrated here)."""
    name = new_database_name()
    ensure_database(embedded_admin_url, name)
    url = with_database(embedded_admin_url, name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    seed_farm_secrets(url)  # agents started by the tests enroll with the test secret
    db = Database(url, pool_size=4)
    try:
        yield db
    finally:
        db.dispose()
        drop_database(embedded_admin_url, name)


@pytest.fixture(scope="module")
def dispatcher_server(dispatcher_database: Database) -> Iterator[InProcessServer]:
    """The whole dispatcher (jobs, nodes, admin) in-process on its own database.

    Module-scoped: the facade tests translate calls, the services' own tests
    cover their behaviour against both PostgreSQL servers.
    """
    components = app.build_components(list(app.SERVICE_NAMES), dispatcher_database, Settings())
    with InProcessServer(components) as server:
        yield server


@pytest.fixture
def dispatcher(
    dispatcher_server: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The facade pointed at the in-process dispatcher, as a console script."""
    dispatcher_address = dispatcher_server.address
    monkeypatch.setenv("MUSTER_DISPATCHER", dispatcher_address)
    monkeypatch.setenv("MUSTER_USER", "pipeline-td")
    monkeypatch.setenv("MUSTER_TOKEN", dispatcher_server.token("pipeline-td"))
    monkeypatch.delenv("MUSTER_RUNNING_CONTEXT", raising=False)
    reset_connection()
    yield dispatcher_address
    reset_connection()
