"""Deletions and reinits in two transactions (muster_services/jobs/teardowns.py):
the first, short one releases the job's live chunks and marks its jobs; the
second deletes the rows or rebuilds the chunks, and no render-loop statement
waits for it.

Found by the render bench (docs/render-loop.md, "Deletions and reinits in two steps"):
deleting a running job of 100,000 chunks held its released assignments for
the whole deletion (3.75 s), and the result batch that carried one of their
results kept every node's result waiting behind it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from muster_services.core.database import Database
from muster_services.core.errors import NotFound
from muster_services.jobs.common import job
from muster_services.jobs.runs import ChunkRuns, RunEnd, report_progress
from muster_services.jobs.scheduler import Scheduler
from muster_services.jobs.service import JobsService
from muster_services.jobs.teardowns import (
    begin_deletion,
    begin_reinit,
    finish_teardown,
    finish_teardowns,
)
from tests.jobs.conftest import assign, topics
from tests.jobs.test_scheduler import _assigned, _job, _node, _token
from tests.support import until_lock_wait


def _begin(db: Database, job_id: int, action: str = "delete") -> None:
    """A teardown's first transaction alone: a process that died after it."""
    with db.transaction() as session:
        row = job(session, job_id, lock=True)
        if action == "delete":
            begin_deletion(session, row, archived=False)
        else:
            begin_reinit(session, row)


def _statuses(db: Database, job_id: int) -> list[str]:
    with db.transaction() as session:
        rows = session.execute(
            text("SELECT status FROM chunks WHERE job_id = :j ORDER BY chunk_number"), {"j": job_id}
        )
        return [str(r) for r in rows.scalars()]


def _outcomes(service: JobsService, job_id: int) -> list[tuple[int, str]]:
    runs = service.chunks.list_history(job_id, None, 0, "").items
    return sorted((r.chunk_number, r.outcome) for r in runs)


@pytest.mark.parametrize("action", ["delete", "reinit"])
def test_results_progress_and_ticks_go_on_while_a_teardown_holds_its_rows(
    db: Database, service: JobsService, action: str
) -> None:
    doomed = _job(service, frames=4, name="doomed", priority=90, max_nodes=1)
    other = _job(service, frames=4, name="other", priority=10)
    a, b = _node(db, "a"), _node(db, "b")
    assert Scheduler(db).tick() == 2
    doomed_token, other_token = _token(db, doomed), _token(db, other)
    runs = ChunkRuns(db)
    # The pools outlive the transaction: a call still waiting when the test
    # fails ends once the transaction rolls back.
    with ThreadPoolExecutor(3) as pool, db.transaction() as reader:
        # A reader of one of the doomed job's queued chunks: the teardown's
        # second transaction waits for it, holding what it has deleted.
        reader.execute(
            text("SELECT 1 FROM chunks WHERE job_id = :j AND chunk_number = 4 FOR KEY SHARE"),
            {"j": doomed},
        )
        teardown = service.queue.delete_job if action == "delete" else service.queue.reinit_job
        deleting = pool.submit(teardown, doomed)
        until_lock_wait(db)
        # One result batch with a run of each job: the doomed job's was
        # released by the teardown (stale), the other's is recorded.
        ended = pool.submit(
            runs.finish_many,
            [
                RunEnd(doomed, 1, doomed_token, a, 0, "succeeded"),
                RunEnd(other, 1, other_token, b, 0, "succeeded"),
            ],
        ).result(timeout=10)
        assert ended == [None, "completed"]
        # A late progress report of the released run matches nothing.
        progress = pool.submit(report_progress, db, [(doomed, 1, doomed_token, 50.0)])
        assert progress.result(timeout=10) == 0
        # Nodes a and b are free: the tick gives them the other job's chunks,
        # never the doomed job's (it would wait for the teardown).
        assert pool.submit(Scheduler(db).tick).result(timeout=10) == 2
        assert {j for j, _, _ in _assigned(db)} == {other}
        assert not deleting.done()
        reader.rollback()
        deleting.result(timeout=10)
    topic, payload = topics(db)[-1]
    assert (topic, payload["job_id"], payload["node_ids"]) == (
        {"delete": "job.deleted", "reinit": "job.reinit"}[action],
        doomed,
        [a],
    )
    assert _outcomes(service, doomed) == [(1, "killed")]
    if action == "delete":
        with pytest.raises(NotFound):
            service.queue.get_job(doomed)
    else:
        assert _statuses(db, doomed) == ["queued"] * 4
    with db.transaction() as session:
        assert session.execute(text("SELECT count(*) FROM job_teardowns")).scalar_one() == 0


