"""Licence and delay groups of templates: administrators' overrides of their
limits and the last chunk start of each delay group.

- template_groups(kind, name, limit_override, last_started_at, updated_at).

Mirrors muster_services/jobs/tables.py (comments there).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "template_groups",
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("limit_override", sa.Integer(), nullable=True),
        sa.Column("last_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("kind", "name", name=op.f("pk_template_groups")),
        sa.CheckConstraint("kind IN ('licenses', 'delay')", name=op.f("ck_template_groups_kind")),
        sa.CheckConstraint(
            "limit_override >= 0", name=op.f("ck_template_groups_limit_override_not_negative")
        ),
        sa.CheckConstraint("name <> ''", name=op.f("ck_template_groups_name_not_empty")),
    )


def downgrade() -> None:
    op.drop_table("template_groups")
