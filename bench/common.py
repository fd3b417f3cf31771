"""What every benchmark shares: the registry and the row it reports."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    what: str
    ours: float
    peer: float | None
    peer_name: str
    unit: str

    @property
    def ratio(self) -> str:
        return f"{self.ours / self.peer:.2f}" if self.peer else "-"


Benchmark = Callable[[], list[Row]]
BENCHMARKS: dict[str, Benchmark] = {}


def median_of(runs: int, work: Callable[[], float]) -> float:
    return statistics.median(work() for _ in range(runs))
