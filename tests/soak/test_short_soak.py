"""A short soak end to end: the farm, the feeder, the fault injector, the
drain and the checker. It takes over a minute of two busy cores, so the suite
runs it only when asked (docs/reliability.md):

    MUSTER_SOAK_TEST_MINUTES=1 .venv/bin/python -m pytest -q tests/soak/test_short_soak.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.soak.run import soak

MINUTES = float(os.environ.get("MUSTER_SOAK_TEST_MINUTES", "0") or 0)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(not MINUTES, reason="set MUSTER_SOAK_TEST_MINUTES to run a short soak")
def test_a_short_soak_holds_every_invariant(shared_tmp: Path) -> None:
    outcome = soak(shared_tmp / "soak", MINUTES, seed=15, fault_gap=(2.0, 6.0))
    print(outcome.table())
    assert sum(outcome.faults.values()) >= 3
    assert outcome.chunks_rendered > 0
    assert outcome.submissions_accepted == outcome.jobs_present > 0
    assert outcome.ok, outcome.failures
