"""Tables of the admin domain: users, groups, pools, repositories, the
dispatcher and LDAP configuration, engine state, logs, statistics and
history samples, and what authentication needs (login attempts, signing keys).

Only the admin service writes these tables; other services may read them.
State columns are text with a CHECK listing every value: the lower-case
names of the protobuf enums in protos/farm/admin/v1/admin.proto.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from muster_services.core.schema import metadata, one_of

# User roles (UserRole): 'administrator' may do everything; 'user' submits
# jobs, manages their own and reads the rest (docs/security.md).
USER_ROLES = ("administrator", "user")

# Engine statuses (EngineStatus): 'paused' dispatches nothing new, running
# chunks finish.
ENGINE_STATUSES = ("running", "paused")

# Dispatcher log levels (LogLevel).
LOG_LEVELS = ("debug", "info", "warning", "error")

# How an audited call ended: 'succeeded'; 'denied' (PERMISSION_DENIED or
# UNAUTHENTICATED: refusals are audited too); 'failed' (any other error status).
ACTION_OUTCOMES = ("succeeded", "denied", "failed")

# --- users ---------------------------------------------------------------------
# Dispatcher accounts. Directory (LDAP) users appear here only once they have
# something to keep (preferences, group memberships); they authenticate by
# LDAP bind and never have a local password.
users = Table(
    "users",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    # Login name; jobs.owner and the logs refer to users by it.
    Column("name", Text, nullable=False),
    Column("display_name", Text, nullable=False, server_default=""),
    # argon2 hash (PHC string). NULL: no local password (directory users, or
    # an account that may not sign in with a password).
    Column("password_hash", Text, nullable=True),
    Column("role", Text, nullable=False, server_default="user"),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("email", Text, nullable=False, server_default=""),
    # NotificationPreferences as {"job_started": true, ...}.
    Column("notification_preferences", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # True for an LDAP directory user (listed as @directory@<name>).
    Column("directory", Boolean, nullable=False, server_default=text("false")),
    # Highest priority the user may give a job; 0 = no limit.
    Column("max_job_priority", Integer, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The client's request id of the Create call (a retry returns this row).
    Column("request_id", Text, nullable=True),
    UniqueConstraint("name"),
    CheckConstraint(one_of("role", USER_ROLES), name="role"),
    CheckConstraint("NOT (directory AND password_hash IS NOT NULL)", name="directory_no_password"),
    CheckConstraint("max_job_priority BETWEEN 0 AND 65535", name="max_job_priority_range"),
)
Index(
    "ux_users_request_id",
    users.c.request_id,
    unique=True,
    postgresql_where=text("request_id IS NOT NULL"),
)

# --- groups ----------------------------------------------------------------------
groups = Table(
    "groups",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The client's request id of the Create call (a retry returns this row).
    Column("request_id", Text, nullable=True),
    UniqueConstraint("name"),
)
Index(
    "ux_groups_request_id",
    groups.c.request_id,
    unique=True,
    postgresql_where=text("request_id IS NOT NULL"),
)

# Memberships; removing a user or a group removes its memberships.
group_members = Table(
    "group_members",
    metadata,
    Column("group_id", BigInteger, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    PrimaryKeyConstraint("group_id", "user_id"),
)
# "Groups of a user" and the cascade from users.
Index("ix_group_members_user_id", group_members.c.user_id)

# --- pools ---------------------------------------------------------------------------
# Named sets of nodes, used by jobs' included/excluded pools (by name).
pools = Table(
    "pools",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The client's request id of the Create call (a retry returns this row).
    Column("request_id", Text, nullable=True),
    UniqueConstraint("name"),
)
Index(
    "ux_pools_request_id",
    pools.c.request_id,
    unique=True,
    postgresql_where=text("request_id IS NOT NULL"),
)

# Members of a pool, by node name: nodes belong to the nodes domain and a pool
# may name a node before it first registers. A host name without an instance
# suffix covers every instance of that host.
pool_members = Table(
    "pool_members",
    metadata,
    Column("pool_id", BigInteger, ForeignKey("pools.id", ondelete="CASCADE"), nullable=False),
    Column("node_name", Text, nullable=False),
    PrimaryKeyConstraint("pool_id", "node_name"),
)
# "Pools of a node".
Index("ix_pool_members_node_name", pool_members.c.node_name)

# --- repositories -------------------------------------------------------------------
# One storage location across platforms (substitution paths).
repositories = Table(
    "repositories",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("name", Text, nullable=False),
    Column("windows_path", Text, nullable=False, server_default=""),
    Column("linux_path", Text, nullable=False, server_default=""),
    Column("macos_path", Text, nullable=False, server_default=""),
    Column("description", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The client's request id of the Create call (a retry returns this row).
    Column("request_id", Text, nullable=True),
    UniqueConstraint("name"),
)
Index(
    "ux_repositories_request_id",
    repositories.c.request_id,
    unique=True,
    postgresql_where=text("request_id IS NOT NULL"),
)

# --- dispatcher configuration ------------------------------------------------------
# The stored dispatcher configuration: a single row (id = 1). `config` is the
# DispatcherConfiguration without write-only secrets, so it can be returned
# and logged as is; the secrets (SMTP password) sit apart in `secrets`.
dispatcher_config = Table(
    "dispatcher_config",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False, server_default="1"),
    Column("config", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("secrets", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # True when the values of `secrets` are ciphertext (key from a deployment secret).
    Column("secrets_encrypted", Boolean, nullable=False, server_default=text("false")),
    # The configuration in effect on every replica now (same shape as config
    # and secrets). An unstored change writes only these; the admin service
    # copies config/secrets over them when it starts (see docs/admin.md).
    Column("runtime_config", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("runtime_secrets", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_by", Text, nullable=False, server_default=""),
    CheckConstraint("id = 1", name="single_row"),
)

# The stored LDAP configuration: a single row (id = 1), the bind password
# kept apart from `config` as in dispatcher_config.
ldap_config = Table(
    "ldap_config",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False, server_default="1"),
    Column("config", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("secrets", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("secrets_encrypted", Boolean, nullable=False, server_default=text("false")),
    # The configuration in effect on every replica now (same shape as config
    # and secrets). An unstored change writes only these; the admin service
    # copies config/secrets over them when it starts (see docs/admin.md).
    Column("runtime_config", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("runtime_secrets", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_by", Text, nullable=False, server_default=""),
    CheckConstraint("id = 1", name="single_row"),
)

# --- engine state --------------------------------------------------------------------
# Whether the selection engine dispatches: a single row (id = 1) the
# scheduler reads every tick, so a swap on any replica takes effect farm-wide.
engine_state = Table(
    "engine_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False, server_default="1"),
    Column("status", Text, nullable=False, server_default="running"),
    Column("changed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("changed_by", Text, nullable=False, server_default=""),
    # When systemResetStatisticsCounters last zeroed the live counters; they
    # count from this time on.
    Column(
        "statistics_reset_at", DateTime(timezone=True), nullable=False, server_default=func.now()
    ),
    # When systemStartNodesNetworkScan last started a scan, and when the nodes
    # service reported it finished; a scan runs in between (at most 10 minutes).
    Column("network_scan_started_at", DateTime(timezone=True), nullable=True),
    Column("network_scan_finished_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("id = 1", name="single_row"),
    CheckConstraint(one_of("status", ENGINE_STATUSES), name="status"),
)

# --- authentication ----------------------------------------------------------------
# Failed logins, for rate limiting per user name and per address (every
# replica counts the same rows). Rows older than the window are pruned.
login_failures = Table(
    "login_failures",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("failed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("user_name", Text, nullable=False),
    # The caller's IP address, without the port.
    Column("address", Text, nullable=False),
)
Index(
    "ix_login_failures_user_name_failed_at", login_failures.c.user_name, login_failures.c.failed_at
)
Index("ix_login_failures_address_failed_at", login_failures.c.address, login_failures.c.failed_at)

# --- logs ------------------------------------------------------------------------------
# The dispatcher log (logAddMessage, logAddInternalMessage, logClear).
log_messages = Table(
    "log_messages",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("logged_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("level", Text, nullable=False, server_default="info"),
    # "dispatcher", "jobs", "hook:onSubmitJob", a user name...
    Column("source", Text, nullable=False, server_default=""),
    Column("message", Text, nullable=False),
    # Internal (diagnostic) messages are hidden from non-administrators.
    Column("internal", Boolean, nullable=False, server_default=text("false")),
    CheckConstraint(one_of("level", LOG_LEVELS), name="level"),
)
Index("ix_log_messages_logged_at", log_messages.c.logged_at)

# What the dispatcher did (dispatches, requeues, node state changes). The
# API's per-day activity log "files" are days of this table.
activity_log = Table(
    "activity_log",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("logged_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # What kind of activity: "dispatch", "requeue", "node_status", ... (free text).
    Column("category", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("job_id", BigInteger, nullable=True),
    Column("node_id", BigInteger, nullable=True),
    Column("detail", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
)
Index("ix_activity_log_logged_at", activity_log.c.logged_at)

# The audit log: who did what, from where, and how it ended, for every
# state-changing call (refusals included). Per-day "files" as activity_log.
action_log = Table(
    "action_log",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("logged_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # '' when the caller was not authenticated.
    Column("user_name", Text, nullable=False, server_default=""),
    # The caller's address (gRPC peer).
    Column("peer", Text, nullable=False, server_default=""),
    # The RPC or Muster function, e.g. "jobs.DeleteJob".
    Column("action", Text, nullable=False),
    # What it acted on, e.g. "job:42", "user:alice".
    Column("target", Text, nullable=False, server_default=""),
    Column("outcome", Text, nullable=False),
    # gRPC status code name, e.g. "OK", "PERMISSION_DENIED".
    Column("status_code", Text, nullable=False, server_default="OK"),
    Column("detail", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    CheckConstraint(one_of("outcome", ACTION_OUTCOMES), name="outcome"),
)
Index("ix_action_log_logged_at", action_log.c.logged_at)
Index("ix_action_log_user_name_logged_at", action_log.c.user_name, action_log.c.logged_at)

# --- statistics and history samples ---------------------------------------------------
# Farm load snapshots taken every statistics interval (StatisticsSample):
# counters as {"nodes_idle": 3, "chunks_running": 7, ...}.
statistics_samples = Table(
    "statistics_samples",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("sampled_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("counters", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
)
# dbGetStatisticsBounds / dbClearStatisticsBounds work on time ranges.
Index("ix_statistics_samples_sampled_at", statistics_samples.c.sampled_at)

# Farm activity per interval, for reports (HistorySample): counters as
# {"jobs_submitted": 2, "chunks_completed": 120, "render_seconds": 5400, ...}.
history_samples = Table(
    "history_samples",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    # Start of the interval.
    Column("sampled_at", DateTime(timezone=True), nullable=False),
    Column("interval_seconds", Integer, nullable=False),
    # The pool the figures are for; '' for the whole farm.
    Column("pool", Text, nullable=False, server_default=""),
    Column("counters", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    CheckConstraint("interval_seconds > 0", name="interval_positive"),
)
Index("ix_history_samples_sampled_at", history_samples.c.sampled_at)

# --- authentication ----------------------------------------------------------------------
# Login attempts, kept briefly to rate-limit failures per user and per address.
login_attempts = Table(
    "login_attempts",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("attempted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("user_name", Text, nullable=False),
    Column("peer", Text, nullable=False),
    Column("success", Boolean, nullable=False),
)
Index(
    "ix_login_attempts_user_name_attempted_at",
    login_attempts.c.user_name,
    login_attempts.c.attempted_at,
)
Index("ix_login_attempts_peer_attempted_at", login_attempts.c.peer, login_attempts.c.attempted_at)
Index("ix_login_attempts_attempted_at", login_attempts.c.attempted_at)

# Keys that sign session tokens, shared by every replica through the
# database. A token names its key id; a retired key still verifies tokens
# until they expire, and signs none.
signing_keys = Table(
    "signing_keys",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("secret", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("retired_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("octet_length(secret) >= 32", name="secret_length"),
)
