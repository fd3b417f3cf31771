"""The scheduler's rules, one tick at a time on a real database."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import text

from muster_services.core.database import Database
from muster_services.jobs.domain import Attribute, JobSpec, next_chunk_status
from muster_services.jobs.runs import ChunkRuns, RunEnd
from muster_services.jobs.scheduler import Scheduler
from muster_services.jobs.service import JobsService
from muster_services.jobs.store import READY_CHUNKS, free_nodes, start_tick
from muster_services.jobs.templates import COMMAND_LINE_TEMPLATE_ID
from tests.support import busy_farm, executed, until_lock_wait


@pytest.fixture
def jobs(db: Database) -> JobsService:
    service = JobsService(db)
    service.templates.seed_templates()
    return service


def _node(
    db: Database,
    name: str,
    pools: tuple[str, ...] = (),
    paused: bool = False,
    platform: str = "linux",
) -> int:
    with db.transaction() as session:
        return int(
            session.execute(
                text(
                    "INSERT INTO nodes (name, host_name, platform, status, paused, pools,"
                    " session_id, last_heartbeat_at)"
                    " VALUES (:n, :n, :platform, :s, :p, :pools, 'live', now())"
                    " RETURNING id"
                ),
                {
                    "n": name,
                    "s": "paused" if paused else "idle",
                    "p": paused,
                    "pools": list(pools),
                    "platform": platform,
                },
            ).scalar_one()
        )


def _job(jobs: JobsService, frames: int = 2, **fields: Any) -> int:
    spec = JobSpec(
        name=fields.pop("name", "job"),
        owner="alice",
        start_frame=1,
        **{
            "template_id": COMMAND_LINE_TEMPLATE_ID,
            "attributes": (Attribute("executable", "string", "/bin/true"),),
            "packet_size": 1,
            "end_frame": frames,
            **fields,
        },
    )
    return int(jobs.queue.submit_job(spec).id)


def _assigned(db: Database) -> list[tuple[int, int, int]]:
    with db.transaction() as session:
        return [
            tuple(r)
            for r in session.execute(
                text(
                    "SELECT job_id, chunk_number, node_id FROM chunk_assignments"
                    " ORDER BY job_id, chunk_number"
                )
            ).all()
        ]


def test_higher_priority_first_then_older_and_chunks_in_frame_order(
    db: Database, jobs: JobsService
) -> None:
    low = _job(jobs, priority=10, name="low")
    high = _job(jobs, priority=90, name="high")
    a, b = _node(db, "a"), _node(db, "b")
    assert Scheduler(db).tick() == 2
    assert _assigned(db) == [(high, 1, a), (high, 2, b)]
    with db.transaction() as session:
        status, queued, running = session.execute(
            text("SELECT status, chunks_queued, chunks_running FROM jobs WHERE id = :j"),
            {"j": high},
        ).one()
    assert (status, queued, running) == ("running", 0, 2)
    del low


def test_a_tick_records_one_chunk_started_event_per_assignment_with_its_token(
    db: Database, jobs: JobsService
) -> None:
    """The outbox gets one event per assignment (the activity log, consoles
    and notificators follow it), carrying the run's fencing token, and the
    job's start once."""
    job = _job(jobs, frames=3)
    nodes = [_node(db, f"n{i}") for i in range(3)]
    assert Scheduler(db).tick() == 3
    with db.transaction() as session:
        events = session.execute(text("SELECT topic, key, payload FROM events ORDER BY id")).all()
        tokens: dict[int, int] = {
            int(chunk): int(token)
            for chunk, token in session.execute(
                text("SELECT chunk_number, fencing_token FROM chunk_assignments")
            ).all()
        }
    chunk_events = [e for e in events if e.topic.startswith("chunk.")]
    assert [e.topic for e in chunk_events] == ["chunk.started"] * 3
    assert sorted(
        (e.payload["chunk_id"], e.payload["node_id"], e.payload["fencing_token"], e.key)
        for e in chunk_events
    ) == [(c, n, tokens[c], str(job)) for c, n in zip((1, 2, 3), nodes, strict=True)]
    assert [e.topic for e in events].count("job.started") == 1


