"""The pre/post job custom actions the dispatcher ran.

- job_actions(id, event_id, job_id, kind, command, status, exit_code,
  message, output, started_at, ended_at).

Mirrors muster_services/jobs/tables.py (comments there).

Revision ID: 0011
Revises: 0009 (to be re-chained after 0010 when both are merged)
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_actions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default="running", nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), server_default="", nullable=False),
        sa.Column("output", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_actions")),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_actions_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.UniqueConstraint("event_id", name=op.f("uq_job_actions_event_id")),
        sa.CheckConstraint("kind IN ('pre_job', 'post_job')", name=op.f("ck_job_actions_kind")),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed', 'interrupted')",
            name=op.f("ck_job_actions_status"),
        ),
        sa.CheckConstraint(
            "(status = 'running') = (ended_at IS NULL)", name=op.f("ck_job_actions_ended_when_over")
        ),
    )
    op.create_index("ix_job_actions_job_id", "job_actions", ["job_id"])
    # The consumer that runs the actions starts after the events already
    # there: jobs started or completed before the upgrade run nothing.
    op.execute(
        "INSERT INTO event_consumers (name, last_txid, last_id)"
        " SELECT 'job-actions', txid, id FROM events ORDER BY txid DESC, id DESC LIMIT 1"
        " ON CONFLICT DO NOTHING"
    )


def downgrade() -> None:
    op.execute("DELETE FROM event_consumers WHERE name = 'job-actions'")
    op.drop_index("ix_job_actions_job_id", table_name="job_actions")
    op.drop_table("job_actions")
