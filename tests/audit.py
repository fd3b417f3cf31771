"""The history is the audit trail: runs of one chunk never overlap in time.

Every process start is a run (a `chunk_runs` row with its own run number);
a chunk never has two live processes, so two runs of one chunk never
overlap. A run still running has no end yet: it counts as running until now.
The same query is in docs/render-loop.md ("The history is the audit trail").
"""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import text

from muster_services.core.database import Database

OVERLAPPING_RUNS = """
SELECT a.job_id, a.chunk_number,
       a.run_number AS first_run, b.run_number AS second_run,
       a.node_name AS first_node, b.node_name AS second_node,
       a.started_at AS first_started, coalesce(a.ended_at, now()) AS first_ended,
       b.started_at AS second_started, coalesce(b.ended_at, now()) AS second_ended
FROM chunk_runs a
JOIN chunk_runs b
  ON b.job_id = a.job_id AND b.chunk_number = a.chunk_number
 AND b.run_number > a.run_number
WHERE b.started_at < coalesce(a.ended_at, now())
  AND a.started_at < coalesce(b.ended_at, now())
ORDER BY a.job_id, a.chunk_number, a.run_number, b.run_number
"""


class Overlap(NamedTuple):
    job_id: int
    chunk_number: int
    first_run: int
    second_run: int
    first_node: str
    second_node: str
    first_started: Any
    first_ended: Any
    second_started: Any
    second_ended: Any


def overlapping_runs(db: Database | str) -> list[Overlap]:
    """Pairs of runs of one chunk that overlap in time (none, when the
    dispatcher keeps its promise); `db`: a Database or a database URL."""
    if isinstance(db, str):
        database = Database(db, pool_size=1)
        try:
            return overlapping_runs(database)
        finally:
            database.dispose()
    with db.read_session() as session:
        return [Overlap(*row) for row in session.execute(text(OVERLAPPING_RUNS)).all()]
