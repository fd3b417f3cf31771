"""Muster's Nodes APIs: render nodes and their processes (farm.nodes.v1.NodesService)."""

from __future__ import annotations

from typing import Any

from muster_gateway.api._arguments import as_enum, as_int, as_str
from muster_gateway.api._calls import call, pages
from muster_gateway.errors import MUSTERERR
from muster_gateway.objects import MNode
from muster_proto.common.v1 import common_pb2
from muster_proto.nodes.v1 import nodes_pb2


def _kill_node(function: str, id: Any, follow_up: common_pb2.KillFollowUp.ValueType) -> MUSTERERR:
    return call(
        function,
        lambda s: s.nodes.KillNodeProcess,
        lambda: nodes_pb2.KillNodeProcessRequest(node_id=as_int(id, "id"), follow_up=follow_up),
    )[0]


def nodeKillProcess(id: Any) -> MUSTERERR:
    return _kill_node("nodeKillProcess", id, common_pb2.KILL_FOLLOW_UP_CONTINUE)


def nodeKillProcessAndPause(id: Any) -> MUSTERERR:
    return _kill_node("nodeKillProcessAndPause", id, common_pb2.KILL_FOLLOW_UP_PAUSE)


def nodeKillProcessAndRestart(id: Any) -> MUSTERERR:
    return _kill_node("nodeKillProcessAndRestart", id, common_pb2.KILL_FOLLOW_UP_RESTART)


def _kill_job(function: str, id: Any, follow_up: common_pb2.KillFollowUp.ValueType) -> MUSTERERR:
    return call(
        function,
        lambda s: s.nodes.KillJobProcesses,
        lambda: nodes_pb2.KillJobProcessesRequest(job_id=as_int(id, "id"), follow_up=follow_up),
    )[0]


def nodeKillAndPauseNodesWorkingOnJob(id: Any) -> MUSTERERR:
    return _kill_job("nodeKillAndPauseNodesWorkingOnJob", id, common_pb2.KILL_FOLLOW_UP_PAUSE)


def nodeKillAndRedoNodesWorkingOnJob(id: Any) -> MUSTERERR:
    return _kill_job("nodeKillAndRedoNodesWorkingOnJob", id, common_pb2.KILL_FOLLOW_UP_RESTART)


def nodeKillAndGoOnNodesWorkingOnJob(id: Any) -> MUSTERERR:
    return _kill_job("nodeKillAndGoOnNodesWorkingOnJob", id, common_pb2.KILL_FOLLOW_UP_CONTINUE)


def nodePause(id: Any) -> MUSTERERR:
    return call(
        "nodePause",
        lambda s: s.nodes.PauseNode,
        lambda: nodes_pb2.PauseNodeRequest(node_id=as_int(id, "id")),
    )[0]


def nodeResume(id: Any) -> MUSTERERR:
    return call(
        "nodeResume",
        lambda s: s.nodes.ResumeNode,
        lambda: nodes_pb2.ResumeNodeRequest(node_id=as_int(id, "id")),
    )[0]


def nodeForceUpdate(id: Any) -> MUSTERERR:
    return call(
        "nodeForceUpdate",
        lambda s: s.nodes.RefreshNode,
        lambda: nodes_pb2.RefreshNodeRequest(node_id=as_int(id, "id")),
    )[0]


def nodeSetProcessPriority(id: Any, priority: Any) -> MUSTERERR:
    return call(
        "nodeSetProcessPriority",
        lambda s: s.nodes.SetNodeProcessPriority,
        lambda: nodes_pb2.SetNodeProcessPriorityRequest(
            node_id=as_int(id, "id"),
            process_priority=as_enum(priority, common_pb2.ProcessPriority.ValueType, "priority"),
        ),
    )[0]


def nodeSoftRestart(id: Any) -> MUSTERERR:
    return call(
        "nodeSoftRestart",
        lambda s: s.nodes.RestartNodeAgent,
        lambda: nodes_pb2.RestartNodeAgentRequest(node_id=as_int(id, "id")),
    )[0]


