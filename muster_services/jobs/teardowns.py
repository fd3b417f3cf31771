"""Deleting and reinitialising a job or folder: each in two transactions.

jobDelete, backupJobAndDelete, the retention's policies and jobReinit tear
down every chunk of a tree of jobs: seconds of work for a job of a million
chunks. Done in one transaction, that held the released live assignments all
along, and a result batch carrying one of their runs' results waited for it,
with every other node's results behind it (docs/render-loop.md, "Deletions
and reinits in two steps"). So each is two transactions:

1. `begin_deletion` / `begin_reinit`, short, in the caller's transaction: the
   live chunks released (their runs end as killed, the chunks forget their
   fencing tokens) and every job of the tree marked in `job_teardowns`, the
   root's row with the event to publish, stamped with who asked. The
   scheduler gives no chunk of a marked job.
2. `finish_teardown`, once the first has committed: the
   rows deleted (or the chunks rebuilt), any chunk a tick gave in between
   released with the rest, the marks gone and the event published. No result,
   progress report or tick touches the rows it locks.

A process that dies between the two leaves its marks; `finish_teardowns` (every
jobs replica, at start and every TEARDOWNS_SECONDS: component.py) finishes those a minute old.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from muster_services.core.bus import publish
from muster_services.core.caller import current_caller
from muster_services.core.database import Database, retryable
from muster_services.jobs import domain, topics
from muster_services.jobs import store as repo
from muster_services.jobs.common import subtree_unlocked
from muster_services.jobs.domain import JobRecord
from muster_services.jobs.rollup import refresh

_LOG = logging.getLogger(__name__)

# Job fields a job.deleted event carries (the row is gone when it is read).
DELETED_JOB_FIELDS = (
    "name",
    "owner",
    "kind",
    "parent_id",
    "template_id",
    "project",
    "department",
    "priority",
)

# Each teardown's `message` in the history of the runs it ends.
DELETION_MESSAGE = "killed: job deleted"
REINIT_MESSAGE = "killed by reinit"

# Attempts of a second transaction that PostgreSQL rolled back (a deadlock
# with a tick that read the job before the teardown began).
FINISH_ATTEMPTS = 3

# A teardown whose second transaction has not come this long after its first
# is taken for one whose process died, and is finished by any replica.
TEARDOWN_GRACE_SECONDS = 60.0


def begin_deletion(session: Session, row: JobRecord, archived: bool) -> int:
    """The first transaction of deleting the (locked) job or folder `row` and
    everything inside it; returns the root's id for finish_teardown, called
    once the caller has committed. History and backups stay."""
    job_id = int(row.id)
    ids = sorted(int(r.id) for r in subtree_unlocked(session, job_id))
    # What the job was, for those who hear of it once it is gone (onDeleteJob).
    snapshot = {f: getattr(row, f) for f in DELETED_JOB_FIELDS}
    event = {"job_id": job_id, "deleted_ids": ids, "archived": archived, "job": snapshot}
    return _begin(session, "delete", job_id, ids, event)


def begin_reinit(session: Session, row: JobRecord) -> int:
    """The first transaction of jobReinit of the (locked) job or folder `row`:
    every job inside it starts over. Returns the root's id for
    finish_teardown, called once the caller has committed."""
    job_id = int(row.id)
    tree = subtree_unlocked(session, job_id)
    job_ids = sorted(int(r.id) for r in tree if r.kind == "job")
    return _begin(
        session,
        "reinit",
        job_id,
        sorted({job_id, *job_ids}),
        {"job_id": job_id, "job_ids": job_ids},
    )


def _begin(
    session: Session, action: str, root: int, marked: list[int], event: dict[str, Any]
) -> int:
    """Release the live chunks of the jobs the event names (ACTIONS' `ids`),
    and mark `marked` with the event, its nodes and who asked (stamped now:
    the event may be published by another process)."""
    spec = ACTIONS[action]
    nodes = repo.release_assignments(session, event[spec.ids], spec.message)
    stamped = {**event, "node_ids": nodes, **current_caller().stamp()}
    repo.mark_teardown(session, action, root, marked, stamped)
    return root


def finish_teardown(db: Database, action: str, job_id: int, wait: bool = True) -> bool:
    """The second transaction of the teardown `action` of `job_id`: its rows
    deleted or its chunks rebuilt (ACTIONS' `rows`), any chunk a tick gave
    between the two released with the rest (its node named in the event),
    and the event published. False when no such teardown is under way (a
    deletion took a reinit over, or, without `wait`, another transaction is
    ending it)."""
    spec = ACTIONS[action]
    for attempt in range(FINISH_ATTEMPTS):
        try:
            with db.transaction() as session:
                event = repo.lock_teardown(session, action, job_id, wait)
                if event is None:
                    return False
                late = repo.release_assignments(session, event[spec.ids], spec.message)
                if late:
                    event["node_ids"] = sorted({*event["node_ids"], *late})
                spec.rows(session, job_id, event)
                publish(session, spec.topic, event, key=str(job_id))
                return True
        except DBAPIError as exc:
            if attempt + 1 == FINISH_ATTEMPTS or not retryable(exc):
                raise
    raise AssertionError("unreachable")


def _delete_rows(session: Session, job_id: int, event: dict[str, Any]) -> None:
    # ON DELETE CASCADE removes the folder's contents, their chunks and
    # dependency rows and the marks; chunk_runs and backup_jobs stay.
    repo.delete_jobs(session, job_id)


def _rebuild_chunks(session: Session, job_id: int, event: dict[str, Any]) -> None:
    """Every chunk of each job rebuilt as queued, its counters restarted; the marks gone."""
    for each in event["job_ids"]:
        row = repo.get_job(session, each, lock=True)
        if row is None:
            continue
        plan = domain.plan_chunks(domain.spec_of(row), row.packet_type)
        repo.delete_chunks(session, each)
        repo.insert_chunks(session, each, plan)
        repo.update_job(
            session,
            each,
            {"requeue_count": 0, "started_at": None, "ended_at": None, "status": "queued"},
        )
        refresh(session, each, reinit=True)
    repo.end_teardown(session, job_id)


@dataclass(frozen=True)
class _Action:
    """What a kind of teardown publishes, writes in the history of the runs it
    ends, reads its released jobs from (an event key), and does to the rows."""

    topic: str
    message: str
    ids: str
    rows: Callable[[Session, int, dict[str, Any]], None]


ACTIONS = {
    "delete": _Action(topics.JOB_DELETED, DELETION_MESSAGE, "deleted_ids", _delete_rows),
    "reinit": _Action(topics.JOB_REINIT, REINIT_MESSAGE, "job_ids", _rebuild_chunks),
}


def finish_teardowns(db: Database, grace_seconds: float = TEARDOWN_GRACE_SECONDS) -> int:
    """Finish the teardowns begun more than `grace_seconds` ago (their process
    died between the two transactions); returns how many this call ended."""
    with db.read_session() as session:
        begun = repo.teardowns_begun_before(session, grace_seconds)
    ended = sum(finish_teardown(db, action, root, wait=False) for action, root in begun)
    if ended:
        _LOG.info("finished %d deletion(s) or reinit(s) a stopped process began", ended)
    return ended
