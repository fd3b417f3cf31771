"""Render logs read back (muster_services/jobs/logs.py): GetChunkLog and FollowChunkLog
over real gRPC servers on a real PostgreSQL, the lines stored the way the
nodes service stores them (ChunkRunsService.AppendChunkRunLog)."""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any, TypeAlias

import grpc
import pytest
from sqlalchemy import create_engine, func, select, text, update

from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import chunk_runs_pb2, chunk_runs_pb2_grpc, jobs_pb2, jobs_pb2_grpc
from muster_services.admin.domain import DispatcherConfig, check_configuration
from muster_services.core import migrate
from muster_services.core.database import Database, sqlalchemy_url
from muster_services.core.errors import InvalidArgument
from muster_services.core.settings import Settings
from muster_services.jobs.component import build
from muster_services.jobs.service import JobsService
from muster_services.jobs.tables import chunk_run_logs, chunk_runs, jobs
from tests.jobs.conftest import SPEC, assign, configure
from tests.support import InProcessServer, admin_channel

Mark: TypeAlias = common_pb2.LogMark.ValueType
ERROR = common_pb2.LOG_MARK_ERROR
WARNING = common_pb2.LOG_MARK_WARNING


@pytest.fixture
def server(db: Database) -> Iterator[InProcessServer]:
    with InProcessServer([build(db, Settings())], worker_threads=4) as running:
        yield running


def jobs_stub(
    server: InProcessServer, user: str = "admin", role: str = "administrator"
) -> jobs_pb2_grpc.JobsServiceStub:
    return jobs_pb2_grpc.JobsServiceStub(server.channel(user, role))


def runs_stub(server: InProcessServer) -> chunk_runs_pb2_grpc.ChunkRunsServiceStub:
    """As the nodes service calls the jobs service."""
    return chunk_runs_pb2_grpc.ChunkRunsServiceStub(admin_channel(server.address, service=True))


def send(
    runs: chunk_runs_pb2_grpc.ChunkRunsServiceStub,
    job_id: int,
    chunk: int,
    token: int,
    texts: list[str],
    marks: dict[int, Mark] | None = None,
) -> None:
    """Lines as the nodes service relays them (marks: index in texts -> mark)."""
    marks = marks or {}
    reply = runs.AppendChunkRunLog(
        chunk_runs_pb2.AppendChunkRunLogRequest(
            job_id=job_id,
            chunk_id=chunk,
            fencing_token=token,
            lines=[
                common_pb2.LogLine(
                    text=t,
                    stream=common_pb2.LOG_STREAM_STDOUT,
                    mark=marks.get(i, common_pb2.LOG_MARK_UNSPECIFIED),
                )
                for i, t in enumerate(texts)
            ],
        )
    )
    assert reply.accepted


def finish(
    runs: chunk_runs_pb2_grpc.ChunkRunsServiceStub, job_id: int, chunk: int, token: int
) -> None:
    reply = runs.FinishChunkRun(
        chunk_runs_pb2.FinishChunkRunRequest(
            job_id=job_id,
            chunk_id=chunk,
            fencing_token=token,
            node_id=1,
            exit_code=3,
            outcome=common_pb2.CHUNK_RUN_OUTCOME_FAILED,
            message="exit code 3",
        )
    )
    assert reply.applied


def start(db: Database, job_id: int, chunk: int, node_id: int, run_number: int = 1) -> int:
    """assign(), with the job's counters moved as the scheduler moves them (a
    run's end moves them back)."""
    token = assign(db, job_id, chunk, node_id, run_number)
    with db.transaction() as session:
        session.execute(
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(
                chunks_queued=jobs.c.chunks_queued - 1, chunks_running=jobs.c.chunks_running + 1
            )
        )
    return token


def get(stub: jobs_pb2_grpc.JobsServiceStub, **fields: Any) -> jobs_pb2.GetChunkLogResponse:
    response: jobs_pb2.GetChunkLogResponse = stub.GetChunkLog(jobs_pb2.GetChunkLogRequest(**fields))
    return response


