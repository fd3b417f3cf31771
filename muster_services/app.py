"""Composition root: which components a process hosts, built on one database."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from muster_gateway.tls import ServerTLS
from muster_services.admin.configuration import read_configuration
from muster_services.core import migrate
from muster_services.core.background import Periodic
from muster_services.core.bus import prune_events
from muster_services.core.database import Database, DatabaseRuntime
from muster_services.core.server import (
    Component,
    Connections,
    DispatcherServer,
    serve_until_signalled,
)
from muster_services.core.settings import Settings

_LOG = logging.getLogger(__name__)

SERVICE_NAMES = ("jobs", "nodes", "admin")


def _builders() -> dict[str, Callable[[Database, Settings], Component]]:
    # Imported here so `dispatcher migrate` needs no generated code.
    from muster_services.admin import component as admin
    from muster_services.jobs import component as jobs
    from muster_services.nodes import component as nodes

    return {"jobs": jobs.build, "nodes": nodes.build, "admin": admin.build}


def build_components(names: Sequence[str], db: Database, settings: Settings) -> list[Component]:
    builders = _builders()
    unknown = [n for n in names if n not in builders]
    if unknown:
        raise ValueError(f"unknown service {', '.join(unknown)}; choose from {SERVICE_NAMES}")
    components = [builders[name](db, settings) for name in names]
    # Every process prunes the outbox; concurrent DELETEs from replicas are harmless.
    components[0].background.append(
        Periodic("prune-events", 3600.0, lambda: _prune(db, settings.event_retention_hours))
    )
    return components


def _prune(db: Database, hours: float | None) -> None:
    with db.transaction() as session:
        if hours is None:
            hours = float(read_configuration(session).event_retention_hours)
        removed = prune_events(session, hours)
    if removed:
        _LOG.info("pruned %d events older than %.0f h", removed, hours)


def bootstrap_administrator(db: Database, settings: Settings) -> str:
    """Create the first administrator from MUSTER_ADMIN_PASSWORD_FILE when the
    farm has none; returns the password used ('' when none was created)."""
    from muster_services.admin.accounts import AccountsService
    from muster_services.admin.login import bootstrap_administrator as create

    configured = settings.admin_password()
    if not configured:
        return ""
    created = create(AccountsService(db), settings.admin_user, configured)
    if created:
        _LOG.info("created the administrator %r from the password file", settings.admin_user)
    return created


def serve(
    names: Sequence[str],
    settings: Settings,
    on_ready: Callable[[str, int], None],
    run_migrations: bool = True,
    prepare: Callable[[Database], None] | None = None,
    on_stopping: Callable[[], None] | None = None,
) -> None:
    """Run the named services in this process until SIGINT/SIGTERM.

    `prepare` runs once the schema is current, before the server starts
    (`dispatcher run` creates the local administrator there); `on_stopping`
    on SIGINT/SIGTERM, before the server stops (`dispatcher run` stops its
    local agents there, so they report their chunks to a serving dispatcher)."""
    runtime = DatabaseRuntime(settings)
    try:
        url = runtime.url()
        if run_migrations:
            migrate.upgrade(url)
        else:
            try:
                migrate.require_head(url)
            except migrate.SchemaBehind as exc:
                # A pod started before the migration Job: say what to run.
                raise SystemExit(f"dispatcher: {exc}") from None
        db = Database(url, pool_size=settings.db_pool_size)
        try:
            if prepare is None:
                bootstrap_administrator(db, settings)
            else:
                prepare(db)
            components = build_components(names, db, settings)
            host = settings.listen.rsplit(":", 1)[0]
            tls = ServerTLS.from_env()
            asyncio.run(
                serve_until_signalled(
                    lambda: DispatcherServer(
                        components,
                        worker_threads=settings.worker_threads,
                        tls=tls,
                        rpc_metrics=bool(settings.metrics_listen),
                        connections=Connections.of(settings),
                    ),
                    settings.listen,
                    settings.shutdown_grace_seconds,
                    lambda port: on_ready(host, port),
                    settings.health_listen,
                    on_stopping,
                    settings.metrics_listen,
                )
            )
        finally:
            db.dispose()
    finally:
        runtime.stop()
