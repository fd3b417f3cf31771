"""The configuration in effect, as every service reads it.

Pure reads (no writes, no events): the scheduler, the nodes service and the
agents' session read the dispatcher configuration here, so a change made on
any admin replica applies on every replica at its next read. The admin
service keeps `runtime_config` (in effect) and `config` (stored) in the
dispatcher_config row; see docs/admin.md.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from muster_services.admin import domain
from muster_services.admin import store as repo
from muster_services.admin.domain import DispatcherConfig, LdapConfig
from muster_services.core.database import Database


def read_configuration(session: Session) -> DispatcherConfig:
    """The dispatcher configuration in effect now (defaults for unset fields)."""
    return domain.configuration_from_json(
        repo.configuration_row(session, "dispatcher").runtime_config
    )


def effective_configuration(db: Database) -> DispatcherConfig:
    """read_configuration in a transaction of its own."""
    with db.transaction() as session:
        return read_configuration(session)


def read_secrets(session: Session, which: str) -> dict[str, Any]:
    """The write-only values in effect ("email.smtp_password", "bind_password")."""
    return dict(repo.configuration_row(session, which).runtime_secrets)


def read_ldap_configuration(session: Session) -> LdapConfig:
    return domain.ldap_configuration_from_json(
        repo.configuration_row(session, "ldap").runtime_config
    )
