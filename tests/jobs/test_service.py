"""The jobs service layer on a real database: chunks in bulk, counters, live
assignments and history, events in the same transaction, backups, snapshots.

Where a scheduler would have assigned a chunk, `assign` writes what it would
(an assignment, a running run, the chunk running): the scheduler arrives with
a later issue, and these tests pin what the jobs service does around it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update

from services.core.database import Database
from services.core.errors import FailedPrecondition, InvalidArgument, NotFound
from services.core.schema import events
from services.jobs import domain
from services.jobs.domain import JobSpec
from services.jobs.enums import RESTORE_PARENTS
from services.jobs.service import JobsService
from services.jobs.tables import chunk_assignments, chunk_runs, chunks, jobs
from services.jobs.templates import BLENDER_TEMPLATE_ID

pytestmark = pytest.mark.database

SPEC = JobSpec(
    name="shot", owner="alice", template_id=BLENDER_TEMPLATE_ID, start_frame=1, end_frame=10
)


def assign(db: Database, job_id: int, chunk: int, node_id: int) -> None:
    with db.transaction() as session:
        token = session.execute(
            insert(chunk_assignments)
            .values(job_id=job_id, chunk_number=chunk, node_id=node_id, state="running")
            .returning(chunk_assignments.c.fencing_token)
        ).scalar_one()
        session.execute(
            insert(chunk_runs).values(
                job_id=job_id,
                chunk_number=chunk,
                run_number=1,
                node_id=node_id,
                node_name=f"node{node_id}",
                fencing_token=token,
                start_frame=chunk,
                end_frame=chunk,
            )
        )
        session.execute(
            update(chunks)
            .where(chunks.c.job_id == job_id, chunks.c.chunk_number == chunk)
            .values(status="running", node_id=node_id, runs_count=1)
        )


def topics(db: Database) -> list[tuple[str, dict[str, Any]]]:
    with db.transaction() as session:
        rows = session.execute(select(events.c.topic, events.c.payload).order_by(events.c.id))
        return [(r.topic, r.payload) for r in rows]


def test_a_100000_frame_job_gets_its_chunks_in_one_submission(
    service: JobsService, db: Database
) -> None:
    spec = dataclasses.replace(SPEC, end_frame=100_000, packet_size=1)
    job = service.queue.submit_job(spec)
    assert (job.chunks_total, job.chunks_queued) == (100_000, 100_000)
    plan = domain.plan_chunks(spec, "frames")
    with db.transaction() as session:
        count, last = session.execute(
            select(func.count(), func.max(chunks.c.end_frame)).where(chunks.c.job_id == job.id)
        ).one()
    assert (count, last) == (100_000, domain.chunk_frames(plan, 100_000)[1])


@pytest.mark.parametrize("packet_type", ["frames", "slices", "single", "broadcast"])
def test_sql_chunks_match_the_domain_plan(
    service: JobsService, db: Database, packet_type: str
) -> None:
    spec = dataclasses.replace(SPEC, by_frame=0.5, end_frame=4, packet_size=3)
    job = service.queue.submit_job(dataclasses.replace(spec, packet_type=packet_type))
    plan = domain.plan_chunks(spec, packet_type)
    with db.transaction() as session:
        rows = session.execute(
            select(chunks.c.start_frame, chunks.c.end_frame, chunks.c.slice_index)
            .where(chunks.c.job_id == job.id)
            .order_by(chunks.c.chunk_number)
        ).all()
    assert [tuple(r) for r in rows] == [
        domain.chunk_frames(plan, n) for n in range(1, plan.count + 1)
    ]


def test_submission_publishes_its_event_with_the_actor(service: JobsService, db: Database) -> None:
    job = service.queue.submit_job(SPEC)
    topic, payload = topics(db)[-1]
    assert topic == "job.submitted"
    assert (payload["job_id"], payload["chunks"], payload["actor"]) == (job.id, 10, "dispatcher")


def test_a_job_waits_for_dependencies_until_they_complete(service: JobsService) -> None:
    first = service.queue.submit_job(SPEC)
    second = service.queue.submit_job(dataclasses.replace(SPEC, depend_ids=(first.id,)))
    assert second.status == "waiting_dependencies"
    for chunk in range(1, 11):
        service.chunks.set_chunk_status(first.id, chunk, "completed")
    assert service.queue.get_job(first.id).status == "completed"
    assert service.queue.recompute_status(second.id).status == "queued"


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


def test_deleting_a_folder_with_running_chunks_releases_them_and_keeps_history(
    service: JobsService, db: Database
) -> None:
    folder = service.queue.create_folder(-1, "alice", "shots")
    job = service.queue.submit_job(dataclasses.replace(SPEC, parent_id=folder))
    assign(db, job.id, 2, node_id=3)
    service.queue.delete_job(folder)
    topic, payload = topics(db)[-1]
    assert topic == "job.deleted"
    assert (payload["node_ids"], payload["deleted_ids"]) == ([3], [folder, job.id])
    with pytest.raises(NotFound):
        service.queue.get_job(job.id)
    runs = service.chunks.list_history(job.id, None, 0, "").items
    assert [(r.chunk_number, r.outcome, r.node_name) for r in runs] == [(2, "killed", "node3")]


def test_reinit_ends_running_runs_as_killed_and_numbers_the_next_run_after_them(
    service: JobsService, db: Database
) -> None:
    job = service.queue.submit_job(SPEC)
    assign(db, job.id, 1, node_id=4)
    service.queue.reinit_job(job.id)
    fresh = service.chunks.get_chunk(job.id, 1)
    assert (fresh.status, fresh.runs_count) == ("queued", 1)  # run 1 stays in the history
    assert service.chunks.list_history(job.id, 1, 0, "").items[0].outcome == "killed"
    assert service.queue.get_job(job.id).nodes_working == 0


def test_history_pages_oldest_run_first(service: JobsService, db: Database) -> None:
    job = service.queue.submit_job(SPEC)
    for chunk in (3, 1, 2):
        assign(db, job.id, chunk, node_id=chunk)
    first = service.chunks.list_history(job.id, None, 2, "")
    rest = service.chunks.list_history(job.id, None, 2, first.next_page_token)
    assert [r.chunk_number for r in first.items + rest.items] == [3, 1, 2]
    assert rest.next_page_token == ""


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


def test_an_edit_after_a_chunk_started_keeps_the_chunks_until_reinit(
    service: JobsService, db: Database
) -> None:
    job = service.queue.submit_job(SPEC)
    assign(db, job.id, 1, node_id=1)
    edited = service.queue.update_job(
        job.id, dataclasses.replace(SPEC, end_frame=20), ["end_frame"]
    )
    assert (edited.end_frame, edited.chunks_total) == (20, 10)
    service.queue.reinit_job(job.id)
    assert service.queue.get_job(job.id).chunks_total == 20


def test_restore_parents_recreates_the_missing_folder_chain(service: JobsService) -> None:
    outer = service.queue.create_folder(-1, "alice", "outer")
    inner = service.queue.create_folder(outer, "alice", "inner")
    job = service.queue.submit_job(dataclasses.replace(SPEC, parent_id=inner))
    backup = service.backups.archive_job(job.id, "fail")
    service.queue.delete_job(outer)
    restored = service.backups.restore_job(backup, RESTORE_PARENTS, 0)
    assert service.queue.get_job(restored).parent_id == inner
    assert service.queue.get_job(inner).parent_id == outer
    assert service.queue.get_job(outer).parent_id is None


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
