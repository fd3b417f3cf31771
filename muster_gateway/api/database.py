"""Muster's Database APIs: statistics and history samples (farm.admin.v1.AdminService)
and the queue database (farm.jobs.v1.JobsService)."""

from __future__ import annotations

from typing import Any

from muster_gateway import errors
from muster_gateway.api._arguments import as_str, as_timestamp
from muster_gateway.api._calls import call
from muster_gateway.errors import MUSTERERR
from muster_gateway.objects import MStringRef
from muster_proto.admin.v1 import admin_pb2
from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import jobs_pb2


def _bounds(
    reply: admin_pb2.GetStatisticsBoundsResponse | admin_pb2.GetHistoryBoundsResponse | None,
) -> tuple[int, int, int]:
    if reply is None:
        return 0, 0, 0
    bounds = reply.bounds
    return int(bounds.start_time.seconds), int(bounds.end_time.seconds), int(bounds.samples_count)


def dbGetStatisticsBounds() -> tuple[MUSTERERR, int, int, int]:
    err, reply = call(
        "dbGetStatisticsBounds",
        lambda s: s.admin.GetStatisticsBounds,
        admin_pb2.GetStatisticsBoundsRequest,
    )
    return (err, *_bounds(reply))


def dbGetHistoryBounds() -> tuple[MUSTERERR, int, int, int]:
    err, reply = call(
        "dbGetHistoryBounds", lambda s: s.admin.GetHistoryBounds, admin_pb2.GetHistoryBoundsRequest
    )
    return (err, *_bounds(reply))


def _range(start: Any, end: Any) -> common_pb2.TimeRange:
    return common_pb2.TimeRange(
        start_time=as_timestamp(start, "start"), end_time=as_timestamp(end, "end")
    )


def dbClearStatisticsBounds(start: Any, end: Any) -> MUSTERERR:
    return call(
        "dbClearStatisticsBounds",
        lambda s: s.admin.ClearStatisticsSamples,
        lambda: admin_pb2.ClearStatisticsSamplesRequest(time_range=_range(start, end)),
    )[0]


def dbClearHistoryBounds(start: Any, end: Any) -> MUSTERERR:
    return call(
        "dbClearHistoryBounds",
        lambda s: s.admin.ClearHistorySamples,
        lambda: admin_pb2.ClearHistorySamplesRequest(time_range=_range(start, end)),
    )[0]


def dbImportQueueSQL(sql: Any) -> MUSTERERR:
    return call(
        "dbImportQueueSQL",
        lambda s: s.jobs.ImportQueueSql,
        lambda: jobs_pb2.ImportQueueSqlRequest(sql=as_str(sql, "sql")),
    )[0]


def dbExportQueueSQL(sqlRef: Any = None) -> MUSTERERR:
    if sqlRef is not None and not isinstance(sqlRef, MStringRef):
        return MUSTERERR(
            errors.kErrorBadArguments, "dbExportQueueSQL: sqlRef must be an MStringRef"
        )
    err, reply = call(
        "dbExportQueueSQL", lambda s: s.jobs.ExportQueueSql, jobs_pb2.ExportQueueSqlRequest
    )
    if reply is not None and sqlRef is not None:
        sqlRef.setString(reply.sql)
    return err


def dbFlush() -> MUSTERERR:
    return call("dbFlush", lambda s: s.jobs.FlushQueueDatabase, jobs_pb2.FlushQueueDatabaseRequest)[
        0
    ]


def dbHistoryFlush() -> MUSTERERR:
    return call(
        "dbHistoryFlush",
        lambda s: s.jobs.FlushHistoryDatabase,
        jobs_pb2.FlushHistoryDatabaseRequest,
    )[0]


def dbBackupFlush() -> MUSTERERR:
    return call(
        "dbBackupFlush", lambda s: s.jobs.FlushBackupDatabase, jobs_pb2.FlushBackupDatabaseRequest
    )[0]
