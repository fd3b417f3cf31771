"""Every node command against a real agent process."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from tests.e2e.conftest import online_nodes
from tests.e2e.test_render import eventually, frame_job


@pytest.fixture
def node(nodes: nodes_pb2_grpc.NodesServiceStub, start_agent: Callable[..., Any]) -> int:
    start_agent("e2e-cmd")
    found = eventually(lambda: online_nodes(nodes), what="the agent online")
    return int(found[0].id)


def _get(nodes: nodes_pb2_grpc.NodesServiceStub, node_id: int) -> nodes_pb2.Node:
    return nodes.GetNode(nodes_pb2.GetNodeRequest(node_id=node_id)).node


def test_python_code_runs_on_the_node_and_returns_its_output(
    nodes: nodes_pb2_grpc.NodesServiceStub, node: int
) -> None:
    reply = nodes.RunNodePythonCode(
        nodes_pb2.RunNodePythonCodeRequest(node_id=node, code="print(6 * 7)", timeout_seconds=20)
    )
    assert (reply.output.strip(), reply.exit_code, reply.timed_out) == ("42", 0, False)
    slow = nodes.RunNodePythonCode(
        nodes_pb2.RunNodePythonCodeRequest(
            node_id=node, code="import time; time.sleep(30)", timeout_seconds=1
        )
    )
    assert slow.timed_out


def test_system_events_are_refused_unless_configured(
    nodes: nodes_pb2_grpc.NodesServiceStub, node: int
) -> None:
    with pytest.raises(grpc.RpcError) as error:
        nodes.SendNodeSystemEvent(
            nodes_pb2.SendNodeSystemEventRequest(node_id=node, event=common_pb2.SYSTEM_EVENT_REBOOT)
        )
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not configured" in (error.value.details() or "")


def test_pause_resume_notes_priority_realtime_log_refresh_and_message(
    nodes: nodes_pb2_grpc.NodesServiceStub, node: int
) -> None:
    nodes.PauseNode(nodes_pb2.PauseNodeRequest(node_id=node))
    assert _get(nodes, node).status == nodes_pb2.NODE_STATUS_PAUSED
    nodes.ResumeNode(nodes_pb2.ResumeNodeRequest(node_id=node))
    assert _get(nodes, node).status == nodes_pb2.NODE_STATUS_IDLE
    nodes.SetNodeNotes(nodes_pb2.SetNodeNotesRequest(node_id=node, notes="rack 4"))
    nodes.SetNodeProcessPriority(
        nodes_pb2.SetNodeProcessPriorityRequest(
            node_id=node, process_priority=common_pb2.PROCESS_PRIORITY_BELOW_NORMAL
        )
    )
    nodes.SetNodeRealtimeLog(nodes_pb2.SetNodeRealtimeLogRequest(node_id=node, enabled=True))
    nodes.RefreshNode(nodes_pb2.RefreshNodeRequest(node_id=node))
    assert (
        nodes.SendNodeMessage(
            nodes_pb2.SendNodeMessageRequest(node_id=node, message="hello")
        ).recipients_count
        == 1
    )
    got = _get(nodes, node)
    assert (got.notes, got.process_priority, got.realtime_log) == (
        "rack 4",
        common_pb2.PROCESS_PRIORITY_BELOW_NORMAL,
        True,
    )


@pytest.mark.parametrize(
    ("follow_up", "chunk_status", "paused"),
    [
        (common_pb2.KILL_FOLLOW_UP_CONTINUE, jobs_pb2.CHUNK_STATUS_FAILED, False),
        (common_pb2.KILL_FOLLOW_UP_PAUSE, jobs_pb2.CHUNK_STATUS_QUEUED, True),
        (common_pb2.KILL_FOLLOW_UP_RESTART, None, False),
    ],
)
def test_killing_a_running_chunk_does_what_its_follow_up_says(
    nodes: nodes_pb2_grpc.NodesServiceStub,
    jobs: jobs_pb2_grpc.JobsServiceStub,
    node: int,
    shared_tmp: Path,
    follow_up: Any,
    chunk_status: int | None,
    paused: bool,
) -> None:
    out = shared_tmp / "frames"
    out.mkdir()
    job_id = jobs.SubmitJob(
        jobs_pb2.SubmitJobRequest(job=frame_job(out, 1, 1, seconds=30, max_chunk_requeues=5))
    ).job_id
    eventually(
        lambda: _get(nodes, node).status == nodes_pb2.NODE_STATUS_RENDERING, what="rendering"
    )
    with pytest.raises(grpc.RpcError) as refused:
        nodes.DeleteNode(nodes_pb2.DeleteNodeRequest(node_id=node))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    nodes.KillNodeProcess(nodes_pb2.KillNodeProcessRequest(node_id=node, follow_up=follow_up))

    def killed_run() -> bool:
        runs = jobs.ListChunkHistory(jobs_pb2.ListChunkHistoryRequest(job_id=job_id)).chunk_runs
        return bool(runs) and runs[0].outcome == common_pb2.CHUNK_RUN_OUTCOME_KILLED

    eventually(killed_run, what="the run ended as killed")
    chunk = jobs.GetChunk(jobs_pb2.GetChunkRequest(job_id=job_id, chunk_id=1)).chunk
    if chunk_status is not None:
        assert chunk.status == chunk_status
    else:  # redo: back to the queue and straight onto the node again
        assert chunk.status in (
            jobs_pb2.CHUNK_STATUS_QUEUED,
            jobs_pb2.CHUNK_STATUS_ASSIGNED,
            jobs_pb2.CHUNK_STATUS_RUNNING,
        )
    assert _get(nodes, node).paused == paused


def test_a_soft_restart_brings_the_agent_back_as_the_same_node(
    nodes: nodes_pb2_grpc.NodesServiceStub, node: int
) -> None:
    nodes.RestartNodeAgent(nodes_pb2.RestartNodeAgentRequest(node_id=node))
    eventually(
        lambda: _get(nodes, node).status == nodes_pb2.NODE_STATUS_IDLE,
        timeout=60,
        what="back online",
    )
    assert [n.id for n in online_nodes(nodes)] == [node]
    nodes.DeleteNode(nodes_pb2.DeleteNodeRequest(node_id=node))
    with pytest.raises(grpc.RpcError) as gone:
        _get(nodes, node)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


def test_kill_and_redo_every_node_working_on_a_job(
    nodes: nodes_pb2_grpc.NodesServiceStub,
    jobs: jobs_pb2_grpc.JobsServiceStub,
    node: int,
    shared_tmp: Path,
) -> None:
    out = shared_tmp / "frames"
    out.mkdir()
    job_id = jobs.SubmitJob(
        jobs_pb2.SubmitJobRequest(job=frame_job(out, 1, 1, seconds=30, max_chunk_requeues=5))
    ).job_id
    eventually(
        lambda: _get(nodes, node).status == nodes_pb2.NODE_STATUS_RENDERING, what="rendering"
    )
    reply = nodes.KillJobProcesses(
        nodes_pb2.KillJobProcessesRequest(
            job_id=job_id, follow_up=common_pb2.KILL_FOLLOW_UP_RESTART
        )
    )
    assert list(reply.node_ids) == [node]

    def runs() -> list[Any]:
        return list(
            jobs.ListChunkHistory(jobs_pb2.ListChunkHistoryRequest(job_id=job_id)).chunk_runs
        )

    # Killed, then rendering again (a second run).
    eventually(lambda: len(runs()) == 2, what="a second run")
    assert runs()[0].outcome == common_pb2.CHUNK_RUN_OUTCOME_KILLED
    with pytest.raises(grpc.RpcError) as unknown:
        nodes.KillJobProcesses(
            nodes_pb2.KillJobProcessesRequest(
                job_id=999_999, follow_up=common_pb2.KILL_FOLLOW_UP_RESTART
            )
        )
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def _processes_naming(folder: Path) -> list[int]:
    """The processes whose command line names `folder` (a chunk's shell)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if str(folder).encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
    return found


@pytest.mark.parametrize("teardown", ["delete", "reinit"])
def test_the_processes_of_a_deleted_or_reinitialised_job_are_killed_at_once(
    nodes: nodes_pb2_grpc.NodesServiceStub,
    jobs: jobs_pb2_grpc.JobsServiceStub,
    node: int,
    shared_tmp: Path,
    teardown: str,
) -> None:
    """Its running chunks' processes, though no other chunk comes to their
    nodes (before, they rendered to their end for a job that was gone)."""
    out = shared_tmp / "frames"
    out.mkdir()
    job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=frame_job(out, 1, 1, seconds=120))).job_id
    eventually(lambda: _processes_naming(out), what="the chunk's process")
    if teardown == "delete":
        jobs.DeleteJob(jobs_pb2.DeleteJobRequest(job_id=job_id))
    else:  # paused first: its chunk goes to no node again
        jobs.UpdateJob(
            jobs_pb2.UpdateJobRequest(
                job=jobs_pb2.Job(id=job_id, paused=True), update_mask=FieldMask(paths=["paused"])
            )
        )
        jobs.ReinitJob(jobs_pb2.ReinitJobRequest(job_id=job_id))
    eventually(lambda: not _processes_naming(out), timeout=20, what="the process killed")
    assert list(out.iterdir()) == []  # no frame rendered
    runs = jobs.ListChunkHistory(jobs_pb2.ListChunkHistoryRequest(job_id=job_id)).chunk_runs
    assert [r.outcome for r in runs] == [common_pb2.CHUNK_RUN_OUTCOME_KILLED]


