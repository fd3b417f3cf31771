"""How a run's end changes its chunk and job (muster_services/jobs/runs.py) on a real database."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from muster_services.core.database import Database
from muster_services.jobs.domain import Attribute, JobSpec
from muster_services.jobs.runs import ChunkRuns, RunEnd
from muster_services.jobs.scheduler import Scheduler
from muster_services.jobs.service import JobsService
from muster_services.jobs.templates import COMMAND_LINE_TEMPLATE_ID
from tests.jobs.conftest import configure
from tests.support import executed, until_lock_wait


@pytest.fixture
def jobs(db: Database) -> JobsService:
    service = JobsService(db)
    service.templates.seed_templates()
    return service


def _submit(jobs: JobsService, frames: int) -> int:
    """A job of `frames` one-frame chunks running /bin/true; its id."""
    spec = JobSpec(
        name="job",
        owner="alice",
        template_id=COMMAND_LINE_TEMPLATE_ID,
        start_frame=1,
        end_frame=frames,
        attributes=(Attribute("executable", "string", "/bin/true"),),
    )
    return int(jobs.queue.submit_job(spec).id)


def _live(db: Database) -> dict[int, tuple[int, int]]:
    """chunk -> (fencing token, node) of the live assignments."""
    with db.transaction() as session:
        return {
            int(chunk): (int(token), int(node))
            for chunk, token, node in session.execute(
                text("SELECT chunk_number, fencing_token, node_id FROM chunk_assignments")
            ).all()
        }


@pytest.mark.parametrize("outcome", ["failed", "lost"])
def test_each_call_applies_the_configuration_it_read_not_a_concurrent_call_s(
    db: Database, jobs: JobsService, outcome: str
) -> None:
    """ChunkRuns is shared by the servicer's worker threads. Call A reads the
    configuration (requeues allowed) and waits for its assignment's lock;
    meanwhile the configuration changes (no requeues) and call B applies it.
    A must still apply what it read: its chunk goes back to the queue."""
    job = _submit(jobs, 2)  # max_chunk_requeues 0: the configuration's
    for name in ("a", "b"):
        with db.transaction() as session:
            session.execute(
                text(
                    "INSERT INTO nodes (name, host_name, platform, status, pools, session_id,"
                    " last_heartbeat_at) VALUES (:n, :n, 'linux', 'idle', '{}', 'live', now())"
                ),
                {"n": name},
            )
    assert Scheduler(db).tick() == 2
    live = _live(db)
    configure(db, max_chunk_requeues=5, requeue_chunks_on_disconnection=True)
    runs = ChunkRuns(jobs.db)
    (token_a, node_a), (token_b, node_b) = live[1], live[2]
    with ThreadPoolExecutor(1) as pool, db.transaction() as blocker:
        blocker.execute(
            text("SELECT 1 FROM chunk_assignments WHERE fencing_token = :t FOR UPDATE"),
            {"t": token_a},
        )
        call_a = pool.submit(runs.finish, RunEnd(job, 1, token_a, node_a, 3, outcome))
        until_lock_wait(db)  # A has read its configuration and waits
        configure(db, max_chunk_requeues=0, requeue_chunks_on_disconnection=False)
        assert runs.finish(RunEnd(job, 2, token_b, node_b, 3, outcome)) == "failed"
        blocker.rollback()
        assert call_a.result(timeout=10) == "queued"
    with db.transaction() as session:
        chunks = {
            int(number): str(status)
            for number, status in session.execute(
                text("SELECT chunk_number, status FROM chunks WHERE job_id = :j"), {"j": job}
            ).all()
        }
        counters = session.execute(
            text(
                "SELECT chunks_queued, chunks_running, chunks_failed, requeue_count"
                " FROM jobs WHERE id = :j"
            ),
            {"j": job},
        ).one()
    assert chunks == {1: "queued", 2: "failed"}
    assert tuple(counters) == (1, 0, 1, 1)


def test_the_requeue_rules_are_kept_between_batches_until_the_configuration_changes(
    db: Database, jobs: JobsService
) -> None:
    """The rules are read with the first batch, kept while the configuration
    row is unchanged, and a change applies from the next batch (the locking
    statement returns the row's version, and the configuration when the
    version is not the kept one)."""
    job = _submit(jobs, 3)  # max_chunk_requeues 0: the configuration's
    with db.transaction() as session:
        session.execute(
            text(
                "INSERT INTO nodes (name, host_name, platform, status, pools, session_id,"
                " last_heartbeat_at) SELECT n, n, 'linux', 'idle', '{}', 'live', now()"
                " FROM unnest(ARRAY['a', 'b', 'c']) AS n"
            )
        )
    configure(db, max_chunk_requeues=5)
    assert Scheduler(db).tick() == 3
    live = _live(db)
    runs = ChunkRuns(jobs.db)
    (token_1, node_1), (token_2, node_2), (token_3, node_3) = live[1], live[2], live[3]
    assert runs.finish(RunEnd(job, 1, token_1, node_1, 3, "failed")) == "queued"
    assert runs.rules.reads == 1
    assert runs.finish(RunEnd(job, 2, token_2, node_2, 3, "failed")) == "queued"
    assert runs.rules.reads == 1  # kept: the configuration did not change
    configure(db, max_chunk_requeues=0)
    assert runs.finish(RunEnd(job, 3, token_3, node_3, 3, "failed")) == "failed"
    assert runs.rules.reads == 2
    # A stale report reads nothing and changes nothing.
    assert runs.finish(RunEnd(job, 3, token_3, node_3, 3, "failed")) is None
    assert runs.rules.reads == 2
    with db.transaction() as session:
        statuses = session.execute(
            text("SELECT chunk_number, status FROM chunks WHERE job_id = :j ORDER BY 1"),
            {"j": job},
        ).all()
    assert [tuple(r) for r in statuses] == [(1, "queued"), (2, "queued"), (3, "failed")]


def test_releasing_one_token_ends_only_that_live_assignment_of_the_node(
    db: Database, jobs: JobsService
) -> None:
    """An agent that registered without its assignment: that assignment (by its
    token) ends as lost; a token no longer live (the run ended meanwhile and
    the node has a newer one) releases nothing."""
    job = _submit(jobs, 2)
    with db.transaction() as session:
        session.execute(
            text(
                "INSERT INTO nodes (name, host_name, platform, status, pools, session_id,"
                " last_heartbeat_at) VALUES ('a', 'a', 'linux', 'idle', '{}', 'live', now())"
            )
        )
    assert Scheduler(db).tick() == 1
    [(token, node)] = _live(db).values()
    runs = ChunkRuns(jobs.db)
    assert runs.release_node(node, "new agent", token + 1) == []  # not live: nothing
    assert runs.release_node(node, "new agent", 2**64 - 1) == []  # never issued
    assert _live(db) == {1: (token, node)}
    assert runs.release_node(node, "new agent", token) == [(job, 1, "queued")]
    assert _live(db) == {}
    with db.transaction() as session:
        run = session.execute(
            text("SELECT run_number, outcome, message, node_name FROM chunk_runs")
        ).one()
    assert tuple(run) == (1, "lost", "new agent", "a")


def test_a_result_batch_reads_only_its_own_rows_however_long_the_history(
    db: Database, jobs: JobsService
) -> None:
    """The batch's history rows and chunks are found by their keys: no scan
    of the history or of the job's chunks, which grow with every result.
    Left to itself the planner joined the batch's rows (it cannot tell how
    many a jsonb_to_recordset gives) to a full scan of chunk_runs or chunks
    until those tables were large enough to make the index cheaper: each
    batch then cost in proportion to the history."""
    done, live = 6_000, 100
    job = _submit(jobs, done + live)
    with db.transaction() as session:
        session.execute(
            text(
                "INSERT INTO chunk_runs (job_id, chunk_number, run_number, node_id, fencing_token,"
                " start_frame, end_frame, ended_at, exit_code, outcome)"
                " SELECT :job, g, 1, 1, nextval('fencing_tokens'), g, g, now(), 0, 'succeeded'"
                " FROM generate_series(1, :done) g"
            ),
            {"job": job, "done": done},
        )
        session.execute(
            text(
                "UPDATE chunks SET status = 'completed', runs_count = 1"
                " WHERE job_id = :job AND chunk_number <= :done"
            ),
            {"job": job, "done": done},
        )
        session.execute(
            text(
                "INSERT INTO nodes (name, host_name, platform, status, pools, session_id,"
                " last_heartbeat_at) SELECT 'n' || g, 'n' || g, 'linux', 'idle', '{}', 'live',"
                " now() FROM generate_series(1, :live) g"
            ),
            {"live": live},
        )
        session.execute(text("ANALYZE chunk_runs"))
        session.execute(text("ANALYZE chunks"))
    assert Scheduler(db).tick() == live
    with executed(db, explain="UPDATE chunk_runs") as plans:
        ends = [
            RunEnd(job, chunk, token, node, 0, "succeeded")
            for chunk, (token, node) in _live(db).items()
        ]
        assert ChunkRuns(db).finish_many(ends) == ["completed"] * live
    (plan,) = plans
    assert "Seq Scan on chunk_runs" not in plan, plan
    with db.transaction() as session:
        version = int(session.execute(text("SHOW server_version_num")).scalar_one())
    # The chunks by both key columns' arrays: PostgreSQL 17 and later search
    # the primary key with the two arrays at once; earlier versions cost it
    # as one search per pair and may still scan a small table.
    if version >= 170000:
        assert "Seq Scan on chunks" not in plan, plan
