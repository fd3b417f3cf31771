"""Commands on the queue: submit, jobs, job show, chunks, history, log, watch, actions."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from google.protobuf.field_mask_pb2 import FieldMask
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from muster_cli import render
from muster_cli.app import app, call, connection, every_item, fail, new_app, stream_metadata
from muster_cli.submit import build_job, parse_attributes, read_job_file
from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import jobs_pb2

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
JobId = Annotated[int, typer.Argument(help="The job (or folder) id.", show_default=False)]

job_app = new_app("One job: show it.")
chunk_app = new_app("Chunks: requeue or complete them.")
app.add_typer(job_app, name="job")
app.add_typer(chunk_app, name="chunk")

# `watch` exit codes by the job's final status.
WATCH_EXIT = {
    jobs_pb2.JOB_STATUS_COMPLETED: 0,
    jobs_pb2.JOB_STATUS_COMPLETED_WITH_WARNINGS: 4,
    jobs_pb2.JOB_STATUS_COMPLETED_WITH_ERRORS: 3,
    jobs_pb2.JOB_STATUS_FAILED: 3,
}
EXIT_DELETED = 5


def get_job(job_id: int) -> jobs_pb2.Job:
    reply: jobs_pb2.GetJobResponse = call(
        connection().jobs().GetJob, jobs_pb2.GetJobRequest(job_id=job_id)
    )
    return reply.job


# --- submit ---------------------------------------------------------------------------------


@app.command()
def submit(
    file: Annotated[
        Path | None, typer.Option("-f", "--file", help="A JSON or YAML job file (docs/cli.md).")
    ] = None,
    name: Annotated[str | None, typer.Option("-n", "--name", help="Job name.")] = None,
    template: Annotated[
        str | None, typer.Option("-e", "--template", help="Template id or name.")
    ] = None,
    start_frame: Annotated[float | None, typer.Option("-sf", "--start-frame")] = None,
    end_frame: Annotated[float | None, typer.Option("-ef", "--end-frame")] = None,
    by_frame: Annotated[float | None, typer.Option("-bf", "--by-frame")] = None,
    packet_size: Annotated[
        int | None, typer.Option("-pk", "--packet-size", help="Frames per chunk.")
    ] = None,
    priority: Annotated[int | None, typer.Option("-pr", "--priority", help="0-65535.")] = None,
    pools: Annotated[
        list[str] | None,
        typer.Option("-pool", "--pool", metavar="POOLS", help="Included pools (repeat or a,b)."),
    ] = None,
    excluded_pools: Annotated[
        list[str] | None,
        typer.Option("-exclude", "--exclude-pool", metavar="POOLS", help="Excluded pools."),
    ] = None,
    depends: Annotated[
        list[str] | None,
        typer.Option("-dep", "--depends", metavar="IDS", help="Job ids this job waits for."),
    ] = None,
    attributes: Annotated[
        list[str] | None,
        typer.Option("-a", "--attribute", metavar="KEY=VALUE", help="A template attribute."),
    ] = None,
    parent: Annotated[
        int | None, typer.Option("-parent", "--parent", help="Parent folder id (-1 = root).")
    ] = None,
    max_nodes: Annotated[int | None, typer.Option("-max", "--max-nodes")] = None,
    max_requeues: Annotated[
        int | None, typer.Option("--max-requeues", help="Requeues per chunk before it fails.")
    ] = None,
    project: Annotated[str | None, typer.Option("-project", "--project")] = None,
    department: Annotated[str | None, typer.Option("-department", "--department")] = None,
    group: Annotated[str | None, typer.Option("-group", "--group")] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Submit paused.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Submit a job from flags (mrtool style) or from a JSON/YAML job file; flags
    override the file's values."""
    flags: dict[str, Any] = {
        "name": name,
        "template": template,
        "start_frame": start_frame,
        "end_frame": end_frame,
        "by_frame": by_frame,
        "packet_size": packet_size,
        "priority": priority,
        "pools": pools or None,
        "excluded_pools": excluded_pools or None,
        "depends": depends or None,
        "parent": parent,
        "max_nodes": max_nodes,
        "max_chunk_requeues": max_requeues,
        "project": project,
        "department": department,
        "job_group": group,
        "paused": paused or None,
    }
    given = {k: v for k, v in flags.items() if v is not None}
    specs = read_job_file(file) if file else [{}]
    submitted: list[jobs_pb2.Job] = []
    for spec in specs:
        merged = {**spec, **given}
        if attributes:
            merged["attributes"] = {
                **(spec.get("attributes") or {}),
                **parse_attributes(attributes),
            }
        job, owner = build_job(merged)
        reply: jobs_pb2.SubmitJobResponse = call(
            connection().jobs().SubmitJob,
            jobs_pb2.SubmitJobRequest(job=job, owner=owner, request_id=str(uuid.uuid4())),
        )
        submitted.append(reply.job)
        if not as_json:
            render.out().print(f"submitted job {reply.job_id} ({reply.job.name})")
    if as_json:
        render.print_json(submitted)


