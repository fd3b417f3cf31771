"""Node timings and exclusion rules in effect: the dispatcher configuration
(admin), re-read every few seconds so systemSetConfiguration applies at once;
MUSTER_NODE_LOST_TIMEOUT_SECONDS overrides the lost timeout when set."""

from __future__ import annotations

import logging
import threading
import time

from muster_services.admin.configuration import effective_configuration
from muster_services.core.database import Database

_LOG = logging.getLogger(__name__)

REFRESH_SECONDS = 5.0
# With MUSTER_NODE_LOST_TIMEOUT_SECONDS set, agents heartbeat at most this often.
MAX_HEARTBEAT_SECONDS = 5


def lease_for(lost_timeout: float) -> float:
    """The lease for a lost timeout: 5% shorter, and at least 0.75 s shorter
    (the launcher looks twice a second and must have killed before the
    sweep can declare the node lost, which counts from the heartbeat's
    recording, after the send the lease counts from)."""
    return max(0.5, lost_timeout - max(0.75, 0.05 * lost_timeout))


def heartbeat_flush_for(lost_timeout: float) -> float:
    """How often a nodes replica records the heartbeats it received (and
    answers them, renewing the agents' leases): each second, more often when
    the lost timeout is short (a lease must survive a heartbeat's jitter
    plus this wait)."""
    return max(0.1, min(1.0, lost_timeout / 10))


class NodeTimings:
    def __init__(self, db: Database, lost_timeout_override: float | None = None) -> None:
        self.db = db
        self.override = lost_timeout_override
        self._lock = threading.Lock()
        self._read_at = 0.0
        self._lost = 60.0
        self._heartbeat = 10
        self._failures = 3
        self._forgive = 5 * 3600.0

    def _refresh(self) -> None:
        with self._lock:
            if time.monotonic() - self._read_at < REFRESH_SECONDS:
                return
            self._read_at = time.monotonic()
        try:
            config = effective_configuration(self.db)
        except Exception:  # the database is away: the values read last hold
            _LOG.warning("reading the node timings failed; keeping the last ones", exc_info=True)
            return
        with self._lock:
            self._lost = float(config.node_lost_timeout_seconds)
            self._heartbeat = int(config.heartbeat_interval_seconds)
            self._failures = int(config.job_exclusion_failures)
            self._forgive = float(config.job_exclusion_forgive_seconds)

    def reload(self) -> None:
        """Read the configuration at the next use (config.changed, soft restart)."""
        with self._lock:
            self._read_at = 0.0

    def lost_timeout(self) -> float:
        if self.override is not None:
            return self.override
        self._refresh()
        return self._lost

    def lease_seconds(self) -> float:
        """How long an agent's render processes live on after the send of its
        newest recorded heartbeat (muster_agent/lease.py): shorter than the lost
        timeout, so a render has stopped before its chunk can go elsewhere."""
        return lease_for(self.lost_timeout())

    def heartbeat_flush_seconds(self) -> float:
        return heartbeat_flush_for(self.lost_timeout())

    def heartbeat_interval(self) -> int:
        """The configured interval, but at least three heartbeats per lost timeout."""
        lost = self.lost_timeout()
        configured = MAX_HEARTBEAT_SECONDS if self.override is not None else self._heartbeat
        return max(1, min(configured, int(lost / 3)))

    def exclusion(self) -> tuple[int, float]:
        """(failures before a node is excluded from a job, seconds until forgiven)."""
        self._refresh()
        return self._failures, self._forgive
