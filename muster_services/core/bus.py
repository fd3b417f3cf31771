"""The event bus: a transactional outbox in Postgres, NOTIFY as a wake-up.

Writing: `publish(session, topic, payload)` inserts an `events` row in the
caller's transaction, so the event exists exactly when the state change does,
and queues a NOTIFY that Postgres delivers only if that transaction commits.

Reading: consumers walk the outbox in (txid, id) order and only read events
whose writing transaction is older than every transaction still running
(`txid < pg_snapshot_xmin(pg_current_snapshot())`). Event ids are handed out
before commit, so transactions can commit out of id order; reading by id alone
would let a consumer move past an event that commits a moment later and lose
it. Below the snapshot horizon no transaction can still commit, so a position
(txid, id) never has anything appear behind it. Writers never serialise on a
lock for this; the price is that a long-running transaction holds back
delivery until it ends.

A durable consumer stores its position in `event_consumers` in the same
transaction as the handler's own database work: its effects in the database
happen exactly once; effects outside it (pushing to a stream) at least once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from muster_services.core import metrics
from muster_services.core.caller import current_caller
from muster_services.core.database import Database

_LOG = logging.getLogger(__name__)

CHANNEL = "muster_events"
# Hints that name what just changed, for a reader that acts on the state
# tables at once instead of waiting for the outbox (see `hint`).
ASSIGNMENTS_CHANNEL = "muster_assignments"
# A NOTIFY payload holds at most 7,999 bytes.
_HINT_BYTES = 7_000

_HORIZON = "(pg_snapshot_xmin(pg_current_snapshot())::text)::bigint"


@dataclass(frozen=True, order=True)
class Position:
    """A place in the outbox: everything at or before it has been read."""

    txid: int = 0
    id: int = 0


@dataclass(frozen=True)
class Event:
    id: int
    txid: int
    topic: str
    key: str
    payload: dict[str, Any]
    created_at: datetime

    @property
    def position(self) -> Position:
        return Position(self.txid, self.id)


_INSERT = text(
    "WITH e AS (INSERT INTO events (topic, key, payload) VALUES (:topic, :key, :payload)"
    " RETURNING id) SELECT e.id, pg_notify(:channel, :topic) FROM e"
).bindparams(bindparam("payload", type_=JSONB))


def publish(
    session: Session, topic: str, payload: Mapping[str, Any] | None = None, key: str = ""
) -> int:
    """Record an event in the session's transaction; returns its id."""
    if not topic:
        raise ValueError("an event needs a topic")
    # The notification is delivered on commit and dropped on rollback;
    # identical payloads in one transaction collapse into one wake-up, which
    # is all it is. Same statement as the event: one round trip.
    event_id = session.execute(
        _INSERT, {"topic": topic, "key": key, "payload": dict(payload or {}), "channel": CHANNEL}
    ).scalar_one()
    return int(event_id)


def publish_many(
    session: Session,
    events: Sequence[tuple[str, Mapping[str, Any], str]],
    hints: tuple[str, Sequence[int]] | None = None,
) -> None:
    """Record several (topic, payload, key) events with one statement and one
    wake-up; with `hints` (channel, ids), hint them (see hint) in the same
    statement."""
    if not events:
        if hints:
            hint(session, *hints)
        return
    session.execute(
        _INSERT_MANY,
        {
            "events": json.dumps(
                [
                    {"topic": topic, "key": key, "payload": dict(payload)}
                    for topic, payload, key in events
                ]
            ),
            **wake_parameters((topic for topic, _, _ in events), hints),
        },
    )


def outbox_ctes(source: str) -> str:
    """The CTEs with which a statement of another domain records its events
    itself, in the statement that makes the change (one round trip for both,
    as publish_many is one for events alone): `published` inserts the rows
    `source` selects (columns topic, key, payload, and n, their order) and
    `woken` holds the wake-up and the hints, which run only if the statement
    reads `woken` once: `(SELECT count(*) FROM woken)`. Its parameters:
    wake_parameters()."""
    return (
        "published AS (INSERT INTO events (topic, key, payload)"
        f" SELECT s.topic, s.key, s.payload FROM ({source}) s ORDER BY s.n RETURNING 1),"
        " woken AS MATERIALIZED (SELECT pg_notify(:channel, :topics),"
        " (SELECT count(pg_notify(:hint_channel, p)) FROM unnest(CAST(:hints AS text[])) p))"
    )


