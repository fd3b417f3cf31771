"""The render loop on the jobs side: how a run's end changes its chunk and job.

Reports arrive from the nodes service with the fencing token of the live
assignment they are about. The assignment row is the proof: a report whose
token has no live assignment (the chunk was reassigned after its node was
lost, or the report is a duplicate) changes nothing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from muster_services.admin.configuration import read_configuration
from muster_services.core import metrics
from muster_services.core.bus import hint, publish_many
from muster_services.core.caller import current_caller
from muster_services.core.database import Database
from muster_services.core.errors import InvalidArgument
from muster_services.jobs import log_store, rollup, store, topics
from muster_services.jobs.domain import (
    RequeueRules,
    check_chunk_id,
    counter_moves,
    needs_rollup,
    next_chunk_status,
)
from muster_services.jobs.log_store import NewLine

_LOG = logging.getLogger(__name__)

MAX_LOG_LINES_PER_CALL = 1000
MAX_LOG_LINE_BYTES = 64 * 1024
# Tokens come from a bigint sequence: a larger one (the API's field is
# uint64) was never issued, so a report carrying it is stale.
MAX_FENCING_TOKEN = 2**63 - 1
# NOTIFY channel naming the fencing tokens of runs whose log grew or that
# ended: every replica's followers of those runs read again (logs.py).
LOG_CHANNEL = "muster_chunk_logs"
FINISHED_OUTCOMES = (
    "succeeded",
    "succeeded_with_warnings",
    "failed",
    "killed",
    "timed_out",
    "lost",
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


def requeue_rules(session: Session) -> RequeueRules:
    """The requeue rules in effect (systemSetConfiguration applies at once)."""
    config = read_configuration(session)
    return RequeueRules(config.max_chunk_requeues, config.requeue_chunks_on_disconnection)


class ChunkRuns:
    """Shared by the servicer's worker threads: holds no per-call state (each
    call reads its own RequeueRules and passes them down)."""

    def __init__(self, db: Database) -> None:
        self.db = db

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
            rules = requeue_rules(session)
            live = {
                row.fencing_token: row
                for row in store.lock_live_assignments(
                    session,
                    {e.fencing_token for e in ends if e.fencing_token <= MAX_FENCING_TOKEN},
                )
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
            statuses = self._end_runs(session, accepted, rules)
            self._move_counters(
                session,
                [(end.job_id, status) for (end, _), status in zip(accepted, statuses, strict=True)],
            )
            applied = iter(statuses)
            ended = [next(applied) if r is not None else None for r in results]
        metrics.runs_ended(statuses)
        return ended

    def _apply(
        self, session: Session, end: RunEnd, assignment: Row[Any], rules: RequeueRules
    ) -> str:
        [status] = self._end_runs(session, [(end, assignment)], rules)
        self._move_counters(session, [(end.job_id, status)])
        return status

    def _end_runs(
        self, session: Session, ended: Sequence[tuple[RunEnd, Row[Any]]], rules: RequeueRules
    ) -> list[str]:
        """The runs' history entries, their chunks and assignments (not the jobs),
        with a few set-based statements whatever the count; the chunks' new statuses."""
        if not ended:
            return []
        rows = store.lock_ending_chunks(
            session, sorted({(end.job_id, end.chunk_number) for end, _ in ended})
        )
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
                chunk.max_chunk_requeues or rules.max_requeues,
                rules.requeue_lost,
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
                "old_status": chunk.status,
                "status": status,
                "actor": actor,
            }
            key = str(end.job_id)
            events.append((topics.CHUNK_FINISHED, payload, key))
            if status == "failed":
                events.append((topics.CHUNK_FAILED, payload, key))
            if status == "queued":
                events.append((topics.CHUNK_REQUEUED, payload, key))
        store.end_runs(session, changes)
        # The runs' followers learn of the end at once (FollowChunkLog).
        publish_many(session, events, (LOG_CHANNEL, [end.fencing_token for end, _ in ended]))
        return statuses

    def _move_counters(self, session: Session, ended: Sequence[tuple[int, str]]) -> None:
        """Move the counters of the jobs whose chunks left `running` for these
        (job id, status) in one statement, the jobs locked in id order.

        The full rollup (status, job.completed) runs only where domain.needs_rollup
        says (nothing left to render, a chunk on hold), not on every chunk of a
        big job.
        """
        transitions: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for job_id, status in ended:
            transitions[job_id].append(("running", status))
        moves = {job_id: counter_moves(t) for job_id, t in transitions.items()}
        for left in store.move_counters(session, moves):
            if needs_rollup(moves[left.id], left.chunks_queued, left.chunks_running):
                rollup.refresh(session, left.id)

    def release_node(
        self, node_id: int, reason: str, fencing_token: int = 0
    ) -> list[tuple[int, int, str]]:
        """End every live assignment of a lost node as LOST (only the one holding
        `fencing_token` when it is given and still live: an agent that
        registered without confirming it)."""
        if not 0 <= fencing_token <= MAX_FENCING_TOKEN:
            return []  # never issued: nothing of the node's is live under it
        released = []
        with self.db.transaction() as session:
            rules = requeue_rules(session)
            for live in store.lock_node_assignments(session, node_id, fencing_token):
                job_id, chunk_number = int(live.job_id), int(live.chunk_number)
                status = self._apply(
                    session,
                    RunEnd(job_id, chunk_number, live.fencing_token, node_id, -1, "lost", reason),
                    store.assignment_by_token(session, live.fencing_token),
                    rules,
                )
                released.append((job_id, chunk_number, status))
        return released

    def append_log(
        self, job_id: int, chunk_number: int, fencing_token: int, lines: Sequence[NewLine]
    ) -> bool:
        """Store lines for the run holding the token, under the configured
        per-run cap (log_store.append), and wake the run's followers on every
        replica (LOG_CHANNEL)."""
        check_chunk_id(chunk_number)
        if fencing_token > MAX_FENCING_TOKEN:
            return False  # never issued: stale
        if len(lines) > MAX_LOG_LINES_PER_CALL:
            raise InvalidArgument(f"lines: at most {MAX_LOG_LINES_PER_CALL} per call")
        for line in lines:
            if len(line.text.encode(errors="replace")) > MAX_LOG_LINE_BYTES:
                raise InvalidArgument(f"lines: a line is larger than {MAX_LOG_LINE_BYTES} bytes")
        with self.db.transaction() as session:
            run_id = store.run_of_token(session, job_id, chunk_number, fencing_token)
            if run_id is None or not lines:
                return run_id is not None
            cap = read_configuration(session).render_log_cap_bytes
            log_store.append(session, run_id, lines, cap)
            hint(session, LOG_CHANNEL, [fencing_token])
            return True


MAX_PROGRESS_REPORTS = 1000


def report_progress(db: Database, reports: Sequence[tuple[int, int, int, float]]) -> int:
    """Set the progress of running chunks (job id, chunk number, fencing token,
    progress 0-100); a report with a stale token changes nothing. The newest
    report of a chunk wins within a batch. Returns how many chunks changed."""
    if len(reports) > MAX_PROGRESS_REPORTS:
        raise InvalidArgument(f"runs: at most {MAX_PROGRESS_REPORTS} per call")
    newest: dict[tuple[int, int], tuple[int, int, int, float]] = {}
    for job_id, chunk_number, token, progress in reports:
        check_chunk_id(chunk_number)
        if not 0.0 <= progress <= 100.0:  # NaN fails both
            raise InvalidArgument(f"runs.progress must be within 0-100, got {progress}")
        if 0 < token <= MAX_FENCING_TOKEN and job_id > 0:
            newest[(job_id, chunk_number)] = (job_id, chunk_number, token, progress)
    if not newest:
        return 0
    # In key order: two batches touching the same chunks lock them in one order.
    with db.transaction() as session:
        return store.set_chunks_progress(session, [newest[k] for k in sorted(newest)])
