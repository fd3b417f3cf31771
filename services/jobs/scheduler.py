"""The scheduler: matches ready chunks to idle nodes, one leader per farm.

Leadership is a Postgres session advisory lock held on a dedicated
connection: the lock goes the moment the leader's connection dies, and a
standby takes it at its next try. Each tick reads the farm once, decides in
memory, and commits every assignment of the tick in one transaction; the
database arbitrates (one live assignment per chunk and per node, conditional
chunk updates), so a second scheduler by mistake can only lose races, never
double-book. Agents hear of an assignment only from its committed event.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from gateway.hooks import HookError, HookRunner
from services.admin.store import pools_by_member, pools_of
from services.core.bus import (
    ASSIGNMENTS_CHANNEL,
    ListeningThread,
    publish_many,
    try_advisory_lock,
)
from services.core.database import Database
from services.jobs.domain import done_chunk_statuses, unmet_dependencies
from services.jobs.messages import chunk_message, job_message
from services.jobs.store import LOCK_JOBS, jobs_by_ids

_LOG = logging.getLogger(__name__)

LEADER_LOCK_KEY = 0x6D75737465720002
# Extra queued chunks read for a job whose chunks onValidateChunkDependancies
# may hold back, so that vetoed chunks do not leave its nodes idle.
CHUNK_VETO_LOOKAHEAD = 32
# Chunk dependencies compare frames in millionths of a frame, as bigint: the
# largest frame (domain.MAX_FRAME, 1e9) makes 1e15, exact in a double (< 2**53).
FRAME_SCALE = 1_000_000


@dataclass
class FreeNode:
    id: int
    name: str
    host_name: str
    pools: set[str]


@dataclass
class CandidateJob:
    id: int
    template_id: int | None
    included_pools: list[str]
    excluded_pools: list[str]
    max_nodes: int
    working: int
    depend_mode: str
    depend_chunks: bool
    started: bool
    # The jobs it depends on: id -> status.
    dependencies: dict[int, str] = field(default_factory=dict)


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
            (row,) = jobs_by_ids(self.session, [job.id])
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


def eligible(
    node: FreeNode,
    job: CandidateJob,
    excluded_jobs: set[tuple[int, int]],
    excluded_templates: set[tuple[int, int]],
) -> bool:
    """Whether `node` may run a chunk of `job` (pure rule)."""
    included = {p.lower() for p in job.included_pools}
    excluded = {p.lower() for p in job.excluded_pools}
    if included and not included & node.pools:
        return False
    if excluded & node.pools:
        return False
    if (node.id, job.id) in excluded_jobs:
        return False
    return not (job.template_id is not None and (node.id, job.template_id) in excluded_templates)


def start_tick(session: Session) -> bool:
    """Whether the engine runs; and for the rest of the tick's transaction,
    ready chunks read by an index scan in chunk order (one statement).

    Left to itself the planner often estimates a fresh job's queued chunks at
    a handful (its statistics predate the job), reads *every* queued chunk of
    the job, sorts them and keeps the first few: a tick then costs in
    proportion to the queue (tens of milliseconds at 100,000 queued chunks,
    seconds at 1,000,000). Without sorts and bitmap scans the only plan left
    is ix_chunks_ready in chunk order, stopped after LIMIT rows; the tick's
    other statements have no cheaper plan than the one they had (a sort with
    no alternative still runs), and the settings end with the transaction.
    """
    status = session.execute(
        text(
            "SELECT (SELECT status FROM engine_state WHERE id = 1),"
            " set_config('enable_sort', 'off', true), set_config('enable_bitmapscan', 'off', true)"
        )
    ).scalar()
    return status in (None, "running")


# The job's row is held FOR KEY SHARE for the rest of the tick, unless a
# transaction holds it FOR UPDATE (a deletion, an edit): then the job is left
# for the next tick. Reading its chunks first and waiting for its row only at
# the counters' update deadlocked with a deletion, which holds the row and
# waits for those chunks.
_JOB_HELD = (
    "WITH held AS MATERIALIZED (SELECT id FROM jobs WHERE id = :job FOR KEY SHARE SKIP LOCKED) "
)
# The first queued chunks of a job in frame order, locked (after start_tick).
READY_CHUNKS = (
    f"{_JOB_HELD}SELECT * FROM chunks WHERE job_id = :job AND status = 'queued'"
    " AND EXISTS (SELECT FROM held)"
    " ORDER BY chunk_number LIMIT :limit FOR UPDATE OF chunks SKIP LOCKED"
)


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
                assigned = self.tick()
            except (IntegrityError, DBAPIError) as exc:
                # Lost a race (a node or chunk changed under us): next tick.
                _LOG.debug("scheduler tick rolled back: %s", exc)
                assigned = 0
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
            if not start_tick(session):
                return 0
            nodes = self._free_nodes(session)
            if not nodes:
                return 0
            candidates = self._candidate_jobs(session)
            if not candidates:
                return 0
            plan = self._match(session, nodes, candidates)
            if plan:
                self._commit(session, plan)
            self.assigned_total += len(plan)
            return len(plan)

    def _match(
        self, session: Session, nodes: list[FreeNode], candidates: list[CandidateJob]
    ) -> list[Planned]:
        """This tick's assignments: candidate jobs in order, each given the free
        nodes it may use, its queued chunks in frame order."""
        excluded_jobs, excluded_templates = self._exclusions(session)
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
            take = min(capacity, len(usable), self.batch_size - len(plan))
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
            if len(plan) >= self.batch_size:
                break
        return plan

    @staticmethod
    def _ready_chunks(
        session: Session, job: CandidateJob, waiting_for: list[int], limit: int
    ) -> Sequence[Any]:
        """The job's next `limit` queued chunks in frame order, locked for this
        tick. While jobs `waiting_for` hold back a job with chunk dependencies,
        only its chunks whose frames no unfinished chunk of those jobs covers.

        One statement, O((K + Q) log K) for K unfinished dependency chunks and
        Q queued chunks: the unfinished chunks' frame ranges are merged into
        one multirange, and each queued chunk is one binary search in it (a
        NOT EXISTS per chunk compares every pair: 0.4 s per pass at 10,000 x
        10,000, docs/benchmarks.md). Frames compare as whole millionths of a
        frame (FRAME_SCALE): bigint ranges are cheap, and rounding is monotone,
        so ranges that share a frame always overlap, and by-frame rounding
        (1 + 3 * 0.1 against 1.3) never separates the same frame."""
        if not waiting_for:
            return session.execute(text(READY_CHUNKS), {"job": job.id, "limit": limit}).all()
        return session.execute(
            text(
                f"{_JOB_HELD}, busy AS (SELECT range_agg(int8range("
                "CAST(round(d.start_frame * :scale) AS bigint),"
                " CAST(round(d.end_frame * :scale) AS bigint), '[]')) AS frames"
                " FROM chunks d WHERE d.job_id IN :waiting AND d.status NOT IN :done)"
                " SELECT c.* FROM chunks c CROSS JOIN busy h"
                " WHERE c.job_id = :job AND c.status = 'queued' AND EXISTS (SELECT FROM held)"
                " AND NOT coalesce(h.frames && int8range("
                "CAST(round(c.start_frame * :scale) AS bigint),"
                " CAST(round(c.end_frame * :scale) AS bigint), '[]'), false)"
                " ORDER BY c.chunk_number LIMIT :limit FOR UPDATE OF c SKIP LOCKED"
            ).bindparams(bindparam("waiting", expanding=True), bindparam("done", expanding=True)),
            {
                "job": job.id,
                "waiting": waiting_for,
                "done": sorted(done_chunk_statuses(job.depend_mode)),
                "scale": float(FRAME_SCALE),
                "limit": limit,
            },
        ).all()

    def _free_nodes(self, session: Session) -> list[FreeNode]:
        rows = session.execute(
            text(
                "SELECT n.id, n.name, n.host_name, n.pools FROM nodes n"
                " WHERE n.status = 'idle' AND NOT n.paused AND n.session_id IS NOT NULL"
                " AND NOT EXISTS (SELECT 1 FROM chunk_assignments a WHERE a.node_id = n.id)"
                " ORDER BY n.id LIMIT :limit"
            ),
            {"limit": self.batch_size},
        ).all()
        if not rows:
            return []
        members = pools_by_member(session)
        return [
            FreeNode(
                r.id,
                r.name,
                r.host_name,
                {p.lower() for p in pools_of(members, r.pools, r.name, r.host_name)},
            )
            for r in rows
        ]

    def _candidate_jobs(self, session: Session) -> list[CandidateJob]:
        # Each job's dependencies (id -> status) come with it: one round trip.
        # A deleted dependency has no row left here: it holds nothing back.
        rows = session.execute(
            text(
                "SELECT j.id, j.template_id, j.included_pools, j.excluded_pools, j.max_nodes,"
                " j.depend_mode, j.depend_chunks, j.started_at IS NOT NULL AS started,"
                " (SELECT count(*) FROM chunk_assignments a WHERE a.job_id = j.id) AS working,"
                " (SELECT jsonb_object_agg(d.depends_on_job_id, o.status)"
                " FROM job_dependencies d JOIN jobs o ON o.id = d.depends_on_job_id"
                " WHERE d.job_id = j.id) AS dependencies"
                " FROM jobs j WHERE j.kind = 'job' AND NOT j.paused AND j.chunks_queued > 0"
                " AND j.status <> 'failed'"
                " ORDER BY j.priority DESC, j.submitted_at, j.id LIMIT 2000"
            )
        ).all()
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
            )
            for r in rows
        ]

    @staticmethod
    def _exclusions(session: Session) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
        """(node, job) pairs excluded now and (node, template) pairs, in one read."""
        jobs: set[tuple[int, int]] = set()
        templates: set[tuple[int, int]] = set()
        for kind, node, other in session.execute(
            text(
                "SELECT 'job', node_id, job_id FROM node_job_exclusions"
                " WHERE excluded_until > now()"
                " UNION ALL SELECT 'template', node_id, template_id FROM node_template_exclusions"
            )
        ).all():
            (jobs if kind == "job" else templates).add((int(node), int(other)))
        return jobs, templates

    @staticmethod
    def _commit(session: Session, plan: list[Planned]) -> None:
        """Write the tick's assignments: a few set-based statements, whatever the count."""
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
        # Each assignment takes its fencing token from the sequence as it is
        # inserted; the unique constraints refuse a second live assignment per
        # chunk or node.
        tokens = {
            (row.job_id, row.chunk_number): int(row.fencing_token)
            for row in session.execute(
                text(
                    "INSERT INTO chunk_assignments"
                    " (fencing_token, job_id, chunk_number, node_id, run_as_user)"
                    " SELECT nextval('fencing_tokens'), v.job, v.chunk, v.node, v.run_as"
                    " FROM ROWS FROM (jsonb_to_recordset(CAST(:rows AS jsonb))"
                    " AS (job bigint, chunk int, node bigint, run_as text))"
                    " WITH ORDINALITY AS v(job, chunk, node, run_as, n)"
                    " ORDER BY v.n RETURNING fencing_token, job_id, chunk_number"
                ),
                {"rows": json.dumps(planned)},
            ).all()
        }
        rows = [{**r, "token": tokens[(r["job"], r["chunk"])]} for r in planned]
        # The chunks (only if still queued) and their `running` history entries.
        # Started at this statement's time, not the tick's start: the tick's
        # reads may have seen results committed after it began (a chunk
        # dependency's run must not look as if it ended after this one started).
        started = session.execute(
            text(
                "WITH c AS (UPDATE chunks c SET status = 'assigned', node_id = v.node,"
                " node_name = v.name, fencing_token = v.token, started_at = statement_timestamp(),"
                " ended_at = NULL, exit_code = NULL, progress = 0,"
                " runs_count = c.runs_count + 1, version = c.version + 1"
                " FROM jsonb_to_recordset(CAST(:rows AS jsonb))"
                " AS v(job bigint, chunk int, node bigint, name text, token bigint)"
                " WHERE c.job_id = v.job AND c.chunk_number = v.chunk AND c.status = 'queued'"
                " RETURNING c.job_id, c.chunk_number, c.runs_count, c.node_id, c.node_name,"
                " c.fencing_token, c.start_frame, c.end_frame)"
                " INSERT INTO chunk_runs (job_id, chunk_number, run_number, node_id, node_name,"
                " fencing_token, start_frame, end_frame, started_at, outcome)"
                " SELECT job_id, chunk_number, runs_count, node_id, node_name, fencing_token,"
                " start_frame, end_frame, statement_timestamp(), 'running' FROM c"
            ),
            {"rows": json.dumps(rows)},
        ).rowcount  # type: ignore[attr-defined]
        if started != len(rows):
            raise IntegrityError("chunks changed while assigning", None, Exception())
        per_job: dict[Any, int] = defaultdict(int)
        events: list[tuple[str, dict[str, Any], str]] = []
        for row in rows:
            per_job[row["job"]] += 1
            assigned = {
                "job_id": row["job"],
                "chunk_id": row["chunk"],
                "node_id": row["node"],
                "actor": "scheduler",
            }
            events.append(
                ("chunk.assigned", {**assigned, "fencing_token": row["token"]}, str(row["node"]))
            )
            events.append(("chunk.started", assigned, str(row["job"])))
        # The jobs' rows in id order, as a result's transaction takes them.
        session.execute(
            text(
                f"{LOCK_JOBS} UPDATE jobs j SET chunks_queued = j.chunks_queued - v.n,"
                " chunks_running = j.chunks_running + v.n, status = 'running',"
                " started_at = coalesce(j.started_at, now()), updated_at = now(),"
                " version = j.version + 1"
                " FROM locked l, jsonb_to_recordset(CAST(:counts AS jsonb)) AS v(job bigint, n int)"
                " WHERE j.id = l.id AND j.id = v.job"
            ),
            {
                "ids": sorted(per_job),
                "counts": json.dumps([{"job": j, "n": n} for j, n in per_job.items()]),
            },
        )
        started = {p.job.id for p in plan if not p.job.started}
        events.extend(
            ("job.started", {"job_id": job_id, "actor": "scheduler"}, str(job_id))
            for job_id in sorted(started)
        )
        # The nodes service sends the assignments as soon as this commits,
        # without waiting for the outbox's events (which remain the record).
        publish_many(session, events, (ASSIGNMENTS_CHANNEL, sorted({p.node.id for p in plan})))
