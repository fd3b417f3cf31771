"""A licence cap end to end: the dispatcher, one agent with 6 node instances,
real commands; audited from the chunk run history."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2_grpc
from tests.e2e.conftest import online_nodes
from tests.e2e.test_render import completed_history, eventually

GROUP = "e2e-licence"


def most_at_once(spans: list[tuple[datetime, datetime]]) -> int:
    """The largest number of spans open at one moment (an end before a start
    at the same instant)."""
    moments = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, step in moments:
        running += step
        peak = max(peak, running)
    return peak


def test_most_at_once_counts_overlaps_only() -> None:
    t = [datetime(2026, 1, 1, 0, 0, s) for s in range(6)]
    assert most_at_once([(t[0], t[2]), (t[1], t[3]), (t[2], t[4])]) == 2
    assert most_at_once([(t[0], t[5]), (t[1], t[2]), (t[3], t[4])]) == 2
    assert most_at_once([(t[0], t[1]), (t[1], t[2])]) == 1


LICENSED_TEMPLATE_ID = 160

LICENSED_TEMPLATE = f"""
import MTemplateAPI


class Licensed(MTemplateAPI.MTemplate):
    def __init__(self):
        MTemplateAPI.MTemplate.__init__(self)
        self.setID({LICENSED_TEMPLATE_ID})
        self.setName("Licensed renderer")
        self.setLicensesGroup("{GROUP}")
        self.setMaximumLicenses(2)
        self.platformLinux.setPlatformEnabled(1)

    def onGetApplicationPath(self, job, clientTemplatePreferences, pathOut):
        pathOut.setString("/bin/sh")
        return MTemplateAPI.MTemplateError()

    def onBuildCommandLine(self, platform, job, chunk, clientTemplatePreferences, instanceNum):
        frame = int(chunk.getStartFrame())
        out = job.attributeGetString("out")
        return ["-c", "sleep 1; echo rendered >> %s/frame_%d.txt" % (out, frame)]


MTemplateAPI.MManager.getUniqueClass().installPyTemplate(Licensed())
"""


def test_six_nodes_a_cap_of_two_a_twelve_chunk_job_never_more_than_two_at_once(
    jobs: jobs_pb2_grpc.JobsServiceStub,
    nodes: nodes_pb2_grpc.NodesServiceStub,
    start_agent: Callable[..., Any],
    shared_tmp: Path,
    templates_dir: Path,
) -> None:
    # The studio template file names the group and its cap of 2.
    (templates_dir / "licensed.py").write_text(LICENSED_TEMPLATE)

    def group() -> jobs_pb2.TemplateGroup | None:
        listed = jobs.ListTemplateGroups(jobs_pb2.ListTemplateGroupsRequest()).groups
        return next((g for g in listed if g.name == GROUP and g.effective_value == 2), None)

    found = eventually(group, 30, "the studio template's licence group")
    assert list(found.template_ids) == [LICENSED_TEMPLATE_ID]

    out = shared_tmp / "frames"
    out.mkdir()
    start_agent("e2e-lic", instances=6)
    eventually(lambda: len(online_nodes(nodes)) == 6, what="6 node instances online")
    job = jobs_pb2.Job(
        name="licensed",
        owner="alice",
        parent_id=-1,
        template_id=LICENSED_TEMPLATE_ID,
        start_frame=1,
        end_frame=12,
        by_frame=1,
        packet_size=1,
        priority=50,
        attributes=[jobs_pb2.JobAttribute(name="out", string_value=str(out))],
    )
    job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=job)).job_id

    runs = completed_history(jobs, job_id, "the 12-chunk job completed")
    assert sorted(r.chunk_id for r in runs) == list(range(1, 13))
    assert {r.outcome for r in runs} == {common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED}
    assert len(list(out.glob("frame_*.txt"))) == 12
    spans = [(r.start_time.ToDatetime(), r.end_time.ToDatetime()) for r in runs]
    assert most_at_once(spans) == 2  # never more than the cap, and the cap was used
