"""Jobs domain: the OS user an assignment's process runs as.

- chunk_assignments.run_as_user: what onDispatcherOverrideImpersonationUser
  decided when the scheduler made the assignment; '' means the agent's own
  user. The nodes service sends it to the agent with the Assignment.

Mirrors muster_services/jobs/tables.py (comments there).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "chunk_assignments",
        sa.Column("run_as_user", sa.Text(), server_default="", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("chunk_assignments", "run_as_user")
