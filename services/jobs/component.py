"""The jobs service as the server hosts it: queue, chunks, templates, backups."""

from __future__ import annotations

import grpc

from farm.jobs.v1 import chunk_runs_pb2_grpc, jobs_pb2_grpc
from services.core.database import Database
from services.core.server import Component
from services.core.settings import Settings
from services.jobs.runs import ChunkRuns
from services.jobs.runs_servicer import CHUNK_RUNS_SERVICE, ChunkRunsServicer
from services.jobs.scheduler import Scheduler
from services.jobs.service import JobsService
from services.jobs.servicer import JOBS_SERVICE, JobsServicer

__all__ = ["JOBS_SERVICE", "JobsServicer", "build"]


class _SeedTemplates:
    """Background item that refreshes the built-in templates when the server
    starts (an idempotent upsert, safe with several replicas)."""

    def __init__(self, service: JobsService) -> None:
        self.service = service

    def start(self) -> None:
        self.service.seed_templates()

    def stop(self) -> None:
        pass


def build(db: Database, settings: Settings) -> Component:
    service = JobsService(db)
    servicer = JobsServicer(service)
    runs = ChunkRunsServicer(ChunkRuns(service))

    def register(server: grpc.aio.Server) -> None:
        jobs_pb2_grpc.add_JobsServiceServicer_to_server(servicer, server)
        chunk_runs_pb2_grpc.add_ChunkRunsServiceServicer_to_server(runs, server)

    return Component(
        "jobs",
        [JOBS_SERVICE, CHUNK_RUNS_SERVICE],
        register,
        # Every replica runs a scheduler; one at a time leads (advisory lock).
        background=[_SeedTemplates(service), Scheduler(db)],
    )
