"""AdminService over gRPC: protobuf <-> service calls, nothing else.

No SQL and no rules here: requests become plain values for the admin service
layer (muster_services/admin/service.py), and its results become messages. Update
RPCs take a field mask relative to the resource; an empty mask means every
writable field (Muster's *Configure functions send the whole object).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.message import Message

from muster_proto.admin.v1 import admin_pb2 as pb
from muster_proto.admin.v1 import admin_pb2_grpc
from muster_proto.common.v1 import common_pb2
from muster_services.admin import domain
from muster_services.admin.accounts import GroupView, UserView
from muster_services.admin.domain import (
    DispatcherConfig,
    EmailConfig,
    GroupSpec,
    LdapConfig,
    LdapGroupMapping,
    PoolSpec,
    RepositorySpec,
    UserSpec,
)
from muster_services.admin.logs import LogFileView
from muster_services.admin.service import AdminService
from muster_services.admin.statistics import Bounds
from muster_services.core.convert import from_timestamp, to_timestamp
from muster_services.core.enums import EnumMap
from muster_services.core.errors import InvalidArgument
from muster_services.core.server import contract_base

ADMIN_SERVICE = pb.DESCRIPTOR.services_by_name["AdminService"]
_ENUMS = pb.DESCRIPTOR.enum_types_by_name
ROLE = EnumMap(_ENUMS["UserRole"])
ENGINE = EnumMap(_ENUMS["EngineStatus"])
IDENTITY = EnumMap(_ENUMS["InstanceIdentity"])
POLICY = EnumMap(_ENUMS["CompletedJobPolicy"])
LEVEL = EnumMap(_ENUMS["LogLevel"])

USER_WRITABLE = domain.USER_FIELDS
GROUP_WRITABLE = ("description", "members")
POOL_WRITABLE = ("description", "node_names")
REPOSITORY_WRITABLE = ("windows_path", "linux_path", "macos_path", "description")


# --- messages -> values ------------------------------------------------------------------------


def _masked(
    paths: Sequence[str], writable: Sequence[str], message: Message, what: str
) -> list[str]:
    """The fields an update changes: the mask, or every writable field."""
    chosen = list(paths) or list(writable)
    for path in chosen:
        if path.split(".", 1)[0] not in writable:
            raise InvalidArgument(f"update_mask: {what} has no writable field {path!r}")
    return chosen


def _preferences(message: common_pb2.NotificationPreferences) -> dict[str, bool]:
    return {f: bool(getattr(message, f)) for f in domain.NOTIFICATION_PREFERENCES}


def _user_value(user: pb.User, field_name: str) -> Any:
    if field_name == "role":
        return ROLE.text(user.role, "user.role")
    if field_name == "groups":
        return tuple(user.groups)
    if field_name == "notification_preferences":
        return _preferences(user.notification_preferences)
    return getattr(user, field_name)


def user_spec(user: pb.User) -> UserSpec:
    return UserSpec(
        name=user.name,
        role=ROLE.text(user.role, "user.role"),
        password=user.password,
        groups=tuple(user.groups),
        enabled=user.enabled,
        email=user.email,
        display_name=user.display_name,
        max_job_priority=user.max_job_priority,
        notification_preferences=_preferences(user.notification_preferences),
    )


def _enum_value(enum: EnumMap, number: int, field_name: str, default: str) -> str:
    return enum.text(number, field_name, default=default)


def _config_value(message: pb.DispatcherConfiguration, path: str) -> Any:
    if path == "instance_identity":
        return _enum_value(
            IDENTITY, message.instance_identity, "configuration.instance_identity", "host_name"
        )
    if path == "completed_job_policy":
        return _enum_value(
            POLICY, message.completed_job_policy, "configuration.completed_job_policy", "keep"
        )
    if path == "network_scan_ranges":
        return tuple(message.network_scan_ranges)
    if path == "email":
        return EmailConfig(**{f: getattr(message.email, f) for f in domain.EMAIL_FIELDS})
    if path.startswith("email."):
        return getattr(message.email, path.split(".", 1)[1])
    return getattr(message, path)


def configuration_changes(
    message: pb.DispatcherConfiguration, paths: Sequence[str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """(changes, secrets) of an UpdateDispatcherConfiguration request."""
    chosen = list(paths) or [*domain.CONFIG_FIELDS, "email.smtp_password"]
    changes: dict[str, Any] = {}
    secrets: dict[str, str] = {}
    for path in chosen:
        if path in ("email", "email.smtp_password"):
            secrets["email.smtp_password"] = message.email.smtp_password
            if path == "email.smtp_password":
                continue
        head, _, rest = path.partition(".")
        if head not in domain.CONFIG_FIELDS or (rest and head != "email"):
            raise InvalidArgument(f"update_mask: configuration has no field {path!r}")
        if rest and rest not in domain.EMAIL_FIELDS:
            raise InvalidArgument(f"update_mask: configuration has no field {path!r}")
        changes[path] = _config_value(message, path)
    return changes, secrets


def _ldap_value(message: pb.LdapConfiguration, path: str) -> Any:
    if path == "group_mappings":
        return tuple(
            LdapGroupMapping(
                m.ldap_group_dn,
                m.group,
                ROLE.text(m.role, f"ldap_configuration.group_mappings[{i}].role", default="user"),
            )
            for i, m in enumerate(message.group_mappings)
        )
    return getattr(message, path)


def ldap_changes(
    message: pb.LdapConfiguration, paths: Sequence[str]
) -> tuple[dict[str, Any], dict[str, str]]:
    chosen = list(paths) or [*domain.LDAP_FIELDS, "bind_password"]
    changes: dict[str, Any] = {}
    secrets: dict[str, str] = {}
    for path in chosen:
        if path == "bind_password":
            secrets["bind_password"] = message.bind_password
            continue
        if path not in domain.LDAP_FIELDS:
            raise InvalidArgument(f"update_mask: ldap_configuration has no field {path!r}")
        changes[path] = _ldap_value(message, path)
    return changes, secrets


# --- values -> messages ------------------------------------------------------------------------


def user_message(user: UserView) -> pb.User:
    return pb.User(
        name=user.name,
        role=ROLE.number(user.role),
        groups=list(user.groups),
        enabled=user.enabled,
        email=user.email,
        notification_preferences=common_pb2.NotificationPreferences(
            **{k: v for k, v in user.notification_preferences.items()}
        ),
        directory_user=user.directory,
        display_name=user.display_name,
        max_job_priority=user.max_job_priority,
        create_time=to_timestamp(user.created_at),
    )


def group_message(group: GroupView) -> pb.Group:
    return pb.Group(name=group.name, description=group.description, members=list(group.members))


def pool_message(pool: PoolSpec) -> pb.Pool:
    return pb.Pool(name=pool.name, description=pool.description, node_names=list(pool.node_names))


def repository_message(item: RepositorySpec) -> pb.Repository:
    return pb.Repository(
        name=item.name,
        windows_path=item.windows_path,
        linux_path=item.linux_path,
        macos_path=item.macos_path,
        description=item.description,
    )


def configuration_message(config: DispatcherConfig) -> pb.DispatcherConfiguration:
    """The configuration as returned: the SMTP password (write-only) stays empty."""
    values: dict[str, Any] = {
        f: getattr(config, f)
        for f in domain.CONFIG_FIELDS
        if f not in ("instance_identity", "completed_job_policy", "email", "network_scan_ranges")
    }
    return pb.DispatcherConfiguration(
        **values,
        instance_identity=IDENTITY.number(config.instance_identity),
        completed_job_policy=POLICY.number(config.completed_job_policy),
        network_scan_ranges=list(config.network_scan_ranges),
        email=pb.EmailConfiguration(**{f: getattr(config.email, f) for f in domain.EMAIL_FIELDS}),
    )


def ldap_message(config: LdapConfig) -> pb.LdapConfiguration:
    """The LDAP configuration as returned: bind_password stays empty."""
    values = {f: getattr(config, f) for f in domain.LDAP_FIELDS if f != "group_mappings"}
    return pb.LdapConfiguration(
        **values,
        group_mappings=[
            pb.LdapGroupMapping(
                ldap_group_dn=m.ldap_group_dn, group=m.group, role=ROLE.number(m.role)
            )
            for m in config.group_mappings
        ],
    )


def _log_files(files: Sequence[LogFileView]) -> list[pb.LogFile]:
    return [
        pb.LogFile(name=f.name, size_bytes=f.size_bytes, modify_time=to_timestamp(f.modified))
        for f in files
    ]


def _bounds(bounds: Bounds) -> Mapping[str, Any]:
    return {
        "start_time": to_timestamp(bounds.first),
        "end_time": to_timestamp(bounds.last),
        "samples_count": bounds.count,
    }


class AdminServicer(contract_base(admin_pb2_grpc.AdminServiceServicer, ADMIN_SERVICE)):  # type: ignore[misc]
    """Translates AdminService calls to the admin service layer."""

    def __init__(self, service: AdminService) -> None:
        self.service = service
        self.accounts = service.accounts
        self.resources = service.resources
        self.system = service.system
        self.logs = service.logs
        self.statistics = service.statistics
        self.login = service.login

    # --- authentication -----------------------------------------------------

    def Login(self, request: pb.LoginRequest, context: grpc.ServicerContext) -> pb.LoginResponse:
        session = self.login.login(request.user_name, request.password)
        return pb.LoginResponse(
            token=session.token,
            expire_time=to_timestamp(datetime.fromtimestamp(session.expires_at, UTC)),
            role=ROLE.number(session.role),
        )

    # --- users and groups ------------------------------------------------

    def ListUsers(
        self, request: pb.ListUsersRequest, context: grpc.ServicerContext
    ) -> pb.ListUsersResponse:
        page = self.accounts.list_users(request.page_size, request.page_token, request.group)
        return pb.ListUsersResponse(
            users=[user_message(u) for u in page.items], next_page_token=page.next_page_token
        )

    def GetUser(
        self, request: pb.GetUserRequest, context: grpc.ServicerContext
    ) -> pb.GetUserResponse:
        return pb.GetUserResponse(user=user_message(self.accounts.get_user(request.name)))

    def CreateUser(
        self, request: pb.CreateUserRequest, context: grpc.ServicerContext
    ) -> pb.CreateUserResponse:
        user = self.accounts.create_user(user_spec(request.user), request.request_id)
        return pb.CreateUserResponse(user=user_message(user))

    def DeleteUser(
        self, request: pb.DeleteUserRequest, context: grpc.ServicerContext
    ) -> pb.DeleteUserResponse:
        self.accounts.delete_user(request.name)
        return pb.DeleteUserResponse()

    def UpdateUser(
        self, request: pb.UpdateUserRequest, context: grpc.ServicerContext
    ) -> pb.UpdateUserResponse:
        paths = _masked(request.update_mask.paths, USER_WRITABLE, request.user, "user")
        changes = {p: _user_value(request.user, p) for p in paths}
        user = self.accounts.update_user(request.user.name, changes)
        return pb.UpdateUserResponse(user=user_message(user))

    def ListGroups(
        self, request: pb.ListGroupsRequest, context: grpc.ServicerContext
    ) -> pb.ListGroupsResponse:
        page = self.accounts.list_groups(request.page_size, request.page_token)
        return pb.ListGroupsResponse(
            groups=[group_message(g) for g in page.items], next_page_token=page.next_page_token
        )

    def GetGroup(
        self, request: pb.GetGroupRequest, context: grpc.ServicerContext
    ) -> pb.GetGroupResponse:
        return pb.GetGroupResponse(group=group_message(self.accounts.get_group(request.name)))

    def CreateGroup(
        self, request: pb.CreateGroupRequest, context: grpc.ServicerContext
    ) -> pb.CreateGroupResponse:
        group = request.group
        spec = GroupSpec(group.name, group.description, tuple(group.members))
        return pb.CreateGroupResponse(
            group=group_message(self.accounts.create_group(spec, request.request_id))
        )

    def DeleteGroup(
        self, request: pb.DeleteGroupRequest, context: grpc.ServicerContext
    ) -> pb.DeleteGroupResponse:
        self.accounts.delete_group(request.name)
        return pb.DeleteGroupResponse()

    def UpdateGroup(
        self, request: pb.UpdateGroupRequest, context: grpc.ServicerContext
    ) -> pb.UpdateGroupResponse:
        paths = _masked(request.update_mask.paths, GROUP_WRITABLE, request.group, "group")
        changes = {
            p: tuple(request.group.members) if p == "members" else getattr(request.group, p)
            for p in paths
        }
        group = self.accounts.update_group(request.group.name, changes)
        return pb.UpdateGroupResponse(group=group_message(group))

    # --- pools ------------------------------------------------

    def ListPools(
        self, request: pb.ListPoolsRequest, context: grpc.ServicerContext
    ) -> pb.ListPoolsResponse:
        page = self.resources.list_pools(request.page_size, request.page_token)
        return pb.ListPoolsResponse(
            pools=[pool_message(p) for p in page.items], next_page_token=page.next_page_token
        )

    def GetPool(
        self, request: pb.GetPoolRequest, context: grpc.ServicerContext
    ) -> pb.GetPoolResponse:
        return pb.GetPoolResponse(pool=pool_message(self.resources.get_pool(request.name)))

    def UpdatePool(
        self, request: pb.UpdatePoolRequest, context: grpc.ServicerContext
    ) -> pb.UpdatePoolResponse:
        paths = _masked(request.update_mask.paths, POOL_WRITABLE, request.pool, "pool")
        changes = {
            p: tuple(request.pool.node_names) if p == "node_names" else getattr(request.pool, p)
            for p in paths
        }
        return pb.UpdatePoolResponse(
            pool=pool_message(self.resources.update_pool(request.pool.name, changes))
        )

    def CreatePool(
        self, request: pb.CreatePoolRequest, context: grpc.ServicerContext
    ) -> pb.CreatePoolResponse:
        pool = request.pool
        spec = PoolSpec(pool.name, pool.description, tuple(pool.node_names))
        return pb.CreatePoolResponse(
            pool=pool_message(self.resources.create_pool(spec, request.request_id))
        )

    def DeletePool(
        self, request: pb.DeletePoolRequest, context: grpc.ServicerContext
    ) -> pb.DeletePoolResponse:
        self.resources.delete_pool(request.name)
        return pb.DeletePoolResponse()

    def NotifyPoolChanges(
        self, request: pb.NotifyPoolChangesRequest, context: grpc.ServicerContext
    ) -> pb.NotifyPoolChangesResponse:
        self.resources.notify_pool_changes()
        return pb.NotifyPoolChangesResponse()

    # --- repositories ------------------------------------------------

    def ListRepositories(
        self, request: pb.ListRepositoriesRequest, context: grpc.ServicerContext
    ) -> pb.ListRepositoriesResponse:
        page = self.resources.list_repositories(request.page_size, request.page_token)
        return pb.ListRepositoriesResponse(
            repositories=[repository_message(r) for r in page.items],
            next_page_token=page.next_page_token,
        )

    def GetRepository(
        self, request: pb.GetRepositoryRequest, context: grpc.ServicerContext
    ) -> pb.GetRepositoryResponse:
        item = self.resources.get_repository(request.name)
        return pb.GetRepositoryResponse(repository=repository_message(item))

    def UpdateRepository(
        self, request: pb.UpdateRepositoryRequest, context: grpc.ServicerContext
    ) -> pb.UpdateRepositoryResponse:
        item = request.repository
        paths = _masked(request.update_mask.paths, REPOSITORY_WRITABLE, item, "repository")
        updated = self.resources.update_repository(item.name, {p: getattr(item, p) for p in paths})
        return pb.UpdateRepositoryResponse(repository=repository_message(updated))

    def CreateRepository(
        self, request: pb.CreateRepositoryRequest, context: grpc.ServicerContext
    ) -> pb.CreateRepositoryResponse:
        item = request.repository
        spec = RepositorySpec(
            item.name, item.windows_path, item.linux_path, item.macos_path, item.description
        )
        created = self.resources.create_repository(spec, request.request_id)
        return pb.CreateRepositoryResponse(repository=repository_message(created))

    def NotifyRepositoryChanges(
        self, request: pb.NotifyRepositoryChangesRequest, context: grpc.ServicerContext
    ) -> pb.NotifyRepositoryChangesResponse:
        self.resources.notify_repository_changes()
        return pb.NotifyRepositoryChangesResponse()

    def DeleteRepository(
        self, request: pb.DeleteRepositoryRequest, context: grpc.ServicerContext
    ) -> pb.DeleteRepositoryResponse:
        self.resources.delete_repository(request.name)
        return pb.DeleteRepositoryResponse()

    # --- engine and system ------------------------------------------------

    def GetEngineStatus(
        self, request: pb.GetEngineStatusRequest, context: grpc.ServicerContext
    ) -> pb.GetEngineStatusResponse:
        return pb.GetEngineStatusResponse(engine_status=ENGINE.number(self.system.engine_status()))

    def ToggleEngineStatus(
        self, request: pb.ToggleEngineStatusRequest, context: grpc.ServicerContext
    ) -> pb.ToggleEngineStatusResponse:
        return pb.ToggleEngineStatusResponse(
            engine_status=ENGINE.number(self.system.toggle_engine())
        )

    def RestartDispatcher(
        self, request: pb.RestartDispatcherRequest, context: grpc.ServicerContext
    ) -> pb.RestartDispatcherResponse:
        self.system.soft_restart()
        return pb.RestartDispatcherResponse()

    def ResetStatisticsCounters(
        self, request: pb.ResetStatisticsCountersRequest, context: grpc.ServicerContext
    ) -> pb.ResetStatisticsCountersResponse:
        self.system.reset_statistics_counters()
        return pb.ResetStatisticsCountersResponse()

    def StartNetworkScan(
        self, request: pb.StartNetworkScanRequest, context: grpc.ServicerContext
    ) -> pb.StartNetworkScanResponse:
        self.system.start_network_scan()
        return pb.StartNetworkScanResponse()

    def GetDispatcherConfiguration(
        self, request: pb.GetDispatcherConfigurationRequest, context: grpc.ServicerContext
    ) -> pb.GetDispatcherConfigurationResponse:
        config = self.system.get_configuration()
        return pb.GetDispatcherConfigurationResponse(configuration=configuration_message(config))

    def UpdateDispatcherConfiguration(
        self, request: pb.UpdateDispatcherConfigurationRequest, context: grpc.ServicerContext
    ) -> pb.UpdateDispatcherConfigurationResponse:
        changes, secrets = configuration_changes(request.configuration, request.update_mask.paths)
        config = self.system.update_configuration(changes, secrets, request.persist)
        return pb.UpdateDispatcherConfigurationResponse(configuration=configuration_message(config))

    def GetLdapConfiguration(
        self, request: pb.GetLdapConfigurationRequest, context: grpc.ServicerContext
    ) -> pb.GetLdapConfigurationResponse:
        config = self.system.get_ldap_configuration()
        return pb.GetLdapConfigurationResponse(configuration=ldap_message(config))

    def UpdateLdapConfiguration(
        self, request: pb.UpdateLdapConfigurationRequest, context: grpc.ServicerContext
    ) -> pb.UpdateLdapConfigurationResponse:
        changes, secrets = ldap_changes(request.configuration, request.update_mask.paths)
        config = self.system.update_ldap_configuration(changes, secrets, request.persist)
        return pb.UpdateLdapConfigurationResponse(configuration=ldap_message(config))

    # --- logs ------------------------------------------------

    def ListActivityLogs(
        self, request: pb.ListActivityLogsRequest, context: grpc.ServicerContext
    ) -> pb.ListActivityLogsResponse:
        page = self.logs.list_files("activity", request.page_size, request.page_token)
        return pb.ListActivityLogsResponse(
            log_files=_log_files(page.items), next_page_token=page.next_page_token
        )

    def GetActivityLog(
        self, request: pb.GetActivityLogRequest, context: grpc.ServicerContext
    ) -> pb.GetActivityLogResponse:
        return pb.GetActivityLogResponse(content=self.logs.read_file("activity", request.name))

    def DeleteActivityLog(
        self, request: pb.DeleteActivityLogRequest, context: grpc.ServicerContext
    ) -> pb.DeleteActivityLogResponse:
        self.logs.remove_file("activity", request.name)
        return pb.DeleteActivityLogResponse()

    def ListActionLogs(
        self, request: pb.ListActionLogsRequest, context: grpc.ServicerContext
    ) -> pb.ListActionLogsResponse:
        page = self.logs.list_files("action", request.page_size, request.page_token)
        return pb.ListActionLogsResponse(
            log_files=_log_files(page.items), next_page_token=page.next_page_token
        )

    def GetActionLog(
        self, request: pb.GetActionLogRequest, context: grpc.ServicerContext
    ) -> pb.GetActionLogResponse:
        return pb.GetActionLogResponse(content=self.logs.read_file("action", request.name))

    def DeleteActionLog(
        self, request: pb.DeleteActionLogRequest, context: grpc.ServicerContext
    ) -> pb.DeleteActionLogResponse:
        self.logs.remove_file("action", request.name)
        return pb.DeleteActionLogResponse()

    def ClearDispatcherLog(
        self, request: pb.ClearDispatcherLogRequest, context: grpc.ServicerContext
    ) -> pb.ClearDispatcherLogResponse:
        self.logs.clear()
        return pb.ClearDispatcherLogResponse()

    def AddInternalLogEntry(
        self, request: pb.AddInternalLogEntryRequest, context: grpc.ServicerContext
    ) -> pb.AddInternalLogEntryResponse:
        level = LEVEL.text(request.level, "level", default="info")
        self.logs.add_message(request.message, level, internal=True)
        return pb.AddInternalLogEntryResponse()

    def AddLogEntry(
        self, request: pb.AddLogEntryRequest, context: grpc.ServicerContext
    ) -> pb.AddLogEntryResponse:
        level = LEVEL.text(request.level, "level", default="info")
        self.logs.add_message(request.message, level, internal=False)
        return pb.AddLogEntryResponse()

    def ListLogEntries(
        self, request: pb.ListLogEntriesRequest, context: grpc.ServicerContext
    ) -> pb.ListLogEntriesResponse:
        min_level = LEVEL.text(request.min_level, "min_level", default="")
        page = self.logs.list_entries(
            request.page_size, request.page_token, min_level, request.include_internal
        )
        return pb.ListLogEntriesResponse(
            log_entries=[
                pb.LogEntry(
                    time=to_timestamp(e.time),
                    level=LEVEL.number(e.level),
                    message=e.message,
                    source=e.source,
                    internal=e.internal,
                )
                for e in page.items
            ],
            next_page_token=page.next_page_token,
        )

    # --- statistics and history ------------------------------------------------

    def GetStatisticsBounds(
        self, request: pb.GetStatisticsBoundsRequest, context: grpc.ServicerContext
    ) -> pb.GetStatisticsBoundsResponse:
        bounds = self.statistics.bounds("statistics")
        return pb.GetStatisticsBoundsResponse(bounds=pb.StatisticsBounds(**_bounds(bounds)))

    def ListStatisticsSamples(
        self, request: pb.ListStatisticsSamplesRequest, context: grpc.ServicerContext
    ) -> pb.ListStatisticsSamplesResponse:
        page = self.statistics.samples(
            *_range(request.time_range), request.page_size, request.page_token
        )
        fields = pb.StatisticsSample.DESCRIPTOR.fields_by_name
        return pb.ListStatisticsSamplesResponse(
            samples=[
                pb.StatisticsSample(
                    sample_time=to_timestamp(row.sampled_at),
                    **{k: int(v) for k, v in row.counters.items() if k in fields},
                )
                for row in page.items
            ],
            next_page_token=page.next_page_token,
        )

    def GetHistoryBounds(
        self, request: pb.GetHistoryBoundsRequest, context: grpc.ServicerContext
    ) -> pb.GetHistoryBoundsResponse:
        bounds = self.statistics.bounds("history")
        return pb.GetHistoryBoundsResponse(bounds=pb.HistoryBounds(**_bounds(bounds)))

    def ClearStatisticsSamples(
        self, request: pb.ClearStatisticsSamplesRequest, context: grpc.ServicerContext
    ) -> pb.ClearStatisticsSamplesResponse:
        deleted = self.statistics.clear("statistics", *_range(request.time_range))
        return pb.ClearStatisticsSamplesResponse(deleted_count=deleted)

    def ClearHistorySamples(
        self, request: pb.ClearHistorySamplesRequest, context: grpc.ServicerContext
    ) -> pb.ClearHistorySamplesResponse:
        deleted = self.statistics.clear("history", *_range(request.time_range))
        return pb.ClearHistorySamplesResponse(deleted_count=deleted)


def _range(time_range: common_pb2.TimeRange) -> tuple[Any, Any]:
    return (
        from_timestamp(time_range.start_time, "time_range.start_time"),
        from_timestamp(time_range.end_time, "time_range.end_time"),
    )
