from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from muster_services.core.bus import (
    HELD_BACK,
    DurableConsumer,
    Event,
    HintListener,
    Listener,
    LiveSubscription,
    Position,
    hint,
    latest_position,
    position_of,
    prune_events,
    publish,
    publish_many,
    read_events,
)
from muster_services.core.database import Database

REPO = Path(__file__).resolve().parents[2]


class ListenerProcess:
    """A real second process running a durable bus listener."""

    def __init__(self, url: str, name: str, poll_seconds: float = 30.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.core.bus_listener_main", url, name, str(poll_seconds)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        assert self.next_line(30) == "ready"

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    # Generous: on a shared PostgreSQL another test's transaction may hold
    # events back for a while (the horizon is cluster-wide).
    def next_line(self, timeout: float = 30) -> str:
        return self.lines.get(timeout=timeout)

    def events(self, count: int, timeout: float = 30) -> list[str]:
        return [self.next_line(timeout) for _ in range(count)]

    def quiet_for(self, seconds: float) -> bool:
        try:
            line = self.lines.get(timeout=seconds)
        except queue.Empty:
            return True
        pytest.fail(f"unexpected output from listener: {line}")

    def stop(self) -> None:
        self.proc.terminate()
        assert self.proc.wait(15) == 0


ListenerFactory = Callable[..., ListenerProcess]


@pytest.fixture
def listener_factory(database_url: str) -> Iterator[ListenerFactory]:
    started: list[ListenerProcess] = []

    def factory(name: str, poll_seconds: float = 30.0) -> ListenerProcess:
        started.append(ListenerProcess(database_url, name, poll_seconds))
        return started[-1]

    yield factory
    for listener in started:
        if listener.proc.poll() is None:
            listener.proc.kill()
            listener.proc.wait()


def _settled_events(db: Database, after: Position) -> list[Event]:
    """read_events once no transaction anywhere in the cluster holds them back.

    The horizon is cluster-wide, so a parallel test's open transaction can
    briefly hold back ours: wait it out, as the Listener does.
    """
    deadline = time.monotonic() + 10
    while True:
        with db.transaction() as session:
            events, held_back = read_events(session, after)
        if not held_back or time.monotonic() > deadline:
            return events
        time.sleep(0.02)


def _drain(consumer: DurableConsumer, expected: int) -> int:
    deadline = time.monotonic() + 10
    total = 0
    while total < expected and time.monotonic() < deadline:
        total += consumer.drain()
        time.sleep(0.02)
    return total


def _publish(db: Database, topic: str, key: str = "") -> int:
    with db.transaction() as session:
        return publish(session, topic, {"k": key}, key=key)


def test_event_committed_in_one_process_reaches_a_listener_in_another(
    db: Database, listener_factory: ListenerFactory
) -> None:
    listener = listener_factory("cross-process")
    started = time.monotonic()
    event_id = _publish(db, "job.submitted", "42")

    assert listener.next_line() == f"event {event_id} job.submitted 42"
    # NOTIFY wakes the listener: far sooner than its 30 s poll.
    assert time.monotonic() - started < 5
    listener.stop()


def test_event_in_a_rolled_back_transaction_is_never_seen(
    db: Database, listener_factory: ListenerFactory
) -> None:
    listener = listener_factory("rollback")
    with db.sessions() as session:
        publish(session, "job.submitted", key="ghost")
        session.rollback()
    kept = _publish(db, "job.submitted", "kept")

    assert listener.next_line() == f"event {kept} job.submitted kept"
    assert listener.quiet_for(0.5)
    listener.stop()
    with db.transaction() as session:
        keys = session.execute(text("SELECT key FROM events")).scalars().all()
    assert keys == ["kept"]


def test_stopped_listener_catches_up_on_restart_with_nothing_missed_or_repeated(
    db: Database, listener_factory: ListenerFactory
) -> None:
    first = listener_factory("catch-up", poll_seconds=1.0)
    before = [_publish(db, "chunk.finished", str(i)) for i in range(3)]
    assert first.events(3) == [f"event {i} chunk.finished {n}" for n, i in enumerate(before)]
    first.stop()

    while_down = [_publish(db, "chunk.finished", str(i)) for i in range(3, 6)]

    second = listener_factory("catch-up", poll_seconds=1.0)
    assert second.events(3) == [
        f"event {i} chunk.finished {n}" for n, i in zip(range(3, 6), while_down, strict=True)
    ]
    assert second.quiet_for(0.5)
    second.stop()


def test_event_of_a_transaction_still_running_is_held_back_not_skipped(db: Database) -> None:
    slow = db.sessions()
    slow.begin()
    early_id = publish(slow, "job.submitted", key="slow")  # smaller id, commits last
    late_id = _publish(db, "job.submitted", "fast")
    assert early_id < late_id

    with db.transaction() as session:
        events, held_back = read_events(session, Position())
    # The fast event's transaction started after the slow one: delivering it
    # now would move the position past the slow event before it commits.
    assert events == []
    assert held_back

    slow.commit()
    slow.close()
    events = _settled_events(db, Position())
    assert [e.key for e in events] == ["slow", "fast"]


def test_durable_consumer_handles_each_event_once_and_rolls_back_a_failed_batch(
    db: Database,
) -> None:
    seen: list[str] = []
    fail = {"on": "b"}

    def handle(session: Session, event: Event) -> None:
        if event.key == fail["on"]:
            raise RuntimeError("handler failed")
        seen.append(event.key)

    consumer = DurableConsumer(db, "once", handle)
    for key in ("a", "b", "c"):
        _publish(db, "x", key)

    with pytest.raises(RuntimeError):
        _drain(consumer, 3)
    assert consumer.position() == Position()  # the failed batch committed nothing

    fail["on"] = ""
    seen.clear()
    assert _drain(consumer, 3) == 3
    assert seen == ["a", "b", "c"]
    assert consumer.drain() == 0


def test_consumer_reads_only_its_topics(db: Database) -> None:
    seen: list[str] = []
    consumer = DurableConsumer(db, "topics", lambda s, e: seen.append(e.topic), topics=["b"])
    for topic in ("a", "b", "a", "b"):
        _publish(db, topic)
    _drain(consumer, 2)
    assert seen == ["b", "b"]


def test_a_topic_consumer_moves_past_other_topics_and_publish_many_keeps_order(
    db: Database,
) -> None:
    seen: list[str] = []
    consumer = DurableConsumer(db, "rare", lambda s, e: seen.append(e.key), topics=["rare"])
    with db.transaction() as session:
        publish_many(session, [("busy", {"n": n}, str(n)) for n in range(50)])
    busy = _settled_events(db, Position())
    assert [e.key for e in busy] == [str(n) for n in range(50)]  # one statement, in order
    deadline = time.monotonic() + 10
    while consumer.position() < busy[-1].position and time.monotonic() < deadline:
        consumer.drain()
        time.sleep(0.02)
    # Nothing of its topic, yet its position passed the busy stretch: the next
    # read starts after it instead of scanning it again.
    assert seen == [] and consumer.position() == busy[-1].position
    _publish(db, "rare", "r1")
    assert _drain(consumer, 1) == 1 and seen == ["r1"]


def test_listener_in_thread_wakes_on_notify(db: Database) -> None:
    got: queue.Queue[str] = queue.Queue()
    listener = Listener(DurableConsumer(db, "thread", lambda s, e: got.put(e.key)), poll_seconds=30)
    listener.start()
    try:
        time.sleep(0.2)
        _publish(db, "x", "hello")
        assert got.get(timeout=5) == "hello"
    finally:
        listener.stop()


def test_positions_resume_after_a_known_event_and_prune_drops_old_events(db: Database) -> None:
    first = _publish(db, "x", "1")
    _publish(db, "x", "2")
    with db.transaction() as session:
        after_first = position_of(session, first)
        assert after_first is not None
        assert position_of(session, 10**12) is None
    events = _settled_events(db, after_first)
    assert [e.key for e in events] == ["2"]
    with db.transaction() as session:
        assert latest_position(session) == events[-1].position
        session.execute(
            text("UPDATE events SET created_at = now() - interval '10 days' WHERE id = :id"),
            {"id": first},
        )
        assert prune_events(session, older_than_hours=24 * 7) == 1
    assert [e.key for e in _settled_events(db, Position())] == ["2"]


def test_publish_refuses_an_event_without_topic(db: Database) -> None:
    with db.transaction() as session, pytest.raises(ValueError):
        publish(session, "")


def test_hints_name_their_ids_on_commit_only_however_many(db: Database) -> None:
    got: queue.Queue[list[int]] = queue.Queue()
    listener = HintListener(db, "test_hints", got.put, poll_seconds=30)
    listener.start()
    try:
        time.sleep(0.2)
        with pytest.raises(RuntimeError), db.transaction() as session:
            hint(session, "test_hints", [1, 2, 3])
            raise RuntimeError("rolled back")
        many = list(range(1_000_000, 1_003_000))  # 24,000 bytes: several NOTIFYs
        with db.transaction() as session:
            hint(session, "test_hints", many)
        heard: list[int] = []
        while len(heard) < len(many):
            heard += got.get(timeout=5)
        assert heard == many
        assert got.empty()  # the rolled-back hint never came
    finally:
        listener.stop()


def test_hints_sent_before_the_listener_listens_are_for_on_listening_to_find(
    db: Database,
) -> None:
    """A hint sent while nobody listens is lost; the listener says each time
    it listens, after its LISTEN, so its owner reads the state instead."""
    listening: queue.Queue[bool] = queue.Queue()
    got: queue.Queue[list[int]] = queue.Queue()
    with db.transaction() as session:
        hint(session, "test_hints_late", [7])  # nobody listens yet
    listener = HintListener(
        db, "test_hints_late", got.put, poll_seconds=30, on_listening=lambda: listening.put(True)
    )
    listener.start()
    try:
        assert listening.get(timeout=5)
        with db.transaction() as session:
            hint(session, "test_hints_late", [8])
        assert got.get(timeout=5) == [8]
        assert got.empty()
    finally:
        listener.stop()


def test_a_live_subscription_nobody_watches_passes_over_events_unread(db: Database) -> None:
    """While its owner says nobody watches, a live subscription hands over no
    event and takes the newest position; once watched, it hands over every
    event after the position the owner last took, in order."""
    watched = threading.Event()
    taken: list[Position] = []
    handed: list[Event] = []

    def skip_to(position: Position) -> bool:
        if watched.is_set():
            return False
        taken.append(position)
        return True

    subscription = LiveSubscription(
        db,
        [],
        handed.extend,
        poll_seconds=0.2,
        unwatched=lambda: not watched.is_set(),
        skip_to=skip_to,
    )
    subscription.start()
    try:
        with db.transaction() as session:
            passed = [publish(session, "job.edited", {"n": n}) for n in range(3)]
        deadline = time.monotonic() + 10
        while not (taken and taken[-1].id >= passed[-1]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert taken and taken[-1].id == passed[-1]
        watched.set()
        with db.transaction() as session:
            after = [publish(session, "job.edited", {"n": n}) for n in range(3, 6)]
        while len(handed) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [e.id for e in handed] == after
    finally:
        subscription.stop()


def test_the_held_back_read_uses_the_index_even_as_a_generic_plan(db: Database) -> None:
    """A consumer asks after every read whether newer events are held back; a
    generic plan (prepared statement, parameters unknown) once scanned the
    whole outbox for it."""
    with db.transaction() as session:
        session.execute(
            text(
                "INSERT INTO events (txid, topic) SELECT g, 'chunk.finished'"
                " FROM generate_series(1, 20000) g"
            )
        )
        session.execute(text("ANALYZE events"))
    statement = (
        HELD_BACK.format(topic_filter="AND topic = ANY(:topics)")
        .replace(":txid", "$1")
        .replace(":id", "$2")
        .replace(":horizon", "$3")
        .replace(":topics", "$4")
    )
    with db.read() as connection:
        connection.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        connection.exec_driver_sql(f"PREPARE held(bigint, bigint, bigint, text[]) AS {statement}")
        plan = "\n".join(
            row[0]
            for row in connection.exec_driver_sql(
                "EXPLAIN EXECUTE held(19990, 19990, 20001, '{chunk.finished}')"
            )
        )
        connection.exec_driver_sql("DEALLOCATE held")
    assert "Index Scan using ix_events_txid_id" in plan and "Seq Scan" not in plan, plan
