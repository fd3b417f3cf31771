"""SQL of render logs: a run's lines stored under the per-run cap, read back
by page, by tail and by mark (muster_services/jobs/logs.py has the rules).

Every read goes through the primary key (run_id, seq) or the partial index
of marked lines with a LIMIT: nothing here reads a whole log. The counters
on chunk_runs (tables.py, "chunk runs") are the cap's bookkeeping; they
change under the run row's lock, so a run's appends take turns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Row, Select, delete, func, insert, select, union_all, update
from sqlalchemy.orm import Session

from muster_services.jobs.domain import RunRecord
from muster_services.jobs.tables import chunk_run_logs, chunk_runs

# A page's lines stop once their text passes this many bytes (at least one
# line is always returned): a message stays under gRPC's default 4 MiB.
PAGE_BYTES = 3 * 1024 * 1024


@dataclass(frozen=True)
class NewLine:
    """A line as the agent sent it: mark is 'error', 'warning' or None."""

    logged_at: datetime | None
    stream: str
    text: str
    mark: str | None = None


@dataclass(frozen=True)
class RunLog:
    """A run and its log's bookkeeping."""

    run: RunRecord
    last_line: int
    head_lines: int
    dropped_lines: int
    dropped_bytes: int

    @property
    def ended(self) -> bool:
        return self.run.outcome != "running"


class StoredLine(NamedTuple):
    """A stored line (a NamedTuple: pages are built from rows by the thousand)."""

    number: int
    logged_at: datetime
    stream: str
    text: str
    mark: str | None


_RUN_COLUMNS = (
    *(chunk_runs.c[name] for name in RunRecord._fields),
    chunk_runs.c.log_lines,
    chunk_runs.c.log_head_lines,
    chunk_runs.c.log_dropped_lines,
    chunk_runs.c.log_dropped_bytes,
)


def _run_log(row: Row[Any]) -> RunLog:
    return RunLog(
        run=RunRecord(*(row[i] for i in range(len(RunRecord._fields)))),
        last_line=int(row.log_lines),
        head_lines=int(row.log_head_lines),
        dropped_lines=int(row.log_dropped_lines),
        dropped_bytes=int(row.log_dropped_bytes),
    )


def run_log(session: Session, job_id: int, chunk_number: int, run_number: int) -> RunLog | None:
    """The run `run_number` of a chunk (0: its newest), or None."""
    query = select(*_RUN_COLUMNS).where(
        chunk_runs.c.job_id == job_id, chunk_runs.c.chunk_number == chunk_number
    )
    if run_number:
        query = query.where(chunk_runs.c.run_number == run_number)
    row = session.execute(query.order_by(chunk_runs.c.run_number.desc()).limit(1)).first()
    return None if row is None else _run_log(row)


def run_log_by_id(session: Session, run_id: int) -> RunLog | None:
    row = session.execute(select(*_RUN_COLUMNS).where(chunk_runs.c.id == run_id)).first()
    return None if row is None else _run_log(row)


_LINE_COLUMNS = (
    chunk_run_logs.c.seq,
    chunk_run_logs.c.logged_at,
    chunk_run_logs.c.stream,
    chunk_run_logs.c.line,
    chunk_run_logs.c.mark,
)


def _lines(
    session: Session, run_id: int, from_line: int, limit: int, newest: bool
) -> list[StoredLine]:
    """Up to `limit` lines from `from_line` on (or the run's last ones, with
    `newest`), cut at PAGE_BYTES, in line order."""
    order = chunk_run_logs.c.seq.desc() if newest else chunk_run_logs.c.seq
    size = func.octet_length(chunk_run_logs.c.line)
    query = select(
        *_LINE_COLUMNS, func.sum(size).over(order_by=order).label("upto"), size.label("size")
    )
    query = query.where(chunk_run_logs.c.run_id == run_id)
    if not newest:
        query = query.where(chunk_run_logs.c.seq >= from_line)
    page = query.order_by(order).limit(limit).subquery()
    rows = session.execute(
        select(page.c.seq, page.c.logged_at, page.c.stream, page.c.line, page.c.mark)
        .where(page.c.upto - page.c.size < PAGE_BYTES)
        .order_by(page.c.seq.desc() if newest else page.c.seq)
    ).all()
    lines = list(map(StoredLine._make, rows))
    return lines[::-1] if newest else lines


def page(session: Session, run_id: int, from_line: int, limit: int) -> list[StoredLine]:
    """Up to `limit` lines from `from_line` on, in line order (cut at PAGE_BYTES)."""
    return _lines(session, run_id, from_line, limit, newest=False)


def tail(session: Session, run_id: int, count: int) -> list[StoredLine]:
    """The run's last `count` stored lines, in line order (cut at PAGE_BYTES,
    keeping the newest)."""
    return _lines(session, run_id, 0, count, newest=True)


def next_stored_line(session: Session, run_id: int, after: int) -> int:
    """The first stored line number after `after`, 0 when none."""
    found = session.execute(
        select(chunk_run_logs.c.seq)
        .where(chunk_run_logs.c.run_id == run_id, chunk_run_logs.c.seq > after)
        .order_by(chunk_run_logs.c.seq)
        .limit(1)
    ).scalar()
    return int(found or 0)


