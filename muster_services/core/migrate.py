"""Alembic migrations for the whole schema, driven from code (no alembic.ini).

`dispatcher migrate` and every service start call `upgrade()`; concurrent
upgrades from several replicas serialise on a Postgres advisory lock taken in
migrations/env.py. A service started with `--no-migrate` (Kubernetes: the
migration Job upgrades) calls `require_head()` instead and refuses to run on
an older schema.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import create_engine

from muster_services.core.database import sqlalchemy_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

_LOG = logging.getLogger(__name__)


class SchemaBehind(RuntimeError):
    """The database's schema is older than this version's."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option(
        "sqlalchemy.url",
        sqlalchemy_url(url).render_as_string(hide_password=False).replace("%", "%%"),
    )
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("postgresql://localhost/unused"))


def head_revision() -> str:
    head = _script().get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


def current_revision(url: str) -> str | None:
    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def require_head(url: str) -> None:
    """Raise SchemaBehind unless the schema is at this version's head (or at a
    revision this version does not know: a newer one, whose release decides
    whether older services may run on it; logged)."""
    current, head = current_revision(url), head_revision()
    if current == head:
        return
    if current is not None:
        try:
            known = _script().get_revision(current) is not None
        except CommandError:
            known = False
        if not known:
            _LOG.warning("database schema is at %s, newer than this version's %s", current, head)
            return
    raise SchemaBehind(
        f"database schema is at {current or 'base (empty)'}, this version needs {head}:"
        " run `dispatcher migrate`"
    )
