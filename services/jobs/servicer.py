"""JobsService over gRPC: protobuf <-> service calls, nothing else.

No SQL and no rules here: requests become plain values for
services/jobs/service.py, and its rows become messages.
"""

from __future__ import annotations

from typing import Any

from farm.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from gateway.hooks import HookRunner
from services.core.convert import from_timestamp, to_timestamp
from services.core.errors import FailedPrecondition
from services.core.server import contract_base
from services.jobs import enums
from services.jobs.messages import (
    JobMessageCache,
    add_listed_chunks,
    backup_message,
    chunk_message,
    job_message,
    job_spec,
    run_message,
    template_message,
)
from services.jobs.service import BackupFilter, JobFilter, JobsService

JOBS_SERVICE = jobs_pb2.DESCRIPTOR.services_by_name["JobsService"]

# --- the servicer -----------------------------------------------------------------------


class JobsServicer(contract_base(jobs_pb2_grpc.JobsServiceServicer, JOBS_SERVICE)):  # type: ignore[misc]
    """Translates JobsService calls to the jobs service layer."""

    def __init__(self, service: JobsService, hooks: HookRunner | None = None) -> None:
        self.service = service
        self.hooks = hooks
        self.job_cache = JobMessageCache()

    def ListJobs(self, request: jobs_pb2.ListJobsRequest, context: Any) -> Any:
        filters = JobFilter(
            parent_id=request.parent_id if request.HasField("parent_id") else None,
            owner=request.owner,
            statuses=tuple(enums.JOB_STATUS.text(s, "statuses") for s in request.statuses),
            kind=enums.JOB_KIND.text(request.kind, "kind") if request.kind else None,
            project=request.project,
        )
        page = self.service.list_jobs(
            filters, request.page_size, request.page_token, versions_only=True
        )
        return jobs_pb2.ListJobsResponse(
            jobs=self.job_cache.messages(page.items, self.service.jobs_by_ids),
            next_page_token=page.next_page_token,
        )

    def GetJob(self, request: jobs_pb2.GetJobRequest, context: Any) -> Any:
        version = self.service.job_version(request.job_id)
        (job,) = self.job_cache.messages([version], self.service.jobs_by_ids)
        return jobs_pb2.GetJobResponse(job=job)

    def MoveJob(self, request: jobs_pb2.MoveJobRequest, context: Any) -> Any:
        row = self.service.move_job(request.job_id, request.new_parent_id)
        return jobs_pb2.MoveJobResponse(job=job_message(row))

    def SubmitJob(self, request: jobs_pb2.SubmitJobRequest, context: Any) -> Any:
        spec = job_spec(request.job, request.owner)
        if self.hooks is not None:
            proposed = jobs_pb2.Job()
            proposed.CopyFrom(request.job)
            proposed.owner = spec.owner
            reason = self.hooks.validate(
                "onValidateJobSubmission", proposed, template_id=spec.template_id
            )
            if reason is not None:
                raise FailedPrecondition(f"refused by onValidateJobSubmission: {reason}")
        row = self.service.submit_job(spec, request.request_id)
        return jobs_pb2.SubmitJobResponse(job_id=row.id, job=job_message(row))

    def UpdateJob(self, request: jobs_pb2.UpdateJobRequest, context: Any) -> Any:
        fields = list(request.update_mask.paths) or None
        row = self.service.update_job(
            request.job.id, job_spec(request.job), fields, request.job.etag
        )
        return jobs_pb2.UpdateJobResponse(job=job_message(row))

    def CreateFolder(self, request: jobs_pb2.CreateFolderRequest, context: Any) -> Any:
        folder_id = self.service.create_folder(
            request.parent_id, request.owner, request.name, request.request_id
        )
        return jobs_pb2.CreateFolderResponse(folder_id=folder_id)

    def ReinitJob(self, request: jobs_pb2.ReinitJobRequest, context: Any) -> Any:
        self.service.reinit_job(request.job_id)
        return jobs_pb2.ReinitJobResponse()

    def DeleteJob(self, request: jobs_pb2.DeleteJobRequest, context: Any) -> Any:
        self.service.delete_job(request.job_id)
        return jobs_pb2.DeleteJobResponse()

    def RecomputeJobStatus(self, request: jobs_pb2.RecomputeJobStatusRequest, context: Any) -> Any:
        row = self.service.recompute_status(request.job_id)
        return jobs_pb2.RecomputeJobStatusResponse(job=job_message(row))

    def PublishJob(self, request: jobs_pb2.PublishJobRequest, context: Any) -> Any:
        self.service.publish_job(request.job_id)
        return jobs_pb2.PublishJobResponse()

    def ListChunks(self, request: jobs_pb2.ListChunksRequest, context: Any) -> Any:
        statuses = [enums.CHUNK_STATUS.text(s, "statuses") for s in request.statuses]
        page = self.service.list_chunks(
            request.job_id, statuses, request.page_size, request.page_token
        )
        response = jobs_pb2.ListChunksResponse(next_page_token=page.next_page_token)
        add_listed_chunks(response.chunks, page.items)
        return response

    def GetChunk(self, request: jobs_pb2.GetChunkRequest, context: Any) -> Any:
        row = self.service.get_chunk(request.job_id, request.chunk_id)
        return jobs_pb2.GetChunkResponse(chunk=chunk_message(row))

    def SetChunkStatus(self, request: jobs_pb2.SetChunkStatusRequest, context: Any) -> Any:
        status = enums.CHUNK_STATUS.text(request.status, "status")
        row = self.service.set_chunk_status(request.job_id, request.chunk_id, status)
        return jobs_pb2.SetChunkStatusResponse(chunk=chunk_message(row))

    def ListChunkHistory(self, request: jobs_pb2.ListChunkHistoryRequest, context: Any) -> Any:
        chunk_id = request.chunk_id if request.HasField("chunk_id") else None
        page = self.service.list_history(
            request.job_id, chunk_id, request.page_size, request.page_token
        )
        return jobs_pb2.ListChunkHistoryResponse(
            chunk_runs=[run_message(r) for r in page.items], next_page_token=page.next_page_token
        )

    def ListTemplates(self, request: jobs_pb2.ListTemplatesRequest, context: Any) -> Any:
        platform = enums.PLATFORM.text(request.platform, "platform") if request.platform else None
        page = self.service.list_templates(platform, request.page_size, request.page_token)
        return jobs_pb2.ListTemplatesResponse(
            templates=[template_message(r) for r in page.items],
            next_page_token=page.next_page_token,
        )

    def GetTemplate(self, request: jobs_pb2.GetTemplateRequest, context: Any) -> Any:
        row = self.service.get_template(request.template_id)
        return jobs_pb2.GetTemplateResponse(template=template_message(row))

    def BackupJob(self, request: jobs_pb2.BackupJobRequest, context: Any) -> Any:
        mode = enums.OVERWRITE_MODE.text(request.overwrite_mode, "overwrite_mode")
        return jobs_pb2.BackupJobResponse(backup_id=self.service.backup_job(request.job_id, mode))

    def ArchiveJob(self, request: jobs_pb2.ArchiveJobRequest, context: Any) -> Any:
        mode = enums.OVERWRITE_MODE.text(request.overwrite_mode, "overwrite_mode")
        return jobs_pb2.ArchiveJobResponse(backup_id=self.service.archive_job(request.job_id, mode))

    def RestoreJob(self, request: jobs_pb2.RestoreJobRequest, context: Any) -> Any:
        job_id = self.service.restore_job(
            request.backup_id, request.action_flags, request.new_parent_id
        )
        return jobs_pb2.RestoreJobResponse(job_id=job_id)

    def GetBackupBoundaries(
        self, request: jobs_pb2.GetBackupBoundariesRequest, context: Any
    ) -> Any:
        first, last, count = self.service.backup_boundaries()
        return jobs_pb2.GetBackupBoundariesResponse(
            boundaries=jobs_pb2.BackupBoundaries(
                first_backup_time=to_timestamp(first),
                last_backup_time=to_timestamp(last),
                jobs_count=count,
            )
        )

    def ListBackupJobs(self, request: jobs_pb2.ListBackupJobsRequest, context: Any) -> Any:
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
        page = self.service.query_backups(filters, request.page_size, request.page_token)
        return jobs_pb2.ListBackupJobsResponse(
            backup_jobs=[backup_message(r) for r in page.items],
            next_page_token=page.next_page_token,
        )

    def ImportQueueSql(self, request: jobs_pb2.ImportQueueSqlRequest, context: Any) -> Any:
        return jobs_pb2.ImportQueueSqlResponse(jobs_count=self.service.import_sql(request.sql))

    def ExportQueueSql(self, request: jobs_pb2.ExportQueueSqlRequest, context: Any) -> Any:
        return jobs_pb2.ExportQueueSqlResponse(sql=self.service.export_sql())

    def FlushQueueDatabase(self, request: jobs_pb2.FlushQueueDatabaseRequest, context: Any) -> Any:
        self.service.flush()
        return jobs_pb2.FlushQueueDatabaseResponse()

    def FlushHistoryDatabase(
        self, request: jobs_pb2.FlushHistoryDatabaseRequest, context: Any
    ) -> Any:
        self.service.flush()
        return jobs_pb2.FlushHistoryDatabaseResponse()

    def FlushBackupDatabase(
        self, request: jobs_pb2.FlushBackupDatabaseRequest, context: Any
    ) -> Any:
        self.service.flush()
        return jobs_pb2.FlushBackupDatabaseResponse()