def test_a_tick_with_idle_nodes_and_no_job_builds_no_node(db: Database, jobs: JobsService) -> None:
    """An idle farm's tick (woken by any event) stops at the empty job list:
    the free nodes' pools are read and their nodes built only for a job."""
    for n in range(3):
        _node(db, f"idle-{n}")
    with executed(db) as statements:
        assert Scheduler(db).tick() == 0
    assert any("FROM nodes" in s for s in statements)
    assert not any("pool_members" in s for s in statements), statements
    _job(jobs, frames=1)
    assert Scheduler(db).tick() == 1


def test_a_busy_node_is_never_booked_twice_and_a_second_tick_finds_nothing(
    db: Database, jobs: JobsService
) -> None:
    _job(jobs, frames=5)
    _node(db, "a")
    scheduler = Scheduler(db)
    assert scheduler.tick() == 1
    assert scheduler.tick() == 0
    assert len(_assigned(db)) == 1


def test_pools_decide_which_nodes_a_job_may_use(db: Database, jobs: JobsService) -> None:
    gpu_job = _job(jobs, frames=3, included_pools=("gpu",))
    cpu = _node(db, "cpu-1")
    gpu = _node(db, "gpu-1", pools=("GPU",))  # declared by the agent; case does not matter
    member = _node(db, "box-7")
    with db.transaction() as session:
        pool = session.execute(
            text("INSERT INTO pools (name) VALUES ('gpu') RETURNING id")
        ).scalar_one()
        session.execute(
            text("INSERT INTO pool_members (pool_id, node_name) VALUES (:p, 'box-7')"), {"p": pool}
        )
    Scheduler(db).tick()
    assert {node for _, _, node in _assigned(db)} == {gpu, member}
    excluded = _job(jobs, frames=1, excluded_pools=("gpu",), name="not on gpu")
    Scheduler(db).tick()
    assert (excluded, 1, cpu) in _assigned(db)
    del gpu_job


def test_maximum_nodes_paused_jobs_and_paused_nodes(db: Database, jobs: JobsService) -> None:
    capped = _job(jobs, frames=4, max_nodes=1)
    _job(jobs, frames=4, paused=True, name="paused")
    _node(db, "a")
    _node(db, "b")
    _node(db, "z", paused=True)
    Scheduler(db).tick()
    assert [job for job, _, _ in _assigned(db)] == [capped]


def test_a_job_waits_for_its_dependency_by_mode(db: Database, jobs: JobsService) -> None:
    first = _job(jobs, frames=1, priority=1, name="first")
    after_success = _job(jobs, frames=1, depend_ids=(first,), priority=99, name="needs success")
    after_any = _job(
        jobs,
        frames=1,
        depend_ids=(first,),
        depend_mode="completion",
        priority=98,
        name="needs completion",
    )
    node = _node(db, "a")
    scheduler = Scheduler(db)
    scheduler.tick()
    assert _assigned(db) == [(first, 1, node)]
    token = _token(db, first)
    assert ChunkRuns(db).finish(RunEnd(first, 1, token, node, 3, "failed")) == "queued"
    # Requeued, not finished: still blocking.
    scheduler.tick()
    assert [job for job, _, _ in _assigned(db)] == [first]
    with db.transaction() as session:
        session.execute(text("UPDATE jobs SET max_chunk_requeues = 1 WHERE id = :j"), {"j": first})
    assert ChunkRuns(db).finish(RunEnd(first, 1, _token(db, first), node, 3, "failed")) == "failed"
    scheduler.tick()
    # The dependency ended with errors: only the completion-mode job may start.
    assert [job for job, _, _ in _assigned(db)] == [after_any]
    del after_success


