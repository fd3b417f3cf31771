"""The kill follow-ups by fencing token.

- ix_node_commands_kill_token: (payload->>'fencing_token') of the
  kill_process commands. The nodes service reads the follow-ups of every
  batch of results it relays (muster_services/nodes/store.py,
  kill_follow_ups); without it each batch scanned every command ever sent.

Mirrors muster_services/nodes/tables.py.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_node_commands_kill_token"
        " ON node_commands ((payload ->> 'fencing_token')) WHERE kind = 'kill_process'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_node_commands_kill_token")
