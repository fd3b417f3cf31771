"""The jobs service as the server hosts it: queue, chunks, templates, backups."""

from __future__ import annotations

import grpc

from farm.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from services.core.database import Database
from services.core.server import Component, contract_base
from services.core.settings import Settings

JOBS_SERVICE = jobs_pb2.DESCRIPTOR.services_by_name["JobsService"]


class JobsServicer(contract_base(jobs_pb2_grpc.JobsServiceServicer, JOBS_SERVICE)):  # type: ignore[misc]
    """Translates JobsService calls to the jobs service layer."""

    def __init__(self, db: Database) -> None:
        self.db = db


def build(db: Database, settings: Settings) -> Component:
    servicer = JobsServicer(db)

    def register(server: grpc.aio.Server) -> None:
        jobs_pb2_grpc.add_JobsServiceServicer_to_server(servicer, server)

    return Component("jobs", [JOBS_SERVICE], register)
