"""Use cases of the jobs service: the queue, chunks, history, templates, backups
and queue snapshots.

Each public method runs in ONE transaction, validates everything before it
writes (a refused call changes nothing), raises DomainError subclasses whose
message names the field, and publishes an event in the same transaction for
every state change (topics in docs/jobs.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Row, select, text
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from services.core.bus import publish
from services.core.caller import current_caller
from services.core.database import Database
from services.core.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.core.paging import page_request
from services.jobs import domain, queue_sql
from services.jobs import store as repo
from services.jobs.domain import ROOT, JobSpec
from services.jobs.enums import (
    RESTORE_ALL_FLAGS,
    RESTORE_DUPLICATE_ENTRY,
    RESTORE_PARENTS,
    RESTORE_REMOVE_BACKUP,
)
from services.jobs.tables import chunk_runs, chunks, job_dependencies, jobs
from services.jobs.templates import BUILTIN_TEMPLATES

T = TypeVar("T")

# Job fields a job.deleted event carries (the row is gone when it is read).
DELETED_JOB_FIELDS = (
    "name",
    "owner",
    "kind",
    "parent_id",
    "template_id",
    "project",
    "department",
    "priority",
)
# Jobs one retention pass deletes or archives at most.
RETENTION_BATCH = 500
CHUNK_PAGE = (1000, 10_000)  # (default, maximum) page sizes of chunk and history lists


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str


@dataclass(frozen=True)
class JobFilter:
    """ListJobs filters; parent_id None lists the whole queue, ROOT the root."""

    parent_id: int | None = None
    owner: str = ""
    statuses: tuple[str, ...] = ()
    kind: str | None = None
    project: str = ""


@dataclass(frozen=True)
class BackupFilter:
    name_contains: str = ""
    owner: str = ""
    project: str = ""
    job_id: int = 0
    since: datetime | None = None
    until: datetime | None = None


def _page(
    items: list[Any], size: int, key: Callable[[Any], Any], token: Callable[[Any], str]
) -> Page[Any]:
    """A page of at most `size` items (the query fetched size + 1 to know)."""
    if len(items) > size:
        items = items[:size]
        return Page(items, token(key(items[-1])))
    return Page(items, "")


def _sized(page_size: int, page_token: str, filters: Any, sizes: tuple[int, int]) -> Any:
    request = page_request(page_size, page_token, filters)
    return dataclasses.replace(request, size=min(page_size or sizes[0], sizes[1]))


def _event(session: Session, topic: str, key: int, **payload: Any) -> None:
    publish(session, topic, {**payload, **current_caller().stamp()}, key=str(key))


def spec_of_row(row: Row[Any]) -> JobSpec:
    """The writable properties of a stored job."""
    return JobSpec(
        name=row.name,
        owner=row.owner,
        kind=row.kind,
        parent_id=ROOT if row.parent_id is None else int(row.parent_id),
        priority=row.priority,
        template_id=row.template_id,
        start_frame=row.start_frame,
        end_frame=row.end_frame,
        by_frame=row.by_frame,
        packet_size=row.packet_size,
        packet_type=row.packet_type,
        included_pools=tuple(row.included_pools),
        excluded_pools=tuple(row.excluded_pools),
        depend_ids=tuple(sorted(int(d) for d in row.depend_ids)),
        depend_mode=row.depend_mode,
        depend_chunks=row.depend_chunks,
        max_nodes=row.max_nodes,
        project=row.project,
        department=row.department,
        job_group=row.job_group,
        notes=row.notes,
        chunk_timeout_seconds=row.chunk_timeout_seconds,
        max_chunk_requeues=row.max_chunk_requeues,
        logs_error_check=row.logs_error_check,
        attributes=tuple(domain.attributes_from_json(row.attributes)),
        environment=dict(row.environment),
        paused=row.paused,
        locked=row.locked,
    )


def _columns_of(spec: JobSpec, packet_type: str) -> dict[str, Any]:
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


def _submitted_by_caller(spec: JobSpec) -> JobSpec:
    """A user submits as themself (the owner defaults to them); only
    administrators and the dispatcher's services submit for someone else."""
    caller = current_caller()
    if caller.is_administrator:
        return spec
    if not spec.owner:
        return dataclasses.replace(spec, owner=caller.name)
    if spec.owner != caller.name:
        raise PermissionDenied(
            f"job.owner: {caller.describe()}; only an administrator submits as {spec.owner!r}"
        )
    return spec


