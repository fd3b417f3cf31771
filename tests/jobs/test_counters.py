"""The one counters rule: how a job's counters move when its chunks change status."""

from __future__ import annotations

import pytest

from muster_services.jobs.domain import CounterMove, counter_moves, needs_rollup


def test_chunks_leaving_the_queue_for_nodes_start_the_job() -> None:
    move = counter_moves([("queued", "assigned")] * 3)
    assert move == CounterMove(queued=-3, running=3, started=True)


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        ("completed", CounterMove(running=-1, completed=1)),
        ("completed_with_warnings", CounterMove(running=-1, completed=1)),
        ("skipped", CounterMove(running=-1, completed=1)),
        ("failed", CounterMove(running=-1, failed=1)),
        ("queued", CounterMove(queued=1, running=-1, requeued=1)),
        ("hold", CounterMove(running=-1, held=1)),
    ],
)
def test_a_run_s_end_moves_its_chunk_out_of_running(new: str, expected: CounterMove) -> None:
    assert counter_moves([("running", new)]) == expected
    assert counter_moves([("assigned", new)]) == expected  # both count as running


def test_a_batch_adds_up_per_transition() -> None:
    move = counter_moves(
        [
            ("running", "completed"),
            ("running", "completed"),
            ("assigned", "failed"),
            ("running", "queued"),
            ("running", "hold"),
        ]
    )
    assert move == CounterMove(queued=1, running=-5, completed=2, failed=1, requeued=1, held=1)
    assert not move.started


def test_moves_within_a_counter_or_between_uncounted_statuses_change_nothing() -> None:
    assert counter_moves([]) == CounterMove()
    assert counter_moves([("assigned", "running"), ("queued", "waiting_dependencies")]) == (
        CounterMove()
    )
    assert counter_moves([("hold", "hold")]) == CounterMove()


def test_statuses_outside_the_live_ones_move_without_counting_as_requeues() -> None:
    # chunkSetStatus: a failed chunk requeued by hand, a held one released.
    assert counter_moves([("failed", "queued")]) == CounterMove(queued=1, failed=-1)
    assert counter_moves([("hold", "queued")]) == CounterMove(queued=1)


@pytest.mark.parametrize(
    ("move", "queued_left", "running_left", "expected"),
    [
        (CounterMove(running=-1, completed=1), 3, 1, False),
        (CounterMove(running=-1, completed=1), 0, 0, True),
        (CounterMove(running=-1, held=1), 5, 0, True),
        (CounterMove(queued=1, running=-1, requeued=1), 1, 0, False),
    ],
)
def test_the_full_rollup_runs_when_nothing_is_left_or_a_chunk_is_held(
    move: CounterMove, queued_left: int, running_left: int, expected: bool
) -> None:
    assert needs_rollup(move, queued_left, running_left) is expected
