"""Reports up: agents' results, log lines and progress go to the jobs service.

Results go to ChunkRunsService in batches (one transaction moves a job's
counters once for every result of the batch) with their fencing tokens; the
agent hears ResultAccepted only once the jobs service has recorded the
result, so it re-sends otherwise. A batch the jobs service did not take is
retried. Log lines are relayed as they come (and shown to consoles when the
node's realtime log is on); lost nodes' chunks are released.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
import grpc.aio

from muster_gateway.tls import open_aio_channel, open_channel
from muster_proto.agent.v1 import agent_pb2
from muster_proto.jobs.v1 import chunk_runs_pb2, chunk_runs_pb2_grpc
from muster_services.core.auth import ServiceIdentity
from muster_services.core.database import Database
from muster_services.core.enums import KILL_FOLLOW_UP, RUN_OUTCOME
from muster_services.nodes import store as repo
from muster_services.nodes.delivery import BATCH_WINDOW_SECONDS
from muster_services.nodes.service import COUNTED_FAILURES, NodesService
from muster_services.nodes.sessions import AgentStream, SessionHub

_LOG = logging.getLogger(__name__)

RPC_TIMEOUT_SECONDS = 30.0
MAX_BATCH = 500
# Shown in the history of a run ended because the node's agent came back
# without it (muster_services/nodes/delivery.py, reconcile).
UNCONFIRMED_REASON = "node lost: its agent registered again without this chunk"
# Chunks' progress goes up at most this often, the newest report of each chunk.
PROGRESS_SECONDS = 1.0


class ResultRelay:
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
        self._sender: asyncio.Future[None] | None = None
        # Fencing token -> the newest progress report not sent yet.
        self._progress: dict[int, agent_pb2.ChunkProgress] = {}
        self._progress_sender: asyncio.Future[None] | None = None

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

    async def result(self, stream: AgentStream, result: agent_pb2.ChunkResult) -> None:
        """Queue a result for the next batch (sent within a few milliseconds)."""
        if result.fencing_token == stream.unconfirmed:
            stream.unconfirmed = 0  # its result: the run ended while the stream was down
        if stream.running is not None and stream.running.fencing_token == result.fencing_token:
            # The agent is free: an assignment held back meanwhile goes now.
            stream.running = None
            if stream.held_back and self.hub.render_listener is not None:
                stream.held_back = False
                self.hub.render_listener.want_assignments([stream.node_id])
        if self._results is None:
            self._results = asyncio.Queue()
            self._sender = asyncio.ensure_future(self._send_results())
        stream.results_pending += 1
        await self._results.put((stream, result))

    async def _send_results(self) -> None:
        assert self._results is not None
        while True:
            batch = [await self._results.get()]
            await asyncio.sleep(BATCH_WINDOW_SECONDS)
            while not self._results.empty() and len(batch) < MAX_BATCH:
                batch.append(self._results.get_nowait())
            await self._record(batch)

    async def _record(self, batch: list[tuple[AgentStream, agent_pb2.ChunkResult]]) -> None:
        """Send the batch until it is recorded (or its agents are gone)."""
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

    async def _refused(
        self, batch: list[tuple[AgentStream, agent_pb2.ChunkResult]], why: str
    ) -> None:
        """The jobs service refused the batch as bad input (nothing recorded):
        one of its results at least is malformed, as an agent with a bug may
        send. Sent again forever, it held every other node's result back. Its
        halves are recorded each on its own, down to the malformed results
        alone, each answered not applied (the agent drops it)."""
        if len(batch) > 1:
            half = len(batch) // 2
            await self._record(batch[:half])
            await self._record(batch[half:])
            return
        ((stream, result),) = batch
        _LOG.warning(
            "node %s: result of job %s chunk %s (token %s) refused, not applied: %s",
            stream.node_id,
            result.job_id,
            result.chunk_id,
            result.fencing_token,
            why,
        )
        await self._answer(stream, result, applied=False)

    async def _finish(self, batch: list[tuple[AgentStream, agent_pb2.ChunkResult]]) -> bool:
        """Record a batch of results; False when the jobs service did not take
        it (and will be asked again)."""
        tokens = [result.fencing_token for _, result in batch]
        follow_ups = await asyncio.to_thread(self._kill_follow_ups, tokens)
        failing = [
            stream.node_id
            for stream, result in batch
            if RUN_OUTCOME.to_text.get(result.outcome, "") in COUNTED_FAILURES
        ]
        if failing:  # kept off the scheduler until set_idle counted them
            await asyncio.to_thread(self.service.hold_for_failures, failing)
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
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                await self._refused(batch, exc.details() or "")
                return True
            _LOG.warning("%d results not recorded yet: %s", len(batch), exc.details())
            return False
        for (stream, result), answer in zip(batch, reply.results, strict=True):
            await self._answer(stream, result, answer.applied)
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

    async def _answer(
        self, stream: AgentStream, result: agent_pb2.ChunkResult, applied: bool
    ) -> None:
        """Tell the agent its result is settled (it stops sending it again)."""
        await stream.outgoing.put(
            agent_pb2.SessionResponse(
                result_accepted=agent_pb2.ResultAccepted(
                    job_id=result.job_id,
                    chunk_id=result.chunk_id,
                    fencing_token=result.fencing_token,
                    applied=applied,
                )
            )
        )
        stream.results_pending = max(0, stream.results_pending - 1)
        if (
            not stream.results_pending
            and stream.held_for_results
            and self.hub.render_listener is not None
        ):
            # The node's next chunk, booked before its result's reply came.
            stream.held_for_results = False
            self.hub.render_listener.want_assignments([stream.node_id])

    def _kill_follow_ups(self, tokens: list[int]) -> dict[int, str]:
        """What the dispatcher asked for after killing these runs, by token."""
        with self.db.transaction() as session:
            return repo.kill_follow_ups(session, tokens)

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

    async def progress(self, stream: AgentStream, report: agent_pb2.ChunkProgress) -> None:
        """Keep the newest report of each chunk; they go up together every
        PROGRESS_SECONDS (a farm of agents reporting every second would
        otherwise cost one jobs-service transaction per report)."""
        self._progress[report.fencing_token] = report
        if self._progress_sender is None or self._progress_sender.done():
            self._progress_sender = asyncio.ensure_future(self._send_progress())

    async def _send_progress(self) -> None:
        while self._progress:
            await asyncio.sleep(PROGRESS_SECONDS)
            reports, self._progress = list(self._progress.values()), {}
            for start in range(0, len(reports), MAX_BATCH):
                request = chunk_runs_pb2.ReportChunkProgressRequest(
                    runs=[
                        chunk_runs_pb2.ChunkRunProgress(
                            job_id=r.job_id,
                            chunk_id=r.chunk_id,
                            fencing_token=r.fencing_token,
                            progress=min(100.0, max(0.0, r.progress)),
                        )
                        for r in reports[start : start + MAX_BATCH]
                    ]
                )
                try:
                    await self._stub().ReportChunkProgress(
                        request, timeout=RPC_TIMEOUT_SECONDS, metadata=self.identity.metadata()
                    )
                except grpc.aio.AioRpcError as exc:
                    # Progress is a hint: the next report (or the result) replaces it.
                    _LOG.warning("progress of %d chunks dropped: %s", len(reports), exc.details())
                except Exception:
                    _LOG.exception("progress of %d chunks dropped", len(reports))

    async def release_unconfirmed(self, node_id: int, fencing_token: int) -> bool:
        """End a node's live assignment as LOST: its agent registered without
        reporting it as running (a new agent process: the old one's process is
        not this agent's). The chunk goes back to the queue under the usual
        requeue rules; nothing changes if the assignment already ended. False
        when the jobs service could not be reached (the caller tries again)."""
        try:
            await self._stub().ReleaseNodeChunks(
                _release_request(node_id, UNCONFIRMED_REASON, fencing_token),
                timeout=RPC_TIMEOUT_SECONDS,
                metadata=self.identity.metadata(),
            )
        except grpc.aio.AioRpcError as exc:
            _LOG.warning(
                "releasing the unconfirmed chunk of node %s failed: %s", node_id, exc.details()
            )
            return False
        return True

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
                        _release_request(node_id, "node lost: no heartbeat"),
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
        if self._sender is not None:
            self._sender.cancel()
        if self._progress_sender is not None:
            self._progress_sender.cancel()
        # The channel to the jobs service goes with the event loop.


def _release_request(
    node_id: int, reason: str, fencing_token: int = 0
) -> chunk_runs_pb2.ReleaseNodeChunksRequest:
    return chunk_runs_pb2.ReleaseNodeChunksRequest(
        node_id=node_id, reason=reason, fencing_token=fencing_token
    )
