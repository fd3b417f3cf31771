"""Logging in: tokens for the right password only, the same answer for every
wrong one, rate limits per user and per address, directory users by bind."""

from __future__ import annotations

import time

import grpc
import pytest

from muster_proto.admin.v1 import admin_pb2 as pb
from muster_proto.admin.v1.admin_pb2_grpc import AdminServiceStub
from muster_services.admin import login as login_module
from muster_services.admin.directory import Directory
from muster_services.admin.domain import UserSpec
from muster_services.admin.login import REFUSED, bootstrap_administrator, peer_address
from muster_services.admin.service import AdminService
from muster_services.core.auth import auth_metadata, signer_for
from muster_services.core.caller import Caller, acting_as
from muster_services.core.database import Database
from muster_services.core.errors import InvalidArgument, ResourceExhausted, Unauthenticated
from tests.admin.conftest import cheap_hasher
from tests.admin.slapd import Slapd

pytestmark = pytest.mark.database


def _user(service: AdminService, name: str, password: str, **fields: object) -> None:
    service.accounts.create_user(
        UserSpec(name=name, role=str(fields.pop("role", "user")), password=password, **fields)  # type: ignore[arg-type]
    )


def _refused(stub: AdminServiceStub, user: str, password: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        stub.Login(pb.LoginRequest(user_name=user, password=password))
    return error.value


def test_the_right_password_gets_a_token_that_opens_the_api(
    stub: AdminServiceStub, service: AdminService
) -> None:
    _user(service, "alice", "alice-password-1", role="administrator")
    reply = stub.Login(pb.LoginRequest(user_name="alice", password="alice-password-1"))
    assert reply.role == pb.USER_ROLE_ADMINISTRATOR
    assert reply.expire_time.seconds == pytest.approx(time.time() + 12 * 3600, abs=60)
    users = stub.ListUsers(pb.ListUsersRequest(), metadata=auth_metadata(reply.token)).users
    assert "alice" in [u.name for u in users]


def test_unknown_user_wrong_password_and_disabled_account_get_one_answer(
    stub: AdminServiceStub, service: AdminService
) -> None:
    _user(service, "bob", "bob-password-1")
    _user(service, "gone", "gone-password-1", enabled=False)
    for user, password in (("bob", "wrong"), ("nobody", "x"), ("gone", "gone-password-1")):
        error = _refused(stub, user, password)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error.details() == REFUSED


@pytest.mark.parametrize(
    ("user", "password"),
    [("", "x"), ("a" * 300, "x"), ("bob\x00", "x"), ("bob", ""), ("bob", "p" * 2000)],
)
def test_empty_or_oversized_credentials_are_invalid(
    service: AdminService, user: str, password: str
) -> None:
    with pytest.raises(InvalidArgument):
        service.login.login(user, password)


def test_failed_logins_are_limited_per_user_even_with_the_right_password_then(
    service: AdminService,
) -> None:
    _user(service, "carol", "carol-password-1")
    with acting_as(Caller(peer="ipv4:10.1.1.1:4000")):
        for _ in range(login_module.FAILURES_PER_USER):
            with pytest.raises(Unauthenticated):
                service.login.login("carol", "guess")
        with pytest.raises(ResourceExhausted, match="too many failed logins for 'carol'"):
            service.login.login("carol", "carol-password-1")
    # Another user from another address is not affected.
    _user(service, "dan", "dan-password-1")
    with acting_as(Caller(peer="ipv4:10.1.1.2:4000")):
        assert service.login.login("dan", "dan-password-1").role == "user"


def test_failed_logins_are_limited_per_address(service: AdminService) -> None:
    _user(service, "erin", "erin-password-1")
    with acting_as(Caller(peer="ipv6:[fd00::7]:4000")):
        for n in range(login_module.FAILURES_PER_ADDRESS):
            with pytest.raises(Unauthenticated):
                service.login.login(f"probe{n}", "guess")
        with pytest.raises(ResourceExhausted, match="from fd00::7"):
            service.login.login("erin", "erin-password-1")
    with acting_as(Caller(peer="ipv4:10.9.9.9:1")):
        assert service.login.login("erin", "erin-password-1").user_name == "erin"


def test_peer_addresses_lose_their_port() -> None:
    assert peer_address("ipv4:10.0.0.5:51234") == "10.0.0.5"
    assert peer_address("ipv6:[::1]:5") == "::1"
    assert peer_address("unix:/tmp/s") == "unix:/tmp/s"


def test_the_first_administrator_is_created_once_with_a_random_or_given_password(
    service: AdminService,
) -> None:
    password = bootstrap_administrator(service.accounts, "admin")
    assert len(password) >= 20
    assert bootstrap_administrator(service.accounts, "admin") == ""  # exists now
    assert service.login.login("admin", password).role == "administrator"


def test_replicas_bootstrapping_at_once_create_one_administrator_and_none_fails(
    service: AdminService,
) -> None:
    # Found by the soak: six replicas started together on a fresh database;
    # the ones that lost the race to insert the administrator died.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(6) as pool:
        results = list(
            pool.map(lambda _: bootstrap_administrator(service.accounts, "admin"), range(6))
        )
    created = [p for p in results if p]
    assert len(created) == 1
    assert service.login.login("admin", created[0]).role == "administrator"


def test_a_token_signed_by_another_farm_is_refused(stub: AdminServiceStub, db: Database) -> None:
    from muster_services.core.auth import TokenSigner

    foreign = TokenSigner(b"another-farm-key" * 2).issue("admin", "user", "administrator", 60)[0]
    mine = signer_for(db).issue("admin", "user", "administrator", 60)[0]
    with pytest.raises(grpc.RpcError) as error:
        stub.ListUsers(pb.ListUsersRequest(), metadata=auth_metadata(foreign))
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    stub.ListUsers(pb.ListUsersRequest(), metadata=auth_metadata(mine))


def test_a_directory_user_logs_in_by_bind_with_the_directory_role(
    slapd: Slapd, db: Database
) -> None:
    from tests.admin.test_directory import configure

    service = AdminService(db, cheap_hasher(), Directory(db))
    configure(service, slapd)
    dora = service.login.login("@directory@dora", "dora-pw")
    assert (dora.user_name, dora.role) == ("dora", "administrator")
    assert service.login.login("eli", "eli-pw").role == "user"
    with pytest.raises(Unauthenticated):
        service.login.login("eli", "wrong")


@pytest.mark.parametrize("change", ["delete", "disable", "demote", "reset"])
def test_deleting_disabling_or_demoting_a_user_revokes_the_tokens_they_hold(
    stub: AdminServiceStub, service: AdminService, change: str
) -> None:
    _user(service, "dora", "dora-password-1", role="administrator")
    _user(service, "keeper", "keeper-password-1", role="administrator")
    token = stub.Login(pb.LoginRequest(user_name="dora", password="dora-password-1")).token
    held = auth_metadata(token)
    stub.ListUsers(pb.ListUsersRequest(), metadata=held)  # an administrator's call: open
    if change == "delete":
        service.accounts.delete_user("dora")
    elif change == "disable":
        service.accounts.update_user("dora", {"enabled": False})
    elif change == "demote":
        service.accounts.update_user("dora", {"role": "user"})
    else:  # an administrator resets the password
        with acting_as(Caller(name="keeper", role="administrator", kind="user")):
            service.accounts.update_user("dora", {"password": "dora-password-2"})

    def refused() -> str:
        try:
            stub.ListUsers(pb.ListUsersRequest(), metadata=held)
        except grpc.RpcError as error:
            return f"{error.code().name}: {error.details()}"
        return ""

    deadline = time.monotonic() + 10  # every replica reads the generations every 2 s
    while not refused() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert refused() == (
        "UNAUTHENTICATED: token of 'dora' revoked (the account was changed): log in again"
    )
    if change in ("demote", "reset"):  # a new login works, with the new role
        password = "dora-password-2" if change == "reset" else "dora-password-1"
        again = stub.Login(pb.LoginRequest(user_name="dora", password=password))
        assert again.role == (
            pb.USER_ROLE_USER if change == "demote" else pb.USER_ROLE_ADMINISTRATOR
        )
        me = stub.GetUser(pb.GetUserRequest(name="dora"), metadata=auth_metadata(again.token))
        assert me.user.name == "dora"
    # Another user's token is not touched.
    other = stub.Login(pb.LoginRequest(user_name="keeper", password="keeper-password-1")).token
    stub.ListUsers(pb.ListUsersRequest(), metadata=auth_metadata(other))


def test_a_user_changing_its_own_password_keeps_its_session(
    stub: AdminServiceStub, service: AdminService
) -> None:
    _user(service, "erin", "erin-password-1")
    token = stub.Login(pb.LoginRequest(user_name="erin", password="erin-password-1")).token
    with acting_as(Caller(name="erin", role="user", kind="user")):
        service.accounts.update_user("erin", {"password": "erin-password-2"})
    time.sleep(3)  # past a refresh of the generations
    me = stub.GetUser(pb.GetUserRequest(name="erin"), metadata=auth_metadata(token))
    assert me.user.name == "erin"
