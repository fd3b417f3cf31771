"""The backup store's use cases (muster_services/jobs/backups.py) on a real database."""

from __future__ import annotations

import dataclasses

import pytest

from muster_services.jobs.enums import RESTORE_PARENTS
from muster_services.jobs.service import JobsService
from tests.jobs.conftest import SPEC

pytestmark = pytest.mark.database


def test_restore_parents_recreates_the_missing_folder_chain(service: JobsService) -> None:
    outer = service.queue.create_folder(-1, "alice", "outer")
    inner = service.queue.create_folder(outer, "alice", "inner")
    job = service.queue.submit_job(dataclasses.replace(SPEC, parent_id=inner))
    backup = service.backups.archive_job(job.id, "fail")
    service.queue.delete_job(outer)
    restored = service.backups.restore_job(backup, RESTORE_PARENTS, 0)
    assert service.queue.get_job(restored).parent_id == inner
    assert service.queue.get_job(inner).parent_id == outer
    assert service.queue.get_job(outer).parent_id is None
