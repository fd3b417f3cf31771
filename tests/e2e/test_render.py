"""A real render: the dispatcher, three agent processes, real commands."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from muster_agent.state import StateStore
from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2_grpc
from muster_services.jobs.templates import COMMAND_LINE_TEMPLATE_ID
from tests.e2e.conftest import online_nodes
from tests.support import DispatcherProcess


def eventually(check: Callable[[], Any], timeout: float = 60, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what or check}")


def frame_job(out: Path, frames: int, packet: int, seconds: float = 0.0, **fields: Any) -> Any:
    """Each chunk appends one line to one file per frame of its range."""
    script = f"sleep {seconds}; echo rendered >> {out}/frame_$f.txt; echo frame $f"
    return shell_job("frames", frames, packet, script, **fields)


def shell_job(name: str, frames: int, packet: int, each_frame: str, **fields: Any) -> Any:
    """A job whose chunks run the shell commands `each_frame` for each frame
    $f of their range (no single quotes in them)."""
    script = f"for f in $(seq {{start}} {{end}}); do {each_frame}; done"
    return jobs_pb2.Job(
        name=name,
        owner="alice",
        parent_id=-1,
        template_id=COMMAND_LINE_TEMPLATE_ID,
        start_frame=1,
        end_frame=frames,
        by_frame=1,
        packet_size=packet,
        attributes=[
            jobs_pb2.JobAttribute(name="executable", string_value="/bin/sh"),
            jobs_pb2.JobAttribute(name="arguments", string_value=f"-c '{script}'"),
        ],
        **{"priority": 50, **fields},
    )


def job_status(jobs: jobs_pb2_grpc.JobsServiceStub, job_id: int) -> int:
    return int(jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id)).job.status)


def completed_history(
    jobs: jobs_pb2_grpc.JobsServiceStub, job_id: int, what: str
) -> list[jobs_pb2.ChunkRun]:
    """The chunk history of a job, once the job completed."""
    eventually(
        lambda: job_status(jobs, job_id) == jobs_pb2.JOB_STATUS_COMPLETED, timeout=90, what=what
    )
    return list(jobs.ListChunkHistory(jobs_pb2.ListChunkHistoryRequest(job_id=job_id)).chunk_runs)


def farm(
    nodes: nodes_pb2_grpc.NodesServiceStub,
    start_agent: Callable[..., Any],
    shared_tmp: Path,
    *agents: str,
) -> Path:
    """Agents of these names online; returns the empty folder their chunks write to."""
    out = shared_tmp / "frames"
    out.mkdir()
    for name in agents:
        start_agent(name)
    eventually(lambda: len(online_nodes(nodes)) == len(agents), what=f"{agents} online")
    return out


def test_three_agents_render_a_thirty_frame_job_once_per_frame(
    jobs: jobs_pb2_grpc.JobsServiceStub,
    nodes: nodes_pb2_grpc.NodesServiceStub,
    start_agent: Callable[..., Any],
    shared_tmp: Path,
) -> None:
    out = farm(nodes, start_agent, shared_tmp, "e2e-a", "e2e-b", "e2e-c")

    job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=frame_job(out, 30, 3))).job_id
    eventually(
        lambda: job_status(jobs, job_id) == jobs_pb2.JOB_STATUS_COMPLETED, what="job completed"
    )

    files = sorted(out.glob("frame_*.txt"))
    assert len(files) == 30
    assert all(f.read_text() == "rendered\n" for f in files)
    runs = jobs.ListChunkHistory(jobs_pb2.ListChunkHistoryRequest(job_id=job_id)).chunk_runs
    assert sorted(r.chunk_id for r in runs) == list(range(1, 11))
    assert {r.outcome for r in runs} == {common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED}
    assert len({r.node_id for r in runs}) >= 2  # the work was shared


def test_an_agent_killed_mid_chunk_loses_nothing_and_its_late_report_is_refused(
    dispatcher: DispatcherProcess,
    jobs: jobs_pb2_grpc.JobsServiceStub,
    nodes: nodes_pb2_grpc.NodesServiceStub,
    start_agent: Callable[..., Any],
    shared_tmp: Path,
) -> None:
    out = shared_tmp / "frames"
    out.mkdir()
    victim = start_agent("e2e-victim")
    eventually(lambda: len(online_nodes(nodes)) == 1, what="victim online")
    job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=frame_job(out, 2, 2, seconds=3))).job_id
    eventually(lambda: job_status(jobs, job_id) == jobs_pb2.JOB_STATUS_RUNNING, what="running")
    time.sleep(1)
    victim.kill()  # SIGKILL mid-chunk: its process is orphaned, it reports nothing
    # What survives it: the chunk it ran, with its token, in the state file.
    state = StateStore(shared_tmp / "agents" / "e2e-victim", dispatcher.address)
    orphan = state.running_chunk(0)
    assert orphan is not None and (orphan.job_id, orphan.chunk_id) == (job_id, 1)
    rescuer = start_agent("e2e-rescuer")
    history = completed_history(jobs, job_id, "job completed on the rescuer")
    assert [(r.node_name, r.outcome) for r in history] == [
        ("e2e-victim", common_pb2.CHUNK_RUN_OUTCOME_LOST),
        ("e2e-rescuer", common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED),
    ]
    assert history[0].fencing_token == orphan.fencing_token
    rescuer.kill(signal.SIGTERM)
    eventually(
        lambda: [n.name for n in online_nodes(nodes)] == [], what="the rescuer gone", timeout=30
    )

    # The killed agent comes back with its old state: it reports the old chunk
    # with the old token, the dispatcher refuses it and logs it, and the agent
    # drops it and takes new work.
    late = start_agent("e2e-victim")
    refusal = f"stale report for job {job_id} chunk 1 (token {orphan.fencing_token})"
    eventually(lambda: any(refusal in line for line in dispatcher.output), what="refusal logged")
    eventually(lambda: "was stale" in late.log.read_text(), what="the agent heard it was stale")
    eventually(
        lambda: not StateStore(late.log.parent, dispatcher.address).pending_results(0),
        what="the agent forgot the stale result",
    )
    after = jobs.ListChunkHistory(jobs_pb2.ListChunkHistoryRequest(job_id=job_id)).chunk_runs
    assert list(after) == history  # nothing changed, one completed entry
    chunk = jobs.GetChunk(jobs_pb2.GetChunkRequest(job_id=job_id, chunk_id=1)).chunk
    assert chunk.status == jobs_pb2.CHUNK_STATUS_COMPLETED
    assert job_status(jobs, job_id) == jobs_pb2.JOB_STATUS_COMPLETED

    second = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=frame_job(out, 1, 1))).job_id
    runs = completed_history(jobs, second, "new work done by the restarted agent")
    assert [(r.node_name, r.outcome) for r in runs] == [
        ("e2e-victim", common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED)
    ]


def test_a_chunk_that_times_out_is_requeued_then_failed_at_the_maximum(
    jobs: jobs_pb2_grpc.JobsServiceStub,
    nodes: nodes_pb2_grpc.NodesServiceStub,
    start_agent: Callable[..., Any],
    shared_tmp: Path,
) -> None:
    out = shared_tmp / "frames"
    out.mkdir()
    start_agent("e2e-slow")
    eventually(lambda: len(online_nodes(nodes)) == 1, what="agent online")
    job = frame_job(out, 1, 1, seconds=30, chunk_timeout_seconds=1, max_chunk_requeues=1)
    job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=job)).job_id
    eventually(
        lambda: job_status(jobs, job_id) == jobs_pb2.JOB_STATUS_COMPLETED_WITH_ERRORS,
        timeout=60,
        what="the job ends with errors",
    )
    runs = jobs.ListChunkHistory(jobs_pb2.ListChunkHistoryRequest(job_id=job_id)).chunk_runs
    assert [r.outcome for r in runs] == [common_pb2.CHUNK_RUN_OUTCOME_TIMED_OUT] * 2
    chunk = jobs.GetChunk(jobs_pb2.GetChunkRequest(job_id=job_id, chunk_id=1)).chunk
    assert (chunk.status, chunk.requeue_count) == (jobs_pb2.CHUNK_STATUS_FAILED, 1)


def test_a_chunk_dependant_renders_each_frame_once_the_same_frame_of_its_dependency_exists(
    jobs: jobs_pb2_grpc.JobsServiceStub,
    nodes: nodes_pb2_grpc.NodesServiceStub,
    start_agent: Callable[..., Any],
    shared_tmp: Path,
) -> None:
    out = farm(nodes, start_agent, shared_tmp, "e2e-a", "e2e-b")
    # The render writes frame f after a second; the comp (two frames per
    # chunk, higher priority) fails at once when a frame it needs is missing.
    render = shell_job("render", 8, 1, f"sleep 1; echo rendered > {out}/render_$f.txt", priority=10)
    render_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=render)).job_id
    comp = shell_job(
        "comp",
        8,
        2,
        f"test -f {out}/render_$f.txt || exit 3; echo comp > {out}/comp_$f.txt",
        priority=90,
        depend_ids=[render_id],
        depend_chunks=True,
    )
    comp_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=comp)).job_id

    comp_runs = completed_history(jobs, comp_id, "comp completed")
    render_runs = completed_history(jobs, render_id, "render completed")
    assert len(list(out.glob("comp_*.txt"))) == 8
    # No comp chunk ever ran before its frames were rendered: one successful
    # run each, none failed for a missing frame.
    assert sorted(r.chunk_id for r in comp_runs) == [1, 2, 3, 4]
    assert {r.outcome for r in comp_runs} == {common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED}
    rendered = {int(r.start_frame): r.end_time.ToNanoseconds() for r in render_runs}
    for run in comp_runs:
        frames = range(int(run.start_frame), int(run.end_frame) + 1)
        assert run.start_time.ToNanoseconds() >= max(rendered[f] for f in frames)
    # ...and the comp did not wait for the whole render.
    first_comp = min(r.start_time.ToNanoseconds() for r in comp_runs)
    assert first_comp < max(rendered.values())
