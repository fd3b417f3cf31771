"""Every AdminService RPC through a real server with blocking stubs: success,
each failure path, and proof that a refused call changed nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, cast

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import insert, text

from muster_proto.admin.v1 import admin_pb2 as pb
from muster_proto.admin.v1.admin_pb2_grpc import AdminServiceStub
from muster_proto.common.v1 import common_pb2
from muster_services.admin.tables import (
    action_log,
    activity_log,
    history_samples,
    statistics_samples,
)
from muster_services.core.database import Database
from tests.support import auth

pytestmark = pytest.mark.database
Code = grpc.StatusCode
ADMIN = pb.USER_ROLE_ADMINISTRATOR
USER = pb.USER_ROLE_USER


def refused(call: Callable[[], Any], code: grpc.StatusCode, *words: str) -> str:
    with pytest.raises(grpc.RpcError) as error:
        call()
    assert error.value.code() == code, error.value.details()
    details = str(error.value.details())
    for word in words:
        assert word in details, details
    return details


def state(stub: AdminServiceStub) -> str:
    """Everything the admin service holds, as text: equal before and after a
    refused call proves it changed nothing."""
    return "\n".join(
        str(reply)
        for reply in (
            stub.ListUsers(pb.ListUsersRequest()),
            stub.ListGroups(pb.ListGroupsRequest()),
            stub.ListPools(pb.ListPoolsRequest()),
            stub.ListRepositories(pb.ListRepositoriesRequest()),
            stub.GetDispatcherConfiguration(pb.GetDispatcherConfigurationRequest()),
            stub.GetLdapConfiguration(pb.GetLdapConfigurationRequest()),
            stub.GetEngineStatus(pb.GetEngineStatusRequest()),
            stub.ListLogEntries(pb.ListLogEntriesRequest(include_internal=True)),
            stub.GetStatisticsBounds(pb.GetStatisticsBoundsRequest()),
            stub.GetHistoryBounds(pb.GetHistoryBoundsRequest()),
        )
    )


def add_user(
    stub: AdminServiceStub, name: str = "root", role: pb.UserRole.ValueType = ADMIN, **fields: Any
) -> pb.User:
    user = pb.User(name=name, role=role, password="pw", enabled=True, **fields)
    return stub.CreateUser(pb.CreateUserRequest(user=user)).user


def stamp(value: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(value)
    return result


# --- users ----------------------------------------------------------------------------------------


def test_a_user_is_created_read_listed_and_never_shows_a_password(stub: AdminServiceStub) -> None:
    stub.CreateGroup(pb.CreateGroupRequest(group=pb.Group(name="artists")))
    created = add_user(
        stub,
        "ann",
        USER,
        groups=["artists"],
        email="ann@studio",
        max_job_priority=100,
        notification_preferences=common_pb2.NotificationPreferences(job_completed=True),
    )
    assert created.password == "" and created.groups == ["artists"]
    assert created.create_time.seconds > 0
    assert stub.GetUser(pb.GetUserRequest(name="ann")).user == created
    assert stub.GetUser(pb.GetUserRequest(name="@directory@ann")).user == created
    listed = stub.ListUsers(pb.ListUsersRequest(group="artists")).users
    assert [u.name for u in listed] == ["ann"]
    assert all(u.password == "" for u in stub.ListUsers(pb.ListUsersRequest()).users)


def test_users_page_in_name_order(stub: AdminServiceStub) -> None:
    for name in ("cy", "ann", "bob"):
        add_user(stub, name)
    first = stub.ListUsers(pb.ListUsersRequest(page_size=2))
    second = stub.ListUsers(pb.ListUsersRequest(page_size=2, page_token=first.next_page_token))
    assert [u.name for u in (*first.users, *second.users)] == ["ann", "bob", "cy"]
    assert second.next_page_token == ""
    refused(lambda: stub.ListUsers(pb.ListUsersRequest(page_token="junk")), Code.INVALID_ARGUMENT)
    refused(lambda: stub.ListUsers(pb.ListUsersRequest(page_size=-1)), Code.INVALID_ARGUMENT)


def test_a_bad_user_is_refused_naming_the_field_and_nothing_changes(stub: AdminServiceStub) -> None:
    add_user(stub)
    before = state(stub)
    cases = [
        (pb.User(name="", role=USER), Code.INVALID_ARGUMENT, "user.name"),
        (pb.User(name="a/b", role=USER), Code.INVALID_ARGUMENT, "user.name"),
        (pb.User(name="bob"), Code.INVALID_ARGUMENT, "user.role"),
        (pb.User(name="bob", role=USER, groups=["ghosts"]), Code.INVALID_ARGUMENT, "user.groups"),
        (
            pb.User(name="bob", role=USER, max_job_priority=70000),
            Code.INVALID_ARGUMENT,
            "user.max_job_priority",
        ),
        (pb.User(name="root", role=USER), Code.ALREADY_EXISTS, "user.name"),
    ]
    for user, code, word in cases:
        refused(partial(stub.CreateUser, pb.CreateUserRequest(user=user)), code, word)
    refused(lambda: stub.GetUser(pb.GetUserRequest(name="ghost")), Code.NOT_FOUND, "ghost")
    assert state(stub) == before


def test_a_retried_create_user_returns_the_first_user(stub: AdminServiceStub) -> None:
    request = pb.CreateUserRequest(user=pb.User(name="ann", role=USER), request_id="req-1")
    assert stub.CreateUser(request).user == stub.CreateUser(request).user


def test_update_user_changes_the_masked_fields_only(stub: AdminServiceStub) -> None:
    add_user(stub)
    add_user(stub, "ann", USER, email="ann@studio")
    reply = stub.UpdateUser(
        pb.UpdateUserRequest(
            user=pb.User(name="ann", display_name="Ann A.", email="ignored@x"),
            update_mask=FieldMask(paths=["display_name"]),
        )
    ).user
    assert (reply.display_name, reply.email, reply.role) == ("Ann A.", "ann@studio", USER)
    whole = pb.User(name="ann", role=ADMIN, enabled=True, email="a@b")
    reply = stub.UpdateUser(pb.UpdateUserRequest(user=whole)).user
    assert (reply.role, reply.email, reply.display_name) == (ADMIN, "a@b", "")


def test_update_user_failures_change_nothing(stub: AdminServiceStub) -> None:
    add_user(stub)
    add_user(stub, "ann", USER)
    before = state(stub)
    refused(
        lambda: stub.UpdateUser(pb.UpdateUserRequest(user=pb.User(name="ghost", role=USER))),
        Code.NOT_FOUND,
        "ghost",
    )
    refused(
        lambda: stub.UpdateUser(
            pb.UpdateUserRequest(
                user=pb.User(name="ann", email="bad"), update_mask=FieldMask(paths=["email"])
            )
        ),
        Code.INVALID_ARGUMENT,
        "user.email",
    )
    refused(
        lambda: stub.UpdateUser(
            pb.UpdateUserRequest(user=pb.User(name="ann"), update_mask=FieldMask(paths=["name"]))
        ),
        Code.INVALID_ARGUMENT,
        "update_mask",
    )
    refused(
        lambda: stub.UpdateUser(
            pb.UpdateUserRequest(
                user=pb.User(name="root", role=USER), update_mask=FieldMask(paths=["role"])
            )
        ),
        Code.FAILED_PRECONDITION,
        "last enabled administrator",
    )
    refused(
        lambda: stub.UpdateUser(
            pb.UpdateUserRequest(
                user=pb.User(name="root", enabled=False), update_mask=FieldMask(paths=["enabled"])
            )
        ),
        Code.FAILED_PRECONDITION,
        "last enabled administrator",
    )
    assert state(stub) == before


def test_the_last_administrator_cannot_be_removed_but_others_can(stub: AdminServiceStub) -> None:
    add_user(stub)
    add_user(stub, "ann", USER)
    before = state(stub)
    refused(
        lambda: stub.DeleteUser(pb.DeleteUserRequest(name="root")),
        Code.FAILED_PRECONDITION,
        "last enabled administrator",
    )
    refused(lambda: stub.DeleteUser(pb.DeleteUserRequest(name="ghost")), Code.NOT_FOUND, "ghost")
    assert state(stub) == before
    stub.DeleteUser(pb.DeleteUserRequest(name="ann"))
    assert [u.name for u in stub.ListUsers(pb.ListUsersRequest()).users] == ["root"]


# --- groups ---------------------------------------------------------------------------------------


def test_groups_are_created_updated_listed_and_removed(stub: AdminServiceStub) -> None:
    add_user(stub, "ann", USER)
    group = stub.CreateGroup(
        pb.CreateGroupRequest(group=pb.Group(name="artists", description="2D", members=["ann"]))
    ).group
    assert group.members == ["ann"]
    assert stub.GetGroup(pb.GetGroupRequest(name="artists")).group == group
    updated = stub.UpdateGroup(
        pb.UpdateGroupRequest(
            group=pb.Group(name="artists", members=[]), update_mask=FieldMask(paths=["members"])
        )
    ).group
    assert (updated.description, list(updated.members)) == ("2D", [])
    assert [g.name for g in stub.ListGroups(pb.ListGroupsRequest()).groups] == ["artists"]
    stub.DeleteGroup(pb.DeleteGroupRequest(name="artists"))
    assert stub.ListGroups(pb.ListGroupsRequest()).groups == []


def test_group_failures_change_nothing(stub: AdminServiceStub) -> None:
    stub.CreateGroup(pb.CreateGroupRequest(group=pb.Group(name="artists")))
    before = state(stub)
    for group, code, word in [
        (pb.Group(name=""), Code.INVALID_ARGUMENT, "group.name"),
        (pb.Group(name="x", members=["ghost"]), Code.INVALID_ARGUMENT, "group.members"),
        (pb.Group(name="artists"), Code.ALREADY_EXISTS, "group.name"),
    ]:
        refused(partial(stub.CreateGroup, pb.CreateGroupRequest(group=group)), code, word)
    refused(
        lambda: stub.UpdateGroup(
            pb.UpdateGroupRequest(group=pb.Group(name="artists", members=["ghost"]))
        ),
        Code.INVALID_ARGUMENT,
        "group.members",
    )
    refused(
        lambda: stub.UpdateGroup(pb.UpdateGroupRequest(group=pb.Group(name="ghosts"))),
        Code.NOT_FOUND,
    )
    refused(lambda: stub.GetGroup(pb.GetGroupRequest(name="ghosts")), Code.NOT_FOUND, "ghosts")
    refused(lambda: stub.DeleteGroup(pb.DeleteGroupRequest(name="ghosts")), Code.NOT_FOUND)
    assert state(stub) == before


# --- pools ----------------------------------------------------------------------------------------


def test_pools_are_created_updated_notified_and_removed(
    stub: AdminServiceStub, db: Database
) -> None:
    pool = stub.CreatePool(
        pb.CreatePoolRequest(pool=pb.Pool(name="gpu", node_names=["n2", "n1"]))
    ).pool
    assert list(pool.node_names) == ["n1", "n2"]
    assert stub.GetPool(pb.GetPoolRequest(name="gpu")).pool == pool
    updated = stub.UpdatePool(
        pb.UpdatePoolRequest(pool=pb.Pool(name="gpu", description="RTX", node_names=["n3"]))
    ).pool
    assert (updated.description, list(updated.node_names)) == ("RTX", ["n3"])
    assert [p.name for p in stub.ListPools(pb.ListPoolsRequest()).pools] == ["gpu"]
    stub.NotifyPoolChanges(pb.NotifyPoolChangesRequest())
    with db.transaction() as session:
        (payload,) = session.execute(
            text("SELECT payload FROM events WHERE topic = 'pools.changed'")
        ).scalars()
    assert payload["pools"] == {"gpu": ["n3"]}
    stub.DeletePool(pb.DeletePoolRequest(name="gpu"))
    assert stub.ListPools(pb.ListPoolsRequest()).pools == []


def test_pool_failures_change_nothing(stub: AdminServiceStub) -> None:
    stub.CreatePool(pb.CreatePoolRequest(pool=pb.Pool(name="gpu")))
    before = state(stub)
    for pool, code, word in [
        (pb.Pool(name=""), Code.INVALID_ARGUMENT, "pool.name"),
        (pb.Pool(name="x", node_names=["a", "a"]), Code.INVALID_ARGUMENT, "pool.node_names"),
        (pb.Pool(name="x", node_names=["a b"]), Code.INVALID_ARGUMENT, "pool.node_names"),
        (pb.Pool(name="gpu"), Code.ALREADY_EXISTS, "pool.name"),
    ]:
        refused(partial(stub.CreatePool, pb.CreatePoolRequest(pool=pool)), code, word)
    refused(
        lambda: stub.UpdatePool(pb.UpdatePoolRequest(pool=pb.Pool(name="gpu", node_names=[""]))),
        Code.INVALID_ARGUMENT,
        "pool.node_names",
    )
    refused(lambda: stub.UpdatePool(pb.UpdatePoolRequest(pool=pb.Pool(name="x"))), Code.NOT_FOUND)
    refused(lambda: stub.GetPool(pb.GetPoolRequest(name="x")), Code.NOT_FOUND)
    refused(lambda: stub.DeletePool(pb.DeletePoolRequest(name="x")), Code.NOT_FOUND)
    assert state(stub) == before


# --- repositories ---------------------------------------------------------------------------------


def test_repositories_are_created_updated_notified_and_removed(stub: AdminServiceStub) -> None:
    item = pb.Repository(name="proj", windows_path="P:\\proj", linux_path="/mnt/proj")
    created = stub.CreateRepository(pb.CreateRepositoryRequest(repository=item)).repository
    assert created == item
    assert stub.GetRepository(pb.GetRepositoryRequest(name="proj")).repository == item
    updated = stub.UpdateRepository(
        pb.UpdateRepositoryRequest(
            repository=pb.Repository(name="proj", macos_path="/Volumes/proj"),
            update_mask=FieldMask(paths=["macos_path"]),
        )
    ).repository
    assert (updated.linux_path, updated.macos_path) == ("/mnt/proj", "/Volumes/proj")
    listed = stub.ListRepositories(pb.ListRepositoriesRequest()).repositories
    assert [r.name for r in listed] == ["proj"]
    stub.NotifyRepositoryChanges(pb.NotifyRepositoryChangesRequest())
    stub.DeleteRepository(pb.DeleteRepositoryRequest(name="proj"))
    assert stub.ListRepositories(pb.ListRepositoriesRequest()).repositories == []


def test_repository_failures_change_nothing(stub: AdminServiceStub) -> None:
    item = pb.Repository(name="proj", linux_path="/mnt/proj")
    stub.CreateRepository(pb.CreateRepositoryRequest(repository=item))
    before = state(stub)
    for repository, code, word in [
        (pb.Repository(name="", linux_path="/x"), Code.INVALID_ARGUMENT, "repository.name"),
        (pb.Repository(name="x"), Code.INVALID_ARGUMENT, "linux_path"),
        (pb.Repository(name="x", linux_path="x"), Code.INVALID_ARGUMENT, "repository.linux_path"),
        (item, Code.ALREADY_EXISTS, "repository.name"),
    ]:
        refused(
            partial(stub.CreateRepository, pb.CreateRepositoryRequest(repository=repository)),
            code,
            word,
        )
    refused(
        lambda: stub.UpdateRepository(
            pb.UpdateRepositoryRequest(repository=pb.Repository(name="proj"))
        ),
        Code.INVALID_ARGUMENT,
        "repository",
    )
    refused(
        lambda: stub.UpdateRepository(
            pb.UpdateRepositoryRequest(repository=pb.Repository(name="x", linux_path="/x"))
        ),
        Code.NOT_FOUND,
    )
    refused(lambda: stub.GetRepository(pb.GetRepositoryRequest(name="x")), Code.NOT_FOUND)
    refused(lambda: stub.DeleteRepository(pb.DeleteRepositoryRequest(name="x")), Code.NOT_FOUND)
    assert state(stub) == before


# --- configuration --------------------------------------------------------------------------------


def test_the_configuration_is_applied_stored_and_never_returns_the_smtp_password(
    stub: AdminServiceStub,
) -> None:
    config = stub.GetDispatcherConfiguration(pb.GetDispatcherConfigurationRequest()).configuration
    assert config.heartbeat_interval_seconds == 10 and config.start_engine_on_startup
    config.max_task_threads = 4
    config.instance_identity = pb.INSTANCE_IDENTITY_IP_ADDRESS
    config.email.smtp_password = "secret"
    reply = stub.UpdateDispatcherConfiguration(
        pb.UpdateDispatcherConfigurationRequest(configuration=config, persist=True)
    ).configuration
    assert reply.max_task_threads == 4 and reply.email.smtp_password == ""
    assert reply.instance_identity == pb.INSTANCE_IDENTITY_IP_ADDRESS
    masked = stub.UpdateDispatcherConfiguration(
        pb.UpdateDispatcherConfigurationRequest(
            configuration=pb.DispatcherConfiguration(
                heartbeat_interval_seconds=5, email=pb.EmailConfiguration(smtp_host="mail")
            ),
            update_mask=FieldMask(paths=["heartbeat_interval_seconds", "email.smtp_host"]),
        )
    ).configuration
    assert (masked.heartbeat_interval_seconds, masked.max_task_threads) == (5, 4)
    assert masked.email.smtp_host == "mail"
    got = stub.GetDispatcherConfiguration(pb.GetDispatcherConfigurationRequest()).configuration
    assert got == masked


def test_an_invalid_configuration_is_refused_naming_the_field(stub: AdminServiceStub) -> None:
    before = state(stub)

    def update(paths: list[str], **fields: Any) -> Callable[[], Any]:
        return lambda: stub.UpdateDispatcherConfiguration(
            pb.UpdateDispatcherConfigurationRequest(
                configuration=pb.DispatcherConfiguration(**fields),
                update_mask=FieldMask(paths=paths),
                persist=True,
            )
        )

    refused(update([]), Code.INVALID_ARGUMENT, "configuration.")
    refused(
        update(["heartbeat_interval_seconds"], heartbeat_interval_seconds=0),
        Code.INVALID_ARGUMENT,
        "configuration.heartbeat_interval_seconds",
    )
    refused(
        update(["network_scan_ranges"], network_scan_ranges=["300.1.1.1/24"]),
        Code.INVALID_ARGUMENT,
        "configuration.network_scan_ranges[0]",
    )
    refused(update(["colour"]), Code.INVALID_ARGUMENT, "update_mask")
    refused(
        update(["instance_identity"], instance_identity=9),
        Code.INVALID_ARGUMENT,
        "configuration.instance_identity",
    )
    assert state(stub) == before


def test_the_ldap_configuration_is_stored_without_returning_the_bind_password(
    stub: AdminServiceStub,
) -> None:
    # Disabled: stored and returned, never contacted (tests/admin/test_directory.py
    # talks to a real directory).
    config = pb.LdapConfiguration(
        enabled=False,
        server_uri="ldap://127.0.0.1:3890",
        bind_dn="cn=admin,dc=farm",
        bind_password="secret",
        user_search_base="ou=people,dc=farm",
        user_search_filter="(uid={user})",
        user_name_attribute="uid",
        group_mappings=[pb.LdapGroupMapping(ldap_group_dn="cn=w,dc=farm", role=ADMIN)],
    )
    reply = stub.UpdateLdapConfiguration(
        pb.UpdateLdapConfigurationRequest(configuration=config, persist=True)
    ).configuration
    expected = pb.LdapConfiguration()
    expected.CopyFrom(config)
    expected.bind_password = ""
    assert reply == expected
    got = stub.GetLdapConfiguration(pb.GetLdapConfigurationRequest()).configuration
    assert got == expected
    before = state(stub)
    refused(
        lambda: stub.UpdateLdapConfiguration(
            pb.UpdateLdapConfigurationRequest(
                configuration=pb.LdapConfiguration(server_uri="http://x"),
                update_mask=FieldMask(paths=["server_uri"]),
            )
        ),
        Code.INVALID_ARGUMENT,
        "ldap_configuration.server_uri",
    )
    refused(
        lambda: stub.UpdateLdapConfiguration(
            pb.UpdateLdapConfigurationRequest(
                configuration=pb.LdapConfiguration(user_search_filter="uid=x"),
                update_mask=FieldMask(paths=["user_search_filter"]),
            )
        ),
        Code.INVALID_ARGUMENT,
        "ldap_configuration.user_search_filter",
    )
    assert state(stub) == before


# --- engine and system ----------------------------------------------------------------------------


def test_the_engine_toggles_between_running_and_paused(stub: AdminServiceStub) -> None:
    status = stub.GetEngineStatus(pb.GetEngineStatusRequest()).engine_status
    assert status == pb.ENGINE_STATUS_RUNNING
    assert stub.ToggleEngineStatus(pb.ToggleEngineStatusRequest()).engine_status == (
        pb.ENGINE_STATUS_PAUSED
    )
    assert stub.GetEngineStatus(pb.GetEngineStatusRequest()).engine_status == (
        pb.ENGINE_STATUS_PAUSED
    )
    assert stub.ToggleEngineStatus(pb.ToggleEngineStatusRequest()).engine_status == (
        pb.ENGINE_STATUS_RUNNING
    )


def test_system_controls_are_accepted_and_a_scan_needs_ranges(stub: AdminServiceStub) -> None:
    stub.RestartDispatcher(pb.RestartDispatcherRequest())
    stub.ResetStatisticsCounters(pb.ResetStatisticsCountersRequest())
    before = state(stub)
    refused(
        lambda: stub.StartNetworkScan(pb.StartNetworkScanRequest()),
        Code.FAILED_PRECONDITION,
        "network_scan_ranges",
    )
    assert state(stub) == before
    stub.UpdateDispatcherConfiguration(
        pb.UpdateDispatcherConfigurationRequest(
            configuration=pb.DispatcherConfiguration(network_scan_ranges=["127.0.0.1/32"]),
            update_mask=FieldMask(paths=["network_scan_ranges"]),
        )
    )
    stub.StartNetworkScan(pb.StartNetworkScanRequest())
    refused(
        lambda: stub.StartNetworkScan(pb.StartNetworkScanRequest()),
        Code.FAILED_PRECONDITION,
        "still running",
    )


# --- logs -----------------------------------------------------------------------------------------


def test_the_dispatcher_log_keeps_entries_newest_first_and_clears(stub: AdminServiceStub) -> None:
    stub.AddLogEntry(pb.AddLogEntryRequest(message="first"))
    stub.AddLogEntry(pb.AddLogEntryRequest(message="second", level=pb.LOG_LEVEL_ERROR))
    stub.AddInternalLogEntry(pb.AddInternalLogEntryRequest(message="diagnostic"))
    visible = stub.ListLogEntries(pb.ListLogEntriesRequest()).log_entries
    assert [(e.message, e.level) for e in visible] == [
        ("second", pb.LOG_LEVEL_ERROR),
        ("first", pb.LOG_LEVEL_INFO),
    ]
    every = stub.ListLogEntries(pb.ListLogEntriesRequest(include_internal=True)).log_entries
    assert (every[0].message, every[0].internal) == ("diagnostic", True)
    errors = stub.ListLogEntries(pb.ListLogEntriesRequest(min_level=pb.LOG_LEVEL_ERROR))
    assert [e.message for e in errors.log_entries] == ["second"]
    page = stub.ListLogEntries(pb.ListLogEntriesRequest(page_size=1))
    rest = stub.ListLogEntries(
        pb.ListLogEntriesRequest(page_size=1, page_token=page.next_page_token)
    )
    assert [e.message for e in (*page.log_entries, *rest.log_entries)] == ["second", "first"]
    stub.ClearDispatcherLog(pb.ClearDispatcherLogRequest())
    assert stub.ListLogEntries(pb.ListLogEntriesRequest(include_internal=True)).log_entries == []


def test_an_empty_log_message_is_refused(stub: AdminServiceStub) -> None:
    before = state(stub)
    refused(
        lambda: stub.AddLogEntry(pb.AddLogEntryRequest(message=" ")),
        Code.INVALID_ARGUMENT,
        "message",
    )
    refused(
        lambda: stub.AddInternalLogEntry(pb.AddInternalLogEntryRequest(message="")),
        Code.INVALID_ARGUMENT,
        "message",
    )
    refused(
        lambda: stub.AddLogEntry(pb.AddLogEntryRequest(message="x", level=cast(Any, 42))),
        Code.INVALID_ARGUMENT,
        "level",
    )
    assert state(stub) == before


def _wait_for_action(stub: AdminServiceStub, action: str) -> tuple[str, str]:
    """The name and content of today's action log once it shows `action`."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        files = stub.ListActionLogs(pb.ListActionLogsRequest()).log_files
        if files:
            content = stub.GetActionLog(pb.GetActionLogRequest(name=files[0].name)).content
            if action in content:
                return files[0].name, content
        time.sleep(0.05)
    raise AssertionError(f"{action} never reached the action log")


