"""Deletions under way.

- job_deletions: the jobs of a tree whose deletion has begun, one row each,
  gone with the job (cascade); the root's row holds the job.deleted event to
  publish once the jobs are gone. A deletion now releases the live chunks in
  a short transaction of its own and deletes the rows in a second one, whose
  locks no render-loop statement waits for (muster_services/jobs/common.py).

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
        "job_deletions",
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("root_id", sa.BigInteger(), nullable=False),
        sa.Column("event", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_job_deletions_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_job_deletions")),
    )


def downgrade() -> None:
    op.drop_table("job_deletions")
