"""What the dashboard's JSON API and its live events send for each object:
the fields the pages show, with statuses as short lower-case names."""

from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from muster_proto.admin.v1 import admin_pb2
from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import jobs_pb2
from muster_proto.nodes.v1 import nodes_pb2

Json = dict[str, Any]


def enum_name(enum: Any, value: int, prefix: str) -> str:
    try:
        return str(enum.Name(value)).removeprefix(prefix).lower()
    except ValueError:
        return str(value)


def _time(stamp: Timestamp) -> float | None:
    """Seconds since the epoch, None when unset."""
    if not stamp.seconds and not stamp.nanos:
        return None
    return stamp.seconds + stamp.nanos / 1e9


def job(j: jobs_pb2.Job) -> Json:
    return {
        "id": j.id,
        "parent_id": j.parent_id,
        "folder": j.kind == jobs_pb2.JOB_KIND_FOLDER,
        "name": j.name,
        "owner": j.owner,
        "priority": j.priority,
        "status": enum_name(jobs_pb2.JobStatus, j.status, "JOB_STATUS_"),
        "paused": j.paused,
        "progress": round(j.progress, 1),
        "chunks_total": j.chunks_total,
        "chunks_completed": j.chunks_completed,
        "chunks_running": j.chunks_running,
        "chunks_failed": j.chunks_failed,
        "nodes_working": j.nodes_working,
        "frames": f"{j.start_frame:g}-{j.end_frame:g}",
        "pools": list(j.included_pools),
        "submit_time": _time(j.submit_time),
    }


def chunk(c: jobs_pb2.Chunk) -> Json:
    return {
        "id": c.id,
        "job_id": c.job_id,
        "frames": f"{c.start_frame:g}-{c.end_frame:g}",
        "status": enum_name(jobs_pb2.ChunkStatus, c.status, "CHUNK_STATUS_"),
        "node_id": c.node_id,
        "node_name": c.node_name,
        "progress": round(c.progress, 1),
        "requeue_count": c.requeue_count,
        "exit_code": c.exit_code,
        "start_time": _time(c.start_time),
        "end_time": _time(c.end_time),
    }


def run(r: jobs_pb2.ChunkRun) -> Json:
    return {
        "run_number": r.run_number,
        "node_name": r.node_name,
        "start_time": _time(r.start_time),
        "end_time": _time(r.end_time),
        "exit_code": r.exit_code,
        "outcome": enum_name(common_pb2.ChunkRunOutcome, r.outcome, "CHUNK_RUN_OUTCOME_"),
        "message": r.message,
    }


def log_line(line: jobs_pb2.ChunkLogLine) -> Json:
    return {
        "number": line.number,
        "text": line.text,
        "mark": enum_name(common_pb2.LogMark, line.mark, "LOG_MARK_"),
    }


def gap(g: jobs_pb2.ChunkLogGap) -> Json:
    return {"first_line": g.first_line, "last_line": g.last_line, "bytes": g.bytes}


def node(n: nodes_pb2.Node) -> Json:
    return {
        "id": n.id,
        "name": n.name,
        "host_name": n.host_name,
        "status": enum_name(nodes_pb2.NodeStatus, n.status, "NODE_STATUS_"),
        "paused": n.paused,
        "job_id": n.job_id,
        "chunk_id": n.chunk_id,
        "chunk_progress": round(n.chunk_progress, 1),
        "pools": list(n.pools),
        "platform": enum_name(common_pb2.Platform, n.platform, "PLATFORM_"),
        "last_heartbeat_time": _time(n.last_heartbeat_time),
    }


def sample(s: admin_pb2.StatisticsSample) -> Json:
    return {
        "time": _time(s.sample_time),
        "nodes_total": s.nodes_total,
        "nodes_idle": s.nodes_idle,
        "nodes_rendering": s.nodes_rendering,
        "nodes_paused": s.nodes_paused,
        "nodes_offline": s.nodes_offline,
        "jobs_queued": s.jobs_queued,
        "jobs_running": s.jobs_running,
        "chunks_queued": s.chunks_queued,
        "chunks_running": s.chunks_running,
    }


def event(e: nodes_pb2.ClientEvent) -> Json | None:
    """A live event the pages use (job, chunk, node changes), else None."""
    kind = e.WhichOneof("event")
    if kind == "job_changed":
        return {"kind": "job", "deleted": e.job_changed.deleted, "job": job(e.job_changed.job)}
    if kind == "chunk_changed":
        return {"kind": "chunk", "chunk": chunk(e.chunk_changed.chunk)}
    if kind == "node_changed":
        return {
            "kind": "node",
            "deleted": e.node_changed.deleted,
            "node": node(e.node_changed.node),
        }
    return None