def numbers(response: Any) -> list[int]:
    return [line.number for line in response.lines]


def test_a_run_is_read_whole_by_page_by_tail_with_its_marks(
    service: JobsService, db: Database, server: InProcessServer
) -> None:
    job = service.queue.submit_job(SPEC)
    token = start(db, job.id, 1, node_id=1)
    runs, stub = runs_stub(server), jobs_stub(server)
    for batch in range(3):  # 2,500 lines, as three relayed batches
        texts = [f"frame line {batch * 1000 + i + 1}" for i in range(1000 if batch < 2 else 500)]
        marks = {7: ERROR, 8: WARNING} if batch == 1 else {}
        send(runs, job.id, 1, token, texts, marks)

    first = get(stub, job_id=job.id, chunk_id=1)
    assert numbers(first) == list(range(1, 1001))
    assert first.lines[0].text == "frame line 1"
    assert first.lines[0].stream == common_pb2.LOG_STREAM_STDOUT
    assert first.lines[0].time.seconds > 0
    assert (first.last_line, first.next_line) == (2500, 1001)
    assert list(first.error_lines) == [1008] and list(first.warning_lines) == [1009]
    assert first.run.run_number == 1 and first.run.fencing_token == token
    assert first.run.outcome == common_pb2.CHUNK_RUN_OUTCOME_RUNNING
    assert not first.gaps

    # Paging on with next_line reads the whole log once, in order.
    whole, next_line = numbers(first), first.next_line
    while next_line:
        page = get(stub, job_id=job.id, chunk_id=1, from_line=next_line, limit=700)
        whole += numbers(page)
        next_line = page.next_line
    assert whole == list(range(1, 2501))

    marked = get(stub, job_id=job.id, chunk_id=1, from_line=1008, limit=2)
    assert [line.mark for line in marked.lines] == [ERROR, WARNING]
    assert marked.lines[0].text == "frame line 1008"

    tail = get(stub, job_id=job.id, chunk_id=1, tail=10, from_line=5)  # tail wins
    assert numbers(tail) == list(range(2491, 2501)) and tail.next_line == 0
    assert get(stub, job_id=job.id, chunk_id=1, tail=50_000).lines[0].number == 1

    beyond = get(stub, job_id=job.id, chunk_id=1, from_line=9999)
    assert (list(beyond.lines), beyond.next_line, beyond.last_line) == ([], 0, 2500)


def test_a_page_stops_at_3_mib_of_text_so_it_fits_a_grpc_message(
    service: JobsService, db: Database, server: InProcessServer
) -> None:
    job = service.queue.submit_job(SPEC)
    token = start(db, job.id, 1, node_id=1)
    runs, stub = runs_stub(server), jobs_stub(server)
    for batch in range(2):  # 60 lines of 60,000 bytes: 3.6 MB
        send(
            runs, job.id, 1, token, [f"{batch * 30 + n + 1:05d}" + "x" * 59_995 for n in range(30)]
        )
    # A line is in the page while the text before it is under 3 MiB: 53 lines.
    first = get(stub, job_id=job.id, chunk_id=1)
    assert numbers(first) == list(range(1, 54)) and first.next_line == 54
    assert numbers(get(stub, job_id=job.id, chunk_id=1, from_line=54)) == list(range(54, 61))
    assert numbers(get(stub, job_id=job.id, chunk_id=1, tail=100)) == list(range(8, 61))


def test_every_run_of_the_history_keeps_its_own_log(
    service: JobsService, db: Database, server: InProcessServer
) -> None:
    job = service.queue.submit_job(SPEC)
    runs, stub = runs_stub(server), jobs_stub(server)
    first = start(db, job.id, 1, node_id=1)
    send(runs, job.id, 1, first, ["first run", "Error: disk full"], {1: ERROR})
    finish(runs, job.id, 1, first)
    with db.transaction() as session:  # the requeued chunk runs again elsewhere
        session.execute(text("DELETE FROM chunk_assignments"))
    second = start(db, job.id, 1, node_id=2, run_number=2)
    send(runs, job.id, 1, second, ["second run"])

    newest = get(stub, job_id=job.id, chunk_id=1)
    assert [line.text for line in newest.lines] == ["second run"]
    assert newest.run.run_number == 2 and not newest.error_lines
    failed = get(stub, job_id=job.id, chunk_id=1, run_number=1)
    assert [line.text for line in failed.lines] == ["first run", "Error: disk full"]
    assert list(failed.error_lines) == [2]
    assert failed.run.outcome == common_pb2.CHUNK_RUN_OUTCOME_FAILED
    assert failed.run.message == "exit code 3"


