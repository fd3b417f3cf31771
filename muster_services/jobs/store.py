"""SQL of the jobs domain (SQLAlchemy Core on the tables of muster_services/jobs/tables.py).

Every function takes the caller's Session, so a use case composes several of
them in one transaction. Nothing here decides a rule; muster_services/jobs/domain.py
does. Only jobs-domain tables are written.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    BindParameter,
    ColumnElement,
    Connection,
    Row,
    Select,
    and_,
    any_,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from muster_services.core.bus import outbox_ctes, wake_parameters
from muster_services.jobs.domain import (
    JOB_RECORD_DERIVED,
    ROOT,
    BackupRecord,
    ChunkPlan,
    ChunkRecord,
    CounterMove,
    JobRecord,
    JobSpec,
    JobVersion,
    ListedChunk,
    RunRecord,
    TemplateRecord,
    TreeNode,
)
from muster_services.jobs.queue_sql import row_from_json, row_to_json
from muster_services.jobs.tables import (
    UNFINISHED_JOBS,
    backup_jobs,
    chunk_assignments,
    chunk_runs,
    chunks,
    job_dependencies,
    job_teardowns,
    jobs,
    template_files,
    template_versions,
    templates,
)
from muster_services.jobs.topics import (
    CHUNK_FAILED,
    CHUNK_FINISHED,
    CHUNK_REQUEUED,
    CHUNK_STARTED,
    JOB_STARTED,
)

# --- jobs ---------------------------------------------------------------------------

# Derived per-job values read with every job: cheap correlated lookups on the
# primary keys of job_dependencies and chunk_assignments.
_DEPEND_IDS = (
    select(func.coalesce(func.array_agg(job_dependencies.c.depends_on_job_id), text("'{}'")))
    .where(job_dependencies.c.job_id == jobs.c.id)
    .scalar_subquery()
    .label("depend_ids")
)
_NODES_WORKING = (
    select(func.count())
    .select_from(chunk_assignments)
    .where(chunk_assignments.c.job_id == jobs.c.id)
    .scalar_subquery()
    .label("nodes_working")
)


_JOB_RECORD_COLUMNS = tuple(
    jobs.c[f.name] for f in dataclasses.fields(JobRecord) if f.name not in JOB_RECORD_DERIVED
)


def _job_select() -> Select[Any]:
    """The columns of a JobRecord, in its field order."""
    return select(*_JOB_RECORD_COLUMNS, _DEPEND_IDS, _NODES_WORKING)


def get_job(session: Session, job_id: int, lock: bool = False) -> JobRecord | None:
    query = _job_select().where(jobs.c.id == job_id)
    if lock:
        # Serialises changes of one job (edit, chunk status, reinit) so the
        # counters are computed from a stable set of chunks. The job's live
        # assignments are locked first: a run's end (muster_services/jobs/runs.py)
        # locks its assignment, then its chunk, then updates the job, and the
        # same order everywhere is what keeps the two from deadlocking.
        session.execute(
            select(chunk_assignments.c.fencing_token)
            .where(chunk_assignments.c.job_id == job_id)
            .order_by(chunk_assignments.c.fencing_token)
            .with_for_update()
        ).all()
        query = query.with_for_update(of=jobs)
    row = session.execute(query).first()
    return None if row is None else JobRecord(*row)


def job_version(connection: Connection, job_id: int) -> JobVersion | None:
    """(id, version) of a job, on a connection of Database.read()."""
    row = connection.execute(select(jobs.c.id, jobs.c.version).where(jobs.c.id == job_id)).first()
    return cast(JobVersion | None, row)


def job_id_for_request(session: Session, request_id: str) -> int | None:
    found = session.execute(select(jobs.c.id).where(jobs.c.request_id == request_id)).scalar()
    return int(found) if found is not None else None


def list_jobs(
    session: Session,
    *,
    after: int | None,
    limit: int,
    parent_id: int | None = None,
    root_only: bool = False,
    owner: str = "",
    statuses: Sequence[str] = (),
    kind: str | None = None,
    project: str = "",
) -> Sequence[JobVersion]:
    """A page of jobs in id order, just (id, version) of each: a reader keeps
    the jobs it knows and loads the others with jobs_by_ids."""
    query = select(jobs.c.id, jobs.c.version).order_by(jobs.c.id).limit(limit)
    if after is not None:
        query = query.where(jobs.c.id > after)
    if root_only:
        query = query.where(jobs.c.parent_id.is_(None))
    elif parent_id is not None:
        query = query.where(jobs.c.parent_id == parent_id)
    if owner:
        query = query.where(jobs.c.owner == owner)
    if statuses:
        query = query.where(jobs.c.status.in_(statuses))
    if kind:
        query = query.where(jobs.c.kind == kind)
    if project:
        query = query.where(jobs.c.project == project)
    return cast(Sequence[JobVersion], session.execute(query).all())


def jobs_by_ids(session: Session, ids: Sequence[int]) -> list[JobRecord]:
    if not ids:
        return []
    rows = session.execute(_job_select().where(jobs.c.id.in_(list(ids)))).all()
    return [JobRecord(*row) for row in rows]


def job_values(spec: JobSpec, packet_type: str) -> dict[str, Any]:
    """The jobs columns of a spec (submit, edit)."""
    return {
        "parent_id": None if spec.parent_id == ROOT else spec.parent_id,
        "kind": spec.kind,
        "name": spec.name,
        "owner": spec.owner,
        "priority": spec.priority,
        "template_id": spec.template_id if spec.kind == "job" else None,
        "start_frame": spec.start_frame,
        "end_frame": spec.end_frame,
        "by_frame": spec.by_frame,
        "packet_size": spec.packet_size,
        "packet_type": packet_type,
        "included_pools": list(spec.included_pools),
        "excluded_pools": list(spec.excluded_pools),
        "depend_mode": spec.depend_mode,
        "depend_chunks": spec.depend_chunks,
        "max_nodes": spec.max_nodes,
        "project": spec.project,
        "department": spec.department,
        "job_group": spec.job_group,
        "notes": spec.notes,
        "chunk_timeout_seconds": spec.chunk_timeout_seconds,
        "max_chunk_requeues": spec.max_chunk_requeues,
        "logs_error_check": spec.logs_error_check,
        "attributes": {a.name: a.as_json() for a in spec.attributes},
        "environment": dict(spec.environment),
        "paused": spec.paused,
        "locked": spec.locked,
    }


def insert_job(session: Session, values: Mapping[str, Any]) -> int:
    job_id = session.execute(insert(jobs).values(**values).returning(jobs.c.id)).scalar_one()
    return int(job_id)


def update_job(
    session: Session, job_id: int, values: Mapping[str, Any], *, ended_now: bool = False
) -> None:
    """Change a job's columns (its version moves on); with ended_now, ended_at
    becomes the transaction's time."""
    ended = {"ended_at": func.now()} if ended_now else {}
    session.execute(
        update(jobs)
        .where(jobs.c.id == job_id)
        .values(**values, **ended, version=jobs.c.version + 1, updated_at=func.now())
    )


def set_dependencies(session: Session, job_id: int, depend_ids: Iterable[int]) -> None:
    session.execute(delete(job_dependencies).where(job_dependencies.c.job_id == job_id))
    rows = [{"job_id": job_id, "depends_on_job_id": d} for d in sorted(set(depend_ids))]
    if rows:
        session.execute(insert(job_dependencies), rows)


def existing_jobs(session: Session, ids: Iterable[int]) -> dict[int, Row[Any]]:
    """id -> (id, kind, status) of the given ids that exist."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    query: Select[Any] = select(jobs.c.id, jobs.c.kind, jobs.c.status).where(jobs.c.id.in_(wanted))
    rows = session.execute(query).all()
    return {int(r.id): r for r in rows}


def ancestors(session: Session, folder_id: int) -> list[int]:
    """The folder's parent chain up to the root (nearest first)."""
    chain = (
        select(jobs.c.id, jobs.c.parent_id, literal_column("1").label("depth"))
        .where(jobs.c.id == folder_id)
        .cte("chain", recursive=True)
    )
    chain = chain.union_all(
        select(jobs.c.id, jobs.c.parent_id, (chain.c.depth + 1).label("depth")).where(
            jobs.c.id == chain.c.parent_id
        )
    )
    rows = session.execute(select(chain.c.parent_id).order_by(chain.c.depth)).scalars()
    return [int(r) for r in rows if r is not None]


def subtree(session: Session, job_id: int) -> list[TreeNode]:
    """The job or folder and everything inside it: (id, kind, locked, parent_id, owner)."""
    tree = (
        select(jobs.c.id, jobs.c.kind, jobs.c.locked, jobs.c.parent_id, jobs.c.owner)
        .where(jobs.c.id == job_id)
        .cte("tree", recursive=True)
    )
    tree = tree.union_all(
        select(jobs.c.id, jobs.c.kind, jobs.c.locked, jobs.c.parent_id, jobs.c.owner).where(
            jobs.c.parent_id == tree.c.id
        )
    )
    return [TreeNode(*row) for row in session.execute(select(tree)).all()]


