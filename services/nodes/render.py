"""The nodes service's side of the render loop.

- `chunk.assigned` (committed by the scheduler) -> the Assignment goes down
  the stream of the agent that holds the node, and the node is rendering;
- a (re)connecting agent is reconciled with the live assignment of its node:
  a missing assignment is sent again, a process whose assignment is gone is
  killed (its late report will be stale);
- results and log lines go to the jobs service (ChunkRunsService) with their
  fencing tokens; the agent hears ResultAccepted only once the jobs service
  has recorded the result, so it re-sends otherwise.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from sqlalchemy import BigInteger, BindParameter, Row, and_, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from farm.agent.v1 import agent_pb2
from farm.common.v1 import common_pb2
from farm.jobs.v1 import chunk_runs_pb2, chunk_runs_pb2_grpc
from services.admin.configuration import read_configuration
from services.admin.domain import DispatcherConfig
from services.admin.paths import RepositoryPaths, map_path
from services.admin.store import all_repositories
from services.core.auth import ServiceIdentity
from services.core.database import Database
from services.core.enums import EnumMap
from services.core.tls import open_aio_channel, open_channel
from services.jobs import templates as template_defs
from services.jobs.domain import attributes_from_json
from services.jobs.tables import chunk_assignments, chunks, jobs
from services.jobs.tables import templates as templates_table
from services.nodes.domain import KILL_FOLLOW_UP
from services.nodes.service import NodesService, RunningChunk
from services.nodes.sessions import AgentStream, SessionHub
from services.nodes.tables import node_commands, nodes

_LOG = logging.getLogger(__name__)

RPC_TIMEOUT_SECONDS = 30.0
RUN_OUTCOME = EnumMap(common_pb2.ChunkRunOutcome.DESCRIPTOR)
# Results are sent to the jobs service in batches: one transaction moves a
# job's counters once for every result of the batch.
BATCH_WINDOW_SECONDS = 0.005
# How long an assignment's event waits for the scheduler's hint to have sent it.
EVENT_GRACE_SECONDS = 0.1
MAX_BATCH = 500


# What every assignment of a batch shares, kept between batches: read again
# when an event says it changed (REFERENCE_TOPICS) and at least this often
# (templates change only when a replica starts and seeds them).
REFERENCE_SECONDS = 10.0
REFERENCE_TOPICS = frozenset(
    {
        "config.changed",
        "repository.created",
        "repository.updated",
        "repository.deleted",
        "repositories.changed",
    }
)


@dataclass(frozen=True)
class _Reference:
    config: DispatcherConfig
    mappings: list[RepositoryPaths]
    templates: dict[int, template_defs.Template]
    read_at: float


class ReferenceCache:
    """The dispatcher configuration, the repositories' paths and the templates
    that assignments are built with: three reads fewer per batch."""

    def __init__(self) -> None:
        self._current: _Reference | None = None

    def invalidate(self) -> None:
        self._current = None

    def get(self, session: Session, template_ids: set[int]) -> _Reference:
        current = self._current
        if (
            current is None
            or time.monotonic() - current.read_at > REFERENCE_SECONDS
            or not template_ids <= current.templates.keys()
        ):
            current = self._current = _Reference(
                read_configuration(session),
                [
                    RepositoryPaths(r.windows_path, r.linux_path, r.macos_path)
                    for r in all_repositories(session)
                ],
                {row.id: _template(row) for row in session.execute(select(templates_table))},
                time.monotonic(),
            )
        return current


def build_assignments(
    db: Database, node_ids: list[int], reference: ReferenceCache | None = None
) -> dict[int, agent_pb2.Assignment]:
    """The Assignment messages of these nodes' live assignments, read with a
    few set-based queries (reads of the jobs domain). No transaction: a job
    deleted between two reads leaves its assignment unbuilt (and gone)."""
    with db.read_session() as session:
        # Each live assignment with its node's platform and its chunk's frames.
        live = session.execute(
            select(
                chunk_assignments,
                nodes.c.platform,
                chunks.c.runs_count,
                chunks.c.start_frame,
                chunks.c.end_frame,
                chunks.c.by_frame,
                chunks.c.slice_index,
            )
            .join(nodes, nodes.c.id == chunk_assignments.c.node_id)
            .join(
                chunks,
                and_(
                    chunks.c.job_id == chunk_assignments.c.job_id,
                    chunks.c.chunk_number == chunk_assignments.c.chunk_number,
                ),
            )
            # One array parameter, not one per node: the statement's text is
            # the same for every batch, so PostgreSQL reuses its plan.
            .where(chunk_assignments.c.node_id == any_(_ids(node_ids)))
        ).all()
        if not live:
            return {}
        job_rows = {
            row.id: row
            for row in session.execute(
                select(jobs).where(jobs.c.id == any_(_ids({a.job_id for a in live})))
            ).all()
        }
        shared = (reference or ReferenceCache()).get(
            session, {j.template_id for j in job_rows.values()}
        )
    config, mappings, templates = shared.config, shared.mappings, shared.templates
    messages = {}
    for assignment in live:
        try:
            job = job_rows[assignment.job_id]
            messages[assignment.node_id] = _assignment_message(
                assignment,
                job,
                templates[job.template_id],
                config.chunk_timeout_seconds if config.abort_process_on_chunk_timeout else 0,
                # Attributes flagged for substitution become the node's own paths.
                functools.partial(
                    _substitute,
                    mappings=mappings,
                    platform=assignment.platform,
                    case_sensitive=config.substitution_paths_case_sensitive,
                ),
            )
        except Exception:
            _LOG.exception("cannot build the assignment of node %s", assignment.node_id)
    return messages


def _ids(values: Iterable[int]) -> BindParameter[Any]:
    ids: BindParameter[Any] = bindparam(None, sorted(values), type_=ARRAY(BigInteger))
    return ids


def _template(row: Row[Any]) -> template_defs.Template:
    return template_defs.Template(
        id=row.id,
        name=row.name,
        commands=tuple(template_defs.TemplateCommand.from_json(c) for c in row.commands),
        log_error_patterns=tuple(row.log_error_patterns),
        log_warning_patterns=tuple(row.log_warning_patterns),
        success_exit_codes=tuple(row.success_exit_codes),
    )


def _substitute(
    path: str, *, mappings: list[RepositoryPaths], platform: str, case_sensitive: bool
) -> str:
    return map_path(path, mappings, platform, case_sensitive)


def _assignment_message(
    live: Row[Any],
    job: Row[Any],
    template: template_defs.Template,
    default_timeout: int,
    substitute: Callable[[str], str],
) -> agent_pb2.Assignment:
    """`live`: the assignment row with its node's platform and its chunk's frames."""
    built = template_defs.build_command(
        template,
        template_defs.JobInput(
            id=job.id,
            attributes=attributes_from_json(job.attributes or {}),
            environment=dict(job.environment or {}),
        ),
        template_defs.ChunkInput(
            id=live.chunk_number,
            start_frame=live.start_frame,
            end_frame=live.end_frame,
            by_frame=live.by_frame,
            slice_index=live.slice_index,
        ),
        live.platform,
        substitute,
    )
    return agent_pb2.Assignment(
        job_id=job.id,
        chunk_id=live.chunk_number,
        fencing_token=live.fencing_token,
        run_number=live.runs_count,
        job_name=job.name,
        template_id=template.id,
        start_frame=live.start_frame,
        end_frame=live.end_frame,
        by_frame=live.by_frame,
        executable=built.executable,
        arguments=list(built.arguments),
        working_directory=built.working_directory,
        environment=dict(built.environment),
        # The job's own chunk timeout, else the configuration's global one.
        timeout_seconds=int(job.chunk_timeout_seconds or default_timeout),
        success_exit_codes=list(template.success_exit_codes),
        log_error_patterns=list(template.log_error_patterns),
        log_warning_patterns=list(template.log_warning_patterns),
        run_as_user=live.run_as_user,
    )


class RenderBridge:
    def __init__(
        self, db: Database, service: NodesService, hub: SessionHub, identity: ServiceIdentity
    ) -> None:
        self.db = db
        self.service = service
        self.hub = hub
        # The nodes service's own token for the jobs service's internal RPCs.
        self.identity = identity
        self.jobs_address = ""
        # NodeTimings: the exclusion rule in effect (set by the component).
        self.timings: Any = None
        self._channel: grpc.aio.Channel | None = None
        self._results: asyncio.Queue[tuple[AgentStream, agent_pb2.ChunkResult]] | None = None
        self.reference = ReferenceCache()
        self._wanted: set[int] = set()
        self._at_once = False
        self._wake = asyncio.Event()
        self._deliverer: asyncio.Future[None] | None = None
        self._rendering: set[int] = set()
        self._mark = asyncio.Event()
        self._marker: asyncio.Future[None] | None = None
        self._sender: asyncio.Future[None] | None = None

    def listening(self, address: str) -> None:
        """Co-hosted jobs service: report to the server's own address."""
        if not self.jobs_address:
            self.jobs_address = address

    def _stub(self) -> chunk_runs_pb2_grpc.ChunkRunsServiceAsyncStub:
        if self._channel is None:
            if not self.jobs_address:
                raise RuntimeError("no jobs service address (MUSTER_JOBS_ADDRESS)")
            self._channel = open_aio_channel(self.jobs_address)
        return chunk_runs_pb2_grpc.ChunkRunsServiceStub(self._channel)

    # --- assignments down ---------------------------------------------------------------

    def reference_event(self, topic: str) -> None:
        """Any event (bus thread): the configuration or the repositories changed?"""
        if topic in REFERENCE_TOPICS:
            self.reference.invalidate()

    def on_event(
        self, topic: str, payload: dict[str, Any], loop: asyncio.AbstractEventLoop
    ) -> None:
        """Called in the bus thread for chunk.assigned events."""
        node_id = int(payload.get("node_id", 0))
        if topic == "chunk.assigned" and node_id in self.hub.streams:
            token = int(payload.get("fencing_token", 0))
            loop.call_soon_threadsafe(self._assigned_event, node_id, token)

    def _assigned_event(self, node_id: int, token: int) -> None:
        # The scheduler's hint has usually sent it already (the event comes
        # after every transaction older than its commit has ended): look a
        # little later whether it is still missing (a hint lost while its
        # listener reconnected), instead of reading it again at once.
        asyncio.get_running_loop().call_later(
            EVENT_GRACE_SECONDS, self._send_if_missing, node_id, token
        )

    def _send_if_missing(self, node_id: int, token: int) -> None:
        stream = self.hub.streams.get(node_id)
        if stream is not None and stream.sent_token < token:
            self.want_assignments([node_id])

    def want_assignments(self, node_ids: list[int], at_once: bool = False) -> None:
        """Send these nodes their live assignments with the next batch (event
        loop); `at_once`: they are a batch already (a scheduler's hint)."""
        self._wanted.update(node_ids)
        self._at_once = self._at_once or at_once
        if self._deliverer is None:
            self._deliverer = asyncio.ensure_future(self._deliver_assignments())
            self._marker = asyncio.ensure_future(self._mark_rendering())
        self._wake.set()

    async def _deliver_assignments(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._at_once:
                await asyncio.sleep(BATCH_WINDOW_SECONDS)
            self._at_once = False
            wanted = sorted(n for n in self._wanted if n in self.hub.streams)
            self._wanted.clear()
            if not wanted:
                continue
            try:
                messages = await asyncio.to_thread(
                    build_assignments, self.db, wanted, self.reference
                )
                for node_id, message in messages.items():
                    stream = self.hub.streams.get(node_id)
                    if stream is None or stream.sent_token == message.fencing_token:
                        continue  # sent already
                    stream.sent_token = message.fencing_token
                    await stream.outgoing.put(agent_pb2.SessionResponse(assignment=message))
                    self._rendering.add(node_id)
                self._mark.set()
            except Exception:
                _LOG.exception("delivering %d assignments failed", len(wanted))

    async def _mark_rendering(self) -> None:
        """Nodes sent their chunk show as rendering: written beside the
        deliveries, so a slow write never holds back the next assignments."""
        while True:
            await self._mark.wait()
            self._mark.clear()
            marked, self._rendering = sorted(self._rendering), set()
            if marked:
                try:
                    await asyncio.to_thread(self.service.set_rendering_many, marked)
                except Exception:
                    _LOG.exception("marking %d nodes rendering failed", len(marked))

    async def reconcile(self, stream: AgentStream, running: RunningChunk | None) -> None:
        """After a (re)connect: line the agent up with its node's live assignment."""
        assignment = await asyncio.to_thread(self._live_token, stream.node_id)
        if running is not None and running.fencing_token != assignment:
            # The agent runs something the dispatcher gave away meanwhile.
            kill = agent_pb2.Command(
                command_id=0,
                kill_process=agent_pb2.KillProcessCommand(
                    job_id=running.job_id,
                    chunk_id=running.chunk_id,
                    fencing_token=running.fencing_token,
                    follow_up=common_pb2.KILL_FOLLOW_UP_CONTINUE,
                ),
            )
            await stream.outgoing.put(agent_pb2.SessionResponse(command=kill))
        if assignment and (running is None or running.fencing_token != assignment):
            self.want_assignments([stream.node_id])

    def _live_token(self, node_id: int) -> int:
        with self.db.transaction() as session:
            token = session.execute(
                select(chunk_assignments.c.fencing_token).where(
                    chunk_assignments.c.node_id == node_id
                )
            ).scalar()
        return int(token or 0)

    # --- reports up --------------------------------------------------------------------------

    async def result(self, stream: AgentStream, result: agent_pb2.ChunkResult) -> None:
        """Queue a result for the next batch (sent within a few milliseconds)."""
        if self._results is None:
            self._results = asyncio.Queue()
            self._sender = asyncio.ensure_future(self._send_results())
        await self._results.put((stream, result))

    async def _send_results(self) -> None:
        assert self._results is not None
        while True:
            batch = [await self._results.get()]
            await asyncio.sleep(BATCH_WINDOW_SECONDS)
            while not self._results.empty() and len(batch) < MAX_BATCH:
                batch.append(self._results.get_nowait())
            delay = 0.2
            # The jobs service may be restarting (or its leader moving): keep
            # the batch and try again; the agents are not told before it lands.
            while not await self._try_finish(batch):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                batch = [(s, r) for s, r in batch if self.hub.streams.get(s.node_id) is s]
                if not batch:
                    break  # those agents reconnected: they send their results again

    async def _try_finish(self, batch: list[tuple[AgentStream, agent_pb2.ChunkResult]]) -> bool:
        try:
            return await self._finish(batch)
        except Exception:  # the database or the jobs service is down: retried
            _LOG.exception("recording %d results failed", len(batch))
            return False

    async def _finish(self, batch: list[tuple[AgentStream, agent_pb2.ChunkResult]]) -> bool:
        """Record a batch of results; False when the jobs service did not take it."""
        tokens = [result.fencing_token for _, result in batch]
        follow_ups = await asyncio.to_thread(self._kill_follow_ups, tokens)
        request = chunk_runs_pb2.FinishChunkRunsRequest()
        for stream, result in batch:
            run = request.runs.add(
                job_id=result.job_id,
                chunk_id=result.chunk_id,
                fencing_token=result.fencing_token,
                node_id=stream.node_id,
                exit_code=result.exit_code,
                outcome=result.outcome,
                message=result.message,
                kill_follow_up=KILL_FOLLOW_UP.number(follow_ups.get(result.fencing_token, "")),
            )
            if result.HasField("end_time"):
                run.end_time.CopyFrom(result.end_time)
        try:
            reply = await self._stub().FinishChunkRuns(
                request, timeout=RPC_TIMEOUT_SECONDS, metadata=self.identity.metadata()
            )
        except grpc.aio.AioRpcError as exc:
            _LOG.warning("%d results not recorded yet: %s", len(batch), exc.details())
            return False
        for (stream, result), answer in zip(batch, reply.results, strict=True):
            await stream.outgoing.put(
                agent_pb2.SessionResponse(
                    result_accepted=agent_pb2.ResultAccepted(
                        job_id=result.job_id,
                        chunk_id=result.chunk_id,
                        fencing_token=result.fencing_token,
                        applied=answer.applied,
                    )
                )
            )
        ended = [
            (stream.node_id, result.job_id, RUN_OUTCOME.to_text.get(result.outcome, ""))
            for (stream, result), answer in zip(batch, reply.results, strict=True)
            if answer.applied
        ]
        exclusion = await asyncio.to_thread(self.timings.exclusion) if self.timings else None
        await asyncio.to_thread(
            self.service.set_idle,
            [stream.node_id for stream, _ in batch],
            ended,
            *([exclusion] if exclusion else []),
        )
        return True

    def _kill_follow_ups(self, tokens: list[int]) -> dict[int, str]:
        """What the dispatcher asked for after killing these runs, by token."""
        with self.db.transaction() as session:
            rows = session.execute(
                select(
                    node_commands.c.payload["fencing_token"].astext,
                    node_commands.c.payload["follow_up"].astext,
                )
                .where(
                    node_commands.c.kind == "kill_process",
                    node_commands.c.payload["fencing_token"].astext.in_([str(t) for t in tokens]),
                )
                .order_by(node_commands.c.id)
            ).all()
        return {int(token): str(follow_up or "") for token, follow_up in rows}

    async def log(self, stream: AgentStream, log: agent_pb2.ChunkLog) -> None:
        if stream.node_id in self.hub.realtime and log.lines:
            await asyncio.to_thread(self.service.publish_log, stream.node_id, log)
        try:
            await self._stub().AppendChunkRunLog(
                chunk_runs_pb2.AppendChunkRunLogRequest(
                    job_id=log.job_id,
                    chunk_id=log.chunk_id,
                    fencing_token=log.fencing_token,
                    lines=log.lines,
                ),
                timeout=RPC_TIMEOUT_SECONDS,
                metadata=self.identity.metadata(),
            )
        except grpc.aio.AioRpcError as exc:
            _LOG.warning("log lines of node %s dropped: %s", stream.node_id, exc.details())

    def release_lost(self, node_ids: list[int]) -> None:
        """Requeue the chunks of lost nodes (called from the sweep thread)."""
        if not node_ids:
            return
        address = self.jobs_address
        if not address:
            return
        with open_channel(address) as channel:
            stub = chunk_runs_pb2_grpc.ChunkRunsServiceStub(channel)
            for node_id in node_ids:
                try:
                    stub.ReleaseNodeChunks(
                        chunk_runs_pb2.ReleaseNodeChunksRequest(
                            node_id=node_id, reason="node lost: no heartbeat"
                        ),
                        timeout=RPC_TIMEOUT_SECONDS,
                        metadata=self.identity.metadata(),
                    )
                except grpc.RpcError as exc:
                    _LOG.warning(
                        "releasing the chunks of lost node %s failed: %s", node_id, exc.details()
                    )

    # Background protocol: stopped by the server on its event loop's thread.
    def start(self) -> None:
        pass

    def stop(self) -> None:
        for task in (self._sender, self._deliverer, self._marker):
            if task is not None:
                task.cancel()
        # The channel to the jobs service goes with the event loop.
