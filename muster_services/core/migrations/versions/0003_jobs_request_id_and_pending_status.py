"""Jobs domain: idempotent submissions and chunk statuses pending a kill.

- jobs.request_id: the client's request id of SubmitJob / CreateFolder, unique
  when set, so a retried submission returns the first call's job.
- chunk_assignments.status_after_kill: the status chunkSetStatus asked for on a
  live chunk; it applies once the node confirms the kill or is lost.

Mirrors muster_services/jobs/tables.py (comments there).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("request_id", sa.Text(), nullable=True))
    op.create_index(
        op.f("ux_jobs_request_id"),
        "jobs",
        ["request_id"],
        unique=True,
        postgresql_where=sa.text("request_id IS NOT NULL"),
    )
    op.add_column("chunk_assignments", sa.Column("status_after_kill", sa.Text(), nullable=True))
    op.create_check_constraint(
        op.f("ck_chunk_assignments_status_after_kill"),
        "chunk_assignments",
        "status_after_kill IN ('queued', 'hold', 'skipped', 'completed')",
    )
    op.create_check_constraint(
        op.f("ck_chunk_assignments_status_after_kill_only_killing"),
        "chunk_assignments",
        "status_after_kill IS NULL OR state = 'killing'",
    )


def downgrade() -> None:
    for name in (
        "ck_chunk_assignments_status_after_kill_only_killing",
        "ck_chunk_assignments_status_after_kill",
    ):
        op.drop_constraint(op.f(name), "chunk_assignments", type_="check")
    op.drop_column("chunk_assignments", "status_after_kill")
    op.drop_index("ux_jobs_request_id", table_name="jobs")
    op.drop_column("jobs", "request_id")