def dependency_edges(session: Session, start_ids: Iterable[int]) -> dict[int, list[int]]:
    """The "waits for" edges reachable from start_ids (for cycle checks)."""
    starts = sorted(set(start_ids))
    if not starts:
        return {}
    reach = (
        select(job_dependencies.c.job_id, job_dependencies.c.depends_on_job_id)
        .where(job_dependencies.c.job_id.in_(starts))
        .cte("reach", recursive=True)
    )
    reach = reach.union(
        select(job_dependencies.c.job_id, job_dependencies.c.depends_on_job_id).where(
            job_dependencies.c.job_id == reach.c.depends_on_job_id
        )
    )
    edges: dict[int, list[int]] = {}
    for row in session.execute(select(reach)).all():
        edges.setdefault(int(row.job_id), []).append(int(row.depends_on_job_id))
    return edges


def delete_jobs(session: Session, job_id: int) -> None:
    # ON DELETE CASCADE removes the folder's contents, their chunks, live
    # assignments and dependency rows; chunk_runs and backup_jobs stay.
    session.execute(delete(jobs).where(jobs.c.id == job_id))


# --- teardowns under way (job_teardowns; muster_services/jobs/teardowns.py) ---------------


def mark_teardown(
    session: Session, action: str, root_id: int, job_ids: Sequence[int], event: Mapping[str, Any]
) -> None:
    """The jobs of the tree `root_id` as being deleted or reinitialised, the
    root's row with the event to publish once it is done. A teardown begun
    before (its process died before it ended) keeps its rows and its event,
    unless this is a deletion and that a reinit: the deletion takes them over."""
    rows = [
        {
            "job_id": i,
            "root_id": root_id,
            "action": action,
            "event": dict(event) if i == root_id else None,
        }
        for i in sorted(job_ids)
    ]
    statement = pg_insert(job_teardowns).values(rows)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["job_id"],
            set_={
                "root_id": statement.excluded.root_id,
                "action": statement.excluded.action,
                "event": statement.excluded.event,
                "created_at": func.now(),
            },
            where=and_(job_teardowns.c.action == "reinit", statement.excluded.action == "delete"),
        )
    )


def lock_teardown(
    session: Session, action: str, root_id: int, wait: bool = True
) -> dict[str, Any] | None:
    """The event of the teardown `action` of `root_id` under way, its row
    locked; None when it is over (or, without `wait`, another transaction is
    ending it)."""
    query: Select[Any] = (
        select(job_teardowns.c.event)
        .where(
            job_teardowns.c.job_id == root_id,
            job_teardowns.c.root_id == root_id,
            job_teardowns.c.action == action,
        )
        .with_for_update(skip_locked=not wait)
    )
    row = session.execute(query).first()
    return None if row is None else dict(row.event)


def end_teardown(session: Session, root_id: int) -> None:
    """The rows of the reinit of `root_id` (a deletion's go with its jobs)."""
    session.execute(
        delete(job_teardowns).where(
            job_teardowns.c.root_id == root_id, job_teardowns.c.action == "reinit"
        )
    )


def teardowns_begun_before(session: Session, seconds: float) -> list[tuple[str, int]]:
    """(action, root) of the teardowns begun more than `seconds` ago and not over."""
    query: Select[Any] = (
        select(job_teardowns.c.action, job_teardowns.c.job_id)
        .where(
            job_teardowns.c.job_id == job_teardowns.c.root_id,
            job_teardowns.c.created_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, seconds),
        )
        .order_by(job_teardowns.c.job_id)
    )
    return [(str(r.action), int(r.job_id)) for r in session.execute(query).all()]


# --- chunks -----------------------------------------------------------------------------


def insert_chunks(session: Session, job_id: int, plan: ChunkPlan) -> None:
    """The job's chunks from its plan in one INSERT ... SELECT generate_series.

    Mirrors domain.chunk_frames: chunk k covers frame indexes f0 ..
    min(f0 + per, frames) - 1, f0 = ((k-1) / slices) * per.
    """
    session.execute(
        text(
            "INSERT INTO chunks (job_id, chunk_number, start_frame, end_frame, by_frame,"
            " slice_index)"
            " SELECT :job, g,"
            " :start + (((g - 1) / :slices) * :per)::float8 * :by,"
            " :start + (LEAST(((g - 1) / :slices) * :per + :per, :frames) - 1)::float8 * :by,"
            " :by, (g - 1) % :slices"
            " FROM generate_series(1, :count) AS g"
        ),
        {
            "job": job_id,
            "start": plan.start_frame,
            "by": plan.by_frame,
            "per": plan.frames_per_chunk,
            "slices": plan.slices,
            "frames": plan.frames,
            "count": plan.count,
        },
    )
    align_runs_count(session, [job_id])


def align_runs_count(session: Session, job_ids: Sequence[int] | None) -> None:
    """Keep chunks.runs_count at least the highest run number in the history.

    History outlives chunks (reinit, delete, restore, import), and the next
    run of a chunk is numbered runs_count + 1, which must not collide with a
    run kept from before.
    """
    scope = "" if job_ids is None else "AND r.job_id = ANY(:ids)"
    session.execute(
        text(
            "UPDATE chunks c SET runs_count = m.last FROM ("
            " SELECT r.job_id, r.chunk_number, max(r.run_number) AS last FROM chunk_runs r"
            f" WHERE true {scope} GROUP BY r.job_id, r.chunk_number) m"
            " WHERE c.job_id = m.job_id AND c.chunk_number = m.chunk_number"
            " AND c.runs_count < m.last"
        ),
        {} if job_ids is None else {"ids": list(job_ids)},
    )


def delete_chunks(session: Session, job_id: int) -> None:
    session.execute(delete(chunks).where(chunks.c.job_id == job_id))


def chunk_status_counts(session: Session, job_id: int) -> dict[str, int]:
    rows = session.execute(
        select(chunks.c.status, func.count())
        .where(chunks.c.job_id == job_id)
        .group_by(chunks.c.status)
    ).all()
    return {str(status): int(count) for status, count in rows}


def unfinished_jobs(connection: Connection) -> Sequence[Any]:
    """(status, jobs, chunks_total, chunks_queued, chunks_running,
    chunks_completed, chunks_failed) of the jobs still to render, by status:
    the metrics' queue depth (muster_services/core/metrics.py). The scheduler's
    partial index finds them without reading the finished jobs, however many
    the history keeps."""
    return connection.execute(
        select(
            jobs.c.status,
            func.count(),
            func.sum(jobs.c.chunks_total),
            func.sum(jobs.c.chunks_queued),
            func.sum(jobs.c.chunks_running),
            func.sum(jobs.c.chunks_completed),
            func.sum(jobs.c.chunks_failed),
        )
        .where(text(UNFINISHED_JOBS))
        .group_by(jobs.c.status)
    ).all()


def any_chunk_started(session: Session, job_id: int) -> bool:
    started = session.execute(
        select(chunks.c.chunk_number)
        .where(
            chunks.c.job_id == job_id,
            or_(
                chunks.c.runs_count > 0,
                chunks.c.status.not_in(("queued", "waiting_dependencies", "hold")),
            ),
        )
        .limit(1)
    ).first()
    return started is not None


# What a chunk list shows, with times as epoch seconds computed by the
# database (building Timestamps from datetimes dominated listing big jobs).
_CHUNK_LIST_COLUMNS = (
    chunks.c.chunk_number,
    chunks.c.job_id,
    chunks.c.start_frame,
    chunks.c.end_frame,
    chunks.c.by_frame,
    chunks.c.status,
    chunks.c.node_id,
    chunks.c.node_name,
    func.date_part("epoch", chunks.c.started_at).label("started_epoch"),
    func.date_part("epoch", chunks.c.ended_at).label("ended_epoch"),
    chunks.c.requeue_count,
    chunks.c.exit_code,
    chunks.c.progress,
    chunks.c.slice_index,
)


def list_chunks(
    session: Session, job_id: int, statuses: Sequence[str], after: int | None, limit: int
) -> list[ListedChunk]:
    """A page of a job's chunks (the list columns only, see _CHUNK_LIST_COLUMNS)."""
    query = (
        select(*_CHUNK_LIST_COLUMNS)
        .where(chunks.c.job_id == job_id)
        .order_by(chunks.c.chunk_number)
        .limit(limit)
    )
    if after is not None:
        query = query.where(chunks.c.chunk_number > after)
    if statuses:
        query = query.where(chunks.c.status.in_(statuses))
    # Plain tuples straight from the driver: a page is up to 10,000 rows and
    # SQLAlchemy's row objects cost as much as the query itself.
    compiled = query.compile(
        dialect=session.get_bind().dialect, compile_kwargs={"render_postcompile": True}
    )
    cursor = session.connection().connection.cursor()
    cursor.execute(str(compiled), compiled.params)
    return list(cursor.fetchall())