def test_a_paused_engine_dispatches_nothing(db: Database, jobs: JobsService) -> None:
    _job(jobs)
    _node(db, "a")
    with db.transaction() as session:
        session.execute(text("UPDATE engine_state SET status = 'paused'"))
    assert Scheduler(db).tick() == 0
    with db.transaction() as session:
        session.execute(text("UPDATE engine_state SET status = 'running'"))
    assert Scheduler(db).tick() == 1


def test_an_excluded_node_gets_no_chunk_of_that_job(db: Database, jobs: JobsService) -> None:
    job = _job(jobs)
    _exclude(db, _node(db, "a"), job, "1 hour")
    assert Scheduler(db).tick() == 0


def _exclude(db: Database, node: int, job: int, for_how_long: str) -> None:
    """Node `node` excluded from `job` until now + `for_how_long` (past if negative)."""
    with db.transaction() as session:
        session.execute(
            text(
                "INSERT INTO node_job_exclusions (node_id, job_id, failures, excluded_until)"
                " VALUES (:n, :j, 3, now() + CAST(:span AS interval))"
            ),
            {"n": node, "j": job, "span": for_how_long},
        )


def test_a_node_excluded_from_a_template_gets_no_job_of_it_and_a_forgiven_one_does(
    db: Database, jobs: JobsService
) -> None:
    job = _job(jobs, frames=3)
    barred, forgiven, free = _node(db, "a"), _node(db, "b"), _node(db, "c")
    with db.transaction() as session:
        session.execute(
            text("INSERT INTO node_template_exclusions (node_id, template_id) VALUES (:n, :t)"),
            {"n": barred, "t": COMMAND_LINE_TEMPLATE_ID},
        )
    _exclude(db, forgiven, job, "-1 second")
    assert Scheduler(db).tick() == 2
    assert {node for _, _, node in _assigned(db)} == {forgiven, free}


def test_a_node_gets_only_jobs_of_templates_enabled_for_its_platform(
    db: Database, jobs: JobsService
) -> None:
    # Template 1012 (3ds Max) is enabled for Windows only.
    max_job = _job(jobs, frames=1, template_id=1012, attributes=_max_scene())
    linux = _node(db, "linux-node")
    assert Scheduler(db).tick() == 0
    windows = _node(db, "windows-node", platform="windows")
    assert Scheduler(db).tick() == 1
    assert _assigned(db) == [(max_job, 1, windows)]
    assert linux != windows


def _max_scene() -> tuple[Attribute, ...]:
    return (Attribute("job_file", "string", "C:\\shows\\a.max"),)


def _token(db: Database, job_id: int) -> int:
    with db.transaction() as session:
        return int(
            session.execute(
                text("SELECT fencing_token FROM chunk_assignments WHERE job_id = :j"), {"j": job_id}
            ).scalar_one()
        )


@pytest.mark.parametrize(
    ("outcome", "follow_up", "after_kill", "requeues", "expected"),
    [
        ("succeeded", "", None, 0, "completed"),
        ("succeeded_with_warnings", "", None, 0, "completed_with_warnings"),
        ("failed", "", None, 0, "queued"),
        ("failed", "", None, 3, "failed"),
        ("timed_out", "", None, 1, "queued"),
        ("lost", "", None, 3, "failed"),
        ("killed", "continue", None, 0, "failed"),
        ("killed", "restart", None, 9, "queued"),
        ("killed", "pause", None, 9, "queued"),
        ("killed", "continue", "hold", 0, "hold"),
    ],
)
def test_what_a_run_s_end_does_to_its_chunk(
    outcome: str, follow_up: str, after_kill: str | None, requeues: int, expected: str
) -> None:
    assert next_chunk_status(outcome, follow_up, after_kill, requeues, 3) == expected


