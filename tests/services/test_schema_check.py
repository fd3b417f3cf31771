"""A service started with --no-migrate (Kubernetes: the migration Job upgrades
the schema) refuses an older schema with the command to run; `dispatcher serve`
without it and `dispatcher run` upgrade the schema themselves."""

from __future__ import annotations

import os
import subprocess
import sys

import grpc
from sqlalchemy import create_engine, text

from muster_services.core import migrate
from muster_services.core.database import sqlalchemy_url
from tests.support import REPO, DispatcherProcess, health_status


def _serve(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "muster_services.cli", "serve", *args],
        cwd=REPO,
        env={**os.environ, "MUSTER_DATABASE_URL": database_url, "MUSTER_LISTEN": "127.0.0.1:0"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_service_refuses_an_older_schema_and_names_the_migration(database_url: str) -> None:
    head = migrate.head_revision()
    migrate.downgrade(database_url, "-1")
    older = migrate.current_revision(database_url)
    assert older and older != head
    result = _serve(database_url, "nodes", "--no-migrate")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        f"dispatcher: database schema is at {older}, this version needs {head}:"
        " run `dispatcher migrate`"
    )
    assert migrate.current_revision(database_url) == older  # nothing was changed


def test_an_empty_database_is_refused_too(empty_database_url: str) -> None:
    result = _serve(empty_database_url, "admin", "--no-migrate")
    assert result.returncode != 0
    assert "database schema is at base (empty), this version needs" in result.stderr
    assert migrate.current_revision(empty_database_url) is None


def test_a_newer_schema_is_left_to_its_release_notes(database_url: str) -> None:
    """An old replica restarting after the Job upgraded the schema still starts."""
    engine = create_engine(sqlalchemy_url(database_url))
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed0001'"))
    engine.dispose()
    proc = DispatcherProcess(
        ["serve", "admin", "--no-migrate"], {"MUSTER_DATABASE_URL": database_url}
    )
    try:
        assert any("newer than this version" in line for line in proc.output)
        with grpc.insecure_channel(proc.address) as channel:
            assert health_status(channel, "") == "SERVING"
    finally:
        proc.kill()


def test_serve_without_no_migrate_and_run_upgrade_an_older_schema(database_url: str) -> None:
    migrate.downgrade(database_url, "-1")
    for args in (["serve", "jobs"], ["run", "--agents", "0"]):
        proc = DispatcherProcess(args, {"MUSTER_DATABASE_URL": database_url})
        try:
            assert migrate.current_revision(database_url) == migrate.head_revision()
        finally:
            proc.kill()
        migrate.downgrade(database_url, "-1")
