"""The render loop on the jobs side: how a run's end changes its chunk and job.

Reports arrive from the nodes service with the fencing token of the live
assignment they are about. The assignment row is the proof: a report whose
token has no live assignment (the chunk was reassigned after its node was
lost, or the report is a duplicate) changes nothing.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, func, insert, select, text, tuple_, update
from sqlalchemy.orm import Session

from services.admin.configuration import read_configuration
from services.core.bus import publish_many
from services.core.caller import current_caller
from services.core.database import Database
from services.core.errors import InvalidArgument
from services.jobs.domain import bucket_of, check_chunk_id
from services.jobs.service import JobsService
from services.jobs.tables import chunk_assignments, chunk_run_logs, chunk_runs, chunks, jobs

_LOG = logging.getLogger(__name__)

# Requeues of one chunk when neither the job nor the configuration sets a maximum.
DEFAULT_MAX_REQUEUES = 3
MAX_LOG_LINES_PER_CALL = 1000
MAX_LOG_LINE_BYTES = 64 * 1024
# Tokens come from a bigint sequence: a larger one (the API's field is
# uint64) was never issued, so a report carrying it is stale.
MAX_FENCING_TOKEN = 2**63 - 1
FINISHED_OUTCOMES = (
    "succeeded",
    "succeeded_with_warnings",
    "failed",
    "killed",
    "timed_out",
    "lost",
)


_CHANGES = (
    "jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(job bigint, chunk int, token bigint,"
    " ended_at timestamptz, exit_code int, outcome text, message text, status text)"
)
# A run's end in its history entry, then in its chunk (back in the queue: no end time).
_END_RUNS = text(
    "UPDATE chunk_runs r SET ended_at = coalesce(v.ended_at, now()), exit_code = v.exit_code,"
    f" outcome = v.outcome, message = v.message FROM {_CHANGES} WHERE r.fencing_token = v.token"
)
_END_CHUNKS = text(
    "UPDATE chunks c SET status = v.status,"
    " ended_at = CASE WHEN v.status = 'queued' THEN NULL ELSE coalesce(v.ended_at, now()) END,"
    " exit_code = v.exit_code,"
    " progress = CASE WHEN v.status LIKE 'completed%' THEN 100.0 ELSE c.progress END,"
    " requeue_count = c.requeue_count + CASE WHEN v.status = 'queued' THEN 1 ELSE 0 END,"
    " fencing_token = NULL, version = c.version + 1"
    f" FROM {_CHANGES} WHERE c.job_id = v.job AND c.chunk_number = v.chunk"
)


@dataclass(frozen=True)
class RunEnd:
    job_id: int
    chunk_number: int
    fencing_token: int
    node_id: int
    exit_code: int
    outcome: str
    message: str = ""
    ended_at: datetime | None = None
    # Set when the dispatcher asked for the kill: continue | pause | restart.
    kill_follow_up: str = ""


def next_chunk_status(
    outcome: str,
    kill_follow_up: str,
    status_after_kill: str | None,
    requeue_count: int,
    max_requeues: int,
    requeue_lost: bool = True,
) -> str:
    """The status a chunk takes when its run ends this way (pure rule).

    - success: completed (with warnings);
    - a kill the dispatcher asked for: the status chunkSetStatus asked for,
      else failed for "kill and go on", back to the queue for restart/pause;
    - failure, timeout, lost node, or a kill nobody asked for: back to the
      queue while the chunk has requeues left, failed after that (a lost
      node's chunk fails at once when requeue on disconnection is off).
    """
    if outcome == "succeeded":
        return "completed"
    if outcome == "succeeded_with_warnings":
        return "completed_with_warnings"
    if status_after_kill:
        return status_after_kill
    if outcome == "killed" and kill_follow_up:
        return "failed" if kill_follow_up == "continue" else "queued"
    if outcome == "lost" and not requeue_lost:
        return "failed"  # the configuration says: no requeue on disconnection
    return "queued" if requeue_count < max_requeues else "failed"


class ChunkRuns:
    def __init__(self, jobs_service: JobsService, max_requeues: int = DEFAULT_MAX_REQUEUES) -> None:
        self.jobs = jobs_service
        self.db: Database = jobs_service.db
        self.max_requeues = max_requeues
        self.requeue_lost = True

    def finish(self, end: RunEnd) -> str | None:
        """Apply a run's end; returns the chunk's new status, None when stale."""
        return self.finish_many([end])[0]

    def finish_many(self, ends: Sequence[RunEnd]) -> list[str | None]:
        """Apply several runs' ends in one transaction (the nodes service batches
        them): each job's counters move once per batch, not once per chunk, so a
        busy job's row is not a queue every result waits in."""
        for end in ends:
            if end.outcome not in FINISHED_OUTCOMES:
                raise InvalidArgument(f"outcome: must be a finished outcome, got {end.outcome!r}")
            if end.fencing_token <= 0:
                raise InvalidArgument("fencing_token: must be set")
            check_chunk_id(end.chunk_number)
        with self.db.transaction() as session:
            self._load_configuration(session)
            live = {
                row.fencing_token: row
                for row in session.execute(
                    select(chunk_assignments)
                    .where(
                        chunk_assignments.c.fencing_token.in_(
                            {e.fencing_token for e in ends if e.fencing_token <= MAX_FENCING_TOKEN}
                        )
                    )
                    .order_by(chunk_assignments.c.fencing_token)
                    .with_for_update()
                ).all()
            }
            results: list[str | None] = []
            accepted: list[tuple[RunEnd, Row[Any]]] = []
            for end in ends:
                assignment = live.pop(end.fencing_token, None)  # a duplicate is stale
                if (
                    assignment is None
                    or assignment.job_id != end.job_id
                    or assignment.chunk_number != end.chunk_number
                ):
                    _LOG.info(
                        "stale report for job %s chunk %s (token %s) from node %s ignored",
                        end.job_id,
                        end.chunk_number,
                        end.fencing_token,
                        end.node_id,
                    )
                    results.append(None)
                    continue
                accepted.append((end, assignment))
                results.append("")
            statuses = iter(self._end_runs(session, accepted))
            results = [next(statuses) if r is not None else None for r in results]
            moves: dict[int, list[str]] = defaultdict(list)
            for (end, _), status in zip(
                accepted, (r for r in results if r is not None), strict=True
            ):
                moves[end.job_id].append(status)
            for job_id in sorted(moves):
                self._move_counters(session, job_id, moves[job_id])
            return results

    def _load_configuration(self, session: Session) -> None:
        """The requeue rules in effect (systemSetConfiguration applies at once)."""
        config = read_configuration(session)
        self.max_requeues = config.max_chunk_requeues
        self.requeue_lost = config.requeue_chunks_on_disconnection

    def _apply(self, session: Session, end: RunEnd, assignment: Row[Any]) -> str:
        [status] = self._end_runs(session, [(end, assignment)])
        self._move_counters(session, end.job_id, [status])
        return status

    def _end_runs(self, session: Session, ended: Sequence[tuple[RunEnd, Row[Any]]]) -> list[str]:
        """The runs' history entries, their chunks and assignments (not the jobs),
        with a few set-based statements whatever the count; the chunks' new statuses."""
        if not ended:
            return []
        keys = sorted({(end.job_id, end.chunk_number) for end, _ in ended})
        rows = {
            (row.job_id, row.chunk_number): row
            for row in session.execute(
                select(
                    chunks.c.job_id,
                    chunks.c.chunk_number,
                    chunks.c.requeue_count,
                    jobs.c.max_chunk_requeues,
                )
                .join(jobs, jobs.c.id == chunks.c.job_id)
                .where(tuple_(chunks.c.job_id, chunks.c.chunk_number).in_(keys))
                .order_by(chunks.c.job_id, chunks.c.chunk_number)
                .with_for_update(of=chunks)
            ).all()
        }
        statuses: list[str] = []
        changes: list[dict[str, Any]] = []
        events: list[tuple[str, dict[str, Any], str]] = []
        actor = current_caller().label
        for end, assignment in ended:
            chunk = rows[(end.job_id, end.chunk_number)]
            status = next_chunk_status(
                end.outcome,
                end.kill_follow_up or (assignment.kill_follow_up or ""),
                assignment.status_after_kill,
                chunk.requeue_count,
                chunk.max_chunk_requeues or self.max_requeues,
                self.requeue_lost,
            )
            statuses.append(status)
            changes.append(
                {
                    "job": end.job_id,
                    "chunk": end.chunk_number,
                    "token": end.fencing_token,
                    "ended_at": end.ended_at.isoformat() if end.ended_at else None,
                    "exit_code": end.exit_code,
                    "outcome": end.outcome,
                    "message": end.message[:4000],
                    "status": status,
                }
            )
            payload = {
                "job_id": end.job_id,
                "chunk_id": end.chunk_number,
                "node_id": end.node_id,
                "outcome": end.outcome,
                "status": status,
                "actor": actor,
            }
            key = str(end.job_id)
            events.append(("chunk.finished", payload, key))
            if status == "failed":
                events.append(("chunk.failed", payload, key))
            if status == "queued":
                events.append(("chunk.requeued", payload, key))
        values = {"rows": json.dumps(changes)}
        session.execute(_END_RUNS, values)
        session.execute(_END_CHUNKS, values)
        session.execute(
            delete(chunk_assignments).where(
                chunk_assignments.c.fencing_token.in_([end.fencing_token for end, _ in ended])
            )
        )
        publish_many(session, events)
        return statuses

    def _move_counters(self, session: Session, job_id: int, statuses: list[str]) -> None:
        """Move a job's counters for chunks that left `running` for these statuses.

        The full rollup (status, job.completed) runs only when nothing is left
        to render, not on every chunk of a big job.
        """
        requeued = statuses.count("queued")
        completed = sum(1 for s in statuses if bucket_of(s) == "completed")
        failed = statuses.count("failed")
        left = session.execute(
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(
                chunks_running=jobs.c.chunks_running - len(statuses),
                chunks_queued=jobs.c.chunks_queued + requeued,
                chunks_completed=jobs.c.chunks_completed + completed,
                chunks_failed=jobs.c.chunks_failed + failed,
                requeue_count=jobs.c.requeue_count + requeued,
                progress=100.0
                * (jobs.c.chunks_completed + jobs.c.chunks_failed + completed + failed)
                / func.greatest(jobs.c.chunks_total, 1),
                updated_at=func.now(),
                version=jobs.c.version + 1,
            )
            .returning(jobs.c.chunks_queued, jobs.c.chunks_running)
        ).one()
        held = any(bucket_of(s) is None for s in statuses)
        if left.chunks_queued + left.chunks_running == 0 or held:
            self.jobs.refresh(session, job_id)

    def release_node(self, node_id: int, reason: str) -> list[tuple[int, int, str]]:
        """End every live assignment of a lost node as LOST."""
        released = []
        with self.db.transaction() as session:
            self._load_configuration(session)
            tokens = session.execute(
                select(
                    chunk_assignments.c.fencing_token,
                    chunk_assignments.c.job_id,
                    chunk_assignments.c.chunk_number,
                )
                .where(chunk_assignments.c.node_id == node_id)
                .with_for_update()
            ).all()
            for token, job_id, chunk_number in tokens:
                assignment = session.execute(
                    select(chunk_assignments).where(chunk_assignments.c.fencing_token == token)
                ).one()
                status = self._apply(
                    session,
                    RunEnd(job_id, chunk_number, token, node_id, -1, "lost", reason),
                    assignment,
                )
                released.append((job_id, chunk_number, status))
        return released

    def append_log(
        self, job_id: int, chunk_number: int, fencing_token: int, lines: list[tuple[Any, str, str]]
    ) -> bool:
        """Store (time, stream, text) lines for the run holding the token."""
        check_chunk_id(chunk_number)
        if fencing_token > MAX_FENCING_TOKEN:
            return False  # never issued: stale
        if len(lines) > MAX_LOG_LINES_PER_CALL:
            raise InvalidArgument(f"lines: at most {MAX_LOG_LINES_PER_CALL} per call")
        for _, _, line in lines:
            if len(line.encode(errors="replace")) > MAX_LOG_LINE_BYTES:
                raise InvalidArgument(f"lines: a line is larger than {MAX_LOG_LINE_BYTES} bytes")
        with self.db.transaction() as session:
            run = session.execute(
                select(chunk_runs.c.id).where(
                    chunk_runs.c.fencing_token == fencing_token,
                    chunk_runs.c.job_id == job_id,
                    chunk_runs.c.chunk_number == chunk_number,
                )
            ).first()
            if run is None or not lines:
                return run is not None
            last = session.execute(
                select(func.coalesce(func.max(chunk_run_logs.c.seq), 0)).where(
                    chunk_run_logs.c.run_id == run.id
                )
            ).scalar_one()
            session.execute(
                insert(chunk_run_logs),
                [
                    {
                        "run_id": run.id,
                        "seq": last + i + 1,
                        "logged_at": when or func.now(),
                        "stream": stream,
                        "line": text.replace("\x00", ""),
                    }
                    for i, (when, stream, text) in enumerate(lines)
                ],
            )
            return True