def test_setting_a_running_chunks_status_kills_its_process_then_applies(
    nodes: nodes_pb2_grpc.NodesServiceStub,
    jobs: jobs_pb2_grpc.JobsServiceStub,
    node: int,
    shared_tmp: Path,
) -> None:
    """chunkSetStatus on a running chunk: the process is killed at once and
    the status applies on the kill's result (before, the status waited for
    the process to end by itself)."""
    out = shared_tmp / "frames"
    out.mkdir()
    job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=frame_job(out, 1, 1, seconds=120))).job_id
    eventually(lambda: _processes_naming(out), what="the chunk's process")
    jobs.SetChunkStatus(
        jobs_pb2.SetChunkStatusRequest(
            job_id=job_id, chunk_id=1, status=jobs_pb2.CHUNK_STATUS_SKIPPED
        )
    )

    def chunk() -> Any:
        return jobs.GetChunk(jobs_pb2.GetChunkRequest(job_id=job_id, chunk_id=1)).chunk

    eventually(lambda: chunk().status == jobs_pb2.CHUNK_STATUS_SKIPPED, timeout=20, what="skipped")
    assert not _processes_naming(out)
    assert list(out.iterdir()) == []
    runs = jobs.ListChunkHistory(jobs_pb2.ListChunkHistoryRequest(job_id=job_id)).chunk_runs
    assert [r.outcome for r in runs] == [common_pb2.CHUNK_RUN_OUTCOME_KILLED]
