"""A chunk never has two live processes the dispatcher does not know of, and
the history records every process start (issue #15, points 2 and 3).

Real agents, real commands: each frame's command appends a "start <pid>"
line, sleeps, then an "end <pid>" line to the frame's file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from muster_agent.state import StateStore
from muster_agent.system import group_alive
from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2_grpc
from muster_services.nodes.relay import UNCONFIRMED_REASON
from tests.audit import overlapping_runs
from tests.e2e.conftest import free_port, online_nodes
from tests.e2e.test_render import eventually, job_status, shell_job
from tests.support import AgentProcess, DispatcherProcess, authorized_channel

LOST = common_pb2.CHUNK_RUN_OUTCOME_LOST
SUCCEEDED = common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED


def start_end_job(out: Path, frames: int, seconds: float) -> Any:
    """One chunk of `frames` frames; each frame: start line, sleep, end line."""
    return shell_job(
        "start-end",
        frames,
        frames,
        f'echo "start $$" >> {out}/frame_$f.txt; sleep {seconds};'
        f' echo "end $$" >> {out}/frame_$f.txt',
    )


def history(jobs: jobs_pb2_grpc.JobsServiceStub, job_id: int) -> list[jobs_pb2.ChunkRun]:
    return list(jobs.ListChunkHistory(jobs_pb2.ListChunkHistoryRequest(job_id=job_id)).chunk_runs)


def process_starts(out: Path) -> set[str]:
    """The render processes that ever started (their pids, from the start lines)."""
    return {
        line.split()[1]
        for file in out.glob("frame_*.txt")
        for line in file.read_text().splitlines()
        if line.startswith("start ")
    }


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def test_a_new_agent_process_under_the_same_name_never_gets_the_dead_ones_assignment(
    dispatcher: DispatcherProcess,
    database_url: str,
    jobs: jobs_pb2_grpc.JobsServiceStub,
    nodes: nodes_pb2_grpc.NodesServiceStub,
    start_agent: Callable[..., AgentProcess],
    shared_tmp: Path,
) -> None:
    out = shared_tmp / "frames"
    out.mkdir()
    first = start_agent("rel-node")
    eventually(lambda: len(online_nodes(nodes)) == 1, what="the agent online")
    job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=start_end_job(out, 2, 2))).job_id
    eventually(lambda: process_starts(out), what="the chunk's process started")
    first.kill()  # SIGKILL mid-chunk
    orphan = StateStore(shared_tmp / "agents" / "rel-node", dispatcher.address).running_chunk(0)
    assert orphan is not None and orphan.pid
    try:
        # The node's agent comes back as a NEW process with a NEW work folder:
        # it cannot know the orphan, and must not be handed its assignment.
        killed_at = time.monotonic()
        second = AgentProcess(dispatcher.address, "rel-node", shared_tmp / "agents" / "new")
        try:
            runs = eventually(
                lambda: (h := history(jobs, job_id)) and h[0].outcome == LOST and h,
                timeout=30,
                what="the old run ended as lost",
            )
            # Ended by the registration, not by the lost-node timeout (10 s).
            assert time.monotonic() - killed_at < 8
            assert (runs[0].node_name, runs[0].fencing_token) == ("rel-node", orphan.fencing_token)
            assert runs[0].message == UNCONFIRMED_REASON
            # The history holds exactly the process starts the dispatcher knows:
            # the orphan's run, then (once the chunk is queued again) a new one.
            eventually(lambda: len(process_starts(out)) == 2, what="the chunk started again")
            runs = history(jobs, job_id)
            assert len(runs) == len(process_starts(out)) == 2
            assert runs[1].fencing_token != orphan.fencing_token
        finally:
            kill_group(int(orphan.pid))  # the orphan may still be rendering: gone now
        eventually(
            lambda: job_status(jobs, job_id) == jobs_pb2.JOB_STATUS_COMPLETED,
            what="the job completed",
        )
        runs = history(jobs, job_id)
        assert [(r.run_number, r.outcome) for r in runs] == [(1, LOST), (2, SUCCEEDED)]
        assert overlapping_runs(database_url) == []
        # The new agent never heard of the old assignment.
        log = second.log.read_text()
        assert f"token {orphan.fencing_token}" not in log
        assert "REFUSED" not in log
        # Every frame has the new process's complete start and end lines.
        # (The orphan's shell wrote the first start line; the recorded pid may
        # be a launcher's, not the shell's.)
        orphan_pid = (out / "frame_1.txt").read_text().splitlines()[0].split()[1]
        new_pid = (process_starts(out) - {orphan_pid}).pop()
        for frame in (1, 2):
            lines = (out / f"frame_{frame}.txt").read_text().splitlines()
            assert f"start {new_pid}" in lines and f"end {new_pid}" in lines
    finally:
        second.kill()


@pytest.fixture
def quick_lost(database_url: str, shared_tmp: Path) -> Iterator[DispatcherProcess]:
    """A dispatcher declaring a silent node lost after 3 s."""
    proc = DispatcherProcess(
        ["serve", "jobs", "nodes", "admin"],
        {
            "MUSTER_DATABASE_URL": database_url,
            "MUSTER_NODE_LOST_TIMEOUT_SECONDS": "3",
            "MUSTER_EVENT_POLL_SECONDS": "1",
            "MUSTER_HOOKS_DIR": str(shared_tmp / "no-hooks"),
        },
    )
    yield proc
    proc.kill()


def test_a_frozen_agent_s_render_stops_before_its_node_is_declared_lost(
    quick_lost: DispatcherProcess, database_url: str, shared_tmp: Path
) -> None:
    out = shared_tmp / "frames"
    out.mkdir()
    agent = AgentProcess(quick_lost.address, "rel-paused", shared_tmp / "agents" / "paused")
    try:
        with authorized_channel(quick_lost.address) as channel:
            nodes = nodes_pb2_grpc.NodesServiceStub(channel)
            jobs = jobs_pb2_grpc.JobsServiceStub(channel)
            eventually(lambda: len(online_nodes(nodes)) == 1, what="the agent online")
            job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=start_end_job(out, 1, 8))).job_id
            [first] = eventually(lambda: process_starts(out), what="the chunk's process started")
            group = os.getpgid(int(first))  # the launcher's
            # The agent freezes; its render process does not, but the launcher
            # stops it when the agent's lease runs out: before the node is
            # declared lost and its chunk released (muster_agent/lease.py).
            agent.proc.send_signal(signal.SIGSTOP)
            try:
                eventually(
                    lambda: (h := history(jobs, job_id)) and h[0].outcome == LOST,
                    timeout=20,
                    what="the node declared lost",
                )
                assert not group_alive(group), "the render outlived its node's lease"
            finally:
                agent.proc.send_signal(signal.SIGCONT)
            # Back, it says it still runs the released chunk: the dispatcher kills
            # that process before the node takes the (same) chunk again.
            eventually(
                lambda: job_status(jobs, job_id) == jobs_pb2.JOB_STATUS_COMPLETED,
                timeout=60,
                what="the job completed",
            )
            runs = history(jobs, job_id)
            assert [(r.run_number, r.outcome) for r in runs] == [(1, LOST), (2, SUCCEEDED)]
            assert len(process_starts(out)) == 2  # every process start is a run
        assert overlapping_runs(database_url) == []
        log = agent.log.read_text()
        assert "REFUSED" not in log  # never handed a chunk while busy
        lines = (out / "frame_1.txt").read_text().splitlines()
        # The stale process was killed: it never wrote its end line.
        assert lines.count("start " + first) == 1
        assert "end " + first not in lines
    finally:
        agent.kill()


def test_an_assignment_that_waited_in_a_frozen_agents_socket_is_never_started(
    quick_lost: DispatcherProcess, database_url: str, shared_tmp: Path
) -> None:
    # Found by the soak (docs/reliability.md): the agent is frozen when its
    # assignment is sent; the node is declared lost, the chunk renders on
    # another node; the agent thaws and reads the old assignment from its socket.
    out = shared_tmp / "frames"
    out.mkdir()
    frozen = AgentProcess(quick_lost.address, "rel-frozen", shared_tmp / "agents" / "frozen")
    other: AgentProcess | None = None
    try:
        with authorized_channel(quick_lost.address) as channel:
            nodes = nodes_pb2_grpc.NodesServiceStub(channel)
            jobs = jobs_pb2_grpc.JobsServiceStub(channel)
            eventually(lambda: len(online_nodes(nodes)) == 1, what="the agent online")
            frozen.proc.send_signal(signal.SIGSTOP)
            try:
                job_id = jobs.SubmitJob(
                    jobs_pb2.SubmitJobRequest(job=start_end_job(out, 1, 1))
                ).job_id
                eventually(
                    lambda: (h := history(jobs, job_id)) and h[0].outcome == LOST,
                    timeout=30,
                    what="the frozen node declared lost",
                )
                other = AgentProcess(
                    quick_lost.address, "rel-other", shared_tmp / "agents" / "other"
                )
                eventually(
                    lambda: job_status(jobs, job_id) == jobs_pb2.JOB_STATUS_COMPLETED,
                    timeout=60,
                    what="the chunk rendered on the other node",
                )
            finally:
                frozen.proc.send_signal(signal.SIGCONT)
            # It registers again (at once when it saw its own stall; else when it
            # finds its stream closed) and starts nothing of what waited.
            eventually(
                lambda: frozen.log.read_text().count("registered as node") >= 2,
                timeout=30,
                what="the thawed agent registered again",
            )
            time.sleep(2)  # what the thawed agent would start, it would have by now
            runs = history(jobs, job_id)
            assert [(r.run_number, r.outcome) for r in runs] == [(1, LOST), (2, SUCCEEDED)]
        assert len(process_starts(out)) == 1, (out / "frame_1.txt").read_text()
        assert "running job" not in frozen.log.read_text()
        assert overlapping_runs(database_url) == []
    finally:
        frozen.kill()
        if other is not None:
            other.kill()


@pytest.mark.parametrize("ends_while_down", [False, True], ids=["mid-chunk", "ended-meanwhile"])
def test_a_nodes_replica_restart_keeps_the_running_chunks_of_the_agents_it_held(
    database_url: str, shared_tmp: Path, ends_while_down: bool
) -> None:
    """The agent's process lives while the nodes replica holding its stream is
    SIGKILLed and started again: the agent re-registers with its running chunk,
    whose assignment is kept (one run, one process, no LOST); or, when the
    chunk ended while no replica was up, with its result, which is recorded
    (the assignment it no longer runs is not ended as lost first)."""
    out = shared_tmp / "frames"
    out.mkdir()
    port = free_port()
    common = {
        "MUSTER_DATABASE_URL": database_url,
        "MUSTER_EVENT_POLL_SECONDS": "1",
        "MUSTER_HOOKS_DIR": str(shared_tmp / "no-hooks"),
    }
    jobs_proc = DispatcherProcess(["serve", "jobs"], common)
    nodes_env = {**common, "MUSTER_JOBS_ADDRESS": jobs_proc.address}
    nodes_env["MUSTER_LISTEN"] = f"127.0.0.1:{port}"
    replica = DispatcherProcess(["serve", "nodes", "admin"], nodes_env)
    agent = AgentProcess(replica.address, "rel-replica", shared_tmp / "agents" / "replica")
    try:
        with authorized_channel(jobs_proc.address) as channel:
            jobs = jobs_pb2_grpc.JobsServiceStub(channel)
            with authorized_channel(replica.address) as nodes_channel:
                nodes = nodes_pb2_grpc.NodesServiceStub(nodes_channel)
                eventually(lambda: len(online_nodes(nodes)) == 1, what="the agent online")
            job_id = jobs.SubmitJob(
                jobs_pb2.SubmitJobRequest(job=start_end_job(out, 2, 2.5))
            ).job_id
            eventually(lambda: process_starts(out), what="the chunk's process started")
            replica.stop(signal.SIGKILL)
            if ends_while_down:
                eventually(
                    lambda: (
                        (out / "frame_2.txt").exists()
                        and "end" in (out / "frame_2.txt").read_text()
                    ),
                    what="the chunk ended",
                )
            replica = DispatcherProcess(["serve", "nodes", "admin"], nodes_env)
            eventually(
                lambda: job_status(jobs, job_id) == jobs_pb2.JOB_STATUS_COMPLETED,
                what="the job completed",
            )
            runs = history(jobs, job_id)
        assert [(r.run_number, r.outcome) for r in runs] == [(1, SUCCEEDED)]
        assert len(process_starts(out)) == 1
        assert overlapping_runs(database_url) == []
    finally:
        agent.kill()
        replica.kill()
        jobs_proc.kill()
