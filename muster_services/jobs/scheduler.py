"""The scheduler: matches ready chunks to idle nodes, one leader per farm.

Leadership is a Postgres session advisory lock held on a dedicated
connection: the lock goes the moment the leader's connection dies, and a
standby takes it at its next try. Each tick reads the farm once, decides in
memory, and commits every assignment of the tick in one transaction; the
database arbitrates (one live assignment per chunk and per node, conditional
chunk updates), so a second scheduler by mistake can only lose races, never
double-book. Agents hear of an assignment only from its committed event.

Licence and delay groups of templates (muster_services/jobs/licences.py) bound each
tick: their running counts are read inside the tick's transaction, under a
transaction-level lock that serialises ticks planning grouped chunks, and a
chunk planned in the tick counts at once (docs/render-loop.md, "Licence and
delay groups").
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from muster_services.admin.store import pools_by_member, pools_of
from muster_services.core import metrics
from muster_services.core.bus import (
    ASSIGNMENTS_CHANNEL,
    ListeningThread,
    try_advisory_lock,
)
from muster_services.core.database import Database
from muster_services.jobs import store
from muster_services.jobs.domain import (
    CandidateJob,
    FreeNode,
    counter_moves,
    done_chunk_statuses,
    eligible,
    unmet_dependencies,
)
from muster_services.jobs.hooks import HookError, HookRunner
from muster_services.jobs.licences import GroupState, TickBudget
from muster_services.jobs.messages import chunk_message, job_message

_LOG = logging.getLogger(__name__)

LEADER_LOCK_KEY = 0x6D75737465720002
# Extra queued chunks read for a job whose chunks onValidateChunkDependancies
# may hold back, so that vetoed chunks do not leave its nodes idle.
CHUNK_VETO_LOOKAHEAD = 32


@dataclass
class Planned:
    """One assignment of a tick: a chunk row for a node, run as `run_as_user`
    ("" = the agent's own user)."""

    job: CandidateJob
    chunk: Any
    node: FreeNode
    run_as_user: str = ""


class _TickHooks:
    """The scheduling validators of one tick, over a HookRunner.

    Per-chunk hooks cost one call per chunk, so they are called only when a
    hook file defines them (asked once per tick), and the job messages they
    receive are read once per tick.
    """

    def __init__(self, hooks: HookRunner | None, session: Session) -> None:
        self.hooks = hooks
        self.session = session
        defines = hooks.defines if hooks is not None else lambda _: False
        self.checks_jobs = defines("onValidateJobDependancies")
        self.checks_chunks = defines("onValidateChunkDependancies")
        self.impersonates = defines("onDispatcherOverrideImpersonationUser")
        self._jobs: dict[int, Any] = {}

    def job(self, job: CandidateJob) -> Any:
        message = self._jobs.get(job.id)
        if message is None:
            (row,) = store.jobs_by_ids(self.session, [job.id])
            message = self._jobs[job.id] = job_message(row)
        return message

    def job_vetoed(self, job: CandidateJob) -> bool:
        """onValidateJobDependancies holds back a job whose dependencies are met."""
        if not self.checks_jobs:
            return False
        assert self.hooks is not None
        reason = self.hooks.validate(
            "onValidateJobDependancies", self.job(job), template_id=job.template_id
        )
        return reason is not None

    def chunk_vetoed(self, job: CandidateJob, chunk: Any) -> bool:
        """onValidateChunkDependancies holds back one chunk of such a job."""
        assert self.hooks is not None
        reason = self.hooks.validate(
            "onValidateChunkDependancies",
            self.job(job),
            chunk_message(chunk),
            template_id=job.template_id,
        )
        return reason is not None

    def run_as_user(self, job: CandidateJob, chunk: Any, node: FreeNode) -> str:
        """The OS user onDispatcherOverrideImpersonationUser picks ("" = the agent's)."""
        if not self.impersonates:
            return ""
        assert self.hooks is not None
        try:
            answer = self.hooks.call(
                "onDispatcherOverrideImpersonationUser",
                self.job(job),
                chunk_message(chunk),
                node.name,
                template_id=job.template_id,
            )
        except HookError:
            return ""  # logged; the chunk runs as the agent's own user
        value = answer.get("value")
        return value.strip() if isinstance(value, str) else ""


class Scheduler(ListeningThread):
    def __init__(
        self,
        db: Database,
        tick_seconds: float = 1.0,
        batch_size: int = 500,
        hooks: HookRunner | None = None,
        idle_seconds: float = 60.0,
    ) -> None:
        super().__init__(db, "scheduler", tick_seconds)
        self.tick_seconds = tick_seconds
        self.batch_size = batch_size
        # onValidateJobDependancies may hold a job whose dependencies are met;
        # onDispatcherIdling runs once the farm had nothing to dispatch for
        # `idle_seconds`.
        self.hooks = hooks
        self.idle_seconds = idle_seconds
        self._last_busy = time.monotonic()
        self._idle_reported = False
        self.is_leader = threading.Event()
        self.assigned_total = 0

    # --- leadership (ListeningThread) ---------------------------------------------------

    def _admit(self, conn: Any) -> bool:
        if not try_advisory_lock(conn, LEADER_LOCK_KEY):
            return False
        _LOG.info("scheduler: this process is the leader")
        self.is_leader.set()
        return True

    def _serve(self, conn: Any) -> None:
        try:
            self._lead(conn)
        finally:
            self.is_leader.clear()

    def _lead(self, conn: Any) -> None:
        while not self._stop.is_set():
            try:
                with metrics.scheduler_tick():
                    assigned = self.tick()
            except (IntegrityError, DBAPIError) as exc:
                # Lost a race (a node or chunk changed under us): next tick.
                _LOG.debug("scheduler tick rolled back: %s", exc)
                assigned = 0
            metrics.dispatched(assigned)
            self._note_idling(assigned)
            if assigned >= self.batch_size:
                continue  # more may be ready right away
            # Sleep until something happens on the bus or the tick passes.
            for _ in conn.notifies(timeout=self.tick_seconds, stop_after=1):
                pass
            # Leadership holds only while this connection lives.
            conn.execute("SELECT 1")

    def _note_idling(self, assigned: int) -> None:
        now = time.monotonic()
        if assigned:
            self._last_busy, self._idle_reported = now, False
        elif (
            self.hooks is not None
            and not self._idle_reported
            and now - self._last_busy >= self.idle_seconds
        ):
            self._idle_reported = True
            with contextlib.suppress(HookError):
                self.hooks.call("onDispatcherIdling")

    # --- one tick -----------------------------------------------------------------------

    def tick(self) -> int:
        """Assign what can be assigned now; returns how many chunks."""
        with self.db.transaction() as session:
            if not store.start_tick(session):
                return 0
            # The rows first, the nodes built only once there is a job for
            # them: an idle farm's tick reads two empty or short results.
            free = store.free_nodes(session, self.batch_size)
            if not free:
                return 0
            candidates = self._candidate_jobs(session)
            if not candidates:
                return 0
            nodes = self._free_nodes(session, free)
            budget = self._budget(session)
            plan = self._match(session, nodes, candidates, budget)
            if plan:
                self._commit(session, plan)
                if budget.delay_groups_started:
                    store.record_delay_starts(session, budget.delay_groups_started)
            self.assigned_total += len(plan)
            return len(plan)

    @staticmethod
    def _budget(session: Session) -> TickBudget:
        """The licence and delay groups' room for this tick (muster_services/jobs/
        licences.py): one statement when no template names a group; else the
        groups' lock, then their counts read after it (a chunk assigned by a
        tick that committed while this one waited is counted)."""
        if not store.lock_template_groups(session):
            return TickBudget()
        return TickBudget(GroupState.of(row) for row in store.template_group_states(session))

    def _match(
        self,
        session: Session,
        nodes: list[FreeNode],
        candidates: list[CandidateJob],
        budget: TickBudget,
    ) -> list[Planned]:
        """This tick's assignments: candidate jobs in order, each given the free
        nodes it may use, its queued chunks in frame order, within the licence
        and delay groups' budget."""
        excluded_jobs, excluded_templates = store.exclusions(session)
        hooks = _TickHooks(self.hooks, session)
        plan: list[Planned] = []
        for job in candidates:
            if not nodes:
                break
            # With chunk dependencies a job whose dependencies are unmet
            # may still have ready chunks; otherwise it waits whole.
            waiting_for = unmet_dependencies(job.depend_mode, job.dependencies)
            if waiting_for and not job.depend_chunks:
                continue
            if job.dependencies and hooks.job_vetoed(job):
                continue
            capacity = job.max_nodes - job.working if job.max_nodes else len(nodes)
            usable = [n for n in nodes if eligible(n, job, excluded_jobs, excluded_templates)]
            take = budget.allowance(
                job.template_id, min(capacity, len(usable), self.batch_size - len(plan))
            )
            if take <= 0:
                continue
            # A job with dependencies may have chunks vetoed by
            # onValidateChunkDependancies: look a little further.
            vetoes = bool(job.dependencies) and hooks.checks_chunks
            ready = self._ready_chunks(
                session, job, waiting_for, take + CHUNK_VETO_LOOKAHEAD if vetoes else take
            )
            if vetoes:
                ready = [c for c in ready if not hooks.chunk_vetoed(job, c)][:take]
            for chunk, node in zip(ready, usable, strict=False):
                plan.append(Planned(job, chunk, node, hooks.run_as_user(job, chunk, node)))
                nodes.remove(node)
            budget.consume(job.template_id, min(len(ready), len(usable)))
            if len(plan) >= self.batch_size:
                break
        return plan

    @staticmethod
    def _ready_chunks(
        session: Session, job: CandidateJob, waiting_for: list[int], limit: int
    ) -> Sequence[Any]:
        """The job's next `limit` queued chunks in frame order, locked for this
        tick; while jobs `waiting_for` hold back a job with chunk dependencies,
        only its chunks whose frames no unfinished chunk of those jobs covers."""
        return store.ready_chunks(
            session, job.id, waiting_for, done_chunk_statuses(job.depend_mode), limit
        )

    @staticmethod
    def _free_nodes(session: Session, rows: Sequence[Any]) -> list[FreeNode]:
        """The free nodes' rows (store.free_nodes) with their pools."""
        members = pools_by_member(session)
        return [
            FreeNode(
                r.id,
                r.name,
                r.host_name,
                {p.lower() for p in pools_of(members, r.pools, r.name, r.host_name)},
                r.platform,
            )
            for r in rows
        ]

    @staticmethod
    def _candidate_jobs(session: Session) -> list[CandidateJob]:
        rows = store.candidate_jobs(session)
        if not rows:
            return []
        # A node only gets chunks of templates enabled for its platform.
        platforms = store.template_platforms(session)
        return [
            CandidateJob(
                r.id,
                r.template_id,
                list(r.included_pools),
                list(r.excluded_pools),
                r.max_nodes,
                r.working,
                r.depend_mode,
                r.depend_chunks,
                r.started,
                {int(k): v for k, v in (r.dependencies or {}).items()},
                platforms.get(r.template_id),
            )
            for r in rows
        ]

    @staticmethod
    def _commit(session: Session, plan: list[Planned]) -> None:
        """Write the tick's assignments and their events: one set-based
        statement (store.assign), whatever the count."""
        planned = [
            {
                "job": p.job.id,
                "chunk": p.chunk.chunk_number,
                "node": p.node.id,
                "name": p.node.name,
                "run_as": p.run_as_user,
            }
            for p in plan
        ]
        # The assignments, their chunks (only if still queued), their
        # `running` history entries, the jobs' counters (their rows in id
        # order, as a result's transaction takes them) and the events: one
        # `chunk.started` per assignment with the run's fencing token, for
        # the job's followers (consoles, notificators, the activity log;
        # docs/render-loop.md, "One event per assignment"), and `job.started`
        # for the jobs whose first chunks these are. The nodes service sends
        # the assignments on the hint as soon as this commits, without
        # waiting for the outbox's events (which remain the record).
        started = store.assign(
            session,
            planned,
            {
                job_id: counter_moves([("queued", "assigned")] * n)
                for job_id, n in Counter(row["job"] for row in planned).items()
            },
            sorted({p.job.id for p in plan if not p.job.started}),
            (ASSIGNMENTS_CHANNEL, sorted({p.node.id for p in plan})),
        )
        if started != len(planned):
            raise IntegrityError("chunks changed while assigning", None, Exception())
