"""Every table of the schema, gathered for Alembic and for tests.

Each domain declares its own tables in services/<domain>/tables.py on the
shared MetaData of services.core.schema; importing them here registers them.
"""

from __future__ import annotations

from services.admin import tables as admin_tables
from services.core.schema import metadata
from services.jobs import tables as jobs_tables
from services.nodes import tables as nodes_tables

__all__ = ["admin_tables", "jobs_tables", "metadata", "nodes_tables"]