def test_bad_requests_answer_a_precise_status(
    service: JobsService, db: Database, server: InProcessServer
) -> None:
    job = service.queue.submit_job(SPEC)
    folder = service.queue.create_folder(-1, "alice", "shots", "")
    start(db, job.id, 1, node_id=1)
    stub = jobs_stub(server)
    cases = [
        ({"job_id": job.id, "chunk_id": 1, "from_line": -1}, "INVALID_ARGUMENT", "from_line"),
        ({"job_id": job.id, "chunk_id": 1, "limit": -1}, "INVALID_ARGUMENT", "limit"),
        ({"job_id": job.id, "chunk_id": 1, "tail": -5}, "INVALID_ARGUMENT", "tail"),
        ({"job_id": job.id, "chunk_id": 1, "run_number": -1}, "INVALID_ARGUMENT", "run_number"),
        ({"job_id": job.id, "chunk_id": 2**31}, "INVALID_ARGUMENT", "chunk_id"),
        ({"job_id": folder, "chunk_id": 1}, "INVALID_ARGUMENT", "folder"),
        ({"job_id": 999_999, "chunk_id": 1}, "NOT_FOUND", "job 999999"),
        ({"job_id": job.id, "chunk_id": 77}, "NOT_FOUND", "chunk 77"),
        ({"job_id": job.id, "chunk_id": 2}, "NOT_FOUND", "has not run yet"),
        ({"job_id": job.id, "chunk_id": 1, "run_number": 2}, "NOT_FOUND", "no run 2"),
    ]
    for fields, code, words in cases:
        # A chunk that has not run yet is followed: the stream waits for it.
        follows = "limit" not in fields and words != "has not run yet"
        for refusal in refusals(stub, fields, follows):
            assert refusal.code().name == code, fields
            assert words in (refusal.details() or ""), fields


def refusals(
    stub: jobs_pb2_grpc.JobsServiceStub, fields: dict[str, Any], follow: bool = True
) -> list[grpc.RpcError]:
    """The errors GetChunkLog (and FollowChunkLog) answer `fields` with."""
    found = []
    with pytest.raises(grpc.RpcError) as refused:
        stub.GetChunkLog(jobs_pb2.GetChunkLogRequest(**fields))
    found.append(refused.value)
    if follow:
        with pytest.raises(grpc.RpcError) as refused:
            next(iter(stub.FollowChunkLog(jobs_pb2.FollowChunkLogRequest(**fields))))
        found.append(refused.value)
    return found


def test_over_the_cap_a_run_keeps_its_head_and_tail_and_reports_the_gap(
    service: JobsService, db: Database, server: InProcessServer
) -> None:
    configure(db, render_log_cap_bytes=4096)
    job = service.queue.submit_job(SPEC)
    token = start(db, job.id, 1, node_id=1)
    runs, stub = runs_stub(server), jobs_stub(server)
    line = "x" * 96
    for batch in range(4):  # 400 lines of 100 bytes, 40,000 bytes
        send(runs, job.id, 1, token, [f"{batch * 100 + i + 1:04d}{line}" for i in range(100)])

    with db.transaction() as session:
        stored = session.execute(
            select(func.count(), func.sum(func.octet_length(chunk_run_logs.c.line)))
        ).one()
    assert stored[1] <= 4096
    head = get(stub, job_id=job.id, chunk_id=1)
    kept = numbers(head)
    assert kept[:21] == list(range(1, 22))  # the head: up to half the cap
    assert kept[-1] == 400 and len(kept) == stored[0]
    (gap,) = head.gaps
    assert (gap.first_line, gap.last_line) == (22, kept[21] - 1)
    assert gap.bytes == 40_000 - stored[1]
    tail = get(stub, job_id=job.id, chunk_id=1, tail=5)
    assert numbers(tail) == [396, 397, 398, 399, 400] and not tail.gaps
    after_gap = get(stub, job_id=job.id, chunk_id=1, tail=len(kept) - 21)
    assert after_gap.gaps == head.gaps  # the gap is just before these lines
    inside = get(stub, job_id=job.id, chunk_id=1, from_line=30, limit=3)
    assert numbers(inside) == kept[21:24] and inside.gaps == head.gaps


