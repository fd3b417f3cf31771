"""Building a chunk's command on the node through a Python template.

Ours: the agent's template host (muster_agent/template_host.py, a separate process
reached over JSON lines) builds the command of one chunk with the built-in
command-line template (muster_services/jobs/library/command_line.py, a Python
`MTemplateAPI` file), after the first chunk (the code is
loaded once per version). Peer, in the same run: the same template's
callbacks called in this process (`muster_gateway.template_engine.build_command`,
no host process), which the host adds its process hop to. The issue asks for
a median under 1 ms per chunk.
"""

from __future__ import annotations

import time
from statistics import median

from bench.common import BENCHMARKS, Row
from muster_agent.template_host import Source, TemplateHost
from muster_gateway import template_engine
from muster_gateway.objects import MChunk, MJob
from muster_gateway.template_engine import LIBRARY_DIR, load_source, version_of
from muster_proto.jobs.v1 import jobs_pb2

CHUNKS = 2000
ROUNDS = 5
EXECUTABLE = "/bin/sh"
ARGUMENTS = "-c 'echo {start} {end} {step}'"

# The built-in command-line template (1000) as shipped: an MTemplateAPI file.
SOURCE_PATH = LIBRARY_DIR / "command_line.py"


def _job() -> bytes:
    job = jobs_pb2.Job(id=1, name="bench", template_id=1000, by_frame=1)
    job.attributes.add(name="executable", string_value=EXECUTABLE)
    job.attributes.add(name="arguments", string_value=ARGUMENTS)
    job.environment["SHOT"] = "010"
    return job.SerializeToString()


def _chunk(number: int) -> bytes:
    return jobs_pb2.Chunk(
        id=number, job_id=1, start_frame=number, end_frame=number + 9, by_frame=1
    ).SerializeToString()


def run() -> list[Row]:
    host = TemplateHost(timeout=30)
    job = _job()
    chunks = [_chunk(n) for n in range(1, CHUNKS + 1)]
    try:
        source = SOURCE_PATH.read_text()
        version = version_of(source)
        host.load(Source(1000, version, source, str(SOURCE_PATH)))
        first = host.begin(0, 1000, version, "linux", job, chunks[0], [], 0, {"SHOT": "010"})
        (template,) = load_source(source, str(SOURCE_PATH))
        peer_job = MJob(jobs_pb2.Job.FromString(job))
        peer_chunks = [MChunk(jobs_pb2.Chunk.FromString(c)) for c in chunks]
        prefs = template_engine.preferences(template, "linux")

        def in_process(chunk: MChunk) -> template_engine.BuiltCommand:
            return template_engine.build_command(
                template, "linux", peer_job, chunk, prefs, 0, {"SHOT": "010"}
            )

        peer_first = in_process(peer_chunks[0])
        # The same command both ways.
        assert (first.executable, first.arguments) == (
            peer_first.executable,
            peer_first.arguments,
        ), (first, peer_first)
        ours, peer = [], []
        token = 0
        for _ in range(ROUNDS):  # interleaved, so drift hits both sides alike
            started = time.perf_counter()
            for chunk in chunks:
                token += 1
                host.begin(token, 1000, version, "linux", job, chunk, [], 0, {"SHOT": "010"})
                host.forget(token)
            # begin + forget: what a chunk costs the host (its end is judged apart).
            ours.append((time.perf_counter() - started) / CHUNKS * 1e6)
            started = time.perf_counter()
            for peer_chunk in peer_chunks:
                in_process(peer_chunk)
            peer.append((time.perf_counter() - started) / CHUNKS * 1e6)
    finally:
        host.close()
    return [
        Row(
            "a chunk's command built through a Python template in the node's template host"
            " (after the first; must be < 1,000 µs)",
            median(ours),
            median(peer),
            "the same template's callbacks called in-process (no host), same command",
            "µs/chunk",
        )
    ]


BENCHMARKS["node templates"] = run
