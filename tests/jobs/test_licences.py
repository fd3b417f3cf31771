"""Licence and delay groups of templates: the scheduler's tick on a real
database, the rules alone, and the two RPCs over a real gRPC server."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from sqlalchemy import text

from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_services.core.database import Database
from muster_services.core.errors import InvalidArgument
from muster_services.jobs.licences import DELAY, LICENSES, GroupState, TickBudget, file_value
from muster_services.jobs.scheduler import Scheduler
from muster_services.jobs.service import JobsService
from muster_services.jobs.store import TEMPLATE_GROUPS_LOCK_KEY
from muster_services.jobs.templates import BLENDER_TEMPLATE_ID, COMMAND_LINE_TEMPLATE_ID
from tests.jobs.test_scheduler import _assigned, _end, _job, _node, jobs
from tests.support import until_lock_wait

__all__ = ["jobs"]  # the fixture

LICENCE = jobs_pb2.TEMPLATE_GROUP_KIND_LICENSES
DELAY_KIND = jobs_pb2.TEMPLATE_GROUP_KIND_DELAY


def _group(db: Database, template_id: int, **columns: object) -> None:
    """Set a template's group columns as its file would."""
    assignments = ", ".join(f"{name} = :{name}" for name in columns)
    with db.transaction() as session:
        session.execute(
            text(f"UPDATE templates SET {assignments} WHERE id = :id"),
            {"id": template_id, **columns},
        )


def _nodes(db: Database, count: int) -> list[int]:
    return [_node(db, f"n{i}") for i in range(count)]


def _blender_job(jobs: JobsService, db: Database, **fields: object) -> int:
    """A job of the second built-in template (its attributes do not matter
    here: the scheduler only reads the template id)."""
    job = _job(jobs, **fields)  # type: ignore[arg-type]
    with db.transaction() as session:
        session.execute(
            text("UPDATE jobs SET template_id = :t WHERE id = :j"),
            {"t": BLENDER_TEMPLATE_ID, "j": job},
        )
    return job


def _override(jobs: JobsService, kind: str, name: str, value: int | None) -> GroupState:
    return jobs.template_groups.set_limit(kind, name, value)


# --- the rules alone -------------------------------------------------------------------


def test_the_files_value_is_the_smallest_non_zero_cap_and_the_largest_delay() -> None:
    assert file_value(LICENSES, [0, 5, 2, 0]) == 2
    assert file_value(LICENSES, [0, 0]) == 0
    assert file_value(DELAY, [0, 3, 1]) == 3
    assert file_value(DELAY, []) == 0


def test_a_budget_counts_the_chunks_planned_in_the_tick() -> None:
    lic = GroupState(LICENSES, "arnold", (7, 8), 3, None, 1, None, None)
    budget = TickBudget([lic])
    assert budget.allowance(7, 10) == 2
    budget.consume(7, 1)
    assert budget.allowance(8, 10) == 1  # shared by both templates
    budget.consume(8, 1)
    assert budget.allowance(7, 10) == 0
    assert budget.allowance(9, 10) == 10  # not in a group
    assert budget.allowance(None, 4) == 4
    assert not TickBudget() and budget


def test_set_limit_refuses_bad_input_and_changes_nothing(db: Database, jobs: JobsService) -> None:
    for kind, name, value in ((LICENSES, "", 1), (LICENSES, "  ", 1), (DELAY, "d", -1)):
        with pytest.raises(InvalidArgument):
            _override(jobs, kind, name, value)
    assert jobs.template_groups.list_groups() == []


# --- licence groups in the scheduler's tick -------------------------------------------------


def test_the_cap_holds_within_a_tick_and_across_ticks(db: Database, jobs: JobsService) -> None:
    _group(db, COMMAND_LINE_TEMPLATE_ID, licenses_group="arnold", max_licenses=2)
    job = _job(jobs, frames=6)
    _nodes(db, 6)
    scheduler = Scheduler(db)
    assert scheduler.tick() == 2
    assert scheduler.tick() == 0  # assigned, not yet started by an agent: still counted
    _end(jobs, db, job, 1)
    assert scheduler.tick() == 1
    assert [chunk for _, chunk, _ in _assigned(db)] == [2, 3]
    (group,) = jobs.template_groups.list_groups()
    assert (group.name, group.running, group.limit) == ("arnold", 2, 2)