_CHUNK_RECORD_COLUMNS = tuple(chunks.c[f.name] for f in dataclasses.fields(ChunkRecord))


def get_chunk(session: Session, job_id: int, chunk_number: int) -> ChunkRecord | None:
    row = session.execute(
        select(*_CHUNK_RECORD_COLUMNS).where(
            chunks.c.job_id == job_id, chunks.c.chunk_number == chunk_number
        )
    ).first()
    return None if row is None else ChunkRecord(*row)


def update_chunk(
    session: Session, job_id: int, chunk_number: int, values: Mapping[str, Any]
) -> None:
    session.execute(
        update(chunks)
        .where(chunks.c.job_id == job_id, chunks.c.chunk_number == chunk_number)
        .values(**values, version=chunks.c.version + 1)
    )


def assignment_of(session: Session, job_id: int, chunk_number: int) -> Row[Any] | None:
    return session.execute(
        select(chunk_assignments).where(
            chunk_assignments.c.job_id == job_id,
            chunk_assignments.c.chunk_number == chunk_number,
        )
    ).first()


def request_kill(session: Session, job_id: int, chunk_number: int, status_after: str) -> None:
    """Mark a live assignment for killing; the status applies once the kill is
    confirmed or the node is lost (nodes service)."""
    session.execute(
        update(chunk_assignments)
        .where(
            chunk_assignments.c.job_id == job_id,
            chunk_assignments.c.chunk_number == chunk_number,
        )
        .values(
            state="killing",
            kill_follow_up="continue",
            status_after_kill=status_after,
            updated_at=func.now(),
        )
    )


# The live assignments of some jobs ended now (`a`), their runs ended as
# killed (`r`), and their chunks' tokens forgotten (`c`): a late report
# carrying one (progress, FinishChunkRun) matches nothing and waits for no
# lock a deletion holds on the chunk.
_RELEASE = text(
    "WITH a AS (DELETE FROM chunk_assignments WHERE job_id = ANY(CAST(:ids AS bigint[]))"
    " RETURNING job_id, chunk_number, node_id),"
    " r AS (UPDATE chunk_runs r SET outcome = 'killed', ended_at = now(), message = :message"
    " FROM a WHERE r.job_id = a.job_id AND r.chunk_number = a.chunk_number"
    " AND r.outcome = 'running' RETURNING 1),"
    " c AS (UPDATE chunks c SET fencing_token = NULL FROM a"
    " WHERE c.job_id = a.job_id AND c.chunk_number = a.chunk_number RETURNING 1)"
    " SELECT DISTINCT node_id FROM a ORDER BY node_id"
)


def release_assignments(session: Session, job_ids: Sequence[int], message: str) -> list[int]:
    """End the live assignments of these jobs now: their runs end as killed in
    the history, the rows go, and the ids of the nodes that ran them are
    returned so the nodes service can kill the processes."""
    if not job_ids:
        return []
    rows = session.execute(_RELEASE, {"ids": sorted(job_ids), "message": message}).scalars()
    return [int(n) for n in rows]


def live_assignments_count(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(chunk_assignments)).scalar_one())


# --- what the nodes service reads (muster_services/jobs/for_nodes.py) ---------------------------


def _id_array(values: Iterable[int]) -> BindParameter[Any]:
    """One array parameter, not one per id: the statement's text is the same
    for every batch, so PostgreSQL reuses its plan."""
    ids: BindParameter[Any] = bindparam(None, sorted(values), type_=ARRAY(BigInteger))
    return ids


# Each assignment's node and chunk are looked up by key (LATERAL ... LIMIT 1,
# which the planner cannot turn into a join): as plain joins, the planner
# hashed a full scan of nodes and of chunks for each batch while those
# tables were small enough to look cheap, some thousands of rows, on every
# farm of that size (10,000 nodes: 6.7 ms a batch of 214 joined, 1.8 ms by key,
# each EXPLAINed alone; docs/render-loop.md).
_ASSIGNMENTS_TO_BUILD = text(
    "SELECT a.fencing_token, a.job_id, a.chunk_number, a.node_id, a.state, a.kill_follow_up,"
    " a.status_after_kill, a.run_as_user, a.assigned_at, a.updated_at,"
    " n.platform, n.template_preferences, n.realtime_log,"
    " c.runs_count, c.start_frame, c.end_frame, c.by_frame, c.slice_index"
    " FROM chunk_assignments a"
    " JOIN LATERAL (SELECT platform, template_preferences, realtime_log FROM nodes"
    " WHERE nodes.id = a.node_id LIMIT 1) n ON true"
    " JOIN LATERAL (SELECT runs_count, start_frame, end_frame, by_frame, slice_index"
    " FROM chunks WHERE chunks.job_id = a.job_id AND chunks.chunk_number = a.chunk_number"
    " LIMIT 1) c ON true"
    " WHERE a.node_id = ANY(CAST(:ids AS bigint[]))"
)


def assignments_to_build(session: Session, node_ids: Iterable[int]) -> Sequence[Row[Any]]:
    """Each live assignment of these nodes with its node's platform, its
    node's template preferences (an administrator's values, nodes domain), its
    node's realtime log switch and its chunk's frames (one read per batch of
    deliveries)."""
    return session.execute(_ASSIGNMENTS_TO_BUILD, {"ids": sorted(set(node_ids))}).all()


def jobs_of_assignments(session: Session, job_ids: Iterable[int]) -> dict[int, Row[Any]]:
    """The job rows (jobs table only) by id."""
    return {
        row.id: row
        for row in session.execute(select(jobs).where(jobs.c.id == any_(_id_array(job_ids)))).all()
    }


def template_versions_by_id(session: Session) -> dict[int, str]:
    """The version of each template's code (templates of a file; '' skipped)."""
    query: Select[Any] = select(templates.c.id, templates.c.version).where(
        templates.c.version != ""
    )
    return {int(r.id): str(r.version) for r in session.execute(query).all()}


def template_log_patterns(session: Session) -> dict[int, tuple[list[str], list[str]]]:
    """(error, warning) patterns of the templates that declare some."""
    query: Select[Any] = select(
        templates.c.id, templates.c.log_error_patterns, templates.c.log_warning_patterns
    ).where(
        or_(
            func.cardinality(templates.c.log_error_patterns) > 0,
            func.cardinality(templates.c.log_warning_patterns) > 0,
        )
    )
    return {
        int(r.id): (list(r.log_error_patterns), list(r.log_warning_patterns))
        for r in session.execute(query).all()
    }


def node_live_token(session: Session, node_id: int) -> int:
    """The fencing token of the node's live assignment (0: none)."""
    return nodes_live_tokens(session, [node_id]).get(node_id, 0)


def nodes_live_tokens(session: Session, node_ids: Sequence[int]) -> dict[int, int]:
    """The fencing tokens of these nodes' live assignments, by node (nodes
    without one are left out); one statement whatever the count."""
    if not node_ids:
        return {}
    rows = session.execute(
        text(
            "SELECT node_id, fencing_token FROM chunk_assignments"
            " WHERE node_id = ANY(CAST(:ids AS bigint[]))"
        ),
        {"ids": sorted(set(node_ids))},
    ).all()
    return {int(node): int(token) for node, token in rows}


def node_assignment(session: Session, node_id: int) -> Row[Any] | None:
    """The node's live assignment row, if it holds one."""
    return session.execute(
        select(chunk_assignments).where(chunk_assignments.c.node_id == node_id)
    ).first()


def nodes_assignments(session: Session, node_ids: Sequence[int]) -> dict[int, Row[Any]]:
    """The live assignment rows of these nodes, by node id."""
    if not node_ids:
        return {}
    rows = session.execute(
        select(chunk_assignments).where(chunk_assignments.c.node_id.in_(list(node_ids)))
    ).all()
    return {row.node_id: row for row in rows}


def job_assignments(session: Session, job_id: int) -> list[Row[Any]]:
    """The live assignment rows of a job, in node order."""
    return list(
        session.execute(
            select(chunk_assignments)
            .where(chunk_assignments.c.job_id == job_id)
            .order_by(chunk_assignments.c.node_id)
        ).all()
    )


def job_owner(session: Session, job_id: int) -> str | None:
    """The job's owner; None when the job does not exist."""
    row = session.execute(select(jobs.c.owner).where(jobs.c.id == job_id)).first()
    return None if row is None else str(row.owner)


