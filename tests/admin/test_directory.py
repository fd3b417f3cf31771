"""Directory users against a real OpenLDAP (slapd on a loopback port): listed
with the local users, authenticated by bind, roles and groups from the group
mappings. Skipped, saying why, where slapd cannot be installed."""

from __future__ import annotations

import grpc
import pytest

from muster_proto.admin.v1 import admin_pb2 as pb
from muster_proto.admin.v1.admin_pb2_grpc import AdminServiceStub
from muster_services.admin.directory import Directory
from muster_services.admin.domain import LdapGroupMapping
from muster_services.admin.service import AdminService
from muster_services.core.database import Database
from muster_services.core.errors import Unavailable
from tests.admin import slapd as seed
from tests.admin.conftest import cheap_hasher
from tests.admin.slapd import Slapd

pytestmark = pytest.mark.database


def configure(service: AdminService, server: Slapd, **overrides: object) -> None:
    changes: dict[str, object] = {
        "enabled": True,
        "server_uri": server.uri,
        "bind_dn": seed.ADMIN_DN,
        "user_search_base": seed.PEOPLE,
        "user_search_filter": "(&(objectClass=inetOrgPerson)(uid={user}))",
        "user_name_attribute": "uid",
        "group_mappings": (
            LdapGroupMapping(seed.WRANGLERS, "", "administrator"),
            LdapGroupMapping(seed.ARTISTS, "artists", "user"),
        ),
        **overrides,
    }
    service.system.update_ldap_configuration(
        changes, {"bind_password": seed.ADMIN_PASSWORD}, persist=False
    )


def test_directory_users_get_roles_and_groups_from_the_mappings(
    slapd: Slapd, service: AdminService, db: Database
) -> None:
    configure(service, slapd)
    users = {u.name: u for u in Directory(db).list_users(None, 0)}
    assert set(users) == {"dora", "eli"}
    assert (users["dora"].role, users["dora"].groups, users["dora"].email) == (
        "administrator",
        ("artists",),
        "dora@farm",
    )
    assert (users["eli"].role, users["eli"].directory) == ("user", True)


def test_a_directory_user_authenticates_by_bind(
    slapd: Slapd, service: AdminService, db: Database
) -> None:
    configure(service, slapd)
    directory = Directory(db)
    user = directory.authenticate("eli", "eli-pw")
    assert user is not None and user.name == "eli"
    assert directory.authenticate("eli", "wrong") is None
    assert directory.authenticate("nobody", "x") is None
    assert directory.authenticate("*", "eli-pw") is None  # the name is escaped, not a pattern


def test_list_users_merges_directory_users_in_name_order(
    slapd: Slapd, stub: AdminServiceStub, db: Database
) -> None:
    stub.CreateUser(pb.CreateUserRequest(user=pb.User(name="bob", role=pb.USER_ROLE_USER)))
    stub.CreateUser(pb.CreateUserRequest(user=pb.User(name="fay", role=pb.USER_ROLE_USER)))
    stub.UpdateLdapConfiguration(
        pb.UpdateLdapConfigurationRequest(
            configuration=pb.LdapConfiguration(
                enabled=True,
                server_uri=slapd.uri,
                bind_dn=seed.ADMIN_DN,
                bind_password=seed.ADMIN_PASSWORD,
                user_search_base=seed.PEOPLE,
                user_search_filter="(uid={user})",
                user_name_attribute="uid",
                email_attribute="mail",
            )
        )
    )
    first = stub.ListUsers(pb.ListUsersRequest(page_size=2))
    rest = stub.ListUsers(pb.ListUsersRequest(page_size=2, page_token=first.next_page_token))
    listed = [(u.name, u.directory_user) for u in (*first.users, *rest.users)]
    assert listed == [("bob", False), ("dora", True), ("eli", True), ("fay", False)]
    assert stub.GetUser(pb.GetUserRequest(name="@directory@dora")).user.directory_user
    with pytest.raises(grpc.RpcError) as error:
        stub.DeleteUser(pb.DeleteUserRequest(name="dora"))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_an_unreachable_directory_is_unavailable_not_an_empty_list(
    slapd: Slapd, db: Database
) -> None:
    service = AdminService(db, cheap_hasher(), Directory(db))
    configure(service, slapd, server_uri="ldap://127.0.0.1:1")
    with pytest.raises(Unavailable, match="ldap"):
        service.accounts.list_users(0, "")