def test_every_change_reaches_the_action_log_with_its_caller(stub: AdminServiceStub) -> None:
    metadata = auth("wrangler")
    stub.CreatePool(pb.CreatePoolRequest(pool=pb.Pool(name="gpu")), metadata=metadata)
    name, content = _wait_for_action(stub, "pool.created")
    assert name == f"actions-{datetime.now(UTC).date().isoformat()}.log"
    line = next(line for line in content.splitlines() if "pool.created" in line)
    assert " wrangler ipv4:127.0.0.1:" in line and " pool:gpu succeeded OK " in line
    files = stub.ListActionLogs(pb.ListActionLogsRequest()).log_files
    assert files[0].size_bytes == len(content.encode())
    refused(
        lambda: stub.DeleteActionLog(pb.DeleteActionLogRequest(name=name)),
        Code.FAILED_PRECONDITION,
        "today",
    )


def test_past_log_days_are_read_and_removed_and_hostile_names_refused(
    stub: AdminServiceStub, db: Database
) -> None:
    day = datetime(2026, 1, 2, 12, tzinfo=UTC)
    with db.transaction() as session:
        session.execute(
            insert(action_log).values(
                logged_at=day, user_name="ann", action="x", outcome="succeeded"
            )
        )
        session.execute(insert(activity_log).values(logged_at=day, category="c", message="m"))
    for kind in ("action", "activity"):
        _check_past_day(stub, kind)