def marked_lines(session: Session, run_id: int, limit: int) -> tuple[list[int], list[int]]:
    """The first `limit` line numbers marked 'error' and 'warning' (the
    partial index; one round trip)."""

    def first(mark: str) -> Select[Any]:
        return (
            select(chunk_run_logs.c.mark, chunk_run_logs.c.seq)
            .where(
                chunk_run_logs.c.run_id == run_id,
                chunk_run_logs.c.mark == mark,
                chunk_run_logs.c.mark.is_not(None),
            )
            .order_by(chunk_run_logs.c.seq)
            .limit(limit)
        )

    found: dict[str, list[int]] = {"error": [], "warning": []}
    for mark, seq in session.execute(union_all(first("error"), first("warning"))):
        found[mark].append(int(seq))
    return found["error"], found["warning"]


# --- writing under the cap ----------------------------------------------------------


def append(session: Session, run_id: int, lines: Sequence[NewLine], cap_bytes: int) -> int:
    """Store `lines` after the run's last line, then drop the oldest lines after
    the head until the run's text fits in `cap_bytes`. The head is the run's
    first lines up to half the cap; it is never dropped. Returns the run's
    last line number."""
    counters = session.execute(
        select(
            chunk_runs.c.log_lines,
            chunk_runs.c.log_bytes,
            chunk_runs.c.log_head_lines,
            chunk_runs.c.log_dropped_lines,
            chunk_runs.c.log_dropped_bytes,
        )
        .where(chunk_runs.c.id == run_id)
        .with_for_update()
    ).one()
    last, stored = int(counters.log_lines), int(counters.log_bytes)
    head, dropped, dropped_bytes = (
        int(counters.log_head_lines),
        int(counters.log_dropped_lines),
        int(counters.log_dropped_bytes),
    )
    rows = []
    now = datetime.now(UTC)  # for lines the agent sent without a time
    for line in lines:
        text_ = line.text.replace("\x00", "")
        size = len(text_.encode(errors="replace"))
        # The head grows while every line so far is in it and it is under half the cap.
        if head == last and stored + dropped_bytes < cap_bytes // 2:
            head += 1
        last += 1
        stored += size
        rows.append(
            {
                "run_id": run_id,
                "seq": last,
                "logged_at": line.logged_at or now,
                "stream": line.stream,
                "line": text_,
                "mark": line.mark,
            }
        )
    if rows:
        session.execute(insert(chunk_run_logs), rows)
    if stored > cap_bytes:
        freed, count = _drop_after_head(session, run_id, head + dropped + 1, stored - cap_bytes)
        stored -= freed
        dropped += count
        dropped_bytes += freed
    session.execute(
        update(chunk_runs)
        .where(chunk_runs.c.id == run_id)
        .values(
            log_lines=last,
            log_bytes=stored,
            log_head_lines=head,
            log_dropped_lines=dropped,
            log_dropped_bytes=dropped_bytes,
        )
    )
    return last


_DROP_BATCH = 2000


def _drop_after_head(session: Session, run_id: int, first: int, excess: int) -> tuple[int, int]:
    """Delete lines from `first` on, oldest first, until `excess` bytes are
    freed (or no line is left); returns (bytes freed, lines dropped)."""
    freed = count = 0
    upto = first - 1
    while freed < excess:
        sizes = session.execute(
            select(chunk_run_logs.c.seq, func.octet_length(chunk_run_logs.c.line))
            .where(chunk_run_logs.c.run_id == run_id, chunk_run_logs.c.seq > upto)
            .order_by(chunk_run_logs.c.seq)
            .limit(_DROP_BATCH)
        ).all()
        if not sizes:
            break
        for seq, size in sizes:
            upto = int(seq)
            freed += int(size)
            count += 1
            if freed >= excess:
                break
    if count:
        session.execute(
            delete(chunk_run_logs).where(
                chunk_run_logs.c.run_id == run_id,
                chunk_run_logs.c.seq >= first,
                chunk_run_logs.c.seq <= upto,
            )
        )
    return freed, count


# --- retention ----------------------------------------------------------------------


def prune(session: Session, days: int) -> int:
    """Delete the lines of runs that started more than `days` ago; their
    counters then report the whole log as dropped. Returns lines deleted."""
    old = chunk_runs.c.started_at < func.now() - func.make_interval(0, 0, 0, days)
    kept = chunk_runs.c.log_lines > chunk_runs.c.log_dropped_lines
    old_runs = select(chunk_runs.c.id).where(old)
    result = session.execute(delete(chunk_run_logs).where(chunk_run_logs.c.run_id.in_(old_runs)))
    session.execute(
        update(chunk_runs)
        .where(old, kept)
        .values(
            log_dropped_bytes=chunk_runs.c.log_dropped_bytes + chunk_runs.c.log_bytes,
            log_bytes=0,
            log_head_lines=0,
            log_dropped_lines=chunk_runs.c.log_lines,
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
