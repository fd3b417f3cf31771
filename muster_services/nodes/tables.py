"""Tables of the nodes domain: render nodes, their exclusions, the command
outbox to agents, and the live client connections (consoles, notificators).

Only the nodes service writes these tables; other services may read them
(the scheduler reads nodes and exclusions). State columns are text with a
CHECK listing every value: the lower-case names of the protobuf enums in
protos/farm/nodes/v1/nodes.proto and protos/farm/common/v1/common.proto.
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
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from muster_services.core.schema import metadata, one_of

# Node statuses (NodeStatus).
#   offline    no agent session, or no heartbeat for the node-lost timeout
#   idle       online, not rendering, not paused: available for work
#   rendering  online and running a chunk (paused may be true: it stops after it)
#   paused     online, not rendering, paused: takes no work until resumed
NODE_STATUSES = ("offline", "idle", "rendering", "paused")

# Operating system families (Platform).
PLATFORMS = ("windows", "linux", "macos")

# Render process priorities (ProcessPriority).
PROCESS_PRIORITIES = ("idle", "below_normal", "normal", "above_normal", "high")

# Commands the nodes service sends to an agent (agent.proto Command).
NODE_COMMAND_KINDS = (
    "kill_process",
    "pause",
    "resume",
    "set_process_priority",
    "soft_restart",
    "set_realtime_log",
    "system_event",
    "run_python_code",
    "custom_message",
    "report_status",
)

# Live client kinds (ClientKind).
CLIENT_KINDS = ("console", "notificator")

# Why a client connection ended: the DisconnectReason values the dispatcher
# sends ('forced', 'server_shutdown', 'resume_too_old', 'too_slow'), plus
# 'closed' (the client closed it) and 'timed_out' (it vanished and its
# replica, or the sweep, gave up on it).
DISCONNECT_REASONS = (
    "forced",
    "server_shutdown",
    "resume_too_old",
    "too_slow",
    "closed",
    "timed_out",
)

# --- nodes ---------------------------------------------------------------------------
# Render nodes: one row per agent instance (a host running --instances 3 is
# three nodes). The row outlives the agent's session; nodeRemoveRegistration
# deletes it.
nodes = Table(
    "nodes",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    # Unique case-insensitively (ux_nodes_name_lower): pools and users name nodes.
    Column("name", Text, nullable=False),
    Column("host_name", Text, nullable=False),
    Column("ip_address", Text, nullable=False, server_default=""),
    Column("mac_address", Text, nullable=False, server_default=""),
    Column("platform", Text, nullable=False),
    Column("os_version", Text, nullable=False, server_default=""),
    # 0 for a host's first instance.
    Column("instance_number", Integer, nullable=False, server_default="0"),
    Column("cpu_cores", Integer, nullable=False, server_default="0"),
    Column("memory_bytes", BigInteger, nullable=False, server_default="0"),
    # Pools the agent declared at registration; the admin domain's pool_members
    # add to them.
    Column("pools", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("status", Text, nullable=False, server_default="offline"),
    Column("paused", Boolean, nullable=False, server_default=text("false")),
    Column("process_priority", Text, nullable=False, server_default="normal"),
    Column("realtime_log", Boolean, nullable=False, server_default=text("false")),
    Column("notes", Text, nullable=False, server_default=""),
    Column("agent_version", Text, nullable=False, server_default=""),
    # The agent's live stream: which nodes-service replica holds it and the id
    # of that session. NULL while offline. A command for a node held by
    # another replica goes through node_commands and the bus to this replica.
    Column("replica", Text, nullable=True),
    Column("session_id", Text, nullable=True),
    Column("connected_at", DateTime(timezone=True), nullable=True),
    Column("last_heartbeat_at", DateTime(timezone=True), nullable=True),
    Column("registered_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Hash (argon2) of this node's own enrollment secret, when the farm enrolls
    # agents per node rather than with one farm-wide secret. Never the secret.
    Column("enrollment_secret_hash", Text, nullable=True),
    # An administrator's values of templates' client configuration items for
    # this node: {"<template id>": {"ITEM": "value"}} (SetNodeTemplatePreferences).
    Column("template_preferences", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    UniqueConstraint("host_name", "instance_number"),
    CheckConstraint(one_of("status", NODE_STATUSES), name="status"),
    CheckConstraint(one_of("platform", PLATFORMS), name="platform"),
    CheckConstraint(one_of("process_priority", PROCESS_PRIORITIES), name="process_priority"),
    CheckConstraint("instance_number >= 0", name="instance_number_not_negative"),
    CheckConstraint("cpu_cores >= 0", name="cpu_cores_not_negative"),
    CheckConstraint("memory_bytes >= 0", name="memory_bytes_not_negative"),
    # The 'paused' status is the paused flag seen on a node that is not rendering.
    CheckConstraint("status <> 'paused' OR paused", name="paused_status_has_flag"),
)
Index("ux_nodes_name_lower", func.lower(nodes.c.name), unique=True)
# The scheduler's idle nodes and the node-lost sweep.
Index("ix_nodes_status", nodes.c.status)
Index("ix_nodes_replica", nodes.c.replica)

# --- node template exclusions -------------------------------------------------------
# Templates a node will not run (nodePurgeTemplatesExclusion removes rows).
# template_id is the jobs domain's template id: no foreign key across domains.
node_template_exclusions = Table(
    "node_template_exclusions",
    metadata,
    Column("node_id", BigInteger, ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False),
    Column("template_id", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("node_id", "template_id"),
)

# --- node job exclusions --------------------------------------------------------------
# Failures of a job on a node. Once failures reach the configured threshold
# the node is excluded from the job until excluded_until, then forgiven
# (Afanasy's rule; nodePurgeJobsExclusions removes rows). job_id is the jobs
# domain's job id: no foreign key, stale rows are swept.
node_job_exclusions = Table(
    "node_job_exclusions",
    metadata,
    Column("node_id", BigInteger, ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False),
    Column("job_id", BigInteger, nullable=False),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("last_failure_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # NULL while the node is still below the threshold (counting, not excluded).
    Column("excluded_until", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("node_id", "job_id"),
    CheckConstraint("failures >= 0", name="failures_not_negative"),
)
Index("ix_node_job_exclusions_job_id", node_job_exclusions.c.job_id)

# --- node commands -----------------------------------------------------------------
# Outbox of commands to agents. The replica that accepts the request writes
# the row (and a bus event) in one transaction; the replica holding the
# agent's stream delivers it, and the agent's CommandAck fills the result.
# The id is the command_id the agent echoes.
node_commands = Table(
    "node_commands",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("node_id", BigInteger, ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False),
    Column("kind", Text, nullable=False),
    Column("payload", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # User (or "dispatcher") who asked for it, for the action log.
    Column("requested_by", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    Column("acknowledged_at", DateTime(timezone=True), nullable=True),
    # {"ok": bool, "message": str, ...} from the agent's CommandAck (or the
    # output of run_python_code).
    Column("result", JSONB, nullable=True),
    CheckConstraint(one_of("kind", NODE_COMMAND_KINDS), name="kind"),
)
# Commands still waiting for their agent.
Index(
    "ix_node_commands_pending",
    node_commands.c.node_id,
    node_commands.c.id,
    postgresql_where=text("acknowledged_at IS NULL"),
)
Index("ix_node_commands_created_at", node_commands.c.created_at)
# The kill follow-ups by fencing token: read for every batch of results
# (store.kill_follow_ups), however many commands were ever sent.
Index(
    "ix_node_commands_kill_token",
    node_commands.c.payload["fencing_token"].astext,
    postgresql_where=text("kind = 'kill_process'"),
)

# --- client connections --------------------------------------------------------------
# Live console and notificator connections, held by any nodes-service replica.
# Rows stay after disconnection (disconnected_at set) until swept, so a forced
# disconnection can be told from a vanished client; the API lists only rows
# with disconnected_at NULL.
client_connections = Table(
    "client_connections",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("kind", Text, nullable=False),
    Column("user_name", Text, nullable=False),
    Column("host", Text, nullable=False, server_default=""),
    Column("ip_address", Text, nullable=False, server_default=""),
    Column("client_version", Text, nullable=False, server_default=""),
    # The nodes-service replica holding the stream.
    Column("replica", Text, nullable=False),
    # What the client subscribed to: {"job_ids": [...], "folder_ids": [...], "node_ids": [...]}.
    Column("subscription", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # A notificator's NotificationPreferences for this connection.
    Column("notification_preferences", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("connected_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Refreshed by the holding replica; a row not refreshed within the client
    # timeout belongs to a vanished client or replica.
    Column("last_seen_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Last bus event id pushed to the client (its resume point).
    Column("last_event_id", BigInteger, nullable=False, server_default="0"),
    Column("disconnected_at", DateTime(timezone=True), nullable=True),
    Column("disconnect_reason", Text, nullable=True),
    CheckConstraint(one_of("kind", CLIENT_KINDS), name="kind"),
    CheckConstraint(one_of("disconnect_reason", DISCONNECT_REASONS), name="disconnect_reason"),
    CheckConstraint(
        "disconnect_reason IS NULL OR disconnected_at IS NOT NULL",
        name="reason_only_when_disconnected",
    ),
)
# clientGetList / clientNGetByUsername: the live connections of a kind.
Index(
    "ix_client_connections_live",
    client_connections.c.kind,
    client_connections.c.user_name,
    postgresql_where=text("disconnected_at IS NULL"),
)
Index("ix_client_connections_replica", client_connections.c.replica)
