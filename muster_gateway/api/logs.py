"""Muster's Logs APIs: the dispatcher's log (farm.admin.v1.AdminService)."""

from __future__ import annotations

from typing import Any

from muster_gateway.api._arguments import as_str
from muster_gateway.api._calls import call
from muster_gateway.errors import MUSTERERR
from muster_proto.admin.v1 import admin_pb2


def logClear() -> MUSTERERR:
    return call(
        "logClear", lambda s: s.admin.ClearDispatcherLog, admin_pb2.ClearDispatcherLogRequest
    )[0]


def logAddInternalMessage(message: Any) -> MUSTERERR:
    return call(
        "logAddInternalMessage",
        lambda s: s.admin.AddInternalLogEntry,
        lambda: admin_pb2.AddInternalLogEntryRequest(
            message=as_str(message, "message"), level=admin_pb2.LOG_LEVEL_INFO
        ),
    )[0]


def logAddMessage(message: Any) -> MUSTERERR:
    return call(
        "logAddMessage",
        lambda s: s.admin.AddLogEntry,
        lambda: admin_pb2.AddLogEntryRequest(
            message=as_str(message, "message"), level=admin_pb2.LOG_LEVEL_INFO
        ),
    )[0]
