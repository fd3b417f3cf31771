"""The jobs service as the server hosts it: queue, chunks, templates, backups."""

from __future__ import annotations

import functools
import logging
from typing import Any

import grpc

from muster_proto.jobs.v1 import chunk_runs_pb2_grpc, jobs_pb2, jobs_pb2_grpc
from muster_services.admin import topics as admin_topics
from muster_services.admin.configuration import read_configuration
from muster_services.core import metrics
from muster_services.core.auth import security_for
from muster_services.core.background import Periodic
from muster_services.core.bus import DurableConsumer, Event, Listener, LiveSubscription
from muster_services.core.database import Database
from muster_services.core.errors import NotFound
from muster_services.core.server import Component
from muster_services.core.settings import Settings
from muster_services.jobs import store
from muster_services.jobs.actions import ACTION_TOPICS, JobActions
from muster_services.jobs.domain import JobSpec
from muster_services.jobs.hooks import REACTIONS, HookRunner
from muster_services.jobs.logs import LogWaker
from muster_services.jobs.messages import job_message, spec_message
from muster_services.jobs.queue import SubmissionValidator
from muster_services.jobs.runs import ChunkRuns
from muster_services.jobs.runs_servicer import CHUNK_RUNS_SERVICE, ChunkRunsServicer
from muster_services.jobs.scheduler import Scheduler
from muster_services.jobs.service import JobsService
from muster_services.jobs.servicer import JOBS_SERVICE, JobsServicer
from muster_services.jobs.teardowns import finish_teardowns

__all__ = ["JOBS_SERVICE", "JobsServicer", "build"]

_LOG = logging.getLogger(__name__)


class _SeedTemplates:
    """Background item that loads the template files when the server starts
    (safe with several replicas: writers take turns and write only changes)."""

    def __init__(self, service: JobsService) -> None:
        self.service = service

    def start(self) -> None:
        self.service.templates.seed_templates()

    def stop(self) -> None:
        pass


class Retention:
    """The dispatcher configuration's completed-job policy and render-log
    retention (SnapshotsService.apply_retention), run every RETENTION_SECONDS by a
    Periodic. Every replica may run it; a job another replica removed first
    is skipped."""

    def __init__(self, db: Database, service: JobsService) -> None:
        self.db = db
        self.service = service

    def run_once(self) -> tuple[int, int]:
        with self.db.transaction() as session:
            config = read_configuration(session)
        removed, pruned = self.service.snapshots.apply_retention(
            config.completed_job_policy,
            config.completed_job_retention_hours,
            config.log_retention_days,
        )
        if removed or pruned:
            _LOG.info("retention: %d completed job(s) removed, %d log line(s)", removed, pruned)
        return removed, pruned


RETENTION_SECONDS = 300.0
# How often a replica looks for deletions and reinits left half done
# (teardowns.finish_teardowns).
TEARDOWNS_SECONDS = 30.0


# The hook worker lives until the hooks change or the dispatcher restarts.
HOOK_TOKEN_TTL_SECONDS = 30 * 24 * 3600.0


def submission_validator(hooks: HookRunner) -> SubmissionValidator:
    """onValidateJobSubmission as the submit use case asks it: the proposed job
    as a Job message, the hook's refusal reason or None."""

    def validate(spec: JobSpec) -> str | None:
        return hooks.validate(
            "onValidateJobSubmission", spec_message(spec), template_id=spec.template_id
        )

    return validate


def build(db: Database, settings: Settings) -> Component:
    security = security_for(db)
    hooks = HookRunner(
        settings.hooks_folder,
        timeout=settings.hook_timeout_seconds,
        token=lambda: security.service_token("dispatcher", HOOK_TOKEN_TTL_SECONDS),
        templates_folder=settings.templates_folder,
    )
    log_waker = LogWaker(db, settings.event_poll_seconds)
    service = JobsService(
        db,
        submission_validator(hooks),
        templates_dir=settings.templates_folder,
        log_waker=log_waker,
    )
    servicer = JobsServicer(service)
    runs = ChunkRunsServicer(ChunkRuns(db))

    def register(server: grpc.aio.Server) -> None:
        jobs_pb2_grpc.add_JobsServiceServicer_to_server(servicer, server)
        chunk_runs_pb2_grpc.add_ChunkRunsServiceServicer_to_server(runs, server)

    return Component(
        "jobs",
        [JOBS_SERVICE, CHUNK_RUNS_SERVICE],
        register,
        # Every replica runs a scheduler; one at a time leads (advisory lock).
        background=[
            _SeedTemplates(service),
            # Wakes this replica's render-log followers (FollowChunkLog).
            log_waker,
            # A changed template file is loaded again (every replica looks).
            Periodic("jobs-templates", settings.templates_poll_seconds, service.templates.sync),
            Periodic("jobs-retention", RETENTION_SECONDS, Retention(db, service).run_once),
            # Deletions and reinits whose process died between their two
            # transactions (teardowns.py).
            Periodic(
                "jobs-teardowns",
                TEARDOWNS_SECONDS,
                functools.partial(finish_teardowns, db),
                at_start=True,
            ),
            Scheduler(db, hooks=hooks),
            Listener(
                DurableConsumer(
                    db,
                    "dispatcher-hooks",
                    lambda session, event: _react(service, hooks, event),
                    topics=list(REACTIONS),
                    transactional=False,
                ),
                settings.event_poll_seconds,
                exclusive=True,
            ),
            # Pre/post job custom actions, one replica at a time, never twice.
            Listener(
                DurableConsumer(
                    db,
                    "job-actions",
                    JobActions(db, service.queue).handle,
                    topics=list(ACTION_TOPICS),
                    transactional=False,
                ),
                settings.event_poll_seconds,
                exclusive=True,
            ),
            _Hooks(hooks),
            # systemSoftRestart reloads every replica's hook files.
            LiveSubscription(
                db,
                [admin_topics.SYSTEM_SOFT_RESTART],
                lambda events: hooks.reload(),
                settings.event_poll_seconds,
                consumer="jobs-hooks-reload",
            ),
        ],
        on_listening=[lambda address: setattr(hooks, "dispatcher_address", address)],
        security=security,
        metrics=[metrics.queue_depth(db, store.unfinished_jobs)],
    )


def _react(service: JobsService, hooks: HookRunner, event: Event) -> None:
    """Run the reaction hooks of a job event (the job as it is now, when it exists)."""
    if not hooks.enabled:
        return
    job_id = int(event.payload.get("job_id", 0))
    try:
        row = service.queue.get_job(job_id)
        job: Any = job_message(row)
        template_id = row.template_id
    except NotFound:
        # Deleted: what the event kept of it.
        kept = event.payload.get("job") or {}
        template_id = kept.get("template_id")
        job = jobs_pb2.Job(
            id=job_id,
            name=str(kept.get("name", "")),
            owner=str(kept.get("owner", "")),
            parent_id=int(kept.get("parent_id") or 0),
            template_id=int(template_id or 0),
            project=str(kept.get("project", "")),
            department=str(kept.get("department", "")),
            priority=int(kept.get("priority") or 0),
        )
    hooks.react(event.topic, job, template_id=template_id)


class _Hooks:
    """Stops the hook worker with the server."""

    def __init__(self, hooks: HookRunner) -> None:
        self.hooks = hooks

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.hooks.close()
