"""Muster's Jobs APIs: the queue's jobs and folders (farm.jobs.v1.JobsService)."""

from __future__ import annotations

from typing import Any

from muster_gateway.api._arguments import as_int, as_message, as_str
from muster_gateway.api._calls import call, pages
from muster_gateway.errors import MUSTERERR
from muster_gateway.objects import MJob
from muster_proto.jobs.v1 import jobs_pb2


def jobGetList() -> tuple[MUSTERERR, list[MJob]]:
    err, replies = pages("jobGetList", lambda s: s.jobs.ListJobs, jobs_pb2.ListJobsRequest)
    return err, [MJob(job) for reply in replies for job in reply.jobs]


def jobGet(id: Any) -> tuple[MUSTERERR, MJob | None]:
    err, reply = call(
        "jobGet",
        lambda s: s.jobs.GetJob,
        lambda: jobs_pb2.GetJobRequest(job_id=as_int(id, "id")),
    )
    return err, MJob(reply.job) if reply else None


def jobReparent(id: Any, newParentID: Any) -> MUSTERERR:
    return call(
        "jobReparent",
        lambda s: s.jobs.MoveJob,
        lambda: jobs_pb2.MoveJobRequest(
            job_id=as_int(id, "id"), new_parent_id=as_int(newParentID, "newParentID")
        ),
    )[0]


def jobSubmit(job: Any, owner: Any) -> tuple[MUSTERERR, int]:
    err, reply = call(
        "jobSubmit",
        lambda s: s.jobs.SubmitJob,
        lambda: jobs_pb2.SubmitJobRequest(
            job=as_message(job, MJob, "job"), owner=as_str(owner, "owner")
        ),
    )
    if reply is None:
        return err, 0
    job.message.CopyFrom(reply.job)  # the caller's MJob now carries its id
    return err, int(reply.job_id)


def jobEdit(job: Any) -> MUSTERERR:
    return call(
        "jobEdit",
        lambda s: s.jobs.UpdateJob,
        lambda: jobs_pb2.UpdateJobRequest(job=as_message(job, MJob, "job")),
    )[0]


def jobAddFolder(parent: Any, owner: Any, name: Any) -> tuple[MUSTERERR, int]:
    err, reply = call(
        "jobAddFolder",
        lambda s: s.jobs.CreateFolder,
        lambda: jobs_pb2.CreateFolderRequest(
            parent_id=as_int(parent, "parent"),
            owner=as_str(owner, "owner"),
            name=as_str(name, "name"),
        ),
    )
    return err, int(reply.folder_id) if reply else 0


def jobReinit(id: Any) -> MUSTERERR:
    return call(
        "jobReinit",
        lambda s: s.jobs.ReinitJob,
        lambda: jobs_pb2.ReinitJobRequest(job_id=as_int(id, "id")),
    )[0]


def jobDelete(id: Any) -> MUSTERERR:
    return call(
        "jobDelete",
        lambda s: s.jobs.DeleteJob,
        lambda: jobs_pb2.DeleteJobRequest(job_id=as_int(id, "id")),
    )[0]


def jobUpdateStatus(id: Any) -> MUSTERERR:
    return call(
        "jobUpdateStatus",
        lambda s: s.jobs.RecomputeJobStatus,
        lambda: jobs_pb2.RecomputeJobStatusRequest(job_id=as_int(id, "id")),
    )[0]


def jobUpdate(id: Any) -> MUSTERERR:
    return call(
        "jobUpdate",
        lambda s: s.jobs.PublishJob,
        lambda: jobs_pb2.PublishJobRequest(job_id=as_int(id, "id")),
    )[0]