def test_leadership_is_one_process_at_a_time(db: Database) -> None:
    import time

    first, second = Scheduler(db, tick_seconds=0.1), Scheduler(db, tick_seconds=0.1)
    first.start()
    try:
        assert first.is_leader.wait(10)
        second.start()
        time.sleep(0.5)
        assert not second.is_leader.is_set()
        first.stop()
        assert second.is_leader.wait(10)  # the standby takes over
    finally:
        first.stop()
        second.stop()


# --- chunk dependencies ---------------------------------------------------------------


def _token_of(db: Database, job_id: int, chunk: int) -> int:
    with db.transaction() as session:
        return int(
            session.execute(
                text(
                    "SELECT fencing_token FROM chunk_assignments"
                    " WHERE job_id = :j AND chunk_number = :c"
                ),
                {"j": job_id, "c": chunk},
            ).scalar_one()
        )


def _end(jobs: JobsService, db: Database, job_id: int, chunk: int, failed: bool = False) -> str:
    """The run of a live chunk ends: succeeded, or failed for good (killed, go on)."""
    token = _token_of(db, job_id, chunk)
    with db.transaction() as session:
        node = session.execute(
            text("SELECT node_id FROM chunk_assignments WHERE fencing_token = :t"), {"t": token}
        ).scalar_one()
    end = (
        RunEnd(job_id, chunk, token, node, 9, "killed", kill_follow_up="continue")
        if failed
        else RunEnd(job_id, chunk, token, node, 0, "succeeded")
    )
    status = ChunkRuns(db).finish(end)
    assert status == ("failed" if failed else "completed")
    return status


def _status(db: Database, job_id: int) -> str:
    with db.transaction() as session:
        return str(
            session.execute(text("SELECT status FROM jobs WHERE id = :j"), {"j": job_id}).scalar()
        )


def test_a_chunk_starts_once_the_dependency_chunks_with_its_frames_completed(
    db: Database, jobs: JobsService
) -> None:
    # The dependency renders frames 1-6 two per chunk; the dependant one per
    # chunk, so overlap is by frames, not by chunk numbers.
    render = _job(jobs, frames=6, packet_size=2, priority=1, name="render")
    comp = _job(jobs, frames=6, depend_ids=(render,), depend_chunks=True, priority=90, name="comp")
    whole = _job(jobs, frames=6, depend_ids=(render,), priority=99, name="waits for all")
    assert _status(db, comp) == "waiting_dependencies"
    _node(db, "a")
    _node(db, "b")
    scheduler = Scheduler(db)
    scheduler.tick()
    assert [(j, c) for j, c, _ in _assigned(db)] == [(render, 1), (render, 2)]
    _end(jobs, db, render, 2)  # frames 3-4 done; 1-2 still rendering, 5-6 queued
    scheduler.tick()
    assert [(j, c) for j, c, _ in _assigned(db)] == [(render, 1), (comp, 3)]
    assert _status(db, comp) == "running"
    _end(jobs, db, comp, 3)
    scheduler.tick()
    assert [(j, c) for j, c, _ in _assigned(db)] == [(render, 1), (comp, 4)]
    _end(jobs, db, comp, 4)
    # Frames 5-6 are queued in the dependency and 1-2 are running: nothing
    # of the dependant is ready, so the node renders the dependency.
    scheduler.tick()
    assert [(j, c) for j, c, _ in _assigned(db)] == [(render, 1), (render, 3)]
    _end(jobs, db, render, 3)
    scheduler.tick()
    assert [(j, c) for j, c, _ in _assigned(db)] == [(render, 1), (comp, 5)]
    # Without chunk dependencies a job still waits for the whole dependency.
    assert whole not in {j for j, _, _ in _assigned(db)}
    _end(jobs, db, render, 1)
    scheduler.tick()
    assert [(j, c) for j, c, _ in _assigned(db)] == [(comp, 5), (whole, 1)]


