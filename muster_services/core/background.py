"""Small periodic chores run in a thread beside a server (pruning, sweeps)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

_LOG = logging.getLogger(__name__)


class Periodic:
    """Calls `work` every `interval` seconds until stopped; errors are logged."""

    def __init__(
        self, name: str, interval: float, work: Callable[[], object], at_start: bool = False
    ) -> None:
        self.name = name
        self.interval = interval
        self.work = work
        # Also once as it starts, before the first interval.
        self.at_start = at_start
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        if self.at_start:
            self._work()
        while not self._stop.wait(self.interval):
            self._work()

    def _work(self) -> None:
        try:
            self.work()
        except Exception:
            _LOG.exception("%s failed", self.name)