def nodePurgeTemplatesExclusion(id: Any, templateId: Any) -> MUSTERERR:
    return call(
        "nodePurgeTemplatesExclusion",
        lambda s: s.nodes.RemoveNodeTemplateExclusion,
        lambda: nodes_pb2.RemoveNodeTemplateExclusionRequest(
            node_id=as_int(id, "id"), template_id=as_int(templateId, "templateId")
        ),
    )[0]


def nodePurgeJobsExclusions(id: Any, jobsId: Any) -> MUSTERERR:
    return call(
        "nodePurgeJobsExclusions",
        lambda s: s.nodes.RemoveNodeJobExclusion,
        lambda: nodes_pb2.RemoveNodeJobExclusionRequest(
            node_id=as_int(id, "id"), job_id=as_int(jobsId, "jobsId")
        ),
    )[0]


def nodeSetRealtimeLog(id: Any, status: Any) -> MUSTERERR:
    return call(
        "nodeSetRealtimeLog",
        lambda s: s.nodes.SetNodeRealtimeLog,
        lambda: nodes_pb2.SetNodeRealtimeLogRequest(node_id=as_int(id, "id"), enabled=bool(status)),
    )[0]


def nodeSendSystemEvent(id: Any, event: Any) -> MUSTERERR:
    return call(
        "nodeSendSystemEvent",
        lambda s: s.nodes.SendNodeSystemEvent,
        lambda: nodes_pb2.SendNodeSystemEventRequest(
            node_id=as_int(id, "id"),
            event=as_enum(event, common_pb2.SystemEvent.ValueType, "event"),
        ),
    )[0]


def nodeRunPythonCode(id: Any, code: Any) -> MUSTERERR:
    return call(
        "nodeRunPythonCode",
        lambda s: s.nodes.RunNodePythonCode,
        lambda: nodes_pb2.RunNodePythonCodeRequest(
            node_id=as_int(id, "id"), code=as_str(code, "code")
        ),
    )[0]


def nodeSetNotes(id: Any, notes: Any) -> MUSTERERR:
    return call(
        "nodeSetNotes",
        lambda s: s.nodes.SetNodeNotes,
        lambda: nodes_pb2.SetNodeNotesRequest(
            node_id=as_int(id, "id"), notes=as_str(notes, "notes")
        ),
    )[0]


def nodeRemoveRegistration(id: Any) -> MUSTERERR:
    return call(
        "nodeRemoveRegistration",
        lambda s: s.nodes.DeleteNode,
        lambda: nodes_pb2.DeleteNodeRequest(node_id=as_int(id, "id")),
    )[0]


def nodeGetList() -> tuple[MUSTERERR, list[MNode]]:
    err, replies = pages("nodeGetList", lambda s: s.nodes.ListNodes, nodes_pb2.ListNodesRequest)
    return err, [MNode(node) for reply in replies for node in reply.nodes]


def nodeGet(id: Any) -> tuple[MUSTERERR, MNode | None]:
    err, reply = call(
        "nodeGet",
        lambda s: s.nodes.GetNode,
        lambda: nodes_pb2.GetNodeRequest(node_id=as_int(id, "id")),
    )
    return err, MNode(reply.node) if reply else None


def nodeGetByName(name: Any) -> tuple[MUSTERERR, MNode | None]:
    err, reply = call(
        "nodeGetByName",
        lambda s: s.nodes.FindNode,
        lambda: nodes_pb2.FindNodeRequest(name=as_str(name, "name")),
    )
    return err, MNode(reply.node) if reply else None


def sendMessageToNode(id: Any, templateId: Any, message: Any, brodcast: Any = False) -> MUSTERERR:
    return call(
        "sendMessageToNode",
        lambda s: s.nodes.SendNodeMessage,
        lambda: nodes_pb2.SendNodeMessageRequest(
            node_id=as_int(id, "id"),
            template_id=as_int(templateId, "templateId"),
            message=as_str(message, "message"),
            broadcast=bool(brodcast),
        ),
    )[0]