def test_a_failed_dependency_chunk_holds_in_success_mode_and_releases_in_completion_mode(
    db: Database, jobs: JobsService
) -> None:
    render = _job(jobs, frames=2, priority=1, name="render")
    strict = _job(
        jobs, frames=2, depend_ids=(render,), depend_chunks=True, priority=99, name="success"
    )
    lenient = _job(
        jobs,
        frames=2,
        depend_ids=(render,),
        depend_chunks=True,
        depend_mode="completion",
        priority=98,
        name="completion",
    )
    _node(db, "a")
    _node(db, "b")
    scheduler = Scheduler(db)
    scheduler.tick()
    _end(jobs, db, render, 1, failed=True)
    _end(jobs, db, render, 2)
    assert _status(db, render) == "completed_with_errors"
    scheduler.tick()
    assert [(j, c) for j, c, _ in _assigned(db)] == [(strict, 2), (lenient, 1)]
    _end(jobs, db, strict, 2)
    _end(jobs, db, lenient, 1)
    scheduler.tick()
    # Frame 1 failed in the dependency: only the completion-mode job renders it.
    assert [(j, c) for j, c, _ in _assigned(db)] == [(lenient, 2)]


def test_a_deleted_dependency_holds_no_chunk_back(db: Database, jobs: JobsService) -> None:
    render = _job(jobs, frames=2, priority=1, name="render")
    comp = _job(jobs, frames=2, depend_ids=(render,), depend_chunks=True, priority=99)
    _node(db, "a")
    scheduler = Scheduler(db)
    scheduler.tick()
    assert [(j, c) for j, c, _ in _assigned(db)] == [(render, 1)]
    jobs.queue.delete_job(render)
    scheduler.tick()
    assert [(j, c) for j, c, _ in _assigned(db)] == [(comp, 1)]


def test_fractional_frames_of_different_steps_are_the_same_frame(
    db: Database, jobs: JobsService
) -> None:
    # 1 + 7 * 0.1 is 1.7000000000000002 in the render, 1 + 0.7 is 1.7 in the comp.
    render = _job(jobs, frames=2, by_frame=0.1, name="render")
    comp = _job(jobs, end_frame=2.4, by_frame=0.7, depend_ids=(render,), depend_chunks=True)
    for chunk in range(1, 12):
        jobs.chunks.set_chunk_status(render, chunk, "hold" if chunk == 8 else "completed")
    for name in ("a", "b", "c"):
        _node(db, name)
    Scheduler(db).tick()
    # Frame 1.7 is held in the render: only frames 1 and 2.4 of the comp go.
    assert [(j, c) for j, c, _ in _assigned(db)] == [(comp, 1), (comp, 3)]


def test_a_tick_reads_only_the_chunks_it_takes_however_long_the_queue(
    db: Database, jobs: JobsService
) -> None:
    """The ready chunks come from the partial index in chunk order, the scan
    stopping after LIMIT rows, even for a job the table's statistics do not
    know yet (the planner would otherwise read and sort all its chunks)."""
    job = _job(jobs, frames=100_000)
    with db.transaction() as session:  # half of it rendered
        session.execute(
            text(
                "UPDATE chunks SET status = 'completed' WHERE job_id = :job"
                " AND chunk_number <= 50000"
            ),
            {"job": job},
        )
    with db.transaction() as session:
        assert start_tick(session)
        plan = "\n".join(
            row[0]
            for row in session.execute(
                text(f"EXPLAIN (ANALYZE, COSTS OFF) {READY_CHUNKS}"), {"job": job, "limit": 500}
            )
        )
    assert "Index Scan using ix_chunks_ready" in plan, plan
    assert "Sort" not in plan and "Bitmap" not in plan, plan
    # Only the rows asked for were read from the index (PostgreSQL 18 prints
    # rows=500.00, earlier versions rows=500).
    assert re.search(r"rows=500(\.00)? ", plan.split("using ix_chunks_ready")[1].split("\n")[0]), (
        plan
    )
    with db.transaction() as session:  # the settings were for that transaction only
        assert session.execute(text("SHOW enable_sort")).scalar() == "on"


