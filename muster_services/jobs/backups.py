"""Use cases of the backup store: back up, archive (back up and delete),
restore, query, boundaries.

A backup holds the job's rows as JSON (store.job_snapshot): the job, its
dependencies, chunks and runs, and its parent folders, so a restore can
recreate the folders that are gone. Each public method runs in one
transaction and publishes its events there (docs/jobs.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from muster_services.core.bus import publish_change
from muster_services.core.caller import current_caller
from muster_services.core.database import Database
from muster_services.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from muster_services.core.paging import Page, page_of, page_request
from muster_services.jobs import domain, topics
from muster_services.jobs import store as repo
from muster_services.jobs.common import check_parent, ensure_may_change, job
from muster_services.jobs.domain import ROOT, BackupRecord, JobRecord
from muster_services.jobs.enums import (
    RESTORE_ALL_FLAGS,
    RESTORE_DUPLICATE_ENTRY,
    RESTORE_PARENTS,
    RESTORE_REMOVE_BACKUP,
)
from muster_services.jobs.rollup import refresh
from muster_services.jobs.teardowns import begin_deletion, finish_teardown


@dataclass(frozen=True)
class BackupFilter:
    name_contains: str = ""
    owner: str = ""
    project: str = ""
    job_id: int = 0
    since: datetime | None = None
    until: datetime | None = None


def _backup(session: Session, row: JobRecord, overwrite_mode: str) -> int:
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
    chain = [] if row.parent_id is None else [int(row.parent_id)]
    chain += repo.ancestors(session, chain[0]) if chain else []
    snapshot = repo.job_snapshot(session, job_id, chain)
    backup_id = repo.insert_backup(
        session,
        {
            "job_id": job_id,
            "parent_id": row.parent_id,
            "name": row.name,
            "owner": row.owner,
            "project": row.project,
            "backed_up_by": current_caller().label,
            "chunks_count": len(snapshot["chunks"]),
            "snapshot": snapshot,
        },
    )
    publish_change(
        session,
        topics.JOB_BACKED_UP,
        {"job_id": job_id, "backup_id": backup_id},
        key=str(job_id),
    )
    return backup_id


def _restore_parent(
    session: Session,
    job_row: dict[str, Any],
    snapshot: dict[str, Any],
    flags: int,
    new_parent_id: int,
) -> int | None:
    if new_parent_id == ROOT:
        return None
    if new_parent_id > 0:
        check_parent(session, new_parent_id, "new_parent_id")
        return new_parent_id
    original = job_row["parent_id"]
    if original is None:
        return None
    found = repo.existing_jobs(session, [original]).get(original)
    if found is not None and found.kind == "folder":
        return int(original)
    if not flags & RESTORE_PARENTS:
        raise FailedPrecondition(
            f"backup_id: folder {original} is gone; set RESTORE_PARENTS or new_parent_id"
        )
    chain = [repo.job_from_snapshot(p) for p in snapshot.get("parents", [])]
    present = repo.existing_jobs(session, [int(p["id"]) for p in chain])
    missing: list[dict[str, Any]] = []
    for folder in chain:  # nearest first; stop at the first folder still there
        if int(folder["id"]) in present:
            break
        missing.append(folder)
    # Outermost first: each under its parent, which is the folder still
    # there where the walk stopped, or one recreated just before it.
    for folder in reversed(missing):
        values = {k: folder[k] for k in ("id", "parent_id", "kind", "name", "owner", "submitter")}
        repo.insert_job(session, values)
        publish_change(
            session,
            topics.JOB_FOLDER_CREATED,
            {
                "job_id": int(folder["id"]),
                "name": folder["name"],
                "owner": folder["owner"],
                "restored": True,
            },
            key=str(int(folder["id"])),
        )
    return int(original)


class BackupsService:
    """The backup store's use cases on one database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def backup_job(self, job_id: int, overwrite_mode: str) -> int:
        """backupJob."""
        with self.db.transaction() as session:
            return _backup(session, job(session, job_id, lock=True), overwrite_mode)

    def archive_job(self, job_id: int, overwrite_mode: str) -> int:
        """backupJobAndDelete: the backup and the deletion's first step in one
        transaction (no job is deleted without its backup), the deletion's
        rows in a second (teardowns.py)."""
        with self.db.transaction() as session:
            row = job(session, job_id, lock=True)
            backup_id = _backup(session, row, overwrite_mode)
            root = begin_deletion(session, row, archived=True)
        finish_teardown(self.db, "delete", root)
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
            snapshot = dict(backup.snapshot)
            job_row = repo.job_from_snapshot(snapshot["job"][0])
            parent = _restore_parent(session, job_row, snapshot, action_flags, new_parent_id)
            original = int(job_row["id"])
            if original in repo.existing_jobs(session, [original]):
                if not action_flags & RESTORE_DUPLICATE_ENTRY:
                    raise AlreadyExists(
                        f"backup_id: job {original} is in the queue; "
                        "set DUPLICATE_ENTRY to restore a copy under a new id"
                    )
                del job_row["id"]
            job_row.update(parent_id=parent, request_id=None, version=1)
            job_id = repo.insert_job(session, job_row)
            depends = [int(d["depends_on_job_id"]) for d in snapshot["dependencies"]]
            repo.set_dependencies(session, job_id, repo.existing_jobs(session, depends))
            chunk_rows = [repo.chunk_from_snapshot(c) for c in snapshot["chunks"]]
            for chunk in chunk_rows:
                chunk["job_id"] = job_id
                if chunk["status"] in domain.QUEUED_ON_LOAD:
                    chunk["status"] = "queued"
            repo.insert_rows(session, "chunks", chunk_rows)
            repo.align_runs_count(session, [job_id])
            repo.reset_job_id_sequence(session)
            refresh(session, job_id)
            if action_flags & RESTORE_REMOVE_BACKUP:
                repo.delete_backups(session, [backup_id])
            publish_change(
                session,
                topics.JOB_RESTORED,
                {"job_id": job_id, "original_job_id": original, "backup_id": backup_id},
                key=str(job_id),
            )
            return job_id

    def backup_boundaries(self) -> tuple[datetime | None, datetime | None, int]:
        with self.db.transaction() as session:
            return repo.backup_boundaries(session)

    def query_backups(
        self, filters: BackupFilter, page_size: int, page_token: str
    ) -> Page[BackupRecord]:
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
        return page_of(rows, request, lambda r: [r.backed_up_at.isoformat(), int(r.id)])
