"""The agent notices that its process did not run (a frozen agent must not
start what waited in its stream's socket)."""

from __future__ import annotations

import time

import pytest

from muster_agent.session import Stalled, StallWatch


def test_a_gap_longer_than_the_limit_is_a_stall_and_stays_one() -> None:
    watch = StallWatch(lambda: 0.05)
    watch.check()  # running: no gap
    time.sleep(0.1)  # as if stopped
    with pytest.raises(Stalled, match=r"did not run for 0\.1"):
        watch.check()  # the ticker sees it first...
    with pytest.raises(Stalled):
        watch.check()  # ...and the reader, right after, still does


def test_a_process_that_keeps_running_is_never_stalled() -> None:
    watch = StallWatch(lambda: 0.5)
    for _ in range(5):
        time.sleep(0.01)
        watch.check()
