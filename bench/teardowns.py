"""Teardowns: what a result batch waits while a big running job is deleted or
reinitialised (muster_services/jobs/teardowns.py).

A job of N one-frame chunks with 200 of them running, beside another job
with 200 running chunks (400 idle nodes, the real scheduler's ticks). Ours:
a batch of 51 results (one of the big job's runs, 50 of the other job's)
sent 50 ms after `jobDelete` or `jobReinit` of the big job began, in
milliseconds until the jobs service has recorded it. Peer, in the same run
on the same rows: a batch of 50 of the other job's results with no teardown
under way. A ratio near 1 is no stall; before the teardowns ran in two
transactions, the batch waited for the whole teardown (docs/render-loop.md,
"Deletions and reinits in two steps"). The teardown's own time is a row of
its own.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

from sqlalchemy import text

from bench.common import BENCHMARKS, Row, bench_database, idle_nodes, submit_command_job
from muster_services.core.database import Database
from muster_services.jobs.runs import ChunkRuns, RunEnd
from muster_services.jobs.scheduler import Scheduler
from muster_services.jobs.service import JobsService

SIZES = (100_000, 1_000_000)
RUNS = 3
RUNNING = 200
BATCH = 50
# The batch goes this long after the teardown began (it is under way then).
DELAY_SECONDS = 0.05


def _ends(db: Database, job_id: int, count: int) -> list[RunEnd]:
    with db.transaction() as session:
        rows = session.execute(
            text(
                "SELECT job_id, chunk_number, fencing_token, node_id FROM chunk_assignments"
                " WHERE job_id = :j ORDER BY fencing_token LIMIT :n"
            ),
            {"j": job_id, "n": count},
        ).all()
    return [
        RunEnd(int(r.job_id), int(r.chunk_number), int(r.fencing_token), int(r.node_id), 0,
               "succeeded")
        for r in rows
    ]  # fmt: skip


def _timed(work: Any, *args: Any) -> float:
    started = time.perf_counter()
    work(*args)
    return (time.perf_counter() - started) * 1000


def _once(db: Database, jobs: JobsService, chunks: int, action: str) -> tuple[float, float, float]:
    """(batch during the teardown, batch alone, the teardown), milliseconds."""
    big = submit_command_job(jobs, chunks, "big", priority=90, max_nodes=RUNNING)
    other = submit_command_job(jobs, 10_000, "other", priority=10)
    with db.transaction() as session:
        session.execute(text("ANALYZE"))
    scheduler = Scheduler(db)
    while scheduler.tick():
        pass
    runs = ChunkRuns(db)
    others = _ends(db, other, 2 * BATCH)
    alone = _timed(runs.finish_many, others[:BATCH])
    teardown = jobs.queue.delete_job if action == "delete" else jobs.queue.reinit_job
    took: list[float] = []
    worker = threading.Thread(target=lambda: took.append(_timed(teardown, big)))
    batch = _ends(db, big, 1) + others[BATCH:]
    worker.start()
    time.sleep(DELAY_SECONDS)
    during = _timed(runs.finish_many, batch)
    worker.join()
    with db.transaction() as session:
        session.execute(text("DELETE FROM jobs"))
        session.execute(text("TRUNCATE chunk_runs, chunk_run_logs, events"))
    return during, alone, took[0]


def run() -> list[Row]:
    rows: list[Row] = []
    with bench_database("bench_teardowns", pool_size=8) as db:
        jobs = JobsService(db)
        jobs.templates.seed_templates()
        idle_nodes(db, 2 * RUNNING)
        for chunks in SIZES:
            for action, name in (("delete", "jobDelete"), ("reinit", "jobReinit")):
                figures = [_once(db, jobs, chunks, action) for _ in range(RUNS)]
                during, alone, took = (statistics.median(f) for f in zip(*figures, strict=True))
                what = f"{name} of a running job of {chunks:,} chunks"
                print(f"  {what}: batch {during:.1f} ms (alone {alone:.1f}), itself {took:.0f} ms")
                rows.append(
                    Row(
                        f"result batch ({BATCH + 1}) sent during {what}",
                        during,
                        alone,
                        f"a batch of {BATCH} with no teardown under way",
                        "ms",
                    )
                )
                rows.append(Row(f"{what}: the {action} itself", took, None, "-", "ms"))
    return rows


BENCHMARKS["teardowns"] = run