def job_parent_owner_name(session: Session, job_id: int) -> Row[Any, Any, Any] | None:
    """(parent_id, owner, name) of one job or folder."""
    return session.execute(
        select(jobs.c.parent_id, jobs.c.owner, jobs.c.name).where(jobs.c.id == job_id)
    ).first()


# --- history ----------------------------------------------------------------------------


def list_runs(
    session: Session, job_id: int, chunk_number: int | None, after: int | None, limit: int
) -> list[RunRecord]:
    query = select(*(chunk_runs.c[name] for name in RunRecord._fields)).where(
        chunk_runs.c.job_id == job_id
    )
    if chunk_number is not None:
        query = query.where(chunk_runs.c.chunk_number == chunk_number)
    if after is not None:
        query = query.where(chunk_runs.c.id > after)
    rows = session.execute(query.order_by(chunk_runs.c.id).limit(limit)).all()
    return [RunRecord._make(row) for row in rows]


def runs_exist(session: Session, job_id: int, chunk_number: int | None = None) -> bool:
    query = select(chunk_runs.c.id).where(chunk_runs.c.job_id == job_id)
    if chunk_number is not None:
        query = query.where(chunk_runs.c.chunk_number == chunk_number)
    return session.execute(query.limit(1)).first() is not None


# --- templates -----------------------------------------------------------------------


_TEMPLATE_RECORD_COLUMNS = tuple(templates.c[f.name] for f in dataclasses.fields(TemplateRecord))


def get_template(session: Session, template_id: int) -> TemplateRecord | None:
    row = session.execute(
        select(*_TEMPLATE_RECORD_COLUMNS).where(templates.c.id == template_id)
    ).first()
    return None if row is None else TemplateRecord(*row)


def list_templates(
    session: Session, platform: str | None, after: int | None, limit: int
) -> list[TemplateRecord]:
    query = select(*_TEMPLATE_RECORD_COLUMNS).order_by(templates.c.id).limit(limit)
    if after is not None:
        query = query.where(templates.c.id > after)
    if platform:
        query = query.where(
            or_(
                templates.c.commands.contains([{"platform": platform}]),  # JSONB @>
                templates.c.definition["platforms"].contains(
                    [{"platform": platform, "enabled": True}]
                ),
            )
        )
    return [TemplateRecord(*row) for row in session.execute(query).all()]


def lock_template_catalogue(session: Session) -> None:
    """Replicas write the catalogue one at a time (until the transaction ends)."""
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": TEMPLATE_CATALOGUE_LOCK})


# Advisory lock key of the template catalogue's writers ('tmpl').
TEMPLATE_CATALOGUE_LOCK = 0x746D706C


def template_states(session: Session) -> dict[int, Row[Any]]:
    """What the catalogue compares with the files: per template id, its
    version, file, load error, enabled flag and definition."""
    query: Select[Any] = select(
        templates.c.id,
        templates.c.version,
        templates.c.file_path,
        templates.c.load_error,
        templates.c.enabled,
        templates.c.builtin,
        templates.c.definition,
    )
    return {int(r.id): r for r in session.execute(query).all()}


def save_loaded_template(session: Session, values: Mapping[str, Any], source: str) -> None:
    """Insert or replace a template loaded from a file, and keep its code
    under its version (a version's code never changes)."""
    statement = pg_insert(templates).values(**values)
    changed = {k: statement.excluded[k] for k in values if k != "id"}
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[templates.c.id], set_={**changed, "updated_at": func.now()}
        )
    )
    session.execute(
        pg_insert(template_versions)
        .values(
            template_id=values["id"],
            version=values["version"],
            source=source,
            file_path=values["file_path"],
        )
        .on_conflict_do_nothing()
    )


def mark_templates(
    session: Session, template_ids: Iterable[int], load_error: str, enabled: bool = True
) -> None:
    """Record why a template's file no longer gives it (it keeps running with
    its last good version; disabled when its file no longer defines it)."""
    ids = list(template_ids)
    if ids:
        session.execute(
            update(templates)
            .where(templates.c.id.in_(ids))
            .values(load_error=load_error, enabled=enabled, updated_at=func.now())
        )


def replace_template_files(session: Session, files: Mapping[str, tuple[str, list[int]]]) -> None:
    """The files read last: path -> (error, template ids)."""
    session.execute(delete(template_files))
    if files:
        session.execute(
            insert(template_files),
            [
                {"file_path": path, "error": error, "template_ids": ids}
                for path, (error, ids) in sorted(files.items())
            ],
        )


def template_file_problems(session: Session) -> list[Row[Any]]:
    query: Select[Any] = (
        select(template_files.c.file_path, template_files.c.error)
        .where(template_files.c.error != "")
        .order_by(template_files.c.file_path)
    )
    return list(session.execute(query).all())


def template_source(session: Session, template_id: int, version: str) -> Row[Any] | None:
    """One version of a template's code (what agents run)."""
    query: Select[Any] = select(template_versions.c.source, template_versions.c.file_path).where(
        template_versions.c.template_id == template_id,
        template_versions.c.version == version,
    )
    return session.execute(query).first()


def template_ids(session: Session) -> set[int]:
    return {int(i) for i in session.execute(select(templates.c.id)).scalars()}


# --- backup store ------------------------------------------------------------------


def table_rows(session: Session, query: Select[Any]) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in session.execute(query).all()]


def job_snapshot(session: Session, job_id: int, folder_ids: Sequence[int]) -> dict[str, Any]:
    """What a backup keeps, as JSON: the job, its dependencies, chunks and
    runs, and the folders `folder_ids` (its parent chain, nearest first)."""
    parts = {
        "job": (jobs, select(jobs).where(jobs.c.id == job_id)),
        "dependencies": (
            job_dependencies,
            select(job_dependencies).where(job_dependencies.c.job_id == job_id),
        ),
        "chunks": (
            chunks,
            select(chunks).where(chunks.c.job_id == job_id).order_by(chunks.c.chunk_number),
        ),
        "runs": (
            chunk_runs,
            select(chunk_runs).where(chunk_runs.c.job_id == job_id).order_by(chunk_runs.c.id),
        ),
    }
    snapshot = {
        name: [row_to_json(table, r) for r in table_rows(session, query)]
        for name, (table, query) in parts.items()
    }
    snapshot["parents"] = [row_to_json(jobs, r) for r in folder_rows(session, folder_ids)]
    return snapshot