# --- reading the queue ------------------------------------------------------------------------


def _all_jobs(owner: str) -> list[jobs_pb2.Job]:
    stub = connection().jobs()
    request = jobs_pb2.ListJobsRequest(page_size=5000, owner=owner)
    with render.out().status("reading the queue...", spinner="dots") if _tty() else _nothing():
        return every_item(stub.ListJobs, request, "jobs")


def _tty() -> bool:
    return render.out().is_terminal


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def tree_order(jobs: list[jobs_pb2.Job]) -> list[tuple[int, jobs_pb2.Job]]:
    """(depth, job) in folder-tree order: each folder followed by its content.
    A job whose parent is not listed (filtered out) shows at the top level."""
    known = {job.id for job in jobs}
    children: dict[int, list[jobs_pb2.Job]] = defaultdict(list)
    for job in jobs:
        children[job.parent_id if job.parent_id in known else -1].append(job)
    ordered: list[tuple[int, jobs_pb2.Job]] = []

    def walk(parent: int, depth: int) -> None:
        for job in sorted(children.get(parent, []), key=lambda j: j.id):
            ordered.append((depth, job))
            walk(job.id, depth + 1)

    walk(-1, 0)
    return ordered


@app.command("jobs")
def list_jobs(
    owner: Annotated[str, typer.Option("--owner", help="Only this owner's jobs.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """The queue as a folder tree: status, progress, priority, owner, nodes working."""
    jobs = _all_jobs(owner)
    if as_json:
        render.print_json(jobs)
        return
    rows = []
    for depth, job in tree_order(jobs):
        folder = job.kind == jobs_pb2.JOB_KIND_FOLDER
        label = "  " * depth + (f"▸ {job.name}/" if folder else job.name)
        rows.append(
            (
                job.id,
                label,
                "folder" if folder else render.job_status(job),
                render.bar(job.progress),
                job.priority,
                job.owner,
                "" if folder else job.nodes_working,
                "" if folder else f"{job.chunks_completed}/{job.chunks_total}",
            )
        )
    render.table(
        f"{len(jobs)} jobs and folders",
        ("id", "name", "status", "progress", "priority", "owner", "nodes", "chunks"),
        rows,
    )


@job_app.command("show")
def job_show(job_id: JobId, as_json: JsonFlag = False) -> None:
    """Every property of one job."""
    job = get_job(job_id)
    attributes = ", ".join(
        f"{a.name}={getattr(a, a.WhichOneof('value') or 'string_value')}" for a in job.attributes
    )
    render.details(
        job,
        as_json,
        f"job {job.id}",
        lambda: [
            ("name", job.name),
            ("kind", render.enum_text(jobs_pb2.JobKind.DESCRIPTOR, job.kind, "JOB_KIND_")),
            ("status", render.job_status(job)),
            ("progress", render.bar(job.progress)),
            (
                "chunks",
                f"{job.chunks_total} total, {job.chunks_completed} completed, "
                f"{job.chunks_running} running, {job.chunks_queued} queued, "
                f"{job.chunks_failed} failed",
            ),
            ("nodes working", job.nodes_working),
            ("owner", job.owner),
            ("submitter", job.submitter),
            ("priority", job.priority),
            ("template", job.template_id),
            ("frames", f"{render.frames(job.start_frame, job.end_frame)} by {job.by_frame:g}"),
            ("packet size", job.packet_size),
            ("parent", job.parent_id),
            ("pools", ", ".join(job.included_pools)),
            ("excluded pools", ", ".join(job.excluded_pools)),
            ("depends on", ", ".join(str(d) for d in job.depend_ids)),
            ("max nodes", job.max_nodes or ""),
            ("project", job.project),
            ("department", job.department),
            ("group", job.job_group),
            ("attributes", attributes),
            ("locked", "yes" if job.locked else ""),
            ("requeues", job.requeue_count),
            ("submitted", render.when(job.submit_time)),
            ("started", render.when(job.start_time)),
            ("ended", render.when(job.end_time)),
            ("notes", job.notes),
        ],
    )


@app.command()
def chunks(job_id: JobId, as_json: JsonFlag = False) -> None:
    """The chunks of a job: frames, status, node, progress."""
    request = jobs_pb2.ListChunksRequest(job_id=job_id)
    render.listing(
        every_item(connection().jobs().ListChunks, request, "chunks"),
        as_json,
        f"chunks of job {job_id}",
        ("chunk", "frames", "status", "node", "progress", "requeues", "exit", "started", "ended"),
        lambda c: (
            c.id,
            render.frames(c.start_frame, c.end_frame),
            render.chunk_status(c.status),
            c.node_name,
            render.bar(c.progress),
            c.requeue_count,
            c.exit_code if c.end_time.seconds else "",
            render.when(c.start_time),
            render.when(c.end_time),
        ),
    )


def outcome(run: jobs_pb2.ChunkRun) -> str:
    return render.enum_text(
        common_pb2.ChunkRunOutcome.DESCRIPTOR, run.outcome, "CHUNK_RUN_OUTCOME_"
    )


@app.command()
def history(
    job_id: JobId,
    chunk: Annotated[int | None, typer.Option("--chunk", help="Only this chunk's runs.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The runs of a job's chunks, oldest first."""
    request = jobs_pb2.ListChunkHistoryRequest(job_id=job_id)
    if chunk is not None:
        request.chunk_id = chunk
    render.listing(
        every_item(connection().jobs().ListChunkHistory, request, "chunk_runs"),
        as_json,
        f"runs of job {job_id}",
        ("chunk", "run", "node", "outcome", "exit", "started", "ended", "message"),
        lambda r: (
            r.chunk_id,
            r.run_number,
            r.node_name,
            outcome(r),
            r.exit_code if r.end_time.seconds else "",
            render.when(r.start_time),
            render.when(r.end_time),
            r.message,
        ),
    )


# --- logs -----------------------------------------------------------------------------------


def _print_lines(lines: Any, gaps: Any) -> None:
    console = render.out()
    for gap in gaps:
        console.print(
            f"[dim]… lines {gap.first_line}-{gap.last_line} dropped by the log cap "
            f"({gap.bytes} bytes) …[/dim]"
        )
    for line in lines:
        style = {common_pb2.LOG_MARK_ERROR: "red", common_pb2.LOG_MARK_WARNING: "yellow"}.get(
            line.mark, "dim" if line.stream == common_pb2.LOG_STREAM_AGENT else ""
        )
        text = f"{line.number:>6}  {line.text}"
        console.print(text, style=style or None, markup=False, highlight=False)


@app.command()
def log(
    job_id: JobId,
    chunk_id: Annotated[int, typer.Argument(help="The chunk id.", show_default=False)],
    run: Annotated[int, typer.Option("--run", help="Run number (1 = first); 0 = newest.")] = 0,
    tail: Annotated[int, typer.Option("--tail", help="Only the last N lines.")] = 0,
    follow: Annotated[bool, typer.Option("-F", "--follow", help="Follow a running chunk.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """A chunk's render log (error lines red, warnings yellow); --follow streams it live."""
    stub = connection().jobs()
    if follow:
        request = jobs_pb2.FollowChunkLogRequest(
            job_id=job_id, chunk_id=chunk_id, run_number=run, tail=tail
        )
        if not tail:
            request.from_line = 1
        stream = stub.FollowChunkLog(request, metadata=stream_metadata())
        try:
            for message in stream:
                if as_json:
                    render.print_json(message)
                else:
                    _print_lines(message.lines, message.gaps)
                    if message.ended:
                        render.out().print(f"[dim]run ended: {outcome(message.run)}[/dim]")
        except KeyboardInterrupt:
            stream.cancel()  # type: ignore[no-untyped-call]
        return
    request_page = jobs_pb2.GetChunkLogRequest(
        job_id=job_id, chunk_id=chunk_id, run_number=run, tail=tail
    )
    while True:
        reply: jobs_pb2.GetChunkLogResponse = call(stub.GetChunkLog, request_page)
        if as_json:
            render.print_json(reply)
        else:
            _print_lines(reply.lines, reply.gaps)
        if tail or not reply.next_line:
            return
        request_page.from_line = reply.next_line


# --- watch ----------------------------------------------------------------------------------


@app.command()
def watch(
    job_id: JobId,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between looks.")] = 1.0,
) -> None:
    """A live progress bar until the job ends. Exit code: 0 completed, 3 failed or
    completed with errors, 4 completed with warnings, 5 deleted meanwhile."""
    job = get_job(job_id)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=render.out(), transient=False) as progress:
        task = progress.add_task(f"job {job.id} {job.name}", total=100, state="")
        while True:
            progress.update(
                task,
                completed=job.progress,
                state=f"{render.job_status(job)} [{job.chunks_completed}/{job.chunks_total}"
                f" chunks, {job.chunks_running} running, {job.chunks_failed} failed]",
            )
            if job.status in WATCH_EXIT and not job.chunks_running:
                break
            time.sleep(interval)
            try:
                job = get_job(job_id)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    fail(f"job {job_id} was deleted", EXIT_DELETED)
                raise
    render.out().print(f"job {job.id} {render.job_status(job)}")
    raise typer.Exit(WATCH_EXIT[job.status])


# --- actions --------------------------------------------------------------------------------


def _set_paused(job_id: int, paused: bool) -> None:
    request = jobs_pb2.UpdateJobRequest(
        job=jobs_pb2.Job(id=job_id, paused=paused), update_mask=FieldMask(paths=["paused"])
    )
    call(connection().jobs().UpdateJob, request)
    render.out().print(f"job {job_id} {'paused' if paused else 'resumed'}")


@app.command()
def pause(job_id: JobId) -> None:
    """Pause a job: no new chunk starts; running chunks finish."""
    _set_paused(job_id, True)


@app.command()
def resume(job_id: JobId) -> None:
    """Resume a paused job."""
    _set_paused(job_id, False)


@app.command()
def reinit(job_id: JobId) -> None:
    """Reinitialise a job: every chunk back to queued (running ones are killed)."""
    call(connection().jobs().ReinitJob, jobs_pb2.ReinitJobRequest(job_id=job_id))
    render.out().print(f"job {job_id} reinitialised")


@app.command()
def delete(
    job_id: JobId,
    yes: Annotated[bool, typer.Option("-y", "--yes", help="Do not ask.")] = False,
) -> None:
    """Delete a job, or a folder with everything inside it."""
    if not yes:
        job = get_job(job_id)
        typer.confirm(f"delete job {job.id} ({job.name})?", abort=True, err=True)
    call(connection().jobs().DeleteJob, jobs_pb2.DeleteJobRequest(job_id=job_id))
    render.out().print(f"job {job_id} deleted")


def _set_chunks(job_id: int, chunk_ids: list[int], status: int, done: str) -> None:
    stub = connection().jobs()
    for chunk_id in chunk_ids:
        reply: jobs_pb2.SetChunkStatusResponse = call(
            stub.SetChunkStatus,
            jobs_pb2.SetChunkStatusRequest(job_id=job_id, chunk_id=chunk_id, status=status),  # type: ignore[arg-type]
        )
        now = render.chunk_status(reply.chunk.status)
        pending = (
            "" if reply.chunk.status == status else f" (now {now}; once its process is killed)"
        )
        render.out().print(f"chunk {chunk_id} of job {job_id} {done}{pending}")


ChunkIds = Annotated[list[int], typer.Argument(help="Chunk ids.", show_default=False)]


@chunk_app.command("requeue")
def chunk_requeue(job_id: JobId, chunk_ids: ChunkIds) -> None:
    """Put chunks back in the queue (a running one is killed first)."""
    _set_chunks(job_id, chunk_ids, jobs_pb2.CHUNK_STATUS_QUEUED, "requeued")


@chunk_app.command("complete")
def chunk_complete(job_id: JobId, chunk_ids: ChunkIds) -> None:
    """Mark chunks completed without rendering them."""
    _set_chunks(job_id, chunk_ids, jobs_pb2.CHUNK_STATUS_COMPLETED, "completed")
