"""A render node's processes die with its agent, and the next agent on the
same work folder reports the run that was cut short."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from muster_agent.state import StateStore
from muster_agent.system import group_members
from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2_grpc
from tests.e2e.conftest import online_nodes
from tests.e2e.test_render import completed_history, eventually, shell_job
from tests.support import DispatcherProcess

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_a_sigkilled_agent_takes_its_chunk_s_whole_process_group_and_the_next_reports_it(
    dispatcher: DispatcherProcess,
    jobs: jobs_pb2_grpc.JobsServiceStub,
    nodes: nodes_pb2_grpc.NodesServiceStub,
    start_agent: Callable[..., Any],
    shared_tmp: Path,
) -> None:
    work_dir = shared_tmp / "agents" / "e2e-crash"
    marker = shared_tmp / "first-run"
    # The first run leaves a process in the background and waits; a later one ends at once.
    each = f"if [ -e {marker} ]; then exit 0; fi; touch {marker}; sleep 60 & sleep 60"
    victim = start_agent("e2e-crash")
    eventually(lambda: len(online_nodes(nodes)) == 1, what="agent online")
    job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=shell_job("crash", 1, 1, each))).job_id

    def started() -> Any:
        chunk = StateStore(work_dir, dispatcher.address).running_chunk(0)
        return chunk if chunk is not None and chunk.pid else None

    running = eventually(started, what="chunk's process group recorded")
    pgid = running.pid

    def whole_group() -> list[int] | None:
        # The launcher, the chunk's shell and its two sleeps.
        members = group_members(pgid) or []
        return members if len(members) >= 4 else None

    members = eventually(whole_group, what="the chunk's processes started")

    victim.kill()  # SIGKILL: nothing of the agent's own code runs
    killed = time.monotonic()
    while group_members(pgid) and time.monotonic() - killed < 2.0:
        time.sleep(0.02)
    assert group_members(pgid) == [], f"alive 2 s after the agent's SIGKILL (of {members})"

    # An agent started again on the same work folder reports the cut-short run
    # with its own token; the chunk is rendered again and the job completes.
    start_agent("e2e-crash")
    history = completed_history(jobs, job_id, "job completed after the restart")
    first = [r for r in history if r.fencing_token == running.fencing_token]
    assert len(first) == 1
    # FAILED with the agent's word when its report arrives first; LOST when the
    # dispatcher ended the unconfirmed assignment on the new registration first.
    assert (first[0].outcome, first[0].message) in {
        (common_pb2.CHUNK_RUN_OUTCOME_FAILED, "the agent stopped while this chunk ran"),
    } or first[0].outcome == common_pb2.CHUNK_RUN_OUTCOME_LOST, first[0]
    assert history[-1].outcome == common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED
    assert len(history) == 2
    log = (work_dir / "agent.log").read_text()
    assert f"(token {running.fencing_token}) was running when the agent stopped" in log
