"""The scheduler's own ceiling: the render loop's database work alone, against
the best a queue on PostgreSQL does on the same server in the same run.

Three ways through the same count of jobs, CHUNKS (50,000), on one embedded
PostgreSQL, round after round (RUNS rounds, medians reported):

- ours: the jobs service's own code with no gRPC and no agents. One job of
  CHUNKS chunks is queued on NODES idle, connected nodes; the leader's tick
  (`Scheduler.tick`: up to 500 assignments committed in one transaction) runs
  in turn with the result path (`ChunkRuns.finish_many`, the service layer
  of FinishChunkRuns) recording the tick's runs as succeeded in batches of
  FINISH_BATCH, as the nodes service's relay batches them. Reported: chunks
  over the time spent in those two calls (reading the tick's fencing tokens
  back, the nodes service's part, is left out), and that time split between
  the two. The nodes service's build of the same assignments' messages
  (`for_nodes.build_assignments`, its reads included) is timed on the side;
  The same two calls are also run at once, as production runs them
  (`_Pipeline`): one thread ticks like the leader and reads each tick's new
  assignments back by fencing token, FINISHERS threads record the results
  like the nodes replicas' relays, each batch after the one before; the
  rate is CHUNKS over the whole run. The headline ratios are these: the
  peer works with several connections at once too;
- bare: a batched `FOR UPDATE SKIP LOCKED` loop on a table of CHUNKS rows,
  the least a loop that assigns and completes in two commits can do: one
  `UPDATE ... RETURNING` takes up to 500 queued rows, then they are marked
  done in batches of FINISH_BATCH; one after another on one connection, and
  at once in the same shape as ours (one taking, FINISHERS completing);
- pgqueuer 1.6.0 as its authors benchmark it (their tools/benchmark.py drain
  strategy): CHUNKS jobs enqueued, then CONSUMERS consumers, each on its own
  asyncpg connection, dequeue in batches of PGQ_BATCH until the queue is
  empty, with the table tuned by `pgq autovac` (Queries.optimize_autovacuum)
  and the statistics aggregated on their default interval. The same drain on
  psycopg is reported for reference.

Each loop's CPU time over its timed part is measured too (this process's,
all threads, and the PostgreSQL server's processes'), per 1,000 chunks: on a
machine shared with other work the rates move with the load, the CPU a
chunk costs much less. The database is vacuumed before each loop, outside
the timed parts (`_settle`), so no loop is charged for the autovacuum of
what the loops before it left behind.

BENCH_CEILING_PROFILE=1 runs one more round of ours under cProfile and prints
where the time goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import io
import os
import pstats
import queue
import resource
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import event, text

from bench.common import (
    BENCHMARKS,
    Row,
    bench_database,
    cpu_ticks,
    idle_nodes,
    postmaster_pid,
    proc_stat,
    submit_command_job,
)
from muster_services.core.database import Database, libpq_url
from muster_services.jobs.for_nodes import ReferenceCache, build_assignments
from muster_services.jobs.runs import ChunkRuns, RunEnd
from muster_services.jobs.scheduler import Scheduler
from muster_services.jobs.service import JobsService

CHUNKS = int(os.environ.get("BENCH_CEILING_CHUNKS", "50000"))
NODES = int(os.environ.get("BENCH_CEILING_NODES", "2000"))
RUNS = int(os.environ.get("BENCH_CEILING_RUNS", "3"))
PROFILE = os.environ.get("BENCH_CEILING_PROFILE", "") == "1"
TICK_BATCH = 500  # Scheduler's default batch_size
FINISH_BATCH = 100
CONSUMERS = 5
# Threads recording results in the concurrent rows: one per nodes replica of
# the two-replica rows of the render bench.
FINISHERS = int(os.environ.get("BENCH_CEILING_FINISHERS", "2"))
PGQ_BATCH = 100


# --- CPU ---------------------------------------------------------------------------------


def _server_cpu() -> float:
    """CPU seconds of the benchmarks' PostgreSQL so far: its postmaster, its
    children, and the children that ended (the postmaster's cutime and
    cstime: a backend whose connection closed is counted once reaped)."""
    postmaster = postmaster_pid()
    fields = proc_stat(postmaster)
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
    for child in children:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            ticks += cpu_ticks(proc_stat(child))
    return ticks / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Cpu:
    """CPU seconds spent inside windows: this process's (every thread) and
    the PostgreSQL server's."""

    def __init__(self) -> None:
        self.own = self.server = 0.0

    @contextlib.contextmanager
    def window(self) -> Iterator[None]:
        own, server = _own_cpu(), _server_cpu()
        try:
            yield
        finally:
            self.own += _own_cpu() - own
            self.server += _server_cpu() - server

    def per_thousand(self, count: int) -> tuple[float, float]:
        """(this process, PostgreSQL) CPU milliseconds per 1,000 of `count`."""
        return self.own * 1e6 / count, self.server * 1e6 / count


