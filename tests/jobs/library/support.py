"""Helpers of the library tests: the loaded library, jobs and chunks as a
template's callbacks get them."""

from __future__ import annotations

import functools
from typing import Any

import MClientAPI

from muster_gateway.mtemplate import MTemplate
from muster_gateway.template_engine import LIBRARY_DIR, Catalogue, load_catalogue
from muster_proto.jobs.v1 import jobs_pb2


@functools.cache
def catalogue() -> Catalogue:
    return load_catalogue(LIBRARY_DIR, None)


def template(template_id: int) -> MTemplate:
    return catalogue().templates[template_id].template


def attribute(name: str, value: Any) -> jobs_pb2.JobAttribute:
    if isinstance(value, bool):
        return jobs_pb2.JobAttribute(name=name, bool_value=value)
    if isinstance(value, int):
        return jobs_pb2.JobAttribute(name=name, int_value=value)
    if isinstance(value, float):
        return jobs_pb2.JobAttribute(name=name, double_value=value)
    return jobs_pb2.JobAttribute(name=name, string_value=str(value))


def job(
    attributes: dict[str, Any], job_id: int = 7, environment: dict[str, str] | None = None
) -> MClientAPI.MJob:
    return MClientAPI.MJob(
        jobs_pb2.Job(
            id=job_id,
            attributes=[attribute(k, v) for k, v in attributes.items()],
            environment=environment or {},
        )
    )


def chunk(
    start: float, end: float, step: float = 1.0, chunk_id: int = 3, slice_index: int = 0
) -> MClientAPI.MChunk:
    return MClientAPI.MChunk(
        jobs_pb2.Chunk(
            id=chunk_id,
            job_id=7,
            start_frame=start,
            end_frame=end,
            by_frame=step,
            slice_index=slice_index,
        )
    )
