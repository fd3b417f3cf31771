"""ChunkRunsService: the render loop's reports from the nodes service."""

from __future__ import annotations

from typing import Any

from muster_proto.jobs.v1 import chunk_runs_pb2, chunk_runs_pb2_grpc
from muster_services.core.convert import from_timestamp
from muster_services.core.enums import KILL_FOLLOW_UP, LOG_STREAM, RUN_OUTCOME
from muster_services.core.errors import InvalidArgument
from muster_services.jobs.enums import CHUNK_STATUS, LOG_MARK
from muster_services.jobs.log_store import NewLine
from muster_services.jobs.runs import ChunkRuns, RunEnd, report_progress

CHUNK_RUNS_SERVICE = chunk_runs_pb2.DESCRIPTOR.services_by_name["ChunkRunsService"]
MAX_RUNS_PER_CALL = 1000


class ChunkRunsServicer(chunk_runs_pb2_grpc.ChunkRunsServiceServicer):
    def __init__(self, runs: ChunkRuns) -> None:
        self.runs = runs

    def FinishChunkRun(
        self, request: chunk_runs_pb2.FinishChunkRunRequest, context: Any
    ) -> chunk_runs_pb2.FinishChunkRunResponse:
        return _answer(self.runs.finish(_run_end(request)))

    def FinishChunkRuns(
        self, request: chunk_runs_pb2.FinishChunkRunsRequest, context: Any
    ) -> chunk_runs_pb2.FinishChunkRunsResponse:
        if len(request.runs) > MAX_RUNS_PER_CALL:
            raise InvalidArgument(f"runs: at most {MAX_RUNS_PER_CALL} per call")
        statuses = self.runs.finish_many([_run_end(r) for r in request.runs])
        return chunk_runs_pb2.FinishChunkRunsResponse(results=[_answer(s) for s in statuses])

    def AppendChunkRunLog(
        self, request: chunk_runs_pb2.AppendChunkRunLogRequest, context: Any
    ) -> chunk_runs_pb2.AppendChunkRunLogResponse:
        accepted = self.runs.append_log(
            request.job_id,
            request.chunk_id,
            request.fencing_token,
            [
                NewLine(
                    from_timestamp(line.time, "lines.time"),
                    LOG_STREAM.to_text.get(line.stream, "stdout"),
                    line.text,
                    LOG_MARK.to_text.get(line.mark),
                )
                for line in request.lines
            ],
        )
        return chunk_runs_pb2.AppendChunkRunLogResponse(accepted=accepted)

    def ReleaseNodeChunks(
        self, request: chunk_runs_pb2.ReleaseNodeChunksRequest, context: Any
    ) -> chunk_runs_pb2.ReleaseNodeChunksResponse:
        released = self.runs.release_node(
            request.node_id, request.reason or "node lost", request.fencing_token
        )
        return chunk_runs_pb2.ReleaseNodeChunksResponse(
            chunks=[
                chunk_runs_pb2.ReleasedChunk(
                    job_id=job_id,
                    chunk_id=chunk_number,
                    chunk_status=CHUNK_STATUS.number(status),
                )
                for job_id, chunk_number, status in released
            ]
        )

    def ReportChunkProgress(
        self, request: chunk_runs_pb2.ReportChunkProgressRequest, context: Any
    ) -> chunk_runs_pb2.ReportChunkProgressResponse:
        applied = report_progress(
            self.runs.db,
            [(r.job_id, r.chunk_id, r.fencing_token, r.progress) for r in request.runs],
        )
        return chunk_runs_pb2.ReportChunkProgressResponse(applied_count=applied)


def _run_end(request: chunk_runs_pb2.FinishChunkRunRequest) -> RunEnd:
    return RunEnd(
        job_id=request.job_id,
        chunk_number=request.chunk_id,
        fencing_token=request.fencing_token,
        node_id=request.node_id,
        exit_code=request.exit_code,
        outcome=RUN_OUTCOME.text(request.outcome, "outcome"),
        message=request.message,
        ended_at=from_timestamp(request.end_time, "end_time"),
        kill_follow_up=KILL_FOLLOW_UP.to_text.get(request.kill_follow_up, ""),
    )


def _answer(status: str | None) -> chunk_runs_pb2.FinishChunkRunResponse:
    if status is None:
        return chunk_runs_pb2.FinishChunkRunResponse(applied=False)
    return chunk_runs_pb2.FinishChunkRunResponse(
        applied=True, chunk_status=CHUNK_STATUS.number(status)
    )
