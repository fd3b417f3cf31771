"""What the jobs use cases share: a job by id, who may change it, a folder to
put a job in, the tree a change of a job or folder reaches (deletions and
reinits: muster_services/jobs/teardowns.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from sqlalchemy.orm import Session

from muster_services.core.caller import current_caller
from muster_services.core.errors import FailedPrecondition, NotFound, PermissionDenied
from muster_services.jobs import store as repo
from muster_services.jobs.domain import ROOT, JobRecord, TreeNode


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
