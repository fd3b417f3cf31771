"""Use cases of chunks and their history: list, get, set a chunk's status
(chunkSetStatus, with the state rules of domain.chunk_change), list runs.

Each public method runs in one transaction and publishes its events there
(docs/jobs.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from muster_services.core.bus import publish_change
from muster_services.core.database import Database
from muster_services.core.errors import FailedPrecondition, InvalidArgument, NotFound
from muster_services.core.paging import Page, PageRequest, page_of, page_request
from muster_services.jobs import domain, topics
from muster_services.jobs import store as repo
from muster_services.jobs.common import ensure_may_change, job
from muster_services.jobs.domain import ChunkRecord, JobRecord, ListedChunk, RunRecord
from muster_services.jobs.rollup import refresh

CHUNK_PAGE = (1000, 10_000)  # (default, maximum) page sizes of chunk and history lists


def _chunk_page(page_size: int, page_token: str, filters: Any) -> tuple[PageRequest, int]:
    """The request and its page size: chunk and history pages are larger than
    other lists' (CHUNK_PAGE)."""
    request = page_request(page_size, page_token, filters)
    return request, min(page_size or CHUNK_PAGE[0], CHUNK_PAGE[1])


def _job_with_chunks(session: Session, job_id: int, lock: bool = False) -> JobRecord:
    row = job(session, job_id, lock=lock)
    if row.kind != "job":
        raise InvalidArgument(f"job_id: {job_id} is a folder; folders have no chunks")
    return row


def _chunk(session: Session, job_id: int, chunk_id: int) -> ChunkRecord:
    row = repo.get_chunk(session, job_id, domain.check_chunk_id(chunk_id))
    if row is None:
        raise NotFound(f"chunk_id: chunk {chunk_id} of job {job_id} does not exist")
    return row


class ChunksService:
    """Chunks and history use cases on one database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def list_chunks(
        self, job_id: int, statuses: Sequence[str], page_size: int, page_token: str
    ) -> Page[ListedChunk]:
        request, size = _chunk_page(
            page_size, page_token, {"job": job_id, "statuses": list(statuses)}
        )
        with self.db.transaction() as session:
            _job_with_chunks(session, job_id)
            rows = repo.list_chunks(session, job_id, statuses, request.after, size + 1)
        return page_of(rows, request, lambda r: r[0], limit=size)

    def get_chunk(self, job_id: int, chunk_id: int) -> ChunkRecord:
        with self.db.transaction() as session:
            _job_with_chunks(session, job_id)
            return _chunk(session, job_id, chunk_id)

    def set_chunk_status(self, job_id: int, chunk_id: int, status: str) -> ChunkRecord:
        """chunkSetStatus, with the state rules of domain.chunk_change."""
        with self.db.transaction() as session:
            row = _job_with_chunks(session, job_id, lock=True)
            ensure_may_change([row])
            chunk = _chunk(session, job_id, chunk_id)
            change = domain.chunk_change(chunk.status, status)
            if row.locked:
                raise FailedPrecondition(f"job_id: job {job_id} is locked; unlock it first")
            if change.kill:
                live = repo.assignment_of(session, job_id, chunk_id)
                if live is not None:
                    repo.request_kill(session, job_id, chunk_id, change.target)
                    publish_change(
                        session,
                        topics.CHUNK_KILL_REQUESTED,
                        {
                            "job_id": job_id,
                            "chunk_id": chunk_id,
                            "node_id": int(live.node_id),
                            "status_after_kill": change.target,
                        },
                        key=str(job_id),
                    )
                    return _chunk(session, job_id, chunk_id)
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
                    repo.update_job(session, job_id, {"requeue_count": row.requeue_count + 1})
                repo.update_chunk(session, job_id, chunk_id, values)
                publish_change(
                    session,
                    topics.CHUNK_STATUS_CHANGED,
                    {
                        "job_id": job_id,
                        "chunk_id": chunk_id,
                        "old_status": chunk.status,
                        "new_status": change.status,
                    },
                    key=str(job_id),
                )
                refresh(session, job_id)
            return _chunk(session, job_id, chunk_id)

    def list_history(
        self, job_id: int, chunk_id: int | None, page_size: int, page_token: str
    ) -> Page[RunRecord]:
        """chunkGetHistory. History outlives its job, so a deleted job's runs
        are still listed; NOT_FOUND only when neither the job (chunk) nor any
        run of it is known."""
        if chunk_id is not None:
            domain.check_chunk_id(chunk_id)
        request, size = _chunk_page(page_size, page_token, {"job": job_id, "chunk": chunk_id})
        with self.db.transaction() as session:
            if not repo.runs_exist(session, job_id, chunk_id):
                if repo.get_job(session, job_id) is None:
                    raise NotFound(f"job_id: job {job_id} does not exist")
                if chunk_id is not None and repo.get_chunk(session, job_id, chunk_id) is None:
                    raise NotFound(f"chunk_id: chunk {chunk_id} of job {job_id} does not exist")
            rows = repo.list_runs(session, job_id, chunk_id, request.after, size + 1)
        return page_of(rows, request, lambda r: r.id, limit=size)
