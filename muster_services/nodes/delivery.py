"""Assignments down to the agents this replica holds.

- the scheduler's hint (a NOTIFY on its commit naming the nodes) -> the
  node's Assignment (built by the jobs domain: muster_services/jobs/for_nodes.py)
  goes down the stream of the agent that holds the node (the node shows
  rendering while it holds the assignment: no write here);
- a hint is lost only while its listener is not listening: when it starts
  listening (again) and every SWEEP_SECONDS, the live assignments of the
  idle agents held here are read, and one not sent yet goes down (the
  state table is the record; no outbox event is read per assignment);
- a (re)connecting agent is reconciled with the live assignment of its node:
  an assignment the agent does not confirm is never sent again (it ends as
  lost), a process whose assignment is gone is killed (its late report will
  be stale); so is one a node declared lost still runs when it comes back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from muster_proto.agent.v1 import agent_pb2
from muster_proto.common.v1 import common_pb2
from muster_services.core.database import Database
from muster_services.jobs import for_nodes
from muster_services.nodes.service import NodesService, RunningChunk
from muster_services.nodes.sessions import AgentStream, SessionHub

_LOG = logging.getLogger(__name__)

# Assignments asked for (and results reported: muster_services/nodes/relay.py) within
# this window go as one batch: one build of assignments; one transaction that
# moves a job's counters once for every result of the batch.
BATCH_WINDOW_SECONDS = 0.005
# How often the idle agents' live assignments are compared with what was
# sent (an assignment whose hint was lost, or whose build failed, goes then).
SWEEP_SECONDS = 1.0
# How long a registering agent has to report the result of a live assignment
# it does not run (it re-sends its pending results right after registering)
# before that assignment ends as lost.
UNCONFIRMED_GRACE_SECONDS = 1.0

# Ends a node's live assignment (fencing token) as LOST; False: try again.
Release = Callable[[int, int], Awaitable[bool]]


class AssignmentDelivery:
    def __init__(self, db: Database, service: NodesService, hub: SessionHub) -> None:
        self.db = db
        self.service = service
        self.hub = hub
        self.reference = for_nodes.ReferenceCache()
        self._wanted: set[int] = set()
        self._at_once = False
        self._wake = asyncio.Event()
        self._deliverer: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Future[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.Future[None] | None = None

    def reference_event(self, topic: str) -> None:
        """Any event (bus thread): the configuration or the repositories changed?"""
        if topic in for_nodes.REFERENCE_TOPICS:
            self.reference.invalidate()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The server's event loop (the first stream): the periodic sweep starts."""
        if self._loop is None:
            self._loop = loop
            self._sweeper = loop.create_task(self._sweep_periodically())

    def listening(self) -> None:
        """The hints' listener listens (again), in its thread: anything assigned
        before is read from the state table (a hint sent while it did not
        listen is lost); anything after comes with its hint."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._spawn, self._sweep_logged())

    async def _sweep_periodically(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            await self._sweep_logged()

    async def _sweep_logged(self) -> None:
        try:
            await self.sweep()
        except Exception:  # the database is away: the next sweep tries again
            _LOG.exception("comparing the agents' live assignments failed")

    async def sweep(self) -> None:
        """Idle agents held here whose node holds a live assignment not sent
        to them yet get it (the busy ones get theirs when their chunk ends)."""
        idle = [
            node_id
            for node_id, stream in self.hub.streams.items()
            if stream.running is None
            and not stream.held_back
            and not stream.held_for_results
            and not stream.results_pending
        ]
        if not idle:
            return
        live = await asyncio.to_thread(self._live_tokens, idle)
        missing = [
            node_id
            for node_id, token in live.items()
            if (stream := self.hub.streams.get(node_id)) is not None and stream.sent_token < token
        ]
        if missing:
            self.want_assignments(missing)

    def want_assignments(self, node_ids: list[int], at_once: bool = False) -> None:
        """Send these nodes their live assignments with the next batch (event
        loop); `at_once`: they are a batch already (a scheduler's hint)."""
        self._wanted.update(node_ids)
        self._at_once = self._at_once or at_once
        if self._deliverer is None:
            self._deliverer = asyncio.ensure_future(self._deliver_assignments())
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
                commands = self.hub.realtime_commands
                built = await asyncio.to_thread(self._assignments, wanted)
                switches = commands == self.hub.realtime_commands
                for node_id, (message, realtime_log) in built.items():
                    stream = self.hub.streams.get(node_id)
                    if stream is None or stream.sent_token == message.fencing_token:
                        continue  # sent already
                    if stream.running is not None and (
                        stream.running.fencing_token == message.fencing_token
                    ):
                        stream.sent_token = message.fencing_token
                        continue  # the agent runs it already
                    if stream.running is not None:
                        # The agent still runs a chunk that is no longer its
                        # assignment: killed; this one goes once its result
                        # came (relay.result), never to a busy agent.
                        await self._kill_stale(stream, stream.running, message.fencing_token)
                        stream.held_back = True
                        continue
                    if stream.results_pending > 0:
                        # Sent once the agent's results are acknowledged (relay.py).
                        stream.held_for_results = True
                        continue
                    # The switch as stored: a realtime log switched on before
                    # this chunk was given covers its first lines, even when
                    # its command is still on its way (sessions.deliver_rows;
                    # one delivered during the read is as new, and is kept).
                    if switches and realtime_log:
                        self.hub.realtime.add(node_id)
                    elif switches:
                        self.hub.realtime.discard(node_id)
                    stream.sent_token = message.fencing_token
                    stream.running = RunningChunk(
                        message.job_id, message.chunk_id, message.fencing_token
                    )
                    await stream.outgoing.put(agent_pb2.SessionResponse(assignment=message))
            except Exception:  # the next sweep finds those not sent
                _LOG.exception("delivering %d assignments failed", len(wanted))

    def _assignments(self, node_ids: list[int]) -> dict[int, for_nodes.NodeAssignment]:
        """The nodes' live assignments, each with the node's own values of its
        template's client configuration items (read with the assignments)."""
        return for_nodes.build_assignments(self.db, node_ids, self.reference)

    async def reconcile(
        self, stream: AgentStream, release: Release, owed: int | None = None
    ) -> None:
        """After a (re)connect: line the agent up with its node's live assignment.

        - the agent runs the live assignment (a stream reconnect, a nodes
          replica restart: the same agent process): kept, as it is;
        - the agent runs something else: that process is killed (its
          assignment is gone: its late report is stale);
        - the live assignment is not what the agent runs: it is never sent
          down this stream. An agent that does not run it is a new agent
          process (the old one died; its render processes may still run),
          or one that never received it: either way a second process of the
          chunk must not start here. Unless the agent reports its result
          (a run that ended while the stream was down: its pending results
          come right after the registration), it ends as LOST within
          UNCONFIRMED_GRACE_SECONDS and the chunk goes back to the queue
          under the usual requeue rules.

        Only the assignment the registration found (`owed`, read in its
        transaction) is the agent's to confirm. The node, idle again once
        registered, may be given a chunk before this runs: that one is new,
        and is delivered down this stream like any other (treating it as
        unconfirmed ended a render that had just started as LOST, found by
        the soak).
        """
        running = stream.running
        live = await asyncio.to_thread(self._live_token, stream.node_id)
        await self._kill_stale(stream, running, live)
        if running is not None and running.fencing_token == live:
            stream.sent_token = max(stream.sent_token, live)
        if owed is None:
            owed = live
        if owed and owed == live and (running is None or running.fencing_token != live):
            stream.sent_token = max(stream.sent_token, live)  # never down this stream
            stream.unconfirmed = live
            self._spawn(self._end_unconfirmed(stream, live, release))
        elif live and live != owed and (running is None or running.fencing_token != live):
            self.want_assignments([stream.node_id])

    async def kill_released(self, streams: list[AgentStream]) -> None:
        """Agents that may still run a chunk the dispatcher took back: a node
        declared lost whose heartbeats came again (its stream lived), the
        nodes of a deleted or reinitialised job's running chunks (the
        job.deleted and job.reinit events name them). Each one whose running
        chunk is not its node's live assignment is told to kill it."""
        busy = [stream for stream in streams if stream.running is not None]
        if not busy:
            return
        live = await asyncio.to_thread(self._live_tokens, [s.node_id for s in busy])
        for stream in busy:
            if stream.running is not None:  # it may have ended meanwhile
                await self._kill_stale(stream, stream.running, live.get(stream.node_id, 0))

    async def _kill_stale(
        self, stream: AgentStream, running: RunningChunk | None, live: int
    ) -> None:
        if running is None or running.fencing_token == live:
            return
        # The agent runs something the dispatcher gave away meanwhile.
        _LOG.warning(
            "node %d runs job %d chunk %d (token %d), no longer its assignment: killing it",
            stream.node_id,
            running.job_id,
            running.chunk_id,
            running.fencing_token,
        )
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

    async def _end_unconfirmed(self, stream: AgentStream, token: int, release: Release) -> None:
        await asyncio.sleep(UNCONFIRMED_GRACE_SECONDS)
        delay = 0.2
        while stream.unconfirmed == token and self.hub.streams.get(stream.node_id) is stream:
            _LOG.warning(
                "node %d registered without its assignment (token %d): ending it as lost",
                stream.node_id,
                token,
            )
            if await release(stream.node_id, token):
                return
            # The jobs service is restarting: again (a new stream reconciles anew).
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _live_tokens(self, node_ids: list[int]) -> dict[int, int]:
        with self.db.transaction() as session:
            return for_nodes.nodes_live_tokens(session, node_ids)

    def _live_token(self, node_id: int) -> int:
        with self.db.transaction() as session:
            return for_nodes.node_live_token(session, node_id)

    # Background protocol: stopped by the server on its event loop's thread.
    def start(self) -> None:
        pass

    def stop(self) -> None:
        for task in (self._deliverer, self._sweeper, *self._tasks):
            if task is not None:
                task.cancel()
