"""Tables of the jobs domain: templates, the queue (jobs and folders), chunks,
live assignments, chunk history and the backup store.

Only the jobs service writes these tables; other services may read them.
State columns are text with a CHECK listing every value; the values are the
lower-case names of the protobuf enums in protos/farm/jobs/v1/jobs.proto and
protos/farm/common/v1/common.proto (JOB_STATUS_COMPLETED -> 'completed').
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Sequence,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from muster_services.core.schema import metadata, one_of

# Job kinds (JobKind): 'job' renders chunks, 'folder' only holds other entries.
JOB_KINDS = ("job", "folder")

# Job statuses (JobStatus). Pausing is the separate `paused` flag, as in Muster.
#   queued                   no chunk has started yet
#   waiting_dependencies     waits for the jobs in job_dependencies (depend_mode)
#   running                  at least one chunk started, not every chunk finished
#   completed                every chunk completed or was skipped
#   completed_with_warnings  every chunk finished, none failed, some warned
#   completed_with_errors    every chunk finished and some failed
#   failed                   a template aborted the render (kTemplateErrorAbortRender)
JOB_STATUSES = (
    "queued",
    "waiting_dependencies",
    "running",
    "completed",
    "completed_with_warnings",
    "completed_with_errors",
    "failed",
)

# Chunk statuses (ChunkStatus).
#   queued                   ready, waiting for a node
#   waiting_dependencies     waits for the chunk with the same frames of a job it depends on
#   assigned                 has a live assignment; the node has not reported the process yet
#   running                  the process runs on the node
#   completed                finished successfully
#   completed_with_warnings  finished successfully, warnings in the log
#   failed                   failed and not requeued automatically (requeues exhausted...)
#   hold                     held by a user: never assigned until set back to queued
#   skipped                  skipped by a user: counts as done without running
CHUNK_STATUSES = (
    "queued",
    "waiting_dependencies",
    "assigned",
    "running",
    "completed",
    "completed_with_warnings",
    "failed",
    "hold",
    "skipped",
)

# Packet types (PacketType): how a job is split into chunks.
PACKET_TYPES = ("frames", "slices", "single", "broadcast")

# Depend modes (DependMode): 'success' waits for every dependency to complete
# successfully; 'completion' waits for every dependency to finish, whatever the outcome.
DEPEND_MODES = ("success", "completion")

# Which log findings fail a chunk (LogsErrorCheck).
LOGS_ERROR_CHECKS = ("all", "skip_warnings", "skip_all")

# States of a live assignment (a row of chunk_assignments).
#   assigned  committed by the scheduler; the agent has not reported the process yet
#   running   the agent reported the process started
#   killing   a kill was sent; the row (and so the chunk's slot) stays until the agent
#             confirms the kill or the node is declared lost: only then may the chunk
#             be requeued (scheduling lesson 3, no silent double render)
ASSIGNMENT_STATES = ("assigned", "running", "killing")

# What follows a confirmed kill (KillFollowUp).
KILL_FOLLOW_UPS = ("continue", "pause", "restart")

# Statuses chunkSetStatus may leave pending on a live chunk until its kill is
# confirmed (chunk_assignments.status_after_kill).
STATUSES_AFTER_KILL = ("queued", "hold", "skipped", "completed")

# How one run of a chunk ended (ChunkRunOutcome); 'running' while it has no end.
RUN_OUTCOMES = (
    "running",
    "succeeded",
    "succeeded_with_warnings",
    "failed",
    "killed",
    "timed_out",
    "lost",
)

# Output stream of a captured log line (LogStream).
LOG_STREAMS = ("unspecified", "stdout", "stderr", "agent")
# What the agent found in a log line (LogMark); NULL when nothing.
LOG_MARKS = ("error", "warning")


# --- templates ---------------------------------------------------------------
# Render templates. The id is given explicitly: it is Muster's template id
# (1 = Maya software, 37 = V-Ray, 48 = ffmpeg, 55 = Redshift) that jobs and
# pipeline scripts refer to, so it is never generated.
templates = Table(
    "templates",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    # One entry per platform: {"platform", "executable", "arguments": [...],
    # "working_directory", "environment": {...}} (TemplateCommand).
    Column("commands", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("log_error_patterns", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("log_warning_patterns", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    # Exit codes meaning success; empty means only 0.
    Column("success_exit_codes", ARRAY(Integer), nullable=False, server_default=text("'{}'")),
    Column("default_packet_type", Text, nullable=False, server_default="frames"),
    # File name of the template's Python script in the templates folder; '' for none.
    Column("script_name", Text, nullable=False, server_default=""),
    # False hides the template from submission; existing jobs still run.
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The MTemplateAPI file that defines it (muster_gateway/template_engine.py): the
    # version (hash of the text) agents run, its path, the error of its newest
    # text when that failed to load (the version stays the last good one),
    # and whether it ships with the dispatcher.
    Column("version", Text, nullable=False, server_default=""),
    Column("file_path", Text, nullable=False, server_default=""),
    Column("load_error", Text, nullable=False, server_default=""),
    Column("builtin", Boolean, nullable=False, server_default=text("false")),
    # What the file configured, as muster_gateway.template_engine.definition() gives it
    # (items, mappings, platforms, defaults, callbacks).
    Column("definition", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # Licence and delay groups (setLicensesGroup/setMaximumLicenses,
    # setDelayGroup/setDelay); the scheduler enforces them.
    Column("licenses_group", Text, nullable=False, server_default=""),
    Column("max_licenses", Integer, nullable=False, server_default=text("0")),
    Column("delay_group", Text, nullable=False, server_default=""),
    Column("delay_seconds", Integer, nullable=False, server_default=text("0")),
    UniqueConstraint("name"),
    CheckConstraint("id > 0", name="id_positive"),
    CheckConstraint(one_of("default_packet_type", PACKET_TYPES), name="default_packet_type"),
)

# Every version of every template's code that was loaded: agents fetch the
# version an assignment names (a running chunk keeps the version it started
# with while the file changes).
template_versions = Table(
    "template_versions",
    metadata,
    Column(
        "template_id", BigInteger, ForeignKey("templates.id", ondelete="CASCADE"), nullable=False
    ),
    Column("version", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("file_path", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("template_id", "version"),
)

# The template files the dispatcher read last: a file that failed to load (or
# whose templates were refused) has its error here, shown by ListTemplates.
template_files = Table(
    "template_files",
    metadata,
    Column("file_path", Text, primary_key=True),
    Column("error", Text, nullable=False, server_default=""),
    Column("template_ids", ARRAY(BigInteger), nullable=False, server_default=text("'{}'")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# --- jobs ----------------------------------------------------------------------
# The render queue: jobs and folders in one tree. The id is generated BY
# DEFAULT (not ALWAYS) so queue import and backup restore can put a job back
# under its original id; whoever inserts explicit ids then moves the identity
# sequence past them (setval).
jobs = Table(
    "jobs",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    # NULL is the queue root (the API's -1). Deleting a folder deletes what it
    # holds, recursively, with their chunks and live assignments.
    Column("parent_id", BigInteger, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=True),
    Column("kind", Text, nullable=False, server_default="job"),
    Column("name", Text, nullable=False),
    # The user whose rights apply to the job (a user name; users live in the
    # admin domain, so no foreign key).
    Column("owner", Text, nullable=False),
    # The authenticated caller who submitted it (differs from owner when
    # submitting on someone's behalf).
    Column("submitter", Text, nullable=False, server_default=""),
    Column("priority", Integer, nullable=False, server_default="0"),
    # NULL only for folders (CHECK template_for_jobs).
    Column("template_id", BigInteger, ForeignKey("templates.id"), nullable=True),
    Column("start_frame", Double, nullable=False, server_default="0"),
    Column("end_frame", Double, nullable=False, server_default="0"),
    Column("by_frame", Double, nullable=False, server_default="1"),
    Column("packet_size", Integer, nullable=False, server_default="1"),
    Column("packet_type", Text, nullable=False, server_default="frames"),
    # Pool names (admin domain); empty included_pools means any node.
    Column("included_pools", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("excluded_pools", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    # The depend ids themselves are rows of job_dependencies.
    Column("depend_mode", Text, nullable=False, server_default="success"),
    # True: each chunk also waits for the chunk with the same frames in the
    # jobs this one depends on (chunk dependencies).
    Column("depend_chunks", Boolean, nullable=False, server_default=text("false")),
    # Most nodes working on the job at once; 0 = no limit.
    Column("max_nodes", Integer, nullable=False, server_default="0"),
    Column("project", Text, nullable=False, server_default=""),
    Column("department", Text, nullable=False, server_default=""),
    Column("job_group", Text, nullable=False, server_default=""),
    Column("notes", Text, nullable=False, server_default=""),
    # 0 = the dispatcher's global chunk timeout.
    Column("chunk_timeout_seconds", Integer, nullable=False, server_default="0"),
    # 0 = the dispatcher's global maximum of requeues per chunk.
    Column("max_chunk_requeues", Integer, nullable=False, server_default="0"),
    Column("logs_error_check", Text, nullable=False, server_default="all"),
    # Typed attributes keyed by name: {"job_file": {"type": "string",
    # "value": "...", "substitute_paths": true}, ...}.
    Column("attributes", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # Extra environment variables of the render process: {"NAME": "value"}.
    Column("environment", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("status", Text, nullable=False, server_default="queued"),
    Column("paused", Boolean, nullable=False, server_default=text("false")),
    # A locked job may not be edited, reinitialised or deleted.
    Column("locked", Boolean, nullable=False, server_default=text("false")),
    Column("requeue_count", Integer, nullable=False, server_default="0"),
    # Chunk counters kept in step with the chunks by the jobs service, so
    # listing 10,000 jobs never scans chunks: queued counts queued and
    # waiting_dependencies, running counts assigned and running, completed
    # counts completed, completed_with_warnings and skipped. Held chunks are
    # in no bucket, hence "<= total".
    Column("chunks_total", Integer, nullable=False, server_default="0"),
    Column("chunks_queued", Integer, nullable=False, server_default="0"),
    Column("chunks_running", Integer, nullable=False, server_default="0"),
    Column("chunks_completed", Integer, nullable=False, server_default="0"),
    Column("chunks_failed", Integer, nullable=False, server_default="0"),
    Column("progress", Double, nullable=False, server_default="0"),
    Column("submitted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Optimistic concurrency: every update sets version = version + 1 WHERE
    # version = :seen (the API's etag).
    Column("version", BigInteger, nullable=False, server_default="1"),
    # The client's request id of the submission or folder creation (SubmitJob,
    # CreateFolder): a retry with the same id returns the first call's job.
    # Added by migration 0003.
    Column("request_id", Text, nullable=True),
    CheckConstraint(one_of("kind", JOB_KINDS), name="kind"),
    CheckConstraint(one_of("status", JOB_STATUSES), name="status"),
    CheckConstraint(one_of("packet_type", PACKET_TYPES), name="packet_type"),
    CheckConstraint(one_of("depend_mode", DEPEND_MODES), name="depend_mode"),
    CheckConstraint(one_of("logs_error_check", LOGS_ERROR_CHECKS), name="logs_error_check"),
    CheckConstraint("parent_id <> id", name="not_own_parent"),
    CheckConstraint("kind = 'folder' OR template_id IS NOT NULL", name="template_for_jobs"),
    CheckConstraint("priority BETWEEN 0 AND 65535", name="priority_range"),
    CheckConstraint("by_frame > 0", name="by_frame_positive"),
    CheckConstraint("end_frame >= start_frame", name="frame_range"),
    CheckConstraint("packet_size >= 1", name="packet_size_positive"),
    CheckConstraint("max_nodes >= 0", name="max_nodes_not_negative"),
    CheckConstraint("chunk_timeout_seconds >= 0", name="chunk_timeout_not_negative"),
    CheckConstraint("max_chunk_requeues >= 0", name="max_chunk_requeues_not_negative"),
    CheckConstraint("requeue_count >= 0", name="requeue_count_not_negative"),
    CheckConstraint("chunks_total >= 0", name="chunks_total_not_negative"),
    CheckConstraint("chunks_queued >= 0", name="chunks_queued_not_negative"),
    CheckConstraint("chunks_running >= 0", name="chunks_running_not_negative"),
    CheckConstraint("chunks_completed >= 0", name="chunks_completed_not_negative"),
    CheckConstraint("chunks_failed >= 0", name="chunks_failed_not_negative"),
    CheckConstraint(
        "chunks_queued + chunks_running + chunks_completed + chunks_failed <= chunks_total",
        name="chunks_within_total",
    ),
    CheckConstraint("progress BETWEEN 0 AND 100", name="progress_range"),
    CheckConstraint("version >= 1", name="version_positive"),
)
# Folder listing and the ON DELETE CASCADE of the tree.
Index("ix_jobs_parent_id", jobs.c.parent_id)
Index("ix_jobs_owner", jobs.c.owner)
# Jobs that may still have work (a statement that says it in these words
# may use the index below).
UNFINISHED_JOBS = "kind = 'job' AND status IN ('queued', 'waiting_dependencies', 'running')"
# The scheduler's candidate jobs: only jobs that may still have work. It
# orders them by priority DESC, submitted_at, id (FIFO within a priority).
Index(
    "ix_jobs_dispatchable",
    jobs.c.priority,
    jobs.c.submitted_at,
    postgresql_where=text(UNFINISHED_JOBS),
)
Index("ix_jobs_status", jobs.c.status)
Index(
    "ux_jobs_request_id",
    jobs.c.request_id,
    unique=True,
    postgresql_where=text("request_id IS NOT NULL"),
)

# --- job dependencies ------------------------------------------------------------
# "job_id waits for depends_on_job_id" (the API's depend ids). Deleting
# either job removes the row, so a dependant of a deleted job is released
# instead of waiting forever (scheduling lesson 4). Cycles longer than one
# are refused by the jobs service at submission/edit.
job_dependencies = Table(
    "job_dependencies",
    metadata,
    Column("job_id", BigInteger, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column(
        "depends_on_job_id",
        BigInteger,
        ForeignKey("jobs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    PrimaryKeyConstraint("job_id", "depends_on_job_id"),
    CheckConstraint("job_id <> depends_on_job_id", name="not_self"),
)
# "Who waits for this job?" when it finishes, and the cascade from it.
Index("ix_job_dependencies_depends_on_job_id", job_dependencies.c.depends_on_job_id)

# --- chunks ------------------------------------------------------------------------
# Units of work of a job, numbered 1..n in frame order.
chunks = Table(
    "chunks",
    metadata,
    Column("job_id", BigInteger, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("chunk_number", Integer, nullable=False),
    Column("start_frame", Double, nullable=False),
    Column("end_frame", Double, nullable=False),
    Column("by_frame", Double, nullable=False, server_default="1"),
    # Slice index for 'slices' packet jobs (0-based), 0 otherwise.
    Column("slice_index", Integer, nullable=False, server_default="0"),
    Column("status", Text, nullable=False, server_default="queued"),
    # The node that runs or last ran the chunk. No foreign key: nodes belong to
    # the nodes domain, and a chunk keeps naming its node after the node's
    # registration is removed (node_name keeps the readable name).
    Column("node_id", BigInteger, nullable=True),
    Column("node_name", Text, nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("requeue_count", Integer, nullable=False, server_default="0"),
    # How many runs the chunk had: the next run's run_number is runs_count + 1.
    Column("runs_count", Integer, nullable=False, server_default="0"),
    Column("exit_code", Integer, nullable=True),
    Column("progress", Double, nullable=False, server_default="0"),
    # Token of the current (or last) assignment; reports carrying another
    # token change nothing.
    Column("fencing_token", BigInteger, nullable=True),
    # Optimistic concurrency: the scheduler claims a chunk with
    # UPDATE ... WHERE status = 'queued' AND version = :seen.
    Column("version", BigInteger, nullable=False, server_default="1"),
    PrimaryKeyConstraint("job_id", "chunk_number"),
    CheckConstraint(one_of("status", CHUNK_STATUSES), name="status"),
    CheckConstraint("chunk_number >= 1", name="chunk_number_positive"),
    CheckConstraint("by_frame > 0", name="by_frame_positive"),
    CheckConstraint("end_frame >= start_frame", name="frame_range"),
    CheckConstraint("slice_index >= 0", name="slice_index_not_negative"),
    CheckConstraint("requeue_count >= 0", name="requeue_count_not_negative"),
    CheckConstraint("runs_count >= 0", name="runs_count_not_negative"),
    CheckConstraint("progress BETWEEN 0 AND 100", name="progress_range"),
    CheckConstraint("version >= 1", name="version_positive"),
)
# The scheduler's "ready chunks": small however many chunks are finished.
Index(
    "ix_chunks_ready",
    chunks.c.job_id,
    chunks.c.chunk_number,
    postgresql_where=text("status = 'queued'"),
)
Index("ix_chunks_node_id", chunks.c.node_id)

# --- chunk assignments -----------------------------------------------------------
# Fencing tokens: strictly increasing and never reused, even after the
# assignment row is gone, so a late report from an old run can always be told
# from the current one. A standalone sequence (not an identity) because a
# kill-and-restart re-stamps a chunk with a fresh token.
fencing_tokens = Sequence("fencing_tokens", metadata=metadata)

# The live assignments: one row while a chunk is given to a node, from the
# scheduler's commit until the run's result is recorded (or the kill is
# confirmed / the node is declared lost). The database, not the scheduler's
# memory, is the arbiter of double-booking: the unique constraints refuse a
# second live assignment of a chunk and a second chunk on a node.
chunk_assignments = Table(
    "chunk_assignments",
    metadata,
    Column(
        "fencing_token",
        BigInteger,
        primary_key=True,
        autoincrement=False,
        server_default=text("nextval('fencing_tokens')"),
    ),
    Column("job_id", BigInteger, nullable=False),
    Column("chunk_number", Integer, nullable=False),
    # No foreign key to nodes (another domain); see chunks.node_id.
    Column("node_id", BigInteger, nullable=False),
    Column("state", Text, nullable=False, server_default="assigned"),
    # Set with state 'killing': what the node does once the kill is confirmed.
    Column("kill_follow_up", Text, nullable=True),
    # Set with state 'killing' by chunkSetStatus: the status the chunk takes
    # once the kill is confirmed or the node is lost (migration 0003).
    Column("status_after_kill", Text, nullable=True),
    # The OS user the process runs as on the node, chosen by the hook
    # onDispatcherOverrideImpersonationUser; '' = the agent's own user (migration 0006).
    Column("run_as_user", Text, nullable=False, server_default=""),
    Column("assigned_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Last report (progress, heartbeat) carrying this token: timeout sweeps.
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ForeignKeyConstraint(
        ["job_id", "chunk_number"],
        ["chunks.job_id", "chunks.chunk_number"],
        ondelete="CASCADE",
    ),
    # A chunk never has two live assignments.
    UniqueConstraint("job_id", "chunk_number"),
    # A node (one agent instance, one render slot) runs one chunk at a time.
    UniqueConstraint("node_id"),
    CheckConstraint(one_of("state", ASSIGNMENT_STATES), name="state"),
    CheckConstraint(one_of("kill_follow_up", KILL_FOLLOW_UPS), name="kill_follow_up"),
    CheckConstraint("kill_follow_up IS NULL OR state = 'killing'", name="follow_up_only_killing"),
    CheckConstraint(one_of("status_after_kill", STATUSES_AFTER_KILL), name="status_after_kill"),
    CheckConstraint(
        "status_after_kill IS NULL OR state = 'killing'", name="status_after_kill_only_killing"
    ),
)

# --- teardowns under way ------------------------------------------------------------
# A deletion or reinit whose first transaction is done (muster_services/jobs/
# teardowns.py): one row per job of the tree. The first, short transaction
# releases the jobs' live chunks and writes these rows; the second deletes the
# jobs (a deletion: these rows go by cascade) or rebuilds their chunks (a
# reinit: it deletes these rows), and publishes the root's event (`event`, on
# the root's row). The scheduler gives no chunk of these jobs, so the second
# transaction's locks are on rows no render-loop statement waits for. A row
# whose second transaction never came (the process died) is finished later.
TEARDOWN_ACTIONS = ("delete", "reinit")
job_teardowns = Table(
    "job_teardowns",
    metadata,
    Column("job_id", BigInteger, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("root_id", BigInteger, nullable=False),
    Column("action", Text, nullable=False),
    # The root's job.deleted or job.reinit event payload (NULL on the other rows).
    Column("event", JSONB, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(one_of("action", TEARDOWN_ACTIONS), name="action"),
)

# --- chunk runs (history) -----------------------------------------------------------
# Every run of every chunk (the API's chunk history). Deliberately no foreign
# key to jobs or chunks: history survives requeues, reinit and job deletion.
chunk_runs = Table(
    "chunk_runs",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("job_id", BigInteger, nullable=False),
    Column("chunk_number", Integer, nullable=False),
    # 1 for the chunk's first run.
    Column("run_number", Integer, nullable=False),
    Column("node_id", BigInteger, nullable=False),
    # Kept as text so history reads well after the node is removed.
    Column("node_name", Text, nullable=False, server_default=""),
    Column("fencing_token", BigInteger, nullable=False),
    Column("start_frame", Double, nullable=False),
    Column("end_frame", Double, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("exit_code", Integer, nullable=True),
    Column("outcome", Text, nullable=False, server_default="running"),
    # Human-readable reason: the template's error, "killed by alice", ...
    Column("message", Text, nullable=False, server_default=""),
    # Render log bookkeeping (migration 0010; muster_services/jobs/logs.py): the
    # last line number given out, the bytes of text stored, and how the log
    # cap cut the log: the first `log_head_lines` lines are kept whatever
    # comes after them; the `log_dropped_lines` lines right after the head
    # (`log_dropped_bytes` of text) were dropped to keep the run under the
    # cap; everything after them is the kept tail. The retention empties a
    # run's log by moving every line into the dropped range.
    Column("log_lines", Integer, nullable=False, server_default="0"),
    Column("log_bytes", BigInteger, nullable=False, server_default="0"),
    Column("log_head_lines", Integer, nullable=False, server_default="0"),
    Column("log_dropped_lines", Integer, nullable=False, server_default="0"),
    Column("log_dropped_bytes", BigInteger, nullable=False, server_default="0"),
    UniqueConstraint("job_id", "chunk_number", "run_number"),
    # One run per assignment.
    UniqueConstraint("fencing_token"),
    CheckConstraint(one_of("outcome", RUN_OUTCOMES), name="outcome"),
    CheckConstraint("run_number >= 1", name="run_number_positive"),
    # A run has an end time exactly when it is over.
    CheckConstraint("(outcome = 'running') = (ended_at IS NULL)", name="ended_when_over"),
    CheckConstraint(
        "log_bytes >= 0 AND log_dropped_bytes >= 0 AND log_head_lines >= 0"
        " AND log_dropped_lines >= 0 AND log_head_lines + log_dropped_lines <= log_lines",
        name="log_counters",
    ),
)
# History audit in the database: at most one run of a chunk is in progress.
Index(
    "ux_chunk_runs_one_running",
    chunk_runs.c.job_id,
    chunk_runs.c.chunk_number,
    unique=True,
    postgresql_where=text("outcome = 'running'"),
)
# History bounds and retention pruning by time.
Index("ix_chunk_runs_started_at", chunk_runs.c.started_at)

# --- chunk run logs --------------------------------------------------------------
# Output lines of a run as the agent streamed them; pruned by the retention
# configured in the dispatcher configuration.
chunk_run_logs = Table(
    "chunk_run_logs",
    metadata,
    Column(
        "run_id",
        BigInteger,
        ForeignKey("chunk_runs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # Line number within the run, from 1, in the agent's order.
    Column("seq", Integer, nullable=False),
    Column("logged_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("stream", Text, nullable=False, server_default="stdout"),
    Column("line", Text, nullable=False),
    # What the agent found in the line: 'error', 'warning' or NULL for
    # nothing (LogMark; migration 0010).
    Column("mark", Text, nullable=True),
    PrimaryKeyConstraint("run_id", "seq"),
    CheckConstraint(one_of("stream", LOG_STREAMS), name="stream"),
    CheckConstraint(one_of("mark", LOG_MARKS), name="mark"),
    CheckConstraint("seq >= 1", name="seq_positive"),
)
# A run's marked lines (GetChunkLog's error_lines and warning_lines) without
# reading the run's other lines: few lines are marked.
Index(
    "ix_chunk_run_logs_marked",
    chunk_run_logs.c.run_id,
    chunk_run_logs.c.mark,
    chunk_run_logs.c.seq,
    postgresql_where=text("mark IS NOT NULL"),
)

# --- backup store ------------------------------------------------------------------
# Jobs archived out of the queue (backupJob, backupJobAndDelete). A snapshot
# is self-contained and never references live rows, so a backup outlives its
# job; the copied columns are there to filter backupQuery without opening it.
backup_jobs = Table(
    "backup_jobs",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    # The job's id in the queue when it was backed up.
    Column("job_id", BigInteger, nullable=False),
    # Its parent folder then (NULL = queue root).
    Column("parent_id", BigInteger, nullable=True),
    Column("name", Text, nullable=False),
    Column("owner", Text, nullable=False),
    Column("project", Text, nullable=False, server_default=""),
    Column("backed_up_by", Text, nullable=False, server_default=""),
    Column("chunks_count", Integer, nullable=False, server_default="0"),
    # {"job": {...jobs row...}, "dependencies": [...], "chunks": [...],
    #  "runs": [...], "parents": [{"id", "name", "owner", "parent_id"}, ...]}
    # where "parents" is the folder chain up to the root, for restoring
    # missing parent folders.
    Column("snapshot", JSONB, nullable=False),
    Column("backed_up_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("chunks_count >= 0", name="chunks_count_not_negative"),
)
Index("ix_backup_jobs_backed_up_at", backup_jobs.c.backed_up_at)
Index("ix_backup_jobs_job_id", backup_jobs.c.job_id)
Index("ix_backup_jobs_owner", backup_jobs.c.owner)

# --- licence and delay groups of templates (muster_services/jobs/licences.py) -------------------
# Group kinds (TemplateGroupKind): 'licenses' (setLicensesGroup/setMaximumLicenses)
# and 'delay' (setDelayGroup/setDelay).
TEMPLATE_GROUP_KINDS = ("licenses", "delay")

# What the database keeps about a group beyond the templates' files: an
# administrator's override of its limit (the cap of a licence group, the
# delay in seconds of a delay group; NULL = the files' value, 0 = none) and,
# for a delay group, when the scheduler last started a chunk of it (so a new
# leader keeps the spacing). A row may name a group no template names yet.
template_groups = Table(
    "template_groups",
    metadata,
    Column("kind", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("limit_override", Integer, nullable=True),
    Column("last_started_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("kind", "name"),
    CheckConstraint(one_of("kind", TEMPLATE_GROUP_KINDS), name="kind"),
    CheckConstraint("limit_override >= 0", name="limit_override_not_negative"),
    CheckConstraint("name <> ''", name="name_not_empty"),
)

# Job action statuses: 'running' is written before the action's process starts
# (so a replica that dies while it runs never lets it start twice), then one
# of the ends; 'interrupted': the replica running it stopped before its end.
JOB_ACTION_KINDS = ("pre_job", "post_job")
JOB_ACTION_STATUSES = ("running", "succeeded", "failed", "interrupted")

# The pre/post job custom actions the dispatcher ran (muster_services/jobs/actions.py):
# one row per job.started / job.completed event that had an action to run
# (event_id: at most one run per event), with its command line as evaluated,
# its exit code, what it printed (the tail) and why it failed.
job_actions = Table(
    "job_actions",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("event_id", BigInteger, nullable=False),
    Column("job_id", BigInteger, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("kind", Text, nullable=False),
    Column("command", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="running"),
    Column("exit_code", Integer, nullable=True),
    Column("message", Text, nullable=False, server_default=""),
    Column("output", Text, nullable=False, server_default=""),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("event_id"),
    CheckConstraint(one_of("kind", JOB_ACTION_KINDS), name="kind"),
    CheckConstraint(one_of("status", JOB_ACTION_STATUSES), name="status"),
    CheckConstraint("(status = 'running') = (ended_at IS NULL)", name="ended_when_over"),
)
Index("ix_job_actions_job_id", job_actions.c.job_id)