def test_a_tick_finds_free_nodes_by_the_assignments_node_key_whatever_the_estimates(
    db: Database, jobs: JobsService
) -> None:
    """The free nodes' read looks each node's live assignment up by its key,
    never by a scan of chunk_assignments per node. On a young farm (tables
    vacuumed, never analysed, a cached plan made while no chunk ran) the
    planner took the idle nodes for a handful and chunk_assignments for
    empty, and compared every node with every live assignment: 1,000 nodes x
    500 assignments, tens of milliseconds to 150 ms a tick. Emulated here by
    making every index probe look dear to the planner."""
    nodes = 1_000
    # Every other node runs one of the job's chunks.
    ids = busy_farm(db, _job(jobs, frames=nodes), nodes, free_every=2, analysed=False)
    with db.transaction() as session:
        assert start_tick(session)
        session.execute(text("SET LOCAL random_page_cost = 1000"))
        with executed(db, explain="FROM nodes n WHERE n.status = 'idle'") as plans:
            free = free_nodes(session, nodes)
    (plan,) = plans
    assert "Seq Scan on chunk_assignments" not in plan, plan
    assert "uq_chunk_assignments_node_id" in plan, plan
    assert [r.id for r in free] == ids[1::2]
    with db.transaction() as session:  # the setting was for that transaction only
        assert session.execute(text("SHOW enable_seqscan")).scalar() == "on"


# --- lock order: no transaction waits in a circle ------------------------------------------


def test_a_job_held_by_a_deletion_is_left_for_the_next_tick_not_waited_for(
    db: Database, jobs: JobsService
) -> None:
    """A deletion holds the job's row and then waits for its chunks: a tick
    that took those chunks and then waited for the row deadlocked with it."""
    held = _job(jobs, name="held", priority=90)
    other = _job(jobs, name="other", priority=10)
    _node(db, "a"), _node(db, "b")
    # The pool outlives the transaction: a tick still waiting for the row
    # when the test fails ends once the transaction rolls back.
    with ThreadPoolExecutor(1) as pool, db.transaction() as deletion:
        deletion.execute(text("SELECT id FROM jobs WHERE id = :j FOR UPDATE"), {"j": held})
        assigned = pool.submit(Scheduler(db).tick).result(timeout=10)
        # The deletion can go on: none of the held job's chunks is locked.
        deletion.execute(
            text("SELECT 1 FROM chunks WHERE job_id = :j FOR UPDATE NOWAIT"), {"j": held}
        )
    assert assigned == 2
    assert {j for j, _, _ in _assigned(db)} == {other}
    assert Scheduler(db).tick() == 0  # no node left; the held job waits its turn


def test_a_deletion_takes_the_assignments_before_the_job(db: Database, jobs: JobsService) -> None:
    """The order a result's transaction takes them in (assignment, chunk, job):
    a deletion that held the job's row and waited for an assignment
    deadlocked with a result holding the assignment."""
    job = _job(jobs, frames=1)
    _node(db, "a")
    assert Scheduler(db).tick() == 1
    token = _token(db, job)
    with ThreadPoolExecutor(1) as pool, db.transaction() as result:
        result.execute(
            text("SELECT 1 FROM chunk_assignments WHERE fencing_token = :t FOR UPDATE"),
            {"t": token},
        )
        deleting = pool.submit(jobs.queue.delete_job, job)
        until_lock_wait(db)
        # The deletion waits for the assignment, and holds the job's row not yet.
        result.execute(text("SELECT 1 FROM jobs WHERE id = :j FOR UPDATE NOWAIT"), {"j": job})
        result.rollback()
        deleting.result(timeout=10)
    assert _assigned(db) == []
