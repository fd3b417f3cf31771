"""Use cases of users and groups (Muster's user* and group* functions).

Each public method runs in one transaction, validates everything before it
writes, and publishes user.* / group.* events (docs/admin.md lists them).
Passwords are hashed with argon2; the hash never leaves this module.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Row
from sqlalchemy.orm import Session

from muster_services.admin import domain, topics
from muster_services.admin import store as repo
from muster_services.admin.common import Named, check_writable
from muster_services.admin.domain import GroupSpec, UserSpec
from muster_services.admin.tables import groups, users
from muster_services.core.auth import revoke_user_tokens
from muster_services.core.bus import publish_change
from muster_services.core.caller import current_caller
from muster_services.core.database import Database
from muster_services.core.errors import FailedPrecondition, InvalidArgument, NotFound
from muster_services.core.paging import Page, page_request


@dataclass(frozen=True)
class UserView:
    """A user as the API shows it: no password, no hash."""

    name: str
    role: str
    groups: tuple[str, ...]
    enabled: bool
    email: str
    display_name: str
    max_job_priority: int
    notification_preferences: Mapping[str, bool]
    directory: bool
    created_at: datetime | None


@dataclass(frozen=True)
class GroupView:
    name: str
    description: str
    members: tuple[str, ...] = field(default_factory=tuple)


# Lists directory (LDAP) users after a name, in name order, at most `limit`
# (0: all); none while LDAP is disabled (muster_services/admin/directory.py).
DirectoryLister = Callable[[str | None, int], list[UserView]]


def _users(session: Session, rows: list[Row[Any]]) -> list[UserView]:
    memberships = repo.groups_of_users(session, [r.id for r in rows])
    return [
        UserView(
            name=r.name,
            role=r.role,
            groups=tuple(memberships.get(r.id, ())),
            enabled=r.enabled,
            email=r.email,
            display_name=r.display_name,
            max_job_priority=r.max_job_priority,
            notification_preferences=dict(r.notification_preferences),
            directory=r.directory,
            created_at=r.created_at,
        )
        for r in rows
    ]


def _groups(session: Session, rows: list[Row[Any]]) -> list[GroupView]:
    members = repo.members_of_groups(session, [r.id for r in rows])
    return [GroupView(r.name, r.description, tuple(members.get(r.id, ()))) for r in rows]


def _spec(row: Row[Any], groups_of: Sequence[str]) -> UserSpec:
    return UserSpec(
        name=row.name,
        role=row.role,
        groups=tuple(groups_of),
        enabled=row.enabled,
        email=row.email,
        display_name=row.display_name,
        max_job_priority=row.max_job_priority,
        notification_preferences=dict(row.notification_preferences),
    )


USERS = Named(users, "user", _users)
GROUPS = Named(groups, "group", _groups)


class AccountsService:
    def __init__(
        self,
        db: Database,
        hasher: PasswordHasher | None = None,
        directory: DirectoryLister | None = None,
    ) -> None:
        self.db = db
        # Tests pass cheap parameters; production uses argon2-cffi's defaults.
        self.hasher = hasher or PasswordHasher()
        self.directory = directory
        self._throwaway: str | None = None

    # --- users ---------------------------------------------------------------------------------

    def list_users(self, page_size: int, page_token: str, group: str = "") -> Page[UserView]:
        with self.db.transaction() as session:
            where = [repo.user_ids_in_group(session, group)] if group else []
            page = USERS.page(session, page_size, page_token, {"group": group}, *where)
        if self.directory is None or group:
            return page
        return self._with_directory_users(page, page_size, page_token, group)

    def _with_directory_users(
        self, page: Page[UserView], page_size: int, page_token: str, group: str
    ) -> Page[UserView]:
        """Merge the directory's users (not stored locally) into the page, in
        name order; the page token is the last name either way."""
        assert self.directory is not None
        request = page_request(page_size, page_token, {"group": group})
        listed = self.directory(request.after, request.size + 1)
        # A directory user with a local row is listed once, from the row.
        with self.db.transaction() as session:
            local = repo.existing_names(session, users, [u.name for u in listed])
        merged = sorted(
            [*page.items, *(u for u in listed if u.name not in local)], key=lambda u: u.name
        )
        last_local = page.items[-1].name if page.items and page.next_page_token else None
        if last_local is not None:
            merged = [u for u in merged if u.name <= last_local]
        more = len(merged) > request.size or bool(page.next_page_token)
        items = merged[: request.size]
        token = request.next_token(items[-1].name) if more and items else ""
        return Page(items, token)

    def get_user(self, name: str) -> UserView:
        name = domain.without_directory_prefix(name)
        with self.db.transaction() as session:
            row = repo.row_by_name(session, users, name)
            if row is not None:
                return USERS.view(session, row)
        if self.directory is not None:
            for user in self.directory(None, 0):
                if user.name == name:
                    return user
        raise NotFound(f"name: no user named {name!r}")

    def create_user(self, spec: UserSpec, request_id: str = "") -> UserView:
        domain.check_user(spec)
        return USERS.create(
            self.db,
            spec.name,
            request_id,
            # Hashed only once the name is known to be free.
            lambda: {
                "role": spec.role,
                "password_hash": self.hasher.hash(spec.password) if spec.password else None,
                "enabled": spec.enabled,
                "email": spec.email,
                "display_name": spec.display_name,
                "max_job_priority": spec.max_job_priority,
                "notification_preferences": dict(spec.notification_preferences),
            },
            (topics.USER_CREATED, {"user": spec.name, "role": spec.role}),
            check=lambda session: self._check_groups_exist(session, spec.groups),
            relate=lambda session, row_id: repo.set_user_groups(session, row_id, spec.groups),
        )

    def update_user(self, name: str, changes: Mapping[str, Any]) -> UserView:
        """Change the fields in `changes` (UserSpec field names); an empty
        password keeps the current one."""
        check_writable(changes, domain.USER_FIELDS, "user")
        with self.db.transaction() as session:
            # Administrators first, then the user: one lock order for every
            # change, so two concurrent ones wait instead of deadlocking.
            administrators = repo.enabled_administrators(session)
            row = USERS.row(session, name, "user.name", lock=True)
            current = _spec(row, repo.groups_of_users(session, [row.id]).get(row.id, []))
            values = {k: v for k, v in changes.items() if k != "password"}
            if "groups" in values:
                values["groups"] = tuple(values["groups"])
            spec = domain.check_user(dataclasses.replace(current, **values))
            password = str(changes.get("password", ""))
            domain.check_text("user.password", password, 1024)
            if row.directory and password:
                raise FailedPrecondition(
                    f"user.password: {name!r} is a directory user; change it in the directory"
                )
            domain.ensure_an_administrator_remains(administrators, name, spec.role, spec.enabled)
            self._check_groups_exist(session, spec.groups)
            update: dict[str, Any] = {
                "role": spec.role,
                "enabled": spec.enabled,
                "email": spec.email,
                "display_name": spec.display_name,
                "max_job_priority": spec.max_job_priority,
                "notification_preferences": dict(spec.notification_preferences),
            }
            if password:
                update["password_hash"] = self.hasher.hash(password)
            update = {k: v for k, v in update.items() if getattr(row, k) != v}
            repo.update_row(session, users, row.id, update)
            # The tokens the user holds name the old role, or a user who may
            # no longer sign in, or were got with a password someone else has
            # just reset: refused from now on. (A user changing its own
            # password keeps the session it changes it from.)
            revoked = (
                "role" in update
                or "enabled" in update
                or (bool(password) and current_caller().name != name)
            )
            if revoked:
                revoke_user_tokens(session, name)
            if spec.groups != current.groups:
                repo.set_user_groups(session, row.id, spec.groups)
            changed = sorted(
                {*update, *(["groups"] if spec.groups != current.groups else [])}
                - {"password_hash"}
            ) + (["password"] if password else [])
            publish_change(
                session,
                topics.USER_UPDATED,
                {"user": name, "fields": changed, "tokens_revoked": revoked},
                key=name,
            )
            return USERS.view(session, USERS.row(session, name))

    def delete_user(self, name: str) -> None:
        with self.db.transaction() as session:
            administrators = repo.enabled_administrators(session)  # lock order: see update_user
            row = USERS.row(session, name, lock=True)
            if row.directory:
                raise FailedPrecondition(
                    f"name: {name!r} is a directory user; remove it in the directory"
                )
            domain.ensure_an_administrator_remains(administrators, name, None, None)
            repo.delete_row(session, users, row.id)
            revoke_user_tokens(session, name)
            publish_change(
                session, topics.USER_DELETED, {"user": name, "tokens_revoked": True}, key=name
            )

    def verify_password(self, name: str, password: str) -> bool:
        """Whether an enabled local user has this password (authentication's
        local check; directory users bind through muster_services/admin/directory.py)."""
        with self.db.transaction() as session:
            row = repo.row_by_name(session, users, name)
        usable = row is not None and row.enabled and bool(row.password_hash) and bool(password)
        # Without a usable hash, check against a throwaway one anyway: the
        # answer then takes as long for unknown names as for known ones.
        stored = row.password_hash if usable and row is not None else self._throwaway_hash()
        try:
            return bool(self.hasher.verify(stored, password)) and usable
        except (VerificationError, InvalidHashError):
            return False

    def _throwaway_hash(self) -> str:
        if self._throwaway is None:
            self._throwaway = self.hasher.hash(secrets.token_hex(16))
        return self._throwaway

    def _check_groups_exist(self, session: Session, names: Sequence[str]) -> None:
        known = repo.existing_names(session, groups, names)
        missing = [g for g in names if g not in known]
        if missing:
            raise InvalidArgument(f"user.groups: no group named {missing[0]!r}")

    # --- groups --------------------------------------------------------------------------------

    def list_groups(self, page_size: int, page_token: str) -> Page[GroupView]:
        return GROUPS.list(self.db, page_size, page_token)

    def get_group(self, name: str) -> GroupView:
        return GROUPS.get(self.db, name)

    def create_group(self, spec: GroupSpec, request_id: str = "") -> GroupView:
        domain.check_group(spec)
        return GROUPS.create(
            self.db,
            spec.name,
            request_id,
            lambda: {"description": spec.description},
            (topics.GROUP_CREATED, {"group": spec.name, "members": list(spec.members)}),
            check=lambda session: self._check_members_exist(session, spec.members),
            relate=lambda session, row_id: repo.set_group_members(session, row_id, spec.members),
        )

    def update_group(self, name: str, changes: Mapping[str, Any]) -> GroupView:
        return GROUPS.update_listed(
            self.db,
            name,
            changes,
            "members",
            lambda name, description, members: domain.check_group(
                GroupSpec(name=name, description=description, members=members)
            ),
            repo.set_group_members,
            topics.GROUP_UPDATED,
            exist=self._check_members_exist,
        )

    def delete_group(self, name: str) -> None:
        GROUPS.delete(self.db, name, topics.GROUP_DELETED)

    def _check_members_exist(self, session: Session, names: Sequence[str]) -> None:
        known = repo.existing_names(session, users, names)
        missing = [n for n in names if n not in known]
        if missing:
            raise InvalidArgument(f"group.members: no user named {missing[0]!r}")
