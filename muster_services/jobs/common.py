"""What the jobs use cases share: a job by id, who may change it, a folder to
put a job in, and the deletion of a job or folder with everything inside it
(jobDelete, backupJobAndDelete and the retention all delete the same way)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from muster_services.core.bus import publish
from muster_services.core.caller import current_caller
from muster_services.core.database import Database, retryable
from muster_services.core.errors import FailedPrecondition, NotFound, PermissionDenied
from muster_services.jobs import store as repo
from muster_services.jobs import topics
from muster_services.jobs.domain import ROOT, JobRecord, TreeNode

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


class Owned(Protocol):
    """A job or folder as far as permissions go."""

    @property
    def id(self) -> int: ...

    @property
    def owner(self) -> str: ...


def job(session: Session, job_id: int, lock: bool = False, field: str = "job_id") -> JobRecord:
    """The job or folder `job_id` (locked with `lock`, see store.get_job), or
    NOT_FOUND naming `field`."""
    row = repo.get_job(session, job_id, lock=lock)
    if row is None:
        raise NotFound(f"{field}: job {job_id} does not exist")
    return row


def ensure_may_change(rows: Iterable[Owned], giving_to: str = "") -> None:
    """Users change only their own jobs and folders; administrators everything."""
    caller = current_caller()
    for row in rows:
        if not caller.may_act_for(row.owner):
            raise PermissionDenied(
                f"job {row.id} belongs to {row.owner!r}; {caller.describe()}:"
                " only its owner or an administrator may change it"
            )
    if giving_to and not caller.is_administrator:
        raise PermissionDenied(f"job.owner: only an administrator gives a job to {giving_to!r}")


def check_parent(session: Session, parent_id: int, field: str) -> None:
    """`parent_id` is the root or an existing folder."""
    if parent_id == ROOT:
        return
    found = repo.existing_jobs(session, [parent_id]).get(parent_id)
    if found is None:
        raise NotFound(f"{field}: folder {parent_id} does not exist")
    if found.kind != "folder":
        raise FailedPrecondition(f"{field}: {parent_id} is a job, not a folder")


def subtree_unlocked(session: Session, job_id: int) -> list[TreeNode]:
    """The job or folder and everything inside it, which the caller may change
    and none of which is locked."""
    tree = repo.subtree(session, job_id)
    ensure_may_change(tree)
    locked = sorted(int(r.id) for r in tree if r.locked)
    if locked:
        raise FailedPrecondition(f"job_id: job {locked[0]} is locked; unlock it first")
    return tree


# A deletion's `reason` in the history of the runs it ends.
DELETION_MESSAGE = "killed: job deleted"


def delete_locked(session: Session, row: JobRecord, archived: bool) -> int:
    """Begin deleting the (locked) job or folder `row` and everything inside
    it: live chunks are released (their runs end as killed) and every job of
    the tree is marked as being deleted, so the scheduler gives none of them
    a chunk again. Returns the root's id for finish_deletion, which deletes
    the rows once the caller has committed this transaction. History and
    backups stay.

    Two transactions, so that no render-loop statement waits for the long
    one: deleting a job of a million chunks takes seconds, and a result
    batch that waited for the assignments such a transaction held kept every
    node's result waiting (docs/render-loop.md, "A deletion in two steps")."""
    job_id = int(row.id)
    tree = subtree_unlocked(session, job_id)
    ids = sorted(int(r.id) for r in tree)
    # What the job was, for those who hear of it once it is gone (onDeleteJob).
    snapshot = {f: getattr(row, f) for f in DELETED_JOB_FIELDS}
    nodes = repo.release_assignments(session, ids, DELETION_MESSAGE)
    event = {
        "job_id": job_id,
        "deleted_ids": ids,
        "node_ids": nodes,
        "archived": archived,
        "job": snapshot,
        # Stamped now: the event may be published by another process.
        **current_caller().stamp(),
    }
    repo.mark_deleting(session, job_id, ids, event)
    return job_id


# Attempts of a deletion's second transaction that PostgreSQL rolled back
# (a deadlock with a tick that read the job before the deletion began).
FINISH_ATTEMPTS = 3


def finish_deletion(db: Database, job_id: int, wait: bool = True) -> bool:
    """The second transaction of the deletion of `job_id` (delete_locked):
    the tree's rows go (their chunks, dependencies and marks with them) and
    job.deleted is published. False when no deletion of it is under way (or,
    without `wait`, another transaction is ending it)."""
    for attempt in range(FINISH_ATTEMPTS):
        try:
            with db.transaction() as session:
                event = repo.lock_deletion(session, job_id, wait)
                if event is None:
                    return False
                # A tick that read the job before the deletion began may
                # have given one of its chunks since: released with the rest.
                late = repo.release_assignments(session, event["deleted_ids"], DELETION_MESSAGE)
                if late:
                    event["node_ids"] = sorted({*event["node_ids"], *late})
                repo.delete_jobs(session, job_id)
                publish(session, topics.JOB_DELETED, event, key=str(job_id))
            return True
        except DBAPIError as exc:
            if attempt + 1 == FINISH_ATTEMPTS or not retryable(exc):
                raise
    raise AssertionError("unreachable")


# A deletion whose second transaction has not come this long after its first
# is taken for one whose process died, and is finished by any replica.
DELETION_GRACE_SECONDS = 60.0


def finish_deletions(db: Database, grace_seconds: float = DELETION_GRACE_SECONDS) -> int:
    """Finish the deletions begun more than `grace_seconds` ago (their process
    died between the two transactions); returns how many this call ended."""
    with db.read_session() as session:
        roots = repo.deletions_begun_before(session, grace_seconds)
    ended = sum(finish_deletion(db, root, wait=False) for root in roots)
    if ended:
        _LOG.info("finished %d deletion(s) begun by a process that stopped", ended)
    return ended
