"""Render logs read back: line marks, the log cap's bookkeeping per run.

- chunk_run_logs.mark: 'error' | 'warning' | NULL, what the agent found in
  the line; a partial index over the marked lines (GetChunkLog's
  error_lines and warning_lines).
- chunk_runs.log_lines, log_bytes, log_head_lines, log_dropped_lines,
  log_dropped_bytes: the last line number, the stored bytes and what the
  per-run log cap dropped; filled in from the lines already stored.

Mirrors muster_services/jobs/tables.py (comments there).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_COUNTERS = (
    ("log_lines", sa.Integer()),
    ("log_bytes", sa.BigInteger()),
    ("log_head_lines", sa.Integer()),
    ("log_dropped_lines", sa.Integer()),
    ("log_dropped_bytes", sa.BigInteger()),
)


def upgrade() -> None:
    op.add_column("chunk_run_logs", sa.Column("mark", sa.Text(), nullable=True))
    op.create_check_constraint(
        op.f("ck_chunk_run_logs_mark"), "chunk_run_logs", "mark IN ('error', 'warning')"
    )
    op.create_index(
        "ix_chunk_run_logs_marked",
        "chunk_run_logs",
        ["run_id", "mark", "seq"],
        postgresql_where=sa.text("mark IS NOT NULL"),
    )
    for name, kind in _COUNTERS:
        op.add_column("chunk_runs", sa.Column(name, kind, server_default="0", nullable=False))
    # Logs stored before the cap existed: all of them kept, nothing dropped.
    op.execute(
        "UPDATE chunk_runs r SET log_lines = s.last, log_bytes = s.bytes,"
        " log_head_lines = s.last"
        " FROM (SELECT run_id, max(seq) AS last, sum(octet_length(line)) AS bytes"
        " FROM chunk_run_logs GROUP BY run_id) s WHERE s.run_id = r.id"
    )
    op.create_check_constraint(
        op.f("ck_chunk_runs_log_counters"),
        "chunk_runs",
        "log_bytes >= 0 AND log_dropped_bytes >= 0 AND log_head_lines >= 0"
        " AND log_dropped_lines >= 0 AND log_head_lines + log_dropped_lines <= log_lines",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_chunk_runs_log_counters"), "chunk_runs")
    for name, _ in reversed(_COUNTERS):
        op.drop_column("chunk_runs", name)
    op.drop_index("ix_chunk_run_logs_marked", table_name="chunk_run_logs")
    op.drop_column("chunk_run_logs", "mark")
