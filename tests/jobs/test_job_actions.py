"""Pre/post job custom actions run by the jobs service (muster_services/jobs/actions.py):
the real consumer on a real database, real shell commands."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select, text

from muster_services.core.bus import DurableConsumer, publish_change
from muster_services.core.caller import Caller, acting_as
from muster_services.core.database import Database
from muster_services.core.errors import PermissionDenied
from muster_services.core.schema import events
from muster_services.jobs import domain, topics
from muster_services.jobs.actions import ACTION_TOPICS, JobActions, job_action_runs
from muster_services.jobs.domain import Attribute
from muster_services.jobs.service import JobsService
from tests.jobs.conftest import SPEC


def consumer(db: Database, service: JobsService) -> DurableConsumer:
    return DurableConsumer(
        db,
        "job-actions",
        JobActions(db, service.queue, timeout=5).handle,
        topics=list(ACTION_TOPICS),
        transactional=False,
    )


def drain_until(events: DurableConsumer, done: Callable[[], bool], seconds: float = 20) -> None:
    """Handle events until `done`: an event another test's transaction (same
    server) holds back under the horizon is read on a later pass."""
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "the events were not handled"
        events.drain()
        time.sleep(0.05)


def submit(service: JobsService, **actions: str) -> int:
    spec = dataclasses.replace(
        SPEC,
        end_frame=1,
        attributes=(*SPEC.attributes, *(Attribute(k, "string", v) for k, v in actions.items())),
    )
    return int(service.queue.submit_job(spec).id)


def complete(db: Database, service: JobsService, job_id: int) -> None:
    service.chunks.set_chunk_status(job_id, 1, "completed")
    assert service.queue.get_job(job_id).status == "completed"


def rows(db: Database, job_id: int) -> list[tuple[str, str, int | None, str]]:
    with db.read_session() as session:
        return [(r.kind, r.status, r.exit_code, r.output) for r in job_action_runs(session, job_id)]


def test_a_post_job_action_runs_once_per_completion_with_its_expressions(
    db: Database, service: JobsService, tmp_path: Path
) -> None:
    out = tmp_path / "done.txt"
    job_id = submit(
        service,
        post_job_action=f"echo %ATTR(job_id) <%= job.getName() %> <%= muster.runningContext() %>"
        f" | tee -a {out}",
    )
    complete(db, service, job_id)
    drain_until(consumer(db, service), out.exists)
    assert out.read_text() == f"{job_id} shot dispatcher\n"
    assert rows(db, job_id) == [("post_job", "succeeded", 0, f"{job_id} shot dispatcher\n")]
    # The same events handled again (a replica that died before storing its
    # position: the next one reads them again): nothing runs twice.
    with db.transaction() as session:
        session.execute(
            text("UPDATE event_consumers SET last_txid = 0, last_id = 0 WHERE name = 'job-actions'")
        )
    again = consumer(db, service)
    drain_until(again, lambda: again.position().id > 0)
    assert out.read_text() == f"{job_id} shot dispatcher\n"
    assert len(rows(db, job_id)) == 1


def test_an_action_a_stopped_replica_was_running_is_marked_interrupted_not_run_again(
    db: Database, service: JobsService, tmp_path: Path
) -> None:
    out = tmp_path / "done.txt"
    job_id = submit(service, post_job_action=f"echo ran >> {out}")
    complete(db, service, job_id)
    actions = JobActions(db, service.queue)
    # What a replica writes before it starts the process; it dies there.
    with db.read_session() as session:
        event_id = session.execute(
            select(events.c.id).where(
                events.c.topic == topics.JOB_COMPLETED,
                events.c.payload["job_id"].as_integer() == job_id,
            )
        ).scalar_one()
    assert actions._start(event_id, job_id, "post_job", "post_job_action") is not None
    drain_until(consumer(db, service), lambda: rows(db, job_id)[0][1] != "running")
    assert not out.exists()
    [(kind, status, code, _)] = rows(db, job_id)
    assert (kind, status, code) == ("post_job", "interrupted", None)


def test_a_failing_pre_job_action_pauses_the_job_and_keeps_its_output(
    db: Database, service: JobsService
) -> None:
    job_id = submit(service, pre_job_action="echo no licence; exit 5")
    expression = submit(service, pre_job_action="echo <%= job.nothing_like_this() %>")
    with db.transaction() as session:
        for started in (job_id, expression):
            publish_change(session, topics.JOB_STARTED, {"job_id": started}, key=str(started))
    drain_until(consumer(db, service), lambda: len(rows(db, expression)) == 1)
    assert rows(db, job_id) == [("pre_job", "failed", 5, "no licence\n")]
    assert service.queue.get_job(job_id).paused
    [(kind, status, code, output)] = rows(db, expression)
    assert (kind, status, code) == ("pre_job", "failed", None)
    assert "Traceback" in output and "nothing_like_this" in output
    assert service.queue.get_job(expression).paused


def test_a_job_without_actions_runs_nothing(db: Database, service: JobsService) -> None:
    job_id = submit(service)
    complete(db, service, job_id)
    events = consumer(db, service)
    drain_until(events, lambda: events.position().id > 0)
    assert rows(db, job_id) == []


def test_only_an_administrator_sets_or_changes_a_job_action(
    db: Database, service: JobsService
) -> None:
    alice = Caller(name="alice", role="user")
    spec = dataclasses.replace(
        SPEC, attributes=(*SPEC.attributes, Attribute("post_job_action", "string", "echo x"))
    )
    with acting_as(alice), pytest.raises(PermissionDenied) as caught:
        service.queue.submit_job(spec)
    assert str(caught.value) == (
        "job.attributes[post_job_action]: caller is alice (user, user); only an administrator"
        " sets a job action (it runs on the dispatcher)"
    )
    with db.read_session() as session:
        assert session.execute(text("SELECT count(*) FROM jobs")).scalar_one() == 0
    # Chunk actions run on the nodes like the render: anyone may set them.
    chunked = dataclasses.replace(
        SPEC, attributes=(*SPEC.attributes, Attribute("pre_chunk_action", "string", "echo x"))
    )
    with acting_as(alice):
        own = service.queue.submit_job(chunked)
    # An administrator's job action stays; alice edits the rest, not the action.
    job_id = submit(service, post_job_action="echo admin")
    with db.transaction() as session:
        session.execute(text("UPDATE jobs SET owner = 'alice' WHERE id = :id"), {"id": job_id})
    with acting_as(alice):
        current = service.queue.get_job(job_id)
        service.queue.update_job(
            job_id, dataclasses.replace(domain.spec_of(current), priority=7), ["priority"]
        )
        changed = dataclasses.replace(
            domain.spec_of(current),
            attributes=tuple(
                Attribute(a.name, a.type, "rm -rf /") if a.name == "post_job_action" else a
                for a in domain.spec_of(current).attributes
            ),
        )
        with pytest.raises(PermissionDenied):
            service.queue.update_job(job_id, changed, ["attributes"])
    assert own.id != job_id
