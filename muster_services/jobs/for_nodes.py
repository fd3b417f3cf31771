"""What the nodes service needs from the jobs domain: the one jobs module it imports.

The nodes service (muster_services/nodes) imports from muster_services/jobs only this
module and muster_services/jobs/topics.py (tests/nodes/test_boundaries.py checks
it); everything else it knows of jobs comes through the contract (farm.*).
This module is owned by the jobs domain; its SQL is in muster_services/jobs/store.py
(section "what the nodes service reads"). It offers:

- the Assignment an agent gets for its node's live assignment
  (build_assignments), with what every assignment of a batch shares
  (ReferenceCache) and the events that say that changed (REFERENCE_TOPICS);
- reads of the live assignments (chunk_assignments) that the nodes' use
  cases need: a node's live fencing token, several nodes' tokens, a node's,
  several nodes' or a job's assignment rows;
- what consoles and node actions see of a job: its Job message
  (console_job), its owner, name and folder ancestry (job_facts), its owner
  (job_owner);
- the chunk status an event payload names, as the contract's enum
  (chunk_status, for the consoles' chunk_changed);
- `chunk_assignments`, the table itself, for the few nodes statements that
  must test "the node holds a live assignment" inside one statement of their
  own (see muster_services/nodes/store.py).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Row
from sqlalchemy.orm import Session

from muster_proto.agent.v1 import agent_pb2
from muster_proto.jobs.v1 import jobs_pb2
from muster_services.admin import topics as admin_topics
from muster_services.admin.configuration import read_configuration
from muster_services.admin.domain import DispatcherConfig
from muster_services.admin.paths import RepositoryPaths, map_path
from muster_services.admin.store import all_repositories
from muster_services.core.database import Database
from muster_services.jobs import store, topics
from muster_services.jobs.domain import attributes_from_json
from muster_services.jobs.enums import CHUNK_STATUS
from muster_services.jobs.messages import NODE_JOB_COLUMNS, job_for_node, job_message
from muster_services.jobs.store import (
    job_assignments,
    job_owner,
    node_assignment,
    node_live_token,
    nodes_assignments,
    nodes_live_tokens,
)
from muster_services.jobs.tables import chunk_assignments

__all__ = [
    "REFERENCE_SECONDS",
    "REFERENCE_TOPICS",
    "JobFacts",
    "NodeAssignment",
    "ReferenceCache",
    "build_assignments",
    "chunk_assignments",
    "chunk_status",
    "console_job",
    "job_assignments",
    "job_facts",
    "job_owner",
    "node_assignment",
    "node_live_token",
    "nodes_assignments",
    "nodes_live_tokens",
]

_LOG = logging.getLogger(__name__)

# What every assignment of a batch shares, kept between batches: read again
# when an event says it changed (REFERENCE_TOPICS) and at least this often
# (templates change only when a replica starts and seeds them).
REFERENCE_SECONDS = 10.0
REFERENCE_TOPICS = frozenset(
    {
        admin_topics.CONFIG_CHANGED,
        admin_topics.REPOSITORY_CREATED,
        admin_topics.REPOSITORY_UPDATED,
        admin_topics.REPOSITORY_DELETED,
        admin_topics.REPOSITORIES_CHANGED,
        topics.TEMPLATES_CHANGED,
    }
)


# The job parts kept (below) are dropped beyond this many (job, platform) pairs.
JOB_PARTS_LIMIT = 10_000


@dataclass(frozen=True)
class _Reference:
    config: DispatcherConfig
    mappings: list[RepositoryPaths]
    # The version of each template's code (Template.version): the node runs
    # the template's callbacks of that version.
    versions: dict[int, str]
    # The (error, warning) line patterns templates declare: the node marks
    # the lines they match in the render log (LogLine.mark).
    patterns: dict[int, tuple[list[str], list[str]]]
    read_at: float
    # The job's part of an Assignment (_job_part) by (job, platform), with the
    # job's values it was built from (NODE_JOB_COLUMNS): built once for all the
    # assignments of a job to nodes of a platform, in a batch and after it
    # while the job's values are the same. Built with this reference's
    # configuration, paths and templates, so it is dropped with them.
    job_parts: dict[tuple[int, str], tuple[tuple[Any, ...], agent_pb2.Assignment]] = (
        dataclasses.field(default_factory=dict)
    )


class ReferenceCache:
    """The dispatcher configuration, the repositories' paths and the templates
    that assignments are built with: three reads fewer per batch."""

    def __init__(self) -> None:
        self._current: _Reference | None = None

    def invalidate(self) -> None:
        self._current = None

    def get(self, session: Session, template_ids: set[int]) -> _Reference:
        current = self._current
        if (
            current is None
            or time.monotonic() - current.read_at > REFERENCE_SECONDS
            or not template_ids <= current.versions.keys()
        ):
            current = self._current = _Reference(
                read_configuration(session),
                [
                    RepositoryPaths(r.windows_path, r.linux_path, r.macos_path)
                    for r in all_repositories(session)
                ],
                store.template_versions_by_id(session),
                store.template_log_patterns(session),
                time.monotonic(),
            )
        return current


class NodeAssignment(NamedTuple):
    """A node's live assignment as its agent gets it, and whether the node's
    realtime log is on as the assignment was read: the relay forwards the
    run's log lines to consoles by it, whether or not the command that
    switched it on has reached the agent's stream yet."""

    message: agent_pb2.Assignment
    realtime_log: bool


