"""Licence and delay groups: what their check costs the scheduler's tick.

A farm of NODES nodes, half of them busy with live assignments of the
command-line template (template 1000), half idle; a job of NODES / 2 queued
chunks of the same template. Each run times one `Scheduler.tick` that assigns
a chunk to every idle node (batch size NODES), then frees those nodes again
(outside the timer). Ours: template 1000 in a licence group with a cap above
the farm (the check runs in full but holds nothing back, so both ticks do the
same work) and template 1001 in a delay group; peer, in the same run,
alternating: the same tick with no template in any group. The tick's own
noise on a shared machine is larger than the check, so the check alone
(Scheduler._budget: the groups' lock, their counts, the budget) is timed too,
against the tick without groups: its ratio is the check's share of the tick.
"""

from __future__ import annotations

import statistics
import time

from sqlalchemy import text

from bench.common import BENCHMARKS, Row, bench_database, idle_nodes, submit_command_job
from muster_services.core.database import Database
from muster_services.jobs.scheduler import Scheduler
from muster_services.jobs.service import JobsService
from muster_services.jobs.templates import BLENDER_TEMPLATE_ID, COMMAND_LINE_TEMPLATE_ID

NODES = 2_000
RUNS = 31


def _submit(jobs: JobsService, chunks: int) -> int:
    return submit_command_job(jobs, chunks, "licensed")


def _groups(db: Database, on: bool) -> None:
    with db.transaction() as session:
        session.execute(
            text(
                "UPDATE templates SET licenses_group = :lic, max_licenses = :cap"
                " WHERE id = :command_line"
            ),
            {"lic": "bench" if on else "", "cap": 10 * NODES, "command_line": 1000},
        )
        session.execute(
            text("UPDATE templates SET delay_group = :d, delay_seconds = 1 WHERE id = :blender"),
            {"d": "bench-delay" if on else "", "blender": BLENDER_TEMPLATE_ID},
        )


def _free_idle_half(db: Database) -> None:
    """The nodes of the idle half lose their assignments (the busy half keeps theirs)."""
    with db.transaction() as session:
        session.execute(text("DELETE FROM chunk_assignments WHERE node_id % 2 = 0"))


def _timed_tick(db: Database, jobs: JobsService, on: bool) -> float:
    _groups(db, on)
    _free_idle_half(db)
    _submit(jobs, NODES // 2)
    scheduler = Scheduler(db, batch_size=NODES)
    started = time.perf_counter()
    assigned = scheduler.tick()
    elapsed = (time.perf_counter() - started) * 1000
    assert assigned == NODES // 2, assigned
    return elapsed


def _timed_check(db: Database) -> float:
    """The check alone: the groups' lock and states, and the tick's budget
    (in a transaction rolled back after, NODES // 2 live assignments)."""
    _groups(db, True)
    session = db.sessions()
    try:
        started = time.perf_counter()
        budget = Scheduler._budget(session)
        elapsed = (time.perf_counter() - started) * 1000
        assert budget.allowance(COMMAND_LINE_TEMPLATE_ID, NODES) == NODES
        return elapsed
    finally:
        session.rollback()
        session.close()


def run() -> list[Row]:
    with bench_database("bench_licences") as db:
        jobs = JobsService(db)
        jobs.templates.seed_templates()
        idle_nodes(db, NODES)
        # The busy half: live assignments of the command-line template.
        _submit(jobs, NODES // 2)
        with db.transaction() as session:
            session.execute(text("UPDATE nodes SET paused = (id % 2 = 0)"))
        assert Scheduler(db, batch_size=NODES).tick() == NODES // 2
        with db.transaction() as session:
            session.execute(text("UPDATE nodes SET paused = false"))
        _timed_tick(db, jobs, True)  # warm-up, not counted
        _timed_tick(db, jobs, False)
        with_groups: list[float] = []
        without: list[float] = []
        check: list[float] = []
        for i in range(RUNS):
            # Alternating which goes first, so that neither pays the other's after-effects.
            for on in (True, False) if i % 2 else (False, True):
                (with_groups if on else without).append(_timed_tick(db, jobs, on))
            check.append(_timed_check(db))
    return [
        Row(
            f"scheduler tick, {NODES:,} nodes ({NODES // 2:,} busy with chunks of a licence"
            f" group, {NODES // 2:,} idle given a chunk each), licence and delay groups",
            statistics.median(with_groups),
            statistics.median(without),
            "same tick, no template in a group",
            "ms",
        ),
        Row(
            "the licence and delay check alone (groups' lock, counts, budget), same farm",
            statistics.median(check),
            statistics.median(without),
            "the tick with no template in a group",
            "ms",
        ),
    ]


BENCHMARKS["licence groups"] = run