def test_the_retention_empties_a_log_into_one_gap(
    service: JobsService, db: Database, server: InProcessServer
) -> None:
    job = service.queue.submit_job(SPEC)
    token = start(db, job.id, 1, node_id=1)
    send(runs_stub(server), job.id, 1, token, ["a", "bb", "ccc"], {2: ERROR})
    with db.transaction() as session:
        session.execute(
            update(chunk_runs).values(started_at=func.now() - text("interval '40 days'"))
        )
    assert service.snapshots.apply_retention("keep", 5, 30) == (0, 3)
    pruned = get(jobs_stub(server), job_id=job.id, chunk_id=1)
    assert list(pruned.lines) == [] and pruned.last_line == 3 and not pruned.error_lines
    assert [(g.first_line, g.last_line, g.bytes) for g in pruned.gaps] == [(1, 3, 6)]


@pytest.mark.parametrize(
    ("readers", "allowed"),
    [
        ("everyone", {"alice", "bob", "admin"}),
        ("owner", {"alice", "admin"}),
        ("admins", {"admin"}),
    ],
)
def test_the_configuration_says_who_reads_render_logs(
    service: JobsService,
    db: Database,
    server: InProcessServer,
    readers: str,
    allowed: set[str],
) -> None:
    job = service.queue.submit_job(SPEC)  # alice's
    send(runs_stub(server), job.id, 1, start(db, job.id, 1, node_id=1), ["hello"])
    configure(db, render_logs_readable_by=readers)
    for user, role in (("alice", "user"), ("bob", "user"), ("admin", "administrator")):
        stub = jobs_stub(server, user, role)
        request = {"job_id": job.id, "chunk_id": 1}
        if user in allowed:
            assert get(stub, **request).lines[0].text == "hello"
            continue
        for refusal in refusals(stub, request):
            assert refusal.code() == grpc.StatusCode.PERMISSION_DENIED, (readers, user)


class Follower:
    """A FollowChunkLog stream read in a thread: each message with its arrival time."""

    def __init__(self, stub: jobs_pb2_grpc.JobsServiceStub, **request: Any) -> None:
        self.call = stub.FollowChunkLog(jobs_pb2.FollowChunkLogRequest(**request))
        self.messages: queue.Queue[tuple[float, jobs_pb2.FollowChunkLogResponse]] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for message in self.call:
            self.messages.put((time.monotonic(), message))

    def next(self, timeout: float = 10) -> tuple[float, jobs_pb2.FollowChunkLogResponse]:
        return self.messages.get(timeout=timeout)

    def texts(self, count: int) -> list[str]:
        """The texts of the next messages until `count` lines arrived."""
        texts: list[str] = []
        while len(texts) < count:
            texts += [line.text for line in self.next()[1].lines]
        return texts


