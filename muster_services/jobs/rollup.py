"""A job's status rollup, which every use case that changes chunks runs.

`refresh` recounts a (locked) job's chunks, applies domain.rollup and
publishes what changed (job.properties_changed, job.completed), so a job's
status follows one rule whoever changes its chunks.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from muster_services.core.bus import publish_change
from muster_services.core.errors import NotFound
from muster_services.jobs import domain, topics
from muster_services.jobs import store as repo


def refresh(session: Session, job_id: int, *, reinit: bool = False) -> str:
    """Recount a (locked) job's chunks and apply the status rollup; publish
    what changed. With reinit, a failed (aborted) job starts over and no
    job.properties_changed is published (job.reinit says it all). Returns
    the job's status."""
    row = repo.get_job(session, job_id)
    if row is None:
        raise NotFound(f"job_id: job {job_id} does not exist")
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
    ended_now = finished and row.ended_at is None
    if not finished and row.ended_at is not None:
        values["ended_at"] = None
    changed = sorted(k for k, v in values.items() if k != "ended_at" and getattr(row, k) != v)
    if changed or ended_now or "ended_at" in values:
        repo.update_job(session, job_id, values, ended_now=ended_now)
    if changed and not reinit:
        publish_change(
            session,
            topics.JOB_PROPERTIES_CHANGED,
            {"job_id": job_id, "fields": changed, "status": result.status},
            key=str(job_id),
        )
    if finished and row.status != result.status:
        publish_change(
            session,
            topics.JOB_COMPLETED,
            {"job_id": job_id, "status": result.status},
            key=str(job_id),
        )
    return result.status
