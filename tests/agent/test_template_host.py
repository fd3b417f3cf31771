"""The template host: a real `python -m muster_agent.template_host` process running
a studio template's callbacks, as the agent drives it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from muster_agent.template_host import Source, Started, TemplateFailed, TemplateHost
from muster_proto.jobs.v1 import jobs_pb2
from tests.agent.studio_template import SOURCE

VERSION = "v1"


def job_bytes(**attributes: str) -> bytes:
    job = jobs_pb2.Job(id=7, name="studio", template_id=1701)
    for name, value in attributes.items():
        job.attributes.add(name=name, string_value=value)
    return job.SerializeToString()


def chunk_bytes(start: float = 1, end: float = 4) -> bytes:
    return jobs_pb2.Chunk(
        id=1, job_id=7, start_frame=start, end_frame=end, by_frame=1
    ).SerializeToString()


@pytest.fixture
def host() -> Iterator[TemplateHost]:
    host = TemplateHost(timeout=5)
    host.load(Source(1701, VERSION, SOURCE, "studio_shell.py"))
    yield host
    host.close()


def begin(
    host: TemplateHost, run: int, layers: list[dict[str, str]] | None = None, **attributes: str
) -> Started:
    return host.begin(
        run,
        1701,
        VERSION,
        "linux",
        job_bytes(script="echo hi", **attributes),
        chunk_bytes(),
        layers or [],
        0,
        {"JOB_VAR": "1"},
    )


def test_the_command_is_built_by_the_template_in_the_host(host: TemplateHost) -> None:
    started = begin(host, 1)
    assert started.executable == "/bin/sh"
    assert started.arguments == ("-c", "echo hi")
    assert started.environment["FIRST_FRAME"] == "1"
    assert started.environment["LAST_FRAME"] == "4"
    assert started.environment["JOB_VAR"] == "1"
    assert started.frames == 4
    assert started.frame_done_regexes == (r"^Frame \d+ done",)
    assert started.checks_log


def test_preference_layers_default_then_agent_then_administrator(host: TemplateHost) -> None:
    assert begin(host, 1).environment["RENDERER_NAME"] == "default-renderer"
    agent_layer = {"RENDERER_NAME": "agent-value", "SHELL_PATH": "/bin/bash"}
    started = begin(host, 2, [agent_layer])
    assert (started.environment["RENDERER_NAME"], started.executable) == (
        "agent-value",
        "/bin/bash",
    )
    started = begin(host, 3, [agent_layer, {"RENDERER_NAME": "admin-value"}])
    assert (started.environment["RENDERER_NAME"], started.executable) == (
        "admin-value",
        "/bin/bash",
    )


def test_a_callback_that_raises_answers_its_traceback(host: TemplateHost) -> None:
    with pytest.raises(TemplateFailed) as failed:
        begin(host, 1, None, **{"raise": "onBuildCommandLine"})
    text = str(failed.value)
    assert "onBuildCommandLine raised" in text
    assert "Traceback" in text and "RuntimeError: onBuildCommandLine exploded on purpose" in text
    assert "studio_shell.py" in text  # the template file's name in the frames
    # The host lives on: the next call works without a restart.
    assert begin(host, 2).executable == "/bin/sh"
    assert host.starts == 1


def test_a_callback_that_hangs_is_stopped_and_the_host_restarted(host: TemplateHost) -> None:
    host.timeout = 1.0
    started = time.monotonic()
    with pytest.raises(TemplateFailed, match="no answer within 1s"):
        begin(host, 1, hang="onGetApplicationPath")
    assert time.monotonic() - started < 5
    # A new host, with the version loaded again, answers the next call.
    assert begin(host, 2).executable == "/bin/sh"
    assert host.starts == 2


def test_abort_while_running_and_the_judged_outcomes(host: TemplateHost) -> None:
    begin(host, 1)
    assert host.check(1, "Frame 1 done\nall fine\n") is None
    verdict = host.check(1, "ABORT: licence server gone\n")
    assert verdict is not None and verdict.abort and "licence server gone" in verdict.message
    assert host.end(1, "Frame 1 done\n", 0, 1).outcome == "succeeded"
    begin(host, 2)
    verdict = host.end(2, "WARNING: missing texture\n", 0, 1)
    assert (verdict.outcome, verdict.message) == (
        "warnings",
        "warning in log: WARNING: missing texture",
    )
    begin(host, 3)
    verdict = host.end(3, "ERROR: scene not found\n", 0, 1)
    assert (verdict.outcome, verdict.message) == ("failed", "error in log: ERROR: scene not found")
    begin(host, 4)
    assert host.end(4, "", 3, 1).outcome == "succeeded"  # 3 is a success for this template
    begin(host, 5)
    assert host.end(5, "", 1, 1).outcome == "failed"
    # The job's logs error check: skip all log checks.
    begin(host, 6)
    assert host.end(6, "ERROR: ignored\n", 0, 3).outcome == "succeeded"
    # An ended run is forgotten.
    with pytest.raises(TemplateFailed, match="KeyError"):
        host.check(6, "more")


def test_the_running_context_is_renderclient_and_custom_messages_reach_the_template(
    host: TemplateHost, caplog: pytest.LogCaptureFixture
) -> None:
    source = SOURCE.replace("self.setID(1701)", "self.setID(1702)").replace(
        'return ["-c", job.attributeGetString("script")]',
        'import muster\n        return ["-c", muster.runningContext()]',
    )
    host.load(Source(1702, "v2", source, "probe.py"))
    started = host.begin(1, 1702, "v2", "linux", job_bytes(), chunk_bytes(), [], 0, {})
    assert started.arguments == ("-c", "renderclient")
    with caplog.at_level("INFO", logger="muster-agent"):
        assert host.message(1701, "hello node")
        assert not host.message(9999, "nobody")
        deadline = time.monotonic() + 5
        while "custom message for 1701: hello node" not in caplog.text:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.05)


def test_the_warm_host_runs_a_template_without_grpc_loaded(host: TemplateHost) -> None:
    """The host gives templates MJob and MChunk without importing MClientAPI
    and with it the client library and gRPC (about 19 MB of a host's memory):
    a template that imports MClientAPI loads them itself."""
    begin(host, 1)
    host.end(1, "hi\n", 0, 0)
    proc = host._worker._proc
    assert proc is not None and proc.poll() is None
    maps = Path(f"/proc/{proc.pid}/maps").read_text()
    assert "cygrpc" not in maps
    assert "_upb" in maps  # the job and the chunk are protobuf messages: the probe sees the host
