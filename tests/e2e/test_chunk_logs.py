"""Render logs end to end: a real agent runs real commands; their output is
followed live while it runs and read back after (GetChunkLog,
FollowChunkLog), with the template's error line marked, the log cap's gap
and the configuration's reader rule."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from muster_proto.admin.v1 import admin_pb2, admin_pb2_grpc
from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2_grpc
from tests.e2e.test_render import eventually, farm, job_status, shell_job
from tests.support import DispatcherProcess, authorized_channel, login


def configure(channel: grpc.Channel, **values: Any) -> None:
    admin_pb2_grpc.AdminServiceStub(channel).UpdateDispatcherConfiguration(
        admin_pb2.UpdateDispatcherConfigurationRequest(
            configuration=admin_pb2.DispatcherConfiguration(**values),
            update_mask=FieldMask(paths=list(values)),
        )
    )


def log_of(
    jobs: jobs_pb2_grpc.JobsServiceStub, job_id: int, **fields: Any
) -> jobs_pb2.GetChunkLogResponse:
    response: jobs_pb2.GetChunkLogResponse = jobs.GetChunkLog(
        jobs_pb2.GetChunkLogRequest(job_id=job_id, chunk_id=1, **fields)
    )
    return response


def texts(response: Any) -> list[str]:
    return [line.text for line in response.lines]


def test_a_failing_run_is_followed_live_then_read_back_with_its_error_marked(
    dispatcher: DispatcherProcess,
    channel: grpc.Channel,
    jobs: jobs_pb2_grpc.JobsServiceStub,
    nodes: nodes_pb2_grpc.NodesServiceStub,
    start_agent: Callable[..., Any],
    shared_tmp: Path,
) -> None:
    configure(channel, max_chunk_requeues=0)  # the failed chunk stays failed
    farm(nodes, start_agent, shared_tmp, "logs-a")
    # The command line template reads "[ PARSER ERROR ]" lines as errors.
    script = (
        "for i in 1 2 3 4 5 6; do echo live $i; sleep 0.5; done;"
        " echo [ PARSER ERROR ] frame $f broke; echo after the error"
    )
    job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=shell_job("logs", 1, 1, script))).job_id

    # Followed from its first line, whenever the agent starts it (no realtime log switched on).
    messages: queue.Queue[tuple[float, jobs_pb2.FollowChunkLogResponse]] = queue.Queue()
    call = jobs.FollowChunkLog(
        jobs_pb2.FollowChunkLogRequest(job_id=job_id, chunk_id=1, from_line=1)
    )

    def read() -> None:
        for message in call:
            messages.put((time.monotonic(), message))

    threading.Thread(target=read, daemon=True).start()
    followed: list[jobs_pb2.ChunkLogLine] = []
    arrivals: dict[str, float] = {}
    last = None
    while last is None:
        arrived, message = messages.get(timeout=60)
        followed += message.lines
        arrivals.update({line.text: arrived for line in message.lines})
        if message.ended:
            last = message
    # Lines came while the process ran, not all at its end.
    assert arrivals["live 6"] - arrivals["live 1"] > 1.5
    assert last.run.outcome == common_pb2.CHUNK_RUN_OUTCOME_FAILED
    assert "PARSER ERROR" in last.run.message
    followed_texts = [line.text for line in followed]
    for text in ("live 1", "live 6", "[ PARSER ERROR ] frame 1 broke", "after the error"):
        assert text in followed_texts
    eventually(
        lambda: job_status(jobs, job_id) == jobs_pb2.JOB_STATUS_COMPLETED_WITH_ERRORS,
        what="job ended with errors",
    )
    whole = log_of(jobs, job_id)
    assert texts(whole) == followed_texts
    assert [line.number for line in whole.lines] == list(range(1, whole.last_line + 1))
    (error,) = whole.error_lines
    assert whole.lines[error - 1].text == "[ PARSER ERROR ] frame 1 broke"
    assert whole.lines[error - 1].mark == common_pb2.LOG_MARK_ERROR
    assert whole.lines[error - 1].stream == common_pb2.LOG_STREAM_STDOUT
    assert whole.run.outcome == common_pb2.CHUNK_RUN_OUTCOME_FAILED
    assert {line.mark for line in whole.lines if line.number != error} == {0}

    page = log_of(jobs, job_id, from_line=2, limit=3)
    assert texts(page) == texts(whole)[1:4] and page.next_line == 5
    tail = log_of(jobs, job_id, run_number=1, tail=3)
    assert texts(tail) == texts(whole)[-3:] and tail.next_line == 0


def test_a_long_log_keeps_its_head_and_tail_and_only_its_owner_reads_it(
    dispatcher: DispatcherProcess,
    channel: grpc.Channel,
    jobs: jobs_pb2_grpc.JobsServiceStub,
    nodes: nodes_pb2_grpc.NodesServiceStub,
    start_agent: Callable[..., Any],
    shared_tmp: Path,
) -> None:
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    for user in ("alice", "bob"):
        admin.CreateUser(
            admin_pb2.CreateUserRequest(
                user=admin_pb2.User(
                    name=user,
                    password=f"{user}-password",
                    role=admin_pb2.USER_ROLE_USER,
                    enabled=True,
                )
            )
        )
    configure(channel, render_log_cap_bytes=8192, render_logs_readable_by="owner")
    farm(nodes, start_agent, shared_tmp, "logs-b")
    # 2,000 numbered lines of 97 bytes: 194,000 bytes under an 8 KiB cap.
    line = "$(printf %096d $i)"
    script = f"for i in $(seq 1 2000); do echo l{line}; done"
    job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=shell_job("long", 1, 1, script))).job_id
    eventually(
        lambda: job_status(jobs, job_id) == jobs_pb2.JOB_STATUS_COMPLETED, what="job completed"
    )

    def read_as(user: str, **fields: Any) -> jobs_pb2.GetChunkLogResponse:
        token = login(dispatcher.address, user, f"{user}-password")
        with authorized_channel(dispatcher.address, bearer=token) as as_user:
            return log_of(jobs_pb2_grpc.JobsServiceStub(as_user), job_id, **fields)

    head = read_as("alice", limit=10_000)  # the job's owner
    numbers = [line.number for line in head.lines]
    (gap,) = head.gaps
    kept = sum(len(line.text.encode()) for line in head.lines)
    assert kept <= 8192 and kept + gap.bytes >= 194_000
    # The head: the agent's own first lines ("starting ...") and the first numbered ones.
    assert numbers[: gap.first_line - 1] == list(range(1, gap.first_line))
    assert "l" + "1".zfill(96) in texts(head)[: gap.first_line - 1]
    assert numbers[gap.first_line - 1] == gap.last_line + 1  # then the tail
    tail = log_of(jobs, job_id, tail=3)  # an administrator
    assert tail.lines[-1].number == head.last_line
    assert "2000".zfill(96) in "".join(texts(tail))
    with pytest.raises(grpc.RpcError) as refused:
        read_as("bob")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
