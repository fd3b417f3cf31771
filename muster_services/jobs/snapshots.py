"""Use cases of the queue as a whole: SQL snapshots (dbExportQueueSQL,
dbImportQueueSQL, grammar in queue_sql.py), the completed-job retention, and
the flushes."""

from __future__ import annotations

from sqlalchemy.exc import DataError, IntegrityError

from muster_services.core.bus import publish_change
from muster_services.core.database import Database
from muster_services.core.errors import FailedPrecondition, InvalidArgument, NotFound
from muster_services.jobs import domain, log_store, queue_sql, topics
from muster_services.jobs import store as repo
from muster_services.jobs.backups import BackupsService
from muster_services.jobs.queue import QueueService
from muster_services.jobs.rollup import refresh

# Jobs one retention pass deletes or archives at most.
RETENTION_BATCH = 500


class SnapshotsService:
    """Whole-queue use cases; retention deletes and archives through the queue
    and backup use cases."""

    def __init__(self, db: Database, queue: QueueService, backups: BackupsService) -> None:
        self.db = db
        self.queue = queue
        self.backups = backups

    def apply_retention(self, policy: str, hours: float, log_days: int) -> tuple[int, int]:
        """The dispatcher configuration's retention: jobs completed more than
        `hours` ago are deleted or archived as `policy` says ("keep" keeps
        them), and render output of runs older than `log_days` is pruned.
        Returns (jobs removed, log lines pruned); a job another call changed
        meanwhile is left for the next pass."""
        removed = 0
        if policy in ("delete", "archive"):
            with self.db.transaction() as session:
                expired = repo.expired_completed_jobs(session, hours, RETENTION_BATCH)
            for job_id in expired:
                try:
                    if policy == "archive":
                        self.backups.archive_job(job_id, "replace")
                    else:
                        self.queue.delete_job(job_id)
                    removed += 1
                except (NotFound, InvalidArgument, FailedPrecondition):
                    continue
        with self.db.transaction() as session:
            pruned = log_store.prune(session, log_days)
        return removed, pruned

    def export_sql(self) -> str:
        """dbExportQueueSQL: the queue as of one consistent snapshot."""
        with self.db.transaction() as session:
            repo.read_one_snapshot(session)
            return queue_sql.export_sql(repo.queue_rows(session))

    def import_sql(self, sql: str) -> int:
        """dbImportQueueSQL: replace the queue atomically; returns the job count."""
        parsed = queue_sql.parse_sql(sql)
        for chunk in parsed.rows["chunks"]:
            if chunk["status"] in domain.QUEUED_ON_LOAD:
                chunk["status"] = "queued"
        try:
            with self.db.transaction() as session:
                queue_sql.check_references(parsed, repo.template_ids(session))
                if repo.live_assignments_count(session):
                    raise FailedPrecondition(
                        "sql: chunks are running on nodes; stop them before replacing the queue"
                    )
                repo.clear_queue(session)
                job_rows = parsed.rows["jobs"]
                parents = {r["id"]: r["parent_id"] for r in job_rows if r["parent_id"] is not None}
                # Parents may have larger ids than their children (after a
                # move): insert without them, then link.
                repo.insert_rows(session, "jobs", [{**r, "parent_id": None} for r in job_rows])
                repo.set_parents(session, parents)
                repo.insert_rows(session, "job_dependencies", parsed.rows["job_dependencies"])
                repo.insert_rows(session, "chunks", parsed.rows["chunks"])
                repo.align_runs_count(session, None)
                # Counters, progress and status follow the imported chunks,
                # whatever the text says about them.
                for row in job_rows:
                    if row["kind"] == "job":
                        refresh(session, row["id"])
                repo.reset_job_id_sequence(session)
                count = repo.jobs_count(session)
                publish_change(
                    session,
                    topics.QUEUE_IMPORTED,
                    {"jobs": count, "chunks": len(parsed.rows["chunks"])},
                )
                return count
        except (IntegrityError, DataError) as error:
            detail = getattr(getattr(error.orig, "diag", None), "constraint_name", None)
            raise InvalidArgument(
                f"sql: the snapshot does not fit this queue's schema ({detail or error.orig})"
            ) from None

    def flush(self) -> None:
        """dbFlush, dbHistoryFlush, dbBackupFlush: every RPC commits before it
        returns, so a round trip to the database is all that is left to wait for."""
        with self.db.transaction() as session:
            repo.round_trip(session)
