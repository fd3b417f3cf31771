"""Domain schema: the jobs, nodes and admin tables.

Mirrors muster_services/jobs/tables.py, muster_services/nodes/tables.py and
muster_services/admin/tables.py exactly; tests/core/test_schema.py checks that an
Alembic autogenerate comparison after upgrade finds no difference. The
comments on each table and on every CHECK live in those modules.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Every table of this revision, in creation order (referenced tables first).
TABLES = (
    # jobs domain
    "templates",
    "jobs",
    "job_dependencies",
    "chunks",
    "chunk_assignments",
    "chunk_runs",
    "chunk_run_logs",
    "backup_jobs",
    # nodes domain
    "nodes",
    "node_template_exclusions",
    "node_job_exclusions",
    "node_commands",
    "client_connections",
    # admin domain
    "users",
    "groups",
    "group_members",
    "pools",
    "pool_members",
    "repositories",
    "dispatcher_config",
    "ldap_config",
    "engine_state",
    "log_messages",
    "activity_log",
    "action_log",
    "statistics_samples",
    "history_samples",
    "login_attempts",
    "signing_keys",
)


def upgrade() -> None:
    _upgrade_jobs()
    _upgrade_nodes()
    _upgrade_admin()
    # The single-row tables exist with their one row from the start, so the
    # admin service only ever UPDATEs them; empty config means "all defaults".
    op.execute("INSERT INTO dispatcher_config (id) VALUES (1)")
    op.execute("INSERT INTO ldap_config (id) VALUES (1)")
    op.execute("INSERT INTO engine_state (id) VALUES (1)")


def downgrade() -> None:
    # Dropping a table drops its indexes and constraints with it.
    for table in reversed(TABLES):
        op.drop_table(table)
    op.execute(sa.schema.DropSequence(sa.Sequence("fencing_tokens")))


def _upgrade_jobs() -> None:
    op.create_table(
        "templates",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "commands",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "log_error_patterns",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "log_warning_patterns",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "success_exit_codes",
            postgresql.ARRAY(sa.Integer()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("default_packet_type", sa.Text(), server_default="frames", nullable=False),
        sa.Column("script_name", sa.Text(), server_default="", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "default_packet_type IN ('frames', 'slices', 'single', 'broadcast')",
            name=op.f("ck_templates_default_packet_type"),
        ),
        sa.CheckConstraint("id > 0", name=op.f("ck_templates_id_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_templates")),
        sa.UniqueConstraint("name", name=op.f("uq_templates_name")),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("parent_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.Text(), server_default="job", nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("submitter", sa.Text(), server_default="", nullable=False),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column("template_id", sa.BigInteger(), nullable=True),
        sa.Column("start_frame", sa.Double(), server_default="0", nullable=False),
        sa.Column("end_frame", sa.Double(), server_default="0", nullable=False),
        sa.Column("by_frame", sa.Double(), server_default="1", nullable=False),
        sa.Column("packet_size", sa.Integer(), server_default="1", nullable=False),
        sa.Column("packet_type", sa.Text(), server_default="frames", nullable=False),
        sa.Column(
            "included_pools",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "excluded_pools",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("depend_mode", sa.Text(), server_default="success", nullable=False),
        sa.Column("depend_chunks", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("max_nodes", sa.Integer(), server_default="0", nullable=False),
        sa.Column("project", sa.Text(), server_default="", nullable=False),
        sa.Column("department", sa.Text(), server_default="", nullable=False),
        sa.Column("job_group", sa.Text(), server_default="", nullable=False),
        sa.Column("notes", sa.Text(), server_default="", nullable=False),
        sa.Column("chunk_timeout_seconds", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_chunk_requeues", sa.Integer(), server_default="0", nullable=False),
        sa.Column("logs_error_check", sa.Text(), server_default="all", nullable=False),
        sa.Column(
            "attributes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "environment",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("status", sa.Text(), server_default="queued", nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("locked", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("requeue_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("chunks_total", sa.Integer(), server_default="0", nullable=False),
        sa.Column("chunks_queued", sa.Integer(), server_default="0", nullable=False),
        sa.Column("chunks_running", sa.Integer(), server_default="0", nullable=False),
        sa.Column("chunks_completed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("chunks_failed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("progress", sa.Double(), server_default="0", nullable=False),
        sa.Column(
            "submitted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("version", sa.BigInteger(), server_default="1", nullable=False),
        sa.CheckConstraint(
            "depend_mode IN ('success', 'completion')", name=op.f("ck_jobs_depend_mode")
        ),
        sa.CheckConstraint(
            "kind = 'folder' OR template_id IS NOT NULL", name=op.f("ck_jobs_template_for_jobs")
        ),
        sa.CheckConstraint("kind IN ('job', 'folder')", name=op.f("ck_jobs_kind")),
        sa.CheckConstraint(
            "logs_error_check IN ('all', 'skip_warnings', 'skip_all')",
            name=op.f("ck_jobs_logs_error_check"),
        ),
        sa.CheckConstraint(
            "packet_type IN ('frames', 'slices', 'single', 'broadcast')",
            name=op.f("ck_jobs_packet_type"),
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'waiting_dependencies', 'running', 'completed', 'completed_with_warnings', 'completed_with_errors', 'failed')",
            name=op.f("ck_jobs_status"),
        ),
        sa.CheckConstraint("by_frame > 0", name=op.f("ck_jobs_by_frame_positive")),
        sa.CheckConstraint(
            "chunk_timeout_seconds >= 0", name=op.f("ck_jobs_chunk_timeout_not_negative")
        ),
        sa.CheckConstraint(
            "chunks_completed >= 0", name=op.f("ck_jobs_chunks_completed_not_negative")
        ),
        sa.CheckConstraint("chunks_failed >= 0", name=op.f("ck_jobs_chunks_failed_not_negative")),
        sa.CheckConstraint(
            "chunks_queued + chunks_running + chunks_completed + chunks_failed <= chunks_total",
            name=op.f("ck_jobs_chunks_within_total"),
        ),
        sa.CheckConstraint("chunks_queued >= 0", name=op.f("ck_jobs_chunks_queued_not_negative")),
        sa.CheckConstraint("chunks_running >= 0", name=op.f("ck_jobs_chunks_running_not_negative")),
        sa.CheckConstraint("chunks_total >= 0", name=op.f("ck_jobs_chunks_total_not_negative")),
        sa.CheckConstraint("end_frame >= start_frame", name=op.f("ck_jobs_frame_range")),
        sa.CheckConstraint(
            "max_chunk_requeues >= 0", name=op.f("ck_jobs_max_chunk_requeues_not_negative")
        ),
        sa.CheckConstraint("max_nodes >= 0", name=op.f("ck_jobs_max_nodes_not_negative")),
        sa.CheckConstraint("packet_size >= 1", name=op.f("ck_jobs_packet_size_positive")),
        sa.CheckConstraint("parent_id <> id", name=op.f("ck_jobs_not_own_parent")),
        sa.CheckConstraint("priority BETWEEN 0 AND 65535", name=op.f("ck_jobs_priority_range")),
        sa.CheckConstraint("progress BETWEEN 0 AND 100", name=op.f("ck_jobs_progress_range")),
        sa.CheckConstraint("requeue_count >= 0", name=op.f("ck_jobs_requeue_count_not_negative")),
        sa.CheckConstraint("version >= 1", name=op.f("ck_jobs_version_positive")),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["jobs.id"], name=op.f("fk_jobs_parent_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["template_id"], ["templates.id"], name=op.f("fk_jobs_template_id_templates")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index(
        "ix_jobs_dispatchable",
        "jobs",
        ["priority", "submitted_at"],
        postgresql_where=sa.text(
            "kind = 'job' AND status IN ('queued', 'waiting_dependencies', 'running')"
        ),
    )
    op.create_index("ix_jobs_owner", "jobs", ["owner"])
    op.create_index("ix_jobs_parent_id", "jobs", ["parent_id"])
    op.create_index("ix_jobs_status", "jobs", ["status"])
    op.create_table(
        "job_dependencies",
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("depends_on_job_id", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "job_id <> depends_on_job_id", name=op.f("ck_job_dependencies_not_self")
        ),
        sa.ForeignKeyConstraint(
            ["depends_on_job_id"],
            ["jobs.id"],
            name=op.f("fk_job_dependencies_depends_on_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_job_dependencies_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", "depends_on_job_id", name=op.f("pk_job_dependencies")),
    )
    op.create_index(
        "ix_job_dependencies_depends_on_job_id", "job_dependencies", ["depends_on_job_id"]
    )
    op.create_table(
        "chunks",
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("chunk_number", sa.Integer(), nullable=False),
        sa.Column("start_frame", sa.Double(), nullable=False),
        sa.Column("end_frame", sa.Double(), nullable=False),
        sa.Column("by_frame", sa.Double(), server_default="1", nullable=False),
        sa.Column("slice_index", sa.Integer(), server_default="0", nullable=False),
        sa.Column("status", sa.Text(), server_default="queued", nullable=False),
        sa.Column("node_id", sa.BigInteger(), nullable=True),
        sa.Column("node_name", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("requeue_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("runs_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("progress", sa.Double(), server_default="0", nullable=False),
        sa.Column("fencing_token", sa.BigInteger(), nullable=True),
        sa.Column("version", sa.BigInteger(), server_default="1", nullable=False),
        sa.CheckConstraint(
            "status IN ('queued', 'waiting_dependencies', 'assigned', 'running', 'completed', 'completed_with_warnings', 'failed', 'hold', 'skipped')",
            name=op.f("ck_chunks_status"),
        ),
        sa.CheckConstraint("by_frame > 0", name=op.f("ck_chunks_by_frame_positive")),
        sa.CheckConstraint("chunk_number >= 1", name=op.f("ck_chunks_chunk_number_positive")),
        sa.CheckConstraint("end_frame >= start_frame", name=op.f("ck_chunks_frame_range")),
        sa.CheckConstraint("progress BETWEEN 0 AND 100", name=op.f("ck_chunks_progress_range")),
        sa.CheckConstraint("requeue_count >= 0", name=op.f("ck_chunks_requeue_count_not_negative")),
        sa.CheckConstraint("runs_count >= 0", name=op.f("ck_chunks_runs_count_not_negative")),
        sa.CheckConstraint("slice_index >= 0", name=op.f("ck_chunks_slice_index_not_negative")),
        sa.CheckConstraint("version >= 1", name=op.f("ck_chunks_version_positive")),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_chunks_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "chunk_number", name=op.f("pk_chunks")),
    )
    op.create_index("ix_chunks_node_id", "chunks", ["node_id"])
    op.create_index(
        "ix_chunks_ready",
        "chunks",
        ["job_id", "chunk_number"],
        postgresql_where=sa.text("status = 'queued'"),
    )
    # Fencing tokens of chunk assignments: never reused, even after the rows are gone.
    op.execute(sa.schema.CreateSequence(sa.Sequence("fencing_tokens")))
    op.create_table(
        "chunk_assignments",
        sa.Column(
            "fencing_token",
            sa.BigInteger(),
            server_default=sa.text("nextval('fencing_tokens')"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("chunk_number", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Text(), server_default="assigned", nullable=False),
        sa.Column("kill_follow_up", sa.Text(), nullable=True),
        sa.Column(
            "assigned_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kill_follow_up IN ('continue', 'pause', 'restart')",
            name=op.f("ck_chunk_assignments_kill_follow_up"),
        ),
        sa.CheckConstraint(
            "kill_follow_up IS NULL OR state = 'killing'",
            name=op.f("ck_chunk_assignments_follow_up_only_killing"),
        ),
        sa.CheckConstraint(
            "state IN ('assigned', 'running', 'killing')", name=op.f("ck_chunk_assignments_state")
        ),
        sa.ForeignKeyConstraint(
            ["job_id", "chunk_number"],
            ["chunks.job_id", "chunks.chunk_number"],
            name=op.f("fk_chunk_assignments_job_id_chunks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("fencing_token", name=op.f("pk_chunk_assignments")),
        sa.UniqueConstraint(
            "job_id", "chunk_number", name=op.f("uq_chunk_assignments_job_id_chunk_number")
        ),
        sa.UniqueConstraint("node_id", name=op.f("uq_chunk_assignments_node_id")),
    )
    op.create_table(
        "chunk_runs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("chunk_number", sa.Integer(), nullable=False),
        sa.Column("run_number", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.BigInteger(), nullable=False),
        sa.Column("node_name", sa.Text(), server_default="", nullable=False),
        sa.Column("fencing_token", sa.BigInteger(), nullable=False),
        sa.Column("start_frame", sa.Double(), nullable=False),
        sa.Column("end_frame", sa.Double(), nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.Text(), server_default="running", nullable=False),
        sa.Column("message", sa.Text(), server_default="", nullable=False),
        sa.CheckConstraint(
            "(outcome = 'running') = (ended_at IS NULL)", name=op.f("ck_chunk_runs_ended_when_over")
        ),
        sa.CheckConstraint(
            "outcome IN ('running', 'succeeded', 'succeeded_with_warnings', 'failed', 'killed', 'timed_out', 'lost')",
            name=op.f("ck_chunk_runs_outcome"),
        ),
        sa.CheckConstraint("run_number >= 1", name=op.f("ck_chunk_runs_run_number_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chunk_runs")),
        sa.UniqueConstraint("fencing_token", name=op.f("uq_chunk_runs_fencing_token")),
        sa.UniqueConstraint(
            "job_id",
            "chunk_number",
            "run_number",
            name=op.f("uq_chunk_runs_job_id_chunk_number_run_number"),
        ),
    )
    op.create_index("ix_chunk_runs_started_at", "chunk_runs", ["started_at"])
    op.create_index(
        "ux_chunk_runs_one_running",
        "chunk_runs",
        ["job_id", "chunk_number"],
        unique=True,
        postgresql_where=sa.text("outcome = 'running'"),
    )
    op.create_table(
        "chunk_run_logs",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column(
            "logged_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("stream", sa.Text(), server_default="stdout", nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "stream IN ('unspecified', 'stdout', 'stderr', 'agent')",
            name=op.f("ck_chunk_run_logs_stream"),
        ),
        sa.CheckConstraint("seq >= 1", name=op.f("ck_chunk_run_logs_seq_positive")),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["chunk_runs.id"],
            name=op.f("fk_chunk_run_logs_run_id_chunk_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "seq", name=op.f("pk_chunk_run_logs")),
    )
    op.create_table(
        "backup_jobs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("parent_id", sa.BigInteger(), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("project", sa.Text(), server_default="", nullable=False),
        sa.Column("backed_up_by", sa.Text(), server_default="", nullable=False),
        sa.Column("chunks_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("snapshot", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "backed_up_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "chunks_count >= 0", name=op.f("ck_backup_jobs_chunks_count_not_negative")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backup_jobs")),
    )
    op.create_index("ix_backup_jobs_backed_up_at", "backup_jobs", ["backed_up_at"])
    op.create_index("ix_backup_jobs_job_id", "backup_jobs", ["job_id"])
    op.create_index("ix_backup_jobs_owner", "backup_jobs", ["owner"])


def _upgrade_nodes() -> None:
    op.create_table(
        "nodes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("host_name", sa.Text(), nullable=False),
        sa.Column("ip_address", sa.Text(), server_default="", nullable=False),
        sa.Column("mac_address", sa.Text(), server_default="", nullable=False),
        sa.Column("platform", sa.Text(), nullable=False),
        sa.Column("os_version", sa.Text(), server_default="", nullable=False),
        sa.Column("instance_number", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cpu_cores", sa.Integer(), server_default="0", nullable=False),
        sa.Column("memory_bytes", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "pools", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("status", sa.Text(), server_default="offline", nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("process_priority", sa.Text(), server_default="normal", nullable=False),
        sa.Column("realtime_log", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("notes", sa.Text(), server_default="", nullable=False),
        sa.Column("agent_version", sa.Text(), server_default="", nullable=False),
        sa.Column("replica", sa.Text(), nullable=True),
        sa.Column("session_id", sa.Text(), nullable=True),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "registered_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("enrollment_secret_hash", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "platform IN ('windows', 'linux', 'macos')", name=op.f("ck_nodes_platform")
        ),
        sa.CheckConstraint(
            "process_priority IN ('idle', 'below_normal', 'normal', 'above_normal', 'high')",
            name=op.f("ck_nodes_process_priority"),
        ),
        sa.CheckConstraint(
            "status <> 'paused' OR paused", name=op.f("ck_nodes_paused_status_has_flag")
        ),
        sa.CheckConstraint(
            "status IN ('offline', 'idle', 'rendering', 'paused')", name=op.f("ck_nodes_status")
        ),
        sa.CheckConstraint("cpu_cores >= 0", name=op.f("ck_nodes_cpu_cores_not_negative")),
        sa.CheckConstraint(
            "instance_number >= 0", name=op.f("ck_nodes_instance_number_not_negative")
        ),
        sa.CheckConstraint("memory_bytes >= 0", name=op.f("ck_nodes_memory_bytes_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nodes")),
        sa.UniqueConstraint(
            "host_name", "instance_number", name=op.f("uq_nodes_host_name_instance_number")
        ),
    )
    op.create_index("ix_nodes_replica", "nodes", ["replica"])
    op.create_index("ix_nodes_status", "nodes", ["status"])
    op.create_index("ux_nodes_name_lower", "nodes", [sa.literal_column("lower(name)")], unique=True)
    op.create_table(
        "node_template_exclusions",
        sa.Column("node_id", sa.BigInteger(), nullable=False),
        sa.Column("template_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["nodes.id"],
            name=op.f("fk_node_template_exclusions_node_id_nodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("node_id", "template_id", name=op.f("pk_node_template_exclusions")),
    )
    op.create_table(
        "node_job_exclusions",
        sa.Column("node_id", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "last_failure_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("excluded_until", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "failures >= 0", name=op.f("ck_node_job_exclusions_failures_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["nodes.id"],
            name=op.f("fk_node_job_exclusions_node_id_nodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("node_id", "job_id", name=op.f("pk_node_job_exclusions")),
    )
    op.create_index("ix_node_job_exclusions_job_id", "node_job_exclusions", ["job_id"])
    op.create_table(
        "node_commands",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("node_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column(
            "payload",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("requested_by", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.CheckConstraint(
            "kind IN ('kill_process', 'pause', 'resume', 'set_process_priority', 'soft_restart', 'set_realtime_log', 'system_event', 'run_python_code', 'custom_message', 'report_status')",
            name=op.f("ck_node_commands_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["nodes.id"],
            name=op.f("fk_node_commands_node_id_nodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_commands")),
    )
    op.create_index("ix_node_commands_created_at", "node_commands", ["created_at"])
    op.create_index(
        "ix_node_commands_pending",
        "node_commands",
        ["node_id", "id"],
        postgresql_where=sa.text("acknowledged_at IS NULL"),
    )
    op.create_table(
        "client_connections",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("user_name", sa.Text(), nullable=False),
        sa.Column("host", sa.Text(), server_default="", nullable=False),
        sa.Column("ip_address", sa.Text(), server_default="", nullable=False),
        sa.Column("client_version", sa.Text(), server_default="", nullable=False),
        sa.Column("replica", sa.Text(), nullable=False),
        sa.Column(
            "subscription",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "notification_preferences",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "connected_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "last_seen_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_event_id", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("disconnected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disconnect_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "disconnect_reason IN ('forced', 'server_shutdown', 'resume_too_old', 'too_slow', 'closed', 'timed_out')",
            name=op.f("ck_client_connections_disconnect_reason"),
        ),
        sa.CheckConstraint(
            "kind IN ('console', 'notificator')", name=op.f("ck_client_connections_kind")
        ),
        sa.CheckConstraint(
            "disconnect_reason IS NULL OR disconnected_at IS NOT NULL",
            name=op.f("ck_client_connections_reason_only_when_disconnected"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_client_connections")),
    )
    op.create_index(
        "ix_client_connections_live",
        "client_connections",
        ["kind", "user_name"],
        postgresql_where=sa.text("disconnected_at IS NULL"),
    )
    op.create_index("ix_client_connections_replica", "client_connections", ["replica"])


def _upgrade_admin() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), server_default="", nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("role", sa.Text(), server_default="user", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("email", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "notification_preferences",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("directory", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("max_job_priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("role IN ('administrator', 'user')", name=op.f("ck_users_role")),
        sa.CheckConstraint(
            "NOT (directory AND password_hash IS NOT NULL)",
            name=op.f("ck_users_directory_no_password"),
        ),
        sa.CheckConstraint(
            "max_job_priority BETWEEN 0 AND 65535", name=op.f("ck_users_max_job_priority_range")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )
    op.create_table(
        "groups",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_groups")),
        sa.UniqueConstraint("name", name=op.f("uq_groups_name")),
    )
    op.create_table(
        "group_members",
        sa.Column("group_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.id"],
            name=op.f("fk_group_members_group_id_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_group_members_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "user_id", name=op.f("pk_group_members")),
    )
    op.create_index("ix_group_members_user_id", "group_members", ["user_id"])
    op.create_table(
        "pools",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pools")),
        sa.UniqueConstraint("name", name=op.f("uq_pools_name")),
    )
    op.create_table(
        "pool_members",
        sa.Column("pool_id", sa.BigInteger(), nullable=False),
        sa.Column("node_name", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["pool_id"],
            ["pools.id"],
            name=op.f("fk_pool_members_pool_id_pools"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pool_id", "node_name", name=op.f("pk_pool_members")),
    )
    op.create_index("ix_pool_members_node_name", "pool_members", ["node_name"])
    op.create_table(
        "repositories",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("windows_path", sa.Text(), server_default="", nullable=False),
        sa.Column("linux_path", sa.Text(), server_default="", nullable=False),
        sa.Column("macos_path", sa.Text(), server_default="", nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_repositories")),
        sa.UniqueConstraint("name", name=op.f("uq_repositories_name")),
    )
    op.create_table(
        "dispatcher_config",
        sa.Column("id", sa.Integer(), server_default="1", autoincrement=False, nullable=False),
        sa.Column(
            "config",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "secrets",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "secrets_encrypted", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("updated_by", sa.Text(), server_default="", nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_dispatcher_config_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispatcher_config")),
    )
    op.create_table(
        "ldap_config",
        sa.Column("id", sa.Integer(), server_default="1", autoincrement=False, nullable=False),
        sa.Column(
            "config",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "secrets",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "secrets_encrypted", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("updated_by", sa.Text(), server_default="", nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_ldap_config_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ldap_config")),
    )
    op.create_table(
        "engine_state",
        sa.Column("id", sa.Integer(), server_default="1", autoincrement=False, nullable=False),
        sa.Column("status", sa.Text(), server_default="running", nullable=False),
        sa.Column(
            "changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("changed_by", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "statistics_reset_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("status IN ('running', 'paused')", name=op.f("ck_engine_state_status")),
        sa.CheckConstraint("id = 1", name=op.f("ck_engine_state_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engine_state")),
    )
    op.create_table(
        "log_messages",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "logged_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("level", sa.Text(), server_default="info", nullable=False),
        sa.Column("source", sa.Text(), server_default="", nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("internal", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.CheckConstraint(
            "level IN ('debug', 'info', 'warning', 'error')", name=op.f("ck_log_messages_level")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_messages")),
    )
    op.create_index("ix_log_messages_logged_at", "log_messages", ["logged_at"])
    op.create_table(
        "activity_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "logged_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("node_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "detail",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activity_log")),
    )
    op.create_index("ix_activity_log_logged_at", "activity_log", ["logged_at"])
    op.create_table(
        "action_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "logged_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("user_name", sa.Text(), server_default="", nullable=False),
        sa.Column("peer", sa.Text(), server_default="", nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), server_default="", nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("status_code", sa.Text(), server_default="OK", nullable=False),
        sa.Column(
            "detail",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "outcome IN ('succeeded', 'denied', 'failed')", name=op.f("ck_action_log_outcome")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_action_log")),
    )
    op.create_index("ix_action_log_logged_at", "action_log", ["logged_at"])
    op.create_index("ix_action_log_user_name_logged_at", "action_log", ["user_name", "logged_at"])
    op.create_table(
        "statistics_samples",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "sampled_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "counters",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_statistics_samples")),
    )
    op.create_index("ix_statistics_samples_sampled_at", "statistics_samples", ["sampled_at"])
    op.create_table(
        "history_samples",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("sampled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("interval_seconds", sa.Integer(), nullable=False),
        sa.Column("pool", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "counters",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "interval_seconds > 0", name=op.f("ck_history_samples_interval_positive")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_history_samples")),
    )
    op.create_index("ix_history_samples_sampled_at", "history_samples", ["sampled_at"])
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "attempted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("user_name", sa.Text(), nullable=False),
        sa.Column("peer", sa.Text(), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_attempts")),
    )
    op.create_index("ix_login_attempts_attempted_at", "login_attempts", ["attempted_at"])
    op.create_index(
        "ix_login_attempts_peer_attempted_at", "login_attempts", ["peer", "attempted_at"]
    )
    op.create_index(
        "ix_login_attempts_user_name_attempted_at", "login_attempts", ["user_name", "attempted_at"]
    )
    op.create_table(
        "signing_keys",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "octet_length(secret) >= 32", name=op.f("ck_signing_keys_secret_length")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signing_keys")),
    )
