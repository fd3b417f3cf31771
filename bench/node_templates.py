"""Building a chunk's command on the node through a Python template.

Ours: the agent's template host (agent/template_host.py, a separate process
reached over JSON lines) builds the command of one chunk with a Python
`MTemplateAPI` command-line template, after the first chunk (the code is
loaded once per version). Peer, in the same run: the old in-process token
builder `services.jobs.templates.build_command` for the same command. The
issue asks for a median under 1 ms per chunk.
"""

from __future__ import annotations

import time
from statistics import median

from agent.template_host import Source, TemplateHost
from bench.common import BENCHMARKS, Row
from farm.jobs.v1 import jobs_pb2
from services.jobs.domain import Attribute
from services.jobs.templates import COMMAND_LINE, ChunkInput, JobInput, build_command

CHUNKS = 2000
ROUNDS = 5
EXECUTABLE = "/bin/sh"
ARGUMENTS = "-c 'echo {start} {end} {step}'"

# The command-line template as an MTemplateAPI file: what the peer's tokens do.
SOURCE = r"""
import shlex

import MTemplateAPI


def _frame(value):
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class CommandLine(MTemplateAPI.MTemplate):
    def __init__(self):
        MTemplateAPI.MTemplate.__init__(self)
        self.setID(1000)
        self.setName("Command line")
        self.setTemplateLogic(MTemplateAPI.kTemplateMultiframe)
        for section in (self.platformLinux, self.platformWindows, self.platformMac):
            section.setPlatformEnabled(True)

    def onGetApplicationPath(self, job, clientTemplatePreferences, pathOut):
        pathOut.setString(job.attributeGetString("executable"))
        return MTemplateAPI.MTemplateError()

    def onGetApplicationStartingFolder(self, job, clientTemplatePreferences, pathOut):
        pathOut.setString(job.attributeGetString("working_folder"))
        return MTemplateAPI.MTemplateError()

    def onBuildCommandLine(self, platform, job, chunk, clientTemplatePreferences, instanceNum):
        frames = {
            "start": _frame(chunk.getStartFrame()),
            "end": _frame(chunk.getEndFrame()),
            "step": _frame(job.getByFrame() or 1),
        }
        text = job.attributeGetString("arguments")
        for name, value in frames.items():
            text = text.replace("{" + name + "}", value)
        return shlex.split(text)


MTemplateAPI.MManager.getUniqueClass().installPyTemplate(CommandLine())
"""


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
        host.load(Source(1000, "bench", SOURCE, "command_line.py"))
        first = host.begin(0, 1000, "bench", "linux", job, chunks[0], [], 0, {"SHOT": "010"})
        peer_job = JobInput(
            id=1,
            attributes=(
                Attribute("executable", "string", EXECUTABLE),
                Attribute("arguments", "string", ARGUMENTS),
            ),
            environment={"SHOT": "010"},
        )
        peer_first = build_command(COMMAND_LINE, peer_job, ChunkInput(1, 1, 10), "linux")
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
                host.begin(token, 1000, "bench", "linux", job, chunk, [], 0, {"SHOT": "010"})
                host.forget(token)
            # begin + forget: what a chunk costs the host (its end is judged apart).
            ours.append((time.perf_counter() - started) / CHUNKS * 1e6)
            started = time.perf_counter()
            for number in range(1, CHUNKS + 1):
                build_command(
                    COMMAND_LINE, peer_job, ChunkInput(number, number, number + 9), "linux"
                )
            peer.append((time.perf_counter() - started) / CHUNKS * 1e6)
    finally:
        host.close()
    return [
        Row(
            "a chunk's command built through a Python template in the node's template host"
            " (after the first; must be < 1,000 µs)",
            median(ours),
            median(peer),
            "in-process token builder services.jobs.templates.build_command, same command",
            "µs/chunk",
        )
    ]


BENCHMARKS["node templates"] = run