def _settle(url: str) -> None:
    """VACUUM the bench database between two loops, outside their timed
    windows. Each loop leaves dead rows behind (ours its chunks, runs and
    events, pgqueuer its queue and log, the bare loop its table); without
    this, the autovacuum of one loop's leftovers ran in the next loop's window
    and was charged to it (2026-12-07: PostgreSQL's CPU per 1,000 chunks of
    ours was 193 ms in the full bench against 107 to 125 with ours run alone).
    A loop's window now holds its own work and the vacuuming of its own churn."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("VACUUM")


# --- ours --------------------------------------------------------------------------------


def _live_runs(db: Database, after: int = 0) -> list[RunEnd]:
    """The live assignments holding tokens above `after` as succeeded runs
    (what the agents would report), in token order."""
    with db.transaction() as session:
        rows = session.execute(
            text(
                "SELECT job_id, chunk_number, fencing_token, node_id FROM chunk_assignments"
                " WHERE fencing_token > :after ORDER BY fencing_token"
            ),
            {"after": after},
        ).all()
    return [
        RunEnd(r.job_id, r.chunk_number, r.fencing_token, r.node_id, 0, "succeeded") for r in rows
    ]


def _ours(
    db: Database, jobs: JobsService, cpu: Cpu | None = None
) -> tuple[float, float, float, float]:
    """One job of CHUNKS chunks through ticks and finishes: (chunks/s over the
    time in those calls, ms of ticks per 1,000 chunks, ms of finishes per 1,000,
    ms per 1,000 of building the Assignment messages, not in the chunks/s);
    the CPU of the ticks and finishes in `cpu`."""
    cpu = cpu or Cpu()
    submit_command_job(jobs, CHUNKS, "ceiling")
    scheduler, runs = Scheduler(db, batch_size=TICK_BATCH), ChunkRuns(db)
    reference = ReferenceCache()
    ticking = finishing = building = 0.0
    done = 0
    while done < CHUNKS:
        with cpu.window():
            started = time.perf_counter()
            assigned = scheduler.tick()
            ticking += time.perf_counter() - started
        if not assigned:
            raise RuntimeError(f"the scheduler assigned nothing after {done} of {CHUNKS}")
        ends = _live_runs(db)
        started = time.perf_counter()
        build_assignments(db, [e.node_id for e in ends], reference)
        building += time.perf_counter() - started
        with cpu.window():
            started = time.perf_counter()
            for at in range(0, len(ends), FINISH_BATCH):
                runs.finish_many(ends[at : at + FINISH_BATCH])
            finishing += time.perf_counter() - started
        done += len(ends)
    per_thousand = 1e6 / done
    return (
        done / (ticking + finishing),
        ticking * per_thousand,
        finishing * per_thousand,
        building * per_thousand,
    )


class _Pipeline:
    """The two halves of a loop run as production runs them: one thread
    assigns (the leader's ticks), FINISHERS threads record the results of
    what it assigned (each nodes replica's relay sends its batches one after
    another, and the jobs service serves them while the leader ticks).

    `assign()` commits one batch of assignments and returns the finished
    runs to record (empty: nothing could be assigned now); `finish(worker,
    batch)` commits one batch of them on finishing thread `worker` (0 to
    FINISHERS - 1). The assigning thread waits for a finish
    before trying again after an empty round, as the leader waits for the
    event of a freed node."""

    def __init__(
        self,
        assign: Callable[[], list[Any]],
        finish: Callable[[int, list[Any]], object],
        total: int,
    ) -> None:
        self.assign, self.finish, self.total = assign, finish, total
        self.batches: queue.Queue[list[Any] | None] = queue.Queue()
        self.freed = threading.Condition()
        self.done = 0
        self.failed: list[BaseException] = []

    def run(self) -> float:
        """Seconds from the first assignment to the last finish."""
        workers = [threading.Thread(target=self._finisher, args=(i,)) for i in range(FINISHERS)]
        for worker in workers:
            worker.start()
        started = time.perf_counter()
        try:
            self._assigner()
        finally:
            for _ in workers:
                self.batches.put(None)
            for worker in workers:
                worker.join()
        elapsed = time.perf_counter() - started
        if self.failed:
            raise self.failed[0]
        return elapsed

    def _assigner(self) -> None:
        sent = 0
        while not self.failed:
            with self.freed:
                seen = self.done
            if seen >= self.total:
                return
            ends = self.assign() if sent < self.total else []
            if ends:
                sent += len(ends)
                for at in range(0, len(ends), FINISH_BATCH):
                    self.batches.put(ends[at : at + FINISH_BATCH])
                continue
            self._wait_for_a_finish(seen)

    def _wait_for_a_finish(self, seen: int) -> None:
        """Nothing was free: wait until a finish since `seen` frees something."""
        with self.freed:
            self.freed.wait_for(lambda: self.done != seen or bool(self.failed), timeout=5)

    def _finisher(self, worker: int) -> None:
        while (batch := self.batches.get()) is not None:
            try:
                self.finish(worker, batch)
            except BaseException as exc:
                self.failed.append(exc)
            with self.freed:
                self.done += len(batch)
                self.freed.notify_all()


def _ours_concurrent(db: Database, jobs: JobsService, cpu: Cpu) -> float:
    """One job of CHUNKS chunks through the leader's ticks and the result path
    at the same time (`_Pipeline`); chunks/s. The assigning thread reads each
    tick's new assignments back by fencing token (the nodes service's part,
    here in the count)."""
    submit_command_job(jobs, CHUNKS, "ceiling")
    scheduler, runs = Scheduler(db, batch_size=TICK_BATCH), ChunkRuns(db)
    last = 0

    def assign() -> list[RunEnd]:
        nonlocal last
        if not scheduler.tick():
            return []
        ends = _live_runs(db, last)
        if ends:
            last = ends[-1].fencing_token
        return ends

    with cpu.window():
        elapsed = _Pipeline(assign, lambda _, batch: runs.finish_many(batch), CHUNKS).run()
    return CHUNKS / elapsed


# --- a bare SKIP LOCKED loop ---------------------------------------------------------------


def _bare(url: str, cpu: Cpu) -> float:
    """CHUNKS rows assigned (500 a commit) and completed (FINISH_BATCH a commit),
    one after another on one connection; the loop's CPU in `cpu`."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        _bare_table(conn)
        done = 0
        with cpu.window():
            started = time.perf_counter()
            while done < CHUNKS:
                taken = [r[0] for r in conn.execute(_BARE_TAKE, (TICK_BATCH,)).fetchall()]
                for at in range(0, len(taken), FINISH_BATCH):
                    conn.execute(_BARE_DONE, (taken[at : at + FINISH_BATCH],))
                done += len(taken)
            elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE bare_queue")
    return done / elapsed