def test_a_deletion_whose_process_died_between_its_transactions_is_finished(
    db: Database, service: JobsService
) -> None:
    doomed = _job(service, frames=3, name="doomed")
    a = _node(db, "a")
    assert Scheduler(db).tick() == 1
    _begin(db, doomed)
    # Still there (its second transaction never came), and given nothing.
    assert service.queue.get_job(doomed).id == doomed
    _node(db, "b")
    assert Scheduler(db).tick() == 0
    # Too young to be taken for a dead process's: its own may be finishing it.
    assert finish_teardowns(db, grace_seconds=3600) == 0
    assert finish_teardowns(db, grace_seconds=0) == 1
    with pytest.raises(NotFound):
        service.queue.get_job(doomed)
    deleted = [p for t, p in topics(db) if t == "job.deleted"]
    assert [(p["job_id"], p["node_ids"], p["job"]["name"]) for p in deleted] == [
        (doomed, [a], "doomed")
    ]
    assert "actor" in deleted[0]  # who deleted it, stamped by the first transaction
    assert _outcomes(service, doomed) == [(1, "killed")]
    assert finish_teardowns(db, grace_seconds=0) == 0


def test_a_chunk_given_between_the_two_transactions_is_released_with_the_rest(
    db: Database, service: JobsService
) -> None:
    folder = service.queue.create_folder(-1, "alice", "shots")
    doomed = _job(service, frames=3, name="doomed", parent_id=folder)
    _begin(db, folder)
    # What a tick that read the job before the deletion began writes after it.
    assign(db, doomed, 2, node_id=7)
    assert finish_teardown(db, "delete", folder)
    topic, payload = topics(db)[-1]
    assert (topic, payload["deleted_ids"], payload["node_ids"]) == (
        "job.deleted",
        [folder, doomed],
        [7],
    )
    assert _outcomes(service, doomed) == [(2, "killed")]
    assert not finish_teardown(db, "delete", folder)  # over: nothing left to do


def test_deleting_again_after_a_process_died_finishes_the_first_deletion(
    db: Database, service: JobsService
) -> None:
    doomed = _job(service, frames=2, name="doomed")
    _begin(db, doomed)
    service.queue.delete_job(doomed)  # the user tries again
    with pytest.raises(NotFound):
        service.queue.get_job(doomed)
    assert [p["job_id"] for t, p in topics(db) if t == "job.deleted"] == [doomed]


def test_a_reinit_whose_process_died_between_its_transactions_is_finished(
    db: Database, service: JobsService
) -> None:
    redo = _job(service, frames=3, name="redo")
    a = _node(db, "a")
    assert Scheduler(db).tick() == 1
    _begin(db, redo, "reinit")
    assert Scheduler(db).tick() == 0  # marked: given nothing until it is done
    assert finish_teardowns(db, grace_seconds=0) == 1
    topic, payload = topics(db)[-1]
    assert (topic, payload["job_ids"], payload["node_ids"]) == ("job.reinit", [redo], [a])
    assert _statuses(db, redo) == ["queued"] * 3
    assert _outcomes(service, redo) == [(1, "killed")]
    assert Scheduler(db).tick() == 1  # its chunks go out again


def test_a_deletion_takes_over_a_reinit_left_half_done(db: Database, service: JobsService) -> None:
    redo = _job(service, frames=2, name="redo")
    _begin(db, redo, "reinit")
    service.queue.delete_job(redo)
    with pytest.raises(NotFound):
        service.queue.get_job(redo)
    assert finish_teardowns(db, grace_seconds=0) == 0
    assert [t for t, _ in topics(db) if t in ("job.deleted", "job.reinit")] == ["job.deleted"]
