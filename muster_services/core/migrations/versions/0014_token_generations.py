"""Token revocation.

- token_generations: each user's token generation. A user token carries its
  user's generation at login; the guard refuses one older than the row's.
  Deleting or disabling a user, or changing its role, adds 1, so the tokens
  the user already holds stop working within seconds on every replica
  (muster_services/core/auth.py, Revocations).

Mirrors muster_services/core/schema.py.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "token_generations",
        sa.Column("user_name", sa.Text(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column(
            "revoked_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("user_name", name=op.f("pk_token_generations")),
    )


def downgrade() -> None:
    op.drop_table("token_generations")
