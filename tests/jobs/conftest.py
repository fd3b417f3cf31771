"""Fixtures of the jobs tests: the service on a fresh database, and the same
service behind a real gRPC server; helpers that write what the scheduler
would (`assign`) and read the published events (`topics`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import insert, select, text, update

from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_services.core.database import Database
from muster_services.core.schema import events
from muster_services.core.settings import Settings
from muster_services.jobs.component import build
from muster_services.jobs.domain import Attribute, JobSpec
from muster_services.jobs.service import JobsService
from muster_services.jobs.tables import chunk_assignments, chunk_runs, chunks
from muster_services.jobs.templates import BLENDER_TEMPLATE_ID, COMMAND_LINE_TEMPLATE_ID
from muster_services.jobs.topics import TEMPLATES_CHANGED
from tests.support import InProcessServer

# Blender's scene file is a required submission item.
SCENE = Attribute("job_file", "string", "/shows/demo/shot.blend", substitute_paths=True)
SPEC = JobSpec(
    name="shot",
    owner="alice",
    template_id=BLENDER_TEMPLATE_ID,
    start_frame=1,
    end_frame=10,
    attributes=(SCENE,),
)


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
        "attributes": [
            jobs_pb2.JobAttribute(
                name="job_file", string_value="/shows/demo/shot.blend", substitute_paths=True
            )
        ],
    }
    values.update(fields)
    return jobs_pb2.Job(**values)


def assign(db: Database, job_id: int, chunk: int, node_id: int, run_number: int = 1) -> int:
    """What the scheduler writes when it assigns a chunk: an assignment, a
    running run, the chunk running. Returns the fencing token."""
    with db.transaction() as session:
        token = session.execute(
            insert(chunk_assignments)
            .values(job_id=job_id, chunk_number=chunk, node_id=node_id, state="running")
            .returning(chunk_assignments.c.fencing_token)
        ).scalar_one()
        session.execute(
            insert(chunk_runs).values(
                job_id=job_id,
                chunk_number=chunk,
                run_number=run_number,
                node_id=node_id,
                node_name=f"node{node_id}",
                fencing_token=token,
                start_frame=chunk,
                end_frame=chunk,
            )
        )
        session.execute(
            update(chunks)
            .where(chunks.c.job_id == job_id, chunks.c.chunk_number == chunk)
            .values(status="running", node_id=node_id, runs_count=run_number)
        )
    return int(token)


def configure(db: Database, **values: Any) -> None:
    """Change the dispatcher configuration in effect (as systemSetConfiguration does)."""
    with db.transaction() as session:
        session.execute(
            text(
                "UPDATE dispatcher_config SET runtime_config = runtime_config"
                " || CAST(:values AS jsonb) WHERE id = 1"
            ),
            {"values": json.dumps(values)},
        )


def topics(db: Database) -> list[tuple[str, dict[str, Any]]]:
    """The published events, but the template catalogue's load at start."""
    with db.transaction() as session:
        rows = session.execute(
            select(events.c.topic, events.c.payload)
            .where(events.c.topic != TEMPLATES_CHANGED)
            .order_by(events.c.id)
        )
        return [(r.topic, r.payload) for r in rows]


__all__ = [
    "BLENDER_TEMPLATE_ID",
    "COMMAND_LINE_TEMPLATE_ID",
    "SPEC",
    "a_job",
    "assign",
    "configure",
    "topics",
]
