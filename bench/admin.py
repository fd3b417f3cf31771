"""Admin service figures on the embedded PostgreSQL.

Action log: the durable consumer "admin-action-log" turning a backlog of job
events into action and activity lines, against the same consumer with a
handler that writes nothing (the bus alone): the difference is what the logs
cost.

Path mapping: `muster_services.admin.paths.map_path` over 50 repositories (separator
normalisation, boundary check, longest prefix), against a bare
`str.startswith` loop over the same prefixes that does none of that.
"""

from __future__ import annotations

import time

from sqlalchemy import text

from bench.common import BENCHMARKS, Row, bench_database, median_of
from muster_services.admin.logs import record_event_batched
from muster_services.admin.paths import RepositoryPaths, map_path
from muster_services.core.bus import DurableConsumer
from muster_services.core.database import (
    Database,
)

BACKLOG = 10_000
RUNS = 3
REPOSITORIES = [
    RepositoryPaths(f"P:\\show{i:02d}", f"/mnt/show{i:02d}", f"/Volumes/show{i:02d}")
    for i in range(50)
]
PATHS = [f"P:\\show{i % 60:02d}\\seq\\shot{i:04d}\\scene.ma" for i in range(20_000)]


def _fill_backlog(db: Database) -> None:
    with db.transaction() as session:
        session.execute(text("TRUNCATE events, event_consumers, action_log, activity_log"))
        session.execute(
            text(
                "INSERT INTO events (topic, key, payload) SELECT 'job.deleted', i::text,"
                " jsonb_build_object('job_id', i, 'actor', 'ann', 'peer', 'ipv4:10.0.0.7:5000')"
                " FROM generate_series(1, :n) AS i"
            ),
            {"n": BACKLOG},
        )


def _drain_rate(db: Database, write_lines: bool) -> float:
    _fill_backlog(db)
    handler = record_event_batched if write_lines else (lambda session, event: None)
    consumer = DurableConsumer(db, f"bench-{time.monotonic_ns()}", handler)
    started = time.perf_counter()
    handled = 0
    # Another transaction on the server may hold the bus horizon a moment.
    while handled < BACKLOG and time.perf_counter() - started < 120:
        handled += consumer.process_batch()[0]
    assert handled == BACKLOG, handled
    return handled / (time.perf_counter() - started)


def _map_rate() -> float:
    started = time.perf_counter()
    for path in PATHS:
        map_path(path, REPOSITORIES, "linux")
    return len(PATHS) / (time.perf_counter() - started)


def _bare_rate() -> float:
    prefixes = [(r.windows_path, r.linux_path) for r in REPOSITORIES]
    started = time.perf_counter()
    for path in PATHS:
        for source, target in prefixes:
            if path.startswith(source):
                path = target + path[len(source) :]
                break
    return len(PATHS) / (time.perf_counter() - started)


def run() -> list[Row]:
    with bench_database("bench_admin", pool_size=2) as db:
        ours_log = median_of(RUNS, lambda: _drain_rate(db, True))
        bus_only = median_of(RUNS, lambda: _drain_rate(db, False))
    return [
        Row(
            f"action log: {BACKLOG:,} events to action + activity lines",
            ours_log,
            bus_only,
            "the same durable consumer writing nothing",
            "events/s",
        ),
        Row(
            "map_path: 50 repositories, Windows -> Linux",
            median_of(RUNS, _map_rate),
            median_of(RUNS, _bare_rate),
            "bare startswith loop, no normalisation",
            "paths/s",
        ),
    ]


BENCHMARKS["admin"] = run
