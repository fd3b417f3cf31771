"""The template engine: templates defined by MTemplateAPI files.

- templates: the defining file's version, path, load error, built-in flag,
  definition (items, mappings, platforms...), licence and delay groups;
- template_versions: the code of every version agents may be asked to run;
- template_files: the files read last and their load errors;
- nodes.template_preferences: an administrator's per-node values of the
  templates' client configuration items.

Mirrors muster_services/jobs/tables.py and muster_services/nodes/tables.py (comments there).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_TEMPLATE_COLUMNS = (
    ("version", sa.Text(), ""),
    ("file_path", sa.Text(), ""),
    ("load_error", sa.Text(), ""),
    ("licenses_group", sa.Text(), ""),
    ("delay_group", sa.Text(), ""),
)


def upgrade() -> None:
    for name, kind, default in _TEMPLATE_COLUMNS:
        op.add_column("templates", sa.Column(name, kind, server_default=default, nullable=False))
    op.add_column(
        "templates",
        sa.Column("builtin", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column(
        "templates",
        sa.Column(
            "definition",
            postgresql.JSONB(),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    for name in ("max_licenses", "delay_seconds"):
        op.add_column(
            "templates",
            sa.Column(name, sa.Integer(), server_default=sa.text("0"), nullable=False),
        )
    op.create_table(
        "template_versions",
        sa.Column(
            "template_id",
            sa.BigInteger(),
            sa.ForeignKey("templates.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("file_path", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("template_id", "version"),
    )
    op.create_table(
        "template_files",
        sa.Column("file_path", sa.Text(), primary_key=True),
        sa.Column("error", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "template_ids",
            postgresql.ARRAY(sa.BigInteger()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    op.add_column(
        "nodes",
        sa.Column(
            "template_preferences",
            postgresql.JSONB(),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("nodes", "template_preferences")
    op.drop_table("template_files")
    op.drop_table("template_versions")
    for name in ("max_licenses", "delay_seconds", "definition", "builtin"):
        op.drop_column("templates", name)
    for name, _, _ in _TEMPLATE_COLUMNS:
        op.drop_column("templates", name)
