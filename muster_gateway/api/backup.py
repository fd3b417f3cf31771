"""Muster's Backup database APIs: archived jobs (farm.jobs.v1.JobsService)."""

from __future__ import annotations

from typing import Any

from muster_gateway import errors
from muster_gateway.api._arguments import as_enum, as_int, as_message
from muster_gateway.api._calls import call, pages
from muster_gateway.errors import MUSTERERR
from muster_gateway.objects import MBackupJob, MBackupQuery, MBackupQueryBoundaries
from muster_proto.jobs.v1 import jobs_pb2


def backupJob(id: Any, overwriteMode: Any) -> MUSTERERR:
    return call(
        "backupJob",
        lambda s: s.jobs.BackupJob,
        lambda: jobs_pb2.BackupJobRequest(
            job_id=as_int(id, "id"),
            overwrite_mode=as_enum(
                overwriteMode, jobs_pb2.BackupOverwriteMode.ValueType, "overwriteMode"
            ),
        ),
    )[0]


def backupJobAndDelete(id: Any, overwriteMode: Any) -> MUSTERERR:
    return call(
        "backupJobAndDelete",
        lambda s: s.jobs.ArchiveJob,
        lambda: jobs_pb2.ArchiveJobRequest(
            job_id=as_int(id, "id"),
            overwrite_mode=as_enum(
                overwriteMode, jobs_pb2.BackupOverwriteMode.ValueType, "overwriteMode"
            ),
        ),
    )[0]


def backupRestoreJob(id: Any, actionMode: Any, newParentId: Any) -> MUSTERERR:
    return call(
        "backupRestoreJob",
        lambda s: s.jobs.RestoreJob,
        lambda: jobs_pb2.RestoreJobRequest(
            backup_id=as_int(id, "id"),
            action_flags=as_int(actionMode, "actionMode"),
            new_parent_id=as_int(newParentId, "newParentId"),
        ),
    )[0]


def backupGetBoundaries(boundaries: Any) -> MUSTERERR:
    if not isinstance(boundaries, MBackupQueryBoundaries):
        return MUSTERERR(
            errors.kErrorBadArguments,
            "backupGetBoundaries: boundaries must be an MBackupQueryBoundaries",
        )
    err, reply = call(
        "backupGetBoundaries",
        lambda s: s.jobs.GetBackupBoundaries,
        jobs_pb2.GetBackupBoundariesRequest,
    )
    if reply is not None:
        boundaries.message.CopyFrom(reply.boundaries)
    return err


def backupQuery(query: Any = None) -> tuple[MUSTERERR, list[MBackupJob]]:
    def request() -> jobs_pb2.ListBackupJobsRequest:
        built = jobs_pb2.ListBackupJobsRequest()
        if query is not None:
            built.query.CopyFrom(as_message(query, MBackupQuery, "query"))
        return built

    err, replies = pages("backupQuery", lambda s: s.jobs.ListBackupJobs, request)
    return err, [MBackupJob(item) for reply in replies for item in reply.backup_jobs]
