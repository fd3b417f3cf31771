"""Every JobsService RPC through a real server with blocking stubs: success,
each failure path, and proof that a refused call changed nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import jobs_pb2 as pb
from muster_proto.jobs.v1.jobs_pb2_grpc import JobsServiceStub
from muster_services.jobs.queue_sql import parse_sql
from tests.jobs.conftest import BLENDER_TEMPLATE_ID, COMMAND_LINE_TEMPLATE_ID, a_job

pytestmark = pytest.mark.database
Code = grpc.StatusCode


def refused(call: Callable[[], Any], code: grpc.StatusCode, *words: str) -> str:
    with pytest.raises(grpc.RpcError) as error:
        call()
    assert error.value.code() == code, error.value.details()
    details = str(error.value.details())
    for word in words:
        assert word in details
    return details


def queue(stub: JobsServiceStub) -> str:
    """The whole queue as text: equal before and after proves nothing changed."""
    return str(stub.ExportQueueSql(pb.ExportQueueSqlRequest()).sql)


def submit(stub: JobsServiceStub, **fields: Any) -> pb.Job:
    return stub.SubmitJob(pb.SubmitJobRequest(job=a_job(**fields))).job


def folder(stub: JobsServiceStub, name: str = "shots", parent: int = -1) -> int:
    reply = stub.CreateFolder(pb.CreateFolderRequest(parent_id=parent, owner="alice", name=name))
    return int(reply.folder_id)


# --- submission and reading -------------------------------------------------------------------


def test_submit_creates_the_job_with_its_chunks(stub: JobsServiceStub) -> None:
    reply = stub.SubmitJob(pb.SubmitJobRequest(job=a_job(), owner="bob"))
    assert reply.job.owner == "bob"
    assert (reply.job.status, reply.job.chunks_total, reply.job.chunks_queued) == (
        pb.JOB_STATUS_QUEUED,
        5,
        5,
    )
    got = stub.GetJob(pb.GetJobRequest(job_id=reply.job_id)).job
    assert got == reply.job
    chunks = stub.ListChunks(pb.ListChunksRequest(job_id=reply.job_id)).chunks
    assert [(c.id, c.start_frame, c.end_frame) for c in chunks][-1] == (5, 9, 10)


def test_submit_retried_with_the_same_request_id_returns_the_first_job(
    stub: JobsServiceStub,
) -> None:
    request = pb.SubmitJobRequest(job=a_job(), request_id="req-1")
    first, second = stub.SubmitJob(request), stub.SubmitJob(request)
    assert first.job_id == second.job_id
    assert len(stub.ListJobs(pb.ListJobsRequest()).jobs) == 1


@pytest.mark.parametrize(
    ("fields", "code", "word"),
    [
        ({"name": ""}, Code.INVALID_ARGUMENT, "job.name"),
        ({"priority": 70000}, Code.INVALID_ARGUMENT, "job.priority"),
        ({"end_frame": 0}, Code.INVALID_ARGUMENT, "job.end_frame"),
        ({"by_frame": 0}, Code.INVALID_ARGUMENT, "job.by_frame"),
        ({"template_id": 4242}, Code.INVALID_ARGUMENT, "job.template_id"),
        ({"parent_id": 999}, Code.NOT_FOUND, "job.parent_id"),
        ({"depend_ids": [999]}, Code.NOT_FOUND, "job.depend_ids"),
        ({"end_frame": 5_000_000, "packet_size": 1}, Code.INVALID_ARGUMENT, "job.packet_size"),
    ],
)
def test_submit_refuses_bad_jobs_and_changes_nothing(
    stub: JobsServiceStub, fields: dict[str, Any], code: grpc.StatusCode, word: str
) -> None:
    submit(stub)
    before = queue(stub)
    refused(lambda: stub.SubmitJob(pb.SubmitJobRequest(job=a_job(**fields))), code, word)
    assert queue(stub) == before


def test_a_job_under_a_job_is_refused(stub: JobsServiceStub) -> None:
    job = submit(stub)
    refused(lambda: submit(stub, parent_id=job.id), Code.FAILED_PRECONDITION, "not a folder")


def test_get_job_of_an_unknown_id_is_not_found(stub: JobsServiceStub) -> None:
    refused(lambda: stub.GetJob(pb.GetJobRequest(job_id=77)), Code.NOT_FOUND, "job_id", "77")


def test_list_jobs_pages_and_filters(stub: JobsServiceStub) -> None:
    shots = folder(stub)
    ids = [submit(stub, name=f"j{i}", parent_id=shots).id for i in range(5)]
    submit(stub, owner="carol")
    pages, token = [], ""
    while True:
        reply = stub.ListJobs(pb.ListJobsRequest(page_size=2, page_token=token, parent_id=shots))
        pages.append([j.id for j in reply.jobs])
        token = reply.next_page_token
        if not token:
            break
    assert [i for page in pages for i in page] == ids and len(pages) == 3
    owners = stub.ListJobs(pb.ListJobsRequest(owner="carol")).jobs
    assert [j.owner for j in owners] == ["carol"]
    folders = stub.ListJobs(pb.ListJobsRequest(kind=pb.JOB_KIND_FOLDER)).jobs
    assert [j.id for j in folders] == [shots]
    root = stub.ListJobs(pb.ListJobsRequest(parent_id=-1)).jobs
    assert len(root) == 2


def test_list_jobs_refuses_a_bad_page_request(stub: JobsServiceStub) -> None:
    refused(lambda: stub.ListJobs(pb.ListJobsRequest(page_size=-1)), Code.INVALID_ARGUMENT)
    refused(
        lambda: stub.ListJobs(pb.ListJobsRequest(page_token="garbage")),
        Code.INVALID_ARGUMENT,
        "page_token",
    )


# --- folders and moves ------------------------------------------------------------------------


def test_create_folder_refuses_unknown_parents_jobs_and_empty_names(
    stub: JobsServiceStub,
) -> None:
    job = submit(stub)
    before = queue(stub)
    create = stub.CreateFolder
    refused(lambda: create(pb.CreateFolderRequest(parent_id=55, name="x")), Code.NOT_FOUND)
    refused(
        lambda: create(pb.CreateFolderRequest(parent_id=job.id, name="x")),
        Code.FAILED_PRECONDITION,
    )
    refused(
        lambda: create(pb.CreateFolderRequest(parent_id=-1, name="")),
        Code.INVALID_ARGUMENT,
        "job.name",
    )
    assert queue(stub) == before


def test_move_job_into_a_folder_and_refuse_moving_a_folder_into_itself(
    stub: JobsServiceStub,
) -> None:
    outer = folder(stub, "outer")
    inner = folder(stub, "inner", parent=outer)
    job = submit(stub)
    moved = stub.MoveJob(pb.MoveJobRequest(job_id=job.id, new_parent_id=inner)).job
    assert moved.parent_id == inner
    before = queue(stub)
    move = stub.MoveJob
    refused(
        lambda: move(pb.MoveJobRequest(job_id=outer, new_parent_id=inner)),
        Code.FAILED_PRECONDITION,
        "new_parent_id",
    )
    refused(
        lambda: move(pb.MoveJobRequest(job_id=outer, new_parent_id=outer)), Code.FAILED_PRECONDITION
    )
    refused(
        lambda: move(pb.MoveJobRequest(job_id=outer, new_parent_id=job.id)),
        Code.FAILED_PRECONDITION,
    )
    refused(lambda: move(pb.MoveJobRequest(job_id=outer, new_parent_id=404)), Code.NOT_FOUND)
    refused(lambda: move(pb.MoveJobRequest(job_id=404, new_parent_id=-1)), Code.NOT_FOUND)
    assert queue(stub) == before


def test_deleting_a_folder_deletes_what_it_holds(stub: JobsServiceStub) -> None:
    shots = folder(stub)
    inner = folder(stub, "inner", parent=shots)
    submit(stub, parent_id=inner)
    kept = submit(stub)
    stub.DeleteJob(pb.DeleteJobRequest(job_id=shots))
    assert [j.id for j in stub.ListJobs(pb.ListJobsRequest()).jobs] == [kept.id]
    refused(lambda: stub.DeleteJob(pb.DeleteJobRequest(job_id=shots)), Code.NOT_FOUND)


def test_a_locked_job_cannot_be_deleted_or_reinitialised(stub: JobsServiceStub) -> None:
    job = submit(stub, locked=True)
    before = queue(stub)
    refused(
        lambda: stub.DeleteJob(pb.DeleteJobRequest(job_id=job.id)),
        Code.FAILED_PRECONDITION,
        "locked",
    )
    refused(lambda: stub.ReinitJob(pb.ReinitJobRequest(job_id=job.id)), Code.FAILED_PRECONDITION)
    assert queue(stub) == before


# --- edit, reinit, status ---------------------------------------------------------------------


def test_update_job_changes_masked_fields_and_rebuilds_unstarted_chunks(
    stub: JobsServiceStub,
) -> None:
    job = submit(stub)
    change = pb.Job(id=job.id, priority=9, end_frame=20, name="ignored")
    mask = FieldMask(paths=["priority", "end_frame"])
    updated = stub.UpdateJob(pb.UpdateJobRequest(job=change, update_mask=mask)).job
    assert (updated.priority, updated.end_frame, updated.name) == (9, 20, "shot010")
    assert updated.chunks_total == 10
    assert updated.etag != job.etag


def test_update_job_with_no_mask_replaces_every_writable_field(stub: JobsServiceStub) -> None:
    job = submit(stub)
    job.notes, job.status = "new notes", pb.JOB_STATUS_COMPLETED
    updated = stub.UpdateJob(pb.UpdateJobRequest(job=job)).job
    assert (updated.notes, updated.status) == ("new notes", pb.JOB_STATUS_QUEUED)


def test_update_job_refusals_change_nothing(stub: JobsServiceStub) -> None:
    job = submit(stub)
    other = submit(stub, depend_ids=[job.id])
    locked = submit(stub, locked=True)
    before = queue(stub)
    update = stub.UpdateJob

    def masked(job_id: int, paths: list[str], **fields: Any) -> Callable[[], Any]:
        message = pb.UpdateJobRequest(
            job=pb.Job(id=job_id, **fields), update_mask=FieldMask(paths=paths)
        )
        return lambda: update(message)

    refused(masked(404, ["priority"]), Code.NOT_FOUND)
    refused(masked(job.id, ["priority"], priority=70000), Code.INVALID_ARGUMENT, "job.priority")
    refused(masked(job.id, ["status"]), Code.INVALID_ARGUMENT, "update_mask", "output only")
    refused(masked(job.id, ["kind"]), Code.INVALID_ARGUMENT, "kind")
    refused(masked(job.id, ["bogus"]), Code.INVALID_ARGUMENT, "bogus")
    refused(
        masked(job.id, ["depend_ids"], depend_ids=[other.id]), Code.FAILED_PRECONDITION, "cycle"
    )
    refused(masked(locked.id, ["priority"], priority=1), Code.FAILED_PRECONDITION, "locked")
    refused(masked(job.id, ["priority"], priority=1, etag="999"), Code.ABORTED)
    assert queue(stub) == before
    unlocked = update(
        pb.UpdateJobRequest(
            job=pb.Job(id=locked.id, locked=False, priority=1),
            update_mask=FieldMask(paths=["locked", "priority"]),
        )
    ).job
    assert (unlocked.locked, unlocked.priority) == (False, 1)


def test_depend_chunks_round_trips_through_submit_get_edit_and_backup(
    stub: JobsServiceStub,
) -> None:
    render = submit(stub, name="render")
    comp = submit(stub, name="comp", depend_ids=[render.id], depend_chunks=True)
    assert (comp.depend_chunks, comp.status) == (True, pb.JOB_STATUS_WAITING_DEPENDENCIES)
    assert stub.GetJob(pb.GetJobRequest(job_id=comp.id)).job.depend_chunks

    def edit(value: bool, paths: list[str]) -> pb.Job:
        change = pb.Job(id=comp.id, depend_chunks=value, priority=1)
        request = pb.UpdateJobRequest(job=change, update_mask=FieldMask(paths=paths))
        return stub.UpdateJob(request).job

    assert edit(False, ["priority"]).depend_chunks  # not in the mask: kept
    off = edit(False, ["depend_chunks"])
    assert (off.depend_chunks, list(off.depend_ids)) == (False, [render.id])
    assert edit(True, ["depend_chunks"]).depend_chunks
    # Without depend_ids the flag is kept but waits for nothing.
    alone = submit(stub, name="alone", depend_chunks=True)
    assert (alone.depend_chunks, alone.status) == (True, pb.JOB_STATUS_QUEUED)
    replace = pb.BACKUP_OVERWRITE_MODE_REPLACE
    archived = stub.ArchiveJob(pb.ArchiveJobRequest(job_id=comp.id, overwrite_mode=replace))
    [backup] = stub.ListBackupJobs(pb.ListBackupJobsRequest()).backup_jobs
    assert backup.job.depend_chunks
    restored = stub.RestoreJob(pb.RestoreJobRequest(backup_id=archived.backup_id)).job_id
    back = stub.GetJob(pb.GetJobRequest(job_id=restored)).job
    assert (back.depend_chunks, list(back.depend_ids)) == (True, [render.id])
    exported = {r["id"]: r for r in parse_sql(queue(stub)).rows["jobs"]}
    assert (exported[restored]["depend_chunks"], exported[render.id]["depend_chunks"]) == (
        True,
        False,
    )


def test_reinit_and_recompute_and_publish(stub: JobsServiceStub) -> None:
    job = submit(stub)
    stub.SetChunkStatus(
        pb.SetChunkStatusRequest(job_id=job.id, chunk_id=1, status=pb.CHUNK_STATUS_COMPLETED)
    )
    running = stub.RecomputeJobStatus(pb.RecomputeJobStatusRequest(job_id=job.id)).job
    assert (running.status, running.progress, running.chunks_completed) == (
        pb.JOB_STATUS_RUNNING,
        20,
        1,
    )
    stub.ReinitJob(pb.ReinitJobRequest(job_id=job.id))
    fresh = stub.GetJob(pb.GetJobRequest(job_id=job.id)).job
    assert (fresh.status, fresh.progress, fresh.chunks_queued) == (pb.JOB_STATUS_QUEUED, 0, 5)
    stub.PublishJob(pb.PublishJobRequest(job_id=job.id))
    for call in (
        lambda: stub.ReinitJob(pb.ReinitJobRequest(job_id=404)),
        lambda: stub.RecomputeJobStatus(pb.RecomputeJobStatusRequest(job_id=404)),
        lambda: stub.PublishJob(pb.PublishJobRequest(job_id=404)),
    ):
        refused(call, Code.NOT_FOUND, "404")


# --- chunks -----------------------------------------------------------------------------------


def test_chunk_status_changes_follow_the_rules(stub: JobsServiceStub) -> None:
    job = submit(stub)

    def set_status(chunk: int, status: pb.ChunkStatus.ValueType) -> pb.Chunk:
        reply = stub.SetChunkStatus(
            pb.SetChunkStatusRequest(job_id=job.id, chunk_id=chunk, status=status)
        )
        return reply.chunk

    assert set_status(1, pb.CHUNK_STATUS_HOLD).status == pb.CHUNK_STATUS_HOLD
    assert set_status(2, pb.CHUNK_STATUS_SKIPPED).status == pb.CHUNK_STATUS_SKIPPED
    requeued = set_status(2, pb.CHUNK_STATUS_QUEUED)
    assert (requeued.status, requeued.requeue_count) == (pb.CHUNK_STATUS_QUEUED, 1)
    got = stub.GetChunk(pb.GetChunkRequest(job_id=job.id, chunk_id=1)).chunk
    assert got.status == pb.CHUNK_STATUS_HOLD
    held = stub.ListChunks(pb.ListChunksRequest(job_id=job.id, statuses=[pb.CHUNK_STATUS_HOLD]))
    assert [c.id for c in held.chunks] == [1]
    counted = stub.GetJob(pb.GetJobRequest(job_id=job.id)).job
    assert (counted.chunks_queued, counted.requeue_count) == (4, 1)


def test_chunk_refusals_change_nothing(stub: JobsServiceStub) -> None:
    job = submit(stub)
    shots = folder(stub)
    stub.SetChunkStatus(
        pb.SetChunkStatusRequest(job_id=job.id, chunk_id=3, status=pb.CHUNK_STATUS_COMPLETED)
    )
    before = queue(stub)
    setter = stub.SetChunkStatus
    refused(
        lambda: setter(
            pb.SetChunkStatusRequest(job_id=job.id, chunk_id=1, status=pb.CHUNK_STATUS_RUNNING)
        ),
        Code.INVALID_ARGUMENT,
        "status",
    )
    refused(
        lambda: setter(pb.SetChunkStatusRequest(job_id=job.id, chunk_id=1)),
        Code.INVALID_ARGUMENT,
        "status",
    )
    refused(
        lambda: setter(
            pb.SetChunkStatusRequest(job_id=job.id, chunk_id=3, status=pb.CHUNK_STATUS_HOLD)
        ),
        Code.FAILED_PRECONDITION,
    )
    refused(
        lambda: setter(
            pb.SetChunkStatusRequest(job_id=job.id, chunk_id=99, status=pb.CHUNK_STATUS_HOLD)
        ),
        Code.NOT_FOUND,
        "chunk_id",
    )
    refused(
        lambda: setter(
            pb.SetChunkStatusRequest(job_id=404, chunk_id=1, status=pb.CHUNK_STATUS_HOLD)
        ),
        Code.NOT_FOUND,
        "job_id",
    )
    refused(lambda: stub.GetChunk(pb.GetChunkRequest(job_id=job.id, chunk_id=99)), Code.NOT_FOUND)
    refused(lambda: stub.ListChunks(pb.ListChunksRequest(job_id=404)), Code.NOT_FOUND)
    refused(
        lambda: stub.ListChunks(pb.ListChunksRequest(job_id=shots)), Code.INVALID_ARGUMENT, "folder"
    )
    assert queue(stub) == before  # fmt: skip


def test_chunk_history_of_an_unknown_job_or_chunk_is_not_found(stub: JobsServiceStub) -> None:
    job = submit(stub)
    empty = stub.ListChunkHistory(pb.ListChunkHistoryRequest(job_id=job.id, chunk_id=1))
    assert list(empty.chunk_runs) == []
    refused(lambda: stub.ListChunkHistory(pb.ListChunkHistoryRequest(job_id=404)), Code.NOT_FOUND)
    refused(
        lambda: stub.ListChunkHistory(pb.ListChunkHistoryRequest(job_id=job.id, chunk_id=99)),
        Code.NOT_FOUND,
        "chunk_id",
    )


# --- templates --------------------------------------------------------------------------------


def test_templates_are_served_with_their_fixed_ids(stub: JobsServiceStub) -> None:
    listed = stub.ListTemplates(pb.ListTemplatesRequest()).templates
    # The built-in library: Muster's ids where Muster has the template, 1000 and up else.
    ids = [t.id for t in listed]
    assert {1, 29, 37, 46, 48, 55, COMMAND_LINE_TEMPLATE_ID, BLENDER_TEMPLATE_ID} <= set(ids)
    assert ids == sorted(ids) and all(t.builtin and t.version for t in listed)
    linux = stub.ListTemplates(pb.ListTemplatesRequest(platform=common_pb2.PLATFORM_LINUX))
    windows_only = {t.id for t in listed} - {t.id for t in linux.templates}
    assert BLENDER_TEMPLATE_ID not in windows_only and 1012 in windows_only  # 3ds Max
    blender = stub.GetTemplate(pb.GetTemplateRequest(template_id=BLENDER_TEMPLATE_ID)).template
    assert blender.name == "Blender" and blender.mappings["SCENEFILE"] == "job_file"
    assert "onBuildCommandLine" in blender.node_callbacks
    refused(lambda: stub.GetTemplate(pb.GetTemplateRequest(template_id=5)), Code.NOT_FOUND)
    refused(
        lambda: stub.ListTemplates(pb.ListTemplatesRequest(page_size=-1)), Code.INVALID_ARGUMENT
    )


# --- backups ----------------------------------------------------------------------------------


def test_backup_archive_query_and_restore(stub: JobsServiceStub) -> None:
    shots = folder(stub)
    job = submit(stub, parent_id=shots, name="Hero Shot", project="film")
    replace = pb.BACKUP_OVERWRITE_MODE_REPLACE
    stub.BackupJob(pb.BackupJobRequest(job_id=job.id, overwrite_mode=replace))
    archived = stub.ArchiveJob(pb.ArchiveJobRequest(job_id=job.id, overwrite_mode=replace))
    refused(lambda: stub.GetJob(pb.GetJobRequest(job_id=job.id)), Code.NOT_FOUND)
    bounds = stub.GetBackupBoundaries(pb.GetBackupBoundariesRequest()).boundaries
    assert bounds.jobs_count == 1  # REPLACE kept one entry per job
    found = stub.ListBackupJobs(
        pb.ListBackupJobsRequest(query=pb.BackupQuery(name_contains="hero"))
    )
    assert [(b.id, b.job.name, b.chunks_count) for b in found.backup_jobs] == [
        (archived.backup_id, "Hero Shot", 5)
    ]
    none = stub.ListBackupJobs(pb.ListBackupJobsRequest(query=pb.BackupQuery(owner="nobody")))
    assert list(none.backup_jobs) == []
    stub.DeleteJob(pb.DeleteJobRequest(job_id=shots))
    restore = pb.RestoreJobRequest(backup_id=archived.backup_id)
    refused(lambda: stub.RestoreJob(restore), Code.FAILED_PRECONDITION, "RESTORE_PARENTS")
    restore.action_flags = pb.RESTORE_ACTION_FLAG_RESTORE_PARENTS
    restored = stub.RestoreJob(restore).job_id
    back = stub.GetJob(pb.GetJobRequest(job_id=restored)).job
    assert (back.id, back.parent_id, back.chunks_total) == (job.id, shots, 5)
    refused(lambda: stub.RestoreJob(restore), Code.ALREADY_EXISTS, "DUPLICATE_ENTRY")
    restore.action_flags |= pb.RESTORE_ACTION_FLAG_DUPLICATE_ENTRY
    copy = stub.RestoreJob(restore).job_id
    assert copy != job.id


def test_backup_refusals(stub: JobsServiceStub) -> None:
    job = submit(stub)
    shots = folder(stub)
    fail = pb.BACKUP_OVERWRITE_MODE_FAIL
    stub.BackupJob(pb.BackupJobRequest(job_id=job.id, overwrite_mode=fail))
    bounds = stub.GetBackupBoundaries(pb.GetBackupBoundariesRequest()).boundaries
    backup = stub.BackupJob
    refused(
        lambda: backup(pb.BackupJobRequest(job_id=job.id, overwrite_mode=fail)), Code.ALREADY_EXISTS
    )
    refused(
        lambda: backup(pb.BackupJobRequest(job_id=job.id)), Code.INVALID_ARGUMENT, "overwrite_mode"
    )
    refused(
        lambda: backup(pb.BackupJobRequest(job_id=shots, overwrite_mode=fail)),
        Code.INVALID_ARGUMENT,
        "folder",
    )
    refused(lambda: backup(pb.BackupJobRequest(job_id=404, overwrite_mode=fail)), Code.NOT_FOUND)
    refused(
        lambda: stub.ArchiveJob(pb.ArchiveJobRequest(job_id=job.id, overwrite_mode=fail)),
        Code.ALREADY_EXISTS,
    )
    refused(lambda: stub.RestoreJob(pb.RestoreJobRequest(backup_id=404)), Code.NOT_FOUND)
    refused(
        lambda: stub.RestoreJob(pb.RestoreJobRequest(backup_id=1, action_flags=8)),
        Code.INVALID_ARGUMENT,
        "action_flags",
    )
    inverted = pb.BackupQuery(
        backup_time_range=common_pb2.TimeRange(
            start_time=bounds.last_backup_time, end_time=bounds.first_backup_time
        )
    )
    inverted.backup_time_range.end_time.seconds -= 10
    refused(
        lambda: stub.ListBackupJobs(pb.ListBackupJobsRequest(query=inverted)), Code.INVALID_ARGUMENT
    )
    assert stub.GetJob(pb.GetJobRequest(job_id=job.id)).job.id == job.id  # archive refused
    after = stub.GetBackupBoundaries(pb.GetBackupBoundariesRequest()).boundaries
    assert after == bounds  # fmt: skip


# --- queue snapshots and flushes --------------------------------------------------------------


def test_export_import_export_gives_identical_text(stub: JobsServiceStub) -> None:
    shots = folder(stub)
    first = submit(stub, parent_id=shots, notes="it's\nmultiline")
    submit(stub, depend_ids=[first.id], included_pools=["gpu"])
    stub.MoveJob(pb.MoveJobRequest(job_id=shots, new_parent_id=folder(stub, "later")))
    text = queue(stub)
    reply = stub.ImportQueueSql(pb.ImportQueueSqlRequest(sql=text))
    assert reply.jobs_count == 4
    assert queue(stub) == text
    created = submit(stub)
    assert created.id == 5  # the id sequence moved past the imported ids


@pytest.mark.parametrize(
    "attack",
    [
        "DELETE FROM jobs;",
        "INSERT INTO users (name) VALUES ('x');",
        "{line} DROP TABLE jobs;",
        "{line}\n-- comment",
        "{line}\nINSERT INTO jobs ('x",
    ],
)
def test_import_refuses_anything_else_and_leaves_the_queue_as_it_was(
    stub: JobsServiceStub, attack: str
) -> None:
    submit(stub)
    before = queue(stub)
    sql = attack.format(line=before.splitlines()[0])
    refused(
        lambda: stub.ImportQueueSql(pb.ImportQueueSqlRequest(sql=sql)),
        Code.INVALID_ARGUMENT,
        "sql: line",
    )
    assert queue(stub) == before


def test_a_statement_hidden_in_a_string_is_only_data(stub: JobsServiceStub) -> None:
    submit(stub, name="x'); DROP TABLE jobs; --")
    text = queue(stub)
    stub.ImportQueueSql(pb.ImportQueueSqlRequest(sql=text))
    assert stub.ListJobs(pb.ListJobsRequest()).jobs[0].name == "x'); DROP TABLE jobs; --"


def test_flushes_return_once_the_database_answers(stub: JobsServiceStub) -> None:
    stub.FlushQueueDatabase(pb.FlushQueueDatabaseRequest())
    stub.FlushHistoryDatabase(pb.FlushHistoryDatabaseRequest())
    stub.FlushBackupDatabase(pb.FlushBackupDatabaseRequest())