def build_assignments(
    db: Database, node_ids: list[int], reference: ReferenceCache | None = None
) -> dict[int, NodeAssignment]:
    """The Assignment messages of these nodes' live assignments, read with a
    few set-based queries. No transaction: a job deleted between two reads
    leaves its assignment unbuilt (and gone)."""
    with db.read_session() as session:
        live = store.assignments_to_build(session, node_ids)
        if not live:
            return {}
        job_rows = store.jobs_of_assignments(session, {a.job_id for a in live})
        shared = (reference or ReferenceCache()).get(
            session, {j.template_id for j in job_rows.values()}
        )
    parts = shared.job_parts
    if len(parts) > JOB_PARTS_LIMIT:
        parts.clear()
    # The values of each job its part is built from, read once per batch.
    keys = {
        job_id: tuple(row._mapping[c] for c in NODE_JOB_COLUMNS) for job_id, row in job_rows.items()
    }
    messages = {}
    for assignment in live:
        try:
            job = job_rows[assignment.job_id]
            key = keys[job.id]
            kept = parts.get((job.id, assignment.platform))
            if kept is None or kept[0] != key:
                kept = parts[(job.id, assignment.platform)] = (
                    key,
                    _job_part(job, assignment.platform, shared),
                )
            messages[assignment.node_id] = NodeAssignment(
                _assignment_message(assignment, kept[1]), bool(assignment.realtime_log)
            )
        except Exception:
            _LOG.exception("cannot build the assignment of node %s", assignment.node_id)
    return messages


def _substitute(
    path: str, *, mappings: list[RepositoryPaths], platform: str, case_sensitive: bool
) -> str:
    return map_path(path, mappings, platform, case_sensitive)


