"""Logging in: a user name and password become a signed, expiring token.

Local users are checked against their argon2 hash, directory users by an LDAP
bind. Failed logins are recorded (`login_failures`) and counted per user name
and per address over a sliding window, across every replica: past the limit
the next attempt is refused before any password is checked, which also keeps
argon2 from being used to burn the dispatcher's CPU.

The administrator of a new farm comes from here too (`bootstrap_administrator`):
no account exists with a default password, ever.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from muster_services.admin import store
from muster_services.admin.accounts import AccountsService
from muster_services.admin.directory import Directory
from muster_services.admin.domain import UserSpec
from muster_services.core.auth import TokenSigner, token_generation
from muster_services.core.caller import current_caller
from muster_services.core.database import Database
from muster_services.core.errors import (
    AlreadyExists,
    InvalidArgument,
    ResourceExhausted,
    Unauthenticated,
)

# At most this many failed logins per user name, and per address, within the window.
FAILURES_PER_USER = 5
FAILURES_PER_ADDRESS = 20
FAILURE_WINDOW = timedelta(minutes=5)
MAX_NAME = 256
MAX_PASSWORD = 1024
DIRECTORY_PREFIX = "@directory@"
REFUSED = "login failed: unknown user, wrong password or disabled account"


@dataclass(frozen=True)
class Session:
    """A successful login."""

    user_name: str
    role: str
    token: str
    expires_at: float


def peer_address(peer: str) -> str:
    """'ipv4:10.0.0.5:51234' -> '10.0.0.5'; 'ipv6:[::1]:5' -> '::1'."""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return peer or "unknown"
    host = rest.rsplit(":", 1)[0]
    return host.strip("[]")


class LoginService:
    def __init__(
        self,
        db: Database,
        accounts: AccountsService,
        directory: Directory | None,
        signer: TokenSigner,
        ttl_seconds: float,
    ) -> None:
        self.db = db
        self.accounts = accounts
        self.directory = directory
        self.signer = signer
        self.ttl_seconds = ttl_seconds

    def login(self, user_name: str, password: str) -> Session:
        name = user_name.removeprefix(DIRECTORY_PREFIX)
        if not name or len(name) > MAX_NAME or "\x00" in name:
            raise InvalidArgument(f"user_name: 1 to {MAX_NAME} characters, no NUL")
        if not password or len(password) > MAX_PASSWORD:
            raise InvalidArgument(f"password: 1 to {MAX_PASSWORD} characters")
        address = peer_address(current_caller().peer)
        self._check_rate(name, address)
        role = self._verify(name, password)
        if role is None:
            self._record_failure(name, address)
            raise Unauthenticated(REFUSED)
        with self.db.read() as connection:
            generation = token_generation(connection, name)
        token, expires_at = self.signer.issue(
            name, "user", role, self.ttl_seconds, generation=generation
        )
        return Session(name, role, token, expires_at)

    def _verify(self, name: str, password: str) -> str | None:
        """The role of the user this password proves, or None."""
        with self.db.read() as session:
            row = store.login_account(session, name)
        if row is not None and not row.directory:
            return row.role if self.accounts.verify_password(name, password) else None
        if row is not None and not row.enabled:
            return None
        if self.directory is not None:
            found = self.directory.authenticate(name, password)
            if found is not None and found.enabled:
                return found.role
        # Unknown user: spend the time a hash check would (verify_password
        # checks a throwaway hash), so the delay does not tell which names exist.
        self.accounts.verify_password("", password)
        return None

    def _check_rate(self, name: str, address: str) -> None:
        since = datetime.now(UTC) - FAILURE_WINDOW
        with self.db.read() as session:
            by_user, by_address = store.login_failures_since(session, name, address, since)
        minutes = int(FAILURE_WINDOW.total_seconds() // 60)
        if by_user >= FAILURES_PER_USER:
            raise ResourceExhausted(
                f"too many failed logins for {name!r}: try again within {minutes} minutes"
            )
        if by_address >= FAILURES_PER_ADDRESS:
            raise ResourceExhausted(
                f"too many failed logins from {address}: try again within {minutes} minutes"
            )

    def _record_failure(self, name: str, address: str) -> None:
        with self.db.transaction() as session:
            store.record_login_failure(
                session, name, address, forget_before=datetime.now(UTC) - FAILURE_WINDOW
            )


def bootstrap_administrator(accounts: AccountsService, name: str, password: str = "") -> str:
    """Create the first administrator when the farm has none.

    Returns the password it was created with ('' when an administrator
    already existed). With no `password`, a random one is generated.
    """
    with accounts.db.read() as session:
        exists = store.administrators_exist(session)
    if exists:
        return ""
    password = password or secrets.token_urlsafe(18)
    try:
        accounts.create_user(
            UserSpec(
                name=name, role="administrator", password=password, display_name="Administrator"
            )
        )
    except AlreadyExists:
        # Another replica starting at the same moment created it first (a
        # plain user of that name is still an error).
        with accounts.db.read() as session:
            if store.administrators_exist(session):
                return ""
        raise
    return password


def reset_password(accounts: AccountsService, name: str) -> str:
    """Give `name` a new random password (an operator's recovery, by CLI)."""
    password = secrets.token_urlsafe(18)
    accounts.update_user(name, {"password": password})
    return password
