"""The admin service as the server hosts it: users, pools, repositories,
configuration, logs, statistics, and its background work:

- at start, the configuration in effect becomes the stored one and the engine
  starts as start_engine_on_startup says (SystemService.start);
- the durable bus consumer "admin-action-log" writes the action and activity
  logs from every service's events;
- the statistics sampler takes samples at the configured interval.
"""

from __future__ import annotations

import grpc
from argon2 import PasswordHasher
from sqlalchemy.orm import Session

from muster_proto.admin.v1 import admin_pb2_grpc
from muster_services.admin.directory import Directory
from muster_services.admin.logs import record_event_batched
from muster_services.admin.service import AdminService
from muster_services.admin.servicer import ADMIN_SERVICE, AdminServicer
from muster_services.core.auth import security_for
from muster_services.core.background import Periodic
from muster_services.core.bus import DurableConsumer, Event, Listener
from muster_services.core.database import Database
from muster_services.core.server import Component
from muster_services.core.settings import Settings
from muster_services.nodes import topics as nodes_topics

__all__ = ["ADMIN_SERVICE", "AdminServicer", "build"]

# How often the sampler looks whether a sample is due (the interval itself
# is statistics_sample_interval_seconds, at least 5 s).
SAMPLER_TICK_SECONDS = 5.0
ACTION_LOG_CONSUMER = "admin-action-log"
# The action and activity logs are written a moment after the events, in
# fewer, larger batches (bus.Listener settle_seconds).
LOG_SETTLE_SECONDS = 0.25


class _Start:
    """Background item run once when the server starts."""

    def __init__(self, service: AdminService) -> None:
        self.service = service

    def start(self) -> None:
        self.service.system.start()

    def stop(self) -> None:
        pass


def handle_event(service: AdminService, session: Session, event: Event) -> None:
    """What the admin domain does with any event: log lines, and the end of a
    network scan the nodes service reports."""
    record_event_batched(session, event)
    if event.topic == nodes_topics.SYSTEM_NETWORK_SCAN_FINISHED:
        service.system.network_scan_finished(session)


def build(
    db: Database,
    settings: Settings,
    hasher: PasswordHasher | None = None,
    sampler_tick_seconds: float = SAMPLER_TICK_SECONDS,
) -> Component:
    """The component; tests pass cheap argon2 parameters and a slow sampler tick."""
    security = security_for(db)
    service = AdminService(db, hasher, Directory(db), security.signer, settings.token_ttl_seconds)
    servicer = AdminServicer(service)

    def register(server: grpc.aio.Server) -> None:
        admin_pb2_grpc.add_AdminServiceServicer_to_server(servicer, server)

    return Component(
        "admin",
        [ADMIN_SERVICE],
        register,
        background=[
            _Start(service),
            Listener(
                DurableConsumer(
                    db,
                    ACTION_LOG_CONSUMER,
                    lambda session, event: handle_event(service, session, event),
                ),
                settings.event_poll_seconds,
                settle_seconds=LOG_SETTLE_SECONDS,
            ),
            Periodic("admin-statistics", sampler_tick_seconds, service.statistics.sample_if_due),
        ],
        security=security,
    )
