"""Teardowns under way: deletions and reinits in two transactions.

- job_teardowns: the jobs of a tree whose deletion or reinit has begun, one
  row each (a deletion's go with their jobs, by cascade); the root's row holds
  the job.deleted or job.reinit event to publish once it is done. The first,
  short transaction releases the live chunks; the second deletes the jobs or
  rebuilds their chunks, with locks no render-loop statement waits for
  (muster_services/jobs/teardowns.py).

Mirrors muster_services/jobs/tables.py.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_teardowns",
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("root_id", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("event", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("action IN ('delete', 'reinit')", name=op.f("ck_job_teardowns_action")),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_job_teardowns_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_job_teardowns")),
    )


def downgrade() -> None:
    op.drop_table("job_teardowns")
