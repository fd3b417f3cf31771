"""Every table of the schema, gathered for Alembic and for tests.

Each domain declares its own tables in muster_services/<domain>/tables.py on the
shared MetaData of muster_services.core.schema; importing them here registers them.
"""

from __future__ import annotations

from muster_services.admin import tables as admin_tables
from muster_services.core.schema import metadata
from muster_services.jobs import tables as jobs_tables
from muster_services.nodes import tables as nodes_tables

__all__ = ["admin_tables", "jobs_tables", "metadata", "nodes_tables"]
