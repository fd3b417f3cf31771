"""The nodes' rows under concurrent batches, on a real database."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from muster_services.core.database import Database
from muster_services.jobs.service import JobsService
from muster_services.nodes import store as repo
from tests.jobs.conftest import SPEC
from tests.support import busy_farm, executed, until_lock_wait


def _nodes(db: Database, count: int) -> list[int]:
    with db.transaction() as session:
        return [
            int(
                session.execute(
                    text(
                        "INSERT INTO nodes (name, host_name, platform, status, session_id,"
                        " last_heartbeat_at) VALUES (:n, :n, 'linux', 'rendering', 'old', now())"
                        " RETURNING id"
                    ),
                    {"n": f"order-{i}"},
                ).scalar_one()
            )
            for i in range(count)
        ]


def _in_transaction(db: Database, batch: Callable[[Session], Any]) -> None:
    with db.transaction() as session:
        batch(session)


def test_batches_lock_nodes_in_id_order(db: Database) -> None:
    """Heartbeats, results and failed results each change many nodes' rows at once;
    each locking them in its own order deadlocked under load. A batch stuck on
    a row holds none of the rows after it."""
    first, middle, last = _nodes(db, 3)
    batches = {
        "heartbeats": lambda s: repo.touch_heartbeats(
            s, "replica", {last: "new", first: "new", middle: "new"}
        ),
        "results": lambda s: repo.release_rendering(s, [last, first, middle]),
        "failures held": lambda s: repo.hold_rendering(s, [last, first, middle]),
    }
    for name, batch in batches.items():
        with ThreadPoolExecutor(1) as pool, db.transaction() as other:
            other.execute(text("SELECT 1 FROM nodes WHERE id = :n FOR UPDATE"), {"n": middle})

            running = pool.submit(_in_transaction, db, batch)
            until_lock_wait(db)
            # Stuck on the middle row, the batch has not touched the last one.
            assert other.execute(
                text("SELECT 1 FROM nodes WHERE id = :n FOR UPDATE NOWAIT"), {"n": last}
            ).scalar_one(), name
            other.rollback()
            running.result(timeout=10)


def test_a_lost_node_whose_agent_still_runs_a_chunk_comes_back_rendering_not_idle(
    db: Database,
) -> None:
    """The sweep released its chunk; its agent, alive after all, still runs it:
    the node must not look free (a new chunk would be refused: "instance
    busy") until that process is killed and its result came."""
    busy, free = _nodes(db, 2)
    with db.transaction() as session:
        session.execute(text("UPDATE nodes SET status = 'offline', session_id = NULL"))
        revived = repo.touch_heartbeats(session, "replica", {busy: "s1", free: "s2"}, {busy})
        statuses = {
            int(i): str(s) for i, s in session.execute(text("SELECT id, status FROM nodes")).all()
        }
    assert sorted(revived) == sorted([busy, free])
    assert statuses == {busy: "rendering", free: "idle"}


def test_a_batch_of_results_finds_its_kill_follow_ups_by_index_however_many_commands(
    db: Database,
) -> None:
    """The relay reads the kill follow-ups of every batch of results; the
    commands are never pruned, so a scan of them would cost each batch in
    proportion to every command the farm was ever sent."""
    (node,) = _nodes(db, 1)
    with db.transaction() as session:
        session.execute(
            text(
                "INSERT INTO node_commands (node_id, kind, payload)"
                " SELECT :node, CASE WHEN g % 2 = 0 THEN 'kill_process' ELSE 'pause' END,"
                " jsonb_build_object('fencing_token', g, 'follow_up',"
                " CASE WHEN g % 4 = 0 THEN 'requeue' ELSE 'continue' END)"
                " FROM generate_series(1, 20000) g"
            ),
            {"node": node},
        )
        session.execute(text("ANALYZE node_commands"))
    with executed(db, explain="FROM node_commands") as plans, db.transaction() as session:
        found = repo.kill_follow_ups(session, [4, 6, 7, 10**9])
    assert found == {4: "requeue", 6: "continue"}
    (plan,) = plans
    assert "ix_node_commands_kill_token" in plan, plan


def test_the_idle_nodes_of_a_batch_are_found_by_key_on_a_large_farm(db: Database) -> None:
    """Which nodes of a batch of results hold no new assignment: read as NOT
    EXISTS, the planner hashed every live assignment of the farm for each
    batch; each node's assignment is now looked up by key."""
    jobs = JobsService(db)
    jobs.templates.seed_templates()
    job_id = int(jobs.queue.submit_job(dataclasses.replace(SPEC, end_frame=3_000)).id)
    nodes = busy_farm(db, job_id, 3_000)
    batch = nodes[:400]
    with executed(db, explain="FROM nodes n") as plans, db.transaction() as session:
        idle = repo.idle_of(session, batch)
    assert idle == sorted(n for i, n in enumerate(batch, start=1) if i % 10 == 0)
    (plan,) = plans
    assert "Seq Scan on chunk_assignments" not in plan, plan
