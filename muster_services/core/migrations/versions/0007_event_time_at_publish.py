"""Event bus: an event's time is when it was published, not when its
transaction began.

- events.created_at defaults to clock_timestamp(): a long transaction (a
  scheduler tick, a batch of results) publishes its events at its end, and
  consoles show and measure them from then.

Mirrors muster_services/core/schema.py.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("events", "created_at", server_default=sa.text("clock_timestamp()"))


def downgrade() -> None:
    op.alter_column("events", "created_at", server_default=sa.text("now()"))