def test_templates_of_one_group_share_its_cap_the_smallest_non_zero(
    db: Database, jobs: JobsService
) -> None:
    _group(db, COMMAND_LINE_TEMPLATE_ID, licenses_group="farm", max_licenses=5)
    _group(db, BLENDER_TEMPLATE_ID, licenses_group="farm", max_licenses=3)
    _job(jobs, frames=4, priority=90, name="first")
    second = _blender_job(jobs, db, frames=4, priority=10, name="second")
    _nodes(db, 8)
    assert Scheduler(db).tick() == 3
    assert len(_assigned(db)) == 3 and all(j != second for j, _, _ in _assigned(db))


def test_a_cap_of_zero_is_no_cap(db: Database, jobs: JobsService) -> None:
    _group(db, COMMAND_LINE_TEMPLATE_ID, licenses_group="free", max_licenses=0)
    _job(jobs, frames=5)
    _nodes(db, 5)
    assert Scheduler(db).tick() == 5


def test_an_administrators_override_wins_over_the_file(db: Database, jobs: JobsService) -> None:
    _group(db, COMMAND_LINE_TEMPLATE_ID, licenses_group="arnold", max_licenses=1)
    _job(jobs, frames=8)
    _nodes(db, 8)
    scheduler = Scheduler(db)
    group = _override(jobs, LICENSES, "arnold", 3)
    assert (group.file_value, group.override, group.limit) == (1, 3, 3)
    assert scheduler.tick() == 3
    _override(jobs, LICENSES, "arnold", 0)  # no cap
    assert scheduler.tick() == 5
    group = _override(jobs, LICENSES, "arnold", None)  # the file's value again
    assert (group.override, group.limit, group.running) == (None, 1, 8)


def test_an_override_may_name_a_group_before_a_template_does(
    db: Database, jobs: JobsService
) -> None:
    group = _override(jobs, LICENSES, "redshift", 1)
    assert (group.template_ids, group.limit) == ((), 1)
    _group(db, COMMAND_LINE_TEMPLATE_ID, licenses_group="redshift", max_licenses=0)
    _job(jobs, frames=3)
    _nodes(db, 3)
    assert Scheduler(db).tick() == 1


def test_a_tick_waits_for_an_uncommitted_tick_and_counts_its_assignments(
    db: Database, jobs: JobsService
) -> None:
    """Across replicas: an old leader's last tick still committing when a new
    leader ticks. The second tick waits for the groups' lock, then counts."""
    _group(db, COMMAND_LINE_TEMPLATE_ID, licenses_group="arnold", max_licenses=2)
    job = _job(jobs, frames=6)
    a, b, *_ = _nodes(db, 6)
    assigned: list[int] = []
    with db.transaction() as first:
        first.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": TEMPLATE_GROUPS_LOCK_KEY})
        for chunk, node in ((1, a), (2, b)):
            first.execute(
                text(
                    "INSERT INTO chunk_assignments (job_id, chunk_number, node_id)"
                    " VALUES (:j, :c, :n)"
                ),
                {"j": job, "c": chunk, "n": node},
            )
            first.execute(
                text(
                    "UPDATE chunks SET status = 'assigned', node_id = :n"
                    " WHERE job_id = :j AND chunk_number = :c"
                ),
                {"j": job, "c": chunk, "n": node},
            )
        second = threading.Thread(target=lambda: assigned.append(Scheduler(db).tick()))
        second.start()
        until_lock_wait(db)
    second.join(10)
    assert assigned == [0]


# --- delay groups ---------------------------------------------------------------------------


