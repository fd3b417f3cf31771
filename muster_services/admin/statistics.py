"""Statistics and history samples: the sampler, their bounds, clearing a range.

Statistics samples are snapshots of the farm's load (nodes by status, jobs
and chunks by status, runs dispatched/completed/failed since the last
systemResetStatisticsCounters). History samples are the farm's activity per
interval (jobs submitted and completed, chunks completed and failed, render
time), computed from the jobs service's chunk runs. Both are the admin
service's own tables: dbGetHistoryBounds / dbClearHistoryBounds work on
history_samples and never touch the chunk run history of the jobs service.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row

from muster_services.admin import domain, topics
from muster_services.admin import store as repo
from muster_services.admin.configuration import read_configuration
from muster_services.core.bus import publish_change
from muster_services.core.database import Database
from muster_services.core.errors import InvalidArgument
from muster_services.core.paging import Page, page_of, page_request

SAMPLES = ("statistics", "history")
# The event clearing each kind of sample publishes.
CLEARED = {"statistics": topics.STATISTICS_CLEARED, "history": topics.HISTORY_CLEARED}


@dataclass(frozen=True)
class Bounds:
    first: datetime | None
    last: datetime | None
    count: int


class StatisticsService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def bounds(self, which: str) -> Bounds:
        with self.db.transaction() as session:
            row = repo.sample_bounds(session, which)
        return Bounds(row.first, row.last, int(row.samples))

    def samples(
        self, start: datetime | None, end: datetime | None, page_size: int, page_token: str
    ) -> Page[Row[Any]]:
        """Statistics samples taken in [start, end], oldest first (ids grow
        with time: one sampler at a time)."""
        domain.check_time_range(start, end)
        filters = {"start": start, "end": end}
        page = page_request(page_size, page_token, filters)
        if page.after is not None and not isinstance(page.after, int):
            raise InvalidArgument("page_token is not a token this service issued")
        with self.db.transaction() as session:
            rows = repo.samples_page(session, start, end, page.after, page.size + 1)
        return page_of(rows, page, lambda row: int(row.id))

    def clear(self, which: str, start: datetime | None, end: datetime | None) -> int:
        """Delete the samples taken in [start, end]; an open end reaches the
        oldest or newest sample."""
        domain.check_time_range(start, end)
        with self.db.transaction() as session:
            deleted = repo.delete_samples(session, which, start, end)
            publish_change(
                session,
                CLEARED[which],
                {
                    "deleted_count": deleted,
                    "start_time": start.isoformat() if start else None,
                    "end_time": end.isoformat() if end else None,
                },
            )
            return deleted

    def sample_if_due(self) -> bool:
        """Take a statistics and a history sample when the configured interval
        has passed since the last one, and prune what the retention settings
        let go. One replica at a time (advisory lock); no event: samples are
        bookkeeping, not a change anyone acts on."""
        with self.db.transaction() as session:
            if not repo.try_sampler_lock(session):
                return False
            config = read_configuration(session)
            now = repo.database_now(session)
            last = repo.last_sample_time(session, "statistics")
            if not domain.sample_due(last, now, config.statistics_sample_interval_seconds):
                return False
            reset_at = repo.engine_row(session).statistics_reset_at
            counters = domain.statistics_counters(
                repo.node_counts_by_status(session),
                repo.counts_by_status(session, "jobs"),
                repo.counts_by_status(session, "chunks"),
                repo.run_counts_since(session, reset_at),
            )
            repo.add_sample(session, "statistics", {"sampled_at": now, "counters": counters})
            # The history sample covers the time since the previous sample (after
            # a long stop, the whole gap), or one interval for the first one.
            start = last or now - timedelta(seconds=config.statistics_sample_interval_seconds)
            span = max(1, round((now - start).total_seconds()))
            repo.add_sample(
                session,
                "history",
                {
                    "sampled_at": start,
                    "interval_seconds": span,
                    "counters": repo.history_counts(session, start, now),
                },
            )
            repo.prune_samples(session, "statistics", config.statistics_retention_days)
            repo.prune_samples(session, "history", config.history_retention_days)
            repo.prune_logs(session, config.log_retention_days)
            return True
