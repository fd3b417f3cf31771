"""The renderclient context: code sent with nodeRunPythonCode to a real agent
and template node callbacks see it, and MInstanceAPI answers there from the
agent's own instances; elsewhere MInstanceAPI answers a wrong-context error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import MClientAPI
import MDispatcherAPI
import MInstanceAPI
import pytest

from muster_agent.template_host import Source, TemplateHost
from muster_gateway import context, errors
from muster_proto.jobs.v1 import jobs_pb2
from muster_services.jobs.templates import COMMAND_LINE_TEMPLATE_ID
from tests.agent.studio_template import SOURCE
from tests.e2e.test_render import eventually
from tests.support import AgentProcess, InProcessServer

AGENT = "instance-probe"
MNode = MClientAPI.MNode

# Run on a node: what its code sees, written where the test reads it.
PROBE = """
import json, muster, MInstanceAPI
err, count = MInstanceAPI.getRunningInstances()
statuses = [MInstanceAPI.getInstanceStatus(n) for n in range(count)]
missing = MInstanceAPI.getInstanceStatus(count)[0]
open({out!r}, "w").write(json.dumps({{
    "context": muster.runningContext(),
    "count": [err.getErrorCode(), count, type(count).__name__],
    "statuses": [[e.getErrorCode(), s] for e, s in statuses],
    "missing": [missing.getErrorCode(), missing.getDescription()],
}}))
"""


@pytest.fixture
def two_instances(
    dispatcher: str, dispatcher_server: InProcessServer, tmp_path: Path
) -> Iterator[dict[int, Any]]:
    """A real agent with two instances, both online: instance number -> MNode."""
    agent = AgentProcess(dispatcher_server.address, AGENT, tmp_path / "agent", instances=2)

    def online() -> dict[int, Any]:
        _, nodes = MDispatcherAPI.nodeGetList()
        mine = {
            n.getInstanceNumber(): n
            for n in nodes
            if n.getHostName()
            and n.getName().startswith(AGENT)
            and n.getStatus() == MNode.kNodeStatusIdle
        }
        return mine if len(mine) == 2 else {}

    try:
        yield eventually(online, what="both instances online")
    finally:
        agent.kill()


def test_node_code_sees_the_renderclient_context_and_the_agents_instances(
    two_instances: dict[int, Any], tmp_path: Path
) -> None:
    # Instance 0 or 1 renders a sleeper; the code runs on the other one.
    started = tmp_path / "started"
    job = MClientAPI.MJob()
    job.setName("sleeper")
    job.setTemplateID(COMMAND_LINE_TEMPLATE_ID)
    job.attributeSetString("executable", "/bin/sh")
    job.attributeSetString("arguments", f"-c 'touch {started}; sleep 60'")
    err, job_id = MDispatcherAPI.jobSubmit(job, "td")
    assert err.getErrorCode() == 0, err.getDescription()
    eventually(started.exists, what="the sleeper started")

    def rendering() -> tuple[int] | None:
        for number, node in two_instances.items():
            _, now = MDispatcherAPI.nodeGet(node.getId())
            if now is not None and now.getJobId() == job_id:
                return (number,)  # a tuple: instance 0 is falsy
        return None

    (busy,) = eventually(rendering, what="a node reports the sleeper")
    idle = 1 - busy
    out = tmp_path / "probe.json"
    err = MDispatcherAPI.nodeRunPythonCode(two_instances[idle].getId(), PROBE.format(out=str(out)))
    assert err.getErrorCode() == 0, err.getDescription()
    seen = json.loads(eventually(lambda: out.exists() and out.read_text(), what="the probe"))
    assert seen["context"] == "renderclient"
    assert seen["count"] == [0, 2, "int"]
    expected = {busy: MInstanceAPI.kInstanceStatusRendering, idle: MInstanceAPI.kInstanceStatusIdle}
    assert seen["statuses"] == [[0, expected[0]], [0, expected[1]]]
    assert MInstanceAPI.kInstanceStatusRendering == MNode.kNodeStatusRendering
    assert seen["missing"][0] == errors.kErrorNotFound
    assert "no instance 2" in seen["missing"][1]
    assert MDispatcherAPI.jobDelete(job_id).getErrorCode() == 0


def test_template_callbacks_see_the_instances_the_agent_reports_at_each_call() -> None:
    host = TemplateHost(timeout=10)
    now = [context.InstanceState(0, context.STATUS_IDLE)]
    host.render_client = lambda: context.render_client_environment(0, now)
    source = SOURCE.replace("self.setID(1701)", "self.setID(1703)").replace(
        'return ["-c", job.attributeGetString("script")]',
        "import muster, MInstanceAPI\n"
        "        err, count = MInstanceAPI.getRunningInstances()\n"
        "        status = MInstanceAPI.getInstanceStatus(0)[1]\n"
        "        return [muster.runningContext(), str(count), str(status)]",
    )
    job = jobs_pb2.Job(id=7, name="probe", template_id=1703).SerializeToString()
    chunk = jobs_pb2.Chunk(id=1, job_id=7, start_frame=1, end_frame=1, by_frame=1)
    try:
        host.load(Source(1703, "v1", source, "probe.py"))
        first = host.begin(1, 1703, "v1", "linux", job, chunk.SerializeToString(), [], 0, {})
        assert first.arguments == ("renderclient", "1", str(context.STATUS_IDLE))
        now.extend([context.InstanceState(1, context.STATUS_IDLE)])
        now[0] = context.InstanceState(0, context.STATUS_RENDERING, 5, 7, 1)
        second = host.begin(2, 1703, "v1", "linux", job, chunk.SerializeToString(), [], 0, {})
        assert second.arguments == ("renderclient", "2", str(context.STATUS_RENDERING))
    finally:
        host.close()


def test_in_the_renderclient_context_bad_input_and_a_silent_agent_are_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(context.RENDER_CLIENT_VARIABLE, raising=False)
    monkeypatch.setenv(context.CONTEXT_VARIABLE, "renderclient")
    err, count = MInstanceAPI.getRunningInstances()
    assert (err.getErrorCode(), count) == (errors.kErrorNotConfigured, 0)
    for name, value in context.render_client_environment(
        3, [context.InstanceState(3, context.STATUS_PAUSED)]
    ).items():
        monkeypatch.setenv(name, value)
    assert MInstanceAPI.getRunningInstances()[1] == 1
    assert MInstanceAPI.getInstanceStatus(3)[1] == MInstanceAPI.kInstanceStatusPaused
    for wrong in ("3", 3.0, True, None):
        err, status = MInstanceAPI.getInstanceStatus(wrong)
        assert (err.getErrorCode(), status) == (errors.kErrorBadArguments, 0), wrong
