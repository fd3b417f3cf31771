"""Live console and notificator streams held by this replica.

One bus reader per replica fans events out to every stream it holds, in
event order. A stream resuming after an event id first replays what it
missed from the outbox, then joins the live fan-out at the exact position
the hub has reached, so nothing is skipped or sent twice.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import jobs_pb2
from muster_proto.nodes.v1 import nodes_pb2
from muster_services.admin import topics as admin_topics
from muster_services.core.bus import Event, LiveSubscription, Position, position_of, read_events
from muster_services.core.convert import to_timestamp
from muster_services.core.database import Database
from muster_services.jobs import for_nodes
from muster_services.jobs import topics as jobs_topics
from muster_services.jobs.for_nodes import JobFacts
from muster_services.nodes import store as repo
from muster_services.nodes import topics
from muster_services.nodes.clients import CONNECTION_TIMEOUT_SECONDS, ClientsService

_LOG = logging.getLogger(__name__)

# Topics a client may be told about.
TOPIC_PREFIXES = (
    "job.",
    "chunk.",
    "node.",
    topics.CLIENT_MESSAGE,
    topics.CLIENT_DISCONNECT,
    "log.",
)
QUEUE_LIMIT = 10_000
# A batching stream writes at most once per spacing, longer when more streams
# are held, so that the writes a replica makes per second stay about level:
# 10 ms with 100 streams, 50 ms (the most) from 500. A stream that has not
# written for that long writes its next event at once. (With 1,000 consoles
# following a farm, a 100 ms cap put the median delivery at 99-109 ms, 50 ms
# at 80-92 ms, for the same CPU and memory: bench/clients.py.)
SPACING_SECONDS = (0.01, 0.05)
WRITES_PER_SECOND = 10_000
REFRESH_SECONDS = 10.0

NOTIFICATIONS = {
    jobs_topics.JOB_STARTED: (nodes_pb2.NOTIFICATION_KIND_JOB_STARTED, "job_started"),
    jobs_topics.CHUNK_STARTED: (nodes_pb2.NOTIFICATION_KIND_CHUNK_STARTED, "chunk_started"),
    jobs_topics.CHUNK_FAILED: (nodes_pb2.NOTIFICATION_KIND_CHUNK_FAILED, "chunk_failed"),
    topics.NODE_LOST: (nodes_pb2.NOTIFICATION_KIND_NODE_OFFLINE, "node_offline"),
}
COMPLETIONS = {
    "completed": (nodes_pb2.NOTIFICATION_KIND_JOB_COMPLETED, "job_completed"),
    "completed_with_warnings": (
        nodes_pb2.NOTIFICATION_KIND_JOB_COMPLETED_WITH_WARNINGS,
        "job_completed_with_warnings",
    ),
    "completed_with_errors": (
        nodes_pb2.NOTIFICATION_KIND_JOB_COMPLETED_WITH_ERRORS,
        "job_completed_with_errors",
    ),
    "failed": (nodes_pb2.NOTIFICATION_KIND_JOB_COMPLETED_WITH_ERRORS, "job_completed_with_errors"),
}


@dataclass
class Extra:
    """What the bus reader looked up for an event, once for every stream."""

    job: jobs_pb2.Job | None = None
    facts: JobFacts | None = None
    log: nodes_pb2.DispatcherLogMessage | None = None


class Rendered:
    """One event as the streams with one view see it, serialized once for all of them.

    Connect writes these bytes as they are (muster_services/core/server.py
    RawResponseServer): a ConnectResponse is field 2 (`event`) or field 3
    (`events`, whose ClientEventBatch repeats field 1) around the event's
    own bytes, so framing an event costs a few bytes, not a serialization.
    """

    __slots__ = ("_entry", "_single", "message")

    def __init__(self, message: nodes_pb2.ClientEvent) -> None:
        self.message = message
        self._entry = b""
        self._single = b""

    def entry(self) -> bytes:
        """The event as one element of ClientEventBatch.events."""
        if not self._entry:
            self._entry = _field(1, self.message.SerializeToString())
        return self._entry

    def single(self) -> bytes:
        """A whole ConnectResponse carrying just this event."""
        if not self._single:
            self._single = _field(2, self.message.SerializeToString())
        return self._single


def batch_response(items: list[Rendered]) -> bytes:
    """A whole ConnectResponse carrying `items` as one ClientEventBatch."""
    return _field(3, b"".join(item.entry() for item in items))


def _field(number: int, body: bytes) -> bytes:
    """A length-delimited protobuf field: tag, length, bytes."""
    return _varint(number << 3 | 2) + _varint(len(body)) + body


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@dataclass
class ClientStream:
    connection_id: int
    kind: str
    user_name: str
    job_ids: frozenset[int] = frozenset()
    folder_ids: frozenset[int] = frozenset()
    node_ids: frozenset[int] = frozenset()
    preferences: dict[str, bool] = field(default_factory=dict)
    # Several events per response (ConnectRequest.batch_events).
    batched: bool = False
    # Lists of events handed over together; `pending` counts the events in them.
    # One Event wakes the stream's writer (no task per wait: a thousand streams
    # wake on every batch).
    outgoing: deque[list[Rendered]] = field(default_factory=deque)
    pending: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    close_reason: int = 0
    close_message: str = ""
    last_event_id: int = 0
    # When the writer last took events (time.monotonic()).
    last_take: float = 0.0

    @property
    def view(self) -> tuple[Any, ...]:
        """What decides how an event looks to this stream (custom messages aside,
        which name their target connection)."""
        return (
            self.kind,
            self.job_ids,
            self.folder_ids,
            self.node_ids,
            tuple(sorted(self.preferences.items())),
            self.user_name if self.preferences.get("own_jobs_only") else "",
        )

    def offer(self, items: list[Rendered]) -> None:
        """Queue `items` for the stream, or close it when it reads too slowly."""
        if self.pending + len(items) > QUEUE_LIMIT:
            self.close(nodes_pb2.DISCONNECT_REASON_TOO_SLOW, "events are read too slowly")
            return
        self.outgoing.append(items)
        self.pending += len(items)
        self.last_event_id = items[-1].message.event_id
        self.ready.set()

    async def next_items(self, spacing: float = 0.0) -> list[Rendered] | None:
        """Everything queued, oldest first, once there is something; None once
        closed. Takes at most once per `spacing` seconds: a stream that wrote
        less than `spacing` ago gathers what follows until then, one that was
        quiet takes at once."""
        while not self.outgoing and not self.closed.is_set():
            self.ready.clear()
            await self.ready.wait()
        if self.closed.is_set():
            return None
        if spacing:
            wait = self.last_take + spacing - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        self.last_take = time.monotonic()
        items: list[Rendered] = []
        while self.outgoing:
            items.extend(self.outgoing.popleft())
        self.pending -= len(items)
        return items

    def close(self, reason: int, message: str) -> None:
        if not self.closed.is_set():
            self.close_reason, self.close_message = reason, message
            self.closed.set()
            self.ready.set()


def _signs_out(event: Event) -> bool:
    """The user's tokens were revoked (muster_services/admin/accounts.py says
    so in the event): deleted, disabled, given another role, or its password
    reset by someone else."""
    return event.topic in (admin_topics.USER_UPDATED, admin_topics.USER_DELETED) and bool(
        event.payload.get("tokens_revoked")
    )


class ClientHub:
    def __init__(
        self,
        db: Database,
        service: ClientsService,
        timeout_seconds: float = CONNECTION_TIMEOUT_SECONDS,
    ) -> None:
        self.db = db
        self.service = service
        # Connections are refreshed several times per timeout; another
        # replica's not refreshed within it are closed as timed_out.
        self.timeout_seconds = timeout_seconds
        self.refresh_seconds = min(REFRESH_SECONDS, timeout_seconds / 4)
        self.streams: dict[int, ClientStream] = {}
        self.position = Position()
        self._loop: asyncio.AbstractEventLoop | None = None
        # One bus reader for every stream held here; events are enriched once
        # in its thread, then fanned out on the event loop.
        self._subscription = LiveSubscription(
            db,
            [],
            lambda events: self._hand_over([(e, self.enrich(e)) for e in events]),
            consumer="nodes-clients",
            # With no stream held here, events are passed over unread (a
            # stream that attaches replays from the outbox what it missed).
            unwatched=lambda: not self.streams,
            skip_to=self._skip_to,
        )
        self._facts: dict[int, JobFacts] = {}
        # Held while a stream joins the fan-out and while the reader passes
        # over events nobody holds a stream for (_skip_to).
        self._attach_lock = threading.Lock()
        self._refresher: asyncio.Task[None] | None = None

    # --- lifecycle (Background protocol; start/stop run on the server's loop) --------------

    def start(self) -> None:
        self._subscription.start()
        self.position = self._subscription.position

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is None:
            self._loop = loop
            self._refresher = loop.create_task(self._refresh())

    def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        for stream in list(self.streams.values()):
            stream.close(nodes_pb2.DISCONNECT_REASON_SERVER_SHUTDOWN, "the dispatcher is stopping")
        self._subscription.stop()

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            positions = {s.connection_id: s.last_event_id for s in self.streams.values()}
            try:
                if positions:
                    await asyncio.to_thread(self.service.refresh, positions)
                await asyncio.to_thread(self.service.sweep_stale, self.timeout_seconds)
            except Exception:
                _LOG.exception("refreshing client connections failed")

    # --- the bus reader (its own thread) ------------------------------------------------------

    def _hand_over(self, events: list[tuple[Event, Extra]]) -> None:
        done = threading.Event()
        loop = self._loop
        if loop is None or loop.is_closed():
            # No client has connected yet: nothing to deliver, just advance.
            self.position = events[-1][0].position
            return

        def dispatch() -> None:
            try:
                self.fan_out(events)
            finally:
                done.set()

        loop.call_soon_threadsafe(dispatch)
        done.wait(30)

    def _skip_to(self, position: Position) -> bool:
        """No stream held: move to `position` without reading the events up to
        it (bus reader thread); False once a stream is held. Under the lock
        that attach takes to join the fan-out: a stream attaching later
        replays up to the position taken here, one attached earlier gets the
        events. (Not a call onto the event loop: the loop may be stopping,
        waiting for this thread.)"""
        with self._attach_lock:
            if self.streams:
                return False
            self.position = max(self.position, position)
            # Job events passed over may have changed what is cached.
            self._facts.clear()
            return True

    # --- fan-out (event loop) -----------------------------------------------------------------

    def enrich(self, event: Event) -> Extra:
        """Look up, once per event, what streams show with it (bus reader thread)."""
        extra = Extra()
        if not event.topic.startswith(TOPIC_PREFIXES):
            return extra
        job_id = int(event.payload.get("job_id", 0))
        if event.topic.startswith("job."):
            self._facts.pop(job_id, None)
        if job_id:
            extra.facts = self.facts(job_id)
            if event.topic.startswith("job.") and event.topic != jobs_topics.JOB_DELETED:
                with self.db.transaction() as session:
                    extra.job = for_nodes.console_job(session, job_id)
        if event.topic == admin_topics.LOG_MESSAGE_ADDED and not event.payload.get("internal"):
            with self.db.transaction() as session:
                row = repo.dispatcher_log_entry(session, int(event.payload.get("log_entry_id", 0)))
            if row is not None:
                extra.log = nodes_pb2.DispatcherLogMessage(
                    level=row.level, message=row.message, source=row.source
                )
                stamp = to_timestamp(row.logged_at)
                if stamp is not None:
                    extra.log.time.CopyFrom(stamp)
        return extra

    def fan_out(self, events: list[tuple[Event, Extra]]) -> None:
        """Hand a batch of events to every stream, in order.

        Streams with the same view share one rendered, serialized message per
        event and one list per batch: with a thousand unfiltered consoles an
        event is built once, not 1,000 times, and each stream is handed the
        whole batch at once. Custom messages, which name their target, are
        rendered per stream.
        """
        if not events:
            return
        self.position = events[-1][0].position
        relevant = [(e, x) for e, x in events if e.topic.startswith(TOPIC_PREFIXES)]
        if relevant and self.streams:
            groups: dict[tuple[Any, ...], list[ClientStream]] = {}
            for stream in list(self.streams.values()):
                groups.setdefault(stream.view, []).append(stream)
            for members in groups.values():
                self._fan_out_to(members, relevant)
        for event, _ in events:
            if _signs_out(event):
                # The user's tokens were revoked (muster_services/core/auth.py):
                # the streams it opened with one end too.
                user = str(event.payload.get("user", ""))
                for stream in [s for s in self.streams.values() if s.user_name == user]:
                    stream.close(
                        nodes_pb2.DISCONNECT_REASON_FORCED,
                        f"signed out: the account {user!r} was changed by "
                        + str(event.payload.get("actor", "an administrator")),
                    )
        for event, _ in relevant:
            if event.topic == topics.CLIENT_DISCONNECT:
                target = self.streams.get(int(event.payload.get("connection_id", 0)))
                if target is not None:
                    target.close(
                        nodes_pb2.DISCONNECT_REASON_FORCED,
                        "disconnected by " + str(event.payload.get("actor", "an administrator")),
                    )

    def _fan_out_to(self, members: list[ClientStream], events: list[tuple[Event, Extra]]) -> None:
        shared: list[Rendered | None] = []
        personal = False
        for event, extra in events:
            if event.topic == topics.CLIENT_MESSAGE:
                shared.append(None)
                personal = True
                continue
            message = self.render(members[0], event, extra)
            shared.append(Rendered(message) if message is not None else None)
        common = [item for item in shared if item is not None]
        for stream in members:
            items = common
            if personal:
                items = []
                for (event, extra), item in zip(events, shared, strict=True):
                    if item is None and event.topic == topics.CLIENT_MESSAGE:
                        message = self.render(stream, event, extra)
                        item = Rendered(message) if message is not None else None
                    if item is not None:
                        items.append(item)
            if items:
                stream.offer(items)

    def render(
        self, stream: ClientStream, event: Event, extra: Extra
    ) -> nodes_pb2.ClientEvent | None:
        """The message `stream` gets for `event`, or None when it is not for it."""
        if not event.topic.startswith(TOPIC_PREFIXES):
            return None
        payload = event.payload
        message = nodes_pb2.ClientEvent(event_id=event.id)
        stamp = to_timestamp(event.created_at)
        if stamp is not None:
            message.event_time.CopyFrom(stamp)
        if event.topic == topics.CLIENT_MESSAGE:
            target = int(payload.get("connection_id", 0))
            if payload.get("kind") != stream.kind or target not in (0, stream.connection_id):
                return None
            if stream.kind == "notificator" and not stream.preferences.get("custom_messages", True):
                return None
            message.custom_message.CopyFrom(
                common_pb2.CustomMessage(
                    template_id=int(payload.get("template_id", 0)),
                    message=str(payload.get("message", "")),
                    sender=str(payload.get("sender", "")),
                )
            )
            return message
        if event.topic == topics.CLIENT_DISCONNECT:
            return None
        if stream.kind == "notificator":
            return self._notification(stream, event, message, extra)
        return self._console_event(stream, event, message, extra)

    def _console_event(
        self, stream: ClientStream, event: Event, message: nodes_pb2.ClientEvent, extra: Extra
    ) -> nodes_pb2.ClientEvent | None:
        payload = event.payload
        node_id = int(payload.get("node_id", 0))
        job_id = int(payload.get("job_id", 0))
        if event.topic == admin_topics.LOG_MESSAGE_ADDED:
            if extra.log is None or stream.job_ids or stream.folder_ids or stream.node_ids:
                return None
            message.dispatcher_log.CopyFrom(extra.log)
            return message
        if event.topic == topics.LOG_CHUNK:
            if stream.node_ids and node_id not in stream.node_ids:
                return None
            if (stream.job_ids or stream.folder_ids) and not self._job_matches(
                stream, job_id, extra
            ):
                return None
            lines = message.chunk_log_lines
            lines.node_id, lines.job_id = node_id, job_id
            lines.chunk_id = int(payload.get("chunk_id", 0))
            for line in payload.get("lines", []):
                lines.lines.add(text=str(line.get("text", "")), stream=int(line.get("stream", 0)))
            return message
        if event.topic.startswith("node."):
            if stream.node_ids and node_id not in stream.node_ids:
                return None
            if (stream.job_ids or stream.folder_ids) and not stream.node_ids:
                return None
            message.node_changed.node.id = node_id
            message.node_changed.node.name = str(payload.get("name", ""))
            message.node_changed.deleted = event.topic == topics.NODE_DELETED
            message.node_changed.change = event.topic.removeprefix("node.")
            return message
        if not self._job_matches(stream, job_id, extra):
            return None
        if event.topic.startswith("chunk."):
            changed = message.chunk_changed
            changed.chunk.job_id = job_id
            changed.chunk.id = int(payload.get("chunk_id", 0))
            changed.chunk.node_id = node_id
            new = payload.get("new_status", payload.get("status", ""))
            changed.chunk.status = for_nodes.chunk_status(new)
            changed.previous_status = for_nodes.chunk_status(payload.get("old_status"))
            return message
        if event.topic.startswith("log."):
            return None
        message.job_changed.job.CopyFrom(extra.job or jobs_pb2.Job(id=job_id))
        message.job_changed.deleted = event.topic == jobs_topics.JOB_DELETED
        return message

    @staticmethod
    def _job_matches(stream: ClientStream, job_id: int, extra: Extra) -> bool:
        if stream.node_ids and not (stream.job_ids or stream.folder_ids):
            return False
        if not stream.job_ids and not stream.folder_ids:
            return True
        if job_id in stream.job_ids:
            return True
        return extra.facts is not None and bool(stream.folder_ids & extra.facts.ancestors)

    def _notification(
        self, stream: ClientStream, event: Event, message: nodes_pb2.ClientEvent, extra: Extra
    ) -> nodes_pb2.ClientEvent | None:
        payload = event.payload
        if event.topic == jobs_topics.JOB_COMPLETED:
            kind, preference = COMPLETIONS.get(str(payload.get("status", "")), (0, ""))
        else:
            kind, preference = NOTIFICATIONS.get(event.topic, (0, ""))
        if not kind or not stream.preferences.get(preference, False):
            return None
        job_id = int(payload.get("job_id", 0))
        facts = extra.facts or JobFacts("", "", frozenset())
        if job_id and stream.preferences.get("own_jobs_only") and facts.owner != stream.user_name:
            return None
        note = message.notification
        note.kind = kind  # type: ignore[assignment]
        note.job_id = job_id
        note.job_name = facts.name
        note.chunk_id = int(payload.get("chunk_id", 0))
        note.node_id = int(payload.get("node_id", 0))
        note.text = _notification_text(event.topic, payload, facts)
        return message

    def facts(self, job_id: int) -> JobFacts:
        """Owner, name and folder ancestry of a job (read from the jobs domain)."""
        cached = self._facts.get(job_id)
        if cached is not None:
            return cached
        with self.db.transaction() as session:
            facts = for_nodes.job_facts(session, job_id)
        self._facts[job_id] = facts
        return facts

    # --- streams ---------------------------------------------------------------------------

    async def attach(
        self, stream: ClientStream, resume_after: int, send: Callable[[nodes_pb2.ClientEvent], Any]
    ) -> bool:
        """Replay what `stream` missed after `resume_after`, then join the live fan-out.

        Returns False when that event is no longer kept (the client must reload).
        """
        start: Position | None = None
        if resume_after:
            start = await asyncio.to_thread(self._position_of, resume_after)
            if start is None:
                return False
        while True:
            # The check and the join at once (and under the lock _skip_to
            # takes): the live fan-out continues exactly where the replay stopped.
            with self._attach_lock:
                if start is None or not start < self.position:
                    self.streams[stream.connection_id] = stream
                    return True
                target = self.position
            events = await asyncio.to_thread(self._between, start, target)
            for event, extra in events:
                rendered = self.render(stream, event, extra)
                if rendered is not None:
                    await send(rendered)
                    stream.last_event_id = event.id
            start = target

    def spacing(self, stream: ClientStream) -> float:
        """The least time between two writes of `stream` (0 when not batching)."""
        if not stream.batched:
            return 0.0
        low, high = SPACING_SECONDS
        return min(high, max(low, len(self.streams) / WRITES_PER_SECOND))

    def detach(self, stream: ClientStream) -> None:
        if self.streams.get(stream.connection_id) is stream:
            del self.streams[stream.connection_id]

    def _position_of(self, event_id: int) -> Position | None:
        with self.db.transaction() as session:
            return position_of(session, event_id)

    def _between(self, start: Position, end: Position) -> list[tuple[Event, Extra]]:
        result: list[tuple[Event, Extra]] = []
        with self.db.transaction() as session:
            while True:
                events, _ = read_events(session, start, limit=1000)
                events = [e for e in events if e.position <= end]
                result.extend((e, self.enrich(e)) for e in events)
                if len(events) < 1000:
                    return result
                start = events[-1].position


def _notification_text(topic: str, payload: dict[str, Any], facts: JobFacts) -> str:
    job = f"job {payload.get('job_id')} ({facts.name})" if facts.name else "a job"
    if topic == jobs_topics.JOB_STARTED:
        return f"{job} started"
    if topic == jobs_topics.JOB_COMPLETED:
        return f"{job} finished: {str(payload.get('status', 'completed')).replace('_', ' ')}"
    if topic == jobs_topics.CHUNK_STARTED:
        return f"chunk {payload.get('chunk_id')} of {job} started on node {payload.get('node_id')}"
    if topic == jobs_topics.CHUNK_FAILED:
        return f"chunk {payload.get('chunk_id')} of {job} failed"
    if topic == topics.NODE_LOST:
        return f"node {payload.get('name') or payload.get('node_id')} went offline"
    return topic
