"""Muster's System APIs: the engine, the dispatcher's configuration and its
activity and action logs (farm.admin.v1.AdminService)."""

from __future__ import annotations

from typing import Any

from muster_gateway.api._arguments import as_message, as_str
from muster_gateway.api._calls import call, pages
from muster_gateway.errors import MUSTERERR
from muster_gateway.objects import MDispatcherConfiguration, MLDAPConfiguration
from muster_proto.admin.v1 import admin_pb2


def systemQueryEngineStatus() -> tuple[MUSTERERR, int]:
    err, reply = call(
        "systemQueryEngineStatus",
        lambda s: s.admin.GetEngineStatus,
        admin_pb2.GetEngineStatusRequest,
    )
    return err, int(reply.engine_status) if reply else 0


def systemSwapEngineStatus() -> MUSTERERR:
    return call(
        "systemSwapEngineStatus",
        lambda s: s.admin.ToggleEngineStatus,
        admin_pb2.ToggleEngineStatusRequest,
    )[0]


def systemSoftRestart() -> MUSTERERR:
    return call(
        "systemSoftRestart", lambda s: s.admin.RestartDispatcher, admin_pb2.RestartDispatcherRequest
    )[0]


def systemResetStatisticsCounters() -> MUSTERERR:
    return call(
        "systemResetStatisticsCounters",
        lambda s: s.admin.ResetStatisticsCounters,
        admin_pb2.ResetStatisticsCountersRequest,
    )[0]


def systemStartNodesNetworkScan() -> MUSTERERR:
    return call(
        "systemStartNodesNetworkScan",
        lambda s: s.admin.StartNetworkScan,
        admin_pb2.StartNetworkScanRequest,
    )[0]


def systemGetConfiguration() -> tuple[MUSTERERR, MDispatcherConfiguration | None]:
    err, reply = call(
        "systemGetConfiguration",
        lambda s: s.admin.GetDispatcherConfiguration,
        admin_pb2.GetDispatcherConfigurationRequest,
    )
    return err, MDispatcherConfiguration(reply.configuration) if reply else None


def systemSetConfiguration(configuration: Any, store: Any = True) -> MUSTERERR:
    return call(
        "systemSetConfiguration",
        lambda s: s.admin.UpdateDispatcherConfiguration,
        lambda: admin_pb2.UpdateDispatcherConfigurationRequest(
            configuration=as_message(configuration, MDispatcherConfiguration, "configuration"),
            persist=bool(store),
        ),
    )[0]


def systemGetLDAPConfiguration() -> tuple[MUSTERERR, MLDAPConfiguration | None]:
    err, reply = call(
        "systemGetLDAPConfiguration",
        lambda s: s.admin.GetLdapConfiguration,
        admin_pb2.GetLdapConfigurationRequest,
    )
    return err, MLDAPConfiguration(reply.configuration) if reply else None


def systemSetLDAPConfiguration(configuration: Any, store: Any = True) -> MUSTERERR:
    return call(
        "systemSetLDAPConfiguration",
        lambda s: s.admin.UpdateLdapConfiguration,
        lambda: admin_pb2.UpdateLdapConfigurationRequest(
            configuration=as_message(configuration, MLDAPConfiguration, "configuration"),
            persist=bool(store),
        ),
    )[0]


def systemGetActivityLogsList() -> tuple[MUSTERERR, list[str]]:
    err, replies = pages(
        "systemGetActivityLogsList",
        lambda s: s.admin.ListActivityLogs,
        admin_pb2.ListActivityLogsRequest,
    )
    return err, [log.name for reply in replies for log in reply.log_files]


def systemGetActivityLog(name: Any) -> tuple[MUSTERERR, str]:
    err, reply = call(
        "systemGetActivityLog",
        lambda s: s.admin.GetActivityLog,
        lambda: admin_pb2.GetActivityLogRequest(name=as_str(name, "name")),
    )
    return err, reply.content if reply else ""


def systemRemoveActivityLog(name: Any) -> MUSTERERR:
    return call(
        "systemRemoveActivityLog",
        lambda s: s.admin.DeleteActivityLog,
        lambda: admin_pb2.DeleteActivityLogRequest(name=as_str(name, "name")),
    )[0]


def systemGetActionLogsList() -> tuple[MUSTERERR, list[str]]:
    err, replies = pages(
        "systemGetActionLogsList", lambda s: s.admin.ListActionLogs, admin_pb2.ListActionLogsRequest
    )
    return err, [log.name for reply in replies for log in reply.log_files]


def systemGetActionLog(name: Any) -> tuple[MUSTERERR, str]:
    err, reply = call(
        "systemGetActionLog",
        lambda s: s.admin.GetActionLog,
        lambda: admin_pb2.GetActionLogRequest(name=as_str(name, "name")),
    )
    return err, reply.content if reply else ""


def systemRemoveActionLog(name: Any) -> MUSTERERR:
    return call(
        "systemRemoveActionLog",
        lambda s: s.admin.DeleteActionLog,
        lambda: admin_pb2.DeleteActionLogRequest(name=as_str(name, "name")),
    )[0]
