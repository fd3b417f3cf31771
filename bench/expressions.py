"""Inline expressions on the node: what muster_agent/actions.py `prepare` adds to a chunk.

The assignment of a command-line job with 10 string attributes and 10
environment variables. Without `<%` anywhere, `prepare` only looks at the
fields (no child process, no Python evaluation); the peer is copying the same
Assignment message once (protobuf CopyFrom), a cost every chunk already pays
several times. With three expressions (an argument, a variable, a pre-chunk
action), `prepare` asks the instance's template host (started and warm, as
it is once the node ran a chunk), and, for comparison, the evaluator's child
process (`python -m muster_gateway.expressions`, how the dispatcher evaluates job
actions); the peer of both is starting /bin/true the way every render
process starts (through muster_agent/launch.py), measured in the same run.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time

from bench.common import BENCHMARKS, Row, median_of
from muster_agent.actions import prepare
from muster_agent.system import launch_command
from muster_agent.template_host import TemplateHost
from muster_proto.agent.v1 import agent_pb2
from muster_proto.jobs.v1 import jobs_pb2

RUNS = 9
PLAIN_RUNS = 2001


def _assignment(expressions: bool) -> agent_pb2.Assignment:
    job = jobs_pb2.Job(id=1, name="shot", template_id=1000)
    for i in range(10):
        job.attributes.add(name=f"item{i}", string_value=f"/shows/demo/shot_{i}.ma -v 100%")
        job.environment[f"VAR{i}"] = f"value {i} with a % sign"
    if expressions:
        job.attributes.add(name="arguments", string_value="-f <%= int(chunk.getStartFrame()) %>")
        job.environment["SHOT"] = "<%= job.getName().upper() %>"
        job.attributes.add(name="pre_chunk_action", string_value="echo %ATTR(job_id)")
    chunk = jobs_pb2.Chunk(id=1, job_id=1, start_frame=1, end_frame=1, by_frame=1)
    return agent_pb2.Assignment(job_id=1, chunk_id=1, job=job, chunk=chunk)


def _prepare_ms(
    assignment: agent_pb2.Assignment, times: int, host: TemplateHost | None = None
) -> float:
    async def body() -> float:
        started = time.perf_counter()
        for _ in range(times):
            await prepare(assignment, 30, host)
        return (time.perf_counter() - started) * 1000 / times

    return asyncio.run(body())


def _copy_ms(assignment: agent_pb2.Assignment, times: int) -> float:
    started = time.perf_counter()
    for _ in range(times):
        agent_pb2.Assignment().CopyFrom(assignment)
    return (time.perf_counter() - started) * 1000 / times


def _launch_ms() -> float:
    read, write = os.pipe()
    started = time.perf_counter()
    subprocess.run(launch_command("/bin/true", [], write), pass_fds=(write,), check=True)
    elapsed = (time.perf_counter() - started) * 1000
    os.close(read)
    os.close(write)
    return elapsed


def run() -> list[Row]:
    plain, coded = _assignment(False), _assignment(True)
    host = TemplateHost(timeout=30)
    try:
        _prepare_ms(coded, 1, host)  # the host starts
        in_host = median_of(RUNS * 3, lambda: _prepare_ms(coded, 1, host))
    finally:
        host.close()
    launch = median_of(RUNS, _launch_ms)
    return [
        Row(
            "prepare, no expressions (20 fields)",
            median_of(RUNS, lambda: _prepare_ms(plain, PLAIN_RUNS)) * 1000,
            median_of(RUNS, lambda: _copy_ms(plain, PLAIN_RUNS)) * 1000,
            "one CopyFrom of the same Assignment",
            "µs",
        ),
        Row(
            "prepare, 3 expressions, in the template host",
            in_host,
            launch,
            "starting /bin/true through the launcher",
            "ms",
        ),
        Row(
            "prepare, 3 expressions, in a child process",
            median_of(RUNS, lambda: _prepare_ms(coded, 1)),
            launch,
            "starting /bin/true through the launcher",
            "ms",
        ),
    ]


BENCHMARKS["inline expressions"] = run
