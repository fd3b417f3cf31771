"""Render logs read back: a page or the tail of any run of a chunk
(GetChunkLog), and a running chunk's log followed live (FollowChunkLog).

Lines are stored by the render loop (runs.ChunkRuns.append_log) under the
per-run cap of the dispatcher configuration; SQL in log_store.py. Who may
read is the configuration's `render_logs_readable_by`. Followers on every
replica are woken by a NOTIFY naming the run's fencing token (LogWaker)
when lines are stored or the run ends, with a slow poll behind it, so a
missed notification delays a line, never loses it. docs/logs.md.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from muster_services.admin.configuration import read_configuration
from muster_services.core.bus import HintListener
from muster_services.core.caller import current_caller
from muster_services.core.database import Database
from muster_services.core.errors import InvalidArgument, NotFound, PermissionDenied
from muster_services.jobs import domain, log_store
from muster_services.jobs import store as repo
from muster_services.jobs.domain import RunRecord
from muster_services.jobs.log_store import RunLog, StoredLine
from muster_services.jobs.runs import LOG_CHANNEL

DEFAULT_PAGE_LINES = 1000
DEFAULT_FOLLOW_TAIL = 100
MAX_LINES = 10_000
# error_lines and warning_lines: the first ones only.
MAX_MARKED_LINES = 1000
# A follower re-reads this often even without a notification (a missed one
# delays, never loses), and looks this often for a chunk's first run.
FOLLOW_POLL_SECONDS = 1.0
FIRST_RUN_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class Gap:
    """Lines the cap (or the retention) dropped."""

    first_line: int
    last_line: int
    bytes: int


@dataclass(frozen=True)
class LogPage:
    run: RunRecord
    lines: list[StoredLine]
    last_line: int
    next_line: int
    gaps: list[Gap]
    error_lines: list[int]
    warning_lines: list[int]


@dataclass(frozen=True)
class LogBatch:
    """One message of a follow: `run` in the first and the last one."""

    lines: list[StoredLine]
    gaps: list[Gap]
    run: RunRecord | None = None
    ended: bool = False


def _not_negative(value: int, name: str) -> None:
    if value < 0:
        raise InvalidArgument(f"{name}: must be 0 or more, got {value}")


def _gaps(log: RunLog, low: int, high: int) -> list[Gap]:
    """The run's dropped range when it lies inside or just before low..high."""
    if not log.dropped_lines:
        return []
    first = log.head_lines + 1
    last = log.head_lines + log.dropped_lines
    if first <= high and last >= low - 1:
        return [Gap(first, last, log.dropped_bytes)]
    return []


def _check_reader(session: Session, job_id: int) -> None:
    """The configuration's render_logs_readable_by: everyone | owner | admins."""
    readers = read_configuration(session).render_logs_readable_by
    caller = current_caller()
    if readers == "everyone" or caller.is_administrator:
        return
    if readers == "owner":
        owner = repo.job_owner(session, job_id)
        if owner is not None and caller.may_act_for(owner):
            return
        raise PermissionDenied(
            f"job_id: render logs are readable by their job's owner and administrators only;"
            f" {caller.describe()} does not own job {job_id}"
        )
    raise PermissionDenied(
        f"render logs are readable by administrators only; {caller.describe()} is not one"
    )


def _resolve(session: Session, job_id: int, chunk_id: int, run_number: int) -> RunLog | None:
    """The run asked for after the permission check; None when the chunk has
    not run yet (run_number 0). History outlives its job, so a deleted job's
    runs are still readable."""
    log = log_store.run_log(session, job_id, chunk_id, run_number)
    if log is None:
        row = repo.get_job(session, job_id)
        if row is None:
            raise NotFound(f"job_id: job {job_id} does not exist")
        if row.kind != "job":
            raise InvalidArgument(f"job_id: {job_id} is a folder; folders have no chunks")
        if repo.get_chunk(session, job_id, chunk_id) is None:
            raise NotFound(f"chunk_id: chunk {chunk_id} of job {job_id} does not exist")
    _check_reader(session, job_id)
    if log is None and run_number:
        raise NotFound(f"run_number: chunk {chunk_id} of job {job_id} has no run {run_number}")
    return log


def _check_run(job_id: int, chunk_id: int, run_number: int) -> None:
    domain.check_chunk_id(chunk_id)
    _not_negative(run_number, "run_number")


