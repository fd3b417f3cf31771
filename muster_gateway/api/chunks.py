"""Muster's Chunks APIs: a job's chunks and their run history (farm.jobs.v1.JobsService)."""

from __future__ import annotations

from typing import Any

from muster_gateway.api._arguments import as_enum, as_int
from muster_gateway.api._calls import call, pages
from muster_gateway.errors import MUSTERERR
from muster_gateway.objects import MChunk, MHistoryChunk
from muster_proto.jobs.v1 import jobs_pb2


def chunkGetList(id: Any) -> tuple[MUSTERERR, list[MChunk]]:
    err, replies = pages(
        "chunkGetList",
        lambda s: s.jobs.ListChunks,
        lambda: jobs_pb2.ListChunksRequest(job_id=as_int(id, "id")),
    )
    return err, [MChunk(chunk) for reply in replies for chunk in reply.chunks]


def chunkGet(jobId: Any, chunkId: Any) -> tuple[MUSTERERR, MChunk | None]:
    err, reply = call(
        "chunkGet",
        lambda s: s.jobs.GetChunk,
        lambda: jobs_pb2.GetChunkRequest(
            job_id=as_int(jobId, "jobId"), chunk_id=as_int(chunkId, "chunkId")
        ),
    )
    return err, MChunk(reply.chunk) if reply else None


def chunkSetStatus(jobId: Any, chunkId: Any, chunkStatus: Any) -> MUSTERERR:
    return call(
        "chunkSetStatus",
        lambda s: s.jobs.SetChunkStatus,
        lambda: jobs_pb2.SetChunkStatusRequest(
            job_id=as_int(jobId, "jobId"),
            chunk_id=as_int(chunkId, "chunkId"),
            status=as_enum(chunkStatus, jobs_pb2.ChunkStatus.ValueType, "chunkStatus"),
        ),
    )[0]


def chunkGetHistory(jobId: Any, chunkId: Any = None) -> tuple[MUSTERERR, list[MHistoryChunk]]:
    def request() -> jobs_pb2.ListChunkHistoryRequest:
        built = jobs_pb2.ListChunkHistoryRequest(job_id=as_int(jobId, "jobId"))
        if chunkId is not None:
            built.chunk_id = as_int(chunkId, "chunkId")
        return built

    err, replies = pages("chunkGetHistory", lambda s: s.jobs.ListChunkHistory, request)
    return err, [MHistoryChunk(run) for reply in replies for run in reply.chunk_runs]