def job_from_snapshot(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A jobs row (column -> value) from its JSON in a backup snapshot."""
    return row_from_json(jobs, raw)


def chunk_from_snapshot(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A chunks row from its JSON in a backup snapshot."""
    return row_from_json(chunks, raw)


def folder_rows(session: Session, ids: Sequence[int]) -> list[dict[str, Any]]:
    if not ids:
        return []
    rows = table_rows(session, select(jobs).where(jobs.c.id.in_(ids)))
    order = {folder_id: i for i, folder_id in enumerate(ids)}
    return sorted(rows, key=lambda r: order[r["id"]])


def backup_ids_of_job(session: Session, job_id: int) -> list[int]:
    return [
        int(i)
        for i in session.execute(
            select(backup_jobs.c.id).where(backup_jobs.c.job_id == job_id)
        ).scalars()
    ]


def insert_backup(session: Session, values: Mapping[str, Any]) -> int:
    backup_id = session.execute(
        insert(backup_jobs).values(**values).returning(backup_jobs.c.id)
    ).scalar_one()
    return int(backup_id)


def delete_backups(session: Session, ids: Sequence[int]) -> None:
    if ids:
        session.execute(delete(backup_jobs).where(backup_jobs.c.id.in_(ids)))


_BACKUP_RECORD_COLUMNS = tuple(backup_jobs.c[f.name] for f in dataclasses.fields(BackupRecord))


def get_backup(session: Session, backup_id: int) -> BackupRecord | None:
    row = session.execute(
        select(*_BACKUP_RECORD_COLUMNS).where(backup_jobs.c.id == backup_id)
    ).first()
    return None if row is None else BackupRecord(*row)


def backup_boundaries(session: Session) -> tuple[datetime | None, datetime | None, int]:
    first, last, count = session.execute(
        select(
            func.min(backup_jobs.c.backed_up_at),
            func.max(backup_jobs.c.backed_up_at),
            func.count(),
        )
    ).one()
    return first, last, int(count)


def query_backups(
    session: Session,
    *,
    after: tuple[datetime, int] | None,
    limit: int,
    name_contains: str = "",
    owner: str = "",
    project: str = "",
    job_id: int = 0,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[BackupRecord]:
    """Newest backup first; keyset on (backed_up_at, id) descending."""
    conditions: list[ColumnElement[bool]] = []
    if name_contains:
        escaped = name_contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append(backup_jobs.c.name.ilike(f"%{escaped}%", escape="\\"))
    if owner:
        conditions.append(backup_jobs.c.owner == owner)
    if project:
        conditions.append(backup_jobs.c.project == project)
    if job_id:
        conditions.append(backup_jobs.c.job_id == job_id)
    if since is not None:
        conditions.append(backup_jobs.c.backed_up_at >= since)
    if until is not None:
        conditions.append(backup_jobs.c.backed_up_at <= until)
    if after is not None:
        conditions.append(
            tuple_(backup_jobs.c.backed_up_at, backup_jobs.c.id)
            < tuple_(bindparam("after_time", after[0]), bindparam("after_id", after[1]))
        )
    query = (
        select(*_BACKUP_RECORD_COLUMNS)
        .where(and_(True, *conditions))
        .order_by(backup_jobs.c.backed_up_at.desc(), backup_jobs.c.id.desc())
        .limit(limit)
    )
    return [BackupRecord(*row) for row in session.execute(query).all()]


# --- whole queue (snapshots) -----------------------------------------------------------


def read_one_snapshot(session: Session) -> None:
    """Make the session's transaction read one consistent snapshot (REPEATABLE
    READ); call it before its first statement."""
    session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def round_trip(session: Session) -> None:
    """One statement to the database and back (the flushes wait for nothing else)."""
    session.execute(text("SELECT 1"))


def queue_rows(session: Session) -> dict[str, list[dict[str, Any]]]:
    """Every row of the queue tables in the export's fixed order."""
    return {
        "jobs": table_rows(session, select(jobs).order_by(jobs.c.id)),
        "job_dependencies": table_rows(
            session,
            select(job_dependencies).order_by(
                job_dependencies.c.job_id, job_dependencies.c.depends_on_job_id
            ),
        ),
        "chunks": table_rows(
            session, select(chunks).order_by(chunks.c.job_id, chunks.c.chunk_number)
        ),
    }


def clear_queue(session: Session) -> None:
    session.execute(delete(jobs))  # cascades to chunks, dependencies, assignments


def insert_rows(session: Session, table_name: str, rows: list[dict[str, Any]]) -> None:
    table = {"jobs": jobs, "job_dependencies": job_dependencies, "chunks": chunks}[table_name]
    if rows:
        session.execute(insert(table), rows)


def set_parents(session: Session, parents: Mapping[int, int]) -> None:
    if parents:
        session.execute(
            update(jobs).where(jobs.c.id == bindparam("child")).values(parent_id=bindparam("p")),
            [{"child": child, "p": parent} for child, parent in parents.items()],
        )


def reset_job_id_sequence(session: Session) -> None:
    """Move the jobs identity past every id inserted explicitly."""
    session.execute(
        text(
            "SELECT setval(pg_get_serial_sequence('jobs', 'id'),"
            " COALESCE((SELECT max(id) FROM jobs), 1),"
            " (SELECT max(id) FROM jobs) IS NOT NULL)"
        )
    )


def jobs_count(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(jobs)).scalar_one())


# --- retention ----------------------------------------------------------------------


def expired_completed_jobs(session: Session, hours: float, limit: int) -> list[int]:
    """Jobs completed (with or without warnings) more than `hours` ago, oldest first."""
    return [
        int(i)
        for i in session.execute(
            select(jobs.c.id)
            .where(
                jobs.c.kind == "job",
                jobs.c.status.in_(("completed", "completed_with_warnings")),
                jobs.c.ended_at < func.now() - func.make_interval(0, 0, 0, 0, hours),
            )
            .order_by(jobs.c.ended_at, jobs.c.id)
            .limit(limit)
        ).scalars()
    ]


# --- render loop (scheduler ticks, run results) -----------------------------------------
#
# Hot paths (the benchmark measures them): each function is the statement its
# caller always ran, with the same text (psycopg prepares a statement after
# five runs by its text), in the same order. Lock order: assignments, then
# chunks, then jobs in id order (docs/render-loop.md, "Lock order").


def start_tick(session: Session) -> bool:
    """Whether the engine runs; and for the rest of the tick's transaction,
    ready chunks read by an index scan in chunk order (one statement).

    Left to itself the planner often estimates a fresh job's queued chunks at
    a handful (its statistics predate the job), reads *every* queued chunk of
    the job, sorts them and keeps the first few: a tick then costs in
    proportion to the queue (tens of milliseconds at 100,000 queued chunks,
    seconds at 1,000,000). Without sorts and bitmap scans the only plan left
    is ix_chunks_ready in chunk order, stopped after LIMIT rows; the tick's
    other statements have no cheaper plan than the one they had (a sort with
    no alternative still runs), and the settings end with the transaction.

    Nor sequential scans: on a young farm (tables vacuumed, never analysed;
    a cached plan made while no chunk ran) the planner took the idle nodes
    for a handful and chunk_assignments for empty, and free_nodes compared
    every node with every live assignment (a scan of chunk_assignments per
    node, or one materialised and rescanned): 1,000 nodes x 500 assignments
    took 20 to 150 ms a tick where the index lookups take about 1 ms
    (docs/render-loop.md, "No sequential scan in a tick"). The setting
    makes a scan the last resort: a read with no index to use still scans.
    """
    status = session.execute(
        text(
            "SELECT (SELECT status FROM engine_state WHERE id = 1),"
            " set_config('enable_sort', 'off', true), set_config('enable_bitmapscan', 'off', true),"
            " set_config('enable_seqscan', 'off', true)"
        )
    ).scalar()
    return status in (None, "running")


def free_nodes(session: Session, limit: int) -> list[Row[Any]]:
    """Idle, connected, unpaused nodes without a live assignment, in id order:
    (id, name, host_name, pools, platform). Each node's live assignment is
    looked up by the node key's index (start_tick: no sequential scan in a
    tick), never found by scanning chunk_assignments once per node."""
    return list(
        session.execute(
            text(
                "SELECT n.id, n.name, n.host_name, n.pools, n.platform FROM nodes n"
                " WHERE n.status = 'idle' AND NOT n.paused AND n.session_id IS NOT NULL"
                " AND NOT EXISTS (SELECT 1 FROM chunk_assignments a WHERE a.node_id = n.id)"
                " ORDER BY n.id LIMIT :limit"
            ),
            {"limit": limit},
        ).all()
    )


def template_platforms(session: Session) -> dict[int, frozenset[str]]:
    """The platforms each template runs on: the enabled platform sections of a
    template file, the commands' platforms of an older dispatcher's template."""
    rows = session.execute(
        text(
            "SELECT t.id, COALESCE(ARRAY(SELECT p->>'platform'"
            " FROM jsonb_array_elements(t.definition->'platforms') p"
            " WHERE (p->>'enabled')::boolean), '{}') AS sections,"
            " ARRAY(SELECT c->>'platform' FROM jsonb_array_elements(t.commands) c) AS commands,"
            " t.definition ? 'platforms' AS described"
            " FROM templates t"
        )
    ).all()
    # A template file runs where its sections are enabled (maybe nowhere); a
    # template that names no platform at all runs anywhere: no entry.
    return {
        int(r.id): frozenset(r.sections if r.described else r.commands)
        for r in rows
        if r.described or r.commands
    }


def candidate_jobs(session: Session) -> list[Row[Any]]:
    """Jobs with queued chunks in dispatch order (priority, age), each with its
    live assignments' count (`working`) and its dependencies (`dependencies`:
    id -> status as JSON). A job being deleted or reinitialised gets nothing
    more: the teardown's second transaction (teardowns.py) is left alone."""
    # Each job's dependencies come with it: one round trip. A deleted
    # dependency has no row left here: it holds nothing back.
    return list(
        session.execute(
            text(
                "SELECT j.id, j.template_id, j.included_pools, j.excluded_pools, j.max_nodes,"
                " j.depend_mode, j.depend_chunks, j.started_at IS NOT NULL AS started,"
                " (SELECT count(*) FROM chunk_assignments a WHERE a.job_id = j.id) AS working,"
                " (SELECT jsonb_object_agg(d.depends_on_job_id, o.status)"
                " FROM job_dependencies d JOIN jobs o ON o.id = d.depends_on_job_id"
                " WHERE d.job_id = j.id) AS dependencies"
                " FROM jobs j WHERE j.kind = 'job' AND NOT j.paused AND j.chunks_queued > 0"
                " AND j.status <> 'failed'"
                " AND NOT EXISTS (SELECT 1 FROM job_teardowns x WHERE x.job_id = j.id)"
                " ORDER BY j.priority DESC, j.submitted_at, j.id LIMIT 2000"
            )
        ).all()
    )


def exclusions(session: Session) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """(node, job) pairs excluded now and (node, template) pairs, in one read."""
    excluded_jobs: set[tuple[int, int]] = set()
    excluded_templates: set[tuple[int, int]] = set()
    for kind, node, other in session.execute(
        text(
            "SELECT 'job', node_id, job_id FROM node_job_exclusions"
            " WHERE excluded_until > now()"
            " UNION ALL SELECT 'template', node_id, template_id FROM node_template_exclusions"
        )
    ).all():
        (excluded_jobs if kind == "job" else excluded_templates).add((int(node), int(other)))
    return excluded_jobs, excluded_templates


# Chunk dependencies compare frames in millionths of a frame, as bigint: the
# largest frame (domain.MAX_FRAME, 1e9) makes 1e15, exact in a double (< 2**53).
FRAME_SCALE = 1_000_000
# The job's row is held FOR KEY SHARE for the rest of the tick, unless a
# transaction holds it FOR UPDATE (a deletion, an edit): then the job is left
# for the next tick. Reading its chunks first and waiting for its row only at
# the counters' update deadlocked with a deletion, which holds the row and
# waits for those chunks.
_JOB_HELD = (
    "WITH held AS MATERIALIZED (SELECT id FROM jobs WHERE id = :job FOR KEY SHARE SKIP LOCKED) "
)
# The first queued chunks of a job in frame order, locked (after start_tick).
READY_CHUNKS = (
    f"{_JOB_HELD}SELECT * FROM chunks WHERE job_id = :job AND status = 'queued'"
    " AND EXISTS (SELECT FROM held)"
    " ORDER BY chunk_number LIMIT :limit FOR UPDATE OF chunks SKIP LOCKED"
)
_READY_CHUNKS_CLEAR_OF = (
    f"{_JOB_HELD}, busy AS (SELECT range_agg(int8range("
    "CAST(round(d.start_frame * :scale) AS bigint),"
    " CAST(round(d.end_frame * :scale) AS bigint), '[]')) AS frames"
    " FROM chunks d WHERE d.job_id IN :waiting AND d.status NOT IN :done)"
    " SELECT c.* FROM chunks c CROSS JOIN busy h"
    " WHERE c.job_id = :job AND c.status = 'queued' AND EXISTS (SELECT FROM held)"
    " AND NOT coalesce(h.frames && int8range("
    "CAST(round(c.start_frame * :scale) AS bigint),"
    " CAST(round(c.end_frame * :scale) AS bigint), '[]'), false)"
    " ORDER BY c.chunk_number LIMIT :limit FOR UPDATE OF c SKIP LOCKED"
)


def ready_chunks(
    session: Session,
    job_id: int,
    waiting_for: Sequence[int],
    done_statuses: Iterable[str],
    limit: int,
) -> Sequence[Any]:
    """The job's next `limit` queued chunks in frame order, locked for this
    tick. While jobs `waiting_for` hold back a job with chunk dependencies,
    only its chunks whose frames no chunk of those jobs covers unless it is
    in `done_statuses`.

    One statement, O((K + Q) log K) for K unfinished dependency chunks and
    Q queued chunks: the unfinished chunks' frame ranges are merged into
    one multirange, and each queued chunk is one binary search in it (a
    NOT EXISTS per chunk compares every pair: 0.4 s per pass at 10,000 x
    10,000, docs/benchmarks.md). Frames compare as whole millionths of a
    frame (FRAME_SCALE): bigint ranges are cheap, and rounding is monotone,
    so ranges that share a frame always overlap, and by-frame rounding
    (1 + 3 * 0.1 against 1.3) never separates the same frame."""
    if not waiting_for:
        return session.execute(text(READY_CHUNKS), {"job": job_id, "limit": limit}).all()
    return session.execute(
        text(_READY_CHUNKS_CLEAR_OF).bindparams(
            bindparam("waiting", expanding=True), bindparam("done", expanding=True)
        ),
        {
            "job": job_id,
            "waiting": list(waiting_for),
            "done": sorted(done_statuses),
            "scale": float(FRAME_SCALE),
            "limit": limit,
        },
    ).all()


# Several jobs' counters moved by domain.counter_moves, the end of a statement
# whose `locked` CTE holds the jobs' rows, locked in id order (as
# muster_services/core/database.lock_in_id_order does). Progress follows the finished chunks, except
# for a move that starts chunks (the scheduler's), which leaves it and marks
# the job running instead.
_COUNTERS_UPDATE = (
    "UPDATE jobs j SET chunks_queued = j.chunks_queued + v.queued,"
    " chunks_running = j.chunks_running + v.running,"
    " chunks_completed = j.chunks_completed + v.completed,"
    " chunks_failed = j.chunks_failed + v.failed,"
    " requeue_count = j.requeue_count + v.requeued,"
    " progress = CASE WHEN v.started THEN j.progress"
    " ELSE CAST(100.0 AS float8) * (j.chunks_completed + j.chunks_failed + v.completed + v.failed)"
    " / greatest(j.chunks_total, 1) END,"
    " status = CASE WHEN v.started THEN 'running' ELSE j.status END,"
    " started_at = CASE WHEN v.started THEN coalesce(j.started_at, now()) ELSE j.started_at END,"
    " updated_at = now(), version = j.version + 1"
    " FROM locked l, jsonb_to_recordset(CAST(:moves AS jsonb)) AS v(job bigint, queued int,"
    " running int, completed int, failed int, requeued int, started boolean)"
    " WHERE j.id = l.id AND j.id = v.job"
    " RETURNING j.id, j.chunks_queued, j.chunks_running"
)


def _moves_json(moves: Mapping[int, CounterMove]) -> str:
    return json.dumps(
        [
            {
                "job": job_id,
                "queued": m.queued,
                "running": m.running,
                "completed": m.completed,
                "failed": m.failed,
                "requeued": m.requeued,
                "started": m.started,
            }
            for job_id, m in moves.items()
        ]
    )


# A tick's assignments in one statement: the live assignments (`a`: each
# takes its fencing token from the sequence as it is inserted, in plan order;
# the unique constraints refuse a second live assignment per chunk or node),
# their chunks only if still queued (`c`), the chunks' `running` history
# entries (`r`), then the jobs' counters, the jobs locked in id order once
# the others are done (`done`), as a result's statement takes them. Started
# at this statement's time, not the tick's start: the tick's reads may have
# seen results committed after it began (a chunk dependency's run must not
# look as if it ended after this one started).
_ASSIGN = text(
    "WITH v AS MATERIALIZED (SELECT * FROM ROWS FROM (jsonb_to_recordset(CAST(:rows AS jsonb))"
    " AS (job bigint, chunk int, node bigint, name text, run_as text))"
    " WITH ORDINALITY AS v(job, chunk, node, name, run_as, n)),"
    " a AS (INSERT INTO chunk_assignments (fencing_token, job_id, chunk_number, node_id,"
    " run_as_user) SELECT nextval('fencing_tokens'), v.job, v.chunk, v.node, v.run_as FROM v"
    " ORDER BY v.n RETURNING fencing_token, job_id, chunk_number),"
    " c AS (UPDATE chunks c SET status = 'assigned', node_id = v.node, node_name = v.name,"
    " fencing_token = a.fencing_token, started_at = statement_timestamp(), ended_at = NULL,"
    " exit_code = NULL, progress = 0, runs_count = c.runs_count + 1, version = c.version + 1"
    " FROM a JOIN v ON v.job = a.job_id AND v.chunk = a.chunk_number"
    " WHERE c.job_id = a.job_id AND c.chunk_number = a.chunk_number AND c.status = 'queued'"
    " RETURNING c.job_id, c.chunk_number, c.runs_count, c.node_id, c.node_name,"
    " c.fencing_token, c.start_frame, c.end_frame),"
    " r AS (INSERT INTO chunk_runs (job_id, chunk_number, run_number, node_id, node_name,"
    " fencing_token, start_frame, end_frame, started_at, outcome)"
    " SELECT job_id, chunk_number, runs_count, node_id, node_name, fencing_token,"
    " start_frame, end_frame, statement_timestamp(), 'running' FROM c RETURNING 1),"
    " done AS MATERIALIZED (SELECT count(*) AS started FROM r),"
    " locked AS MATERIALIZED (SELECT id FROM jobs WHERE id = ANY(CAST(:ids AS bigint[]))"
    " AND (SELECT started FROM done) >= 0 ORDER BY id FOR NO KEY UPDATE),"
    f" moved AS ({_COUNTERS_UPDATE}),"
    # The assignments' events (docs/render-loop.md, "One event per assignment"),
    # then `job.started` for each job whose first chunks these are.
    + outbox_ctes(
        "SELECT CAST(:chunk_topic AS text) AS topic, CAST(a.job_id AS text) AS key,"
        " jsonb_build_object('job_id', a.job_id, 'chunk_id', a.chunk_number, 'node_id', v.node,"
        " 'actor', 'scheduler', 'old_status', 'queued', 'status', 'assigned',"
        " 'fencing_token', a.fencing_token) AS payload, v.n"
        " FROM a JOIN v ON v.job = a.job_id AND v.chunk = a.chunk_number"
        " UNION ALL SELECT CAST(:job_topic AS text), CAST(s.job AS text),"
        " jsonb_build_object('job_id', s.job, 'actor', 'scheduler'), (SELECT count(*) FROM v) + s.k"
        " FROM unnest(CAST(:started_jobs AS bigint[])) WITH ORDINALITY AS s(job, k)"
    )
    + " SELECT (SELECT started FROM done) AS started, (SELECT count(*) FROM woken) AS woken"
)


def assign(
    session: Session,
    planned: Sequence[Mapping[str, Any]],
    moves: Mapping[int, CounterMove],
    started_jobs: Sequence[int],
    hints: tuple[str, Sequence[int]],
) -> int:
    """The tick's live assignments ({job, chunk, node, name, run_as} each, in
    plan order), their chunks started (only those still queued) with their
    `running` history entries, each job's CounterMove (job id -> move) in its
    counters, and the events: a `chunk.started` per assignment, then a
    `job.started` per job of `started_jobs`, hinted on `hints` (channel, node
    ids) at commit. One statement: how many chunks started."""
    topics = [CHUNK_STARTED, *([JOB_STARTED] if started_jobs else [])]
    return int(
        session.execute(
            _ASSIGN,
            {
                "rows": json.dumps(planned),
                "ids": sorted(moves),
                "moves": _moves_json(moves),
                "chunk_topic": CHUNK_STARTED,
                "job_topic": JOB_STARTED,
                "started_jobs": list(started_jobs),
                **wake_parameters(topics, hints),
            },
        ).scalar_one()
    )


# A batch of results, locked in the order every writer of a run's end takes
# them (assignments by token, then their chunks by key; docs/render-loop.md,
# "Lock order"), in one statement: `a` locks the live assignments holding
# the tokens; `k`, an aggregate over all of `a`, must read (and so lock)
# every one of them before `c` has a key to join on, and `c` locks their
# chunks. Each row: the assignment's columns, its chunk's status and
# requeue count, its job's max_chunk_requeues, and the version of the
# dispatcher configuration row in this statement's snapshot, with (on the
# first row only, and only when the version is not :known) the
# configuration itself: the caller keeps the requeue rules it read until the
# row changes (muster_services/jobs/runs.py). The tokens are one array parameter:
# the statement's text never changes, so psycopg converts it once and the
# server prepares it.
_LOCK_ENDING = text(
    "WITH a AS MATERIALIZED (SELECT * FROM chunk_assignments"
    " WHERE fencing_token = ANY(CAST(:tokens AS bigint[])) ORDER BY fencing_token FOR UPDATE),"
    " k AS MATERIALIZED (SELECT array_agg(job_id ORDER BY job_id, chunk_number) AS jobs,"
    " array_agg(chunk_number ORDER BY job_id, chunk_number) AS chunks FROM a),"
    " c AS MATERIALIZED (SELECT c.job_id, c.chunk_number, c.status, c.requeue_count,"
    " j.max_chunk_requeues FROM unnest((SELECT jobs FROM k), (SELECT chunks FROM k))"
    " AS v(job, chunk) JOIN chunks c ON c.job_id = v.job AND c.chunk_number = v.chunk"
    " JOIN jobs j ON j.id = c.job_id ORDER BY c.job_id, c.chunk_number FOR UPDATE OF c),"
    " g AS MATERIALIZED (SELECT xmin::text AS version, CASE WHEN xmin::text = :known"
    " THEN NULL ELSE runtime_config END AS config FROM dispatcher_config WHERE id = 1)"
    " SELECT a.fencing_token, a.job_id, a.chunk_number, a.node_id, a.kill_follow_up,"
    " a.status_after_kill, c.status AS chunk_status, c.requeue_count, c.max_chunk_requeues,"
    " g.version AS config_version, CASE WHEN a.fencing_token = (SELECT min(fencing_token)"
    " FROM a) THEN g.config END AS config"
    " FROM a JOIN c ON c.job_id = a.job_id AND c.chunk_number = a.chunk_number"
    " LEFT JOIN g ON true ORDER BY a.fencing_token"
)


@dataclass(frozen=True)
class EndingBatch:
    """What store.lock_ending found and locked."""

    # (fencing_token, job_id, chunk_number, node_id, kill_follow_up,
    # status_after_kill, chunk_status, requeue_count, max_chunk_requeues) of
    # the live assignments, in token order.
    rows: list[Row[Any]]
    # The dispatcher configuration row's version ('' when no row was found).
    config_version: str
    # The configuration (runtime_config) when its version is not the one known.
    config: dict[str, Any] | None


def lock_ending(session: Session, tokens: Iterable[int], known_version: str) -> EndingBatch:
    """The live assignments holding these fencing tokens and their chunks,
    locked (assignments in token order, then chunks in key order), with the
    dispatcher configuration's version, and the configuration unless its
    version is `known_version`."""
    rows = list(
        session.execute(_LOCK_ENDING, {"tokens": sorted(set(tokens)), "known": known_version}).all()
    )
    if not rows:
        return EndingBatch([], "", None)
    return EndingBatch(rows, rows[0].config_version or "", rows[0].config)


# A run's end as its events tell it (docs/render-loop.md, "Events of the render loop").
_RUN_END_PAYLOAD = (
    "jsonb_build_object('job_id', v.job, 'chunk_id', v.chunk, 'node_id', v.node,"
    " 'outcome', v.outcome, 'old_status', v.old_status, 'status', v.status,"
    " 'actor', CAST(:actor AS text))"
)

# A batch of runs' ends, in one statement: their events (`published` and the
# wake-up `woken`, bus.outbox_ctes; no row lock), their history entries (`r`),
# their chunks (`c`: back in the queue means no end time), their assignments
# gone (`d`), then the jobs' counters (_COUNTERS_UPDATE). Every sub-statement runs
# to completion whatever the main one reads; the jobs are locked (in id
# order) only after the three others are done (`done`: the lock's scan needs
# their counts first), so the lock order stays assignments, chunks, history,
# jobs, as when they were five statements. The history rows and chunks are
# also named by their keys' arrays (`= ANY`): joined to the jsonb rows alone,
# the planner read all of chunk_runs and chunks until they were large enough
# to make their indexes cheaper, so a batch cost in proportion to the history
# (tests/jobs/test_runs.py, "however long the history").
_RUN_ENDS = (
    "ROWS FROM (jsonb_to_recordset(CAST(:rows AS jsonb)) AS (job bigint, chunk int, token bigint,"
    " ended_at timestamptz, exit_code int, outcome text, message text, status text, node bigint,"
    " old_status text)) WITH ORDINALITY AS v(job, chunk, token, ended_at, exit_code, outcome,"
    " message, status, node, old_status, n)"
)
_END_RUNS = text(
    f"WITH v AS MATERIALIZED (SELECT * FROM {_RUN_ENDS}),"
    # The ends' events, in the batch's order: `chunk.finished` for each, then
    # `chunk.failed` or `chunk.requeued` for those the end failed or requeued.
    + outbox_ctes(
        "SELECT CAST(:finished_topic AS text) AS topic, CAST(v.job AS text) AS key,"
        f" {_RUN_END_PAYLOAD} AS payload, 2 * v.n AS n FROM v"
        " UNION ALL SELECT CASE v.status WHEN 'failed' THEN CAST(:failed_topic AS text)"
        " ELSE CAST(:requeued_topic AS text) END, CAST(v.job AS text),"
        f" {_RUN_END_PAYLOAD}, 2 * v.n + 1 FROM v WHERE v.status IN ('failed', 'queued')"
    )
    + ","
    " r AS (UPDATE chunk_runs r SET ended_at = coalesce(v.ended_at, now()),"
    " exit_code = v.exit_code, outcome = v.outcome, message = v.message"
    " FROM v WHERE r.fencing_token = ANY(CAST(:tokens AS bigint[]))"
    " AND r.fencing_token = v.token RETURNING 1),"
    " c AS (UPDATE chunks c SET status = v.status,"
    " ended_at = CASE WHEN v.status = 'queued' THEN NULL ELSE coalesce(v.ended_at, now()) END,"
    " exit_code = v.exit_code,"
    " progress = CASE WHEN v.status LIKE 'completed%' THEN 100.0 ELSE c.progress END,"
    " requeue_count = c.requeue_count + CASE WHEN v.status = 'queued' THEN 1 ELSE 0 END,"
    " fencing_token = NULL, version = c.version + 1"
    " FROM v WHERE c.job_id = ANY(CAST(:jobs AS bigint[]))"
    " AND c.chunk_number = ANY(CAST(:chunks AS int[]))"
    " AND c.job_id = v.job AND c.chunk_number = v.chunk RETURNING 1),"
    " d AS (DELETE FROM chunk_assignments WHERE fencing_token = ANY(CAST(:tokens AS bigint[]))"
    " RETURNING 1),"
    " done AS MATERIALIZED (SELECT (SELECT count(*) FROM r) + (SELECT count(*) FROM c)"
    " + (SELECT count(*) FROM d) AS n),"
    " locked AS MATERIALIZED (SELECT id FROM jobs WHERE id = ANY(CAST(:ids AS bigint[]))"
    " AND (SELECT n FROM done) >= 0 AND (SELECT count(*) FROM woken) >= 0"
    " ORDER BY id FOR NO KEY UPDATE)"
    f" {_COUNTERS_UPDATE}"
)


def end_runs(
    session: Session,
    ends: Sequence[Mapping[str, Any]],
    moves: Mapping[int, CounterMove],
    actor: str,
    hints: tuple[str, Sequence[int]],
) -> list[Row[Any]]:
    """Runs' ends ({job, chunk, token, ended_at, exit_code, outcome, message,
    status, node, old_status} each) in their history entries and chunks, their
    assignments gone, each job's CounterMove (job id -> move) in its counters,
    and their events (`chunk.finished`, and `chunk.failed` or `chunk.requeued`
    where the end did that, by `actor`), hinted on `hints` (channel, ids) at
    commit, in one statement; the jobs' (id, chunks_queued, chunks_running)
    after it, in id order."""
    if not ends:
        return []
    statuses = {end["status"] for end in ends}
    topics = [
        CHUNK_FINISHED,
        *([CHUNK_FAILED] if "failed" in statuses else []),
        *([CHUNK_REQUEUED] if "queued" in statuses else []),
    ]
    rows = session.execute(
        _END_RUNS,
        {
            "rows": json.dumps(ends),
            "tokens": [end["token"] for end in ends],
            "jobs": sorted({end["job"] for end in ends}),
            "chunks": sorted({end["chunk"] for end in ends}),
            "ids": sorted(moves),
            "moves": _moves_json(moves),
            "actor": actor,
            "finished_topic": CHUNK_FINISHED,
            "failed_topic": CHUNK_FAILED,
            "requeued_topic": CHUNK_REQUEUED,
            **wake_parameters(topics, hints),
        },
    ).all()
    return sorted(rows, key=lambda r: int(r.id))


def lock_node_assignments(session: Session, node_id: int, fencing_token: int = 0) -> list[Row[Any]]:
    """(fencing_token, job_id, chunk_number) of a node's live assignments, locked
    (only the one holding `fencing_token` when it is given)."""
    query: Select[Any] = (
        select(
            chunk_assignments.c.fencing_token,
            chunk_assignments.c.job_id,
            chunk_assignments.c.chunk_number,
        )
        .where(chunk_assignments.c.node_id == node_id)
        .with_for_update()
    )
    if fencing_token:
        query = query.where(chunk_assignments.c.fencing_token == fencing_token)
    return list(session.execute(query).all())


def run_of_token(
    session: Session, job_id: int, chunk_number: int, fencing_token: int
) -> int | None:
    """The id of the history entry of the run holding this token, if any."""
    run = session.execute(
        select(chunk_runs.c.id).where(
            chunk_runs.c.fencing_token == fencing_token,
            chunk_runs.c.job_id == job_id,
            chunk_runs.c.chunk_number == chunk_number,
        )
    ).first()
    return None if run is None else int(run.id)


# --- licence and delay groups of templates (muster_services/jobs/licences.py) ------------------
#
# The scheduler reads them once per tick, and only when some template names a
# group: GROUPS_PRESENT, then GROUP_STATES (two statements: the lock must be
# held before the counts' snapshot is taken, READ COMMITTED takes one per
# statement). Nothing per chunk.

# Held (transaction-level) by a tick that plans chunks of grouped templates:
# a second tick (a new leader while the old one's last tick is still
# committing, or a scheduler started by mistake) waits for the first to
# commit and then counts its assignments. Taken before any row lock of the
# tick, so it cannot deadlock with them.
TEMPLATE_GROUPS_LOCK_KEY = 0x6D75737465720009
_GROUPS_PRESENT = text(
    "SELECT pg_advisory_xact_lock(:key) FROM (SELECT FROM templates"
    " WHERE licenses_group <> '' OR delay_group <> '' LIMIT 1) AS grouped"
)
# Every group (named by a template or only by an override row): its
# templates and their values, the override, the last start, and for a
# licence group its live assignments (assigned or running: each holds a
# licence) and the seconds since its last start by the database's clock.
_GROUP_STATES = text(
    "WITH members AS ("
    " SELECT 'licenses' AS kind, licenses_group AS name, id, max_licenses AS value"
    " FROM templates WHERE licenses_group <> ''"
    " UNION ALL SELECT 'delay', delay_group, id, delay_seconds"
    " FROM templates WHERE delay_group <> ''),"
    " grouped AS (SELECT kind, name, array_agg(id ORDER BY id) AS template_ids,"
    " array_agg(value ORDER BY id) AS template_values FROM members GROUP BY kind, name)"
    " SELECT coalesce(g.kind, o.kind) AS kind, coalesce(g.name, o.name) AS name,"
    " coalesce(g.template_ids, '{}') AS template_ids,"
    " coalesce(g.template_values, '{}') AS template_values,"
    " o.limit_override, o.last_started_at,"
    " extract(epoch FROM statement_timestamp() - o.last_started_at) AS seconds_since_start,"
    " CASE WHEN g.kind = 'licenses' THEN (SELECT count(*) FROM chunk_assignments a"
    " JOIN jobs j ON j.id = a.job_id WHERE j.template_id = ANY(g.template_ids))"
    " ELSE 0 END AS running"
    " FROM grouped g FULL JOIN template_groups o ON o.kind = g.kind AND o.name = g.name"
    " ORDER BY 1 DESC, 2"
)


def lock_template_groups(session: Session) -> bool:
    """Whether some template names a licence or delay group; if so the
    groups' lock is held for the rest of the transaction."""
    return session.execute(_GROUPS_PRESENT, {"key": TEMPLATE_GROUPS_LOCK_KEY}).first() is not None


def template_group_states(session: Session) -> list[Row[Any]]:
    """Every group: (kind, name, template_ids, template_values,
    limit_override, last_started_at, seconds_since_start, running), licence
    groups first, each kind by name."""
    return list(session.execute(_GROUP_STATES).all())


def record_delay_starts(session: Session, names: Iterable[str]) -> None:
    """The delay groups that started a chunk in this transaction: started now
    (the clock's time, after the chunks' start times)."""
    session.execute(
        text(
            "INSERT INTO template_groups (kind, name, last_started_at)"
            " SELECT 'delay', unnest(CAST(:names AS text[])), clock_timestamp()"
            " ON CONFLICT (kind, name) DO UPDATE SET last_started_at = excluded.last_started_at"
        ),
        {"names": sorted(names)},
    )


def set_template_group_limit(session: Session, kind: str, name: str, value: int | None) -> None:
    """An administrator's override of a group's limit (None clears it)."""
    session.execute(
        text(
            "INSERT INTO template_groups (kind, name, limit_override) VALUES (:kind, :name, :value)"
            " ON CONFLICT (kind, name) DO UPDATE SET limit_override = excluded.limit_override,"
            " updated_at = now()"
        ),
        {"kind": kind, "name": name, "value": value},
    )


# --- progress of running chunks (ChunkRunsService.ReportChunkProgress) ----------------------

_SET_PROGRESS = text(
    "UPDATE chunks AS c SET progress = v.progress, status = 'running'"
    " FROM unnest(CAST(:jobs AS bigint[]), CAST(:chunks AS integer[]),"
    " CAST(:tokens AS bigint[]), CAST(:progress AS double precision[]))"
    " AS v(job_id, chunk_number, fencing_token, progress)"
    " WHERE c.job_id = v.job_id AND c.chunk_number = v.chunk_number"
    " AND c.fencing_token = v.fencing_token AND c.status IN ('assigned', 'running')"
    " AND (c.progress IS DISTINCT FROM v.progress OR c.status = 'assigned')"
    " RETURNING c.job_id"
)


def set_chunks_progress(session: Session, reports: Sequence[tuple[int, int, int, float]]) -> int:
    """(job id, chunk number, fencing token, progress) of running chunks: the
    chunks still holding that token take the progress, and an assigned chunk
    is running from its node's first report; how many changed."""
    if not reports:
        return 0
    jobs_, chunks_, tokens, progress = (list(column) for column in zip(*reports, strict=True))
    rows = session.execute(
        _SET_PROGRESS, {"jobs": jobs_, "chunks": chunks_, "tokens": tokens, "progress": progress}
    ).fetchall()
    return len(rows)
