"""The admin service layer, assembled: one object per part of the domain.

accounts (users, groups), resources (pools, repositories), system
(configuration, LDAP configuration, engine, system controls), logs (dispatcher
log, activity and action logs) and statistics (samples). Each part's use cases
run in one transaction and publish their events (docs/admin.md).
"""

from __future__ import annotations

from argon2 import PasswordHasher

from muster_services.admin.accounts import AccountsService
from muster_services.admin.directory import Directory
from muster_services.admin.login import LoginService
from muster_services.admin.logs import LogsService
from muster_services.admin.resources import ResourcesService
from muster_services.admin.statistics import StatisticsService
from muster_services.admin.system import SystemService
from muster_services.core.auth import TokenSigner, signer_for
from muster_services.core.database import Database
from muster_services.core.settings import DEFAULT_TOKEN_TTL_SECONDS


class AdminService:
    def __init__(
        self,
        db: Database,
        hasher: PasswordHasher | None = None,
        directory: Directory | None = None,
        signer: TokenSigner | None = None,
        token_ttl_seconds: float = DEFAULT_TOKEN_TTL_SECONDS,
    ) -> None:
        self.db = db
        self.accounts = AccountsService(db, hasher, directory.list_users if directory else None)
        self.login = LoginService(
            db, self.accounts, directory, signer or signer_for(db), token_ttl_seconds
        )
        self.resources = ResourcesService(db)
        self.system = SystemService(db)
        self.logs = LogsService(db)
        self.statistics = StatisticsService(db)