def wake_parameters(
    topics: Iterable[str], hints: tuple[str, Sequence[int]] | None = None
) -> dict[str, Any]:
    """The parameters of `woken` (outbox_ctes) for events of these topics:
    the wake-up's payload names them (a reader of other topics sleeps on);
    with `hints` (channel, ids), hint them too (see hint)."""
    names = ",".join(sorted(set(topics)))
    hint_channel, hint_ids = hints or ("", ())
    return {
        "channel": CHANNEL,
        "topics": names if len(names) < 4000 else "batch",
        "hint_channel": hint_channel,
        "hints": _hint_payloads(hint_ids),
    }


def hint(session: Session, channel: str, ids: Sequence[int]) -> None:
    """Name these ids on `channel` when the session's transaction commits.

    A hint is not an event: it is lost if nobody listens, and carries no
    position. It lets a reader that can act on the committed state tables
    skip the outbox's wait for the snapshot horizon (every transaction that
    began before the commit must end first); the event written with the same
    change stays the durable record that every reader also gets.
    """
    payloads = _hint_payloads(ids)
    if payloads:
        session.execute(
            text("SELECT count(pg_notify(:channel, p)) FROM unnest(CAST(:payloads AS text[])) p"),
            {"channel": channel, "payloads": payloads},
        )


def _hint_payloads(ids: Sequence[int]) -> list[str]:
    """The ids as comma-separated payloads of at most _HINT_BYTES each."""
    payloads: list[str] = []
    payload: list[str] = []
    size = 0
    for value in ids:
        item = str(int(value))
        if payload and size + len(item) + 1 > _HINT_BYTES:
            payloads.append(",".join(payload))
            payload, size = [], 0
        payload.append(item)
        size += len(item) + 1
    if payload:
        payloads.append(",".join(payload))
    return payloads


def hinted_ids(payload: str) -> list[int]:
    """The ids of a hint's payload (malformed parts are ignored)."""
    return [int(part) for part in payload.split(",") if part.strip().isdigit()]


# The events, their wake-up and any hints: one statement (the inserting CTE
# runs whatever the SELECT reads of it).
_INSERT_MANY = text(
    "WITH "
    + outbox_ctes(
        "SELECT e.item->>'topic' AS topic, e.item->>'key' AS key, e.item->'payload' AS payload,"
        " e.n FROM jsonb_array_elements(CAST(:events AS jsonb)) WITH ORDINALITY AS e(item, n)"
    )
    + " SELECT (SELECT count(*) FROM woken)"
)


@dataclass(frozen=True)
class Batch:
    """What one read of the outbox found."""

    events: list[Event]
    # Newer committed events exist, held back by a transaction still running
    # (the caller should look again soon).
    held_back: bool
    # Everything up to here has been read: the last event, or past the events
    # of other topics that a filtered read skipped. A reader resumes here, so a
    # consumer of a rare topic does not scan the same busy stretch again and again.
    reached: Position


# Is anything newer than a position held back by a running transaction? In
# index order with LIMIT 1, not EXISTS: a generic plan of EXISTS (prepared
# statements) expects a match early in a sequential scan, and reads the whole
# outbox when there is none: 95 ms at 2,000,000 events.
HELD_BACK = (
    "SELECT 1 FROM events WHERE (txid, id) > (:txid, :id)"
    " AND txid >= :horizon {topic_filter} ORDER BY txid, id LIMIT 1"
)


def read_batch(
    session: Session,
    after: Position,
    topics: Sequence[str] | None = None,
    limit: int = 500,
) -> Batch:
    """Events after `after` that can no longer be overtaken, oldest first."""
    # Every transaction below the horizon has ended: the statements below all
    # see the same events under it, even though each takes its own snapshot.
    horizon = int(session.execute(text(f"SELECT {_HORIZON}")).scalar_one())
    topic_filter = "AND topic = ANY(:topics)" if topics else ""
    values = {"horizon": horizon, "limit": limit, "topics": list(topics or [])}
    rows = session.execute(
        text(
            f"""
            SELECT id, txid, topic, key, payload, created_at FROM events
            WHERE (txid, id) > (:txid, :id) AND txid < :horizon {topic_filter}
            ORDER BY txid, id
            LIMIT :limit
            """
        ),
        {"txid": after.txid, "id": after.id, **values},
    ).all()
    events = [
        Event(
            id=r.id,
            txid=r.txid,
            topic=r.topic,
            key=r.key,
            payload=r.payload,
            created_at=r.created_at,
        )
        for r in rows
    ]
    reached = events[-1].position if events else after
    if len(events) == limit:
        return Batch(events, False, reached)
    if topics:
        # Nothing else of these topics under the horizon: skip what was passed over.
        row = session.execute(
            text(
                "SELECT txid, id FROM events WHERE (txid, id) > (:txid, :id)"
                " AND txid < :horizon ORDER BY txid DESC, id DESC LIMIT 1"
            ),
            {"txid": reached.txid, "id": reached.id, "horizon": horizon},
        ).first()
        if row is not None:
            reached = Position(row.txid, row.id)
    held_back = (
        session.execute(
            text(HELD_BACK.format(topic_filter=topic_filter)),
            {"txid": reached.txid, "id": reached.id, **values},
        ).first()
        is not None
    )
    return Batch(events, held_back, reached)