def ensure_may_change(rows: Iterable[Row[Any]], giving_to: str = "") -> None:
    """Users change only their own jobs and folders; administrators everything."""
    caller = current_caller()
    for row in rows:
        if not caller.may_act_for(row.owner):
            raise PermissionDenied(
                f"job {row.id} belongs to {row.owner!r}; {caller.describe()}:"
                " only its owner or an administrator may change it"
            )
    if giving_to and not caller.is_administrator:
        raise PermissionDenied(f"job.owner: only an administrator gives a job to {giving_to!r}")


class JobsService:
    """The jobs service's use cases on one database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- templates --------------------------------------------------------------------

    def seed_templates(self) -> None:
        """Insert or refresh the built-in templates (fixed ids, docs/jobs.md).
        Idempotent; every replica runs it at start."""
        with self.db.transaction() as session:
            repo.upsert_templates(session, BUILTIN_TEMPLATES)

    def list_templates(
        self, platform: str | None, page_size: int, page_token: str
    ) -> Page[Row[Any]]:
        request = page_request(page_size, page_token, {"platform": platform})
        with self.db.transaction() as session:
            rows = repo.list_templates(session, platform, request.after, request.size + 1)
        return _page(rows, request.size, lambda r: r.id, request.next_token)

    def get_template(self, template_id: int) -> Row[Any]:
        with self.db.transaction() as session:
            row = repo.get_template(session, template_id)
        if row is None:
            raise NotFound(f"template_id: template {template_id} does not exist")
        return row

    # --- reading the queue -------------------------------------------------------------

    def list_jobs(
        self, filters: JobFilter, page_size: int, page_token: str, versions_only: bool = False
    ) -> Page[Row[Any]]:
        """A page of jobs; with versions_only, only (id, version) of each, for a
        reader that keeps the jobs it already knows (see jobs_by_ids)."""
        request = page_request(page_size, page_token, dataclasses.asdict(filters))
        with self.db.transaction() as session:
            rows = repo.list_jobs(
                session,
                after=request.after,
                limit=request.size + 1,
                parent_id=filters.parent_id if filters.parent_id != ROOT else None,
                root_only=filters.parent_id == ROOT,
                owner=filters.owner,
                statuses=filters.statuses,
                kind=filters.kind,
                project=filters.project,
                versions_only=versions_only,
            )
        return _page(rows, request.size, lambda r: r.id, request.next_token)

    def jobs_by_ids(self, ids: list[int]) -> list[Row[Any]]:
        with self.db.transaction() as session:
            return repo.jobs_by_ids(session, ids)

    def get_job(self, job_id: int) -> Row[Any]:
        with self.db.transaction() as session:
            return self._job(session, job_id)

    def job_version(self, job_id: int) -> Any:
        """(id, version) of a job: enough for a reader that keeps known jobs."""
        with self.db.read() as connection:
            row = connection.execute(
                select(jobs.c.id, jobs.c.version).where(jobs.c.id == job_id)
            ).first()
        if row is None:
            raise NotFound(f"job_id: job {job_id} does not exist")
        return row

    def _job(
        self, session: Session, job_id: int, lock: bool = False, field: str = "job_id"
    ) -> Row[Any]:
        row = repo.get_job(session, job_id, lock=lock)
        if row is None:
            raise NotFound(f"{field}: job {job_id} does not exist")
        return row

    # --- submission ----------------------------------------------------------------------

    def submit_job(self, spec: JobSpec, request_id: str = "") -> Row[Any]:
        """jobSubmit: the job (or folder) and its chunks, in one transaction."""
        if spec.parent_id == 0:
            spec = dataclasses.replace(spec, parent_id=ROOT)  # unset in proto3 = the root
        spec = _submitted_by_caller(spec)
        domain.validate_job(spec)
        if len(request_id) > domain.MAX_LABEL_LENGTH:
            raise InvalidArgument(f"request_id: at most {domain.MAX_LABEL_LENGTH} characters")
        with self.db.transaction() as session:
            if request_id:
                existing = repo.job_id_for_request(session, request_id)
                if existing is not None:
                    return self._job(session, existing)
            self._check_parent(session, spec.parent_id, "job.parent_id")
            packet_type, plan, status = "frames", None, "queued"
            if spec.kind == "job":
                packet_type = spec.packet_type or self._template_default(session, spec)
                plan = domain.plan_chunks(spec, packet_type)
                status = self._initial_status(session, spec)
            count = plan.count if plan else 0
            values = _columns_of(spec, packet_type)
            values.update(
                status=status,
                submitter=current_caller().label,
                request_id=request_id or None,
                chunks_total=count,
                chunks_queued=count,
            )
            job_id = repo.insert_job(session, values)
            repo.set_dependencies(session, job_id, spec.depend_ids)
            if plan is not None:
                repo.insert_chunks(session, job_id, plan)
            topic = "job.submitted" if spec.kind == "job" else "job.folder_created"
            _event(
                session,
                topic,
                job_id,
                job_id=job_id,
                name=spec.name,
                owner=spec.owner,
                parent_id=spec.parent_id,
                chunks=count,
            )
            return self._job(session, job_id)

    def create_folder(self, parent_id: int, owner: str, name: str, request_id: str = "") -> int:
        """jobAddFolder."""
        spec = JobSpec(
            name=name,
            owner=owner or current_caller().label,
            kind="folder",
            parent_id=parent_id,
        )
        if parent_id == 0:
            raise NotFound("parent_id: folder 0 does not exist (-1 is the queue root)")
        return int(self.submit_job(spec, request_id).id)

    def _check_parent(self, session: Session, parent_id: int, field: str) -> None:
        if parent_id == ROOT:
            return
        found = repo.existing_jobs(session, [parent_id]).get(parent_id)
        if found is None:
            raise NotFound(f"{field}: folder {parent_id} does not exist")
        if found.kind != "folder":
            raise FailedPrecondition(f"{field}: {parent_id} is a job, not a folder")

    def _template_default(self, session: Session, spec: JobSpec) -> str:
        assert spec.template_id is not None  # validate_job requires it for jobs
        template = repo.get_template(session, spec.template_id)
        if template is None:
            raise InvalidArgument(f"job.template_id: unknown template {spec.template_id}")
        if not template.enabled:
            raise InvalidArgument(f"job.template_id: template {spec.template_id} is disabled")
        return str(template.default_packet_type)

    def _initial_status(self, session: Session, spec: JobSpec) -> str:
        depends = repo.existing_jobs(session, spec.depend_ids)
        for depend_id in spec.depend_ids:
            found = depends.get(depend_id)
            if found is None:
                raise NotFound(f"job.depend_ids: job {depend_id} does not exist")
            if found.kind != "job":
                raise InvalidArgument(f"job.depend_ids: {depend_id} is a folder, not a job")
        met = domain.dependencies_met(spec.depend_mode, (d.status for d in depends.values()))
        return "queued" if met else "waiting_dependencies"

    # --- changing jobs -------------------------------------------------------------------

    def update_job(
        self, job_id: int, new: JobSpec, fields: Iterable[str] | None, etag: str = ""
    ) -> Row[Any]:
        """jobEdit: the named fields (every writable one when None)."""
        changing = self._edit_fields(fields)
        with self.db.transaction() as session:
            row = self._job(session, job_id, lock=True, field="job.id")
            ensure_may_change([row])
            if etag and etag != str(row.version):
                raise Conflict(f"job.etag: job {job_id} changed since etag {etag}")
            current = spec_of_row(row)
            if row.locked and not ("locked" in changing and not new.locked):
                raise FailedPrecondition(f"job {job_id} is locked; unlock it to edit it")
            updates = {f: getattr(new, f) for f in changing}
            if updates.get("parent_id") == 0:
                del updates["parent_id"]  # unset in proto3: keep the job where it is
            if "owner" in updates and not updates["owner"]:
                del updates["owner"]
            if updates.get("owner", row.owner) != row.owner:
                ensure_may_change([row], giving_to=updates["owner"])
            merged = dataclasses.replace(current, **updates)
            if merged.kind == "folder":
                merged = dataclasses.replace(merged, template_id=None)
            domain.validate_job(merged)
            changed = sorted(
                f for f in domain.EDITABLE_FIELDS if getattr(merged, f) != getattr(current, f)
            )
            packet_type = row.packet_type
            plan = None
            if merged.kind == "job":
                if "template_id" in changed or "packet_type" in changed:
                    packet_type = merged.packet_type or self._template_default(session, merged)
                if domain.CHUNK_SHAPE_FIELDS & set(changed):
                    plan = domain.plan_chunks(merged, packet_type)
                if "depend_ids" in changed or "depend_mode" in changed:
                    self._initial_status(session, merged)
                    cycle = domain.find_dependency_cycle(
                        job_id, merged.depend_ids, repo.dependency_edges(session, merged.depend_ids)
                    )
                    if cycle:
                        path = " -> ".join(str(i) for i in cycle)
                        raise FailedPrecondition(f"job.depend_ids: dependency cycle {path}")
            if "parent_id" in changed:
                self._check_move(session, job_id, merged.parent_id, "job.parent_id")
            if not changed:
                return row
            values = {k: v for k, v in _columns_of(merged, packet_type).items() if k != "kind"}
            repo.update_job(session, job_id, values)
            if "depend_ids" in changed:
                repo.set_dependencies(session, job_id, merged.depend_ids)
            rebuilt = plan is not None and not repo.any_chunk_started(session, job_id)
            if rebuilt:
                assert plan is not None
                repo.delete_chunks(session, job_id)
                repo.insert_chunks(session, job_id, plan)
            if rebuilt or "depend_ids" in changed or "depend_mode" in changed:
                self.refresh(session, job_id)
            _event(
                session,
                "job.edited",
                job_id,
                job_id=job_id,
                fields=changed,
                chunks_rebuilt=rebuilt,
            )
            return self._job(session, job_id)

    @staticmethod
    def _edit_fields(fields: Iterable[str] | None) -> frozenset[str]:
        if fields is None:
            return domain.EDITABLE_FIELDS
        names = frozenset(fields)
        for name in sorted(names):
            if name in domain.OUTPUT_ONLY_FIELDS:
                raise InvalidArgument(f"update_mask: {name} is output only")
            if name == "kind":
                raise InvalidArgument("update_mask: kind cannot change; submit a new job")
            if name not in domain.EDITABLE_FIELDS:
                raise InvalidArgument(f"update_mask: unknown field {name!r}")
        return names

    def _check_move(self, session: Session, job_id: int, new_parent_id: int, field: str) -> None:
        self._check_parent(session, new_parent_id, field)
        if new_parent_id != ROOT:
            domain.check_move(job_id, new_parent_id, repo.ancestors(session, new_parent_id))

    def move_job(self, job_id: int, new_parent_id: int) -> Row[Any]:
        """jobReparent."""
        with self.db.transaction() as session:
            row = self._job(session, job_id, lock=True)
            ensure_may_change([row])
            if new_parent_id == 0 or new_parent_id < ROOT:
                raise NotFound(f"new_parent_id: folder {new_parent_id} does not exist")
            self._check_move(session, job_id, new_parent_id, "new_parent_id")
            old_parent = ROOT if row.parent_id is None else int(row.parent_id)
            if old_parent != new_parent_id:
                parent = None if new_parent_id == ROOT else new_parent_id
                repo.update_job(session, job_id, {"parent_id": parent})
                _event(
                    session,
                    "job.moved",
                    job_id,
                    job_id=job_id,
                    old_parent_id=old_parent,
                    new_parent_id=new_parent_id,
                )
            return self._job(session, job_id)

    def _subtree_unlocked(self, session: Session, job_id: int) -> list[Row[Any]]:
        tree = repo.subtree(session, job_id)
        ensure_may_change(tree)
        locked = sorted(int(r.id) for r in tree if r.locked)
        if locked:
            raise FailedPrecondition(f"job_id: job {locked[0]} is locked; unlock it first")
        return tree

    def reinit_job(self, job_id: int) -> None:
        """jobReinit: every chunk rebuilt as queued, counters restart; live
        chunks are released (their runs end as killed)."""
        with self.db.transaction() as session:
            self._job(session, job_id, lock=True)
            tree = self._subtree_unlocked(session, job_id)
            job_ids = sorted(int(r.id) for r in tree if r.kind == "job")
            nodes = repo.release_assignments(session, job_ids, "killed by reinit")
            for each in job_ids:
                row = self._job(session, each, lock=True)
                plan = domain.plan_chunks(spec_of_row(row), row.packet_type)
                repo.delete_chunks(session, each)
                repo.insert_chunks(session, each, plan)
                repo.update_job(
                    session,
                    each,
                    {"requeue_count": 0, "started_at": None, "ended_at": None, "status": "queued"},
                )
                self.refresh(session, each, reinit=True)
            _event(session, "job.reinit", job_id, job_id=job_id, job_ids=job_ids, node_ids=nodes)

    def delete_job(self, job_id: int) -> None:
        """jobDelete: the job, or the folder with everything inside it. History
        and backups stay."""
        with self.db.transaction() as session:
            self._delete(session, self._job(session, job_id, lock=True), archived=False)

    def _delete(self, session: Session, row: Row[Any], archived: bool) -> None:
        """Delete the (locked) job or folder `row` and everything inside it."""
        job_id = int(row.id)
        tree = self._subtree_unlocked(session, job_id)
        ids = sorted(int(r.id) for r in tree)
        # What the job was, for those who hear of it once it is gone (onDeleteJob).
        snapshot = {f: getattr(row, f) for f in DELETED_JOB_FIELDS}
        nodes = repo.release_assignments(session, ids, "killed: job deleted")
        repo.delete_jobs(session, job_id)
        _event(
            session,
            "job.deleted",
            job_id,
            job_id=job_id,
            deleted_ids=ids,
            node_ids=nodes,
            archived=archived,
            job=snapshot,
        )

    def recompute_status(self, job_id: int) -> Row[Any]:
        """jobUpdateStatus."""
        with self.db.transaction() as session:
            row = self._job(session, job_id, lock=True)
            if row.kind == "job":
                self.refresh(session, job_id)
            return self._job(session, job_id)

    def publish_job(self, job_id: int) -> None:
        """jobUpdate: every change is committed already; tell the consoles."""
        with self.db.transaction() as session:
            row = self._job(session, job_id)
            _event(session, "job.updated", job_id, job_id=job_id, version=int(row.version))

    def refresh(self, session: Session, job_id: int, reinit: bool = False) -> str:
        """Recount a (locked) job's chunks and apply the status rollup; publish
        what changed (job.properties_changed, job.completed)."""
        row = self._job(session, job_id)
        counts = repo.chunk_status_counts(session, job_id)
        depends = repo.existing_jobs(session, row.depend_ids)
        met = domain.dependencies_met(row.depend_mode, (d.status for d in depends.values()))
        result = domain.rollup(
            counts, dependencies_met=met, aborted=row.status == "failed" and not reinit
        )
        c = result.counters
        values: dict[str, Any] = {
            "status": result.status,
            "progress": result.progress,
            "chunks_total": c.total,
            "chunks_queued": c.queued,
            "chunks_running": c.running,
            "chunks_completed": c.completed,
            "chunks_failed": c.failed,
        }
        finished = result.status in domain.FINISHED_JOB_STATUSES
        if finished and row.ended_at is None:
            values["ended_at"] = text("now()")
        if not finished and row.ended_at is not None:
            values["ended_at"] = None
        changed = sorted(k for k, v in values.items() if k != "ended_at" and getattr(row, k) != v)
        if changed or "ended_at" in values:
            repo.update_job(session, job_id, values)
        if changed and not reinit:
            _event(
                session,
                "job.properties_changed",
                job_id,
                job_id=job_id,
                fields=changed,
                status=result.status,
            )
        if finished and row.status != result.status:
            _event(session, "job.completed", job_id, job_id=job_id, status=result.status)
        return result.status

    # --- chunks and history ----------------------------------------------------------------

    def _job_with_chunks(self, session: Session, job_id: int, lock: bool = False) -> Row[Any]:
        row = self._job(session, job_id, lock=lock)
        if row.kind != "job":
            raise InvalidArgument(f"job_id: {job_id} is a folder; folders have no chunks")
        return row

    def list_chunks(
        self, job_id: int, statuses: Sequence[str], page_size: int, page_token: str
    ) -> Page[Row[Any]]:
        request = _sized(
            page_size, page_token, {"job": job_id, "statuses": list(statuses)}, CHUNK_PAGE
        )
        with self.db.transaction() as session:
            self._job_with_chunks(session, job_id)
            rows = repo.list_chunks(session, job_id, statuses, request.after, request.size + 1)
        return _page(rows, request.size, lambda r: r[0], request.next_token)

    def get_chunk(self, job_id: int, chunk_id: int) -> Row[Any]:
        with self.db.transaction() as session:
            self._job_with_chunks(session, job_id)
            return self._chunk(session, job_id, chunk_id)

    def _chunk(self, session: Session, job_id: int, chunk_id: int) -> Row[Any]:
        row = repo.get_chunk(session, job_id, domain.check_chunk_id(chunk_id))
        if row is None:
            raise NotFound(f"chunk_id: chunk {chunk_id} of job {job_id} does not exist")
        return row

    def set_chunk_status(self, job_id: int, chunk_id: int, status: str) -> Row[Any]:
        """chunkSetStatus, with the state rules of domain.chunk_change."""
        with self.db.transaction() as session:
            job = self._job_with_chunks(session, job_id, lock=True)
            ensure_may_change([job])
            chunk = self._chunk(session, job_id, chunk_id)
            change = domain.chunk_change(chunk.status, status)
            if job.locked:
                raise FailedPrecondition(f"job_id: job {job_id} is locked; unlock it first")
            if change.kill:
                live = repo.assignment_of(session, job_id, chunk_id)
                if live is not None:
                    repo.request_kill(session, job_id, chunk_id, change.target)
                    _event(
                        session,
                        "chunk.kill_requested",
                        job_id,
                        job_id=job_id,
                        chunk_id=chunk_id,
                        node_id=int(live.node_id),
                        status_after_kill=change.target,
                    )
                    return self._chunk(session, job_id, chunk_id)
                # A live status without an assignment row (never left by the
                # scheduler; possible after a restore): nothing to kill.
                change = dataclasses.replace(change, status=change.target, kill=False)
            assert change.status is not None
            if change.status != chunk.status:
                values: dict[str, Any] = {"status": change.status}
                if change.status == "queued":
                    values["progress"] = 0.0
                if change.requeue:
                    values["requeue_count"] = chunk.requeue_count + 1
                    repo.update_job(session, job_id, {"requeue_count": job.requeue_count + 1})
                repo.update_chunk(session, job_id, chunk_id, values)
                _event(
                    session,
                    "chunk.status_changed",
                    job_id,
                    job_id=job_id,
                    chunk_id=chunk_id,
                    old_status=chunk.status,
                    new_status=change.status,
                )
                self.refresh(session, job_id)
            return self._chunk(session, job_id, chunk_id)

    def list_history(
        self, job_id: int, chunk_id: int | None, page_size: int, page_token: str
    ) -> Page[Row[Any]]:
        """chunkGetHistory. History outlives its job, so a deleted job's runs
        are still listed; NOT_FOUND only when neither the job (chunk) nor any
        run of it is known."""
        if chunk_id is not None:
            domain.check_chunk_id(chunk_id)
        request = _sized(page_size, page_token, {"job": job_id, "chunk": chunk_id}, CHUNK_PAGE)
        with self.db.transaction() as session:
            if not repo.runs_exist(session, job_id, chunk_id):
                job = repo.get_job(session, job_id)
                if job is None:
                    raise NotFound(f"job_id: job {job_id} does not exist")
                if chunk_id is not None and repo.get_chunk(session, job_id, chunk_id) is None:
                    raise NotFound(f"chunk_id: chunk {chunk_id} of job {job_id} does not exist")
            rows = repo.list_runs(session, job_id, chunk_id, request.after, request.size + 1)
        return _page(rows, request.size, lambda r: r.id, request.next_token)

    # --- backup store ------------------------------------------------------------------------

    def backup_job(self, job_id: int, overwrite_mode: str) -> int:
        """backupJob."""
        with self.db.transaction() as session:
            return self._backup(session, self._job(session, job_id, lock=True), overwrite_mode)

    def archive_job(self, job_id: int, overwrite_mode: str) -> int:
        """backupJobAndDelete: the backup and the deletion in one transaction."""
        with self.db.transaction() as session:
            row = self._job(session, job_id, lock=True)
            backup_id = self._backup(session, row, overwrite_mode)
            self._delete(session, row, archived=True)
            return backup_id

    def _backup(self, session: Session, row: Row[Any], overwrite_mode: str) -> int:
        """Snapshot the (locked) job `row` into the backup store."""
        job_id = int(row.id)
        ensure_may_change([row])
        if row.kind != "job":
            raise InvalidArgument(f"job_id: {job_id} is a folder; only jobs are backed up")
        existing = repo.backup_ids_of_job(session, job_id)
        if existing and overwrite_mode == "fail":
            raise AlreadyExists(f"job_id: the backup store already holds job {job_id}")
        if overwrite_mode == "replace":
            repo.delete_backups(session, existing)
        parts = repo.snapshot_parts(session, job_id)
        chain = [] if row.parent_id is None else [int(row.parent_id)]
        chain += repo.ancestors(session, chain[0]) if chain else []
        snapshot = {
            "job": [queue_sql.row_to_json(jobs, r) for r in parts["job"]],
            "dependencies": [
                queue_sql.row_to_json(job_dependencies, r) for r in parts["dependencies"]
            ],
            "chunks": [queue_sql.row_to_json(chunks, r) for r in parts["chunks"]],
            "runs": [queue_sql.row_to_json(chunk_runs, r) for r in parts["runs"]],
            "parents": [queue_sql.row_to_json(jobs, r) for r in repo.folder_rows(session, chain)],
        }
        backup_id = repo.insert_backup(
            session,
            {
                "job_id": job_id,
                "parent_id": row.parent_id,
                "name": row.name,
                "owner": row.owner,
                "project": row.project,
                "backed_up_by": current_caller().label,
                "chunks_count": len(parts["chunks"]),
                "snapshot": snapshot,
            },
        )
        _event(session, "job.backed_up", job_id, job_id=job_id, backup_id=backup_id)
        return backup_id

    def restore_job(self, backup_id: int, action_flags: int, new_parent_id: int) -> int:
        """backupRestoreJob; returns the job id in the queue."""
        unknown = action_flags & ~RESTORE_ALL_FLAGS
        if unknown:
            raise InvalidArgument(f"action_flags: unknown bits {unknown:#x}")
        if new_parent_id < ROOT:
            raise InvalidArgument(
                f"new_parent_id: must be 0, -1 or a folder id, got {new_parent_id}"
            )
        with self.db.transaction() as session:
            backup = repo.get_backup(session, backup_id)
            if backup is None:
                raise NotFound(f"backup_id: backup {backup_id} does not exist")
            snapshot = backup.snapshot
            job = queue_sql.row_from_json(jobs, snapshot["job"][0])
            parent = self._restore_parent(session, job, snapshot, action_flags, new_parent_id)
            original = int(job["id"])
            if original in repo.existing_jobs(session, [original]):
                if not action_flags & RESTORE_DUPLICATE_ENTRY:
                    raise AlreadyExists(
                        f"backup_id: job {original} is in the queue; "
                        "set DUPLICATE_ENTRY to restore a copy under a new id"
                    )
                del job["id"]
            job.update(parent_id=parent, request_id=None, version=1)
            job_id = repo.insert_job(session, job)
            depends = [int(d["depends_on_job_id"]) for d in snapshot["dependencies"]]
            repo.set_dependencies(session, job_id, repo.existing_jobs(session, depends))
            chunk_rows = [queue_sql.row_from_json(chunks, c) for c in snapshot["chunks"]]
            for chunk in chunk_rows:
                chunk["job_id"] = job_id
                if chunk["status"] in domain.QUEUED_ON_LOAD:
                    chunk["status"] = "queued"
            repo.insert_rows(session, "chunks", chunk_rows)
            repo.align_runs_count(session, [job_id])
            repo.reset_job_id_sequence(session)
            self.refresh(session, job_id)
            if action_flags & RESTORE_REMOVE_BACKUP:
                repo.delete_backups(session, [backup_id])
            _event(
                session,
                "job.restored",
                job_id,
                job_id=job_id,
                original_job_id=original,
                backup_id=backup_id,
            )
            return job_id

    def _restore_parent(
        self,
        session: Session,
        job: dict[str, Any],
        snapshot: dict[str, Any],
        flags: int,
        new_parent_id: int,
    ) -> int | None:
        if new_parent_id == ROOT:
            return None
        if new_parent_id > 0:
            self._check_parent(session, new_parent_id, "new_parent_id")
            return new_parent_id
        original = job["parent_id"]
        if original is None:
            return None
        found = repo.existing_jobs(session, [original]).get(original)
        if found is not None and found.kind == "folder":
            return int(original)
        if not flags & RESTORE_PARENTS:
            raise FailedPrecondition(
                f"backup_id: folder {original} is gone; set RESTORE_PARENTS or new_parent_id"
            )
        chain = [queue_sql.row_from_json(jobs, p) for p in snapshot.get("parents", [])]
        present = repo.existing_jobs(session, [int(p["id"]) for p in chain])
        missing: list[dict[str, Any]] = []
        for folder in chain:  # nearest first; stop at the first folder still there
            if int(folder["id"]) in present:
                break
            missing.append(folder)
        # Outermost first: each under its parent, which is the folder still
        # there where the walk stopped, or one recreated just before it.
        for folder in reversed(missing):
            values = {
                k: folder[k] for k in ("id", "parent_id", "kind", "name", "owner", "submitter")
            }
            repo.insert_job(session, values)
            _event(
                session,
                "job.folder_created",
                int(folder["id"]),
                job_id=int(folder["id"]),
                name=folder["name"],
                owner=folder["owner"],
                restored=True,
            )
        return int(original)

    def backup_boundaries(self) -> tuple[datetime | None, datetime | None, int]:
        with self.db.transaction() as session:
            return repo.backup_boundaries(session)

    def query_backups(
        self, filters: BackupFilter, page_size: int, page_token: str
    ) -> Page[Row[Any]]:
        """backupQuery: newest backup first."""
        if filters.since and filters.until and filters.since > filters.until:
            raise InvalidArgument("query.backup_time_range: start_time is after end_time")
        request = page_request(page_size, page_token, dataclasses.asdict(filters))
        after = None
        if request.after is not None:
            try:
                after = (datetime.fromisoformat(request.after[0]), int(request.after[1]))
            except (TypeError, ValueError, IndexError):
                raise InvalidArgument("page_token is not a token this service issued") from None
        with self.db.transaction() as session:
            rows = repo.query_backups(
                session,
                after=after,
                limit=request.size + 1,
                **dataclasses.asdict(filters),
            )
        return _page(
            rows,
            request.size,
            lambda r: [r.backed_up_at.isoformat(), int(r.id)],
            request.next_token,
        )

    # --- queue snapshots and flushes ------------------------------------------------------------

    def apply_retention(self, policy: str, hours: float, log_days: int) -> tuple[int, int]:
        """The dispatcher configuration's retention: jobs completed more than
        `hours` ago are deleted or archived as `policy` says ("keep" keeps
        them), and render output of runs older than `log_days` is pruned.
        Returns (jobs removed, log lines pruned); a job another call changed
        meanwhile is left for the next pass."""
        removed = 0
        if policy in ("delete", "archive"):
            with self.db.transaction() as session:
                expired = repo.expired_completed_jobs(session, hours, RETENTION_BATCH)
            for job_id in expired:
                try:
                    if policy == "archive":
                        self.archive_job(job_id, "replace")
                    else:
                        self.delete_job(job_id)
                    removed += 1
                except (NotFound, InvalidArgument, FailedPrecondition):
                    continue
        with self.db.transaction() as session:
            pruned = repo.prune_run_logs(session, log_days)
        return removed, pruned

    def export_sql(self) -> str:
        """dbExportQueueSQL: the queue as of one consistent snapshot."""
        with self.db.transaction() as session:
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            return queue_sql.export_sql(repo.queue_rows(session))

    def import_sql(self, sql: str) -> int:
        """dbImportQueueSQL: replace the queue atomically; returns the job count."""
        parsed = queue_sql.parse_sql(sql)
        for chunk in parsed.rows["chunks"]:
            if chunk["status"] in domain.QUEUED_ON_LOAD:
                chunk["status"] = "queued"
        try:
            with self.db.transaction() as session:
                queue_sql.check_references(parsed, repo.template_ids(session))
                if repo.live_assignments_count(session):
                    raise FailedPrecondition(
                        "sql: chunks are running on nodes; stop them before replacing the queue"
                    )
                repo.clear_queue(session)
                job_rows = parsed.rows["jobs"]
                parents = {r["id"]: r["parent_id"] for r in job_rows if r["parent_id"] is not None}
                # Parents may have larger ids than their children (after a
                # move): insert without them, then link.
                repo.insert_rows(session, "jobs", [{**r, "parent_id": None} for r in job_rows])
                repo.set_parents(session, parents)
                repo.insert_rows(session, "job_dependencies", parsed.rows["job_dependencies"])
                repo.insert_rows(session, "chunks", parsed.rows["chunks"])
                repo.align_runs_count(session, None)
                # Counters, progress and status follow the imported chunks,
                # whatever the text says about them.
                for row in job_rows:
                    if row["kind"] == "job":
                        self.refresh(session, row["id"])
                repo.reset_job_id_sequence(session)
                count = repo.jobs_count(session)
                publish(
                    session,
                    "queue.imported",
                    {
                        "jobs": count,
                        "chunks": len(parsed.rows["chunks"]),
                        "actor": current_caller().label,
                    },
                )
                return count
        except (IntegrityError, DataError) as error:
            detail = getattr(getattr(error.orig, "diag", None), "constraint_name", None)
            raise InvalidArgument(
                f"sql: the snapshot does not fit this queue's schema ({detail or error.orig})"
            ) from None

    def flush(self) -> None:
        """dbFlush, dbHistoryFlush, dbBackupFlush: every RPC commits before it
        returns, so a round trip to the database is all that is left to wait for."""
        with self.db.transaction() as session:
            session.execute(text("SELECT 1"))
