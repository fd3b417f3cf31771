"""Pure rules of the jobs domain: validation, chunk plans, rollup, state rules,
templates and the queue snapshot grammar. No database, no gRPC."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from muster_services.core.errors import FailedPrecondition, InvalidArgument
from muster_services.jobs import domain, queue_sql
from muster_services.jobs.domain import Attribute, JobSpec
from muster_services.jobs.tables import jobs

JOB = JobSpec(name="shot", owner="alice", template_id=1001, start_frame=1, end_frame=100)


# --- validation -------------------------------------------------------------------------------


def test_a_complete_job_is_valid() -> None:
    domain.validate_job(JOB)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "job.name"),
        ({"name": "x" * 256}, "job.name"),
        ({"owner": ""}, "job.owner"),
        ({"priority": 70000}, "job.priority"),
        ({"priority": -1}, "job.priority"),
        ({"by_frame": 0.0}, "job.by_frame"),
        ({"end_frame": 0.0}, "job.end_frame"),
        ({"start_frame": float("nan")}, "job.start_frame"),
        ({"packet_size": 0}, "job.packet_size"),
        ({"template_id": None}, "job.template_id"),
        ({"max_nodes": -1}, "job.max_nodes"),
        ({"packet_type": "bogus"}, "job.packet_type"),
        ({"depend_ids": (0,)}, "job.depend_ids"),
        ({"included_pools": ("",)}, "job.included_pools"),
        ({"notes": "a\x00b"}, "job.notes"),
        ({"attributes": (Attribute("a", "string", "x"),) * 2}, "job.attributes"),
        ({"attributes": tuple(Attribute(f"a{i}", "int", i) for i in range(257))}, "job.attributes"),
        ({"attributes": (Attribute("big", "string", "x" * 300_000),)}, "job.attributes"),
        ({"environment": {"A=B": "x"}}, "job.environment"),
    ],
)
def test_a_bad_field_is_refused_naming_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        domain.validate_job(dataclasses.replace(JOB, **change))  # type: ignore[arg-type]
    assert refused.value.message.startswith(field)


def test_a_folder_needs_no_template_or_frames() -> None:
    domain.validate_job(JobSpec(name="shots", owner="alice", kind="folder", by_frame=0))


# --- chunk plans ------------------------------------------------------------------------------


def test_frames_are_split_into_packets_with_a_short_last_chunk() -> None:
    spec = dataclasses.replace(JOB, start_frame=1, end_frame=10, packet_size=4)
    plan = domain.plan_chunks(spec, "frames")
    assert plan.count == 3
    assert [domain.chunk_frames(plan, n) for n in (1, 2, 3)] == [
        (1, 4, 0),
        (5, 8, 0),
        (9, 10, 0),
    ]


def test_fractional_steps_count_every_frame_despite_rounding() -> None:
    spec = dataclasses.replace(JOB, start_frame=1, end_frame=2, by_frame=0.1, packet_size=1)
    plan = domain.plan_chunks(spec, "frames")
    assert plan.count == 11
    assert domain.chunk_frames(plan, 11)[0] == pytest.approx(2.0)


def test_slices_make_one_chunk_per_slice_of_each_frame() -> None:
    spec = dataclasses.replace(JOB, start_frame=1, end_frame=2, packet_size=3)
    plan = domain.plan_chunks(spec, "slices")
    assert plan.count == 6
    assert [domain.chunk_frames(plan, n) for n in (1, 3, 4)] == [(1, 1, 0), (1, 1, 2), (2, 2, 0)]


def test_single_packets_render_the_whole_range_in_one_chunk() -> None:
    plan = domain.plan_chunks(dataclasses.replace(JOB, by_frame=2), "single")
    assert plan.count == 1
    assert domain.chunk_frames(plan, 1) == (1, 99, 0)  # the last frame on the step


def test_more_than_a_million_chunks_is_refused() -> None:
    spec = dataclasses.replace(JOB, start_frame=1, end_frame=2_000_000, packet_size=1)
    with pytest.raises(InvalidArgument, match=r"job.packet_size: .*2,000,000 chunks"):
        domain.plan_chunks(spec, "frames")


# --- status rollup ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "met", "status", "progress"),
    [
        ({"queued": 4}, True, "queued", 0),
        ({"queued": 4}, False, "waiting_dependencies", 0),
        ({"queued": 3, "running": 1}, True, "running", 0),
        ({"queued": 2, "completed": 2}, True, "running", 50),
        ({"hold": 2, "completed": 2}, True, "running", 50),
        ({"completed": 3, "skipped": 1}, True, "completed", 100),
        ({"completed": 3, "completed_with_warnings": 1}, True, "completed_with_warnings", 100),
        ({"completed_with_warnings": 1, "failed": 1}, True, "completed_with_errors", 100),
    ],
)
def test_job_status_follows_its_chunks(
    counts: dict[str, int], met: bool, status: str, progress: float
) -> None:
    result = domain.rollup(counts, dependencies_met=met)
    assert (result.status, result.progress) == (status, progress)


def test_counters_bucket_chunks_as_the_job_columns_document() -> None:
    counts = {"queued": 1, "waiting_dependencies": 1, "assigned": 1, "running": 1, "hold": 1}
    counts |= {"completed": 1, "completed_with_warnings": 1, "skipped": 1, "failed": 1}
    assert domain.counters_of(counts) == domain.Counters(9, 2, 2, 3, 1)


def test_an_aborted_job_stays_failed_whatever_its_chunks_say() -> None:
    assert domain.rollup({"completed": 1}, aborted=True).status == "failed"


def test_dependencies_release_by_mode() -> None:
    assert domain.dependencies_met("success", ["completed", "completed_with_warnings"])
    assert not domain.dependencies_met("success", ["completed_with_errors"])
    assert domain.dependencies_met("completion", ["completed_with_errors", "failed"])
    assert not domain.dependencies_met("completion", ["running"])


def test_chunk_dependencies_hold_by_mode() -> None:
    statuses = {7: "completed", 3: "completed_with_errors", 5: "running"}
    assert domain.unmet_dependencies("success", statuses) == [3, 5]
    assert domain.unmet_dependencies("completion", statuses) == [5]
    success, completion = (
        domain.done_chunk_statuses("success"),
        domain.done_chunk_statuses("completion"),
    )
    assert success == {"completed", "completed_with_warnings", "skipped"}
    assert completion == success | {"failed"}
    held = {"queued", "waiting_dependencies", "assigned", "running", "hold"}
    assert not held & completion


# --- chunk state rules ------------------------------------------------------------------------


def test_requeueing_a_finished_chunk_counts_as_a_requeue_but_releasing_a_hold_does_not() -> None:
    assert domain.chunk_change("failed", "queued").requeue
    assert not domain.chunk_change("hold", "queued").requeue


def test_a_live_chunk_changes_only_after_its_kill() -> None:
    change = domain.chunk_change("running", "hold")
    assert change.kill and change.status is None and change.target == "hold"


def test_a_completed_chunk_cannot_be_held_before_it_is_requeued() -> None:
    with pytest.raises(FailedPrecondition, match="status: a completed chunk cannot become hold"):
        domain.chunk_change("completed", "hold")


def test_only_queued_hold_skipped_and_completed_can_be_set() -> None:
    with pytest.raises(InvalidArgument, match=r"^status: "):
        domain.chunk_change("queued", "running")


# --- tree and dependencies --------------------------------------------------------------------


def test_a_folder_cannot_move_into_itself_or_its_descendants() -> None:
    with pytest.raises(FailedPrecondition):
        domain.check_move(5, 5, [])
    with pytest.raises(FailedPrecondition):
        domain.check_move(5, 9, [7, 5])
    domain.check_move(5, 9, [7])


def test_a_dependency_cycle_is_found_with_its_path() -> None:
    assert domain.find_dependency_cycle(1, [2], {2: [3], 3: [1]}) == [1, 2, 3, 1]
    assert domain.find_dependency_cycle(1, [2], {2: [3]}) is None
    assert domain.find_dependency_cycle(1, [1], {}) == [1, 1]


def test_a_folder_that_contains_itself_is_found() -> None:
    assert domain.folder_cycle({1: 2, 2: 1}) is not None
    assert domain.folder_cycle({1: None, 2: 1}) is None


# --- queue snapshot grammar -------------------------------------------------------------------


def _job_row(**values: object) -> dict[str, object]:
    row: dict[str, object] = {c.name: None for c in jobs.columns}
    row.update(
        id=1, kind="job", name="it's", owner="alice", submitter="", priority=1, template_id=1001,
        start_frame=1.0, end_frame=2.0, by_frame=1.0, packet_size=1, packet_type="frames",
        included_pools=["a", "b'c"], excluded_pools=[], depend_mode="success",
        depend_chunks=False, max_nodes=0, project="", department="", job_group="",
        notes="two\nlines", chunk_timeout_seconds=0, max_chunk_requeues=0,
        logs_error_check="all", attributes={"k": {"type": "int", "value": 1}},
        environment={}, status="queued", paused=False, locked=False, requeue_count=0,
        chunks_total=0, chunks_queued=0, chunks_running=0, chunks_completed=0,
        chunks_failed=0, progress=0.0, submitted_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        updated_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), version=1,
    )  # fmt: skip
    row.update(values)
    return row


def test_an_exported_row_parses_back_to_the_same_values() -> None:
    row = _job_row()
    text = queue_sql.export_sql({"jobs": [row]})
    parsed = queue_sql.parse_sql(text)
    assert parsed.rows["jobs"] == [row]
    assert queue_sql.export_sql(parsed.rows) == text


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("DROP TABLE jobs;", "line 1: expected INSERT"),
        ("INSERT INTO users (name) VALUES ('x');", "line 1: table 'users' is not a queue table"),
        ("-- a comment", "line 1: unexpected text"),
        ("/* hidden */", "line 1: unexpected text"),
        ("INSERT INTO jobs ('x", "line 1: unbalanced quote"),
        ("INSERT INTO jobs (id) VALUES (1);", "line 1: the columns of jobs must be"),
    ],
)
def test_anything_but_the_export_form_is_refused_at_its_line(sql: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        queue_sql.parse_sql(sql)


def test_a_second_statement_after_a_valid_one_on_the_same_line_is_refused() -> None:
    line = queue_sql.export_sql({"jobs": [_job_row()]}).rstrip("\n")  # two lines (notes)
    with pytest.raises(InvalidArgument, match="line 4: a second statement on the same line"):
        queue_sql.parse_sql(line + "\n" + line + " " + line)


def test_a_value_of_the_wrong_type_is_refused_naming_the_column() -> None:
    line = queue_sql.export_sql({"jobs": [_job_row()]})
    bad = line.replace("VALUES (1, NULL,", "VALUES ('1', NULL,")
    with pytest.raises(InvalidArgument, match=r"line 1: jobs.id: not a int"):
        queue_sql.parse_sql(bad)


def test_a_snapshot_whose_parent_is_not_a_folder_is_refused() -> None:
    text = queue_sql.export_sql({"jobs": [_job_row(), _job_row(id=2, parent_id=1)]})
    with pytest.raises(InvalidArgument, match=r"line 3: jobs\.parent_id 1 is not a folder"):
        queue_sql.check_references(queue_sql.parse_sql(text), {1001})
