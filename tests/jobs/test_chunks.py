"""Chunks and history use cases (muster_services/jobs/chunks.py) on a real database:
status changes and the rollup they run, kills of live chunks, history pages."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select

from muster_services.core.database import Database
from muster_services.jobs.service import JobsService
from muster_services.jobs.tables import chunk_assignments
from tests.jobs.conftest import SPEC, assign, topics

pytestmark = pytest.mark.database


def test_the_last_chunk_finishing_publishes_job_completed(
    service: JobsService, db: Database
) -> None:
    job = service.queue.submit_job(dataclasses.replace(SPEC, end_frame=2))
    service.chunks.set_chunk_status(job.id, 1, "skipped")
    service.chunks.set_chunk_status(job.id, 2, "completed")
    done = service.queue.get_job(job.id)
    assert (done.status, done.progress, done.ended_at is not None) == ("completed", 100, True)
    assert [t for t, _ in topics(db)].count("job.completed") == 1


def test_setting_a_running_chunk_asks_its_node_to_kill_it_first(
    service: JobsService, db: Database
) -> None:
    job = service.queue.submit_job(SPEC)
    assign(db, job.id, 1, node_id=7)
    chunk = service.chunks.set_chunk_status(job.id, 1, "hold")
    assert chunk.status == "running"  # until the kill is confirmed
    with db.transaction() as session:
        live = session.execute(select(chunk_assignments)).one()
    assert (live.state, live.status_after_kill) == ("killing", "hold")
    topic, payload = topics(db)[-1]
    assert (topic, payload["node_id"]) == ("chunk.kill_requested", 7)


def test_history_pages_oldest_run_first(service: JobsService, db: Database) -> None:
    job = service.queue.submit_job(SPEC)
    for chunk in (3, 1, 2):
        assign(db, job.id, chunk, node_id=chunk)
    first = service.chunks.list_history(job.id, None, 2, "")
    rest = service.chunks.list_history(job.id, None, 2, first.next_page_token)
    assert [r.chunk_number for r in first.items + rest.items] == [3, 1, 2]
    assert rest.next_page_token == ""