def _check_past_day(stub: AdminServiceStub, kind: str) -> None:
    prefix = "actions" if kind == "action" else "activity"
    name = f"{prefix}-2026-01-02.log"
    suffix = "ActionLog" if kind == "action" else "ActivityLog"
    get = getattr(stub, "Get" + suffix)
    delete = getattr(stub, "Delete" + suffix)
    listing = getattr(stub, "List" + suffix + "s")
    get_request = getattr(pb, f"Get{suffix}Request")
    delete_request = getattr(pb, f"Delete{suffix}Request")
    assert name in [f.name for f in listing(_list_request(kind)).log_files]
    assert get(get_request(name=name)).content.startswith("2026-01-02T12:00:00.000Z ")
    for hostile in ("../" + name, "/etc/passwd", name + "\x00", "..\\" + name):
        refused(partial(get, get_request(name=hostile)), Code.INVALID_ARGUMENT, "name")
        refused(partial(delete, delete_request(name=hostile)), Code.INVALID_ARGUMENT, "name")
    refused(lambda: get(get_request(name=f"{prefix}-2025-01-01.log")), Code.NOT_FOUND, "name")
    refused(lambda: get(get_request(name="passwd")), Code.NOT_FOUND, "name")
    delete(delete_request(name=name))
    refused(lambda: get(get_request(name=name)), Code.NOT_FOUND)
    refused(lambda: delete(delete_request(name=name)), Code.NOT_FOUND)


