"""The queue's use cases (muster_services/jobs/queue.py) on a real database: chunks
in bulk at submission, dependencies, deletion and reinit around live
assignments, edits, and the onValidateJobSubmission rule."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import func, select

from muster_services.core.database import Database
from muster_services.core.errors import FailedPrecondition, NotFound
from muster_services.jobs import domain
from muster_services.jobs.domain import JobSpec
from muster_services.jobs.service import JobsService
from muster_services.jobs.tables import chunks, jobs
from tests.jobs.conftest import SPEC, assign, topics

pytestmark = pytest.mark.database


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


def test_a_refused_submission_writes_nothing_and_says_why(db: Database) -> None:
    seen: list[JobSpec] = []

    def studio_rule(spec: JobSpec) -> str | None:  # what a hook would say
        seen.append(spec)
        return "job names start with 'shot'" if not spec.name.startswith("shot") else None

    service = JobsService(db, studio_rule)
    service.templates.seed_templates()
    lighting = dataclasses.replace(SPEC, name="lighting")
    with pytest.raises(FailedPrecondition) as refused:
        service.queue.submit_job(lighting, "request-1")
    assert str(refused.value) == ("refused by onValidateJobSubmission: job names start with 'shot'")
    with db.transaction() as session:
        assert session.execute(select(func.count()).select_from(jobs)).scalar_one() == 0
        assert session.execute(select(func.count()).select_from(chunks)).scalar_one() == 0
    assert topics(db) == []
    accepted = service.queue.submit_job(SPEC, "request-2")
    assert (accepted.name, accepted.chunks_total) == ("shot", 10)
    assert seen == [lighting, SPEC]  # the rule judges the job as proposed


def test_folders_are_not_submissions_the_rule_judges(db: Database) -> None:
    def refuse_everything(spec: JobSpec) -> str | None:
        return "nothing today"

    service = JobsService(db, refuse_everything)
    folder = service.queue.create_folder(-1, "alice", "shots")
    assert service.queue.get_job(folder).kind == "folder"
    with pytest.raises(FailedPrecondition, match="nothing today"):
        service.queue.submit_job(dataclasses.replace(SPEC, parent_id=folder))
