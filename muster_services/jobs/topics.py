"""Event topics the jobs domain publishes (payloads: docs/jobs.md, docs/render-loop.md).

Every publisher and consumer names a topic through these constants; the docs'
tables are checked against them (tests/core/test_topics.py).
"""

from __future__ import annotations

from typing import Final

# The queue: jobs and folders.
JOB_SUBMITTED: Final = "job.submitted"
JOB_FOLDER_CREATED: Final = "job.folder_created"
JOB_EDITED: Final = "job.edited"
JOB_MOVED: Final = "job.moved"
JOB_PROPERTIES_CHANGED: Final = "job.properties_changed"
JOB_STARTED: Final = "job.started"
JOB_COMPLETED: Final = "job.completed"
JOB_REINIT: Final = "job.reinit"
JOB_DELETED: Final = "job.deleted"
JOB_UPDATED: Final = "job.updated"
JOB_BACKED_UP: Final = "job.backed_up"
JOB_RESTORED: Final = "job.restored"
QUEUE_IMPORTED: Final = "queue.imported"

# Templates: the catalogue loaded new or changed template files.
TEMPLATES_CHANGED: Final = "template.changed"

# Chunks and the render loop.
CHUNK_STATUS_CHANGED: Final = "chunk.status_changed"
CHUNK_KILL_REQUESTED: Final = "chunk.kill_requested"
CHUNK_STARTED: Final = "chunk.started"
CHUNK_FINISHED: Final = "chunk.finished"
CHUNK_FAILED: Final = "chunk.failed"
CHUNK_REQUEUED: Final = "chunk.requeued"

ALL: Final = frozenset(
    value for name, value in list(globals().items()) if name.isupper() and isinstance(value, str)
)
