"""The MDispatcherAPI functions: one per function of Muster's Dispatcher API.

Each builds one request, calls one RPC with a timeout, and returns Muster's
convention: a MUSTERERR first, then the documented results. Nothing here
re-implements a rule of the services; the server decides and the facade
translates (docs/api-compatibility.md lists every function and its RPC).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from farm.admin.v1 import admin_pb2
from farm.common.v1 import common_pb2
from farm.jobs.v1 import jobs_pb2
from farm.nodes.v1 import nodes_pb2
from gateway import errors
from gateway.connection import Connection, NotConfigured, connection
from gateway.context import running_context
from gateway.errors import MUSTERERR
from gateway.objects import (
    MBackupJob,
    MBackupQuery,
    MBackupQueryBoundaries,
    MChunk,
    MClient,
    MDispatcherConfiguration,
    MGroup,
    MHistoryChunk,
    MJob,
    MLDAPConfiguration,
    MNClient,
    MNode,
    MObject,
    MPool,
    MRepository,
    MStringRef,
    MUser,
)

# Contexts where the dispatcher's functions work (a console script may call
# them too: it targets the dispatcher through the network API).
ALLOWED_CONTEXTS = ("dispatcher", "console")
PAGE_SIZE = 1000
DIRECTORY_PREFIX = "@directory@"


class BadArguments(Exception):
    """The caller passed arguments the function cannot use."""


Call = Callable[[Connection, float, tuple[tuple[str, str], ...]], Any]


def _invoke(function: str, call: Call) -> tuple[MUSTERERR, Any]:
    context = running_context()
    if context not in ALLOWED_CONTEXTS:
        return MUSTERERR(
            errors.kErrorWrongContext,
            f"{function}: MDispatcherAPI works in the dispatcher and console contexts,"
            f" not in {context!r}",
        ), None
    try:
        conn = connection()
        try:
            return errors.SUCCESS, call(conn, conn.timeout, conn.metadata())
        except grpc.RpcError as exc:
            # A token that expired or was issued under another signing key:
            # log in again once, when we hold a password to do it with.
            if exc.code() != grpc.StatusCode.UNAUTHENTICATED or not conn.forget_token():
                raise
            return errors.SUCCESS, call(conn, conn.timeout, conn.metadata())
    except BadArguments as exc:
        return MUSTERERR(errors.kErrorBadArguments, f"{function}: {exc}"), None
    except NotConfigured as exc:
        return MUSTERERR(errors.kErrorNotConfigured, f"{function}: {exc}"), None
    except grpc.RpcError as exc:
        return MUSTERERR.from_rpc_error(exc, function), None


def _err(function: str, call: Call) -> MUSTERERR:
    return _invoke(function, call)[0]


# --- argument conversion: refuse what cannot be meant, before any call ---------------


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadArguments(f"{name} must be an integer, got {type(value).__name__}")
    try:
        number = int(value)
    except ValueError:
        raise BadArguments(f"{name} must be an integer, got {value!r}") from None
    if isinstance(value, float) and number != value:
        raise BadArguments(f"{name} must be a whole number, got {value!r}")
    return number


def _enum(value: Any, name: str) -> Any:
    """An enum argument: its number (the server says whether it is a known value)."""
    return _int(value, name)


def _str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise BadArguments(f"{name} must be a string, got {type(value).__name__}")
    return value


def _obj(value: Any, cls: type[MObject], name: str) -> Any:
    if not isinstance(value, cls):
        raise BadArguments(f"{name} must be an {cls.__name__}, got {type(value).__name__}")
    return value.message


def _time(value: Any, name: str) -> Timestamp:
    stamp = Timestamp()
    if isinstance(value, datetime):
        stamp.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    else:
        stamp.FromSeconds(_int(value, name))
    return stamp


def _all_pages(
    method: Callable[..., Any],
    request: Message,
    field: str,
    timeout: float,
    metadata: tuple[tuple[str, str], ...],
) -> list[Any]:
    items: list[Any] = []
    request.page_size = PAGE_SIZE  # type: ignore[attr-defined]
    while True:
        response = method(request, timeout=timeout, metadata=metadata)
        items.extend(getattr(response, field))
        if not response.next_page_token:
            return items
        request.page_token = response.next_page_token  # type: ignore[attr-defined]


# --- Jobs ----------


def jobGetList() -> tuple[MUSTERERR, list[MJob]]:
    err, jobs = _invoke(
        "jobGetList",
        lambda c, t, m: _all_pages(c.jobs().ListJobs, jobs_pb2.ListJobsRequest(), "jobs", t, m),
    )
    return err, [MJob(j) for j in jobs or []]


def jobGet(id: Any) -> tuple[MUSTERERR, MJob | None]:
    err, reply = _invoke(
        "jobGet",
        lambda c, t, m: c.jobs().GetJob(
            jobs_pb2.GetJobRequest(job_id=_int(id, "id")), timeout=t, metadata=m
        ),
    )
    return err, MJob(reply.job) if reply else None


def jobReparent(id: Any, newParentID: Any) -> MUSTERERR:
    return _err(
        "jobReparent",
        lambda c, t, m: c.jobs().MoveJob(
            jobs_pb2.MoveJobRequest(
                job_id=_int(id, "id"), new_parent_id=_int(newParentID, "newParentID")
            ),
            timeout=t,
            metadata=m,
        ),
    )


def jobSubmit(job: Any, owner: Any) -> tuple[MUSTERERR, int]:
    err, reply = _invoke(
        "jobSubmit",
        lambda c, t, m: c.jobs().SubmitJob(
            jobs_pb2.SubmitJobRequest(job=_obj(job, MJob, "job"), owner=_str(owner, "owner")),
            timeout=t,
            metadata=m,
        ),
    )
    if reply is None:
        return err, 0
    job.message.CopyFrom(reply.job)  # the caller's MJob now carries its id
    return err, int(reply.job_id)


def jobEdit(job: Any) -> MUSTERERR:
    return _err(
        "jobEdit",
        lambda c, t, m: c.jobs().UpdateJob(
            jobs_pb2.UpdateJobRequest(job=_obj(job, MJob, "job")), timeout=t, metadata=m
        ),
    )


def jobAddFolder(parent: Any, owner: Any, name: Any) -> tuple[MUSTERERR, int]:
    err, reply = _invoke(
        "jobAddFolder",
        lambda c, t, m: c.jobs().CreateFolder(
            jobs_pb2.CreateFolderRequest(
                parent_id=_int(parent, "parent"),
                owner=_str(owner, "owner"),
                name=_str(name, "name"),
            ),
            timeout=t,
            metadata=m,
        ),
    )
    return err, int(reply.folder_id) if reply else 0


def jobReinit(id: Any) -> MUSTERERR:
    return _err(
        "jobReinit",
        lambda c, t, m: c.jobs().ReinitJob(
            jobs_pb2.ReinitJobRequest(job_id=_int(id, "id")), timeout=t, metadata=m
        ),
    )


def jobDelete(id: Any) -> MUSTERERR:
    return _err(
        "jobDelete",
        lambda c, t, m: c.jobs().DeleteJob(
            jobs_pb2.DeleteJobRequest(job_id=_int(id, "id")), timeout=t, metadata=m
        ),
    )


def jobUpdateStatus(id: Any) -> MUSTERERR:
    return _err(
        "jobUpdateStatus",
        lambda c, t, m: c.jobs().RecomputeJobStatus(
            jobs_pb2.RecomputeJobStatusRequest(job_id=_int(id, "id")), timeout=t, metadata=m
        ),
    )


def jobUpdate(id: Any) -> MUSTERERR:
    return _err(
        "jobUpdate",
        lambda c, t, m: c.jobs().PublishJob(
            jobs_pb2.PublishJobRequest(job_id=_int(id, "id")), timeout=t, metadata=m
        ),
    )


# --- Chunks ----------


def chunkGetList(id: Any) -> tuple[MUSTERERR, list[MChunk]]:
    err, chunks = _invoke(
        "chunkGetList",
        lambda c, t, m: _all_pages(
            c.jobs().ListChunks, jobs_pb2.ListChunksRequest(job_id=_int(id, "id")), "chunks", t, m
        ),
    )
    return err, [MChunk(x) for x in chunks or []]


def chunkGet(jobId: Any, chunkId: Any) -> tuple[MUSTERERR, MChunk | None]:
    err, reply = _invoke(
        "chunkGet",
        lambda c, t, m: c.jobs().GetChunk(
            jobs_pb2.GetChunkRequest(
                job_id=_int(jobId, "jobId"), chunk_id=_int(chunkId, "chunkId")
            ),
            timeout=t,
            metadata=m,
        ),
    )
    return err, MChunk(reply.chunk) if reply else None


def chunkSetStatus(jobId: Any, chunkId: Any, chunkStatus: Any) -> MUSTERERR:
    return _err(
        "chunkSetStatus",
        lambda c, t, m: c.jobs().SetChunkStatus(
            jobs_pb2.SetChunkStatusRequest(
                job_id=_int(jobId, "jobId"),
                chunk_id=_int(chunkId, "chunkId"),
                status=_enum(chunkStatus, "chunkStatus"),
            ),
            timeout=t,
            metadata=m,
        ),
    )


def chunkGetHistory(jobId: Any, chunkId: Any = None) -> tuple[MUSTERERR, list[MHistoryChunk]]:
    def build() -> jobs_pb2.ListChunkHistoryRequest:
        request = jobs_pb2.ListChunkHistoryRequest(job_id=_int(jobId, "jobId"))
        if chunkId is not None:
            request.chunk_id = _int(chunkId, "chunkId")
        return request

    err, runs = _invoke(
        "chunkGetHistory",
        lambda c, t, m: _all_pages(c.jobs().ListChunkHistory, build(), "chunk_runs", t, m),
    )
    return err, [MHistoryChunk(r) for r in runs or []]


# --- Nodes ----------


def _kill_node(function: str, id: Any, follow_up: common_pb2.KillFollowUp.ValueType) -> MUSTERERR:
    return _err(
        function,
        lambda c, t, m: c.nodes().KillNodeProcess(
            nodes_pb2.KillNodeProcessRequest(node_id=_int(id, "id"), follow_up=follow_up),
            timeout=t,
            metadata=m,
        ),
    )


def nodeKillProcess(id: Any) -> MUSTERERR:
    return _kill_node("nodeKillProcess", id, common_pb2.KILL_FOLLOW_UP_CONTINUE)


def nodeKillProcessAndPause(id: Any) -> MUSTERERR:
    return _kill_node("nodeKillProcessAndPause", id, common_pb2.KILL_FOLLOW_UP_PAUSE)


def nodeKillProcessAndRestart(id: Any) -> MUSTERERR:
    return _kill_node("nodeKillProcessAndRestart", id, common_pb2.KILL_FOLLOW_UP_RESTART)


def _kill_job(function: str, id: Any, follow_up: common_pb2.KillFollowUp.ValueType) -> MUSTERERR:
    return _err(
        function,
        lambda c, t, m: c.nodes().KillJobProcesses(
            nodes_pb2.KillJobProcessesRequest(job_id=_int(id, "id"), follow_up=follow_up),
            timeout=t,
            metadata=m,
        ),
    )


def nodeKillAndPauseNodesWorkingOnJob(id: Any) -> MUSTERERR:
    return _kill_job("nodeKillAndPauseNodesWorkingOnJob", id, common_pb2.KILL_FOLLOW_UP_PAUSE)


def nodeKillAndRedoNodesWorkingOnJob(id: Any) -> MUSTERERR:
    return _kill_job("nodeKillAndRedoNodesWorkingOnJob", id, common_pb2.KILL_FOLLOW_UP_RESTART)


def nodeKillAndGoOnNodesWorkingOnJob(id: Any) -> MUSTERERR:
    return _kill_job("nodeKillAndGoOnNodesWorkingOnJob", id, common_pb2.KILL_FOLLOW_UP_CONTINUE)


def _node_call(function: str, method: str, request: Callable[[], Message]) -> MUSTERERR:
    return _err(
        function, lambda c, t, m: getattr(c.nodes(), method)(request(), timeout=t, metadata=m)
    )


def nodePause(id: Any) -> MUSTERERR:
    return _node_call(
        "nodePause", "PauseNode", lambda: nodes_pb2.PauseNodeRequest(node_id=_int(id, "id"))
    )


def nodeResume(id: Any) -> MUSTERERR:
    return _node_call(
        "nodeResume", "ResumeNode", lambda: nodes_pb2.ResumeNodeRequest(node_id=_int(id, "id"))
    )


def nodeForceUpdate(id: Any) -> MUSTERERR:
    return _node_call(
        "nodeForceUpdate",
        "RefreshNode",
        lambda: nodes_pb2.RefreshNodeRequest(node_id=_int(id, "id")),
    )


def nodeSetProcessPriority(id: Any, priority: Any) -> MUSTERERR:
    return _node_call(
        "nodeSetProcessPriority",
        "SetNodeProcessPriority",
        lambda: nodes_pb2.SetNodeProcessPriorityRequest(
            node_id=_int(id, "id"), process_priority=_enum(priority, "priority")
        ),
    )


def nodeSoftRestart(id: Any) -> MUSTERERR:
    return _node_call(
        "nodeSoftRestart",
        "RestartNodeAgent",
        lambda: nodes_pb2.RestartNodeAgentRequest(node_id=_int(id, "id")),
    )


def nodePurgeTemplatesExclusion(id: Any, templateId: Any) -> MUSTERERR:
    return _node_call(
        "nodePurgeTemplatesExclusion",
        "RemoveNodeTemplateExclusion",
        lambda: nodes_pb2.RemoveNodeTemplateExclusionRequest(
            node_id=_int(id, "id"), template_id=_int(templateId, "templateId")
        ),
    )


def nodePurgeJobsExclusions(id: Any, jobsId: Any) -> MUSTERERR:
    return _node_call(
        "nodePurgeJobsExclusions",
        "RemoveNodeJobExclusion",
        lambda: nodes_pb2.RemoveNodeJobExclusionRequest(
            node_id=_int(id, "id"), job_id=_int(jobsId, "jobsId")
        ),
    )


def nodeSetRealtimeLog(id: Any, status: Any) -> MUSTERERR:
    return _node_call(
        "nodeSetRealtimeLog",
        "SetNodeRealtimeLog",
        lambda: nodes_pb2.SetNodeRealtimeLogRequest(node_id=_int(id, "id"), enabled=bool(status)),
    )


def nodeSendSystemEvent(id: Any, event: Any) -> MUSTERERR:
    return _node_call(
        "nodeSendSystemEvent",
        "SendNodeSystemEvent",
        lambda: nodes_pb2.SendNodeSystemEventRequest(
            node_id=_int(id, "id"), event=_enum(event, "event")
        ),
    )


def nodeRunPythonCode(id: Any, code: Any) -> MUSTERERR:
    return _node_call(
        "nodeRunPythonCode",
        "RunNodePythonCode",
        lambda: nodes_pb2.RunNodePythonCodeRequest(node_id=_int(id, "id"), code=_str(code, "code")),
    )


def nodeSetNotes(id: Any, notes: Any) -> MUSTERERR:
    return _node_call(
        "nodeSetNotes",
        "SetNodeNotes",
        lambda: nodes_pb2.SetNodeNotesRequest(node_id=_int(id, "id"), notes=_str(notes, "notes")),
    )


def nodeRemoveRegistration(id: Any) -> MUSTERERR:
    return _node_call(
        "nodeRemoveRegistration",
        "DeleteNode",
        lambda: nodes_pb2.DeleteNodeRequest(node_id=_int(id, "id")),
    )


def nodeGetList() -> tuple[MUSTERERR, list[MNode]]:
    err, nodes = _invoke(
        "nodeGetList",
        lambda c, t, m: _all_pages(
            c.nodes().ListNodes, nodes_pb2.ListNodesRequest(), "nodes", t, m
        ),
    )
    return err, [MNode(n) for n in nodes or []]


def nodeGet(id: Any) -> tuple[MUSTERERR, MNode | None]:
    err, reply = _invoke(
        "nodeGet",
        lambda c, t, m: c.nodes().GetNode(
            nodes_pb2.GetNodeRequest(node_id=_int(id, "id")), timeout=t, metadata=m
        ),
    )
    return err, MNode(reply.node) if reply else None


def nodeGetByName(name: Any) -> tuple[MUSTERERR, MNode | None]:
    err, reply = _invoke(
        "nodeGetByName",
        lambda c, t, m: c.nodes().FindNode(
            nodes_pb2.FindNodeRequest(name=_str(name, "name")), timeout=t, metadata=m
        ),
    )
    return err, MNode(reply.node) if reply else None


def sendMessageToNode(id: Any, templateId: Any, message: Any, brodcast: Any = False) -> MUSTERERR:
    return _node_call(
        "sendMessageToNode",
        "SendNodeMessage",
        lambda: nodes_pb2.SendNodeMessageRequest(
            node_id=_int(id, "id"),
            template_id=_int(templateId, "templateId"),
            message=_str(message, "message"),
            broadcast=bool(brodcast),
        ),
    )


# --- Consoles and notificators ----------


def _clients_call(
    function: str, method: str, request: Callable[[], Message]
) -> tuple[MUSTERERR, Any]:
    return _invoke(
        function, lambda c, t, m: getattr(c.clients(), method)(request(), timeout=t, metadata=m)
    )


def _list_clients(function: str, notificators: bool, user: str | None) -> tuple[MUSTERERR, Any]:
    def call(c: Connection, t: float, m: tuple[tuple[str, str], ...]) -> list[Any]:
        if notificators:
            return _all_pages(
                c.clients().ListNotificators,
                nodes_pb2.ListNotificatorsRequest(user_name=user or ""),
                "notificators",
                t,
                m,
            )
        return _all_pages(
            c.clients().ListConsoles,
            nodes_pb2.ListConsolesRequest(user_name=user or ""),
            "consoles",
            t,
            m,
        )

    return _invoke(function, call)


def clientGetList() -> tuple[MUSTERERR, list[MClient]]:
    err, items = _list_clients("clientGetList", False, None)
    return err, [MClient(x) for x in items or []]


def clientGet(id: Any) -> tuple[MUSTERERR, MClient | None]:
    err, reply = _clients_call(
        "clientGet", "GetConsole", lambda: nodes_pb2.GetConsoleRequest(connection_id=_int(id, "id"))
    )
    return err, MClient(reply.console) if reply else None


def clientGetByUsername(username: Any) -> tuple[MUSTERERR, list[MClient]]:
    try:
        user = _str(username, "username")
    except BadArguments as exc:
        return MUSTERERR(errors.kErrorBadArguments, f"clientGetByUsername: {exc}"), []
    err, items = _list_clients("clientGetByUsername", False, user)
    return err, [MClient(x) for x in items or []]


def clientForceDisconnection(id: Any) -> MUSTERERR:
    return _clients_call(
        "clientForceDisconnection",
        "DisconnectConsole",
        lambda: nodes_pb2.DisconnectConsoleRequest(connection_id=_int(id, "id")),
    )[0]


def sendMessageToConsole(
    id: Any, templateId: Any, message: Any, brodcast: Any = False
) -> MUSTERERR:
    return _clients_call(
        "sendMessageToConsole",
        "SendConsoleMessage",
        lambda: nodes_pb2.SendConsoleMessageRequest(
            connection_id=_int(id, "id"),
            template_id=_int(templateId, "templateId"),
            message=_str(message, "message"),
            broadcast=bool(brodcast),
        ),
    )[0]


def clientNGetList() -> tuple[MUSTERERR, list[MNClient]]:
    err, items = _list_clients("clientNGetList", True, None)
    return err, [MNClient(x) for x in items or []]


def clientNGet(id: Any) -> tuple[MUSTERERR, MNClient | None]:
    err, reply = _clients_call(
        "clientNGet",
        "GetNotificator",
        lambda: nodes_pb2.GetNotificatorRequest(connection_id=_int(id, "id")),
    )
    return err, MNClient(reply.notificator) if reply else None


def clientNGetByUsername(username: Any) -> tuple[MUSTERERR, list[MNClient]]:
    try:
        user = _str(username, "username")
    except BadArguments as exc:
        return MUSTERERR(errors.kErrorBadArguments, f"clientNGetByUsername: {exc}"), []
    err, items = _list_clients("clientNGetByUsername", True, user)
    return err, [MNClient(x) for x in items or []]


def clientNForceDisconnection(id: Any) -> MUSTERERR:
    return _clients_call(
        "clientNForceDisconnection",
        "DisconnectNotificator",
        lambda: nodes_pb2.DisconnectNotificatorRequest(connection_id=_int(id, "id")),
    )[0]


def sendMessageToNotificator(
    id: Any, templateId: Any, message: Any, brodcast: Any = False
) -> MUSTERERR:
    return _clients_call(
        "sendMessageToNotificator",
        "SendNotificatorMessage",
        lambda: nodes_pb2.SendNotificatorMessageRequest(
            connection_id=_int(id, "id"),
            template_id=_int(templateId, "templateId"),
            message=_str(message, "message"),
            broadcast=bool(brodcast),
        ),
    )[0]


# --- Database ----------


def _admin(function: str, method: str, request: Callable[[], Message]) -> tuple[MUSTERERR, Any]:
    return _invoke(
        function, lambda c, t, m: getattr(c.admin(), method)(request(), timeout=t, metadata=m)
    )


def _jobs(function: str, method: str, request: Callable[[], Message]) -> tuple[MUSTERERR, Any]:
    return _invoke(
        function, lambda c, t, m: getattr(c.jobs(), method)(request(), timeout=t, metadata=m)
    )


def _bounds(reply: Any) -> tuple[int, int, int]:
    if reply is None:
        return 0, 0, 0
    bounds = reply.bounds
    return int(bounds.start_time.seconds), int(bounds.end_time.seconds), int(bounds.samples_count)


def dbGetStatisticsBounds() -> tuple[MUSTERERR, int, int, int]:
    err, reply = _admin(
        "dbGetStatisticsBounds", "GetStatisticsBounds", admin_pb2.GetStatisticsBoundsRequest
    )
    return (err, *_bounds(reply))


def dbGetHistoryBounds() -> tuple[MUSTERERR, int, int, int]:
    err, reply = _admin("dbGetHistoryBounds", "GetHistoryBounds", admin_pb2.GetHistoryBoundsRequest)
    return (err, *_bounds(reply))


def _range(start: Any, end: Any) -> common_pb2.TimeRange:
    return common_pb2.TimeRange(start_time=_time(start, "start"), end_time=_time(end, "end"))


def dbClearStatisticsBounds(start: Any, end: Any) -> MUSTERERR:
    return _admin(
        "dbClearStatisticsBounds",
        "ClearStatisticsSamples",
        lambda: admin_pb2.ClearStatisticsSamplesRequest(time_range=_range(start, end)),
    )[0]


def dbClearHistoryBounds(start: Any, end: Any) -> MUSTERERR:
    return _admin(
        "dbClearHistoryBounds",
        "ClearHistorySamples",
        lambda: admin_pb2.ClearHistorySamplesRequest(time_range=_range(start, end)),
    )[0]


def dbImportQueueSQL(sql: Any) -> MUSTERERR:
    return _jobs(
        "dbImportQueueSQL",
        "ImportQueueSql",
        lambda: jobs_pb2.ImportQueueSqlRequest(sql=_str(sql, "sql")),
    )[0]


def dbExportQueueSQL(sqlRef: Any = None) -> MUSTERERR:
    if sqlRef is not None and not isinstance(sqlRef, MStringRef):
        return MUSTERERR(
            errors.kErrorBadArguments, "dbExportQueueSQL: sqlRef must be an MStringRef"
        )
    err, reply = _jobs("dbExportQueueSQL", "ExportQueueSql", jobs_pb2.ExportQueueSqlRequest)
    if reply is not None and sqlRef is not None:
        sqlRef.setString(reply.sql)
    return err


def dbFlush() -> MUSTERERR:
    return _jobs("dbFlush", "FlushQueueDatabase", jobs_pb2.FlushQueueDatabaseRequest)[0]


def dbHistoryFlush() -> MUSTERERR:
    return _jobs("dbHistoryFlush", "FlushHistoryDatabase", jobs_pb2.FlushHistoryDatabaseRequest)[0]


def dbBackupFlush() -> MUSTERERR:
    return _jobs("dbBackupFlush", "FlushBackupDatabase", jobs_pb2.FlushBackupDatabaseRequest)[0]


# --- Backup ----------


def backupJob(id: Any, overwriteMode: Any) -> MUSTERERR:
    return _jobs(
        "backupJob",
        "BackupJob",
        lambda: jobs_pb2.BackupJobRequest(
            job_id=_int(id, "id"), overwrite_mode=_enum(overwriteMode, "overwriteMode")
        ),
    )[0]


def backupJobAndDelete(id: Any, overwriteMode: Any) -> MUSTERERR:
    return _jobs(
        "backupJobAndDelete",
        "ArchiveJob",
        lambda: jobs_pb2.ArchiveJobRequest(
            job_id=_int(id, "id"), overwrite_mode=_enum(overwriteMode, "overwriteMode")
        ),
    )[0]


def backupRestoreJob(id: Any, actionMode: Any, newParentId: Any) -> MUSTERERR:
    return _jobs(
        "backupRestoreJob",
        "RestoreJob",
        lambda: jobs_pb2.RestoreJobRequest(
            backup_id=_int(id, "id"),
            action_flags=_int(actionMode, "actionMode"),
            new_parent_id=_int(newParentId, "newParentId"),
        ),
    )[0]


def backupGetBoundaries(boundaries: Any) -> MUSTERERR:
    if not isinstance(boundaries, MBackupQueryBoundaries):
        return MUSTERERR(
            errors.kErrorBadArguments,
            "backupGetBoundaries: boundaries must be an MBackupQueryBoundaries",
        )
    err, reply = _jobs(
        "backupGetBoundaries", "GetBackupBoundaries", jobs_pb2.GetBackupBoundariesRequest
    )
    if reply is not None:
        boundaries.message.CopyFrom(reply.boundaries)
    return err


def backupQuery(query: Any = None) -> tuple[MUSTERERR, list[MBackupJob]]:
    def build() -> jobs_pb2.ListBackupJobsRequest:
        request = jobs_pb2.ListBackupJobsRequest()
        if query is not None:
            request.query.CopyFrom(_obj(query, MBackupQuery, "query"))
        return request

    err, items = _invoke(
        "backupQuery",
        lambda c, t, m: _all_pages(c.jobs().ListBackupJobs, build(), "backup_jobs", t, m),
    )
    return err, [MBackupJob(x) for x in items or []]


# --- System ----------


def systemQueryEngineStatus() -> tuple[MUSTERERR, int]:
    err, reply = _admin(
        "systemQueryEngineStatus", "GetEngineStatus", admin_pb2.GetEngineStatusRequest
    )
    return err, int(reply.engine_status) if reply else 0


def systemSwapEngineStatus() -> MUSTERERR:
    return _admin(
        "systemSwapEngineStatus", "ToggleEngineStatus", admin_pb2.ToggleEngineStatusRequest
    )[0]


def systemSoftRestart() -> MUSTERERR:
    return _admin("systemSoftRestart", "RestartDispatcher", admin_pb2.RestartDispatcherRequest)[0]


def systemResetStatisticsCounters() -> MUSTERERR:
    return _admin(
        "systemResetStatisticsCounters",
        "ResetStatisticsCounters",
        admin_pb2.ResetStatisticsCountersRequest,
    )[0]


def systemStartNodesNetworkScan() -> MUSTERERR:
    return _admin(
        "systemStartNodesNetworkScan", "StartNetworkScan", admin_pb2.StartNetworkScanRequest
    )[0]


def systemGetConfiguration() -> tuple[MUSTERERR, MDispatcherConfiguration | None]:
    err, reply = _admin(
        "systemGetConfiguration",
        "GetDispatcherConfiguration",
        admin_pb2.GetDispatcherConfigurationRequest,
    )
    return err, MDispatcherConfiguration(reply.configuration) if reply else None


def systemSetConfiguration(configuration: Any, store: Any = True) -> MUSTERERR:
    return _admin(
        "systemSetConfiguration",
        "UpdateDispatcherConfiguration",
        lambda: admin_pb2.UpdateDispatcherConfigurationRequest(
            configuration=_obj(configuration, MDispatcherConfiguration, "configuration"),
            persist=bool(store),
        ),
    )[0]


def systemGetLDAPConfiguration() -> tuple[MUSTERERR, MLDAPConfiguration | None]:
    err, reply = _admin(
        "systemGetLDAPConfiguration", "GetLdapConfiguration", admin_pb2.GetLdapConfigurationRequest
    )
    return err, MLDAPConfiguration(reply.configuration) if reply else None


def systemSetLDAPConfiguration(configuration: Any, store: Any = True) -> MUSTERERR:
    return _admin(
        "systemSetLDAPConfiguration",
        "UpdateLdapConfiguration",
        lambda: admin_pb2.UpdateLdapConfigurationRequest(
            configuration=_obj(configuration, MLDAPConfiguration, "configuration"),
            persist=bool(store),
        ),
    )[0]


def _log_names(function: str, method: str, request: type[Message]) -> tuple[MUSTERERR, list[str]]:
    err, files = _invoke(
        function,
        lambda c, t, m: _all_pages(getattr(c.admin(), method), request(), "log_files", t, m),
    )
    return err, [f.name for f in files or []]


def systemGetActivityLogsList() -> tuple[MUSTERERR, list[str]]:
    return _log_names(
        "systemGetActivityLogsList", "ListActivityLogs", admin_pb2.ListActivityLogsRequest
    )


def systemGetActivityLog(name: Any) -> tuple[MUSTERERR, str]:
    err, reply = _admin(
        "systemGetActivityLog",
        "GetActivityLog",
        lambda: admin_pb2.GetActivityLogRequest(name=_str(name, "name")),
    )
    return err, reply.content if reply else ""


def systemRemoveActivityLog(name: Any) -> MUSTERERR:
    return _admin(
        "systemRemoveActivityLog",
        "DeleteActivityLog",
        lambda: admin_pb2.DeleteActivityLogRequest(name=_str(name, "name")),
    )[0]


def systemGetActionLogsList() -> tuple[MUSTERERR, list[str]]:
    return _log_names("systemGetActionLogsList", "ListActionLogs", admin_pb2.ListActionLogsRequest)


def systemGetActionLog(name: Any) -> tuple[MUSTERERR, str]:
    err, reply = _admin(
        "systemGetActionLog",
        "GetActionLog",
        lambda: admin_pb2.GetActionLogRequest(name=_str(name, "name")),
    )
    return err, reply.content if reply else ""


def systemRemoveActionLog(name: Any) -> MUSTERERR:
    return _admin(
        "systemRemoveActionLog",
        "DeleteActionLog",
        lambda: admin_pb2.DeleteActionLogRequest(name=_str(name, "name")),
    )[0]


# --- Logs ----------


def logClear() -> MUSTERERR:
    return _admin("logClear", "ClearDispatcherLog", admin_pb2.ClearDispatcherLogRequest)[0]


def logAddInternalMessage(message: Any) -> MUSTERERR:
    return _admin(
        "logAddInternalMessage",
        "AddInternalLogEntry",
        lambda: admin_pb2.AddInternalLogEntryRequest(
            message=_str(message, "message"), level=admin_pb2.LOG_LEVEL_INFO
        ),
    )[0]


def logAddMessage(message: Any) -> MUSTERERR:
    return _admin(
        "logAddMessage",
        "AddLogEntry",
        lambda: admin_pb2.AddLogEntryRequest(
            message=_str(message, "message"), level=admin_pb2.LOG_LEVEL_INFO
        ),
    )[0]


# --- Users and groups ----------


def userGetList() -> tuple[MUSTERERR, list[MUser]]:
    err, items = _invoke(
        "userGetList",
        lambda c, t, m: _all_pages(
            c.admin().ListUsers, admin_pb2.ListUsersRequest(), "users", t, m
        ),
    )
    users = [MUser(x) for x in items or []]
    for user in users:
        # Muster lists directory (LDAP) users with this prefix.
        if user.message.directory_user and not user.message.name.startswith(DIRECTORY_PREFIX):
            user.message.name = DIRECTORY_PREFIX + user.message.name
    return err, users


def userGet(name: Any) -> tuple[MUSTERERR, MUser | None]:
    err, reply = _admin(
        "userGet", "GetUser", lambda: admin_pb2.GetUserRequest(name=_str(name, "name"))
    )
    return err, MUser(reply.user) if reply else None


def userAdd(user: Any) -> MUSTERERR:
    return _admin(
        "userAdd", "CreateUser", lambda: admin_pb2.CreateUserRequest(user=_obj(user, MUser, "user"))
    )[0]


def userRemove(name: Any) -> MUSTERERR:
    return _admin(
        "userRemove", "DeleteUser", lambda: admin_pb2.DeleteUserRequest(name=_str(name, "name"))
    )[0]


def userConfigure(user: Any) -> MUSTERERR:
    return _admin(
        "userConfigure",
        "UpdateUser",
        lambda: admin_pb2.UpdateUserRequest(user=_obj(user, MUser, "user")),
    )[0]


def groupGetList() -> tuple[MUSTERERR, list[MGroup]]:
    err, items = _invoke(
        "groupGetList",
        lambda c, t, m: _all_pages(
            c.admin().ListGroups, admin_pb2.ListGroupsRequest(), "groups", t, m
        ),
    )
    return err, [MGroup(x) for x in items or []]


def groupGet(groupName: Any) -> tuple[MUSTERERR, MGroup | None]:
    err, reply = _admin(
        "groupGet", "GetGroup", lambda: admin_pb2.GetGroupRequest(name=_str(groupName, "groupName"))
    )
    return err, MGroup(reply.group) if reply else None


def groupAdd(group: Any) -> MUSTERERR:
    return _admin(
        "groupAdd",
        "CreateGroup",
        lambda: admin_pb2.CreateGroupRequest(group=_obj(group, MGroup, "group")),
    )[0]


def groupRemove(groupName: Any) -> MUSTERERR:
    return _admin(
        "groupRemove",
        "DeleteGroup",
        lambda: admin_pb2.DeleteGroupRequest(name=_str(groupName, "groupName")),
    )[0]


def groupConfigure(group: Any) -> MUSTERERR:
    return _admin(
        "groupConfigure",
        "UpdateGroup",
        lambda: admin_pb2.UpdateGroupRequest(group=_obj(group, MGroup, "group")),
    )[0]


# --- Pools ----------


def poolGetList() -> tuple[MUSTERERR, list[MPool]]:
    err, items = _invoke(
        "poolGetList",
        lambda c, t, m: _all_pages(
            c.admin().ListPools, admin_pb2.ListPoolsRequest(), "pools", t, m
        ),
    )
    return err, [MPool(x) for x in items or []]


def poolGet(name: Any) -> tuple[MUSTERERR, MPool | None]:
    err, reply = _admin(
        "poolGet", "GetPool", lambda: admin_pb2.GetPoolRequest(name=_str(name, "name"))
    )
    return err, MPool(reply.pool) if reply else None


def poolConfigure(pool: Any) -> MUSTERERR:
    return _admin(
        "poolConfigure",
        "UpdatePool",
        lambda: admin_pb2.UpdatePoolRequest(pool=_obj(pool, MPool, "pool")),
    )[0]


def poolAdd(pool: Any) -> MUSTERERR:
    return _admin(
        "poolAdd", "CreatePool", lambda: admin_pb2.CreatePoolRequest(pool=_obj(pool, MPool, "pool"))
    )[0]


def poolRemove(name: Any) -> MUSTERERR:
    return _admin(
        "poolRemove", "DeletePool", lambda: admin_pb2.DeletePoolRequest(name=_str(name, "name"))
    )[0]


def poolNotifyChanges() -> MUSTERERR:
    return _admin("poolNotifyChanges", "NotifyPoolChanges", admin_pb2.NotifyPoolChangesRequest)[0]


# --- Repositories ----------


def repositoriesGetList() -> tuple[MUSTERERR, list[MRepository]]:
    err, items = _invoke(
        "repositoriesGetList",
        lambda c, t, m: _all_pages(
            c.admin().ListRepositories, admin_pb2.ListRepositoriesRequest(), "repositories", t, m
        ),
    )
    return err, [MRepository(x) for x in items or []]


def repositoriesGet(name: Any) -> tuple[MUSTERERR, MRepository | None]:
    err, reply = _admin(
        "repositoriesGet",
        "GetRepository",
        lambda: admin_pb2.GetRepositoryRequest(name=_str(name, "name")),
    )
    return err, MRepository(reply.repository) if reply else None


def repositoriesConfigure(repository: Any) -> MUSTERERR:
    return _admin(
        "repositoriesConfigure",
        "UpdateRepository",
        lambda: admin_pb2.UpdateRepositoryRequest(
            repository=_obj(repository, MRepository, "repository")
        ),
    )[0]


def repositoriesAdd(repository: Any) -> MUSTERERR:
    return _admin(
        "repositoriesAdd",
        "CreateRepository",
        lambda: admin_pb2.CreateRepositoryRequest(
            repository=_obj(repository, MRepository, "repository")
        ),
    )[0]


def repositoriesNotifyChanges() -> MUSTERERR:
    return _admin(
        "repositoriesNotifyChanges",
        "NotifyRepositoryChanges",
        admin_pb2.NotifyRepositoryChangesRequest,
    )[0]


def repositoriesRemove(repository: Any) -> MUSTERERR:
    return _admin(
        "repositoriesRemove",
        "DeleteRepository",
        lambda: admin_pb2.DeleteRepositoryRequest(name=_str(repository, "repository")),
    )[0]


# The seed's 100 functions, in the seed's order (tests check this list),
# after the two other names a star import takes.
__all__ = [  # noqa: RUF022 (kept in the seed's order)
    "MUSTERERR",
    "FUNCTIONS",
    "jobGetList",
    "jobGet",
    "jobReparent",
    "jobSubmit",
    "jobEdit",
    "jobAddFolder",
    "jobReinit",
    "jobDelete",
    "jobUpdateStatus",
    "jobUpdate",
    "chunkGetList",
    "chunkGet",
    "chunkSetStatus",
    "chunkGetHistory",
    "nodeKillProcess",
    "nodeKillProcessAndPause",
    "nodeKillProcessAndRestart",
    "nodeKillAndPauseNodesWorkingOnJob",
    "nodeKillAndRedoNodesWorkingOnJob",
    "nodeKillAndGoOnNodesWorkingOnJob",
    "nodePause",
    "nodeResume",
    "nodeForceUpdate",
    "nodeSetProcessPriority",
    "nodeSoftRestart",
    "nodePurgeTemplatesExclusion",
    "nodePurgeJobsExclusions",
    "nodeSetRealtimeLog",
    "nodeSendSystemEvent",
    "nodeRunPythonCode",
    "nodeSetNotes",
    "nodeRemoveRegistration",
    "nodeGetList",
    "nodeGet",
    "nodeGetByName",
    "sendMessageToNode",
    "clientGetList",
    "clientGet",
    "clientGetByUsername",
    "clientForceDisconnection",
    "sendMessageToConsole",
    "clientNGetList",
    "clientNGet",
    "clientNGetByUsername",
    "clientNForceDisconnection",
    "sendMessageToNotificator",
    "dbGetStatisticsBounds",
    "dbGetHistoryBounds",
    "dbClearStatisticsBounds",
    "dbClearHistoryBounds",
    "dbImportQueueSQL",
    "dbExportQueueSQL",
    "dbFlush",
    "dbHistoryFlush",
    "dbBackupFlush",
    "backupJob",
    "backupJobAndDelete",
    "backupRestoreJob",
    "backupGetBoundaries",
    "backupQuery",
    "systemQueryEngineStatus",
    "systemSwapEngineStatus",
    "systemSoftRestart",
    "systemResetStatisticsCounters",
    "systemStartNodesNetworkScan",
    "systemGetConfiguration",
    "systemSetConfiguration",
    "systemGetLDAPConfiguration",
    "systemSetLDAPConfiguration",
    "systemGetActivityLogsList",
    "systemGetActivityLog",
    "systemRemoveActivityLog",
    "systemGetActionLogsList",
    "systemGetActionLog",
    "systemRemoveActionLog",
    "logClear",
    "logAddInternalMessage",
    "logAddMessage",
    "userGetList",
    "userGet",
    "userAdd",
    "userRemove",
    "userConfigure",
    "groupGetList",
    "groupGet",
    "groupAdd",
    "groupRemove",
    "groupConfigure",
    "poolGetList",
    "poolGet",
    "poolConfigure",
    "poolAdd",
    "poolRemove",
    "poolNotifyChanges",
    "repositoriesGetList",
    "repositoriesGet",
    "repositoriesConfigure",
    "repositoriesAdd",
    "repositoriesNotifyChanges",
    "repositoriesRemove",
]
FUNCTIONS = __all__[2:]
