"""Muster's render-client side on a real agent: a studio template's node
callback (onBuildCommandLine) runs in the renderclient context and asks
MInstanceAPI about the agent's instances; the command it builds says what it
saw. (nodeRunPythonCode's side: tests/gateway/test_render_client.py.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from muster_gateway import context
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2_grpc
from tests.agent.studio_template import SOURCE
from tests.e2e.conftest import online_nodes
from tests.e2e.test_render import eventually, job_status
from tests.e2e.test_template_node import studio_job

TEMPLATE_ID = 1704
# The studio template, its command line built from what MInstanceAPI answers.
PROBE_SOURCE = SOURCE.replace("self.setID(1701)", f"self.setID({TEMPLATE_ID})").replace(
    'return ["-c", job.attributeGetString("script")]',
    "import muster, MInstanceAPI\n"
    "        err, count = MInstanceAPI.getRunningInstances()\n"
    "        seen = [muster.runningContext(), type(count).__name__, str(count)]\n"
    "        seen += [str(MInstanceAPI.getInstanceStatus(n)[1]) for n in range(count)]\n"
    '        return ["-c", "echo " + " ".join(seen) + " >> " + job.attributeGetString("out")]',
)


def test_template_callbacks_on_a_node_see_the_renderclient_context_and_its_instances(
    jobs: jobs_pb2_grpc.JobsServiceStub,
    nodes: nodes_pb2_grpc.NodesServiceStub,
    start_agent: Callable[..., Any],
    shared_tmp: Path,
    templates_dir: Path,
) -> None:
    (templates_dir / "instance_probe.py").write_text(PROBE_SOURCE)

    def loaded() -> bool:
        try:
            jobs.GetTemplate(jobs_pb2.GetTemplateRequest(template_id=TEMPLATE_ID))
        except grpc.RpcError:
            return False
        return True

    eventually(loaded, 30, "the probe template loaded")
    start_agent("probe-node", instances=2)
    eventually(lambda: len(online_nodes(nodes)) == 2, what="both instances online")
    out = shared_tmp / "seen.txt"
    job = studio_job("probe", 1, 1, "unused", out=str(out))
    job.template_id = TEMPLATE_ID
    job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=job)).job_id
    eventually(
        lambda: job_status(jobs, job_id) == jobs_pb2.JOB_STATUS_COMPLETED,
        timeout=90,
        what="the probe job rendered",
    )
    context_name, kind, count, *statuses = out.read_text().split()
    assert (context_name, kind, count) == ("renderclient", "int", "2")
    # The instance building the command is rendering it; the other one idles.
    assert sorted(statuses) == sorted([str(context.STATUS_RENDERING), str(context.STATUS_IDLE)])
