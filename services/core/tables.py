"""Every table of the schema, gathered for Alembic and for tests.

Each domain declares its own tables in services/<domain>/tables.py on the
shared MetaData of services.core.schema; importing them here registers them.
"""

from __future__ import annotations

from services.core.schema import metadata

__all__ = ["metadata"]
