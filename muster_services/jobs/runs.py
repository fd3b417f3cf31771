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
from muster_services.admin.domain import configuration_from_json
from muster_services.core import metrics
from muster_services.core.bus import hint
from muster_services.core.caller import current_caller
from muster_services.core.database import Database
from muster_services.core.errors import InvalidArgument
from muster_services.jobs import log_store, rollup, store
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


class _KeptRules:
    """The requeue rules kept between batches with the version of the
    configuration row they come from. Every batch's locking statement
    (store.lock_ending) returns the row's version in its snapshot, and the
    configuration itself when that is not the kept version: a change applies
    from the first batch that starts after its commit, as when the rules were
    read per batch, without a read of the configuration per batch."""

    def __init__(self) -> None:
        # Replaced whole, never changed in place: worker threads share it.
        self.kept: tuple[str, RequeueRules] | None = None
        self.reads = 0  # how many times rules were taken from a new version

    def of_batch(
        self, kept: tuple[str, RequeueRules] | None, batch: store.EndingBatch
    ) -> RequeueRules | None:
        """The rules of a batch locked with `kept`'s version as the known one."""
        if batch.config is not None:
            config = configuration_from_json(batch.config)
            rules = RequeueRules(config.max_chunk_requeues, config.requeue_chunks_on_disconnection)
            self.kept = (batch.config_version, rules)
            self.reads += 1
            return rules
        if kept is not None and batch.config_version == kept[0]:
            return kept[1]
        return None


class ChunkRuns:
    """Shared by the servicer's worker threads: per call state stays in the
    call; the requeue rules are kept between calls while the configuration
    row is unchanged (_KeptRules)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.rules = _KeptRules()

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
            results = self._finish_locked(session, ends)
        metrics.runs_ended([r for r in results if r is not None])
        return results

    def _finish_locked(self, session: Session, ends: Sequence[RunEnd]) -> list[str | None]:
        """The ends applied in the caller's transaction; each one's new chunk
        status, None for a stale report."""
        kept = self.rules.kept  # once: another thread may replace it meanwhile
        batch = store.lock_ending(
            session,
            [e.fencing_token for e in ends if e.fencing_token <= MAX_FENCING_TOKEN],
            kept[0] if kept is not None else "",
        )
        live = {row.fencing_token: row for row in batch.rows}
        accepted: list[tuple[RunEnd, Row[Any]]] = []
        stale: list[bool] = []
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
                stale.append(True)
                continue
            accepted.append((end, assignment))
            stale.append(False)
        if not accepted:
            return [None] * len(ends)
        rules = self.rules.of_batch(kept, batch) or requeue_rules(session)
        applied = iter(self._end_runs(session, accepted, rules))
        return [None if s else next(applied) for s in stale]

    def _end_runs(
        self, session: Session, ended: Sequence[tuple[RunEnd, Row[Any]]], rules: RequeueRules
    ) -> list[str]:
        """The runs' history entries, their chunks, assignments, jobs'
        counters and events, with one statement whatever the count
        (store.end_runs); the chunks' new statuses.

        The full rollup (status, job.completed) runs only where
        domain.needs_rollup says (nothing left to render, a chunk on hold),
        not on every chunk of a big job."""
        if not ended:
            return []
        statuses: list[str] = []
        changes: list[dict[str, Any]] = []
        transitions: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for end, row in ended:
            status = next_chunk_status(
                end.outcome,
                end.kill_follow_up or (row.kill_follow_up or ""),
                row.status_after_kill,
                row.requeue_count,
                row.max_chunk_requeues or rules.max_requeues,
                rules.requeue_lost,
            )
            statuses.append(status)
            transitions[end.job_id].append(("running", status))
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
                    "node": end.node_id,
                    "old_status": row.chunk_status,
                }
            )
        # The ends, their events and the jobs' counters in one statement; the
        # runs' followers learn of the ends at once (FollowChunkLog, the
        # hint). A rollup's job.completed comes after its chunks' ends.
        moves = {job_id: counter_moves(t) for job_id, t in transitions.items()}
        for left in store.end_runs(
            session,
            changes,
            moves,
            current_caller().label,
            (LOG_CHANNEL, [end.fencing_token for end, _ in ended]),
        ):
            if needs_rollup(moves[left.id], left.chunks_queued, left.chunks_running):
                rollup.refresh(session, left.id)
        return statuses

    def release_node(
        self, node_id: int, reason: str, fencing_token: int = 0
    ) -> list[tuple[int, int, str]]:
        """End every live assignment of a lost node as LOST (only the one holding
        `fencing_token` when it is given and still live: an agent that
        registered without confirming it)."""
        if not 0 <= fencing_token <= MAX_FENCING_TOKEN:
            return []  # never issued: nothing of the node's is live under it
        with self.db.transaction() as session:
            live = store.lock_node_assignments(session, node_id, fencing_token)
            ends = [
                RunEnd(
                    int(a.job_id), int(a.chunk_number), a.fencing_token, node_id, -1, "lost", reason
                )
                for a in sorted(live, key=lambda a: int(a.fencing_token))
            ]
            statuses = self._finish_locked(session, ends)
        return [
            (end.job_id, end.chunk_number, status)
            for end, status in zip(ends, statuses, strict=True)
            if status is not None
        ]

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
