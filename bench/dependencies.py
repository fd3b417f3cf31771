"""Chunk dependencies: what finding a waiting job's ready chunks costs the scheduler.

A render of N one-frame chunks half done (plus 20 chunks running at the
boundary) and a comp of N one-frame chunks depending on it chunk by chunk, its
first N/2 - 100 chunks done: "some ready" leaves 100 comp chunks whose frames
are rendered, "none ready" none. Ours is `Scheduler._ready_chunks` for the comp
(the multirange statement, limit 32), run in a transaction rolled back each
time. Peers, measured in the same run on the same rows: the plain
queued-chunks query a job without chunk dependencies takes, and the pairwise
`NOT EXISTS` formulation the multirange replaces. The last rows time a whole
scheduling pass (`Scheduler.tick`, 10 idle nodes, the render paused so
nothing is assigned) with the comp depending chunk by chunk, against the same
pass with the comp depending on the whole render (it is skipped at once).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import bindparam, text

from bench.common import BENCHMARKS, Row, bench_database, median_of, submit_command_job
from muster_services.core.database import Database
from muster_services.jobs.domain import CandidateJob
from muster_services.jobs.scheduler import Scheduler
from muster_services.jobs.service import JobsService

SIZES = (1_000, 10_000)
RUNS = 9
LIMIT = 32

PAIRWISE = text(
    "SELECT c.* FROM chunks c WHERE c.job_id = :job AND c.status = 'queued'"
    " AND NOT EXISTS (SELECT 1 FROM chunks d WHERE d.job_id IN :waiting"
    " AND d.status NOT IN ('completed', 'completed_with_warnings', 'skipped')"
    " AND d.start_frame <= c.end_frame + 1e-9 AND d.end_frame >= c.start_frame - 1e-9)"
    " ORDER BY c.chunk_number LIMIT :limit FOR UPDATE OF c SKIP LOCKED"
).bindparams(bindparam("waiting", expanding=True))


def _submit(jobs: JobsService, name: str, frames: int, **fields: Any) -> int:
    return submit_command_job(jobs, frames, name, **fields)


def _timed(db: Database, work: Callable[[Any], object]) -> float:
    """Milliseconds of `work(session)` in a transaction rolled back after."""
    with db.transaction() as session:
        started = time.perf_counter()
        work(session)
        elapsed = time.perf_counter() - started
        session.rollback()
    return elapsed * 1000


def _farm(db: Database, frames: int) -> tuple[int, int, int]:
    """(render, comp by chunk, comp of the whole render) as the docstring says."""
    jobs = JobsService(db)
    jobs.templates.seed_templates()
    render = _submit(jobs, "render", frames)
    comp = _submit(jobs, "comp", frames, depend_ids=(render,), depend_chunks=True, priority=9)
    whole = _submit(jobs, "comp whole", frames, depend_ids=(render,), priority=9)
    half = frames // 2
    with db.transaction() as session:
        for sql, values in (
            ("UPDATE chunks SET status = 'completed' WHERE job_id = :j AND chunk_number <= :n",
             {"j": render, "n": half}),
            ("UPDATE chunks SET status = 'running' WHERE job_id = :j"
             " AND chunk_number BETWEEN :n - 10 AND :n + 10", {"j": render, "n": half}),
            ("UPDATE chunks SET status = 'completed' WHERE job_id IN (:c, :w)"
             " AND chunk_number <= :n", {"c": comp, "w": whole, "n": half - 100}),
            ("UPDATE jobs SET paused = true WHERE id = :j", {"j": render}),
        ):  # fmt: skip
            session.execute(text(sql), values)
        for n in range(10):
            session.execute(
                text(
                    "INSERT INTO nodes (name, host_name, platform, status, session_id,"
                    " last_heartbeat_at) VALUES (:n, :n, 'linux', 'idle', 'live', now())"
                ),
                {"n": f"bench-{frames}-{n}"},
            )
        session.execute(text("ANALYZE chunks"))
    return render, comp, whole


def _rows(db: Database, frames: int) -> list[Row]:
    render, comp, whole = _farm(db, frames)
    waiting = CandidateJob(comp, None, [], [], 0, 0, "success", True, True, {render: "running"})
    plain = CandidateJob(comp, None, [], [], 0, 0, "success", False, True)

    def ready(session: Any) -> object:
        return Scheduler._ready_chunks(session, waiting, [render], LIMIT)

    def ordinary(session: Any) -> object:
        return Scheduler._ready_chunks(session, plain, [], LIMIT)

    def pairwise(session: Any) -> object:
        return session.execute(PAIRWISE, {"job": comp, "waiting": [render], "limit": LIMIT}).all()

    size = f"{frames:,} x {frames:,}"
    rows: list[Row] = []
    for case in ("some ready", "none ready"):
        if case == "none ready":  # the 100 ready comp chunks are taken
            with db.transaction() as session:
                session.execute(
                    text(
                        "UPDATE chunks SET status = 'completed' WHERE job_id = :c"
                        " AND chunk_number <= :n"
                    ),
                    {"c": comp, "n": frames // 2 - 11},
                )
        ours = median_of(RUNS, lambda: _timed(db, ready))
        rows.append(
            Row(
                f"ready chunks, {size}, {case}",
                ours,
                median_of(RUNS, lambda: _timed(db, ordinary)),
                "plain query (no chunk dependencies)",
                "ms",
            )
        )
        rows.append(
            Row(
                f"ready chunks, {size}, {case}",
                ours,
                median_of(3, lambda: _timed(db, pairwise)),
                "pairwise NOT EXISTS",
                "ms",
            )
        )
    scheduler = Scheduler(db)
    by_chunk = median_of(RUNS, lambda: _timed_tick(scheduler))
    with db.transaction() as session:
        session.execute(text("UPDATE jobs SET depend_chunks = false WHERE id = :c"), {"c": comp})
    rows.append(
        Row(
            f"scheduling pass, {size}, none ready",
            by_chunk,
            median_of(RUNS, lambda: _timed_tick(scheduler)),
            "same pass, whole-job dependency",
            "ms",
        )
    )
    with db.transaction() as session:
        session.execute(text("DELETE FROM jobs"))
        session.execute(text("DELETE FROM nodes"))
    del whole
    return rows


def _timed_tick(scheduler: Scheduler) -> float:
    started = time.perf_counter()
    assert scheduler.tick() == 0  # the render is paused and no comp chunk is ready
    return (time.perf_counter() - started) * 1000


def run() -> list[Row]:
    rows: list[Row] = []
    with bench_database("bench_dependencies") as db:
        for frames in SIZES:
            rows.extend(_rows(db, frames))
    return rows


BENCHMARKS["chunk dependencies"] = run