def _start_times(db: Database) -> list[float]:
    with db.transaction() as session:
        return [
            float(t)
            for t in session.execute(
                text("SELECT extract(epoch FROM started_at) FROM chunk_runs ORDER BY started_at")
            ).scalars()
        ]


def _until_delay_passed(db: Database, name: str, seconds: float) -> None:
    """Wait by the database's clock until the group's last start is `seconds` old."""
    deadline = time.monotonic() + seconds + 5
    with db.read() as connection:
        while connection.execute(
            text(
                "SELECT now() - last_started_at < make_interval(secs => :s)"
                " FROM template_groups WHERE kind = 'delay' AND name = :n"
            ),
            {"s": seconds, "n": name},
        ).scalar_one():
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_a_delay_group_starts_one_chunk_per_delay(db: Database, jobs: JobsService) -> None:
    _group(db, COMMAND_LINE_TEMPLATE_ID, delay_group="license-server", delay_seconds=1)
    _group(db, BLENDER_TEMPLATE_ID, delay_group="license-server", delay_seconds=0)
    _job(jobs, frames=3)
    _blender_job(jobs, db, frames=3, name="other template")
    _nodes(db, 6)
    scheduler = Scheduler(db)
    assert scheduler.tick() == 1
    assert scheduler.tick() == 0
    _until_delay_passed(db, "license-server", 1)
    assert scheduler.tick() == 1
    starts = _start_times(db)
    assert len(starts) == 2 and starts[1] - starts[0] >= 1.0


def test_a_new_leader_keeps_the_last_start(db: Database, jobs: JobsService) -> None:
    _group(db, COMMAND_LINE_TEMPLATE_ID, delay_group="slow", delay_seconds=30)
    _job(jobs, frames=3)
    _nodes(db, 3)
    assert Scheduler(db).tick() == 1
    assert Scheduler(db).tick() == 0  # another replica's scheduler, fresh memory
    group = _override(jobs, DELAY, "slow", 0)  # an administrator lifts the delay
    assert group.last_started_at is not None
    assert Scheduler(db).tick() == 2


# --- the RPCs -----------------------------------------------------------------------------


def test_list_and_set_over_grpc(
    db: Database, jobs: JobsService, stub: jobs_pb2_grpc.JobsServiceStub
) -> None:
    _group(db, COMMAND_LINE_TEMPLATE_ID, licenses_group="arnold", max_licenses=4)
    _group(db, BLENDER_TEMPLATE_ID, licenses_group="arnold", max_licenses=2, delay_group="d")
    set_response = stub.SetTemplateGroupLimit(
        jobs_pb2.SetTemplateGroupLimitRequest(kind=DELAY_KIND, name="d", value=5)
    )
    assert (set_response.group.file_value, set_response.group.effective_value) == (0, 5)
    groups = stub.ListTemplateGroups(jobs_pb2.ListTemplateGroupsRequest()).groups
    assert [(g.kind, g.name) for g in groups] == [(LICENCE, "arnold"), (DELAY_KIND, "d")]
    arnold = groups[0]
    assert list(arnold.template_ids) == [COMMAND_LINE_TEMPLATE_ID, BLENDER_TEMPLATE_ID]
    assert (arnold.file_value, arnold.effective_value, arnold.HasField("override_value")) == (
        2,
        2,
        False,
    )
    cleared = stub.SetTemplateGroupLimit(
        jobs_pb2.SetTemplateGroupLimitRequest(kind=DELAY_KIND, name="d")
    ).group
    assert not cleared.HasField("override_value") and cleared.effective_value == 0
    for bad in (
        jobs_pb2.SetTemplateGroupLimitRequest(name="d", value=1),
        jobs_pb2.SetTemplateGroupLimitRequest(kind=LICENCE, name="", value=1),
        jobs_pb2.SetTemplateGroupLimitRequest(kind=LICENCE, name="arnold", value=-1),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            stub.SetTemplateGroupLimit(bad)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        not stub.ListTemplateGroups(jobs_pb2.ListTemplateGroupsRequest())
        .groups[0]
        .HasField("override_value")
    )
