"""Fixtures of the jobs tests: the service on a fresh database, and the same
service behind a real gRPC server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from farm.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from services.core.database import Database
from services.core.settings import Settings
from services.jobs.component import build
from services.jobs.service import JobsService
from services.jobs.templates import BLENDER_TEMPLATE_ID, COMMAND_LINE_TEMPLATE_ID
from tests.support import InProcessServer


@pytest.fixture
def service(db: Database) -> JobsService:
    jobs = JobsService(db)
    jobs.templates.seed_templates()
    return jobs


@pytest.fixture
def stub(db: Database) -> Iterator[jobs_pb2_grpc.JobsServiceStub]:
    with (
        InProcessServer([build(db, Settings())], worker_threads=4) as server,
        server.channel() as channel,
    ):
        yield jobs_pb2_grpc.JobsServiceStub(channel)


def a_job(**fields: Any) -> jobs_pb2.Job:
    """A valid job message: Blender, frames 1-10, 2 frames per chunk."""
    values: dict[str, Any] = {
        "name": "shot010",
        "owner": "alice",
        "parent_id": -1,
        "template_id": BLENDER_TEMPLATE_ID,
        "start_frame": 1,
        "end_frame": 10,
        "by_frame": 1,
        "packet_size": 2,
        "priority": 50,
    }
    values.update(fields)
    return jobs_pb2.Job(**values)


__all__ = ["BLENDER_TEMPLATE_ID", "COMMAND_LINE_TEMPLATE_ID", "a_job"]
