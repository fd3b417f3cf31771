"""Render logs: reading the end of a 100 MB run log, and how soon a followed
line reaches its reader.

A chunk run whose log is 1,000,000 lines of 100 bytes (100 MB of text, the
cap raised to 256 MiB so all of it is kept; every 200th line marked as an
error) is stored the way log_store.append leaves it. Two jobs-service
processes (`dispatcher serve jobs`) share the database.

- Tail: GetChunkLog(tail=1000) over gRPC, median of RUNS calls. Peers,
  measured in the same run: `tail -n 1000` of the same text as a file, and
  the plain SQL select of the run's last 1,000 lines.
- Follow: a FollowChunkLog stream on one replica while lines are stored
  through ChunkRunsService.AppendChunkRunLog on the other (what the nodes
  service does with each batch an agent sends), one line per send, each
  carrying its send time; median of send -> receive. Peer: a reader that
  polls GetChunkLog every POLL_SECONDS on its own clock instead of following.
"""

from __future__ import annotations

import json
import queue
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from sqlalchemy import text

from bench.common import (
    BENCHMARKS,
    ROOT,
    Row,
    bench_database,
    bench_token,
    dispatcher_process,
    median_of,
)
from muster_gateway.tls import open_channel, with_token
from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import chunk_runs_pb2, chunk_runs_pb2_grpc, jobs_pb2, jobs_pb2_grpc
from muster_services.core.auth import security_for
from muster_services.core.database import Database
from muster_services.jobs.domain import Attribute, JobSpec
from muster_services.jobs.service import JobsService
from muster_services.jobs.templates import COMMAND_LINE_TEMPLATE_ID

LINES = 1_000_000
LINE_BYTES = 100
TAIL = 1000
RUNS = 31
SENDS = 40
POLL_SECONDS = 0.1

_LINE = "frame " + "x" * (LINE_BYTES - 6 - 8)  # + an 8-digit number: 100 bytes


def _run(db: Database) -> tuple[int, int, int]:
    """A job whose chunk 1 is running, its run's 100 MB log stored: (job,
    run id, fencing token)."""
    jobs = JobsService(db)
    jobs.templates.seed_templates()
    spec = JobSpec(
        name="long log",
        owner="bench",
        template_id=COMMAND_LINE_TEMPLATE_ID,
        start_frame=1,
        end_frame=1,
        attributes=(Attribute("executable", "string", "/bin/true"),),
    )
    job_id = int(jobs.queue.submit_job(spec).id)
    with db.transaction() as session:
        session.execute(
            text(
                "UPDATE dispatcher_config SET runtime_config = runtime_config"
                " || CAST(:values AS jsonb) WHERE id = 1"
            ),
            {"values": json.dumps({"render_log_cap_bytes": 256 * 1024 * 1024})},
        )
        token = session.execute(
            text(
                "INSERT INTO chunk_assignments (job_id, chunk_number, node_id, state)"
                " VALUES (:j, 1, 1, 'running') RETURNING fencing_token"
            ),
            {"j": job_id},
        ).scalar_one()
        run_id = session.execute(
            text(
                "INSERT INTO chunk_runs (job_id, chunk_number, run_number, node_id, node_name,"
                " fencing_token, start_frame, end_frame, log_lines, log_bytes, log_head_lines)"
                " VALUES (:j, 1, 1, 1, 'bench', :t, 1, 1, :n, :b, :n) RETURNING id"
            ),
            {"j": job_id, "t": token, "n": LINES, "b": LINES * LINE_BYTES},
        ).scalar_one()
        session.execute(
            text(
                "INSERT INTO chunk_run_logs (run_id, seq, stream, line, mark)"
                " SELECT :r, g, 'stdout', :line || lpad(g::text, 8, '0'),"
                " CASE WHEN g % 200 = 0 THEN 'error' END FROM generate_series(1, :n) g"
            ),
            {"r": run_id, "n": LINES, "line": _LINE},
        )
    with db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(
            text("VACUUM ANALYZE chunk_run_logs")
        )
    return job_id, int(run_id), int(token)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _tail_rows(
    db: Database, stub: jobs_pb2_grpc.JobsServiceStub, job_id: int, run_id: int
) -> list[Row]:
    request = jobs_pb2.GetChunkLogRequest(job_id=job_id, chunk_id=1, tail=TAIL)
    reply = stub.GetChunkLog(request)
    assert len(reply.lines) == TAIL and reply.lines[-1].number == LINES
    assert len(reply.error_lines) == 1000

    def ours() -> float:
        started = time.perf_counter()
        stub.GetChunkLog(request)
        return _ms(started)

    log_file = ROOT / ".data" / "bench" / "run.log"
    with log_file.open("w") as out:
        for start in range(1, LINES + 1, 100_000):
            out.write("".join(f"{_LINE}{n:08d}\n" for n in range(start, start + 100_000)))

    def tail_file() -> float:
        started = time.perf_counter()
        subprocess.run(["tail", "-n", str(TAIL), str(log_file)], check=True, capture_output=True)
        return _ms(started)

    def plain_select() -> float:
        with db.engine.connect() as conn:
            started = time.perf_counter()
            conn.execute(
                text(
                    "SELECT seq, logged_at, stream, line, mark FROM chunk_run_logs"
                    " WHERE run_id = :r ORDER BY seq DESC LIMIT :n"
                ),
                {"r": run_id, "n": TAIL},
            ).all()
            return _ms(started)

    figure = median_of(RUNS, ours)
    rows = [
        Row(f"GetChunkLog last {TAIL:,} lines of a 100 MB log", figure,
            median_of(RUNS, tail_file), f"tail -n {TAIL} of the same text as a file", "ms"),
        Row(f"GetChunkLog last {TAIL:,} lines of a 100 MB log", figure,
            median_of(RUNS, plain_select), "plain SQL select of the last lines", "ms"),
    ]  # fmt: skip
    log_file.unlink()
    return rows


