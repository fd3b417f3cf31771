"""The soak's invariant checker on hand-made frame files and chunk_runs rows."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from bench.soak.checker import (
    Job,
    Run,
    check,
    finished,
    outside_runs,
    overlapping_runs,
    parse_frame_file,
    two_alive_at_once,
)

# Mark times are seconds since the epoch: with T0 the epoch, a run's offsets
# and a mark's time are the same numbers.
T0 = datetime.fromtimestamp(0, UTC)


def marks(*lines: str) -> str:
    return "".join(line + "\n" for line in lines)


def run(chunk: int, number: int, start: float, end: float | None, job: int = 7) -> Run:
    return Run(
        job,
        chunk,
        number,
        chunk,
        chunk,
        T0 + timedelta(seconds=start),
        None if end is None else T0 + timedelta(seconds=end),
        "running" if end is None else "succeeded",
    )


def test_a_frame_file_is_read_in_order_and_torn_lines_are_skipped() -> None:
    parsed = parse_frame_file(marks("start 10 1.5", "end 10 2.5", "garbage", "start 11") + "en")
    assert [(m.kind, m.pid, m.at) for m in parsed] == [("start", 10, 1.5), ("end", 10, 2.5)]
    assert finished(parsed)
    assert not finished(parse_frame_file(marks("start 10 1")))


def test_two_processes_alive_at_once_is_an_end_after_another_process_started() -> None:
    # A started, B started, A ended: A was alive while B rendered.
    assert two_alive_at_once(
        parse_frame_file(marks("start 1 1", "start 2 2", "end 1 3", "end 2 4"))
    )
    # An orphan that finishes after its retry ended is caught too.
    assert two_alive_at_once(
        parse_frame_file(marks("start 1 1", "start 2 2", "end 2 3", "end 1 4"))
    )


def test_one_after_another_or_a_killed_one_then_a_retry_is_not_an_overlap() -> None:
    assert not two_alive_at_once(
        parse_frame_file(marks("start 1 1", "end 1 2", "start 2 3", "end 2 4"))
    )
    # The first process was killed (no end): the retry alone rendered the frame.
    assert not two_alive_at_once(parse_frame_file(marks("start 1 1", "start 2 3", "end 2 4")))


def test_a_killed_orphan_that_rendered_beside_its_retry_is_caught_by_its_alive_marks() -> None:
    # A (frozen agent's render) started, its node was declared lost, B started,
    # A wrote it was alive, then A was killed: it never wrote its end.
    caught = parse_frame_file(
        marks("start 1 1", "alive 1 1.5", "start 2 7", "alive 1 7.2", "alive 2 7.5", "end 2 9")
    )
    assert two_alive_at_once(caught)
    # Killed before the retry started: its last alive mark came first.
    apart = parse_frame_file(marks("start 1 1", "alive 1 1.5", "start 2 7", "end 2 9"))
    assert not two_alive_at_once(apart)
    # The orphan's alive mark after its LOST run ended is outside every run.
    assert outside_runs(caught, [run(1, 1, 0.5, 6.5), run(1, 2, 6.8, None)]) == [1]


def test_runs_of_one_chunk_overlapping_in_time_are_found() -> None:
    apart = [run(1, 1, 0, 5), run(1, 2, 5, 9), run(2, 1, 0, 9)]
    assert overlapping_runs(apart) == []
    overlapping = [run(1, 1, 0, 6), run(1, 2, 5, 9)]
    assert overlapping_runs(overlapping) == [(overlapping[0], overlapping[1])]
    # A run still open (no end) overlaps any later run of its chunk.
    assert len(overlapping_runs([run(3, 1, 0, None), run(3, 2, 5, 9)])) == 1


def test_a_process_outside_every_recorded_run_of_its_chunk_is_found() -> None:
    runs = [run(1, 1, 10, 20), run(1, 2, 30, None)]
    inside = parse_frame_file(marks("start 1 11", "end 1 19", "start 2 31", "end 2 40"))
    assert outside_runs(inside, runs) == []
    # An orphan of the LOST first run that went on rendering after it ended.
    orphan = parse_frame_file(marks("start 1 11", "end 1 25"))
    assert outside_runs(orphan, runs) == [1]
    # A stale assignment started after the history says its run ended.
    late = parse_frame_file(marks("start 3 21", "end 3 22"))
    assert outside_runs(late, runs) == [3]
    # A killed process (no end) inside its run is fine.
    assert outside_runs(parse_frame_file(marks("start 4 12")), runs) == []


def test_a_clean_soak_holds_every_invariant() -> None:
    job = Job(7, "soak-1-1", "completed", [1, 2])
    outcome = check(
        faults=Counter({"kill-agent": 2}),
        accepted={"soak-1-1": 7},
        jobs=[job],
        frame_files={
            ("soak-1-1", 1): marks("start 1 1", "end 1 2"),
            # Killed once (a LOST run), rendered by the retry.
            ("soak-1-1", 2): marks("start 2 1", "start 3 5", "end 3 6"),
        },
        runs=[run(1, 1, 0, 2), run(2, 1, 0, 4), run(2, 2, 5, 6), run(2, 3, 7, 8)],
    )
    assert outcome.ok, outcome.failures
    assert (outcome.chunks_rendered, outcome.process_starts, outcome.runs_recorded) == (2, 3, 4)
    assert outcome.runs_without_process == 1
    table = outcome.table()
    assert "faults injected: kill-agent" in table
    assert "all invariants hold" in table


def test_every_broken_invariant_is_reported() -> None:
    outcome = check(
        faults=Counter(),
        accepted={"soak-1-1": 7, "soak-1-2": 8},  # job 8 is missing
        jobs=[Job(7, "soak-1-1", "running", [1, 2, 3])],
        frame_files={
            # Two processes at once, one run recorded for them: pid 2
            # rendered outside it (it ended at 4.6).
            ("soak-1-1", 1): marks("start 1 1", "start 2 2", "end 1 3", "end 2 5"),
            ("soak-1-1", 2): marks("start 3 1"),  # never finished
            ("soak-1-1", 3): marks("start 4 1", "end 4 2"),
        },
        runs=[run(1, 1, 0, 4), run(2, 1, 0, 3), run(3, 1, 0, 2), run(3, 2, 1, 3)],
    )
    assert not outcome.ok
    assert outcome.frames_two_alive == ["soak-1-1 frame 1"]
    assert outcome.frames_never_finished == ["soak-1-1 frame 2"]
    assert outcome.chunks_hiding_processes == ["soak-1-1 frame 1: 2 processes, 1 runs"]
    assert outcome.processes_outside_runs == ["soak-1-1 frame 1 pid 2"]
    assert outcome.jobs_stuck == ["soak-1-1 (job 7, running)"]
    assert outcome.overlapping_runs == 1
    assert (outcome.submissions_accepted, outcome.jobs_present) == (2, 1)
    joined = "\n".join(outcome.failures)
    for what in (
        "submission soak-1-2 accepted as job 8",
        "frames never finished",
        "two processes alive at once",
        "more processes than recorded runs",
        "processes outside every recorded run",
        "jobs stuck",
        "overlap in time",
    ):
        assert what in joined
    assert "FAILED" in outcome.table()


def test_a_submission_stored_twice_fails() -> None:
    outcome = check(
        faults=Counter(),
        accepted={"soak-1-1": 7},
        jobs=[Job(7, "soak-1-1", "completed", []), Job(9, "soak-1-1", "completed", [])],
        frame_files={},
        runs=[],
    )
    assert outcome.failures == ["submission soak-1-1 accepted as job 7, jobs present: [7, 9]"]


def test_the_injector_draws_only_the_kinds_it_is_given() -> None:
    import random
    from types import SimpleNamespace
    from typing import Any, cast

    from bench.soak.run import Clock, Injector

    farm = cast(Any, SimpleNamespace(postgres=SimpleNamespace(restartable=False)))
    only = Injector(farm, random.Random(1), Clock(), only=("pause-process", "restart-postgres"))
    # PostgreSQL restarts need the embedded server.
    assert only.kinds() == ["pause-process"]
    assert "restart-postgres" not in Injector(farm, random.Random(1), Clock()).kinds()
