"""Progress of running chunks (ChunkRunsService.ReportChunkProgress's rule) on
a real database: the live token sets it, an assigned chunk becomes running,
a stale token or a bad value changes nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from muster_services.core.database import Database
from muster_services.core.errors import InvalidArgument
from muster_services.jobs.domain import Attribute, JobSpec
from muster_services.jobs.runs import ChunkRuns, RunEnd, report_progress
from muster_services.jobs.scheduler import Scheduler
from muster_services.jobs.service import JobsService
from muster_services.jobs.templates import COMMAND_LINE_TEMPLATE_ID


def chunks(db: Database, job: int) -> dict[int, tuple[str, float]]:
    with db.transaction() as session:
        return {
            int(n): (str(s), float(p))
            for n, s, p in session.execute(
                text("SELECT chunk_number, status, progress FROM chunks WHERE job_id = :j"),
                {"j": job},
            ).all()
        }


def test_progress_follows_the_live_token_only(db: Database) -> None:
    jobs = JobsService(db)
    jobs.templates.seed_templates()
    spec = JobSpec(
        name="job",
        owner="alice",
        template_id=COMMAND_LINE_TEMPLATE_ID,
        start_frame=1,
        end_frame=2,
        attributes=(Attribute("executable", "string", "/bin/true"),),
    )
    job = int(jobs.queue.submit_job(spec).id)
    with db.transaction() as session:
        for name in ("a", "b"):
            session.execute(
                text(
                    "INSERT INTO nodes (name, host_name, platform, status, pools, session_id,"
                    " last_heartbeat_at) VALUES (:n, :n, 'linux', 'idle', '{}', 'live', now())"
                ),
                {"n": name},
            )
    assert Scheduler(db).tick() == 2
    with db.transaction() as session:
        live = {
            int(c): (int(t), int(n))
            for c, t, n in session.execute(
                text("SELECT chunk_number, fencing_token, node_id FROM chunk_assignments")
            ).all()
        }
    (token_1, node_1), (token_2, _) = live[1], live[2]
    assert chunks(db, job) == {1: ("assigned", 0.0), 2: ("assigned", 0.0)}

    # The start report (0) makes the chunk running; the newest report of a batch wins.
    assert report_progress(db, [(job, 1, token_1, 0.0)]) == 1
    assert report_progress(db, [(job, 2, token_2, 10.0), (job, 2, token_2, 40.0)]) == 1
    assert chunks(db, job) == {1: ("running", 0.0), 2: ("running", 40.0)}
    # Stale or unknown tokens, unknown jobs: nothing changes.
    assert report_progress(db, [(job, 1, token_2, 90.0), (job, 1, 0, 90.0)]) == 0
    assert report_progress(db, [(job + 100, 1, token_1, 90.0), (job, 1, 2**64 - 1, 9.0)]) == 0
    # Bad values are refused whole.
    for bad in (-1.0, 100.5, float("nan")):
        with pytest.raises(InvalidArgument, match="0-100"):
            report_progress(db, [(job, 1, token_1, 50.0), (job, 1, token_1, bad)])
    with pytest.raises(InvalidArgument, match="at most 1000"):
        report_progress(db, [(job, 1, token_1, 1.0)] * 1001)
    assert chunks(db, job) == {1: ("running", 0.0), 2: ("running", 40.0)}
    # Once the run ended, a late report changes nothing.
    ChunkRuns(db).finish(RunEnd(job, 1, token_1, node_1, 0, "succeeded"))
    assert report_progress(db, [(job, 1, token_1, 50.0)]) == 0
    assert chunks(db, job)[1][0] == "completed"
