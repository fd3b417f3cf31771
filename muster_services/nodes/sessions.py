"""The agent streams this nodes-service replica holds, on its event loop.

Heartbeats are batched (one UPDATE a second for every node); commands reach
the stream through the bus (`node.command` events) so an RPC served by any
replica reaches an agent held by this one.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from muster_proto.agent.v1 import agent_pb2
from muster_services.admin import topics as admin_topics
from muster_services.core.bus import Event
from muster_services.jobs import topics as jobs_topics
from muster_services.nodes import topics
from muster_services.nodes.messages import command_message
from muster_services.nodes.service import NodesService, RunningChunk

if TYPE_CHECKING:
    from muster_services.nodes.delivery import AssignmentDelivery

_LOG = logging.getLogger(__name__)

# Events naming nodes whose running chunks the jobs service took back
# (`node_ids`): their agents are told to kill those processes.
RELEASING_TOPICS = frozenset({jobs_topics.JOB_DELETED, jobs_topics.JOB_REINIT})

HEARTBEAT_FLUSH_SECONDS = 1.0


class Outbox(asyncio.Queue[agent_pb2.SessionResponse]):
    """The messages waiting for one agent stream: an unbounded FIFO with
    asyncio.Queue's put, put_nowait, get, get_nowait, qsize and empty, built
    light (a replica holds one per stream, thousands of them idle).

    asyncio.Queue holds three deques and an Event (with its own deque) from
    the start; this holds its messages' deque and its waiting getters only
    while it has some. `get` answers a future rather than a coroutine: the
    stream's writer waits on it (servicer.next_message) without a task
    wrapped around it. A getter cancelled before a message reached it takes
    none (the message stays for the next); one that got its message keeps it.
    """

    def __init__(self) -> None:  # none of asyncio.Queue's own structures
        self._items: deque[agent_pb2.SessionResponse] | None = None
        self._waiting: deque[asyncio.Future[agent_pb2.SessionResponse]] | None = None

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return False

    def put_nowait(self, item: agent_pb2.SessionResponse) -> None:
        while self._waiting:
            getter = self._waiting.popleft()
            if not getter.done():
                getter.set_result(item)
                return
        if self._items is None:
            self._items = deque()
        self._items.append(item)

    async def put(self, item: agent_pb2.SessionResponse) -> None:
        self.put_nowait(item)

    def get_nowait(self) -> agent_pb2.SessionResponse:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.popleft()

    def get(self) -> asyncio.Future[agent_pb2.SessionResponse]:  # type: ignore[override]
        getter: asyncio.Future[agent_pb2.SessionResponse]
        getter = asyncio.get_running_loop().create_future()
        if self._items:
            getter.set_result(self._items.popleft())
        else:
            if self._waiting is None:
                self._waiting = deque()
            self._waiting.append(getter)
        return getter


class Closed(asyncio.Event):
    """Set once the stream is to end: asyncio.Event's set, is_set and wait,
    without its deque of waiters until one waits; `wait` answers a future
    (as Outbox.get)."""

    def __init__(self) -> None:  # none of asyncio.Event's own structures
        self._value = False
        self._waiting: list[asyncio.Future[Literal[True]]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if not self._value:
            self._value = True
            waiting, self._waiting = self._waiting, None
            for waiter in waiting or ():
                if not waiter.done():
                    waiter.set_result(True)

    def clear(self) -> None:
        self._value = False

    def wait(self) -> asyncio.Future[Literal[True]]:  # type: ignore[override]
        waiter: asyncio.Future[Literal[True]] = asyncio.get_running_loop().create_future()
        if self._value:
            waiter.set_result(True)
        else:
            if self._waiting is None:
                self._waiting = []
            self._waiting = [w for w in self._waiting if not w.done()]
            self._waiting.append(waiter)
        return waiter


@dataclass(slots=True)
class AgentStream:
    node_id: int
    session_id: str
    outgoing: Outbox = field(default_factory=Outbox)
    closed: Closed = field(default_factory=Closed)
    # Fencing token of the last assignment sent down this stream: the hint
    # and the event of one assignment both ask for it, it is sent once.
    sent_token: int = 0
    # The chunk the agent says it runs (its register, then each heartbeat).
    running: RunningChunk | None = None
    # An assignment waits for `running` to end (the agent was busy).
    held_back: bool = False
    # Results received and not yet acknowledged (ResultAccepted queued): a new
    # assignment waits for them (held_for_results), so the agent gets the
    # acknowledgement of its last result before its next chunk, as when the
    # node's row said `rendering` until its result was recorded.
    results_pending: int = 0
    held_for_results: bool = False
    # The live assignment the agent registered without (reconcile): it ends
    # as lost unless the agent sends its result first (then 0).
    unconfirmed: int = 0
    # The sequence of the newest heartbeat received (0: an agent that wants
    # no HeartbeatRecorded answers).
    beat_sequence: int = 0


class SessionHub:
    """Agent streams held by this replica, and the work done on their behalf."""

    def __init__(self, service: NodesService) -> None:
        self.service = service
        self.streams: dict[int, AgentStream] = {}
        # Sends the live assignments of the streams held here (delivery.py).
        self.render_listener: AssignmentDelivery | None = None
        # Nodes held here whose render log goes to consoles as it comes.
        self.realtime: set[int] = set()
        # Realtime log commands delivered so far: a switch read with an
        # assignment (delivery.py) yields to a command delivered meanwhile.
        self.realtime_commands = 0
        # Timings in effect (NodeTimings), reloaded on configuration changes.
        self.timings: Any = None
        self._beats: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flusher: asyncio.Task[None] | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is None:
            self._loop = loop
            self._flusher = loop.create_task(self._flush_heartbeats())
            if self.render_listener is not None:
                self.render_listener.bind(loop)

    def add(self, stream: AgentStream) -> None:
        previous = self.streams.get(stream.node_id)
        if previous is not None:  # the agent reconnected: the old stream is dead
            previous.closed.set()
        self.streams[stream.node_id] = stream

    def remove(self, stream: AgentStream) -> None:
        if self.streams.get(stream.node_id) is stream:
            del self.streams[stream.node_id]
            self.realtime.discard(stream.node_id)

    def heartbeat(
        self, stream: AgentStream, running: RunningChunk | None, sequence: int = 0
    ) -> None:
        stream.running = running
        stream.beat_sequence = sequence
        self._beats.add(stream.node_id)
        if running is None and stream.held_back and self.render_listener is not None:
            stream.held_back = False  # the agent is free: the held assignment goes
            self.render_listener.want_assignments([stream.node_id])

    async def _flush_heartbeats(self) -> None:
        while True:
            await asyncio.sleep(
                await asyncio.to_thread(self.timings.heartbeat_flush_seconds)
                if self.timings is not None
                else HEARTBEAT_FLUSH_SECONDS
            )
            beats = {n: self.streams[n].session_id for n in self._beats if n in self.streams}
            busy = {n for n in beats if self.streams[n].running is not None}
            recorded = [(self.streams[n], self.streams[n].beat_sequence) for n in beats]
            self._beats = set()
            if beats:
                try:
                    revived = await asyncio.to_thread(self.service.heartbeats, beats, busy)
                except Exception:
                    _LOG.exception("recording %d heartbeats failed", len(beats))
                    continue
                await self._renew_leases(recorded)
                if revived and self.render_listener is not None:
                    await self.render_listener.kill_released(
                        [self.streams[n] for n in revived if n in self.streams]
                    )

    async def _renew_leases(self, recorded: list[tuple[AgentStream, int]]) -> None:
        """Tell the agents their heartbeats are recorded (muster_agent/lease.py)."""
        wanted = [(stream, sequence) for stream, sequence in recorded if sequence]
        if not wanted or self.timings is None:
            return
        lease = await asyncio.to_thread(self.timings.lease_seconds)
        for stream, sequence in wanted:
            if not stream.closed.is_set():
                stream.outgoing.put_nowait(
                    agent_pb2.SessionResponse(
                        heartbeat_recorded=agent_pb2.HeartbeatRecorded(
                            sequence=sequence, lease_seconds=lease
                        )
                    )
                )

    # --- bus events (called in the bus thread) ------------------------------------------

    def on_events(self, events: list[Event]) -> None:
        for event in events:
            self.on_event(event)

    def on_event(self, event: Event) -> None:
        loop = self._loop
        if loop is None:
            return
        node_id = int(event.payload.get("node_id", 0))
        if self.render_listener is not None:
            self.render_listener.reference_event(event.topic)
        if event.topic == topics.NODE_COMMAND and node_id in self.streams:
            command_id = int(event.payload["command_id"])
            asyncio.run_coroutine_threadsafe(self.deliver_command(node_id, command_id), loop)
        elif event.topic == topics.NODE_DELETED and node_id in self.streams:
            loop.call_soon_threadsafe(self._close, node_id)
        elif event.topic in RELEASING_TOPICS and self.render_listener is not None:
            # The job's running chunks were taken back: their processes go
            # now, not when they end or when their nodes get another chunk.
            taken = [int(n) for n in event.payload.get("node_ids", ()) if int(n) in self.streams]
            if taken:
                asyncio.run_coroutine_threadsafe(self._kill_released(taken), loop)
        elif (
            event.topic in (admin_topics.CONFIG_CHANGED, admin_topics.SYSTEM_SOFT_RESTART)
            and self.timings
        ):
            self.timings.reload()
            if event.topic == admin_topics.SYSTEM_SOFT_RESTART:
                # Agents re-register (their processes keep running): close
                # every stream; they reconnect with their running chunks.
                for held in list(self.streams):
                    loop.call_soon_threadsafe(self._close, held)

    def on_assigned(self, node_ids: list[int]) -> None:
        """A scheduler's commit named these nodes (a hint, in its listener's
        thread): those held here get their new assignment now."""
        loop = self._loop
        held = [n for n in node_ids if n in self.streams]
        if loop is not None and held and self.render_listener is not None:
            loop.call_soon_threadsafe(self.render_listener.want_assignments, held, True)

    def _close(self, node_id: int) -> None:
        stream = self.streams.get(node_id)
        if stream is not None:
            stream.closed.set()

    async def _kill_released(self, node_ids: list[int]) -> None:
        if self.render_listener is not None:
            streams = [self.streams[n] for n in node_ids if n in self.streams]
            await self.render_listener.kill_released(streams)

    async def deliver_command(self, node_id: int, command_id: int) -> None:
        row = await asyncio.to_thread(self.service.command, command_id)
        stream = self.streams.get(node_id)
        if row is None or stream is None or row.delivered_at is not None:
            return
        await self.deliver_rows(stream, [row])

    async def deliver_rows(self, stream: AgentStream, rows: list[Any]) -> None:
        for row in rows:
            try:
                message = command_message(row.id, row.kind, dict(row.payload))
            except (KeyError, ValueError) as exc:
                _LOG.error("command %s cannot be sent: %s", row.id, exc)
                await asyncio.to_thread(
                    self.service.command_answered, row.id, {"ok": False, "message": str(exc)}, True
                )
                continue
            await stream.outgoing.put(agent_pb2.SessionResponse(command=message))
            if row.kind == "set_realtime_log":
                self.realtime_commands += 1
                if row.payload.get("enabled"):
                    self.realtime.add(stream.node_id)
                else:
                    self.realtime.discard(stream.node_id)
            await asyncio.to_thread(self.service.command_delivered, row.id)

    # Background protocol: the server stops it on its own event loop's thread.
    def start(self) -> None:
        pass

    def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        for stream in list(self.streams.values()):
            stream.closed.set()
