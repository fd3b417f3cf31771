"""Use cases of the queue: listing and reading jobs, submitting jobs and
folders, editing, moving, reinitialising, deleting, recomputing a status.

Each public method runs in ONE transaction, validates everything before it
writes (a refused call changes nothing), raises DomainError subclasses whose
message names the field, and publishes an event in the same transaction for
every state change (topics in docs/jobs.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from muster_services.core.bus import publish_change
from muster_services.core.caller import current_caller
from muster_services.core.database import Database
from muster_services.core.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from muster_services.core.paging import Page, page_of, page_request
from muster_services.jobs import domain, topics
from muster_services.jobs import store as repo
from muster_services.jobs.actions import ensure_may_set_job_actions
from muster_services.jobs.common import check_parent, ensure_may_change, job
from muster_services.jobs.domain import ROOT, JobRecord, JobSpec, JobVersion
from muster_services.jobs.rollup import refresh
from muster_services.jobs.teardowns import (
    begin_deletion,
    begin_reinit,
    finish_teardown,
)

# The onValidateJobSubmission rule: a refusal reason for a proposed job, or
# None to accept it (muster_services/jobs/component.py builds it from the hooks).
SubmissionValidator = Callable[[JobSpec], str | None]


@dataclass(frozen=True)
class JobFilter:
    """ListJobs filters; parent_id None lists the whole queue, ROOT the root."""

    parent_id: int | None = None
    owner: str = ""
    statuses: tuple[str, ...] = ()
    kind: str | None = None
    project: str = ""


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


def _with_template(session: Session, spec: JobSpec) -> tuple[JobSpec, str]:
    """The job checked against its template (which must exist and be enabled,
    whatever else the job sets): its attributes against the submission items
    (defaults filled in), and its packet type (the template's default when
    unset)."""
    assert spec.template_id is not None  # validate_job requires it for jobs
    template = repo.get_template(session, spec.template_id)
    if template is None:
        raise InvalidArgument(f"job.template_id: unknown template {spec.template_id}")
    if not template.enabled:
        raise InvalidArgument(f"job.template_id: template {spec.template_id} is disabled")
    attributes = domain.apply_submission_items(template.id, template.definition, spec.attributes)
    if attributes != spec.attributes:
        spec = dataclasses.replace(spec, attributes=attributes)
    return spec, spec.packet_type or template.default_packet_type


def _initial_status(session: Session, spec: JobSpec) -> str:
    depends = repo.existing_jobs(session, spec.depend_ids)
    for depend_id in spec.depend_ids:
        found = depends.get(depend_id)
        if found is None:
            raise NotFound(f"job.depend_ids: job {depend_id} does not exist")
        if found.kind != "job":
            raise InvalidArgument(f"job.depend_ids: {depend_id} is a folder, not a job")
    met = domain.dependencies_met(spec.depend_mode, (d.status for d in depends.values()))
    return "queued" if met else "waiting_dependencies"


def _check_move(session: Session, job_id: int, new_parent_id: int, field: str) -> None:
    check_parent(session, new_parent_id, field)
    if new_parent_id != ROOT:
        domain.check_move(job_id, new_parent_id, repo.ancestors(session, new_parent_id))


class QueueService:
    """The queue's use cases on one database."""

    def __init__(self, db: Database, validator: SubmissionValidator | None = None) -> None:
        self.db = db
        self.validator = validator

    # --- reading the queue -------------------------------------------------------------

    def list_jobs(self, filters: JobFilter, page_size: int, page_token: str) -> Page[JobVersion]:
        """A page of jobs, only (id, version) of each, for a reader that keeps
        the jobs it already knows (see jobs_by_ids)."""
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
            )
        return page_of(rows, request, lambda r: r.id)

    def jobs_by_ids(self, ids: Sequence[int]) -> list[JobRecord]:
        with self.db.transaction() as session:
            return repo.jobs_by_ids(session, ids)

    def get_job(self, job_id: int) -> JobRecord:
        with self.db.transaction() as session:
            return job(session, job_id)

    def job_version(self, job_id: int) -> JobVersion:
        """(id, version) of a job: enough for a reader that keeps known jobs."""
        with self.db.read() as connection:
            row = repo.job_version(connection, job_id)
        if row is None:
            raise NotFound(f"job_id: job {job_id} does not exist")
        return row

    # --- submission ----------------------------------------------------------------------

    def submit_job(self, spec: JobSpec, request_id: str = "") -> JobRecord:
        """jobSubmit: the job (or folder) and its chunks, in one transaction,
        unless onValidateJobSubmission (the validator) refuses it."""
        if self.validator is not None:
            reason = self.validator(spec)
            if reason is not None:
                raise FailedPrecondition(f"refused by onValidateJobSubmission: {reason}")
        return self._submit(spec, request_id)

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
        return int(self._submit(spec, request_id).id)

    def _submit(self, spec: JobSpec, request_id: str) -> JobRecord:
        if spec.parent_id == 0:
            spec = dataclasses.replace(spec, parent_id=ROOT)  # unset in proto3 = the root
        spec = _submitted_by_caller(spec)
        domain.validate_job(spec)
        ensure_may_set_job_actions((), spec.attributes)
        if len(request_id) > domain.MAX_LABEL_LENGTH:
            raise InvalidArgument(f"request_id: at most {domain.MAX_LABEL_LENGTH} characters")
        with self.db.transaction() as session:
            if request_id:
                existing = repo.job_id_for_request(session, request_id)
                if existing is not None:
                    return job(session, existing)
            check_parent(session, spec.parent_id, "job.parent_id")
            packet_type, plan, status = "frames", None, "queued"
            if spec.kind == "job":
                spec, packet_type = _with_template(session, spec)
                plan = domain.plan_chunks(spec, packet_type)
                status = _initial_status(session, spec)
            count = plan.count if plan else 0
            values = repo.job_values(spec, packet_type)
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
            topic = topics.JOB_SUBMITTED if spec.kind == "job" else topics.JOB_FOLDER_CREATED
            publish_change(
                session,
                topic,
                {
                    "job_id": job_id,
                    "name": spec.name,
                    "owner": spec.owner,
                    "parent_id": spec.parent_id,
                    "chunks": count,
                },
                key=str(job_id),
            )
            return job(session, job_id)

    # --- changing jobs -------------------------------------------------------------------

    def update_job(
        self, job_id: int, new: JobSpec, fields: Iterable[str] | None, etag: str = ""
    ) -> JobRecord:
        """jobEdit: the named fields (every writable one when None)."""
        changing = _edit_fields(fields)
        with self.db.transaction() as session:
            row = job(session, job_id, lock=True, field="job.id")
            ensure_may_change([row])
            if etag and etag != str(row.version):
                raise Conflict(f"job.etag: job {job_id} changed since etag {etag}")
            current = domain.spec_of(row)
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
            ensure_may_set_job_actions(current.attributes, merged.attributes)
            changed = sorted(
                f for f in domain.EDITABLE_FIELDS if getattr(merged, f) != getattr(current, f)
            )
            packet_type = row.packet_type
            plan = None
            if merged.kind == "job":
                if {"template_id", "packet_type", "attributes"} & set(changed):
                    merged, packet_type = _with_template(session, merged)
                    if "packet_type" not in changed and "template_id" not in changed:
                        packet_type = row.packet_type
                if domain.CHUNK_SHAPE_FIELDS & set(changed):
                    plan = domain.plan_chunks(merged, packet_type)
                if "depend_ids" in changed or "depend_mode" in changed:
                    _initial_status(session, merged)
                    cycle = domain.find_dependency_cycle(
                        job_id, merged.depend_ids, repo.dependency_edges(session, merged.depend_ids)
                    )
                    if cycle:
                        path = " -> ".join(str(i) for i in cycle)
                        raise FailedPrecondition(f"job.depend_ids: dependency cycle {path}")
            if "parent_id" in changed:
                _check_move(session, job_id, merged.parent_id, "job.parent_id")
            if not changed:
                return row
            values = {k: v for k, v in repo.job_values(merged, packet_type).items() if k != "kind"}
            repo.update_job(session, job_id, values)
            if "depend_ids" in changed:
                repo.set_dependencies(session, job_id, merged.depend_ids)
            rebuilt = plan is not None and not repo.any_chunk_started(session, job_id)
            if rebuilt:
                assert plan is not None
                repo.delete_chunks(session, job_id)
                repo.insert_chunks(session, job_id, plan)
            if rebuilt or "depend_ids" in changed or "depend_mode" in changed:
                refresh(session, job_id)
            publish_change(
                session,
                topics.JOB_EDITED,
                {"job_id": job_id, "fields": changed, "chunks_rebuilt": rebuilt},
                key=str(job_id),
            )
            return job(session, job_id)

    def move_job(self, job_id: int, new_parent_id: int) -> JobRecord:
        """jobReparent."""
        with self.db.transaction() as session:
            row = job(session, job_id, lock=True)
            ensure_may_change([row])
            if new_parent_id == 0 or new_parent_id < ROOT:
                raise NotFound(f"new_parent_id: folder {new_parent_id} does not exist")
            _check_move(session, job_id, new_parent_id, "new_parent_id")
            old_parent = ROOT if row.parent_id is None else int(row.parent_id)
            if old_parent != new_parent_id:
                parent = None if new_parent_id == ROOT else new_parent_id
                repo.update_job(session, job_id, {"parent_id": parent})
                publish_change(
                    session,
                    topics.JOB_MOVED,
                    {
                        "job_id": job_id,
                        "old_parent_id": old_parent,
                        "new_parent_id": new_parent_id,
                    },
                    key=str(job_id),
                )
            return job(session, job_id)

    def reinit_job(self, job_id: int) -> None:
        """jobReinit: every chunk rebuilt as queued, counters restart; live
        chunks are released (their runs end as killed). Two transactions
        (teardowns.py)."""
        with self.db.transaction() as session:
            root = begin_reinit(session, job(session, job_id, lock=True))
        finish_teardown(self.db, "reinit", root)

    def delete_job(self, job_id: int) -> None:
        """jobDelete: the job, or the folder with everything inside it. History
        and backups stay. Two transactions (teardowns.py)."""
        with self.db.transaction() as session:
            root = begin_deletion(session, job(session, job_id, lock=True), archived=False)
        finish_teardown(self.db, "delete", root)

    def recompute_status(self, job_id: int) -> JobRecord:
        """jobUpdateStatus."""
        with self.db.transaction() as session:
            row = job(session, job_id, lock=True)
            if row.kind == "job":
                refresh(session, job_id)
            return job(session, job_id)

    def publish_job(self, job_id: int) -> None:
        """jobUpdate: every change is committed already; tell the consoles."""
        with self.db.transaction() as session:
            row = job(session, job_id)
            publish_change(
                session,
                topics.JOB_UPDATED,
                {"job_id": job_id, "version": int(row.version)},
                key=str(job_id),
            )
