"""Authentication: the farm's shared secrets and failed-login records.

- farm_secrets: the token signing key and the agent enrollment secret every
  replica shares (muster_services/core/auth.py).
- login_failures: failed logins per user name and address, for rate limiting
  (muster_services/admin/accounts.py).

Mirrors muster_services/core/schema.py and muster_services/admin/tables.py.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "farm_secrets",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_farm_secrets")),
    )
    op.create_table(
        "login_failures",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column(
            "failed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("user_name", sa.Text(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failures")),
    )
    op.create_index(
        "ix_login_failures_user_name_failed_at", "login_failures", ["user_name", "failed_at"]
    )
    op.create_index(
        "ix_login_failures_address_failed_at", "login_failures", ["address", "failed_at"]
    )


def downgrade() -> None:
    op.drop_table("login_failures")
    op.drop_table("farm_secrets")
