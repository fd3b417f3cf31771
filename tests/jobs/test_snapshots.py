"""Queue snapshots (muster_services/jobs/snapshots.py) on a real database: SQL export
and import around live chunks, and a refused import changing nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, update

from muster_services.core.database import Database
from muster_services.core.errors import FailedPrecondition, InvalidArgument
from muster_services.jobs.service import JobsService
from muster_services.jobs.tables import chunks, jobs
from tests.jobs.conftest import SPEC, assign

pytestmark = pytest.mark.database


def test_import_is_refused_while_chunks_run(service: JobsService, db: Database) -> None:
    job = service.queue.submit_job(SPEC)
    text = service.snapshots.export_sql()
    assign(db, job.id, 1, node_id=1)
    with pytest.raises(FailedPrecondition, match="running on nodes"):
        service.snapshots.import_sql(text)
    assert service.chunks.get_chunk(job.id, 1).status == "running"


def test_an_imported_queue_starts_waiting_chunks_again_as_queued(
    service: JobsService, db: Database
) -> None:
    job = service.queue.submit_job(SPEC)
    with db.transaction() as session:
        session.execute(
            update(chunks)
            .where(chunks.c.job_id == job.id, chunks.c.chunk_number == 2)
            .values(status="waiting_dependencies")
        )
    exported = service.snapshots.export_sql()
    assert "waiting_dependencies" in exported
    service.snapshots.import_sql(exported)
    with db.transaction() as session:
        statuses = set(session.execute(select(chunks.c.status)).scalars())
    assert statuses == {"queued"}  # the scheduler takes only queued chunks


def test_a_refused_import_leaves_the_queue_exactly_as_it_was(
    service: JobsService, db: Database
) -> None:
    service.queue.submit_job(SPEC)
    before = service.snapshots.export_sql()
    broken = before + before.splitlines()[0].replace("'shot'", "'again'") + "\n"  # duplicate id
    with pytest.raises(InvalidArgument, match="job 1 appears twice"):
        service.snapshots.import_sql(broken)
    assert service.snapshots.export_sql() == before
    with db.transaction() as session:
        assert session.execute(select(func.count()).select_from(jobs)).scalar_one() == 1
