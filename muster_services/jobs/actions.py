"""Pre- and post-job custom actions, run by the dispatcher (the jobs service).

A job's `pre_job_action` runs when its first chunk is dispatched (the
`job.started` event), its `post_job_action` when it reaches a finished
status (`job.completed`, once per completion). They run in the durable bus
consumer "job-actions" (one replica at a time holds it: Listener exclusive),
in a thread of their own, so a slow action never holds the scheduler back;
one action at a time, in the events' order.

Each run is a row of `job_actions`, keyed by its event: written 'running'
and committed before the action's process starts, then its end. So an action
never starts twice: a replica that dies while an action runs leaves the row
'running'; the replica that takes the consumer over meets that event again,
finds the row and marks it 'interrupted' instead of starting it again. The
command line is expanded (muster_gateway/expressions.py: escapes, %ATTR(name),
inline expressions with `job` bound and `chunk` None, evaluated in a child
process in the "dispatcher" context), then run by the system shell with the
dispatcher's environment, working folder and user, within
JOB_ACTION_SECONDS; its output (stdout and stderr, the last
MAX_OUTPUT_CHARS) is kept in the row and the last lines in the dispatcher's
log.

A failing action (expression error, exit code not 0, timeout) is recorded
'failed' with the reason; a failing pre-job action pauses the job (running
chunks finish, no new chunk starts until someone resumes it).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from muster_gateway.expressions import (
    POST_JOB_ACTION,
    PRE_JOB_ACTION,
    ExpressionError,
    Field,
    evaluate,
    shell_command,
    string_attribute,
)
from muster_services.core.bus import Event
from muster_services.core.caller import current_caller
from muster_services.core.database import Database
from muster_services.core.errors import DomainError, PermissionDenied
from muster_services.jobs import domain, topics
from muster_services.jobs import store as repo
from muster_services.jobs.messages import job_message
from muster_services.jobs.tables import job_actions

if TYPE_CHECKING:
    from muster_services.jobs.queue import QueueService

__all__ = ["ACTION_TOPICS", "JOB_ACTION_SECONDS", "JobActions", "ensure_may_set_job_actions"]

_LOG = logging.getLogger(__name__)

# The event that runs each action, and the attribute that holds it.
ACTION_TOPICS = {
    topics.JOB_STARTED: ("pre_job", PRE_JOB_ACTION),
    topics.JOB_COMPLETED: ("post_job", POST_JOB_ACTION),
}
_JOB_ACTION_ATTRIBUTES = frozenset(attribute for _, attribute in ACTION_TOPICS.values())
JOB_ACTION_SECONDS = 600.0
MAX_OUTPUT_CHARS = 64 * 1024
LOGGED_LINES = 20


def ensure_may_set_job_actions(
    current: Iterable[domain.Attribute], new: Iterable[domain.Attribute]
) -> None:
    """Job actions run on the dispatcher, as its user, with its environment:
    only an administrator (or the dispatcher itself) gives a job one or
    changes it. Chunk actions run on the nodes like the render itself: anyone
    who may submit the job may set them."""
    caller = current_caller()
    if caller.is_administrator:
        return
    before = {a.name: a.value for a in current if a.name in _JOB_ACTION_ATTRIBUTES}
    after = {a.name: a.value for a in new if a.name in _JOB_ACTION_ATTRIBUTES}
    for name in sorted(before.keys() | after.keys()):
        if before.get(name, "") != after.get(name, ""):
            raise PermissionDenied(
                f"job.attributes[{name}]: {caller.describe()}; only an administrator sets"
                " a job action (it runs on the dispatcher)"
            )


@dataclasses.dataclass(frozen=True)
class _Outcome:
    status: str
    exit_code: int | None
    message: str
    output: str


class JobActions:
    """The "job-actions" consumer's handler: runs the action an event asks
    for (if the job has one), at most once per event."""

    def __init__(
        self, db: Database, queue: QueueService, timeout: float = JOB_ACTION_SECONDS
    ) -> None:
        self.db = db
        self.queue = queue
        self.timeout = timeout

    def handle(self, session: Session, event: Event) -> None:
        """The consumer's transaction (`session`) is not used: the action's
        row must be committed before the process starts."""
        kind, attribute = ACTION_TOPICS[event.topic]
        job_id = int(event.payload.get("job_id", 0))
        started = self._start(event.id, job_id, kind, attribute)
        if started is None:
            return
        row_id, job = started
        outcome = self._run(kind, attribute, job)
        with self.db.transaction() as s:
            s.execute(
                update(job_actions)
                .where(job_actions.c.id == row_id)
                .values(
                    status=outcome.status,
                    exit_code=outcome.exit_code,
                    message=outcome.message,
                    output=outcome.output,
                    ended_at=func.now(),
                )
            )
        tail = "\n".join(outcome.output.splitlines()[-LOGGED_LINES:])
        level = logging.INFO if outcome.status == "succeeded" else logging.WARNING
        _LOG.log(level, "%s action of job %d: %s\n%s", kind, job_id, outcome.message, tail)
        if kind == "pre_job" and outcome.status == "failed":
            self._pause(job_id)

    def _start(
        self, event_id: int, job_id: int, kind: str, attribute: str
    ) -> tuple[int, Any] | None:
        """The new 'running' row's id and the job message, or None: no job,
        no action, or this event's action was run already (a 'running' row
        left by a replica that stopped is marked interrupted)."""
        with self.db.transaction() as s:
            row = repo.get_job(s, job_id)
            if row is None or row.kind != "job":
                return None
            job = job_message(row)
            command = string_attribute(job, attribute)
            if not command.strip():
                return None
            inserted = s.execute(
                pg_insert(job_actions)
                .values(event_id=event_id, job_id=job_id, kind=kind, command=command)
                .on_conflict_do_nothing(index_elements=["event_id"])
                .returning(job_actions.c.id)
            ).scalar()
            if inserted is None:
                s.execute(
                    update(job_actions)
                    .where(job_actions.c.event_id == event_id, job_actions.c.status == "running")
                    .values(
                        status="interrupted",
                        message="the dispatcher replica running it stopped before its end;"
                        " not started again",
                        ended_at=func.now(),
                    )
                )
                return None
            return int(inserted), job

    def _run(self, kind: str, attribute: str, job: Any) -> _Outcome:
        try:
            command = evaluate(
                [
                    Field(
                        f"job.attributes[{attribute}]",
                        string_attribute(job, attribute),
                        action=True,
                    )
                ],
                job,
                None,
                context="dispatcher",
            )[f"job.attributes[{attribute}]"]
        except ExpressionError as exc:
            return _Outcome("failed", None, str(exc), exc.detail[-MAX_OUTPUT_CHARS:])
        executable, arguments = shell_command(command)
        try:
            process = subprocess.Popen(
                [executable, *arguments],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                text=True,
                errors="replace",
            )
        except OSError as exc:
            return _Outcome("failed", None, f"cannot start {executable}: {exc}", "")
        try:
            output, _ = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            return _Outcome(
                "failed", None, f"timed out after {self.timeout:g}s", output[-MAX_OUTPUT_CHARS:]
            )
        output = output[-MAX_OUTPUT_CHARS:]
        if process.returncode != 0:
            return _Outcome("failed", process.returncode, f"exit code {process.returncode}", output)
        return _Outcome("succeeded", 0, "exit code 0", output)

    def _pause(self, job_id: int) -> None:
        try:
            row = self.queue.get_job(job_id)
            spec = dataclasses.replace(domain.spec_of(row), paused=True)
            self.queue.update_job(job_id, spec, ["paused"])
        except DomainError as exc:
            _LOG.warning("cannot pause job %d after its pre-job action failed: %s", job_id, exc)


def job_action_runs(session: Session, job_id: int) -> list[Any]:
    """The job's action rows, oldest first (tests, support)."""
    return list(
        session.execute(
            select(job_actions).where(job_actions.c.job_id == job_id).order_by(job_actions.c.id)
        )
    )
