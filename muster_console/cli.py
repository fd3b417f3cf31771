"""`muster-console`: follow the farm's changes live, one line per event.

Opens a console connection to the dispatcher (optionally only for some jobs,
folders or nodes) and prints every event it receives: job, chunk and node
changes, the realtime render log of nodes whose realtime log is on, dispatcher
log messages and custom messages. Each line starts with the time and the
event id. After a dispatcher restart it reconnects and resumes after the last
event it printed (muster_gateway/live.py, shared with `muster-notificator`); a forced
disconnection ends it with a message.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from muster_cli.render import chunk_status, job_status
from muster_gateway.live import LiveClient, clock, command_line, connect_from, run_until_signalled
from muster_proto.jobs.v1 import jobs_pb2
from muster_proto.nodes.v1 import nodes_pb2

PROGRAM = "muster-console"

# How a node change (NodeChanged.change) reads in a line.
NODE_CHANGES = {
    "registered": "registered (online)",
    "idle": "idle",
    "lost": "lost (offline)",
    "paused": "paused",
    "resumed": "resumed",
    "changed": "settings changed",
    "excluded": "excluded from a job",
    "exclusions_purged": "exclusions purged",
    "command": "sent a command",
}


def describe_chunk(changed: nodes_pb2.ChunkChanged) -> str:
    """`chunk 3 of job 2: queued -> assigned, node 5` (what the event says)."""
    chunk = changed.chunk
    text = f"chunk {chunk.id} of job {chunk.job_id}"
    if not chunk.status:
        return f"{text} changed"
    now = chunk_status(chunk.status)
    if changed.previous_status and changed.previous_status != chunk.status:
        text += f": {chunk_status(changed.previous_status)} -> {now}"
    else:
        text += f": {now}"
    if chunk.node_id:
        text += f", node {chunk.node_id}"
    if chunk.progress:
        text += f", {chunk.progress:.0f}%"
    return text


def describe(event: nodes_pb2.ClientEvent) -> tuple[str, str]:
    """(what kind of event, its text) for one event."""
    kind = event.WhichOneof("event")
    if kind == "job_changed":
        job = event.job_changed.job
        if event.job_changed.deleted:
            return "job", f"job {job.id} deleted"
        what = "folder" if job.kind == jobs_pb2.JOB_KIND_FOLDER else "job"
        return "job", (
            f"{what} {job.id} ({job.name}) {job_status(job)}, {job.progress:.0f}% "
            f"[{job.chunks_completed}/{job.chunks_total} chunks, "
            f"{job.chunks_running} running, {job.chunks_failed} failed]"
        )
    if kind == "chunk_changed":
        return "chunk", describe_chunk(event.chunk_changed)
    if kind == "node_changed":
        node = event.node_changed
        name = f" ({node.node.name})" if node.node.name else ""
        what = NODE_CHANGES.get(node.change, node.change.replace("_", " ") or "changed")
        return "node", f"node {node.node.id}{name} {'removed' if node.deleted else what}"
    if kind == "chunk_log_lines":
        log = event.chunk_log_lines
        text = " | ".join(line.text for line in log.lines)
        return "render log", f"node {log.node_id}, job {log.job_id} chunk {log.chunk_id}: {text}"
    if kind == "dispatcher_log":
        entry = event.dispatcher_log
        source = f" ({entry.source})" if entry.source else ""
        return "log", f"[{entry.level}] {entry.message}{source}"
    if kind == "custom_message":
        message = event.custom_message
        sender = f" from {message.sender}" if message.sender else ""
        return "message", f"{message.message}{sender}"
    if kind == "notification":
        return "notice", event.notification.text
    return "event", kind or "empty"


def format_event(event: nodes_pb2.ClientEvent) -> str:
    """`HH:MM:SS  #event_id  kind  text` on one line."""
    kind, text = describe(event)
    return f"{clock(event)}  #{event.event_id:<8} {kind:<10} {text}".replace("\n", " ")


def _ids(value: str) -> list[int]:
    try:
        ids = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"not a comma list of ids: {value!r}") from None
    if any(i <= 0 for i in ids):
        raise ValueError(f"ids are positive: {value!r}")
    return ids


def main(argv: Sequence[str] | None = None) -> int:
    parser = command_line(PROGRAM, __doc__)
    parser.add_argument("--job", default="", help="comma list of job ids to follow")
    parser.add_argument(
        "--folder", default="", help="comma list of folder ids (jobs inside, at any depth)"
    )
    parser.add_argument("--node", default="", help="comma list of node ids to follow")
    args = parser.parse_args(argv)
    try:
        request = nodes_pb2.ConnectRequest(
            client_kind=nodes_pb2.CLIENT_KIND_CONSOLE,
            job_ids=_ids(args.job),
            folder_ids=_ids(args.folder),
            node_ids=_ids(args.node),
        )
    except ValueError as exc:
        print(f"{PROGRAM}: {exc}", file=sys.stderr)
        return 2
    connection = connect_from(PROGRAM, args)
    if connection is None:
        return 2

    def say(line: str) -> None:
        print(line, flush=True)

    client = LiveClient(PROGRAM, connection, request, lambda e: say(format_event(e)), say)
    return run_until_signalled(client)
