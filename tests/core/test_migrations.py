from __future__ import annotations

from sqlalchemy import create_engine, inspect

from muster_services.core import migrate
from muster_services.core.database import sqlalchemy_url
from muster_services.core.tables import metadata


def _tables(url: str) -> set[str]:
    engine = create_engine(sqlalchemy_url(url))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_to_head_creates_every_declared_table_and_downgrade_removes_them(
    empty_database_url: str,
) -> None:
    assert migrate.current_revision(empty_database_url) is None

    migrate.upgrade(empty_database_url)

    assert migrate.current_revision(empty_database_url) == migrate.head_revision()
    assert set(metadata.tables) <= _tables(empty_database_url)

    migrate.downgrade(empty_database_url, "base")

    assert migrate.current_revision(empty_database_url) is None
    assert _tables(empty_database_url) <= {"alembic_version"}


def test_upgrade_is_idempotent(database_url: str) -> None:
    migrate.upgrade(database_url)
    assert migrate.current_revision(database_url) == migrate.head_revision()