class LogWaker:
    """Wakes the followers of runs named (by fencing token) on LOG_CHANNEL.

    One LISTEN connection per replica, whatever the number of followers;
    each follower waits on an asyncio.Event of its own event loop."""

    def __init__(self, db: Database, poll_seconds: float = 5.0) -> None:
        self.listener = HintListener(db, LOG_CHANNEL, self.wake, poll_seconds)
        self._lock = threading.Lock()
        self._waiting: dict[int, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def start(self) -> None:
        self.listener.start()

    def stop(self) -> None:
        self.listener.stop()

    def wake(self, tokens: list[int]) -> None:
        with self._lock:
            woken = [w for token in tokens for w in self._waiting.get(token, ())]
        for loop, event in woken:
            loop.call_soon_threadsafe(event.set)

    @contextmanager
    def watch(self, token: int) -> Iterator[asyncio.Event]:
        """An event set whenever the run holding `token` logs or ends."""
        event = asyncio.Event()
        waiter = (asyncio.get_running_loop(), event)
        with self._lock:
            self._waiting.setdefault(token, set()).add(waiter)
        try:
            yield event
        finally:
            with self._lock:
                waiters = self._waiting.get(token, set())
                waiters.discard(waiter)
                if not waiters:
                    self._waiting.pop(token, None)


@dataclass
class ChunkLogs:
    """GetChunkLog and FollowChunkLog on one database."""

    db: Database
    waker: LogWaker | None = None
    poll_seconds: float = field(default=FOLLOW_POLL_SECONDS)

    def read(
        self, job_id: int, chunk_id: int, run_number: int, from_line: int, limit: int, tail: int
    ) -> LogPage:
        """A page of `limit` lines from `from_line`, or the last `tail` lines."""
        _check_run(job_id, chunk_id, run_number)
        for value, name in ((from_line, "from_line"), (limit, "limit"), (tail, "tail")):
            _not_negative(value, name)
        with self.db.transaction() as session:
            log = _resolve(session, job_id, chunk_id, run_number)
            if log is None:
                raise NotFound(f"run_number: chunk {chunk_id} of job {job_id} has not run yet")
            run_id = log.run.id
            if tail:
                lines = log_store.tail(session, run_id, min(tail, MAX_LINES))
                low, high = (lines[0].number if lines else log.last_line + 1), log.last_line
                next_line = 0
            else:
                start = max(from_line, 1)
                lines = log_store.page(
                    session, run_id, start, min(limit or DEFAULT_PAGE_LINES, MAX_LINES)
                )
                low, high = start, (lines[-1].number if lines else log.last_line)
                more = bool(lines) and lines[-1].number < log.last_line
                next_line = lines[-1].number + 1 if more else 0
            errors, warnings = log_store.marked_lines(session, run_id, MAX_MARKED_LINES)
            return LogPage(
                run=log.run,
                lines=lines,
                last_line=log.last_line,
                next_line=next_line,
                gaps=_gaps(log, low, high),
                error_lines=errors,
                warning_lines=warnings,
            )

    # --- following ------------------------------------------------------------------

    def _open(self, job_id: int, chunk_id: int, run_number: int) -> RunLog | None:
        with self.db.transaction() as session:
            return _resolve(session, job_id, chunk_id, run_number)

    def _backlog(self, log: RunLog, from_line: int, tail: int) -> list[StoredLine]:
        with self.db.transaction() as session:
            if from_line:
                return log_store.page(session, log.run.id, from_line, MAX_LINES)
            return log_store.tail(session, log.run.id, tail)

    def _since(self, run_id: int, after: int) -> tuple[RunLog, list[StoredLine]]:
        """The run as it is now, then its lines after `after` (read in that
        order: a run seen ended has all its lines visible)."""
        with self.db.transaction() as session:
            log = log_store.run_log_by_id(session, run_id)
            if log is None:
                raise NotFound(f"run_number: run {run_id} is gone (its history was cleared)")
            return log, log_store.page(session, run_id, after + 1, MAX_LINES)

    async def follow(
        self, job_id: int, chunk_id: int, run_number: int, from_line: int, tail: int
    ) -> AsyncIterator[LogBatch]:
        """The backlog, then new lines as they are stored, until the run ends
        (the last batch has `ended` and the run's outcome); when the chunk has
        not run yet, an empty batch (no run) first, then waits for its first
        run."""
        _check_run(job_id, chunk_id, run_number)
        _not_negative(from_line, "from_line")
        _not_negative(tail, "tail")
        count = min(tail or DEFAULT_FOLLOW_TAIL, MAX_LINES)
        opened = await asyncio.to_thread(self._open, job_id, chunk_id, run_number)
        if opened is None:
            yield LogBatch([], [])  # waiting: the stream is open, no run yet
        while opened is None:
            await asyncio.sleep(FIRST_RUN_POLL_SECONDS)
            opened = await asyncio.to_thread(self._open, job_id, chunk_id, run_number)
        log = opened
        with self._watch(log.run.fencing_token) as woken:
            lines = await asyncio.to_thread(self._backlog, log, from_line, count)
            sent = lines[-1].number if lines else (from_line - 1 if from_line else log.last_line)
            low = lines[0].number if lines else sent + 1
            yield LogBatch(lines, _gaps(log, from_line or low, sent), run=log.run)
            while True:
                woken.clear()
                log, lines = await asyncio.to_thread(self._since, log.run.id, sent)
                if lines:
                    gaps = _gaps(log, sent + 1, lines[-1].number)
                    sent = lines[-1].number
                    yield LogBatch(lines, gaps)
                    continue
                if log.ended:
                    yield LogBatch([], [], run=log.run, ended=True)
                    return
                with suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), self.poll_seconds)

    @contextmanager
    def _watch(self, token: int) -> Iterator[asyncio.Event]:
        if self.waker is None:  # polling only
            yield asyncio.Event()
            return
        with self.waker.watch(token) as event:
            yield event
