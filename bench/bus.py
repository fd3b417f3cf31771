"""Event bus throughput on the embedded PostgreSQL.

Writers: concurrent threads each committing transactions that publish one
event. Ours is `muster_services.core.bus.publish` (lock-free; readers use the
snapshot horizon). The peer is the usual alternative that keeps event ids in
commit order by taking one advisory lock per publishing transaction, which
serialises every writer's commit.

Readers: draining a backlog with a durable consumer (position stored per
batch) against a bare `id > last` read loop that stores nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.orm import Session

from bench.common import BENCHMARKS, Row, bench_database, median_of
from muster_services.core.bus import DurableConsumer, publish
from muster_services.core.database import (
    Database,
)

WRITERS = 8
TRANSACTIONS_PER_WRITER = 150
BACKLOG = 20_000
RUNS = 3


def _serialised_publish(session: Session, topic: str) -> None:
    session.execute(text("SELECT pg_advisory_xact_lock(4242)"))
    session.execute(text("INSERT INTO events (topic) VALUES (:t)"), {"t": topic})
    session.execute(text("SELECT pg_notify('bench', :t)"), {"t": topic})


def _write_rate(db: Database, publish_one: Callable[[Session, str], object]) -> float:
    barrier = threading.Barrier(WRITERS + 1)

    def writer() -> None:
        barrier.wait()
        for _ in range(TRANSACTIONS_PER_WRITER):
            with db.transaction() as session:
                session.execute(text("SELECT 1"))  # the state change would be here
                publish_one(session, "bench.write")

    threads = [threading.Thread(target=writer) for _ in range(WRITERS)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return WRITERS * TRANSACTIONS_PER_WRITER / (time.perf_counter() - started)


def _fill_backlog(db: Database) -> None:
    with db.transaction() as session:
        session.execute(text("TRUNCATE events, event_consumers"))
        session.execute(
            text("INSERT INTO events (topic) SELECT 'bench.read' FROM generate_series(1, :n)"),
            {"n": BACKLOG},
        )


def _drain_rate(db: Database) -> float:
    _fill_backlog(db)
    consumer = DurableConsumer(db, f"bench-{time.monotonic_ns()}", lambda s, e: None)
    started = time.perf_counter()
    handled = consumer.drain()
    assert handled == BACKLOG, handled
    return handled / (time.perf_counter() - started)


def _bare_read_rate(db: Database) -> float:
    _fill_backlog(db)
    last, handled = 0, 0
    started = time.perf_counter()
    while True:
        with db.transaction() as session:
            rows = session.execute(
                text(
                    "SELECT id, topic, payload FROM events WHERE id > :last ORDER BY id LIMIT 500"
                ),
                {"last": last},
            ).all()
        if not rows:
            break
        last = rows[-1].id
        handled += len(rows)
    return handled / (time.perf_counter() - started)


def run() -> list[Row]:
    with bench_database("bench_bus", pool_size=WRITERS) as db:
        ours_w, peer_w = [], []
        for _ in range(RUNS):  # alternate so drift hits both alike
            ours_w.append(_write_rate(db, lambda s, t: publish(s, t)))
            peer_w.append(_write_rate(db, _serialised_publish))
        ours_r = median_of(RUNS, lambda: _drain_rate(db))
        peer_r = median_of(RUNS, lambda: _bare_read_rate(db))
    from statistics import median

    return [
        Row(
            f"publish: {WRITERS} writers, 1 event per commit",
            median(ours_w),
            median(peer_w),
            "advisory-lock serialised outbox",
            "commits/s",
        ),
        Row(
            f"consume: drain {BACKLOG:,} events (durable consumer)",
            ours_r,
            peer_r,
            "bare id>last read loop, no position stored",
            "events/s",
        ),
    ]


BENCHMARKS["event bus"] = run
