"""Alembic environment: online migrations only, under an advisory lock."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text

from muster_services.core.tables import metadata

# Any fixed 64-bit key; it only has to differ from the other advisory locks.
MIGRATION_LOCK_KEY = 0x6D75737465720001

config = context.config
target_metadata = metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url must be set by muster_services.core.migrate"
    engine = create_engine(url)
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                compare_type=True,
                transaction_per_migration=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
            connection.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run `dispatcher migrate`")
run_migrations_online()