def _bare_table(conn: psycopg.Connection[Any]) -> None:
    conn.execute("DROP TABLE IF EXISTS bare_queue")
    conn.execute(
        "CREATE TABLE bare_queue (id bigint PRIMARY KEY, status text NOT NULL,"
        " node int, token bigint, assigned_at timestamptz, done_at timestamptz)"
    )
    conn.execute("CREATE INDEX bare_queue_ready ON bare_queue (id) WHERE status = 'queued'")
    conn.execute(
        "INSERT INTO bare_queue (id, status) SELECT i, 'queued' FROM generate_series(1, %s) i",
        (CHUNKS,),
    )
    conn.execute("CREATE SEQUENCE IF NOT EXISTS bare_tokens")
    conn.execute("ANALYZE bare_queue")


_BARE_TAKE = (
    "UPDATE bare_queue SET status = 'assigned', token = nextval('bare_tokens'),"
    " node = 1, assigned_at = now() WHERE id IN (SELECT id FROM bare_queue"
    " WHERE status = 'queued' ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)"
    " RETURNING id"
)
_BARE_DONE = (
    "UPDATE bare_queue SET status = 'done', done_at = now()"
    " WHERE id = ANY(%s) AND status = 'assigned'"
)


def _bare_concurrent(url: str, cpu: Cpu) -> float:
    """The bare loop shaped as `_Pipeline`: one connection takes, FINISHERS
    connections complete; rows/s."""
    dsn = libpq_url(url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        _bare_table(conn)
        finishers = [psycopg.connect(dsn, autocommit=True) for _ in range(FINISHERS)]

        def assign() -> list[int]:
            return [r[0] for r in conn.execute(_BARE_TAKE, (TICK_BATCH,)).fetchall()]

        def finish(worker: int, batch: list[int]) -> None:
            finishers[worker].execute(_BARE_DONE, (batch,))

        try:
            with cpu.window():
                elapsed = _Pipeline(assign, finish, CHUNKS).run()
        finally:
            for finisher in finishers:
                finisher.close()
        conn.execute("DROP TABLE bare_queue")
    return CHUNKS / elapsed


# --- pgqueuer ----------------------------------------------------------------------------


Connect = Callable[[str, list[Any]], Awaitable[Any]]


def pgqueuer_at_best(
    url: str, jobs: int = CHUNKS, driver: str = "asyncpg", cpu: Cpu | None = None
) -> float:
    """pgqueuer as its authors benchmark it, on the database `url` where
    install_pgqueuer ran: `jobs` jobs enqueued, then drained by CONSUMERS
    consumers in batches of PGQ_BATCH; jobs/s of the drain (its CPU in `cpu`)."""
    connect = _asyncpg if driver == "asyncpg" else _psycopg
    return asyncio.run(_pgqueuer(url, connect, jobs, cpu or Cpu()))


def install_pgqueuer(url: str) -> None:
    """pgqueuer's tables, tuned as their `pgq autovac` does."""
    asyncio.run(_install_pgqueuer(url))


async def _pgqueuer(url: str, connect: Connect, jobs: int, cpu: Cpu) -> float:
    opened: list[Any] = []
    try:
        return await _drain(libpq_url(url), connect, opened, jobs, cpu)
    finally:
        for connection in opened:
            await connection.close()


async def _drain(dsn: str, connect: Connect, opened: list[Any], jobs: int, cpu: Cpu) -> float:
    from pgqueuer.adapters.persistence.queries import Queries
    from pgqueuer.core.qm import QueueManager
    from pgqueuer.domain.types import QueueExecutionMode

    setup = Queries(await connect(dsn, opened))
    await setup.clear_queue()
    await setup.enqueue(["render"] * jobs, [None] * jobs, [0] * jobs)
    done = 0
    managers = [QueueManager(Queries(await connect(dsn, opened))) for _ in range(CONSUMERS)]
    for manager in managers:

        @manager.entrypoint("render")
        async def render(job: Any) -> None:
            nonlocal done
            done += 1

    with cpu.window():
        started = time.perf_counter()
        await asyncio.wait_for(
            asyncio.gather(
                *(m.run(batch_size=PGQ_BATCH, mode=QueueExecutionMode.drain) for m in managers)
            ),
            timeout=600,
        )
        elapsed = time.perf_counter() - started
    if done != jobs:
        raise RuntimeError(f"pgqueuer drained {done} of {jobs} jobs")
    return done / elapsed


async def _asyncpg(dsn: str, opened: list[Any]) -> Any:
    import asyncpg  # type: ignore[import-untyped]
    from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver

    opened.append(await asyncpg.connect(dsn=dsn))
    return AsyncpgDriver(opened[-1])


async def _psycopg(dsn: str, opened: list[Any]) -> Any:
    from pgqueuer.adapters.drivers.psycopg import PsycopgDriver

    opened.append(await psycopg.AsyncConnection.connect(dsn, autocommit=True))
    return PsycopgDriver(opened[-1])


async def _install_pgqueuer(url: str) -> None:
    from pgqueuer.adapters.persistence.queries import Queries

    opened: list[Any] = []
    queries = Queries(await _asyncpg(libpq_url(url), opened))
    await queries.install()
    await queries.optimize_autovacuum()
    await opened[0].close()


# --- the rows ----------------------------------------------------------------------------


def _profile(db: Database, jobs: JobsService) -> None:
    """One more round of ours: the Python functions that cost most (cProfile),
    then each statement's count and total time from send to result (the
    driver's and the server's time, as SQLAlchemy's cursor events see it)."""
    statements: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    began: list[float] = []

    def before(*_: Any) -> None:
        began.append(time.perf_counter())

    def after(_conn: Any, _cursor: Any, statement: str, *rest: Any) -> None:
        entry = statements[" ".join(statement.split())[:110]]
        entry[0] += 1
        entry[1] += time.perf_counter() - began.pop()

    event.listen(db.engine, "before_cursor_execute", before)
    event.listen(db.engine, "after_cursor_execute", after)
    profiler = cProfile.Profile()
    profiler.enable()
    _ours(db, jobs)
    profiler.disable()
    event.remove(db.engine, "before_cursor_execute", before)
    event.remove(db.engine, "after_cursor_execute", after)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
    print(out.getvalue())
    print("statements by total time (count, s, statement):")
    for text_, (count, seconds) in sorted(statements.items(), key=lambda s: -s[1][1])[:25]:
        print(f"{count:7d} {seconds:8.3f}  {text_}")
    print(flush=True)


def _cpu_row(what: str, ours: list[Cpu], ours_count: int, peer: list[Cpu], peer_name: str) -> Row:
    """CPU ms per 1,000 (this process + PostgreSQL), medians of the rounds."""
    return Row(
        what,
        statistics.median(sum(c.per_thousand(ours_count)) for c in ours),
        statistics.median(sum(c.per_thousand(CHUNKS)) for c in peer),
        peer_name,
        "ms CPU",
    )


def run() -> list[Row]:
    ours: list[tuple[float, float, float, float]] = []
    rates: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[Cpu]] = defaultdict(list)
    # The database's pool holds the leader's, the finishers' and the reads' connections.
    with bench_database("bench_ceiling", pool_size=FINISHERS + 2) as db:
        url = db.url.render_as_string(hide_password=False)
        jobs = JobsService(db)
        jobs.templates.seed_templates()
        idle_nodes(db, NODES, "sim-")
        install_pgqueuer(url)

        def ours_one_after_another(meter: Cpu) -> float:
            ours.append(_ours(db, jobs, meter))
            return ours[-1][0]

        # Every round runs the loops in this order, each on a vacuumed database.
        loops: dict[str, Callable[[Cpu], float]] = {
            "concurrent": lambda meter: _ours_concurrent(db, jobs, meter),
            "ours": ours_one_after_another,
            "bare concurrent": lambda meter: _bare_concurrent(url, meter),
            "bare": lambda meter: _bare(url, meter),
            "best": lambda meter: pgqueuer_at_best(url, cpu=meter),
            "psycopg": lambda meter: pgqueuer_at_best(url, driver="psycopg", cpu=meter),
        }
        for round_ in range(RUNS):
            for name, loop in loops.items():
                cpu[name].append(Cpu())
                _settle(url)
                rates[name].append(loop(cpu[name][-1]))
            print(
                f"round {round_ + 1} (chunks/s, CPU ms per 1,000 this process + PostgreSQL):"
                + ",".join(
                    f" {name} {rates[name][-1]:,.0f}"
                    f" ({'+'.join(f'{v:.0f}' for v in cpu[name][-1].per_thousand(CHUNKS))})"
                    for name in ("concurrent", "ours", "bare concurrent", "bare", "best")
                )
                + f", pgqueuer on psycopg {rates['psycopg'][-1]:,.0f};"
                f" load average {os.getloadavg()}",
                flush=True,
            )
        if PROFILE:
            _profile(db, jobs)

    def rate(name: str) -> float:
        return statistics.median(rates[name])

    what = f"{CHUNKS:,} chunks, {NODES:,} nodes"
    shape = f"1 assigning + {FINISHERS} finishing threads"
    pgqueuer = f"pgqueuer drain, asyncpg, {CONSUMERS} consumers x batch {PGQ_BATCH}, autovac"
    return [
        Row(
            f"scheduler ceiling: ticks and FinishChunkRuns' service layer at once,"
            f" as in production ({shape}), no gRPC ({what})",
            rate("concurrent"),
            rate("best"),
            pgqueuer,
            "chunks/s",
        ),
        Row(
            "scheduler ceiling at once vs a bare batched FOR UPDATE SKIP LOCKED loop, same shape",
            rate("concurrent"),
            rate("bare concurrent"),
            f"assign {TICK_BATCH} / complete {FINISH_BATCH} a commit, {shape}, {CHUNKS:,} rows",
            "chunks/s",
        ),
        Row(
            f"scheduler ceiling: ticks and finishes one after another ({what})",
            rate("ours"),
            rate("best"),
            pgqueuer,
            "chunks/s",
        ),
        Row(
            "scheduler ceiling one after another vs the bare loop one after another",
            rate("ours"),
            rate("bare"),
            f"assign {TICK_BATCH} / complete {FINISH_BATCH} a commit, one connection",
            "chunks/s",
        ),
        Row(
            "pgqueuer drain on psycopg (reference)",
            rate("psycopg"),
            rate("best"),
            "the same on asyncpg",
            "jobs/s",
        ),
        Row(
            "scheduler ceiling: ticks, per 1,000 chunks (one after another)",
            statistics.median(r[1] for r in ours),
            None,
            "-",
            "ms",
        ),
        Row(
            "scheduler ceiling: finishes, per 1,000 chunks (one after another)",
            statistics.median(r[2] for r in ours),
            None,
            "-",
            "ms",
        ),
        _cpu_row(
            "scheduler ceiling at once: CPU per 1,000 chunks, this process + PostgreSQL",
            cpu["concurrent"],
            CHUNKS,
            cpu["best"],
            "pgqueuer drain on asyncpg, per 1,000 jobs",
        ),
        _cpu_row(
            "scheduler ceiling at once: CPU per 1,000 chunks vs the bare loop",
            cpu["concurrent"],
            CHUNKS,
            cpu["bare concurrent"],
            "the bare loop at once, per 1,000 rows",
        ),
        Row(
            "scheduler ceiling at once: of which PostgreSQL, per 1,000 chunks",
            statistics.median(c.per_thousand(CHUNKS)[1] for c in cpu["concurrent"]),
            statistics.median(c.per_thousand(CHUNKS)[1] for c in cpu["best"]),
            "pgqueuer drain on asyncpg: its PostgreSQL, per 1,000 jobs",
            "ms CPU",
        ),
        Row(
            "the nodes service's build of the same Assignments (not in the ceiling), per 1,000",
            statistics.median(r[3] for r in ours),
            None,
            "-",
            "ms",
        ),
    ]


BENCHMARKS["scheduler ceiling"] = run