def _job_part(job: Row[Any], platform: str, shared: _Reference) -> agent_pb2.Assignment:
    """What every Assignment of `job` to a node of `platform` carries: the job
    (its path attributes mapped to the platform), its timeout, the version of
    its template's code and the log lines to mark.

    The node runs the template: the agent calls the template's callbacks of
    that version with the job and the chunk."""
    config = shared.config
    default_timeout = config.chunk_timeout_seconds if config.abort_process_on_chunk_timeout else 0
    # Attributes flagged for substitution become the node's own paths.
    substitute = functools.partial(
        _substitute,
        mappings=shared.mappings,
        platform=platform,
        case_sensitive=config.substitution_paths_case_sensitive,
    )
    attributes = [
        dataclasses.replace(a, value=substitute(a.value))
        if a.substitute_paths and isinstance(a.value, str)
        else a
        for a in attributes_from_json(job.attributes or {})
    ]
    part = agent_pb2.Assignment(
        job_id=job.id,
        job_name=job.name,
        template_id=job.template_id,
        # The job's own chunk timeout, else the configuration's global one.
        timeout_seconds=int(job.chunk_timeout_seconds or default_timeout),
        template_version=shared.versions[job.template_id],
        job=job_for_node(job, attributes),
    )
    # What the job's log check looks for, the node marks (muster_services/jobs/logs.py).
    errors, warnings = shared.patterns.get(job.template_id, ([], []))
    if job.logs_error_check != "skip_all":
        part.log_error_patterns.extend(errors)
        if job.logs_error_check != "skip_warnings":
            part.log_warning_patterns.extend(warnings)
    return part


def _assignment_message(live: Row[Any], part: agent_pb2.Assignment) -> agent_pb2.Assignment:
    """`live`: the assignment row with its node's platform and preferences and
    its chunk's frames; `part`: its job's part (_job_part), copied."""
    assignment = agent_pb2.Assignment()
    assignment.CopyFrom(part)
    assignment.chunk_id = live.chunk_number
    assignment.fencing_token = live.fencing_token
    assignment.run_number = live.runs_count
    assignment.start_frame = live.start_frame
    assignment.end_frame = live.end_frame
    assignment.by_frame = live.by_frame
    assignment.run_as_user = live.run_as_user
    chunk = assignment.chunk
    chunk.id = live.chunk_number
    chunk.job_id = part.job_id
    chunk.start_frame = live.start_frame
    chunk.end_frame = live.end_frame
    chunk.by_frame = live.by_frame
    chunk.slice_index = live.slice_index
    chunk.node_id = live.node_id
    chunk.requeue_count = max(0, live.runs_count - 1)
    # The node's own values of the template's client configuration items.
    preferences = (live.template_preferences or {}).get(str(part.template_id))
    if preferences:
        assignment.template_preferences.update({str(k): str(v) for k, v in preferences.items()})
    return assignment


# --- what consoles see of a job ---------------------------------------------------------


def chunk_status(text: Any) -> Any:
    """A chunk status of an event payload ('queued'...) as the ChunkStatus
    number; UNSPECIFIED (0) when absent or unknown."""
    return CHUNK_STATUS.number(str(text or ""))


def console_job(session: Session, job_id: int) -> jobs_pb2.Job | None:
    """The Job message a console gets with a job event (None: the job is gone)."""
    row = store.get_job(session, job_id)
    return job_message(row) if row is not None else None


@dataclass(frozen=True)
class JobFacts:
    """What notifications and folder filters need of a job."""

    owner: str
    name: str
    # The folders the job is in, at any depth.
    ancestors: frozenset[int]


def job_facts(session: Session, job_id: int) -> JobFacts:
    """Owner, name and folder ancestry of a job (empty when it is gone)."""
    owner, name, ancestors = "", "", set()
    current: int | None = job_id
    first = True
    while current is not None and current not in ancestors:
        row = store.job_parent_owner_name(session, current)
        if row is None:
            break
        if first:
            owner, name, first = row.owner, row.name, False
        else:
            ancestors.add(current)
        current = row.parent_id
    return JobFacts(owner, name, frozenset(ancestors))


# --- template code for the agents (AgentService.GetTemplateSource) -------------------------


@dataclass(frozen=True)
class TemplateSource:
    """One version of a template's code, as its file held it."""

    template_id: int
    version: str
    source: str
    file_name: str


def template_source(session: Session, template_id: int, version: str) -> TemplateSource | None:
    """The code of `version` of a template (None: no such template or version)."""
    row = store.template_source(session, template_id, version)
    if row is None:
        return None
    return TemplateSource(template_id, version, row.source, row.file_path)