def _list_request(kind: str) -> Any:
    return pb.ListActionLogsRequest() if kind == "action" else pb.ListActivityLogsRequest()


# --- statistics and history -----------------------------------------------------------------------


def test_sample_bounds_are_reported_and_a_range_cleared_exactly(
    stub: AdminServiceStub, db: Database
) -> None:
    times = [datetime(2026, 1, d, tzinfo=UTC) for d in (1, 2, 3)]
    with db.transaction() as session:
        session.execute(insert(statistics_samples), [{"sampled_at": t} for t in times])
        session.execute(
            insert(history_samples), [{"sampled_at": t, "interval_seconds": 60} for t in times]
        )
    _check_bounds_and_clear(
        stub,
        times,
        stub.GetStatisticsBounds,
        pb.GetStatisticsBoundsRequest,
        stub.ClearStatisticsSamples,
        pb.ClearStatisticsSamplesRequest,
    )
    _check_bounds_and_clear(
        stub,
        times,
        stub.GetHistoryBounds,
        pb.GetHistoryBoundsRequest,
        stub.ClearHistorySamples,
        pb.ClearHistorySamplesRequest,
    )


def _check_bounds_and_clear(
    stub: AdminServiceStub,
    times: list[datetime],
    get: Any,
    get_request: Any,
    clear: Any,
    clear_request: Any,
) -> None:
    bounds = get(get_request()).bounds
    assert (bounds.start_time.ToDatetime(UTC), bounds.end_time.ToDatetime(UTC)) == (
        times[0],
        times[2],
    )
    assert bounds.samples_count == 3
    inverted = common_pb2.TimeRange(start_time=stamp(times[2]), end_time=stamp(times[0]))
    before = state(stub)
    refused(lambda: clear(clear_request(time_range=inverted)), Code.INVALID_ARGUMENT, "time_range")
    assert state(stub) == before
    middle = common_pb2.TimeRange(start_time=stamp(times[1]), end_time=stamp(times[1]))
    assert clear(clear_request(time_range=middle)).deleted_count == 1
    assert clear(clear_request()).deleted_count == 2
    after = get(get_request()).bounds
    assert (after.HasField("start_time"), after.samples_count) == (False, 0)
