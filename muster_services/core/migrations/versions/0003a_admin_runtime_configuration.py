"""Admin domain: configuration in effect until restart, idempotent creations.

- dispatcher_config / ldap_config .runtime_config and .runtime_secrets: the
  configuration every replica applies now. systemSetConfiguration(store=False)
  changes only these; store=True changes both them and the stored copy
  (config, secrets); the admin service copies the stored one over them when
  it starts, so an unstored change lasts until the next restart.
- users / groups / pools / repositories .request_id: the client's request id
  of the Create call, unique when set, so a retried creation returns the row
  the first call made.
- engine_state.network_scan_started_at / network_scan_finished_at: when
  systemStartNodesNetworkScan last started a scan and when the nodes
  service reported it finished (a scan runs in between, at most 10 minutes).

Mirrors muster_services/admin/tables.py (comments there).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_CONFIG_TABLES = ("dispatcher_config", "ldap_config")
_CREATED_TABLES = ("users", "groups", "pools", "repositories")


def upgrade() -> None:
    for table in _CONFIG_TABLES:
        for column in ("runtime_config", "runtime_secrets"):
            op.add_column(
                table,
                sa.Column(
                    column,
                    postgresql.JSONB(astext_type=sa.Text()),
                    server_default=sa.text("'{}'::jsonb"),
                    nullable=False,
                ),
            )
    for column in ("network_scan_started_at", "network_scan_finished_at"):
        op.add_column("engine_state", sa.Column(column, sa.DateTime(timezone=True), nullable=True))
    for table in _CREATED_TABLES:
        op.add_column(table, sa.Column("request_id", sa.Text(), nullable=True))
        op.create_index(
            op.f(f"ux_{table}_request_id"),
            table,
            ["request_id"],
            unique=True,
            postgresql_where=sa.text("request_id IS NOT NULL"),
        )


def downgrade() -> None:
    for table in _CREATED_TABLES:
        op.drop_index(op.f(f"ux_{table}_request_id"), table_name=table)
        op.drop_column(table, "request_id")
    op.drop_column("engine_state", "network_scan_finished_at")
    op.drop_column("engine_state", "network_scan_started_at")
    for table in _CONFIG_TABLES:
        op.drop_column(table, "runtime_secrets")
        op.drop_column(table, "runtime_config")
