"""The jobs service layer, assembled: one object per part of the domain.

queue (jobs and folders: list, get, submit, edit, move, reinit, delete),
chunks (chunks and their history), logs (render logs of chunk runs),
templates (the template catalogue),
backups (the backup store) and snapshots (SQL export/import, retention,
flushes). Every part shares one Database; each use case runs in one
transaction and publishes its events there (docs/jobs.md). A job's status
rollup after its chunks change is muster_services/jobs/rollup.py.
"""

from __future__ import annotations

from pathlib import Path

from muster_services.core.database import Database
from muster_services.jobs.backups import BackupsService
from muster_services.jobs.catalog import TemplatesService
from muster_services.jobs.chunks import ChunksService
from muster_services.jobs.logs import ChunkLogs, LogWaker
from muster_services.jobs.queue import QueueService, SubmissionValidator
from muster_services.jobs.snapshots import SnapshotsService
from muster_services.jobs.template_groups import TemplateGroupsService


class JobsService:
    def __init__(
        self,
        db: Database,
        validator: SubmissionValidator | None = None,
        templates_dir: Path | None = None,
        log_waker: LogWaker | None = None,
    ) -> None:
        self.db = db
        self.queue = QueueService(db, validator)
        self.chunks = ChunksService(db)
        # The built-in library and the studio's template folder.
        self.templates = TemplatesService(db, studio=templates_dir)
        self.backups = BackupsService(db)
        self.snapshots = SnapshotsService(db, self.queue, self.backups)
        self.template_groups = TemplateGroupsService(db)
        # Render logs; without a waker their followers poll (logs.py).
        self.logs = ChunkLogs(db, log_waker)

    # kept for runs.py until the render-loop branch lands
