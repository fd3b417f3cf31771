"""Use cases of the dispatcher configuration, the LDAP configuration, the
engine and the system controls (Muster's system* functions).

What each control does here and what the nodes service and agents do on its
event is in docs/admin.md ("Engine status and system controls").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from muster_services.admin import domain, topics
from muster_services.admin import store as repo
from muster_services.admin.configuration import read_configuration, read_ldap_configuration
from muster_services.admin.domain import DispatcherConfig, LdapConfig
from muster_services.core.bus import publish_change
from muster_services.core.caller import current_caller
from muster_services.core.database import Database
from muster_services.core.errors import FailedPrecondition, InvalidArgument

# A scan the nodes service never reported finished stops counting as running.
NETWORK_SCAN_TIMEOUT = timedelta(minutes=10)
DISPATCHER_SECRETS = ("email.smtp_password",)
LDAP_SECRETS = ("bind_password",)
_Config = TypeVar("_Config", DispatcherConfig, LdapConfig)


def _secrets(
    stored: Mapping[str, Any], given: Mapping[str, str], allowed: tuple[str, ...]
) -> dict[str, Any]:
    """Write-only values: an empty one keeps what is stored."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise InvalidArgument(f"update_mask: no secret field {unknown[0]!r}")
    merged = dict(stored)
    for name, value in given.items():
        domain.check_text(name, value, 1024)
        if value:
            merged[name] = value
    return merged


class SystemService:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- dispatcher configuration --------------------------------------------------------------

    def get_configuration(self) -> DispatcherConfig:
        with self.db.transaction() as session:
            return read_configuration(session)

    def update_configuration(
        self, changes: Mapping[str, Any], secrets: Mapping[str, str], persist: bool
    ) -> DispatcherConfig:
        """Apply `changes` ({"field": value, "email.smtp_host": value}) now, on
        every replica; with `persist` also store them for the next start."""
        return self._update(
            "dispatcher",
            read_configuration,
            domain.check_configuration,
            domain.CONFIG_FIELDS,
            "configuration",
            DISPATCHER_SECRETS,
            changes,
            secrets,
            persist,
        )

    # --- LDAP configuration --------------------------------------------------------------------

    def get_ldap_configuration(self) -> LdapConfig:
        with self.db.transaction() as session:
            return read_ldap_configuration(session)

    def update_ldap_configuration(
        self, changes: Mapping[str, Any], secrets: Mapping[str, str], persist: bool
    ) -> LdapConfig:
        return self._update(
            "ldap",
            read_ldap_configuration,
            domain.check_ldap_configuration,
            domain.LDAP_FIELDS,
            "ldap_configuration",
            LDAP_SECRETS,
            changes,
            secrets,
            persist,
        )

    def _update(
        self,
        name: str,
        read: Callable[[Session], _Config],
        check: Callable[[_Config], _Config],
        fields: Sequence[str],
        label: str,
        secret_names: tuple[str, ...],
        changes: Mapping[str, Any],
        secrets: Mapping[str, str],
        persist: bool,
    ) -> _Config:
        """One configuration's update: checked as a whole, stored (runtime or
        persisted) with its secrets, announced on the bus as config.changed."""
        with self.db.transaction() as session:
            row = repo.configuration_row(session, name, lock=True)
            current = read(session)
            config = check(domain.apply_changes(current, changes, fields, label))
            merged = _secrets(row.runtime_secrets, secrets, secret_names)
            repo.save_configuration(
                session,
                name,
                domain.configuration_to_json(config),
                merged,
                persist,
                current_caller().label,
            )
            publish_change(
                session,
                topics.CONFIG_CHANGED,
                {
                    "configuration": name,
                    "fields": sorted({*changes, *(k for k, v in secrets.items() if v)}),
                    "persisted": persist,
                },
            )
            return config

    # --- start ---------------------------------------------------------------------------------

    def start(self) -> None:
        """What a dispatcher start means for the admin domain: unstored
        configuration changes end, and the engine starts running or paused
        as start_engine_on_startup says."""
        with self.db.transaction() as session:
            repo.reset_runtime_configuration(session, "dispatcher")
            repo.reset_runtime_configuration(session, "ldap")
            config = read_configuration(session)
            status = "running" if config.start_engine_on_startup else "paused"
            publish_change(
                session, topics.CONFIG_CHANGED, {"configuration": "all", "reason": "start"}
            )
            engine = repo.engine_row(session, lock=True)
            if engine.status != status:
                repo.update_engine(
                    session,
                    status=status,
                    changed_by=current_caller().label,
                    changed_at=repo.database_now(session),
                )
                publish_change(
                    session, topics.ENGINE_CHANGED, {"status": status, "reason": "start"}
                )

    # --- engine --------------------------------------------------------------------------------

    def engine_status(self) -> str:
        with self.db.transaction() as session:
            return str(repo.engine_row(session).status)

    def toggle_engine(self) -> str:
        with self.db.transaction() as session:
            engine = repo.engine_row(session, lock=True)
            status = "paused" if engine.status == "running" else "running"
            repo.update_engine(
                session,
                status=status,
                changed_by=current_caller().label,
                changed_at=repo.database_now(session),
            )
            publish_change(session, topics.ENGINE_CHANGED, {"status": status})
            return status

    # --- system controls -----------------------------------------------------------------------

    def soft_restart(self) -> None:
        """Ask every service and agent to reload (the system.soft_restart
        event); the queue and running work are untouched."""
        with self.db.transaction() as session:
            publish_change(session, topics.SYSTEM_SOFT_RESTART, {})

    def reset_statistics_counters(self) -> None:
        with self.db.transaction() as session:
            now = repo.database_now(session)
            repo.update_engine(session, statistics_reset_at=now)
            publish_change(session, topics.SYSTEM_STATISTICS_RESET, {"reset_at": now.isoformat()})

    def start_network_scan(self) -> list[str]:
        """Start a discovery scan of the configured ranges; the nodes service
        runs it (the system.network_scan event). Returns the ranges."""
        with self.db.transaction() as session:
            ranges = list(read_configuration(session).network_scan_ranges)
            if not ranges:
                raise FailedPrecondition(
                    "configuration.network_scan_ranges: no range to scan is configured"
                )
            engine = repo.engine_row(session, lock=True)
            now = repo.database_now(session)
            started, finished = engine.network_scan_started_at, engine.network_scan_finished_at
            if (
                started is not None
                and (finished is None or finished < started)
                and now - started < NETWORK_SCAN_TIMEOUT
            ):
                raise FailedPrecondition(
                    f"a network scan started at {started.isoformat()} is still running"
                )
            repo.update_engine(session, network_scan_started_at=now)
            publish_change(
                session,
                topics.SYSTEM_NETWORK_SCAN,
                {"ranges": ranges, "started_at": now.isoformat()},
            )
            return ranges

    def network_scan_finished(self, session: Session) -> None:
        """The nodes service reported the scan done (system.network_scan_finished)."""
        repo.update_engine(session, network_scan_finished_at=repo.database_now(session))