def test_follow_waits_for_the_first_run_then_streams_lines_across_replicas_until_the_end(
    service: JobsService, db: Database, server: InProcessServer
) -> None:
    """The follower's replica is not the one storing the lines."""
    job = service.queue.submit_job(SPEC)
    with InProcessServer([build(db, Settings())], worker_threads=4) as other:
        follower = Follower(jobs_stub(other), job_id=job.id, chunk_id=1)
        _, waiting = follower.next()  # no run yet: an empty message, then nothing
        assert not waiting.HasField("run") and not waiting.lines and not waiting.ended
        time.sleep(0.5)
        assert follower.messages.empty()
        token = start(db, job.id, 1, node_id=1)
        runs = runs_stub(server)
        send(runs, job.id, 1, token, ["before"])
        _, first = follower.next()
        assert first.run.fencing_token == token and not first.ended
        texts = [line.text for line in first.lines]
        if not texts:  # the run was seen before its first line
            texts = follower.texts(1)
        assert texts == ["before"]

        delays = []
        for n in range(5):
            sent = time.monotonic()
            send(runs, job.id, 1, token, [f"live {n}", "Error: oops"], {1: ERROR})
            arrived, message = follower.next()
            delays.append(arrived - sent)
            assert [(line.text, line.mark) for line in message.lines] == [
                (f"live {n}", 0),
                ("Error: oops", ERROR),
            ]
        # Woken by the notification, not the 1 s poll.
        assert sorted(delays)[2] < 0.5, delays

        finish(runs, job.id, 1, token)
        _, last = follower.next()
        assert last.ended and last.run.outcome == common_pb2.CHUNK_RUN_OUTCOME_FAILED
        follower.thread.join(10)
        assert follower.call.code() == grpc.StatusCode.OK


def test_follow_starts_with_the_backlog_of_a_finished_run_and_ends_at_once(
    service: JobsService, db: Database, server: InProcessServer
) -> None:
    job = service.queue.submit_job(SPEC)
    token = start(db, job.id, 1, node_id=1)
    runs = runs_stub(server)
    send(runs, job.id, 1, token, [f"line {n}" for n in range(1, 301)])
    finish(runs, job.id, 1, token)
    stub = jobs_stub(server)
    tail = list(stub.FollowChunkLog(jobs_pb2.FollowChunkLogRequest(job_id=job.id, chunk_id=1)))
    assert [line.number for line in tail[0].lines] == list(range(201, 301))  # the last 100
    assert tail[-1].ended and tail[-1].run.exit_code == 3
    whole = list(
        stub.FollowChunkLog(
            jobs_pb2.FollowChunkLogRequest(job_id=job.id, chunk_id=1, run_number=1, from_line=1)
        )
    )
    assert [n.number for m in whole for n in m.lines] == list(range(1, 301))
    assert whole[-1].ended and sum(m.ended for m in whole) == 1


def test_migration_0010_counts_the_logs_stored_before_it(empty_database_url: str) -> None:
    """Logs written before the cap existed: all kept, their counters filled in."""
    migrate.upgrade(empty_database_url, "0009")
    engine = create_engine(sqlalchemy_url(empty_database_url))
    with engine.begin() as conn:
        run_id = conn.execute(
            text(
                "INSERT INTO chunk_runs (job_id, chunk_number, run_number, node_id,"
                " fencing_token, start_frame, end_frame) VALUES (1, 1, 1, 1, 1, 1, 1)"
                " RETURNING id"
            )
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO chunk_run_logs (run_id, seq, line)"
                " VALUES (:r, 1, 'ab'), (:r, 2, 'cde')"
            ),
            {"r": run_id},
        )
    migrate.upgrade(empty_database_url)
    with engine.begin() as conn:
        counters = conn.execute(
            text(
                "SELECT log_lines, log_bytes, log_head_lines, log_dropped_lines, log_dropped_bytes"
                " FROM chunk_runs"
            )
        ).one()
    engine.dispose()
    assert tuple(counters) == (2, 5, 2, 0, 0)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"render_logs_readable_by": "friends"}, "render_logs_readable_by"),
        ({"render_logs_readable_by": ""}, "render_logs_readable_by"),
        ({"render_log_cap_bytes": 1023}, "render_log_cap_bytes"),
    ],
)
def test_the_configuration_refuses_log_settings_out_of_range(
    values: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidArgument, match=f"configuration.{field}"):
        check_configuration(dataclasses.replace(DispatcherConfig(), **values))
    assert DispatcherConfig().render_log_cap_bytes == 64 * 1024 * 1024
    assert DispatcherConfig().render_logs_readable_by == "everyone"
