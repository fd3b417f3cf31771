"""Custom actions and inline expressions end to end: the real dispatcher, a
real agent and real shell commands (docs/jobs.md, "Custom actions and
inline expressions")."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2_grpc
from muster_services.core.database import Database
from muster_services.jobs.actions import job_action_runs
from tests.e2e.conftest import online_nodes
from tests.e2e.test_render import eventually, job_status, shell_job
from tests.e2e.test_template_node import first_run, run_log


def with_attributes(job: Any, **attributes: str) -> Any:
    job.attributes.extend(
        jobs_pb2.JobAttribute(name=k, string_value=v) for k, v in attributes.items()
    )
    return job


def action_rows(database_url: str, job_id: int) -> list[Any]:
    db = Database(database_url, pool_size=1)
    try:
        with db.read_session() as session:
            return job_action_runs(session, job_id)
    finally:
        db.dispose()


@pytest.fixture
def node(nodes: nodes_pb2_grpc.NodesServiceStub, start_agent: Callable[..., Any]) -> None:
    """One agent, online."""
    start_agent("actions-node")
    eventually(lambda: len(online_nodes(nodes)) == 1, what="agent online")


@pytest.mark.usefixtures("node")
def test_actions_run_around_chunks_and_jobs_with_expressions_evaluated(
    database_url: str, jobs: jobs_pb2_grpc.JobsServiceStub, shared_tmp: Path
) -> None:
    out, job_out = shared_tmp / "order.txt", shared_tmp / "job-actions.txt"
    frame = "<%= int(chunk.getStartFrame()) %>"
    # Plain text passes untouched: no %ATTR or escapes outside actions.
    plain = r"100% \; %ATTR(job_id) done"
    job = shell_job(
        "actions",
        2,
        1,
        f'echo "render $TAG {frame} $PLAIN" >> {out}',
        environment={
            "TAG": "tag-<% muster.expressionPrint(job.getName().upper()) %>",
            "PLAIN": plain,
        },
    )
    job = with_attributes(
        job,
        pre_chunk_action=f"echo pre {frame} >> {out}",
        post_chunk_action=f"echo post %ATTR(job_id) {frame} '\\%ATTR(x)' >> {out}",
        pre_job_action=f"echo started <%= job.getName() %> >> {job_out}",
        post_job_action=f"echo done %ATTR(job_id) <%= muster.runningContext() %> >> {job_out}",
    )
    job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=job)).job_id
    # Stored and shown as the job's attributes.
    shown = jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id)).job
    assert {a.name: a.string_value for a in shown.attributes}["pre_chunk_action"].startswith(
        "echo pre <%="
    )
    eventually(
        lambda: job_status(jobs, job_id) == jobs_pb2.JOB_STATUS_COMPLETED,
        timeout=90,
        what="the job completed",
    )
    # Each chunk: its pre action, its render, its post action, in that order
    # (the lines of one chunk never mix with the other's on one node).
    lines = out.read_text().splitlines()
    by_frame = sorted((lines[i : i + 3] for i in range(0, len(lines), 3)), key=lambda c: c[0])
    assert by_frame == [
        ["pre 1", f"render tag-ACTIONS 1 {plain}", f"post {job_id} 1 %ATTR(x)"],
        ["pre 2", f"render tag-ACTIONS 2 {plain}", f"post {job_id} 2 %ATTR(x)"],
    ], lines
    # The action lines are in the chunk's log, between agent lines.
    log = run_log(database_url, job_id)
    assert "pre-chunk action: echo pre 1 >> " in log
    assert "post-chunk action succeeded" in log
    # The job actions ran on the dispatcher, once each (the post-job one in
    # the dispatcher context, with %ATTR and the expression expanded).
    eventually(
        lambda: len([r for r in action_rows(database_url, job_id) if r.status != "running"]) == 2,
        what="both job actions ended",
    )
    assert job_out.read_text().splitlines() == ["started actions", f"done {job_id} dispatcher"]
    rows = action_rows(database_url, job_id)
    assert [(r.kind, r.status, r.exit_code) for r in rows] == [
        ("pre_job", "succeeded", 0),
        ("post_job", "succeeded", 0),
    ]
    assert rows[1].command.startswith("echo done %ATTR(job_id) <%=")


@pytest.mark.usefixtures("node")
def test_a_failing_action_or_a_raising_expression_fails_the_chunk_without_rendering(
    database_url: str, jobs: jobs_pb2_grpc.JobsServiceStub, shared_tmp: Path
) -> None:
    rendered = shared_tmp / "rendered.txt"

    # A failing pre-chunk action: the chunk fails, the render never runs; a
    # failing pre-job action pauses the job.
    failing = with_attributes(
        shell_job("pre-fails", 1, 1, f"echo rendered >> {rendered}"),
        pre_chunk_action="echo checking the scene; exit 3",
        pre_job_action="echo no licence >&2; exit 5",
    )
    job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=failing)).job_id
    eventually(
        lambda: jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id)).job.paused,
        what="the job paused by its failing pre-job action",
    )
    [row] = action_rows(database_url, job_id)
    assert (row.kind, row.status, row.exit_code, row.output) == (
        "pre_job",
        "failed",
        5,
        "no licence\n",
    )
    run = first_run(jobs, job_id, "the failing pre-chunk action's run")
    assert (run.outcome, run.message) == (
        common_pb2.CHUNK_RUN_OUTCOME_FAILED,
        "pre-chunk action failed: exit code 3",
    )
    log = eventually(lambda: run_log(database_url, job_id), what="its log")
    assert "checking the scene" in log and "pre-chunk action failed: exit code 3" in log
    assert "starting /bin/sh" not in log
    assert not rendered.exists()

    # An expression that raises (in a command-line field) fails the chunk
    # with its traceback in the chunk's log; nothing renders.
    raising = shell_job(
        "raising", 1, 1, f"echo <%= 1 // (chunk.getId() - chunk.getId()) %> >> {rendered}"
    )
    job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=raising)).job_id
    run = first_run(jobs, job_id, "the raising expression's run")
    assert run.outcome == common_pb2.CHUNK_RUN_OUTCOME_FAILED
    assert "job.attributes[arguments]: the expression at offset" in run.message, run.message
    assert "ZeroDivisionError" in run.message
    log = eventually(lambda: run_log(database_url, job_id), what="its log")
    assert "Traceback (most recent call last)" in log, log
    assert "1 // (chunk.getId() - chunk.getId())" in log
    assert not rendered.exists()

    # A failing post-chunk action fails a chunk that rendered.
    post = with_attributes(
        shell_job("post-fails", 1, 1, f"echo rendered >> {rendered}"),
        post_chunk_action="exit 4",
    )
    job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=post)).job_id
    run = first_run(jobs, job_id, "the failing post-chunk action's run")
    assert (run.outcome, run.message) == (
        common_pb2.CHUNK_RUN_OUTCOME_FAILED,
        "post-chunk action failed: exit code 4",
    )
    # It rendered (again, maybe, if its retry came before the job's deletion).
    assert set(rendered.read_text().splitlines()) == {"rendered"}


def test_an_expression_that_cannot_compile_is_refused_at_submission(
    jobs: jobs_pb2_grpc.JobsServiceStub,
) -> None:
    bad = with_attributes(shell_job("bad", 1, 1, "echo x"), post_job_action="echo <%= job. %>")
    with pytest.raises(grpc.RpcError) as caught:
        jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=bad))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "job.attributes[post_job_action]" in str(caught.value.details())
    assert [j for j in jobs.ListJobs(jobs_pb2.ListJobsRequest()).jobs if j.name == "bad"] == []
