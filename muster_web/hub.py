"""One live event stream for every browser.

The hub holds a single console connection to the dispatcher (muster_gateway/live.py:
reconnects and resumes after a restart) and fans its job, chunk and node
changes out to every open `/api/events` stream. The connection uses the token
of a logged-in user that opened the events page (Upstream.lend): consoles see
every job and node, so sharing it shows no user more than their own would.
It starts with the first browser; when the lent token is refused, it waits
for the next browser to lend another.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import grpc

from muster_gateway.live import LiveClient
from muster_proto.jobs.v1 import jobs_pb2
from muster_proto.nodes.v1 import nodes_pb2
from muster_web import views
from muster_web.upstream import Upstream

_LOG = logging.getLogger("muster_web.hub")
# Batches a slow browser may fall behind by before it is told to reload.
QUEUE_BATCHES = 1000


class EventHub:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self._subscribers: set[asyncio.Queue[list[views.Json] | None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._client: LiveClient | None = None
        self._token_offered = threading.Event()
        self._stopping = threading.Event()
        self.connections = 0  # upstream connections opened (tests, docs)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def lend(self, token: str) -> None:
        """A logged-in browser's token, for the shared connection."""
        if self.upstream.lend(token):
            self._token_offered.set()
        with self._lock:
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._run, name="web events", daemon=True)
                self._thread.start()

    async def subscribe(self) -> AsyncIterator[list[views.Json]]:
        """Batches of changes until the browser goes away."""
        self._loop = asyncio.get_running_loop()
        queue: asyncio.Queue[list[views.Json] | None] = asyncio.Queue(QUEUE_BATCHES)
        self._subscribers.add(queue)
        try:
            while True:
                batch = await queue.get()
                if batch is None:
                    return
                # What queued meanwhile goes in the same message.
                while not queue.empty():
                    more = queue.get_nowait()
                    if more is None:
                        return
                    batch = batch + more
                yield batch
        finally:
            self._subscribers.discard(queue)

    def stop(self) -> None:
        self._stopping.set()
        self._token_offered.set()
        client = self._client
        if client is not None:
            client.stop()
        if self._thread is not None:
            self._thread.join(10)

    # --- the upstream thread ---------------------------------------------------

    def _run(self) -> None:
        request = nodes_pb2.ConnectRequest(client_kind=nodes_pb2.CLIENT_KIND_CONSOLE)
        resume = 0
        while not self._stopping.is_set():
            self._token_offered.clear()
            client = LiveClient("muster-web", self.upstream, request, self._on_event, _LOG.info)
            client.last_event_id = resume
            self._client = client
            self.connections += 1
            client.run()
            resume = client.last_event_id
            # Refused (the lent token expired or was revoked): wait for a browser
            # to lend a fresh one.
            self._token_offered.wait()

    def _on_event(self, event: nodes_pb2.ClientEvent) -> None:
        loop = self._loop
        if loop is None or not self._subscribers:
            return
        try:
            self._complete(event)
        except grpc.RpcError as exc:
            # Gone meanwhile (a later event says so), or the services are busy:
            # the browsers still get the id and what the event carried.
            _LOG.debug("cannot read what event %d is about: %s", event.event_id, exc.code())
        item = views.event(event)
        if item is not None:
            loop.call_soon_threadsafe(self._fan_out, [item])

    def _complete(self, event: nodes_pb2.ClientEvent) -> None:
        """Chunk and node events carry ids only: read the object once here,
        for every browser, rather than once per browser."""
        metadata = self.upstream.metadata()
        timeout = self.upstream.timeout
        kind = event.WhichOneof("event")
        if kind == "node_changed" and not event.node_changed.deleted:
            reply = self.upstream.nodes().GetNode(
                nodes_pb2.GetNodeRequest(node_id=event.node_changed.node.id),
                metadata=metadata,
                timeout=timeout,
            )
            event.node_changed.node.CopyFrom(reply.node)
        elif kind == "chunk_changed":
            chunk = event.chunk_changed.chunk
            reply_chunk = self.upstream.jobs().GetChunk(
                jobs_pb2.GetChunkRequest(job_id=chunk.job_id, chunk_id=chunk.id),
                metadata=metadata,
                timeout=timeout,
            )
            chunk.CopyFrom(reply_chunk.chunk)

    def _fan_out(self, batch: list[Any]) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(batch)
            except asyncio.QueueFull:
                # Too far behind: end its stream; the page reconnects and reloads.
                self._subscribers.discard(queue)
                queue.get_nowait()
                queue.put_nowait(None)
