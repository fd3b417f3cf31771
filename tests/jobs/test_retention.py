"""The completed-job policy and render-log retention of the dispatcher configuration."""

from __future__ import annotations

import dataclasses

from sqlalchemy import func, insert, select, text, update

from muster_services.admin.system import SystemService
from muster_services.core.database import Database
from muster_services.core.errors import NotFound
from muster_services.jobs.component import Retention
from muster_services.jobs.service import JobsService
from muster_services.jobs.tables import backup_jobs, chunk_run_logs, chunk_runs, jobs
from tests.jobs.conftest import SPEC as BLENDER_SPEC
from tests.jobs.conftest import assign

SPEC = dataclasses.replace(BLENDER_SPEC, end_frame=2)


def _completed(service: JobsService, db: Database, name: str, hours_ago: float) -> int:
    job = service.queue.submit_job(dataclasses.replace(SPEC, name=name))
    for chunk in (1, 2):
        service.chunks.set_chunk_status(job.id, chunk, "completed")
    assert service.queue.get_job(job.id).status == "completed"
    with db.transaction() as session:
        session.execute(
            update(jobs)
            .where(jobs.c.id == job.id)
            .values(ended_at=func.now() - func.make_interval(0, 0, 0, 0, hours_ago))
        )
    return int(job.id)


def _exists(service: JobsService, job_id: int) -> bool:
    try:
        service.queue.get_job(job_id)
    except NotFound:
        return False
    return True


def test_completed_jobs_past_the_retention_are_deleted_or_archived_as_the_policy_says(
    service: JobsService, db: Database
) -> None:
    old = _completed(service, db, "old", hours_ago=10)
    recent = _completed(service, db, "recent", hours_ago=1)
    running = service.queue.submit_job(dataclasses.replace(SPEC, name="running")).id
    with db.transaction() as session:
        session.execute(
            update(jobs)
            .where(jobs.c.id == running)
            .values(ended_at=func.now() - text("interval '10 hours'"))
        )
    assert service.snapshots.apply_retention("keep", 5, 30) == (0, 0)
    assert all(_exists(service, j) for j in (old, recent, running))

    assert service.snapshots.apply_retention("delete", 5, 30)[0] == 1
    assert not _exists(service, old)
    assert _exists(service, recent) and _exists(service, running)

    archived = _completed(service, db, "archived", hours_ago=10)
    assert service.snapshots.apply_retention("archive", 5, 30)[0] == 1
    assert not _exists(service, archived)
    with db.transaction() as session:
        kept = session.execute(select(backup_jobs.c.name)).scalars().all()
    assert kept == ["archived"]


def test_render_output_older_than_the_log_retention_is_pruned(
    service: JobsService, db: Database
) -> None:
    job = service.queue.submit_job(SPEC)
    assign(db, job.id, 1, node_id=1)
    assign(db, job.id, 2, node_id=2)
    with db.transaction() as session:
        runs = {
            r.chunk_number: r.id
            for r in session.execute(select(chunk_runs.c.chunk_number, chunk_runs.c.id))
        }
        for run_id in runs.values():
            session.execute(
                insert(chunk_run_logs),
                [{"run_id": run_id, "seq": n, "line": f"line {n}"} for n in (1, 2, 3)],
            )
        session.execute(
            update(chunk_runs)
            .where(chunk_runs.c.id == runs[1])
            .values(started_at=func.now() - text("interval '40 days'"))
        )
    assert service.snapshots.apply_retention("keep", 5, 30) == (0, 3)
    with db.transaction() as session:
        left = set(session.execute(select(chunk_run_logs.c.run_id)).scalars())
    assert left == {runs[2]}


def test_the_background_pass_follows_the_dispatcher_configuration(
    service: JobsService, db: Database
) -> None:
    old = _completed(service, db, "old", hours_ago=3)
    retention = Retention(db, service)
    assert retention.run_once() == (0, 0)  # the default policy keeps completed jobs
    SystemService(db).update_configuration(
        {"completed_job_policy": "delete", "completed_job_retention_hours": 2}, {}, persist=True
    )
    assert retention.run_once() == (1, 0)
    assert not _exists(service, old)