def read_events(
    session: Session,
    after: Position,
    topics: Sequence[str] | None = None,
    limit: int = 500,
) -> tuple[list[Event], bool]:
    """Events after `after` that can no longer be overtaken, oldest first, and
    whether newer committed events are held back by a transaction still running."""
    batch = read_batch(session, after, topics, limit)
    return batch.events, batch.held_back


def latest_position(session: Session) -> Position:
    """The position a new live-only subscriber should start from."""
    row = session.execute(
        text(
            f"SELECT txid, id FROM events WHERE txid < {_HORIZON}"
            " ORDER BY txid DESC, id DESC LIMIT 1"
        )
    ).first()
    return Position(row.txid, row.id) if row else Position()


def position_of(session: Session, event_id: int) -> Position | None:
    """The position of a known event id (a client resuming after that event)."""
    row = session.execute(
        text("SELECT txid, id FROM events WHERE id = :id"), {"id": event_id}
    ).first()
    return Position(row.txid, row.id) if row else None


def prune_events(session: Session, older_than_hours: float) -> int:
    """Delete events older than the retention; returns how many went."""
    result = session.execute(
        text("DELETE FROM events WHERE created_at < now() - make_interval(secs => :secs)"),
        {"secs": older_than_hours * 3600.0},
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


Handler = Callable[[Session, Event], None]


class DurableConsumer:
    """A named consumer that resumes from its stored position.

    Each batch runs in one transaction: the consumer row is locked (so two
    replicas with the same name never process the same batch), the handler
    runs for every event with the same session, and the new position is
    stored before commit. A handler that raises rolls the whole batch back;
    it is retried on the next pass.
    """

    def __init__(
        self,
        db: Database,
        name: str,
        handler: Handler,
        topics: Sequence[str] | None = None,
        batch_size: int = 500,
        transactional: bool = True,
    ) -> None:
        if not name:
            raise ValueError("a durable consumer needs a name")
        self.db = db
        self.name = name
        self.handler = handler
        self.topics = list(topics) if topics else None
        self.batch_size = batch_size
        # False: each event is handled in its own short transaction and the
        # position is stored after the batch (at least once). For slow
        # handlers (hooks): a long transaction holding a row lock would hold
        # back every consumer's horizon. Run such a consumer with
        # Listener(exclusive=True) so one replica at a time handles it.
        self.transactional = transactional
        self._registered = False

    def position(self) -> Position:
        with self.db.transaction() as session:
            return self._lock_position(session)

    def _lock_position(self, session: Session) -> Position:
        session.execute(
            text("INSERT INTO event_consumers (name) VALUES (:name) ON CONFLICT DO NOTHING"),
            {"name": self.name},
        )
        row = session.execute(
            text("SELECT last_txid, last_id FROM event_consumers WHERE name = :name FOR UPDATE"),
            {"name": self.name},
        ).one()
        return Position(row.last_txid, row.last_id)

    def process_batch(self) -> tuple[int, bool]:
        """Handle one batch; returns (events handled, more may be waiting)."""
        if not self.transactional:
            return self._process_outside_transaction()
        with self.db.transaction() as session:
            position = self._lock_position(session)
            batch = read_batch(session, position, self.topics, self.batch_size)
            for event in batch.events:
                self.handler(session, event)
            if batch.reached != position:
                self._store(session, batch.reached)
        metrics.consumed(self.name, batch.events)
        return len(batch.events), batch.held_back or len(batch.events) == self.batch_size

    def _store(self, session: Session, reached: Position) -> None:
        session.execute(
            text(
                "UPDATE event_consumers SET last_txid = :txid, last_id = :id,"
                " updated_at = now() WHERE name = :name"
            ),
            {"txid": reached.txid, "id": reached.id, "name": self.name},
        )

    def _process_outside_transaction(self) -> tuple[int, bool]:
        if not self._registered:
            with self.db.transaction() as session:
                session.execute(
                    text(
                        "INSERT INTO event_consumers (name) VALUES (:name) ON CONFLICT DO NOTHING"
                    ),
                    {"name": self.name},
                )
            self._registered = True
        with self.db.transaction() as session:
            row = session.execute(
                text("SELECT last_txid, last_id FROM event_consumers WHERE name = :name"),
                {"name": self.name},
            ).first()
            if row is None:  # the row went (a database reset): register again
                self._registered = False
                return 0, True
            position = Position(row.last_txid, row.last_id)
            batch = read_batch(session, position, self.topics, self.batch_size)
        for event in batch.events:
            with self.db.transaction() as session:
                self.handler(session, event)
        if batch.reached != position:
            with self.db.transaction() as session:
                self._store(session, batch.reached)
        metrics.consumed(self.name, batch.events)
        return len(batch.events), batch.held_back or len(batch.events) == self.batch_size

    def drain(self) -> int:
        """Handle everything readable now; returns how many events."""
        total = 0
        while True:
            handled, _ = self.process_batch()
            total += handled
            if handled == 0:
                return total


def try_advisory_lock(conn: Any, key: int) -> bool:
    """Take a session advisory lock on `conn` if free: held until the
    connection closes, so it goes the moment its process dies."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    return bool(row and row[0])


class ListeningThread:
    """A thread holding its own LISTEN connection, reconnecting with backoff.

    LISTEN needs a dedicated connection outside the pool. Subclasses say what
    to do with the connection (`_serve`) and, optionally, whether this
    process may use it at all (`_admit`).
    """

    def __init__(
        self, db: Database, name: str, poll_seconds: float, channel: str = CHANNEL
    ) -> None:
        self.db = db
        self.name = name
        self.poll_seconds = poll_seconds
        self.channel = channel
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        try:  # wake the thread out of its wait
            with self.db.raw_connection() as conn:
                conn.execute("SELECT pg_notify(%s, 'stop')", (self.channel,))
        except Exception:  # the database may be gone already; the poll ends it
            pass
        if self._thread is not None:
            self._thread.join(timeout)

    def _admit(self, conn: Any) -> bool:
        return True

    def _serve(self, conn: Any) -> None:
        raise NotImplementedError

    def _wait(self, conn: Any, timeout: float, topics: Sequence[str] | None) -> None:
        """Sleep until a notification about one of `topics` (any, without
        topics) arrives or `timeout` passes, then drop the ones queued behind
        it. Notifications name the topics of their events ('batch' when they
        do not); they are a hint: the caller reads from its position anyway."""
        wanted = set(topics or ())
        deadline = time.monotonic() + timeout
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            notes = list(conn.notifies(timeout=left, stop_after=1))
            if any(
                not wanted or set(str(note.payload).split(",")) & (wanted | {"batch", "stop"})
                for note in notes
            ):
                # Outside the first generator: it holds the connection's lock.
                for _ in conn.notifies(timeout=0.0):
                    pass
                return

    def _run(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            try:
                with self.db.raw_connection() as conn:
                    if not self._admit(conn):
                        self._stop.wait(1.0)
                        continue
                    conn.execute(f"LISTEN {self.channel}")
                    backoff = 0.05
                    self._serve(conn)
            except Exception:
                if self._stop.is_set():
                    return
                self.errors += 1
                _LOG.exception("%s failed; retrying", self.name)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)


class Listener(ListeningThread):
    """Runs a consumer in a thread, woken by NOTIFY, polling as a fallback.

    Notifications are only a hint: after each wake-up (or `poll_seconds`
    without one) the consumer reads from its stored position, so a missed
    NOTIFY delays, never loses.
    """

    def __init__(
        self,
        consumer: DurableConsumer,
        poll_seconds: float = 5.0,
        exclusive: bool = False,
        settle_seconds: float = 0.0,
    ) -> None:
        super().__init__(consumer.db, f"bus-{consumer.name}", poll_seconds)
        self.consumer = consumer
        # Only the process holding the consumer's advisory lock handles events.
        self.exclusive = exclusive
        # A bookkeeping consumer waits this long after a wake-up before it
        # reads: it takes more events per batch, and leaves the moment right
        # after a commit to whoever must act on it at once (an assignment on
        # its way to its agent).
        self.settle_seconds = settle_seconds

    def _admit(self, conn: Any) -> bool:
        if not self.exclusive:
            return True
        key = int.from_bytes(
            hashlib.sha256(self.consumer.name.encode()).digest()[:8], "big", signed=True
        )
        return try_advisory_lock(conn, key)

    def _serve(self, conn: Any) -> None:
        retry = 0.0
        while not self._stop.is_set():
            handled, more = self.consumer.process_batch()
            if handled and more:
                continue
            # Held-back events need a quick second look; otherwise sleep until
            # a NOTIFY arrives or the poll interval passes.
            if more:
                retry = min(max(retry * 2, 0.01), 0.5)
                timeout = retry
            else:
                retry = 0.0
                timeout = self.poll_seconds
            self._wait(conn, timeout, self.consumer.topics)
            if self.settle_seconds:
                self._stop.wait(self.settle_seconds)


class LiveSubscription(ListeningThread):
    """Events from now on, for a process that reacts but keeps no position.

    Used where an event only matters to whoever is alive when it happens
    (a nodes-service replica delivering a command to the agent it holds, or
    pushing to the consoles it holds); whatever must survive a restart is
    re-read from the state tables on reconnect instead. `on_events` gets each
    batch, oldest first, in the subscription's thread; `position` is the last
    event handed over. No topics: every event.

    `skip_to`, when given, lets the owner pass over events nobody is there to
    be handed: while `unwatched()` says so, the subscription reads only the
    newest position (on a wake-up, at most every IDLE_SECONDS; not the
    events) and offers it to `skip_to`, which answers whether the owner took
    it (atomically with whatever makes it watched again); if not, it reads
    on as usual.
    """

    IDLE_SECONDS = 0.1

    def __init__(
        self,
        db: Database,
        topics: Sequence[str],
        on_events: Callable[[list[Event]], None],
        poll_seconds: float = 5.0,
        consumer: str = "live",
        unwatched: Callable[[], bool] | None = None,
        skip_to: Callable[[Position], bool] | None = None,
    ) -> None:
        super().__init__(db, "bus-live", poll_seconds)
        # Its name in the metrics (muster_event_bus_lag_seconds).
        self.consumer = consumer
        self.topics = list(topics)
        self.on_events = on_events
        self.position = Position()
        self.unwatched = unwatched
        self.skip_to = skip_to

    def start(self) -> None:
        with self.db.transaction() as session:
            self.position = latest_position(session)
        super().start()

    def _skipped(self, conn: Any) -> bool:
        """Nobody watches: the newest position offered to the owner instead
        of the events up to it; True when taken (then wait a little)."""
        if self.unwatched is None or self.skip_to is None or not self.unwatched():
            return False
        with self.db.transaction() as session:
            newest = latest_position(session)
        if newest > self.position and not self.skip_to(newest):
            return False
        self.position = max(self.position, newest)
        self._wait(conn, self.poll_seconds, self.topics)
        if self.unwatched():  # still nobody: at most one such look per IDLE_SECONDS
            self._stop.wait(self.IDLE_SECONDS)
        return True

    def _serve(self, conn: Any) -> None:
        while not self._stop.is_set():
            if self._skipped(conn):
                continue
            with self.db.transaction() as session:
                batch = read_batch(session, self.position, self.topics or None)
            events = batch.events
            if events:
                try:
                    self.on_events(events)
                except Exception:
                    _LOG.exception("live subscriber failed on events up to %s", events[-1].id)
                metrics.consumed(self.consumer, events)
            self.position = batch.reached
            if events:
                continue
            timeout = 0.02 if batch.held_back else self.poll_seconds
            self._wait(conn, timeout, self.topics)


class HintListener(ListeningThread):
    """Hands the ids of every hint on `channel` to `on_ids`, in its own thread.

    Hints sent while it does not listen (before it starts, while it
    reconnects) are lost: `on_listening` is called each time it listens
    again, so its owner can read the state a lost hint would have named.
    """

    def __init__(
        self,
        db: Database,
        channel: str,
        on_ids: Callable[[list[int]], None],
        poll_seconds: float = 5.0,
        on_listening: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(db, f"hints-{channel}", poll_seconds, channel)
        self.on_ids = on_ids
        self.on_listening = on_listening

    def _serve(self, conn: Any) -> None:
        if self.on_listening is not None:
            self.on_listening()
        while not self._stop.is_set():
            ids = [
                i
                for note in conn.notifies(timeout=self.poll_seconds, stop_after=1)
                for i in hinted_ids(str(note.payload))
            ]
            # Outside the first generator: it holds the connection's lock.
            ids += [i for note in conn.notifies(timeout=0.0) for i in hinted_ids(note.payload)]
            if not ids:
                # Quiet: a dead connection raises here and the thread reconnects.
                conn.execute("SELECT 1")
                continue
            try:
                self.on_ids(ids)
            except Exception:
                _LOG.exception("%s: handling %d ids failed", self.name, len(ids))


def publish_change(session: Session, topic: str, payload: Mapping[str, Any], key: str = "") -> int:
    """Publish a state change a caller made, stamped with who made it (`actor`,
    `peer`: the action log and every consumer read both)."""
    return publish(session, topic, {**payload, **current_caller().stamp()}, key=key)
