"""JobsService over gRPC: protobuf <-> use-case calls, nothing else.

No SQL and no rules here: requests become plain values for the use cases
assembled in muster_services/jobs/service.py, and their read models become messages
(muster_services/jobs/messages.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio

from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_services.core import enums as core_enums
from muster_services.core.convert import from_timestamp, to_timestamp
from muster_services.core.server import contract_base
from muster_services.jobs import enums
from muster_services.jobs.backups import BackupFilter
from muster_services.jobs.licences import GroupState
from muster_services.jobs.messages import (
    JobMessageCache,
    add_listed_chunks,
    backup_message,
    chunk_message,
    job_message,
    job_spec,
    log_batch_message,
    log_page_message,
    run_message,
    template_message,
)
from muster_services.jobs.queue import JobFilter
from muster_services.jobs.service import JobsService

JOBS_SERVICE = jobs_pb2.DESCRIPTOR.services_by_name["JobsService"]

# --- the servicer -----------------------------------------------------------------------


class JobsServicer(contract_base(jobs_pb2_grpc.JobsServiceServicer, JOBS_SERVICE)):  # type: ignore[misc]
    """Translates JobsService calls to the jobs use cases."""

    def __init__(self, service: JobsService) -> None:
        self.queue = service.queue
        self.chunks = service.chunks
        self.templates = service.templates
        self.backups = service.backups
        self.snapshots = service.snapshots
        self.template_groups = service.template_groups
        self.logs = service.logs
        self.job_cache = JobMessageCache()

    # --- the queue ------------------------------------------------------------------------

    def ListJobs(
        self, request: jobs_pb2.ListJobsRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.ListJobsResponse:
        filters = JobFilter(
            parent_id=request.parent_id if request.HasField("parent_id") else None,
            owner=request.owner,
            statuses=tuple(enums.JOB_STATUS.text(s, "statuses") for s in request.statuses),
            kind=enums.JOB_KIND.text(request.kind, "kind") if request.kind else None,
            project=request.project,
        )
        page = self.queue.list_jobs(filters, request.page_size, request.page_token)
        return jobs_pb2.ListJobsResponse(
            jobs=self.job_cache.messages(page.items, self.queue.jobs_by_ids),
            next_page_token=page.next_page_token,
        )

    def GetJob(
        self, request: jobs_pb2.GetJobRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.GetJobResponse:
        version = self.queue.job_version(request.job_id)
        (job,) = self.job_cache.messages([version], self.queue.jobs_by_ids)
        return jobs_pb2.GetJobResponse(job=job)

    def MoveJob(
        self, request: jobs_pb2.MoveJobRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.MoveJobResponse:
        job = self.queue.move_job(request.job_id, request.new_parent_id)
        return jobs_pb2.MoveJobResponse(job=job_message(job))

    def SubmitJob(
        self, request: jobs_pb2.SubmitJobRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.SubmitJobResponse:
        job = self.queue.submit_job(job_spec(request.job, request.owner), request.request_id)
        return jobs_pb2.SubmitJobResponse(job_id=job.id, job=job_message(job))

    def UpdateJob(
        self, request: jobs_pb2.UpdateJobRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.UpdateJobResponse:
        fields = list(request.update_mask.paths) or None
        job = self.queue.update_job(request.job.id, job_spec(request.job), fields, request.job.etag)
        return jobs_pb2.UpdateJobResponse(job=job_message(job))

    def CreateFolder(
        self, request: jobs_pb2.CreateFolderRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.CreateFolderResponse:
        folder_id = self.queue.create_folder(
            request.parent_id, request.owner, request.name, request.request_id
        )
        return jobs_pb2.CreateFolderResponse(folder_id=folder_id)

    def ReinitJob(
        self, request: jobs_pb2.ReinitJobRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.ReinitJobResponse:
        self.queue.reinit_job(request.job_id)
        return jobs_pb2.ReinitJobResponse()

    def DeleteJob(
        self, request: jobs_pb2.DeleteJobRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.DeleteJobResponse:
        self.queue.delete_job(request.job_id)
        return jobs_pb2.DeleteJobResponse()

    def RecomputeJobStatus(
        self, request: jobs_pb2.RecomputeJobStatusRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.RecomputeJobStatusResponse:
        job = self.queue.recompute_status(request.job_id)
        return jobs_pb2.RecomputeJobStatusResponse(job=job_message(job))

    def PublishJob(
        self, request: jobs_pb2.PublishJobRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.PublishJobResponse:
        self.queue.publish_job(request.job_id)
        return jobs_pb2.PublishJobResponse()

    # --- chunks and history -----------------------------------------------------------------

    def ListChunks(
        self, request: jobs_pb2.ListChunksRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.ListChunksResponse:
        statuses = [enums.CHUNK_STATUS.text(s, "statuses") for s in request.statuses]
        page = self.chunks.list_chunks(
            request.job_id, statuses, request.page_size, request.page_token
        )
        response = jobs_pb2.ListChunksResponse(next_page_token=page.next_page_token)
        add_listed_chunks(response.chunks, page.items)
        return response

    def GetChunk(
        self, request: jobs_pb2.GetChunkRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.GetChunkResponse:
        chunk = self.chunks.get_chunk(request.job_id, request.chunk_id)
        return jobs_pb2.GetChunkResponse(chunk=chunk_message(chunk))

    def SetChunkStatus(
        self, request: jobs_pb2.SetChunkStatusRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.SetChunkStatusResponse:
        status = enums.CHUNK_STATUS.text(request.status, "status")
        chunk = self.chunks.set_chunk_status(request.job_id, request.chunk_id, status)
        return jobs_pb2.SetChunkStatusResponse(chunk=chunk_message(chunk))

    def ListChunkHistory(
        self, request: jobs_pb2.ListChunkHistoryRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.ListChunkHistoryResponse:
        chunk_id = request.chunk_id if request.HasField("chunk_id") else None
        page = self.chunks.list_history(
            request.job_id, chunk_id, request.page_size, request.page_token
        )
        return jobs_pb2.ListChunkHistoryResponse(
            chunk_runs=[run_message(r) for r in page.items], next_page_token=page.next_page_token
        )

    # --- render logs ----------------------------------------------------------------------------

    def GetChunkLog(
        self, request: jobs_pb2.GetChunkLogRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.GetChunkLogResponse:
        page = self.logs.read(
            request.job_id,
            request.chunk_id,
            request.run_number,
            request.from_line,
            request.limit,
            request.tail,
        )
        return log_page_message(page)

    async def FollowChunkLog(
        self, request: jobs_pb2.FollowChunkLogRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[jobs_pb2.FollowChunkLogResponse]:
        # On the event loop, not a worker thread: a follower waits for minutes.
        batches = self.logs.follow(
            request.job_id, request.chunk_id, request.run_number, request.from_line, request.tail
        )
        async for batch in batches:
            yield log_batch_message(batch)

    # --- templates ----------------------------------------------------------------------------

    def ListTemplates(
        self, request: jobs_pb2.ListTemplatesRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.ListTemplatesResponse:
        platform = (
            core_enums.PLATFORM.text(request.platform, "platform") if request.platform else None
        )
        page = self.templates.list_templates(platform, request.page_size, request.page_token)
        problems = [] if request.page_token else self.templates.file_problems()
        return jobs_pb2.ListTemplatesResponse(
            templates=[template_message(t) for t in page.items],
            next_page_token=page.next_page_token,
            problems=[
                jobs_pb2.TemplateFileProblem(file_path=path, error=error)
                for path, error in problems
            ],
        )

    def GetTemplate(
        self, request: jobs_pb2.GetTemplateRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.GetTemplateResponse:
        template = self.templates.get_template(request.template_id)
        return jobs_pb2.GetTemplateResponse(template=template_message(template))

    # --- the backup store ---------------------------------------------------------------------

    def BackupJob(
        self, request: jobs_pb2.BackupJobRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.BackupJobResponse:
        mode = enums.OVERWRITE_MODE.text(request.overwrite_mode, "overwrite_mode")
        return jobs_pb2.BackupJobResponse(backup_id=self.backups.backup_job(request.job_id, mode))

    def ArchiveJob(
        self, request: jobs_pb2.ArchiveJobRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.ArchiveJobResponse:
        mode = enums.OVERWRITE_MODE.text(request.overwrite_mode, "overwrite_mode")
        return jobs_pb2.ArchiveJobResponse(backup_id=self.backups.archive_job(request.job_id, mode))

    def RestoreJob(
        self, request: jobs_pb2.RestoreJobRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.RestoreJobResponse:
        job_id = self.backups.restore_job(
            request.backup_id, request.action_flags, request.new_parent_id
        )
        return jobs_pb2.RestoreJobResponse(job_id=job_id)

    def GetBackupBoundaries(
        self, request: jobs_pb2.GetBackupBoundariesRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.GetBackupBoundariesResponse:
        first, last, count = self.backups.backup_boundaries()
        return jobs_pb2.GetBackupBoundariesResponse(
            boundaries=jobs_pb2.BackupBoundaries(
                first_backup_time=to_timestamp(first),
                last_backup_time=to_timestamp(last),
                jobs_count=count,
            )
        )

    def ListBackupJobs(
        self, request: jobs_pb2.ListBackupJobsRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.ListBackupJobsResponse:
        query = request.query
        filters = BackupFilter(
            name_contains=query.name_contains,
            owner=query.owner,
            project=query.project,
            job_id=query.job_id,
            since=from_timestamp(
                query.backup_time_range.start_time, "query.backup_time_range.start_time"
            ),
            until=from_timestamp(
                query.backup_time_range.end_time, "query.backup_time_range.end_time"
            ),
        )
        page = self.backups.query_backups(filters, request.page_size, request.page_token)
        return jobs_pb2.ListBackupJobsResponse(
            backup_jobs=[backup_message(b) for b in page.items],
            next_page_token=page.next_page_token,
        )

    # --- the queue as a whole -----------------------------------------------------------------

    def ImportQueueSql(
        self, request: jobs_pb2.ImportQueueSqlRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.ImportQueueSqlResponse:
        return jobs_pb2.ImportQueueSqlResponse(jobs_count=self.snapshots.import_sql(request.sql))

    def ExportQueueSql(
        self, request: jobs_pb2.ExportQueueSqlRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.ExportQueueSqlResponse:
        return jobs_pb2.ExportQueueSqlResponse(sql=self.snapshots.export_sql())

    def FlushQueueDatabase(
        self, request: jobs_pb2.FlushQueueDatabaseRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.FlushQueueDatabaseResponse:
        self.snapshots.flush()
        return jobs_pb2.FlushQueueDatabaseResponse()

    def FlushHistoryDatabase(
        self, request: jobs_pb2.FlushHistoryDatabaseRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.FlushHistoryDatabaseResponse:
        self.snapshots.flush()
        return jobs_pb2.FlushHistoryDatabaseResponse()

    def FlushBackupDatabase(
        self, request: jobs_pb2.FlushBackupDatabaseRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.FlushBackupDatabaseResponse:
        self.snapshots.flush()
        return jobs_pb2.FlushBackupDatabaseResponse()

    # --- licence and delay groups of templates ------------------------------------------------

    def ListTemplateGroups(
        self, request: jobs_pb2.ListTemplateGroupsRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.ListTemplateGroupsResponse:
        groups = self.template_groups.list_groups()
        return jobs_pb2.ListTemplateGroupsResponse(
            groups=[template_group_message(g) for g in groups]
        )

    def SetTemplateGroupLimit(
        self, request: jobs_pb2.SetTemplateGroupLimitRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.SetTemplateGroupLimitResponse:
        kind = enums.TEMPLATE_GROUP_KIND.text(request.kind, "kind")
        value = request.value if request.HasField("value") else None
        group = self.template_groups.set_limit(kind, request.name, value)
        return jobs_pb2.SetTemplateGroupLimitResponse(group=template_group_message(group))


def template_group_message(group: GroupState) -> jobs_pb2.TemplateGroup:
    return jobs_pb2.TemplateGroup(
        kind=enums.TEMPLATE_GROUP_KIND.number(group.kind),
        name=group.name,
        file_value=group.file_value,
        override_value=group.override,
        effective_value=group.limit,
        template_ids=group.template_ids,
        running_chunks=group.running,
        last_start_time=to_timestamp(group.last_started_at),
    )