@contextmanager
def _reading(call: Any) -> Iterator[queue.Queue[tuple[float, str]]]:
    """Every line text a stream brings, with its arrival time."""
    arrived: queue.Queue[tuple[float, str]] = queue.Queue()

    def read() -> None:
        try:
            for message in call:
                for line in message.lines:
                    arrived.put((time.perf_counter(), line.text))
        except grpc.RpcError:
            pass  # cancelled at the end

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        yield arrived
    finally:
        call.cancel()
        thread.join(10)


def _send(
    runs: chunk_runs_pb2_grpc.ChunkRunsServiceStub, job_id: int, token: int, line: str
) -> None:
    runs.AppendChunkRunLog(
        chunk_runs_pb2.AppendChunkRunLogRequest(
            job_id=job_id,
            chunk_id=1,
            fencing_token=token,
            lines=[common_pb2.LogLine(text=line, stream=common_pb2.LOG_STREAM_STDOUT)],
        )
    )


def _follow_delays(
    follower: jobs_pb2_grpc.JobsServiceStub,
    runs: chunk_runs_pb2_grpc.ChunkRunsServiceStub,
    job_id: int,
    token: int,
) -> list[float]:
    call = follower.FollowChunkLog(
        jobs_pb2.FollowChunkLogRequest(job_id=job_id, chunk_id=1, tail=1)
    )
    delays = []
    with _reading(call) as arrived:
        arrived.get(timeout=30)  # the backlog: the follow is on
        for n in range(SENDS):
            sent = time.perf_counter()
            _send(runs, job_id, token, f"follow {n}")
            while True:
                when, line = arrived.get(timeout=30)
                if line == f"follow {n}":
                    break
            delays.append((when - sent) * 1000)
            time.sleep(0.05)
    return delays


def _poll_delays(
    reader: jobs_pb2_grpc.JobsServiceStub,
    runs: chunk_runs_pb2_grpc.ChunkRunsServiceStub,
    job_id: int,
    token: int,
) -> list[float]:
    """A reader asking for the last lines every POLL_SECONDS on its own clock;
    the sends fall anywhere between two of its polls."""
    seen: dict[str, float] = {}
    stop = threading.Event()
    request = jobs_pb2.GetChunkLogRequest(job_id=job_id, chunk_id=1, tail=5)

    def poll() -> None:
        while not stop.is_set():
            for line in reader.GetChunkLog(request).lines:
                seen.setdefault(line.text, time.perf_counter())
            stop.wait(POLL_SECONDS)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    sent: dict[str, float] = {}
    for n in range(SENDS // 2):
        time.sleep(POLL_SECONDS * (1 + (n * 7) % 10 / 10))
        sent[f"poll {n}"] = time.perf_counter()
        _send(runs, job_id, token, f"poll {n}")
    time.sleep(3 * POLL_SECONDS)
    stop.set()
    poller.join(10)
    return [(seen[text] - at) * 1000 for text, at in sent.items()]


def run() -> list[Row]:
    with bench_database("bench_logs") as db:
        job_id, run_id, token = _run(db)
        user_token = bench_token(db)
        service_token = security_for(db).service_token("nodes", 3600)
        with (
            dispatcher_process(db, ["jobs"]) as (storing, _),
            dispatcher_process(db, ["jobs"]) as (following, _),
            with_token(open_channel(storing), service_token) as nodes_channel,
            with_token(open_channel(following), user_token) as reader_channel,
        ):
            reader = jobs_pb2_grpc.JobsServiceStub(reader_channel)
            runs = chunk_runs_pb2_grpc.ChunkRunsServiceStub(nodes_channel)
            rows = _tail_rows(db, reader, job_id, run_id)
            followed = statistics.median(_follow_delays(reader, runs, job_id, token))
            polled = statistics.median(_poll_delays(reader, runs, job_id, token))
            rows.append(
                Row(
                    "followed line, store on one replica -> reader on another",
                    followed,
                    polled,
                    f"reader polling GetChunkLog every {POLL_SECONDS * 1000:.0f} ms",
                    "ms",
                )
            )
        return rows


BENCHMARKS["render logs"] = run
