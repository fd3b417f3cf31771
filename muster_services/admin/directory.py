"""Directory (LDAP) users through ldap3, with the LDAP configuration in effect.

Listing binds as the configured bind DN and searches the user base with the
user filter ("{user}" replaced by "*"); authentication searches the user's
entry and binds as it with the given password. A directory user's role and
dispatcher groups come from the group mappings (a mapped group entry lists
the user in member, uniqueMember or memberUid).
"""

from __future__ import annotations

from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from muster_services.admin import domain
from muster_services.admin.accounts import UserView
from muster_services.admin.configuration import read_ldap_configuration, read_secrets
from muster_services.admin.domain import LdapConfig
from muster_services.core.database import Database
from muster_services.core.errors import Unavailable

ldap: Any = ldap3  # ldap3 ships no type information


class Directory:
    def __init__(self, db: Database, timeout_seconds: float = 5.0) -> None:
        self.db = db
        self.timeout_seconds = timeout_seconds

    def _settings(self) -> tuple[LdapConfig, str]:
        with self.db.transaction() as session:
            config = read_ldap_configuration(session)
            secret = str(read_secrets(session, "ldap").get("bind_password", ""))
        return config, secret

    def _connection(self, config: LdapConfig, user: str, password: str) -> Any:
        server = ldap.Server(config.server_uri, connect_timeout=self.timeout_seconds)
        connection = ldap.Connection(
            server,
            user=user or None,
            password=password or None,
            receive_timeout=max(1, int(self.timeout_seconds)),
            raise_exceptions=False,
        )
        if config.use_tls and config.server_uri.startswith("ldap://"):
            connection.open()
            connection.start_tls()
        return connection

    def _search(self, config: LdapConfig, secret: str, who: str) -> list[Any]:
        connection = self._connection(config, config.bind_dn, secret)
        try:
            if not connection.bind():
                raise Unavailable(f"ldap: cannot bind as {config.bind_dn!r}: {connection.result}")
            search = config.user_search_filter.replace("{user}", who)
            attributes = [config.user_name_attribute, "cn"]
            if config.email_attribute:
                attributes.append(config.email_attribute)
            connection.search(config.user_search_base, search, attributes=attributes)
            entries = list(connection.entries)
            groups = {
                m.ldap_group_dn: self._group_members(connection, m.ldap_group_dn)
                for m in config.group_mappings
            }
        except LDAPException as error:
            raise Unavailable(f"ldap: {config.server_uri} unavailable: {error}") from None
        finally:
            connection.unbind()
        return [(entry, groups) for entry in entries]

    def _group_members(self, connection: Any, group_dn: str) -> set[str]:
        connection.search(
            group_dn,
            "(objectClass=*)",
            search_scope=ldap.BASE,
            attributes=["member", "uniqueMember", "memberUid"],
        )
        members: set[str] = set()
        for entry in connection.entries:
            for attribute in ("member", "uniqueMember", "memberUid"):
                if attribute in entry:
                    members.update(str(v).casefold() for v in entry[attribute].values)
        return members

    def _user(self, config: LdapConfig, entry: Any, groups: dict[str, set[str]]) -> UserView:
        name = str(entry[config.user_name_attribute].value)
        keys = {entry.entry_dn.casefold(), name.casefold()}
        member_of = [dn for dn, members in groups.items() if keys & members]
        role, group_names = domain.directory_role(config, member_of)
        email = ""
        if config.email_attribute and config.email_attribute in entry:
            email = str(entry[config.email_attribute].value or "")
        return UserView(
            name=name,
            role=role,
            groups=tuple(group_names),
            enabled=True,
            email=email,
            display_name=str(entry["cn"].value or "") if "cn" in entry else "",
            max_job_priority=0,
            notification_preferences={},
            directory=True,
            created_at=None,
        )

    def list_users(self, after: str | None, limit: int) -> list[UserView]:
        """Directory users after `after` in name order (all when limit is 0);
        none when LDAP is disabled."""
        config, secret = self._settings()
        if not config.enabled:
            return []
        found = sorted(
            (
                self._user(config, entry, groups)
                for entry, groups in self._search(config, secret, "*")
            ),
            key=lambda u: u.name,
        )
        found = [u for u in found if after is None or u.name > after]
        return found[:limit] if limit else found

    def authenticate(self, name: str, password: str) -> UserView | None:
        """The directory user when `password` binds as their entry, else None."""
        config, secret = self._settings()
        if not config.enabled or not password:
            return None
        matches = self._search(config, secret, escape_filter_chars(name))
        if len(matches) != 1:
            return None
        entry, groups = matches[0]
        connection = self._connection(config, entry.entry_dn, password)
        try:
            if not connection.bind():
                return None
        except LDAPException:
            return None
        finally:
            connection.unbind()
        return self._user(config, entry, groups)
