"""The database audit run after hostile input: SQL queries that each list
the rows breaking one invariant of the queue. A consistent queue answers
every query with no row."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from muster_services.core.database import Database

# Mirrors muster_services/jobs/domain.py's buckets (counters_of).
_BUCKET = """
    CASE
        WHEN c.status IN ('queued', 'waiting_dependencies') THEN 'queued'
        WHEN c.status IN ('assigned', 'running') THEN 'running'
        WHEN c.status IN ('completed', 'completed_with_warnings', 'skipped') THEN 'completed'
        WHEN c.status = 'failed' THEN 'failed'
    END
"""

AUDIT: dict[str, str] = {
    "chunk without a job": """
        SELECT c.job_id, c.chunk_number FROM chunks c
        LEFT JOIN jobs j ON j.id = c.job_id WHERE j.id IS NULL
    """,
    "chunk of a folder": """
        SELECT c.job_id, c.chunk_number FROM chunks c
        JOIN jobs j ON j.id = c.job_id WHERE j.kind = 'folder'
    """,
    "job inside a job (parent is not a folder)": """
        SELECT j.id, j.parent_id FROM jobs j
        JOIN jobs p ON p.id = j.parent_id WHERE p.kind <> 'folder'
    """,
    "job whose parent is missing": """
        SELECT j.id, j.parent_id FROM jobs j
        LEFT JOIN jobs p ON p.id = j.parent_id
        WHERE j.parent_id IS NOT NULL AND p.id IS NULL
    """,
    "folder cycle": """
        WITH RECURSIVE up(start, id, depth) AS (
            SELECT id, parent_id, 1 FROM jobs WHERE parent_id IS NOT NULL
            UNION ALL
            SELECT up.start, j.parent_id, up.depth + 1 FROM up JOIN jobs j ON j.id = up.id
            WHERE j.parent_id IS NOT NULL AND up.depth < 1000 AND up.id <> up.start
        )
        SELECT DISTINCT start FROM up WHERE id = start
    """,
    "negative counter or progress out of range": """
        SELECT id FROM jobs
        WHERE LEAST(chunks_total, chunks_queued, chunks_running, chunks_completed,
                    chunks_failed, requeue_count) < 0
           OR progress < 0 OR progress > 100 OR progress <> progress
        UNION ALL
        SELECT job_id FROM chunks
        WHERE LEAST(requeue_count, runs_count) < 0 OR progress < 0 OR progress > 100
    """,
    "job counters that do not match its chunks": f"""
        SELECT j.id, j.chunks_total, j.chunks_queued, j.chunks_running,
               j.chunks_completed, j.chunks_failed, s.total, s.queued, s.running,
               s.completed, s.failed
        FROM jobs j
        LEFT JOIN (
            SELECT c.job_id, count(*) AS total,
                   count(*) FILTER (WHERE {_BUCKET} = 'queued') AS queued,
                   count(*) FILTER (WHERE {_BUCKET} = 'running') AS running,
                   count(*) FILTER (WHERE {_BUCKET} = 'completed') AS completed,
                   count(*) FILTER (WHERE {_BUCKET} = 'failed') AS failed
            FROM chunks c GROUP BY c.job_id
        ) s ON s.job_id = j.id
        WHERE (j.chunks_total, j.chunks_queued, j.chunks_running, j.chunks_completed,
               j.chunks_failed)
              IS DISTINCT FROM (COALESCE(s.total, 0), COALESCE(s.queued, 0),
                                COALESCE(s.running, 0), COALESCE(s.completed, 0),
                                COALESCE(s.failed, 0))
    """,
    "chunk with two live assignments": """
        SELECT job_id, chunk_number, count(*) FROM chunk_assignments
        GROUP BY job_id, chunk_number HAVING count(*) > 1
    """,
    "node with two live assignments": """
        SELECT node_id, count(*) FROM chunk_assignments GROUP BY node_id HAVING count(*) > 1
    """,
    "orphan assignment (no chunk)": """
        SELECT a.fencing_token FROM chunk_assignments a
        LEFT JOIN chunks c ON (c.job_id, c.chunk_number) = (a.job_id, a.chunk_number)
        WHERE c.job_id IS NULL
    """,
    "orphan assignment (no node)": """
        SELECT a.fencing_token FROM chunk_assignments a
        LEFT JOIN nodes n ON n.id = a.node_id WHERE n.id IS NULL
    """,
    "assignment of a chunk that is not live": """
        SELECT a.fencing_token, c.status FROM chunk_assignments a
        JOIN chunks c ON (c.job_id, c.chunk_number) = (a.job_id, a.chunk_number)
        WHERE c.status NOT IN ('assigned', 'running')
    """,
    "live chunk without an assignment": """
        SELECT c.job_id, c.chunk_number FROM chunks c
        LEFT JOIN chunk_assignments a
               ON (a.job_id, a.chunk_number) = (c.job_id, c.chunk_number)
        WHERE c.status IN ('assigned', 'running') AND a.fencing_token IS NULL
    """,
    "dependency on a missing job": """
        SELECT d.job_id, d.depends_on_job_id FROM job_dependencies d
        LEFT JOIN jobs j ON j.id = d.depends_on_job_id WHERE j.id IS NULL
    """,
}


def audit(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """The invariants the queue breaks, with the offending rows (empty: consistent)."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    with db.transaction() as session:
        for name, sql in AUDIT.items():
            rows = [tuple(r) for r in session.execute(text(sql)).all()]
            if rows:
                found[name] = rows[:20]
    return found
